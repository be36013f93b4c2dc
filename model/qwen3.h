/*
 * qwen3.h - the Qwen3 decoder-only transformer on the CPU, in fp32.
 *
 * Architecture (transformers' modeling_qwen3.py):
 *   x = embed[ids]
 *   per layer:  h = x + o_proj(attn(rope(q_norm(q_proj(n))), rope(k_norm(k_proj(n))), v_proj(n)))
 *                   with n = input_layernorm(x), causal softmax(q.k / sqrt(head_dim)), GQA
 *               x = h + down_proj(silu(gate_proj(m)) * up_proj(m)),  m = post_attention_layernorm(h)
 *   logits = lm_head(norm(x))       (lm_head = embed when tie_word_embeddings)
 * RMSNorm(x) = w * x / sqrt(mean(x^2) + eps); q_norm/k_norm act on each head's
 * head_dim vector; RoPE rotates the two halves of each head (rotate_half).
 *
 * Memory follows llm.c: one block for all parameters, one (same layout) for
 * their gradients, one for the activations of a B x T batch. The training
 * API is forward -> (zero_grad) -> backward -> optimiser step on
 * m->params / m->grads (n_params floats each). Inference uses a KV cache
 * (struct qwen3_kv) holding any number of sequences ("slots").
 *
 * Threads: every call spreads its work over one process-wide pool
 * (kernels.h, VIV_THREADS); call the model from one thread at a time, and
 * not from a child forked after the pool started.
 */
#ifndef VIV_MODEL_QWEN3_H
#define VIV_MODEL_QWEN3_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "safetensors.h"

/* Pointers into the parameter (or gradient) block; per-layer tensors are
 * stacked over layers, e.g. wq holds L matrices of [Hq*hd, D]. */
struct qwen3_weights {
    float *embed;   /* [V, D] */
    float *ln1;     /* [L, D] input_layernorm */
    float *wq;      /* [L, Hq*hd, D] */
    float *wk;      /* [L, Hkv*hd, D] */
    float *wv;      /* [L, Hkv*hd, D] */
    float *wo;      /* [L, D, Hq*hd] */
    float *qnorm;   /* [L, hd] */
    float *knorm;   /* [L, hd] */
    float *ln2;     /* [L, D] post_attention_layernorm */
    float *wgate;   /* [L, F, D] */
    float *wup;     /* [L, F, D] */
    float *wdown;   /* [L, D, F] */
    float *lnf;     /* [D] model.norm */
    float *lm_head; /* [V, D]; == embed when tied */
};

/* One named tensor of the checkpoint (HF name, shape, offset in the block). */
struct qwen3_tensor {
    char name[80];
    size_t offset, numel;
    int ndim;
    int64_t shape[2];
    int is_matrix; /* weight decay applies to matrices, not norm weights */
};

struct qwen3_acts; /* activations of the last forward (qwen3.c) */

struct qwen3 {
    struct qwen3_config cfg;
    float *params, *grads; /* n_params floats each; grads NULL until needed */
    size_t n_params;
    struct qwen3_weights w, g;
    struct qwen3_tensor *tensors;
    int n_tensors;
    /* last forward */
    int B, T, cap_BT;
    struct qwen3_acts *acts;
    float *acts_mem;
    int32_t *ids, *targets; /* copies of the last forward's inputs */
    float *mask;            /* loss weights of the last forward */
    size_t acts_floats;
    float loss;
    float *logprobs; /* [B*T] log p(targets[i] | ids[..i]); 0 where target < 0 */
};

/* Create with all parameters zero (use qwen3_init_random or load after). */
struct qwen3 *qwen3_create(const struct qwen3_config *c, char *err, size_t errlen);
/* The number of parameters (floats) qwen3_create would allocate for c. */
size_t qwen3_param_count(const struct qwen3_config *c);
/* Load a Hugging Face directory: config.json + safetensors (see safetensors.h). */
struct qwen3 *qwen3_load(const char *dir, char *err, size_t errlen);
void qwen3_free(struct qwen3 *m);
/* Gaussian init (std) of matrices, ones for norm weights; deterministic. */
void qwen3_init_random(struct qwen3 *m, uint64_t seed, float std);
/* Write config.json, model.safetensors (ST_F32 or ST_BF16) and
 * generation_config.json into dir (created if missing), each atomically. */
int qwen3_save(const struct qwen3 *m, const char *dir, enum st_dtype dtype, char *err, size_t errlen);

/* Training forward over B sequences of length T (ids [B*T]). With targets
 * ([B*T], < 0 = ignore) it fills m->logprobs and returns the mean
 * cross-entropy over positions weighted by mask ([B*T] weights, NULL = 1 for
 * every target >= 0); without targets it returns 0. Logits stay in
 * qwen3_logits(m) until the next forward or backward (backward turns them
 * into their gradient). Memory: the activations of B x T tokens, including
 * B*T*vocab logits (attention keeps only B*heads*T floats per layer).
 * Returns NAN on bad arguments. */
float qwen3_forward(struct qwen3 *m, const int32_t *ids, const int32_t *targets, const float *mask, int B, int T);
float *qwen3_logits(struct qwen3 *m); /* [B*T, V] of the last forward */
/* Per-token log-probs of targets under the model (runs a forward). */
int qwen3_logprobs(struct qwen3 *m, const int32_t *ids, const int32_t *targets, int B, int T, float *out);

void qwen3_zero_grad(struct qwen3 *m);
/* Accumulate into m->grads the gradient of the last forward's loss. */
int qwen3_backward(struct qwen3 *m);
/* Accumulate the gradient of sum_i coef[i] * logprobs[i] (the RL trainer's
 * objective: coef = dJ/dlogp per token). */
int qwen3_backward_logprobs(struct qwen3 *m, const float *coef);
/* As qwen3_backward_logprobs plus sum_i went[i] * H_i, H_i the entropy of
 * the next-token distribution at position i (went [B*T], NULL = none; rows
 * without a target still take their entropy term). GRPO's entropy bonus:
 * went = dJ/dH per token. */
int qwen3_backward_logprobs_entropy(struct qwen3 *m, const float *coef, const float *went);

/* ---- inference with a KV cache --------------------------------------------- */

struct qwen3_kv {
    int n_slots, max_T;
    int *len;     /* tokens cached per slot */
    float *k, *v; /* [L, n_slots, Hkv, max_T, hd]: keys after k_norm and RoPE */
    float *rope_cos, *rope_sin; /* [max_T, hd/2] */
    /* scratch for up to cap_rows tokens per call */
    int cap_rows;
    float *scratch;
};

struct qwen3_kv *qwen3_kv_create(const struct qwen3 *m, int n_slots, int max_T, char *err, size_t errlen);
void qwen3_kv_free(struct qwen3_kv *kv);
void qwen3_kv_reset(struct qwen3_kv *kv, int slot);
/* Feed n tokens: token[i] goes to slot[i] at position kv->len[slot[i]]
 * (tokens for the same slot are taken in order, so a prompt is fed as n
 * rows of one slot and a decode step as one row for each of many slots).
 * For every i with want[i] != 0 (want NULL = all) the logits of that row are
 * written to logits_out in order, V floats each. Returns 0, or -1 (slot
 * full / bad arguments) with err. */
int qwen3_kv_forward(const struct qwen3 *m, struct qwen3_kv *kv, const int32_t *token, const int *slot, int n,
                     const uint8_t *want, float *logits_out, char *err, size_t errlen);

#endif
