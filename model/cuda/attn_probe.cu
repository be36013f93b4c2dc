/*
 * attn_probe.cu - the training attention kernels alone, from C: one forward
 * + backward on given host arrays (tests compare the tensor-core path of
 * attention_tc.cu with attention.cu's and with a host reference), and a
 * timing of either path on random data (test/bench). Not used by training.
 */
#include "ops.cuh"
#include "qwen3_cuda.h"

#include <stdio.h>
#include <stdlib.h>

struct probe_bufs {
    bf16 *q, *k, *v, *out, *dv;
    float *lse, *dout, *dq, *dk, *dsum;
};

static void probe_free(struct probe_bufs *p) {
    cudaFree(p->q), cudaFree(p->k), cudaFree(p->v), cudaFree(p->out), cudaFree(p->dv);
    cudaFree(p->lse), cudaFree(p->dout), cudaFree(p->dq), cudaFree(p->dk), cudaFree(p->dsum);
}

static int probe_alloc(struct probe_bufs *p, size_t nq, size_t nkv, size_t nrow) {
    *p = probe_bufs();
    int bad = cudaMalloc((void **)&p->q, nq * sizeof(bf16)) || cudaMalloc((void **)&p->k, nkv * sizeof(bf16)) ||
              cudaMalloc((void **)&p->v, nkv * sizeof(bf16)) || cudaMalloc((void **)&p->out, nq * sizeof(bf16)) ||
              cudaMalloc((void **)&p->dv, nkv * sizeof(bf16)) || cudaMalloc((void **)&p->lse, nrow * sizeof(float)) ||
              cudaMalloc((void **)&p->dout, nq * sizeof(float)) || cudaMalloc((void **)&p->dq, nq * sizeof(float)) ||
              cudaMalloc((void **)&p->dk, nkv * sizeof(float)) || cudaMalloc((void **)&p->dsum, nrow * sizeof(float));
    if (bad) probe_free(p);
    return bad;
}

static int put_bf16(bf16 *d, const float *h, size_t n) {
    bf16 *t = (bf16 *)malloc(n * sizeof(bf16));
    if (!t) return -1;
    for (size_t i = 0; i < n; i++) t[i] = __float2bfloat16(h[i]);
    int rc = cudaMemcpy(d, t, n * sizeof(bf16), cudaMemcpyHostToDevice) != cudaSuccess;
    free(t);
    return rc;
}

static int get_bf16(float *h, const bf16 *d, size_t n) {
    bf16 *t = (bf16 *)malloc(n * sizeof(bf16));
    if (!t) return -1;
    int rc = cudaMemcpy(t, d, n * sizeof(bf16), cudaMemcpyDeviceToHost) != cudaSuccess;
    for (size_t i = 0; !rc && i < n; i++) h[i] = __bfloat162float(t[i]);
    free(t);
    return rc;
}

/* path: QWEN3_ATTN_AUTO (what training runs), _WARP or _TC */
static int run_fwd(int path, cudaStream_t st, struct probe_bufs *p, int B, int T, int Hq, int Hkv, int hd) {
    if (path == QWEN3_ATTN_TC) return k_attn_fwd_tc(st, p->out, p->lse, p->q, p->k, p->v, B, T, Hq, Hkv, hd);
    if (path == QWEN3_ATTN_WARP) k_attn_fwd_warp(st, p->out, p->lse, p->q, p->k, p->v, B, T, Hq, Hkv, hd);
    else k_attn_fwd(st, p->out, p->lse, p->q, p->k, p->v, B, T, Hq, Hkv, hd);
    return 0;
}

static int run_bwd(int path, cudaStream_t st, struct probe_bufs *p, int B, int T, int Hq, int Hkv, int hd) {
    if (path == QWEN3_ATTN_TC)
        return k_attn_bwd_tc(st, p->dq, p->dk, p->dv, p->dsum, p->dout, p->out, p->lse, p->q, p->k, p->v, B, T, Hq,
                             Hkv, hd);
    if (path == QWEN3_ATTN_WARP)
        k_attn_bwd_warp(st, p->dq, p->dk, p->dv, p->dsum, p->dout, p->out, p->lse, p->q, p->k, p->v, B, T, Hq, Hkv,
                        hd);
    else k_attn_bwd(st, p->dq, p->dk, p->dv, p->dsum, p->dout, p->out, p->lse, p->q, p->k, p->v, B, T, Hq, Hkv, hd);
    return 0;
}

static int shape_ok(int B, int T, int Hq, int Hkv, int hd, char *err, size_t errlen) {
    if (B < 1 || T < 1 || Hq < 1 || Hkv < 1 || Hq % Hkv || hd < 2 || hd > 256 || hd % 2)
        return snprintf(err, errlen, "attention probe: bad shape B=%d T=%d Hq=%d Hkv=%d hd=%d", B, T, Hq, Hkv, hd), -1;
    return 0;
}

