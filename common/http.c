/* http.c -- libcurl multi interface driven by libuv (the "multi-uv" pattern).
 *
 * curl tells us which sockets to watch (socket callback) and when to call it
 * back (timer callback); we keep those sockets in an epoll set of our own,
 * which libuv watches as one fd (one uv_poll_t), plus one uv_timer_t, and
 * feed readiness back with curl_multi_socket_action().
 * Finished transfers are collected with curl_multi_info_read() and reported
 * to the caller's callback, always outside any curl callback.
 *
 * Cost per request is what this file is tuned for (a gateway call is a tiny
 * request on a keep-alive loopback connection, so fixed costs dominate):
 *
 * Easy handles are pooled. A request owns one only while it is in the multi
 * (a queued request holds copies of its URL and body instead), so at most
 * max_concurrent handles ever exist. Options that never change are set once
 * when a handle is made; a request sets only URL, headers, method, body and
 * timeout, and CURLOPT_HTTPGET first undoes whatever method the previous
 * request left. Because a pooled handle still holds the previous transfer's
 * CURLINFO values until curl starts the next one, every CURLINFO read is
 * gated on r->reached (curl's prereq callback ran for this request).
 *
 * Sockets: curl asks us to watch a socket for the length of a transfer and
 * to forget it (CURL_POLL_REMOVE) when the transfer ends, even though its
 * keep-alive connection stays open in curl's pool for the next one. With a
 * uv_poll_t per socket that is an epoll_ctl DEL at every end and an ADD at
 * every start: two syscalls per gateway call for nothing. In our own epoll
 * set a socket instead stays registered ("parked") between transfers, so
 * the next transfer on that connection usually costs no epoll_ctl at all.
 * A parked socket is watched for input only; if it becomes ready while
 * parked (the server closed the idle connection, or sent junk), we take it
 * out of the set, so level-triggered readiness cannot spin the loop, and
 * curl finds the connection dead when it next checks it. Only a socket that
 * curl opened through on_open_socket and that has waited for input (a
 * connected socket that has carried a request) is parked; anything else is
 * taken out of the set on REMOVE. libuv never sees curl's fds, so curl
 * closing one behind our back cannot trip libuv (which aborts on an fd it
 * watches being reused); we take a registered fd out of the set in
 * on_close_socket before closing it, and every event carries a generation
 * number, so an event for an fd number that was closed and reused within one
 * epoll_wait batch is ignored. h->socks maps fd -> context (an array of
 * plain structs; nothing to free per socket).
 *
 * Queueing: at most max_concurrent requests are in the multi at once; the
 * rest wait in a FIFO and are added as transfers finish. */
#include "http.h"
#include "err.h"

#include <assert.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define HTTP_DEFAULT_CONNECT_MS 2000
#define HTTP_DEFAULT_TOTAL_MS   5000
#define HTTP_DEFAULT_CONCURRENT 64
#define HTTP_RETRY_AFTER_MAX    64      /* longest Retry-After value kept */
/* curl's receive buffer per easy handle (default 16 KiB). Gateway answers
 * are a few hundred bytes; 1024 is curl's minimum. */
#define HTTP_RECV_BUFFER        1024L
/* A pooled handle keeps its body buffer up to this size; a larger one (a
 * rare big answer) is freed when its request ends. */
#define HTTP_BODY_KEEP          4096
/* Events taken from our epoll set per wake-up; more stay ready (level
 * triggered) and wake the loop again. */
#define HTTP_EPOLL_BATCH        64

typedef struct http_req http_req;
typedef struct http_sock http_sock;
typedef struct http_easy http_easy;

enum { HTTP_GET, HTTP_HEAD, HTTP_POST, HTTP_OTHER };

/* A pooled easy handle. Its constant options point here (write, header and
 * prereq data, private, error buffer); req says which request runs on it. */
struct http_easy {
    CURL *easy;
    http_easy *next;            /* in h->idle while unused */
    http_req *req;              /* the request on it, NULL while idle */
    char *buf;                  /* response body, NUL-terminated; kept */
    size_t cap;
    char errbuf[CURL_ERROR_SIZE];
};

/* One request, in one allocation: the struct, then its header list (nodes
 * and strings), then -- only while it waits in the queue -- its URL and
 * body. */
