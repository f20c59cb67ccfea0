/* utf8.c -- strict UTF-8 validation, code point counting, and the repair of
 * ill-formed text from outside into well-formed UTF-8 (see utf8.h). */
#include "utf8.h"

#include <string.h>

/* Length of the well-formed sequence starting at s[i], or 0 if the bytes at
 * s[i..] do not start one (bad lead byte, bad or missing continuation byte,
 * overlong form, surrogate, or a code point above U+10FFFF). The allowed
 * second-byte ranges are those of Unicode table 3-7. */
static size_t seq_len(const unsigned char *s, size_t i, size_t len)
{
    unsigned char c = s[i];
    unsigned char lo = 0x80, hi = 0xBF;  /* allowed range of the second byte */
    size_t n, k;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;              /* below: overlong */
        else if (c == 0xED)
            hi = 0x9F;              /* above: surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;              /* below: overlong */
        else if (c == 0xF4)
            hi = 0x8F;              /* above: > U+10FFFF */
    } else
        return 0;                   /* 0x80..0xC1 (continuation, overlong), 0xF5..0xFF */

    if (len - i < n)
        return 0;
    if (s[i + 1] < lo || s[i + 1] > hi)
        return 0;
    for (k = 2; k < n; k++)
        if ((s[i + k] & 0xC0) != 0x80)
            return 0;
    return n;
}

size_t fk_utf8_valid_prefix(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t n = seq_len(u, i, len);
        if (n == 0)
            return i;
        i += n;
    }
    return len;
}

int fk_utf8_valid(const char *s, size_t len)
{
    return fk_utf8_valid_prefix(s, len) == len;
}

size_t fk_utf8_count(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i, n = 0;

    for (i = 0; i < len; i++)
        if ((u[i] & 0xC0) != 0x80)
            n++;
    return n;
}

size_t fk_utf8_seq_len(const char *s, size_t len)
{
    return len ? seq_len((const unsigned char *)s, 0, len) : 0;
}

size_t fk_utf8_repair(const char *s, size_t len, char *out, size_t outlen)
{
    static const char fffd[] = "\xEF\xBF\xBD";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, n = 0, w = 0;     /* n: length of the result, w: bytes written */

    while (i < len) {
        size_t k = u[i] ? seq_len(u, i, len) : 0;
        size_t m = k ? k : 3;

        if (w == n && n + m < outlen) {     /* nothing cut yet, and it fits */
            memcpy(out + n, k ? s + i : fffd, m);
            w += m;
        }
        n += m;
        i += k ? k : 1;
    }
    if (outlen)
        out[w] = '\0';
    return n;
}
