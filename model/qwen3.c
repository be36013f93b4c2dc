/*
 * qwen3.c - parameters, checkpoint I/O, training forward and backward.
 * (Inference with a KV cache is in qwen3_infer.c; shared pieces in
 * qwen3_ops.h.) See qwen3.h for the architecture.
 */
#define _GNU_SOURCE
#include "qwen3.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../sandbox/base/util.h"
#include "kernels.h"
#include "qwen3_ops.h"

/* ---- parameter layout ------------------------------------------------------- */

/* Offsets (in floats) of each stacked tensor kind inside the block. */
static size_t layout(const struct qwen3_config *c, struct qwen3_weights *w, float *base) {
    size_t V = (size_t)c->vocab_size, D = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    size_t L = (size_t)c->num_layers, hd = (size_t)c->head_dim;
    size_t qd = (size_t)c->num_heads * hd, kvd = (size_t)c->num_kv_heads * hd, o = 0;
#define PLACE(field, n)                                                                                                \
    do {                                                                                                               \
        if (w) w->field = base + o;                                                                                    \
        o += (n);                                                                                                      \
    } while (0)
    PLACE(embed, V * D);
    PLACE(ln1, L * D);
    PLACE(wq, L * qd * D);
    PLACE(wk, L * kvd * D);
    PLACE(wv, L * kvd * D);
    PLACE(wo, L * D * qd);
    PLACE(qnorm, L * hd);
    PLACE(knorm, L * hd);
    PLACE(ln2, L * D);
    PLACE(wgate, L * F * D);
    PLACE(wup, L * F * D);
    PLACE(wdown, L * D * F);
    PLACE(lnf, D);
    if (c->tie_word_embeddings) {
        if (w) w->lm_head = w->embed;
    } else {
        PLACE(lm_head, V * D);
    }
#undef PLACE
    return o;
}

static void add_tensor(struct qwen3 *m, const char *name, const float *field, size_t index, int64_t d0, int64_t d1) {
    struct qwen3_tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->numel = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    t->offset = (size_t)(field - m->params) + index * t->numel;
    t->is_matrix = d1 != 0;
}

/* The checkpoint's tensors in HF naming, in the order HF writes them. */
static void build_tensor_table(struct qwen3 *m) {
    const struct qwen3_config *c = &m->cfg;
    int64_t V = c->vocab_size, D = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    int64_t qd = (int64_t)c->num_heads * hd, kvd = (int64_t)c->num_kv_heads * hd;
    m->tensors = xcalloc((size_t)(11 * c->num_layers + 3), sizeof *m->tensors);
    char name[80];
    add_tensor(m, "model.embed_tokens.weight", m->w.embed, 0, V, D);
    for (int l = 0; l < c->num_layers; l++) {
#define T(suffix, field, d0, d1)                                                                                       \
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);                                                      \
    add_tensor(m, name, m->w.field, (size_t)l, d0, d1)
        T("input_layernorm.weight", ln1, D, 0);
        T("self_attn.q_proj.weight", wq, qd, D);
        T("self_attn.k_proj.weight", wk, kvd, D);
        T("self_attn.v_proj.weight", wv, kvd, D);
        T("self_attn.o_proj.weight", wo, D, qd);
        T("self_attn.q_norm.weight", qnorm, hd, 0);
        T("self_attn.k_norm.weight", knorm, hd, 0);
        T("post_attention_layernorm.weight", ln2, D, 0);
        T("mlp.gate_proj.weight", wgate, F, D);
        T("mlp.up_proj.weight", wup, F, D);
        T("mlp.down_proj.weight", wdown, D, F);
#undef T
    }
    add_tensor(m, "model.norm.weight", m->w.lnf, 0, D, 0);
    if (!c->tie_word_embeddings) add_tensor(m, "lm_head.weight", m->w.lm_head, 0, V, D);
}

size_t qwen3_param_count(const struct qwen3_config *c) { return layout(c, NULL, NULL); }

struct qwen3 *qwen3_create(const struct qwen3_config *c, char *err, size_t errlen) {
    if (qwen3_config_validate(c, err, errlen)) return NULL;
    struct qwen3 *m = xcalloc(1, sizeof *m);
    m->cfg = *c;
    m->n_params = layout(c, NULL, NULL);
    m->params = calloc(m->n_params, sizeof(float));
    if (!m->params) {
        fail_with(err, errlen, "out of memory for %zu parameters", m->n_params);
        free(m);
        return NULL;
    }
    layout(c, &m->w, m->params);
    build_tensor_table(m);
    return m;
}

void qwen3_free(struct qwen3 *m) {
    if (!m) return;
    free(m->params);
    free(m->grads);
    free(m->tensors);
    free(m->acts);
    free(m->acts_mem);
    free(m->ids);
    free(m->targets);
    free(m->mask);
    free(m->logprobs);
    free(m);
}

struct qwen3 *qwen3_load(const char *dir, char *err, size_t errlen) {
    struct qwen3_config c;
    char *cfg_path = xasprintf("%s/config.json", dir);
    int rc = qwen3_config_load(cfg_path, &c, err, errlen);
    free(cfg_path);
    if (rc) return NULL;
    struct st_dir *st = st_open_dir(dir, err, errlen);
    if (!st) return NULL;
    struct qwen3 *m = qwen3_create(&c, err, errlen);
    if (!m) {
        st_close(st);
        return NULL;
    }
    char why[512];
    for (int i = 0; i < m->n_tensors; i++) {
        const struct qwen3_tensor *t = &m->tensors[i];
        if (st_read_f32(st, t->name, t->ndim, t->shape, m->params + t->offset, why, sizeof why)) {
            fail_with(err, errlen, "%s: %s", dir, why);
            st_close(st);
            qwen3_free(m);
            return NULL;
        }
    }
    st_close(st);
    return m;
}

