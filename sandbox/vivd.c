/*
 * vivd.c - the sandbox daemon: many clients, many jobs, one event loop.
 *
 * One thread runs an epoll loop over the listening socket(s), every client
 * connection, every running job's result channel, a signalfd (SIGTERM,
 * SIGINT, SIGCHLD) and a periodic tick for idle timeouts.
 *
 * A request line is parsed (rpc.c) and answered at once (ping, stats,
 * policies, errors) or becomes a job. A job runs in a forked worker process
 * that calls jail_run() with the policy's filter compiled once at start-up,
 * and writes the result object to a socketpair; the daemon adds the request's
 * id and queues the line on the client's connection. Jobs beyond --workers
 * wait in a bounded FIFO; beyond --queue the answer is an immediate "busy".
 * Responses go out in completion order, matched by id.
 *
 * The same socketpair cancels: when a client disconnects, the daemon closes
 * its end and the worker's jail_run() kills the job (the supervisor's
 * cancel_fd), so nothing the client started keeps running. If the daemon
 * itself dies, every worker sees the same hang-up.
 *
 * SIGTERM: stop accepting, answer queued requests with "shutting_down", give
 * running jobs --grace-ms to finish, then cancel them (they are answered with
 * "cancelled":true), flush, exit 0.
 *
 * Never logged: code or output. One JSON line per request: time, peer,
 * op, tool, wall_ms, outcome.
 */
#define _GNU_SOURCE
#include "vivd.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "args.h"
#include "jail.h"
#include "http_front.h"
#include "json_writer.h"
#include "rpc.h"
#include "session.h"
#include "zygote.h"
#include "warm_worker.h"
#include "egress.h"
#include "syscall_filter.h"
#include "util.h"

#define MAX_POLICIES 32
#define MAX_DATA 16

struct loaded_policy {
    struct policy policy;
    struct sock_fprog filter;
    /* zygotes (zygote.c), for policies with a preload list */
    bool zygotes_on;                /* supported, and not given up on */
    struct sock_fprog zygote_filter;
    int zygote_fail_streak;         /* zygotes that failed to start, in a row */
    double zygote_next_start;       /* backoff after a failure */
    long zygotes_started, zygotes_lost;
    long count;
    double wall_ms_total;
};

struct config {
    const char *socket_path;
    const char *tcp_addr;
    const char *token_file;
    const char *http_addr;
    const char *policies_dir;
    const char *log_path;
    const char *egress_log, *egress_record, *egress_replay;
    int workers, queue_cap;
    long idle_ms, grace_ms;
    size_t max_line;
    long max_line_arg, auth_line_arg; /* as parsed (args.h stores longs) */
    /* before a TCP connection's token line (see "the front door") */
    long auth_ms;
    size_t auth_line;
    int max_unauth, max_unauth_per_peer;
    long session_idle_ms;
    int max_sessions_per_peer;
    int zygotes; /* per policy with a preload list; 0 = none */
    struct jail_data data[MAX_DATA];
    int ndata;
};

/* epoll data: a tagged pointer so one loop serves every kind of fd. */
enum tag { TAG_LISTEN, TAG_TCP, TAG_SIGNAL, TAG_CONN, TAG_JOB, TAG_SESSION, TAG_ZYGOTE };
struct ev_ref {
    enum tag tag;
    void *ptr;
};

struct conn {
    struct ev_ref ref;
    int fd;
    bool want_out; /* EPOLLOUT registered */
    char peer[96];
    bool is_tcp, authed, closing;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off;
    int jobs;       /* running or queued jobs of this connection */
    double accepted, last_active;
    struct conn *next;
};

struct job {
    struct ev_ref ref;
    struct conn *conn; /* NULL once the client is gone */
    struct rpc_request req;
    struct loaded_policy *lp;
    pid_t worker;
    int fd;            /* daemon's end of the worker's socketpair (-1 on a zygote) */
    struct zygote *zygote; /* the zygote running it, or NULL for a cold jail */
    char *result;
    size_t result_len;
    double started;
    struct job *next;  /* queue or running list */
};

/* A session (see session.c): a long-lived worker that owns one jail. It
 * belongs to the connection that opened it and dies with it; one call at a
 * time (a second concurrent call is answered "busy"). */
struct session {
    struct ev_ref ref;
    char id[40];          /* "s-" + 32 hex digits from getrandom() */
    struct conn *conn;    /* owner */
    char peer[96];        /* for the per-peer cap */
    struct loaded_policy *lp;
    pid_t worker;
    int fd;               /* daemon's end of the worker's socketpair */
    char *in;             /* partial line from the worker */
    size_t in_len;
    bool opening;         /* session_open not answered yet */
    char *pending_id;     /* id of the request awaiting the worker's line, or NULL */
    struct rpc_request call; /* the exec in flight (for the log) */
    double call_started, last_used;
    struct session *next;
};

/* A zygote worker (zygote.c): one warmed interpreter of a policy that runs
 * one-shot jobs one at a time, each in a fresh isolated child. */
struct zygote {
    struct ev_ref ref;
    struct loaded_policy *lp;
    pid_t worker;
    int fd;           /* daemon's end of the worker's socketpair */
    bool ready;       /* it said {"ok":true}: the preload is imported */
    double since;
    struct job *job;  /* the job in flight, or NULL when idle */
    char *in;         /* partial line from the worker */
    size_t in_len;
    struct zygote *next;
};

static struct config cfg;
static struct loaded_policy policies[MAX_POLICIES];
static int npolicies;
static int epfd, sigfd, listen_fd = -1, tcp_fd = -1;
static char token[256];
static struct conn *conns;
static struct job *queue_head, *queue_tail, *running;
static int nqueued, nrunning, nconns;
static int nunauth; /* TCP connections that have not sent a good token yet */
static int ncold; /* running jobs in cold jails (at most cfg.workers) */
static struct session *sessions;
static int nsessions;
static struct zygote *zygotes;
static bool stopping;
static double stop_deadline, started_at;
static FILE *log_file;
static struct {
    long requests, completed, busy, errors, timeouts, cancelled;
} stats;

static struct ev_ref listen_ref = {TAG_LISTEN, NULL}, tcp_ref = {TAG_TCP, NULL},
                     signal_ref = {TAG_SIGNAL, NULL};

static void epoll_add(int fd, uint32_t events, struct ev_ref *ref) {
    struct epoll_event ev = {.events = events, .data.ptr = ref};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...) {
    if (!log_file) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    fprintf(log_file, "{\"ts\":%lld.%03ld,", (long long)ts.tv_sec, ts.tv_nsec / 1000000);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(log_file, fmt, ap);
    va_end(ap);
    fputs("}\n", log_file);
    fflush(log_file);
}

static struct loaded_policy *find_policy(const char *name) {
    for (int i = 0; i < npolicies; i++)
        if (strcmp(policies[i].policy.name, name) == 0) return &policies[i];
    return NULL;
}

/* ---------------------------------------------------------------- output */

static void conn_send(struct conn *c, const char *line) {
    if (!c || c->closing) return;
    size_t n = strlen(line);
    if (c->out_len + n > (64u << 20)) { /* a client that never reads */
        c->closing = true;
        return;
    }
    c->out = xrealloc(c->out, c->out_len + n);
    memcpy(c->out + c->out_len, line, n);
    c->out_len += n;
}

/* Answer request `id` with a JSON object ("{...}"): the id goes first. */
static void conn_answer(struct conn *c, const char *id, const char *object) {
    char *line = rpc_with_id(id, object);
    conn_send(c, line);
    free(line);
}

static void conn_send_error(struct conn *c, const char *id, const char *code, const char *msg) {
    char *line = rpc_error_line(id, code, msg);
    conn_send(c, line);
    free(line);
    stats.errors++;
}

/* The line that turns a client away before it asked anything (no id):
 * {"ok":false,"error":{"code":...,"message":...}} and a newline. */
static char *refusal_line(const char *code, const char *msg) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "ok"), jw_bool(&w, false);
    jw_key(&w, "error"), jw_object_begin(&w);
    jw_key(&w, "code"), jw_cstring(&w, code);
    jw_key(&w, "message"), jw_cstring(&w, msg);
    jw_object_end(&w), jw_object_end(&w);
    char *obj = jw_finish(&w), *line = xasprintf("%s\n", obj);
    free(obj);
    return line;
}

/* Turn a connection away before it has authenticated: one error line
 * (flushed before the close) and one log line saying why. `msg` is ours,
 * never the client's, so it goes into the log as it is. */
