/*
 * kemu_tests.cu - checks of the emulator itself (test/gpu/kemu): kernels
 * written as for a GPU, compiled through kemu.sed + kemu.h like
 * model/cuda's, with known answers. Each case is also a kernel a GPU runs
 * the same way; the broken ones (a divergent shuffle, a missing
 * __syncwarp after a wmma store) must be caught, the first by kemu aborting
 * (run in a child), the second by a wrong result.
 */
#include <mma.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "wmma_kernel.cuh"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace nvcuda;

static int failed, passed;
#define CHECK(name, cond, ...)                                                                                         \
    do {                                                                                                               \
        if (cond) printf("ok - kemu: %s\n", name), passed++;                                                          \
        else {                                                                                                         \
            printf("not ok - kemu: %s: ", name);                                                                       \
            printf(__VA_ARGS__);                                                                                       \
            printf("\n");                                                                                              \
            failed++;                                                                                                  \
        }                                                                                                              \
    } while (0)

/* every thread gets the sum of all thread ids of its block: warp shuffles, then shared memory */
__global__ void block_sum_kernel(int *out) {
    __shared__ int part[32];
    int v = threadIdx.x, lane = threadIdx.x % 32, w = threadIdx.x / 32;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) part[w] = v;
    __syncthreads();
    int s = 0;
    for (int i = 0; i < (int)(blockDim.x / 32); i++) s += part[i];
    out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}

/* lane l reads lane (l + 1) % 32's value, 40 times in a row (slot reuse) */
__global__ void rotate_kernel(int *out) {
    int v = threadIdx.x;
    for (int i = 0; i < 40; i++) v = __shfl_sync(0xffffffffu, v, (threadIdx.x + 1) % 32);
    out[threadIdx.x] = v;
}

/* dynamic shared memory, reversed through the block */
__global__ void reverse_kernel(float *out, const float *in, int n) {
    extern __shared__ float buf[];
    buf[threadIdx.x] = in[threadIdx.x];
    __syncthreads();
    out[threadIdx.x] = buf[n - 1 - threadIdx.x];
}

/* reads a static __shared__ word before writing it, then writes it: on a
 * GPU its value is undefined, in kemu NaN (not the previous block's) */
__global__ void stale_kernel(float *out) {
    __shared__ float word;
    if (threadIdx.x == 0) out[blockIdx.x] = word;
    __syncthreads();
    if (threadIdx.x == 0) word = 1.0f + (float)blockIdx.x;
}

/* the two warps of the block wait at two different __syncthreads */
__global__ void split_barrier_kernel(int *out) {
    if (threadIdx.x < 32) {
        out[threadIdx.x] = 1;
        __syncthreads();
    } else {
        __syncthreads();
        out[threadIdx.x] = 2;
    }
}
static void run_split_barrier(void) {
    static int out[64];
    split_barrier_kernel<<<1, 64>>>(out);
}

/* a shuffle inside a branch only some lanes take: a bug kemu must report */
__global__ void divergent_kernel(int *out) {
    int v = threadIdx.x;
    if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
    else __syncthreads();
    out[threadIdx.x] = v;
}

static int aborts(void (*fn)(void)) {
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        freopen("/dev/null", "w", stderr);
        fn();
        _exit(0);
    }
    int st = 0;
    waitpid(p, &st, 0);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

/* 64 KiB of dynamic shared memory: a GPU launches it only after the
 * kernel's cudaFuncSetAttribute opt-in (above 48 KiB) */
static void run_big_smem(void) {
    static float in[100], out[100];
    reverse_kernel<<<1, 100, 65536>>>(out, in, 100);
}
static void run_big_smem_optin(void) {
    cudaFuncSetAttribute(reverse_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536);
    run_big_smem();
}
/* gridDim.y is at most 65535 */
static void run_tall_grid(void) {
    static int out[32];
    rotate_kernel<<<dim3(1, 70000), 32>>>(out);
}

static void run_divergent(void) {
    static int out[32];
    divergent_kernel<<<1, 32>>>(out);
}

