/* order.c -- the order codec: strict decoding of `order` and `payment` stream
 * entries, canonical encoding of an order (contract in order.h).
 *
 * A value goes through four gates, cheapest first:
 *   1. raw bytes: size, no NUL byte, well-formed UTF-8;
 *   2. a strict RFC 8259 scanner of our own (scan_value), which also records
 *      the depth-1 members we care about: how often each known key occurs,
 *      the kind and the token of its value. cJSON alone is too lenient for
 *      outside input: it takes any byte <= 0x20 as whitespace, a BOM, raw
 *      control characters in strings, "01", "1.", "\uZZZZ" (as U+0000), and it
 *      drops the number token, so "2.0" and "2" look the same to it;
 *   3. cJSON, for the decoded strings (lookups are case-sensitive only);
 *   4. the field rules.
 * The scanner accepts a subset of what cJSON accepts (it also refuses numbers
 * cJSON cannot hold and nests no deeper than cJSON does), so a cJSON failure
 * after the scanner passed can only be an allocation failure. */
#include "order.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "utf8.h"

/* Deepest nesting of arrays/objects we accept (the top-level object is 1).
 * Well below cJSON's CJSON_NESTING_LIMIT, so cJSON never refuses what the
 * scanner passed, and plenty for any shop's metadata. */
#define FK_JSON_DEPTH_MAX 512
_Static_assert(FK_JSON_DEPTH_MAX < CJSON_NESTING_LIMIT, "cJSON must nest deeper than we do");

/* cJSON copies a number token into a 64-byte buffer and fails on longer ones. */
#define FK_JSON_NUMBER_MAX 63

/* ---- error text ---------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- strict JSON scanner ------------------------------------------------- */

enum jkind { J_NONE = 0, J_STRING, J_NUMBER, J_OBJECT, J_ARRAY, J_TRUE, J_FALSE, J_NULL };

/* One known key of the top-level object, as seen by the scanner. */
struct jfield {
    const char *name;
    int count;          /* occurrences as a depth-1 key */
    enum jkind kind;    /* kind of the first occurrence's value */
    size_t vpos;        /* first occurrence's value token: offset ... */
    size_t vlen;        /* ... and length (1 for containers: just the bracket) */
    int has_nul;        /* that value is a string containing \u0000 */
};

struct scan {
    const unsigned char *s;
    size_t n;
    size_t p;
    struct jfield *f;   /* known keys, recorded for the top-level object */
    size_t nf;
    enum jkind root;    /* kind of the top-level value */
    int lenient;        /* raw control bytes in strings pass (sniff_order_id) */
    char *err;
    size_t errlen;
};

/* What the scanner expects next. */
enum want {
    W_VALUE,            /* a value: at the start, after ':', after ',' in an array */
    W_VALUE_OR_CLOSE,   /* after '[' */
    W_KEY_OR_CLOSE,     /* after '{' */
    W_KEY,              /* after ',' in an object */
    W_COLON,            /* after a key */
    W_COMMA_OR_CLOSE,   /* after a value inside a container */
    W_END,              /* after the top-level value: whitespace only */
};

