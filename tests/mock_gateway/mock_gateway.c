/* mock_gateway.c -- faka-mock-gateway: a mock payment gateway and a mock shop
 * webhook receiver with seeded fault injection, for the integration tests,
 * the chaos suite and the benchmark.
 *
 * One single-threaded libuv loop serves HTTP/1.1 (keep-alive, pipelining,
 * Content-Length or chunked bodies up to 1 MiB), parsed by Debian's
 * libhttp-parser. The gateway half speaks DESIGN.md's "Payment gateway
 * contract" and keeps an idempotency ledger; the shop half verifies and
 * records webhook deliveries; the control API (/_faults, /_outage, /_script,
 * /_reset, /_ledger, /_stats, /_webhooks) lets a test inject faults and read
 * back what happened. README.md next to this file documents the API.
 *
 * The file is deliberately self-contained (it does not link common/): it is
 * an independent implementation of the contract that faka is tested against.
 * Sections: utilities, hash table, state, HTTP connections, gateway,
 * webhook receiver, control API, start-up. */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cJSON.h>
#include <http_parser.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <uv.h>

#define MG_MAX_BODY      (1024u * 1024u)        /* request body limit (413 above) */
#define MG_MAX_URL       8192u                  /* request-target limit (400 above) */
#define MG_MAX_KEY       255u                   /* idempotency key length */
#define MG_MAX_ORDER_ID  256u
#define MG_MAX_CURRENCY  16u
#define MG_MAX_HDR_NAME  64u                    /* longer names are never ours */
#define MG_MAX_HDR_VALUE 4096u                  /* for the headers we keep */
#define MG_MAX_BUFFERED  (4u * 1024u * 1024u)   /* pipelined input held while busy */
#define MG_MAX_SCRIPT    4096u                  /* queued outcomes per key */
#define MG_MAX_MS        86400000ull            /* any duration setting: 1 day */
#define MG_DRAIN_MS      2000u                  /* lingering close after a final answer */
#define MG_READ_SIZE     65536u
#define MG_KEEP_CAP      (256u * 1024u)         /* per-connection buffers above this are freed */

/* Exit codes: one per start-up failure. */
enum { EXIT_USAGE = 2, EXIT_LISTEN = 3, EXIT_UNCLEAN = 4 };

/* ---------------------------------------------------------------------------
 * Utilities: allocation, string buffers, PRNG, validation
 * ------------------------------------------------------------------------- */

