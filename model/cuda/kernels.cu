/*
 * kernels.cu - elementwise and per-row kernels of the CUDA Qwen3 (see ops.cuh).
 *
 * Each kernel mirrors a CPU routine in model/qwen3.c / qwen3_ops.h; the
 * comments name it. Reductions are in fp32 (the CPU uses double for the
 * RMSNorm sums; over D <= 8192 values the difference is far below bf16's
 * resolution). Written without a GPU at hand: see test/gpu for the checks.
 */
#include "ops.cuh"

#include <math.h>

#define WARP 32

static unsigned grid_for(size_t n, int block) {
    size_t g = (n + (size_t)block - 1) / (size_t)block;
    if (g > 65535u * 16u) g = 65535u * 16u; /* grid-stride loops cover the rest */
    return g ? (unsigned)g : 1u;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread
 * gets the result. Uses 32 floats of shared memory; safe to call repeatedly. */
__device__ float block_sum(float v) {
    __shared__ float part[32];
    __shared__ float total;
    int lane = threadIdx.x % WARP, w = threadIdx.x / WARP, nw = blockDim.x / WARP;
    v = warp_sum(v);
    __syncthreads(); /* earlier readers of part/total are done */
    if (lane == 0) part[w] = v;
    __syncthreads();
    if (w == 0) {
        float s = lane < nw ? part[lane] : 0.0f;
        s = warp_sum(s);
        if (lane == 0) total = s;
    }
    __syncthreads();
    return total;
}

__device__ float block_max(float v) {
    __shared__ float part[32];
    __shared__ float total;
    int lane = threadIdx.x % WARP, w = threadIdx.x / WARP, nw = blockDim.x / WARP;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) part[w] = v;
    __syncthreads();
    if (w == 0) {
        float s = lane < nw ? part[lane] : -INFINITY;
        s = warp_max(s);
        if (lane == 0) total = s;
    }
    __syncthreads();
    return total;
}

/* ---- casts, embedding ---------------------------------------------------------------- */

__global__ void f32_to_bf16_kernel(bf16 *out, const float *in, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16(in[i]);
}

void k_f32_to_bf16(cudaStream_t st, bf16 *out, const float *in, size_t n) {
    f32_to_bf16_kernel<<<grid_for(n, 256), 256, 0, st>>>(out, in, n);
}

/* resid[n] = embed[ids[n]] (qwen3_forward's first loop) */
__global__ void embed_fwd_kernel(float *out, const int32_t *ids, const bf16 *embed, int N, int D) {
    size_t total = (size_t)N * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t n = i / (size_t)D, j = i % (size_t)D;
        out[i] = __bfloat162float(embed[(size_t)ids[n] * D + j]);
    }
}

void k_embed_fwd(cudaStream_t st, float *out, const int32_t *ids, const bf16 *embed, int N, int D) {
    embed_fwd_kernel<<<grid_for((size_t)N * D, 256), 256, 0, st>>>(out, ids, embed, N, D);
}

/* g.embed[ids[n]] += dres[n]; a token may repeat, hence the atomics */
__global__ void embed_bwd_kernel(float *dembed, const int32_t *ids, const float *dres, int N, int D) {
    size_t total = (size_t)N * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t n = i / (size_t)D, j = i % (size_t)D;
        atomicAdd(dembed + (size_t)ids[n] * D + j, dres[i]);
    }
}

void k_embed_bwd(cudaStream_t st, float *dembed, const int32_t *ids, const float *dres, int N, int D) {
    embed_bwd_kernel<<<grid_for((size_t)N * D, 256), 256, 0, st>>>(dembed, ids, dres, N, D);
}

/* ---- RMSNorm (qwen3_ops.h rmsnorm_row / rmsnorm_row_bwd) ----------------------------- */

