/* notify.c -- the webhook sweeper (see notify.h). */
#include "notify.h"
#include "backoff.h"
#include "err.h"
#include "log.h"
#include "order.h"
#include "scripts.h"
#include "webhook.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define SWEEP_BATCH 64

struct fk_notifier {
    uv_loop_t *loop;
    const fk_config *cfg;
    const fk_keys *keys;
    fk_redis *redis;
    fk_webhook *wh;
    uv_timer_t timer;
    int claiming;
    size_t inflight;
    int closing;
    void (*done)(void *);
    void *done_arg;
};

typedef struct send {
    fk_notifier *n;
    char order_id[80];
    int attempts; /* webhook attempts made before this one */
} send_t;

char *fk_notify_body(const char *order_id, const char *state, const char *sku, long qty,
                     const char *codes_json, const char *payment_id, long long delivered_at) {
    cJSON *o = cJSON_CreateObject();
    cJSON *codes = codes_json ? cJSON_Parse(codes_json) : NULL;
    if (!cJSON_IsArray(codes)) {
        cJSON_Delete(codes);
        codes = cJSON_CreateArray();
    }
    if (!o || !codes) {
        cJSON_Delete(o);
        cJSON_Delete(codes);
        return NULL;
    }
    cJSON_AddStringToObject(o, "order_id", order_id);
    cJSON_AddStringToObject(o, "state", state);
    cJSON_AddStringToObject(o, "sku", sku);
    cJSON_AddNumberToObject(o, "qty", (double)qty);
    cJSON_AddItemToObject(o, "codes", codes);
    cJSON_AddStringToObject(o, "payment_id", payment_id);
    cJSON_AddNumberToObject(o, "delivered_at", (double)delivered_at);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* While closing, the notifier is freed once its timer is closed and every
 * callback it is owed has come back (http and redis call back on close). */
static void maybe_finish(fk_notifier *n) {
    if (n->closing != 2 || n->inflight || n->claiming) return;
    void (*done)(void *) = n->done;
    void *arg = n->done_arg;
    fk_webhook_free(n->wh);
    free(n);
    if (done) done(arg);
}

static void drop_send(send_t *s) {
    fk_notifier *n = s->n;
    n->inflight--;
    free(s);
    maybe_finish(n);
}

static void on_done(fk_redis *r, redisReply *reply, void *arg) {
    send_t *s = arg;
    (void)r;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING) {
        const char *st = reply->element[0]->str;
        if (strcmp(st, "notified") != 0)
            fk_log(strcmp(st, "notify_failed") == 0 ? FK_LOG_ERROR : FK_LOG_INFO, "notify.result",
                   s->order_id, "webhook %s after %lld attempts", st,
                   reply->element[1]->integer);
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        /* not recorded: the order stays claimed and is sent again once the
         * claim runs out */
        fk_warn("notify.result", s->order_id, "recording the webhook outcome failed: %s",
                reply->str);
    }
    drop_send(s);
}

/* The wait after a failed webhook attempt (attempts made before it): half
 * the ceiling fixed, half jitter (fk_backoff_delay_equal). A shop's
 * endpoint is down for a deploy or an outage of minutes to hours, so the
 * waits must add up to hours whatever the draws (with the charge's full
 * jitter, base 1 s and cap 60 s, all 10 attempts were spent within ~80 s
 * of an outage); the jittered half still spreads a backlog. */
static long long webhook_delay(int attempts, const fk_config *cfg) {
    return fk_backoff_delay_equal(attempts, cfg->retry_base_ms, cfg->webhook_retry_cap_ms);
}

static void on_sent(void *arg, int ok, const char *reason) {
    send_t *s = arg;
    fk_notifier *n = s->n;
    char okey[FK_KEY_MAX];
    if (n->closing) {
        drop_send(s);
        return;
    }
    fk_key_order(n->keys, s->order_id, okey, sizeof(okey));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, okey);
    fk_args_str(&a, n->keys->notify);
    fk_args_str(&a, s->order_id);
    fk_args_str(&a, ok ? "ok" : "fail");
    fk_args_ll(&a, webhook_delay(s->attempts, n->cfg));
    fk_args_ll(&a, n->cfg->webhook_max);
    fk_args_str(&a, ok ? "" : (reason ? reason : "failed"));
    if (fk_script_call(n->redis, FK_LUA_NOTIFY_DONE, 2, &a, on_done, s) != 0)
        drop_send(s); /* Redis is down: the claim expires, we send again */
}

