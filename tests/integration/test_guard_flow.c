/* test_guard_flow.c -- the gateway guard and the buyer cooldown in a real
 * fleet (faka-worker processes, the mock gateway, a real redis-server):
 *  - a gateway outage opens the fleet-wide breaker: workers stop calling
 *    the gateway (a probe per cool-down only), reschedule orders without
 *    using up attempts, and every order completes once the gateway is back;
 *  - a fleet-wide rate limit holds two workers together to about the
 *    configured calls per second, with no attempt used up;
 *  - the stubborn clicker: a buyer whose orders keep being declined is
 *    refused (rate_limited, the seconds to wait in the message) without
 *    the gateway being called, and is served again after the cooldown;
 *  - an order whose worker died with its charge request out (charge=sent)
 *    is taken over while the breaker is open: the guard defers the status
 *    query, and nothing is POSTed before the gateway was asked.
 * The measured figures are printed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet.h"
#include "gateway.h"
#include "harness.h"

#define P "faka"

typedef struct fleet {
    fk_t_redis r;
    fk_t_gateway g;
    redisContext *c;
    pid_t w[4];
    int nw;
} fleet;

static void fleet_start(fleet *f, int workers, const char *const extra[]) {
    memset(f, 0, sizeof(*f));
    fk_t_redis_start(&f->r, 0);
    fk_t_gateway_start(&f->g, f->r.dir, NULL);
    f->c = fk_t_connect(&f->r);
    char gw[128];
    snprintf(gw, sizeof(gw), "--gateway=%s", f->g.url);
    const char *args[32];
    int n = 0;
    args[n++] = gw;
    for (int i = 0; extra && extra[i] && n < 30; i++) args[n++] = extra[i];
    args[n] = NULL;
    for (int i = 0; i < workers; i++) {
        char name[16];
        snprintf(name, sizeof(name), "w%d", i + 1);
        f->w[f->nw++] = fk_t_worker(&f->r, name, args);
    }
}

static void fleet_stop(fleet *f) {
    for (int i = 0; i < f->nw; i++) {
        kill(f->w[i], SIGTERM);
        int st = fk_t_wait(f->w[i], 15000);
        if (st < 0) kill(f->w[i], SIGKILL), fk_t_wait(f->w[i], 2000);
        assert_int_equal(st, 0);
    }
    fk_t_gateway_stop(&f->g);
    redisFree(f->c);
    fk_t_redis_stop(&f->r);
}

static long long finals(redisContext *c) {
    return fk_t_stat(c, P, "completed") + fk_t_stat(c, P, "failed") +
           fk_t_stat(c, P, "expired") + fk_t_stat(c, P, "manual_review");
}

typedef struct waitarg {
    redisContext *c;
    long long want;
} waitarg;

static int all_final(void *arg) {
    waitarg *w = arg;
    return finals(w->c) >= w->want;
}

static int breaker_is_open(void *arg) {
    redisContext *c = arg;
    redisReply *r = fk_t_cmd(c, "HGET %s:breaker state", P);
    int open = r->type == REDIS_REPLY_STRING && strcmp(r->str, "open") == 0;
    freeReplyObject(r);
    return open;
}

/* POSTs + GETs the gateway has seen (GET /_stats). */
static long long gateway_calls(const fk_t_gateway *g) {
    char url[128], *body = NULL;
    snprintf(url, sizeof(url), "%s/_stats", g->url);
    assert_int_equal(fk_t_http("GET", url, NULL, &body), 200);
    cJSON *j = cJSON_Parse(body);
    free(body);
    assert_non_null(j);
    long long n = 0;
    const char *kinds[] = {"charges_post", "charges_get"};
    for (int i = 0; i < 2; i++) {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(j, kinds[i]);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(k, "total");
        if (cJSON_IsNumber(t)) n += (long long)t->valuedouble;
    }
    cJSON_Delete(j);
    return n;
}

static void submit(redisContext *c, const char *id, const char *sku, const char *buyer) {
    freeReplyObject(fk_t_cmd(c,
                             "XADD %s:orders * order "
                             "{\"order_id\":\"%s\",\"sku\":\"%s\",\"qty\":1,\"amount\":100,"
                             "\"buyer\":\"%s\"}",
                             P, id, sku, buyer));
}

