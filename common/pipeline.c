/* pipeline.c -- one stream entry through accept, reserve, charge, deliver
 * (see pipeline.h and DESIGN.md, "The pipeline").
 *
 * Recovery points, all written by Lua calls:
 *   accept   the record exists with its reservation (`resv`), charge=none
 *   charge   charge=sent is written BEFORE the request goes out, so an
 *            abandoned job leaves "outcome unknown" behind, and the next
 *            attempt asks the gateway (GET) before it charges again
 *   outcome  completed / failed / pending_payment / retry scheduled, each
 *            with the entry's ack in the same call
 * Nothing that has an outside effect is repeated on resume: codes move only
 * inside Lua, and the gateway is called with the order's idempotency key. */
#include "pipeline.h"
#include "backoff.h"
#include "clock.h"
#include "err.h"
#include "gateway.h"
#include "guard.h"
#include "guard_local.h"
#include "log.h"
#include "payment.h"
#include "scripts.h"
#include "transition.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ------------------------------------------------------ */

static void finish(fk_job *j, int end) { j->ctx->job_done(j, end, j->ctx->arg); }

static const char *oid(const fk_job *j) { return j->o.order_id[0] ? j->o.order_id : NULL; }

/* A reply that is not an array starting with a status string means a bug
 * or a Redis surprise: log it and leave the entry pending, so it is
 * retried and, past max-deliveries, dead-lettered by the reaper. */
static int reply_status(fk_job *j, redisReply *reply, const char *what, const char **status) {
    char err[256];
    int rc = fk_redis_reply_err(reply, err, sizeof(err));
    if (rc == FK_EDOWN) {
        fk_debug("job.abandon", oid(j), "%s: connection lost; entry %s stays pending", what,
                 j->entry_id);
        finish(j, FK_JOB_ABANDONED);
        return -1;
    }
    if (rc) {
        fk_error("job.redis", oid(j), "%s: %s (entry %s stays pending)", what, err, j->entry_id);
        finish(j, FK_JOB_ABANDONED);
        return -1;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_STRING) {
        fk_error("job.redis", oid(j), "%s: unexpected reply shape (entry %s stays pending)", what,
                 j->entry_id);
        finish(j, FK_JOB_ABANDONED);
        return -1;
    }
    *status = reply->element[0]->str;
    return 0;
}

static const char *elem(const redisReply *r, size_t i) {
    if (i >= r->elements || r->element[i]->type != REDIS_REPLY_STRING) return "";
    return r->element[i]->str;
}

/* A step that could not even be sent. Redis being down or the worker
 * closing is expected and logged at debug (the connection's own events say
 * so once); anything else (out of memory, an HTTP client that refuses the
 * request) would otherwise stall orders silently until their lease ends. */
static void send_failed(fk_job *j, int rc, const char *what) {
    if (rc == FK_EDOWN || rc == FK_ECLOSED)
        fk_debug("job.abandon", oid(j), "%s not sent: %s; entry %s stays pending", what,
                 fk_strerror(rc), j->entry_id);
    else
        fk_warn("job.abandon", oid(j), "%s not sent: %s; entry %s stays pending", what,
                fk_strerror(rc), j->entry_id);
    finish(j, FK_JOB_ABANDONED);
}

/* ---- dead letters ------------------------------------------------------- */

static void on_dead(fk_redis *r, redisReply *reply, void *arg) {
    fk_job *j = arg;
    const char *st;
    (void)r;
    if (reply_status(j, reply, "dead", &st)) return;
    finish(j, FK_JOB_SETTLED);
}

/* Send the entry to the dead stream with err; if order_id is not NULL and
 * no record exists, the order is recorded failed/invalid_order. */
static void dead_letter(fk_job *j, const char *err, const char *order_id) {
    const fk_ctx *c = j->ctx;
    char okey[FK_KEY_MAX], minute[160], msg[512], raw[FK_DEAD_RAW_MAX + 64];
    size_t rawlen = j->val_len;
    if (rawlen > FK_DEAD_RAW_MAX) {
        memcpy(raw, j->val, FK_DEAD_RAW_MAX);
        rawlen = FK_DEAD_RAW_MAX +
                 (size_t)snprintf(raw + FK_DEAD_RAW_MAX, sizeof(raw) - FK_DEAD_RAW_MAX,
                                  "...[truncated, %zu bytes]", j->val_len);
    } else if (rawlen) {
        memcpy(raw, j->val, rawlen);
    }
    fk_key_stats_minute(c->keys, fk_now_ms(), minute, sizeof(minute));
    fk_reason_message(FK_R_INVALID_ORDER, err, msg, sizeof(msg));
    fk_warn("entry.dead", order_id, "entry %s (%s) dead-lettered: %s", j->entry_id, j->kind,
            err);
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, c->keys->stream);
    fk_args_str(&a, c->keys->dead);
    fk_args_str(&a, c->keys->stats);
    fk_args_str(&a, minute);
    int nkeys = 4;
    if (order_id && order_id[0]) {
        fk_key_order(c->keys, order_id, okey, sizeof(okey));
        fk_args_str(&a, okey);
        nkeys = 5;
    }
    fk_args_str(&a, c->keys->group);
    fk_args_str(&a, j->entry_id);
    fk_args_mem(&a, raw, rawlen);
    fk_args_str(&a, err);
    fk_args_str(&a, j->kind);
    fk_args_str(&a, order_id ? order_id : "");
    fk_args_str(&a, msg);
    fk_args_ll(&a, c->cfg->retention_s);
    fk_args_ll(&a, c->cfg->dead_max);
    fk_args_str(&a, "");
    int rc = fk_script_call(c->redis, FK_LUA_DEAD, nkeys, &a, on_dead, j);
    if (rc) send_failed(j, rc, "dead");
}

/* ---- transitions -------------------------------------------------------- */

typedef struct tr {
    fk_state from, to;
    fk_reason reason;
    const char *detail;     /* fills the reason's %s */
    const char *ops;        /* see transition.lua */
    long long delay_ms;
    const char *charge;     /* NULL = keep */
    const char *payment_id; /* NULL = keep */
    int ack;
} tr;

static void after_transition(fk_job *j, redisReply *reply, fk_state to, int post);
static void payment(fk_job *j, const fk_payment *p, const char *skey, const char *ckey,
                    const char *entry);

static void on_transition(fk_redis *r, redisReply *reply, void *arg);

/* The pending transition's target, kept for on_transition; post: this
 * transition records charge=sent, so the POST may follow it. */
typedef struct tr_call {
    fk_job *j;
    fk_state to;
    int post;
} tr_call;

