/* ctl_stats.c -- fakactl stats and top: one snapshot of the fleet read in a
 * single pipelined round trip (the stats hash, the last hour of per-minute
 * hashes, stream and group state, queues, heartbeats, breaker and bucket),
 * printed once (stats, top --once) or redrawn every second (top).
 *
 * top draws with plain ANSI escapes on the alternate screen (no curses):
 * the terminal is put in non-canonical no-echo mode to read 'q', and
 * restored on q, SIGINT, SIGTERM and every error path. */
#include "clock.h"
#include "ctl.h"
#include "err.h"
#include "metrics.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define HOUR_MINUTES 60

/* ---- the snapshot ------------------------------------------------------- */

typedef struct snap {
    long long at;              /* local ms when taken */
    fk_metrics m;
    long long stream_len, lag, pending, retry, review, dead_len;
    long long recheck; /* expired on a 404, watched for a late charge (the reaper's second look) */
    long long consumers, inflight, workers, alive;
    char bstate[16];
    long long open_until, opened_at, consecutive, opens, refusals, probes_used;
    long long calls_ok, calls_failed;
    int bucket;                /* the rate limit hash exists */
    double tokens;
    long long rate_refusals;
    long long minute_final[HOUR_MINUTES]; /* oldest first; the last is this minute */
    long long minute_completed[HOUR_MINUTES];
} snap;

/* Everything read here is a count, a length or a time in ms: never
 * negative, garbage reads as 0 (fk_metrics_counter), so the differences and
 * sums below stay defined whatever someone wrote into these hashes. */
static long long fnum(const redisReply *v) { return fk_metrics_counter(v); }

/* Value of field `name` in a flat [field, value, ...] reply, or NULL. */
static const redisReply *hfield(const redisReply *h, const char *name) {
    if (!h || h->type != REDIS_REPLY_ARRAY) return NULL;
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (h->element[i]->type == REDIS_REPLY_STRING && strcmp(h->element[i]->str, name) == 0)
            return h->element[i + 1];
    return NULL;
}

#define FIXED 11

