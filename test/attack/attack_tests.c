/*
 * attack_tests.c - hostile jobs against `viv run`, each with the safe outcome
 * asserted.
 *
 * Every test runs the real binary ($VIV, default build/asan/viv: the jail
 * built with AddressSanitizer and UBSan; test/run.sh also runs the suite on
 * the static bin/viv) with --json, parses the result and checks what the
 * attack achieved: the error it got, what the host looks like afterwards,
 * what a concurrent job could see. "It did not crash" is never the check.
 *
 * Attacks that need raw syscalls use Python's ctypes inside the jail, the
 * way real hostile code would.
 *
 * The same attacks run through each door a job can come in by
 * (ATTACK_PATH): `cold` is viv run; `zygote` sends every job to a vivd
 * ($VIVD) whose python jobs run on zygotes (and a python job that does not
 * is a failure); `session` runs every python job as the one call of a fresh
 * vivd session. Tools without zygotes or sessions (shell, sql) run as vivd
 * one-shot jobs in both vivd paths. A guarantee that holds in one path only
 * is not a guarantee.
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../harness.h"

static const char *viv_bin;

enum attack_path { PATH_COLD, PATH_ZYGOTE, PATH_SESSION };
static enum attack_path attack_path;
static const char *const path_names[] = {"cold", "zygote", "session"};
static const char *vivd_bin;

/* ------------------------------------------------------------ running jobs */

struct job {
    int status;   /* viv's exit status */
    char *out;    /* viv's stdout (the JSON) */
    char *err;    /* viv's stderr */
    cJSON *json;  /* parsed result, or NULL */
    pid_t pid;    /* while running in the background */
    int out_fd, err_fd;
};

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct vivd_job;
static const size_t vivd_job_size;
static int vivd_job_prepare(struct vivd_job *vj, const char *const *args);
static void vivd_client_main(const struct vivd_job *vj);

/* Start viv with argv (argv[0] is replaced by $VIV) in the background; in
 * the vivd paths, `viv run` becomes a child that sends the same job to vivd
 * and prints the result as viv run --json would. */
static void job_start(struct job *j, const char *const *args) {
    memset(j, 0, sizeof *j);
    int o[2], e[2];
    if (pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC)) abort();
    const char *argv[64];
    int n = 0;
    argv[n++] = viv_bin;
    for (int i = 0; args[i] && n < 63; i++) argv[n++] = args[i];
    argv[n] = NULL;
    struct vivd_job *vj = NULL;
    if (attack_path != PATH_COLD && strcmp(args[0], "run") == 0) {
        vj = calloc(1, vivd_job_size);
        if (vivd_job_prepare(vj, args) != 0) { /* the child says why and fails */ }
    }
    j->pid = fork();
    if (j->pid == 0) {
        dup2(o[1], 1);
        dup2(e[1], 2);
        if (vj) vivd_client_main(vj);
        execv(viv_bin, (char *const *)argv);
        _exit(99);
    }
    free(vj);
    close(o[1]);
    close(e[1]);
    j->out_fd = o[0];
    j->err_fd = e[0];
}

static void append(char **buf, size_t *len, const char *data, size_t n) {
    *buf = realloc(*buf, *len + n + 1);
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = 0;
}

/* Collect output and status; a viv that outlives 60 s is killed and fails. */
static void job_finish(struct job *j) {
    size_t olen = 0, elen = 0;
    j->out = calloc(1, 1);
    j->err = calloc(1, 1);
    double give_up = mono_ms() + 60000;
    while (j->out_fd >= 0 || j->err_fd >= 0) {
        struct pollfd p[2] = {{j->out_fd, POLLIN, 0}, {j->err_fd, POLLIN, 0}};
        int left = (int)(give_up - mono_ms());
        if (left <= 0) {
            kill(j->pid, SIGKILL);
            break;
        }
        if (poll(p, 2, left) < 0 && errno != EINTR) break;
        char buf[65536];
        for (int i = 0; i < 2; i++) {
            int *fd = i ? &j->err_fd : &j->out_fd;
            if (*fd < 0 || !p[i].revents) continue;
            ssize_t r = read(*fd, buf, sizeof buf);
            if (r <= 0) {
                close(*fd);
                *fd = -1;
            } else {
                append(i ? &j->err : &j->out, i ? &elen : &olen, buf, (size_t)r);
            }
        }
    }
    if (j->out_fd >= 0) close(j->out_fd);
    if (j->err_fd >= 0) close(j->err_fd);
    waitpid(j->pid, &j->status, 0);
    j->json = cJSON_Parse(j->out);
}

static void job_free(struct job *j) {
    free(j->out);
    free(j->err);
    cJSON_Delete(j->json);
    memset(j, 0, sizeof *j);
}

static void run_args(struct job *j, const char *const *args) {
    job_start(j, args);
    job_finish(j);
}

/* Run code with a tool: viv run --json --tool TOOL [extra...] --code CODE */
static void run_code(struct job *j, const char *tool, const char *code, const char *const *extra) {
    const char *args[48] = {"run", "--json", "--tool", tool};
    int n = 4;
    for (int i = 0; extra && extra[i]; i++) args[n++] = extra[i];
    args[n++] = "--code";
    args[n++] = code;
    args[n] = NULL;
    run_args(j, args);
}

/* ------------------------------------------------------------ the vivd paths */

/* One vivd per distinct (--db, policy file) the tests ask for, started on
 * first use and stopped at exit. */
struct vivd_instance {
    char db[256], policy[256]; /* what it was started with ("" for none) */
    char sock[108], log[160], dir[64];
    pid_t pid;
};
static struct vivd_instance vivds[8];
static int nvivds;

static void vivds_stop(void) {
    for (int i = 0; i < nvivds; i++) {
        kill(vivds[i].pid, SIGTERM);
        waitpid(vivds[i].pid, NULL, 0);
        unlink(vivds[i].sock);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", vivds[i].dir);
        if (system(cmd)) { /* best effort */ }
    }
    nvivds = 0;
}

/* Send one request line, read one response line: the parsed object, or NULL. */
static cJSON *vivd_call(int fd, cJSON *req) {
    char *line = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    size_t n = strlen(line);
    line = realloc(line, n + 2);
    line[n++] = '\n';
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, line + off, n - off);
        if (w <= 0) {
            free(line);
            return NULL;
        }
        off += (size_t)w;
    }
    free(line);
    char *buf = NULL;
    size_t len = 0;
    for (;;) {
        char chunk[65536];
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r <= 0) break;
        append(&buf, &len, chunk, (size_t)r);
        if (memchr(buf, '\n', len)) break;
    }
    cJSON *o = buf ? cJSON_Parse(buf) : NULL;
    free(buf);
    return o;
}

static int vivd_connect(const char *sock) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

/* Are the zygotes of every tool that has them idle and ready at `sock`? */
static bool vivd_zygotes_ready(const char *sock) {
    int fd = vivd_connect(sock);
    if (fd < 0) return false;
    cJSON *req = cJSON_CreateObject();
    cJSON_AddNumberToObject(req, "id", 1);
    cJSON_AddStringToObject(req, "op", "stats");
    cJSON *r = vivd_call(fd, req);
    close(fd);
    cJSON *tool, *tools = cJSON_GetObjectItem(r, "tools");
    bool ready = tools != NULL;
    cJSON_ArrayForEach(tool, tools) {
        cJSON *z = cJSON_GetObjectItem(tool, "zygotes");
        if (z && !(cJSON_GetObjectItem(z, "idle") && cJSON_GetObjectItem(z, "idle")->valueint > 0)) ready = false;
    }
    cJSON_Delete(r);
    return ready;
}

/* The socket of a vivd serving `db` and the policy file `policy` (either
 * may be ""), started if need be; NULL with a message on stderr. */
static const char *vivd_for(const char *db, const char *policy) {
    for (int i = 0; i < nvivds; i++)
        if (strcmp(vivds[i].db, db) == 0 && strcmp(vivds[i].policy, policy) == 0) return vivds[i].sock;
    if (nvivds == (int)(sizeof vivds / sizeof vivds[0])) vivds_stop();
    struct vivd_instance *v = &vivds[nvivds];
    memset(v, 0, sizeof *v);
    strncpy(v->db, db, sizeof v->db - 1);
    strncpy(v->policy, policy, sizeof v->policy - 1);
    snprintf(v->dir, sizeof v->dir, "/tmp/viv-attack-%d-%d", (int)getpid(), nvivds);
    mkdir(v->dir, 0755);
    snprintf(v->sock, sizeof v->sock, "/tmp/viv-attack-%d-%d/s.sock", (int)getpid(), nvivds);
    snprintf(v->log, sizeof v->log, "/tmp/viv-attack-%d-%d/vivd.log", (int)getpid(), nvivds);
    char pdir[128] = "", dbarg[300] = "";
    if (policy[0]) { /* --policies takes a directory: one holding just this file */
        snprintf(pdir, sizeof pdir, "%s/policies", v->dir);
        mkdir(pdir, 0755);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "cp '%s' '%s/'", policy, pdir);
        if (system(cmd) != 0) return NULL;
    }
    snprintf(dbarg, sizeof dbarg, "db=%s", db);
    const char *argv[20];
    int n = 0;
    argv[n++] = vivd_bin, argv[n++] = "--socket", argv[n++] = v->sock, argv[n++] = "--log", argv[n++] = v->log;
    argv[n++] = "--zygotes", argv[n++] = attack_path == PATH_ZYGOTE ? "2" : "0";
    if (pdir[0]) argv[n++] = "--policies", argv[n++] = pdir;
    if (db[0]) argv[n++] = "--data", argv[n++] = dbarg;
    argv[n] = NULL;
    v->pid = fork();
    if (v->pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0), dup2(null, 1);
        execv(vivd_bin, (char *const *)argv);
        _exit(99);
    }
    nvivds++;
    for (int i = 0; i < 1200; i++) { /* up to a minute: zygotes import pandas */
        int fd = vivd_connect(v->sock);
        if (fd >= 0) {
            close(fd);
            if (attack_path != PATH_ZYGOTE || vivd_zygotes_ready(v->sock)) return v->sock;
        }
        if (waitpid(v->pid, NULL, WNOHANG) == v->pid) break;
        usleep(50000);
    }
    return NULL;
}

/* A `viv run` command line as a vivd request. */
struct vivd_job {
    char tool[128], why[256];
    const char *code, *sock;
    long timeout_ms;
};

static const size_t vivd_job_size = sizeof(struct vivd_job);

static char *write_policy_with_limit(const char *tool, const char *key, long value);

/* In the parent: read `viv run ARGS` and make sure the vivd it needs runs
 * (started here, so every later job finds it). -1 with vj->why set when the
 * job cannot go through vivd. */
