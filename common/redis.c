/* redis.c -- a self-healing Redis connection on hiredis 0.14.1 + libuv.
 *
 * The hiredis 0.14.1 rules this file follows (DESIGN.md):
 *  - there is no redisAsyncSetTimeout and no timer in the libuv adapter, so
 *    a uv_timer (the watchdog) bounds connects, handshakes and replies;
 *  - a refused connect may fire no callback at all (the adapter swallows
 *    the poll error): the watchdog frees the stuck context and reconnects;
 *  - if the connect callback reports an error, hiredis frees the context
 *    itself right after the callback: we only forget our pointer;
 *  - when the server goes away, pending callbacks get a NULL reply, then the
 *    disconnect callback runs, then hiredis frees the context: we forget our
 *    pointer in the disconnect callback and never free it again;
 *  - when we free a context ourselves (redisAsyncFree), we first detach it
 *    (ac->data = NULL) so its disconnect callback is ignored;
 *  - we never free replies and never uv_close the adapter's handles (our
 *    own adapter, below: hiredis's cleanup hook closes them).
 * Every context is freed exactly once: by hiredis (failed connect, server
 * disconnect) or by drop()/fk_redis_close() (timeouts, close), never both. */
#include "redis.h"
#include "backoff.h"
#include "err.h"
#include "log.h"

#include <hiredis/async.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum conn_state {
    ST_WAIT,       /* no context; reconnect timer armed */
    ST_CONNECTING, /* TCP connect in progress */
    ST_HANDSHAKE,  /* AUTH / SELECT / SETNAME / PING sent */
    ST_READY,
    ST_BROKEN,     /* context to be dropped at the next watchdog tick */
    ST_CLOSING,
};

struct fk_redis {
    uv_loop_t *loop;
    fk_redis_target target;
    fk_redis_options opts;
    char name[32];
    char client_name[64];
    fk_redis_event_cb event_cb;
    void *event_arg;

    redisAsyncContext *ac; /* NULL when there is no live context */
    unsigned gen;          /* bumped whenever ac is abandoned */
    enum conn_state state;
    uint64_t state_since;  /* uv_now() when the state was entered */
    size_t outstanding;    /* commands awaiting replies on ac */
    uint64_t progress_at;  /* last reply, or first send after idle */
    uint64_t activity_at;  /* last send or reply (for idle PINGs) */
    long backoff_ms;
    int handshake_left;
    int up; /* UP reported and no DOWN since */

    uv_timer_t watchdog;
    uv_timer_t retry;
    int closing_handles;
    void (*done)(void *);
    void *done_arg;
};

typedef struct cmd {
    fk_redis *r;
    fk_redis_reply_cb cb;
    void *arg;
    unsigned gen;
} cmd;

static void schedule_reconnect(fk_redis *r);
static void drop(fk_redis *r, const char *why);

int fk_redis_reply_err(const redisReply *reply, char *buf, size_t len) {
    if (!reply) {
        if (buf && len) snprintf(buf, len, "connection lost");
        return FK_EDOWN;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (buf && len) snprintf(buf, len, "%.*s", (int)reply->len, reply->str);
        return FK_EREDIS;
    }
    return 0;
}

static void set_state(fk_redis *r, enum conn_state st) {
    r->state = st;
    r->state_since = uv_now(r->loop);
}

/* Report UP or DOWN; DOWN only follows an UP, so listeners see pairs. */
static void emit(fk_redis *r, int event) {
    if (event == FK_REDIS_DOWN && !r->up) return;
    r->up = event == FK_REDIS_UP;
    if (r->event_cb && r->state != ST_CLOSING) r->event_cb(r, event, r->event_arg);
}

/* Every reply of every command comes through here first. */
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
    (void)ac;
    cmd *c = privdata;
    fk_redis *r = c->r;
    if (c->gen == r->gen) {
        if (r->outstanding) r->outstanding--;
        r->progress_at = r->activity_at = uv_now(r->loop);
        /* A NULL reply means hiredis is tearing the context down: stop
         * using it now, the disconnect callback follows. */
        if (!reply && r->state == ST_READY) set_state(r, ST_BROKEN);
    }
    if (c->cb) c->cb(r, reply, c->arg);
    free(c);
}

