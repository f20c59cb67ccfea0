/* test_guard.c -- the gateway guard's Lua (guard_check.lua, guard_report.lua)
 * and the buyer cooldown (lib.lua fk_cool_fail via transition.lua, and
 * accept.lua's refusal) on a real redis-server, through the argument
 * builders the workers use (guard.c, transition.c):
 *  - breaker: closed -> open after N consecutive failures; open refuses with
 *    the time left; half-open after the cool-down lets exactly `probes`
 *    calls through; a probe success closes, a probe failure re-opens; a
 *    late non-probe answer moves nothing; batched reports keep the streak
 *    across batches; a probe that never reports is
 *    replaced after another cool-down; the error-percent rule with its
 *    sliding window and minimum calls;
 *  - token bucket: about `rate` calls per second over 2 s (the measured
 *    rate is printed), burst, no limit at 0, refusals say how long to wait
 *    (each refused caller its own slot, one token apart),
 *    and the bucket and the breaker never take from each other on refusal;
 *  - cooldown: N declined / risk-rejected orders of a buyer within the
 *    window get the next order refused as rate_limited with the seconds to
 *    wait in its message, holding nothing; other failure reasons and
 *    buyer-less orders never count; after the cooldown the buyer is served. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "guard.h"
#include "guard_local.h"
#include "harness.h"
#include "keys.h"
#include "scripts.h"
#include "state.h"
#include "transition.h"

#define PREFIX "fkg"

static fk_t_redis g_srv;
static redisContext *g_c;
static fk_keys g_k;

/* FCALL a script's function (faka's library, loaded in group_setup) with
 * a's KEYS/ARGV, as the workers do. */
static redisReply *eval(int id, int nkeys, const fk_args *a) {
    const char *argv[FK_ARGS_MAX + 3];
    size_t lens[FK_ARGS_MAX + 3];
    char nk[16];
    int argc = fk_script_argv(id, nkeys, a, nk, argv, lens);
    redisReply *r = redisCommandArgv(g_c, argc, argv, lens);
    if (!r) fk_t_fail("FCALL: connection error");
    if (r->type == REDIS_REPLY_ERROR) fk_t_fail("FCALL %s: %s", fk_script_name(id), r->str);
    return r;
}

static fk_guard_verdict check(const fk_guard_policy *p) {
    fk_args a;
    fk_guard_check_args(&a, &g_k, p);
    redisReply *r = eval(FK_LUA_GUARD_CHECK, FK_GUARD_CHECK_NKEYS, &a);
    fk_guard_verdict v;
    assert_int_equal(fk_guard_parse_verdict(r, &v), 0);
    freeReplyObject(r);
    return v;
}

/* Report a batch of outcomes; returns the breaker's change ('' | opened |
 * closed | reopened) in a static buffer. */
static const char *report_n(const fk_guard_policy *p, long long nok, long long nbad,
                            long long trail, int probe) {
    static char change[32];
    fk_args a;
    fk_guard_report_args(&a, &g_k, p, nok, nbad, trail, probe);
    redisReply *r = eval(FK_LUA_GUARD_REPORT, FK_GUARD_REPORT_NKEYS, &a);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    snprintf(change, sizeof(change), "%s", r->element[1]->str);
    freeReplyObject(r);
    return change;
}

/* Report one call, as the reaper and a probe do. */
static const char *report(const fk_guard_policy *p, int failed, int probe) {
    return report_n(p, !failed, !!failed, !!failed, probe);
}

static void breaker_state(char *buf, size_t len) {
    redisReply *r = fk_t_cmd(g_c, "HGET %s state", g_k.breaker);
    snprintf(buf, len, "%s", r->type == REDIS_REPLY_STRING ? r->str : "closed");
    freeReplyObject(r);
}

static fk_guard_policy policy(void) {
    fk_guard_policy p = {5, 0, 20, 10, 300, 2, 0, 0};
    return p;
}

