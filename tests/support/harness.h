/* harness.h -- what the integration tests stand on: a real redis-server on
 * a free loopback port in a temporary directory, real faka processes, and
 * a synchronous hiredis client to look at the result. Nothing is mocked.
 *
 * A missing redis-server or binary is a test failure (fk_t_fail), never a
 * skip: CI must not go green because something was not installed. */
#ifndef FK_TEST_HARNESS_H
#define FK_TEST_HARNESS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct fk_t_redis {
    char dir[256];  /* temp dir: data, logs */
    int port;
    pid_t pid;
    int aof;        /* appendonly yes, appendfsync always */
    char url[128];  /* redis://127.0.0.1:port (redis://:password@... with one) */
    char password[64]; /* requirepass, "" = none (fk_t_redis_start_opts) */
} fk_t_redis;

/* Print a message and abort the test program (cmocka sees a failure). */
void fk_t_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A free TCP port on 127.0.0.1 (bind to 0, read, close). */
int fk_t_free_port(void);

/* Make a temp dir and start redis-server in it. aof: 1 for appendonly with
 * appendfsync always. Waits until it answers PING. */
void fk_t_redis_start(fk_t_redis *r, int aof);
/* fk_t_redis_start with more choices; zero-initialise and set what you need. */
typedef struct fk_t_redis_opts {
    int aof;                 /* as for fk_t_redis_start */
    int port;                /* 0 = a free port; else this one (e.g. one a client
                                already tries to reach) */
    const char *requirepass; /* NULL or "" = none; [A-Za-z0-9_-], < 64 chars.
                                fk_t_connect and the url then use it */
} fk_t_redis_opts;
void fk_t_redis_start_opts(fk_t_redis *r, const fk_t_redis_opts *o);
/* Start it again on the same port and dir (after a kill). */
void fk_t_redis_restart(fk_t_redis *r);
/* Send sig (SIGKILL, SIGTERM) and reap it. */
void fk_t_redis_kill(fk_t_redis *r, int sig);
/* Stop it and remove its directory. */
void fk_t_redis_stop(fk_t_redis *r);

/* A synchronous connection (fails the test if it cannot connect). */
redisContext *fk_t_connect(const fk_t_redis *r);
/* Run a command and return the reply (fails the test on NULL). Caller frees. */
redisReply *fk_t_cmd(redisContext *c, const char *fmt, ...);
/* Integer or string reply as a number; -1 for nil. */
long long fk_t_int(redisContext *c, const char *fmt, ...);

/* Path of a built binary: $FK_BUILD_DIR/<rel> (meson passes it). */
const char *fk_t_bin(const char *rel, char *buf, size_t len);

/* Spawn argv (argv[0] is the path) with extra "NAME=value" env entries
 * (NULL-terminated, may be NULL); stdout+stderr go to logfile (appended).
 * Fails the test if the binary does not exist. */
pid_t fk_t_spawn(const char *const argv[], const char *const env[], const char *logfile);
/* Wait for pid up to timeout_ms; returns its exit status (0-255), 128+sig
 * if killed, or -1 on timeout (the process is left running). */
int fk_t_wait(pid_t pid, long timeout_ms);

/* Run the built binary rel (e.g. "workers/faka-worker") with args
 * (NULL-terminated), wait up to 5 s, and return its exit status with its
 * stdout+stderr in out (NUL-terminated, cut at outlen). For tests of
 * command lines and configuration. */
int fk_t_run(const char *rel, const char *const args[], char *out, size_t outlen);

/* Stop a fleet process: SIGCONT (it may be stopped), SIGTERM, and wait up
 * to 15 s for it to drain; SIGKILL it if it does not. Returns its exit
 * status, or -1 if it had to be killed. pid <= 0 is a no-op returning 0. */
int fk_t_stop(pid_t pid);

/* Lines of the file at path that contain a and, unless b is NULL, b too;
 * -1 if the file cannot be opened. For reading a process's log. */
int fk_t_log_count(const char *path, const char *a, const char *b);

/* Start a faka-worker against r with extra args (NULL-terminated, may be
 * NULL). Its log is <dir>/<name>.log. */
pid_t fk_t_worker(const fk_t_redis *r, const char *name, const char *const extra[]);

/* SIGKILL and reap every process this test program spawned that is still
 * running (redis-server included). For cmocka teardowns: a failed
 * assertion must not leave a fleet behind. Returns how many it killed. */
int fk_t_kill_all(void);
/* A cmocka-shaped teardown that calls fk_t_kill_all(). */
int fk_t_teardown(void **state);

/* Poll until cond(arg) returns nonzero or timeout_ms passes; returns the
 * last value of cond. */
int fk_t_until(int (*cond)(void *arg), void *arg, long timeout_ms);

long long fk_t_now_ms(void);
void fk_t_sleep_ms(long ms);

#endif
