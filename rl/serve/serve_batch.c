/* serve_batch.c - see serve_batch.h. */
#include "serve_batch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../model/qwen3.h"
#include "../../model/sample.h"
#include "../../sandbox/base/util.h"

struct breq {
    /* the request (the caller's memory; it waits in batcher_run) */
    const int32_t *prompt;
    int n_prompt, max_tokens;
    const struct textgen_params *p;
    struct textgen_stream st;
    struct sampler smp;
    /* the scheduler's state */
    int slot, generated, last;
    int done, rc;
    char err[256];
    struct textgen_result *out;
    struct breq *next;
};

struct batcher {
    const struct textgen *g;
    struct qwen3_kv *kv;
    int n_slots, max_T, V;
    struct breq **run;            /* per slot, NULL when free */
    float *logits;                /* [n_slots, V] */
    int32_t *feed;
    int *feed_slot;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t work, done;    /* work: the scheduler; done: the waiting callers */
    struct breq *head, *tail;     /* the queue */
    int quit;
    long steps, rows;             /* decode steps and the rows they carried */
    int max_rows;                 /* the most requests decoded together */
};

static void finish(struct batcher *b, struct breq *r) {
    if (r->rc == 0) textgen_stream_finish(&r->st, r->n_prompt, r->out);
    else textgen_stream_free(&r->st);
    sampler_free(&r->smp);
    pthread_mutex_lock(&b->mu);
    r->done = 1;
    pthread_cond_broadcast(&b->done);
    pthread_mutex_unlock(&b->mu);
}

/* A sampled token: hand it to the stream; 1 when the request is finished. */
static int take_token(struct breq *r, int32_t tok) {
    r->generated++;
    r->last = tok;
    return textgen_stream_feed(&r->st, tok) || r->generated >= r->max_tokens;
}

/* Prefill the request's prompt into its slot and sample its first token. */
static int admit(struct batcher *b, struct breq *r, int slot) {
    enum { CHUNK = 256 };
    qwen3_kv_reset(b->kv, slot);
    r->slot = slot;
    int slots[CHUNK];
    uint8_t want[CHUNK];
    for (int i = 0; i < CHUNK; i++) slots[i] = slot;
    float *logits = b->logits + (size_t)slot * b->V;
    for (int i = 0; i < r->n_prompt; i += CHUNK) {
        int n = r->n_prompt - i < CHUNK ? r->n_prompt - i : CHUNK;
        memset(want, 0, sizeof want);
        want[n - 1] = i + n == r->n_prompt;
        if (qwen3_kv_forward(b->g->m, b->kv, r->prompt + i, slots, n, want, logits, r->err, sizeof r->err) != 0)
            return r->rc = -1, 1;
    }
    return take_token(r, sampler_sample(&r->smp, logits, b->V));
}

static void *scheduler(void *arg) {
    struct batcher *b = arg;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        int active = 0;
        for (int s = 0; s < b->n_slots; s++) active += b->run[s] != NULL;
        while (!b->quit && !active && !b->head) pthread_cond_wait(&b->work, &b->mu);
        if (b->quit) {
            pthread_mutex_unlock(&b->mu);
            break;
        }
        /* admit waiting requests into free slots */
        struct breq *adm[64];
        int nadm = 0;
        for (int s = 0; s < b->n_slots && b->head && nadm < 64; s++)
            if (!b->run[s]) {
                struct breq *r = b->head;
                b->head = r->next;
                if (!b->head) b->tail = NULL;
                b->run[s] = r;
                r->slot = s;
                adm[nadm++] = r;
            }
        pthread_mutex_unlock(&b->mu);
        for (int i = 0; i < nadm; i++)
            if (admit(b, adm[i], adm[i]->slot)) {
                b->run[adm[i]->slot] = NULL;
                finish(b, adm[i]);
            }
        /* one decode step over every running request */
        int n = 0;
        for (int s = 0; s < b->n_slots; s++)
            if (b->run[s]) b->feed[n] = b->run[s]->last, b->feed_slot[n] = s, n++;
        if (n == 0) continue;
        b->steps++, b->rows += n;
        if (n > b->max_rows) b->max_rows = n;
        char err[256];
        if (qwen3_kv_forward(b->g->m, b->kv, b->feed, b->feed_slot, n, NULL, b->logits, err, sizeof err) != 0) {
            for (int i = 0; i < n; i++) { /* cannot happen with max_tokens cut to the slot; fail them all */
                struct breq *r = b->run[b->feed_slot[i]];
                r->rc = -1;
                snprintf(r->err, sizeof r->err, "%s", err);
                b->run[b->feed_slot[i]] = NULL;
                finish(b, r);
            }
            continue;
        }
        for (int i = 0; i < n; i++) {
            struct breq *r = b->run[b->feed_slot[i]];
            if (take_token(r, sampler_sample(&r->smp, b->logits + (size_t)i * b->V, b->V))) {
                b->run[b->feed_slot[i]] = NULL;
                finish(b, r);
            }
        }
    }
    return NULL;
}

