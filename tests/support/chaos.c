/* chaos.c -- the chaos suite's engine (see chaos.h).
 *
 * Threads: the calling thread runs the chaos loop (it alone starts, stops
 * and kills processes, and restarts Redis), P producer threads XADD the
 * orders, one thread XADDs the malformed entries. Each producer has its own
 * synchronous hiredis connection.
 *
 * Counting what was submitted: an order is its order_id. A producer whose
 * XADD reply is lost (Redis killed mid-command) cannot know whether the
 * entry was written, so it writes it again until an XADD is answered: the
 * order then has one or two entries, and faka must treat them as one order
 * (that is part of what is tested). "Submitted" is the set of ids, exact by
 * construction. Malformed entries cannot be counted that way (they have no
 * id), so they are written under a mutex the chaos loop holds while Redis
 * is down: every malformed XADD is answered, and the malformed count is
 * exact too. */
#include "chaos.h"
#include "fleet.h"
#include "gateway.h"
#include "harness.h"
#include "ledger.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define P "faka"
#define MAXW 64
#define PRODUCER_GIVE_UP_MS 60000

/* ---- random ------------------------------------------------------------- */

static unsigned long long rnd(unsigned long long *s) {
    unsigned long long z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi] (hi >= lo). */
static long long rnd_in(unsigned long long *s, long long lo, long long hi) {
    return lo + (long long)(rnd(s) % (unsigned long long)(hi - lo + 1));
}

/* ---- the plan: every order a producer will submit ------------------------ */

typedef struct item {
    char id[32];
    char key[48]; /* idempotency key; "" = none (the order_id is the key) */
    int sku, qty;
    long long amount;
    int group;    /* racing-duplicate group, -1 for none */
} item;

/* ---- run state ---------------------------------------------------------- */

typedef struct wslot {
    pid_t pid;          /* 0: not running */
    char name[32];
    int gen;            /* how many times this slot was (re)started */
    int stopped;        /* SIGSTOPped; SIGCONT at cont_at */
    long long cont_at;
    long long respawn_at; /* 0: nothing scheduled */
} wslot;

typedef struct ev {
    long long at; /* ms after t0 */
    int type;     /* EV_* */
} ev;

enum { EV_KILL, EV_STALL, EV_RESTART };

typedef struct run {
    const fk_t_chaos_opts *o;
    fk_t_chaos_result *res;
    fk_t_redis r;
    fk_t_gateway g;
    pthread_mutex_t mu; /* held while Redis is down (see the top of this file) */
    int redis_gen;      /* bumped on every restart, under mu */
    item *items;
    long long nitems;
    long long t0;
    long produce_ms;
    wslot w[MAXW];
    int nw;
    pid_t reaper;
    unsigned long long rng;
    /* worker arguments */
    char a_gw[200], a_hook[220], a_secret[64], a_lease[40], a_http[48], a_conn[48], a_ttl[48];
    const char *wargs[24];
    char reaper_bin[512];
    /* monitor connection (chaos loop only) */
    redisContext *mon;
    int mon_gen;
    long long stock[FK_T_SKUS];
} run;

/* For the emergency handler: the run in progress, if any. */
static run *volatile g_run;
static struct sigaction g_old_abrt, g_old_int, g_old_term;

/* Whatever happens to this program, what the run started must not
 * outlive it: SIGKILL every child by pid, then die of the same signal. */
static void emergency(int sig) {
    run *R = g_run;
    if (R) {
        for (int i = 0; i < MAXW; i++)
            if (R->w[i].pid > 0) kill(R->w[i].pid, SIGKILL);
        if (R->reaper > 0) kill(R->reaper, SIGKILL);
        if (R->g.pid > 0) kill(R->g.pid, SIGKILL);
        if (R->r.pid > 0) kill(R->r.pid, SIGKILL);
        static const char msg[] = "faka chaos: interrupted; every process it started was "
                                  "killed (its temp dir is left in /tmp)\n";
        ssize_t w = write(2, msg, sizeof(msg) - 1);
        (void)w;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void handlers_install(run *R) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = emergency;
    sigemptyset(&sa.sa_mask);
    g_run = R;
    sigaction(SIGABRT, &sa, &g_old_abrt);
    sigaction(SIGINT, &sa, &g_old_int);
    sigaction(SIGTERM, &sa, &g_old_term);
}

static void handlers_remove(void) {
    sigaction(SIGABRT, &g_old_abrt, NULL);
    sigaction(SIGINT, &g_old_int, NULL);
    sigaction(SIGTERM, &g_old_term, NULL);
    g_run = NULL;
}

static void example(fk_t_chaos_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void example(fk_t_chaos_result *res, const char *fmt, ...) {
    if (res->nexamples >= FK_T_CHAOS_EXAMPLES) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->examples[res->nexamples++], sizeof(res->examples[0]), fmt, ap);
    va_end(ap);
}

void fk_t_chaos_defaults(fk_t_chaos_opts *o) {
    memset(o, 0, sizeof(*o));
    o->orders = 2000;
    o->workers = 4;
    o->producers = 4;
    o->kills = 10;
    o->stalls = 5;
    o->redis_restarts = 1;
    o->malformed = 60;
    o->dup_groups = 20;
    o->dup_size = 8;
    o->seed = 1;
    o->faults = "light";
    o->duration_ms = 20000;
    o->drain_ms = 90000;
    o->lease_ms = 2000;
    o->reaper = -1;
    o->verbose = 1;
}

/* ---- the plan ----------------------------------------------------------- */

/* Orders C1..Cn (odd ones with an explicit idempotency key, even ones
 * keyed by their id), with the racing groups D<g>n<j> (one key per group,
 * one member of every other group asking for another amount: a conflict)
 * spread evenly among them, each group's members next to each other so that
 * the round-robin producers send them at the same moment. */
static void plan(run *R) {
    const fk_t_chaos_opts *o = R->o;
    long long n = o->orders, groups = o->dup_groups, size = o->dup_size;
    R->nitems = n + groups * size;
    R->items = calloc((size_t)(R->nitems ? R->nitems : 1), sizeof(item));
    if (!R->items) fk_t_fail("oom");
    long long at = 0, g = 0;
    long long need[FK_T_SKUS] = {0};
    for (long long k = 1; k <= n || g < groups; k++) {
        while (g < groups && (k > n || (g * 2 + 1) * n <= 2 * groups * (k - 1))) {
            int qty = (int)(g % 3) + 1;
            for (long long j = 0; j < size; j++) {
                item *it = &R->items[at++];
                snprintf(it->id, sizeof(it->id), "D%lldn%lld", g, j);
                snprintf(it->key, sizeof(it->key), "dupkey-%lld", g);
                it->sku = (int)(g % FK_T_SKUS);
                it->qty = qty;
                it->amount = 1000LL * qty + ((g % 2 == 0 && j == size - 1) ? 1 : 0);
                it->group = (int)g;
            }
            need[g % FK_T_SKUS] += qty; /* one owner per group */
            g++;
        }
        if (k > n) continue;
        item *it = &R->items[at++];
        snprintf(it->id, sizeof(it->id), "C%lld", k);
        if (k % 2) snprintf(it->key, sizeof(it->key), "ik-%lld", k);
        it->sku = (int)(rnd(&R->rng) % FK_T_SKUS);
        it->qty = (int)rnd_in(&R->rng, 1, 3);
        it->amount = 1000LL * it->qty;
        it->group = -1;
        need[it->sku] += it->qty;
    }
    if (at != R->nitems) fk_t_fail("chaos plan: %lld items, expected %lld", at, R->nitems);
    /* Enough codes for everything, except the last SKU: 90% of what it
     * needs, so some orders end out_of_stock (declines give codes back, so
     * the exact number varies). */
    for (int s = 0; s < FK_T_SKUS; s++)
        R->stock[s] = s == FK_T_SKUS - 1 ? need[s] * 9 / 10 : need[s];
}

static int order_json(const item *it, char *buf, size_t len) {
    char key[80] = "";
    if (it->key[0]) snprintf(key, sizeof(key), ",\"idempotency_key\":\"%s\"", it->key);
    return snprintf(buf, len,
                    "{\"order_id\":\"%s\"%s,\"sku\":\"%s\",\"qty\":%d,\"amount\":%lld,"
                    "\"currency\":\"CNY\",\"buyer\":\"buyer-%s@example.com\"}",
                    it->id, key, fk_t_sku(it->sku), it->qty, it->amount, it->id);
}

static void load_stock(run *R, redisContext *c) {
    for (int s = 0; s < FK_T_SKUS; s++) {
        R->res->codes_initial += R->stock[s];
        for (long long b = 0; b < R->stock[s]; b += 1000) {
            long long m = R->stock[s] - b < 1000 ? R->stock[s] - b : 1000;
            for (long long i = b; i < b + m; i++)
                redisAppendCommand(c, "RPUSH %s:stock:%s %s-k%lld", P, fk_t_sku(s), fk_t_sku(s),
                                   i);
            for (long long i = 0; i < m; i++) {
                redisReply *r;
                if (redisGetReply(c, (void **)&r) != REDIS_OK) fk_t_fail("RPUSH stock failed");
                freeReplyObject(r);
            }
        }
    }
}

/* ---- producers ---------------------------------------------------------- */

typedef struct producer {
    run *R;
    int idx, n;
    pthread_t th;
    long long resent, errors;
    int failed;
} producer;

static redisContext *quick_connect(int port) {
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c) redisFree(c);
        return NULL;
    }
    struct timeval rt = {3, 0};
    redisSetTimeout(c, rt);
    return c;
}

