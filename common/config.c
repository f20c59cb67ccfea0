/* config.c -- the option table and its parser (see config.h).
 *
 * One row per option: flag name, environment variable, type, bounds,
 * default, which binaries take it, and the help line. Cross-option rules
 * (e.g. the HTTP timeout must fit inside the lease) are checked once, after
 * every row is parsed, in check_relations(). */
#include "config.h"
#include "err.h"
#include "log.h"
#include "url.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum opt_type { OPT_STR, OPT_INT, OPT_LEVEL };
enum opt_check { CHK_NONE, CHK_REDIS_URL, CHK_GATEWAY_URL, CHK_WEBHOOK_URL, CHK_PREFIX, CHK_ID };

#define W FK_BIN_WORKER
#define R FK_BIN_REAPER
#define C FK_BIN_CTL
#define OFF(f) offsetof(fk_config, f)
#define SZ(f) sizeof(((fk_config *)0)->f)

typedef struct opt {
    const char *name;
    const char *env;
    enum opt_type type;
    size_t off, size;
    long long min, max;
    const char *def;
    int bins;
    enum opt_check check;
    const char *help;
} opt;

static const opt options[] = {
    {"redis-url", "FAKA_REDIS_URL", OPT_STR, OFF(redis_url), SZ(redis_url), 0, 0,
     "redis://127.0.0.1:6379", W | R | C, CHK_REDIS_URL,
     "Redis to use: redis://[user:password@]host:port[/db]"},
    {"prefix", "FAKA_PREFIX", OPT_STR, OFF(prefix), SZ(prefix), 0, 0, "faka", W | R | C,
     CHK_PREFIX, "key prefix (1-64 of [A-Za-z0-9_.:{}-])"},
    {"worker-id", "FAKA_WORKER_ID", OPT_STR, OFF(worker_id), SZ(worker_id), 0, 0, "", W | R,
     CHK_ID, "consumer name in the group (default: hostname-pid)"},
    {"gateway", "FAKA_GATEWAY_URL", OPT_STR, OFF(gateway_url), SZ(gateway_url), 0, 0, "none",
     W | R, CHK_GATEWAY_URL,
     "payment gateway base URL, or 'none' (orders are taken as paid)"},
    {"webhook-url", "FAKA_WEBHOOK_URL", OPT_STR, OFF(webhook_url), SZ(webhook_url), 0, 0, "",
     W | R, CHK_WEBHOOK_URL, "shop webhook notified after delivery ('' = none)"},
    {"webhook-secret", "FAKA_WEBHOOK_SECRET", OPT_STR, OFF(webhook_secret),
     SZ(webhook_secret), 0, 0, "", W | R, CHK_NONE,
     "HMAC-SHA256 key for X-Faka-Signature (required with --webhook-url)"},
    {"log-level", "FAKA_LOG_LEVEL", OPT_LEVEL, OFF(log_level), SZ(log_level), 0, 0, "info",
     W | R | C, CHK_NONE, "debug, info, warn or error"},
    {"concurrency", "FAKA_CONCURRENCY", OPT_INT, OFF(concurrency), 0, 1, 10000, "256", W,
     CHK_NONE, "entries in flight per worker"},
    {"batch", "FAKA_BATCH", OPT_INT, OFF(batch), 0, 1, 1000, "64", W, CHK_NONE,
     "entries per XREADGROUP"},
    {"block-ms", "FAKA_BLOCK_MS", OPT_INT, OFF(block_ms), 0, 10, 10000, "1000", W, CHK_NONE,
     "XREADGROUP BLOCK in ms (the read connection's watchdog allows this plus redis-timeout)"},
    {"lease-ms", "FAKA_LEASE_MS", OPT_INT, OFF(lease_ms), 0, 500, 3600000, "10000", W | R,
     CHK_NONE, "order lease; an entry idle this long on a dead worker is reclaimed"},
    {"promote-ms", "FAKA_PROMOTE_MS", OPT_INT, OFF(promote_ms), 0, 5, 10000, "20", W, CHK_NONE,
     "how often each worker moves due retries back onto the stream"},
    {"promote-batch", "FAKA_PROMOTE_BATCH", OPT_INT, OFF(promote_batch), 0, 1, 10000, "256",
     W, CHK_NONE, "retries moved per promoter call"},
    {"retry-base-ms", "FAKA_RETRY_BASE_MS", OPT_INT, OFF(retry_base_ms), 0, 1, 3600000,
     "1000", W | R, CHK_NONE, "backoff base: delay = random(0, min(cap, base*2^attempt))"},
    {"retry-cap-ms", "FAKA_RETRY_CAP_MS", OPT_INT, OFF(retry_cap_ms), 0, 1, 86400000, "60000",
     W | R, CHK_NONE, "backoff cap"},
    {"retry-max", "FAKA_RETRY_MAX", OPT_INT, OFF(retry_max), 0, 1, 1000, "8", W | R,
     CHK_NONE, "charge attempts before an order gives up"},
    {"poll-max", "FAKA_POLL_MAX", OPT_INT, OFF(poll_max), 0, 1, 100000, "60", W | R,
     CHK_NONE, "gateway status polls of a pending payment (then the payment TTL decides)"},
    {"idem-ttl-s", "FAKA_IDEM_TTL_S", OPT_INT, OFF(idem_ttl_s), 0, 1, 31536000, "86400",
     W | R | C, CHK_NONE, "how long an idempotency key dedupes submissions"},
    {"order-ttl-s", "FAKA_ORDER_TTL_S", OPT_INT, OFF(order_ttl_s), 0, 1, 31536000, "1800",
     W | R | C, CHK_NONE, "an order still processing after this is settled by the reaper"},
    {"payment-ttl-s", "FAKA_PAYMENT_TTL_S", OPT_INT, OFF(payment_ttl_s), 0, 1, 31536000,
     "900", W | R, CHK_NONE, "an order waiting for payment longer than this expires"},
    {"retention-s", "FAKA_RETENTION_S", OPT_INT, OFF(retention_s), 0, 0, 315360000, "604800",
     W | R | C, CHK_NONE, "finished order records expire after this (0 = keep forever)"},
    {"dead-max", "FAKA_DEAD_MAX", OPT_INT, OFF(dead_max), 0, 100, 100000000, "100000",
     W | R | C, CHK_NONE, "faka:dead keeps about this many newest entries"},
    {"max-deliveries", "FAKA_MAX_DELIVERIES", OPT_INT, OFF(max_deliveries), 0, 1, 1000, "10",
     W | R, CHK_NONE, "an entry delivered this many times without an ack is dead-lettered"},
    {"http-timeout-ms", "FAKA_HTTP_TIMEOUT_MS", OPT_INT, OFF(http_timeout_ms), 0, 100,
     600000, "5000", W | R, CHK_NONE, "total time for one gateway or webhook request"},
    {"http-connect-timeout-ms", "FAKA_HTTP_CONNECT_TIMEOUT_MS", OPT_INT,
     OFF(http_connect_timeout_ms), 0, 50, 600000, "2000", W | R, CHK_NONE,
     "TCP/TLS connect timeout"},
    {"http-max", "FAKA_HTTP_MAX", OPT_INT, OFF(http_max), 0, 1, 10000, "48", W | R, CHK_NONE,
     "concurrent HTTP requests per process"},
    {"webhook-max", "FAKA_WEBHOOK_MAX", OPT_INT, OFF(webhook_max), 0, 1, 1000, "20", W | R,
     CHK_NONE, "webhook attempts before the order is marked notify_failed"},
    {"webhook-retry-cap-ms", "FAKA_WEBHOOK_RETRY_CAP_MS", OPT_INT, OFF(webhook_retry_cap_ms), 0,
     1, 86400000, "3600000", W | R, CHK_NONE,
     "longest wait between webhook attempts: wait = c/2 + random(0, c/2), c = min(cap, "
     "retry-base*2^attempt); the defaults wait 4-8 h in all, for a shop's outage of hours"},
    {"redis-timeout-ms", "FAKA_REDIS_TIMEOUT_MS", OPT_INT, OFF(redis_timeout_ms), 0, 100,
     600000, "3000", W | R | C, CHK_NONE,
     "connect timeout and longest wait for a reply before reconnecting"},
    {"breaker-failures", "FAKA_BREAKER_FAILURES", OPT_INT, OFF(breaker_failures), 0, 0,
     100000, "10", W | R, CHK_NONE,
     "gateway circuit breaker opens after this many consecutive transient failures "
     "(fleet-wide; 0 = rule off)"},
    {"breaker-error-pct", "FAKA_BREAKER_ERROR_PCT", OPT_INT, OFF(breaker_error_pct), 0, 0, 100,
     "80", W | R, CHK_NONE,
     "... or when this percent of the calls in the window failed (0 = rule off)"},
    {"breaker-min-calls", "FAKA_BREAKER_MIN_CALLS", OPT_INT, OFF(breaker_min_calls), 0, 1,
     1000000, "20", W | R, CHK_NONE, "calls in the window before the percent rule applies"},
    {"breaker-window-s", "FAKA_BREAKER_WINDOW_S", OPT_INT, OFF(breaker_window_s), 0, 1, 60,
     "10", W | R, CHK_NONE, "sliding window of the percent rule, seconds"},
    {"breaker-cooldown-ms", "FAKA_BREAKER_COOLDOWN_MS", OPT_INT, OFF(breaker_cooldown_ms), 0,
     100, 3600000, "5000", W | R, CHK_NONE,
     "an open breaker refuses gateway calls this long, then lets probes through"},
    {"breaker-probes", "FAKA_BREAKER_PROBES", OPT_INT, OFF(breaker_probes), 0, 1, 3, "1",
     W | R, CHK_NONE, "probe calls let through while half-open"},
    {"rate-limit-rps", "FAKA_RATE_LIMIT_RPS", OPT_INT, OFF(rate_limit_rps), 0, 0, 1000000, "0",
     W | R, CHK_NONE, "gateway calls per second across the fleet, token bucket (0 = no limit)"},
    {"rate-limit-burst", "FAKA_RATE_LIMIT_BURST", OPT_INT, OFF(rate_limit_burst), 0, 0,
     1000000, "0", W | R, CHK_NONE, "token bucket capacity (0 = one second's worth)"},
    {"buyer-cooldown-failures", "FAKA_BUYER_COOLDOWN_FAILURES", OPT_INT,
     OFF(buyer_cool_failures), 0, 0, 1000, "0", W | R, CHK_NONE,
     "a buyer with this many declined / risk-rejected orders within the window is refused "
     "(rate_limited) for a while (0 = off)"},
    {"buyer-cooldown-window-s", "FAKA_BUYER_COOLDOWN_WINDOW_S", OPT_INT,
     OFF(buyer_cool_window_s), 0, 1, 86400, "600", W | R, CHK_NONE,
     "window in which a buyer's failures are counted"},
    {"buyer-cooldown-s", "FAKA_BUYER_COOLDOWN_S", OPT_INT, OFF(buyer_cool_s), 0, 1, 86400,
     "300", W | R, CHK_NONE, "how long such a buyer is refused"},
    {"reap-ms", "FAKA_REAP_MS", OPT_INT, OFF(reap_ms), 0, 50, 600000, "1000", R, CHK_NONE,
     "how often the reaper looks for orders past their TTL, dead consumers and entries "
     "to trim"},
    {"reap-batch", "FAKA_REAP_BATCH", OPT_INT, OFF(reap_batch), 0, 1, 10000, "100", R,
     CHK_NONE, "orders one reaper settles at once (gateway queries in flight)"},
    {"recheck-ms", "FAKA_RECHECK_MS", OPT_INT, OFF(recheck_ms), 0, 0, 86400000, "60000", R,
     CHK_NONE,
     "after expiring an order because the gateway had no charge for it, ask again this "
     "long, 10x and 60x as long after (a paused worker's charge may land late; 0 = never)"},
    {"worker-ttl-ms", "FAKA_WORKER_TTL_MS", OPT_INT, OFF(worker_ttl_ms), 0, 3000, 86400000,
     "30000", R | C, CHK_NONE,
     "a worker whose heartbeat is older than this is dead: its consumer is removed once it "
     "holds nothing"},
    {"stream-trim", "FAKA_STREAM_TRIM", OPT_INT, OFF(stream_trim), 0, 0, 1, "1", R, CHK_NONE,
     "1: the reaper trims acknowledged entries from the stream; 0: the stream is kept"},
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

/* s, at most max bytes of it, with control characters shown as '?', so that
 * an error quoting user input stays one line. */
static const char *printable(const char *s, size_t max, char *buf, size_t len) {
    size_t n = 0;
    for (; *s && n < max && n + 1 < len; s++, n++)
        buf[n] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
    buf[n] = '\0';
    return buf;
}

/* "<source> --<name>: <rule>" into err. */
static int setf(char *err, size_t errlen, const char *source, const char *name,
                const char *rule) {
    snprintf(err, errlen, "%s --%s: %s", source, name, rule);
    return FK_EINVAL;
}

static int check_prefix(const char *s, int allow_braces) {
    size_t n = strlen(s);
    if (n < 1 || n > 64) return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.' || c == ':' || c == '-' ||
                 (allow_braces && (c == '{' || c == '}'));
        if (!ok) return 0;
    }
    return 1;
}

