/* transition.c -- transition.lua's argument vector, built in one place
 * (see transition.h). */
#include "transition.h"
#include "clock.h"
#include "err.h"
#include "scripts.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

int fk_transition_args(fk_tr_args *c, const fk_config *cfg, const fk_keys *keys,
                       const fk_tr_order *o, const fk_tr *t) {
    assert(fk_state_can(t->from, t->to));
    char *okey = c->okey, *skey = c->skey, *ckey = c->ckey, *minute = c->minute, *msg = c->msg,
         *ops = c->ops;
    fk_args *ap = &c->a;
    int ack = o->entry_id && o->entry_id[0];
    const char *op = t->ops ? t->ops : "";
    if (strlen(op) + 2 > sizeof(c->ops)) return FK_EINVAL;
    snprintf(ops, sizeof(c->ops), "%s%s", op, ack ? "A" : "");
    fk_key_order(keys, o->order_id, okey, sizeof(c->okey));
    fk_key_stock(keys, o->sku ? o->sku : "", skey, sizeof(c->skey));
    fk_key_stats_minute(keys, fk_now_ms(), minute, sizeof(c->minute));
    if (t->reason)
        fk_reason_message(t->reason, t->detail, msg, sizeof(c->msg));
    else
        snprintf(msg, sizeof(c->msg), "%s", fk_state_message(t->to));
    fk_args_init(ap);
    fk_args_str(ap, okey);
    fk_args_str(ap, keys->stream);
    fk_args_str(ap, skey);
    fk_args_str(ap, keys->retry);
    fk_args_str(ap, keys->review);
    fk_args_str(ap, keys->stats);
    fk_args_str(ap, minute);
    fk_args_str(ap, keys->notify);
    fk_args_str(ap, keys->active);
    /* a failure the buyer caused counts toward the buyer's cooldown */
    int nkeys = 9;
    if (t->to == FK_ST_FAILED && cfg->buyer_cool_failures > 0 && o->buyer && o->buyer[0]) {
        fk_key_cooldown(keys, o->buyer, ckey, sizeof(c->ckey));
        fk_args_str(ap, ckey);
        nkeys = 10;
    }
    fk_args_str(ap, keys->group);
    fk_args_str(ap, ack ? o->entry_id : "");
    fk_args_str(ap, o->fence ? o->fence : "");
    fk_args_str(ap, fk_state_name(t->from));
    fk_args_str(ap, fk_state_name(t->to));
    fk_args_str(ap, fk_reason_code(t->reason));
    fk_args_str(ap, msg);
    fk_args_str(ap, ops);
    fk_args_ll(ap, t->delay_ms);
    fk_args_str(ap, t->charge ? t->charge : "");
    fk_args_str(ap, t->payment_id ? t->payment_id : "");
    fk_args_ll(ap, cfg->retention_s);
    fk_args_str(ap, o->order_id);
    fk_args_ll(ap, cfg->lease_ms);
    fk_args_str(ap, t->extra_field ? t->extra_field : "");
    fk_args_str(ap, t->extra_field && t->extra_value ? t->extra_value : "");
    fk_args_ll(ap, cfg->order_ttl_s * 1000);
    fk_args_ll(ap, cfg->payment_ttl_s * 1000);
    /* 19-23 only where they count (an operator's action, a failure that
     * may count toward a cooldown): transition.lua reads them as absent
     * otherwise, and each argument costs Redis a Lua string */
    if (t->operator_name || t->to == FK_ST_FAILED) {
        fk_args_str(ap, t->operator_name ? t->operator_name : "");
        fk_args_str(ap, t->operator_name && t->note ? t->note : "");
        fk_args_ll(ap, cfg->buyer_cool_failures);
        fk_args_ll(ap, cfg->buyer_cool_window_s);
        fk_args_ll(ap, cfg->buyer_cool_s);
    }
    c->nkeys = nkeys;
    return 0;
}

int fk_transition(fk_redis *r, const fk_config *cfg, const fk_keys *keys, const fk_tr_order *o,
                  const fk_tr *t, fk_redis_reply_cb cb, void *arg) {
    fk_tr_args c;
    int rc = fk_transition_args(&c, cfg, keys, o, t);
    if (rc) return rc;
    return fk_script_call(r, FK_LUA_TRANSITION, c.nkeys, &c.a, cb, arg);
}

int fk_transition_result(const redisReply *reply, char *err, size_t errlen) {
    int rc = fk_redis_reply_err(reply, err, errlen);
    if (rc) return rc;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return FK_EPROTO;
    const char *st = reply->element[0]->str;
    if (strcmp(st, "ok") == 0) return FK_TR_OK;
    if (strcmp(st, "stale") == 0) return FK_TR_STALE;
    if (strcmp(st, "noresv") == 0) return FK_TR_NORESV;
    if (strcmp(st, "nostock") == 0) return FK_TR_NOSTOCK;
    return FK_EPROTO;
}
