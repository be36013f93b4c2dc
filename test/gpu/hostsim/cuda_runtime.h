/*
 * hostsim/cuda_runtime.h - NOT the CUDA runtime: a host-memory stand-in with
 * the few calls model/cuda's host code makes, so that qwen3_cuda.cu and
 * infer.cu can be compiled by g++ and run on a machine without a GPU
 * (test/gpu/hostsim/hostsim.cc has the kernels' math as plain loops).
 * "Device" memory is malloc'd host memory; streams are synchronous.
 */
#ifndef VIV_HOSTSIM_CUDA_RUNTIME_H
#define VIV_HOSTSIM_CUDA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
typedef struct hostsim_stream *cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int major, minor;
};

static inline cudaError_t cudaMalloc(void **p, size_t n) {
    /* 256-byte aligned, as the runtime's allocations are (kemu's access
     * profile counts 32-byte sectors from the real addresses); filled with
     * 0xff bytes (NaN as fp32 and as bf16): reading memory the code never
     * wrote poisons the results instead of passing as zeros */
    if (posix_memalign(p, 256, n ? n : 1)) *p = NULL;
    if (*p) memset(*p, 0xff, n);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
static inline cudaError_t cudaFree(void *p) { return free(p), cudaSuccess; }
static inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, enum cudaMemcpyKind k) {
    (void)k;
    memmove(d, s, n);
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, enum cudaMemcpyKind k, cudaStream_t st) {
    (void)st;
    return cudaMemcpy(d, s, n, k);
}
static inline cudaError_t cudaMemset(void *d, int v, size_t n) { return memset(d, v, n), cudaSuccess; }
static inline cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t st) {
    (void)st;
    return cudaMemset(d, v, n);
}
static inline cudaError_t cudaStreamCreate(cudaStream_t *st) { return *st = (cudaStream_t)1, cudaSuccess; }
static inline cudaError_t cudaStreamDestroy(cudaStream_t st) { return (void)st, cudaSuccess; }
static inline cudaError_t cudaStreamSynchronize(cudaStream_t st) { return (void)st, cudaSuccess; }
static inline cudaError_t cudaGetLastError(void) { return cudaSuccess; }
static inline const char *cudaGetErrorString(cudaError_t e) { return e ? "hostsim error" : "no error"; }
static inline cudaError_t cudaGetDeviceCount(int *n) { return *n = 1, cudaSuccess; }
static inline cudaError_t cudaSetDevice(int d) { return (void)d, cudaSuccess; }
static inline cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int d) {
    (void)d;
    snprintf(p->name, sizeof p->name, "hostsim (CPU stand-in, not a GPU)");
    p->totalGlobalMem = 0;
    p->major = p->minor = 0;
    return cudaSuccess;
}

#endif
