/* ctl_order.c -- fakactl's order commands: submit, order, retry, review.
 *
 * Operator actions (retry, review resolve) go through transition.lua like
 * the workers' transitions: a compare-and-set on the state and the fence
 * read just before, with op F bumping the fence so that a worker still
 * holding the order can apply nothing afterwards, and the operator, the
 * note and an audit line recorded in the same call. */
#include "ctl.h"
#include "err.h"
#include "order.h"
#include "state.h"
#include "transition.h"
#include "utf8.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- submit ------------------------------------------------------------- */

/* Read all of stdin, at most max bytes (more: FK_ERANGE). */
static int read_stdin(fk_ctl *ctl, char **out, size_t *len, size_t max) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory reading stdin");
    for (;;) {
        if (n == cap) {
            if (cap > max) {
                free(buf);
                return fk_ctl_fail(ctl, FK_ERANGE, "stdin holds more than %zu bytes", max);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory reading stdin");
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) break;
    }
    if (ferror(stdin)) {
        free(buf);
        return fk_ctl_fail(ctl, FK_EIO, "cannot read stdin");
    }
    if (n > max) {
        free(buf);
        return fk_ctl_fail(ctl, FK_ERANGE, "stdin holds more than %zu bytes", max);
    }
    *out = buf;
    *len = n;
    return 0;
}

/* The flags as an order JSON; numbers must be integers (the decoder then
 * applies every other rule). */
static int order_from_flags(fk_ctl *ctl, fk_ctl_opt *o, char **json) {
    static const char *const names[] = {"order_id", "sku", "qty", "amount", "currency", "buyer",
                                        "idempotency_key"};
    cJSON *obj = cJSON_CreateObject();
    if (!obj) return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
    for (int i = 0; i < 7; i++) {
        if (!o[i].seen) continue;
        cJSON *v;
        if (i == 2 || i == 3) {
            long long n;
            char what[16], num[32], shown[80];
            snprintf(what, sizeof(what), "--%s", o[i].name);
            if (fk_ctl_parse_ll(ctl, what, o[i].val, LLONG_MIN, LLONG_MAX, &n)) {
                cJSON_Delete(obj);
                return fk_ctl_fail(ctl, FK_EUSAGE, "--%s: '%s' is not an integer", o[i].name,
                                   fk_ctl_printable(o[i].val, 40, shown, sizeof(shown)));
            }
            snprintf(num, sizeof(num), "%lld", n);
            v = cJSON_CreateRaw(num);
        } else {
            v = cJSON_CreateString(o[i].val);
        }
        if (!v || !cJSON_AddItemToObject(obj, names[i], v)) {
            cJSON_Delete(v);
            cJSON_Delete(obj);
            return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
        }
    }
    *json = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!*json) return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
    return 0;
}

int fk_ctl_submit(fk_ctl *ctl, int argc, char **argv) {
    fk_ctl_opt o[] = {{"order-id", 1, 0, NULL}, {"sku", 1, 0, NULL},
                      {"qty", 1, 0, NULL},      {"amount", 1, 0, NULL},
                      {"currency", 1, 0, NULL}, {"buyer", 1, 0, NULL},
                      {"idempotency-key", 1, 0, NULL}};
    const char *pos[1];
    int npos, rc, any = 0;
    rc = fk_ctl_parse(ctl, "submit", argc, argv, o, 7, pos, 0, 0, &npos);
    if (rc) return rc;
    for (int i = 0; i < 7; i++) any |= o[i].seen;
    char *raw = NULL, *canon = NULL, err[256], shown[300];
    size_t len = 0;
    if (any) {
        rc = order_from_flags(ctl, o, &raw);
        if (rc) return rc;
        len = strlen(raw);
    } else {
        if (isatty(STDIN_FILENO))
            return fk_ctl_fail(ctl, FK_EUSAGE,
                               "give the order as flags (--order-id --sku --qty --amount ...) "
                               "or as JSON on stdin");
        rc = read_stdin(ctl, &raw, &len, FK_ENTRY_MAX);
        if (rc == FK_ERANGE)
            return fk_ctl_fail(ctl, FK_EINVAL, "invalid order: value exceeds %d bytes",
                               FK_ENTRY_MAX);
        if (rc) return rc;
    }
    fk_order ord;
    rc = fk_order_decode(raw, len, &ord, err, sizeof(err), NULL);
    free(raw);
    if (rc == FK_EINVAL)
        return fk_ctl_fail(ctl, FK_EINVAL, "invalid order: %s",
                           fk_ctl_printable(err, 256, shown, sizeof(shown)));
    if (rc) return fk_ctl_fail(ctl, rc, "cannot decode the order: %s", err);
    canon = fk_order_encode(&ord);
    if (!canon) return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
    const char *av[] = {"XADD", ctl->keys.stream, "*", "order", canon};
    size_t al[] = {4, strlen(ctl->keys.stream), 1, 5, strlen(canon)};
    redisReply *r = fk_ctl_cmdv(ctl, &rc, 5, av, al);
    free(canon);
    if (!r) return rc;
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return fk_ctl_fail(ctl, FK_EPROTO, "XADD did not return an entry id");
    }
    if (ctl->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "order_id", ord.order_id);
        cJSON_AddStringToObject(j, "entry_id", r->str);
        freeReplyObject(r);
        return fk_ctl_print_json(ctl, j);
    }
    fprintf(ctl->out, "submitted order %s as entry %s on %s\n", ord.order_id, r->str,
            ctl->keys.stream);
    freeReplyObject(r);
    return 0;
}

