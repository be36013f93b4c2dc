/*
 * vivd_tests.c - the daemon under normal use and under abuse.
 *
 * Each test starts its own vivd ($VIVD, default build/asan/vivd: built with
 * AddressSanitizer and UBSan) on a private socket, talks to it with the C
 * client library or raw sockets, and checks both the answers and that the
 * daemon is still healthy afterwards.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../harness.h"
#include "../../sandbox/client/client.h"
#include "../../sandbox/jail/job_files.h"
#include "../../sandbox/base/util.h"


static const char *vivd_bin;
static rlim_t daemon_nofile; /* when set, the next daemon runs under this fd limit */

struct daemon {
    pid_t pid;
    char sock[108];
    char log[128];
};

static int try_connect(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Every daemon a test starts; a test that fails early leaves its daemon
 * running, and kill_leftover_daemons() (after each test) takes it down. */
static pid_t daemons_started[64];
static int ndaemons_started;

static void kill_leftover_daemons(void) {
    for (int i = 0; i < ndaemons_started; i++)
        if (daemons_started[i] > 0 && kill(daemons_started[i], SIGKILL) == 0) waitpid(daemons_started[i], NULL, 0);
    ndaemons_started = 0;
}

/* The python policy's zygotes (stats "tools.python.zygotes"): how many are
 * idle, busy and starting; all -1 when the daemon has none. */
struct zygote_counts {
    int idle, busy, starting, started, lost;
};

static struct zygote_counts zygote_counts(const char *sock) {
    struct zygote_counts z = {-1, -1, -1, -1, -1};
    char err[256];
    struct viv_client *c = viv_connect(sock, err, sizeof err);
    if (!c) return z;
    struct viv_response *r = viv_wait(c, viv_submit_op(c, "stats"), 5000);
    cJSON *o = r ? cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "tools"), "python"), "zygotes") : NULL;
    if (o) {
        z.idle = cJSON_GetObjectItem(o, "idle")->valueint;
        z.busy = cJSON_GetObjectItem(o, "busy")->valueint;
        z.starting = cJSON_GetObjectItem(o, "starting")->valueint;
        z.started = cJSON_GetObjectItem(o, "started")->valueint;
        z.lost = cJSON_GetObjectItem(o, "lost")->valueint;
    }
    viv_response_free(r);
    viv_close(c);
    return z;
}

/* Wait (up to 30 s) until no python zygote is starting: 0, or -1. */
static int zygotes_settle(const char *sock) {
    for (int i = 0; i < 600; i++) {
        struct zygote_counts z = zygote_counts(sock);
        if (z.starting <= 0) return 0;
        usleep(50000);
    }
    return -1;
}

/* Start vivd with extra args; 0 when it accepts connections and its
 * zygotes have started. Tests get one python zygote unless they ask for
 * more (--zygotes N in extra): each costs a pandas import. */
static int daemon_start(struct daemon *d, const char *const *extra) {
    static int n;
    snprintf(d->sock, sizeof d->sock, "/tmp/vivd-test-%d-%d.sock", (int)getpid(), n);
    snprintf(d->log, sizeof d->log, "/tmp/vivd-test-%d-%d.log", (int)getpid(), n++);
    const char *argv[32] = {vivd_bin, "--socket", d->sock, "--log", d->log, "--zygotes", "1"};
    int k = 7;
    for (int i = 0; extra && extra[i] && k < 31; i++) argv[k++] = extra[i];
    argv[k] = NULL;
    d->pid = fork();
    if (d->pid == 0) {
        /* vivd logs to its --log file; its stdio must not hold the runner's pipe */
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0), dup2(devnull, 1), dup2(devnull, 2);
        if (devnull > 2) close(devnull);
        struct rlimit nofile = {daemon_nofile, daemon_nofile};
        if (daemon_nofile && setrlimit(RLIMIT_NOFILE, &nofile) != 0) _exit(98);
        execv(vivd_bin, (char *const *)argv);
        _exit(99);
    }
    if (ndaemons_started < (int)(sizeof daemons_started / sizeof *daemons_started))
        daemons_started[ndaemons_started++] = d->pid;
    for (int i = 0; i < 500; i++) {
        int fd = try_connect(d->sock);
        if (fd >= 0) {
            close(fd);
            int rc = zygotes_settle(d->sock);
            usleep(50000); /* let the daemon see the settle probe's hang-up: fd counts start clean */
            return rc;
        }
        usleep(10000);
    }
    return -1;
}

/* SIGTERM, wait; returns the exit status (or -1 if it would not exit in 20 s). */
static void forget_daemon(pid_t pid) {
    for (int i = 0; i < ndaemons_started; i++)
        if (daemons_started[i] == pid) daemons_started[i] = 0; /* reaped: its pid may be reused */
}

static int daemon_stop(struct daemon *d) {
    kill(d->pid, SIGTERM);
    for (int i = 0; i < 2000; i++) {
        int st;
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            forget_daemon(d->pid);
            unlink(d->log);
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        usleep(10000);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    forget_daemon(d->pid);
    return -1;
}

static int count_fds(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *dir = opendir(path);
    int n = 0;
    while (dir && readdir(dir)) n++;
    if (dir) closedir(dir);
    return n;
}

static long rss_kb(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

/* Send raw text on a fresh connection, read one response line (2 s max). */
static char *raw_roundtrip(int fd, const char *text, size_t len) {
    if (len && write_all(fd, text, len) != 0) return NULL;
    static char buf[1 << 20];
    size_t n = 0;
    while (n < sizeof buf - 1) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 2000) <= 0) break;
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        if (memchr(buf, '\n', n)) break;
    }
    buf[n] = 0;
    return buf;
}

static const char *jerr_code(const cJSON *o) {
    return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "error"), "code"));
}

#define START(d, ...)                                                                      \
    struct daemon d;                                                                       \
    CHECK(daemon_start(&d, (const char *const[]){__VA_ARGS__}) == 0, "vivd did not start")

#define CONNECT(c, d)                                                                      \
    char _err[256];                                                                        \
    struct viv_client *c = viv_connect((d).sock, _err, sizeof _err);                       \
    CHECK(c != NULL, "%s", _err)

/* ------------------------------------------------------------------ tests */

static void test_ping_policies_stats(void) {
    START(d, NULL);
    CONNECT(c, d);
    long h1 = viv_submit_op(c, "ping"), h2 = viv_submit_op(c, "policies"), h3 = viv_submit_op(c, "stats");
    struct viv_response *r1 = viv_wait(c, h1, 5000), *r2 = viv_wait(c, h2, 5000), *r3 = viv_wait(c, h3, 5000);
    CHECK(r1 && cJSON_IsTrue(cJSON_GetObjectItem(r1->json, "pong")), "ping");
    CHECK(r2 && cJSON_GetArraySize(cJSON_GetObjectItem(r2->json, "policies")) == 4, "policies: python, r, shell, sql");
    CHECK(r3 && cJSON_GetObjectItem(r3->json, "workers"), "stats");
    viv_response_free(r1), viv_response_free(r2), viv_response_free(r3);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "vivd did not exit 0 on SIGTERM");
}

