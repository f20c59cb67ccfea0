/* test_ctl.c -- fakactl end to end: the real binary against a real
 * redis-server (and a real faka-worker where orders must move), every
 * command, its --json output parsed with cJSON, its exit codes, and
 * garbage fed to every input (arguments, order JSON, stock codes, dead
 * entries), and hostile contents written straight into Redis (counters
 * past INT64_MAX, bytes that are not UTF-8, terminal escapes, unknown
 * states) to every command that reads them.
 *
 * Exit codes under test (ctl.h): 0 ok, 1 not found / refused, 2 bad usage
 * or invalid input, 3 Redis unreachable, 4 Redis error.
 * FK_T_CTL_WRAP (e.g. "valgrind --error-exitcode=99 --leak-check=full
 * --errors-for-leak-kinds=definite") runs every fakactl under a wrapper. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fleet.h"
#include "harness.h"

#define P "faka"

static fk_t_redis g_r;
static redisContext *g_c;
static char g_bin[512];

typedef struct run {
    int status; /* exit status, 128+sig, or -1 on timeout */
    char *out, *err;
    size_t outlen, errlen;
} run;

static void run_free(run *r) {
    free(r->out);
    free(r->err);
}

static void append(char **buf, size_t *len, const char *s, size_t n) {
    *buf = realloc(*buf, *len + n + 1);
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* Run fakactl with args (NULL-terminated) against url (NULL: the test
 * server), feeding in (NULL: /dev/null); stdout and stderr captured. A
 * live `top` is stopped with SIGINT after stop_after_ms (0 = never). */
static run ctl_url_in(const char *url, const char *in, size_t inlen, long stop_after_ms,
                      const char *const args[]) {
    int pin[2], pout[2], perr[2];
    if (pipe(pin) || pipe(pout) || pipe(perr)) fk_t_fail("pipe: %s", strerror(errno));
    char urlarg[200];
    snprintf(urlarg, sizeof(urlarg), "--redis-url=%s", url ? url : g_r.url);
    const char *argv[64];
    int n = 0;
    char *wrap = getenv("FK_T_CTL_WRAP") ? strdup(getenv("FK_T_CTL_WRAP")) : NULL;
    if (wrap)
        for (char *t = strtok(wrap, " "); t && n < 20; t = strtok(NULL, " ")) argv[n++] = t;
    argv[n++] = g_bin;
    if (!url || url[0]) argv[n++] = urlarg;
    for (int i = 0; args[i] && n < 62; i++) argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) fk_t_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        close(pin[1]);
        close(pout[0]);
        close(perr[0]);
        setenv("USER", "tester", 1);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    free(wrap);
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    signal(SIGPIPE, SIG_IGN);
    if (in && inlen) {
        size_t off = 0;
        while (off < inlen) {
            ssize_t w = write(pin[1], in + off, inlen - off);
            if (w <= 0) break;
            off += (size_t)w;
        }
    }
    close(pin[1]);
    run r = {0};
    r.out = calloc(1, 1);
    r.err = calloc(1, 1);
    long long start = fk_t_now_ms(), deadline = start + 60000;
    int open_fds = 2, signalled = 0;
    struct pollfd p[2] = {{pout[0], POLLIN, 0}, {perr[0], POLLIN, 0}};
    while (open_fds > 0 && fk_t_now_ms() < deadline) {
        if (stop_after_ms && !signalled && fk_t_now_ms() - start >= stop_after_ms) {
            kill(pid, SIGINT);
            signalled = 1;
        }
        if (poll(p, 2, 50) < 0 && errno != EINTR) break;
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP))) continue;
            char buf[4096];
            ssize_t got = read(p[i].fd, buf, sizeof(buf));
            if (got <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
                open_fds--;
            } else if (i == 0) {
                append(&r.out, &r.outlen, buf, (size_t)got);
            } else {
                append(&r.err, &r.errlen, buf, (size_t)got);
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (p[i].fd >= 0) close(p[i].fd);
    r.status = fk_t_wait(pid, 30000);
    if (r.status < 0) {
        kill(pid, SIGKILL);
        fk_t_wait(pid, 5000);
    }
    return r;
}

/* A wrapper (valgrind) is slow to start: live-top windows grow with it. */
static long slow(long ms) { return getenv("FK_T_CTL_WRAP") ? ms * 5 : ms; }

static run ctl_in(const char *in, const char *const args[]) {
    return ctl_url_in(NULL, in, in ? strlen(in) : 0, 0, args);
}

static run ctl(const char *const args[]) { return ctl_url_in(NULL, NULL, 0, 0, args); }

/* Run, check the exit status, and return the run (caller frees). */
static run expect_status(int status, const char *in, const char *const args[]) {
    run r = ctl_in(in, args);
    if (r.status != status) {
        fprintf(stderr, "# fakactl");
        for (int i = 0; args[i]; i++) fprintf(stderr, " %s", args[i]);
        fprintf(stderr, ": status %d, expected %d\n# stdout: %s\n# stderr: %s\n", r.status,
                status, r.out, r.err);
    }
    assert_int_equal(r.status, status);
    return r;
}

#define EXPECT(status, in, ...)                                                       \
    do {                                                                              \
        const char *const a_[] = {__VA_ARGS__, NULL};                                 \
        run r_ = expect_status(status, in, a_);                                       \
        run_free(&r_);                                                                \
    } while (0)

/* Run and parse stdout as one JSON object (the test fails otherwise). */
static cJSON *json_of(int status, const char *in, const char *const args[]) {
    run r = expect_status(status, in, args);
    cJSON *j = cJSON_Parse(r.out);
    if (!j) fprintf(stderr, "# not JSON: %s\n", r.out);
    assert_non_null(j);
    run_free(&r);
    return j;
}

#define JSON(in, ...) json_of(0, in, (const char *const[]){__VA_ARGS__, NULL})

static double jnum(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(v)) fail_msg("JSON member %s is not a number", name);
    return v->valuedouble;
}

static const char *jstr(const cJSON *o, const char *name) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
    if (!s) fail_msg("JSON member %s is not a string", name);
    return s;
}

static char *hget(const char *id, const char *field) {
    redisReply *r = fk_t_cmd(g_c, "HGET %s:order:%s %s", P, id, field);
    char *s = r->type == REDIS_REPLY_STRING ? strdup(r->str) : strdup("");
    freeReplyObject(r);
    return s;
}

static void expect_field(const char *id, const char *field, const char *want) {
    char *v = hget(id, field);
    if (strcmp(v, want) != 0) fprintf(stderr, "# %s.%s = '%s', want '%s'\n", id, field, v, want);
    assert_string_equal(v, want);
    free(v);
}

static int setup(void **state) {
    (void)state;
    fk_t_bin("workers/fakactl", g_bin, sizeof(g_bin));
    fk_t_redis_start(&g_r, 0);
    g_c = fk_t_connect(&g_r);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    redisFree(g_c);
    fk_t_redis_stop(&g_r);
    return 0;
}

static int flush(void **state) {
    (void)state;
    freeReplyObject(fk_t_cmd(g_c, "FLUSHALL"));
    return 0;
}

static pid_t start_worker(const char *name) {
    const char *extra[] = {"--gateway=none", "--promote-ms=10", NULL};
    return fk_t_worker(&g_r, name, extra);
}

/* ---- usage and reachability ------------------------------------------- */

