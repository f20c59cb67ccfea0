/* ctl.c -- fakactl's core (see ctl.h): the command table and usage, the
 * synchronous Redis connection, argument helpers, and the one translation
 * of errors into messages and exit codes. */
#include "ctl.h"
#include "err.h"
#include "log.h"
#include "order.h"
#include "utf8.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static const char synopsis[] =
    "usage: fakactl [options] COMMAND [ARGS] [--json]\n"
    "Operate a faka fleet: look at orders and queues, act on orders, read the metrics.\n"
    "\n"
    "Commands (every one takes --json: one JSON object on stdout):\n"
    "  submit [--order-id ID --sku SKU --qty N --amount N [--currency CNY]\n"
    "         [--buyer B] [--idempotency-key K]]\n"
    "                      validate an order and XADD it; without flags the order is\n"
    "                      read as JSON from stdin\n"
    "  order ID            print an order record (state, codes, audit trail, ...)\n"
    "  retry ID [--note T] [--operator NAME] [--force]\n"
    "                      failed -> processing: reserve stock again and queue it for\n"
    "                      a worker (refused when out of stock; an order an operator\n"
    "                      failed in review only with --force)\n"
    "  review list [--count N]\n"
    "                      orders waiting for a human, oldest first\n"
    "  review resolve ID --as completed|failed|processing [--note T]\n"
    "         [--operator NAME] [--no-notify]\n"
    "                      completed: deliver the held reservation (or fresh codes\n"
    "                      from stock) and queue the shop webhook; failed: release the\n"
    "                      reservation; processing: reserve if needed, re-queue\n"
    "  dead list [--count N]\n"
    "                      newest dead-lettered entries\n"
    "  dead requeue ID|--all [--force]\n"
    "                      put dead entries back on the stream (entries that would\n"
    "                      be dead-lettered again are skipped and named, and so are\n"
    "                      orders older than --retention-s unless --force)\n"
    "  stock add SKU       add card codes, one per line on stdin (one bad line\n"
    "                      refuses them all); a code this SKU was ever stocked\n"
    "                      with is skipped, so running it again adds only the rest;\n"
    "                      the first run for a SKU also learns the codes its order\n"
    "                      records hold reserved or sold\n"
    "  stock count [SKU]   codes in stock\n"
    "  notify requeue ID|--failed\n"
    "                      send the shop webhook of a completed order again after\n"
    "                      the workers gave it up (notify=notify_failed)\n"
    "  workers             heartbeats and consumer-group state of the fleet\n"
    "  stats               the four metrics (retry-count distribution, failures by\n"
    "                      reason, average retry duration, final success rate)\n"
    "  top [--once] [--interval-ms N]\n"
    "                      live dashboard, refreshed every second; q or Ctrl-C quits\n"
    "Operator actions are fenced compare-and-sets (a worker holding the order can\n"
    "apply nothing afterwards) and append {at, operator, from, to, note} to the\n"
    "order's `audit`; the operator is --operator, else $USER.\n"
    "\n"
    "Exit status: 0 ok; 1 not found, refused or failed; 2 bad usage or invalid\n"
    "input; 3 Redis unreachable; 4 Redis answered with an error.\n"
    "Options go before COMMAND.";

typedef struct ctl_command {
    const char *name;
    fk_ctl_cmd_fn fn;
} ctl_command;

static const ctl_command commands[] = {
    {"submit", fk_ctl_submit}, {"order", fk_ctl_order},   {"retry", fk_ctl_retry},
    {"review", fk_ctl_review}, {"dead", fk_ctl_dead},     {"stock", fk_ctl_stock},
    {"notify", fk_ctl_notify}, {"workers", fk_ctl_workers}, {"stats", fk_ctl_stats},
    {"top", fk_ctl_top},
};

/* ---- errors ------------------------------------------------------------- */

int fk_ctl_exit_code(int err) {
    switch (err) {
    case 0: return FK_CTL_EXIT_OK;
    case FK_EUSAGE:
    case FK_EINVAL:
    case FK_ERANGE: return FK_CTL_EXIT_USAGE;
    case FK_EDOWN:
    case FK_ETIMEOUT: return FK_CTL_EXIT_UNREACHABLE;
    case FK_EREDIS:
    case FK_EPROTO: return FK_CTL_EXIT_REDIS;
    default: return FK_CTL_EXIT_FAILED;
    }
}

int fk_ctl_fail(fk_ctl *ctl, int err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctl->err, sizeof(ctl->err), fmt, ap);
    va_end(ap);
    return err;
}

/* A C0 control, DEL, or a C1 control (U+0080..U+009F, C2 80..C2 9F): bytes
 * that a terminal may take as a command. */
