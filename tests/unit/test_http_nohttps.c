/* test_http_nohttps.c -- faka with a libcurl built without HTTPS (or without
 * HTTP at all), which Debian never ships but a hand-built libcurl can be.
 *
 * This executable is linked with -Wl,--wrap=curl_easy_setopt: every call
 * common/ makes lands in __wrap_curl_easy_setopt below, which refuses a
 * CURLOPT_(REDIR_)PROTOCOLS_STR list that names https, as such a libcurl
 * does (CURLE_UNSUPPORTED_PROTOCOL; seen with a libcurl 7.88.1 built
 * --without-ssl), or, in the first test, every protocol list. Everything
 * else is the real libcurl. What must hold:
 *   - a libcurl that refuses an option every pooled handle gets (no HTTP at
 *     all) makes fk_http_init fail with FK_EHTTP, not every request later;
 *   - an https:// gateway or webhook URL is refused by the configuration
 *     check with a one-line reason, before any worker starts;
 *   - http:// still works end to end: the pooled handles are set up with the
 *     protocols this libcurl has (curl refuses "http,https" when it lacks
 *     https, which used to fail every request and stall orders silently),
 *     and a request to a tiny server on the loop gets its 200. */
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <uv.h>

#include "config.h"
#include "err.h"
#include "http.h"
#include "url.h"

/* ---- the wrapped libcurl ---- */

static int refuse_protocols; /* refuse every protocol list, even "http" */

CURLcode __real_curl_easy_setopt(CURL *x, CURLoption opt, ...);
CURLcode __wrap_curl_easy_setopt(CURL *x, CURLoption opt, ...);

/* Forward with the argument's type (curl.h: the option number's range). */
CURLcode __wrap_curl_easy_setopt(CURL *x, CURLoption opt, ...) {
    va_list ap;
    va_start(ap, opt);
    CURLcode c;
    if (opt < CURLOPTTYPE_OBJECTPOINT) {
        long v = va_arg(ap, long);
        c = __real_curl_easy_setopt(x, opt, v);
    } else if (opt >= CURLOPTTYPE_OFF_T && opt < CURLOPTTYPE_BLOB) {
        curl_off_t v = va_arg(ap, curl_off_t);
        c = __real_curl_easy_setopt(x, opt, v);
    } else {
        void *v = va_arg(ap, void *); /* data and function pointers alike on our ABI */
        if ((opt == CURLOPT_PROTOCOLS_STR || opt == CURLOPT_REDIR_PROTOCOLS_STR) && v &&
            (refuse_protocols || strstr((const char *)v, "https")))
            c = CURLE_UNSUPPORTED_PROTOCOL;
        else
            c = __real_curl_easy_setopt(x, opt, v);
    }
    va_end(ap);
    return c;
}

/* The real libcurl has https: otherwise this test proves nothing. */
static int real_has_https(void) {
    CURL *x = curl_easy_init();
    assert_non_null(x);
    int ok = __real_curl_easy_setopt(x, CURLOPT_PROTOCOLS_STR, "https") == CURLE_OK;
    curl_easy_cleanup(x);
    return ok;
}

/* ---- a tiny HTTP server on the loop: one fixed answer per request ---- */

static uv_loop_t loop;
static uv_tcp_t server;
static int port;

typedef struct {
    uv_tcp_t tcp;
    char buf[4096];
    size_t len;
} conn;