static int take(fk_ctl *ctl, snap *s) {
    int rc = fk_ctl_connect(ctl);
    if (rc) return rc;
    memset(s, 0, sizeof(*s));
    s->at = fk_now_ms();
    const fk_keys *k = &ctl->keys;
    redisAppendCommand(ctl->c, "HGETALL %s", k->stats);
    redisAppendCommand(ctl->c, "XLEN %s", k->stream);
    redisAppendCommand(ctl->c, "XINFO GROUPS %s", k->stream);
    redisAppendCommand(ctl->c, "ZCARD %s", k->retry);
    redisAppendCommand(ctl->c, "ZCARD %s", k->review);
    redisAppendCommand(ctl->c, "XLEN %s", k->dead);
    redisAppendCommand(ctl->c, "XINFO CONSUMERS %s %s", k->stream, k->group);
    redisAppendCommand(ctl->c, "ZRANGE %s 0 -1 WITHSCORES", k->workers);
    redisAppendCommand(ctl->c, "HGETALL %s", k->breaker);
    redisAppendCommand(ctl->c, "HGETALL %s", k->ratelimit);
    redisAppendCommand(ctl->c, "ZCARD %s", k->recheck);
    for (int i = 0; i < HOUR_MINUTES; i++) {
        char mkey[160];
        fk_key_stats_minute(k, s->at - (long long)(HOUR_MINUTES - 1 - i) * 60000, mkey,
                            sizeof(mkey));
        redisAppendCommand(ctl->c, "HMGET %s completed failed expired", mkey);
    }
    redisReply *r[FIXED + HOUR_MINUTES];
    if ((rc = fk_ctl_pipeline(ctl, r, FIXED + HOUR_MINUTES))) return rc;
    /* XINFO on a stream or group that does not exist yet is an error
     * reply: nothing there yet. Any other error is a failure. */
    for (int i = 0; i < FIXED + HOUR_MINUTES; i++)
        if (r[i]->type == REDIS_REPLY_ERROR && i != 2 && i != 6 && !rc)
            rc = fk_ctl_fail(ctl, FK_EREDIS, "Redis error: %s", r[i]->str);
    if (rc) goto out;
    fk_metrics_from_hash(&s->m, r[0]);
    s->stream_len = fnum(r[1]);
    s->lag = -1;
    for (size_t i = 0; r[2]->type == REDIS_REPLY_ARRAY && i < r[2]->elements; i++) {
        const redisReply *g = r[2]->element[i], *name = hfield(g, "name");
        if (!name || name->type != REDIS_REPLY_STRING || strcmp(name->str, k->group) != 0)
            continue;
        s->pending = fnum(hfield(g, "pending"));
        const redisReply *lag = hfield(g, "lag");
        s->lag = lag && lag->type == REDIS_REPLY_INTEGER ? lag->integer : -1;
    }
    if (r[2]->type == REDIS_REPLY_ERROR) s->lag = 0; /* no stream yet */
    s->retry = fnum(r[3]);
    s->review = fnum(r[4]);
    s->dead_len = fnum(r[5]);
    s->recheck = fnum(r[10]);
    for (size_t i = 0; r[6]->type == REDIS_REPLY_ARRAY && i < r[6]->elements; i++) {
        s->consumers++;
        s->inflight = fk_metrics_add(s->inflight, fnum(hfield(r[6]->element[i], "pending")));
    }
    for (size_t i = 0; r[7]->type == REDIS_REPLY_ARRAY && i + 1 < r[7]->elements; i += 2) {
        s->workers++;
        if (s->at - fnum(r[7]->element[i + 1]) < ctl->cfg.worker_ttl_ms) s->alive++;
    }
    /* shown as it is stored (open, half_open, anything else reads as
     * closed), made printable: it goes to the terminal and into JSON */
    const redisReply *st = hfield(r[8], "state");
    fk_ctl_printable(st && st->type == REDIS_REPLY_STRING ? st->str : "closed",
                     sizeof(s->bstate) - 4, s->bstate, sizeof(s->bstate));
    s->open_until = fnum(hfield(r[8], "open_until"));
    s->opened_at = fnum(hfield(r[8], "opened_at"));
    s->consecutive = fnum(hfield(r[8], "consecutive"));
    s->opens = fnum(hfield(r[8], "opens"));
    s->refusals = fnum(hfield(r[8], "denied"));
    s->probes_used = fnum(hfield(r[8], "probes_used"));
    s->calls_ok = fnum(hfield(r[8], "calls_ok"));
    s->calls_failed = fnum(hfield(r[8], "calls_failed"));
    const redisReply *tok = hfield(r[9], "tokens");
    s->bucket = tok != NULL;
    s->tokens = tok && tok->type == REDIS_REPLY_STRING ? strtod(tok->str, NULL) : 0;
    if (!isfinite(s->tokens)) s->tokens = 0; /* "inf", "nan": no JSON number */
    s->rate_refusals = fnum(hfield(r[9], "denied"));
    for (int i = 0; i < HOUR_MINUTES; i++) {
        const redisReply *h = r[FIXED + i];
        long long f = 0;
        for (size_t e = 0; h->type == REDIS_REPLY_ARRAY && e < h->elements; e++)
            f = fk_metrics_add(f, fnum(h->element[e]));
        s->minute_final[i] = f;
        s->minute_completed[i] =
            h->type == REDIS_REPLY_ARRAY && h->elements > 0 ? fnum(h->element[0]) : 0;
    }
out:
    for (int i = 0; i < FIXED + HOUR_MINUTES; i++) freeReplyObject(r[i]);
    return rc;
}

/* Settlements: orders that reached completed, failed or expired (each one
 * counts: a rate of work done; an order settled again after a retry or a
 * late payment counts again). Not manual_review: a wait for a human is no
 * final state, and the order is counted when it is settled. */
