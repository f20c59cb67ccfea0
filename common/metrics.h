/* metrics.h -- the article's four metrics, read from the counters the Lua
 * scripts keep in {p}:stats and {p}:stats:m:{minute} (docs/METRICS.md):
 *   1. retry-count distribution   attempts:{n}  (final orders by retries)
 *   2. failures by reason         reason:{code}
 *   3. average retry duration     retry_ms_sum / retry_ms_count
 *   4. final success rate         completed / (completed + failed + expired
 *                                 - reopened)
 * This file and metrics.c are the one place where those formulas live;
 * fakactl stats/top and the docs use them. Parsing only: no I/O.
 *
 * The hashes are outside input (anyone with redis-cli can HSET them), so
 * every value is read by fk_metrics_counter's rule and every sum saturates:
 * no input makes the arithmetic undefined or a rate leave [0, 1]. */
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
 * reply; unknown fields are ignored; a full table keeps the rows it has
 * and drops later ones, whatever their counts).
 * Counters as fk_metrics_counter reads them. A reason code is kept as
 * well-formed UTF-8 (fk_utf8_repair) cut to fit `code`; codes that read the
 * same after that are one row. `attempts:{n}` counts only with n a decimal
 * integer >= 0 (else the field is ignored); `attempts:1` and `attempts:01`
 * are one row. */
void fk_metrics_from_hash(fk_metrics *m, const redisReply *hgetall);

/* A counter read from Redis: an integer reply, or a string that is a decimal
 * integer, as its value; INT64_MAX when it is larger than that; 0 when it
 * is negative, not a decimal integer ("abc", "1.5", " 7"), another type, or
 * v is NULL. Never negative. */
long long fk_metrics_counter(const redisReply *v);

/* a + b, saturating at INT64_MAX / INT64_MIN instead of overflowing. */
long long fk_metrics_add(long long a, long long b);

/* Orders that reached completed, failed or expired for good: an order that
 * an operator re-opened (failed -> processing) or a late payment sent to
 * review is taken back out, so it is counted once, where it ended. */
long long fk_metrics_final(const fk_metrics *m);

/* completed / fk_metrics_final, in [0, 1]; -1 when nothing is final yet.
 * The sum saturates at INT64_MAX (counters edited by hand). */
double fk_metrics_success_rate(const fk_metrics *m);

/* Mean ms from an order's first transient failure to its final state;
 * -1 when no retried order finished yet. */
long long fk_metrics_avg_retry_ms(const fk_metrics *m);

/* The metrics as JSON (see docs/METRICS.md, "fakactl stats --json");
 * NULL on OOM. Returns a cJSON object the caller deletes. */
struct cJSON;
struct cJSON *fk_metrics_json(const fk_metrics *m);

#endif
