/* test_scripts.c -- unit tests of common/scripts.c and contract tests of the
 * Lua scripts in common/lua/, through fk_script_call on a real redis-server
 * (harness) and a real uv loop:
 *  - the registry: one library holding every script as a function named by
 *    the library's content hash, which the server loads (so every script
 *    compiles as a function) and lists under those names; loading it again
 *    is "already exists", another version's library loads beside it; the
 *    generated prelude names every state and reason of state.h with working
 *    Lua values;
 *  - a function missing after FUNCTION FLUSH / FUNCTION DELETE is invisible
 *    to the caller; fk_args keeps binary data and numbers exact, and aborts
 *    past FK_ARGS_MAX;
 *  - transition.lua: stale fence / wrong `from` changes nothing; ops L, D,
 *    R, A, K, V, N do what its header says;
 *  - promote.lua: only due ids move, never twice, the next wait is right;
 *  - dead.lua: an existing order is never overwritten, a settled entry is
 *    'gone';
 *  - reclaim.lua: a poison entry is dead-lettered and its order re-queued
 *    (a `payment` entry as itself, raw unchanged); a dead stream key of
 *    another type fails the call before any write;
 *  - accept.lua: paid-mode completion, out of stock, duplicate key,
 *    conflicting parameters, resume, charge mode and leases;
 *  - numbers read from records and hashes (lib.lua fk_int / fk_num): a
 *    lease_until, open_until, half_open_at, probe count, token count, queue
 *    slot, breaker streak or counter, attempts, first_fail_at or
 *    cooldown `until` that is hex, inf, nan, an exponent, padded or too long
 *    never holds an order or the gateway for good, nor fails a call half-way.
 * Keys are built with common/keys.h under a test prefix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "err.h"
#include "guard.h"
#include "harness.h"
#include "keys.h"
#include "log.h"
#include "redis.h"
#include "scripts.h"
#include "state.h"

#define PREFIX "fkt"
#define GROUP "workers"
#define ORDER_TTL_MS 1800000LL  /* deadlines the scripts put in the active zset */
#define PAYMENT_TTL_MS 900000LL

/* ---- the group fixture: one server, one loop, one async and one sync client ---- */

static fk_t_redis g_srv;
static uv_loop_t g_loop;
static fk_redis *g_r;
static redisContext *g_c;
static fk_keys g_k;
static int g_up;

static void on_event(fk_redis *r, int event, void *arg) {
    (void)arg;
    if (event == FK_REDIS_UP) {
        g_up = 1;
        fk_scripts_load(r);
    } else {
        g_up = 0;
    }
}

typedef int (*cond_fn)(void *arg);
typedef struct waiter {
    cond_fn cond;
    void *arg;
    uint64_t deadline;
    int result;
} waiter;

static void on_poll(uv_timer_t *t) {
    waiter *w = t->data;
    if (w->cond && w->cond(w->arg)) {
        w->result = 1;
        uv_stop(t->loop);
    } else if (uv_now(t->loop) >= w->deadline) {
        uv_stop(t->loop);
    }
}

static int run_until(cond_fn cond, void *arg, long timeout_ms) {
    uv_timer_t t;
    waiter w = {cond, arg, 0, 0};
    uv_update_time(&g_loop);
    w.deadline = uv_now(&g_loop) + (uint64_t)timeout_ms;
    if (cond && cond(arg)) return 1;
    uv_timer_init(&g_loop, &t);
    t.data = &w;
    uv_timer_start(&t, on_poll, 1, 1);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    return w.result;
}

static int is_up(void *arg) {
    (void)arg;
    return g_up;
}

static int group_setup(void **state) {
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    fk_log_init("test_scripts", "t", FK_LOG_INFO);
    if (fk_scripts_init() != 0) fail_msg("fk_scripts_init failed");
    fk_t_redis_start(&g_srv, 0);
    g_c = fk_t_connect(&g_srv);
    fk_keys_init(&g_k, PREFIX);
    if (uv_loop_init(&g_loop) != 0) return -1;
    fk_redis_target t;
    char err[256];
    if (fk_redis_url_parse(g_srv.url, &t, err, sizeof(err)) != 0) return -1;
    fk_redis_options o;
    memset(&o, 0, sizeof(o));
    o.name = "scripts";
    o.connect_timeout_ms = 2000;
    o.reply_timeout_ms = 5000;
    o.backoff_min_ms = 50;
    o.backoff_max_ms = 300;
    if (fk_redis_open(&g_r, &g_loop, &t, &o, on_event, NULL) != 0) return -1;
    if (!run_until(is_up, NULL, 5000)) return -1;
    return 0;
}

static void on_closed(void *arg) { (*(int *)arg)++; }
static int flag_set(void *arg) { return *(int *)arg != 0; }

static int group_teardown(void **state) {
    (void)state;
    int done = 0;
    fk_redis_close(g_r, on_closed, &done);
    run_until(flag_set, &done, 2000);
    for (int i = 0; i < 10; i++) uv_run(&g_loop, UV_RUN_NOWAIT);
    int alive = uv_loop_alive(&g_loop);
    int closed = uv_loop_close(&g_loop);
    redisFree(g_c);
    fk_t_redis_stop(&g_srv);
    fk_scripts_free();
    if (done != 1 || alive || closed != 0) {
        fprintf(stderr, "loop did not close cleanly (done %d alive %d close %d)\n", done, alive,
                closed);
        return -1;
    }
    return 0;
}

/* Every test starts from an empty database. */
static int flush(void **state) {
    (void)state;
    freeReplyObject(fk_t_cmd(g_c, "FLUSHALL"));
    return 0;
}

/* ---- calling scripts -------------------------------------------------------- */

/* A reply as text: strings quoted, integers bare, arrays in brackets. */
static void render(const redisReply *r, char *buf, size_t cap, size_t *n) {
#define PUT(...)                                                           \
    do {                                                                   \
        if (*n < cap) *n += (size_t)snprintf(buf + *n, cap - *n, __VA_ARGS__); \
    } while (0)
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        PUT("'%.*s'", (int)r->len, r->str);
        break;
    case REDIS_REPLY_ERROR:
        PUT("ERR(%.*s)", (int)r->len, r->str);
        break;
    case REDIS_REPLY_INTEGER:
        PUT("%lld", r->integer);
        break;
    case REDIS_REPLY_NIL:
        PUT("nil");
        break;
    case REDIS_REPLY_ARRAY:
        PUT("[");
        for (size_t i = 0; i < r->elements; i++) {
            if (i) PUT(",");
            render(r->element[i], buf, cap, n);
        }
        PUT("]");
        break;
    default:
        PUT("?%d", r->type);
    }
#undef PUT
}

typedef struct result {
    int calls, nulls;
    char text[16384];
} result;

static void on_result(fk_redis *r, redisReply *reply, void *arg) {
    result *res = arg;
    (void)r;
    res->calls++;
    if (!reply) {
        res->nulls++;
        snprintf(res->text, sizeof(res->text), "NULL");
        return;
    }
    size_t n = 0;
    render(reply, res->text, sizeof(res->text), &n);
}

static int res_called(void *arg) { return ((result *)arg)->calls > 0; }

static char g_out[16384];

/* fk_script_call and wait; the rendered reply (valid until the next call). */
static const char *call(int id, int nkeys, const fk_args *a) {
    result res;
    memset(&res, 0, sizeof(res));
    int rc = fk_script_call(g_r, id, nkeys, a, on_result, &res);
    if (rc != 0) fail_msg("fk_script_call(%s): %d", fk_script_name(id), rc);
    if (res.calls != 0) fail_msg("callback ran inside fk_script_call");
    if (!run_until(res_called, &res, 5000)) fail_msg("no reply from %s", fk_script_name(id));
    run_until(NULL, NULL, 1);
    assert_int_equal(res.calls, 1);
    snprintf(g_out, sizeof(g_out), "%s", res.text);
    return g_out;
}

/* ---- synchronous look-ups ------------------------------------------------------ */

static char g_sbuf[8][4096];
static int g_sidx;

/* Reply of a command rendered as text. */
static const char *q(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(g_c, fmt, ap);
    va_end(ap);
    if (!r) fail_msg("sync command failed: %s", g_c->errstr);
    char *buf = g_sbuf[g_sidx++ % 8];
    size_t n = 0;
    render(r, buf, sizeof(g_sbuf[0]), &n);
    freeReplyObject(r);
    return buf;
}

static long long redis_now_ms(void) {
    redisReply *r = fk_t_cmd(g_c, "TIME");
    long long ms = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return ms;
}

static long long stat_of(const char *field) {
    redisReply *r = fk_t_cmd(g_c, "HGET %s %s", g_k.stats, field);
    long long v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return v;
}

/* The whole database as text: every key (sorted) with its type and DUMP. */
static char *snapshot(void) {
    redisReply *keys = fk_t_cmd(g_c, "KEYS *");
    size_t cap = 1 << 20, n = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    out[0] = '\0';
    /* sort the names */
    for (size_t i = 0; i < keys->elements; i++)
        for (size_t j = i + 1; j < keys->elements; j++)
            if (strcmp(keys->element[i]->str, keys->element[j]->str) > 0) {
                redisReply *t = keys->element[i];
                keys->element[i] = keys->element[j];
                keys->element[j] = t;
            }
    for (size_t i = 0; i < keys->elements; i++) {
        const char *k = keys->element[i]->str;
        redisReply *d = fk_t_cmd(g_c, "DUMP %s", k);
        n += (size_t)snprintf(out + n, cap - n, "%s=", k);
        for (size_t b = 0; b < d->len && n + 3 < cap; b++)
            n += (size_t)snprintf(out + n, cap - n, "%02x", (unsigned char)d->str[b]);
        n += (size_t)snprintf(out + n, cap - n, ";");
        freeReplyObject(d);
    }
    freeReplyObject(keys);
    return out;
}

static void assert_unchanged(char *before) {
    char *after = snapshot();
    int same = strcmp(before, after) == 0;
    if (!same) print_error("before: %.2000s\nafter:  %.2000s\n", before, after);
    free(before);
    free(after);
    if (!same) fail_msg("the database changed");
}

/* Create the stream and group, add one entry and read it, so it is pending. */
static void pending_entry(char *id, size_t len, const char *field, const char *value) {
    redisReply *r = redisCommand(g_c, "XGROUP CREATE %s %s $ MKSTREAM", g_k.stream, GROUP);
    freeReplyObject(r); /* BUSYGROUP when it exists: fine */
    r = fk_t_cmd(g_c, "XADD %s * %s %s", g_k.stream, field, value);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    snprintf(id, len, "%s", r->str);
    freeReplyObject(r);
    r = fk_t_cmd(g_c, "XREADGROUP GROUP %s c1 COUNT 100 STREAMS %s >", GROUP, g_k.stream);
    freeReplyObject(r);
}

static long long pending_count(void) {
    redisReply *r = fk_t_cmd(g_c, "XPENDING %s %s", g_k.stream, GROUP);
    long long n = r->type == REDIS_REPLY_ARRAY ? r->element[0]->integer : -1;
    freeReplyObject(r);
    return n;
}

static char g_okey[FK_KEY_MAX], g_skey[FK_KEY_MAX], g_ikey[FK_KEY_MAX], g_minute[FK_KEY_MAX];

static const char *okey(const char *oid) {
    fk_key_order(&g_k, oid, g_okey, sizeof(g_okey));
    return g_okey;
}

/* ---- the registry ------------------------------------------------------------- */

/* The reclaim.lua call of t_reclaim_*: caller c2, min idle 0, count 10,
 * max deliveries 3. */
static const char *reclaim_call(void) {
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, g_k.stream);
    fk_args_str(&a, g_k.dead);
    fk_args_str(&a, g_k.stats);
    fk_args_str(&a, "t:minute");
    fk_args_str(&a, GROUP);
    fk_args_str(&a, "c2");
    fk_args_ll(&a, 0);
    fk_args_ll(&a, 10);
    fk_args_ll(&a, 3);
    fk_args_ll(&a, 1000);
    return call(FK_LUA_RECLAIM, 4, &a);
}

/* reclaim.lua: an entry over max-deliveries is dead-lettered with its
 * history, and when it names an order a retry entry follows, so a good
 * order whose workers kept dying is not stranded; one under the limit is
 * claimed for the caller. */
static void t_reclaim_poison_requeues(void **state) {
    (void)state;
    char id[64], id2[64];
    pending_entry(id, sizeof(id), "order",
                  "{\"order_id\":\"RQ1\",\"sku\":\"s\",\"qty\":1,\"amount\":1}");
    pending_entry(id2, sizeof(id2), "order", "{not json");
    for (int i = 0; i < 3; i++) /* re-deliver: the count grows */
        freeReplyObject(fk_t_cmd(g_c, "XREADGROUP GROUP %s c1 COUNT 100 STREAMS %s 0", GROUP,
                                 g_k.stream));
    assert_string_equal(reclaim_call(), "[]");
    assert_int_equal(pending_count(), 0);
    assert_string_equal(q("XLEN %s", g_k.dead), "2");
    const char *dead = q("XRANGE %s - +", g_k.dead);
    assert_non_null(strstr(dead, "re-queued as a retry entry"));
    assert_non_null(strstr(dead, "delivered 4 times"));
    /* exactly one retry entry, for RQ1; the undecodable one names nothing */
    const char *tail = q("XREVRANGE %s + - COUNT 1", g_k.stream);
    assert_non_null(strstr(tail, "retry"));
    assert_non_null(strstr(tail, "RQ1@"));
    assert_string_equal(q("XLEN %s", g_k.stream), "3");
}

/* reclaim.lua: a `payment` entry over max-deliveries is dead-lettered and
 * re-added as the same `payment` entry (not a retry, which would lose the
 * shop's report), and acknowledged. */
static void t_reclaim_poison_payment(void **state) {
    (void)state;
    static const char pay[] =
        "{\"order_id\":\"RP1\",\"status\":\"succeeded\",\"payment_id\":\"pay-1\"}";
    char id[64], want[512];
    pending_entry(id, sizeof(id), "payment", pay);
    for (int i = 0; i < 3; i++) /* re-deliver: the count grows */
        freeReplyObject(fk_t_cmd(g_c, "XREADGROUP GROUP %s c1 COUNT 100 STREAMS %s 0", GROUP,
                                 g_k.stream));
    assert_string_equal(reclaim_call(), "[]");
    assert_int_equal(pending_count(), 0);
    assert_int_equal(stat_of("dead"), 1);
    /* the stream: the original entry and the payment again, same raw */
    assert_string_equal(q("XLEN %s", g_k.stream), "2");
    redisReply *r = fk_t_cmd(g_c, "XRANGE %s - +", g_k.stream);
    assert_int_equal(r->elements, 2);
    assert_string_equal(r->element[0]->element[0]->str, id);
    redisReply *f = r->element[1]->element[1];
    assert_int_equal(f->elements, 2);
    assert_string_equal(f->element[0]->str, "payment");
    assert_string_equal(f->element[1]->str, pay);
    freeReplyObject(r);
    /* the dead stream: the entry with its history */
    snprintf(want, sizeof(want), "'raw','%s','error','delivered 4 times without being settled',"
             "'source_id','%s','kind','payment','order_id','RP1','history','last consumer c1, "
             "idle ", pay, id);
    const char *dead = q("XRANGE %s - +", g_k.dead);
    if (!strstr(dead, want)) fail_msg("dead stream: %s", dead);
    assert_non_null(strstr(dead, "deliveries 4; payment for order RP1 re-queued as a payment "
                                 "entry']]]"));
    assert_null(strstr(q("XRANGE %s - +", g_k.stream), "retry"));
}

