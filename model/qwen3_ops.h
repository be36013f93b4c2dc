/*
 * qwen3_ops.h - row operations shared by training (qwen3.c) and inference
 * (qwen3_infer.c): RMSNorm and RoPE on one vector, forward and backward.
 */
#ifndef VIV_MODEL_QWEN3_OPS_H
#define VIV_MODEL_QWEN3_OPS_H

#include <math.h>
#include <stdint.h>

#include "config.h"
#include "expf_rows.h"

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

/* out[r] = dot_f32(a, b + r * stride, n) for r < 8, bit for bit: the dot
 * products of one query with eight cached keys. Each key's eight partial
 * sums are formed as dot_f32 forms them; dot_f32 then adds its eight lanes
 * one after another, a chain of eight dependent additions per key, which
 * here becomes eight vector additions serving all eight keys at once: the
 * eight partial-sum vectors are transposed (column j = every key's lane j)
 * and added column by column, so each key's lanes are still added in order
 * 0..7, starting from 0, as dot_f32 adds them. Needs n % 8 == 0 (else it
 * calls dot_f32 eight times). */
typedef int32_t qv8i __attribute__((vector_size(32)));
/* two-source lane shuffles (indices 8-15 pick from y; GCC 12 and clang);
 * macros, since a function returning a 32-byte vector has a different ABI
 * without AVX */
#define LANES_UNPACKLO(x, y) __builtin_shufflevector(x, y, 0, 8, 1, 9, 4, 12, 5, 13)
#define LANES_UNPACKHI(x, y) __builtin_shufflevector(x, y, 2, 10, 3, 11, 6, 14, 7, 15)
#define LANES_PAIRS_LO(x, y) __builtin_shufflevector(x, y, 0, 1, 8, 9, 4, 5, 12, 13)
#define LANES_PAIRS_HI(x, y) __builtin_shufflevector(x, y, 2, 3, 10, 11, 6, 7, 14, 15)
#define LANES_HALVES_LO(x, y) __builtin_shufflevector(x, y, 0, 1, 2, 3, 8, 9, 10, 11)
#define LANES_HALVES_HI(x, y) __builtin_shufflevector(x, y, 4, 5, 6, 7, 12, 13, 14, 15)
static inline __attribute__((always_inline)) void dot_f32_rows8(float *out, const float *a, const float *b,
                                                                size_t stride, int n) {
    if (n % 8) {
        for (int r = 0; r < 8; r++) out[r] = dot_f32(a, b + (size_t)r * stride, n);
        return;
    }
    qv8 acc[8];
    for (int r = 0; r < 8; r++) acc[r] = (qv8){0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < n; i += 8) {
        qv8 av = *(const qv8u *)(a + i);
        for (int r = 0; r < 8; r++) acc[r] += av * *(const qv8u *)(b + (size_t)r * stride + i);
    }
    /* 8x8 transpose: after it, col[j][r] = acc[r][j] */
    qv8 t0 = LANES_UNPACKLO(acc[0], acc[1]), t1 = LANES_UNPACKHI(acc[0], acc[1]);
    qv8 t2 = LANES_UNPACKLO(acc[2], acc[3]), t3 = LANES_UNPACKHI(acc[2], acc[3]);
    qv8 t4 = LANES_UNPACKLO(acc[4], acc[5]), t5 = LANES_UNPACKHI(acc[4], acc[5]);
    qv8 t6 = LANES_UNPACKLO(acc[6], acc[7]), t7 = LANES_UNPACKHI(acc[6], acc[7]);
    qv8 u0 = LANES_PAIRS_LO(t0, t2), u1 = LANES_PAIRS_HI(t0, t2), u2 = LANES_PAIRS_LO(t1, t3);
    qv8 u3 = LANES_PAIRS_HI(t1, t3), u4 = LANES_PAIRS_LO(t4, t6), u5 = LANES_PAIRS_HI(t4, t6);
    qv8 u6 = LANES_PAIRS_LO(t5, t7), u7 = LANES_PAIRS_HI(t5, t7);
    qv8 s = (qv8){0, 0, 0, 0, 0, 0, 0, 0};
    s += LANES_HALVES_LO(u0, u4); /* lane 0 of every key */
    s += LANES_HALVES_LO(u1, u5);
    s += LANES_HALVES_LO(u2, u6);
    s += LANES_HALVES_LO(u3, u7);
    s += LANES_HALVES_HI(u0, u4); /* lane 4 */
    s += LANES_HALVES_HI(u1, u5);
    s += LANES_HALVES_HI(u2, u6);
    s += LANES_HALVES_HI(u3, u7);
    *(qv8u *)out = s;
}

/* The largest of x[0..n), n >= 1, eight lanes at a time: a single running
 * max waits on itself every element. Exact in any order. (A vector
 * comparison gives each lane all ones or zeros; the select is bitwise.) */
