/* state.c -- names, labels and the transition table of the order states
 * (see state.h). DESIGN.md's table is extended by three rows, documented in
 * docs/STATES.md: expired|failed -> manual_review, for a payment that
 * arrives after the order gave up (it must reach a human, not vanish), and
 * pending_payment -> pending_payment, re-scheduling a gateway status poll
 * (the twin of processing -> processing for a retry). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "state.h"

static const char *const state_names[FK_ST__COUNT] = {
    [FK_ST_NONE] = "",
#define FK_ST_NAME(sym, name, zh, msg) [sym] = name,
    FK_STATES(FK_ST_NAME)
#undef FK_ST_NAME
};

static const char *const state_zh[FK_ST__COUNT] = {
    [FK_ST_NONE] = "",
#define FK_ST_ZH(sym, name, zh, msg) [sym] = zh,
    FK_STATES(FK_ST_ZH)
#undef FK_ST_ZH
};

static const char *const state_msgs[FK_ST__COUNT] = {
    [FK_ST_NONE] = "",
#define FK_ST_MSG(sym, name, zh, msg) [sym] = msg,
    FK_STATES(FK_ST_MSG)
#undef FK_ST_MSG
};

static const char *const reason_codes[FK_R__COUNT] = {
    [FK_R_NONE] = "",
#define FK_R_CODE(sym, code, msg) [sym] = code,
    FK_REASONS(FK_R_CODE)
#undef FK_R_CODE
};

static const char *const reason_msgs[FK_R__COUNT] = {
    [FK_R_NONE] = "",
#define FK_R_MSG(sym, code, msg) [sym] = msg,
    FK_REASONS(FK_R_MSG)
#undef FK_R_MSG
};

/* The transition table: allowed[from][to]. FK_ST_NONE -> processing is the
 * accept phase creating a record; NONE -> failed records an invalid,
 * duplicate or conflicting submission. */
#define T(from, to) [from][to] = 1
static const unsigned char allowed[FK_ST__COUNT][FK_ST__COUNT] = {
    T(FK_ST_NONE, FK_ST_PROCESSING),
    T(FK_ST_NONE, FK_ST_FAILED),
    T(FK_ST_PENDING_PAYMENT, FK_ST_PROCESSING),
    T(FK_ST_PROCESSING, FK_ST_COMPLETED),
    T(FK_ST_PROCESSING, FK_ST_FAILED),
    T(FK_ST_PROCESSING, FK_ST_PROCESSING),
    T(FK_ST_PROCESSING, FK_ST_PENDING_PAYMENT),
    /* extension (docs/STATES.md): re-scheduling a status poll */
    T(FK_ST_PENDING_PAYMENT, FK_ST_PENDING_PAYMENT),
    T(FK_ST_FAILED, FK_ST_PROCESSING),
    T(FK_ST_PROCESSING, FK_ST_EXPIRED),
    T(FK_ST_PENDING_PAYMENT, FK_ST_EXPIRED),
    T(FK_ST_PROCESSING, FK_ST_MANUAL_REVIEW),
    T(FK_ST_PENDING_PAYMENT, FK_ST_MANUAL_REVIEW),
    T(FK_ST_MANUAL_REVIEW, FK_ST_PROCESSING),
    T(FK_ST_MANUAL_REVIEW, FK_ST_FAILED),
    T(FK_ST_MANUAL_REVIEW, FK_ST_COMPLETED),
    /* extension (docs/STATES.md): a late payment must reach a human */
    T(FK_ST_EXPIRED, FK_ST_MANUAL_REVIEW),
    T(FK_ST_FAILED, FK_ST_MANUAL_REVIEW),
};
#undef T

const char *fk_state_name(fk_state s) {
    return (s >= 0 && s < FK_ST__COUNT) ? state_names[s] : "";
}

const char *fk_state_label_zh(fk_state s) {
    return (s >= 0 && s < FK_ST__COUNT) ? state_zh[s] : "";
}

const char *fk_state_message(fk_state s) {
    return (s >= 0 && s < FK_ST__COUNT) ? state_msgs[s] : "";
}

fk_state fk_state_parse(const char *name) {
    if (!name || !name[0]) return FK_ST_NONE;
    for (int s = 1; s < FK_ST__COUNT; s++)
        if (strcmp(name, state_names[s]) == 0) return (fk_state)s;
    return FK_ST_NONE;
}

int fk_state_is_final(fk_state s) {
    return s == FK_ST_COMPLETED || s == FK_ST_FAILED || s == FK_ST_EXPIRED ||
           s == FK_ST_MANUAL_REVIEW;
}

int fk_charge_ask_first(const char *charge) {
#define FK_ASK_CMP(name) if (strcmp(charge, #name) == 0) return 1;
    FK_CHARGE_ASK_FIRST(FK_ASK_CMP)
#undef FK_ASK_CMP
    return 0;
}

int fk_state_can(fk_state from, fk_state to) {
    if (from < 0 || from >= FK_ST__COUNT || to < 0 || to >= FK_ST__COUNT) return 0;
    return allowed[from][to];
}

const char *fk_reason_code(fk_reason r) {
    return (r >= 0 && r < FK_R__COUNT) ? reason_codes[r] : "";
}

fk_reason fk_reason_parse(const char *code) {
    if (!code || !code[0]) return FK_R_NONE;
    for (int r = 1; r < FK_R__COUNT; r++)
        if (strcmp(code, reason_codes[r]) == 0) return (fk_reason)r;
    return FK_R_NONE;
}

const char *fk_reason_message(fk_reason r, const char *detail, char *buf, size_t len) {
    if (r <= FK_R_NONE || r >= FK_R__COUNT) {
        snprintf(buf, len, "%s", detail ? detail : "");
        return buf;
    }
    const char *fmt = reason_msgs[r];
    const char *hole = strstr(fmt, "%s");
    if (!hole) {
        snprintf(buf, len, "%s", fmt);
    } else {
        snprintf(buf, len, "%.*s%s%s", (int)(hole - fmt), fmt, detail ? detail : "unknown",
                 hole + 2);
    }
    return buf;
}
