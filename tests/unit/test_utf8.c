/* test_utf8.c -- unit tests of common/utf8.c's repair of outside text
 * (fk_utf8_repair, fk_utf8_seq_len): every class of ill-formed input
 * becomes U+FFFD byte by byte, NUL too, well-formed text is kept as it is,
 * the result is always well-formed, a cut never splits a character, and the
 * return value is the whole length as snprintf's is. The validator itself
 * is tested with the order codec (test_order.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "utf8.h"

#define FFFD "\xef\xbf\xbd"

/* Repair s[0..len) into a buffer that is large enough and check the result. */
static void expect_repair(const char *s, size_t len, const char *want) {
    char out[256];
    size_t n = fk_utf8_repair(s, len, out, sizeof(out));
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
    assert_true(fk_utf8_valid(out, n));
}

static void t_seq_len(void **state) {
    (void)state;
    assert_int_equal(fk_utf8_seq_len("a", 1), 1);
    assert_int_equal(fk_utf8_seq_len("\xc3\xa9x", 3), 2);
    assert_int_equal(fk_utf8_seq_len("\xe4\xb8\xad", 3), 3);
    assert_int_equal(fk_utf8_seq_len("\xf0\x9f\x98\x80", 4), 4);
    assert_int_equal(fk_utf8_seq_len("\xf0\x9f\x98\x80", 3), 0); /* truncated */
    assert_int_equal(fk_utf8_seq_len("\x80", 1), 0);
    assert_int_equal(fk_utf8_seq_len("\xed\xa0\x80", 3), 0);     /* surrogate */
    assert_int_equal(fk_utf8_seq_len("\xc0\xaf", 2), 0);         /* overlong */
    assert_int_equal(fk_utf8_seq_len("", 0), 0);
    assert_int_equal(fk_utf8_seq_len("\0", 1), 1);               /* NUL is UTF-8 */
}

static void t_repair(void **state) {
    (void)state;
    /* well-formed text (C0 and C1 controls included) is kept */
    expect_repair("plain", 5, "plain");
    expect_repair("订单 \xc3\xa9 \xf0\x9f\x98\x80", 14, "订单 \xc3\xa9 \xf0\x9f\x98\x80");
    expect_repair("a\x1b[2J\x7f\xc2\x9b", 8, "a\x1b[2J\x7f\xc2\x9b");
    expect_repair("", 0, "");
    expect_repair(NULL, 0, "");
    /* each byte that does not start a well-formed sequence: one U+FFFD */
    expect_repair("a\xff" "b", 3, "a" FFFD "b");
    expect_repair("\xfe\xff", 2, FFFD FFFD);
    expect_repair("\xc3", 1, FFFD);                               /* truncated */
    expect_repair("\xc3(", 2, FFFD "(");                          /* bad continuation */
    expect_repair("\xe4\xb8", 2, FFFD FFFD);
    expect_repair("\xc0\xaf", 2, FFFD FFFD);                      /* overlong */
    expect_repair("\xed\xa0\x80", 3, FFFD FFFD FFFD);             /* surrogate */
    expect_repair("\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD);    /* > U+10FFFF */
    expect_repair("\x80x", 2, FFFD "x");
    /* a NUL cannot live in a C string: U+FFFD, and what follows is kept */
    expect_repair("a\0b", 3, "a" FFFD "b");
}

static void t_cut(void **state) {
    (void)state;
    char out[8];
    /* as snprintf: the whole length is returned, the output is cut */
    memset(out, 'X', sizeof(out));
    assert_int_equal(fk_utf8_repair("abcdefghij", 10, out, sizeof(out)), 10);
    assert_string_equal(out, "abcdefg");
    /* never half a character: "ab" + 3 bytes + 3 bytes; 8 bytes hold 5 */
    assert_int_equal(fk_utf8_repair("ab\xe4\xb8\xad\xe4\xb8\xad", 8, out, sizeof(out)), 8);
    assert_string_equal(out, "ab\xe4\xb8\xad");
    /* nor half a replacement, and nothing after the first cut */
    assert_int_equal(fk_utf8_repair("abcde\xffz", 7, out, sizeof(out)), 9);
    assert_string_equal(out, "abcde");
    assert_int_equal(fk_utf8_repair("abc", 3, out, 1), 3);
    assert_string_equal(out, "");
    assert_int_equal(fk_utf8_repair("abc", 3, NULL, 0), 3); /* size only */
    assert_int_equal(fk_utf8_repair("\xff\xff", 2, NULL, 0), 6);
}

/* Random bytes: the result is well-formed, a NUL-free C string of the
 * length returned, and 3 * len + 1 bytes are enough. */
static void t_random(void **state) {
    (void)state;
    unsigned seed = 12345;
    for (int round = 0; round < 20000; round++) {
        unsigned char in[64];
        size_t len = (size_t)(rand_r(&seed) % (int)sizeof(in));
        for (size_t i = 0; i < len; i++) {
            int r = rand_r(&seed);
            /* mostly bytes near the interesting edges */
            in[i] = (unsigned char)(r % 3 == 0 ? 0x80 + (r >> 3) % 0x80 : r >> 5);
        }
        char out[3 * sizeof(in) + 1];
        size_t n = fk_utf8_repair((const char *)in, len, out, 3 * len + 1);
        assert_true(n <= 3 * len);
        assert_int_equal(strlen(out), n);
        assert_true(fk_utf8_valid(out, n));
        if (fk_utf8_valid((const char *)in, len) && !memchr(in, 0, len))
            assert_memory_equal(out, in, len);
        size_t cut = (size_t)(rand_r(&seed) % (int)(n + 1)) + 1;
        char small[3 * sizeof(in) + 1];
        assert_int_equal(fk_utf8_repair((const char *)in, len, small, cut), n);
        assert_true(strlen(small) < cut);
        assert_true(fk_utf8_valid(small, strlen(small)));
        assert_memory_equal(small, out, strlen(small)); /* a prefix of the whole */
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_seq_len),
        cmocka_unit_test(t_repair),
        cmocka_unit_test(t_cut),
        cmocka_unit_test(t_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
