/* test_config.c -- unit tests of the option table (common/config.c):
 * defaults, FAKA_* environment fallbacks, flag-over-env precedence, both
 * flag spellings, every integer row's bounds and garbage, unknown flags,
 * missing values, --help, positionals (fakactl style or rejected), the
 * cross-option rules, the worker-id default, and strings too long for their
 * buffers. Every error must be one line that names the option. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "err.h"
#include "log.h"

extern char **environ;

/* ---- helpers ------------------------------------------------------------- */

static fk_config g_cfg;
static char g_err[512];
static int g_first;

#define ALL (FK_BIN_WORKER | FK_BIN_REAPER | FK_BIN_CTL)

/* Forget every FAKA_* variable so the tests see only what they set. */
static int clear_env(void **state) {
    (void)state;
    for (;;) {
        char name[256] = "";
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "FAKA_", 5) == 0) {
                const char *eq = strchr(*e, '=');
                size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
                if (n >= sizeof(name)) n = sizeof(name) - 1;
                memcpy(name, *e, n);
                name[n] = '\0';
                break;
            }
        }
        if (!name[0]) break;
        unsetenv(name);
    }
    return 0;
}

/* fk_config_load with argv = {"faka-test", args..., NULL}; first may be
 * NULL. The config is poisoned first so a field left unset shows. */
static int loadv(int bins, int *first, const char *const *args) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"faka-test";
    for (int i = 0; args && args[i]; i++) argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    memset(&g_cfg, 0x5a, sizeof(g_cfg));
    strcpy(g_err, "(untouched)");
    g_first = -1;
    return fk_config_load(&g_cfg, bins, "usage: faka-test [options]", argc, argv, first, g_err,
                          sizeof(g_err));
}

#define LOAD(bins, ...) loadv((bins), NULL, (const char *const[]){__VA_ARGS__, NULL})
#define LOAD0(bins) loadv((bins), NULL, NULL)

/* The load failed with FK_EINVAL and a one-line error that mentions needle. */
static void check_err(int rc, const char *needle, int line) {
    if (rc != FK_EINVAL) fail_msg("line %d: expected FK_EINVAL, got %d (err \"%s\")", line, rc, g_err);
    if (!g_err[0] || strchr(g_err, '\n')) fail_msg("line %d: bad error text \"%s\"", line, g_err);
    if (!strstr(g_err, needle))
        fail_msg("line %d: error \"%s\" does not mention \"%s\"", line, g_err, needle);
}
#define BAD(needle, rc) check_err((rc), (needle), __LINE__)

static void check_ok(int rc, int line) {
    if (rc != 0) fail_msg("line %d: expected success, got %d: %s", line, rc, g_err);
}
#define OK(rc) check_ok((rc), __LINE__)

/* ---- defaults ------------------------------------------------------------ */

static void t_defaults(void **state) {
    (void)state;
    OK(LOAD0(FK_BIN_WORKER));
    assert_string_equal(g_cfg.redis_url, "redis://127.0.0.1:6379");
    assert_string_equal(g_cfg.prefix, "faka");
    assert_string_equal(g_cfg.gateway_url, "none");
    assert_string_equal(g_cfg.webhook_url, "");
    assert_string_equal(g_cfg.webhook_secret, "");
    assert_int_equal(g_cfg.log_level, FK_LOG_INFO);
    assert_int_equal(g_cfg.concurrency, 256);
    assert_int_equal(g_cfg.batch, 64);
    assert_int_equal(g_cfg.block_ms, 1000);
    assert_int_equal(g_cfg.lease_ms, 10000);
    assert_int_equal(g_cfg.promote_ms, 20);
    assert_int_equal(g_cfg.promote_batch, 256);
    assert_int_equal(g_cfg.retry_base_ms, 1000);
    assert_int_equal(g_cfg.retry_cap_ms, 60000);
    assert_int_equal(g_cfg.retry_max, 8);
    assert_int_equal(g_cfg.poll_max, 60);
    assert_int_equal(g_cfg.idem_ttl_s, 86400);
    assert_int_equal(g_cfg.order_ttl_s, 1800);
    assert_int_equal(g_cfg.payment_ttl_s, 900);
    assert_int_equal(g_cfg.retention_s, 604800);
    assert_int_equal(g_cfg.dead_max, 100000);
    assert_int_equal(g_cfg.max_deliveries, 10);
    assert_int_equal(g_cfg.http_timeout_ms, 5000);
    assert_int_equal(g_cfg.http_connect_timeout_ms, 2000);
    assert_int_equal(g_cfg.http_max, 48);
    assert_int_equal(g_cfg.webhook_max, 20);
    assert_int_equal(g_cfg.webhook_retry_cap_ms, 3600000);
    assert_int_equal(g_cfg.redis_timeout_ms, 3000);
    /* DESIGN.md's backoff defaults */
    assert_int_equal(g_cfg.retry_base_ms, 1000);
    assert_int_equal(g_cfg.retry_cap_ms, 60000);
}