static void transition(fk_job *j, const tr *t) {
    const fk_ctx *c = j->ctx;
    fk_tr x = {t->from, t->to, t->reason, t->detail, t->ops, t->delay_ms, t->charge,
               t->payment_id, NULL, NULL, NULL, NULL};
    fk_tr_order o = {j->o.order_id, j->o.sku, j->o.buyer, j->fence,
                     t->ack ? j->entry_id : NULL};
    tr_call *tc = malloc(sizeof(*tc));
    if (!tc) {
        send_failed(j, FK_ENOMEM, "transition");
        return;
    }
    tc->j = j;
    tc->to = t->to;
    tc->post = t->charge && strcmp(t->charge, "sent") == 0;
    if (tc->post) j->lease_at = uv_now(c->loop);
    if (t->charge) snprintf(j->charge, sizeof(j->charge), "%s", t->charge);
    int rc = fk_transition(c->redis, c->cfg, c->keys, &o, &x, on_transition, tc);
    if (rc) {
        free(tc);
        send_failed(j, rc, "transition");
    }
}

static void on_transition(fk_redis *r, redisReply *reply, void *arg) {
    tr_call *tc = arg;
    fk_job *j = tc->j;
    fk_state to = tc->to;
    int post = tc->post;
    (void)r;
    free(tc);
    after_transition(j, reply, to, post);
}

/* ---- phases ------------------------------------------------------------- */

static void run_work(fk_job *j);
static void charge(fk_job *j);
static void query(fk_job *j);
static void guard_report(fk_job *j, const fk_gw_result *res);
static void charge_late(fk_job *j, uint64_t used, int at_send);

static void deliver(fk_job *j, const char *payment_id) {
    if (payment_id && payment_id[0] && payment_id != j->payment_id)
        snprintf(j->payment_id, sizeof(j->payment_id), "%s", payment_id);
    tr t = {FK_ST_PROCESSING, FK_ST_COMPLETED, FK_R_NONE, NULL, j->ctx->notify ? "DN" : "D",
            0, "paid", payment_id && payment_id[0] ? payment_id : NULL, 1};
    transition(j, &t);
}

static void fail(fk_job *j, fk_reason reason, const char *detail, const char *charge_state) {
    tr t = {FK_ST_PROCESSING, FK_ST_FAILED, reason, detail, "L", 0, charge_state, NULL, 1};
    transition(j, &t);
}

static void review(fk_job *j, fk_state from, fk_reason reason, const char *detail) {
    tr t = {from, FK_ST_MANUAL_REVIEW, reason, detail, "V", 0, NULL, NULL, 1};
    transition(j, &t);
}

/* A transient failure: retry with full-jitter backoff, or give up. The
 * charge may exist when charge is sent/unknown: then giving up means
 * manual review, never "failed" (the story's 20 surprise recharges). */
static void retry_or_give_up(fk_job *j, int maybe_charged, long long retry_after_ms,
                             const char *detail) {
    const fk_config *cfg = j->ctx->cfg;
    /* A charge we just sent that certainly did not land is "absent"; one
     * that may have landed is "unknown" (the next attempt asks first).
     * Earlier doubt is always resolved by a query before a new POST, so
     * this attempt's answer is the whole truth -- provided it answers
     * every send of it: a 429 to curl's silent re-send says nothing of the
     * first send, and is classified maybe charged (gateway.c). */
    const char *charge_state = maybe_charged ? "unknown" : j->charge;
    if (!maybe_charged && strcmp(j->charge, "sent") == 0) charge_state = "absent";
    if (j->attempts + 1 >= cfg->retry_max) {
        if (maybe_charged) {
            review(j, FK_ST_PROCESSING, FK_R_PAYMENT_UNKNOWN, detail);
        } else {
            fk_info("order.exhausted", oid(j), "giving up after %d attempts: %s",
                    j->attempts + 1, detail);
            fail(j, FK_R_RETRIES_EXHAUSTED, detail, charge_state);
        }
        return;
    }
    long long delay = fk_backoff_delay(j->attempts, cfg->retry_base_ms, cfg->retry_cap_ms);
    if (retry_after_ms > delay) delay = retry_after_ms;
    fk_info("order.retry", oid(j), "attempt %d failed (%s); retry in %lld ms", j->attempts + 1,
            detail, delay);
    tr t = {FK_ST_PROCESSING, FK_ST_PROCESSING, FK_R_NONE, NULL, "R", delay, charge_state,
            NULL, 1};
    transition(j, &t);
}

/* The buyer still has to act: pending_payment, first status poll later. */
static void wait_for_payment(fk_job *j, const char *payment_id) {
    tr t = {FK_ST_PROCESSING, FK_ST_PENDING_PAYMENT, FK_R_NONE, NULL, "P",
            fk_backoff_delay(0, j->ctx->cfg->retry_base_ms, j->ctx->cfg->retry_cap_ms),
            "pending", payment_id[0] ? payment_id : NULL, 1};
    transition(j, &t);
}

static void on_charge(void *arg, const fk_gw_result *res) {
    fk_job *j = arg;
    guard_report(j, res);
    if (res->outcome == FK_GW_TRANSIENT && !res->maybe_charged &&
        strcmp(res->reason, "late") == 0) {
        /* not sent: its deadline passed (post_charge) */
        charge_late(j, uv_hrtime() / 1000000u - j->lease_at, 1);
        return;
    }
    switch (res->outcome) {
    case FK_GW_PAID:
        deliver(j, res->payment_id);
        return;
    case FK_GW_PENDING:
        wait_for_payment(j, res->payment_id);
        return;
    case FK_GW_DECLINED:
        fail(j, FK_R_PAYMENT_DECLINED, res->detail, "declined");
        return;
    case FK_GW_RISK:
        fail(j, FK_R_RISK_REJECTED, res->detail, "declined");
        return;
    case FK_GW_INVALID:
        fail(j, FK_R_PAYMENT_INVALID, res->detail, "declined");
        return;
    case FK_GW_CONFLICT: {
        /* Our key holds another charge at the gateway: money may have moved
         * for something else. A human must look, and the record says why
         * (charge=conflict): a status query under this key would answer for
         * that other charge, so fakactl will not send the order back to the
         * workers (review resolve --as processing) on its word. */
        tr t = {FK_ST_PROCESSING, FK_ST_MANUAL_REVIEW, FK_R_PAYMENT_UNKNOWN, res->detail, "V", 0,
                "conflict", NULL, 1};
        transition(j, &t);
        return;
    }
    case FK_GW_NOT_FOUND:
    case FK_GW_TRANSIENT:
    default:
        retry_or_give_up(j, res->outcome == FK_GW_TRANSIENT ? res->maybe_charged : 1,
                         res->retry_after_ms, res->detail);
        return;
    }
}

