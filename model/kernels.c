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
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- thread pool ---------------------------------------------------------
 *
 * A decode step of the small default model is ~25 parallel regions of
 * 10-100 us each. Waking a thread through a condition variable costs tens
 * of microseconds on a VM (a futex wake, a context switch), which was more
 * than half of a step with few slots. So both sides spin first: a worker
 * watches the generation counter, and the caller watches the count of
 * workers still running, for up to POOL_SPIN polls (~30-60 us), and only
 * then sleep on the condition variables. The sleeping side announces itself
 * (sleepers, caller_sleeps) before it checks the condition once more under
 * the mutex, and the waking side publishes its change before it reads that
 * announcement, both sequentially consistent: one of the two always sees
 * the other, so no wake-up is lost. Which thread computes what does not
 * change, so results are the same bits as before. */

enum { POOL_SPIN = 4000 };

static struct {
    int n;
    int started;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    _Atomic unsigned gen;     /* bumped once per parallel region */
    _Atomic int pending;      /* workers still running the current region */
    _Atomic int sleepers;     /* workers asleep (or about to be) on go */
    _Atomic int caller_sleeps; /* the caller asleep (or about to be) on done */
    void (*fn)(void *, int, int);
    void *ctx;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

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

/* The next region's generation, once it differs from `seen`. */
static unsigned wait_for_region(unsigned seen) {
    for (int i = 0; i < POOL_SPIN; i++) {
        unsigned g = atomic_load_explicit(&pool.gen, memory_order_acquire);
        if (g != seen) return g;
        cpu_relax();
    }
    pthread_mutex_lock(&pool.mu);
    atomic_fetch_add(&pool.sleepers, 1);
    unsigned g;
    while ((g = atomic_load(&pool.gen)) == seen) pthread_cond_wait(&pool.go, &pool.mu);
    atomic_fetch_sub(&pool.sleepers, 1);
    pthread_mutex_unlock(&pool.mu);
    return g;
}

static void *worker(void *arg) {
    int tid = (int)(long)arg;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_region(seen);
        pool.fn(pool.ctx, tid, pool.n); /* fn and ctx were written before gen (release) */
        if (atomic_fetch_sub(&pool.pending, 1) == 1 && atomic_load(&pool.caller_sleeps)) {
            pthread_mutex_lock(&pool.mu);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.mu);
        }
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
    pool.fn = fn;
    pool.ctx = ctx;
    atomic_store(&pool.pending, n - 1);
    atomic_fetch_add(&pool.gen, 1); /* publishes fn, ctx and pending */
    if (atomic_load(&pool.sleepers)) {
        pthread_mutex_lock(&pool.mu);
        pthread_cond_broadcast(&pool.go);
        pthread_mutex_unlock(&pool.mu);
    }
    fn(ctx, 0, n);
    for (int i = 0; i < POOL_SPIN; i++) {
        if (atomic_load_explicit(&pool.pending, memory_order_acquire) == 0) return;
        cpu_relax();
    }
    pthread_mutex_lock(&pool.mu);
    atomic_store(&pool.caller_sleeps, 1);
    while (atomic_load(&pool.pending)) pthread_cond_wait(&pool.done, &pool.mu);
    atomic_store(&pool.caller_sleeps, 0);
    pthread_mutex_unlock(&pool.mu);
}

void par_range(long n, long align, int tid, int nth, long *lo, long *hi) {
    long units = (n + align - 1) / align;
    long a = units * tid / nth, b = units * (tid + 1) / nth;
    *lo = a * align < n ? a * align : n;
    *hi = b * align < n ? b * align : n;
}

/* ---- kernels ------------------------------------------------------------------ */

#define INLINE static inline __attribute__((always_inline))

/* AVX2+FMA: 8 floats per vector */
#pragma GCC push_options
#pragma GCC target("avx2,fma")
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4))); /* unaligned loads/stores */
#define VT v8
#define VTU v8u
#define VW 8
#define SFX(name) name##_avx2
#include "kernels_body.h"
#undef VT
#undef VTU
#undef VW
#undef SFX
static void nt_part_avx2_6(float *C, const float *A, const float *B, int N, int K, long m0, long m1, long n0, long n1,
                           int acc) {
    nt_part_avx2(C, A, B, N, K, m0, m1, n0, n1, acc);
}
static void nn_part_avx2_6(float *C, const float *A, long sam, long sak, const float *B, int N, int K, long m0,
                           long m1) {
    nn_part_avx2(C, A, sam, sak, B, N, K, m0, m1, 6);
}
#pragma GCC pop_options

/* portable: 4 floats per vector (one SSE or NEON register) */
typedef float v4 __attribute__((vector_size(16)));
typedef float v4u __attribute__((vector_size(16), aligned(4)));
#define VT v4
#define VTU v4u
#define VW 4
#define SFX(name) name##_gen
#include "kernels_body.h"
#undef VT
#undef VTU
#undef VW
#undef SFX
static void nt_part_generic(float *C, const float *A, const float *B, int N, int K, long m0, long m1, long n0,
                            long n1, int acc) {
    nt_part_gen(C, A, B, N, K, m0, m1, n0, n1, acc);
}
static void nn_part_generic(float *C, const float *A, long sam, long sak, const float *B, int N, int K, long m0,
                            long m1) {
    nn_part_gen(C, A, sam, sak, B, N, K, m0, m1, 6);
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
    if (have_avx2()) nt_part_avx2_6(j->C, j->A, j->B, j->N, j->K, m0, m1, n0, n1, j->acc);
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
    if (have_avx2()) nn_part_avx2_6(j->C, j->A, j->sam, j->sak, j->B, j->N, j->K, m0, m1);
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
