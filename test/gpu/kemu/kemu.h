/*
 * kemu.h - run the real CUDA kernels of model/cuda on the CPU.
 *
 * hostsim (../hostsim) re-states each kernel's math as a host loop, so it
 * checks the host code around the kernels but never the kernels. kemu runs
 * the kernel sources themselves: kernels.cu, attention.cu, attention_tc.cu
 * are compiled by g++ with this header forced in front (-include), after a
 * two-line sed (cuda.mk) rewrites what is not C++:
 *
 *   name<<<grid, block, smem, stream>>>(args);  ->  kemu_launch(kemu_cfg(grid, block, smem, stream), name, args);
 *   extern __shared__ T name[];                 ->  T *name = (T *)kemu_dyn_smem();
 *
 * How a launch runs (kemu.cc). Blocks run one after another. Inside a block
 * every CUDA thread is a fiber with its own stack; a fiber runs until it
 * reaches a barrier and then yields to the block's scheduler:
 *   __syncthreads()      waits for every thread of the block that has not returned
 *   __syncwarp(), __shfl_*_sync()
 *                        wait for the 32 lanes of the warp: a shuffle writes the
 *                        lane's value to the warp's slots, waits, and reads the
 *                        source lane's slot (two slot sets in turn, so a fast
 *                        lane cannot overwrite a slot a slow one has yet to read)
 * A warp whose lanes wait at different barriers (a shuffle in divergent
 * code, a lane that returned while the others shuffle), or a block where
 * nobody can move, is a kernel bug on a GPU too: kemu prints what it saw and
 * aborts. __shared__ becomes `static`: blocks run one at a time, so one copy
 * is the block's shared memory; dynamic shared memory is a buffer filled
 * with NaN bytes before every block, so a kernel that reads it before
 * writing it gets NaNs, not zeros. atomicAdd is a plain add (one OS
 * thread). nvcuda::wmma is in the mma.h beside this file.
 *
 * Static __shared__ variables live in one linker section (kemu_smem) that,
 * like dynamic shared memory, is filled with NaN bytes before every block.
 *
 * Races (KEMU_TSAN, the kemu-tsan build in cuda.mk): fibers switch only at
 * barriers, so a missing __syncthreads between one thread's write and
 * another's read may compute the right answer here by luck of the order.
 * Built with -fsanitize=thread -DKEMU_TSAN, every CUDA thread is also a
 * ThreadSanitizer fiber; fiber switches carry no ordering, barriers are
 * release/acquire pairs, shared memory and the barrier objects are fresh
 * memory for every block (remapped, so ThreadSanitizer forgets the last
 * block's accesses), and a kernel's end orders it before the next launch.
 * ThreadSanitizer then reports, with both stacks, any two accesses to one
 * address by two threads of a block with no barrier between them, or by two
 * blocks of a launch, one of them a write and not both atomic: what
 * compute-sanitizer's racecheck finds for shared memory, and more (global
 * memory too, and across blocks). See race_tests.cu.
 *
 * Overruns (KEMU_ASAN, the kemu-asan build): the same with AddressSanitizer;
 * a launch's dynamic shared memory is then a heap block of its exact size,
 * so an access past it, or past a cudaMalloc'd buffer, is reported.
 *
 * Access profile (KEMU_PROF, the kemu-prof build; prof.h): every load and
 * store of the kernels is seen with its address, warps' requests are
 * rebuilt from them, and each is costed as a GPU's memory system would: the
 * 32-byte sectors a global request moves, the bank-conflict passes a
 * shared one takes, against the fewest its bytes need.
 *
 * What kemu does NOT check: out-of-bounds accesses that stay inside one
 * allocation, anything about speed, and the real cuBLASLt (kemu's
 * cublaslt.cc computes what the library documents).
 */
#ifndef VIV_KEMU_H
#define VIV_KEMU_H

#include <cuda_bf16.h> /* hostsim's: the bits of bf16, round to nearest even */
#include <cuda_runtime.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <tuple>
#include <type_traits>
#include <utility>

/* ---- the CUDA keywords -------------------------------------------------------------- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
/* every static __shared__ variable in one section, which kemu.cc refills
 * (and under KEMU_TSAN remaps) before each block */
#define __shared__ static __attribute__((section("kemu_smem")))
#define __constant__ static
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};
/* Vector types aligned as CUDA's are (8 and 16 bytes): the race-check
 * build adds -fsanitize=alignment, so there a float4 or uint4 access at an
 * address a GPU would fault on ("misaligned address") aborts with the
 * kernel's stack (kemu.cc asks UBSan to abort). */
#ifdef KEMU_PROF
/* The access profile (prof.h) must see a vector copy as the one 8- or
 * 16-byte access a GPU makes of it, where g++ would copy member by member:
 * a copy goes through a union member of the whole size. */
typedef unsigned kemu_bits16 __attribute__((vector_size(16)));
#define KEMU_WHOLE_COPY(T)                                                                                             \
    T() = default;                                                                                                     \
    T(const T &o) : bits(o.bits) {}                                                                                    \
    T &operator=(const T &o) {                                                                                         \
        bits = o.bits;                                                                                                 \
        return *this;                                                                                                  \
    }
