/*
 * backend_cuda.c - the trainer's backend (rl/backend.h) over the GPU model
 * (model/cuda/qwen3_cuda.h), and train_backend_open / train_dist_init for
 * both builds.
 *
 * Built with VIV_CUDA (bin/viv-cuda, and the hostsim test build) it copies
 * the host model up once, trains there (bf16 matmuls, fp32 masters, AdamW
 * on the device) and copies the weights and moments down only for a
 * checkpoint (sync_down). Rollouts decode through qwen3_cuda_kv_forward
 * behind rl/model_gen.c's gen_model, so sampling, slots, stop strings and
 * the temperature-1 log-probs are the CPU generator's code.
 *
 * Data parallel: train_dist_init runs qwen3_dist_init (MPI + NCCL);
 * reduce_grads averages the gradients with NCCL (qwen3_cuda_allreduce_grads:
 * an all-reduce, or with ZeRO-1 a reduce-scatter, the AdamW step then
 * all-gathering the updated bf16 shards), allreduce_sum / bcast are MPI on
 * the host. With one rank they do nothing. Under ZeRO-1 sync_down gathers
 * the weight and moment shards to every rank (all ranks call it, as they
 * do params_finite and restore); sync_up keeps each rank's shard. The KL
 * reference (fork) is a frozen handle: bf16 weights, no masters.
 *
 * Without VIV_CUDA (bin/viv) only train_backend_open's "cpu" works; "cuda"
 * says to use bin/viv-cuda.
 */
#define _GNU_SOURCE
#include "backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"

#ifdef VIV_CUDA
#include "../model/cuda/qwen3_cuda.h"

static int g_rank = 0, g_world = 1, g_local = 0, g_dist = 0; /* g_local: this rank's GPU */

struct cuda_impl {
    struct qwen3_cuda *g;
    int rows;            /* B*T of the last forward */
    long snap_step;      /* b->opt.step at the snapshot */
};

static struct qwen3_cuda *G(struct train_backend *b) { return ((struct cuda_impl *)b->impl)->g; }

static int fail(struct train_backend *b) {
    snprintf(b->err, sizeof b->err, "%s", qwen3_cuda_error(G(b)));
    return -1;
}

static float cu_forward(struct train_backend *b, const int32_t *ids, const int32_t *targets, int B, int T) {
    struct cuda_impl *c = b->impl;
    float l = qwen3_cuda_forward(c->g, ids, targets, NULL, B, T);
    c->rows = isnan(l) ? 0 : B * T;
    if (isnan(l)) fail(b);
    return l;
}

static int cu_last_logprobs(struct train_backend *b, float *out) {
    return qwen3_cuda_last_logprobs(G(b), out) ? fail(b) : 0;
}

/* entropy of the rows with a target, from the device's per-row entropies */
static int cu_entropy_sum(struct train_backend *b, const int32_t *targets, double *sum, long *count) {
    struct cuda_impl *c = b->impl;
    if (c->rows <= 0) return snprintf(b->err, sizeof b->err, "entropy: no forward"), -1;
    float *ent = xmalloc((size_t)c->rows * sizeof *ent);
    if (qwen3_cuda_last_entropy(c->g, ent)) {
        free(ent);
        return fail(b);
    }
    for (int r = 0; r < c->rows; r++)
        if (targets[r] >= 0) *sum += ent[r], (*count)++;
    free(ent);
    return 0;
}

static void cu_zero_grad(struct train_backend *b) { qwen3_cuda_zero_grad(G(b)); }
static int cu_backward(struct train_backend *b) { return qwen3_cuda_backward(G(b)) ? fail(b) : 0; }
static int cu_backward_logprobs(struct train_backend *b, const float *coef) {
    return qwen3_cuda_backward_logprobs(G(b), coef) ? fail(b) : 0;
}

