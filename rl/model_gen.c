/*
 * model_gen.c - batched generation with the KV cache (see model_gen.h).
 */
#define _GNU_SOURCE
#include "model_gen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/kernels.h"
#include "../model/sample.h"

/* ---- the CPU model as a gen_model ------------------------------------------------ */

static void *cpu_kv_create(void *ctx, int n_slots, int max_T, char *err, size_t errlen) {
    return qwen3_kv_create(ctx, n_slots, max_T, err, errlen);
}
static void cpu_kv_free(void *kv) { qwen3_kv_free(kv); }
static int cpu_kv_len(const void *kv, int slot) { return ((const struct qwen3_kv *)kv)->len[slot]; }
static void cpu_kv_truncate(void *kv, int slot, int len) {
    struct qwen3_kv *k = kv;
    if (len <= 0) qwen3_kv_reset(k, slot);
    else if (len < k->len[slot]) k->len[slot] = len;
}
static int cpu_kv_forward(void *ctx, void *kv, const int32_t *token, const int *slot, int n, const uint8_t *want,
                          float *logits, char *err, size_t errlen) {
    return qwen3_kv_forward(ctx, kv, token, slot, n, want, logits, err, errlen);
}

void model_gen_cpu_model(const struct qwen3 *m, struct gen_model *out) {
    *out = (struct gen_model){.ctx = (void *)m, .vocab_size = m->cfg.vocab_size, .kv_create = cpu_kv_create,
                              .kv_free = cpu_kv_free, .kv_len = cpu_kv_len, .kv_truncate = cpu_kv_truncate,
                              .kv_forward = cpu_kv_forward};
}

/* ---- the generator ------------------------------------------------------------------ */

int model_gen_init(struct model_gen *g, const struct qwen3 *m, const struct tokenizer *tok, int n_slots, int max_T,
                   char *err, size_t errlen) {
    struct gen_model gm;
    model_gen_cpu_model(m, &gm);
    return model_gen_init_with(g, &gm, tok, n_slots, max_T, err, errlen);
}

int model_gen_init_with(struct model_gen *g, const struct gen_model *gm, const struct tokenizer *tok, int n_slots,
                        int max_T, char *err, size_t errlen) {
    memset(g, 0, sizeof *g);
    g->gm = *gm, g->tok = tok, g->n_slots = n_slots, g->max_T = max_T;
    g->temperature = 1.0f, g->top_p = 1.0f;
    g->kv = gm->kv_create(gm->ctx, n_slots, max_T, err, errlen);
    if (!g->kv) return -1;
    g->slot_ids = calloc((size_t)n_slots, sizeof *g->slot_ids);
    g->slot_episode = malloc((size_t)n_slots * sizeof *g->slot_episode);
    g->slot_used = calloc((size_t)n_slots, sizeof *g->slot_used);
    if (!g->slot_ids || !g->slot_episode || !g->slot_used) goto oom;
    for (int i = 0; i < n_slots; i++) {
        if (!(g->slot_ids[i] = malloc((size_t)max_T * sizeof(int32_t)))) goto oom;
        g->slot_episode[i] = -1;
    }
    g->eos_id = tokenizer_token_id(tok, "<|im_end|>");
    return 0;
oom:
    model_gen_free(g);
    snprintf(err, errlen, "model_gen: out of memory");
    return -1;
}

void model_gen_free(struct model_gen *g) {
    if (g->slot_ids)
        for (int i = 0; i < g->n_slots; i++) free(g->slot_ids[i]);
    free(g->slot_ids), free(g->slot_episode), free(g->slot_used);
    if (g->kv) g->gm.kv_free(g->kv);
    memset(g, 0, sizeof *g);
}

void model_gen_invalidate(struct model_gen *g) {
    for (int i = 0; i < g->n_slots; i++) {
        g->gm.kv_truncate(g->kv, i, 0);
        g->slot_episode[i] = -1;
    }
}

/* Tokens of slot s that are a prefix of ids[0..n): 0 when they are not. */
static int slot_prefix(const struct model_gen *g, int s, const int *ids, int n) {
    int len = g->gm.kv_len(g->kv, s);
    if (len == 0 || len > n) return 0;
    for (int i = 0; i < len; i++)
        if (g->slot_ids[s][i] != ids[i]) return 0;
    return len;
}

/* A slot for a request: the one its episode used if it still holds a prefix
 * of the context, else the least recently used slot not taken this call. */
static int pick_slot(struct model_gen *g, const struct rl_gen_request *q, const uint8_t *taken) {
    for (int s = 0; s < g->n_slots; s++)
        if (!taken[s] && g->slot_episode[s] == q->episode && slot_prefix(g, s, q->tokens, q->n_tokens)) return s;
    int best = -1;
    for (int s = 0; s < g->n_slots; s++)
        if (!taken[s] && (best < 0 || g->slot_used[s] < g->slot_used[best])) best = s;
    return best;
}

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* log softmax(logits)[tok] */
static float logprob_of(const float *logits, int V, int tok) {
    float mx = logits[0];
    for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)(logits[i] - mx));
    return (float)((double)(logits[tok] - mx) - log(sum));
}

