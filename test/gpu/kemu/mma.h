/*
 * kemu/mma.h - nvcuda::wmma (the warp matrix multiply API of <mma.h>) for
 * kernels run on the CPU by kemu.h.
 *
 * On a GPU a fragment is spread over the 32 lanes of a warp in a layout the
 * API leaves unspecified, so correct kernels only load, store, multiply,
 * fill, and apply one operation to every element. Here every lane holds the
 * whole matrix in row-major order (m x k for matrix_a, k x n for matrix_b,
 * m x n for the accumulator); each lane computes the full product, so the
 * result is the same whichever lane a kernel reads it from.
 *
 * load_matrix_sync, store_matrix_sync and mma_sync begin with a warp
 * barrier, as the CUDA documentation says each "waits until all warp lanes
 * have arrived" (so one lane's load finishes before another lane's store of
 * the same tile starts: the in-place load, mma, store of attention_tc.cu).
 *
 * Stricter than a GPU in one way, on purpose: store_matrix_sync writes only
 * the lane's share of the elements (those with index % 32 == lane), as a
 * lane does on the GPU. A kernel that reads what its warp stored without a
 * __syncwarp() (or __syncthreads()) between then sees values that are not
 * there yet in kemu, as it could on a GPU. Products are accumulated in fp32
 * in k order; tensor cores' internal order differs, within fp32 rounding.
 */
#ifndef VIV_KEMU_MMA_H
#define VIV_KEMU_MMA_H

#include "kemu.h"

/* Under KEMU_PROF (prof.h) a tile's loads and stores are costed as the
 * instructions nvcc issues for the whole warp (lane 0 reports it), and the
 * element loops below, which are kemu's way of computing them, are not
 * instrumented. */
#ifdef KEMU_PROF
#include "prof.h"
#define KEMU_WMMA_IO __attribute__((no_sanitize_thread, noinline))
#define KEMU_WMMA_UNSEEN __attribute__((no_sanitize_thread))
#define KEMU_WMMA_PROF(p, ldm, rows, cols, row_major, store)                                                           \
    do {                                                                                                               \
        if (kemu_lane() == 0)                                                                                          \
            kemu_prof_tile(p, ldm, rows, cols, (int)sizeof(*(p)), row_major, store, __builtin_return_address(0));     \
    } while (0)
#else
#define KEMU_WMMA_IO
#define KEMU_WMMA_UNSEEN
#define KEMU_WMMA_PROF(p, ldm, rows, cols, row_major, store) ((void)0)
#endif

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K> struct frag_shape;
template <int M, int N, int K> struct frag_shape<matrix_a, M, N, K> {
    enum { rows = M, cols = K };
};
template <int M, int N, int K> struct frag_shape<matrix_b, M, N, K> {
    enum { rows = K, cols = N };
};
template <int M, int N, int K> struct frag_shape<accumulator, M, N, K> {
    enum { rows = M, cols = N };
};

template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
    enum { rows = frag_shape<Use, M, N, K>::rows, cols = frag_shape<Use, M, N, K>::cols, num_elements = rows * cols };
    T x[num_elements];
};

static inline float kemu_mma_f(float v) { return v; }
static inline float kemu_mma_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> static inline T kemu_mma_cast(float v);
template <> inline float kemu_mma_cast<float>(float v) { return v; }
template <> inline __nv_bfloat16 kemu_mma_cast<__nv_bfloat16>(float v) { return __float2bfloat16(v); }

template <typename Use, int M, int N, int K, typename T, typename L, typename V>
static inline void fill_fragment(fragment<Use, M, N, K, T, L> &f, const V &v) {
    for (int i = 0; i < f.num_elements; i++) f.x[i] = (T)v;
}

/* What a GPU requires of every load_matrix_sync / store_matrix_sync (a
 * misaligned one faults or reads the wrong bytes there): the pointer 256-bit
 * (32-byte) aligned and ldm a multiple of 16 bytes (8 bf16/half, 4 float).
 * kemu aborts on either, so a kernel's tile layout is checked off the GPU. */
