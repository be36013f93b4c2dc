/*
 * infer.cu - KV-cache inference on the GPU (qwen3_infer.c's contract) and
 * generation (sample.c's qwen3_generate, with the GPU forward).
 *
 * One call takes n rows, each a token for a slot; all rows go through each
 * layer together (one matmul per projection over every row), so a decode
 * step for hundreds of sequences is one batched pass. Each row's key (after
 * k_norm and RoPE) and value go into its slot's cache before attention, and
 * the row then attends to positions 0..pos of its slot.
 */
#include "qwen3_cuda_internal.cuh"

#include <stdlib.h>
#include <string.h>

extern "C" struct qwen3_cuda_kv *qwen3_cuda_kv_create(struct qwen3_cuda *g, int n_slots, int max_T, char *err,
                                                      size_t errlen) {
    const struct qwen3_config *c = &g->cfg;
    if (n_slots <= 0 || max_T <= 0) {
        snprintf(err, errlen, "kv cache: need at least one slot and one position");
        return NULL;
    }
    struct qwen3_cuda_kv *kv = (struct qwen3_cuda_kv *)calloc(1, sizeof *kv);
    if (!kv) {
        snprintf(err, errlen, "out of host memory");
        return NULL;
    }
    kv->n_slots = n_slots;
    kv->max_T = max_T;
    kv->len = (int *)calloc((size_t)n_slots, sizeof *kv->len);
    size_t per = (size_t)c->num_layers * n_slots * max_T * c->num_kv_heads * c->head_dim;
    size_t half = (size_t)max_T * c->head_dim / 2;
    if (!kv->len || dalloc(g, (void **)&kv->k, per * 2, "kv cache keys") ||
        dalloc(g, (void **)&kv->v, per * 2, "kv cache values") ||
        dalloc(g, (void **)&kv->rope_cos, half * 4, "rope table") ||
        dalloc(g, (void **)&kv->rope_sin, half * 4, "rope table") ||
        upload_rope(g, kv->rope_cos, kv->rope_sin, max_T)) {
        snprintf(err, errlen, "%s", g->err[0] ? g->err : "out of host memory");
        qwen3_cuda_kv_free(kv);
        return NULL;
    }
    return kv;
}

extern "C" void qwen3_cuda_kv_free(struct qwen3_cuda_kv *kv) {
    if (!kv) return;
    void *p[] = {kv->k, kv->v, kv->rope_cos, kv->rope_sin, kv->scratch};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        if (p[i]) cudaFree(p[i]);
    free(kv->len);
    free(kv);
}

extern "C" void qwen3_cuda_kv_reset(struct qwen3_cuda_kv *kv, int slot) {
    if (slot >= 0 && slot < kv->n_slots) kv->len[slot] = 0;
}

extern "C" void qwen3_cuda_kv_truncate(struct qwen3_cuda_kv *kv, int slot, int len) {
    /* the rows past len are simply overwritten by the next forward */
    if (slot >= 0 && slot < kv->n_slots && len < kv->len[slot]) kv->len[slot] = len < 0 ? 0 : len;
}

extern "C" int qwen3_cuda_kv_len(const struct qwen3_cuda_kv *kv, int slot) {
    return slot >= 0 && slot < kv->n_slots ? kv->len[slot] : -1;
}

struct kv_scratch {
    float *x, *xw, *logits;
    bf16 *ln, *q, *k, *v, *qr, *kr, *ao, *gate, *up, *hm;
    int32_t *ids;
    int *pos, *wrows;
    int64_t *row0, *dst;
};

static size_t cv(char *base, size_t *o, size_t bytes, void **out) {
    size_t at = (*o + 255) & ~(size_t)255;
    if (out) *out = base ? base + at : NULL;
    *o = at + bytes;
    return at;
}

static size_t plan_kv(const struct qwen3_config *c, int n, struct kv_scratch *s, char *base) {
    size_t R = (size_t)n, D = (size_t)c->hidden_size, F = (size_t)c->intermediate_size, V = (size_t)c->vocab_size;
    size_t qd = (size_t)c->num_heads * c->head_dim, kvd = (size_t)c->num_kv_heads * c->head_dim, o = 0;
    struct kv_scratch d;
    if (!s) s = &d;
#define C(f, cnt, type) cv(base, &o, (cnt) * sizeof(type), (void **)&s->f)
    C(x, R * D, float);
    C(xw, R * D, float);
    C(logits, R * V, float);
    C(ln, R * D, bf16);
    C(q, R * qd, bf16);
    C(k, R * kvd, bf16);
    C(v, R * kvd, bf16);
    C(qr, R * qd, bf16);
    C(kr, R * kvd, bf16);
    C(ao, R * qd, bf16);
    C(gate, R * F, bf16);
    C(up, R * F, bf16);
    C(hm, R * F, bf16);
    C(ids, R, int32_t);
    C(pos, R, int);
    C(wrows, R, int);
    C(row0, R, int64_t);
    C(dst, R, int64_t);
#undef C
    return o + 256;
}