static int vivd_job_prepare(struct vivd_job *vj, const char *const *args) {
    const char *tool = NULL, *db = "", *policy = "";
    long memory_mb = 0;
    for (int i = 1; args[i]; i++) {
        if (strcmp(args[i], "--json") == 0) continue;
        if (!args[i + 1]) break;
        if (strcmp(args[i], "--tool") == 0) tool = args[++i];
        else if (strcmp(args[i], "--code") == 0) vj->code = args[++i];
        else if (strcmp(args[i], "--db") == 0) db = args[++i];
        else if (strcmp(args[i], "--policy") == 0) policy = args[++i];
        else if (strcmp(args[i], "--timeout-ms") == 0) vj->timeout_ms = atol(args[++i]);
        else if (strcmp(args[i], "--mem-mb") == 0) memory_mb = atol(args[++i]);
        else {
            snprintf(vj->why, sizeof vj->why, "the %s path has no equivalent of viv run %s", path_names[attack_path], args[i]);
            return -1;
        }
    }
    if (memory_mb && !policy[0] && tool) { /* the tool's policy with that memory limit, as a file */
        policy = write_policy_with_limit(tool, "memory_mb", memory_mb);
        if (!policy) {
            snprintf(vj->why, sizeof vj->why, "could not write a %s policy with memory_mb %ld", tool, memory_mb);
            return -1;
        }
    }
    if (policy[0]) { /* the tool is the policy file's name */
        FILE *f = fopen(policy, "r");
        char text[65536];
        size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
        if (f) fclose(f);
        text[n] = 0;
        cJSON *p = cJSON_Parse(text);
        tool = cJSON_GetStringValue(cJSON_GetObjectItem(p, "name"));
        snprintf(vj->tool, sizeof vj->tool, "%s", tool ? tool : "");
        cJSON_Delete(p);
    } else if (tool) {
        snprintf(vj->tool, sizeof vj->tool, "%s", tool);
    }
    if (!vj->tool[0] || !vj->code) {
        snprintf(vj->why, sizeof vj->why, "viv run without --tool or --code");
        return -1;
    }
    vj->sock = vivd_for(db, policy);
    if (!vj->sock) {
        snprintf(vj->why, sizeof vj->why, "vivd (%s) did not start, or its zygotes did not become ready", vivd_bin);
        return -1;
    }
    return 0;
}

/* In the forked child: send the job to vivd, print the result object as
 * viv run --json would, exit 0 (or non-zero with the reason on stderr).
 * Never returns. */
static void vivd_client_main(const struct vivd_job *vj) {
    if (vj->why[0]) {
        fprintf(stderr, "%s\n", vj->why);
        _exit(97);
    }
    const char *tool = vj->tool, *code = vj->code;
    long timeout_ms = vj->timeout_ms;
    int fd = vivd_connect(vj->sock);
    if (fd < 0) {
        fprintf(stderr, "cannot connect to vivd at %s\n", vj->sock);
        _exit(96);
    }
    const char *session = NULL;
    cJSON *opened = NULL;
    if (attack_path == PATH_SESSION) {
        cJSON *req = cJSON_CreateObject();
        cJSON_AddNumberToObject(req, "id", 1);
        cJSON_AddStringToObject(req, "op", "session_open");
        cJSON_AddStringToObject(req, "tool", tool);
        opened = vivd_call(fd, req);
        session = cJSON_GetStringValue(cJSON_GetObjectItem(opened, "session"));
        const char *why = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(opened, "error"), "code"));
        if (!session && strncmp(tool, "python", 6) == 0) {
            fprintf(stderr, "session_open failed: %s\n", why ? why : "no answer");
            _exit(95);
        } /* other tools have no sessions: a one-shot job */
    }
    cJSON *req = cJSON_CreateObject();
    cJSON_AddNumberToObject(req, "id", 2);
    cJSON_AddStringToObject(req, "op", "exec");
    if (session) cJSON_AddStringToObject(req, "session", session);
    else cJSON_AddStringToObject(req, "tool", tool);
    cJSON_AddStringToObject(req, "code", code);
    if (timeout_ms) cJSON_AddNumberToObject(req, "timeout_ms", (double)timeout_ms);
    cJSON *r = vivd_call(fd, req);
    if (!cJSON_IsTrue(cJSON_GetObjectItem(r, "ok"))) {
        char *t = r ? cJSON_PrintUnformatted(r) : NULL;
        fprintf(stderr, "vivd answered: %s\n", t ? t : "nothing");
        _exit(3);
    }
    if (attack_path == PATH_ZYGOTE && strncmp(tool, "python", 6) == 0 && !cJSON_IsTrue(cJSON_GetObjectItem(r, "zygote"))) {
        fprintf(stderr, "a python job in the zygote path did not run on a zygote\n");
        _exit(94);
    }
    if (session && !cJSON_IsBool(cJSON_GetObjectItem(r, "session_lost"))) {
        fprintf(stderr, "a session call's answer has no session_lost\n");
        _exit(94);
    }
    cJSON_DeleteItemFromObject(r, "id");
    cJSON_DeleteItemFromObject(r, "ok");
    char *out = cJSON_PrintUnformatted(r);
    if (write(1, out, strlen(out)) < 0) _exit(93);
    if (session) { /* close it (a lost session answers not_found or session_lost: fine) */
        cJSON *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "id", 3);
        cJSON_AddStringToObject(c, "op", "session_close");
        cJSON_AddStringToObject(c, "session", session);
        cJSON_Delete(vivd_call(fd, c));
    }
    _exit(0);
}

static const char *jstr(const struct job *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j->json, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}
static double jnum(const struct job *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j->json, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -12345;
}
static bool jtrue(const struct job *j, const char *key) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j->json, key));
}

/* The job ran and produced a result object. */
#define CHECK_RAN(j)                                                                       \
    CHECK((j)->json && WIFEXITED((j)->status) && WEXITSTATUS((j)->status) == 0,            \
          "viv did not produce a result: status %d, stderr: %.600s, stdout: %.300s",       \
          (j)->status, (j)->err, (j)->out)

#define CHECK_OUT_HAS(j, s)                                                                \
    CHECK(strstr(jstr(j, "stdout"), s) != NULL, "stdout lacks '%s': stdout=%.800s stderr=%.800s", s, \
          jstr(j, "stdout"), jstr(j, "stderr"))

/* Python prelude: raw syscalls through ctypes. sc(nr, args...) -> "ret errno". */
#define PY_SYSCALL                                                                         \
    "import ctypes, os, sys\n"                                                             \
    "libc = ctypes.CDLL(None, use_errno=True)\n"                                           \
    "def sc(nr, *a):\n"                                                                    \
    "    ctypes.set_errno(0)\n"                                                            \
    "    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(x) for x in a])\n"           \
    "    return '%d %d' % (r, ctypes.get_errno())\n"

/* Write a small host file the test sets up (world-readable). */
static void put_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
    chmod(path, 0644);
}

/* Is any host process's command line carrying `marker` alive? */
static int host_process_with_marker(const char *marker) {
    DIR *d = opendir("/proc");
    int found = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[64], buf[4096];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        for (ssize_t i = 0; i < n; i++)
            if (!buf[i]) buf[i] = ' ';
        buf[n] = 0;
        /* a zombie has an empty cmdline; a live one matches */
        /* the job's own processes, not viv (whose --code argument holds the marker) */
        if (strstr(buf, marker) && !strstr(buf, "attack_tests") && !strstr(buf, "--code")) found = 1;
    }
    if (d) closedir(d);
    return found;
}

/* ------------------------------------------------------------ filesystem */

static void test_host_file_unreadable(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/viv-secret-%d", (int)getpid());
    put_file(path, "TOPSECRET-42");
    char code[1024];
    snprintf(code, sizeof code,
             "import os\n"
             "for p in ['%s', '/etc/shadow', '/root', '/home', '/var', '/proc/1/root%s']:\n"
             "    try:\n"
             "        print(p, 'READ', open(p).read()[:40] if not os.path.isdir(p) else os.listdir(p))\n"
             "    except Exception as e:\n"
             "        print(p, 'DENIED', type(e).__name__)\n",
             path, path);
    struct job j;
    run_code(&j, "python", code, NULL);
    unlink(path);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "TOPSECRET") == NULL, "host secret leaked: %s", jstr(&j, "stdout"));
    CHECK(strstr(jstr(&j, "stdout"), "READ") == NULL, "a host path was readable: %s", jstr(&j, "stdout"));
    CHECK_OUT_HAS(&j, "/etc/shadow DENIED");
    job_free(&j);
}

static void test_host_paths_not_writable(void) {
    char code[] =
        "for p in ['/usr/viv-pwned', '/viv-pwned', '/etc/viv-pwned', '/bin/viv-pwned', '/lib/viv-pwned', '/dev/viv-pwned', '/proc/viv-pwned']:\n"
        "    try:\n"
        "        open(p, 'w').write('x'); print(p, 'WROTE')\n"
        "    except OSError as e:\n"
        "        print(p, 'DENIED', e.errno)\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "WROTE") == NULL, "wrote outside its tmpfs: %s", jstr(&j, "stdout"));
    CHECK_OUT_HAS(&j, "/usr/viv-pwned DENIED 30"); /* EROFS */
    CHECK(access("/usr/viv-pwned", F_OK) != 0 && access("/viv-pwned", F_OK) != 0, "file appeared on the host");
    job_free(&j);
}

static void test_no_path_to_host_root(void) {
    char code[] =
        "import os\n"
        "print('ROOT', sorted(os.listdir('/')))\n"
        "print('SELFROOT', os.readlink('/proc/self/root'))\n"
        "try:\n"
        "    print('P1ROOT', os.readlink('/proc/1/root'))\n"
        "except OSError as e:\n"
        "    print('P1ROOT DENIED', e.errno)\n"
        "print('MOUNTS', 'oldroot' in open('/proc/self/mountinfo').read())\n"
        "print('CWD', os.getcwd(), os.path.exists('/oldroot'), os.path.exists('/newroot'))\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "SELFROOT /\n");
    CHECK(strstr(jstr(&j, "stdout"), "P1ROOT /\n") || strstr(jstr(&j, "stdout"), "P1ROOT DENIED"),
          "init's root: %s", jstr(&j, "stdout"));
    CHECK_OUT_HAS(&j, "MOUNTS False");
    CHECK_OUT_HAS(&j, "CWD /work False False");
    CHECK(strstr(jstr(&j, "stdout"), "'root'") == NULL && strstr(jstr(&j, "stdout"), "'home'") == NULL,
          "host directories visible at /: %s", jstr(&j, "stdout"));
    job_free(&j);
}

static void test_tmp_private_per_job(void) {
    struct job a, b;
    run_code(&a, "shell", "echo first > /tmp/viv-shared && echo here > /work/viv-shared && ls /tmp /work", NULL);
    run_code(&b, "shell", "ls -A /tmp /work; cat /tmp/viv-shared 2>&1", NULL);
    CHECK_RAN(&a);
    CHECK_RAN(&b);
    CHECK(strstr(jstr(&a, "stdout"), "viv-shared") != NULL, "job a could not write its tmpfs: %s", jstr(&a, "stderr"));
    CHECK(strstr(jstr(&b, "stdout"), "first") == NULL && strstr(jstr(&b, "stdout"), "viv-shared\n") == NULL,
          "job b saw job a's files: %s", jstr(&b, "stdout"));
    CHECK(access("/tmp/viv-shared", F_OK) != 0, "job's /tmp file appeared on the host");
    job_free(&a);
    job_free(&b);
}