__global__ void rmsnorm_fwd_kernel(bf16 *y, float *rstd, const float *x, const float *w, int D, float eps) {
    const float *xr = x + (size_t)blockIdx.x * D;
    float ss = 0;
    for (int i = threadIdx.x; i < D; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss);
    float rs = rsqrtf(ss / (float)D + eps);
    bf16 *yr = y + (size_t)blockIdx.x * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) yr[i] = __float2bfloat16(w[i] * (xr[i] * rs));
    if (rstd && threadIdx.x == 0) rstd[blockIdx.x] = rs;
}

void k_rmsnorm_fwd(cudaStream_t st, bf16 *y, float *rstd, const float *x, const float *w, int N, int D, float eps) {
    rmsnorm_fwd_kernel<<<N, 256, 0, st>>>(y, rstd, x, w, D, eps);
}

/* Blocks stride over rows; each keeps its share of dw in shared memory
 * (D floats) and adds it once at the end, so dw sees gridDim.x atomics per
 * element instead of N. */
__global__ void rmsnorm_bwd_kernel(float *dx, bf16 *dxb, float *dw, const float *dy, const float *x, const float *w,
                                   const float *rstd, int N, int D) {
    extern __shared__ float dw_part[];
    for (int i = threadIdx.x; i < D; i += blockDim.x) dw_part[i] = 0;
    for (int r = blockIdx.x; r < N; r += gridDim.x) {
        const float *dyr = dy + (size_t)r * D, *xr = x + (size_t)r * D;
        float rs = rstd[r], dot = 0;
        for (int i = threadIdx.x; i < D; i += blockDim.x) dot += dyr[i] * w[i] * xr[i] * rs;
        float mean = block_sum(dot) / (float)D;
        float *dxr = dx + (size_t)r * D;
        for (int i = threadIdx.x; i < D; i += blockDim.x) {
            float v = dxr[i] + rs * (dyr[i] * w[i] - xr[i] * rs * mean);
            dxr[i] = v;
            if (dxb) dxb[(size_t)r * D + i] = __float2bfloat16(v);
            dw_part[i] += dyr[i] * xr[i] * rs;
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < D; i += blockDim.x) atomicAdd(dw + i, dw_part[i]);
}

void k_rmsnorm_bwd(cudaStream_t st, float *dx, bf16 *dxb, float *dw, const float *dy, const float *x, const float *w,
                   const float *rstd, int N, int D) {
    int grid = N < 512 ? N : 512;
    rmsnorm_bwd_kernel<<<grid, 256, (size_t)D * sizeof(float), st>>>(dx, dxb, dw, dy, x, w, rstd, N, D);
}

/* ---- per-head norm + RoPE (qwen3.c headnorm_rope_worker, rope_bwd_worker) --------------
 * One warp per (row, head); lane handles the pairs (i, i + hd/2) for
 * i = lane, lane + 32, ... (hd <= 256, so at most 4 pairs per lane). */
#define MAXP 4

__global__ void headnorm_rope_fwd_kernel(bf16 *y, float *rstd, const bf16 *x, const float *w, int units, int H,
                                         int hd, float eps, const int *pos, int T, const float *cosv,
                                         const float *sinv) {
    int lane = threadIdx.x % WARP, half = hd / 2;
    int warps = gridDim.x * (blockDim.x / WARP);
    for (int u = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP; u < units; u += warps) {
        int row = u / H, p = pos ? pos[row] : row % T;
        const bf16 *xr = x + (size_t)u * hd;
        float a[MAXP], b[MAXP], ss = 0;
        for (int j = 0; j < MAXP; j++) {
            int i = lane + WARP * j;
            a[j] = b[j] = 0;
            if (i < half) {
                a[j] = __bfloat162float(xr[i]);
                b[j] = __bfloat162float(xr[i + half]);
            }
            ss += a[j] * a[j] + b[j] * b[j];
        }
        float rs = rsqrtf(warp_sum(ss) / (float)hd + eps);
        bf16 *yr = y + (size_t)u * hd;
        for (int j = 0; j < MAXP; j++) {
            int i = lane + WARP * j;
            if (i >= half) continue;
            float ya = w[i] * (a[j] * rs), yb = w[i + half] * (b[j] * rs);
            float c = cosv[(size_t)p * half + i], s = sinv[(size_t)p * half + i];
            yr[i] = __float2bfloat16(ya * c - yb * s);
            yr[i + half] = __float2bfloat16(yb * c + ya * s);
        }
        if (rstd && lane == 0) rstd[u] = rs;
    }
}

void k_headnorm_rope_fwd(cudaStream_t st, bf16 *y, float *rstd, const bf16 *x, const float *w, int N, int H, int hd,
                         float eps, const int *pos, int T, const float *cosv, const float *sinv) {
    int units = N * H;
    headnorm_rope_fwd_kernel<<<grid_for((size_t)units * WARP, 256), 256, 0, st>>>(y, rstd, x, w, units, H, hd, eps,
                                                                                   pos, T, cosv, sinv);
}

/* RoPE backward (transpose rotation) then RMSNorm backward per head; dw is
 * accumulated in registers over the warp's units and added once. */
__global__ void headnorm_rope_bwd_kernel(bf16 *dxb, float *dw, const float *d, const bf16 *x, const float *w,
                                         const float *rstd, int units, int H, int hd, int T, const float *cosv,
                                         const float *sinv) {
    int lane = threadIdx.x % WARP, half = hd / 2;
    int warps = gridDim.x * (blockDim.x / WARP);
    float dwa[MAXP] = {0}, dwb[MAXP] = {0};
    for (int u = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP; u < units; u += warps) {
        int p = (u / H) % T;
        const float *dr = d + (size_t)u * hd;
        const bf16 *xr = x + (size_t)u * hd;
        float rs = rstd[u], ga[MAXP], gb[MAXP], xa[MAXP], xb[MAXP], dot = 0;
        for (int j = 0; j < MAXP; j++) {
            int i = lane + WARP * j;
            ga[j] = gb[j] = xa[j] = xb[j] = 0;
            if (i >= half) continue;
            float c = cosv[(size_t)p * half + i], s = sinv[(size_t)p * half + i];
            float da = dr[i], db = dr[i + half];
            ga[j] = da * c + db * s; /* gradient w.r.t. the normed (pre-RoPE) head */
            gb[j] = db * c - da * s;
            xa[j] = __bfloat162float(xr[i]);
            xb[j] = __bfloat162float(xr[i + half]);
            dot += ga[j] * w[i] * xa[j] * rs + gb[j] * w[i + half] * xb[j] * rs;
        }
        float mean = warp_sum(dot) / (float)hd;
        bf16 *o = dxb + (size_t)u * hd;
        for (int j = 0; j < MAXP; j++) {
            int i = lane + WARP * j;
            if (i >= half) continue;
            o[i] = __float2bfloat16(rs * (ga[j] * w[i] - xa[j] * rs * mean));
            o[i + half] = __float2bfloat16(rs * (gb[j] * w[i + half] - xb[j] * rs * mean));
            dwa[j] += ga[j] * xa[j] * rs;
            dwb[j] += gb[j] * xb[j] * rs;
        }
    }
    for (int j = 0; j < MAXP; j++) {
        int i = lane + WARP * j;
        if (i >= half) continue;
        atomicAdd(dw + i, dwa[j]);
        atomicAdd(dw + i + half, dwb[j]);
    }
}

void k_headnorm_rope_bwd(cudaStream_t st, bf16 *dxb, float *dw, const float *d, const bf16 *x, const float *w,
                         const float *rstd, int N, int H, int hd, int T, const float *cosv, const float *sinv) {
    int units = N * H, block = 256, warps_per_block = block / WARP;
    int blocks = (units + warps_per_block - 1) / warps_per_block;
    if (blocks > 264) blocks = 264; /* about two per SM; keeps the dw atomics few */
    headnorm_rope_bwd_kernel<<<blocks, block, 0, st>>>(dxb, dw, d, x, w, rstd, units, H, hd, T, cosv, sinv);
}

/* ---- SwiGLU (qwen3.c swiglu_worker / swiglu_bwd_worker) ------------------------------- */

__global__ void swiglu_fwd_kernel(bf16 *h, const bf16 *gate, const bf16 *up, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = __bfloat162float(gate[i]);
        h[i] = __float2bfloat16(g / (1.0f + expf(-g)) * __bfloat162float(up[i]));
    }
}