static void on_query(void *arg, const fk_gw_result *res) {
    fk_job *j = arg;
    guard_report(j, res);
    j->queried = 1;
    if (j->state == FK_ST_PENDING_PAYMENT) {
        const fk_config *cfg = j->ctx->cfg;
        if (res->outcome == FK_GW_PAID || res->outcome == FK_GW_DECLINED ||
            res->outcome == FK_GW_RISK) {
            /* pending_payment -> processing first; the outcome follows in
             * after_transition (the table has no direct hop). A risk
             * rejection, outside the GET contract, is a refusal too. */
            snprintf(j->pay_status, sizeof(j->pay_status), "%s",
                     res->outcome == FK_GW_PAID ? "succeeded" : "declined");
            if (res->payment_id[0])
                snprintf(j->payment_id, sizeof(j->payment_id), "%s", res->payment_id);
            tr t = {FK_ST_PENDING_PAYMENT, FK_ST_PROCESSING, FK_R_NONE, NULL, "K", 0,
                    res->outcome == FK_GW_PAID ? "paid" : "declined", NULL, 0};
            transition(j, &t);
            return;
        }
        if (j->polls + 1 >= cfg->poll_max) {
            /* Stop polling; the payment TTL (reaper) settles it. */
            tr t = {FK_ST_PENDING_PAYMENT, FK_ST_PENDING_PAYMENT, FK_R_NONE, NULL, "", 0, NULL,
                    NULL, 1};
            transition(j, &t);
            return;
        }
        tr t = {FK_ST_PENDING_PAYMENT, FK_ST_PENDING_PAYMENT, FK_R_NONE, NULL, "P",
                fk_backoff_delay(j->polls + 1, cfg->retry_base_ms, cfg->retry_cap_ms), NULL,
                NULL, 1};
        transition(j, &t);
        return;
    }
    switch (res->outcome) {
    case FK_GW_PAID:
        deliver(j, res->payment_id);
        return;
    case FK_GW_PENDING:
        wait_for_payment(j, res->payment_id);
        return;
    case FK_GW_DECLINED:
        fail(j, FK_R_PAYMENT_DECLINED, res->detail, "declined");
        return;
    case FK_GW_RISK:
        /* not in the GET contract, but as plain a refusal as the POST's 403 */
        fail(j, FK_R_RISK_REJECTED, res->detail, "declined");
        return;
    case FK_GW_NOT_FOUND: {
        /* Proof that no charge exists for our key: charging is safe. */
        snprintf(j->charge, sizeof(j->charge), "absent");
        charge(j);
        return;
    }
    default:
        retry_or_give_up(j, 1, res->retry_after_ms, res->detail);
        return;
    }
}

static void query_now(fk_job *j) {
    int rc = fk_gateway_query(j->ctx->gateway, j->o.idem_key, on_query, j);
    if (rc) send_failed(j, rc, "gateway query");
}

/* Record charge=sent (the recovery point), then POST in after_transition. */
static void charge_now(fk_job *j) {
    tr t = {FK_ST_PROCESSING, FK_ST_PROCESSING, FK_R_NONE, NULL, "K", 0, "sent", NULL, 0};
    transition(j, &t);
}

/* ---- the gateway guard (guard.h) ----------------------------------------
 * Every gateway call (charge or query) first asks the fleet-wide breaker
 * and token bucket. Refused: the order waits in the retry zset for the
 * time the guard names (plus jitter, so a herd does not come back at one
 * instant), with its attempts untouched (op W), and the entry is acked. */

/* Bounds on a refusal's wait (see on_guard): the floor keeps a refused
 * order from cycling through the retry set without a pause; the bucket's
 * longest wait is a minute of queued slots plus one token's time at the
 * lowest rate (1/s), the breaker's a cool-down. */
#define GUARD_WAIT_MIN_MS 10
#define GUARD_RATE_WAIT_MAX_MS 61000

typedef struct guard_call {
    fk_job *j;
    void (*go)(fk_job *j);
} guard_call;

static void on_guard(void *arg, int err, const fk_guard_verdict *v) {
    guard_call *g = arg;
    fk_job *j = g->j;
    void (*go)(fk_job *) = g->go;
    free(g);
    if (err) {
        send_failed(j, err, "gateway guard check");
        return;
    }
    if (j->ctx->guard) fk_guard_local_seen(j->ctx->guard, v->state);
    if (v->allow) {
        j->probe = v->probe;
        go(j);
        return;
    }
    /* The wait is computed from hashes anyone can edit. guard_check.lua
     * reads them strictly, but the order's schedule does not rest on that:
     * at least GUARD_WAIT_MIN_MS, so that no answer (a negative one was
     * -2^63 once) makes a refusal spin through the retry set, and at most
     * what guard_check.lua asks for of a hash it wrote itself (a cool-down,
     * or a minute of queued slots and one token), so that no answer parks
     * the order for good: past that it just asks again. */
    const fk_config *cfg = j->ctx->cfg;
    long long wait = v->wait_ms,
              max_wait = cfg->breaker_cooldown_ms > GUARD_RATE_WAIT_MAX_MS
                             ? cfg->breaker_cooldown_ms
                             : GUARD_RATE_WAIT_MAX_MS;
    if (wait < GUARD_WAIT_MIN_MS) wait = GUARD_WAIT_MIN_MS;
    if (wait > max_wait) wait = max_wait;
    /* the bucket already spaced refused calls one token apart: jitter
     * within a token's time; a breaker refusal is spread wider */
    long long rps = cfg->rate_limit_rps;
    long long delay = wait + (strcmp(v->why, "rate") == 0 && rps > 0
                                  ? fk_rand_upto(1000 / rps)
                                  : fk_rand_upto(wait / 2 + 200));
    fk_debug("order.deferred", oid(j),
            "gateway guard refused (%s, breaker %s): again in %lld ms, no attempt used",
            v->why, v->state, delay);
    tr t = {j->state, j->state, FK_R_NONE, NULL, "W", delay, NULL, NULL, 1};
    transition(j, &t);
}

static void guarded(fk_job *j, void (*go)(fk_job *j)) {
    if (j->ctx->guard && fk_guard_local_admit(j->ctx->guard)) {
        j->probe = 0;
        go(j);
        return;
    }
    fk_guard_policy p;
    fk_guard_policy_init(&p, j->ctx->cfg);
    guard_call *g = malloc(sizeof(*g));
    if (!g) {
        send_failed(j, FK_ENOMEM, "gateway guard check");
        return;
    }
    g->j = j;
    g->go = go;
    int rc = fk_guard_check(j->ctx->redis, j->ctx->keys, &p, on_guard, g);
    if (rc) {
        free(g);
        send_failed(j, rc, "gateway guard check");
    }
}

