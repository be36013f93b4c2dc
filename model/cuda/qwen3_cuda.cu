/*
 * qwen3_cuda.cu - the Qwen3 model on a GPU: memory, forward, backward, AdamW.
 * (KV-cache inference is in infer.cu, data parallel in dist.c.) See
 * qwen3_cuda.h for the API and the precision plan; the step order below is
 * qwen3.c's, line for line, so the two can be read side by side.
 *
 * Written and compiled without a GPU; test/gpu/gpu_tests.c holds the CPU vs
 * GPU comparison that must pass on one.
 */
#include "qwen3_cuda_internal.cuh"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gfail(struct qwen3_cuda *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
    return -1;
}

/* 0, or -1 with the pending CUDA error (if any) in g->err */
int gcheck(struct qwen3_cuda *g, const char *what) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return 0;
    return gfail(g, "%s: %s", what, cudaGetErrorString(e));
}

int dalloc(struct qwen3_cuda *g, void **p, size_t bytes, const char *what) {
    *p = NULL;
    if (bytes == 0) bytes = 16;
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess) {
        *p = NULL;
        cudaGetLastError(); /* out of memory is not sticky: clear it */
        return gfail(g, "cudaMalloc %s (%.2f GiB): %s", what, bytes / 1073741824.0, cudaGetErrorString(e));
    }
    g->dev_bytes += bytes;
    return 0;
}

extern "C" int qwen3_cuda_device_count(char *why, size_t whylen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why && whylen) snprintf(why, whylen, "%s", cudaGetErrorString(e));
        cudaGetLastError();
        return 0;
    }
    if (n == 0 && why && whylen) snprintf(why, whylen, "no CUDA device");
    return n;
}

extern "C" int qwen3_cuda_device_name(int device, char *out, size_t outlen) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, device) != cudaSuccess) return -1;
    snprintf(out, outlen, "%s, %.1f GiB, sm_%d%d", p.name, p.totalGlobalMem / 1073741824.0, p.major, p.minor);
    return 0;
}

extern "C" const char *qwen3_cuda_error(const struct qwen3_cuda *g) { return g->err; }
extern "C" const struct qwen3_config *qwen3_cuda_config(const struct qwen3_cuda *g) { return &g->cfg; }
extern "C" size_t qwen3_cuda_n_params(const struct qwen3_cuda *g) { return g->n_params; }

/* Device pointers of each tensor kind, at the CPU block's offsets (the
 * fp32 ones NULL when base32 is: ZeRO-1 has no whole fp32 block). */
static void place(const struct qwen3 *cpu, float *base32, bf16 *base16, struct wptr *w) {
    const struct qwen3_weights *c = &cpu->w;
#define P(f)                                                                                                           \
    do {                                                                                                               \
        size_t o = (size_t)(c->f - cpu->params);                                                                       \
        w->f = base32 ? base32 + o : NULL;                                                                             \
        w->f##_b = base16 + o;                                                                                         \
    } while (0)
    P(embed);
    P(ln1);
    P(wq);
    P(wk);
    P(wv);
    P(wo);
    P(qnorm);
    P(knorm);
    P(ln2);
    P(wgate);
    P(wup);
    P(wdown);
    P(lnf);
    P(lm_head);
#undef P
}

/* The norm weights, the only ones the kernels read in fp32: their spans of
 * the block (qwen3.c's layout: ln1 [L, D], qnorm and knorm [L, hd], ln2
 * [L, D], lnf [D]) and their places in ZeRO-1's compact replica vecs. */
static size_t vec_count(const struct qwen3_config *c) {
    return (size_t)c->num_layers * (2 * (size_t)c->hidden_size + 2 * (size_t)c->head_dim) + (size_t)c->hidden_size;
}

static void vec_spans(struct qwen3_cuda *g, const struct qwen3 *cpu) {
    const struct qwen3_weights *w = &cpu->w;
    const float *at[5] = {w->ln1, w->qnorm, w->knorm, w->ln2, w->lnf};
    size_t L = (size_t)cpu->cfg.num_layers, D = (size_t)cpu->cfg.hidden_size, hd = (size_t)cpu->cfg.head_dim;
    size_t n[5] = {L * D, L * hd, L * hd, L * D, D}, to = 0;
    for (int k = 0; k < 5; k++) {
        g->vspan[k].at = (size_t)(at[k] - cpu->params), g->vspan[k].n = n[k], g->vspan[k].to = to;
        to += n[k];
    }
    g->n_vec = to; /* = vec_count(&cpu->cfg) */
}

/* Where [a, a + an) and [b, b + bn) overlap: its start (in *lo) and length. */
static size_t overlap(size_t a, size_t an, size_t b, size_t bn, size_t *lo) {
    size_t s = a > b ? a : b, e = a + an < b + bn ? a + an : b + bn;
    *lo = s;
    return e > s ? e - s : 0;
}

/* ZeRO-1: the fp32 values of the block range [off, off + k), at src on the
 * device, into the parts of it this rank keeps - its masters and the norm
 * replica (queued on the stream). */
static void keep_owned(struct qwen3_cuda *g, const float *src, size_t off, size_t k) {
    size_t s, n = overlap(off, k, g->z_lo, g->z_n, &s);
    if (n) cudaMemcpyAsync(g->params + (s - g->z_lo), src + (s - off), n * 4, cudaMemcpyDeviceToDevice, g->st);
    for (int v = 0; v < 5; v++) {
        const struct vspan *sp = &g->vspan[v];
        if ((n = overlap(off, k, sp->at, sp->n, &s)))
            cudaMemcpyAsync(g->vecs + sp->to + (s - sp->at), src + (s - off), n * 4, cudaMemcpyDeviceToDevice, g->st);
    }
}

/* The whole fp32 block host -> device. Without ZeRO-1: straight into the
 * masters, then the bf16 copy. With it: through the staging buffer a chunk
 * at a time (from_root: rank 0's host block, broadcast - a collective),
 * each chunk rounded into the bf16 copy and its owned parts kept; the
 * padding past n_params is zero. */
static int upload_weights(struct qwen3_cuda *g, const float *host, int from_root) {
    size_t P = g->n_params;
    if (!g->vecs) {
        if (cudaMemcpy(g->params, host, P * 4, cudaMemcpyHostToDevice) != cudaSuccess) return gcheck(g, "weights to device");
        if (from_root && qwen3_dist_bcast_dev(g, g->params, P)) return -1;
        k_f32_to_bf16(g->st, g->params_b, g->params, P);
        return cudaStreamSynchronize(g->st) != cudaSuccess ? gcheck(g, "weights to device") : gcheck(g, "weights to device");
    }
    for (size_t off = 0; off < g->n_alloc; off += g->stage_n) {
        size_t k = g->n_alloc - off < g->stage_n ? g->n_alloc - off : g->stage_n;
        size_t hk = off < P ? (P - off < k ? P - off : k) : 0; /* the real parameters among them */
        if ((!from_root || g->z_rank == 0) && hk &&
            cudaMemcpy(g->stage, host + off, hk * 4, cudaMemcpyHostToDevice) != cudaSuccess)
            return gcheck(g, "weights to device");
        if (hk < k) cudaMemsetAsync(g->stage + hk, 0, (k - hk) * 4, g->st);
        if (from_root && qwen3_dist_bcast_dev(g, g->stage, k)) return -1;
        k_f32_to_bf16(g->st, g->params_b + off, g->stage, k);
        keep_owned(g, g->stage, off, k);
        if (cudaStreamSynchronize(g->st) != cudaSuccess) return gcheck(g, "weights to device"); /* stage is reused */
    }
    return gcheck(g, "weights to device");
}

/* A whole [n_params] host copy of a per-rank array over the owned range
 * (the masters, m or v). ZeRO-1: a collective - every rank's shard is
 * gathered through the staging buffer, stage_n / W of each at a time, and
 * every rank gets the whole array. */
