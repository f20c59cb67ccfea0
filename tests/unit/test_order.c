/* test_order.c -- unit tests of the order codec (common/order.c, utf8.c):
 * every field's bounds, every class of garbage a producer can XADD, the
 * id_out contract, payments, encode -> decode round trips, and a few thousand
 * random inputs and mutations that must never crash the decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "err.h"
#include "order.h"
#include "utf8.h"

/* ---- helpers ------------------------------------------------------------- */

static char g_err[256];
static char g_id[FK_ORDER_ID_MAX + 1];
static fk_order g_o;
static fk_payment g_p;

static int decn(const char *raw, size_t len)
{
    memset(&g_o, 0, sizeof g_o);
    memset(g_id, 'X', sizeof g_id - 1);     /* must be overwritten */
    g_id[sizeof g_id - 1] = '\0';
    strcpy(g_err, "(untouched)");
    return fk_order_decode(raw, len, &g_o, g_err, sizeof g_err, g_id);
}

static int dec(const char *json)
{
    return decn(json, strlen(json));
}

static int pdec(const char *json)
{
    memset(&g_p, 0, sizeof g_p);
    memset(g_id, 'X', sizeof g_id - 1);
    g_id[sizeof g_id - 1] = '\0';
    strcpy(g_err, "(untouched)");
    return fk_payment_decode(json, strlen(json), &g_p, g_err, sizeof g_err, g_id);
}

static void check_ok(int rc, const char *what, size_t len, int line)
{
    if (rc != 0)
        fail_msg("line %d: expected valid, got %d \"%s\" for %.300s%s", line, rc, g_err,
                 what, len > 300 ? "..." : "");
    if (g_err[0] != '\0')
        fail_msg("line %d: err not cleared on success: %s", line, g_err);
}

static void check_bad(int rc, const char *needle, const char *what, size_t len, int line)
{
    if (rc != FK_EINVAL)
        fail_msg("line %d: expected FK_EINVAL, got %d for %.300s%s", line, rc, what,
                 len > 300 ? "..." : "");
    if (g_err[0] == '\0' || strchr(g_err, '\n') != NULL)
        fail_msg("line %d: error must be one non-empty line, got \"%s\"", line, g_err);
    if (strstr(g_err, needle) == NULL)
        fail_msg("line %d: error \"%s\" does not mention \"%s\" (input %.300s)", line, g_err,
                 needle, what);
}

#define OK(json)            check_ok(dec(json), (json), strlen(json), __LINE__)
#define BAD(json, needle)   check_bad(dec(json), (needle), (json), strlen(json), __LINE__)
#define OKN(buf, n)         check_ok(decn((buf), (n)), (buf), (n), __LINE__)
#define BADN(buf, n, needle) check_bad(decn((buf), (n)), (needle), (buf), (n), __LINE__)
#define POK(json)           check_ok(pdec(json), (json), strlen(json), __LINE__)
#define PBAD(json, needle)  check_bad(pdec(json), (needle), (json), strlen(json), __LINE__)

#define D_ID  "\"A1001\""
#define D_SKU "\"wow-60d\""
#define D_QTY "2"
#define D_AMT "3000"

/* Build an order object from raw JSON value texts; NULL leaves a field out.
 * extra (raw members, may be NULL) is appended. Returns a static buffer. */
static const char *J(const char *id, const char *sku, const char *qty, const char *amount,
                     const char *extra)
{
    static char buf[64 * 1024];
    size_t n = 0;
    const char *sep = "";

#define ADD(fmt, ...) (n += (size_t)snprintf(buf + n, sizeof buf - n, fmt, __VA_ARGS__))
    ADD("%s", "{");
    if (id) { ADD("%s\"order_id\":%s", sep, id); sep = ","; }
    if (sku) { ADD("%s\"sku\":%s", sep, sku); sep = ","; }
    if (qty) { ADD("%s\"qty\":%s", sep, qty); sep = ","; }
    if (amount) { ADD("%s\"amount\":%s", sep, amount); sep = ","; }
    if (extra) { ADD("%s%s", sep, extra); }
    ADD("%s", "}");
#undef ADD
    assert_true(n < sizeof buf);
    return buf;
}

/* The default order plus extra members. */
static const char *WITH(const char *extra)
{
    return J(D_ID, D_SKU, D_QTY, D_AMT, extra);
}

/* A JSON string literal of count copies of unit (raw JSON text), from a ring
 * of buffers so a few can be used in one expression. */
static const char *lit(const char *unit, size_t count)
{
    static char ring[4][8192];
    static int next;
    char *b = ring[next++ % 4];
    size_t n = 0, u = strlen(unit), i;

    b[n++] = '"';
    for (i = 0; i < count; i++) {
        assert_true(n + u + 2 < sizeof ring[0]);
        memcpy(b + n, unit, u);
        n += u;
    }
    b[n++] = '"';
    b[n] = '\0';
    return b;
}

/* "key":value as a member text, from a small ring. */
static const char *M(const char *key, const char *value)
{
    static char ring[4][9000];
    static int next;
    char *b = ring[next++ % 4];

    snprintf(b, sizeof ring[0], "\"%s\":%s", key, value);
    return b;
}

/* ---- the happy path ------------------------------------------------------ */

static void t_design_example(void **state)
{
    (void)state;
    OK("{\"order_id\":\"A1001\",\"idempotency_key\":\"chk-77\",\"sku\":\"wow-60d\",\"qty\":2,"
       "\"amount\":3000,\n    \"currency\":\"CNY\",\"buyer\":\"buyer@example.com\"}");
    assert_string_equal(g_o.order_id, "A1001");
    assert_string_equal(g_o.idem_key, "chk-77");
    assert_string_equal(g_o.sku, "wow-60d");
    assert_int_equal(g_o.qty, 2);
    assert_int_equal(g_o.amount, 3000);
    assert_string_equal(g_o.currency, "CNY");
    assert_string_equal(g_o.buyer, "buyer@example.com");
    assert_string_equal(g_id, "A1001");
}

static void t_defaults(void **state)
{
    (void)state;
    OK(J("\"o-1\"", "\"s\"", "1", "0", NULL));
    assert_string_equal(g_o.order_id, "o-1");
    assert_string_equal(g_o.idem_key, "o-1");
    assert_string_equal(g_o.currency, "CNY");
    assert_string_equal(g_o.buyer, "");
    assert_int_equal(g_o.amount, 0);
    /* members in any order, whitespace anywhere JSON allows it */
    OK(" \t\r\n{ \"amount\" : 5 ,\n\"qty\":\t1, \"sku\" :\"x\", \"order_id\":\"z\" } \n");
    assert_string_equal(g_o.idem_key, "z");
}

/* ---- field bounds -------------------------------------------------------- */

static void t_order_id(void **state)
{
    (void)state;
    OK(J(lit("a", 1), D_SKU, D_QTY, D_AMT, NULL));
    OK(J(lit("a", 64), D_SKU, D_QTY, D_AMT, NULL));
    assert_int_equal(strlen(g_o.order_id), 64);
    assert_int_equal(strlen(g_id), 64);
    OK(J("\"AZaz09_.:-\"", D_SKU, D_QTY, D_AMT, NULL));
    OK(J("\"\\u0041\\u0031\"", D_SKU, D_QTY, D_AMT, NULL));     /* escapes are fine */
    assert_string_equal(g_o.order_id, "A1");

    BAD(J(lit("a", 65), D_SKU, D_QTY, D_AMT, NULL), "order_id must be 1 to 64");
    assert_string_equal(g_id, "");
    BAD(J("\"\"", D_SKU, D_QTY, D_AMT, NULL), "order_id must be 1 to 64");
    BAD(J("\"A 1\"", D_SKU, D_QTY, D_AMT, NULL), "order_id");
    BAD(J("\"A/1\"", D_SKU, D_QTY, D_AMT, NULL), "order_id");
    BAD(J("\"A@1\"", D_SKU, D_QTY, D_AMT, NULL), "order_id");
    BAD(J("\"A\\n\"", D_SKU, D_QTY, D_AMT, NULL), "order_id");
    BAD(J("\"订单1\"", D_SKU, D_QTY, D_AMT, NULL), "order_id");
    BAD(J("\"A{1}\"", D_SKU, D_QTY, D_AMT, NULL), "order_id");   /* no hash-tag braces */
    /* dot segments: GET /charges/.. would be GET / */
    BAD(J("\".\"", D_SKU, D_QTY, D_AMT, NULL), "not . or ..");
    BAD(J("\"..\"", D_SKU, D_QTY, D_AMT, NULL), "not . or ..");
    OK(J("\"...\"", D_SKU, D_QTY, D_AMT, NULL));
    OK(J("\".a\"", D_SKU, D_QTY, D_AMT, NULL));
    BAD(J("1001", D_SKU, D_QTY, D_AMT, NULL), "order_id must be a string, not a number");
    BAD(J("null", D_SKU, D_QTY, D_AMT, NULL), "order_id must be a string, not null");
    BAD(J("[\"A1\"]", D_SKU, D_QTY, D_AMT, NULL), "order_id must be a string, not an array");
    BAD(J(NULL, D_SKU, D_QTY, D_AMT, NULL), "order_id is required");
    BAD(J(NULL, D_SKU, D_QTY, D_AMT, "\"Order_id\":\"A1\""), "order_id is required");
}

