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
 * Processes (all forked from vivd, so no threads anywhere):
 *
 *   vivd --ctl socketpair--> session worker W --fork--> S: jail_run(interactive)
 *                                 |  job stdin/stdout pipes     |
 *                                 +-------------------------- init -> python3 driver
 *
 *   - S only calls jail_run() and, when it returns, writes a struct
 *     session_final (how the job ended, its total CPU/RSS, setup error text)
 *     on a pipe to W. Its deadline is the policy's session_ms_max (default
 *     one hour): the session's longest life, however its calls go. Its cancel_fd is a pipe from W:
 *     W writes to it (or dies) and the jail is killed the usual way (the init
 *     kills and reaps the namespace; SIGKILL is the backstop).
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
 * ctl protocol (vivd <-> W): vivd sends "C <timeout_ms> <len>\n" + code; W
 * answers one JSON object per line. EOF from vivd closes the session.
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

/* What S reports when jail_run() returns. Under PIPE_BUF: one atomic write. */
struct session_final {
    int setup_failed, exit_code, signal, timed_out;
    double cpu_ms;
    long max_rss_kb;
    char text[2048]; /* setup error, or the tail of the job's own stderr */
};

struct worker {
    const struct session_spec *ss;
    int ctl;
    pid_t sup;               /* S */
    int job_in, job_out;     /* our ends of the job's stdin and stdout */
    int cancel_w, final_r;   /* S's cancel pipe, S's report */
    double cpu_reported;     /* CPU time the driver has accounted for so far */
    char *buf;               /* bytes read from the job's stdout */
    size_t len, cap;
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

char *session_call_frame(long timeout_ms, const char *code, size_t code_len, size_t *frame_len) {
    char head[64];
    int h = snprintf(head, sizeof head, "C %ld %zu\n", timeout_ms, code_len);
    char *f = xmalloc((size_t)h + code_len);
    memcpy(f, head, (size_t)h);
    memcpy(f + h, code, code_len);
    *frame_len = (size_t)h + code_len;
    return f;
}

/* ------------------------------------------------------------ S: the jail */

static void supervise(const struct session_spec *ss, int in_r, int out_w, int cancel_r, int final_w)
    __attribute__((noreturn));
static void supervise(const struct session_spec *ss, int in_r, int out_w, int cancel_r, int final_w) {
    struct jail_stdio io = {in_r, out_w};
    struct jail_spec spec = {
        .policy = ss->policy, .code = DRIVER, .code_len = sizeof DRIVER - 1,
        .timeout_ms = ss->policy->limits.session_ms_max, .session_lifetime = true,
        .data = ss->data, .ndata = ss->ndata,
        .filter = ss->filter, .cancel_fd = cancel_r, .stdio = &io,
    };
    struct jail_result res;
    struct session_final f;
    memset(&f, 0, sizeof f);
    char err[1024];
    if (jail_run(&spec, &res, err, sizeof err) != 0) {
        f.setup_failed = 1;
        snprintf(f.text, sizeof f.text, "%s", err);
    } else {
        f.exit_code = res.exit_code, f.signal = res.signal, f.timed_out = res.timed_out;
        f.cpu_ms = res.cpu_ms, f.max_rss_kb = res.max_rss_kb;
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

static int worker_start(struct worker *w, char *err, size_t errlen) {
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
        supervise(w->ss, in_p[0], out_p[1], cancel_p[0], final_p[1]);
    }
    close(in_p[0]), close(out_p[1]), close(cancel_p[0]), close(final_p[1]);
    w->job_in = in_p[1], w->job_out = out_p[0], w->cancel_w = cancel_p[1], w->final_r = final_p[0];
    fcntl(w->job_in, F_SETFL, O_NONBLOCK);
    fcntl(w->job_out, F_SETFL, O_NONBLOCK);
    return 0;
}

/* Kill the jail (if still alive) and collect S's report. */
static void worker_finish(struct worker *w, struct session_final *f) {
    memset(f, 0, sizeof *f);
    f->exit_code = -1;
    if (w->cancel_w >= 0 && write(w->cancel_w, "x", 1) < 0) {}
    close_fd(&w->cancel_w);
    close_fd(&w->job_in);
    struct pollfd p = {w->final_r, POLLIN, 0};
    if (poll(&p, 1, 10000) == 1) {
        ssize_t r;
        do r = read(w->final_r, f, sizeof *f);
        while (r < 0 && errno == EINTR);
        if (r != (ssize_t)sizeof *f) memset(f, 0, sizeof *f), f->exit_code = -1, f->signal = SIGKILL;
    }
    f->text[sizeof f->text - 1] = 0;
    close_fd(&w->final_r);
    close_fd(&w->job_out);
    if (w->sup > 0) {
        kill(w->sup, SIGKILL); /* it has reported (or is stuck): either way we are done with it */
        waitpid(w->sup, NULL, 0);
        w->sup = -1;
    }
}

/* ------------------------------------------------------------ W: talking */

enum wait_outcome { W_DONE, W_DEADLINE, W_JOB_GONE, W_CTL_GONE, W_BAD_REPLY };

static long ready_complete(struct worker *w, struct reply *r) {
    (void)r;
    if (w->len < 6) return 0;
    return memcmp(w->buf, "ready\n", 6) == 0 ? 6 : -1;
}

static long reply_complete(struct worker *w, struct reply *r) {
    char *nl = memchr(w->buf, '\n', w->len < 200 ? w->len : 200);
    if (!nl) return w->len >= 200 ? -1 : 0;
    char head[201];
    size_t hl = (size_t)(nl - w->buf);
    memcpy(head, w->buf, hl);
    head[hl] = 0;
    size_t cap = (size_t)w->ss->policy->limits.output_bytes;
    int n = sscanf(head, "%d %zu %zu %zu %zu %lf %ld", &r->exit_code, &r->out_len, &r->out_total,
                   &r->err_len, &r->err_total, &r->cpu_ms, &r->rss_kb);
    if (n != 7 || r->exit_code < 0 || r->exit_code > 255 || r->out_len > cap || r->err_len > cap ||
        r->out_total < r->out_len || r->err_total < r->err_len)
        return -1;
    r->msg_len = hl + 1 + r->out_len + r->err_len;
    if (w->len < r->msg_len) return 0;
    r->out = w->buf + hl + 1;
    r->err = r->out + r->out_len;
    return (long)r->msg_len;
}

/* Send `send` to the job's stdin and read its stdout until `complete` says
 * one whole message is buffered, the deadline passes, the job or vivd goes
 * away, or the job says something malformed. */
static enum wait_outcome exchange(struct worker *w, const char *send, size_t send_len, double deadline,
                                  long (*complete)(struct worker *, struct reply *), struct reply *r) {
    size_t sent = 0;
    for (;;) {
        long c = complete(w, r);
        if (c > 0) return W_DONE;
        if (c < 0) return W_BAD_REPLY;
        double now = now_ms();
        if (now >= deadline) return W_DEADLINE;
        struct pollfd p[4] = {{w->job_out, POLLIN, 0}, {w->ctl, POLLIN, 0}, {w->final_r, POLLIN, 0},
                              {sent < send_len ? w->job_in : -1, POLLOUT, 0}};
        int pr = poll(p, 4, (int)(deadline - now) + 1);
        if (pr < 0 && errno != EINTR) return W_JOB_GONE;
        if (pr <= 0) continue;
        if (p[1].revents) return W_CTL_GONE; /* vivd never writes mid-call: this is a hang-up */
        if (p[3].revents) {
            ssize_t n = write(w->job_in, send + sent, send_len - sent);
            if (n > 0) sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR) return W_JOB_GONE;
        }
        if (p[0].revents) {
            if (w->cap - w->len < 65536) {
                w->cap = w->cap * 2 + 65536;
                w->buf = xrealloc(w->buf, w->cap);
            }
            ssize_t n = read(w->job_out, w->buf + w->len, w->cap - w->len);
            if (n > 0) w->len += (size_t)n;
            else if (n == 0 || (errno != EAGAIN && errno != EINTR)) return W_JOB_GONE;
        } else if (p[2].revents) {
            return W_JOB_GONE; /* S reported: the jail is over */
        }
    }
}

static int send_line(int fd, char *obj) {
    size_t n = strlen(obj);
    obj = xrealloc(obj, n + 2);
    obj[n] = '\n', obj[n + 1] = 0;
    int rc = write_all(fd, obj, n + 1);
    free(obj);
    return rc;
}

static int send_error(int fd, const char *code, const char *msg) {
    struct json_writer jw;
    jw_init(&jw);
    jw_object_begin(&jw);
    jw_key(&jw, "ok"), jw_bool(&jw, false);
    jw_key(&jw, "error"), jw_object_begin(&jw);
    jw_key(&jw, "code"), jw_cstring(&jw, code);
    jw_key(&jw, "message"), jw_cstring(&jw, msg);
    jw_object_end(&jw), jw_object_end(&jw);
    return send_line(fd, jw_finish(&jw));
}

static int send_result(struct worker *w, const struct jail_result *res, bool lost) {
    struct json_writer jw;
    jw_init(&jw);
    jw_object_begin(&jw);
    jail_result_write_fields(&jw, res, w->ss->tool, w->ss->policy->name);
    jw_key(&jw, "session_lost"), jw_bool(&jw, lost);
    jw_object_end(&jw);
    return send_line(w->ctl, jw_finish(&jw));
}

/* The call ended without a reply: the session is over. Report how. */
static void report_lost(struct worker *w, enum wait_outcome why, double t0) {
    struct session_final f;
    worker_finish(w, &f);
    struct jail_result res;
    memset(&res, 0, sizeof res);
    res.wall_ms = now_ms() - t0;
    res.cpu_ms = f.cpu_ms > w->cpu_reported ? f.cpu_ms - w->cpu_reported : 0;
    res.max_rss_kb = f.max_rss_kb;
    res.exit_code = f.exit_code;
    res.signal = f.signal;
    res.timed_out = why == W_DEADLINE || f.timed_out;
    if (res.timed_out) res.exit_code = -1, res.signal = SIGKILL;
    char msg[256] = "";
    if (why == W_BAD_REPLY) snprintf(msg, sizeof msg, "vivarium: the session's driver was corrupted by the code; session lost\n");
    res.err = why == W_BAD_REPLY ? msg : f.text;
    res.err_len = strlen(res.err);
    (void)send_result(w, &res, true);
}

/* Read one call frame from vivd: 0, or -1 at EOF/garbage (close the session). */
static int read_call(struct worker *w, long *timeout_ms, char **code, size_t *code_len) {
    char head[64];
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
    if (sscanf(head, "C %ld %zu", timeout_ms, &len) != 2 || len > (size_t)w->ss->policy->limits.code_bytes)
        return -1;
    *code = xmalloc(len + 1);
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(w->ctl, *code + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(*code);
            return -1;
        }
        got += (size_t)r;
    }
    *code_len = len;
    return 0;
}