struct http_req {
    http_req *prev, *next;      /* in h->active or h->queue */
    fk_http *h;
    http_easy *e;               /* set while in the multi, and until done */
    struct curl_slist *hdrs;    /* NULL if none */
    fk_http_cb cb;
    void *arg;
    const char *url;            /* queued requests only */
    const char *body;           /* queued requests only; NULL if none */
    size_t body_len;
    size_t len;                 /* bytes of body received */
    int method;                 /* HTTP_GET ... */
    int truncated;
    int active;                 /* 1: added to the multi */
    int reached;                /* curl's prereq callback ran: curl's
                                   CURLINFO values are this request's */
    int closed_sent;            /* maybe_sent, computed by fk_http_close */
    int oom;                    /* the body buffer could not grow */
    int late;                   /* aborted unsent: past deadline_ns */
    int resent;                 /* curl sent it again (see http.h, Re-sends) */
    uint64_t deadline_ns;       /* uv_hrtime() after which it must not go
                                   out; 0 = none (fk_http_request_by) */
    uint64_t started_ns;        /* uv_hrtime() when it went on the wire */
    int has_retry_after;
    char custom[17];            /* method name for HTTP_OTHER */
    char retry_after[HTTP_RETRY_AFTER_MAX + 1];
};

/* What we know of one fd curl uses; h->socks[fd]. */
struct http_sock {
    uint32_t gen;               /* bumped for each new socket on this fd */
    uint32_t reg;               /* epoll events it is registered with; 0: not
                                   in the set */
    uint32_t want;              /* epoll events curl asked for; 0: none (a
                                   parked socket) */
    unsigned live : 1;          /* a socket we know of is on this fd */
    unsigned owned : 1;         /* opened through on_open_socket: lives until
                                   on_close_socket */
    unsigned parkable : 1;      /* owned and has waited for input */
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
    http_easy *idle;            /* pooled easy handles */
    int epfd;                   /* our epoll set of curl's sockets */
    uv_poll_t ep_poll;          /* libuv watches epfd */
    http_sock *socks;           /* by fd; entries past nsocks are not live */
    size_t nsocks;              /* size of socks */
    size_t open_handles;        /* uv handles not yet closed */
    int closing;
    void (*done)(void *arg);
    void *done_arg;
    uint64_t wire_avg_ns;       /* moving average of a request's time on the
                                   wire (fk_http_capacity); 0: none yet */
};

static int curl_ready;          /* curl_global_init done (single-threaded) */

static void http_skip_ssh_crypto(void);

/* curl_global_init, once per process, after telling libssh2 to skip its
 * crypto set-up (see http_skip_ssh_crypto). 0 or FK_EHTTP. */
static int curl_setup(void) {
    if (curl_ready)
        return 0;
    http_skip_ssh_crypto();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return FK_EHTTP;
    curl_ready = 1;
    return 0;
}

/* Asked of a scratch handle, the way the pooled ones will be set up: curl
 * refuses a protocol list naming a protocol it was built without.
 * (curl_version_info would say the same, but it asks every library libcurl
 * links for its version, which maps ~250 KiB more of them into RSS.) */
int fk_http_has_https(void) {
    static int has = -1;
    if (has >= 0)
        return has;
    /* Could not ask (curl_global_init failed, out of memory): say yes and
     * ask again next time, rather than blame a missing HTTPS; fk_http_init
     * fails on its own in both cases. */
    if (curl_setup() != 0)
        return 1;
    CURL *x = curl_easy_init();
    if (!x)
        return 1;
    has = curl_easy_setopt(x, CURLOPT_PROTOCOLS_STR, "https") == CURLE_OK;
    curl_easy_cleanup(x);
    return has;
}

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

static http_sock *sock_find(const fk_http *h, curl_socket_t fd) {
    if (fd < 0 || (size_t)fd >= h->nsocks || !h->socks[fd].live)
        return NULL;
    return &h->socks[fd];
}

/* The context for a new socket on fd, not yet in the epoll set. A context
 * still live under that fd number belongs to a socket that was closed
 * without us hearing of it; the kernel took it out of the set with its
 * last close, and sock_watch copes if it did not. NULL on failure. The
 * pointer is valid until the next sock_new. */