static void conn_refuse(struct conn *c, const char *code, const char *msg) {
    char *line = refusal_line(code, msg);
    conn_send(c, line);
    free(line);
    c->closing = true;
    log_line("\"peer\":\"%s\",\"op\":\"auth\",\"outcome\":\"refused\",\"detail\":\"%s\"", c->peer, msg);
}

/* ---------------------------------------------------------------- jobs */

static void job_free(struct job *j) {
    rpc_request_free(&j->req);
    free(j->result);
    free(j);
}

static void log_request(const struct conn *c, const struct rpc_request *req, double wall_ms,
                        const char *outcome) {
    log_line("\"peer\":\"%s\",\"op\":\"%s\",\"tool\":\"%s\",\"wall_ms\":%.1f,\"outcome\":\"%s\"",
             c ? c->peer : "gone", rpc_op_name(req->op),
             req->tool ? (find_policy(req->tool) ? req->tool : "?") : "", wall_ms, outcome);
}

/* The worker: run one job, write the result object, exit. */
static void worker_main(struct job *j, int fd) __attribute__((noreturn));
static void worker_main(struct job *j, int fd) {
    struct jail_spec spec = {
        .policy = &j->lp->policy, .code = j->req.code, .code_len = j->req.code_len,
        .timeout_ms = j->req.timeout_ms, .data = cfg.data, .ndata = cfg.ndata,
        .filter = &j->lp->filter, .cancel_fd = fd,
        .stdin_data = j->req.stdin_data, .stdin_len = j->req.stdin_len, .stdin_given = j->req.stdin_given,
        .files = j->req.files, .nfiles = j->req.nfiles, .fetch = j->req.fetch, .nfetch = j->req.nfetch,
    };
    struct jail_result res;
    char err[1024];
    char *obj;
    int ran = jail_run(&spec, &res, err, sizeof err);
    if (ran == 0) {
        obj = jail_result_to_json(&res, j->req.tool, j->lp->policy.name);
        jail_result_free(&res);
    } else {
        struct json_writer w;
        jw_init(&w);
        jw_object_begin(&w);
        jw_key(&w, "ok"), jw_bool(&w, false);
        jw_key(&w, "error"), jw_object_begin(&w);
        jw_key(&w, "code"), jw_cstring(&w, ran == JAIL_SETUP_FAILED ? "sandbox_error" : "bad_request");
        jw_key(&w, "message"), jw_cstring(&w, err);
        jw_object_end(&w), jw_object_end(&w);
        obj = jw_finish(&w);
    }
    int rc = write_all(fd, obj, strlen(obj));
    _exit(rc == 0 ? 0 : 1);
}

static void close_fds_from(int lowest) {
    if (syscall(SYS_close_range, (unsigned)lowest, ~0u, 0) == 0) return;
    for (int fd = lowest; fd < 65536; fd++) close(fd);
}

/* Fork a worker connected by a socketpair: returns the pid (0 in the
 * child, whose end is then fd 3) and sets *fd to the daemon's end; -1 on
 * failure. */
static pid_t fork_worker(int *fd) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        /* The worker keeps stdio and its socket, nothing of the daemon's:
         * a client socket held here would outlive the client's close. */
        if (dup2(sv[1], 3) < 0) _exit(1);
        close_fds_from(egress_keep_log_at(4)); /* the egress log stays open, at fd 4 */
        log_file = NULL;
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        return 0;
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return -1;
    }
    *fd = sv[0];
    return pid;
}

static int send_frame(int fd, const char *buf, size_t len);
static struct zygote *idle_zygote(const struct loaded_policy *lp);
static bool zygote_ready(const struct loaded_policy *lp);
static void zygote_destroy(struct zygote *z, const char *why);

/* Hand the job to an idle zygote of its policy: true when one took it. */
/* stdin, files and fetch_files are the cold jail's (the zygote's request
 * carries code only). */
static bool job_needs_cold(const struct job *j) {
    return j->req.stdin_given || j->req.files || j->req.fetch;
}

static bool start_on_zygote(struct job *j) {
    if (job_needs_cold(j)) return false;
    struct zygote *z = idle_zygote(j->lp);
    if (!z) return false;
    const struct policy *p = &j->lp->policy;
    long t = policy_call_timeout_ms(p, j->req.timeout_ms);
    size_t n;
    char *frame = warm_call_frame(t, p->limits.memory_mb, j->req.code, j->req.code_len, &n);
    int rc = send_frame(z->fd, frame, n);
    free(frame);
    if (rc != 0) {
        zygote_destroy(z, "its worker stopped taking requests");
        return false;
    }
    z->job = j;
    j->zygote = z;
    j->fd = -1;
    j->next = running;
    running = j;
    nrunning++;
    return true;
}

static void start_job(struct job *j) {
    int fd = -1;
    j->started = now_ms();
    if (start_on_zygote(j)) return;
    ncold++;
    static long cold_jobs;
    cold_jobs++;
    pid_t pid = fork_worker(&fd);
    if (pid == 0) {
        char id[32];
        snprintf(id, sizeof id, "j-%ld", cold_jobs);
        egress_set_owner(id, j->conn ? j->conn->peer : "gone");
        worker_main(j, 3);
    }
    if (pid < 0) {
        conn_send_error(j->conn, j->req.id_json, "internal", "could not start a worker");
        if (j->conn) j->conn->jobs--;
        job_free(j);
        return;
    }
    j->worker = pid;
    j->fd = fd;
    fcntl(j->fd, F_SETFL, O_NONBLOCK);
    j->ref = (struct ev_ref){TAG_JOB, j};
    epoll_add(j->fd, EPOLLIN, &j->ref);
    j->next = running;
    running = j;
    nrunning++;
}

/* Start queued jobs, oldest first. A job whose policy has a ready zygote
 * waits for one of its zygotes (they are the warm path, and as many as the
 * policy's share of concurrency); any other job runs in a cold jail when
 * fewer than cfg.workers cold jails run. */
static bool can_start_now(const struct loaded_policy *lp, bool cold) {
    return zygote_ready(lp) && !cold ? idle_zygote(lp) != NULL : ncold < cfg.workers;
}

static void pump_queue(void) {
    struct job **p = &queue_head, *prev = NULL;
    while (!stopping && *p) {
        struct job *j = *p;
        bool go = !j->conn || can_start_now(j->lp, job_needs_cold(j)); /* a job whose client left is dropped below */
        if (!go) {
            prev = j;
            p = &j->next;
            continue;
        }
        *p = j->next;
        if (queue_tail == j) queue_tail = prev;
        nqueued--;
        j->next = NULL;
        if (!j->conn) job_free(j);
        else start_job(j);
    }
}

static void unlink_running(struct job *j) {
    if (!j->zygote) ncold--;
    for (struct job **p = &running; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            break;
        }
    nrunning--;
}

/* The job is over: answer with `result` (an exec response or error object;
 * NULL when the worker died without one), log, free, start the next. */
static void job_finish(struct job *j, const char *result) {
    unlink_running(j);
    double wall = now_ms() - j->started;
    const char *outcome = "ok";
    if (result && result[0] == '{') {
        conn_answer(j->conn, j->req.id_json, result);
        if (strstr(result, "\"ok\":false")) outcome = "error", stats.errors++;
        else if (strstr(result, "\"timed_out\":true")) outcome = "timed_out", stats.timeouts++;
        else if (strstr(result, "\"cancelled\":true")) outcome = "cancelled", stats.cancelled++;
    } else {
        conn_send_error(j->conn, j->req.id_json, "internal", "the worker died without a result");
        outcome = "error";
    }
    j->lp->count++;
    j->lp->wall_ms_total += wall;
    stats.completed++;
    log_request(j->conn, &j->req, wall, outcome);
    if (j->conn) j->conn->jobs--;
    job_free(j);
    pump_queue();
}

/* The worker's socket is readable: collect the result; at EOF, answer. */
static void job_readable(struct job *j) {
    char buf[65536];
    for (;;) {
        ssize_t r = read(j->fd, buf, sizeof buf);
        if (r > 0) {
            j->result = xrealloc(j->result, j->result_len + (size_t)r + 1);
            memcpy(j->result + j->result_len, buf, (size_t)r);
            j->result_len += (size_t)r;
            j->result[j->result_len] = 0;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) return;
        break; /* EOF or error: the worker is done */
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, j->fd, NULL);
    close(j->fd);
    job_finish(j, j->result);
}

/* ---------------------------------------------------------------- zygotes */

/* The idle zygote that finished its last job longest ago: after a job a
 * zygote spends a few ms preparing the next child, so spread the load. */