/* reclaim.lua: with the dead stream key holding another type, a poison
 * entry fails the call before anything is written (Lua does not roll
 * back): no retry entry, no dead entry, no ack, no count; the entry stays
 * pending and the next pass does not add another entry either. */
static void t_reclaim_dead_wrongtype(void **state) {
    (void)state;
    char id[64];
    pending_entry(id, sizeof(id), "order",
                  "{\"order_id\":\"RW1\",\"sku\":\"s\",\"qty\":1,\"amount\":1}");
    for (int i = 0; i < 3; i++)
        freeReplyObject(fk_t_cmd(g_c, "XREADGROUP GROUP %s c1 COUNT 100 STREAMS %s 0", GROUP,
                                 g_k.stream));
    freeReplyObject(fk_t_cmd(g_c, "SET %s oops", g_k.dead));
    char want[256];
    snprintf(want, sizeof(want), "ERR(ERR %s is a string, not the dead stream)", g_k.dead);
    for (int pass = 0; pass < 2; pass++) {
        char *before = snapshot();
        char got[512];
        snprintf(got, sizeof(got), "%s", reclaim_call());
        assert_unchanged(before);
        assert_string_equal(got, want);
    }
    assert_string_equal(q("XLEN %s", g_k.stream), "1");
    assert_int_equal(pending_count(), 1);
    assert_string_equal(q("GET %s", g_k.dead), "'oops'");
    /* repaired, the next pass dead-letters it once */
    freeReplyObject(fk_t_cmd(g_c, "DEL %s", g_k.dead));
    assert_string_equal(reclaim_call(), "[]");
    assert_int_equal(pending_count(), 0);
    assert_string_equal(q("XLEN %s", g_k.dead), "1");
    assert_string_equal(q("XLEN %s", g_k.stream), "2");
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* names[0..n) sorted, space separated, into out. */
static const char *sorted(const char **names, size_t n, char *out) {
    qsort(names, n, sizeof(names[0]), by_name);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i) strcat(out, " ");
        strcat(out, names[i]);
    }
    return out;
}

/* The names of the functions FUNCTION LIST shows for library lib, sorted
 * and space separated ("" when the library is not loaded). */
static const char *listed(const char *lib) {
    static char out[2048];
    const char *names[64];
    size_t n = 0;
    redisReply *r = fk_t_cmd(g_c, "FUNCTION LIST LIBRARYNAME %s", lib);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *l = r->element[i];
        /* LIBRARYNAME is a pattern: take only the exact library */
        if (strcmp(l->element[1]->str, lib) != 0) continue;
        for (size_t k = 0; k + 1 < l->elements; k += 2) {
            if (strcmp(l->element[k]->str, "functions") != 0) continue;
            redisReply *fs = l->element[k + 1];
            for (size_t j = 0; j < fs->elements && n < 64; j++)
                names[n++] = fs->element[j]->element[1]->str;
        }
    }
    sorted(names, n, out);
    freeReplyObject(r);
    return out;
}

/* Every function name of the library, as listed() shows them. */
static const char *expected_functions(void) {
    static char out[2048];
    const char *names[FK_LUA__COUNT];
    for (int i = 0; i < FK_LUA__COUNT; i++) names[i] = fk_script_sha(i);
    return sorted(names, FK_LUA__COUNT, out);
}

/* The library text with every occurrence of its 12-digit hash replaced by
 * `with` (12 characters); malloc'ed. */
static char *rehash(const char *with) {
    size_t len;
    const char *text = fk_script_text(0, &len);
    const char *h = fk_scripts_library() + 5;
    char *copy = malloc(len + 1);
    assert_non_null(copy);
    memcpy(copy, text, len + 1);
    for (char *p = copy; (p = strstr(p, h)) != NULL; p += 12) memcpy(p, with, 12);
    return copy;
}

static void t_registry(void **state) {
    (void)state;
    const char *names[] = {
#define NAME(sym, name, flags) name,
        FK_SCRIPT_LIST(NAME)
#undef NAME
    };
    const char *flags[] = {
#define FLAGS(sym, name, flags) flags,
        FK_SCRIPT_LIST(FLAGS)
#undef FLAGS
    };
    assert_int_equal(sizeof(names) / sizeof(names[0]), FK_LUA__COUNT);
    const char *lib = fk_scripts_library();
    assert_int_equal(strlen(lib), 17);
    assert_true(strncmp(lib, "faka_", 5) == 0);
    for (int k = 5; k < 17; k++)
        assert_true((lib[k] >= '0' && lib[k] <= '9') || (lib[k] >= 'a' && lib[k] <= 'f'));
    size_t len = 0;
    const char *text = fk_script_text(0, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len); /* no NUL inside */
    char head[256];
    snprintf(head, sizeof(head), "#!lua name=%s\n-- generated from common/state.h", lib);
    assert_true(strncmp(text, head, strlen(head)) == 0); /* shebang first, then the prelude */
    assert_non_null(strstr(text, "local function fk_now()")); /* lib.lua */
    for (int i = 0; i < FK_LUA__COUNT; i++) {
        assert_string_equal(fk_script_name(i), names[i]);
        size_t l = 0;
        assert_ptr_equal(fk_script_text(i, &l), text); /* one library for all */
        assert_int_equal(l, len);
        char fname[64];
        snprintf(fname, sizeof(fname), "fk_%s_%s", lib + 5, names[i]);
        assert_string_equal(fk_script_sha(i), fname);
        for (int j = 0; j < i; j++) assert_string_not_equal(fk_script_sha(i), fk_script_sha(j));
        /* its own file, unchanged, is the body of its function */
        snprintf(head, sizeof(head),
                 "redis.register_function{function_name='%s', flags={%s},\n"
                 "callback=function(KEYS, ARGV)\n-- %s.lua -- ",
                 fname, flags[i], names[i]);
        assert_non_null(strstr(text, head));
    }
    /* the hash is the SHA-1 of the text with its hash part zeroed */
    char *zeroed = rehash("000000000000");
    redisReply *r = fk_t_cmd(g_c, "EVAL %s 0 %b", "return redis.sha1hex(ARGV[1])", zeroed, len);
    free(zeroed);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_true(strncmp(r->str, lib + 5, 12) == 0);
    freeReplyObject(r);

    /* the server compiles it and registers every function under its name */
    freeReplyObject(fk_t_cmd(g_c, "FUNCTION FLUSH"));
    r = fk_t_cmd(g_c, "FUNCTION LOAD %b", text, len);
    if (r->type != REDIS_REPLY_STRING)
        fail_msg("FUNCTION LOAD: %s", r->str ? r->str : "?");
    assert_string_equal(r->str, lib);
    freeReplyObject(r);
    assert_string_equal(listed(lib), expected_functions());
    /* loading it again: "already exists", which the loaders take as success */
    r = fk_t_cmd(g_c, "FUNCTION LOAD %b", text, len);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_true(fk_scripts_loaded_already(r->str));
    assert_false(fk_scripts_missing(r->str));
    freeReplyObject(r);
    /* the reply to calling a function nobody loaded */
    r = fk_t_cmd(g_c, "FCALL fk_000000000000_promote 0");
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_true(fk_scripts_missing(r->str));
    assert_false(fk_scripts_loaded_already(r->str));
    freeReplyObject(r);
}

/* The prelude has every state and reason of state.h, as working Lua values. */
static void t_prelude(void **state) {
    (void)state;
    size_t len;
    const char *text = strstr(fk_script_text(FK_LUA_PROMOTE, &len), "\n-- generated");
    assert_non_null(text);
    text++;
    const char *lib = strstr(text, "-- lib.lua");
    assert_non_null(lib);
    size_t plen = (size_t)(lib - text);
    for (int s = 1; s < FK_ST__COUNT; s++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "='%s'", fk_state_name((fk_state)s));
        const char *p = strstr(text, needle);
        if (!p || p > lib) fail_msg("prelude lacks state %s", fk_state_name((fk_state)s));
    }
    for (int r = 1; r < FK_R__COUNT; r++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "='%s'", fk_reason_code((fk_reason)r));
        const char *p = strstr(text, needle);
        if (!p || p > lib) fail_msg("prelude lacks reason %s", fk_reason_code((fk_reason)r));
    }
    /* evaluate it: each constant maps to the stored name */
    static char src[16384];
    size_t n = (size_t)snprintf(src, sizeof(src), "%.*s\nreturn {", (int)plen, text);
#define ST(sym, name, zh, msg) n += (size_t)snprintf(src + n, sizeof(src) - n, "FK_ST.%s,", #sym + 6);
    FK_STATES(ST)
#undef ST
#define RS(sym, code, msg) n += (size_t)snprintf(src + n, sizeof(src) - n, "FK_R.%s,", #sym + 5);
    FK_REASONS(RS)
#undef RS
    for (int s = 1; s < FK_ST__COUNT; s++)
        n += (size_t)snprintf(src + n, sizeof(src) - n, "tostring(FK_FINAL['%s'] == true),",
                              fk_state_name((fk_state)s));
    snprintf(src + n, sizeof(src) - n, "}");
    redisReply *r = fk_t_cmd(g_c, "EVAL %s 0", src);
    if (r->type != REDIS_REPLY_ARRAY) fail_msg("prelude does not run: %s", r->str);
    size_t k = 0;
    assert_int_equal(r->elements, (FK_ST__COUNT - 1) * 2 + (FK_R__COUNT - 1));
    for (int s = 1; s < FK_ST__COUNT; s++)
        assert_string_equal(r->element[k++]->str, fk_state_name((fk_state)s));
    for (int x = 1; x < FK_R__COUNT; x++)
        assert_string_equal(r->element[k++]->str, fk_reason_code((fk_reason)x));
    for (int s = 1; s < FK_ST__COUNT; s++)
        assert_string_equal(r->element[k++]->str,
                            fk_state_is_final((fk_state)s) ? "true" : "false");
    freeReplyObject(r);
}

/* fk_scripts_load loads the library on an empty server and is harmless
 * when it is there; another version's library (a rolling upgrade) lives
 * beside ours, and each version calls its own functions. */
static void t_load_all(void **state) {
    (void)state;
    const char *lib = fk_scripts_library();
    freeReplyObject(fk_t_cmd(g_c, "FUNCTION FLUSH"));
    assert_string_equal(listed(lib), "");
    assert_int_equal(fk_scripts_load(g_r), 0);
    run_until(NULL, NULL, 300);
    assert_string_equal(listed(lib), expected_functions());
    assert_int_equal(fk_scripts_load(g_r), 0); /* "already exists": nothing changes */
    run_until(NULL, NULL, 100);
    assert_string_equal(listed(lib), expected_functions());

    char *other = rehash("0123456789ab");
    redisReply *r = fk_t_cmd(g_c, "FUNCTION LOAD %b", other, strlen(other));
    free(other);
    if (r->type != REDIS_REPLY_STRING) fail_msg("FUNCTION LOAD other: %s", r->str);
    assert_string_equal(r->str, "faka_0123456789ab");
    freeReplyObject(r);
    assert_non_null(strstr(listed("faka_0123456789ab"), "fk_0123456789ab_promote"));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, g_k.retry);
    fk_args_str(&a, g_k.stream);
    fk_args_ll(&a, 10);
    assert_string_equal(call(FK_LUA_PROMOTE, 2, &a), "[0,-1]");
    /* the old version goes once none of its workers runs */
    r = fk_t_cmd(g_c, "FUNCTION DELETE faka_0123456789ab");
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    assert_string_equal(listed(lib), expected_functions());
}

/* After FUNCTION FLUSH or FUNCTION DELETE the caller still sees the real
 * result. (FLUSHALL, which every test here starts with, leaves functions.) */
static void t_function_missing(void **state) {
    (void)state;
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, g_k.retry);
    fk_args_str(&a, g_k.stream);
    fk_args_ll(&a, 10);
    assert_string_equal(listed(fk_scripts_library()), expected_functions());
    freeReplyObject(fk_t_cmd(g_c, "FUNCTION FLUSH"));
    assert_string_equal(listed(fk_scripts_library()), "");
    assert_string_equal(call(FK_LUA_PROMOTE, 2, &a), "[0,-1]");
    assert_string_equal(listed(fk_scripts_library()), expected_functions());

    /* several calls in flight when the library is deleted: each loads once
     * (the later loads answer "already exists") and gets its result */
    freeReplyObject(fk_t_cmd(g_c, "FUNCTION DELETE %s", fk_scripts_library()));
    result res[4];
    memset(res, 0, sizeof(res));
    for (int i = 0; i < 4; i++)
        assert_int_equal(fk_script_call(g_r, FK_LUA_PROMOTE, 2, &a, on_result, &res[i]), 0);
    for (int i = 0; i < 4; i++) assert_true(run_until(res_called, &res[i], 5000));
    run_until(NULL, NULL, 50);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_string_equal(res[i].text, "[0,-1]");
    }
    assert_string_equal(listed(fk_scripts_library()), expected_functions());
    /* a script error is the caller's to see, not retried */
    fk_args b;
    fk_args_init(&b);
    fk_args_str(&b, g_k.retry);
    fk_args_str(&b, g_k.stream);
    fk_args_str(&b, "not-a-number");
    const char *out = call(FK_LUA_PROMOTE, 2, &b);
    assert_true(strncmp(out, "ERR(", 4) == 0);
    assert_null(strstr(out, "Function not found"));
}

/* ---- fk_args -------------------------------------------------------------------- */

