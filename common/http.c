/* http.c -- libcurl multi interface driven by libuv (the "multi-uv" pattern).
 *
 * curl tells us which sockets to watch (socket callback) and when to call it
 * back (timer callback); we translate that into one uv_poll_t per socket and
 * one uv_timer_t, and feed readiness back with curl_multi_socket_action().
 * Finished transfers are collected with curl_multi_info_read() and reported
 * to the caller's callback, always outside any curl callback.
 *
 * Socket contexts: each watched socket gets a struct http_sock allocated in
 * the socket callback and attached to curl's socket with curl_multi_assign.
 * On CURL_POLL_REMOVE it is stopped and uv_close'd at once (curl closes the
 * fd right after), and freed only in the close callback; curl may hand us the
 * same fd number again before that, which then gets a fresh context -- the
 * stopped handle no longer owns the fd in libuv, so this is safe.
 *
 * Queueing: at most max_concurrent easy handles are in the multi at once;
 * the rest wait in a FIFO and are added as transfers finish. */
#include "http.h"
#include "err.h"

#include <assert.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_DEFAULT_CONNECT_MS 2000
#define HTTP_DEFAULT_TOTAL_MS   5000
#define HTTP_DEFAULT_CONCURRENT 64
#define HTTP_RETRY_AFTER_MAX    64      /* longest Retry-After value kept */

typedef struct http_req http_req;
typedef struct http_sock http_sock;

struct http_req {
    http_req *prev, *next;      /* in h->active or h->queue */
    fk_http *h;
    CURL *easy;
    struct curl_slist *hdrs;
    fk_http_cb cb;
    void *arg;
    char *buf;                  /* body, NUL-terminated; NULL until data */
    size_t len, cap;
    int truncated;
    int active;                 /* 1: added to the multi */
    int closed_sent;            /* maybe_sent, computed by fk_http_close */
    int oom;                    /* the body buffer could not grow */
    uint64_t created;           /* uv_now() at fk_http_request */
    char *retry_after;
    char errbuf[CURL_ERROR_SIZE];
};

struct http_sock {
    uv_poll_t poll;
    http_sock *prev, *next;     /* in h->socks until the close callback */
    fk_http *h;
    curl_socket_t fd;
    int closing;
};

typedef struct req_list {
    http_req *head, *tail;
    size_t n;
} req_list;

struct fk_http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    fk_http_options opts;
    req_list active;            /* in the multi */
    req_list queue;             /* waiting, FIFO */
    http_sock *socks;           /* every context not yet freed */
    size_t open_handles;        /* timer + socket contexts not yet closed */
    int closing;
    void (*done)(void *arg);
    void *done_arg;
};

static int curl_ready;          /* curl_global_init done (single-threaded) */

/* ---- The one place where curl errors become faka errors ---- */

/* Translate a curl easy code (or, when it is CURLE_OK, a multi code) into an
 * FK_E* code. Timeouts are FK_ETIMEOUT, allocation failures FK_ENOMEM,
 * everything else FK_EHTTP. */
static int http_xlate(CURLcode ec, CURLMcode mc) {
    switch (ec) {
    case CURLE_OK:
        break;
    case CURLE_OPERATION_TIMEDOUT:
        return FK_ETIMEOUT;
    case CURLE_OUT_OF_MEMORY:
        return FK_ENOMEM;
    default:
        return FK_EHTTP;
    }
    switch (mc) {
    case CURLM_OK:
        return 0;
    case CURLM_OUT_OF_MEMORY:
        return FK_ENOMEM;
    default:
        return FK_EHTTP;
    }
}

/* ---- Request lists ---- */

static void list_push(req_list *l, http_req *r) {
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->n++;
}

static void list_unlink(req_list *l, http_req *r) {
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
    assert(l->n > 0);
    l->n--;
}

/* ---- Handle lifetime ---- */

static void http_maybe_finish_close(fk_http *h) {
    if (!h->closing || h->open_handles > 0)
        return;
    void (*done)(void *) = h->done;
    void *arg = h->done_arg;
    free(h);
    if (done)
        done(arg);
}

