/* reaper.c -- faka-reaper's loop: settling orders past their deadline,
 * looking again at orders it expired on the gateway's 404, sweeping dead
 * consumers, trimming the stream (see reaper.h). */
#include "reaper.h"
#include "clock.h"
#include "err.h"
#include "gateway.h"
#include "guard.h"
#include "http.h"
#include "keys.h"
#include "log.h"
#include "order.h"
#include "payment.h"
#include "redis.h"
#include "scripts.h"
#include "state.h"
#include "transition.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

typedef struct fk_reaper fk_reaper;

/* One order being settled. It always has exactly one operation
 * outstanding (a Redis call, a guard check or a gateway query), whose
 * callback carries it on or ends it with settle_end(). */
typedef struct settle {
    struct settle *prev, *next;
    fk_reaper *rp;
    char order_id[FK_ORDER_ID_MAX + 1];
    fk_state state;   /* the state the next transition starts from */
    fk_state to;      /* the target of the transition in flight */
    char fence[24];
    char charge[16];
    char idem[FK_IDEM_KEY_MAX + 1];
    char sku[FK_SKU_MAX_CHARS * 4 + 1];
    char buyer[FK_BUYER_MAX_CHARS * 4 + 1];
    char pay_status[16];
    char payment_id[FK_PAYMENT_ID_MAX + 1];
    int has_resv;
    int probe;        /* the guard let our query through as a half-open probe */
    int paid;         /* the transition in flight records charge=paid */
    int recheck;      /* a second look at an expired order (recheck_take.lua), not a settlement */
    int last;         /* ... its last look: a definite answer ends the watch */
} settle;

struct fk_reaper {
    uv_loop_t loop;
    fk_config cfg;
    fk_keys keys;
    fk_redis_target target;
    fk_redis *cmd;
    fk_http *http;
    fk_gateway *gw;  /* NULL: --gateway none */
    fk_guard_policy guard;
    int notify;      /* a shop webhook is configured: queue it on delivery */

    settle *settles; /* in flight */
    size_t inflight;
    int scanning, sweeping, trimming, rechecking;
    int rescan;      /* the last scan was a full batch: scan again when room frees up */
    size_t scan_limit; /* the batch the scan in flight asked for */

    int stopping;    /* 1 draining, 2 closing */
    uint64_t stop_deadline;
    int exit_code;
    int closing;     /* handles and clients being closed */

    uv_timer_t tick;
    uv_signal_t sigterm, sigint;
    uint64_t last_heartbeat;
    long long live_workers, live_reapers;

    unsigned long long n_taken, n_busy, n_gone, n_stale, n_deferred, n_abandoned;
    unsigned long long n_final[FK_ST__COUNT];
    unsigned long long n_trimmed, n_consumers;
    unsigned long long n_rechecked, n_late_charges;
};

static void shutdown_all(fk_reaper *rp);
static void scan(fk_reaper *rp);

/* 1 while a scan for candidates is in flight (the drain waits for it). */
static int scanning(const fk_reaper *rp) { return rp->scanning || rp->rechecking; }

/* ---- settling: bookkeeping ------------------------------------------------ */

static int settling(const fk_reaper *rp, const char *id, size_t len) {
    for (const settle *s = rp->settles; s; s = s->next)
        if (strlen(s->order_id) == len && memcmp(s->order_id, id, len) == 0) return 1;
    return 0;
}

/* The settlement is over (done, skipped or abandoned: an abandoned order
 * keeps its past deadline and is taken up again once the lease runs out). */
static void settle_end(settle *s) {
    fk_reaper *rp = s->rp;
    if (s->prev) s->prev->next = s->next;
    else rp->settles = s->next;
    if (s->next) s->next->prev = s->prev;
    rp->inflight--;
    free(s);
    if (rp->stopping == 1 && rp->inflight == 0 && !scanning(rp)) shutdown_all(rp);
    else if (rp->rescan && !rp->stopping) scan(rp);
}

/* 1 when callbacks must not start anything new (closing down). */
static int closing(const settle *s) { return s->rp->stopping == 2; }

static void abandon(settle *s, const char *what, int rc) {
    if (!closing(s))
        fk_warn("reaper.abandon", s->order_id, "%s: %s; taken up again after the lease", what,
                fk_strerror(rc));
    s->rp->n_abandoned++;
    settle_end(s);
}

/* ---- settling: transitions ---------------------------------------------------- */

static void deliver(settle *s);

static void on_paid_recorded(fk_redis *r, redisReply *reply, void *arg) {
    settle *s = arg;
    (void)r;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
        reply->element[0]->type == REDIS_REPLY_STRING)
        fk_info("reaper.stale_paid", s->order_id, "payment recorded: %s",
                reply->element[0]->str);
    else
        fk_error("reaper.stale_paid", s->order_id, "recording the payment failed: %s",
                 reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no reply");
    settle_end(s);
}

/* The gateway said paid, but the order moved on without us (a shop's
 * decline, an operator, another reaper after our lease ran out): the money
 * must not be lost. Record it as the shop's payment entry would, as the
 * worker does (order.stale_paid): the order completes if it still can, or
 * goes to manual_review/late_payment. */