static void test_symlink_escape(void) {
    /* A symlink in the job's tmpfs resolves inside the jail's root, never the host's. */
    char code[] =
        "ln -s /etc/passwd /tmp/p && cat /tmp/p; ln -s ../../../../../root /work/r && ls /work/r 2>&1; echo done";
    struct job j;
    run_code(&j, "shell", code, NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "sandbox:x:1000");
    CHECK(strstr(jstr(&j, "stdout"), "root:x:0:0:root:/root") == NULL, "host /etc/passwd read: %s", jstr(&j, "stdout"));
    job_free(&j);
}

static void test_proc_sys_and_sysrq_not_writable(void) {
    char code[] =
        "for p in ['/proc/sys/kernel/hostname', '/proc/sysrq-trigger', '/proc/sys/vm/drop_caches', '/proc/sys/user/max_user_namespaces']:\n"
        "    try:\n"
        "        open(p, 'w').write('1'); print(p, 'WROTE')\n"
        "    except OSError as e:\n"
        "        print(p, 'DENIED', e.errno)\n"
        "import socket; print('HOST', socket.gethostname())\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "WROTE") == NULL, "a kernel knob was writable: %s", jstr(&j, "stdout"));
    CHECK_OUT_HAS(&j, "HOST vivarium");
    job_free(&j);
}

/* ------------------------------------------------------------ network */

static int listen_on(int type, int *port) {
    int s = socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || getsockname(s, (struct sockaddr *)&a, &len)) abort();
    if (type == SOCK_STREAM && listen(s, 8)) abort();
    *port = ntohs(a.sin_port);
    return s;
}

static void test_tcp_to_host_listener(void) {
    int port, s = listen_on(SOCK_STREAM, &port);
    char code[512];
    snprintf(code, sizeof code,
             "import socket\n"
             "try:\n"
             "    c = socket.create_connection(('127.0.0.1', %d), timeout=2); c.send(b'x'); print('CONNECTED')\n"
             "except OSError as e:\n"
             "    print('BLOCKED', e.errno)\n", port);
    struct job j;
    run_code(&j, "python", code, NULL);
    int accepted = accept(s, NULL, NULL);
    close(s);
    CHECK_RAN(&j);
    CHECK(accepted < 0, "the host listener accepted a connection from the jail");
    CHECK_OUT_HAS(&j, "BLOCKED");
    job_free(&j);
}

static void test_udp_to_host(void) {
    int port, s = listen_on(SOCK_DGRAM, &port);
    char code[512];
    snprintf(code, sizeof code,
             "import socket\n"
             "try:\n"
             "    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b'leak', ('127.0.0.1', %d)); print('SENT')\n"
             "except OSError as e:\n"
             "    print('BLOCKED', e.errno)\n", port);
    struct job j;
    run_code(&j, "python", code, NULL);
    char buf[16];
    ssize_t got = recv(s, buf, sizeof buf, MSG_DONTWAIT);
    close(s);
    CHECK_RAN(&j);
    CHECK(got < 0, "the host received a datagram from the jail");
    CHECK_OUT_HAS(&j, "BLOCKED");
    job_free(&j);
}

static void test_raw_netlink_packet_sockets(void) {
    char code[] =
        "import socket\n"
        "for name, fam, typ in [('raw', socket.AF_INET, socket.SOCK_RAW), ('netlink', socket.AF_NETLINK, socket.SOCK_RAW),\n"
        "                       ('packet', 17, socket.SOCK_RAW), ('inet6', socket.AF_INET6, socket.SOCK_STREAM)]:\n"
        "    try:\n"
        "        socket.socket(fam, typ, 0); print(name, 'OPEN')\n"
        "    except OSError as e:\n"
        "        print(name, 'BLOCKED', e.errno)\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "OPEN") == NULL, "a socket opened: %s", jstr(&j, "stdout"));
    CHECK_OUT_HAS(&j, "netlink BLOCKED 1");
    CHECK_OUT_HAS(&j, "raw BLOCKED 1");
    job_free(&j);
}

static void test_network_namespace_empty(void) {
    struct job j;
    run_code(&j, "shell", "cat /proc/net/dev; cat /proc/net/tcp", NULL);
    CHECK_RAN(&j);
    const char *out = jstr(&j, "stdout");
    CHECK(strstr(out, "lo:") != NULL, "no loopback line: %s", out);
    CHECK(strstr(out, "eth") == NULL && strstr(out, "ens") == NULL && strstr(out, "veth") == NULL,
          "host interfaces visible: %s", out);
    job_free(&j);
}

/* ------------------------------------------------------------ resources */

static void test_fork_bomb_bounded(void) {
    char code[] =
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 100000:\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(30); os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print('STOPPED', n, e.errno)\n";
    struct job j;
    double t0 = mono_ms();
    run_code(&j, "python", code, (const char *const[]){"--timeout-ms", "4000", NULL});
    double took = mono_ms() - t0;
    CHECK_RAN(&j);
    const char *out = jstr(&j, "stdout");
    int n = -1, e = -1;
    const char *s = strstr(out, "STOPPED");
    CHECK(s && sscanf(s, "STOPPED %d %d", &n, &e) == 2, "fork never failed: %s %s", out, jstr(&j, "stderr"));
    CHECK(n <= 64 && e == EAGAIN, "forked %d children (policy pids 64), errno %d", n, e);
    CHECK(took < 15000, "the job took %.0f ms", took);
    job_free(&j);
}

static void test_shell_fork_bomb_killed_at_deadline(void) {
    struct job j;
    double t0 = mono_ms();
    /* The shell's own loop keeps the job alive without forking: a `sleep`
     * forked after the bomb may find the pids limit reached, and the shell
     * then exits early instead of outliving the deadline. */
    run_code(&j, "shell", "bomb() { bomb | bomb & }; bomb; while :; do :; done",
             (const char *const[]){"--timeout-ms", "1500", NULL});
    double took = mono_ms() - t0;
    CHECK_RAN(&j);
    CHECK(jtrue(&j, "timed_out"), "a fork bomb with a sleeper outlived no deadline? %s", j.out);
    CHECK(took < 10000, "killing the bomb took %.0f ms", took);
    /* the machine still forks normally */
    struct job k;
    run_code(&k, "shell", "echo alive", NULL);
    CHECK_RAN(&k);
    CHECK(strcmp(jstr(&k, "stdout"), "alive\n") == 0, "next job: %s", k.out);
    job_free(&j);
    job_free(&k);
}

static void test_memory_bomb(void) {
    char code[] =
        "chunks = []\n"
        "try:\n"
        "    while True:\n"
        "        chunks.append(bytearray(32 << 20))\n"
        "except MemoryError:\n"
        "    print('MEMORYERROR', len(chunks) * 32)\n";
    struct job j;
    run_code(&j, "python", code, (const char *const[]){"--mem-mb", "256", NULL});
    CHECK_RAN(&j);
    int mb = -1;
    const char *s = strstr(jstr(&j, "stdout"), "MEMORYERROR");
    CHECK(s && sscanf(s, "MEMORYERROR %d", &mb) == 1, "no MemoryError: %s %s signal=%g", jstr(&j, "stdout"), jstr(&j, "stderr"), jnum(&j, "signal"));
    CHECK(mb <= 256, "allocated %d MiB under a 256 MiB limit", mb);
    CHECK(jnum(&j, "max_rss_kb") < 300 * 1024, "peak RSS %g kB", jnum(&j, "max_rss_kb"));
    job_free(&j);
}

static void test_disk_fill_bounded(void) {
    char code[] =
        "import os\n"
        "total = 0\n"
        "try:\n"
        "    i = 0\n"
        "    while total < (2 << 30):\n"
        "        with open('/tmp/f%d' % i, 'wb') as f:\n"
        "            for _ in range(8):\n"
        "                f.write(b'x' * (1 << 20)); total += 1 << 20\n"
        "        i += 1\n"
        "except OSError as e:\n"
        "    print('FULL', total >> 20, e.errno)\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    int mb = -1, e = -1;
    const char *s = strstr(jstr(&j, "stdout"), "FULL");
    CHECK(s && sscanf(s, "FULL %d %d", &mb, &e) == 2, "disk never filled: %s %s", jstr(&j, "stdout"), jstr(&j, "stderr"));
    CHECK(e == ENOSPC && mb <= 256, "wrote %d MiB (tmpfs 256), errno %d", mb, e);
    job_free(&j);
}

static void test_file_size_limit(void) {
    char code[] =
        "try:\n"
        "    with open('/work/big', 'wb') as f:\n"
        "        for i in range(200): f.write(b'x' * (1 << 20))\n"
        "    print('WROTE 200')\n"
        "except OSError as e:\n"
        "    import os; print('EFBIG' if e.errno == 27 else e, os.path.getsize('/work/big') >> 20)\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "EFBIG 64");
    job_free(&j);
}

static void test_output_flood_capped(void) {
    struct job j;
    run_code(&j, "shell", "yes flood & yes flood >&2", (const char *const[]){"--timeout-ms", "1000", NULL});
    CHECK_RAN(&j);
    CHECK(strlen(jstr(&j, "stdout")) == 1048576, "stdout kept %zu bytes, cap 1 MiB", strlen(jstr(&j, "stdout")));
    CHECK(strlen(jstr(&j, "stderr")) == 1048576, "stderr kept %zu bytes", strlen(jstr(&j, "stderr")));
    CHECK(jnum(&j, "stdout_dropped") > 0 && jnum(&j, "stderr_dropped") > 0, "drops not counted: %g %g",
          jnum(&j, "stdout_dropped"), jnum(&j, "stderr_dropped"));
    CHECK(jtrue(&j, "timed_out"), "flood not stopped at the deadline");
    job_free(&j);
}

static void test_busy_loop_deadline(void) {
    struct job j;
    run_code(&j, "python", "while True: pass", (const char *const[]){"--timeout-ms", "700", NULL});
    CHECK_RAN(&j);
    CHECK(jtrue(&j, "timed_out") && jnum(&j, "signal") == SIGKILL, "not killed: %s", j.out);
    CHECK(jnum(&j, "wall_ms") >= 700 && jnum(&j, "wall_ms") < 2000, "wall_ms %g for a 700 ms deadline", jnum(&j, "wall_ms"));
    /* counted at all, and no more than the wall time (a loaded machine may give the loop little CPU) */
    CHECK(jnum(&j, "cpu_ms") > 5 && jnum(&j, "cpu_ms") <= jnum(&j, "wall_ms") + 50,
          "cpu_ms %g (wall %g): the loop's CPU time was not counted", jnum(&j, "cpu_ms"), jnum(&j, "wall_ms"));
    job_free(&j);
}

