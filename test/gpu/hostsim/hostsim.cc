/*
 * hostsim.cc - the math of model/cuda's kernels (kernels.cu, attention.cu)
 * and of its cuBLASLt matmul (matmul.cu), written again as plain host loops
 * with the same bf16 rounding points, behind the same ops.cuh interface.
 *
 * Linked with g++-compiled qwen3_cuda.cu / infer.cu / dist.cu (VIV_DIST=0)
 * and the fake headers beside this file, it lets build/test/gpu_hostsim_tests
 * run test/gpu/gpu_tests.c on a machine without a GPU. What that verifies:
 * the host orchestration (memory layout, every matmul's shapes and
 * transposes as ops.cuh defines them, the backward's wiring, recomputation,
 * AdamW, the KV cache bookkeeping) and that the tests' bf16 tolerances hold
 * for this precision plan. The CUDA kernels themselves, and matmul.cu's use
 * of cuBLASLt, are run on the CPU by test/gpu/kemu instead of this file;
 * anything about speed needs a GPU (test/gpu/run.sh there).
 */
#include "../../../model/cuda/ops.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline float f(bf16 b) { return __bfloat162float(b); }
static inline bf16 b16(float x) { return __float2bfloat16(x); }

int mm_ctx_init(struct mm_ctx *c, char *err, size_t errlen) {
    (void)err, (void)errlen;
    c->lt = NULL;
    c->workspace = NULL;
    c->workspace_size = 0;
    c->cache = NULL;
    c->n_cache = 0;
    return 0;
}
void mm_ctx_free(struct mm_ctx *c) { (void)c; }

/* D[M,N] = op(A) . op(B) + beta C, fp32 accumulation, as ops.cuh states */
int mm(struct mm_ctx *c, cudaStream_t st, void *D, int d_f32, const bf16 *A, int ta, const bf16 *B, int tb, int M,
       int N, int K, float beta, const void *C) {
    (void)c, (void)st;
    float *tmp = (float *)malloc((size_t)M * N * sizeof(float));
    if (!tmp) return -1;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = 0;
            for (int k = 0; k < K; k++) {
                float a = f(ta ? A[(size_t)k * M + i] : A[(size_t)i * K + k]);
                float b = f(tb ? B[(size_t)j * K + k] : B[(size_t)k * N + j]);
                s += a * b;
            }
            size_t o = (size_t)i * N + j;
            if (beta != 0) s += beta * (d_f32 ? ((const float *)C)[o] : f(((const bf16 *)C)[o]));
            tmp[o] = s;
        }
    for (size_t o = 0; o < (size_t)M * N; o++) {
        if (d_f32) ((float *)D)[o] = tmp[o];
        else ((bf16 *)D)[o] = b16(tmp[o]);
    }
    free(tmp);
    return 0;
}

void k_f32_to_bf16(cudaStream_t st, bf16 *out, const float *in, size_t n) {
    (void)st;
    for (size_t i = 0; i < n; i++) out[i] = b16(in[i]);
}

void k_embed_fwd(cudaStream_t st, float *out, const int32_t *ids, const bf16 *embed, int N, int D) {
    (void)st;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < D; j++) out[(size_t)n * D + j] = f(embed[(size_t)ids[n] * D + j]);
}

void k_embed_bwd(cudaStream_t st, float *dembed, const int32_t *ids, const float *dres, int N, int D) {
    (void)st;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < D; j++) dembed[(size_t)ids[n] * D + j] += dres[(size_t)n * D + j];
}

void k_rmsnorm_fwd(cudaStream_t st, bf16 *y, float *rstd, const float *x, const float *w, int N, int D, float eps) {
    (void)st;
    for (int r = 0; r < N; r++) {
        const float *xr = x + (size_t)r * D;
        float ss = 0;
        for (int i = 0; i < D; i++) ss += xr[i] * xr[i];
        float rs = 1.0f / sqrtf(ss / D + eps);
        for (int i = 0; i < D; i++) y[(size_t)r * D + i] = b16(w[i] * (xr[i] * rs));
        if (rstd) rstd[r] = rs;
    }
}

