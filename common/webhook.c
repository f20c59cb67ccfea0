/* webhook.c -- signed shop notification over the shared HTTP client. */
#include "webhook.h"
#include "err.h"
#include "hmac.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WH_ORDER_MAX 255

struct fk_webhook {
    fk_http *http;
    char *url;
    char *secret;
};

typedef struct wh_call {
    fk_webhook_cb cb;
    void *arg;
} wh_call;

static long long wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int fk_webhook_sign(const char *secret, long long ts_ms, const char *body,
                    size_t len, char *out, size_t outlen) {
    if (!secret || !out || (!body && len))
        return FK_EINVAL;
    if (outlen < FK_WEBHOOK_SIG_LEN)
        return FK_ERANGE;
    char prefix[32];
    int pl = snprintf(prefix, sizeof(prefix), "%lld.", ts_ms);
    if (pl < 0 || (size_t)pl >= sizeof(prefix))
        return FK_EINVAL;
    if (len > (size_t)-1 - (size_t)pl)
        return FK_ERANGE;
    char *msg = malloc((size_t)pl + len + 1);
    if (!msg)
        return FK_ENOMEM;
    memcpy(msg, prefix, (size_t)pl);
    if (len)
        memcpy(msg + pl, body, len);
    char hex[65];
    int rc = fk_hmac_sha256_hex(secret, strlen(secret), msg, (size_t)pl + len, hex);
    free(msg);
    if (rc < 0)
        return rc;
    snprintf(out, outlen, "v1=%s", hex);
    return 0;
}

int fk_webhook_init(fk_webhook **out, fk_http *http, const char *url,
                    const char *secret) {
    if (!out || !http || !url || !url[0] || !secret || !secret[0])
        return FK_EINVAL;
    *out = NULL;
    fk_webhook *w = calloc(1, sizeof(*w));
    if (!w)
        return FK_ENOMEM;
    w->http = http;
    w->url = strdup(url);
    w->secret = strdup(secret);
    if (!w->url || !w->secret) {
        fk_webhook_free(w);
        return FK_ENOMEM;
    }
    *out = w;
    return 0;
}

static void wh_http_cb(void *arg, const fk_http_response *resp) {
    wh_call *c = arg;
    char reason[32];
    int ok = 0;
    switch (resp->err) {
    case 0:
        ok = resp->status >= 200 && resp->status < 300;
        if (ok)
            snprintf(reason, sizeof(reason), "ok");
        else
            snprintf(reason, sizeof(reason), "http_%ld", resp->status);
        break;
    case FK_ETIMEOUT: snprintf(reason, sizeof(reason), "timeout"); break;
    case FK_ECLOSED: snprintf(reason, sizeof(reason), "closed"); break;
    case FK_ENOMEM: snprintf(reason, sizeof(reason), "nomem"); break;
    default:
        snprintf(reason, sizeof(reason), "%s",
                 resp->maybe_sent ? "transport_error" : "connect_failed");
        break;
    }
    c->cb(c->arg, ok, reason);
    free(c);
}

static int order_valid(const char *id) {
    if (!id || !id[0] || strlen(id) > WH_ORDER_MAX)
        return 0;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

int fk_webhook_send(fk_webhook *w, const char *order_id, const char *body_json,
                    fk_webhook_cb cb, void *arg) {
    if (!w || !cb || !body_json || !order_valid(order_id))
        return FK_EINVAL;

    size_t blen = strlen(body_json);
    long long ts = wall_ms();
    char sig[FK_WEBHOOK_SIG_LEN];
    int rc = fk_webhook_sign(w->secret, ts, body_json, blen, sig, sizeof(sig));
    if (rc < 0)
        return rc;

    char h_ts[64], h_sig[96];
    snprintf(h_ts, sizeof(h_ts), "X-Faka-Timestamp: %lld", ts);
    snprintf(h_sig, sizeof(h_sig), "X-Faka-Signature: %s", sig);
    size_t ol = strlen("X-Faka-Order: ") + strlen(order_id) + 1;
    char *h_order = malloc(ol);
    wh_call *c = malloc(sizeof(*c));
    rc = FK_ENOMEM;
    if (h_order && c) {
        snprintf(h_order, ol, "X-Faka-Order: %s", order_id);
        const char *headers[] = {"Content-Type: application/json", h_ts, h_sig,
                                 h_order, NULL};
        c->cb = cb;
        c->arg = arg;
        rc = fk_http_request(w->http, "POST", w->url, headers, body_json, blen,
                             wh_http_cb, c);
    }
    if (rc < 0)
        free(c);
    free(h_order);
    return rc;
}

void fk_webhook_free(fk_webhook *w) {
    if (!w)
        return;
    free(w->url);
    free(w->secret);
    free(w);
}