static void test_exec_python(void) {
    START(d, NULL);
    CONNECT(c, d);
    const char *code = "import pandas as pd\nprint(pd.DataFrame({'a':[1,2]})['a'].sum())\n";
    long h = viv_submit_exec(c, "python", code, strlen(code), 10000);
    struct viv_response *r = viv_wait(c, h, 20000);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")), "exec failed");
    CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(r->json, "stdout")), "3\n") == 0, "stdout");
    CHECK(cJSON_GetObjectItem(r->json, "id")->valueint == h, "id not echoed");
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_pipelined_out_of_order(void) {
    START(d, "--workers", "4", NULL);
    CONNECT(c, d);
    long slow = viv_submit_exec(c, "shell", "sleep 1; echo slow", 18, 5000);
    long fast[5];
    for (int i = 0; i < 5; i++) {
        char code[32];
        snprintf(code, sizeof code, "echo fast%d", i);
        fast[i] = viv_submit_exec(c, "shell", code, strlen(code), 5000);
    }
    struct viv_response *first = viv_next(c, 10000);
    CHECK(first && first->handle != slow, "the slow request came back first: answers are not out of order");
    int seen = 1;
    viv_response_free(first);
    struct viv_response *r;
    while ((r = viv_next(c, 10000))) {
        seen++;
        char want[32];
        for (int i = 0; i < 5; i++)
            if (r->handle == fast[i]) {
                snprintf(want, sizeof want, "fast%d\n", i);
                CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(r->json, "stdout")), want) == 0, "wrong answer for id");
            }
        viv_response_free(r);
    }
    CHECK(seen == 6, "%d of 6 answers", seen);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_malformed_requests(void) {
    START(d, NULL);
    int fd = try_connect(d.sock);
    struct {
        const char *line, *want_code, *want_id;
    } cases[] = {
        {"{not json\n", "bad_request", "\"id\":null"},
        {"[1,2,3]\n", "bad_request", "\"id\":null"},
        {"{\"id\":5,\"op\":\"exec\",\"tool\":\"python\",\"code\":7}\n", "bad_request", "\"id\":5"},
        {"{\"id\":6,\"op\":\"exec\",\"code\":\"print(1)\"}\n", "bad_request", "\"id\":6"},
        {"{\"id\":7,\"op\":\"launch\"}\n", "unknown_op", "\"id\":7"},
        {"{\"id\":8,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"timeout\":5}\n", "bad_request", "\"id\":8"},
        {"{\"id\":9,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"print(1)\\u0000rm\"}\n", "bad_request", "\"id\":9"},
        {"{\"id\":10,\"op\":\"exec\",\"tool\":\"cobol\",\"code\":\"x\"}\n", "bad_request", "\"id\":10"},
        {"{\"id\":{\"a\":1},\"op\":\"ping\"}\n", "bad_request", "\"id\":null"},
        {"{\"id\":11,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"x\",\"timeout_ms\":-5}\n", "bad_request", "\"id\":11"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *resp = raw_roundtrip(fd, cases[i].line, strlen(cases[i].line));
        cJSON *o = resp ? cJSON_Parse(resp) : NULL;
        CHECK(o, "case %zu: no valid JSON answer: %s", i, resp ? resp : "(none)");
        CHECK(jerr_code(o) && strcmp(jerr_code(o), cases[i].want_code) == 0, "case %zu: %s", i, resp);
        CHECK(strstr(resp, cases[i].want_id), "case %zu: id not echoed: %s", i, resp);
        cJSON_Delete(o);
    }
    /* deep nesting: refused, not a stack overflow */
    size_t depth = 100000;
    char *deep = malloc(depth + 2);
    memset(deep, '[', depth);
    deep[depth] = '\n';
    char *resp = raw_roundtrip(fd, deep, depth + 1);
    free(deep);
    CHECK(resp && strstr(resp, "bad_request"), "deep nesting: %s", resp ? resp : "(none)");
    /* and the same connection still works */
    resp = raw_roundtrip(fd, "{\"id\":99,\"op\":\"ping\"}\n", 22);
    CHECK(resp && strstr(resp, "\"pong\":true"), "connection unusable after bad input: %s", resp);
    close(fd);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_binary_and_invalid_utf8(void) {
    START(d, NULL);
    int fd = try_connect(d.sock);
    /* invalid UTF-8 in the code: the job runs (Python rejects it), the answer is valid JSON */
    const char bad[] = "{\"id\":1,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"print('\xff\xfe')\"}\n";
    char *resp = raw_roundtrip(fd, bad, sizeof bad - 1);
    cJSON *o = cJSON_Parse(resp);
    CHECK(o && cJSON_IsTrue(cJSON_GetObjectItem(o, "ok")), "invalid UTF-8 code: %s", resp);
    cJSON_Delete(o);
    const char bin[] = "{\"id\":2,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"import sys; sys.stdout.buffer.write(bytes(range(256)))\"}\n";
    resp = raw_roundtrip(fd, bin, sizeof bin - 1);
    o = cJSON_Parse(resp);
    CHECK(o && strstr(resp, "\\u0000\\u0001") && strstr(resp, "\\ufffd"), "binary output: %.300s", resp);
    cJSON_Delete(o);
    close(fd);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_huge_line_closes_connection_only(void) {
    START(d, NULL);
    int fd = try_connect(d.sock);
    size_t chunk = 1 << 20, sent = 0;
    char *junk = malloc(chunk);
    memset(junk, 'a', chunk);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    int closed = 0;
    while (sent < (100u << 20) && !closed) {
        ssize_t w = send(fd, junk, chunk, MSG_NOSIGNAL);
        if (w > 0) sent += (size_t)w;
        else if (w < 0 && errno == EAGAIN) {
            struct pollfd p = {fd, POLLOUT, 0};
            poll(&p, 1, 1000);
            if (p.revents & (POLLHUP | POLLERR)) closed = 1;
        } else
            closed = 1;
    }
    free(junk);
    close(fd);
    CHECK(closed, "vivd kept reading a %zu-byte line", sent);
    int fd2 = try_connect(d.sock);
    char *resp = raw_roundtrip(fd2, "{\"id\":1,\"op\":\"ping\"}\n", 21);
    CHECK(resp && strstr(resp, "pong"), "daemon not serving after a huge line");
    close(fd2);
    long kb = rss_kb(d.pid);
    CHECK(kb > 0 && kb < 200 * 1024, "daemon RSS %ld kB after the huge line", kb);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_idle_client_dropped(void) {
    START(d, "--idle-ms", "300", NULL);
    int fd = try_connect(d.sock);
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, 3000);
    char b;
    CHECK(r == 1 && read(fd, &b, 1) == 0, "an idle connection was not closed");
    close(fd);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static int host_has(const char *marker) {
    DIR *dir = opendir("/proc");
    struct dirent *e;
    int found = 0;
    while (dir && (e = readdir(dir))) {
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        for (ssize_t i = 0; i < n; i++)
            if (!buf[i]) buf[i] = ' ';
        if (n > 0 && (buf[n] = 0, strstr(buf, marker)) && strncmp(buf, "sleep", 5) == 0) found = 1;
    }
    if (dir) closedir(dir);
    return found;
}

static void test_disconnect_kills_job(void) {
    START(d, NULL);
    int base_fds = count_fds(d.pid);
    char marker[32], code[96];
    snprintf(marker, sizeof marker, "%d.75", 400000 + (int)getpid() % 100000);
    snprintf(code, sizeof code, "( setsid sleep %s & ); sleep %s", marker, marker);
    CONNECT(c, d);
    viv_submit_exec(c, "shell", code, strlen(code), 30000);
    viv_next(c, 100); /* send it */
    int started = 0;
    for (int i = 0; i < 300 && !started; i++) usleep(10000), started = host_has(marker);
    viv_close(c);
    int alive = 1;
    for (int i = 0; i < 300 && alive; i++) usleep(10000), alive = host_has(marker);
    usleep(200000);
    int fds = count_fds(d.pid);
    CHECK(started, "the job never started");
    CHECK(!alive, "the job outlived its client's disconnect");
    CHECK(fds == base_fds, "daemon fds %d, %d before", fds, base_fds);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_busy_when_full(void) {
    START(d, "--workers", "1", "--queue", "1", NULL);
    CONNECT(c, d);
    long a = viv_submit_exec(c, "shell", "sleep 1", 7, 5000);
    long b = viv_submit_exec(c, "shell", "sleep 1", 7, 5000);
    long x = viv_submit_exec(c, "shell", "echo third", 10, 5000);
    struct viv_response *r = viv_wait(c, x, 900);
    CHECK(r, "the third request was not answered at once");
    CHECK(jerr_code(r->json) && strcmp(jerr_code(r->json), "busy") == 0, "expected busy");
    viv_response_free(r);
    r = viv_wait(c, a, 10000);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")), "first job");
    viv_response_free(r);
    r = viv_wait(c, b, 10000);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")), "queued job");
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* Write DIR/NAME.json: built-in policy BASE renamed, with the given limits
 * (0 = keep). Returns 0 and the path, or -1. */
static int write_policy_variant(const char *dir, const char *base, const char *name, long timeout_ms,
                                long timeout_ms_max, long session_ms_max, char *path, size_t pathlen) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "bin/viv policy check %s", base);
    FILE *in = popen(cmd, "r");
    if (!in) return -1;
    static char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, in);
    pclose(in);
    text[n] = 0;
    cJSON *p = cJSON_Parse(text);
    if (!p) return -1;
    cJSON_DeleteItemFromObject(p, "origin");
    cJSON_DeleteItemFromObject(p, "always_enforced");
    cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(p, "mounts")) cJSON_DeleteItemFromObject(m, "mode");
    cJSON_ReplaceItemInObject(p, "name", cJSON_CreateString(name));
    cJSON *lim = cJSON_GetObjectItem(p, "limits");
    if (timeout_ms) cJSON_ReplaceItemInObject(lim, "timeout_ms", cJSON_CreateNumber((double)timeout_ms));
    if (timeout_ms_max) cJSON_ReplaceItemInObject(lim, "timeout_ms_max", cJSON_CreateNumber((double)timeout_ms_max));
    if (session_ms_max) cJSON_ReplaceItemInObject(lim, "session_ms_max", cJSON_CreateNumber((double)session_ms_max));
    char *pt = cJSON_Print(p);
    cJSON_Delete(p);
    snprintf(path, pathlen, "%s/%s.json", dir, name);
    FILE *f = fopen(path, "w");
    if (f) fputs(pt, f), fclose(f);
    free(pt);
    return f ? 0 : -1;
}

static void test_deadline_capped_by_policy(void) {
    char dir[] = "/tmp/vivd-pol-XXXXXX", path[128];
    CHECK(mkdtemp(dir), "mkdtemp");
    CHECK(write_policy_variant(dir, "shell", "quick", 500, 800, 0, path, sizeof path) == 0, "policy variant");
    START(d, "--policies", dir, NULL);
    CONNECT(c, d);
    double t0 = now_ms();
    long h = viv_submit_exec(c, "quick", "sleep 5", 7, 60000);
    struct viv_response *r = viv_wait(c, h, 10000);
    double took = now_ms() - t0;
    unlink(path);
    rmdir(dir);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "timed_out")), "not timed out");
    CHECK(took < 2500, "a 60 s request ran %.0f ms under a policy maximum of 800 ms", took);
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_sigterm_drains(void) {
    START(d, "--workers", "1", "--grace-ms", "5000", NULL);
    CONNECT(c, d);
    long a = viv_submit_exec(c, "shell", "sleep 0.5; echo finished", 24, 5000);
    long b = viv_submit_exec(c, "shell", "echo queued", 11, 5000);
    viv_next(c, 200);
    kill(d.pid, SIGTERM);
    struct viv_response *ra = viv_wait(c, a, 10000), *rb = viv_wait(c, b, 10000);
    CHECK(ra && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(ra->json, "stdout")) ?: "", "finished\n") == 0,
          "the running job was not allowed to finish");
    CHECK(rb && jerr_code(rb->json) && strcmp(jerr_code(rb->json), "shutting_down") == 0, "queued request not answered");
    viv_response_free(ra), viv_response_free(rb);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status after SIGTERM");
}

static void test_log_has_no_code_or_output(void) {
    START(d, NULL);
    CONNECT(c, d);
    long h = viv_submit_exec(c, "shell", "echo SECRET-OUTPUT # SECRET-CODE", 32, 5000);
    viv_response_free(viv_wait(c, h, 10000));
    viv_close(c);
    char err[128];
    size_t n;
    char *log = read_file(d.log, 1 << 20, &n, err, sizeof err);
    int code_in_log = log && strstr(log, "SECRET"), has_line = log && strstr(log, "\"op\":\"exec\"") && strstr(log, "\"peer\":\"uid:");
    free(log);
    CHECK(daemon_stop(&d) == 0, "exit status");
    CHECK(has_line, "no request line in the log");
    CHECK(!code_in_log, "code or output written to the log");
}

