/*
 * qwen3_infer.c - inference with a KV cache (see qwen3.h).
 *
 * A call takes n rows, each a token for some slot. Rows are pushed through
 * the layers together (the projections are one matmul over all rows); each
 * row's key and value are written into its slot's cache at its position
 * before attention, so a row attends to everything its slot holds up to and
 * including itself. The same code does prefill (many rows, one slot) and
 * batched decode (one row per slot).
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"
#include "kernels.h"
#include "qwen3.h"
#include "qwen3_ops.h"

struct qwen3_kv *qwen3_kv_create(const struct qwen3 *m, int n_slots, int max_T, char *err, size_t errlen) {
    const struct qwen3_config *c = &m->cfg;
    if (n_slots <= 0 || max_T <= 0) {
        fail_with(err, errlen, "kv cache: need at least one slot and one position");
        return NULL;
    }
    size_t per = (size_t)c->num_layers * n_slots * max_T * c->num_kv_heads * c->head_dim;
    struct qwen3_kv *kv = xcalloc(1, sizeof *kv);
    kv->n_slots = n_slots;
    kv->max_T = max_T;
    kv->len = xcalloc((size_t)n_slots, sizeof *kv->len);
    kv->k = malloc(per * sizeof(float));
    kv->v = malloc(per * sizeof(float));
    /* cos/sin for every position, computed once */
    kv->rope_cos = malloc((size_t)max_T * c->head_dim / 2 * sizeof(float));
    kv->rope_sin = malloc((size_t)max_T * c->head_dim / 2 * sizeof(float));
    if (!kv->k || !kv->v || !kv->rope_cos || !kv->rope_sin) {
        fail_with(err, errlen, "kv cache: out of memory for %d slots x %d positions (%.1f GiB)", n_slots, max_T,
             2.0 * per * 4 / (1 << 30));
        qwen3_kv_free(kv);
        return NULL;
    }
    qwen3_rope_table(c, max_T, kv->rope_cos, kv->rope_sin);
    return kv;
}

void qwen3_kv_free(struct qwen3_kv *kv) {
    if (!kv) return;
    free(kv->len);
    free(kv->k);
    free(kv->v);
    free(kv->rope_cos);
    free(kv->rope_sin);
    free(kv->scratch);
    free(kv);
}

void qwen3_kv_reset(struct qwen3_kv *kv, int slot) {
    if (slot >= 0 && slot < kv->n_slots) kv->len[slot] = 0;
}

/* Where the cache row of (layer, slot, kv head, position) starts. Each kv
 * head of a slot owns one contiguous run of max_T rows of head_dim floats,
 * so the attention over one head reads a single forward stream of memory
 * (hardware prefetchers follow it), not every other half of a wider row. */
static inline size_t kv_row(const struct qwen3_config *c, const struct qwen3_kv *kv, int layer, int slot, int kh,
                            int pos) {
    return ((((size_t)layer * kv->n_slots + slot) * c->num_kv_heads + kh) * kv->max_T + pos) * c->head_dim;
}

struct kv_scratch {
    float *x, *ln, *q, *k, *v, *qr, *ao, *gate, *up, *hm, *tmp, *scores;
    int *pos;
};

static size_t plan_scratch(const struct qwen3_config *c, int rows, int max_T, int nth, struct kv_scratch *s,
                           float *base) {
    size_t D = (size_t)c->hidden_size, F = (size_t)c->intermediate_size, R = (size_t)rows;
    size_t qd = (size_t)c->num_heads * c->head_dim, kvd = (size_t)c->num_kv_heads * c->head_dim, o = 0;
#define S(field, n)                                                                                                    \
    do {                                                                                                               \
        if (s) s->field = base + o;                                                                                    \
        o += (n);                                                                                                      \
    } while (0)
    S(x, R * D);
    S(ln, R * D);
    S(q, R * qd);
    S(k, R * kvd);
    S(v, R * kvd);
    S(qr, R * qd);
    S(ao, R * qd);
    S(gate, R * F);
    S(up, R * F);
    S(hm, R * F);
    S(tmp, R * D);
    S(scores, (size_t)nth * max_T * (c->num_heads / c->num_kv_heads)); /* a row per query head of a group */
#undef S
    if (s) s->pos = (int *)(base + o);
    o += R; /* positions, stored as ints in the same block */
    return o;
}