static http_sock *sock_new(fk_http *h, curl_socket_t fd, int owned) {
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= h->nsocks) {
        size_t n = h->nsocks ? h->nsocks : 64;
        while (n <= (size_t)fd)
            n *= 2;
        http_sock *t = realloc(h->socks, n * sizeof(*t));
        if (!t)
            return NULL;
        memset(t + h->nsocks, 0, (n - h->nsocks) * sizeof(*t));
        h->socks = t;
        h->nsocks = n;
    }
    http_sock *s = &h->socks[fd];
    uint32_t gen = s->gen + 1;
    memset(s, 0, sizeof(*s));
    s->gen = gen;
    s->live = 1;
    s->owned = owned ? 1 : 0;
    return s;
}

/* The data an epoll event carries for fd: the fd and its generation. */
static uint64_t sock_key(curl_socket_t fd, const http_sock *s) {
    return (uint64_t)(uint32_t)fd | ((uint64_t)s->gen << 32);
}

/* Make fd's registration in the epoll set match events (0: out of the
 * set). Costs a syscall only when it changes. An fd the set lost or kept
 * behind our back (closed and reused) is handled by falling back between
 * ADD and MOD -- except that with readd 0 an fd the set lost stays out (see
 * parking in curl_sock_cb). 0, or a negative errno (then s is out of the
 * set as far as we know). */
static int sock_watch(fk_http *h, curl_socket_t fd, http_sock *s, uint32_t events,
                      int readd) {
    if (s->reg == events)
        return 0;
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.u64 = sock_key(fd, s);
    int rc;
    if (events == 0) {
        rc = epoll_ctl(h->epfd, EPOLL_CTL_DEL, fd, NULL);
        if (rc < 0 && (errno == ENOENT || errno == EBADF))
            rc = 0;
    } else if (s->reg == 0) {
        rc = epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev);
        if (rc < 0 && errno == EEXIST)
            rc = epoll_ctl(h->epfd, EPOLL_CTL_MOD, fd, &ev);
    } else {
        rc = epoll_ctl(h->epfd, EPOLL_CTL_MOD, fd, &ev);
        if (rc < 0 && errno == ENOENT && readd)
            rc = epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev);
    }
    if (rc < 0) {
        int e = errno;
        s->reg = 0;
        return -e;
    }
    s->reg = events;
    return 0;
}

static void handle_closed_cb(uv_handle_t *handle) {
    fk_http *h = handle->data;
    assert(h->open_handles > 0);
    h->open_handles--;
    http_maybe_finish_close(h);
}

/* ---- Easy-handle callbacks ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp) {
    http_easy *e = userp;
    http_req *r = e->req;
    size_t n = size * nmemb;
    size_t room = FK_HTTP_BODY_MAX - r->len;
    size_t take = n < room ? n : room;
    if (take < n)
        r->truncated = 1;
    if (take == 0)
        return n;
    if (r->len + take + 1 > e->cap) {
        size_t cap = e->cap ? e->cap : 256;   /* gateway answers are small */
        while (cap < r->len + take + 1)
            cap *= 2;
        if (cap > FK_HTTP_BODY_MAX + 1)
            cap = FK_HTTP_BODY_MAX + 1;
        char *nb = realloc(e->buf, cap);
        if (!nb) {
            r->oom = 1;
            return 0;   /* curl aborts with CURLE_WRITE_ERROR */
        }
        e->buf = nb;
        e->cap = cap;
    }
    memcpy(e->buf + r->len, data, take);
    r->len += take;
    e->buf[r->len] = '\0';
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp) {
    http_easy *e = userp;
    http_req *r = e->req;
    size_t n = size * nmemb;
    static const char name[] = "Retry-After:";
    const size_t nl = sizeof(name) - 1;

    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A new response (after 1xx, or curl's retry): forget the old one. */
        r->has_retry_after = 0;
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
        memcpy(r->retry_after, v, vl);
        r->retry_after[vl] = '\0';
        r->has_retry_after = 1;
    }
    return n;
}

/* 1 if r has a deadline and the real time (not the loop's cached one) is
 * past it. */
static int req_past_deadline(const http_req *r) {
    return r->deadline_ns && uv_hrtime() >= r->deadline_ns;
}