static void sleep_until(long long t) {
    long long now = fk_t_now_ms();
    if (t > now) fk_t_sleep_ms((long)(t - now));
}

/* XADD one order until an XADD of it is answered. A lost reply (the
 * connection died) means "maybe written": it is written again. */
static int submit(producer *p, redisContext **c, const item *it) {
    run *R = p->R;
    char json[512];
    int len = order_json(it, json, sizeof(json));
    int uncertain = 0;
    long long since = fk_t_now_ms();
    for (;;) {
        if (fk_t_now_ms() - since > PRODUCER_GIVE_UP_MS) return -1;
        if (!*c) {
            *c = quick_connect(R->r.port);
            if (!*c) {
                fk_t_sleep_ms(50);
                continue;
            }
        }
        redisReply *r = redisCommand(*c, "XADD %s:orders * order %b", P, json, (size_t)len);
        if (!r) {
            uncertain = 1;
            redisFree(*c);
            *c = NULL;
            fk_t_sleep_ms(20);
            continue;
        }
        int err = r->type == REDIS_REPLY_ERROR;
        freeReplyObject(r);
        if (err) { /* LOADING while Redis reads its AOF: nothing was written */
            p->errors++;
            fk_t_sleep_ms(50);
            continue;
        }
        if (uncertain) p->resent++;
        return 0;
    }
}

static void *producer_main(void *arg) {
    producer *p = arg;
    run *R = p->R;
    redisContext *c = NULL;
    for (long long k = p->idx; k < R->nitems; k += p->n) {
        sleep_until(R->t0 + k * R->produce_ms / (R->nitems ? R->nitems : 1));
        if (submit(p, &c, &R->items[k])) {
            p->failed = 1;
            break;
        }
    }
    if (c) redisFree(c);
    return NULL;
}

typedef struct garbage {
    run *R;
    pthread_t th;
} garbage;

static void *garbage_main(void *arg) {
    garbage *gb = arg;
    run *R = gb->R;
    redisContext *c = NULL;
    int gen = -1;
    for (long long i = 0; i < R->o->malformed; i++) {
        sleep_until(R->t0 + (i * 2 + 1) * R->produce_ms / (R->o->malformed * 2));
        pthread_mutex_lock(&R->mu);
        if (!c || gen != R->redis_gen || c->err) {
            if (c) redisFree(c);
            c = fk_t_connect(&R->r); /* Redis is up while we hold mu */
            gen = R->redis_gen;
        }
        fk_t_produce_garbage(c, P, i);
        __atomic_add_fetch(&R->res->malformed, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&R->mu);
    }
    if (c) redisFree(c);
    return NULL;
}

/* ---- the fleet ---------------------------------------------------------- */

static void worker_args(run *R) {
    const fk_t_chaos_opts *o = R->o;
    long http = o->lease_ms * 2 / 5, conn = http / 3 < 300 ? http / 3 : 300;
    snprintf(R->a_gw, sizeof(R->a_gw), "--gateway=%s", R->g.url);
    snprintf(R->a_hook, sizeof(R->a_hook), "--webhook-url=%s/webhook", R->g.url);
    snprintf(R->a_secret, sizeof(R->a_secret), "--webhook-secret=chaos-secret");
    snprintf(R->a_lease, sizeof(R->a_lease), "--lease-ms=%ld", o->lease_ms);
    snprintf(R->a_http, sizeof(R->a_http), "--http-timeout-ms=%ld", http);
    snprintf(R->a_conn, sizeof(R->a_conn), "--http-connect-timeout-ms=%ld", conn < 50 ? 50 : conn);
    int n = 0;
    R->wargs[n++] = R->a_gw;
    R->wargs[n++] = R->a_hook;
    R->wargs[n++] = R->a_secret;
    R->wargs[n++] = R->a_lease;
    R->wargs[n++] = R->a_http;
    R->wargs[n++] = R->a_conn;
    R->wargs[n++] = "--retry-base-ms=50";
    R->wargs[n++] = "--retry-cap-ms=1000";
    R->wargs[n++] = "--redis-timeout-ms=1000";
    R->wargs[n++] = "--block-ms=500";
    if (o->order_ttl_s > 0) {
        snprintf(R->a_ttl, sizeof(R->a_ttl), "--order-ttl-s=%ld", o->order_ttl_s);
        R->wargs[n++] = R->a_ttl;
    }
    R->wargs[n] = NULL;
}

static void spawn_worker(run *R, int i) {
    wslot *w = &R->w[i];
    /* half of the replacements come back under the old consumer name (and
     * first take up what is pending on it), half under a new one (and leave
     * it to the reclaim) */
    if (w->gen == 0 || w->gen % 2 == 0) snprintf(w->name, sizeof(w->name), "w%d", i + 1);
    else snprintf(w->name, sizeof(w->name), "w%dr%d", i + 1, w->gen);
    w->gen++;
    w->pid = fk_t_worker(&R->r, w->name, R->wargs);
    w->stopped = 0;
    w->respawn_at = 0;
}