/* Parse one value into its field; source names where it came from. */
static int set_value(fk_config *cfg, const opt *o, const char *val, const char *source,
                     char *err, size_t errlen) {
    char *field = (char *)cfg + o->off;
    char why[256];
    switch (o->type) {
    case OPT_STR:
        if (strlen(val) >= o->size) {
            snprintf(err, errlen, "%s --%s: value longer than %zu characters", source, o->name,
                     o->size - 1);
            return FK_EINVAL;
        }
        switch (o->check) {
        case CHK_REDIS_URL: {
            fk_redis_target t;
            if (fk_redis_url_parse(val, &t, why, sizeof(why)) != 0) {
                snprintf(err, errlen, "%s --%s: %s", source, o->name, why);
                return FK_EINVAL;
            }
            break;
        }
        case CHK_GATEWAY_URL:
            if (strcmp(val, "none") != 0 && fk_gateway_url_check(val, why, sizeof(why)) != 0) {
                snprintf(err, errlen, "%s --%s: %s (or 'none')", source, o->name, why);
                return FK_EINVAL;
            }
            break;
        case CHK_WEBHOOK_URL:
            if (val[0] && fk_http_url_check(val, why, sizeof(why)) != 0) {
                snprintf(err, errlen, "%s --%s: %s", source, o->name, why);
                return FK_EINVAL;
            }
            break;
        case CHK_PREFIX:
            if (!check_prefix(val, 1))
                return setf(err, errlen, source, o->name, "must be 1-64 of [A-Za-z0-9_.:{}-]");
            break;
        case CHK_ID:
            if (val[0] && !check_prefix(val, 0))
                return setf(err, errlen, source, o->name, "must be 1-64 of [A-Za-z0-9_.:-]");
            break;
        case CHK_NONE:
            break;
        }
        memcpy(field, val, strlen(val) + 1);
        return 0;
    case OPT_INT: {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        /* strtoll skips leading white space: " 5" is garbage, not 5 */
        int lead = isdigit((unsigned char)val[0]) || val[0] == '-' || val[0] == '+';
        if (!lead || errno || end == val || *end || v < o->min || v > o->max) {
            char shown[48];
            snprintf(err, errlen, "%s --%s: '%s' is not an integer from %lld to %lld",
                     source, o->name, printable(val, 40, shown, sizeof(shown)), o->min, o->max);
            return FK_EINVAL;
        }
        *(long long *)(void *)field = v;
        return 0;
    }
    case OPT_LEVEL:
        if (fk_log_parse_level(val, (int *)(void *)field) != 0)
            return setf(err, errlen, source, o->name, "must be debug, info, warn or error");
        return 0;
    }
    return FK_EINVAL;
}