static void sleepers_dead_after(const char *marker_arg, int deadline_case) {
    char code[512];
    /* a double-forked, setsid'd sleeper and a plain background one, both with a unique argument */
    snprintf(code, sizeof code,
             "( setsid sleep %s & ) ; sleep %s & echo started; %s",
             marker_arg, marker_arg, deadline_case ? "sleep 1000" : "sleep 0.3; exit 0");
    struct job j;
    run_code(&j, "shell", code, (const char *const[]){"--timeout-ms", "1000", NULL});
    int alive = host_process_with_marker(marker_arg);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "started");
    CHECK(jtrue(&j, "timed_out") == (deadline_case != 0), "timed_out should be %d: %s", deadline_case, j.out);
    CHECK(!alive, "a sleeper ('sleep %s') is still alive on the host after the job", marker_arg);
    job_free(&j);
}

static void test_sleepers_dead_after_deadline(void) {
    char m[32];
    snprintf(m, sizeof m, "%d.125", 700000 + (int)getpid() % 100000);
    sleepers_dead_after(m, 1);
}

static void test_sleepers_dead_after_exit(void) {
    char m[32];
    snprintf(m, sizeof m, "%d.375", 800000 + (int)getpid() % 100000);
    sleepers_dead_after(m, 0);
}

/* ------------------------------------------------------------ syscalls */

/* Each attack prints "name ret errno"; every one must fail with EPERM
 * (or ENOSYS for clone3), never return success. */
static void check_syscalls_denied(const char *calls, const char *expect) {
    char code[4096];
    snprintf(code, sizeof code, "%s%s", PY_SYSCALL, calls);
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    const char *out = jstr(&j, "stdout");
    CHECK(*out, "no output: %s", jstr(&j, "stderr"));
    char *copy = strdup(out);
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64];
        long ret;
        int err;
        if (sscanf(line, "%63s %ld %d", name, &ret, &err) != 3) continue;
        if (ret != -1 || (err != EPERM && !(expect && strstr(expect, name) && err == ENOSYS))) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s returned %ld errno %d", name, ret, err);
            free(copy);
            job_free(&j);
            FAIL("%s", msg);
        }
    }
    free(copy);
    job_free(&j);
}

static void test_ptrace_and_process_vm(void) {
    check_syscalls_denied(
        "print('ptrace_traceme', sc(101, 0, 0, 0, 0))\n"
        "print('ptrace_attach_init', sc(101, 16, 1, 0, 0))\n"
        "print('process_vm_readv', sc(310, 1, 0, 0, 0, 0, 0))\n"
        "print('kcmp', sc(312, 1, os.getpid(), 0, 0, 0))\n", NULL);
}

static void test_mount_family(void) {
    check_syscalls_denied(
        "print('mount', sc(165, 0, 0, 0, 0, 0))\n"
        "print('umount2', sc(166, 0, 2))\n"
        "print('pivot_root', sc(155, 0, 0))\n"
        "print('chroot', sc(161, 0))\n"
        "print('open_tree', sc(428, -100, 0, 0))\n"
        "print('fsopen', sc(430, 0, 0))\n"
        "print('move_mount', sc(429, 0, 0, 0, 0, 0))\n", NULL);
}

static void test_unshare_setns_nested_userns(void) {
    /* clone(CLONE_NEWUSER) is checked too: if it ever succeeded, the child exits at once. */
    check_syscalls_denied(
        "print('unshare_user', sc(272, 0x10000000))\n"
        "print('unshare_mount', sc(272, 0x00020000))\n"
        "fd = os.open('/proc/self/ns/net', os.O_RDONLY)\n"
        "print('setns', sc(308, fd, 0))\n"
        "r = libc.syscall(ctypes.c_long(56), ctypes.c_long(0x10000000 | 17), ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0))\n"
        "if r == 0: os._exit(0)\n"
        "print('clone_newuser', r, ctypes.get_errno())\n"
        "print('clone3', sc(435, 0, 0))\n", "clone3");
}

static void test_nested_userns_capped_even_without_seccomp(void) {
    /* The jail also sets user.max_user_namespaces to 0 in the job's user
     * namespace, a second wall behind the seccomp filter. */
    struct job j;
    run_code(&j, "shell", "cat /proc/sys/user/max_user_namespaces", NULL);
    CHECK_RAN(&j);
    CHECK(strcmp(jstr(&j, "stdout"), "0\n") == 0, "max_user_namespaces inside: %s", jstr(&j, "stdout"));
    job_free(&j);
}

static void test_keyctl_bpf_perf_userfaultfd_iouring(void) {
    check_syscalls_denied(
        "print('keyctl', sc(250, 0, 0, 0, 0, 0))\n"
        "print('add_key', sc(248, 0, 0, 0, 0, 0))\n"
        "print('request_key', sc(249, 0, 0, 0, 0))\n"
        "print('bpf', sc(321, 0, 0, 0))\n"
        "print('perf_event_open', sc(298, 0, 0, -1, -1, 0))\n"
        "print('userfaultfd', sc(323, 0))\n"
        "print('io_uring_setup', sc(425, 1, 0))\n"
        "print('io_uring_enter', sc(426, 0, 0, 0, 0, 0, 0))\n", NULL);
}

static void test_kexec_and_modules(void) {
    check_syscalls_denied(
        "print('kexec_load', sc(246, 0, 0, 0, 0))\n"
        "print('kexec_file_load', sc(320, 0, 0, 0, 0, 0))\n"
        "print('init_module', sc(175, 0, 0, 0))\n"
        "print('finit_module', sc(313, 0, 0, 0))\n"
        "print('delete_module', sc(176, 0, 0))\n"
        "print('reboot', sc(169, 0, 0, 0, 0))\n"
        "print('swapon', sc(167, 0, 0))\n"
        "print('settimeofday', sc(164, 0, 0))\n"
        "print('open_by_handle_at', sc(304, 0, 0, 0))\n"
        "print('iopl', sc(172, 3))\n", NULL);
}

/* A job reaches no filesystem but its own and writes no /proc file of a
 * process outside its own tree: every process it can see that is not its
 * own descendant (our init; a zygote's pid 1; a session's keeper) refuses
 * root, cwd, fd, environ, mem, maps and its writable knobs. (Its
 * mountinfo stays readable, as the kernel has it for every process: the
 * mount table of the jail, the same one for every job.) The same
 * probes against its own child prove they work. A file planted through any
 * such process would be seen by the next job: the next job looks. */
static void test_foreign_processes_unreachable(void) {
    struct job j;
    run_code(&j, "python",
             "import os, subprocess\n"
             "kid = subprocess.Popen(['sleep', '30'])\n"
             "def ppid(p):\n"
             "    return int(open('/proc/%s/stat' % p).read().rsplit(')', 1)[1].split()[1])\n"
             "mine = {os.getpid()}\n"
             "for p in sorted(int(p) for p in os.listdir('/proc') if p.isdigit()):\n"
             "    q = p\n"
             "    while q > 1 and q not in mine: q = ppid(q)\n"
             "    if q in mine: mine.add(p)\n"
             "def probe(p):\n"
             "    got = []\n"
             "    for what in ('root', 'cwd', 'fd'):\n"
             "        try: os.listdir('/proc/%d/%s' % (p, what)); got.append(what)\n"
             "        except OSError: pass\n"
             "    for what in ('environ', 'mem', 'maps', 'stack', 'syscall'):\n"
             "        try: open('/proc/%d/%s' % (p, what), 'rb').read(1); got.append(what)\n"
             "        except OSError: pass\n"
             "    for what, val in (('oom_score_adj', '1000'), ('autogroup', '19'), ('clear_refs', '1'), ('timerslack_ns', '1')):\n"
             "        try:\n"
             "            with open('/proc/%d/%s' % (p, what), 'w') as f: f.write(val)\n"
             "            got.append('w:' + what)\n"
             "        except OSError: pass\n"
             "    for d in ('tmp', 'work'):\n"
             "        try:\n"
             "            open('/proc/%d/root/%s/planted-by-a-job' % (p, d), 'w').write('x'); got.append('planted:' + d)\n"
             "        except OSError: pass\n"
             "    return got\n"
             "others = [p for p in (int(p) for p in os.listdir('/proc') if p.isdigit()) if p not in mine]\n"
             "reached = {p: probe(p) for p in others}\n"
             "print('OTHERS', len(others), 'REACHED', {p: g for p, g in reached.items() if g})\n"
             "own = probe(kid.pid)\n"
             "print('OWN_CHILD', 'root' in own and 'fd' in own and 'w:oom_score_adj' in own)\n"
             "kid.kill()\n",
             NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "REACHED {}");
    CHECK_OUT_HAS(&j, "OWN_CHILD True");
    int others = -1;
    const char *o = strstr(jstr(&j, "stdout"), "OTHERS ");
    CHECK(o && sscanf(o, "OTHERS %d", &others) == 1 && others >= 1, "no process outside the job was probed: %s", jstr(&j, "stdout"));
    NOTE("%d processes outside the job's tree probed", others);
    job_free(&j);
    struct job k;
    run_code(&k, "python",
             "import os\n"
             "print('SEEN', [d + '/' + f for d in ('/tmp', '/work') for f in os.listdir(d) if 'planted' in f])\n",
             NULL);
    CHECK_RAN(&k);
    CHECK_OUT_HAS(&k, "SEEN []");
    job_free(&k);
}

/* mknod is allowed (FIFOs are ordinary; sessions pass each call through
 * them), but no device node can be made: the job holds no CAP_MKNOD, and a
 * node it did make would be useless on its nodev mounts. */
static void test_device_nodes_cannot_be_made(void) {
    struct job j;
    run_code(&j, "python",
             "import os, stat\n"
             "for d in ('/tmp', '/work'):\n"
             "    for kind, dev in (('chr', stat.S_IFCHR | 0o666), ('blk', stat.S_IFBLK | 0o666)):\n"
             "        try:\n"
             "            os.mknod(d + '/node-' + kind, dev, os.makedev(1, 3)); print('MADE', d, kind)\n"
             "        except OSError as e:\n"
             "            print('denied', d, kind, e.errno)\n"
             "os.mkfifo('/tmp/fifo'); print('fifo', stat.S_ISFIFO(os.stat('/tmp/fifo').st_mode))\n",
             NULL);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "MADE") == NULL, "a device node was made: %s", jstr(&j, "stdout"));
    CHECK_OUT_HAS(&j, "denied /tmp chr 1\ndenied /tmp blk 1\ndenied /work chr 1\ndenied /work blk 1\nfifo True");
    job_free(&j);
}

static void test_x32_abi_killed(void) {
    struct job j;
    run_code(&j, "python", PY_SYSCALL "print('before', flush=True)\nprint('x32', sc(0x40000000 | 39))\n", NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "before");
    CHECK(strstr(jstr(&j, "stdout"), "x32") == NULL, "an x32 syscall returned: %s", jstr(&j, "stdout"));
    CHECK(jnum(&j, "signal") == SIGSYS, "expected death by SIGSYS, got signal %g exit %g", jnum(&j, "signal"), jnum(&j, "exit_code"));
    job_free(&j);
}

/* mov eax, 20 (i386 getpid); int 0x80; ret */
static const unsigned char int80_getpid[] = {0xb8, 0x14, 0, 0, 0, 0xcd, 0x80, 0xc3};

