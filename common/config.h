/* config.h -- the one table of faka's options: flags with FAKA_* environment
 * fallbacks, bounds and defaults, validated at start.
 *
 * Precedence: command-line flag > environment variable > default. Every
 * binary declares which rows it accepts (a bit mask), so `--help` lists only
 * what that binary uses. */
#ifndef FK_CONFIG_H
#define FK_CONFIG_H

#include <stddef.h>
#include <stdio.h>

enum fk_bin {
    FK_BIN_WORKER = 1 << 0,
    FK_BIN_REAPER = 1 << 1,
    FK_BIN_CTL = 1 << 2,
};

typedef struct fk_config {
    /* connection and naming */
    char redis_url[512];
    char prefix[65];
    char worker_id[128];
    char gateway_url[512];     /* "none" or http(s)://... */
    char webhook_url[512];     /* "" = no notifications */
    char webhook_secret[256];
    int log_level;
    /* worker loop */
    long long concurrency;     /* max entries in flight per worker */
    long long batch;           /* XREADGROUP COUNT */
    long long block_ms;        /* XREADGROUP BLOCK */
    long long lease_ms;        /* order lease / stalled-entry threshold */
    long long promote_ms;      /* retry promoter tick */
    long long promote_batch;
    /* retry policy */
    long long retry_base_ms;
    long long retry_cap_ms;
    long long retry_max;       /* attempts before giving up */
    long long poll_max;        /* pending_payment status polls */
    /* TTLs and retention */
    long long idem_ttl_s;
    long long order_ttl_s;     /* processing longer than this is a zombie */
    long long payment_ttl_s;   /* pending_payment longer than this expires */
    long long retention_s;     /* finished order records; 0 = keep forever */
    long long dead_max;        /* faka:dead stream length cap (approximate) */
    long long max_deliveries;  /* deliveries of one entry before dead-letter */
    /* http */
    long long http_timeout_ms;
    long long http_connect_timeout_ms;
    long long http_max;        /* concurrent requests */
    long long webhook_max;     /* notification attempts */
    long long webhook_retry_cap_ms; /* longest wait between them */
    /* redis connection watchdog */
    long long redis_timeout_ms;
    /* gateway guard (guard.h): fleet-wide circuit breaker and rate limit */
    long long breaker_failures;    /* consecutive transient failures that open; 0 = off */
    long long breaker_error_pct;   /* error percent over the window that opens; 0 = off */
    long long breaker_min_calls;   /* calls in the window before the percent counts */
    long long breaker_window_s;
    long long breaker_cooldown_ms; /* open this long, then half-open */
    long long breaker_probes;      /* calls let through while half-open */
    long long rate_limit_rps;      /* gateway calls per second, fleet-wide; 0 = off */
    long long rate_limit_burst;    /* token bucket capacity; 0 = rate_limit_rps */
    /* buyer cooldown (the stubborn clicker); failures 0 = off */
    long long buyer_cool_failures;
    long long buyer_cool_window_s;
    long long buyer_cool_s;
    /* reaper (reaper.h) */
    long long reap_ms;         /* how often the reaper sweeps */
    long long reap_batch;      /* orders settled at once per reaper */
    long long recheck_ms;      /* first look again after a 404 expiry (0 = never) */
    long long worker_ttl_ms;   /* a heartbeat older than this is a dead worker */
    long long stream_trim;     /* 1: trim acknowledged entries from the stream */
} fk_config;

/* Fill cfg with defaults, then environment, then argv (flags `--name value`
 * or `--name=value`) for the rows whose mask intersects bins. `--help`
 * prints usage (synopsis first) to stdout. Positional
 * arguments (fakactl's command words) are left in place: *first_arg receives
 * the index of the first non-flag argument (argc if none); flags may not
 * follow positionals.
 * Returns 0 on success, 1 when --help was printed (exit 0), or FK_EINVAL
 * with a one-line reason in err. */
int fk_config_load(fk_config *cfg, int bins, const char *synopsis,
                   int argc, char **argv,
                   int *first_arg, char *err, size_t errlen);

/* The FAKA_* environment variables that no faka binary reads, e.g. a
 * misspelling such as FAKA_GATEWAY, which leaves --gateway at `none`
 * (orders taken as paid): their names, joined by ", " and cut to fit, into
 * buf (len > 0). Returns how many there are. Each binary warns about them
 * at start; a variable another binary reads is not unknown. */
int fk_config_unknown_env(char *buf, size_t len);

/* Print the usage of a binary: its synopsis line, then every accepted row
 * with its flag, environment variable, default and help text. */
void fk_config_usage(FILE *out, int bins, const char *synopsis);

#endif
