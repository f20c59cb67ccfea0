/* driver.c -- faka's side of the side-by-side benchmark (scripts/bench).
 *
 * One run, against a Redis the caller has just flushed:
 *   1. load stock: 4 SKUs, exactly what the orders need plus 10 spare each
 *      (the same stock, orders and SKUs as bench/peers/bullmq/run.js);
 *   2. start P worker processes (the command after `--`, plus
 *      `--worker-id bench-w<i>`) and wait until each one is a consumer;
 *   3. INFO snapshot; then, measured: submit N `order` entries with XADD,
 *      pipelined 1000 at a time on one synchronous hiredis connection, and
 *      poll HMGET <prefix>:stats every 10 ms until N orders are final;
 *   4. INFO snapshot; VmHWM of every worker (read before they stop);
 *      SIGTERM the workers and wait for them;
 *   5. used_memory before and after trimming the stream below what the
 *      group acknowledged (what the reaper does), MEMORY USAGE samples;
 *   6. read every order record back (not measured): outcome, latency
 *      (updated_at - the ms part of its entry id), codes delivered twice.
 * Prints one JSON line on stdout, with the same common fields as the
 * BullMQ peer. Exit: 0 ok, 1 usage, 2 Redis, 3 timed out, 4 a worker died. */
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 1000
#define MAXPROCS 64
static const char *const SKUS[] = {"sku-a", "sku-b", "sku-c", "sku-d"};

static const char *host = "127.0.0.1", *prefix = "faka", *mode = "none", *logdir = "/tmp";
static int port = 6379, procs = 1, timeout_s = 600;
static long orders = 0;
static pid_t pids[MAXPROCS];
static redisContext *rc;

static void die(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("faka-bench-driver: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    for (int i = 0; i < procs; i++)
        if (pids[i] > 0) kill(pids[i], SIGKILL);
    exit(code);
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static redisReply *cmd(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    if (!r) die(2, "redis: %s", rc->errstr);
    if (r->type == REDIS_REPLY_ERROR) die(2, "redis: %s", r->str);
    return r;
}

static redisReply *get_reply(void) {
    void *r = NULL;
    if (redisGetReply(rc, &r) != REDIS_OK || !r) die(2, "redis: %s", rc->errstr);
    if (((redisReply *)r)->type == REDIS_REPLY_ERROR) die(2, "redis: %s", ((redisReply *)r)->str);
    return r;
}

static const char *sku_of(long n) { return SKUS[n % 4]; }
static int qty_of(long n) { return n % 3 == 0 ? 2 : 1; }

/* ---- INFO ---------------------------------------------------------------- */

typedef struct snap {
    long long calls;
    double cpu;
    long long mem;     /* used_memory minus the clients' buffers (see take_snap) */
    long long clients; /* mem_clients_normal */
    int ncmd;
    char name[256][40];
    long long n[256];
} snap;

/* Value of `field:` in an INFO text, or NULL. */
static const char *info_field(const char *text, const char *field, char *buf, size_t len) {
    size_t fl = strlen(field);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, field, fl) == 0 && p[fl] == ':') {
            size_t k = strcspn(p + fl + 1, "\r\n");
            if (k >= len) k = len - 1;
            memcpy(buf, p + fl + 1, k);
            buf[k] = '\0';
            return buf;
        }
    }
    return NULL;
}

static void take_snap(snap *s) {
    char v[64];
    memset(s, 0, sizeof(*s));
    redisReply *r = cmd("INFO commandstats");
    for (const char *p = r->str; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, "cmdstat_", 8) != 0) continue;
        const char *colon = strchr(p, ':'), *calls = strstr(p, "calls=");
        if (!colon || !calls) continue;
        long long c = atoll(calls + 6);
        s->calls += c;
        if (s->ncmd < 256) {
            size_t k = (size_t)(colon - (p + 8));
            if (k > 39) k = 39;
            memcpy(s->name[s->ncmd], p + 8, k);
            s->name[s->ncmd][k] = '\0';
            s->n[s->ncmd++] = c;
        }
    }
    freeReplyObject(r);
    r = cmd("INFO cpu");
    s->cpu = (info_field(r->str, "used_cpu_sys", v, sizeof(v)) ? atof(v) : 0) +
             (info_field(r->str, "used_cpu_user", v, sizeof(v)) ? atof(v) : 0);
    freeReplyObject(r);
    /* The data's memory: used_memory without the connections' query and
     * reply buffers, which depend on what a client happened to send or read
     * last (the driver pipelines 1000 commands at a time) and are shrunk
     * lazily; they are not the orders' memory. */
    r = cmd("INFO memory");
    s->mem = info_field(r->str, "used_memory", v, sizeof(v)) ? atoll(v) : 0;
    s->clients = info_field(r->str, "mem_clients_normal", v, sizeof(v)) ? atoll(v) : 0;
    s->mem -= s->clients;
    freeReplyObject(r);
}