/* ---- order -------------------------------------------------------------- */

/* The fields shown first, in this order; the rest follow as stored. */
static const char *const shown_first[] = {
    "state", "reason", "message", "attempts", "sku", "qty", "amount", "currency",
    "buyer", "codes", "resv", "payment_id", "charge", "created_at", "updated_at",
    "first_fail_at", "duplicate_of", "notify", "operator", "note", NULL};

static int is_time_field(const char *f) {
    size_t n = strlen(f);
    return (n > 3 && strcmp(f + n - 3, "_at") == 0) || strcmp(f, "lease_until") == 0;
}

static int is_json_field(const char *f) {
    return strcmp(f, "codes") == 0 || strcmp(f, "resv") == 0 || strcmp(f, "audit") == 0;
}

/* A stored state as fakactl's text shows it: its name when faka knows it,
 * else "unknown(<the stored value, printable>)". fk_state_parse maps every
 * name it does not know (a hand-edited record, a state of another faka
 * version) to FK_ST_NONE, whose name is "": printing that would read as no
 * state at all. The raw value keeps what is really there visible, and the
 * parentheses keep it from passing for a real state name. Returns buf. */
static const char *state_shown(const char *raw, char *buf, size_t len) {
    fk_state st = fk_state_parse(raw);
    char shown[72];
    if (st != FK_ST_NONE) snprintf(buf, len, "%s", fk_state_name(st));
    else snprintf(buf, len, "unknown(%s)", fk_ctl_printable(raw, 64, shown, sizeof(shown)));
    return buf;
}

static void print_field(fk_ctl *ctl, const char *f, const char *v) {
    char t[40], shown[700], name[80];
    fk_ctl_printable(v, 600, shown, sizeof(shown));
    fk_ctl_printable(f, 64, name, sizeof(name));
    if (strcmp(f, "state") == 0) {
        fk_state st = fk_state_parse(v);
        if (st != FK_ST_NONE)
            fprintf(ctl->out, "  %-16s %s (%s)\n", name, shown, fk_state_label_zh(st));
        else
            fprintf(ctl->out, "  %-16s %s\n", name, state_shown(v, shown, sizeof(shown)));
    } else if (is_time_field(f)) {
        fprintf(ctl->out, "  %-16s %s (%s)\n", name, shown, fk_ctl_time(atoll(v), t, sizeof(t)));
    } else {
        fprintf(ctl->out, "  %-16s %s\n", name, shown);
    }
}