static int check_relations(fk_config *cfg, int bins, char *err, size_t errlen) {
    if (cfg->retry_cap_ms < cfg->retry_base_ms) {
        snprintf(err, errlen, "--retry-cap-ms must be >= --retry-base-ms");
        return FK_EINVAL;
    }
    if (cfg->retention_s > 0 && cfg->retention_s < cfg->idem_ttl_s) {
        snprintf(err, errlen,
                 "--retention-s (%lld) must be 0 or at least --idem-ttl-s (%lld): an "
                 "idempotency key must never outlive its order",
                 cfg->retention_s, cfg->idem_ttl_s);
        return FK_EINVAL;
    }
    if ((bins & (FK_BIN_WORKER | FK_BIN_REAPER)) && strcmp(cfg->gateway_url, "none") != 0 &&
        cfg->http_timeout_ms * 2 > cfg->lease_ms) {
        snprintf(err, errlen,
                 "--http-timeout-ms (%lld) must be at most half of --lease-ms (%lld): a "
                 "request must end well inside the lease that fences it",
                 cfg->http_timeout_ms, cfg->lease_ms);
        return FK_EINVAL;
    }
    /* The reaper's second look asks about an order's idempotency key up to
     * 120 x --recheck-ms after its expiry (lua/recheck_take.lua); once the
     * key is free again a new order may take it, and a look would find that
     * order's charge and send the old one to review as a late payment. */
    if ((bins & FK_BIN_REAPER) && strcmp(cfg->gateway_url, "none") != 0 &&
        cfg->order_ttl_s * 1000 + cfg->recheck_ms * 120 > cfg->idem_ttl_s * 1000) {
        snprintf(err, errlen,
                 "--recheck-ms (%lld) too long: the reaper's last look at an expired order "
                 "(--order-ttl-s + 120 x --recheck-ms) must come within --idem-ttl-s (%lld s), "
                 "while the order's idempotency key is still its own",
                 cfg->recheck_ms, cfg->idem_ttl_s);
        return FK_EINVAL;
    }
    if (cfg->webhook_url[0] && !cfg->webhook_secret[0]) {
        snprintf(err, errlen, "--webhook-url needs --webhook-secret (FAKA_WEBHOOK_SECRET)");
        return FK_EINVAL;
    }
    if (cfg->rate_limit_burst == 0) cfg->rate_limit_burst = cfg->rate_limit_rps;
    /* A connect cannot outlast the whole request: cap it, don't refuse. */
    if (cfg->http_connect_timeout_ms > cfg->http_timeout_ms)
        cfg->http_connect_timeout_ms = cfg->http_timeout_ms;
    if (!cfg->worker_id[0]) {
        char host[64] = "host";
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        for (char *p = host; *p; p++) {
            char one[2] = {*p, '\0'};
            if (!check_prefix(one, 0)) *p = '-';
        }
        snprintf(cfg->worker_id, sizeof(cfg->worker_id), "%s-%ld", host, (long)getpid());
    }
    return 0;
}