static void record_paid(settle *s, const char *now_state) {
    fk_reaper *rp = s->rp;
    char skey[FK_KEY_MAX];
    fk_warn("reaper.stale_paid", s->order_id,
            "order moved on (now %s) after the gateway said paid; recording the payment",
            now_state);
    fk_key_stock(&rp->keys, s->sku, skey, sizeof(skey));
    fk_pay_rec p = {s->order_id, "succeeded", s->payment_id, skey, "", "", rp->notify};
    int rc = fk_payment_record(rp->cmd, &rp->cfg, &rp->keys, &p, on_paid_recorded, s);
    if (rc) abandon(s, "payment not recorded", rc);
}

static void on_transition(fk_redis *r, redisReply *reply, void *arg) {
    settle *s = arg;
    fk_reaper *rp = s->rp;
    char err[256];
    (void)r;
    if (closing(s)) {
        settle_end(s);
        return;
    }
    int rc = fk_transition_result(reply, err, sizeof(err));
    if (rc == FK_TR_STALE) {
        /* someone else (a payment entry, another reaper after our lease
         * ran out, an operator) moved the order on: theirs stands, but a
         * payment the gateway confirmed to us is recorded */
        const char *now = reply->elements > 1 && reply->element[1]->type == REDIS_REPLY_STRING
                              ? reply->element[1]->str
                              : "?";
        rp->n_stale++;
        if (s->paid) {
            record_paid(s, now);
            return;
        }
        fk_info("reaper.stale", s->order_id, "order moved on (now %s); leaving it", now);
        settle_end(s);
        return;
    }
    if (rc == FK_TR_NORESV) {
        /* paid, but the codes are not held for this order any more: never
         * deliver from stock that may have gone to someone else */
        fk_error("reaper.noresv", s->order_id, "paid but no reservation; sending to review");
        fk_tr t = {FK_ST_PROCESSING, FK_ST_MANUAL_REVIEW, FK_R_PAYMENT_UNKNOWN,
                   "paid, but the reserved codes are gone", "V", 0, "paid", NULL,
                   "settled_by", rp->cfg.worker_id, NULL, NULL};
        s->to = t.to;
        fk_tr_order o = {s->order_id, s->sku, s->buyer, s->fence, NULL};
        rc = fk_transition(rp->cmd, &rp->cfg, &rp->keys, &o, &t, on_transition, s);
        if (rc) abandon(s, "review transition not sent", rc);
        return;
    }
    if (rc != FK_TR_OK) {
        if (rc == FK_EREDIS) fk_error("reaper.redis", s->order_id, "transition: %s", err);
        abandon(s, "transition failed", rc < 0 ? rc : FK_EPROTO);
        return;
    }
    fk_state from = s->state;
    s->state = s->to;
    if (from == FK_ST_PENDING_PAYMENT && s->to == FK_ST_PROCESSING) {
        deliver(s); /* the second hop: the table has no pending_payment -> completed */
        return;
    }
    fk_info("reaper.settled", s->order_id, "%s -> %s", fk_state_name(from),
            fk_state_name(s->to));
    rp->n_final[s->to]++;
    settle_end(s);
}

/* Apply one fenced transition from s->state; ops without 'K' drop our
 * lease. Final states record which reaper settled the order. */
static void go(settle *s, fk_state to, fk_reason reason, const char *detail, const char *ops,
               long long delay_ms, const char *charge, const char *payment_id) {
    fk_reaper *rp = s->rp;
    fk_tr t = {s->state, to, reason, detail, ops, delay_ms, charge, payment_id,
               fk_state_is_final(to) ? "settled_by" : NULL, rp->cfg.worker_id, NULL, NULL};
    fk_tr_order o = {s->order_id, s->sku, s->buyer, s->fence, NULL};
    s->to = to;
    s->paid = charge && strcmp(charge, "paid") == 0;
    int rc = fk_transition(rp->cmd, &rp->cfg, &rp->keys, &o, &t, on_transition, s);
    if (rc) abandon(s, "transition not sent", rc);
}

static void deliver(settle *s) {
    go(s, FK_ST_COMPLETED, FK_R_NONE, NULL, s->rp->notify ? "DN" : "D", 0, "paid",
       s->payment_id[0] ? s->payment_id : NULL);
}

static void expire(settle *s, const char *charge) {
    int unpaid = s->state == FK_ST_PENDING_PAYMENT;
    go(s, FK_ST_EXPIRED, unpaid ? FK_R_UNPAID_TIMEOUT : FK_R_PROCESSING_TIMEOUT, NULL, "L", 0,
       charge, NULL);
}

static void review(settle *s, const char *detail) {
    go(s, FK_ST_MANUAL_REVIEW, FK_R_PAYMENT_UNKNOWN, detail, "V", 0, NULL, NULL);
}

/* ---- the second look at orders expired on the gateway's 404 -------------------- */

/* Before expiring a processing order because the gateway had no charge
 * for it: put it in the recheck index with score 0 ("look now";
 * recheck_take.lua then sets the first real time from the expiry). Sent
 * ahead of the transition on the same connection, so an expiry never
 * lacks its look; a look at an order that did not expire after all finds
 * it in another state and drops it. */