static struct zygote *idle_zygote(const struct loaded_policy *lp) {
    struct zygote *best = NULL;
    for (struct zygote *z = zygotes; z; z = z->next)
        if (z->lp == lp && z->ready && !z->job && (!best || z->since < best->since)) best = z;
    return best;
}

static bool zygote_ready(const struct loaded_policy *lp) {
    for (struct zygote *z = zygotes; z; z = z->next)
        if (z->lp == lp && z->ready) return true;
    return false;
}

static void zygote_start(struct loaded_policy *lp) {
    struct zygote *z = xcalloc(1, sizeof *z);
    pid_t pid = fork_worker(&z->fd);
    if (pid == 0) {
        struct zygote_spec zs = {&lp->policy, &lp->filter, &lp->zygote_filter, cfg.data, cfg.ndata, lp->policy.name};
        _exit(zygote_worker_main(&zs, 3));
    }
    if (pid < 0) {
        free(z);
        lp->zygote_next_start = now_ms() + 1000;
        return;
    }
    z->worker = pid;
    z->lp = lp;
    z->since = now_ms();
    fcntl(z->fd, F_SETFL, O_NONBLOCK);
    z->ref = (struct ev_ref){TAG_ZYGOTE, z};
    epoll_add(z->fd, EPOLLIN, &z->ref);
    z->next = zygotes;
    zygotes = z;
    lp->zygotes_started++;
}

/* Forget a zygote: closing our end makes its worker kill the jail and exit
 * (SIGCHLD reaps it). A job in flight is answered with `why`. */
static void zygote_destroy(struct zygote *z, const char *why) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, z->fd, NULL);
    close(z->fd);
    for (struct zygote **p = &zygotes; *p; p = &(*p)->next)
        if (*p == z) {
            *p = z->next;
            break;
        }
    struct job *j = z->job;
    free(z->in);
    free(z);
    if (j) {
        char *obj = xasprintf("{\"ok\":false,\"error\":{\"code\":\"zygote_lost\",\"message\":\"%s\"}}", why);
        job_finish(j, obj);
        free(obj);
    }
}

/* One line from a zygote worker: its start, or the answer to its job. */
static bool zygote_line(struct zygote *z, const char *line) {
    struct loaded_policy *lp = z->lp;
    bool ok = strncmp(line, "{\"ok\":true", 10) == 0;
    if (!z->ready) {
        if (!ok) {
            lp->zygote_fail_streak++;
            double backoff = 1000.0 * (1 << (lp->zygote_fail_streak < 5 ? lp->zygote_fail_streak : 5));
            lp->zygote_next_start = now_ms() + backoff;
            log_line("\"op\":\"zygote_start\",\"tool\":\"%s\",\"outcome\":\"error\",\"detail\":%s",
                     lp->policy.name, line);
            if (lp->zygote_fail_streak >= 5) {
                lp->zygotes_on = false;
                log_line("\"op\":\"zygote_disable\",\"tool\":\"%s\",\"outcome\":\"5 failed starts in a row; cold jails only\"",
                         lp->policy.name);
            }
            zygote_destroy(z, "");
            return true;
        }
        z->ready = true;
        lp->zygote_fail_streak = 0;
        log_line("\"op\":\"zygote_start\",\"tool\":\"%s\",\"wall_ms\":%.1f,\"outcome\":\"ok\"", lp->policy.name,
                 now_ms() - z->since);
        pump_queue();
        return false;
    }
    struct job *j = z->job;
    if (!j) return false; /* never sent unasked; ignore */
    z->job = NULL;
    z->since = now_ms();
    job_finish(j, line);
    if (strstr(line, "\"zygote_lost\"")) {
        lp->zygotes_lost++;
        log_line("\"op\":\"zygote_lost\",\"tool\":\"%s\",\"detail\":%s", lp->policy.name, line);
        zygote_destroy(z, "");
        return true;
    }
    if (stopping) {
        zygote_destroy(z, "");
        return true;
    }
    return false;
}

static bool zygote_line_cb(void *z, const char *line) { return zygote_line(z, line); }

static int read_worker_lines(int fd, char **in, size_t *in_len, bool (*on_line)(void *, const char *), void *owner);

static void zygote_readable(struct zygote *z) {
    int rc = read_worker_lines(z->fd, &z->in, &z->in_len, zygote_line_cb, z);
    if (rc != 0) return; /* more to come, or z is gone */
    /* the worker exited without a word */
    z->lp->zygotes_lost++;
    log_line("\"op\":\"zygote_lost\",\"tool\":\"%s\",\"detail\":\"its worker exited\"", z->lp->policy.name);
    if (!z->ready) z->lp->zygote_next_start = now_ms() + 1000;
    zygote_destroy(z, "the zygote running this job died");
}

/* Keep cfg.zygotes ready (or starting) per policy that has them. */
static void zygotes_top_up(void) {
    if (stopping) return;
    double now = now_ms();
    for (int i = 0; i < npolicies; i++) {
        struct loaded_policy *lp = &policies[i];
        if (!lp->zygotes_on || now < lp->zygote_next_start) continue;
        int have = 0;
        for (struct zygote *z = zygotes; z; z = z->next) have += z->lp == lp;
        for (; have < cfg.zygotes; have++) zygote_start(lp);
    }
}

/* ---------------------------------------------------------------- sessions */

/* The cap is per peer, not per connection: for Unix sockets the uid, for
 * TCP the address without the port (a client could open many connections). */
static void peer_key(const struct conn *c, char *out, size_t outlen) {
    snprintf(out, outlen, "%s", c->peer);
    char *colon = c->is_tcp ? strrchr(out, ':') : NULL;
    if (colon) *colon = 0;
}

/* Sessions that ended by themselves (expired, lost, their jail ended) are
 * remembered for a while, so a later call says why instead of "not_found". */
#define LOST_SESSIONS 256
static struct {
    char id[40], peer[96], why[96];
} lost_sessions[LOST_SESSIONS];
static unsigned lost_next;

static void remember_lost(const struct session *s, const char *why) {
    unsigned k = lost_next++ % LOST_SESSIONS;
    snprintf(lost_sessions[k].id, sizeof lost_sessions[k].id, "%s", s->id);
    snprintf(lost_sessions[k].peer, sizeof lost_sessions[k].peer, "%s", s->peer);
    snprintf(lost_sessions[k].why, sizeof lost_sessions[k].why, "%s", why);
}

static const char *lost_reason(const char *id, const struct conn *c) {
    char key[96];
    peer_key(c, key, sizeof key);
    for (int k = 0; k < LOST_SESSIONS; k++)
        if (strcmp(lost_sessions[k].id, id) == 0 && strcmp(lost_sessions[k].peer, key) == 0) return lost_sessions[k].why;
    return NULL;
}

static struct session *session_find(const char *id, const struct conn *c) {
    for (struct session *s = sessions; s; s = s->next)
        if (strcmp(s->id, id) == 0) return s->conn == c ? s : NULL; /* another connection's: not yours */
    return NULL;
}

/* Forget a session: closing our end makes its worker kill the jail and exit
 * (SIGCHLD reaps it). A request still waiting on it is answered here. */
static void session_destroy(struct session *s, const char *code, const char *why) {
    if (s->pending_id && code[0]) conn_send_error(s->conn, s->pending_id, code, why);
    epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    for (struct session **p = &sessions; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    nsessions--;
    if (s->conn) s->conn->jobs--;
    free(s->pending_id);
    rpc_request_free(&s->call);
    free(s->in);
    free(s);
}

static void session_open(struct conn *c, struct rpc_request *req) {
    struct loaded_policy *lp = find_policy(req->tool);
    char msg[256], key[96];
    if (!lp) {
        snprintf(msg, sizeof msg, "unknown tool '%.64s' (see op policies)", req->tool);
        return conn_send_error(c, req->id_json, "bad_request", msg);
    }
    if (!session_policy_supported(&lp->policy))
        return conn_send_error(c, req->id_json, "bad_request", "sessions need a Python tool whose seccomp list allows mknodat (e.g. python); this tool is not one");
    if (stopping) return conn_send_error(c, req->id_json, "shutting_down", "vivd is shutting down");
    peer_key(c, key, sizeof key);
    int mine = 0;
    for (struct session *s = sessions; s; s = s->next) mine += strcmp(s->peer, key) == 0;
    if (mine >= cfg.max_sessions_per_peer) {
        snprintf(msg, sizeof msg, "%d sessions open for %s, the most allowed (--max-sessions-per-peer); close one first",
                 mine, key);
        stats.busy++;
        return conn_send_error(c, req->id_json, "busy", msg);
    }
    struct session *s = xcalloc(1, sizeof *s);
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        free(s);
        return conn_send_error(c, req->id_json, "internal", "getrandom failed");
    }
    strcpy(s->id, "s-");
    for (int i = 0; i < 16; i++) snprintf(s->id + 2 + 2 * i, 3, "%02x", rnd[i]);
    pid_t pid = fork_worker(&s->fd);
    if (pid == 0) {
        egress_set_owner(s->id, c->peer);
        struct session_spec ss = {&lp->policy, &lp->filter, cfg.data, cfg.ndata, lp->policy.name};
        _exit(session_worker_main(&ss, 3));
    }
    if (pid < 0) {
        free(s);
        return conn_send_error(c, req->id_json, "internal", "could not start a session worker");
    }
    s->worker = pid;
    s->conn = c;
    s->lp = lp;
    snprintf(s->peer, sizeof s->peer, "%s", key);
    s->opening = true;
    s->pending_id = xstrdup(req->id_json);
    s->call_started = s->last_used = now_ms();
    fcntl(s->fd, F_SETFL, O_NONBLOCK);
    s->ref = (struct ev_ref){TAG_SESSION, s};
    epoll_add(s->fd, EPOLLIN, &s->ref);
    s->next = sessions;
    sessions = s;
    nsessions++;
    c->jobs++; /* keeps the connection from idling out while the session lives */
}

