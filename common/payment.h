/* payment.h -- record a payment's outcome for an order through
 * lua/payment.lua: the shop's `payment` entry (the worker), and the
 * gateway's "paid" that reached a worker or a reaper after the order had
 * moved on without it (its delivery came back stale), so that the money
 * is never lost: the order completes if it still can, or goes to
 * manual_review/late_payment. payment.lua's KEYS and ARGV are built here
 * and nowhere else. */
#ifndef FK_PAYMENT_H
#define FK_PAYMENT_H

#include "config.h"
#include "keys.h"
#include "redis.h"

/* What to record. Strings must live until fk_payment_record() returns. */
typedef struct fk_pay_rec {
    const char *order_id;
    const char *status;     /* "succeeded" | "declined" */
    const char *payment_id; /* "" = none */
    const char *stock_key;  /* the order's stock list (a decline releases into it) */
    const char *cool_key;   /* the buyer's cooldown hash, "" = none (a decline counts there) */
    const char *entry_id;   /* the stream entry to acknowledge with it, "" = none */
    int notify;             /* 1: queue the shop webhook when it completes */
} fk_pay_rec;

/* Run payment.lua for p. Returns 0: cb is called exactly once, later, with
 * the script's reply ({'stub'} | {'completed', codes} | {'failed'} |
 * {'review'} | {'noted', state} | {'noop', state}, or an error / NULL
 * reply). Returns FK_EDOWN / FK_ENOMEM: cb is never called. */
int fk_payment_record(fk_redis *r, const fk_config *cfg, const fk_keys *keys,
                      const fk_pay_rec *p, fk_redis_reply_cb cb, void *arg);

#endif
