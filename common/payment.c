/* payment.c -- payment.lua's arguments in one place (see payment.h). */
#include "payment.h"
#include "clock.h"
#include "scripts.h"
#include "state.h"

int fk_payment_record(fk_redis *r, const fk_config *cfg, const fk_keys *keys,
                      const fk_pay_rec *p, fk_redis_reply_cb cb, void *arg) {
    char okey[FK_KEY_MAX], minute[160], mdecl[256], mlate[256], mnoresv[256];
    fk_key_order(keys, p->order_id, okey, sizeof(okey));
    fk_key_stats_minute(keys, fk_now_ms(), minute, sizeof(minute));
    fk_reason_message(FK_R_PAYMENT_DECLINED, NULL, mdecl, sizeof(mdecl));
    fk_reason_message(FK_R_LATE_PAYMENT, NULL, mlate, sizeof(mlate));
    fk_reason_message(FK_R_PAYMENT_UNKNOWN, NULL, mnoresv, sizeof(mnoresv));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, okey);
    fk_args_str(&a, keys->stream);
    fk_args_str(&a, p->stock_key);
    fk_args_str(&a, keys->stats);
    fk_args_str(&a, minute);
    fk_args_str(&a, keys->review);
    fk_args_str(&a, keys->notify);
    fk_args_str(&a, keys->retry);
    fk_args_str(&a, keys->active);
    int nkeys = 9;
    if (p->cool_key[0]) {
        fk_args_str(&a, p->cool_key);
        nkeys = 10;
    }
    fk_args_str(&a, keys->group);
    fk_args_str(&a, p->entry_id);
    fk_args_str(&a, p->order_id);
    fk_args_str(&a, p->status);
    fk_args_str(&a, p->payment_id);
    fk_args_ll(&a, cfg->payment_ttl_s);
    fk_args_ll(&a, cfg->retention_s);
    fk_args_str(&a, fk_state_message(FK_ST_COMPLETED));
    fk_args_str(&a, mdecl);
    fk_args_str(&a, mlate);
    fk_args_str(&a, p->notify ? "1" : "0");
    fk_args_str(&a, mnoresv);
    fk_args_ll(&a, cfg->buyer_cool_failures);
    fk_args_ll(&a, cfg->buyer_cool_window_s);
    fk_args_ll(&a, cfg->buyer_cool_s);
    return fk_script_call(r, FK_LUA_PAYMENT, nkeys, &a, cb, arg);
}