/* Rows a binary does not take still get their defaults. */
static void t_defaults_other_bins(void **state) {
    (void)state;
    OK(LOAD0(FK_BIN_CTL));
    assert_int_equal(g_cfg.concurrency, 256);
    assert_int_equal(g_cfg.lease_ms, 10000);
    assert_string_equal(g_cfg.gateway_url, "none");
}

/* ---- environment and precedence ----------------------------------------- */

static void t_env(void **state) {
    (void)state;
    setenv("FAKA_BATCH", "7", 1);
    setenv("FAKA_PREFIX", "shop1", 1);
    setenv("FAKA_REDIS_URL", "redis://db.example:6390/2", 1);
    setenv("FAKA_LOG_LEVEL", "warn", 1);
    setenv("FAKA_GATEWAY_URL", "http://gw.example:8080", 1);
    setenv("FAKA_WEBHOOK_URL", "https://shop.example/hook", 1);
    setenv("FAKA_WEBHOOK_SECRET", "k3y", 1);
    setenv("FAKA_WORKER_ID", "w-7", 1);
    OK(LOAD0(FK_BIN_WORKER));
    assert_int_equal(g_cfg.batch, 7);
    assert_string_equal(g_cfg.prefix, "shop1");
    assert_string_equal(g_cfg.redis_url, "redis://db.example:6390/2");
    assert_int_equal(g_cfg.log_level, FK_LOG_WARN);
    assert_string_equal(g_cfg.gateway_url, "http://gw.example:8080");
    assert_string_equal(g_cfg.webhook_url, "https://shop.example/hook");
    assert_string_equal(g_cfg.webhook_secret, "k3y");
    assert_string_equal(g_cfg.worker_id, "w-7");
}

static void t_env_bad_names_variable(void **state) {
    (void)state;
    setenv("FAKA_BATCH", "lots", 1);
    int rc = LOAD0(FK_BIN_WORKER);
    BAD("FAKA_BATCH", rc);
    BAD("batch", rc);
    BAD("lots", rc);
}

/* A row the binary does not take ignores its variable, even garbage. */
static void t_env_other_bin_ignored(void **state) {
    (void)state;
    setenv("FAKA_CONCURRENCY", "garbage", 1);
    setenv("FAKA_BATCH", "3", 1);
    OK(LOAD0(FK_BIN_CTL));
    assert_int_equal(g_cfg.concurrency, 256);
    assert_int_equal(g_cfg.batch, 64);
}

static void t_flag_beats_env(void **state) {
    (void)state;
    setenv("FAKA_BATCH", "7", 1);
    setenv("FAKA_PREFIX", "fromenv", 1);
    OK(LOAD(FK_BIN_WORKER, "--batch", "9", "--prefix=fromflag"));
    assert_int_equal(g_cfg.batch, 9);
    assert_string_equal(g_cfg.prefix, "fromflag");
    /* and env beats default */
    OK(LOAD(FK_BIN_WORKER, "--batch=11"));
    assert_string_equal(g_cfg.prefix, "fromenv");
}

/* An empty variable is a value, not "unset": for an int row it is an error. */
static void t_env_empty(void **state) {
    (void)state;
    setenv("FAKA_BATCH", "", 1);
    BAD("batch", LOAD0(FK_BIN_WORKER));
    unsetenv("FAKA_BATCH");
    setenv("FAKA_WEBHOOK_URL", "", 1);
    OK(LOAD0(FK_BIN_WORKER));
    assert_string_equal(g_cfg.webhook_url, "");
}

/* ---- flag syntax ---------------------------------------------------------- */

static void t_flag_forms(void **state) {
    (void)state;
    OK(LOAD(FK_BIN_WORKER, "--batch=5", "--concurrency", "17", "--prefix", "p2",
            "--log-level=debug"));
    assert_int_equal(g_cfg.batch, 5);
    assert_int_equal(g_cfg.concurrency, 17);
    assert_string_equal(g_cfg.prefix, "p2");
    assert_int_equal(g_cfg.log_level, FK_LOG_DEBUG);
    /* the last occurrence wins */
    OK(LOAD(FK_BIN_WORKER, "--batch=5", "--batch=6"));
    assert_int_equal(g_cfg.batch, 6);
    /* --name= sets an empty string */
    OK(LOAD(FK_BIN_WORKER, "--webhook-url="));
    assert_string_equal(g_cfg.webhook_url, "");
    /* a value may itself start with "--" in the two-word form */
    OK(LOAD(FK_BIN_WORKER, "--webhook-secret", "--not-a-flag"));
    assert_string_equal(g_cfg.webhook_secret, "--not-a-flag");
    /* '=' inside the value */
    OK(LOAD(FK_BIN_WORKER, "--webhook-secret=a=b=c"));
    assert_string_equal(g_cfg.webhook_secret, "a=b=c");
}

