/* worker.c -- the consumer loop (see worker.h). */
#include "worker.h"
#include "clock.h"
#include "err.h"
#include "gateway.h"
#include "guard_local.h"
#include "http.h"
#include "keys.h"
#include "log.h"
#include "notify.h"
#include "pipeline.h"
#include "redis.h"
#include "scripts.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/* A repeating error's log state (see errlog). */
typedef struct errlog_state {
    uint64_t last;       /* loop time of the last line, 0 = none yet */
    unsigned long count; /* occurrences since that line */
} errlog_state;

typedef struct fk_worker {
    uv_loop_t loop;
    fk_config cfg;
    fk_keys keys;
    fk_redis_target target;
    fk_redis *rd;  /* blocking reads only */
    fk_redis *cmd; /* everything else */
    fk_http *http;   /* the gateway's */
    fk_http *whttp;  /* the shop webhook's: a slow shop must not hold up charges */
    fk_gateway *gw;
    fk_guard_local *guard;
    fk_notifier *notifier;
    fk_ctx ctx;

    fk_job *jobs; /* in flight */
    size_t inflight;
    int reading;     /* an XREADGROUP is outstanding, or replies are being dispatched */
    int group_ok;    /* the consumer group is known to exist */
    int grouping;    /* an XGROUP CREATE is outstanding */
    int durability;  /* Redis's persistence settings were asked for */
    int need_pel;    /* drain our own pending entries before reading new ones */
    char pel_cursor[48];
    unsigned pel_gen; /* bumped when a drain must start again from "0" */
    int read_pel;     /* the read in flight is a drain page ... */
    unsigned read_gen; /* ... of this drain (pel_gen when it was sent) */
    int promoting, reclaiming;
    int held_back;   /* reading paused: charges would wait too long for a connection (admit) */

    int stopping;
    uint64_t stop_deadline;
    int exit_code;
    int closing; /* handles being closed */

    uv_timer_t promote_timer;
    uv_timer_t duty_timer; /* heartbeat, reclaim, drain deadline */
    uv_signal_t sigterm, sigint;
    uint64_t last_heartbeat, last_reclaim, last_group_try;
    errlog_state promote_err;          /* a failing promoter logs once a second */
    errlog_state read_err;             /* so does a failing XREADGROUP */
    errlog_state held_log;             /* reading held back: a line a minute */

    unsigned long long n_settled, n_left, n_abandoned, n_held_back;
} fk_worker;

static void maybe_read(fk_worker *w);
static void shutdown_all(fk_worker *w);
static long long admit(fk_worker *w, long long count);

/* ---- jobs --------------------------------------------------------------- */

static void job_done(fk_job *j, int end, void *arg) {
    fk_worker *w = arg;
    if (j->prev) j->prev->next = j->next;
    else w->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    w->inflight--;
    if (end == FK_JOB_SETTLED) w->n_settled++;
    else if (end == FK_JOB_LEFT) w->n_left++;
    else w->n_abandoned++;
    fk_job_free(j);
    if (w->stopping) {
        if (w->inflight == 0 && !w->reading) shutdown_all(w);
        return;
    }
    maybe_read(w);
}

static int in_flight(const fk_worker *w, const char *id, size_t len) {
    for (const fk_job *j = w->jobs; j; j = j->next)
        if (strlen(j->entry_id) == len && memcmp(j->entry_id, id, len) == 0) return 1;
    return 0;
}

/* Start a job for one [id, [field, value, ...]] element; a NULL field list
 * is an entry trimmed away while pending: acknowledge it. */
