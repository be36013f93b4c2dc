/*
 * zygote.c - warm one-shot execution for policies with a preload list.
 *
 * Why: starting python3 and importing pandas costs ~200-500 ms here, and
 * most agent tool calls are a few lines that need exactly those modules.
 * A zygote pays the import once; every request then runs in a copy of the
 * warmed interpreter.
 *
 * The zygote is an ordinary jail (jail_run, interactive mode: every
 * namespace, the mount plan, rlimits, cgroup, no_new_privs, locked
 * securebits) whose job is the Python program in zygote_driver.py, with
 * two differences, both confined to the jail's own user namespace:
 *   - the interpreter keeps CAP_SYS_ADMIN and CAP_SETPCAP (caps.c,
 *     caps_keep_for_zygote), so that it can give each request child new
 *     pid/mount/ipc/uts namespaces, a fresh /tmp, /work and /proc;
 *   - its seccomp filter is the policy's plus clone with those namespace
 *     flags, mount and capset (syscall_filter_compile_zygote). Creating a
 *     user or network namespace stays impossible (the filter, and
 *     user.max_user_namespaces = 0 in the jail).
 * Each request child, before it reads its request, drops both capabilities
 * from every set (bounding first) and installs the policy's own filter on
 * top: from then on it is exactly as constrained as a cold job, and alone in
 * its namespaces. The driver's comments say how the code of one request
 * never enters the zygote's memory, so no later child can find it there.
 *
 * The worker W (this file) is forked by vivd and owns one zygote; the
 * plumbing is warm_worker.c's. One request at a time per zygote: vivd keeps
 * several. The zygote enforces each request's deadline itself (killing the
 * child kills its whole pid namespace); W adds a backstop of
 * BACKSTOP_MS past the deadline, after which it kills the zygote.
 *
 * Driver protocol (W <-> zygote): see zygote_driver.py.
 */
#define _GNU_SOURCE
#include "zygote.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/json_writer.h"
#include "session.h"
#include "../base/util.h"
#include "warm_worker.h"

#define BACKSTOP_MS 3000
#define READY_MS 60000 /* importing the preload list on a loaded machine */

extern const char viv_zygote_driver[];
extern const unsigned long viv_zygote_driver_len;

/* A policy with egress runs cold: its proxy belongs to one job, and a zygote
 * serves many (see egress.h). */
bool zygote_policy_supported(const struct policy *p) {
    return p->npreload > 0 && python_code_policy(p) && p->network.nrules == 0;
}

/* The driver with its configuration line in front: the policy's seccomp
 * program (hex) and the limits the request child applies itself. */
static char *build_driver(const struct zygote_spec *zs, size_t *len) {
    const struct policy *p = zs->policy;
    struct json_writer jw;
    jw_init(&jw);
    jw_object_begin(&jw);
    size_t nbytes = (size_t)zs->filter->len * sizeof(struct sock_filter);
    char *hex = xmalloc(nbytes * 2 + 1);
    const unsigned char *b = (const unsigned char *)zs->filter->filter;
    for (size_t i = 0; i < nbytes; i++) snprintf(hex + 2 * i, 3, "%02x", b[i]);
    jw_key(&jw, "filter_hex"), jw_cstring(&jw, hex);
    free(hex);
    long kb = p->limits.tmpfs_mb * 1024, inodes = p->limits.tmpfs_mb * 256 > 4096 ? p->limits.tmpfs_mb * 256 : 4096;
    jw_key(&jw, "tmpfs_kb"), jw_int(&jw, kb);
    jw_key(&jw, "tmpfs_inodes"), jw_int(&jw, inodes);
    jw_key(&jw, "file_size_mb"), jw_int(&jw, p->limits.file_size_mb);
    jw_key(&jw, "cpu_ms"), jw_int(&jw, p->limits.cpu_ms);
    jw_key(&jw, "output_cap"), jw_int(&jw, p->limits.output_bytes);
    jw_key(&jw, "preload"), jw_array_begin(&jw);
    for (int i = 0; i < p->npreload; i++) jw_cstring(&jw, p->preload[i]);
    jw_array_end(&jw);
    jw_object_end(&jw);
    char *cfg = jw_finish(&jw); /* JSON text: no ''' and no backslash-newline inside */
    char *text = xasprintf("_VIV_CFG = r'''%s'''\n%s", cfg, viv_zygote_driver);
    free(cfg);
    *len = strlen(text);
    return text;
}