static void start_reaper(run *R) {
    char url[200], id[40], log[300];
    snprintf(url, sizeof(url), "--redis-url=%s", R->r.url);
    snprintf(id, sizeof(id), "--worker-id=reaper");
    snprintf(log, sizeof(log), "%s/reaper.log", R->r.dir);
    const char *argv[24];
    int n = 0;
    argv[n++] = R->reaper_bin;
    argv[n++] = url;
    argv[n++] = id;
    for (int i = 0; R->wargs[i]; i++)
        if (strncmp(R->wargs[i], "--block-ms", 10) != 0) argv[n++] = R->wargs[i];
    /* the second look at orders expired on a 404 at 0.3, 3 and 18 s, so
     * that a charge a stalled worker lands late is found within the drain */
    argv[n++] = "--recheck-ms=300";
    argv[n] = NULL;
    R->reaper = fk_t_spawn(argv, NULL, log);
}

/* Workers that died without being killed are crashes: count, replace. */
static void reap_check(run *R) {
    long long now = fk_t_now_ms();
    for (int i = 0; i < R->nw; i++) {
        wslot *w = &R->w[i];
        int st;
        if (w->pid <= 0 || waitpid(w->pid, &st, WNOHANG) != w->pid) continue;
        R->res->crashes++;
        example(R->res, "worker %s exited on its own (%s %d); see %s/%s.log", w->name,
                WIFSIGNALED(st) ? "signal" : "status",
                WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), R->r.dir, w->name);
        w->pid = 0;
        w->stopped = 0;
        w->respawn_at = now + 200;
    }
    if (R->reaper > 0) {
        int st;
        if (waitpid(R->reaper, &st, WNOHANG) == R->reaper) {
            R->res->crashes++;
            example(R->res, "faka-reaper exited on its own (%s %d); see %s/reaper.log",
                    WIFSIGNALED(st) ? "signal" : "status",
                    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), R->r.dir);
            start_reaper(R);
        }
    }
}

static int pick(run *R, int need_running) {
    int cand[MAXW], n = 0;
    for (int i = 0; i < R->nw; i++)
        if (R->w[i].pid > 0 && (!need_running || !R->w[i].stopped)) cand[n++] = i;
    return n ? cand[rnd(&R->rng) % (unsigned)n] : -1;
}

static int kill_one(run *R) {
    int i = pick(R, 0);
    if (i < 0) return 0;
    wslot *w = &R->w[i];
    kill(w->pid, SIGKILL);
    fk_t_wait(w->pid, 5000);
    w->pid = 0;
    w->stopped = 0;
    w->respawn_at = fk_t_now_ms() + rnd_in(&R->rng, 100, 800);
    R->res->kills++;
    return 1;
}

static int stall_one(run *R) {
    int i = pick(R, 1);
    if (i < 0) return 0;
    wslot *w = &R->w[i];
    long lo = R->o->stall_min_ms ? R->o->stall_min_ms : R->o->lease_ms * 3 / 2;
    long hi = R->o->stall_max_ms ? R->o->stall_max_ms : R->o->lease_ms * 3;
    if (hi < lo) hi = lo;
    kill(w->pid, SIGSTOP);
    w->stopped = 1;
    w->cont_at = fk_t_now_ms() + rnd_in(&R->rng, lo, hi);
    R->res->stalls++;
    return 1;
}

/* SIGKILL Redis and start it again on the same port and dir (AOF, fsync
 * always): the fleet and the producers see connections die mid-command. */
static void restart_redis(run *R) {
    pthread_mutex_lock(&R->mu);
    fk_t_redis_kill(&R->r, SIGKILL);
    fk_t_sleep_ms((long)rnd_in(&R->rng, 200, 1500));
    fk_t_redis_restart(&R->r);
    R->redis_gen++;
    pthread_mutex_unlock(&R->mu);
    R->res->restarts++;
}

static void tend(run *R) {
    long long now = fk_t_now_ms();
    reap_check(R);
    for (int i = 0; i < R->nw; i++) {
        wslot *w = &R->w[i];
        if (w->pid > 0 && w->stopped && now >= w->cont_at) {
            kill(w->pid, SIGCONT);
            w->stopped = 0;
        }
        if (w->pid <= 0 && w->respawn_at && now >= w->respawn_at) {
            spawn_worker(R, i);
            if (w->gen > 1) R->res->respawns++;
        }
    }
}

/* ---- monitoring ---------------------------------------------------------- */

static redisContext *mon(run *R) {
    if (R->mon && (R->mon_gen != R->redis_gen || R->mon->err)) {
        redisFree(R->mon);
        R->mon = NULL;
    }
    if (!R->mon) {
        R->mon = quick_connect(R->r.port);
        R->mon_gen = R->redis_gen;
    }
    return R->mon;
}

static long long stat_of(redisReply *r, size_t i) {
    return i < r->elements && r->element[i]->type == REDIS_REPLY_STRING
               ? atoll(r->element[i]->str)
               : 0;
}

static void progress(run *R, const char *phase, long long remaining) {
    if (!R->o->verbose) return;
    redisContext *c = mon(R);
    redisReply *r = c ? redisCommand(c, "HMGET %s:stats completed failed expired "
                                        "manual_review dead retries", P)
                      : NULL;
    long long t = (fk_t_now_ms() - R->t0) / 1000;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        fprintf(stderr, "# chaos %s t=%llds: (redis unavailable)\n", phase, t);
    } else {
        int stopped = 0, up = 0;
        for (int i = 0; i < R->nw; i++) {
            up += R->w[i].pid > 0;
            stopped += R->w[i].pid > 0 && R->w[i].stopped;
        }
        fprintf(stderr,
                "# chaos %s t=%llds: final %lld (completed %lld failed %lld review %lld) "
                "dead %lld retries %lld | kills %d stalls %d restarts %d | workers up %d "
                "stopped %d",
                phase, t,
                stat_of(r, 0) + stat_of(r, 1) + stat_of(r, 2) + stat_of(r, 3), stat_of(r, 0),
                stat_of(r, 1), stat_of(r, 3), stat_of(r, 4), stat_of(r, 5), R->res->kills,
                R->res->stalls, R->res->restarts, up, stopped);
        if (remaining >= 0) fprintf(stderr, " | not final %lld", remaining);
        fprintf(stderr, "\n");
    }
    if (r) freeReplyObject(r);
    else if (R->mon) {
        redisFree(R->mon);
        R->mon = NULL;
    }
}

/* ---- the chaos window ---------------------------------------------------- */

static int cmp_ev(const void *a, const void *b) {
    long long x = ((const ev *)a)->at, y = ((const ev *)b)->at;
    return x < y ? -1 : x > y;
}

