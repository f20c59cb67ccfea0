/* test_gateway.c -- unit tests for the pure parts of the gateway and webhook
 * modules: the classification table (every row of the contract, plus
 * garbage bodies), HMAC-SHA256 and the webhook signature against vectors
 * computed with `openssl dgst -sha256 -hmac`, and URL escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "err.h"
#include "gateway.h"
#include "hmac.h"
#include "http.h"
#include "webhook.h"

/* ---- Classification table ---- */

#define POST 0
#define GET 1

typedef struct row {
    int line;
    int is_query;
    int err;
    int maybe_sent;
    long status;
    const char *body;       /* NUL-terminated; NULL = "" */
    const char *retry_after;
    fk_gw_outcome want;
    int want_maybe;
    const char *want_reason;   /* NULL: don't check */
    const char *want_id;       /* NULL: must be "" */
    long want_retry_ms;
} row;

#define R(...) {__LINE__, __VA_ARGS__}

static const row rows[] = {
    /* POST: definitive answers */
    R(POST, 0, 1, 200, "{\"id\":\"ch_1\",\"status\":\"succeeded\"}", NULL, FK_GW_PAID, 0, "succeeded", "ch_1", 0),
    R(POST, 0, 1, 202, "{\"id\":\"ch_2\",\"status\":\"pending\"}", NULL, FK_GW_PENDING, 0, "pending", "ch_2", 0),
    R(POST, 0, 1, 202, "", NULL, FK_GW_PENDING, 0, "pending", NULL, 0),
    R(POST, 0, 1, 402, "{\"status\":\"declined\",\"reason\":\"insufficient_funds\"}", NULL, FK_GW_DECLINED, 0, "insufficient_funds", NULL, 0),
    R(POST, 0, 1, 402, "not json", NULL, FK_GW_DECLINED, 0, "declined", NULL, 0),
    R(POST, 0, 1, 403, "{\"status\":\"risk_rejected\",\"reason\":\"Velocity Check!\"}", NULL, FK_GW_RISK, 0, "velocity_check", NULL, 0),
    R(POST, 0, 1, 403, "", NULL, FK_GW_RISK, 0, "risk_rejected", NULL, 0),
    R(POST, 0, 1, 409, "{}", NULL, FK_GW_CONFLICT, 0, "idempotency_conflict", NULL, 0),
    R(POST, 0, 1, 400, "{\"reason\":\"bad_amount\"}", NULL, FK_GW_INVALID, 0, "bad_amount", NULL, 0),
    R(POST, 0, 1, 422, "", NULL, FK_GW_INVALID, 0, "invalid_request", NULL, 0),
    /* POST: transient */
    R(POST, 0, 1, 429, "", "3", FK_GW_TRANSIENT, 0, "rate_limited", NULL, 3000),
    R(POST, 0, 1, 429, "", "Wed, 21 Oct 2015 07:28:00 GMT", FK_GW_TRANSIENT, 0, "rate_limited", NULL, 0),
    R(POST, 0, 1, 429, "", "Wed, 21 Oct 2099 07:28:00 GMT", FK_GW_TRANSIENT, 0, "rate_limited", NULL, 86400000),
    R(POST, 0, 1, 429, "", "Wed, 21 Oct 2099 25:28:00 GMT", FK_GW_TRANSIENT, 0, "rate_limited", NULL, 0),
    R(POST, 0, 1, 429, "", "tomorrow", FK_GW_TRANSIENT, 0, "rate_limited", NULL, 0),
    R(POST, 0, 1, 429, "", "1.5", FK_GW_TRANSIENT, 0, "rate_limited", NULL, 0),
    R(POST, 0, 1, 429, "", "0x10", FK_GW_TRANSIENT, 0, "rate_limited", NULL, 0),
    R(POST, 0, 1, 429, "", "0", FK_GW_TRANSIENT, 0, "rate_limited", NULL, 0),
    R(POST, 0, 1, 500, "", NULL, FK_GW_TRANSIENT, 1, "http_500", NULL, 0),
    R(POST, 0, 1, 502, "<html>bad gateway</html>", NULL, FK_GW_TRANSIENT, 1, "http_502", NULL, 0),
    R(POST, 0, 1, 503, "{\"status\":\"succeeded\"}", "120", FK_GW_TRANSIENT, 1, "http_503", NULL, 120000),
    R(POST, 0, 1, 504, "", "99999999999999999999", FK_GW_TRANSIENT, 1, "http_504", NULL, 86400000),
    R(POST, 0, 1, 599, "", "-1", FK_GW_TRANSIENT, 1, "http_599", NULL, 0),
    /* POST: statuses the contract does not name: conservative */
    R(POST, 0, 1, 201, "{\"status\":\"succeeded\"}", NULL, FK_GW_TRANSIENT, 1, "http_201", NULL, 0),
    R(POST, 0, 1, 204, "", NULL, FK_GW_TRANSIENT, 1, "http_204", NULL, 0),
    R(POST, 0, 1, 301, "", NULL, FK_GW_TRANSIENT, 1, "http_301", NULL, 0),
    R(POST, 0, 1, 404, "", NULL, FK_GW_TRANSIENT, 1, "http_404", NULL, 0),
    R(POST, 0, 1, 418, "", NULL, FK_GW_TRANSIENT, 1, "http_418", NULL, 0),
    R(POST, 0, 1, 100, "", NULL, FK_GW_TRANSIENT, 1, "http_100", NULL, 0),
    /* POST 200 that cannot be read: the charge may exist */
    R(POST, 0, 1, 200, "", NULL, FK_GW_TRANSIENT, 1, "garbage_body", NULL, 0),
    R(POST, 0, 1, 200, "OK", NULL, FK_GW_TRANSIENT, 1, "garbage_body", NULL, 0),
    R(POST, 0, 1, 200, "{\"id\":\"ch_3\",\"status\":", NULL, FK_GW_TRANSIENT, 1, "garbage_body", NULL, 0),
    R(POST, 0, 1, 200, "{\"id\":\"ch_3\"}", NULL, FK_GW_TRANSIENT, 1, "garbage_body", "ch_3", 0),
    R(POST, 0, 1, 200, "{\"status\":5}", NULL, FK_GW_TRANSIENT, 1, "garbage_body", NULL, 0),
    R(POST, 0, 1, 200, "{\"status\":null}", NULL, FK_GW_TRANSIENT, 1, "garbage_body", NULL, 0),
    R(POST, 0, 1, 200, "{\"status\":[\"succeeded\"]}", NULL, FK_GW_TRANSIENT, 1, "garbage_body", NULL, 0),
    R(POST, 0, 1, 200, "{\"status\":{\"status\":\"succeeded\"}}", NULL, FK_GW_TRANSIENT, 1, "garbage_body", NULL, 0),
    R(POST, 0, 1, 200, "{\"data\":{\"status\":\"succeeded\"}}", NULL, FK_GW_TRANSIENT, 1, "garbage_body", NULL, 0),
    R(POST, 0, 1, 200, "[{\"status\":\"succeeded\"}]", NULL, FK_GW_TRANSIENT, 1, "garbage_body", NULL, 0),
    R(POST, 0, 1, 200, "\"succeeded\"", NULL, FK_GW_TRANSIENT, 1, "garbage_body", NULL, 0),
    R(POST, 0, 1, 200, "{\"status\":\"succeeded\"} trailing", NULL, FK_GW_TRANSIENT, 1, "garbage_body", NULL, 0),
    R(POST, 0, 1, 200, "{\"status\":\"SUCCEEDED\"}", NULL, FK_GW_TRANSIENT, 1, "unexpected_status", NULL, 0),
    R(POST, 0, 1, 200, "{\"status\":\"pending\"}", NULL, FK_GW_TRANSIENT, 1, "unexpected_status", NULL, 0),
    R(POST, 0, 1, 200, "{\"status\":\"declined\"}", NULL, FK_GW_TRANSIENT, 1, "unexpected_status", NULL, 0),
    R(POST, 0, 1, 200, "{\"Status\":\"succeeded\"}", NULL, FK_GW_TRANSIENT, 1, "garbage_body", NULL, 0),
    /* id validation */
    R(POST, 0, 1, 200, "{\"id\":\"has space\",\"status\":\"succeeded\"}", NULL, FK_GW_PAID, 0, "succeeded", NULL, 0),
    R(POST, 0, 1, 200, "{\"id\":42,\"status\":\"succeeded\"}", NULL, FK_GW_PAID, 0, "succeeded", NULL, 0),
    R(POST, 0, 1, 200, "{\"id\":\"\",\"status\":\"succeeded\"}", NULL, FK_GW_PAID, 0, "succeeded", NULL, 0),
    R(POST, 0, 1, 200, "{\"id\":\"\\u00e9t\\u00e9\",\"status\":\"succeeded\"}", NULL, FK_GW_PAID, 0, "succeeded", NULL, 0),
    R(POST, 0, 1, 200, " \r\n{\"status\":\"succeeded\",\"id\":\"x\"}\n", NULL, FK_GW_PAID, 0, "succeeded", "x", 0),
    /* reason sanitizing */
    R(POST, 0, 1, 402, "{\"reason\":\"Card--Expired \\u4e2d\\u6587!\"}", NULL, FK_GW_DECLINED, 0, "card_expired", NULL, 0),
    R(POST, 0, 1, 402, "{\"reason\":\"!!!\"}", NULL, FK_GW_DECLINED, 0, "declined", NULL, 0),
    R(POST, 0, 1, 402, "{\"reason\":7}", NULL, FK_GW_DECLINED, 0, "declined", NULL, 0),
    R(POST, 0, 1, 402, "{\"reason\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", NULL, FK_GW_DECLINED, 0,
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", NULL, 0),
    /* POST transport errors: maybe_charged follows maybe_sent */
    R(POST, FK_ETIMEOUT, 1, 0, "", NULL, FK_GW_TRANSIENT, 1, "timeout", NULL, 0),
    R(POST, FK_ETIMEOUT, 0, 0, "", NULL, FK_GW_TRANSIENT, 0, "timeout", NULL, 0),
    R(POST, FK_EHTTP, 1, 0, "", NULL, FK_GW_TRANSIENT, 1, "transport_error", NULL, 0),
    R(POST, FK_EHTTP, 0, 0, "", NULL, FK_GW_TRANSIENT, 0, "connect_failed", NULL, 0),
    R(POST, FK_ECLOSED, 1, 0, "", NULL, FK_GW_TRANSIENT, 1, "closed", NULL, 0),
    R(POST, FK_ECLOSED, 0, 0, "", NULL, FK_GW_TRANSIENT, 0, "closed", NULL, 0),
    R(POST, FK_ENOMEM, 1, 0, "", NULL, FK_GW_TRANSIENT, 1, "nomem", NULL, 0),
    /* a transfer that failed after a 200 status line is still unknown */
    R(POST, FK_ETIMEOUT, 1, 200, "{\"status\":\"succeeded\"}", NULL, FK_GW_TRANSIENT, 1, "timeout", NULL, 0),

    /* GET */
    R(GET, 0, 1, 200, "{\"id\":\"ch_1\",\"status\":\"succeeded\"}", NULL, FK_GW_PAID, 0, "succeeded", "ch_1", 0),
    R(GET, 0, 1, 200, "{\"id\":\"ch_1\",\"status\":\"pending\"}", NULL, FK_GW_PENDING, 0, "pending", "ch_1", 0),
    R(GET, 0, 1, 200, "{\"id\":\"ch_1\",\"status\":\"declined\",\"reason\":\"stolen_card\"}", NULL, FK_GW_DECLINED, 0, "stolen_card", "ch_1", 0),
    R(GET, 0, 1, 200, "{\"status\":\"declined\"}", NULL, FK_GW_DECLINED, 0, "declined", NULL, 0),
    R(GET, 0, 1, 200, "{\"status\":\"risk_rejected\"}", NULL, FK_GW_RISK, 0, "risk_rejected", NULL, 0),
    R(GET, 0, 1, 200, "{\"status\":\"refunded\"}", NULL, FK_GW_TRANSIENT, 1, "unexpected_status", NULL, 0),
    R(GET, 0, 1, 200, "{\"status\":5}", NULL, FK_GW_TRANSIENT, 1, "garbage_body", NULL, 0),
    R(GET, 0, 1, 200, "", NULL, FK_GW_TRANSIENT, 1, "garbage_body", NULL, 0),
    R(GET, 0, 1, 200, "{\"status\":\"succ", NULL, FK_GW_TRANSIENT, 1, "garbage_body", NULL, 0),
    R(GET, 0, 1, 404, "", NULL, FK_GW_NOT_FOUND, 0, "not_found", NULL, 0),
    R(GET, 0, 1, 404, "{\"status\":\"succeeded\"}", NULL, FK_GW_NOT_FOUND, 0, "not_found", NULL, 0),
    R(GET, 0, 1, 429, "", "1", FK_GW_TRANSIENT, 1, "rate_limited", NULL, 1000),
    R(GET, 0, 1, 500, "", NULL, FK_GW_TRANSIENT, 1, "http_500", NULL, 0),
    R(GET, 0, 1, 503, "", NULL, FK_GW_TRANSIENT, 1, "http_503", NULL, 0),
    R(GET, 0, 1, 202, "{\"status\":\"pending\"}", NULL, FK_GW_TRANSIENT, 1, "http_202", NULL, 0),
    R(GET, 0, 1, 400, "", NULL, FK_GW_TRANSIENT, 1, "http_400", NULL, 0),
    R(GET, 0, 1, 402, "", NULL, FK_GW_TRANSIENT, 1, "http_402", NULL, 0),
    R(GET, 0, 1, 409, "", NULL, FK_GW_TRANSIENT, 1, "http_409", NULL, 0),
    R(GET, FK_ETIMEOUT, 1, 0, "", NULL, FK_GW_TRANSIENT, 1, "timeout", NULL, 0),
    R(GET, FK_EHTTP, 0, 0, "", NULL, FK_GW_TRANSIENT, 1, "connect_failed", NULL, 0),
    R(GET, FK_ECLOSED, 0, 0, "", NULL, FK_GW_TRANSIENT, 1, "closed", NULL, 0),
};

static fk_http_response mkresp(int err, int maybe_sent, long status,
                               const char *body, size_t len,
                               const char *retry_after) {
    fk_http_response r;
    memset(&r, 0, sizeof(r));
    r.err = err;
    r.maybe_sent = maybe_sent;
    r.status = status;
    r.body = body;
    r.body_len = len;
    r.errmsg = err ? "curl says no" : "";
    r.retry_after = retry_after;
    return r;
}

static void check_invariants(const fk_gw_result *g) {
    assert_true(g->outcome >= FK_GW_PAID && g->outcome <= FK_GW_TRANSIENT);
    if (g->outcome != FK_GW_TRANSIENT)
        assert_int_equal(g->maybe_charged, 0);
    assert_true(strlen(g->reason) > 0 && strlen(g->reason) < sizeof(g->reason));
    for (const char *p = g->reason; *p; p++)
        assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
    assert_true(strlen(g->payment_id) < sizeof(g->payment_id));
    for (const char *p = g->payment_id; *p; p++)
        assert_true(*p >= 0x21 && *p <= 0x7e);
    assert_true(strlen(g->detail) > 0 && strlen(g->detail) < sizeof(g->detail));
    for (const char *p = g->detail; *p; p++)
        assert_true(*p >= 0x20 && *p <= 0x7e);
}

static void test_classify_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const row *t = &rows[i];
        const char *body = t->body ? t->body : "";
        fk_http_response r = mkresp(t->err, t->maybe_sent, t->status, body,
                                    strlen(body), t->retry_after);
        fk_gw_result g;
        memset(&g, 0x5a, sizeof(g));
        fk_gateway_classify(t->is_query, &r, &g);
        if (g.outcome != t->want || g.maybe_charged != t->want_maybe ||
            (t->want_reason && strcmp(g.reason, t->want_reason) != 0) ||
            strcmp(g.payment_id, t->want_id ? t->want_id : "") != 0 ||
            g.retry_after_ms != t->want_retry_ms || g.http_status != t->status) {
            print_error("row at line %d: got outcome=%s maybe=%d reason=%s id=%s "
                        "retry=%ld detail=%s\n", t->line, fk_gw_outcome_name(g.outcome),
                        g.maybe_charged, g.reason, g.payment_id, g.retry_after_ms,
                        g.detail);
            fail();
        }
        check_invariants(&g);
    }
}

