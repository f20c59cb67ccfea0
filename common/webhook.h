/* webhook.h -- the signed notification faka POSTs to the shop after
 * delivery.
 *
 * Wire format (what a shop verifies):
 *   POST <url>
 *   Content-Type: application/json
 *   X-Faka-Timestamp: <unix ms>
 *   X-Faka-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
 *   X-Faka-Order: <order_id>
 *   body: {"order_id":...,"state":"completed","sku":...,"qty":N,
 *          "codes":[...],"payment_id":...,"delivered_at":<ms>}
 * The body is built by the caller from the order record and sent byte for
 * byte as given, so the signature covers exactly what the shop receives.
 * Retries belong to the caller; a failed notification never charges or
 * delivers again. */
#ifndef FK_WEBHOOK_H
#define FK_WEBHOOK_H

#include <stddef.h>
#include "http.h"

/* "v1=" + 64 hex digits + NUL */
#define FK_WEBHOOK_SIG_LEN 68

typedef struct fk_webhook fk_webhook;

/* url: http(s) URL of the shop's endpoint; secret: non-empty shared secret
 * (copied). http must outlive the webhook. Returns 0, FK_EINVAL or
 * FK_ENOMEM. */
int fk_webhook_init(fk_webhook **out, fk_http *http, const char *url,
                    const char *secret);

/* ok=1 on any 2xx; else ok=0 and reason: "http_<status>", "timeout",
 * "connect_failed", "transport_error", "closed" or "nomem". reason is
 * valid only during the callback. */
typedef void (*fk_webhook_cb)(void *arg, int ok, const char *reason);

/* POST body_json (sent as is) signed with the current wall-clock time.
 * order_id: non-empty, no control characters. Returns 0: cb is called
 * exactly once, later. Returns <0 (FK_EINVAL, FK_ENOMEM, FK_ECLOSED, FK_EIO):
 * cb is never called. */
int fk_webhook_send(fk_webhook *w, const char *order_id, const char *body_json,
                    fk_webhook_cb cb, void *arg);

/* Free the webhook; sends already started still call their callbacks. */
void fk_webhook_free(fk_webhook *w);

/* Pure helper: write "v1=<hex HMAC-SHA256(secret, "<ts_ms>.<body>")>" into
 * out. body may be NULL when len is 0. Returns 0, FK_EINVAL, FK_ERANGE
 * (outlen < FK_WEBHOOK_SIG_LEN), FK_ENOMEM or FK_EIO. */
int fk_webhook_sign(const char *secret, long long ts_ms, const char *body,
                    size_t len, char *out, size_t outlen);

#endif
