/*
 * session.c - vivd sessions: one jailed Python process per session that
 * keeps its globals between calls.
 *
 * Why this shape: a session must get exactly the guarantees of a normal job
 * (namespaces, mounts, caps, seccomp, rlimits, cgroups), so it IS a normal
 * job: jail_run() with the policy, in interactive mode (struct jail_stdio),
 * where the job's stdin and stdout are pipes we keep instead of /dev/null and
 * a captured pipe. No second sandbox path exists.
 *
 * The worker plumbing (vivd -> W -> S -> jail_run, the ctl frames) is
 * shared with zygotes: see warm_worker.h. What is particular to a session:
 *   - S's deadline is the policy's session_ms_max (default one hour): the
 *     session's longest life, however its calls go.
 *   - The job is the policy's own command (python3 -I /work/main.py) running
 *     session_driver.py, written through the usual code channel. Its
 *     comments give the shape: a keeper that speaks this protocol and an
 *     interpreter, its child, that keeps the globals and runs each call
 *     holding fds 0-2 only, each call's output in fresh files, the call's
 *     end, CPU and RSS learnt from the kernel, and every process a call
 *     started killed when the call ends.
 *   - W enforces each call's deadline. On overrun it cancels the jail: the
 *     whole session is gone (timed_out + session_lost) because nothing short
 *     of killing the namespace stops arbitrary code safely.
 *
 * Driver protocol (W <-> job): W sends "<len> <cap>\n" + code; the driver
 * sends "ready\n" once, then per call a struct warm_reply (warm_worker.h)
 * whose flag says the call ended the session. The job is untrusted all the
 * same: its replies are parsed strictly and bounded; a malformed reply loses
 * the session, it cannot harm W.
 */
#define _GNU_SOURCE
#include "session.h"

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
#include "warm_worker.h"

#define KILL_GRACE_MS 1000 /* after a call's deadline, for the driver to answer with its output */

/* sandbox/vivd/session_driver.py, embedded at build time. */
extern const char viv_session_driver[];
extern const unsigned long viv_session_driver_len;

/* A session's worker: the shared plumbing plus the CPU time the driver has
 * accounted for so far (what remains at the end belongs to the lost call). */
struct worker {
    struct warm_worker ww;
    double cpu_reported;
};

/* The session driver makes FIFOs (mknodat with S_IFIFO) for each call. */
static bool allows_mknodat(const struct policy *p) {
    for (int i = 0; i < p->seccomp.nsyscalls; i++)
        if (strcmp(p->seccomp.syscalls[i], "mknodat") == 0) return true;
    return false;
}

bool python_code_policy(const struct policy *p) {
    if (!p->code_path || !p->argv[0]) return false;
    const char *base = strrchr(p->argv[0], '/');
    base = base ? base + 1 : p->argv[0];
    if (strncmp(base, "python", 6) != 0) return false;
    for (int i = 1; p->argv[i]; i++)
        if (strcmp(p->argv[i], p->code_path) == 0) return true;
    return false;
}

bool session_policy_supported(const struct policy *p) {
    return python_code_policy(p) && allows_mknodat(p);
}

/* ------------------------------------------------------------ W: talking */

static int send_result(struct worker *w, const struct jail_result *res, bool lost) {
    struct json_writer jw;
    jw_init(&jw);
    jw_object_begin(&jw);
    jail_result_write_fields(&jw, res, w->ww.ws->tool, w->ww.ws->policy->name);
    jw_key(&jw, "session_lost"), jw_bool(&jw, lost);
    if (res->limits_not_applied[0]) jail_result_write_limits(&jw, res->limits_not_applied);
    jw_object_end(&jw);
    return warm_send_line(w->ww.ctl, jw_finish(&jw));
}

/* The call ended without a reply: the session is over. Report how. */
static void report_lost(struct worker *w, enum warm_outcome why, double t0) {
    struct warm_final f;
    warm_finish(&w->ww, &f);
    struct jail_result res;
    memset(&res, 0, sizeof res);
    res.wall_ms = now_ms() - t0;
    res.cpu_ms = f.cpu_ms > w->cpu_reported ? f.cpu_ms - w->cpu_reported : 0;
    res.max_rss_kb = f.max_rss_kb;
    res.exit_code = f.exit_code;
    res.signal = f.signal;
    res.timed_out = why == WARM_DEADLINE || f.timed_out;
    if (res.timed_out) res.exit_code = -1, res.signal = SIGKILL;
    snprintf(res.limits_not_applied, sizeof res.limits_not_applied, "%s", f.limits_not_applied);
    char msg[256] = "";
    if (why == WARM_BAD_REPLY) snprintf(msg, sizeof msg, "vivarium: the session's driver was corrupted by the code; session lost\n");
    res.err = why == WARM_BAD_REPLY ? msg : f.text;
    res.err_len = strlen(res.err);
    (void)send_result(w, &res, true);
}

