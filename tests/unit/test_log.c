/* test_log.c -- unit tests of common/log.c: level names; the logfmt shape
 * of a line on stderr (captured through a temporary file), with the clock
 * checked against now; escaping of quotes, backslashes, newlines and control
 * characters so one event is always one line; truncation of oversized
 * messages, order ids, events and worker ids without overflowing; level
 * filtering; and that a disabled level never evaluates its arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "log.h"

/* ---- stderr capture ------------------------------------------------------ */

static FILE *cap_file;
static int cap_saved = -1;
static char cap_buf[65536];

static void capture_begin(void) {
    fflush(stderr);
    cap_file = tmpfile();
    assert_non_null(cap_file);
    cap_saved = dup(STDERR_FILENO);
    assert_true(cap_saved >= 0);
    assert_true(dup2(fileno(cap_file), STDERR_FILENO) >= 0);
}

/* Restore stderr and return what was written (NUL-terminated). */
static const char *capture_end(size_t *len) {
    fflush(stderr);
    dup2(cap_saved, STDERR_FILENO);
    close(cap_saved);
    cap_saved = -1;
    rewind(cap_file);
    size_t n = fread(cap_buf, 1, sizeof(cap_buf) - 1, cap_file);
    cap_buf[n] = '\0';
    fclose(cap_file);
    cap_file = NULL;
    if (len) *len = n;
    return cap_buf;
}

static int reset(void **state) {
    (void)state;
    fk_log_init("test", "w1", FK_LOG_INFO);
    return 0;
}

static void match(const char *line, const char *re) {
    regex_t rx;
    int rc = regcomp(&rx, re, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) fail_msg("bad regex %s", re);
    rc = regexec(&rx, line, 0, NULL, 0);
    regfree(&rx);
    if (rc != 0) fail_msg("line\n  %s\ndoes not match\n  %s", line, re);
}