/* The next token of each live row: rows[r]'s request samples from its own
 * logits with its own stream, seeded by (seed, episode, turn, position), so
 * which thread draws it, and with which other rows, changes nothing. Each
 * thread keeps one sampler for its rows (the buffers are reused). */
struct sample_job {
    struct model_gen *g;
    const struct rl_gen_request *reqs;
    const float *logits;
    int V;
    const int *rows;
    int n_rows;
    int *tok;   /* [n_rows] */
    float *lp;  /* [n_rows] */
};

static void sample_rows(void *p, int tid, int nth) {
    struct sample_job *j = p;
    const struct model_gen *g = j->g;
    long lo, hi;
    par_range(j->n_rows, 1, tid, nth, &lo, &hi);
    struct sampler sm;
    sampler_init(&sm, g->temperature, g->top_p, 0, 0);
    for (long r = lo; r < hi; r++) {
        const struct rl_gen_request *q = &j->reqs[j->rows[r]];
        const float *lg = j->logits + (size_t)j->rows[r] * j->V;
        uint64_t sd = mix64(g->seed ^ mix64((uint64_t)q->episode * 1000003u + (uint64_t)q->turn) ^
                            mix64((uint64_t)(q->n_tokens + q->n_out)));
        sampler_reset(&sm, g->temperature, g->top_p, 0, sd);
        int tok = sampler_sample(&sm, lg, j->V);
        j->tok[r] = tok;
        j->lp[r] = g->no_logprobs ? 0.0f : logprob_of(lg, j->V, tok);
    }
    sampler_free(&sm);
}

struct live {
    int req, slot;
    char *text; /* decoded bytes of this turn so far (for stop strings) */
    size_t len, cap;
};

static void text_add(struct live *l, const char *s, size_t n) {
    if (l->len + n + 1 > l->cap) {
        l->cap = (l->len + n + 1) * 2;
        l->text = realloc(l->text, l->cap);
        if (!l->text) abort();
    }
    memcpy(l->text + l->len, s, n);
    l->len += n;
    l->text[l->len] = 0;
}

/* 1 if the turn's text now contains a stop string that the last `added`
 * bytes completed. */
static int hit_stop(const struct live *l, size_t added, const char *const *stop) {
    for (int k = 0; stop && stop[k]; k++) {
        size_t sl = strlen(stop[k]);
        size_t from = l->len >= added + sl ? l->len - added - sl + 1 : 0;
        if (l->len >= sl && memmem(l->text + from, l->len - from, stop[k], sl)) return 1;
    }
    return 0;
}

