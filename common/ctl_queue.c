/* ctl_queue.c -- fakactl's queue and inventory commands: dead (list,
 * requeue), stock (add, count) and workers.
 *
 * Everything read from stdin or a dead entry is outside input: stock codes
 * are checked line by line before anything is added (one bad line refuses
 * them all), then added in batches of STOCK_BATCH, each code only if the
 * SKU was never stocked with it (lua/stock_add.lua), so running the same
 * input again after a part-way stop adds exactly the rest. The first run
 * for a SKU (no ledger yet) first learns the codes its order records hold
 * reserved or delivered (stock_learn), so codes stocked by hand and sold
 * before are not stocked again. A dead entry
 * goes back on the stream only if it would now be accepted. */
#include "clock.h"
#include "codes.h"
#include "ctl.h"
#include "err.h"
#include "order.h"
#include "pipeline.h"
#include "utf8.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STOCK_INPUT_MAX (64u << 20)       /* bytes of stdin */
#define STOCK_BATCH 1000                  /* codes per stock_add call */

/* ---- dead --------------------------------------------------------------- */

/* A field of a [id, [field, value, ...]] entry ("" if absent). */
static const char *entry_field(const redisReply *e, const char *name, size_t *len) {
    if (len) *len = 0;
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[1]->type != REDIS_REPLY_ARRAY)
        return "";
    const redisReply *f = e->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2)
        if (f->element[i]->type == REDIS_REPLY_STRING && strcmp(f->element[i]->str, name) == 0 &&
            f->element[i + 1]->type == REDIS_REPLY_STRING) {
            if (len) *len = f->element[i + 1]->len;
            return f->element[i + 1]->str;
        }
    return "";
}

/* A part of a stream entry id: 1-20 digits of a number Redis takes (at
 * most 2^64 - 1). n: how many digits s starts with. */
static int dead_id_part(const char *s, size_t n) {
    char d[24];
    if (n == 0 || n > 20) return 0;
    memcpy(d, s, n);
    d[n] = '\0';
    return n < 20 || strcmp(d, "18446744073709551615") <= 0;
}

static int dead_id_valid(const char *s) {
    size_t a = strspn(s, "0123456789");
    if (!dead_id_part(s, a)) return 0;
    if (s[a] == '\0') return 1;
    if (s[a] != '-') return 0;
    size_t b = strspn(s + a + 1, "0123456789");
    return dead_id_part(s + a + 1, b) && s[a + 1 + b] == '\0';
}

static int dead_list(fk_ctl *ctl, int argc, char **argv) {
    fk_ctl_opt o[] = {{"count", 1, 0, NULL}};
    const char *pos[1];
    int npos, rc;
    long long count = 20;
    if ((rc = fk_ctl_parse(ctl, "dead list", argc, argv, o, 1, pos, 0, 0, &npos))) return rc;
    if (o[0].seen && (rc = fk_ctl_parse_ll(ctl, "--count", o[0].val, 1, 10000, &count)))
        return rc;
    redisReply *len = fk_ctl_cmd(ctl, &rc, "XLEN %s", ctl->keys.dead);
    if (!len) return rc;
    redisReply *r = fk_ctl_cmd(ctl, &rc, "XREVRANGE %s + - COUNT %lld", ctl->keys.dead, count);
    if (!r) {
        freeReplyObject(len);
        return rc;
    }
    static const char *const fields[] = {"kind", "order_id", "error", "source_id", "history",
                                         "raw"};
    cJSON *j = NULL, *arr = NULL;
    if (ctl->json) {
        j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "total", (double)len->integer);
        arr = cJSON_AddArrayToObject(j, "entries");
    } else {
        fprintf(ctl->out, "%lld dead-lettered entries%s\n", len->integer,
                len->integer > 0 ? " (newest first)" : "");
    }
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
        const char *id = e->element[0]->str;
        if (j) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "id", id);
            for (int k = 0; k < 6; k++) {
                size_t vlen;
                const char *v = entry_field(e, fields[k], &vlen);
                /* raw may hold anything; JSON needs a valid string */
                fk_ctl_json_add(x, fields[k], fk_ctl_json_str(v, vlen));
            }
            cJSON_AddItemToArray(arr, x);
        } else {
            /* one buffer per field: they are all formatted before printing */
            char kind[30], order[70], source[70], error[210], raw[90];
            fprintf(ctl->out, "  %s  kind=%s order=%s source=%s\n    error: %s\n    raw:   %s\n",
                    id, fk_ctl_printable(entry_field(e, "kind", NULL), 20, kind, sizeof(kind)),
                    fk_ctl_printable(entry_field(e, "order_id", NULL), 64, order, sizeof(order)),
                    fk_ctl_printable(entry_field(e, "source_id", NULL), 64, source,
                                     sizeof(source)),
                    fk_ctl_printable(entry_field(e, "error", NULL), 200, error, sizeof(error)),
                    fk_ctl_printable(entry_field(e, "raw", NULL), 80, raw, sizeof(raw)));
        }
    }
    freeReplyObject(len);
    freeReplyObject(r);
    return j ? fk_ctl_print_json(ctl, j) : 0;
}

/* Would this dead entry be taken now, and safely? 1 yes; 0 no, with the
 * reason in why. An order entry dead-lettered longer ago than the
 * retention is refused unless force: its order may have been completed
 * since (a valid order's entry is dead-lettered after --max-deliveries,
 * and the order re-queued) and its record expired, so the entry would be
 * taken as a new order, delivered and charged again. */
