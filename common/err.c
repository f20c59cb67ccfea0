/* err.c -- the one place where faka's error codes become text. */
#include "err.h"

const char *fk_strerror(int err) {
    switch (err) {
    case FK_OK: return "ok";
#define FK_ERR_TEXT(name, val, text) case name: return text;
    FK_ERRORS(FK_ERR_TEXT)
#undef FK_ERR_TEXT
    default: return "unknown error";
    }
}

const char *fk_errname(int err) {
    switch (err) {
    case FK_OK: return "FK_OK";
#define FK_ERR_NAME(name, val, text) case name: return #name;
    FK_ERRORS(FK_ERR_NAME)
#undef FK_ERR_NAME
    default: return "FK_EUNKNOWN";
    }
}