static void recheck_add(settle *s) {
    fk_reaper *rp = s->rp;
    if (rp->cfg.recheck_ms <= 0) return;
    /* LT: also brings forward a look still scheduled from an earlier
     * expiry of the same order (an operator retried it in between) */
    int rc = fk_redis_command(rp->cmd, NULL, NULL, "ZADD %s LT 0 %s", rp->keys.recheck,
                              s->order_id);
    if (rc) fk_warn("reaper.recheck", s->order_id, "second look not scheduled: %s",
                    fk_strerror(rc));
}

/* The watch over an expired order is over: out of the index. */
static void recheck_done(settle *s, const char *why) {
    fk_reaper *rp = s->rp;
    fk_info("reaper.recheck", s->order_id, "%s; no more looks", why);
    fk_redis_command(rp->cmd, NULL, NULL, "ZREM %s %s", rp->keys.recheck, s->order_id);
    settle_end(s);
}

static void on_late_recorded(fk_redis *r, redisReply *reply, void *arg) {
    settle *s = arg;
    (void)r;
    if (!closing(s) && reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
        reply->element[0]->type == REDIS_REPLY_STRING) {
        /* 'review' (or 'completed'): recorded now; 'noted' / 'noop': the
         * order had moved on, someone recorded it first */
        const char *what = reply->element[0]->str;
        int now = strcmp(what, "review") == 0 || strcmp(what, "completed") == 0;
        if (now) s->rp->n_late_charges++;
        char why[64];
        snprintf(why, sizeof(why), "%s (%s)", now ? "late charge recorded" : "already recorded",
                 what);
        recheck_done(s, why);
        return;
    }
    /* still in the index: its next look asks again */
    if (!closing(s))
        fk_error("reaper.late_charge", s->order_id, "recording the charge failed: %s",
                 reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no reply");
    settle_end(s);
}

/* What the gateway says now about an order expired on its 404. A charge
 * found now is a charge no order accounts for: it is recorded as the
 * shop's callback would have (payment.lua: expired -> manual_review/
 * late_payment), so a human refunds or delivers. */
static void recheck_answer(settle *s, const fk_gw_result *res) {
    fk_reaper *rp = s->rp;
    fk_info("reaper.recheck", s->order_id, "expired on a 404%s; gateway now says %s (%s)",
            s->last ? ", last look" : "", fk_gw_outcome_name(res->outcome), res->detail);
    switch (res->outcome) {
    case FK_GW_PAID: {
        fk_error("reaper.late_charge", s->order_id,
                 "the gateway has a charge for this order, expired as not charged; "
                 "recording it for review (late_payment)");
        char skey[FK_KEY_MAX];
        fk_key_stock(&rp->keys, s->sku, skey, sizeof(skey));
        fk_pay_rec p = {s->order_id, "succeeded", s->payment_id, skey, "", "", rp->notify};
        int rc = fk_payment_record(rp->cmd, &rp->cfg, &rp->keys, &p, on_late_recorded, s);
        if (rc) abandon(s, "late charge not recorded", rc);
        return;
    }
    case FK_GW_DECLINED:
    case FK_GW_RISK:
        recheck_done(s, "a charge came late and was refused");
        return;
    case FK_GW_NOT_FOUND:
        if (s->last) recheck_done(s, "still no charge at the last look");
        else settle_end(s);
        return;
    case FK_GW_PENDING:
        if (s->last) {
            fk_warn("reaper.late_charge", s->order_id,
                    "a charge is still pending at the gateway at the last look; a payment "
                    "that completes reaches review through the shop's callback");
            recheck_done(s, "charge pending at the last look");
        } else {
            settle_end(s);
        }
        return;
    default: /* no answer: asked again at the next look */
        settle_end(s);
        return;
    }
}

/* ---- settling: the gateway ------------------------------------------------------ */

static void on_query(void *arg, const fk_gw_result *res) {
    settle *s = arg;
    fk_reaper *rp = s->rp;
    if (closing(s)) {
        settle_end(s);
        return;
    }
    int rc = fk_guard_report(rp->cmd, &rp->keys, &rp->guard, res->outcome == FK_GW_TRANSIENT,
                             s->probe);
    if (rc) fk_debug("guard.report", s->order_id, "not sent: %s", fk_strerror(rc));
    if (res->payment_id[0])
        snprintf(s->payment_id, sizeof(s->payment_id), "%s", res->payment_id);
    if (s->recheck) {
        recheck_answer(s, res);
        return;
    }
    fk_info("reaper.query", s->order_id, "%s past its deadline; gateway says %s (%s)",
            fk_state_name(s->state), fk_gw_outcome_name(res->outcome), res->detail);
    if (s->state == FK_ST_PENDING_PAYMENT) {
        if (res->outcome == FK_GW_PAID && s->has_resv) {
            go(s, FK_ST_PROCESSING, FK_R_NONE, NULL, "K", 0, "paid", NULL);
        } else if (res->outcome == FK_GW_PAID) {
            review(s, "paid after the reservation was released");
        } else if (res->outcome == FK_GW_TRANSIENT) {
            /* no answer (5xx, timeout, garbage): the buyer may have paid at
             * the last minute; never assume not, as for a processing order */
            review(s, res->detail[0] ? res->detail : "the gateway could not say");
        } else {
            /* the final query found no payment: a payment that still comes
             * later reaches a human (payment.lua, late_payment) */
            expire(s, NULL);
        }
        return;
    }
    switch (res->outcome) {
    case FK_GW_PAID:
        deliver(s);
        return;
    case FK_GW_NOT_FOUND:
        /* proof that no charge exists for the key; the lease we hold fences
         * every worker's charge request, so none can still land -- but for
         * a worker paused between its last deadline check and the send
         * (docs/STATES.md, "A charge that lands after the order expired"):
         * the second look asks again later */
        recheck_add(s);
        expire(s, "absent");
        return;
    case FK_GW_DECLINED:
        go(s, FK_ST_FAILED, FK_R_PAYMENT_DECLINED, res->detail, "L", 0, "declined", NULL);
        return;
    case FK_GW_RISK:
        go(s, FK_ST_FAILED, FK_R_RISK_REJECTED, res->detail, "L", 0, "declined", NULL);
        return;
    case FK_GW_PENDING:
        /* the buyer still has to act: wait for the payment TTL, polled by
         * the workers like any pending payment */
        go(s, FK_ST_PENDING_PAYMENT, FK_R_NONE, NULL, "P", rp->cfg.retry_base_ms, "pending",
           s->payment_id[0] ? s->payment_id : NULL);
        return;
    default:
        review(s, res->detail[0] ? res->detail : "the gateway could not say");
        return;
    }
}

static void query(settle *s) {
    const char *key = s->idem[0] ? s->idem : s->order_id;
    int rc = fk_gateway_query(s->rp->gw, key, on_query, s);
    if (rc == FK_EINVAL && s->recheck) /* an idem edited since: nobody can ask */
        recheck_done(s, "the order's idempotency key cannot be sent to the gateway");
    else if (rc == FK_EINVAL) /* a stored key the gateway client refuses: nobody can ask */
        review(s, "the order's idempotency key cannot be sent to the gateway");
    else if (rc)
        abandon(s, "gateway query not sent", rc);
}

static void on_guard(void *arg, int err, const fk_guard_verdict *v) {
    settle *s = arg;
    if (closing(s)) {
        settle_end(s);
        return;
    }
    if (err) {
        abandon(s, "gateway guard check", err);
        return;
    }
    if (!v->allow) {
        /* the breaker is open or the fleet's rate is used up: ask later
         * rather than sending the order to review for an outage */
        fk_info("reaper.deferred", s->order_id, "gateway guard refused (%s, breaker %s)",
                v->why, v->state);
        s->rp->n_deferred++;
        settle_end(s);
        return;
    }
    s->probe = v->probe;
    query(s);
}

/* Decide what we can from the record alone; ask the gateway otherwise. */
static void decide(settle *s) {
    fk_reaper *rp = s->rp;
    if (s->state == FK_ST_PROCESSING) {
        if (strcmp(s->pay_status, "succeeded") == 0) { /* the shop reported it paid */
            deliver(s);
            return;
        }
        if (strcmp(s->pay_status, "declined") == 0) {
            go(s, FK_ST_FAILED, FK_R_PAYMENT_DECLINED, "the shop reported the payment declined",
               "L", 0, "declined", NULL);
            return;
        }
        /* the gateway said paid (recorded under a fence; a reaper that
         * died between its two hops out of pending_payment leaves this):
         * deliver what is held, without asking again */
        if (strcmp(s->charge, "paid") == 0 && s->has_resv) {
            deliver(s);
            return;
        }
        /* charge=sent is written before any request leaves: none or absent
         * proves no charge exists */
        if (!s->charge[0] || strcmp(s->charge, "none") == 0 ||
            strcmp(s->charge, "absent") == 0) {
            expire(s, NULL);
            return;
        }
        if (!rp->gw) {
            review(s, "no gateway configured to ask about the charge");
            return;
        }
    } else if (!rp->gw) {
        expire(s, NULL);
        return;
    }
    int rc = fk_guard_check(rp->cmd, &rp->keys, &rp->guard, on_guard, s);
    if (rc) abandon(s, "gateway guard check not sent", rc);
}

static const char *str_at(const redisReply *r, size_t i) {
    if (i >= r->elements || r->element[i]->type != REDIS_REPLY_STRING) return "";
    return r->element[i]->str;
}

/* The answer of a take script (settle_take.lua, recheck_take.lua) for s:
 * its first element, or NULL when s ended here (closing down; or the call
 * failed, and s is abandoned: the order comes back after the lease). */
static const char *take_answer(settle *s, redisReply *reply, const char *script) {
    char err[256], what[64];
    if (closing(s)) {
        settle_end(s);
        return NULL;
    }
    int rc = fk_redis_reply_err(reply, err, sizeof(err));
    if (rc == FK_EREDIS) fk_error("reaper.redis", s->order_id, "%s: %s", script, err);
    if (!rc && (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1)) rc = FK_EPROTO;
    if (rc) {
        snprintf(what, sizeof(what), "%s failed", script);
        abandon(s, what, rc);
        return NULL;
    }
    return str_at(reply, 0);
}

static void on_take(fk_redis *r, redisReply *reply, void *arg) {
    settle *s = arg;
    fk_reaper *rp = s->rp;
    (void)r;
    const char *st = take_answer(s, reply, "settle_take");
    if (!st) return;
    if (strcmp(st, "take") != 0 || reply->elements < 10) {
        if (strcmp(st, "busy") == 0) rp->n_busy++;
        else rp->n_gone++;
        fk_debug("reaper.skip", s->order_id, "%s %s", st, str_at(reply, 1));
        settle_end(s);
        return;
    }
    s->state = fk_state_parse(str_at(reply, 1));
    snprintf(s->fence, sizeof(s->fence), "%s", str_at(reply, 2));
    snprintf(s->charge, sizeof(s->charge), "%s", str_at(reply, 3));
    snprintf(s->idem, sizeof(s->idem), "%s", str_at(reply, 4));
    snprintf(s->sku, sizeof(s->sku), "%s", str_at(reply, 5));
    snprintf(s->buyer, sizeof(s->buyer), "%s", str_at(reply, 6));
    snprintf(s->pay_status, sizeof(s->pay_status), "%s", str_at(reply, 7));
    snprintf(s->payment_id, sizeof(s->payment_id), "%s", str_at(reply, 8));
    s->has_resv = strcmp(str_at(reply, 9), "1") == 0;
    rp->n_taken++;
    if (s->state != FK_ST_PROCESSING && s->state != FK_ST_PENDING_PAYMENT) {
        abandon(s, "settle_take returned an unexpected state", FK_EPROTO);
        return;
    }
    decide(s);
}

/* A new settlement (or second look) for the order id, in flight; NULL
 * when out of memory (logged: the order is taken up at a later scan). */
static settle *settle_new(fk_reaper *rp, const char *id, size_t len) {
    settle *s = calloc(1, sizeof(*s));
    if (!s) {
        fk_error("reaper.oom", NULL, "no memory to settle an order; next sweep");
        return NULL;
    }
    s->rp = rp;
    memcpy(s->order_id, id, len);
    s->order_id[len] = '\0';
    s->next = rp->settles;
    if (rp->settles) rp->settles->prev = s;
    rp->settles = s;
    rp->inflight++;
    return s;
}

static void take(fk_reaper *rp, const char *id, size_t len) {
    char okey[FK_KEY_MAX];
    settle *s = settle_new(rp, id, len);
    if (!s) return;
    fk_key_order(&rp->keys, s->order_id, okey, sizeof(okey));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, okey);
    fk_args_str(&a, rp->keys.active);
    fk_args_str(&a, rp->keys.retry);
    fk_args_str(&a, s->order_id);
    fk_args_ll(&a, rp->cfg.lease_ms);
    int rc = fk_script_call(rp->cmd, FK_LUA_SETTLE_TAKE, 3, &a, on_take, s);
    if (rc) abandon(s, "settle_take not sent", rc);
}

