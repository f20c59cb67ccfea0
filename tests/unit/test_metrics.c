/* test_metrics.c -- unit tests of common/metrics.c: the four metrics from
 * a stats hash as HGETALL returns it (built by hand here, no server):
 * totals, failures by reason sorted by count, the retry-count distribution
 * sorted by retries, the average retry duration, the final success rate
 * with re-opened orders counted once, empty and garbage replies, hostile
 * counters (past INT64_MAX, negative, not numbers, ill-formed UTF-8 in a
 * reason) and the JSON shape fakactl prints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "utf8.h"

/* A flat HGETALL-like reply from "field", "value", ... (NULL-terminated). */
static redisReply *hash_reply(const char *const *kv) {
    size_t n = 0;
    while (kv[n]) n++;
    redisReply *r = calloc(1, sizeof(*r));
    r->type = REDIS_REPLY_ARRAY;
    r->elements = n;
    r->element = calloc(n ? n : 1, sizeof(*r->element));
    for (size_t i = 0; i < n; i++) {
        redisReply *e = calloc(1, sizeof(*e));
        e->type = REDIS_REPLY_STRING;
        e->str = strdup(kv[i]);
        e->len = strlen(kv[i]);
        r->element[i] = e;
    }
    return r;
}

static void t_four_metrics(void **state) {
    (void)state;
    const char *kv[] = {"submitted", "110", "completed", "95", "failed", "12", "expired", "2",
                        "manual_review", "1", "reopened", "3", "retries", "40",
                        "reason:payment_declined", "4", "reason:out_of_stock", "7",
                        "reason:unpaid_timeout", "2", "attempts:10", "1", "attempts:0", "90",
                        "attempts:2", "5", "attempts:1", "14", "retry_ms_sum", "30000",
                        "retry_ms_count", "20", "unknown_field", "9", "deferred", "6", NULL};
    redisReply *r = hash_reply(kv);
    fk_metrics m;
    fk_metrics_from_hash(&m, r);
    freeReplyObject(r);
    assert_int_equal(m.submitted, 110);
    assert_int_equal(m.deferred, 6);
    /* failures by reason, largest first */
    assert_int_equal(m.nreasons, 3);
    assert_string_equal(m.reasons[0].code, "out_of_stock");
    assert_int_equal(m.reasons[0].n, 7);
    assert_string_equal(m.reasons[2].code, "unpaid_timeout");
    /* retry-count distribution, by retries (numeric, not lexical: 10 last) */
    assert_int_equal(m.nattempts, 4);
    long long want[][2] = {{0, 90}, {1, 14}, {2, 5}, {10, 1}};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(m.attempts[i].retries, want[i][0]);
        assert_int_equal(m.attempts[i].n, want[i][1]);
    }
    /* average retry duration */
    assert_int_equal(fk_metrics_avg_retry_ms(&m), 1500);
    /* final success rate: 95 / (95 + 12 + 2 - 3) */
    assert_int_equal(fk_metrics_final(&m), 106);
    double rate = fk_metrics_success_rate(&m);
    assert_true(rate > 0.8962 && rate < 0.8963);
    cJSON *j = fk_metrics_json(&m);
    assert_non_null(j);
    char *s = cJSON_PrintUnformatted(j);
    assert_non_null(strstr(s, "\"failures_by_reason\":{\"out_of_stock\":7,"));
    assert_non_null(strstr(s, "\"retry_distribution\":{\"0\":90,\"1\":14,\"2\":5,\"10\":1}"));
    assert_non_null(strstr(s, "\"avg_retry_ms\":1500"));
    assert_non_null(strstr(s, "\"final\":106"));
    free(s);
    cJSON_Delete(j);
}