static int is_control(const unsigned char *p, size_t k) {
    return (k == 1 && (p[0] < 0x20 || p[0] == 0x7f)) || (k == 2 && p[0] == 0xc2 && p[1] < 0xa0);
}

const char *fk_ctl_printable(const char *s, size_t max, char *buf, size_t len) {
    size_t n = 0, i = 0, slen;
    if (!s) s = "";
    slen = strlen(s);
    while (i < slen && i < max && n + 4 < len) {
        const unsigned char *p = (const unsigned char *)s + i;
        size_t k = fk_utf8_seq_len(s + i, slen - i);
        if (k == 0 || is_control(p, k)) {
            buf[n++] = '?';
            i += k ? k : 1;
            continue;
        }
        if (i + k > max || n + k + 4 > len) break; /* never half a character */
        memcpy(buf + n, p, k);
        n += k;
        i += k;
    }
    if (i < slen && n + 4 <= len) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

cJSON *fk_ctl_json_str(const char *s, size_t len) {
    if (!s) len = 0;
    size_t need = fk_utf8_repair(s, len, NULL, 0) + 1;
    char *buf = malloc(need);
    if (!buf) return NULL;
    fk_utf8_repair(s, len, buf, need);
    cJSON *v = cJSON_CreateString(buf);
    free(buf);
    return v;
}

int fk_ctl_json_add(cJSON *obj, const char *name, cJSON *item) {
    size_t nlen = strlen(name), need = fk_utf8_repair(name, nlen, NULL, 0) + 1;
    char *key = item ? malloc(need) : NULL;
    if (!key) {
        cJSON_Delete(item);
        return FK_ENOMEM;
    }
    fk_utf8_repair(name, nlen, key, need);
    int ok = cJSON_AddItemToObject(obj, key, item);
    free(key);
    if (!ok) {
        cJSON_Delete(item);
        return FK_ENOMEM;
    }
    return 0;
}

/* ---- the connection ----------------------------------------------------- */

/* A broken context is useless in hiredis's sync API: drop it, remember why.
 * hiredis 0.14 reports a reply timeout (SO_RCVTIMEO) as an I/O error with
 * strerror(EAGAIN). */
static int ctx_failed(fk_ctl *ctl) {
    const char *why = ctl->c && ctl->c->errstr[0] ? ctl->c->errstr : "connection lost";
    if (ctl->c && ctl->c->err == REDIS_ERR_IO &&
        (strstr(why, "temporarily unavailable") || strstr(why, "timed out")))
        snprintf(ctl->err, sizeof(ctl->err), "Redis at %s:%d did not answer within %lld ms",
                 ctl->target.host, ctl->target.port, ctl->cfg.redis_timeout_ms);
    else
        snprintf(ctl->err, sizeof(ctl->err), "lost Redis at %s:%d: %s", ctl->target.host,
                 ctl->target.port, why);
    fk_ctl_disconnect(ctl);
    return FK_EDOWN;
}

static int check_reply(fk_ctl *ctl, redisReply *r) {
    if (!r) return ctx_failed(ctl);
    if (r->type == REDIS_REPLY_ERROR) {
        char shown[300];
        fk_ctl_printable(r->str, 256, shown, sizeof(shown));
        snprintf(ctl->err, sizeof(ctl->err), "Redis error: %s", shown);
        return FK_EREDIS;
    }
    return 0;
}

redisReply *fk_ctl_cmdv(fk_ctl *ctl, int *err, int argc, const char **argv,
                        const size_t *lens) {
    *err = fk_ctl_connect(ctl);
    if (*err) return NULL;
    redisReply *r = redisCommandArgv(ctl->c, argc, argv, lens);
    *err = check_reply(ctl, r);
    if (*err && r) {
        freeReplyObject(r);
        r = NULL;
    }
    return r;
}

redisReply *fk_ctl_cmd(fk_ctl *ctl, int *err, const char *fmt, ...) {
    *err = fk_ctl_connect(ctl);
    if (*err) return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(ctl->c, fmt, ap);
    va_end(ap);
    *err = check_reply(ctl, r);
    if (*err && r) {
        freeReplyObject(r);
        r = NULL;
    }
    return r;
}

int fk_ctl_pipeline(fk_ctl *ctl, redisReply **replies, int n) {
    for (int i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(ctl->c, &r) != REDIS_OK || !r) {
            for (int k = 0; k < i; k++) freeReplyObject(replies[k]);
            return ctx_failed(ctl);
        }
        replies[i] = r;
    }
    return 0;
}

redisReply *fk_ctl_script(fk_ctl *ctl, int *err, int id, int nkeys, const fk_args *a) {
    const char *argv[FK_ARGS_MAX + 3];
    size_t lens[FK_ARGS_MAX + 3];
    char nk[16];
    int argc = fk_script_argv(id, nkeys, a, nk, argv, lens);
    return fk_ctl_fcall(ctl, err, id, argc, argv, lens);
}