/* Exactly one line: one '\n', at the end. */
static void one_line(const char *out, size_t len) {
    assert_true(len > 0);
    assert_int_equal(out[len - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + len - 1);
    assert_int_equal(strlen(out), len); /* no NUL inside */
}

/* ---- levels --------------------------------------------------------------- */

static void t_parse_level(void **state) {
    (void)state;
    int lvl = 99;
    assert_int_equal(fk_log_parse_level("debug", &lvl), 0);
    assert_int_equal(lvl, FK_LOG_DEBUG);
    assert_int_equal(fk_log_parse_level("info", &lvl), 0);
    assert_int_equal(lvl, FK_LOG_INFO);
    assert_int_equal(fk_log_parse_level("warn", &lvl), 0);
    assert_int_equal(lvl, FK_LOG_WARN);
    assert_int_equal(fk_log_parse_level("error", &lvl), 0);
    assert_int_equal(lvl, FK_LOG_ERROR);
    assert_int_equal(fk_log_parse_level("ERROR", &lvl), 0);
    assert_int_equal(lvl, FK_LOG_ERROR);
    const char *bad[] = {"", "warning", "inf", "info ", " info", "fatal", "0", "1", "debugx",
                         "trace", "info\n", NULL};
    for (int i = 0; bad[i]; i++) {
        lvl = 77;
        if (fk_log_parse_level(bad[i], &lvl) != FK_EINVAL) fail_msg("'%s' accepted", bad[i]);
        assert_int_equal(lvl, 77); /* untouched on failure */
    }
    lvl = 77;
    assert_int_equal(fk_log_parse_level(NULL, &lvl), FK_EINVAL);
    assert_int_equal(lvl, 77);
}

/* ---- the line's shape ----------------------------------------------------- */

#define TS "^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "

static void t_shape(void **state) {
    (void)state;
    size_t len;
    time_t before = time(NULL);
    capture_begin();
    fk_info("order.accepted", "A1001", "accepted %d codes for %s", 2, "wow-60d");
    const char *out = capture_end(&len);
    time_t after = time(NULL);
    one_line(out, len);
    match(out, TS "level=info comp=test worker=w1 event=order\\.accepted order=A1001 "
               "msg=\"accepted 2 codes for wow-60d\"\n$");
    /* the timestamp is now, in UTC */
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    assert_non_null(strptime(out + 3, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t ts = timegm(&tm);
    assert_true(ts >= before - 1 && ts <= after + 1);
}

static void t_no_order(void **state) {
    (void)state;
    size_t len;
    capture_begin();
    fk_warn("redis.down", NULL, "connection lost");
    const char *out = capture_end(&len);
    one_line(out, len);
    match(out, TS "level=warn comp=test worker=w1 event=redis\\.down msg=\"connection lost\"\n$");
    assert_null(strstr(out, "order="));
}

static void t_levels(void **state) {
    (void)state;
    size_t len;
    fk_log_init(NULL, NULL, FK_LOG_DEBUG);
    capture_begin();
    fk_debug("e.d", NULL, "d x");
    fk_info("e.i", NULL, "i x");
    fk_warn("e.w", NULL, "w x");
    fk_error("e.e", NULL, "e x");
    const char *out = capture_end(&len);
    match(out, "^ts=[^\n]* level=debug [^\n]*event=e\\.d msg=\"d x\"\n"
               "ts=[^\n]* level=info [^\n]*event=e\\.i msg=\"i x\"\n"
               "ts=[^\n]* level=warn [^\n]*event=e\\.w msg=\"w x\"\n"
               "ts=[^\n]* level=error [^\n]*event=e\\.e msg=\"e x\"\n$");
    /* threshold warn: debug and info are dropped */
    fk_log_init(NULL, NULL, FK_LOG_WARN);
    capture_begin();
    fk_debug("e.d", NULL, "d");
    fk_info("e.i", NULL, "i");
    fk_warn("e.w", NULL, "w x");
    fk_error("e.e", NULL, "e x");
    out = capture_end(&len);
    assert_null(strstr(out, "level=debug"));
    assert_null(strstr(out, "level=info"));
    assert_non_null(strstr(out, "level=warn"));
    assert_non_null(strstr(out, "level=error"));
    /* an out-of-range level in fk_log_init leaves the threshold alone */
    fk_log_init(NULL, NULL, 42);
    assert_int_equal(fk_log_threshold, FK_LOG_WARN);
    fk_log_init(NULL, NULL, -1);
    assert_int_equal(fk_log_threshold, FK_LOG_WARN);
    /* NULL component and worker keep the previous ones */
    capture_begin();
    fk_error("e.x", NULL, "still");
    out = capture_end(&len);
    assert_non_null(strstr(out, " comp=test worker=w1 "));
    /* fk_log_emit clamps a wild level */
    capture_begin();
    fk_log_emit(17, "e.y", NULL, "clamped");
    fk_log_emit(-4, "e.z", NULL, "clamped");
    out = capture_end(&len);
    assert_non_null(strstr(out, "level=error comp=test worker=w1 event=e.y"));
    assert_non_null(strstr(out, "level=debug comp=test worker=w1 event=e.z"));
}

static int evaluated;
static const char *count_me(void) {
    evaluated++;
    return "expensive";
}

/* A disabled level costs one comparison: its arguments are not evaluated. */
static void t_lazy_arguments(void **state) {
    (void)state;
    size_t len;
    evaluated = 0;
    fk_log_init(NULL, NULL, FK_LOG_INFO);
    capture_begin();
    fk_debug("lazy", count_me(), "%s %s", count_me(), count_me());
    fk_debug(count_me(), NULL, "x");
    const char *out = capture_end(&len);
    assert_int_equal(evaluated, 0);
    assert_int_equal(len, 0);
    fk_log_init(NULL, NULL, FK_LOG_ERROR);
    capture_begin();
    fk_info("lazy", NULL, "%s", count_me());
    fk_warn("lazy", NULL, "%s", count_me());
    out = capture_end(&len);
    assert_int_equal(evaluated, 0);
    assert_int_equal(len, 0);
    /* enabled: each argument evaluated exactly once */
    fk_log_init(NULL, NULL, FK_LOG_DEBUG);
    capture_begin();
    fk_debug("lazy", count_me(), "%s", count_me());
    out = capture_end(&len);
    assert_int_equal(evaluated, 2);
    assert_non_null(strstr(out, "order=expensive msg=expensive"));
}

/* ---- escaping --------------------------------------------------------------- */

static void t_escaping(void **state) {
    (void)state;
    size_t len;
    capture_begin();
    fk_info("esc", "A\"1", "say \"hi\"\n\tback\\slash\r\x01\x1b[31m\x7f end");
    const char *out = capture_end(&len);
    one_line(out, len);
    assert_non_null(strstr(out, " order=\"A\\\"1\" "));
    assert_non_null(strstr(out, " msg=\"say \\\"hi\\\"\\n\\tback\\\\slash\\r\\x01\\x1b[31m\\x7f end\"\n"));
    /* '=' and spaces force quotes; a simple token may stay bare */
    capture_begin();
    fk_info("esc", "a=b", "k=v");
    out = capture_end(&len);
    assert_non_null(strstr(out, " order=\"a=b\" msg=\"k=v\"\n"));
    /* empty values are quoted, never dropped */
    capture_begin();
    fk_info("", "", "%s", "");
    out = capture_end(&len);
    one_line(out, len);
    assert_non_null(strstr(out, " event=\"\" order=\"\" msg=\"\"\n"));
    /* NULL event */
    capture_begin();
    fk_log_emit(FK_LOG_ERROR, NULL, NULL, "x y");
    out = capture_end(&len);
    assert_non_null(strstr(out, " event=- msg=\"x y\"\n"));
    /* UTF-8 passes through */
    capture_begin();
    fk_info("utf8", NULL, "订单 已完成");
    out = capture_end(&len);
    assert_non_null(strstr(out, " msg=\"订单 已完成\"\n"));
    /* worker ids and components with odd characters */
    fk_log_init("comp", "w 1\n\"x\"", FK_LOG_INFO);
    capture_begin();
    fk_info("e", NULL, "m n");
    out = capture_end(&len);
    one_line(out, len);
    assert_non_null(strstr(out, " worker=\"w 1\\n\\\"x\\\"\" event=e "));
}

/* Every line is well-formed logfmt: key=value pairs, quoted values closed. */
static void check_wellformed(const char *out, size_t len) {
    one_line(out, len);
    assert_true(len <= 4096);
    /* the msg value is the last one: it starts with a quote and ends with one */
    const char *m = strstr(out, " msg=");
    assert_non_null(m);
    if (m[5] == '"') {
        assert_int_equal(out[len - 2], '"');
        /* the closing quote is not escaped: an even number of '\' before it */
        size_t bs = 0;
        for (const char *p = out + len - 3; p > m + 5 && *p == '\\'; p--) bs++;
        if (bs % 2) fail_msg("closing quote escaped: ...%s", out + len - 20);
    }
}

static void t_truncation(void **state) {
    (void)state;
    static char big[10240 + 1];
    size_t len;
    const char *out;

    /* a 10 KB message */
    memset(big, 'm', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    capture_begin();
    fk_info("big", "A1", "%s", big);
    out = capture_end(&len);
    check_wellformed(out, len);
    /* msg may be bare when it is one simple token (valid logfmt) */
    assert_non_null(strstr(out, "event=big order=A1 msg="));
    assert_true(strstr(out, "msg=mmmm") || strstr(out, "msg=\"mmmm"));

    /* 10 KB of characters that each escape to two or four bytes */
    const char fill[] = {'"', '\\', '\n', '\x01'};
    for (size_t f = 0; f < sizeof(fill); f++) {
        memset(big, fill[f], sizeof(big) - 1);
        capture_begin();
        fk_error("big", "A1", "%s", big);
        out = capture_end(&len);
        check_wellformed(out, len);
    }
    /* mixed, so escapes straddle the cut at every offset */
    for (int shift = 0; shift < 8; shift++) {
        for (size_t i = 0; i < sizeof(big) - 1; i++) big[i] = (i + (size_t)shift) % 3 ? 'a' : '\x02';
        capture_begin();
        fk_error("big", NULL, "%s", big);
        out = capture_end(&len);
        check_wellformed(out, len);
    }
}

/* Oversized fields other than msg (an order id or event from garbage input)
 * must not overflow the line either, and the line still ends properly. */
static void t_long_fields(void **state) {
    (void)state;
    static char big[10240 + 1];
    size_t len;
    const char *out;
    const char fill[] = {'o', '"', '\x01'};
    for (size_t f = 0; f < sizeof(fill); f++) {
        memset(big, fill[f], sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        capture_begin();
        fk_error("long.order", big, "message here");
        out = capture_end(&len);
        check_wellformed(out, len);
        assert_non_null(strstr(out, " msg="));

        capture_begin();
        fk_error(big, "A1", "message here");
        out = capture_end(&len);
        check_wellformed(out, len);

        capture_begin();
        fk_error(big, big, "%s", big);
        out = capture_end(&len);
        check_wellformed(out, len);
    }
    /* the longest worker id and component the module keeps */
    memset(big, '"', 300);
    big[300] = '\0';
    fk_log_init("comp", big, FK_LOG_INFO);
    capture_begin();
    fk_error(big, big, "%s", big);
    out = capture_end(&len);
    check_wellformed(out, len);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(t_parse_level, reset),
        cmocka_unit_test_setup(t_shape, reset),
        cmocka_unit_test_setup(t_no_order, reset),
        cmocka_unit_test_setup(t_levels, reset),
        cmocka_unit_test_setup(t_lazy_arguments, reset),
        cmocka_unit_test_setup(t_escaping, reset),
        cmocka_unit_test_setup(t_truncation, reset),
        cmocka_unit_test_setup(t_long_fields, reset),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
