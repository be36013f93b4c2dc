/*
 * qwen3_cuda_internal.cuh - the handle behind qwen3_cuda.h (internal to
 * model/cuda: qwen3_cuda.cu, infer.cu, dist.c reads only through the API).
 */
#ifndef VIV_MODEL_CUDA_INTERNAL_CUH
#define VIV_MODEL_CUDA_INTERNAL_CUH

#include "ops.cuh"
#include "qwen3_cuda.h"

extern "C" {
#include "../qwen3_ops.h"
}

/* Device weights: fp32 master (f) and bf16 copy (f_b) of each stacked tensor. */
struct wptr {
    float *embed, *ln1, *wq, *wk, *wv, *wo, *qnorm, *knorm, *ln2, *wgate, *wup, *wdown, *lnf, *lm_head;
    bf16 *embed_b, *ln1_b, *wq_b, *wk_b, *wv_b, *wo_b, *qnorm_b, *knorm_b, *ln2_b, *wgate_b, *wup_b, *wdown_b, *lnf_b,
        *lm_head_b;
};

/* Activations of the last forward and backward scratch (one device block). */
struct acts {
    float *resid;                     /* [L+1, N, D] layer inputs (kept even with recompute) */
    float *xm;                        /* [S, N, D] residual after attention */
    bf16 *ln1, *q, *k, *v, *qr, *kr; /* [S, N, ...] */
    float *rstd1, *qrstd, *krstd;
    bf16 *ao;
    float *lse_att; /* [S, N, Hq] attention log-sum-exp */
    bf16 *ln2, *gate, *up, *hm;
    float *rstd2;
    bf16 *lnf;
    float *rstdf, *logits, *lse, *logp, *coef, *went;
    float *ent; /* [N] per-row entropy (filled by a chunked forward, or on demand) */
    int32_t *ids, *targets;
    float *rope_cos, *rope_sin;
    /* backward scratch */
    bf16 *dlogits, *dres_b, *dgate, *dup, *dv, *dq, *dk;
    float *dres, *dln, *dhm, *dao, *dsum, *dqr, *dkr;
};

/* One layer's view of the saved activations. */
struct layer_acts {
    float *x, *out, *xm, *rstd1, *qrstd, *krstd, *lse, *rstd2;
    bf16 *ln1, *q, *k, *v, *qr, *kr, *ao, *ln2, *gate, *up, *hm;
};

/* A span of the parameter block kept in a compact replica (the norm weights). */
struct vspan {
    size_t at, n, to; /* block offset, length, offset in the replica */
};

