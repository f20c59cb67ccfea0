/* keys.h -- names of faka's Redis keys under the configured prefix.
 *
 * The keyspace is documented in docs/KEYSPACE.md; this is the only C code
 * that spells a key name. Fixed keys are built once; per-order, per-key and
 * per-SKU names are written into caller buffers. */
#ifndef FK_KEYS_H
#define FK_KEYS_H

#include <stddef.h>

#define FK_KEY_MAX 1400 /* prefix(64) + ':idem:' + 255-byte key, with room */

typedef struct fk_keys {
    char prefix[65];
    char stream[96];   /* {p}:orders   stream of jobs */
    char retry[96];    /* {p}:retry    zset order_id -> due ms */
    char review[96];   /* {p}:review   zset order_id -> entered ms */
    char dead[96];     /* {p}:dead     stream of poison entries */
    char stats[96];    /* {p}:stats    hash of counters */
    char notify[96];   /* {p}:notify   zset order_id -> next webhook attempt ms */
    char workers[96];  /* {p}:workers  zset worker id -> last heartbeat ms */
    char reapers[96];  /* {p}:reapers  zset reaper id -> last heartbeat ms */
    char active[96];   /* {p}:active   zset order_id -> deadline ms (non-final orders) */
    char recheck[96];  /* {p}:recheck  zset order_id -> next look ms (expired on a 404) */
    char breaker[96];  /* {p}:breaker  hash, fleet-wide gateway circuit breaker */
    char ratelimit[96];/* {p}:ratelimit hash, gateway token bucket */
    char group[16];    /* consumer group name: "workers" */
} fk_keys;

/* Build the fixed names for prefix (already validated by config). */
void fk_keys_init(fk_keys *k, const char *prefix);

/* {p}:order:{order_id} */
size_t fk_key_order(const fk_keys *k, const char *order_id, char *buf, size_t len);
/* {p}:idem:{idempotency_key} */
size_t fk_key_idem(const fk_keys *k, const char *idem_key, char *buf, size_t len);
/* {p}:stock:{sku} */
size_t fk_key_stock(const fk_keys *k, const char *sku, char *buf, size_t len);
/* {p}:stocked:{sku} set of every code `fakactl stock add` ever stocked */
size_t fk_key_stock_ledger(const fk_keys *k, const char *sku, char *buf, size_t len);
/* {p}:stats:m:{minute}, minute = ms since epoch / 60000 */
size_t fk_key_stats_minute(const fk_keys *k, long long now_ms, char *buf, size_t len);
/* {p}:cool:{buyer} per-buyer failure window (rate limiting) */
size_t fk_key_cooldown(const fk_keys *k, const char *buyer, char *buf, size_t len);

#endif