struct batcher *batcher_start(const struct textgen *g, int n_slots, int max_T, char *err, size_t errlen) {
    struct qwen3_kv *kv = qwen3_kv_create(g->m, n_slots, max_T, err, errlen);
    if (!kv) return NULL;
    struct batcher *b = xcalloc(1, sizeof *b);
    b->g = g, b->kv = kv, b->n_slots = n_slots, b->max_T = max_T, b->V = g->m->cfg.vocab_size;
    b->run = xcalloc((size_t)n_slots, sizeof *b->run);
    b->logits = xmalloc((size_t)n_slots * b->V * sizeof *b->logits);
    b->feed = xcalloc((size_t)n_slots, sizeof *b->feed);
    b->feed_slot = xcalloc((size_t)n_slots, sizeof *b->feed_slot);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->work, NULL);
    pthread_cond_init(&b->done, NULL);
    if (pthread_create(&b->th, NULL, scheduler, b) != 0) {
        fail_with(err, errlen, "cannot start the batch scheduler thread");
        b->th = 0;
        batcher_stop(b);
        return NULL;
    }
    return b;
}

void batcher_stop(struct batcher *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->quit = 1;
    pthread_cond_broadcast(&b->work);
    pthread_mutex_unlock(&b->mu);
    if (b->th) pthread_join(b->th, NULL);
    /* whatever is left (running or queued) fails */
    for (int s = 0; s < b->n_slots; s++)
        if (b->run[s]) {
            b->run[s]->rc = -1;
            snprintf(b->run[s]->err, sizeof b->run[s]->err, "the server is stopping");
            finish(b, b->run[s]);
        }
    for (struct breq *r = b->head, *nx; r; r = nx) {
        nx = r->next;
        r->rc = -1;
        snprintf(r->err, sizeof r->err, "the server is stopping");
        finish(b, r);
    }
    /* callers may still be waking up: they only read their own breq, which they own */
    qwen3_kv_free(b->kv);
    free(b->run), free(b->logits), free(b->feed), free(b->feed_slot);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->work);
    pthread_cond_destroy(&b->done);
    free(b);
}

void batcher_stats(const struct batcher *b, long *steps, long *rows, int *max_rows) {
    *steps = b->steps, *rows = b->rows, *max_rows = b->max_rows;
}

int batcher_run(struct batcher *b, const int32_t *prompt, int n_prompt, const struct textgen_params *p,
                textgen_delta_fn on_delta, void *user, struct textgen_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->stop_index = -1;
    struct breq r = {.prompt = prompt, .n_prompt = n_prompt, .p = p, .out = out, .max_tokens = p->max_tokens};
    if (textgen_check_prompt(b->g, prompt, n_prompt, b->max_T, &r.max_tokens, err, errlen) != 0) return -1;
    if (textgen_stream_init(&r.st, b->g, p, on_delta, user, err, errlen) != 0) return -1;
    if (r.max_tokens <= 0) {
        textgen_stream_finish(&r.st, n_prompt, out);
        return 0;
    }
    sampler_init(&r.smp, p->temperature, p->top_p, 0, p->seed);
    pthread_mutex_lock(&b->mu);
    if (b->tail) b->tail->next = &r;
    else b->head = &r;
    b->tail = &r;
    pthread_cond_signal(&b->work);
    while (!r.done) pthread_cond_wait(&b->done, &b->mu);
    pthread_mutex_unlock(&b->mu);
    if (r.rc != 0) return fail_with(err, errlen, "%s", r.err);
    return 0;
}