static int mg_generate(void *ctx, struct rl_gen_request *reqs, int n) {
    struct model_gen *g = ctx;
    int V = g->gm.vocab_size;
    if (n > g->n_slots) return -1;
    char err[256];
    uint8_t *taken = calloc((size_t)g->n_slots, 1);
    struct live *lv = calloc((size_t)n, sizeof *lv);
    float *logits = malloc((size_t)n * V * sizeof(float));
    int32_t *feed = malloc((size_t)n * sizeof(int32_t));
    int *fslot = malloc((size_t)n * sizeof(int));
    int *fidx = malloc((size_t)n * sizeof(int));
    int *rows = malloc((size_t)n * sizeof(int)), *drawn = malloc((size_t)n * sizeof(int));
    float *drawn_lp = malloc((size_t)n * sizeof(float));
    int rc = 0;
    if (!taken || !lv || !logits || !feed || !fslot || !fidx || !rows || !drawn || !drawn_lp) {
        rc = -1;
        goto out;
    }
    /* 1. slots and prefill: feed what each slot does not hold yet, keep the
     * last row's logits. */
    for (int i = 0; i < n; i++) {
        struct rl_gen_request *q = &reqs[i];
        q->n_out = 0;
        int s = pick_slot(g, q, taken);
        if (s < 0 || q->n_tokens <= 0 || q->n_tokens >= g->max_T) {
            q->n_out = -1;
            lv[i].slot = -1;
            continue;
        }
        taken[s] = 1;
        lv[i].req = i, lv[i].slot = s;
        int have = slot_prefix(g, s, q->tokens, q->n_tokens);
        if (have == q->n_tokens) have--; /* the last token must be fed for its logits */
        if (have <= 0 || g->slot_episode[s] != q->episode) {
            g->gm.kv_truncate(g->kv, s, 0);
            have = 0;
        } else {
            g->gm.kv_truncate(g->kv, s, have); /* drop cached rows past the common prefix */
        }
        g->slot_episode[s] = q->episode;
        g->slot_used[s] = ++g->clock;
        int nf = q->n_tokens - have;
        int32_t *ids = malloc((size_t)nf * sizeof *ids);
        int *sl = malloc((size_t)nf * sizeof *sl);
        uint8_t *want = calloc((size_t)nf, 1);
        if (!ids || !sl || !want) {
            free(ids), free(sl), free(want);
            rc = -1;
            goto out;
        }
        for (int j = 0; j < nf; j++) ids[j] = q->tokens[have + j], sl[j] = s;
        want[nf - 1] = 1;
        int frc = g->gm.kv_forward(g->gm.ctx, g->kv, ids, sl, nf, want, logits + (size_t)i * V, err, sizeof err);
        free(ids), free(sl), free(want);
        if (frc != 0) {
            q->n_out = -1;
            lv[i].slot = -1;
            g->gm.kv_truncate(g->kv, s, 0);
            g->slot_episode[s] = -1;
            continue;
        }
        memcpy(g->slot_ids[s] + have, q->tokens + have, (size_t)nf * sizeof(int32_t));
        g->tokens_prefilled += nf;
        /* a turn continued from an earlier chunk: its text so far counts for stop strings */
        if (q->turn_start < q->n_tokens) {
            char *t = g->tok ? tokenizer_decode(g->tok, (const int32_t *)q->tokens + q->turn_start,
                                                q->n_tokens - q->turn_start, NULL)
                             : NULL;
            if (t) text_add(&lv[i], t, strlen(t)), free(t);
        }
    }
    /* 2. decode: sample from each live row's logits (in parallel: each row
     * has its own stream), then, in request order, take each token, check
     * the stops and feed the token back */
    for (;;) {
        int nr = 0;
        for (int i = 0; i < n; i++)
            if (lv[i].slot >= 0 && reqs[i].n_out >= 0 && !reqs[i].stop_reason) rows[nr++] = i;
        if (nr == 0) break;
        struct sample_job sj = {g, reqs, logits, V, rows, nr, drawn, drawn_lp};
        if (nr > 1) par_run(sample_rows, &sj);
        else sample_rows(&sj, 0, 1);
        int nf = 0;
        for (int r = 0; r < nr; r++) {
            int i = rows[r];
            struct rl_gen_request *q = &reqs[i];
            struct live *l = &lv[i];
            int tok = drawn[r];
            q->out_tokens[q->n_out] = tok;
            q->out_logprobs[q->n_out] = drawn_lp[r];
            q->n_out++;
            g->tokens_generated++;
            size_t tl = 0;
            char *t = tokenizer_decode(g->tok, &(int32_t){tok}, 1, &tl);
            if (t) text_add(l, t, tl), free(t);
            if (tok == g->eos_id) q->stop_reason = RL_GEN_STOP_EOS;
            else if (t && hit_stop(l, tl, q->stop)) q->stop_reason = RL_GEN_STOP_STRING;
            else if (q->n_out >= q->max_new_tokens || g->gm.kv_len(g->kv, l->slot) + 1 >= g->max_T)
                q->stop_reason = RL_GEN_STOP_LENGTH;
            else {
                feed[nf] = tok, fslot[nf] = l->slot, fidx[nf] = i;
                nf++;
            }
        }
        if (nf == 0) break;
        /* the rows come back in feed order; put each where its request reads it */
        float *out = malloc((size_t)nf * V * sizeof(float));
        if (!out) {
            rc = -1;
            goto out;
        }
        if (g->gm.kv_forward(g->gm.ctx, g->kv, feed, fslot, nf, NULL, out, err, sizeof err) != 0) {
            free(out);
            rc = -1;
            goto out;
        }
        for (int j = 0; j < nf; j++) {
            int s = fslot[j];
            g->slot_ids[s][g->gm.kv_len(g->kv, s) - 1] = feed[j];
            memcpy(logits + (size_t)fidx[j] * V, out + (size_t)j * V, (size_t)V * sizeof(float));
        }
        free(out);
    }
out:
    if (lv)
        for (int i = 0; i < n; i++) free(lv[i].text);
    if (rc != 0) model_gen_invalidate(g);
    free(taken), free(lv), free(logits), free(feed), free(fslot), free(fidx), free(rows), free(drawn), free(drawn_lp);
    return rc;
}

void model_gen_generator(struct model_gen *g, struct rl_generator *out) {
    memset(out, 0, sizeof *out);
    out->ctx = g;
    out->generate = mg_generate;
    out->max_batch = g->n_slots;
}

/* ---- the rl_tokenizer ---------------------------------------------------------- */

static int mt_encode(void *ctx, const char *text, size_t len, int **ids, int *n) {
    int32_t *v = NULL;
    int k = tokenizer_encode(ctx, text, len, &v);
    if (k < 0) return -1;
    *ids = (int *)v; /* int32_t and int are the same type on our targets */
    *n = k;
    return 0;
}

static char *mt_decode(void *ctx, const int *ids, int n, size_t *len) {
    *len = 0;
    if (n == 0) return strdup("");
    return tokenizer_decode(ctx, (const int32_t *)ids, n, len);
}

void model_gen_tokenizer(const struct tokenizer *tok, struct rl_tokenizer *out) {
    memset(out, 0, sizeof *out);
    out->ctx = (void *)tok;
    out->encode = mt_encode;
    out->decode = mt_decode;
}
