/* log.h -- leveled, machine-readable logging (logfmt, one line per event).
 *
 * Every line: ts=<RFC3339 ms UTC> level=<lvl> comp=<binary> worker=<id>
 * event=<dotted.name> [order=<id>] msg="<text>". The macros test the level
 * before evaluating their arguments, so a disabled debug line costs one
 * comparison. Output goes to stderr, unbuffered per line. */
#ifndef FK_LOG_H
#define FK_LOG_H

enum fk_log_level {
    FK_LOG_DEBUG = 0,
    FK_LOG_INFO = 1,
    FK_LOG_WARN = 2,
    FK_LOG_ERROR = 3,
};

extern int fk_log_threshold;

/* Set the component (binary) name, worker id and minimum level. The strings
 * are copied. May be called again (e.g. once the worker id is known). */
void fk_log_init(const char *component, const char *worker_id, int level);

/* Parse "debug|info|warn|error" into *level. Returns 0 or FK_EINVAL. */
int fk_log_parse_level(const char *s, int *level);

/* Emit one line. order_id may be NULL. Use the macros below instead. */
void fk_log_emit(int level, const char *event, const char *order_id,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define fk_log(lvl, event, order, ...)                                      \
    do {                                                                    \
        if ((lvl) >= fk_log_threshold)                                      \
            fk_log_emit((lvl), (event), (order), __VA_ARGS__);              \
    } while (0)

#define fk_debug(event, order, ...) fk_log(FK_LOG_DEBUG, event, order, __VA_ARGS__)
#define fk_info(event, order, ...)  fk_log(FK_LOG_INFO, event, order, __VA_ARGS__)
#define fk_warn(event, order, ...)  fk_log(FK_LOG_WARN, event, order, __VA_ARGS__)
#define fk_error(event, order, ...) fk_log(FK_LOG_ERROR, event, order, __VA_ARGS__)

#endif
