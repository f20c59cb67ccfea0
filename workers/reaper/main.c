/* faka-reaper -- settles what no worker will: orders past their order or
 * payment TTL (asking the gateway what became of the charge), consumers of
 * dead workers, and acknowledged entries in the stream. Any number may run
 * at once. Parses its configuration, wires common/ together and runs the
 * loop (common/reaper.c). */
#include <signal.h>
#include <stdio.h>

#include "config.h"
#include "log.h"
#include "reaper.h"
#include "scripts.h"

/* Exit codes: 0 ok (drained), 1 forced exit (second signal), 2 bad
 * configuration, 3 embedded scripts missing (a build error), 4 out of
 * memory at start, 5 the gateway client cannot be set up. */
int main(int argc, char **argv) {
    fk_config cfg;
    char err[512];
    int rc = fk_config_load(&cfg, FK_BIN_REAPER,
                            "usage: faka-reaper [options]\n"
                            "Settle orders past their TTL, remove dead consumers and trim "
                            "<prefix>:orders.",
                            argc, argv, NULL, err, sizeof(err));
    if (rc == 1) return 0;
    if (rc) {
        fprintf(stderr, "faka-reaper: %s\n", err);
        return FK_REAPER_EXIT_CONFIG;
    }
    fk_log_init("reaper", cfg.worker_id, cfg.log_level);
    char unknown[512];
    int nu = fk_config_unknown_env(unknown, sizeof(unknown));
    if (nu)
        fk_warn("config.env", NULL, "%d unknown FAKA_* environment variable%s ignored: %s (see "
                "--help)", nu, nu == 1 ? "" : "s", unknown);
    signal(SIGPIPE, SIG_IGN);
    if (fk_scripts_init() != 0) {
        fprintf(stderr, "faka-reaper: embedded Lua scripts are missing (a build error)\n");
        fk_scripts_free();
        return 3;
    }
    rc = fk_reaper_run(&cfg);
    fk_scripts_free();
    return rc;
}
