/* ledger.h -- the mock gateway's ledger (GET /_ledger) as a sorted table,
 * for the checks that need more than one key's numbers: which order a
 * charge belongs to, every order with a succeeded charge, double charges.
 * The fencing tests and the chaos suite cross-check Redis against it. */
#ifndef FK_TEST_LEDGER_H
#define FK_TEST_LEDGER_H

#include <stddef.h>

#include "gateway.h"

/* One idempotency key the gateway saw (one entry of /_ledger "entries"). */
typedef struct fk_t_charge {
    char *key;        /* idempotency key */
    char *order_id;   /* order_id of the request that recorded the outcome ("" if none) */
    char status[16];  /* succeeded | pending | declined | risk_rejected | none */
    long long charges; /* times money was taken under this key (must be <= 1) */
    long long posts, gets;
} fk_t_charge;

typedef struct fk_t_ledger {
    fk_t_charge *v;   /* sorted by key */
    size_t n;
    /* the gateway's own totals */
    long long keys, charges_succeeded, double_charges, double_charged_orders, posts, gets;
} fk_t_ledger;

/* GET {g->url}/_ledger and parse it into l (fails the test on a transport
 * or parse error). Free with fk_t_ledger_free. */
void fk_t_ledger_load(const fk_t_gateway *g, fk_t_ledger *l);

/* The entry for key, or NULL if the gateway never saw it. */
const fk_t_charge *fk_t_ledger_find(const fk_t_ledger *l, const char *key);

/* Succeeded charges recorded for order_id across all keys (the gateway's
 * "double_charged_orders" looks at the same thing). O(n); use
 * fk_t_ledger_by_order for many look-ups. */
long long fk_t_ledger_order_charges(const fk_t_ledger *l, const char *order_id);

/* Index of succeeded charges by order_id: a sorted array of pointers into
 * l->v (entries with status succeeded and charges > 0). Caller frees the
 * array (not the entries); *n receives its length. */
const fk_t_charge **fk_t_ledger_by_order(const fk_t_ledger *l, size_t *n);

/* In an fk_t_ledger_by_order index: the first entry of order_id and how
 * many entries it has (0 and NULL if none). */
const fk_t_charge *const *fk_t_ledger_order_find(const fk_t_charge **idx, size_t n,
                                                 const char *order_id, size_t *count);

void fk_t_ledger_free(fk_t_ledger *l);

/* A number field of GET /_webhooks?entries=0 ("code_mismatches", ...);
 * -1 if absent. */
long long fk_t_webhooks_num(const fk_t_gateway *g, const char *field);

#endif
