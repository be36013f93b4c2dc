/*
 * attention.cu - causal GQA attention, forward and backward, flash-style.
 *
 * The math is qwen3.c's attn_fwd_worker / attn_bwd_worker:
 *   s_tj = scale q_t.k_j (j <= t), p = softmax_j(s), o_t = sum_j p_tj v_j
 *   dp_tj = do_t.v_j, ds_tj = p_tj (dp_tj - D_t) with D_t = sum_j p_tj dp_tj = do_t.o_t
 *   dq_t = scale sum_j ds_tj k_j, dk_j = scale sum_t ds_tj q_t, dv_j = sum_t p_tj do_t
 *
 * How it runs. One warp per (token, query head). Keys are taken 32 at a time,
 * one per lane: each lane computes its key's score against the query (held
 * in shared memory), the warp folds the 32 scores into a running max and sum
 * (the online softmax of FlashAttention), and then every lane adds the 32
 * weighted value rows into the output dims it owns (d = lane, lane+32, ...).
 * Only the per-row log-sum-exp is saved; the backward recomputes
 * p = exp(s - lse). So memory is O(T) per head, never T x T.
 *
 * The backward is two passes so that nothing needs atomics: one warp per
 * (token, query head) accumulates dq over keys, and one warp per (token, kv
 * head) accumulates dk and dv over later queries of every query head that
 * shares the kv head (GQA).
 *
 * What this is not: it does not use tensor cores or tile K/V through shared
 * memory across warps (K/V rows are re-read through L1/L2); it is the simple
 * correct version. Training uses attention_tc.cu's tensor-core kernels for
 * the head sizes those support (16, 32, 64, 128) unless VIV_ATTN=warp; these
 * stay for other head sizes, as the reference those are compared with on a
 * GPU, and for decode (attn_decode_kernel, one query row at a time).
 */
#include "ops.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define WARP 32
#define HD_MAX 256
#define EPL (HD_MAX / WARP) /* output dims per lane */
#define WARPS_PER_BLOCK 4