static void test_tcp_needs_token(void) {

    const char *argv_no_token[] = {"--tcp", "127.0.0.1:0", NULL};

    /* without --token-file vivd refuses to start */
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        execl(vivd_bin, vivd_bin, "--socket", "/tmp/vivd-notoken.sock", argv_no_token[0], argv_no_token[1], (char *)NULL);
        _exit(99);
    }
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2, "vivd --tcp without a token file: status %d", st);
    char tok[] = "/tmp/vivd-token-XXXXXX";
    int tfd = mkstemp(tok);
    CHECK(write(tfd, "0123456789abcdef-secret\n", 24) == 24, "token file");
    close(tfd);
    /* a free port: bind port 0, read what the kernel chose, release it */
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof sa;
    CHECK(bind(probe, (struct sockaddr *)&sa, sizeof sa) == 0 && getsockname(probe, (struct sockaddr *)&sa, &slen) == 0, "probe port");
    close(probe);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    START(d, "--tcp", addr, "--token-file", tok, NULL);
    char err[256];
    struct viv_client *wrong = viv_connect_tcp(addr, "0123456789abcdef-wrong!", err, sizeof err);
    struct viv_client *right = viv_connect_tcp(addr, "0123456789abcdef-secret", err, sizeof err);
    unlink(tok);
    CHECK(!wrong, "a wrong token was accepted");
    CHECK(right, "the right token was refused: %s", err);
    long h = viv_submit_op(right, "ping");
    struct viv_response *r = viv_wait(right, h, 5000);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "pong")), "ping over TCP");
    viv_response_free(r);
    viv_close(right);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_load_8_clients_10000_requests(void) {
    /* 10,000 requests over 8 concurrent connections (1,000 of them jobs,
     * the rest ping/stats/policies): every answer arrives, and the daemon's
     * fd count and RSS are the same before and after. */
    START(d, "--queue", "2000", NULL);
    {
        CONNECT(warm, d); /* warm up allocations once */
        for (int i = 0; i < 50; i++) viv_submit_exec(warm, "shell", "true", 4, 5000);
        struct viv_response *r;
        while ((r = viv_next(warm, 20000))) viv_response_free(r);
        viv_close(warm);
    }
    usleep(200000);
    int fds0 = count_fds(d.pid);
    long rss0 = rss_kb(d.pid);
    int answered = 0, failed = 0;
    pid_t kids[8];
    int pipes[8][2];
    for (int k = 0; k < 8; k++) {
        if (pipe(pipes[k])) abort();
        kids[k] = fork();
        if (kids[k] == 0) {
            char err[256];
            struct viv_client *c = viv_connect(d.sock, err, sizeof err);
            int ok = 0, bad = 0;
            for (int i = 0; c && i < 1250; i++) {
                if (i % 10 == 0) viv_submit_exec(c, "shell", "echo x", 6, 10000);
                else viv_submit_op(c, i % 3 == 0 ? "stats" : i % 3 == 1 ? "ping" : "policies");
                if (viv_pending(c) > 64) {
                    struct viv_response *r = viv_next(c, 30000);
                    if (r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok"))) ok++;
                    else if (bad++ == 0) {
                        if (!r) fprintf(stderr, "first failure: no answer in 30 s\n");
                        else {
                        char *t = cJSON_PrintUnformatted(r->json);
                        fprintf(stderr, "first failure: %.300s\n", t);
                        free(t);
                        }
                    }
                    viv_response_free(r);
                }
            }
            struct viv_response *r;
            while (c && (r = viv_next(c, 30000))) {
                if (cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok"))) ok++;
                else if (bad++ == 0) {
                    char *t = cJSON_PrintUnformatted(r->json);
                    fprintf(stderr, "first failure: %.300s\n", t);
                    free(t);
                }
                viv_response_free(r);
            }
            if (ok + bad != 1250) fprintf(stderr, "lost %d answers\n", 1250 - ok - bad), bad += 1250 - ok - bad;
            viv_close(c);
            int res[2] = {ok, bad};
            if (write(pipes[k][1], res, sizeof res) != sizeof res) _exit(1);
            _exit(0);
        }
        close(pipes[k][1]);
    }
    for (int k = 0; k < 8; k++) {
        int res[2] = {0, 1250};
        if (read(pipes[k][0], res, sizeof res) != sizeof res) res[0] = 0, res[1] = 1250;
        close(pipes[k][0]);
        waitpid(kids[k], NULL, 0);
        answered += res[0];
        failed += res[1];
    }
    usleep(300000);
    int fds1 = count_fds(d.pid);
    long rss1 = rss_kb(d.pid);
    CHECK(daemon_stop(&d) == 0, "exit status");
    CHECK(answered == 10000 && failed == 0, "%d answered ok, %d failed", answered, failed);
    CHECK(fds1 == fds0, "daemon fds %d after, %d before", fds1, fds0);
    CHECK(rss1 < rss0 + 4096, "daemon RSS grew from %ld to %ld kB", rss0, rss1);
}

/* ------------------------------------------------------------------ sessions */

/* Open a session on c; its id goes to sid. 0 on success, else -1 with why. */
static int session_open_on(struct viv_client *c, char *sid, size_t n, char *why, size_t whylen) {
    long h = viv_submit_session_open(c, "python");
    struct viv_response *r = viv_wait(c, h, 30000);
    const char *s = r ? cJSON_GetStringValue(cJSON_GetObjectItem(r->json, "session")) : NULL;
    int rc = s && strncmp(s, "s-", 2) == 0 && strlen(s) < n ? 0 : -1;
    if (rc == 0) snprintf(sid, n, "%s", s);
    char *t = r ? cJSON_PrintUnformatted(r->json) : NULL;
    snprintf(why, whylen, "session_open: %.300s", t ? t : "(no answer)");
    free(t);
    viv_response_free(r);
    return rc;
}

/* Run code in a session and wait for the answer (caller frees). */
static struct viv_response *session_run(struct viv_client *c, const char *sid, const char *code, long timeout_ms) {
    long h = viv_submit_session_exec(c, sid, code, strlen(code), timeout_ms);
    return viv_wait(c, h, (int)(timeout_ms > 0 ? timeout_ms : 10000) + 20000);
}

static const char *jstr(const struct viv_response *r, const char *key) {
    const char *s = r ? cJSON_GetStringValue(cJSON_GetObjectItem(r->json, key)) : NULL;
    return s ? s : "(none)";
}

static bool jtrue(const struct viv_response *r, const char *key) {
    return r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, key));
}

static const char *rerr(const struct viv_response *r) {
    const char *e = r ? jerr_code(r->json) : NULL;
    return e ? e : "(none)";
}

static long stats_sessions(struct viv_client *c) {
    long h = viv_submit_op(c, "stats");
    struct viv_response *r = viv_wait(c, h, 5000);
    cJSON *n = r ? cJSON_GetObjectItem(r->json, "sessions") : NULL;
    long v = cJSON_IsNumber(n) ? (long)n->valuedouble : -1;
    viv_response_free(r);
    return v;
}

#define SESSION(c, sid)                                                                    \
    char sid[64], _swhy[400];                                                               \
    CHECK(session_open_on(c, sid, sizeof sid, _swhy, sizeof _swhy) == 0, "%s", _swhy)

static void test_session_state_and_per_call_output(void) {
    START(d, NULL);
    CONNECT(c, d);
    SESSION(c, sid);
    struct viv_response *r = session_run(c, sid, "x = 3\nprint('one')", 5000);
    CHECK(jtrue(r, "ok") && strcmp(jstr(r, "stdout"), "one\n") == 0, "first call: stdout %s", jstr(r, "stdout"));
    CHECK(!jtrue(r, "session_lost"), "first call lost the session");
    viv_response_free(r);
    r = session_run(c, sid, "print(x * 2)", 5000);
    CHECK(strcmp(jstr(r, "stdout"), "6\n") == 0, "globals did not persist (or output not per call): %s", jstr(r, "stdout"));
    viv_response_free(r);
    r = session_run(c, sid, "import os\nprint('py', flush=True)\nos.system('echo from-child; echo to-err >&2')", 5000);
    CHECK(strcmp(jstr(r, "stdout"), "py\nfrom-child\n") == 0, "child output: %s", jstr(r, "stdout"));
    CHECK(strcmp(jstr(r, "stderr"), "to-err\n") == 0, "child stderr: %s", jstr(r, "stderr"));
    viv_response_free(r);
    r = session_run(c, sid, "raise KeyError('nope')", 5000);
    CHECK(cJSON_GetObjectItem(r->json, "exit_code")->valueint == 1 && strstr(jstr(r, "stderr"), "KeyError"),
          "exception: exit %d stderr %s", cJSON_GetObjectItem(r->json, "exit_code")->valueint, jstr(r, "stderr"));
    viv_response_free(r);
    r = session_run(c, sid, "import sys\nprint(x)\nsys.exit(4)", 5000);
    CHECK(cJSON_GetObjectItem(r->json, "exit_code")->valueint == 4 && strcmp(jstr(r, "stdout"), "3\n") == 0,
          "SystemExit(4) or state after an exception: %s", jstr(r, "stdout"));
    viv_response_free(r);
    r = session_run(c, sid, "print('y' * 2000000)", 5000);
    cJSON *drop = r ? cJSON_GetObjectItem(r->json, "stdout_dropped") : NULL;
    CHECK(cJSON_IsNumber(drop) && drop->valuedouble == 2000001 - 1048576 && strlen(jstr(r, "stdout")) == 1048576,
          "output cap: dropped %g", cJSON_IsNumber(drop) ? drop->valuedouble : -1);
    viv_response_free(r);
    CHECK(stats_sessions(c) == 1, "stats does not count the open session");
    long h = viv_submit_session_close(c, sid);
    r = viv_wait(c, h, 5000);
    CHECK(jtrue(r, "ok"), "session_close: %s", rerr(r));
    viv_response_free(r);
    r = session_run(c, sid, "print(x)", 5000);
    CHECK(strcmp(rerr(r), "not_found") == 0, "exec after close: %s", rerr(r));
    viv_response_free(r);
    CHECK(stats_sessions(c) == 0, "closed session still counted");
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* Is a live host process named `comm` (its /proc/PID/comm)? */
static int host_has_comm(const char *comm) {
    DIR *dir = opendir("/proc");
    struct dirent *e;
    int found = 0;
    while (dir && (e = readdir(dir))) {
        char path[300], buf[64] = "";
        snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(buf, sizeof buf, f)) buf[strcspn(buf, "\n")] = 0;
        fclose(f);
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        char st[512] = "";
        f = fopen(path, "r");
        if (f) {
            if (!fgets(st, sizeof st, f)) st[0] = 0;
            fclose(f);
        }
        const char *rp = strrchr(st, ')');
        if (strcmp(buf, comm) == 0 && rp && rp[2] != 'Z') found = 1;
    }
    if (dir) closedir(dir);
    return found;
}

/* Marks the session's own interpreter (the process that keeps its
 * globals between calls) by naming it `marker`: it lives exactly as long as
 * the session. (Processes a call starts end with the call.) */
static void session_marker(char *marker, size_t n, char *code, size_t codelen, int k) {
    snprintf(marker, n, "viv%d.%d", (int)getpid() % 100000, k);
    snprintf(code, codelen, "import ctypes\nctypes.CDLL(None).prctl(15, b'%s', 0, 0, 0)", marker);
}

static int wait_present(const char *marker) {
    for (int i = 0; i < 500; i++) {
        if (host_has_comm(marker)) return 1;
        usleep(10000);
    }
    return 0;
}

static int wait_gone(const char *marker) {
    for (int i = 0; i < 500; i++) {
        if (!host_has_comm(marker)) return 1;
        usleep(10000);
    }
    return 0;
}