extern "C" int qwen3_cuda_kv_forward(struct qwen3_cuda *g, struct qwen3_cuda_kv *kv, const int32_t *token,
                                     const int *slot, int n, const uint8_t *want, float *logits_out, char *err,
                                     size_t errlen) {
    const struct qwen3_config *c = &g->cfg;
    int D = c->hidden_size, F = c->intermediate_size, hd = c->head_dim, V = c->vocab_size;
    int Hq = c->num_heads, Hkv = c->num_kv_heads, qd = Hq * hd, kvd = Hkv * hd;
    float eps = c->rms_norm_eps;
    cudaStream_t st = g->st;
    struct wptr *w = &g->w;
    g->err[0] = 0;
    if (n <= 0) return snprintf(err, errlen, "kv forward: no tokens"), -1;
    if (n > kv->cap) {
        if (kv->scratch) cudaFree(kv->scratch);
        kv->scratch = NULL;
        kv->cap = 0;
        size_t bytes = plan_kv(c, n, NULL, NULL);
        if (dalloc(g, (void **)&kv->scratch, bytes, "kv forward scratch"))
            return snprintf(err, errlen, "%s", g->err), -1;
        kv->cap = n;
    }
    struct kv_scratch s;
    plan_kv(c, n, &s, kv->scratch);
    /* positions: the slot's length plus earlier rows of the same slot (host) */
    int *pos = (int *)malloc((size_t)n * (2 * sizeof(int) + 2 * sizeof(int64_t)));
    if (!pos) return snprintf(err, errlen, "out of host memory"), -1;
    int *wrows = pos + n;
    int64_t *row0 = (int64_t *)(wrows + n), *dst = row0 + n;
    int nw = 0, rc = -1;
    for (int i = 0; i < n; i++) {
        if (slot[i] < 0 || slot[i] >= kv->n_slots) {
            snprintf(err, errlen, "kv forward: bad slot %d", slot[i]);
            goto out;
        }
        if (token[i] < 0 || token[i] >= V) {
            snprintf(err, errlen, "kv forward: token id %d out of range", token[i]);
            goto out;
        }
        int p = kv->len[slot[i]];
        for (int j = 0; j < i; j++) p += slot[j] == slot[i];
        if (p >= kv->max_T) {
            snprintf(err, errlen, "kv forward: slot %d is full (%d positions)", slot[i], kv->max_T);
            goto out;
        }
        pos[i] = p;
        row0[i] = (int64_t)slot[i] * kv->max_T;
        dst[i] = row0[i] + p;
        if (!want || want[i]) wrows[nw++] = i;
    }
    cudaMemcpyAsync(s.ids, token, (size_t)n * 4, cudaMemcpyHostToDevice, st);
    cudaMemcpyAsync(s.pos, pos, (size_t)n * sizeof(int), cudaMemcpyHostToDevice, st);
    cudaMemcpyAsync(s.wrows, wrows, (size_t)(nw ? nw : 1) * sizeof(int), cudaMemcpyHostToDevice, st);
    cudaMemcpyAsync(s.row0, row0, (size_t)n * 8, cudaMemcpyHostToDevice, st);
    cudaMemcpyAsync(s.dst, dst, (size_t)n * 8, cudaMemcpyHostToDevice, st);
    k_embed_fwd(st, s.x, s.ids, w->embed_b, n, D);
    for (int l = 0; l < c->num_layers; l++) {
        size_t lc = (size_t)l * kv->n_slots * kv->max_T * kvd; /* this layer's cache */
        k_rmsnorm_fwd(st, s.ln, NULL, s.x, w->ln1 + (size_t)l * D, n, D, eps);
        if (mm(&g->mm, st, s.q, 0, s.ln, 0, w->wq_b + (size_t)l * qd * D, 1, n, qd, D, 0, NULL) ||
            mm(&g->mm, st, s.k, 0, s.ln, 0, w->wk_b + (size_t)l * kvd * D, 1, n, kvd, D, 0, NULL) ||
            mm(&g->mm, st, s.v, 0, s.ln, 0, w->wv_b + (size_t)l * kvd * D, 1, n, kvd, D, 0, NULL)) {
            snprintf(err, errlen, "cuBLASLt: projection failed, layer %d", l);
            goto out;
        }
        k_headnorm_rope_fwd(st, s.qr, NULL, s.q, w->qnorm + (size_t)l * hd, n, Hq, hd, eps, s.pos, 0, kv->rope_cos,
                            kv->rope_sin);
        k_headnorm_rope_fwd(st, s.kr, NULL, s.k, w->knorm + (size_t)l * hd, n, Hkv, hd, eps, s.pos, 0, kv->rope_cos,
                            kv->rope_sin);
        k_kv_store(st, kv->k + lc, s.kr, s.dst, n, kvd);
        k_kv_store(st, kv->v + lc, s.v, s.dst, n, kvd);
        k_attn_decode(st, s.ao, s.qr, kv->k + lc, kv->v + lc, s.row0, s.pos, n, Hq, Hkv, hd);
        /* residual: accumulate into x (C = D = x) */
        if (mm(&g->mm, st, s.x, 1, s.ao, 0, w->wo_b + (size_t)l * D * qd, 1, n, D, qd, 1.0f, s.x)) {
            snprintf(err, errlen, "cuBLASLt: o_proj failed, layer %d", l);
            goto out;
        }
        k_rmsnorm_fwd(st, s.ln, NULL, s.x, w->ln2 + (size_t)l * D, n, D, eps);
        if (mm(&g->mm, st, s.gate, 0, s.ln, 0, w->wgate_b + (size_t)l * F * D, 1, n, F, D, 0, NULL) ||
            mm(&g->mm, st, s.up, 0, s.ln, 0, w->wup_b + (size_t)l * F * D, 1, n, F, D, 0, NULL)) {
            snprintf(err, errlen, "cuBLASLt: gate/up failed, layer %d", l);
            goto out;
        }
        k_swiglu_fwd(st, s.hm, s.gate, s.up, (size_t)n * F);
        if (mm(&g->mm, st, s.x, 1, s.hm, 0, w->wdown_b + (size_t)l * D * F, 1, n, D, F, 1.0f, s.x)) {
            snprintf(err, errlen, "cuBLASLt: down_proj failed, layer %d", l);
            goto out;
        }
    }
    /* final norm and lm_head only for the rows whose logits are wanted */
    if (nw && logits_out) {
        k_gather_rows(st, s.xw, s.x, s.wrows, nw, D);
        k_rmsnorm_fwd(st, s.ln, NULL, s.xw, w->lnf, nw, D, eps);
        if (mm(&g->mm, st, s.logits, 1, s.ln, 0, w->lm_head_b, 1, nw, V, D, 0, NULL)) {
            snprintf(err, errlen, "cuBLASLt: lm_head failed");
            goto out;
        }
        cudaMemcpyAsync(logits_out, s.logits, (size_t)nw * V * 4, cudaMemcpyDeviceToHost, st);
    }
    if (cudaStreamSynchronize(st) != cudaSuccess || gcheck(g, "kv forward")) {
        gcheck(g, "kv forward");
        snprintf(err, errlen, "%s", g->err);
        goto out;
    }
    for (int i = 0; i < n; i++)
        if (pos[i] + 1 > kv->len[slot[i]]) kv->len[slot[i]] = pos[i] + 1;
    rc = 0;
out:
    free(pos);
    return rc;
}

