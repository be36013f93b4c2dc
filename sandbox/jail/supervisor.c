/*
 * supervisor.c - jail_run(): start one job, watch it, report.
 *
 * The supervisor stays outside the jail. It prepares the channels, creates
 * the job's cgroups, clones the jail's init into new namespaces, writes its
 * uid/gid maps, and then runs one poll loop until the init is gone:
 *   - stdout and stderr are read into buffers capped at the policy's
 *     output_bytes each; the rest is read, counted and thrown away, so a job
 *     that floods its output can neither block nor exhaust the supervisor;
 *   - the code text is fed to the init through a socket (non-blocking, so a
 *     large text cannot deadlock against output);
 *   - the job's CPU time, summed over all its processes by its cgroup, is
 *     held to the policy's budget (cpu_ms, or session_cpu_ms for a session's
 *     whole life): once it is spent the job is stopped as at its deadline and
 *     the result says cpu_exceeded. RLIMIT_CPU holds each process alone to
 *     it too, the only line where the host gives no cgroup CPU accounting;
 *   - at the deadline the init gets SIGKILL. Killing a pid namespace's init
 *     makes the kernel kill every process in the namespace, including
 *     double-forked, setsid'd daemons, and the init's exit only completes once
 *     they are all gone;
 *   - the init's exit is noticed through a pidfd (or, on kernels without
 *     pidfd_open, a short poll period and waitpid(WNOHANG)).
 * CPU time is the job cgroup's count where there is one (it also holds
 * processes the kernel killed without the init reaping them), else
 * wait4()'s rusage of the init, which includes every descendant it reaped;
 * peak RSS comes from that rusage.
 */
#define _GNU_SOURCE
#include "jail.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "egress.h"
#include "init.h"
#include "namespaces.h"
#include "syscall_filter.h"
#include "../base/util.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* A capped capture buffer for one output stream. */
struct capture {
    char *buf;
    size_t len, cap, dropped;
    int fd;
};

static void capture_read(struct capture *c) {
    char tmp[65536];
    for (;;) {
        ssize_t r = read(c->fd, tmp, sizeof tmp);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) return;
        if (r <= 0) { /* EOF or error: this stream is done */
            close(c->fd);
            c->fd = -1;
            return;
        }
        size_t keep = (size_t)r;
        if (c->len + keep > c->cap) keep = c->cap - c->len;
        memcpy(c->buf + c->len, tmp, keep);
        c->len += keep;
        c->dropped += (size_t)r - keep;
    }
}

/* Resolve each policy mount's host source: a literal path, or "@name" from
 * the caller's data. A required parameter that was not given is an error. */
static int resolve_binds(const struct jail_spec *spec, const char **src, char *err, size_t errlen) {
    const struct policy *p = spec->policy;
    for (int i = 0; i < p->nmounts; i++) {
        const struct policy_mount *m = &p->mounts[i];
        src[i] = NULL;
        if (m->src[0] != '@') {
            src[i] = m->src;
            continue;
        }
        for (int j = 0; j < spec->ndata; j++)
            if (strcmp(spec->data[j].name, m->src + 1) == 0) src[i] = spec->data[j].path;
        if (!src[i] && !m->optional) {
            snprintf(err, errlen, "policy '%s' needs data '%s' (for %s): none given", p->name,
                     m->src + 1, m->dst);
            return -1;
        }
        if (src[i] && src[i][0] != '/') {
            snprintf(err, errlen, "data '%s': '%s' must be an absolute path", m->src + 1, src[i]);
            return -1;
        }
    }
    return 0;
}

struct heap_copies {
    char **argv;
    char *bind_src[POLICY_MAX_MOUNTS];
    int nbind;
};

static void heap_copy(struct heap_copies *c, char *const *argv, const char **bind_src, int nbind) {
    int n = 0;
    while (argv[n]) n++;
    c->argv = xcalloc((size_t)n + 1, sizeof *c->argv);
    for (int i = 0; i < n; i++) c->argv[i] = xstrdup(argv[i]);
    c->nbind = nbind;
    for (int i = 0; i < nbind; i++) c->bind_src[i] = bind_src[i] ? xstrdup(bind_src[i]) : NULL;
}

static void heap_copy_free(struct heap_copies *c) {
    for (int i = 0; c->argv && c->argv[i]; i++) free(c->argv[i]);
    free(c->argv);
    for (int i = 0; i < c->nbind; i++) free(c->bind_src[i]);
    memset(c, 0, sizeof *c);
}