static int gather_to_host(struct qwen3_cuda *g, const float *mine, float *host, const char *what) {
    size_t P = g->n_params, W = (size_t)g->z_world;
    if (g->frozen) return gfail(g, "%s: a frozen handle (the KL reference) keeps no fp32 masters", what);
    if (!g->zero1)
        return cudaMemcpy(host, mine, P * 4, cudaMemcpyDeviceToHost) != cudaSuccess ? gcheck(g, what) : 0;
    size_t C = g->stage_n / W;
    for (size_t off = 0; off < g->z_n; off += C) {
        size_t k = g->z_n - off < C ? g->z_n - off : C;
        if (qwen3_zero1_gather_chunk(g, mine + off, k)) return -1;
        for (size_t r = 0; r < W; r++) {
            size_t at = r * g->z_n + off, n = at < P ? (P - at < k ? P - at : k) : 0;
            if (n && cudaMemcpy(host + at, g->stage + r * k, n * 4, cudaMemcpyDeviceToHost) != cudaSuccess)
                return gcheck(g, what);
        }
    }
    return 0;
}

/* ZeRO-1, after this rank's masters changed (its bf16 shard is fresh
 * already): every rank's bf16 shard gathered into the whole bf16 copy, and
 * the norm replica rebuilt - each rank writes the norm weights it owns into
 * a zeroed replica and the ranks sum them, which is exact (each element
 * has one non-zero term). A collective; nothing to do without ZeRO-1. */
static int refresh_replicas(struct qwen3_cuda *g) {
    if (!g->zero1) return 0;
    if (qwen3_zero1_allgather_bf16(g)) return -1;
    cudaMemsetAsync(g->vecs, 0, g->n_vec * 4, g->st);
    for (int v = 0; v < 5; v++) {
        const struct vspan *sp = &g->vspan[v];
        size_t s, n = overlap(sp->at, sp->n, g->z_lo, g->z_n, &s);
        if (n) cudaMemcpyAsync(g->vecs + sp->to + (s - sp->at), g->params + (s - g->z_lo), n * 4,
                               cudaMemcpyDeviceToDevice, g->st);
    }
    if (qwen3_dist_sum_dev(g, g->vecs, g->n_vec)) return -1;
    return cudaStreamSynchronize(g->st) != cudaSuccess ? gcheck(g, "replicas") : gcheck(g, "replicas");
}

/* ZeRO-1's partition of the flat parameter block (see qwen3_cuda_internal.cuh).
 * With W ranks each owns z_n = ceil(n_params / W) rounded up to 256
 * elements (1 KiB: equal shards, as NCCL's reduce-scatter and all-gather
 * want, each aligned); the block is padded with zeros to W * z_n, so the
 * last shard may be partly (or, for a tiny model on many ranks, wholly)
 * padding. Off, or with one rank: one shard, the whole block. */
static void shard_sizes(size_t n_params, int world, size_t *z_n, size_t *n_alloc) {
    if (world <= 1) {
        *z_n = *n_alloc = n_params;
        return;
    }
    size_t per = (n_params + (size_t)world - 1) / (size_t)world;
    *z_n = (per + 255) & ~(size_t)255;
    *n_alloc = *z_n * (size_t)world;
}

/* ZeRO-1's staging buffer: 64 MiB, or the whole padded block if smaller,
 * a multiple of the ranks (a gather takes stage_n / W of each shard);
 * `want` (tests) makes it smaller. */
static size_t stage_size(size_t n_alloc, int world, size_t want) {
    size_t n = want ? want : (size_t)1 << 24;
    if (n > n_alloc) n = n_alloc;
    n -= n % (size_t)world;
    return n < (size_t)world ? (size_t)world : n;
}

static void zero1_layout(struct qwen3_cuda *g, int on, int frozen, size_t stage_want) {
    int rank = 0, world = 1;
    if (on && !frozen) qwen3_dist_world(&rank, &world);
    g->zero1 = on && !frozen && world > 1;
    g->frozen = frozen;
    g->z_rank = g->zero1 ? rank : 0;
    g->z_world = g->zero1 ? world : 1;
    shard_sizes(g->n_params, g->z_world, &g->z_n, &g->n_alloc);
    if (frozen) g->z_n = 0; /* owns nothing */
    g->z_lo = g->z_n * (size_t)g->z_rank;
    g->stage_n = g->zero1 || frozen ? stage_size(g->n_alloc, g->z_world, stage_want) : 0;
}

/* A handle laid out for cpu's config and offsets (its weights not read
 * here), all its weight memory allocated, none of it filled. */
static struct qwen3_cuda *alloc_handle(const struct qwen3 *cpu, const struct qwen3_cuda_opts *o, char *err,
                                       size_t errlen) {
    struct qwen3_cuda *g = (struct qwen3_cuda *)calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->cfg = cpu->cfg;
    g->n_params = cpu->n_params;
    g->recompute = o ? o->recompute : 0;
    g->snap_host = o ? o->snapshot_host : 0;
    g->logit_rows_want = o ? o->logit_rows : 0;
    zero1_layout(g, o && o->zero1, o && o->frozen, o ? o->stage_floats : 0);
    /* attention keeps a head in per-lane registers (<= 256); RMSNorm backward
     * keeps a row's dw in shared memory (<= 12288 floats of 48 KiB) */
    if (cpu->cfg.head_dim > 256 || cpu->cfg.head_dim % 2 || cpu->cfg.hidden_size > 12288) {
        snprintf(err, errlen, "cuda: head_dim %d / hidden_size %d not supported (head_dim even and <= 256, "
                 "hidden_size <= 12288)", cpu->cfg.head_dim, cpu->cfg.hidden_size);
        free(g);
        return NULL;
    }
    char why[256];
    if (qwen3_cuda_device_count(why, sizeof why) <= 0) {
        snprintf(err, errlen, "cuda: no CUDA device (%s)", why);
        free(g);
        return NULL;
    }
    g->device = o && o->device >= 0 ? o->device : 0;
    if (cudaSetDevice(g->device) != cudaSuccess || cudaStreamCreate(&g->st) != cudaSuccess) {
        snprintf(err, errlen, "cuda: device %d: %s", g->device, cudaGetErrorString(cudaGetLastError()));
        free(g);
        return NULL;
    }
    g->tensors = (struct qwen3_tensor *)malloc((size_t)cpu->n_tensors * sizeof *g->tensors);
    if (!g->tensors) goto fail;
    memcpy(g->tensors, cpu->tensors, (size_t)cpu->n_tensors * sizeof *g->tensors);
    g->n_tensors = cpu->n_tensors;
    if (mm_ctx_init(&g->mm, g->err, sizeof g->err)) goto fail;
    vec_spans(g, cpu);
    if ((g->z_n && dalloc(g, (void **)&g->params, g->z_n * 4, "fp32 master weights")) ||
        dalloc(g, (void **)&g->params_b, g->n_alloc * 2, "bf16 weights") ||
        dalloc(g, (void **)&g->scalar, 64, "scalars") ||
        (g->stage_n && (dalloc(g, (void **)&g->vecs, g->n_vec * 4, "fp32 norm weights") ||
                        dalloc(g, (void **)&g->stage, g->stage_n * 4, "staging"))))
        goto fail;
    place(cpu, g->vecs ? NULL : g->params, g->params_b, &g->w);
    if (g->vecs) { /* the norm weights' fp32 pointers go to the replica */
        float **f[5] = {&g->w.ln1, &g->w.qnorm, &g->w.knorm, &g->w.ln2, &g->w.lnf};
        for (int k = 0; k < 5; k++) *f[k] = g->vecs + g->vspan[k].to;
    }
    return g;
fail:
    snprintf(err, errlen, "%s", g->err[0] ? g->err : "cuda: out of host memory");
    qwen3_cuda_free(g);
    return NULL;
}

