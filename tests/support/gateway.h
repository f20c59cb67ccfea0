/* gateway.h -- test side of the mock payment gateway: start it, drive its
 * control API (faults, scripted outcomes, outages) and read its ledger. */
#ifndef FK_TEST_GATEWAY_H
#define FK_TEST_GATEWAY_H

#include <sys/types.h>

typedef struct fk_t_gateway {
    pid_t pid;
    int port;
    char url[64];    /* http://127.0.0.1:port */
} fk_t_gateway;

/* Start build/tests/faka-mock-gateway (log in dir/gateway.log) with the
 * webhook secret (may be NULL). */
void fk_t_gateway_start(fk_t_gateway *g, const char *dir, const char *secret);
void fk_t_gateway_stop(fk_t_gateway *g);

/* method path body -> HTTP status; the response body (malloc'd) in *out
 * when out is not NULL. Fails the test on a transport error. */
long fk_t_http(const char *method, const char *url, const char *body, char **out);

/* POST {url}{path} body and fail the test unless it answers 2xx. */
void fk_t_gateway_post(const fk_t_gateway *g, const char *path, const char *body);

/* A number field of GET /_ledger?entries=0 ("double_charges", ...). */
long long fk_t_ledger_num(const fk_t_gateway *g, const char *field);

/* From GET /_ledger: charges and posts for one idempotency key (-1 if the
 * key is unknown). */
void fk_t_ledger_key(const fk_t_gateway *g, const char *key, long long *charges,
                     long long *posts);

#endif
