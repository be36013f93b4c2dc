/*
 * qwen3_ops.h - row operations shared by training (qwen3.c) and inference
 * (qwen3_infer.c): RMSNorm and RoPE on one vector, forward and backward.
 */
#ifndef VIV_MODEL_QWEN3_OPS_H
#define VIV_MODEL_QWEN3_OPS_H

#include <math.h>

#include "config.h"

/* y = w * x / sqrt(mean(x^2) + eps); returns the 1/sqrt factor (rstd).
 * The mean is accumulated in double: cheap next to the matmuls, and it
 * keeps long rows as exact as HF's fp32 reduction or better. */
static inline float rmsnorm_row(float *y, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float rs = (float)(1.0 / sqrt(ss / n + (double)eps));
    for (int i = 0; i < n; i++) y[i] = w[i] * (x[i] * rs);
    return rs;
}

/* dx += rstd * (g - xhat * mean(g * xhat)), g = dy * w, xhat = x * rstd. */
static inline void rmsnorm_row_bwd(float *dx, const float *dy, const float *x, const float *w, float rs, int n) {
    double dot = 0;
    for (int i = 0; i < n; i++) dot += (double)dy[i] * w[i] * x[i] * rs;
    float mean = (float)(dot / n);
    for (int i = 0; i < n; i++) dx[i] += rs * (dy[i] * w[i] - x[i] * rs * mean);
}

/* rotate_half RoPE: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), where
 * x1, x2 are the first and second halves of the head. */
static inline void rope_row(float *x, int hd, const float *cs, const float *sn) {
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = a * cs[i] - b * sn[i];
        x[i + half] = b * cs[i] + a * sn[i];
    }
}

/* The transpose of the rotation. */
static inline void rope_row_bwd(float *d, int hd, const float *cs, const float *sn) {
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float a = d[i], b = d[i + half];
        d[i] = a * cs[i] + b * sn[i];
        d[i + half] = b * cs[i] - a * sn[i];
    }
}

/* Dot product with eight independent partial sums (GCC vector extension),
 * so that it vectorises without -ffast-math's licence to reorder. */
typedef float qv8 __attribute__((vector_size(32)));
typedef float qv8u __attribute__((vector_size(32), aligned(4)));
static inline __attribute__((always_inline)) float dot_f32(const float *a, const float *b, int n) {
    qv8 acc = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8) acc += *(const qv8u *)(a + i) * *(const qv8u *)(b + i);
    float s = 0;
    for (int j = 0; j < 8; j++) s += acc[j];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void qwen3_rmsnorm(const struct qwen3_config *c, float *y, float *rstd, const float *x, const float *w, int n);
void qwen3_headnorm_rope(const struct qwen3_config *c, float *y, float *rstd, const float *x, const float *w, int n,
                         int heads, const int *pos, int T, const float *cosv, const float *sinv);
void qwen3_swiglu(const struct qwen3_config *c, float *hm, const float *gate, const float *up, int n);
void qwen3_rope_table(const struct qwen3_config *c, int T, float *cosv, float *sinv);

#endif
