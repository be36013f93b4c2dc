/*
 * qwen3_cuda.h - the Qwen3 model of qwen3.h on an NVIDIA GPU.
 *
 * The same model and the same training API as the CPU backend, so a trainer
 * picks one with --device cpu|cuda:
 *
 *   CPU (qwen3.h)                  CUDA (this file)
 *   qwen3_load / qwen3_create      qwen3_cuda_create(cpu_model)   (weights copied up)
 *   qwen3_forward                  qwen3_cuda_forward
 *   qwen3_logits                   qwen3_cuda_logits              (copied down)
 *   qwen3_logprobs                 qwen3_cuda_logprobs
 *   qwen3_zero_grad / backward     qwen3_cuda_zero_grad / qwen3_cuda_backward
 *   qwen3_backward_logprobs        qwen3_cuda_backward_logprobs
 *   qwen3_backward_logprobs_entropy qwen3_cuda_backward_logprobs_entropy
 *   adamw_step (adamw.h)           qwen3_cuda_adamw_step
 *   qwen3_save (after)             qwen3_cuda_to_host(g, cpu_model) then qwen3_save
 *   qwen3_kv_*                     qwen3_cuda_kv_*
 *
 * Precision: the optimiser owns fp32 master weights (same layout and offsets
 * as struct qwen3's parameter block) and keeps a bf16 copy that the matmuls
 * read; matmuls (cuBLASLt) take bf16 inputs and accumulate in fp32; the
 * residual stream, norm statistics, logits, gradients and AdamW moments are
 * fp32; the other activations are bf16. RMSNorm weights are read from the
 * fp32 masters.
 *
 * Memory: logits are kept as fp32 [B*T, V] (the log-probs the RL trainer
 * needs are read from them) plus a bf16 [B*T, V] buffer for their gradient;
 * at V = 151936 that is 0.9 MiB per token, the largest activation. With
 * recompute = 1 only each layer's input (fp32 [B*T, D]) is kept and the rest
 * of a layer is recomputed during backward (about one extra forward).
 *
 * Every function returns an error (or NAN / NULL) with a message in the
 * handle's err buffer (qwen3_cuda_error) rather than exiting; a CUDA error is
 * sticky, so a handle that failed once should be freed.
 *
 * NOTE: this backend was written and compiled without access to a GPU; see
 * test/gpu/ for the checks that have to pass on one before it is trusted.
 */
#ifndef VIV_MODEL_QWEN3_CUDA_H
#define VIV_MODEL_QWEN3_CUDA_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" { /* the CPU model's headers are C */
#endif

#include "../adamw.h"
#include "../qwen3.h"
#include "../sample.h"

struct qwen3_cuda;
struct qwen3_cuda_kv;

struct qwen3_cuda_opts {
    int device;    /* CUDA device ordinal; -1 = from the launcher (local MPI rank) or 0 */
    int recompute; /* 1: keep only layer inputs, recompute the rest in backward */
    int snapshot_host; /* 1: qwen3_cuda_snapshot keeps its copy in host memory (saves
                        * (n_params + 2 moments) * 4 bytes of device memory; each
                        * snapshot/restore then crosses PCIe) */
    /* 1: ZeRO-1 under data parallel (dist.cu): each of the W ranks keeps the
     * fp32 masters and AdamW moments of 1/W of the parameters only (saving
     * (W-1)/W of their 12 bytes a parameter). Needs qwen3_dist_init first;
     * with one rank it is off. */
    int zero1;
    size_t stage_floats; /* ZeRO-1's staging buffer; 0: 64 MiB (tests make it small) */
    /* 1: a handle that is never trained (viv train's KL reference): no fp32
     * masters, gradients or moments, only the bf16 copy and the norm
     * weights' fp32 replica (2 bytes a parameter instead of 6); backward,
     * AdamW, snapshots and to_host are refused. Never a collective. */
    int frozen;
    /* Rows of logits held at once (0: all of a forward's rows while the
     * logits and their gradient, 6 bytes each, stay within 4 GiB; more rows
     * go in chunks of that many, the backward recomputing each chunk's
     * logits but the last). Tests make it small. */
    int logit_rows;
};

/* Number of usable CUDA devices; 0 when there is no driver or no device
 * (why, if not NULL, gets the reason). Never fails otherwise. */
