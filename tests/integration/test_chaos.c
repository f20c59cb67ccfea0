/* test_chaos.c -- the short form of the chaos suite, in the test command:
 * 2,000 orders (plus racing duplicates and malformed entries) through four
 * workers while ~10 are SIGKILLed and replaced, ~5 stall past their lease
 * and Redis is SIGKILLed and restarted once (AOF, fsync always), against
 * the mock gateway's light fault mix. Nothing may be lost, charged twice
 * or delivered twice, no code may be lost, and every dead letter must be a
 * malformed entry. The long form is scripts/chaos (tests/support/chaos.h).
 * FK_T_CHAOS_SEED picks another seed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "chaos.h"
#include "harness.h"

static void test_chaos_short(void **state) {
    (void)state;
    fk_t_chaos_opts o;
    fk_t_chaos_defaults(&o);
    const char *seed = getenv("FK_T_CHAOS_SEED");
    if (seed && *seed) o.seed = strtoull(seed, NULL, 10);
    fk_t_chaos_result r;
    long long t0 = fk_t_now_ms();
    int rc = fk_t_chaos_run(&o, &r);
    fk_t_chaos_print(stderr, &o, &r);
    fprintf(stderr, "# short chaos form took %.1f s\n", (double)(fk_t_now_ms() - t0) / 1000);
    /* the chaos really happened */
    assert_int_equal(r.kills, o.kills);
    assert_int_equal(r.stalls, o.stalls);
    assert_int_equal(r.restarts, o.redis_restarts);
    assert_int_equal(r.malformed, o.malformed);
    /* and changed nothing it must not */
    assert_int_equal(r.lost, 0);
    assert_int_equal(r.charged_twice + r.ledger_double_charges + r.ledger_double_charged_orders, 0);
    assert_int_equal(r.codes_delivered_twice, 0);
    assert_int_equal(r.codes_lost, 0);
    assert_int_equal(r.dead, r.malformed);
    assert_int_equal(rc, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chaos_short),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