void k_rmsnorm_bwd(cudaStream_t st, float *dx, bf16 *dxb, float *dw, const float *dy, const float *x, const float *w,
                   const float *rstd, int N, int D) {
    (void)st;
    for (int r = 0; r < N; r++) {
        const float *dyr = dy + (size_t)r * D, *xr = x + (size_t)r * D;
        float rs = rstd[r], dot = 0;
        for (int i = 0; i < D; i++) dot += dyr[i] * w[i] * xr[i] * rs;
        float mean = dot / D;
        for (int i = 0; i < D; i++) {
            float v = dx[(size_t)r * D + i] + rs * (dyr[i] * w[i] - xr[i] * rs * mean);
            dx[(size_t)r * D + i] = v;
            if (dxb) dxb[(size_t)r * D + i] = b16(v);
            dw[i] += dyr[i] * xr[i] * rs;
        }
    }
}

void k_headnorm_rope_fwd(cudaStream_t st, bf16 *y, float *rstd, const bf16 *x, const float *w, int N, int H, int hd,
                         float eps, const int *pos, int T, const float *cosv, const float *sinv) {
    (void)st;
    int half = hd / 2;
    for (int u = 0; u < N * H; u++) {
        int row = u / H, p = pos ? pos[row] : row % T;
        const bf16 *xr = x + (size_t)u * hd;
        float ss = 0;
        for (int i = 0; i < hd; i++) ss += f(xr[i]) * f(xr[i]);
        float rs = 1.0f / sqrtf(ss / hd + eps);
        for (int i = 0; i < half; i++) {
            float ya = w[i] * (f(xr[i]) * rs), yb = w[i + half] * (f(xr[i + half]) * rs);
            float c = cosv[(size_t)p * half + i], s = sinv[(size_t)p * half + i];
            y[(size_t)u * hd + i] = b16(ya * c - yb * s);
            y[(size_t)u * hd + i + half] = b16(yb * c + ya * s);
        }
        if (rstd) rstd[u] = rs;
    }
}

void k_headnorm_rope_bwd(cudaStream_t st, bf16 *dxb, float *dw, const float *d, const bf16 *x, const float *w,
                         const float *rstd, int N, int H, int hd, int T, const float *cosv, const float *sinv) {
    (void)st;
    int half = hd / 2;
    float *g = (float *)malloc((size_t)hd * sizeof(float));
    for (int u = 0; u < N * H; u++) {
        int p = (u / H) % T;
        const float *dr = d + (size_t)u * hd;
        const bf16 *xr = x + (size_t)u * hd;
        for (int i = 0; i < half; i++) {
            float c = cosv[(size_t)p * half + i], s = sinv[(size_t)p * half + i];
            g[i] = dr[i] * c + dr[i + half] * s;
            g[i + half] = dr[i + half] * c - dr[i] * s;
        }
        float rs = rstd[u], dot = 0;
        for (int i = 0; i < hd; i++) dot += g[i] * w[i] * f(xr[i]) * rs;
        float mean = dot / hd;
        for (int i = 0; i < hd; i++) {
            dxb[(size_t)u * hd + i] = b16(rs * (g[i] * w[i] - f(xr[i]) * rs * mean));
            dw[i] += g[i] * f(xr[i]) * rs;
        }
    }
    free(g);
}

void k_swiglu_fwd(cudaStream_t st, bf16 *h, const bf16 *gate, const bf16 *up, size_t n) {
    (void)st;
    for (size_t i = 0; i < n; i++) {
        float g = f(gate[i]);
        h[i] = b16(g / (1.0f + expf(-g)) * f(up[i]));
    }
}

void k_swiglu_bwd(cudaStream_t st, bf16 *dgate, bf16 *dup, const float *dh, const bf16 *gate, const bf16 *up,
                  size_t n) {
    (void)st;
    for (size_t i = 0; i < n; i++) {
        float g = f(gate[i]), u = f(up[i]), s = 1.0f / (1.0f + expf(-g));
        dup[i] = b16(dh[i] * g * s);
        dgate[i] = b16(dh[i] * u * s * (1.0f + g * (1.0f - s)));
    }
}

