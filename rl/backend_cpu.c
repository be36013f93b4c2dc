/*
 * backend_cpu.c - the trainer's backend (rl/backend.h) over the CPU model
 * (model/qwen3.h) and AdamW (model/adamw.h): each call is the model's own.
 * The weights of record are b->m's, the optimizer b->opt; sync_down /
 * sync_up have nothing to copy and the data-parallel calls are a world of one.
 */
#define _GNU_SOURCE
#include "backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"

struct cpu_impl {
    float *snap_p, *snap_m, *snap_v; /* snapshot(): weights and moments */
    long snap_step;
    int has_snap;
    int owns_model; /* a fork's reference model is freed with its backend */
};

static float cpu_forward(struct train_backend *b, const int32_t *ids, const int32_t *targets, int B, int T) {
    return qwen3_forward(b->m, ids, targets, NULL, B, T);
}

static int cpu_last_logprobs(struct train_backend *b, float *out) {
    if (!b->m->logprobs) return snprintf(b->err, sizeof b->err, "logprobs: no forward"), -1;
    memcpy(out, b->m->logprobs, (size_t)b->m->B * b->m->T * sizeof(float));
    return 0;
}

/* H = log Z - E_p[x - max] with Z = sum exp(x - max), of one row. */
static double row_entropy(const float *x, int V) {
    float mx = x[0];
    for (int j = 1; j < V; j++) mx = x[j] > mx ? x[j] : mx;
    double z = 0, ez = 0;
    for (int j = 0; j < V; j++) {
        double p = exp((double)(x[j] - mx));
        z += p, ez += p * (double)(x[j] - mx);
    }
    return log(z) - ez / z;
}

static int cpu_entropy_sum(struct train_backend *b, const int32_t *targets, double *sum, long *count) {
    const float *lg = qwen3_logits(b->m);
    int V = b->m->cfg.vocab_size, n = b->m->B * b->m->T;
    if (!lg) return snprintf(b->err, sizeof b->err, "entropy: no forward"), -1;
    for (int r = 0; r < n; r++) {
        if (targets[r] < 0) continue;
        *sum += row_entropy(lg + (size_t)r * V, V);
        (*count)++;
    }
    return 0;
}

static int cpu_entropy_rows(struct train_backend *b, const int32_t *targets, float *out) {
    const float *lg = qwen3_logits(b->m);
    int V = b->m->cfg.vocab_size, n = b->m->B * b->m->T;
    if (!lg) return snprintf(b->err, sizeof b->err, "entropy: no forward"), -1;
    for (int r = 0; r < n; r++) out[r] = targets[r] < 0 ? 0.0f : (float)row_entropy(lg + (size_t)r * V, V);
    return 0;
}

static void cpu_zero_grad(struct train_backend *b) { qwen3_zero_grad(b->m); }
static int cpu_backward(struct train_backend *b) { return qwen3_backward(b->m); }
static int cpu_backward_logprobs(struct train_backend *b, const float *coef) {
    return qwen3_backward_logprobs(b->m, coef);
}
static int cpu_backward_logprobs_entropy(struct train_backend *b, const float *coef, const float *went) {
    return qwen3_backward_logprobs_entropy(b->m, coef, went);
}

static int all_finite(const float *x, size_t n) {
    if (!x) return 1;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}
static int cpu_grads_finite(struct train_backend *b) { return all_finite(b->m->grads, b->m->n_params); }
static int cpu_params_finite(struct train_backend *b) { return all_finite(b->m->params, b->m->n_params); }

static int cpu_set_param(struct train_backend *b, size_t i, float v) {
    if (i >= b->m->n_params) return snprintf(b->err, sizeof b->err, "set_param: index out of range"), -1;
    b->m->params[i] = v;
    return 0;
}

static int cpu_opt_init(struct train_backend *b, const struct adamw_config *c) {
    if (b->opt.m) adamw_free(&b->opt);
    if (adamw_init(&b->opt, c, b->m->n_params) != 0) return snprintf(b->err, sizeof b->err, "AdamW: out of memory"), -1;
    return 0;
}

