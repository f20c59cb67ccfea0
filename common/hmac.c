/* hmac.c -- HMAC-SHA256 through OpenSSL's one-shot HMAC(). */
#include "hmac.h"
#include "err.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

int fk_hmac_sha256_hex(const void *key, size_t keylen, const void *msg,
                       size_t msglen, char out_hex[65]) {
    static const char hex[] = "0123456789abcdef";
    static const unsigned char empty[1] = {0};
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;

    if (!out_hex || (!key && keylen) || (!msg && msglen))
        return FK_EINVAL;
    out_hex[0] = '\0';
    if (keylen > (size_t)0x7fffffff)
        return FK_EINVAL;
    if (!HMAC(EVP_sha256(), key ? key : empty, (int)keylen,
              msg ? msg : empty, msglen, mac, &maclen) || maclen != 32)
        return FK_EIO;
    for (unsigned int i = 0; i < maclen; i++) {
        out_hex[2 * i] = hex[mac[i] >> 4];
        out_hex[2 * i + 1] = hex[mac[i] & 0xF];
    }
    out_hex[64] = '\0';
    return 0;
}