void k_xent_fwd(cudaStream_t st, float *lse, float *logp, const float *logits, const int32_t *targets, int N, int V) {
    (void)st;
    for (int r = 0; r < N; r++) {
        const float *l = logits + (size_t)r * V;
        float m = -INFINITY;
        for (int i = 0; i < V; i++) m = fmaxf(m, l[i]);
        double s = 0;
        for (int i = 0; i < V; i++) s += expf(l[i] - m);
        lse[r] = m + (float)log(s);
        logp[r] = targets[r] >= 0 ? l[targets[r]] - lse[r] : 0.0f;
    }
}

void k_xent_bwd(cudaStream_t st, bf16 *dlogits, const float *logits, const float *lse, const int32_t *targets,
                const float *coef, const float *went, int N, int V) {
    (void)st;
    for (int r = 0; r < N; r++) {
        const float *l = logits + (size_t)r * V;
        int t = targets[r];
        float c = t >= 0 ? coef[r] : 0.0f, w = went ? went[r] : 0.0f, H = 0;
        if (w != 0)
            for (int i = 0; i < V; i++) H -= expf(l[i] - lse[r]) * (l[i] - lse[r]);
        for (int i = 0; i < V; i++) {
            float lp = l[i] - lse[r], p = expf(lp), gr = 0;
            if (c != 0 || w != 0) gr = c * ((i == t ? 1.0f : 0.0f) - p) - w * p * (lp + H);
            dlogits[(size_t)r * V + i] = b16(gr);
        }
    }
}

void k_xent_entropy(cudaStream_t st, float *ent, const float *logits, const float *lse, int N, int V) {
    (void)st;
    for (int r = 0; r < N; r++) {
        const float *l = logits + (size_t)r * V;
        double s = 0;
        for (int i = 0; i < V; i++) s += (double)expf(l[i] - lse[r]) * l[i];
        ent[r] = lse[r] - (float)s;
    }
}

void k_sumsq(cudaStream_t st, double *out, const float *x, size_t n) {
    (void)st;
    for (size_t i = 0; i < n; i++) *out += (double)x[i] * x[i];
}

void k_adamw(cudaStream_t st, float *p, bf16 *pb, const float *g, float *m, float *v, size_t n, float decay,
             float clip, float b1, float b2, float step_size, float bc2_sqrt, float eps) {
    (void)st;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * clip, pi = p[i] * decay;
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        pi -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
        p[i] = pi;
        pb[i] = b16(pi);
    }
}

void k_kv_store(cudaStream_t st, bf16 *cache, const bf16 *src, const int64_t *dst_row, int n, int kvd) {
    (void)st;
    for (int r = 0; r < n; r++) memcpy(cache + (size_t)dst_row[r] * kvd, src + (size_t)r * kvd, (size_t)kvd * 2);
}

void k_gather_rows(cudaStream_t st, float *out, const float *in, const int *rows, int n, int D) {
    (void)st;
    for (int r = 0; r < n; r++) memcpy(out + (size_t)r * D, in + (size_t)rows[r] * D, (size_t)D * 4);
}

/* ---- attention: the plain (non-flash) formulas of attention.cu's header ---- */

/* softmax row of query (q, head h) over n keys at k + j*stride; fills p */
static float scores(float *p, const bf16 *q, const bf16 *k, size_t stride, int n, int hd) {
    float scale = 1.0f / sqrtf((float)hd), m = -INFINITY;
    for (int j = 0; j < n; j++) {
        float s = 0;
        for (int d = 0; d < hd; d++) s += f(q[d]) * f(k[(size_t)j * stride + d]);
        p[j] = s * scale;
        m = fmaxf(m, p[j]);
    }
    float sum = 0;
    for (int j = 0; j < n; j++) sum += (p[j] = expf(p[j] - m));
    for (int j = 0; j < n; j++) p[j] /= sum;
    return m + logf(sum);
}