static void t_log_level(void **state) {
    (void)state;
    OK(LOAD(FK_BIN_WORKER, "--log-level", "error"));
    assert_int_equal(g_cfg.log_level, FK_LOG_ERROR);
    OK(LOAD(FK_BIN_WORKER, "--log-level", "WARN"));
    assert_int_equal(g_cfg.log_level, FK_LOG_WARN);
    BAD("log-level", LOAD(FK_BIN_WORKER, "--log-level", "verbose"));
    BAD("log-level", LOAD(FK_BIN_WORKER, "--log-level="));
    BAD("log-level", LOAD(FK_BIN_WORKER, "--log-level", "3"));
}

static void t_unknown_flag(void **state) {
    (void)state;
    BAD("--no-such-thing", LOAD(FK_BIN_WORKER, "--no-such-thing"));
    BAD("--no-such-thing", LOAD(FK_BIN_WORKER, "--no-such-thing=3"));
    /* prefixes and extensions of a real name are not that name */
    BAD("--batc", LOAD(FK_BIN_WORKER, "--batc=3"));
    BAD("--batchx", LOAD(FK_BIN_WORKER, "--batchx=3"));
    BAD("unknown", LOAD(FK_BIN_WORKER, "--=3"));
    BAD("--BATCH", LOAD(FK_BIN_WORKER, "--BATCH=3"));
    /* a row of another binary is unknown here */
    BAD("--concurrency", LOAD(FK_BIN_CTL, "--concurrency=3"));
    BAD("--worker-id", LOAD(FK_BIN_CTL, "--worker-id", "x"));
    /* single-dash words are positionals, and rejected without first_arg */
    BAD("-x", LOAD(FK_BIN_WORKER, "-x"));
    /* control characters never break the one-line error */
    BAD("--bad", LOAD(FK_BIN_WORKER, "--bad\nname=1"));
    BAD("--esc", LOAD(FK_BIN_WORKER, "--esc\x1b[2J"));
    BAD("stray", LOAD(FK_BIN_WORKER, "stray\r\nword"));
    BAD("--batch", LOAD(FK_BIN_WORKER, "--batch=1\n2"));
}

static void t_missing_value(void **state) {
    (void)state;
    BAD("batch", LOAD(FK_BIN_WORKER, "--batch"));
    BAD("redis-url", LOAD(FK_BIN_WORKER, "--batch", "3", "--redis-url"));
    BAD("prefix", LOAD(FK_BIN_WORKER, "--prefix="));
    BAD("batch", LOAD(FK_BIN_WORKER, "--batch="));
}

/* --help (and -h) print the usage to stdout and return 1. */
static int help_into(const char *flag, int bins, char *out, size_t outlen) {
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    dup2(fileno(tmp), STDOUT_FILENO);
    int rc = LOAD(bins, "--prefix=x", flag, "--no-such-flag");
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, outlen - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    return rc;
}

static void t_help(void **state) {
    (void)state;
    static char out[32768];
    assert_int_equal(help_into("--help", FK_BIN_WORKER, out, sizeof(out)), 1);
    assert_true(strncmp(out, "usage: faka-test [options]", 26) == 0); /* synopsis first */
    assert_non_null(strstr(out, "--redis-url"));
    assert_non_null(strstr(out, "FAKA_REDIS_URL"));
    assert_non_null(strstr(out, "--concurrency"));
    assert_non_null(strstr(out, "--help"));
    assert_non_null(strstr(out, "60000")); /* defaults are shown */
    /* fakactl's help lists only its rows */
    assert_int_equal(help_into("-h", FK_BIN_CTL, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "--redis-url"));
    assert_null(strstr(out, "--concurrency"));
    assert_null(strstr(out, "--worker-id"));
}

/* ---- positionals ---------------------------------------------------------- */

static void t_positionals(void **state) {
    (void)state;
    int first = -1;
    const char *a1[] = {"--prefix=x", "status", "A1001", NULL};
    OK(loadv(FK_BIN_CTL, &first, a1));
    assert_int_equal(first, 2);
    assert_string_equal(g_cfg.prefix, "x");

    const char *a2[] = {"--prefix", "x", NULL};
    OK(loadv(FK_BIN_CTL, &first, a2));
    assert_int_equal(first, 3); /* argc when there is none */

    OK(loadv(FK_BIN_CTL, &first, NULL));
    assert_int_equal(first, 1);

    /* "--" ends the flags; what follows is positional even if it looks like one */
    const char *a3[] = {"--prefix=y", "--", "--batch=3", NULL};
    OK(loadv(FK_BIN_CTL, &first, a3));
    assert_int_equal(first, 3);
    assert_string_equal(g_cfg.prefix, "y");

    /* flags after a positional are not parsed: they stay for the caller */
    const char *a4[] = {"status", "--prefix=z", NULL};
    OK(loadv(FK_BIN_CTL, &first, a4));
    assert_int_equal(first, 1);
    assert_string_equal(g_cfg.prefix, "faka");
}

static void t_positional_rejected(void **state) {
    (void)state;
    BAD("status", LOAD(FK_BIN_WORKER, "status"));
    BAD("stray", LOAD(FK_BIN_WORKER, "--batch=3", "stray"));
    BAD("x", LOAD(FK_BIN_WORKER, "--", "x"));
    OK(LOAD(FK_BIN_WORKER, "--batch=3", "--"));
}

