/* ctl_notify.c -- fakactl's notify command: send a completed order's shop
 * webhook again after the workers gave it up (notify=notify_failed, after
 * --webhook-max attempts), e.g. once the shop's endpoint is back.
 *
 * The check and the requeue are one call (lua/notify_requeue.lua), so an
 * order that is not a failed notification is never touched, and running
 * the command twice queues nothing twice. The workers that run with
 * --webhook-url send what is queued. */
#include "ctl.h"
#include "err.h"
#include "order.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* Requeue one order. Returns 0 with *queued 1 (queued), 0 (skipped, the
 * reason in why) or -1 (no such order, ditto), or a Redis failure as
 * fk_ctl_script. */
static int requeue_one(fk_ctl *ctl, const char *id, int *queued, char *why, size_t wlen) {
    char okey[FK_KEY_MAX];
    int rc = 0;
    fk_key_order(&ctl->keys, id, okey, sizeof(okey));
    fk_args a;
    fk_args_init(&a);
    fk_args_str(&a, okey);
    fk_args_str(&a, ctl->keys.notify);
    fk_args_str(&a, id);
    redisReply *r = fk_ctl_script(ctl, &rc, FK_LUA_NOTIFY_REQUEUE, 2, &a);
    if (!r) return rc;
    *queued = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "queued") == 0) {
        *queued = 1;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
               r->element[1]->type == REDIS_REPLY_STRING &&
               r->element[2]->type == REDIS_REPLY_STRING) {
        char st[80], nt[80];
        if (!r->element[1]->str[0]) {
            *queued = -1;
            snprintf(why, wlen, "no order %s", id);
        } else
            snprintf(why, wlen, "order %s is %s with notify=%s, not a failed notification", id,
                     fk_ctl_printable(r->element[1]->str, 64, st, sizeof(st)),
                     r->element[2]->str[0]
                         ? fk_ctl_printable(r->element[2]->str, 64, nt, sizeof(nt))
                         : "(none)");
    } else {
        rc = fk_ctl_fail(ctl, FK_EPROTO, "unexpected reply from notify_requeue");
    }
    freeReplyObject(r);
    return rc;
}

/* Every order record with notify=notify_failed (SCAN over {p}:order:*). */
static int requeue_failed(fk_ctl *ctl, cJSON *list, long long *n) {
    char pattern[FK_KEY_MAX], cursor[32] = "0";
    fk_key_order(&ctl->keys, "*", pattern, sizeof(pattern));
    size_t plen = strlen(pattern) - 1;
    int rc = 0;
    do {
        redisReply *r = fk_ctl_cmd(ctl, &rc, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        if (!r) return rc;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return fk_ctl_fail(ctl, FK_EPROTO, "unexpected SCAN reply");
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements && !rc; i++) {
            const redisReply *k = r->element[1]->element[i];
            /* a key that names no valid order id is not faka's record */
            if (k->type != REDIS_REPLY_STRING || k->len <= plen ||
                !fk_order_id_valid(k->str + plen))
                continue;
            const char *id = k->str + plen;
            int queued = 0;
            char why[256];
            rc = requeue_one(ctl, id, &queued, why, sizeof(why));
            /* a key of another type under the pattern is not an order */
            if (rc == FK_EREDIS && strstr(ctl->err, "WRONGTYPE")) rc = 0;
            if (rc || queued != 1) continue; /* SCAN may repeat a key: the second skips */
            (*n)++;
            if (list) cJSON_AddItemToArray(list, cJSON_CreateString(id));
            else fprintf(ctl->out, "queued %s\n", id);
        }
        freeReplyObject(r);
    } while (!rc && strcmp(cursor, "0") != 0);
    return rc;
}

int fk_ctl_notify(fk_ctl *ctl, int argc, char **argv) {
    if (argc < 1 || strcmp(argv[0], "requeue") != 0) {
        char shown[80];
        return fk_ctl_fail(ctl, FK_EUSAGE, "notify: say `notify requeue ID|--failed`%s%s",
                           argc >= 1 ? "; unknown subcommand " : "",
                           argc >= 1 ? fk_ctl_printable(argv[0], 64, shown, sizeof(shown)) : "");
    }
    fk_ctl_opt o[] = {{"failed", 0, 0, NULL}};
    const char *pos[1];
    int npos, rc;
    if ((rc = fk_ctl_parse(ctl, "notify requeue", argc - 1, argv + 1, o, 1, pos, 0, 1, &npos)))
        return rc;
    if ((npos == 1) == (o[0].seen != 0))
        return fk_ctl_fail(ctl, FK_EUSAGE, "notify requeue: give one order ID or --failed");
    if (npos == 1 && (rc = fk_ctl_check_id(ctl, pos[0]))) return rc;
    cJSON *j = ctl->json ? cJSON_CreateObject() : NULL;
    cJSON *list = j ? cJSON_AddArrayToObject(j, "queued") : NULL;
    if (ctl->json && (!j || !list)) {
        cJSON_Delete(j);
        return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
    }
    long long n = 0;
    if (npos == 1) {
        int queued = 0;
        char why[256];
        rc = requeue_one(ctl, pos[0], &queued, why, sizeof(why));
        if (!rc && queued != 1)
            rc = fk_ctl_fail(ctl, queued < 0 ? FK_ENOTFOUND : FK_EBUSY, "%s", why);
        if (!rc) {
            n = 1;
            if (list) cJSON_AddItemToArray(list, cJSON_CreateString(pos[0]));
            else fprintf(ctl->out, "queued %s\n", pos[0]);
        }
    } else {
        rc = requeue_failed(ctl, list, &n);
    }
    if (rc) {
        cJSON_Delete(j);
        return rc;
    }
    if (j) return fk_ctl_print_json(ctl, j);
    fprintf(ctl->out, "%lld webhook%s queued; workers with --webhook-url send %s\n", n,
            n == 1 ? "" : "s", n == 1 ? "it" : "them");
    return 0;
}
