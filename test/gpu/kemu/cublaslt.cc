/*
 * cublaslt.cc - kemu's cuBLASLt (see cublasLt.h beside it): descriptors as
 * small heap objects, and cublasLtMatmul as the column-major product it is
 * documented to be.
 */
#include "cublasLt.h"

#include <stdlib.h>
#include <string.h>

struct kemu_lt_handle {
    int unused;
};
struct kemu_lt_pref {
    size_t workspace;
};

template <typename T> static cublasStatus_t make(T **p) {
    *p = (T *)calloc(1, sizeof(T));
    return *p ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { return make(h); }
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) { return free(h), CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale) {
    if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    return make(d);
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { return free(d), CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                              const void *buf, size_t n) {
    if (n != sizeof(cublasOperation_t)) return CUBLAS_STATUS_INVALID_VALUE;
    cublasOperation_t v;
    memcpy(&v, buf, n);
    if (v != CUBLAS_OP_N && v != CUBLAS_OP_T) return CUBLAS_STATUS_INVALID_VALUE;
    if (a == CUBLASLT_MATMUL_DESC_TRANSA) d->transa = v;
    else if (a == CUBLASLT_MATMUL_DESC_TRANSB) d->transb = v;
    else return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
    if (ld < (int64_t)rows || rows == 0 || cols == 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (make(l) != CUBLAS_STATUS_SUCCESS) return CUBLAS_STATUS_NOT_SUPPORTED;
    (*l)->type = type, (*l)->rows = rows, (*l)->cols = cols, (*l)->ld = ld;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { return free(l), CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) { return make(p); }
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { return free(p), CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a, const void *buf,
                                                    size_t n) {
    if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
        if (n != sizeof(size_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&p->workspace, buf, n);
        return CUBLAS_STATUS_SUCCESS;
    }
    return n == sizeof(uint32_t) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

/* op(X)'s shape from X's stored layout */
static void op_shape(const kemu_lt_layout *l, cublasOperation_t op, uint64_t *r, uint64_t *c) {
    *r = op == CUBLAS_OP_N ? l->rows : l->cols;
    *c = op == CUBLAS_OP_N ? l->cols : l->rows;
}

static cublasStatus_t check_shapes(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                   cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d) {
    uint64_t m, k, k2, n;
    op_shape(a, op->transa, &m, &k);
    op_shape(b, op->transb, &k2, &n);
    if (k != k2 || c->rows != m || c->cols != n || d->rows != m || d->cols != n) return CUBLAS_STATUS_INVALID_VALUE;
    if (a->type != CUDA_R_16BF || b->type != CUDA_R_16BF || c->type != d->type) return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t op,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t p, int requested,
                                              cublasLtMatmulHeuristicResult_t *out, int *found) {
    (void)h, (void)p;
    *found = 0;
    if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    cublasStatus_t s = check_shapes(op, a, b, c, d);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    memset(out, 0, sizeof *out);
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}

static float get(const void *p, cudaDataType_t t, size_t i) {
    return t == CUDA_R_32F ? ((const float *)p)[i] : __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t op, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta,
                              const void *C, cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspace_bytes,
                              cudaStream_t st) {
    (void)h, (void)algo, (void)workspace, (void)workspace_bytes, (void)st;
    cublasStatus_t s = check_shapes(op, la, lb, lc, ld);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    uint64_t m = ld->rows, n = ld->cols, k, dummy;
    op_shape(la, op->transa, &dummy, &k);
    float al = *(const float *)alpha, be = *(const float *)beta;
    float *out = (float *)malloc(m * n * sizeof(float)); /* D may be C */
    if (!out) return CUBLAS_STATUS_NOT_SUPPORTED;
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            float acc = 0;
            for (uint64_t x = 0; x < k; x++) {
                size_t ia = op->transa == CUBLAS_OP_N ? i + x * la->ld : x + i * la->ld;
                size_t ib = op->transb == CUBLAS_OP_N ? x + j * lb->ld : j + x * lb->ld;
                acc += get(A, la->type, ia) * get(B, lb->type, ib);
            }
            float v = al * acc;
            if (be != 0) v += be * get(C, lc->type, i + j * lc->ld);
            out[i + j * m] = v;
        }
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            size_t o = i + j * ld->ld;
            if (ld->type == CUDA_R_32F) ((float *)D)[o] = out[i + j * m];
            else ((__nv_bfloat16 *)D)[o] = __float2bfloat16(out[i + j * m]);
        }
    free(out);
    return CUBLAS_STATUS_SUCCESS;
}