/* ---- settling: finding the candidates ------------------------------------------- */

/* How many more settlements (or looks) to start now: --reap-batch in all,
 * and no more than the gateway client can answer within half of what the
 * lease leaves after the HTTP timeout. A query answered after the
 * reaper's lease ran out is stale: its work is wasted and the order taken
 * up again, and with --reap-batch 100 against --http-max 48 a slow
 * gateway made that the rule (worker.c admit bounds charges the same way;
 * settlements decided from the record alone count too, on the safe side). */
static size_t room(const fk_reaper *rp) {
    size_t cap = (size_t)rp->cfg.reap_batch;
    if (rp->http) {
        uint64_t wait = (uint64_t)(rp->cfg.lease_ms - rp->cfg.http_timeout_ms) / 2;
        size_t h = fk_http_capacity(rp->http, wait);
        if (h < cap) cap = h;
    }
    return cap > rp->inflight ? cap - rp->inflight : 0;
}

/* 1 if e, an element of an index's answer, is an order id no settlement
 * or look of ours holds now. Ids in an index come from faka's own writes; a
 * malformed one would be an index corruption: skipped, not acted on. */
static int index_id(const fk_reaper *rp, const redisReply *e, const char *index) {
    if (e->type != REDIS_REPLY_STRING || e->len > FK_ORDER_ID_MAX ||
        strlen(e->str) != e->len || !fk_order_id_valid(e->str)) {
        fk_warn("reaper.index", NULL, "skipping a malformed id in %s", index);
        return 0;
    }
    return !settling(rp, e->str, e->len);
}

