/*
 * sample.c - sampling and a single-sequence generation loop (see sample.h).
 */
#define _GNU_SOURCE
#include "sample.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void sampler_init(struct sampler *s, float temperature, float top_p, int top_k, uint64_t seed) {
    memset(s, 0, sizeof *s);
    sampler_reset(s, temperature, top_p, top_k, seed);
}

void sampler_reset(struct sampler *s, float temperature, float top_p, int top_k, uint64_t seed) {
    s->temperature = temperature;
    s->top_p = top_p > 0 && top_p < 1 ? top_p : 1.0f;
    s->top_k = top_k > 0 ? top_k : 0;
    uint64_t st = seed;
    s->rng = splitmix(&st) | 1; /* xorshift state must be non-zero */
}

void sampler_free(struct sampler *s) {
    free(s->prob);
    free(s->idx);
    s->prob = NULL;
    s->idx = NULL;
    s->cap = 0;
}

float sampler_uniform(struct sampler *s) {
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (float)((s->rng * 0x2545f4914f6cdd1dull) >> 40) / 16777216.0f;
}

static int by_prob_desc(const void *a, const void *b, void *ctx) {
    const float *prob = ctx;
    float x = prob[*(const int *)a], y = prob[*(const int *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int *)a - *(const int *)b;
}

/* "a is less likely than b": lower probability, or equal and a higher id
 * (so that ties keep the lower id, as a stable descending sort would). */
static int less_likely(const float *prob, int a, int b) { return prob[a] < prob[b] || (prob[a] == prob[b] && a > b); }

static void sift_down(int *h, int n, int i, const float *prob) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && less_likely(prob, h[l], h[m])) m = l;
        if (r < n && less_likely(prob, h[r], h[m])) m = r;
        if (m == i) return;
        int t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* The k most likely of idx[0..n) into idx[0..k) (unordered): a min-heap of
 * the best k so far, O(n log k) instead of sorting the whole vocabulary. */
static int select_top_k(int *idx, int n, int k, const float *prob) {
    if (k >= n) return n;
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(idx, k, i, prob);
    for (int i = k; i < n; i++)
        if (less_likely(prob, idx[0], idx[i])) {
            idx[0] = idx[i];
            sift_down(idx, k, 0, prob);
        }
    return k;
}

int sampler_sample(struct sampler *s, const float *logits, int V) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (s->temperature <= 0 || s->top_k == 1) return best;
    if (V > s->cap) {
        s->prob = xrealloc(s->prob, (size_t)V * sizeof *s->prob);
        s->idx = xrealloc(s->idx, (size_t)V * sizeof *s->idx);
        s->cap = V;
    }
    double sum = 0;
    for (int i = 0; i < V; i++) sum += (s->prob[i] = expf((logits[i] - logits[best]) / s->temperature));
    for (int i = 0; i < V; i++) s->prob[i] = (float)(s->prob[i] / sum);
    /* candidates: with top-p alone, tokens below (1 - top_p) / (V - 1) can
     * never be needed to reach top_p, so they are dropped before sorting */
    int n = 0;
    float floor_p = s->top_k == 0 && s->top_p < 1 ? (1.0f - s->top_p) / (float)(V > 1 ? V - 1 : 1) : -1.0f;
    for (int i = 0; i < V; i++)
        if (s->prob[i] >= floor_p) s->idx[n++] = i;
    if (s->top_k || s->top_p < 1) {
        if (s->top_k) n = select_top_k(s->idx, n, s->top_k, s->prob);
        qsort_r(s->idx, (size_t)n, sizeof *s->idx, by_prob_desc, s->prob);
        if (s->top_p < 1) {
            /* renormalise over the top-k survivors, then keep the prefix whose
             * cumulative probability first reaches top_p */
            double tot = 0, cum = 0;
            for (int i = 0; i < n; i++) tot += s->prob[s->idx[i]];
            int keep = n;
            for (int i = 0; i < n; i++) {
                cum += s->prob[s->idx[i]] / tot;
                if (cum >= s->top_p) {
                    keep = i + 1;
                    break;
                }
            }
            n = keep;
        }
    }
    double tot = 0;
    for (int i = 0; i < n; i++) tot += s->prob[s->idx[i]];
    double u = sampler_uniform(s) * tot, cum = 0;
    for (int i = 0; i < n; i++) {
        cum += s->prob[s->idx[i]];
        if (u < cum) return s->idx[i];
    }
    return s->idx[n - 1];
}