/* ---- integer rows --------------------------------------------------------- */

typedef struct int_row {
    const char *name;
    size_t off;
    long long min, max;
    const char *companions[4]; /* flags that keep the cross checks quiet */
} int_row;

#define F(f) offsetof(fk_config, f)
static const int_row int_rows[] = {
    {"concurrency", F(concurrency), 1, 10000, {NULL}},
    {"batch", F(batch), 1, 1000, {NULL}},
    {"block-ms", F(block_ms), 10, 10000, {NULL}},
    {"lease-ms", F(lease_ms), 500, 3600000, {NULL}},
    {"promote-ms", F(promote_ms), 5, 10000, {NULL}},
    {"promote-batch", F(promote_batch), 1, 10000, {NULL}},
    {"retry-base-ms", F(retry_base_ms), 1, 3600000, {"--retry-cap-ms=86400000", NULL}},
    {"retry-cap-ms", F(retry_cap_ms), 1, 86400000, {"--retry-base-ms=1", NULL}},
    {"retry-max", F(retry_max), 1, 1000, {NULL}},
    {"poll-max", F(poll_max), 1, 100000, {NULL}},
    /* retention must be 0 or >= the idempotency TTL: pin the other one */
    {"idem-ttl-s", F(idem_ttl_s), 1, 31536000, {"--retention-s=0", NULL}},
    {"order-ttl-s", F(order_ttl_s), 1, 31536000, {NULL}},
    {"payment-ttl-s", F(payment_ttl_s), 1, 31536000, {NULL}},
    {"retention-s", F(retention_s), 0, 315360000, {"--idem-ttl-s=1", NULL}},
    {"dead-max", F(dead_max), 100, 100000000, {NULL}},
    {"max-deliveries", F(max_deliveries), 1, 1000, {NULL}},
    {"http-timeout-ms", F(http_timeout_ms), 100, 600000, {"--http-connect-timeout-ms=50", NULL}},
    {"http-connect-timeout-ms", F(http_connect_timeout_ms), 50, 600000,
     {"--http-timeout-ms=600000", NULL}},
    {"http-max", F(http_max), 1, 10000, {NULL}},
    {"webhook-max", F(webhook_max), 1, 1000, {NULL}},
    {"webhook-retry-cap-ms", F(webhook_retry_cap_ms), 1, 86400000, {NULL}},
    {"redis-timeout-ms", F(redis_timeout_ms), 100, 600000, {NULL}},
    /* faka-reaper's rows */
    {"reap-ms", F(reap_ms), 50, 600000, {NULL}},
    {"reap-batch", F(reap_batch), 1, 10000, {NULL}},
    {"recheck-ms", F(recheck_ms), 0, 86400000, {NULL}},
    {"worker-ttl-ms", F(worker_ttl_ms), 3000, 86400000, {NULL}},
    {"stream-trim", F(stream_trim), 0, 1, {NULL}},
};
#undef F
#define NROWS (sizeof(int_rows) / sizeof(int_rows[0]))

/* Load `--name=value` (or `--name value`) plus the row's companions. */
static int load_row(const int_row *r, const char *value, int two_words) {
    char flag[128];
    const char *args[10];
    int n = 0;
    if (two_words) {
        snprintf(flag, sizeof(flag), "--%s", r->name);
        args[n++] = flag;
        args[n++] = value;
    } else {
        snprintf(flag, sizeof(flag), "--%s=%s", r->name, value);
        args[n++] = flag;
    }
    for (int i = 0; r->companions[i]; i++) args[n++] = r->companions[i];
    args[n] = NULL;
    return loadv(FK_BIN_WORKER | FK_BIN_REAPER, NULL, args);
}

static long long row_value(const int_row *r) {
    long long v;
    memcpy(&v, (const char *)&g_cfg + r->off, sizeof(v));
    return v;
}

static void row_ok(const int_row *r, long long v) {
    char val[32];
    snprintf(val, sizeof(val), "%lld", v);
    for (int two = 0; two < 2; two++) {
        int rc = load_row(r, val, two);
        if (rc != 0) fail_msg("--%s %s: expected success, got %d: %s", r->name, val, rc, g_err);
        if (row_value(r) != v) fail_msg("--%s %s: field holds %lld", r->name, val, row_value(r));
    }
}

static void row_bad(const int_row *r, const char *val) {
    for (int two = 0; two < 2; two++) {
        int rc = load_row(r, val, two);
        if (rc != FK_EINVAL)
            fail_msg("--%s '%s': expected FK_EINVAL, got %d", r->name, val, rc);
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s", r->name);
        if (!strstr(g_err, flag) || strchr(g_err, '\n'))
            fail_msg("--%s '%s': error \"%s\" does not name the option", r->name, val, g_err);
    }
}

