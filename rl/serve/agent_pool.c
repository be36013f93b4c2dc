/* agent_pool.c - see agent_pool.h. */
#include "agent_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../sandbox/base/util.h"

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    int *todo, ntodo;          /* slots whose episode owes a message (a stack: order does not matter) */
    int *done_slot, ndone;     /* answered slots and their messages */
    char **done_msg;
    int quit;
    struct episode *slots;
    agent_fn agent;
    void *ctx;
};

static void *worker(void *arg) {
    struct pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->ntodo == 0) pthread_cond_wait(&p->work, &p->mu);
        if (p->ntodo == 0) break; /* quit */
        int s = p->todo[--p->ntodo];
        pthread_mutex_unlock(&p->mu);
        char *msg = p->agent(p->ctx, &p->slots[s]);
        pthread_mutex_lock(&p->mu);
        p->done_slot[p->ndone] = s, p->done_msg[p->ndone] = msg, p->ndone++;
        pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Wait up to ms for an answer from the workers. */
static void wait_done(struct pool *p, long ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&p->mu);
    while (p->ndone == 0 && pthread_cond_timedwait(&p->done, &p->mu, &ts) != ETIMEDOUT) {}
    pthread_mutex_unlock(&p->mu);
}

int pool_run_episodes(const struct task_set *ts, size_t n, int concurrency, int workers, struct viv_pool *vp,
                      agent_fn agent, void *agent_ctx, const struct episode_cfg *cfg, uint64_t seed,
                      struct episode_result *results,
                      void (*on_done)(void *ctx, const struct episode *ep, size_t index), void *done_ctx, char *err,
                      size_t errlen) {
    if (ts->n == 0 || n == 0) return 0;
    if (concurrency < 1) concurrency = 1;
    if (workers < 1) workers = 1;
    if (workers > concurrency) workers = concurrency;
    struct pool p = {.agent = agent, .ctx = agent_ctx};
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.work, NULL);
    pthread_cond_init(&p.done, NULL);
    p.slots = xcalloc((size_t)concurrency, sizeof *p.slots);
    p.todo = xcalloc((size_t)concurrency, sizeof *p.todo);
    p.done_slot = xcalloc((size_t)concurrency, sizeof *p.done_slot);
    p.done_msg = xcalloc((size_t)concurrency, sizeof *p.done_msg);
    size_t *index = xcalloc((size_t)concurrency, sizeof *index);
    int *busy = xcalloc((size_t)concurrency, sizeof *busy), *asking = xcalloc((size_t)concurrency, sizeof *asking);
    int *tries = xcalloc((size_t)concurrency, sizeof *tries);
    struct episode_host *host = xcalloc((size_t)concurrency, sizeof *host);
    pthread_t *th = xcalloc((size_t)workers, sizeof *th);
    int nth = 0;
    while (nth < workers && pthread_create(&th[nth], NULL, worker, &p) == 0) nth++;
    int rc = 0;
    if (nth == 0) {
        rc = fail_with(err, errlen, "cannot start agent threads");
        goto out;
    }
    size_t started = 0, finished = 0;
    size_t broken = 0;
    while (finished < n) {
        int waiting = 0, asked = 0;
        for (int s = 0; s < concurrency; s++) {
            if (!busy[s] && started < n) {
                index[s] = started;
                episode_init(&p.slots[s], &ts->t[started % ts->n], cfg, seed + started);
                busy[s] = 1, started++, tries[s] = 0;
                host[s] = (struct episode_host){-1, 0};
            }
            if (!busy[s]) continue;
            struct episode *ep = &p.slots[s];
            if (ep->state == EP_NEED_MESSAGE) {
                if (!asking[s]) {
                    asking[s] = 1;
                    pthread_mutex_lock(&p.mu);
                    p.todo[p.ntodo++] = s;
                    pthread_cond_signal(&p.work);
                    pthread_mutex_unlock(&p.mu);
                }
                asked++;
                continue;
            }
            if (ep->state == EP_NEED_TOOL) episode_submit_pooled(ep, vp, &host[s]);
            if (episode_rerun_if_lost(ep, vp, &host[s], cfg, seed + index[s], &tries[s])) {
                s--; /* the sandbox ended it: the same episode again, at once */
                continue;
            }
            if (ep->state == EP_DONE) {
                episode_finish_in_slot(ep, vp, &host[s], ts, index[s], tries[s], results, on_done, done_ctx, &broken);
                busy[s] = 0, finished++;
                s--; /* refill this slot at once */
                continue;
            }
            waiting += ep->state == EP_WAIT_TOOL;
        }
        /* the workers' answers: push them (only this thread touches episodes not being asked) */
        int got = 0;
        pthread_mutex_lock(&p.mu);
        for (int k = 0; k < p.ndone; k++) {
            int s = p.done_slot[k];
            char *msg = p.done_msg[k];
            asking[s] = 0;
            episode_push_message(&p.slots[s], msg ? msg : "", msg ? strlen(msg) : 0);
            free(msg);
            got++;
        }
        p.ndone = 0;
        pthread_mutex_unlock(&p.mu);
        if (got) continue;
        if (waiting) {
            /* poll vivd briefly while messages are being computed, so neither side waits on the other */
            episode_pool_dispatch(vp, p.slots, busy, host, concurrency, asked ? 10 : 1000);
        } else if (asked) wait_done(&p, 1000);
    }
    episode_pool_drain(vp);
    if (episodes_lost_error(broken, n, err, errlen) != 0) rc = -1;
out:
    pthread_mutex_lock(&p.mu);
    p.quit = 1;
    pthread_cond_broadcast(&p.work);
    pthread_mutex_unlock(&p.mu);
    for (int i = 0; i < nth; i++) pthread_join(th[i], NULL);
    free(th), free(index), free(busy), free(asking), free(tries), free(host);
    free(p.slots), free(p.todo), free(p.done_slot), free(p.done_msg);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.work);
    pthread_cond_destroy(&p.done);
    return rc;
}