static void t_usage(void **state) {
    (void)state;
    run r = ctl((const char *const[]){"--help", NULL});
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "Exit status"));
    assert_non_null(strstr(r.out, "review resolve ID --as completed|failed|processing"));
    run_free(&r);
    EXPECT(2, NULL, "--json");                          /* no command: unknown option */
    {
        const char *const a[] = {NULL};
        run x = ctl(a);
        assert_int_equal(x.status, 2);
        assert_non_null(strstr(x.err, "no command"));
        run_free(&x);
    }
    EXPECT(2, NULL, "frobnicate");
    EXPECT(2, NULL, "\x01\x02garbage");
    EXPECT(2, NULL, "order");                           /* missing ID */
    EXPECT(2, NULL, "order", "A1", "A2");               /* one too many */
    EXPECT(2, NULL, "order", "bad id!");
    EXPECT(2, NULL, "order", "");
    EXPECT(2, NULL, "retry");
    EXPECT(2, NULL, "retry", "A1", "--bogus");
    EXPECT(2, NULL, "retry", "A1", "--note");           /* option without its value */
    EXPECT(2, NULL, "retry", "A1", "--note", "line\nbreak");
    EXPECT(2, NULL, "retry", "A1", "--operator", "");
    EXPECT(2, NULL, "review");
    EXPECT(2, NULL, "review", "approve", "A1");
    EXPECT(2, NULL, "review", "resolve", "A1");         /* --as missing */
    EXPECT(2, NULL, "review", "resolve", "A1", "--as", "bogus");
    EXPECT(2, NULL, "review", "resolve", "A1", "--as", "expired");
    EXPECT(2, NULL, "review", "resolve", "--as", "failed");
    /* an option twice is a slip: never the last one silently */
    EXPECT(2, NULL, "review", "resolve", "A1", "--as", "completed", "--as", "failed");
    EXPECT(2, NULL, "review", "resolve", "A1", "--as=failed", "--as", "failed");
    EXPECT(2, NULL, "retry", "A1", "--note", "a", "--note", "b");
    EXPECT(2, NULL, "review", "list", "--count", "abc");
    EXPECT(2, NULL, "review", "list", "--count", "0");
    EXPECT(2, NULL, "review", "list", "--count", " 5");
    EXPECT(2, NULL, "review", "list", "--count", "99999999999999999999");
    EXPECT(2, NULL, "dead");
    EXPECT(2, NULL, "dead", "list", "--count", "-3");
    EXPECT(2, NULL, "dead", "requeue");
    EXPECT(2, NULL, "dead", "requeue", "1-1", "--all");
    EXPECT(2, NULL, "dead", "requeue", "not-an-id");
    EXPECT(2, NULL, "dead", "requeue", "1-1x");
    /* past what a stream id holds: bad usage, not a Redis error */
    EXPECT(2, NULL, "dead", "requeue", "18446744073709551616-0");
    EXPECT(2, NULL, "dead", "requeue", "1-18446744073709551616");
    EXPECT(2, NULL, "dead", "requeue", "99999999999999999999");
    EXPECT(2, NULL, "dead", "requeue", "--force");
    EXPECT(2, NULL, "stock");
    EXPECT(2, NULL, "stock", "add");
    EXPECT(2, NULL, "stock", "count", "a", "b");
    EXPECT(2, NULL, "stock", "count", "tab\tsku");
    EXPECT(2, NULL, "stock", "remove", "x");
    EXPECT(2, NULL, "notify");
    EXPECT(2, NULL, "notify", "resend", "A1");
    EXPECT(2, NULL, "notify", "requeue");
    EXPECT(2, NULL, "notify", "requeue", "A1", "--failed");
    EXPECT(2, NULL, "notify", "requeue", "bad id");
    EXPECT(2, NULL, "notify", "requeue", "A1", "A2");
    EXPECT(2, NULL, "workers", "extra");
    EXPECT(2, NULL, "stats", "--bogus");
    EXPECT(2, NULL, "top", "--interval-ms", "5");
    EXPECT(2, NULL, "top", "--once=yes");
    EXPECT(2, NULL, "submit", "--qty", "1x", "--order-id", "A1");
    EXPECT(2, NULL, "--prefix", "bad prefix", "stats");
    EXPECT(2, NULL, "--redis-timeout-ms", "abc", "stats");
    /* a bad URL is a usage error, not an unreachable server */
    run u = ctl_url_in("", NULL, 0, 0, (const char *const[]){"--redis-url=http://x", "stats", NULL});
    assert_int_equal(u.status, 2);
    run_free(&u);
}

static void t_unreachable(void **state) {
    (void)state;
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", fk_t_free_port());
    const char *const cmds[][4] = {{"stats", NULL},          {"order", "A1", NULL},
                                   {"workers", NULL},        {"top", "--once", NULL},
                                   {"review", "list", NULL}, {"dead", "list", NULL},
                                   {"stock", "count", NULL}, {"retry", "A1", NULL}};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        run r = ctl_url_in(url, NULL, 0, 0, cmds[i]);
        if (r.status != 3) fprintf(stderr, "# %s: %d %s\n", cmds[i][0], r.status, r.err);
        assert_int_equal(r.status, 3);
        assert_non_null(strstr(r.err, "cannot reach Redis"));
        run_free(&r);
    }
    /* bad arguments are reported before Redis is even tried */
    run r = ctl_url_in(url, NULL, 0, 0, (const char *const[]){"order", "bad id", NULL});
    assert_int_equal(r.status, 2);
    run_free(&r);
}

static void t_redis_error(void **state) {
    (void)state;
    freeReplyObject(fk_t_cmd(g_c, "SET %s:stats not-a-hash", P));
    run r = ctl((const char *const[]){"stats", NULL});
    assert_int_equal(r.status, 4);
    assert_non_null(strstr(r.err, "WRONGTYPE"));
    run_free(&r);
    freeReplyObject(fk_t_cmd(g_c, "SET %s:stock:wow x", P));
    EXPECT(4, "c1\n", "stock", "add", "wow");
}

/* ---- submit, order ------------------------------------------------------ */

static void t_submit_and_order(void **state) {
    (void)state;
    cJSON *j = JSON(NULL, "submit", "--order-id", "S1", "--sku", "wow", "--qty", "2",
                    "--amount", "3000", "--buyer", "b@x", "--json");
    assert_string_equal(jstr(j, "order_id"), "S1");
    assert_true(strchr(jstr(j, "entry_id"), '-') != NULL);
    cJSON_Delete(j);
    j = JSON("{\"order_id\":\"S2\",\"sku\":\"wow\",\"qty\":1,\"amount\":10,\"x\":[1]}", "submit",
             "--json");
    assert_string_equal(jstr(j, "order_id"), "S2");
    cJSON_Delete(j);
    assert_int_equal(fk_t_int(g_c, "XLEN %s:orders", P), 2);
    /* the entry is the canonical encoding, which the worker's decoder takes */
    redisReply *x = fk_t_cmd(g_c, "XRANGE %s:orders - + COUNT 1", P);
    assert_string_equal(x->element[0]->element[1]->element[0]->str, "order");
    assert_non_null(strstr(x->element[0]->element[1]->element[1]->str, "\"buyer\":\"b@x\""));
    freeReplyObject(x);

    /* invalid orders: exit 2 with the decoder's reason, nothing enqueued */
    struct {
        const char *in, *why;
    } bad[] = {
        {"{\"order_id\":\"S3\",\"sku\":\"wow\",\"qty\":1.5,\"amount\":1}", "qty must be"},
        {"{\"order_id\":\"S3\",\"sku\":\"wow\",\"qty\":\"2\",\"amount\":1}", "qty"},
        {"{\"order_id\":\"S 3\",\"sku\":\"wow\",\"qty\":1,\"amount\":1}", "order_id"},
        {"{\"order_id\":\"S3\",\"qty\":1,\"amount\":1}", "sku"},
        {"{not json", "invalid order"},
        {"[1,2]", "invalid order"},
        {"{\"order_id\":\"S3\",\"sku\":\"w\xff\",\"qty\":1,\"amount\":1}", "UTF-8"},
        {"{\"order_id\":\"S3\",\"sku\":\"wow\",\"qty\":1,\"amount\":-1}", "amount"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        run r = ctl_in(bad[i].in, (const char *const[]){"submit", NULL});
        if (r.status != 2 || !strstr(r.err, bad[i].why))
            fprintf(stderr, "# %s -> %d %s\n", bad[i].in, r.status, r.err);
        assert_int_equal(r.status, 2);
        assert_non_null(strstr(r.err, bad[i].why));
        run_free(&r);
    }
    /* NUL bytes and an oversize value */
    run r = ctl_url_in(NULL, "{\"order_id\":\"S3\"\0}", 18, 0, (const char *const[]){"submit", NULL});
    assert_int_equal(r.status, 2);
    run_free(&r);
    size_t big = 20000;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    memcpy(huge, "{\"order_id\":\"S3\",\"pad\":\"", 24);
    memcpy(huge + big - 40, "\",\"sku\":\"w\",\"qty\":1,\"amount\":1}        ", 40);
    huge[big] = '\0';
    r = ctl_in(huge, (const char *const[]){"submit", NULL});
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "16384"));
    run_free(&r);
    free(huge);
    EXPECT(2, "", "submit");
    EXPECT(2, NULL, "submit", "--order-id", "S4", "--qty", "1", "--amount", "1"); /* no sku */
    EXPECT(2, NULL, "submit", "--order-id", "S4", "--sku", "w", "--qty", "0", "--amount", "1");
    EXPECT(2, NULL, "submit", "--order-id", "S4", "--sku", "w", "--qty", "1", "--amount",
           "1e3");
    EXPECT(2, NULL, "submit", "--order-id", "S4", "--sku", "w", "--qty", "1", "--amount", "1",
           "--currency", "yuan");
    assert_int_equal(fk_t_int(g_c, "XLEN %s:orders", P), 2);

    /* order: not found, then the record once a worker completed it */
    EXPECT(1, NULL, "order", "S1");
    fk_t_load_stock(g_c, P, 10);
    freeReplyObject(fk_t_cmd(g_c, "DEL %s:orders", P));
    EXPECT(0, NULL, "submit", "--order-id", "S1", "--sku", fk_t_sku(0), "--qty", "2",
           "--amount", "3000");
    pid_t w = start_worker("w1");
    assert_true(fk_t_wait_order(g_c, P, "S1", "completed", 15000));
    j = JSON(NULL, "order", "S1", "--json");
    assert_string_equal(jstr(j, "order_id"), "S1");
    const cJSON *rec = cJSON_GetObjectItemCaseSensitive(j, "record");
    assert_string_equal(jstr(rec, "state"), "completed");
    const cJSON *codes = cJSON_GetObjectItemCaseSensitive(rec, "codes");
    assert_true(cJSON_IsArray(codes));
    assert_int_equal(cJSON_GetArraySize(codes), 2);
    assert_true(jnum(j, "ttl_s") > 0);
    cJSON_Delete(j);
    r = ctl((const char *const[]){"order", "S1", NULL});
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "completed (已完成)"));
    run_free(&r);
    assert_int_equal(fk_t_stop(w), 0);
}