/* per-row entropies from the device, 0 where there is no target */
static int cu_entropy_rows(struct train_backend *b, const int32_t *targets, float *out) {
    struct cuda_impl *c = b->impl;
    if (c->rows <= 0) return snprintf(b->err, sizeof b->err, "entropy: no forward"), -1;
    if (qwen3_cuda_last_entropy(c->g, out)) return fail(b);
    for (int r = 0; r < c->rows; r++)
        if (targets[r] < 0) out[r] = 0;
    return 0;
}

static int cu_backward_logprobs_entropy(struct train_backend *b, const float *coef, const float *went) {
    return qwen3_cuda_backward_logprobs_entropy(G(b), coef, went) ? fail(b) : 0;
}
static int cu_grads_finite(struct train_backend *b) { return isfinite(qwen3_cuda_grad_sumsq(G(b))); }
static int cu_params_finite(struct train_backend *b) { return isfinite(qwen3_cuda_param_sumsq(G(b))); }
static int cu_set_param(struct train_backend *b, size_t i, float v) {
    return qwen3_cuda_set_param(G(b), i, v) ? fail(b) : 0;
}

/* The host adamw keeps the config and the step count; its moments are
 * filled by sync_down only. */
static int cu_opt_init(struct train_backend *b, const struct adamw_config *c) {
    if (b->opt.m) adamw_free(&b->opt);
    if (adamw_init(&b->opt, c, b->m->n_params) != 0) return snprintf(b->err, sizeof b->err, "AdamW: out of memory"), -1;
    return qwen3_cuda_adamw_init(G(b), c) ? fail(b) : 0;
}

static float cu_opt_step(struct train_backend *b, float *lr) {
    float n = qwen3_cuda_adamw_step(G(b), lr);
    if (isnan(n) && qwen3_cuda_error(G(b))[0]) fail(b);
    b->opt.step++;
    return n;
}

static int cu_snapshot(struct train_backend *b) {
    ((struct cuda_impl *)b->impl)->snap_step = b->opt.step;
    return qwen3_cuda_snapshot(G(b)) ? fail(b) : 0;
}
static int cu_restore(struct train_backend *b) {
    if (qwen3_cuda_restore(G(b))) return fail(b);
    struct cuda_impl *c = b->impl;
    c->rows = 0;
    b->opt.step = c->snap_step; /* the host step count follows the device's */
    return 0;
}

static int cu_sync_down(struct train_backend *b) {
    if (qwen3_cuda_to_host(G(b), b->m)) return fail(b);
    if (b->opt.m && qwen3_cuda_adamw_get(G(b), b->opt.m, b->opt.v, &b->opt.step)) return fail(b);
    return 0;
}

static int cu_sync_up(struct train_backend *b) {
    if (qwen3_cuda_from_host(G(b), b->m)) return fail(b);
    if (b->opt.m && qwen3_cuda_adamw_set(G(b), b->opt.m, b->opt.v, b->opt.step)) return fail(b);
    return 0;
}

/* ---- the GPU as rl/model_gen.c's gen_model ---------------------------------------- */

static void *cu_kv_create(void *ctx, int n_slots, int max_T, char *err, size_t errlen) {
    return qwen3_cuda_kv_create(ctx, n_slots, max_T, err, errlen);
}
static void cu_kv_free(void *kv) { qwen3_cuda_kv_free(kv); }
static int cu_kv_len(const void *kv, int slot) { return qwen3_cuda_kv_len(kv, slot); }
static void cu_kv_truncate(void *kv, int slot, int len) { qwen3_cuda_kv_truncate(kv, slot, len); }
static int cu_kv_forward(void *ctx, void *kv, const int32_t *token, const int *slot, int n, const uint8_t *want,
                         float *logits, char *err, size_t errlen) {
    return qwen3_cuda_kv_forward(ctx, kv, token, slot, n, want, logits, err, errlen);
}

static void cu_gen_model(struct train_backend *b, struct gen_model *out) {
    *out = (struct gen_model){.ctx = G(b), .vocab_size = b->m->cfg.vocab_size, .kv_create = cu_kv_create,
                              .kv_free = cu_kv_free, .kv_len = cu_kv_len, .kv_truncate = cu_kv_truncate,
                              .kv_forward = cu_kv_forward};
}

