/* ctl.h -- fakactl, the operator's tool: its command table, its one
 * synchronous Redis connection, and the one place where its errors become
 * messages and exit codes.
 *
 * fakactl is a short-lived CLI, so it uses hiredis's synchronous API
 * (redisConnectWithTimeout + redisSetTimeout) instead of the worker's async
 * connection. Every command is a function `int cmd(fk_ctl *, argc, argv)`
 * returning 0 or an FK_E* code, with the reason recorded by fk_ctl_fail();
 * fk_ctl_main() prints it and maps the code to the exit status:
 *   0  ok
 *   1  not found, refused or failed (wrong state, out of stock, changed
 *      meanwhile, ...)
 *   2  bad usage (unknown command or option, missing or malformed argument,
 *      invalid order JSON, garbage stock codes)
 *   3  Redis unreachable (connect refused, timeout, connection lost)
 *   4  Redis answered with an error (AUTH, a script error, wrong type, ...)
 * The commands live in ctl_order.c (submit, order, retry, review),
 * ctl_queue.c (dead, stock, workers) and ctl_stats.c (stats, top). */
#ifndef FK_CTL_H
#define FK_CTL_H

#include <stdio.h>
#include <hiredis/hiredis.h>

#include "config.h"
#include "keys.h"
#include "scripts.h"
#include "url.h"

enum fk_ctl_exit {
    FK_CTL_EXIT_OK = 0,
    FK_CTL_EXIT_FAILED = 1,
    FK_CTL_EXIT_USAGE = 2,
    FK_CTL_EXIT_UNREACHABLE = 3,
    FK_CTL_EXIT_REDIS = 4,
};

typedef struct fk_ctl {
    fk_config cfg;
    fk_keys keys;
    fk_redis_target target;
    redisContext *c;  /* NULL until fk_ctl_connect */
    int json;         /* --json: machine-readable output on stdout */
    FILE *out;        /* stdout */
    char err[1024];   /* the reason of the last failure (fk_ctl_fail) */
} fk_ctl;

/* The whole program: parse the configuration (options before the command
 * word), run one command, print its error, return the exit status. */
int fk_ctl_main(int argc, char **argv);

/* Exit status for an FK_E* code (0 for 0); see the table above. */
int fk_ctl_exit_code(int err);

