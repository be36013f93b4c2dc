/*
 * kernels.h - the CPU building blocks of the model: a small thread pool and
 * the three matrix products training and inference need.
 *
 * All matrices are row-major fp32.
 *   mm_nt:  C[M,N] (+)= A[M,K] . B[N,K]^T     forward: out = inp . W^T
 *   mm_nn:  C[M,N] +=   A[M,K] . B[K,N]       backward: dinp += dout . W
 *   mm_tn:  C[M,N] +=   A[K,M]^T . B[K,N]     backward: dW += dout^T . inp
 * Each is cache-blocked and split across the pool's threads; the inner
 * kernels are written with GCC vector extensions and compiled twice, once for
 * AVX2+FMA (chosen at run time with __builtin_cpu_supports) and once
 * portable.
 */
#ifndef VIV_MODEL_KERNELS_H
#define VIV_MODEL_KERNELS_H

#include <stddef.h>

/* Threads: VIV_THREADS from the environment, else the CPUs we may run on. */
int par_threads(void);
void par_set_threads(int n); /* before first use; tests and benches */
/* Run fn(ctx, tid, nthreads) on every thread of the pool (tid 0 is the
 * caller) and wait for all. Not reentrant. */
void par_run(void (*fn)(void *ctx, int tid, int nth), void *ctx);
/* Split [0, n) into nth nearly equal parts aligned to `align`; part tid. */
void par_range(long n, long align, int tid, int nth, long *lo, long *hi);

void mm_nt(float *C, const float *A, const float *B, int M, int N, int K, int accumulate);
void mm_nn(float *C, const float *A, const float *B, int M, int N, int K);
void mm_tn(float *C, const float *A, const float *B, int M, int N, int K);

/* Which kernel set runs ("avx2+fma" or "portable"); VIV_NO_AVX2=1 forces the latter. */
const char *mm_isa(void);
int mm_have_avx2(void); /* 1 when the AVX2+FMA code paths are in use */
/* Tests: 1 = use the portable kernels from now on, 0 = pick by CPU again. */
void mm_force_portable(int on);

#endif