static void set_nonblock(int fd) {
    if (fd >= 0) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void close_if_open(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* The job's stdout pipe, or in interactive mode the caller's fds: then
 * out[0] stays -1 (nothing to capture) and *in_fd is the job's stdin. The
 * copies are >= 3 so the job's dup2() onto 0 and 1 cannot clobber them. */
/* Looking at the CPU budget: how often. A check reads one cgroup file. */
enum { CPU_CHECK_MIN_MS = 5, CPU_CHECK_MAX_MS = 1000 };

/* How long until the job could have spent its CPU budget at the earliest
 * (every CPU busy for it), in ms, so that the next look can wait that long;
 * 0 when it is spent; -1 when the host gives no cgroup CPU accounting. */
static int cpu_budget_left_ms(const struct job_cgroup *cg, long budget_ms, long ncpu) {
    double used = cgroup_cpu_ms(cg);
    if (used < 0) return -1;
    if (used >= (double)budget_ms) return 0;
    double wait = ((double)budget_ms - used) / (double)ncpu;
    return wait < CPU_CHECK_MIN_MS ? CPU_CHECK_MIN_MS : wait > CPU_CHECK_MAX_MS ? CPU_CHECK_MAX_MS : (int)wait;
}

static int open_job_stdio(const struct jail_spec *spec, int out[2], int *in_fd) {
    if (!spec->stdio) return pipe2(out, O_CLOEXEC);
    out[0] = -1;
    out[1] = fcntl(spec->stdio->out_fd, F_DUPFD_CLOEXEC, 3);
    *in_fd = fcntl(spec->stdio->in_fd, F_DUPFD_CLOEXEC, 3);
    return out[1] < 0 || *in_fd < 0 ? -1 : 0;
}

/* stdin, files and fetch_files: allowed here, within the policy's
 * files_bytes, named inside the job directory, not over the code file. */
static int check_job_files(const struct jail_spec *spec, char *err, size_t errlen) {
    const struct policy *p = spec->policy;
    bool any = spec->stdin_given || spec->nfiles > 0 || spec->nfetch > 0;
    if (any && spec->stdio) return fail_with(err, errlen, "stdin, files and fetch_files are for one-shot jobs");
    if (spec->stdin_given && p->stdin_path)
        return fail_with(err, errlen, "policy '%s' reads its code on stdin: it takes no stdin of its own", p->name);
    if (spec->nfiles > JOB_FILES_MAX || spec->nfetch > JOB_FILES_MAX)
        return fail_with(err, errlen, "at most %d files and %d fetch_files", JOB_FILES_MAX, JOB_FILES_MAX);
    size_t total = spec->stdin_given ? spec->stdin_len : 0;
    const char *code_name = p->code_path && strncmp(p->code_path, JOB_DIR "/", sizeof JOB_DIR) == 0
                                ? p->code_path + sizeof JOB_DIR : NULL;
    for (int i = 0; i < spec->nfiles; i++) {
        if (job_path_check(spec->files[i].name, err, errlen)) return -1;
        if (spec->code && code_name && strcmp(spec->files[i].name, code_name) == 0)
            return fail_with(err, errlen, "file '%s' is where the code goes (%s)", code_name, p->code_path);
        for (int k = 0; k < i; k++)
            if (strcmp(spec->files[k].name, spec->files[i].name) == 0)
                return fail_with(err, errlen, "file '%.64s' is given twice", spec->files[i].name);
        total += spec->files[i].len;
    }
    for (int i = 0; i < spec->nfetch; i++)
        if (job_path_check(spec->fetch[i], err, errlen)) return -1;
    if (total > (size_t)p->limits.files_bytes)
        return fail_with(err, errlen, "stdin and files are %zu bytes; policy '%s' accepts at most %ld (files_bytes)",
                         total, p->name, p->limits.files_bytes);
    return 0;
}

/* The request's stdin as a sealed memfd the job reads from (fd >= 3, so
 * the job's dup2() onto 0-2 cannot clobber it), or -1 with errno. */
static int stdin_memfd(const char *data, size_t len) {
    int fd = memfd_create("viv-stdin", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    if (write_all(fd, data, len) != 0 || lseek(fd, 0, SEEK_SET) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
        int e = errno;
        close(fd);
        return errno = e, -1;
    }
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return high;
}

int jail_run(const struct jail_spec *spec, struct jail_result *res, char *err, size_t errlen) {
    const struct policy *p = spec->policy;
    memset(res, 0, sizeof *res);
    res->exit_code = -1;
    long timeout_ms = spec->timeout_ms > 0 ? spec->timeout_ms : p->limits.timeout_ms;
    long memory_mb = spec->memory_mb > 0 ? spec->memory_mb : p->limits.memory_mb;
    long timeout_max = spec->session_lifetime ? p->limits.session_ms_max : p->limits.timeout_ms_max;
    /* A zygote has no CPU budget of its own (0): it serves many requests
     * over its life, each bounded by its deadline and RLIMIT_CPU, and a
     * lifetime budget would end a busy zygote in the middle of a request.
     * Its cgroup still gives it one fair share. */
    long cpu_budget_ms = spec->zygote ? 0 : spec->session_lifetime ? p->limits.session_cpu_ms : p->limits.cpu_ms;
    if (timeout_ms > timeout_max) {
        snprintf(err, errlen, "timeout %ld ms exceeds policy '%s' maximum %ld ms", timeout_ms,
                 p->name, timeout_max);
        return JAIL_BAD_REQUEST;
    }
    if (spec->zygote && !spec->stdio) {
        snprintf(err, errlen, "a zygote runs in interactive mode only");
        return JAIL_BAD_REQUEST;
    }
    if (spec->code && !p->code_path) {
        snprintf(err, errlen, "policy '%s' takes no code (it has no code_path)", p->name);
        return JAIL_BAD_REQUEST;
    }
    if (spec->code && spec->code_len > (size_t)p->limits.code_bytes) {
        snprintf(err, errlen, "code is %zu bytes; policy '%s' accepts at most %ld", spec->code_len,
                 p->name, p->limits.code_bytes);
        return JAIL_BAD_REQUEST;
    }
    if (check_job_files(spec, err, errlen)) return JAIL_BAD_REQUEST;
    char *const *argv = spec->argv ? spec->argv : p->argv;
    if (!argv[0] || argv[0][0] != '/') {
        snprintf(err, errlen, "the command must be an absolute path inside the jail (got '%s')",
                 argv[0] ? argv[0] : "");
        return JAIL_BAD_REQUEST;
    }
    const char *bind_src[POLICY_MAX_MOUNTS];
    if (resolve_binds(spec, bind_src, err, errlen)) return JAIL_BAD_REQUEST;
    /* The init scrubs the argument and environment areas it inherits (see
     * init.c), so everything it reads must live on the heap. */
    struct heap_copies copies;
    heap_copy(&copies, argv, bind_src, p->nmounts);
    argv = copies.argv;
    for (int i = 0; i < p->nmounts; i++) bind_src[i] = copies.bind_src[i];

    int sync_pipe[2] = {-1, -1}, status_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1},
        err_pipe[2] = {-1, -1}, code_sock[2] = {-1, -1}, in_fd = -1, fetch_pipe[2] = {-1, -1},
        egress_sock[2] = {-1, -1};
    bool egress = p->network.nrules > 0;
    if (pipe2(sync_pipe, O_CLOEXEC) || pipe2(status_pipe, O_CLOEXEC) || open_job_stdio(spec, out_pipe, &in_fd) ||
        pipe2(err_pipe, O_CLOEXEC) || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, code_sock) ||
        (spec->stdin_given && (in_fd = stdin_memfd(spec->stdin_data, spec->stdin_len)) < 0) ||
        (spec->nfetch > 0 && pipe2(fetch_pipe, O_CLOEXEC)) ||
        (egress && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, egress_sock))) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        heap_copy_free(&copies);
        int *all[] = {&sync_pipe[0], &sync_pipe[1], &status_pipe[0], &status_pipe[1], &out_pipe[0],
                      &out_pipe[1], &err_pipe[0], &err_pipe[1], &code_sock[0], &code_sock[1], &in_fd,
                      &fetch_pipe[0], &fetch_pipe[1], &egress_sock[0], &egress_sock[1]};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) close_if_open(all[i]);
        return JAIL_SETUP_FAILED;
    }

    struct host_ids ids;
    ns_choose_host_ids(&ids);
    char **egress_env = egress ? egress_job_env(p) : NULL;

    struct init_context ctx = {
        .policy = p, .argv = argv, .bind_src = bind_src, .timeout_ms = timeout_ms,
        .memory_mb = memory_mb, .cpu_ms = cpu_budget_ms ? cpu_budget_ms : timeout_ms, .has_code = spec->code != NULL, .zygote = spec->zygote,
        .drop_supplementary_groups = ids.caller_is_root, .sync_fd = sync_pipe[0],
        .status_fd = status_pipe[1], .code_fd = code_sock[1], .out_fd = out_pipe[1],
        .err_fd = err_pipe[1], .in_fd = in_fd,
        .files = spec->files, .nfiles = spec->nfiles, .fetch = spec->fetch, .nfetch = spec->nfetch,
        .fetch_fd = fetch_pipe[1], .fetch_budget = (size_t)p->limits.files_bytes,
        .env = egress_env ? egress_env : p->env, .egress_fd = egress_sock[1],
    };
    double t0 = now_ms();
    pid_t pid = ns_clone();
    if (pid == 0) jail_init_main(&ctx);
    int clone_errno = errno;
    close(sync_pipe[0]);
    close(status_pipe[1]);
    close(code_sock[1]);
    close(out_pipe[1]);
    close(err_pipe[1]);
    close_if_open(&in_fd);
    close_if_open(&fetch_pipe[1]);
    close_if_open(&egress_sock[1]);
    egress_env_free(egress_env); /* the child has its own copy */
    if (pid < 0) {
        snprintf(err, errlen, "clone into new namespaces: %s%s", strerror(clone_errno),
                 clone_errno == EPERM || clone_errno == ENOSPC
                     ? " (are unprivileged user namespaces disabled? see /proc/sys/user/max_user_namespaces)"
                     : "");
        close(sync_pipe[1]), close(status_pipe[0]), close(code_sock[0]), close(out_pipe[0]), close(err_pipe[0]);
        close_if_open(&fetch_pipe[0]);
        close_if_open(&egress_sock[0]);
        heap_copy_free(&copies);
        return JAIL_SETUP_FAILED;
    }

    heap_copy_free(&copies); /* the child has its own copies */
    char setup_err[512] = "";
    if (ns_write_id_maps(pid, &ids, setup_err, sizeof setup_err) == 0 &&
        write_all(sync_pipe[1], "g", 1) != 0)
        snprintf(setup_err, sizeof setup_err, "start the jail: %s", strerror(errno));
    close(sync_pipe[1]);

    /* While the init builds the root filesystem (on the other core), join
     * it to the job's cgroups and compile the seccomp filter. The init reads
     * the filter before it forks the job, so the job starts inside the
     * cgroups and under the filter. */
    struct job_cgroup cg;
    struct cgroup_limits cg_limits = {memory_mb, p->limits.pids + 1, p->limits.cpu_weight};
    cgroup_create(&cg, &cg_limits, res->limits_not_applied, sizeof res->limits_not_applied);
    cgroup_attach(&cg, pid, res->limits_not_applied, sizeof res->limits_not_applied);
    bool watch_cpu = cpu_budget_ms > 0 && cgroup_cpu_ms(&cg) >= 0;
    if (!watch_cpu && cpu_budget_ms > 0)
        notes_add(res->limits_not_applied, sizeof res->limits_not_applied,
                  "cgroup cpu accounting: none, so the %ld ms CPU budget holds for each process alone (RLIMIT_CPU), not for the job", cpu_budget_ms);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1) ncpu = 1;
    double next_cpu_check = 0;
    struct sock_fprog filter = {0, NULL};
    const struct sock_fprog *prog = spec->filter ? spec->filter : &filter;
    if (!setup_err[0] && !spec->filter)
        (void)syscall_filter_compile(&p->seccomp, &filter, setup_err, sizeof setup_err);
    /* What goes down the code channel: [u32 n][n BPF instructions][code]. */
    size_t send_len = 0;
    char *sendbuf = NULL;
    if (!setup_err[0]) {
        uint32_t n = prog->len;
        size_t bpf_bytes = (size_t)n * sizeof(struct sock_filter);
        send_len = sizeof n + bpf_bytes + (spec->code ? spec->code_len : 0);
        sendbuf = xmalloc(send_len);
        memcpy(sendbuf, &n, sizeof n);
        memcpy(sendbuf + sizeof n, prog->filter, bpf_bytes);
        if (spec->code) memcpy(sendbuf + sizeof n + bpf_bytes, spec->code, spec->code_len);
    }
    syscall_filter_free(&filter);
    if (setup_err[0]) kill(pid, SIGKILL);
    enum { KILL_GRACE_MS = 500 };
    struct capture out = {xmalloc((size_t)p->limits.output_bytes + 1), 0, (size_t)p->limits.output_bytes, 0, out_pipe[0]};
    struct capture errc = {xmalloc((size_t)p->limits.output_bytes + 1), 0, (size_t)p->limits.output_bytes, 0, err_pipe[0]};
    /* the fetched files' records: their content within files_bytes, plus framing */
    size_t fetch_cap = spec->nfetch ? (size_t)p->limits.files_bytes + (size_t)spec->nfetch * (JOB_FILE_NAME_MAX + 16) : 0;
    struct capture fetched = {xmalloc(fetch_cap + 1), 0, fetch_cap, 0, fetch_pipe[0]};
    set_nonblock(out.fd);
    set_nonblock(errc.fd);
    set_nonblock(fetched.fd);
    int code_fd = code_sock[0];
    size_t code_off = 0;
    if (sendbuf) set_nonblock(code_fd);
    else close_if_open(&code_fd);

    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    double deadline = t0 + (double)timeout_ms;
    bool exited = false, killed = setup_err[0] != 0;
    double exited_at = 0;
    bool hard_killed = setup_err[0] != 0;
    int wstatus = 0;
    struct egress_proxy proxy = {0, -1};
    struct rusage ru;
    memset(&ru, 0, sizeof ru);

    while (!exited || out.fd >= 0 || errc.fd >= 0 || fetched.fd >= 0) {
        struct pollfd fds[7];
        int n = 0, i_out = -1, i_err = -1, i_code = -1, i_pid = -1, i_cancel = -1, i_fetch = -1, i_egress = -1;
        if (egress_sock[0] >= 0) i_egress = n, fds[n++] = (struct pollfd){egress_sock[0], POLLIN, 0};
        if (fetched.fd >= 0) i_fetch = n, fds[n++] = (struct pollfd){fetched.fd, POLLIN, 0};
        if (!killed && spec->cancel_fd >= 0) i_cancel = n, fds[n++] = (struct pollfd){spec->cancel_fd, POLLIN, 0};
        if (out.fd >= 0) i_out = n, fds[n++] = (struct pollfd){out.fd, POLLIN, 0};
        if (errc.fd >= 0) i_err = n, fds[n++] = (struct pollfd){errc.fd, POLLIN, 0};
        if (code_fd >= 0) i_code = n, fds[n++] = (struct pollfd){code_fd, POLLOUT, 0};
        if (!exited && pidfd >= 0) i_pid = n, fds[n++] = (struct pollfd){pidfd, POLLIN, 0};
        double now = now_ms();
        if (watch_cpu && !killed && !exited && now >= next_cpu_check) {
            int left = cpu_budget_left_ms(&cg, cpu_budget_ms, ncpu);
            if (left == 0) {
                res->cpu_exceeded = true;
                deadline = now; /* handled below exactly like the deadline */
            }
            watch_cpu = left != 0 && left != -1;
            next_cpu_check = now + left;
        }
        int wait = exited || hard_killed ? 0 : (int)(deadline - now + 1);
        if (watch_cpu && !killed && !exited && wait > (int)(next_cpu_check - now + 1))
            wait = (int)(next_cpu_check - now + 1);
        if (wait < 0) wait = 0;
        if (!exited && pidfd < 0 && wait > 10) wait = 10;
        int pr = poll(fds, (nfds_t)n, exited ? 100 : hard_killed ? 10 : wait);
        if (pr < 0 && errno != EINTR) break;
        if (i_out >= 0 && fds[i_out].revents) capture_read(&out);
        if (i_err >= 0 && fds[i_err].revents) capture_read(&errc);
        if (i_fetch >= 0 && fds[i_fetch].revents) capture_read(&fetched);
        if (i_code >= 0 && fds[i_code].revents) {
            ssize_t w = send(code_fd, sendbuf + code_off, send_len - code_off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) code_off += (size_t)w;
            if ((w < 0 && errno != EAGAIN && errno != EINTR) || code_off == send_len)
                close_if_open(&code_fd);
        }
        if (i_egress >= 0 && fds[i_egress].revents) {
            /* The init's listener: start the job's proxy. Without it the job
             * could not run as its policy says, so that is a setup error. */
            if ((fds[i_egress].revents & POLLIN) && !setup_err[0] &&
                egress_proxy_start(egress_sock[0], p, ids.caller_is_root, ids.uid, ids.gid, &proxy, setup_err,
                                   sizeof setup_err) != 0 && !killed) {
                kill(pid, SIGKILL);
                killed = hard_killed = true;
            }
            close_if_open(&egress_sock[0]);
        }
        if (i_cancel >= 0 && fds[i_cancel].revents) {
            res->cancelled = true;
            deadline = now_ms(); /* handled below exactly like the deadline */
        }
        if (!exited) {
            pid_t w = wait4(pid, &wstatus, WNOHANG, &ru);
            if (w == pid) exited = true, exited_at = now_ms();
            else if (now_ms() >= deadline && !killed) {
                /* Ask init to kill and reap the namespace (CPU time stays
                 * counted); SIGKILL it if that takes longer than the grace. */
                kill(pid, INIT_DEADLINE_SIGNAL);
                killed = true;
                res->timed_out = !res->cancelled && !res->cpu_exceeded;
                deadline = now_ms() + KILL_GRACE_MS;
            } else if (killed && now_ms() >= deadline && !hard_killed) {
                kill(pid, SIGKILL);
                hard_killed = true;
            }
        } else if (now_ms() - exited_at > 1000) {
            break; /* cannot happen (every writer died with the namespace); never hang on it */
        } else if (pr == 0) {
            /* The init and with it every process of the namespace is gone,
             * so every writer is closed; a quiet pipe now means EOF pending. */
            if (out.fd >= 0) capture_read(&out);
            if (errc.fd >= 0) capture_read(&errc);
            if (fetched.fd >= 0) capture_read(&fetched);
        }
        (void)i_pid;
    }
    res->wall_ms = now_ms() - t0;
    egress_proxy_stop(&proxy); /* every connection of the job closes now */
    close_if_open(&egress_sock[0]);
    close_if_open(&code_fd);
    free(sendbuf);
    close_if_open(&out.fd);
    close_if_open(&errc.fd);
    close_if_open(&fetched.fd);
    close_if_open(&pidfd);
    if (spec->nfetch) res->fetched = fetched.buf, res->fetched_len = fetched.len;
    else free(fetched.buf);

    /* What did the init report? */
    char rec[1024];
    ssize_t rn = 0, r;
    while ((r = read(status_pipe[0], rec + rn, sizeof rec - 1 - (size_t)rn)) > 0) rn += r;
    close(status_pipe[0]);
    rec[rn > 0 ? rn : 0] = 0;
    double cgroup_cpu = cgroup_cpu_ms(&cg);
    cgroup_destroy(&cg);

    res->cpu_ms = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                  (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
    if (cgroup_cpu > res->cpu_ms) res->cpu_ms = cgroup_cpu;
    res->max_rss_kb = ru.ru_maxrss;
    res->out = out.buf, res->out_len = out.len, res->out_dropped = out.dropped;
    res->err = errc.buf, res->err_len = errc.len, res->err_dropped = errc.dropped;
    res->out[res->out_len] = 0;
    res->err[res->err_len] = 0;

    if (setup_err[0] || (rn > 0 && rec[0] == INIT_SETUP_ERROR)) {
        snprintf(err, errlen, "sandbox setup failed: %s", setup_err[0] ? setup_err : rec + 1);
        jail_result_free(res);
        return JAIL_SETUP_FAILED;
    }
    if (rn >= (ssize_t)(1 + sizeof(int)) && rec[0] == INIT_STATUS_EXITED) {
        int st;
        memcpy(&st, rec + 1, sizeof st);
        if (WIFEXITED(st)) res->exit_code = WEXITSTATUS(st);
        else if (WIFSIGNALED(st)) res->signal = WTERMSIG(st);
    } else if (res->timed_out || res->cancelled || res->cpu_exceeded) {
        res->signal = SIGKILL;
    } else if (WIFSIGNALED(wstatus)) {
        /* The init died without reporting (the job killed it): report how. */
        res->signal = WTERMSIG(wstatus);
    } else {
        res->signal = SIGKILL;
    }
    if (res->timed_out || res->cancelled || res->cpu_exceeded) {
        res->exit_code = -1;
        res->signal = SIGKILL;
    }
    return 0;
}

void jail_result_free(struct jail_result *res) {
    free(res->out);
    free(res->err);
    free(res->fetched);
    res->fetched = NULL;
    res->fetched_len = 0;
    res->out = res->err = NULL;
    res->out_len = res->err_len = 0;
}