/* CURLOPT_PREREQFUNCTION: the connection is ready and the request is about
 * to go out. From here on curl's CURLINFO values describe this request.
 * Past the request's deadline it does not go out: aborted before its first
 * byte, it is late and not reached (maybe_sent 0). A re-send of a request
 * that already went out (reached) is aborted too, but stays reached: the
 * first send may have landed. */
static int on_prereq(void *userp, char *primary_ip, char *local_ip,
                     int primary_port, int local_port) {
    http_easy *e = userp;
    http_req *r = e->req;
    if (r->reached)
        r->resent = 1; /* curl's own re-send on a fresh connection */
    if (req_past_deadline(r)) {
        if (!r->reached)
            r->late = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    r->reached = 1;
    return CURL_PREREQFUNC_OK;
}

/* CURLOPT_OPENSOCKETFUNCTION: make the socket as curl would, and give it
 * a context for life (see the top of this file). */
static curl_socket_t on_open_socket(void *userp, curlsocktype purpose,
                                    struct curl_sockaddr *addr) {
    fk_http *h = userp;
    curl_socket_t fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC,
                              addr->protocol);
    if (fd == CURL_SOCKET_BAD || h->closing)
        return fd;
    if (!sock_new(h, fd, 1)) {
        close(fd);
        return CURL_SOCKET_BAD;
    }
    return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: out of our epoll set first, then closed. */
static int on_close_socket(void *userp, curl_socket_t fd) {
    fk_http *h = userp;
    http_sock *s = sock_find(h, fd);
    if (s) {
        (void)sock_watch(h, fd, s, 0, 0);  /* a failure: close drops it anyway */
        s->live = 0;
    }
    return close(fd);
}

/* ---- The easy-handle pool ---- */

static void easy_destroy(http_easy *e) {
    curl_easy_cleanup(e->easy);
    free(e->buf);
    free(e);
}

/* An idle pooled handle, or a new one with every constant option set.
 * NULL and *rc < 0 on failure. */
static http_easy *easy_get(fk_http *h, int *rc) {
    http_easy *e = h->idle;
    if (e) {
        h->idle = e->next;
        e->next = NULL;
        return e;
    }
    e = calloc(1, sizeof(*e));
    if (!e || !(e->easy = curl_easy_init())) {
        free(e);
        *rc = FK_ENOMEM;
        return NULL;
    }
    CURL *x = e->easy;
    CURLcode c = CURLE_OK;
#define SET(opt, val) do { if (c == CURLE_OK) c = curl_easy_setopt(x, opt, val); } while (0)
    SET(CURLOPT_PRIVATE, (void *)e);
    SET(CURLOPT_NOSIGNAL, 1L);
    /* curl refuses a list naming a protocol it was built without */
    const char *protos = fk_http_has_https() ? "http,https" : "http";
    SET(CURLOPT_PROTOCOLS_STR, protos);
    SET(CURLOPT_REDIR_PROTOCOLS_STR, protos);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, h->opts.connect_timeout_ms);
    SET(CURLOPT_SSL_VERIFYPEER, h->opts.verify_tls ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, h->opts.verify_tls ? 2L : 0L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_USERAGENT, "faka/0.1");
    SET(CURLOPT_BUFFERSIZE, HTTP_RECV_BUFFER);
#if LIBCURL_VERSION_NUM >= 0x075700
    /* Never join a still-running resolver thread (curl's threaded DNS) when
     * a transfer times out or is cancelled: that would block the loop. The
     * detached thread frees itself when getaddrinfo returns. */
    SET(CURLOPT_QUICK_EXIT, 1L);
#endif
    SET(CURLOPT_ERRORBUFFER, e->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)e);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)e);
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, (void *)e);
    SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SET(CURLOPT_OPENSOCKETDATA, (void *)h);
    SET(CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    SET(CURLOPT_CLOSESOCKETDATA, (void *)h);
#undef SET
    if (c != CURLE_OK) {
        easy_destroy(e);
        *rc = http_xlate(c, CURLM_OK);
        return NULL;
    }
    return e;
}

/* Return e (no longer in the multi) to the pool; once the client is
 * closing, destroy it instead. */
