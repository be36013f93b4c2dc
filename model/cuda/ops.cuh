/*
 * ops.cuh - the CUDA building blocks of qwen3_cuda.cu (internal).
 *
 * Types: bf16 = __nv_bfloat16. Every launcher queues work on `st` and
 * returns nothing; errors surface at the next checked CUDA call (CUDA errors
 * are sticky), which qwen3_cuda.cu checks after each phase.
 *
 * Layouts are the CPU model's (qwen3.c): row-major, rows = tokens (b*T + t),
 * heads laid out inside a row as [H, hd].
 */
#ifndef VIV_MODEL_CUDA_OPS_CUH
#define VIV_MODEL_CUDA_OPS_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

/* ---- matmul (matmul.cu), cuBLASLt, row-major semantics ----------------------------
 * D[M,N] = alpha * op(A)[M,K] . op(B)[K,N] + beta * C, where op(A) = A ([M,K])
 * or A^T (A stored [K,M], ta = 1) and op(B) = B ([K,N]) or B^T (B stored
 * [N,K], tb = 1). A and B are bf16, accumulation fp32, D is bf16 or fp32
 * (d_f32); C (same type as D) may be D itself (accumulate) or another
 * buffer (out-of-place residual add), or NULL with beta = 0.
 *   forward  out = inp . W^T     ta=0 tb=1
 *   dinp     dinp = dout . W     ta=0 tb=0
 *   dW      dW += dout^T . inp   ta=1 tb=0, beta=1 */
struct mm_algo_entry; /* matmul.cu: heuristic results cached by shape */
struct mm_ctx {
    cublasLtHandle_t lt;
    void *workspace;
    size_t workspace_size;
    struct mm_algo_entry *cache;
    int n_cache;
};
/* the workspace mm_ctx_init allocates for cuBLASLt (it asks for up to 32 MiB on Hopper) */
#define MM_WORKSPACE_BYTES ((size_t)32 << 20)
int mm_ctx_init(struct mm_ctx *c, char *err, size_t errlen);
void mm_ctx_free(struct mm_ctx *c);
int mm(struct mm_ctx *c, cudaStream_t st, void *D, int d_f32, const bf16 *A, int ta, const bf16 *B, int tb, int M,
       int N, int K, float beta, const void *C);

/* ---- elementwise and row kernels (kernels.cu) ------------------------------------- */
void k_f32_to_bf16(cudaStream_t st, bf16 *out, const float *in, size_t n);
void k_embed_fwd(cudaStream_t st, float *out, const int32_t *ids, const bf16 *embed, int N, int D);
void k_embed_bwd(cudaStream_t st, float *dembed, const int32_t *ids, const float *dres, int N, int D);
/* y = w * x / sqrt(mean(x^2) + eps) per row of D: x fp32, w fp32, y bf16, rstd fp32 (may be NULL) */
void k_rmsnorm_fwd(cudaStream_t st, bf16 *y, float *rstd, const float *x, const float *w, int N, int D, float eps);
/* RMSNorm backward. dx (fp32) += rstd*(dy*w - xhat*mean(dy*w*xhat)); dxb (bf16,
 * may be NULL) gets a copy of the updated dx; dw += sum over rows dy*xhat. */
void k_rmsnorm_bwd(cudaStream_t st, float *dx, bf16 *dxb, float *dw, const float *dy, const float *x, const float *w,
                   const float *rstd, int N, int D);
/* Per head (rows of hd within [N, H*hd]): q_norm/k_norm then half-split RoPE.
 * pos[r] (NULL: r % T) is the position of token row r. */
void k_headnorm_rope_fwd(cudaStream_t st, bf16 *y, float *rstd, const bf16 *x, const float *w, int N, int H, int hd,
                         float eps, const int *pos, int T, const float *cosv, const float *sinv);
/* Backward of the above: d (fp32, [N, H*hd], the gradient after RoPE) is
 * rotated back, then dxb (bf16, overwritten) = RMSNorm backward, dw += . */
void k_headnorm_rope_bwd(cudaStream_t st, bf16 *dxb, float *dw, const float *d, const bf16 *x, const float *w,
                         const float *rstd, int N, int H, int hd, int T, const float *cosv, const float *sinv);