static void t_empty_and_garbage(void **state) {
    (void)state;
    fk_metrics m;
    fk_metrics_from_hash(&m, NULL);
    assert_int_equal(fk_metrics_final(&m), 0);
    assert_true(fk_metrics_success_rate(&m) < 0);
    assert_int_equal(fk_metrics_avg_retry_ms(&m), -1);
    cJSON *j = fk_metrics_json(&m);
    char *s = cJSON_PrintUnformatted(j);
    assert_non_null(strstr(s, "\"success_rate\":null"));
    assert_non_null(strstr(s, "\"avg_retry_ms\":null"));
    free(s);
    cJSON_Delete(j);
    /* odd element count, non-numbers, negatives, a long reason code, more
     * reasons than the table holds: no crash, rate stays within [0, 1] */
    char longcode[200];
    memset(longcode, 'x', sizeof(longcode) - 1);
    longcode[sizeof(longcode) - 1] = '\0';
    memcpy(longcode, "reason:", 7);
    const char *kv[] = {"completed", "abc", "failed", "-5", "reopened", "50", longcode, "1",
                        "attempts:", "2", "attempts:-1", "3", "dangling", NULL};
    redisReply *r = hash_reply(kv);
    fk_metrics_from_hash(&m, r);
    freeReplyObject(r);
    assert_int_equal(m.completed, 0);
    assert_int_equal(fk_metrics_final(&m), 0);
    assert_true(fk_metrics_success_rate(&m) < 0);
    const char *many[2 * (FK_METRICS_MAX_REASONS + 10) + 1];
    char names[FK_METRICS_MAX_REASONS + 10][32];
    for (int i = 0; i < FK_METRICS_MAX_REASONS + 10; i++) {
        snprintf(names[i], sizeof(names[i]), "reason:r%d", i);
        many[2 * i] = names[i];
        many[2 * i + 1] = "1";
    }
    many[2 * (FK_METRICS_MAX_REASONS + 10)] = NULL;
    r = hash_reply(many);
    fk_metrics_from_hash(&m, r);
    freeReplyObject(r);
    assert_int_equal(m.nreasons, FK_METRICS_MAX_REASONS);
    /* completed can exceed the others only if counters were edited by
     * hand: the rate is capped at 1 */
    const char *odd[] = {"completed", "10", "failed", "1", "reopened", "5", NULL};
    r = hash_reply(odd);
    fk_metrics_from_hash(&m, r);
    freeReplyObject(r);
    assert_true(fk_metrics_success_rate(&m) <= 1.0);
}

/* Counters anyone may have HSET by hand: near and past INT64_MAX, the
 * smallest negative, not numbers. Every sum saturates (no signed overflow:
 * the sanitizer build turns one into a failure), garbage and negatives read
 * as 0, the rate stays in [0, 1], and the JSON is valid UTF-8. */