static void print_audit(fk_ctl *ctl, const char *audit) {
    cJSON *a = cJSON_Parse(audit);
    char t[40], shown[700], sop[80], sfrom[40], sto[40];
    if (!cJSON_IsArray(a)) {
        print_field(ctl, "audit", audit);
        cJSON_Delete(a);
        return;
    }
    fprintf(ctl->out, "  audit\n");
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(e, "at");
        const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "operator"));
        const char *from = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "from"));
        const char *to = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "to"));
        const char *note = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "note"));
        /* a double outside long long does not convert (undefined): no time */
        double ms = cJSON_IsNumber(at) ? at->valuedouble : 0;
        fprintf(ctl->out, "    %s  %s: %s -> %s  %s\n",
                fk_ctl_time(ms > 0 && ms < 9e18 ? (long long)ms : 0, t, sizeof(t)),
                fk_ctl_printable(op ? op : "?", 64, sop, sizeof(sop)),
                fk_ctl_printable(from ? from : "?", 32, sfrom, sizeof(sfrom)),
                fk_ctl_printable(to ? to : "?", 32, sto, sizeof(sto)),
                fk_ctl_printable(note ? note : "", 400, shown, sizeof(shown)));
    }
    cJSON_Delete(a);
}

int fk_ctl_order(fk_ctl *ctl, int argc, char **argv) {
    const char *pos[1];
    int npos, rc;
    rc = fk_ctl_parse(ctl, "order", argc, argv, NULL, 0, pos, 1, 1, &npos);
    if (rc) return rc;
    if ((rc = fk_ctl_check_id(ctl, pos[0]))) return rc;
    if ((rc = fk_ctl_connect(ctl))) return rc;
    char okey[FK_KEY_MAX];
    fk_key_order(&ctl->keys, pos[0], okey, sizeof(okey));
    redisAppendCommand(ctl->c, "HGETALL %s", okey);
    redisAppendCommand(ctl->c, "ZSCORE %s %s", ctl->keys.retry, pos[0]);
    redisAppendCommand(ctl->c, "ZSCORE %s %s", ctl->keys.review, pos[0]);
    redisAppendCommand(ctl->c, "TTL %s", okey);
    redisReply *r[4];
    if ((rc = fk_ctl_pipeline(ctl, r, 4))) return rc;
    for (int i = 0; i < 4; i++)
        if (r[i]->type == REDIS_REPLY_ERROR) {
            rc = fk_ctl_fail(ctl, FK_EREDIS, "Redis error: %s", r[i]->str);
            goto out;
        }
    const redisReply *h = r[0];
    if (h->type != REDIS_REPLY_ARRAY || h->elements == 0) {
        rc = fk_ctl_fail(ctl, FK_ENOTFOUND, "no order %s (key %s)", pos[0], okey);
        goto out;
    }
    long long retry_due = r[1]->type == REDIS_REPLY_STRING ? atoll(r[1]->str) : -1;
    long long review_since = r[2]->type == REDIS_REPLY_STRING ? atoll(r[2]->str) : -1;
    long long ttl = r[3]->type == REDIS_REPLY_INTEGER ? r[3]->integer : -1;
    if (ctl->json) {
        cJSON *j = cJSON_CreateObject(), *rec = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "order_id", pos[0]);
        cJSON_AddItemToObject(j, "record", rec);
        /* anything may be in the hash: field names and values go in as
         * well-formed UTF-8, and a JSON field is embedded only when its text
         * is (cJSON_Parse copies the bytes of its strings as they are) */
        for (size_t i = 0; i + 1 < h->elements; i += 2) {
            const char *f = h->element[i]->str, *v = h->element[i + 1]->str;
            size_t vlen = h->element[i + 1]->len;
            cJSON *parsed = is_json_field(f) && fk_utf8_valid(v, vlen) && strlen(v) == vlen
                                ? cJSON_Parse(v)
                                : NULL;
            fk_ctl_json_add(rec, f, parsed ? parsed : fk_ctl_json_str(v, vlen));
        }
        if (retry_due >= 0) cJSON_AddNumberToObject(j, "retry_due", (double)retry_due);
        else cJSON_AddNullToObject(j, "retry_due");
        if (review_since >= 0) cJSON_AddNumberToObject(j, "review_since", (double)review_since);
        else cJSON_AddNullToObject(j, "review_since");
        cJSON_AddNumberToObject(j, "ttl_s", (double)ttl);
        rc = fk_ctl_print_json(ctl, j);
        goto out;
    }
    fprintf(ctl->out, "order %s\n", pos[0]);
    for (int k = 0; shown_first[k]; k++)
        for (size_t i = 0; i + 1 < h->elements; i += 2)
            if (strcmp(h->element[i]->str, shown_first[k]) == 0)
                print_field(ctl, shown_first[k], h->element[i + 1]->str);
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const char *f = h->element[i]->str;
        int first = 0;
        for (int k = 0; shown_first[k]; k++) first |= strcmp(f, shown_first[k]) == 0;
        if (!first && strcmp(f, "audit") != 0) print_field(ctl, f, h->element[i + 1]->str);
    }
    char t[40];
    if (retry_due >= 0)
        fprintf(ctl->out, "  %-16s %s\n", "retry due", fk_ctl_time(retry_due, t, sizeof(t)));
    if (review_since >= 0)
        fprintf(ctl->out, "  %-16s %s\n", "in review since",
                fk_ctl_time(review_since, t, sizeof(t)));
    if (ttl >= 0) fprintf(ctl->out, "  %-16s %lld s\n", "expires in", ttl);
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (strcmp(h->element[i]->str, "audit") == 0) print_audit(ctl, h->element[i + 1]->str);
    rc = 0;
