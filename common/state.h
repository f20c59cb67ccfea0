/* state.h -- the order states, the transition table and the reason codes.
 *
 * This file and state.c are the only place where states, transitions and
 * reasons are defined; the Lua scripts get the names from a prelude that
 * scripts.c generates from these tables. Workers check fk_state_can() and
 * pass the expected and the new state to transition.lua, which applies them
 * as a fenced compare-and-set. The few scripts that pick a transition
 * themselves (accept, duplicate, dead, payment) list it in their header, and
 * tests/unit/test_state.c checks those lists against this table. */
#ifndef FK_STATE_H
#define FK_STATE_H

/* symbol, stored name, Chinese label, the order's `message` on entering
 * the state when no reason applies */
#define FK_STATES(X)                                                                    \
    X(FK_ST_PENDING_PAYMENT, "pending_payment", "待支付",                              \
      "Waiting for your payment to be confirmed.")                                      \
    X(FK_ST_PROCESSING, "processing", "处理中", "Your order is being processed.")       \
    X(FK_ST_COMPLETED, "completed", "已完成", "Your codes have been delivered.")        \
    X(FK_ST_FAILED, "failed", "已失败", "The order failed.")                            \
    X(FK_ST_EXPIRED, "expired", "已过期", "The order expired.")                         \
    X(FK_ST_MANUAL_REVIEW, "manual_review", "人工审核",                                  \
      "Staff are checking this order.")

typedef enum fk_state {
    FK_ST_NONE = 0, /* no record yet */
#define FK_ST_ENUM(sym, name, zh, msg) sym,
    FK_STATES(FK_ST_ENUM)
#undef FK_ST_ENUM
    FK_ST__COUNT
} fk_state;

/* Reasons: machine code, and the sentence a buyer or operator reads in the
 * order's `message`. A "%s" in the sentence is filled by fk_reason_message()
 * with a detail (another order id, a number of seconds, a decoder error). */
#define FK_REASONS(X)                                                                       \
    X(FK_R_INVALID_ORDER, "invalid_order",                                                  \
      "The order could not be read and was not processed: %s.")                             \
    X(FK_R_DUPLICATE, "duplicate",                                                          \
      "This is a repeat submission of order %s; that order is the one being processed.")    \
    X(FK_R_IDEMPOTENCY_CONFLICT, "idempotency_conflict",                                    \
      "This checkout was already used for order %s with different items or amount.")        \
    X(FK_R_OUT_OF_STOCK, "out_of_stock",                                                    \
      "Sorry, this item is out of stock. You have not been charged.")                       \
    X(FK_R_PAYMENT_DECLINED, "payment_declined",                                            \
      "Your payment was declined. You have not been charged; please try another method.")   \
    X(FK_R_RISK_REJECTED, "risk_rejected",                                                  \
      "The payment provider's risk check refused this payment. You have not been charged.") \
    X(FK_R_PAYMENT_INVALID, "payment_invalid",                                              \
      "The payment provider refused the request as invalid (%s). You have not been charged.") \
    X(FK_R_RATE_LIMITED, "rate_limited",                                                    \
      "Too many orders failed recently; please try again in %s seconds.")                   \
    X(FK_R_RETRIES_EXHAUSTED, "retries_exhausted",                                          \
      "The payment service stayed unavailable. You have not been charged; please try again later.") \
    X(FK_R_PAYMENT_UNKNOWN, "payment_unknown",                                              \
      "We could not confirm your payment. Staff will check it and deliver or refund.")     \
    X(FK_R_UNPAID_TIMEOUT, "unpaid_timeout",                                                \
      "The order expired before payment was received. Its items were released.")            \
    X(FK_R_PROCESSING_TIMEOUT, "processing_timeout",                                        \
      "The order could not be completed in time. You have not been charged.")               \
    X(FK_R_LATE_PAYMENT, "late_payment",                                                    \
      "Your payment arrived after the order had closed. Staff will deliver or refund.")     \
    X(FK_R_OPERATOR, "operator",                                                            \
      "An operator settled this order: %s")

typedef enum fk_reason {
    FK_R_NONE = 0,
#define FK_R_ENUM(sym, code, msg) sym,
    FK_REASONS(FK_R_ENUM)
#undef FK_R_ENUM
    FK_R__COUNT
} fk_reason;

/* Name of a state as stored in Redis ("processing"); "" for FK_ST_NONE. */
const char *fk_state_name(fk_state s);
/* Chinese label for UIs ("处理中"). */
const char *fk_state_label_zh(fk_state s);
/* The buyer-facing sentence for an order entering s without a reason. */
const char *fk_state_message(fk_state s);
/* Parse a stored state name; FK_ST_NONE for NULL, "" or an unknown name. */
fk_state fk_state_parse(const char *name);
/* 1 if the state is terminal for the automatic pipeline (completed, failed,
 * expired; manual_review waits for a human and is terminal for workers). */
int fk_state_is_final(fk_state s);
/* 1 if `from -> to` is in the transition table (DESIGN.md, "States"). */
int fk_state_can(fk_state from, fk_state to);

/* The record's charge states (docs/KEYSPACE.md) after which a worker asks
 * the gateway before it sends a charge: a charge may exist, or the gateway
 * has answered already (declined: an operator's retry, or a crash before
 * the failure was written). lua/lib.lua reads them as FK_ASK_FIRST, from
 * the prelude scripts.c generates; C asks fk_charge_ask_first(). */
#define FK_CHARGE_ASK_FIRST(X) X(sent) X(unknown) X(pending) X(paid) X(declined)
/* 1 if charge is one of FK_CHARGE_ASK_FIRST. */
int fk_charge_ask_first(const char *charge);

/* Machine code of a reason ("out_of_stock"); "" for FK_R_NONE. */
const char *fk_reason_code(fk_reason r);
fk_reason fk_reason_parse(const char *code);
/* Write the buyer-facing sentence of r into buf, with detail filling a "%s"
 * (NULL detail reads as "unknown"). Returns buf. */
const char *fk_reason_message(fk_reason r, const char *detail, char *buf, size_t len);

#endif