static long long settled(const fk_metrics *m) {
    return fk_metrics_add(fk_metrics_add(m->completed, m->failed), m->expired);
}

/* Final orders per second over the last 60 s, from the minute hashes: this
 * minute so far plus the part of the previous one still inside 60 s. */
static double last_minute_rate(const snap *s) {
    double into = (double)(s->at % 60000) / 60000.0;
    return ((double)s->minute_final[HOUR_MINUTES - 1] +
            (double)s->minute_final[HOUR_MINUTES - 2] * (1.0 - into)) / 60.0;
}

static cJSON *snap_json(const fk_ctl *ctl, const snap *s, double rate_now) {
    cJSON *j = fk_metrics_json(&s->m);
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "prefix", ctl->keys.prefix);
    cJSON_AddNumberToObject(j, "at", (double)s->at);
    cJSON *q = cJSON_AddObjectToObject(j, "backlog");
    cJSON_AddNumberToObject(q, "stream_length", (double)s->stream_len);
    if (s->lag >= 0) cJSON_AddNumberToObject(q, "lag", (double)s->lag);
    else cJSON_AddNullToObject(q, "lag");
    cJSON_AddNumberToObject(q, "pending", (double)s->pending);
    cJSON_AddNumberToObject(q, "retry_queue", (double)s->retry);
    cJSON_AddNumberToObject(q, "review_queue", (double)s->review);
    cJSON_AddNumberToObject(q, "dead", (double)s->dead_len);
    cJSON_AddNumberToObject(q, "recheck", (double)s->recheck);
    cJSON_AddNumberToObject(q, "in_flight", (double)s->inflight);
    cJSON_AddNumberToObject(q, "consumers", (double)s->consumers);
    cJSON_AddNumberToObject(q, "workers_alive", (double)s->alive);
    cJSON *b = cJSON_AddObjectToObject(j, "breaker");
    cJSON_AddStringToObject(b, "state", s->bstate);
    cJSON_AddNumberToObject(b, "open_until", (double)s->open_until);
    cJSON_AddNumberToObject(b, "opened_at", (double)s->opened_at);
    cJSON_AddNumberToObject(b, "consecutive_failures", (double)s->consecutive);
    cJSON_AddNumberToObject(b, "opens", (double)s->opens);
    cJSON_AddNumberToObject(b, "refusals", (double)s->refusals);
    cJSON_AddNumberToObject(b, "calls_ok", (double)s->calls_ok);
    cJSON_AddNumberToObject(b, "calls_failed", (double)s->calls_failed);
    cJSON *rl = cJSON_AddObjectToObject(j, "rate_limit");
    cJSON_AddBoolToObject(rl, "active", s->bucket);
    cJSON_AddNumberToObject(rl, "tokens", s->tokens);
    cJSON_AddNumberToObject(rl, "refusals", (double)s->rate_refusals);
    cJSON *t = cJSON_AddObjectToObject(j, "throughput");
    if (rate_now >= 0) cJSON_AddNumberToObject(t, "final_per_s", rate_now);
    else cJSON_AddNullToObject(t, "final_per_s");
    cJSON_AddNumberToObject(t, "final_per_s_last_60s", last_minute_rate(s));
    cJSON *h = cJSON_AddArrayToObject(t, "final_per_minute_last_hour");
    for (int i = 0; i < HOUR_MINUTES; i++)
        cJSON_AddItemToArray(h, cJSON_CreateNumber((double)s->minute_final[i]));
    return j;
}

/* ---- rendering ---------------------------------------------------------- */

#define FRAME_LINES 48
#define LINE_MAX_BYTES 640

typedef struct frame {
    int n;
    char line[FRAME_LINES][LINE_MAX_BYTES];
} frame;

static void put(frame *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(frame *f, const char *fmt, ...) {
    if (f->n >= FRAME_LINES) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->line[f->n++], LINE_MAX_BYTES, fmt, ap);
    va_end(ap);
}