static void easy_put(fk_http *h, http_easy *e) {
    e->req = NULL;
    if (h->closing) {
        easy_destroy(e);
        return;
    }
    /* The request's header list dies with it: never leave curl a pointer
     * to it, even on an idle handle. */
    curl_easy_setopt(e->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    if (e->cap > HTTP_BODY_KEEP) {
        free(e->buf);
        e->buf = NULL;
        e->cap = 0;
    }
    e->next = h->idle;
    h->idle = e;
}

/* ---- Completion ---- */

/* The maybe_sent rule documented in http.h. Before curl's prereq callback
 * no request byte can have left (and the handle's CURLINFO values may still
 * be a previous request's). */
static int req_maybe_sent(const http_req *r) {
    if (!r->active || !r->reached)
        return 0;
    long reqsize = 0;
    curl_off_t pretransfer = 0;
    if (curl_easy_getinfo(r->e->easy, CURLINFO_REQUEST_SIZE, &reqsize) != CURLE_OK)
        return 1;
    if (curl_easy_getinfo(r->e->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer) != CURLE_OK)
        return 1;
    return (reqsize > 0 || pretransfer > 0) ? 1 : 0;
}

/* Report r to its owner, then free it and return its easy handle to the
 * pool. r is in no list and no longer in the multi. code/mcode describe
 * curl's outcome; err_override (FK_ECLOSED or an error of ours) wins over
 * them when nonzero. */
static void req_complete(fk_http *h, http_req *r, CURLcode code, CURLMcode mcode,
                         int err_override, int maybe_sent) {
    http_easy *e = r->e;
    fk_http_response resp;
    memset(&resp, 0, sizeof(resp));
    resp.err = err_override ? err_override : r->oom ? FK_ENOMEM : http_xlate(code, mcode);
    resp.maybe_sent = maybe_sent;
    resp.resent = r->resent;
    if (e && r->reached) {
        long status = 0;
        if (curl_easy_getinfo(e->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK)
            resp.status = status;
    }
    if (resp.err == 0 && resp.status <= 0) {
        /* A finished transfer without a status line cannot happen over HTTP;
         * treat it as a transport failure rather than trust it. */
        resp.err = FK_EHTTP;
        resp.status = 0;
    }
    resp.body = e && r->len ? e->buf : "";
    resp.body_len = r->len;
    resp.truncated = r->truncated;
    if (resp.err == 0)
        resp.errmsg = "";
    else if (err_override == FK_ECLOSED)
        resp.errmsg = "http client closed";
    else if (e && e->errbuf[0])
        resp.errmsg = e->errbuf;
    else if (code != CURLE_OK)
        resp.errmsg = curl_easy_strerror(code);
    else if (mcode != CURLM_OK)
        resp.errmsg = curl_multi_strerror(mcode);
    else
        resp.errmsg = fk_strerror(resp.err);
    resp.retry_after = r->has_retry_after ? r->retry_after : NULL;
    if (r->late && err_override != FK_ECLOSED) {
        resp.late = 1;
        resp.err = FK_ETIMEOUT;
        resp.maybe_sent = 0;
        resp.status = 0;
        resp.errmsg = "not sent: its deadline passed before it could go out";
    }
    r->cb(r->arg, &resp);
    if (e)
        easy_put(h, e);
    free(r);
}

/* Put r on the wire: take a pooled handle, set this request's options, add
 * it to the multi; on success r is in h->active. url and body are read
 * here only (curl copies them). On failure r is left without a handle. */
static int req_start(fk_http *h, http_req *r, const char *url, const char *body,
                     size_t body_len, long timeout_ms) {
    int rc = 0;
    http_easy *e = easy_get(h, &rc);
    if (!e)
        return rc;
    e->req = r;
    r->started_ns = uv_hrtime();
    e->errbuf[0] = '\0';
    if (e->buf)
        e->buf[0] = '\0';
    CURL *x = e->easy;
    CURLcode c = CURLE_OK;
#define SET(opt, val) do { if (c == CURLE_OK) c = curl_easy_setopt(x, opt, val); } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_HTTPHEADER, r->hdrs);
    SET(CURLOPT_TIMEOUT_MS, timeout_ms);
    /* Back to a plain GET first: this undoes the method, body and NOBODY a
     * previous request on this handle may have set. */
    SET(CURLOPT_HTTPGET, 1L);
    SET(CURLOPT_CUSTOMREQUEST, r->method == HTTP_OTHER ? r->custom : NULL);
    if (r->method == HTTP_HEAD)
        SET(CURLOPT_NOBODY, 1L);
    if (body || r->method == HTTP_POST) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        SET(CURLOPT_COPYPOSTFIELDS, body ? body : "");
    }
#undef SET
    rc = http_xlate(c, CURLM_OK);
    if (rc == 0)
        rc = http_xlate(CURLE_OK, curl_multi_add_handle(h->multi, x));
    if (rc < 0) {
        /* Half-set options: do not pool this handle. */
        easy_destroy(e);
        return rc;
    }
    r->e = e;
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
        /* The total timeout counts from here, when the request goes out:
         * time in the queue is this process's own backlog, not the
         * server's slowness. (Counted from fk_http_request until the
         * fourteenth session, a slow but healthy gateway made queued
         * requests time out unsent, and every caller took that for a
         * gateway failure: an attempt used, the breaker opened, the
         * reaper sent orders to review.) What must not go out late has
         * a deadline, checked here and right before it is sent. */
        if (req_past_deadline(r)) {
            r->late = 1;
            req_complete(h, r, CURLE_OK, CURLM_OK, FK_ETIMEOUT, 0);
            continue;
        }
        int rc = req_start(h, r, r->url, r->body, r->body_len, h->opts.total_timeout_ms);
        if (rc < 0)
            req_complete(h, r, CURLE_OK, CURLM_OK, rc, 0);
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
        http_easy *e = (http_easy *)(void *)priv;
        http_req *r = e ? e->req : NULL;
        assert(r && r->e == e && r->active);
        int maybe_sent = code == CURLE_OK ? 1 : req_maybe_sent(r);
        if (!r->late) { /* one that never went out says nothing of the server */
            uint64_t d = uv_hrtime() - r->started_ns;
            h->wire_avg_ns = h->wire_avg_ns ? h->wire_avg_ns - h->wire_avg_ns / 8 + d / 8 : d;
        }
        list_unlink(&h->active, r);
        curl_multi_remove_handle(h->multi, easy);
        /* Report first, then refill: the finished handle is back in the
         * pool by then, so the next queued request reuses it. */
        req_complete(h, r, code, CURLM_OK, 0, maybe_sent);
        http_pump(h);
    }
}

