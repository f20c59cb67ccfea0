/* harness.c -- real redis-server and real processes for the tests (see
 * harness.h). */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void fk_t_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "HARNESS FAILURE: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

long long fk_t_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void fk_t_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

int fk_t_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    socklen_t len = sizeof(a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        fk_t_fail("cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

const char *fk_t_bin(const char *rel, char *buf, size_t len) {
    const char *dir = getenv("FK_BUILD_DIR");
    if (!dir) fk_t_fail("FK_BUILD_DIR is not set (run the tests with meson test)");
    snprintf(buf, len, "%s/%s", dir, rel);
    if (access(buf, X_OK) != 0) fk_t_fail("binary %s is missing", buf);
    return buf;
}

/* Every spawned process still to be reaped, for fk_t_kill_all(). */
#define MAX_LIVE 256
static pid_t live[MAX_LIVE];

static void live_add(pid_t pid) {
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] == 0) {
            live[i] = pid;
            return;
        }
}

static void live_del(pid_t pid) {
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] == pid) live[i] = 0;
}

int fk_t_kill_all(void) {
    int n = 0;
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i] <= 0) continue;
        kill(live[i], SIGCONT);
        kill(live[i], SIGKILL);
        waitpid(live[i], NULL, 0);
        live[i] = 0;
        n++;
    }
    return n;
}

int fk_t_teardown(void **state) {
    (void)state;
    int n = fk_t_kill_all();
    if (n) fprintf(stderr, "# teardown killed %d leftover processes\n", n);
    return 0;
}

pid_t fk_t_spawn(const char *const argv[], const char *const env[], const char *logfile) {
    if (access(argv[0], X_OK) != 0 && strchr(argv[0], '/'))
        fk_t_fail("cannot run %s: %s", argv[0], strerror(errno));
    pid_t pid = fork();
    if (pid < 0) fk_t_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        for (int i = 0; env && env[i]; i++) putenv((char *)env[i]);
        setpgid(0, 0);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    live_add(pid);
    return pid;
}

int fk_t_wait(pid_t pid, long timeout_ms) {
    long long end = fk_t_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            live_del(pid);
            if (WIFEXITED(st)) return WEXITSTATUS(st);
            if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
            return -1;
        }
        if (r < 0) {
            live_del(pid);
            return -1;
        }
        if (fk_t_now_ms() >= end) return -1;
        fk_t_sleep_ms(10);
    }
}

/* AUTH on c when the server has a password; 0 if it failed. */
static int auth(redisContext *c, const char *password) {
    if (!password || !password[0]) return 1;
    redisReply *r = redisCommand(c, "AUTH %s", password);
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
    return ok;
}

static int redis_pings(int port, const char *password) {
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    int ok = 0;
    if (c && !c->err && auth(c, password)) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS;
        if (r) freeReplyObject(r);
    }
    if (c) redisFree(c);
    return ok;
}

static void redis_spawn(fk_t_redis *r) {
    char port[16], log[300];
    snprintf(port, sizeof(port), "%d", r->port);
    snprintf(log, sizeof(log), "%s/redis.log", r->dir);
    const char *argv[] = {"redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", r->dir,
                    "--save", "", "--appendonly", r->aof ? "yes" : "no", "--appendfsync",
                    "always", "--daemonize", "no", NULL, NULL, NULL};
    if (r->password[0]) {
        argv[15] = "--requirepass";
        argv[16] = r->password;
    }
    const char *path = "/usr/bin/redis-server";
    if (access(path, X_OK) != 0)
        fk_t_fail("redis-server is not installed (apt-get install redis-server)");
    argv[0] = path;
    r->pid = fk_t_spawn(argv, NULL, log);
    long long end = fk_t_now_ms() + 10000;
    while (!redis_pings(r->port, r->password)) {
        if (fk_t_now_ms() > end) fk_t_fail("redis-server on port %d did not start", r->port);
        if (fk_t_wait(r->pid, 0) >= 0) fk_t_fail("redis-server exited; see %s", log);
        fk_t_sleep_ms(20);
    }
}

void fk_t_redis_start(fk_t_redis *r, int aof) {
    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "/tmp/faka-test-XXXXXX");
    if (!mkdtemp(r->dir)) fk_t_fail("mkdtemp: %s", strerror(errno));
    r->aof = aof;
    r->port = fk_t_free_port();
    snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d", r->port);
    redis_spawn(r);
}