out:
    for (int i = 0; i < 4; i++) freeReplyObject(r[i]);
    return rc;
}

/* ---- operator transitions ----------------------------------------------- */

/* Who acts: --operator, else $USER; one printable line of at most 64 bytes. */
static int operator_name(fk_ctl *ctl, const fk_ctl_opt *o, const char **out) {
    const char *name = o->seen ? o->val : getenv("USER");
    if (!o->seen && (!name || !name[0])) name = "unknown";
    size_t n = strlen(name);
    int ok = n >= 1 && n <= 64 && fk_utf8_valid(name, n);
    for (const char *p = name; ok && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) ok = 0;
    if (!ok)
        return fk_ctl_fail(ctl, FK_EUSAGE,
                           "--operator must be 1-64 bytes of UTF-8 without control characters");
    *out = name;
    return 0;
}

static int check_note(fk_ctl *ctl, const char *note) {
    size_t n = strlen(note);
    int ok = n <= 1000 && fk_utf8_valid(note, n);
    for (const char *p = note; ok && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) ok = 0;
    if (!ok)
        return fk_ctl_fail(ctl, FK_EUSAGE,
                           "--note must be at most 1000 bytes of UTF-8 without control "
                           "characters");
    return 0;
}

/* What an operator transition needs from the record. */
typedef struct rec {
    fk_state state;
    char shown[80];  /* state_shown of the stored state, for messages */
    char fence[24], sku[FK_SKU_MAX_CHARS * 4 + 1], reason[64], charge[24];
    long long qty;
    int has_resv;
} rec;

static int read_rec(fk_ctl *ctl, const char *id, rec *out) {
    char okey[FK_KEY_MAX];
    int rc;
    fk_key_order(&ctl->keys, id, okey, sizeof(okey));
    redisReply *r = fk_ctl_cmd(ctl, &rc, "HMGET %s state fence sku qty reason resv charge", okey);
    if (!r) return rc;
    memset(out, 0, sizeof(*out));
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 7) {
        freeReplyObject(r);
        return fk_ctl_fail(ctl, FK_EPROTO, "unexpected HMGET reply");
    }
    const char *v[7];
    for (int i = 0; i < 7; i++)
        v[i] = r->element[i]->type == REDIS_REPLY_STRING ? r->element[i]->str : NULL;
    if (!v[0]) {
        freeReplyObject(r);
        return fk_ctl_fail(ctl, FK_ENOTFOUND, "no order %s (key %s)", id, okey);
    }
    /* the sku names the stock list S takes from and L gives back to: one
     * that does not fit (or holds a NUL) would name another SKU's list */
    if (v[2] && (r->element[2]->len >= sizeof(out->sku) || strlen(v[2]) != r->element[2]->len)) {
        freeReplyObject(r);
        return fk_ctl_fail(ctl, FK_EBUSY,
                           "order %s: its sku is not one faka accepts (edited by hand?); "
                           "nothing was done",
                           id);
    }
    out->state = fk_state_parse(v[0]);
    state_shown(v[0], out->shown, sizeof(out->shown));
    snprintf(out->fence, sizeof(out->fence), "%s", v[1] ? v[1] : "");
    snprintf(out->sku, sizeof(out->sku), "%s", v[2] ? v[2] : "");
    out->qty = v[3] ? atoll(v[3]) : 0;
    snprintf(out->reason, sizeof(out->reason), "%s", v[4] ? v[4] : "");
    out->has_resv = v[5] != NULL;
    snprintf(out->charge, sizeof(out->charge), "%s", v[6] ? v[6] : "");
    freeReplyObject(r);
    return 0;
}

