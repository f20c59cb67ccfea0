/* hmac.c -- HMAC-SHA256 through nettle. Nettle, not OpenSSL's libcrypto:
 * libcurl is the GnuTLS flavour, which already loads nettle, so the worker
 * maps no OpenSSL library at all (libcrypto's initialisation alone cost
 * about 2 MB of RSS). */
#include "hmac.h"
#include "err.h"

#include <nettle/hmac.h>
#include <nettle/sha2.h>

int fk_hmac_sha256_hex(const void *key, size_t keylen, const void *msg,
                       size_t msglen, char out_hex[65]) {
    static const char hex[] = "0123456789abcdef";
    /* nettle memcpy's the key and message: never hand it NULL, even with a
     * zero length (undefined behaviour for memcpy). */
    static const unsigned char empty[1] = {0};
    unsigned char mac[SHA256_DIGEST_SIZE];
    struct hmac_sha256_ctx ctx;

    if (!out_hex || (!key && keylen) || (!msg && msglen))
        return FK_EINVAL;
    hmac_sha256_set_key(&ctx, keylen, key ? key : empty);
    hmac_sha256_update(&ctx, msglen, msg ? msg : empty);
    hmac_sha256_digest(&ctx, SHA256_DIGEST_SIZE, mac);
    for (size_t i = 0; i < SHA256_DIGEST_SIZE; i++) {
        out_hex[2 * i] = hex[mac[i] >> 4];
        out_hex[2 * i + 1] = hex[mac[i] & 0xF];
    }
    out_hex[64] = '\0';
    return 0;
}