static void query(fk_job *j) { guarded(j, query_now); }

static void charge(fk_job *j) { guarded(j, charge_now); }

/* Tell the breaker how the call went: only a transient outcome (429, 5xx,
 * timeout, reset, garbage) is a failure; a call we cut short ourselves
 * (worker closing, out of memory, a charge past its deadline) says nothing
 * about the gateway. Fire and forget, batched by the local view. */
static void guard_report(fk_job *j, const fk_gw_result *res) {
    int failed = res->outcome == FK_GW_TRANSIENT;
    int probe = j->probe;
    j->probe = 0;
    if (failed && (strcmp(res->reason, "closed") == 0 || strcmp(res->reason, "nomem") == 0 ||
                   strcmp(res->reason, "late") == 0))
        return;
    if (j->ctx->guard) {
        fk_guard_local_report(j->ctx->guard, failed, probe);
        return;
    }
    fk_guard_policy p;
    fk_guard_policy_init(&p, j->ctx->cfg);
    int rc = fk_guard_report(j->ctx->redis, j->ctx->keys, &p, failed, probe);
    if (rc) fk_debug("guard.report", oid(j), "not sent: %s", fk_strerror(rc));
}

/* Too little of the lease is left to charge (used: ms of it gone; at_send:
 * found by the HTTP client right before the request would have gone out,
 * see post_charge): charge nothing now and leave the entry pending. The
 * record says charge=sent, so whoever takes the order next asks the
 * gateway first. */
static void charge_late(fk_job *j, uint64_t used, int at_send) {
    fk_warn("charge.late", oid(j),
            "%llu ms of the %lld ms lease used before the charge could go out%s; "
            "leaving the order to whoever takes it next (it asks the gateway first)",
            (unsigned long long)used, j->ctx->cfg->lease_ms,
            at_send ? " (found right before sending: not sent)" : "");
    finish(j, FK_JOB_LEFT);
}

/* POST the charge, if it can be over before our lease can end. The lease
 * was taken (or kept) by the command sent at j->lease_at, no later than
 * Redis started it; a request takes at most --http-timeout-ms. A reply read
 * late (the process stalled, or the loop was slow) is no licence to
 * charge: past that point another worker or the reaper may hold the order,
 * ask the gateway, find no charge and settle it (expired, codes released)
 * while ours lands. Then we charge nothing now; the record says
 * charge=sent, so whoever takes the order next asks the gateway first.
 * The check is made twice: here, with the loop's clock (cached at the
 * start of the loop iteration), and again by the HTTP client right before
 * the request's first byte goes out, with the real clock (the charge's
 * deadline, the same margin): curl starts the transfer on a later loop
 * iteration, and a stall in between (SIGSTOP, a VM pause) must not put the
 * POST on the wire after the lease ended. Both refusals end the same way
 * (charge_late; on_charge for the second). */
static void post_charge(fk_job *j) {
    const fk_config *cfg = j->ctx->cfg;
    uint64_t used = uv_now(j->ctx->loop) - j->lease_at;
    if (used + (uint64_t)cfg->http_timeout_ms >= (uint64_t)cfg->lease_ms) {
        charge_late(j, used, 0);
        return;
    }
    /* The last moment the POST may go out with its timeout still inside
     * the lease: the margin above. lease_at is uv_now(), milliseconds on
     * the clock uv_hrtime() reads (CLOCK_MONOTONIC; libuv may read its
     * coarse variant, which lags and only makes the deadline earlier). */
    uint64_t deadline_ns =
        (j->lease_at + (uint64_t)cfg->lease_ms - (uint64_t)cfg->http_timeout_ms) * 1000000u;
    fk_charge_req req = {j->o.idem_key, j->o.order_id, j->o.currency, j->o.buyer, j->o.amount,
                         deadline_ns};
    int rc = fk_gateway_charge(j->ctx->gateway, &req, on_charge, j);
    if (rc) send_failed(j, rc, "gateway charge");
}

static void after_transition(fk_job *j, redisReply *reply, fk_state to, int post) {
    const char *st;
    if (reply_status(j, reply, "transition", &st)) return;
    if (strcmp(st, "stale") == 0) {
        if (j->ctx->gateway && strcmp(j->charge, "paid") == 0) {
            /* The gateway took the money, but the order moved on without
             * us meanwhile (our lease ran out, or a shop's decline came
             * first: the delivery, or a paid poll's hop out of
             * pending_payment, is stale). The payment must not be
             * lost: record it as the shop's payment entry would, so the
             * order completes if it is still processing, or goes to
             * manual_review/late_payment if it was settled meanwhile. */
            fk_warn("order.stale_paid", oid(j),
                    "lease lost after the gateway said paid (order now %s); recording the "
                    "payment",
                    elem(reply, 1));
            fk_payment p;
            memset(&p, 0, sizeof(p));
            snprintf(p.order_id, sizeof(p.order_id), "%s", j->o.order_id);
            p.status = FK_PAY_SUCCEEDED;
            snprintf(p.payment_id, sizeof(p.payment_id), "%s", j->payment_id);
            char skey[FK_KEY_MAX];
            fk_key_stock(j->ctx->keys, j->o.sku, skey, sizeof(skey));
            payment(j, &p, skey, "", "");
            return;
        }
        fk_info("order.stale", oid(j), "lease lost (order now %s, fence %s, ours %s); leaving it",
                elem(reply, 1), elem(reply, 2), j->fence);
        finish(j, FK_JOB_LEFT);
        return;
    }
    if (strcmp(st, "noresv") == 0) {
        fk_error("order.noresv", oid(j), "no reservation to deliver; sending to review");
        review(j, FK_ST_PROCESSING, FK_R_PAYMENT_UNKNOWN, "reservation missing");
        return;
    }
    fk_state from = j->state;
    j->state = to;
    /* Only the transition that recorded charge=sent itself lets the POST
     * go. Another one of an order whose record says sent (the guard
     * deferring the status query a resumed order must make first) is no
     * licence to charge: the earlier request may have landed. */
    if (post && to == FK_ST_PROCESSING && from == FK_ST_PROCESSING) {
        post_charge(j); /* charge=sent is recorded: now the request may go */
        return;
    }
    if (to == FK_ST_PROCESSING && from == FK_ST_PENDING_PAYMENT) {
        if (strcmp(j->pay_status, "succeeded") == 0)
            deliver(j, j->payment_id);
        else
            fail(j, FK_R_PAYMENT_DECLINED, "the gateway declined the payment", "declined");
        return;
    }
    /* completed is the normal end: debug, as in on_accept (one line per
     * order would be a write(2) per order); every other end is worth an
     * operator's eye */
    if (to == FK_ST_COMPLETED)
        fk_debug("order.final", oid(j), "%s", fk_state_name(to));
    else if (fk_state_is_final(to))
        fk_info("order.final", oid(j), "%s", fk_state_name(to));
    finish(j, FK_JOB_SETTLED);
}