static int requeue_ok(const fk_ctl *ctl, const redisReply *e, int force, char *why,
                      size_t wlen) {
    size_t rlen;
    const char *kind = entry_field(e, "kind", NULL), *raw = entry_field(e, "raw", &rlen);
    char err[256];
    if (rlen > FK_DEAD_RAW_MAX && strstr(raw, "...[truncated")) {
        snprintf(why, wlen, "its payload was cut when it was dead-lettered");
        return 0;
    }
    long long age = fk_now_ms() - strtoll(e->element[0]->str, NULL, 10);
    if (strcmp(kind, "order") == 0 && !force && ctl->cfg.retention_s > 0 &&
        age > ctl->cfg.retention_s * 1000) {
        snprintf(why, wlen,
                 "dead-lettered %lld days ago, longer than the retention (--retention-s %lld):"
                 " its order may have been finished and forgotten, and would be taken as new"
                 " (--force to requeue it anyway)",
                 age / 86400000, ctl->cfg.retention_s);
        return 0;
    }
    if (strcmp(kind, "order") == 0) {
        fk_order o;
        if (fk_order_decode(raw, rlen, &o, err, sizeof(err), NULL) == 0) return 1;
    } else if (strcmp(kind, "payment") == 0) {
        fk_payment p;
        if (fk_payment_decode(raw, rlen, &p, err, sizeof(err), NULL) == 0) return 1;
    } else if (strcmp(kind, "retry") == 0) {
        char id[FK_ORDER_ID_MAX + 2];
        const char *at = memchr(raw, '@', rlen);
        size_t idlen = at ? (size_t)(at - raw) : rlen;
        if (idlen <= FK_ORDER_ID_MAX && strlen(raw) == rlen) {
            memcpy(id, raw, idlen);
            id[idlen] = '\0';
            if (fk_order_id_valid(id) &&
                (!at || strspn(at + 1, "0123456789") == strlen(at + 1)))
                return 1;
        }
        snprintf(err, sizeof(err), "not {order_id}@{due ms}");
    } else {
        char shown[40];
        snprintf(why, wlen, "kind '%s' is not one faka processes",
                 fk_ctl_printable(kind, 20, shown, sizeof(shown)));
        return 0;
    }
    char shown[260];
    snprintf(why, wlen, "still invalid: %s", fk_ctl_printable(err, 200, shown, sizeof(shown)));
    return 0;
}

/* XADD the entry back and XDEL it from the dead stream, in one MULTI.
 * Returns 0 with the new entry id, or an error. */
static int requeue_one(fk_ctl *ctl, const redisReply *e, char *newid, size_t nlen) {
    size_t klen, rlen;
    const char *kind = entry_field(e, "kind", &klen), *raw = entry_field(e, "raw", &rlen);
    const char *id = e->element[0]->str;
    const char *xa[] = {"XADD", ctl->keys.stream, "*", kind, raw};
    size_t xl[] = {4, strlen(ctl->keys.stream), 1, klen, rlen};
    const char *xd[] = {"XDEL", ctl->keys.dead, id};
    size_t dl[] = {4, strlen(ctl->keys.dead), strlen(id)};
    int rc = fk_ctl_connect(ctl);
    if (rc) return rc;
    redisAppendCommand(ctl->c, "MULTI");
    redisAppendCommandArgv(ctl->c, 5, xa, xl);
    redisAppendCommandArgv(ctl->c, 3, xd, dl);
    redisAppendCommand(ctl->c, "EXEC");
    redisReply *r[4];
    if ((rc = fk_ctl_pipeline(ctl, r, 4))) return rc;
    const redisReply *x = r[3];
    if (x->type == REDIS_REPLY_ARRAY && x->elements == 2 &&
        x->element[0]->type == REDIS_REPLY_STRING) {
        snprintf(newid, nlen, "%s", x->element[0]->str);
        rc = 0;
    } else {
        rc = fk_ctl_fail(ctl, FK_EREDIS, "requeue of %s failed: %s", id,
                         x->type == REDIS_REPLY_ERROR ? x->str : "transaction not executed");
    }
    for (int i = 0; i < 4; i++) freeReplyObject(r[i]);
    return rc;
}

