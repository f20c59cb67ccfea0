/* test_backoff.c -- unit tests of common/backoff.c: the full-jitter ceiling
 * min(cap, base * 2^attempt) for every attempt a worker can reach and far
 * beyond (monotone, capped, no signed overflow even with huge bases and
 * caps), degenerate arguments, the delay's range and mean over many draws,
 * and the RNG's seeding (reproducible with a seed, different without). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <string.h>

#include "backoff.h"

static long long ref_ceiling(int attempt, long long base, long long cap) {
    /* the definition, unsigned: c < cap < 2^63, so 2c never wraps */
    uint64_t c = (uint64_t)base;
    for (int i = 0; i < attempt && c < (uint64_t)cap; i++) c *= 2;
    return c < (uint64_t)cap ? (long long)c : cap;
}

static void t_ceiling_default_policy(void **state) {
    (void)state;
    long long prev = 0;
    for (int a = 0; a <= 70; a++) {
        long long c = fk_backoff_ceiling(a, 1000, 60000);
        long long want = a < 6 ? 1000LL << a : 60000;
        if (c != want) fail_msg("attempt %d: ceiling %lld, want %lld", a, c, want);
        assert_true(c >= prev);
        prev = c;
    }
    assert_int_equal(fk_backoff_ceiling(0, 1000, 60000), 1000);
    assert_int_equal(fk_backoff_ceiling(5, 1000, 60000), 32000);
    assert_int_equal(fk_backoff_ceiling(6, 1000, 60000), 60000);
    assert_int_equal(fk_backoff_ceiling(INT_MAX, 1000, 60000), 60000);
}

/* Huge bases and caps: the doubling must stop before it overflows. */
static void t_ceiling_no_overflow(void **state) {
    (void)state;
    const long long bases[] = {1, 3, 1000, 1000000000000LL, LLONG_MAX / 3, LLONG_MAX / 2,
                               LLONG_MAX - 1, LLONG_MAX};
    const long long caps[] = {1, 60000, 86400000, 1000000000000000000LL, LLONG_MAX / 2,
                              LLONG_MAX / 2 + 1, LLONG_MAX - 1, LLONG_MAX};
    for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
        for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
            long long prev = 0;
            for (int a = 0; a <= 200; a++) {
                long long c = fk_backoff_ceiling(a, bases[b], caps[k]);
                long long want = ref_ceiling(a, bases[b], caps[k]);
                if (c <= 0 || c > caps[k] || c < prev || c != want)
                    fail_msg("attempt %d base %lld cap %lld: ceiling %lld (want %lld, prev %lld)",
                             a, bases[b], caps[k], c, want, prev);
                prev = c;
            }
            assert_int_equal(fk_backoff_ceiling(INT_MAX, bases[b], caps[k]), caps[k]);
        }
    }
    /* base 10^12 with the largest cap: reaches the cap, never wraps */
    assert_int_equal(fk_backoff_ceiling(70, 1000000000000LL, LLONG_MAX), LLONG_MAX);
    assert_int_equal(fk_backoff_ceiling(23, 1000000000000LL, LLONG_MAX),
                     1000000000000LL << 23);
}

static void t_ceiling_degenerate(void **state) {
    (void)state;
    /* attempt < 0 reads 0 */
    assert_int_equal(fk_backoff_ceiling(-1, 1000, 60000), 1000);
    assert_int_equal(fk_backoff_ceiling(INT_MIN, 1000, 60000), 1000);
    /* base above cap: the cap */
    assert_int_equal(fk_backoff_ceiling(0, 90000, 60000), 60000);
    assert_int_equal(fk_backoff_ceiling(-5, 90000, 60000), 60000);
    /* zero or negative base or cap: no delay */
    assert_int_equal(fk_backoff_ceiling(3, 0, 60000), 0);
    assert_int_equal(fk_backoff_ceiling(3, -1000, 60000), 0);
    assert_int_equal(fk_backoff_ceiling(3, LLONG_MIN, 60000), 0);
    assert_int_equal(fk_backoff_ceiling(3, 1000, 0), 0);
    assert_int_equal(fk_backoff_ceiling(3, 1000, -1), 0);
    assert_int_equal(fk_backoff_delay(3, 0, 60000), 0);
    assert_int_equal(fk_backoff_delay(3, -5, 60000), 0);
    assert_int_equal(fk_backoff_delay(-7, 1000, -1), 0);
}

/* 100k draws: all in [0, ceiling], mean about ceiling / 2, both ends hit. */
static void t_delay_distribution(void **state) {
    (void)state;
    fk_rand_seed(12345);
    const struct {
        int attempt;
        long long base, cap;
    } cases[] = {{0, 1000, 60000}, {3, 1000, 60000}, {10, 1000, 60000}, {70, 1000, 60000},
                 {-1, 1000, 60000}, {40, 1000000000000LL, LLONG_MAX}, {0, 1, 1}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        long long ceil = fk_backoff_ceiling(cases[k].attempt, cases[k].base, cases[k].cap);
        long double sum = 0;
        long long lo = LLONG_MAX, hi = -1;
        const int n = 100000;
        for (int i = 0; i < n; i++) {
            long long d = fk_backoff_delay(cases[k].attempt, cases[k].base, cases[k].cap);
            if (d < 0 || d > ceil) fail_msg("case %zu: delay %lld outside [0, %lld]", k, d, ceil);
            sum += d;
            if (d < lo) lo = d;
            if (d > hi) hi = d;
        }
        long double mean = sum / n;
        if (mean < ceil * 0.47L || mean > ceil * 0.53L)
            fail_msg("case %zu: mean %Lf, ceiling %lld", k, mean, ceil);
        assert_true(lo <= ceil / 100);
        assert_true(hi >= ceil - ceil / 100);
    }
}

