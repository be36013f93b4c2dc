/*
 * wmma_kernel.cuh - one kernel that both kemu_tests.cu (its product, and a
 * wrong answer without the __syncwarp) and race_tests.cu (a race report
 * without it) check: a wmma product stored to shared memory, then read
 * back transposed by the warp's lanes, as attention_tc.cu does.
 */
#ifndef VIV_KEMU_WMMA_KERNEL_CUH
#define VIV_KEMU_WMMA_KERNEL_CUH

#include <mma.h>
#include <cuda_bf16.h>

/* c = 2 A B (16 x 16, c transposed) with one warp, through shared memory; b holds B column-major */
__global__ void wmma_kernel(float *c, const __nv_bfloat16 *a, const __nv_bfloat16 *b, int sync_after_store) {
    __shared__ __align__(32) float tile[16 * 16];
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::row_major> fa;
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __nv_bfloat16, nvcuda::wmma::col_major> fb;
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> fc;
    nvcuda::wmma::fill_fragment(fc, 0.0f);
    nvcuda::wmma::load_matrix_sync(fa, a, 16);
    nvcuda::wmma::load_matrix_sync(fb, b, 16); /* b is stored transposed: column-major B */
    nvcuda::wmma::mma_sync(fc, fa, fb, fc);
    for (int i = 0; i < fc.num_elements; i++) fc.x[i] *= 2.0f;
    nvcuda::wmma::store_matrix_sync(tile, fc, 16, nvcuda::wmma::mem_row_major);
    if (sync_after_store) __syncwarp();
    for (int i = threadIdx.x; i < 256; i += 32) c[i] = tile[(i % 16) * 16 + i / 16]; /* transposed read */
}

#endif
