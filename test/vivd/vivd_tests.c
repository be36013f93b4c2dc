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

/* the other parts of the suite, in this translation unit with the harness */
#include "vivd_sessions.c"
#include "vivd_warm.c"
#include "vivd_front_door.c"
#include "vivd_job_files.c"

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
