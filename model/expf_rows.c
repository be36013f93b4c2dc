/*
 * expf_rows.c - y[i] = expf(x[i]) over a row, eight floats at a time, with
 * the very bits the C library's expf gives (see expf_rows.h).
 *
 * Softmax is most of the exponentials the model takes (every attention
 * score, in decoding and in training), and musl's expf is one call per
 * float. The model's results are meant to be reproducible to the bit
 * across builds of this code, and one training run's outcome moves with
 * the last bits of its softmax (docs/results.md), so a faster exponential
 * must not be a different one. This file evaluates, in AVX2 lanes, the
 * algorithm musl 1.2's expf evaluates one float at a time (Szabolcs Nagy's,
 * also in ARM's optimized-routines), step for step in the same double
 * operations:
 *
 *   z  = x * 32/ln2                    x = (k + r) * ln2/32, r in [-1/2, 1/2]
 *   kd = round(z) (adding and taking away 1.5 * 2^52 rounds to nearest even)
 *   r  = z - kd
 *   s  = 2^(k/32): the double of table[k % 32] + (k << 47), the table holding
 *        2^(i/32)'s bits less i << 47
 *   y  = s * (C0 r^3 + C1 r^2 + C2 r + 1), as ((C0 r + C1) r^2 + (C2 r + 1))
 *   e^x = (float) y
 *
 * IEEE double arithmetic rounds each of these operations the same way in a
 * lane as in a scalar register, so the lanes give the scalar bits, provided
 * no step is fused: this file is compiled with -ffp-contract=off and its
 * lanes are plain AVX2 (no FMA). test/model's expf_rows_check compares it
 * with the C library's expf on every float from -104 to 88, in the static
 * musl build bin/viv is. Lanes holding |x| >= 88, an infinity or a NaN
 * (the library's special cases: overflow, underflow to 0) are handed to
 * expf itself, as are rows' tails and CPUs without AVX2.
 *
 * The table is built at start-up from exp2 in long double, rounded to
 * double; the check above is what proves it equal to the library's.
 */
#include "expf_rows.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "kernels.h"

/* The polynomial for 2^(r/32) on [-1/2, 1/2] that musl's expf uses (its
 * coefficients, scaled by 1/32, 1/32^2, 1/32^3), and 32/ln2. */
static const double EXPF_C0 = 0x1.c6af84b912394p-5 / 32 / 32 / 32, EXPF_C1 = 0x1.ebfce50fac4f3p-3 / 32 / 32,
                    EXPF_C2 = 0x1.62e42ff0c52d6p-1 / 32, EXPF_INVLN2_32 = 0x1.71547652b82fep+0 * 32,
                    EXPF_SHIFT = 0x1.8p+52;

static uint64_t expf_table[32];

__attribute__((constructor)) static void expf_table_build(void) {
    for (int i = 0; i < 32; i++) {
        double v = (double)exp2l((long double)i / 32);
        uint64_t u;
        memcpy(&u, &v, sizeof u);
        expf_table[i] = u - ((uint64_t)i << 47);
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static inline __m128 expf4_avx2(__m128 x) {
    const __m256d invln2 = _mm256_set1_pd(EXPF_INVLN2_32), shift = _mm256_set1_pd(EXPF_SHIFT);
    __m256d xd = _mm256_cvtps_pd(x);
    __m256d z = _mm256_mul_pd(xd, invln2);
    __m256d kd = _mm256_add_pd(z, shift);
    __m256i ki = _mm256_castpd_si256(kd);
    kd = _mm256_sub_pd(kd, shift);
    __m256d r = _mm256_sub_pd(z, kd);
    __m256i idx = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
    __m256i t = _mm256_i64gather_epi64((const long long *)expf_table, idx, 8);
    t = _mm256_add_epi64(t, _mm256_slli_epi64(ki, 47));
    __m256d s = _mm256_castsi256_pd(t);
    __m256d p = _mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(EXPF_C0), r), _mm256_set1_pd(EXPF_C1));
    __m256d r2 = _mm256_mul_pd(r, r);
    __m256d y = _mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(EXPF_C2), r), _mm256_set1_pd(1.0));
    y = _mm256_add_pd(_mm256_mul_pd(p, r2), y);
    y = _mm256_mul_pd(y, s);
    return _mm256_cvtpd_ps(y);
}

__attribute__((target("avx2"))) static void expf_rows_avx2(float *y, const float *x, long n) {
    /* |x| >= 88 (as bits: at or above 88.0f's with the sign cleared) or not
     * finite: the library's special cases */
    const __m256i absmask = _mm256_set1_epi32(0x7fffffff), limit = _mm256_set1_epi32(0x42b00000 - 1);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256i a = _mm256_and_si256(_mm256_castps_si256(v), absmask);
        if (!_mm256_testz_si256(_mm256_cmpgt_epi32(a, limit), _mm256_set1_epi32(-1))) {
            for (int k = 0; k < 8; k++) y[i + k] = expf(x[i + k]);
            continue;
        }
        __m128 lo = expf4_avx2(_mm256_castps256_ps128(v)), hi = expf4_avx2(_mm256_extractf128_ps(v, 1));
        _mm256_storeu_ps(y + i, _mm256_set_m128(hi, lo));
    }
    for (; i < n; i++) y[i] = expf(x[i]);
}
#endif

void expf_rows(float *y, const float *x, long n) {
#if defined(__x86_64__)
    if (mm_have_avx2()) {
        expf_rows_avx2(y, x, n);
        return;
    }
#endif
    for (long i = 0; i < n; i++) y[i] = expf(x[i]);
}