/* Write a whole frame to the (non-blocking) worker socket. The worker is
 * idle and reading, so this takes microseconds; 5 s is a backstop. */
static int send_frame(int fd, const char *buf, size_t len) {
    double end = now_ms() + 5000;
    while (len) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
        if (w > 0) buf += w, len -= (size_t)w;
        else if (w < 0 && errno == EINTR) continue;
        else if (w < 0 && errno == EAGAIN && now_ms() < end) {
            struct pollfd p = {fd, POLLOUT, 0};
            poll(&p, 1, 100);
        } else
            return -1;
    }
    return 0;
}

/* exec with "session": returns true when the session took ownership of req. */
static bool session_exec(struct conn *c, struct rpc_request *req) {
    struct session *s = session_find(req->session, c);
    if (!s) {
        const char *why = lost_reason(req->session, c);
        char msg[160];
        snprintf(msg, sizeof msg, "the session is gone: %s", why ? why : "");
        if (why) conn_send_error(c, req->id_json, "session_lost", msg);
        else conn_send_error(c, req->id_json, "not_found", "no such session on this connection (closed, or opened by another connection)");
        return false;
    }
    const struct policy *p = &s->lp->policy;
    if (req->tool && strcmp(req->tool, p->name) != 0) {
        conn_send_error(c, req->id_json, "bad_request", "tool does not match the session's tool");
        return false;
    }
    if (req->code_len > (size_t)p->limits.code_bytes) {
        conn_send_error(c, req->id_json, "bad_request", "code is longer than the policy's code_bytes");
        return false;
    }
    if (s->pending_id) {
        stats.busy++;
        conn_send_error(c, req->id_json, "busy", "the session is running another call (one call at a time per session)");
        return false;
    }
    long t = policy_call_timeout_ms(p, req->timeout_ms);
    size_t n;
    char *frame = warm_call_frame(t, p->limits.memory_mb, req->code, req->code_len, &n);
    int rc = send_frame(s->fd, frame, n);
    free(frame);
    if (rc != 0) {
        conn_send_error(c, req->id_json, "session_lost", "the session's worker is gone");
        session_destroy(s, "", "");
        return false;
    }
    s->pending_id = xstrdup(req->id_json);
    s->call = *req;
    s->call_started = now_ms();
    return true;
}

static void session_close_req(struct conn *c, struct rpc_request *req) {
    struct session *s = session_find(req->session, c);
    if (!s) return conn_send_error(c, req->id_json, "not_found", "no such session on this connection");
    session_destroy(s, "cancelled", "the session was closed while this call ran");
    conn_answer(c, req->id_json, "{\"ok\":true}");
}

/* One line from the worker answers the request in flight. Returns true
 * when the session is over (and s freed). */
static bool session_line(struct session *s, const char *line) {
    double wall = now_ms() - s->call_started;
    s->last_used = now_ms();
    if (!s->pending_id) return false; /* never sent unasked; ignore */
    char *id = s->pending_id;
    s->pending_id = NULL;
    bool ok = strncmp(line, "{\"ok\":true", 10) == 0;
    if (s->opening) {
        s->opening = false;
        if (ok) {
            char *obj = xasprintf("{\"ok\":true,\"session\":\"%s\"}", s->id);
            conn_answer(s->conn, id, obj);
            free(obj);
            log_line("\"peer\":\"%s\",\"op\":\"session_open\",\"tool\":\"%s\",\"wall_ms\":%.1f,\"outcome\":\"ok\"",
                     s->peer, s->lp->policy.name, wall);
        } else {
            conn_answer(s->conn, id, line);
            stats.errors++;
            free(id);
            session_destroy(s, "", "");
            return true;
        }
        free(id);
        if (stopping) session_destroy(s, "", "");
        return stopping;
    }
    conn_answer(s->conn, id, line);
    free(id);
    bool lost = strstr(line, "\"session_lost\":true") != NULL;
    const char *outcome = !ok ? "error" : strstr(line, "\"timed_out\":true") ? "timed_out" : lost ? "session_lost" : "ok";
    if (!ok) stats.errors++;
    else if (strcmp(outcome, "timed_out") == 0) stats.timeouts++;
    stats.completed++;
    s->lp->count++;
    s->lp->wall_ms_total += wall;
    log_request(s->conn, &s->call, wall, outcome);
    rpc_request_free(&s->call);
    if (lost) remember_lost(s, "an earlier call overran its deadline or broke the session");
    if (lost || stopping) session_destroy(s, "", "");
    return lost || stopping;
}

/* Read what a session or zygote worker wrote and hand each whole line to
 * `on_line` (which returns true when it destroyed its owner). Returns 0 at
 * the worker's EOF (the owner still exists), 1 when there is nothing more to
 * read now or the owner is gone. */
static int read_worker_lines(int fd, char **in, size_t *in_len, bool (*on_line)(void *, const char *), void *owner) {
    char buf[65536];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) return 1;
        if (r <= 0) return 0;
        *in = xrealloc(*in, *in_len + (size_t)r + 1);
        memcpy(*in + *in_len, buf, (size_t)r);
        *in_len += (size_t)r;
        char *nl;
        while ((nl = memchr(*in, '\n', *in_len))) {
            *nl = 0;
            size_t used = (size_t)(nl - *in) + 1;
            char *line = xstrdup(*in);
            memmove(*in, *in + used, *in_len - used);
            *in_len -= used;
            bool destroyed = on_line(owner, line);
            free(line);
            if (destroyed) return 1;
        }
    }
}

static bool session_line_cb(void *s, const char *line) { return session_line(s, line); }

static void session_readable(struct session *s) {
    if (read_worker_lines(s->fd, &s->in, &s->in_len, session_line_cb, s) != 0) return; /* more to come, or s is gone */
    /* the worker exited: the jail ended on its own (lifetime) or it crashed */
    if (!s->opening) remember_lost(s, "its jail ended (the policy's session_ms_max, or a crash)");
    session_destroy(s, s->opening ? "sandbox_error" : "session_lost", "the session's jail ended; session lost");
}

/* ---------------------------------------------------------------- requests */