/* splitmix64: a tiny, well-mixed generator for deterministic init. */
static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void qwen3_init_random(struct qwen3 *m, uint64_t seed, float std) {
    uint64_t s = seed;
    for (int i = 0; i < m->n_tensors; i++) {
        const struct qwen3_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        for (size_t j = 0; j < t->numel; j++) {
            if (!t->is_matrix) {
                p[j] = 1.0f;
                continue;
            }
            /* Box-Muller from two uniforms in (0, 1] */
            double u1 = ((splitmix(&s) >> 11) + 1.0) / 9007199254740992.0;
            double u2 = (splitmix(&s) >> 11) / 9007199254740992.0;
            p[j] = (float)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
        }
    }
}

int qwen3_save(const struct qwen3 *m, const char *dir, enum st_dtype dtype, char *err, size_t errlen) {
    if (mkdir(dir, 0755) && errno != EEXIST) return fail_with(err, errlen, "%s: %s", dir, strerror(errno));
    struct st_item *items = xcalloc((size_t)m->n_tensors, sizeof *items);
    for (int i = 0; i < m->n_tensors; i++) {
        const struct qwen3_tensor *t = &m->tensors[i];
        items[i].name = t->name;
        items[i].data = m->params + t->offset;
        items[i].ndim = t->ndim;
        items[i].shape[0] = t->shape[0];
        items[i].shape[1] = t->shape[1];
    }
    char *path = xasprintf("%s/model.safetensors", dir);
    int rc = st_write(path, items, m->n_tensors, dtype, err, errlen);
    free(path);
    free(items);
    if (rc) return -1;
    char *cfg = qwen3_config_to_json(&m->cfg, dtype == ST_BF16 ? "bfloat16" : "float32");
    path = xasprintf("%s/config.json", dir);
    rc = st_write_text_atomic(path, cfg, err, errlen);
    free(path);
    free(cfg);
    if (rc) return -1;
    char gen[256];
    int o = snprintf(gen, sizeof gen, "{\n  \"_from_model_config\": true");
    if (m->cfg.bos_token_id >= 0) o += snprintf(gen + o, sizeof gen - (size_t)o, ",\n  \"bos_token_id\": %d", m->cfg.bos_token_id);
    if (m->cfg.eos_token_id >= 0) o += snprintf(gen + o, sizeof gen - (size_t)o, ",\n  \"eos_token_id\": %d", m->cfg.eos_token_id);
    snprintf(gen + o, sizeof gen - (size_t)o, "\n}\n");
    path = xasprintf("%s/generation_config.json", dir);
    rc = st_write_text_atomic(path, gen, err, errlen);
    free(path);
    return rc;
}

/* ---- activations ---------------------------------------------------------------- */

struct qwen3_acts {
    float *resid;          /* [L+1, N, D]: resid[0] embeddings, resid[l+1] output of layer l */
    float *xm;             /* [L, N, D] residual after attention */
    float *ln1, *rstd1;    /* [L, N, D], [L, N] */
    float *q, *k, *v;      /* [L, N, qd], [L, N, kvd] x2: projections */
    float *qr, *kr;        /* same: after q_norm/k_norm and RoPE */
    float *qrstd, *krstd;  /* [L, N, Hq], [L, N, Hkv] */
    float *att_lse;        /* [L, B, Hq, T] log-sum-exp of each attention row (the
                            * probabilities are recomputed in backward, not stored) */
    float *ao;             /* [L, N, qd] attention output */
    float *ln2, *rstd2;    /* [L, N, D], [L, N] */
    float *gate, *up, *hm; /* [L, N, F] */
    float *lnf, *rstdf;    /* [N, D], [N] */
    float *logits;         /* [N, V] (turned into dlogits by backward) */
    float *lse;            /* [N] log-sum-exp of each logits row */
    float *rope_cos, *rope_sin; /* [T, hd/2] */
    /* backward scratch */
    float *dres, *dln, *dq, *dk, *dv, *dqr, *dkr, *dao, *dgate, *dup, *dhm, *dp;
};

static size_t plan_acts(const struct qwen3_config *c, int B, int T, int nth, struct qwen3_acts *a, float *base) {
    size_t N = (size_t)B * T, L = (size_t)c->num_layers, D = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    size_t hd = (size_t)c->head_dim, Hq = (size_t)c->num_heads, Hkv = (size_t)c->num_kv_heads;
    size_t qd = Hq * hd, kvd = Hkv * hd, V = (size_t)c->vocab_size, o = 0;
#define A(field, n)                                                                                                    \
    do {                                                                                                               \
        if (a) a->field = base + o;                                                                                    \
        o += (n);                                                                                                      \
    } while (0)
    A(resid, (L + 1) * N * D);
    A(xm, L * N * D);
    A(ln1, L * N * D);
    A(rstd1, L * N);
    A(q, L * N * qd);
    A(k, L * N * kvd);
    A(v, L * N * kvd);
    A(qr, L * N * qd);
    A(kr, L * N * kvd);
    A(qrstd, L * N * Hq);
    A(krstd, L * N * Hkv);
    A(att_lse, L * (size_t)B * Hq * (size_t)T);
    A(ao, L * N * qd);
    A(ln2, L * N * D);
    A(rstd2, L * N);
    A(gate, L * N * F);
    A(up, L * N * F);
    A(hm, L * N * F);
    A(lnf, N * D);
    A(rstdf, N);
    A(logits, N * V);
    A(lse, N);
    A(rope_cos, (size_t)T * hd / 2);
    A(rope_sin, (size_t)T * hd / 2);
    A(dres, N * D);
    A(dln, N * D);
    A(dq, N * qd);
    A(dk, N * kvd);
    A(dv, N * kvd);
    A(dqr, N * qd);
    A(dkr, N * kvd);
    A(dao, N * qd);
    A(dgate, N * F);
    A(dup, N * F);
    A(dhm, N * F);
    A(dp, (size_t)nth * 2 * T);
#undef A
    return o;
}