static int dead_requeue(fk_ctl *ctl, int argc, char **argv) {
    fk_ctl_opt o[] = {{"all", 0, 0, NULL}, {"force", 0, 0, NULL}};
    const char *pos[1];
    int npos, rc;
    if ((rc = fk_ctl_parse(ctl, "dead requeue", argc, argv, o, 2, pos, 0, 1, &npos))) return rc;
    if ((npos == 1) == (o[0].seen != 0))
        return fk_ctl_fail(ctl, FK_EUSAGE, "dead requeue: give one entry ID or --all");
    if (npos == 1 && !dead_id_valid(pos[0])) {
        char shown[80];
        return fk_ctl_fail(ctl, FK_EUSAGE, "dead requeue: '%s' is not a stream entry id",
                           fk_ctl_printable(pos[0], 64, shown, sizeof(shown)));
    }
    cJSON *j = ctl->json ? cJSON_CreateObject() : NULL;
    cJSON *done = j ? cJSON_AddArrayToObject(j, "requeued") : NULL;
    cJSON *skipped = j ? cJSON_AddArrayToObject(j, "skipped") : NULL;
    long long nreq = 0, nskip = 0;
    char cursor[64] = "-";
    rc = 0;
    for (;;) {
        redisReply *r;
        if (npos == 1)
            r = fk_ctl_cmd(ctl, &rc, "XRANGE %s %s %s", ctl->keys.dead, pos[0], pos[0]);
        else
            r = fk_ctl_cmd(ctl, &rc, "XRANGE %s %s + COUNT 100", ctl->keys.dead, cursor);
        if (!r) break;
        if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
            if (npos == 1) rc = fk_ctl_fail(ctl, FK_ENOTFOUND, "no dead entry %s", pos[0]);
            freeReplyObject(r);
            break;
        }
        for (size_t i = 0; i < r->elements && !rc; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
            const char *id = e->element[0]->str;
            snprintf(cursor, sizeof(cursor), "(%s", id);
            char why[300], newid[64];
            if (!requeue_ok(ctl, e, o[1].seen, why, sizeof(why))) {
                nskip++;
                if (j) {
                    cJSON *x = cJSON_CreateObject();
                    cJSON_AddStringToObject(x, "id", id);
                    cJSON_AddStringToObject(x, "why", why);
                    cJSON_AddItemToArray(skipped, x);
                } else {
                    fprintf(ctl->out, "skipped %s: %s\n", id, why);
                }
                if (npos == 1) rc = fk_ctl_fail(ctl, FK_EBUSY, "not requeued: %s", why);
                continue;
            }
            rc = requeue_one(ctl, e, newid, sizeof(newid));
            if (rc) break;
            nreq++;
            char shown[80];
            const char *oid = entry_field(e, "order_id", NULL);
            if (j) {
                cJSON *x = cJSON_CreateObject();
                cJSON_AddStringToObject(x, "id", id);
                cJSON_AddStringToObject(x, "entry_id", newid);
                cJSON_AddStringToObject(x, "kind", entry_field(e, "kind", NULL));
                cJSON_AddStringToObject(x, "order_id", fk_ctl_printable(oid, 64, shown,
                                                                        sizeof(shown)));
                cJSON_AddItemToArray(done, x);
            } else {
                fprintf(ctl->out, "requeued %s as %s%s%s\n", id, newid, oid[0] ? " order " : "",
                        fk_ctl_printable(oid, 64, shown, sizeof(shown)));
            }
        }
        size_t got = r->elements;
        freeReplyObject(r);
        if (rc || npos == 1 || got < 100) break;
    }
    if (j) {
        if (rc && rc != FK_EBUSY) {
            cJSON_Delete(j);
            return rc;
        }
        int prc = fk_ctl_print_json(ctl, j);
        return rc ? rc : prc;
    }
    if (!rc && npos == 0)
        fprintf(ctl->out, "requeued %lld, skipped %lld (they would be dead-lettered again)\n",
                nreq, nskip);
    return rc;
}

int fk_ctl_dead(fk_ctl *ctl, int argc, char **argv) {
    if (argc < 1)
        return fk_ctl_fail(ctl, FK_EUSAGE, "dead: say `dead list` or `dead requeue ID|--all`");
    if (strcmp(argv[0], "list") == 0) return dead_list(ctl, argc - 1, argv + 1);
    if (strcmp(argv[0], "requeue") == 0) return dead_requeue(ctl, argc - 1, argv + 1);
    char shown[80];
    return fk_ctl_fail(ctl, FK_EUSAGE, "dead: unknown subcommand '%s' (list or requeue)",
                       fk_ctl_printable(argv[0], 64, shown, sizeof(shown)));
}

/* ---- stock -------------------------------------------------------------- */

/* A SKU as the order codec accepts it: 1-64 characters of UTF-8, no
 * control characters. */
static int check_sku(fk_ctl *ctl, const char *sku) {
    size_t n = strlen(sku);
    int ok = n > 0 && fk_utf8_valid(sku, n) && fk_utf8_count(sku, n) <= FK_SKU_MAX_CHARS;
    for (const char *p = sku; ok && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) ok = 0;
    if (!ok) {
        char shown[80];
        return fk_ctl_fail(ctl, FK_EUSAGE,
                           "'%s' is not a SKU (1-64 characters, no control characters)",
                           fk_ctl_printable(sku, 64, shown, sizeof(shown)));
    }
    return 0;
}