static void t_int_bounds(void **state) {
    (void)state;
    for (size_t i = 0; i < NROWS; i++) {
        const int_row *r = &int_rows[i];
        char v[32];
        row_ok(r, r->min);
        row_ok(r, r->max);
        row_ok(r, (r->min + r->max) / 2);
        snprintf(v, sizeof(v), "%lld", r->min - 1);
        row_bad(r, v);
        snprintf(v, sizeof(v), "%lld", r->max + 1);
        row_bad(r, v);
        row_bad(r, "-1");
        row_bad(r, "abc");
        row_bad(r, "");
        row_bad(r, "1e3");
        row_bad(r, "12abc");
        row_bad(r, "5 ");
        row_bad(r, "0x10");
        row_bad(r, "1.0");
        row_bad(r, "99999999999999999999");
        row_bad(r, "-99999999999999999999");
        row_bad(r, "9223372036854775807");
        row_bad(r, "-9223372036854775808");
    }
}

/* Leading white space is garbage too: " 5" must not read as 5. */
static void t_int_leading_space(void **state) {
    (void)state;
    for (size_t i = 0; i < NROWS; i++) {
        char v[32];
        snprintf(v, sizeof(v), " %lld", int_rows[i].min);
        row_bad(&int_rows[i], v);
        snprintf(v, sizeof(v), "\t%lld", int_rows[i].min);
        row_bad(&int_rows[i], v);
        snprintf(v, sizeof(v), "\n%lld", int_rows[i].min);
        row_bad(&int_rows[i], v);
    }
}

/* Garbage from the environment is refused the same way, naming the variable. */
static void t_int_env_garbage(void **state) {
    (void)state;
    const char *bad[] = {"abc", "", "1e3", "99999999999999999999", "0", NULL};
    for (int i = 0; bad[i]; i++) {
        setenv("FAKA_CONCURRENCY", bad[i], 1);
        BAD("FAKA_CONCURRENCY", LOAD0(FK_BIN_WORKER));
        BAD("--concurrency", LOAD0(FK_BIN_WORKER));
    }
}

/* ---- string rows ----------------------------------------------------------- */

static void t_string_checks(void **state) {
    (void)state;
    BAD("redis-url", LOAD(FK_BIN_WORKER, "--redis-url=http://x"));
    BAD("redis-url", LOAD(FK_BIN_WORKER, "--redis-url=redis://h:0"));
    BAD("redis-url", LOAD(FK_BIN_WORKER, "--redis-url", ""));
    OK(LOAD(FK_BIN_WORKER, "--redis-url=redis://:pw@h:7000/3"));
    assert_string_equal(g_cfg.redis_url, "redis://:pw@h:7000/3");

    BAD("gateway", LOAD(FK_BIN_WORKER, "--gateway=ftp://x"));
    BAD("gateway", LOAD(FK_BIN_WORKER, "--gateway="));
    BAD("gateway", LOAD(FK_BIN_WORKER, "--gateway=NONE"));
    OK(LOAD(FK_BIN_WORKER, "--gateway=none"));
    OK(LOAD(FK_BIN_WORKER, "--gateway=https://pay.example/api"));
    BAD("gateway", LOAD(FK_BIN_WORKER, "--gateway=http://127.0.0.1:99999"));
    BAD("gateway", LOAD(FK_BIN_WORKER, "--gateway=https://pay.example/api?x=1"));
    OK(LOAD(FK_BIN_WORKER, "--webhook-url=https://shop.example/hook?token=1",
            "--webhook-secret=s3cret"));

    BAD("webhook-url", LOAD(FK_BIN_WORKER, "--webhook-url=shop.example", "--webhook-secret=s"));

    BAD("prefix", LOAD(FK_BIN_WORKER, "--prefix="));
    BAD("prefix", LOAD(FK_BIN_WORKER, "--prefix=a b"));
    BAD("prefix", LOAD(FK_BIN_WORKER, "--prefix=a/b"));
    BAD("prefix", LOAD(FK_BIN_WORKER, "--prefix=caf\xc3\xa9"));
    OK(LOAD(FK_BIN_WORKER, "--prefix={shop}.v1:x_y-z"));

    BAD("worker-id", LOAD(FK_BIN_WORKER, "--worker-id=a b"));
    BAD("worker-id", LOAD(FK_BIN_WORKER, "--worker-id={x}"));
    OK(LOAD(FK_BIN_WORKER, "--worker-id=w.1:a_b-c"));
    assert_string_equal(g_cfg.worker_id, "w.1:a_b-c");
}