/* wmma from a pointer 16 bytes past a 32-byte boundary: a fault on a GPU */
static void run_misaligned(void) {
    static __align__(32) __nv_bfloat16 m[16 * 16 + 8];
    static float c[256];
    wmma_kernel<<<1, 32>>>(c, m + 8, m, 1);
}

int main(void) {
    static int sums[3 * 128], rot[32];
    block_sum_kernel<<<3, 128>>>(sums);
    int bad = 0;
    for (int i = 0; i < 3 * 128; i++) bad += sums[i] != 127 * 128 / 2;
    CHECK("shuffles and __syncthreads (block sum)", !bad, "%d wrong sums", bad);

    rotate_kernel<<<1, 32>>>(rot);
    bad = 0;
    for (int l = 0; l < 32; l++) bad += rot[l] != (l + 40) % 32;
    CHECK("40 shuffles in a row reuse the slots safely", !bad, "%d lanes wrong", bad);

    static float in[100], out[100];
    for (int i = 0; i < 100; i++) in[i] = (float)i;
    reverse_kernel<<<1, 100, 100 * sizeof(float)>>>(out, in, 100);
    bad = 0;
    for (int i = 0; i < 100; i++) bad += out[i] != 99 - i;
    CHECK("dynamic shared memory, partial warp", !bad, "%d wrong", bad);

    static __align__(32) __nv_bfloat16 a[256], bt[256];
    static float c[256];
    for (int i = 0; i < 256; i++) a[i] = __float2bfloat16((float)(i % 7) - 3), bt[i] = __float2bfloat16((float)(i % 5) - 2);
    wmma_kernel<<<1, 32>>>(c, a, bt, 1);
    double worst = 0;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            double s = 0;
            for (int k = 0; k < 16; k++) s += (double)__bfloat162float(a[i * 16 + k]) * __bfloat162float(bt[j * 16 + k]);
            worst = fmax(worst, fabs(2 * s - c[j * 16 + i]));
        }
    CHECK("wmma 16x16x16 bf16 product (row-major A, col-major B)", worst == 0, "worst error %g", worst);

    /* shared memory is NaN when a block starts, so a lane that reads the
     * tile before the other lanes stored their shares gets NaNs */
    for (int i = 0; i < 256; i++) a[i] = __float2bfloat16((float)(i % 3) + 1);
    wmma_kernel<<<1, 32>>>(c, a, bt, 0);
    bad = 0;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) {
            double s = 0;
            for (int k = 0; k < 16; k++) s += (double)__bfloat162float(a[i * 16 + k]) * __bfloat162float(bt[j * 16 + k]);
            bad += !(2 * s == c[j * 16 + i]); /* NaN counts as wrong */
        }
    CHECK("a read of a wmma store without __syncwarp is caught", bad > 0, "the racy read gave the right answer");

    /* static __shared__ memory is refilled for every block: the previous
     * block's (or launch's) values are gone */
    static float stale[2];
    stale_kernel<<<2, 32>>>(stale);
    CHECK("static __shared__ starts as NaN in every block", isnan(stale[0]) && isnan(stale[1]),
          "read %g and %g", stale[0], stale[1]);

    CHECK("a divergent shuffle aborts", aborts(run_divergent), "kemu did not abort");
    CHECK("threads at two different __syncthreads abort", aborts(run_split_barrier), "kemu did not abort");
    CHECK("64 KiB of dynamic shared memory without the opt-in aborts", aborts(run_big_smem), "kemu launched it");
    CHECK("... and runs after cudaFuncSetAttribute(MaxDynamicSharedMemorySize)", !aborts(run_big_smem_optin),
          "kemu aborted");
    CHECK("an opt-in above 227 KiB is refused",
          cudaFuncSetAttribute(reverse_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 232449) != cudaSuccess,
          "cudaFuncSetAttribute succeeded");
    CHECK("a grid 65536 or more blocks tall aborts", aborts(run_tall_grid), "kemu launched it");
    CHECK("a misaligned wmma pointer aborts", aborts(run_misaligned), "kemu did not abort");
    printf("# %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