typedef struct op_tr {
    const char *id;
    const rec *rec;
    fk_state to;
    fk_reason reason;
    const char *detail; /* fills the reason's %s */
    const char *ops;
    const char *extra_field, *extra_val;
    const char *operator, *note;
} op_tr;

/* Apply t through transition.lua. 0 on 'ok' (new fence in fence_out);
 * FK_ESTALE (changed meanwhile) or FK_EBUSY (out of stock, nothing to
 * deliver, a reservation that is not the order's qty distinct codes) with
 * the reason recorded; Redis failures as fk_ctl_script. */
static int operator_transition(fk_ctl *ctl, const op_tr *t, char *fence_out, size_t flen) {
    fk_tr x = {t->rec->state, t->to, t->reason, t->detail, t->ops, 0, NULL, NULL,
               t->extra_field, t->extra_val, t->operator, t->note};
    /* the fence we read: compare-and-set; no entry to acknowledge */
    fk_tr_order o = {t->id, t->rec->sku, NULL, t->rec->fence, NULL};
    fk_tr_args *c = malloc(sizeof(*c));
    if (!c) return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
    int rc = fk_transition_args(c, &ctl->cfg, &ctl->keys, &o, &x);
    if (rc) {
        free(c);
        return fk_ctl_fail(ctl, rc, "bad transition (a bug)");
    }
    redisReply *r = fk_ctl_script(ctl, &rc, FK_LUA_TRANSITION, c->nkeys, &c->a);
    free(c);
    if (!r) return rc;
    const char *st = r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
                             r->element[0]->type == REDIS_REPLY_STRING
                         ? r->element[0]->str
                         : "";
    const char *e1 = r->type == REDIS_REPLY_ARRAY && r->elements >= 2 ? r->element[1]->str : NULL;
    long long i1 = r->type == REDIS_REPLY_ARRAY && r->elements >= 2 ? r->element[1]->integer : 0;
    char now[80], fence[40], sku[80];
    fk_ctl_printable(t->rec->sku, 64, sku, sizeof(sku));
    if (strcmp(st, "ok") == 0) {
        snprintf(fence_out, flen, "%s", e1 ? e1 : "");
        rc = 0;
    } else if (strcmp(st, "stale") == 0) {
        rc = fk_ctl_fail(ctl, FK_ESTALE,
                         "order %s changed meanwhile (now %s, fence %s); nothing was done, "
                         "look at it again",
                         t->id, state_shown(e1 ? e1 : "", now, sizeof(now)),
                         fk_ctl_printable(r->elements >= 3 && r->element[2]->str
                                              ? r->element[2]->str
                                              : "?",
                                          24, fence, sizeof(fence)));
    } else if (strcmp(st, "nostock") == 0) {
        rc = fk_ctl_fail(ctl, FK_EBUSY,
                         "out of stock: %s has %lld codes, order %s needs %lld; nothing was "
                         "done (add codes with `fakactl stock add %s`)",
                         sku, i1, t->id, t->rec->qty, sku);
    } else if (strcmp(st, "noresv") == 0 && e1 && strcmp(e1, "unreadable") == 0) {
        rc = fk_ctl_fail(ctl, FK_EBUSY,
                         "order %s: its reservation (resv) is not %lld distinct codes as faka "
                         "reserves them (edited by hand?); nothing was done. Look at it with "
                         "`fakactl order %s`, then correct resv (or qty), or remove resv so "
                         "that codes are taken from stock",
                         t->id, t->rec->qty, t->id);
    } else if (strcmp(st, "noresv") == 0) {
        rc = fk_ctl_fail(ctl, FK_EBUSY, "order %s holds no codes to deliver; nothing was done",
                         t->id);
    } else {
        rc = fk_ctl_fail(ctl, FK_EPROTO, "unexpected reply from transition.lua");
    }
    freeReplyObject(r);
    return rc;
}

