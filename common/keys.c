/* keys.c -- key names under the prefix (see keys.h, docs/KEYSPACE.md). */
#include "keys.h"

#include <stdio.h>
#include <string.h>

void fk_keys_init(fk_keys *k, const char *prefix) {
    memset(k, 0, sizeof(*k));
    snprintf(k->prefix, sizeof(k->prefix), "%s", prefix);
    snprintf(k->stream, sizeof(k->stream), "%s:orders", prefix);
    snprintf(k->retry, sizeof(k->retry), "%s:retry", prefix);
    snprintf(k->review, sizeof(k->review), "%s:review", prefix);
    snprintf(k->dead, sizeof(k->dead), "%s:dead", prefix);
    snprintf(k->stats, sizeof(k->stats), "%s:stats", prefix);
    snprintf(k->notify, sizeof(k->notify), "%s:notify", prefix);
    snprintf(k->workers, sizeof(k->workers), "%s:workers", prefix);
    snprintf(k->reapers, sizeof(k->reapers), "%s:reapers", prefix);
    snprintf(k->active, sizeof(k->active), "%s:active", prefix);
    snprintf(k->recheck, sizeof(k->recheck), "%s:recheck", prefix);
    snprintf(k->breaker, sizeof(k->breaker), "%s:breaker", prefix);
    snprintf(k->ratelimit, sizeof(k->ratelimit), "%s:ratelimit", prefix);
    snprintf(k->group, sizeof(k->group), "workers");
}

static size_t put(char *buf, size_t len, const char *prefix, const char *kind, const char *id) {
    int n = snprintf(buf, len, "%s:%s:%s", prefix, kind, id);
    return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

size_t fk_key_order(const fk_keys *k, const char *order_id, char *buf, size_t len) {
    return put(buf, len, k->prefix, "order", order_id);
}

size_t fk_key_idem(const fk_keys *k, const char *idem_key, char *buf, size_t len) {
    return put(buf, len, k->prefix, "idem", idem_key);
}

size_t fk_key_stock(const fk_keys *k, const char *sku, char *buf, size_t len) {
    return put(buf, len, k->prefix, "stock", sku);
}

size_t fk_key_stock_ledger(const fk_keys *k, const char *sku, char *buf, size_t len) {
    return put(buf, len, k->prefix, "stocked", sku);
}

size_t fk_key_stats_minute(const fk_keys *k, long long now_ms, char *buf, size_t len) {
    char m[32];
    snprintf(m, sizeof(m), "%lld", now_ms / 60000);
    return put(buf, len, k->prefix, "stats:m", m);
}

size_t fk_key_cooldown(const fk_keys *k, const char *buyer, char *buf, size_t len) {
    return put(buf, len, k->prefix, "cool", buyer);
}