extern "C" struct qwen3_cuda *qwen3_cuda_create(const struct qwen3 *cpu, const struct qwen3_cuda_opts *o, char *err,
                                                size_t errlen) {
    struct qwen3_cuda *g = alloc_handle(cpu, o, err, errlen);
    if (g && upload_weights(g, cpu->params, 0)) {
        snprintf(err, errlen, "%s", g->err);
        qwen3_cuda_free(g);
        return NULL;
    }
    return g;
}

static int same_config(struct qwen3_cuda *g, const struct qwen3 *cpu);

/* The frozen copy on the device: src's bf16 copy is the rounding of its
 * masters, which is what a frozen handle made from them would hold, and the
 * norm weights come from src's replica or its (whole) masters. */
extern "C" struct qwen3_cuda *qwen3_cuda_fork_frozen(struct qwen3_cuda *src, const struct qwen3 *layout, char *err,
                                                     size_t errlen) {
    if (src->frozen || !same_config(src, layout)) {
        snprintf(err, errlen, "fork: %s", src->frozen ? "the handle is frozen already" : "the layout has another config");
        return NULL;
    }
    struct qwen3_cuda_opts o;
    memset(&o, 0, sizeof o);
    o.device = src->device, o.recompute = src->recompute, o.frozen = 1, o.logit_rows = src->logit_rows_want;
    struct qwen3_cuda *g = alloc_handle(layout, &o, err, errlen);
    if (!g) return NULL;
    cudaMemcpyAsync(g->params_b, src->params_b, g->n_params * 2, cudaMemcpyDeviceToDevice, g->st);
    for (int k = 0; k < 5; k++) {
        const struct vspan *sp = &g->vspan[k];
        const float *from = src->vecs ? src->vecs + src->vspan[k].to : src->params + sp->at; /* unsharded: z_lo = 0 */
        cudaMemcpyAsync(g->vecs + sp->to, from, sp->n * 4, cudaMemcpyDeviceToDevice, g->st);
    }
    if (cudaStreamSynchronize(g->st) != cudaSuccess || gcheck(g, "fork")) {
        snprintf(err, errlen, "%s", g->err);
        qwen3_cuda_free(g);
        return NULL;
    }
    return g;
}

static void free_acts(struct qwen3_cuda *g) {
    if (g->acts_mem) cudaFree(g->acts_mem), g->dev_bytes -= g->acts_bytes; /* what dalloc counted */
    g->acts_mem = NULL;
    g->acts_bytes = 0;
    g->cap_B = g->cap_T = 0;
}

extern "C" void qwen3_cuda_free(struct qwen3_cuda *g) {
    if (!g) return;
    free_acts(g);
    void *ptrs[] = {g->params, g->params_b, g->grads, g->adam_m, g->adam_v, g->scalar, g->snap, g->vecs, g->stage};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++)
        if (ptrs[i]) cudaFree(ptrs[i]);
    mm_ctx_free(&g->mm);
    if (g->st) cudaStreamDestroy(g->st);
    qwen3_dist_free_comm(g);
    free(g->tensors);
    free(g->h_coef);
    free(g->snap_h);
    free(g);
}

/* ---- activation memory ----------------------------------------------------------------
 * One device block, carved by plan(): per layer (or one shared slot with
 * recompute) the saved activations, then the backward scratch. Every piece
 * is 256-byte aligned. */
static size_t carve(char *base, size_t *o, size_t bytes, void **out) {
    size_t at = (*o + 255) & ~(size_t)255;
    if (out) *out = base ? base + at : NULL;
    *o = at + bytes;
    return at;
}

/* What the block holds: every layer's activations for backward, one
 * layer's (recompute: backward recomputes each layer from its saved input),
 * or forward only (a frozen handle: two residual buffers in turn, no
 * backward scratch). */
enum { ACTS_ALL = 0, ACTS_RECOMPUTE = 1, ACTS_FORWARD = 2 };

static int acts_mode(const struct qwen3_cuda *g) { return g->frozen ? ACTS_FORWARD : g->recompute ? ACTS_RECOMPUTE : ACTS_ALL; }

/* The rows of logits a forward of N rows holds at once: all of them while
 * the fp32 logits and the backward's bf16 gradient of them (6 bytes a
 * logit) fit in LOGIT_BUDGET, else chunks that do. A group of 8 rollouts of
 * 4096 tokens with Qwen3's 151936-entry vocabulary would otherwise hold 28
 * GiB of them; in chunks the lm_head product and the cross-entropy go a
 * chunk at a time, and backward recomputes every chunk's logits but the
 * one still in the buffer (one more lm_head product when chunked). */
#define LOGIT_BUDGET ((size_t)4 << 30)
static int logit_rows(const struct qwen3_config *c, int N, int want) {
    size_t r = want > 0 ? (size_t)want : LOGIT_BUDGET / ((size_t)c->vocab_size * 6);
    if (r < 1) r = 1;
    return r < (size_t)N ? (int)r : N;
}

static size_t plan(const struct qwen3_config *c, int B, int T, int mode, int rows, struct acts *a, char *base) {
    size_t N = (size_t)B * T, L = (size_t)c->num_layers, D = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    size_t hd = (size_t)c->head_dim, Hq = (size_t)c->num_heads, Hkv = (size_t)c->num_kv_heads;
    size_t qd = Hq * hd, kvd = Hkv * hd, V = (size_t)c->vocab_size, o = 0;
    size_t S = mode == ACTS_ALL ? L : 1; /* saved-activation slots */
    struct acts dummy;
    if (!a) a = &dummy;
#define C(field, n, type) carve(base, &o, (n) * sizeof(type), (void **)&a->field)
    C(resid, (mode == ACTS_FORWARD ? 2 : L + 1) * N * D, float);
    C(xm, S * N * D, float);
    C(ln1, S * N * D, bf16);
    C(rstd1, S * N, float);
    C(q, S * N * qd, bf16);
    C(k, S * N * kvd, bf16);
    C(v, S * N * kvd, bf16);
    C(qr, S * N * qd, bf16);
    C(kr, S * N * kvd, bf16);
    C(qrstd, S * N * Hq, float);
    C(krstd, S * N * Hkv, float);
    C(ao, S * N * qd, bf16);
    C(lse_att, S * N * Hq, float);
    C(ln2, S * N * D, bf16);
    C(rstd2, S * N, float);
    C(gate, S * N * F, bf16);
    C(up, S * N * F, bf16);
    C(hm, S * N * F, bf16);
    C(lnf, N * D, bf16);
    C(rstdf, N, float);
    C(logits, (size_t)rows * V, float);
    C(lse, N, float);
    C(logp, N, float);
    C(ent, N, float);
    C(coef, N, float);
    C(went, N, float);
    C(ids, N, int32_t);
    C(targets, N, int32_t);
    C(rope_cos, (size_t)T * hd / 2, float);
    C(rope_sin, (size_t)T * hd / 2, float);
    if (mode == ACTS_FORWARD) return o + 256;
    C(dlogits, (size_t)rows * V, bf16);
    C(dres, N * D, float);
    C(dres_b, N * D, bf16);
    C(dln, N * D, float);
    C(dhm, N * F, float);
    C(dgate, N * F, bf16);
    C(dup, N * F, bf16);
    C(dao, N * qd, float);
    C(dsum, N * Hq, float);
    C(dqr, N * qd, float);
    C(dkr, N * kvd, float);
    C(dv, N * kvd, bf16);
    C(dq, N * qd, bf16);
    C(dk, N * kvd, bf16);
#undef C
    return o + 256;
}