static int report_transition(fk_ctl *ctl, const op_tr *t, const char *fence,
                             const char *what) {
    if (ctl->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "order_id", t->id);
        cJSON_AddStringToObject(j, "from", fk_state_name(t->rec->state));
        cJSON_AddStringToObject(j, "to", fk_state_name(t->to));
        cJSON_AddStringToObject(j, "operator", t->operator);
        cJSON_AddStringToObject(j, "note", t->note);
        cJSON_AddStringToObject(j, "fence", fence);
        return fk_ctl_print_json(ctl, j);
    }
    fprintf(ctl->out, "order %s: %s -> %s by %s; %s\n", t->id, t->rec->shown,
            fk_state_name(t->to), t->operator, what);
    return 0;
}

/* Failed orders that must not be retried: their record is not a real order
 * of their own (an idempotency key owned by another order, an unreadable
 * entry), or the buyer was refused before anything was held. */
static int retry_refused(const char *reason) {
    return strcmp(reason, "duplicate") == 0 || strcmp(reason, "idempotency_conflict") == 0 ||
           strcmp(reason, "invalid_order") == 0 || strcmp(reason, "rate_limited") == 0;
}

int fk_ctl_retry(fk_ctl *ctl, int argc, char **argv) {
    fk_ctl_opt o[] = {{"note", 1, 0, NULL}, {"operator", 1, 0, NULL}, {"force", 0, 0, NULL}};
    const char *pos[1], *who;
    int npos, rc;
    if ((rc = fk_ctl_parse(ctl, "retry", argc, argv, o, 3, pos, 1, 1, &npos))) return rc;
    const char *note = o[0].seen ? o[0].val : "";
    if ((rc = fk_ctl_check_id(ctl, pos[0])) || (rc = check_note(ctl, note)) ||
        (rc = operator_name(ctl, &o[1], &who)))
        return rc;
    rec r;
    if ((rc = read_rec(ctl, pos[0], &r))) return rc;
    if (r.state != FK_ST_FAILED || !fk_state_can(r.state, FK_ST_PROCESSING))
        return fk_ctl_fail(ctl, FK_EBUSY,
                           "order %s is %s; only a failed order can be retried%s", pos[0],
                           r.shown,
                           r.state == FK_ST_MANUAL_REVIEW ? " (use `review resolve`)" : "");
    if (retry_refused(r.reason))
        return fk_ctl_fail(ctl, FK_EBUSY,
                           "order %s failed as %s: it is not an order that can be processed; "
                           "the buyer must place a new one",
                           pos[0], r.reason); /* one of retry_refused's codes */
    /* A human settled it in review (resolve --as failed): the buyer may
     * have been refunded, or told no, outside faka. A retry would deliver
     * codes (the gateway still says paid, or nothing is asked) or charge
     * the buyer again, and drops the shop's payment report (op C): a typo
     * in the id must not do that. */
    if (strcmp(r.reason, fk_reason_code(FK_R_OPERATOR)) == 0 && !o[2].seen)
        return fk_ctl_fail(ctl, FK_EBUSY,
                           "order %s was settled as failed by an operator in review (see its "
                           "audit: `fakactl order %s`); the payment may have been refunded "
                           "outside faka, and a retry delivers codes or charges the buyer "
                           "again. Nothing was done; check the payment, then add --force",
                           pos[0], pos[0]);
    /* a fresh reservation (the failure released the codes), a fresh
     * attempt budget, and a `retry` entry so that a worker takes it up;
     * the shop's payment report, if it failed the order, is dropped (C):
     * the worker asks the gateway (the record says charge=declined) */
    op_tr t = {pos[0], &r, FK_ST_PROCESSING, FK_R_NONE, NULL, "SFQC", "attempts", "0", who,
               note};
    char fence[24];
    if ((rc = operator_transition(ctl, &t, fence, sizeof(fence)))) return rc;
    char what[400], sku[80];
    snprintf(what, sizeof(what), "%lld codes of %s reserved, queued for a worker", r.qty,
             fk_ctl_printable(r.sku, 64, sku, sizeof(sku)));
    return report_transition(ctl, &t, fence, what);
}

