/* scripts.h -- faka's Lua scripts: embedded at build time, loaded into
 * Redis as one Redis Functions library (FUNCTION LOAD), called with FCALL,
 * reloaded when Redis answers that the function does not exist.
 *
 * The library's top level is a prelude generated at start from state.h
 * (state names, the set of final states, reason codes), then lua/lib.lua;
 * then each script's own file becomes the body of one registered function,
 * unchanged (its parameters are named KEYS and ARGV). So state names exist
 * only in state.h, and Lua code says FK_ST.COMPLETED. Every script takes
 * every key it touches through KEYS.
 *
 * Why Functions and not EVALSHA: an EVALSHA script is the whole text, so
 * every call re-ran the prelude and lib.lua (a dozen closures and constant
 * tables, ~21k of ~130-230k Redis instructions per call, plus garbage for
 * the collector). A library's top level runs once, at FUNCTION LOAD; a call
 * runs only its function (callgrind: FCALL of promote.lua ~57k
 * instructions, its EVALSHA ~81k). The prelude's and lib.lua's tables are therefore
 * shared by every call: nothing may modify them (a script builds the tables
 * it changes itself).
 *
 * Names are global in Redis, so they come from the content: the library is
 * faka_<h>, its functions fk_<h>_<script>, h = the first 12 hex digits of
 * the SHA-1 of the library text. Two faka versions (a rolling upgrade) have
 * their own libraries side by side, and "already exists" on FUNCTION LOAD
 * means "this very code is loaded". */
#ifndef FK_SCRIPTS_H
#define FK_SCRIPTS_H

#include <stddef.h>

#include "redis.h"

/* X(symbol, name, flags): flags are Redis Functions flags, as Lua table
 * items. trim_stream only reads and deletes, so it may run when Redis is at
 * maxmemory (allow-oom), where it is what frees memory; every other script
 * writes and is refused then, before it starts. */
#define FK_SCRIPT_LIST(X)                                                    \
    X(FK_LUA_ACCEPT, "accept", "")                                           \
    X(FK_LUA_RESUME, "resume", "")                                           \
    X(FK_LUA_TRANSITION, "transition", "")                                   \
    X(FK_LUA_DUPLICATE, "duplicate", "")                                     \
    X(FK_LUA_DEAD, "dead", "")                                               \
    X(FK_LUA_PROMOTE, "promote", "")                                         \
    X(FK_LUA_RECLAIM, "reclaim", "")                                         \
    X(FK_LUA_PAYMENT, "payment", "")                                         \
    X(FK_LUA_NOTIFY_CLAIM, "notify_claim", "")                               \
    X(FK_LUA_NOTIFY_DONE, "notify_done", "")                                 \
    X(FK_LUA_GUARD_CHECK, "guard_check", "")                                 \
    X(FK_LUA_GUARD_REPORT, "guard_report", "")                               \
    X(FK_LUA_SETTLE_DUE, "settle_due", "")                                   \
    X(FK_LUA_SETTLE_TAKE, "settle_take", "")                                 \
    X(FK_LUA_SWEEP_CONSUMERS, "sweep_consumers", "")                         \
    X(FK_LUA_STOCK_ADD, "stock_add", "")                                     \
    X(FK_LUA_NOTIFY_REQUEUE, "notify_requeue", "")                           \
    X(FK_LUA_RECHECK_DUE, "recheck_due", "")                                 \
    X(FK_LUA_RECHECK_TAKE, "recheck_take", "")                               \
    X(FK_LUA_TRIM_STREAM, "trim_stream", "'allow-oom'")

enum fk_script_id {
#define FK_LUA_ENUM(sym, name, flags) sym,
    FK_SCRIPT_LIST(FK_LUA_ENUM)
#undef FK_LUA_ENUM
    FK_LUA__COUNT
};

/* Build the library text and every function name. Returns 0, FK_ENOMEM,
 * or FK_EINVAL if a script in the list has no embedded source (a build
 * error). */
int fk_scripts_init(void);
/* Free what fk_scripts_init allocated. */
void fk_scripts_free(void);

/* A script's name ("accept"). */
const char *fk_script_name(int id);
/* The text of the library that holds the script (shebang line, prelude,
 * lib.lua, every script as a registered function): the same text for every
 * id, the argument of FUNCTION LOAD. */
const char *fk_script_text(int id, size_t *len);
/* The name FCALL takes for the script: fk_<h>_<name> (see above). Once the
 * SHA-1 of the script text for EVALSHA, hence the name. */
const char *fk_script_sha(int id);
/* The library's name, faka_<h>: what FUNCTION LIST shows, what FUNCTION
 * DELETE takes. */
const char *fk_scripts_library(void);

/* FUNCTION LOAD the library on r (call on every FK_REDIS_UP, before the
 * first FCALL, so a restarted or flushed Redis never fails calls in bulk).
 * "Already exists" is success: the name is the content's hash. No REPLACE:
 * it would compile the library again on every connect of every worker and
 * write it to the AOF and the replicas each time, for the same code. Errors
 * are logged. Returns 0 or FK_EDOWN (or FK_ENOMEM). */
int fk_scripts_load(fk_redis *r);

/* 1 when err, the text of an error reply to FCALL, says the function is not
 * loaded (a new or flushed server, FUNCTION FLUSH / DELETE): load, call
 * again. */
int fk_scripts_missing(const char *err);
/* 1 when err, the text of an error reply to FUNCTION LOAD, says our library
 * is loaded already: the same as success. */
int fk_scripts_loaded_already(const char *err);

/* Argument vector for a call: keys first, then arguments. Numbers are
 * formatted into the vector's own storage; strings are referenced, so they
 * must live until fk_script_call returns (the command is formatted then). */
#define FK_ARGS_MAX 48
typedef struct fk_args {
    int n;
    const char *v[FK_ARGS_MAX];
    size_t len[FK_ARGS_MAX];
    char num[FK_ARGS_MAX][24];
} fk_args;

void fk_args_init(fk_args *a);
void fk_args_str(fk_args *a, const char *s);
void fk_args_mem(fk_args *a, const char *s, size_t len);
void fk_args_ll(fk_args *a, long long v);

/* The FCALL command for script id as an argument vector: "FCALL", the
 * function's name, nkeys (formatted into nk, size >= 16), then a's
 * strings. argv and lens need room for a->n + 3 entries; returns the count.
 * Shared by fk_script_call, fakactl's synchronous calls and the tests. */
int fk_script_argv(int id, int nkeys, const fk_args *a, char *nk, const char **argv,
                   size_t *lens);

/* FCALL script id with a->v[0..nkeys) as KEYS and the rest as ARGV. When
 * Redis answers that the function does not exist, the library is loaded and
 * the call re-sent once (replies on one connection come in order, so the
 * load lands first), so cb sees the real result. Same callback contract as
 * fk_redis_command(). */
int fk_script_call(fk_redis *r, int id, int nkeys, const fk_args *a, fk_redis_reply_cb cb,
                   void *arg);

#endif
