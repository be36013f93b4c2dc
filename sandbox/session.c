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
 *     DRIVER below, written through the usual code channel. The driver keeps
 *     private duplicates of fds 0 and 1 for the protocol, points 0 at
 *     /dev/null, and for each call points fds 1 and 2 at fresh unlinked files
 *     in the jail's /tmp (so print, os.system and child processes are all
 *     captured, each call separately), runs the code in one persistent
 *     globals dict, and answers with a header line and the captured bytes
 *     (capped at the policy's output_bytes, the rest counted).
 *   - W enforces each call's deadline. On overrun it cancels the jail: the
 *     whole session is gone (timed_out + session_lost) because nothing short
 *     of killing the namespace stops arbitrary code safely.
 *
 * Driver protocol (W <-> job): W sends "<len> <cap>\n" + code; the driver
 * sends "ready\n" once, then per call
 * "<exit> <out_len> <out_total> <err_len> <err_total> <cpu_ms> <rss_kb>\n" +
 * out + err. The job is untrusted: its replies are parsed strictly and bounded;
 * a malformed reply loses the session, it cannot harm W.
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

#include "json_writer.h"
#include "util.h"
#include "warm_worker.h"

static const char DRIVER[] =
    "import builtins, os, resource, sys, traceback, types\n"
    "def _viv_session():\n"
    "    rfd, wfd = os.dup(0), os.dup(1)  # protocol fds, not inherited by children\n"
    "    nul = os.open('/dev/null', os.O_RDWR)\n"
    "    os.dup2(nul, 0); os.dup2(nul, 1)\n"
    "    mod = types.ModuleType('__main__')  # user code lives in a real __main__\n"
    "    mod.__dict__['__builtins__'] = builtins\n"
    "    sys.modules['__main__'] = mod\n"
    "    g = mod.__dict__\n"
    "    def read_exact(n):\n"
    "        b = bytearray()\n"
    "        while len(b) < n:\n"
    "            c = os.read(rfd, n - len(b))\n"
    "            if not c: raise EOFError\n"
    "            b += c\n"
    "        return bytes(b)\n"
    "    def read_line():\n"
    "        b = bytearray()\n"
    "        while len(b) < 64:\n"
    "            c = os.read(rfd, 1)\n"
    "            if not c or c == b'\\n': break\n"
    "            b += c\n"
    "        if not b: raise EOFError\n"
    "        return bytes(b)\n"
    "    def write_all(b):\n"
    "        mv = memoryview(b)\n"
    "        while mv: mv = mv[os.write(wfd, mv):]\n"
    "    def new_capture(tag):\n"
    "        path = '/tmp/.viv-%s-%d' % (tag, os.getpid())\n"
    "        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)\n"
    "        os.unlink(path)  # each call its own inode: late writers cannot leak into the next\n"
    "        return fd\n"
    "    def take(fd, cap):\n"
    "        size = os.fstat(fd).st_size\n"
    "        want, parts, off = min(size, cap), [], 0\n"
    "        while off < want:\n"
    "            b = os.pread(fd, want - off, off)\n"
    "            if not b: break\n"
    "            parts.append(b); off += len(b)\n"
    "        os.close(fd)\n"
    "        return b''.join(parts), max(size, off)\n"
    "    def cpu():\n"
    "        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "        return (s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime) * 1000.0, max(s.ru_maxrss, c.ru_maxrss)\n"
    "    write_all(b'ready\\n')\n"
    "    while True:\n"
    "        try:\n"
    "            n, cap = map(int, read_line().split())\n"
    "            code = read_exact(n)\n"
    "        except (EOFError, ValueError):\n"
    "            return\n"
    "        fo, fe = new_capture('out'), new_capture('err')\n"
    "        os.dup2(fo, 1); os.dup2(fe, 2)\n"
    "        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__\n"
    "        for f in (sys.stdout, sys.stderr):\n"
    "            try: f.reconfigure(line_buffering=True)\n"
    "            except Exception: pass\n"
    "        c0, _ = cpu()\n"
    "        rc = 0\n"
    "        try:\n"
    "            exec(compile(code, '<cell>', 'exec'), g)\n"
    "        except SystemExit as e:\n"
    "            if e.code is None: rc = 0\n"
    "            elif isinstance(e.code, int): rc = e.code & 0xff\n"
    "            else:\n"
    "                rc = 1\n"
    "                try: print(e.code, file=sys.stderr)\n"
    "                except BaseException: pass\n"
    "        except BaseException as e:\n"
    "            rc = 1  # the traceback starts at the cell, not in this driver\n"
    "            try: traceback.print_exception(type(e), e, e.__traceback__.tb_next)\n"
    "            except BaseException: pass\n"
    "        for f in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):\n"
    "            try: f.flush()\n"
    "            except BaseException: pass\n"
    "        os.dup2(nul, 1); os.dup2(nul, 2)\n"
    "        out, osz = take(fo, cap)\n"
    "        err, esz = take(fe, cap)\n"
    "        c1, rss = cpu()\n"
    "        write_all(b'%d %d %d %d %d %.1f %d\\n' % (rc, len(out), osz, len(err), esz, c1 - c0, rss) + out + err)\n"
    "_viv_session()\n";

/* A session's worker: the shared plumbing plus the CPU time the driver has
 * accounted for so far (what remains at the end belongs to the lost call). */
struct worker {
    struct warm_worker ww;
    double cpu_reported;
};

/* One parsed driver reply. */
struct reply {
    int exit_code;
    size_t out_len, out_total, err_len, err_total, msg_len;
    double cpu_ms;
    long rss_kb;
    const char *out, *err;
};

bool session_policy_supported(const struct policy *p) {
    if (!p->code_path || !p->argv[0]) return false;
    const char *base = strrchr(p->argv[0], '/');
    base = base ? base + 1 : p->argv[0];
    if (strncmp(base, "python", 6) != 0) return false;
    for (int i = 1; p->argv[i]; i++)
        if (strcmp(p->argv[i], p->code_path) == 0) return true;
    return false;
}

/* ------------------------------------------------------------ W: talking */

static long reply_complete(struct warm_worker *w, void *arg) {
    struct reply *r = arg;
    char head[201];
    long hl = warm_reply_head(w, head);
    if (hl <= 0) return hl;
    size_t cap = (size_t)w->ws->policy->limits.output_bytes;
    int n = sscanf(head, "%d %zu %zu %zu %zu %lf %ld", &r->exit_code, &r->out_len, &r->out_total,
                   &r->err_len, &r->err_total, &r->cpu_ms, &r->rss_kb);
    if (n != 7 || r->exit_code < 0 || r->exit_code > 255 || r->out_len > cap || r->err_len > cap ||
        r->out_total < r->out_len || r->err_total < r->err_len)
        return -1;
    long n_msg = warm_reply_body(w, (size_t)hl, r->out_len, r->err_len, &r->out, &r->err);
    r->msg_len = (size_t)n_msg;
    return n_msg;
}

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
    struct reply r;
    memset(&r, 0, sizeof r);
    enum warm_outcome o = warm_exchange(&w->ww, msg, (size_t)h + call->code_len, t0 + (double)call->timeout_ms,
                                        reply_complete, &r);
    free(msg);
    if (o == WARM_CTL_GONE) return -1;
    if (o != WARM_DONE) {
        report_lost(w, o, t0);
        return -1;
    }
    struct jail_result res;
    memset(&res, 0, sizeof res);
    res.exit_code = r.exit_code;
    res.out = (char *)r.out, res.out_len = r.out_len, res.out_dropped = r.out_total - r.out_len;
    res.err = (char *)r.err, res.err_len = r.err_len, res.err_dropped = r.err_total - r.err_len;
    res.wall_ms = now_ms() - t0;
    res.cpu_ms = r.cpu_ms > 0 ? r.cpu_ms : 0;
    res.max_rss_kb = r.rss_kb;
    w->cpu_reported += res.cpu_ms;
    int rc = send_result(w, &res, false);
    warm_consume(&w->ww, r.msg_len);
    return rc;
}

int session_worker_main(const struct session_spec *ss, int ctl_fd) {
    struct warm_spec ws = {
        .policy = ss->policy, .filter = ss->filter, .data = ss->data, .ndata = ss->ndata,
        .tool = ss->tool, .driver = DRIVER, .driver_len = sizeof DRIVER - 1,
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