void k_attn_fwd(cudaStream_t st, bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T,
                int Hq, int Hkv, int hd) {
    (void)st;
    int qd = Hq * hd, kvd = Hkv * hd;
    float *p = (float *)malloc((size_t)T * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < Hq; h++) {
                size_t row = (size_t)b * T + t, kv0 = (size_t)b * T * kvd + (size_t)(h / (Hq / Hkv)) * hd;
                lse[row * Hq + h] = scores(p, q + row * qd + (size_t)h * hd, k + kv0, kvd, t + 1, hd);
                for (int d = 0; d < hd; d++) {
                    float o = 0;
                    for (int j = 0; j <= t; j++) o += p[j] * f(v[kv0 + (size_t)j * kvd + d]);
                    out[row * qd + (size_t)h * hd + d] = b16(o);
                }
            }
    free(p);
}

void k_attn_decode(cudaStream_t st, bf16 *out, const bf16 *q, const bf16 *kcache, const bf16 *vcache,
                   const int64_t *kv_row0, const int *pos, int n, int Hq, int Hkv, int hd) {
    (void)st;
    int qd = Hq * hd, kvd = Hkv * hd, maxn = 0;
    for (int r = 0; r < n; r++) maxn = pos[r] + 1 > maxn ? pos[r] + 1 : maxn;
    float *p = (float *)malloc((size_t)maxn * sizeof(float));
    for (int r = 0; r < n; r++)
        for (int h = 0; h < Hq; h++) {
            size_t kv0 = (size_t)kv_row0[r] * kvd + (size_t)(h / (Hq / Hkv)) * hd;
            scores(p, q + (size_t)r * qd + (size_t)h * hd, kcache + kv0, kvd, pos[r] + 1, hd);
            for (int d = 0; d < hd; d++) {
                float o = 0;
                for (int j = 0; j <= pos[r]; j++) o += p[j] * f(vcache[kv0 + (size_t)j * kvd + d]);
                out[(size_t)r * qd + (size_t)h * hd + d] = b16(o);
            }
        }
    free(p);
}

void k_attn_bwd(cudaStream_t st, float *dq, float *dk, bf16 *dv, float *dsum, const float *dout, const bf16 *out,
                const float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T, int Hq, int Hkv, int hd) {
    (void)st, (void)lse;
    int qd = Hq * hd, kvd = Hkv * hd;
    float scale = 1.0f / sqrtf((float)hd), *p = (float *)malloc((size_t)T * sizeof(float));
    float *dvf = (float *)calloc((size_t)B * T * kvd, sizeof(float));
    for (size_t i = 0; i < (size_t)B * T * kvd; i++) dk[i] = 0;
    for (size_t i = 0; i < (size_t)B * T * qd; i++) dq[i] = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < Hq; h++) {
                size_t row = (size_t)b * T + t, qo = row * qd + (size_t)h * hd;
                size_t kv0 = (size_t)b * T * kvd + (size_t)(h / (Hq / Hkv)) * hd;
                scores(p, q + qo, k + kv0, kvd, t + 1, hd);
                float D = 0;
                for (int d = 0; d < hd; d++) D += dout[qo + d] * f(out[qo + d]);
                dsum[row * Hq + h] = D;
                for (int j = 0; j <= t; j++) {
                    float dp = 0;
                    for (int d = 0; d < hd; d++) dp += dout[qo + d] * f(v[kv0 + (size_t)j * kvd + d]);
                    float ds = p[j] * (dp - D) * scale;
                    for (int d = 0; d < hd; d++) {
                        size_t kj = kv0 + (size_t)j * kvd + d;
                        dq[qo + d] += ds * f(k[kj]);
                        dk[kj] += ds * f(q[qo + d]);
                        dvf[kj] += p[j] * dout[qo + d];
                    }
                }
            }
    for (size_t i = 0; i < (size_t)B * T * kvd; i++) dv[i] = b16(dvf[i]);
    free(dvf);
    free(p);
}