/* cells of a bar for n out of max, at most width cells, at least one for n > 0 */
static void bar(char *buf, size_t len, long long n, long long max, int width) {
    int cells = max > 0 ? (int)((double)n * width / (double)max + 0.5) : 0;
    if (n > 0 && cells == 0) cells = 1;
    size_t o = 0;
    for (int i = 0; i < cells && o + 4 < len; i++) {
        memcpy(buf + o, "\xe2\x96\x88", 3); /* U+2588 full block */
        o += 3;
    }
    buf[o] = '\0';
}

static void sparkline(char *buf, size_t len, const long long *v, int n) {
    static const char *const lv[] = {" ", "\xe2\x96\x81", "\xe2\x96\x82", "\xe2\x96\x83",
                                     "\xe2\x96\x84", "\xe2\x96\x85", "\xe2\x96\x86",
                                     "\xe2\x96\x87", "\xe2\x96\x88"};
    long long peak = 0;
    for (int i = 0; i < n; i++) peak = v[i] > peak ? v[i] : peak;
    size_t o = 0;
    for (int i = 0; i < n && o + 4 < len; i++) {
        int l = peak > 0 ? (int)((double)v[i] * 8 / (double)peak + 0.999) : 0;
        if (l > 8) l = 8;
        size_t sl = strlen(lv[l]);
        memcpy(buf + o, lv[l], sl);
        o += sl;
    }
    buf[o] = '\0';
}

static void fmt_ms(char *buf, size_t len, long long ms) {
    if (ms < 0) snprintf(buf, len, "-");
    else if (ms < 1000) snprintf(buf, len, "%lld ms", ms);
    else snprintf(buf, len, "%.2f s", ms / 1000.0);
}