/* Carry on an order we hold the lease of, from its recovery point. */
static void run_work(fk_job *j) {
    if (j->state == FK_ST_PROCESSING) {
        if (j->sent_now) {
            /* accept/resume recorded charge=sent with the lease, on the
             * guard's admission: the recovery point is written, POST now */
            j->sent_now = 0;
            post_charge(j);
        } else if (strcmp(j->pay_status, "succeeded") == 0) {
            deliver(j, j->payment_id);
        } else if (strcmp(j->pay_status, "declined") == 0) {
            fail(j, FK_R_PAYMENT_DECLINED, "the shop reported the payment declined", "declined");
        } else if (!j->ctx->gateway) {
            deliver(j, NULL);
        } else if (fk_charge_ask_first(j->charge)) {
            query(j); /* never charge twice, nor again over a decline: ask first */
        } else {
            charge(j);
        }
        return;
    }
    if (j->state == FK_ST_PENDING_PAYMENT) {
        if (!j->ctx->gateway) {
            snprintf(j->pay_status, sizeof(j->pay_status), "succeeded");
            tr t = {FK_ST_PENDING_PAYMENT, FK_ST_PROCESSING, FK_R_NONE, NULL, "K", 0, "paid",
                    NULL, 0};
            transition(j, &t);
        } else {
            query(j);
        }
        return;
    }
    fk_warn("order.state", oid(j), "unexpected state '%s' for work", fk_state_name(j->state));
    finish(j, FK_JOB_LEFT);
}

/* Give the job its order's long strings, copied into one allocation (any
 * earlier one is freed). Returns 0 or FK_ENOMEM (the job keeps the old ones). */
static int set_strings(fk_job *j, const char *idem, const char *sku, const char *buyer) {
    size_t li = strlen(idem), ls = strlen(sku), lb = strlen(buyer);
    char *p = malloc(li + ls + lb + 3);
    if (!p) return FK_ENOMEM;
    memcpy(p, idem, li + 1);
    memcpy(p + li + 1, sku, ls + 1);
    memcpy(p + li + ls + 2, buyer, lb + 1);
    free(j->o.strs);
    j->o.strs = p;
    j->o.idem_key = p;
    j->o.sku = p + li + 1;
    j->o.buyer = p + li + ls + 2;
    return 0;
}

/* A number field of the order record that is not one faka would have
 * written: which, what it holds, and the range it must be in. */
typedef struct bad_field {
    const char *name;
    const char *value;
    long long lo, hi;
} bad_field;

/* Field i of r as a number in lo..hi; the first one that is not goes into
 * *bad (when bad->name is still NULL) and *out is left alone. */
static void load_count(const redisReply *r, size_t i, const char *name, long long lo,
                       long long hi, long long *out, bad_field *bad) {
    const char *s = elem(r, i);
    if (fk_record_int(s, lo, hi, out) == 0 || bad->name) return;
    bad->name = name;
    bad->value = s;
    bad->lo = lo;
    bad->hi = hi;
}

/* Parse fk_work's reply: {'work', state, fence, charge, attempts, idem, sku,
 * qty, amount, currency, buyer, pay_status, payment_id, polls, resv
 * [, '1' when this call recorded charge=sent]}. A number that is not one
 * (see fk_record_int) leaves the job's number as it was and is named in *bad;
 * the caller must not carry the order on then (bad_record). attempts and
 * polls stop below INT_MAX: the pipeline counts one more. */
static int load_work(fk_job *j, const redisReply *r, bad_field *bad) {
    if (r->elements < 15) return FK_EPROTO;
    memset(bad, 0, sizeof(*bad));
    j->state = fk_state_parse(elem(r, 1));
    snprintf(j->fence, sizeof(j->fence), "%s", elem(r, 2));
    snprintf(j->charge, sizeof(j->charge), "%s", elem(r, 3)[0] ? elem(r, 3) : "none");
    long long attempts = 0, qty = 0, amount = 0, polls = 0;
    /* a record without attempts or polls (written before they were) has
     * none; qty and amount are always written with the record */
    if (elem(r, 4)[0]) load_count(r, 4, "attempts", 0, INT_MAX - 1, &attempts, bad);
    const char *idem = elem(r, 5);
    if (set_strings(j, idem[0] ? idem : j->o.order_id, elem(r, 6), elem(r, 10)))
        return FK_ENOMEM;
    load_count(r, 7, "qty", 1, FK_QTY_MAX, &qty, bad);
    load_count(r, 8, "amount", 0, FK_AMOUNT_MAX, &amount, bad);
    if (elem(r, 13)[0]) load_count(r, 13, "polls", 0, INT_MAX - 1, &polls, bad);
    j->attempts = (int)attempts;
    j->o.qty = (int)qty;
    j->o.amount = amount;
    snprintf(j->o.currency, sizeof(j->o.currency), "%s", elem(r, 9));
    snprintf(j->pay_status, sizeof(j->pay_status), "%s", elem(r, 11));
    snprintf(j->payment_id, sizeof(j->payment_id), "%s", elem(r, 12));
    j->polls = (int)polls;
    j->sent_now = j->send && strcmp(elem(r, 15), "1") == 0 && strcmp(j->charge, "sent") == 0;
    return j->state == FK_ST_NONE ? FK_EPROTO : 0;
}

/* The record holds a number faka cannot act on (load_work): its amount,
 * qty or counts may be anything, so the order is not carried on (no
 * charge, no delivery) and a human is told which field is wrong. Whether
 * money may have moved decides where it goes (docs/STATES.md, "A record
 * that cannot be read"):
 *  - processing, no charge can exist (charge none or absent, or this take
 *    just recorded sent over one of those and posted nothing) and the shop
 *    reported no payment: failed/invalid_order, its codes back to stock;
 *  - otherwise (a charge may exist, was paid or is pending, or the shop
 *    reported it paid): manual_review/invalid_order, its codes held. */