static int ensure_acts(struct qwen3 *m, int B, int T) {
    size_t need = plan_acts(&m->cfg, B, T, par_threads(), NULL, NULL);
    if (need > m->acts_floats) {
        free(m->acts_mem);
        m->acts_mem = malloc(need * sizeof(float));
        m->acts_floats = m->acts_mem ? need : 0;
        if (!m->acts_mem) return -1;
    }
    if (!m->acts) m->acts = xcalloc(1, sizeof *m->acts);
    plan_acts(&m->cfg, B, T, par_threads(), m->acts, m->acts_mem);
    size_t N = (size_t)B * T;
    if ((int)N > m->cap_BT) {
        m->ids = xrealloc(m->ids, N * sizeof *m->ids);
        m->targets = xrealloc(m->targets, N * sizeof *m->targets);
        m->mask = xrealloc(m->mask, N * sizeof *m->mask);
        m->logprobs = xrealloc(m->logprobs, N * sizeof *m->logprobs);
        m->cap_BT = (int)N;
    }
    m->B = B;
    m->T = T;
    return 0;
}

float *qwen3_logits(struct qwen3 *m) { return m->acts ? m->acts->logits : NULL; }

/* ---- forward --------------------------------------------------------------------- */

struct attn_job {
    const struct qwen3_config *c;
    int B, T;
    const float *qr, *kr, *v, *dao;
    float *lse, *ao, *dqr, *dkr, *dv, *dp; /* dp: 2*T scratch floats per thread */
};

/* Causal attention for (b, h) pairs: p = softmax(q.k^T * hd^-1/2) over
 * positions <= t, ao = p . v. Query head h reads kv head h / (Hq/Hkv).
 * Only each row's log-sum-exp is kept for backward (as flash attention
 * does): B*H*T floats per layer instead of B*H*T*T. */
static inline __attribute__((always_inline)) void attn_fwd_body(void *p, int tid, int nth) {
    struct attn_job *j = p;
    const struct qwen3_config *c = j->c;
    int T = j->T, hd = c->head_dim, Hq = c->num_heads, grp = c->num_heads / c->num_kv_heads;
    int qd = Hq * hd, kvd = c->num_kv_heads * hd;
    float scale = 1.0f / sqrtf((float)hd);
    long u0, u1;
    par_range((long)j->B * Hq, 1, tid, nth, &u0, &u1);
    for (long u = u0; u < u1; u++) {
        int b = (int)(u / Hq), h = (int)(u % Hq), kh = h / grp;
        for (int t = 0; t < T; t++) {
            const float *q = j->qr + ((size_t)b * T + t) * qd + (size_t)h * hd;
            float *arow = j->dp + (size_t)tid * 2 * T;
            float mx, sum;
            scaled_scores(arow, 0, q, 1, j->kr + (size_t)b * T * kvd + (size_t)kh * hd, (size_t)kvd, t + 1, hd, scale);
            softmax_row(arow, t + 1, &mx, &sum);
            j->lse[((size_t)b * Hq + h) * T + t] = mx + logf(sum);
            weighted_sum_rows(j->ao + ((size_t)b * T + t) * qd + (size_t)h * hd, arow,
                              j->v + (size_t)b * T * kvd + (size_t)kh * hd, (size_t)kvd, t + 1, hd);
        }
    }
}

/* Backward of the above for (b, kv head) pairs, so that the query heads
 * sharing a kv head add into dk/dv from one thread:
 *   p[t2] = exp(q.k[t2] * scale - lse[t])               (recomputed)
 *   dp[t2] = dao[t].v[t2];  dv[t2] += p[t2] dao[t]
 *   ds[t2] = p[t2] (dp[t2] - sum_j p[j] dp[j])          (softmax backward)
 *   dq[t] += scale sum_t2 ds[t2] k[t2];  dk[t2] += scale ds[t2] q[t] */