void k_swiglu_fwd(cudaStream_t st, bf16 *h, const bf16 *gate, const bf16 *up, size_t n) {
    swiglu_fwd_kernel<<<grid_for(n, 256), 256, 0, st>>>(h, gate, up, n);
}

/* h = silu(g) u; silu' = s (1 + g (1 - s)), s = sigmoid(g) */
__global__ void swiglu_bwd_kernel(bf16 *dgate, bf16 *dup, const float *dh, const bf16 *gate, const bf16 *up,
                                  size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = __bfloat162float(gate[i]), u = __bfloat162float(up[i]), s = 1.0f / (1.0f + expf(-g));
        dup[i] = __float2bfloat16(dh[i] * g * s);
        dgate[i] = __float2bfloat16(dh[i] * u * s * (1.0f + g * (1.0f - s)));
    }
}

void k_swiglu_bwd(cudaStream_t st, bf16 *dgate, bf16 *dup, const float *dh, const bf16 *gate, const bf16 *up,
                  size_t n) {
    swiglu_bwd_kernel<<<grid_for(n, 256), 256, 0, st>>>(dgate, dup, dh, gate, up, n);
}

/* ---- fused softmax + cross-entropy (qwen3.c xent_worker / dlogits_worker) ---------------
 * One block per row. Forward: each thread keeps a running (max, sum of
 * exp) over its strided share of the row, rescaling the sum when the max
 * grows (online softmax); the block then merges them. Nothing but lse and
 * the target's log-prob is written. Backward recomputes exp(l - lse) on the
 * fly while writing the bf16 gradient. */