/* ---- review ------------------------------------------------------------- */

static int review_list(fk_ctl *ctl, int argc, char **argv) {
    fk_ctl_opt o[] = {{"count", 1, 0, NULL}};
    const char *pos[1];
    int npos, rc;
    long long count = 50;
    if ((rc = fk_ctl_parse(ctl, "review list", argc, argv, o, 1, pos, 0, 0, &npos))) return rc;
    if (o[0].seen && (rc = fk_ctl_parse_ll(ctl, "--count", o[0].val, 1, 10000, &count)))
        return rc;
    redisReply *z = fk_ctl_cmd(ctl, &rc, "ZRANGE %s 0 %lld WITHSCORES", ctl->keys.review,
                               count - 1);
    if (!z) return rc;
    redisReply *total = fk_ctl_cmd(ctl, &rc, "ZCARD %s", ctl->keys.review);
    if (!total) {
        freeReplyObject(z);
        return rc;
    }
    size_t n = z->type == REDIS_REPLY_ARRAY ? z->elements / 2 : 0;
    redisReply **h = calloc(n ? n : 1, sizeof(*h));
    if (!h) {
        freeReplyObject(z);
        freeReplyObject(total);
        return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        char okey[FK_KEY_MAX];
        fk_key_order(&ctl->keys, z->element[2 * i]->str, okey, sizeof(okey));
        redisAppendCommand(ctl->c, "HMGET %s state reason message sku qty amount buyer charge",
                           okey);
    }
    rc = n ? fk_ctl_pipeline(ctl, h, (int)n) : 0;
    if (rc) {
        free(h);
        freeReplyObject(z);
        freeReplyObject(total);
        return rc;
    }
    static const char *const f[] = {"state", "reason", "message", "sku", "qty",
                                    "amount", "buyer", "charge"};
    cJSON *j = NULL, *arr = NULL;
    if (ctl->json) {
        j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "total", (double)total->integer);
        arr = cJSON_AddArrayToObject(j, "orders");
    } else {
        fprintf(ctl->out, "%lld orders waiting for review%s\n", total->integer,
                (long long)n < total->integer ? " (oldest first)" : "");
        if (n) fprintf(ctl->out, "  %-24s %-22s %-18s %-10s %s\n", "since", "order", "reason",
                       "charge", "message");
    }
    for (size_t i = 0; i < n; i++) {
        const char *id = z->element[2 * i]->str;
        size_t idlen = z->element[2 * i]->len;
        long long since = atoll(z->element[2 * i + 1]->str);
        const redisReply *r = h[i];
        const char *v[8];
        size_t vlen[8];
        for (int k = 0; k < 8; k++) {
            int str = r->type == REDIS_REPLY_ARRAY && (size_t)k < r->elements &&
                      r->element[k]->type == REDIS_REPLY_STRING;
            v[k] = str ? r->element[k]->str : "";
            vlen[k] = str ? r->element[k]->len : 0;
        }
        /* the ids and fields are whatever someone put in Redis */
        if (j) {
            cJSON *e = cJSON_CreateObject();
            fk_ctl_json_add(e, "order_id", fk_ctl_json_str(id, idlen));
            cJSON_AddNumberToObject(e, "since", (double)since);
            for (int k = 0; k < 8; k++) fk_ctl_json_add(e, f[k], fk_ctl_json_str(v[k], vlen[k]));
            cJSON_AddItemToArray(arr, e);
        } else {
            char t[40], m[100], sid[80], reason[48], charge[48];
            fprintf(ctl->out, "  %-24s %-22s %-18s %-10s %s\n", fk_ctl_time(since, t, sizeof(t)),
                    fk_ctl_printable(id, 64, sid, sizeof(sid)),
                    fk_ctl_printable(v[1], 40, reason, sizeof(reason)),
                    fk_ctl_printable(v[7], 40, charge, sizeof(charge)),
                    fk_ctl_printable(v[2], 80, m, sizeof(m)));
        }
    }
    for (size_t i = 0; i < n; i++) freeReplyObject(h[i]);
    free(h);
    freeReplyObject(z);
    freeReplyObject(total);
    return j ? fk_ctl_print_json(ctl, j) : 0;
}