static void answer_stats(struct conn *c, const char *id) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "ok"), jw_bool(&w, true);
    jw_key(&w, "uptime_s"), jw_double(&w, (now_ms() - started_at) / 1e3, 1);
    jw_key(&w, "connections"), jw_int(&w, nconns);
    jw_key(&w, "unauthenticated"), jw_int(&w, nunauth);
    jw_key(&w, "running"), jw_int(&w, nrunning);
    jw_key(&w, "queued"), jw_int(&w, nqueued);
    jw_key(&w, "workers"), jw_int(&w, cfg.workers);
    jw_key(&w, "queue_cap"), jw_int(&w, cfg.queue_cap);
    jw_key(&w, "requests"), jw_int(&w, stats.requests);
    jw_key(&w, "completed"), jw_int(&w, stats.completed);
    jw_key(&w, "busy"), jw_int(&w, stats.busy);
    jw_key(&w, "errors"), jw_int(&w, stats.errors);
    jw_key(&w, "timeouts"), jw_int(&w, stats.timeouts);
    jw_key(&w, "cancelled"), jw_int(&w, stats.cancelled);
    jw_key(&w, "sessions"), jw_int(&w, nsessions);
    jw_key(&w, "tools"), jw_object_begin(&w);
    for (int i = 0; i < npolicies; i++) {
        jw_key(&w, policies[i].policy.name), jw_object_begin(&w);
        jw_key(&w, "count"), jw_int(&w, policies[i].count);
        jw_key(&w, "wall_ms_mean"),
            jw_double(&w, policies[i].count ? policies[i].wall_ms_total / (double)policies[i].count : 0, 1);
        if (policies[i].zygotes_started) {
            int ready = 0, busy = 0, starting = 0;
            for (struct zygote *z = zygotes; z; z = z->next)
                if (z->lp == &policies[i]) z->job ? busy++ : z->ready ? ready++ : starting++;
            jw_key(&w, "zygotes"), jw_object_begin(&w);
            jw_key(&w, "idle"), jw_int(&w, ready);
            jw_key(&w, "busy"), jw_int(&w, busy);
            jw_key(&w, "starting"), jw_int(&w, starting);
            jw_key(&w, "started"), jw_int(&w, policies[i].zygotes_started);
            jw_key(&w, "lost"), jw_int(&w, policies[i].zygotes_lost);
            jw_key(&w, "enabled"), jw_bool(&w, policies[i].zygotes_on);
            jw_object_end(&w);
        }
        jw_object_end(&w);
    }
    jw_object_end(&w);
    jw_object_end(&w);
    char *obj = jw_finish(&w);
    conn_answer(c, id, obj);
    free(obj);
}

static void answer_policies(struct conn *c, const char *id) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "ok"), jw_bool(&w, true);
    jw_key(&w, "policies"), jw_array_begin(&w);
    for (int i = 0; i < npolicies; i++) {
        const struct policy *p = &policies[i].policy;
        jw_object_begin(&w);
        jw_key(&w, "name"), jw_cstring(&w, p->name);
        jw_key(&w, "description"), jw_cstring(&w, p->description);
        jw_key(&w, "timeout_ms"), jw_int(&w, p->limits.timeout_ms);
        jw_key(&w, "timeout_ms_max"), jw_int(&w, p->limits.timeout_ms_max);
        jw_key(&w, "memory_mb"), jw_int(&w, p->limits.memory_mb);
        jw_key(&w, "output_bytes"), jw_int(&w, p->limits.output_bytes);
        jw_key(&w, "code_bytes"), jw_int(&w, p->limits.code_bytes);
        jw_object_end(&w);
    }
    jw_array_end(&w);
    jw_object_end(&w);
    char *obj = jw_finish(&w);
    conn_answer(c, id, obj);
    free(obj);
}

static void handle_line(struct conn *c, const char *line, size_t len) {
    if (c->is_tcp && !c->authed) {
        /* {"token":"..."} first, compared in constant time */
        cJSON *o = cJSON_ParseWithLength(line, len);
        const cJSON *t = o ? cJSON_GetObjectItemCaseSensitive(o, "token") : NULL;
        int good = 0;
        if (cJSON_IsString(t)) {
            size_t a = strlen(t->valuestring), b = strlen(token);
            unsigned diff = (unsigned)(a ^ b);
            for (size_t i = 0; i < b; i++) diff |= (unsigned char)token[i] ^ (unsigned char)(i < a ? t->valuestring[i] : 0);
            good = diff == 0;
        }
        cJSON_Delete(o);
        if (!good) return conn_refuse(c, "unauthorized", "bad token");
        log_line("\"peer\":\"%s\",\"op\":\"auth\",\"outcome\":\"ok\"", c->peer);
        c->authed = true;
        nunauth--;
        conn_send(c, "{\"ok\":true}\n");
        return;
    }
    stats.requests++;
    struct rpc_request req;
    const char *code = NULL;
    char msg[256];
    if (rpc_parse_request(line, len, &req, &code, msg, sizeof msg) != 0) {
        conn_send_error(c, req.id_json, code, msg);
        log_request(c, &req, 0, code);
        rpc_request_free(&req);
        return;
    }
    switch (req.op) {
    case RPC_PING:
        conn_answer(c, req.id_json, "{\"ok\":true,\"pong\":true}");
        break;
    case RPC_STATS: answer_stats(c, req.id_json); break;
    case RPC_POLICIES: answer_policies(c, req.id_json); break;
    case RPC_SESSION_OPEN: session_open(c, &req); break;
    case RPC_SESSION_CLOSE: session_close_req(c, &req); break;
    case RPC_EXEC: {
        if (req.session) {
            if (session_exec(c, &req)) return; /* the session owns req now */
            log_request(c, &req, 0, "error");
            break;
        }
        struct loaded_policy *lp = find_policy(req.tool);
        if (!lp) {
            snprintf(msg, sizeof msg, "unknown tool '%.64s' (see op policies)", req.tool);
            conn_send_error(c, req.id_json, "bad_request", msg);
            break;
        }
        if (!lp->policy.code_path) {
            conn_send_error(c, req.id_json, "bad_request", "this tool takes no code");
            break;
        }
        if (stopping) {
            conn_send_error(c, req.id_json, "shutting_down", "vivd is shutting down");
            break;
        }
        if (nqueued >= cfg.queue_cap && !can_start_now(lp, req.stdin_given || req.files || req.fetch)) {
            conn_send_error(c, req.id_json, "busy", "all workers busy and the queue is full; retry later");
            stats.busy++;
            log_request(c, &req, 0, "busy");
            break;
        }
        req.timeout_ms = policy_call_timeout_ms(&lp->policy, req.timeout_ms);
        struct job *j = xcalloc(1, sizeof *j);
        j->conn = c;
        j->req = req;
        j->lp = lp;
        j->fd = -1;
        c->jobs++;
        if (queue_tail) queue_tail->next = j;
        else queue_head = j;
        queue_tail = j;
        nqueued++;
        pump_queue();
        return; /* the job owns req now */
    }
    }
    if (req.op != RPC_EXEC && req.op != RPC_SESSION_OPEN) log_request(c, &req, 0, "ok");
    rpc_request_free(&req);
}

/* ---------------------------------------------------------------- connections */

static void conn_close(struct conn *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    /* cancel its running jobs (the worker's cancel_fd hangs up), drop queued ones */
    for (struct job *j = running, *next; j; j = next) {
        next = j->next;
        if (j->conn != c) continue;
        j->conn = NULL;
        if (j->zygote) zygote_destroy(j->zygote, "cancelled: the client went away"); /* frees nothing of c */
        else shutdown(j->fd, SHUT_WR);
    }
    for (struct job *j = queue_head; j; j = j->next)
        if (j->conn == c) j->conn = NULL;
    /* its sessions die with it (docs/sandbox.md: a session belongs to its connection) */
    for (struct session *s = sessions, *next; s; s = next) {
        next = s->next;
        if (s->conn == c) session_destroy(s, "", "");
    }
    for (struct conn **p = &conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    nconns--;
    if (c->is_tcp && !c->authed) nunauth--;
    free(c->in);
    free(c->out);
    free(c);
}

static void conn_flush(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) break;
        if (w < 0) {
            c->closing = true;
            c->out_off = c->out_len;
            break;
        }
        c->out_off += (size_t)w;
    }
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
}

static void conn_readable(struct conn *c) {
    char buf[65536];
    for (;;) {
        /* Before authentication read no more than the token line may hold,
         * so an unauthenticated client never costs more than that. */
        size_t want = sizeof buf;
        if (c->is_tcp && !c->authed && cfg.auth_line + 1 - c->in_len < want) want = cfg.auth_line + 1 - c->in_len;
        ssize_t r = recv(c->fd, buf, want, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) break;
        if (r <= 0) {
            c->closing = true;
            break;
        }
        c->last_active = now_ms();
        /* append, then handle every complete line */
        if (c->in_len + (size_t)r > c->in_cap) {
            c->in_cap = (c->in_len + (size_t)r) * 2;
            c->in = xrealloc(c->in, c->in_cap);
        }
        memcpy(c->in + c->in_len, buf, (size_t)r);
        c->in_len += (size_t)r;
        size_t start = 0;
        for (;;) {
            char *nl = memchr(c->in + start, '\n', c->in_len - start);
            if (!nl) break;
            size_t n = (size_t)(nl - (c->in + start));
            if (n > cfg.max_line) {
                c->closing = true;
                break;
            }
            if (n > 0 && !c->closing) handle_line(c, c->in + start, n);
            start += n + 1;
        }
        memmove(c->in, c->in + start, c->in_len - start);
        c->in_len -= start;
        if (!c->closing && c->is_tcp && !c->authed && c->in_len > cfg.auth_line) {
            char msg[160];
            snprintf(msg, sizeof msg, "the first line must be the token line, at most %zu bytes (--auth-line-bytes)",
                     cfg.auth_line);
            conn_refuse(c, "bad_request", msg);
        } else if (c->in_len > cfg.max_line) { /* a line longer than the cap: drop the client */
            log_line("\"peer\":\"%s\",\"op\":\"read\",\"outcome\":\"line_too_long\"", c->peer);
            c->closing = true;
        }
        if (c->in_cap > 65536 && c->in_len < 16384) { /* give back big buffers */
            c->in_cap = 65536;
            c->in = xrealloc(c->in, c->in_cap);
        }
        if (c->closing) break;
    }
}