/* What this host does with `int 0x80` from a 64-bit process, outside any jail:
 * 0 when the kernel runs it (the 32-bit entry is reachable), else the signal
 * the host itself delivers (SIGSEGV on kernels built without IA32 emulation
 * or booted with ia32_emulation=0). */
static int host_int80_signal(void) {
    pid_t pid = fork();
    if (pid == 0) {
        void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED) _exit(3);
        memcpy(page, int80_getpid, sizeof int80_getpid);
        ((long (*)(void))page)();
        _exit(0);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    if (WIFSIGNALED(st)) return WTERMSIG(st);
    return WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void test_int80_abi_killed(void) {
    int host = host_int80_signal();
    if (host < 0) SKIP("could not probe what the host does with int 0x80 (no RWX page?)");
    /* Where the kernel would run it, the jail's filter must kill it (SIGSYS);
     * where the host itself faults, the job must die of that same fault. */
    int want = host == 0 ? SIGSYS : host;
    char code[1024];
    int n = snprintf(code, sizeof code,
                     "import ctypes, mmap\n"
                     "buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
                     "buf.write(bytes([");
    for (size_t i = 0; i < sizeof int80_getpid; i++) n += snprintf(code + n, sizeof code - (size_t)n, "%s%d", i ? ", " : "", int80_getpid[i]);
    snprintf(code + n, sizeof code - (size_t)n,
             "]))\n"
             "addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))\n"
             "f = ctypes.CFUNCTYPE(ctypes.c_long)(addr)\n"
             "print('before', flush=True)\n"
             "print('int80 returned', f())\n");
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "before");
    CHECK(strstr(jstr(&j, "stdout"), "int80 returned") == NULL, "int 0x80 returned: %s", jstr(&j, "stdout"));
    CHECK(jnum(&j, "signal") == want, "host %s, so expected signal %d, got signal %g: %s",
          host == 0 ? "runs int 0x80" : "faults on int 0x80", want, jnum(&j, "signal"), jstr(&j, "stderr"));
    if (host == 0) NOTE("host runs int 0x80; the jail kills it with SIGSYS");
    else NOTE("the host itself faults on int 0x80 (signal %d); so does the jail", host);
    job_free(&j);
}

static void test_tiocsti_blocked(void) {
    /* TIOCSTI with and without high bits set in the request word; and no tty to aim at. */
    struct job j;
    run_code(&j, "python",
             PY_SYSCALL
             "c = ctypes.c_char(b'x')\n"
             "for name, req in [('plain', 0x5412), ('highbit', 0x5412 | (1 << 32)), ('tioclinux', 0x541C | (1 << 40))]:\n"
             "    ctypes.set_errno(0)\n"
             "    r = libc.syscall(ctypes.c_long(16), ctypes.c_long(0), ctypes.c_ulong(req), ctypes.byref(c))\n"
             "    print(name, r, ctypes.get_errno())\n"
             "try:\n"
             "    open('/dev/tty'); print('TTY OPEN')\n"
             "except OSError as e:\n"
             "    print('no tty', e.errno)\n",
             NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "plain -1 1");
    CHECK_OUT_HAS(&j, "highbit -1 1");
    CHECK_OUT_HAS(&j, "tioclinux -1 1");
    CHECK_OUT_HAS(&j, "no tty");
    job_free(&j);
}

static void test_flock_denied(void) {
    check_syscalls_denied(
        "fd = os.open('/usr/bin/python3', os.O_RDONLY)\n"
        "print('flock_shared_file', sc(73, fd, 2 | 4))\n", NULL);
}

/* ------------------------------------------------------------ privileges */

static void test_capabilities_and_nnp(void) {
    struct job j;
    run_code(&j, "shell", "grep -E '^(Cap|NoNewPrivs|Seccomp:|Uid|Gid|Groups)' /proc/self/status; cat /proc/self/uid_map", NULL);
    CHECK_RAN(&j);
    const char *out = jstr(&j, "stdout");
    const char *caps[] = {"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000",
                          "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000",
                          "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2",
                          "Uid:\t1000\t1000\t1000\t1000", "Gid:\t1000\t1000\t1000\t1000"};
    for (size_t i = 0; i < sizeof caps / sizeof *caps; i++)
        CHECK(strstr(out, caps[i]) != NULL, "missing '%s' in: %s", caps[i], out);
    unsigned inside = 0, outside = 0, count = 0;
    const char *map = strstr(out, "      1000");
    CHECK(map && sscanf(map, "%u %u %u", &inside, &outside, &count) == 3, "no uid_map line: %s", out);
    CHECK(inside == 1000 && count == 1 && outside != 0, "uid map %u -> %u (%u): jobs must never be host root", inside, outside, count);
    job_free(&j);
}

static void test_setuid_binaries_powerless(void) {
    struct job j;
    run_code(&j, "shell",
             "ls -l /usr/bin/su | cut -c1-10; su -c 'id -u' root </dev/null 2>&1; echo su=$?; "
             "python3 -c 'import os; print(\"nosuid\", bool(os.statvfs(\"/usr\").f_flag & os.ST_NOSUID))'; id -u",
             NULL);
    CHECK_RAN(&j);
    const char *out = jstr(&j, "stdout");
    if (strstr(out, "No such file")) SKIP("no /usr/bin/su on this host");
    CHECK(strstr(out, "-rwsr") != NULL, "su is not setuid on the host, the test proves nothing: %s", out);
    CHECK(strstr(out, "su=0") == NULL, "su succeeded: %s", out);
    CHECK(strstr(out, "nosuid True") != NULL, "/usr is not nosuid: %s", out);
    CHECK(strstr(out, "\n0\n") == NULL && strstr(out, "1000\n") != NULL, "uid 0 reached: %s", out);
    job_free(&j);
}

static void test_init_not_inspectable(void) {
    /* pid 1 is the jail's init (non-dumpable): its memory, environment and fds are out of reach. */
    char code[] =
        "import os\n"
        "for p in ['/proc/1/mem', '/proc/1/environ', '/proc/1/fd']:\n"
        "    try:\n"
        "        (os.listdir(p) if p.endswith('fd') else open(p, 'rb').read(16)); print(p, 'OPEN')\n"
        "    except OSError as e:\n"
        "        print(p, 'DENIED', e.errno)\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "OPEN") == NULL, "init inspectable: %s", jstr(&j, "stdout"));
    job_free(&j);
}

static void test_no_leaked_fds(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/viv-leak-%d", (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT, 0600); /* deliberately inheritable */
    int fd2 = dup2(fd, 37);
    struct job j;
    run_code(&j, "python",
             "import os\n"
             "leaked = []\n"
             "for f in range(3, 1024):\n"
             "    try:\n"
             "        os.fstat(f); leaked.append(f)\n"
             "    except OSError:\n"
             "        pass\n"
             "print('FDS', leaked)\n",
             NULL);
    close(fd);
    close(fd2);
    unlink(path);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "FDS []");
    job_free(&j);
}

static void test_clean_environment(void) {
    setenv("VIV_TEST_SECRET", "hunter2", 1);
    struct job j;
    run_code(&j, "python", "import os\nprint(sorted(os.environ.items()))\n", NULL);
    unsetenv("VIV_TEST_SECRET");
    CHECK_RAN(&j);
    const char *out = jstr(&j, "stdout");
    CHECK(strstr(out, "hunter2") == NULL && strstr(out, "VIV_TEST_SECRET") == NULL, "host env leaked: %s", out);
    CHECK(strstr(out, "('HOME', '/work')") != NULL && strstr(out, "('PATH', '/usr/bin:/bin')") != NULL, "policy env missing: %s", out);
    job_free(&j);
}

static void test_no_controlling_terminal_and_own_session(void) {
    struct job j;
    run_code(&j, "python",
             "import os\n"
             "try:\n"
             "    os.open('/dev/tty', os.O_RDWR); print('TTY OPEN')\n"
             "except OSError as e:\n"
             "    print('no tty', e.errno)\n"
             "print('SID', os.getsid(0) == os.getpid(), 'PGID', os.getpgid(0) == os.getpid(), 'PID', os.getpid(), 'PPID', os.getppid())\n",
             NULL);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "no tty 6") || strstr(jstr(&j, "stdout"), "no tty 2"),
          "a terminal opened, or an odd error: %s", jstr(&j, "stdout")); /* ENXIO (no controlling terminal) or ENOENT */
    CHECK_OUT_HAS(&j, "SID True PGID True");
    /* cold: our init is pid 1 and the job pid 2; a zygote's request child
     * is pid 2 under a parent outside its namespace (0); a session's
     * interpreter runs under the session's keeper */
    const char *ids = strstr(jstr(&j, "stdout"), "PID ");
    NOTE("%.40s", ids ? ids : "");
    if (attack_path == PATH_COLD) CHECK_OUT_HAS(&j, "PID 2 PPID 1");
    job_free(&j);
}

/* ------------------------------------------------------------ cross-job */

static void test_concurrent_jobs_isolated(void) {
    char marker[32];
    snprintf(marker, sizeof marker, "%d.5", 500000 + (int)getpid() % 100000);
    char code_a[128];
    snprintf(code_a, sizeof code_a, "sleep %s", marker);
    struct job a, b;
    const char *args_a[] = {"run", "--json", "--tool", "shell", "--timeout-ms", "5000", "--code", code_a, NULL};
    job_start(&a, args_a);
    usleep(300 * 1000);
    char code_b[1024];
    snprintf(code_b, sizeof code_b,
             "import os, signal\n"
             "mine = [p for p in os.listdir('/proc') if p.isdigit()]\n"
             "seen = [open('/proc/%%s/cmdline' %% p).read() for p in mine]\n"
             "print('SEEN_A', any('%s' in s for s in seen), 'NPROCS', len(seen))\n"
             "hits = 0\n"
             "for pid in range(1, 4000):\n"
             "    if str(pid) in mine: continue\n"
             "    try:\n"
             "        os.kill(pid, 0); hits += 1\n"
             "    except OSError:\n"
             "        pass\n"
             "print('SIGNALABLE', hits)\n", marker);
    run_code(&b, "python", code_b, NULL);
    int a_alive_during_b = host_process_with_marker(marker);
    kill(a.pid, SIGTERM);
    job_finish(&a);
    CHECK_RAN(&b);
    CHECK(a_alive_during_b, "job a was not running while b looked: the test proves nothing");
    /* b sees its own jail only: our init (or a zygote's pid 1) and itself;
     * in a session, also the keeper of its interpreter */
    CHECK_OUT_HAS(&b, attack_path == PATH_SESSION ? "SEEN_A False NPROCS 3" : "SEEN_A False NPROCS 2");
    CHECK_OUT_HAS(&b, "SIGNALABLE 0");
    job_free(&a);
    job_free(&b);
}