static long long snap_get(const snap *s, const char *name) {
    for (int i = 0; i < s->ncmd; i++)
        if (strcmp(s->name[i], name) == 0) return s->n[i];
    return 0;
}

/* used_memory without the clients' buffers; *clients gets those. */
static long long used_memory(long long *clients) {
    snap s;
    take_snap(&s);
    if (clients) *clients = s.clients;
    return s.mem;
}

/* ---- workers ------------------------------------------------------------- */

static void start_workers(char **argv, int argc) {
    for (int i = 0; i < procs; i++) {
        char id[32], logf[512];
        snprintf(id, sizeof(id), "bench-w%d", i + 1);
        snprintf(logf, sizeof(logf), "%s/faka-worker-%d.log", logdir, i + 1);
        pid_t p = fork();
        if (p < 0) die(4, "fork: %s", strerror(errno));
        if (p == 0) {
            char **av = calloc((size_t)argc + 3, sizeof(*av));
            if (!av) _exit(127);
            for (int k = 0; k < argc; k++) av[k] = argv[k];
            av[argc] = (char *)"--worker-id";
            av[argc + 1] = id;
            int fd = open(logf, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                close(fd);
            }
            execv(av[0], av);
            _exit(127);
        }
        pids[i] = p;
    }
}

static void check_workers(void) {
    for (int i = 0; i < procs; i++) {
        int st;
        if (pids[i] > 0 && waitpid(pids[i], &st, WNOHANG) == pids[i]) {
            pids[i] = 0;
            die(4, "worker %d exited during the run (status %d); see %s", i + 1, st, logdir);
        }
    }
}

/* Every worker has issued XREADGROUP: the group lists P consumers. */
static void wait_ready(void) {
    char stream[128];
    snprintf(stream, sizeof(stream), "%s:orders", prefix);
    for (int t = 0; t < 3000; t++) {
        check_workers();
        redisReply *r = redisCommand(rc, "XINFO CONSUMERS %s workers", stream);
        if (!r) die(2, "redis: %s", rc->errstr);
        int n = r->type == REDIS_REPLY_ARRAY ? (int)r->elements : 0;
        freeReplyObject(r);
        if (n >= procs) return;
        usleep(10000);
    }
    die(4, "workers not ready after 30 s");
}

static long vm_kb(pid_t p, const char *field) {
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)p);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long v = 0;
    size_t fl = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') v = atol(line + fl + 1);
    fclose(f);
    return v;
}