/* ---- curl <-> libuv glue ---- */

/* libuv: our epoll set has ready sockets. Each goes to curl, unless it is
 * stale (its fd was closed, or closed and reused, earlier in this batch) or
 * parked (see the top of this file: it leaves the set). */
static void on_epoll(uv_poll_t *handle, int status, int events) {
    fk_http *h = handle->data;
    struct epoll_event evs[HTTP_EPOLL_BATCH];
    (void)events;
    if (h->closing || status < 0)
        return;
    int n = epoll_wait(h->epfd, evs, HTTP_EPOLL_BATCH, 0);
    for (int i = 0; i < n && !h->closing; i++) {
        curl_socket_t fd = (curl_socket_t)(uint32_t)evs[i].data.u64;
        uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
        uint32_t got = evs[i].events;
        http_sock *s = sock_find(h, fd);
        if (!s || s->gen != gen)
            continue;
        if (s->want == 0) {
            (void)sock_watch(h, fd, s, 0, 0);
            continue;
        }
        int flags = 0;
        if (got & (EPOLLERR | EPOLLHUP))
            got |= s->want;     /* let curl find the error on its next I/O */
        if (got & s->want & EPOLLIN)
            flags |= CURL_CSELECT_IN;
        if (got & s->want & EPOLLOUT)
            flags |= CURL_CSELECT_OUT;
        if (!flags)
            continue;
        int running = 0;
        curl_multi_socket_action(h->multi, fd, flags, &running);
        http_check_done(h);
    }
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

/* CURLMOPT_SOCKETFUNCTION: watch, rewatch or forget one socket. On REMOVE
 * a parkable socket stays in the set, watched for input (see the top of
 * this file); any other leaves it, and one we did not open is forgotten, as
 * curl closes it right after. */
static int curl_sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp,
                        void *socketp) {
    fk_http *h = userp;
    http_sock *s = sock_find(h, fd);
    (void)easy;
    (void)socketp;

    if (what == CURL_POLL_REMOVE) {
        if (!s)
            return 0;
        s->want = 0;
        if (s->parkable && s->reg && !h->closing) {
            /* Park: watched for input only. Never re-added here: a socket
             * that is not in the set any more was closed behind our back
             * (curl 7.88 does after connect timeouts), and its fd number may
             * be someone else's by now. */
            (void)sock_watch(h, fd, s, EPOLLIN, 0);
        } else {
            (void)sock_watch(h, fd, s, 0, 0);
            if (!s->owned)
                s->live = 0;
        }
        return 0;
    }
    if (h->closing)
        return 0;
    if (!s && !(s = sock_new(h, fd, 0)))
        return -1;
    uint32_t want = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        want |= EPOLLIN;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        want |= EPOLLOUT;
    s->want = want;
    if ((want & EPOLLIN) && s->owned)
        s->parkable = 1;
    return sock_watch(h, fd, s, want, 1) < 0 ? -1 : 0;
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

/* One allocation for r, its header list (with "Expect:" appended when
 * expect), and, when copy, its URL and body for the time it is queued. */
static http_req *req_new(const char *method, const char *const *headers,
                         int expect, const char *url, const char *body,
                         size_t body_len, int copy) {
    static const char no_expect[] = "Expect:";
    size_t nh = 0, strs = 0;
    if (headers)
        for (; headers[nh]; nh++)
            strs += strlen(headers[nh]) + 1;
    if (expect) {
        nh++;
        strs += sizeof(no_expect);
    }
    size_t url_len = copy ? strlen(url) + 1 : 0;
    size_t body_sz = copy && body ? body_len + 1 : 0;
    http_req *r = malloc(sizeof(*r) + nh * sizeof(struct curl_slist) + strs +
                         url_len + body_sz);
    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r));
    struct curl_slist *nodes = (struct curl_slist *)(void *)(r + 1);
    char *p = (char *)(nodes + nh);
    for (size_t i = 0; i < nh; i++) {
        const char *src = (headers && headers[i]) ? headers[i] : no_expect;
        size_t l = strlen(src) + 1;
        memcpy(p, src, l);
        nodes[i].data = p;
        nodes[i].next = i + 1 < nh ? &nodes[i + 1] : NULL;
        p += l;
    }
    r->hdrs = nh ? nodes : NULL;
    if (copy) {
        memcpy(p, url, url_len);
        r->url = p;
        p += url_len;
        if (body) {
            memcpy(p, body, body_len);
            p[body_len] = '\0';
            r->body = p;
        }
        r->body_len = body_len;
    }
    if (strcmp(method, "GET") == 0) {
        r->method = HTTP_GET;
    } else if (strcmp(method, "HEAD") == 0) {
        r->method = HTTP_HEAD;
    } else if (strcmp(method, "POST") == 0) {
        r->method = HTTP_POST;
    } else {
        r->method = HTTP_OTHER;
        memcpy(r->custom, method, strlen(method) + 1);  /* <= 16, checked */
    }
    return r;
}