static void dispatch(fk_worker *w, const redisReply *e, int skip_inflight) {
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *id = e->element[0], *f = e->element[1];
    if (skip_inflight && in_flight(w, id->str, id->len)) return;
    if (f->type != REDIS_REPLY_ARRAY) {
        const char *argv[] = {"XACK", w->keys.stream, w->keys.group, id->str};
        size_t lens[] = {4, strlen(w->keys.stream), strlen(w->keys.group), id->len};
        fk_redis_commandv(w->cmd, NULL, NULL, 4, argv, lens);
        return;
    }
    const char *kind = "", *val = "";
    size_t klen = 0, vlen = 0;
    if (f->elements >= 2 && f->element[0]->type == REDIS_REPLY_STRING &&
        f->element[1]->type == REDIS_REPLY_STRING) {
        kind = f->element[0]->str;
        klen = f->element[0]->len;
        val = f->element[1]->str;
        vlen = f->element[1]->len;
    }
    fk_job *j = fk_job_new(&w->ctx, id->str, id->len, kind, klen, val, vlen,
                           (int)(f->elements / 2));
    if (!j) {
        fk_error("worker.oom", NULL, "no memory for entry %.*s; it stays pending",
                 (int)id->len, id->str);
        return;
    }
    j->next = w->jobs;
    if (w->jobs) w->jobs->prev = j;
    w->jobs = j;
    w->inflight++;
    j->read_at = uv_now(&w->loop);
    fk_job_start(j);
}

/* A Redis error that repeats on a timer: logged at most once a second,
 * with how often it happened since the last line. */
static void errlog(fk_worker *w, errlog_state *e, const char *event, const char *what,
                   const char *err) {
    uint64_t now = uv_now(&w->loop);
    e->count++;
    if (e->last != 0 && now - e->last < 1000) return;
    fk_error(event, NULL, "%s (%lu time%s in the last second): %s", what, e->count,
             e->count == 1 ? "" : "s", err);
    e->last = now;
    e->count = 0;
}

/* ---- reading ------------------------------------------------------------ */

static void ensure_group(fk_worker *w);

static void on_read(fk_redis *r, redisReply *reply, void *arg) {
    fk_worker *w = arg;
    char err[256];
    (void)r;
    int rc = fk_redis_reply_err(reply, err, sizeof(err));
    if (rc) {
        w->reading = 0;
        if (rc == FK_EREDIS) {
            if (strncmp(err, "NOGROUP", 7) == 0) {
                fk_warn("worker.nogroup", NULL, "consumer group missing; creating it");
                w->group_ok = 0;
                ensure_group(w);
            } else {
                /* the duty timer asks again every 100 ms */
                errlog(w, &w->read_err, "worker.read", "XREADGROUP failed", err);
            }
        }
        if (w->stopping && w->inflight == 0) shutdown_all(w);
        return; /* reconnect / group creation / duty timer resume reading */
    }
    /* What this reply is was decided when its read was sent: a `>` read
     * in flight when a reconnect asked for a drain (the read connection's
     * BLOCK outlives the command connection's drop) says nothing about
     * our pending entries, and a drain page from before the reconnect
     * must not move the new drain's cursor or end it. */
    int pel = w->read_pel;
    int current = pel && w->need_pel && w->read_gen == w->pel_gen;
    size_t n = 0;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0) {
        const redisReply *s = reply->element[0];
        if (s->type == REDIS_REPLY_ARRAY && s->elements == 2 &&
            s->element[1]->type == REDIS_REPLY_ARRAY) {
            const redisReply *entries = s->element[1];
            n = entries->elements;
            if (current && n > 0) {
                const redisReply *last = entries->element[n - 1];
                if (last->type == REDIS_REPLY_ARRAY && last->elements >= 1 &&
                    last->element[0]->type == REDIS_REPLY_STRING)
                    snprintf(w->pel_cursor, sizeof(w->pel_cursor), "%s", last->element[0]->str);
            }
            for (size_t i = 0; i < n; i++) dispatch(w, entries->element[i], pel);
        }
    }
    if (current && n == 0) {
        w->need_pel = 0;
        fk_debug("worker.pel", NULL, "own pending entries drained");
    }
    w->reading = 0;
    if (w->stopping) {
        if (w->inflight == 0) shutdown_all(w);
        return;
    }
    maybe_read(w);
}

