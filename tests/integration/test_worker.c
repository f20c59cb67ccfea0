/* test_worker.c -- faka-worker end to end on a real redis-server: orders
 * flow to completed with exact codes, garbage is dead-lettered without
 * stalling anything, duplicates are recognised, a Redis crash (AOF
 * always) and SIGTERM under load lose nothing and complete nothing twice,
 * a worker that starts while Redis refuses writes (OOM) takes up its work
 * once Redis accepts them again, and bad configuration is refused with a
 * clear error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fleet.h"
#include "harness.h"

#define P "faka"

static long long env_ll(const char *name, long long def) {
    const char *v = getenv(name);
    return v && *v ? atoll(v) : def;
}

typedef struct waitarg {
    redisContext *c;
    long long want;
    const char *field;
} waitarg;

/* Done when the final-state counters reach want. */
static int all_final(void *arg) {
    waitarg *w = arg;
    long long n = fk_t_stat(w->c, P, "completed") + fk_t_stat(w->c, P, "failed") +
                  fk_t_stat(w->c, P, "expired") + fk_t_stat(w->c, P, "manual_review");
    return n >= w->want;
}

static int stat_reaches(void *arg) {
    waitarg *w = arg;
    return fk_t_stat(w->c, P, w->field) >= w->want;
}

/* N orders (default 2000, FK_T_ORDERS to change) through two workers. */
static void test_orders_complete(void **state) {
    (void)state;
    fk_t_redis r;
    fk_t_redis_start(&r, 0);
    redisContext *c = fk_t_connect(&r);
    long long n = env_ll("FK_T_ORDERS", 2000);
    long long stock = fk_t_load_stock(c, P, n) ;
    pid_t w1 = fk_t_worker(&r, "w1", NULL), w2 = fk_t_worker(&r, "w2", NULL);
    long long t0 = fk_t_now_ms();
    long long qty = fk_t_produce(c, P, "A", 1, n);
    waitarg wa = {c, n, NULL};
    assert_true(fk_t_until(all_final, &wa, 120000));
    long long ms = fk_t_now_ms() - t0;
    fk_t_audit a;
    fk_t_audit_run(c, P, "A", 1, n, &a);
    fk_t_audit_print("orders through two workers", &a);
    fprintf(stderr, "#   %lld orders in %lld ms\n", n, ms);
    assert_int_equal(a.completed, n);
    assert_int_equal(a.missing, 0);
    assert_int_equal(a.qty_mismatch, 0);
    assert_int_equal(a.dup_codes, 0);
    assert_int_equal(a.codes_delivered, qty);
    assert_int_equal(a.stock_left, stock - qty);
    assert_int_equal(fk_t_stat(c, P, "completed"), n);
    /* everything acknowledged */
    redisReply *x = fk_t_cmd(c, "XPENDING %s:orders workers", P);
    assert_int_equal(x->element[0]->integer, 0);
    freeReplyObject(x);
    assert_int_equal(fk_t_stop(w1), 0);
    assert_int_equal(fk_t_stop(w2), 0);
    redisFree(c);
    fk_t_redis_stop(&r);
}

/* Malformed entries mixed into valid load: every one dead-lettered with a
 * reason, every valid order completes, workers stay up. */