static int group_setup(void **state) {
    (void)state;
    if (fk_scripts_init() != 0) fk_t_fail("scripts init");
    fk_t_redis_start(&g_srv, 0);
    g_c = fk_t_connect(&g_srv);
    fk_keys_init(&g_k, PREFIX);
    size_t tlen;
    const char *text = fk_script_text(FK_LUA_GUARD_CHECK, &tlen);
    redisReply *r = fk_t_cmd(g_c, "FUNCTION LOAD %b", text, tlen);
    if (r->type == REDIS_REPLY_ERROR) fk_t_fail("FUNCTION LOAD: %s", r->str);
    freeReplyObject(r);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    redisFree(g_c);
    fk_t_redis_stop(&g_srv);
    fk_scripts_free();
    return 0;
}

static int flush(void **state) {
    (void)state;
    freeReplyObject(fk_t_cmd(g_c, "FLUSHALL"));
    return 0;
}

/* ---- breaker --------------------------------------------------------------- */

static void t_breaker_consecutive(void **state) {
    (void)state;
    fk_guard_policy p = policy();
    char st[32];
    fk_guard_verdict v = check(&p);
    assert_true(v.allow);
    assert_false(v.probe);
    assert_string_equal(v.state, "closed");
    /* a success in between resets the count */
    for (int i = 0; i < 4; i++) assert_string_equal(report(&p, 1, 0), "");
    assert_string_equal(report(&p, 0, 0), "");
    for (int i = 0; i < 4; i++) assert_string_equal(report(&p, 1, 0), "");
    assert_true(check(&p).allow);
    long long t_open = fk_t_now_ms();
    assert_string_equal(report(&p, 1, 0), "opened"); /* the 5th in a row */
    breaker_state(st, sizeof(st));
    assert_string_equal(st, "open");
    v = check(&p);
    assert_false(v.allow);
    assert_string_equal(v.why, "open");
    assert_true(v.wait_ms > 0 && v.wait_ms <= 300);
    /* failures reported while open (calls sent before) change nothing */
    assert_string_equal(report(&p, 1, 0), "");
    /* half-open once the cool-down has passed: exactly 2 probes */
    long long t_half = 0;
    for (;;) {
        v = check(&p);
        if (v.allow) {
            t_half = fk_t_now_ms();
            break;
        }
        assert_true(fk_t_now_ms() - t_open < 2000);
        fk_t_sleep_ms(5);
    }
    assert_true(v.probe);
    assert_string_equal(v.state, "half_open");
    fk_guard_verdict v2 = check(&p), v3 = check(&p);
    assert_true(v2.allow && v2.probe);
    assert_false(v3.allow);
    assert_string_equal(v3.why, "half_open");
    assert_true(v3.wait_ms > 0 && v3.wait_ms <= 300);
    fprintf(stderr, "# breaker: opened after 5 consecutive failures; half-open after %lld ms "
                    "(cool-down 300 ms); 2 probes let through, the 3rd refused\n",
            t_half - t_open);
    assert_true(t_half - t_open >= 290);
    /* a late answer of a non-probe call moves nothing */
    assert_string_equal(report(&p, 0, 0), "");
    breaker_state(st, sizeof(st));
    assert_string_equal(st, "half_open");
    /* a probe fails: open again, for a full cool-down */
    long long t_re = fk_t_now_ms();
    assert_string_equal(report(&p, 1, 1), "reopened");
    v = check(&p);
    assert_false(v.allow);
    assert_string_equal(v.why, "open");
    do {
        fk_t_sleep_ms(5);
        v = check(&p);
    } while (!v.allow && fk_t_now_ms() - t_re < 2000);
    assert_true(v.allow && v.probe);
    assert_true(fk_t_now_ms() - t_re >= 290);
    /* a probe succeeds: closed, and calls flow without probes */
    assert_string_equal(report(&p, 0, 1), "closed");
    for (int i = 0; i < 10; i++) {
        v = check(&p);
        assert_true(v.allow);
        assert_false(v.probe);
        assert_string_equal(v.state, "closed");
    }
    redisReply *r = fk_t_cmd(g_c, "HMGET %s opens denied consecutive", g_k.breaker);
    assert_string_equal(r->element[0]->str, "2");
    assert_true(atoll(r->element[1]->str) >= 3);
    assert_string_equal(r->element[2]->str, "0");
    freeReplyObject(r);
}