static void on_order(fk_redis *r, redisReply *reply, void *arg) {
    send_t *s = arg;
    fk_notifier *n = s->n;
    (void)r;
    if (n->closing || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 7) {
        drop_send(s);
        return;
    }
#define F(i) (reply->element[i]->type == REDIS_REPLY_STRING ? reply->element[i]->str : "")
    if (strcmp(F(0), "completed") != 0) {
        /* expired record or not delivered (an operator moved it): drop */
        fk_warn("notify.skip", s->order_id, "order is '%s', not completed: no webhook", F(0));
        fk_redis_command(n->redis, NULL, NULL, "ZREM %s %s", n->keys->notify, s->order_id);
        drop_send(s);
        return;
    }
    /* record fields are outside input: one that is no number in range
     * reads 0 (no attempts yet; qty and time 0 in the body, which the
     * codes it carries contradict for the shop to see) */
    long long attempts = 0, qty = 0, at = 0;
    if (fk_record_int(F(6), 0, 1000000, &attempts)) attempts = 0;
    if (fk_record_int(F(2), 1, FK_QTY_MAX, &qty)) qty = 0;
    if (fk_record_int(F(5), 0, 253402300799999LL, &at)) at = 0;
    s->attempts = (int)attempts;
    char *body = fk_notify_body(s->order_id, F(0), F(1), (long)qty, F(3), F(4), at);
#undef F
    int rc = body ? fk_webhook_send(n->wh, s->order_id, body, on_sent, s) : FK_ENOMEM;
    free(body);
    if (rc) drop_send(s);
}

static void on_claim(fk_redis *r, redisReply *reply, void *arg) {
    fk_notifier *n = arg;
    (void)r;
    n->claiming = 0;
    if (n->closing || !reply || reply->type != REDIS_REPLY_ARRAY) {
        maybe_finish(n);
        return;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING || e->len >= 80) continue;
        send_t *s = calloc(1, sizeof(*s));
        if (!s) return;
        s->n = n;
        memcpy(s->order_id, e->str, e->len);
        char okey[FK_KEY_MAX];
        fk_key_order(n->keys, s->order_id, okey, sizeof(okey));
        if (fk_redis_command(n->redis, on_order, s,
                             "HMGET %s state sku qty codes payment_id updated_at notify_attempts",
                             okey) != 0) {
            free(s);
            return;
        }
        n->inflight++;
    }
}

void fk_notifier_kick(fk_notifier *n) {
    if (n->claiming || n->closing || n->inflight >= SWEEP_BATCH * 4 || !fk_redis_ready(n->redis))
        return;
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, n->keys->notify);
    fk_args_ll(&a, SWEEP_BATCH);
    /* the claim outlives one HTTP attempt with room to record it */
    fk_args_ll(&a, n->cfg->http_timeout_ms * 2 + 1000);
    if (fk_script_call(n->redis, FK_LUA_NOTIFY_CLAIM, 1, &a, on_claim, n) == 0) n->claiming = 1;
}

static void on_tick(uv_timer_t *t) { fk_notifier_kick(t->data); }

int fk_notifier_init(fk_notifier **out, uv_loop_t *loop, const fk_config *cfg,
                     const fk_keys *keys, fk_redis *redis, fk_http *http) {
    fk_notifier *n = calloc(1, sizeof(*n));
    if (!n) return FK_ENOMEM;
    int rc = fk_webhook_init(&n->wh, http, cfg->webhook_url, cfg->webhook_secret);
    if (rc) {
        free(n);
        return rc;
    }
    n->loop = loop;
    n->cfg = cfg;
    n->keys = keys;
    n->redis = redis;
    uv_timer_init(loop, &n->timer);
    n->timer.data = n;
    *out = n;
    return 0;
}

void fk_notifier_start(fk_notifier *n, long interval_ms) {
    uv_timer_start(&n->timer, on_tick, (uint64_t)interval_ms, (uint64_t)interval_ms);
}

size_t fk_notifier_inflight(const fk_notifier *n) { return n->inflight; }

static void on_timer_closed(uv_handle_t *h) {
    fk_notifier *n = h->data;
    n->closing = 2;
    maybe_finish(n);
}

void fk_notifier_close(fk_notifier *n, void (*done)(void *), void *arg) {
    n->closing = 1;
    n->done = done;
    n->done_arg = arg;
    uv_timer_stop(&n->timer);
    uv_close((uv_handle_t *)&n->timer, on_timer_closed);
}