static void bad_record(fk_job *j, const bad_field *b) {
    char detail[256];
    int nothing_charged = (j->sent_now || strcmp(j->charge, "none") == 0 ||
                           strcmp(j->charge, "absent") == 0) &&
                          strcmp(j->pay_status, "succeeded") != 0;
    int fail_it = j->state == FK_ST_PROCESSING && nothing_charged;
    fk_error("order.bad_record", oid(j),
             "the record's %s \"%.40s\" is not an integer from %lld to %lld (charge %s); %s",
             b->name, b->value, b->lo, b->hi, j->charge,
             fail_it ? "failing the order: nothing was charged" : "sending it to review");
    if (fail_it) {
        snprintf(detail, sizeof(detail),
                 "the order record's %s field is not an integer from %lld to %lld; you have "
                 "not been charged",
                 b->name, b->lo, b->hi);
        /* a charge=sent recorded with this take posted nothing: undo it */
        fail(j, FK_R_INVALID_ORDER, detail, j->sent_now ? "none" : NULL);
        return;
    }
    snprintf(detail, sizeof(detail),
             "the order record's %s field is not an integer from %lld to %lld, and a "
             "payment may exist; staff will check it and deliver or refund",
             b->name, b->lo, b->hi);
    review(j, j->state, FK_R_INVALID_ORDER, detail);
}

/* Parse accept's answer for a record it just wrote: {'new', charge,
 * pay_status, payment_id}. The rest is the entry's, already in the job. */
static int load_new(fk_job *j, const redisReply *r) {
    if (r->elements < 4) return FK_EPROTO;
    j->state = FK_ST_PROCESSING;
    snprintf(j->fence, sizeof(j->fence), "1");
    snprintf(j->charge, sizeof(j->charge), "%s", elem(r, 1)[0] ? elem(r, 1) : "none");
    j->attempts = 0;
    j->polls = 0;
    snprintf(j->pay_status, sizeof(j->pay_status), "%s", elem(r, 2));
    snprintf(j->payment_id, sizeof(j->payment_id), "%s", elem(r, 3));
    j->sent_now = j->send && strcmp(j->charge, "sent") == 0;
    return 0;
}

/* A reply that gave the job its order (load_work, load_new): carry it on,
 * or leave the entry pending if the reply was not understood. */
static void work_loaded(fk_job *j, int rc) {
    if (rc) {
        fk_error("job.redis", oid(j), "work reply not loaded (%s); entry %s stays pending",
                 fk_strerror(rc), j->entry_id);
        finish(j, FK_JOB_ABANDONED);
        return;
    }
    run_work(j);
}

/* Common handling of fk_take / fk_work answers (accept, resume). */
static void on_take(fk_job *j, redisReply *reply, const char *st) {
    if (strcmp(st, "work") == 0) {
        bad_field bad;
        int rc = load_work(j, reply, &bad);
        if (rc == 0 && bad.name) {
            bad_record(j, &bad);
            return;
        }
        work_loaded(j, rc);
        return;
    }
    if (strcmp(st, "busy") == 0) {
        fk_info("order.busy", oid(j), "entry %s is held under a live lease; leaving it pending",
                j->entry_id);
        finish(j, FK_JOB_LEFT);
        return;
    }
    if (strcmp(st, "missing") == 0) {
        /* A retry entry for an order with no record: the reclaim sweep
         * dead-lettered its order entry before any worker could accept it
         * (its accept kept failing, or the workers holding it kept dying),
         * so the order exists only in the dead stream. Said loudly: it
         * waits for an operator (fakactl dead requeue), not for the fleet. */
        fk_warn("order.dead_before_accept", oid(j),
                "a retry for an order with no record: its entry was dead-lettered before it "
                "was accepted (or its record expired); `fakactl dead list` shows it, "
                "`fakactl dead requeue` takes it up");
        finish(j, FK_JOB_SETTLED);
        return;
    }
    /* done / owned: settled by the script's ack */
    fk_debug("order.skip", oid(j), "entry %s: %s %s", j->entry_id, st, elem(reply, 1));
    finish(j, FK_JOB_SETTLED);
}

static void on_duplicate(fk_redis *r, redisReply *reply, void *arg) {
    fk_job *j = arg;
    const char *st;
    (void)r;
    if (reply_status(j, reply, "duplicate", &st)) return;
    fk_info("order.duplicate", oid(j), "%s (key %s)", elem(reply, 1), j->o.idem_key);
    finish(j, FK_JOB_SETTLED);
}

static void duplicate(fk_job *j, const char *owner) {
    const fk_ctx *c = j->ctx;
    char okey[FK_KEY_MAX], wkey[FK_KEY_MAX], minute[160], mdup[512], mconf[512];
    if (!fk_order_id_valid(owner)) {
        fk_error("order.duplicate", oid(j), "idempotency key owner is not a valid id");
        finish(j, FK_JOB_ABANDONED);
        return;
    }
    fk_key_order(c->keys, j->o.order_id, okey, sizeof(okey));
    fk_key_order(c->keys, owner, wkey, sizeof(wkey));
    fk_key_stats_minute(c->keys, fk_now_ms(), minute, sizeof(minute));
    fk_reason_message(FK_R_DUPLICATE, owner, mdup, sizeof(mdup));
    fk_reason_message(FK_R_IDEMPOTENCY_CONFLICT, owner, mconf, sizeof(mconf));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, okey);
    fk_args_str(&a, wkey);
    fk_args_str(&a, c->keys->stream);
    fk_args_str(&a, c->keys->stats);
    fk_args_str(&a, minute);
    fk_args_str(&a, c->keys->group);
    fk_args_str(&a, j->entry_id);
    fk_args_str(&a, j->o.order_id);
    fk_args_str(&a, owner);
    fk_args_str(&a, j->o.sku);
    fk_args_ll(&a, j->o.qty);
    fk_args_ll(&a, j->o.amount);
    fk_args_str(&a, j->o.currency);
    fk_args_str(&a, j->o.buyer);
    fk_args_str(&a, j->o.idem_key);
    fk_args_str(&a, mdup);
    fk_args_str(&a, mconf);
    fk_args_ll(&a, c->cfg->retention_s);
    int rc = fk_script_call(c->redis, FK_LUA_DUPLICATE, 5, &a, on_duplicate, j);
    if (rc) send_failed(j, rc, "duplicate");
}

