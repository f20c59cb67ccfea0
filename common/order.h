/* order.h -- the order codec: decoder and strict validator of the `order` and
 * `payment` stream entries (DESIGN.md, "Stream entries"), and the canonical
 * encoder of an order.
 *
 * Everything a decoder reads comes from outside (any producer can XADD), so
 * the decoders accept exactly one well-formed, unambiguous JSON object and
 * reject everything else with a one-line reason that names the field and the
 * rule. They never crash, never read past len, and allocate only transiently. */
#ifndef FK_ORDER_H
#define FK_ORDER_H

#include <stddef.h>

#define FK_ORDER_ID_MAX 64          /* bytes; charset [A-Za-z0-9_.:-] */
#define FK_IDEM_KEY_MAX 255         /* bytes; visible ASCII 0x21..0x7e only (it travels as an HTTP header and URL path segment) */
#define FK_SKU_MAX_CHARS 64         /* code points of UTF-8, no control chars */
#define FK_BUYER_MAX_CHARS 256      /* code points of UTF-8, no control chars */
#define FK_QTY_MIN 1
#define FK_QTY_MAX 100
#define FK_AMOUNT_MAX 1000000000000000LL   /* 10^15 minor units */
#define FK_ENTRY_MAX (16 * 1024)    /* whole value, bytes */
#define FK_PAYMENT_ID_MAX 128

typedef struct fk_order {
    char order_id[FK_ORDER_ID_MAX + 1];
    char idem_key[FK_IDEM_KEY_MAX + 1];   /* defaults to order_id */
    char sku[FK_SKU_MAX_CHARS * 4 + 1];
    int qty;
    long long amount;
    char currency[4];                     /* 3 upper-case ASCII letters, default "CNY" */
    char buyer[FK_BUYER_MAX_CHARS * 4 + 1]; /* "" when absent */
} fk_order;

enum fk_payment_status { FK_PAY_SUCCEEDED = 1, FK_PAY_DECLINED = 2 };
typedef struct fk_payment {
    char order_id[FK_ORDER_ID_MAX + 1];
    int status;                            /* enum fk_payment_status */
    char payment_id[FK_PAYMENT_ID_MAX + 1];/* optional, "" when absent; visible ASCII */
} fk_payment;

/* Decode and validate an `order` stream entry value (raw bytes, NOT
 * NUL-terminated, may contain NULs).
 *
 * Returns 0 and fills *out (every string NUL-terminated, unused bytes zero),
 * or FK_EINVAL and writes a one-line English reason into err (always
 * NUL-terminated, truncated to errlen; err may be NULL when errlen is 0),
 * e.g. "qty must be an integer from 1 to 100", "value is not valid UTF-8",
 * "value exceeds 16384 bytes". On failure *out is left untouched.
 *
 * id_out (size FK_ORDER_ID_MAX+1, may be NULL) receives the order_id on
 * success, and also on failure if the value is a JSON object with exactly
 * one "order_id" member holding a valid order id; else "" -- so the caller
 * can mark that order invalid. For this the value need only be JSON in its
 * structure: its strings may hold raw bytes of any kind (NUL, control
 * characters, invalid UTF-8) and it may be up to 1 MiB long, as long as the
 * id itself is written plainly (no escapes).
 *
 * Rules (DESIGN.md, made strict): value <= FK_ENTRY_MAX bytes, no NUL bytes,
 * valid UTF-8, strict RFC 8259 JSON (no BOM, no raw control characters, no
 * leading zeros, no trailing data), a single object; no known key twice;
 * order_id 1-64 bytes of [A-Za-z0-9_.:-]; idempotency_key absent (default:
 * order_id) or 1-255 bytes of 0x21..0x7e; sku 1-64 code points; buyer absent
 * or <= 256 code points; sku and buyer without control characters (< 0x20,
 * 0x7f); qty a JSON integer 1-100; amount a JSON integer 0-10^15; currency
 * absent (default "CNY") or 3 letters A-Z. A present field of the wrong type
 * (null included) is invalid. No decoded string may contain U+0000. Unknown
 * members are ignored whatever (strict JSON) they hold; arrays and objects
 * nest at most 512 levels deep, the top-level object included.
 *
 * One more return: FK_ENOMEM (with a reason in err, id_out "") when an
 * allocation failed. That says nothing about the value, so the caller should
 * retry the entry later rather than dead-letter it. The decoder's transient
 * allocations stay under 1 MiB (cJSON's tree of a 16 KiB value). */
int fk_order_decode(const char *raw, size_t len, fk_order *out, char *err, size_t errlen, char *id_out);

/* Same for a `payment` entry:
 * {"order_id":..., "status":"succeeded"|"declined", "payment_id":"..."}.
 * order_id as for orders; status exactly "succeeded" or "declined";
 * payment_id absent or a string of at most FK_PAYMENT_ID_MAX bytes of visible
 * ASCII (0x21..0x7e; "" is the same as absent). Same returns, err and id_out
 * contract as fk_order_decode; on failure *out is left untouched. */
int fk_payment_decode(const char *raw, size_t len, fk_payment *out, char *err, size_t errlen, char *id_out);

/* 1 if the NUL-terminated s is a valid order id (1 to FK_ORDER_ID_MAX bytes
 * of [A-Za-z0-9_.:-], not "." or ".."), else 0. s may be NULL (0). For ids that come from
 * anywhere but a decoded entry: retry entries, idempotency-key owners. */
int fk_order_id_valid(const char *s);

/* A number field of an order record (qty, amount, a count, a time), read
 * strictly: 0 with the value in *out when s (NUL-terminated, not NULL) is
 * nothing but decimal digits -- a '-' first only when lo < 0 -- and the
 * value is in lo..hi; else -1 and *out untouched. Records are outside
 * input (an operator may HSET anything): atoi/atoll read "5e3" as 5,
 * "0x10" as 0, " 7" as 7, and overflow silently. */
int fk_record_int(const char *s, long long lo, long long hi, long long *out);

/* Encode the canonical JSON of an order into a malloc'd NUL-terminated string
 * (free it with free()); NULL on OOM. Every field is written, in the order
 * order_id, idempotency_key, sku, qty, amount, currency, buyer; an empty
 * idem_key is written as order_id and an empty currency as "CNY". For a valid
 * order (as fk_order_decode produces) the result is at most FK_ENTRY_MAX bytes
 * and decodes back to an equal order. Used by fakactl submit and tests. */
char *fk_order_encode(const fk_order *o);

#endif