/* Out of memory is not a condition a test mock recovers from. */
static void die_oom(void)
{
    fputs("faka-mock-gateway: out of memory\n", stderr);
    abort();
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die_oom();
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        die_oom();
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        die_oom();
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* A growable byte buffer, always NUL-terminated once it holds memory. */
struct sbuf {
    char *p;
    size_t len, cap;
};

/* Make room for n more bytes plus the terminating NUL. */
static void sb_reserve(struct sbuf *b, size_t n)
{
    size_t cap;

    if (b->len + n + 1 <= b->cap)
        return;
    cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

static void sb_put(struct sbuf *b, const void *s, size_t n)
{
    sb_reserve(b, n);
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_putc(struct sbuf *b, char ch)
{
    sb_reserve(b, 1);
    b->p[b->len++] = ch;
    b->p[b->len] = '\0';
}

static void sb_u64(struct sbuf *b, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof tmp;

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sb_put(b, tmp + i, sizeof tmp - i);
}

static void sb_i64(struct sbuf *b, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
    sb_put(b, tmp, (size_t)n);
}

static void sb_double(struct sbuf *b, double v)
{
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp, "%.15g", v);
    sb_put(b, tmp, (size_t)n);
}

/* Append s[0..n) as a JSON string literal: quotes, backslashes and control
 * bytes escaped; other bytes copied (callers only store valid UTF-8). */
static void sb_json_str(struct sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;

    sb_reserve(b, n + 2);
    sb_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        sb_put(b, s + run, i - run);            /* the plain bytes before ch */
        run = i + 1;
        if (ch == '"' || ch == '\\') {
            char esc[2] = { '\\', (char)ch };
            sb_put(b, esc, sizeof esc);
        } else {
            char esc[6] = { '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] };
            sb_put(b, esc, sizeof esc);
        }
    }
    sb_put(b, s + run, n - run);
    sb_putc(b, '"');
}

static void sb_clear(struct sbuf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

static void sb_free(struct sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Forget a buffer's contents; give its memory back if it grew large. */
static void sb_trim(struct sbuf *b)
{
    if (b->cap > MG_KEEP_CAP)
        sb_free(b);
    else
        sb_clear(b);
}

/* splitmix64: one 64-bit state per stream, reproducible from --seed. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform double in [0, 1). */
static double rng_unit(uint64_t *state)
{
    return (double)(rng_next(state) >> 11) * 0x1.0p-53;
}

/* An idempotency key: 1..255 bytes of printable ASCII, no space. */
static int key_valid(const char *k, size_t n)
{
    if (n == 0 || n > MG_MAX_KEY)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
            return 0;
    return 1;
}

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
static int utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    while (i < n) {
        unsigned char ch = s[i];
        size_t need;
        uint32_t cp;

        if (ch < 0x80) {
            i++;
            continue;
        }
        if (ch >= 0xc2 && ch <= 0xdf) {
            need = 1;
            cp = ch & 0x1fu;
        } else if (ch >= 0xe0 && ch <= 0xef) {
            need = 2;
            cp = ch & 0x0fu;
        } else if (ch >= 0xf0 && ch <= 0xf4) {
            need = 3;
            cp = ch & 0x07u;
        } else {
            return 0;
        }
        if (n - i <= need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
            return 0;
        if (need == 3 && (cp < 0x10000 || cp > 0x10ffff))
            return 0;
        i += need + 1;
    }
    return 1;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..n) into out (capacity cap). Returns the decoded
 * length, or -1 on a malformed %XX or if the result does not fit. */
static long pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            int hi, lo;
            if (n - i < 3)
                return -1;
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o >= cap)
            return -1;
        out[o++] = ch;
    }
    return (long)o;
}

/* Parse a JSON integer in [0, max] from a cJSON number. */
static int json_uint(const cJSON *j, uint64_t max, uint64_t *out)
{
    double v;

    if (!cJSON_IsNumber(j))
        return -1;
    v = j->valuedouble;
    if (!(v >= 0.0) || v > (double)max || v > 9007199254740992.0)
        return -1;
    if ((double)(uint64_t)v != v)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Hash table: open addressing (linear probing) over an insertion-ordered
 * node array. Nodes embed struct hnode as their first member and carry
 * their key inline. There is no single-key delete; /_reset clears all.
 * ------------------------------------------------------------------------- */

struct hnode {
    uint64_t hash;
    size_t klen;
    char *key;             /* points just past the enclosing struct */
};

struct htab {
    struct hnode **nodes;  /* insertion order; iteration order of output */
    size_t n, ncap;
    uint32_t *slots;       /* 0 = empty, else index + 1 into nodes */
    size_t nslots;         /* power of two, load kept <= 1/2 */
};

/* FNV-1a with a final avalanche (the table masks the low bits). */
static uint64_t hash_key(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static void htab_place(struct htab *t, size_t idx)
{
    size_t mask = t->nslots - 1;
    size_t i = t->nodes[idx]->hash & mask;

    while (t->slots[i])
        i = (i + 1) & mask;
    t->slots[i] = (uint32_t)(idx + 1);
}

static void htab_rehash(struct htab *t, size_t nslots)
{
    free(t->slots);
    t->slots = xcalloc(nslots, sizeof *t->slots);
    t->nslots = nslots;
    for (size_t k = 0; k < t->n; k++)
        htab_place(t, k);
}

/* Return the node with this key, or NULL. */
static struct hnode *htab_find(const struct htab *t, const char *key,
                               size_t klen, uint64_t h)
{
    size_t mask;

    if (!t->nslots)
        return NULL;
    mask = t->nslots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t s = t->slots[i];
        struct hnode *nd;
        if (!s)
            return NULL;
        nd = t->nodes[s - 1];
        if (nd->hash == h && nd->klen == klen && memcmp(nd->key, key, klen) == 0)
            return nd;
    }
}

/* Look key up; if absent and create is set, allocate a zeroed node of
 * `size` bytes (struct hnode first) with the key copied inline and insert
 * it. Returns the node or NULL (absent, create not set). */
static void *htab_get(struct htab *t, size_t size, const char *key,
                      size_t klen, int create)
{
    uint64_t h = hash_key(key, klen);
    struct hnode *nd = htab_find(t, key, klen, h);
    char *mem;

    if (nd || !create)
        return nd;
    assert(t->n < UINT32_MAX - 1);
    mem = xcalloc(1, size + klen + 1);
    nd = (struct hnode *)(void *)mem;
    nd->hash = h;
    nd->klen = klen;
    nd->key = mem + size;
    memcpy(nd->key, key, klen);
    if (t->n == t->ncap) {
        t->ncap = t->ncap ? t->ncap * 2 : 64;
        t->nodes = xrealloc(t->nodes, t->ncap * sizeof *t->nodes);
    }
    t->nodes[t->n++] = nd;
    if (t->n * 2 > t->nslots)
        htab_rehash(t, t->nslots ? t->nslots * 2 : 128);
    else
        htab_place(t, t->n - 1);
    return nd;
}

/* Free every node (after calling fini on it, if given) and the table. */
static void htab_clear(struct htab *t, void (*fini)(struct hnode *))
{
    for (size_t k = 0; k < t->n; k++) {
        if (fini)
            fini(t->nodes[k]);
        free(t->nodes[k]);
    }
    free(t->nodes);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* ---------------------------------------------------------------------------
 * State: outcomes, fault configuration, ledger, webhook log, counters
 * ------------------------------------------------------------------------- */

/* Every way a gateway request can end; the first RES_INVALID+1 can be
 * scripted. The names are the /_script vocabulary and the /_stats keys. */
enum res {
    RES_OK, RES_PENDING, RES_DECLINE, RES_RISK,
    RES_429, RES_500, RES_503, RES_TIMEOUT, RES_RESET, RES_GARBAGE, RES_LOST,
    RES_INVALID,
    RES_REPLAY, RES_CONFLICT, RES_OUTAGE, RES_BAD_REQUEST, RES_FOUND,
    RES_NOT_FOUND,
    RES__COUNT,
    RES_NONE = RES__COUNT
};

static const char *const res_names[RES__COUNT] = {
    "ok", "pending", "decline", "risk",
    "429", "500", "503", "timeout", "reset", "garbage", "lost",
    "invalid",
    "replay", "conflict", "outage", "bad_request", "found", "not_found",
};

/* Map a /_script outcome name to its result, or RES_NONE. */
static enum res res_from_script(const char *s)
{
    for (int r = RES_OK; r <= RES_INVALID; r++)
        if (strcmp(s, res_names[r]) == 0)
            return (enum res)r;
    if (strcmp(s, "422") == 0)
        return RES_INVALID;
    return RES_NONE;
}

/* A charge's recorded state. CS_NONE: key seen, no outcome recorded yet. */
enum cstatus { CS_NONE, CS_SUCCEEDED, CS_PENDING, CS_DECLINED, CS_RISK };

static const char *cstatus_name(enum cstatus s)
{
    switch (s) {
    case CS_SUCCEEDED: return "succeeded";
    case CS_PENDING:   return "pending";
    case CS_DECLINED:  return "declined";
    case CS_RISK:      return "risk_rejected";
    case CS_NONE:      break;
    }
    return "none";
}

/* Ledger entry, one per idempotency key. */
struct charge {
    struct hnode h;
    char *order_id;          /* bound when the outcome is recorded */
    char *currency;
    int64_t amount;
    uint64_t id;             /* ch_<id>, 0 until recorded */
    uint64_t resolve_at;     /* loop time at which a pending charge settles */
    enum cstatus status, pending_then;
    uint32_t charges;        /* times money was taken for this key (<= 1) */
    uint32_t posts, gets;
    uint32_t throttled;      /* 429 answers (each says Retry-After: 1) */
    uint8_t *script;         /* queue of enum res */
    uint32_t script_head, script_len, script_cap;
};

/* Succeeded charges per order_id, across keys (catches faka using two keys
 * for one order, which per-key idempotency cannot). */
struct order {
    struct hnode h;
    uint32_t succeeded;
};

/* Webhook deliveries per order_id. */
struct hook {
    struct hnode h;
    uint32_t count;
    uint32_t mismatches;     /* deliveries whose codes differed from the first */
    char *codes;             /* JSON text of the first delivery's "codes" */
};

struct faults {
    uint64_t latency_ms, latency_jitter_ms;
    double p_429, p_503, p_500, p_timeout, p_reset, p_garbage, p_lost;
    double p_decline, p_risk, p_pending;
    uint64_t pending_ms;
    int pending_then_declined;
    int faults_on_get;
    int risk_on_get;               /* GET reads a risk rejection as such */
    double p_webhook_fail;
    uint64_t webhook_latency_ms;
    uint64_t webhook_max_skew_ms;  /* 0: timestamps are not checked */
    uint64_t timeout_ms;           /* how long "timeout" holds a connection */
};

static const struct faults faults_default = {
    .pending_ms = 500,
    .timeout_ms = 30000,
};

enum ftype { FT_MS, FT_PROB, FT_BOOL, FT_THEN };

/* The /_faults fields: name, type, place in struct faults. */
static const struct fdesc {
    const char *name;
    enum ftype type;
    size_t off;
} fdescs[] = {
    { "latency_ms",          FT_MS,   offsetof(struct faults, latency_ms) },
    { "latency_jitter_ms",   FT_MS,   offsetof(struct faults, latency_jitter_ms) },
    { "p_429",               FT_PROB, offsetof(struct faults, p_429) },
    { "p_503",               FT_PROB, offsetof(struct faults, p_503) },
    { "p_500",               FT_PROB, offsetof(struct faults, p_500) },
    { "p_timeout",           FT_PROB, offsetof(struct faults, p_timeout) },
    { "p_reset",             FT_PROB, offsetof(struct faults, p_reset) },
    { "p_garbage",           FT_PROB, offsetof(struct faults, p_garbage) },
    { "p_lost",              FT_PROB, offsetof(struct faults, p_lost) },
    { "p_decline",           FT_PROB, offsetof(struct faults, p_decline) },
    { "p_risk",              FT_PROB, offsetof(struct faults, p_risk) },
    { "p_pending",           FT_PROB, offsetof(struct faults, p_pending) },
    { "pending_ms",          FT_MS,   offsetof(struct faults, pending_ms) },
    { "pending_then",        FT_THEN, offsetof(struct faults, pending_then_declined) },
    { "faults_on_get",       FT_BOOL, offsetof(struct faults, faults_on_get) },
    { "risk_on_get",         FT_BOOL, offsetof(struct faults, risk_on_get) },
    { "p_webhook_fail",      FT_PROB, offsetof(struct faults, p_webhook_fail) },
    { "webhook_latency_ms",  FT_MS,   offsetof(struct faults, webhook_latency_ms) },
    { "webhook_max_skew_ms", FT_MS,   offsetof(struct faults, webhook_max_skew_ms) },
    { "timeout_ms",          FT_MS,   offsetof(struct faults, timeout_ms) },
};

struct stats {
    uint64_t requests, control, bad_requests, unknown_path;
    uint64_t conns_accepted, conns_open;
    uint64_t post_total, get_total;
    uint64_t post[RES__COUNT], get[RES__COUNT];
    uint64_t wh_total, wh_accepted, wh_duplicates, wh_rejected, wh_invalid,
             wh_failed, wh_mismatches;
};

struct conn;

static struct mg {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_signal_t sigterm, sigint;
    int stopping;
    http_parser_settings settings;
    const char *secret;           /* NULL: webhooks are not verified */
    size_t secret_len;
    uint64_t seed;
    uint64_t rng_post, rng_get, rng_hook;   /* independent streams */
    struct faults faults;
    uint64_t outage_until;        /* loop time; 0 = no outage */
    enum res outage_mode;
    struct htab ledger, orders, hooks;
    uint64_t next_id, keys_seen, charges_succeeded, double_charges,
             double_orders, pending_count;
    uint32_t max_throttled;       /* the most 429 answers one key got */
    struct stats st;
    struct conn *conns;           /* every open connection */
    struct sbuf tmp;              /* scratch for response bodies */
    struct sbuf mac;              /* scratch for HMAC input */
    char readbuf[MG_READ_SIZE];
} mg;

static void charge_fini(struct hnode *nd)
{
    struct charge *ch = (struct charge *)(void *)nd;
    free(ch->order_id);
    free(ch->currency);
    free(ch->script);
}

static void hook_fini(struct hnode *nd)
{
    struct hook *hk = (struct hook *)(void *)nd;
    free(hk->codes);
}

/* Drop ledger, scripts, webhook log, outage and counters (not connection
 * counters); restore default faults; reseed the PRNG streams from seed. */
static void state_reset(uint64_t seed)
{
    uint64_t accepted = mg.st.conns_accepted, open = mg.st.conns_open;

    htab_clear(&mg.ledger, charge_fini);
    htab_clear(&mg.orders, NULL);
    htab_clear(&mg.hooks, hook_fini);
    mg.next_id = mg.keys_seen = mg.charges_succeeded = 0;
    mg.double_charges = mg.double_orders = mg.pending_count = 0;
    mg.max_throttled = 0;
    mg.faults = faults_default;
    mg.outage_until = 0;
    mg.outage_mode = RES_503;
    mg.seed = seed;
    mg.rng_post = seed;
    mg.rng_get = seed ^ 0x6a09e667f3bcc908ull;
    mg.rng_hook = seed ^ 0xbb67ae8584caa73bull;
    memset(&mg.st, 0, sizeof mg.st);
    mg.st.conns_accepted = accepted;
    mg.st.conns_open = open;
}

static uint64_t now_ms(void)
{
    return uv_now(&mg.loop);
}

static int outage_active(void)
{
    return mg.outage_until != 0 && now_ms() < mg.outage_until;
}

/* Money was taken for ch: count it per key and per order_id. */
static void charge_succeeded(struct charge *ch)
{
    struct order *o;

    mg.charges_succeeded++;
    if (++ch->charges == 2)
        mg.double_charges++;
    o = htab_get(&mg.orders, sizeof *o, ch->order_id, strlen(ch->order_id), 1);
    if (++o->succeeded == 2)
        mg.double_orders++;
}

/* Settle a pending charge whose time has come. Pending charges are
 * resolved lazily, whenever they are looked at, instead of by one timer
 * each; from the outside the two are indistinguishable. */
static void charge_resolve(struct charge *ch)
{
    if (ch->status != CS_PENDING || now_ms() < ch->resolve_at)
        return;
    mg.pending_count--;
    ch->status = ch->pending_then;
    if (ch->status == CS_SUCCEEDED)
        charge_succeeded(ch);
}

static void resolve_all(void)
{
    for (size_t k = 0; k < mg.ledger.n && mg.pending_count; k++)
        charge_resolve((struct charge *)(void *)mg.ledger.nodes[k]);
}

/* The parameters of a POST /charges body. Pointers into a cJSON tree. */
struct charge_req {
    const char *order_id;
    const char *currency;
    int64_t amount;
};

/* Record the outcome for a key that had none: binds the request's
 * parameters to the key and assigns a charge id. */
static void charge_record(struct charge *ch, const struct charge_req *r,
                          enum cstatus status)
{
    assert(ch->status == CS_NONE);
    ch->order_id = xstrndup(r->order_id, strlen(r->order_id));
    ch->currency = xstrndup(r->currency, strlen(r->currency));
    ch->amount = r->amount;
    ch->id = ++mg.next_id;
    ch->status = status;
    if (status == CS_PENDING) {
        ch->resolve_at = now_ms() + mg.faults.pending_ms;
        ch->pending_then = mg.faults.pending_then_declined ? CS_DECLINED : CS_SUCCEEDED;
        mg.pending_count++;
    } else if (status == CS_SUCCEEDED) {
        charge_succeeded(ch);
    }
}

static int charge_same(const struct charge *ch, const struct charge_req *r)
{
    return ch->amount == r->amount && strcmp(ch->order_id, r->order_id) == 0 &&
           strcmp(ch->currency, r->currency) == 0;
}

/* Pop the next scripted outcome for ch, or RES_NONE. */
static enum res script_pop(struct charge *ch)
{
    enum res r;

    if (ch->script_len == 0)
        return RES_NONE;
    r = (enum res)ch->script[ch->script_head++];
    if (--ch->script_len == 0)
        ch->script_head = 0;
    return r;
}

static void script_push(struct charge *ch, enum res r)
{
    if (ch->script_head + ch->script_len == ch->script_cap) {
        if (ch->script_head) {
            memmove(ch->script, ch->script + ch->script_head, ch->script_len);
            ch->script_head = 0;
        } else {
            ch->script_cap = ch->script_cap ? ch->script_cap * 2 : 8;
            ch->script = xrealloc(ch->script, ch->script_cap);
        }
    }
    ch->script[ch->script_head + ch->script_len++] = (uint8_t)r;
}

/* Draw a transient fault from u in [0,1): RES_429..RES_LOST or RES_NONE. */
static enum res draw_transient(double u)
{
    const struct faults *f = &mg.faults;
    const double p[] = { f->p_429, f->p_503, f->p_500, f->p_timeout,
                         f->p_reset, f->p_garbage, f->p_lost };
    const enum res r[] = { RES_429, RES_503, RES_500, RES_TIMEOUT,
                           RES_RESET, RES_GARBAGE, RES_LOST };
    double acc = 0;

    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
        acc += p[i];
        if (u < acc)
            return r[i];
    }
    return RES_NONE;
}

/* Draw the decision for a new charge from u: ok, decline, risk, pending. */
static enum res draw_decision(double u)
{
    const struct faults *f = &mg.faults;
    double acc = f->p_decline;

    if (u < acc)
        return RES_DECLINE;
    acc += f->p_risk;
    if (u < acc)
        return RES_RISK;
    acc += f->p_pending;
    if (u < acc)
        return RES_PENDING;
    return RES_OK;
}

/* Latency for one gateway request: latency_ms + uniform [0, jitter]. */
static uint64_t gw_latency(uint64_t *rng)
{
    uint64_t d = mg.faults.latency_ms;

    if (mg.faults.latency_jitter_ms)
        d += (uint64_t)(rng_unit(rng) * (double)(mg.faults.latency_jitter_ms + 1));
    return d;
}

/* ---------------------------------------------------------------------------
 * HTTP connections
 *
 * A connection parses requests one at a time: when a request is complete
 * the parser is paused and the request dispatched; its answer is sent at
 * once or after a timer (latency), and only then is the next buffered
 * request parsed, so pipelined answers keep their order. States beyond
 * "serving": busy (answer delayed), hanging (a "timeout" fault: read and
 * discard until the peer closes or timeout_ms), draining (final answer
 * sent: shutdown(SHUT_WR), discard input until EOF or MG_DRAIN_MS, so the
 * peer reads the answer instead of a RST), closing (uv_close issued).
 * Both handles (tcp, timer) are closed together and the struct is freed
 * when the second close callback has run.
 * ------------------------------------------------------------------------- */

enum hdr { HDR_NONE = -1, HDR_IDEM, HDR_TS, HDR_SIG, HDR_EXPECT, HDR__COUNT };

static const char *const hdr_names[HDR__COUNT] = {
    "idempotency-key", "x-faka-timestamp", "x-faka-signature", "expect",
};

/* What to do with a dispatched request once its latency has passed. */
enum act { ACT_SEND, ACT_CLOSE, ACT_RESET, ACT_HANG };

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    http_parser parser;
    struct conn *prev, *next;
    int open_handles;
    unsigned closing : 1, eof : 1, reading : 1, busy : 1, draining : 1,
             hanging : 1, in_value : 1, close_after : 1, dup_header : 1;
    struct sbuf in;          /* received, not yet parsed (from in_off) */
    size_t in_off;
    /* the request being parsed */
    struct sbuf url, body;
    char hname[MG_MAX_HDR_NAME];
    size_t hname_len;        /* MG_MAX_HDR_NAME: too long to be ours */
    int hcur;                /* enum hdr whose value is being collected */
    unsigned hset;           /* bit per enum hdr seen */
    struct sbuf hval[HDR__COUNT];
    int req_error;           /* HTTP status for a callback-detected error */
    /* the answer */
    enum act act;
    struct sbuf resp;
};

struct wreq {
    uv_write_t req;
    char data[];
};

static void conn_resume(struct conn *c);

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;

    if (--c->open_handles > 0)
        return;
    sb_free(&c->in);
    sb_free(&c->url);
    sb_free(&c->body);
    sb_free(&c->resp);
    for (int i = 0; i < HDR__COUNT; i++)
        sb_free(&c->hval[i]);
    free(c);
}

