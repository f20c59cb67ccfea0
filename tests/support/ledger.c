/* ledger.c -- read the mock gateway's ledger into a sorted table (see
 * ledger.h). */
#include "ledger.h"
#include "harness.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_key(const void *a, const void *b) {
    return strcmp(((const fk_t_charge *)a)->key, ((const fk_t_charge *)b)->key);
}

static long long num(const cJSON *o, const char *field) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, field);
    return cJSON_IsNumber(f) ? (long long)f->valuedouble : 0;
}

static char *str_or_empty(const cJSON *o, const char *field) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, field);
    char *s = strdup(cJSON_IsString(f) && f->valuestring ? f->valuestring : "");
    if (!s) fk_t_fail("oom");
    return s;
}

void fk_t_ledger_load(const fk_t_gateway *g, fk_t_ledger *l) {
    char url[256], *out = NULL;
    memset(l, 0, sizeof(*l));
    snprintf(url, sizeof(url), "%s/_ledger", g->url);
    long st = fk_t_http("GET", url, NULL, &out);
    if (st != 200) fk_t_fail("GET /_ledger -> %ld", st);
    cJSON *j = cJSON_Parse(out);
    free(out);
    if (!cJSON_IsObject(j)) fk_t_fail("GET /_ledger: not a JSON object");
    l->keys = num(j, "keys");
    l->charges_succeeded = num(j, "charges_succeeded");
    l->double_charges = num(j, "double_charges");
    l->double_charged_orders = num(j, "double_charged_orders");
    l->posts = num(j, "posts");
    l->gets = num(j, "gets");
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(j, "entries");
    size_t cap = (size_t)cJSON_GetArraySize(entries);
    l->v = calloc(cap ? cap : 1, sizeof(*l->v));
    if (!l->v) fk_t_fail("oom");
    const cJSON *e;
    cJSON_ArrayForEach(e, entries) {
        if (!e->string || !cJSON_IsObject(e)) continue;
        fk_t_charge *c = &l->v[l->n++];
        c->key = strdup(e->string);
        if (!c->key) fk_t_fail("oom");
        c->order_id = str_or_empty(e, "order_id");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "status");
        snprintf(c->status, sizeof(c->status), "%s",
                 cJSON_IsString(s) && s->valuestring ? s->valuestring : "");
        c->charges = num(e, "charges");
        c->posts = num(e, "posts");
        c->gets = num(e, "gets");
    }
    cJSON_Delete(j);
    qsort(l->v, l->n, sizeof(*l->v), cmp_key);
}

const fk_t_charge *fk_t_ledger_find(const fk_t_ledger *l, const char *key) {
    fk_t_charge k = {(char *)key, NULL, "", 0, 0, 0};
    return bsearch(&k, l->v, l->n, sizeof(*l->v), cmp_key);
}

static int succeeded(const fk_t_charge *c) {
    return c->charges > 0 && strcmp(c->status, "succeeded") == 0;
}

long long fk_t_ledger_order_charges(const fk_t_ledger *l, const char *order_id) {
    long long n = 0;
    for (size_t i = 0; i < l->n; i++)
        if (succeeded(&l->v[i]) && strcmp(l->v[i].order_id, order_id) == 0) n += l->v[i].charges;
    return n;
}

static int cmp_order(const void *a, const void *b) {
    const fk_t_charge *x = *(const fk_t_charge *const *)a, *y = *(const fk_t_charge *const *)b;
    return strcmp(x->order_id, y->order_id);
}

const fk_t_charge **fk_t_ledger_by_order(const fk_t_ledger *l, size_t *n) {
    const fk_t_charge **idx = malloc((l->n ? l->n : 1) * sizeof(*idx));
    if (!idx) fk_t_fail("oom");
    *n = 0;
    for (size_t i = 0; i < l->n; i++)
        if (succeeded(&l->v[i])) idx[(*n)++] = &l->v[i];
    qsort(idx, *n, sizeof(*idx), cmp_order);
    return idx;
}

const fk_t_charge *const *fk_t_ledger_order_find(const fk_t_charge **idx, size_t n,
                                                 const char *order_id, size_t *count) {
    size_t lo = 0, hi = n;
    while (lo < hi) { /* first entry >= order_id */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(idx[mid]->order_id, order_id) < 0) lo = mid + 1;
        else hi = mid;
    }
    size_t k = lo;
    while (k < n && strcmp(idx[k]->order_id, order_id) == 0) k++;
    *count = k - lo;
    return k > lo ? &idx[lo] : NULL;
}

void fk_t_ledger_free(fk_t_ledger *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].key);
        free(l->v[i].order_id);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

long long fk_t_webhooks_num(const fk_t_gateway *g, const char *field) {
    char url[256], *out = NULL;
    snprintf(url, sizeof(url), "%s/_webhooks?entries=0", g->url);
    long st = fk_t_http("GET", url, NULL, &out);
    if (st != 200) fk_t_fail("GET /_webhooks -> %ld", st);
    cJSON *j = cJSON_Parse(out);
    free(out);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, field);
    long long v = cJSON_IsNumber(f) ? (long long)f->valuedouble : -1;
    cJSON_Delete(j);
    return v;
}