static void sock_close_cb(uv_handle_t *handle) {
    http_sock *s = handle->data;
    fk_http *h = s->h;
    if (s->prev)
        s->prev->next = s->next;
    else
        h->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
    assert(h->open_handles > 0);
    h->open_handles--;
    http_maybe_finish_close(h);
}

static void sock_close(http_sock *s) {
    if (s->closing)
        return;
    s->closing = 1;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, sock_close_cb);
}

static void timer_close_cb(uv_handle_t *handle) {
    fk_http *h = handle->data;
    assert(h->open_handles > 0);
    h->open_handles--;
    http_maybe_finish_close(h);
}

/* ---- Completion ---- */

static void req_free(http_req *r) {
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->hdrs);
    free(r->buf);
    free(r->retry_after);
    free(r);
}

/* The maybe_sent rule documented in http.h. */
static int req_maybe_sent(const http_req *r) {
    if (!r->active)
        return 0;
    long reqsize = 0;
    curl_off_t pretransfer = 0;
    if (curl_easy_getinfo(r->easy, CURLINFO_REQUEST_SIZE, &reqsize) != CURLE_OK)
        return 1;
    if (curl_easy_getinfo(r->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer) != CURLE_OK)
        return 1;
    return (reqsize > 0 || pretransfer > 0) ? 1 : 0;
}

/* Report r to its owner and free it. r is in no list and no longer in the
 * multi. code/mcode describe curl's outcome; err_override (FK_ECLOSED or an
 * error of ours) wins over them when nonzero. */
static void req_complete(http_req *r, CURLcode code, CURLMcode mcode,
                         int err_override, int maybe_sent) {
    fk_http_response resp;
    memset(&resp, 0, sizeof(resp));
    resp.err = err_override ? err_override : r->oom ? FK_ENOMEM : http_xlate(code, mcode);
    resp.maybe_sent = maybe_sent;
    if (r->active && r->easy) {
        long status = 0;
        if (curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK)
            resp.status = status;
    }
    if (resp.err == 0 && resp.status <= 0) {
        /* A finished transfer without a status line cannot happen over HTTP;
         * treat it as a transport failure rather than trust it. */
        resp.err = FK_EHTTP;
        resp.status = 0;
    }
    resp.body = r->buf ? r->buf : "";
    resp.body_len = r->len;
    resp.truncated = r->truncated;
    if (resp.err == 0)
        resp.errmsg = "";
    else if (err_override == FK_ECLOSED)
        resp.errmsg = "http client closed";
    else if (r->errbuf[0])
        resp.errmsg = r->errbuf;
    else if (code != CURLE_OK)
        resp.errmsg = curl_easy_strerror(code);
    else if (mcode != CURLM_OK)
        resp.errmsg = curl_multi_strerror(mcode);
    else
        resp.errmsg = fk_strerror(resp.err);
    resp.retry_after = r->retry_after;
    r->cb(r->arg, &resp);
    req_free(r);
}

/* Add r to the multi; on success it is in h->active. */
static int req_start(fk_http *h, http_req *r) {
    CURLMcode mc = curl_multi_add_handle(h->multi, r->easy);
    if (mc != CURLM_OK)
        return http_xlate(CURLE_OK, mc);
    r->active = 1;
    list_push(&h->active, r);
    return 0;
}

/* Move queued requests onto the wire while there is room. A request that
 * cannot be started is completed with the error (we are on the loop, so the
 * callback rule holds). */
static void http_pump(fk_http *h) {
    while (!h->closing && h->queue.head &&
           h->active.n < (size_t)h->opts.max_concurrent) {
        http_req *r = h->queue.head;
        list_unlink(&h->queue, r);
        /* The total timeout counts from fk_http_request, queue time
         * included: a caller fencing a request with a lease relies on it
         * ending in time. A request whose time ran out in the queue never
         * goes out (maybe_sent 0). */
        uint64_t waited = uv_now(h->loop) - r->created;
        if (waited >= (uint64_t)h->opts.total_timeout_ms) {
            req_complete(r, CURLE_OK, CURLM_OK, FK_ETIMEOUT, 0);
            continue;
        }
        curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS,
                         (long)((uint64_t)h->opts.total_timeout_ms - waited));
        int rc = req_start(h, r);
        if (rc < 0)
            req_complete(r, CURLE_OK, CURLM_OK, rc, 0);
    }
}

