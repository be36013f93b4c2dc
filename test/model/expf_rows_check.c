/*
 * expf_rows_check.c - expf_rows (model/expf_rows.c) against the C library's
 * expf, bit for bit, built as bin/viv is (static musl, -O3): every float
 * from -104 to 88 whose bit pattern is a multiple of STRIDE past the range's
 * start (STRIDE 1: all 2.2 billion of them), then the special values
 * (infinities, NaNs, overflow and underflow, subnormal inputs), each in
 * every position of an eight-lane block and in a row's tail.
 *
 *   build/test/expf_rows_check [STRIDE]     prints ok/not ok lines
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../model/expf_rows.h"
#include "../../model/kernels.h"

enum { BLOCK = 4099 }; /* not a multiple of 8: every call has a tail */

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static uint32_t to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static long wrong, checked;
static uint32_t first_wrong_in;

static void check(const float *x, long n) {
    static float y[BLOCK];
    expf_rows(y, x, n);
    for (long i = 0; i < n; i++) {
        float want = expf(x[i]);
        int same = isnan(want) ? isnan(y[i]) : to_bits(y[i]) == to_bits(want);
        if (!same && !wrong++) first_wrong_in = to_bits(x[i]);
        checked++;
    }
}

/* Bit patterns lo..hi (inclusive, as unsigned), every stride-th. */
static void sweep(uint32_t lo, uint32_t hi, uint32_t stride) {
    static float x[BLOCK];
    long n = 0;
    for (uint64_t u = lo; u <= hi; u += stride) {
        x[n++] = from_bits((uint32_t)u);
        if (n == BLOCK) check(x, n), n = 0;
    }
    if (n) check(x, n);
}

int main(int argc, char **argv) {
    long stride = argc > 1 ? atol(argv[1]) : 1;
    if (stride < 1 || stride > 1000000) {
        fprintf(stderr, "usage: expf_rows_check [STRIDE 1..1000000]\n");
        return 2;
    }
    sweep(0x00000000u, to_bits(88.0f), (uint32_t)stride);  /* +0 .. 88 */
    sweep(0x80000000u, to_bits(-104.0f), (uint32_t)stride); /* -0 .. -104 */
    long swept = checked;
    const float special[] = {INFINITY, -INFINITY, NAN, -NAN, 88.0f, 88.72f, 88.73f, 89.0f, 1e30f, -88.0f,
                             -87.5f, -103.9f, -103.98f, -104.0f, -150.0f, -1e30f, 1e-45f, -1e-45f, 1e-38f,
                             -0.0f, 0.0f, 0.5f, -0.5f, 1.0f};
    int ns = (int)(sizeof special / sizeof *special);
    float row[8 * 3 + 5];
    for (int s = 0; s < ns; s++)
        for (int at = 0; at < (int)(sizeof row / sizeof *row); at++) {
            for (int k = 0; k < (int)(sizeof row / sizeof *row); k++) row[k] = -0.25f * (float)k;
            row[at] = special[s];
            check(row, sizeof row / sizeof *row);
        }
    const char *how = mm_have_avx2() ? "AVX2 lanes" : "the scalar loop (no AVX2/FMA)";
    if (wrong)
        printf("not ok - expf_rows_matches_libm_expf: %ld of %ld differ (first input bits 0x%08x), %s\n", wrong,
               checked, first_wrong_in, how);
    else
        printf("ok - expf_rows_matches_libm_expf: %ld floats in [-104, 88] (every %ld), %ld special cases, "
               "the same bits (%s)\n", swept, stride, checked - swept, how);
    return wrong != 0;
}
