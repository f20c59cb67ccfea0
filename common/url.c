/* url.c -- Redis and HTTP URL checks for configuration (see url.h). */
#include "url.h"
#include "err.h"
#include "http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *msg) {
    snprintf(err, errlen, "%s", msg);
    return FK_EINVAL;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Copy s[0..n) to out (size cap) decoding %XX. 0, or -1 on a bad escape,
 * an embedded NUL, or overflow. */
static int pct_decode(const char *s, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n) return -1;
            int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0) return -1;
            c = h * 16 + l;
            if (c == 0) return -1;
            i += 2;
        }
        if (o + 1 >= cap) return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

static int all_visible(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f) return 0;
    return 1;
}

int fk_redis_url_parse(const char *url, fk_redis_target *t, char *err, size_t errlen) {
    memset(t, 0, sizeof(*t));
    t->port = 6379;
    if (!url || strncmp(url, "redis://", 8) != 0)
        return fail(err, errlen, "redis URL must start with redis://");
    if (!all_visible(url))
        return fail(err, errlen, "redis URL contains spaces or control characters");
    const char *p = url + 8;
    const char *at = strrchr(p, '@');
    const char *slash = strchr(p, '/');
    if (at && slash && slash < at) at = NULL; /* '@' in the db part: no credentials */
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (pct_decode(p, (size_t)(colon - p), t->user, sizeof(t->user)) ||
                pct_decode(colon + 1, (size_t)(at - colon - 1), t->password, sizeof(t->password)))
                return fail(err, errlen, "redis URL has a bad user or password");
        } else if (pct_decode(p, (size_t)(at - p), t->password, sizeof(t->password))) {
            return fail(err, errlen, "redis URL has a bad password");
        }
        p = at + 1;
        slash = strchr(p, '/');
    }
    const char *hend = slash ? slash : p + strlen(p);
    const char *colon = NULL;
    if (*p == '[') { /* [v6addr]:port */
        const char *rb = memchr(p, ']', (size_t)(hend - p));
        if (!rb) return fail(err, errlen, "redis URL has an unterminated [ipv6] host");
        if ((size_t)(rb - p - 1) >= sizeof(t->host) || rb == p + 1)
            return fail(err, errlen, "redis URL host is empty or too long");
        memcpy(t->host, p + 1, (size_t)(rb - p - 1));
        if (rb + 1 < hend) {
            if (rb[1] != ':') return fail(err, errlen, "redis URL: junk after ]");
            colon = rb + 1;
        }
    } else {
        colon = memchr(p, ':', (size_t)(hend - p));
        const char *e = colon ? colon : hend;
        if (e == p) return fail(err, errlen, "redis URL host is empty");
        if ((size_t)(e - p) >= sizeof(t->host)) return fail(err, errlen, "redis URL host is too long");
        memcpy(t->host, p, (size_t)(e - p));
    }
    if (colon) {
        char *end = NULL;
        if (colon + 1 == hend) return fail(err, errlen, "redis URL port is empty");
        long port = strtol(colon + 1, &end, 10);
        if (end != hend || port < 1 || port > 65535 || !isdigit((unsigned char)colon[1]))
            return fail(err, errlen, "redis URL port must be 1-65535");
        t->port = (int)port;
    }
    if (slash && slash[1]) {
        char *end = NULL;
        long db = strtol(slash + 1, &end, 10);
        if (*end || db < 0 || db > 1000000 || !isdigit((unsigned char)slash[1]))
            return fail(err, errlen, "redis URL database must be a number >= 0");
        t->db = (int)db;
    }
    return 0;
}

/* A host libcurl can connect to: a name or IPv4 address (letters, digits,
 * '-', '.'), or a bracketed IPv6 address, which curl_url has checked. */
static int host_ok(const char *h) {
    if (h[0] == '[') return 1;
    return h[0] && strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") ==
                       strlen(h);
}

/* libcurl's own parser (the one that will send the requests) on url: a
 * port it cannot use (0, over 65535, not a number), a broken IPv6 address
 * or a host with characters no host has fail here, at start, not as a
 * transient error on every order. *has_query / *has_fragment say whether
 * the URL has them. */
static int curl_parse(const char *url, int *has_query, int *has_fragment, char *err,
                      size_t errlen) {
    CURLU *u = curl_url();
    if (!u) return fail(err, errlen, "out of memory");
    char *host = NULL, *port = NULL, *q = NULL, *f = NULL;
    int rc = 0;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        snprintf(err, errlen, "URL not understood: %s", curl_url_strerror(uc));
        rc = FK_EINVAL;
    } else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host_ok(host)) {
        rc = fail(err, errlen, "URL host must be a name, an IPv4 address or [an IPv6 one]");
    } else if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK && atol(port) < 1) {
        rc = fail(err, errlen, "URL port must be 1-65535");
    } else {
        *has_query = curl_url_get(u, CURLUPART_QUERY, &q, 0) == CURLUE_OK;
        *has_fragment = curl_url_get(u, CURLUPART_FRAGMENT, &f, 0) == CURLUE_OK;
    }
    curl_free(host);
    curl_free(port);
    curl_free(q);
    curl_free(f);
    curl_url_cleanup(u);
    return rc;
}

/* fk_http_url_check's work; base: the URL is a base that paths are
 * appended to (no query, no fragment). */
static int url_check(const char *url, int base, char *err, size_t errlen) {
    const char *p;
    int query = 0, fragment = 0;
    if (strncmp(url, "http://", 7) == 0) p = url + 7;
    else if (strncmp(url, "https://", 8) == 0) p = url + 8;
    else return fail(err, errlen, "URL must start with http:// or https://");
    if (!all_visible(url)) return fail(err, errlen, "URL contains spaces or control characters");
    if (*p == '\0' || *p == '/' || *p == ':') return fail(err, errlen, "URL has no host");
    if (strlen(url) > 400) return fail(err, errlen, "URL is longer than 400 characters");
    if (curl_parse(url, &query, &fragment, err, errlen)) return FK_EINVAL;
    if (base && (query || fragment))
        return fail(err, errlen, "URL must not have a query (?) or fragment (#): "
                                 "/charges is appended to it");
    if (p == url + 8 && !fk_http_has_https())
        return fail(err, errlen, "https:// URL, but this libcurl was built without HTTPS");
    return 0;
}

int fk_http_url_check(const char *url, char *err, size_t errlen) {
    return url_check(url, 0, err, errlen);
}

int fk_gateway_url_check(const char *url, char *err, size_t errlen) {
    return url_check(url, 1, err, errlen);
}
