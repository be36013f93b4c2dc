/*
 * kernels.c - thread pool and blocked matrix products (see kernels.h).
 *
 * Why these shapes. mm_nt is the forward pass: every output is a dot product
 * of a row of A with a row of B (a weight row), both contiguous, so the
 * kernel keeps a 4x3 block of 8-wide partial sums in registers and reduces
 * them at the end. mm_nn/mm_tn are the backward pass: there the shared index
 * runs down B's rows, so the kernel broadcasts one A element and multiplies
 * it into 16 contiguous columns of B (a 6x16 register block, no reductions);
 * the K dimension is cut into blocks so that the B panel in use stays in
 * L2 while all rows of A stream past it.
 */
#define _GNU_SOURCE
#include "kernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- thread pool --------------------------------------------------------- */

static struct {
    int n;
    int started;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned gen;
    int pending;
    void (*fn)(void *, int, int);
    void *ctx;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static int default_threads(void) {
    const char *e = getenv("VIV_THREADS");
    if (e && atoi(e) > 0) return atoi(e) > 256 ? 256 : atoi(e);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int par_threads(void) {
    if (!pool.n) pool.n = default_threads();
    return pool.n;
}

void par_set_threads(int n) {
    if (!pool.started && n > 0) pool.n = n;
}

static void *worker(void *arg) {
    int tid = (int)(long)arg;
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&pool.mu);
        while (pool.gen == seen) pthread_cond_wait(&pool.go, &pool.mu);
        seen = pool.gen;
        void (*fn)(void *, int, int) = pool.fn;
        void *ctx = pool.ctx;
        pthread_mutex_unlock(&pool.mu);
        fn(ctx, tid, pool.n);
        pthread_mutex_lock(&pool.mu);
        if (--pool.pending == 0) pthread_cond_signal(&pool.done);
        pthread_mutex_unlock(&pool.mu);
    }
    return NULL;
}

void par_run(void (*fn)(void *ctx, int tid, int nth), void *ctx) {
    int n = par_threads();
    if (n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    if (!pool.started) {
        pool.th = calloc((size_t)n, sizeof *pool.th);
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 1 << 20);
        for (int i = 1; i < n; i++)
            if (pthread_create(&pool.th[i], &attr, worker, (void *)(long)i)) abort();
        pthread_attr_destroy(&attr);
        pool.started = 1;
    }
    pthread_mutex_lock(&pool.mu);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.pending = n - 1;
    pool.gen++;
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.mu);
    fn(ctx, 0, n);
    pthread_mutex_lock(&pool.mu);
    while (pool.pending) pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
}

void par_range(long n, long align, int tid, int nth, long *lo, long *hi) {
    long units = (n + align - 1) / align;
    long a = units * tid / nth, b = units * (tid + 1) / nth;
    *lo = a * align < n ? a * align : n;
    *hi = b * align < n ? b * align : n;
}

/* ---- kernels ------------------------------------------------------------------ */

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4))); /* unaligned loads/stores */
#define INLINE static inline __attribute__((always_inline))

INLINE float hsum8(const v8 *v) {
    float s = 0;
    for (int i = 0; i < 8; i++) s += (*v)[i];
    return s;
}

/* C[mr x nr] (+)= A[mr rows] . B[nr rows]^T over K; mr <= 4, nr <= 3. */
INLINE void nt_tile(const float *A, int lda, const float *B, int ldb, float *C, int ldc, int K, int mr, int nr,
                    int acc) {
    v8 s[4][3];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 3
        for (int j = 0; j < 3; j++) s[i][j] = (v8){0};
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        v8 a[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            if (i < mr) a[i] = *(const v8u *)(A + (size_t)i * lda + k);
#pragma GCC unroll 3
        for (int j = 0; j < 3; j++) {
            if (j >= nr) continue;
            v8 b = *(const v8u *)(B + (size_t)j * ldb + k);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++)
                if (i < mr) s[i][j] += a[i] * b;
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float t = hsum8(&s[i][j]);
            for (int kk = k; kk < K; kk++) t += A[(size_t)i * lda + kk] * B[(size_t)j * ldb + kk];
            float *c = C + (size_t)i * ldc + j;
            *c = acc ? *c + t : t;
        }
}