template <typename T> static inline void kemu_wmma_check(const T *p, unsigned ldm) {
    if ((uintptr_t)p % 32 || (ldm * sizeof(T)) % 16) kemu_wmma_misuse("wmma pointer or ldm", p, ldm);
}

/* element (r, c) of a matrix in memory with leading dimension ldm */
template <typename T> KEMU_WMMA_UNSEEN static inline T kemu_at(const T *p, unsigned ldm, int r, int c, bool row_major_mem) {
    return row_major_mem ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
}

/* matrix_a / matrix_b: the layout is part of the fragment's type */
template <typename Use, int M, int N, int K, typename T>
KEMU_WMMA_IO static inline void load_matrix_sync(fragment<Use, M, N, K, T, row_major> &f, const T *p, unsigned ldm) {
    kemu_syncwarp(); /* waits for the warp's lanes */
    kemu_wmma_check(p, ldm);
    KEMU_WMMA_PROF(p, ldm, f.rows, f.cols, 1, 0);
    for (int r = 0; r < f.rows; r++)
        for (int c = 0; c < f.cols; c++) f.x[r * f.cols + c] = kemu_at(p, ldm, r, c, true);
}
template <typename Use, int M, int N, int K, typename T>
KEMU_WMMA_IO static inline void load_matrix_sync(fragment<Use, M, N, K, T, col_major> &f, const T *p, unsigned ldm) {
    kemu_syncwarp(); /* waits for the warp's lanes */
    kemu_wmma_check(p, ldm);
    KEMU_WMMA_PROF(p, ldm, f.rows, f.cols, 0, 0);
    for (int r = 0; r < f.rows; r++)
        for (int c = 0; c < f.cols; c++) f.x[r * f.cols + c] = kemu_at(p, ldm, r, c, false);
}
/* accumulator: the layout is an argument */
template <int M, int N, int K, typename T>
KEMU_WMMA_IO static inline void load_matrix_sync(fragment<accumulator, M, N, K, T> &f, const T *p, unsigned ldm,
                                                 layout_t l) {
    kemu_syncwarp(); /* waits for the warp's lanes */
    kemu_wmma_check(p, ldm);
    KEMU_WMMA_PROF(p, ldm, M, N, l == mem_row_major, 0);
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++) f.x[r * N + c] = kemu_at(p, ldm, r, c, l == mem_row_major);
}
template <int M, int N, int K, typename T>
KEMU_WMMA_IO static inline void store_matrix_sync(T *p, const fragment<accumulator, M, N, K, T> &f, unsigned ldm,
                                                  layout_t l) {
    kemu_syncwarp(); /* waits for the warp's lanes */
    kemu_wmma_check(p, ldm);
    KEMU_WMMA_PROF(p, ldm, M, N, l == mem_row_major, 1);
    int lane = kemu_lane();
    for (int i = lane; i < M * N; i += 32) {
        int r = i / N, c = i % N;
        if (l == mem_row_major) p[(size_t)r * ldm + c] = f.x[i];
        else p[(size_t)c * ldm + r] = f.x[i];
    }
}

/* d = a b + c, fp32 accumulation (d may be c) */
template <int M, int N, int K, typename Ta, typename La, typename Tb, typename Lb, typename Tc, typename Td>
static inline void mma_sync(fragment<accumulator, M, N, K, Td> &d, const fragment<matrix_a, M, N, K, Ta, La> &a,
                            const fragment<matrix_b, M, N, K, Tb, Lb> &b,
                            const fragment<accumulator, M, N, K, Tc> &c) {
    kemu_syncwarp(); /* waits for the warp's lanes */
    float out[M * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = kemu_mma_f(c.x[i * N + j]);
            for (int k = 0; k < K; k++) s += kemu_mma_f(a.x[i * K + k]) * kemu_mma_f(b.x[k * N + j]);
            out[i * N + j] = s;
        }
    for (int i = 0; i < M * N; i++) d.x[i] = kemu_mma_cast<Td>(out[i]);
}

} // namespace wmma
} // namespace nvcuda

#endif