/* Close c now (reset: with an RST instead of a FIN). Idempotent; c stays
 * valid until the close callbacks run on a later loop iteration. */
static void conn_close(struct conn *c, int reset)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->busy = 0;
    if (c->prev)
        c->prev->next = c->next;
    else
        mg.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    mg.st.conns_open--;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    if (!reset || uv_tcp_close_reset(&c->tcp, on_conn_closed) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_write(uv_write_t *req, int status)
{
    struct conn *c = req->handle->data;

    free(req);
    if (status < 0 && status != UV_ECANCELED)
        conn_close(c, 0);
}

/* Send p[0..len): as much as the socket takes now, the rest queued (its
 * copy is owned by the write request). On error the connection is closed. */
static void conn_write(struct conn *c, const char *p, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
    struct wreq *w;
    size_t done;
    int r;

    if (c->closing)
        return;
    r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r >= 0 && (size_t)r == len)
        return;
    if (r < 0 && r != UV_EAGAIN) {
        conn_close(c, 0);
        return;
    }
    done = r > 0 ? (size_t)r : 0;
    w = xmalloc(sizeof *w + (len - done));
    memcpy(w->data, p + done, len - done);
    b = uv_buf_init(w->data, (unsigned)(len - done));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(w);
        conn_close(c, 0);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    buf->base = mg.readbuf;
    buf->len = sizeof mg.readbuf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_read_start(struct conn *c)
{
    if (c->reading || c->eof || c->closing)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c, 0);
    else
        c->reading = 1;
}

static void on_conn_timer(uv_timer_t *t);

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->handle->data;

    if (c->closing)
        return;
    if (status < 0 || c->eof) {
        conn_close(c, 0);
        return;
    }
    uv_timer_start(&c->timer, on_conn_timer, MG_DRAIN_MS, 0);
    conn_read_start(c);
}

/* The last answer has been handed to libuv: half-close once it is flushed,
 * then drain (see the banner). */
static void conn_finish(struct conn *c)
{
    if (c->closing || c->draining)
        return;
    c->draining = 1;
    c->busy = 0;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        conn_close(c, 0);
}

/* Carry out c->act for the dispatched request. */
static void conn_perform(struct conn *c)
{
    c->busy = 0;
    switch (c->act) {
    case ACT_SEND:
        conn_write(c, c->resp.p, c->resp.len);
        if (c->close_after)
            conn_finish(c);
        break;
    case ACT_CLOSE:
        conn_close(c, 0);
        break;
    case ACT_RESET:
        conn_close(c, 1);
        break;
    case ACT_HANG:
        c->hanging = 1;
        if (c->eof) {
            conn_close(c, 0);
            break;
        }
        uv_timer_start(&c->timer, on_conn_timer, mg.faults.timeout_ms, 0);
        conn_read_start(c);
        break;
    }
    sb_trim(&c->resp);
}

static void on_conn_timer(uv_timer_t *t)
{
    struct conn *c = t->data;

    if (c->closing)
        return;
    if (c->hanging || c->draining) {
        conn_close(c, 0);
    } else if (c->busy) {
        conn_perform(c);
        conn_resume(c);
    }
}

/* --- building answers --- */

/* Set c's answer: status line, headers, body. extra: more header lines,
 * each ending in CRLF, or NULL. */
static void reply(struct conn *c, int status, const char *ctype,
                  const char *extra, const char *body, size_t blen)
{
    struct sbuf *r = &c->resp;

    sb_clear(r);
    sb_reserve(r, blen + 160);
    sb_puts(r, "HTTP/1.1 ");
    sb_u64(r, (uint64_t)status);
    sb_putc(r, ' ');
    sb_puts(r, http_status_str((enum http_status)status));
    sb_puts(r, "\r\nContent-Type: ");
    sb_puts(r, ctype);
    sb_puts(r, "\r\nContent-Length: ");
    sb_u64(r, blen);
    sb_puts(r, "\r\n");
    if (extra)
        sb_puts(r, extra);
    if (c->close_after)
        sb_puts(r, "Connection: close\r\n");
    else if (c->parser.http_major == 1 && c->parser.http_minor == 0)
        sb_puts(r, "Connection: keep-alive\r\n");
    sb_puts(r, "\r\n");
    sb_put(r, body, blen);
    c->act = ACT_SEND;
}