__global__ void xent_fwd_kernel(float *lse, float *logp, const float *logits, const int32_t *targets, int V) {
    const float *l = logits + (size_t)blockIdx.x * V;
    float m = -INFINITY, s = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float x = l[i];
        if (x > m) {
            s = s * expf(m - x) + 1.0f;
            m = x;
        } else {
            s += expf(x - m);
        }
    }
    float M = block_max(m);
    float S = block_sum(m == -INFINITY ? 0.0f : s * expf(m - M));
    if (threadIdx.x == 0) {
        float z = M + logf(S);
        lse[blockIdx.x] = z;
        int t = targets[blockIdx.x];
        logp[blockIdx.x] = t >= 0 ? l[t] - z : 0.0f;
    }
}

void k_xent_fwd(cudaStream_t st, float *lse, float *logp, const float *logits, const int32_t *targets, int N, int V) {
    xent_fwd_kernel<<<N, 512, 0, st>>>(lse, logp, logits, targets, V);
}

/* One block per row. With an entropy weight w the row's entropy H is summed
 * first (a block reduction; w is the same for the whole block, so every
 * thread takes the branch or none), then each logit gets
 * c (onehot - p_i) - w p_i (log p_i + H). */
__global__ void xent_bwd_kernel(bf16 *dlogits, const float *logits, const float *lse, const int32_t *targets,
                                const float *coef, const float *went, int V) {
    size_t r = blockIdx.x;
    const float *l = logits + r * V;
    bf16 *d = dlogits + r * V;
    int t = targets[r];
    float c = t >= 0 ? coef[r] : 0.0f, w = went ? went[r] : 0.0f, z = lse[r], H = 0;
    if (w != 0) {
        float s = 0;
        for (int i = threadIdx.x; i < V; i += blockDim.x) s -= expf(l[i] - z) * (l[i] - z);
        H = block_sum(s);
    }
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float lp = l[i] - z, p = expf(lp), g = 0;
        if (c != 0 || w != 0) g = c * ((i == t ? 1.0f : 0.0f) - p) - w * p * (lp + H);
        d[i] = __float2bfloat16(g);
    }
}

