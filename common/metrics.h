/* metrics.h -- the article's four metrics, read from the counters the Lua
 * scripts keep in {p}:stats and {p}:stats:m:{minute} (docs/METRICS.md):
 *   1. retry-count distribution   attempts:{n}  (final orders by retries)
 *   2. failures by reason         reason:{code}
 *   3. average retry duration     retry_ms_sum / retry_ms_count
 *   4. final success rate         completed / (completed + failed + expired
 *                                 - reopened)
 * This file and metrics.c are the one place where those formulas live;
 * fakactl stats/top and the docs use them. Parsing only: no I/O. */
#ifndef FK_METRICS_H
#define FK_METRICS_H

#include <hiredis/hiredis.h>

#define FK_METRICS_MAX_REASONS 64
#define FK_METRICS_MAX_ATTEMPTS 128

typedef struct fk_metrics_reason {
    char code[64];
    long long n;
} fk_metrics_reason;

typedef struct fk_metrics_attempts {
    long long retries, n;
} fk_metrics_attempts;

typedef struct fk_metrics {
    long long submitted, completed, failed, expired, manual_review, reopened;
    long long retries, deferred, dead;
    long long retry_ms_sum, retry_ms_count;
    int nreasons; /* sorted by count, largest first */
    fk_metrics_reason reasons[FK_METRICS_MAX_REASONS];
    int nattempts; /* sorted by retries, ascending */
    fk_metrics_attempts attempts[FK_METRICS_MAX_ATTEMPTS];
} fk_metrics;

/* Fill m from an HGETALL reply of a stats hash (zeroes for a nil or empty
 * reply; unknown fields are ignored, a full table drops the smallest). */
void fk_metrics_from_hash(fk_metrics *m, const redisReply *hgetall);

/* Orders that reached completed, failed or expired for good: an order that
 * an operator re-opened (failed -> processing) or a late payment sent to
 * review is taken back out, so it is counted once, where it ended. */
long long fk_metrics_final(const fk_metrics *m);

/* completed / fk_metrics_final, in [0, 1]; -1 when nothing is final yet. */
double fk_metrics_success_rate(const fk_metrics *m);

/* Mean ms from an order's first transient failure to its final state;
 * -1 when no retried order finished yet. */
long long fk_metrics_avg_retry_ms(const fk_metrics *m);

/* The metrics as JSON (see docs/METRICS.md, "fakactl stats --json");
 * NULL on OOM. Returns a cJSON object the caller deletes. */
struct cJSON;
struct cJSON *fk_metrics_json(const fk_metrics *m);

#endif