/* Record why a command failed (printf format) and return err. */
int fk_ctl_fail(fk_ctl *ctl, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Connect (and AUTH / SELECT as the URL says), unless connected already.
 * Returns 0, or FK_EDOWN (unreachable) / FK_EREDIS (refused AUTH, ...). */
int fk_ctl_connect(fk_ctl *ctl);
/* Drop the connection (the next fk_ctl_connect opens a new one). */
void fk_ctl_disconnect(fk_ctl *ctl);

/* Run one command and return its reply (free with freeReplyObject), or NULL
 * with *err set: FK_EDOWN when the connection failed or timed out (the
 * connection is dropped), FK_EREDIS for an error reply (its text is in
 * ctl->err). These three and fk_ctl_fcall are the only places fakactl
 * turns hiredis outcomes into FK_E* codes. */
redisReply *fk_ctl_cmd(fk_ctl *ctl, int *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
redisReply *fk_ctl_cmdv(fk_ctl *ctl, int *err, int argc, const char **argv,
                        const size_t *lens);
/* Replies of n commands queued with redisAppendCommand* on ctl->c, in
 * order, into replies[0..n). On failure every reply already read is freed
 * and *err is set as for fk_ctl_cmd; an error reply of one command is
 * returned as it is (REDIS_REPLY_ERROR), not as a failure. */
int fk_ctl_pipeline(fk_ctl *ctl, redisReply **replies, int n);
/* FCALL a faka script (loading the library when Redis does not have the
 * function), as fk_ctl_cmd. */
redisReply *fk_ctl_script(fk_ctl *ctl, int *err, int id, int nkeys, const fk_args *a);
/* The same for a ready FCALL vector of any length (argv[0] "FCALL",
 * argv[1] fk_script_sha(id), argv[2] the key count, then keys and
 * arguments): for calls with more arguments than an fk_args holds. */
redisReply *fk_ctl_fcall(fk_ctl *ctl, int *err, int id, int argc, const char **argv,
                         const size_t *lens);

/* ---- argument parsing for the commands --------------------------------- */

/* One command-line option of a command: name without "--", whether it
 * takes a value; after fk_ctl_parse: seen, and val. */
typedef struct fk_ctl_opt {
    const char *name;
    int takes_value;
    int seen;
    const char *val;
} fk_ctl_opt;

/* Parse argv[0..argc) of command `cmd`: options from opts (plus --json,
 * which sets ctl->json) as `--name value` or `--name=value`, anywhere, each
 * at most once; `--` ends the options; the rest are positionals, at least
 * minpos and at most maxpos, stored in pos[]. Returns 0 or FK_EUSAGE with a
 * reason. */
int fk_ctl_parse(fk_ctl *ctl, const char *cmd, int argc, char **argv, fk_ctl_opt *opts,
                 int nopts, const char **pos, int minpos, int maxpos, int *npos);

/* A strict decimal integer in [min, max] ("12", not " 12", "1e3" or "12x").
 * Returns 0, or FK_EUSAGE with "<what>: '<s>' is not an integer from min to
 * max" recorded. */
int fk_ctl_parse_ll(fk_ctl *ctl, const char *what, const char *s, long long min,
                    long long max, long long *out);

/* An order id as DESIGN.md defines it, or FK_EUSAGE with a reason. */
int fk_ctl_check_id(fk_ctl *ctl, const char *id);

/* s shown safely on one line of a terminal: C0 and C1 control characters,
 * DEL and every byte that is not well-formed UTF-8 as '?', cut at max bytes
 * (never inside a character) with "..." (buf must hold max + 4). The result
 * is well-formed UTF-8. Every string fakactl read from Redis goes through
 * this before its text output. Returns buf. */
const char *fk_ctl_printable(const char *s, size_t max, char *buf, size_t len);

/* A cJSON string holding s[0..len) made well-formed UTF-8 (fk_utf8_repair:
 * ill-formed bytes and NULs become U+FFFD). Every string fakactl read from
 * Redis goes into its JSON through this, as cJSON copies bytes verbatim.
 * s may be NULL (""). NULL on OOM. */
struct cJSON;
struct cJSON *fk_ctl_json_str(const char *s, size_t len);

/* Add item to object obj under name, name made well-formed UTF-8 the same
 * way (a hash field, a key or a reason code read from Redis). Takes item:
 * it is deleted on failure. Returns 0, or FK_ENOMEM (also for item NULL). */
int fk_ctl_json_add(struct cJSON *obj, const char *name, struct cJSON *item);

/* Print a cJSON value compactly on one line to ctl->out and delete it.
 * Returns 0 or FK_ENOMEM. */
int fk_ctl_print_json(fk_ctl *ctl, struct cJSON *v);

/* Milliseconds since the epoch as "2026-01-02T03:04:05.678Z" ("-" for
 * ms <= 0). Returns buf. */
const char *fk_ctl_time(long long ms, char *buf, size_t len);

/* ---- the commands ------------------------------------------------------- */

typedef int (*fk_ctl_cmd_fn)(fk_ctl *ctl, int argc, char **argv);

int fk_ctl_submit(fk_ctl *ctl, int argc, char **argv);
int fk_ctl_order(fk_ctl *ctl, int argc, char **argv);
int fk_ctl_retry(fk_ctl *ctl, int argc, char **argv);
int fk_ctl_review(fk_ctl *ctl, int argc, char **argv);
int fk_ctl_dead(fk_ctl *ctl, int argc, char **argv);
int fk_ctl_stock(fk_ctl *ctl, int argc, char **argv);
int fk_ctl_notify(fk_ctl *ctl, int argc, char **argv);
int fk_ctl_workers(fk_ctl *ctl, int argc, char **argv);
int fk_ctl_stats(fk_ctl *ctl, int argc, char **argv);
int fk_ctl_top(fk_ctl *ctl, int argc, char **argv);

#endif