int fk_config_unknown_env(char *buf, size_t len) {
    extern char **environ;
    size_t used = 0;
    int count = 0;
    buf[0] = '\0';
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "FAKA_", 5) != 0) continue;
        const char *eq = strchr(*e, '=');
        size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
        int known = 0;
        for (size_t i = 0; i < NOPTIONS && !known; i++)
            known = strlen(options[i].env) == n && strncmp(options[i].env, *e, n) == 0;
        if (known) continue;
        count++;
        char name[72], shown[72];
        snprintf(name, sizeof(name), "%.*s", (int)(n < 64 ? n : 64), *e);
        int w = snprintf(buf + used, len - used, "%s%s", count > 1 ? ", " : "",
                         printable(name, 64, shown, sizeof(shown)));
        if (w < 0 || (size_t)w >= len - used) {
            used = len - 1; /* cut: the count still says how many */
            continue;
        }
        used += (size_t)w;
    }
    return count;
}

void fk_config_usage(FILE *out, int bins, const char *synopsis) {
    fprintf(out, "%s\n\nOptions (flag, environment variable, default):\n", synopsis);
    for (size_t i = 0; i < NOPTIONS; i++) {
        const opt *o = &options[i];
        if (!(o->bins & bins)) continue;
        fprintf(out, "  --%-26s %-28s [%s]\n      %s\n", o->name, o->env,
                o->def[0] ? o->def : "", o->help);
    }
    fprintf(out, "  --%-26s %-28s\n      %s\n", "help", "", "print this help and exit");
}

