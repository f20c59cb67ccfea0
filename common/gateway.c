/* gateway.c -- the payment gateway contract client and THE classification
 * function (see gateway.h for the contract and the safety rule).
 *
 * fk_gateway_classify is pure: it looks at one fk_http_response and decides
 * (a Retry-After given as an HTTP-date is measured against the wall clock).
 * Bodies are parsed with cJSON from a private NUL-terminated copy, so any
 * bytes (binary, truncated, huge, embedded NULs) are handled; values of the
 * wrong type count as absent. */
#include "gateway.h"
#include "err.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GW_KEY_MAX        255
#define GW_RETRY_AFTER_MAX_S 86400L

struct fk_gateway {
    fk_http *http;
    char *charges_url;      /* "{base}/charges" */
};

typedef struct gw_call {
    fk_gateway_cb cb;
    void *arg;
    int is_query;
} gw_call;

/* What we could read from a response body. */
typedef struct gw_body {
    int json;               /* the body is a JSON object */
    int has_status;         /* "status" is a string */
    char status[32];        /* its value (longer values are cut, never match) */
    char reason[64];        /* "reason", sanitized, "" if absent */
    char id[129];           /* "id" if valid, else "" */
} gw_body;

const char *fk_gw_outcome_name(fk_gw_outcome o) {
    switch (o) {
    case FK_GW_PAID: return "paid";
    case FK_GW_PENDING: return "pending";
    case FK_GW_DECLINED: return "declined";
    case FK_GW_RISK: return "risk_rejected";
    case FK_GW_INVALID: return "invalid";
    case FK_GW_CONFLICT: return "conflict";
    case FK_GW_NOT_FOUND: return "not_found";
    case FK_GW_TRANSIENT: return "transient";
    }
    return "unknown";
}

/* ---- Body parsing ---- */

/* Keep [a-z0-9_] (upper case folded), turn runs of anything else into one
 * '_', cut to outlen-1. */
static void sanitize_reason(const char *in, char *out, size_t outlen) {
    size_t o = 0;
    int pending_sep = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 1 < outlen; p++) {
        unsigned char c = *p;
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
            if (pending_sep && o > 0 && o + 2 < outlen)
                out[o++] = '_';
            pending_sep = 0;
            out[o++] = (char)c;
        } else {
            pending_sep = 1;
        }
    }
    out[o] = '\0';
}

static int id_valid(const char *s) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
        if (*p < 0x21 || *p > 0x7e || n >= 128)
            return 0;
    return n > 0;
}

static void parse_body(const char *body, size_t len, gw_body *b) {
    memset(b, 0, sizeof(*b));
    if (!body || len == 0 || memchr(body, '\0', len))
        return;
    char *copy = malloc(len + 1);
    if (!copy)
        return;     /* unreadable body: classified as garbage, conservative */
    memcpy(copy, body, len);
    copy[len] = '\0';
    cJSON *root = cJSON_ParseWithOpts(copy, NULL, 1);
    free(copy);
    if (!root)
        return;
    if (cJSON_IsObject(root)) {
        b->json = 1;
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "status");
        if (cJSON_IsString(st) && st->valuestring) {
            b->has_status = 1;
            snprintf(b->status, sizeof(b->status), "%s", st->valuestring);
        }
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "reason");
        if (cJSON_IsString(rs) && rs->valuestring)
            sanitize_reason(rs->valuestring, b->reason, sizeof(b->reason));
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
        if (cJSON_IsString(id) && id->valuestring && id_valid(id->valuestring))
            snprintf(b->id, sizeof(b->id), "%s", id->valuestring);
    }
    cJSON_Delete(root);
}

/* Retry-After (RFC 9110, 10.2.3) in ms: delay-seconds ("120"), or an
 * HTTP-date in any of its three forms (curl_getdate reads them) counted from
 * now on this machine's clock, capped at a day; junk and past dates give 0. */
static long parse_retry_after_ms(const char *v) {
    if (!v || !*v)
        return 0;
    long s = 0;
    if (strspn(v, "0123456789") == strlen(v)) {
        for (const char *p = v; *p; p++)
            if (s <= GW_RETRY_AFTER_MAX_S)
                s = s * 10 + (*p - '0');
    } else {
        time_t at = curl_getdate(v, NULL), now = time(NULL);
        if (at == (time_t)-1 || at <= now)
            return 0;
        s = at - now > GW_RETRY_AFTER_MAX_S ? GW_RETRY_AFTER_MAX_S : (long)(at - now);
    }
    if (s > GW_RETRY_AFTER_MAX_S)
        s = GW_RETRY_AFTER_MAX_S;
    return s * 1000;
}

/* ---- Classification ---- */

static void set_reason(fk_gw_result *out, const gw_body *b, const char *dflt) {
    snprintf(out->reason, sizeof(out->reason), "%s",
             b && b->reason[0] ? b->reason : dflt);
}

/* Format the detail line (cut to fit, that is fine) and replace anything
 * but printable ASCII, so it stays one clean line. */