static void reply_json(struct conn *c, int status, const char *body)
{
    reply(c, status, "application/json", NULL, body, strlen(body));
}

/* Answer {"status":st,"reason":reason}. */
static void reply_error(struct conn *c, int status, const char *st,
                        const char *reason)
{
    sb_clear(&mg.tmp);
    sb_puts(&mg.tmp, "{\"status\":");
    sb_json_str(&mg.tmp, st, strlen(st));
    sb_puts(&mg.tmp, ",\"reason\":");
    sb_json_str(&mg.tmp, reason, strlen(reason));
    sb_putc(&mg.tmp, '}');
    reply(c, status, "application/json", NULL, mg.tmp.p, mg.tmp.len);
}

/* The value of header h, trimmed; "" (length 0) if absent. */
static const char *hdr_get(struct conn *c, enum hdr h, size_t *len)
{
    const char *v = c->hval[h].p;
    size_t n = c->hval[h].len;

    if (!(c->hset & (1u << h)) || !v) {
        *len = 0;
        return "";
    }
    while (n && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    *len = n;
    return v;
}

/* Parse the body as one JSON value with nothing but whitespace after it.
 * Returns the tree (caller deletes) or NULL. */
static cJSON *json_body(struct conn *c)
{
    const char *end = NULL, *stop;
    cJSON *j;

    if (c->body.len == 0)
        return NULL;
    j = cJSON_ParseWithLengthOpts(c->body.p, c->body.len, &end, 0);
    if (!j)
        return NULL;
    stop = c->body.p + c->body.len;
    while (end && end < stop && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (end != stop) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* --- parser callbacks --- */

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;

    sb_trim(&c->url);
    sb_trim(&c->body);
    c->hname_len = 0;
    c->in_value = 0;
    c->dup_header = 0;
    c->hcur = HDR_NONE;
    c->hset = 0;
    c->req_error = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    if (c->url.len + len > MG_MAX_URL) {
        c->req_error = 400;
        return -1;
    }
    sb_put(&c->url, at, len);
    return 0;
}

/* RFC 9110 tchar: the parser is lenient about header names, we are not. */
static int is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    for (size_t i = 0; i < len; i++) {
        if (!is_tchar((unsigned char)at[i])) {
            c->req_error = 400;
            return -1;
        }
    }
    if (c->in_value) {
        c->in_value = 0;
        c->hname_len = 0;
    }
    if (c->hname_len + len >= MG_MAX_HDR_NAME) {
        c->hname_len = MG_MAX_HDR_NAME;
    } else {
        memcpy(c->hname + c->hname_len, at, len);
        c->hname_len += len;
    }
    return 0;
}

static int hdr_lookup(const char *name, size_t n)
{
    for (int h = 0; h < HDR__COUNT; h++)
        if (strlen(hdr_names[h]) == n && strncasecmp(name, hdr_names[h], n) == 0)
            return h;
    return HDR_NONE;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct sbuf *v;

    if (!c->in_value) {
        c->in_value = 1;
        c->hcur = hdr_lookup(c->hname, c->hname_len);
        if (c->hcur != HDR_NONE) {
            if (c->hset & (1u << c->hcur))
                c->dup_header = 1;
            c->hset |= 1u << c->hcur;
            sb_clear(&c->hval[c->hcur]);
        }
    }
    if (c->hcur == HDR_NONE || len == 0)
        return 0;
    v = &c->hval[c->hcur];
    if (v->len + len > MG_MAX_HDR_VALUE) {
        c->req_error = 400;
        return -1;
    }
    sb_put(v, at, len);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    const char *v;
    size_t n;

    if (p->content_length != ULLONG_MAX && p->content_length > MG_MAX_BODY &&
        !(p->flags & F_CHUNKED)) {
        c->req_error = 413;
        return -1;
    }
    v = hdr_get(c, HDR_EXPECT, &n);
    if (n == 12 && strncasecmp(v, "100-continue", 12) == 0 &&
        p->http_major == 1 && p->http_minor >= 1) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_write(c, cont, sizeof cont - 1);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    if (c->body.len + len > MG_MAX_BODY) {
        c->req_error = 413;
        return -1;
    }
    sb_put(&c->body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_parser_pause(p, 1);
    return 0;
}

static void dispatch(struct conn *c);

/* The parser rejected the input: answer 400 (413 for a body over the
 * limit) and close. */
static void conn_parse_error(struct conn *c, enum http_errno e)
{
    int status = c->req_error ? c->req_error : 400;

    mg.st.requests++;
    mg.st.bad_requests++;
    c->close_after = 1;
    if (status == 413)
        reply_error(c, 413, "bad_request", "body_too_large");
    else
        reply_error(c, status, "bad_request", http_errno_name(e));
    conn_perform(c);
}

/* Feed data[0..len) to c's parser, dispatching each complete request, until
 * the bytes are used up or c stops serving (busy, hanging, draining,
 * closing). Returns the number of bytes consumed; the caller keeps the
 * rest. */
static size_t conn_parse(struct conn *c, const char *data, size_t len)
{
    size_t used = 0;

    while (used < len && !c->busy && !c->closing && !c->draining && !c->hanging) {
        size_t n = http_parser_execute(&c->parser, &mg.settings, data + used,
                                       len - used);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        used += n;
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            dispatch(c);
            continue;
        }
        if (e != HPE_OK) {
            conn_parse_error(c, e);
            return len;
        }
        if (n == 0)
            break;
    }
    return used;
}

/* Continue serving c after an answer went out: parse buffered requests,
 * then read more, or finish if the peer has closed its side. */
static void conn_resume(struct conn *c)
{
    if (c->closing || c->draining || c->hanging || c->busy)
        return;
    if (c->in_off < c->in.len)
        c->in_off += conn_parse(c, c->in.p + c->in_off, c->in.len - c->in_off);
    if (c->closing || c->draining || c->hanging)
        return;
    if (c->in_off >= c->in.len) {
        c->in_off = 0;
        sb_trim(&c->in);
    }
    if (c->busy)
        return;
    if (c->eof)
        conn_finish(c);
    else
        conn_read_start(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    const char *data = buf->base;
    size_t len;

    if (c->closing || nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF) {
            conn_close(c, 0);
            return;
        }
        c->eof = 1;
        c->reading = 0;
        if (c->draining || c->hanging)
            conn_close(c, 0);
        else if (!c->busy)
            conn_resume(c);
        return;
    }
    if (c->draining || c->hanging)
        return;                                 /* discard */
    len = (size_t)nread;
    if (!c->busy && c->in_off >= c->in.len) {   /* nothing buffered: parse in place */
        size_t used = conn_parse(c, data, len);
        data += used;
        len -= used;
        if (len == 0 || c->closing || c->draining || c->hanging)
            return;
        sb_clear(&c->in);
        c->in_off = 0;
    }
    sb_put(&c->in, data, len);
    if (!c->busy) {
        conn_resume(c);
    } else if (c->in.len - c->in_off > MG_MAX_BUFFERED) {
        uv_read_stop(s);
        c->reading = 0;
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    struct conn *c;

    if (status < 0 || mg.stopping)
        return;
    c = xcalloc(1, sizeof *c);
    c->hcur = HDR_NONE;
    uv_tcp_init(&mg.loop, &c->tcp);
    c->tcp.data = c;
    c->open_handles = 1;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    uv_timer_init(&mg.loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 2;
    uv_tcp_nodelay(&c->tcp, 1);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->next = mg.conns;
    if (mg.conns)
        mg.conns->prev = c;
    mg.conns = c;
    mg.st.conns_accepted++;
    mg.st.conns_open++;
    conn_read_start(c);
}

/* ---------------------------------------------------------------------------
 * Gateway: POST /charges, GET /charges/{key}
 * ------------------------------------------------------------------------- */

/* Answer a transient failure (429/500/503/timeout/reset/lost/garbage) or
 * an outage of that mode for key ch (NULL: a GET for an unknown key). The
 * ledger only counts the 429s: each one is a second the client must wait
 * before it may try again, so the key's count is a floor under how long the
 * order can have taken. */
static void gw_fail(struct conn *c, struct charge *ch, enum res r)
{
    if (r == RES_429 && ch && ++ch->throttled > mg.max_throttled)
        mg.max_throttled = ch->throttled;
    switch (r) {
    case RES_429:
        reply(c, 429, "application/json", "Retry-After: 1\r\n",
              "{\"status\":\"rate_limited\"}", 25);
        break;
    case RES_500:
        reply_json(c, 500, "{\"status\":\"error\"}");
        break;
    case RES_503:
        reply_json(c, 503, "{\"status\":\"unavailable\"}");
        break;
    case RES_TIMEOUT:
        c->act = ACT_HANG;
        break;
    case RES_RESET:
        c->act = ACT_RESET;
        break;
    case RES_LOST:
        c->act = ACT_CLOSE;
        break;
    case RES_GARBAGE:
        reply(c, 200, "text/html", NULL, "<html>oops", 10);
        break;
    default:
        assert(!"not a transient outcome");
        reply_json(c, 500, "{\"status\":\"error\"}");
        break;
    }
}

/* Answer with ch's recorded (and possibly just settled) outcome. */
static void gw_reply_charge(struct conn *c, struct charge *ch)
{
    struct sbuf *b = &mg.tmp;

    charge_resolve(ch);
    switch (ch->status) {
    case CS_SUCCEEDED:
    case CS_PENDING:
        sb_clear(b);
        sb_puts(b, "{\"id\":\"ch_");
        sb_u64(b, ch->id);
        sb_puts(b, ch->status == CS_PENDING ? "\",\"status\":\"pending\"}"
                                            : "\",\"status\":\"succeeded\"}");
        reply(c, ch->status == CS_PENDING ? 202 : 200, "application/json", NULL,
              b->p, b->len);
        break;
    case CS_DECLINED:
        reply_json(c, 402, "{\"status\":\"declined\",\"reason\":\"insufficient_funds\"}");
        break;
    case CS_RISK:
        reply_json(c, 403, "{\"status\":\"risk_rejected\",\"reason\":\"risk_score\"}");
        break;
    case CS_NONE:
        assert(!"no outcome recorded");
        break;
    }
}

/* Validate a POST /charges body into r (pointers into *root, which the
 * caller deletes). Returns 0, 400 (not a JSON object) or 422; *why names
 * the problem. */
static int charge_req_parse(struct conn *c, cJSON **root, struct charge_req *r,
                            const char **why)
{
    const cJSON *oid, *amt, *cur;
    cJSON *j = json_body(c);
    uint64_t amount;

    *root = j;
    if (!j || !cJSON_IsObject(j)) {
        *why = "body_not_json_object";
        return 400;
    }
    oid = cJSON_GetObjectItemCaseSensitive(j, "order_id");
    amt = cJSON_GetObjectItemCaseSensitive(j, "amount");
    cur = cJSON_GetObjectItemCaseSensitive(j, "currency");
    if (!cJSON_IsString(oid) || oid->valuestring[0] == '\0' ||
        strlen(oid->valuestring) > MG_MAX_ORDER_ID ||
        !utf8_valid(oid->valuestring, strlen(oid->valuestring))) {
        *why = "order_id";
        return 422;
    }
    if (json_uint(amt, (uint64_t)INT64_MAX, &amount) != 0) {
        *why = "amount";
        return 422;
    }
    if (cur && !cJSON_IsNull(cur) &&
        (!cJSON_IsString(cur) || strlen(cur->valuestring) > MG_MAX_CURRENCY ||
         !utf8_valid(cur->valuestring, strlen(cur->valuestring)))) {
        *why = "currency";
        return 422;
    }
    r->order_id = oid->valuestring;
    r->amount = (int64_t)amount;
    r->currency = cJSON_IsString(cur) ? cur->valuestring : "";
    return 0;
}

/* POST /charges. Order of decisions: key (400) -> outage -> body (400/422)
 * -> scripted outcome or random transient fault -> replay/conflict for a
 * key with a recorded outcome -> scripted or random decision. Returns the
 * latency to apply before answering. */
static uint64_t gw_post(struct conn *c)
{
    struct charge_req req;
    struct charge *ch;
    cJSON *root = NULL;
    const char *key, *why;
    enum res forced, t, d;
    double u_fault, u_decide;
    uint64_t delay;
    size_t klen;
    int st;

    mg.st.post_total++;
    key = hdr_get(c, HDR_IDEM, &klen);
    if (!key_valid(key, klen)) {
        mg.st.post[RES_BAD_REQUEST]++;
        reply_error(c, 400, "invalid", "idempotency_key");
        return 0;
    }
    delay = gw_latency(&mg.rng_post);
    ch = htab_get(&mg.ledger, sizeof *ch, key, klen, 1);
    if (ch->posts++ == 0)
        mg.keys_seen++;
    if (outage_active()) {
        mg.st.post[RES_OUTAGE]++;
        gw_fail(c, ch, mg.outage_mode);
        return delay;
    }
    st = charge_req_parse(c, &root, &req, &why);
    if (st) {
        mg.st.post[st == 400 ? RES_BAD_REQUEST : RES_INVALID]++;
        reply_error(c, st, "invalid", why);
        goto out;
    }
    forced = script_pop(ch);
    u_fault = rng_unit(&mg.rng_post);
    u_decide = rng_unit(&mg.rng_post);
    if (forced == RES_NONE)
        t = draw_transient(u_fault);
    else
        t = (forced >= RES_429 && forced <= RES_INVALID) ? forced : RES_NONE;
    if (t != RES_NONE) {
        mg.st.post[t]++;
        if (t == RES_INVALID) {
            reply_error(c, 422, "invalid", "scripted");
            goto out;
        }
        if ((t == RES_GARBAGE || t == RES_LOST) && ch->status == CS_NONE)
            charge_record(ch, &req, CS_SUCCEEDED);
        gw_fail(c, ch, t);
        goto out;
    }
    if (ch->status != CS_NONE) {
        if (!charge_same(ch, &req)) {
            mg.st.post[RES_CONFLICT]++;
            reply_json(c, 409, "{\"status\":\"conflict\"}");
        } else {
            mg.st.post[RES_REPLAY]++;
            gw_reply_charge(c, ch);
        }
        goto out;
    }
    d = forced != RES_NONE ? forced : draw_decision(u_decide);
    mg.st.post[d]++;
    charge_record(ch, &req, d == RES_DECLINE ? CS_DECLINED :
                            d == RES_RISK ? CS_RISK :
                            d == RES_PENDING ? CS_PENDING : CS_SUCCEEDED);
    gw_reply_charge(c, ch);
out:
    cJSON_Delete(root);
    return delay;
}

/* GET /charges/{key}; raw is the still-encoded key. Returns the latency. */
static uint64_t gw_get(struct conn *c, const char *raw, size_t rawlen)
{
    char key[MG_MAX_KEY];
    struct charge *ch;
    struct sbuf *b = &mg.tmp;
    uint64_t delay;
    long klen;

    mg.st.get_total++;
    klen = pct_decode(raw, rawlen, key, sizeof key);
    if (klen < 0 || !key_valid(key, (size_t)klen)) {
        mg.st.get[RES_BAD_REQUEST]++;
        reply_error(c, 400, "invalid", "idempotency_key");
        return 0;
    }
    delay = gw_latency(&mg.rng_get);
    ch = htab_get(&mg.ledger, sizeof *ch, key, (size_t)klen, 0);
    if (ch)
        ch->gets++;
    if (outage_active()) {
        mg.st.get[RES_OUTAGE]++;
        gw_fail(c, ch, mg.outage_mode);
        return delay;
    }
    if (mg.faults.faults_on_get) {
        enum res t = draw_transient(rng_unit(&mg.rng_get));
        if (t != RES_NONE) {
            mg.st.get[t]++;
            gw_fail(c, ch, t);
            return delay;
        }
    }
    if (!ch || ch->status == CS_NONE) {
        mg.st.get[RES_NOT_FOUND]++;
        reply_json(c, 404, "{\"status\":\"not_found\"}");
        return delay;
    }
    mg.st.get[RES_FOUND]++;
    charge_resolve(ch);
    sb_clear(b);
    sb_puts(b, "{\"id\":\"ch_");
    sb_u64(b, ch->id);
    sb_puts(b, "\",\"status\":\"");
    switch (ch->status) {
    case CS_SUCCEEDED:
        sb_puts(b, "succeeded\"}");
        break;
    case CS_PENDING:
        sb_puts(b, "pending\"}");
        break;
    case CS_DECLINED:
        sb_puts(b, "declined\",\"reason\":\"insufficient_funds\"}");
        break;
    case CS_RISK:
    case CS_NONE:
        sb_puts(b, ch->status == CS_RISK && mg.faults.risk_on_get ? "risk_rejected\""
                                                                   : "declined\"");
        sb_puts(b, ",\"reason\":\"risk_score\"}");
        break;
    }
    reply(c, 200, "application/json", NULL, b->p, b->len);
    return delay;
}

/* ---------------------------------------------------------------------------
 * Webhook receiver: POST /webhook
 * ------------------------------------------------------------------------- */

static uint64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Check X-Faka-Signature: v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>
 * (a comma-separated list is accepted; any matching v1 entry passes) and,
 * if webhook_max_skew_ms is set, the timestamp's distance to now. */
static int webhook_verify(struct conn *c)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char want[2 * 32];
    const char *ts, *sig, *end;
    size_t tlen, slen;
    uint64_t tsv = 0;

    ts = hdr_get(c, HDR_TS, &tlen);
    sig = hdr_get(c, HDR_SIG, &slen);
    if (tlen == 0 || tlen > 19 || slen == 0)
        return 0;
    for (size_t i = 0; i < tlen; i++) {
        if (ts[i] < '0' || ts[i] > '9')
            return 0;
        tsv = tsv * 10 + (uint64_t)(ts[i] - '0');
    }
    if (mg.faults.webhook_max_skew_ms) {
        uint64_t now = wall_ms();
        uint64_t skew = now > tsv ? now - tsv : tsv - now;
        if (skew > mg.faults.webhook_max_skew_ms)
            return 0;
    }
    sb_clear(&mg.mac);
    sb_put(&mg.mac, ts, tlen);
    sb_putc(&mg.mac, '.');
    sb_put(&mg.mac, c->body.p, c->body.len);
    if (!HMAC(EVP_sha256(), mg.secret, (int)mg.secret_len,
              (const unsigned char *)mg.mac.p, mg.mac.len, md, &mdlen) || mdlen != 32)
        return 0;
    for (unsigned i = 0; i < 32; i++) {
        want[2 * i] = hex[md[i] >> 4];
        want[2 * i + 1] = hex[md[i] & 15];
    }
    end = sig + slen;
    while (sig < end) {
        const char *tok = sig, *comma = memchr(sig, ',', (size_t)(end - sig));
        const char *tend = comma ? comma : end;
        char got[2 * 32];
        while (tok < tend && (*tok == ' ' || *tok == '\t'))
            tok++;
        while (tend > tok && (tend[-1] == ' ' || tend[-1] == '\t'))
            tend--;
        if (tend - tok == 3 + 64 && memcmp(tok, "v1=", 3) == 0) {
            for (size_t i = 0; i < 64; i++) {
                char ch = tok[3 + i];
                got[i] = (ch >= 'A' && ch <= 'F') ? (char)(ch - 'A' + 'a') : ch;
            }
            if (CRYPTO_memcmp(got, want, 64) == 0)
                return 1;
        }
        sig = comma ? comma + 1 : end;
    }
    return 0;
}

/* POST /webhook: 401 bad signature, 500 injected failure, 400 body without
 * a string order_id, else 200 and the delivery is recorded. */
static uint64_t webhook_post(struct conn *c)
{
    uint64_t delay = mg.faults.webhook_latency_ms;
    const cJSON *oid, *codes;
    struct hook *hk;
    char *printed, *cj;
    cJSON *j;
    size_t n;

    mg.st.wh_total++;
    if (mg.secret && !webhook_verify(c)) {
        mg.st.wh_rejected++;
        reply_error(c, 401, "unauthorized", "signature");
        return delay;
    }
    if (mg.faults.p_webhook_fail > 0 && rng_unit(&mg.rng_hook) < mg.faults.p_webhook_fail) {
        mg.st.wh_failed++;
        reply_error(c, 500, "error", "injected");
        return delay;
    }
    j = json_body(c);
    oid = cJSON_GetObjectItemCaseSensitive(j, "order_id");
    if (!cJSON_IsObject(j) || !cJSON_IsString(oid) || oid->valuestring[0] == '\0' ||
        (n = strlen(oid->valuestring)) > MG_MAX_ORDER_ID ||
        !utf8_valid(oid->valuestring, n)) {
        mg.st.wh_invalid++;
        reply_error(c, 400, "invalid", "order_id");
        cJSON_Delete(j);
        return delay;
    }
    codes = cJSON_GetObjectItemCaseSensitive(j, "codes");
    printed = codes ? cJSON_PrintUnformatted(codes) : NULL;
    if (codes && !printed)
        die_oom();
    cj = printed ? xstrndup(printed, strlen(printed)) : xstrndup("null", 4);
    cJSON_free(printed);
    hk = htab_get(&mg.hooks, sizeof *hk, oid->valuestring, n, 1);
    mg.st.wh_accepted++;
    if (hk->count++ == 0) {
        hk->codes = cj;
        reply_json(c, 200, "{\"status\":\"ok\",\"duplicate\":false}");
    } else {
        mg.st.wh_duplicates++;
        if (strcmp(hk->codes, cj) != 0) {
            hk->mismatches++;
            mg.st.wh_mismatches++;
        }
        free(cj);
        reply_json(c, 200, "{\"status\":\"ok\",\"duplicate\":true}");
    }
    cJSON_Delete(j);
    return delay;
}

/* ---------------------------------------------------------------------------
 * Control API
 * ------------------------------------------------------------------------- */

/* Does the query string contain name=value as one of its &-separated
 * parameters? */
static int query_has(const char *q, size_t qlen, const char *param)
{
    size_t plen = strlen(param);
    const char *end = q + qlen;

    while (q && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pend = amp ? amp : end;
        if ((size_t)(pend - q) == plen && memcmp(q, param, plen) == 0)
            return 1;
        q = amp ? amp + 1 : end;
    }
    return 0;
}

static void faults_json(struct sbuf *b)
{
    const struct faults *f = &mg.faults;

    sb_putc(b, '{');
    for (size_t i = 0; i < sizeof fdescs / sizeof fdescs[0]; i++) {
        const struct fdesc *d = &fdescs[i];
        const char *field = (const char *)f + d->off;
        if (i)
            sb_putc(b, ',');
        sb_json_str(b, d->name, strlen(d->name));
        sb_putc(b, ':');
        switch (d->type) {
        case FT_MS:
            sb_u64(b, *(const uint64_t *)(const void *)field);
            break;
        case FT_PROB:
            sb_double(b, *(const double *)(const void *)field);
            break;
        case FT_BOOL:
            sb_puts(b, *(const int *)(const void *)field ? "true" : "false");
            break;
        case FT_THEN:
            sb_puts(b, *(const int *)(const void *)field ? "\"declined\"" : "\"succeeded\"");
            break;
        }
    }
    sb_putc(b, '}');
}

static void ctl_faults_get(struct conn *c)
{
    sb_clear(&mg.tmp);
    faults_json(&mg.tmp);
    reply(c, 200, "application/json", NULL, mg.tmp.p, mg.tmp.len);
}

/* POST /_faults: validate every field into a copy, then apply all or
 * nothing. Unknown fields and out-of-range values are 400, so a typo in a
 * test cannot silently leave a fault off. */
static void ctl_faults_post(struct conn *c)
{
    struct faults f = mg.faults;
    char why[160];
    cJSON *j = json_body(c);

    if (!cJSON_IsObject(j)) {
        reply_error(c, 400, "bad_request", "body must be a JSON object");
        goto out;
    }
    for (const cJSON *it = j->child; it; it = it->next) {
        const struct fdesc *d = NULL;
        char *field;
        uint64_t ms;
        for (size_t i = 0; i < sizeof fdescs / sizeof fdescs[0]; i++)
            if (strcmp(fdescs[i].name, it->string) == 0)
                d = &fdescs[i];
        if (!d) {
            snprintf(why, sizeof why, "unknown field %.100s", it->string);
            reply_error(c, 400, "bad_request", why);
            goto out;
        }
        field = (char *)&f + d->off;
        switch (d->type) {
        case FT_MS:
            if (json_uint(it, MG_MAX_MS, &ms) != 0)
                goto bad_value;
            *(uint64_t *)(void *)field = ms;
            break;
        case FT_PROB:
            if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0.0 && it->valuedouble <= 1.0))
                goto bad_value;
            *(double *)(void *)field = it->valuedouble;
            break;
        case FT_BOOL:
            if (!cJSON_IsBool(it))
                goto bad_value;
            *(int *)(void *)field = cJSON_IsTrue(it);
            break;
        case FT_THEN:
            if (!cJSON_IsString(it) || (strcmp(it->valuestring, "succeeded") != 0 &&
                                        strcmp(it->valuestring, "declined") != 0))
                goto bad_value;
            *(int *)(void *)field = strcmp(it->valuestring, "declined") == 0;
            break;
        }
        continue;
bad_value:
        snprintf(why, sizeof why, "bad value for %s", d->name);
        reply_error(c, 400, "bad_request", why);
        goto out;
    }
    if (f.p_429 + f.p_503 + f.p_500 + f.p_timeout + f.p_reset + f.p_garbage + f.p_lost > 1.0 + 1e-9) {
        reply_error(c, 400, "bad_request", "transient probabilities sum above 1");
        goto out;
    }
    if (f.p_decline + f.p_risk + f.p_pending > 1.0 + 1e-9) {
        reply_error(c, 400, "bad_request", "p_decline + p_risk + p_pending above 1");
        goto out;
    }
    mg.faults = f;
    ctl_faults_get(c);
out:
    cJSON_Delete(j);
}

