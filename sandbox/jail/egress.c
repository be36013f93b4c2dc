/*
 * egress.c - the egress interface of egress.h: the process-wide settings
 * and log, the job's proxy environment, the jail's listening socket, and
 * the proxy's life as the supervisor sees it.
 */
#define _GNU_SOURCE
#include "egress.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../base/json_writer.h"
#include "../base/util.h"

static struct egress_settings settings = {-1, NULL, NULL};
static char owner_job[80] = "", owner_peer[96] = "";

static int check_dir(const char *flag, const char *dir, int mode, char *err, size_t errlen) {
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return fail_with(err, errlen, "%s %s: not a directory", flag, dir);
    if (access(dir, mode) != 0) return fail_with(err, errlen, "%s %s: %s", flag, dir, strerror(errno));
    return 0;
}

int egress_configure(const char *log_path, const char *record_dir, const char *replay_dir, char *err,
                     size_t errlen) {
    if (record_dir && replay_dir) return fail_with(err, errlen, "--egress-record and --egress-replay exclude each other");
    if (record_dir && check_dir("--egress-record", record_dir, W_OK | X_OK, err, errlen)) return -1;
    if (replay_dir && check_dir("--egress-replay", replay_dir, R_OK | X_OK, err, errlen)) return -1;
    if (log_path) {
        int fd = strcmp(log_path, "-") == 0 ? fcntl(2, F_DUPFD_CLOEXEC, 3)
                                              : open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) return fail_with(err, errlen, "--egress-log %s: %s", log_path, strerror(errno));
        egress_set_log_fd(fd);
        close(fd);
    }
    settings.record_dir = record_dir;
    settings.replay_dir = replay_dir;
    return 0;
}

/* A copy of our own, high, so that a worker's renumbering of its low fds
 * (vivd's fork_worker puts its socket at 3) cannot clobber it. */
void egress_set_log_fd(int fd) { settings.log_fd = fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 100); }
const struct egress_settings *egress_settings(void) { return &settings; }

int egress_keep_log_at(int fd) {
    if (settings.log_fd < 0) return fd;
    if (settings.log_fd != fd && dup2(settings.log_fd, fd) < 0) {
        settings.log_fd = -1;
        return fd;
    }
    settings.log_fd = fd;
    return fd + 1;
}

void egress_set_owner(const char *job, const char *peer) {
    snprintf(owner_job, sizeof owner_job, "%s", job ? job : "");
    snprintf(owner_peer, sizeof owner_peer, "%s", peer ? peer : "");
}
const char *egress_owner_job(void) { return owner_job; }
const char *egress_owner_peer(void) { return owner_peer; }

/* One line: {"ts":..,"job":..,"peer":.., <fields>}\n in one write(). On a
 * file opened O_APPEND the kernel places each write whole at the end, so
 * lines of concurrent proxies (one per job) never interleave. */
void egress_log_write(const char *fields) {
    if (settings.log_fd < 0) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "ts"), jw_double(&w, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9, 3);
    jw_key(&w, "event"), jw_cstring(&w, "egress");
    jw_key(&w, "job"), jw_cstring(&w, owner_job);
    jw_key(&w, "peer"), jw_cstring(&w, owner_peer);
    char *head = jw_finish(&w); /* still open: the fields and '}' follow */
    char *line = xasprintf("%s,%s}\n", head, fields);
    (void)write_all(settings.log_fd, line, strlen(line));
    free(head);
    free(line);
}

/* ---------------------------------------------------------------- the job's environment */

static bool is_proxy_var(const char *kv) {
    static const char *const names[] = {"HTTP_PROXY=", "HTTPS_PROXY=", "http_proxy=", "https_proxy=",
                                        "NO_PROXY=", "no_proxy=", "ALL_PROXY=", "all_proxy=", NULL};
    for (const char *const *n = names; *n; n++)
        if (strncmp(kv, *n, strlen(*n)) == 0) return true;
    return false;
}

char **egress_job_env(const struct policy *p) {
    char **env = xcalloc((size_t)p->nenv + 8, sizeof *env);
    int n = 0;
    for (int i = 0; i < p->nenv; i++)
        if (!is_proxy_var(p->env[i])) env[n++] = xstrdup(p->env[i]);
    env[n++] = xstrdup("HTTP_PROXY=" EGRESS_PROXY_URL);
    env[n++] = xstrdup("HTTPS_PROXY=" EGRESS_PROXY_URL);
    env[n++] = xstrdup("http_proxy=" EGRESS_PROXY_URL);
    env[n++] = xstrdup("https_proxy=" EGRESS_PROXY_URL);
    env[n++] = xstrdup("NO_PROXY=");
    env[n++] = xstrdup("no_proxy=");
    env[n] = NULL;
    return env;
}