int gen_args_ok(int n_prompt, const struct gen_opts *o, char *err, size_t errlen) {
    if (n_prompt <= 0 || o->max_tokens < 0) {
        snprintf(err, errlen, "generate: need at least one prompt token");
        return -1;
    }
    return 0;
}

int gen_run(const struct gen_decoder *gm, const int32_t *prompt, int n_prompt, const struct gen_opts *o,
            gen_token_fn on_token, void *user, struct gen_stats *st, char *err, size_t errlen) {
    struct gen_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    if (gen_args_ok(n_prompt, o, err, errlen)) return -1;
    float *logits = xmalloc((size_t)gm->vocab * sizeof *logits);
    struct sampler smp;
    sampler_init(&smp, o->temperature, o->top_p, o->top_k, o->seed);
    int rc = -1;
    double t0 = now_ms();
    for (int i = 0; i < n_prompt; i += GEN_CHUNK) {
        int n = n_prompt - i < GEN_CHUNK ? n_prompt - i : GEN_CHUNK;
        if (gm->feed(gm->self, prompt + i, n, i + n == n_prompt, logits, err, errlen)) goto out;
    }
    st->prompt_tokens = n_prompt;
    st->prefill_ms = now_ms() - t0;
    t0 = now_ms();
    for (int g = 0; g < o->max_tokens; g++) {
        int32_t tok = sampler_sample(&smp, logits, gm->vocab);
        st->generated++;
        int stop = 0;
        for (int i = 0; i < o->n_stop; i++) stop |= tok == o->stop_ids[i];
        if (on_token && on_token(tok, user)) break;
        if (stop) {
            st->stopped_on_stop_id = 1;
            break;
        }
        if (g + 1 == o->max_tokens) break;
        if (gm->feed(gm->self, &tok, 1, 1, logits, err, errlen)) goto out;
    }
    st->decode_ms = now_ms() - t0;
    rc = 0;
out:
    free(logits);
    sampler_free(&smp);
    return rc;
}

/* The CPU model's feed: one slot (0) of a qwen3_kv. */
struct cpu_feed {
    const struct qwen3 *m;
    struct qwen3_kv *kv;
    int slots[GEN_CHUNK]; /* all 0 */
    uint8_t want[GEN_CHUNK];
};

static int feed_cpu(void *self, const int32_t *tokens, int n, int want_last, float *logits, char *err,
                    size_t errlen) {
    struct cpu_feed *f = self;
    memset(f->want, 0, (size_t)n);
    f->want[n - 1] = (uint8_t)want_last;
    return qwen3_kv_forward(f->m, f->kv, tokens, f->slots, n, f->want, logits, err, errlen);
}

int qwen3_generate(const struct qwen3 *m, const int32_t *prompt, int n_prompt, const struct gen_opts *o,
                   gen_token_fn on_token, void *user, struct gen_stats *st, char *err, size_t errlen) {
    if (gen_args_ok(n_prompt, o, err, errlen)) return -1;
    struct cpu_feed *f = xcalloc(1, sizeof *f);
    f->m = m;
    f->kv = qwen3_kv_create(m, 1, n_prompt + o->max_tokens, err, errlen);
    int rc = -1;
    if (f->kv) {
        struct gen_decoder gm = {.vocab = m->cfg.vocab_size, .feed = feed_cpu, .self = f};
        rc = gen_run(&gm, prompt, n_prompt, o, on_token, user, st, err, errlen);
        qwen3_kv_free(f->kv);
    }
    free(f);
    return rc;
}