/* Report every finished transfer. Stops as soon as a callback closed h. */
static void http_check_done(fk_http *h) {
    CURLMsg *msg;
    int left;
    while (!h->closing && (msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result;       /* msg dies with remove */
        char *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        http_req *r = (http_req *)(void *)priv;
        assert(r && r->easy == easy && r->active);
        int maybe_sent = code == CURLE_OK ? 1 : req_maybe_sent(r);
        list_unlink(&h->active, r);
        curl_multi_remove_handle(h->multi, easy);
        http_pump(h);
        req_complete(r, code, CURLM_OK, 0, maybe_sent);
        http_pump(h);
    }
}

/* ---- curl <-> libuv glue ---- */

static void on_poll(uv_poll_t *handle, int status, int events) {
    http_sock *s = handle->data;
    fk_http *h = s->h;
    if (h->closing || s->closing)
        return;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    int running = 0;
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    http_check_done(h);
}

static void on_timer(uv_timer_t *timer) {
    fk_http *h = timer->data;
    if (h->closing)
        return;
    int running = 0;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    http_check_done(h);
}

/* CURLMOPT_TIMERFUNCTION: (re)arm or stop our single timer. Never calls
 * curl back directly (a 0 ms timeout runs from the loop). */
static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp) {
    fk_http *h = userp;
    if (h->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* CURLMOPT_SOCKETFUNCTION: watch, rewatch or forget one socket. */
static int curl_sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp,
                        void *socketp) {
    fk_http *h = userp;
    http_sock *s = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (s && !s->closing) {
            curl_multi_assign(h->multi, fd, NULL);
            sock_close(s);
        }
        return 0;
    }
    if (h->closing)
        return 0;
    if (!s) {
        /* A context for this fd number that curl never told us to remove
         * would make uv_poll_init_socket fail with UV_EEXIST: retire it. */
        for (http_sock *o = h->socks; o; o = o->next)
            if (o->fd == fd && !o->closing)
                sock_close(o);
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->h = h;
        s->fd = fd;
        s->next = h->socks;
        if (h->socks)
            h->socks->prev = s;
        h->socks = s;
        h->open_handles++;
        curl_multi_assign(h->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    if (uv_poll_start(&s->poll, events, on_poll) != 0)
        return -1;
    return 0;
}

/* ---- Easy-handle callbacks ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp) {
    http_req *r = userp;
    size_t n = size * nmemb;
    size_t room = FK_HTTP_BODY_MAX - r->len;
    size_t take = n < room ? n : room;
    if (take < n)
        r->truncated = 1;
    if (take == 0)
        return n;
    if (r->len + take + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->len + take + 1)
            cap *= 2;
        if (cap > FK_HTTP_BODY_MAX + 1)
            cap = FK_HTTP_BODY_MAX + 1;
        char *nb = realloc(r->buf, cap);
        if (!nb) {
            r->oom = 1;
            return 0;   /* curl aborts with CURLE_WRITE_ERROR */
        }
        r->buf = nb;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, take);
    r->len += take;
    r->buf[r->len] = '\0';
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp) {
    http_req *r = userp;
    size_t n = size * nmemb;
    static const char name[] = "Retry-After:";
    const size_t nl = sizeof(name) - 1;

    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A new response (after 1xx, or curl's retry): forget the old one. */
        free(r->retry_after);
        r->retry_after = NULL;
        return n;
    }
    if (n > nl && strncasecmp(data, name, nl) == 0) {
        const char *v = data + nl;
        const char *end = data + n;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == ' ' || end[-1] == '\t' ||
                           end[-1] == '\r' || end[-1] == '\n'))
            end--;
        size_t vl = (size_t)(end - v);
        if (vl > HTTP_RETRY_AFTER_MAX)
            vl = HTTP_RETRY_AFTER_MAX;
        char *copy = malloc(vl + 1);
        if (!copy)
            return n;   /* a hint only; losing it is harmless */
        memcpy(copy, v, vl);
        copy[vl] = '\0';
        free(r->retry_after);
        r->retry_after = copy;
    }
    return n;
}