static void on_scan(fk_redis *r, redisReply *reply, void *arg) {
    fk_reaper *rp = arg;
    char err[256];
    (void)r;
    rp->scanning = 0;
    int rc = fk_redis_reply_err(reply, err, sizeof(err));
    if (rc == FK_EREDIS) fk_error("reaper.scan", NULL, "settle_due: %s", err);
    if (rc || reply->type != REDIS_REPLY_ARRAY || rp->stopping) {
        if (rp->stopping == 1 && rp->inflight == 0 && !scanning(rp)) shutdown_all(rp);
        return;
    }
    size_t started = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (room(rp) == 0) break;
        if (!index_id(rp, e, rp->keys.active)) continue;
        take(rp, e->str, e->len);
        started++;
    }
    /* a full batch: more may be due; scan again as soon as there is room */
    rp->rescan = reply->elements >= rp->scan_limit && started > 0;
    if (started) fk_debug("reaper.scan", NULL, "%zu of %zu due orders taken up", started,
                          reply->elements);
}

static void scan(fk_reaper *rp) {
    if (rp->scanning || rp->stopping || !fk_redis_ready(rp->cmd)) return;
    size_t n = room(rp);
    if (n == 0) return;
    rp->rescan = 0;
    rp->scan_limit = n;
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, rp->keys.active);
    fk_args_ll(&a, (long long)n);
    if (fk_script_call(rp->cmd, FK_LUA_SETTLE_DUE, 1, &a, on_scan, rp) == 0) rp->scanning = 1;
}

