/* transition.h -- one order state transition through lua/transition.lua:
 * the fenced compare-and-set that everything changing an order's state
 * shares (the pipeline in every worker, the reaper, operator tools).
 *
 * fk_transition() builds transition.lua's KEYS and ARGV in exactly one
 * place: the order, stream, stock, retry, review, stats, notify and active
 * keys, the buyer's cooldown hash when a failure may count against the
 * buyer, and the configured retention, lease, TTLs and cooldown policy.
 * The caller has checked the transition against state.c's table (asserted
 * here) and gets transition.lua's reply back unchanged. */
#ifndef FK_TRANSITION_H
#define FK_TRANSITION_H

#include <hiredis/hiredis.h>

#include "config.h"
#include "keys.h"
#include "redis.h"
#include "scripts.h"
#include "state.h"

/* What to change. Strings may be NULL where noted; all must live until
 * fk_transition() returns (the command is formatted inside it). */
typedef struct fk_tr {
    fk_state from, to;
    fk_reason reason;        /* FK_R_NONE: the state's own message */
    const char *detail;      /* fills the reason's %s (NULL reads "unknown") */
    const char *ops;         /* transition.lua's op letters, 'A' excluded (NULL = none) */
    long long delay_ms;      /* for ops R, W, P */
    const char *charge;      /* NULL = keep */
    const char *payment_id;  /* NULL = keep */
    const char *extra_field; /* one more field to set (NULL = none) */
    const char *extra_value;
    const char *operator_name; /* an operator action: recorded with note and audit (NULL = not one) */
    const char *note;
} fk_tr;

/* Which order, as the caller holds it. */
typedef struct fk_tr_order {
    const char *order_id;
    const char *sku;         /* its stock list (ops D, L, S) */
    const char *buyer;       /* NULL or "" = no buyer: no cooldown counting */
    const char *fence;       /* the caller's fencing token; "" = unfenced */
    const char *entry_id;    /* NULL or "": acknowledge nothing; else op A on it */
} fk_tr_order;

/* Run transition.lua for o with t. Returns 0: cb is called exactly once,
 * later, with the script's reply ({'ok', fence} | {'stale', state, fence} |
 * {'noresv'} | {'nostock', available}, or an error / NULL reply). Returns
 * FK_EDOWN / FK_ENOMEM / FK_EINVAL (ops too long): cb is never called. */
int fk_transition(fk_redis *r, const fk_config *cfg, const fk_keys *keys, const fk_tr_order *o,
                  const fk_tr *t, fk_redis_reply_cb cb, void *arg);

/* transition.lua's argument vector, for callers with their own connection
 * (fakactl's synchronous one): fk_transition_args() fills c (KEYS first,
 * c->nkeys of them; the strings live in c) and returns 0, or FK_EINVAL
 * (ops too long). fk_transition() is this plus the asynchronous call. */
typedef struct fk_tr_args {
    fk_args a;
    int nkeys;
    char okey[FK_KEY_MAX], skey[FK_KEY_MAX], ckey[FK_KEY_MAX], minute[160], msg[512], ops[24];
} fk_tr_args;
int fk_transition_args(fk_tr_args *c, const fk_config *cfg, const fk_keys *keys,
                       const fk_tr_order *o, const fk_tr *t);

/* transition.lua's answer, for callers that need no more than its kind. */
enum fk_tr_result {
    FK_TR_OK = 1,
    FK_TR_STALE,   /* the order moved on or the fence is not ours: nothing changed */
    FK_TR_NORESV,  /* op D without a reservation: nothing changed */
    FK_TR_NOSTOCK, /* op S without enough stock: nothing changed */
};

/* One of enum fk_tr_result, or FK_EDOWN (NULL reply), FK_EREDIS (error
 * reply, text in err when not NULL), FK_EPROTO (another shape). */
int fk_transition_result(const redisReply *reply, char *err, size_t errlen);

#endif