extern "C" int qwen3_cuda_plan_memory(const struct qwen3_config *c, int B, int T, int recompute, int world,
                                      int zero1, int snapshot, struct qwen3_cuda_mem *m) {
    memset(m, 0, sizeof *m);
    if (B < 1 || T < 1 || world < 1) return -1;
    size_t n = qwen3_param_count(c), z_n, n_alloc;
    shard_sizes(n, zero1 ? world : 1, &z_n, &n_alloc);
    int sharded = zero1 && world > 1;
    m->params = n;
    m->weights_f32 = (z_n + (sharded ? vec_count(c) : 0)) * 4;
    m->weights_bf16 = n_alloc * 2;
    m->grads = n_alloc * 4;
    m->adam = 2 * z_n * 4;
    m->snapshot = snapshot == 1 ? 3 * z_n * 4 : 0;
    m->snapshot_host = snapshot == 2 ? 3 * z_n * 4 : 0;
    int rows = logit_rows(c, B * T, 0);
    m->logit_rows = rows;
    m->activations = plan(c, B, T, recompute ? ACTS_RECOMPUTE : ACTS_ALL, rows, NULL, NULL);
    m->workspace = MM_WORKSPACE_BYTES;
    m->scratch = 64 + (sharded ? stage_size(n_alloc, world, 0) * 4 : 0); /* g->scalar, ZeRO-1's staging */
    m->total = m->weights_f32 + m->weights_bf16 + m->grads + m->adam + m->snapshot + m->activations + m->workspace +
               m->scratch;
    /* a frozen handle: whole bf16 block, the norm replica, staging, scratch */
    m->reference = n * 2 + vec_count(c) * 4 + stage_size(n, 1, 0) * 4 + 64 +
                   plan(c, B, T, ACTS_FORWARD, rows, NULL, NULL) + m->workspace;
    m->kv_bytes_per_token = (size_t)2 * c->num_layers * c->num_kv_heads * c->head_dim * 2; /* bf16 K and V */
    return 0;
}

extern "C" size_t qwen3_cuda_device_bytes(const struct qwen3_cuda *g) { return g->dev_bytes; }

/* Layer l's input (l = num_layers: the final norm's): one buffer per layer,
 * or forward only two in turn. */
static float *resid_at(struct qwen3_cuda *g, int l) {
    size_t k = acts_mode(g) == ACTS_FORWARD ? (size_t)(l % 2) : (size_t)l;
    return g->a.resid + k * (size_t)g->B * g->T * g->cfg.hidden_size;
}

/* The per-layer slot of the saved activations. */
static struct layer_acts slot(struct qwen3_cuda *g, int l) {
    const struct qwen3_config *c = &g->cfg;
    struct acts *a = &g->a;
    size_t s = acts_mode(g) == ACTS_ALL ? (size_t)l : 0, N = (size_t)g->B * g->T, D = (size_t)c->hidden_size;
    size_t F = (size_t)c->intermediate_size, hd = (size_t)c->head_dim;
    size_t Hq = (size_t)c->num_heads, Hkv = (size_t)c->num_kv_heads, qd = Hq * hd, kvd = Hkv * hd;
    struct layer_acts la;
    la.x = resid_at(g, l);
    la.out = resid_at(g, l + 1);
    la.xm = a->xm + s * N * D;
    la.ln1 = a->ln1 + s * N * D;
    la.rstd1 = a->rstd1 + s * N;
    la.q = a->q + s * N * qd;
    la.k = a->k + s * N * kvd;
    la.v = a->v + s * N * kvd;
    la.qr = a->qr + s * N * qd;
    la.kr = a->kr + s * N * kvd;
    la.qrstd = a->qrstd + s * N * Hq;
    la.krstd = a->krstd + s * N * Hkv;
    la.ao = a->ao + s * N * qd;
    la.lse = a->lse_att + s * N * Hq;
    la.ln2 = a->ln2 + s * N * D;
    la.rstd2 = a->rstd2 + s * N;
    la.gate = a->gate + s * N * F;
    la.up = a->up + s * N * F;
    la.hm = a->hm + s * N * F;
    return la;
}

/* RoPE table as qwen3_rope_table computes it (fp32 angle, then cos/sin). */
int upload_rope(struct qwen3_cuda *g, float *dcos, float *dsin, int T) {
    size_t n = (size_t)T * g->cfg.head_dim / 2;
    float *h = (float *)malloc(2 * n * sizeof(float));
    if (!h) return gfail(g, "out of host memory");
    qwen3_rope_table(&g->cfg, T, h, h + n);
    cudaError_t e1 = cudaMemcpy(dcos, h, n * 4, cudaMemcpyHostToDevice);
    cudaError_t e2 = cudaMemcpy(dsin, h + n, n * 4, cudaMemcpyHostToDevice);
    free(h);
    if (e1 != cudaSuccess || e2 != cudaSuccess) return gcheck(g, "rope table");
    return 0;
}

static int ensure_acts(struct qwen3_cuda *g, int B, int T) {
    int rows = logit_rows(&g->cfg, B * T, g->logit_rows_want);
    size_t need = plan(&g->cfg, B, T, acts_mode(g), rows, NULL, NULL);
    if (need > g->acts_bytes) {
        free_acts(g);
        if (dalloc(g, (void **)&g->acts_mem, need, "activations")) return -1;
        g->acts_bytes = need;
    }
    plan(&g->cfg, B, T, acts_mode(g), rows, &g->a, g->acts_mem);
    g->logit_rows = rows;
    g->logit_chunks = (B * T + rows - 1) / rows;
    /* the table's place in the block depends on B and T: refill on any change */
    if (T != g->cap_T || B != g->cap_B) {
        if (upload_rope(g, g->a.rope_cos, g->a.rope_sin, T)) return -1;
        g->cap_B = B;
        g->cap_T = T;
    }
    g->B = B;
    g->T = T;
    return 0;
}

/* ---- forward --------------------------------------------------------------------- */

/* One layer, qwen3_forward's loop body; la.x is its input, la.out its output. */
static int layer_forward(struct qwen3_cuda *g, int l, const struct layer_acts *la) {
    const struct qwen3_config *c = &g->cfg;
    struct wptr *w = &g->w;
    cudaStream_t st = g->st;
    int N = g->B * g->T, T = g->T, D = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    int Hq = c->num_heads, Hkv = c->num_kv_heads, qd = Hq * hd, kvd = Hkv * hd;
    float eps = c->rms_norm_eps;
    k_rmsnorm_fwd(st, la->ln1, la->rstd1, la->x, w->ln1 + (size_t)l * D, N, D, eps);
    if (mm(&g->mm, st, la->q, 0, la->ln1, 0, w->wq_b + (size_t)l * qd * D, 1, N, qd, D, 0, NULL) ||
        mm(&g->mm, st, la->k, 0, la->ln1, 0, w->wk_b + (size_t)l * kvd * D, 1, N, kvd, D, 0, NULL) ||
        mm(&g->mm, st, la->v, 0, la->ln1, 0, w->wv_b + (size_t)l * kvd * D, 1, N, kvd, D, 0, NULL))
        return gfail(g, "cuBLASLt: q/k/v projection, layer %d", l);
    k_headnorm_rope_fwd(st, la->qr, la->qrstd, la->q, w->qnorm + (size_t)l * hd, N, Hq, hd, eps, NULL, T,
                        g->a.rope_cos, g->a.rope_sin);
    k_headnorm_rope_fwd(st, la->kr, la->krstd, la->k, w->knorm + (size_t)l * hd, N, Hkv, hd, eps, NULL, T,
                        g->a.rope_cos, g->a.rope_sin);
    k_attn_fwd(st, la->ao, la->lse, la->qr, la->kr, la->v, g->B, T, Hq, Hkv, hd);
    /* xm = x + o_proj(ao): the residual add rides on the matmul's C operand */
    if (mm(&g->mm, st, la->xm, 1, la->ao, 0, w->wo_b + (size_t)l * D * qd, 1, N, D, qd, 1.0f, la->x))
        return gfail(g, "cuBLASLt: o_proj, layer %d", l);
    k_rmsnorm_fwd(st, la->ln2, la->rstd2, la->xm, w->ln2 + (size_t)l * D, N, D, eps);
    if (mm(&g->mm, st, la->gate, 0, la->ln2, 0, w->wgate_b + (size_t)l * F * D, 1, N, F, D, 0, NULL) ||
        mm(&g->mm, st, la->up, 0, la->ln2, 0, w->wup_b + (size_t)l * F * D, 1, N, F, D, 0, NULL))
        return gfail(g, "cuBLASLt: gate/up projection, layer %d", l);
    k_swiglu_fwd(st, la->hm, la->gate, la->up, (size_t)N * F);
    if (mm(&g->mm, st, la->out, 1, la->hm, 0, w->wdown_b + (size_t)l * D * F, 1, N, D, F, 1.0f, la->xm))
        return gfail(g, "cuBLASLt: down_proj, layer %d", l);
    return 0;
}

