/* backoff.c -- full-jitter backoff and a small fast RNG (see backoff.h). */
#include "backoff.h"

#include <limits.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng[4] = {0x9e3779b97f4a7c15ULL, 0xbf58476d1ce4e5b9ULL, 0x94d049bb133111ebULL,
                          0x2545f4914f6cdd1dULL};

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void fk_rand_seed(uint64_t seed) {
    if (seed == 0) {
        if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
            seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    }
    for (int i = 0; i < 4; i++) rng[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t fk_rand_u64(void) {
    uint64_t r = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return r;
}

long long fk_rand_upto(long long n) {
    if (n <= 0) return 0;
    return (long long)(fk_rand_u64() % ((uint64_t)n + 1));
}

long long fk_backoff_ceiling(int attempt, long long base_ms, long long cap_ms) {
    if (base_ms <= 0 || cap_ms <= 0) return 0;
    if (attempt < 0) attempt = 0;
    long long c = base_ms;
    for (int i = 0; i < attempt && c < cap_ms; i++) {
        /* 2c would overflow, and is above any cap: the cap it is */
        if (c > LLONG_MAX / 2) return cap_ms;
        c *= 2;
    }
    return c < cap_ms ? c : cap_ms;
}

long long fk_backoff_delay(int attempt, long long base_ms, long long cap_ms) {
    return fk_rand_upto(fk_backoff_ceiling(attempt, base_ms, cap_ms));
}

long long fk_backoff_delay_equal(int attempt, long long base_ms, long long cap_ms) {
    long long c = fk_backoff_ceiling(attempt, base_ms, cap_ms);
    return c / 2 + fk_rand_upto(c - c / 2);
}
