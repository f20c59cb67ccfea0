/* fleet.h -- shared steps of the fleet-level tests: load stock, produce
 * orders and garbage with plain XADD, and audit the result (every order
 * final, exactly qty distinct codes each, no code in two orders, stock
 * conserved). Used by the integration tests and the chaos suite. */
#ifndef FK_TEST_FLEET_H
#define FK_TEST_FLEET_H

#include <hiredis/hiredis.h>

#define FK_T_SKUS 4

typedef struct fk_t_audit {
    long long orders;          /* order records found */
    long long completed, failed, expired, review, processing, pending_payment, missing;
    long long codes_delivered; /* sum of codes over completed orders */
    long long qty_mismatch;    /* completed orders whose codes != qty */
    long long dup_codes;       /* codes that appear in two places */
    long long stock_left;      /* codes still in the stock lists */
    long long reserved;        /* codes held in reservations */
} fk_t_audit;

/* RPUSH per_sku codes "<sku>-c<i>" onto each of the FK_T_SKUS stock lists
 * of prefix; returns the total loaded. */
long long fk_t_load_stock(redisContext *c, const char *prefix, long long per_sku);

/* Name of SKU i (0..FK_T_SKUS-1). */
const char *fk_t_sku(int i);

/* XADD n valid orders "<idp><k>" (k = first..first+n-1) with qty 1..3 and
 * sku by k; returns the total qty. Pipelined through c, or with the
 * redis-cli binary when FK_T_PRODUCER=redis-cli. */
long long fk_t_produce(redisContext *c, const char *prefix, const char *idp, long long first,
                       long long n);

/* XADD the i-th kind of malformed entry (i any number; kinds cycle through
 * bad JSON, missing/mistyped fields, qty 0, negative amount, 1 MiB value,
 * invalid UTF-8, unknown kind, ...). Returns a short label of the kind. */
const char *fk_t_produce_garbage(redisContext *c, const char *prefix, long long i);

/* Audit orders "<idp><k>" for k in [first, first+n), plus every code in
 * the stock lists and reservations. */
void fk_t_audit_run(redisContext *c, const char *prefix, const char *idp, long long first,
                    long long n, fk_t_audit *a);

/* Print an audit as a table to stderr. */
void fk_t_audit_print(const char *title, const fk_t_audit *a);

/* 1 if order id under prefix has this state and reason ("" = no reason
 * field); else 0, after saying on stderr what it has instead. For
 * assert_true(), so that a mismatch is a test failure with a reason. */
int fk_t_order_is(redisContext *c, const char *prefix, const char *id, const char *state,
                  const char *reason);

/* Wait up to timeout_ms for order id under prefix to reach state: 1 if it
 * did; else 0, after saying on stderr which state it is in. */
int fk_t_wait_order(redisContext *c, const char *prefix, const char *id, const char *state,
                    long timeout_ms);

/* Wait up to timeout_ms for field of order id under prefix to equal want:
 * 1 if it did; else 0, after saying on stderr what it holds. */
int fk_t_wait_field(redisContext *c, const char *prefix, const char *id, const char *field,
                    const char *want, long timeout_ms);

/* stats hash field as a number (0 if absent). */
long long fk_t_stat(redisContext *c, const char *prefix, const char *field);

#endif