/* ---- Public API ---- */

void fk_http_options_default(fk_http_options *opts) {
    opts->connect_timeout_ms = HTTP_DEFAULT_CONNECT_MS;
    opts->total_timeout_ms = HTTP_DEFAULT_TOTAL_MS;
    opts->max_concurrent = HTTP_DEFAULT_CONCURRENT;
    opts->verify_tls = 1;
}

/* libcurl initialises libssh2, which (Debian builds it on OpenSSL) sets up
 * all of libcrypto's algorithms and engines: about 1.5 MB of RSS for a
 * protocol we never allow. libssh2_init counts its callers and sets up
 * crypto only on the first call, so calling it first with
 * LIBSSH2_INIT_NO_CRYPTO (1) makes curl's own call a no-op. Looked up at
 * run time: it is libcurl's dependency, not ours, and may be absent. */
static void http_skip_ssh_crypto(void) {
    int (*ssh2_init)(int) = NULL;
    void *sym = dlsym(RTLD_DEFAULT, "libssh2_init");
    if (!sym)
        return;
    memcpy(&ssh2_init, &sym, sizeof(ssh2_init));
    (void)ssh2_init(1);
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
    if (curl_setup() != 0)
        return FK_EHTTP;

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
#define MSET(opt, val)                                                                     \
    do {                                                                                   \
        if (mc == CURLM_OK) mc = curl_multi_setopt(h->multi, opt, val);                    \
    } while (0)
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
    h->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (h->epfd < 0) {
        int e = errno;
        curl_multi_cleanup(h->multi);
        free(h);
        return e == ENOMEM ? FK_ENOMEM : FK_EHTTP;
    }
    if (uv_poll_init(loop, &h->ep_poll, h->epfd) != 0) {
        /* a failed uv_poll_init leaves no handle in the loop */
        curl_multi_cleanup(h->multi);
        close(h->epfd);
        free(h);
        return FK_EHTTP;
    }
    h->ep_poll.data = h;
    uv_timer_init(loop, &h->timer);     /* cannot fail */
    h->timer.data = h;
    h->open_handles = 2;
    if (uv_poll_start(&h->ep_poll, UV_READABLE, on_epoll) != 0) {
        /* Not seen with libuv 1.44; the handles exist now, so h is closed
         * (and freed from the loop) the normal way. */
        fk_http_close(h, NULL, NULL);
        return FK_EHTTP;
    }
    /* Make the first pooled handle now: a libcurl that refuses one of the
     * constant options fails here, at start-up, not on every request. */
    int rc = 0;
    http_easy *first = easy_get(h, &rc);
    if (!first) {
        fk_http_close(h, NULL, NULL);
        return rc;
    }
    easy_put(h, first);
    *out = h;
    return 0;
}