/* ---- data parallel ---------------------------------------------------------------- */

static int cu_reduce_grads(struct train_backend *b) {
    if (b->world == 1) return 0;
    return qwen3_cuda_allreduce_grads(G(b)) ? fail(b) : 0;
}
static int cu_allreduce_sum(struct train_backend *b, double *v, int n) {
    if (b->world == 1) return 0;
    if (qwen3_dist_allreduce_sum(v, n)) return snprintf(b->err, sizeof b->err, "MPI_Allreduce failed"), -1;
    return 0;
}
static int cu_bcast(struct train_backend *b, void *buf, size_t n) {
    if (b->world == 1) return 0;
    if (qwen3_dist_bcast(buf, n)) return snprintf(b->err, sizeof b->err, "MPI_Bcast failed"), -1;
    return 0;
}

static void cu_free(struct train_backend *b) {
    struct cuda_impl *c = b->impl;
    qwen3_cuda_free(c->g);
    free(c);
    if (b->opt.m) adamw_free(&b->opt);
    free(b);
}

static struct train_backend *cu_fork(struct train_backend *b);

static const struct train_backend_ops cuda_ops = {
    .forward = cu_forward, .last_logprobs = cu_last_logprobs, .entropy_sum = cu_entropy_sum, .entropy_rows = cu_entropy_rows,
    .zero_grad = cu_zero_grad, .backward = cu_backward, .backward_logprobs = cu_backward_logprobs,
    .backward_logprobs_entropy = cu_backward_logprobs_entropy,
    .grads_finite = cu_grads_finite, .params_finite = cu_params_finite, .set_param = cu_set_param,
    .opt_init = cu_opt_init, .opt_step = cu_opt_step, .snapshot = cu_snapshot, .restore = cu_restore,
    .sync_down = cu_sync_down, .sync_up = cu_sync_up, .fork = cu_fork, .gen_model = cu_gen_model,
    .reduce_grads = cu_reduce_grads, .allreduce_sum = cu_allreduce_sum, .bcast = cu_bcast, .free = cu_free,
};

static struct train_backend *cuda_open(struct qwen3 *m, const struct train_backend_opts *bo, char *err, size_t errlen) {
    struct qwen3_cuda_opts o = {.device = g_local, .recompute = bo ? bo->recompute : 0, .zero1 = bo ? bo->zero1 : 0,
                                .snapshot_host = bo ? bo->host_snapshot : 0};
    struct qwen3_cuda *g = qwen3_cuda_create(m, &o, err, errlen);
    if (!g) return NULL;
    struct train_backend *b = xcalloc(1, sizeof *b);
    struct cuda_impl *c = xcalloc(1, sizeof *c);
    c->g = g;
    b->ops = &cuda_ops, b->device = "cuda", b->m = m, b->impl = c;
    b->rank = g_rank, b->world = g_world;
    size_t lo, shard = qwen3_cuda_zero1_shard(g, &lo);
    int rc = qwen3_cuda_recomputes(g);
    /* the log's "( ...; ...)" after "training and decoding on cuda" */
    char zpart[128] = "";
    if (shard) snprintf(zpart, sizeof zpart, "ZeRO-1: each rank keeps the fp32 masters and AdamW moments of %zu of %zu parameters", shard,
                        m->n_params);
    else if (bo && bo->zero1) snprintf(zpart, sizeof zpart, "--zero1: one rank, nothing to shard");
    const char *parts[3] = {zpart[0] ? zpart : NULL, rc ? "activation recompute" : NULL,
                            bo && bo->host_snapshot ? "NaN snapshot in host memory" : NULL};
    size_t at = 0;
    for (int i = 0; i < 3; i++)
        if (parts[i] && at < sizeof b->desc)
            at += (size_t)snprintf(b->desc + at, sizeof b->desc - at, "%s%s", at ? "; " : " (", parts[i]);
    if (at && at < sizeof b->desc) snprintf(b->desc + at, sizeof b->desc - at, ")");
    /* every rank starts from rank 0's weights */
    if (b->world > 1 && qwen3_cuda_broadcast_weights(g, m)) {
        snprintf(err, errlen, "%s", qwen3_cuda_error(g));
        cu_free(b);
        return NULL;
    }
    return b;
}

