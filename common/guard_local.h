/* guard_local.h -- a worker's local view of the fleet-wide gateway guard
 * (guard.h): the fast path that keeps the guard off the hot path.
 *
 * Asking Redis before and telling it after every gateway call cost two Lua
 * calls per call (about a third of Redis's work per charged order). A
 * worker instead keeps the breaker state it last saw and its own unsent
 * reports:
 *  - admit: while the breaker was closed when last seen (at most
 *    FK_GUARD_STALE_MS ago) and no rate limit is set, a call goes without
 *    asking Redis. Otherwise the caller asks guard_check.lua as before
 *    (open breaker, half-open probe slots, the token bucket stay exact) and
 *    hands the verdict to fk_guard_local_seen().
 *  - report: outcomes are summed and sent every FK_GUARD_TICK_MS as one
 *    guard_report.lua batch; a half-open probe's outcome is sent at once,
 *    alone. Each report's answer refreshes the view; with nothing to report
 *    the tick reads the breaker state if the view was used since.
 * The price: a breaker opened by another worker is seen here up to a tick
 * later (a few more calls to a failing gateway, which transient-failure
 * handling absorbs), and an opening decision waits for the batch. */
#ifndef FK_GUARD_LOCAL_H
#define FK_GUARD_LOCAL_H

#include <uv.h>

#include "guard.h"

#define FK_GUARD_TICK_MS 50
#define FK_GUARD_STALE_MS 200

typedef struct fk_guard_local fk_guard_local;

/* Create the view on loop, talking to Redis through r (which must outlive
 * it until fk_guard_local_close's callback). p is copied. Returns 0 or
 * FK_ENOMEM. */
int fk_guard_local_new(fk_guard_local **out, uv_loop_t *loop, fk_redis *r, const fk_keys *k,
                       const fk_guard_policy *p);

/* 1: the call may go now without asking Redis. 0: ask fk_guard_check(). */
int fk_guard_local_admit(fk_guard_local *g);

/* A verdict of fk_guard_check() (or any fresh breaker state): refresh the
 * view with its breaker state. */
void fk_guard_local_seen(fk_guard_local *g, const char *state);

/* One gateway call's outcome: failed = 1 for a transient failure, probe =
 * the verdict's probe flag (a probe is reported at once). */
void fk_guard_local_report(fk_guard_local *g, int failed, int probe);

/* Send what is unsent (best effort), stop the timer, and free the view
 * once nothing refers to it; cb(arg) then runs once, from the loop. */
void fk_guard_local_close(fk_guard_local *g, void (*cb)(void *arg), void *arg);

#endif
