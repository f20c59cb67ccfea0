/* fleet.c -- produce and audit for fleet-level tests (see fleet.h). */
#include "fleet.h"
#include "harness.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const skus[FK_T_SKUS] = {"wow-60d", "steam-100", "psn-50", "xbox-25"};

const char *fk_t_sku(int i) { return skus[i % FK_T_SKUS]; }

long long fk_t_load_stock(redisContext *c, const char *prefix, long long per_sku) {
    long long total = 0;
    for (int s = 0; s < FK_T_SKUS; s++) {
        for (long long i = 0; i < per_sku; i++)
            redisAppendCommand(c, "RPUSH %s:stock:%s %s-c%lld", prefix, skus[s], skus[s], i);
        for (long long i = 0; i < per_sku; i++) {
            redisReply *r;
            if (redisGetReply(c, (void **)&r) != REDIS_OK) fk_t_fail("RPUSH failed");
            freeReplyObject(r);
        }
        total += per_sku;
    }
    return total;
}

/* FK_T_PRODUCER=redis-cli: write the orders with the redis-cli binary
 * (plain XADD lines on its stdin), as a shop's scripts would. */
static long long produce_cli(redisContext *c, const char *prefix, const char *idp,
                             long long first, long long n) {
    char cmd[256];
    long long qty_total = 0;
    snprintf(cmd, sizeof(cmd), "redis-cli -h %s -p %d > /dev/null", c->tcp.host, c->tcp.port);
    FILE *p = popen(cmd, "w");
    if (!p) fk_t_fail("cannot run redis-cli");
    for (long long k = first; k < first + n; k++) {
        int qty = (int)(k % 3) + 1;
        fprintf(p,
                "XADD %s:orders * order '{\"order_id\":\"%s%lld\",\"sku\":\"%s\","
                "\"qty\":%d,\"amount\":%d,\"currency\":\"CNY\","
                "\"buyer\":\"b%lld@example.com\"}'\n",
                prefix, idp, k, skus[k % FK_T_SKUS], qty, 1000 * qty, k % 97);
        qty_total += qty;
    }
    if (pclose(p) != 0) fk_t_fail("redis-cli failed");
    return qty_total;
}

long long fk_t_produce(redisContext *c, const char *prefix, const char *idp, long long first,
                       long long n) {
    const char *how = getenv("FK_T_PRODUCER");
    if (how && strcmp(how, "redis-cli") == 0) return produce_cli(c, prefix, idp, first, n);
    long long qty_total = 0;
    const long long chunk = 500;
    for (long long b = 0; b < n; b += chunk) {
        long long m = n - b < chunk ? n - b : chunk;
        for (long long k = first + b; k < first + b + m; k++) {
            int qty = (int)(k % 3) + 1;
            char json[512];
            snprintf(json, sizeof(json),
                     "{\"order_id\":\"%s%lld\",\"sku\":\"%s\",\"qty\":%d,\"amount\":%d,"
                     "\"currency\":\"CNY\",\"buyer\":\"b%lld@example.com\"}",
                     idp, k, skus[k % FK_T_SKUS], qty, 1000 * qty, k % 97);
            redisAppendCommand(c, "XADD %s:orders * order %s", prefix, json);
            qty_total += qty;
        }
        for (long long k = 0; k < m; k++) {
            redisReply *r;
            if (redisGetReply(c, (void **)&r) != REDIS_OK) fk_t_fail("XADD failed");
            if (r->type == REDIS_REPLY_ERROR) fk_t_fail("XADD: %s", r->str);
            freeReplyObject(r);
        }
    }
    return qty_total;
}

