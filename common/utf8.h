/* utf8.h -- strict UTF-8 checks for text that comes from outside.
 *
 * "Well-formed" follows RFC 3629 / Unicode table 3-7: shortest form only (no
 * overlongs), no UTF-16 surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
 * NUL (U+0000) is well-formed UTF-8; callers that forbid it check separately. */
#ifndef FK_UTF8_H
#define FK_UTF8_H

#include <stddef.h>

/* 1 if s[0..len) is well-formed UTF-8 (no overlongs, no surrogates,
 * <= U+10FFFF), else 0. len 0 is valid. s may be NULL only when len is 0. */
int fk_utf8_valid(const char *s, size_t len);

/* Length in bytes of the longest well-formed prefix of s[0..len) that ends on
 * a character boundary: len when the whole input is valid, otherwise the
 * offset of the first byte of the first ill-formed sequence (for messages). */
size_t fk_utf8_valid_prefix(const char *s, size_t len);

/* Number of code points in s[0..len). s must be valid UTF-8 (fk_utf8_valid);
 * on invalid input the result is the number of non-continuation bytes. */
size_t fk_utf8_count(const char *s, size_t len);

/* Length in bytes (1-4) of the well-formed sequence that starts s[0..len),
 * or 0 when s[0] does not start one (len 0 included). */
size_t fk_utf8_seq_len(const char *s, size_t len);

/* s[0..len) made well-formed, for output that must be UTF-8 (JSON) although
 * the text came from outside (Redis): every byte that does not start a
 * well-formed sequence, and every NUL, becomes U+FFFD (EF BF BD), so the
 * result is a C string that keeps all of the input. Writes at most
 * outlen - 1 bytes and a NUL into out, never cutting a character (outlen 0:
 * nothing written). Returns the length of the whole result, as snprintf
 * does: a return >= outlen means it was cut; 3 * len + 1 bytes always
 * suffice. s may be NULL only when len is 0. */
size_t fk_utf8_repair(const char *s, size_t len, char *out, size_t outlen);

#endif
