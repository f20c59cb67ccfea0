/* gateway.h -- client for faka's payment gateway contract (DESIGN.md,
 * "Payment gateway contract"): POST {base}/charges and GET
 * {base}/charges/{key}, and THE one function that turns an HTTP outcome
 * into a faka payment outcome (fk_gateway_classify).
 *
 * Safety rule behind the classification: "not charged" is only ever
 * concluded from proof (a definitive refusal, a 429, or a request that
 * certainly never left this process). Everything else that is not a
 * definitive answer is TRANSIENT with maybe_charged=1, so the next attempt
 * asks the gateway (GET) before it charges again. */
#ifndef FK_GATEWAY_H
#define FK_GATEWAY_H

#include "http.h"

typedef enum fk_gw_outcome {
    FK_GW_PAID = 1,       /* 200 succeeded */
    FK_GW_PENDING,        /* 202 pending, or GET says pending: buyer must act */
    FK_GW_DECLINED,       /* 402, or GET says declined */
    FK_GW_RISK,           /* 403 risk_rejected (or GET says risk_rejected) */
    FK_GW_INVALID,        /* 400 / 422: our request is invalid; definitive */
    FK_GW_CONFLICT,       /* 409: idempotency key reused with other parameters; definitive */
    FK_GW_NOT_FOUND,      /* GET only: 404, no charge exists for this key */
    FK_GW_TRANSIENT,      /* 429, 5xx, timeout, reset, garbage body, unexpected status: try again later */
} fk_gw_outcome;

/* "paid", "pending", ... "transient"; "unknown" for anything else. */
const char *fk_gw_outcome_name(fk_gw_outcome o);

typedef struct fk_gw_result {
    fk_gw_outcome outcome;
    int maybe_charged;      /* TRANSIENT only: 1 if the gateway may have
                               charged; 0 if certainly not (0 for every other
                               outcome) */
    long http_status;       /* 0 if no status was received */
    long retry_after_ms;    /* from Retry-After, delta-seconds or an
                               HTTP-date (capped at one day), 0 if none,
                               invalid or past */
    char payment_id[129];   /* "id" from the body when present and valid
                               (visible ASCII, 1..128), else "" */
    char reason[64];        /* machine reason from the body (sanitized to
                               [a-z0-9_], <= 63) or a generated one:
                               "http_503", "timeout", "garbage_body", ...;
                               "late": a charge not sent because its
                               deadline had passed (fk_charge_req) */
    char detail[256];       /* one printable-ASCII line for logs / messages */
} fk_gw_result;

/* THE classification function: the only place that maps HTTP outcomes to
 * faka payment outcomes. is_query: 1 for GET /charges/{key}, 0 for POST
 * /charges. Reads resp->body[0 .. body_len) only (it need not be
 * NUL-terminated); never crashes on any bytes. Always fills *out. */
void fk_gateway_classify(int is_query, const fk_http_response *resp,
                         fk_gw_result *out);

typedef struct fk_gateway fk_gateway;
typedef void (*fk_gateway_cb)(void *arg, const fk_gw_result *res);

/* Create a client for base_url ("http://host:port[/prefix]", trailing
 * slashes ignored). "none" is not handled here: the worker skips the
 * gateway. http must outlive the gateway. Returns 0, FK_EINVAL or
 * FK_ENOMEM. */
int fk_gateway_init(fk_gateway **out, fk_http *http, const char *base_url);

typedef struct fk_charge_req {
    const char *idem_key;   /* required: 1..255 bytes, no control characters */
    const char *order_id;   /* required, non-empty */
    const char *currency;   /* NULL: "CNY" */
    const char *buyer;      /* NULL: "" */
    long long amount;       /* >= 0, minor units */
    uint64_t deadline_ns;   /* 0: none. Else a time on uv_hrtime()'s clock
                               (CLOCK_MONOTONIC, ns) after which the POST must
                               not go out, checked against the real time right
                               before it would (fk_http_request_by). Past it
                               the charge is not sent: cb gets TRANSIENT,
                               maybe_charged 0, reason "late". A caller
                               fencing the charge with a lease sets it so the
                               HTTP timeout still fits in the lease after it */
} fk_charge_req;

/* POST {base}/charges with header Idempotency-Key and the JSON body
 * {"order_id","amount","currency","buyer"}, not after req->deadline_ns.
 * Returns 0: cb is called exactly once, later, with the classified result
 * (res valid only during cb). Returns <0 (FK_EINVAL, FK_ENOMEM, FK_ECLOSED):
 * cb is never called. */
int fk_gateway_charge(fk_gateway *g, const fk_charge_req *req,
                      fk_gateway_cb cb, void *arg);

/* GET {base}/charges/{percent-encoded idem_key}; same callback rule. */
int fk_gateway_query(fk_gateway *g, const char *idem_key, fk_gateway_cb cb,
                     void *arg);

/* Free the client. Requests already started still complete (or are
 * cancelled by fk_http_close) and call their callbacks. */
void fk_gateway_free(fk_gateway *g);

#endif