const char *fk_t_produce_garbage(redisContext *c, const char *prefix, long long i) {
    char key[128];
    snprintf(key, sizeof(key), "%s:orders", prefix);
    redisReply *r = NULL;
    const char *label;
    char buf[512];
    switch (i % 14) {
    case 0:
        label = "bad json";
        r = redisCommand(c, "XADD %s * order %s", key, "{\"order_id\":\"G1\",");
        break;
    case 1:
        label = "missing sku";
        snprintf(buf, sizeof(buf), "{\"order_id\":\"G%lld\",\"qty\":1,\"amount\":5}", i);
        r = redisCommand(c, "XADD %s * order %s", key, buf);
        break;
    case 2:
        label = "qty 0";
        snprintf(buf, sizeof(buf),
                 "{\"order_id\":\"G%lld\",\"sku\":\"wow-60d\",\"qty\":0,\"amount\":5}", i);
        r = redisCommand(c, "XADD %s * order %s", key, buf);
        break;
    case 3:
        label = "negative amount";
        snprintf(buf, sizeof(buf),
                 "{\"order_id\":\"G%lld\",\"sku\":\"wow-60d\",\"qty\":1,\"amount\":-5}", i);
        r = redisCommand(c, "XADD %s * order %s", key, buf);
        break;
    case 4: {
        label = "1 MiB value";
        size_t n = 1024 * 1024;
        char *big = malloc(n + 1);
        if (!big) fk_t_fail("oom");
        snprintf(big, n, "{\"order_id\":\"G%lld\",\"sku\":\"wow-60d\",\"qty\":1,\"buyer\":\"", i);
        size_t l = strlen(big);
        memset(big + l, 'x', n - l - 3);
        memcpy(big + n - 3, "\"}", 3);
        r = redisCommand(c, "XADD %s * order %b", key, big, n - 1);
        free(big);
        break;
    }
    case 5:
        label = "invalid utf-8";
        snprintf(buf, sizeof(buf),
                 "{\"order_id\":\"G%lld\",\"sku\":\"wow\xff\xfe\",\"qty\":1,\"amount\":5}", i);
        r = redisCommand(c, "XADD %s * order %s", key, buf);
        break;
    case 6:
        label = "unknown kind";
        r = redisCommand(c, "XADD %s * refund %s", key, "{\"order_id\":\"X\"}");
        break;
    case 7:
        label = "qty as string";
        snprintf(buf, sizeof(buf),
                 "{\"order_id\":\"G%lld\",\"sku\":\"wow-60d\",\"qty\":\"2\",\"amount\":5}", i);
        r = redisCommand(c, "XADD %s * order %s", key, buf);
        break;
    case 8:
        label = "qty float";
        snprintf(buf, sizeof(buf),
                 "{\"order_id\":\"G%lld\",\"sku\":\"wow-60d\",\"qty\":1.5,\"amount\":5}", i);
        r = redisCommand(c, "XADD %s * order %s", key, buf);
        break;
    case 9:
        label = "not an object";
        r = redisCommand(c, "XADD %s * order %s", key, "[1,2,3]");
        break;
    case 10:
        label = "two fields";
        snprintf(buf, sizeof(buf),
                 "{\"order_id\":\"G%lld\",\"sku\":\"wow-60d\",\"qty\":1,\"amount\":5}", i);
        r = redisCommand(c, "XADD %s * order %s note %s", key, buf, "x");
        break;
    case 11:
        label = "bad order_id";
        r = redisCommand(c, "XADD %s * order %s", key,
                         "{\"order_id\":\"a b/c\",\"sku\":\"x\",\"qty\":1,\"amount\":1}");
        break;
    case 12:
        label = "binary junk";
        r = redisCommand(c, "XADD %s * order %b", key, "\x00\x01\x02\xff{", (size_t)5);
        break;
    default:
        label = "empty value";
        r = redisCommand(c, "XADD %s * order %s", key, "");
        break;
    }
    if (!r || r->type == REDIS_REPLY_ERROR) fk_t_fail("garbage XADD failed");
    freeReplyObject(r);
    return label;
}

static int cmpstr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

long long fk_t_stat(redisContext *c, const char *prefix, const char *field) {
    long long v = fk_t_int(c, "HGET %s:stats %s", prefix, field);
    return v < 0 ? 0 : v;
}

void fk_t_audit_run(redisContext *c, const char *prefix, const char *idp, long long first,
                    long long n, fk_t_audit *a) {
    memset(a, 0, sizeof(*a));
    size_t cap = 1024, cnt = 0;
    char **codes = malloc(cap * sizeof(*codes));
    if (!codes) fk_t_fail("oom");
#define ADD_CODE(s)                                                                  \
    do {                                                                             \
        if (cnt == cap) {                                                            \
            cap *= 2;                                                                \
            codes = realloc(codes, cap * sizeof(*codes));                            \
            if (!codes) fk_t_fail("oom");                                            \
        }                                                                            \
        codes[cnt++] = strdup(s);                                                    \
    } while (0)
    for (long long k = first; k < first + n; k++)
        redisAppendCommand(c, "HMGET %s:order:%s%lld state qty codes resv", prefix, idp, k);
    for (long long k = first; k < first + n; k++) {
        redisReply *r;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) fk_t_fail("HMGET failed");
        const char *st = r->element[0]->type == REDIS_REPLY_STRING ? r->element[0]->str : NULL;
        if (!st) {
            a->missing++;
            freeReplyObject(r);
            continue;
        }
        a->orders++;
        if (!strcmp(st, "completed")) a->completed++;
        else if (!strcmp(st, "failed")) a->failed++;
        else if (!strcmp(st, "expired")) a->expired++;
        else if (!strcmp(st, "manual_review")) a->review++;
        else if (!strcmp(st, "processing")) a->processing++;
        else if (!strcmp(st, "pending_payment")) a->pending_payment++;
        for (int f = 2; f <= 3; f++) {
            if (r->element[f]->type != REDIS_REPLY_STRING) continue;
            cJSON *arr = cJSON_Parse(r->element[f]->str);
            int m = cJSON_GetArraySize(arr);
            for (int i = 0; i < m; i++) {
                cJSON *it = cJSON_GetArrayItem(arr, i);
                if (cJSON_IsString(it)) ADD_CODE(it->valuestring);
            }
            if (f == 2) {
                a->codes_delivered += m;
                if (!strcmp(st, "completed") && m != atoi(r->element[1]->str)) a->qty_mismatch++;
            } else {
                a->reserved += m;
            }
            cJSON_Delete(arr);
        }
        freeReplyObject(r);
    }
    for (int s = 0; s < FK_T_SKUS; s++) {
        redisReply *r = fk_t_cmd(c, "LRANGE %s:stock:%s 0 -1", prefix, skus[s]);
        for (size_t i = 0; i < r->elements; i++) ADD_CODE(r->element[i]->str);
        a->stock_left += (long long)r->elements;
        freeReplyObject(r);
    }