static void t_string_lengths(void **state) {
    (void)state;
    static char big[4096], arg[4200];
    /* prefix: 64 fits, 65 does not */
    memset(big, 'p', 64);
    big[64] = '\0';
    snprintf(arg, sizeof(arg), "--prefix=%s", big);
    OK(LOAD(FK_BIN_WORKER, arg));
    assert_int_equal(strlen(g_cfg.prefix), 64);
    big[64] = 'p';
    big[65] = '\0';
    snprintf(arg, sizeof(arg), "--prefix=%s", big);
    BAD("prefix", LOAD(FK_BIN_WORKER, arg));

    /* worker-id: 64 of the allowed characters */
    memset(big, 'w', 65);
    big[65] = '\0';
    snprintf(arg, sizeof(arg), "--worker-id=%s", big);
    BAD("worker-id", LOAD(FK_BIN_WORKER, arg));
    memset(big, 'w', 200);
    big[200] = '\0';
    snprintf(arg, sizeof(arg), "--worker-id=%s", big);
    BAD("worker-id", LOAD(FK_BIN_WORKER, arg));

    /* redis-url: a 600-byte URL does not fit its 512-byte buffer */
    memset(big, 'h', 600);
    big[600] = '\0';
    snprintf(arg, sizeof(arg), "--redis-url=redis://%s", big);
    BAD("redis-url", LOAD(FK_BIN_WORKER, arg));
    memset(big, 'h', 4000);
    big[4000] = '\0';
    snprintf(arg, sizeof(arg), "--redis-url=redis://%s", big);
    BAD("redis-url", LOAD(FK_BIN_WORKER, arg));

    /* webhook-secret: 255 fits, 256 does not */
    memset(big, 's', 255);
    big[255] = '\0';
    snprintf(arg, sizeof(arg), "--webhook-secret=%s", big);
    OK(LOAD(FK_BIN_WORKER, arg));
    assert_int_equal(strlen(g_cfg.webhook_secret), 255);
    memset(big, 's', 256);
    big[256] = '\0';
    snprintf(arg, sizeof(arg), "--webhook-secret=%s", big);
    BAD("webhook-secret", LOAD(FK_BIN_WORKER, arg));

    /* gateway / webhook URLs: longer than the URL check allows, and than the buffer */
    memset(big, 'g', 3000);
    big[3000] = '\0';
    snprintf(arg, sizeof(arg), "--gateway=http://%s", big);
    BAD("gateway", LOAD(FK_BIN_WORKER, arg));
    snprintf(arg, sizeof(arg), "--webhook-url=http://%s", big);
    BAD("webhook-url", LOAD(FK_BIN_WORKER, arg, "--webhook-secret=s"));
    big[450] = '\0';
    snprintf(arg, sizeof(arg), "--gateway=http://%s", big);
    BAD("gateway", LOAD(FK_BIN_WORKER, arg));

    /* the same through the environment */
    memset(big, 'p', 100);
    big[100] = '\0';
    setenv("FAKA_PREFIX", big, 1);
    BAD("FAKA_PREFIX", LOAD0(FK_BIN_WORKER));
}

/* A tiny error buffer truncates, never overflows. */
static void t_small_err_buffer(void **state) {
    (void)state;
    char err[12];
    memset(err, 'Z', sizeof(err));
    char *argv[] = {(char *)"x", (char *)"--batch=abcdefghijklmnopqrstuvwxyz", NULL};
    fk_config cfg;
    int rc = fk_config_load(&cfg, FK_BIN_WORKER, "x", 2, argv, NULL, err, 8);
    assert_int_equal(rc, FK_EINVAL);
    assert_int_equal(strlen(err), 7);
    for (size_t i = 8; i < sizeof(err); i++) assert_int_equal(err[i], 'Z');
}

/* ---- cross-option rules ---------------------------------------------------- */

static void t_cross_retry(void **state) {
    (void)state;
    BAD("retry-cap-ms", LOAD(FK_BIN_WORKER, "--retry-base-ms=5000", "--retry-cap-ms=4999"));
    OK(LOAD(FK_BIN_WORKER, "--retry-base-ms=5000", "--retry-cap-ms=5000"));
    BAD("retry-cap-ms", LOAD(FK_BIN_WORKER, "--retry-cap-ms=999")); /* default base 1000 */
    setenv("FAKA_RETRY_BASE_MS", "70000", 1);
    BAD("retry-cap-ms", LOAD0(FK_BIN_WORKER)); /* default cap 60000 */
}

static void t_cross_http_lease(void **state) {
    (void)state;
    const char *gw = "--gateway=http://127.0.0.1:9";
    BAD("http-timeout-ms", LOAD(FK_BIN_WORKER, gw, "--http-timeout-ms=6000", "--lease-ms=10000"));
    BAD("lease-ms", LOAD(FK_BIN_WORKER, gw, "--http-timeout-ms=5001"));
    OK(LOAD(FK_BIN_WORKER, gw, "--http-timeout-ms=5000", "--lease-ms=10000"));
    BAD("http-timeout-ms", LOAD(FK_BIN_REAPER, gw, "--lease-ms=9999"));
    /* no gateway: the lease does not fence any HTTP request */
    OK(LOAD(FK_BIN_WORKER, "--http-timeout-ms=6000", "--lease-ms=10000"));
    OK(LOAD(FK_BIN_WORKER, "--gateway=none", "--http-timeout-ms=60000", "--lease-ms=500"));
}

/* The reaper's last look at an expired order (--order-ttl-s + 120 x
 * --recheck-ms) must come while the idempotency key is still the order's. */