void egress_env_free(char **env) {
    for (int i = 0; env && env[i]; i++) free(env[i]);
    free(env);
}

/* ---------------------------------------------------------------- the jail's listener */

static int loopback_up(char *err, size_t errlen) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return fail_with(err, errlen, "socket: %s", strerror(errno));
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int e = errno;
    close(s);
    return rc == 0 ? 0 : fail_with(err, errlen, "bring up loopback: %s", strerror(e));
}

static int send_fd(int sock, int fd) {
    char byte = 'L';
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    ssize_t r;
    do r = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    return r == 1 ? 0 : -1;
}

int egress_jail_listener(int sock, char *err, size_t errlen) {
    if (loopback_up(err, errlen)) return -1;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(EGRESS_PROXY_PORT)};
    inet_pton(AF_INET, EGRESS_PROXY_ADDR, &a.sin_addr);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 128) != 0) {
        int e = errno;
        if (l >= 0) close(l);
        return fail_with(err, errlen, "listen on %s:%d: %s", EGRESS_PROXY_ADDR, EGRESS_PROXY_PORT, strerror(e));
    }
    int rc = send_fd(sock, l);
    int e = errno;
    close(l); /* from here only the proxy, outside, holds it */
    return rc == 0 ? 0 : fail_with(err, errlen, "hand the proxy socket out: %s", strerror(e));
}

/* ---------------------------------------------------------------- the supervisor's side */

static int recv_fd(int sock) {
    char byte;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    ssize_t r;
    do r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    if (r != 1 || (msg.msg_flags & MSG_CTRUNC)) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int)))
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    /* it must be what the init promised: a listening TCP socket */
    int type = 0, listening = 0;
    socklen_t l1 = sizeof type, l2 = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) != 0 || type != SOCK_STREAM ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l2) != 0 || !listening) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Close every fd from 3 up except keep[] (unordered, -1 ignored). */
static void close_all_but(int *keep, int n) {
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && keep[k - 1] > keep[k]; k--) {
            int t = keep[k];
            keep[k] = keep[k - 1], keep[k - 1] = t;
        }
    unsigned lo = 3;
    for (int i = 0; i <= n; i++) {
        unsigned hi = i < n ? (unsigned)keep[i] : ~0u;
        if (i < n && keep[i] < 3) continue;
        if (hi > lo && syscall(SYS_close_range, lo, i < n ? hi - 1 : hi, 0) != 0)
            for (unsigned fd = lo; fd < hi && fd < 65536; fd++) close((int)fd);
        if (i < n) lo = hi + 1;
    }
}

int egress_proxy_start(int sock, const struct policy *p, bool drop, uid_t uid, gid_t gid, struct egress_proxy *px,
                       char *err, size_t errlen) {
    px->pid = 0;
    px->ctl_fd = -1;
    int lfd = recv_fd(sock);
    if (lfd < 0) return fail_with(err, errlen, "egress: no proxy socket from the jail");
    int ctl[2];
    if (pipe2(ctl, O_CLOEXEC) != 0) {
        close(lfd);
        return fail_with(err, errlen, "egress: pipe: %s", strerror(errno));
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(lfd), close(ctl[0]), close(ctl[1]);
        return fail_with(err, errlen, "egress: fork the proxy: %s", strerror(e));
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(0);
        signal(SIGPIPE, SIG_IGN);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_IGN); /* viv run's Ctrl-C goes to the supervisor, which ends us */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        /* keep only what the proxy needs: nothing of the jail's pipes or a daemon's clients */
        int keep[3] = {lfd, ctl[0], settings.log_fd};
        close_all_but(keep, 3);
        /* A root supervisor's proxy parses a hostile job's bytes as the
         * job's own unprivileged host uid (what it needs is open already),
         * except when it must create files in a record directory. */
        if (drop && !settings.record_dir &&
            (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0))
            _exit(1);
        prctl(PR_SET_DUMPABLE, 0);
        egress_proxy_main(lfd, ctl[0], &p->network);
    }
    close(lfd);
    close(ctl[0]);
    px->pid = pid;
    px->ctl_fd = ctl[1];
    return 0;
}

void egress_proxy_stop(struct egress_proxy *px) {
    if (px->ctl_fd >= 0) close(px->ctl_fd);
    px->ctl_fd = -1;
    if (px->pid <= 0) return;
    /* It closes every connection, logs them and exits at once; a proxy that
     * does not within a second is killed (its sockets close all the same). */
    for (int i = 0; i < 100; i++) {
        if (waitpid(px->pid, NULL, WNOHANG) == px->pid) {
            px->pid = 0;
            return;
        }
        usleep(10000);
    }
    kill(px->pid, SIGKILL);
    waitpid(px->pid, NULL, 0);
    px->pid = 0;
}
