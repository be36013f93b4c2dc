/*
 * init.c - pid 1 of a job's pid namespace.
 *
 * The supervisor clones this process into fresh namespaces. It:
 *   1. asks to be killed if the supervisor dies (PR_SET_PDEATHSIG) and waits
 *      for the go byte (uid/gid maps written, cgroup joined); EOF instead of
 *      the byte means the supervisor is gone, so it exits;
 *   2. takes the jail identity (uid/gid JAIL_UID, no supplementary groups
 *      when the caller was root) and sets the hostname; for a policy with
 *      egress, brings up loopback and hands the proxy's listener out
 *      (egress.h), keeping no copy;
 *   3. builds the root filesystem (mounts.c) and caps the jail's user
 *      namespace count at 0, so no nested user namespace can be created even
 *      if a policy let clone() through;
 *   4. receives the compiled seccomp filter and writes the job's code into
 *      its tmpfs (both come from the supervisor, which meanwhile compiled the
 *      filter and joined this process to the job's cgroups), then roots a
 *      new cgroup namespace at the job's cgroup;
 *   5. drops every capability and sets no_new_privs (caps.c) and becomes
 *      non-dumpable, so the job cannot read this process's memory or fds;
 *   6. forks the job, which starts a new session (no controlling terminal),
 *      keeps only fds 0-2 (stdin /dev/null, or the caller's pipe in
 *      interactive mode; stdout and stderr pipes), sets
 *      its rlimits, loads the seccomp filter and execs with the policy's
 *      environment only;
 *   7. reaps every process that ends up parented to it; when the job itself
 *      exits, reports its wait status and exits. The kernel then kills every
 *      process left in the namespace: nothing outlives the job. At the
 *      deadline the supervisor sends INIT_DEADLINE_SIGNAL: init kills every
 *      process in the namespace and reaps them all first, so the CPU time of
 *      a killed job is still counted; the supervisor's SIGKILL follows if
 *      init does not finish promptly.
 * Setup errors go back as text on the status channel; this process never
 * prints anything.
 */
#define _GNU_SOURCE
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caps.h"
#include "egress.h"
#include "jail.h"
#include "limits.h"
#include "mounts.h"
#include "syscall_filter.h"
#include "../base/util.h"

static void report_error_and_exit(int status_fd, const char *what, const char *err) {
    char msg[1024];
    int n = snprintf(msg, sizeof msg, "%c%s%s%s", INIT_SETUP_ERROR, what, *err ? ": " : "", err);
    if (n > (int)sizeof msg - 1) n = (int)sizeof msg - 1;
    (void)write_all(status_fd, msg, (size_t)n);
    _exit(127);
}

static void close_range_portable(unsigned lo, unsigned hi) {
    if (lo > hi) return;
    if (syscall(SYS_close_range, lo, hi, 0) == 0) return;
    for (unsigned fd = lo; fd <= hi && fd < 65536; fd++) close((int)fd);
}

static void close_fds_from(int lowest) { close_range_portable((unsigned)lowest, ~0u); }

/* Close every fd from 3 up except the ones in keep[] (the caller's may be in
 * any order). Whatever the supervisor's process had open (a daemon's client
 * sockets, say) must not live on in the jail's init. */
static void close_fds_except(int *keep, int n) {
    for (int i = 1; i < n; i++) /* insertion sort: n is tiny */
        for (int k = i; k > 0 && keep[k - 1] > keep[k]; k--) {
            int t = keep[k];
            keep[k] = keep[k - 1], keep[k - 1] = t;
        }
    unsigned lo = 3;
    for (int i = 0; i < n; i++) {
        if (keep[i] < 3) continue;
        if ((unsigned)keep[i] > lo) close_range_portable(lo, (unsigned)keep[i] - 1);
        lo = (unsigned)keep[i] + 1;
    }
    close_range_portable(lo, ~0u);
}