/* ---------------------------------------------------------------- the front door
 *
 * Before its token line a TCP connection belongs to nobody, so it may cost
 * vivd only a little: a line of --auth-line-bytes, --auth-ms from accept
 * however slowly it trickles, and one of a bounded number of places
 * (--max-unauth in all, --max-unauth-per-peer per address). Past those it is
 * refused with a line and logged. Unix clients are authenticated by the
 * socket's mode and never wait here.
 *
 * Out of file descriptors, accept() fails (EMFILE, ENFILE) while the
 * listening socket stays readable, and a level-triggered loop would spin on
 * it. vivd keeps one fd in reserve: it gives it up, accepts the waiting
 * client, refuses it with a line, closes it and takes the reserve back, so
 * the backlog drains and the loop sleeps while the open connections are
 * served as before. When even that fails (the system as a whole is out of
 * files, or out of memory), the listeners pause until a tick finds an fd
 * free. Each episode is logged once when it starts and once when it ends. */

static int reserve_fd = -1;
static bool out_of_fds;          /* in an episode */
static long out_of_fds_refused;  /* clients turned away in it */
static bool listeners_paused;

static int take_reserve(void) { return open("/dev/null", O_RDONLY | O_CLOEXEC); }

static void listeners_set(bool on) {
    if (listeners_paused == !on) return;
    listeners_paused = !on;
    int fds[2] = {listen_fd, tcp_fd};
    struct ev_ref *refs[2] = {&listen_ref, &tcp_ref};
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0) {
            if (on) epoll_add(fds[i], EPOLLIN, refs[i]);
            else epoll_ctl(epfd, EPOLL_CTL_DEL, fds[i], NULL);
        }
}

/* Refuse a client vivd will not serve: one error line on the fresh socket
 * (its send buffer takes it at once), then close. */
static void refuse_fd(int fd, const char *code, const char *msg) {
    char *line = refusal_line(code, msg);
    if (send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {} /* best effort: the close says it too */
    free(line);
    close(fd);
}

static void fds_episode_begin(int err) {
    if (out_of_fds) return;
    out_of_fds = true;
    out_of_fds_refused = 0;
    log_line("\"op\":\"accept\",\"outcome\":\"out_of_fds\",\"detail\":\"%s; new clients are refused until fds free up\","
             "\"connections\":%d",
             strerror(err), nconns);
}

static void fds_episode_end(void) {
    if (!out_of_fds) return;
    out_of_fds = false;
    log_line("\"op\":\"accept\",\"outcome\":\"fds_available\",\"refused\":%ld", out_of_fds_refused);
}

/* accept() failed for want of fds or memory: turn away what waits on lfd
 * through the reserve fd, or pause the listeners when that cannot work.
 * accept() takes the fd before it looks at the backlog, so EMFILE may come
 * with nobody waiting (the last fd just went to a client): the episode
 * starts only when someone is turned away. */
static void accept_starved(int lfd, int err) {
    bool reserve_helps = err == EMFILE || err == ENFILE;
    for (int i = 0; i < 64 && reserve_helps && reserve_fd >= 0; i++) {
        close(reserve_fd);
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), e = fd < 0 ? errno : 0;
        if (fd >= 0) {
            fds_episode_begin(err);
            refuse_fd(fd, "busy", "vivd is out of file descriptors; retry later");
            out_of_fds_refused++;
        }
        reserve_fd = take_reserve();
        if (e == EAGAIN || e == EWOULDBLOCK) return;  /* drained: epoll wakes us for the next */
        if (e != 0 && e != EINTR && e != ECONNABORTED) reserve_helps = false;
    }
    if (reserve_helps && reserve_fd >= 0) return; /* 64 turned away, more wait: epoll brings us back */
    fds_episode_begin(err);
    listeners_set(false); /* front_door_tick() resumes them once an fd is free again */
}

/* A new TCP client may wait for its token line only while the caps allow:
 * NULL, or the refusal's message (in msg). */
static const char *unauth_cap_reached(const struct conn *nc, char *msg, size_t len) {
    if (nunauth >= cfg.max_unauth) {
        snprintf(msg, len, "%d connections are waiting to authenticate, the most allowed (--max-unauth); retry later",
                 nunauth);
        return msg;
    }
    char key[96], other[96];
    peer_key(nc, key, sizeof key);
    int mine = 0;
    for (struct conn *c = conns; c; c = c->next)
        if (c->is_tcp && !c->authed) {
            peer_key(c, other, sizeof other);
            mine += strcmp(key, other) == 0;
        }
    if (mine >= cfg.max_unauth_per_peer) {
        snprintf(msg, len, "%d connections from %s are waiting to authenticate, the most allowed (--max-unauth-per-peer)",
                 mine, key + 4 /* past "tcp:" */);
        return msg;
    }
    return NULL;
}

static void conn_set_peer(struct conn *c, int fd, const struct sockaddr_storage *sa) {
    if (c->is_tcp) {
        char host[64] = "?";
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(c->peer, sizeof c->peer, "tcp:%s:%d", host, ntohs(in->sin_port));
    } else {
        struct ucred cred;
        socklen_t cl = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
            snprintf(c->peer, sizeof c->peer, "uid:%u", (unsigned)cred.uid);
        else
            snprintf(c->peer, sizeof c->peer, "uid:?");
    }
}

static void accept_clients(int lfd, bool tcp) {
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t slen = sizeof sa;
        int fd = accept4(lfd, (struct sockaddr *)&sa, &slen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) accept_starved(lfd, errno);
            return;
        }
        fds_episode_end();
        struct conn *c = xcalloc(1, sizeof *c);
        c->fd = fd;
        c->is_tcp = tcp;
        c->accepted = c->last_active = now_ms();
        conn_set_peer(c, fd, &sa);
        char msg[200];
        if (tcp && unauth_cap_reached(c, msg, sizeof msg)) {
            log_line("\"peer\":\"%s\",\"op\":\"auth\",\"outcome\":\"refused\",\"detail\":\"%s\"", c->peer, msg);
            refuse_fd(fd, "busy", msg);
            free(c);
            continue;
        }
        if (tcp) nunauth++;
        c->next = conns;
        conns = c;
        nconns++;
        c->ref = (struct ev_ref){TAG_CONN, c};
        epoll_add(fd, EPOLLIN | EPOLLRDHUP, &c->ref);
    }
}

/* Called every loop turn: TCP clients past --auth-ms without a good token
 * line are refused (counted from accept, so trickled bytes buy nothing),
 * and paused listeners resume once an fd is free for the reserve. */
static void front_door_tick(double now) {
    for (struct conn *c = conns; c; c = c->next)
        if (c->is_tcp && !c->authed && !c->closing && now - c->accepted > (double)cfg.auth_ms) {
            char msg[120];
            snprintf(msg, sizeof msg, "no token line within %ld ms (--auth-ms)", cfg.auth_ms);
            conn_refuse(c, "unauthorized", msg);
        }
    if (listeners_paused && !stopping && (reserve_fd >= 0 || (reserve_fd = take_reserve()) >= 0))
        listeners_set(true);
}

/* ---------------------------------------------------------------- setup */

