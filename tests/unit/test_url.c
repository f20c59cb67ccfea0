/* test_url.c -- unit tests of common/url.c: fk_redis_url_parse on every
 * good form of redis://[[user]:password@]host[:port][/db] (IPv6 literals,
 * percent escapes) and on garbage (no scheme, empty or oversized parts, bad
 * ports and databases, bad escapes, NUL escapes, white space and control
 * characters); fk_http_url_check on good and bad shapes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "url.h"

static fk_redis_target g_t;
static char g_err[256];

static int parse(const char *url) {
    memset(&g_t, 0x5a, sizeof(g_t));
    strcpy(g_err, "(untouched)");
    return fk_redis_url_parse(url, &g_t, g_err, sizeof(g_err));
}

static void good(const char *url, const char *host, int port, const char *user,
                 const char *pass, int db, int line) {
    int rc = parse(url);
    if (rc != 0) fail_msg("line %d: '%s' refused: %s", line, url, g_err);
    if (strcmp(g_t.host, host) != 0)
        fail_msg("line %d: '%s' host '%s', want '%s'", line, url, g_t.host, host);
    if (g_t.port != port) fail_msg("line %d: '%s' port %d, want %d", line, url, g_t.port, port);
    if (strcmp(g_t.user, user) != 0)
        fail_msg("line %d: '%s' user '%s', want '%s'", line, url, g_t.user, user);
    if (strcmp(g_t.password, pass) != 0)
        fail_msg("line %d: '%s' password '%s', want '%s'", line, url, g_t.password, pass);
    if (g_t.db != db) fail_msg("line %d: '%s' db %d, want %d", line, url, g_t.db, db);
}
#define GOOD(url, host, port, user, pass, db) good(url, host, port, user, pass, db, __LINE__)

static void bad(const char *url, const char *needle, int line) {
    int rc = parse(url);
    if (rc != FK_EINVAL)
        fail_msg("line %d: '%.80s' expected FK_EINVAL, got %d (host '%.40s' port %d db %d)",
                 line, url ? url : "(null)", rc, g_t.host, g_t.port, g_t.db);
    if (!g_err[0] || strchr(g_err, '\n') || strcmp(g_err, "(untouched)") == 0)
        fail_msg("line %d: bad error text '%s'", line, g_err);
    if (needle && !strstr(g_err, needle))
        fail_msg("line %d: '%.80s': error '%s' does not mention '%s'", line, url, g_err, needle);
}
#define BAD(url, needle) bad(url, needle, __LINE__)

/* ---- fk_redis_url_parse: good forms -------------------------------------- */

static void t_host_forms(void **state) {
    (void)state;
    GOOD("redis://localhost", "localhost", 6379, "", "", 0);
    GOOD("redis://127.0.0.1:6380", "127.0.0.1", 6380, "", "", 0);
    GOOD("redis://redis.example.com:1", "redis.example.com", 1, "", "", 0);
    GOOD("redis://h:65535", "h", 65535, "", "", 0);
    GOOD("redis://h/", "h", 6379, "", "", 0);
    GOOD("redis://h/0", "h", 6379, "", "", 0);
    GOOD("redis://h/15", "h", 6379, "", "", 15);
    GOOD("redis://h:7000/3", "h", 7000, "", "", 3);
    GOOD("redis://h:007", "h", 7, "", "", 0);
}

static void t_ipv6(void **state) {
    (void)state;
    GOOD("redis://[::1]:6380", "::1", 6380, "", "", 0);
    GOOD("redis://[::1]", "::1", 6379, "", "", 0);
    GOOD("redis://[fe80::1%25eth0]:1/2", "fe80::1%25eth0", 1, "", "", 2);
    GOOD("redis://u:p@[2001:db8::7]:6390/4", "2001:db8::7", 6390, "u", "p", 4);
    BAD("redis://[::1", "ipv6");
    BAD("redis://[::1]x", NULL);
    BAD("redis://[::1]:", "port");
    BAD("redis://[]:6379", "host");
    BAD("redis://::1", "host"); /* v6 without brackets */
}

static void t_credentials(void **state) {
    (void)state;
    GOOD("redis://user:pass@h", "h", 6379, "user", "pass", 0);
    GOOD("redis://:pass@h:1/2", "h", 1, "", "pass", 2);
    GOOD("redis://pass@h", "h", 6379, "", "pass", 0); /* no colon: a password */
    GOOD("redis://user:@h", "h", 6379, "user", "", 0);
    GOOD("redis://:@h", "h", 6379, "", "", 0);
    /* the last '@' separates: an '@' in the password needs no escape */
    GOOD("redis://:p@ss@h", "h", 6379, "", "p@ss", 0);
    /* ':' in the password after the first colon */
    GOOD("redis://u:a:b@h", "h", 6379, "u", "a:b", 0);
}