extern "C" float qwen3_cuda_forward(struct qwen3_cuda *g, const int32_t *ids, const int32_t *targets,
                                    const float *mask, int B, int T) {
    const struct qwen3_config *c = &g->cfg;
    g->err[0] = 0;
    if (B <= 0 || T <= 0 || (long)B * T > (1L << 30)) return gfail(g, "forward: bad shape %d x %d", B, T), NAN;
    int N = B * T, D = c->hidden_size, V = c->vocab_size;
    for (int i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= V || (targets && targets[i] >= V))
            return gfail(g, "forward: token id out of range at %d", i), NAN;
    if (ensure_acts(g, B, T)) return NAN;
    struct acts *a = &g->a;
    cudaStream_t st = g->st;
    g->has_forward = 0;
    /* host-side copies of what backward needs: targets and the loss weights */
    free(g->h_coef);
    g->h_coef = (float *)malloc((size_t)N * 2 * sizeof(float));
    if (!g->h_coef) return gfail(g, "out of host memory"), NAN;
    float *w8 = g->h_coef + N; /* mask weights */
    int32_t *tg = (int32_t *)malloc((size_t)N * sizeof *tg);
    if (!tg) return gfail(g, "out of host memory"), NAN;
    for (int i = 0; i < N; i++) {
        tg[i] = targets ? targets[i] : -1;
        w8[i] = tg[i] < 0 ? 0.0f : mask ? mask[i] : 1.0f;
    }
    cudaMemcpyAsync(a->ids, ids, (size_t)N * 4, cudaMemcpyHostToDevice, st);
    cudaMemcpyAsync(a->targets, tg, (size_t)N * 4, cudaMemcpyHostToDevice, st);
    k_embed_fwd(st, a->resid, a->ids, g->w.embed_b, N, D);
    for (int l = 0; l < c->num_layers; l++) {
        struct layer_acts la = slot(g, l);
        if (layer_forward(g, l, &la)) {
            free(tg);
            return NAN;
        }
    }
    k_rmsnorm_fwd(st, a->lnf, a->rstdf, resid_at(g, c->num_layers), g->w.lnf, N, D, c->rms_norm_eps);
    for (int r0 = 0; r0 < N; r0 += g->logit_rows) { /* one chunk of rows at a time (usually one) */
        int n = N - r0 < g->logit_rows ? N - r0 : g->logit_rows;
        if (mm(&g->mm, st, a->logits, 1, a->lnf + (size_t)r0 * D, 0, g->w.lm_head_b, 1, n, V, D, 0, NULL)) {
            free(tg);
            return gfail(g, "cuBLASLt: lm_head"), NAN;
        }
        k_xent_fwd(st, a->lse + r0, a->logp + r0, a->logits, a->targets + r0, n, V);
        if (g->logit_chunks > 1) k_xent_entropy(st, a->ent + r0, a->logits, a->lse + r0, n, V); /* gone after */
    }
    g->loss = 0;
    if (targets) {
        float *lp = (float *)malloc((size_t)N * sizeof *lp);
        if (!lp) {
            free(tg);
            return gfail(g, "out of host memory"), NAN;
        }
        cudaMemcpyAsync(lp, a->logp, (size_t)N * 4, cudaMemcpyDeviceToHost, st);
        if (cudaStreamSynchronize(st) != cudaSuccess) {
            free(lp);
            free(tg);
            return gcheck(g, "forward"), NAN;
        }
        double num = 0, den = 0;
        for (int i = 0; i < N; i++) num -= (double)w8[i] * lp[i], den += w8[i];
        g->loss = den > 0 ? (float)(num / den) : 0.0f;
        free(lp);
    } else if (cudaStreamSynchronize(st) != cudaSuccess) {
        free(tg);
        return gcheck(g, "forward"), NAN;
    }
    free(tg);
    if (gcheck(g, "forward")) return NAN;
    g->has_forward = 1;
    return g->loss;
}

extern "C" int qwen3_cuda_logits(struct qwen3_cuda *g, float *out) {
    if (!g->has_forward) return gfail(g, "logits: no forward");
    if (g->logit_chunks > 1)
        return gfail(g, "logits: the last forward's %d rows went in chunks of %d; only the last chunk's are kept",
                     g->B * g->T, g->logit_rows);
    size_t n = (size_t)g->B * g->T * g->cfg.vocab_size;
    if (cudaMemcpy(out, g->a.logits, n * 4, cudaMemcpyDeviceToHost) != cudaSuccess) return gcheck(g, "logits");
    return 0;
}

extern "C" int qwen3_cuda_last_logprobs(struct qwen3_cuda *g, float *out) {
    if (!g->has_forward) return gfail(g, "logprobs: no forward");
    if (cudaMemcpy(out, g->a.logp, (size_t)g->B * g->T * 4, cudaMemcpyDeviceToHost) != cudaSuccess)
        return gcheck(g, "logprobs");
    return 0;
}

extern "C" int qwen3_cuda_logprobs(struct qwen3_cuda *g, const int32_t *ids, const int32_t *targets, int B, int T,
                                   float *out) {
    if (isnan(qwen3_cuda_forward(g, ids, targets, NULL, B, T))) return -1;
    return qwen3_cuda_last_logprobs(g, out);
}

/* ---- backward -------------------------------------------------------------------- */

/* what a frozen handle refuses: -1 with the error */
static int refuse_frozen(struct qwen3_cuda *g, const char *what) {
    return g->frozen ? gfail(g, "%s: a frozen handle (the KL reference) is never trained", what) : 0;
}

static int ensure_grads(struct qwen3_cuda *g) {
    if (g->grads) return 0;
    if (refuse_frozen(g, "backward")) return -1;
    if (dalloc(g, (void **)&g->grads, g->n_alloc * 4, "gradients")) return -1;
    if (cudaMemset(g->grads, 0, g->n_alloc * 4) != cudaSuccess) return gcheck(g, "zero grads");
    float *base = g->grads;
    /* gradient pointers: same offsets as the weights */
#define GP(f) g->gw.f = base + (g->w.f##_b - g->params_b)
    GP(embed);
    GP(ln1);
    GP(wq);
    GP(wk);
    GP(wv);
    GP(wo);
    GP(qnorm);
    GP(knorm);
    GP(ln2);
    GP(wgate);
    GP(wup);
    GP(wdown);
    GP(lnf);
    GP(lm_head);
#undef GP
    return 0;
}

extern "C" void qwen3_cuda_zero_grad(struct qwen3_cuda *g) {
    if (ensure_grads(g)) return;
    cudaMemsetAsync(g->grads, 0, g->n_alloc * 4, g->st); /* the padding too: the reduce-scatter reads it */
    g->grads_reduced = 0;
}

/* One layer's backward, qwen3.c backward_core's loop body. On entry a.dres
 * (fp32) and a.dres_b (its bf16 copy) hold dL/d(la.out); on exit dL/d(la.x). */