static void conn_closed(uv_handle_t *h) { free(h->data); }

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    conn *c = h->data;
    (void)suggested;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void on_written(uv_write_t *w, int status) {
    (void)status;
    free(w);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    conn *c = s->data;
    (void)b;
    if (n < 0 || c->len + (size_t)n >= sizeof(c->buf) - 1) {
        uv_close((uv_handle_t *)s, conn_closed);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    if (!strstr(c->buf, "\r\n\r\n"))
        return;
    c->len = 0;
    static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    uv_buf_t out = uv_buf_init((char *)answer, sizeof(answer) - 1);
    uv_write_t *w = malloc(sizeof(*w));
    assert_non_null(w);
    assert_int_equal(uv_write(w, s, &out, 1, on_written), 0);
}

static void on_conn(uv_stream_t *srv, int status) {
    assert_int_equal(status, 0);
    conn *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    uv_tcp_init(&loop, &c->tcp);
    c->tcp.data = c;
    assert_int_equal(uv_accept(srv, (uv_stream_t *)&c->tcp), 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void close_any(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, h == (uv_handle_t *)&server ? NULL : conn_closed);
}

/* ---- tests ---- */

/* A libcurl that refuses one of the options every handle gets (here: no
 * protocol list at all, as one without HTTP would): the client fails to
 * start (the worker exits 3 with "cannot set up the HTTP client") instead
 * of starting and then failing every request. */
static void t_refused_option_fails_init(void **state) {
    (void)state;
    refuse_protocols = 1;
    fk_http *h = NULL;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(fk_http_init(&h, &loop, NULL), FK_EHTTP);
    assert_null(h);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0); /* frees what init made */
    assert_int_equal(uv_loop_close(&loop), 0);
    refuse_protocols = 0;
}

static void t_https_urls_refused(void **state) {
    (void)state;
    assert_true(real_has_https()); /* the real libcurl could do it */
    assert_int_equal(fk_http_has_https(), 0);
    char err[256] = "";
    assert_int_equal(fk_http_url_check("https://pay.example/api", err, sizeof(err)), FK_EINVAL);
    assert_non_null(strstr(err, "HTTPS"));
    assert_null(strchr(err, '\n'));
    err[0] = '\0';
    assert_int_equal(fk_http_url_check("http://pay.example/api", err, sizeof(err)), 0);
    /* garbage is still garbage, with the same reasons as before */
    assert_int_equal(fk_http_url_check("https://", err, sizeof(err)), FK_EINVAL);
    assert_int_equal(fk_http_url_check("ftp://x", err, sizeof(err)), FK_EINVAL);
}

/* The worker's and the reaper's own option parsing: exit status 2 with the
 * reason, not a worker that starts and then fails every charge. */
static void t_config_refuses(void **state) {
    (void)state;
    fk_config cfg;
    char err[512] = "";
    char *gw[] = {(char *)"faka-worker", (char *)"--gateway", (char *)"https://pay.example", NULL};
    assert_int_equal(fk_config_load(&cfg, FK_BIN_WORKER, "usage", 3, gw, NULL, err, sizeof(err)),
                     FK_EINVAL);
    assert_non_null(strstr(err, "--gateway"));
    assert_non_null(strstr(err, "HTTPS"));
    err[0] = '\0';
    char *wh[] = {(char *)"faka-worker", (char *)"--webhook-url", (char *)"https://shop.example/hook",
                  (char *)"--webhook-secret", (char *)"s3cret", NULL};
    assert_int_equal(fk_config_load(&cfg, FK_BIN_WORKER, "usage", 5, wh, NULL, err, sizeof(err)),
                     FK_EINVAL);
    assert_non_null(strstr(err, "--webhook-url"));
    assert_non_null(strstr(err, "HTTPS"));
    char *ok[] = {(char *)"faka-worker", (char *)"--gateway", (char *)"http://127.0.0.1:9", NULL};
    assert_int_equal(fk_config_load(&cfg, FK_BIN_WORKER, "usage", 3, ok, NULL, err, sizeof(err)),
                     0);
}

static int got_status = -1, got_err = 1;

static void got(void *arg, const fk_http_response *r) {
    (void)arg;
    got_status = (int)r->status;
    got_err = r->err;
}

static void t_http_still_works(void **state) {
    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_tcp_init(&loop, &server);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&server, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&server, 16, on_conn), 0);
    struct sockaddr_in bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
    port = ntohs(bound.sin_port);

    fk_http *h = NULL;
    fk_http_options o = {1000, 3000, 4, 1};
    assert_int_equal(fk_http_init(&h, &loop, &o), 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);
    for (int i = 0; i < 3; i++) { /* the pooled handle, then reused */
        got_status = -1;
        assert_int_equal(fk_http_request(h, "POST", url, NULL, "{}", 2, got, NULL), 0);
        while (got_status == -1)
            uv_run(&loop, UV_RUN_ONCE);
        assert_int_equal(got_err, 0);
        assert_int_equal(got_status, 200);
    }
    fk_http_close(h, NULL, NULL);
    uv_walk(&loop, close_any, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_refused_option_fails_init),
        cmocka_unit_test(t_https_urls_refused),
        cmocka_unit_test(t_config_refuses),
        cmocka_unit_test(t_http_still_works),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