static float cpu_opt_step(struct train_backend *b, float *lr) { return adamw_step(&b->opt, b->m, lr); }

static int cpu_snapshot(struct train_backend *b) {
    struct cpu_impl *c = b->impl;
    size_t P = b->m->n_params;
    if (!c->snap_p) {
        c->snap_p = xmalloc(P * sizeof(float));
        c->snap_m = xmalloc(P * sizeof(float)), c->snap_v = xmalloc(P * sizeof(float));
    }
    memcpy(c->snap_p, b->m->params, P * sizeof(float));
    if (b->opt.m) memcpy(c->snap_m, b->opt.m, P * sizeof(float)), memcpy(c->snap_v, b->opt.v, P * sizeof(float));
    c->snap_step = b->opt.step;
    c->has_snap = 1;
    return 0;
}

static int cpu_restore(struct train_backend *b) {
    struct cpu_impl *c = b->impl;
    size_t P = b->m->n_params;
    if (!c->has_snap) return snprintf(b->err, sizeof b->err, "restore: no snapshot"), -1;
    memcpy(b->m->params, c->snap_p, P * sizeof(float));
    if (b->opt.m) memcpy(b->opt.m, c->snap_m, P * sizeof(float)), memcpy(b->opt.v, c->snap_v, P * sizeof(float));
    b->opt.step = c->snap_step;
    return 0;
}

static int cpu_nothing(struct train_backend *b) {
    (void)b;
    return 0;
}

static void cpu_gen_model(struct train_backend *b, struct gen_model *out) { model_gen_cpu_model(b->m, out); }

static int cpu_allreduce_sum(struct train_backend *b, double *v, int n) {
    (void)b, (void)v, (void)n;
    return 0;
}
static int cpu_bcast(struct train_backend *b, void *buf, size_t n) {
    (void)b, (void)buf, (void)n;
    return 0;
}

static void cpu_free(struct train_backend *b) {
    struct cpu_impl *c = b->impl;
    if (c->owns_model) qwen3_free(b->m);
    free(c->snap_p), free(c->snap_m), free(c->snap_v), free(c);
    if (b->opt.m) adamw_free(&b->opt);
    free(b);
}

static struct train_backend *cpu_fork(struct train_backend *b);

static const struct train_backend_ops cpu_ops = {
    .forward = cpu_forward, .last_logprobs = cpu_last_logprobs, .entropy_sum = cpu_entropy_sum, .entropy_rows = cpu_entropy_rows,
    .zero_grad = cpu_zero_grad, .backward = cpu_backward, .backward_logprobs = cpu_backward_logprobs,
    .backward_logprobs_entropy = cpu_backward_logprobs_entropy,
    .grads_finite = cpu_grads_finite, .params_finite = cpu_params_finite, .set_param = cpu_set_param,
    .opt_init = cpu_opt_init, .opt_step = cpu_opt_step, .snapshot = cpu_snapshot, .restore = cpu_restore,
    .sync_down = cpu_nothing, .sync_up = cpu_nothing, .fork = cpu_fork, .gen_model = cpu_gen_model,
    .reduce_grads = cpu_nothing, .allreduce_sum = cpu_allreduce_sum, .bcast = cpu_bcast, .free = cpu_free,
};

struct train_backend *train_backend_cpu(struct qwen3 *m) {
    struct train_backend *b = xcalloc(1, sizeof *b);
    b->ops = &cpu_ops;
    b->device = "cpu";
    b->m = m;
    b->rank = 0, b->world = 1;
    b->impl = xcalloc(1, sizeof(struct cpu_impl));
    return b;
}

static struct train_backend *cpu_fork(struct train_backend *b) {
    struct qwen3 *ref = qwen3_create(&b->m->cfg, b->err, sizeof b->err);
    if (!ref) return NULL;
    memcpy(ref->params, b->m->params, b->m->n_params * sizeof(float));
    struct train_backend *f = train_backend_cpu(ref);
    ((struct cpu_impl *)f->impl)->owns_model = 1;
    return f;
}
