/* redis.h -- one Redis connection on hiredis 0.14.1's async API and libuv,
 * that survives Redis going away.
 *
 * Everything faka knows about hiredis 0.14.1's pitfalls lives in redis.c
 * (DESIGN.md, "hiredis 0.14.1"): no built-in timeouts, a refused connect
 * that fires no callback, contexts freed by hiredis after a failed connect
 * or a disconnect, NULL replies on connection loss. Moving to hiredis >= 1.1
 * touches only redis.c.
 *
 * A connection is either READY or not. While not ready it reconnects by
 * itself with capped, jittered backoff; a libuv timer is its connect and
 * liveness watchdog: a connect or handshake that takes longer than
 * connect_timeout_ms, or a reply that takes longer than reply_timeout_ms,
 * tears the context down (its pending callbacks get a NULL reply) and starts
 * over. Use one connection for blocking reads and another for commands: a
 * blocking XREADGROUP stalls every later command on its connection. */
#ifndef FK_REDIS_H
#define FK_REDIS_H

#include <stddef.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include "url.h"

typedef struct fk_redis fk_redis;

enum fk_redis_event {
    FK_REDIS_UP = 1,   /* connected, authenticated, db selected */
    FK_REDIS_DOWN = 2, /* the connection was lost; reconnecting */
};

/* Called on every UP and DOWN. It may issue commands on UP. */
typedef void (*fk_redis_event_cb)(fk_redis *r, int event, void *arg);

/* Called exactly once per accepted command. reply is NULL when the
 * connection was lost before the reply arrived: the command may or may not
 * have run. An error reply arrives as REDIS_REPLY_ERROR. The reply is owned
 * by hiredis and freed after the callback returns. */
typedef void (*fk_redis_reply_cb)(fk_redis *r, redisReply *reply, void *arg);

typedef struct fk_redis_options {
    const char *name;          /* for logs and CLIENT SETNAME: "cmd", "read" */
    const char *client_name;   /* CLIENT SETNAME value, or NULL */
    long connect_timeout_ms;   /* connect + AUTH + SELECT must finish in this */
    long reply_timeout_ms;     /* oldest outstanding reply may take this long */
    long ping_interval_ms;     /* PING when idle this long (0 = never) */
    long backoff_min_ms;       /* reconnect backoff, doubling, jittered */
    long backoff_max_ms;
} fk_redis_options;

/* Start connecting. Returns 0 and *out, or FK_ENOMEM / FK_EINVAL. The
 * connection reports FK_REDIS_UP through cb once ready. */
int fk_redis_open(fk_redis **out, uv_loop_t *loop, const fk_redis_target *target,
                  const fk_redis_options *opts, fk_redis_event_cb cb, void *arg);

/* 1 when commands can be sent now. */
int fk_redis_ready(const fk_redis *r);

/* Send a command (hiredis format string). Returns 0: cb will be called
 * exactly once, never from inside this call. Returns FK_EDOWN (not ready)
 * or FK_ENOMEM: cb will never be called. cb may be NULL (fire and forget). */
int fk_redis_command(fk_redis *r, fk_redis_reply_cb cb, void *arg, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Same, with an argument vector (binary safe). */
int fk_redis_commandv(fk_redis *r, fk_redis_reply_cb cb, void *arg, int argc,
                      const char **argv, const size_t *argvlen);

/* Same, with a command already in RESP form (redisFormatCommandArgv). The
 * buffer is copied. */
int fk_redis_formatted(fk_redis *r, fk_redis_reply_cb cb, void *arg, const char *cmd,
                       size_t len);

/* Number of commands sent and not yet answered on the current connection. */
size_t fk_redis_outstanding(const fk_redis *r);

/* Tear the connection down now and reconnect (as if it had timed out). Used
 * by tests and after a protocol surprise. */
void fk_redis_reset(fk_redis *r);

/* Close: pending callbacks get NULL replies, no more events are reported,
 * every handle is closed; done(arg) runs once everything is released (from
 * the loop, never from inside this call). r is invalid after done. */
void fk_redis_close(fk_redis *r, void (*done)(void *arg), void *arg);

/* The same for everyone: 0 for a non-error reply, else FK_EREDIS (with
 * the error text copied into buf when buf is not NULL), or FK_EDOWN for a
 * NULL reply. The one place that maps hiredis replies to faka errors. */
int fk_redis_reply_err(const redisReply *reply, char *buf, size_t len);

#endif