int qwen3_cuda_device_count(char *why, size_t whylen);
/* Name and memory of the current device, for logs ("NVIDIA H100 80GB HBM3, 79.1 GiB"). */
int qwen3_cuda_device_name(int device, char *out, size_t outlen);

/* Copy the weights of a CPU model up. The CPU model is not referenced later. */
struct qwen3_cuda *qwen3_cuda_create(const struct qwen3 *cpu, const struct qwen3_cuda_opts *o, char *err,
                                     size_t errlen);
/* A frozen handle (opts.frozen) holding g's current weights, copied on the
 * device (no host copy, no collective: under ZeRO-1 the bf16 copy and norm
 * weights are whole on every rank); layout: the host model g was made from,
 * read for its config and offsets only. Same recompute and logit chunking. */
struct qwen3_cuda *qwen3_cuda_fork_frozen(struct qwen3_cuda *g, const struct qwen3 *layout, char *err, size_t errlen);
void qwen3_cuda_free(struct qwen3_cuda *g);
const char *qwen3_cuda_error(const struct qwen3_cuda *g);
const struct qwen3_config *qwen3_cuda_config(const struct qwen3_cuda *g);
size_t qwen3_cuda_n_params(const struct qwen3_cuda *g);

/* As qwen3_forward: mean weighted cross-entropy (0 without targets, NAN on
 * error). Log-probs of the targets stay on the device until asked for. */
float qwen3_cuda_forward(struct qwen3_cuda *g, const int32_t *ids, const int32_t *targets, const float *mask, int B,
                         int T);
/* Copy the last forward's logits [B*T, V] / log-probs [B*T] down. */
int qwen3_cuda_logits(struct qwen3_cuda *g, float *out);
int qwen3_cuda_last_logprobs(struct qwen3_cuda *g, float *out);
/* Forward, then the log-probs of targets into out [B*T] (0 where target < 0). */
int qwen3_cuda_logprobs(struct qwen3_cuda *g, const int32_t *ids, const int32_t *targets, int B, int T, float *out);

void qwen3_cuda_zero_grad(struct qwen3_cuda *g);
int qwen3_cuda_backward(struct qwen3_cuda *g);
int qwen3_cuda_backward_logprobs(struct qwen3_cuda *g, const float *coef);
/* qwen3_backward_logprobs_entropy: plus sum_i went[i] * H_i (went NULL = none) */
int qwen3_cuda_backward_logprobs_entropy(struct qwen3_cuda *g, const float *coef, const float *went);
/* Copy the fp32 gradients down (n_params floats, struct qwen3's layout).
 * With ZeRO-1, after the reduce-scatter only this rank's shard holds the
 * average; the rest is this rank's own gradients. */
int qwen3_cuda_grads_to_host(struct qwen3_cuda *g, float *out);

/* AdamW exactly as adamw.h (torch.optim.AdamW with global-norm clipping),
 * applied to the fp32 masters; the bf16 copy is refreshed in the same pass.
 * Returns the gradient norm before clipping, NAN on error. With ZeRO-1 the
 * step is a collective (every rank calls it, after qwen3_cuda_allreduce_grads):
 * each rank updates its shard and the bf16 shards are all-gathered (dist.cu). */
int qwen3_cuda_adamw_init(struct qwen3_cuda *g, const struct adamw_config *c);
float qwen3_cuda_adamw_step(struct qwen3_cuda *g, float *lr_out);
/* ZeRO-1: the number of parameters whose masters and moments this rank keeps (a
 * multiple of 256; the ranks' shards tile the block padded to W times it)
 * and where its shard starts (*lo); 0 when ZeRO-1 is off. */
size_t qwen3_cuda_zero1_shard(const struct qwen3_cuda *g, size_t *lo);
/* 1 when this handle recomputes activations in backward (opts.recompute) */
int qwen3_cuda_recomputes(const struct qwen3_cuda *g);

/* Copy the fp32 master weights down into cpu (same config), for qwen3_save.
 * With ZeRO-1 the shards are gathered (a collective: every rank calls it and
 * every rank gets the whole block). */
int qwen3_cuda_to_host(struct qwen3_cuda *g, struct qwen3 *cpu);