/* utime + stime of a process, seconds (field 14 and 15 of /proc/<pid>/stat). */
static double cpu_s(pid_t p) {
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)p);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *q = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!q) return 0;
    unsigned long long ut = 0, st = 0;
    if (sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void stop_workers(void) {
    for (int i = 0; i < procs; i++)
        if (pids[i] > 0) kill(pids[i], SIGTERM);
    long long until = now_ms() + 15000;
    for (int i = 0; i < procs; i++) {
        while (pids[i] > 0) {
            int st;
            if (waitpid(pids[i], &st, WNOHANG) == pids[i]) {
                pids[i] = 0;
            } else if (now_ms() > until) {
                kill(pids[i], SIGKILL);
                waitpid(pids[i], &st, 0);
                pids[i] = 0;
            } else {
                usleep(5000);
            }
        }
    }
}

/* ---- helpers ------------------------------------------------------------- */

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Nearest rank, as the BullMQ peer computes it. */
static long long pct(const long long *v, long n, double p) {
    if (n == 0) return -1;
    long i = (long)((p / 100.0) * (double)n + 0.999999999) - 1;
    if (i < 0) i = 0;
    if (i >= n) i = n - 1;
    return v[i];
}

/* "1700000000000-3" -> 1700000000000; and the id one past it. */
static long long id_ms(const char *id) { return atoll(id); }

static void usage(void) {
    fputs("usage: faka-bench-driver --port P --orders N [--host H] [--prefix faka]\n"
          "         [--mode none|gateway] [--procs P] [--timeout-s S] [--log-dir D]\n"
          "         -- /path/to/faka-worker [worker flags...]\n",
          stderr);
    exit(1);
}

int main(int argc, char **argv) {
    int wargc = 0;
    char **wargv = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            wargv = argv + i + 1;
            wargc = argc - i - 1;
            break;
        }
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (strcmp(a, "--port") == 0) port = atoi(v);
        else if (strcmp(a, "--host") == 0) host = v;
        else if (strcmp(a, "--orders") == 0) orders = atol(v);
        else if (strcmp(a, "--prefix") == 0) prefix = v;
        else if (strcmp(a, "--mode") == 0) mode = v;
        else if (strcmp(a, "--procs") == 0) procs = atoi(v);
        else if (strcmp(a, "--timeout-s") == 0) timeout_s = atoi(v);
        else if (strcmp(a, "--log-dir") == 0) logdir = v;
        else usage();
    }
    if (orders < 1 || procs < 1 || procs > MAXPROCS || wargc < 1 || port < 1) usage();
    signal(SIGPIPE, SIG_IGN);

    rc = redisConnect(host, port);
    if (!rc || rc->err) die(2, "cannot connect to %s:%d", host, port);
    char stream[128], stats[128], key[256];
    snprintf(stream, sizeof(stream), "%s:orders", prefix);
    snprintf(stats, sizeof(stats), "%s:stats", prefix);
    redisReply *r = cmd("INFO server");
    char redis_version[32] = "";
    info_field(r->str, "redis_version", redis_version, sizeof(redis_version));
    freeReplyObject(r);

    /* 1. stock: what the orders need, plus 10 spare per SKU */
    long need[4] = {0, 0, 0, 0};
    for (long n = 1; n <= orders; n++) need[n % 4] += qty_of(n);
    for (int s = 0; s < 4; s++) {
        long total = need[s] + 10, pending = 0;
        for (long j = 0; j < total; j++) {
            redisAppendCommand(rc, "RPUSH %s:stock:%s code-%s-%ld", prefix, SKUS[s], SKUS[s], j);
            if (++pending == CHUNK || j == total - 1) {
                for (; pending > 0; pending--) freeReplyObject(get_reply());
            }
        }
    }

    /* 2. workers */
    start_workers(wargv, wargc);
    wait_ready();

    /* 3. measured: submit and wait */
    snap before, after;
    take_snap(&before);
    long long *sub_ms = calloc((size_t)orders + 1, sizeof(long long));
    if (!sub_ms) die(2, "out of memory");
    char val[512];
    long long t0 = now_ms();
    for (long n = 1; n <= orders;) {
        long first = n, k = 0;
        for (; k < CHUNK && n <= orders; k++, n++) {
            int len = snprintf(val, sizeof(val),
                               "{\"order_id\":\"B%ld\",\"idempotency_key\":\"B%ld\",\"sku\":\"%s\","
                               "\"qty\":%d,\"amount\":3000,\"currency\":\"CNY\","
                               "\"buyer\":\"b%ld@example.com\"}",
                               n, n, sku_of(n), qty_of(n), n);
            redisAppendCommand(rc, "XADD %s * order %b", stream, val, (size_t)len);
        }
        for (long i = 0; i < k; i++) {
            r = get_reply();
            sub_ms[first + i] = r->type == REDIS_REPLY_STRING ? id_ms(r->str) : 0;
            freeReplyObject(r);
        }
    }
    long long t_submitted = now_ms();
    long long done = 0, polls = 0;
    int timed_out = 0;
    for (;;) {
        r = cmd("HMGET %s completed failed expired manual_review", stats);
        done = 0;
        for (size_t i = 0; i < r->elements; i++)
            if (r->element[i]->type == REDIS_REPLY_STRING) done += atoll(r->element[i]->str);
        freeReplyObject(r);
        polls++;
        if (done >= orders) break;
        check_workers();
        if (now_ms() - t0 > (long long)timeout_s * 1000) {
            timed_out = 1;
            break;
        }
        usleep(10000);
    }
    long long t_done = now_ms();
    take_snap(&after);

    /* 4. worker memory (peak), then stop them */
    long rss_sum = 0, rss_max = 0;
    double wcpu = 0;
    for (int i = 0; i < procs; i++) {
        wcpu += cpu_s(pids[i]);
        long v = vm_kb(pids[i], "VmHWM");
        rss_sum += v;
        if (v > rss_max) rss_max = v;
    }
    stop_workers();

    /* 5. memory: as left, then with the acknowledged part of the stream
     *    trimmed (MINID = one past the group's last delivered id, when
     *    nothing is pending: what the reaper trims) */
    long long mem_untrimmed = used_memory(NULL);
    long long trimmed = 0;
    r = cmd("XPENDING %s workers", stream);
    long long npending = r->element[0]->integer;
    char minid[64] = "";
    if (npending > 0 && r->element[1]->type == REDIS_REPLY_STRING)
        snprintf(minid, sizeof(minid), "%s", r->element[1]->str);
    freeReplyObject(r);
    if (!minid[0]) {
        r = cmd("XINFO STREAM %s", stream);
        for (size_t i = 0; i + 1 < r->elements; i += 2)
            if (strcmp(r->element[i]->str, "last-generated-id") == 0) {
                long long ms = 0, seq = 0;
                sscanf(r->element[i + 1]->str, "%lld-%lld", &ms, &seq);
                snprintf(minid, sizeof(minid), "%lld-%lld", ms, seq + 1);
            }
        freeReplyObject(r);
    }
    r = cmd("XTRIM %s MINID = %s", stream, minid);
    trimmed = r->integer;
    freeReplyObject(r);
    long long clients_after = 0;
    long long mem_trimmed = used_memory(&clients_after);
    long long mu_order = 0, mu_idem = 0, mu_stream = 0;
    snprintf(key, sizeof(key), "%s:order:B1", prefix);
    r = cmd("MEMORY USAGE %s SAMPLES 0", key);
    mu_order = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    snprintf(key, sizeof(key), "%s:idem:B1", prefix);
    r = cmd("MEMORY USAGE %s", key);
    mu_idem = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    r = cmd("MEMORY USAGE %s SAMPLES 0", stream);
    mu_stream = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    char enc[32] = "";
    snprintf(key, sizeof(key), "%s:order:B1", prefix);
    r = cmd("OBJECT ENCODING %s", key);
    if (r->type == REDIS_REPLY_STRING) snprintf(enc, sizeof(enc), "%s", r->str);
    freeReplyObject(r);
    long long nfields = 0;
    r = cmd("HLEN %s", key);
    nfields = r->integer;
    freeReplyObject(r);

    /* 6. read back every record */
    long long *lat = calloc((size_t)orders, sizeof(long long));
    long long *fin = calloc((size_t)orders, sizeof(long long)); /* final, ms after t0 */
    if (!lat || !fin) die(2, "out of memory");
    char **codes = NULL;
    size_t ncodes = 0, capcodes = 0;
    long completed = 0, failed = 0, other = 0, nlat = 0;
    long long last_final = 0;
    for (long n = 1; n <= orders;) {
        long first = n, k = 0;
        for (; k < CHUNK && n <= orders; k++, n++)
            redisAppendCommand(rc, "HMGET %s:order:B%ld state updated_at codes", prefix, n);
        for (long i = 0; i < k; i++) {
            r = get_reply();
            const char *st = r->element[0]->type == REDIS_REPLY_STRING ? r->element[0]->str : "";
            long long up = r->element[1]->type == REDIS_REPLY_STRING ? atoll(r->element[1]->str) : 0;
            if (strcmp(st, "completed") == 0) completed++;
            else if (strcmp(st, "failed") == 0) failed++;
            else other++;
            if ((strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0) && up) {
                fin[nlat] = up - t0;
                lat[nlat++] = up - sub_ms[first + i];
                if (up > last_final) last_final = up;
            }
            if (r->element[2]->type == REDIS_REPLY_STRING) {
                /* ["c1","c2"]: every quoted string is a code */
                const char *p = r->element[2]->str;
                while ((p = strchr(p, '"'))) {
                    const char *e = strchr(p + 1, '"');
                    if (!e) break;
                    if (ncodes == capcodes) {
                        capcodes = capcodes ? capcodes * 2 : 4096;
                        codes = realloc(codes, capcodes * sizeof(*codes));
                        if (!codes) die(2, "out of memory");
                    }
                    codes[ncodes++] = strndup(p + 1, (size_t)(e - p - 1));
                    p = e + 1;
                }
            }
            freeReplyObject(r);
        }
    }
    qsort(lat, (size_t)nlat, sizeof(*lat), cmp_ll);
    qsort(fin, (size_t)nlat, sizeof(*fin), cmp_ll);
    qsort(codes, ncodes, sizeof(*codes), cmp_str);
    long twice = 0;
    for (size_t i = 1; i < ncodes; i++)
        if (strcmp(codes[i], codes[i - 1]) == 0) twice++;
    long long retries = 0;
    r = cmd("HGET %s retries", stats);
    if (r->type == REDIS_REPLY_STRING) retries = atoll(r->str);
    freeReplyObject(r);

    long long end = (timed_out || !last_final) ? t_done : last_final;
    double seconds = (double)(end - t0) / 1000.0;
    printf("{\"system\":\"faka\",\"mode\":\"%s\",\"processes\":%d,\"orders\":%ld,"
           "\"completed\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"orders_per_s\":%.1f,"
           "\"latency_ms\":{\"p50\":%lld,\"p99\":%lld},\"worker_peak_rss_kb\":%ld,"
           "\"redis_cmds\":%lld,\"redis_cpu_s\":%.3f,\"redis_mem_per_job_bytes\":%lld,",
           mode, procs, orders, completed, failed, seconds, (double)orders / seconds,
           pct(lat, nlat, 50), pct(lat, nlat, 99), rss_sum, after.calls - before.calls,
           after.cpu - before.cpu, (mem_trimmed - before.mem) / orders);
    printf("\"worker_cpu_s\":%.3f,\"worker_peak_rss_kb_max_process\":%ld,\"not_final\":%ld,\"retries\":%lld,"
           "\"codes_delivered\":%zu,\"codes_delivered_twice\":%ld,\"latency_ms_max\":%lld,"
           "\"submit_ms\":%lld,\"end_detect_lag_ms\":%lld,\"count_polls\":%lld,"
           "\"redis_mem_per_job_untrimmed_bytes\":%lld,\"stream_entries_trimmed\":%lld,"
           "\"memory_usage_order_bytes\":%lld,\"memory_usage_idem_bytes\":%lld,"
           "\"memory_usage_stream_after_trim_bytes\":%lld,\"order_encoding\":\"%s\","
           "\"order_fields\":%lld,\"redis_mem_clients_delta_bytes\":%lld,\"final_at_ms\":{\"p50\":%lld,\"p90\":%lld,\"p99\":%lld},"
           "\"timed_out\":%s,\"redis_version\":\"%s\",\"redis_cmds_top\":{",
           wcpu, rss_max, other, retries, ncodes, twice, nlat ? lat[nlat - 1] : -1,
           t_submitted - t0, t_done - end, polls, (mem_untrimmed - before.mem) / orders, trimmed,
           mu_order, mu_idem, mu_stream, enc, nfields, clients_after - before.clients,
           pct(fin, nlat, 50), pct(fin, nlat, 90),
           pct(fin, nlat, 99), timed_out ? "true" : "false",
           redis_version);
    /* per-command deltas, largest first (top 16) */
    int used[256] = {0};
    for (int k = 0; k < 16; k++) {
        int best = -1;
        long long bd = 0;
        for (int i = 0; i < after.ncmd; i++) {
            long long d = after.n[i] - snap_get(&before, after.name[i]);
            if (!used[i] && d > bd) {
                bd = d;
                best = i;
            }
        }
        if (best < 0) break;
        used[best] = 1;
        printf("%s\"%s\":%lld", k ? "," : "", after.name[best], bd);
    }
    printf("}}\n");
    fflush(stdout);
    for (size_t i = 0; i < ncodes; i++) free(codes[i]);
    free(codes);
    free(lat);
    free(fin);
    free(sub_ms);
    redisFree(rc);
    return timed_out ? 3 : 0;
}