int fk_config_load(fk_config *cfg, int bins, const char *synopsis, int argc, char **argv,
                   int *first_arg, char *err, size_t errlen) {
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NOPTIONS; i++) {
        const opt *o = &options[i];
        int rc = set_value(cfg, o, o->def, "default", err, errlen);
        if (rc) return rc;
        if (!(o->bins & bins)) continue;
        const char *env = getenv(o->env);
        if (env) {
            char src[64];
            snprintf(src, sizeof(src), "environment %s:", o->env);
            rc = set_value(cfg, o, env, src, err, errlen);
            if (rc) return rc;
        }
    }
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fk_config_usage(stdout, bins, synopsis);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) break;
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const opt *o = NULL;
        for (size_t k = 0; k < NOPTIONS; k++)
            if ((options[k].bins & bins) && strlen(options[k].name) == nlen &&
                strncmp(options[k].name, name, nlen) == 0)
                o = &options[k];
        if (!o) {
            char shown[72];
            snprintf(err, errlen, "unknown option '%s' (see --help)",
                     printable(a, nlen + 2 < 64 ? nlen + 2 : 64, shown, sizeof(shown)));
            return FK_EINVAL;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "option --%s needs a value", o->name);
                return FK_EINVAL;
            }
            val = argv[++i];
        }
        int rc = set_value(cfg, o, val, "flag", err, errlen);
        if (rc) return rc;
    }
    if (first_arg) *first_arg = i;
    else if (i < argc) {
        char shown[72];
        snprintf(err, errlen, "unexpected argument '%s' (see --help)",
                 printable(argv[i], 64, shown, sizeof(shown)));
        return FK_EINVAL;
    }
    return check_relations(cfg, bins, err, errlen);
}
