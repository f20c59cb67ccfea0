/* hmac.h -- HMAC-SHA256 as lowercase hex, on nettle (we never hand-write
 * crypto). Used to sign the shop webhook. */
#ifndef FK_HMAC_H
#define FK_HMAC_H

#include <stddef.h>

/* out_hex receives 64 lowercase hex digits and a NUL. key and msg may be
 * NULL when their length is 0. Returns 0 or FK_EINVAL (out_hex NULL, or a
 * NULL pointer with a nonzero length); nettle itself cannot fail. */
int fk_hmac_sha256_hex(const void *key, size_t keylen, const void *msg,
                       size_t msglen, char out_hex[65]);

#endif