static void t_cross_recheck_idem(void **state) {
    (void)state;
    const char *gw = "--gateway=http://127.0.0.1:9";
    /* defaults: 1800 s + 120 x 60 s = 9000 s, within 86400 s */
    OK(LOAD(FK_BIN_REAPER, gw));
    /* 1800 s + 120 x 705 s = 86400 s: the last that fits */
    OK(LOAD(FK_BIN_REAPER, gw, "--recheck-ms=705000"));
    BAD("recheck-ms", LOAD(FK_BIN_REAPER, gw, "--recheck-ms=705001"));
    BAD("recheck-ms", LOAD(FK_BIN_REAPER, gw, "--idem-ttl-s=3600", "--retention-s=3600"));
    OK(LOAD(FK_BIN_REAPER, gw, "--idem-ttl-s=3600", "--retention-s=3600", "--recheck-ms=0"));
    /* no gateway, no looks; workers do not look */
    OK(LOAD(FK_BIN_REAPER, "--recheck-ms=86400000"));
    OK(LOAD(FK_BIN_WORKER, gw, "--idem-ttl-s=3600", "--retention-s=3600"));
}

static void t_cross_webhook(void **state) {
    (void)state;
    BAD("webhook-url", LOAD(FK_BIN_WORKER, "--webhook-url=http://shop.example/h"));
    BAD("webhook-secret", LOAD(FK_BIN_WORKER, "--webhook-url=http://shop.example/h"));
    BAD("webhook-url", LOAD(FK_BIN_WORKER, "--webhook-url=http://shop.example/h",
                            "--webhook-secret="));
    OK(LOAD(FK_BIN_WORKER, "--webhook-url=http://shop.example/h", "--webhook-secret=s"));
    OK(LOAD(FK_BIN_WORKER, "--webhook-secret=s")); /* a secret alone is harmless */
}

/* A connect timeout longer than the whole request is capped to it (a
 * short --http-timeout-ms must not fail on the connect default). */
static void t_cross_connect_timeout(void **state) {
    (void)state;
    OK(LOAD(FK_BIN_WORKER, "--http-connect-timeout-ms=3000", "--http-timeout-ms=2999"));
    assert_int_equal(g_cfg.http_connect_timeout_ms, 2999);
    OK(LOAD(FK_BIN_WORKER, "--http-connect-timeout-ms=3000", "--http-timeout-ms=3000"));
    assert_int_equal(g_cfg.http_connect_timeout_ms, 3000);
    OK(LOAD(FK_BIN_WORKER, "--http-timeout-ms=500"));
    assert_int_equal(g_cfg.http_connect_timeout_ms, 500);
    OK(LOAD(FK_BIN_WORKER, "--http-connect-timeout-ms=100", "--http-timeout-ms=500"));
    assert_int_equal(g_cfg.http_connect_timeout_ms, 100);
}

/* A finished record must outlive its idempotency key (docs/KEYSPACE.md). */
static void t_cross_retention(void **state) {
    (void)state;
    BAD("retention-s", LOAD(FK_BIN_WORKER, "--retention-s=86399"));     /* default idem 86400 */
    BAD("idem-ttl-s", LOAD(FK_BIN_REAPER, "--retention-s=5", "--idem-ttl-s=6"));
    OK(LOAD(FK_BIN_REAPER, "--retention-s=5", "--idem-ttl-s=5"));
    OK(LOAD(FK_BIN_WORKER, "--retention-s=0", "--idem-ttl-s=31536000")); /* kept forever */
    setenv("FAKA_IDEM_TTL_S", "700000", 1);
    BAD("retention-s", LOAD0(FK_BIN_CTL)); /* default retention 604800 */
}

/* The reaper's rows: defaults, environment, and only the reaper (and
 * fakactl, for worker-ttl-ms) takes them. */
static void t_reaper_rows(void **state) {
    (void)state;
    OK(LOAD0(FK_BIN_REAPER));
    assert_int_equal(g_cfg.reap_ms, 1000);
    assert_int_equal(g_cfg.reap_batch, 100);
    assert_int_equal(g_cfg.worker_ttl_ms, 30000);
    assert_int_equal(g_cfg.stream_trim, 1);
    setenv("FAKA_REAP_MS", "250", 1);
    setenv("FAKA_STREAM_TRIM", "0", 1);
    OK(LOAD(FK_BIN_REAPER, "--reap-batch=7", "--worker-ttl-ms", "4000"));
    assert_int_equal(g_cfg.reap_ms, 250);
    assert_int_equal(g_cfg.reap_batch, 7);
    assert_int_equal(g_cfg.worker_ttl_ms, 4000);
    assert_int_equal(g_cfg.stream_trim, 0);
    BAD("--reap-ms", LOAD(FK_BIN_WORKER, "--reap-ms=100"));
    BAD("--stream-trim", LOAD(FK_BIN_CTL, "--stream-trim=0"));
    OK(LOAD(FK_BIN_CTL, "--worker-ttl-ms=5000"));
    assert_int_equal(g_cfg.worker_ttl_ms, 5000);
    setenv("FAKA_STREAM_TRIM", "on", 1);
    BAD("FAKA_STREAM_TRIM", LOAD0(FK_BIN_REAPER));
}

