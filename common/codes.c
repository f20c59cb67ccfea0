/* codes.c -- split and check the card codes of `fakactl stock add` (see
 * codes.h). */
#include "codes.h"

#include "err.h"
#include "utf8.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD_SHOWN 5   /* bad lines named in the message */

static uint64_t hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* Index of an earlier code equal to codes[i], or -1 after adding i; slots has
 * cap entries (a power of two, > 2 * codes), each an index + 1 or 0. */
static long find_or_add(size_t *slots, size_t cap, const fk_code *codes, size_t i) {
    size_t k = (size_t)hash(codes[i].s, codes[i].len) & (cap - 1);
    for (; slots[k]; k = (k + 1) & (cap - 1)) {
        const fk_code *o = &codes[slots[k] - 1];
        if (o->len == codes[i].len && memcmp(o->s, codes[i].s, o->len) == 0)
            return (long)(slots[k] - 1);
    }
    slots[k] = i + 1;
    return -1;
}

/* Why a trimmed, non-empty line is not a code, or NULL. */
static const char *bad_code(const char *s, size_t l) {
    if (l > FK_CODE_MAX) return "longer than 256 bytes";
    if (!fk_utf8_valid(s, l)) return "not valid UTF-8";
    for (size_t i = 0; i < l; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return "control character";
    return NULL;
}

/* Append "line N: why" to the list of bad lines, up to BAD_SHOWN of them. */
static void note_bad(char *errs, size_t cap, size_t *bad, size_t line, const char *why,
                     size_t same_as) {
    if ((*bad)++ >= BAD_SHOWN) return;
    size_t el = strlen(errs);
    if (why)
        snprintf(errs + el, cap - el, "%sline %zu: %s", el ? "; " : "", line, why);
    else
        snprintf(errs + el, cap - el, "%sline %zu: the same code as line %zu",
                 el ? "; " : "", line, same_as);
}

int fk_codes_parse(const char *buf, size_t len, fk_code **out, size_t *n, char *err,
                   size_t errlen) {
    size_t cap = 1024, cnt = 0, bad = 0, line = 0, at = 0;
    fk_code *codes = malloc(cap * sizeof(*codes));
    size_t *lines = malloc(cap * sizeof(*lines));
    size_t *slots = NULL;
    char errs[600] = "";
    int rc = FK_ENOMEM;

    *out = NULL;
    *n = 0;
    snprintf(err, errlen, "out of memory");
    if (!codes || !lines) goto fail;
    while (at < len) {
        const char *s = buf + at, *nl = memchr(s, '\n', len - at);
        size_t l = nl ? (size_t)(nl - s) : len - at;
        at += l + (nl ? 1 : 0);
        line++;
        while (l > 0 && (s[l - 1] == '\r' || s[l - 1] == ' ')) l--;
        while (l > 0 && s[0] == ' ') {
            s++;
            l--;
        }
        if (l == 0) continue;
        const char *why = bad_code(s, l);
        if (why) {
            note_bad(errs, sizeof(errs), &bad, line, why, 0);
            continue;
        }
        if (cnt == cap) {
            fk_code *nc = realloc(codes, cap * 2 * sizeof(*codes));
            if (!nc) goto fail;
            codes = nc;
            size_t *nlines = realloc(lines, cap * 2 * sizeof(*lines));
            if (!nlines) goto fail;
            lines = nlines;
            cap *= 2;
        }
        codes[cnt].s = s;
        codes[cnt].len = l;
        lines[cnt] = line;
        cnt++;
    }

    size_t hcap = 16;
    while (hcap < cnt * 2 + 2) hcap *= 2;
    if (!(slots = calloc(hcap, sizeof(*slots)))) goto fail;
    for (size_t i = 0; i < cnt; i++) {
        long prev = find_or_add(slots, hcap, codes, i);
        if (prev >= 0) note_bad(errs, sizeof(errs), &bad, lines[i], NULL, lines[prev]);
    }

    if (bad) {
        rc = FK_EINVAL;
        snprintf(err, errlen, "%zu bad line%s, nothing added: %s%s", bad,
                 bad == 1 ? "" : "s", errs, bad > BAD_SHOWN ? "; ..." : "");
        goto fail;
    }
    if (cnt == 0) {
        rc = FK_EUSAGE;
        snprintf(err, errlen, "no codes on stdin (one per line)");
        goto fail;
    }
    free(slots);
    free(lines);
    *out = codes;
    *n = cnt;
    err[0] = '\0';
    return 0;

fail:
    free(slots);
    free(lines);
    free(codes);
    return rc;
}