/* Admission: how many of count entries to take now. A charge must go out
 * within the lease minus the HTTP timeout (pipeline.c); one taken while the
 * gateway's connections are booked for longer than half of that would only
 * miss it -- not sent (charge.late), taken up again a lease later -- while
 * other workers, or this one a moment later, can carry it. So a worker
 * holds no more jobs than the HTTP client can send within that (every job
 * holds or will make at most one gateway request at a time; jobs that make
 * none count too, which errs on the safe side). Against a gateway slower
 * than --http-max per latency a worker that read on sent about half the
 * charges it could (docs/BENCHMARKS.md, "A slow gateway"). 0: take nothing
 * now; reading resumes as jobs end. */
static long long admit(fk_worker *w, long long count) {
    if (!w->http) return count;
    uint64_t wait = (uint64_t)(w->cfg.lease_ms - w->cfg.http_timeout_ms) / 2;
    size_t cap = fk_http_capacity(w->http, wait);
    long long room = cap > w->inflight ? (long long)(cap - w->inflight) : 0;
    if (room == 0 && !w->held_back) {
        /* a slow gateway pauses reading about once per latency: one line a
         * minute at info, the rest at debug */
        uint64_t now = uv_now(&w->loop);
        w->n_held_back++;
        w->held_log.count++;
        if (w->held_log.last == 0 || now - w->held_log.last >= 60000) {
            fk_info("worker.held_back", NULL,
                    "%zu orders in flight are all the gateway can take within %llu ms; "
                    "reading paused (%lu time%s since the last such line)",
                    w->inflight, (unsigned long long)wait, w->held_log.count,
                    w->held_log.count == 1 ? "" : "s");
            w->held_log.last = now;
            w->held_log.count = 0;
        } else {
            fk_debug("worker.held_back", NULL, "%zu orders in flight; reading paused",
                     w->inflight);
        }
    } else if (room > 0 && w->held_back) {
        fk_debug("worker.held_back", NULL, "%zu orders in flight; reading again", w->inflight);
    }
    w->held_back = room == 0;
    return room < count ? room : count;
}

static void maybe_read(fk_worker *w) {
    if (w->stopping || w->reading || !w->group_ok || !fk_redis_ready(w->rd) ||
        !fk_redis_ready(w->cmd))
        return;
    if (w->inflight >= (size_t)w->cfg.concurrency) return;
    long long room = w->cfg.concurrency - (long long)w->inflight;
    long long count = admit(w, room < w->cfg.batch ? room : w->cfg.batch);
    if (count == 0) return;
    int rc;
    if (w->need_pel)
        rc = fk_redis_command(w->rd, on_read, w, "XREADGROUP GROUP %s %s COUNT %lld STREAMS %s %s",
                              w->keys.group, w->cfg.worker_id, count, w->keys.stream,
                              w->pel_cursor);
    else
        rc = fk_redis_command(w->rd, on_read, w,
                              "XREADGROUP GROUP %s %s COUNT %lld BLOCK %lld STREAMS %s >",
                              w->keys.group, w->cfg.worker_id, count, w->cfg.block_ms,
                              w->keys.stream);
    if (rc == 0) {
        w->reading = 1;
        w->read_pel = w->need_pel;
        w->read_gen = w->pel_gen;
    }
}

static void on_group(fk_redis *r, redisReply *reply, void *arg) {
    fk_worker *w = arg;
    char err[256];
    (void)r;
    w->grouping = 0;
    int rc = fk_redis_reply_err(reply, err, sizeof(err));
    if (rc == 0 || (rc == FK_EREDIS && strncmp(err, "BUSYGROUP", 9) == 0)) {
        w->group_ok = 1;
        maybe_read(w);
    } else if (rc == FK_EREDIS) {
        /* Redis full (OOM), read-only, the stream key of another type ...:
         * the duty timer asks again every second until it works */
        fk_error("worker.group", NULL, "cannot create consumer group: %s; trying again", err);
    }
}

/* The group starts at 0, not $: entries a shop wrote before the first
 * worker ever started are orders too. */