redisReply *fk_ctl_fcall(fk_ctl *ctl, int *err, int id, int argc, const char **argv,
                         const size_t *lens) {
    redisReply *r = fk_ctl_cmdv(ctl, err, argc, argv, lens);
    if (*err == FK_EREDIS && fk_scripts_missing(ctl->err)) {
        /* fakactl may be the first faka client of this server (or someone
         * ran FUNCTION FLUSH): load the library, then call once more. */
        size_t tlen = 0;
        const char *text = fk_script_text(id, &tlen);
        const char *lv[] = {"FUNCTION", "LOAD", text};
        size_t ll[] = {8, 4, tlen};
        redisReply *l = fk_ctl_cmdv(ctl, err, 3, lv, ll);
        if (!l && !(*err == FK_EREDIS && fk_scripts_loaded_already(ctl->err))) return NULL;
        freeReplyObject(l);
        r = fk_ctl_cmdv(ctl, err, argc, argv, lens);
    }
    return r;
}

int fk_ctl_connect(fk_ctl *ctl) {
    if (ctl->c) return 0;
    long long ms = ctl->cfg.redis_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    ctl->c = redisConnectWithTimeout(ctl->target.host, ctl->target.port, tv);
    if (!ctl->c) return fk_ctl_fail(ctl, FK_EDOWN, "out of memory connecting to Redis");
    if (ctl->c->err) {
        snprintf(ctl->err, sizeof(ctl->err), "cannot reach Redis at %s:%d: %s",
                 ctl->target.host, ctl->target.port, ctl->c->errstr);
        fk_ctl_disconnect(ctl);
        return FK_EDOWN;
    }
    redisSetTimeout(ctl->c, tv);
    redisReply *r = NULL;
    if (ctl->target.password[0]) {
        if (ctl->target.user[0])
            r = redisCommand(ctl->c, "AUTH %s %s", ctl->target.user, ctl->target.password);
        else
            r = redisCommand(ctl->c, "AUTH %s", ctl->target.password);
        int rc = check_reply(ctl, r);
        if (r) freeReplyObject(r);
        if (rc) {
            fk_ctl_disconnect(ctl);
            return rc;
        }
    }
    if (ctl->target.db) {
        r = redisCommand(ctl->c, "SELECT %d", ctl->target.db);
        int rc = check_reply(ctl, r);
        if (r) freeReplyObject(r);
        if (rc) {
            fk_ctl_disconnect(ctl);
            return rc;
        }
    }
    return 0;
}

void fk_ctl_disconnect(fk_ctl *ctl) {
    if (ctl->c) redisFree(ctl->c);
    ctl->c = NULL;
}

/* ---- arguments ---------------------------------------------------------- */

int fk_ctl_parse(fk_ctl *ctl, const char *cmd, int argc, char **argv, fk_ctl_opt *opts,
                 int nopts, const char **pos, int minpos, int maxpos, int *npos) {
    char shown[80];
    int n = 0, only_pos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (!only_pos && strncmp(a, "--", 2) == 0 && a[2]) {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
            if (nlen == 4 && strncmp(name, "json", 4) == 0 && !eq) {
                ctl->json = 1;
                continue;
            }
            fk_ctl_opt *o = NULL;
            for (int k = 0; k < nopts; k++)
                if (strlen(opts[k].name) == nlen && strncmp(opts[k].name, name, nlen) == 0)
                    o = &opts[k];
            if (!o)
                return fk_ctl_fail(ctl, FK_EUSAGE, "%s: unknown option '%s' (see fakactl --help)",
                                   cmd, fk_ctl_printable(a, 64, shown, sizeof(shown)));
            /* `--as completed ... --as failed` is a slip, not a choice:
             * the last one winning would act on what was not meant */
            if (o->seen)
                return fk_ctl_fail(ctl, FK_EUSAGE, "%s: option --%s given twice", cmd, o->name);
            o->seen = 1;
            if (!o->takes_value) {
                if (eq)
                    return fk_ctl_fail(ctl, FK_EUSAGE, "%s: option --%s takes no value", cmd,
                                       o->name);
                continue;
            }
            if (eq) {
                o->val = eq + 1;
            } else {
                if (i + 1 >= argc)
                    return fk_ctl_fail(ctl, FK_EUSAGE, "%s: option --%s needs a value", cmd,
                                       o->name);
                o->val = argv[++i];
            }
            continue;
        }
        if (n >= maxpos)
            return fk_ctl_fail(ctl, FK_EUSAGE, "%s: unexpected argument '%s' (see fakactl --help)",
                               cmd, fk_ctl_printable(a, 64, shown, sizeof(shown)));
        pos[n++] = a;
    }
    if (n < minpos)
        return fk_ctl_fail(ctl, FK_EUSAGE, "%s: missing argument (see fakactl --help)", cmd);
    *npos = n;
    return 0;
}