/* Workers report in batches (guard_local.c): a batch without a success
 * adds its failures to the streak, one with a success restarts the streak
 * at its trailing failures; calls and failures are counted in full. */
static void t_breaker_batches(void **state) {
    (void)state;
    fk_guard_policy p = policy(); /* opens after 5 in a row */
    char st[32];
    assert_string_equal(report_n(&p, 3, 2, 2, 0), "");  /* ... ok, fail, fail: streak 2 */
    assert_string_equal(report_n(&p, 0, 2, 2, 0), "");  /* streak 4 */
    assert_string_equal(report_n(&p, 4, 3, 0, 0), "");  /* ends on a success: streak 0 */
    assert_string_equal(report_n(&p, 0, 4, 4, 0), "");  /* streak 4 */
    redisReply *r = fk_t_cmd(g_c, "HMGET %s consecutive calls_ok calls_failed", g_k.breaker);
    assert_string_equal(r->element[0]->str, "4");
    assert_string_equal(r->element[1]->str, "7");
    assert_string_equal(r->element[2]->str, "11");
    freeReplyObject(r);
    assert_string_equal(report_n(&p, 0, 1, 1, 0), "opened"); /* the 5th in a row */
    breaker_state(st, sizeof(st));
    assert_string_equal(st, "open");
    /* a batch sent while open (calls made before the worker saw it) moves
     * nothing */
    assert_string_equal(report_n(&p, 5, 0, 0, 0), "");
    breaker_state(st, sizeof(st));
    assert_string_equal(st, "open");
}

/* A probe whose worker died never reports: after another cool-down its
 * slot is handed out again, so the breaker cannot stick half-open. */
static void t_breaker_lost_probe(void **state) {
    (void)state;
    fk_guard_policy p = policy();
    p.probes = 1;
    p.cooldown_ms = 200;
    for (int i = 0; i < 5; i++) report(&p, 1, 0);
    fk_t_sleep_ms(220);
    fk_guard_verdict v = check(&p);
    assert_true(v.allow && v.probe); /* ... and never reports */
    assert_false(check(&p).allow);
    fk_t_sleep_ms(220);
    v = check(&p);
    assert_true(v.allow && v.probe);
}

static void t_breaker_error_pct(void **state) {
    (void)state;
    fk_guard_policy p = {0, 50, 20, 2, 300, 1, 0, 0}; /* consecutive rule off */
    /* 10 ok + 9 failed: 19 calls, below the minimum */
    for (int i = 0; i < 10; i++) assert_string_equal(report(&p, 0, 0), "");
    for (int i = 0; i < 9; i++) assert_string_equal(report(&p, 1, 0), "");
    assert_true(check(&p).allow);
    /* the 20th call makes 10 of 20 = 50 %: open */
    assert_string_equal(report(&p, 1, 0), "opened");
    assert_false(check(&p).allow);
    /* the window slides: failures older than it no longer count */
    flush(NULL);
    fk_guard_policy q = {0, 50, 10, 1, 300, 1, 0, 0};
    for (int i = 0; i < 10; i++) report(&q, 1, 0);
    /* 10 failed of 10 would have opened at the 10th: check it did */
    char st[32];
    breaker_state(st, sizeof(st));
    assert_string_equal(st, "open");
    flush(NULL);
    for (int i = 0; i < 9; i++) report(&q, 1, 0); /* 9 calls: below the minimum */
    fk_t_sleep_ms(1100);                         /* out of the 1 s window */
    for (int i = 0; i < 9; i++) assert_string_equal(report(&q, 0, 0), "");
    /* counted with the old ones this would be 10 of 19 failed */
    assert_string_equal(report(&q, 1, 0), "");
    breaker_state(st, sizeof(st));
    assert_string_equal(st, "closed");
    /* pct 0 and failures 0: the breaker never opens */
    flush(NULL);
    fk_guard_policy off = {0, 0, 1, 10, 300, 1, 0, 0};
    for (int i = 0; i < 100; i++) assert_string_equal(report(&off, 1, 0), "");
    assert_true(check(&off).allow);
}

/* ---- token bucket ------------------------------------------------------------ */