/* ---- Request validation ---- */

/* Absolute http(s) URL with a host, as curl itself parses it. */
static int url_allowed(const char *url) {
    int ok = 0;
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    if (!u)
        return FK_ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
        goto out;
    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)
        goto out;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0])
        goto out;
    ok = 1;
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok ? 0 : FK_EINVAL;
}

static int method_valid(const char *m) {
    if (!m || !m[0] || strlen(m) > 16)
        return 0;
    for (const char *p = m; *p; p++)
        if (*p < 'A' || *p > 'Z')
            return 0;
    return 1;
}

static int header_valid(const char *hdr) {
    const char *colon = strchr(hdr, ':');
    if (!colon || colon == hdr)
        return 0;
    for (const char *p = hdr; *p; p++)
        if (*p == '\r' || *p == '\n' || *p == '\0')
            return 0;
    return 1;
}

/* Build the easy handle for one request. */
static int req_setup(fk_http *h, http_req *r, const char *method,
                     const char *url, const char *const *headers,
                     const char *body, size_t body_len) {
    CURL *e = curl_easy_init();
    if (!e)
        return FK_ENOMEM;
    r->easy = e;

    if (headers) {
        for (size_t i = 0; headers[i]; i++) {
            struct curl_slist *n = curl_slist_append(r->hdrs, headers[i]);
            if (!n)
                return FK_ENOMEM;
            r->hdrs = n;
        }
    }
    if (body || strcmp(method, "POST") == 0) {
        /* No "Expect: 100-continue" round trip for our small bodies. */
        struct curl_slist *n = curl_slist_append(r->hdrs, "Expect:");
        if (!n)
            return FK_ENOMEM;
        r->hdrs = n;
    }

    CURLcode c = CURLE_OK;
#define SET(opt, val) do { if (c == CURLE_OK) c = curl_easy_setopt(e, opt, val); } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PRIVATE, (void *)r);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, h->opts.connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, h->opts.total_timeout_ms);
    SET(CURLOPT_SSL_VERIFYPEER, h->opts.verify_tls ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, h->opts.verify_tls ? 2L : 0L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_USERAGENT, "faka/0.1");
#if LIBCURL_VERSION_NUM >= 0x075700
    /* Never join a still-running resolver thread (curl's threaded DNS) when
     * a transfer times out or is cancelled: that would block the loop. The
     * detached thread frees itself when getaddrinfo returns. */
    SET(CURLOPT_QUICK_EXIT, 1L);
#endif
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)r);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)r);
    if (r->hdrs)
        SET(CURLOPT_HTTPHEADER, r->hdrs);
    if (strcmp(method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, method);
        if (body || strcmp(method, "POST") == 0) {
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
            SET(CURLOPT_COPYPOSTFIELDS, body ? body : "");
        }
    }
#undef SET
    if (c != CURLE_OK)
        return http_xlate(c, CURLM_OK);
    return 0;
}

/* ---- Public API ---- */

void fk_http_options_default(fk_http_options *opts) {
    opts->connect_timeout_ms = HTTP_DEFAULT_CONNECT_MS;
    opts->total_timeout_ms = HTTP_DEFAULT_TOTAL_MS;
    opts->max_concurrent = HTTP_DEFAULT_CONCURRENT;
    opts->verify_tls = 1;
}

int fk_http_init(fk_http **out, uv_loop_t *loop, const fk_http_options *opts) {
    if (!out || !loop)
        return FK_EINVAL;
    *out = NULL;
    fk_http_options o;
    fk_http_options_default(&o);
    if (opts) {
        if (opts->connect_timeout_ms < 0 || opts->total_timeout_ms < 0 ||
            opts->max_concurrent < 0)
            return FK_EINVAL;
        if (opts->connect_timeout_ms)
            o.connect_timeout_ms = opts->connect_timeout_ms;
        if (opts->total_timeout_ms)
            o.total_timeout_ms = opts->total_timeout_ms;
        if (opts->max_concurrent)
            o.max_concurrent = opts->max_concurrent;
        o.verify_tls = opts->verify_tls ? 1 : 0;
    }
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return FK_EHTTP;
        curl_ready = 1;
    }

    fk_http *h = calloc(1, sizeof(*h));
    if (!h)
        return FK_ENOMEM;
    h->loop = loop;
    h->opts = o;
    h->multi = curl_multi_init();
    if (!h->multi) {
        free(h);
        return FK_ENOMEM;
    }
    CURLMcode mc = CURLM_OK;
