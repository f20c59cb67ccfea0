/* fuzz_codes.c -- libFuzzer target for fk_codes_parse, the splitter of the
 * card codes `fakactl stock add` reads from stdin.
 *
 * The input is the stdin. Besides "never crash", every accepted code must be
 * a trimmed slice of one input line, 1..FK_CODE_MAX bytes of well-formed
 * UTF-8 without control characters, the codes in input order and all
 * different, one per non-blank line; and the verdict must match a plain
 * reference reading of the lines (accepted only when no line is bad, no code
 * repeats and at least one is there). The reason is one bounded line.
 * Built only with -Dfuzz=true (see scripts/fuzz). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codes.h"
#include "err.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "fuzz_codes: check failed: %s (line %d)\n", #cond,  \
                    __LINE__);                                                  \
            abort();                                                            \
        }                                                                       \
    } while (0)

static int clean(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static int cmp_code(const void *a, const void *b)
{
    const fk_code *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* The reference reading: lines, trimmed, blank ones skipped. */
static void reference(const char *buf, size_t len, size_t *lines, size_t *bad)
{
    size_t at = 0;

    *lines = *bad = 0;
    while (at < len) {
        const char *s = buf + at, *nl = memchr(s, '\n', len - at);
        size_t l = nl ? (size_t)(nl - s) : len - at;

        at += l + (nl != NULL);
        while (l && (s[l - 1] == '\r' || s[l - 1] == ' '))
            l--;
        while (l && *s == ' ')
            s++, l--;
        if (!l)
            continue;
        (*lines)++;
        if (l > FK_CODE_MAX || !fk_utf8_valid(s, l) || !clean(s, l))
            (*bad)++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size heap copy, so ASan catches any read past the end */
    char *buf = malloc(size ? size : 1);
    char err[300];
    fk_code *codes = (fk_code *)&err;   /* must be reset on failure */
    size_t n = 12345, lines, bad;
    int rc;

    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    rc = fk_codes_parse(buf, size, &codes, &n, err, sizeof err);
    CHECK(memchr(err, '\0', sizeof err) != NULL);
    CHECK(clean(err, strlen(err)));
    reference(buf, size, &lines, &bad);

    if (rc == 0) {
        CHECK(err[0] == '\0');
        CHECK(bad == 0 && n == lines && n > 0);
        for (size_t i = 0; i < n; i++) {
            const fk_code *c = &codes[i];

            CHECK(c->s >= buf && c->len >= 1 && c->len <= FK_CODE_MAX);
            CHECK((size_t)(c->s - buf) + c->len <= size);
            CHECK(i == 0 || c->s >= codes[i - 1].s + codes[i - 1].len);
            CHECK(fk_utf8_valid(c->s, c->len) && clean(c->s, c->len));
            CHECK(c->s[0] != ' ' && c->s[c->len - 1] != ' ');
        }
        qsort(codes, n, sizeof(*codes), cmp_code);
        for (size_t i = 1; i < n; i++)
            CHECK(cmp_code(&codes[i - 1], &codes[i]) != 0);
        free(codes);
    } else {
        CHECK(codes == NULL && n == 0 && err[0] != '\0');
        if (rc == FK_EUSAGE)
            CHECK(lines == 0);
        else if (rc == FK_EINVAL)
            /* a bad line, or else two equal codes (more lines than one) */
            CHECK(bad > 0 || lines > 1);
        else
            CHECK(rc == FK_ENOMEM);
    }
    free(buf);
    return 0;
}