static void t_args(void **state) {
    (void)state;
    fk_args a;
    fk_args_init(&a);
    assert_int_equal(a.n, 0);
    fk_args_ll(&a, 0);
    fk_args_ll(&a, -1);
    fk_args_ll(&a, 9223372036854775807LL);
    fk_args_ll(&a, -9223372036854775807LL - 1);
    fk_args_str(&a, "");
    fk_args_mem(&a, "a\0b", 3);
    assert_int_equal(a.n, 6);
    assert_int_equal(a.len[0], 1);
    assert_memory_equal(a.v[0], "0", 1);
    assert_int_equal(a.len[1], 2);
    assert_memory_equal(a.v[1], "-1", 2);
    assert_int_equal(a.len[2], 19);
    assert_memory_equal(a.v[2], "9223372036854775807", 19);
    assert_int_equal(a.len[3], 20);
    assert_memory_equal(a.v[3], "-9223372036854775808", 20);
    assert_int_equal(a.len[4], 0);
    assert_int_equal(a.len[5], 3);
    /* FK_ARGS_MAX fits */
    fk_args_init(&a);
    for (int i = 0; i < FK_ARGS_MAX; i++) fk_args_ll(&a, i);
    assert_int_equal(a.n, FK_ARGS_MAX);
    for (int i = 0; i < FK_ARGS_MAX; i++) assert_int_equal(atoi(a.v[i]), i);
}

static const char *g_argv0; /* this binary, for t_args_overflow's child */

/* Child mode (see main): fill an fk_args one past FK_ARGS_MAX. */
static int args_overflow_child(const char *kind) {
    fk_args a;
    fk_args_init(&a);
    for (int i = 0; i < FK_ARGS_MAX; i++) fk_args_str(&a, "x");
    if (strcmp(kind, "ll") == 0) fk_args_ll(&a, 1);
    else fk_args_str(&a, "one too many");
    return 0; /* not reached if fk_args aborts */
}

/* One more than FK_ARGS_MAX is a programming error: abort, never overflow.
 * The child is a fresh exec of this binary, so that under valgrind its
 * abort does not report the parent's memory as leaked. */
static void t_args_overflow(void **state) {
    (void)state;
    const char *kinds[] = {"str", "ll"};
    for (int kind = 0; kind < 2; kind++) {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int devnull = open("/dev/null", O_WRONLY);
            if (devnull >= 0) dup2(devnull, STDERR_FILENO);
            execl(g_argv0, g_argv0, "--args-overflow", kinds[kind], (char *)NULL);
            _exit(127);
        }
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFSIGNALED(st));
        assert_int_equal(WTERMSIG(st), SIGABRT);
    }
}

/* Binary ARGV goes through FCALL unchanged (dead.lua stores `raw`). */
static void t_args_binary(void **state) {
    (void)state;
    char raw[300];
    for (size_t i = 0; i < sizeof(raw); i++) raw[i] = (char)(255 - i % 256);
    raw[0] = '\0';
    raw[150] = '\0';
    fk_key_stats_minute(&g_k, fk_now_ms(), g_minute, sizeof(g_minute));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, g_k.stream);
    fk_args_str(&a, g_k.dead);
    fk_args_str(&a, g_k.stats);
    fk_args_str(&a, g_minute);
    fk_args_str(&a, GROUP);
    fk_args_str(&a, "");
    fk_args_mem(&a, raw, sizeof(raw));
    fk_args_mem(&a, "err\0or", 6);
    fk_args_str(&a, "order");
    fk_args_str(&a, "");
    fk_args_str(&a, "msg");
    fk_args_ll(&a, 0);
    fk_args_ll(&a, 1000);
    fk_args_str(&a, "");
    assert_string_equal(call(FK_LUA_DEAD, 4, &a), "['dead']");
    redisReply *r = fk_t_cmd(g_c, "XRANGE %s - +", g_k.dead);
    assert_int_equal(r->elements, 1);
    redisReply *f = r->element[0]->element[1];
    assert_string_equal(f->element[0]->str, "raw");
    assert_int_equal(f->element[1]->len, sizeof(raw));
    assert_memory_equal(f->element[1]->str, raw, sizeof(raw));
    assert_string_equal(f->element[2]->str, "error");
    assert_int_equal(f->element[3]->len, 6);
    assert_memory_equal(f->element[3]->str, "err\0or", 6);
    freeReplyObject(r);
}

/* ---- transition.lua ------------------------------------------------------------ */

typedef struct tr {
    const char *oid, *entry, *fence, *from, *to, *reason, *ops, *charge, *payment_id;
    const char *extra_field, *extra_value;
    long long delay_ms, retention_s, lease_ms;
} tr;

static const char *transition(const tr *t) {
    char ok[FK_KEY_MAX];
    fk_key_order(&g_k, t->oid, ok, sizeof(ok));
    fk_key_stock(&g_k, "sku1", g_skey, sizeof(g_skey));
    fk_key_stats_minute(&g_k, fk_now_ms(), g_minute, sizeof(g_minute));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, ok);
    fk_args_str(&a, g_k.stream);
    fk_args_str(&a, g_skey);
    fk_args_str(&a, g_k.retry);
    fk_args_str(&a, g_k.review);
    fk_args_str(&a, g_k.stats);
    fk_args_str(&a, g_minute);
    fk_args_str(&a, g_k.notify);
    fk_args_str(&a, g_k.active);
    fk_args_str(&a, GROUP);
    fk_args_str(&a, t->entry ? t->entry : "");
    fk_args_str(&a, t->fence ? t->fence : "");
    fk_args_str(&a, t->from);
    fk_args_str(&a, t->to);
    fk_args_str(&a, t->reason ? t->reason : "");
    fk_args_str(&a, "a message");
    fk_args_str(&a, t->ops ? t->ops : "");
    fk_args_ll(&a, t->delay_ms);
    fk_args_str(&a, t->charge ? t->charge : "");
    fk_args_str(&a, t->payment_id ? t->payment_id : "");
    fk_args_ll(&a, t->retention_s);
    fk_args_str(&a, t->oid);
    fk_args_ll(&a, t->lease_ms ? t->lease_ms : 10000);
    fk_args_str(&a, t->extra_field ? t->extra_field : "");
    fk_args_str(&a, t->extra_value ? t->extra_value : "");
    fk_args_ll(&a, ORDER_TTL_MS);
    fk_args_ll(&a, PAYMENT_TTL_MS);
    return call(FK_LUA_TRANSITION, 9, &a);
}

static void seed_order(const char *oid, const char *st, const char *fence, const char *resv) {
    freeReplyObject(fk_t_cmd(g_c, "HSET %s state %s fence %s attempts 0 sku sku1 qty 2 "
                                  "lease_until 99999999999999 lease_entry 1-1",
                             okey(oid), st, fence));
    if (resv) freeReplyObject(fk_t_cmd(g_c, "HSET %s resv %s", okey(oid), resv));
}

static const char *hget(const char *oid, const char *field) { return q("HGET %s %s", okey(oid), field); }

/* The order's deadline in the active zset, -1 when it is not there. */
static long long active_at(const char *oid) {
    const char *v = q("ZSCORE %s %s", g_k.active, oid);
    return strcmp(v, "nil") == 0 ? -1 : atoll(v + 1);
}

static const char *stock(void) {
    fk_key_stock(&g_k, "sku1", g_skey, sizeof(g_skey));
    return q("LRANGE %s 0 -1", g_skey);
}

static void t_transition_stale(void **state) {
    (void)state;
    seed_order("A1", "processing", "3", "[\"c1\",\"c2\"]");
    fk_key_stock(&g_k, "sku1", g_skey, sizeof(g_skey));
    freeReplyObject(fk_t_cmd(g_c, "RPUSH %s c9", g_skey));
    char *before = snapshot();
    tr t = {.oid = "A1", .fence = "2", .from = "processing", .to = "failed",
            .reason = "payment_declined", .ops = "LVNA"};
    assert_string_equal(transition(&t), "['stale','processing','3']"); /* old fence */
    t.fence = "4";
    assert_string_equal(transition(&t), "['stale','processing','3']"); /* future fence */
    t.fence = "3";
    t.from = "pending_payment";
    assert_string_equal(transition(&t), "['stale','processing','3']"); /* wrong from */
    t.fence = "";
    assert_string_equal(transition(&t), "['stale','processing','3']"); /* unfenced, wrong from */
    t.from = "";
    assert_string_equal(transition(&t), "['stale','processing','3']");
    t.oid = "NOPE";
    t.from = "processing";
    t.fence = "1";
    assert_string_equal(transition(&t), "['stale','','']"); /* no such order */
    t.ops = "DRK";
    t.oid = "A1";
    t.fence = "3x";
    assert_string_equal(transition(&t), "['stale','processing','3']");
    assert_unchanged(before);
}

/* The ops set is kept per distinct ops string, up to 64 of them (lib.lua
 * fk_ops); past that each call makes its own. Either way a call acts on its
 * own letters only: K keeps the lease, its absence drops it. */
static void t_transition_ops_many(void **state) {
    (void)state;
    seed_order("A1", "processing", "1", NULL);
    char ops[128];
    tr t = {.oid = "A1", .fence = "1", .from = "processing", .to = "processing", .ops = ops};
    for (int i = 0; i < 80; i++) {
        /* K plus i letters no op uses: 80 distinct strings, alternately
         * with and without K */
        int keep = i % 2 == 0;
        int n = snprintf(ops, sizeof(ops), "%s", keep ? "K" : "");
        for (int k = 0; k < i; k++) ops[n++] = 'z';
        ops[n] = '\0';
        assert_string_equal(transition(&t), "['ok','1']");
        if (keep)
            assert_true(atoll(hget("A1", "lease_until") + 1) > 0);
        else
            assert_string_equal(hget("A1", "lease_until"), "nil");
    }
    /* the first strings again, cached: still their own letters */
    snprintf(ops, sizeof(ops), "K");
    assert_string_equal(transition(&t), "['ok','1']");
    assert_true(atoll(hget("A1", "lease_until") + 1) > 0);
    snprintf(ops, sizeof(ops), "z");
    assert_string_equal(transition(&t), "['ok','1']");
    assert_string_equal(hget("A1", "lease_until"), "nil");
}

static void t_transition_release(void **state) {
    (void)state;
    seed_order("A1", "processing", "3", "[\"c1\",\"c2\"]");
    fk_key_stock(&g_k, "sku1", g_skey, sizeof(g_skey));
    freeReplyObject(fk_t_cmd(g_c, "RPUSH %s c9", g_skey));
    freeReplyObject(fk_t_cmd(g_c, "ZADD %s 123 A1", g_k.active));
    tr t = {.oid = "A1", .fence = "3", .from = "processing", .to = "failed",
            .reason = "payment_declined", .ops = "L", .charge = "declined"};
    assert_string_equal(transition(&t), "['ok','3']");
    assert_int_equal(active_at("A1"), -1); /* final: no longer active */
    assert_string_equal(stock(), "['c9','c1','c2']");
    assert_string_equal(hget("A1", "resv"), "nil");
    assert_string_equal(hget("A1", "state"), "'failed'");
    assert_string_equal(hget("A1", "reason"), "'payment_declined'");
    assert_string_equal(hget("A1", "message"), "'a message'");
    assert_string_equal(hget("A1", "charge"), "'declined'");
    assert_string_equal(hget("A1", "lease_until"), "nil");
    assert_string_equal(hget("A1", "lease_entry"), "nil");
    assert_string_equal(hget("A1", "fence"), "'3'");
    assert_true(atoll(hget("A1", "updated_at") + 1) > 1600000000000LL);
    assert_int_equal(stat_of("failed"), 1);
    assert_int_equal(stat_of("reason:payment_declined"), 1);
    /* the same call again is stale now: the codes are not returned twice */
    assert_string_equal(transition(&t), "['stale','failed','3']");
    assert_string_equal(stock(), "['c9','c1','c2']");
    assert_int_equal(stat_of("failed"), 1);

    /* L with nothing reserved: no stock moves */
    seed_order("A2", "processing", "1", NULL);
    tr u = {.oid = "A2", .fence = "1", .from = "processing", .to = "failed",
            .reason = "risk_rejected", .ops = "L"};
    assert_string_equal(transition(&u), "['ok','1']");
    assert_string_equal(stock(), "['c9','c1','c2']");

    /* a reservation edited into something that is no list of codes is not
     * pushed into the stock: refused before anything is written */
    /* nor one that holds a code twice (two buyers would get it) or an
     * empty code (a buyer would get nothing) */
    const char *bad[] = {"garbage", "{\"a\":\"c1\"}", "[1,2]", "[\"c1\",[\"c2\"]]", "\"c1\"",
                         "[\"c1\",\"c1\"]", "[\"c1\",\"\"]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        seed_order("A3", "processing", "1", bad[i]);
        tr v = {.oid = "A3", .fence = "1", .from = "processing", .to = "failed",
                .reason = "risk_rejected", .ops = "L"};
        char *before = snapshot();
        assert_non_null(strstr(transition(&v), "resv is not a JSON list of codes"));
        assert_unchanged(before);
    }
    /* an empty list is nothing to give back */
    seed_order("A4", "processing", "1", "[]");
    tr w = {.oid = "A4", .fence = "1", .from = "processing", .to = "failed",
            .reason = "risk_rejected", .ops = "L"};
    assert_string_equal(transition(&w), "['ok','1']");
    assert_string_equal(hget("A4", "resv"), "nil");
    assert_string_equal(stock(), "['c9','c1','c2']");
}

/* S: reserve qty codes when the order holds none, all or none. A shortfall
 * answers {'nostock', codes there are} and leaves the list as it was, in its
 * order; with enough, the head of the list becomes the reservation. */