static inline float max_lanes(const float *x, int n) {
    float m = x[0];
    int i = 0;
    if (n >= 8) {
        qv8 lanes = *(const qv8u *)x;
        for (i = 8; i + 8 <= n; i += 8) {
            qv8 v = *(const qv8u *)(x + i);
            qv8i gt = v > lanes;
            lanes = (qv8)(((qv8i)v & gt) | ((qv8i)lanes & ~gt));
        }
        for (int k = 0; k < 8; k++) m = lanes[k] > m ? lanes[k] : m;
    }
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* out[g * out_stride + t] = dot_f32(q + g * hd, k + t * stride, hd) * scale
 * for g < nq, t < n: the attention scores of nq query heads (one kv head's
 * group, or a single head) over a run of keys. The keys are walked once
 * for all nq queries, eight at a time where it can (the same bits as one
 * at a time). */
static inline __attribute__((always_inline)) void scaled_scores(float *out, size_t out_stride, const float *q, int nq,
                                                                const float *k, size_t stride, int n, int hd,
                                                                float scale) {
    int t = 0;
    for (; t + 8 <= n; t += 8)
        for (int g = 0; g < nq; g++) {
            float *d = out + (size_t)g * out_stride + t;
            dot_f32_rows8(d, q + (size_t)g * hd, k + (size_t)t * stride, stride, hd);
            for (int i = 0; i < 8; i++) d[i] *= scale;
        }
    for (; t < n; t++)
        for (int g = 0; g < nq; g++)
            out[(size_t)g * out_stride + t] = dot_f32(q + (size_t)g * hd, k + (size_t)t * stride, hd) * scale;
}

/* Softmax of row[0..n), n >= 1, in place: exp(row - max) / sum, the
 * exponentials through expf_rows and the sum added in order. *mx and *sum
 * get the max and the sum (log-sum-exp = mx + log(sum)). */
static inline __attribute__((always_inline)) void softmax_row(float *row, int n, float *mx, float *sum) {
    float m = max_lanes(row, n), s = 0;
    for (int t = 0; t < n; t++) row[t] -= m;
    expf_rows(row, row, n);
    for (int t = 0; t < n; t++) s += row[t];
    float inv = 1.0f / s;
    for (int t = 0; t < n; t++) row[t] *= inv;
    *mx = m, *sum = s;
}

/* o[0..hd) = sum over t < n of p[t] * v[t * stride + 0..hd) (add = 0), or
 * o[0..hd) += that sum (add = 1): attention's weighted sum of value rows,
 * and in the backward pass dq's sum of key rows. The sums stay in
 * registers, 32 columns at a time, across the whole loop over t; written
 * as o[i] += p[t] * v[i] per t, every step would reload and store o, and
 * the loop would wait on memory. Each column still adds its terms in order
 * of t, to 0 or to o's own value, as that loop does. */
static inline __attribute__((always_inline)) void weighted_rows(float *o, const float *p, const float *v, size_t stride,
                                                                int n, int hd, int add) {
    int i = 0;
    for (; i + 32 <= hd; i += 32) {
        qv8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        if (add) {
            a0 = *(qv8u *)(o + i), a1 = *(qv8u *)(o + i + 8);
            a2 = *(qv8u *)(o + i + 16), a3 = *(qv8u *)(o + i + 24);
        }
        for (int t = 0; t < n; t++) {
            const float *r = v + (size_t)t * stride + i;
            a0 += p[t] * *(const qv8u *)r;
            a1 += p[t] * *(const qv8u *)(r + 8);
            a2 += p[t] * *(const qv8u *)(r + 16);
            a3 += p[t] * *(const qv8u *)(r + 24);
        }
        *(qv8u *)(o + i) = a0, *(qv8u *)(o + i + 8) = a1, *(qv8u *)(o + i + 16) = a2, *(qv8u *)(o + i + 24) = a3;
    }
    for (; i + 8 <= hd; i += 8) {
        qv8 a = {0};
        if (add) a = *(qv8u *)(o + i);
        for (int t = 0; t < n; t++) a += p[t] * *(const qv8u *)(v + (size_t)t * stride + i);
        *(qv8u *)(o + i) = a;
    }
    for (; i < hd; i++) {
        float a = add ? o[i] : 0;
        for (int t = 0; t < n; t++) a += p[t] * v[(size_t)t * stride + i];
        o[i] = a;
    }
}
static inline __attribute__((always_inline)) void weighted_sum_rows(float *o, const float *p, const float *v,
                                                                    size_t stride, int n, int hd) {
    weighted_rows(o, p, v, stride, n, hd, 0);
}
static inline __attribute__((always_inline)) void add_weighted_rows(float *o, const float *p, const float *v,
                                                                    size_t stride, int n, int hd) {
    weighted_rows(o, p, v, stride, n, hd, 1);
}

void qwen3_rmsnorm(const struct qwen3_config *c, float *y, float *rstd, const float *x, const float *w, int n);
void qwen3_headnorm_rope(const struct qwen3_config *c, float *y, float *rstd, const float *x, const float *w, int n,
                         int heads, const int *pos, int T, const float *cosv, const float *sinv);
void qwen3_swiglu(const struct qwen3_config *c, float *hm, const float *gate, const float *up, int n);
void qwen3_rope_table(const struct qwen3_config *c, int T, float *cosv, float *sinv);

#endif