/* The dashboard. rate_now < 0: no previous frame to compare with. */
static void render(const fk_ctl *ctl, const snap *s, double rate_now, double done_now,
                   const char *err, int color, int live, frame *f) {
    char t[40], a[160], b[96];
    const char *B = color ? "\033[1m" : "", *N = color ? "\033[0m" : "";
    f->n = 0;
    put(f, "%sfaka top%s  prefix %s  redis %s:%d  %s%s", B, N, ctl->keys.prefix,
        ctl->target.host, ctl->target.port, fk_ctl_time(s->at, t, sizeof(t)),
        live ? "  (q quits)" : "");
    if (err) {
        put(f, "%s", "");
        put(f, "%s!! %s%s", color ? "\033[31m" : "", err, N);
        put(f, "   (retrying every refresh)");
        return;
    }
    put(f, "%s", "");
    if (rate_now >= 0)
        snprintf(a, sizeof(a), "%.1f/s (completed %.1f/s)", rate_now, done_now);
    else
        snprintf(a, sizeof(a), "-");
    put(f, "%-12s final %s   last 60 s %.1f/s   submitted %lld", "THROUGHPUT", a,
        last_minute_rate(s), s->m.submitted);
    if (s->lag >= 0) snprintf(a, sizeof(a), "%lld", s->lag);
    else snprintf(a, sizeof(a), "?");
    put(f,
        "%-12s lag %s   pending %lld   retry queue %lld   review %lld   dead %lld   "
        "recheck %lld   stream %lld",
        "BACKLOG", a, s->pending, s->retry, s->review, s->dead_len, s->recheck, s->stream_len);
    put(f, "%-12s %lld entries on %lld consumers   workers alive %lld/%lld", "IN FLIGHT",
        s->inflight, s->consumers, s->alive, s->workers);
    const char *red = color ? "\033[1;31m" : "", *yel = color ? "\033[1;33m" : "",
               *grn = color ? "\033[32m" : "";
    if (strcmp(s->bstate, "open") == 0) {
        fmt_ms(b, sizeof(b), s->open_until - s->at > 0 ? s->open_until - s->at : 0);
        snprintf(a, sizeof(a), "%sOPEN%s, probes in %s", red, N, b);
    } else if (strcmp(s->bstate, "half_open") == 0) {
        snprintf(a, sizeof(a), "%sHALF-OPEN%s, %lld probe(s) out", yel, N, s->probes_used);
    } else {
        snprintf(a, sizeof(a), "%sclosed%s", grn, N);
    }
    if (s->bucket)
        snprintf(b, sizeof(b), "tokens %.1f, refused %lld", s->tokens, s->rate_refusals);
    else
        snprintf(b, sizeof(b), "off");
    put(f, "%-12s %s   consecutive failures %lld   opened %lld x   refused %lld   rate limit %s",
        "BREAKER", a, s->consecutive, s->opens, s->refusals, b);
    double rate = fk_metrics_success_rate(&s->m);
    if (rate >= 0) snprintf(a, sizeof(a), "%.2f %%", rate * 100);
    else snprintf(a, sizeof(a), "-");
    put(f, "%-12s success rate %s   completed %lld   failed %lld   expired %lld   review %lld",
        "OUTCOMES", a, s->m.completed, s->m.failed, s->m.expired, s->m.manual_review);
    fmt_ms(a, sizeof(a), fk_metrics_avg_retry_ms(&s->m));
    put(f, "%-12s scheduled %lld   deferred by guard %lld   avg retry duration %s (%lld orders)",
        "RETRIES", s->m.retries, s->m.deferred, a, s->m.retry_ms_count);
    put(f, "%s", "");
    long long peak = 0;
    for (int i = 0; i < HOUR_MINUTES; i++) peak = s->minute_final[i] > peak ? s->minute_final[i] : peak;
    char spark[HOUR_MINUTES * 3 + 4];
    sparkline(spark, sizeof(spark), s->minute_final, HOUR_MINUTES);
    put(f, "%sLAST HOUR%s  final orders per minute, now on the right (peak %lld/min)", B, N,
        peak);
    put(f, "  |%s|", spark);
    put(f, "%s", "");
    put(f, "%s%-41s%s%sRETRY-COUNT DISTRIBUTION%s", B, "FAILURES BY REASON", N, B, N);
    long long rmax = 0, amax = 0;
    for (int i = 0; i < s->m.nreasons; i++) rmax = s->m.reasons[i].n > rmax ? s->m.reasons[i].n : rmax;
    for (int i = 0; i < s->m.nattempts; i++) amax = s->m.attempts[i].n > amax ? s->m.attempts[i].n : amax;
    int rows = s->m.nreasons > s->m.nattempts ? s->m.nreasons : s->m.nattempts;
    if (rows > 12) rows = 12;
    if (rows == 0) put(f, "  %-37s  %s", "(none yet)", "(none yet)");
    for (int i = 0; i < rows; i++) {
        char left[200] = "", right[200] = "", bl[64], br[64], code[24];
        if (i < s->m.nreasons) {
            bar(bl, sizeof(bl), s->m.reasons[i].n, rmax, 10);
            /* %.19s cuts only the "...": printable cuts on a character */
            snprintf(left, sizeof(left), "%-19.19s %6lld %s",
                     fk_ctl_printable(s->m.reasons[i].code, 19, code, sizeof(code)),
                     s->m.reasons[i].n, bl);
        }
        if (i < s->m.nattempts) {
            bar(br, sizeof(br), s->m.attempts[i].n, amax, 20);
            snprintf(right, sizeof(right), "%3lld retr%-3s %8lld %s", s->m.attempts[i].retries,
                     s->m.attempts[i].retries == 1 ? "y" : "ies", s->m.attempts[i].n, br);
        }
        /* pad by visible width: the bar's cells are 3 bytes, 1 column */
        size_t cells = 0;
        for (const char *p = left; *p; p++) cells += ((unsigned char)*p & 0xc0) != 0x80;
        int pad = cells < 37 ? (int)(37 - cells) : 0;
        put(f, "  %s%*s  %s", left, pad, "", right);
    }
}

/* ---- stats -------------------------------------------------------------- */

