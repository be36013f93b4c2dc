/*
 * warm_worker.c - the worker plumbing shared by sessions and zygotes; see
 * warm_worker.h for the process picture.
 */
#define _GNU_SOURCE
#include "warm_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../base/json_writer.h"
#include "../base/util.h"

/* ------------------------------------------------------------ S: the jail */

static void supervise(const struct warm_spec *ws, int in_r, int out_w, int cancel_r, int final_w)
    __attribute__((noreturn));
static void supervise(const struct warm_spec *ws, int in_r, int out_w, int cancel_r, int final_w) {
    struct jail_stdio io = {in_r, out_w};
    struct jail_spec spec = {
        .policy = ws->policy, .code = ws->driver, .code_len = ws->driver_len,
        .timeout_ms = ws->policy->limits.session_ms_max, .session_lifetime = true,
        .memory_mb = ws->memory_mb, .zygote = ws->zygote,
        .data = ws->data, .ndata = ws->ndata,
        .filter = ws->filter, .cancel_fd = cancel_r, .stdio = &io,
    };
    struct jail_result res;
    struct warm_final f;
    memset(&f, 0, sizeof f);
    char err[1024];
    if (jail_run(&spec, &res, err, sizeof err) != 0) {
        f.setup_failed = 1;
        snprintf(f.text, sizeof f.text, "%s", err);
    } else {
        f.exit_code = res.exit_code, f.signal = res.signal, f.timed_out = res.timed_out;
        f.cpu_ms = res.cpu_ms, f.max_rss_kb = res.max_rss_kb;
        snprintf(f.limits_not_applied, sizeof f.limits_not_applied, "%s", res.limits_not_applied);
        size_t keep = res.err_len < sizeof f.text - 1 ? res.err_len : sizeof f.text - 1;
        memcpy(f.text, res.err + res.err_len - keep, keep);
        jail_result_free(&res);
    }
    _exit(write_all(final_w, &f, sizeof f) == 0 ? 0 : 1);
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static int fork_supervisor(struct warm_worker *w, char *err, size_t errlen) {
    int in_p[2], out_p[2], cancel_p[2], final_p[2];
    if (pipe2(in_p, O_CLOEXEC) || pipe2(out_p, O_CLOEXEC) || pipe2(cancel_p, O_CLOEXEC) ||
        pipe2(final_p, O_CLOEXEC)) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1; /* this process exits right away; the kernel closes them */
    }
    w->sup = fork();
    if (w->sup < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    if (w->sup == 0) {
        close(in_p[1]), close(out_p[0]), close(cancel_p[1]), close(final_p[0]), close(w->ctl);
        supervise(w->ws, in_p[0], out_p[1], cancel_p[0], final_p[1]);
    }
    close(in_p[0]), close(out_p[1]), close(cancel_p[0]), close(final_p[1]);
    w->job_in = in_p[1], w->job_out = out_p[0], w->cancel_w = cancel_p[1], w->final_r = final_p[0];
    fcntl(w->job_in, F_SETFL, O_NONBLOCK);
    fcntl(w->job_out, F_SETFL, O_NONBLOCK);
    return 0;
}

void warm_finish(struct warm_worker *w, struct warm_final *f) {
    memset(f, 0, sizeof *f);
    f->exit_code = -1;
    if (w->cancel_w >= 0 && write(w->cancel_w, "x", 1) < 0) {}
    close_fd(&w->cancel_w);
    close_fd(&w->job_in);
    struct pollfd p = {w->final_r, POLLIN, 0};
    if (w->final_r >= 0 && poll(&p, 1, 10000) == 1) {
        ssize_t r;
        do r = read(w->final_r, f, sizeof *f);
        while (r < 0 && errno == EINTR);
        if (r != (ssize_t)sizeof *f) memset(f, 0, sizeof *f), f->exit_code = -1, f->signal = SIGKILL;
    }
    f->text[sizeof f->text - 1] = 0;
    f->limits_not_applied[sizeof f->limits_not_applied - 1] = 0;
    close_fd(&w->final_r);
    close_fd(&w->job_out);
    if (w->sup > 0) {
        kill(w->sup, SIGKILL); /* it has reported (or is stuck): either way we are done with it */
        waitpid(w->sup, NULL, 0);
        w->sup = -1;
    }
}

/* ------------------------------------------------------------ W: talking */

enum warm_outcome warm_exchange(struct warm_worker *w, const char *send, size_t send_len, double deadline,
                                warm_complete_fn complete, void *arg) {
    size_t sent = 0;
    for (;;) {
        w->sent_all = sent == send_len;
        long c = complete(w, arg);
        if (c > 0) return WARM_DONE;
        if (c < 0) return WARM_BAD_REPLY;
        double now = now_ms();
        if (now >= deadline) return WARM_DEADLINE;
        struct pollfd p[4] = {{w->job_out, POLLIN, 0}, {w->ctl, POLLIN, 0}, {w->final_r, POLLIN, 0},
                              {sent < send_len ? w->job_in : -1, POLLOUT, 0}};
        int pr = poll(p, 4, (int)(deadline - now) + 1);
        if (pr < 0 && errno != EINTR) return WARM_JOB_GONE;
        if (pr <= 0) continue;
        if (p[1].revents) return WARM_CTL_GONE; /* vivd never writes mid-call: this is a hang-up */
        if (p[3].revents) {
            ssize_t n = write(w->job_in, send + sent, send_len - sent);
            if (n > 0) sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR) return WARM_JOB_GONE;
        }
        if (p[0].revents) {
            if (w->cap - w->len < 65536) {
                w->cap = w->cap * 2 + 65536;
                w->buf = xrealloc(w->buf, w->cap);
            }
            ssize_t n = read(w->job_out, w->buf + w->len, w->cap - w->len);
            if (n > 0) w->len += (size_t)n;
            else if (n == 0 || (errno != EAGAIN && errno != EINTR)) return WARM_JOB_GONE;
        } else if (p[2].revents) {
            return WARM_JOB_GONE; /* S reported: the jail is over */
        }
    }
}

