/*
 * matmul.cu - the model's matrix products through cuBLASLt (see ops.cuh).
 *
 * cuBLASLt is column-major; a row-major X[r, c] is the column-major matrix
 * X' of shape (c x r). So the row-major product D = op(A) . op(B) [M, N] is
 * computed as the column-major D' (N x M) = op(B)' . op(A)': cuBLASLt's
 * first operand is our B and its second our A.
 *   B not transposed (stored [K, N]) = column-major (N x K), ld N, op N
 *   B transposed     (stored [N, K]) = column-major (K x N), ld K, op T
 *   A not transposed (stored [M, K]) = column-major (K x M), ld K, op N
 *   A transposed     (stored [K, M]) = column-major (M x K), ld M, op T
 * bf16 inputs, fp32 compute (CUBLAS_COMPUTE_32F), D and C bf16 or fp32.
 */
#include "ops.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_MAX 512

/* The heuristic query costs tens of microseconds and a training step makes
 * ~600 matmul calls over a few dozen distinct shapes, so its answer is kept
 * per (shape, transposes, output type, beta != 0, operand alignments). */
struct mm_algo_entry {
    int M, N, K, ta, tb, d_f32, has_beta;
    uint32_t align[4];
    cublasLtMatmulAlgo_t algo;
};

int mm_ctx_init(struct mm_ctx *c, char *err, size_t errlen) {
    c->lt = NULL;
    c->workspace = NULL;
    c->workspace_size = 0;
    c->n_cache = 0;
    c->cache = (struct mm_algo_entry *)calloc(CACHE_MAX, sizeof *c->cache);
    if (!c->cache) {
        snprintf(err, errlen, "out of host memory");
        return -1;
    }
    cublasStatus_t s = cublasLtCreate(&c->lt);
    if (s != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, errlen, "cublasLtCreate: status %d", (int)s);
        return -1;
    }
    cudaError_t e = cudaMalloc(&c->workspace, MM_WORKSPACE_BYTES);
    if (e != cudaSuccess) {
        snprintf(err, errlen, "cuBLASLt workspace: %s", cudaGetErrorString(e));
        cublasLtDestroy(c->lt);
        c->lt = NULL;
        return -1;
    }
    c->workspace_size = MM_WORKSPACE_BYTES;
    return 0;
}

void mm_ctx_free(struct mm_ctx *c) {
    free(c->cache);
    c->cache = NULL;
    c->n_cache = 0;
    if (c->workspace) cudaFree(c->workspace);
    if (c->lt) cublasLtDestroy(c->lt);
    c->workspace = NULL;
    c->lt = NULL;
}

/* Largest power of two (<= 256) dividing the address: the heuristic is told
 * how aligned each operand really is (it assumes 256 bytes otherwise, and a
 * weight slice inside the parameter block may be less aligned). */
static uint32_t align_of(const void *p) {
    uint32_t a = 256;
    while (a > 1 && ((uintptr_t)p % a)) a >>= 1;
    return a;
}

int mm(struct mm_ctx *c, cudaStream_t st, void *D, int d_f32, const bf16 *A, int ta, const bf16 *B, int tb, int M,
       int N, int K, float beta, const void *C) {
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasOperation_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLASLt's A is our B */
    cublasOperation_t opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cudaDataType_t dt = d_f32 ? CUDA_R_32F : CUDA_R_16BF;
    float alpha = 1.0f;
    int rc = -1, found = 0;
    cublasLtMatmulHeuristicResult_t heur;
    if (cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS) goto out;
    if (cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb) != CUBLAS_STATUS_SUCCESS)
        goto out;
    /* layouts before the op: rows x cols (column-major), leading dimension */
    if (cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, tb ? K : N, tb ? N : K, tb ? K : N) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, ta ? M : K, ta ? K : M, ta ? M : K) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatrixLayoutCreate(&lc, dt, N, M, N) != CUBLAS_STATUS_SUCCESS)
        goto out;
    {
        uint32_t al[4] = {align_of(B), align_of(A), align_of(C ? C : D), align_of(D)};
        int has_beta = beta != 0.0f;
        const cublasLtMatmulAlgo_t *algo = NULL;
        for (int i = 0; i < c->n_cache && !algo; i++) {
            const struct mm_algo_entry *e = &c->cache[i];
            if (e->M == M && e->N == N && e->K == K && e->ta == ta && e->tb == tb && e->d_f32 == d_f32 &&
                e->has_beta == has_beta && !memcmp(e->align, al, sizeof al))
                algo = &e->algo;
        }
        if (!algo) {
            if (cublasLtMatmulPreferenceCreate(&pref) != CUBLAS_STATUS_SUCCESS) goto out;
            if (cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &c->workspace_size,
                                                     sizeof c->workspace_size) != CUBLAS_STATUS_SUCCESS ||
                cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0],
                                                     sizeof al[0]) != CUBLAS_STATUS_SUCCESS ||
                cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1],
                                                     sizeof al[1]) != CUBLAS_STATUS_SUCCESS ||
                cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2],
                                                     sizeof al[2]) != CUBLAS_STATUS_SUCCESS ||
                cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[3],
                                                     sizeof al[3]) != CUBLAS_STATUS_SUCCESS)
                goto out;
            if (cublasLtMatmulAlgoGetHeuristic(c->lt, op, la, lb, lc, lc, pref, 1, &heur, &found) !=
                    CUBLAS_STATUS_SUCCESS ||
                found == 0)
                goto out;
            algo = &heur.algo;
            if (c->n_cache < CACHE_MAX) {
                struct mm_algo_entry *e = &c->cache[c->n_cache++];
                *e = (struct mm_algo_entry){M, N, K, ta, tb, d_f32, has_beta, {al[0], al[1], al[2], al[3]}, heur.algo};
            }
        }
        if (cublasLtMatmul(c->lt, op, &alpha, B, la, A, lb, &beta, C ? C : D, lc, D, lc, algo, c->workspace,
                           c->workspace_size, st) != CUBLAS_STATUS_SUCCESS)
            goto out;
    }
    rc = 0;
out:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    return rc;
}
