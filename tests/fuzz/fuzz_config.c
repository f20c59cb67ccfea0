/* fuzz_config.c -- libFuzzer target for the configuration parsers: the
 * option table (fk_config_load, every binary's flags), the Redis URL parser
 * and the HTTP URL check.
 *
 * Input: the first byte picks which binaries' rows apply (1-7); the rest is
 * argv, split at NUL bytes. The same bytes, up to the first NUL, are also
 * fed to fk_redis_url_parse and fk_http_url_check. Whatever the input:
 *   - fk_config_load returns 0, 1 (--help) or FK_EINVAL with a one-line,
 *     non-empty reason that fits its buffer;
 *   - a loaded config has every string NUL-terminated in its buffer, a Redis
 *     URL that parses, a gateway that is "none" or a valid HTTP URL, a
 *     webhook URL that is empty or valid and has a secret, and first_arg
 *     within argv;
 *   - a parsed Redis URL has a non-empty host, a port of 1-65535, a db >= 0
 *     and NUL-terminated fields.
 * Any violation aborts, which libFuzzer reports as a crash. Built only with
 * -Dfuzz=true (see scripts/fuzz). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "err.h"
#include "url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "fuzz_config: check failed: %s (line %d)\n", #cond, \
                    __LINE__);                                                  \
            abort();                                                            \
        }                                                                       \
    } while (0)

#define TERMINATED(buf) CHECK(memchr((buf), '\0', sizeof(buf)) != NULL)

static void check_reason(const char *err, size_t cap) {
    CHECK(memchr(err, '\0', cap) != NULL);
    CHECK(err[0] != '\0');
    CHECK(strchr(err, '\n') == NULL);
}

static void fuzz_urls(const char *s) {
    char err[256];
    fk_redis_target t;
    memset(err, 0, sizeof(err));
    int rc = fk_redis_url_parse(s, &t, err, sizeof(err));
    CHECK(rc == 0 || rc == FK_EINVAL);
    if (rc) {
        check_reason(err, sizeof(err));
    } else {
        TERMINATED(t.host);
        TERMINATED(t.user);
        TERMINATED(t.password);
        CHECK(t.host[0] != '\0');
        CHECK(t.port >= 1 && t.port <= 65535);
        CHECK(t.db >= 0);
    }
    memset(err, 0, sizeof(err));
    rc = fk_http_url_check(s, err, sizeof(err));
    CHECK(rc == 0 || rc == FK_EINVAL);
    if (rc) check_reason(err, sizeof(err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int quiet;
    if (!quiet) { /* --help prints the usage */
        quiet = 1;
        if (!freopen("/dev/null", "w", stdout)) abort();
    }
    if (size < 1 || size > 4096) return 0;
    int bins = (data[0] % 7) + 1;
    char *buf = malloc(size + 1);
    if (!buf) abort();
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    fuzz_urls(buf);

    char *argv[66];
    int argc = 0;
    argv[argc++] = (char *)"faka-fuzz";
    for (size_t i = 0; i < size - 1 && argc < 64;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    argv[argc] = NULL;

    static fk_config cfg;
    char err[512];
    int first = -1;
    memset(&cfg, 0x5a, sizeof(cfg));
    memset(err, 0, sizeof(err));
    int rc = fk_config_load(&cfg, bins, "usage: faka-fuzz", argc, argv, &first, err, sizeof(err));
    CHECK(rc == 0 || rc == 1 || rc == FK_EINVAL);
    if (rc == FK_EINVAL) {
        check_reason(err, sizeof(err));
    } else if (rc == 0) {
        TERMINATED(cfg.redis_url);
        TERMINATED(cfg.prefix);
        TERMINATED(cfg.worker_id);
        TERMINATED(cfg.gateway_url);
        TERMINATED(cfg.webhook_url);
        TERMINATED(cfg.webhook_secret);
        fk_redis_target t;
        CHECK(fk_redis_url_parse(cfg.redis_url, &t, err, sizeof(err)) == 0);
        CHECK(strcmp(cfg.gateway_url, "none") == 0 ||
              fk_http_url_check(cfg.gateway_url, err, sizeof(err)) == 0);
        CHECK(cfg.webhook_url[0] == '\0' ||
              (fk_http_url_check(cfg.webhook_url, err, sizeof(err)) == 0 &&
               cfg.webhook_secret[0] != '\0'));
        CHECK(cfg.prefix[0] != '\0');
        CHECK(first >= 1 && first <= argc);
    }
    free(buf);
    return 0;
}