struct qwen3_cuda {
    struct qwen3_config cfg;
    int device, recompute;
    cudaStream_t st;
    struct mm_ctx mm;
    size_t n_params;
    struct qwen3_tensor *tensors;
    int n_tensors;
    /* ZeRO-1 (dist.cu). Off: z_lo = 0, z_n = n_alloc = n_params, this rank
     * owns everything. On (world W > 1): the parameter block is padded to
     * n_alloc = W * z_n (z_n a multiple of 256) and this rank owns the
     * contiguous shard [z_lo, z_lo + z_n), z_lo = rank * z_n: its fp32
     * masters and AdamW moments exist here only.
     * grads_reduced: the gradients were reduce-scattered since the last
     * backward / zero_grad (only this rank's shard holds the average). */
    int zero1, z_rank, z_world, grads_reduced;
    size_t z_lo, z_n, n_alloc;
    /* A frozen handle (qwen3_cuda_opts.frozen: the KL reference) owns no
     * masters (z_n = 0) and keeps the bf16 copy and the norm replica only;
     * it refuses backward, AdamW, snapshots and to_host. */
    int frozen;
    float *params;   /* fp32 masters of the owned range [z_n]: params[i - z_lo] is weight i */
    bf16 *params_b;  /* bf16 copy of the whole block, which the matmuls read [n_alloc] */
    float *grads;    /* fp32 [n_alloc], NULL until the first backward / zero_grad */
    float *adam_m, *adam_v; /* [z_n]: the moments of the owned range */
    /* The norm weights, which the kernels read in fp32: with ZeRO-1 (or
     * frozen) a whole replica of them [n_vec] (ln1, qnorm, knorm, ln2, lnf,
     * at vspan[k].to), refreshed after every change of the masters; without,
     * w's fp32 pointers go straight into params and vecs is NULL. */
    float *vecs;
    size_t n_vec;
    struct vspan vspan[5];
    /* With vecs: device staging for the chunked transfers between the whole
     * block on the host and the shards (upload, broadcast, gather) */
    float *stage;
    size_t stage_n;
    float *snap;     /* qwen3_cuda_snapshot: masters, m and v of the owned range [z_n] each */
    int snap_host;   /* the snapshot lives in host memory (snap_h) instead */
    float *snap_h;
    long snap_step;
    void *scalar;    /* small device scratch (grad norm) */
    struct wptr w, gw; /* gw: only the fp32 fields are used */
    struct adamw_config opt;
    long opt_step;
    /* last forward */
    int B, T, cap_B, cap_T, has_forward; /* cap_B/cap_T: the shape the rope table was laid out for */
    int logit_rows_want;                 /* opts.logit_rows (0: by the memory budget) */
    int logit_rows, logit_chunks;        /* rows of logits held at once, and how many chunks the last forward took */
    char *acts_mem;
    size_t acts_bytes;
    struct acts a;
    float *h_coef; /* host [2N]: coef scratch, then the mask weights */
    float loss;
    void *comm; /* ncclComm_t when data parallel (dist.c) */
    size_t dev_bytes; /* device memory dalloc has handed out (qwen3_cuda_plan_memory checks against it) */
    char err[512];
};

struct qwen3_cuda_kv {
    int n_slots, max_T;
    int *len;            /* host: tokens cached per slot */
    bf16 *k, *v;         /* [L, n_slots, max_T, kvd] */
    float *rope_cos, *rope_sin; /* [max_T, hd/2] */
    /* per-call scratch for up to cap rows */
    int cap;
    char *scratch;
    size_t scratch_bytes;
};

#ifdef __cplusplus
extern "C" {
#endif
int gfail(struct qwen3_cuda *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int gcheck(struct qwen3_cuda *g, const char *what);
int dalloc(struct qwen3_cuda *g, void **p, size_t bytes, const char *what);
int upload_rope(struct qwen3_cuda *g, float *dcos, float *dsin, int T);
void qwen3_dist_free_comm(struct qwen3_cuda *g);
/* dist.cu: this process' rank and world (0 and 1 before qwen3_dist_init or without MPI) */
void qwen3_dist_world(int *rank, int *world);
/* dist.cu, ZeRO-1 collectives (no-ops in a world of one):
 * the sum over the ranks of one double (the gradient norm's partial sums);
 * shard [z_n] of every rank gathered into full [n_alloc] (full may be
 * shard - z_lo, in place, as NCCL allows) */
int qwen3_zero1_sum(struct qwen3_cuda *g, double *v);
int qwen3_zero1_allgather(struct qwen3_cuda *g, const float *shard, float *full);
/* every rank's bf16 shard params_b[z_lo, z_lo + z_n) into the whole params_b */
int qwen3_zero1_allgather_bf16(struct qwen3_cuda *g);
/* chunk [k] of every rank's shard into stage [k * ranks], in rank order */
int qwen3_zero1_gather_chunk(struct qwen3_cuda *g, const float *chunk, size_t k);
/* n floats of buf from rank 0 to every rank; buf summed over the ranks */
int qwen3_dist_bcast_dev(struct qwen3_cuda *g, float *buf, size_t n);
int qwen3_dist_sum_dev(struct qwen3_cuda *g, float *buf, size_t n);
#ifdef __cplusplus
}
#endif

#endif