static int cuda_fail(const char *what, char *err, size_t errlen) {
    snprintf(err, errlen, "attention probe: %s: %s", what, cudaGetErrorString(cudaGetLastError()));
    return -1;
}

extern "C" int qwen3_cuda_attn_probe(int path, int B, int T, int Hq, int Hkv, int hd, const float *q, const float *k,
                                     const float *v, const float *dout, float *out, float *lse, float *dq, float *dk,
                                     float *dv, char *err, size_t errlen) {
    if (shape_ok(B, T, Hq, Hkv, hd, err, errlen)) return -1;
    if (path == QWEN3_ATTN_TC && !attn_tc_supported(hd))
        return snprintf(err, errlen, "attention probe: no tensor-core kernel for hd=%d", hd), -1;
    size_t N = (size_t)B * T, nq = N * Hq * hd, nkv = N * Hkv * hd;
    struct probe_bufs p;
    if (probe_alloc(&p, nq, nkv, N * Hq)) return cuda_fail("cudaMalloc", err, errlen);
    int rc = put_bf16(p.q, q, nq) || put_bf16(p.k, k, nkv) || put_bf16(p.v, v, nkv) ||
             cudaMemcpy(p.dout, dout, nq * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess;
    if (!rc) rc = run_fwd(path, 0, &p, B, T, Hq, Hkv, hd) || run_bwd(path, 0, &p, B, T, Hq, Hkv, hd);
    if (!rc) rc = cudaDeviceSynchronize() != cudaSuccess;
    if (!rc)
        rc = get_bf16(out, p.out, nq) || get_bf16(dv, p.dv, nkv) ||
             cudaMemcpy(lse, p.lse, N * Hq * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess ||
             cudaMemcpy(dq, p.dq, nq * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess ||
             cudaMemcpy(dk, p.dk, nkv * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess;
    probe_free(&p);
    if (rc) return cuda_fail("run", err, errlen);
    return 0;
}

static float urand(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (float)(*s >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

extern "C" int qwen3_cuda_attn_bench(int path, int B, int T, int Hq, int Hkv, int hd, int iters, double *fwd_ms,
                                     double *bwd_ms, char *err, size_t errlen) {
    if (shape_ok(B, T, Hq, Hkv, hd, err, errlen)) return -1;
    if (path == QWEN3_ATTN_TC && !attn_tc_supported(hd))
        return snprintf(err, errlen, "attention bench: no tensor-core kernel for hd=%d", hd), -1;
    size_t N = (size_t)B * T, nq = N * Hq * hd, nkv = N * Hkv * hd;
    float *h = (float *)malloc(nq * sizeof(float));
    if (!h) return snprintf(err, errlen, "attention bench: out of memory"), -1;
    struct probe_bufs p;
    if (probe_alloc(&p, nq, nkv, N * Hq)) return free(h), cuda_fail("cudaMalloc", err, errlen);
    uint64_t s = 12345;
    int rc = 0;
    for (int pass = 0; pass < 4 && !rc; pass++) { /* q, k, v, dout */
        size_t n = pass == 1 || pass == 2 ? nkv : nq;
        for (size_t i = 0; i < n; i++) h[i] = urand(&s) * (pass == 3 ? 0.01f : 1.0f);
        if (pass == 3) rc = cudaMemcpy(p.dout, h, n * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess;
        else rc = put_bf16(pass == 0 ? p.q : pass == 1 ? p.k : p.v, h, n);
    }
    free(h);
    cudaEvent_t e0, e1, e2;
    cudaEventCreate(&e0), cudaEventCreate(&e1), cudaEventCreate(&e2);
    double tf = 0, tb = 0;
    for (int it = -1; it < iters && !rc; it++) { /* it = -1 warms up */
        cudaEventRecord(e0, 0);
        rc = run_fwd(path, 0, &p, B, T, Hq, Hkv, hd);
        cudaEventRecord(e1, 0);
        rc = rc || run_bwd(path, 0, &p, B, T, Hq, Hkv, hd);
        cudaEventRecord(e2, 0);
        rc = rc || cudaEventSynchronize(e2) != cudaSuccess;
        float a = 0, b = 0;
        cudaEventElapsedTime(&a, e0, e1), cudaEventElapsedTime(&b, e1, e2);
        if (it >= 0) tf += a, tb += b;
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1), cudaEventDestroy(e2);
    probe_free(&p);
    if (rc) return cuda_fail("run", err, errlen);
    *fwd_ms = tf / iters, *bwd_ms = tb / iters;
    return 0;
}