int fk_ctl_stats(fk_ctl *ctl, int argc, char **argv) {
    const char *pos[1];
    int npos, rc;
    if ((rc = fk_ctl_parse(ctl, "stats", argc, argv, NULL, 0, pos, 0, 0, &npos))) return rc;
    snap *s = malloc(sizeof(*s));
    if (!s) return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
    if ((rc = take(ctl, s))) {
        free(s);
        return rc;
    }
    if (ctl->json) {
        rc = fk_ctl_print_json(ctl, snap_json(ctl, s, -1));
        free(s);
        return rc;
    }
    const fk_metrics *m = &s->m;
    double rate = fk_metrics_success_rate(m);
    char a[64];
    FILE *o = ctl->out;
    fprintf(o, "orders     submitted %lld  completed %lld  failed %lld  expired %lld  "
               "manual_review %lld  reopened %lld\n",
            m->submitted, m->completed, m->failed, m->expired, m->manual_review, m->reopened);
    if (rate >= 0)
        fprintf(o, "final success rate  %.2f %%  (completed %lld / final %lld; final = "
                   "completed + failed + expired - reopened)\n",
                rate * 100, m->completed, fk_metrics_final(m));
    else
        fprintf(o, "final success rate  -  (no order is final yet)\n");
    fmt_ms(a, sizeof(a), fk_metrics_avg_retry_ms(m));
    fprintf(o, "average retry duration  %s over %lld retried orders (first failure -> final "
               "state)\n",
            a, m->retry_ms_count);
    fprintf(o, "retries scheduled %lld, deferred by the gateway guard %lld, dead letters %lld\n",
            m->retries, m->deferred, m->dead);
    fprintf(o, "failures by reason%s\n", m->nreasons ? "" : ": none");
    for (int i = 0; i < m->nreasons; i++) {
        char code[sizeof(m->reasons[0].code) + 4];
        fprintf(o, "  %-22s %lld\n",
                fk_ctl_printable(m->reasons[i].code, sizeof(m->reasons[0].code), code,
                                 sizeof(code)),
                m->reasons[i].n);
    }
    fprintf(o, "retry-count distribution (final orders by retries needed)%s\n",
            m->nattempts ? "" : ": none");
    long long amax = 0;
    for (int i = 0; i < m->nattempts; i++) amax = m->attempts[i].n > amax ? m->attempts[i].n : amax;
    for (int i = 0; i < m->nattempts; i++) {
        char b[200];
        bar(b, sizeof(b), m->attempts[i].n, amax, 40);
        fprintf(o, "  %3lld  %8lld %s\n", m->attempts[i].retries, m->attempts[i].n, b);
    }
    if (s->lag >= 0) snprintf(a, sizeof(a), "%lld", s->lag);
    else snprintf(a, sizeof(a), "?");
    fprintf(o,
            "backlog    lag %s  pending %lld  retry queue %lld  review %lld  dead %lld  "
            "recheck %lld\n",
            a, s->pending, s->retry, s->review, s->dead_len, s->recheck);
    fprintf(o, "breaker    %s (opened %lld times)\n", s->bstate, s->opens);
    free(s);
    return 0;
}

/* ---- top ---------------------------------------------------------------- */

static volatile sig_atomic_t top_stop;

static void on_top_signal(int sig) {
    (void)sig;
    top_stop = 1;
}