static struct train_backend *cu_fork(struct train_backend *b) {
    /* the reference: the current device weights, copied on the device into a
     * frozen handle (bf16 copy and norm weights, no fp32 masters or
     * gradients); b->m only lends its layout, and f->m is b->m's */
    struct qwen3_cuda *g = qwen3_cuda_fork_frozen(G(b), b->m, b->err, sizeof b->err);
    if (!g) return NULL;
    struct train_backend *f = xcalloc(1, sizeof *f);
    struct cuda_impl *c = xcalloc(1, sizeof *c);
    c->g = g;
    f->ops = &cuda_ops, f->device = "cuda", f->m = b->m, f->impl = c;
    f->rank = b->rank, f->world = b->world;
    return f;
}

int train_backend_cuda_built(void) { return 1; }

int train_backend_cuda_devices(char *why, size_t whylen) { return qwen3_cuda_device_count(why, whylen); }

int train_dist_init(int *argc, char ***argv, int *rank, int *world, char *err, size_t errlen) {
    if (!g_dist) {
        if (qwen3_dist_init(argc, argv, &g_rank, &g_world, &g_local, err, errlen) != 0) return -1;
        g_dist = 1;
    }
    *rank = g_rank, *world = g_world;
    return 0;
}

void train_dist_finalize(int failed) {
    if (g_dist && failed && g_world > 1) {
        fprintf(stderr, "viv: rank %d failed: aborting all %d ranks\n", g_rank, g_world);
        qwen3_dist_abort(1);
    }
    if (g_dist) qwen3_dist_finalize();
    g_dist = 0;
}

int train_dist_bcast(void *buf, size_t n) { return g_dist && g_world > 1 ? qwen3_dist_bcast(buf, n) : 0; }

int train_dist_barrier(void) {
    double one = 1;
    return g_dist && g_world > 1 ? qwen3_dist_allreduce_sum(&one, 1) : 0;
}

#else /* bin/viv: no CUDA */

int train_backend_cuda_built(void) { return 0; }

int train_backend_cuda_devices(char *why, size_t whylen) {
    snprintf(why, whylen, "this viv was built without CUDA; use bin/viv-cuda");
    return 0;
}

int train_dist_init(int *argc, char ***argv, int *rank, int *world, char *err, size_t errlen) {
    (void)argc, (void)argv, (void)err, (void)errlen;
    *rank = 0, *world = 1;
    return 0;
}

void train_dist_finalize(int failed) { (void)failed; }

int train_dist_bcast(void *buf, size_t n) {
    (void)buf, (void)n;
    return 0;
}

int train_dist_barrier(void) { return 0; }

#endif

struct train_backend *train_backend_open(const char *device, struct qwen3 *m, char *err, size_t errlen) {
    return train_backend_open_opts(device, m, NULL, err, errlen);
}

struct train_backend *train_backend_open_opts(const char *device, struct qwen3 *m, const struct train_backend_opts *o,
                                              char *err, size_t errlen) {
    if (!strcmp(device, "cpu")) {
        if (o && (o->zero1 || o->recompute || o->host_snapshot))
            return snprintf(err, errlen, "%s needs --device cuda",
                            o->zero1 ? "--zero1" : o->recompute ? "--recompute" : "--host-snapshot"), NULL;
        return train_backend_cpu(m);
    }
    if (strcmp(device, "cuda")) return snprintf(err, errlen, "--device must be cpu or cuda, not '%s'", device), NULL;
#ifdef VIV_CUDA
    return cuda_open(m, o, err, errlen);
#else
    (void)m, (void)o;
    snprintf(err, errlen, "--device cuda: this viv was built without CUDA; use bin/viv-cuda "
                          "(./build.sh --cuda or `make cuda` where nvcc is installed)");
    return NULL;
#endif
}