/* One call: 0 when the session lives on, -1 when it is over. */
static int serve_call(struct worker *w, long timeout_ms, const char *code, size_t code_len) {
    char head[64];
    int h = snprintf(head, sizeof head, "%zu %ld\n", code_len, w->ss->policy->limits.output_bytes);
    char *msg = xmalloc((size_t)h + code_len);
    memcpy(msg, head, (size_t)h);
    memcpy(msg + h, code, code_len);
    double t0 = now_ms();
    struct reply r;
    memset(&r, 0, sizeof r);
    enum wait_outcome o = exchange(w, msg, (size_t)h + code_len, t0 + (double)timeout_ms, reply_complete, &r);
    free(msg);
    if (o == W_CTL_GONE) return -1;
    if (o != W_DONE) {
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
    memmove(w->buf, w->buf + r.msg_len, w->len - r.msg_len);
    w->len -= r.msg_len;
    return rc;
}

/* Wait for the next call while the session is idle. The job must stay
 * quiet meanwhile; if it ends (its lifetime deadline, a background kill),
 * the session is over and we simply exit: vivd sees the hang-up. */
static int wait_idle(struct worker *w) {
    struct pollfd p[3] = {{w->ctl, POLLIN, 0}, {w->job_out, POLLIN, 0}, {w->final_r, POLLIN, 0}};
    for (;;) {
        int pr = poll(p, 3, -1);
        if (pr < 0 && errno == EINTR) continue;
        if (pr < 0 || p[1].revents || p[2].revents) return -1;
        if (p[0].revents) return 0;
    }
}

int session_worker_main(const struct session_spec *ss, int ctl_fd) {
    struct worker w = {.ss = ss, .ctl = ctl_fd, .sup = -1, .job_in = -1, .job_out = -1, .cancel_w = -1, .final_r = -1};
    char err[2600];
    struct session_final f;
    if (worker_start(&w, err, sizeof err)) {
        send_error(ctl_fd, "sandbox_error", err);
        return 1;
    }
    struct reply unused;
    enum wait_outcome o = exchange(&w, "", 0, now_ms() + 30000, ready_complete, &unused);
    if (o != W_DONE) {
        worker_finish(&w, &f);
        if (o != W_CTL_GONE) {
            snprintf(err, sizeof err, "the session did not start: %s", f.text[0] ? f.text : "no answer from the job");
            send_error(ctl_fd, "sandbox_error", err);
        }
        free(w.buf);
        return 1;
    }
    w.len = 0;
    if (send_line(ctl_fd, xstrdup("{\"ok\":true}")) != 0) o = W_CTL_GONE;
    while (o == W_DONE && wait_idle(&w) == 0) {
        long timeout_ms;
        char *code;
        size_t code_len;
        if (read_call(&w, &timeout_ms, &code, &code_len) != 0) break;
        int rc = serve_call(&w, timeout_ms, code, code_len);
        free(code);
        if (rc != 0) break;
    }
    if (w.sup > 0) worker_finish(&w, &f);
    free(w.buf);
    return 0;
}