static int layer_backward(struct qwen3_cuda *g, int l, const struct layer_acts *la) {
    const struct qwen3_config *c = &g->cfg;
    struct wptr *w = &g->w, *gw = &g->gw;
    struct acts *a = &g->a;
    cudaStream_t st = g->st;
    int N = g->B * g->T, T = g->T, D = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    int Hq = c->num_heads, Hkv = c->num_kv_heads, qd = Hq * hd, kvd = Hkv * hd;
    size_t lD = (size_t)l * D;
    /* MLP: out = xm + down(hm) */
    if (mm(&g->mm, st, a->dhm, 1, a->dres_b, 0, w->wdown_b + lD * F, 0, N, F, D, 0, NULL) ||
        mm(&g->mm, st, gw->wdown + lD * F, 1, a->dres_b, 1, la->hm, 0, D, F, N, 1.0f, gw->wdown + lD * F))
        return gfail(g, "cuBLASLt: down_proj backward, layer %d", l);
    k_swiglu_bwd(st, a->dgate, a->dup, a->dhm, la->gate, la->up, (size_t)N * F);
    if (mm(&g->mm, st, a->dln, 1, a->dgate, 0, w->wgate_b + lD * F, 0, N, D, F, 0, NULL) ||
        mm(&g->mm, st, a->dln, 1, a->dup, 0, w->wup_b + lD * F, 0, N, D, F, 1.0f, a->dln) ||
        mm(&g->mm, st, gw->wgate + lD * F, 1, a->dgate, 1, la->ln2, 0, F, D, N, 1.0f, gw->wgate + lD * F) ||
        mm(&g->mm, st, gw->wup + lD * F, 1, a->dup, 1, la->ln2, 0, F, D, N, 1.0f, gw->wup + lD * F))
        return gfail(g, "cuBLASLt: gate/up backward, layer %d", l);
    k_rmsnorm_bwd(st, a->dres, a->dres_b, gw->ln2 + lD, a->dln, la->xm, w->ln2 + lD, la->rstd2, N, D);
    /* attention: xm = x + o_proj(ao) */
    if (mm(&g->mm, st, a->dao, 1, a->dres_b, 0, w->wo_b + lD * qd, 0, N, qd, D, 0, NULL) ||
        mm(&g->mm, st, gw->wo + lD * qd, 1, a->dres_b, 1, la->ao, 0, D, qd, N, 1.0f, gw->wo + lD * qd))
        return gfail(g, "cuBLASLt: o_proj backward, layer %d", l);
    k_attn_bwd(st, a->dqr, a->dkr, a->dv, a->dsum, a->dao, la->ao, la->lse, la->qr, la->kr, la->v, g->B, T, Hq, Hkv,
               hd);
    k_headnorm_rope_bwd(st, a->dq, gw->qnorm + (size_t)l * hd, a->dqr, la->q, w->qnorm + (size_t)l * hd, la->qrstd, N,
                        Hq, hd, T, a->rope_cos, a->rope_sin);
    k_headnorm_rope_bwd(st, a->dk, gw->knorm + (size_t)l * hd, a->dkr, la->k, w->knorm + (size_t)l * hd, la->krstd, N,
                        Hkv, hd, T, a->rope_cos, a->rope_sin);
    size_t oq = (size_t)l * qd * D, okv = (size_t)l * kvd * D;
    if (mm(&g->mm, st, a->dln, 1, a->dq, 0, w->wq_b + oq, 0, N, D, qd, 0, NULL) ||
        mm(&g->mm, st, a->dln, 1, a->dk, 0, w->wk_b + okv, 0, N, D, kvd, 1.0f, a->dln) ||
        mm(&g->mm, st, a->dln, 1, a->dv, 0, w->wv_b + okv, 0, N, D, kvd, 1.0f, a->dln) ||
        mm(&g->mm, st, gw->wq + oq, 1, a->dq, 1, la->ln1, 0, qd, D, N, 1.0f, gw->wq + oq) ||
        mm(&g->mm, st, gw->wk + okv, 1, a->dk, 1, la->ln1, 0, kvd, D, N, 1.0f, gw->wk + okv) ||
        mm(&g->mm, st, gw->wv + okv, 1, a->dv, 1, la->ln1, 0, kvd, D, N, 1.0f, gw->wv + okv))
        return gfail(g, "cuBLASLt: q/k/v backward, layer %d", l);
    k_rmsnorm_bwd(st, a->dres, a->dres_b, gw->ln1 + lD, a->dln, la->x, w->ln1 + lD, la->rstd1, N, D);
    return 0;
}

static int backward_core(struct qwen3_cuda *g, const float *coef, const float *went) {
    const struct qwen3_config *c = &g->cfg;
    struct acts *a = &g->a;
    cudaStream_t st = g->st;
    if (!g->has_forward) return gfail(g, "backward: no forward since the last backward");
    if (ensure_grads(g)) return -1;
    g->grads_reduced = 0; /* adds this rank's gradients to the whole block again */
    int N = g->B * g->T, D = c->hidden_size, V = c->vocab_size, L = c->num_layers;
    size_t ND = (size_t)N * D;
    cudaMemcpyAsync(a->coef, coef, (size_t)N * 4, cudaMemcpyHostToDevice, st);
    if (went) cudaMemcpyAsync(a->went, went, (size_t)N * 4, cudaMemcpyHostToDevice, st);
    /* the cross-entropy, lm_head and the final norm, a chunk of rows at a
     * time from the last: its logits are still in the buffer, the others'
     * are recomputed */
    int R = g->logit_rows;
    for (int r0 = (N - 1) / R * R; r0 >= 0; r0 -= R) {
        int n = N - r0 < R ? N - r0 : R;
        const bf16 *lnf = a->lnf + (size_t)r0 * D;
        if (r0 + R < N && mm(&g->mm, st, a->logits, 1, lnf, 0, g->w.lm_head_b, 1, n, V, D, 0, NULL))
            return gfail(g, "cuBLASLt: lm_head (recomputed)");
        k_xent_bwd(st, a->dlogits, a->logits, a->lse + r0, a->targets + r0, a->coef + r0, went ? a->went + r0 : NULL, n,
                   V);
        if (mm(&g->mm, st, a->dln + (size_t)r0 * D, 1, a->dlogits, 0, g->w.lm_head_b, 0, n, D, V, 0, NULL) ||
            mm(&g->mm, st, g->gw.lm_head, 1, a->dlogits, 1, lnf, 0, V, D, n, 1.0f, g->gw.lm_head))
            return gfail(g, "cuBLASLt: lm_head backward");
    }
    cudaMemsetAsync(a->dres, 0, ND * 4, st);
    k_rmsnorm_bwd(st, a->dres, a->dres_b, g->gw.lnf, a->dln, a->resid + (size_t)L * ND, g->w.lnf, a->rstdf, N, D);
    for (int l = L - 1; l >= 0; l--) {
        struct layer_acts la = slot(g, l);
        if (g->recompute && layer_forward(g, l, &la)) return -1; /* rebuild this layer's activations */
        if (layer_backward(g, l, &la)) return -1;
    }
    k_embed_bwd(st, g->gw.embed, a->ids, a->dres, N, D);
    if (cudaStreamSynchronize(st) != cudaSuccess || gcheck(g, "backward")) return gcheck(g, "backward");
    g->has_forward = 0; /* as the CPU model: a second backward needs a new forward */
    return 0;
}

extern "C" int qwen3_cuda_backward(struct qwen3_cuda *g) {
    if (!g->has_forward || !g->h_coef) return gfail(g, "backward: no forward");
    int N = g->B * g->T;
    const float *w8 = g->h_coef + N;
    double den = 0;
    for (int i = 0; i < N; i++) den += w8[i];
    for (int i = 0; i < N; i++) g->h_coef[i] = den > 0 ? (float)(-w8[i] / den) : 0.0f;
    return backward_core(g, g->h_coef, NULL);
}

extern "C" int qwen3_cuda_backward_logprobs(struct qwen3_cuda *g, const float *coef) {
    return backward_core(g, coef, NULL);
}

extern "C" int qwen3_cuda_backward_logprobs_entropy(struct qwen3_cuda *g, const float *coef, const float *went) {
    return backward_core(g, coef, went);
}

extern "C" int qwen3_cuda_grads_to_host(struct qwen3_cuda *g, float *out) {
    if (ensure_grads(g)) return -1;
    if (cudaMemcpy(out, g->grads, g->n_params * 4, cudaMemcpyDeviceToHost) != cudaSuccess)
        return gcheck(g, "grads to host");
    return 0;
}