static void test_garbage_mixed(void **state) {
    (void)state;
    fk_t_redis r;
    fk_t_redis_start(&r, 0);
    redisContext *c = fk_t_connect(&r);
    long long n = env_ll("FK_T_ORDERS", 2000), bad = env_ll("FK_T_GARBAGE", 200);
    long long stock = fk_t_load_stock(c, P, n);
    pid_t w1 = fk_t_worker(&r, "w1", NULL), w2 = fk_t_worker(&r, "w2", NULL);
    long long qty = 0;
    long long step = n / bad > 0 ? n / bad : 1;
    for (long long k = 0, g = 0; k < n; k += step) {
        long long m = k + step <= n ? step : n - k;
        qty += fk_t_produce(c, P, "B", k + 1, m);
        if (g < bad) fk_t_produce_garbage(c, P, g++);
    }
    for (long long g = n / step; g < bad; g++) fk_t_produce_garbage(c, P, g);
    waitarg wd = {c, bad, "dead"};
    assert_true(fk_t_until(stat_reaches, &wd, 120000));
    waitarg wc = {c, n, "completed"};
    assert_true(fk_t_until(stat_reaches, &wc, 120000));
    fk_t_audit a;
    fk_t_audit_run(c, P, "B", 1, n, &a);
    fk_t_audit_print("valid orders among garbage", &a);
    assert_int_equal(a.completed, n);
    assert_int_equal(a.dup_codes, 0);
    assert_int_equal(a.stock_left, stock - qty);
    assert_int_equal(fk_t_int(c, "XLEN %s:dead", P), bad);
    /* every dead entry says why, and names where it came from */
    redisReply *d = fk_t_cmd(c, "XRANGE %s:dead - +", P);
    for (size_t i = 0; i < d->elements; i++) {
        redisReply *f = d->element[i]->element[1];
        int has_error = 0, has_source = 0;
        for (size_t k = 0; k + 1 < f->elements; k += 2) {
            if (!strcmp(f->element[k]->str, "error") && f->element[k + 1]->len > 0) has_error = 1;
            if (!strcmp(f->element[k]->str, "source_id") && f->element[k + 1]->len > 0)
                has_source = 1;
            if (!strcmp(f->element[k]->str, "raw")) assert_true(f->element[k + 1]->len <= 4200);
        }
        assert_true(has_error && has_source);
    }
    freeReplyObject(d);
    /* an invalid order whose id was readable is recorded failed: a bad
     * field (G2), and also a value too long (G4, 1 MiB) or not UTF-8 (G5),
     * or an entry with a second field (G10) */
    for (int g = 2; g <= 10 && g < bad; g += g == 2 ? 2 : g == 5 ? 5 : 1) {
        redisReply *s = fk_t_cmd(c, "HMGET %s:order:G%d state reason message", P, g);
        assert_string_equal(s->element[0]->str, "failed");
        assert_string_equal(s->element[1]->str, "invalid_order");
        if (g == 5) assert_non_null(strstr(s->element[2]->str, "UTF-8"));
        freeReplyObject(s);
    }
    assert_int_equal(kill(w1, 0), 0);
    assert_int_equal(kill(w2, 0), 0);
    redisReply *x = fk_t_cmd(c, "XPENDING %s:orders workers", P);
    assert_int_equal(x->element[0]->integer, 0);
    freeReplyObject(x);
    assert_int_equal(fk_t_stop(w1), 0);
    assert_int_equal(fk_t_stop(w2), 0);
    redisFree(c);
    fk_t_redis_stop(&r);
}

static int order_state_is(redisContext *c, const char *id, const char *st) {
    redisReply *r = fk_t_cmd(c, "HGET %s:order:%s state", P, id);
    int ok = r->type == REDIS_REPLY_STRING && strcmp(r->str, st) == 0;
    freeReplyObject(r);
    return ok;
}

/* Duplicate clicks: same key other id -> duplicate; same key other items
 * -> idempotency_conflict; another id naming an order's own id as its key
 * -> duplicate of that order; the same order twice -> delivered once; an
 * existing id with other items is dead-lettered and the order untouched;
 * not enough stock -> out_of_stock, nothing reserved. */