static int read_all(fk_ctl *ctl, char **out, size_t *len) {
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (!buf) return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
    for (;;) {
        if (n == cap) {
            if (cap >= STOCK_INPUT_MAX) {
                free(buf);
                return fk_ctl_fail(ctl, FK_EINVAL, "stdin holds more than %u bytes",
                                   STOCK_INPUT_MAX);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, stdin);
        if (got == 0) break;
        n += got;
    }
    if (ferror(stdin)) {
        free(buf);
        return fk_ctl_fail(ctl, FK_EIO, "cannot read stdin");
    }
    *out = buf;
    *len = n;
    return 0;
}

/* ---- stock add: the first run learns the SKU's history ------------------ */

/* What the first `stock add` of a SKU took into its new ledger from the
 * order records (first 0: the ledger existed, nothing was scanned). */
typedef struct stock_history {
    int first;
    size_t codes;   /* codes the SKU's records hold, new to the ledger */
    size_t records; /* records of the SKU that gave at least one of them */
    size_t scanned; /* order records scanned (one that SCAN returned twice,
                     * as it may while Redis resizes its table, twice) */
} stock_history;

/* Codes found in the SKU's records, each malloc'd: record i's are
 * code[i ? end[i - 1] : 0 .. end[i]). */
typedef struct found_codes {
    char **code;
    size_t n, cap;
    size_t *end;
    size_t nrec, reccap;
} found_codes;

static void found_free(found_codes *f) {
    for (size_t i = 0; i < f->n; i++) free(f->code[i]);
    free(f->code);
    free(f->end);
}

/* Make room for need elements of size elem in *pp (capacity *cap).
 * Returns 0 or FK_ENOMEM (*pp unchanged). */
static int grow(void *pp, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 64;
    while (nc < need) nc *= 2;
    void *np = realloc(*(void **)pp, nc * elem);
    if (!np) return FK_ENOMEM;
    *(void **)pp = np;
    *cap = nc;
    return 0;
}

/* Add the codes of one `codes` or `resv` value to f: a JSON array of
 * strings, as accept.lua and transition.lua write it (cjson.encode of the
 * popped codes). Anything else in a record is skipped: a value that is not
 * such an array, an item that is not a string, a string no `stock add`
 * could add (empty, or longer than FK_CODE_MAX). Returns 0 or FK_ENOMEM. */
static int found_add(found_codes *f, const redisReply *v) {
    if (v->type != REDIS_REPLY_STRING) return 0;
    cJSON *a = cJSON_ParseWithLength(v->str, v->len);
    const cJSON *arr = cJSON_IsArray(a) ? a : NULL, *it;
    int rc = 0;
    cJSON_ArrayForEach(it, arr) {
        size_t len = cJSON_IsString(it) ? strlen(it->valuestring) : 0;
        if (len == 0 || len > FK_CODE_MAX) continue;
        if ((rc = grow(&f->code, &f->cap, f->n + 1, sizeof(*f->code)))) break;
        if (!(f->code[f->n] = strdup(it->valuestring))) {
            rc = FK_ENOMEM;
            break;
        }
        f->n++;
    }
    cJSON_Delete(a);
    return rc;
}

/* pattern = s with every character SCAN MATCH gives a meaning to ('*',
 * '?', '[', ']', '\') escaped, then "*": the keys that start with s, and
 * only those, whatever s holds. len >= 2 * strlen(s) + 2. */
static void glob_prefix(const char *s, char *pattern, size_t len) {
    size_t o = 0;
    for (; *s && o + 4 <= len; s++) {
        if (strchr("*?[]\\", *s)) pattern[o++] = '\\';
        pattern[o++] = *s;
    }
    pattern[o++] = '*';
    pattern[o] = '\0';
}

/* One SCAN page of order-record keys: HMGET sku codes resv of each, in one
 * pipeline, and the codes of the records of sku into f. Records are outside
 * input: a key of another type (an error reply), a record without this sku
 * or with garbage in its fields gives nothing and stops nothing. Returns 0
 * or an error (recorded). */
static int scan_page(fk_ctl *ctl, const redisReply *keys, const char *sku, found_codes *f,
                     stock_history *h) {
    size_t m = keys->elements, slen = strlen(sku);
    int rc;
    if (m == 0) return 0;
    if ((rc = fk_ctl_connect(ctl))) return rc;
    redisReply **r = malloc(m * sizeof(*r));
    if (!r) return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
    for (size_t i = 0; i < m; i++) {
        const redisReply *k = keys->element[i];
        int str = k->type == REDIS_REPLY_STRING;
        redisAppendCommand(ctl->c, "HMGET %b sku codes resv", str ? k->str : "",
                           str ? k->len : (size_t)0);
    }
    if ((rc = fk_ctl_pipeline(ctl, r, (int)m))) {
        free(r);
        return rc;
    }
    for (size_t i = 0; i < m && !rc; i++) {
        const redisReply *x = r[i];
        if (x->type != REDIS_REPLY_ARRAY || x->elements != 3) continue;
        h->scanned++;
        const redisReply *s = x->element[0];
        if (s->type != REDIS_REPLY_STRING || s->len != slen || memcmp(s->str, sku, slen) != 0)
            continue;
        size_t before = f->n;
        if ((rc = found_add(f, x->element[1])) || (rc = found_add(f, x->element[2])) ||
            (f->n > before && (rc = grow(&f->end, &f->reccap, f->nrec + 1, sizeof(*f->end)))))
            rc = fk_ctl_fail(ctl, rc, "out of memory");
        else if (f->n > before)
            f->end[f->nrec++] = f->n;
    }
    for (size_t i = 0; i < m; i++) freeReplyObject(r[i]);
    free(r);
    return rc;
}

/* The learnt history into the ledger, all at once: MULTI, SADD the stock
 * list's codes (STOCK_BATCH a command), one SADD per record, EXEC. The
 * records' answers give h->codes and h->records. Nothing to learn writes
 * nothing. Returns 0 or an error (recorded; then nothing was written). */
static int ledger_write(fk_ctl *ctl, const char *lkey, const redisReply *list,
                        const found_codes *f, stock_history *h) {
    size_t nlist = list->type == REDIS_REPLY_ARRAY ? list->elements : 0, most = STOCK_BATCH;
    if (nlist == 0 && f->nrec == 0) return 0;
    for (size_t i = 0; i < f->nrec; i++) {
        size_t c = f->end[i] - (i ? f->end[i - 1] : 0);
        if (c > most) most = c;
    }
    size_t nlcmd = (nlist + STOCK_BATCH - 1) / STOCK_BATCH, ncmd = nlcmd + f->nrec;
    const char **av = malloc((most + 2) * sizeof(*av));
    size_t *al = malloc((most + 2) * sizeof(*al));
    redisReply **r = malloc((ncmd + 2) * sizeof(*r));
    int rc = !av || !al || !r ? fk_ctl_fail(ctl, FK_ENOMEM, "out of memory")
                              : fk_ctl_connect(ctl);
    if (rc) goto out;
    av[0] = "SADD";
    al[0] = 4;
    av[1] = lkey;
    al[1] = strlen(lkey);
    redisAppendCommand(ctl->c, "MULTI");
    for (size_t i = 0; i < nlist; i += STOCK_BATCH) {
        size_t m = nlist - i < STOCK_BATCH ? nlist - i : STOCK_BATCH;
        for (size_t k = 0; k < m; k++) {
            const redisReply *e = list->element[i + k];
            int str = e->type == REDIS_REPLY_STRING;
            av[2 + k] = str ? e->str : "";
            al[2 + k] = str ? e->len : 0;
        }
        redisAppendCommandArgv(ctl->c, (int)m + 2, av, al);
    }
    for (size_t i = 0, from = 0; i < f->nrec; from = f->end[i++]) {
        size_t m = f->end[i] - from;
        for (size_t k = 0; k < m; k++) {
            av[2 + k] = f->code[from + k];
            al[2 + k] = strlen(f->code[from + k]);
        }
        redisAppendCommandArgv(ctl->c, (int)m + 2, av, al);
    }
    redisAppendCommand(ctl->c, "EXEC");
    if ((rc = fk_ctl_pipeline(ctl, r, (int)ncmd + 2))) goto out;
    const redisReply *x = r[ncmd + 1];
    if (x->type != REDIS_REPLY_ARRAY || x->elements != ncmd) {
        char shown[300];
        rc = fk_ctl_fail(ctl, FK_EREDIS, "stock add: the ledger %s was not written: %s", lkey,
                         x->type == REDIS_REPLY_ERROR
                             ? fk_ctl_printable(x->str, 256, shown, sizeof(shown))
                             : "transaction not executed");
    }
    for (size_t k = 0; !rc && k < ncmd; k++) {
        const redisReply *e = x->element[k];
        if (e->type != REDIS_REPLY_INTEGER) {
            char shown[300];
            rc = fk_ctl_fail(ctl, FK_EREDIS, "stock add: the ledger %s: %s", lkey,
                             e->type == REDIS_REPLY_ERROR
                                 ? fk_ctl_printable(e->str, 256, shown, sizeof(shown))
                                 : "unexpected reply");
        } else if (k >= nlcmd && e->integer > 0) {
            h->codes += (size_t)e->integer;
            h->records++;
        }
    }
    for (size_t k = 0; k < ncmd + 2; k++) freeReplyObject(r[k]);
out:
    free(av);
    free(al);
    free(r);
    return rc;
}

/* The first `stock add` of a SKU (its ledger does not exist) learns what
 * the SKU was stocked with before: the codes in its stock list, and every
 * code a record of the SKU holds reserved (`resv`) or delivered (`codes`),
 * found by SCAN over the order records. The list is read first, in one
 * command, so that a code reserved during the scan by an order the scan
 * does not see is known from the list. A code released back to the list
 * during the scan is learnt by the first batch, which enters the list into
 * the ledger again, atomically with its adds. The history is written in
 * one transaction at the end: the ledger exists only once all of it is in,
 * so a run stopped part-way leaves no ledger and the next run scans again.
 * Not learnt (docs/OPERATIONS.md): codes of records expired after the
 * retention, and a code released and reserved again during the scan.
 * Returns 0 with *h filled in, or an error (recorded; no ledger written). */
static int stock_learn(fk_ctl *ctl, const char *sku, const char *skey, const char *lkey,
                       stock_history *h) {
    int rc;
    memset(h, 0, sizeof(*h));
    redisReply *r = fk_ctl_cmd(ctl, &rc, "EXISTS %s", lkey);
    if (!r) return rc;
    int exists = r->type != REDIS_REPLY_INTEGER || r->integer != 0;
    freeReplyObject(r);
    if (exists) return 0; /* another type: the first batch refuses it */
    h->first = 1;
    redisReply *list = fk_ctl_cmd(ctl, &rc, "LRANGE %s 0 -1", skey);
    if (!list) {
        if (rc == FK_EREDIS) {
            char why[sizeof(ctl->err)];
            snprintf(why, sizeof(why), "%s", ctl->err);
            rc = fk_ctl_fail(ctl, rc, "stock add: %s is not a list of codes (%s)", skey, why);
        }
        return rc;
    }
    found_codes f = {0};
    char okey[FK_KEY_MAX], pattern[2 * FK_KEY_MAX + 2], cursor[32] = "0";
    fk_key_order(&ctl->keys, "", okey, sizeof(okey));
    glob_prefix(okey, pattern, sizeof(pattern));
    do {
        r = fk_ctl_cmd(ctl, &rc, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        if (!r) break;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            rc = fk_ctl_fail(ctl, FK_EPROTO, "unexpected SCAN reply");
        } else {
            snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
            rc = scan_page(ctl, r->element[1], sku, &f, h);
        }
        freeReplyObject(r);
    } while (!rc && strcmp(cursor, "0") != 0);
    if (!rc) rc = ledger_write(ctl, lkey, list, &f, h);
    freeReplyObject(list);
    found_free(&f);
    return rc;
}

static int stock_add(fk_ctl *ctl, int argc, char **argv) {
    const char *pos[1];
    int npos, rc;
    if ((rc = fk_ctl_parse(ctl, "stock add", argc, argv, NULL, 0, pos, 1, 1, &npos))) return rc;
    if ((rc = check_sku(ctl, pos[0]))) return rc;
    if (isatty(STDIN_FILENO))
        return fk_ctl_fail(ctl, FK_EUSAGE, "stock add: pipe the codes in, one per line");
    char *buf = NULL, skey[FK_KEY_MAX], lkey[FK_KEY_MAX];
    size_t len = 0, n = 0, added = 0, skipped = 0;
    fk_code *codes = NULL;
    if ((rc = read_all(ctl, &buf, &len))) return rc;
    /* the reason, if any, goes straight to ctl->err, as fk_ctl_fail's would */
    if ((rc = fk_codes_parse(buf, len, &codes, &n, ctl->err, sizeof(ctl->err)))) {
        free(buf);
        return rc;
    }
    fk_key_stock(&ctl->keys, pos[0], skey, sizeof(skey));
    fk_key_stock_ledger(&ctl->keys, pos[0], lkey, sizeof(lkey));
    const char **av = malloc((STOCK_BATCH + 6) * sizeof(*av));
    size_t *al = malloc((STOCK_BATCH + 6) * sizeof(*al));
    long long in_stock = 0;
    stock_history h;
    if (!av || !al) {
        rc = fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = stock_learn(ctl, pos[0], skey, lkey, &h))) goto out;
    /* said at once: it holds even if a batch fails below */
    if (h.first && !ctl->json)
        fprintf(ctl->out,
                "first stock add for %s: %zu codes found reserved or sold in %zu of %zu order"
                " records taken into its ledger\n",
                pos[0], h.codes, h.records, h.scanned);
    /* FCALL stock_add 2 stock ledger seed codes... (lua/stock_add.lua) */
    av[0] = "FCALL";
    av[1] = fk_script_sha(FK_LUA_STOCK_ADD);
    av[2] = "2";
    av[3] = skey;
    av[4] = lkey;
    for (int k = 0; k < 5; k++) al[k] = strlen(av[k]);
    for (size_t i = 0; i < n; i += STOCK_BATCH) {
        size_t m = n - i < STOCK_BATCH ? n - i : STOCK_BATCH;
        /* the codes in the list now, pushed there by hand perhaps, join
         * the ledger once per run, before the first batch */
        av[5] = i == 0 ? "1" : "0";
        al[5] = 1;
        for (size_t k = 0; k < m; k++) {
            av[6 + k] = codes[i + k].s;
            al[6 + k] = codes[i + k].len;
        }
        redisReply *r = fk_ctl_fcall(ctl, &rc, FK_LUA_STOCK_ADD, (int)m + 6, av, al);
        if (!r) {
            if (added || skipped)
                snprintf(ctl->err + strlen(ctl->err), sizeof(ctl->err) - strlen(ctl->err),
                         " (after %zu of %zu codes were added and %zu skipped; run the same"
                         " command again to add the rest)",
                         added, n, skipped);
            goto out;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
            r->element[0]->type != REDIS_REPLY_INTEGER ||
            r->element[1]->type != REDIS_REPLY_INTEGER ||
            r->element[2]->type != REDIS_REPLY_INTEGER) {
            freeReplyObject(r);
            rc = fk_ctl_fail(ctl, FK_EREDIS, "stock add: unexpected reply from Redis");
            goto out;
        }
        added += (size_t)r->element[0]->integer;
        skipped += (size_t)r->element[1]->integer;
        in_stock = r->element[2]->integer;
        freeReplyObject(r);
    }
    if (ctl->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "sku", pos[0]);
        cJSON_AddNumberToObject(j, "added", (double)added);
        cJSON_AddNumberToObject(j, "skipped", (double)skipped);
        cJSON_AddNumberToObject(j, "in_stock", (double)in_stock);
        cJSON_AddBoolToObject(j, "first_use", h.first);
        if (h.first) {
            cJSON *x = cJSON_AddObjectToObject(j, "history");
            cJSON_AddNumberToObject(x, "codes", (double)h.codes);
            cJSON_AddNumberToObject(x, "records", (double)h.records);
            cJSON_AddNumberToObject(x, "records_scanned", (double)h.scanned);
        }
        rc = fk_ctl_print_json(ctl, j);
    } else {
        fprintf(ctl->out, "added %zu codes to %s; %lld in stock\n", added, pos[0], in_stock);
        if (skipped)
            fprintf(ctl->out,
                    "skipped %zu codes this SKU was stocked with before (in stock, reserved"
                    " or sold); each code goes out once\n",
                    skipped);
    }