static void ensure_group(fk_worker *w) {
    if (w->grouping) return;
    w->last_group_try = uv_now(&w->loop);
    if (fk_redis_command(w->cmd, on_group, w, "XGROUP CREATE %s %s 0 MKSTREAM", w->keys.stream,
                         w->keys.group) == 0)
        w->grouping = 1;
}

static void on_redis_event(fk_redis *r, int event, void *arg) {
    fk_worker *w = arg;
    if (event == FK_REDIS_UP) {
        /* Whatever was delivered to us before the connection went away is
         * still pending on us: take it up first. */
        w->need_pel = 1;
        w->pel_gen++;
        snprintf(w->pel_cursor, sizeof(w->pel_cursor), "0");
        if (r == w->cmd) {
            fk_scripts_load(w->cmd);
            ensure_group(w);
        }
        maybe_read(w);
    } else {
        if (r == w->cmd) w->group_ok = w->grouping = 0;
        if (r == w->rd) w->reading = 0;
        w->promoting = w->reclaiming = 0;
    }
}

/* ---- duties: promoter, reclaim, heartbeat -------------------------------- */

static void on_promote_tick(uv_timer_t *t);

static void on_promote(fk_redis *r, redisReply *reply, void *arg) {
    fk_worker *w = arg;
    char err[256];
    (void)r;
    w->promoting = 0;
    if (fk_redis_reply_err(reply, err, sizeof(err)) == FK_EREDIS) {
        errlog(w, &w->promote_err, "worker.promote", "promoter failed", err);
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) return;
    long long moved = reply->element[0]->integer;
    if (moved > 0) fk_debug("worker.promote", NULL, "moved %lld due retries", moved);
    /* A full batch means more are due: go again at once. Otherwise wake
     * up right when the next retry is due, if that is before the next
     * regular tick: retries start within a few ms of their due time. */
    long long wait = reply->element[1]->integer;
    if (w->stopping) return;
    if (moved >= w->cfg.promote_batch)
        on_promote_tick(&w->promote_timer);
    else if (wait >= 0 && wait < w->cfg.promote_ms)
        uv_timer_start(&w->promote_timer, on_promote_tick, (uint64_t)wait + 1,
                       (uint64_t)w->cfg.promote_ms);
}

static void on_promote_tick(uv_timer_t *t) {
    fk_worker *w = t->data;
    if (w->promoting || w->stopping || !fk_redis_ready(w->cmd)) return;
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, w->keys.retry);
    fk_args_str(&a, w->keys.stream);
    fk_args_ll(&a, w->cfg.promote_batch);
    if (fk_script_call(w->cmd, FK_LUA_PROMOTE, 2, &a, on_promote, w) == 0) w->promoting = 1;
}

static void on_reclaim(fk_redis *r, redisReply *reply, void *arg) {
    fk_worker *w = arg;
    char err[256];
    (void)r;
    w->reclaiming = 0;
    if (fk_redis_reply_err(reply, err, sizeof(err)) == FK_EREDIS) {
        fk_error("worker.reclaim", NULL, "reclaim failed: %s", err);
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY) return;
    if (reply->elements)
        fk_info("worker.reclaim", NULL, "reclaimed %zu stalled entries", reply->elements);
    for (size_t i = 0; i < reply->elements && !w->stopping; i++)
        dispatch(w, reply->element[i], 1);
}

static void reclaim(fk_worker *w) {
    long long room = w->cfg.concurrency - (long long)w->inflight;
    if (w->reclaiming || w->stopping || room <= 0 || !fk_redis_ready(w->cmd) || !w->group_ok)
        return;
    /* as for reading: another worker may take them */
    room = admit(w, room < 64 ? room : 64);
    if (room == 0) return;
    char minute[160];
    fk_key_stats_minute(&w->keys, fk_now_ms(), minute, sizeof(minute));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, w->keys.stream);
    fk_args_str(&a, w->keys.dead);
    fk_args_str(&a, w->keys.stats);
    fk_args_str(&a, minute);
    fk_args_str(&a, w->keys.group);
    fk_args_str(&a, w->cfg.worker_id);
    fk_args_ll(&a, w->cfg.lease_ms);
    fk_args_ll(&a, room);
    fk_args_ll(&a, w->cfg.max_deliveries);
    fk_args_ll(&a, w->cfg.dead_max);
    if (fk_script_call(w->cmd, FK_LUA_RECLAIM, 4, &a, on_reclaim, w) == 0) w->reclaiming = 1;
}