static void chaos_loop(run *R) {
    const fk_t_chaos_opts *o = R->o;
    long d = o->duration_ms;
    int nev = o->kills + o->stalls + o->redis_restarts;
    ev *evs = calloc((size_t)(nev ? nev : 1), sizeof(*evs));
    if (!evs) fk_t_fail("oom");
    int k = 0;
    for (int i = 0; i < o->kills; i++)
        evs[k++] = (ev){rnd_in(&R->rng, d / 30, d - d / 30), EV_KILL};
    for (int i = 0; i < o->stalls; i++)
        evs[k++] = (ev){rnd_in(&R->rng, d / 30, d - d / 30), EV_STALL};
    for (int i = 0; i < o->redis_restarts; i++) { /* spread out, with jitter */
        long long slot = d / o->redis_restarts;
        evs[k++] = (ev){slot * i + slot / 2 + rnd_in(&R->rng, -slot / 5, slot / 5), EV_RESTART};
    }
    qsort(evs, (size_t)nev, sizeof(*evs), cmp_ev);
    int next = 0;
    long long last_progress = 0;
    while (next < nev || fk_t_now_ms() < R->t0 + d) {
        tend(R);
        long long t = fk_t_now_ms() - R->t0;
        while (next < nev && evs[next].at <= t) {
            switch (evs[next].type) {
            case EV_KILL:
                if (!kill_one(R)) { /* every worker is down: try again shortly */
                    evs[next].at = t + 100;
                    goto later;
                }
                break;
            case EV_STALL:
                if (!stall_one(R)) {
                    evs[next].at = t + 100;
                    goto later;
                }
                break;
            case EV_RESTART:
                restart_redis(R);
                break;
            }
            next++;
        }
    later:
        if (t - last_progress >= 5000) {
            last_progress = t;
            progress(R, "run", -1);
        }
        fk_t_sleep_ms(20);
    }
    free(evs);
}

/* ---- the drain ------------------------------------------------------------ */

static int is_final(const char *st) {
    return !strcmp(st, "completed") || !strcmp(st, "failed") || !strcmp(st, "expired") ||
           !strcmp(st, "manual_review");
}

/* Recheck the orders not yet final; returns how many still are not, or -1
 * if Redis could not be asked. */
static long long not_final(run *R, unsigned char *done) {
    redisContext *c = mon(R);
    if (!c) return -1;
    long long left = 0;
    for (long long b = 0; b < R->nitems; b += 1000) {
        long long e = b + 1000 < R->nitems ? b + 1000 : R->nitems, sent = 0;
        for (long long k = b; k < e; k++)
            if (!done[k]) {
                redisAppendCommand(c, "HGET %s:order:%s state", P, R->items[k].id);
                sent++;
            }
        for (long long k = b; k < e && sent; k++) {
            if (done[k]) continue;
            redisReply *r;
            if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                redisFree(R->mon);
                R->mon = NULL;
                return -1;
            }
            sent--;
            if (r->type == REDIS_REPLY_STRING && is_final(r->str)) done[k] = 1;
            else left++;
            freeReplyObject(r);
        }
    }
    return left;
}

/* Orders the reaper still watches for a late charge (its second look),
 * or -1 if Redis could not be asked. */
static long long rechecks_left(run *R) {
    redisContext *c = mon(R);
    if (!c) return -1;
    redisReply *r = redisCommand(c, "ZCARD %s:recheck", P);
    if (!r) {
        redisFree(R->mon);
        R->mon = NULL;
        return -1;
    }
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return n;
}

static void drain(run *R) {
    /* a healthy fleet: everyone running, nobody stopped, nobody missing */
    for (int i = 0; i < R->nw; i++) {
        if (R->w[i].pid > 0 && R->w[i].stopped) {
            kill(R->w[i].pid, SIGCONT);
            R->w[i].stopped = 0;
        }
        if (R->w[i].pid <= 0) R->w[i].respawn_at = fk_t_now_ms();
    }
    unsigned char *done = calloc((size_t)(R->nitems ? R->nitems : 1), 1);
    if (!done) fk_t_fail("oom");
    long long start = fk_t_now_ms(), last = 0, left = -1, looks = 0;
    for (;;) {
        tend(R);
        left = not_final(R, done);
        /* final, and the reaper's looks for late charges done: a charge
         * one of them finds moves an expired order to manual_review */
        looks = left == 0 && R->reaper > 0 ? rechecks_left(R) : 0;
        long long now = fk_t_now_ms();
        if ((left == 0 && looks == 0) || now - start > R->o->drain_ms) break;
        if (now - last >= 5000) {
            last = now;
            progress(R, left ? "drain" : "rechecks", left ? left : looks);
        }
        fk_t_sleep_ms(500);
    }
    R->res->drained = left == 0;
    R->res->looks_left = looks;
    R->res->drain_ms = fk_t_now_ms() - start;
    free(done);
}

/* ---- the audit ------------------------------------------------------------ */

enum { ST_MISSING, ST_PROCESSING, ST_PENDING, ST_COMPLETED, ST_FAILED, ST_EXPIRED, ST_REVIEW,
       ST_OTHER };

static int state_code(const char *s) {
    if (!s) return ST_MISSING;
    if (!strcmp(s, "processing")) return ST_PROCESSING;
    if (!strcmp(s, "pending_payment")) return ST_PENDING;
    if (!strcmp(s, "completed")) return ST_COMPLETED;
    if (!strcmp(s, "failed")) return ST_FAILED;
    if (!strcmp(s, "expired")) return ST_EXPIRED;
    if (!strcmp(s, "manual_review")) return ST_REVIEW;
    return ST_OTHER;
}

static int is_final_code(int st) {
    return st == ST_COMPLETED || st == ST_FAILED || st == ST_EXPIRED || st == ST_REVIEW;
}

typedef struct rec {
    int st;
    char reason[32];
    char dup_of[32];
    char idem[64];
    char charge[16];
    int ncodes;
} rec;

typedef struct occ {
    char *code;
    char where; /* D delivered, R reserved, S stock */
} occ;

typedef struct occs {
    occ *v;
    size_t n, cap;
} occs;

static void occ_add(occs *o, const char *code, char where) {
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 4096;
        o->v = realloc(o->v, o->cap * sizeof(*o->v));
        if (!o->v) fk_t_fail("oom");
    }
    o->v[o->n].code = strdup(code);
    if (!o->v[o->n].code) fk_t_fail("oom");
    o->v[o->n++].where = where;
}

/* Add the codes of a JSON array; returns how many. */
static int occ_json(occs *o, const char *json, char where) {
    cJSON *a = cJSON_Parse(json);
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        if (cJSON_IsString(it)) {
            occ_add(o, it->valuestring, where);
            n++;
        }
    }
    cJSON_Delete(a);
    return n;
}

