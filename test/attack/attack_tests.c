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

/* the attacks, by area, in this translation unit with the runners above */
#include "attacks_filesystem_network.c"
#include "attacks_resources.c"
#include "attacks_syscalls_privileges.c"
#include "attacks_cross_job.c"
#include "attacks_host_info.c"
#include "attacks_r.c"
#include "attacks_egress.c" /* a policy with an egress allowlist */

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
        EGRESS_ATTACKS,
#undef T
    };
    return run_test_cases(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
}