/* ---- retry --------------------------------------------------------------- */

static void t_retry(void **state) {
    (void)state;
    pid_t w = start_worker("w1");
    const char *sku = fk_t_sku(1);
    /* out of stock: failed before any charge */
    EXPECT(0, NULL, "submit", "--order-id", "R1", "--sku", sku, "--qty", "3", "--amount", "1");
    assert_true(fk_t_wait_order(g_c, P, "R1", "failed", 15000));
    expect_field("R1", "reason", "out_of_stock");
    char *fence0 = hget("R1", "fence");
    /* still no stock: refused, nothing changes */
    run r = ctl((const char *const[]){"retry", "R1", NULL});
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "out of stock"));
    run_free(&r);
    expect_field("R1", "state", "failed");
    EXPECT(0, "k1\nk2\nk3\n", "stock", "add", sku);
    cJSON *j = JSON(NULL, "retry", "R1", "--note", "restocked", "--operator", "alice", "--json");
    assert_string_equal(jstr(j, "from"), "failed");
    assert_string_equal(jstr(j, "to"), "processing");
    assert_string_equal(jstr(j, "operator"), "alice");
    /* the fence moved: a worker holding the old one can apply nothing */
    assert_true(atoll(jstr(j, "fence")) > atoll(fence0));
    cJSON_Delete(j);
    free(fence0);
    assert_true(fk_t_wait_order(g_c, P, "R1", "completed", 15000));
    expect_field("R1", "codes", "[\"k1\",\"k2\",\"k3\"]");
    expect_field("R1", "operator", "alice");
    expect_field("R1", "note", "restocked");
    char *audit = hget("R1", "audit");
    cJSON *a = cJSON_Parse(audit);
    assert_true(cJSON_IsArray(a));
    assert_int_equal(cJSON_GetArraySize(a), 1);
    const cJSON *e = cJSON_GetArrayItem(a, 0);
    assert_string_equal(jstr(e, "operator"), "alice");
    assert_string_equal(jstr(e, "from"), "failed");
    assert_string_equal(jstr(e, "to"), "processing");
    assert_string_equal(jstr(e, "note"), "restocked");
    assert_true(jnum(e, "at") > 0);
    cJSON_Delete(a);
    free(audit);
    assert_int_equal(fk_t_stat(g_c, P, "reopened"), 1);
    /* only a failed order can be retried */
    r = ctl((const char *const[]){"retry", "R1", NULL});
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "only a failed order"));
    run_free(&r);
    EXPECT(1, NULL, "retry", "NOPE");
    /* a duplicate's record is not an order of its own: refused */
    fk_t_load_stock(g_c, P, 2);
    EXPECT(0, NULL, "submit", "--order-id", "R2", "--sku", sku, "--qty", "1", "--amount", "1",
           "--idempotency-key", "k-77");
    EXPECT(0, NULL, "submit", "--order-id", "R3", "--sku", sku, "--qty", "1", "--amount", "1",
           "--idempotency-key", "k-77");
    assert_true(fk_t_wait_order(g_c, P, "R3", "failed", 15000));
    expect_field("R3", "reason", "duplicate");
    r = ctl((const char *const[]){"retry", "R3", NULL});
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "duplicate"));
    run_free(&r);
    assert_int_equal(fk_t_stop(w), 0);
}

/* ---- review --------------------------------------------------------------- */

/* An order in manual_review: out of stock (failed), then a payment that
 * arrives for it (late_payment -> review). */
static void make_review(const char *id, const char *sku, int qty) {
    char q[8];
    snprintf(q, sizeof(q), "%d", qty);
    EXPECT(0, NULL, "submit", "--order-id", id, "--sku", sku, "--qty", q, "--amount", "1");
    assert_true(fk_t_wait_order(g_c, P, id, "failed", 15000));
    freeReplyObject(fk_t_cmd(g_c,
                             "XADD %s:orders * payment "
                             "{\"order_id\":\"%s\",\"status\":\"succeeded\",\"payment_id\":\"p-%s\"}",
                             P, id, id));
    assert_true(fk_t_wait_order(g_c, P, id, "manual_review", 15000));
}

static void t_review(void **state) {
    (void)state;
    pid_t w = start_worker("w1");
    const char *sku = fk_t_sku(2);
    make_review("V1", sku, 2);
    make_review("V2", sku, 2);
    make_review("V3", sku, 2);
    cJSON *j = JSON(NULL, "review", "list", "--json");
    assert_int_equal((int)jnum(j, "total"), 3);
    const cJSON *orders = cJSON_GetObjectItemCaseSensitive(j, "orders");
    assert_int_equal(cJSON_GetArraySize(orders), 3);
    assert_string_equal(jstr(cJSON_GetArrayItem(orders, 0), "order_id"), "V1");
    assert_string_equal(jstr(cJSON_GetArrayItem(orders, 0), "reason"), "late_payment");
    cJSON_Delete(j);
    j = JSON(NULL, "review", "list", "--count", "1", "--json");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "orders")), 1);
    cJSON_Delete(j);
    run r = ctl((const char *const[]){"review", "list", NULL});
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "3 orders waiting for review"));
    run_free(&r);

    /* fakactl on its own after FUNCTION FLUSH (no worker to load faka's
     * library first): it loads the library itself and repeats the call */
    assert_int_equal(fk_t_stop(w), 0);
    freeReplyObject(fk_t_cmd(g_c, "FUNCTION FLUSH"));
    redisReply *fl = fk_t_cmd(g_c, "FUNCTION LIST");
    assert_int_equal((int)fl->elements, 0);
    freeReplyObject(fl);

    /* completed: no reservation and no stock -> refused, nothing changes */
    r = ctl((const char *const[]){"review", "resolve", "V1", "--as", "completed", NULL});
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "out of stock"));
    run_free(&r);
    expect_field("V1", "state", "manual_review");
    EXPECT(0, "v1\nv2\nv3\nv4\n", "stock", "add", sku);
    j = JSON(NULL, "review", "resolve", "V1", "--as", "completed", "--note", "paid, deliver",
             "--operator", "bob", "--no-notify", "--json");
    assert_string_equal(jstr(j, "to"), "completed");
    cJSON_Delete(j);
    expect_field("V1", "state", "completed");
    expect_field("V1", "codes", "[\"v1\",\"v2\"]");
    expect_field("V1", "operator", "bob");
    assert_int_equal(fk_t_int(g_c, "ZSCORE %s:review V1", P), -1);
    /* failed: by the operator */
    EXPECT(0, NULL, "review", "resolve", "V2", "--as", "failed", "--note", "refunded");
    expect_field("V2", "state", "failed");
    expect_field("V2", "reason", "operator");
    char *msg = hget("V2", "message");
    assert_non_null(strstr(msg, "refunded"));
    free(msg);
    /* a human settled it (refunded outside faka): a plain retry, or a
     * typo for another id, must not deliver or charge it again */
    r = ctl((const char *const[]){"retry", "V2", NULL});
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "settled as failed by an operator"));
    run_free(&r);
    expect_field("V2", "state", "failed");
    expect_field("V2", "pay_status", "succeeded");
    fl = fk_t_cmd(g_c, "FUNCTION LIST");
    assert_int_equal((int)fl->elements, 1); /* loaded by fakactl */
    freeReplyObject(fl);
    w = start_worker("w1");
    /* processing: reserved again and re-queued; the worker sees the
     * succeeded payment and delivers */
    EXPECT(0, NULL, "review", "resolve", "V3", "--as", "processing");
    assert_true(fk_t_wait_order(g_c, P, "V3", "completed", 15000));
    expect_field("V3", "codes", "[\"v3\",\"v4\"]");
    char *audit = hget("V3", "audit");
    assert_non_null(strstr(audit, "\"operator\":\"tester\"")); /* $USER */
    free(audit);
    assert_int_equal(fk_t_int(g_c, "ZCARD %s:review", P), 0);
    /* not in review / not there */
    r = ctl((const char *const[]){"review", "resolve", "V1", "--as", "failed", NULL});
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "not waiting for review"));
    run_free(&r);
    EXPECT(1, NULL, "review", "resolve", "NOPE", "--as", "failed");
    /* the operator who checked the payment may still retry it, on purpose */
    EXPECT(0, "v5\nv6\n", "stock", "add", sku);
    EXPECT(0, NULL, "retry", "V2", "--force", "--note", "buyer paid again");
    assert_true(fk_t_wait_order(g_c, P, "V2", "completed", 15000));
    expect_field("V2", "codes", "[\"v5\",\"v6\"]");
    assert_int_equal(fk_t_stop(w), 0);
}

/* A record in manual_review whose fields were edited by hand (redis-cli
 * HSET): resolving it must neither deliver what is not a reservation of
 * its qty (garbage, an empty list, a code twice, a count that is not qty),
 * nor give a code back to stock twice, nor act on another SKU's stock. */