static cmd *new_cmd(fk_redis *r, fk_redis_reply_cb cb, void *arg) {
    cmd *c = malloc(sizeof(*c));
    if (!c) return NULL;
    c->r = r;
    c->cb = cb;
    c->arg = arg;
    c->gen = r->gen;
    return c;
}

static void sent(fk_redis *r) {
    uint64_t now = uv_now(r->loop);
    if (r->outstanding++ == 0) r->progress_at = now;
    r->activity_at = now;
}

/* ---- handshake ---------------------------------------------------------- */

static void on_handshake(fk_redis *r, redisReply *reply, void *arg) {
    const char *what = arg;
    char err[256];
    if (r->state != ST_HANDSHAKE) return; /* context already abandoned */
    if (fk_redis_reply_err(reply, err, sizeof(err))) {
        fk_error("redis.handshake", NULL, "%s: %s failed: %s", r->name, what, err);
        set_state(r, ST_BROKEN); /* the watchdog drops it at its next tick */
        return;
    }
    if (--r->handshake_left == 0) {
        set_state(r, ST_READY);
        r->backoff_ms = 0;
        fk_info("redis.up", NULL, "%s: connected to %s:%d", r->name, r->target.host,
                r->target.port);
        emit(r, FK_REDIS_UP);
    }
}

static int handshake_cmd(fk_redis *r, const char *what, int argc, const char **argv) {
    cmd *c = new_cmd(r, on_handshake, (void *)what);
    if (!c) return FK_ENOMEM;
    if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, NULL) != REDIS_OK) {
        free(c);
        return FK_EDOWN;
    }
    sent(r);
    r->handshake_left++;
    return 0;
}

static void on_connect(const redisAsyncContext *ac, int status) {
    fk_redis *r = ac->data;
    if (!r || r->ac != ac) return;
    if (status != REDIS_OK) {
        /* hiredis frees ac after this callback returns: forget it. */
        fk_warn("redis.connect", NULL, "%s: connect to %s:%d failed: %s", r->name,
                r->target.host, r->target.port, ac->errstr);
        r->ac = NULL;
        r->gen++;
        r->outstanding = 0;
        schedule_reconnect(r);
        return;
    }
    set_state(r, ST_HANDSHAKE);
    r->handshake_left = 0;
    int rc = 0;
    if (r->target.password[0]) {
        if (r->target.user[0]) {
            const char *a[] = {"AUTH", r->target.user, r->target.password};
            rc = handshake_cmd(r, "AUTH", 3, a);
        } else {
            const char *a[] = {"AUTH", r->target.password};
            rc = handshake_cmd(r, "AUTH", 2, a);
        }
    }
    if (!rc && r->target.db) {
        char db[16];
        snprintf(db, sizeof(db), "%d", r->target.db);
        const char *a[] = {"SELECT", db};
        rc = handshake_cmd(r, "SELECT", 2, a);
    }
    if (!rc && r->client_name[0]) {
        const char *a[] = {"CLIENT", "SETNAME", r->client_name};
        rc = handshake_cmd(r, "CLIENT SETNAME", 3, a);
    }
    if (!rc) {
        const char *a[] = {"PING"};
        rc = handshake_cmd(r, "PING", 1, a);
    }
    if (rc) set_state(r, ST_BROKEN);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    fk_redis *r = ac->data;
    if (!r || r->ac != ac) return; /* a context we dropped ourselves */
    /* hiredis frees ac after this callback returns. */
    fk_warn("redis.down", NULL, "%s: connection lost (%s)", r->name,
            status == REDIS_OK ? "closed" : ac->errstr);
    r->ac = NULL;
    r->gen++;
    r->outstanding = 0;
    schedule_reconnect(r);
    emit(r, FK_REDIS_DOWN);
}