static void t_transition_reserve(void **state) {
    (void)state;
    seed_order("A1", "failed", "4", NULL); /* qty 2 */
    fk_key_stock(&g_k, "sku1", g_skey, sizeof(g_skey));
    tr t = {.oid = "A1", .fence = "4", .from = "failed", .to = "processing", .ops = "SK"};
    char *before = snapshot();
    assert_string_equal(transition(&t), "['nostock',0]"); /* no list at all */
    assert_unchanged(before);
    freeReplyObject(fk_t_cmd(g_c, "RPUSH %s c1", g_skey));
    before = snapshot();
    assert_string_equal(transition(&t), "['nostock',1]");
    assert_unchanged(before);
    assert_string_equal(stock(), "['c1']");
    freeReplyObject(fk_t_cmd(g_c, "RPUSH %s c2 c3", g_skey));
    assert_string_equal(transition(&t), "['ok','4']");
    assert_string_equal(hget("A1", "resv"), "'[\"c1\",\"c2\"]'");
    assert_string_equal(hget("A1", "state"), "'processing'");
    assert_string_equal(stock(), "['c3']");
    /* held already: S takes nothing more */
    tr u = {.oid = "A1", .fence = "4", .from = "processing", .to = "processing", .ops = "SK"};
    assert_string_equal(transition(&u), "['ok','4']");
    assert_string_equal(hget("A1", "resv"), "'[\"c1\",\"c2\"]'");
    assert_string_equal(stock(), "['c3']");
    /* S keeps a reservation the order holds only if it is qty distinct
     * codes: an operator's retry (SFQ) or resolve (SDF) of a record edited
     * by hand is refused before anything is written */
    const char *held[] = {"garbage", "[]", "[\"c1\"]", "[\"c1\",\"c1\"]"};
    for (size_t i = 0; i < sizeof(held) / sizeof(*held); i++) {
        seed_order("A5", "failed", "1", held[i]);
        tr h = {.oid = "A5", .fence = "1", .from = "failed", .to = "processing", .ops = "SFQ"};
        before = snapshot();
        assert_string_equal(transition(&h), "['noresv','unreadable']");
        assert_unchanged(before);
        seed_order("A5", "manual_review", "1", held[i]);
        tr c = {.oid = "A5", .fence = "1", .from = "manual_review", .to = "completed",
                .ops = "SDF"};
        before = snapshot();
        assert_string_equal(transition(&c), "['noresv','unreadable']");
        assert_unchanged(before);
    }
    /* an operator's S+F on a record whose fence was edited into garbage:
     * refused before S takes a code (Lua does not roll back) */
    freeReplyObject(fk_t_cmd(g_c, "RPUSH %s c4 c5", g_skey));
    seed_order("A2", "failed", "x", NULL);
    tr f = {.oid = "A2", .fence = "x", .from = "failed", .to = "processing", .ops = "SFQ"};
    before = snapshot();
    assert_non_null(strstr(transition(&f), "fence is not an integer"));
    assert_unchanged(before);
    /* a qty edited by hand: refused before S takes a code. 20000 once
     * emptied the list, as the shortfall's push-back could not unpack it */
    const char *qty[] = {"20000", "101", "0", "-1", "1e1", "0x2", " 2", "2.0", "nan", ""};
    for (size_t i = 0; i < sizeof(qty) / sizeof(*qty); i++) {
        seed_order("A3", "failed", "1", NULL);
        freeReplyObject(fk_t_cmd(g_c, "HSET %s qty %s", okey("A3"), qty[i]));
        tr g = {.oid = "A3", .fence = "1", .from = "failed", .to = "processing", .ops = "SFQ"};
        before = snapshot();
        assert_non_null(strstr(transition(&g), "qty is not an integer from 1 to 100"));
        assert_unchanged(before);
    }
}

/* The retry figures (attempts:N, retry_ms_*) count settlements, not a
 * wait for a human; an operator's fresh attempt budget starts a new run,
 * so the time the order waited for the operator is no retry duration. */
static void t_retry_figures(void **state) {
    (void)state;
    long long now = fk_now_ms();
    seed_order("A1", "processing", "2", "[\"c1\",\"c2\"]");
    freeReplyObject(fk_t_cmd(g_c, "HSET %s attempts 3 first_fail_at %lld", okey("A1"),
                             now - 60000));
    tr v = {.oid = "A1", .fence = "2", .from = "processing", .to = "manual_review",
            .reason = "payment_unknown", .ops = "V"};
    assert_string_equal(transition(&v), "['ok','2']");
    assert_int_equal(stat_of("manual_review"), 1);
    assert_int_equal(stat_of("attempts:3"), 0);
    assert_int_equal(stat_of("retry_ms_count"), 0);
    /* the operator sends it back with a fresh budget: a new run */
    tr p = {.oid = "A1", .fence = "2", .from = "manual_review", .to = "processing",
            .ops = "FQ", .extra_field = "attempts", .extra_value = "0"};
    assert_string_equal(transition(&p), "['ok','3']");
    assert_string_equal(hget("A1", "attempts"), "'0'");
    assert_string_equal(hget("A1", "first_fail_at"), "nil");
    tr d = {.oid = "A1", .fence = "3", .from = "processing", .to = "completed", .ops = "D",
            .charge = "paid"};
    assert_string_equal(transition(&d), "['ok','3']");
    assert_int_equal(stat_of("attempts:0"), 1);
    assert_int_equal(stat_of("attempts:3"), 0);
    assert_int_equal(stat_of("retry_ms_count"), 0); /* no failure in this run */
}

static void t_transition_deliver(void **state) {
    (void)state;
    seed_order("A1", "processing", "5", "[\"c1\",\"c2\"]");
    char *before_stock = strdup(stock());
    tr t = {.oid = "A1", .fence = "5", .from = "processing", .to = "completed", .ops = "DN",
            .charge = "paid", .payment_id = "pay-1"};
    assert_string_equal(transition(&t), "['ok','5']");
    assert_string_equal(hget("A1", "codes"), "'[\"c1\",\"c2\"]'");
    assert_string_equal(hget("A1", "resv"), "nil");
    assert_string_equal(hget("A1", "state"), "'completed'");
    assert_string_equal(hget("A1", "payment_id"), "'pay-1'");
    assert_string_equal(hget("A1", "notify"), "'pending'");
    /* what a completed record drops: reason, charge; the fence (5) stays */
    assert_string_equal(hget("A1", "reason"), "nil");
    assert_string_equal(hget("A1", "charge"), "nil");
    assert_string_equal(hget("A1", "fence"), "'5'");
    assert_true(strcmp(q("ZSCORE %s A1", g_k.notify), "nil") != 0);
    assert_string_equal(stock(), before_stock);
    free(before_stock);
    assert_int_equal(stat_of("completed"), 1);
    assert_int_equal(stat_of("attempts:0"), 1);
    /* retention: a finished record expires */
    assert_true(atoll(q("TTL %s", okey("A1"))) == -1); /* retention 0 = keep */

    /* D without a reservation: {'noresv'}, nothing changes */
    seed_order("A2", "processing", "2", NULL);
    char *before = snapshot();
    tr u = {.oid = "A2", .fence = "2", .from = "processing", .to = "completed", .ops = "DA"};
    assert_string_equal(transition(&u), "['noresv']");
    assert_unchanged(before);

    /* a reservation edited by hand is never delivered: not garbage, not
     * an empty list, not a code twice or an empty one, not a count other
     * than qty (2). {'noresv', 'unreadable'}: the worker or reaper sends
     * the order to review */
    const char *bad[] = {"garbage",        "[]",
                         "[\"c1\",\"c1\"]",  "[\"c1\",\"\"]",
                         "[\"c1\"]",         "[\"c1\",\"c2\",\"c3\"]",
                         "{\"a\":\"c1\",\"b\":\"c2\"}", "[\"c1\",2]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        seed_order("A4", "processing", "2", bad[i]);
        before = snapshot();
        tr v = {.oid = "A4", .fence = "2", .from = "processing", .to = "completed", .ops = "DNA"};
        assert_string_equal(transition(&v), "['noresv','unreadable']");
        assert_unchanged(before);
    }
    /* nor when the record's qty is no count */
    seed_order("A4", "processing", "2", "[\"c1\",\"c2\"]");
    freeReplyObject(fk_t_cmd(g_c, "HSET %s qty 2x", okey("A4")));
    before = snapshot();
    tr x = {.oid = "A4", .fence = "2", .from = "processing", .to = "completed", .ops = "D"};
    assert_string_equal(transition(&x), "['noresv','unreadable']");
    assert_unchanged(before);

    /* with a retention the record expires */
    seed_order("A3", "processing", "1", "[\"c7\",\"c8\"]");
    tr w = {.oid = "A3", .fence = "1", .from = "processing", .to = "completed", .ops = "D",
            .retention_s = 3600};
    assert_string_equal(transition(&w), "['ok','1']");
    assert_string_equal(hget("A3", "fence"), "nil"); /* taken once: dropped */
    long long ttl = atoll(q("TTL %s", okey("A3")));
    assert_true(ttl > 3500 && ttl <= 3600);
}

static void t_transition_retry(void **state) {
    (void)state;
    seed_order("A1", "processing", "7", "[\"c1\"]");
    freeReplyObject(fk_t_cmd(g_c, "HSET %s attempts 2", okey("A1")));
    long long now = redis_now_ms();
    tr t = {.oid = "A1", .fence = "7", .from = "processing", .to = "processing", .ops = "R",
            .delay_ms = 5000, .charge = "unknown"};
    freeReplyObject(fk_t_cmd(g_c, "ZADD %s 123 A1", g_k.active));
    assert_string_equal(transition(&t), "['ok','7']");
    assert_int_equal(active_at("A1"), 123); /* same state: the deadline stands */
    assert_string_equal(hget("A1", "attempts"), "'3'");
    assert_string_equal(hget("A1", "resv"), "'[\"c1\"]'"); /* kept across retries */
    assert_string_equal(hget("A1", "lease_until"), "nil"); /* no K: lease dropped */
    long long due = atoll(q("ZSCORE %s A1", g_k.retry) + 1);
    assert_true(due >= now + 5000 && due <= now + 6000);
    long long first = atoll(hget("A1", "first_fail_at") + 1);
    assert_true(first >= now && first <= now + 1000);
    assert_int_equal(stat_of("retries"), 1);
    /* second retry: attempts 4, first_fail_at kept, lease extended with K */
    tr u = t;
    u.ops = "RK";
    u.delay_ms = 100;
    u.lease_ms = 20000;
    assert_string_equal(transition(&u), "['ok','7']");
    assert_string_equal(hget("A1", "attempts"), "'4'");
    assert_int_equal(atoll(hget("A1", "first_fail_at") + 1), first);
    long long lease = atoll(hget("A1", "lease_until") + 1);
    assert_true(lease >= now + 20000 && lease <= now + 21000);
    due = atoll(q("ZSCORE %s A1", g_k.retry) + 1);
    assert_true(due >= now + 100 && due <= now + 1100);
    assert_int_equal(stat_of("retries"), 2);
    assert_int_equal(stat_of("processing"), 0); /* not final: not counted */
    /* a count that is not an integer: refused before anything is written */
    const char *bad[] = {"x", "1.5", "0x10", " 4", "4 ", "", "1234567890123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        freeReplyObject(fk_t_cmd(g_c, "HSET %s attempts %s", okey("A1"), bad[i]));
        char *before = snapshot();
        assert_non_null(strstr(transition(&u), "attempts is not an integer"));
        assert_unchanged(before);
    }
    freeReplyObject(fk_t_cmd(g_c, "HSET %s attempts 4", okey("A1")));
    /* R with the extra field setting attempts: the extra value + 1 */
    tr e = t;
    e.ops = "RK";
    e.extra_field = "attempts";
    e.extra_value = "0";
    assert_string_equal(transition(&e), "['ok','7']");
    assert_string_equal(hget("A1", "attempts"), "'1'");
    assert_int_equal(atoll(hget("A1", "first_fail_at") + 1), first);
    assert_int_equal(stat_of("retries"), 3);
    /* a record without attempts or first_fail_at: 1, and now */
    seed_order("A5", "processing", "1", NULL);
    freeReplyObject(fk_t_cmd(g_c, "HDEL %s attempts", okey("A5")));
    tr f = {.oid = "A5", .fence = "1", .from = "processing", .to = "processing", .ops = "R",
            .delay_ms = 10};
    assert_string_equal(transition(&f), "['ok','1']");
    assert_string_equal(hget("A5", "attempts"), "'1'");
    assert_true(atoll(hget("A5", "first_fail_at") + 1) >= now);
    freeReplyObject(fk_t_cmd(g_c, "HSET %s attempts 4", okey("A1")));

    /* P: a status poll, counted in polls, not attempts */
    tr p = {.oid = "A1", .fence = "7", .from = "processing", .to = "pending_payment",
            .ops = "P", .delay_ms = 2000};
    assert_string_equal(transition(&p), "['ok','7']");
    assert_string_equal(hget("A1", "polls"), "'1'");
    assert_string_equal(hget("A1", "attempts"), "'4'");
    assert_string_equal(hget("A1", "state"), "'pending_payment'");
    long long dl = active_at("A1"); /* a new state: the payment deadline */
    assert_true(dl >= now + PAYMENT_TTL_MS && dl <= now + PAYMENT_TTL_MS + 1000);

    /* K out of pending_payment: a worker's order gets the order TTL, a
     * reaper's the end of its lease (a dead reaper's order comes back then) */
    seed_order("A6", "pending_payment", "2", NULL);
    tr k = {.oid = "A6", .fence = "2", .from = "pending_payment", .to = "processing",
            .ops = "K", .charge = "paid", .lease_ms = 5000};
    assert_string_equal(transition(&k), "['ok','2']");
    dl = active_at("A6");
    assert_true(dl >= now + ORDER_TTL_MS && dl <= now + ORDER_TTL_MS + 1000);
    seed_order("A7", "pending_payment", "2", NULL);
    freeReplyObject(fk_t_cmd(g_c, "HSET %s lease_entry reaper", okey("A7")));
    k.oid = "A7";
    assert_string_equal(transition(&k), "['ok','2']");
    dl = active_at("A7");
    assert_true(dl >= now + 5000 && dl <= now + 6000);
    assert_int_equal(dl, atoll(hget("A7", "lease_until") + 1));

    /* V: to review, with an extra field */
    tr v = {.oid = "A1", .fence = "7", .from = "pending_payment", .to = "manual_review",
            .reason = "payment_unknown", .ops = "V", .extra_field = "note",
            .extra_value = "x y", .retention_s = 60};
    assert_string_equal(transition(&v), "['ok','7']");
    assert_true(strcmp(q("ZSCORE %s A1", g_k.review), "nil") != 0);
    assert_string_equal(hget("A1", "note"), "'x y'");
    assert_int_equal(stat_of("manual_review"), 1);
    assert_int_equal(active_at("A1"), -1);
    assert_int_equal(atoll(q("TTL %s", okey("A1"))), -1); /* review never expires */
}

static void t_transition_ack(void **state) {
    (void)state;
    char id[64];
    pending_entry(id, sizeof(id), "order", "{}");
    assert_int_equal(pending_count(), 1);
    seed_order("A1", "processing", "1", NULL);
    tr t = {.oid = "A1", .entry = id, .fence = "1", .from = "processing", .to = "processing",
            .ops = "R", .delay_ms = 10};
    assert_string_equal(transition(&t), "['ok','1']");
    assert_int_equal(pending_count(), 1); /* no A: still pending */
    t.ops = "RA";
    assert_string_equal(transition(&t), "['ok','1']");
    assert_int_equal(pending_count(), 0);
}

/* ---- promote.lua --------------------------------------------------------------- */

static const char *promote(long long batch) {
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, g_k.retry);
    fk_args_str(&a, g_k.stream);
    fk_args_ll(&a, batch);
    return call(FK_LUA_PROMOTE, 2, &a);
}

