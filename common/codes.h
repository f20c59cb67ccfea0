/* codes.h -- the card codes an operator pipes into `fakactl stock add`.
 *
 * The input is outside input (a file someone exported from a supplier's
 * portal), so it is split and checked before anything reaches Redis: one
 * code per line, and one bad line refuses the whole input. */
#ifndef FK_CODES_H
#define FK_CODES_H

#include <stddef.h>

#define FK_CODE_MAX 256   /* bytes per code */

/* One code: a slice of the caller's buffer, not NUL-terminated. */
typedef struct fk_code {
    const char *s;
    size_t len;
} fk_code;

/* Split buf[0..len) into codes: one per line ('\n'; a '\r' before it is
 * dropped), surrounding spaces trimmed, blank lines skipped. A code must be
 * 1..FK_CODE_MAX bytes of well-formed UTF-8 without control characters, and
 * appear once (the same code twice would be delivered twice).
 *
 * On success returns 0 with *out (malloc'd, points into buf; the caller frees
 * it, buf must outlive it) and *n > 0 codes in input order. On failure
 * returns FK_EINVAL (bad lines: the first five named with their line numbers
 * in err), FK_EUSAGE (no code at all) or FK_ENOMEM, leaves *out NULL and *n
 * 0, and writes a one-line reason to err (errlen >= 1). buf may hold any
 * bytes, NUL included; it is not modified. */
int fk_codes_parse(const char *buf, size_t len, fk_code **out, size_t *n, char *err,
                   size_t errlen);

#endif
