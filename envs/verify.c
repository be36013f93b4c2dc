/*
 * verify.c - check each task by running its reference solution in the jail.
 *
 * The tools and mounts are the ones an agent gets: the built-in python,
 * shell and sql policies, with the database directory as @biodb (/db inside)
 * and org.Hs.eg.sqlite as the sql tool's @db. A task is kept only if its
 * reference exits 0 within the deadline and its last stdout line is exactly
 * the answer the generator recorded, so every kept answer has been derived
 * twice: once by the generator from the rows it loaded, once inside the
 * sandbox by independent code from the databases themselves.
 *
 * Jobs run in `jobs` forked worker processes (jail_run() must not run in a
 * threaded process; see ARCHITECTURE.md). Workers report fixed-size records
 * on one pipe; each record is smaller than PIPE_BUF, so writes never
 * interleave.
 */
#define _GNU_SOURCE
#include "verify.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../sandbox/jail/builtin_filters.h"
#include "../sandbox/jail/jail.h"
#include "../sandbox/base/util.h"
#include "protocol.h"

struct record {
    unsigned idx;
    unsigned char ok;
    char why[150];
};

bool last_line_is(const char *out, size_t len, const char *answer) {
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r')) len--;
    size_t start = len;
    while (start > 0 && out[start - 1] != '\n') start--;
    size_t alen = strlen(answer);
    return len - start == alen && memcmp(out + start, answer, alen) == 0;
}

/* The last line, shortened, for a drop reason. */
static void tail_line(const char *out, size_t len, char *buf, size_t n) {
    while (len > 0 && out[len - 1] == '\n') len--;
    size_t start = len;
    while (start > 0 && out[start - 1] != '\n') start--;
    size_t m = len - start < n - 1 ? len - start : n - 1;
    memcpy(buf, out + start, m);
    buf[m] = 0;
}

static void verify_one(const struct task *t, const struct policy *pols, const char *const *names, int npol,
                       const struct jail_data *data, long timeout_ms, struct record *rec) {
    const struct policy *p = NULL;
    for (int i = 0; i < npol; i++)
        if (strcmp(names[i], t->ref_tool) == 0) p = &pols[i];
    if (!p) {
        snprintf(rec->why, sizeof rec->why, "unknown reference tool '%s'", t->ref_tool);
        return;
    }
    /* python references may read the task's inputs as TASK (protocol.h) */
    char *code = strcmp(t->ref_tool, "python") ? xstrdup(t->ref_code) : proto_with_task_inputs(t->meta, t->ref_code);
    struct jail_spec spec = {.policy = p, .code = code, .code_len = strlen(code),
                             .timeout_ms = timeout_ms, .data = data, .ndata = 2,
                             .filter = builtin_filter_for(p), .cancel_fd = -1};
    struct jail_result res;
    char err[512];
    int jrc = jail_run(&spec, &res, err, sizeof err);
    free(code);
    if (jrc != 0) {
        snprintf(rec->why, sizeof rec->why, "jail: %.140s", err);
        return;
    }
    char last[100];
    if (res.timed_out) snprintf(rec->why, sizeof rec->why, "timed out after %.0f ms", res.wall_ms);
    else if (res.exit_code != 0) {
        tail_line(res.err, res.err_len, last, sizeof last);
        snprintf(rec->why, sizeof rec->why, "exit %d signal %d: %s", res.exit_code, res.signal, last);
    } else if (!last_line_is(res.out, res.out_len, task_solution(t))) {
        tail_line(res.out, res.out_len, last, sizeof last);
        snprintf(rec->why, sizeof rec->why, "printed '%s'", last);
    } else {
        rec->ok = 1;
    }
    jail_result_free(&res);
}

static void worker(struct tasklist *l, int k, int jobs, int fd, const char *db_dir, long timeout_ms) {
    static const char *const names[] = {"python", "shell", "sql"};
    struct policy pols[3];
    char err[512];
    char *org = xasprintf("%s/org.Hs.eg.sqlite", db_dir);
    struct jail_data data[2] = {{"biodb", db_dir}, {"db", org}};
    for (int i = 0; i < 3; i++)
        if (policy_load(names[i], &pols[i], err, sizeof err)) {
            dprintf(2, "viv data: %s\n", err);
            _exit(1);
        }
    for (size_t i = (size_t)k; i < l->n; i += (size_t)jobs) {
        struct record rec = {.idx = (unsigned)i};
        verify_one(&l->v[i], pols, names, 3, data, timeout_ms, &rec);
        if (write_all(fd, &rec, sizeof rec)) _exit(1);
    }
    _exit(0);
}

static void progress(size_t done, size_t total, size_t bad, bool tty) {
    if (tty) {
        int width = 30, fill = total ? (int)(width * done / total) : width;
        fprintf(stderr, "\rviv data: verifying [%.*s%*s] %zu/%zu (%zu dropped)", fill,
                "##############################", width - fill, "", done, total, bad);
        if (done == total) fputc('\n', stderr);
    } else if (done == total || (total >= 10 && done % (total / 10) == 0)) {
        fprintf(stderr, "viv data: verified %zu/%zu (%zu dropped)\n", done, total, bad);
    }
}

int verify_tasks(struct tasklist *l, const struct verify_opts *o, char *err, size_t errlen) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    int jobs = o->jobs > 0 ? o->jobs : 1;
    pid_t pids[64];
    if (jobs > 64) jobs = 64;
    fflush(NULL);
    for (int k = 0; k < jobs; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            close(p[0]);
            worker(l, k, jobs, p[1], o->db_dir, o->timeout_ms);
        }
        if (pids[k] < 0) {
            snprintf(err, errlen, "fork: %s", strerror(errno));
            close(p[0]), close(p[1]);
            for (int j = 0; j < k; j++) kill(pids[j], SIGKILL), waitpid(pids[j], NULL, 0);
            return -1;
        }
    }
    close(p[1]);
    for (size_t i = 0; i < l->n; i++) {
        l->v[i].verified = false;
        snprintf(l->v[i].why, sizeof l->v[i].why, "not run (a verification worker died)");
    }
    bool tty = o->progress && isatty(2);
    size_t done = 0, bad = 0;
    struct record rec;
    for (;;) {
        ssize_t r = read(p[0], &rec, sizeof rec);
        if (r < 0 && errno == EINTR) continue;
        if (r != (ssize_t)sizeof rec) break;
        if (rec.idx >= l->n) continue;
        struct task *t = &l->v[rec.idx];
        t->verified = rec.ok;
        rec.why[sizeof rec.why - 1] = 0;
        snprintf(t->why, sizeof t->why, "%s", rec.ok ? "" : rec.why);
        done++;
        bad += !rec.ok;
        if (o->progress) progress(done, l->n, bad, tty);
    }
    close(p[0]);
    int failed = 0;
    for (int k = 0; k < jobs; k++) {
        int st;
        while (waitpid(pids[k], &st, 0) < 0 && errno == EINTR) {}
        failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    if (failed && done == 0) {
        snprintf(err, errlen, "the verification workers failed (see above)");
        return -1;
    }
    return 0;
}
