/* redis_uv.c -- hiredis's async API on a libuv loop, without the system
 * calls of the adapter hiredis ships (hiredis/adapters/libuv.h).
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
#include "redis_uv.h"

#include <hiredis/async.h>
#include <stdlib.h>

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

int fk_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop) {
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
