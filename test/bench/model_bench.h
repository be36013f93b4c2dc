/*
 * model_bench.h - what the model benchmarks share: a monotonic clock, the
 * median of a few timings, a checksum of result bytes (two builds that
 * print the same one computed the same bits) and the default model's shape.
 */
#ifndef VIV_TEST_BENCH_MODEL_BENCH_H
#define VIV_TEST_BENCH_MODEL_BENCH_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "../../model/config.h"

static inline double bench_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[0..n) (sorts v). */
static inline double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return v[n / 2];
}

/* FNV-1a over n bytes, continuing from h (start: BENCH_FNV_START). */
#define BENCH_FNV_START 0xcbf29ce484222325ull
static inline uint64_t bench_fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* viv train's default model: 2 layers, width 128, 4 query heads over 2 kv
 * heads of 32, ffn 384, vocab 1024, tied embeddings. */
static inline struct qwen3_config bench_default_config(void) {
    struct qwen3_config c = {0};
    c.vocab_size = 1024, c.hidden_size = 128, c.num_layers = 2, c.num_heads = 4, c.num_kv_heads = 2;
    c.head_dim = 32, c.intermediate_size = 384, c.max_position = 2048, c.rope_theta = 1e6, c.rms_norm_eps = 1e-6f;
    c.tie_word_embeddings = 1, c.bos_token_id = -1, c.eos_token_id = -1;
    return c;
}

#endif