static void test_idempotency(void **state) {
    (void)state;
    fk_t_redis r;
    fk_t_redis_start(&r, 0);
    redisContext *c = fk_t_connect(&r);
    fk_t_load_stock(c, P, 5);
    pid_t w = fk_t_worker(&r, "w1", NULL);
    const char *o1 = "{\"order_id\":\"D1\",\"idempotency_key\":\"chk-1\",\"sku\":\"wow-60d\","
                     "\"qty\":2,\"amount\":3000}";
    const char *o2 = "{\"order_id\":\"D2\",\"idempotency_key\":\"chk-1\",\"sku\":\"wow-60d\","
                     "\"qty\":2,\"amount\":3000}";
    const char *o3 = "{\"order_id\":\"D3\",\"idempotency_key\":\"chk-1\",\"sku\":\"wow-60d\","
                     "\"qty\":1,\"amount\":1500}";
    const char *o1b = "{\"order_id\":\"D1\",\"idempotency_key\":\"chk-1\",\"sku\":\"wow-60d\","
                      "\"qty\":3,\"amount\":3000}";
    const char *oos = "{\"order_id\":\"D4\",\"sku\":\"psn-50\",\"qty\":9,\"amount\":1}";
    freeReplyObject(fk_t_cmd(c, "XADD %s:orders * order %s", P, o1));
    freeReplyObject(fk_t_cmd(c, "XADD %s:orders * order %s", P, o1));
    freeReplyObject(fk_t_cmd(c, "XADD %s:orders * order %s", P, o2));
    freeReplyObject(fk_t_cmd(c, "XADD %s:orders * order %s", P, o3));
    freeReplyObject(fk_t_cmd(c, "XADD %s:orders * order %s", P, o1b));
    freeReplyObject(fk_t_cmd(c, "XADD %s:orders * order %s", P, oos));
    waitarg wa = {c, 4, NULL};
    assert_true(fk_t_until(all_final, &wa, 20000));
    waitarg wd = {c, 1, "dead"};
    assert_true(fk_t_until(stat_reaches, &wd, 20000));
    assert_true(order_state_is(c, "D1", "completed"));
    redisReply *x = fk_t_cmd(c, "HMGET %s:order:D2 state reason duplicate_of", P);
    assert_string_equal(x->element[0]->str, "failed");
    assert_string_equal(x->element[1]->str, "duplicate");
    assert_string_equal(x->element[2]->str, "D1");
    freeReplyObject(x);
    x = fk_t_cmd(c, "HMGET %s:order:D3 state reason duplicate_of", P);
    assert_string_equal(x->element[1]->str, "idempotency_conflict");
    assert_string_equal(x->element[2]->str, "D1");
    freeReplyObject(x);
    x = fk_t_cmd(c, "HMGET %s:order:D4 state reason", P);
    assert_string_equal(x->element[1]->str, "out_of_stock");
    freeReplyObject(x);
    x = fk_t_cmd(c, "GET %s:idem:chk-1", P);
    assert_string_equal(x->str, "D1");
    freeReplyObject(x);
    /* D1 delivered once: 2 codes gone of 5 */
    assert_int_equal(fk_t_int(c, "LLEN %s:stock:wow-60d", P), 3);
    assert_int_equal(fk_t_int(c, "LLEN %s:stock:psn-50", P), 5);
    assert_int_equal(fk_t_stat(c, P, "completed"), 1);
    assert_int_equal(fk_t_int(c, "XLEN %s:dead", P), 1);

    /* the implicit key: D7 sends none (its id is its key; no idem key is
     * written), D8 names D7 as its key afterwards: a duplicate of D7 */
    freeReplyObject(fk_t_cmd(c, "XADD %s:orders * order %s", P,
                             "{\"order_id\":\"D7\",\"sku\":\"wow-60d\",\"qty\":1,"
                             "\"amount\":100}"));
    waitarg w7 = {c, 5, NULL};
    assert_true(fk_t_until(all_final, &w7, 20000));
    assert_true(order_state_is(c, "D7", "completed"));
    assert_int_equal(fk_t_int(c, "EXISTS %s:idem:D7", P), 0);
    freeReplyObject(fk_t_cmd(c, "XADD %s:orders * order %s", P,
                             "{\"order_id\":\"D8\",\"idempotency_key\":\"D7\","
                             "\"sku\":\"wow-60d\",\"qty\":1,\"amount\":100}"));
    waitarg w8 = {c, 6, NULL};
    assert_true(fk_t_until(all_final, &w8, 20000));
    x = fk_t_cmd(c, "HMGET %s:order:D8 state reason duplicate_of", P);
    assert_string_equal(x->element[0]->str, "failed");
    assert_string_equal(x->element[1]->str, "duplicate");
    assert_string_equal(x->element[2]->str, "D7");
    freeReplyObject(x);
    assert_int_equal(fk_t_int(c, "LLEN %s:stock:wow-60d", P), 2); /* D7's one code only */
    assert_int_equal(fk_t_stop(w), 0);
    redisFree(c);
    fk_t_redis_stop(&r);
}

