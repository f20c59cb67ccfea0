/* pipeline.h -- the life of one stream entry: accept, reserve, charge,
 * deliver (DESIGN.md, "The pipeline").
 *
 * A job is one entry read from the stream. The worker creates it, starts
 * it, and gets it back through fk_ctx.job_done exactly once. Every phase
 * ends in one Lua call that records where the order stands, so a job that
 * is abandoned anywhere (crash, Redis gone, lease lost) is resumed later
 * from its last recovery point by whoever gets the entry or the order next.
 * A job never acknowledges an entry outside the Lua call that settles it. */
#ifndef FK_PIPELINE_H
#define FK_PIPELINE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "keys.h"
#include "order.h"
#include "redis.h"
#include "state.h"

struct fk_gateway;
struct fk_guard_local;
typedef struct fk_job fk_job;

/* How a job ended, for the worker's counters and logs. */
enum fk_job_end {
    FK_JOB_SETTLED = 1, /* the entry was acknowledged by a Lua call */
    FK_JOB_LEFT,        /* left pending on purpose (busy / lease lost) */
    FK_JOB_ABANDONED,   /* Redis went away or answered an error: left pending */
};

/* What jobs share with their worker. */
typedef struct fk_ctx {
    uv_loop_t *loop;
    const fk_config *cfg;
    const fk_keys *keys;
    fk_redis *redis;             /* the command connection */
    struct fk_gateway *gateway;  /* NULL: gateway 'none', orders are paid */
    struct fk_guard_local *guard;/* the gateway guard's local view (with a gateway) */
    int notify;                  /* 1: a shop webhook is configured */
    void (*job_done)(fk_job *job, int end, void *arg);
    void *arg;
} fk_ctx;

/* The order a job works on. The contract's long strings (idempotency key,
 * SKU, buyer) live in one allocation sized to them: a job holding
 * fk_order's fixed buffers cost 1.4 KB more, 0.37 MB of a worker's heap at
 * 256 jobs (docs/BENCHMARKS.md, "Worker RSS"). */
typedef struct fk_job_order {
    char order_id[FK_ORDER_ID_MAX + 1];
    const char *idem_key, *sku, *buyer; /* "" until known; point into strs */
    int qty;
    long long amount;
    char currency[4];
    char *strs;
} fk_job_order;

struct fk_job {
    fk_job *prev, *next; /* the worker's in-flight list */
    fk_ctx *ctx;
    char entry_id[48];
    char kind[16];
    char *val; /* the entry's value, NUL-terminated copy */
    size_t val_len;
    int nfields;
    uint64_t read_at;

    fk_job_order o;      /* from the entry, or from the record */
    char fence[24];
    fk_state state;
    char charge[16];     /* none | sent | unknown | absent | pending | paid | declined |
                            conflict (docs/KEYSPACE.md) */
    int attempts;
    int polls;
    char pay_status[16];
    char payment_id[129];
    int queried;         /* the gateway was asked for status in this job */
    int probe;           /* the gateway guard let this call through as a probe */
    int send;            /* the guard admitted a charge before accept/resume ran */
    int sent_now;        /* accept/resume recorded charge=sent for this job: POST */
    uint64_t lease_at;   /* loop time (ms) the command that took or kept the lease
                            for a charge was sent: accept, resume, the transition
                            recording charge=sent (see post_charge) */
};

/* Create a job for one entry (copies everything). kind is the entry's
 * first field name, val its value, nfields the number of field/value
 * pairs. Returns NULL on OOM. */
fk_job *fk_job_new(fk_ctx *ctx, const char *id, size_t idlen, const char *kind, size_t klen,
                   const char *val, size_t vlen, int nfields);

/* Run the job. It ends with ctx->job_done(job, end, arg), called exactly
 * once, possibly from inside this call; the worker frees it there. */
void fk_job_start(fk_job *job);

void fk_job_free(fk_job *job);

/* Cap on the raw payload copied into the dead-letter stream. */
#define FK_DEAD_RAW_MAX 4096

#endif