static void t_bucket_rate(void **state) {
    (void)state;
    fk_guard_policy p = policy();
    p.rate_rps = 50;
    p.burst = 5;
    long long allowed = 0, refused = 0, t0 = fk_t_now_ms(), max_wait = 0;
    while (fk_t_now_ms() - t0 < 2000) {
        fk_guard_verdict v = check(&p);
        if (v.allow) {
            allowed++;
        } else {
            assert_string_equal(v.why, "rate");
            assert_true(v.wait_ms >= 1);
            max_wait = v.wait_ms > max_wait ? v.wait_ms : max_wait;
            refused++;
        }
    }
    long long ms = fk_t_now_ms() - t0;
    double rate = (double)(allowed - p.burst) * 1000.0 / (double)ms;
    fprintf(stderr, "# token bucket 50/s, burst 5: %lld allowed, %lld refused in %lld ms -> "
                    "%.1f calls/s after the burst (longest wait asked %lld ms)\n",
            allowed, refused, ms, rate, max_wait);
    assert_true(refused > 0);
    assert_true(rate >= 45 && rate <= 55);
    /* refused callers get slots one token (20 ms) apart, so they come back
     * spread at the rate instead of all at the next token */
    flush(NULL);
    p.burst = 1;
    long long u0 = fk_t_now_ms();
    assert_true(check(&p).allow);
    long long u1 = fk_t_now_ms();
    long long w1 = check(&p).wait_ms;
    long long u2 = fk_t_now_ms();
    long long w2 = check(&p).wait_ms, w3 = check(&p).wait_ms;
    long long u3 = fk_t_now_ms();
    fprintf(stderr, "# refused callers told to wait %lld, %lld, %lld ms (calls %lld, %lld ms "
                    "apart)\n", w1, w2, w3, u2 - u0, u3 - u1);
    /* the first is told the next token's time: 20 ms after the token was
     * taken, less the time between the two calls; the second is given the
     * slot after that, 20 ms later, less twice the time between its call
     * and the first's (its token refills from then, and the slot is held
     * from then). Bounds allow for ms rounding and a slow machine. */
    assert_true(w1 <= 21 && w1 >= 20 - (u2 - u0) - 1);
    assert_true(w2 - w1 <= 22 && w2 - w1 >= 20 - 2 * (u3 - u1) - 2);
    assert_true(w3 - w2 <= 22 && w3 - w2 >= 20 - 2 * (u3 - u1) - 2);
    /* no limit */
    p.rate_rps = 0;
    for (int i = 0; i < 500; i++) assert_true(check(&p).allow);
}

static void t_bucket_and_breaker(void **state) {
    (void)state;
    fk_guard_policy p = policy();
    p.rate_rps = 1;
    p.burst = 1;
    p.probes = 1;
    p.cooldown_ms = 100;
    /* open: refusals do not take tokens */
    for (int i = 0; i < 5; i++) report(&p, 1, 0);
    for (int i = 0; i < 20; i++) assert_string_equal(check(&p).why, "open");
    fk_t_sleep_ms(120);
    fk_guard_verdict v = check(&p);
    assert_true(v.allow && v.probe); /* the one token is still there */
    /* the probe slot is used; and a bucket refusal never takes a probe slot */
    assert_string_equal(report(&p, 0, 1), "closed");
    v = check(&p);
    assert_false(v.allow);
    assert_string_equal(v.why, "rate");
    assert_true(v.wait_ms > 0 && v.wait_ms <= 1000);
}

/* ---- buyer cooldown -------------------------------------------------------------- */

static fk_config g_cfg;

static void load_cfg(long long n, long long window_s, long long cool_s) {
    char err[256];
    char *argv[] = {(char *)"test", NULL};
    assert_int_equal(fk_config_load(&g_cfg, FK_BIN_WORKER, "", 1, argv, NULL, err, sizeof(err)),
                     0);
    g_cfg.buyer_cool_failures = n;
    g_cfg.buyer_cool_window_s = window_s;
    g_cfg.buyer_cool_s = cool_s;
}

/* An order of buyer in processing with a reservation, then failed with
 * reason through transition.lua exactly as the pipeline calls it. */