static void hand_review(const char *id, const char *sku, const char *resv) {
    freeReplyObject(fk_t_cmd(g_c, "DEL %s:order:%s", P, id));
    freeReplyObject(fk_t_cmd(g_c,
                             "HSET %s:order:%s state manual_review reason payment_unknown "
                             "fence 3 sku %s qty 2 amount 100 currency CNY charge unknown",
                             P, id, sku));
    if (resv) freeReplyObject(fk_t_cmd(g_c, "HSET %s:order:%s resv %s", P, id, resv));
    freeReplyObject(fk_t_cmd(g_c, "ZADD %s:review 1 %s", P, id));
}

static void t_review_hand_edited(void **state) {
    (void)state;
    const char *sku = fk_t_sku(0);
    EXPECT(0, "s1\ns2\ns3\n", "stock", "add", sku);
    const char *bad[] = {"hello garbage", "[]",         "[\"a\",\"a\"]",    "[\"a\"]",
                         "[\"a\",\"\"]",     "[\"a\",\"b\",\"c\"]", "{\"x\":\"a\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        hand_review("H1", sku, bad[i]);
        const char *const as[] = {"completed", "processing"};
        for (int k = 0; k < 2; k++) {
            run r = ctl((const char *const[]){"review", "resolve", "H1", "--as", as[k],
                                              "--no-notify", NULL});
            if (r.status != 1) fprintf(stderr, "# resv %s --as %s: %d %s\n", bad[i], as[k],
                                       r.status, r.err);
            assert_int_equal(r.status, 1);
            assert_non_null(strstr(r.err, "its reservation (resv) is not 2 distinct codes"));
            run_free(&r);
            /* nothing delivered, nothing taken, nothing written */
            expect_field("H1", "state", "manual_review");
            expect_field("H1", "codes", "");
            expect_field("H1", "resv", bad[i]);
            expect_field("H1", "fence", "3");
            assert_int_equal(fk_t_int(g_c, "LLEN %s:stock:%s", P, sku), 3);
        }
    }
    /* a reservation holding a code twice is not released twice into the
     * stock (two buyers would get it) */
    hand_review("H2", sku, "[\"d1\",\"d1\"]");
    run r = ctl((const char *const[]){"review", "resolve", "H2", "--as", "failed", NULL});
    assert_int_equal(r.status, 4);
    assert_non_null(strstr(r.err, "resv is not a JSON list of codes"));
    run_free(&r);
    expect_field("H2", "state", "manual_review");
    assert_int_equal(fk_t_int(g_c, "LLEN %s:stock:%s", P, sku), 3);
    /* a failed record with such a reservation is not retried on it either */
    freeReplyObject(fk_t_cmd(g_c,
                             "HSET %s:order:H3 state failed reason out_of_stock fence 3 sku %s "
                             "qty 2 amount 100 currency CNY resv [\"zz\"]",
                             P, sku));
    r = ctl((const char *const[]){"retry", "H3", NULL});
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "its reservation (resv) is not 2 distinct codes"));
    run_free(&r);
    expect_field("H3", "state", "failed");
    /* a sku that no SKU can be (longer than any accepted): refused before
     * any stock list is touched */
    char long_sku[400];
    memset(long_sku, 'k', 399);
    long_sku[399] = '\0';
    hand_review("H4", long_sku, NULL);
    r = ctl((const char *const[]){"review", "resolve", "H4", "--as", "completed", NULL});
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "its sku is not one faka accepts"));
    run_free(&r);
    expect_field("H4", "state", "manual_review");
    /* the operator removes the garbage: codes come from stock, once */
    hand_review("H1", sku, "hello garbage");
    freeReplyObject(fk_t_cmd(g_c, "HDEL %s:order:H1 resv", P));
    EXPECT(0, NULL, "review", "resolve", "H1", "--as", "completed", "--no-notify");
    expect_field("H1", "state", "completed");
    expect_field("H1", "codes", "[\"s1\",\"s2\"]");
    assert_int_equal(fk_t_int(g_c, "LLEN %s:stock:%s", P, sku), 1);
    /* a valid held reservation is delivered as it is */
    hand_review("H5", sku, "[\"h1\",\"h2\"]");
    EXPECT(0, NULL, "review", "resolve", "H5", "--as", "completed", "--no-notify");
    expect_field("H5", "codes", "[\"h1\",\"h2\"]");
}

/* ---- dead ---------------------------------------------------------------- */

static void t_dead(void **state) {
    (void)state;
    const char *good = "{\"order_id\":\"D1\",\"sku\":\"wow\",\"qty\":1,\"amount\":1}";
    redisReply *x = fk_t_cmd(g_c, "XADD %s:dead * raw %s error %s source_id 1-0 kind order "
                                  "order_id D1", P, good, "delivered 5 times");
    char good_id[64];
    snprintf(good_id, sizeof(good_id), "%s", x->str);
    freeReplyObject(x);
    x = fk_t_cmd(g_c, "XADD %s:dead * raw {bad error %s source_id 2-0 kind order order_id %s", P,
                 "bad JSON", "");
    char bad_id[64];
    snprintf(bad_id, sizeof(bad_id), "%s", x->str);
    freeReplyObject(x);
    freeReplyObject(fk_t_cmd(g_c, "XADD %s:dead * raw \xff\xfe error binary source_id 3-0 kind "
                                  "refund order_id %s", P, ""));
    cJSON *j = JSON(NULL, "dead", "list", "--json");
    assert_int_equal((int)jnum(j, "total"), 3);
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(j, "entries");
    assert_int_equal(cJSON_GetArraySize(entries), 3);
    assert_string_equal(jstr(cJSON_GetArrayItem(entries, 2), "id"), good_id); /* newest first */
    assert_string_equal(jstr(cJSON_GetArrayItem(entries, 2), "raw"), good);
    cJSON_Delete(j);
    run r = ctl((const char *const[]){"dead", "list", "--count", "2", NULL});
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "3 dead-lettered entries"));
    run_free(&r);
    /* the text form shows each field once, from its own buffer: the raw
     * entry, not the order id printed over it */
    r = ctl((const char *const[]){"dead", "list", NULL});
    assert_int_equal(r.status, 0);
    char want[160];
    snprintf(want, sizeof(want), "  %s  kind=order order=D1 source=1-0\n    error: delivered 5 "
                                 "times\n    raw:   {\"order_id\":\"D1\",", good_id);
    if (!strstr(r.out, want)) fail_msg("dead list text:\n%s", r.out);
    assert_non_null(strstr(r.out, "raw:   {bad\n"));
    assert_non_null(strstr(r.out, "kind=refund order= source=3-0"));
    run_free(&r);
    /* still invalid: refused by id */
    r = ctl((const char *const[]){"dead", "requeue", bad_id, NULL});
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "still invalid"));
    run_free(&r);
    EXPECT(1, NULL, "dead", "requeue", "12345-0");
    /* the good one goes back on the stream and leaves the dead stream */
    j = JSON(NULL, "dead", "requeue", good_id, "--json");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "requeued")), 1);
    cJSON_Delete(j);
    assert_int_equal(fk_t_int(g_c, "XLEN %s:dead", P), 2);
    x = fk_t_cmd(g_c, "XRANGE %s:orders - +", P);
    assert_int_equal(x->elements, 1);
    assert_string_equal(x->element[0]->element[1]->element[1]->str, good);
    freeReplyObject(x);
    /* --all: both leftovers are skipped, with reasons */
    j = JSON(NULL, "dead", "requeue", "--all", "--json");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "requeued")), 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "skipped")), 2);
    cJSON_Delete(j);
    assert_int_equal(fk_t_int(g_c, "XLEN %s:dead", P), 2);
    /* a valid order dead-lettered 8 days ago (past the 7-day retention):
     * its order may have completed and expired since, so only --force
     * puts it back */
    const char *old = "{\"order_id\":\"D9\",\"sku\":\"wow\",\"qty\":1,\"amount\":1}";
    char old_id[64];
    snprintf(old_id, sizeof(old_id), "%lld-0", (long long)time(NULL) * 1000 - 8LL * 86400000);
    freeReplyObject(fk_t_cmd(g_c, "DEL %s:dead", P)); /* an older id must come first */
    freeReplyObject(fk_t_cmd(g_c, "XADD %s:dead %s raw %s error %s source_id 4-0 kind order "
                                  "order_id D9", P, old_id, old, "delivered 10 times"));
    r = ctl((const char *const[]){"dead", "requeue", old_id, NULL});
    if (r.status != 1) fprintf(stderr, "# requeue %s: %s%s\n", old_id, r.out, r.err);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "--force"));
    run_free(&r);
    j = JSON(NULL, "dead", "requeue", "--all", "--json");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "skipped")), 1);
    cJSON_Delete(j);
    j = JSON(NULL, "dead", "requeue", old_id, "--force", "--json");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "requeued")), 1);
    cJSON_Delete(j);
    assert_int_equal(fk_t_int(g_c, "XLEN %s:orders", P), 2);
}

/* ---- stock ---------------------------------------------------------------- */

