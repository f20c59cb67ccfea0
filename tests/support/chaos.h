/* chaos.h -- the chaos suite's engine: a faka fleet on a real redis-server
 * (AOF, appendfsync always) and the mock gateway with a fault mix, fed by
 * parallel producers (valid orders, groups of racing duplicates that share
 * one idempotency key, malformed entries) while a chaos loop SIGKILLs and
 * replaces workers, stalls them past their lease (SIGSTOP/SIGCONT) and
 * SIGKILLs and restarts Redis. Then it drains (a healthy fleet until every
 * order has ended) and audits Redis against the gateway's ledger: lost
 * orders, double charges, double deliveries, lost codes, dead letters.
 *
 * Used by tests/integration/test_chaos.c (the short form, in the test
 * command) and by faka-chaos (the long form, scripts/chaos).
 *
 * Every process the engine starts is stopped before fk_t_chaos_run returns;
 * if the program dies on the way (fk_t_fail, SIGINT, SIGTERM) a signal
 * handler SIGKILLs them by pid. */
#ifndef FK_TEST_CHAOS_H
#define FK_TEST_CHAOS_H

#include <stdio.h>

typedef struct fk_t_chaos_opts {
    long long orders;        /* valid orders, ids C1..Cn */
    int workers;             /* fleet size; a killed worker is replaced */
    int producers;           /* parallel producer threads */
    int kills;               /* worker SIGKILLs over the chaos window */
    int stalls;              /* worker SIGSTOP ... SIGCONT, each past the lease */
    int redis_restarts;      /* Redis SIGKILL + restart on the same port and dir */
    long long malformed;     /* malformed entries (fk_t_produce_garbage) */
    int dup_groups;          /* groups of racing duplicates ... */
    int dup_size;            /* ... of this many entries (distinct ids, one key) */
    unsigned long long seed; /* plan, chaos schedule and gateway faults */
    const char *faults;      /* none | light | heavy | a JSON object for /_faults */
    long duration_ms;        /* chaos window; orders are spread over 3/4 of it */
    long drain_ms;           /* longest wait, after the chaos, for every order to end */
    long lease_ms;           /* workers' --lease-ms (HTTP timeout: 2/5 of it) */
    long stall_min_ms, stall_max_ms; /* 0: 1.5x and 3x the lease */
    long order_ttl_s;        /* fleet's --order-ttl-s (the reaper settles orders still
                                processing after it); 0 = faka's default */
    int reaper;              /* -1: run faka-reaper if it is built; 0: never; 1: required */
    int verbose;             /* progress lines on stderr */
    int keep;                /* keep the temp dir (logs, AOF) even when all is well */
} fk_t_chaos_opts;

/* Defaults: the short form's size (2,000 orders, 4 workers, 10 kills,
 * 5 stalls, 1 Redis restart, light faults). */
void fk_t_chaos_defaults(fk_t_chaos_opts *o);

#define FK_T_CHAOS_REASONS 24
#define FK_T_CHAOS_EXAMPLES 8

typedef struct fk_t_chaos_result {
    /* what was done */
    long long submitted;        /* distinct order ids produced */
    long long dup_entries;      /* of which members of racing-duplicate groups */
    long long resent;           /* XADDs repeated after a lost reply (the order may
                                   have two entries: faka must not care) */
    long long xadd_errors;      /* error replies (LOADING ...) retried */
    long long malformed;        /* malformed entries written */
    int kills, stalls, restarts, respawns;
    int crashes;                /* workers that exited on their own (bugs) */
    int bad_exits;              /* workers that did not exit 0 on the final SIGTERM */
    int reaper;                 /* 1 if faka-reaper ran */
    long long run_ms, drain_ms;
    int drained;                /* every order ended within drain_ms */
    long long looks_left;       /* orders the reaper still watched for a late charge when
                                   the drain ended (its cap cut the second looks short) */
    int producer_failed;        /* a producer gave up (Redis unreachable too long) */

    /* how orders ended */
    long long completed, failed, expired, review;
    struct {
        char state[16], reason[32];
        long long n;
    } reasons[FK_T_CHAOS_REASONS];
    int nreasons;
    long long missing;          /* no record at all: lost */
    long long not_final;        /* processing / pending_payment after the drain: lost */
    long long lost;             /* missing + not_final */
    long long qty_mismatch;     /* completed with codes != qty */

    /* money */
    long long ledger_double_charges;        /* keys charged more than once */
    long long ledger_double_charged_orders; /* orders charged under two keys */
    long long charged_twice;                /* our own count, from the entries */
    long long completed_charge_bad;  /* completed without exactly one charge of its own */
    long long final_but_charged;     /* failed/expired with a succeeded charge */
    long long charge_orphans;        /* succeeded charges of orders not completed /
                                        in review, or of ids we never submitted */
    long long charges_succeeded;

    /* codes */
    long long codes_initial, codes_stock, codes_reserved, codes_delivered;
    long long codes_delivered_twice; /* codes in the `codes` of more than one order */
    long long codes_duplicated;      /* codes present in more than one place at all */
    long long codes_lost;            /* initial codes present nowhere */
    long long codes_unknown;         /* present codes that were never loaded */
    long long codes_held_by_final;   /* codes still in the `resv` of a completed, failed or
                                        expired order: never back in stock, never delivered */
    long long webhook_mismatches;    /* webhooks that named other codes for an order */

    /* dead letters */
    long long dead;             /* XLEN dead */
    long long dead_decode;      /* rejected as undecodable / invalid */
    long long dead_poison;      /* "delivered N times without being settled" */
    long long dead_poison_orders; /* poison entries that carried a valid order */

    /* racing duplicates */
    long long dup_groups, dup_groups_bad;

    /* informative: what is still queued after the drain */
    long long left_pending, left_retry, left_active;

    /* what went wrong, for the report */
    char examples[FK_T_CHAOS_EXAMPLES][256];
    int nexamples;
    char dir[256];              /* where logs and the AOF are (kept on failure) */
} fk_t_chaos_result;

/* Run one chaos round. Returns 0 when every invariant holds (the verdict
 * printed by fk_t_chaos_print), 1 otherwise; harness failures (Redis will
 * not start, a binary is missing) abort through fk_t_fail. */
int fk_t_chaos_run(const fk_t_chaos_opts *o, fk_t_chaos_result *res);

/* The table: orders submitted and how they ended, lost orders, double
 * charges, double deliveries, lost codes, dead letters vs malformed, the
 * cross-checks, and the verdict. */
void fk_t_chaos_print(FILE *out, const fk_t_chaos_opts *o, const fk_t_chaos_result *res);

/* 1 when every invariant holds. */
int fk_t_chaos_ok(const fk_t_chaos_result *res);

#endif