static void fail_order(const char *id, const char *buyer, fk_reason reason) {
    freeReplyObject(fk_t_cmd(g_c, "HSET %s:order:%s state processing fence 3 sku wow qty 1 "
                                  "buyer %s resv [\"c-%s\"]",
                             PREFIX, id, buyer, id));
    fk_tr t = {FK_ST_PROCESSING, FK_ST_FAILED, reason, "test", "L", 0, "declined", NULL,
               NULL, NULL, NULL, NULL};
    fk_tr_order o = {id, "wow", buyer, "3", NULL};
    fk_tr_args c;
    assert_int_equal(fk_transition_args(&c, &g_cfg, &g_k, &o, &t), 0);
    redisReply *r = eval(FK_LUA_TRANSITION, c.nkeys, &c.a);
    assert_string_equal(r->element[0]->str, "ok");
    freeReplyObject(r);
}

/* accept.lua for a new order of buyer (as pipeline.c builds it, 'paid'
 * mode). Returns the reply (caller frees). */
static redisReply *accept_order(const char *id, const char *buyer, int with_cooldown) {
    char okey[FK_KEY_MAX], ikey[FK_KEY_MAX], skey[FK_KEY_MAX], ckey[FK_KEY_MAX], minute[160];
    fk_key_order(&g_k, id, okey, sizeof(okey));
    fk_key_idem(&g_k, id, ikey, sizeof(ikey));
    fk_key_stock(&g_k, "wow", skey, sizeof(skey));
    fk_key_cooldown(&g_k, buyer, ckey, sizeof(ckey));
    fk_key_stats_minute(&g_k, 0, minute, sizeof(minute));
    fk_args a;
    fk_args_init(&a);
    const char *keys[] = {okey, ikey, skey, g_k.stream, g_k.stats, minute, g_k.retry,
                          g_k.notify, g_k.active, okey /* the key is the order id */,
                          g_k.review};
    for (int i = 0; i < 11; i++) fk_args_str(&a, keys[i]);
    if (with_cooldown) fk_args_str(&a, ckey);
    const char *argv[] = {"workers", "", id, id, "wow", "1", "100", "CNY", buyer, "60", "paid",
                          "10000", "0", "0", "1800000"};
    for (int i = 0; i < 15; i++) fk_args_str(&a, argv[i]);
    return eval(FK_LUA_ACCEPT, with_cooldown ? 12 : 11, &a);
}

