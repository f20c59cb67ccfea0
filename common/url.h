/* url.h -- parsing of the URLs faka is configured with.
 *
 * Redis: redis://[[user]:password@]host[:port][/db] (default port 6379, db 0).
 * HTTP:  http://... or https://..., checked for shape and by libcurl's URL
 *        parser (and that libcurl has HTTPS for https://). */
#ifndef FK_URL_H
#define FK_URL_H

#include <stddef.h>

typedef struct fk_redis_target {
    char host[256];
    int port;
    char user[128];     /* "" = default user */
    char password[256]; /* "" = no AUTH */
    int db;
} fk_redis_target;

/* Parse url into *t. Returns 0, or FK_EINVAL with a reason in err. Percent
 * escapes (%XX) are decoded in user and password. */
int fk_redis_url_parse(const char *url, fk_redis_target *t, char *err, size_t errlen);

/* Check that url is an http:// or https:// URL with a host and no spaces or
 * control characters, that libcurl's URL parser takes it (a usable port,
 * a well-formed host), and that the libcurl we run with speaks its scheme
 * (fk_http_has_https). Returns 0 or FK_EINVAL with a reason in err. */
int fk_http_url_check(const char *url, char *err, size_t errlen);

/* fk_http_url_check for the gateway's base URL, which "/charges" is
 * appended to: a query or a fragment is refused as well. */
int fk_gateway_url_check(const char *url, char *err, size_t errlen);

#endif
