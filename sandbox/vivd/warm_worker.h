/*
 * warm_worker.h - the plumbing shared by vivd's long-lived jails: sessions
 * (session.c) and zygotes (zygote.c).
 *
 * Both are a worker process W that vivd forks and talks to over a socket
 * (ctl). W forks S, which runs one ordinary jail_run() in interactive mode
 * with a Python driver as the job; W talks to the driver through the job's
 * stdin and stdout and answers vivd with one JSON line per call:
 *
 *   vivd --ctl--> W --fork--> S: jail_run(interactive) -> init -> python3 driver
 *                 |  job stdin/stdout pipes                  |
 *                 +------------------------------------------+
 *
 * S only calls jail_run() and, when it returns, writes a struct warm_final
 * on a pipe to W. W cancels the jail by writing to (or closing) S's cancel
 * pipe: the jail is then killed the usual way.
 *
 * ctl frames (vivd -> W): "C <timeout_ms> <memory_mb> <len>\n" + code.
 * EOF from vivd ends the worker.
 */
#ifndef VIV_WARM_WORKER_H
#define VIV_WARM_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <linux/filter.h>

#include "../jail/jail.h"

struct warm_spec {
    const struct policy *policy;
    const struct sock_fprog *filter; /* for jail_run: the policy's, or its zygote variant */
    const struct jail_data *data;
    int ndata;
    const char *tool;                /* echoed in responses */
    const char *driver;              /* the Python program the jail runs */
    size_t driver_len;
    bool zygote;                     /* see jail_spec.zygote */
    long memory_mb;                  /* the jail's memory limit; 0 = the policy's */
};

/* What S reports when jail_run() returns. Under PIPE_BUF: one atomic write. */
struct warm_final {
    int setup_failed, exit_code, signal, timed_out;
    double cpu_ms;
    long max_rss_kb;
    char limits_not_applied[512];
    char text[1536]; /* setup error, or the tail of the job's own stderr */
};

struct warm_worker {
    const struct warm_spec *ws;
    int ctl;
    pid_t sup;               /* S */
    int job_in, job_out;     /* our ends of the job's stdin and stdout */
    int cancel_w, final_r;   /* S's cancel pipe, S's report */
    bool sent_all;           /* the last warm_exchange delivered all it had to send */
    char *buf;               /* bytes read from the job's stdout */
    size_t len, cap;
};

enum warm_outcome { WARM_DONE, WARM_DEADLINE, WARM_JOB_GONE, WARM_CTL_GONE, WARM_BAD_REPLY };

/* Is one whole message at the start of w->buf? Its length, 0 for "not yet",
 * -1 for malformed. */
typedef long (*warm_complete_fn)(struct warm_worker *w, void *arg);

struct warm_call {
    long timeout_ms, memory_mb;
    char *code; /* caller frees */
    size_t code_len;
};

/* Start S and the jail, then wait (up to ready_ms) for the driver's
 * "ready\n". 0, or -1 with err (and nothing left running). */
int warm_start(struct warm_worker *w, const struct warm_spec *ws, int ctl, long ready_ms, char *err,
               size_t errlen);

/* Kill the jail (if still alive) and collect S's report. */
void warm_finish(struct warm_worker *w, struct warm_final *f);

/* Send `send` to the driver and read its stdout until `complete` says one
 * whole message is buffered, the deadline (now_ms() clock) passes, the job
 * or vivd goes away, or the job says something malformed. */
enum warm_outcome warm_exchange(struct warm_worker *w, const char *send, size_t send_len, double deadline,
                                warm_complete_fn complete, void *arg);

/* A driver's reply to one call: a head line of nine numbers,
 * "<exit> <signal> <flag> <out_len> <out_total> <err_len> <err_total> <cpu_ms> <rss_kb>\n",
 * then out_len bytes of stdout and err_len of stderr. exit is -1 when a
 * signal ended the code; flag is, for a zygote, how the request ended (0 by
 * itself, 1 at its deadline, 2 at its CPU budget), for a session 1 when the
 * call ended the session. */
struct warm_reply {
    int exit_code, signal, flag;
    size_t out_len, out_total, err_len, err_total, msg_len;
    double cpu_ms;
    long rss_kb;
    const char *out, *err; /* inside w->buf until warm_consume(msg_len) */
};
/* A warm_complete_fn for warm_exchange (arg: struct warm_reply *): the
 * head is parsed strictly (range-checked, capped by the policy's output
 * limit, nothing after the ninth number); -1 for anything else. */
long warm_reply_complete(struct warm_worker *w, void *arg);
/* Drop the first n buffered bytes (a message that was handled). */
void warm_consume(struct warm_worker *w, size_t n);

/* Wait for the next frame while idle: 0 when ctl is readable, -1 when the
 * job ended meanwhile (it must stay quiet between calls). */
int warm_wait_idle(struct warm_worker *w);

/* Read one frame from ctl: 0, or -1 at EOF or garbage. */
int warm_read_call(struct warm_worker *w, struct warm_call *call);

/* The frame vivd writes on ctl for one call. Caller frees. */
char *warm_call_frame(long timeout_ms, long memory_mb, const char *code, size_t code_len, size_t *frame_len);

/* Lines to vivd. warm_send_line takes ownership of obj. 0 or -1. */
int warm_send_line(int fd, char *obj);
int warm_send_error(int fd, const char *code, const char *msg);

#endif