static void t_percent(void **state) {
    (void)state;
    GOOD("redis://us%65r:p%40ss%3A%2F@h", "h", 6379, "user", "p@ss:/", 0);
    GOOD("redis://:%7e%7E@h", "h", 6379, "", "~~", 0);
    GOOD("redis://%3a:%25@h", "h", 6379, ":", "%", 0);
    GOOD("redis://:%C3%A9@h", "h", 6379, "", "\xc3\xa9", 0);
    BAD("redis://:%G1@h", "password");
    BAD("redis://:%4@h", "password");
    BAD("redis://:abc%@h", "password");
    BAD("redis://:%@h", "password");
    BAD("redis://:%00@h", "password");     /* an embedded NUL would cut the password */
    BAD("redis://u%00:pw@h", "user");
    BAD("redis://:a%0@h", "password");
    BAD("redis://:%%41@h", "password");
}

/* ---- fk_redis_url_parse: garbage ------------------------------------------ */

static void t_scheme(void **state) {
    (void)state;
    BAD(NULL, "redis://");
    BAD("", "redis://");
    BAD("localhost:6379", "redis://");
    BAD("http://h:6379", "redis://");
    BAD("rediss://h", "redis://");
    BAD("REDIS://h", "redis://");
    BAD("redis:/h", "redis://");
    BAD(" redis://h", "redis://");
}

static void t_empty_host(void **state) {
    (void)state;
    BAD("redis://", "host");
    BAD("redis://:6379", "host");
    BAD("redis:///0", "host");
    BAD("redis://user:pw@", "host");
    BAD("redis://user:pw@:6379", "host");
    /* empty credentials are no credentials */
    GOOD("redis://@h", "h", 6379, "", "", 0);
}

static void t_ports(void **state) {
    (void)state;
    BAD("redis://h:0", "port");
    BAD("redis://h:65536", "port");
    BAD("redis://h:99999999999999999999", "port");
    BAD("redis://h:abc", "port");
    BAD("redis://h:", "port");
    BAD("redis://h:-1", "port");
    BAD("redis://h:+1", "port");
    BAD("redis://h:12ab", "port");
    BAD("redis://h:1:2", "port");
    BAD("redis://h:6379x/0", "port");
}

static void t_db(void **state) {
    (void)state;
    BAD("redis://h/-1", "database");
    BAD("redis://h/abc", "database");
    BAD("redis://h/1x", "database");
    BAD("redis://h/+1", "database");
    BAD("redis://h/1/2", "database");
    BAD("redis://h/99999999999999999999", "database");
    BAD("redis://h/1@x", "database");
}

static void t_spaces_and_controls(void **state) {
    (void)state;
    BAD("redis://h ost", "spaces");
    BAD("redis://host ", "spaces");
    BAD("redis://host:63 79", "spaces");
    BAD("redis://ho\tst", "control");
    BAD("redis://host\n", "control");
    BAD("redis://:pa ss@h", "spaces");
    BAD("redis://h\x7f", NULL);
    BAD("redis://h\x01:1", NULL);
    BAD("redis://h\xc3\xa9", NULL); /* non-ASCII host */
}

static void t_lengths(void **state) {
    (void)state;
    static char url[8192], host[4096];
    /* host: 255 fits the buffer, 256 does not */
    memset(host, 'h', 255);
    host[255] = '\0';
    snprintf(url, sizeof(url), "redis://%s:1", host);
    GOOD(url, host, 1, "", "", 0);
    memset(host, 'h', 256);
    host[256] = '\0';
    snprintf(url, sizeof(url), "redis://%s:1", host);
    BAD(url, "host");
    memset(host, 'h', 4000);
    host[4000] = '\0';
    snprintf(url, sizeof(url), "redis://%s", host);
    BAD(url, "host");
    snprintf(url, sizeof(url), "redis://[%s]", host);
    BAD(url, "host");
    /* user (127 max) and password (255 max), also after decoding escapes */
    memset(host, 'u', 127);
    host[127] = '\0';
    snprintf(url, sizeof(url), "redis://%s:pw@h", host);
    GOOD(url, "h", 6379, host, "pw", 0);
    memset(host, 'u', 128);
    host[128] = '\0';
    snprintf(url, sizeof(url), "redis://%s:pw@h", host);
    BAD(url, "user");
    memset(host, 'p', 255);
    host[255] = '\0';
    snprintf(url, sizeof(url), "redis://:%s@h", host);
    GOOD(url, "h", 6379, "", host, 0);
    memset(host, 'p', 256);
    host[256] = '\0';
    snprintf(url, sizeof(url), "redis://:%s@h", host);
    BAD(url, "password");
    /* 256 escapes decode to 256 bytes: one too many */
    char *p = url + sprintf(url, "redis://:");
    for (int i = 0; i < 256; i++) p += sprintf(p, "%%41");
    sprintf(p, "@h");
    BAD(url, "password");
}