static void t_idem_key(void **state)
{
    char all[200];
    size_t n = 0;
    int c;

    (void)state;
    OK(WITH(M("idempotency_key", lit("k", 1))));
    assert_string_equal(g_o.idem_key, "k");
    OK(WITH(M("idempotency_key", lit("k", 255))));
    assert_int_equal(strlen(g_o.idem_key), 255);

    /* every visible ASCII character, '"' and '\' escaped */
    all[n++] = '"';
    for (c = 0x21; c <= 0x7e; c++) {
        if (c == '"' || c == '\\')
            all[n++] = '\\';
        all[n++] = (char)c;
    }
    all[n++] = '"';
    all[n] = '\0';
    OK(WITH(M("idempotency_key", all)));
    assert_int_equal(strlen(g_o.idem_key), 0x7e - 0x21 + 1);
    assert_int_equal(g_o.idem_key[0], '!');
    assert_int_equal(g_o.idem_key[0x7e - 0x21], '~');

    BAD(WITH(M("idempotency_key", lit("k", 256))), "idempotency_key must be 1 to 255");
    BAD(WITH(M("idempotency_key", "\"\"")), "idempotency_key must be 1 to 255");
    BAD(WITH(M("idempotency_key", "\"a b\"")), "idempotency_key");
    BAD(WITH(M("idempotency_key", "\"a\\tb\"")), "idempotency_key");
    BAD(WITH(M("idempotency_key", "\"a\\u007fb\"")), "idempotency_key");
    BAD(WITH(M("idempotency_key", "\"\x7f\"")), "idempotency_key");
    BAD(WITH(M("idempotency_key", "\"ключ\"")), "idempotency_key");
    BAD(WITH(M("idempotency_key", "\".\"")), "not . or ..");
    BAD(WITH(M("idempotency_key", "\"..\"")), "not . or ..");
    OK(WITH(M("idempotency_key", "\"...\"")));
    OK(WITH(M("idempotency_key", "\"./..\"")));
    BAD(WITH(M("idempotency_key", "null")), "idempotency_key must be a string, not null");
    BAD(WITH(M("idempotency_key", "77")), "idempotency_key must be a string, not a number");
    BAD(WITH(M("idempotency_key", "{}")), "idempotency_key must be a string, not an object");
    assert_string_equal(g_id, "A1001");
}

static void t_sku(void **state)
{
    (void)state;
    OK(J(D_ID, lit("s", 1), D_QTY, D_AMT, NULL));
    OK(J(D_ID, lit("s", 64), D_QTY, D_AMT, NULL));
    OK(J(D_ID, lit("é", 64), D_QTY, D_AMT, NULL));            /* 2-byte chars */
    assert_int_equal(strlen(g_o.sku), 128);
    OK(J(D_ID, lit("卡", 64), D_QTY, D_AMT, NULL));           /* 3-byte chars */
    OK(J(D_ID, lit("😀", 64), D_QTY, D_AMT, NULL));           /* 4-byte: the array's worst case */
    assert_int_equal(strlen(g_o.sku), 256);
    OK(J(D_ID, lit("\\ud83d\\ude00", 64), D_QTY, D_AMT, NULL)); /* same, as escapes */
    assert_int_equal(strlen(g_o.sku), 256);
    assert_int_equal(fk_utf8_count(g_o.sku, strlen(g_o.sku)), 64);
    OK(J(D_ID, "\"wow 60d / \\\"gold\\\"\"", D_QTY, D_AMT, NULL));
    assert_string_equal(g_o.sku, "wow 60d / \"gold\"");

    BAD(J(D_ID, lit("s", 65), D_QTY, D_AMT, NULL), "sku must be 1 to 64 characters");
    BAD(J(D_ID, lit("😀", 65), D_QTY, D_AMT, NULL), "sku must be 1 to 64 characters");
    BAD(J(D_ID, lit("é", 65), D_QTY, D_AMT, NULL), "sku must be 1 to 64 characters");
    BAD(J(D_ID, "\"\"", D_QTY, D_AMT, NULL), "sku must be 1 to 64 characters");
    BAD(J(D_ID, "\"a\\nb\"", D_QTY, D_AMT, NULL), "sku must not contain control characters");
    BAD(J(D_ID, "\"a\\tb\"", D_QTY, D_AMT, NULL), "sku must not contain control characters");
    BAD(J(D_ID, "\"a\\u001bb\"", D_QTY, D_AMT, NULL), "sku must not contain control");
    BAD(J(D_ID, "\"a\\u007fb\"", D_QTY, D_AMT, NULL), "sku must not contain control");
    BAD(J(D_ID, "\"a\x7f" "b\"", D_QTY, D_AMT, NULL), "sku must not contain control");
    BAD(J(D_ID, NULL, D_QTY, D_AMT, NULL), "sku is required");
    BAD(J(D_ID, "42", D_QTY, D_AMT, NULL), "sku must be a string, not a number");
    BAD(J(D_ID, "true", D_QTY, D_AMT, NULL), "sku must be a string, not true");
    assert_string_equal(g_id, "A1001");
}