static void t_stock(void **state) {
    (void)state;
    cJSON *j = JSON("a1\r\n\n  a2  \na3", "stock", "add", "wow", "--json");
    assert_int_equal((int)jnum(j, "added"), 3);
    assert_int_equal((int)jnum(j, "in_stock"), 3);
    cJSON_Delete(j);
    redisReply *x = fk_t_cmd(g_c, "LRANGE %s:stock:wow 0 -1", P);
    assert_string_equal(x->element[1]->str, "a2");
    freeReplyObject(x);
    /* garbage lines: nothing added, exit 2, the line numbers named */
    char longline[400];
    memset(longline, 'x', 300);
    strcpy(longline + 300, "\n");
    const char *bad[] = {"b1\nb\x01\x02\nb3\n", longline, "b1\n\xc3\x28\n", "b1\nb1\n",
                         "b1\x7f\n", "b1\tb2\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        run r = ctl_in(bad[i], (const char *const[]){"stock", "add", "wow", NULL});
        assert_int_equal(r.status, 2);
        assert_non_null(strstr(r.err, "nothing added"));
        assert_non_null(strstr(r.err, "line"));
        run_free(&r);
    }
    run r = ctl_url_in(NULL, "z1\nz\0z\n", 7, 0, (const char *const[]){"stock", "add", "wow", NULL});
    assert_int_equal(r.status, 2);
    run_free(&r);
    EXPECT(2, "\n\n  \n", "stock", "add", "wow");
    EXPECT(2, "c1\n", "stock", "add", "bad\x01sku");
    assert_int_equal(fk_t_int(g_c, "LLEN %s:stock:wow", P), 3);
    /* 2500 codes: more than one RPUSH batch */
    char *many = malloc(2500 * 12 + 1);
    size_t o = 0;
    for (int i = 0; i < 2500; i++) o += (size_t)sprintf(many + o, "m-%d\n", i);
    EXPECT(0, many, "stock", "add", "psn");
    free(many);
    j = JSON(NULL, "stock", "count", "--json");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "stock");
    assert_int_equal((int)jnum(s, "wow"), 3);
    assert_int_equal((int)jnum(s, "psn"), 2500);
    assert_int_equal(cJSON_GetArraySize(s), 2); /* not the {p}:stocked: ledgers */
    cJSON_Delete(j);
    j = JSON(NULL, "stock", "count", "psn", "--json");
    assert_int_equal((int)jnum(cJSON_GetObjectItemCaseSensitive(j, "stock"), "psn"), 2500);
    cJSON_Delete(j);
    r = ctl((const char *const[]){"stock", "count", NULL});
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "total"));
    run_free(&r);
}

/* Each code reaches a SKU's stock once in its life: adding the same input
 * again, codes pushed by hand, codes already sold, and a resumed run. */
static void t_stock_once(void **state) {
    (void)state;
    EXPECT(0, "d1\nd2\nd3\n", "stock", "add", "gog");
    cJSON *j = JSON("d1\nd2\nd3\n", "stock", "add", "gog", "--json");
    assert_int_equal((int)jnum(j, "added"), 0);
    assert_int_equal((int)jnum(j, "skipped"), 3);
    assert_int_equal((int)jnum(j, "in_stock"), 3);
    cJSON_Delete(j);
    /* a code sold (popped, as a reservation does) stays known; one pushed
     * by hand is learnt from the list */
    freeReplyObject(fk_t_cmd(g_c, "LPOP %s:stock:gog", P));
    freeReplyObject(fk_t_cmd(g_c, "RPUSH %s:stock:gog h1", P));
    run r = ctl_in("d1\nh1\nd4\n", (const char *const[]){"stock", "add", "gog", NULL});
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "added 1 codes to gog; 4 in stock"));
    assert_non_null(strstr(r.out, "skipped 2 codes"));
    run_free(&r);
    redisReply *x = fk_t_cmd(g_c, "LRANGE %s:stock:gog 0 -1", P);
    assert_int_equal((int)x->elements, 4);
    const char *want[] = {"d2", "d3", "h1", "d4"};
    for (int i = 0; i < 4; i++) assert_string_equal(x->element[i]->str, want[i]);
    freeReplyObject(x);
    /* a run that stopped part-way, run again: only the rest is added, in
     * order, across batches */
    char *many = malloc(2500 * 12 + 1), *part = malloc(500 * 12 + 1);
    size_t o = 0, q = 0;
    for (int i = 0; i < 2500; i++) {
        o += (size_t)sprintf(many + o, "r-%d\n", i);
        if (i < 1500 && i >= 1000) q += (size_t)sprintf(part + q, "r-%d\n", i);
    }
    EXPECT(0, part, "stock", "add", "psn");
    j = JSON(many, "stock", "add", "psn", "--json");
    assert_int_equal((int)jnum(j, "added"), 2000);
    assert_int_equal((int)jnum(j, "skipped"), 500);
    assert_int_equal((int)jnum(j, "in_stock"), 2500);
    cJSON_Delete(j);
    free(many);
    free(part);
    x = fk_t_cmd(g_c, "LRANGE %s:stock:psn 499 500", P);
    assert_string_equal(x->element[0]->str, "r-1499");
    assert_string_equal(x->element[1]->str, "r-0");
    freeReplyObject(x);
    /* a ledger of another type: refused before any write */
    freeReplyObject(fk_t_cmd(g_c, "SET %s:stocked:gog x", P));
    r = ctl_in("n1\n", (const char *const[]){"stock", "add", "gog", NULL});
    assert_int_equal(r.status, 4);
    assert_non_null(strstr(r.err, "not the ledger set"));
    run_free(&r);
    assert_int_equal(fk_t_int(g_c, "LLEN %s:stock:gog", P), 4);
}

/* A shop that stocked a SKU by hand (RPUSH) and then adopts `stock add`
 * with its whole code file: the first run learns the codes already sold
 * from the order records, so they are not stocked and sold again. */
static void t_stock_history_sold(void **state) {
    (void)state;
    const char *sku = fk_t_sku(0);
    freeReplyObject(fk_t_cmd(g_c, "RPUSH %s:stock:%s CODE-1 CODE-2 CODE-3 CODE-4", P, sku));
    EXPECT(0, NULL, "submit", "--order-id", "O1", "--sku", sku, "--qty", "2", "--amount", "100");
    pid_t w = start_worker("w1");
    assert_true(fk_t_wait_order(g_c, P, "O1", "completed", 15000));
    expect_field("O1", "codes", "[\"CODE-1\",\"CODE-2\"]");
    const char *file = "CODE-1\nCODE-2\nCODE-3\nCODE-4\nCODE-5\nCODE-6\n";
    run r = ctl_in(file, (const char *const[]){"stock", "add", sku, NULL});
    assert_int_equal(r.status, 0);
    char line[200];
    snprintf(line, sizeof(line),
             "first stock add for %s: 2 codes found reserved or sold in 1 of 1 order records"
             " taken into its ledger", sku);
    if (!strstr(r.out, line)) fprintf(stderr, "# stdout: %s\n", r.out);
    assert_non_null(strstr(r.out, "added 2 codes")); /* CODE-5, CODE-6 */
    assert_non_null(strstr(r.out, "skipped 4 codes"));
    assert_non_null(strstr(r.out, line));
    run_free(&r);
    assert_int_equal(fk_t_int(g_c, "SISMEMBER %s:stocked:%s CODE-1", P, sku), 1);
    /* the second run has a ledger: no scan, nothing new */
    cJSON *j = JSON(file, "stock", "add", sku, "--json");
    assert_int_equal((int)jnum(j, "added"), 0);
    assert_int_equal((int)jnum(j, "skipped"), 6);
    assert_int_equal((int)jnum(j, "in_stock"), 4);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "first_use")));
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "history"));
    cJSON_Delete(j);
    r = ctl_in(file, (const char *const[]){"stock", "add", sku, NULL});
    assert_int_equal(r.status, 0);
    assert_null(strstr(r.out, "first stock add"));
    run_free(&r);
    /* drain the stock: every code goes out once */
    EXPECT(0, NULL, "submit", "--order-id", "O2", "--sku", sku, "--qty", "2", "--amount", "100");
    EXPECT(0, NULL, "submit", "--order-id", "O3", "--sku", sku, "--qty", "2", "--amount", "100");
    EXPECT(0, NULL, "submit", "--order-id", "O4", "--sku", sku, "--qty", "1", "--amount", "100");
    assert_true(fk_t_wait_order(g_c, P, "O3", "completed", 15000));
    assert_true(fk_t_wait_order(g_c, P, "O4", "failed", 15000));
    assert_int_equal(fk_t_stop(w), 0);
    fk_t_audit a;
    fk_t_audit_run(g_c, P, "O", 1, 4, &a);
    fk_t_audit_print("hand-stocked, then stock add of the whole file", &a);
    assert_int_equal(a.completed, 3);
    assert_int_equal(a.failed, 1);
    assert_int_equal(a.codes_delivered, 6);
    assert_int_equal(a.dup_codes, 0);
    assert_int_equal(a.stock_left, 0);
}

/* The first run also learns codes held by an order still in processing
 * (`resv`), skips garbage records and keys of other types, and ignores
 * other SKUs' records; later runs do not scan again. */
