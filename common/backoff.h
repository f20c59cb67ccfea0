/* backoff.h -- exponential backoff with full jitter (and equal jitter), and
 * the process's RNG.
 *
 * delay = random(0, min(cap, base * 2^attempt)), the "full jitter" policy:
 * retries of many orders that failed together spread over the whole window
 * instead of returning as a herd. */
#ifndef FK_BACKOFF_H
#define FK_BACKOFF_H

#include <stdint.h>

/* Seed the RNG from the OS (getrandom), or with seed when nonzero (tests). */
void fk_rand_seed(uint64_t seed);
/* Uniform 64-bit value (xoshiro256**). */
uint64_t fk_rand_u64(void);
/* Uniform integer in [0, n]; 0 when n <= 0. */
long long fk_rand_upto(long long n);

/* The ceiling min(cap, base * 2^attempt), overflow-safe; attempt < 0 reads 0. */
long long fk_backoff_ceiling(int attempt, long long base_ms, long long cap_ms);
/* One full-jitter delay: uniform in [0, fk_backoff_ceiling(...)]. */
long long fk_backoff_delay(int attempt, long long base_ms, long long cap_ms);
/* One "equal jitter" delay: uniform in [c/2, c], c = fk_backoff_ceiling(...).
 * For a wait that must add up over the attempts whatever the draws (the
 * shop's webhook: see notify.c), at the price of less spread. */
long long fk_backoff_delay_equal(int attempt, long long base_ms, long long cap_ms);

#endif