/* ---- the second look: finding and taking the orders due ------------------------------ */

static void on_recheck_take(fk_redis *r, redisReply *reply, void *arg) {
    settle *s = arg;
    fk_reaper *rp = s->rp;
    (void)r;
    const char *what = take_answer(s, reply, "recheck_take");
    if (!what) return;
    if (strcmp(what, "ask") != 0 || reply->elements < 5) {
        if (strcmp(what, "gone") == 0)
            fk_info("reaper.recheck", s->order_id, "no more looks: %s", str_at(reply, 1));
        settle_end(s);
        return;
    }
    snprintf(s->idem, sizeof(s->idem), "%s", str_at(reply, 1));
    snprintf(s->sku, sizeof(s->sku), "%s", str_at(reply, 2));
    snprintf(s->payment_id, sizeof(s->payment_id), "%s", str_at(reply, 3));
    s->last = strcmp(str_at(reply, 4), "1") == 0;
    rp->n_rechecked++;
    int rc = fk_guard_check(rp->cmd, &rp->keys, &rp->guard, on_guard, s);
    if (rc) abandon(s, "gateway guard check not sent", rc);
}

static void recheck_take(fk_reaper *rp, const char *id, size_t len) {
    char okey[FK_KEY_MAX];
    settle *s = settle_new(rp, id, len);
    if (!s) return;
    s->recheck = 1;
    fk_key_order(&rp->keys, s->order_id, okey, sizeof(okey));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, okey);
    fk_args_str(&a, rp->keys.recheck);
    fk_args_str(&a, s->order_id);
    fk_args_ll(&a, rp->cfg.recheck_ms);
    fk_args_ll(&a, rp->cfg.recheck_ms);
    fk_args_ll(&a, rp->cfg.lease_ms); /* the claim recheck_due.lua took */
    int rc = fk_script_call(rp->cmd, FK_LUA_RECHECK_TAKE, 2, &a, on_recheck_take, s);
    if (rc) abandon(s, "recheck_take not sent", rc);
}

static void on_recheck_scan(fk_redis *r, redisReply *reply, void *arg) {
    fk_reaper *rp = arg;
    char err[256];
    (void)r;
    rp->rechecking = 0;
    int rc = fk_redis_reply_err(reply, err, sizeof(err));
    if (rc == FK_EREDIS) fk_error("reaper.scan", NULL, "recheck_due: %s", err);
    if (rc || reply->type != REDIS_REPLY_ARRAY || rp->stopping) {
        if (rp->stopping == 1 && rp->inflight == 0 && !scanning(rp)) shutdown_all(rp);
        return;
    }
    /* every id returned is claimed for a lease; one not taken now (held by
     * a settlement of ours) comes back after it */
    for (size_t i = 0; i < reply->elements && room(rp) > 0; i++)
        if (index_id(rp, reply->element[i], rp->keys.recheck))
            recheck_take(rp, reply->element[i]->str, reply->element[i]->len);
}

static void recheck_scan(fk_reaper *rp) {
    if (rp->rechecking || rp->stopping || !rp->gw || rp->cfg.recheck_ms <= 0 ||
        !fk_redis_ready(rp->cmd))
        return;
    size_t n = room(rp);
    if (n == 0) return;
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, rp->keys.recheck);
    fk_args_ll(&a, (long long)n);
    fk_args_ll(&a, rp->cfg.lease_ms);
    if (fk_script_call(rp->cmd, FK_LUA_RECHECK_DUE, 1, &a, on_recheck_scan, rp) == 0)
        rp->rechecking = 1;
}

/* ---- housekeeping: consumers and the stream ---------------------------------------- */

static void on_sweep(fk_redis *r, redisReply *reply, void *arg) {
    fk_reaper *rp = arg;
    char err[256];
    (void)r;
    rp->sweeping = 0;
    int rc = fk_redis_reply_err(reply, err, sizeof(err));
    if (rc == FK_EREDIS) fk_error("reaper.consumers", NULL, "sweep_consumers: %s", err);
    if (rc || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4 ||
        reply->element[0]->type != REDIS_REPLY_ARRAY)
        return;
    const redisReply *removed = reply->element[0];
    for (size_t i = 0; i < removed->elements; i++)
        if (removed->element[i]->type == REDIS_REPLY_STRING)
            fk_info("reaper.consumer", NULL,
                    "removed consumer %s: nothing pending, no heartbeat for %lld ms",
                    removed->element[i]->str, rp->cfg.worker_ttl_ms);
    rp->n_consumers += removed->elements;
    long long workers = reply->element[2]->integer, reapers = reply->element[3]->integer;
    if (workers != rp->live_workers || reapers != rp->live_reapers)
        fk_info("reaper.fleet", NULL, "live workers %lld, live reapers %lld", workers, reapers);
    rp->live_workers = workers;
    rp->live_reapers = reapers;
}