static void t_promote(void **state) {
    (void)state;
    assert_string_equal(promote(10), "[0,-1]");
    long long now = redis_now_ms();
    freeReplyObject(fk_t_cmd(g_c, "ZADD %s %lld a %lld b %lld c", g_k.retry, now - 1000,
                             now - 10, now + 60000));
    long long moved, wait;
    assert_int_equal(sscanf(promote(10), "[%lld,%lld]", &moved, &wait), 2);
    assert_int_equal(moved, 2);
    assert_true(wait > 58000 && wait <= 60000);
    /* entries: retry = '{order_id}@{due ms}', oldest due first */
    redisReply *r = fk_t_cmd(g_c, "XRANGE %s - +", g_k.stream);
    assert_int_equal(r->elements, 2);
    assert_string_equal(r->element[0]->element[1]->element[0]->str, "retry");
    char want[64];
    snprintf(want, sizeof(want), "a@%lld", now - 1000);
    assert_string_equal(r->element[0]->element[1]->element[1]->str, want);
    snprintf(want, sizeof(want), "b@%lld", now - 10);
    assert_string_equal(r->element[1]->element[1]->element[1]->str, want);
    freeReplyObject(r);
    assert_string_equal(q("ZRANGE %s 0 -1", g_k.retry), "['c']");
    /* nothing due: nothing moves */
    assert_int_equal(sscanf(promote(10), "[%lld,%lld]", &moved, &wait), 2);
    assert_int_equal(moved, 0);
    assert_int_equal(atoll(q("XLEN %s", g_k.stream)), 2);

    /* the batch bounds one call; the rest is due now (wait 0) */
    freeReplyObject(fk_t_cmd(g_c, "DEL %s %s", g_k.retry, g_k.stream));
    for (int i = 0; i < 5; i++)
        freeReplyObject(fk_t_cmd(g_c, "ZADD %s %lld d%d", g_k.retry, now - 100 + i, i));
    assert_string_equal(promote(2), "[2,0]");
    assert_string_equal(promote(2), "[2,0]");
    assert_string_equal(promote(2), "[1,-1]");
    assert_string_equal(promote(2), "[0,-1]");
    assert_int_equal(atoll(q("XLEN %s", g_k.stream)), 5);
}

/* Many promoters at once never promote an id twice. */
static void t_promote_concurrent(void **state) {
    (void)state;
    long long now = redis_now_ms();
    for (int i = 0; i < 300; i++)
        freeReplyObject(fk_t_cmd(g_c, "ZADD %s %lld id%03d", g_k.retry, now - 1000 + i % 7, i));
    /* a second connection, so calls also interleave across clients */
    fk_redis *r2 = NULL;
    fk_redis_target t;
    char err[128];
    assert_int_equal(fk_redis_url_parse(g_srv.url, &t, err, sizeof(err)), 0);
    fk_redis_options o;
    memset(&o, 0, sizeof(o));
    o.name = "second";
    assert_int_equal(fk_redis_open(&r2, &g_loop, &t, &o, NULL, NULL), 0);
    for (int i = 0; i < 200 && !fk_redis_ready(r2); i++) run_until(NULL, NULL, 10);
    assert_true(fk_redis_ready(r2));

    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, g_k.retry);
    fk_args_str(&a, g_k.stream);
    fk_args_ll(&a, 64);
    result res[12];
    memset(res, 0, sizeof(res));
    for (int i = 0; i < 12; i++)
        assert_int_equal(fk_script_call(i % 2 ? r2 : g_r, FK_LUA_PROMOTE, 2, &a, on_result,
                                        &res[i]),
                         0);
    for (int i = 0; i < 12; i++) assert_true(run_until(res_called, &res[i], 5000));
    long long total = 0;
    for (int i = 0; i < 12; i++) {
        long long moved, wait;
        assert_int_equal(res[i].calls, 1);
        if (sscanf(res[i].text, "[%lld,%lld]", &moved, &wait) != 2)
            fail_msg("promote answered %s", res[i].text);
        assert_true(moved >= 0 && moved <= 64);
        total += moved;
    }
    assert_int_equal(total, 300);
    assert_int_equal(atoll(q("ZCARD %s", g_k.retry)), 0);
    /* every id exactly once on the stream */
    redisReply *r = fk_t_cmd(g_c, "XRANGE %s - +", g_k.stream);
    assert_int_equal(r->elements, 300);
    static int seen[300];
    memset(seen, 0, sizeof(seen));
    for (size_t i = 0; i < r->elements; i++) {
        const char *v = r->element[i]->element[1]->element[1]->str;
        assert_non_null(strchr(v, '@'));
        int k = atoi(v + 2);
        assert_true(k >= 0 && k < 300);
        seen[k]++;
    }
    freeReplyObject(r);
    for (int i = 0; i < 300; i++) assert_int_equal(seen[i], 1);

    int done = 0;
    fk_redis_close(r2, on_closed, &done);
    assert_true(run_until(flag_set, &done, 2000));
}

/* ---- dead.lua ------------------------------------------------------------------- */

static const char *dead(const char *entry, const char *oid, const char *raw, int with_okey) {
    char ok[FK_KEY_MAX];
    fk_key_stats_minute(&g_k, fk_now_ms(), g_minute, sizeof(g_minute));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, g_k.stream);
    fk_args_str(&a, g_k.dead);
    fk_args_str(&a, g_k.stats);
    fk_args_str(&a, g_minute);
    if (with_okey) {
        fk_key_order(&g_k, oid, ok, sizeof(ok));
        fk_args_str(&a, ok);
    }
    fk_args_str(&a, GROUP);
    fk_args_str(&a, entry);
    fk_args_str(&a, raw);
    fk_args_str(&a, "qty: must be an integer from 1 to 100");
    fk_args_str(&a, "order");
    fk_args_str(&a, oid);
    fk_args_str(&a, "The order could not be read.");
    fk_args_ll(&a, 0);
    fk_args_ll(&a, 1000);
    fk_args_str(&a, "");
    return call(FK_LUA_DEAD, with_okey ? 5 : 4, &a);
}

static void t_dead(void **state) {
    (void)state;
    char id[64];
    pending_entry(id, sizeof(id), "order", "{\"order_id\":\"A1\",\"qty\":0}");
    freeReplyObject(fk_t_cmd(g_c, "HSET %s state completed codes [\"x\"] sku s qty 1 fence 4",
                             okey("A1")));
    redisReply *d0 = fk_t_cmd(g_c, "DUMP %s", okey("A1"));
    assert_string_equal(dead(id, "A1", "{\"order_id\":\"A1\",\"qty\":0}", 1), "['dead']");
    /* the existing order is untouched by garbage that names it */
    redisReply *d1 = fk_t_cmd(g_c, "DUMP %s", okey("A1"));
    assert_int_equal(d0->len, d1->len);
    assert_memory_equal(d0->str, d1->str, d0->len);
    freeReplyObject(d0);
    freeReplyObject(d1);
    assert_int_equal(pending_count(), 0);
    assert_int_equal(atoll(q("XLEN %s", g_k.dead)), 1);
    redisReply *r = fk_t_cmd(g_c, "XRANGE %s - +", g_k.dead);
    redisReply *f = r->element[0]->element[1];
    char fields[512] = "";
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        strcat(fields, f->element[i]->str);
        strcat(fields, " ");
    }
    assert_string_equal(fields, "raw error source_id kind order_id ");
    assert_string_equal(f->element[5]->str, id);
    freeReplyObject(r);
    assert_int_equal(stat_of("dead"), 1);
    assert_int_equal(stat_of("submitted"), 0);

    /* again for the same entry: it is no longer pending, nothing happens */
    char *before = snapshot();
    assert_string_equal(dead(id, "A1", "x", 1), "['gone']");
    assert_unchanged(before);

    /* a dead stream of another type: an error, and the entry stays pending
     * with nothing written (it was acknowledged first, and so lost) */
    pending_entry(id, sizeof(id), "order", "{\"order_id\":\"W1\",\"qty\":0}");
    freeReplyObject(fk_t_cmd(g_c, "SET %s oops", g_k.dead));
    before = snapshot();
    assert_non_null(strstr(dead(id, "W1", "x", 0), "WRONGTYPE"));
    assert_unchanged(before);
    assert_int_equal(pending_count(), 1);
    freeReplyObject(fk_t_cmd(g_c, "DEL %s", g_k.dead));
    assert_string_equal(dead(id, "W1", "x", 0), "['dead']");
    assert_int_equal(pending_count(), 0);
    assert_int_equal(stat_of("dead"), 2);
    freeReplyObject(fk_t_cmd(g_c, "XTRIM %s MAXLEN 1", g_k.dead));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s dead 1", g_k.stats));

    /* an entry id that never existed is not pending either */
    before = snapshot();
    assert_string_equal(dead("999999999-0", "A9", "x", 1), "['gone']");
    assert_unchanged(before);

    /* no record yet: failed / invalid_order */
    pending_entry(id, sizeof(id), "order", "garbage");
    assert_string_equal(dead(id, "B1", "garbage", 1), "['dead']");
    assert_string_equal(hget("B1", "state"), "'failed'");
    assert_string_equal(hget("B1", "reason"), "'invalid_order'");
    assert_string_equal(hget("B1", "message"), "'The order could not be read.'");
    assert_int_equal(stat_of("submitted"), 1);
    assert_int_equal(stat_of("failed"), 1);
    assert_int_equal(stat_of("reason:invalid_order"), 1);
    assert_int_equal(stat_of("dead"), 2);

    /* unreadable id: no order key at all */
    pending_entry(id, sizeof(id), "order", "{{{");
    long long keys_before = atoll(q("DBSIZE"));
    assert_string_equal(dead(id, "", "{{{", 0), "['dead']");
    assert_int_equal(atoll(q("DBSIZE")), keys_before);
    assert_int_equal(stat_of("dead"), 3);
    assert_int_equal(pending_count(), 0);
}

/* ---- accept.lua ----------------------------------------------------------------- */

typedef struct acc {
    const char *entry, *oid, *idem, *sku;
    long long qty, amount;
    const char *mode; /* "paid" | "charge" | "send" */
    long long lease_ms;
    const char *ckey; /* the buyer's cooldown hash (KEYS[12]); NULL = none */
} acc;

static const char *accept_(const acc *x) {
    char ok[FK_KEY_MAX], wk[FK_KEY_MAX];
    fk_key_order(&g_k, x->oid, ok, sizeof(ok));
    fk_key_order(&g_k, x->idem, wk, sizeof(wk));
    fk_key_idem(&g_k, x->idem, g_ikey, sizeof(g_ikey));
    fk_key_stock(&g_k, x->sku, g_skey, sizeof(g_skey));
    fk_key_stats_minute(&g_k, fk_now_ms(), g_minute, sizeof(g_minute));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, ok);
    fk_args_str(&a, g_ikey);
    fk_args_str(&a, g_skey);
    fk_args_str(&a, g_k.stream);
    fk_args_str(&a, g_k.stats);
    fk_args_str(&a, g_minute);
    fk_args_str(&a, g_k.retry);
    fk_args_str(&a, g_k.notify);
    fk_args_str(&a, g_k.active);
    fk_args_str(&a, wk);
    fk_args_str(&a, g_k.review);
    if (x->ckey) fk_args_str(&a, x->ckey);
    fk_args_str(&a, GROUP);
    fk_args_str(&a, x->entry);
    fk_args_str(&a, x->oid);
    fk_args_str(&a, x->idem);
    fk_args_str(&a, x->sku);
    fk_args_ll(&a, x->qty);
    fk_args_ll(&a, x->amount);
    fk_args_str(&a, "CNY");
    fk_args_str(&a, "buyer@example.com");
    fk_args_ll(&a, 86400);
    fk_args_str(&a, x->mode);
    fk_args_ll(&a, x->lease_ms ? x->lease_ms : 10000);
    fk_args_ll(&a, 0);
    fk_args_str(&a, "0");
    fk_args_ll(&a, ORDER_TTL_MS);
    return call(FK_LUA_ACCEPT, x->ckey ? 12 : 11, &a);
}

/* ---- notify_done.lua ------------------------------------------------------------ */

static const char *notify_done_(const char *oid, const char *outcome) {
    char ok[FK_KEY_MAX];
    fk_key_order(&g_k, oid, ok, sizeof(ok));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, ok);
    fk_args_str(&a, g_k.notify);
    fk_args_str(&a, oid);
    fk_args_str(&a, outcome);
    fk_args_ll(&a, 1000);
    fk_args_ll(&a, 3);
    fk_args_str(&a, outcome[0] == 'f' ? "http 500" : "");
    return call(FK_LUA_NOTIFY_DONE, 2, &a);
}

/* A failure is retried, the last one marks notify_failed; a stalled
 * sender's late failure after another sender delivered changes nothing. */
static void t_notify_done(void **state) {
    (void)state;
    freeReplyObject(fk_t_cmd(g_c, "HSET %s state completed notify pending", okey("N1")));
    assert_string_equal(notify_done_("N1", "fail"), "['retry',1]");
    assert_true(strcmp(q("ZSCORE %s N1", g_k.notify), "nil") != 0);
    assert_string_equal(notify_done_("N1", "ok"), "['notified',2]");
    assert_string_equal(q("ZSCORE %s N1", g_k.notify), "nil");
    char *before = snapshot();
    assert_string_equal(notify_done_("N1", "fail"), "['notified',2]");
    assert_unchanged(before);
    freeReplyObject(fk_t_cmd(g_c, "HSET %s state completed notify pending", okey("N2")));
    notify_done_("N2", "fail");
    notify_done_("N2", "fail");
    assert_string_equal(notify_done_("N2", "fail"), "['notify_failed',3]");
    assert_string_equal(hget("N2", "notify"), "'notify_failed'");
    assert_string_equal(q("ZSCORE %s N2", g_k.notify), "nil");
    /* a count edited into garbage starts again from 0; the outcome is
     * recorded all the same (an HINCRBY on it failed before `notified` was
     * written, and the shop got the webhook again and again) */
    const char *bad[] = {"x", "1e3", "-5", "0x10", "9999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        freeReplyObject(fk_t_cmd(g_c, "HSET %s state completed notify pending notify_attempts %s",
                                 okey("N3"), bad[i]));
        freeReplyObject(fk_t_cmd(g_c, "ZADD %s 1 N3", g_k.notify));
        assert_string_equal(notify_done_("N3", "ok"), "['notified',1]");
        assert_string_equal(hget("N3", "notify"), "'notified'");
        assert_string_equal(q("ZSCORE %s N3", g_k.notify), "nil");
    }
    freeReplyObject(fk_t_cmd(g_c, "HSET %s notify pending notify_attempts x", okey("N3")));
    assert_string_equal(notify_done_("N3", "fail"), "['retry',1]");
    assert_string_equal(hget("N3", "notify_attempts"), "'1'");
}

/* ---- payment.lua ------------------------------------------------------------ */