/* A worker that starts while Redis is out of memory cannot create (or
 * confirm) its consumer group: XGROUP CREATE is refused with OOM even when
 * the group exists. It must keep asking and take up orders once Redis
 * accepts writes again; it used to wait silently until a reconnect. */
static void test_group_after_oom(void **state) {
    (void)state;
    fk_t_redis r;
    fk_t_redis_start(&r, 0);
    redisContext *c = fk_t_connect(&r);
    fk_t_load_stock(c, P, 2);
    freeReplyObject(fk_t_cmd(c, "XGROUP CREATE %s:orders workers 0 MKSTREAM", P));
    freeReplyObject(fk_t_cmd(c, "CONFIG SET maxmemory 1"));
    pid_t w = fk_t_worker(&r, "w1", NULL);
    fk_t_sleep_ms(1500);
    freeReplyObject(fk_t_cmd(c, "CONFIG SET maxmemory 0"));
    freeReplyObject(fk_t_cmd(c, "XADD %s:orders * order %s", P,
                             "{\"order_id\":\"M1\",\"sku\":\"wow-60d\",\"qty\":1,"
                             "\"amount\":100}"));
    waitarg wa = {c, 1, NULL};
    assert_true(fk_t_until(all_final, &wa, 10000));
    assert_true(order_state_is(c, "M1", "completed"));
    assert_int_equal(fk_t_stop(w), 0);
    redisFree(c);
    fk_t_redis_stop(&r);
}

/* The stream key replaced by a string: every read fails with WRONGTYPE.
 * The worker says so about once a second (not on every 100 ms tick), and
 * reads again once the key is gone (the group is created anew). */
static void test_read_error(void **state) {
    (void)state;
    fk_t_redis r;
    fk_t_redis_start(&r, 0);
    redisContext *c = fk_t_connect(&r);
    fk_t_load_stock(c, P, 2);
    pid_t w = fk_t_worker(&r, "w1", NULL);
    fk_t_sleep_ms(500);
    freeReplyObject(fk_t_cmd(c, "DEL %s:orders", P));
    freeReplyObject(fk_t_cmd(c, "SET %s:orders not-a-stream", P));
    fk_t_sleep_ms(3000);
    char log[400];
    snprintf(log, sizeof(log), "%s/w1.log", r.dir);
    int lines = fk_t_log_count(log, "XREADGROUP failed", NULL);
    fprintf(stderr, "# %d XREADGROUP lines in 3 s\n", lines);
    assert_true(lines >= 1 && lines <= 5);
    freeReplyObject(fk_t_cmd(c, "DEL %s:orders", P));
    fk_t_sleep_ms(300);
    freeReplyObject(fk_t_cmd(c, "XADD %s:orders * order %s", P,
                             "{\"order_id\":\"E1\",\"sku\":\"wow-60d\",\"qty\":1,"
                             "\"amount\":100}"));
    waitarg wa = {c, 1, NULL};
    assert_true(fk_t_until(all_final, &wa, 10000));
    assert_true(order_state_is(c, "E1", "completed"));
    assert_int_equal(fk_t_stop(w), 0);
    redisFree(c);
    fk_t_redis_stop(&r);
}

/* A worker says once when Redis may lose acknowledged writes on a crash
 * (appendonly no, or appendfsync other than always), and is silent when
 * Redis keeps them. */
static void test_durability_warning(void **state) {
    (void)state;
    for (int aof = 0; aof <= 1; aof++) {
        fk_t_redis r;
        fk_t_redis_start(&r, aof);
        pid_t w = fk_t_worker(&r, "w1", NULL);
        fk_t_sleep_ms(1500);
        assert_int_equal(fk_t_stop(w), 0);
        char log[400];
        snprintf(log, sizeof(log), "%s/w1.log", r.dir);
        int lines = fk_t_log_count(log, "redis.durability", NULL);
        fprintf(stderr, "# appendonly %s: %d redis.durability lines\n", aof ? "yes" : "no",
                lines);
        assert_int_equal(lines, aof ? 0 : 1);
        fk_t_redis_stop(&r);
    }
}

typedef struct producer_arg {
    int port;
    long long n;
} producer_arg;

