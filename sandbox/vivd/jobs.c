/*
 * jobs.c - vivd's one-shot jobs: the queue, cold workers (a forked jail_run()
 * per job) and dispatch to an idle zygote.
 */
#define _GNU_SOURCE
#include "vivd_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../base/json_writer.h"
#include "warm_worker.h"
#include "../jail/egress.h"
#include "../base/util.h"

/* ---------------------------------------------------------------- jobs */

void job_free(struct job *j) {
    rpc_request_free(&j->req);
    free(j->result);
    free(j);
}

void log_request(const struct conn *c, const struct rpc_request *req, double wall_ms,
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
        .timeout_ms = j->req.timeout_ms, .data = vd.cfg.data, .ndata = vd.cfg.ndata,
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
pid_t fork_worker(int *fd) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        /* The worker keeps stdio and its socket, nothing of the daemon's:
         * a client socket held here would outlive the client's close. */
        if (dup2(sv[1], 3) < 0) _exit(1);
        close_fds_from(egress_keep_log_at(4)); /* the egress log stays open, at fd 4 */
        vd.log_file = NULL;
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
    size_t n; /* the deadline was settled (policy_call_timeout_ms) when the job was queued */
    char *frame = warm_call_frame(j->req.timeout_ms, p->limits.memory_mb, j->req.code, j->req.code_len, &n);
    int rc = send_frame(z->fd, frame, n);
    free(frame);
    if (rc != 0) {
        zygote_destroy(z, "its worker stopped taking requests");
        return false;
    }
    z->job = j;
    j->zygote = z;
    j->fd = -1;
    j->next = vd.running;
    vd.running = j;
    vd.nrunning++;
    return true;
}

static void start_job(struct job *j) {
    int fd = -1;
    j->started = now_ms();
    if (start_on_zygote(j)) return;
    vd.ncold++;
    vd.cold_started++;
    pid_t pid = fork_worker(&fd);
    if (pid == 0) {
        char id[32];
        snprintf(id, sizeof id, "j-%ld", vd.cold_started);
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
    j->next = vd.running;
    vd.running = j;
    vd.nrunning++;
}

/* Start queued jobs, oldest first. A job whose policy has a ready zygote
 * waits for one of its zygotes (they are the warm path, and as many as the
 * policy's share of concurrency); any other job runs in a cold jail when
 * fewer than cfg.workers cold jails run. */
bool can_start_now(const struct loaded_policy *lp, bool cold) {
    return zygote_ready(lp) && !cold ? idle_zygote(lp) != NULL : vd.ncold < vd.cfg.workers;
}

void pump_queue(void) {
    struct job **p = &vd.queue_head, *prev = NULL;
    while (!vd.stopping && *p) {
        struct job *j = *p;
        bool go = !j->conn || can_start_now(j->lp, job_needs_cold(j)); /* a job whose client left is dropped below */
        if (!go) {
            prev = j;
            p = &j->next;
            continue;
        }
        *p = j->next;
        if (vd.queue_tail == j) vd.queue_tail = prev;
        vd.nqueued--;
        j->next = NULL;
        if (!j->conn) job_free(j);
        else start_job(j);
    }
}

static void unlink_running(struct job *j) {
    if (!j->zygote) vd.ncold--;
    for (struct job **p = &vd.running; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            break;
        }
    vd.nrunning--;
}

/* The job is over: answer with `result` (an exec response or error object;
 * NULL when the worker died without one), log, free, start the next. */
void job_finish(struct job *j, const char *result) {
    unlink_running(j);
    double wall = now_ms() - j->started;
    const char *outcome = "ok";
    if (result && result[0] == '{') {
        conn_answer(j->conn, j->req.id_json, result);
        if (strstr(result, "\"ok\":false")) outcome = "error", vd.stats.errors++;
        else if (strstr(result, "\"timed_out\":true")) outcome = "timed_out", vd.stats.timeouts++;
        else if (strstr(result, "\"cancelled\":true")) outcome = "cancelled", vd.stats.cancelled++;
    } else {
        conn_send_error(j->conn, j->req.id_json, "internal", "the worker died without a result");
        outcome = "error";
    }
    j->lp->count++;
    j->lp->wall_ms_total += wall;
    vd.stats.completed++;
    log_request(j->conn, &j->req, wall, outcome);
    if (j->conn) j->conn->jobs--;
    job_free(j);
    pump_queue();
}

/* The worker's socket is readable: collect the result; at EOF, answer. */
void job_readable(struct job *j) {
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
    epoll_ctl(vd.epfd, EPOLL_CTL_DEL, j->fd, NULL);
    close(j->fd);
    job_finish(j, j->result);
}