/* Retry-After as an HTTP-date a little ahead of now, in each of the three
 * forms RFC 9110 says a recipient must read: the wait is the distance. */
static void test_retry_after_date(void **state) {
    (void)state;
    char date[3][64];
    struct tm tm;
    time_t at = time(NULL) + 120;
    gmtime_r(&at, &tm);
    strftime(date[0], sizeof(date[0]), "%a, %d %b %Y %H:%M:%S GMT", &tm);  /* IMF-fixdate */
    char day[32], hms[16];                                                 /* RFC 850 */
    strftime(day, sizeof(day), "%A, %d-%b-", &tm);
    strftime(hms, sizeof(hms), "%H:%M:%S", &tm);
    snprintf(date[1], sizeof(date[1]), "%s%02d %s GMT", day, tm.tm_year % 100, hms);
    strftime(date[2], sizeof(date[2]), "%a %b %e %H:%M:%S %Y", &tm);       /* asctime */
    for (size_t i = 0; i < 3; i++) {
        fk_http_response r = mkresp(0, 1, 503, "", 0, date[i]);
        fk_gw_result g;
        fk_gateway_classify(0, &r, &g);
        if (g.retry_after_ms < 118000 || g.retry_after_ms > 120000)
            fail_msg("Retry-After: %s gave %ld ms, want ~120000", date[i], g.retry_after_ms);
        assert_int_equal(g.outcome, FK_GW_TRANSIENT);
        check_invariants(&g);
    }
}