#define KEMU_VEC2(V, T)                                                                                                \
    struct alignas(2 * sizeof(T)) V {                                                                                  \
        union {                                                                                                        \
            struct {                                                                                                   \
                T x, y;                                                                                                \
            };                                                                                                         \
            unsigned long long bits;                                                                                   \
        };                                                                                                             \
        V(T a, T b) : x(a), y(b) {}                                                                                    \
        KEMU_WHOLE_COPY(V)                                                                                             \
    };
#define KEMU_VEC4(V, T)                                                                                                \
    struct alignas(4 * sizeof(T)) V {                                                                                  \
        union {                                                                                                        \
            struct {                                                                                                   \
                T x, y, z, w;                                                                                          \
            };                                                                                                         \
            kemu_bits16 bits;                                                                                          \
        };                                                                                                             \
        V(T a, T b, T c, T d) : x(a), y(b), z(c), w(d) {}                                                              \
        KEMU_WHOLE_COPY(V)                                                                                             \
    };
KEMU_VEC2(float2, float)
KEMU_VEC2(uint2, unsigned)
KEMU_VEC4(float4, float)
KEMU_VEC4(uint4, unsigned)
#else
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) uint2 { /* 8-byte moves of 4 bf16 (attention_tc.cu) */
    unsigned x, y;
};
struct alignas(16) uint4 { /* 16-byte moves of bf16 rows (attention_tc.cu) */
    unsigned x, y, z, w;
};
#endif
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

/* The running fiber's coordinates: the scheduler sets these before it
 * switches into a fiber, and fibers switch only at barriers. */
extern uint3 kemu_threadIdx, kemu_blockIdx;
extern dim3 kemu_blockDim, kemu_gridDim;
#define threadIdx kemu_threadIdx
#define blockIdx kemu_blockIdx
#define blockDim kemu_blockDim
#define gridDim kemu_gridDim
#define warpSize 32

/* ---- barriers and warp exchange (kemu.cc) ------------------------------------------- */
void kemu_syncthreads(void);
void kemu_syncwarp(void);
/* The running fiber (linear thread index in the block), every warp's
 * shuffle slots (two sets, [warp][set][lane]) and each lane's next set. */
extern int kemu_cur;
extern uint64_t (*kemu_slot)[2][32]; /* [32] warps, in the block's memory (kemu.cc) */
extern unsigned char *kemu_parity;         /* [1024], likewise */
static inline int kemu_lane(void) { return kemu_cur & 31; }
void *kemu_dyn_smem(void);
void kemu_wmma_misuse(const char *what, const void *p, unsigned ldm); /* mma.h's checks: aborts */

#define __syncthreads() kemu_syncthreads()
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)mask;
    kemu_syncwarp();
}

template <typename V> static inline V kemu_exchange(V v, int src) {
    static_assert(sizeof(V) <= 8, "kemu shuffles values of at most 8 bytes");
    uint64_t bits = 0;
    __builtin_memcpy(&bits, &v, sizeof v);
    /* Two slot sets used in turn: after the barrier a lane that runs ahead
     * writes its next shuffle's value into the other set, so the one slower
     * lanes still read stays intact, and it cannot get two shuffles ahead
     * because that needs the slower lanes at the next barrier. */
    int par = kemu_parity[kemu_cur];
    kemu_parity[kemu_cur] = (unsigned char)!par;
    uint64_t *slots = kemu_slot[kemu_cur >> 5][par];
    slots[kemu_lane()] = bits;
    kemu_syncwarp();
    bits = slots[src & 31];
    V out;
    __builtin_memcpy(&out, &bits, sizeof out);
    return out;
}
template <typename V> static inline V __shfl_sync(unsigned mask, V v, int src, int width = 32) {
    (void)mask;
    int lane = kemu_lane(), base = lane & ~(width - 1);
    return kemu_exchange(v, base + (src & (width - 1)));
}
template <typename V> static inline V __shfl_xor_sync(unsigned mask, V v, int x, int width = 32) {
    (void)mask;
    int lane = kemu_lane(), src = lane ^ x;
    if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
    return kemu_exchange(v, src);
}
template <typename V> static inline V __shfl_down_sync(unsigned mask, V v, unsigned d, int width = 32) {
    (void)mask;
    int lane = kemu_lane(), src = lane + (int)d;
    if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
    return kemu_exchange(v, src);
}
template <typename V> static inline V __shfl_up_sync(unsigned mask, V v, unsigned d, int width = 32) {
    (void)mask;
    int lane = kemu_lane(), src = lane - (int)d;
    if (src < (lane & ~(width - 1))) src = lane;
    return kemu_exchange(v, src);
}

/* ---- atomics ------------------------------------------------------------------------
 * One OS thread runs every fiber, so a plain read-modify-write is atomic.
 * Under KEMU_TSAN it is a compare-and-swap on the value's bits instead, so
 * ThreadSanitizer knows it as an atomic (atomics of two threads never race;
 * an atomic and a plain access to one address do). */
