/*
 * expf_rows.h - the exponential of a row of floats, bit for bit what the
 * C library's expf gives each element, eight at a time where the CPU has
 * AVX2 (expf_rows.c says how, and why the bits must not change).
 */
#ifndef VIV_MODEL_EXPF_ROWS_H
#define VIV_MODEL_EXPF_ROWS_H

/* y[i] = expf(x[i]) for i < n; y may be x. */
void expf_rows(float *y, const float *x, long n);

#endif