static int review_resolve(fk_ctl *ctl, int argc, char **argv) {
    fk_ctl_opt o[] = {{"as", 1, 0, NULL},
                      {"note", 1, 0, NULL},
                      {"operator", 1, 0, NULL},
                      {"no-notify", 0, 0, NULL}};
    const char *pos[1], *who;
    int npos, rc;
    if ((rc = fk_ctl_parse(ctl, "review resolve", argc, argv, o, 4, pos, 1, 1, &npos)))
        return rc;
    if (!o[0].seen)
        return fk_ctl_fail(ctl, FK_EUSAGE,
                           "review resolve: --as completed|failed|processing is required");
    fk_state to = fk_state_parse(o[0].val);
    if (to != FK_ST_COMPLETED && to != FK_ST_FAILED && to != FK_ST_PROCESSING) {
        char shown[80];
        return fk_ctl_fail(ctl, FK_EUSAGE,
                           "review resolve: --as must be completed, failed or processing, "
                           "not '%s'",
                           fk_ctl_printable(o[0].val, 64, shown, sizeof(shown)));
    }
    const char *note = o[1].seen ? o[1].val : "";
    if ((rc = fk_ctl_check_id(ctl, pos[0])) || (rc = check_note(ctl, note)) ||
        (rc = operator_name(ctl, &o[2], &who)))
        return rc;
    rec r;
    if ((rc = read_rec(ctl, pos[0], &r))) return rc;
    if (r.state != FK_ST_MANUAL_REVIEW || !fk_state_can(r.state, to))
        return fk_ctl_fail(ctl, FK_EBUSY, "order %s is %s, not waiting for review", pos[0],
                           r.shown);
    if (to == FK_ST_PROCESSING && strcmp(r.charge, "conflict") == 0)
        return fk_ctl_fail(ctl, FK_EBUSY,
                           "order %s: the gateway holds another charge under its idempotency"
                           " key (HTTP 409), so a worker cannot learn this order's payment from"
                           " the gateway; check the payment yourself, then resolve --as"
                           " completed or --as failed",
                           pos[0]);
    op_tr t = {pos[0], &r, to, FK_R_NONE, NULL, "", NULL, NULL, who, note};
    char what[400], sku[80];
    fk_ctl_printable(r.sku, 64, sku, sizeof(sku));
    if (to == FK_ST_COMPLETED) {
        /* the held reservation, or fresh codes when the order holds none */
        t.ops = o[3].seen ? "SDF" : "SDFN";
        snprintf(what, sizeof(what), "%s%lld codes of %s delivered%s",
                 r.has_resv ? "the reserved " : "", r.qty, sku,
                 o[3].seen ? "" : ", shop webhook queued");
    } else if (to == FK_ST_FAILED) {
        t.ops = "LF";
        t.reason = FK_R_OPERATOR;
        t.detail = note[0] ? note : "marked failed in review";
        snprintf(what, sizeof(what), "%s", r.has_resv ? "reservation released to stock"
                                                      : "nothing was reserved");
    } else {
        t.ops = "SFQ";
        t.extra_field = "attempts";
        t.extra_val = "0";
        snprintf(what, sizeof(what), "%lld codes of %s reserved, queued for a worker", r.qty,
                 sku);
    }
    char fence[24];
    if ((rc = operator_transition(ctl, &t, fence, sizeof(fence)))) return rc;
    return report_transition(ctl, &t, fence, what);
}

int fk_ctl_review(fk_ctl *ctl, int argc, char **argv) {
    if (argc < 1)
        return fk_ctl_fail(ctl, FK_EUSAGE, "review: say `review list` or `review resolve ID`");
    if (strcmp(argv[0], "list") == 0) return review_list(ctl, argc - 1, argv + 1);
    if (strcmp(argv[0], "resolve") == 0) return review_resolve(ctl, argc - 1, argv + 1);
    char shown[80];
    return fk_ctl_fail(ctl, FK_EUSAGE, "review: unknown subcommand '%s' (list or resolve)",
                       fk_ctl_printable(argv[0], 64, shown, sizeof(shown)));
}