void fk_t_redis_start_opts(fk_t_redis *r, const fk_t_redis_opts *o) {
    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "/tmp/faka-test-XXXXXX");
    if (!mkdtemp(r->dir)) fk_t_fail("mkdtemp: %s", strerror(errno));
    r->aof = o->aof;
    r->port = o->port ? o->port : fk_t_free_port();
    if (o->requirepass && o->requirepass[0]) {
        if (strlen(o->requirepass) >= sizeof(r->password) ||
            strspn(o->requirepass, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789_-") != strlen(o->requirepass))
            fk_t_fail("requirepass must be < 64 of [A-Za-z0-9_-]");
        snprintf(r->password, sizeof(r->password), "%s", o->requirepass);
        snprintf(r->url, sizeof(r->url), "redis://:%s@127.0.0.1:%d", r->password, r->port);
    } else {
        snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d", r->port);
    }
    redis_spawn(r);
}

void fk_t_redis_restart(fk_t_redis *r) { redis_spawn(r); }

void fk_t_redis_kill(fk_t_redis *r, int sig) {
    if (r->pid <= 0) return;
    kill(r->pid, sig);
    if (fk_t_wait(r->pid, 15000) < 0) {
        kill(r->pid, SIGKILL);
        fk_t_wait(r->pid, 5000);
    }
    r->pid = 0;
}

void fk_t_redis_stop(fk_t_redis *r) {
    fk_t_redis_kill(r, SIGTERM);
    if (!getenv("FK_KEEP_TMP") && r->dir[0]) {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", r->dir);
    }
}

redisContext *fk_t_connect(const fk_t_redis *r) {
    redisContext *c = redisConnect("127.0.0.1", r->port);
    if (!c || c->err) fk_t_fail("cannot connect to redis on %d", r->port);
    if (!auth(c, r->password)) fk_t_fail("AUTH failed on redis %d", r->port);
    return c;
}

redisReply *fk_t_cmd(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r) fk_t_fail("redis command failed: %s", c->errstr);
    return r;
}

long long fk_t_int(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r) fk_t_fail("redis command failed: %s", c->errstr);
    long long v = -1;
    if (r->type == REDIS_REPLY_INTEGER) v = r->integer;
    else if (r->type == REDIS_REPLY_STRING) v = atoll(r->str);
    else if (r->type == REDIS_REPLY_ERROR) fk_t_fail("redis error: %s", r->str);
    freeReplyObject(r);
    return v;
}

int fk_t_run(const char *rel, const char *const args[], char *out, size_t outlen) {
    char bin[512], log[512];
    static int seq;
    fk_t_bin(rel, bin, sizeof(bin));
    snprintf(log, sizeof(log), "/tmp/faka-run-%d-%d.log", (int)getpid(), seq++);
    unlink(log);
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fk_t_spawn(argv, NULL, log);
    int st = fk_t_wait(pid, 5000);
    if (st < 0) {
        kill(pid, SIGKILL);
        fk_t_wait(pid, 1000);
    }
    FILE *fp = fopen(log, "r");
    out[0] = '\0';
    if (fp) {
        size_t k = fread(out, 1, outlen - 1, fp);
        out[k] = '\0';
        fclose(fp);
    }
    unlink(log);
    return st;
}

int fk_t_stop(pid_t pid) {
    if (pid <= 0) return 0;
    kill(pid, SIGCONT);
    kill(pid, SIGTERM);
    int st = fk_t_wait(pid, 15000);
    if (st < 0) {
        kill(pid, SIGKILL);
        fk_t_wait(pid, 5000);
    }
    return st;
}

int fk_t_log_count(const char *path, const char *a, const char *b) {
    FILE *f = fopen(path, "r");
    char line[8192];
    int n = 0;
    if (!f) return -1;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, a) && (!b || strstr(line, b))) n++;
    fclose(f);
    return n;
}

pid_t fk_t_worker(const fk_t_redis *r, const char *name, const char *const extra[]) {
    char bin[512], log[300], url[160], id[80];
    fk_t_bin("workers/faka-worker", bin, sizeof(bin));
    snprintf(log, sizeof(log), "%s/%s.log", r->dir, name);
    snprintf(url, sizeof(url), "--redis-url=%s", r->url);
    snprintf(id, sizeof(id), "--worker-id=%s", name);
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = url;
    argv[n++] = id;
    for (int i = 0; extra && extra[i] && n < 62; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fk_t_spawn(argv, NULL, log);
    /* A worker that refuses its configuration exits at once: say so now
     * rather than as a timeout later. */
    int st = fk_t_wait(pid, 150);
    if (st >= 0) fk_t_fail("worker %s exited at start with status %d; see %s", name, st, log);
    return pid;
}

int fk_t_until(int (*cond)(void *arg), void *arg, long timeout_ms) {
    long long end = fk_t_now_ms() + timeout_ms;
    int v;
    while (!(v = cond(arg)) && fk_t_now_ms() < end) fk_t_sleep_ms(50);
    return v;
}
