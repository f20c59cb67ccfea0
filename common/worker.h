/* worker.h -- the consumer loop of faka-worker.
 *
 * Reads the stream through the consumer group on a blocking-read
 * connection, runs each entry through the pipeline on a command connection,
 * keeps at most `concurrency` entries in flight, and runs the periodic
 * duties every worker shares: the retry promoter, the reclaim of entries
 * stalled on dead consumers, and its heartbeat. After every (re)connect it
 * first drains its own pending entries (XREADGROUP ... 0), then reads new
 * ones (>). */
#ifndef FK_WORKER_H
#define FK_WORKER_H

#include "config.h"

/* Run a worker until it is told to stop. The first SIGTERM/SIGINT drains:
 * no new reads, in-flight entries finish (bounded by the lease), exit 0. A
 * second signal exits at once with status 1. Returns the exit status; every
 * handle is closed and the loop closed before it returns. */
int fk_worker_run(const fk_config *cfg);

#endif