static int cmp_occ(const void *a, const void *b) {
    return strcmp(((const occ *)a)->code, ((const occ *)b)->code);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *rstr(const redisReply *r, size_t i) {
    return i < r->elements && r->element[i]->type == REDIS_REPLY_STRING ? r->element[i]->str
                                                                        : NULL;
}

static void add_reason(fk_t_chaos_result *res, const char *state, const char *reason) {
    for (int i = 0; i < res->nreasons; i++)
        if (!strcmp(res->reasons[i].state, state) && !strcmp(res->reasons[i].reason, reason)) {
            res->reasons[i].n++;
            return;
        }
    if (res->nreasons == FK_T_CHAOS_REASONS) return;
    snprintf(res->reasons[res->nreasons].state, sizeof(res->reasons[0].state), "%s", state);
    snprintf(res->reasons[res->nreasons].reason, sizeof(res->reasons[0].reason), "%s", reason);
    res->reasons[res->nreasons++].n = 1;
}

/* Why an order is not final: what its record and the queues say. */
static void explain_lost(run *R, redisContext *c, const item *it, const rec *rc) {
    if (rc->st == ST_MISSING) {
        example(R->res, "lost %s: no record", it->id);
        return;
    }
    redisReply *h = fk_t_cmd(c, "HMGET %s:order:%s state charge attempts fence lease_until "
                                "lease_entry polls", P, it->id);
    long long retry = fk_t_int(c, "ZSCORE %s:retry %s", P, it->id);
    long long active = fk_t_int(c, "ZSCORE %s:active %s", P, it->id);
    redisReply *t = fk_t_cmd(c, "TIME");
    long long now = atoll(t->element[0]->str) * 1000 + atoll(t->element[1]->str) / 1000;
    freeReplyObject(t);
    const char *lu = rstr(h, 4);
    example(R->res,
            "lost %s: %s charge=%s attempts=%s fence=%s lease %s (entry %s) polls=%s; "
            "retry zset %s; active zset %s",
            it->id, rstr(h, 0) ? rstr(h, 0) : "-", rstr(h, 1) ? rstr(h, 1) : "-",
            rstr(h, 2) ? rstr(h, 2) : "-", rstr(h, 3) ? rstr(h, 3) : "-",
            lu ? (atoll(lu) > now ? "live" : "expired") : "none",
            rstr(h, 5) ? rstr(h, 5) : "-", rstr(h, 6) ? rstr(h, 6) : "0",
            retry >= 0 ? "yes" : "no", active >= 0 ? "yes" : "no");
    freeReplyObject(h);
}

static int cmp_item_id(const void *a, const void *b) {
    return strcmp((*(item *const *)a)->id, (*(item *const *)b)->id);
}

static item *find_item(item **idx, long long n, const char *id) {
    item key, *kp = &key;
    snprintf(key.id, sizeof(key.id), "%s", id);
    item **f = bsearch(&kp, idx, (size_t)n, sizeof(*idx), cmp_item_id);
    return f ? *f : NULL;
}

static void audit_dead(run *R, redisContext *c, item **byid, rec *recs) {
    fk_t_chaos_result *res = R->res;
    res->dead = fk_t_int(c, "XLEN %s:dead", P);
    char start[64] = "-";
    for (;;) {
        redisReply *d = fk_t_cmd(c, "XRANGE %s:dead %s + COUNT 500", P, start);
        if (d->type != REDIS_REPLY_ARRAY || d->elements == 0) {
            freeReplyObject(d);
            break;
        }
        for (size_t i = 0; i < d->elements; i++) {
            redisReply *e = d->element[i], *f = e->element[1];
            const char *error = "", *kind = "", *raw = "", *source = "";
            for (size_t k = 0; k + 1 < f->elements; k += 2) {
                const char *name = f->element[k]->str, *val = f->element[k + 1]->str;
                if (!strcmp(name, "error")) error = val;
                else if (!strcmp(name, "kind")) kind = val;
                else if (!strcmp(name, "raw")) raw = val;
                else if (!strcmp(name, "source_id")) source = val;
            }
            if (strncmp(error, "delivered ", 10) != 0) {
                res->dead_decode++;
                continue;
            }
            res->dead_poison++;
            /* which order did the poison entry carry? */
            char oid[64] = "";
            if (!strcmp(kind, "order")) {
                cJSON *j = cJSON_Parse(raw);
                const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, "order_id");
                if (cJSON_IsString(x)) snprintf(oid, sizeof(oid), "%s", x->valuestring);
                cJSON_Delete(j);
            } else if (!strcmp(kind, "retry")) {
                snprintf(oid, sizeof(oid), "%.*s", (int)strcspn(raw, "@"), raw);
            }
            item *it = oid[0] ? find_item(byid, R->nitems, oid) : NULL;
            if (it) {
                res->dead_poison_orders++;
                const rec *rc = &recs[it - R->items];
                static const char *const names[] = {"no record", "processing",
                                                    "pending_payment", "completed", "failed",
                                                    "expired", "manual_review", "?"};
                example(res, "poison: %s entry %s of order %s (now %s) dead-lettered: %s",
                        kind, source, oid, names[rc->st], error);
            } else {
                example(res, "poison: %s entry %s dead-lettered: %s", kind, source, error);
            }
        }
        snprintf(start, sizeof(start), "(%s", d->element[d->elements - 1]->element[0]->str);
        freeReplyObject(d);
    }
}

static void audit_groups(run *R, redisContext *c, item **byid, rec *recs) {
    fk_t_chaos_result *res = R->res;
    const fk_t_chaos_opts *o = R->o;
    for (int g = 0; g < o->dup_groups; g++) {
        res->dup_groups++;
        redisReply *ow = fk_t_cmd(c, "GET %s:idem:dupkey-%d", P, g);
        char owner[64] = "";
        if (ow->type == REDIS_REPLY_STRING) snprintf(owner, sizeof(owner), "%s", ow->str);
        freeReplyObject(ow);
        item *oi = owner[0] ? find_item(byid, R->nitems, owner) : NULL;
        if (!oi || oi->group != g) {
            res->dup_groups_bad++;
            example(res, "group dupkey-%d: the key names '%s', not one of its orders", g, owner);
            continue;
        }
        const rec *orc = &recs[oi - R->items];
        int bad = orc->dup_of[0] != '\0' || !strcmp(orc->reason, "duplicate") ||
                  !strcmp(orc->reason, "idempotency_conflict");
        for (long long k = 0; k < R->nitems && !bad; k++) {
            const item *it = &R->items[k];
            if (it->group != g || it == oi) continue;
            const rec *rc = &recs[k];
            const char *want = it->amount == oi->amount ? "duplicate" : "idempotency_conflict";
            if (rc->st != ST_FAILED || strcmp(rc->reason, want) != 0 ||
                strcmp(rc->dup_of, owner) != 0 || rc->ncodes) {
                bad = 1;
                example(res, "group dupkey-%d: %s should be failed/%s of %s, is %s/%s of '%s'",
                        g, it->id, want, owner, rc->st == ST_FAILED ? "failed" : "not failed",
                        rc->reason, rc->dup_of);
            }
        }
        if (bad) res->dup_groups_bad++;
    }
}