static int send_result(struct warm_worker *w, const struct jail_result *res) {
    struct json_writer jw;
    jw_init(&jw);
    jw_object_begin(&jw);
    jail_result_write_fields(&jw, res, w->ws->tool, w->ws->policy->name);
    jw_key(&jw, "zygote"), jw_bool(&jw, true);
    jw_object_end(&jw);
    return warm_send_line(w->ctl, jw_finish(&jw));
}

/* One call: 0 when the zygote lives on, -1 when it is over (answered). */
static int serve_call(struct warm_worker *w, const struct warm_call *call) {
    char head[96];
    int h = snprintf(head, sizeof head, "%zu %ld %ld\n", call->code_len, call->timeout_ms, call->memory_mb);
    char *msg = xmalloc((size_t)h + call->code_len);
    memcpy(msg, head, (size_t)h);
    memcpy(msg + h, call->code, call->code_len);
    double t0 = now_ms();
    struct warm_reply r;
    memset(&r, 0, sizeof r);
    enum warm_outcome o = warm_exchange(w, msg, (size_t)h + call->code_len,
                                        t0 + (double)call->timeout_ms + BACKSTOP_MS, warm_reply_complete, &r);
    free(msg);
    if (o == WARM_CTL_GONE) return -1;
    if (o != WARM_DONE) {
        struct warm_final f;
        warm_finish(w, &f);
        /* What the zygote said on its way out is ours, not the client's: it
         * goes to vivd's log; the client hears what happened, in our words. */
        const char *how = o == WARM_DEADLINE ? "stopped answering" : o == WARM_BAD_REPLY ? "sent a malformed reply" : "died";
        if (f.text[0]) fprintf(stderr, "vivd: zygote for %s %s: %s\n", w->ws->tool, how, f.text);
        char why[256];
        snprintf(why, sizeof why, "the zygote serving this request %s; the request did not run to completion", how);
        warm_send_error(w->ctl, "zygote_lost", why);
        return -1;
    }
    struct jail_result res;
    memset(&res, 0, sizeof res);
    res.exit_code = r.exit_code;
    res.signal = r.signal;
    res.timed_out = r.flag == 1;
    res.cpu_exceeded = r.flag == 2; /* the driver's "how": 0 ended, 1 deadline, 2 CPU budget */
    res.out = (char *)r.out, res.out_len = r.out_len, res.out_dropped = r.out_total - r.out_len;
    res.err = (char *)r.err, res.err_len = r.err_len, res.err_dropped = r.err_total - r.err_len;
    res.wall_ms = now_ms() - t0;
    res.cpu_ms = r.cpu_ms > 0 ? r.cpu_ms : 0;
    res.max_rss_kb = r.rss_kb;
    int rc = send_result(w, &res);
    warm_consume(w, r.msg_len);
    return rc;
}

int zygote_worker_main(const struct zygote_spec *zs, int ctl_fd) {
    size_t driver_len;
    char *driver = build_driver(zs, &driver_len);
    /* The child may grow by the policy's memory_mb beyond the zygote's own
     * address space, so the zygote's jail gets room for both. */
    struct warm_spec ws = {
        .policy = zs->policy, .filter = zs->zygote_filter, .data = zs->data, .ndata = zs->ndata,
        .tool = zs->tool, .driver = driver, .driver_len = driver_len, .zygote = true,
        .memory_mb = zs->policy->limits.memory_mb * 2 + 1024,
    };
    struct warm_worker w;
    char err[2600];
    if (warm_start(&w, &ws, ctl_fd, READY_MS, err, sizeof err)) {
        char msg[2700];
        snprintf(msg, sizeof msg, "the zygote did not start: %s", err);
        warm_send_error(ctl_fd, "sandbox_error", msg);
        free(driver);
        return 1;
    }
    bool open = warm_send_line(ctl_fd, xstrdup("{\"ok\":true}")) == 0;
    while (open && warm_wait_idle(&w) == 0) {
        struct warm_call call;
        if (warm_read_call(&w, &call) != 0) break;
        int rc = serve_call(&w, &call);
        free(call.code);
        if (rc != 0) break;
    }
    struct warm_final f;
    if (w.sup > 0) warm_finish(&w, &f);
    free(w.buf);
    free(driver);
    return 0;
}