static inline __attribute__((always_inline)) void attn_bwd_body(void *p, int tid, int nth) {
    struct attn_job *j = p;
    const struct qwen3_config *c = j->c;
    int T = j->T, hd = c->head_dim, Hq = c->num_heads, Hkv = c->num_kv_heads, grp = Hq / Hkv;
    int qd = Hq * hd, kvd = Hkv * hd;
    float scale = 1.0f / sqrtf((float)hd), *arow = j->dp + (size_t)tid * 2 * T, *dp = arow + T;
    long u0, u1;
    par_range((long)j->B * Hkv, 1, tid, nth, &u0, &u1);
    for (long u = u0; u < u1; u++) {
        int b = (int)(u / Hkv), kh = (int)(u % Hkv);
        for (int h = kh * grp; h < (kh + 1) * grp; h++)
            for (int t = 0; t < T; t++) {
                const float *dout = j->dao + ((size_t)b * T + t) * qd + (size_t)h * hd;
                const float *q = j->qr + ((size_t)b * T + t) * qd + (size_t)h * hd;
                float *dq = j->dqr + ((size_t)b * T + t) * qd + (size_t)h * hd;
                float lse = j->lse[((size_t)b * Hq + h) * T + t], dot = 0;
                const float *k0 = j->kr + (size_t)b * T * kvd + (size_t)kh * hd;
                const float *v0 = j->v + (size_t)b * T * kvd + (size_t)kh * hd;
                int t2 = 0;
                for (; t2 + 8 <= t + 1; t2 += 8) { /* eight keys and values at a time (same bits) */
                    float d[8];
                    dot_f32_rows8(d, q, k0 + (size_t)t2 * kvd, (size_t)kvd, hd);
                    for (int r = 0; r < 8; r++) arow[t2 + r] = d[r] * scale - lse;
                    dot_f32_rows8(dp + t2, dout, v0 + (size_t)t2 * kvd, (size_t)kvd, hd);
                }
                for (; t2 <= t; t2++) {
                    arow[t2] = dot_f32(q, k0 + (size_t)t2 * kvd, hd) * scale - lse;
                    dp[t2] = dot_f32(dout, v0 + (size_t)t2 * kvd, hd);
                }
                expf_rows(arow, arow, t + 1);
                for (t2 = 0; t2 <= t; t2++) {
                    size_t kv = ((size_t)b * T + t2) * kvd + (size_t)kh * hd;
                    float *dv = j->dv + kv, pr = arow[t2];
                    for (int i = 0; i < hd; i++) dv[i] += pr * dout[i];
                    dot += pr * dp[t2];
                }
                /* ds, in place of p; then dq += sum ds[t2] k[t2] (in registers, in
                 * order of t2) and dk[t2] += ds[t2] q */
                for (t2 = 0; t2 <= t; t2++) arow[t2] = arow[t2] * (dp[t2] - dot) * scale;
                add_weighted_rows(dq, arow, k0, (size_t)kvd, t + 1, hd);
                for (t2 = 0; t2 <= t; t2++) {
                    float ds = arow[t2], *dk = j->dkr + ((size_t)b * T + t2) * kvd + (size_t)kh * hd;
                    for (int i = 0; i < hd; i++) dk[i] += ds * q[i];
                }
            }
    }
}

/* Attention is the one O(T^2) part: like the matmuls it is compiled twice,
 * for AVX2+FMA and portable, and picked at run time. */
static void attn_fwd_generic(void *p, int tid, int nth) { attn_fwd_body(p, tid, nth); }
__attribute__((target("avx2,fma"))) static void attn_fwd_avx2(void *p, int tid, int nth) { attn_fwd_body(p, tid, nth); }
static void attn_bwd_generic(void *p, int tid, int nth) { attn_bwd_body(p, tid, nth); }
__attribute__((target("avx2,fma"))) static void attn_bwd_avx2(void *p, int tid, int nth) { attn_bwd_body(p, tid, nth); }
static void attn_fwd_worker(void *p, int tid, int nth) {
    if (mm_have_avx2()) attn_fwd_avx2(p, tid, nth);
    else attn_fwd_generic(p, tid, nth);
}
static void attn_bwd_worker(void *p, int tid, int nth) {
    if (mm_have_avx2()) attn_bwd_avx2(p, tid, nth);
    else attn_bwd_generic(p, tid, nth);
}

struct rows_job {
    const struct qwen3_config *c;
    int n, T, heads, width; /* rows, sequence length, heads per row, row width */
    const float *x, *w;
    float *y, *rstd;
    const float *cosv, *sinv;
    const float *dy;
    float *dx;
    const float *gate, *up;
    float *hm, *dgate, *dup;
    const int *pos; /* inference: position of each row (NULL: row % T) */
};

static void rmsnorm_worker(void *p, int tid, int nth) {
    struct rows_job *j = p;
    long r0, r1;
    par_range(j->n, 1, tid, nth, &r0, &r1);
    for (long r = r0; r < r1; r++) {
        size_t D = (size_t)j->c->hidden_size;
        float rs = rmsnorm_row(j->y + r * D, j->x + r * D, j->w, (int)D, j->c->rms_norm_eps);
        if (j->rstd) j->rstd[r] = rs;
    }
}

void qwen3_rmsnorm(const struct qwen3_config *c, float *y, float *rstd, const float *x, const float *w, int n) {
    struct rows_job j = {.c = c, .n = n, .x = x, .w = w, .y = y, .rstd = rstd};
    par_run(rmsnorm_worker, &j);
}

/* q_norm/k_norm then RoPE on each head of each row. */
static void headnorm_rope_worker(void *p, int tid, int nth) {
    struct rows_job *j = p;
    int hd = j->c->head_dim, H = j->heads;
    long r0, r1;
    par_range(j->n, 1, tid, nth, &r0, &r1);
    for (long r = r0; r < r1; r++) {
        int pos = j->pos ? j->pos[r] : (int)(r % j->T);
        for (int h = 0; h < H; h++) {
            size_t o = ((size_t)r * H + h) * hd;
            float rs = rmsnorm_row(j->y + o, j->x + o, j->w, hd, j->c->rms_norm_eps);
            if (j->rstd) j->rstd[(size_t)r * H + h] = rs;
            rope_row(j->y + o, hd, j->cosv + (size_t)pos * (hd / 2), j->sinv + (size_t)pos * (hd / 2));
        }
    }
}