static void audit(run *R) {
    fk_t_chaos_result *res = R->res;
    redisContext *c = fk_t_connect(&R->r);
    rec *recs = calloc((size_t)(R->nitems ? R->nitems : 1), sizeof(*recs));
    item **byid = malloc((size_t)(R->nitems ? R->nitems : 1) * sizeof(*byid));
    occs oc = {NULL, 0, 0};
    if (!recs || !byid) fk_t_fail("oom");
    for (long long k = 0; k < R->nitems; k++) byid[k] = &R->items[k];
    qsort(byid, (size_t)R->nitems, sizeof(*byid), cmp_item_id);
    res->submitted = R->nitems;
    res->dup_entries = (long long)R->o->dup_groups * R->o->dup_size;

    /* records */
    for (long long b = 0; b < R->nitems; b += 1000) {
        long long e = b + 1000 < R->nitems ? b + 1000 : R->nitems;
        for (long long k = b; k < e; k++)
            redisAppendCommand(c, "HMGET %s:order:%s state reason duplicate_of qty codes resv "
                                  "idem charge", P, R->items[k].id);
        for (long long k = b; k < e; k++) {
            redisReply *r;
            if (redisGetReply(c, (void **)&r) != REDIS_OK) fk_t_fail("audit: HMGET failed");
            rec *rc = &recs[k];
            const item *it = &R->items[k];
            rc->st = state_code(rstr(r, 0));
            snprintf(rc->reason, sizeof(rc->reason), "%s", rstr(r, 1) ? rstr(r, 1) : "");
            snprintf(rc->dup_of, sizeof(rc->dup_of), "%s", rstr(r, 2) ? rstr(r, 2) : "");
            snprintf(rc->idem, sizeof(rc->idem), "%s", rstr(r, 6) ? rstr(r, 6) : "");
            snprintf(rc->charge, sizeof(rc->charge), "%s", rstr(r, 7) ? rstr(r, 7) : "");
            if (rstr(r, 4)) rc->ncodes = occ_json(&oc, rstr(r, 4), 'D');
            if (rstr(r, 5)) {
                int held = occ_json(&oc, rstr(r, 5), 'R');
                res->codes_reserved += held;
                /* only an order still being settled, or waiting for a human,
                 * may hold codes: a final one leaked them */
                if (rc->st == ST_COMPLETED || rc->st == ST_FAILED || rc->st == ST_EXPIRED) {
                    res->codes_held_by_final += held;
                    example(res, "%s is final (%s) and still holds codes: %s", it->id,
                            rstr(r, 0), rstr(r, 5));
                }
            }
            res->codes_delivered += rc->ncodes;
            switch (rc->st) {
            case ST_COMPLETED:
                res->completed++;
                if (rc->ncodes != it->qty) {
                    res->qty_mismatch++;
                    example(res, "%s completed with %d codes for qty %d", it->id, rc->ncodes,
                            it->qty);
                }
                break;
            case ST_FAILED:
                res->failed++;
                add_reason(res, "failed", rc->reason);
                break;
            case ST_EXPIRED:
                res->expired++;
                add_reason(res, "expired", rc->reason);
                break;
            case ST_REVIEW:
                res->review++;
                add_reason(res, "manual_review", rc->reason);
                break;
            case ST_MISSING:
                res->missing++;
                break;
            default:
                res->not_final++;
                break;
            }
            freeReplyObject(r);
        }
    }
    res->lost = res->missing + res->not_final;
    for (long long k = 0, shown = 0; k < R->nitems && shown < 4; k++)
        if (!is_final_code(recs[k].st)) {
            explain_lost(R, c, &R->items[k], &recs[k]);
            shown++;
        }

    /* codes: every code loaded is in exactly one place */
    for (int s = 0; s < FK_T_SKUS; s++) {
        redisReply *l = fk_t_cmd(c, "LRANGE %s:stock:%s 0 -1", P, fk_t_sku(s));
        for (size_t i = 0; i < l->elements; i++) occ_add(&oc, l->element[i]->str, 'S');
        res->codes_stock += (long long)l->elements;
        freeReplyObject(l);
    }
    qsort(oc.v, oc.n, sizeof(*oc.v), cmp_occ);
    char **init = malloc((size_t)(res->codes_initial ? res->codes_initial : 1) * sizeof(*init));
    if (!init) fk_t_fail("oom");
    long long ni = 0;
    for (int s = 0; s < FK_T_SKUS; s++)
        for (long long i = 0; i < R->stock[s]; i++) {
            char code[64];
            snprintf(code, sizeof(code), "%s-k%lld", fk_t_sku(s), i);
            init[ni] = strdup(code);
            if (!init[ni++]) fk_t_fail("oom");
        }
    qsort(init, (size_t)ni, sizeof(*init), cmp_str);
    size_t a = 0;
    long long b = 0;
    while (a < oc.n || b < ni) {
        int cmp = a >= oc.n ? 1 : b >= ni ? -1 : strcmp(oc.v[a].code, init[b]);
        if (cmp > 0) { /* loaded, found nowhere */
            res->codes_lost++;
            if (res->codes_lost <= 2) example(res, "code %s is nowhere", init[b]);
            b++;
            continue;
        }
        size_t e = a;
        int delivered = 0;
        while (e < oc.n && strcmp(oc.v[e].code, oc.v[a].code) == 0)
            delivered += oc.v[e++].where == 'D';
        if (e - a > 1) {
            res->codes_duplicated++;
            if (res->codes_duplicated <= 2)
                example(res, "code %s is in %zu places (%d delivered)", oc.v[a].code, e - a,
                        delivered);
        }
        if (delivered > 1) res->codes_delivered_twice++;
        if (cmp < 0) res->codes_unknown++;
        else b++;
        a = e;
    }
    for (size_t i = 0; i < oc.n; i++) free(oc.v[i].code);
    free(oc.v);
    for (long long i = 0; i < ni; i++) free(init[i]);
    free(init);

    /* money: the gateway's ledger against the records */
    fk_t_ledger l;
    fk_t_ledger_load(&R->g, &l);
    res->ledger_double_charges = l.double_charges;
    res->ledger_double_charged_orders = l.double_charged_orders;
    res->charges_succeeded = l.charges_succeeded;
    for (size_t i = 0; i < l.n; i++)
        if (l.v[i].charges > 1) {
            res->charged_twice++;
            example(res, "key %s charged %lld times (order %s)", l.v[i].key, l.v[i].charges,
                    l.v[i].order_id);
        }
    size_t nidx;
    const fk_t_charge **idx = fk_t_ledger_by_order(&l, &nidx);
    for (long long k = 0; k < R->nitems; k++) {
        const item *it = &R->items[k];
        const rec *rc = &recs[k];
        size_t cnt;
        const fk_t_charge *const *f = fk_t_ledger_order_find(idx, nidx, it->id, &cnt);
        long long charged = 0;
        for (size_t i = 0; i < cnt; i++) charged += f[i]->charges;
        if (rc->st == ST_COMPLETED) {
            const fk_t_charge *e = fk_t_ledger_find(&l, rc->idem[0] ? rc->idem : it->id);
            int ok = e && !strcmp(e->status, "succeeded") && e->charges == 1 &&
                     !strcmp(e->order_id, it->id) && charged == 1;
            if (!ok) {
                res->completed_charge_bad++;
                example(res, "%s completed, but the ledger has %lld charges for it (key %s: %s)",
                        it->id, charged, rc->idem, e ? e->status : "unknown");
            }
        } else if ((rc->st == ST_FAILED || rc->st == ST_EXPIRED) && charged > 0) {
            res->final_but_charged++;
            example(res, "%s is %s/%s (charge=%s) but was charged %lld time(s): money taken, "
                         "nothing delivered", it->id, rc->st == ST_FAILED ? "failed" : "expired",
                    rc->reason, rc->charge, charged);
        }
    }
    for (size_t i = 0; i < nidx; i++) {
        item *it = find_item(byid, R->nitems, idx[i]->order_id);
        int st = it ? recs[it - R->items].st : ST_MISSING;
        if (!it || st == ST_MISSING || st == ST_PROCESSING || st == ST_PENDING ||
            st == ST_OTHER) {
            res->charge_orphans++;
            example(res, "succeeded charge %s for order '%s', which is %s", idx[i]->key,
                    idx[i]->order_id, it ? "not final" : "not an order we submitted");
        }
    }
    free(idx);
    fk_t_ledger_free(&l);
    res->webhook_mismatches = fk_t_webhooks_num(&R->g, "code_mismatches");

    audit_dead(R, c, byid, recs);
    audit_groups(R, c, byid, recs);
    redisReply *x = fk_t_cmd(c, "XPENDING %s:orders workers", P);
    if (x->type == REDIS_REPLY_ARRAY && x->elements > 0 &&
        x->element[0]->type == REDIS_REPLY_INTEGER)
        res->left_pending = x->element[0]->integer;
    freeReplyObject(x);
    res->left_retry = fk_t_int(c, "ZCARD %s:retry", P);
    res->left_active = fk_t_int(c, "ZCARD %s:active", P);
    free(byid);
    free(recs);
    redisFree(c);
}

