/* fuzz_gateway.c -- libFuzzer target for fk_gateway_classify, THE function
 * that maps an HTTP outcome to a payment outcome. The input picks the
 * request kind, the transport error, maybe_sent, the status, the truncated
 * flag and a Retry-After value (delay-seconds or an HTTP-date, up to the
 * 64 bytes http.c keeps); the rest is the body. Besides "never crash", it
 * checks the safety invariants: non-TRANSIENT outcomes never claim
 * maybe_charged, only a POST may conclude "not charged" (and only from a 429
 * or an unsent request), and every output string is bounded and clean. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "gateway.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond) {
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int errs[] = {0, 0, 0, 0, FK_ETIMEOUT, FK_EHTTP, FK_ECLOSED, FK_ENOMEM};
    if (size < 5)
        return 0;
    int is_query = data[0] & 1;
    int maybe_sent = (data[0] >> 1) & 1;
    int truncated = (data[0] >> 2) & 1;
    int err = errs[(data[0] >> 3) & 7];
    long status = (long)(((unsigned)data[1] << 8 | data[2]) % 1000);
    size_t ralen = data[3] % 65;   /* as http.c keeps it: <= 64 */
    data += 4;
    size -= 4;
    if (ralen > size)
        ralen = size;

    char ra[65];
    memcpy(ra, data, ralen);
    ra[ralen] = '\0';
    data += ralen;
    size -= ralen;

    /* An exact-size heap copy, so ASan catches any read past body_len. */
    char *body = malloc(size ? size : 1);
    if (!body)
        return 0;
    if (size)
        memcpy(body, data, size);

    fk_http_response r;
    memset(&r, 0, sizeof(r));
    r.err = err;
    r.maybe_sent = maybe_sent;
    r.status = status;
    r.body = body;
    r.body_len = size;
    r.truncated = truncated;
    r.errmsg = err ? "fuzz" : "";
    r.retry_after = ralen ? ra : NULL;

    fk_gw_result g;
    fk_gateway_classify(is_query, &r, &g);

    check(g.outcome >= FK_GW_PAID && g.outcome <= FK_GW_TRANSIENT);
    check(g.maybe_charged == 0 || g.maybe_charged == 1);
    if (g.outcome != FK_GW_TRANSIENT)
        check(g.maybe_charged == 0);
    if (g.outcome == FK_GW_TRANSIENT && g.maybe_charged == 0)
        check(!is_query && ((err == 0 && status == 429) || (err != 0 && !maybe_sent)));
    if (err != 0)
        check(g.outcome == FK_GW_TRANSIENT);
    if (g.outcome == FK_GW_NOT_FOUND)
        check(is_query && status == 404);
    if (g.outcome == FK_GW_PAID)
        check(err == 0 && status == 200 && !truncated);
    check(g.retry_after_ms >= 0 && g.retry_after_ms <= 86400L * 1000);
    check(memchr(g.reason, '\0', sizeof(g.reason)) != NULL && g.reason[0]);
    for (const char *p = g.reason; *p; p++)
        check((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
    check(memchr(g.payment_id, '\0', sizeof(g.payment_id)) != NULL);
    for (const char *p = g.payment_id; *p; p++)
        check(*p >= 0x21 && *p <= 0x7e);
    check(memchr(g.detail, '\0', sizeof(g.detail)) != NULL);
    for (const char *p = g.detail; *p; p++)
        check(*p >= 0x20 && *p <= 0x7e);

    free(body);
    return 0;
}