static void t_cooldown(void **state) {
    (void)state;
    load_cfg(3, 60, 2);
    freeReplyObject(fk_t_cmd(g_c, "RPUSH %s:stock:wow s1 s2 s3 s4 s5", PREFIX));
    /* two declines and a risk rejection of the stubborn clicker, with
     * failures that are not his doing in between (never counted) */
    fail_order("C1", "clicker@x", FK_R_PAYMENT_DECLINED);
    fail_order("C2", "clicker@x", FK_R_OUT_OF_STOCK);
    fail_order("C3", "clicker@x", FK_R_RETRIES_EXHAUSTED);
    fail_order("C4", "clicker@x", FK_R_PAYMENT_DECLINED);
    redisReply *r = accept_order("C5", "clicker@x", 1);
    assert_string_equal(r->element[0]->str, "completed"); /* 2 of 3: still served */
    freeReplyObject(r);
    fail_order("C6", "clicker@x", FK_R_RISK_REJECTED);
    long long t_blocked = fk_t_now_ms();
    /* the third: refused, with the seconds to wait, holding nothing */
    long long stock = fk_t_int(g_c, "LLEN %s:stock:wow", PREFIX);
    r = accept_order("C7", "clicker@x", 1);
    assert_string_equal(r->element[0]->str, "failed");
    assert_string_equal(r->element[1]->str, "rate_limited");
    assert_non_null(strstr(r->element[2]->str, "try again in 2 seconds"));
    freeReplyObject(r);
    r = fk_t_cmd(g_c, "HMGET %s:order:C7 state reason message", PREFIX);
    assert_string_equal(r->element[0]->str, "failed");
    assert_string_equal(r->element[1]->str, "rate_limited");
    assert_non_null(strstr(r->element[2]->str, "2 seconds"));
    freeReplyObject(r);
    assert_int_equal(fk_t_int(g_c, "LLEN %s:stock:wow", PREFIX), stock);
    assert_int_equal(fk_t_int(g_c, "EXISTS %s:idem:C7", PREFIX), 0);
    assert_int_equal(fk_t_int(g_c, "HGET %s:stats reason:rate_limited", PREFIX), 1);
    /* others are not affected: another buyer, a buyer-less order */
    r = accept_order("O1", "someone@else", 1);
    assert_string_equal(r->element[0]->str, "completed");
    freeReplyObject(r);
    r = accept_order("O2", "", 0);
    assert_string_equal(r->element[0]->str, "completed");
    freeReplyObject(r);
    /* the clicker keeps being refused until the cooldown is over */
    int refused = 0;
    long long t_served = 0;
    for (int k = 0; k < 100; k++) {
        char id[16];
        snprintf(id, sizeof(id), "C8_%d", k);
        r = accept_order(id, "clicker@x", 1);
        int ok = strcmp(r->element[0]->str, "completed") == 0;
        freeReplyObject(r);
        if (ok) {
            t_served = fk_t_now_ms();
            break;
        }
        refused++;
        fk_t_sleep_ms(100);
    }
    fprintf(stderr, "# cooldown 3 failures / 60 s -> 2 s: %d more orders refused, served again "
                    "%lld ms after the third failure\n",
            refused, t_served - t_blocked);
    assert_true(t_served > 0);
    assert_true(t_served - t_blocked >= 1900 && t_served - t_blocked <= 3000);
    /* a fresh count after the cooldown: one decline does not block again */
    fail_order("C9", "clicker@x", FK_R_PAYMENT_DECLINED);
    r = accept_order("C10", "clicker@x", 1);
    assert_string_equal(r->element[0]->str, "completed");
    freeReplyObject(r);
    /* the key keeps itself bounded */
    long long ttl = fk_t_int(g_c, "PTTL %s:cool:clicker@x", PREFIX);
    assert_true(ttl > 0 && ttl <= 61000);
}

/* Failures older than the window are forgotten. */
static void t_cooldown_window(void **state) {
    (void)state;
    load_cfg(2, 1, 5);
    fail_order("W1", "b@x", FK_R_PAYMENT_DECLINED);
    fk_t_sleep_ms(1100);
    fail_order("W2", "b@x", FK_R_PAYMENT_DECLINED);
    freeReplyObject(fk_t_cmd(g_c, "RPUSH %s:stock:wow s1", PREFIX));
    redisReply *r = accept_order("W3", "b@x", 1);
    assert_string_equal(r->element[0]->str, "completed");
    freeReplyObject(r);
    /* off (0 failures): nothing is counted, no key passed */
    load_cfg(0, 60, 5);
    fail_order("W4", "z@x", FK_R_PAYMENT_DECLINED);
    assert_int_equal(fk_t_int(g_c, "EXISTS %s:cool:z@x", PREFIX), 0);
}

/* ---- the worker's local view (guard_local.c) ----------------------------- */

static int g_up, g_closed;

static void on_redis(fk_redis *r, int event, void *arg) {
    (void)arg;
    g_up = event == FK_REDIS_UP;
    if (g_up) fk_scripts_load(r);
}

static void on_close_cb(void *arg) { (*(int *)arg)++; }

static void on_stop(uv_timer_t *t) { uv_stop(t->loop); }