static int load_policies(char *err, size_t errlen) {
    for (const char *const *n = policy_builtin_names(); *n && npolicies < MAX_POLICIES; n++) {
        if (policy_load(*n, &policies[npolicies].policy, err, errlen)) return -1;
        npolicies++;
    }
    if (cfg.policies_dir) {
        DIR *d = opendir(cfg.policies_dir);
        if (!d) {
            snprintf(err, errlen, "--policies %s: %s", cfg.policies_dir, strerror(errno));
            return -1;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t n = strlen(e->d_name);
            if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0) continue;
            char *path = xasprintf("%s/%s", cfg.policies_dir, e->d_name);
            struct policy p;
            int rc = policy_load(path, &p, err, errlen);
            free(path);
            if (rc == 0 && (rc = policy_check_runnable(&p, err, errlen)) != 0) policy_free(&p);
            if (rc) {
                closedir(d);
                return -1;
            }
            struct loaded_policy *same = find_policy(p.name);
            if (same) { /* a file overrides the built-in of the same name */
                policy_free(&same->policy);
                same->policy = p;
            } else if (npolicies < MAX_POLICIES) {
                policies[npolicies++].policy = p;
            } else {
                policy_free(&p);
            }
        }
        closedir(d);
    }
    for (int i = 0; i < npolicies; i++) {
        struct loaded_policy *lp = &policies[i];
        if (syscall_filter_compile(&lp->policy.seccomp, &lp->filter, err, errlen)) return -1;
        lp->zygotes_on = cfg.zygotes > 0 && zygote_policy_supported(&lp->policy);
        if (lp->zygotes_on && syscall_filter_compile_zygote(&lp->policy.seccomp, &lp->zygote_filter, err, errlen))
            return -1;
    }
    return 0;
}

static int listen_unix(const char *path, char *err, size_t errlen) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "--socket %s: path too long", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    /* Replace a stale socket, but never another kind of file. */
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "--socket %s: exists and is not a socket", path);
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(probe);
            snprintf(err, errlen, "--socket %s: another vivd is serving it", path);
            return -1;
        }
        if (probe >= 0) close(probe);
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    mode_t old = umask(0117); /* socket mode 0660 */
    int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc != 0 || listen(fd, 256) != 0) {
        snprintf(err, errlen, "--socket %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static int listen_tcp(const char *addr, char *err, size_t errlen) {
    char host[64];
    const char *colon = strrchr(addr, ':');
    long port;
    if (!colon || (size_t)(colon - addr) >= sizeof host || parse_long(colon + 1, 1, 65535, &port)) {
        snprintf(err, errlen, "--tcp %s: expected ADDR:PORT", addr);
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "--tcp %s: '%s' is not an IPv4 address", addr, host);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 256) != 0) {
        snprintf(err, errlen, "--tcp %s: %s", addr, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

/* --data NAME=PATH: the path resolved and checked now, so a typo is an
 * error at start rather than jobs that silently lack the mount */
static int add_data(void *ctx, const char *v, char *err, size_t errlen) {
    struct config *c = ctx;
    if (c->ndata == MAX_DATA) return fail_with(err, errlen, "more than %d --data values", MAX_DATA);
    char *name, *path;
    if (args_name_path(v, &name, &path, err, errlen) != 0) return -1;
    c->data[c->ndata++] = (struct jail_data){name, path};
    return 0;
}

static int show_version;

/* One line per flag; the help is generated from this table (args.h). */
static const struct arg_opt vivd_opts[] = {
    {"--socket", ARG_STR, &cfg.socket_path, 0, 0, "PATH", "the Unix socket to serve (required; mode 0660)"},
    {"--policies", ARG_STR, &cfg.policies_dir, 0, 0, "DIR", "policy files to serve besides the built-in ones"},
    {"--workers", ARG_INT, &cfg.workers, 1, 4096, "N", "jobs run at once (default: 2 per core)"},
    {"--queue", ARG_INT, &cfg.queue_cap, 0, 1000000, "N", "requests waiting beyond that; more get \"busy\" (default 64)"},
    {"--log", ARG_STR, &cfg.log_path, 0, 0, "FILE", "one JSON line per request (default: stderr)"},
    {"--egress-log", ARG_STR, &cfg.egress_log, 0, 0, "FILE", "one JSON line per egress connection of a job (default: the --log)"},
    {"--egress-record", ARG_STR, &cfg.egress_record, 0, 0, "DIR", "keep the answers to jobs' plain-HTTP egress requests in DIR"},
    {"--egress-replay", ARG_STR, &cfg.egress_replay, 0, 0, "DIR", "answer jobs' plain-HTTP egress only from DIR (a miss is a 502); refuse HTTPS"},
    {"--data", ARG_FN, &cfg, 0, 0, "NAME=PATH", "a value for policies' @NAME mounts (e.g. db=genes.sqlite);\n"
                                                 "the path must exist (relative paths are resolved)", add_data},
    {"--idle-ms", ARG_LONG, &cfg.idle_ms, 10, 86400000, "N", "close connections idle this long with nothing in flight (default 60000)"},
    {"--grace-ms", ARG_LONG, &cfg.grace_ms, 0, 3600000, "N", "on SIGTERM, how long running jobs may finish (default 10000)"},
    {"--max-line-bytes", ARG_LONG, &cfg.max_line_arg, 1024, 1073741824, "N", "longest request line; longer closes the connection (default 8 MiB)"},
    {"--tcp", ARG_STR, &cfg.tcp_addr, 0, 0, "ADDR:PORT", "also listen on TCP; needs --token-file (first line: {\"token\":\"...\"})"},
    {"--token-file", ARG_STR, &cfg.token_file, 0, 0, "FILE", "the token TCP clients must send first"},
    {"--http", ARG_STR, &cfg.http_addr, 0, 0, "ADDR:PORT", "also serve HTTP: SandboxFusion's POST /run_code, Biomni's /start_runtime,\n"
                                                           "/execute, /delete_runtime (IPv4; loopback only unless --token-file, then\n"
                                                           "Authorization: Bearer TOKEN); each call is an ordinary request here"},
    {"--session-idle-ms", ARG_LONG, &cfg.session_idle_ms, 10, 86400000, "N", "close sessions unused this long (default 600000)"},
    {"--max-sessions-per-peer", ARG_INT, &cfg.max_sessions_per_peer, 0, 100000, "N", "open sessions per uid (or TCP address) (default 16)"},
    {"--zygotes", ARG_INT, &cfg.zygotes, 0, 256, "N", "warm interpreters per policy with a preload list, each running one-shot\n"
                                                       "jobs in fresh isolated children (default: --workers; 0 = none)"},
    {"--auth-line-bytes", ARG_LONG, &cfg.auth_line_arg, 64, 1048576, "N", "(TCP, before the token) the token line is at most this long (default 4096)"},
    {"--auth-ms", ARG_LONG, &cfg.auth_ms, 10, 600000, "N", "(TCP) the token line comes within this long of connecting (default 5000)"},
    {"--max-unauth", ARG_INT, &cfg.max_unauth, 1, 1000000, "N", "(TCP) connections waiting to authenticate, in all (default 256)"},
    {"--max-unauth-per-peer", ARG_INT, &cfg.max_unauth_per_peer, 1, 1000000, "N", "(TCP) of those, from one address (default 64)"},
    {"--version", ARG_FLAG, &show_version, 0, 0, NULL, "print the version and exit"},
    {0},
};

static const struct arg_cmd vivd_cmd = {
    .prog = "vivd",
    .synopsis = "vivd --socket PATH [options]",
    .about = "Serves the sandbox RPC (newline-delimited JSON) on a Unix socket, and on TCP with a token.\n"
             "A TCP connection that breaks the --auth-* limits before its token line gets an error\n"
             "line and is closed, and the log says why.\n",
    .opts = vivd_opts,
    .examples = "  vivd --socket /tmp/vivd.sock\n"
                "  vivd --socket /tmp/vivd.sock --data db=data/db/org.Hs.eg.sqlite --workers 8\n"
                "  vivd --socket /tmp/vivd.sock --tcp 0.0.0.0:7070 --token-file token.json\n"
                "  vivd --socket /tmp/vivd.sock --http 127.0.0.1:8080\n",
};

/* 0: run; ARGS_HELP: help or version printed (exit 0); ARGS_USAGE: exit 2 */
static int parse_args(int argc, char **argv) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg.workers = (int)(cores > 0 ? cores * 2 : 2);
    cfg.queue_cap = 64;
    cfg.idle_ms = 60000;
    cfg.grace_ms = 10000;
    cfg.max_line_arg = 8u << 20;
    cfg.auth_line_arg = 4096; /* {"token":"..."}: the token is under 256 bytes, escaped at most 6x */
    cfg.auth_ms = 5000;     /* clients send it with the connect; this is for slow links */
    cfg.max_unauth = 256;   /* at ~10 KiB each (the line, the conn): a few MiB and fds in all */
    cfg.max_unauth_per_peer = 64; /* a trainer host opens its connections in bursts */
    cfg.session_idle_ms = 600000;
    cfg.max_sessions_per_peer = 16;
    cfg.zygotes = -1; /* default: as many as --workers */
    int rc = args_parse(&vivd_cmd, argc, argv, NULL);
    if (rc) return rc;
    if (show_version) {
        printf("vivd %s\n", VIV_VERSION);
        return ARGS_HELP;
    }
    cfg.max_line = (size_t)cfg.max_line_arg;
    cfg.auth_line = (size_t)cfg.auth_line_arg;
    if (cfg.zygotes < 0) cfg.zygotes = cfg.workers;
    if (!cfg.socket_path) return args_error(&vivd_cmd, "--socket PATH is required");
    if (cfg.tcp_addr && !cfg.token_file) return args_error(&vivd_cmd, "--tcp needs --token-file: TCP is never served without a token");
    return 0;
}

/* ---------------------------------------------------------------- loop */

/* The HTTP front (http_front.c): a process of its own that is a client of
 * our Unix socket, so its calls meet the same admission, limits and log as
 * any other. It dies with us (parent-death signal) or at shutdown. */
static pid_t http_pid = -1;

static int start_http_front(char *err, size_t errlen) {
    int fd = http_listen(cfg.http_addr, token[0] != 0, err, errlen);
    if (fd < 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        return fail_with(err, errlen, "--http: fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(listen_fd), close(epfd), close(reserve_fd);
        if (tcp_fd >= 0) close(tcp_fd);
        if (log_file) fclose(log_file), log_file = NULL;
        _exit(http_front_main(fd, cfg.socket_path, token, cfg.max_line));
    }
    close(fd);
    http_pid = pid;
    log_line("\"op\":\"http\",\"listen\":\"%s\",\"token\":%s", cfg.http_addr, token[0] ? "true" : "false");
    return 0;
}

static void begin_shutdown(void) {
    if (http_pid > 0) kill(http_pid, SIGTERM);
    if (stopping) return;
    stopping = true;
    stop_deadline = now_ms() + (double)cfg.grace_ms;
    log_line("\"op\":\"shutdown\",\"running\":%d,\"queued\":%d", nrunning, nqueued);
    if (listen_fd >= 0) epoll_ctl(epfd, EPOLL_CTL_DEL, listen_fd, NULL), close(listen_fd), listen_fd = -1;
    if (tcp_fd >= 0) epoll_ctl(epfd, EPOLL_CTL_DEL, tcp_fd, NULL), close(tcp_fd), tcp_fd = -1;
    unlink(cfg.socket_path);
    while (queue_head) {
        struct job *j = queue_head;
        queue_head = j->next;
        conn_send_error(j->conn, j->req.id_json, "shutting_down", "vivd is shutting down");
        if (j->conn) j->conn->jobs--;
        job_free(j);
    }
    queue_tail = NULL;
    nqueued = 0;
    for (struct zygote *z = zygotes, *next; z; z = next) { /* busy ones finish their job first */
        next = z->next;
        if (!z->job) zygote_destroy(z, "");
    }
    for (struct session *s = sessions, *next; s; s = next) { /* busy ones finish their call first */
        next = s->next;
        if (!s->pending_id) session_destroy(s, "", "");
    }
}

static void handle_signals(void) {
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGCHLD) {
            while (waitpid(-1, NULL, WNOHANG) > 0) {}
        } else {
            begin_shutdown();
        }
    }
}