static void test_sysv_ipc_neither_crosses_nor_outlives(void) {
    char code_a[] =
        "import ctypes, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('SHM', libc.shmget(0x7669, 4096, 0o1666), 'SEM', libc.semget(0x7669, 1, 0o1666), 'MSG', libc.msgget(0x7669, 0o1666), flush=True)\n"
        "time.sleep(2)\n";
    char code_b[] =
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('SHM', libc.shmget(0x7669, 0, 0), 'SEM', libc.semget(0x7669, 0, 0), 'MSG', libc.msgget(0x7669, 0))\n";
    struct job a, b, c;
    const char *args_a[] = {"run", "--json", "--tool", "python", "--timeout-ms", "5000", "--code", code_a, NULL};
    job_start(&a, args_a);
    usleep(700 * 1000);
    run_code(&b, "python", code_b, NULL); /* while a holds its objects */
    job_finish(&a);
    run_code(&c, "python", code_b, NULL); /* after a is gone */
    CHECK_RAN(&a);
    CHECK_RAN(&b);
    CHECK_RAN(&c);
    CHECK(strstr(jstr(&a, "stdout"), "SHM -1") == NULL && strstr(jstr(&a, "stdout"), "SHM ") != NULL,
          "job a could not create its objects: %s %s", jstr(&a, "stdout"), jstr(&a, "stderr"));
    CHECK_OUT_HAS(&b, "SHM -1 SEM -1 MSG -1");
    CHECK_OUT_HAS(&c, "SHM -1 SEM -1 MSG -1");
    char buf[65536] = "";
    int fd = open("/proc/sysvipc/shm", O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        close(fd);
    }
    CHECK(strstr(buf, "30313") == NULL, "the job's segment (key 0x7669 = 30313) is in the host's IPC namespace");
    job_free(&a);
    job_free(&b);
    job_free(&c);
}

/* A built-in policy as `viv policy check` shows it, less what is shown but
 * not written (origin, always_enforced, mount modes): a policy file's JSON. */
static cJSON *editable_policy(const char *tool) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "\"$VIV\" policy check %s", tool);
    FILE *in = popen(cmd, "r");
    if (!in) return NULL;
    static char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, in);
    pclose(in);
    text[n] = 0;
    cJSON *p = cJSON_Parse(text);
    if (!p) return NULL;
    cJSON_DeleteItemFromObject(p, "origin");
    cJSON_DeleteItemFromObject(p, "always_enforced");
    cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(p, "mounts")) cJSON_DeleteItemFromObject(m, "mode");
    return p;
}

static char *write_policy_with_data(void) {
    /* The python policy plus a read-only @db mount, as a policy file. */
    cJSON *p = editable_policy("python");
    if (!p) return NULL;
    cJSON *mounts = cJSON_GetObjectItem(p, "mounts");
    cJSON *db = cJSON_CreateObject();
    cJSON_AddStringToObject(db, "src", "@db");
    cJSON_AddStringToObject(db, "dst", "/data/db.sqlite");
    cJSON_AddItemToArray(mounts, db);
    cJSON_ReplaceItemInObject(p, "name", cJSON_CreateString("python-data"));
    char *out = cJSON_Print(p);
    cJSON_Delete(p);
    static char path[128];
    snprintf(path, sizeof path, "/tmp/viv-policy-%d.json", (int)getpid());
    put_file(path, out);
    free(out);
    return path;
}

static void test_file_locks_neither_cross_nor_outlive(void) {
    char db[128];
    snprintf(db, sizeof db, "/tmp/viv-lock-%d.db", (int)getpid());
    put_file(db, "data");
    char *policy = write_policy_with_data();
    CHECK(policy != NULL, "could not build the test policy");
    char code_a[] =
        "import fcntl, os, time\n"
        "fd = os.open('/data/db.sqlite', os.O_RDONLY)\n"
        "fcntl.lockf(fd, fcntl.LOCK_SH); print('LOCKED', flush=True)\n"
        "time.sleep(100)\n";
    char code_b[] =
        "import fcntl, os\n"
        "fd = os.open('/data/db.sqlite', os.O_RDONLY)\n"
        "fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB); print('SHARED OK')\n"
        "try:\n"
        "    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('EXCLUSIVE GOT')\n"
        "except OSError as e:\n"
        "    print('EXCLUSIVE DENIED', e.errno)\n"
        "try:\n"
        "    os.open('/data/db.sqlite', os.O_RDWR); print('RDWR OPEN')\n"
        "except OSError as e:\n"
        "    print('RDWR DENIED', e.errno)\n";
    char dbarg[160];
    snprintf(dbarg, sizeof dbarg, "%s", db);
    struct job a, b;
    const char *args_a[] = {"run", "--json", "--policy", policy, "--db", dbarg, "--timeout-ms", "1500", "--code", code_a, NULL};
    job_start(&a, args_a);
    usleep(600 * 1000);
    const char *args_b[] = {"run", "--json", "--policy", policy, "--db", dbarg, "--code", code_b, NULL};
    run_args(&b, args_b);
    job_finish(&a);
    /* After a's deadline its lock must be gone: the host can take a write lock. */
    int fd = open(db, O_RDWR);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int host_locked = fcntl(fd, F_SETLK, &fl) == 0;
    close(fd);
    unlink(db);
    unlink(policy);
    CHECK_RAN(&a);
    CHECK_RAN(&b);
    CHECK_OUT_HAS(&a, "LOCKED");
    CHECK(jtrue(&a, "timed_out"), "job a should have been killed at its deadline");
    CHECK_OUT_HAS(&b, "SHARED OK");
    CHECK_OUT_HAS(&b, "EXCLUSIVE DENIED 9"); /* EBADF: a read-only fd cannot take a write lock */
    CHECK_OUT_HAS(&b, "RDWR DENIED");        /* EROFS or EACCES */
    CHECK(host_locked, "the job's lock outlived the job");
    job_free(&a);
    job_free(&b);
}

/* How many job cgroups named after supervisor `pid` exist on the host. */
static int cgroups_of(pid_t pid) {
    char cmd[160], line[512];
    snprintf(cmd, sizeof cmd, "find /sys/fs/cgroup -maxdepth 5 -type d -name 'viv-%d-*' 2>/dev/null", (int)pid);
    FILE *f = popen(cmd, "r");
    int n = 0;
    while (f && fgets(line, sizeof line, f)) n++;
    if (f) pclose(f);
    return n;
}

static void test_interrupted_viv_kills_job_and_cleans_up(void) {
    char marker[32], code[96];
    snprintf(marker, sizeof marker, "%d.625", 300000 + (int)getpid() % 100000);
    snprintf(code, sizeof code, "( setsid sleep %s & ); sleep %s", marker, marker);
    struct job a;
    const char *args[] = {"run", "--tool", "shell", "--timeout-ms", "30000", "--code", code, NULL};
    job_start(&a, args);
    int started = 0;
    for (int i = 0; i < 100 && !started; i++) usleep(20000), started = host_process_with_marker(marker);
    int cgroups_during = cgroups_of(a.pid);
    kill(a.pid, SIGINT);
    job_finish(&a);
    int alive = host_process_with_marker(marker), cgroups_after = cgroups_of(a.pid);
    CHECK(started, "the job never started: %s", a.err);
    if (attack_path != PATH_COLD) { /* an interrupted client: the job must die with its connection */
        for (int i = 0; i < 100 && alive; i++) usleep(20000), alive = host_process_with_marker(marker);
        CHECK(!alive, "the job outlived its interrupted client");
        NOTE("vivd path: the job died with its client's connection");
        job_free(&a);
        return;
    }
    CHECK(WIFEXITED(a.status) && WEXITSTATUS(a.status) == 130, "viv exit status %d, want 130", a.status);
    CHECK(!alive, "the job outlived an interrupted viv");
    CHECK(cgroups_after == 0, "%d cgroups left behind (%d while running)", cgroups_after, cgroups_during);
    job_free(&a);
}

static void test_killed_supervisor_takes_the_job_down(void) {
    /* If viv itself dies (kill -9, OOM), nothing it started may live on. */
    char marker[32], code[96];
    snprintf(marker, sizeof marker, "%d.25", 600000 + (int)getpid() % 100000);
    snprintf(code, sizeof code, "( setsid sleep %s & ); sleep %s", marker, marker);
    struct job a;
    const char *args[] = {"run", "--json", "--tool", "shell", "--timeout-ms", "30000", "--code", code, NULL};
    job_start(&a, args);
    int started = 0;
    for (int i = 0; i < 50 && !started; i++) usleep(20000), started = host_process_with_marker(marker);
    kill(a.pid, SIGKILL);
    job_finish(&a);
    int alive = 1;
    for (int i = 0; i < 50 && alive; i++) usleep(20000), alive = host_process_with_marker(marker);
    CHECK(started, "the job never started: %s", a.err);
    CHECK(!alive, "the job's processes outlived a killed supervisor");
    if (attack_path != PATH_COLD) { /* the client was what died: its job went with its connection */
        NOTE("vivd path: a SIGKILLed client's job died with its connection");
        job_free(&a);
        return;
    }
    /* A SIGKILLed viv cannot remove its cgroups; the next job sweeps them. */
    struct job next;
    run_code(&next, "shell", "true", NULL);
    CHECK_RAN(&next);
    CHECK(cgroups_of(a.pid) == 0, "the killed viv's cgroups were not swept by the next job");
    job_free(&next);
    job_free(&a);
}

static void test_sql_tool_stays_a_query(void) {
    /* A query tool reads the database it was given and nothing else: no
     * programs, no other files read or written (the sqlite3 shell's fsdir,
     * readfile, writefile, edit and its dot-commands), no writes, no other
     * databases. Each attack must fail with a non-zero exit. */
    char db[128];
    snprintf(db, sizeof db, "/tmp/viv-sql-%d.db", (int)getpid());
    char cmd[256];
    snprintf(cmd, sizeof cmd, "python3 -c \"import sqlite3; c=sqlite3.connect('%s'); c.execute('create table t(a)'); c.execute('insert into t values(7)'); c.commit()\" && chmod 644 %s", db, db);
    CHECK(system(cmd) == 0, "could not create the test database");
    const char *attacks[] = {
        ".shell echo PWNED", ".system echo PWNED", ".output /work/out.txt\nselect 'PWNED';",
        "ATTACH DATABASE '/tmp/evil.db' AS e; create table e.x(a);", "select load_extension('/usr/lib/x86_64-linux-gnu/libz.so.1');",
        "insert into t values(8);", "pragma journal_mode=wal; delete from t;", ".read /etc/passwd", ".import /etc/passwd t",
        "select name, data from fsdir('/etc');", "select readfile('/etc/passwd');", "select readfile('/data/db.sqlite');",
        "select writefile('/work/w.txt', 'PWNED');", "select edit('PWNED', 'cat');", "VACUUM INTO '/tmp/copy.db';",
        ".trace /work/t.txt\nselect 'PWNED';", ".log /work/l.txt\nselect 'PWNED';", ".once /work/o.txt\nselect 'PWNED';",
        ".save /work/s.db", ".tables", "create temp table x(a);",
    };
    for (size_t i = 0; i < sizeof attacks / sizeof *attacks; i++) {
        struct job j;
        run_code(&j, "sql", attacks[i], (const char *const[]){"--db", db, NULL});
        CHECK_RAN(&j);
        int refused = jnum(&j, "exit_code") != 0 && strstr(jstr(&j, "stdout"), "PWNED") == NULL;
        char out[600];
        snprintf(out, sizeof out, "%.250s | %.250s", jstr(&j, "stdout"), jstr(&j, "stderr"));
        job_free(&j);
        if (!refused) {
            unlink(db);
            FAIL("'%s' was not refused: %s", attacks[i], out);
        }
    }
    struct job ok;
    run_code(&ok, "sql", "select a from t;", (const char *const[]){"--db", db, NULL});
    unlink(db);
    CHECK_RAN(&ok);
    CHECK(strcmp(jstr(&ok, "stdout"), "a\n7\n") == 0, "the database changed or the query failed: %s %s", jstr(&ok, "stdout"), jstr(&ok, "stderr"));
    job_free(&ok);
}