#undef ADD_CODE
    qsort(codes, cnt, sizeof(*codes), cmpstr);
    for (size_t i = 1; i < cnt; i++)
        if (strcmp(codes[i], codes[i - 1]) == 0) a->dup_codes++;
    for (size_t i = 0; i < cnt; i++) free(codes[i]);
    free(codes);
}

void fk_t_audit_print(const char *title, const fk_t_audit *a) {
    fprintf(stderr,
            "# %s\n"
            "#   records %lld (missing %lld): completed %lld, failed %lld, expired %lld, "
            "manual_review %lld, processing %lld, pending_payment %lld\n"
            "#   codes delivered %lld, reserved %lld, left in stock %lld; duplicate codes "
            "%lld; qty mismatches %lld\n",
            title, a->orders, a->missing, a->completed, a->failed, a->expired, a->review,
            a->processing, a->pending_payment, a->codes_delivered, a->reserved, a->stock_left,
            a->dup_codes, a->qty_mismatch);
}

/* HMGET state reason of one order into st/re ("(none)" / "" when absent). */
static void order_state(redisContext *c, const char *prefix, const char *id, char *st,
                        size_t stlen, char *re, size_t relen) {
    redisReply *r = fk_t_cmd(c, "HMGET %s:order:%s state reason", prefix, id);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) fk_t_fail("HMGET: unexpected reply");
    snprintf(st, stlen, "%s", r->element[0]->type == REDIS_REPLY_STRING ? r->element[0]->str
                                                                         : "(none)");
    snprintf(re, relen, "%s", r->element[1]->type == REDIS_REPLY_STRING ? r->element[1]->str
                                                                         : "");
    freeReplyObject(r);
}

int fk_t_order_is(redisContext *c, const char *prefix, const char *id, const char *state,
                  const char *reason) {
    char st[64], re[64];
    order_state(c, prefix, id, st, sizeof(st), re, sizeof(re));
    if (strcmp(st, state) == 0 && strcmp(re, reason) == 0) return 1;
    fprintf(stderr, "# order %s: want %s/%s, got %s/%s\n", id, state, reason, st, re);
    return 0;
}

typedef struct order_wait {
    redisContext *c;
    const char *prefix, *id, *state;
} order_wait;

static int order_in_state(void *arg) {
    const order_wait *w = arg;
    char st[64], re[64];
    order_state(w->c, w->prefix, w->id, st, sizeof(st), re, sizeof(re));
    return strcmp(st, w->state) == 0;
}

int fk_t_wait_order(redisContext *c, const char *prefix, const char *id, const char *state,
                    long timeout_ms) {
    order_wait w = {c, prefix, id, state};
    if (fk_t_until(order_in_state, &w, timeout_ms)) return 1;
    char st[64], re[64];
    order_state(c, prefix, id, st, sizeof(st), re, sizeof(re));
    fprintf(stderr, "# order %s is %s/%s after %ld ms, waited for %s\n", id, st, re, timeout_ms,
            state);
    return 0;
}

typedef struct field_wait {
    redisContext *c;
    const char *prefix, *id, *field, *want;
    char got[128];
} field_wait;

static int field_equals(void *arg) {
    field_wait *w = arg;
    redisReply *r = fk_t_cmd(w->c, "HGET %s:order:%s %s", w->prefix, w->id, w->field);
    snprintf(w->got, sizeof(w->got), "%s", r->type == REDIS_REPLY_STRING ? r->str : "(nil)");
    int ok = r->type == REDIS_REPLY_STRING && strcmp(r->str, w->want) == 0;
    freeReplyObject(r);
    return ok;
}

int fk_t_wait_field(redisContext *c, const char *prefix, const char *id, const char *field,
                    const char *want, long timeout_ms) {
    field_wait w = {c, prefix, id, field, want, ""};
    if (fk_t_until(field_equals, &w, timeout_ms)) return 1;
    fprintf(stderr, "# order %s: %s is %s after %ld ms, waited for %s\n", id, field, w.got,
            timeout_ms, want);
    return 0;
}