/* ---- Redis durability ----------------------------------------------------
 * faka's promises across a Redis crash rest on Redis keeping every write it
 * acknowledged: a lost second can undo the pops of codes already delivered
 * (handed out again) or a charge=sent already acted on. Asked once per
 * process; a managed Redis that refuses CONFIG is only noted at debug. */

static void on_durability(fk_redis *r, redisReply *reply, void *arg) {
    char err[256];
    (void)r;
    (void)arg;
    if (fk_redis_reply_err(reply, err, sizeof(err))) {
        fk_debug("redis.durability", NULL, "cannot read Redis's persistence settings: %s", err);
        return;
    }
    const char *aof = "?", *fsync = "?";
    if (reply->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < reply->elements; i += 2) {
            const redisReply *k = reply->element[i], *v = reply->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
            if (strcmp(k->str, "appendonly") == 0) aof = v->str;
            if (strcmp(k->str, "appendfsync") == 0) fsync = v->str;
        }
    if (strcmp(aof, "yes") != 0 || strcmp(fsync, "always") != 0)
        fk_warn("redis.durability", NULL,
                "Redis runs with appendonly=%s appendfsync=%s: a Redis crash can lose its "
                "last writes, and with them codes already delivered (handed out again) or a "
                "charge already sent; faka's guarantees across a Redis crash need appendonly "
                "yes and appendfsync always (README, \"Redis durability\")",
                aof, fsync);
}

static void on_duty(uv_timer_t *t) {
    fk_worker *w = t->data;
    uint64_t now = uv_now(&w->loop);
    if (w->stopping) {
        if (now >= w->stop_deadline) {
            fk_warn("worker.drain", NULL,
                    "drain deadline passed with %zu entries in flight; they stay pending "
                    "and will be reclaimed",
                    w->inflight);
            w->exit_code = 0;
            shutdown_all(w);
        }
        return;
    }
    if (fk_redis_ready(w->cmd) && now - w->last_heartbeat >= 1000) {
        w->last_heartbeat = now;
        fk_redis_command(w->cmd, NULL, NULL, "ZADD %s %lld %s", w->keys.workers, fk_now_ms(),
                         w->cfg.worker_id);
    }
    if (!w->group_ok && fk_redis_ready(w->cmd) && now - w->last_group_try >= 1000)
        ensure_group(w);
    if (!w->durability && fk_redis_ready(w->cmd) &&
        fk_redis_command(w->cmd, on_durability, w, "CONFIG GET append*") == 0)
        w->durability = 1;
    uint64_t every = (uint64_t)w->cfg.lease_ms / 4;
    if (every < 100) every = 100;
    if (now - w->last_reclaim >= every) {
        w->last_reclaim = now;
        reclaim(w);
    }
    maybe_read(w); /* after an error reply, reading resumes here */
}

/* ---- start and stop ----------------------------------------------------- */

static void on_closed(uv_handle_t *h) {
    fk_worker *w = h->data;
    w->closing--;
}

static void on_redis_closed(void *arg) {
    fk_worker *w = arg;
    w->closing--;
}

static void on_http_closed(void *arg) {
    fk_worker *w = arg;
    w->closing--;
}

static void close_handle(fk_worker *w, uv_handle_t *h) {
    if (uv_is_closing(h)) return;
    h->data = w;
    w->closing++;
    uv_close(h, on_closed);
}