void qwen3_headnorm_rope(const struct qwen3_config *c, float *y, float *rstd, const float *x, const float *w, int n,
                         int heads, const int *pos, int T, const float *cosv, const float *sinv) {
    struct rows_job j = {.c = c, .n = n, .T = T, .heads = heads, .x = x, .w = w, .y = y, .rstd = rstd,
                         .cosv = cosv, .sinv = sinv, .pos = pos};
    par_run(headnorm_rope_worker, &j);
}

/* Exponentials taken a block at a time through expf_rows (a stack buffer
 * of EXP_BLOCK floats). */
enum { EXP_BLOCK = 256 };

/* e[k] = expf(-gate[b + k]) for the block of up to EXP_BLOCK elements from
 * b (before end); returns its length. */
static int gate_exp_block(float *e, const float *gate, long b, long end) {
    int n = end - b < EXP_BLOCK ? (int)(end - b) : EXP_BLOCK;
    for (int k = 0; k < n; k++) e[k] = -gate[b + k];
    expf_rows(e, e, n);
    return n;
}

static void swiglu_worker(void *p, int tid, int nth) {
    struct rows_job *j = p;
    long i0, i1;
    par_range((long)j->n * j->c->intermediate_size, 16, tid, nth, &i0, &i1);
    float e[EXP_BLOCK];
    for (long b = i0; b < i1; b += EXP_BLOCK) {
        int n = gate_exp_block(e, j->gate, b, i1);
        for (int k = 0; k < n; k++) {
            float g = j->gate[b + k];
            j->hm[b + k] = g / (1.0f + e[k]) * j->up[b + k];
        }
    }
}

void qwen3_swiglu(const struct qwen3_config *c, float *hm, const float *gate, const float *up, int n) {
    struct rows_job j = {.c = c, .n = n, .gate = gate, .up = up, .hm = hm};
    par_run(swiglu_worker, &j);
}

/* RoPE angles as transformers computes them: inv_freq and pos * inv_freq in
 * fp32, then cos/sin of that fp32 angle. */
void qwen3_rope_table(const struct qwen3_config *c, int T, float *cosv, float *sinv) {
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        float inv = (float)(1.0 / pow(c->rope_theta, (double)(2 * i) / c->head_dim));
        for (int t = 0; t < T; t++) {
            float ang = (float)t * inv;
            cosv[(size_t)t * half + i] = (float)cos((double)ang);
            sinv[(size_t)t * half + i] = (float)sin((double)ang);
        }
    }
}