/* ------------------------------------------------------------ what a job learns about the host */


/* Read a host file's first line (no newline) into buf; "" if unreadable. */
static void host_first_line(const char *path, char *buf, size_t n) {
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (!fgets(buf, (int)n, f)) buf[0] = 0;
    fclose(f);
    buf[strcspn(buf, "\n")] = 0;
}

static void test_proc_shows_no_host_cgroup_cmdline_or_boot_id(void) {
    /* The host side first: which cgroup layout, and the values a job must not see. */
    bool v2_only = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
    char host_cmdline[4096], host_boot_id[64];
    host_first_line("/proc/cmdline", host_cmdline, sizeof host_cmdline);
    host_first_line("/proc/sys/kernel/random/boot_id", host_boot_id, sizeof host_boot_id);
    struct job j;
    run_code(&j, "shell",
             "cat /proc/self/cgroup; echo ===; cat /proc/cmdline; echo ===; cat /proc/sys/kernel/random/boot_id; echo ===; "
             "echo x > /proc/cmdline 2>/dev/null && echo CMDLINE-WRITTEN; echo ===", NULL);
    CHECK_RAN(&j);
    char *out = strdup(jstr(&j, "stdout"));
    char *part[5] = {0};
    int n = 0;
    for (char *p = out; n < 5 && p; n++) {
        part[n] = p;
        char *sep = strstr(p, "===\n");
        if (sep) *sep = 0, p = sep + 4;
        else p = NULL;
    }
    CHECK(n == 5, "unexpected output: %s / %s", jstr(&j, "stdout"), jstr(&j, "stderr"));
    /* every hierarchy's path is the namespace root: no host cgroup names */
    int lines = 0;
    for (char *l = strtok(part[0], "\n"); l; l = strtok(NULL, "\n"), lines++) {
        size_t len = strlen(l);
        CHECK(len >= 2 && strcmp(l + len - 2, ":/") == 0, "/proc/self/cgroup shows a path: '%s'", l);
    }
    CHECK(lines > 0, "no /proc/self/cgroup lines");
    CHECK(strcmp(part[1], "\n") == 0, "/proc/cmdline is not the fixed empty line: '%s'", part[1]);
    CHECK(!*host_cmdline || !strstr(part[1], host_cmdline), "the host's command line is visible");
    CHECK(strcmp(part[2], "00000000-0000-0000-0000-000000000000\n") == 0, "boot_id: '%s'", part[2]);
    CHECK(!*host_boot_id || !strstr(part[2], host_boot_id), "the host's boot id is visible");
    CHECK(!strstr(part[3], "CMDLINE-WRITTEN"), "the job could write over its /proc/cmdline mask");
    free(out);
    job_free(&j);
    NOTE("cgroup %s, %s: /proc/self/cgroup at the root in %d hierarchies", v2_only ? "v2" : "v1/hybrid",
         geteuid() == 0 ? "root (job in its own cgroup)" : "not root", lines);
}

static void test_prctl_memory_merge_denied(void) {
    /* PR_SET_MEMORY_MERGE (67) opts a process into KSM merging, a timing side
     * channel between tenants; its high-bit aliases too. Other prctl options
     * must still work (PR_SET_NO_NEW_PRIVS, PR_GET_DUMPABLE). */
    struct job j;
    run_code(&j, "python",
             PY_SYSCALL
             "print('merge', sc(157, 67, 1, 0, 0, 0))\n"
             "print('merge_highbit', sc(157, 67 | (1 << 32), 1, 0, 0, 0))\n"
             "print('nnp', sc(157, 38, 1, 0, 0, 0))\n"
             "print('dumpable', sc(157, 3, 0, 0, 0, 0))\n", NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "merge -1 1\n");
    CHECK_OUT_HAS(&j, "merge_highbit -1 1\n");
    CHECK_OUT_HAS(&j, "nnp 0 0\n");
    CHECK(strstr(jstr(&j, "stdout"), "dumpable -1") == NULL, "PR_GET_DUMPABLE failed: %s", jstr(&j, "stdout"));
    job_free(&j);
}

static void test_limits_reported(void) {
    struct job j;
    run_code(&j, "shell", "true", NULL);
    CHECK_RAN(&j);
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(j.json, "limits_not_applied");
    CHECK(cJSON_IsArray(l), "limits_not_applied missing: %s", j.out);
    /* On this kind of host (root, cgroup v1 or v2 memory+pids) everything applies;
     * elsewhere each missing limit must be named. */
    cJSON *it;
    cJSON_ArrayForEach(it, l) CHECK(cJSON_IsString(it) && strstr(it->valuestring, "cgroup"), "odd note: %s", j.out);
    if (geteuid() == 0 && access("/sys/fs/cgroup/pids", F_OK) == 0)
        CHECK(cJSON_GetArraySize(l) == 0, "root on a cgroup host, but: %s", j.out);
    job_free(&j);
}

static void test_pids_cgroup_or_rlimit_binds_threads(void) {
    /* Threads count as tasks: a thread bomb stops at the pids limit too. */
    char code[] =
        "import threading, time\n"
        "ts = []\n"
        "try:\n"
        "    for i in range(1000):\n"
        "        t = threading.Thread(target=time.sleep, args=(5,), daemon=True); t.start(); ts.append(t)\n"
        "except RuntimeError as e:\n"
        "    print('STOPPED', len(ts))\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    int n = -1;
    const char *s = strstr(jstr(&j, "stdout"), "STOPPED");
    CHECK(s && sscanf(s, "STOPPED %d", &n) == 1, "thread bomb not stopped: %s %s", jstr(&j, "stdout"), jstr(&j, "stderr"));
    CHECK(n < 64, "%d threads under a 64-task limit", n);
    job_free(&j);
}

/* The directory of this process's own cgroup for `controller` (v1), or in
 * the v2 hierarchy when controller is NULL; false when there is none. */
static bool own_cgroup_dir(const char *controller, char *dir, size_t len) {
    char line[4096], mnt[1024] = "", path[1024] = "";
    FILE *f = fopen("/proc/self/mountinfo", "re");
    while (f && fgets(line, sizeof line, f)) {
        char mp[1024], fs[64], opts[1024];
        const char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*s %*s %*s %*s %1023s", mp) != 1 ||
            sscanf(dash + 3, "%63s %*s %1023s", fs, opts) != 2)
            continue;
        if (!controller && strcmp(fs, "cgroup2") == 0) snprintf(mnt, sizeof mnt, "%s", mp);
        for (char *t = strtok(opts, ","); controller && strcmp(fs, "cgroup") == 0 && t; t = strtok(NULL, ","))
            if (strcmp(t, controller) == 0) snprintf(mnt, sizeof mnt, "%s", mp);
    }
    if (f) fclose(f);
    f = fopen("/proc/self/cgroup", "re");
    while (f && fgets(line, sizeof line, f)) { /* "N:controllers:path" */
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = 0;
        if (!controller && c1[1] == 0) snprintf(path, sizeof path, "%s", c2 + 1);
        for (char *t = strtok(c1 + 1, ","); controller && t; t = strtok(NULL, ","))
            if (strcmp(t, controller) == 0) snprintf(path, sizeof path, "%s", c2 + 1);
    }
    if (f) fclose(f);
    if (!mnt[0] || !path[0]) return false;
    snprintf(dir, len, "%s%s", mnt, strcmp(path, "/") == 0 ? "" : path);
    return true;
}

/* What the host offers this user for a job's CPU: a cpu controller it can
 * make job cgroups under ("cgroup v2 cpu", "cgroup v1 cpu"), or NULL. With
 * `accounting`, a cgroup that counts CPU time instead (every v2 cgroup does
 * in cpu.stat; v1 has cpuacct). */
static const char *host_cpu_cgroup(bool accounting) {
    char dir[2100], path[2200], text[512] = " ";
    if (own_cgroup_dir(NULL, dir, sizeof dir) && access(dir, W_OK) == 0) {
        snprintf(path, sizeof path, "%s/cgroup.controllers", dir);
        FILE *f = fopen(path, "re");
        size_t n = f ? fread(text + 1, 1, sizeof text - 3, f) : 0;
        if (f) fclose(f);
        strcpy(text + 1 + n, " ");
        for (char *c = text; *c; c++)
            if (*c == '\n') *c = ' ';
        /* the jail takes v2 when it offers memory and pids */
        if (strstr(text, " memory ") && strstr(text, " pids ")) {
            if (accounting) return "cgroup v2 cpu.stat";
            if (strstr(text, " cpu ")) return "cgroup v2 cpu";
        }
    }
    const char *v1 = accounting ? "cpuacct" : "cpu";
    if (own_cgroup_dir(v1, dir, sizeof dir) && access(dir, W_OK) == 0)
        return accounting ? "cgroup v1 cpuacct" : "cgroup v1 cpu";
    return NULL;
}

/* A built-in policy with one limit changed, as a policy file (path returned). */
static char *write_policy_with_limit(const char *tool, const char *key, long value) {
    cJSON *p = editable_policy(tool);
    if (!p) return NULL;
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(p, "limits"), key, cJSON_CreateNumber((double)value));
    char name[96];
    snprintf(name, sizeof name, "%s-limit-test", tool); /* python-*: the vivd paths serve it warm */
    cJSON_ReplaceItemInObject(p, "name", cJSON_CreateString(name));
    char *out = cJSON_Print(p);
    cJSON_Delete(p);
    static char path[192];
    snprintf(path, sizeof path, "/tmp/viv-policy-%s-%s-%ld-%d.json", tool, key, value, (int)getpid());
    put_file(path, out);
    free(out);
    return path;
}

/* Is `needle` in one of the job's limits_not_applied notes? */
static bool note_names(const struct job *j, const char *needle) {
    const cJSON *it, *l = cJSON_GetObjectItemCaseSensitive(j->json, "limits_not_applied");
    cJSON_ArrayForEach(it, l) if (cJSON_IsString(it) && strstr(it->valuestring, needle)) return true;
    return false;
}

/* A fixed amount of work for the job that shares the CPU; its share is the
 * CPU time it got per wall-clock ms. */
#define FIXED_LOOP "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done"