struct kv_attn_job {
    const struct qwen3_config *c;
    const struct qwen3_kv *kv;
    int layer, n;
    const int *slot, *pos;
    const float *qr;
    float *ao, *scores;
};

/* One (row, kv head) per unit: for each query head of the kv head's group,
 * softmax over the slot's cached keys 0..pos, then the weighted sum of
 * cached values. The group's query heads go together so that each cached
 * key and value is read once per unit, not once per query head. (With a
 * single row, as many threads as kv heads find work.) */
static inline __attribute__((always_inline)) void kv_attn_body(void *p, int tid, int nth) {
    struct kv_attn_job *j = p;
    const struct qwen3_config *c = j->c;
    int hd = c->head_dim, Hq = c->num_heads, Hkv = c->num_kv_heads, grp = Hq / Hkv;
    int qd = Hq * hd, maxT = j->kv->max_T;
    float scale = 1.0f / sqrtf((float)hd), *sc = j->scores + (size_t)tid * grp * maxT;
    long u0, u1;
    par_range((long)j->n * Hkv, 1, tid, nth, &u0, &u1);
    for (long u = u0; u < u1; u++) {
        int r = (int)(u / Hkv), kh = (int)(u % Hkv), P = j->pos[r];
        size_t base = kv_row(c, j->kv, j->layer, j->slot[r], kh, 0);
        const float *q0 = j->qr + (size_t)r * qd + (size_t)kh * grp * hd;
        float *o0 = j->ao + (size_t)r * qd + (size_t)kh * grp * hd;
        scaled_scores(sc, (size_t)maxT, q0, grp, j->kv->k + base, (size_t)hd, P + 1, hd, scale);
        for (int g = 0; g < grp; g++) {
            float *row = sc + (size_t)g * maxT, mx, sum;
            softmax_row(row, P + 1, &mx, &sum);
            weighted_sum_rows(o0 + (size_t)g * hd, row, j->kv->v + base, (size_t)hd, P + 1, hd);
        }
    }
}

static void kv_attn_generic(void *p, int tid, int nth) { kv_attn_body(p, tid, nth); }
__attribute__((target("avx2,fma"))) static void kv_attn_avx2(void *p, int tid, int nth) { kv_attn_body(p, tid, nth); }
static void kv_attn_worker(void *p, int tid, int nth) {
    if (mm_have_avx2()) kv_attn_avx2(p, tid, nth);
    else kv_attn_generic(p, tid, nth);
}