/* qwen3_generate with the GPU's KV-cache forward: the sampling loop is
 * sample.c's gen_run; this is only the model side (one slot, logits copied
 * down for the rows asked for). */
struct cuda_feed {
    struct qwen3_cuda *g;
    struct qwen3_cuda_kv *kv;
    int slots[GEN_CHUNK]; /* all 0 */
    uint8_t want[GEN_CHUNK];
};

static int feed_cuda(void *self, const int32_t *tokens, int n, int want_last, float *logits, char *err,
                     size_t errlen) {
    struct cuda_feed *f = (struct cuda_feed *)self;
    memset(f->want, 0, (size_t)n);
    f->want[n - 1] = (uint8_t)want_last;
    return qwen3_cuda_kv_forward(f->g, f->kv, tokens, f->slots, n, f->want, logits, err, errlen);
}

extern "C" int qwen3_cuda_generate(struct qwen3_cuda *g, const int32_t *prompt, int n_prompt,
                                   const struct gen_opts *o, gen_token_fn on_token, void *user, struct gen_stats *st,
                                   char *err, size_t errlen) {
    if (gen_args_ok(n_prompt, o, err, errlen)) return -1;
    struct cuda_feed *f = (struct cuda_feed *)calloc(1, sizeof *f);
    if (!f) return snprintf(err, errlen, "out of host memory"), -1;
    f->g = g;
    f->kv = qwen3_cuda_kv_create(g, 1, n_prompt + o->max_tokens, err, errlen);
    int rc = -1;
    if (f->kv) {
        struct gen_decoder gm = {g->cfg.vocab_size, feed_cuda, f};
        rc = gen_run(&gm, prompt, n_prompt, o, on_token, user, st, err, errlen);
        qwen3_cuda_kv_free(f->kv);
    }
    free(f);
    return rc;
}
