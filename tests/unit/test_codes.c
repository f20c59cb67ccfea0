/* test_codes.c -- unit tests of common/codes.c, the splitter behind
 * `fakactl stock add`: trimming and blank lines, the exact line numbers and
 * reasons of bad lines (long, ill-formed UTF-8, control characters, NUL,
 * duplicates), the cap on named lines, all-or-nothing, empty input, and a
 * large input that grows every buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codes.h"
#include "err.h"

/* Parse s (len bytes, or strlen when len is 0); the reason in err. */
static int parse(const char *s, size_t len, fk_code **out, size_t *n, char *err,
                 size_t errlen) {
    return fk_codes_parse(s, len ? len : strlen(s), out, n, err, errlen);
}

static void expect_code(const fk_code *c, const char *want) {
    if (c->len != strlen(want) || memcmp(c->s, want, c->len) != 0)
        fail_msg("code '%.*s', want '%s'", (int)c->len, c->s, want);
}

static void t_split_and_trim(void **state) {
    (void)state;
    const char *in = "a1\r\n\n  a2  \n\r\n   \na3";
    fk_code *c = NULL;
    size_t n = 0;
    char err[200] = "x";
    assert_int_equal(parse(in, 0, &c, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 3);
    expect_code(&c[0], "a1");
    expect_code(&c[1], "a2");
    expect_code(&c[2], "a3");
    assert_string_equal(err, "");
    /* slices of the input, not copies */
    assert_true(c[0].s == in && c[2].s == in + strlen(in) - 2);
    free(c);
    /* inner spaces and UTF-8 are part of a code */
    assert_int_equal(parse("卡 密-1\n", 0, &c, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    expect_code(&c[0], "卡 密-1");
    free(c);
}

/* Each bad line by its number and reason; nothing is returned. */
static void t_bad_lines_named(void **state) {
    (void)state;
    char longline[300];
    memset(longline, 'x', 257);
    longline[257] = '\0';
    char in[600];
    snprintf(in, sizeof(in), "ok1\n%s\nb\x01\n\xc3\x28\nok1\nt\tb\nd\x7f\n", longline);
    fk_code *c = (fk_code *)1;
    size_t n = 9;
    char err[600];
    assert_int_equal(parse(in, 0, &c, &n, err, sizeof(err)), FK_EINVAL);
    assert_null(c);
    assert_int_equal(n, 0);
    assert_string_equal(err, "6 bad lines, nothing added: line 2: longer than 256 bytes; "
                             "line 3: control character; line 4: not valid UTF-8; "
                             "line 6: control character; line 7: control character; ...");
    /* a duplicate names the line it repeats; 256 bytes is still a code */
    memset(longline, 'y', 256);
    longline[256] = '\0';
    snprintf(in, sizeof(in), "%s\nq\n\nq\n", longline);
    assert_int_equal(parse(in, 0, &c, &n, err, sizeof(err)), FK_EINVAL);
    assert_string_equal(err, "1 bad line, nothing added: line 4: the same code as line 2");
    /* trimming happens before the duplicate check */
    assert_int_equal(parse("q\n q \r\n", 0, &c, &n, err, sizeof(err)), FK_EINVAL);
    assert_non_null(strstr(err, "line 2: the same code as line 1"));
}

/* A NUL inside a line is a control character, not the end of the input. */
static void t_nul(void **state) {
    (void)state;
    fk_code *c = NULL;
    size_t n = 0;
    char err[200];
    assert_int_equal(parse("z1\nz\0z\n", 7, &c, &n, err, sizeof(err)), FK_EINVAL);
    assert_string_equal(err, "1 bad line, nothing added: line 2: control character");
    assert_int_equal(parse("\0", 1, &c, &n, err, sizeof(err)), FK_EINVAL);
}

static void t_no_codes(void **state) {
    (void)state;
    const char *blank[] = {"", "\n", "\n\n  \r\n", "   ", "\r"};
    for (size_t i = 0; i < sizeof(blank) / sizeof(blank[0]); i++) {
        fk_code *c = NULL;
        size_t n = 0;
        char err[200];
        assert_int_equal(parse(blank[i], 0, &c, &n, err, sizeof(err)), FK_EUSAGE);
        assert_null(c);
        assert_string_equal(err, "no codes on stdin (one per line)");
    }
    /* a small err buffer truncates the reason, never overflows */
    fk_code *c = NULL;
    size_t n = 0;
    char err[8];
    assert_int_equal(parse("a\na\n", 0, &c, &n, err, sizeof(err)), FK_EINVAL);
    assert_string_equal(err, "1 bad l");
}

/* More codes than the first buffers hold; the duplicate far apart. */
static void t_many(void **state) {
    (void)state;
    size_t cnt = 50000, o = 0;
    char *in = malloc(cnt * 16 + 32);
    assert_non_null(in);
    for (size_t i = 0; i < cnt; i++) o += (size_t)sprintf(in + o, "code-%zu\n", i);
    fk_code *c = NULL;
    size_t n = 0;
    char err[200];
    assert_int_equal(fk_codes_parse(in, o, &c, &n, err, sizeof(err)), 0);
    assert_int_equal(n, cnt);
    expect_code(&c[0], "code-0");
    expect_code(&c[cnt - 1], "code-49999");
    free(c);
    o += (size_t)sprintf(in + o, "code-7\n");
    assert_int_equal(fk_codes_parse(in, o, &c, &n, err, sizeof(err)), FK_EINVAL);
    assert_string_equal(err, "1 bad line, nothing added: line 50001: the same code as line 8");
    free(in);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_split_and_trim),
        cmocka_unit_test(t_bad_lines_named),
        cmocka_unit_test(t_nul),
        cmocka_unit_test(t_no_codes),
        cmocka_unit_test(t_many),
    };
    return cmocka_run_group_tests_name("codes", tests, NULL, NULL);
}