static const char *payment_(const char *entry, const char *oid, const char *status,
                            const char *pid) {
    char ok[FK_KEY_MAX];
    fk_key_order(&g_k, oid, ok, sizeof(ok));
    fk_key_stock(&g_k, "sku1", g_skey, sizeof(g_skey));
    fk_key_stats_minute(&g_k, fk_now_ms(), g_minute, sizeof(g_minute));
    fk_args a;
    fk_args_init(&a);
    const char *keys[] = {ok, g_k.stream, g_skey, g_k.stats, g_minute, g_k.review, g_k.notify,
                          g_k.retry, g_k.active};
    for (int i = 0; i < 9; i++) fk_args_str(&a, keys[i]);
    const char *argv[] = {GROUP, entry, oid, status, pid, "60", "600", "m completed",
                          "m declined", "m late", "0", "m noresv"};
    for (int i = 0; i < 12; i++) fk_args_str(&a, argv[i]);
    return call(FK_LUA_PAYMENT, 9, &a);
}

/* A decline that cannot release the reservation (resv edited into garbage,
 * the stock key of another type) is refused before anything is written;
 * a payment for an order in review is kept on its record. */
static void t_payment(void **state) {
    (void)state;
    char id[64];
    pending_entry(id, sizeof(id), "payment", "{}");
    seed_order("P1", "processing", "1", "not json");
    freeReplyObject(fk_t_cmd(g_c, "ZADD %s 5 P1", g_k.active));
    char *before = snapshot();
    assert_non_null(strstr(payment_(id, "P1", "declined", ""), "resv is not a JSON list of codes"));
    assert_unchanged(before);
    seed_order("P2", "processing", "1", "[\"c1\"]");
    fk_key_stock(&g_k, "sku1", g_skey, sizeof(g_skey));
    freeReplyObject(fk_t_cmd(g_c, "SET %s oops", g_skey));
    before = snapshot();
    assert_non_null(strstr(payment_(id, "P2", "declined", ""), "not a list of codes"));
    assert_unchanged(before);
    assert_int_equal(pending_count(), 1);
    /* the same decline with the stock key fixed: released, failed */
    freeReplyObject(fk_t_cmd(g_c, "DEL %s", g_skey));
    assert_string_equal(payment_(id, "P2", "declined", ""), "['failed']");
    assert_string_equal(stock(), "['c1']");
    assert_int_equal(pending_count(), 0);
    /* in review: recorded, no transition */
    pending_entry(id, sizeof(id), "payment", "{}");
    seed_order("P3", "manual_review", "2", "[\"c2\"]");
    assert_string_equal(payment_(id, "P3", "succeeded", "pay-7"), "['noted','manual_review']");
    assert_string_equal(hget("P3", "state"), "'manual_review'");
    assert_string_equal(hget("P3", "pay_status"), "'succeeded'");
    assert_string_equal(hget("P3", "payment_id"), "'pay-7'");
    assert_string_equal(hget("P3", "resv"), "'[\"c2\"]'");
    assert_int_equal(pending_count(), 0);

    /* a decline after a success, in any state, changes nothing: callbacks
     * come in any order, and a stale decline must not tell a charged buyer
     * that they were not charged */
    pending_entry(id, sizeof(id), "payment", "{}");
    assert_string_equal(payment_(id, "P3", "declined", "pay-old"), "['noop','manual_review']");
    assert_int_equal(pending_count(), 0);
    assert_string_equal(hget("P3", "pay_status"), "'succeeded'");
    assert_string_equal(hget("P3", "payment_id"), "'pay-7'");
    /* a stub: the success stays for accept.lua to merge */
    pending_entry(id, sizeof(id), "payment", "{}");
    assert_string_equal(payment_(id, "P4", "succeeded", "pay-2"), "['stub']");
    pending_entry(id, sizeof(id), "payment", "{}");
    assert_string_equal(payment_(id, "P4", "declined", "pay-1"), "['noop','none']");
    assert_string_equal(hget("P4", "pay_status"), "'succeeded'");
    assert_string_equal(hget("P4", "payment_id"), "'pay-2'");
    /* processing, and the gateway said paid (charge=paid): the codes stay
     * held for the delivery under way, the fence is not bumped */
    seed_order("P5", "processing", "3", "[\"c5\",\"c7\"]");
    freeReplyObject(fk_t_cmd(g_c, "HSET %s charge paid", okey("P5")));
    pending_entry(id, sizeof(id), "payment", "{}");
    assert_string_equal(payment_(id, "P5", "declined", ""), "['noop','processing']");
    assert_string_equal(hget("P5", "state"), "'processing'");
    assert_string_equal(hget("P5", "fence"), "'3'");
    assert_string_equal(hget("P5", "resv"), "'[\"c5\",\"c7\"]'");
    assert_int_equal(pending_count(), 0);
    /* processing with a merged success (pay_status=succeeded): the same */
    seed_order("P6", "processing", "3", "[\"c6\"]");
    freeReplyObject(fk_t_cmd(g_c, "HSET %s pay_status succeeded charge sent", okey("P6")));
    pending_entry(id, sizeof(id), "payment", "{}");
    assert_string_equal(payment_(id, "P6", "declined", ""), "['noop','processing']");
    assert_string_equal(hget("P6", "resv"), "'[\"c6\"]'");
    /* a success still completes it */
    pending_entry(id, sizeof(id), "payment", "{}");
    assert_string_equal(payment_(id, "P5", "succeeded", "pay-5"),
                        "['completed','[\"c5\",\"c7\"]']");
    /* a success for an order whose reservation was edited by hand (not
     * qty = 2 distinct codes): never delivered; review, the field kept */
    const char *bad[] = {"garbage", "[]", "[\"c8\"]", "[\"c8\",\"c8\"]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        seed_order("P7", "processing", "3", bad[i]);
        pending_entry(id, sizeof(id), "payment", "{}");
        assert_string_equal(payment_(id, "P7", "succeeded", "pay-7"), "['review']");
        assert_string_equal(hget("P7", "state"), "'manual_review'");
        assert_string_equal(hget("P7", "reason"), "'payment_unknown'");
        assert_string_equal(hget("P7", "codes"), "nil");
        assert_string_equal(hget("P7", "resv"), q("ECHO %s", bad[i]));
        freeReplyObject(fk_t_cmd(g_c, "DEL %s", okey("P7")));
    }
}

static void load_stock(const char *sku, int n) {
    fk_key_stock(&g_k, sku, g_skey, sizeof(g_skey));
    for (int i = 1; i <= n; i++)
        freeReplyObject(fk_t_cmd(g_c, "RPUSH %s %s-c%d", g_skey, sku, i));
}

static void t_accept_paid(void **state) {
    (void)state;
    load_stock("sku1", 3);
    char id[64];
    pending_entry(id, sizeof(id), "order", "{}");
    acc x = {.entry = id, .oid = "A1", .idem = "k1", .sku = "sku1", .qty = 2, .amount = 3000,
             .mode = "paid"};
    assert_string_equal(accept_(&x), "['completed','[\"sku1-c1\",\"sku1-c2\"]']");
    assert_string_equal(hget("A1", "state"), "'completed'");
    assert_string_equal(hget("A1", "codes"), "'[\"sku1-c1\",\"sku1-c2\"]'");
    assert_string_equal(hget("A1", "qty"), "'2'");
    assert_string_equal(hget("A1", "amount"), "'3000'");
    assert_string_equal(hget("A1", "message"), "'Your codes have been delivered.'");
    assert_string_equal(stock(), "['sku1-c3']");
    fk_key_idem(&g_k, "k1", g_ikey, sizeof(g_ikey));
    assert_string_equal(q("GET %s", g_ikey), "'A1'");
    long long ttl = atoll(q("TTL %s", g_ikey));
    assert_true(ttl > 86000 && ttl <= 86400);
    assert_int_equal(pending_count(), 0);
    assert_int_equal(stat_of("submitted"), 1);
    assert_int_equal(stat_of("completed"), 1);
    assert_int_equal(active_at("A1"), -1);

    /* the same entry again (a redelivery): final, acknowledged, nothing moves */
    char *before = snapshot();
    assert_string_equal(accept_(&x), "['done','completed']");
    assert_unchanged(before);

    /* counters edited into garbage start afresh; the order is not failed
     * half-way (the codes popped, the idempotency key set, no record) */
    freeReplyObject(fk_t_cmd(g_c, "HSET %s submitted 1.5 completed x attempts:0 y", g_k.stats));
    pending_entry(id, sizeof(id), "order", "{}");
    acc y = {.entry = id, .oid = "A3", .idem = "k3", .sku = "sku1", .qty = 1, .amount = 10,
             .mode = "paid"};
    assert_string_equal(accept_(&y), "['completed','[\"sku1-c3\"]']");
    assert_string_equal(hget("A3", "state"), "'completed'");
    assert_int_equal(stat_of("submitted"), 1);
    assert_int_equal(stat_of("completed"), 1);
    assert_int_equal(stat_of("attempts:0"), 1); /* fk_finalize ran to its end */
    assert_int_equal(pending_count(), 0);
}

static void t_accept_out_of_stock(void **state) {
    (void)state;
    load_stock("sku1", 3);
    char id[64];
    pending_entry(id, sizeof(id), "order", "{}");
    acc x = {.entry = id, .oid = "A2", .idem = "k2", .sku = "sku1", .qty = 5, .amount = 10,
             .mode = "paid"};
    assert_string_equal(accept_(&x), "['failed','out_of_stock']");
    /* untouched: the shortfall the reservation popped is back, in order */
    assert_string_equal(stock(), "['sku1-c1','sku1-c2','sku1-c3']");
    assert_string_equal(hget("A2", "state"), "'failed'");
    assert_string_equal(hget("A2", "reason"), "'out_of_stock'");
    /* the sentence of state.h, through the library's prelude */
    char msg[256], want[300];
    snprintf(want, sizeof(want), "'%s'",
             fk_reason_message(FK_R_OUT_OF_STOCK, NULL, msg, sizeof(msg)));
    assert_string_equal(hget("A2", "message"), want);
    assert_string_equal(hget("A2", "codes"), "nil");
    assert_string_equal(hget("A2", "resv"), "nil");
    assert_int_equal(pending_count(), 0);
    assert_int_equal(stat_of("reason:out_of_stock"), 1);
    assert_int_equal(active_at("A2"), -1);
    /* an SKU with no stock list at all */
    pending_entry(id, sizeof(id), "order", "{}");
    acc y = {.entry = id, .oid = "A3", .idem = "k3", .sku = "nothing", .qty = 1, .amount = 10,
             .mode = "charge"};
    assert_string_equal(accept_(&y), "['failed','out_of_stock']");
    /* exactly enough: all three codes are taken, the list is gone */
    pending_entry(id, sizeof(id), "order", "{}");
    acc z = {.entry = id, .oid = "A4", .idem = "A4", .sku = "sku1", .qty = 3, .amount = 10,
             .mode = "paid"};
    assert_string_equal(accept_(&z), "['completed','[\"sku1-c1\",\"sku1-c2\",\"sku1-c3\"]']");
    assert_string_equal(stock(), "[]");
    /* the shop reported the payment before the order came, and there is no
     * stock: the buyer paid, so not "failed, you have not been charged" but
     * a human's case, kept (no TTL) and listed in the review set */
    freeReplyObject(fk_t_cmd(g_c, "HSET %s pay_status succeeded payment_id P7", okey("A5")));
    freeReplyObject(fk_t_cmd(g_c, "EXPIRE %s 900", okey("A5")));
    pending_entry(id, sizeof(id), "order", "{}");
    acc p = {.entry = id, .oid = "A5", .idem = "A5", .sku = "sku1", .qty = 1, .amount = 10,
             .mode = "charge"};
    assert_string_equal(accept_(&p), "['review','payment_unknown']");
    assert_string_equal(hget("A5", "state"), "'manual_review'");
    assert_string_equal(hget("A5", "reason"), "'payment_unknown'");
    assert_string_equal(hget("A5", "pay_status"), "'succeeded'");
    assert_string_equal(hget("A5", "payment_id"), "'P7'");
    assert_string_equal(hget("A5", "resv"), "nil");
    assert_int_equal(atoll(q("TTL %s", okey("A5"))), -1);
    assert_string_not_equal(q("ZSCORE %s A5", g_k.review), "nil");
    assert_int_equal(active_at("A5"), -1);
    assert_int_equal(stat_of("manual_review"), 1);
    assert_int_equal(stat_of("reason:out_of_stock"), 2);
    assert_int_equal(pending_count(), 0);
    /* a stock key of another type (a redis-cli slip): the call fails before
     * it writes anything, so no idempotency key points at an order that
     * never was and nothing is counted; the entry stays pending */
    char bad[FK_KEY_MAX];
    fk_key_stock(&g_k, "typo", bad, sizeof(bad));
    freeReplyObject(fk_t_cmd(g_c, "SET %s CODE-A", bad));
    pending_entry(id, sizeof(id), "order", "{}");
    char *before = snapshot();
    acc t = {.entry = id, .oid = "A6", .idem = "k6", .sku = "typo", .qty = 1, .amount = 10,
             .mode = "charge"};
    const char *out = accept_(&t);
    if (!strstr(out, "WRONGTYPE")) fail_msg("accept on a string stock key: %s", out);
    assert_unchanged(before);
    assert_int_equal(pending_count(), 1);
}

static void t_accept_dup_conflict(void **state) {
    (void)state;
    load_stock("sku1", 5);
    char id[64];
    pending_entry(id, sizeof(id), "order", "{}");
    acc x = {.entry = id, .oid = "A1", .idem = "k1", .sku = "sku1", .qty = 1, .amount = 500,
             .mode = "paid"};
    assert_string_equal(accept_(&x), "['completed','[\"sku1-c1\"]']");

    /* same key, another order id: the owner is named, nothing is created */
    pending_entry(id, sizeof(id), "order", "{}");
    char *before = snapshot();
    acc y = x;
    y.entry = id;
    y.oid = "A2";
    assert_string_equal(accept_(&y), "['dup','A1']");
    assert_unchanged(before);
    assert_string_equal(q("EXISTS %s", okey("A2")), "0");
    assert_int_equal(pending_count(), 1); /* duplicate.lua settles it, not accept */

    /* same order id, other parameters: a conflict, nothing changes */
    before = snapshot();
    acc z = x;
    z.entry = id;
    z.qty = 2;
    assert_string_equal(accept_(&z), "['conflict','completed']");
    z.qty = 1;
    z.amount = 501;
    assert_string_equal(accept_(&z), "['conflict','completed']");
    z.amount = 500;
    z.sku = "sku2";
    assert_string_equal(accept_(&z), "['conflict','completed']");
    assert_unchanged(before);
    assert_string_equal(stock(), "['sku1-c2','sku1-c3','sku1-c4','sku1-c5']");
}