void k_swiglu_fwd(cudaStream_t st, bf16 *h, const bf16 *gate, const bf16 *up, size_t n);
void k_swiglu_bwd(cudaStream_t st, bf16 *dgate, bf16 *dup, const float *dh, const bf16 *gate, const bf16 *up, size_t n);
/* Fused softmax + cross-entropy, never storing probabilities:
 * forward:  lse[r] = logsumexp(logits[r]); logp[r] = logits[r][t] - lse (0 if t < 0)
 * backward: dl[r][i] = coef[r] * (onehot(t) - p_i) - went[r] * p_i * (log p_i + H_r) in bf16,
 *           p_i = exp(logits[r][i] - lse[r]), H_r the row's entropy (the entropy
 *           bonus' term, dH/dz_i = -p_i (log p_i + H), as model/qwen3.c's
 *           dlogits_worker; went NULL = none, coef ignored where t < 0) */
void k_xent_fwd(cudaStream_t st, float *lse, float *logp, const float *logits, const int32_t *targets, int N, int V);
void k_xent_bwd(cudaStream_t st, bf16 *dlogits, const float *logits, const float *lse, const int32_t *targets,
                const float *coef, const float *went, int N, int V);
/* ent[r] = entropy of softmax(logits[r]) = lse[r] - sum_i p_i logits[r][i] */
void k_xent_entropy(cudaStream_t st, float *ent, const float *logits, const float *lse, int N, int V);
/* sum of squares of x into *out (double, device; must be zeroed first) */
void k_sumsq(cudaStream_t st, double *out, const float *x, size_t n);
/* AdamW on [n] with decay factor, clip, step size, sqrt(1-b2^t); writes p and pb (bf16 copy). */
void k_adamw(cudaStream_t st, float *p, bf16 *pb, const float *g, float *m, float *v, size_t n, float decay,
             float clip, float b1, float b2, float step_size, float bc2_sqrt, float eps);
/* copy rows of kvd from src[i] into the cache at row dst_row[i] */
void k_kv_store(cudaStream_t st, bf16 *cache, const bf16 *src, const int64_t *dst_row, int n, int kvd);
void k_gather_rows(cudaStream_t st, float *out, const float *in, const int *rows, int n, int D);

/* ---- attention (attention.cu) ------------------------------------------------------
 * Causal attention with GQA, flash-style (training: tensor-core tiles,
 * attention_tc.cu, for the usual head sizes; otherwise and for decode: one
 * warp per (token, query head), keys visited 32 at a time, attention.cu),
 * with an online softmax, so no
 * T x T score matrix exists anywhere; the backward recomputes the scores from
 * the saved log-sum-exp. Query head h reads kv head h / (Hq / Hkv).
 *   training: q [B*T, Hq*hd], k/v [B*T, Hkv*hd]; row b*T+t sees keys b*T+0..t
 *   decode:   row r sees keys 0..pos[r] of cache rows kv_row0[r] + t */
void k_attn_fwd(cudaStream_t st, bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T,
                int Hq, int Hkv, int hd);
void k_attn_bwd(cudaStream_t st, float *dq, float *dk, bf16 *dv, float *dsum, const float *dout, const bf16 *out,
                const float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T, int Hq, int Hkv, int hd);
void k_attn_decode(cudaStream_t st, bf16 *out, const bf16 *q, const bf16 *kcache, const bf16 *vcache,
                   const int64_t *kv_row0, const int *pos, int n, int Hq, int Hkv, int hd);
/* k_attn_fwd/k_attn_bwd run the tensor-core kernels of attention_tc.cu
 * (attn_use_tc(hd): hd in {16, 32, 64, 128} and VIV_ATTN is not "warp"),
 * else the CUDA-core ones above. The two paths, callable directly to compare
 * them (same arguments and results; lse is the natural-log log-sum-exp of
 * the scaled scores in both, so a forward of one pairs with a backward of
 * the other). The _tc ones return -1 (launching nothing) for an hd they do
 * not support. k_attn_dsum: dsum[u] = dout[u,:] . out[u,:] for u < units
 * rows of hd, the backward's first step in both. */
int attn_use_tc(int hd);
int attn_tc_supported(int hd);
void k_attn_fwd_warp(cudaStream_t st, bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B,
                     int T, int Hq, int Hkv, int hd);
void k_attn_bwd_warp(cudaStream_t st, float *dq, float *dk, bf16 *dv, float *dsum, const float *dout, const bf16 *out,
                     const float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T, int Hq, int Hkv,
                     int hd);
int k_attn_fwd_tc(cudaStream_t st, bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T,
                  int Hq, int Hkv, int hd);
int k_attn_bwd_tc(cudaStream_t st, float *dq, float *dk, bf16 *dv, float *dsum, const float *dout, const bf16 *out,
                  const float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T, int Hq, int Hkv, int hd);
void k_attn_dsum(cudaStream_t st, float *dsum, const float *dout, const bf16 *out, long units, int hd);

#endif
