/* notify.h -- the notify phase: a signed webhook to the shop after
 * delivery, with its own retries (DESIGN.md, pipeline step 5).
 *
 * Delivery queues the order in <prefix>:notify (in the same Lua call that
 * completes it). Every worker runs a sweeper that claims due entries with
 * a lease (notify_claim.lua), reads the order, POSTs the signed body, and
 * records the outcome (notify_done.lua): notified, or retried with
 * full-jitter backoff, or notify_failed after --webhook-max attempts.
 * Delivery is at least once: the shop dedupes by X-Faka-Order. Nothing here
 * can charge or deliver. */
#ifndef FK_NOTIFY_H
#define FK_NOTIFY_H

#include <uv.h>

#include "config.h"
#include "http.h"
#include "keys.h"
#include "redis.h"

typedef struct fk_notifier fk_notifier;

/* Create a notifier for cfg->webhook_url (must be set). It sweeps every
 * interval_ms once started. Returns 0 or FK_ENOMEM / FK_EINVAL. */
int fk_notifier_init(fk_notifier **out, uv_loop_t *loop, const fk_config *cfg,
                     const fk_keys *keys, fk_redis *redis, fk_http *http);
void fk_notifier_start(fk_notifier *n, long interval_ms);
/* Sweep now (e.g. right after a delivery). */
void fk_notifier_kick(fk_notifier *n);
/* Requests in flight. */
size_t fk_notifier_inflight(const fk_notifier *n);
/* Stop sweeping; in-flight sends are abandoned (their claims expire and
 * they are sent again later). The timer is closed; done(arg) follows. */
void fk_notifier_close(fk_notifier *n, void (*done)(void *), void *arg);

/* Build the webhook body for an order: {"order_id","state","sku","qty",
 * "codes":[...],"payment_id","delivered_at"}. codes_json is the stored
 * JSON array; garbage there yields "codes":[]. malloc'd; NULL on OOM. */
char *fk_notify_body(const char *order_id, const char *state, const char *sku, long qty,
                     const char *codes_json, const char *payment_id, long long delivered_at);

#endif