void k_xent_bwd(cudaStream_t st, bf16 *dlogits, const float *logits, const float *lse, const int32_t *targets,
                const float *coef, const float *went, int N, int V) {
    xent_bwd_kernel<<<N, 512, 0, st>>>(dlogits, logits, lse, targets, coef, went, V);
}

/* Entropy per row from the forward's lse: H = lse - sum_i p_i x_i with
 * p_i = exp(x_i - lse). One block per row, like xent_fwd_kernel. */
__global__ void xent_entropy_kernel(float *ent, const float *logits, const float *lse, int V) {
    const float *l = logits + (size_t)blockIdx.x * V;
    float z = lse[blockIdx.x], s = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) s += expf(l[i] - z) * l[i];
    float S = block_sum(s);
    if (threadIdx.x == 0) ent[blockIdx.x] = z - S;
}

void k_xent_entropy(cudaStream_t st, float *ent, const float *logits, const float *lse, int N, int V) {
    xent_entropy_kernel<<<N, 512, 0, st>>>(ent, logits, lse, V);
}

/* ---- AdamW (adamw.c) ---------------------------------------------------------------- */

__global__ void sumsq_kernel(double *out, const float *x, size_t n) {
    float s = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        s += x[i] * x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) atomicAdd(out, (double)s);
}

void k_sumsq(cudaStream_t st, double *out, const float *x, size_t n) {
    unsigned g = grid_for(n, 256);
    if (g > 1024) g = 1024;
    sumsq_kernel<<<g, 256, 0, st>>>(out, x, n);
}

__global__ void adamw_kernel(float *p, bf16 *pb, const float *g, float *m, float *v, size_t n, float decay, float clip,
                             float b1, float b2, float step_size, float bc2_sqrt, float eps) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i] * clip, pi = p[i] * decay;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        pi -= step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi;
        pb[i] = __float2bfloat16(pi);
    }
}

void k_adamw(cudaStream_t st, float *p, bf16 *pb, const float *g, float *m, float *v, size_t n, float decay,
             float clip, float b1, float b2, float step_size, float bc2_sqrt, float eps) {
    adamw_kernel<<<grid_for(n, 256), 256, 0, st>>>(p, pb, g, m, v, n, decay, clip, b1, b2, step_size, bc2_sqrt, eps);
}

/* ---- KV cache helpers ------------------------------------------------------------- */

__global__ void kv_store_kernel(bf16 *cache, const bf16 *src, const int64_t *dst_row, int n, int kvd) {
    size_t total = (size_t)n * kvd;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / (size_t)kvd, j = i % (size_t)kvd;
        cache[(size_t)dst_row[r] * kvd + j] = src[i];
    }
}

void k_kv_store(cudaStream_t st, bf16 *cache, const bf16 *src, const int64_t *dst_row, int n, int kvd) {
    kv_store_kernel<<<grid_for((size_t)n * kvd, 256), 256, 0, st>>>(cache, src, dst_row, n, kvd);
}

__global__ void gather_rows_kernel(float *out, const float *in, const int *rows, int n, int D) {
    size_t total = (size_t)n * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / (size_t)D, j = i % (size_t)D;
        out[i] = in[(size_t)rows[r] * D + j];
    }
}

void k_gather_rows(cudaStream_t st, float *out, const float *in, const int *rows, int n, int D) {
    gather_rows_kernel<<<grid_for((size_t)n * D, 256), 256, 0, st>>>(out, in, rows, n, D);
}
