/* err.h -- faka's error codes.
 *
 * Every fallible function in common/ returns 0 on success or one of these
 * negative codes. fk_strerror() is the one place that turns a code into text;
 * hiredis and curl failures are mapped to these codes in redis.c and http.c
 * respectively, and nowhere else. */
#ifndef FK_ERR_H
#define FK_ERR_H

#define FK_ERRORS(X)                                                        \
    X(FK_ENOMEM,    -1,  "out of memory")                                   \
    X(FK_EINVAL,    -2,  "invalid argument")                                \
    X(FK_ERANGE,    -3,  "value out of range")                              \
    X(FK_EDOWN,     -4,  "redis connection is not ready")                   \
    X(FK_EREDIS,    -5,  "redis replied with an error")                     \
    X(FK_ETIMEOUT,  -6,  "timed out")                                       \
    X(FK_EHTTP,     -7,  "http transfer failed")                            \
    X(FK_ESTALE,    -8,  "lease lost: another worker owns the order now")   \
    X(FK_EBUSY,     -9,  "resource busy")                                   \
    X(FK_EIO,       -10, "i/o error")                                       \
    X(FK_ENOTFOUND, -11, "not found")                                       \
    X(FK_ECLOSED,   -12, "closed")                                          \
    X(FK_EPROTO,    -13, "unexpected reply from peer")                      \
    X(FK_EUSAGE,    -14, "bad usage")

enum fk_err {
    FK_OK = 0,
#define FK_ERR_ENUM(name, val, text) name = val,
    FK_ERRORS(FK_ERR_ENUM)
#undef FK_ERR_ENUM
};

/* Return a static, human-readable sentence for err (0 or an FK_E* code).
 * Unknown codes yield "unknown error". Never returns NULL. */
const char *fk_strerror(int err);

/* Return the symbolic name ("FK_ETIMEOUT") of err, for logs. */
const char *fk_errname(int err);

#endif