INLINE void nt_tile_any(const float *A, int lda, const float *B, int ldb, float *C, int ldc, int K, int mr, int nr,
                        int acc) {
    /* one specialised copy per edge shape, so the registers stay registers */
#define NT_CASE(m, n)                                                                                                  \
    case (m) * 4 + (n): nt_tile(A, lda, B, ldb, C, ldc, K, m, n, acc); break;
    switch (mr * 4 + nr) {
        NT_CASE(4, 3) NT_CASE(4, 2) NT_CASE(4, 1) NT_CASE(3, 3) NT_CASE(3, 2) NT_CASE(3, 1)
        NT_CASE(2, 3) NT_CASE(2, 2) NT_CASE(2, 1) NT_CASE(1, 3) NT_CASE(1, 2) NT_CASE(1, 1)
    }
#undef NT_CASE
}

/* Rows [m0,m1) x columns [n0,n1) of C = A . B^T. B is walked in blocks of
 * rows that fit in L2 while every A tile of the range passes over them. */
INLINE void nt_part(float *C, const float *A, const float *B, int N, int K, long m0, long m1, long n0, long n1,
                    int acc) {
    long nb = (192L * 1024 / 4) / (K > 0 ? K : 1); /* B rows per ~192 KiB block */
    nb = nb < 3 ? 3 : nb - nb % 3;
    for (long b0 = n0; b0 < n1; b0 += nb) {
        long b1 = b0 + nb < n1 ? b0 + nb : n1;
        for (long m = m0; m < m1; m += 4) {
            int mr = m1 - m < 4 ? (int)(m1 - m) : 4;
            for (long n = b0; n < b1; n += 3) {
                int nr = b1 - n < 3 ? (int)(b1 - n) : 3;
                nt_tile_any(A + m * K, K, B + n * K, K, C + m * N + n, N, K, mr, nr, acc);
            }
        }
    }
}

/* C[mr x 16] += sum_k A(i,k) * B[k, 0..15] with A(i,k) = A[i*sam + k*sak].
 * nv = number of 8-wide column vectors (1 or 2), mr <= 6. */
INLINE void nn_tile(const float *A, long sam, long sak, const float *B, int ldb, float *C, int ldc, int K, int mr,
                    int nv) {
    v8 s[6][2];
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) s[i][0] = s[i][1] = (v8){0};
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        v8 b0 = *(const v8u *)b, b1 = nv > 1 ? *(const v8u *)(b + 8) : (v8){0};
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) {
            if (i >= mr) continue;
            float a = A[i * sam + k * sak];
            v8 av = {a, a, a, a, a, a, a, a};
            s[i][0] += av * b0;
            if (nv > 1) s[i][1] += av * b1;
        }
    }
    for (int i = 0; i < mr; i++) {
        v8u *c = (v8u *)(C + (size_t)i * ldc);
        c[0] += s[i][0];
        if (nv > 1) *(v8u *)(C + (size_t)i * ldc + 8) += s[i][1];
    }
}

INLINE void nn_tile_any(const float *A, long sam, long sak, const float *B, int ldb, float *C, int ldc, int K, int mr,
                        int nv) {
#define NN_CASE(m, v)                                                                                                  \
    case (m) * 2 + (v): nn_tile(A, sam, sak, B, ldb, C, ldc, K, m, v); break;
    switch (mr * 2 + nv) {
        NN_CASE(6, 2) NN_CASE(6, 1) NN_CASE(5, 2) NN_CASE(5, 1) NN_CASE(4, 2) NN_CASE(4, 1)
        NN_CASE(3, 2) NN_CASE(3, 1) NN_CASE(2, 2) NN_CASE(2, 1) NN_CASE(1, 2) NN_CASE(1, 1)
    }
#undef NN_CASE
}

/* Rows [m0,m1) of C[M,N] += A(m,k) B[k,n]; A(m,k) = A[m*sam + k*sak]. */
INLINE void nn_part(float *C, const float *A, long sam, long sak, const float *B, int N, int K, long m0, long m1) {
    const int KC = 256, NC = 192; /* a 256 x 192 panel of B: 192 KiB */
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = K - k0 < KC ? K - k0 : KC;
        for (int n0 = 0; n0 < N; n0 += NC) {
            int nc = N - n0 < NC ? N - n0 : NC, nvec = nc / 8 * 8;
            for (long m = m0; m < m1; m += 6) {
                int mr = m1 - m < 6 ? (int)(m1 - m) : 6;
                const float *a = A + m * sam + (long)k0 * sak;
                for (int n = 0; n < nvec; n += 16) {
                    int nv = nvec - n >= 16 ? 2 : 1;
                    nn_tile_any(a, sam, sak, B + (size_t)k0 * N + n0 + n, N, C + m * N + n0 + n, N, kc, mr, nv);
                }
                for (int i = 0; i < mr; i++) /* columns left over from the 8-wide vectors */
                    for (int n = n0 + nvec; n < n0 + nc; n++) {
                        float t = 0;
                        for (int k = 0; k < kc; k++) t += a[i * sam + k * sak] * B[(size_t)(k0 + k) * N + n];
                        C[(m + i) * N + n] += t;
                    }
            }
        }
    }
}