static double share_of(const struct job *j) {
    double wall = jnum(j, "wall_ms");
    return wall > 0 ? jnum(j, "cpu_ms") / wall : 0;
}

static void test_setsid_spinners_get_one_share(void) {
    /* Each setsid() makes a session, and with it an autogroup: without a cpu
     * cgroup of its own, a job of N such spinners has N shares of the CPU
     * against another job's one. With one, it has one share in all. */
    enum { SPINNERS = 10 };
    const char *controller = host_cpu_cgroup(false);
    char marker[40], hog[320];
    snprintf(marker, sizeof marker, "spin%d", 700000 + (int)getpid() % 100000);
    snprintf(hog, sizeof hog,
             "for i in $(seq %d); do setsid sh -c 'while :; do :; done # %s' & done; sleep 30",
             SPINNERS, marker);
    if (!controller) {
        struct job j;
        run_code(&j, "shell", "true", NULL);
        CHECK_RAN(&j);
        CHECK(note_names(&j, "cgroup cpu"), "no cpu controller here, yet not named: %s", j.out);
        NOTE("no cgroup cpu controller for this user: the job names it in limits_not_applied");
        job_free(&j);
        return;
    }
    /* The baseline: the fixed loop's share of the CPU on this host now. */
    struct job alone;
    run_code(&alone, "shell", FIXED_LOOP, NULL);
    CHECK_RAN(&alone);
    double share_alone = share_of(&alone);
    job_free(&alone);

    struct job a, b;
    const char *args[] = {"run", "--json", "--tool", "shell", "--timeout-ms", "30000", "--code", hog, NULL};
    job_start(&a, args);
    int started = 0;
    for (int i = 0; i < 250 && !started; i++) usleep(20000), started = host_process_with_marker(marker);
    usleep(200000); /* the rest of the spinners follow within a few ms */
    run_code(&b, "shell", FIXED_LOOP, NULL);
    kill(a.pid, SIGINT); /* the hog only lives while the other job runs */
    job_finish(&a);
    CHECK(started, "the spinners never started: %s", a.err);
    CHECK_RAN(&b);
    if (attack_path == PATH_COLD) {
        CHECK(a.json && note_names(&a, "cgroup") == false, "the hog's limits were not all applied: %s", a.out);
    } else { /* an interrupted client gets no answer: a job of the same tool through the same door tells */
        struct job probe;
        run_code(&probe, "shell", "true", NULL);
        CHECK(probe.json && note_names(&probe, "cgroup") == false, "the limits were not all applied: %s", probe.out);
        job_free(&probe);
    }
    double share_beside = share_of(&b), ratio = share_alone > 0 ? share_beside / share_alone : 0;
    /* Two jobs of equal weight: the fixed loop keeps at least about half of
     * what it gets alone (more on several CPUs). Ten autogroups against its
     * one would leave it 1/11 of that on one CPU, 2/11 on two. */
    CHECK(ratio >= 0.4, "beside %d setsid spinners the other job got %.2f of a CPU, alone %.2f (ratio %.2f)",
          SPINNERS, share_beside, share_alone, ratio);
    NOTE("%s: the other job's CPU share %.2f alone, %.2f beside %d setsid spinners (ratio %.2f)", controller,
         share_alone, share_beside, SPINNERS, ratio);
    job_free(&a);
    job_free(&b);
}

/* The same budget for python jobs, which the vivd paths serve warm: a
 * zygote request's tree is held to the policy's cpu_ms as a cold job is; a
 * session is held to session_cpu_ms over its life (the session is lost). */
static void test_python_cpu_budget_holds_across_forks(void) {
    enum { BUDGET_MS = 1000 };
    const char *accounting = host_cpu_cgroup(true);
    bool session = attack_path == PATH_SESSION;
    if (!accounting && attack_path != PATH_ZYGOTE)
        SKIP("no cgroup CPU accounting for this user (the shell variant asserts what holds then)");
    char *policy = write_policy_with_limit("python", session ? "session_cpu_ms" : "cpu_ms", BUDGET_MS);
    CHECK(policy != NULL, "could not build the test policy");
    const char *spin =
        "import os, time\n"
        "for i in range(4):\n"
        "    if os.fork() == 0:\n"
        "        while True: pass\n"
        "time.sleep(8)\n"
        "print('OUTLIVED')\n";
    struct job j;
    const char *args[] = {"run", "--json", "--policy", policy, "--timeout-ms", "10000", "--code", spin, NULL};
    run_args(&j, args);
    CHECK_RAN(&j);
    double cpu = jnum(&j, "cpu_ms");
    CHECK(strstr(jstr(&j, "stdout"), "OUTLIVED") == NULL && jnum(&j, "signal") == SIGKILL && !jtrue(&j, "timed_out"),
          "four parallel spinners were not stopped at the CPU budget: %s", j.out);
    if (session) CHECK(jtrue(&j, "session_lost"), "the session outlived its CPU budget: %s", j.out);
    else CHECK(jtrue(&j, "cpu_exceeded"), "not reported as cpu_exceeded: %s", j.out);
    CHECK(cpu >= BUDGET_MS * 0.9 && cpu < BUDGET_MS * 1.6, "cpu_ms %.0f for a %d ms budget", cpu, BUDGET_MS);
    NOTE("four forked python spinners stopped at %.0f ms of CPU for a %d ms budget (%.0f ms wall)", cpu, BUDGET_MS,
         jnum(&j, "wall_ms"));
    job_free(&j);
}

static void test_cpu_budget_holds_across_forks(void) {
    /* RLIMIT_CPU is per process: a job that forks spinners in parallel would
     * spend N times it. The budget counts the job's processes together. */
    enum { BUDGET_MS = 1000 };
    const char *accounting = host_cpu_cgroup(true);
    char *policy = write_policy_with_limit("shell", "cpu_ms", BUDGET_MS);
    CHECK(policy != NULL, "could not build the test policy");
    /* Without accounting each spinner spends its own RLIMIT_CPU (2 s): fewer. */
    const char *spin = accounting ? "for i in 1 2 3 4; do (while :; do :; done) & done; wait; echo OUTLIVED"
                                  : "for i in 1 2; do (while :; do :; done) & done; wait; echo OUTLIVED";
    struct job j;
    const char *args[] = {"run", "--json", "--policy", policy, "--timeout-ms", "10000", "--code", spin, NULL};
    run_args(&j, args);
    unlink(policy);
    CHECK_RAN(&j);
    double cpu = jnum(&j, "cpu_ms");
    if (!accounting) {
        /* Without cgroup CPU accounting only each process is held (to the
         * budget rounded up + 1 s): the job ends long before its deadline. */
        CHECK(note_names(&j, "cgroup cpu accounting"), "no CPU accounting here, yet not named: %s", j.out);
        CHECK(!jtrue(&j, "timed_out") && strstr(jstr(&j, "stdout"), "OUTLIVED"),
              "the spinners were not each stopped by RLIMIT_CPU: %s", j.out);
        NOTE("no cgroup CPU accounting for this user: named in limits_not_applied; each process stopped alone at RLIMIT_CPU (job %.0f ms CPU)", cpu);
        job_free(&j);
        return;
    }
    CHECK(jtrue(&j, "cpu_exceeded") && !jtrue(&j, "timed_out") && jnum(&j, "signal") == SIGKILL,
          "four parallel spinners were not stopped at the job's CPU budget: %s", j.out);
    CHECK(strstr(jstr(&j, "stdout"), "OUTLIVED") == NULL, "the job went on past its budget: %s", j.out);
    CHECK(cpu >= BUDGET_MS && cpu < BUDGET_MS * 1.5, "cpu_ms %.0f for a %d ms budget", cpu, BUDGET_MS);
    NOTE("%s: four parallel spinners stopped at %.0f ms of CPU for a %d ms budget (%.0f ms wall)", accounting,
         cpu, BUDGET_MS, jnum(&j, "wall_ms"));
    job_free(&j);
}

/* the r policy's attacks: one translation unit with the rest (harness.h) */
#include "attacks_r.c"
/* the attacks on a policy with an egress allowlist, with these runners */
#include "egress_attacks.c"

int main(int argc, char **argv) {
    viv_bin = getenv("VIV") ? getenv("VIV") : "build/asan/viv";
    setenv("VIV", viv_bin, 1);
    const char *path = getenv("ATTACK_PATH") ? getenv("ATTACK_PATH") : "cold";
    for (int i = 0; i < 3; i++)
        if (strcmp(path, path_names[i]) == 0) attack_path = (enum attack_path)i;
    if (strcmp(path, path_names[attack_path]) != 0) {
        fprintf(stderr, "ATTACK_PATH=%s: use cold, zygote or session\n", path);
        return 2;
    }
    vivd_bin = getenv("VIVD") ? getenv("VIVD") : "bin/vivd";
    atexit(vivds_stop);
    static const struct test_case tests[] = {
#define T(name) {#name, test_##name}
        T(host_file_unreadable), T(host_paths_not_writable), T(no_path_to_host_root),
        T(tmp_private_per_job), T(symlink_escape), T(proc_sys_and_sysrq_not_writable),
        T(tcp_to_host_listener), T(udp_to_host), T(raw_netlink_packet_sockets),
        T(network_namespace_empty), T(fork_bomb_bounded), T(shell_fork_bomb_killed_at_deadline),
        T(memory_bomb), T(disk_fill_bounded), T(file_size_limit), T(output_flood_capped),
        T(busy_loop_deadline), T(sleepers_dead_after_deadline), T(sleepers_dead_after_exit),
        T(ptrace_and_process_vm), T(mount_family), T(unshare_setns_nested_userns),
        T(nested_userns_capped_even_without_seccomp), T(keyctl_bpf_perf_userfaultfd_iouring),
        T(kexec_and_modules), T(device_nodes_cannot_be_made), T(foreign_processes_unreachable), T(x32_abi_killed), T(int80_abi_killed), T(tiocsti_blocked),
        T(flock_denied), T(capabilities_and_nnp), T(setuid_binaries_powerless),
        T(init_not_inspectable), T(no_leaked_fds), T(clean_environment),
        T(no_controlling_terminal_and_own_session), T(concurrent_jobs_isolated),
        T(sysv_ipc_neither_crosses_nor_outlives), T(file_locks_neither_cross_nor_outlive),
        T(limits_reported), T(pids_cgroup_or_rlimit_binds_threads),
        T(killed_supervisor_takes_the_job_down), T(interrupted_viv_kills_job_and_cleans_up),
        T(sql_tool_stays_a_query), T(proc_shows_no_host_cgroup_cmdline_or_boot_id),
        T(prctl_memory_merge_denied), T(setsid_spinners_get_one_share), T(cpu_budget_holds_across_forks),
        T(python_cpu_budget_holds_across_forks),
        T(r_host_file_unreadable), T(r_host_paths_not_writable), T(r_network_refused), T(r_syscalls_denied),
        T(r_deadline_kills_everything),
        T(python_cpu_budget_holds_across_forks), EGRESS_ATTACKS,
#undef T
    };
    return run_test_cases(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
}