/* ---- the run --------------------------------------------------------------- */

static const char *faults_json(const char *f) {
    if (!f || !strcmp(f, "none")) return "{}";
    if (!strcmp(f, "light"))
        return "{\"latency_ms\":1,\"latency_jitter_ms\":4,\"p_503\":0.03,\"p_500\":0.01,"
               "\"p_429\":0.02,\"p_lost\":0.02,\"p_timeout\":0.005,\"p_reset\":0.01,"
               "\"p_garbage\":0.005,\"p_decline\":0.03,\"p_risk\":0.01,\"p_pending\":0.03,"
               "\"pending_ms\":800,\"p_webhook_fail\":0.1}";
    if (!strcmp(f, "heavy"))
        return "{\"latency_ms\":2,\"latency_jitter_ms\":8,\"p_503\":0.08,\"p_500\":0.03,"
               "\"p_429\":0.05,\"p_lost\":0.05,\"p_timeout\":0.02,\"p_reset\":0.03,"
               "\"p_garbage\":0.02,\"p_decline\":0.05,\"p_risk\":0.02,\"p_pending\":0.05,"
               "\"pending_ms\":800,\"faults_on_get\":true,\"p_webhook_fail\":0.2}";
    return f; /* a JSON object of /_faults fields */
}

int fk_t_chaos_run(const fk_t_chaos_opts *o, fk_t_chaos_result *res) {
    if (o->workers < 1 || o->workers > MAXW || o->producers < 1 || o->producers > 64 ||
        o->orders < 0 || o->dup_groups < 0 || o->dup_size < 0 || o->malformed < 0 ||
        o->kills < 0 || o->stalls < 0 || o->redis_restarts < 0 || o->duration_ms < 1000 ||
        o->lease_ms < 500 || (o->dup_groups > 0 && o->dup_size < 1))
        fk_t_fail("chaos: bad options");
    memset(res, 0, sizeof(*res));
    run *R = calloc(1, sizeof(*R));
    if (!R) fk_t_fail("oom");
    R->o = o;
    R->res = res;
    R->rng = o->seed ^ 0x5eed5eedULL;
    R->nw = o->workers;
    R->produce_ms = o->duration_ms * 3 / 4;
    pthread_mutex_init(&R->mu, NULL);
    plan(R);

    /* the reaper, if it is built (another developer is writing it) */
    const char *bd = getenv("FK_BUILD_DIR");
    snprintf(R->reaper_bin, sizeof(R->reaper_bin), "%s/workers/faka-reaper", bd ? bd : ".");
    int have_reaper = access(R->reaper_bin, X_OK) == 0;
    if (o->reaper == 1 && !have_reaper) fk_t_fail("chaos: %s is not built", R->reaper_bin);
    res->reaper = o->reaper != 0 && have_reaper;

    handlers_install(R);
    fk_t_redis_start(&R->r, 1);
    snprintf(res->dir, sizeof(res->dir), "%s", R->r.dir);
    fk_t_gateway_start(&R->g, R->r.dir, "chaos-secret");
    char body[64];
    snprintf(body, sizeof(body), "{\"seed\":%llu}", o->seed);
    fk_t_gateway_post(&R->g, "/_reset", body);
    fk_t_gateway_post(&R->g, "/_faults", faults_json(o->faults));
    redisContext *c = fk_t_connect(&R->r);
    load_stock(R, c);
    redisFree(c);
    worker_args(R);
    for (int i = 0; i < R->nw; i++) spawn_worker(R, i);
    if (res->reaper) start_reaper(R);
    if (o->verbose)
        fprintf(stderr, "# chaos: redis %s, gateway %s, logs in %s%s\n", R->r.url, R->g.url,
                R->r.dir, res->reaper ? "" : " (no faka-reaper built: running without it)");

    /* producers and the chaos loop */
    R->t0 = fk_t_now_ms() + 300;
    producer *ps = calloc((size_t)o->producers, sizeof(*ps));
    if (!ps) fk_t_fail("oom");
    for (int i = 0; i < o->producers; i++) {
        ps[i] = (producer){R, i, o->producers, 0, 0, 0, 0};
        if (pthread_create(&ps[i].th, NULL, producer_main, &ps[i]))
            fk_t_fail("pthread_create");
    }
    garbage gb = {R, 0};
    if (pthread_create(&gb.th, NULL, garbage_main, &gb)) fk_t_fail("pthread_create");
    chaos_loop(R);
    /* the producers are due to be done; wait for stragglers (still tending
     * the fleet, but with no more chaos) */
    for (int i = 0; i < o->producers; i++) {
        pthread_join(ps[i].th, NULL);
        res->resent += ps[i].resent;
        res->xadd_errors += ps[i].errors;
        if (ps[i].failed) {
            res->producer_failed = 1;
            example(res, "producer %d gave up: Redis unreachable for %d s", i,
                    PRODUCER_GIVE_UP_MS / 1000);
        }
    }
    pthread_join(gb.th, NULL);
    free(ps);
    res->run_ms = fk_t_now_ms() - R->t0;

    drain(R);
    progress(R, "drained", -1);

    /* Stop the fleet before the audit, so that it reads a Redis nobody
     * writes to (a drain that timed out leaves work in flight). Each must
     * drain and exit 0 (an ASan build reports leaks and errors through the
     * exit status). */
    for (int i = 0; i < R->nw; i++)
        if (R->w[i].pid > 0) kill(R->w[i].pid, SIGTERM);
    if (R->reaper > 0) kill(R->reaper, SIGTERM);
    for (int i = 0; i <= R->nw; i++) {
        pid_t *pid = i < R->nw ? &R->w[i].pid : &R->reaper;
        const char *name = i < R->nw ? R->w[i].name : "reaper";
        if (*pid <= 0) continue;
        int st = fk_t_wait(*pid, 20000);
        if (st != 0) {
            if (st < 0) {
                kill(*pid, SIGKILL);
                fk_t_wait(*pid, 5000);
            }
            res->bad_exits++;
            example(res, "%s did not exit 0 on SIGTERM (%d); see %s/%s.log", name, st, R->r.dir,
                    name);
        }
        *pid = 0;
    }
    audit(R);
    fk_t_gateway_stop(&R->g);
    if (R->mon) redisFree(R->mon);
    int ok = fk_t_chaos_ok(res);
    if (ok && !o->keep) {
        fk_t_redis_stop(&R->r);
        res->dir[0] = '\0';
    } else {
        fk_t_redis_kill(&R->r, SIGTERM);
    }
    handlers_remove();
    pthread_mutex_destroy(&R->mu);
    free(R->items);
    free(R);
    return ok ? 0 : 1;
}