int qwen3_kv_forward(const struct qwen3 *m, struct qwen3_kv *kv, const int32_t *token, const int *slot, int n,
                     const uint8_t *want, float *logits_out, char *err, size_t errlen) {
    const struct qwen3_config *c = &m->cfg;
    int D = c->hidden_size, F = c->intermediate_size, hd = c->head_dim, V = c->vocab_size;
    int qd = c->num_heads * hd, kvd = c->num_kv_heads * hd, nth = par_threads();
    if (n <= 0) return fail_with(err, errlen, "kv forward: no tokens");
    if (n > kv->cap_rows) {
        free(kv->scratch);
        kv->scratch = malloc(plan_scratch(c, n, kv->max_T, nth, NULL, NULL) * sizeof(float));
        if (!kv->scratch) {
            kv->cap_rows = 0;
            return fail_with(err, errlen, "kv forward: out of memory for %d rows", n);
        }
        kv->cap_rows = n;
    }
    struct kv_scratch s;
    plan_scratch(c, n, kv->max_T, nth, &s, kv->scratch);
    /* positions: the slot's length plus earlier rows of the same slot */
    for (int i = 0; i < n; i++) {
        if (slot[i] < 0 || slot[i] >= kv->n_slots) return fail_with(err, errlen, "kv forward: bad slot %d", slot[i]);
        if (token[i] < 0 || token[i] >= V) return fail_with(err, errlen, "kv forward: token id %d out of range", token[i]);
        int p = kv->len[slot[i]];
        for (int j = 0; j < i; j++) p += slot[j] == slot[i];
        if (p >= kv->max_T) return fail_with(err, errlen, "kv forward: slot %d is full (%d positions)", slot[i], kv->max_T);
        s.pos[i] = p;
    }
    for (int i = 0; i < n; i++) memcpy(s.x + (size_t)i * D, m->w.embed + (size_t)token[i] * D, (size_t)D * 4);
    for (int l = 0; l < c->num_layers; l++) {
        qwen3_rmsnorm(c, s.ln, NULL, s.x, m->w.ln1 + (size_t)l * D, n);
        mm_nt(s.q, s.ln, m->w.wq + (size_t)l * qd * D, n, qd, D, 0);
        mm_nt(s.k, s.ln, m->w.wk + (size_t)l * kvd * D, n, kvd, D, 0);
        mm_nt(s.v, s.ln, m->w.wv + (size_t)l * kvd * D, n, kvd, D, 0);
        qwen3_headnorm_rope(c, s.qr, NULL, s.q, m->w.qnorm + (size_t)l * hd, n, c->num_heads, s.pos, 0, kv->rope_cos,
                            kv->rope_sin);
        /* normed+rotated keys and raw values go straight into the cache */
        for (int i = 0; i < n; i++)
            for (int kh = 0; kh < c->num_kv_heads; kh++)
                memcpy(kv->v + kv_row(c, kv, l, slot[i], kh, s.pos[i]), s.v + (size_t)i * kvd + (size_t)kh * hd,
                       (size_t)hd * 4);
        qwen3_headnorm_rope(c, s.k, NULL, s.k, m->w.knorm + (size_t)l * hd, n, c->num_kv_heads, s.pos, 0,
                            kv->rope_cos, kv->rope_sin);
        for (int i = 0; i < n; i++)
            for (int kh = 0; kh < c->num_kv_heads; kh++)
                memcpy(kv->k + kv_row(c, kv, l, slot[i], kh, s.pos[i]), s.k + (size_t)i * kvd + (size_t)kh * hd,
                       (size_t)hd * 4);
        struct kv_attn_job aj = {c, kv, l, n, slot, s.pos, s.qr, s.ao, s.scores};
        par_run(kv_attn_worker, &aj);
        mm_nt(s.x, s.ao, m->w.wo + (size_t)l * D * qd, n, D, qd, 1); /* residual: accumulate into x */
        qwen3_rmsnorm(c, s.ln, NULL, s.x, m->w.ln2 + (size_t)l * D, n);
        mm_nt(s.gate, s.ln, m->w.wgate + (size_t)l * F * D, n, F, D, 0);
        mm_nt(s.up, s.ln, m->w.wup + (size_t)l * F * D, n, F, D, 0);
        qwen3_swiglu(c, s.hm, s.gate, s.up, n);
        mm_nt(s.x, s.hm, m->w.wdown + (size_t)l * D * F, n, D, F, 1);
    }
    for (int i = 0; i < n; i++) kv->len[slot[i]] = s.pos[i] + 1 > kv->len[slot[i]] ? s.pos[i] + 1 : kv->len[slot[i]];
    /* final norm and lm_head only for the rows whose logits are wanted */
    int nw = 0;
    for (int i = 0; i < n; i++) {
        if (want && !want[i]) continue;
        memcpy(s.tmp + (size_t)nw * D, s.x + (size_t)i * D, (size_t)D * 4);
        nw++;
    }
    if (nw && logits_out) {
        qwen3_rmsnorm(c, s.ln, NULL, s.tmp, m->w.lnf, nw);
        mm_nt(logits_out, s.ln, m->w.lm_head, nw, V, D, 0);
    }
    return 0;
}