static void sweep(fk_reaper *rp) {
    if (rp->sweeping) return;
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, rp->keys.stream);
    fk_args_str(&a, rp->keys.workers);
    fk_args_str(&a, rp->keys.reapers);
    fk_args_str(&a, rp->keys.group);
    fk_args_ll(&a, rp->cfg.worker_ttl_ms);
    if (fk_script_call(rp->cmd, FK_LUA_SWEEP_CONSUMERS, 3, &a, on_sweep, rp) == 0)
        rp->sweeping = 1;
}

static void on_trim(fk_redis *r, redisReply *reply, void *arg) {
    fk_reaper *rp = arg;
    char err[256];
    (void)r;
    rp->trimming = 0;
    int rc = fk_redis_reply_err(reply, err, sizeof(err));
    if (rc == FK_EREDIS) fk_error("reaper.trim", NULL, "trim_stream: %s", err);
    if (rc || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[1]->type != REDIS_REPLY_INTEGER)
        return;
    long long n = reply->element[1]->integer;
    rp->n_trimmed += (unsigned long long)n;
    if (n > 0)
        fk_debug("reaper.trim", NULL, "trimmed %lld acknowledged entries (oldest kept %s)", n,
                 str_at(reply, 2));
}

static void trim(fk_reaper *rp) {
    if (rp->trimming || !rp->cfg.stream_trim) return;
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, rp->keys.stream);
    if (fk_script_call(rp->cmd, FK_LUA_TRIM_STREAM, 1, &a, on_trim, rp) == 0) rp->trimming = 1;
}

/* ---- the loop ---------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t) {
    fk_reaper *rp = t->data;
    uint64_t now = uv_now(&rp->loop);
    if (rp->stopping) {
        if (rp->stopping == 1 && now >= rp->stop_deadline) {
            fk_warn("reaper.drain", NULL,
                    "drain deadline passed with %zu settlements in flight; their leases run "
                    "out and any reaper takes them up again",
                    rp->inflight);
            shutdown_all(rp);
        }
        return;
    }
    if (!fk_redis_ready(rp->cmd)) return;
    if (now - rp->last_heartbeat >= 1000) {
        rp->last_heartbeat = now;
        fk_redis_command(rp->cmd, NULL, NULL, "ZADD %s %lld %s", rp->keys.reapers, fk_now_ms(),
                         rp->cfg.worker_id);
    }
    sweep(rp);
    trim(rp);
    scan(rp);
    recheck_scan(rp);
}

static void on_redis_event(fk_redis *r, int event, void *arg) {
    fk_reaper *rp = arg;
    if (event == FK_REDIS_UP) {
        fk_scripts_load(r);
        if (!rp->stopping) on_tick(&rp->tick);
    } else {
        /* outstanding calls get NULL replies and clear their own flags */
        fk_warn("reaper.redis", NULL, "connection lost; reconnecting");
    }
}

/* ---- start and stop ------------------------------------------------------------------ */

static void on_closed(uv_handle_t *h) {
    fk_reaper *rp = h->data;
    rp->closing--;
}

static void on_client_closed(void *arg) {
    fk_reaper *rp = arg;
    rp->closing--;
}

static void close_handle(fk_reaper *rp, uv_handle_t *h) {
    if (uv_is_closing(h)) return;
    h->data = rp;
    rp->closing++;
    uv_close(h, on_closed);
}

/* Close everything; the loop then runs dry and fk_reaper_run returns. The
 * settlements still in flight get their callbacks (FK_ECLOSED from the
 * HTTP client, NULL replies from Redis) and end there without starting
 * anything; what they held is taken up again after the lease. */
static void shutdown_all(fk_reaper *rp) {
    if (rp->stopping == 2) return;
    rp->stopping = 2;
    fk_info("reaper.stop",
            NULL,
            "stopping: taken %llu, completed %llu, expired %llu, failed %llu, review %llu, "
            "pending_payment %llu, busy %llu, gone %llu, stale %llu, deferred %llu, "
            "abandoned %llu; looked again at %llu, late charges %llu; trimmed %llu "
            "entries, removed %llu consumers",
            rp->n_taken, rp->n_final[FK_ST_COMPLETED], rp->n_final[FK_ST_EXPIRED],
            rp->n_final[FK_ST_FAILED], rp->n_final[FK_ST_MANUAL_REVIEW],
            rp->n_final[FK_ST_PENDING_PAYMENT], rp->n_busy, rp->n_gone, rp->n_stale,
            rp->n_deferred, rp->n_abandoned, rp->n_rechecked, rp->n_late_charges,
            rp->n_trimmed, rp->n_consumers);
    close_handle(rp, (uv_handle_t *)&rp->tick);
    close_handle(rp, (uv_handle_t *)&rp->sigterm);
    close_handle(rp, (uv_handle_t *)&rp->sigint);
    if (rp->gw) {
        fk_gateway_free(rp->gw);
        rp->gw = NULL;
    }
    if (rp->http) {
        rp->closing++;
        fk_http_close(rp->http, on_client_closed, rp);
        rp->http = NULL;
    }
    if (rp->cmd) {
        rp->closing++;
        fk_redis_close(rp->cmd, on_client_closed, rp);
        rp->cmd = NULL;
    }
}