/* One call: 0 when the session lives on, -1 when it is over. */
static int serve_call(struct worker *w, const struct warm_call *call) {
    char head[64];
    int h = snprintf(head, sizeof head, "%zu %ld\n", call->code_len, w->ww.ws->policy->limits.output_bytes);
    char *msg = xmalloc((size_t)h + call->code_len);
    memcpy(msg, head, (size_t)h);
    memcpy(msg + h, call->code, call->code_len);
    double t0 = now_ms();
    struct warm_reply r;
    memset(&r, 0, sizeof r);
    enum warm_outcome o = warm_exchange(&w->ww, msg, (size_t)h + call->code_len, t0 + (double)call->timeout_ms,
                                        warm_reply_complete, &r);
    free(msg);
    if (o == WARM_CTL_GONE) return -1;
    bool timed_out = false;
    if (o == WARM_DEADLINE && w->ww.sent_all) {
        /* Past the deadline: one byte tells the driver to kill the call and
         * answer with its output so far, as a cold job's is; if it does not
         * within KILL_GRACE_MS, the jail goes as below. (A byte that
         * crosses an answer already on its way is skipped by the driver.) */
        timed_out = write(w->ww.job_in, "K", 1) == 1;
        if (timed_out)
            o = warm_exchange(&w->ww, NULL, 0, now_ms() + KILL_GRACE_MS, warm_reply_complete, &r);
        if (o == WARM_CTL_GONE) return -1;
    }
    if (o != WARM_DONE) {
        report_lost(w, o, t0);
        return -1;
    }
    /* A call that ended the session (its code killed or stopped the
     * interpreter, or its deadline) still gets its output and how it ended;
     * then the jail goes. A call that finished as the deadline passed keeps
     * its own answer. */
    bool lost = r.flag != 0;
    timed_out = timed_out && lost;
    struct jail_result res;
    memset(&res, 0, sizeof res);
    res.exit_code = r.exit_code;
    res.signal = r.signal;
    res.timed_out = timed_out;
    if (timed_out) res.exit_code = -1, res.signal = SIGKILL;
    res.out = (char *)r.out, res.out_len = r.out_len, res.out_dropped = r.out_total - r.out_len;
    res.err = (char *)r.err, res.err_len = r.err_len, res.err_dropped = r.err_total - r.err_len;
    res.wall_ms = now_ms() - t0;
    res.cpu_ms = r.cpu_ms;
    res.max_rss_kb = r.rss_kb;
    w->cpu_reported += res.cpu_ms;
    int rc = send_result(w, &res, lost);
    warm_consume(&w->ww, r.msg_len);
    return lost ? -1 : rc;
}

int session_worker_main(const struct session_spec *ss, int ctl_fd) {
    struct warm_spec ws = {
        .policy = ss->policy, .filter = ss->filter, .data = ss->data, .ndata = ss->ndata,
        .tool = ss->tool, .driver = viv_session_driver, .driver_len = viv_session_driver_len,
    };
    struct worker w = {0};
    char err[2600];
    if (warm_start(&w.ww, &ws, ctl_fd, 30000, err, sizeof err)) {
        char msg[2700];
        snprintf(msg, sizeof msg, "the session did not start: %s", err);
        warm_send_error(ctl_fd, "sandbox_error", msg);
        return 1;
    }
    bool open = warm_send_line(ctl_fd, xstrdup("{\"ok\":true}")) == 0;
    /* The job must stay quiet while idle; if it ends (its lifetime deadline,
     * a background kill), the session is over and we simply exit: vivd sees
     * the hang-up. */
    while (open && warm_wait_idle(&w.ww) == 0) {
        struct warm_call call;
        if (warm_read_call(&w.ww, &call) != 0) break;
        int rc = serve_call(&w, &call);
        free(call.code);
        if (rc != 0) break;
    }
    struct warm_final f;
    if (w.ww.sup > 0) warm_finish(&w.ww, &f);
    free(w.ww.buf);
    return 0;
}