/* ---- memory planning ---------------------------------------------------------------
 * The device memory a training handle will hold for a config at B x T, as
 * this backend allocates it (no device needed): fp32 gradients and the bf16
 * copy (padded to the ZeRO-1 shards), fp32 masters and AdamW m and v (this
 * rank's shard with zero1 and world > 1, then also the norm weights' fp32
 * replica), the NaN-recovery snapshot viv train keeps (snapshot = 1), the
 * activations of one forward + backward, cuBLASLt's workspace and small
 * scratch (with ZeRO-1 its 64 MiB staging buffer). Not included: the KL
 * reference (in its own field), the rollouts' KV cache
 * (qwen3_cuda_kv_create: kv_bytes_per_token per cached token, all slots),
 * the CUDA context and NCCL's buffers (a few hundred MiB). */
struct qwen3_cuda_mem {
    size_t params; /* count */
    size_t weights_f32, weights_bf16, grads, adam, snapshot, activations, workspace, scratch, total;
    size_t snapshot_host; /* the snapshot's bytes when it is kept in host memory (not in total) */
    /* the KL reference viv train forks when --kl > 0 (a frozen handle: the
     * bf16 copy, the norm replica, its own activations and workspace; not
     * in total) */
    size_t reference;
    int logit_rows; /* rows of logits held at once (the backward recomputes the others' when < B*T) */
    size_t kv_bytes_per_token;
};
int qwen3_cuda_plan_memory(const struct qwen3_config *c, int B, int T, int recompute, int world, int zero1,
                           int snapshot, struct qwen3_cuda_mem *out); /* snapshot: 0 none, 1 device, 2 host */
/* Device bytes this handle has allocated so far (what the plan predicts). */
size_t qwen3_cuda_device_bytes(const struct qwen3_cuda *g);

/* ---- what a trainer needs besides (rl/backend_cuda.c) ---------------------------- */
/* Copy cpu's weights up (same config; the bf16 copy is refreshed). With
 * ZeRO-1 each rank keeps its shard: no collective. */
int qwen3_cuda_from_host(struct qwen3_cuda *g, const struct qwen3 *cpu);
/* Entropy of the last forward's next-token distribution per row [B*T]. */
int qwen3_cuda_last_entropy(struct qwen3_cuda *g, float *out);
/* Sum of squares of the gradients / the fp32 weights (double; not finite
 * when one of them is not). NAN with the error on a CUDA failure. With
 * ZeRO-1 after the reduce-scatter the gradients' is the averaged
 * gradients' over the whole block (a collective: every rank calls it). */
double qwen3_cuda_grad_sumsq(struct qwen3_cuda *g);
/* ...of the fp32 masters: with ZeRO-1 the shards' sums, summed (a collective) */
double qwen3_cuda_param_sumsq(struct qwen3_cuda *g);
/* Set one fp32 weight (and its bf16 copy); tests poison a weight with it.
 * With ZeRO-1 every rank calls it alike (each sets what it keeps). */
int qwen3_cuda_set_param(struct qwen3_cuda *g, size_t i, float v);
/* AdamW moments (n_params floats each) and step count, down / up. With
 * ZeRO-1, get gathers the shards (a collective: every rank calls it and
 * every rank gets the whole m and v) and set keeps this rank's shard of the
 * whole m and v it is given. */
int qwen3_cuda_adamw_get(struct qwen3_cuda *g, float *m, float *v, long *step);
int qwen3_cuda_adamw_set(struct qwen3_cuda *g, const float *m, const float *v, long step);
/* Keep a device copy of the fp32 masters and AdamW state / bring it back
 * (NaN recovery: 3 * n_params more floats on the device; with ZeRO-1 this
 * rank's shards of them, 3 * shard). Each rank keeps its own: the snapshot
 * is no collective; restore is one under ZeRO-1 (the restored bf16 shards
 * are all-gathered). */
int qwen3_cuda_snapshot(struct qwen3_cuda *g);
int qwen3_cuda_restore(struct qwen3_cuda *g);

/* ---- data parallel (model/cuda/dist.c) ------------------------------------------
 * One process per GPU under mpirun / srun. qwen3_dist_init reads the MPI rank
 * and world size and sets up an NCCL communicator; without MPI+NCCL compiled
 * in (VIV_DIST=0) it reports world size 1 and the all-reduce is a no-op. */