static void on_signal(uv_signal_t *sig, int signum) {
    fk_reaper *rp = sig->data;
    if (rp->stopping) {
        fk_warn("reaper.signal", NULL, "second signal %d: exiting now", signum);
        /* whatever is held is taken up again once its lease runs out */
        _exit(FK_REAPER_EXIT_FORCED);
    }
    fk_info("reaper.signal", NULL, "signal %d: finishing %zu settlements in flight", signum,
            rp->inflight);
    rp->stopping = 1;
    rp->stop_deadline = uv_now(&rp->loop) + (uint64_t)rp->cfg.lease_ms;
    if (rp->inflight == 0 && !scanning(rp)) shutdown_all(rp);
}

/* Set up the clients; 0 or an exit status. */
static int setup(fk_reaper *rp) {
    const fk_config *cfg = &rp->cfg;
    if (strcmp(cfg->gateway_url, "none") != 0) {
        fk_http_options ho = {cfg->http_connect_timeout_ms, cfg->http_timeout_ms,
                              (int)cfg->http_max, 1};
        int rc = fk_http_init(&rp->http, &rp->loop, &ho);
        if (!rc) rc = fk_gateway_init(&rp->gw, rp->http, cfg->gateway_url);
        if (rc) {
            fk_error("reaper.http", NULL, "cannot set up the gateway client: %s",
                     fk_strerror(rc));
            return rc == FK_ENOMEM ? FK_REAPER_EXIT_NOMEM : FK_REAPER_EXIT_HTTP;
        }
    }
    char cname[160];
    snprintf(cname, sizeof(cname), "faka-reaper:%s", cfg->worker_id);
    fk_redis_options co = {"cmd", cname, cfg->redis_timeout_ms, cfg->redis_timeout_ms,
                           1000, 100, 2000};
    if (fk_redis_open(&rp->cmd, &rp->loop, &rp->target, &co, on_redis_event, rp)) {
        fk_error("reaper.redis", NULL, "out of memory opening the connection");
        return FK_REAPER_EXIT_NOMEM;
    }
    return 0;
}

int fk_reaper_run(const fk_config *cfg) {
    fk_reaper *rp = calloc(1, sizeof(*rp));
    char err[256];
    if (!rp) return FK_REAPER_EXIT_NOMEM;
    rp->cfg = *cfg;
    fk_keys_init(&rp->keys, cfg->prefix);
    fk_guard_policy_init(&rp->guard, cfg);
    rp->notify = cfg->webhook_url[0] != '\0';
    if (fk_redis_url_parse(cfg->redis_url, &rp->target, err, sizeof(err))) {
        fk_error("reaper.config", NULL, "%s", err);
        free(rp);
        return FK_REAPER_EXIT_CONFIG;
    }
    uv_loop_init(&rp->loop);
    uv_timer_init(&rp->loop, &rp->tick);
    uv_signal_init(&rp->loop, &rp->sigterm);
    uv_signal_init(&rp->loop, &rp->sigint);
    rp->tick.data = rp->sigterm.data = rp->sigint.data = rp;

    int rc = setup(rp);
    if (rc) {
        rp->exit_code = rc;
        shutdown_all(rp);
    } else {
        uv_timer_start(&rp->tick, on_tick, (uint64_t)cfg->reap_ms, (uint64_t)cfg->reap_ms);
        uv_signal_start(&rp->sigterm, on_signal, SIGTERM);
        uv_signal_start(&rp->sigint, on_signal, SIGINT);
        fk_info("reaper.start", NULL,
                "reaper %s on %s:%d prefix=%s gateway=%s every %lld ms, batch %lld, lease %lld "
                "ms, order ttl %lld s, payment ttl %lld s, worker ttl %lld ms, trim %s, "
                "recheck %lld ms",
                cfg->worker_id, rp->target.host, rp->target.port, cfg->prefix, cfg->gateway_url,
                cfg->reap_ms, cfg->reap_batch, cfg->lease_ms, cfg->order_ttl_s,
                cfg->payment_ttl_s, cfg->worker_ttl_ms, cfg->stream_trim ? "on" : "off",
                cfg->recheck_ms);
    }
    uv_run(&rp->loop, UV_RUN_DEFAULT);
    /* every callback has run by now; nothing is left, but be sure */
    while (rp->settles) {
        settle *s = rp->settles;
        rp->settles = s->next;
        free(s);
    }
    int code = rp->exit_code;
    int lc = uv_loop_close(&rp->loop);
    if (lc != 0) {
        fk_error("reaper.stop", NULL, "loop did not close cleanly: %s", uv_strerror(lc));
        if (code == 0) code = FK_REAPER_EXIT_NOMEM;
    }
    free(rp);
    return code;
}
