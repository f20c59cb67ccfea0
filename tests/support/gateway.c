/* gateway.c -- start and drive the mock gateway from tests (see gateway.h). */
#include "gateway.h"
#include "harness.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
    char *p;
    size_t n;
} buf;

static size_t on_data(char *d, size_t sz, size_t nm, void *arg) {
    buf *b = arg;
    size_t k = sz * nm;
    char *np = realloc(b->p, b->n + k + 1);
    if (!np) return 0;
    memcpy(np + b->n, d, k);
    b->p = np;
    b->n += k;
    b->p[b->n] = '\0';
    return k;
}

long fk_t_http(const char *method, const char *url, const char *body, char **out) {
    CURL *c = curl_easy_init();
    buf b = {NULL, 0};
    long status = 0;
    if (!c) fk_t_fail("curl_easy_init");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) fk_t_fail("HTTP %s %s: %s", method, url, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (out) *out = b.p ? b.p : strdup("");
    else free(b.p);
    return status;
}

void fk_t_gateway_start(fk_t_gateway *g, const char *dir, const char *secret) {
    char bin[512], log[512];
    fk_t_bin("tests/faka-mock-gateway", bin, sizeof(bin));
    snprintf(log, sizeof(log), "%s/gateway.log", dir);
    memset(g, 0, sizeof(*g));
    g->port = fk_t_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", g->port);
    const char *argv[] = {bin, "--port", port, secret ? "--webhook-secret" : NULL, secret, NULL};
    g->pid = fk_t_spawn(argv, NULL, log);
    snprintf(g->url, sizeof(g->url), "http://127.0.0.1:%d", g->port);
    char health[128];
    snprintf(health, sizeof(health), "%s/_health", g->url);
    long long end = fk_t_now_ms() + 10000;
    for (;;) {
        CURL *c = curl_easy_init();
        curl_easy_setopt(c, CURLOPT_URL, health);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 500L);
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        CURLcode rc = curl_easy_perform(c);
        curl_easy_cleanup(c);
        if (rc == CURLE_OK) break;
        if (fk_t_now_ms() > end) fk_t_fail("mock gateway did not start; see %s", log);
        fk_t_sleep_ms(20);
    }
}

void fk_t_gateway_stop(fk_t_gateway *g) {
    if (g->pid <= 0) return;
    kill(g->pid, SIGTERM);
    if (fk_t_wait(g->pid, 5000) < 0) {
        kill(g->pid, SIGKILL);
        fk_t_wait(g->pid, 2000);
    }
    g->pid = 0;
}

void fk_t_gateway_post(const fk_t_gateway *g, const char *path, const char *body) {
    char url[256], *out = NULL;
    snprintf(url, sizeof(url), "%s%s", g->url, path);
    long st = fk_t_http("POST", url, body, &out);
    if (st < 200 || st > 299) fk_t_fail("POST %s %s -> %ld %s", path, body, st, out);
    free(out);
}

long long fk_t_ledger_num(const fk_t_gateway *g, const char *field) {
    char url[256], *out = NULL;
    snprintf(url, sizeof(url), "%s/_ledger?entries=0", g->url);
    fk_t_http("GET", url, NULL, &out);
    cJSON *j = cJSON_Parse(out);
    cJSON *f = cJSON_GetObjectItemCaseSensitive(j, field);
    if (!cJSON_IsNumber(f)) fk_t_fail("ledger has no number %s: %s", field, out);
    long long v = (long long)f->valuedouble;
    cJSON_Delete(j);
    free(out);
    return v;
}

void fk_t_ledger_key(const fk_t_gateway *g, const char *key, long long *charges,
                     long long *posts) {
    char url[256], *out = NULL;
    snprintf(url, sizeof(url), "%s/_ledger", g->url);
    fk_t_http("GET", url, NULL, &out);
    cJSON *j = cJSON_Parse(out);
    cJSON *e = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "entries"),
                                                key);
    cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "charges");
    cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "posts");
    *charges = cJSON_IsNumber(c) ? (long long)c->valuedouble : -1;
    *posts = cJSON_IsNumber(p) ? (long long)p->valuedouble : -1;
    cJSON_Delete(j);
    free(out);
}
