/* scripts.h -- faka's Lua scripts: embedded at build time, called with
 * EVALSHA, reloaded on NOSCRIPT.
 *
 * Each script's text is: a prelude generated at start from state.h (state
 * names, the set of final states, reason codes), then lua/lib.lua, then the
 * script's own file. So state names exist only in state.h, and Lua code says
 * FK_ST.COMPLETED. Every script takes every key it touches through KEYS. */
#ifndef FK_SCRIPTS_H
#define FK_SCRIPTS_H

#include <stddef.h>

#include "redis.h"

#define FK_SCRIPT_LIST(X)                                                    \
    X(FK_LUA_ACCEPT, "accept")                                               \
    X(FK_LUA_RESUME, "resume")                                               \
    X(FK_LUA_TRANSITION, "transition")                                       \
    X(FK_LUA_DUPLICATE, "duplicate")                                         \
    X(FK_LUA_DEAD, "dead")                                                   \
    X(FK_LUA_PROMOTE, "promote")                                             \
    X(FK_LUA_RECLAIM, "reclaim")                                             \
    X(FK_LUA_PAYMENT, "payment")                                             \
    X(FK_LUA_NOTIFY_CLAIM, "notify_claim")                                   \
    X(FK_LUA_NOTIFY_DONE, "notify_done")                                     \
    X(FK_LUA_GUARD_CHECK, "guard_check")                                     \
    X(FK_LUA_GUARD_REPORT, "guard_report")                                   \
    X(FK_LUA_SETTLE_DUE, "settle_due")                                       \
    X(FK_LUA_SETTLE_TAKE, "settle_take")                                     \
    X(FK_LUA_SWEEP_CONSUMERS, "sweep_consumers")                             \
    X(FK_LUA_TRIM_STREAM, "trim_stream")

enum fk_script_id {
#define FK_LUA_ENUM(sym, name) sym,
    FK_SCRIPT_LIST(FK_LUA_ENUM)
#undef FK_LUA_ENUM
    FK_LUA__COUNT
};

/* Build every script's text and SHA1. Returns 0, FK_ENOMEM, or FK_EINVAL
 * if a script in the list has no embedded source (a build error). */
int fk_scripts_init(void);
/* Free what fk_scripts_init allocated. */
void fk_scripts_free(void);

/* Name, full text (prelude included) and SHA1 hex of a script. */
const char *fk_script_name(int id);
const char *fk_script_text(int id, size_t *len);
const char *fk_script_sha(int id);

/* SCRIPT LOAD every script on r (call on every FK_REDIS_UP, before the
 * first EVALSHA, so a restarted Redis never answers NOSCRIPT in bulk).
 * Errors are logged. Returns 0 or FK_EDOWN. */
int fk_scripts_load(fk_redis *r);

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

/* EVALSHA script id with a->v[0..nkeys) as KEYS and the rest as ARGV. On a
 * NOSCRIPT reply the script is loaded and the call re-sent once, so cb sees
 * the real result. Same callback contract as fk_redis_command(). */
int fk_script_call(fk_redis *r, int id, int nkeys, const fk_args *a, fk_redis_reply_cb cb,
                   void *arg);

#endif
