/* guard_local.c -- a worker's local view of the gateway guard: admit calls
 * while the breaker was last seen closed, batch the reports (see
 * guard_local.h). */
#include "guard_local.h"
#include "err.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

struct fk_guard_local {
    uv_loop_t *loop;
    fk_redis *r;
    const fk_keys *k;
    fk_guard_policy p;
    uv_timer_t timer;
    int seen_closed;     /* the breaker was closed when last seen */
    uint64_t seen_at;    /* uv_now() of that sighting; 0 = never seen */
    int used;            /* admit was asked since the last tick */
    long long nok, nbad; /* outcomes not sent yet */
    long long trail;     /* of nbad, those after the last success */
    int pending;         /* Redis calls whose callback refers to this view */
    int closing, timer_open;
    void (*close_cb)(void *arg);
    void *close_arg;
};

static void maybe_free(fk_guard_local *g) {
    if (!g->closing || g->timer_open || g->pending) return;
    void (*cb)(void *) = g->close_cb;
    void *arg = g->close_arg;
    free(g);
    if (cb) cb(arg);
}

void fk_guard_local_seen(fk_guard_local *g, const char *state) {
    if (!state) return;
    g->seen_closed = strcmp(state, "closed") == 0;
    g->seen_at = uv_now(g->loop);
}

static void on_report(void *arg, int err, const char *state) {
    fk_guard_local *g = arg;
    g->pending--;
    if (!err && !g->closing) fk_guard_local_seen(g, state);
    maybe_free(g);
}

static void on_state(fk_redis *r, redisReply *reply, void *arg) {
    fk_guard_local *g = arg;
    (void)r;
    g->pending--;
    if (!g->closing && fk_redis_reply_err(reply, NULL, 0) == 0) {
        if (reply->type == REDIS_REPLY_STRING)
            fk_guard_local_seen(g, reply->str);
        else if (reply->type == REDIS_REPLY_NIL) /* never opened yet */
            fk_guard_local_seen(g, "closed");
    }
    maybe_free(g);
}

/* Send the unsent outcomes as one batch; on a send error they stay for
 * the next tick. */
static void flush(fk_guard_local *g) {
    if (!g->nok && !g->nbad) return;
    int rc = fk_guard_report_n(g->r, g->k, &g->p, g->nok, g->nbad, g->trail, 0, on_report, g);
    if (rc) {
        fk_debug("guard.report", NULL, "batch of %lld calls not sent: %s", g->nok + g->nbad,
                 fk_strerror(rc));
        return;
    }
    g->pending++;
    g->nok = g->nbad = g->trail = 0;
}

static void on_tick(uv_timer_t *t) {
    fk_guard_local *g = t->data;
    if (g->nok || g->nbad) {
        flush(g);
    } else if (g->used) {
        if (fk_redis_command(g->r, on_state, g, "HGET %s state", g->k->breaker) == 0)
            g->pending++;
    }
    g->used = 0;
}

int fk_guard_local_new(fk_guard_local **out, uv_loop_t *loop, fk_redis *r, const fk_keys *k,
                       const fk_guard_policy *p) {
    fk_guard_local *g = calloc(1, sizeof(*g));
    if (!g) return FK_ENOMEM;
    g->loop = loop;
    g->r = r;
    g->k = k;
    g->p = *p;
    uv_timer_init(loop, &g->timer);
    g->timer.data = g;
    g->timer_open = 1;
    uv_timer_start(&g->timer, on_tick, FK_GUARD_TICK_MS, FK_GUARD_TICK_MS);
    *out = g;
    return 0;
}

int fk_guard_local_admit(fk_guard_local *g) {
    g->used = 1;
    if (g->closing || g->p.rate_rps > 0 || !g->seen_closed || !g->seen_at) return 0;
    return uv_now(g->loop) - g->seen_at <= FK_GUARD_STALE_MS;
}

void fk_guard_local_report(fk_guard_local *g, int failed, int probe) {
    if (probe) {
        int rc = fk_guard_report_n(g->r, g->k, &g->p, !failed, !!failed, !!failed, 1,
                                   on_report, g);
        if (rc)
            fk_debug("guard.report", NULL, "probe report not sent: %s", fk_strerror(rc));
        else
            g->pending++;
        return;
    }
    if (failed) {
        g->nbad++;
        g->trail++;
    } else {
        g->nok++;
        g->trail = 0;
    }
}

static void on_timer_closed(uv_handle_t *h) {
    fk_guard_local *g = h->data;
    g->timer_open = 0;
    maybe_free(g);
}

void fk_guard_local_close(fk_guard_local *g, void (*cb)(void *arg), void *arg) {
    flush(g);
    g->closing = 1;
    g->close_cb = cb;
    g->close_arg = arg;
    uv_close((uv_handle_t *)&g->timer, on_timer_closed);
}