/* Redis is killed (SIGKILL) and restarted mid-load with appendfsync
 * always: every order completes, none twice, no code lost. */
static void test_redis_restart(void **state) {
    (void)state;
    fk_t_redis r;
    fk_t_redis_start(&r, 1);
    redisContext *c = fk_t_connect(&r);
    /* enough orders that the fleet is still busy when the crash comes:
     * with the gateway off, 2,000 are done before the first poll */
    long long n = env_ll("FK_T_ORDERS", 2000);
    if (n < 10000) n = 10000;
    long long stock = fk_t_load_stock(c, P, n);
    /* the backlog first, so the crash lands while the fleet works on it */
    long long qty = fk_t_produce(c, P, "R", 1, n);
    const char *extra[] = {"--redis-timeout-ms=1000", NULL};
    pid_t w1 = fk_t_worker(&r, "w1", extra), w2 = fk_t_worker(&r, "w2", extra);
    /* crash Redis while the fleet is busy with the backlog */
    waitarg wp = {c, n / 5, "completed"};
    assert_true(fk_t_until(stat_reaches, &wp, 60000));
    long long at_kill = fk_t_stat(c, P, "completed");
    redisFree(c);
    fk_t_redis_kill(&r, SIGKILL);
    fk_t_sleep_ms(1500);
    fk_t_redis_restart(&r);
    c = fk_t_connect(&r);
    long long after = fk_t_stat(c, P, "completed");
    fprintf(stderr, "# redis SIGKILLed at %lld/%lld completed; %lld survived in the AOF\n",
            at_kill, n, after);
    assert_true(after < n); /* the crash really hit mid-load */
    waitarg wa = {c, n, NULL};
    assert_true(fk_t_until(all_final, &wa, 120000));
    fk_t_audit a;
    fk_t_audit_run(c, P, "R", 1, n, &a);
    fk_t_audit_print("after a Redis SIGKILL and restart", &a);
    assert_int_equal(a.completed, n);
    assert_int_equal(a.dup_codes, 0);
    assert_int_equal(a.qty_mismatch, 0);
    assert_int_equal(a.codes_delivered, qty);
    assert_int_equal(a.stock_left, stock - qty);
    assert_int_equal(fk_t_stat(c, P, "completed"), n); /* none completed twice */
    assert_int_equal(kill(w1, 0), 0);
    assert_int_equal(kill(w2, 0), 0);
    assert_int_equal(fk_t_stop(w1), 0);
    assert_int_equal(fk_t_stop(w2), 0);
    redisFree(c);
    fk_t_redis_stop(&r);
}

/* SIGTERM under load: the worker drains and exits 0; what it acked is
 * done; the rest is still there for the next worker. A second signal
 * exits at once. */
static void test_sigterm_drain(void **state) {
    (void)state;
    fk_t_redis r;
    fk_t_redis_start(&r, 0);
    redisContext *c = fk_t_connect(&r);
    long long n = env_ll("FK_T_ORDERS", 2000);
    long long stock = fk_t_load_stock(c, P, n);
    long long qty = fk_t_produce(c, P, "S", 1, n);
    pid_t w1 = fk_t_worker(&r, "w1", NULL);
    waitarg wp = {c, n / 20, "completed"};
    assert_true(fk_t_until(stat_reaches, &wp, 60000));
    kill(w1, SIGTERM);
    assert_int_equal(fk_t_wait(w1, 15000), 0);
    long long done = fk_t_stat(c, P, "completed");
    fprintf(stderr, "# SIGTERM after %lld of %lld; worker exited 0\n", done, n);
    /* nothing pending on the stopped consumer that it had not finished */
    redisReply *x = fk_t_cmd(c, "XPENDING %s:orders workers", P);
    long long pending = x->element[0]->integer;
    freeReplyObject(x);
    assert_int_equal(pending, 0);
    pid_t w2 = fk_t_worker(&r, "w2", NULL);
    waitarg wa = {c, n, NULL};
    assert_true(fk_t_until(all_final, &wa, 120000));
    fk_t_audit a;
    fk_t_audit_run(c, P, "S", 1, n, &a);
    fk_t_audit_print("after SIGTERM drain and a new worker", &a);
    assert_int_equal(a.completed, n);
    assert_int_equal(a.dup_codes, 0);
    assert_int_equal(a.stock_left, stock - qty);
    /* two signals: immediate exit with status 1 */
    kill(w2, SIGTERM);
    kill(w2, SIGTERM);
    int st = fk_t_wait(w2, 10000);
    assert_true(st == 0 || st == 1);
    redisFree(c);
    fk_t_redis_stop(&r);
}

