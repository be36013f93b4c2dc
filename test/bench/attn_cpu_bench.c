/*
 * attn_cpu_bench.c - the CPU decoder's attention inner loops alone, each
 * next to the plain loop it replaced, on one cached head (head_dim 32,
 * rows 32 floats apart: the default model's cache holds each kv head's
 * positions in one run):
 *
 *   weighted sum  o = sum_t p[t] v[t]: weighted_sum_rows (sums held in
 *                 registers) against o[i] += p[t] * v[i] per t
 *   max           max_lanes (eight lanes) against one running max
 *
 * for n cached positions in {64, 600, 2000}. Both sides give the same
 * bits (test/model: attention_helpers_match_plain_loops); this measures
 * only speed: the median of 7 timings of each, taken in turn.
 *
 *   build/bench/attn_cpu_bench      one line and one JSON line per case
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../model/qwen3_ops.h"

enum { HD = 32, STRIDE = 32, RUNS = 7 };

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The AVX2 versions, as the decoder's kv_attn_avx2 compiles them. */
__attribute__((target("avx2,fma"))) static void plain_sum(float *o, const float *p, const float *v, int n) {
    memset(o, 0, HD * sizeof *o);
    for (int t = 0; t < n; t++)
        for (int i = 0; i < HD; i++) o[i] += p[t] * v[(size_t)t * STRIDE + i];
}
__attribute__((target("avx2,fma"))) static void lane_sum(float *o, const float *p, const float *v, int n) {
    weighted_sum_rows(o, p, v, STRIDE, n, HD);
}
__attribute__((target("avx2,fma"))) static float plain_max(const float *x, int n) {
    float m = x[0];
    for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}
__attribute__((target("avx2,fma"))) static float lane_max(const float *x, int n) { return max_lanes(x, n); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v) {
    qsort(v, RUNS, sizeof *v, cmp_double);
    return v[RUNS / 2];
}

int main(void) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        printf("skip - attention loops: this CPU has no AVX2/FMA (the decoder uses its portable path)\n");
        return 0;
    }
    static const int lengths[] = {64, 600, 2000};
    float sink = 0;
    for (int li = 0; li < 3; li++) {
        int n = lengths[li], reps = 40000000 / n;
        float *v = malloc((size_t)STRIDE * n * sizeof *v), *p = malloc((size_t)n * sizeof *p), o[HD];
        if (!v || !p) return 1;
        for (size_t i = 0; i < (size_t)STRIDE * n; i++) v[i] = (float)(i % 13) * 0.1f;
        for (int i = 0; i < n; i++) p[i] = 1.0f / (float)(i + 1);
        double ps[RUNS], ls[RUNS], pm[RUNS], lm[RUNS];
        for (int r = 0; r < RUNS; r++) {
            double t0 = now_s();
            for (int k = 0; k < reps; k++) plain_sum(o, p, v, n), sink += o[k % HD];
            double t1 = now_s();
            for (int k = 0; k < reps; k++) lane_sum(o, p, v, n), sink += o[k % HD];
            double t2 = now_s();
            for (int k = 0; k < reps; k++) p[k % n] += 1e-9f, sink += plain_max(p, n);
            double t3 = now_s();
            for (int k = 0; k < reps; k++) p[k % n] += 1e-9f, sink += lane_max(p, n);
            double t4 = now_s();
            double per = 1e9 / ((double)reps * n); /* ns per cached position */
            ps[r] = (t1 - t0) * per, ls[r] = (t2 - t1) * per, pm[r] = (t3 - t2) * per, lm[r] = (t4 - t3) * per;
        }
        double a = median(ps), b = median(ls), c = median(pm), d = median(lm);
        printf("n %5d  weighted sum: plain %.2f ns/position, in registers %.2f (%.2fx)   max: plain %.2f, lanes %.2f (%.2fx)\n",
               n, a, b, a / b, c, d, c / d);
        printf("{\"bench\":\"attn_cpu\",\"positions\":%d,\"sum_plain_ns\":%.3f,\"sum_registers_ns\":%.3f,"
               "\"max_plain_ns\":%.3f,\"max_lanes_ns\":%.3f}\n", n, a, b, c, d);
        free(v);
        free(p);
    }
    return sink == 1.5f; /* keeps the loops from being optimised away */
}