static void on_accept(fk_redis *r, redisReply *reply, void *arg) {
    fk_job *j = arg;
    const char *st;
    (void)r;
    if (reply_status(j, reply, "accept", &st)) return;
    if (strcmp(st, "completed") == 0) {
        fk_debug("order.final", oid(j), "completed");
        finish(j, FK_JOB_SETTLED);
    } else if (strcmp(st, "failed") == 0) {
        fk_info("order.final", oid(j), "failed: %s", elem(reply, 1));
        finish(j, FK_JOB_SETTLED);
    } else if (strcmp(st, "review") == 0) {
        fk_warn("order.final", oid(j),
                "manual_review: %s (the shop reported it paid; out of stock)", elem(reply, 1));
        finish(j, FK_JOB_SETTLED);
    } else if (strcmp(st, "new") == 0) {
        work_loaded(j, load_new(j, reply));
    } else if (strcmp(st, "dup") == 0) {
        char owner[FK_ORDER_ID_MAX + 1];
        snprintf(owner, sizeof(owner), "%s", elem(reply, 1));
        duplicate(j, owner);
    } else if (strcmp(st, "conflict") == 0) {
        char err[256];
        snprintf(err, sizeof(err),
                 "order_id %s already exists (state %s) with a different sku, qty, amount "
                 "or currency",
                 j->o.order_id, elem(reply, 1));
        dead_letter(j, err, NULL); /* never touch the existing order */
    } else {
        on_take(j, reply, st);
    }
}

static void accept_order(fk_job *j) {
    const fk_ctx *c = j->ctx;
    char okey[FK_KEY_MAX], ikey[FK_KEY_MAX], wkey[FK_KEY_MAX], skey[FK_KEY_MAX],
        ckey[FK_KEY_MAX], minute[160];
    fk_key_order(c->keys, j->o.order_id, okey, sizeof(okey));
    fk_key_idem(c->keys, j->o.idem_key, ikey, sizeof(ikey));
    fk_key_order(c->keys, j->o.idem_key, wkey, sizeof(wkey));
    fk_key_stock(c->keys, j->o.sku, skey, sizeof(skey));
    fk_key_stats_minute(c->keys, fk_now_ms(), minute, sizeof(minute));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, okey);
    fk_args_str(&a, ikey);
    fk_args_str(&a, skey);
    fk_args_str(&a, c->keys->stream);
    fk_args_str(&a, c->keys->stats);
    fk_args_str(&a, minute);
    fk_args_str(&a, c->keys->retry);
    fk_args_str(&a, c->keys->notify);
    fk_args_str(&a, c->keys->active);
    fk_args_str(&a, wkey); /* the implicit holder of the key (accept.lua) */
    fk_args_str(&a, c->keys->review);
    /* the buyer cooldown: refused while the buyer's key says so */
    int nkeys = 11;
    if (c->cfg->buyer_cool_failures > 0 && j->o.buyer[0]) {
        fk_key_cooldown(c->keys, j->o.buyer, ckey, sizeof(ckey));
        fk_args_str(&a, ckey);
        nkeys = 12;
    }
    fk_args_str(&a, c->keys->group);
    fk_args_str(&a, j->entry_id);
    fk_args_str(&a, j->o.order_id);
    fk_args_str(&a, j->o.idem_key);
    fk_args_str(&a, j->o.sku);
    fk_args_ll(&a, j->o.qty);
    fk_args_ll(&a, j->o.amount);
    fk_args_str(&a, j->o.currency);
    fk_args_str(&a, j->o.buyer);
    fk_args_ll(&a, c->cfg->idem_ttl_s);
    /* with the guard's admission now, the new record is written with
     * charge=sent and the POST follows the reply (one Lua call less) */
    j->send = c->gateway && c->guard && fk_guard_local_admit(c->guard);
    fk_args_str(&a, !c->gateway ? "paid" : j->send ? "send" : "charge");
    fk_args_ll(&a, c->cfg->lease_ms);
    fk_args_ll(&a, c->cfg->retention_s);
    fk_args_str(&a, c->notify ? "1" : "0");
    fk_args_ll(&a, c->cfg->order_ttl_s * 1000);
    j->lease_at = uv_now(c->loop);
    int rc = fk_script_call(c->redis, FK_LUA_ACCEPT, nkeys, &a, on_accept, j);
    if (rc) send_failed(j, rc, "accept");
}

static void on_resume(fk_redis *r, redisReply *reply, void *arg) {
    fk_job *j = arg;
    const char *st;
    (void)r;
    if (reply_status(j, reply, "resume", &st)) return;
    on_take(j, reply, st);
}

/* due: the retry's due time from the entry ('' for other entries). */
static void resume(fk_job *j, const char *due) {
    const fk_ctx *c = j->ctx;
    char okey[FK_KEY_MAX];
    fk_key_order(c->keys, j->o.order_id, okey, sizeof(okey));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, okey);
    fk_args_str(&a, c->keys->stream);
    fk_args_str(&a, c->keys->retry);
    fk_args_str(&a, c->keys->group);
    fk_args_str(&a, j->entry_id);
    fk_args_str(&a, j->o.order_id);
    fk_args_ll(&a, c->cfg->lease_ms);
    fk_args_str(&a, due);
    j->send = c->gateway && c->guard && fk_guard_local_admit(c->guard);
    fk_args_str(&a, j->send ? "send" : "");
    j->lease_at = uv_now(c->loop);
    int rc = fk_script_call(c->redis, FK_LUA_RESUME, 3, &a, on_resume, j);
    if (rc) send_failed(j, rc, "resume");
}

static void on_payment(fk_redis *r, redisReply *reply, void *arg) {
    fk_job *j = arg;
    const char *st;
    (void)r;
    if (reply_status(j, reply, "payment", &st)) return;
    fk_info("order.payment", oid(j), "payment %s: %s %s", j->pay_status, st, elem(reply, 1));
    finish(j, FK_JOB_SETTLED);
}

/* Run payment.lua; skey is the order's stock key ("" when the order has
 * no record yet), needed to release the codes of a declined order; ckey
 * the buyer's cooldown key ("" = none), where a decline is counted; entry
 * the stream entry to acknowledge with it ("" = none). */
static void payment(fk_job *j, const fk_payment *p, const char *skey, const char *ckey,
                    const char *entry) {
    const fk_ctx *c = j->ctx;
    snprintf(j->pay_status, sizeof(j->pay_status), "%s",
             p->status == FK_PAY_SUCCEEDED ? "succeeded" : "declined");
    fk_pay_rec rec = {p->order_id, j->pay_status, p->payment_id, skey, ckey, entry,
                      c->notify ? 1 : 0};
    int rc = fk_payment_record(c->redis, c->cfg, c->keys, &rec, on_payment, j);
    if (rc) send_failed(j, rc, "payment");
}