static int run_worker_args(const char *const args[], char *out, size_t outlen) {
    return fk_t_run("workers/faka-worker", args, out, outlen);
}

/* Garbage configuration is refused with exit 2 and a sentence that names
 * the option; --help exits 0. */
static void test_bad_config(void **state) {
    (void)state;
    char out[8192];
    const char *help[] = {"--help", NULL};
    assert_int_equal(run_worker_args(help, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "FAKA_REDIS_URL"));
    const char *cases[][3] = {
        {"--concurrency", "abc", "concurrency"},
        {"--concurrency", "0", "concurrency"},
        {"--redis-url", "http://x", "redis://"},
        {"--redis-url", "redis://host:99999", "port"},
        {"--lease-ms", "-5", "lease-ms"},
        {"--gateway", "ftp://x", "gateway"},
        {"--prefix", "a b", "prefix"},
        {"--no-such-flag", "1", "unknown option"},
        {"--log-level", "loud", "log-level"},
        {"--webhook-url", "http://shop/hook", "webhook-secret"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[] = {cases[i][0], cases[i][1], NULL};
        int st = run_worker_args(args, out, sizeof(out));
        if (st != 2 || !strstr(out, cases[i][2]))
            fprintf(stderr, "case %s %s -> %d: %s\n", cases[i][0], cases[i][1], st, out);
        assert_int_equal(st, 2);
        assert_non_null(strstr(out, cases[i][2]));
    }
    const char *missing[] = {"--lease-ms", NULL};
    assert_int_equal(run_worker_args(missing, out, sizeof(out)), 2);
    /* environment garbage too */
    setenv("FAKA_BATCH", "lots", 1);
    const char *none[] = {NULL};
    assert_int_equal(run_worker_args(none, out, sizeof(out)), 2);
    assert_non_null(strstr(out, "FAKA_BATCH"));
    unsetenv("FAKA_BATCH");
}

/* The id of the worker's command connection (named faka-worker:<name>
 * like its read connection, which sits blocked in XREADGROUP), or -1. */
static long long cmd_conn_id(redisContext *c, const char *name) {
    redisReply *r = fk_t_cmd(c, "CLIENT LIST");
    long long id = -1;
    char want[80];
    snprintf(want, sizeof(want), " name=faka-worker:%s ", name);
    for (char *line = r->str; line && *line && id < 0;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (strstr(line, want) && !strstr(line, "cmd=xreadgroup")) id = atoll(line + 3);
        line = nl ? nl + 1 : NULL;
    }
    freeReplyObject(r);
    return id;
}

static int pending_is(void *arg) {
    waitarg *w = arg;
    redisReply *x = fk_t_cmd(w->c, "XPENDING %s:orders workers", P);
    int ok = x->type == REDIS_REPLY_ARRAY && x->element[0]->integer == w->want;
    freeReplyObject(x);
    return ok;
}

/* Entries left pending on a worker (their accept failed) are taken up
 * again as soon as its command connection comes back, not only a lease
 * later by the reclaim sweep: the read connection's blocking read, in
 * flight across the reconnect, must not count as the drain. */
static void test_pel_after_cmd_reconnect(void **state) {
    (void)state;
    fk_t_redis r;
    fk_t_redis_start(&r, 0);
    redisContext *c = fk_t_connect(&r);
    const char *extra[] = {"--lease-ms=20000", NULL};
    pid_t w = fk_t_worker(&r, "w1", extra);
    freeReplyObject(fk_t_cmd(c, "SET %s:stock:wow-60d not-a-list", P));
    for (int i = 1; i <= 5; i++) {
        char json[160];
        snprintf(json, sizeof(json),
                 "{\"order_id\":\"K%d\",\"sku\":\"wow-60d\",\"qty\":1,\"amount\":100}", i);
        freeReplyObject(fk_t_cmd(c, "XADD %s:orders * order %s", P, json));
    }
    waitarg wp = {c, 5, NULL};
    assert_true(fk_t_until(pending_is, &wp, 10000));
    fk_t_sleep_ms(500); /* their accepts failed; the worker reads new entries */
    assert_int_equal(fk_t_stat(c, P, "completed"), 0);
    freeReplyObject(fk_t_cmd(c, "DEL %s:stock:wow-60d", P));
    fk_t_load_stock(c, P, 5);
    long long id = cmd_conn_id(c, "w1");
    assert_true(id > 0);
    freeReplyObject(fk_t_cmd(c, "CLIENT KILL ID %lld", id));
    waitarg wc = {c, 5, "completed"};
    long long t0 = fk_t_now_ms();
    assert_true(fk_t_until(stat_reaches, &wc, 8000)); /* the reclaim would take 25 s */
    fprintf(stderr, "# 5 pending entries completed %lld ms after the reconnect\n",
            fk_t_now_ms() - t0);
    assert_int_equal(fk_t_stop(w), 0);
    redisFree(c);
    fk_t_redis_stop(&r);
}

/* An order entry dead-lettered before any worker could accept it (here:
 * its stock key of another type fails every accept) has no record for
 * the retry entry the reclaim adds: the worker says so, loudly, instead
 * of acknowledging the retry in silence. */
static void test_dead_before_accept(void **state) {
    (void)state;
    fk_t_redis r;
    fk_t_redis_start(&r, 0);
    redisContext *c = fk_t_connect(&r);
    const char *extra[] = {"--lease-ms=1000", "--max-deliveries=2", NULL};
    pid_t w = fk_t_worker(&r, "w1", extra);
    freeReplyObject(fk_t_cmd(c, "SET %s:stock:wow-60d not-a-list", P));
    freeReplyObject(fk_t_cmd(c, "XADD %s:orders * order %s", P,
                             "{\"order_id\":\"DB1\",\"sku\":\"wow-60d\",\"qty\":1,"
                             "\"amount\":100}"));
    waitarg wd = {c, 1, "dead"};
    assert_true(fk_t_until(stat_reaches, &wd, 20000));
    char log[400];
    snprintf(log, sizeof(log), "%s/w1.log", r.dir);
    long long t0 = fk_t_now_ms();
    while (fk_t_log_count(log, "order.dead_before_accept", "DB1") < 1 &&
           fk_t_now_ms() - t0 < 10000)
        fk_t_sleep_ms(100);
    assert_int_equal(fk_t_log_count(log, "order.dead_before_accept", "DB1"), 1);
    assert_int_equal(fk_t_int(c, "EXISTS %s:order:DB1", P), 0);
    redisReply *d = fk_t_cmd(c, "XRANGE %s:dead - +", P);
    assert_int_equal(d->elements, 1);
    freeReplyObject(d);
    assert_int_equal(fk_t_stop(w), 0);
    redisFree(c);
    fk_t_redis_stop(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_bad_config, fk_t_teardown),
        cmocka_unit_test_teardown(test_orders_complete, fk_t_teardown),
        cmocka_unit_test_teardown(test_idempotency, fk_t_teardown),
        cmocka_unit_test_teardown(test_group_after_oom, fk_t_teardown),
        cmocka_unit_test_teardown(test_read_error, fk_t_teardown),
        cmocka_unit_test_teardown(test_durability_warning, fk_t_teardown),
        cmocka_unit_test_teardown(test_garbage_mixed, fk_t_teardown),
        cmocka_unit_test_teardown(test_sigterm_drain, fk_t_teardown),
        cmocka_unit_test_teardown(test_redis_restart, fk_t_teardown),
        cmocka_unit_test_teardown(test_pel_after_cmd_reconnect, fk_t_teardown),
        cmocka_unit_test_teardown(test_dead_before_accept, fk_t_teardown),
    };
    if (getenv("FK_T_FILTER")) cmocka_set_test_filter(getenv("FK_T_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