static void t_stock_history_records(void **state) {
    (void)state;
    /* a record as accept.lua leaves it with the gateway on */
    freeReplyObject(fk_t_cmd(
        g_c,
        "HSET %s:order:R1 state processing message %s attempts 0 sku gog qty 2 amount 100 "
        "currency CNY buyer b@x created_at 1700000000000 updated_at 1700000000000 "
        "resv [\"r1\",\"r2\"] charge sent lease_until 1700000010000 lease_entry 1-0 reason %s "
        "fence 1",
        P, "processing", ""));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s:order:X1 state completed sku other codes [\"r3\"]", P));
    /* garbage: not JSON, not an array, items of every type, bytes */
    freeReplyObject(fk_t_cmd(g_c, "HSET %s:order:G1 sku gog codes %s resv %s", P, "not json",
                             "{\"r4\":1}"));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s:order:G2 sku gog codes %s resv %s", P,
                             "[1,null,[\"r5\"],\"\",{\"k\":\"r6\"},true,\"g-ok\"]", "["));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s:order:G3 sku gog codes %b resv [\"\\u00", P,
                             "\xff\x00[\"r7\"]", (size_t)8));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s:order:G4 codes [\"r8\"]", P)); /* no sku */
    freeReplyObject(fk_t_cmd(g_c, "SET %s:order:S1 [\"r9\"]", P));
    freeReplyObject(fk_t_cmd(g_c, "RPUSH %s:order:L1 r9", P));
    cJSON *j = JSON("r1\nr2\nr3\nr4\nr5\nr6\nr7\nr8\nr9\ng-ok\n", "stock", "add", "gog",
                    "--json");
    assert_int_equal((int)jnum(j, "added"), 7);
    assert_int_equal((int)jnum(j, "skipped"), 3);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "first_use")));
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "history");
    assert_int_equal((int)jnum(h, "codes"), 3);
    assert_int_equal((int)jnum(h, "records"), 2);
    assert_int_equal((int)jnum(h, "records_scanned"), 6);
    cJSON_Delete(j);
    redisReply *x = fk_t_cmd(g_c, "LRANGE %s:stock:gog 0 -1", P);
    assert_int_equal((int)x->elements, 7);
    const char *want[] = {"r3", "r4", "r5", "r6", "r7", "r8", "r9"};
    for (int i = 0; i < 7; i++) assert_string_equal(x->element[i]->str, want[i]);
    freeReplyObject(x);
    /* the ledger exists now: a code sold later outside it is not looked
     * for (docs/OPERATIONS.md: once stock add, always stock add) */
    freeReplyObject(fk_t_cmd(g_c, "HSET %s:order:R2 state completed sku gog codes [\"s1\"]", P));
    j = JSON("s1\n", "stock", "add", "gog", "--json");
    assert_int_equal((int)jnum(j, "added"), 1);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "first_use")));
    cJSON_Delete(j);
    /* the ledger deleted (KEYSPACE.md: the SKU starts over): learnt again */
    freeReplyObject(fk_t_cmd(g_c, "DEL %s:stock:gog %s:stocked:gog", P, P));
    run r = ctl_in("r1\nn1\n", (const char *const[]){"stock", "add", "gog", NULL});
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "first stock add for gog: 4 codes found reserved or sold in 3"
                                  " of 7 order records"));
    assert_non_null(strstr(r.out, "added 1 codes to gog; 1 in stock"));
    run_free(&r);
}

/* notify requeue on records as the workers leave them: only a completed
 * order whose webhook failed for good is queued again, once. */
static void t_notify_requeue(void **state) {
    (void)state;
    freeReplyObject(fk_t_cmd(g_c, "HSET %s:order:W1 state completed notify notify_failed "
                                  "notify_attempts 20", P));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s:order:W2 state completed notify notified", P));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s:order:W3 state failed", P));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s:order:W4 state completed notify notify_failed", P));
    freeReplyObject(fk_t_cmd(g_c, "SET %s:order:W5 not-a-hash", P)); /* skipped by --failed */
    cJSON *j = JSON(NULL, "notify", "requeue", "W1", "--json");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "queued")), 1);
    cJSON_Delete(j);
    expect_field("W1", "notify", "pending");
    assert_int_equal(fk_t_int(g_c, "HGET %s:order:W1 notify_attempts", P), 0);
    assert_true(fk_t_int(g_c, "ZSCORE %s:notify W1", P) > 0);
    /* again: it is pending now, not failed */
    run r = ctl((const char *const[]){"notify", "requeue", "W1", NULL});
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "notify=pending"));
    run_free(&r);
    EXPECT(1, NULL, "notify", "requeue", "W2");
    EXPECT(1, NULL, "notify", "requeue", "W3");
    EXPECT(1, NULL, "notify", "requeue", "NOPE");
    EXPECT(4, NULL, "notify", "requeue", "W5");
    r = ctl((const char *const[]){"notify", "requeue", "--failed", NULL});
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "queued W4"));
    assert_non_null(strstr(r.out, "1 webhook queued"));
    run_free(&r);
    assert_int_equal(fk_t_int(g_c, "ZCARD %s:notify", P), 2);
    EXPECT(0, NULL, "notify", "requeue", "--failed"); /* nothing left: 0 queued */
}

/* ---- workers, stats, top --------------------------------------------------- */

static void t_workers_stats_top(void **state) {
    (void)state;
    fk_t_load_stock(g_c, P, 20);
    pid_t w = start_worker("w-stats");
    long long qty = fk_t_produce(g_c, P, "W", 1, 10);
    (void)qty;
    EXPECT(0, NULL, "submit", "--order-id", "WOOS", "--sku", "nothing", "--qty", "1",
           "--amount", "1");
    assert_true(fk_t_wait_order(g_c, P, "WOOS", "failed", 15000));
    assert_true(fk_t_wait_order(g_c, P, "W10", "completed", 15000));
    fk_t_sleep_ms(1200); /* a heartbeat */
    cJSON *j = JSON(NULL, "workers", "--json");
    assert_true(jnum(j, "alive") >= 1);
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(j, "workers");
    int found = 0;
    for (int i = 0; i < cJSON_GetArraySize(ws); i++)
        if (strcmp(jstr(cJSON_GetArrayItem(ws, i), "id"), "w-stats") == 0) {
            found = 1;
            assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ws, i),
                                                                      "alive")));
        }
    assert_true(found);
    cJSON_Delete(j);
    run r = ctl((const char *const[]){"workers", NULL});
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "w-stats"));
    run_free(&r);

    j = JSON(NULL, "stats", "--json");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "totals");
    assert_int_equal((int)jnum(t, "completed"), 10);
    assert_int_equal((int)jnum(t, "failed"), 1);
    assert_int_equal((int)jnum(t, "submitted"), 11);
    double rate = jnum(j, "success_rate");
    assert_true(rate > 0.90 && rate < 0.91); /* 10 / 11 */
    assert_int_equal((int)jnum(cJSON_GetObjectItemCaseSensitive(j, "failures_by_reason"),
                               "out_of_stock"), 1);
    assert_int_equal((int)jnum(cJSON_GetObjectItemCaseSensitive(j, "retry_distribution"), "0"),
                     11);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "avg_retry_ms")));
    assert_int_equal((int)jnum(cJSON_GetObjectItemCaseSensitive(j, "backlog"), "recheck"), 0);
    cJSON_Delete(j);
    /* orders the reaper watches for a late charge (its second look) */
    freeReplyObject(fk_t_cmd(g_c, "ZADD %s:recheck 5 X1 6 X2", P));
    j = JSON(NULL, "stats", "--json");
    assert_int_equal((int)jnum(cJSON_GetObjectItemCaseSensitive(j, "backlog"), "recheck"), 2);
    cJSON_Delete(j);
    r = ctl((const char *const[]){"stats", NULL});
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "recheck 2"));
    assert_non_null(strstr(r.out, "final success rate  90.91 %"));
    assert_non_null(strstr(r.out, "out_of_stock"));
    run_free(&r);

    r = ctl((const char *const[]){"top", "--once", NULL});
    assert_int_equal(r.status, 0);
    for (const char *want = "THROUGHPUT\0BACKLOG\0IN FLIGHT\0BREAKER\0OUTCOMES\0RETRIES\0LAST "
                            "HOUR\0FAILURES BY REASON\0RETRY-COUNT DISTRIBUTION\0";
         *want; want += strlen(want) + 1)
        assert_non_null(strstr(r.out, want));
    assert_non_null(strstr(r.out, "90.91 %"));
    assert_null(strchr(r.out, '\033')); /* --once is plain text */
    run_free(&r);
    j = JSON(NULL, "top", "--once", "--json");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "breaker");
    assert_string_equal(jstr(b, "state"), "closed");
    const cJSON *tp = cJSON_GetObjectItemCaseSensitive(j, "throughput");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(tp,
                                        "final_per_minute_last_hour")), 60);
    cJSON_Delete(j);
    /* throughput counts settlements: an order entering manual_review is
     * no final order (this minute: 3 settled, 50 sent to review) */
    {
        char mkey[160];
        long long minute = (long long)time(NULL) / 60;
        snprintf(mkey, sizeof(mkey), "%s:stats:m:%lld", P, minute);
        freeReplyObject(fk_t_cmd(g_c, "DEL %s", mkey));
        freeReplyObject(fk_t_cmd(g_c, "HSET %s completed 1 failed 1 expired 1 manual_review 50",
                                 mkey));
        j = JSON(NULL, "top", "--once", "--json");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(j, "throughput"), "final_per_minute_last_hour");
        double last = cJSON_GetArrayItem(h, 59)->valuedouble;
        if (last != 3) /* the minute may have turned between HSET and top */
            last = cJSON_GetArrayItem(h, 58)->valuedouble;
        assert_true(last == 3);
        cJSON_Delete(j);
        freeReplyObject(fk_t_cmd(g_c, "DEL %s", mkey));
    }
    /* live, output not a terminal: a frame per tick; SIGINT ends it, status 0 */
    r = ctl_url_in(NULL, NULL, 0, slow(1600),
                   (const char *const[]){"top", "--interval-ms", "500", NULL});
    assert_int_equal(r.status, 0);
    int frames = 0;
    for (const char *p = r.out; (p = strstr(p, "faka top")); p++) frames++;
    assert_true(frames >= 2);
    assert_non_null(strstr(r.out, "/s (completed")); /* a rate from two frames */
    run_free(&r);
    r = ctl_url_in(NULL, NULL, 0, slow(700), (const char *const[]){"top", "--json", NULL});
    assert_int_equal(r.status, 0);
    cJSON *first = cJSON_ParseWithOpts(r.out, NULL, 0);
    assert_non_null(first);
    cJSON_Delete(first);
    run_free(&r);
    assert_int_equal(fk_t_stop(w), 0);
}