static const char *kind_name(enum jkind k)
{
    switch (k) {
    case J_STRING: return "a string";
    case J_NUMBER: return "a number";
    case J_OBJECT: return "an object";
    case J_ARRAY:  return "an array";
    case J_TRUE:   return "true";
    case J_FALSE:  return "false";
    case J_NULL:   return "null";
    case J_NONE:   break;
    }
    return "nothing";
}

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Characters cJSON would swallow into a number token. */
static int is_num_char(unsigned char c)
{
    return is_digit(c) || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E';
}

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parse the 4 hex digits of a \u escape at s[p..p+4); -1 if malformed. */
static long hex4(const unsigned char *s, size_t n, size_t p)
{
    long v = 0;
    size_t i;

    if (n - p < 4)
        return -1;
    for (i = 0; i < 4; i++) {
        int h = hex_val(s[p + i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

static int scan_fail(struct scan *sc, const char *what, size_t at)
{
    set_err(sc->err, sc->errlen, "value is not valid JSON: %s at byte %zu", what, at);
    return -1;
}

/* Scan the string token at s[p] == '"'; leave p after the closing quote.
 * Raw control characters, unknown escapes, malformed \u escapes and unpaired
 * surrogate escapes are errors. Sets *has_nul if an escape decodes to U+0000
 * and *has_esc if there is any escape. */
static int scan_string(struct scan *sc, int *has_nul, int *has_esc)
{
    const unsigned char *s = sc->s;
    size_t n = sc->n, p = sc->p + 1;

    *has_nul = 0;
    *has_esc = 0;
    for (;;) {
        unsigned char c;

        if (p >= n)
            return scan_fail(sc, "unterminated string", sc->p);
        c = s[p];
        if (c == '"')
            break;
        if (c < 0x20 && !sc->lenient)
            return scan_fail(sc, "raw control character in a string", p);
        if (c != '\\') {
            p++;
            continue;
        }
        *has_esc = 1;
        if (p + 1 >= n)
            return scan_fail(sc, "unterminated string", sc->p);
        switch (s[p + 1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            p += 2;
            break;
        case 'u': {
            long cp = hex4(s, n, p + 2);
            if (cp < 0)
                return scan_fail(sc, "malformed \\u escape", p);
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return scan_fail(sc, "unpaired surrogate escape", p);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                long lo;
                if (n - (p + 6) < 6 || s[p + 6] != '\\' || s[p + 7] != 'u')
                    return scan_fail(sc, "unpaired surrogate escape", p);
                lo = hex4(s, n, p + 8);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return scan_fail(sc, "unpaired surrogate escape", p);
                p += 12;
            } else {
                if (cp == 0)
                    *has_nul = 1;
                p += 6;
            }
            break;
        }
        default:
            return scan_fail(sc, "invalid escape in a string", p);
        }
    }
    sc->p = p + 1;
    return 0;
}

/* Scan a number token at s[p] (a '-' or a digit) by RFC 8259's grammar:
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int scan_number(struct scan *sc)
{
    const unsigned char *s = sc->s;
    size_t n = sc->n, p = sc->p, start = sc->p;

    if (p < n && s[p] == '-')
        p++;
    if (p < n && s[p] == '0')
        p++;
    else if (p < n && s[p] >= '1' && s[p] <= '9')
        while (p < n && is_digit(s[p]))
            p++;
    else
        return scan_fail(sc, "malformed number", start);
    if (p < n && s[p] == '.') {
        p++;
        if (p >= n || !is_digit(s[p]))
            return scan_fail(sc, "malformed number", start);
        while (p < n && is_digit(s[p]))
            p++;
    }
    if (p < n && (s[p] == 'e' || s[p] == 'E')) {
        p++;
        if (p < n && (s[p] == '+' || s[p] == '-'))
            p++;
        if (p >= n || !is_digit(s[p]))
            return scan_fail(sc, "malformed number", start);
        while (p < n && is_digit(s[p]))
            p++;
    }
    if (p < n && is_num_char(s[p]))
        return scan_fail(sc, "malformed number", start);
    if (p - start > FK_JSON_NUMBER_MAX)
        return scan_fail(sc, "number longer than 63 characters", start);
    sc->p = p;
    return 0;
}

/* Append code point cp as UTF-8 to buf[*k..cap); 0, or -1 if it does not fit. */
static int put_utf8(char *buf, size_t cap, size_t *k, unsigned long cp)
{
    unsigned char u[4];
    size_t m, i;

    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        m = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        m = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        m = 3;
    } else {
        u[0] = (unsigned char)(0xF0 | (cp >> 18));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (unsigned char)(0x80 | (cp & 0x3F));
        m = 4;
    }
    if (cap - *k < m)
        return -1;
    for (i = 0; i < m; i++)
        buf[(*k)++] = (char)u[i];
    return 0;
}

/* Decode the inner bytes of a string token that scan_string accepted into
 * buf (not NUL-terminated). Returns the decoded length, or cap + 1 if it
 * would not fit (then it matches no known key). */
static size_t decode_key(const unsigned char *s, size_t n, char *buf, size_t cap)
{
    size_t p = 0, k = 0;

    while (p < n) {
        unsigned long cp;

        if (s[p] != '\\') {
            if (k >= cap)
                return cap + 1;
            buf[k++] = (char)s[p++];
            continue;
        }
        switch (s[p + 1]) {
        case 'b': cp = '\b'; p += 2; break;
        case 'f': cp = '\f'; p += 2; break;
        case 'n': cp = '\n'; p += 2; break;
        case 'r': cp = '\r'; p += 2; break;
        case 't': cp = '\t'; p += 2; break;
        case 'u':
            cp = (unsigned long)hex4(s, n, p + 2);
            p += 6;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned long lo = (unsigned long)hex4(s, n, p + 2);
                cp = 0x10000 + (((cp & 0x3FF) << 10) | (lo & 0x3FF));
                p += 6;
            }
            break;
        default:    /* '"', '\\', '/' */
            cp = s[p + 1];
            p += 2;
            break;
        }
        if (put_utf8(buf, cap, &k, cp) != 0)
            return cap + 1;
    }
    return k;
}

/* The known field a depth-1 key token (quotes included) names, or NULL. */
static struct jfield *match_key(struct scan *sc, size_t tok, size_t toklen, int has_esc)
{
    char buf[32];
    const char *key = (const char *)sc->s + tok + 1;
    size_t keylen = toklen - 2, i;

    if (has_esc) {
        keylen = decode_key(sc->s + tok + 1, toklen - 2, buf, sizeof buf);
        if (keylen > sizeof buf)
            return NULL;
        key = buf;
    }
    for (i = 0; i < sc->nf; i++)
        if (strlen(sc->f[i].name) == keylen && memcmp(sc->f[i].name, key, keylen) == 0)
            return &sc->f[i];
    return NULL;
}

static void note_value(struct jfield *f, enum jkind kind, size_t pos, size_t len, int has_nul)
{
    if (f == NULL || f->count != 1)
        return;
    f->kind = kind;
    f->vpos = pos;
    f->vlen = len;
    f->has_nul = has_nul;
}

/* Scan the whole value s[0..n) (already known to be UTF-8 without NUL bytes,
 * unless sc->lenient: then strings may hold any bytes) as one strict JSON
 * text. Records the root's kind and, if the root is an
 * object, the depth-1 occurrences of the known keys in sc->f. Returns 0, or
 * -1 with a message in sc->err. Iterative: no recursion however deep the
 * input nests. */
static int scan_value(struct scan *sc)
{
    unsigned char stack[FK_JSON_DEPTH_MAX];   /* '{' or '[' per open container */
    size_t depth = 0;
    enum want want = W_VALUE;
    struct jfield *cur = NULL;                /* known key whose value comes next */
    const unsigned char *s = sc->s;

    sc->p = 0;
    sc->root = J_NONE;
    if (sc->n >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF)
        return scan_fail(sc, "byte order mark", 0);

    for (;;) {
        unsigned char c;
        size_t start;
        int has_nul = 0, has_esc = 0;
        enum jkind kind;
        struct jfield *field;

        while (sc->p < sc->n && is_ws(s[sc->p]))
            sc->p++;
        if (sc->p >= sc->n)
            break;
        c = s[sc->p];
        start = sc->p;

        switch (want) {
        case W_END:
            set_err(sc->err, sc->errlen,
                    "value is not valid JSON: trailing data after the top-level value at byte %zu",
                    start);
            return -1;

        case W_COLON:
            if (c != ':')
                return scan_fail(sc, "expected ':'", start);
            sc->p++;
            want = W_VALUE;
            continue;

        case W_COMMA_OR_CLOSE:
            if (c == ',') {
                sc->p++;
                want = stack[depth - 1] == '{' ? W_KEY : W_VALUE;
                continue;
            }
            if (c != (stack[depth - 1] == '{' ? '}' : ']'))
                return scan_fail(sc, "expected ',' or the end of the container", start);
            sc->p++;
            depth--;
            want = depth == 0 ? W_END : W_COMMA_OR_CLOSE;
            continue;

        case W_KEY_OR_CLOSE:
        case W_KEY:
            if (c == '}' && want == W_KEY_OR_CLOSE) {
                sc->p++;
                depth--;
                want = depth == 0 ? W_END : W_COMMA_OR_CLOSE;
                continue;
            }
            if (c != '"')
                return scan_fail(sc, "expected a string key", start);
            if (scan_string(sc, &has_nul, &has_esc) != 0)
                return -1;
            if (depth == 1) {   /* depth 1 and a key: the root is an object */
                if (has_nul) {
                    set_err(sc->err, sc->errlen,
                            "value has a top-level key containing \\u0000 at byte %zu", start);
                    return -1;
                }
                cur = match_key(sc, start, sc->p - start, has_esc);
                if (cur != NULL)
                    cur->count++;
            }
            want = W_COLON;
            continue;

        case W_VALUE_OR_CLOSE:
            if (c == ']') {
                sc->p++;
                depth--;
                want = depth == 0 ? W_END : W_COMMA_OR_CLOSE;
                continue;
            }
            break;

        case W_VALUE:
            break;
        }

        /* A value. It belongs to a known field if it is a depth-1 member. */
        field = (depth == 1 && stack[0] == '{') ? cur : NULL;
        if (c == '{' || c == '[') {
            if (depth == FK_JSON_DEPTH_MAX) {
                set_err(sc->err, sc->errlen, "value nests deeper than %d levels",
                        FK_JSON_DEPTH_MAX);
                return -1;
            }
            kind = c == '{' ? J_OBJECT : J_ARRAY;
            if (depth == 0)
                sc->root = kind;
            note_value(field, kind, start, 1, 0);
            stack[depth++] = c;
            sc->p++;
            want = c == '{' ? W_KEY_OR_CLOSE : W_VALUE_OR_CLOSE;
            continue;
        }
        if (c == '"') {
            if (scan_string(sc, &has_nul, &has_esc) != 0)
                return -1;
            kind = J_STRING;
        } else if (c == '-' || is_digit(c)) {
            if (scan_number(sc) != 0)
                return -1;
            kind = J_NUMBER;
        } else if (sc->n - start >= 4 && memcmp(s + start, "true", 4) == 0) {
            sc->p += 4;
            kind = J_TRUE;
        } else if (sc->n - start >= 5 && memcmp(s + start, "false", 5) == 0) {
            sc->p += 5;
            kind = J_FALSE;
        } else if (sc->n - start >= 4 && memcmp(s + start, "null", 4) == 0) {
            sc->p += 4;
            kind = J_NULL;
        } else {
            return scan_fail(sc, "unexpected character", start);
        }
        if (depth == 0)
            sc->root = kind;
        note_value(field, kind, start, sc->p - start, has_nul);
        want = depth == 0 ? W_END : W_COMMA_OR_CLOSE;
    }

    if (want != W_END)
        return scan_fail(sc, "unexpected end", sc->n);
    return 0;
}

/* ---- decoding ------------------------------------------------------------ */

/* A value being decoded: the scanner's findings and cJSON's tree. */
struct dec {
    struct jfield *f;
    size_t nf;
    char *buf;          /* NUL-terminated copy of the value, for cJSON */
    cJSON *root;
    char *err;
    size_t errlen;
};

static void dec_close(struct dec *d)
{
    cJSON_Delete(d->root);
    free(d->buf);
    d->root = NULL;
    d->buf = NULL;
}

/* Run gates 1-3 on raw[0..len) for the known keys names[0..nf) (f must have
 * room for nf). Returns 0 with d open (close it with dec_close), or
 * FK_EINVAL / FK_ENOMEM with the reason in err and nothing to close. */
static int dec_open(struct dec *d, const char *raw, size_t len, struct jfield *f,
                    const char *const *names, size_t nf, char *err, size_t errlen)
{
    struct scan sc;
    size_t i, bad;

    memset(d, 0, sizeof *d);
    d->f = f;
    d->nf = nf;
    d->err = err;
    d->errlen = errlen;
    for (i = 0; i < nf; i++) {
        memset(&f[i], 0, sizeof f[i]);
        f[i].name = names[i];
    }

    if (raw == NULL || len == 0) {
        set_err(err, errlen, "value is empty");
        return FK_EINVAL;
    }
    if (len > FK_ENTRY_MAX) {
        set_err(err, errlen, "value exceeds %d bytes", FK_ENTRY_MAX);
        return FK_EINVAL;
    }
    if (memchr(raw, '\0', len) != NULL) {
        set_err(err, errlen, "value contains a NUL byte at byte %zu",
                (size_t)((const char *)memchr(raw, '\0', len) - raw));
        return FK_EINVAL;
    }
    bad = fk_utf8_valid_prefix(raw, len);
    if (bad != len) {
        set_err(err, errlen, "value is not valid UTF-8 (first bad byte at %zu)", bad);
        return FK_EINVAL;
    }

    memset(&sc, 0, sizeof sc);
    sc.s = (const unsigned char *)raw;
    sc.n = len;
    sc.f = f;
    sc.nf = nf;
    sc.err = err;
    sc.errlen = errlen;
    if (scan_value(&sc) != 0)
        return FK_EINVAL;
    if (sc.root != J_OBJECT) {
        set_err(err, errlen, "value must be a JSON object, not %s", kind_name(sc.root));
        return FK_EINVAL;
    }

    /* cJSON reads a NUL-terminated copy: no reliance on its length checks. */
    d->buf = malloc(len + 1);
    if (d->buf == NULL) {
        set_err(err, errlen, "out of memory while decoding the value");
        return FK_ENOMEM;
    }
    memcpy(d->buf, raw, len);
    d->buf[len] = '\0';
    d->root = cJSON_ParseWithLengthOpts(d->buf, len, NULL, 0);
    if (d->root == NULL) {
        dec_close(d);
        set_err(err, errlen, "out of memory while decoding the value");
        return FK_ENOMEM;
    }
    return 0;
}

/* Field i as a string. Returns 1 and sets *s, *n if present; 0 if absent;
 * -1 with the reason in err if present but not a usable string. */
static int str_field(struct dec *d, size_t i, const char **s, size_t *n)
{
    const struct jfield *f = &d->f[i];
    const cJSON *item;

    if (f->count == 0)
        return 0;
    if (f->count > 1) {
        set_err(d->err, d->errlen, "%s appears more than once", f->name);
        return -1;
    }
    if (f->kind != J_STRING) {
        set_err(d->err, d->errlen, "%s must be a string, not %s", f->name, kind_name(f->kind));
        return -1;
    }
    if (f->has_nul) {
        set_err(d->err, d->errlen, "%s must not contain \\u0000", f->name);
        return -1;
    }
    item = cJSON_GetObjectItemCaseSensitive(d->root, f->name);
    if (!cJSON_IsString(item) || item->valuestring == NULL) {
        /* The scanner and cJSON disagree: should not happen; refuse safely. */
        set_err(d->err, d->errlen, "%s could not be decoded", f->name);
        return -1;
    }
    *s = item->valuestring;
    *n = strlen(*s);
    if (!fk_utf8_valid(*s, *n)) {
        set_err(d->err, d->errlen, "%s is not valid UTF-8", f->name);
        return -1;
    }
    return 1;
}

/* Field i as a JSON integer within [lo, hi] (lo >= 0). Returns 0 and sets *v,
 * or -1 with the reason in err. */
static int int_field(struct dec *d, size_t i, long long lo, long long hi, long long *v)
{
    const struct jfield *f = &d->f[i];
    const unsigned char *t = (const unsigned char *)d->buf + f->vpos;
    long long x = 0;
    size_t k;

    if (f->count == 0) {
        set_err(d->err, d->errlen, "%s is required", f->name);
        return -1;
    }
    if (f->count > 1) {
        set_err(d->err, d->errlen, "%s appears more than once", f->name);
        return -1;
    }
    if (f->kind != J_NUMBER) {
        set_err(d->err, d->errlen, "%s must be an integer from %lld to %lld, not %s",
                f->name, lo, hi, kind_name(f->kind));
        return -1;
    }
    for (k = 0; k < f->vlen; k++) {
        if (t[k] == '.' || t[k] == 'e' || t[k] == 'E') {
            set_err(d->err, d->errlen,
                    "%s must be an integer from %lld to %lld, written without fraction or exponent",
                    f->name, lo, hi);
            return -1;
        }
    }
    /* Any '-' (including "-0") is below lo >= 0. The scanner guarantees the
     * token is digits otherwise, without leading zeros. */
    if (t[0] == '-' || f->vlen > 18)
        goto range;
    for (k = 0; k < f->vlen; k++)
        x = x * 10 + (t[k] - '0');
    if (x < lo || x > hi)
        goto range;
    *v = x;
    return 0;
range:
    set_err(d->err, d->errlen, "%s must be an integer from %lld to %lld", f->name, lo, hi);
    return -1;
}

/* "." and ".." are path segments that HTTP clients and servers resolve
 * away: GET {gateway}/charges/.. is GET {gateway}/, whose 404 would be
 * taken as "no charge for this key". Neither an order id nor an
 * idempotency key may be one. */
static int dot_segment(const char *s, size_t n)
{
    return (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

static int valid_order_id(const char *s, size_t n)
{
    size_t i;

    if (n < 1 || n > FK_ORDER_ID_MAX || dot_segment(s, n))
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

int fk_order_id_valid(const char *s)
{
    return s != NULL && valid_order_id(s, strnlen(s, FK_ORDER_ID_MAX + 1));
}

static int visible_ascii(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

/* No C0 control character and no DEL. UTF-8 multi-byte sequences contain
 * no byte below 0x80, so a byte test is exact. */
static int no_controls(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return 0;
    return 1;
}

/* The required order_id, field i, into id (size FK_ORDER_ID_MAX + 1).
 * Returns 0, or -1 with the reason in err. */
static int order_id_field(struct dec *d, size_t i, char *id)
{
    const char *s;
    size_t n;
    int r = str_field(d, i, &s, &n);

    if (r < 0)
        return -1;
    if (r == 0) {
        set_err(d->err, d->errlen, "order_id is required");
        return -1;
    }
    if (!valid_order_id(s, n)) {
        set_err(d->err, d->errlen,
                "order_id must be 1 to %d characters of A-Z a-z 0-9 _ . : -, and not . or ..",
                FK_ORDER_ID_MAX);
        return -1;
    }
    memcpy(id, s, n);
    id[n] = '\0';
    return 0;
}

/* The first known key (other than those already checked) that occurs twice:
 * a duplicate makes the value ambiguous. Returns 0, or -1 with the reason. */
static int no_duplicates(struct dec *d)
{
    size_t i;

    for (i = 0; i < d->nf; i++) {
        if (d->f[i].count > 1) {
            set_err(d->err, d->errlen, "%s appears more than once", d->f[i].name);
            return -1;
        }
    }
    return 0;
}

/* ---- order --------------------------------------------------------------- */

enum { O_ORDER_ID, O_IDEM, O_SKU, O_QTY, O_AMOUNT, O_CURRENCY, O_BUYER, O_NFIELDS };

static const char *const order_keys[O_NFIELDS] = {
    "order_id", "idempotency_key", "sku", "qty", "amount", "currency", "buyer",
};

/* ---- reading the id of a refused order ---------------------------------- */

#define SNIFF_MAX (1024 * 1024)  /* bytes: longer values stay anonymous */

/* The order_id of a value the decoder refused, into id_out ("" if none can
 * be read without doubt), so that the order gets its failed/invalid_order
 * record and the shop finds a final state under the id it sent. Refused
 * values are often a real order with one bad field: a buyer name in GBK
 * rather than UTF-8, a raw newline in an address, a long note. So the value
 * is scanned as strict JSON except that strings may hold any raw bytes, up
 * to SNIFF_MAX bytes; the id is read only if the root is an object with
 * exactly one depth-1 "order_id", a string without escapes whose bytes are
 * a valid order id. */
static void sniff_order_id(const char *raw, size_t len, char *id_out)
{
    struct jfield f[O_NFIELDS];
    struct scan sc;
    char err[8];
    size_t i;

    id_out[0] = '\0';
    if (raw == NULL || len == 0 || len > SNIFF_MAX)
        return;
    for (i = 0; i < O_NFIELDS; i++) {
        memset(&f[i], 0, sizeof f[i]);
        f[i].name = order_keys[i];
    }
    memset(&sc, 0, sizeof sc);
    sc.s = (const unsigned char *)raw;
    sc.n = len;
    sc.f = f;
    sc.nf = O_NFIELDS;
    sc.lenient = 1;
    sc.err = err;
    sc.errlen = sizeof err;
    if (scan_value(&sc) != 0 || sc.root != J_OBJECT)
        return;
    const struct jfield *id = &f[O_ORDER_ID];
    /* the token with its quotes; a backslash is no id character, so an
     * escaped id fails valid_order_id */
    if (id->count != 1 || id->kind != J_STRING || id->vlen < 2)
        return;
    if (!valid_order_id(raw + id->vpos + 1, id->vlen - 2))
        return;
    memcpy(id_out, raw + id->vpos + 1, id->vlen - 2);
    id_out[id->vlen - 2] = '\0';
}

int fk_order_decode(const char *raw, size_t len, fk_order *out, char *err, size_t errlen, char *id_out)
{
    struct jfield f[O_NFIELDS];
    struct dec d;
    fk_order o;
    const char *s;
    size_t n;
    long long v;
    int r, rc;

    if (id_out != NULL)
        id_out[0] = '\0';
    set_err(err, errlen, "%s", "");
    rc = dec_open(&d, raw, len, f, order_keys, O_NFIELDS, err, errlen);
    if (rc != 0) {
        if (rc == FK_EINVAL && id_out != NULL)
            sniff_order_id(raw, len, id_out);
        return rc;
    }

    memset(&o, 0, sizeof o);
    rc = FK_EINVAL;
    if (order_id_field(&d, O_ORDER_ID, o.order_id) != 0)
        goto done;
    if (id_out != NULL)
        memcpy(id_out, o.order_id, sizeof o.order_id);
    if (no_duplicates(&d) != 0)
        goto done;

    r = str_field(&d, O_IDEM, &s, &n);
    if (r < 0)
        goto done;
    if (r == 0) {
        memcpy(o.idem_key, o.order_id, sizeof o.order_id);
    } else {
        if (n < 1 || n > FK_IDEM_KEY_MAX || !visible_ascii(s, n) || dot_segment(s, n)) {
            set_err(err, errlen,
                    "idempotency_key must be 1 to %d characters of visible ASCII (0x21-0x7e),"
                    " and not . or ..",
                    FK_IDEM_KEY_MAX);
            goto done;
        }
        memcpy(o.idem_key, s, n);
    }

    r = str_field(&d, O_SKU, &s, &n);
    if (r < 0)
        goto done;
    if (r == 0) {
        set_err(err, errlen, "sku is required");
        goto done;
    }
    if (n == 0 || fk_utf8_count(s, n) > FK_SKU_MAX_CHARS) {
        set_err(err, errlen, "sku must be 1 to %d characters", FK_SKU_MAX_CHARS);
        goto done;
    }
    if (!no_controls(s, n)) {
        set_err(err, errlen, "sku must not contain control characters");
        goto done;
    }
    memcpy(o.sku, s, n);

    if (int_field(&d, O_QTY, FK_QTY_MIN, FK_QTY_MAX, &v) != 0)
        goto done;
    o.qty = (int)v;
    if (int_field(&d, O_AMOUNT, 0, FK_AMOUNT_MAX, &v) != 0)
        goto done;
    o.amount = v;

    r = str_field(&d, O_CURRENCY, &s, &n);
    if (r < 0)
        goto done;
    if (r == 0) {
        memcpy(o.currency, "CNY", 4);
    } else {
        if (n != 3 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' ||
            s[2] < 'A' || s[2] > 'Z') {
            set_err(err, errlen, "currency must be 3 upper-case letters A-Z");
            goto done;
        }
        memcpy(o.currency, s, 3);
    }

    r = str_field(&d, O_BUYER, &s, &n);
    if (r < 0)
        goto done;
    if (r > 0) {
        if (fk_utf8_count(s, n) > FK_BUYER_MAX_CHARS) {
            set_err(err, errlen, "buyer must be at most %d characters", FK_BUYER_MAX_CHARS);
            goto done;
        }
        if (!no_controls(s, n)) {
            set_err(err, errlen, "buyer must not contain control characters");
            goto done;
        }
        memcpy(o.buyer, s, n);
    }

    *out = o;
    rc = 0;
done:
    dec_close(&d);
    return rc;
}

/* ---- payment ------------------------------------------------------------- */

enum { P_ORDER_ID, P_STATUS, P_PAYMENT_ID, P_NFIELDS };

static const char *const payment_keys[P_NFIELDS] = { "order_id", "status", "payment_id" };

int fk_payment_decode(const char *raw, size_t len, fk_payment *out, char *err, size_t errlen, char *id_out)
{
    struct jfield f[P_NFIELDS];
    struct dec d;
    fk_payment pay;
    const char *s;
    size_t n;
    int r, rc;

    if (id_out != NULL)
        id_out[0] = '\0';
    set_err(err, errlen, "%s", "");
    rc = dec_open(&d, raw, len, f, payment_keys, P_NFIELDS, err, errlen);
    if (rc != 0)
        return rc;

    memset(&pay, 0, sizeof pay);
    rc = FK_EINVAL;
    if (order_id_field(&d, P_ORDER_ID, pay.order_id) != 0)
        goto done;
    if (id_out != NULL)
        memcpy(id_out, pay.order_id, sizeof pay.order_id);
    if (no_duplicates(&d) != 0)
        goto done;

    r = str_field(&d, P_STATUS, &s, &n);
    if (r < 0)
        goto done;
    if (r > 0 && strcmp(s, "succeeded") == 0) {
        pay.status = FK_PAY_SUCCEEDED;
    } else if (r > 0 && strcmp(s, "declined") == 0) {
        pay.status = FK_PAY_DECLINED;
    } else {
        set_err(err, errlen, "status is required and must be \"succeeded\" or \"declined\"");
        goto done;
    }

    r = str_field(&d, P_PAYMENT_ID, &s, &n);
    if (r < 0)
        goto done;
    if (r > 0) {
        if (n > FK_PAYMENT_ID_MAX || !visible_ascii(s, n)) {
            set_err(err, errlen,
                    "payment_id must be at most %d characters of visible ASCII (0x21-0x7e)",
                    FK_PAYMENT_ID_MAX);
            goto done;
        }
        memcpy(pay.payment_id, s, n);
    }

    *out = pay;
    rc = 0;
done:
    dec_close(&d);
    return rc;
}

/* ---- encoding ------------------------------------------------------------ */

/* Append s[0..n) as a JSON string literal at *w. Needs at most 6n + 2 bytes.
 * Non-ASCII bytes are copied as they are (the input is UTF-8). */
static char *put_json_string(char *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    *w++ = '"';
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':  *w++ = '\\'; *w++ = '"'; break;
        case '\\': *w++ = '\\'; *w++ = '\\'; break;
        case '\b': *w++ = '\\'; *w++ = 'b'; break;
        case '\f': *w++ = '\\'; *w++ = 'f'; break;
        case '\n': *w++ = '\\'; *w++ = 'n'; break;
        case '\r': *w++ = '\\'; *w++ = 'r'; break;
        case '\t': *w++ = '\\'; *w++ = 't'; break;
        default:
            if (c < 0x20 || c == 0x7f) {
                *w++ = '\\';
                *w++ = 'u';
                *w++ = '0';
                *w++ = '0';
                *w++ = hex[c >> 4];
                *w++ = hex[c & 0xF];
            } else {
                *w++ = (char)c;
            }
        }
    }
    *w++ = '"';
    return w;
}

static char *put_lit(char *w, const char *lit)
{
    size_t n = strlen(lit);

    memcpy(w, lit, n);
    return w + n;
}

char *fk_order_encode(const fk_order *o)
{
    /* Every string bounded by its array, so the worst case is known. */
    enum {
        CAP = 6 * (sizeof o->order_id + sizeof o->idem_key + sizeof o->sku +
                   sizeof o->currency + sizeof o->buyer) + 256,
    };
    size_t id_n = strnlen(o->order_id, sizeof o->order_id - 1);
    size_t idem_n = strnlen(o->idem_key, sizeof o->idem_key - 1);
    size_t cur_n = strnlen(o->currency, sizeof o->currency - 1);
    const char *idem = idem_n > 0 ? o->idem_key : o->order_id;
    const char *cur = cur_n > 0 ? o->currency : "CNY";
    char num[32];
    char *buf, *w, *shrunk;

    if (idem_n == 0)
        idem_n = id_n;
    if (cur_n == 0)
        cur_n = 3;

    buf = malloc(CAP);
    if (buf == NULL)
        return NULL;
    w = buf;
    w = put_lit(w, "{\"order_id\":");
    w = put_json_string(w, o->order_id, id_n);
    w = put_lit(w, ",\"idempotency_key\":");
    w = put_json_string(w, idem, idem_n);
    w = put_lit(w, ",\"sku\":");
    w = put_json_string(w, o->sku, strnlen(o->sku, sizeof o->sku - 1));
    snprintf(num, sizeof num, "%d", o->qty);
    w = put_lit(w, ",\"qty\":");
    w = put_lit(w, num);
    snprintf(num, sizeof num, "%lld", o->amount);
    w = put_lit(w, ",\"amount\":");
    w = put_lit(w, num);
    w = put_lit(w, ",\"currency\":");
    w = put_json_string(w, cur, cur_n);
    w = put_lit(w, ",\"buyer\":");
    w = put_json_string(w, o->buyer, strnlen(o->buyer, sizeof o->buyer - 1));
    w = put_lit(w, "}");
    *w = '\0';

    shrunk = realloc(buf, (size_t)(w - buf) + 1);
    return shrunk != NULL ? shrunk : buf;
}

int fk_record_int(const char *s, long long lo, long long hi, long long *out)
{
    const char *d = (s[0] == '-' && lo < 0) ? s + 1 : s;
    char *end;
    long long v;

    if (*d < '0' || *d > '9') /* no sign, space or empty string */
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}