/* The error buffer may be tiny; it is truncated, never overrun. */
static void t_small_err(void **state) {
    (void)state;
    char err[16];
    fk_redis_target t;
    memset(err, 'Z', sizeof(err));
    assert_int_equal(fk_redis_url_parse("nope", &t, err, 6), FK_EINVAL);
    assert_int_equal(strlen(err), 5);
    for (size_t i = 6; i < sizeof(err); i++) assert_int_equal(err[i], 'Z');
    memset(err, 'Z', sizeof(err));
    assert_int_equal(fk_http_url_check("nope", err, 6), FK_EINVAL);
    assert_int_equal(strlen(err), 5);
    for (size_t i = 6; i < sizeof(err); i++) assert_int_equal(err[i], 'Z');
}

/* ---- fk_http_url_check ----------------------------------------------------- */

static void http_good(const char *url, int line) {
    char err[256] = "";
    int rc = fk_http_url_check(url, err, sizeof(err));
    if (rc != 0) fail_msg("line %d: '%s' refused: %s", line, url, err);
}

static void http_bad(const char *url, const char *needle, int line) {
    char err[256] = "";
    int rc = fk_http_url_check(url, err, sizeof(err));
    if (rc != FK_EINVAL) fail_msg("line %d: '%.80s' expected FK_EINVAL, got %d", line, url, rc);
    if (!err[0] || strchr(err, '\n')) fail_msg("line %d: bad error text '%s'", line, err);
    if (needle && !strstr(err, needle))
        fail_msg("line %d: error '%s' does not mention '%s'", line, err, needle);
}
#define HGOOD(url) http_good(url, __LINE__)
#define HBAD(url, needle) http_bad(url, needle, __LINE__)

static void t_http(void **state) {
    (void)state;
    HGOOD("http://gw");
    HGOOD("http://127.0.0.1:8080");
    HGOOD("https://pay.example.com/api/v1?x=1");
    HGOOD("http://[::1]:9000/");
    HGOOD("http://user:pw@gw/");

    HBAD("", "http");
    HBAD("gw:8080", "http");
    HBAD("ftp://gw", "http");
    HBAD("redis://gw", "http");
    HBAD("http:/gw", "http");
    HBAD("http://", "host");
    HBAD("https://", "host");
    HBAD("http:///path", "host");
    HBAD("http://:8080/", "host");
    HBAD("http://g w", "spaces");
    HBAD("http://gw/a b", "spaces");
    HBAD("http://gw/\r\nX-Injected: 1", "control");
    HBAD("http://gw\t", "control");
    HBAD("http://gw/\x7f", NULL);

    static char url[4096];
    int n = snprintf(url, sizeof(url), "http://gw/");
    memset(url + n, 'a', 400 - (size_t)n);
    url[400] = '\0';
    HGOOD(url);
    url[400] = 'a';
    url[401] = '\0';
    HBAD(url, "400");
    memset(url + n, 'a', 3000);
    url[3000] = '\0';
    HBAD(url, "400");

    /* what libcurl's own parser refuses, or could never connect to */
    HGOOD("http://gw:1/");
    HGOOD("http://gw:65535/");
    HGOOD("http://pay-gw.internal.example:8443/v2/");
    HBAD("http://127.0.0.1:99999", "Port");
    HBAD("http://127.0.0.1:65536/", "Port");
    HBAD("http://127.0.0.1:abc", "Port");
    HBAD("http://gw:-1/", "Port");
    HBAD("http://gw:0/", "port");
    HBAD("http://[::1", "IPv6");
    HBAD("http://[::1]x/", NULL);
    HBAD("http://[zz]/", NULL);
    HBAD("http://%zz", "host");
    HBAD("http://g_w/", "host");
    HBAD("http://gw\xc3\xa9/", NULL);
}

/* The gateway's base URL: "/charges" is appended, so a query or fragment
 * would end up before it ("?x=1/charges"). Everything else as above. */
static void t_gateway_base(void **state) {
    (void)state;
    const char *good[] = {"http://gw", "https://pay.example.com/api/v1", "http://[::1]:9000/",
                          "http://gw/base/"};
    const char *bad[] = {"https://pay.example.com/api/v1?x=1", "http://gw/?", "http://gw/#f",
                         "http://gw/a?b#c", "http://gw:99999/"};
    char err[256];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (fk_gateway_url_check(good[i], err, sizeof(err)) != 0)
            fail_msg("'%s' refused: %s", good[i], err);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (fk_gateway_url_check(bad[i], err, sizeof(err)) != FK_EINVAL)
            fail_msg("'%s' accepted", bad[i]);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(fk_gateway_url_check("http://gw/?x=1", err, sizeof(err)), FK_EINVAL);
    assert_non_null(strstr(err, "/charges"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_host_forms),
        cmocka_unit_test(t_ipv6),
        cmocka_unit_test(t_credentials),
        cmocka_unit_test(t_percent),
        cmocka_unit_test(t_scheme),
        cmocka_unit_test(t_empty_host),
        cmocka_unit_test(t_ports),
        cmocka_unit_test(t_db),
        cmocka_unit_test(t_spaces_and_controls),
        cmocka_unit_test(t_lengths),
        cmocka_unit_test(t_small_err),
        cmocka_unit_test(t_http),
        cmocka_unit_test(t_gateway_base),
    };
    return cmocka_run_group_tests_name("url", tests, NULL, NULL);
}