/* ---- hostile contents ------------------------------------------------------ */

/* What anyone with redis-cli can write is outside input for fakactl: no
 * crash, no sanitizer report, valid JSON, and no terminal control byte in
 * text. These write such contents with plain Redis commands. */

/* Well-formed UTF-8 (RFC 3629: no overlongs, surrogates, > U+10FFFF),
 * written out here so that the test does not trust common/utf8.c. */
static int utf8_ok(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t k = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (k == 0 || i + k > n) return 0;
        unsigned lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
        unsigned hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
        if (k > 1 && (s[i + 1] < lo || s[i + 1] > hi)) return 0;
        for (size_t j = 2; j < k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return 0;
        i += k;
    }
    return 1;
}

/* Text a terminal shows as text: valid UTF-8, no byte below 0x20 but
 * newline and tab, no DEL, no C1 control (U+0080..U+009F). */
static void expect_printable(const char *what, const char *s, size_t n) {
    int ok = utf8_ok((const unsigned char *)s, n);
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f ||
            (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] < 0xa0))
            ok = 0;
    }
    if (!ok) {
        fprintf(stderr, "# %s: control bytes or bad UTF-8 in:\n", what);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, (unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f ? "\\x%02x"
                                                                                      : "%c",
                    (unsigned char)s[i]);
        fprintf(stderr, "\n");
    }
    assert_true(ok);
}

/* Run fakactl on hostile contents: the exit status, no sanitizer report,
 * stderr printable; stdout valid UTF-8 that parses as JSON with --json,
 * printable text without. Returns the run (caller frees). */
static run hostile(int status, const char *const args[]) {
    run r = expect_status(status, NULL, args);
    char what[200] = "fakactl";
    for (int i = 0; args[i]; i++)
        snprintf(what + strlen(what), sizeof(what) - strlen(what), " %s", args[i]);
    if (strstr(r.err, "runtime error") || strstr(r.err, "Sanitizer"))
        fail_msg("%s: sanitizer report:\n%s", what, r.err);
    expect_printable(what, r.err, r.errlen);
    int json = 0;
    for (int i = 0; args[i]; i++) json |= strcmp(args[i], "--json") == 0;
    if (json) {
        if (!utf8_ok((const unsigned char *)r.out, r.outlen))
            fail_msg("%s: --json output is not valid UTF-8: %s", what, r.out);
        cJSON *j = cJSON_Parse(r.out);
        if (!j) fail_msg("%s: not JSON: %s", what, r.out);
        cJSON_Delete(j);
    } else {
        expect_printable(what, r.out, r.outlen);
    }
    return r;
}

#define HOSTILE(status, ...)                                                          \
    do {                                                                              \
        run r_ = hostile(status, (const char *const[]){__VA_ARGS__, NULL});          \
        run_free(&r_);                                                                \
    } while (0)

static cJSON *hostile_json(const char *const args[]) {
    run r = hostile(0, args);
    cJSON *j = cJSON_Parse(r.out);
    run_free(&r);
    return j;
}

/* The wall clock in ms, as fakactl reads it (fk_t_now_ms is monotonic). */
static long long wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* HSET key field value with binary-safe field and value. */
static void hset_bin(const char *key, const char *f, size_t flen, const char *v, size_t vlen) {
    freeReplyObject(fk_t_cmd(g_c, "HSET %s %b %b", key, f, flen, v, vlen));
}
#define HSET_LIT(key, f, v) hset_bin(key, f, sizeof(f) - 1, v, sizeof(v) - 1)

/* Counters at and past INT64_MAX, the smallest negative, not numbers, in
 * the stats hash and the per-minute hashes: every sum saturates (the
 * sanitizer build reports a signed overflow otherwise), garbage and
 * negatives read as 0. */
static void t_hostile_counters(void **state) {
    (void)state;
    const char *max = "9223372036854775807";
    freeReplyObject(fk_t_cmd(g_c,
                             "HSET %s:stats completed %s failed %s expired %s manual_review %s "
                             "reopened -9223372036854775808 submitted 99999999999999999999999 "
                             "retries abc deferred 1.5 dead -7 retry_ms_sum %s "
                             "retry_ms_count -1 attempts:0 %s attempts:00 %s attempts:x 5",
                             P, max, max, max, max, max, max, max));
    long long now = wall_ms();
    for (int d = -2; d <= 1; d++)
        freeReplyObject(fk_t_cmd(g_c,
                                 "HSET %s:stats:m:%lld completed %s failed %s expired %s "
                                 "manual_review %s",
                                 P, now / 60000 + d, max, max, max, max));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s:breaker state open open_until %s opened_at -%s "
                                  "consecutive %s opens 1e99",
                             P, max, max, max));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s:ratelimit tokens nan denied %s", P, max));
    freeReplyObject(fk_t_cmd(g_c, "ZADD %s:workers -inf w-neg +inf w-inf", P));
    cJSON *j = hostile_json((const char *const[]){"stats", "--json", NULL});
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "totals");
    assert_true(jnum(t, "completed") > 9.2e18);
    assert_true(jnum(t, "submitted") > 9.2e18); /* beyond INT64_MAX: saturated */
    assert_true(jnum(t, "reopened") == 0);      /* negative: 0 */
    assert_true(jnum(t, "retries") == 0);       /* not a number: 0 */
    assert_true(jnum(t, "deferred") == 0);
    assert_true(jnum(t, "dead") == 0);
    assert_true(jnum(j, "final") > 9.2e18);     /* saturated, not wrapped */
    double rate = jnum(j, "success_rate");
    assert_true(rate >= 0 && rate <= 1);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "avg_retry_ms")));
    assert_true(jnum(cJSON_GetObjectItemCaseSensitive(j, "retry_distribution"), "0") > 9.2e18);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(j, "throughput"), "final_per_minute_last_hour");
    assert_true(cJSON_GetArrayItem(h, 59)->valuedouble > 9.2e18);
    cJSON_Delete(j);
    HOSTILE(0, "stats");
    run r = hostile(0, (const char *const[]){"top", "--once", NULL});
    assert_non_null(strstr(r.out, "100.00 %"));
    run_free(&r);
    cJSON_Delete(hostile_json((const char *const[]){"top", "--once", "--json", NULL}));
    HOSTILE(0, "workers");
    cJSON_Delete(hostile_json((const char *const[]){"workers", "--json", NULL}));
    /* a live top compares two frames: the difference of saturated sums */
    r = ctl_url_in(NULL, NULL, 0, slow(900),
                   (const char *const[]){"top", "--interval-ms", "300", NULL});
    assert_int_equal(r.status, 0);
    assert_null(strstr(r.err, "runtime error"));
    run_free(&r);
}

/* Strings in the stats and breaker hashes that are not UTF-8 or carry
 * terminal escapes: valid JSON, printable text. */
static void t_hostile_stats_text(void **state) {
    (void)state;
    char stats[64], breaker[64];
    snprintf(stats, sizeof(stats), "%s:stats", P);
    snprintf(breaker, sizeof(breaker), "%s:breaker", P);
    HSET_LIT(stats, "completed", "3");
    HSET_LIT(stats, "reason:bad\xff\x1b[31m", "2");
    HSET_LIT(stats, "reason:\xc2\x9b" "2J\x07\x7f", "1");
    HSET_LIT(stats, "reason:nul\0inside", "1");
    HSET_LIT(stats, "reason:\xe4\xb8\xad\xe6\x96\x87", "1"); /* 中文: kept */
    HSET_LIT(breaker, "state", "\x1b]0;owned\x07\xfe");
    cJSON *j = hostile_json((const char *const[]){"stats", "--json", NULL});
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(j, "failures_by_reason");
    assert_int_equal(cJSON_GetArraySize(by), 4);
    assert_true(jnum(by, "\xe4\xb8\xad\xe6\x96\x87") == 1);
    assert_true(jnum(by, "bad\xef\xbf\xbd\x1b[31m") == 2); /* U+FFFD for the bad byte */
    cJSON_Delete(j);
    run r = hostile(0, (const char *const[]){"stats", NULL});
    assert_non_null(strstr(r.out, "\xe4\xb8\xad\xe6\x96\x87"));
    run_free(&r);
    HOSTILE(0, "top", "--once");
    cJSON_Delete(hostile_json((const char *const[]){"top", "--once", "--json", NULL}));
}