/* ---- AdamW (adamw.c, same schedule and clipping) ------------------------------------------
 * The fp32 masters and the moments cover this rank's range [z_lo, z_lo +
 * z_n): the whole block without ZeRO-1; one shard of it with ZeRO-1
 * (dist.cu has the collectives), which is what saves (W-1)/W of their
 * memory on every rank: 12 bytes per parameter become 12/W. */

extern "C" int qwen3_cuda_adamw_init(struct qwen3_cuda *g, const struct adamw_config *c) {
    if (refuse_frozen(g, "AdamW")) return -1;
    g->opt = *c;
    g->opt_step = 0;
    if (!g->adam_m && (dalloc(g, (void **)&g->adam_m, g->z_n * 4, "AdamW m") ||
                       dalloc(g, (void **)&g->adam_v, g->z_n * 4, "AdamW v")))
        return -1;
    cudaMemset(g->adam_m, 0, g->z_n * 4);
    cudaMemset(g->adam_v, 0, g->z_n * 4);
    return gcheck(g, "AdamW init");
}

extern "C" int qwen3_cuda_recomputes(const struct qwen3_cuda *g) { return g->recompute; }

extern "C" size_t qwen3_cuda_zero1_shard(const struct qwen3_cuda *g, size_t *lo) {
    if (lo) *lo = g->z_lo;
    return g->zero1 ? g->z_n : 0;
}

/* One AdamW step. Unsharded: the norm over all gradients, the update over
 * all weights (every rank the same, after qwen3_cuda_allreduce_grads).
 * ZeRO-1, after the reduce-scatter left this rank's shard of the averaged
 * gradients in place:
 *   1. ||g||^2 = sum over ranks of the shard's sum of squares (the shards
 *      partition the block and the padding is zero: the unsharded sum, in
 *      another order), so every rank clips by the same factor;
 *   2. AdamW on the shard's fp32 masters with its moments, which also
 *      rounds the shard into the bf16 copy;
 *   3. all-gather of the bf16 shards (2 bytes a parameter: the forward
 *      reads nothing else of the big matrices) and the norm replica rebuilt
 *      (refresh_replicas).
 * Each bf16 element is the rounding of the value its owner computed, so
 * all ranks agree bit for bit, and with plain data parallel's; the update
 * is the unsharded one up to the order of the norm's sum. */