int qwen3_dist_init(int *argc, char ***argv, int *rank, int *world, int *local_rank, char *err, size_t errlen);
/* Average the gradients over all ranks (call after backward, before the
 * step); with ZeRO-1 a reduce-scatter: each rank gets the average of its
 * shard only, which is all its AdamW step reads. */
int qwen3_cuda_allreduce_grads(struct qwen3_cuda *g);
/* Broadcast rank 0's weights so every rank starts identical. cpu: the host
 * model the handle was created from, which ZeRO-1 reads on rank 0 (no rank
 * has the whole fp32 block on the device). */
int qwen3_cuda_broadcast_weights(struct qwen3_cuda *g, const struct qwen3 *cpu);
void qwen3_dist_finalize(void);
int qwen3_dist_compiled(void); /* 1 when built with MPI + NCCL */
/* Host-side collectives over MPI_COMM_WORLD for the trainer (no-ops in a
 * world of one): v[0..n) summed over the ranks in place; rank 0's n bytes
 * copied to every rank. 0 or -1. */
int qwen3_dist_allreduce_sum(double *v, int n);
int qwen3_dist_bcast(void *buf, size_t n);
/* End every rank now (one rank failed; the others may wait in a collective). */
void qwen3_dist_abort(int code);

/* ---- inference with a per-sequence KV cache -------------------------------------
 * Same contract as qwen3_kv_forward: n rows, token[i] for slot[i], logits of
 * the rows with want[i] (NULL = all) written to host logits_out, V floats each.
 * The cache holds bf16 keys (after k_norm and RoPE) and values. */
struct qwen3_cuda_kv *qwen3_cuda_kv_create(struct qwen3_cuda *g, int n_slots, int max_T, char *err, size_t errlen);
void qwen3_cuda_kv_free(struct qwen3_cuda_kv *kv);
void qwen3_cuda_kv_reset(struct qwen3_cuda_kv *kv, int slot);
/* Keep the first len positions of a slot (len < its length; 0 = reset). */
void qwen3_cuda_kv_truncate(struct qwen3_cuda_kv *kv, int slot, int len);
int qwen3_cuda_kv_len(const struct qwen3_cuda_kv *kv, int slot);
int qwen3_cuda_kv_forward(struct qwen3_cuda *g, struct qwen3_cuda_kv *kv, const int32_t *token, const int *slot,
                          int n, const uint8_t *want, float *logits_out, char *err, size_t errlen);

/* qwen3_generate (sample.h) on the GPU: same sampling, same stats. */
int qwen3_cuda_generate(struct qwen3_cuda *g, const int32_t *prompt, int n_prompt, const struct gen_opts *o,
                        gen_token_fn on_token, void *user, struct gen_stats *st, char *err, size_t errlen);

/* ---- the training attention kernels alone (attn_probe.cu; CUDA builds only) ----
 * One causal GQA attention forward + backward on host arrays, through the
 * kernels training uses (QWEN3_ATTN_AUTO), the CUDA-core ones (WARP) or the
 * tensor-core ones (TC; hd 16, 32, 64 or 128). q [B*T, Hq*hd], k/v
 * [B*T, Hkv*hd] are rounded to bf16 on the way in; dout [B*T, Hq*hd] is the
 * gradient of out; out, lse [B*T, Hq], dq, dk, dv come back as floats (out
 * and dv hold bf16 values). For tests; 0 or -1 with err. */
enum { QWEN3_ATTN_AUTO = 0, QWEN3_ATTN_WARP = 1, QWEN3_ATTN_TC = 2 };
int qwen3_cuda_attn_probe(int path, int B, int T, int Hq, int Hkv, int hd, const float *q, const float *k,
                          const float *v, const float *dout, float *out, float *lse, float *dq, float *dk, float *dv,
                          char *err, size_t errlen);
/* Mean milliseconds of one forward and one backward of a path on random data
 * (after one warm-up), for test/bench. */
int qwen3_cuda_attn_bench(int path, int B, int T, int Hq, int Hkv, int hd, int iters, double *fwd_ms, double *bwd_ms,
                          char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