/* Close everything; the loop then runs dry and fk_worker_run returns. */
static void shutdown_all(fk_worker *w) {
    if (w->stopping == 2) return;
    w->stopping = 2;
    fk_info("worker.stop", NULL,
            "stopping: %llu settled, %llu left pending, %llu abandoned; reading held back "
            "%llu times",
            w->n_settled, w->n_left, w->n_abandoned, w->n_held_back);
    close_handle(w, (uv_handle_t *)&w->promote_timer);
    close_handle(w, (uv_handle_t *)&w->duty_timer);
    close_handle(w, (uv_handle_t *)&w->sigterm);
    close_handle(w, (uv_handle_t *)&w->sigint);
    if (w->notifier) {
        w->closing++;
        fk_notifier_close(w->notifier, on_redis_closed, w);
        w->notifier = NULL;
    }
    /* Order matters: closing HTTP calls every pending gateway callback
     * (FK_ECLOSED), and those jobs then talk to Redis; closing Redis gives
     * every pending reply NULL, and those jobs end as abandoned (their
     * entries stay pending and are reclaimed by the fleet). Only then is
     * nothing left that could touch a job, the gateway or a connection. */
    if (w->whttp) {
        w->closing++;
        fk_http_close(w->whttp, on_http_closed, w);
        w->whttp = NULL;
    }
    if (w->http) {
        w->closing++;
        fk_http_close(w->http, on_http_closed, w);
        w->http = NULL;
    }
    if (w->gw) {
        fk_gateway_free(w->gw);
        w->gw = w->ctx.gateway = NULL;
    }
    if (w->guard) { /* its last batch goes out before Redis closes */
        w->closing++;
        fk_guard_local_close(w->guard, on_redis_closed, w);
        w->guard = w->ctx.guard = NULL;
    }
    if (w->rd) {
        w->closing++;
        fk_redis_close(w->rd, on_redis_closed, w);
    }
    if (w->cmd) {
        w->closing++;
        fk_redis_close(w->cmd, on_redis_closed, w);
    }
    w->rd = w->cmd = w->ctx.redis = NULL;
    while (w->jobs) { /* none should be left; never leak one */
        fk_job *j = w->jobs;
        w->jobs = j->next;
        fk_job_free(j);
    }
    w->inflight = 0;
}

static void on_signal(uv_signal_t *s, int signum) {
    fk_worker *w = s->data;
    if (w->stopping) {
        fk_warn("worker.signal", NULL, "second signal %d: exiting now", signum);
        /* Nothing is acknowledged that is not done: whatever is in flight
         * stays pending in Redis and is reclaimed by the fleet. */
        _exit(1);
    }
    fk_info("worker.signal", NULL, "signal %d: draining %zu in-flight entries", signum,
            w->inflight);
    w->stopping = 1;
    w->stop_deadline = uv_now(&w->loop) + (uint64_t)w->cfg.lease_ms;
    uv_timer_stop(&w->promote_timer);
    if (w->inflight == 0 && !w->reading) shutdown_all(w);
}