/* Run the loop for about ms milliseconds. */
static void spin(uv_loop_t *loop, uint64_t ms) {
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, on_stop, ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static const char *bfield(const char *field) {
    static char buf[64];
    redisReply *r = fk_t_cmd(g_c, "HGET %s %s", g_k.breaker, field);
    snprintf(buf, sizeof(buf), "%s", r->type == REDIS_REPLY_STRING ? r->str : "nil");
    freeReplyObject(r);
    return buf;
}

/* Admission without Redis only while the breaker was seen closed lately
 * and no rate limit is set; reports go out as one batch per tick; a probe
 * goes out at once; an open breaker set by another worker is seen within
 * a tick; closing sends what is left and frees the view. */
static void t_local_view(void **state) {
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    fk_redis_target t;
    char err[256];
    assert_int_equal(fk_redis_url_parse(g_srv.url, &t, err, sizeof(err)), 0);
    fk_redis_options o = {"guard", "test_guard", 2000, 5000, 0, 50, 300};
    fk_redis *r = NULL;
    assert_int_equal(fk_redis_open(&r, &loop, &t, &o, on_redis, NULL), 0);
    for (int i = 0; i < 200 && !g_up; i++) spin(&loop, 10);
    assert_true(g_up);

    fk_guard_policy p = policy();
    fk_guard_local *g = NULL;
    assert_int_equal(fk_guard_local_new(&g, &loop, r, &g_k, &p), 0);
    assert_false(fk_guard_local_admit(g)); /* never seen: ask Redis */
    fk_guard_local_seen(g, "closed");
    assert_true(fk_guard_local_admit(g));

    for (int i = 0; i < 3; i++) fk_guard_local_report(g, 0, 0);
    fk_guard_local_report(g, 1, 0);
    fk_guard_local_report(g, 1, 0);
    assert_string_equal(bfield("calls_ok"), "nil"); /* not sent yet */
    spin(&loop, FK_GUARD_TICK_MS * 3);
    assert_string_equal(bfield("calls_ok"), "3");
    assert_string_equal(bfield("calls_failed"), "2");
    assert_string_equal(bfield("consecutive"), "2");
    assert_true(fk_guard_local_admit(g)); /* the batch's answer: still closed */

    /* another worker opened the breaker: seen at the next tick */
    freeReplyObject(fk_t_cmd(g_c, "HSET %s state open open_until 99999999999999", g_k.breaker));
    spin(&loop, FK_GUARD_TICK_MS * 3);
    assert_false(fk_guard_local_admit(g));
    /* a probe's outcome goes out alone and at once */
    freeReplyObject(fk_t_cmd(g_c, "HSET %s state half_open", g_k.breaker));
    fk_guard_local_report(g, 0, 1);
    spin(&loop, 20);
    assert_string_equal(bfield("state"), "closed");
    assert_string_equal(bfield("calls_ok"), "4");
    assert_true(fk_guard_local_admit(g)); /* the probe's answer said closed */

    /* a view nobody used is not refreshed: stale, ask Redis again */
    spin(&loop, FK_GUARD_STALE_MS + FK_GUARD_TICK_MS * 2);
    assert_false(fk_guard_local_admit(g));

    /* a rate limit is always decided by Redis */
    fk_guard_local *g2 = NULL;
    fk_guard_policy pr = p;
    pr.rate_rps = 10;
    assert_int_equal(fk_guard_local_new(&g2, &loop, r, &g_k, &pr), 0);
    fk_guard_local_seen(g2, "closed");
    assert_false(fk_guard_local_admit(g2));

    /* closing sends the rest */
    fk_guard_local_report(g, 1, 0);
    int closed = 0;
    fk_guard_local_close(g, on_close_cb, &closed);
    fk_guard_local_close(g2, on_close_cb, &closed);
    for (int i = 0; i < 100 && closed < 2; i++) spin(&loop, 10);
    assert_int_equal(closed, 2);
    assert_string_equal(bfield("calls_failed"), "3");
    fk_redis_close(r, on_close_cb, &g_closed);
    for (int i = 0; i < 100 && !g_closed; i++) spin(&loop, 10);
    assert_int_equal(g_closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(t_breaker_consecutive, flush),
        cmocka_unit_test_setup(t_breaker_batches, flush),
        cmocka_unit_test_setup(t_breaker_lost_probe, flush),
        cmocka_unit_test_setup(t_local_view, flush),
        cmocka_unit_test_setup(t_breaker_error_pct, flush),
        cmocka_unit_test_setup(t_bucket_rate, flush),
        cmocka_unit_test_setup(t_bucket_and_breaker, flush),
        cmocka_unit_test_setup(t_cooldown, flush),
        cmocka_unit_test_setup(t_cooldown_window, flush),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