static void write_all(const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void write_str(const char *s) { write_all(s, strlen(s)); }

static void draw(const frame *f) {
    static char buf[FRAME_LINES * (LINE_MAX_BYTES + 8) + 16];
    size_t o = 0;
    memcpy(buf, "\033[H", 3);
    o = 3;
    for (int i = 0; i < f->n; i++) {
        size_t l = strlen(f->line[i]);
        memcpy(buf + o, f->line[i], l);
        o += l;
        memcpy(buf + o, "\033[K\r\n", 5);
        o += 5;
    }
    memcpy(buf + o, "\033[J", 3);
    o += 3;
    write_all(buf, o);
}

int fk_ctl_top(fk_ctl *ctl, int argc, char **argv) {
    fk_ctl_opt o[] = {{"once", 0, 0, NULL}, {"interval-ms", 1, 0, NULL}};
    const char *pos[1];
    int npos, rc;
    long long interval = 1000;
    if ((rc = fk_ctl_parse(ctl, "top", argc, argv, o, 2, pos, 0, 0, &npos))) return rc;
    if (o[1].seen && (rc = fk_ctl_parse_ll(ctl, "--interval-ms", o[1].val, 100, 60000, &interval)))
        return rc;
    int once = o[0].seen;
    snap *cur = malloc(sizeof(*cur)), *prev = malloc(sizeof(*prev));
    frame *f = malloc(sizeof(*f));
    if (!cur || !prev || !f) {
        free(cur);
        free(prev);
        free(f);
        return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
    }
    if (once) {
        rc = take(ctl, cur);
        if (!rc) {
            if (ctl->json) {
                rc = fk_ctl_print_json(ctl, snap_json(ctl, cur, -1));
            } else {
                render(ctl, cur, -1, -1, NULL, 0, 0, f);
                for (int i = 0; i < f->n; i++) fprintf(ctl->out, "%s\n", f->line[i]);
            }
        }
        free(cur);
        free(prev);
        free(f);
        return rc;
    }
    /* live: a full-screen redraw on a terminal, else one frame per tick */
    int tty_out = isatty(STDOUT_FILENO) && !ctl->json;
    int tty_in = isatty(STDIN_FILENO);
    struct termios saved;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_top_signal; /* no SA_RESTART: poll returns EINTR */
    sigemptyset(&sa.sa_mask);
    top_stop = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    if (tty_in && tcgetattr(STDIN_FILENO, &saved) == 0) {
        struct termios raw = saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    } else {
        tty_in = 0;
    }
    if (tty_out) write_str("\033[?1049h\033[?25l\033[2J");
    int have_prev = 0;
    rc = 0;
    while (!top_stop) {
        int err = take(ctl, cur);
        double rate = -1, done = -1;
        if (!err && have_prev && cur->at > prev->at) {
            double dt = (double)(cur->at - prev->at) / 1000.0;
            rate = (double)(settled(&cur->m) - settled(&prev->m)) / dt;
            done = (double)(cur->m.completed - prev->m.completed) / dt;
            if (rate < 0) rate = 0; /* the stats were reset */
            if (done < 0) done = 0;
        }
        if (ctl->json) {
            if (!err) {
                fk_ctl_print_json(ctl, snap_json(ctl, cur, rate));
                fflush(ctl->out);
            } else {
                fprintf(stderr, "fakactl top: %s\n", ctl->err);
            }
        } else {
            if (err) cur->at = fk_now_ms();
            render(ctl, cur, rate, done, err ? ctl->err : NULL, tty_out, 1, f);
            if (tty_out) {
                draw(f);
            } else {
                for (int i = 0; i < f->n; i++) fprintf(ctl->out, "%s\n", f->line[i]);
                fprintf(ctl->out, "\n");
                fflush(ctl->out);
            }
        }
        if (!err) {
            snap *t = prev;
            prev = cur;
            cur = t;
            have_prev = 1;
        } else {
            have_prev = 0;
        }
        long long until = fk_now_ms() + interval;
        while (!top_stop) {
            long long left = until - fk_now_ms();
            if (left <= 0) break;
            struct pollfd p = {tty_in ? STDIN_FILENO : -1, POLLIN, 0};
            int n = poll(&p, 1, (int)left);
            if (n > 0 && (p.revents & POLLIN)) {
                char c[16];
                ssize_t got = read(STDIN_FILENO, c, sizeof(c));
                for (ssize_t i = 0; i < got; i++)
                    if (c[i] == 'q' || c[i] == 'Q' || c[i] == 3) top_stop = 1;
                if (got == 0) tty_in = 0;
            }
        }
    }
    if (tty_out) write_str("\033[?25h\033[?1049l");
    if (tty_in) tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    free(cur);
    free(prev);
    free(f);
    return rc;
}