__device__ __forceinline__ float wsum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float wmax(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* elements 2p, 2p+1 of a bf16 or fp32 row, as floats */
__device__ __forceinline__ float2 pair_at(const bf16 *row, int p) {
    return __bfloat1622float2(((const __nv_bfloat162 *)row)[p]);
}
__device__ __forceinline__ float2 pair_at(const float *row, int p) { return ((const float2 *)row)[p]; }

/* The dots of a shared fp32 vector a[hd] with rows c0 .. c0+31 of m (row
 * stride `stride` elements, hd even, rows 4- or 8-byte aligned): lane l
 * gets row c0 + l's, 0 for rows >= n. The warp reads the rows together, 8
 * lanes to a row and 4 rows at a time, lane `sub` taking pairs sub, sub+8,
 * ...: a request is 4 rows' 32 (bf16) or 64 (fp32) consecutive bytes.
 * Each lane reading its own row alone would spread a request over 32 rows,
 * 32 sectors for 4 sectors' data (kemu's access profile, test/gpu/kemu/
 * prof.h: the decode kernel moved 4x the bytes it needed). The 8 partial
 * sums of a row meet by shuffles, then each row's dot goes to its lane. */
template <typename T>
__device__ __forceinline__ float chunk_dots(const float *a, const T *m, size_t stride, int c0, int n, int hd) {
    int lane = threadIdx.x % WARP, g = lane / 8, sub = lane % 8;
    float mine = 0;
    for (int step = 0; step < WARP / 4 && c0 + step * 4 < n; step++) { /* uniform across the warp */
        int j = c0 + step * 4 + g;
        float s = 0;
        if (j < n) {
            const T *row = m + (size_t)j * stride;
            for (int p = sub; p < hd / 2; p += 8) {
                float2 f = pair_at(row, p);
                s += a[2 * p] * f.x + a[2 * p + 1] * f.y;
            }
        }
        s += __shfl_xor_sync(0xffffffffu, s, 1);
        s += __shfl_xor_sync(0xffffffffu, s, 2);
        s += __shfl_xor_sync(0xffffffffu, s, 4);
        float got = __shfl_sync(0xffffffffu, s, (lane % 4) * 8); /* row step*4 + lane%4 */
        if (lane / 4 == step) mine = got;
    }
    return mine;
}

/* Online-softmax attention of one query (qs, shared) over n keys at
 * k + j*kstride, v + j*kstride. acc (per lane dims) gets the normalised
 * output; returns the log-sum-exp of the scaled scores. */
__device__ float attend(float acc[EPL], const float *qs, const bf16 *k, const bf16 *v, size_t kstride, int n, int hd,
                        float scale) {
    int lane = threadIdx.x % WARP;
    float m = -INFINITY, l = 0;
    for (int i = 0; i < EPL; i++) acc[i] = 0;
    for (int c0 = 0; c0 < n; c0 += WARP) {
        int j = c0 + lane;
        float dot = chunk_dots(qs, k, kstride, c0, n, hd);
        float s = j < n ? scale * dot : -INFINITY;
        float mn = fmaxf(m, wmax(s));
        float corr = expf(m - mn); /* 0 on the first chunk (m = -inf) */
        float p = j < n ? expf(s - mn) : 0.0f;
        l = l * corr + wsum(p);
        m = mn;
        for (int i = 0; i < EPL; i++) acc[i] *= corr;
        int cnt = n - c0 < WARP ? n - c0 : WARP;
        for (int jj = 0; jj < cnt; jj++) {
            float pj = __shfl_sync(0xffffffffu, p, jj);
            const bf16 *vr = v + (size_t)(c0 + jj) * kstride;
            for (int i = 0; i < EPL; i++) {
                int d = lane + WARP * i;
                if (d < hd) acc[i] += pj * __bfloat162float(vr[d]);
            }
        }
    }
    float inv = 1.0f / l;
    for (int i = 0; i < EPL; i++) acc[i] *= inv;
    return m + logf(l);
}

/* unit u = (b*Hq + h)*T + t: neighbouring warps share (b, h), hence K/V in cache */
__global__ void attn_fwd_kernel(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T,
                                int Hq, int Hkv, int hd) {
    __shared__ float qsh[WARPS_PER_BLOCK][HD_MAX];
    int w = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    long u = (long)blockIdx.x * WARPS_PER_BLOCK + w;
    if (u >= (long)B * Hq * T) return; /* whole warps exit together */
    int t = (int)(u % T), h = (int)((u / T) % Hq), b = (int)(u / ((long)T * Hq)), kh = h / (Hq / Hkv);
    int qd = Hq * hd, kvd = Hkv * hd;
    size_t row = (size_t)b * T + t;
    const bf16 *qr = q + row * qd + (size_t)h * hd;
    for (int d = lane; d < hd; d += WARP) qsh[w][d] = __bfloat162float(qr[d]);
    __syncwarp();
    float acc[EPL];
    size_t kv0 = (size_t)b * T * kvd + (size_t)kh * hd;
    float z = attend(acc, qsh[w], k + kv0, v + kv0, (size_t)kvd, t + 1, hd, rsqrtf((float)hd));
    bf16 *o = out + row * qd + (size_t)h * hd;
    for (int i = 0; i < EPL; i++) {
        int d = lane + WARP * i;
        if (d < hd) o[d] = __float2bfloat16(acc[i]);
    }
    if (lane == 0) lse[row * Hq + h] = z;
}

void k_attn_fwd_warp(cudaStream_t st, bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B,
                     int T, int Hq, int Hkv, int hd) {
    long units = (long)B * Hq * T;
    unsigned blocks = (unsigned)((units + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
    attn_fwd_kernel<<<blocks, WARPS_PER_BLOCK * WARP, 0, st>>>(out, lse, q, k, v, B, T, Hq, Hkv, hd);
}

/* Decode / prefill against the cache: row r (query head h) sees cache rows
 * kv_row0[r] + 0..pos[r]. Unit u = r*Hq + h. */
__global__ void attn_decode_kernel(bf16 *out, const bf16 *q, const bf16 *kc, const bf16 *vc, const int64_t *kv_row0,
                                   const int *pos, int n, int Hq, int Hkv, int hd) {
    __shared__ float qsh[WARPS_PER_BLOCK][HD_MAX];
    int w = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    long u = (long)blockIdx.x * WARPS_PER_BLOCK + w;
    if (u >= (long)n * Hq) return;
    int r = (int)(u / Hq), h = (int)(u % Hq), kh = h / (Hq / Hkv), qd = Hq * hd, kvd = Hkv * hd;
    const bf16 *qr = q + (size_t)r * qd + (size_t)h * hd;
    for (int d = lane; d < hd; d += WARP) qsh[w][d] = __bfloat162float(qr[d]);
    __syncwarp();
    float acc[EPL];
    size_t kv0 = (size_t)kv_row0[r] * kvd + (size_t)kh * hd;
    attend(acc, qsh[w], kc + kv0, vc + kv0, (size_t)kvd, pos[r] + 1, hd, rsqrtf((float)hd));
    bf16 *o = out + (size_t)r * qd + (size_t)h * hd;
    for (int i = 0; i < EPL; i++) {
        int d = lane + WARP * i;
        if (d < hd) o[d] = __float2bfloat16(acc[i]);
    }
}

void k_attn_decode(cudaStream_t st, bf16 *out, const bf16 *q, const bf16 *kcache, const bf16 *vcache,
                   const int64_t *kv_row0, const int *pos, int n, int Hq, int Hkv, int hd) {
    long units = (long)n * Hq;
    unsigned blocks = (unsigned)((units + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
    attn_decode_kernel<<<blocks, WARPS_PER_BLOCK * WARP, 0, st>>>(out, q, kcache, vcache, kv_row0, pos, n, Hq, Hkv,
                                                                  hd);
}

/* ---- backward ---------------------------------------------------------------------- */

/* D[row*Hq + h] = do . o over the head (the softmax backward's row term). */
__global__ void attn_dsum_kernel(float *dsum, const float *dout, const bf16 *out, long units, int hd) {
    int lane = threadIdx.x % WARP;
    long u = (long)blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / WARP;
    if (u >= units) return;
    const float *a = dout + (size_t)u * hd;
    const bf16 *o = out + (size_t)u * hd;
    float s = 0;
    for (int d = lane; d < hd; d += WARP) s += a[d] * __bfloat162float(o[d]);
    s = wsum(s);
    if (lane == 0) dsum[u] = s;
}

/* dq for unit (b, h, t): keys j = 0..t. */
__global__ void attn_dq_kernel(float *dq, const float *dout, const float *lse, const float *dsum, const bf16 *q,
                               const bf16 *k, const bf16 *v, int B, int T, int Hq, int Hkv, int hd) {
    __shared__ float qsh[WARPS_PER_BLOCK][HD_MAX], dosh[WARPS_PER_BLOCK][HD_MAX];
    int w = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    long u = (long)blockIdx.x * WARPS_PER_BLOCK + w;
    if (u >= (long)B * Hq * T) return;
    int t = (int)(u % T), h = (int)((u / T) % Hq), b = (int)(u / ((long)T * Hq)), kh = h / (Hq / Hkv);
    int qd = Hq * hd, kvd = Hkv * hd;
    size_t row = (size_t)b * T + t, qo = row * qd + (size_t)h * hd;
    for (int d = lane; d < hd; d += WARP) {
        qsh[w][d] = __bfloat162float(q[qo + d]);
        dosh[w][d] = dout[qo + d];
    }
    __syncwarp();
    float scale = rsqrtf((float)hd), z = lse[row * Hq + h], D = dsum[row * Hq + h], acc[EPL];
    for (int i = 0; i < EPL; i++) acc[i] = 0;
    const bf16 *k0 = k + (size_t)b * T * kvd + (size_t)kh * hd, *v0 = v + (size_t)b * T * kvd + (size_t)kh * hd;
    int n = t + 1;
    for (int c0 = 0; c0 < n; c0 += WARP) {
        int j = c0 + lane;
        float qk = chunk_dots(qsh[w], k0, (size_t)kvd, c0, n, hd), dp = chunk_dots(dosh[w], v0, (size_t)kvd, c0, n, hd);
        float ds = 0;
        if (j < n) {
            float p = expf(scale * qk - z);
            ds = p * (dp - D) * scale;
        }
        int cnt = n - c0 < WARP ? n - c0 : WARP;
        for (int jj = 0; jj < cnt; jj++) {
            float dj = __shfl_sync(0xffffffffu, ds, jj);
            const bf16 *kr = k0 + (size_t)(c0 + jj) * kvd;
            for (int i = 0; i < EPL; i++) {
                int d = lane + WARP * i;
                if (d < hd) acc[i] += dj * __bfloat162float(kr[d]);
            }
        }
    }
    for (int i = 0; i < EPL; i++) {
        int d = lane + WARP * i;
        if (d < hd) dq[qo + d] = acc[i];
    }
}

/* dk, dv for unit (b, kh, j): queries t = j..T-1 of every head of the group. */
__global__ void attn_dkv_kernel(float *dk, bf16 *dv, const float *dout, const float *lse, const float *dsum,
                                const bf16 *q, const bf16 *k, const bf16 *v, int B, int T, int Hq, int Hkv, int hd) {
    __shared__ float ksh[WARPS_PER_BLOCK][HD_MAX], vsh[WARPS_PER_BLOCK][HD_MAX];
    int w = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    long u = (long)blockIdx.x * WARPS_PER_BLOCK + w;
    if (u >= (long)B * Hkv * T) return;
    int j = (int)(u % T), kh = (int)((u / T) % Hkv), b = (int)(u / ((long)T * Hkv)), grp = Hq / Hkv;
    int qd = Hq * hd, kvd = Hkv * hd;
    size_t ko = ((size_t)b * T + j) * kvd + (size_t)kh * hd;
    for (int d = lane; d < hd; d += WARP) {
        ksh[w][d] = __bfloat162float(k[ko + d]);
        vsh[w][d] = __bfloat162float(v[ko + d]);
    }
    __syncwarp();
    float scale = rsqrtf((float)hd), adk[EPL], adv[EPL];
    for (int i = 0; i < EPL; i++) adk[i] = adv[i] = 0;
    for (int h = kh * grp; h < (kh + 1) * grp; h++) {
        size_t q0 = (size_t)b * T * qd + (size_t)h * hd; /* row 0 of this head's q and dout */
        for (int c0 = j; c0 < T; c0 += WARP) {
            int t = c0 + lane;
            float kq = chunk_dots(ksh[w], q + q0, (size_t)qd, c0, T, hd);
            float dp = chunk_dots(vsh[w], dout + q0, (size_t)qd, c0, T, hd);
            float p = 0, ds = 0;
            if (t < T) {
                size_t row = (size_t)b * T + t;
                p = expf(scale * kq - lse[row * Hq + h]);
                ds = p * (dp - dsum[row * Hq + h]) * scale;
            }
            int cnt = T - c0 < WARP ? T - c0 : WARP;
            for (int tt = 0; tt < cnt; tt++) {
                float pt = __shfl_sync(0xffffffffu, p, tt), dt = __shfl_sync(0xffffffffu, ds, tt);
                size_t qo = ((size_t)b * T + c0 + tt) * qd + (size_t)h * hd;
                for (int i = 0; i < EPL; i++) {
                    int d = lane + WARP * i;
                    if (d < hd) {
                        adv[i] += pt * dout[qo + d];
                        adk[i] += dt * __bfloat162float(q[qo + d]);
                    }
                }
            }
        }
    }
    for (int i = 0; i < EPL; i++) {
        int d = lane + WARP * i;
        if (d < hd) {
            dk[ko + d] = adk[i];
            dv[ko + d] = __float2bfloat16(adv[i]);
        }
    }
}

void k_attn_dsum(cudaStream_t st, float *dsum, const float *dout, const bf16 *out, long units, int hd) {
    unsigned blocks = (unsigned)((units + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
    attn_dsum_kernel<<<blocks, WARPS_PER_BLOCK * WARP, 0, st>>>(dsum, dout, out, units, hd);
}

void k_attn_bwd_warp(cudaStream_t st, float *dq, float *dk, bf16 *dv, float *dsum, const float *dout, const bf16 *out,
                     const float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T, int Hq, int Hkv,
                     int hd) {
    long uq = (long)B * T * Hq, ukv = (long)B * T * Hkv;
    unsigned bq = (unsigned)((uq + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
    unsigned bkv = (unsigned)((ukv + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
    k_attn_dsum(st, dsum, dout, out, uq, hd);
    attn_dq_kernel<<<bq, WARPS_PER_BLOCK * WARP, 0, st>>>(dq, dout, lse, dsum, q, k, v, B, T, Hq, Hkv, hd);
    attn_dkv_kernel<<<bkv, WARPS_PER_BLOCK * WARP, 0, st>>>(dk, dv, dout, lse, dsum, q, k, v, B, T, Hq, Hkv, hd);
}

/* ---- which training kernels ------------------------------------------------------ */

/* VIV_ATTN=warp forces the CUDA-core kernels above (to compare with, or to
 * rule the tensor-core ones out); anything else, or unset, lets head sizes
 * attention_tc.cu supports go to the tensor cores. Read once. */
int attn_use_tc(int hd) {
    static int mode = -1; /* 0 warp, 1 tensor cores where supported */
    if (mode < 0) {
        const char *e = getenv("VIV_ATTN");
        mode = !(e && !strcmp(e, "warp"));
    }
    return mode && attn_tc_supported(hd);
}

void k_attn_fwd(cudaStream_t st, bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T,
                int Hq, int Hkv, int hd) {
    if (!attn_use_tc(hd) || k_attn_fwd_tc(st, out, lse, q, k, v, B, T, Hq, Hkv, hd))
        k_attn_fwd_warp(st, out, lse, q, k, v, B, T, Hq, Hkv, hd);
}

void k_attn_bwd(cudaStream_t st, float *dq, float *dk, bf16 *dv, float *dsum, const float *dout, const bf16 *out,
                const float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T, int Hq, int Hkv, int hd) {
    if (!attn_use_tc(hd) || k_attn_bwd_tc(st, dq, dk, dv, dsum, dout, out, lse, q, k, v, B, T, Hq, Hkv, hd))
        k_attn_bwd_warp(st, dq, dk, dv, dsum, dout, out, lse, q, k, v, B, T, Hq, Hkv, hd);
}