/* POST /_outage {"ms":N,"mode":"503"|"500"|"429"|"reset"|"timeout"}; ms 0
 * ends an outage. */
static void ctl_outage(struct conn *c)
{
    static const enum res modes[] = { RES_503, RES_500, RES_429, RES_RESET, RES_TIMEOUT };
    cJSON *j = json_body(c);
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "ms");
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(j, "mode");
    enum res m = RES_NONE;
    uint64_t v;

    if (!cJSON_IsObject(j) || json_uint(ms, MG_MAX_MS, &v) != 0) {
        reply_error(c, 400, "bad_request", "ms must be an integer in [0, 86400000]");
        goto out;
    }
    if (!mode) {
        m = RES_503;
    } else if (cJSON_IsString(mode)) {
        for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
            if (strcmp(mode->valuestring, res_names[modes[i]]) == 0)
                m = modes[i];
    }
    if (m == RES_NONE) {
        reply_error(c, 400, "bad_request", "mode must be 503, 500, 429, reset or timeout");
        goto out;
    }
    mg.outage_until = v ? now_ms() + v : 0;
    mg.outage_mode = m;
    sb_clear(&mg.tmp);
    sb_puts(&mg.tmp, "{\"status\":\"ok\",\"ms\":");
    sb_u64(&mg.tmp, v);
    sb_puts(&mg.tmp, ",\"mode\":");
    sb_json_str(&mg.tmp, res_names[m], strlen(res_names[m]));
    sb_putc(&mg.tmp, '}');
    reply(c, 200, "application/json", NULL, mg.tmp.p, mg.tmp.len);