/* Bodies that are not text at all, or far too big, or cut. */
static void test_classify_garbage(void **state) {
    (void)state;
    fk_gw_result g;

    /* binary with embedded NULs, even one that starts like valid JSON */
    static const char bin[] = "{\"status\":\"succeeded\"}\0\xff\xfe\x01";
    fk_http_response r = mkresp(0, 1, 200, bin, sizeof(bin) - 1, NULL);
    fk_gateway_classify(0, &r, &g);
    assert_int_equal(g.outcome, FK_GW_TRANSIENT);
    assert_int_equal(g.maybe_charged, 1);
    assert_string_equal(g.reason, "garbage_body");
    check_invariants(&g);

    unsigned char noise[4096];
    unsigned x = 12345;
    for (size_t i = 0; i < sizeof(noise); i++) {
        x = x * 1103515245u + 12345u;
        noise[i] = (unsigned char)(x >> 16);
    }
    r = mkresp(0, 1, 200, (const char *)noise, sizeof(noise), NULL);
    fk_gateway_classify(1, &r, &g);
    assert_int_equal(g.outcome, FK_GW_TRANSIENT);
    check_invariants(&g);

    /* a body that is not NUL-terminated: only body_len bytes may be read */
    char *exact = malloc(22);
    assert_non_null(exact);
    memcpy(exact, "{\"status\":\"succeeded\"}", 22);
    r = mkresp(0, 1, 200, exact, 22, NULL);
    fk_gateway_classify(0, &r, &g);
    assert_int_equal(g.outcome, FK_GW_PAID);
    free(exact);

    /* huge: 64 KiB of valid JSON with a long id; and the truncated flag */
    size_t n = FK_HTTP_BODY_MAX;
    char *big = malloc(n + 1);
    assert_non_null(big);
    int hl = snprintf(big, n, "{\"status\":\"succeeded\",\"id\":\"");
    memset(big + hl, 'a', n - (size_t)hl - 2);
    memcpy(big + n - 2, "\"}", 2);
    big[n] = '\0';
    r = mkresp(0, 1, 200, big, n, NULL);
    fk_gateway_classify(0, &r, &g);
    assert_int_equal(g.outcome, FK_GW_PAID);
    assert_string_equal(g.payment_id, "");     /* > 128 chars: not kept */
    check_invariants(&g);
    r.truncated = 1;
    fk_gateway_classify(0, &r, &g);
    assert_int_equal(g.outcome, FK_GW_TRANSIENT);
    assert_int_equal(g.maybe_charged, 1);
    assert_string_equal(g.reason, "garbage_body");
    free(big);

    /* deep nesting (cJSON's limit is 1000) */
    size_t depth = 5000;
    char *deep = malloc(2 * depth + 1);
    assert_non_null(deep);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    r = mkresp(0, 1, 200, deep, 2 * depth, NULL);
    fk_gateway_classify(1, &r, &g);
    assert_int_equal(g.outcome, FK_GW_TRANSIENT);
    free(deep);

    /* nested object that is itself valid: status deeper down does not count */
    const char *nested = "{\"a\":{\"b\":{\"c\":[1,2,{\"status\":\"succeeded\"}]}},\"id\":\"n1\"}";
    r = mkresp(0, 1, 200, nested, strlen(nested), NULL);
    fk_gateway_classify(0, &r, &g);
    assert_int_equal(g.outcome, FK_GW_TRANSIENT);
    assert_string_equal(g.payment_id, "n1");

    /* an id of exactly 128 visible characters is kept, 129 is not */
    char idbody[300];
    char id128[129];
    memset(id128, 'z', 128);
    id128[128] = '\0';
    snprintf(idbody, sizeof(idbody), "{\"status\":\"succeeded\",\"id\":\"%s\"}", id128);
    r = mkresp(0, 1, 200, idbody, strlen(idbody), NULL);
    fk_gateway_classify(0, &r, &g);
    assert_string_equal(g.payment_id, id128);
    snprintf(idbody, sizeof(idbody), "{\"status\":\"succeeded\",\"id\":\"%sz\"}", id128);
    r = mkresp(0, 1, 200, idbody, strlen(idbody), NULL);
    fk_gateway_classify(0, &r, &g);
    assert_string_equal(g.payment_id, "");

    /* NULL body with a length, NULL response: must not crash */
    r = mkresp(0, 1, 200, NULL, 10, NULL);
    fk_gateway_classify(0, &r, &g);
    assert_int_equal(g.outcome, FK_GW_TRANSIENT);
    fk_gateway_classify(0, NULL, &g);
    assert_int_equal(g.outcome, FK_GW_TRANSIENT);
    assert_int_equal(g.maybe_charged, 1);

    /* control characters in curl's message do not break the detail line */
    r = mkresp(FK_EHTTP, 1, 0, "", 0, NULL);
    r.errmsg = "line1\nline2\r\x1b[31m";
    fk_gateway_classify(0, &r, &g);
    check_invariants(&g);
}

