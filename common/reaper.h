/* reaper.h -- the loop of faka-reaper: it settles what no worker will.
 *
 * Every --reap-ms the reaper
 *   1. settles orders past their deadline in {p}:active (zombies still in
 *      processing past --order-ttl-s, orders in pending_payment past
 *      --payment-ttl-s): takes each under a lease with a bumped fence
 *      (settle_take.lua), asks the gateway what became of the charge when
 *      that is not already known, and applies the outcome with one fenced
 *      transition (transition.h):
 *        processing, paid                      -> completed
 *        processing, charge never sent / 404   -> expired/processing_timeout (stock released)
 *        processing, gateway says declined     -> failed/payment_declined (stock released)
 *        processing, gateway says pending      -> pending_payment (the payment TTL applies)
 *        processing, outcome unknown           -> manual_review/payment_unknown
 *        pending_payment, paid, codes reserved -> processing -> completed
 *        pending_payment, otherwise            -> expired/unpaid_timeout (stock released)
 *   2. removes consumers of dead workers that hold nothing
 *      (sweep_consumers.lua) and stale heartbeats;
 *   3. trims acknowledged entries from the stream (trim_stream.lua);
 *   4. heart-beats into {p}:reapers.
 * Stalled stream entries are reclaimed by the workers themselves
 * (reclaim.lua, every lease/4), not here: docs/OPERATIONS.md says why.
 *
 * Any number of reapers may run at once: an order is settled under a lease
 * taken atomically, every transition is a fenced compare-and-set, and the
 * housekeeping scripts re-check their conditions inside one Lua call. */
#ifndef FK_REAPER_H
#define FK_REAPER_H

#include "config.h"

/* Exit statuses of fk_reaper_run (faka-reaper adds 2 for bad
 * configuration and 3 for missing scripts before it gets here). */
enum {
    FK_REAPER_EXIT_OK = 0,      /* drained after SIGTERM / SIGINT */
    FK_REAPER_EXIT_FORCED = 1,  /* second signal */
    FK_REAPER_EXIT_CONFIG = 2,  /* the Redis URL does not parse */
    FK_REAPER_EXIT_NOMEM = 4,   /* out of memory at start */
    FK_REAPER_EXIT_HTTP = 5,    /* the gateway client cannot be set up */
};

/* Run a reaper until it is told to stop. The first SIGTERM/SIGINT drains:
 * no new sweeps, the settlements in flight finish (bounded by the lease),
 * exit 0. A second signal exits at once with status 1; an order it held
 * is taken up again by any reaper once the lease runs out. Returns the
 * exit status; every handle is closed and the loop closed before it
 * returns. */
int fk_reaper_run(const fk_config *cfg);

#endif
