/* faka-worker -- consumes order jobs from the stream and takes each one to
 * a clear final state: reserve stock, charge the gateway, deliver codes.
 * Parses its configuration, wires common/ together and runs the loop. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "backoff.h"
#include "config.h"
#include "log.h"
#include "scripts.h"
#include "worker.h"

/* Exit codes: 0 ok (drained), 1 forced exit (second signal), 2 bad
 * configuration, 3 start-up failure. */
int main(int argc, char **argv) {
    fk_config cfg;
    char err[512];
    int rc = fk_config_load(&cfg, FK_BIN_WORKER,
                            "usage: faka-worker [options]\n"
                            "Consume order jobs from <prefix>:orders and process them.",
                            argc, argv, NULL, err, sizeof(err));
    if (rc == 1) return 0;
    if (rc) {
        fprintf(stderr, "faka-worker: %s\n", err);
        return 2;
    }
    fk_log_init("worker", cfg.worker_id, cfg.log_level);
    char unknown[512];
    int nu = fk_config_unknown_env(unknown, sizeof(unknown));
    if (nu)
        fk_warn("config.env", NULL, "%d unknown FAKA_* environment variable%s ignored: %s (see "
                "--help)", nu, nu == 1 ? "" : "s", unknown);
    if (strcmp(cfg.gateway_url, "none") == 0)
        fk_warn("config.gateway", NULL, "--gateway none (FAKA_GATEWAY_URL): orders are taken as "
                "paid and delivered without a charge");
    signal(SIGPIPE, SIG_IGN);
    fk_rand_seed(0);
    if (fk_scripts_init() != 0) {
        fprintf(stderr, "faka-worker: embedded Lua scripts are missing (a build error)\n");
        return 3;
    }
    rc = fk_worker_run(&cfg);
    fk_scripts_free();
    return rc;
}
