/* test_metrics.c -- unit tests of common/metrics.c: the four metrics from
 * a stats hash as HGETALL returns it (built by hand here, no server):
 * totals, failures by reason sorted by count, the retry-count distribution
 * sorted by retries, the average retry duration, the final success rate
 * with re-opened orders counted once, empty and garbage replies, and the
 * JSON shape fakactl prints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_four_metrics),
        cmocka_unit_test(t_empty_and_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