/* A payment needs its order's stock key (to release codes on a decline),
 * and that needs the SKU from the record: read it (and the buyer, for the
 * cooldown), then run payment.lua. A record changing SKU or buyer in
 * between is impossible (neither ever changes). */
typedef struct pay_ctx {
    fk_job *j;
    fk_payment p;
} pay_ctx;

static void on_sku(fk_redis *r, redisReply *reply, void *arg) {
    pay_ctx *pc = arg;
    fk_job *j = pc->j;
    char skey[FK_KEY_MAX] = "", ckey[FK_KEY_MAX] = "";
    (void)r;
    int rc = fk_redis_reply_err(reply, NULL, 0);
    if (!rc && (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)) rc = FK_EPROTO;
    if (rc) {
        free(pc);
        send_failed(j, rc, "payment sku lookup");
        return;
    }
    const redisReply *sku = reply->element[0], *buyer = reply->element[1];
    if (sku->type == REDIS_REPLY_STRING)
        fk_key_stock(j->ctx->keys, sku->str, skey, sizeof(skey));
    else /* no record yet: any key name will do, nothing is released */
        fk_key_stock(j->ctx->keys, "", skey, sizeof(skey));
    if (buyer->type == REDIS_REPLY_STRING && buyer->len > 0 &&
        j->ctx->cfg->buyer_cool_failures > 0)
        fk_key_cooldown(j->ctx->keys, buyer->str, ckey, sizeof(ckey));
    fk_payment p = pc->p;
    free(pc);
    payment(j, &p, skey, ckey, j->entry_id);
}

static void payment_with_sku(fk_job *j, const fk_payment *p) {
    char okey[FK_KEY_MAX];
    pay_ctx *pc = malloc(sizeof(*pc));
    if (!pc) {
        send_failed(j, FK_ENOMEM, "payment");
        return;
    }
    pc->j = j;
    pc->p = *p;
    fk_key_order(j->ctx->keys, p->order_id, okey, sizeof(okey));
    int rc = fk_redis_command(j->ctx->redis, on_sku, pc, "HMGET %s sku buyer", okey);
    if (rc) {
        free(pc);
        send_failed(j, rc, "payment sku lookup");
    }
}

/* ---- entry dispatch ----------------------------------------------------- */

fk_job *fk_job_new(fk_ctx *ctx, const char *id, size_t idlen, const char *kind, size_t klen,
                   const char *val, size_t vlen, int nfields) {
    fk_job *j = calloc(1, sizeof(*j));
    if (!j) return NULL;
    j->val = malloc(vlen + 1);
    if (!j->val) {
        free(j);
        return NULL;
    }
    memcpy(j->val, val, vlen);
    j->val[vlen] = '\0';
    j->val_len = vlen;
    j->ctx = ctx;
    j->nfields = nfields;
    snprintf(j->entry_id, sizeof(j->entry_id), "%.*s", (int)(idlen < 47 ? idlen : 47), id);
    /* Kind names are short; a long or binary one is kept cut for the
     * dead-letter record, and cannot match a known kind anyway. */
    size_t kl = klen < sizeof(j->kind) - 1 ? klen : sizeof(j->kind) - 1;
    for (size_t i = 0; i < kl; i++) {
        unsigned char ch = (unsigned char)kind[i];
        j->kind[i] = (ch > ' ' && ch < 0x7f) ? (char)ch : '?';
    }
    if (klen >= sizeof(j->kind)) j->kind[sizeof(j->kind) - 2] = '~';
    snprintf(j->charge, sizeof(j->charge), "none");
    j->o.idem_key = j->o.sku = j->o.buyer = "";
    return j;
}

void fk_job_free(fk_job *j) {
    if (!j) return;
    free(j->val);
    free(j->o.strs);
    free(j);
}

void fk_job_start(fk_job *j) {
    char err[256], id[FK_ORDER_ID_MAX + 1];
    err[0] = id[0] = '\0';
    if (j->nfields != 1) {
        /* an order's id that can be read still gets its failed record, as
         * for any other bad order entry (README, "Producing orders") */
        if (strcmp(j->kind, "order") == 0) {
            fk_order o;
            if (fk_order_decode(j->val, j->val_len, &o, err, sizeof(err), id) == FK_ENOMEM) {
                send_failed(j, FK_ENOMEM, "decode");
                return;
            }
        }
        snprintf(err, sizeof(err), "entry must have exactly one field, it has %d", j->nfields);
        dead_letter(j, err, id[0] ? id : NULL);
        return;
    }
    if (strcmp(j->kind, "order") == 0) {
        fk_order o;
        int rc = fk_order_decode(j->val, j->val_len, &o, err, sizeof(err), id);
        if (rc == FK_ENOMEM) { /* says nothing about the entry: try later */
            send_failed(j, rc, "decode");
            return;
        }
        if (rc) {
            dead_letter(j, err, id[0] ? id : NULL);
            return;
        }
        rc = set_strings(j, o.idem_key, o.sku, o.buyer);
        if (rc) {
            send_failed(j, rc, "decode");
            return;
        }
        memcpy(j->o.order_id, o.order_id, sizeof(j->o.order_id));
        memcpy(j->o.currency, o.currency, sizeof(j->o.currency));
        j->o.qty = o.qty;
        j->o.amount = o.amount;
        accept_order(j);
    } else if (strcmp(j->kind, "payment") == 0) {
        fk_payment p;
        int rc = fk_payment_decode(j->val, j->val_len, &p, err, sizeof(err), id);
        if (rc == FK_ENOMEM) {
            send_failed(j, rc, "decode");
            return;
        }
        if (rc) {
            dead_letter(j, err, NULL); /* a bad payment never fails its order */
            return;
        }
        snprintf(j->o.order_id, sizeof(j->o.order_id), "%s", p.order_id);
        payment_with_sku(j, &p);
    } else if (strcmp(j->kind, "retry") == 0) {
        /* "{order_id}@{due ms}" from the promoter; a bare id is accepted */
        char *at = strchr(j->val, '@');
        const char *due = "";
        if (at) {
            *at = '\0';
            due = at + 1;
        }
        int due_ok = due[0] == '\0' || strspn(due, "0123456789") == strlen(due);
        if (!fk_order_id_valid(j->val) || !due_ok || strlen(due) > 18) {
            if (at) *at = '@';
            dead_letter(j, "retry entry must be {order_id}@{due ms}", NULL);
            return;
        }
        snprintf(j->o.order_id, sizeof(j->o.order_id), "%s", j->val);
        resume(j, due);
    } else {
        snprintf(err, sizeof(err), "unknown entry kind '%s' (expected order or payment)",
                 j->kind);
        dead_letter(j, err, NULL);
    }
}
