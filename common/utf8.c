/* utf8.c -- strict UTF-8 validation and code point counting (see utf8.h). */
#include "utf8.h"

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