extern "C" float qwen3_cuda_adamw_step(struct qwen3_cuda *g, float *lr_out) {
    const struct adamw_config *c = &g->opt;
    if (!g->adam_m) return gfail(g, "AdamW: not initialised"), NAN;
    if (ensure_grads(g)) return NAN;
    if (g->zero1 && !g->grads_reduced)
        return gfail(g, "AdamW (ZeRO-1): the gradients were not reduce-scattered since the last backward "
                        "(qwen3_cuda_allreduce_grads)"), NAN;
    size_t lo = g->z_lo, n = g->z_n;
    double *ss = (double *)g->scalar, h_ss = 0;
    cudaMemsetAsync(ss, 0, sizeof *ss, g->st);
    k_sumsq(g->st, ss, g->grads + lo, n);
    cudaMemcpyAsync(&h_ss, ss, sizeof h_ss, cudaMemcpyDeviceToHost, g->st);
    if (cudaStreamSynchronize(g->st) != cudaSuccess) return gcheck(g, "AdamW norm"), NAN;
    if (qwen3_zero1_sum(g, &h_ss)) return NAN;
    float norm = (float)sqrt(h_ss), clip = 1.0f;
    if (c->grad_clip > 0) {
        clip = c->grad_clip / (norm + 1e-6f);
        if (clip > 1.0f) clip = 1.0f;
    }
    float lr = adamw_lr(c, g->opt_step);
    g->opt_step++;
    double bc1 = 1.0 - pow(c->beta1, (double)g->opt_step), bc2 = 1.0 - pow(c->beta2, (double)g->opt_step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    for (int t = 0; t < g->n_tensors; t++) { /* each tensor's part inside [lo, lo + n) */
        const struct qwen3_tensor *tt = &g->tensors[t];
        size_t a = tt->offset > lo ? tt->offset : lo, b = tt->offset + tt->numel < lo + n ? tt->offset + tt->numel : lo + n;
        if (a >= b) continue;
        float decay = tt->is_matrix ? 1.0f - lr * c->weight_decay : 1.0f;
        k_adamw(g->st, g->params + (a - lo), g->params_b + a, g->grads + a, g->adam_m + (a - lo), g->adam_v + (a - lo),
                b - a, decay, clip, c->beta1, c->beta2, step_size, bc2_sqrt, c->eps);
    }
    if (refresh_replicas(g)) return NAN;
    if (cudaStreamSynchronize(g->st) != cudaSuccess || gcheck(g, "AdamW")) return gcheck(g, "AdamW"), NAN;
    if (lr_out) *lr_out = lr;
    return norm;
}

extern "C" int qwen3_cuda_to_host(struct qwen3_cuda *g, struct qwen3 *cpu) {
    const struct qwen3_config *a = &cpu->cfg, *b = &g->cfg;
    if (cpu->n_params != g->n_params || a->vocab_size != b->vocab_size || a->hidden_size != b->hidden_size ||
        a->num_layers != b->num_layers || a->intermediate_size != b->intermediate_size ||
        a->num_heads != b->num_heads || a->num_kv_heads != b->num_kv_heads || a->head_dim != b->head_dim ||
        a->tie_word_embeddings != b->tie_word_embeddings)
        return gfail(g, "to_host: the CPU model has a different config");
    return gather_to_host(g, g->params, cpu->params, "weights to host");
}

/* ---- what a trainer needs besides (rl/backend_cuda.c) ---------------------------------- */

static int same_config(struct qwen3_cuda *g, const struct qwen3 *cpu) {
    const struct qwen3_config *a = &cpu->cfg, *b = &g->cfg;
    return cpu->n_params == g->n_params && a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
           a->num_layers == b->num_layers && a->intermediate_size == b->intermediate_size &&
           a->num_heads == b->num_heads && a->num_kv_heads == b->num_kv_heads && a->head_dim == b->head_dim &&
           a->tie_word_embeddings == b->tie_word_embeddings;
}

extern "C" int qwen3_cuda_from_host(struct qwen3_cuda *g, const struct qwen3 *cpu) {
    if (!same_config(g, cpu)) return gfail(g, "from_host: the CPU model has a different config");
    g->has_forward = 0; /* the saved activations belong to the old weights */
    return upload_weights(g, cpu->params, 0);
}

/* Every rank starts from rank 0's weights: its device block broadcast, or
 * with ZeRO-1 (where no rank holds the whole fp32 block on the device)
 * rank 0's host block, chunk by chunk. A collective. */
extern "C" int qwen3_cuda_broadcast_weights(struct qwen3_cuda *g, const struct qwen3 *cpu) {
    int rank, world;
    qwen3_dist_world(&rank, &world);
    if (world == 1) return 0;
    if (!g->zero1) {
        if (qwen3_dist_bcast_dev(g, g->params, g->n_params)) return -1;
        k_f32_to_bf16(g->st, g->params_b, g->params, g->n_params);
        return cudaStreamSynchronize(g->st) != cudaSuccess ? gcheck(g, "broadcast") : gcheck(g, "broadcast");
    }
    if (!same_config(g, cpu)) return gfail(g, "broadcast: the CPU model has a different config");
    return upload_weights(g, cpu->params, 1);
}

/* A chunked forward computed the entropies as it went; one chunk's logits
 * are all still there. */
extern "C" int qwen3_cuda_last_entropy(struct qwen3_cuda *g, float *out) {
    if (!g->has_forward) return gfail(g, "entropy: no forward");
    int N = g->B * g->T;
    if (g->logit_chunks == 1) k_xent_entropy(g->st, g->a.ent, g->a.logits, g->a.lse, N, g->cfg.vocab_size);
    cudaMemcpyAsync(out, g->a.ent, (size_t)N * 4, cudaMemcpyDeviceToHost, g->st);
    if (cudaStreamSynchronize(g->st) != cudaSuccess || gcheck(g, "entropy")) return gcheck(g, "entropy"), -1;
    return 0;
}

static double sumsq(struct qwen3_cuda *g, const float *x, size_t n, const char *what) {
    double *ss = (double *)g->scalar, h = 0;
    g->err[0] = 0;
    cudaMemsetAsync(ss, 0, sizeof *ss, g->st);
    k_sumsq(g->st, ss, x, n);
    cudaMemcpyAsync(&h, ss, sizeof h, cudaMemcpyDeviceToHost, g->st);
    if (cudaStreamSynchronize(g->st) != cudaSuccess || gcheck(g, what)) return gcheck(g, what), NAN;
    return h;
}

extern "C" double qwen3_cuda_grad_sumsq(struct qwen3_cuda *g) {
    if (!g->grads) return 0; /* no backward yet: all zero */
    if (!g->grads_reduced || !g->zero1) return sumsq(g, g->grads, g->n_params, "gradient norm");
    /* ZeRO-1 after the reduce-scatter: this rank's shard, summed over the ranks */
    double h = sumsq(g, g->grads + g->z_lo, g->z_n, "gradient norm");
    if (isnan(h) && g->err[0]) return NAN;
    return qwen3_zero1_sum(g, &h) ? NAN : h;
}

/* ZeRO-1: this rank's masters' sum, summed over the ranks (a collective) */
extern "C" double qwen3_cuda_param_sumsq(struct qwen3_cuda *g) {
    double h = g->z_n ? sumsq(g, g->params, g->z_n, "weight norm") : 0;
    if (isnan(h) && g->err[0]) return NAN;
    return qwen3_zero1_sum(g, &h) ? NAN : h;
}

/* Weight i everywhere this rank keeps it: the master (if owned), the bf16
 * copy and, for a norm weight, the replica. Every rank calls it alike. */
extern "C" int qwen3_cuda_set_param(struct qwen3_cuda *g, size_t i, float v) {
    if (i >= g->n_params) return gfail(g, "set_param: index out of range");
    int owned = i >= g->z_lo && i < g->z_lo + g->z_n;
    float *f = owned ? g->params + (i - g->z_lo) : g->stage; /* not owned: ZeRO-1 or frozen, which have stage */
    if (cudaMemcpy(f, &v, 4, cudaMemcpyHostToDevice) != cudaSuccess) return gcheck(g, "set_param");
    k_f32_to_bf16(g->st, g->params_b + i, f, 1);
    for (int k = 0; g->vecs && k < 5; k++)
        if (i >= g->vspan[k].at && i < g->vspan[k].at + g->vspan[k].n &&
            cudaMemcpy(g->vecs + g->vspan[k].to + (i - g->vspan[k].at), &v, 4, cudaMemcpyHostToDevice) != cudaSuccess)
            return gcheck(g, "set_param");
    if (cudaStreamSynchronize(g->st) != cudaSuccess) return gcheck(g, "set_param");
    return gcheck(g, "set_param");
}

/* The moments down, whole. ZeRO-1: every rank's shard is gathered through
 * the staging buffer (a collective: every rank calls this, and every rank
 * gets the whole m and v). */
extern "C" int qwen3_cuda_adamw_get(struct qwen3_cuda *g, float *m, float *v, long *step) {
    if (!g->adam_m) return gfail(g, "AdamW: not initialised");
    if (gather_to_host(g, g->adam_m, m, "AdamW state to host") || gather_to_host(g, g->adam_v, v, "AdamW state to host"))
        return -1;
    *step = g->opt_step;
    return 0;
}

/* The moments up, whole (n_params each, as adamw_get gives them and
 * optimizer.bin holds them). ZeRO-1: each rank keeps its shard; no
 * collective, and the padding's moments are zero. */
extern "C" int qwen3_cuda_adamw_set(struct qwen3_cuda *g, const float *m, const float *v, long step) {
    if (!g->adam_m) return gfail(g, "AdamW: not initialised");
    size_t lo = g->z_lo, n = g->z_n, P = g->n_params, real = lo < P ? (lo + n < P ? n : P - lo) : 0;
    if (real && (cudaMemcpy(g->adam_m, m + lo, real * 4, cudaMemcpyHostToDevice) != cudaSuccess ||
                 cudaMemcpy(g->adam_v, v + lo, real * 4, cudaMemcpyHostToDevice) != cudaSuccess))
        return gcheck(g, "AdamW state to device");
    if (real < n) {
        cudaMemset(g->adam_m + real, 0, (n - real) * 4);
        cudaMemset(g->adam_v + real, 0, (n - real) * 4);
    }
    g->opt_step = step;
    return gcheck(g, "AdamW state to device");
}

/* The snapshot is this rank's masters and moments, 3 * z_n floats (the
 * whole state without ZeRO-1, one shard's with it); taking it is no
 * collective. The host copy (snapshot_host): synchronous copies through
 * pageable memory, one transfer per piece. */
static int snapshot_to_host(struct qwen3_cuda *g, int back) {
    size_t n = g->z_n;
    if (!g->snap_h) {
        if (back) return gfail(g, "restore: no snapshot");
        g->snap_h = (float *)malloc(3 * n * 4);
        if (!g->snap_h) return gfail(g, "snapshot: out of host memory for %.2f GiB", 3 * n * 4 / 1073741824.0);
    }
    float *dev[3] = {g->params, g->adam_m, g->adam_v};
    for (int i = 0; i < 3; i++) {
        if (!dev[i]) continue;
        cudaError_t e = back ? cudaMemcpy(dev[i], g->snap_h + i * n, n * 4, cudaMemcpyHostToDevice)
                             : cudaMemcpy(g->snap_h + i * n, dev[i], n * 4, cudaMemcpyDeviceToHost);
        if (e != cudaSuccess) return gcheck(g, back ? "restore from host" : "snapshot to host");
    }
    return 0;
}

extern "C" int qwen3_cuda_snapshot(struct qwen3_cuda *g) {
    size_t n = g->z_n;
    if (refuse_frozen(g, "snapshot")) return -1;
    g->snap_step = g->opt_step;
    if (g->snap_host) return snapshot_to_host(g, 0);
    if (!g->snap && dalloc(g, (void **)&g->snap, 3 * n * 4, "snapshot")) return -1;
    float *dev[3] = {g->params, g->adam_m, g->adam_v};
    for (int i = 0; i < 3; i++)
        if (dev[i]) cudaMemcpyAsync(g->snap + i * n, dev[i], n * 4, cudaMemcpyDeviceToDevice, g->st);
    if (cudaStreamSynchronize(g->st) != cudaSuccess) return gcheck(g, "snapshot");
    return gcheck(g, "snapshot");
}

/* The snapshot back, then the bf16 copy (and under ZeRO-1 the other ranks'
 * shards of it and the norm replica: a collective, which viv train's
 * NaN-skip reaches on every rank alike). */
extern "C" int qwen3_cuda_restore(struct qwen3_cuda *g) {
    size_t n = g->z_n;
    if (g->snap_host) {
        if (snapshot_to_host(g, 1)) return -1;
    } else {
        if (!g->snap) return gfail(g, "restore: no snapshot");
        float *dev[3] = {g->params, g->adam_m, g->adam_v};
        for (int i = 0; i < 3; i++)
            if (dev[i]) cudaMemcpyAsync(dev[i], g->snap + i * n, n * 4, cudaMemcpyDeviceToDevice, g->st);
    }
    k_f32_to_bf16(g->st, g->params_b + g->z_lo, g->params, n);
    g->opt_step = g->snap_step;
    g->has_forward = 0;
    if (refresh_replicas(g)) return -1;
    if (cudaStreamSynchronize(g->st) != cudaSuccess) return gcheck(g, "restore");
    return gcheck(g, "restore");
}