static void order_field(redisContext *c, const char *id, const char *field, char *buf,
                        size_t len) {
    redisReply *r = fk_t_cmd(c, "HGET %s:order:%s %s", P, id, field);
    snprintf(buf, len, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
}

/* ---- the breaker in a gateway outage ------------------------------------- */

static void t_breaker_outage(void **state) {
    (void)state;
    const char *extra[] = {"--breaker-failures=5", "--breaker-cooldown-ms=1000",
                           "--retry-base-ms=50", "--retry-cap-ms=300", "--retry-max=6",
                           "--http-timeout-ms=500", "--http-connect-timeout-ms=200",
                           "--lease-ms=2000", NULL};
    fleet f;
    fleet_start(&f, 2, extra);
    long long n = 60, outage_ms = 5000;
    fk_t_load_stock(f.c, P, n);
    char body[64];
    snprintf(body, sizeof(body), "{\"ms\":%lld,\"mode\":\"503\"}", outage_ms);
    fk_t_gateway_post(&f.g, "/_outage", body);
    long long t0 = fk_t_now_ms();
    fk_t_produce(f.c, P, "B", 1, n);
    assert_true(fk_t_until(breaker_is_open, f.c, 5000));
    long long t_open = fk_t_now_ms() - t0;
    long long calls_open = gateway_calls(&f.g);
    /* the rest of the outage: only probes, one per cool-down */
    fk_t_sleep_ms(outage_ms - t_open - 300);
    long long calls_during = gateway_calls(&f.g) - calls_open;
    long long retries_during = fk_t_stat(f.c, P, "retries");
    assert_int_equal(fk_t_stat(f.c, P, "completed"), 0);
    waitarg wa = {f.c, n};
    assert_true(fk_t_until(all_final, &wa, 60000));
    long long t_done = fk_t_now_ms() - t0;
    fk_t_audit a;
    fk_t_audit_run(f.c, P, "B", 1, n, &a);
    fk_t_audit_print("orders through a gateway outage, breaker on", &a);
    long long deferred = fk_t_stat(f.c, P, "deferred");
    redisReply *b = fk_t_cmd(f.c, "HMGET %s:breaker state opens denied", P);
    fprintf(stderr,
            "#   breaker opened %lld ms into a %lld ms outage (%lld gateway calls by then); "
            "%lld more calls in the next %lld ms (probes), %lld retries scheduled by then; "
            "all %lld orders final after %lld ms; breaker now %s, opened %s times, %s "
            "refusals; %lld orders rescheduled without using an attempt\n",
            t_open, outage_ms, calls_open, calls_during, outage_ms - t_open - 300,
            retries_during, n, t_done, b->element[0]->str, b->element[1]->str,
            b->element[2]->str, deferred);
    assert_string_equal(b->element[0]->str, "closed");
    assert_true(atoll(b->element[1]->str) >= 1);
    freeReplyObject(b);
    assert_int_equal(a.completed, n);
    assert_int_equal(a.dup_codes, 0);
    assert_true(deferred > 0);
    /* without the breaker, 60 orders retrying every <= 300 ms for 4+ s
     * would call hundreds of times; open, only probes (and queries of the
     * probed orders) go out */
    assert_true(calls_during <= 20);
    assert_int_equal(fk_t_ledger_num(&f.g, "double_charges"), 0);
    fleet_stop(&f);
}

/* ---- the fleet-wide rate limit --------------------------------------------- */

static void t_rate_limit(void **state) {
    (void)state;
    const char *extra[] = {"--rate-limit-rps=20", "--rate-limit-burst=5", NULL};
    fleet f;
    fleet_start(&f, 2, extra);
    fk_t_gateway_post(&f.g, "/_faults", "{\"latency_ms\":1}");
    long long n = 100;
    fk_t_load_stock(f.c, P, n);
    long long t0 = fk_t_now_ms();
    for (long long k = 1; k <= n; k++) {
        char id[16];
        snprintf(id, sizeof(id), "L%lld", k);
        submit(f.c, id, fk_t_sku((int)(k % FK_T_SKUS)), "b@x");
    }
    waitarg wa = {f.c, n};
    assert_true(fk_t_until(all_final, &wa, 60000));
    long long ms = fk_t_now_ms() - t0;
    double rate = (double)(n - 5) * 1000.0 / (double)ms;
    fprintf(stderr, "#   rate limit 20/s (burst 5), 2 workers: %lld orders (one charge each) "
                    "in %lld ms -> %.1f charges/s; %lld reschedules, attempts:0 = %lld\n",
            n, ms, rate, fk_t_stat(f.c, P, "deferred"), fk_t_stat(f.c, P, "attempts:0"));
    assert_int_equal(fk_t_stat(f.c, P, "completed"), n);
    assert_int_equal(fk_t_stat(f.c, P, "attempts:0"), n); /* waiting used no attempt */
    assert_true(rate >= 14 && rate <= 22);
    fleet_stop(&f);
}

/* ---- the stubborn clicker ----------------------------------------------------- */

static void t_stubborn_clicker(void **state) {
    (void)state;
    const char *extra[] = {"--buyer-cooldown-failures=3", "--buyer-cooldown-window-s=60",
                           "--buyer-cooldown-s=3", NULL};
    fleet f;
    fleet_start(&f, 1, extra);
    fk_t_load_stock(f.c, P, 10);
    const char *sku = fk_t_sku(0);
    for (int k = 1; k <= 3; k++) {
        char id[16], body[128];
        snprintf(id, sizeof(id), "K%d", k);
        snprintf(body, sizeof(body), "{\"key\":\"%s\",\"outcomes\":[\"decline\"]}", id);
        fk_t_gateway_post(&f.g, "/_script", body);
        submit(f.c, id, sku, "clicker@x");
        assert_true(fk_t_wait_order(f.c, P, id, "failed", 20000));
    }
    long long t_blocked = fk_t_now_ms();
    char reason[64], msg[256];
    order_field(f.c, "K3", "reason", reason, sizeof(reason));
    assert_string_equal(reason, "payment_declined");
    /* the fourth click: refused before the gateway is asked */
    submit(f.c, "K4", sku, "clicker@x");
    assert_true(fk_t_wait_order(f.c, P, "K4", "failed", 20000));
    order_field(f.c, "K4", "reason", reason, sizeof(reason));
    order_field(f.c, "K4", "message", msg, sizeof(msg));
    fprintf(stderr, "#   K4: %s: \"%s\"\n", reason, msg);
    assert_string_equal(reason, "rate_limited");
    assert_non_null(strstr(msg, "try again in"));
    long long charges = 0, posts = 0;
    fk_t_ledger_key(&f.g, "K4", &charges, &posts);
    assert_true(posts <= 0);
    /* another buyer is served meanwhile */
    submit(f.c, "N1", sku, "patient@x");
    assert_true(fk_t_wait_order(f.c, P, "N1", "completed", 20000));
    /* after the cooldown the clicker is served again */
    long long wait = 3000 - (fk_t_now_ms() - t_blocked) + 200;
    if (wait > 0) fk_t_sleep_ms(wait);
    submit(f.c, "K5", sku, "clicker@x");
    assert_true(fk_t_wait_order(f.c, P, "K5", "completed", 20000));
    assert_int_equal(fk_t_stat(f.c, P, "reason:rate_limited"), 1);
    fleet_stop(&f);
}

/* ---- a charge in flight, a dead worker, an open breaker ------------------ */

typedef struct key_wait {
    const fk_t_gateway *g;
    const char *key;
} key_wait;

static int key_charged(void *arg) {
    key_wait *w = arg;
    long long charges = 0, posts = 0;
    fk_t_ledger_key(w->g, w->key, &charges, &posts);
    return charges >= 1;
}

/* The worker dies after its POST reached the gateway (which charged) and
 * before the answer came: the record says charge=sent. Another worker
 * takes the order over while the breaker is open. It must ask GET first;
 * the guard refusing that query defers it (op W), and that deferral must
 * not let the POST go (it did: a second charge request with no question
 * asked, past the guard, under no lease). */
static void t_sent_order_behind_open_breaker(void **state) {
    (void)state;
    const char *extra[] = {"--lease-ms=3000", "--http-timeout-ms=1500", NULL};
    fleet f;
    fleet_start(&f, 1, extra);
    fk_t_load_stock(f.c, P, 2);
    fk_t_gateway_post(&f.g, "/_faults", "{\"latency_ms\":1400}");
    submit(f.c, "Z1", fk_t_sku(0), "z@x");
    key_wait kw = {&f.g, "Z1"};
    assert_true(fk_t_until(key_charged, &kw, 10000));
    kill(f.w[0], SIGKILL);
    fk_t_wait(f.w[0], 5000);
    char charge[32], st[32];
    order_field(f.c, "Z1", "charge", charge, sizeof(charge));
    order_field(f.c, "Z1", "state", st, sizeof(st));
    assert_string_equal(st, "processing");
    assert_string_equal(charge, "sent");
    fk_t_gateway_post(&f.g, "/_faults", "{\"latency_ms\":0}");
    long long open_ms = 8000;
    redisReply *tr = fk_t_cmd(f.c, "TIME"); /* the breaker runs on Redis's clock */
    long long now = atoll(tr->element[0]->str) * 1000 + atoll(tr->element[1]->str) / 1000;
    freeReplyObject(tr);
    freeReplyObject(fk_t_cmd(f.c, "HSET %s:breaker state open open_until %lld", P,
                             now + open_ms));
    char gw[128];
    snprintf(gw, sizeof(gw), "--gateway=%s", f.g.url);
    f.w[0] = fk_t_worker(&f.r, "w2", (const char *const[]){gw, extra[0], extra[1], NULL});
    /* the dead worker's lease ends, w2 takes the order over (reclaim) and
     * meets the open breaker */
    long long t_open = fk_t_now_ms();
    fk_t_sleep_ms(open_ms - 1500);
    long long charges = 0, posts = 0;
    fk_t_ledger_key(&f.g, "Z1", &charges, &posts);
    long long deferred = fk_t_stat(f.c, P, "deferred");
    fprintf(stderr, "#   Z1 behind an open breaker: %lld POST(s) after %lld ms, %lld "
                    "deferral(s)\n", posts, fk_t_now_ms() - t_open, deferred);
    assert_int_equal(posts, 1);
    assert_true(deferred >= 1);
    /* half-open: the probe asks, finds the charge, and delivers */
    assert_true(fk_t_wait_order(f.c, P, "Z1", "completed", 20000));
    fk_t_ledger_key(&f.g, "Z1", &charges, &posts);
    assert_int_equal(posts, 1);
    assert_int_equal(charges, 1);
    assert_int_equal(fk_t_ledger_num(&f.g, "double_charges"), 0);
    fleet_stop(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_breaker_outage),
        cmocka_unit_test(t_rate_limit),
        cmocka_unit_test(t_stubborn_clicker),
        cmocka_unit_test(t_sent_order_behind_open_breaker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