/* Equal jitter: every draw in [c/2, c], spread over all of it. */
static void t_delay_equal(void **state) {
    (void)state;
    fk_rand_seed(777);
    const struct {
        int attempt;
        long long base, cap;
    } cases[] = {{0, 1000, 3600000}, {5, 1000, 3600000}, {30, 1000, 3600000}, {0, 1, 1},
                 {62, 1000000000000LL, LLONG_MAX}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        long long c = fk_backoff_ceiling(cases[k].attempt, cases[k].base, cases[k].cap);
        long long lo = LLONG_MAX, hi = -1;
        for (int i = 0; i < 100000; i++) {
            long long d = fk_backoff_delay_equal(cases[k].attempt, cases[k].base, cases[k].cap);
            if (d < c / 2 || d > c) fail_msg("case %zu: delay %lld outside [%lld, %lld]", k, d,
                                             c / 2, c);
            if (d < lo) lo = d;
            if (d > hi) hi = d;
        }
        assert_true(lo <= c / 2 + c / 100);
        assert_true(hi >= c - c / 100);
    }
    /* the webhook's defaults (base 1 s, cap 1 h, 20 attempts): at least
     * 4 h of waiting before an order is marked notify_failed */
    long long min_total = 0;
    for (int a = 0; a < 19; a++) min_total += fk_backoff_ceiling(a, 1000, 3600000) / 2;
    assert_true(min_total >= 4LL * 3600 * 1000);
}

static void t_rand_upto(void **state) {
    (void)state;
    fk_rand_seed(7);
    assert_int_equal(fk_rand_upto(0), 0);
    assert_int_equal(fk_rand_upto(-1), 0);
    assert_int_equal(fk_rand_upto(LLONG_MIN), 0);
    int seen[2] = {0, 0};
    for (int i = 0; i < 1000; i++) {
        long long v = fk_rand_upto(1);
        assert_true(v == 0 || v == 1);
        seen[v]++;
    }
    assert_true(seen[0] > 300 && seen[1] > 300);
    for (int i = 0; i < 10000; i++) {
        long long v = fk_rand_upto(LLONG_MAX);
        assert_true(v >= 0);
    }
    /* every value of a small range comes up */
    int hits[11] = {0};
    for (int i = 0; i < 11000; i++) hits[fk_rand_upto(10)]++;
    for (int i = 0; i <= 10; i++) assert_true(hits[i] > 700);
}

static void t_seed(void **state) {
    (void)state;
    uint64_t a[16], b[16], c[16];
    fk_rand_seed(42);
    for (int i = 0; i < 16; i++) a[i] = fk_rand_u64();
    fk_rand_seed(42);
    for (int i = 0; i < 16; i++) b[i] = fk_rand_u64();
    assert_memory_equal(a, b, sizeof(a));
    fk_rand_seed(43);
    for (int i = 0; i < 16; i++) c[i] = fk_rand_u64();
    assert_memory_not_equal(a, c, sizeof(a));
    /* the delays are reproducible too */
    long long d1[32], d2[32];
    fk_rand_seed(42);
    for (int i = 0; i < 32; i++) d1[i] = fk_backoff_delay(i % 8, 1000, 60000);
    fk_rand_seed(42);
    for (int i = 0; i < 32; i++) d2[i] = fk_backoff_delay(i % 8, 1000, 60000);
    assert_memory_equal(d1, d2, sizeof(d1));
    /* seed 0 draws from the OS: two such seedings differ */
    fk_rand_seed(0);
    for (int i = 0; i < 16; i++) b[i] = fk_rand_u64();
    fk_rand_seed(0);
    for (int i = 0; i < 16; i++) c[i] = fk_rand_u64();
    assert_memory_not_equal(b, c, sizeof(b));
    assert_memory_not_equal(a, b, sizeof(a));
    /* not stuck: no repeated value in a short run, bits in both halves */
    fk_rand_seed(1);
    uint64_t or_all = 0, and_all = ~0ULL;
    for (int i = 0; i < 1000; i++) {
        uint64_t v = fk_rand_u64();
        or_all |= v;
        and_all &= v;
    }
    assert_true(or_all == ~0ULL);
    assert_true(and_all == 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_ceiling_default_policy),
        cmocka_unit_test(t_ceiling_no_overflow),
        cmocka_unit_test(t_ceiling_degenerate),
        cmocka_unit_test(t_delay_distribution),
        cmocka_unit_test(t_delay_equal),
        cmocka_unit_test(t_rand_upto),
        cmocka_unit_test(t_seed),
    };
    return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