static void test_outcome_names(void **state) {
    (void)state;
    assert_string_equal(fk_gw_outcome_name(FK_GW_PAID), "paid");
    assert_string_equal(fk_gw_outcome_name(FK_GW_TRANSIENT), "transient");
    assert_string_equal(fk_gw_outcome_name((fk_gw_outcome)99), "unknown");
}

/* ---- HMAC and the webhook signature ---- */

static void test_hmac_vectors(void **state) {
    (void)state;
    char hex[65];
    const char *msg = "The quick brown fox jumps over the lazy dog";
    /* printf '%s' "$msg" | openssl dgst -sha256 -hmac key */
    assert_int_equal(fk_hmac_sha256_hex("key", 3, msg, strlen(msg), hex), 0);
    assert_string_equal(hex, "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    /* printf '' | openssl dgst -sha256 -hmac k */
    assert_int_equal(fk_hmac_sha256_hex("k", 1, NULL, 0, hex), 0);
    assert_string_equal(hex, "8bb990c40a7d61cb97597a942125025be50ac8beb74436e3735b98893a7f6620");
    /* RFC 4231 test case 2 */
    const char *m2 = "what do ya want for nothing?";
    assert_int_equal(fk_hmac_sha256_hex("Jefe", 4, m2, strlen(m2), hex), 0);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    assert_int_equal(fk_hmac_sha256_hex(NULL, 3, "x", 1, hex), FK_EINVAL);
    assert_int_equal(fk_hmac_sha256_hex("k", 1, NULL, 1, hex), FK_EINVAL);
    assert_int_equal(fk_hmac_sha256_hex("k", 1, "x", 1, NULL), FK_EINVAL);
}

static void test_webhook_sign(void **state) {
    (void)state;
    const char *body = "{\"order_id\":\"A1001\",\"state\":\"completed\",\"sku\":\"wow-60d\","
                       "\"qty\":2,\"codes\":[\"C1\",\"C2\"],\"payment_id\":\"pay_1\","
                       "\"delivered_at\":1700000000100}";
    char sig[FK_WEBHOOK_SIG_LEN];
    /* printf '%s' "1700000000123.$body" | openssl dgst -sha256 -hmac whsec_test */
    assert_int_equal(fk_webhook_sign("whsec_test", 1700000000123LL, body, strlen(body),
                                     sig, sizeof(sig)), 0);
    assert_string_equal(sig, "v1=c9346d102431fd791afce7652f17c0d7864794f97e32ab056ff76308463b60e7");
    assert_int_equal(fk_webhook_sign("whsec_test", 1700000000123LL, body, strlen(body),
                                     sig, sizeof(sig) - 1), FK_ERANGE);
    assert_int_equal(fk_webhook_sign(NULL, 1, body, 1, sig, sizeof(sig)), FK_EINVAL);
    assert_int_equal(fk_webhook_sign("s", 1, NULL, 1, sig, sizeof(sig)), FK_EINVAL);
    /* different timestamp, different signature */
    char sig2[FK_WEBHOOK_SIG_LEN];
    assert_int_equal(fk_webhook_sign("whsec_test", 1700000000124LL, body, strlen(body),
                                     sig2, sizeof(sig2)), 0);
    assert_string_not_equal(sig, sig2);
}

/* ---- URL escaping and argument checks ---- */

static void test_escape(void **state) {
    (void)state;
    char *e = fk_http_escape("chk-77_a.b~c");
    assert_string_equal(e, "chk-77_a.b~c");
    free(e);
    e = fk_http_escape("a b/c?d#e%f&\xe4\xb8\xad");
    assert_string_equal(e, "a%20b%2Fc%3Fd%23e%25f%26%E4%B8%AD");
    free(e);
    e = fk_http_escape("");
    assert_string_equal(e, "");
    free(e);
    assert_null(fk_http_escape(NULL));
}

static void test_argument_checks(void **state) {
    (void)state;
    fk_gateway *g = NULL;
    assert_int_equal(fk_gateway_init(&g, NULL, "http://x"), FK_EINVAL);
    fk_webhook *w = NULL;
    assert_int_equal(fk_webhook_init(&w, NULL, "http://x", "s"), FK_EINVAL);
    fk_http_options bad = {-1, 0, 0, 1};
    fk_http *h = NULL;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(fk_http_init(&h, &loop, &bad), FK_EINVAL);
    assert_null(h);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_table),
        cmocka_unit_test(test_classify_garbage),
        cmocka_unit_test(test_retry_after_date),
        cmocka_unit_test(test_outcome_names),
        cmocka_unit_test(test_hmac_vectors),
        cmocka_unit_test(test_webhook_sign),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_argument_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