static void t_accept_charge(void **state) {
    (void)state;
    load_stock("sku1", 3);
    char id[64], id2[64];
    pending_entry(id, sizeof(id), "order", "{}");
    long long now = redis_now_ms();
    acc x = {.entry = id, .oid = "A5", .idem = "k5", .sku = "sku1", .qty = 2, .amount = 700,
             .mode = "charge", .lease_ms = 30000};
    /* a new record: only what the call decided comes back */
    assert_string_equal(accept_(&x), "['new','none','','']");
    assert_string_equal(stock(), "['sku1-c3']");
    assert_string_equal(hget("A5", "state"), "'processing'");
    assert_string_equal(hget("A5", "fence"), "'1'");
    assert_string_equal(hget("A5", "attempts"), "'0'");
    assert_string_equal(hget("A5", "resv"), "'[\"sku1-c1\",\"sku1-c2\"]'");
    long long lease = atoll(hget("A5", "lease_until") + 1);
    assert_true(lease >= now + 30000 && lease <= now + 31000);
    long long dl = active_at("A5");
    assert_true(dl >= now + ORDER_TTL_MS && dl <= now + ORDER_TTL_MS + 1000);
    assert_int_equal(pending_count(), 1); /* the worker acks when it settles */

    /* the same entry while the lease lives: busy, left pending */
    assert_string_equal(accept_(&x), "['busy']");
    /* another entry for the same order: owned, that one is acknowledged */
    pending_entry(id2, sizeof(id2), "order", "{}");
    assert_int_equal(pending_count(), 2);
    acc y = x;
    y.entry = id2;
    assert_string_equal(accept_(&y), "['owned']");
    assert_int_equal(pending_count(), 1);
    assert_string_equal(stock(), "['sku1-c3']"); /* reserved once only */
    /* lease expired: taken again, fence bumped, same reservation */
    freeReplyObject(fk_t_cmd(g_c, "HSET %s lease_until 1", okey("A5")));
    assert_string_equal(accept_(&x),
                        "['work','processing','2','none','0','k5','sku1','2','700','CNY',"
                        "'buyer@example.com','','','','[\"sku1-c1\",\"sku1-c2\"]']");
    assert_string_equal(stock(), "['sku1-c3']");
}

static const char *resume_due(const char *entry, const char *oid, const char *mode,
                              const char *due) {
    char ok[FK_KEY_MAX];
    fk_key_order(&g_k, oid, ok, sizeof(ok));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, ok);
    fk_args_str(&a, g_k.stream);
    fk_args_str(&a, g_k.retry);
    fk_args_str(&a, GROUP);
    fk_args_str(&a, entry);
    fk_args_str(&a, oid);
    fk_args_ll(&a, 30000);
    fk_args_str(&a, due);
    fk_args_str(&a, mode);
    return call(FK_LUA_RESUME, 3, &a);
}

static const char *resume_(const char *entry, const char *oid, const char *mode) {
    return resume_due(entry, oid, mode, "");
}

/* resume (fk_take): the fence + 1 and the lease in one write; a retry's lag
 * only when its entry takes the order; a fence that is not an integer is
 * refused and nothing changes. */
static void t_resume_take(void **state) {
    (void)state;
    char id[64], due[32];
    pending_entry(id, sizeof(id), "retry", "R1");
    long long now = redis_now_ms();
    snprintf(due, sizeof(due), "%lld", now - 50);
    seed_order("R1", "processing", "2", NULL);
    freeReplyObject(fk_t_cmd(g_c, "HSET %s lease_until 1", okey("R1")));
    const char *w = resume_due(id, "R1", "", due);
    assert_non_null(strstr(w, "['work','processing','3',"));
    assert_string_equal(hget("R1", "fence"), "'3'");
    assert_string_equal(hget("R1", "lease_entry"), q("ECHO %s", id));
    long long lease = atoll(hget("R1", "lease_until") + 1);
    assert_true(lease >= now + 30000 && lease <= now + 31000);
    long long lag = atoll(hget("R1", "retry_lag_ms") + 1);
    assert_true(lag >= 50 && lag < 1050);
    /* a live lease of another entry covers it: owned, no lag written */
    seed_order("R2", "processing", "5", NULL);
    assert_string_equal(resume_due(id, "R2", "", due), "['owned']");
    assert_string_equal(hget("R2", "retry_lag_ms"), "nil");
    assert_string_equal(hget("R2", "fence"), "'5'");
    /* no fence field yet: the first take makes it 1 */
    seed_order("R3", "processing", "1", NULL);
    freeReplyObject(fk_t_cmd(g_c, "HDEL %s fence", okey("R3")));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s lease_until 1", okey("R3")));
    assert_non_null(strstr(resume_(id, "R3", ""), "['work','processing','1',"));
    assert_string_equal(hget("R3", "fence"), "'1'");
    /* a fence that is not an integer: refused, nothing written */
    const char *bad[] = {"x", "2.5", " 2", "0x3", "1234567890123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        seed_order("R4", "processing", bad[i], NULL);
        freeReplyObject(fk_t_cmd(g_c, "HSET %s lease_until 1", okey("R4")));
        char *before = snapshot();
        assert_non_null(strstr(resume_due(id, "R4", "send", due), "fence is not an integer"));
        assert_unchanged(before);
    }
}

/* 'send' (the worker's gateway guard admitted a charge): the recovery point
 * charge=sent is written with the record or the lease, and the answer says
 * so with a trailing '1' -- only when the order is to be charged now: never
 * over a charge that may exist (asked first) nor over a payment the shop
 * reported. */
static void t_accept_send(void **state) {
    (void)state;
    load_stock("sku1", 5);
    char id[64];
    pending_entry(id, sizeof(id), "order", "{}");
    acc x = {.entry = id, .oid = "S1", .idem = "S1", .sku = "sku1", .qty = 1, .amount = 700,
             .mode = "send", .lease_ms = 30000};
    assert_string_equal(accept_(&x), "['new','sent','','']");
    assert_string_equal(hget("S1", "charge"), "'sent'");
    /* taken again after the lease: a charge may exist, no new mark */
    freeReplyObject(fk_t_cmd(g_c, "HSET %s lease_until 1", okey("S1")));
    assert_string_equal(resume_(id, "S1", "send"),
                        "['work','processing','2','sent','0','','sku1','1','700','CNY',"
                        "'buyer@example.com','','','','[\"sku1-c1\"]']");
    /* the gateway said no charge exists (absent): marked again */
    freeReplyObject(fk_t_cmd(g_c, "HSET %s lease_until 1 charge absent", okey("S1")));
    assert_string_equal(resume_(id, "S1", "send"),
                        "['work','processing','3','sent','0','','sku1','1','700','CNY',"
                        "'buyer@example.com','','','','[\"sku1-c1\"]','1']");
    /* without the guard's admission: nothing written */
    freeReplyObject(fk_t_cmd(g_c, "HSET %s lease_until 1 charge absent", okey("S1")));
    assert_string_equal(resume_(id, "S1", ""),
                        "['work','processing','4','absent','0','','sku1','1','700','CNY',"
                        "'buyer@example.com','','','','[\"sku1-c1\"]']");
    /* declined (retried by an operator, or a crash before the failure was
     * written): asked again, never marked sent */
    freeReplyObject(fk_t_cmd(g_c, "HSET %s lease_until 1 charge declined", okey("S1")));
    assert_string_equal(resume_(id, "S1", "send"),
                        "['work','processing','5','declined','0','','sku1','1','700','CNY',"
                        "'buyer@example.com','','','','[\"sku1-c1\"]']");
    assert_string_equal(hget("S1", "charge"), "'declined'");
    /* a payment reported before its order: never charged */
    freeReplyObject(fk_t_cmd(g_c, "HSET %s pay_status succeeded payment_id P9", okey("S2")));
    pending_entry(id, sizeof(id), "order", "{}");
    acc y = x;
    y.entry = id;
    y.oid = y.idem = "S2";
    assert_string_equal(accept_(&y), "['new','none','succeeded','P9']");
    assert_string_equal(hget("S2", "charge"), "'none'");
}

/* The implicit idempotency key: an order whose key is its own id writes no
 * idem key and no idem field; the record is the claim, found by an order
 * with another id and that key. An explicit key still wins when it came
 * first; a record refused for another order's key, a payment stub, or a
 * record whose key was another never hold an id implicitly. */
static void t_accept_implicit_key(void **state) {
    (void)state;
    load_stock("sku1", 10);
    char id[64];
    pending_entry(id, sizeof(id), "order", "{}");
    acc x = {.entry = id, .oid = "X1", .idem = "X1", .sku = "sku1", .qty = 1, .amount = 500,
             .mode = "paid"};
    assert_string_equal(accept_(&x), "['completed','[\"sku1-c1\"]']");
    assert_string_equal(q("EXISTS %s:idem:X1", PREFIX), "0");
    assert_string_equal(hget("X1", "idem"), "nil");
    assert_string_equal(hget("X1", "reason"), "nil"); /* completed: no reason, */
    assert_string_equal(hget("X1", "fence"), "nil");  /* taken once: no fence */
    /* another id with X1 as its key: X1 holds it, nothing is created */
    pending_entry(id, sizeof(id), "order", "{}");
    char *before = snapshot();
    acc y = x;
    y.entry = id;
    y.oid = "Y1";
    assert_string_equal(accept_(&y), "['dup','X1']");
    assert_unchanged(before);
    /* an explicit key taken first names its owner to the order of that id */
    pending_entry(id, sizeof(id), "order", "{}");
    acc e = {.entry = id, .oid = "Y2", .idem = "X2", .sku = "sku1", .qty = 1, .amount = 500,
             .mode = "paid"};
    assert_string_equal(accept_(&e), "['completed','[\"sku1-c2\"]']");
    assert_string_equal(q("GET %s:idem:X2", PREFIX), "'Y2'");
    assert_string_equal(hget("Y2", "idem"), "'X2'");
    pending_entry(id, sizeof(id), "order", "{}");
    acc f = {.entry = id, .oid = "X2", .idem = "X2", .sku = "sku1", .qty = 1, .amount = 500,
             .mode = "paid"};
    assert_string_equal(accept_(&f), "['dup','Y2']");
    /* Y2's record names X2 as its key: Y2 holds no "Y2" */
    pending_entry(id, sizeof(id), "order", "{}");
    acc g = {.entry = id, .oid = "Z2", .idem = "Y2", .sku = "sku1", .qty = 1, .amount = 500,
             .mode = "paid"};
    assert_string_equal(accept_(&g), "['completed','[\"sku1-c3\"]']");
    /* a record refused as a duplicate, and a payment stub, hold nothing */
    freeReplyObject(fk_t_cmd(g_c, "HSET %s state failed reason duplicate", okey("X3")));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s pay_status succeeded", okey("X4")));
    for (int k = 3; k <= 4; k++) {
        char oid[8], key[8];
        snprintf(oid, sizeof(oid), "Y%d", k);
        snprintf(key, sizeof(key), "X%d", k);
        pending_entry(id, sizeof(id), "order", "{}");
        acc h = {.entry = id, .oid = oid, .idem = key, .sku = "sku1", .qty = 1, .amount = 500,
                 .mode = "paid"};
        assert_string_equal(accept_(&h), k == 3 ? "['completed','[\"sku1-c4\"]']"
                                                : "['completed','[\"sku1-c5\"]']");
    }
    assert_int_equal(pending_count(), 2); /* Y1, X2: duplicate.lua settles them */
}

/* At maxmemory (noeviction) Redis refuses every writing function before it
 * starts, except trim_stream (flag allow-oom): it only reads and deletes,
 * and is what frees the memory of acknowledged entries. */
static void t_trim_under_oom(void **state) {
    (void)state;
    char id[64];
    for (int i = 0; i < 3; i++) {
        pending_entry(id, sizeof(id), "order", "{}");
        freeReplyObject(fk_t_cmd(g_c, "XACK %s %s %s", g_k.stream, GROUP, id));
    }
    freeReplyObject(fk_t_cmd(g_c, "CONFIG SET maxmemory 1"));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, g_k.stream);
    char trim[256], other[256], want[128];
    snprintf(trim, sizeof(trim), "%s", call(FK_LUA_TRIM_STREAM, 1, &a));
    /* any other script: refused before it runs */
    fk_args_init(&a);
    fk_args_str(&a, g_k.retry);
    fk_args_str(&a, g_k.stream);
    snprintf(other, sizeof(other), "%s", call(FK_LUA_PROMOTE, 2, &a));
    freeReplyObject(fk_t_cmd(g_c, "CONFIG SET maxmemory 0")); /* before any assert */
    snprintf(want, sizeof(want), "['trimmed',2,'%s']", id); /* the last delivered stays */
    assert_string_equal(trim, want);
    assert_non_null(strstr(other, "OOM"));
    assert_int_equal(atoll(q("XLEN %s", g_k.stream)), 1);
}

/* ---- numbers read from hashes (lib.lua fk_int / fk_num) --------------------- */

/* Values an operator (or another version) may leave in a numeric field,
 * that Lua's tonumber would have read as a number: hex, inf, an exponent,
 * padding, a fraction, a sign, and a 16-digit integer. */
static const char *const g_garbage[] = {"0x7fffffffffffffff", "inf", "-inf", "nan", "1e300",
                                        " 99999999999999", "99999999999999 ", "+99999999999999",
                                        "99999999999999.5", "9999999999999999"};
#define N_GARBAGE (sizeof(g_garbage) / sizeof(g_garbage[0]))

static const char *settle_take_(const char *oid, long long lease_ms) {
    char ok[FK_KEY_MAX];
    fk_key_order(&g_k, oid, ok, sizeof(ok));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, ok);
    fk_args_str(&a, g_k.active);
    fk_args_str(&a, g_k.retry);
    fk_args_str(&a, oid);
    fk_args_ll(&a, lease_ms);
    return call(FK_LUA_SETTLE_TAKE, 3, &a);
}

/* A lease_until that is not a time is no lease: the order is taken (fence
 * bumped, a real lease written) by a worker's entry and by the reaper,
 * instead of every entry being acknowledged as 'owned' and the reaper
 * parking the order at the lease's "end" (9.2e18) for good. */