long warm_reply_complete(struct warm_worker *w, void *arg) {
    struct warm_reply *r = arg;
    size_t scan = w->len < 200 ? w->len : 200;
    char *nl = memchr(w->buf, '\n', scan);
    if (!nl) return w->len >= 200 ? -1 : 0;
    char head[201];
    size_t hl = (size_t)(nl - w->buf);
    memcpy(head, w->buf, hl);
    head[hl] = 0;
    /* strictly: nine numbers in range, nothing else on the line */
    size_t cap = (size_t)w->ws->policy->limits.output_bytes;
    int end = -1;
    int n = sscanf(head, "%d %d %d %zu %zu %zu %zu %lf %ld%n", &r->exit_code, &r->signal, &r->flag, &r->out_len,
                   &r->out_total, &r->err_len, &r->err_total, &r->cpu_ms, &r->rss_kb, &end);
    if (n != 9 || end != (int)hl || r->exit_code < -1 || r->exit_code > 255 || r->signal < 0 || r->signal > 64 ||
        r->flag < 0 || r->flag > 2 || r->out_len > cap || r->err_len > cap || r->out_total < r->out_len ||
        r->err_total < r->err_len || !(r->cpu_ms >= 0 && r->cpu_ms < 1e12) || r->rss_kb < 0)
        return -1;
    size_t total = hl + 1 + r->out_len + r->err_len;
    if (w->len < total) return 0;
    r->out = w->buf + hl + 1;
    r->err = r->out + r->out_len;
    r->msg_len = total;
    return (long)total;
}

void warm_consume(struct warm_worker *w, size_t n) {
    memmove(w->buf, w->buf + n, w->len - n);
    w->len -= n;
}

static long ready_complete(struct warm_worker *w, void *arg) {
    (void)arg;
    if (w->len < 6) return 0;
    return memcmp(w->buf, "ready\n", 6) == 0 ? 6 : -1;
}

int warm_start(struct warm_worker *w, const struct warm_spec *ws, int ctl, long ready_ms, char *err,
               size_t errlen) {
    *w = (struct warm_worker){.ws = ws, .ctl = ctl, .sup = -1, .job_in = -1, .job_out = -1,
                              .cancel_w = -1, .final_r = -1};
    if (fork_supervisor(w, err, errlen)) return -1;
    enum warm_outcome o = warm_exchange(w, "", 0, now_ms() + (double)ready_ms, ready_complete, NULL);
    if (o == WARM_DONE) {
        warm_consume(w, 6);
        return 0;
    }
    struct warm_final f;
    warm_finish(w, &f);
    snprintf(err, errlen, "%s", o == WARM_CTL_GONE ? "vivd went away" :
             o == WARM_DEADLINE ? "the interpreter did not start in time" :
             f.text[0] ? f.text : "no answer from the job");
    free(w->buf);
    w->buf = NULL;
    return -1;
}

int warm_wait_idle(struct warm_worker *w) {
    struct pollfd p[3] = {{w->ctl, POLLIN, 0}, {w->job_out, POLLIN, 0}, {w->final_r, POLLIN, 0}};
    for (;;) {
        int pr = poll(p, 3, -1);
        if (pr < 0 && errno == EINTR) continue;
        if (pr < 0 || p[1].revents || p[2].revents) return -1;
        if (p[0].revents) return 0;
    }
}

int warm_read_call(struct warm_worker *w, struct warm_call *call) {
    char head[96];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(w->ctl, head + n, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        if (head[n] == '\n') break;
        if (++n == sizeof head) return -1;
    }
    head[n] = 0;
    size_t len;
    if (sscanf(head, "C %ld %ld %zu", &call->timeout_ms, &call->memory_mb, &len) != 3 ||
        len > (size_t)w->ws->policy->limits.code_bytes || call->timeout_ms <= 0)
        return -1;
    call->code = xmalloc(len + 1);
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(w->ctl, call->code + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(call->code);
            return -1;
        }
        got += (size_t)r;
    }
    call->code_len = len;
    return 0;
}

char *warm_call_frame(long timeout_ms, long memory_mb, const char *code, size_t code_len, size_t *frame_len) {
    char head[96];
    int h = snprintf(head, sizeof head, "C %ld %ld %zu\n", timeout_ms, memory_mb, code_len);
    char *f = xmalloc((size_t)h + code_len);
    memcpy(f, head, (size_t)h);
    memcpy(f + h, code, code_len);
    *frame_len = (size_t)h + code_len;
    return f;
}

int warm_send_line(int fd, char *obj) {
    size_t n = strlen(obj);
    obj = xrealloc(obj, n + 2);
    obj[n] = '\n', obj[n + 1] = 0;
    int rc = write_all(fd, obj, n + 1);
    free(obj);
    return rc;
}

int warm_send_error(int fd, const char *code, const char *msg) {
    struct json_writer jw;
    jw_init(&jw);
    jw_object_begin(&jw);
    jw_key(&jw, "ok"), jw_bool(&jw, false);
    jw_key(&jw, "error"), jw_object_begin(&jw);
    jw_key(&jw, "code"), jw_cstring(&jw, code);
    jw_key(&jw, "message"), jw_cstring(&jw, msg);
    jw_object_end(&jw), jw_object_end(&jw);
    return warm_send_line(fd, jw_finish(&jw));
}