out:
    free(av);
    free(al);
    free(codes);
    free(buf);
    return rc;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int stock_count(fk_ctl *ctl, int argc, char **argv) {
    const char *pos[1];
    int npos, rc;
    if ((rc = fk_ctl_parse(ctl, "stock count", argc, argv, NULL, 0, pos, 0, 1, &npos)))
        return rc;
    char skey[FK_KEY_MAX];
    if (npos == 1) {
        if ((rc = check_sku(ctl, pos[0]))) return rc;
        fk_key_stock(&ctl->keys, pos[0], skey, sizeof(skey));
        redisReply *r = fk_ctl_cmd(ctl, &rc, "LLEN %s", skey);
        if (!r) return rc;
        long long n = r->integer;
        freeReplyObject(r);
        if (ctl->json) {
            cJSON *j = cJSON_CreateObject(), *s = cJSON_AddObjectToObject(j, "stock");
            cJSON_AddNumberToObject(s, pos[0], (double)n);
            return fk_ctl_print_json(ctl, j);
        }
        fprintf(ctl->out, "%s: %lld\n", pos[0], n);
        return 0;
    }
    /* every {p}:stock:* list */
    char pattern[FK_KEY_MAX], cursor[32] = "0";
    fk_key_stock(&ctl->keys, "*", pattern, sizeof(pattern));
    size_t plen = strlen(pattern) - 1, nkeys = 0, cap = 64;
    char **keys = malloc(cap * sizeof(*keys));
    if (!keys) return fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
    rc = 0;
    do {
        redisReply *r = fk_ctl_cmd(ctl, &rc, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        if (!r) break;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            rc = fk_ctl_fail(ctl, FK_EPROTO, "unexpected SCAN reply");
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements && !rc; i++) {
            if (nkeys == cap) {
                char **nk = realloc(keys, cap * 2 * sizeof(*keys));
                if (!nk) {
                    rc = fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
                    break;
                }
                keys = nk;
                cap *= 2;
            }
            keys[nkeys] = strdup(r->element[1]->element[i]->str);
            if (!keys[nkeys]) rc = fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
            else nkeys++;
        }
        freeReplyObject(r);
    } while (!rc && strcmp(cursor, "0") != 0);
    /* SCAN may return a key twice: sort, then skip repeats */
    if (nkeys) qsort(keys, nkeys, sizeof(*keys), cmp_str);
    cJSON *j = NULL, *s = NULL;
    if (!rc && ctl->json) {
        j = cJSON_CreateObject();
        s = cJSON_AddObjectToObject(j, "stock");
    }
    long long total = 0;
    for (size_t i = 0; i < nkeys && !rc; i++) {
        if (i > 0 && strcmp(keys[i], keys[i - 1]) == 0) continue;
        redisReply *r = fk_ctl_cmd(ctl, &rc, "LLEN %s", keys[i]);
        if (!r) {
            if (rc == FK_EREDIS) rc = 0; /* not a list: not stock */
            continue;
        }
        /* a key name: anything anyone gave RPUSH */
        const char *sku = keys[i] + plen;
        char shown[80];
        total += r->integer; /* list lengths: Redis's own counts */
        if (j) fk_ctl_json_add(s, sku, cJSON_CreateNumber((double)r->integer));
        else fprintf(ctl->out, "%-40s %lld\n", fk_ctl_printable(sku, 64, shown, sizeof(shown)),
                     r->integer);
        freeReplyObject(r);
    }
    for (size_t i = 0; i < nkeys; i++) free(keys[i]);
    free(keys);
    if (rc) {
        cJSON_Delete(j);
        return rc;
    }
    if (j) return fk_ctl_print_json(ctl, j);
    fprintf(ctl->out, "%-40s %lld\n", "total", total);
    return 0;
}