/* ---- the libuv event adapter -------------------------------------------
 *
 * Ours, not hiredis/adapters/libuv.h (hiredis's async API takes any adapter
 * through ac->ev; the decision and its measurements: docs/BENCHMARKS.md).
 *
 * hiredis 0.14.1 asks its event adapter for write interest on every command
 * it queues and for read interest after every read and every write. The
 * shipped adapter answers each of those calls with uv_poll_start(), and
 * libuv 1.44 turns every uv_poll_start() into an immediate
 * epoll_ctl(EPOLL_CTL_DEL) and an epoll_ctl(EPOLL_CTL_ADD) on the next poll,
 * whether the events changed or not: about one system call per command,
 * plus a loop iteration woken only to learn that the socket is writable.
 *
 * This adapter changes the poll handle only when the events it needs
 * really change: read interest from the connect on, write interest only
 * while connecting or while the socket's send buffer is full. Commands
 * queued on a connected context are written from a uv_prepare handle, which
 * runs once per loop iteration just before the loop would block: everything
 * the iteration's callbacks queued goes out in one write, at once.
 *
 * It keeps the shipped adapter's one quirk that redis.c relies on: a poll
 * error (status < 0) is not passed on, so a refused connect may report
 * nothing and redis.c's watchdog ends it (DESIGN.md, hiredis pitfalls). */

typedef struct redis_uv {
    redisAsyncContext *ac; /* NULL once hiredis let go of the context */
    uv_poll_t poll;
    uv_prepare_t flush;
    int events;            /* what poll watches now */
    int want_read, want_write;
    int flushing;          /* inside on_flush's redisAsyncHandleWrite */
    int open;              /* handles not yet closed */
} redis_uv;

static void on_poll(uv_poll_t *handle, int status, int events) {
    redis_uv *p = handle->data;
    if (status != 0) return;
    if (p->ac && (events & UV_READABLE)) redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
}

/* Bring the poll handle in line with what hiredis wants, if that changed. */
static void update(redis_uv *p) {
    int ev = (p->want_read ? UV_READABLE : 0) | (p->want_write ? UV_WRITABLE : 0);
    if (ev == p->events || !p->ac) return;
    p->events = ev;
    if (ev)
        uv_poll_start(&p->poll, ev, on_poll);
    else
        uv_poll_stop(&p->poll);
}

static void on_flush(uv_prepare_t *handle) {
    redis_uv *p = handle->data;
    uv_prepare_stop(&p->flush);
    if (!p->ac) return;
    p->flushing = 1;
    /* may disconnect: then cleanup ran, p->ac is NULL, p lives until the
     * handles' close callbacks */
    redisAsyncHandleWrite(p->ac);
    p->flushing = 0;
}

static void add_read(void *arg) {
    redis_uv *p = arg;
    p->want_read = 1;
    update(p);
}

static void del_read(void *arg) {
    redis_uv *p = arg;
    p->want_read = 0;
    update(p);
}

/* A queued command, or (from inside a write) data that did not fit. */
static void add_write(void *arg) {
    redis_uv *p = arg;
    if (p->ac && (p->ac->c.flags & REDIS_CONNECTED) && !p->flushing && !p->want_write) {
        uv_prepare_start(&p->flush, on_flush);
        return;
    }
    /* connecting (writable means connected), or the send buffer is full */
    p->want_write = 1;
    update(p);
}

static void del_write(void *arg) {
    redis_uv *p = arg;
    p->want_write = 0;
    update(p);
}

static void on_closed(uv_handle_t *handle) {
    redis_uv *p = handle->data;
    if (--p->open == 0) free(p);
}

static void cleanup(void *arg) {
    redis_uv *p = arg;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, on_closed);
    uv_close((uv_handle_t *)&p->flush, on_closed);
}

/* Attach ac (from redisAsyncConnect*, not yet attached) to loop. Returns 0,
 * or -1 (out of memory, or libuv refused the fd): nothing attached, the
 * caller still owns ac. hiredis's cleanup hook closes the handles. */
