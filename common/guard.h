/* guard.h -- the gateway guard: a fleet-wide circuit breaker and a
 * fleet-wide token bucket, both kept in Redis ({p}:breaker, {p}:ratelimit)
 * and decided atomically by Lua (lua/guard_check.lua, lua/guard_report.lua).
 *
 * Before every gateway call (charge or status query) a job asks
 * fk_guard_check(). "allow" means call now; a refusal carries how long to
 * wait, and the job reschedules the order for then without using up an
 * attempt (transition.lua op W). After the gateway answered, the job tells
 * fk_guard_report() whether the answer was transient (429, 5xx, timeout,
 * reset) or definitive; the report is fire-and-forget for the job (a lost
 * report only delays a breaker transition), its reply is only logged.
 * A worker does both through its local view (guard_local.h), which asks
 * Redis only when the breaker is not closed or a rate limit is set, and
 * sends its reports in batches.
 *
 * Breaker: closed -> open after `failures` consecutive transient failures or
 * `error_pct` percent of at least `min_calls` calls in `window_s`; open for
 * `cooldown_ms`, then half_open: `probes` calls go through, a probe success
 * closes, a probe failure re-opens. Every worker should run with the same
 * settings: they are passed to the scripts with each call. */
#ifndef FK_GUARD_H
#define FK_GUARD_H

#include "config.h"
#include "keys.h"
#include "redis.h"
#include "scripts.h"

typedef struct fk_guard_policy {
    long long failures, error_pct, min_calls, window_s, cooldown_ms, probes;
    long long rate_rps, burst;
} fk_guard_policy;

/* The policy from the configuration rows breaker-* and rate-limit-*. */
void fk_guard_policy_init(fk_guard_policy *p, const fk_config *cfg);

typedef struct fk_guard_verdict {
    int allow;        /* 1: call the gateway now */
    long long wait_ms;/* refused: try again after this long */
    int probe;        /* allowed as a half-open probe: report it with probe=1 */
    char why[16];     /* ok | open | half_open | rate */
    char state[16];   /* breaker state seen: closed | open | half_open */
} fk_guard_verdict;

/* err is 0 and v valid, or FK_EDOWN / FK_EREDIS / FK_EPROTO (v NULL). */
typedef void (*fk_guard_cb)(void *arg, int err, const fk_guard_verdict *v);

/* Ask whether a gateway call may go now. Returns 0: cb is called exactly
 * once, later. Returns FK_EDOWN / FK_ENOMEM: cb is never called. */
int fk_guard_check(fk_redis *r, const fk_keys *k, const fk_guard_policy *p, fk_guard_cb cb,
                   void *arg);

/* Record a gateway call's outcome: failed = 1 for a transient failure,
 * probe = the verdict's probe flag. Fire and forget; a breaker transition
 * it causes is logged (event breaker.opened / breaker.closed /
 * breaker.reopened). Returns 0 or FK_EDOWN / FK_ENOMEM. */
int fk_guard_report(fk_redis *r, const fk_keys *k, const fk_guard_policy *p, int failed,
                    int probe);

/* The report's answer: err 0 and the breaker state after the report
 * (closed | open | half_open), or an error and state NULL. */
typedef void (*fk_guard_report_cb)(void *arg, int err, const char *state);

/* Record a batch of calls: nok succeeded, nbad failed transiently, trail
 * of the failures came after the batch's last success (nbad when nok is
 * 0); probe = 1 only for a batch of one half-open probe. cb may be NULL;
 * otherwise it is called exactly once when 0 is returned, never when an
 * error (FK_EDOWN / FK_ENOMEM) is returned. */
int fk_guard_report_n(fk_redis *r, const fk_keys *k, const fk_guard_policy *p, long long nok,
                      long long nbad, long long trail, int probe, fk_guard_report_cb cb,
                      void *arg);

/* The argument vectors of the two scripts and the parser of guard_check's
 * reply, shared by the calls above and by tests that run the scripts on a
 * synchronous connection. Keys first: check has 2, report has 1. */
#define FK_GUARD_CHECK_NKEYS 2
#define FK_GUARD_REPORT_NKEYS 1
void fk_guard_check_args(fk_args *a, const fk_keys *k, const fk_guard_policy *p);
void fk_guard_report_args(fk_args *a, const fk_keys *k, const fk_guard_policy *p,
                          long long nok, long long nbad, long long trail, int probe);
/* 0 and *v, or FK_EPROTO for a reply of another shape. */
int fk_guard_parse_verdict(const redisReply *reply, fk_guard_verdict *v);

#endif