out:
    cJSON_Delete(j);
}

/* POST /_script {"key":K,"outcomes":[...]}: append to K's queue. */
static void ctl_script(struct conn *c)
{
    enum res rs[MG_MAX_SCRIPT];
    cJSON *j = json_body(c);
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(j, "key");
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(j, "outcomes");
    const cJSON *it;
    struct charge *ch;
    size_t n = 0, klen;
    char why[160];

    if (!cJSON_IsObject(j) || !cJSON_IsString(key) ||
        !key_valid(key->valuestring, (klen = strlen(key->valuestring)))) {
        reply_error(c, 400, "bad_request", "key must be a valid idempotency key");
        goto out;
    }
    if (!cJSON_IsArray(outs)) {
        reply_error(c, 400, "bad_request", "outcomes must be an array");
        goto out;
    }
    cJSON_ArrayForEach(it, outs) {
        enum res r = cJSON_IsString(it) ? res_from_script(it->valuestring) : RES_NONE;
        if (r == RES_NONE) {
            snprintf(why, sizeof why, "unknown outcome %.100s",
                     cJSON_IsString(it) ? it->valuestring : "(not a string)");
            reply_error(c, 400, "bad_request", why);
            goto out;
        }
        if (n == MG_MAX_SCRIPT) {
            reply_error(c, 400, "bad_request", "too many outcomes");
            goto out;
        }
        rs[n++] = r;
    }
    ch = htab_get(&mg.ledger, sizeof *ch, key->valuestring, klen, 1);
    if (ch->script_len + n > MG_MAX_SCRIPT) {
        reply_error(c, 400, "bad_request", "too many outcomes");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        script_push(ch, rs[i]);
    sb_clear(&mg.tmp);
    sb_puts(&mg.tmp, "{\"status\":\"ok\",\"key\":");
    sb_json_str(&mg.tmp, ch->h.key, ch->h.klen);
    sb_puts(&mg.tmp, ",\"queued\":");
    sb_u64(&mg.tmp, ch->script_len);
    sb_putc(&mg.tmp, '}');
    reply(c, 200, "application/json", NULL, mg.tmp.p, mg.tmp.len);
out:
    cJSON_Delete(j);
}

/* POST /_reset [{"seed":N}]: forget everything (see state_reset). */
static void ctl_reset(struct conn *c)
{
    uint64_t seed = mg.seed;

    if (c->body.len) {
        cJSON *j = json_body(c);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "seed");
        int ok = cJSON_IsObject(j) && (!s || json_uint(s, UINT64_MAX, &seed) == 0) &&
                 cJSON_GetArraySize(j) == (s ? 1 : 0);
        cJSON_Delete(j);
        if (!ok) {
            reply_error(c, 400, "bad_request", "body must be {} or {\"seed\":N}");
            return;
        }
    }
    state_reset(seed);
    reply_json(c, 200, "{\"status\":\"ok\"}");
}