int fk_t_chaos_ok(const fk_t_chaos_result *r) {
    return r->lost == 0 && r->ledger_double_charges == 0 &&
           r->ledger_double_charged_orders == 0 && r->charged_twice == 0 &&
           r->codes_delivered_twice == 0 && r->codes_lost == 0 && r->codes_duplicated == 0 &&
           r->codes_unknown == 0 && r->codes_held_by_final == 0 && r->qty_mismatch == 0 &&
           r->completed_charge_bad == 0 &&
           r->final_but_charged == 0 && r->charge_orphans == 0 && r->webhook_mismatches == 0 &&
           r->dead == r->malformed && r->dup_groups_bad == 0 && r->crashes == 0 &&
           r->bad_exits == 0 && !r->producer_failed;
}

/* ---- the table --------------------------------------------------------------- */

static const char *mark(int bad) { return bad ? "   <-- FAIL" : ""; }

void fk_t_chaos_print(FILE *out, const fk_t_chaos_opts *o, const fk_t_chaos_result *r) {
    long lo = o->stall_min_ms ? o->stall_min_ms : o->lease_ms * 3 / 2;
    long hi = o->stall_max_ms ? o->stall_max_ms : o->lease_ms * 3;
    fprintf(out,
            "\n== faka chaos: %lld orders (%lld of them in %lld groups racing on one "
            "idempotency key), %d workers, %d producers, seed %llu, faults %s\n",
            r->submitted, r->dup_entries, (long long)o->dup_groups, o->workers, o->producers,
            o->seed, strchr(o->faults ? o->faults : "", '{') ? "custom" : o->faults);
    fprintf(out,
            "   chaos: %d worker SIGKILLs (%d replaced), %d stalls (SIGSTOP %.1f-%.1f s, lease "
            "%.1f s), %d Redis SIGKILL+restarts (AOF always), %lld malformed entries; %s\n",
            r->kills, r->respawns, r->stalls, (double)lo / 1000, (double)hi / 1000,
            (double)o->lease_ms / 1000,
            r->restarts, r->malformed,
            r->reaper ? "faka-reaper running" : "no faka-reaper (not built)");
    fprintf(out, "   run %.1f s, drain %.1f s%s\n", (double)r->run_ms / 1000,
            (double)r->drain_ms / 1000,
            r->drained ? "" : " (drain timed out)");
    if (r->looks_left)
        fprintf(out, "   the drain's cap came first for the reaper's second looks: %lld orders "
                     "still watched for a late charge (not counted below)\n",
                r->looks_left);
    fprintf(out, "   %-56s %10s\n", "", "count");
    fprintf(out, "   %-56s %10lld   (XADDs repeated after a lost reply: %lld)\n",
            "orders submitted (distinct order ids)", r->submitted, r->resent);
    fprintf(out, "   %-56s %10lld\n", "  completed", r->completed);
    fprintf(out, "   %-56s %10lld\n", "  failed", r->failed);
    for (int i = 0; i < r->nreasons; i++)
        if (!strcmp(r->reasons[i].state, "failed"))
            fprintf(out, "       %-52s %10lld\n",
                    r->reasons[i].reason[0] ? r->reasons[i].reason : "?", r->reasons[i].n);
    fprintf(out, "   %-56s %10lld\n", "  expired", r->expired);
    for (int i = 0; i < r->nreasons; i++)
        if (!strcmp(r->reasons[i].state, "expired"))
            fprintf(out, "       %-52s %10lld\n", r->reasons[i].reason, r->reasons[i].n);
    fprintf(out, "   %-56s %10lld\n", "  manual_review", r->review);
    for (int i = 0; i < r->nreasons; i++)
        if (!strcmp(r->reasons[i].state, "manual_review"))
            fprintf(out, "       %-52s %10lld\n", r->reasons[i].reason, r->reasons[i].n);
    fprintf(out, "   %-56s %10lld%s\n", "lost: no record", r->missing, mark(r->missing != 0));
    fprintf(out, "   %-56s %10lld%s\n", "lost: not final after the drain", r->not_final,
            mark(r->not_final != 0));
    long long dc = r->charged_twice + r->ledger_double_charged_orders;
    fprintf(out, "   %-56s %10lld%s   (ledger: double_charges %lld, double_charged_orders %lld)\n",
            "orders charged more than once", dc,
            mark(dc != 0 || r->ledger_double_charges != 0), r->ledger_double_charges,
            r->ledger_double_charged_orders);
    fprintf(out, "   %-56s %10lld%s\n", "codes delivered more than once", r->codes_delivered_twice,
            mark(r->codes_delivered_twice != 0));
    fprintf(out, "   %-56s %10lld%s   (%lld = %lld + %lld + %lld)\n",
            "codes lost (initial = remaining + reserved + delivered)", r->codes_lost,
            mark(r->codes_lost != 0 || r->codes_initial != r->codes_stock + r->codes_reserved +
                                                              r->codes_delivered),
            r->codes_initial, r->codes_stock, r->codes_reserved, r->codes_delivered);
    fprintf(out, "   %-56s %10lld%s\n", "codes held by a completed/failed/expired order",
            r->codes_held_by_final, mark(r->codes_held_by_final != 0));
    if (r->codes_duplicated || r->codes_unknown)
        fprintf(out, "   %-56s %10lld%s\n", "codes in two places / never loaded",
                r->codes_duplicated + r->codes_unknown, mark(1));
    fprintf(out, "   %-56s %4lld / %-4lld%s   (undecodable %lld, poison %lld)\n",
            "dead letters / malformed entries", r->dead, r->malformed,
            mark(r->dead != r->malformed), r->dead_decode, r->dead_poison);
    fprintf(out, "   cross-checks against the ledger (%lld succeeded charges):\n",
            r->charges_succeeded);
    fprintf(out, "   %-56s %10lld%s\n", "  completed without exactly one charge of its own",
            r->completed_charge_bad, mark(r->completed_charge_bad != 0));
    fprintf(out, "   %-56s %10lld%s\n", "  failed/expired with a succeeded charge",
            r->final_but_charged, mark(r->final_but_charged != 0));
    fprintf(out, "   %-56s %10lld%s\n", "  charges of unknown or unfinished orders",
            r->charge_orphans, mark(r->charge_orphans != 0));
    fprintf(out, "   %-56s %10lld%s\n", "  webhooks naming other codes for an order",
            r->webhook_mismatches, mark(r->webhook_mismatches != 0));
    fprintf(out, "   %-56s %4lld / %-4lld%s\n", "racing-duplicate groups wrong / checked",
            r->dup_groups_bad, r->dup_groups, mark(r->dup_groups_bad != 0));
    fprintf(out, "   %-56s %10lld\n", "completed orders with a wrong number of codes",
            r->qty_mismatch);
    fprintf(out, "   %-56s %10d%s\n", "worker crashes / unclean exits", r->crashes + r->bad_exits,
            mark(r->crashes + r->bad_exits != 0));
    fprintf(out, "   left over: %lld entries pending in the group, %lld retries scheduled, %lld "
                 "orders in the active index\n",
            r->left_pending, r->left_retry, r->left_active);
    for (int i = 0; i < r->nexamples; i++) fprintf(out, "   ! %s\n", r->examples[i]);
    fprintf(out, "   verdict: %s%s%s\n", fk_t_chaos_ok(r) ? "PASS" : "FAIL",
            r->dir[0] ? "; logs and AOF kept in " : "", r->dir);
}