int fk_ctl_stock(fk_ctl *ctl, int argc, char **argv) {
    if (argc < 1)
        return fk_ctl_fail(ctl, FK_EUSAGE, "stock: say `stock add SKU` or `stock count [SKU]`");
    if (strcmp(argv[0], "add") == 0) return stock_add(ctl, argc - 1, argv + 1);
    if (strcmp(argv[0], "count") == 0) return stock_count(ctl, argc - 1, argv + 1);
    char shown[80];
    return fk_ctl_fail(ctl, FK_EUSAGE, "stock: unknown subcommand '%s' (add or count)",
                       fk_ctl_printable(argv[0], 64, shown, sizeof(shown)));
}

/* ---- workers ------------------------------------------------------------ */

typedef struct wrow {
    char id[160];
    long long beat, pending, idle;
    int consumer;
} wrow;

static wrow *row_for(wrow **rows, size_t *n, size_t *cap, const char *id) {
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*rows)[i].id, id) == 0) return &(*rows)[i];
    if (*n == *cap) {
        wrow *nr = realloc(*rows, *cap * 2 * sizeof(**rows));
        if (!nr) return NULL;
        *rows = nr;
        *cap *= 2;
    }
    wrow *w = &(*rows)[(*n)++];
    memset(w, 0, sizeof(*w));
    snprintf(w->id, sizeof(w->id), "%s", id);
    w->beat = w->pending = w->idle = -1;
    return w;
}

