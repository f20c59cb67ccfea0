/* http.h -- asynchronous HTTP client: libcurl's multi interface driven by a
 * libuv loop (curl's sockets in an epoll set of our own, which libuv watches
 * as one fd; one uv_timer_t for curl's timeouts). No threads, no blocking
 * calls, keep-alive connections, http and https only, redirects never
 * followed, TLS verified by default. Linux only (epoll).
 *
 * Callback rule (as in libuv): a function that takes a callback and returns
 * 0 calls it exactly once, later, from the loop -- never from inside the
 * call itself; a function that returns <0 never calls it.
 *
 * maybe_sent rule (what the gateway client relies on to decide whether a
 * charge may exist): maybe_sent is 0 only with proof that no request byte
 * left this process -- the request never reached the wire (queued, refused
 * before start) or curl reports both CURLINFO_REQUEST_SIZE == 0 and
 * CURLINFO_PRETRANSFER_TIME_T == 0 (it failed while resolving, connecting
 * or doing the TLS handshake: DNS failure, connection refused, connect
 * timeout). Every other outcome, including an HTTP status, is maybe_sent=1.
 * request_size accumulates over curl's internal "connection died, retrying
 * a fresh connect" on a reused connection, so a request sent on a dead
 * keep-alive connection and then refused on the retry still counts as sent.
 *
 * Re-sends: when a request goes out on a reused keep-alive connection and
 * that connection dies before any response byte arrives (the server closed
 * an idle connection, or crashed mid-request), curl re-sends it once on a
 * fresh connection; libcurl has no switch for this. The server can thus see
 * a request twice: only send requests that are safe to repeat (the gateway
 * contract's Idempotency-Key; the webhook receiver dedupes by order). */
#ifndef FK_HTTP_H
#define FK_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Bodies longer than this are cut (fk_http_response.truncated = 1). */
#define FK_HTTP_BODY_MAX (64 * 1024)

typedef struct fk_http fk_http;

typedef struct fk_http_options {
    long connect_timeout_ms;   /* default 2000 (0 = default) */
    long total_timeout_ms;     /* default 5000 (0 = default); counts from
                                  when the request goes out, not from
                                  fk_http_request: time in the queue (more
                                  than max_concurrent requests) is not the
                                  server's. A request that must not go out
                                  late has a deadline (fk_http_request_by) */
    int max_concurrent;        /* requests on the wire at once; more are
                                  queued FIFO; default 64 (0 = default) */
    int verify_tls;            /* 1: verify peer and host for https (default 1) */
} fk_http_options;

/* Fill opts with the defaults above (verify_tls = 1). */
void fk_http_options_default(fk_http_options *opts);

typedef struct fk_http_response {
    int err;            /* 0: an HTTP status was received; else FK_ETIMEOUT /
                           FK_EHTTP / FK_ECLOSED / FK_ENOMEM */
    int maybe_sent;     /* see the maybe_sent rule at the top of this file */
    long status;        /* HTTP status, 0 if none */
    const char *body;   /* response body, NUL-terminated, never NULL; valid
                           only during the callback; at most FK_HTTP_BODY_MAX */
    size_t body_len;
    int truncated;      /* 1 if the body was longer than FK_HTTP_BODY_MAX */
    const char *errmsg; /* curl's error text or "" */
    const char *retry_after; /* value of the Retry-After header or NULL */
    int late;           /* 1: not sent because its deadline had passed
                           (fk_http_request_by); then err is FK_ETIMEOUT and
                           maybe_sent 0 */
    int resent;         /* 1: curl sent the request a second time (see
                           "Re-sends" above): the answer is the second
                           send's, and the first may have been processed */
} fk_http_response;

typedef void (*fk_http_cb)(void *arg, const fk_http_response *resp);

/* Create a client on loop. opts may be NULL (all defaults). Calls
 * curl_global_init once per process (first telling libcurl's libssh2 to
 * skip its OpenSSL set-up: we never allow ssh) and makes the first pooled
 * handle, so a libcurl that refuses our options fails here. Returns 0 and
 * sets *out, or FK_EINVAL (bad options) / FK_ENOMEM / FK_EHTTP (curl could
 * not initialise, or refused an option, e.g. a libcurl without HTTP); after
 * FK_EHTTP the loop may still have to run once to free the client's
 * handles. */