static void t_garbage_lease(void **state) {
    (void)state;
    char id[64];
    pending_entry(id, sizeof(id), "retry", "L1");
    for (size_t i = 0; i < N_GARBAGE; i++) {
        seed_order("L1", "processing", "4", "[\"c1\"]");
        freeReplyObject(fk_t_cmd(g_c, "HSET %s lease_until %s", okey("L1"), g_garbage[i]));
        long long now = redis_now_ms();
        const char *w = resume_(id, "L1", "");
        if (!strstr(w, "['work','processing','5',"))
            fail_msg("lease_until '%s': %s", g_garbage[i], w);
        long long lease = atoll(hget("L1", "lease_until") + 1);
        assert_true(lease >= now + 30000 && lease <= now + 31000);
        assert_string_equal(hget("L1", "lease_entry"), q("ECHO %s", id));
    }
    /* the reaper: past its deadline, under a garbage lease: taken now, due
     * again when the reaper's own lease ends */
    for (size_t i = 0; i < N_GARBAGE; i++) {
        seed_order("L2", "processing", "4", NULL);
        freeReplyObject(fk_t_cmd(g_c, "HSET %s lease_until %s", okey("L2"), g_garbage[i]));
        freeReplyObject(fk_t_cmd(g_c, "ZADD %s 1 L2", g_k.active));
        long long now = redis_now_ms();
        const char *t = settle_take_("L2", 20000);
        if (!strstr(t, "['take','processing','5',"))
            fail_msg("lease_until '%s': %s", g_garbage[i], t);
        long long due = active_at("L2");
        assert_true(due >= now + 20000 && due <= now + 21000);
        assert_int_equal(atoll(hget("L2", "lease_until") + 1), due);
    }
    /* a live lease written as faka writes it still holds */
    seed_order("L3", "processing", "4", NULL);
    assert_string_equal(resume_(id, "L3", ""), "['owned']");
    freeReplyObject(fk_t_cmd(g_c, "ZADD %s 1 L3", g_k.active));
    assert_non_null(strstr(settle_take_("L3", 20000), "['busy',"));
}

static fk_guard_policy g_policy = {5, 0, 20, 10, 300, 2, 0, 0};

/* guard_check.lua's reply, rendered. */
static const char *guard_check_(const fk_guard_policy *p) {
    fk_args a;
    fk_guard_check_args(&a, &g_k, p);
    return call(FK_LUA_GUARD_CHECK, FK_GUARD_CHECK_NKEYS, &a);
}

static const char *guard_report_(const fk_guard_policy *p, long long nok, long long nbad) {
    fk_args a;
    fk_guard_report_args(&a, &g_k, p, nok, nbad, nbad, 0);
    return call(FK_LUA_GUARD_REPORT, FK_GUARD_REPORT_NKEYS, &a);
}

static const char *bfield(const char *field) { return q("HGET %s %s", g_k.breaker, field); }

/* The breaker's hash edited by hand: an open_until that is not a time ends
 * the cool-down (half-open, the probes go), never an open breaker for ever
 * nor one that lets everyone through unprobed; unreadable probe counts and
 * times hand the slots out again; counters that are not integers start
 * afresh instead of failing every check. */
static void t_garbage_breaker(void **state) {
    (void)state;
    for (size_t i = 0; i < N_GARBAGE; i++) {
        freeReplyObject(fk_t_cmd(g_c, "DEL %s", g_k.breaker));
        freeReplyObject(
            fk_t_cmd(g_c, "HSET %s state open open_until %s", g_k.breaker, g_garbage[i]));
        const char *v = guard_check_(&g_policy);
        if (strcmp(v, "[1,0,1,'ok','half_open']") != 0)
            fail_msg("open_until '%s': %s", g_garbage[i], v);
        assert_string_equal(bfield("state"), "'half_open'");
        assert_string_equal(bfield("probes_used"), "'1'");
    }
    /* half-open, every slot taken, at a time that is not one (or one to
     * come): the slots are handed out again, not refused for ever */
    const char *since[] = {"inf", "0x10", "99999999999999", "1e3", ""};
    for (size_t i = 0; i < sizeof(since) / sizeof(since[0]); i++) {
        freeReplyObject(fk_t_cmd(g_c, "DEL %s", g_k.breaker));
        freeReplyObject(fk_t_cmd(g_c, "HSET %s state half_open half_open_at %s probes_used 2",
                                 g_k.breaker, since[i]));
        const char *v = guard_check_(&g_policy);
        if (strcmp(v, "[1,0,1,'ok','half_open']") != 0)
            fail_msg("half_open_at '%s': %s", since[i], v);
        assert_string_equal(bfield("probes_used"), "'1'");
    }
    /* a probe count that is not one: counted afresh (HINCRBY failed here,
     * after the call was admitted) */
    long long now = redis_now_ms();
    freeReplyObject(fk_t_cmd(g_c, "HSET %s state half_open half_open_at %lld probes_used x",
                             g_k.breaker, now));
    assert_string_equal(guard_check_(&g_policy), "[1,0,1,'ok','half_open']");
    assert_string_equal(bfield("probes_used"), "'1'");
    /* open for real, with a `denied` that is not a count: refused with the
     * time left, and the count starts afresh */
    freeReplyObject(fk_t_cmd(g_c, "DEL %s", g_k.breaker));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s state open open_until %lld denied 1e3", g_k.breaker,
                             now + 100000));
    long long wait = -1;
    const char *v = guard_check_(&g_policy);
    assert_int_equal(sscanf(v, "[0,%lld,0,'open','open']", &wait), 1);
    assert_true(wait > 90000 && wait <= 100000);
    assert_string_equal(bfield("denied"), "'1'");
    /* guard_report: a streak and counters that are not integers start
     * afresh, and five failures in a row still open the breaker */
    freeReplyObject(fk_t_cmd(g_c, "DEL %s", g_k.breaker));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s state closed consecutive 1e3 calls_failed inf "
                                  "calls_ok 0x1 opens nan",
                             g_k.breaker));
    assert_string_equal(guard_report_(&g_policy, 0, 1), "['closed','']");
    assert_string_equal(bfield("consecutive"), "'1'");
    assert_string_equal(bfield("calls_failed"), "'1'");
    assert_string_equal(guard_report_(&g_policy, 1, 0), "['closed','']");
    assert_string_equal(bfield("calls_ok"), "'1'");
    assert_string_equal(bfield("consecutive"), "'0'");
    for (int i = 0; i < 4; i++) assert_string_equal(guard_report_(&g_policy, 0, 1), "['closed','']");
    assert_string_equal(guard_report_(&g_policy, 0, 1), "['open','opened']");
    assert_string_equal(bfield("opens"), "'1'");
    /* a window bucket whose numbers overflow counts as empty */
    fk_guard_policy pct = g_policy;
    pct.failures = 0;
    pct.error_pct = 50;
    pct.min_calls = 3;
    freeReplyObject(fk_t_cmd(g_c, "DEL %s", g_k.breaker));
    for (int i = 0; i < 10; i++)
        freeReplyObject(fk_t_cmd(g_c, "HSET %s w%d 99999999999999999999:99999999999999999999:"
                                      "99999999999999999999",
                                 g_k.breaker, i));
    assert_string_equal(guard_report_(&pct, 0, 1), "['closed','']");
}

/* The token bucket edited by hand: tokens that are not a count this
 * script writes ('nan' admitted every call for ever, '-inf' refused every
 * one with a wait of -2^63) are a fresh full bucket; a queue slot that is
 * not a time is no queue; a refusal never asks for more than a minute of
 * slots and a token. */
static void t_garbage_bucket(void **state) {
    (void)state;
    fk_guard_policy p = g_policy;
    p.rate_rps = 10;
    p.burst = 5;
    const char *bad[] = {"nan", "-nan", "-inf", "inf", "0x10", " 1", "-1e14", "-3", "1e400", "x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        freeReplyObject(fk_t_cmd(g_c, "DEL %s", g_k.ratelimit));
        freeReplyObject(fk_t_cmd(g_c, "HSET %s tokens %s ts %lld", g_k.ratelimit, bad[i],
                                 redis_now_ms()));
        const char *v = guard_check_(&p);
        if (strcmp(v, "[1,0,0,'ok','closed']") != 0) fail_msg("tokens '%s': %s", bad[i], v);
        assert_string_equal(q("HGET %s tokens", g_k.ratelimit), "'4'");
    }
    /* an empty bucket with a slot that is not a time: one token's wait */
    const char *slots[] = {"nan", "-inf", "0x7fffffffffffffff", "x"};
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        freeReplyObject(fk_t_cmd(g_c, "DEL %s", g_k.ratelimit));
        freeReplyObject(fk_t_cmd(g_c, "HSET %s tokens 0 ts %lld next_slot %s", g_k.ratelimit,
                                 redis_now_ms(), slots[i]));
        long long wait = -1;
        const char *v = guard_check_(&p);
        if (sscanf(v, "[0,%lld,0,'rate','closed']", &wait) != 1 || wait < 50 || wait > 100)
            fail_msg("next_slot '%s': %s", slots[i], v);
    }
    /* a refill time that is not one: no refill now, and written afresh */
    freeReplyObject(fk_t_cmd(g_c, "DEL %s", g_k.ratelimit));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s tokens 2.5 ts inf denied x", g_k.ratelimit));
    assert_string_equal(guard_check_(&p), "[1,0,0,'ok','closed']");
    assert_string_equal(q("HGET %s tokens", g_k.ratelimit), "'1.5'");
    assert_true(atoll(q("HGET %s ts", g_k.ratelimit) + 1) > 0);
    /* a far queue still waits at most a minute and a token */
    freeReplyObject(fk_t_cmd(g_c, "HSET %s tokens 0 next_slot 99999999999999", g_k.ratelimit));
    long long wait = -1;
    assert_int_equal(sscanf(guard_check_(&p), "[0,%lld,0,'rate','closed']", &wait), 1);
    assert_true(wait > 60000 && wait <= 60100);
    assert_string_equal(q("HGET %s denied", g_k.ratelimit), "'1'");
}

/* A record's numbers edited by hand, where a script reads them: a final
 * transition counts an attempts that is not one under attempts:0 and
 * leaves a first failure that is not a time out of the durations (both
 * used to fail the call half-way, after the state was written); a
 * cooldown `until` that is not a time holds no buyer back. */
static void t_garbage_record(void **state) {
    (void)state;
    for (size_t i = 0; i < N_GARBAGE; i++) {
        freeReplyObject(fk_t_cmd(g_c, "FLUSHALL"));
        seed_order("G1", "processing", "3", "[\"c1\"]");
        freeReplyObject(fk_t_cmd(g_c, "HSET %s attempts %s first_fail_at %s", okey("G1"),
                                 g_garbage[i], g_garbage[i]));
        tr t = {.oid = "G1", .fence = "3", .from = "processing", .to = "failed",
                .reason = "invalid_order", .ops = "L"};
        const char *v = transition(&t);
        if (strcmp(v, "['ok','3']") != 0) fail_msg("attempts '%s': %s", g_garbage[i], v);
        assert_string_equal(hget("G1", "state"), "'failed'");
        assert_int_equal(stat_of("attempts:0"), 1);
        assert_int_equal(stat_of("retry_ms_count"), 0);
        assert_string_equal(stock(), "['c1']");
    }
    /* a buyer cooldown whose `until` is not a time: no cooldown */
    char ckey[FK_KEY_MAX], id[64];
    fk_key_cooldown(&g_k, "buyer@example.com", ckey, sizeof(ckey));
    for (size_t i = 0; i < N_GARBAGE; i++) {
        char oid[16];
        snprintf(oid, sizeof(oid), "G3_%zu", i);
        freeReplyObject(fk_t_cmd(g_c, "HSET %s until %s", ckey, g_garbage[i]));
        pending_entry(id, sizeof(id), "order", "{}");
        acc x = {.entry = id, .oid = oid, .idem = oid, .sku = "sku2", .qty = 1, .amount = 100,
                 .mode = "charge", .ckey = ckey};
        const char *v = accept_(&x);
        /* (sku2 has no stock: out of stock is the proof it was not refused) */
        if (strcmp(v, "['failed','out_of_stock']") != 0)
            fail_msg("until '%s': %s", g_garbage[i], v);
    }
}

/* An order a worker sent to review because its record could not be read
 * (manual_review/invalid_order) may hold a charge under its implicit key:
 * it still holds the key, unlike a failed/invalid_order record (an entry
 * that could not be read, never charged). */
static void t_accept_review_holds_key(void **state) {
    (void)state;
    load_stock("sku1", 5);
    freeReplyObject(fk_t_cmd(g_c, "HSET %s state manual_review reason invalid_order",
                             okey("V1")));
    freeReplyObject(fk_t_cmd(g_c, "HSET %s state failed reason invalid_order", okey("V2")));
    char id[64];
    pending_entry(id, sizeof(id), "order", "{}");
    acc x = {.entry = id, .oid = "W1", .idem = "V1", .sku = "sku1", .qty = 1, .amount = 500,
             .mode = "paid"};
    assert_string_equal(accept_(&x), "['dup','V1']");
    acc y = x;
    y.oid = "W2";
    y.idem = "V2";
    assert_string_equal(accept_(&y), "['completed','[\"sku1-c1\"]']");
}

int main(int argc, char **argv) {
    g_argv0 = argv[0];
    if (argc == 3 && strcmp(argv[1], "--args-overflow") == 0) return args_overflow_child(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(t_registry, flush),
        cmocka_unit_test_setup(t_prelude, flush),
        cmocka_unit_test_setup(t_load_all, flush),
        cmocka_unit_test_setup(t_function_missing, flush),
        cmocka_unit_test(t_args),
        cmocka_unit_test(t_args_overflow),
        cmocka_unit_test_setup(t_args_binary, flush),
        cmocka_unit_test_setup(t_transition_stale, flush),
        cmocka_unit_test_setup(t_transition_ops_many, flush),
        cmocka_unit_test_setup(t_transition_release, flush),
        cmocka_unit_test_setup(t_transition_reserve, flush),
        cmocka_unit_test_setup(t_transition_deliver, flush),
        cmocka_unit_test_setup(t_transition_retry, flush),
        cmocka_unit_test_setup(t_transition_ack, flush),
        cmocka_unit_test_setup(t_promote, flush),
        cmocka_unit_test_setup(t_promote_concurrent, flush),
        cmocka_unit_test_setup(t_dead, flush),
        cmocka_unit_test_setup(t_notify_done, flush),
        cmocka_unit_test_setup(t_payment, flush),
        cmocka_unit_test_setup(t_accept_paid, flush),
        cmocka_unit_test_setup(t_retry_figures, flush),
        cmocka_unit_test_setup(t_accept_out_of_stock, flush),
        cmocka_unit_test_setup(t_accept_dup_conflict, flush),
        cmocka_unit_test_setup(t_accept_charge, flush),
        cmocka_unit_test_setup(t_accept_send, flush),
        cmocka_unit_test_setup(t_resume_take, flush),
        cmocka_unit_test_setup(t_accept_implicit_key, flush),
        cmocka_unit_test_setup(t_garbage_lease, flush),
        cmocka_unit_test_setup(t_garbage_breaker, flush),
        cmocka_unit_test_setup(t_garbage_bucket, flush),
        cmocka_unit_test_setup(t_garbage_record, flush),
        cmocka_unit_test_setup(t_accept_review_holds_key, flush),
        cmocka_unit_test_setup(t_trim_under_oom, flush),
        cmocka_unit_test_setup(t_reclaim_poison_requeues, flush),
        cmocka_unit_test_setup(t_reclaim_poison_payment, flush),
        cmocka_unit_test_setup(t_reclaim_dead_wrongtype, flush),
    };
    return cmocka_run_group_tests_name("scripts", tests, group_setup, group_teardown);
}
