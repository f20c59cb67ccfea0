/* test_ctl_text.c -- unit tests of how fakactl (common/ctl.c) shows text it
 * read from Redis: fk_ctl_printable for the terminal (no C0 or C1 control,
 * no DEL, no ill-formed UTF-8, cuts on a character) and fk_ctl_json_str /
 * fk_ctl_json_add for JSON (well-formed UTF-8 in values and names, what
 * cJSON prints is valid JSON), plus fk_ctl_time at the edges. The commands
 * themselves run end to end in tests/integration/test_ctl.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "err.h"
#include "utf8.h"

#define FFFD "\xef\xbf\xbd"

static const char *pr(const char *s, size_t max) {
    static char buf[256];
    return fk_ctl_printable(s, max, buf, sizeof(buf));
}

static void t_printable(void **state) {
    (void)state;
    assert_string_equal(pr("A1001", 64), "A1001");
    assert_string_equal(pr("订单 ok", 64), "订单 ok");
    assert_string_equal(pr(NULL, 64), "");
    /* C0, DEL, C1 (U+009B is CSI in a UTF-8 terminal): '?' per character */
    assert_string_equal(pr("a\x1b[2Jb\x07\t\n\x7f", 64), "a?[2Jb????");
    assert_string_equal(pr("x\xc2\x9b" "1m\xc2\x80\xc2\x9f\xc2\xa0", 64), "x?1m??\xc2\xa0");
    /* ill-formed UTF-8: '?' per byte */
    assert_string_equal(pr("a\xff\xfe" "b\xc3(", 64), "a??b?(");
    assert_string_equal(pr("\xed\xa0\x80", 64), "???");
    /* cut at max bytes, never inside a character */
    assert_string_equal(pr("abcdef", 3), "abc...");
    assert_string_equal(pr("ab订单", 4), "ab...");
    assert_string_equal(pr("ab订单", 5), "ab订...");
    assert_string_equal(pr("ab订", 5), "ab订");
    /* a small buffer: max + 4 is the contract; smaller still terminates */
    char small[6];
    fk_ctl_printable("订单订单", 64, small, sizeof(small));
    assert_true(strlen(small) < sizeof(small));
    assert_true(fk_utf8_valid(small, strlen(small)));
    /* random bytes: the output is well-formed and has no control byte */
    unsigned seed = 7;
    for (int round = 0; round < 20000; round++) {
        char in[48], out[48 + 4];
        size_t len = (size_t)(rand_r(&seed) % 47);
        for (size_t i = 0; i < len; i++) {
            int r = rand_r(&seed);
            in[i] = (char)(r % 4 == 0 ? 0x80 + (r >> 3) % 0x40 : (r >> 4) % 255 + 1);
        }
        in[len] = '\0';
        size_t max = (size_t)(rand_r(&seed) % 48);
        fk_ctl_printable(in, max, out, max + 4);
        size_t n = strlen(out);
        assert_true(n <= max + 3);
        assert_true(fk_utf8_valid(out, n));
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)out[i];
            assert_true(c >= 0x20 && c != 0x7f);
            if (c == 0xc2 && i + 1 < n) assert_true((unsigned char)out[i + 1] >= 0xa0);
        }
    }
}

/* Print j as cJSON does and check the text is well-formed UTF-8 that parses
 * back; returns the text (caller frees). */
static char *printed(cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    assert_non_null(s);
    assert_true(fk_utf8_valid(s, strlen(s)));
    cJSON *back = cJSON_Parse(s);
    assert_non_null(back);
    cJSON_Delete(back);
    return s;
}

static void t_json(void **state) {
    (void)state;
    cJSON *j = cJSON_CreateObject();
    assert_int_equal(fk_ctl_json_add(j, "ok", fk_ctl_json_str("订单", 6)), 0);
    assert_int_equal(fk_ctl_json_add(j, "bad", fk_ctl_json_str("r\xff\x1b", 3)), 0);
    assert_int_equal(fk_ctl_json_add(j, "nul", fk_ctl_json_str("a\0b", 3)), 0);
    assert_int_equal(fk_ctl_json_add(j, "null", fk_ctl_json_str(NULL, 5)), 0);
    assert_int_equal(fk_ctl_json_add(j, "k\xc3(", cJSON_CreateNumber(1)), 0); /* a name */
    assert_int_equal(fk_ctl_json_add(j, "x", NULL), FK_ENOMEM);
    char *s = printed(j);
    assert_string_equal(s, "{\"ok\":\"订单\",\"bad\":\"r" FFFD "\\u001b\",\"nul\":\"a" FFFD
                           "b\",\"null\":\"\",\"k" FFFD "(\":1}");
    free(s);
    cJSON_Delete(j);
}

static void t_time(void **state) {
    (void)state;
    char t[40];
    assert_string_equal(fk_ctl_time(0, t, sizeof(t)), "-");
    assert_string_equal(fk_ctl_time(-5, t, sizeof(t)), "-");
    assert_string_equal(fk_ctl_time(1000, t, sizeof(t)), "1970-01-01T00:00:01.000Z");
    /* the largest value Redis can hold still prints, on one line */
    fk_ctl_time(LLONG_MAX, t, sizeof(t));
    assert_true(strlen(t) > 0 && strlen(t) < sizeof(t) - 1);
    assert_null(strchr(t, '\n'));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_printable),
        cmocka_unit_test(t_json),
        cmocka_unit_test(t_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