#ifdef KEMU_TSAN
template <typename V, typename Op> static inline V kemu_atomic_rmw(V *p, Op op) {
    static_assert(sizeof(V) == 4 || sizeof(V) == 8, "kemu atomics on 4- or 8-byte values");
    typedef typename std::conditional<sizeof(V) == 4, uint32_t, uint64_t>::type U;
    U *q = (U *)p, seen = __atomic_load_n(q, __ATOMIC_RELAXED);
    for (;;) {
        V old, next;
        __builtin_memcpy(&old, &seen, sizeof old);
        next = op(old);
        U bits;
        __builtin_memcpy(&bits, &next, sizeof bits);
        if (__atomic_compare_exchange_n(q, &seen, bits, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return old;
    }
}
template <typename V> static inline V atomicAdd(V *p, V v) {
    return kemu_atomic_rmw(p, [v](V o) { return (V)(o + v); });
}
template <typename V> static inline V atomicMax(V *p, V v) {
    return kemu_atomic_rmw(p, [v](V o) { return v > o ? v : o; });
}
#else
template <typename V> static inline V atomicAdd(V *p, V v) {
    V old = *p;
    *p = old + v;
    return old;
}
template <typename V> static inline V atomicMax(V *p, V v) {
    V old = *p;
    if (v > old) *p = v;
    return old;
}
#endif

/* ---- device math that the host library spells differently ------------------------------ */
/* __expf and __logf: glibc declares them already */
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return x < 0 ? 0 : x > 1 ? 1 : x; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long min(long a, long b) { return a < b ? a : b; }
static inline long max(long a, long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
template <typename V> static inline V __ldg(const V *p) { return *p; }

/* ---- bf16 pairs (cuda_bf16.h's __nv_bfloat162) ------------------------------------------- */
#ifdef KEMU_PROF
struct alignas(4) __nv_bfloat162 {
    union {
        struct {
            __nv_bfloat16 x, y;
        };
        unsigned bits;
    };
    __nv_bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) : x(a), y(b) {}
    KEMU_WHOLE_COPY(__nv_bfloat162)
};
#else
struct alignas(4) __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
#endif
static inline float2 __bfloat1622float2(__nv_bfloat162 b) { return {__bfloat162float(b.x), __bfloat162float(b.y)}; }
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
    return {__float2bfloat16(a), __float2bfloat16(b)};
}
static inline __nv_bfloat162 __float22bfloat162_rn(float2 f) { return __floats2bfloat162_rn(f.x, f.y); }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
static inline float __low2float(__nv_bfloat162 b) { return __bfloat162float(b.x); }
static inline float __high2float(__nv_bfloat162 b) { return __bfloat162float(b.y); }

/* ---- launching ---------------------------------------------------------------------- */
struct kemu_cfg {
    dim3 grid, block;
    size_t smem;
    kemu_cfg(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = 0) : grid(g), block(b), smem(s) { (void)st; }
};

/* Runs body once per thread of every block (kemu.cc). kernel identifies
 * the kernel for its cudaFuncSetAttribute opt-in. */
void kemu_run(const kemu_cfg &c, void (*body)(void *), void *arg, const void *kernel);

template <typename... P> struct kemu_call {
    void (*fn)(P...);
    std::tuple<P...> args;
    static void run(void *self) {
        kemu_call *c = (kemu_call *)self;
        std::apply(c->fn, c->args);
    }
};

/* The arguments are converted to the kernel's parameter types here, as a
 * real launch copies them into the kernel's parameter space. */
template <typename... P, typename... A> static void kemu_launch(const kemu_cfg &c, void (*fn)(P...), A &&...a) {
    kemu_call<P...> call{fn, std::tuple<P...>((P)std::forward<A>(a)...)};
    kemu_run(c, &kemu_call<P...>::run, &call, (const void *)fn);
}

/* Runtime calls the kernel files make that hostsim's runtime header lacks. */
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum { cudaErrorInvalidValue = 1 };
/* Records a kernel's opt-in above 48 KiB of dynamic shared memory, which
 * kemu_run then requires of a launch that asks for more, as a GPU does;
 * above what an sm_90 block may have (227 KiB) it fails, as there. */
cudaError_t kemu_set_max_dyn_smem(const void *kernel, int bytes);
template <typename F> static inline cudaError_t cudaFuncSetAttribute(F f, cudaFuncAttribute a, int v) {
    return a == cudaFuncAttributeMaxDynamicSharedMemorySize ? kemu_set_max_dyn_smem((const void *)f, v)
                                                            : cudaErrorInvalidValue;
}
/* attn_probe.cu's: launches finish before they return, and time stands still */
static inline cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
typedef struct kemu_event *cudaEvent_t;
static inline cudaError_t cudaEventCreate(cudaEvent_t *e) { return *e = NULL, cudaSuccess; }
static inline cudaError_t cudaEventDestroy(cudaEvent_t e) { return (void)e, cudaSuccess; }
static inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t st) { return (void)e, (void)st, cudaSuccess; }
static inline cudaError_t cudaEventSynchronize(cudaEvent_t e) { return (void)e, cudaSuccess; }
static inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    return (void)a, (void)b, *ms = 0, cudaSuccess;
}

#endif