int fk_ctl_parse_ll(fk_ctl *ctl, const char *what, const char *s, long long min,
                    long long max, long long *out) {
    char shown[80];
    char *end = NULL;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    int lead = s && (isdigit((unsigned char)s[0]) || s[0] == '-' || s[0] == '+');
    if (!lead || errno || end == s || *end || v < min || v > max)
        return fk_ctl_fail(ctl, FK_EUSAGE, "%s: '%s' is not an integer from %lld to %lld", what,
                           fk_ctl_printable(s, 40, shown, sizeof(shown)), min, max);
    *out = v;
    return 0;
}

int fk_ctl_check_id(fk_ctl *ctl, const char *id) {
    char shown[80];
    if (!fk_order_id_valid(id))
        return fk_ctl_fail(ctl, FK_EUSAGE,
                           "'%s' is not an order id (1-64 characters of A-Z a-z 0-9 _ . : -)",
                           fk_ctl_printable(id, 64, shown, sizeof(shown)));
    return 0;
}

int fk_ctl_print_json(fk_ctl *ctl, cJSON *v) {
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    cJSON_Delete(v);
    if (!s) return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory formatting JSON");
    fprintf(ctl->out, "%s\n", s);
    free(s);
    return 0;
}

const char *fk_ctl_time(long long ms, char *buf, size_t len) {
    if (ms <= 0) {
        snprintf(buf, len, "-");
        return buf;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm)) { /* a year past what struct tm holds */
        snprintf(buf, len, "%lld ms", ms);
        return buf;
    }
    char s[32];
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03lldZ", s, ms % 1000);
    return buf;
}

/* ---- main --------------------------------------------------------------- */

int fk_ctl_main(int argc, char **argv) {
    fk_ctl ctl;
    char err[512];
    int first = 0;
    memset(&ctl, 0, sizeof(ctl));
    ctl.out = stdout;
    signal(SIGPIPE, SIG_IGN);
    int rc = fk_config_load(&ctl.cfg, FK_BIN_CTL, synopsis, argc, argv, &first, err,
                            sizeof(err));
    if (rc == 1) return FK_CTL_EXIT_OK;
    if (rc) {
        fprintf(stderr, "fakactl: %s\n", err);
        return FK_CTL_EXIT_USAGE;
    }
    fk_log_init("ctl", ctl.cfg.worker_id, ctl.cfg.log_level);
    char unknown[512];
    int nu = fk_config_unknown_env(unknown, sizeof(unknown));
    if (nu)
        fprintf(stderr, "fakactl: warning: %d unknown FAKA_* environment variable%s ignored: %s\n",
                nu, nu == 1 ? "" : "s", unknown);
    if (first >= argc) {
        fprintf(stderr, "fakactl: no command given (see fakactl --help)\n");
        return FK_CTL_EXIT_USAGE;
    }
    for (int i = first; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fk_config_usage(stdout, FK_BIN_CTL, synopsis);
            return FK_CTL_EXIT_OK;
        }
    const ctl_command *cmd = NULL;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[first], commands[i].name) == 0) cmd = &commands[i];
    if (!cmd) {
        char shown[80];
        fprintf(stderr, "fakactl: unknown command '%s' (see fakactl --help)\n",
                fk_ctl_printable(argv[first], 64, shown, sizeof(shown)));
        return FK_CTL_EXIT_USAGE;
    }
    if (fk_redis_url_parse(ctl.cfg.redis_url, &ctl.target, err, sizeof(err))) {
        fprintf(stderr, "fakactl: --redis-url: %s\n", err);
        return FK_CTL_EXIT_USAGE;
    }
    fk_keys_init(&ctl.keys, ctl.cfg.prefix);
    if (fk_scripts_init() != 0) {
        fprintf(stderr, "fakactl: embedded Lua scripts are missing (a build error)\n");
        return FK_CTL_EXIT_FAILED;
    }
    rc = cmd->fn(&ctl, argc - first - 1, argv + first + 1);
    fflush(ctl.out);
    if (rc) {
        if (!ctl.err[0]) snprintf(ctl.err, sizeof(ctl.err), "%s", fk_strerror(rc));
        fprintf(stderr, "fakactl %s: %s\n", cmd->name, ctl.err);
    }
    fk_ctl_disconnect(&ctl);
    fk_scripts_free();
    return fk_ctl_exit_code(rc);
}
