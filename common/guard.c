/* guard.c -- the gateway guard's calls (see guard.h); the decisions
 * themselves are made by lua/guard_check.lua and lua/guard_report.lua. */
#include "guard.h"
#include "err.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fk_guard_policy_init(fk_guard_policy *p, const fk_config *cfg) {
    p->failures = cfg->breaker_failures;
    p->error_pct = cfg->breaker_error_pct;
    p->min_calls = cfg->breaker_min_calls;
    p->window_s = cfg->breaker_window_s;
    p->cooldown_ms = cfg->breaker_cooldown_ms;
    p->probes = cfg->breaker_probes;
    p->rate_rps = cfg->rate_limit_rps;
    p->burst = cfg->rate_limit_burst > 0 ? cfg->rate_limit_burst : cfg->rate_limit_rps;
}

void fk_guard_check_args(fk_args *a, const fk_keys *k, const fk_guard_policy *p) {
    fk_args_init(a);
    fk_args_str(a, k->breaker);
    fk_args_str(a, k->ratelimit);
    fk_args_ll(a, p->cooldown_ms);
    fk_args_ll(a, p->probes);
    fk_args_ll(a, p->rate_rps);
    fk_args_ll(a, p->burst > 0 ? p->burst : 1);
}

void fk_guard_report_args(fk_args *a, const fk_keys *k, const fk_guard_policy *p,
                          long long nok, long long nbad, long long trail, int probe) {
    fk_args_init(a);
    fk_args_str(a, k->breaker);
    fk_args_ll(a, nok);
    fk_args_ll(a, nbad);
    fk_args_ll(a, trail);
    fk_args_str(a, probe ? "1" : "0");
    fk_args_ll(a, p->failures);
    fk_args_ll(a, p->error_pct);
    fk_args_ll(a, p->min_calls);
    fk_args_ll(a, p->window_s);
    fk_args_ll(a, p->cooldown_ms);
}

static const char *str_at(const redisReply *r, size_t i) {
    if (i >= r->elements || r->element[i]->type != REDIS_REPLY_STRING) return NULL;
    return r->element[i]->str;
}

int fk_guard_parse_verdict(const redisReply *reply, fk_guard_verdict *v) {
    memset(v, 0, sizeof(*v));
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 5) return FK_EPROTO;
    for (size_t i = 0; i < 3; i++)
        if (reply->element[i]->type != REDIS_REPLY_INTEGER) return FK_EPROTO;
    const char *why = str_at(reply, 3), *state = str_at(reply, 4);
    if (!why || !state) return FK_EPROTO;
    v->allow = reply->element[0]->integer != 0;
    v->wait_ms = reply->element[1]->integer;
    v->probe = reply->element[2]->integer != 0;
    snprintf(v->why, sizeof(v->why), "%s", why);
    snprintf(v->state, sizeof(v->state), "%s", state);
    return 0;
}

typedef struct check_call {
    fk_guard_cb cb;
    void *arg;
} check_call;

static void on_check(fk_redis *r, redisReply *reply, void *arg) {
    check_call *c = arg;
    char err[256];
    fk_guard_verdict v;
    (void)r;
    int rc = fk_redis_reply_err(reply, err, sizeof(err));
    if (rc == FK_EREDIS) fk_error("guard.check", NULL, "guard_check failed: %s", err);
    if (!rc) {
        rc = fk_guard_parse_verdict(reply, &v);
        if (rc) fk_error("guard.check", NULL, "guard_check: unexpected reply shape");
    }
    c->cb(c->arg, rc, rc ? NULL : &v);
    free(c);
}

int fk_guard_check(fk_redis *r, const fk_keys *k, const fk_guard_policy *p, fk_guard_cb cb,
                   void *arg) {
    check_call *c = malloc(sizeof(*c));
    if (!c) return FK_ENOMEM;
    c->cb = cb;
    c->arg = arg;
    fk_args a;
    fk_guard_check_args(&a, k, p);
    int rc = fk_script_call(r, FK_LUA_GUARD_CHECK, FK_GUARD_CHECK_NKEYS, &a, on_check, c);
    if (rc) free(c);
    return rc;
}

typedef struct report_call {
    fk_guard_report_cb cb;
    void *arg;
} report_call;

static void on_report(fk_redis *r, redisReply *reply, void *arg) {
    report_call *c = arg;
    char err[256];
    const char *state = NULL;
    (void)r;
    int rc = fk_redis_reply_err(reply, err, sizeof(err));
    if (rc == FK_EREDIS) fk_error("guard.report", NULL, "guard_report failed: %s", err);
    if (!rc && (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
                reply->element[0]->type != REDIS_REPLY_STRING ||
                reply->element[1]->type != REDIS_REPLY_STRING))
        rc = FK_EPROTO;
    if (!rc) {
        state = reply->element[0]->str;
        const char *change = reply->element[1]->str;
        char event[32];
        snprintf(event, sizeof(event), "breaker.%s", change);
        if (strcmp(change, "closed") == 0)
            fk_info(event, NULL, "gateway circuit breaker closed: a probe call succeeded");
        else if (change[0])
            fk_warn(event, NULL, "gateway circuit breaker %s: gateway calls paused fleet-wide",
                    change);
    }
    if (c) {
        c->cb(c->arg, rc, state);
        free(c);
    }
}

int fk_guard_report_n(fk_redis *r, const fk_keys *k, const fk_guard_policy *p, long long nok,
                      long long nbad, long long trail, int probe, fk_guard_report_cb cb,
                      void *arg) {
    report_call *c = NULL;
    if (cb) {
        c = malloc(sizeof(*c));
        if (!c) return FK_ENOMEM;
        c->cb = cb;
        c->arg = arg;
    }
    fk_args a;
    fk_guard_report_args(&a, k, p, nok, nbad, trail, probe);
    int rc = fk_script_call(r, FK_LUA_GUARD_REPORT, FK_GUARD_REPORT_NKEYS, &a, on_report, c);
    if (rc) free(c);
    return rc;
}

int fk_guard_report(fk_redis *r, const fk_keys *k, const fk_guard_policy *p, int failed,
                    int probe) {
    return fk_guard_report_n(r, k, p, !failed, !!failed, !!failed, probe, NULL, NULL);
}