int fk_ctl_workers(fk_ctl *ctl, int argc, char **argv) {
    const char *pos[1];
    int npos, rc;
    if ((rc = fk_ctl_parse(ctl, "workers", argc, argv, NULL, 0, pos, 0, 0, &npos))) return rc;
    if ((rc = fk_ctl_connect(ctl))) return rc;
    redisAppendCommand(ctl->c, "ZRANGE %s 0 -1 WITHSCORES", ctl->keys.workers);
    redisAppendCommand(ctl->c, "XINFO CONSUMERS %s %s", ctl->keys.stream, ctl->keys.group);
    redisReply *r[2];
    if ((rc = fk_ctl_pipeline(ctl, r, 2))) return rc;
    size_t n = 0, cap = 16;
    wrow *rows = malloc(cap * sizeof(*rows));
    long long now = fk_now_ms();
    /* the reaper's rule (--worker-ttl-ms): older than this is a dead worker */
    const long long stale_ms = ctl->cfg.worker_ttl_ms;
    if (!rows) {
        rc = fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
        goto out;
    }
    if (r[0]->type == REDIS_REPLY_ERROR) {
        rc = fk_ctl_fail(ctl, FK_EREDIS, "Redis error: %s", r[0]->str);
        goto out;
    }
    for (size_t i = 0; r[0]->type == REDIS_REPLY_ARRAY && i + 1 < r[0]->elements; i += 2) {
        wrow *w = row_for(&rows, &n, &cap, r[0]->element[i]->str);
        if (!w) {
            rc = fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
            goto out;
        }
        w->beat = atoll(r[0]->element[i + 1]->str);
    }
    /* no stream or group yet (an error reply): no consumers */
    for (size_t i = 0; r[1]->type == REDIS_REPLY_ARRAY && i < r[1]->elements; i++) {
        const redisReply *c = r[1]->element[i];
        const char *name = NULL;
        long long pending = 0, idle = 0;
        for (size_t k = 0; c->type == REDIS_REPLY_ARRAY && k + 1 < c->elements; k += 2) {
            const char *f = c->element[k]->str;
            const redisReply *v = c->element[k + 1];
            if (!f) continue;
            if (strcmp(f, "name") == 0 && v->type == REDIS_REPLY_STRING) name = v->str;
            else if (strcmp(f, "pending") == 0) pending = v->integer;
            else if (strcmp(f, "idle") == 0) idle = v->integer;
        }
        if (!name) continue;
        wrow *w = row_for(&rows, &n, &cap, name);
        if (!w) {
            rc = fk_ctl_fail(ctl, FK_ENOMEM, "out of memory");
            goto out;
        }
        w->consumer = 1;
        w->pending = pending;
        w->idle = idle;
    }
    long long alive = 0;
    for (size_t i = 0; i < n; i++) alive += rows[i].beat >= 0 && now - rows[i].beat < stale_ms;
    if (ctl->json) {
        cJSON *j = cJSON_CreateObject(), *arr;
        cJSON_AddNumberToObject(j, "alive", (double)alive);
        arr = cJSON_AddArrayToObject(j, "workers");
        for (size_t i = 0; i < n; i++) {
            cJSON *x = cJSON_CreateObject();
            /* a heartbeat member or consumer name: anything in Redis */
            fk_ctl_json_add(x, "id", fk_ctl_json_str(rows[i].id, strlen(rows[i].id)));
            if (rows[i].beat >= 0) {
                cJSON_AddNumberToObject(x, "heartbeat", (double)rows[i].beat);
                cJSON_AddNumberToObject(x, "heartbeat_age_ms", (double)(now - rows[i].beat));
            } else {
                cJSON_AddNullToObject(x, "heartbeat");
                cJSON_AddNullToObject(x, "heartbeat_age_ms");
            }
            cJSON_AddBoolToObject(x, "alive",
                                  rows[i].beat >= 0 && now - rows[i].beat < stale_ms);
            cJSON_AddBoolToObject(x, "consumer", rows[i].consumer);
            cJSON_AddNumberToObject(x, "pending", (double)(rows[i].pending < 0 ? 0 : rows[i].pending));
            if (rows[i].idle >= 0) cJSON_AddNumberToObject(x, "idle_ms", (double)rows[i].idle);
            else cJSON_AddNullToObject(x, "idle_ms");
            cJSON_AddItemToArray(arr, x);
        }
        rc = fk_ctl_print_json(ctl, j);
        goto out;
    }
    fprintf(ctl->out, "%lld of %zu workers alive (heartbeat within %.1f s, --worker-ttl-ms)\n",
            alive, n, stale_ms / 1000.0);
    if (n)
        fprintf(ctl->out, "  %-36s %-7s %14s %9s %12s\n", "worker", "status", "heartbeat age",
                "pending", "idle");
    for (size_t i = 0; i < n; i++) {
        char age[32] = "-", idle[32] = "-";
        if (rows[i].beat >= 0) snprintf(age, sizeof(age), "%.1f s", (now - rows[i].beat) / 1000.0);
        if (rows[i].idle >= 0) snprintf(idle, sizeof(idle), "%.1f s", rows[i].idle / 1000.0);
        const char *st = rows[i].beat < 0 ? "no-beat"
                         : now - rows[i].beat < stale_ms ? "alive"
                                                                   : "stale";
        char id[80];
        fprintf(ctl->out, "  %-36s %-7s %14s %9lld %12s\n",
                fk_ctl_printable(rows[i].id, 64, id, sizeof(id)), st, age,
                rows[i].pending < 0 ? 0 : rows[i].pending, idle);
    }
    rc = 0;
out:
    free(rows);
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    return rc;
}