static void add_inplace(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* Cross-entropy pieces per row: lse and logp of the target. */
static void xent_worker(void *p, int tid, int nth) {
    struct qwen3 *m = p;
    struct qwen3_acts *a = m->acts;
    int V = m->cfg.vocab_size;
    long r0, r1;
    par_range((long)m->B * m->T, 1, tid, nth, &r0, &r1);
    for (long r = r0; r < r1; r++) {
        const float *l = a->logits + (size_t)r * V;
        float mx = -INFINITY;
        for (int i = 0; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        double s = 0;
        float e[EXP_BLOCK]; /* exponentials a block at a time, added in order */
        for (int b = 0; b < V; b += EXP_BLOCK) {
            int n = V - b < EXP_BLOCK ? V - b : EXP_BLOCK;
            for (int k = 0; k < n; k++) e[k] = l[b + k] - mx;
            expf_rows(e, e, n);
            for (int k = 0; k < n; k++) s += e[k];
        }
        a->lse[r] = mx + (float)log(s);
        int t = m->targets[r];
        m->logprobs[r] = t >= 0 ? l[t] - a->lse[r] : 0.0f;
    }
}

float qwen3_forward(struct qwen3 *m, const int32_t *ids, const int32_t *targets, const float *mask, int B, int T) {
    const struct qwen3_config *c = &m->cfg;
    if (B <= 0 || T <= 0 || (long)B * T > (1L << 30)) return NAN;
    for (long i = 0; i < (long)B * T; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size || (targets && targets[i] >= c->vocab_size)) return NAN;
    if (ensure_acts(m, B, T)) return NAN;
    struct qwen3_acts *a = m->acts;
    int N = B * T, D = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    int qd = c->num_heads * hd, kvd = c->num_kv_heads * hd, V = c->vocab_size;
    memcpy(m->ids, ids, (size_t)N * sizeof *ids);
    qwen3_rope_table(c, T, a->rope_cos, a->rope_sin);

    for (int n = 0; n < N; n++) memcpy(a->resid + (size_t)n * D, m->w.embed + (size_t)ids[n] * D, (size_t)D * 4);
    for (int l = 0; l < c->num_layers; l++) {
        size_t ND = (size_t)N * D;
        float *x = a->resid + l * ND, *out = a->resid + (l + 1) * ND;
        float *ln1 = a->ln1 + l * ND, *xm = a->xm + l * ND, *ln2 = a->ln2 + l * ND;
        float *q = a->q + (size_t)l * N * qd, *k = a->k + (size_t)l * N * kvd, *v = a->v + (size_t)l * N * kvd;
        float *qr = a->qr + (size_t)l * N * qd, *kr = a->kr + (size_t)l * N * kvd, *ao = a->ao + (size_t)l * N * qd;
        float *gate = a->gate + (size_t)l * N * F, *up = a->up + (size_t)l * N * F, *hm = a->hm + (size_t)l * N * F;

        qwen3_rmsnorm(c, ln1, a->rstd1 + (size_t)l * N, x, m->w.ln1 + (size_t)l * D, N);
        mm_nt(q, ln1, m->w.wq + (size_t)l * qd * D, N, qd, D, 0);
        mm_nt(k, ln1, m->w.wk + (size_t)l * kvd * D, N, kvd, D, 0);
        mm_nt(v, ln1, m->w.wv + (size_t)l * kvd * D, N, kvd, D, 0);
        qwen3_headnorm_rope(c, qr, a->qrstd + (size_t)l * N * c->num_heads, q, m->w.qnorm + (size_t)l * hd, N,
                            c->num_heads, NULL, T, a->rope_cos, a->rope_sin);
        qwen3_headnorm_rope(c, kr, a->krstd + (size_t)l * N * c->num_kv_heads, k, m->w.knorm + (size_t)l * hd, N,
                            c->num_kv_heads, NULL, T, a->rope_cos, a->rope_sin);
        struct attn_job aj = {.c = c, .B = B, .T = T, .qr = qr, .kr = kr, .v = v,
                              .lse = a->att_lse + (size_t)l * B * c->num_heads * T, .ao = ao, .dp = a->dp};
        par_run(attn_fwd_worker, &aj);
        mm_nt(xm, ao, m->w.wo + (size_t)l * D * qd, N, D, qd, 0);
        add_inplace(xm, x, ND);
        qwen3_rmsnorm(c, ln2, a->rstd2 + (size_t)l * N, xm, m->w.ln2 + (size_t)l * D, N);
        mm_nt(gate, ln2, m->w.wgate + (size_t)l * F * D, N, F, D, 0);
        mm_nt(up, ln2, m->w.wup + (size_t)l * F * D, N, F, D, 0);
        qwen3_swiglu(c, hm, gate, up, N);
        mm_nt(out, hm, m->w.wdown + (size_t)l * D * F, N, D, F, 0);
        add_inplace(out, xm, ND);
    }
    qwen3_rmsnorm(c, a->lnf, a->rstdf, a->resid + (size_t)c->num_layers * N * D, m->w.lnf, N);
    mm_nt(a->logits, a->lnf, m->w.lm_head, N, V, D, 0);

    m->loss = 0;
    if (!targets) {
        for (int i = 0; i < N; i++) m->targets[i] = -1, m->mask[i] = 0, m->logprobs[i] = 0;
        return 0;
    }
    memcpy(m->targets, targets, (size_t)N * sizeof *targets);
    for (int i = 0; i < N; i++) m->mask[i] = targets[i] < 0 ? 0.0f : mask ? mask[i] : 1.0f;
    par_run(xent_worker, m);
    double num = 0, den = 0;
    for (int i = 0; i < N; i++) num -= (double)m->mask[i] * m->logprobs[i], den += m->mask[i];
    m->loss = den > 0 ? (float)(num / den) : 0.0f;
    return m->loss;
}

int qwen3_logprobs(struct qwen3 *m, const int32_t *ids, const int32_t *targets, int B, int T, float *out) {
    if (isnan(qwen3_forward(m, ids, targets, NULL, B, T))) return -1;
    memcpy(out, m->logprobs, (size_t)B * T * sizeof *out);
    return 0;
}

/* ---- backward -------------------------------------------------------------------- */

void qwen3_zero_grad(struct qwen3 *m) {
    if (!m->grads) {
        m->grads = calloc(m->n_params, sizeof(float));
        if (!m->grads) abort(); /* as xmalloc: out of memory is not recoverable here */
        layout(&m->cfg, &m->g, m->grads);
    } else {
        memset(m->grads, 0, m->n_params * sizeof(float));
    }
}

/* dx += RMSNorm backward; dw += sum over rows of dy * xhat (serial: rows
 * would race on dw, and this is O(N*D), negligible beside the matmuls). */
static void rmsnorm_bwd_worker(void *p, int tid, int nth) {
    struct rows_job *j = p;
    int D = j->width;
    long r0, r1;
    par_range(j->n, 1, tid, nth, &r0, &r1);
    for (long r = r0; r < r1; r++)
        rmsnorm_row_bwd(j->dx + r * D, j->dy + r * D, j->x + r * D, j->w, j->rstd[r], D);
}

static void rmsnorm_bwd(const struct qwen3_config *c, float *dx, float *dw, const float *dy, const float *x,
                        const float *w, const float *rstd, int n, int D) {
    struct rows_job j = {.c = c, .n = n, .width = D, .x = x, .w = w, .rstd = (float *)rstd, .dy = dy, .dx = dx};
    par_run(rmsnorm_bwd_worker, &j);
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * D, *dyr = dy + (size_t)r * D;
        float rs = rstd[r];
        for (int i = 0; i < D; i++) dw[i] += dyr[i] * xr[i] * rs;
    }
}

/* RoPE backward (rotate back) in place, per head of each row. */
static void rope_bwd_worker(void *p, int tid, int nth) {
    struct rows_job *j = p;
    int hd = j->c->head_dim, half = hd / 2;
    long r0, r1;
    par_range(j->n, 1, tid, nth, &r0, &r1);
    for (long r = r0; r < r1; r++) {
        int pos = (int)(r % j->T);
        for (int h = 0; h < j->heads; h++)
            rope_row_bwd(j->dx + ((size_t)r * j->heads + h) * hd, hd, j->cosv + (size_t)pos * half,
                         j->sinv + (size_t)pos * half);
    }
}

static void swiglu_bwd_worker(void *p, int tid, int nth) {
    struct rows_job *j = p;
    long i0, i1;
    par_range((long)j->n * j->c->intermediate_size, 16, tid, nth, &i0, &i1);
    float e[EXP_BLOCK];
    for (long b = i0; b < i1; b += EXP_BLOCK) {
        int n = gate_exp_block(e, j->gate, b, i1);
        for (int k = 0; k < n; k++) {
            long i = b + k;
            /* h = silu(g) u, silu(g) = g s, s = sigmoid(g), silu' = s (1 + g (1 - s)) */
            float g = j->gate[i], s = 1.0f / (1.0f + e[k]), dh = j->dy[i];
            j->dup[i] = dh * g * s;
            j->dgate[i] = dh * j->up[i] * s * (1.0f + g * (1.0f - s));
        }
    }
}

/* The gradient at the logits of one row, in place over the logits.
 *
 * With z the row's logits, p = softmax(z), lse = log sum_i exp(z_i) and
 * log p_i = z_i - lse, the row contributes
 *     f = coef * log p_target + w * H,   H = -sum_i p_i log p_i
 * (coef = dJ/dlogp of the target, w = dJ/dH, the entropy bonus' weight).
 *
 *   d log p_target / dz_i = onehot_i(target) - p_i
 *   dH / dz_i: dp_j/dz_i = p_j (onehot_ij - p_i), so
 *     dH/dz_i = -sum_j (log p_j + 1) p_j (onehot_ij - p_i)
 *             = -p_i (log p_i + 1) + p_i sum_j p_j (log p_j + 1)
 *             = -p_i (log p_i + 1) + p_i (1 - H)
 *             = -p_i (log p_i + H)
 *
 * so df/dz_i = coef (onehot_i - p_i) - w p_i (log p_i + H). H needs one
 * pass over the row (lse is known from the forward), then the write pass
 * computes p_i once and both terms from it: rows without an entropy weight
 * cost what they did before (one pass), rows with one a second read. */
struct dlogits_job {
    struct qwen3 *m;
    const float *coef, *went; /* went may be NULL: no entropy term */
};

static void dlogits_worker(void *p, int tid, int nth) {
    struct dlogits_job *j = p;
    struct qwen3 *m = j->m;
    struct qwen3_acts *a = m->acts;
    int V = m->cfg.vocab_size;
    long r0, r1;
    par_range((long)m->B * m->T, 1, tid, nth, &r0, &r1);
    for (long r = r0; r < r1; r++) {
        float *l = a->logits + (size_t)r * V;
        int t = m->targets[r];
        float coef = t >= 0 ? j->coef[r] : 0.0f, w = j->went ? j->went[r] : 0.0f;
        if (coef == 0 && w == 0) {
            memset(l, 0, (size_t)V * sizeof *l);
            continue;
        }
        float lse = a->lse[r];
        if (w == 0) {
            for (int i = 0; i < V; i++) l[i] -= lse;
            expf_rows(l, l, V);
            for (int i = 0; i < V; i++) l[i] = -coef * l[i];
        } else {
            double H = 0; /* -sum p log p, in double: V terms */
            for (int i = 0; i < V; i++) {
                float lp = l[i] - lse;
                H -= (double)expf(lp) * lp;
            }
            float h = (float)H;
            for (int i = 0; i < V; i++) {
                float lp = l[i] - lse, pi = expf(lp);
                l[i] = -coef * pi - w * pi * (lp + h);
            }
        }
        if (t >= 0) l[t] += coef;
    }
}

static int backward_core(struct qwen3 *m, const float *coef, const float *went) {
    const struct qwen3_config *c = &m->cfg;
    struct qwen3_acts *a = m->acts;
    if (!a || !m->B) return -1;
    if (!m->grads) qwen3_zero_grad(m);
    int B = m->B, T = m->T, N = B * T, D = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    int Hq = c->num_heads, Hkv = c->num_kv_heads, qd = Hq * hd, kvd = Hkv * hd, V = c->vocab_size;
    size_t ND = (size_t)N * D;

    struct dlogits_job dj = {m, coef, went};
    par_run(dlogits_worker, &dj);

    /* lm_head and final norm */
    memset(a->dln, 0, ND * 4);
    mm_nn(a->dln, a->logits, m->w.lm_head, N, D, V);
    mm_tn(m->g.lm_head, a->logits, a->lnf, V, D, N);
    memset(a->dres, 0, ND * 4);
    rmsnorm_bwd(c, a->dres, m->g.lnf, a->dln, a->resid + (size_t)c->num_layers * ND, m->w.lnf, a->rstdf, N, D);

    for (int l = c->num_layers - 1; l >= 0; l--) {
        const float *x = a->resid + l * ND, *ln1 = a->ln1 + l * ND, *xm = a->xm + l * ND, *ln2 = a->ln2 + l * ND;
        const float *q = a->q + (size_t)l * N * qd, *k = a->k + (size_t)l * N * kvd;
        const float *v = a->v + (size_t)l * N * kvd;
        const float *qr = a->qr + (size_t)l * N * qd, *kr = a->kr + (size_t)l * N * kvd;
        const float *ao = a->ao + (size_t)l * N * qd;
        const float *gate = a->gate + (size_t)l * N * F, *up = a->up + (size_t)l * N * F;
        const float *hm = a->hm + (size_t)l * N * F;

        /* MLP: out = xm + down(hm) */
        memset(a->dhm, 0, (size_t)N * F * 4);
        mm_nn(a->dhm, a->dres, m->w.wdown + (size_t)l * D * F, N, F, D);
        mm_tn(m->g.wdown + (size_t)l * D * F, a->dres, hm, D, F, N);
        struct rows_job sj = {.c = c, .n = N, .gate = gate, .up = up, .dy = a->dhm, .dgate = a->dgate, .dup = a->dup};
        par_run(swiglu_bwd_worker, &sj);
        memset(a->dln, 0, ND * 4);
        mm_nn(a->dln, a->dgate, m->w.wgate + (size_t)l * F * D, N, D, F);
        mm_nn(a->dln, a->dup, m->w.wup + (size_t)l * F * D, N, D, F);
        mm_tn(m->g.wgate + (size_t)l * F * D, a->dgate, ln2, F, D, N);
        mm_tn(m->g.wup + (size_t)l * F * D, a->dup, ln2, F, D, N);
        rmsnorm_bwd(c, a->dres, m->g.ln2 + (size_t)l * D, a->dln, xm, m->w.ln2 + (size_t)l * D,
                    a->rstd2 + (size_t)l * N, N, D);

        /* attention: xm = x + o_proj(ao) */
        memset(a->dao, 0, (size_t)N * qd * 4);
        mm_nn(a->dao, a->dres, m->w.wo + (size_t)l * D * qd, N, qd, D);
        mm_tn(m->g.wo + (size_t)l * D * qd, a->dres, ao, D, qd, N);
        memset(a->dqr, 0, (size_t)N * qd * 4);
        memset(a->dkr, 0, (size_t)N * kvd * 4);
        memset(a->dv, 0, (size_t)N * kvd * 4);
        struct attn_job aj = {.c = c, .B = B, .T = T, .qr = qr, .kr = kr, .v = v, .dao = a->dao,
                              .lse = a->att_lse + (size_t)l * B * Hq * T, .dqr = a->dqr, .dkr = a->dkr,
                              .dv = a->dv, .dp = a->dp};
        par_run(attn_bwd_worker, &aj);
        /* RoPE back, then the per-head norms */
        struct rows_job rq = {.c = c, .n = N, .T = T, .heads = Hq, .dx = a->dqr, .cosv = a->rope_cos,
                              .sinv = a->rope_sin};
        par_run(rope_bwd_worker, &rq);
        struct rows_job rk = rq;
        rk.heads = Hkv;
        rk.dx = a->dkr;
        par_run(rope_bwd_worker, &rk);
        memset(a->dq, 0, (size_t)N * qd * 4);
        memset(a->dk, 0, (size_t)N * kvd * 4);
        rmsnorm_bwd(c, a->dq, m->g.qnorm + (size_t)l * hd, a->dqr, q, m->w.qnorm + (size_t)l * hd,
                    a->qrstd + (size_t)l * N * Hq, N * Hq, hd);
        rmsnorm_bwd(c, a->dk, m->g.knorm + (size_t)l * hd, a->dkr, k, m->w.knorm + (size_t)l * hd,
                    a->krstd + (size_t)l * N * Hkv, N * Hkv, hd);
        memset(a->dln, 0, ND * 4);
        mm_nn(a->dln, a->dq, m->w.wq + (size_t)l * qd * D, N, D, qd);
        mm_nn(a->dln, a->dk, m->w.wk + (size_t)l * kvd * D, N, D, kvd);
        mm_nn(a->dln, a->dv, m->w.wv + (size_t)l * kvd * D, N, D, kvd);
        mm_tn(m->g.wq + (size_t)l * qd * D, a->dq, ln1, qd, D, N);
        mm_tn(m->g.wk + (size_t)l * kvd * D, a->dk, ln1, kvd, D, N);
        mm_tn(m->g.wv + (size_t)l * kvd * D, a->dv, ln1, kvd, D, N);
        rmsnorm_bwd(c, a->dres, m->g.ln1 + (size_t)l * D, a->dln, x, m->w.ln1 + (size_t)l * D,
                    a->rstd1 + (size_t)l * N, N, D);
    }
    for (int n = 0; n < N; n++) add_inplace(m->g.embed + (size_t)m->ids[n] * D, a->dres + (size_t)n * D, (size_t)D);
    m->B = 0; /* the logits were consumed: a second backward needs a new forward */
    return 0;
}

int qwen3_backward(struct qwen3 *m) {
    if (!m->acts || !m->B) return -1;
    int N = m->B * m->T;
    double den = 0;
    for (int i = 0; i < N; i++) den += m->mask[i];
    float *coef = xmalloc((size_t)N * sizeof *coef);
    for (int i = 0; i < N; i++) coef[i] = den > 0 ? (float)(-m->mask[i] / den) : 0.0f;
    int rc = backward_core(m, coef, NULL);
    free(coef);
    return rc;
}

int qwen3_backward_logprobs(struct qwen3 *m, const float *coef) { return backward_core(m, coef, NULL); }

int qwen3_backward_logprobs_entropy(struct qwen3 *m, const float *coef, const float *went) {
    return backward_core(m, coef, went);
}