static void set_detail(fk_gw_result *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_detail(fk_gw_result *out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->detail, sizeof(out->detail), fmt, ap);
    va_end(ap);
    for (unsigned char *p = (unsigned char *)out->detail; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            *p = '?';
}

void fk_gateway_classify(int is_query, const fk_http_response *resp,
                         fk_gw_result *out) {
    static const fk_http_response empty = {FK_EHTTP, 1, 0, "", 0, 0, "", NULL, 0, 0};
    const char *what = is_query ? "GET /charges/{key}" : "POST /charges";
    gw_body b;

    memset(out, 0, sizeof(*out));
    if (!resp)
        resp = &empty;
    out->http_status = resp->status;
    out->retry_after_ms = parse_retry_after_ms(resp->retry_after);

    if (resp->err != 0) {
        out->outcome = FK_GW_TRANSIENT;
        out->maybe_charged = is_query ? 1 : (resp->maybe_sent ? 1 : 0);
        switch (resp->err) {
        case FK_ETIMEOUT: set_reason(out, NULL, resp->late ? "late" : "timeout"); break;
        case FK_ECLOSED: set_reason(out, NULL, "closed"); break;
        case FK_ENOMEM: set_reason(out, NULL, "nomem"); break;
        default:
            set_reason(out, NULL, resp->maybe_sent ? "transport_error" : "connect_failed");
            break;
        }
        set_detail(out, "gateway %s failed without an answer (%s: %s); %s", what,
                   fk_strerror(resp->err), resp->errmsg ? resp->errmsg : "",
                   out->maybe_charged ? "the charge may exist" : "nothing was sent");
        return;
    }

    long st = resp->status;
    parse_body(resp->truncated ? NULL : resp->body, resp->body_len, &b);
    const char *phrase;

    if (st == 200) {
        if (b.has_status && strcmp(b.status, "succeeded") == 0) {
            out->outcome = FK_GW_PAID;
            set_reason(out, NULL, "succeeded");
            phrase = "charge succeeded";
        } else if (is_query && b.has_status && strcmp(b.status, "pending") == 0) {
            out->outcome = FK_GW_PENDING;
            set_reason(out, &b, "pending");
            phrase = "charge is pending, the buyer must act";
        } else if (is_query && b.has_status && strcmp(b.status, "declined") == 0) {
            out->outcome = FK_GW_DECLINED;
            set_reason(out, &b, "declined");
            phrase = "charge was declined";
        } else if (is_query && b.has_status && strcmp(b.status, "risk_rejected") == 0) {
            out->outcome = FK_GW_RISK;
            set_reason(out, &b, "risk_rejected");
            phrase = "charge was rejected by risk control";
        } else {
            /* A 200 we cannot read: the charge may well exist. */
            out->outcome = FK_GW_TRANSIENT;
            out->maybe_charged = 1;
            set_reason(out, NULL, b.has_status ? "unexpected_status" : "garbage_body");
            phrase = b.has_status ? "unexpected status in the body, outcome unknown"
                                  : "unreadable body, outcome unknown";
        }
    } else if (is_query) {
        if (st == 404) {
            out->outcome = FK_GW_NOT_FOUND;
            set_reason(out, NULL, "not_found");
            phrase = "no charge exists for this key";
        } else {
            out->outcome = FK_GW_TRANSIENT;
            out->maybe_charged = 1;
            if (st == 429)
                set_reason(out, NULL, "rate_limited");
            else
                snprintf(out->reason, sizeof(out->reason), "http_%ld", st);
            phrase = "no usable answer, outcome unknown";
        }
    } else if (st == 202) {
        out->outcome = FK_GW_PENDING;
        set_reason(out, &b, "pending");
        phrase = "charge is pending, the buyer must act";
    } else if (st == 402) {
        out->outcome = FK_GW_DECLINED;
        set_reason(out, &b, "declined");
        phrase = "charge was declined";
    } else if (st == 403) {
        out->outcome = FK_GW_RISK;
        set_reason(out, &b, "risk_rejected");
        phrase = "charge was rejected by risk control";
    } else if (st == 409) {
        out->outcome = FK_GW_CONFLICT;
        set_reason(out, &b, "idempotency_conflict");
        phrase = "idempotency key reused with other parameters";
    } else if (st == 400 || st == 422) {
        out->outcome = FK_GW_INVALID;
        set_reason(out, &b, "invalid_request");
        phrase = "the gateway refused our request as invalid";
    } else if (st == 429 && !resp->resent) {
        out->outcome = FK_GW_TRANSIENT;
        out->maybe_charged = 0;
        set_reason(out, NULL, "rate_limited");
        phrase = "rate limited before processing, nothing charged";
    } else if (st == 429) {
        /* The answer to curl's re-send (http.h): the first send died
         * without an answer on a reused connection, and the gateway may
         * have charged it before the rate limiter refused the second. */
        out->outcome = FK_GW_TRANSIENT;
        out->maybe_charged = 1;
        set_reason(out, NULL, "rate_limited");
        phrase = "rate limited, but it answered a re-send: the first may have been "
                 "charged, outcome unknown";
    } else {
        /* 5xx and every status the contract does not name. */
        out->outcome = FK_GW_TRANSIENT;
        out->maybe_charged = 1;
        snprintf(out->reason, sizeof(out->reason), "http_%ld", st);
        phrase = "no usable answer, the charge may exist";
    }

    if (b.id[0])
        memcpy(out->payment_id, b.id, sizeof(out->payment_id));
    set_detail(out, "gateway %s answered %ld: %s (%s)%s%s", what, st, phrase,
               out->reason, out->payment_id[0] ? " id=" : "", out->payment_id);
}

/* ---- The client ---- */

static void gw_http_cb(void *arg, const fk_http_response *resp) {
    gw_call *c = arg;
    fk_gw_result res;
    fk_gateway_classify(c->is_query, resp, &res);
    c->cb(c->arg, &res);
    free(c);
}

static int key_valid(const char *k) {
    if (!k)
        return 0;
    size_t n = strlen(k);
    if (n == 0 || n > GW_KEY_MAX)
        return 0;
    /* {gateway}/charges/.. would be resolved to {gateway}/ on the way */
    if (strcmp(k, ".") == 0 || strcmp(k, "..") == 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)k; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

int fk_gateway_init(fk_gateway **out, fk_http *http, const char *base_url) {
    if (!out || !http || !base_url || !base_url[0])
        return FK_EINVAL;
    *out = NULL;
    size_t n = strlen(base_url);
    while (n > 0 && base_url[n - 1] == '/')
        n--;
    if (n == 0)
        return FK_EINVAL;
    fk_gateway *g = calloc(1, sizeof(*g));
    if (!g)
        return FK_ENOMEM;
    g->http = http;
    g->charges_url = malloc(n + sizeof("/charges"));
    if (!g->charges_url) {
        free(g);
        return FK_ENOMEM;
    }
    memcpy(g->charges_url, base_url, n);
    memcpy(g->charges_url + n, "/charges", sizeof("/charges"));
    *out = g;
    return 0;
}

/* Start one call; on failure nothing is left behind and cb is not called. */
static int gw_start(fk_gateway *g, int is_query, const char *method,
                    const char *url, const char *const *headers,
                    const char *body, uint64_t deadline_ns, fk_gateway_cb cb,
                    void *arg) {
    gw_call *c = malloc(sizeof(*c));
    if (!c)
        return FK_ENOMEM;
    c->cb = cb;
    c->arg = arg;
    c->is_query = is_query;
    int rc = fk_http_request_by(g->http, method, url, headers, body,
                                body ? strlen(body) : 0, deadline_ns, gw_http_cb, c);
    if (rc < 0)
        free(c);
    return rc;
}

int fk_gateway_charge(fk_gateway *g, const fk_charge_req *req,
                      fk_gateway_cb cb, void *arg) {
    if (!g || !req || !cb || !key_valid(req->idem_key) || !req->order_id ||
        !req->order_id[0] || req->amount < 0)
        return FK_EINVAL;

    int rc = FK_ENOMEM;
    char amount[32];
    char *body = NULL, *idem = NULL;
    snprintf(amount, sizeof(amount), "%lld", req->amount);
    cJSON *o = cJSON_CreateObject();
    if (!o ||
        !cJSON_AddStringToObject(o, "order_id", req->order_id) ||
        !cJSON_AddRawToObject(o, "amount", amount) ||
        !cJSON_AddStringToObject(o, "currency", req->currency ? req->currency : "CNY") ||
        !cJSON_AddStringToObject(o, "buyer", req->buyer ? req->buyer : ""))
        goto cleanup;
    body = cJSON_PrintUnformatted(o);
    if (!body)
        goto cleanup;
    size_t il = strlen("Idempotency-Key: ") + strlen(req->idem_key) + 1;
    idem = malloc(il);
    if (!idem)
        goto cleanup;
    snprintf(idem, il, "Idempotency-Key: %s", req->idem_key);
    const char *headers[] = {"Content-Type: application/json",
                             "Accept: application/json", idem, NULL};
    rc = gw_start(g, 0, "POST", g->charges_url, headers, body, req->deadline_ns, cb, arg);
cleanup:
    free(idem);
    if (body)
        cJSON_free(body);
    cJSON_Delete(o);
    return rc;
}

int fk_gateway_query(fk_gateway *g, const char *idem_key, fk_gateway_cb cb,
                     void *arg) {
    if (!g || !cb || !key_valid(idem_key))
        return FK_EINVAL;
    char *esc = fk_http_escape(idem_key);
    if (!esc)
        return FK_ENOMEM;
    size_t ul = strlen(g->charges_url) + 1 + strlen(esc) + 1;
    char *url = malloc(ul);
    int rc = FK_ENOMEM;
    if (url) {
        snprintf(url, ul, "%s/%s", g->charges_url, esc);
        const char *headers[] = {"Accept: application/json", NULL};
        rc = gw_start(g, 1, "GET", url, headers, NULL, 0, cb, arg);
    }
    free(url);
    free(esc);
    return rc;
}

void fk_gateway_free(fk_gateway *g) {
    if (!g)
        return;
    free(g->charges_url);
    free(g);
}