#define MSET(opt, val) do { if (mc == CURLM_OK) mc = curl_multi_setopt(h->multi, opt, val); } while (0)
    MSET(CURLMOPT_SOCKETFUNCTION, curl_sock_cb);
    MSET(CURLMOPT_SOCKETDATA, (void *)h);
    MSET(CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    MSET(CURLMOPT_TIMERDATA, (void *)h);
    MSET(CURLMOPT_MAXCONNECTS, (long)o.max_concurrent);
    MSET(CURLMOPT_MAX_HOST_CONNECTIONS, (long)o.max_concurrent);
#undef MSET
    if (mc != CURLM_OK) {
        curl_multi_cleanup(h->multi);
        free(h);
        return http_xlate(CURLE_OK, mc);
    }
    uv_timer_init(loop, &h->timer);     /* cannot fail */
    h->timer.data = h;
    h->open_handles = 1;
    *out = h;
    return 0;
}

int fk_http_request(fk_http *h, const char *method, const char *url,
                    const char *const *headers, const char *body,
                    size_t body_len, fk_http_cb cb, void *arg) {
    if (!h || !url || !cb || !method_valid(method) || (!body && body_len))
        return FK_EINVAL;
    if (body_len && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0))
        return FK_EINVAL;
    if (h->closing)
        return FK_ECLOSED;
    if (headers)
        for (size_t i = 0; headers[i]; i++)
            if (!header_valid(headers[i]))
                return FK_EINVAL;
    int rc = url_allowed(url);
    if (rc < 0)
        return rc;

    http_req *r = calloc(1, sizeof(*r));
    if (!r)
        return FK_ENOMEM;
    r->h = h;
    r->cb = cb;
    r->arg = arg;
    r->created = uv_now(h->loop);
    rc = req_setup(h, r, method, url, headers, body, body_len);
    if (rc == 0) {
        if (!h->queue.head && h->active.n < (size_t)h->opts.max_concurrent)
            rc = req_start(h, r);
        else
            list_push(&h->queue, r);
    }
    if (rc < 0) {
        req_free(r);
        return rc;
    }
    return 0;
}

size_t fk_http_inflight(const fk_http *h) {
    return h ? h->active.n + h->queue.n : 0;
}

void fk_http_close(fk_http *h, void (*done)(void *arg), void *arg) {
    if (!h || h->closing)
        return;
    h->closing = 1;
    h->done = done;
    h->done_arg = arg;
    uv_timer_stop(&h->timer);

    /* Detach every transfer first, so the callbacks below see a client that
     * is already shut: they may call anything (fk_http_request fails). */
    req_list cancelled = {NULL, NULL, 0};
    http_req *r;
    while ((r = h->active.head)) {
        list_unlink(&h->active, r);
        r->closed_sent = req_maybe_sent(r);
        curl_multi_remove_handle(h->multi, r->easy);
        list_push(&cancelled, r);
    }
    while ((r = h->queue.head)) {
        list_unlink(&h->queue, r);
        r->closed_sent = 0;
        list_push(&cancelled, r);
    }
    for (http_sock *s = h->socks; s; s = s->next)
        sock_close(s);
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    uv_close((uv_handle_t *)&h->timer, timer_close_cb);

    while ((r = cancelled.head)) {
        list_unlink(&cancelled, r);
        req_complete(r, CURLE_OK, CURLM_OK, FK_ECLOSED, r->closed_sent);
    }
}

char *fk_http_escape(const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
            (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 0xF];
        }
    }
    *o = '\0';
    return out;
}