static void t_hostile_counters(void **state) {
    (void)state;
    const char *kv[] = {"completed", "9223372036854775807", "failed", "9223372036854775807",
                        "expired", "9223372036854775806", "manual_review",
                        "99999999999999999999999", "reopened", "-9223372036854775808",
                        "submitted", "12abc", "retries", "1.5", "deferred", " 7", "dead", "-1",
                        "retry_ms_sum", "9223372036854775807", "retry_ms_count", "-3",
                        "reason:bad\xff\x1b[31m", "9223372036854775807",
                        "reason:bad\xfe\x1b[31m", "5", /* the same code once repaired */
                        "attempts:1", "9223372036854775807", "attempts:01", "9",
                        "attempts:x", "4", "attempts:-2", "4", "attempts: 3", "4", NULL};
    redisReply *r = hash_reply(kv);
    fk_metrics m;
    fk_metrics_from_hash(&m, r);
    freeReplyObject(r);
    assert_true(m.completed == LLONG_MAX && m.failed == LLONG_MAX);
    assert_true(m.manual_review == LLONG_MAX); /* beyond INT64_MAX: saturated */
    assert_int_equal(m.reopened, 0);            /* negative */
    assert_int_equal(m.submitted, 0);           /* not a decimal integer */
    assert_int_equal(m.retries, 0);
    assert_int_equal(m.deferred, 0);
    assert_int_equal(m.dead, 0);
    assert_int_equal(m.retry_ms_count, 0);
    assert_true(fk_metrics_final(&m) == LLONG_MAX);
    assert_true(fk_metrics_success_rate(&m) == 1.0);
    assert_int_equal(fk_metrics_avg_retry_ms(&m), -1);
    /* the reason code is valid UTF-8, the two rows one, the count saturated */
    assert_int_equal(m.nreasons, 1);
    assert_string_equal(m.reasons[0].code, "bad\xef\xbf\xbd\x1b[31m");
    assert_true(m.reasons[0].n == LLONG_MAX);
    /* attempts: only n >= 0 in decimal; 1 and 01 are one row */
    assert_int_equal(m.nattempts, 1);
    assert_int_equal(m.attempts[0].retries, 1);
    assert_true(m.attempts[0].n == LLONG_MAX);
    cJSON *j = fk_metrics_json(&m);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    assert_true(fk_utf8_valid(s, strlen(s)));
    assert_non_null(strstr(s, "\"bad\xef\xbf\xbd\\u001b[31m\":9.2233720368547758e+18"));
    j = cJSON_Parse(s);
    assert_non_null(j);
    assert_true(cJSON_GetObjectItem(j, "final")->valuedouble > 9.2e18);
    cJSON_Delete(j);
    free(s);
    /* a long code is cut on a character boundary */
    char longcode[7 + 62 + 3 + 1];
    memcpy(longcode, "reason:", 7);
    memset(longcode + 7, 'x', 62);
    memcpy(longcode + 69, "\xe4\xb8\xad", 4);
    const char *kv2[] = {longcode, "1", NULL};
    r = hash_reply(kv2);
    fk_metrics_from_hash(&m, r);
    freeReplyObject(r);
    assert_int_equal(strlen(m.reasons[0].code), 62);
    /* a struct not from the hash: still defined */
    memset(&m, 0, sizeof(m));
    m.completed = LLONG_MAX;
    m.expired = LLONG_MAX;
    m.reopened = LLONG_MIN;
    m.retry_ms_sum = LLONG_MIN;
    m.retry_ms_count = -1;
    assert_true(fk_metrics_final(&m) == LLONG_MAX);
    assert_int_equal(fk_metrics_avg_retry_ms(&m), -1);
    m.retry_ms_count = 3;
    assert_int_equal(fk_metrics_avg_retry_ms(&m), -1);
    m.failed = -5;
    m.completed = -5;
    assert_true(fk_metrics_success_rate(&m) >= 0);
}

static void t_counter_and_add(void **state) {
    (void)state;
    redisReply v = {0};
    v.type = REDIS_REPLY_INTEGER;
    v.integer = -4;
    assert_int_equal(fk_metrics_counter(&v), 0);
    v.integer = 42;
    assert_int_equal(fk_metrics_counter(&v), 42);
    v.type = REDIS_REPLY_NIL;
    assert_int_equal(fk_metrics_counter(&v), 0);
    assert_int_equal(fk_metrics_counter(NULL), 0);
    v.type = REDIS_REPLY_STRING;
    struct {
        const char *s;
        long long want;
    } cases[] = {{"0", 0}, {"17", 17}, {"-17", 0}, {"", 0}, {"-", 0}, {"+5", 0},
                 {"5 ", 0}, {"1e3", 0}, {"0x10", 0}, {"9223372036854775807", LLONG_MAX},
                 {"9223372036854775808", LLONG_MAX}, {"-9223372036854775809", 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        v.str = (char *)cases[i].s;
        v.len = strlen(cases[i].s);
        assert_true(fk_metrics_counter(&v) == cases[i].want);
    }
    v.str = (char *)"12\0" "34"; /* a NUL inside: not a number */
    v.len = 5;
    assert_int_equal(fk_metrics_counter(&v), 0);
    assert_true(fk_metrics_add(LLONG_MAX, 1) == LLONG_MAX);
    assert_true(fk_metrics_add(LLONG_MAX, LLONG_MAX) == LLONG_MAX);
    assert_true(fk_metrics_add(LLONG_MIN, -1) == LLONG_MIN);
    assert_true(fk_metrics_add(LLONG_MIN, LLONG_MAX) == -1);
    assert_int_equal(fk_metrics_add(2, 3), 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_four_metrics),
        cmocka_unit_test(t_empty_and_garbage),
        cmocka_unit_test(t_hostile_counters),
        cmocka_unit_test(t_counter_and_add),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