/* Read exactly len bytes; 0, or -1 on EOF or error. */
static int read_exact(int fd, void *buf, size_t len) {
    char *p = buf;
    while (len) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

/* The supervisor sends the compiled seccomp filter, then the code text (see
 * supervisor.c). The filter arrives only after the supervisor has put this
 * process into the job's cgroups, so waiting for it also orders the two. */
static int receive_filter_and_code(const struct init_context *ctx, struct sock_fprog *prog,
                                   char *err, size_t errlen) {
    uint32_t n;
    if (read_exact(ctx->code_fd, &n, sizeof n) != 0 || n == 0 || n > 65535) {
        snprintf(err, errlen, "no seccomp filter from the supervisor");
        return -1;
    }
    prog->len = (unsigned short)n;
    prog->filter = xcalloc(n, sizeof *prog->filter);
    if (read_exact(ctx->code_fd, prog->filter, n * sizeof *prog->filter) != 0) {
        snprintf(err, errlen, "truncated seccomp filter");
        return -1;
    }
    if (!ctx->has_code) return 0;
    int out = open(ctx->policy->code_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (out < 0) {
        snprintf(err, errlen, "create %s: %s", ctx->policy->code_path, strerror(errno));
        return -1;
    }
    char buf[65536];
    for (;;) {
        ssize_t r = read(ctx->code_fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            snprintf(err, errlen, "read code: %s", strerror(errno));
            close(out);
            return -1;
        }
        if (r == 0) break;
        if (write_all(out, buf, (size_t)r) != 0) {
            snprintf(err, errlen, "write %s: %s", ctx->policy->code_path, strerror(errno));
            close(out);
            return -1;
        }
    }
    close(out);
    return 0;
}

/* The job: after fork, before exec. Errors go to the job's stderr, like a
 * shell's "command not found", and exit 127. */
static void exec_job(const struct init_context *ctx, const struct sock_fprog *filter)
    __attribute__((noreturn));
static void exec_job(const struct init_context *ctx, const struct sock_fprog *filter) {
    char err[512] = "";
    const char *what = "";
    if (setsid() < 0) {
        what = "setsid";
        goto fail;
    }
    /* stdin: the caller's pipe (interactive jobs), else the policy's file, else /dev/null */
    const char *in_path = ctx->policy->stdin_path ? ctx->policy->stdin_path : "/dev/null";
    int in = ctx->in_fd >= 0 ? ctx->in_fd : open(in_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0 || dup2(in, 0) < 0 || dup2(ctx->out_fd, 1) < 0 || dup2(ctx->err_fd, 2) < 0) {
        what = "set up stdio";
        goto fail;
    }
    close_fds_from(3);
    umask(022);
    if (limits_apply(&ctx->policy->limits, ctx->timeout_ms, ctx->memory_mb, ctx->cpu_ms, err, sizeof err)) {
        what = "limits";
        goto fail;
    }
    if (syscall_filter_install(filter) != 0) {
        what = "seccomp";
        goto fail;
    }
    execve(ctx->argv[0], ctx->argv, ctx->env);
    snprintf(err, sizeof err, "%s", strerror(errno));
    what = ctx->argv[0];
fail:
    if (!*err) snprintf(err, sizeof err, "%s", strerror(errno));
    dprintf(2, "vivarium: cannot start the job: %s: %s\n", what, err);
    _exit(127);
}

static void reap_until_job_ends(const struct init_context *ctx, pid_t job, const sigset_t *wanted, int sfd)
    __attribute__((noreturn));

/* We are a copy of the supervisor, so /proc/1/cmdline inside the jail would
 * show the supervisor's command line (which may hold the code, paths, a
 * token). Zero our copy of the argument and environment areas; everything we
 * still need was copied to the heap by jail_run(). The host's /proc is still
 * mounted here, and /proc/self there is this process. */
static void scrub_inherited_cmdline(void) {
    char buf[4096];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* comm may contain spaces */
    if (!p) return;
    /* fields after comm start at 3; arg_start..env_end are fields 48-51 */
    unsigned long v[52] = {0};
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok && field < 51; tok = strtok(NULL, " ")) v[++field] = strtoul(tok, NULL, 10);
    if (field < 51) return;
    if (v[48] && v[49] > v[48]) memset((void *)v[48], 0, v[49] - v[48]);
    if (v[50] && v[51] > v[50]) memset((void *)v[50], 0, v[51] - v[50]);
}

void jail_init_main(const struct init_context *ctx) {
    char err[512] = "";
    int sfd = ctx->status_fd;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int keep[] = {ctx->sync_fd, ctx->status_fd, ctx->code_fd, ctx->out_fd, ctx->err_fd, ctx->in_fd, ctx->fetch_fd,
                  ctx->egress_fd};
    close_fds_except(keep, 8); /* the supervisor's ends and anything else it had (-1 is ignored) */
    scrub_inherited_cmdline();
    char go;
    ssize_t r;
    do r = read(ctx->sync_fd, &go, 1);
    while (r < 0 && errno == EINTR);
    if (r != 1) _exit(126); /* the supervisor is gone */
    close(ctx->sync_fd);

    if (ctx->drop_supplementary_groups && setgroups(0, NULL) != 0)
        report_error_and_exit(sfd, "setgroups", strerror(errno));
    if (setresgid(JAIL_GID, JAIL_GID, JAIL_GID) != 0 || setresuid(JAIL_UID, JAIL_UID, JAIL_UID) != 0)
        report_error_and_exit(sfd, "take the jail uid/gid", strerror(errno));
    /* The kernel clears the parent-death signal when credentials change, so
     * (re)arm it now, then make sure the supervisor did not die before that:
     * a pipe whose reader is gone reports POLLERR to the writer. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct pollfd alive = {sfd, POLLOUT, 0};
    if (poll(&alive, 1, 0) == 1 && (alive.revents & POLLERR)) _exit(126);
    if (sethostname("vivarium", 8) != 0) report_error_and_exit(sfd, "sethostname", strerror(errno));
    /* Egress: the proxy's listener is made here, in the job's network
     * namespace, and handed out before any code of the job exists. */
    if (ctx->egress_fd >= 0) {
        if (egress_jail_listener(ctx->egress_fd, err, sizeof err)) report_error_and_exit(sfd, "egress", err);
        close(ctx->egress_fd);
    }

    if (mounts_build_root(ctx->policy, ctx->bind_src, ctx->policy->limits.tmpfs_mb, err, sizeof err))
        report_error_and_exit(sfd, "mounts", err);
    int fd = open("/proc/sys/user/max_user_namespaces", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, "0\n", 2) != 0)
        report_error_and_exit(sfd, "cap nested user namespaces at 0", strerror(errno));
    close(fd);
    struct sock_fprog filter;
    if (receive_filter_and_code(ctx, &filter, err, sizeof err)) report_error_and_exit(sfd, "code", err);
    close(ctx->code_fd);
    if (job_files_write(ctx->files, ctx->nfiles, err, sizeof err)) report_error_and_exit(sfd, "files", err);
    /* The supervisor has joined us to the job's cgroups by now. A cgroup
     * namespace rooted here makes /proc/self/cgroup read "0::/" (or "/" for
     * each v1 hierarchy) instead of the host's cgroup path and the job
     * cgroup's name; the one made at clone time is rooted at the
     * supervisor's cgroup, above the job's. */
    if (unshare(CLONE_NEWCGROUP) != 0) report_error_and_exit(sfd, "cgroup namespace", strerror(errno));

    if ((ctx->zygote ? caps_keep_for_zygote : caps_drop_all)(err, sizeof err))
        report_error_and_exit(sfd, "capabilities", err);
    prctl(PR_SET_DUMPABLE, 0);

    /* SIGCHLD and the supervisor's deadline signal are taken synchronously
     * with sigwaitinfo(): block them before the fork so none is lost. */
    sigset_t wanted, old;
    sigemptyset(&wanted);
    sigaddset(&wanted, SIGCHLD);
    sigaddset(&wanted, INIT_DEADLINE_SIGNAL);
    sigprocmask(SIG_BLOCK, &wanted, &old);
    pid_t job = fork();
    if (job < 0) report_error_and_exit(sfd, "fork the job", strerror(errno));
    if (job == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        exec_job(ctx, &filter);
    }
    close(ctx->out_fd);
    close(ctx->err_fd);
    if (ctx->in_fd >= 0) close(ctx->in_fd);
    reap_until_job_ends(ctx, job, &wanted, sfd);
}