static void nt_part_generic(float *C, const float *A, const float *B, int N, int K, long m0, long m1, long n0,
                            long n1, int acc) {
    nt_part(C, A, B, N, K, m0, m1, n0, n1, acc);
}
__attribute__((target("avx2,fma"))) static void nt_part_avx2(float *C, const float *A, const float *B, int N, int K,
                                                              long m0, long m1, long n0, long n1, int acc) {
    nt_part(C, A, B, N, K, m0, m1, n0, n1, acc);
}
static void nn_part_generic(float *C, const float *A, long sam, long sak, const float *B, int N, int K, long m0,
                            long m1) {
    nn_part(C, A, sam, sak, B, N, K, m0, m1);
}
__attribute__((target("avx2,fma"))) static void nn_part_avx2(float *C, const float *A, long sam, long sak,
                                                              const float *B, int N, int K, long m0, long m1) {
    nn_part(C, A, sam, sak, B, N, K, m0, m1);
}

static int use_avx2 = -1;
static int have_avx2(void) {
    if (use_avx2 < 0) {
        const char *e = getenv("VIV_NO_AVX2");
        __builtin_cpu_init();
        use_avx2 = !(e && *e == '1') && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return use_avx2;
}
int mm_have_avx2(void) { return have_avx2(); }
void mm_force_portable(int on) { use_avx2 = on ? 0 : -1; }
const char *mm_isa(void) { return have_avx2() ? "avx2+fma" : "portable"; }

/* ---- parallel drivers ------------------------------------------------------------ */

struct mm_job {
    float *C;
    const float *A, *B;
    int M, N, K, acc;
    long sam, sak;
};

/* Split the larger side: rows of A when there are enough for every thread,
 * else rows of B (decode: one row of A, a whole weight matrix of B). */
static void nt_worker(void *p, int tid, int nth) {
    struct mm_job *j = p;
    long m0 = 0, m1 = j->M, n0 = 0, n1 = j->N;
    if (j->M >= 8L * nth) par_range(j->M, 4, tid, nth, &m0, &m1);
    else par_range(j->N, 3, tid, nth, &n0, &n1);
    if (m0 >= m1 || n0 >= n1) return;
    if (have_avx2()) nt_part_avx2(j->C, j->A, j->B, j->N, j->K, m0, m1, n0, n1, j->acc);
    else nt_part_generic(j->C, j->A, j->B, j->N, j->K, m0, m1, n0, n1, j->acc);
}

void mm_nt(float *C, const float *A, const float *B, int M, int N, int K, int accumulate) {
    struct mm_job j = {C, A, B, M, N, K, accumulate, 0, 0};
    if ((long)M * N * K < 32768) nt_worker(&j, 0, 1); /* not worth waking threads */
    else par_run(nt_worker, &j);
}

static void nn_worker(void *p, int tid, int nth) {
    struct mm_job *j = p;
    long m0, m1;
    par_range(j->M, 6, tid, nth, &m0, &m1);
    if (m0 >= m1) return;
    if (have_avx2()) nn_part_avx2(j->C, j->A, j->sam, j->sak, j->B, j->N, j->K, m0, m1);
    else nn_part_generic(j->C, j->A, j->sam, j->sak, j->B, j->N, j->K, m0, m1);
}

static void nn_run(struct mm_job *j) {
    if ((long)j->M * j->N * j->K < 32768) nn_worker(j, 0, 1);
    else par_run(nn_worker, j);
}

void mm_nn(float *C, const float *A, const float *B, int M, int N, int K) {
    struct mm_job j = {C, A, B, M, N, K, 1, K, 1};
    nn_run(&j);
}

void mm_tn(float *C, const float *A, const float *B, int M, int N, int K) {
    struct mm_job j = {C, A, B, M, N, K, 1, 1, M};
    nn_run(&j);
}