/* review list and order on records and ids that hold control bytes and
 * bytes that are not UTF-8, in field names, values, and the JSON fields. */
static void t_hostile_orders(void **state) {
    (void)state;
    static const char bad_id[] = "id\x1b]0;pwn\x07\xff\xc2\x9b";
    char key[128];
    snprintf(key, sizeof(key), "%s:order:%s", P, bad_id);
    freeReplyObject(fk_t_cmd(g_c, "ZADD %s:review 1 %b", P, bad_id, sizeof(bad_id) - 1));
    freeReplyObject(fk_t_cmd(g_c, "ZADD %s:review +inf H1", P));
    HSET_LIT(key, "state", "manual_review");
    HSET_LIT(key, "reason", "r\x1b[2J\xff");
    HSET_LIT(key, "message", "m\x07\xc2\x9b\xfe");
    HSET_LIT(key, "charge", "c\x1b[1m");
    HSET_LIT(key, "buyer", "b\0hidden");
    snprintf(key, sizeof(key), "%s:order:H1", P);
    HSET_LIT(key, "state", "manual_review");
    HSET_LIT(key, "x\x1b[1m\xff", "v\xfe\x1b");
    HSET_LIT(key, "codes", "[\"\xff\x1b\",\"ok\"]");
    HSET_LIT(key, "charge", "{\"a\":\"\\ud800\"}");
    HSET_LIT(key, "audit", "[{\"at\":1e300,\"operator\":\"\\u001b]0;x\\u0007\",\"from\":"
                           "\"\xff\",\"to\":\"x\\u009b\",\"note\":\"n\\u001b\"}]");
    HSET_LIT(key, "created_at", "99999999999999999999");
    HSET_LIT(key, "updated_at", "-5");
    HSET_LIT(key, "sku", "s\x1b[2J");
    cJSON *j = hostile_json((const char *const[]){"review", "list", "--json", NULL});
    assert_int_equal((int)jnum(j, "total"), 2);
    const cJSON *o = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "orders"), 0);
    assert_string_equal(jstr(o, "order_id"), "id\x1b]0;pwn\x07\xef\xbf\xbd\xc2\x9b");
    assert_string_equal(jstr(o, "buyer"), "b\xef\xbf\xbdhidden"); /* the NUL: U+FFFD */
    cJSON_Delete(j);
    run r = hostile(0, (const char *const[]){"review", "list", NULL});
    assert_non_null(strstr(r.out, "2 orders waiting for review"));
    assert_non_null(strstr(r.out, "id?]0;pwn???"));
    run_free(&r);
    j = hostile_json((const char *const[]){"order", "H1", "--json", NULL});
    const cJSON *rec = cJSON_GetObjectItemCaseSensitive(j, "record");
    assert_string_equal(jstr(rec, "x\x1b[1m\xef\xbf\xbd"), "v\xef\xbf\xbd\x1b");
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(rec, "codes"))); /* not JSON */
    cJSON_Delete(j);
    r = hostile(0, (const char *const[]){"order", "H1", NULL});
    assert_non_null(strstr(r.out, "x?[1m?"));
    assert_non_null(strstr(r.out, "?]0;x?: ? -> x?  n?"));
    run_free(&r);
    HSET_LIT(key, "qty", "1");
    HOSTILE(1, "review", "resolve", "H1", "--as", "completed"); /* out of stock: the sku */
    HOSTILE(1, "retry", "H1");
}

/* An order whose state is not one faka knows: shown as unknown(<value>),
 * never as an empty name. */
static void t_unknown_state(void **state) {
    (void)state;
    char key[64];
    snprintf(key, sizeof(key), "%s:order:U1", P);
    HSET_LIT(key, "state", "bogus");
    HSET_LIT(key, "sku", "s");
    snprintf(key, sizeof(key), "%s:order:U2", P);
    HSET_LIT(key, "state", "\x1b[2Jx\xff");
    run r = hostile(0, (const char *const[]){"order", "U1", NULL});
    assert_non_null(strstr(r.out, "state            unknown(bogus)\n"));
    run_free(&r);
    r = hostile(1, (const char *const[]){"retry", "U1", NULL});
    assert_non_null(strstr(r.err, "order U1 is unknown(bogus); only a failed order"));
    run_free(&r);
    r = hostile(1, (const char *const[]){"review", "resolve", "U1", "--as", "failed", NULL});
    assert_non_null(strstr(r.err, "order U1 is unknown(bogus), not waiting for review"));
    run_free(&r);
    r = hostile(0, (const char *const[]){"order", "U2", NULL});
    assert_non_null(strstr(r.out, "unknown(?[2Jx?)"));
    run_free(&r);
    r = hostile(1, (const char *const[]){"retry", "U2", NULL});
    assert_non_null(strstr(r.err, "is unknown(?[2Jx?);"));
    run_free(&r);
    /* JSON keeps the stored value */
    cJSON *j = hostile_json((const char *const[]){"order", "U1", "--json", NULL});
    assert_string_equal(jstr(cJSON_GetObjectItemCaseSensitive(j, "record"), "state"), "bogus");
    cJSON_Delete(j);
}

/* dead letters, heartbeats and stock keys with control bytes and bytes
 * that are not UTF-8. */
static void t_hostile_queues(void **state) {
    (void)state;
    freeReplyObject(fk_t_cmd(g_c, "XADD %s:dead * raw %b error %b source_id 1-0 kind %b "
                                  "order_id %b",
                             P, "{\"a\":\"\xff\"}\x1b", (size_t)10, "e\x1b[2J\xfe", (size_t)6,
                             "order\x07", (size_t)6, "D\x1b\0x", (size_t)4));
    freeReplyObject(fk_t_cmd(g_c, "ZADD %s:workers %lld %b", P, wall_ms(),
                             "w\x1b[31m\xff", (size_t)7));
    freeReplyObject(fk_t_cmd(g_c, "RPUSH %s:stock:%b c1", P, "s\x1b[2J\xff", (size_t)6));
    cJSON *j = hostile_json((const char *const[]){"dead", "list", "--json", NULL});
    const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "entries"), 0);
    assert_string_equal(jstr(e, "error"), "e\x1b[2J\xef\xbf\xbd");
    assert_string_equal(jstr(e, "order_id"), "D\x1b\xef\xbf\xbdx");
    cJSON_Delete(j);
    HOSTILE(0, "dead", "list");
    HOSTILE(0, "dead", "requeue", "--all");
    cJSON_Delete(hostile_json((const char *const[]){"dead", "requeue", "--all", "--json", NULL}));
    run r = hostile(0, (const char *const[]){"workers", NULL});
    assert_non_null(strstr(r.out, "w?[31m?"));
    run_free(&r);
    j = hostile_json((const char *const[]){"workers", "--json", NULL});
    assert_string_equal(jstr(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "workers"),
                                                0),
                             "id"),
                        "w\x1b[31m\xef\xbf\xbd");
    cJSON_Delete(j);
    r = hostile(0, (const char *const[]){"stock", "count", NULL});
    assert_non_null(strstr(r.out, "s?[2J?"));
    run_free(&r);
    j = hostile_json((const char *const[]){"stock", "count", "--json", NULL});
    assert_true(jnum(cJSON_GetObjectItemCaseSensitive(j, "stock"), "s\x1b[2J\xef\xbf\xbd") == 1);
    cJSON_Delete(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(t_usage, flush),
        cmocka_unit_test_setup(t_unreachable, flush),
        cmocka_unit_test_setup(t_redis_error, flush),
        cmocka_unit_test_setup(t_submit_and_order, flush),
        cmocka_unit_test_setup(t_retry, flush),
        cmocka_unit_test_setup(t_review, flush),
        cmocka_unit_test_setup(t_review_hand_edited, flush),
        cmocka_unit_test_setup(t_dead, flush),
        cmocka_unit_test_setup(t_stock, flush),
        cmocka_unit_test_setup(t_stock_once, flush),
        cmocka_unit_test_setup(t_stock_history_sold, flush),
        cmocka_unit_test_setup(t_stock_history_records, flush),
        cmocka_unit_test_setup(t_notify_requeue, flush),
        cmocka_unit_test_setup(t_workers_stats_top, flush),
        cmocka_unit_test_setup(t_hostile_counters, flush),
        cmocka_unit_test_setup(t_hostile_stats_text, flush),
        cmocka_unit_test_setup(t_hostile_orders, flush),
        cmocka_unit_test_setup(t_unknown_state, flush),
        cmocka_unit_test_setup(t_hostile_queues, flush),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