/* GET /_ledger[?entries=0] */
static void ctl_ledger(struct conn *c, const char *q, size_t qlen)
{
    struct sbuf *b = &mg.tmp;
    int first = 1;

    resolve_all();
    sb_clear(b);
    sb_puts(b, "{\"keys\":");
    sb_u64(b, mg.keys_seen);
    sb_puts(b, ",\"charges_succeeded\":");
    sb_u64(b, mg.charges_succeeded);
    sb_puts(b, ",\"double_charges\":");
    sb_u64(b, mg.double_charges);
    sb_puts(b, ",\"double_charged_orders\":");
    sb_u64(b, mg.double_orders);
    sb_puts(b, ",\"pending\":");
    sb_u64(b, mg.pending_count);
    sb_puts(b, ",\"posts\":");
    sb_u64(b, mg.st.post_total);
    sb_puts(b, ",\"gets\":");
    sb_u64(b, mg.st.get_total);
    sb_puts(b, ",\"max_throttled\":");
    sb_u64(b, mg.max_throttled);
    sb_puts(b, ",\"double_charged_order_ids\":[");
    for (size_t k = 0; k < mg.orders.n && mg.double_orders; k++) {
        const struct order *o = (const struct order *)(const void *)mg.orders.nodes[k];
        if (o->succeeded < 2)
            continue;
        if (!first)
            sb_putc(b, ',');
        first = 0;
        sb_json_str(b, o->h.key, o->h.klen);
    }
    sb_putc(b, ']');
    if (!query_has(q, qlen, "entries=0")) {
        first = 1;
        sb_puts(b, ",\"entries\":{");
        for (size_t k = 0; k < mg.ledger.n; k++) {
            const struct charge *ch = (const struct charge *)(const void *)mg.ledger.nodes[k];
            if (ch->posts == 0)
                continue;                  /* a script only, never POSTed */
            if (!first)
                sb_putc(b, ',');
            first = 0;
            sb_json_str(b, ch->h.key, ch->h.klen);
            sb_puts(b, ":{");
            if (ch->status != CS_NONE) {
                sb_puts(b, "\"id\":\"ch_");
                sb_u64(b, ch->id);
                sb_puts(b, "\",\"order_id\":");
                sb_json_str(b, ch->order_id, strlen(ch->order_id));
                sb_puts(b, ",\"amount\":");
                sb_i64(b, ch->amount);
                sb_puts(b, ",\"currency\":");
                sb_json_str(b, ch->currency, strlen(ch->currency));
                sb_putc(b, ',');
            }
            sb_puts(b, "\"status\":\"");
            sb_puts(b, cstatus_name(ch->status));
            sb_puts(b, "\",\"charges\":");
            sb_u64(b, ch->charges);
            sb_puts(b, ",\"posts\":");
            sb_u64(b, ch->posts);
            sb_puts(b, ",\"gets\":");
            sb_u64(b, ch->gets);
            sb_puts(b, ",\"throttled\":");
            sb_u64(b, ch->throttled);
            if (ch->script_len) {
                sb_puts(b, ",\"scripted\":");
                sb_u64(b, ch->script_len);
            }
            sb_putc(b, '}');
        }
        sb_putc(b, '}');
    }
    sb_putc(b, '}');
    reply(c, 200, "application/json", NULL, b->p, b->len);
}

static void stats_res(struct sbuf *b, const char *name, const uint64_t *v,
                      uint64_t total)
{
    sb_putc(b, '"');
    sb_puts(b, name);
    sb_puts(b, "\":{\"total\":");
    sb_u64(b, total);
    for (int r = 0; r < RES__COUNT; r++) {
        sb_puts(b, ",\"");
        sb_puts(b, res_names[r]);
        sb_puts(b, "\":");
        sb_u64(b, v[r]);
    }
    sb_putc(b, '}');
}

/* GET /_stats */
static void ctl_stats(struct conn *c)
{
    struct sbuf *b = &mg.tmp;
    const struct stats *s = &mg.st;

    sb_clear(b);
    sb_puts(b, "{\"requests\":");
    sb_u64(b, s->requests);
    sb_puts(b, ",\"control\":");
    sb_u64(b, s->control);
    sb_puts(b, ",\"bad_requests\":");
    sb_u64(b, s->bad_requests);
    sb_puts(b, ",\"unknown_path\":");
    sb_u64(b, s->unknown_path);
    sb_puts(b, ",\"connections\":{\"accepted\":");
    sb_u64(b, s->conns_accepted);
    sb_puts(b, ",\"open\":");
    sb_u64(b, s->conns_open);
    sb_puts(b, "},\"outage_active\":");
    sb_puts(b, outage_active() ? "true," : "false,");
    stats_res(b, "charges_post", s->post, s->post_total);
    sb_putc(b, ',');
    stats_res(b, "charges_get", s->get, s->get_total);
    sb_puts(b, ",\"webhook\":{\"total\":");
    sb_u64(b, s->wh_total);
    sb_puts(b, ",\"accepted\":");
    sb_u64(b, s->wh_accepted);
    sb_puts(b, ",\"duplicates\":");
    sb_u64(b, s->wh_duplicates);
    sb_puts(b, ",\"rejected\":");
    sb_u64(b, s->wh_rejected);
    sb_puts(b, ",\"invalid\":");
    sb_u64(b, s->wh_invalid);
    sb_puts(b, ",\"failed\":");
    sb_u64(b, s->wh_failed);
    sb_puts(b, "}}");
    reply(c, 200, "application/json", NULL, b->p, b->len);
}

/* GET /_webhooks[?entries=0] */
static void ctl_webhooks(struct conn *c, const char *q, size_t qlen)
{
    struct sbuf *b = &mg.tmp;

    sb_clear(b);
    sb_puts(b, "{\"received\":");
    sb_u64(b, mg.st.wh_accepted);
    sb_puts(b, ",\"rejected\":");
    sb_u64(b, mg.st.wh_rejected);
    sb_puts(b, ",\"invalid\":");
    sb_u64(b, mg.st.wh_invalid);
    sb_puts(b, ",\"failed\":");
    sb_u64(b, mg.st.wh_failed);
    sb_puts(b, ",\"duplicates\":");
    sb_u64(b, mg.st.wh_duplicates);
    sb_puts(b, ",\"code_mismatches\":");
    sb_u64(b, mg.st.wh_mismatches);
    sb_puts(b, ",\"distinct_orders\":");
    sb_u64(b, mg.hooks.n);
    if (!query_has(q, qlen, "entries=0")) {
        sb_puts(b, ",\"orders\":{");
        for (size_t k = 0; k < mg.hooks.n; k++) {
            const struct hook *hk = (const struct hook *)(const void *)mg.hooks.nodes[k];
            if (k)
                sb_putc(b, ',');
            sb_json_str(b, hk->h.key, hk->h.klen);
            sb_puts(b, ":{\"count\":");
            sb_u64(b, hk->count);
            sb_puts(b, ",\"codes\":");
            sb_puts(b, hk->codes);
            sb_puts(b, ",\"mismatches\":");
            sb_u64(b, hk->mismatches);
            sb_putc(b, '}');
        }
        sb_putc(b, '}');
    }
    sb_putc(b, '}');
    reply(c, 200, "application/json", NULL, b->p, b->len);
}

/* --- routing --- */

static int path_is(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(p, lit, n) == 0;
}

/* Route the parsed request to its handler. Returns the latency to apply
 * before the answer is acted on (0: at once). */