/* Read the fetched files back once nothing else runs in the namespace:
 * then no process can swap a checked path for a symlink while we walk it. */
static void fetch_files(const struct init_context *ctx) {
    kill(-1, SIGKILL);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {}
    job_files_fetch(ctx->fetch_fd, ctx->fetch, ctx->nfetch, ctx->fetch_budget);
    close(ctx->fetch_fd);
}

/* Reap everything parented to us. At the deadline signal, kill every other
 * process of the namespace and keep reaping, so their CPU time is counted
 * (the supervisor's SIGKILL of this process is the backstop). When the job
 * has ended, report its status and exit: the kernel kills the rest. */
static void reap_until_job_ends(const struct init_context *ctx, pid_t job, const sigset_t *wanted, int sfd) {
    int job_status = 0;
    bool job_done = false, killing = false;
    for (;;) {
        int status;
        pid_t w;
        while ((w = waitpid(-1, &status, WNOHANG)) > 0)
            if (w == job) job_status = status, job_done = true;
        if (job_done && (!killing || w < 0)) break; /* killing: wait for ECHILD */
        if (w < 0 && errno == ECHILD) break;
        siginfo_t si;
        int sig = sigwaitinfo(wanted, &si);
        if (sig == INIT_DEADLINE_SIGNAL && !killing) {
            killing = true;
            kill(-1, SIGKILL); /* every process of the namespace but us */
        }
    }
    if (ctx->nfetch > 0) fetch_files(ctx);
    char rec[1 + sizeof(int)];
    rec[0] = INIT_STATUS_EXITED;
    memcpy(rec + 1, &job_status, sizeof job_status);
    if (job_done) (void)write_all(sfd, rec, sizeof rec);
    _exit(0);
}
