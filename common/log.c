/* log.c -- logfmt lines to stderr; see log.h for the format. */
#include "log.h"
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int fk_log_threshold = FK_LOG_INFO;
static char log_component[32] = "faka";
static char log_worker[128] = "-";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void fk_log_init(const char *component, const char *worker_id, int level) {
    if (component)
        snprintf(log_component, sizeof(log_component), "%s", component);
    if (worker_id)
        snprintf(log_worker, sizeof(log_worker), "%s", worker_id);
    if (level >= FK_LOG_DEBUG && level <= FK_LOG_ERROR)
        fk_log_threshold = level;
}

int fk_log_parse_level(const char *s, int *level) {
    for (int i = 0; i < 4; i++) {
        if (s && strcasecmp(s, level_names[i]) == 0) {
            *level = i;
            return 0;
        }
    }
    return FK_EINVAL;
}

/* Append src to buf[*len..cap) as a logfmt value: bare when it is a simple
 * token, otherwise double-quoted with \" \\ \n \r \t and \xNN escapes. */
static void put_value(char *buf, size_t *len, size_t cap, const char *src) {
    int bare = src[0] != '\0';
    for (const char *p = src; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) {
            bare = 0;
            break;
        }
    }
    if (*len + 8 >= cap) return;
    if (bare) {
        size_t n = strlen(src);
        if (*len + n >= cap) n = cap - *len - 1;
        memcpy(buf + *len, src, n);
        *len += n;
        return;
    }
    if (*len + 2 >= cap) return;
    buf[(*len)++] = '"';
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        if (*len + 5 >= cap - 1) break;
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            buf[(*len)++] = '\\';
            buf[(*len)++] = (char)c;
        } else if (c == '\n') {
            buf[(*len)++] = '\\';
            buf[(*len)++] = 'n';
        } else if (c == '\r') {
            buf[(*len)++] = '\\';
            buf[(*len)++] = 'r';
        } else if (c == '\t') {
            buf[(*len)++] = '\\';
            buf[(*len)++] = 't';
        } else if (c < 0x20 || c == 0x7f) {
            *len += (size_t)snprintf(buf + *len, cap - *len, "\\x%02x", c);
        } else {
            buf[(*len)++] = (char)c; /* UTF-8 passes through */
        }
    }
    buf[(*len)++] = '"';
}

/* Output bytes allowed for worker, event and order each (a worker id of 127
 * characters, all escaped, fits). */
#define FIELD_ROOM 600

void fk_log_emit(int level, const char *event, const char *order_id,
                 const char *fmt, ...) {
    char msg[2048];
    char line[4096];
    size_t len = 0;
    struct timeval tv;
    struct tm tm;

    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    len = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    len += (size_t)snprintf(line + len, sizeof(line) - len,
                            ".%03ldZ level=%s comp=%s worker=", (long)(tv.tv_usec / 1000),
                            level_names[level < 0 ? 0 : level > 3 ? 3 : level],
                            log_component);
    /* Each field before msg gets a bounded share of the line, so a garbage
     * order id or event can neither overrun the line nor crowd out msg. */
    put_value(line, &len, len + FIELD_ROOM, log_worker);
    memcpy(line + len, " event=", 7);
    len += 7;
    put_value(line, &len, len + FIELD_ROOM, event ? event : "-");
    if (order_id) {
        memcpy(line + len, " order=", 7);
        len += 7;
        put_value(line, &len, len + FIELD_ROOM, order_id);
    }
    memcpy(line + len, " msg=", 5);
    len += 5;
    put_value(line, &len, sizeof(line) - 1, msg);
    line[len++] = '\n';
    /* One write(2) per line keeps lines whole when several processes share
     * a terminal or a log file. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