static void t_qty(void **state)
{
    (void)state;
    OK(J(D_ID, D_SKU, "1", D_AMT, NULL));
    assert_int_equal(g_o.qty, 1);
    OK(J(D_ID, D_SKU, "100", D_AMT, NULL));
    assert_int_equal(g_o.qty, 100);
    OK(J(D_ID, D_SKU, "57", D_AMT, NULL));

    static const char *const bad[] = {
        "0", "101", "-1", "-0", "1000", "4294967297", "99999999999999999999",
        "1.5", "2.0", "2e0", "2E0", "2e+0", "20e-1", "1.0e1", "0.2e1",
        "\"2\"", "null", "true", "false", "[2]", "{\"n\":2}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        BAD(J(D_ID, D_SKU, bad[i], D_AMT, NULL), "qty must be an integer from 1 to 100");
    BAD(J(D_ID, D_SKU, NULL, D_AMT, NULL), "qty is required");
    /* not even JSON numbers */
    BAD(J(D_ID, D_SKU, "02", D_AMT, NULL), "not valid JSON");
    BAD(J(D_ID, D_SKU, "+2", D_AMT, NULL), "not valid JSON");
    BAD(J(D_ID, D_SKU, "2.", D_AMT, NULL), "not valid JSON");
    BAD(J(D_ID, D_SKU, ".5", D_AMT, NULL), "not valid JSON");
    BAD(J(D_ID, D_SKU, "0x2", D_AMT, NULL), "not valid JSON");
    BAD(J(D_ID, D_SKU, "2e", D_AMT, NULL), "not valid JSON");
    BAD(J(D_ID, D_SKU, "NaN", D_AMT, NULL), "not valid JSON");
    BAD(J(D_ID, D_SKU, "Infinity", D_AMT, NULL), "not valid JSON");
    BAD(J(D_ID, D_SKU, "-", D_AMT, NULL), "not valid JSON");
    BAD(J(D_ID, D_SKU, "", D_AMT, NULL), "not valid JSON");
}

static void t_amount(void **state)
{
    (void)state;
    OK(J(D_ID, D_SKU, D_QTY, "0", NULL));
    assert_int_equal(g_o.amount, 0);
    OK(J(D_ID, D_SKU, D_QTY, "1000000000000000", NULL));
    assert_true(g_o.amount == FK_AMOUNT_MAX);
    OK(J(D_ID, D_SKU, D_QTY, "999999999999999", NULL));

    static const char *const bad[] = {
        "1000000000000001", "9999999999999999", "9223372036854775807", "9223372036854775808",
        "18446744073709551617", "123456789012345678901234567890",
        "-1", "-0", "-1000", "3000.0", "3e3", "1e15", "0.5",
        "\"3000\"", "null", "[]", "{}", "false",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        BAD(J(D_ID, D_SKU, D_QTY, bad[i], NULL),
            "amount must be an integer from 0 to 1000000000000000");
    BAD(J(D_ID, D_SKU, D_QTY, NULL, NULL), "amount is required");
    BAD(J(D_ID, D_SKU, D_QTY, "00", NULL), "not valid JSON");
    BAD(J(D_ID, D_SKU, D_QTY, "-01", NULL), "not valid JSON");
    assert_string_equal(g_id, "");
}

static void t_currency(void **state)
{
    (void)state;
    OK(WITH(M("currency", "\"USD\"")));
    assert_string_equal(g_o.currency, "USD");
    OK(WITH(M("currency", "\"\\u0045UR\"")));
    assert_string_equal(g_o.currency, "EUR");
    static const char *const bad[] = {
        "\"usd\"", "\"Usd\"", "\"US\"", "\"USDD\"", "\"\"", "\"U$D\"", "\"US1\"", "\"ÜSD\"",
        "\" USD\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        BAD(WITH(M("currency", bad[i])), "currency must be 3 upper-case letters");
    BAD(WITH(M("currency", "null")), "currency must be a string, not null");
    BAD(WITH(M("currency", "156")), "currency must be a string");
}

static void t_buyer(void **state)
{
    (void)state;
    OK(WITH(M("buyer", lit("b", 256))));
    assert_int_equal(strlen(g_o.buyer), 256);
    OK(WITH(M("buyer", lit("😀", 256))));                       /* the array's worst case */
    assert_int_equal(strlen(g_o.buyer), 1024);
    OK(WITH(M("buyer", "\"\"")));
    assert_string_equal(g_o.buyer, "");
    OK(WITH(M("buyer", "\"张三 <zs@example.com>\"")));
    assert_string_equal(g_o.buyer, "张三 <zs@example.com>");

    BAD(WITH(M("buyer", lit("b", 257))), "buyer must be at most 256 characters");
    BAD(WITH(M("buyer", lit("😀", 257))), "buyer must be at most 256 characters");
    BAD(WITH(M("buyer", "\"a\\r\\nBcc: x\"")), "buyer must not contain control characters");
    BAD(WITH(M("buyer", "\"a\\u007f\"")), "buyer must not contain control characters");
    BAD(WITH(M("buyer", "null")), "buyer must be a string, not null");
    BAD(WITH(M("buyer", "{\"email\":\"x\"}")), "buyer must be a string, not an object");
}

/* ---- garbage ------------------------------------------------------------- */

static void t_size(void **state)
{
    char *big;
    const char *head = "{\"order_id\":\"A1\",\"sku\":\"s\",\"qty\":1,\"amount\":1,\"pad\":\"";
    size_t h = strlen(head), n;

    (void)state;
    big = malloc(1024 * 1024 + 1);
    assert_non_null(big);

    /* exactly FK_ENTRY_MAX bytes: fine */
    n = FK_ENTRY_MAX;
    memcpy(big, head, h);
    memset(big + h, 'p', n - h - 2);
    memcpy(big + n - 2, "\"}", 2);
    OKN(big, n);

    /* one more byte: too big, however valid */
    n = FK_ENTRY_MAX + 1;
    memset(big + h, 'p', n - h - 2);
    memcpy(big + n - 2, "\"}", 2);
    BADN(big, n, "value exceeds 16384 bytes");
    assert_string_equal(g_id, "A1"); /* refused, but the id is read */

    /* 1 MiB */
    n = 1024 * 1024;
    memset(big + h, 'p', n - h - 2);
    memcpy(big + n - 2, "\"}", 2);
    BADN(big, n, "value exceeds 16384 bytes");
    free(big);
}

static void t_empty(void **state)
{
    (void)state;
    BADN("", 0, "value is empty");
    BADN(NULL, 0, "value is empty");
    BAD(" ", "not valid JSON");
    BAD("\n\t\r ", "not valid JSON");
    BAD("{}", "order_id is required");
}

static void t_not_object(void **state)
{
    (void)state;
    BAD("[]", "value must be a JSON object, not an array");
    BAD("[" "{\"order_id\":\"A1\",\"sku\":\"s\",\"qty\":1,\"amount\":1}" "]",
        "value must be a JSON object, not an array");
    BAD("\"A1001\"", "value must be a JSON object, not a string");
    BAD("42", "value must be a JSON object, not a number");
    BAD("true", "value must be a JSON object, not true");
    BAD("false", "value must be a JSON object, not false");
    BAD("null", "value must be a JSON object, not null");
    assert_string_equal(g_id, "");
}

static void t_bad_json(void **state)
{
    static const char *const bad[] = {
        "{", "}", "{\"order_id\"", "{\"order_id\":", "{\"order_id\":\"A1\"",
        "{\"order_id\":\"A1\",}", "{,\"order_id\":\"A1\"}", "{\"order_id\" \"A1\"}",
        "{'order_id':'A1'}", "{order_id:\"A1\"}", "{\"order_id\":\"A1\" /* c */}",
        "{\"order_id\":\"A1\"} // c", "{\"a\":[1,2,]}", "{\"a\":[,1]}", "{\"a\":tru}",
        "{\"a\":True}", "{\"a\":nul}", "{\"a\":undefined}", "{\"a\":\"x}", "{\"a\":1 2}",
        "{\"a\"::1}", "{\"a\":1,,\"b\":2}", "{\"a\":[1}", "{\"a\":{]}", "{\"a\":\"\\\"}",
        "{\"a\":\"x\"\"y\"}", "{\"a\":-}", "{\"a\":1e400e}", "{\"a\":--1}", "{1:2}",
        "{\"a\":'x'}", "{\"a\":\"x\\\"}", "{\"a\":[}", "{\"a\":{\"b\"}}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        BAD(bad[i], "not valid JSON");
        assert_string_equal(g_id, "");
    }
}

static void t_invalid_utf8(void **state)
{
    static const char *const bad[] = {
        "\x80",                 /* lone continuation byte */
        "\xbf",
        "\xc3",                 /* truncated 2-byte sequence */
        "\xc3(",                /* bad continuation */
        "\xe4\xb8",             /* truncated 3-byte sequence */
        "\xf0\x9f\x98",         /* truncated 4-byte sequence */
        "\xc0\xaf",             /* overlong '/' */
        "\xc1\xbf",             /* overlong */
        "\xe0\x80\xaf",         /* overlong 3-byte */
        "\xe0\x9f\xbf",         /* overlong 3-byte, edge */
        "\xf0\x80\x80\xaf",     /* overlong 4-byte */
        "\xf0\x8f\xbf\xbf",     /* overlong 4-byte, edge */
        "\xed\xa0\x80",         /* U+D800: surrogate */
        "\xed\xbf\xbf",         /* U+DFFF: surrogate */
        "\xed\xa0\xbd\xed\xb8\x80", /* CESU-8 surrogate pair */
        "\xf4\x90\x80\x80",     /* U+110000 */
        "\xf5\x80\x80\x80",
        "\xf8\x88\x80\x80\x80", /* 5-byte form */
        "\xfe", "\xff",
    };
    char buf[256];
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* in a field we use, in an unknown field, in a key, outside strings */
        snprintf(buf, sizeof buf, "{\"order_id\":\"A1\",\"sku\":\"s%s\",\"qty\":1,\"amount\":1}", bad[i]);
        BAD(buf, "value is not valid UTF-8");
        assert_string_equal(g_id, "A1"); /* refused, but the id is read */
        snprintf(buf, sizeof buf, "{\"order_id\":\"A1\",\"sku\":\"s\",\"qty\":1,\"amount\":1,\"x\":\"%s\"}", bad[i]);
        BAD(buf, "value is not valid UTF-8");
        assert_string_equal(g_id, "A1");
        snprintf(buf, sizeof buf, "{\"order_id\":\"A1\",\"sku\":\"s\",\"qty\":1,\"amount\":1,\"%s\":0}", bad[i]);
        BAD(buf, "value is not valid UTF-8");
        assert_string_equal(g_id, "A1");
        snprintf(buf, sizeof buf, "%s{\"order_id\":\"A1\",\"sku\":\"s\",\"qty\":1,\"amount\":1}", bad[i]);
        BAD(buf, "value is not valid UTF-8");
        assert_string_equal(g_id, ""); /* not JSON */
    }
    /* the edges that are valid */
    OK(WITH(M("buyer", "\"\xc2\x80 \xdf\xbf \xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 "
                       "\xef\xbf\xbf \xf0\x90\x80\x80 \xf4\x8f\xbf\xbf\"")));
}

static void t_nul(void **state)
{
    static const char raw[] = "{\"order_id\":\"A1\",\"sku\":\"s\0x\",\"qty\":1,\"amount\":1}";
    static const char raw2[] = "{\"order_id\":\"A1\",\"sku\":\"s\",\"qty\":1,\"amount\":1}\0";
    (void)state;

    BADN(raw, sizeof raw - 1, "value contains a NUL byte");
    assert_string_equal(g_id, "A1"); /* refused, but the id is read */
    BADN(raw2, sizeof raw2 - 1, "value contains a NUL byte");
    assert_string_equal(g_id, ""); /* trailing data: not JSON */
    BADN("\0", 1, "value contains a NUL byte");
    assert_string_equal(g_id, "");

    /* \u0000 in every field we use */
    BAD(J("\"A\\u0000B\"", D_SKU, D_QTY, D_AMT, NULL), "order_id must not contain \\u0000");
    assert_string_equal(g_id, "");
    BAD(J("\"A1\\u0000\"", D_SKU, D_QTY, D_AMT, NULL), "order_id must not contain \\u0000");
    BAD(J(D_ID, "\"s\\u0000\"", D_QTY, D_AMT, NULL), "sku must not contain \\u0000");
    BAD(J(D_ID, "\"\\u0000\"", D_QTY, D_AMT, NULL), "sku must not contain \\u0000");
    BAD(WITH(M("idempotency_key", "\"k\\u0000\"")), "idempotency_key must not contain \\u0000");
    BAD(WITH(M("currency", "\"CN\\u0000\"")), "currency must not contain \\u0000");
    BAD(WITH(M("currency", "\"CNY\\u0000\"")), "currency must not contain \\u0000");
    BAD(WITH(M("buyer", "\"b\\u0000c\"")), "buyer must not contain \\u0000");
    /* a key with \u0000 would alias a known key in cJSON ("qty\u0000x" reads as "qty") */
    BAD(J(D_ID, D_SKU, NULL, D_AMT, "\"qty\\u0000x\":2"), "key containing \\u0000");
    BAD(WITH("\"\\u0000\":1"), "key containing \\u0000");
    /* an unknown field may hold it: ignored */
    OK(WITH(M("note", "\"a\\u0000b\"")));
    OK(WITH("\"note\":{\"k\\u0000\":\"\\u0000\"}"));
}

static void t_surrogates(void **state)
{
    (void)state;
    OK(J(D_ID, "\"\\uD83D\\uDE00\"", D_QTY, D_AMT, NULL));     /* U+1F600 */
    assert_string_equal(g_o.sku, "\xf0\x9f\x98\x80");
    OK(J(D_ID, "\"\\udbff\\udfff\"", D_QTY, D_AMT, NULL));     /* U+10FFFF */
    assert_string_equal(g_o.sku, "\xf4\x8f\xbf\xbf");

    static const char *const bad[] = {
        "\"\\ud800\"", "\"\\udbff\"", "\"\\udc00\"", "\"\\udfff\"",
        "\"\\ud800x\"", "\"\\ud800\\u0041\"", "\"\\ude00\\ud83d\"", "\"\\ud800\\ud800\"",
        "\"\\ud800\\n\"", "\"a\\ud83d\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        BAD(J(D_ID, bad[i], D_QTY, D_AMT, NULL), "surrogate");
        BAD(WITH(M("unknown", bad[i])), "surrogate");         /* anywhere */
    }
}

static void t_escapes(void **state)
{
    (void)state;
    OK(J(D_ID, "\"\\u0077ow\\/60d\"", D_QTY, D_AMT, NULL));
    assert_string_equal(g_o.sku, "wow/60d");
    OK(WITH(M("buyer", "\"\\\"q\\\" \\\\ \\/ \\u00e9\\u5361\"")));
    assert_string_equal(g_o.buyer, "\"q\" \\ / \xc3\xa9\xe5\x8d\xa1");

    static const char *const bad[] = {
        "\"\\x41\"", "\"\\a\"", "\"\\0\"", "\"\\'\"", "\"\\U0041\"", "\"\\u41\"", "\"\\u004\"",
        "\"\\uZZZZ\"", "\"\\u00G1\"", "\"\\u-001\"", "\"\\u 041\"", "\"\\\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        BAD(J(D_ID, bad[i], D_QTY, D_AMT, NULL), "not valid JSON");
        BAD(WITH(M("unknown", bad[i])), "not valid JSON");
    }
}

static void t_control_chars(void **state)
{
    char buf[256];
    int c;

    (void)state;
    for (c = 0x01; c < 0x20; c++) {
        /* raw inside a string: JSON forbids it (cJSON would take it) */
        snprintf(buf, sizeof buf, "{\"order_id\":\"A1\",\"sku\":\"s\",\"qty\":1,\"amount\":1,"
                 "\"x\":\"a%cb\"}", c);
        BAD(buf, "raw control character in a string");
        snprintf(buf, sizeof buf, "{\"order_id\":\"A1\",\"sku\":\"s%c\",\"qty\":1,\"amount\":1}", c);
        BAD(buf, "raw control character in a string");
        /* outside strings only space, \t, \n, \r are whitespace (cJSON takes any <= 0x20) */
        if (c == '\t' || c == '\n' || c == '\r')
            continue;
        snprintf(buf, sizeof buf, "{\"order_id\":\"A1\",%c\"sku\":\"s\",\"qty\":1,\"amount\":1}", c);
        BAD(buf, "not valid JSON");
        snprintf(buf, sizeof buf, "%c{\"order_id\":\"A1\",\"sku\":\"s\",\"qty\":1,\"amount\":1}", c);
        BAD(buf, "not valid JSON");
    }
    /* DEL is legal raw in JSON strings; our text fields refuse it, unknown fields don't care */
    OK(WITH(M("x", "\"\x7f\"")));
    BAD(WITH(M("buyer", "\"\x7f\"")), "buyer must not contain control characters");
}

static void t_duplicates(void **state)
{
    (void)state;
    BAD(WITH("\"qty\":2"), "qty appears more than once");
    assert_string_equal(g_id, "A1001");
    BAD(WITH("\"qty\":3"), "qty appears more than once");
    BAD(WITH("\"amount\":3000"), "amount appears more than once");
    BAD(WITH("\"sku\":\"x\""), "sku appears more than once");
    BAD(WITH("\"buyer\":\"a\",\"buyer\":\"a\""), "buyer appears more than once");
    BAD(WITH("\"currency\":\"USD\",\"currency\":\"CNY\""), "currency appears more than once");
    BAD(WITH("\"idempotency_key\":\"a\",\"idempotency_key\":\"b\""),
        "idempotency_key appears more than once");
    BAD(WITH("\"idempotency_key\":\"a\",\"idempotency_key\":null"),
        "idempotency_key appears more than once");
    BAD(WITH("\"order_id\":\"A1001\""), "order_id appears more than once");
    assert_string_equal(g_id, "");     /* ambiguous: no id */
    BAD(WITH("\"order_id\":\"B2\""), "order_id appears more than once");
    assert_string_equal(g_id, "");
    BAD("{\"qty\":1,\"qty\":2}", "order_id is required");
    /* through an escape: "q\u0074y" is qty */
    BAD(WITH("\"q\\u0074y\":5"), "qty appears more than once");
    BAD(WITH("\"\\u006frder_id\":\"A1001\""), "order_id appears more than once");
    /* unknown keys may repeat; nested objects have their own keys */
    OK(WITH("\"x\":1,\"x\":2,\"x\":{\"qty\":7,\"qty\":8}"));
    assert_int_equal(g_o.qty, 2);
    OK(WITH("\"meta\":{\"order_id\":\"B2\",\"sku\":\"other\"}"));
    assert_string_equal(g_o.order_id, "A1001");
    assert_string_equal(g_o.sku, "wow-60d");
}

static void t_escaped_keys(void **state)
{
    (void)state;
    OK("{\"\\u006frder_id\":\"E1\",\"s\\u006bu\":\"k\",\"q\\u0074y\":7,\"\\u0061\\u006d\\u006f\\u0075\\u006e\\u0074\":9}");
    assert_string_equal(g_o.order_id, "E1");
    assert_string_equal(g_o.sku, "k");
    assert_int_equal(g_o.qty, 7);
    assert_int_equal(g_o.amount, 9);
    OK(WITH("\"idempotency\\u005fkey\":\"ik\",\"curr\\u0065ncy\":\"JPY\",\"buy\\u0065r\":\"bb\""));
    assert_string_equal(g_o.idem_key, "ik");
    assert_string_equal(g_o.currency, "JPY");
    assert_string_equal(g_o.buyer, "bb");
    /* case matters; near misses are unknown keys */
    OK(WITH("\"QTY\":0,\"Qty\":0,\"qty \":0,\" qty\":0,\"q\\u0054y\":0,\"Sku\":1"));
    assert_int_equal(g_o.qty, 2);
    /* long escaped unknown keys */
    OK(WITH(M("\\u0041\\u0042\\u5361\\ud83d\\ude00xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "1")));
}

static void t_trailing(void **state)
{
    const char *o = "{\"order_id\":\"A1\",\"sku\":\"s\",\"qty\":1,\"amount\":1}";
    char buf[256];

    (void)state;
    snprintf(buf, sizeof buf, "%s \n\t\r", o);
    OK(buf);
    snprintf(buf, sizeof buf, "\n %s", o);
    OK(buf);
    snprintf(buf, sizeof buf, "%s x", o);
    BAD(buf, "trailing data");
    assert_string_equal(g_id, "");
    snprintf(buf, sizeof buf, "%s%s", o, o);
    BAD(buf, "trailing data");
    snprintf(buf, sizeof buf, "%s,", o);
    BAD(buf, "trailing data");
    snprintf(buf, sizeof buf, "%s}", o);
    BAD(buf, "trailing data");
    snprintf(buf, sizeof buf, "%s\x7f", o);
    BAD(buf, "trailing data");
    snprintf(buf, sizeof buf, "%s 1", o);
    BAD(buf, "trailing data");
    snprintf(buf, sizeof buf, "\xef\xbb\xbf%s", o);           /* a BOM: not JSON (RFC 8259) */
    BAD(buf, "byte order mark");
}

/* An order whose unknown field "x" nests levels arrays (or objects) deep. */
static char *nested(size_t levels, int objects, size_t *len)
{
    const char *head = "{\"order_id\":\"A1\",\"sku\":\"s\",\"qty\":1,\"amount\":1,\"x\":";
    size_t h = strlen(head), unit = objects ? 5 : 1, n = 0, i;
    char *b = malloc(h + levels * (unit + 1) + 8);

    assert_non_null(b);
    memcpy(b, head, h);
    n = h;
    for (i = 0; i < levels; i++) {
        memcpy(b + n, objects ? "{\"a\":" : "[", unit);
        n += unit;
    }
    b[n++] = '0';
    for (i = 0; i < levels; i++)
        b[n++] = objects ? '}' : ']';
    b[n++] = '}';
    b[n] = '\0';
    *len = n;
    return b;
}

static void t_deep_nesting(void **state)
{
    size_t n;
    char *b;

    (void)state;
    /* 10000 levels: too big anyway */
    b = nested(10000, 0, &n);
    BADN(b, n, "value exceeds 16384 bytes");
    free(b);
    b = nested(10000, 1, &n);
    BADN(b, n, "value exceeds 16384 bytes");
    free(b);
    /* deep but small enough: refused for the depth, without recursion */
    b = nested(8000, 0, &n);
    assert_true(n <= FK_ENTRY_MAX);
    BADN(b, n, "nests deeper than 512 levels");
    assert_string_equal(g_id, "");
    free(b);
    b = nested(2700, 1, &n);
    assert_true(n <= FK_ENTRY_MAX);
    BADN(b, n, "nests deeper than 512 levels");
    free(b);
    /* the limit itself: the top-level object is level 1 */
    b = nested(511, 0, &n);
    OKN(b, n);
    free(b);
    b = nested(511, 1, &n);
    OKN(b, n);
    free(b);
    b = nested(512, 0, &n);
    BADN(b, n, "nests deeper than 512 levels");
    free(b);
    /* deeply nested and unterminated */
    b = nested(400, 0, &n);
    BADN(b, n / 2, "not valid JSON: unexpected end");
    free(b);
}

static void t_unknown_fields(void **state)
{
    (void)state;
    OK(WITH("\"f\":1.5,\"e\":-2.5e-10,\"E\":1E+400,\"z\":-0,\"zz\":0.0,\"big\":123456789012345678901234567890,"
            "\"o\":{\"a\":[1,{\"b\":null}],\"c\":{}},\"a\":[],\"t\":true,\"n\":null,\"s\":\"\\u5361\","
            "\"\":\"empty key\",\"note\":\"\\t\\n\\r\\b\\f\""));
    assert_int_equal(g_o.qty, 2);
    /* still strict JSON */
    BAD(WITH("\"f\":01"), "not valid JSON");
    BAD(WITH("\"f\":1."), "not valid JSON");
    BAD(WITH("\"f\":.1"), "not valid JSON");
    BAD(WITH("\"f\":+1"), "not valid JSON");
    BAD(WITH("\"f\":1e"), "not valid JSON");
    BAD(WITH("\"f\":1e+"), "not valid JSON");
    BAD(WITH("\"f\":1.5.2"), "not valid JSON");
    BAD(WITH("\"f\":[1,2,]"), "not valid JSON");
    BAD(WITH("\"f\":1234567890123456789012345678901234567890123456789012345678901234"),
        "number longer than 63 characters");
}

static void t_id_out(void **state)
{
    char err[64];
    fk_order o;

    (void)state;
    BAD(J("\"A-9\"", D_SKU, "0", D_AMT, NULL), "qty");
    assert_string_equal(g_id, "A-9");
    BAD(J("\"A-9\"", NULL, D_QTY, D_AMT, NULL), "sku is required");
    assert_string_equal(g_id, "A-9");
    BAD(J("\"A-9\"", D_SKU, D_QTY, D_AMT, "\"currency\":\"x\""), "currency");
    assert_string_equal(g_id, "A-9");
    BAD(J("\"A-9\"", D_SKU, D_QTY, "1.5", NULL), "amount");
    assert_string_equal(g_id, "A-9");
    BAD(J("\"A 9\"", D_SKU, "0", D_AMT, NULL), "order_id");
    assert_string_equal(g_id, "");
    BAD(J("7", D_SKU, D_QTY, D_AMT, NULL), "order_id");
    assert_string_equal(g_id, "");
    BAD("{\"order_id\":\"A-9\",\"qty\":1.5,", "not valid JSON");   /* not a JSON object */
    assert_string_equal(g_id, "");
    /* a real order with one bad field still names itself: raw control
     * bytes, a buyer in GBK, a NUL, a long note (up to 1 MiB) */
    BAD("{\"order_id\":\"A-9\",\"sku\":\"\x01\",\"qty\":1,\"amount\":1}", "control character");
    assert_string_equal(g_id, "A-9");
    BAD("{\"order_id\":\"A-9\",\"sku\":\"\xff\",\"qty\":1,\"amount\":1}", "UTF-8");
    assert_string_equal(g_id, "A-9");
    BAD("{\"sku\":\"s\",\"buyer\":\"\xd5\xc5\xc8\xfd\",\"order_id\":\"G-1\"}", "UTF-8");
    assert_string_equal(g_id, "G-1");
    BADN("{\"order_id\":\"N-1\",\"buyer\":\"a\0b\"}", 32, "NUL");
    assert_string_equal(g_id, "N-1");
    {
        size_t big = 64 * 1024;
        char *v = malloc(big);
        assert_non_null(v);
        int k = sprintf(v, "{\"order_id\":\"L-1\",\"note\":\"");
        memset(v + k, 'x', big - (size_t)k - 2);
        memcpy(v + big - 2, "\"}", 2);
        BADN(v, big, "exceeds");
        assert_string_equal(g_id, "L-1");
        free(v);
        /* past 1 MiB the id is not looked for */
        big = 1024 * 1024 + 1;
        v = malloc(big);
        assert_non_null(v);
        k = sprintf(v, "{\"order_id\":\"L-2\",\"note\":\"");
        memset(v + k, 'x', big - (size_t)k - 2);
        memcpy(v + big - 2, "\"}", 2);
        BADN(v, big, "exceeds");
        assert_string_equal(g_id, "");
        free(v);
    }
    /* ... but only when the id itself is plain and the structure is JSON */
    BADN("{\"order_id\":\"N\0\",\"sku\":\"s\"}", 27, "NUL");
    assert_string_equal(g_id, "");
    BAD("{\"order_id\":\"A\xff\",\"sku\":\"s\"}", "UTF-8");
    assert_string_equal(g_id, "");
    BAD("{\"order_id\":\"A\\u0031\",\"sku\":\"\xff\"}", "UTF-8");
    assert_string_equal(g_id, "");
    BAD("{\"order_id\":\"A-1\",\"order_id\":\"A-2\",\"b\":\"\xff\"}", "UTF-8");
    assert_string_equal(g_id, "");
    BAD("{\"order_id\":\"A-1\",\"b\":\"\xff\"", "UTF-8");       /* unterminated */
    assert_string_equal(g_id, "");
    BAD("{\"order_id\":\"A-1\",\"b\":\xff}", "UTF-8");           /* outside a string */
    assert_string_equal(g_id, "");
    BADN("{\"order_id\":\"A-1\"}\0", 19, "NUL");
    assert_string_equal(g_id, "");
    BAD("[\"order_id\",\"A-1\",\"\xff\"]", "UTF-8");
    assert_string_equal(g_id, "");
    BAD("{\"x\":{\"order_id\":\"A-9\",\"b\":\"\xff\"}}", "UTF-8");
    assert_string_equal(g_id, "");
    BAD("{\"order_id\":7,\"b\":\"\xff\"}", "UTF-8");
    assert_string_equal(g_id, "");
    /* the order_id of a nested object is not the order's */
    BAD("{\"x\":{\"order_id\":\"A-9\"}}", "order_id is required");
    assert_string_equal(g_id, "");

    /* id_out and err are optional; err is truncated but terminated */
    memset(&o, 0, sizeof o);
    {
        const char *v = "{\"order_id\":\"A1\",\"sku\":\"s\",\"qty\":1,\"amount\":1}";
        assert_int_equal(fk_order_decode(v, strlen(v), &o, NULL, 0, NULL), 0);
    }
    assert_string_equal(o.order_id, "A1");
    assert_int_equal(fk_order_decode("[]", 2, &o, NULL, 0, NULL), FK_EINVAL);
    memset(err, 'Z', sizeof err);
    assert_int_equal(fk_order_decode("[]", 2, &o, err, 8, NULL), FK_EINVAL);
    assert_int_equal(strlen(err), 7);
    assert_int_equal(err[8], 'Z');
    memset(err, 'Z', sizeof err);
    assert_int_equal(fk_order_decode("[]", 2, &o, err, 1, NULL), FK_EINVAL);
    assert_int_equal(err[0], '\0');
    assert_int_equal(err[1], 'Z');
}

static void t_out_untouched(void **state)
{
    fk_order o, before;
    char err[128];

    (void)state;
    memset(&o, 0x5a, sizeof o);
    before = o;
    {
        const char *v = "{\"order_id\":\"A1\",\"sku\":\"s\",\"qty\":0,\"amount\":1}";
        assert_int_equal(fk_order_decode(v, strlen(v), &o, err, sizeof err, NULL), FK_EINVAL);
        assert_string_equal(err, "qty must be an integer from 1 to 100");
    }
    assert_memory_equal(&o, &before, sizeof o);
}

/* cJSON allocates through hooks: make them fail to see the FK_ENOMEM path. */
static void *failing_malloc(size_t n)
{
    (void)n;
    return NULL;
}

static void t_enomem(void **state)
{
    cJSON_Hooks hooks = { failing_malloc, free };
    const char *v = "{\"order_id\":\"A1\",\"sku\":\"s\",\"qty\":1,\"amount\":1}";
    fk_payment p;
    int rc;

    (void)state;
    cJSON_InitHooks(&hooks);
    rc = decn(v, strlen(v));
    cJSON_InitHooks(NULL);
    assert_int_equal(rc, FK_ENOMEM);
    assert_non_null(strstr(g_err, "out of memory"));
    assert_string_equal(g_id, "");
    cJSON_InitHooks(&hooks);
    {
        const char *pv = "{\"order_id\":\"A1\",\"status\":\"declined\"}";
        rc = fk_payment_decode(pv, strlen(pv), &p, g_err, sizeof g_err, g_id);
    }
    cJSON_InitHooks(NULL);
    assert_int_equal(rc, FK_ENOMEM);
    /* and everything works again */
    OK(v);
}

/* ---- payments ------------------------------------------------------------ */

static void t_payment(void **state)
{
    (void)state;
    POK("{\"order_id\":\"A1001\",\"status\":\"succeeded\",\"payment_id\":\"pay_123\"}");
    assert_string_equal(g_p.order_id, "A1001");
    assert_int_equal(g_p.status, FK_PAY_SUCCEEDED);
    assert_string_equal(g_p.payment_id, "pay_123");
    assert_string_equal(g_id, "A1001");
    POK("{\"status\":\"declined\",\"order_id\":\"A1001\"}");
    assert_int_equal(g_p.status, FK_PAY_DECLINED);
    assert_string_equal(g_p.payment_id, "");
    POK("{\"order_id\":\"A1\",\"status\":\"declined\",\"payment_id\":\"\",\"extra\":[1.5]}");
    assert_string_equal(g_p.payment_id, "");
    {
        char buf[512];
        snprintf(buf, sizeof buf, "{\"order_id\":\"A1\",\"status\":\"succeeded\",\"payment_id\":%s}",
                 lit("p", 128));
        POK(buf);
        assert_int_equal(strlen(g_p.payment_id), 128);
        snprintf(buf, sizeof buf, "{\"order_id\":\"A1\",\"status\":\"succeeded\",\"payment_id\":%s}",
                 lit("p", 129));
        PBAD(buf, "payment_id must be at most 128");
        assert_string_equal(g_id, "A1");
    }
}

static void t_payment_invalid(void **state)
{
    (void)state;
    PBAD("{\"status\":\"succeeded\"}", "order_id is required");
    assert_string_equal(g_id, "");
    PBAD("{\"order_id\":\"A 1\",\"status\":\"succeeded\"}", "order_id must be 1 to 64");
    PBAD("{\"order_id\":\"A1\"}", "status");
    assert_string_equal(g_id, "A1");
    static const char *const bad_status[] = {
        "\"SUCCEEDED\"", "\"Succeeded\"", "\"succeeded \"", "\"pending\"", "\"\"", "\"paid\"",
        "\"declined\\u0000\"",
    };
    char buf[256];
    for (size_t i = 0; i < sizeof bad_status / sizeof bad_status[0]; i++) {
        snprintf(buf, sizeof buf, "{\"order_id\":\"A1\",\"status\":%s}", bad_status[i]);
        PBAD(buf, "status");
        assert_string_equal(g_id, "A1");
    }
    PBAD("{\"order_id\":\"A1\",\"status\":1}", "status must be a string, not a number");
    PBAD("{\"order_id\":\"A1\",\"status\":null}", "status must be a string, not null");
    PBAD("{\"order_id\":\"A1\",\"status\":\"succeeded\",\"status\":\"declined\"}",
         "status appears more than once");
    PBAD("{\"order_id\":\"A1\",\"status\":\"succeeded\",\"payment_id\":\"a b\"}", "payment_id");
    PBAD("{\"order_id\":\"A1\",\"status\":\"succeeded\",\"payment_id\":\"支付\"}", "payment_id");
    PBAD("{\"order_id\":\"A1\",\"status\":\"succeeded\",\"payment_id\":7}",
         "payment_id must be a string");
    PBAD("{\"order_id\":\"A1\",\"status\":\"succeeded\",\"payment_id\":null}",
         "payment_id must be a string");
    PBAD("[{\"order_id\":\"A1\",\"status\":\"succeeded\"}]", "JSON object");
    PBAD("{\"order_id\":\"A1\",\"status\":\"succeeded\"", "not valid JSON");
    PBAD("{\"order_id\":\"A1\",\"status\":\"succ\xc0\xaf" "eeded\"}", "UTF-8");
}

/* ---- encoding ------------------------------------------------------------ */

static void assert_orders_equal(const fk_order *a, const fk_order *b)
{
    assert_string_equal(a->order_id, b->order_id);
    assert_string_equal(a->idem_key, b->idem_key);
    assert_string_equal(a->sku, b->sku);
    assert_int_equal(a->qty, b->qty);
    assert_true(a->amount == b->amount);
    assert_string_equal(a->currency, b->currency);
    assert_string_equal(a->buyer, b->buyer);
}

/* Encode o, decode the result, compare. */
static void round_trip(const fk_order *o)
{
    fk_order back;
    char err[256], id[FK_ORDER_ID_MAX + 1];
    char *json = fk_order_encode(o);

    assert_non_null(json);
    assert_true(strlen(json) <= FK_ENTRY_MAX);
    if (fk_order_decode(json, strlen(json), &back, err, sizeof err, id) != 0)
        fail_msg("round trip failed: %s for %s", err, json);
    assert_orders_equal(o, &back);
    free(json);
}

static void t_encode(void **state)
{
    fk_order o;
    char *json;

    (void)state;
    OK("{\"order_id\":\"A1001\",\"idempotency_key\":\"chk-77\",\"sku\":\"wow-60d\",\"qty\":2,"
       "\"amount\":3000,\"currency\":\"CNY\",\"buyer\":\"buyer@example.com\"}");
    json = fk_order_encode(&g_o);
    assert_non_null(json);
    assert_string_equal(json,
        "{\"order_id\":\"A1001\",\"idempotency_key\":\"chk-77\",\"sku\":\"wow-60d\",\"qty\":2,"
        "\"amount\":3000,\"currency\":\"CNY\",\"buyer\":\"buyer@example.com\"}");
    free(json);

    /* defaults filled in on encode */
    memset(&o, 0, sizeof o);
    strcpy(o.order_id, "B7");
    strcpy(o.sku, "s");
    o.qty = 1;
    o.amount = 0;
    json = fk_order_encode(&o);
    assert_non_null(json);
    assert_string_equal(json,
        "{\"order_id\":\"B7\",\"idempotency_key\":\"B7\",\"sku\":\"s\",\"qty\":1,"
        "\"amount\":0,\"currency\":\"CNY\",\"buyer\":\"\"}");
    free(json);
    /* 10^15 must not come out as 1e+15 */
    o.amount = FK_AMOUNT_MAX;
    json = fk_order_encode(&o);
    assert_non_null(strstr(json, "\"amount\":1000000000000000,"));
    free(json);
}

static void t_round_trip(void **state)
{
    fk_order o;
    int c;
    size_t n = 0;

    (void)state;
    OK("{\"order_id\":\"A1001\",\"idempotency_key\":\"chk-77\",\"sku\":\"wow-60d\",\"qty\":2,"
       "\"amount\":3000,\"currency\":\"CNY\",\"buyer\":\"buyer@example.com\"}");
    round_trip(&g_o);

    /* every field at its maximum, with characters that need escaping */
    memset(&o, 0, sizeof o);
    memset(o.order_id, 'Z', FK_ORDER_ID_MAX);
    for (c = 0; n < FK_IDEM_KEY_MAX; c = (c + 1) % (0x7e - 0x21 + 1))
        o.idem_key[n++] = (char)(0x21 + c);         /* includes '"' and '\' */
    for (n = 0; n < FK_SKU_MAX_CHARS; n++)
        memcpy(o.sku + 4 * n, "\xf0\x9f\x83\x8f", 4);
    o.qty = FK_QTY_MAX;
    o.amount = FK_AMOUNT_MAX;
    strcpy(o.currency, "USD");
    {
        static const char *const units[] = { "\"", "\\", "\xc3\xa9", "\xf0\x9f\x98\x80" };
        for (n = 0; n < FK_BUYER_MAX_CHARS; n++)
            strcat(o.buyer, units[n % 4]);
    }
    assert_true(fk_utf8_valid(o.buyer, strlen(o.buyer)));
    assert_int_equal(fk_utf8_count(o.buyer, strlen(o.buyer)), FK_BUYER_MAX_CHARS);
    round_trip(&o);

    OK(WITH("\"buyer\":\"\\\"q\\\" \\\\ \\u5361 \\ud83d\\ude00\",\"currency\":\"EUR\""));
    round_trip(&g_o);
}

static void t_order_id_valid(void **state)
{
    char id[80];

    (void)state;
    assert_true(fk_order_id_valid("A1001"));
    assert_true(fk_order_id_valid("AZaz09_.:-"));
    assert_false(fk_order_id_valid("."));
    assert_false(fk_order_id_valid(".."));
    memset(id, 'a', sizeof id);
    id[64] = '\0';
    assert_true(fk_order_id_valid(id));
    id[64] = 'a';
    id[65] = '\0';
    assert_false(fk_order_id_valid(id));
    id[79] = '\0';
    assert_false(fk_order_id_valid(id));
    assert_false(fk_order_id_valid(""));
    assert_false(fk_order_id_valid(NULL));
    assert_false(fk_order_id_valid("A 1"));
    assert_false(fk_order_id_valid("A1\n"));
    assert_false(fk_order_id_valid("A{1}"));
    assert_false(fk_order_id_valid("\xe5\x8d\xa1"));
}

/* ---- utf8 ---------------------------------------------------------------- */

static void t_utf8(void **state)
{
    (void)state;
    assert_true(fk_utf8_valid("", 0));
    assert_true(fk_utf8_valid(NULL, 0));
    assert_true(fk_utf8_valid("abc", 3));
    assert_true(fk_utf8_valid("a\0b", 3));
    assert_true(fk_utf8_valid("\xe5\x8d\xa1\xf0\x9f\x98\x80", 7));
    assert_false(fk_utf8_valid("\xe5\x8d", 2));
    assert_false(fk_utf8_valid("\xc0\x80", 2));
    assert_false(fk_utf8_valid("\xed\xa0\x80", 3));
    assert_false(fk_utf8_valid("\xf4\x90\x80\x80", 4));
    assert_int_equal(fk_utf8_valid_prefix("ab\xe5\x8d\xa1\xff", 6), 5);
    assert_int_equal(fk_utf8_valid_prefix("ab\xe5\x8d", 4), 2);
    assert_int_equal(fk_utf8_count("", 0), 0);
    assert_int_equal(fk_utf8_count("a\xc3\xa9\xe5\x8d\xa1\xf0\x9f\x98\x80", 10), 4);

    /* every 1..3-byte sequence agrees with the definition */
    for (unsigned long cp = 0; cp < 0x10000; cp++) {
        unsigned char b[3];
        size_t n;
        if (cp < 0x80) { b[0] = (unsigned char)cp; n = 1; }
        else if (cp < 0x800) { b[0] = (unsigned char)(0xC0 | (cp >> 6)); b[1] = (unsigned char)(0x80 | (cp & 0x3F)); n = 2; }
        else { b[0] = (unsigned char)(0xE0 | (cp >> 12)); b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); b[2] = (unsigned char)(0x80 | (cp & 0x3F)); n = 3; }
        assert_int_equal(fk_utf8_valid((const char *)b, n), !(cp >= 0xD800 && cp <= 0xDFFF));
        if (!(cp >= 0xD800 && cp <= 0xDFFF))
            assert_int_equal(fk_utf8_count((const char *)b, n), 1);
    }
    /* every 2-byte pair: valid exactly when it is a shortest-form 2-byte character */
    for (unsigned a = 0xC0; a < 0x100; a++)
        for (unsigned b2 = 0; b2 < 0x100; b2++) {
            char s[2] = { (char)a, (char)b2 };
            int want = a >= 0xC2 && a <= 0xDF && b2 >= 0x80 && b2 <= 0xBF;
            assert_int_equal(fk_utf8_valid(s, 2), want);
        }
}

/* ---- robustness ---------------------------------------------------------- */

static unsigned long long rng_state = 0x9e3779b97f4a7c15ULL;

static unsigned rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state >> 16);
}

/* Decode buf both ways; on success check the invariants and the round trip. */
static void decode_any(const char *buf, size_t n)
{
    fk_order o;
    fk_payment p;
    char err[128], id[FK_ORDER_ID_MAX + 1];
    int rc;

    rc = fk_order_decode(buf, n, &o, err, sizeof err, id);
    assert_true(rc == 0 || rc == FK_EINVAL);
    assert_true(strlen(err) < sizeof err);
    assert_true(strlen(id) <= FK_ORDER_ID_MAX);
    if (rc == 0) {
        assert_string_equal(id, o.order_id);
        assert_true(o.qty >= FK_QTY_MIN && o.qty <= FK_QTY_MAX);
        assert_true(o.amount >= 0 && o.amount <= FK_AMOUNT_MAX);
        assert_int_equal(strlen(o.currency), 3);
        assert_true(fk_utf8_valid(o.sku, strlen(o.sku)));
        assert_true(fk_utf8_valid(o.buyer, strlen(o.buyer)));
        round_trip(&o);
    } else {
        assert_true(err[0] != '\0');
    }
    rc = fk_payment_decode(buf, n, &p, err, sizeof err, id);
    assert_true(rc == 0 || rc == FK_EINVAL);
    if (rc == 0) {
        assert_true(p.status == FK_PAY_SUCCEEDED || p.status == FK_PAY_DECLINED);
        assert_string_equal(id, p.order_id);
    }
}

static void t_random_bytes(void **state)
{
    static const char alphabet[] = "{}[]\":,\\u0123456789abcdefABCDEF-+.eE tnrfl \t\n"
                                   "\x80\xbf\xc3\xa9\xed\xf0\xff\x01";
    char buf[512];

    (void)state;
    for (int i = 0; i < 4000; i++) {
        size_t n = rnd() % sizeof buf;
        int mode = rnd() % 3;
        for (size_t k = 0; k < n; k++)
            buf[k] = mode == 0 ? (char)(rnd() & 0xFF)
                               : alphabet[rnd() % (sizeof alphabet - 1)];
        if (mode == 2 && n > 0)
            buf[0] = '{';
        decode_any(buf, n);
    }
}

static void t_mutations(void **state)
{
    static const char *const seeds[] = {
        "{\"order_id\":\"A1001\",\"idempotency_key\":\"chk-77\",\"sku\":\"wow-60d\",\"qty\":2,"
        "\"amount\":3000,\"currency\":\"CNY\",\"buyer\":\"buyer@example.com\"}",
        "{\"order_id\":\"A1\",\"sku\":\"\\u5361\\ud83d\\ude00\",\"qty\":100,\"amount\":0,"
        "\"x\":[1.5,{\"y\":null}],\"buyer\":\"\\\"\\\\\"}",
        "{\"order_id\":\"A1001\",\"status\":\"succeeded\",\"payment_id\":\"pay_1\"}",
    };
    static const char tokens[][8] = {
        "\"", "\\", "{", "}", "[", "]", ",", ":", "0", "-", ".5", "e9", "\\u0000", "\\ud800",
        "null", "\xc3", "\xff", " ", "\x01", "\"qty\"", "1e2",
    };
    char buf[1024];
    int valid = 0;

    (void)state;
    for (int i = 0; i < 6000; i++) {
        const char *seed = seeds[rnd() % 3];
        size_t n = strlen(seed), edits = 1 + rnd() % 4;
        memcpy(buf, seed, n);
        for (size_t e = 0; e < edits && n > 0; e++) {
            size_t at = rnd() % n;
            switch (rnd() % 5) {
            case 0:     /* flip a byte */
                buf[at] = (char)(rnd() & 0xFF);
                break;
            case 1:     /* delete a byte */
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            case 2: {   /* insert a token */
                const char *t = tokens[rnd() % (sizeof tokens / sizeof tokens[0])];
                size_t tl = strlen(t);
                if (n + tl < sizeof buf) {
                    memmove(buf + at + tl, buf + at, n - at);
                    memcpy(buf + at, t, tl);
                    n += tl;
                }
                break;
            }
            case 3:     /* truncate */
                n = at;
                break;
            default:    /* duplicate a slice */
                if (n + 16 < sizeof buf) {
                    size_t from = rnd() % n, l = 1 + rnd() % 16;
                    if (from + l > n)
                        l = n - from;
                    memmove(buf + at + l, buf + at, n - at);
                    memmove(buf + at, buf + (from >= at ? from + l : from), l);
                    n += l;
                }
            }
        }
        decode_any(buf, n);
        {
            fk_order o;
            char err[64];
            valid += fk_order_decode(buf, n, &o, err, sizeof err, NULL) == 0;
        }
    }
    /* some mutations (e.g. in unknown places) keep the order valid */
    assert_true(valid > 0);
}

/* fk_record_int: digits in range, nothing else (what atoi got wrong). */
static void t_record_int(void **state)
{
    long long v = 42;
    const char *bad[] = {"", " 7", "7 ", "+7", "5e3", "0x10", "1.0", "inf", "nan", "-1",
                         "99999999999999999999", "7\n", "٣"};
    size_t i;

    (void)state;
    assert_int_equal(fk_record_int("5000", 0, 1000000, &v), 0);
    assert_int_equal(v, 5000);
    assert_int_equal(fk_record_int("0", 0, 0, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(fk_record_int("-3", -5, 5, &v), 0);
    assert_int_equal(v, -3);
    assert_int_equal(fk_record_int("-6", -5, 5, &v), -1);
    assert_int_equal(fk_record_int("101", 1, 100, &v), -1);
    for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        v = 42;
        assert_int_equal(fk_record_int(bad[i], 0, 1000000, &v), -1);
        assert_int_equal(v, 42);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_design_example),
        cmocka_unit_test(t_defaults),
        cmocka_unit_test(t_order_id),
        cmocka_unit_test(t_idem_key),
        cmocka_unit_test(t_sku),
        cmocka_unit_test(t_qty),
        cmocka_unit_test(t_amount),
        cmocka_unit_test(t_currency),
        cmocka_unit_test(t_buyer),
        cmocka_unit_test(t_size),
        cmocka_unit_test(t_empty),
        cmocka_unit_test(t_not_object),
        cmocka_unit_test(t_bad_json),
        cmocka_unit_test(t_invalid_utf8),
        cmocka_unit_test(t_nul),
        cmocka_unit_test(t_surrogates),
        cmocka_unit_test(t_escapes),
        cmocka_unit_test(t_control_chars),
        cmocka_unit_test(t_duplicates),
        cmocka_unit_test(t_escaped_keys),
        cmocka_unit_test(t_trailing),
        cmocka_unit_test(t_deep_nesting),
        cmocka_unit_test(t_unknown_fields),
        cmocka_unit_test(t_id_out),
        cmocka_unit_test(t_out_untouched),
        cmocka_unit_test(t_enomem),
        cmocka_unit_test(t_payment),
        cmocka_unit_test(t_payment_invalid),
        cmocka_unit_test(t_encode),
        cmocka_unit_test(t_round_trip),
        cmocka_unit_test(t_order_id_valid),
        cmocka_unit_test(t_utf8),
        cmocka_unit_test(t_random_bytes),
        cmocka_unit_test(t_mutations),
        cmocka_unit_test(t_record_int),
    };
    return cmocka_run_group_tests_name("order", tests, NULL, NULL);
}