int fk_http_request(fk_http *h, const char *method, const char *url,
                    const char *const *headers, const char *body,
                    size_t body_len, fk_http_cb cb, void *arg) {
    return fk_http_request_by(h, method, url, headers, body, body_len, 0, cb, arg);
}

int fk_http_request_by(fk_http *h, const char *method, const char *url,
                       const char *const *headers, const char *body,
                       size_t body_len, uint64_t deadline_ns, fk_http_cb cb,
                       void *arg) {
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

    /* No "Expect: 100-continue" round trip for our small bodies. */
    int expect = body || strcmp(method, "POST") == 0;
    int queued = h->queue.head || h->active.n >= (size_t)h->opts.max_concurrent;
    http_req *r = req_new(method, headers, expect, url, body, body_len, queued);
    if (!r)
        return FK_ENOMEM;
    r->h = h;
    r->cb = cb;
    r->arg = arg;
    r->deadline_ns = deadline_ns;
    if (queued) {
        list_push(&h->queue, r);
        return 0;
    }
    rc = req_start(h, r, url, body, body_len, h->opts.total_timeout_ms);
    if (rc < 0) {
        free(r);
        return rc;
    }
    return 0;
}

size_t fk_http_inflight(const fk_http *h) {
    return h ? h->active.n + h->queue.n : 0;
}

size_t fk_http_capacity(const fk_http *h, uint64_t wait_ms) {
    if (!h)
        return 0;
    /* before any request finished, each is taken to use its whole timeout */
    uint64_t wire = h->wire_avg_ns ? h->wire_avg_ns
                                   : (uint64_t)h->opts.total_timeout_ms * 1000000u;
    uint64_t max = (uint64_t)h->opts.max_concurrent;
    /* the k-th request in the queue goes out after ~k * wire / max */
    uint64_t queued = wait_ms * 1000000u * max / (wire ? wire : 1);
    uint64_t fits = max + queued;
    return fits < SIZE_MAX ? (size_t)fits : SIZE_MAX;
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
        curl_multi_remove_handle(h->multi, r->e->easy);
        list_push(&cancelled, r);
    }
    while ((r = h->queue.head)) {
        list_unlink(&h->queue, r);
        r->closed_sent = 0;
        list_push(&cancelled, r);
    }
    /* Closes curl's pooled connections through on_close_socket. */
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    uv_close((uv_handle_t *)&h->timer, handle_closed_cb);
    /* uv_close stops the poll at once, so epfd may be closed right after;
     * the sockets still in it are all closed by now. */
    uv_close((uv_handle_t *)&h->ep_poll, handle_closed_cb);
    close(h->epfd);
    h->epfd = -1;

    while ((r = cancelled.head)) {
        list_unlink(&cancelled, r);
        req_complete(h, r, CURLE_OK, CURLM_OK, FK_ECLOSED, r->closed_sent);
    }
    http_easy *e;
    while ((e = h->idle)) {
        h->idle = e->next;
        easy_destroy(e);
    }
    free(h->socks);
    h->socks = NULL;
    h->nsocks = 0;
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