/* Set up clients and connections; 0 or an exit status (3). */
static int setup(fk_worker *w) {
    const fk_config *cfg = &w->cfg;
    int use_gateway = strcmp(cfg->gateway_url, "none") != 0;
    int rc = 0;
    /* The gateway and the shop's webhook each get a client (a pool of
     * --http-max connections) of their own: with one shared, a shop whose
     * endpoint hangs filled the pool with webhooks (up to 256 in flight),
     * and the charges queued behind them until their deadline passed. */
    fk_http_options ho = {cfg->http_connect_timeout_ms, cfg->http_timeout_ms,
                          (int)cfg->http_max, 1};
    if (use_gateway) {
        rc = fk_http_init(&w->http, &w->loop, &ho);
        if (!rc) rc = fk_gateway_init(&w->gw, w->http, cfg->gateway_url);
        if (!rc && w->ctx.notify) rc = fk_http_init(&w->whttp, &w->loop, &ho);
        if (rc) {
            fk_error("worker.http", NULL, "cannot set up the HTTP client: %s", fk_strerror(rc));
            return 3;
        }
        w->ctx.gateway = w->gw;
    } else if (w->ctx.notify && (rc = fk_http_init(&w->whttp, &w->loop, &ho))) {
        fk_error("worker.http", NULL, "cannot set up the HTTP client: %s", fk_strerror(rc));
        return 3;
    }
    char cname[160];
    snprintf(cname, sizeof(cname), "faka-worker:%s", cfg->worker_id);
    fk_redis_options ro = {"read", cname, cfg->redis_timeout_ms,
                           cfg->block_ms + cfg->redis_timeout_ms, 0, 100, 2000};
    fk_redis_options co = {"cmd", cname, cfg->redis_timeout_ms, cfg->redis_timeout_ms,
                           1000, 100, 2000};
    if (fk_redis_open(&w->rd, &w->loop, &w->target, &ro, on_redis_event, w) ||
        fk_redis_open(&w->cmd, &w->loop, &w->target, &co, on_redis_event, w)) {
        fk_error("worker.redis", NULL, "out of memory opening connections");
        return 3;
    }
    w->ctx.redis = w->cmd;
    if (use_gateway) {
        fk_guard_policy gp;
        fk_guard_policy_init(&gp, cfg);
        if (fk_guard_local_new(&w->guard, &w->loop, w->cmd, &w->keys, &gp)) {
            fk_error("worker.guard", NULL, "out of memory setting up the gateway guard");
            return 3;
        }
        w->ctx.guard = w->guard;
    }
    if (w->ctx.notify) {
        rc = fk_notifier_init(&w->notifier, &w->loop, &w->cfg, &w->keys, w->cmd, w->whttp);
        if (rc) {
            fk_error("worker.webhook", NULL, "cannot set up the webhook: %s", fk_strerror(rc));
            return 3;
        }
        fk_notifier_start(w->notifier, 50);
    }
    return 0;
}

int fk_worker_run(const fk_config *cfg) {
    fk_worker *w = calloc(1, sizeof(*w));
    char err[256];
    if (!w) return 3;
    w->cfg = *cfg;
    fk_keys_init(&w->keys, cfg->prefix);
    if (fk_redis_url_parse(cfg->redis_url, &w->target, err, sizeof(err))) {
        fk_error("worker.config", NULL, "%s", err);
        free(w);
        return 2;
    }
    uv_loop_init(&w->loop);
    w->ctx.loop = &w->loop;
    w->ctx.cfg = &w->cfg;
    w->ctx.keys = &w->keys;
    w->ctx.notify = cfg->webhook_url[0] != '\0';
    w->ctx.job_done = job_done;
    w->ctx.arg = w;
    uv_timer_init(&w->loop, &w->promote_timer);
    uv_timer_init(&w->loop, &w->duty_timer);
    uv_signal_init(&w->loop, &w->sigterm);
    uv_signal_init(&w->loop, &w->sigint);
    w->promote_timer.data = w->duty_timer.data = w->sigterm.data = w->sigint.data = w;

    int rc = setup(w);
    if (rc) {
        w->exit_code = rc;
        shutdown_all(w);
    } else {
        uv_timer_start(&w->promote_timer, on_promote_tick, (uint64_t)cfg->promote_ms,
                       (uint64_t)cfg->promote_ms);
        uv_timer_start(&w->duty_timer, on_duty, 100, 100);
        uv_signal_start(&w->sigterm, on_signal, SIGTERM);
        uv_signal_start(&w->sigint, on_signal, SIGINT);
        fk_info("worker.start", NULL,
                "consumer %s on %s:%d prefix=%s gateway=%s concurrency=%lld lease=%lldms",
                cfg->worker_id, w->target.host, w->target.port, cfg->prefix, cfg->gateway_url,
                cfg->concurrency, cfg->lease_ms);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    int code = w->exit_code;
    int lc = uv_loop_close(&w->loop);
    if (lc != 0) fk_error("worker.stop", NULL, "loop did not close cleanly: %s", uv_strerror(lc));
    free(w);
    return code;
}
