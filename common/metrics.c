/* metrics.c -- the four metrics from the stats counters (see metrics.h). */
#include "metrics.h"

#include "utf8.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A decimal integer (optional '-', then digits, nothing else): 1 with the
 * value in *out, saturated at LLONG_MIN / LLONG_MAX; 0 for anything else. */
static int parse_int(const char *s, size_t len, long long *out) {
    if (!s || len == 0 || strlen(s) != len) return 0;
    if (!isdigit((unsigned char)s[s[0] == '-'])) return 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10); /* out of range: saturated */
    if (*end != '\0') return 0;
    *out = v;
    return 1;
}

long long fk_metrics_counter(const redisReply *v) {
    long long n = 0;
    if (!v) return 0;
    if (v->type == REDIS_REPLY_INTEGER) n = v->integer;
    else if (v->type != REDIS_REPLY_STRING || !parse_int(v->str, v->len, &n)) return 0;
    return n < 0 ? 0 : n;
}

long long fk_metrics_add(long long a, long long b) {
    long long r;
    if (__builtin_add_overflow(a, b, &r)) return b > 0 ? LLONG_MAX : LLONG_MIN;
    return r;
}

static void add_reason(fk_metrics *m, const char *raw, long long n) {
    char code[sizeof(m->reasons[0].code)];
    fk_utf8_repair(raw, strlen(raw), code, sizeof(code));
    for (int i = 0; i < m->nreasons; i++)
        if (strcmp(m->reasons[i].code, code) == 0) {
            m->reasons[i].n = fk_metrics_add(m->reasons[i].n, n);
            return;
        }
    if (m->nreasons < FK_METRICS_MAX_REASONS) {
        memcpy(m->reasons[m->nreasons].code, code, sizeof(code));
        m->reasons[m->nreasons++].n = n;
    }
}

static void add_attempts(fk_metrics *m, const char *raw, long long n) {
    long long retries;
    if (!parse_int(raw, strlen(raw), &retries) || retries < 0) return;
    for (int i = 0; i < m->nattempts; i++)
        if (m->attempts[i].retries == retries) {
            m->attempts[i].n = fk_metrics_add(m->attempts[i].n, n);
            return;
        }
    if (m->nattempts < FK_METRICS_MAX_ATTEMPTS) {
        m->attempts[m->nattempts].retries = retries;
        m->attempts[m->nattempts++].n = n;
    }
}

static int by_count(const void *a, const void *b) {
    const fk_metrics_reason *x = a, *y = b;
    return x->n < y->n ? 1 : x->n > y->n ? -1 : strcmp(x->code, y->code);
}

static int by_retries(const void *a, const void *b) {
    const fk_metrics_attempts *x = a, *y = b;
    return x->retries < y->retries ? -1 : x->retries > y->retries;
}

void fk_metrics_from_hash(fk_metrics *m, const redisReply *h) {
    memset(m, 0, sizeof(*m));
    if (!h || h->type != REDIS_REPLY_ARRAY) return;
    static const struct {
        const char *name;
        size_t off;
    } totals[] = {
        {"submitted", offsetof(fk_metrics, submitted)},
        {"completed", offsetof(fk_metrics, completed)},
        {"failed", offsetof(fk_metrics, failed)},
        {"expired", offsetof(fk_metrics, expired)},
        {"manual_review", offsetof(fk_metrics, manual_review)},
        {"reopened", offsetof(fk_metrics, reopened)},
        {"retries", offsetof(fk_metrics, retries)},
        {"deferred", offsetof(fk_metrics, deferred)},
        {"dead", offsetof(fk_metrics, dead)},
        {"retry_ms_sum", offsetof(fk_metrics, retry_ms_sum)},
        {"retry_ms_count", offsetof(fk_metrics, retry_ms_count)},
    };
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *f = h->element[i], *v = h->element[i + 1];
        if (f->type != REDIS_REPLY_STRING) continue;
        const char *name = f->str;
        long long n = fk_metrics_counter(v);
        if (strncmp(name, "reason:", 7) == 0) {
            add_reason(m, name + 7, n);
        } else if (strncmp(name, "attempts:", 9) == 0) {
            add_attempts(m, name + 9, n);
        } else {
            for (size_t k = 0; k < sizeof(totals) / sizeof(totals[0]); k++)
                if (strcmp(name, totals[k].name) == 0)
                    *(long long *)(void *)((char *)m + totals[k].off) = n;
        }
    }
    qsort(m->reasons, (size_t)m->nreasons, sizeof(m->reasons[0]), by_count);
    qsort(m->attempts, (size_t)m->nattempts, sizeof(m->attempts[0]), by_retries);
}