static int uv_attach(redisAsyncContext *ac, uv_loop_t *loop) {
    if (ac->ev.data != NULL) return -1;
    redis_uv *p = calloc(1, sizeof(*p));
    if (!p) return -1;
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return -1;
    }
    uv_prepare_init(loop, &p->flush); /* cannot fail */
    p->poll.data = p;
    p->flush.data = p;
    p->open = 2;
    p->ac = ac;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    ac->ev.data = p;
    return 0;
}

/* ---- connect / drop ----------------------------------------------------- */

static void connect_now(fk_redis *r) {
    redisAsyncContext *ac = redisAsyncConnect(r->target.host, r->target.port);
    if (!ac) {
        schedule_reconnect(r);
        return;
    }
    if (ac->err) {
        fk_warn("redis.connect", NULL, "%s: connect to %s:%d failed: %s", r->name,
                r->target.host, r->target.port, ac->errstr);
        redisAsyncFree(ac); /* never attached, never connected: no callbacks */
        schedule_reconnect(r);
        return;
    }
    ac->data = r;
    if (uv_attach(ac, r->loop) != 0) {
        redisAsyncFree(ac);
        schedule_reconnect(r);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    r->outstanding = 0;
    set_state(r, ST_CONNECTING);
}

static void on_retry(uv_timer_t *t) {
    fk_redis *r = t->data;
    if (r->state == ST_WAIT) connect_now(r);
}

static void schedule_reconnect(fk_redis *r) {
    if (r->state == ST_CLOSING) return;
    set_state(r, ST_WAIT);
    long min = r->opts.backoff_min_ms, max = r->opts.backoff_max_ms;
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : min;
    if (r->backoff_ms > max) r->backoff_ms = max;
    /* jitter in [backoff/2, backoff] so a fleet does not reconnect in step */
    long delay = r->backoff_ms / 2 + (long)fk_rand_upto(r->backoff_ms / 2);
    uv_timer_start(&r->retry, on_retry, (uint64_t)delay, 0);
}

/* Abandon the current context: detach it so its disconnect callback is
 * ignored, free it (its pending callbacks get NULL replies), report DOWN if
 * it was ready, and reconnect later. */
static void drop(fk_redis *r, const char *why) {
    redisAsyncContext *ac = r->ac;
    fk_warn("redis.drop", NULL, "%s: dropping connection to %s:%d: %s", r->name, r->target.host,
            r->target.port, why);
    r->ac = NULL;
    r->gen++;
    r->outstanding = 0;
    schedule_reconnect(r);
    if (ac) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    emit(r, FK_REDIS_DOWN);
}

static void on_watchdog(uv_timer_t *t) {
    fk_redis *r = t->data;
    uint64_t now = uv_now(r->loop);
    switch (r->state) {
    case ST_CONNECTING:
    case ST_HANDSHAKE:
        if (now - r->state_since > (uint64_t)r->opts.connect_timeout_ms)
            drop(r, r->state == ST_CONNECTING ? "connect timed out" : "handshake timed out");
        break;
    case ST_READY:
        if (r->outstanding && now - r->progress_at > (uint64_t)r->opts.reply_timeout_ms) {
            drop(r, "no reply within the timeout");
        } else if (!r->outstanding && r->opts.ping_interval_ms > 0 &&
                   now - r->activity_at > (uint64_t)r->opts.ping_interval_ms) {
            fk_redis_command(r, NULL, NULL, "PING");
        }
        break;
    case ST_BROKEN:
        drop(r, "connection failed");
        break;
    case ST_WAIT:
    case ST_CLOSING:
        break;
    }
}

/* ---- public API --------------------------------------------------------- */

int fk_redis_open(fk_redis **out, uv_loop_t *loop, const fk_redis_target *target,
                  const fk_redis_options *opts, fk_redis_event_cb cb, void *arg) {
    fk_redis *r = calloc(1, sizeof(*r));
    if (!r) return FK_ENOMEM;
    r->loop = loop;
    r->target = *target;
    r->opts = *opts;
    if (r->opts.connect_timeout_ms <= 0) r->opts.connect_timeout_ms = 3000;
    if (r->opts.reply_timeout_ms <= 0) r->opts.reply_timeout_ms = 3000;
    if (r->opts.backoff_min_ms <= 0) r->opts.backoff_min_ms = 100;
    if (r->opts.backoff_max_ms < r->opts.backoff_min_ms) r->opts.backoff_max_ms = 2000;
    snprintf(r->name, sizeof(r->name), "%s", opts->name ? opts->name : "redis");
    snprintf(r->client_name, sizeof(r->client_name), "%s",
             opts->client_name ? opts->client_name : "");
    r->opts.name = r->name;
    r->opts.client_name = r->client_name;
    r->event_cb = cb;
    r->event_arg = arg;
    uv_timer_init(loop, &r->watchdog);
    uv_timer_init(loop, &r->retry);
    r->watchdog.data = r->retry.data = r;
    long tick = r->opts.reply_timeout_ms / 4;
    if (r->opts.connect_timeout_ms / 4 < tick) tick = r->opts.connect_timeout_ms / 4;
    if (tick > 250) tick = 250;
    if (tick < 10) tick = 10;
    uv_timer_start(&r->watchdog, on_watchdog, (uint64_t)tick, (uint64_t)tick);
    set_state(r, ST_WAIT);
    connect_now(r);
    *out = r;
    return 0;
}

int fk_redis_ready(const fk_redis *r) {
    return r && r->state == ST_READY && r->ac != NULL;
}

size_t fk_redis_outstanding(const fk_redis *r) { return r->outstanding; }

int fk_redis_commandv(fk_redis *r, fk_redis_reply_cb cb, void *arg, int argc,
                      const char **argv, const size_t *argvlen) {
    if (!fk_redis_ready(r)) return FK_EDOWN;
    cmd *c = new_cmd(r, cb, arg);
    if (!c) return FK_ENOMEM;
    if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, argvlen) != REDIS_OK) {
        free(c);
        return FK_EDOWN;
    }
    sent(r);
    return 0;
}

