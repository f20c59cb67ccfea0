/* faka-chaos -- the long form of the chaos suite (scripts/chaos runs it):
 * one chaos round with the given size and mix, the table on stdout, exit 0
 * when every invariant holds (no lost order, no double charge, no double
 * delivery, no lost code, dead letters == malformed entries, ...), 1 when
 * one does not, 2 on bad usage. Not installed. */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chaos.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: faka-chaos [options]\n"
            "Run a faka fleet against the mock gateway under chaos, then audit it.\n"
            "  --orders N          valid orders (default 2000)\n"
            "  --workers N         fleet size, kept up by replacing killed workers (4)\n"
            "  --producers N       parallel producers (4)\n"
            "  --kills N           worker SIGKILLs (10)\n"
            "  --stalls N          worker SIGSTOP/SIGCONT past the lease (5)\n"
            "  --redis-restarts N  Redis SIGKILL + restart, AOF appendfsync always (1)\n"
            "  --malformed N       malformed entries (60)\n"
            "  --dup-groups N      groups of entries racing on one idempotency key (20)\n"
            "  --dup-size N        entries per group, distinct order ids (8)\n"
            "  --seed N            plan, schedule and gateway faults (1)\n"
            "  --faults MIX        none | light | heavy | a /_faults JSON object (light)\n"
            "  --duration-s N      chaos window; orders are spread over 3/4 of it (20)\n"
            "  --drain-s N         longest wait for every order to end afterwards (90)\n"
            "  --lease-ms N        workers' lease; HTTP timeout is 2/5 of it (2000)\n"
            "  --stall-ms MIN:MAX  stall length (1.5x:3x the lease)\n"
            "  --order-ttl-s N     fleet's order TTL: the reaper settles orders still\n"
            "                      processing after it (0 = faka's default, 1800)\n"
            "  --reaper auto|yes|no  run faka-reaper if built / require it / never (auto)\n"
            "  --keep              keep the temp dir (logs, AOF) even on success\n"
            "  --quiet             no progress lines\n"
            "Environment: FK_BUILD_DIR (default: the build dir this binary is in).\n");
}

static int num(const char *flag, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "faka-chaos: %s wants an integer from %lld to %lld, not '%s'\n", flag,
                lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

int main(int argc, char **argv) {
    fk_t_chaos_opts o;
    fk_t_chaos_defaults(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--keep")) {
            o.keep = 1;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            o.verbose = 0;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "faka-chaos: %s needs a value (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        long long x = 0;
        int rc = 0;
        if (!strcmp(a, "--orders")) rc = num(a, v, 0, 10000000, &x), o.orders = x;
        else if (!strcmp(a, "--workers")) rc = num(a, v, 1, 64, &x), o.workers = (int)x;
        else if (!strcmp(a, "--producers")) rc = num(a, v, 1, 64, &x), o.producers = (int)x;
        else if (!strcmp(a, "--kills")) rc = num(a, v, 0, 100000, &x), o.kills = (int)x;
        else if (!strcmp(a, "--stalls")) rc = num(a, v, 0, 100000, &x), o.stalls = (int)x;
        else if (!strcmp(a, "--redis-restarts"))
            rc = num(a, v, 0, 1000, &x), o.redis_restarts = (int)x;
        else if (!strcmp(a, "--malformed")) rc = num(a, v, 0, 1000000, &x), o.malformed = x;
        else if (!strcmp(a, "--dup-groups")) rc = num(a, v, 0, 100000, &x), o.dup_groups = (int)x;
        else if (!strcmp(a, "--dup-size")) rc = num(a, v, 1, 1000, &x), o.dup_size = (int)x;
        else if (!strcmp(a, "--seed"))
            rc = num(a, v, 0, 0x7fffffffffffffffLL, &x), o.seed = (unsigned long long)x;
        else if (!strcmp(a, "--duration-s"))
            rc = num(a, v, 1, 86400, &x), o.duration_ms = (long)x * 1000;
        else if (!strcmp(a, "--drain-s")) rc = num(a, v, 1, 86400, &x), o.drain_ms = (long)x * 1000;
        else if (!strcmp(a, "--lease-ms")) rc = num(a, v, 500, 600000, &x), o.lease_ms = (long)x;
        else if (!strcmp(a, "--order-ttl-s"))
            rc = num(a, v, 0, 31536000, &x), o.order_ttl_s = (long)x;
        else if (!strcmp(a, "--faults")) o.faults = v;
        else if (!strcmp(a, "--stall-ms")) {
            long lo, hi;
            if (sscanf(v, "%ld:%ld", &lo, &hi) != 2 || lo < 1 || hi < lo) {
                fprintf(stderr, "faka-chaos: --stall-ms wants MIN:MAX in ms\n");
                return 2;
            }
            o.stall_min_ms = lo;
            o.stall_max_ms = hi;
        } else if (!strcmp(a, "--reaper")) {
            if (!strcmp(v, "auto")) o.reaper = -1;
            else if (!strcmp(v, "yes")) o.reaper = 1;
            else if (!strcmp(v, "no")) o.reaper = 0;
            else rc = -1, fprintf(stderr, "faka-chaos: --reaper auto|yes|no\n");
        } else {
            fprintf(stderr, "faka-chaos: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (rc) return 2;
    }
    if (!getenv("FK_BUILD_DIR")) { /* <build>/tests/faka-chaos */
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n <= 0) {
            fprintf(stderr, "faka-chaos: set FK_BUILD_DIR\n");
            return 2;
        }
        exe[n] = '\0';
        setenv("FK_BUILD_DIR", dirname(dirname(exe)), 1);
    }
    fk_t_chaos_result r;
    int rc = fk_t_chaos_run(&o, &r);
    fk_t_chaos_print(stdout, &o, &r);
    return rc ? 1 : 0;
}