static void test_session_overrun_kills_session(void) {
    START(d, NULL);
    CONNECT(c, d);
    SESSION(c, sid);
    char marker[32], code[160];
    session_marker(marker, sizeof marker, code, sizeof code, 1);
    struct viv_response *r = session_run(c, sid, code, 5000);
    CHECK(jtrue(r, "ok"), "start the marker: %s", rerr(r));
    viv_response_free(r);
    CHECK(wait_present(marker), "the session's interpreter is not running");
    double t0 = now_ms();
    r = session_run(c, sid, "while True: pass", 500);
    double took = now_ms() - t0;
    CHECK(jtrue(r, "timed_out") && jtrue(r, "session_lost"), "overrun: timed_out %d session_lost %d (%s)",
          jtrue(r, "timed_out"), jtrue(r, "session_lost"), rerr(r));
    CHECK(took < 3000, "a 500 ms call took %.0f ms", took);
    viv_response_free(r);
    r = session_run(c, sid, "print(1)", 5000);
    CHECK(strcmp(rerr(r), "session_lost") == 0, "a call to the lost session: %s", rerr(r));
    viv_response_free(r);
    CHECK(wait_gone(marker), "a process of the lost session outlived it");
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_session_idle_expiry(void) {
    START(d, "--session-idle-ms", "300", NULL);
    CONNECT(c, d);
    SESSION(c, sid);
    char marker[32], code[160];
    session_marker(marker, sizeof marker, code, sizeof code, 2);
    struct viv_response *r = session_run(c, sid, code, 5000);
    CHECK(jtrue(r, "ok"), "first call: %s", rerr(r));
    viv_response_free(r);
    usleep(1000000);
    r = session_run(c, sid, "print(p)", 5000);
    CHECK(strcmp(rerr(r), "session_lost") == 0 && strstr(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "message")) ?: "", "expired"),
          "an idle session did not expire, or the answer does not say so: %s", rerr(r));
    viv_response_free(r);
    CHECK(wait_gone(marker), "an expired session's process lives on");
    CHECK(stats_sessions(c) == 0, "expired session still counted");
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_session_cap_per_peer(void) {
    START(d, "--max-sessions-per-peer", "2", NULL);
    CONNECT(c, d);
    char err[256];
    struct viv_client *c2 = viv_connect(d.sock, err, sizeof err);
    CHECK(c2, "%s", err);
    SESSION(c, s1);
    char s2[64], why[400];
    CHECK(session_open_on(c2, s2, sizeof s2, why, sizeof why) == 0, "%s", why);
    long h = viv_submit_session_open(c, "python");
    struct viv_response *r = viv_wait(c, h, 10000);
    CHECK(strcmp(rerr(r), "busy") == 0, "a third session for the same uid: %s", rerr(r));
    CHECK(strstr(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "message")), "max-sessions-per-peer"),
          "the busy message does not say why");
    viv_response_free(r);
    h = viv_submit_session_close(c2, s2);
    viv_response_free(viv_wait(c2, h, 5000));
    char s3[64];
    CHECK(session_open_on(c, s3, sizeof s3, why, sizeof why) == 0, "after a close: %s", why);
    viv_close(c2);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_session_private_to_connection(void) {
    START(d, NULL);
    CONNECT(c, d);
    char err[256];
    struct viv_client *other = viv_connect(d.sock, err, sizeof err);
    CHECK(other, "%s", err);
    SESSION(c, sid);
    struct viv_response *r = session_run(c, sid, "secret = 42", 5000);
    viv_response_free(r);
    r = session_run(other, sid, "print(secret)", 5000);
    CHECK(strcmp(rerr(r), "not_found") == 0, "another connection used the session: %s", rerr(r));
    viv_response_free(r);
    long h = viv_submit_session_close(other, sid);
    r = viv_wait(other, h, 5000);
    CHECK(strcmp(rerr(r), "not_found") == 0, "another connection closed the session: %s", rerr(r));
    viv_response_free(r);
    r = session_run(c, sid, "print(secret)", 5000);
    CHECK(strcmp(jstr(r, "stdout"), "42\n") == 0, "the owner lost its session: %s", jstr(r, "stdout"));
    viv_response_free(r);
    viv_close(other);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_session_lifetime_is_session_ms_max(void) {
    /* A session outlives the per-call maximum (timeout_ms_max) but not the
     * policy's session_ms_max. */
    char dir[] = "/tmp/vivd-pol-XXXXXX", path[128];
    CHECK(mkdtemp(dir), "mkdtemp");
    CHECK(write_policy_variant(dir, "python", "python", 500, 800, 2500, path, sizeof path) == 0, "policy variant");
    START(d, "--policies", dir, NULL);
    CONNECT(c, d);
    char sid[64], why[400];
    CHECK(session_open_on(c, sid, sizeof sid, why, sizeof why) == 0, "%s", why);
    double t0 = now_ms();
    struct viv_response *r = session_run(c, sid, "x = 41", 500);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")), "first call failed");
    viv_response_free(r);
    usleep(1200 * 1000); /* past timeout_ms_max */
    r = session_run(c, sid, "print(x + 1)", 500);
    CHECK(strcmp(jstr(r, "stdout"), "42\n") == 0, "the session died at timeout_ms_max: %s", jstr(r, "stdout"));
    viv_response_free(r);
    while (now_ms() - t0 < 3500) usleep(100 * 1000); /* past session_ms_max */
    r = session_run(c, sid, "print(x)", 500);
    int ended = r && !cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok"));
    viv_response_free(r);
    unlink(path);
    rmdir(dir);
    CHECK(ended, "the session outlived session_ms_max");
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_session_dies_with_connection(void) {
    START(d, NULL);
    int base_fds = count_fds(d.pid);
    char marker[32], code[160];
    session_marker(marker, sizeof marker, code, sizeof code, 3);
    {
        CONNECT(c, d);
        SESSION(c, sid);
        struct viv_response *r = session_run(c, sid, code, 5000);
        CHECK(jtrue(r, "ok"), "start the marker: %s", rerr(r));
        viv_response_free(r);
        CHECK(wait_present(marker), "the session's interpreter is not running");
        viv_close(c);
    }
    CHECK(wait_gone(marker), "the session outlived its connection");
    usleep(200000);
    CONNECT(c2, d);
    long counted = -1;
    for (int i = 0; i < 100 && (counted = stats_sessions(c2)) != 0; i++) usleep(20000);
    CHECK(counted == 0, "the session is still counted 2 s after its connection closed");
    viv_close(c2);
    usleep(100000);
    CHECK(count_fds(d.pid) == base_fds, "daemon fds %d, %d before", count_fds(d.pid), base_fds);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_sigterm_with_open_session(void) {
    /* vivd stops promptly with a session open (idle ones close at once) and
     * takes the session's processes with it. */
    START(d, "--grace-ms", "3000", NULL);
    char marker[32], code[160];
    session_marker(marker, sizeof marker, code, sizeof code, 7);
    CONNECT(c, d);
    SESSION(c, sid);
    struct viv_response *r = session_run(c, sid, code, 5000);
    CHECK(jtrue(r, "ok"), "start the marker: %s", rerr(r));
    viv_response_free(r);
    CHECK(wait_present(marker), "the session's interpreter is not running");
    double t0 = now_ms();
    int status = daemon_stop(&d);
    double took = now_ms() - t0;
    int gone = wait_gone(marker);
    viv_close(c);
    CHECK(status == 0, "vivd exit status %d after SIGTERM with a session open", status);
    CHECK(took < 2500, "stopping took %.0f ms with an idle session", took);
    CHECK(gone, "the session's process outlived vivd");
}

static void test_session_rules(void) {
    START(d, NULL);
    CONNECT(c, d);
    long h1 = viv_submit_session_open(c, "shell"), h2 = viv_submit_session_open(c, "sql");
    struct viv_response *r1 = viv_wait(c, h1, 5000), *r2 = viv_wait(c, h2, 5000);
    CHECK(strcmp(rerr(r1), "bad_request") == 0 && strcmp(rerr(r2), "bad_request") == 0,
          "non-Python tools: %s, %s", rerr(r1), rerr(r2));
    viv_response_free(r1), viv_response_free(r2);
    SESSION(c, sid);
    /* one call at a time: a second concurrent call is refused, the first is unharmed */
    const char *slow = "import time; time.sleep(0.5); print('a')", *quick = "print('b')";
    long a = viv_submit_session_exec(c, sid, slow, strlen(slow), 5000);
    long b = viv_submit_session_exec(c, sid, quick, strlen(quick), 5000);
    struct viv_response *rb = viv_wait(c, b, 5000), *ra = viv_wait(c, a, 5000);
    CHECK(strcmp(rerr(rb), "busy") == 0, "concurrent call: %s", rerr(rb));
    CHECK(strcmp(jstr(ra, "stdout"), "a\n") == 0, "the running call: %s", jstr(ra, "stdout"));
    viv_response_free(ra), viv_response_free(rb);
    struct viv_response *r = session_run(c, "s-00000000000000000000000000000000", "1", 5000);
    CHECK(strcmp(rerr(r), "not_found") == 0, "unknown session: %s", rerr(r));
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* ------------------------------------------------------------------ zygotes */

static struct viv_response *exec_python(struct viv_client *c, const char *code, long timeout_ms) {
    return viv_wait(c, viv_submit_exec(c, "python", code, strlen(code), timeout_ms), timeout_ms + 10000);
}

static long jint(const struct viv_response *r, const char *key) {
    cJSON *v = r ? cJSON_GetObjectItem(r->json, key) : NULL;
    return cJSON_IsNumber(v) ? (long)v->valuedouble : -999;
}

/* ------------------------------------------------ warm jobs hold nothing of ours */

/* The response as one line, for failure messages (static buffer). */
static const char *rtext(const struct viv_response *r) {
    static char buf[1500];
    char *t = r ? cJSON_PrintUnformatted(r->json) : NULL;
    snprintf(buf, sizeof buf, "%s", t ? t : "no answer");
    free(t);
    return buf;
}

/* Python run as a warm job: the fds it holds,
 * then bytes of every hostile kind written to every fd from 3 up and to the
 * fds of every other process it can find: long lines, NaN, overflowing and
 * negative numbers, early and repeated status-like lines, binary. */
static const char HOSTILE_FDS[] =
    "import os\n"
    "def is_open(fd):\n"
    "    try: os.fstat(fd); return True\n"
    "    except OSError: return False\n"
    "print('fds', [fd for fd in range(4096) if is_open(fd)])\n"
    "junk = [b'S 1\\n', b'D nan 1e999 -5\\n', b'D 0 0 0\\n' * 50, b'ready\\n', b'S 99999999999999999999999\\n',\n"
    "        b'0 0 0 99999999999 0 0 0 0.0 0\\n', b'-1 -1 -1 -1 -1 -1 -1 nan -1\\n', b'\\xff\\x00' * 4096, b'9' * (1 << 20)]\n"
    "wrote = 0\n"
    "for fd in range(3, 1024):\n"
    "    for j in junk:\n"
    "        try: os.write(fd, j); wrote += 1\n"
    "        except OSError: pass\n"
    "reached = []\n"
    "for p in os.listdir('/proc'):\n"
    "    if not p.isdigit() or int(p) == os.getpid(): continue\n"
    "    try: fds = os.listdir('/proc/%s/fd' % p)\n"
    "    except OSError: continue\n"
    "    reached.append(p)\n"
    "    for f in fds:\n"
    "        try:\n"
    "            w = os.open('/proc/%s/fd/%s' % (p, f), os.O_WRONLY | os.O_NONBLOCK)\n"
    "            for j in junk: os.write(w, j)\n"
    "        except OSError: pass\n"
    "print('wrote', wrote, 'reached', reached)\n";

static void test_zygote_job_holds_only_std_fds_and_cannot_hurt_its_zygote(void) {
    START(d, NULL);
    CONNECT(c, d);
    for (int i = 0; i < 3; i++) {
        struct viv_response *r = exec_python(c, HOSTILE_FDS, 20000);
        CHECK(jtrue(r, "zygote"), "hostile job %d did not run on a zygote: %s", i, rtext(r));
        CHECK(strcmp(jstr(r, "stdout"), "fds [0, 1, 2]\nwrote 0 reached []\n") == 0, "hostile job %d saw: %s %s", i,
              jstr(r, "stdout"), jstr(r, "stderr"));
        viv_response_free(r);
    }
    struct viv_response *r = exec_python(c, "print(6 * 7)", 10000);
    CHECK(jtrue(r, "zygote") && strcmp(jstr(r, "stdout"), "42\n") == 0, "after the hostile jobs: %s", rtext(r));
    viv_response_free(r);
    struct zygote_counts z = zygote_counts(d.sock);
    CHECK(z.lost == 0 && z.started == 1, "hostile jobs cost zygotes: started %d, lost %d", z.started, z.lost);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_session_code_holds_only_std_fds_and_cannot_reach_its_keeper(void) {
    START(d, NULL);
    CONNECT(c, d);
    SESSION(c, sid);
    struct viv_response *r = session_run(c, sid, "x = 41", 5000);
    CHECK(jtrue(r, "ok"), "first call: %s", rerr(r));
    viv_response_free(r);
    for (int i = 0; i < 3; i++) {
        r = session_run(c, sid, HOSTILE_FDS, 20000);
        CHECK(r && !jtrue(r, "session_lost") && strcmp(jstr(r, "stdout"), "fds [0, 1, 2]\nwrote 0 reached []\n") == 0,
              "hostile call %d: %s", i, rtext(r));
        viv_response_free(r);
    }
    r = session_run(c, sid, "print(x + 1)", 5000);
    CHECK(r && strcmp(jstr(r, "stdout"), "42\n") == 0 && !strstr(jstr(r, "stderr"), "Traceback"),
          "the session after hostile calls: %s", rtext(r));
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* A call's processes end with the call: a setsid'd sleeper and a spinner
 * started in the background are gone once the call is answered, and the
 * next call finds only the session's own processes. */
static void test_session_call_leaves_nothing_running(void) {
    START(d, NULL);
    CONNECT(c, d);
    SESSION(c, sid);
    char marker[32], code[512];
    snprintf(marker, sizeof marker, "%d.45", 700000 + (int)getpid() % 100000);
    snprintf(code, sizeof code,
             "import subprocess, os\n"
             "subprocess.Popen(['sleep', '%s'], start_new_session=True)\n"
             "subprocess.Popen(['sh', '-c', 'while :; do :; done'], start_new_session=True)\n"
             "n0 = len([p for p in os.listdir('/proc') if p.isdigit()])\n"
             "print('started', n0)\n", marker);
    struct viv_response *r = session_run(c, sid, code, 5000);
    int n0 = -1;
    CHECK(r && sscanf(jstr(r, "stdout"), "started %d", &n0) == 1, "the call: %s", rtext(r));
    viv_response_free(r);
    int alive = 1;
    for (int i = 0; i < 100 && alive; i++) alive = host_has(marker), usleep(alive ? 10000 : 0);
    CHECK(!alive, "a process the call started outlived the call");
    r = session_run(c, sid,
                    "import os\n"
                    "live = []\n"
                    "for p in os.listdir('/proc'):\n"
                    "    if p.isdigit():\n"
                    "        st = open('/proc/%s/stat' % p).read().rsplit(')', 1)[1].split()[0]\n"
                    "        if st != 'Z': live.append(p)\n"
                    "print(len(live))\n",
                    5000);
    int n1 = -1;
    CHECK(r && sscanf(jstr(r, "stdout"), "%d", &n1) == 1 && n1 == n0 - 2, "live processes: %d during the first call, %d after (%s)",
          n0, n1, rtext(r));
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_zygote_runs_warm_jobs_like_cold_ones(void) {
    START(d, NULL);
    CONNECT(c, d);
    struct viv_response *r = exec_python(c, "import pandas as pd\nprint(pd.DataFrame({'a':[1,2]})['a'].sum())", 10000);
    CHECK(jtrue(r, "zygote"), "the job did not run on a zygote: %s", r ? "no zygote field" : "no answer");
    CHECK(strcmp(jstr(r, "stdout"), "3\n") == 0, "stdout %s", jstr(r, "stdout"));
    viv_response_free(r);
    /* exit statuses, signals, tracebacks and the output cap as a cold job has them */
    r = exec_python(c, "import sys; print('out'); sys.exit(7)", 10000);
    CHECK(jint(r, "exit_code") == 7 && strcmp(jstr(r, "stdout"), "out\n") == 0, "sys.exit(7): %ld", jint(r, "exit_code"));
    viv_response_free(r);
    r = exec_python(c, "import os; os._exit(5)", 10000);
    CHECK(jint(r, "exit_code") == 5, "os._exit(5): %ld", jint(r, "exit_code"));
    viv_response_free(r);
    r = exec_python(c, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", 10000);
    CHECK(jint(r, "signal") == SIGSEGV, "killed by SIGSEGV: signal %ld", jint(r, "signal"));
    viv_response_free(r);
    r = exec_python(c, "def f():\n    raise ValueError('boom')\nf()\n", 10000);
    CHECK(jint(r, "exit_code") == 1 && strstr(jstr(r, "stderr"), "File \"/work/main.py\", line 3") &&
              strstr(jstr(r, "stderr"), "ValueError: boom") && !strstr(jstr(r, "stderr"), "zygote"),
          "traceback: %s", jstr(r, "stderr"));
    viv_response_free(r);
    r = exec_python(c, "import sys; sys.stdout.write('x' * 3000000)", 10000);
    CHECK(jint(r, "stdout_dropped") == 3000000 - 1048576 && strlen(jstr(r, "stdout")) == 1048576,
          "output cap: dropped %ld", jint(r, "stdout_dropped"));
    viv_response_free(r);
    /* the deadline kills the request, not the zygote */
    r = exec_python(c, "while True: pass", 300);
    CHECK(jtrue(r, "timed_out") && jtrue(r, "zygote"), "timed_out %d", jtrue(r, "timed_out"));
    CHECK(jint(r, "wall_ms") < 2000, "killed after %ld ms", jint(r, "wall_ms"));
    viv_response_free(r);
    r = exec_python(c, "print('alive')", 10000);
    CHECK(jtrue(r, "zygote") && strcmp(jstr(r, "stdout"), "alive\n") == 0, "after a timeout: %s", jstr(r, "stdout"));
    viv_response_free(r);
    struct zygote_counts z = zygote_counts(d.sock);
    CHECK(z.lost == 0 && z.started == 1, "zygotes started %d, lost %d", z.started, z.lost);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* Request A leaves files, a process, a SysV shared memory segment and a
 * hostname-free trace behind; request B, on the same zygote, must see none
 * of it, and must hold no capability or way to make namespaces. */
static void test_zygote_requests_cannot_see_each_other(void) {
    START(d, NULL);
    CONNECT(c, d);
    char marker[32], code[1024];
    snprintf(marker, sizeof marker, "%d.25", 500000 + (int)getpid() % 100000);
    snprintf(code, sizeof code,
             "import subprocess, ctypes\n"
             "open('/tmp/a-left-this', 'w').write('x'); open('/work/a-left-this', 'w').write('y')\n"
             "subprocess.Popen(['sleep', '%s'], start_new_session=True)\n"
             "libc = ctypes.CDLL(None); print(libc.shmget(0x7a7a, 4096, 0o1666))\n", marker);
    struct viv_response *r = exec_python(c, code, 10000);
    CHECK(jtrue(r, "zygote") && jint(r, "exit_code") == 0 && atoi(jstr(r, "stdout")) >= 0,
          "request A: %s %s", jstr(r, "stdout"), jstr(r, "stderr"));
    viv_response_free(r);
    int alive = 1;
    for (int i = 0; i < 200 && alive; i++) usleep(10000), alive = host_has(marker);
    CHECK(!alive, "request A's background process outlived its answer");
    const char *look =
        "import os, ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(sorted(os.listdir('/tmp')), sorted(os.listdir('/work')))\n"
        "print(sorted(p for p in os.listdir('/proc') if p.isdigit()))\n"
        "print(libc.shmget(0x7a7a, 4096, 0))\n"
        "print(' '.join(l.split()[1] for l in open('/proc/self/status') if l.startswith(('Cap', 'NoNewPrivs', 'Seccomp:'))))\n"
        "print(libc.unshare(0x20000000), libc.unshare(0x10000000), libc.mount(b'none', b'/tmp', b'tmpfs', 0, None),\n"
        "      libc.setns(os.open('/proc/self/ns/pid', 0), 0x20000000))\n";
    r = exec_python(c, look, 10000);
    const char *want =
        "[] ['main.py']\n"
        "['1', '2']\n"
        "-1\n"
        "0000000000000000 0000000000000000 0000000000000000 0000000000000000 0000000000000000 1 2\n"
        "-1 -1 -1 -1\n";
    CHECK(jtrue(r, "zygote") && strcmp(jstr(r, "stdout"), want) == 0, "request B saw:\n%s%s", jstr(r, "stdout"),
          jstr(r, "stderr"));
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* The code of one request must never reach the zygote's memory, or a later
 * request (a copy of the zygote) could read it there. B scans every
 * readable byte of its own address space for A's secret, without ever
 * holding the whole secret itself: it looks for the first half and
 * compares a hash of what follows with the hash of the second half. */
static void test_zygote_request_cannot_read_earlier_code(void) {
    START(d, NULL);
    CONNECT(c, d);
    unsigned char rnd[16];
    CHECK(getrandom(rnd, sizeof rnd, 0) == (ssize_t)sizeof rnd, "getrandom");
    char secret[33], code[512];
    for (int i = 0; i < 16; i++) snprintf(secret + 2 * i, 3, "%02x", rnd[i]);
    snprintf(code, sizeof code, "s = '%s'\nprint(len(s))\n", secret);
    for (int k = 0; k < 3; k++) { /* several times: whatever buffer once held it */
        struct viv_response *r = exec_python(c, code, 10000);
        CHECK(jtrue(r, "zygote") && strcmp(jstr(r, "stdout"), "32\n") == 0, "request A: %s", jstr(r, "stderr"));
        viv_response_free(r);
    }
    char scan[2048], half[17];
    memcpy(half, secret, 16), half[16] = 0;
    /* sha256 of the second half, computed inside the jail of request A would
     * leak nothing; compute it here in B's code from a reversed copy */
    char rev[17];
    for (int i = 0; i < 16; i++) rev[i] = secret[31 - i];
    rev[16] = 0;
    snprintf(scan, sizeof scan,
             "import hashlib, re\n"
             "head = b'%s'\n"
             "tail_hash = hashlib.sha256(b'%s'[::-1]).digest()\n"
             "found = scanned = 0\n"
             "mem = open('/proc/self/mem', 'rb', 0)\n"
             "for line in open('/proc/self/maps'):\n"
             "    addr, perms = line.split()[:2]\n"
             "    if perms[0] != 'r' or '[vvar]' in line or '[vsyscall]' in line: continue\n"
             "    lo, hi = (int(x, 16) for x in addr.split('-'))\n"
             "    try:\n"
             "        mem.seek(lo); data = mem.read(hi - lo)\n"
             "    except OSError: continue\n"
             "    scanned += len(data)\n"
             "    for m in re.finditer(re.escape(head), data):\n"
             "        if hashlib.sha256(data[m.end():m.end() + 16]).digest() == tail_hash: found += 1\n"
             "print(found, scanned > 10_000_000)\n",
             half, rev);
    struct viv_response *r = exec_python(c, scan, 30000);
    CHECK(jtrue(r, "zygote") && strcmp(jstr(r, "stdout"), "0 True\n") == 0, "request B found A's code: %s %s",
          jstr(r, "stdout"), jstr(r, "stderr"));
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* Find the zygote interpreters of a daemon: python3 processes whose
 * cmdline is the policy's and whose ancestry reaches the daemon. */
static int find_zygotes(pid_t daemon, pid_t *out, int max) {
    DIR *dir = opendir("/proc");
    struct dirent *e;
    int n = 0;
    while (dir && (e = readdir(dir)) && n < max) {
        pid_t pid = atoi(e->d_name);
        if (pid <= 0) continue;
        char path[64], buf[256];
        snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
        int fd = open(path, O_RDONLY);
        ssize_t len = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0) close(fd);
        if (len > 0) buf[len] = 0;
        if (len <= 0 || strcmp(buf, "/usr/bin/python3") != 0) continue;
        /* the zygote itself, not the request child it keeps ready (whose parent is the zygote) */
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *sf = fopen(path, "r");
        int parent = 0;
        if (!sf || fscanf(sf, "%*d (%*[^)]) %*c %d", &parent) != 1) parent = 0;
        if (sf) fclose(sf);
        snprintf(path, sizeof path, "/proc/%d/cmdline", parent);
        fd = open(path, O_RDONLY);
        len = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0) close(fd);
        if (len > 0) buf[len] = 0;
        if (len > 0 && strcmp(buf, "/usr/bin/python3") == 0) continue;
        /* walk up the parents */
        for (pid_t p = pid; p > 1;) {
            snprintf(path, sizeof path, "/proc/%d/stat", p);
            FILE *f = fopen(path, "r");
            int pp = 0;
            if (!f || fscanf(f, "%*d (%*[^)]) %*c %d", &pp) != 1) pp = 0;
            if (f) fclose(f);
            if (pp == daemon) {
                out[n++] = pid;
                break;
            }
            p = pp;
        }
    }
    if (dir) closedir(dir);
    return n;
}

static void test_zygote_that_dies_is_replaced(void) {
    START(d, "--zygotes", "2", NULL);
    pid_t z[8];
    int n = find_zygotes(d.pid, z, 8);
    CHECK(n == 2, "found %d zygote interpreters", n);
    for (int i = 0; i < n; i++) kill(z[i], SIGKILL);
    struct zygote_counts zc = {0};
    for (int i = 0; i < 600; i++) {
        zc = zygote_counts(d.sock);
        if (zc.lost == 2 && zc.idle == 2) break;
        usleep(50000);
    }
    CHECK(zc.lost == 2 && zc.idle == 2 && zc.started == 4, "lost %d, idle %d, started %d", zc.lost, zc.idle, zc.started);
    CONNECT(c, d);
    struct viv_response *r = exec_python(c, "print(42)", 10000);
    CHECK(jtrue(r, "zygote") && strcmp(jstr(r, "stdout"), "42\n") == 0, "after the replacement: %s", jstr(r, "stdout"));
    viv_response_free(r);
    viv_close(c);
    char *log = read_file(d.log, 1 << 20, &(size_t){0}, (char[64]){0}, 64);
    CHECK(log && strstr(log, "\"op\":\"zygote_lost\""), "the loss was not logged");
    free(log);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_zygote_job_cancelled_on_disconnect(void) {
    START(d, NULL);
    char marker[32], code[160];
    snprintf(marker, sizeof marker, "%d.5", 600000 + (int)getpid() % 100000);
    snprintf(code, sizeof code, "import subprocess; subprocess.run(['sleep', '%s'])", marker);
    {
        CONNECT(warm, d); /* the first job warms the daemon's allocations */
        viv_response_free(exec_python(warm, "pass", 10000));
        viv_close(warm);
    }
    usleep(200000);
    int base_fds = count_fds(d.pid);
    CONNECT(c, d);
    viv_submit_exec(c, "python", code, strlen(code), 30000);
    viv_next(c, 100);
    int started = 0;
    for (int i = 0; i < 500 && !started; i++) usleep(10000), started = host_has(marker);
    viv_close(c);
    int alive = 1;
    for (int i = 0; i < 300 && alive; i++) usleep(10000), alive = host_has(marker);
    CHECK(started, "the job never started");
    CHECK(!alive, "the job outlived its client's disconnect");
    CHECK(zygotes_settle(d.sock) == 0, "no zygote came back");
    usleep(200000);
    CHECK(count_fds(d.pid) == base_fds, "daemon fds %d, %d before", count_fds(d.pid), base_fds);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* ------------------------------------------------------------------ the front door */

/* A free TCP address on loopback ("127.0.0.1:PORT") and a token file. */
static int tcp_setup(char *addr, size_t addrlen, char *tok_path) {
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof sa;
    int rc = bind(probe, (struct sockaddr *)&sa, sizeof sa) == 0 && getsockname(probe, (struct sockaddr *)&sa, &slen) == 0 ? 0 : -1;
    close(probe);
    snprintf(addr, addrlen, "127.0.0.1:%d", ntohs(sa.sin_port));
    strcpy(tok_path, "/tmp/vivd-token-XXXXXX");
    int tfd = mkstemp(tok_path);
    if (tfd < 0 || write(tfd, "0123456789abcdef-secret\n", 24) != 24) rc = -1;
    if (tfd >= 0) close(tfd);
    return rc;
}

#define GOOD_TOKEN "0123456789abcdef-secret"

/* A TCP connection to addr ("127.0.0.1:PORT") from the loopback address src
 * (127.0.0.0/8 all reach lo: distinct peers on one host). -1 on failure,
 * with errno. */
static int tcp_connect_from(const char *src, const char *addr) {
    struct sockaddr_in from = {.sin_family = AF_INET}, to = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &from.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    to.sin_port = htons((uint16_t)atoi(strrchr(addr, ':') + 1));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&from, sizeof from) != 0 || connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* One "stats" field of the daemon, asked over its Unix socket; -1 if none. */
static int daemon_stat(const struct daemon *d, const char *key) {
    char err[256];
    struct viv_client *c = viv_connect(d->sock, err, sizeof err);
    if (!c) return -1;
    struct viv_response *r = viv_wait(c, viv_submit_op(c, "stats"), 5000);
    const cJSON *v = r ? cJSON_GetObjectItem(r->json, key) : NULL;
    int n = cJSON_IsNumber(v) ? v->valueint : -1;
    viv_response_free(r);
    viv_close(c);
    return n;
}

/* Wait (up to 5 s) until the daemon counts `want` connections waiting to authenticate. */
static bool unauth_settles_at(const struct daemon *d, int want) {
    for (int i = 0; i < 500; i++) {
        if (daemon_stat(d, "unauthenticated") == want) return true;
        usleep(10000);
    }
    return false;
}

static int log_count(const char *path, const char *needle) {
    char err[128];
    size_t n;
    char *log = read_file(path, 16 << 20, &n, err, sizeof err);
    int count = 0;
    for (const char *p = log; p && (p = strstr(p, needle)); p += strlen(needle)) count++;
    free(log);
    return count;
}

/* utime + stime of a process, in clock ticks (/proc/PID/stat fields 14, 15). */
static long cpu_ticks(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return -1;
    return (long)(ut + st);
}

static bool ping_ok(struct viv_client *c) {
    struct viv_response *r = viv_wait(c, viv_submit_op(c, "ping"), 5000);
    bool ok = r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "pong"));
    viv_response_free(r);
    return ok;
}

/* The attack: 40 connections each send '{"token":"' and then 7 MiB without
 * a newline, and stay open. Before authentication vivd takes only a short
 * line: each is refused with a line naming --auth-line-bytes, its RSS
 * stays where it was, and a client that has the token is served. */
static void test_tcp_token_line_is_short(void) {
    char addr[32], tok[32];
    CHECK(tcp_setup(addr, sizeof addr, tok) == 0, "tcp setup");
    START(d, "--tcp", addr, "--token-file", tok, "--zygotes", "0", NULL);
    char err[256];
    struct viv_client *good = viv_connect_tcp(addr, GOOD_TOKEN, err, sizeof err);
    unlink(tok);
    CHECK(good, "the right token was refused: %s", err);
    long rss0 = rss_kb(d.pid);
    enum { NCONN = 40 };
    size_t body = 7u << 20, chunk = 1u << 16;
    char *junk = malloc(chunk);
    memset(junk, 'a', chunk);
    int fds[NCONN], refused = 0;
    size_t most_sent = 0;
    char first_line[512] = "";
    for (int k = 0; k < NCONN; k++) {
        fds[k] = tcp_connect_from("127.0.0.1", addr);
        CHECK(fds[k] >= 0, "connect: %s", strerror(errno));
        CHECK(write_all(fds[k], "{\"token\":\"", 10) == 0, "send");
        fcntl(fds[k], F_SETFL, O_NONBLOCK);
        size_t sent = 0;
        while (sent < body) {
            ssize_t w = send(fds[k], junk, chunk < body - sent ? chunk : body - sent, MSG_NOSIGNAL);
            if (w > 0) {
                sent += (size_t)w;
                continue;
            }
            if (w < 0 && errno != EAGAIN) break; /* vivd closed it */
            struct pollfd p = {fds[k], POLLOUT, 0};
            if (poll(&p, 1, 2000) <= 0 || (p.revents & (POLLHUP | POLLERR))) break;
        }
        if (sent > most_sent) most_sent = sent;
        fcntl(fds[k], F_SETFL, 0);
        char *line = raw_roundtrip(fds[k], NULL, 0);
        if (strstr(line, "\"bad_request\"") && strstr(line, "--auth-line-bytes")) refused++;
        if (k == 0) snprintf(first_line, sizeof first_line, "%s", line);
    }
    free(junk);
    long rss1 = rss_kb(d.pid); /* the attack's connections are all still open on this side */
    bool served = ping_ok(good);
    for (int k = 0; k < NCONN; k++) close(fds[k]);
    viv_close(good);
    int logged = log_count(d.log, "(--auth-line-bytes)");
    CHECK(rss1 - rss0 < 16 * 1024, "vivd RSS grew from %ld to %ld kB under %d unauthenticated 7 MiB lines", rss0, rss1,
          NCONN);
    CHECK(refused == NCONN, "%d of %d over-long token lines refused with a line; the first got: %.200s", refused, NCONN,
          first_line);
    CHECK(served, "the authenticated client's ping went unanswered");
    CHECK(logged == NCONN, "%d refusals in the log, %d expected", logged, NCONN);
    NOTE("RSS %ld -> %ld kB; at most %zu bytes sent before a refusal", rss0, rss1, most_sent);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* A client that trickles its token line a byte at a time (so it is never
 * idle) is still refused once --auth-ms from connecting has passed: the
 * trickle outlasts the deadline five times over. */
static void test_tcp_token_deadline_not_extended_by_trickle(void) {
    char addr[32], tok[32];
    CHECK(tcp_setup(addr, sizeof addr, tok) == 0, "tcp setup");
    START(d, "--tcp", addr, "--token-file", tok, "--zygotes", "0", "--auth-ms", "500", NULL);
    char err[256];
    struct viv_client *good = viv_connect_tcp(addr, GOOD_TOKEN, err, sizeof err);
    unlink(tok);
    CHECK(good, "the right token was refused: %s", err);
    int fd = tcp_connect_from("127.0.0.1", addr);
    CHECK(fd >= 0, "connect: %s", strerror(errno));
    const char *slow = "{\"token\":\"0123456789abcdef-wrong-but-slow-so-never-judged\"}"; /* no newline: never judged */
    int refused_after = -1;
    char got[512] = "";
    for (int i = 0; i < 25 && refused_after < 0; i++) { /* 25 x 100 ms: 5x the deadline */
        if (send(fd, slow + i, 1, MSG_NOSIGNAL) != 1) {
            refused_after = i;
            break;
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) == 1) refused_after = i + 1;
    }
    if (refused_after >= 0) snprintf(got, sizeof got, "%s", raw_roundtrip(fd, NULL, 0));
    close(fd);
    bool served = ping_ok(good);
    viv_close(good);
    int logged = log_count(d.log, "no token line within 500 ms (--auth-ms)");
    CHECK(refused_after >= 0, "a connection trickling its token line was kept 2.5 s past a 500 ms --auth-ms");
    CHECK(strstr(got, "\"unauthorized\"") && strstr(got, "--auth-ms"), "the refusal line: %.200s", got);
    CHECK(served, "the authenticated client's ping went unanswered");
    CHECK(logged == 1, "%d deadline refusals in the log, 1 expected", logged);
    NOTE("refused after %d trickled bytes", refused_after);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* Connections that never authenticate are capped per address and in all:
 * past either cap a new one gets a "busy" line naming the flag and is
 * logged, while an authenticated client is served throughout, and a client
 * with the token gets in once a place is free. */
static void test_tcp_unauthenticated_capped(void) {
    char addr[32], tok[32];
    CHECK(tcp_setup(addr, sizeof addr, tok) == 0, "tcp setup");
    int probe = tcp_connect_from("127.0.0.2", addr); /* is 127.0.0.2 usable here? (nothing listens yet) */
    if (probe < 0 && errno == EADDRNOTAVAIL) {
        unlink(tok);
        SKIP("this host's loopback has no 127.0.0.2: two peer addresses are needed");
    }
    if (probe >= 0) close(probe);
    START(d, "--tcp", addr, "--token-file", tok, "--zygotes", "0", "--max-unauth-per-peer", "2", "--max-unauth", "3",
          NULL);
    char err[256];
    struct viv_client *good = viv_connect_tcp(addr, GOOD_TOKEN, err, sizeof err);
    CHECK(good, "the right token was refused: %s", err);
    int a1 = tcp_connect_from("127.0.0.1", addr), a2 = tcp_connect_from("127.0.0.1", addr);
    CHECK(a1 >= 0 && a2 >= 0 && unauth_settles_at(&d, 2), "two silent connections from 127.0.0.1 were not held");
    int a3 = tcp_connect_from("127.0.0.1", addr);
    char per_peer[512], in_all[512];
    snprintf(per_peer, sizeof per_peer, "%s", a3 >= 0 ? raw_roundtrip(a3, NULL, 0) : "");
    CHECK(strstr(per_peer, "\"busy\"") && strstr(per_peer, "(--max-unauth-per-peer)"), "third from one address got: %.200s",
          per_peer);
    int b1 = tcp_connect_from("127.0.0.2", addr);
    CHECK(b1 >= 0 && unauth_settles_at(&d, 3), "a silent connection from 127.0.0.2 was not held");
    int b2 = tcp_connect_from("127.0.0.2", addr);
    snprintf(in_all, sizeof in_all, "%s", b2 >= 0 ? raw_roundtrip(b2, NULL, 0) : "");
    bool served = ping_ok(good);
    struct viv_client *late = viv_connect_tcp(addr, GOOD_TOKEN, err, sizeof err); /* no place left for it */
    bool late_refused = late == NULL;
    viv_close(late);
    close(a1);
    bool freed = unauth_settles_at(&d, 2);
    struct viv_client *later = viv_connect_tcp(addr, GOOD_TOKEN, err, sizeof err);
    bool later_served = later && ping_ok(later);
    viv_close(later);
    unlink(tok);
    close(a2), close(a3), close(b1), close(b2);
    viv_close(good);
    CHECK(strstr(in_all, "\"busy\"") && strstr(in_all, "(--max-unauth)"), "fourth in all got: %.200s", in_all);
    CHECK(served, "the authenticated client's ping went unanswered");
    CHECK(late_refused, "a fourth connection waiting to authenticate was let in past --max-unauth 3");
    CHECK(freed && later_served, "a client with the token was not served once a place was free: %s", err);
    CHECK(log_count(d.log, "(--max-unauth-per-peer)\"") == 1 && log_count(d.log, "(--max-unauth); retry later\"") == 2,
          "the refusals are not in the log");
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* Open Unix connections until vivd can take no more: returns how many it
 * took (held in fds), and in *refused the line that turned the next away
 * (empty when nothing answered it within 2 s). */
/* The "refused" count of the log's first fds_available line, or -1. */
static int log_refused_count(const char *log_path) {
    size_t n = 0;
    char err[64];
    char *log = read_file(log_path, 1 << 22, &n, err, sizeof err);
    const char *at = log ? strstr(log, "\"outcome\":\"fds_available\",\"refused\":") : NULL;
    int v = at ? atoi(at + strlen("\"outcome\":\"fds_available\",\"refused\":")) : -1;
    free(log);
    return v;
}

static int fill_fds(const struct daemon *d, int *fds, int max, char *refused, size_t rlen) {
    int n = 0;
    refused[0] = 0;
    while (n < max) {
        int before = count_fds(d->pid), fd = try_connect(d->sock);
        if (fd < 0) break;
        bool taken = false;
        for (int i = 0; i < 2000 && !taken; i++) { /* accepted (its fd count rises) or refused (a line); 10 s on a loaded host */
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 5) == 1) break;
            taken = count_fds(d->pid) > before;
        }
        if (!taken) {
            snprintf(refused, rlen, "%s", raw_roundtrip(fd, NULL, 0));
            close(fd);
            break;
        }
        fds[n++] = fd;
    }
    return n;
}

/* With its fd limit reached, vivd neither spins (its CPU over an idle
 * second, with a client waiting, stays far under a busy loop's) nor stops
 * serving the connections it has; every new client is refused with a line
 * (Unix and TCP alike), the episode is logged once however many are
 * refused, and once fds free up a new client is served. */
static void test_out_of_fds_no_spin(void) {
    char addr[32], tok[32];
    CHECK(tcp_setup(addr, sizeof addr, tok) == 0, "tcp setup");
    daemon_nofile = 40;
    START(d, "--tcp", addr, "--token-file", tok, "--zygotes", "0", NULL);
    daemon_nofile = 0;
    char err[256];
    struct viv_client *mine = viv_connect(d.sock, err, sizeof err);
    struct viv_client *mine_tcp = viv_connect_tcp(addr, GOOD_TOKEN, err, sizeof err);
    unlink(tok);
    CHECK(mine && mine_tcp, "clients: %s", err);
    int held[64];
    char line[512];
    char first[512];
    int n = fill_fds(&d, held, 64, first, sizeof first);
    CHECK(n > 0 && n < 64, "took %d connections under a limit of 40 fds", n);
    /* a client waits in the backlog: an idle second must not be spent on it */
    int waiting = try_connect(d.sock);
    long clk = sysconf(_SC_CLK_TCK), t0 = cpu_ticks(d.pid);
    double w0 = now_ms();
    usleep(1000000);
    long t1 = cpu_ticks(d.pid);
    double wall_ticks = (now_ms() - w0) / 1000.0 * (double)clk, ratio = (double)(t1 - t0) / wall_ticks;
    snprintf(line, sizeof line, "%s", raw_roundtrip(waiting, NULL, 0));
    close(waiting);
    bool waiting_refused = strstr(line, "out of file descriptors") != NULL;
    int more_refused = 0;
    for (int k = 0; k < 5; k++) {
        int fd = try_connect(d.sock);
        more_refused += strstr(raw_roundtrip(fd, NULL, 0), "out of file descriptors") != NULL;
        close(fd);
    }
    int tcp = tcp_connect_from("127.0.0.1", addr);
    bool tcp_refused = strstr(raw_roundtrip(tcp, NULL, 0), "out of file descriptors") != NULL;
    close(tcp);
    bool served = ping_ok(mine), served_tcp = ping_ok(mine_tcp);
    int episodes = log_count(d.log, "\"outcome\":\"out_of_fds\"");
    CHECK(t0 >= 0 && t1 >= 0 && ratio < 0.2, "vivd used %ld CPU ticks in %.0f idle ones at its fd limit", t1 - t0,
          wall_ticks);
    CHECK(strstr(first, "\"busy\"") && strstr(first, "out of file descriptors"), "the first client past the limit got: %.200s",
          first);
    CHECK(waiting_refused && more_refused == 5 && tcp_refused, "clients past the limit were not refused with a line");
    CHECK(served && served_tcp, "a connection already open was not served at the fd limit");
    CHECK(episodes == 1, "%d out_of_fds lines in the log for one episode", episodes);
    /* fds free up: the next client is served, and the episode's end is logged */
    for (int k = 0; k < 3; k++) close(held[--n]);
    struct viv_client *next = NULL;
    for (int i = 0; i < 200 && !next; i++) {
        next = viv_connect(d.sock, err, sizeof err);
        if (next && !ping_ok(next)) viv_close(next), next = NULL, usleep(10000);
    }
    CHECK(next, "no new client was served after fds freed up");
    viv_close(next);
    /* at least the 8 refused above (more if a retry here came before vivd saw the fds close) */
    int refused_logged = log_refused_count(d.log);
    CHECK(log_count(d.log, "\"outcome\":\"fds_available\"") == 1 && refused_logged >= 8,
          "the episode's end is not in the log once with its refusals (%d)", refused_logged);
    while (n) close(held[--n]);
    viv_close(mine);
    viv_close(mine_tcp);
    NOTE("%ld CPU ticks in %.0f at the fd limit (ratio %.3f)", t1 - t0, wall_ticks, ratio);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* ------------------------------------------------------- stdin, files, fetch */

/* One exec with io through the C client; the response (caller frees). */
static struct viv_response *exec_io(struct viv_client *c, const char *tool, const char *code,
                                    const struct viv_exec_io *io) {
    long h = viv_submit_exec_io(c, tool, code, strlen(code), 10000, io);
    return viv_wait(c, h, 30000);
}

static const char *fetched_b64(const cJSON *resp, const char *name) {
    return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(resp, "files"), name));
}

static const char *fetch_error(const cJSON *resp, const char *name) {
    return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(resp, "fetch_errors"), name));
}

/* stdin reaches the job as its fd 0 (sealed: the job cannot rewrite what it
 * was given); files land under /work, subdirectories made; a fetched file
 * comes back byte for byte, NULs included. */
static void test_exec_stdin_files_fetch(void) {
    START(d, NULL);
    CONNECT(c, d);
    static const char bin[] = {'a', 0, 'b', (char)0xff};
    struct job_file files[] = {{"in/deep/data.bin", (char *)bin, sizeof bin}};
    char *fetch[] = {"out.bin"};
    struct viv_exec_io io = {"line1\nline2\n", 12, files, 1, fetch, 1};
    const char *code = "import os, sys\n"
                       "print(sys.stdin.read().split())\n"
                       "try:\n    os.write(0, b'x'); print('stdin writable')\nexcept OSError: print('stdin sealed')\n"
                       "p = os.path.realpath('in/deep/data.bin'); print(p)\n"
                       "open('out.bin', 'wb').write(open(p, 'rb').read()[::-1])\n";
    struct viv_response *r = exec_io(c, "python", code, &io);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")), "exec failed: %s", r ? cJSON_PrintUnformatted(r->json) : "none");
    CHECK(strcmp(r->out, "['line1', 'line2']\nstdin sealed\n/work/in/deep/data.bin\n") == 0, "stdout: %s", r->out);
    const char *b64 = fetched_b64(r->json, "out.bin");
    size_t n = 0;
    char *got = b64 ? base64_decode(b64, strlen(b64), &n) : NULL;
    CHECK(got && n == 4 && got[0] == (char)0xff && got[1] == 'b' && got[2] == 0 && got[3] == 'a', "fetched: %s", b64 ? b64 : "none");
    free(got);
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* The attack: file names that point out of the job directory, on the way
 * in and on the way back. Each is refused before anything runs, with a
 * bad_request naming the rule; the daemon lives on. */
static void test_files_cannot_name_outside_job_dir(void) {
    START(d, NULL);
    const char *bad[] = {
        "{\"id\":1,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"files\":{\"../x\":\"eA==\"}}\n",
        "{\"id\":2,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"files\":{\"/tmp/x\":\"eA==\"}}\n",
        "{\"id\":3,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"files\":{\"a/../../x\":\"eA==\"}}\n",
        "{\"id\":4,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"files\":{\"\":\"eA==\"}}\n",
        "{\"id\":5,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"fetch_files\":[\"../../etc/passwd\"]}\n",
        "{\"id\":6,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"fetch_files\":[\"/etc/passwd\"]}\n",
        "{\"id\":7,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"files\":{\"a\":\"not base64!\"}}\n",
        "{\"id\":8,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"files\":{\"main.py\":\"eA==\"}}\n",
        "{\"id\":9,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"files\":[\"a\"]}\n",
        "{\"id\":10,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"fetch_files\":\"a\"}\n",
        "{\"id\":11,\"op\":\"exec\",\"tool\":\"python\",\"code\":\"1\",\"stdin\":5}\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int fd = try_connect(d.sock);
        CHECK(fd >= 0, "connect");
        char *line = raw_roundtrip(fd, bad[i], strlen(bad[i]));
        close(fd);
        CHECK(line && strstr(line, "\"code\":\"bad_request\""), "request %zu not refused: %s", i + 1, line ? line : "");
    }
    CONNECT(c, d);
    long h = viv_submit_op(c, "ping");
    struct viv_response *r = viv_wait(c, h, 5000);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "pong")), "vivd not healthy afterwards");
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* The attack: the job plants symlinks (to a file, to a directory), a
 * FIFO, a directory and a hard link where the caller will fetch, and leaves
 * a process that keeps swapping a fetched name between a file and a symlink
 * to /etc/passwd. Nothing outside /work comes back: the symlinks are refused
 * as symlinks, the FIFO does not hang the fetch, the swapper is dead before
 * the fetch walks the path, and the hard link could not be made (/work is
 * its own filesystem). */
static void test_fetch_never_follows_out_of_job_dir(void) {
    START(d, NULL);
    CONNECT(c, d);
    char *fetch[] = {"link", "dirlink/passwd", "fifo", "adir", "hard", "race", "sub/inner"};
    struct viv_exec_io io = {NULL, 0, NULL, 0, fetch, 7};
    const char *code = "import os, time\n"
                       "os.symlink('/etc/passwd', 'link'); os.symlink('/etc', 'dirlink'); os.mkfifo('fifo'); os.mkdir('adir')\n"
                       "os.symlink('/etc', 'sub')\n"
                       "try:\n    os.link('/etc/passwd', 'hard')\nexcept OSError as e: print('link', e.errno)\n"
                       "open('race', 'w').write('plain')\n"
                       "if os.fork() == 0:\n"
                       "    os.setsid()\n"
                       "    while True:\n"
                       "        try:\n"
                       "            os.rename('race', 'race.tmp'); os.symlink('/etc/passwd', 'race'); os.unlink('race');\n"
                       "            os.rename('race.tmp', 'race'); os.symlink('/etc/passwd', 'race.new'); os.replace('race.new', 'race')\n"
                       "        except OSError: pass\n"
                       "time.sleep(0.2)\n";
    struct viv_response *r = exec_io(c, "python", code, &io);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")), "exec failed: %s", r ? cJSON_PrintUnformatted(r->json) : "none");
    const char *sym[] = {"link", "dirlink/passwd", "sub/inner"};
    for (int i = 0; i < 3; i++) {
        CHECK(!fetched_b64(r->json, sym[i]), "%s was fetched through a symlink", sym[i]);
        CHECK(fetch_error(r->json, sym[i]) && strstr(fetch_error(r->json, sym[i]), "symlink"), "%s: %s", sym[i],
              fetch_error(r->json, sym[i]) ? fetch_error(r->json, sym[i]) : "no error");
    }
    CHECK(fetch_error(r->json, "fifo") && fetch_error(r->json, "adir") && fetch_error(r->json, "hard"),
          "fifo, directory or missing hard link fetched: %s", cJSON_PrintUnformatted(r->json));
    const char *race = fetched_b64(r->json, "race");
    if (race) {
        size_t n;
        char *got = base64_decode(race, strlen(race), &n);
        CHECK(got && strcmp(got, "plain") == 0, "race fetched as something else than the job's file: %s", got ? got : "?");
        free(got);
        NOTE("the swapper was stopped with 'race' a plain file: its own content came back");
    } else {
        CHECK(fetch_error(r->json, "race"), "race neither fetched nor refused");
        NOTE("the swapper was stopped with 'race' a symlink or absent: refused (%s)", fetch_error(r->json, "race"));
    }
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* Past the policy's files_bytes: input refused whole before the job runs,
 * a fetched file too big not sent (the rest still is); more than
 * JOB_FILES_MAX names refused. */
static void test_files_held_to_policy_caps(void) {
    START(d, "--max-line-bytes", "67108864", NULL); /* the line may carry 16 MiB as base64 */
    CONNECT(c, d);
    size_t big = (16u << 20) + 1; /* python.json keeps the default files_bytes, 16 MiB */
    struct job_file files[] = {{"big", xcalloc(1, big), big}};
    struct viv_exec_io io = {NULL, 0, files, 1, NULL, 0};
    struct viv_response *r = exec_io(c, "python", "print(1)", &io);
    free(files[0].data);
    CHECK(r && !cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")) && strcmp(jerr_code(r->json), "bad_request") == 0,
          "oversized files not refused");
    CHECK(strstr(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "message")), "files_bytes"),
          "the error does not name files_bytes");
    viv_response_free(r);
    char *fetch[] = {"huge", "small"};
    struct viv_exec_io io2 = {NULL, 0, NULL, 0, fetch, 2};
    r = exec_io(c, "python", "open('huge','wb').write(b'x' * (17 << 20)); open('small','w').write('ok')", &io2);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")), "exec failed");
    CHECK(!fetched_b64(r->json, "huge") && fetch_error(r->json, "huge") && strstr(fetch_error(r->json, "huge"), "files_bytes"),
          "a file past files_bytes was fetched");
    CHECK(fetched_b64(r->json, "small") && strcmp(fetched_b64(r->json, "small"), "b2s=") == 0, "small file not fetched");
    viv_response_free(r);
    char *many[JOB_FILES_MAX + 1];
    for (int i = 0; i <= JOB_FILES_MAX; i++) many[i] = "f";
    struct viv_exec_io io3 = {NULL, 0, NULL, 0, many, JOB_FILES_MAX + 1};
    r = exec_io(c, "python", "1", &io3);
    CHECK(r && !cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")), "too many fetch_files accepted");
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

int main(int argc, char **argv) {
    vivd_bin = getenv("VIVD") ? getenv("VIVD") : "build/asan/vivd";
    signal(SIGPIPE, SIG_IGN);
    t_after_each = kill_leftover_daemons;
    static const struct test_case tests[] = {
#define T(name) {#name, test_##name}
        T(ping_policies_stats), T(exec_python), T(pipelined_out_of_order), T(malformed_requests),
        T(binary_and_invalid_utf8), T(huge_line_closes_connection_only), T(idle_client_dropped),
        T(disconnect_kills_job), T(busy_when_full), T(deadline_capped_by_policy), T(sigterm_drains),
        T(log_has_no_code_or_output), T(tcp_needs_token), T(load_8_clients_10000_requests),
        T(session_state_and_per_call_output), T(session_overrun_kills_session), T(session_idle_expiry),
        T(session_cap_per_peer), T(session_private_to_connection), T(session_dies_with_connection), T(session_lifetime_is_session_ms_max),
        T(sigterm_with_open_session),
        T(session_rules), T(zygote_runs_warm_jobs_like_cold_ones), T(zygote_requests_cannot_see_each_other),
        T(zygote_request_cannot_read_earlier_code), T(zygote_that_dies_is_replaced),
        T(zygote_job_cancelled_on_disconnect), T(zygote_job_holds_only_std_fds_and_cannot_hurt_its_zygote),
        T(session_code_holds_only_std_fds_and_cannot_reach_its_keeper), T(session_call_leaves_nothing_running),
        T(tcp_token_line_is_short), T(tcp_token_deadline_not_extended_by_trickle),
        T(tcp_unauthenticated_capped), T(out_of_fds_no_spin),
        T(exec_stdin_files_fetch), T(files_cannot_name_outside_job_dir), T(fetch_never_follows_out_of_job_dir),
        T(files_held_to_policy_caps),
#undef T
    };
    return run_test_cases(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
}
