/* redis_uv.h -- hiredis's async API on a libuv loop (see redis_uv.c): the
 * event adapter redis.c attaches instead of hiredis/adapters/libuv.h. */
#ifndef FK_REDIS_UV_H
#define FK_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* Attach ac, a context from redisAsyncConnect* not yet attached, to loop.
 * Returns 0, or -1 (already attached, out of memory, or libuv refused the
 * fd): then nothing was attached and the caller still owns and frees ac.
 * The adapter's handles are closed, and its memory freed, when hiredis
 * frees the context (its cleanup hook); the caller never closes them. */
int fk_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