int fk_http_init(fk_http **out, uv_loop_t *loop, const fk_http_options *opts);

/* 1 if the libcurl this process runs with can speak HTTPS, else 0 (a
 * libcurl built without TLS; Debian's always has it). May come before
 * fk_http_init (it does curl_global_init the same way); configuration
 * checks use it to refuse https:// URLs up front instead of failing every
 * request. The answer is kept after the first call; when libcurl cannot
 * be asked (it fails to initialise, or memory runs out) it is 1 for now,
 * and fk_http_init reports the failure. */
int fk_http_has_https(void);

/* Start a request. method: "GET", "POST", "HEAD" or another token; headers:
 * NULL-terminated array of "Name: value" (no CR/LF) or NULL; body (copied)
 * may be NULL when body_len is 0, and must be empty for GET and HEAD. url must be an absolute http:// or
 * https:// URL with a host; anything else (file://, ftp://, garbage) is
 * refused with FK_EINVAL. Returns 0: cb is called exactly once, later.
 * Returns <0 (FK_EINVAL, FK_ENOMEM, FK_ECLOSED after fk_http_close, FK_EHTTP):
 * cb is never called. */
int fk_http_request(fk_http *h, const char *method, const char *url,
                    const char *const *headers, const char *body,
                    size_t body_len, fk_http_cb cb, void *arg);

/* fk_http_request with a deadline for sending: deadline_ns (0 = none, then
 * exactly fk_http_request) is a time on uv_hrtime()'s clock (CLOCK_MONOTONIC,
 * ns) after which the request must not go out. It is checked against the
 * real current time, not the loop's cached uv_now(): when a queued request
 * would start, and in curl's prereq callback, right before the request's
 * first byte is written (the connection is up by then). A request past its
 * deadline is aborted unsent and completes with err FK_ETIMEOUT, late = 1,
 * maybe_sent 0, no status. (Past its deadline a re-send of a request that
 * already went out once -- see "Re-sends" above -- is aborted too, but that
 * request may have been sent: it completes as an error with maybe_sent 1
 * and late 0.) The total timeout still applies; a caller fencing a request
 * with a lease sets the deadline so that the timeout fits after it.
 * Same callback and return rules as fk_http_request. */
int fk_http_request_by(fk_http *h, const char *method, const char *url,
                       const char *const *headers, const char *body,
                       size_t body_len, uint64_t deadline_ns, fk_http_cb cb,
                       void *arg);

/* Requests on the wire plus queued ones. */
size_t fk_http_inflight(const fk_http *h);

/* How many requests the client can hold at once (on the wire and queued)
 * with none of them waiting longer than wait_ms for the wire, as far as it
 * can tell: the places on the wire, plus the queue that drains within
 * wait_ms at a request's recent time on the wire (a moving average over the
 * last ~8 finished requests, connect included; requests that never went out
 * are left out; before any request finished, each is taken to use its
 * whole timeout). A caller that takes work which must go out in time (a
 * charge fenced by a lease) holds no more than this. */
size_t fk_http_capacity(const fk_http *h, uint64_t wait_ms);

/* Cancel everything: every pending cb is called once (from inside this
 * call) with err FK_ECLOSED and maybe_sent set truthfully; afterwards
 * fk_http_request returns FK_ECLOSED. Every uv handle is closed; done(arg)
 * (may be NULL) is called from the loop once they all are, and h is freed
 * then. May be called from inside an fk_http callback. A second call is
 * ignored. */
void fk_http_close(fk_http *h, void (*done)(void *arg), void *arg);

/* Percent-encode s for use as one URL path segment: everything except
 * RFC 3986 unreserved characters (A-Z a-z 0-9 - . _ ~) becomes %XX.
 * Returns a malloc'd string (caller frees), or NULL on OOM / s == NULL. */
char *fk_http_escape(const char *s);

#endif