static uint64_t route(struct conn *c)
{
    struct http_parser_url u;
    const char *path, *q = NULL;
    size_t plen, qlen = 0;
    int m = (int)c->parser.method;

    http_parser_url_init(&u);
    if (c->url.len == 0 ||
        http_parser_parse_url(c->url.p, c->url.len, 0, &u) != 0 ||
        !(u.field_set & (1u << UF_PATH))) {
        mg.st.bad_requests++;
        reply_error(c, 400, "bad_request", "request_target");
        return 0;
    }
    path = c->url.p + u.field_data[UF_PATH].off;
    plen = u.field_data[UF_PATH].len;
    if (u.field_set & (1u << UF_QUERY)) {
        q = c->url.p + u.field_data[UF_QUERY].off;
        qlen = u.field_data[UF_QUERY].len;
    }

    if (path_is(path, plen, "/charges")) {
        if (m == HTTP_POST)
            return gw_post(c);
        goto not_allowed;
    }
    if (plen > 9 && memcmp(path, "/charges/", 9) == 0) {
        if (m == HTTP_GET)
            return gw_get(c, path + 9, plen - 9);
        goto not_allowed;
    }
    if (path_is(path, plen, "/webhook")) {
        if (m == HTTP_POST)
            return webhook_post(c);
        goto not_allowed;
    }

    mg.st.control++;
    if (path_is(path, plen, "/_faults")) {
        if (m == HTTP_POST)
            ctl_faults_post(c);
        else if (m == HTTP_GET)
            ctl_faults_get(c);
        else
            goto not_allowed;
    } else if (path_is(path, plen, "/_outage")) {
        if (m != HTTP_POST)
            goto not_allowed;
        ctl_outage(c);
    } else if (path_is(path, plen, "/_script")) {
        if (m != HTTP_POST)
            goto not_allowed;
        ctl_script(c);
    } else if (path_is(path, plen, "/_reset")) {
        if (m != HTTP_POST)
            goto not_allowed;
        ctl_reset(c);
    } else if (path_is(path, plen, "/_ledger")) {
        if (m != HTTP_GET)
            goto not_allowed;
        ctl_ledger(c, q, qlen);
    } else if (path_is(path, plen, "/_stats")) {
        if (m != HTTP_GET)
            goto not_allowed;
        ctl_stats(c);
    } else if (path_is(path, plen, "/_webhooks")) {
        if (m != HTTP_GET)
            goto not_allowed;
        ctl_webhooks(c, q, qlen);
    } else if (path_is(path, plen, "/_health")) {
        if (m != HTTP_GET)
            goto not_allowed;
        reply_json(c, 200, "{\"status\":\"ok\"}");
    } else {
        mg.st.control--;
        mg.st.unknown_path++;
        reply_json(c, 404, "{\"status\":\"not_found\"}");
    }
    return 0;

not_allowed:
    reply_json(c, 405, "{\"status\":\"method_not_allowed\"}");
    return 0;
}

/* A complete request has been parsed: decide the answer and act on it now
 * or, with latency, when c->timer fires (c is busy meanwhile). */
static void dispatch(struct conn *c)
{
    uint64_t delay = 0;

    if (c->closing)
        return;
    mg.st.requests++;
    c->close_after = !http_should_keep_alive(&c->parser) || mg.stopping;
    if (c->parser.upgrade || c->parser.http_major != 1) {
        c->close_after = 1;
        mg.st.bad_requests++;
        reply_error(c, 400, "bad_request", c->parser.upgrade ? "upgrade_not_supported"
                                                             : "http_version");
    } else if (c->parser.method == HTTP_HEAD) {
        c->close_after = 1;             /* our answers always carry a body */
        reply_json(c, 405, "{\"status\":\"method_not_allowed\"}");
    } else if (c->dup_header) {
        mg.st.bad_requests++;
        reply_error(c, 400, "bad_request", "duplicate_header");
    } else {
        delay = route(c);
    }
    if (delay) {
        c->busy = 1;
        uv_timer_start(&c->timer, on_conn_timer, delay, 0);
    } else {
        conn_perform(c);
    }
}

/* ---------------------------------------------------------------------------
 * Start-up and shutdown
 * ------------------------------------------------------------------------- */

static void on_signal(uv_signal_t *s, int signum)
{
    struct conn *c, *next;

    if (mg.stopping)
        return;
    mg.stopping = 1;
    uv_close((uv_handle_t *)&mg.listener, NULL);
    uv_close((uv_handle_t *)&mg.sigterm, NULL);
    uv_close((uv_handle_t *)&mg.sigint, NULL);
    for (c = mg.conns; c; c = next) {
        next = c->next;
        conn_close(c, 0);
    }
}

static void usage(FILE *f)
{
    fputs("usage: faka-mock-gateway [--host 127.0.0.1] [--port N] "
          "[--webhook-secret S] [--seed N]\n"
          "A mock payment gateway and shop webhook receiver with fault "
          "injection; see tests/mock_gateway/README.md.\n", f);
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    unsigned long long v;
    char *end;

    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

static void on_walk_report(uv_handle_t *h, void *arg)
{
    fprintf(stderr, "faka-mock-gateway: handle still open: %s\n",
            uv_handle_type_name(uv_handle_get_type(h)));
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    uint64_t port = 0, seed = 1;
    struct sockaddr_storage addr;
    int namelen = sizeof addr;
    int r;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = NULL, *eq;
        size_t nlen = strlen(arg);
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strncmp(arg, "--", 2) == 0 && (eq = strchr(arg, '=')) != NULL) {
            nlen = (size_t)(eq - arg);
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        }
        if (!val) {
            fprintf(stderr, "faka-mock-gateway: %s needs a value\n", arg);
            return EXIT_USAGE;
        }
        if (nlen == 6 && strncmp(arg, "--host", 6) == 0) {
            host = val;
        } else if (nlen == 6 && strncmp(arg, "--port", 6) == 0) {
            if (parse_u64(val, 65535, &port) != 0) {
                fprintf(stderr, "faka-mock-gateway: bad --port %s\n", val);
                return EXIT_USAGE;
            }
        } else if (nlen == 16 && strncmp(arg, "--webhook-secret", 16) == 0) {
            mg.secret = val[0] ? val : NULL;
            mg.secret_len = strlen(val);
        } else if (nlen == 6 && strncmp(arg, "--seed", 6) == 0) {
            if (parse_u64(val, UINT64_MAX, &seed) != 0) {
                fprintf(stderr, "faka-mock-gateway: bad --seed %s\n", val);
                return EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "faka-mock-gateway: unknown option %.*s\n", (int)nlen, arg);
            usage(stderr);
            return EXIT_USAGE;
        }
    }

    signal(SIGPIPE, SIG_IGN);
    if ((r = uv_loop_init(&mg.loop)) != 0) {
        fprintf(stderr, "faka-mock-gateway: uv_loop_init: %s\n", uv_strerror(r));
        return EXIT_FAILURE;
    }
    http_parser_settings_init(&mg.settings);
    mg.settings.on_message_begin = on_message_begin;
    mg.settings.on_url = on_url;
    mg.settings.on_header_field = on_header_field;
    mg.settings.on_header_value = on_header_value;
    mg.settings.on_headers_complete = on_headers_complete;
    mg.settings.on_body = on_body;
    mg.settings.on_message_complete = on_message_complete;
    state_reset(seed);

    memset(&addr, 0, sizeof addr);
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)(void *)&addr) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)(void *)&addr) != 0) {
        fprintf(stderr, "faka-mock-gateway: bad --host %s (numeric IPv4/IPv6 only)\n", host);
        return EXIT_USAGE;
    }
    uv_tcp_init(&mg.loop, &mg.listener);
    if ((r = uv_tcp_bind(&mg.listener, (const struct sockaddr *)&addr, 0)) != 0 ||
        (r = uv_listen((uv_stream_t *)&mg.listener, 1024, on_connection)) != 0 ||
        (r = uv_tcp_getsockname(&mg.listener, (struct sockaddr *)&addr, &namelen)) != 0) {
        fprintf(stderr, "faka-mock-gateway: cannot listen on %s:%" PRIu64 ": %s\n",
                host, port, uv_strerror(r));
        uv_close((uv_handle_t *)&mg.listener, NULL);
        uv_run(&mg.loop, UV_RUN_DEFAULT);
        uv_loop_close(&mg.loop);
        return EXIT_LISTEN;
    }
    port = addr.ss_family == AF_INET6
               ? ntohs(((struct sockaddr_in6 *)(void *)&addr)->sin6_port)
               : ntohs(((struct sockaddr_in *)(void *)&addr)->sin_port);
    uv_signal_init(&mg.loop, &mg.sigterm);
    uv_signal_init(&mg.loop, &mg.sigint);
    uv_signal_start(&mg.sigterm, on_signal, SIGTERM);
    uv_signal_start(&mg.sigint, on_signal, SIGINT);
    if (strchr(host, ':'))
        printf("listening [%s]:%" PRIu64 "\n", host, port);
    else
        printf("listening %s:%" PRIu64 "\n", host, port);
    fflush(stdout);

    uv_run(&mg.loop, UV_RUN_DEFAULT);

    r = uv_loop_close(&mg.loop);
    if (r != 0) {
        uv_walk(&mg.loop, on_walk_report, NULL);
        fprintf(stderr, "faka-mock-gateway: loop did not close: %s\n", uv_strerror(r));
        return EXIT_UNCLEAN;
    }
    htab_clear(&mg.ledger, charge_fini);
    htab_clear(&mg.orders, NULL);
    htab_clear(&mg.hooks, hook_fini);
    sb_free(&mg.tmp);
    sb_free(&mg.mac);
    return 0;
}