long long fk_metrics_final(const fk_metrics *m) {
    /* fk_metrics_from_hash never stores a negative counter; clamping here
     * too keeps this defined for any m: the sum saturates, and the
     * difference of two non-negative numbers cannot overflow */
    long long c = m->completed > 0 ? m->completed : 0, f = m->failed > 0 ? m->failed : 0;
    long long e = m->expired > 0 ? m->expired : 0, r = m->reopened > 0 ? m->reopened : 0;
    long long n = fk_metrics_add(fk_metrics_add(c, f), e) - r;
    return n < 0 ? 0 : n;
}

double fk_metrics_success_rate(const fk_metrics *m) {
    long long f = fk_metrics_final(m);
    if (f <= 0) return -1;
    double r = (double)m->completed / (double)f;
    return r > 1 ? 1 : r < 0 ? 0 : r;
}

long long fk_metrics_avg_retry_ms(const fk_metrics *m) {
    /* a negative sum cannot come from fk_metrics_from_hash; no mean then */
    return m->retry_ms_count > 0 && m->retry_ms_sum >= 0 ? m->retry_ms_sum / m->retry_ms_count
                                                         : -1;
}

cJSON *fk_metrics_json(const fk_metrics *m) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON *t = cJSON_AddObjectToObject(j, "totals");
    cJSON_AddNumberToObject(t, "submitted", (double)m->submitted);
    cJSON_AddNumberToObject(t, "completed", (double)m->completed);
    cJSON_AddNumberToObject(t, "failed", (double)m->failed);
    cJSON_AddNumberToObject(t, "expired", (double)m->expired);
    cJSON_AddNumberToObject(t, "manual_review", (double)m->manual_review);
    cJSON_AddNumberToObject(t, "reopened", (double)m->reopened);
    cJSON_AddNumberToObject(t, "retries", (double)m->retries);
    cJSON_AddNumberToObject(t, "deferred", (double)m->deferred);
    cJSON_AddNumberToObject(t, "dead", (double)m->dead);
    cJSON_AddNumberToObject(j, "final", (double)fk_metrics_final(m));
    double rate = fk_metrics_success_rate(m);
    if (rate >= 0) cJSON_AddNumberToObject(j, "success_rate", rate);
    else cJSON_AddNullToObject(j, "success_rate");
    long long avg = fk_metrics_avg_retry_ms(m);
    if (avg >= 0) cJSON_AddNumberToObject(j, "avg_retry_ms", (double)avg);
    else cJSON_AddNullToObject(j, "avg_retry_ms");
    cJSON_AddNumberToObject(j, "retry_ms_sum", (double)m->retry_ms_sum);
    cJSON_AddNumberToObject(j, "retry_ms_count", (double)m->retry_ms_count);
    cJSON *r = cJSON_AddObjectToObject(j, "failures_by_reason");
    for (int i = 0; i < m->nreasons; i++)
        cJSON_AddNumberToObject(r, m->reasons[i].code, (double)m->reasons[i].n);
    cJSON *a = cJSON_AddObjectToObject(j, "retry_distribution");
    for (int i = 0; i < m->nattempts; i++) {
        char k[24];
        snprintf(k, sizeof(k), "%lld", m->attempts[i].retries);
        cJSON_AddNumberToObject(a, k, (double)m->attempts[i].n);
    }
    return j;
}