/* ---- worker id default ---------------------------------------------------- */

static int id_char_ok(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == ':' || c == '-';
}

static void t_worker_id_default(void **state) {
    (void)state;
    OK(LOAD0(FK_BIN_WORKER));
    const char *id = g_cfg.worker_id;
    assert_true(strlen(id) > 0);
    for (const char *p = id; *p; p++)
        if (!id_char_ok(*p)) fail_msg("worker id '%s' has '%c'", id, *p);
    char pid[32];
    snprintf(pid, sizeof(pid), "-%ld", (long)getpid());
    size_t n = strlen(id), pn = strlen(pid);
    assert_true(n > pn);
    assert_string_equal(id + n - pn, pid);
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    if (host[0] && strlen(host) < 64) {
        for (char *p = host; *p; p++)
            if (!id_char_ok(*p)) *p = '-';
        assert_true(strncmp(id, host, strlen(host)) == 0);
    }
    /* an explicit id wins, from the environment or a flag */
    setenv("FAKA_WORKER_ID", "env-id", 1);
    OK(LOAD0(FK_BIN_WORKER));
    assert_string_equal(g_cfg.worker_id, "env-id");
    OK(LOAD(FK_BIN_WORKER, "--worker-id=flag-id"));
    assert_string_equal(g_cfg.worker_id, "flag-id");
}

/* FAKA_* variables no binary reads are named (a misspelt FAKA_GATEWAY
 * would leave the gateway at none); every row's variable is known, for
 * whichever binary reads it; other variables are not looked at. */
static void t_unknown_env(void **state) {
    (void)state;
    char buf[512];
    assert_int_equal(fk_config_unknown_env(buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    setenv("FAKA_REDIS_URL", "redis://127.0.0.1:6379", 1);
    setenv("FAKA_REAP_MS", "100", 1);       /* the reaper's */
    setenv("FAKA_WORKER_TTL_MS", "5000", 1); /* the reaper's and fakactl's */
    setenv("FAKAX", "1", 1);
    setenv("FK_GATEWAY", "x", 1);
    assert_int_equal(fk_config_unknown_env(buf, sizeof(buf)), 0);
    setenv("FAKA_GATEWAY", "http://127.0.0.1:1", 1);
    assert_int_equal(fk_config_unknown_env(buf, sizeof(buf)), 1);
    assert_string_equal(buf, "FAKA_GATEWAY");
    setenv("FAKA_LEASE", "5", 1);
    assert_int_equal(fk_config_unknown_env(buf, sizeof(buf)), 2);
    assert_non_null(strstr(buf, "FAKA_GATEWAY"));
    assert_non_null(strstr(buf, "FAKA_LEASE"));
    assert_non_null(strstr(buf, ", "));
    /* a small buffer is cut, the count stays whole */
    char small[8];
    assert_int_equal(fk_config_unknown_env(small, sizeof(small)), 2);
    assert_true(strlen(small) < sizeof(small));
    unsetenv("FAKAX");
    unsetenv("FK_GATEWAY");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(t_defaults, clear_env),
        cmocka_unit_test_setup(t_defaults_other_bins, clear_env),
        cmocka_unit_test_setup(t_env, clear_env),
        cmocka_unit_test_setup(t_env_bad_names_variable, clear_env),
        cmocka_unit_test_setup(t_env_other_bin_ignored, clear_env),
        cmocka_unit_test_setup(t_flag_beats_env, clear_env),
        cmocka_unit_test_setup(t_env_empty, clear_env),
        cmocka_unit_test_setup(t_flag_forms, clear_env),
        cmocka_unit_test_setup(t_log_level, clear_env),
        cmocka_unit_test_setup(t_unknown_flag, clear_env),
        cmocka_unit_test_setup(t_missing_value, clear_env),
        cmocka_unit_test_setup(t_help, clear_env),
        cmocka_unit_test_setup(t_positionals, clear_env),
        cmocka_unit_test_setup(t_positional_rejected, clear_env),
        cmocka_unit_test_setup(t_int_bounds, clear_env),
        cmocka_unit_test_setup(t_int_leading_space, clear_env),
        cmocka_unit_test_setup(t_int_env_garbage, clear_env),
        cmocka_unit_test_setup(t_string_checks, clear_env),
        cmocka_unit_test_setup(t_string_lengths, clear_env),
        cmocka_unit_test_setup(t_small_err_buffer, clear_env),
        cmocka_unit_test_setup(t_cross_retry, clear_env),
        cmocka_unit_test_setup(t_cross_http_lease, clear_env),
        cmocka_unit_test_setup(t_cross_recheck_idem, clear_env),
        cmocka_unit_test_setup(t_cross_webhook, clear_env),
        cmocka_unit_test_setup(t_cross_connect_timeout, clear_env),
        cmocka_unit_test_setup(t_cross_retention, clear_env),
        cmocka_unit_test_setup(t_reaper_rows, clear_env),
        cmocka_unit_test_setup(t_worker_id_default, clear_env),
        cmocka_unit_test_setup(t_unknown_env, clear_env),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