int fk_redis_formatted(fk_redis *r, fk_redis_reply_cb cb, void *arg, const char *buf,
                       size_t len) {
    if (!fk_redis_ready(r)) return FK_EDOWN;
    cmd *c = new_cmd(r, cb, arg);
    if (!c) return FK_ENOMEM;
    if (redisAsyncFormattedCommand(r->ac, on_reply, c, buf, len) != REDIS_OK) {
        free(c);
        return FK_EDOWN;
    }
    sent(r);
    return 0;
}

int fk_redis_command(fk_redis *r, fk_redis_reply_cb cb, void *arg, const char *fmt, ...) {
    if (!fk_redis_ready(r)) return FK_EDOWN;
    cmd *c = new_cmd(r, cb, arg);
    if (!c) return FK_ENOMEM;
    va_list ap;
    va_start(ap, fmt);
    int rc = redisvAsyncCommand(r->ac, on_reply, c, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK) {
        free(c);
        return FK_EDOWN;
    }
    sent(r);
    return 0;
}

void fk_redis_reset(fk_redis *r) {
    if (r->state != ST_CLOSING && r->ac) drop(r, "reset requested");
}

static void on_handle_closed(uv_handle_t *h) {
    fk_redis *r = h->data;
    if (--r->closing_handles == 0) {
        void (*done)(void *) = r->done;
        void *arg = r->done_arg;
        free(r);
        if (done) done(arg);
    }
}

void fk_redis_close(fk_redis *r, void (*done)(void *arg), void *arg) {
    if (!r) return;
    redisAsyncContext *ac = r->ac;
    set_state(r, ST_CLOSING);
    r->done = done;
    r->done_arg = arg;
    r->ac = NULL;
    r->gen++;
    r->outstanding = 0;
    if (ac) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    r->closing_handles = 2;
    uv_timer_stop(&r->watchdog);
    uv_timer_stop(&r->retry);
    uv_close((uv_handle_t *)&r->watchdog, on_handle_closed);
    uv_close((uv_handle_t *)&r->retry, on_handle_closed);
}
