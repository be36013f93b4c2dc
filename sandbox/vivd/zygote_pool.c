/*
 * zygote_pool.c - vivd's side of zygotes (zygote.c is the worker's side):
 * starting them per policy, their lines, replacing a lost one with backoff.
 */
#define _GNU_SOURCE
#include "vivd_internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "zygote.h"
#include "../base/util.h"

/* ---------------------------------------------------------------- zygotes */

/* The idle zygote that finished its last job longest ago: after a job a
 * zygote spends a few ms preparing the next child, so spread the load. */
struct zygote *idle_zygote(const struct loaded_policy *lp) {
    struct zygote *best = NULL;
    for (struct zygote *z = vd.zygotes; z; z = z->next)
        if (z->lp == lp && z->ready && !z->job && (!best || z->since < best->since)) best = z;
    return best;
}

bool zygote_ready(const struct loaded_policy *lp) {
    for (struct zygote *z = vd.zygotes; z; z = z->next)
        if (z->lp == lp && z->ready) return true;
    return false;
}

static void zygote_start(struct loaded_policy *lp) {
    struct zygote *z = xcalloc(1, sizeof *z);
    pid_t pid = fork_worker(&z->fd);
    if (pid == 0) {
        struct zygote_spec zs = {&lp->policy, &lp->filter, &lp->zygote_filter, vd.cfg.data, vd.cfg.ndata, lp->policy.name};
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
    z->next = vd.zygotes;
    vd.zygotes = z;
    lp->zygotes_started++;
}

/* Forget a zygote: closing our end makes its worker kill the jail and exit
 * (SIGCHLD reaps it). A job in flight is answered with `why`. */
void zygote_destroy(struct zygote *z, const char *why) {
    epoll_ctl(vd.epfd, EPOLL_CTL_DEL, z->fd, NULL);
    close(z->fd);
    for (struct zygote **p = &vd.zygotes; *p; p = &(*p)->next)
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
    if (vd.stopping) {
        zygote_destroy(z, "");
        return true;
    }
    return false;
}

static bool zygote_line_cb(void *z, const char *line) { return zygote_line(z, line); }

void zygote_readable(struct zygote *z) {
    int rc = read_worker_lines(z->fd, &z->in, &z->in_len, zygote_line_cb, z);
    if (rc != 0) return; /* more to come, or z is gone */
    /* the worker exited without a word */
    z->lp->zygotes_lost++;
    log_line("\"op\":\"zygote_lost\",\"tool\":\"%s\",\"detail\":\"its worker exited\"", z->lp->policy.name);
    if (!z->ready) z->lp->zygote_next_start = now_ms() + 1000;
    zygote_destroy(z, "the zygote running this job died");
}

/* Keep cfg.zygotes ready (or starting) per policy that has them. */
void zygotes_top_up(void) {
    if (vd.stopping) return;
    double now = now_ms();
    for (int i = 0; i < vd.npolicies; i++) {
        struct loaded_policy *lp = &vd.policies[i];
        if (!lp->zygotes_on || now < lp->zygote_next_start) continue;
        int have = 0;
        for (struct zygote *z = vd.zygotes; z; z = z->next) have += z->lp == lp;
        for (; have < vd.cfg.zygotes; have++) zygote_start(lp);
    }
}