static void tick(void) {
    double now = now_ms();
    for (struct session *s = sessions, *next; s; s = next) {
        next = s->next;
        if (!s->pending_id && now - s->last_used > (double)cfg.session_idle_ms) {
            log_line("\"peer\":\"%s\",\"op\":\"session_expire\",\"outcome\":\"idle\"", s->peer);
            remember_lost(s, "it expired after --session-idle-ms without a call");
            session_destroy(s, "", "");
        } else if (stopping && now >= stop_deadline) {
            session_destroy(s, "shutting_down", "vivd is shutting down; the session was closed");
        }
    }
    for (struct conn *c = conns; c; c = c->next)
        if (c->jobs == 0 && c->out_len == 0 && now - c->last_active > (double)cfg.idle_ms) c->closing = true;
    front_door_tick(now);
    if (stopping && now >= stop_deadline) {
        /* grace is over: cancel what still runs; it is answered as cancelled */
        for (struct job *j = running; j; j = j->next)
            if (!j->zygote && write(j->fd, "x", 1) < 0) {}
        for (struct zygote *z = zygotes, *next; z; z = next) {
            next = z->next;
            zygote_destroy(z, "cancelled: vivd is shutting down");
        }
        stop_deadline = now + 1e9;
    }
}

int vivd_main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    int prc = parse_args(argc, argv);
    if (prc) return prc == ARGS_HELP ? 0 : 2;
    char err[1024];
    log_file = stderr;
    if (cfg.log_path && !(log_file = fopen(cfg.log_path, "ae"))) {
        fprintf(stderr, "vivd: --log %s: %s\n", cfg.log_path, strerror(errno));
        return 2;
    }
    if (egress_configure(cfg.egress_log, cfg.egress_record, cfg.egress_replay, err, sizeof err) != 0) {
        fprintf(stderr, "vivd: %s\n", err);
        return 2;
    }
    if (!cfg.egress_log) egress_set_log_fd(fileno(log_file));
    if (load_policies(err, sizeof err)) {
        fprintf(stderr, "vivd: %s\n", err);
        return 2;
    }
    if (cfg.token_file) {
        size_t n;
        char *t = read_file(cfg.token_file, sizeof token - 1, &n, err, sizeof err);
        if (!t) {
            fprintf(stderr, "vivd: --token-file %s\n", err);
            return 2;
        }
        while (n && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ')) t[--n] = 0;
        if (n < 16) {
            fprintf(stderr, "vivd: --token-file: the token must be at least 16 characters\n");
            free(t);
            return 2;
        }
        memcpy(token, t, n + 1);
        free(t);
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if ((reserve_fd = take_reserve()) < 0) {
        fprintf(stderr, "vivd: /dev/null: %s (kept open to refuse clients cleanly when out of fds)\n", strerror(errno));
        return 2;
    }
    if ((listen_fd = listen_unix(cfg.socket_path, err, sizeof err)) < 0 ||
        (cfg.tcp_addr && (tcp_fd = listen_tcp(cfg.tcp_addr, err, sizeof err)) < 0)) {
        fprintf(stderr, "vivd: %s\n", err);
        return 2;
    }
    if (cfg.http_addr && start_http_front(err, sizeof err)) {
        fprintf(stderr, "vivd: %s\n", err);
        return 2;
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    epoll_add(listen_fd, EPOLLIN, &listen_ref);
    if (tcp_fd >= 0) epoll_add(tcp_fd, EPOLLIN, &tcp_ref);
    epoll_add(sigfd, EPOLLIN, &signal_ref);
    started_at = now_ms();
    log_line("\"op\":\"start\",\"socket\":\"%s\",\"workers\":%d,\"queue\":%d,\"policies\":%d%s", cfg.socket_path,
             cfg.workers, cfg.queue_cap, npolicies, cfg.tcp_addr ? ",\"tcp\":true" : "");

    zygotes_top_up();
    while (!(stopping && nrunning == 0 && nqueued == 0 && nsessions == 0)) {
        struct epoll_event evs[64];
        int n = epoll_wait(epfd, evs, 64, 200);
        for (int i = 0; i < n; i++) {
            struct ev_ref *ref = evs[i].data.ptr;
            switch (ref->tag) {
            case TAG_LISTEN: accept_clients(listen_fd, false); break;
            case TAG_TCP: accept_clients(tcp_fd, true); break;
            case TAG_SIGNAL: handle_signals(); break;
            case TAG_JOB: job_readable(ref->ptr); break;
            case TAG_SESSION: session_readable(ref->ptr); break;
            case TAG_ZYGOTE: zygote_readable(ref->ptr); break;
            case TAG_CONN: {
                struct conn *c = ref->ptr;
                if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) conn_readable(c);
                break;
            }
            }
        }
        tick();
        zygotes_top_up();
        /* flush output; close finished or broken connections */
        for (struct conn *c = conns, *next; c; c = next) {
            next = c->next;
            if (c->out_len) conn_flush(c);
            if (c->closing) {
                conn_close(c);
                continue;
            }
            bool want = c->out_len > 0;
            if (want != c->want_out) { /* wake up when the client can take more */
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0u), .data.ptr = &c->ref};
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                c->want_out = want;
            }
        }
    }
    /* last answers: give each client up to a second to take them */
    for (struct conn *c = conns; c; c = c->next) {
        int fl = fcntl(c->fd, F_GETFL);
        fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
        struct timeval tv = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        conn_flush(c);
    }
    log_line("\"op\":\"stop\",\"requests\":%ld,\"completed\":%ld", stats.requests, stats.completed);
    return 0;
}
