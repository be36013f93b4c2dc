/*
 * backend.h - the few model calls the trainer makes (rl/sft.c,
 * rl/grpo_step.c, rl/train.c), behind one small table of function pointers,
 * so a single trainer runs on the CPU model (model/qwen3.h) or on the GPU
 * (model/cuda/qwen3_cuda.h) with `--device cpu|cuda`.
 *
 *   rl/backend_cpu.c    over struct qwen3 and adamw.h (every viv)
 *   rl/backend_cuda.c   over struct qwen3_cuda (bin/viv-cuda, VIV_CUDA);
 *                       in bin/viv it only answers that CUDA is not built in
 *
 * The host model b->m is the weights of record on the CPU and a mirror on
 * the GPU: sync_down() copies the GPU's weights and AdamW state into b->m
 * and b->opt (before a checkpoint is written), sync_up() the other way
 * (after a checkpoint was loaded into them). b->opt.step counts the steps
 * taken on either device.
 *
 * Data parallel (bin/viv-cuda under mpirun): b->rank / b->world;
 * reduce_grads() averages the gradients over the ranks, allreduce_sum()
 * adds a few doubles over the ranks, bcast() copies rank 0's bytes. On the
 * CPU (and with one rank) these are no-ops. With ZeRO-1 (--zero1) each
 * rank keeps 1/world of the AdamW moments; then opt_step, grads_finite
 * (after reduce_grads) and sync_down are collectives that every rank must
 * call (a checkpoint's sync_down runs on every rank, rank 0 writes).
 */
#ifndef VIV_RL_BACKEND_H
#define VIV_RL_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "../model/adamw.h"
#include "../model/qwen3.h"
#include "model_gen.h"

struct train_backend;

struct train_backend_ops {
    /* forward over ids [B*T]: mean cross-entropy of the targets >= 0 (0
     * without targets), NAN on error; the log-probs of the targets stay for
     * last_logprobs, the logits for entropy_sum and the backward */
    float (*forward)(struct train_backend *b, const int32_t *ids, const int32_t *targets, int B, int T);
    int (*last_logprobs)(struct train_backend *b, float *out); /* [B*T], 0 where target < 0 */
    /* sum over the rows with targets[r] >= 0 of the entropy of the last
     * forward's next-token distribution; *count += those rows */
    int (*entropy_sum)(struct train_backend *b, const int32_t *targets, double *sum, long *count);
    /* per-row entropies [B*T] of the last forward (0 where targets[r] < 0) */
    int (*entropy_rows)(struct train_backend *b, const int32_t *targets, float *out);
    void (*zero_grad)(struct train_backend *b);
    int (*backward)(struct train_backend *b);                          /* of the mean cross-entropy */
    int (*backward_logprobs)(struct train_backend *b, const float *coef); /* of sum(coef * logp) */
    /* of sum(coef * logp) + sum(went * H), H each row's entropy (the entropy
     * bonus; went NULL = none) */
    int (*backward_logprobs_entropy)(struct train_backend *b, const float *coef, const float *went);
    int (*grads_finite)(struct train_backend *b);
    int (*params_finite)(struct train_backend *b);
    int (*set_param)(struct train_backend *b, size_t i, float v); /* tests: poison one weight */
    /* AdamW (adamw.h): init (re)starts the moments; step returns the norm before clipping */
    int (*opt_init)(struct train_backend *b, const struct adamw_config *c);
    float (*opt_step)(struct train_backend *b, float *lr);
    /* remember / bring back weights + AdamW state (NaN recovery) */
    int (*snapshot)(struct train_backend *b);
    int (*restore)(struct train_backend *b);
    int (*sync_down)(struct train_backend *b);
    int (*sync_up)(struct train_backend *b);
    /* a frozen copy of the current weights (the KL reference), or NULL with
     * b->err; only forward and last_logprobs are for it (cuda: its m is b's,
     * lent for the layout, so free it before b) */
    struct train_backend *(*fork)(struct train_backend *b);
    /* the KV-cache decode rl/model_gen.c samples from */
    void (*gen_model)(struct train_backend *b, struct gen_model *out);
    /* data parallel */
    int (*reduce_grads)(struct train_backend *b);
    int (*allreduce_sum)(struct train_backend *b, double *v, int n);
    int (*bcast)(struct train_backend *b, void *buf, size_t n);
    void (*free)(struct train_backend *b); /* frees the backend, not b->m */
};

struct train_backend {
    const struct train_backend_ops *ops;
    const char *device; /* "cpu" or "cuda" */
    struct qwen3 *m;    /* the host model (not owned) */
    struct adamw opt;   /* the host AdamW state (the real one on the CPU) */
    int rank, world;
    void *impl;
    char desc[200]; /* how it trains, for the log: "" or e.g. " (ZeRO-1: ...; recompute)" */
    char err[256];
};

/* A backend over the CPU model m (not owned). Never fails. */
struct train_backend *train_backend_cpu(struct qwen3 *m);

/* "cpu" or "cuda". For cuda: the model's weights are copied to the GPU;
 * in a viv built without CUDA this fails saying to use bin/viv-cuda.
 * NULL with err. */
struct train_backend *train_backend_open(const char *device, struct qwen3 *m, char *err, size_t errlen);

/* Options of the cuda backend (viv train / viv sft --zero1 --recompute);
 * "cpu" refuses any of them. */
struct train_backend_opts {
    int zero1;     /* ZeRO-1: AdamW moments sharded over the data-parallel ranks (model/cuda/dist.cu) */
    int recompute; /* keep only each layer's input, recompute the rest in backward */
    int host_snapshot; /* keep the NaN-recovery snapshot in host memory, not on the device */
};
/* train_backend_open with options (o NULL: none). */
struct train_backend *train_backend_open_opts(const char *device, struct qwen3 *m, const struct train_backend_opts *o,
                                              char *err, size_t errlen);

/* 1 if this viv has the CUDA backend (bin/viv-cuda) */
int train_backend_cuda_built(void);
/* CUDA devices this process can use: 0 with why (no driver, no device, or
 * not built with CUDA) */
int train_backend_cuda_devices(char *why, size_t whylen);

/* Data parallel start-up for --device cuda under mpirun (MPI + NCCL);
 * world 1 otherwise. Call once before train_backend_open. 0 or -1 with err. */
int train_dist_init(int *argc, char ***argv, int *rank, int *world, char *err, size_t errlen);
/* failed: this rank is ending on an error; with several ranks the whole job
 * is aborted (the others may be waiting in a collective) */
void train_dist_finalize(int failed);
/* rank 0's n bytes to every rank / wait for every rank (no-ops in a world of one) */
int train_dist_bcast(void *buf, size_t n);
int train_dist_barrier(void);

static inline void train_backend_free(struct train_backend *b) {
    if (b) b->ops->free(b);
}

#endif
