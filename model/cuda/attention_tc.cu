/*
 * attention_tc.cu - causal GQA attention for training on tensor cores
 * (FlashAttention-2 style), forward and backward, through nvcuda::wmma.
 *
 * The math is attention.cu's (and qwen3.c's attn_fwd_worker/attn_bwd_worker):
 *   s_ij = c q_i.k_j (j <= i, c = 1/sqrt(hd)), p = softmax_j(s), o_i = sum_j p_ij v_j
 *   lse_i = log sum_j exp(s_ij)                 (saved by the forward, fp32)
 *   D_i = do_i.o_i,  dp_ij = do_i.v_j,  ds_ij = p_ij (dp_ij - D_i)
 *   dq_i = c sum_j ds_ij k_j,  dk_j = c sum_i ds_ij q_i,  dv_j = sum_i p_ij do_i
 * with the layouts of ops.cuh: q/out [B*T, Hq*hd], k/v [B*T, Hkv*hd] (bf16),
 * lse/D [B*T, Hq]; query head h reads kv head h / (Hq/Hkv). No T x T matrix
 * exists anywhere: scores live one tile at a time in shared memory, and the
 * backward recomputes p = exp(s - lse) from the saved log-sum-exp.
 *
 * Matrix products are 16x16x16 bf16 wmma fragments with fp32 accumulators:
 * bf16 inputs (q, k, v as stored; p, ds and do rounded to bf16 just before
 * their product, as FlashAttention does), fp32 sums, fp32 softmax.
 *
 * Rules kept so the kernels also run under the CPU emulator of model/cuda
 * (test/gpu/kemu): wmma only through fill/load/store/mma_sync, never an
 * assumption about which fragment element is which row or column; all
 * row-wise work (max, sum, rescaling, masking) is done by plain threads on
 * values stored to shared memory; synchronisation is __syncthreads and
 * full-mask shuffles only; launches are written on one line.
 *
 * Blocks are 8 warps (256 threads; ATTN_TC_WARPS=4 builds 4-warp blocks).
 * Tiles: 64 query rows x 64 keys in the forward; 64 query rows x 32 keys
 * (dq pass) and 64 keys x 32 query rows (dk/dv pass) in the backward. The
 * 64-row side of every tile is 4 blocks of 16 rows; warp w computes the rows
 * of block w % 4 of each product (score tile, output, gradient), taking
 * every second 16-column block from w / 4 (with 4 warps: all of them). So a
 * warp keeps at most hd/32 accumulator fragments per output (16 x 64 fp32,
 * 32 registers a thread at hd = 128), and a block's 8 warps with 2 blocks
 * per SM give 16 warps to hide global-memory latency, the loads being
 * plain synchronous ones (no cp.async: see the emulator rule above).
 *
 * Forward (grid: query tiles x Hq x B, the longest tiles first). The block
 * loads its 64 query rows once into wmma fragments held in registers
 * (hd/16 fragments per warp), then walks the key tiles 0..its diagonal:
 *   1. K and V tiles (64 x hd bf16) into shared memory, rows >= T zeroed
 *   2. S = Q K^T (fp32, shared)
 *   3. online softmax, 256/64 = 4 threads per row (every 4th column each,
 *      their max and sum combined by shuffles): running max m and sum l per row,
 *      P = exp(S - m) as bf16 into shared, the output rows rescaled by
 *      exp(m_old - m_new); causal mask j <= i
 *   4. O += P V with O's accumulator loaded from and stored back to shared
 *      memory (fp32): O must be rescaled row by row between tiles, which a
 *      wmma fragment cannot be without knowing its element layout.
 * At the end O / l goes out as bf16 (rescaled in shared memory, then written
 * whole rows at a time) and lse = m + log l (natural log).
 *
 * Backward, two kernels so that nothing needs atomics (D = rowsum(do * o) is
 * attention.cu's attn_dsum_kernel, run first):
 *   dq pass (grid: query tiles x Hq x B): Q and dO (bf16) of 64 query rows
 *     loaded once (each warp keeps its row block's as A fragments in
 *     registers), dq accumulated in register fragments over the key tiles up to
 *     the diagonal: S = Q K^T and dP = dO V^T into shared, dS = P (dP - D) c
 *     by plain threads as bf16, dq += dS K.
 *   dk/dv pass (grid: key tiles x Hkv x B): K and V of 64 keys in shared,
 *     dk and dv accumulated in register fragments over every query head of
 *     the GQA group and every query tile from the diagonal to T: S^T = K Q^T,
 *     dP^T = V dO^T, then P^T and dS^T (bf16) by plain threads,
 *     dv += P^T dO, dk += dS^T Q.
 *   Both write their results through shared memory so that rows past T are
 *   never stored.
 *
 * Shared memory (bytes; LDH = hd + 8 bf16 per K/V/Q row: the +8 keeps every
 * 16-row fragment 32-byte aligned as wmma requires and shifts rows across
 * banks; fp32 tiles use a row of n + 8, which makes the wmma accumulator
 * stores and loads conflict-free, in the forward (whose softmax threads
 * then start rows 4 apart at different columns) and the dq pass and the
 * staging of dq/dk/dv (where a warp reads one row); the dk/dv pass keeps
 * n + 4 for its S and dP to stay two blocks per A100 SM; kemu's access
 * profile counts each choice's bank conflicts):
 *   forward   K,V 2*64*LDH*2 + S 64*72*4 + P 64*72*2 + O 64*(hd+8)*4
 *             hd=128: 34816 + 18432 + 9216 + 34816 = 97280 (95 KiB)
 *   dq pass   Q,dO 2*64*LDH*2 + K,V 2*32*LDH*2 + S,dP 2*64*40*4 + dS 64*40*2 + lse,D 2*64*4
 *             hd=128: 34816 + 17408 + 20480 + 5120 + 512 = 78336 (76.5 KiB)
 *   dk/dv     K,V 2*64*LDH*2 + Q,dO 2*32*LDH*2 + S,dP 2*64*36*4 + P,dS 2*64*40*2 + lse,D 2*32*4
 *             hd=128: 34816 + 17408 + 18432 + 10240 + 256 = 81152 (79.25 KiB)
 * All under the 99 KiB (101376 B) a block may opt into on any GPU since
 * sm_80 (cudaFuncSetAttribute, needed above 48 KiB; static_asserts check
 * it), so two blocks fit an H100 SM (227 KiB; an A100's 163 KiB takes one
 * forward block at hd = 128, two of either backward kernel). That budget is
 * what fixes the tiles: a 64 x 64 backward tile would need S and dP at
 * 64*68*4 each and K, V, Q, dO at 64 rows, 102 KiB at hd = 128; the forward
 * keeps Q in registers instead of shared memory for the same reason. The
 * results are staged at the end (dq, dk, dv as 64 x (hd+8) fp32) over the
 * Q/dO resp. K/V tiles, which are exactly as large. hd = 16/32/64 use the
 * same tiles with less memory.
 *
 * Supported head sizes: 16, 32, 64, 128 (template parameter); others go to
 * attention.cu's CUDA-core kernels (ops.cuh's k_attn_fwd/k_attn_bwd choose;
 * VIV_ATTN=warp sends every size there).
 *
 * Status: compiled (nvcc, sm_80 and sm_90, no warnings) and run on the CPU
 * under test/gpu/kemu, where test/gpu/gpu_tests.c's attn_kernels test
 * matches the CUDA-core kernels and an fp64 reference within bf16 rounding
 * (in thread order and shuffled) and the model/trainer tests pass on these
 * kernels; kemu also checks wmma's alignment rules (32-byte fragment
 * pointers, ldm a multiple of 16 bytes) on every load and store. Not yet
 * run on a GPU: the speed is unmeasured (test/bench/gpu.sh times both
 * paths, build/test/attn_bench alone).
 */
#include "ops.cuh"

#include <math.h>
#include <mma.h>
#include <string.h>

using namespace nvcuda;

/* Warps per block: 8 (two per 16-row block of the 64-row side, splitting its
 * columns), so that 2 blocks = 16 warps share an SM while one waits on
 * memory; 4 works too (one warp per row block), ATTN_TC_WARPS=4 at compile
 * time picks it for a comparison on a GPU. */
#ifndef ATTN_TC_WARPS
#define ATTN_TC_WARPS 8
#endif
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> frag_br; /* B stored [k][n] */
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> frag_bc; /* B stored [n][k]: X^T */
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_c;

/* Rows r0..r0+n-1 of a bf16 matrix (row stride ld elements, first column at
 * src) into shared dst[n][HD + 8]; rows >= rmax become zeros. 16-byte moves:
 * src rows start at multiples of hd >= 16 elements, so they are aligned.
 * NT: threads in the block. */
template <int HD, int NT>
__device__ __forceinline__ void tile_load(bf16 *dst, const bf16 *src, size_t ld, int r0, int n, int rmax) {
    const int per_row = HD / 8;
    for (int i = threadIdx.x; i < n * per_row; i += NT) {
        int r = i / per_row, c = (i % per_row) * 8;
        uint4 x = make_uint4(0, 0, 0, 0);
        if (r0 + r < rmax) x = *(const uint4 *)(src + (size_t)(r0 + r) * ld + c);
        *(uint4 *)(dst + r * (HD + 8) + c) = x;
    }
}

/* Four floats rounded to four bf16 in one 8-byte word, stored with one
 * instruction: two 4-byte stores of the halves would make a warp's request
 * touch twice the sectors (global) or take two passes per bank (shared)
 * for the same bytes (kemu's access profile, test/gpu/kemu/prof.h). */
__device__ __forceinline__ uint2 bf16x4(float4 x) {
    __nv_bfloat162 lo = __floats2bfloat162_rn(x.x, x.y), hi = __floats2bfloat162_rn(x.z, x.w);
    uint2 u = make_uint2(0, 0);
    memcpy(&u.x, &lo, 4);
    memcpy(&u.y, &hi, 4);
    return u;
}

/* The same from an fp32 matrix (dO), rounded to bf16. */
template <int HD, int NT>
__device__ __forceinline__ void tile_load_f32(bf16 *dst, const float *src, size_t ld, int r0, int n, int rmax) {
    const int per_row = HD / 4;
    for (int i = threadIdx.x; i < n * per_row; i += NT) {
        int r = i / per_row, c = (i % per_row) * 4;
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (r0 + r < rmax) x = *(const float4 *)(src + (size_t)(r0 + r) * ld + c);
        *(uint2 *)(dst + r * (HD + 8) + c) = bf16x4(x);
    }
}

/* Per-row values src[(r0 + r) * stride] * mul for r < n into dst (0 past rmax). */
template <int NT>
__device__ __forceinline__ void rows_load(float *dst, const float *src, size_t stride, int r0, int n, int rmax,
                                          float mul) {
    for (int r = threadIdx.x; r < n; r += NT) dst[r] = r0 + r < rmax ? src[(size_t)(r0 + r) * stride] * mul : 0.f;
}

/* Rows r0..r0+n-1 of shared fp32 G[n][LDG] out to dst (row stride ld),
 * rows >= rmax skipped; as fp32 (dst_f) or as bf16 (dst_b). A warp's
 * stores cover whole rows: 512 (fp32) or 256 (bf16) contiguous bytes. */
template <int HD, int NT, int LDG>
__device__ __forceinline__ void tile_store(float *dst_f, bf16 *dst_b, size_t ld, const float *G, int r0, int n,
                                           int rmax) {
    const int per_row = HD / 4;
    for (int e = threadIdx.x; e < n * per_row; e += NT) {
        int r = e / per_row, c = (e % per_row) * 4;
        if (r0 + r >= rmax) continue;
        float4 x = *(const float4 *)(G + r * LDG + c);
        if (dst_f) *(float4 *)(dst_f + (size_t)(r0 + r) * ld + c) = x;
        else *(uint2 *)(dst_b + (size_t)(r0 + r) * ld + c) = bf16x4(x);
    }
}

/* The backward passes' fp32 staging rows: HD + 8 floats, so that a warp's
 * accumulator stores (8-byte pairs of 4 rows per half warp in the mma
 * layout) fall in 4 disjoint groups of 8 banks: HD + 4 made them two-way
 * conflicts. 64 such rows are exactly the two bf16 [64][HD + 8] tiles
 * they are staged over. */
#define LDG_BWD(HD) ((HD) + 8)

/* A warp's accumulators acc[0..NA) (its 16-row block rb, column blocks cw,
 * cw + CW, ...) staged through shared G[.][LDG_BWD(HD)], then rows
 * r0..r0+n-1 out as tile_store writes them: the last step of both backward
 * passes. Every thread of the block calls it (it has a __syncthreads). */
template <int HD, int NT, int NA, int CW>
__device__ __forceinline__ void acc_store(float *dst_f, bf16 *dst_b, size_t ld, float *G, const frag_c *acc, int cw,
                                          int rb, int r0, int n, int rmax) {
    constexpr int LDG = LDG_BWD(HD);
    for (int a = 0; a < NA; a++) {
        int c = cw + a * CW;
        if (c < HD / 16) wmma::store_matrix_sync(G + 16 * rb * LDG + 16 * c, acc[a], LDG, wmma::mem_row_major);
    }
    __syncthreads();
    tile_store<HD, NT, LDG>(dst_f, dst_b, ld, G, r0, n, rmax);
}

/* acc[i] += A[16 x BK] . B[BK x 16], B's 16 columns being the warp's column
 * block cw + i * CW (of HD / 16): A row-major from a (lda), B row-major
 * [k][n] from b (ldb). The forward's O += P V and the dq pass' dq += dS K. */
template <int HD, int BK, int NA, int CW>
__device__ __forceinline__ void mma_rowblock(frag_c *acc, const bf16 *a, int lda, const bf16 *b, int ldb, int cw) {
    for (int kk = 0; kk < BK; kk += 16) {
        frag_a af;
        wmma::load_matrix_sync(af, a + kk, lda);
        for (int i = 0; i < NA; i++) {
            int n = cw + i * CW;
            if (n >= HD / 16) continue;
            frag_br bf;
            wmma::load_matrix_sync(bf, b + kk * ldb + 16 * n, ldb);
            wmma::mma_sync(acc[i], af, bf, acc[i]);
        }
    }
}

/* C[16 x 16] = A[16 x K] . B^T where A's rows and B's rows are both stored
 * row-major along K (A = a + k, B = b + k for k = 0, 16, ...). */
template <int K>
__device__ __forceinline__ void mma_abt(frag_c &c, const bf16 *a, int lda, const bf16 *b, int ldb) {
    wmma::fill_fragment(c, 0.0f);
    for (int k = 0; k < K; k += 16) {
        frag_a fa;
        frag_bc fb;
        wmma::load_matrix_sync(fa, a + k, lda);
        wmma::load_matrix_sync(fb, b + k, ldb);
        wmma::mma_sync(c, fa, fb, c);
    }
}

/* Kernels are declared __launch_bounds__(threads, 2): shared memory allows
 * two blocks per SM, so registers are capped to fit two as well (128 a
 * thread with 8 warps). nvcc -Xptxas -v at hd = 128, sm_90: forward and
 * dk/dv 128 registers, no spills; dq 128 with 152 bytes spilled (it holds Q
 * and dO fragments and its dq accumulators; uncapped it took 172, which
 * would leave one block per SM). */

/* Every kernel's 64-row side is 4 blocks of 16 rows; warp w works on row
 * block w % 4 and on every (NW/4)-th 16-column block from w / 4 of the
 * products it computes. */
#define ROWB(w) ((w) % 4)
#define COLW(w) ((w) / 4)

/* ---- forward ----------------------------------------------------------------------- */

#define FWD_BQ 64
#define FWD_BK 64

template <int HD>
constexpr size_t fwd_smem_bytes() {
    return 2 * FWD_BK * (HD + 8) * sizeof(bf16) + FWD_BQ * (FWD_BK + 8) * sizeof(float) +
           FWD_BQ * (FWD_BK + 8) * sizeof(bf16) + FWD_BQ * (HD + 8) * sizeof(float);
}

template <int HD, int NW>
__global__ void __launch_bounds__(NW * 32, 2) attn_fwd_tc_kernel(bf16 *out, float *lse, const bf16 *q, const bf16 *k,
                                                              const bf16 *v, int T, int Hq, int Hkv) {
    constexpr int NT = NW * 32, CW = NW / 4, BQ = FWD_BQ, BK = FWD_BK;
    constexpr int LDH = HD + 8, LDS = BK + 8, LDP = BK + 8, LDO = HD + 8;
    constexpr int TPR = NT / BQ;                /* threads per query row in the softmax */
    constexpr int SC = BK / TPR, OC = HD / TPR; /* score / output columns per thread */
    constexpr int NA = (HD / 16 + CW - 1) / CW; /* output column blocks per warp */
    static_assert(BQ == BK && NW % 4 == 0 && TPR <= 32, "tile shape");
    extern __shared__ float4 tc_smem[];
    bf16 *Ks = (bf16 *)tc_smem, *Vs = Ks + BK * LDH;
    float *S = (float *)(Vs + BK * LDH);
    bf16 *P = (bf16 *)(S + BQ * LDS);
    float *O = (float *)(P + BQ * LDP);

    int qt = gridDim.x - 1 - blockIdx.x; /* the longest (last) query tiles start first */
    int h = blockIdx.y, b = blockIdx.z, kh = h / (Hq / Hkv), w = threadIdx.x / 32, rb = ROWB(w), cw = COLW(w);
    int q0 = qt * BQ, qd = Hq * HD, kvd = Hkv * HD;
    const bf16 *qb = q + (size_t)b * T * qd + (size_t)h * HD;
    const bf16 *kb = k + (size_t)b * T * kvd + (size_t)kh * HD, *vb = v + (size_t)b * T * kvd + (size_t)kh * HD;
    const float sl2 = rsqrtf((float)HD) * LOG2E; /* scores in log2 units: exp(c s) = 2^(c s log2 e) */

    /* the warp's 16 query rows as hd/16 A fragments, staged through Ks */
    tile_load<HD, NT>(Ks, qb, qd, q0, BQ, T);
    for (int i = threadIdx.x; i < BQ * LDO; i += NT) O[i] = 0.f;
    __syncthreads();
    frag_a qf[HD / 16];
    for (int d = 0; d < HD / 16; d++) wmma::load_matrix_sync(qf[d], Ks + 16 * rb * LDH + 16 * d, LDH);
    __syncthreads();

    int r = threadIdx.x / TPR, part = threadIdx.x % TPR, i = q0 + r; /* this thread's row and column phase */
    /* S and O rows are 8 banks apart (LDS, LDO = 8 mod 32 floats, which
     * makes the wmma accumulator stores and loads conflict-free), so rows r
     * and r + 4 of a warp would meet in every bank; the rows of each second
     * group of 4 (of each (r / 4) % (8 / TPR)-th) walk their columns from a
     * later start, rot column steps of TPR on, and a warp's 32 lanes read
     * 32 distinct banks (kemu's access profile checks it) */
    const int rot = (r / 4) % (8 / TPR);
    float m = -INFINITY, l = 0.f;
    int last = min(q0 + BQ, T) - 1, nkt = last / BK + 1;
    for (int kt = 0; kt < nkt; kt++) {
        int j0 = kt * BK;
        tile_load<HD, NT>(Ks, kb, kvd, j0, BK, T);
        tile_load<HD, NT>(Vs, vb, kvd, j0, BK, T);
        __syncthreads();
        for (int n = cw; n < BK / 16; n += CW) { /* S[row block][16n..] = Q K^T */
            frag_c sc;
            wmma::fill_fragment(sc, 0.0f);
            for (int d = 0; d < HD / 16; d++) {
                frag_bc kf;
                wmma::load_matrix_sync(kf, Ks + 16 * n * LDH + 16 * d, LDH);
                wmma::mma_sync(sc, qf[d], kf, sc);
            }
            wmma::store_matrix_sync(S + 16 * rb * LDS + 16 * n, sc, LDS, wmma::mem_row_major);
        }
        __syncthreads();
        /* online softmax of row r over this tile's keys j0 + c*TPR + part (the
         * TPR threads of a row are consecutive lanes of one warp and take
         * interleaved columns, so a warp's reads of S and O hit distinct banks).
         * Every row has key j0 <= i, so mt is finite and the first corr is
         * exp(-inf) = 0. */
        const float *srow = S + r * LDS + part;
        int jc = j0 + part;
        float mt = -INFINITY;
        for (int c0 = 0; c0 < SC; c0++) {
            int c = (c0 + rot) % SC;
            if (jc + c * TPR <= i) mt = fmaxf(mt, srow[c * TPR] * sl2);
        }
        for (int o = 1; o < TPR; o <<= 1) mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, o));
        float mn = fmaxf(m, mt), corr = exp2f(m - mn), sum = 0.f;
        bf16 *prow = P + r * LDP + part;
        for (int c0 = 0; c0 < SC; c0++) {
            int c = (c0 + rot) % SC;
            float p = jc + c * TPR <= i ? exp2f(srow[c * TPR] * sl2 - mn) : 0.f;
            prow[c * TPR] = __float2bfloat16(p);
            sum += p;
        }
        for (int o = 1; o < TPR; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        l = l * corr + sum;
        m = mn;
        float *orow = O + r * LDO + part;
        if (corr != 1.0f) /* the row's max moved (rarely, after the first tiles) */
            for (int c0 = 0; c0 < OC; c0++) orow[((c0 + rot) % OC) * TPR] *= corr;
        __syncthreads();
        { /* O[row block][its column blocks] += P V, each P fragment loaded once */
            frag_c oc[NA];
            for (int a = 0; a < NA; a++)
                if (cw + a * CW < HD / 16)
                    wmma::load_matrix_sync(oc[a], O + 16 * rb * LDO + 16 * (cw + a * CW), LDO, wmma::mem_row_major);
            mma_rowblock<HD, BK, NA, CW>(oc, P + 16 * rb * LDP, LDP, Vs, LDH, cw);
            for (int a = 0; a < NA; a++)
                if (cw + a * CW < HD / 16)
                    wmma::store_matrix_sync(O + 16 * rb * LDO + 16 * (cw + a * CW), oc[a], LDO, wmma::mem_row_major);
        }
        __syncthreads();
    }
    /* O / l in place, then out as bf16 row by row (tile_store): written
     * from the softmax layout (4 threads a row) a warp's request would be
     * 8 rows' 8-byte pieces, 4x the sectors its bytes need */
    if (i < T) {
        float inv = 1.0f / l, *orow = O + r * LDO + part;
        for (int c0 = 0; c0 < OC; c0++) orow[((c0 + rot) % OC) * TPR] *= inv;
        if (part == 0) lse[((size_t)b * T + i) * Hq + h] = (m + log2f(l)) * LN2;
    }
    __syncthreads();
    tile_store<HD, NT, LDO>(NULL, out + (size_t)b * T * qd + (size_t)h * HD, qd, O, q0, BQ, T);
}

/* ---- backward: dq ------------------------------------------------------------------ */

#define DQ_BQ 64
#define DQ_BK 32

template <int HD>
constexpr size_t dq_smem_bytes() {
    return 2 * DQ_BQ * (HD + 8) * sizeof(bf16) + 2 * DQ_BK * (HD + 8) * sizeof(bf16) +
           2 * DQ_BQ * (DQ_BK + 8) * sizeof(float) + DQ_BQ * (DQ_BK + 8) * sizeof(bf16) + 2 * DQ_BQ * sizeof(float);
}

template <int HD, int NW>
__global__ void __launch_bounds__(NW * 32, 2)
    attn_dq_tc_kernel(float *dq, const float *dout, const float *lse, const float *dsum, const bf16 *q, const bf16 *k,
                      const bf16 *v, int T, int Hq, int Hkv) {
    constexpr int NT = NW * 32, CW = NW / 4, BQ = DQ_BQ, BK = DQ_BK;
    constexpr int LDH = HD + 8, LDS = BK + 8, LDP = BK + 8; /* G (fp32 staging): rows of LDG_BWD(HD) */
    constexpr int NA = (HD / 16 + CW - 1) / CW; /* dq column blocks per warp */
    extern __shared__ float4 tc_smem[];
    bf16 *Qs = (bf16 *)tc_smem, *dOs = Qs + BQ * LDH, *Ks = dOs + BQ * LDH, *Vs = Ks + BK * LDH;
    float *S = (float *)(Vs + BK * LDH), *dP = S + BQ * LDS;
    bf16 *dS = (bf16 *)(dP + BQ * LDS);
    float *lse_s = (float *)(dS + BQ * LDP), *D_s = lse_s + BQ;
    float *G = (float *)tc_smem; /* at the end: dq staged over Q and dO */

    int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z, kh = h / (Hq / Hkv);
    int w = threadIdx.x / 32, rb = ROWB(w), cw = COLW(w);
    int q0 = qt * BQ, qd = Hq * HD, kvd = Hkv * HD;
    size_t row0 = (size_t)b * T;
    const bf16 *kb = k + row0 * kvd + (size_t)kh * HD, *vb = v + row0 * kvd + (size_t)kh * HD;
    const float scale = rsqrtf((float)HD), sl2 = scale * LOG2E;

    tile_load<HD, NT>(Qs, q + row0 * qd + (size_t)h * HD, qd, q0, BQ, T);
    tile_load_f32<HD, NT>(dOs, dout + row0 * qd + (size_t)h * HD, qd, q0, BQ, T);
    rows_load<NT>(lse_s, lse + row0 * Hq + h, Hq, q0, BQ, T, LOG2E);
    rows_load<NT>(D_s, dsum + row0 * Hq + h, Hq, q0, BQ, T, 1.0f);
    __syncthreads();
    frag_a qf[HD / 16], dof[HD / 16]; /* the row block's Q and dO, 4 registers a fragment */
    for (int d = 0; d < HD / 16; d++) {
        wmma::load_matrix_sync(qf[d], Qs + 16 * rb * LDH + 16 * d, LDH);
        wmma::load_matrix_sync(dof[d], dOs + 16 * rb * LDH + 16 * d, LDH);
    }
    frag_c acc[NA];
    for (int a = 0; a < NA; a++) wmma::fill_fragment(acc[a], 0.0f);

    int last = min(q0 + BQ, T) - 1, nkt = last / BK + 1;
    for (int kt = 0; kt < nkt; kt++) {
        int j0 = kt * BK;
        tile_load<HD, NT>(Ks, kb, kvd, j0, BK, T);
        tile_load<HD, NT>(Vs, vb, kvd, j0, BK, T);
        __syncthreads();
        for (int n = cw; n < BK / 16; n += CW) {
            frag_c sc, pc;
            wmma::fill_fragment(sc, 0.0f);
            wmma::fill_fragment(pc, 0.0f);
            for (int d = 0; d < HD / 16; d++) {
                frag_bc kf, vf;
                wmma::load_matrix_sync(kf, Ks + 16 * n * LDH + 16 * d, LDH);
                wmma::load_matrix_sync(vf, Vs + 16 * n * LDH + 16 * d, LDH);
                wmma::mma_sync(sc, qf[d], kf, sc);
                wmma::mma_sync(pc, dof[d], vf, pc);
            }
            wmma::store_matrix_sync(S + 16 * rb * LDS + 16 * n, sc, LDS, wmma::mem_row_major);
            wmma::store_matrix_sync(dP + 16 * rb * LDS + 16 * n, pc, LDS, wmma::mem_row_major);
        }
        __syncthreads();
        for (int e = threadIdx.x; e < BQ * BK; e += NT) {
            int r = e / BK, c = e % BK, i = q0 + r, j = j0 + c;
            float ds = 0.f;
            if (i < T && j <= i) {
                float p = exp2f(S[r * LDS + c] * sl2 - lse_s[r]);
                ds = p * (dP[r * LDS + c] - D_s[r]) * scale;
            }
            dS[r * LDP + c] = __float2bfloat16(ds);
        }
        __syncthreads();
        mma_rowblock<HD, BK, NA, CW>(acc, dS + 16 * rb * LDP, LDP, Ks, LDH, cw); /* dq += dS K */
        __syncthreads();
    }
    acc_store<HD, NT, NA, CW>(dq + row0 * qd + (size_t)h * HD, NULL, qd, G, acc, cw, rb, q0, BQ, T);
}

/* ---- backward: dk, dv -------------------------------------------------------------- */

#define KV_BK 64
#define KV_BQ 32

template <int HD>
constexpr size_t dkv_smem_bytes() {
    return 2 * KV_BK * (HD + 8) * sizeof(bf16) + 2 * KV_BQ * (HD + 8) * sizeof(bf16) +
           2 * KV_BK * (KV_BQ + 4) * sizeof(float) + 2 * KV_BK * (KV_BQ + 8) * sizeof(bf16) + 2 * KV_BQ * sizeof(float);
}

template <int HD, int NW>
__global__ void __launch_bounds__(NW * 32, 2)
    attn_dkv_tc_kernel(float *dk, bf16 *dv, const float *dout, const float *lse, const float *dsum, const bf16 *q,
                       const bf16 *k, const bf16 *v, int T, int Hq, int Hkv) {
    constexpr int NT = NW * 32, CW = NW / 4, BK = KV_BK, BQ = KV_BQ;
    /* S^T and dP^T rows of BQ + 4, not + 8 (their accumulator stores are
     * two-way conflicts): + 8 would take 2 KiB more, and two blocks would
     * no longer fit an A100 SM with the 1 KiB each block reserves */
    constexpr int LDH = HD + 8, LDS = BQ + 4, LDP = BQ + 8; /* G (fp32 staging): rows of LDG_BWD(HD) */
    constexpr int NA = (HD / 16 + CW - 1) / CW; /* dk/dv column blocks per warp */
    extern __shared__ float4 tc_smem[];
    bf16 *Ks = (bf16 *)tc_smem, *Vs = Ks + BK * LDH, *Qs = Vs + BK * LDH, *dOs = Qs + BQ * LDH;
    float *St = (float *)(dOs + BQ * LDH), *dPt = St + BK * LDS; /* [key][query] */
    bf16 *Pt = (bf16 *)(dPt + BK * LDS), *dSt = Pt + BK * LDP;
    float *lse_s = (float *)(dSt + BK * LDP), *D_s = lse_s + BQ;
    float *G = (float *)tc_smem; /* at the end: dk, then dv, staged over K and V */

    int kt = blockIdx.x, kh = blockIdx.y, b = blockIdx.z, grp = Hq / Hkv;
    int w = threadIdx.x / 32, rb = ROWB(w), cw = COLW(w);
    int j0 = kt * BK, qd = Hq * HD, kvd = Hkv * HD;
    size_t row0 = (size_t)b * T;
    const float scale = rsqrtf((float)HD), sl2 = scale * LOG2E;

    tile_load<HD, NT>(Ks, k + row0 * kvd + (size_t)kh * HD, kvd, j0, BK, T);
    tile_load<HD, NT>(Vs, v + row0 * kvd + (size_t)kh * HD, kvd, j0, BK, T);
    frag_c dka[NA], dva[NA];
    for (int a = 0; a < NA; a++) wmma::fill_fragment(dka[a], 0.0f), wmma::fill_fragment(dva[a], 0.0f);

    for (int h = kh * grp; h < (kh + 1) * grp; h++) {
        const bf16 *qb = q + row0 * qd + (size_t)h * HD;
        const float *dob = dout + row0 * qd + (size_t)h * HD;
        for (int i0 = j0 / BQ * BQ; i0 < T; i0 += BQ) { /* queries i >= j0 see these keys */
            tile_load<HD, NT>(Qs, qb, qd, i0, BQ, T);
            tile_load_f32<HD, NT>(dOs, dob, qd, i0, BQ, T);
            rows_load<NT>(lse_s, lse + row0 * Hq + h, Hq, i0, BQ, T, LOG2E);
            rows_load<NT>(D_s, dsum + row0 * Hq + h, Hq, i0, BQ, T, 1.0f);
            __syncthreads();
            for (int n = cw; n < BQ / 16; n += CW) {
                frag_c c;
                mma_abt<HD>(c, Ks + 16 * rb * LDH, LDH, Qs + 16 * n * LDH, LDH);
                wmma::store_matrix_sync(St + 16 * rb * LDS + 16 * n, c, LDS, wmma::mem_row_major);
                mma_abt<HD>(c, Vs + 16 * rb * LDH, LDH, dOs + 16 * n * LDH, LDH);
                wmma::store_matrix_sync(dPt + 16 * rb * LDS + 16 * n, c, LDS, wmma::mem_row_major);
            }
            __syncthreads();
            for (int e = threadIdx.x; e < BK * BQ; e += NT) {
                int r = e / BQ, c = e % BQ, j = j0 + r, i = i0 + c;
                float p = 0.f, ds = 0.f;
                if (i < T && j <= i) {
                    p = exp2f(St[r * LDS + c] * sl2 - lse_s[c]);
                    ds = p * (dPt[r * LDS + c] - D_s[c]) * scale;
                }
                Pt[r * LDP + c] = __float2bfloat16(p);
                dSt[r * LDP + c] = __float2bfloat16(ds);
            }
            __syncthreads();
            for (int kk = 0; kk < BQ; kk += 16) { /* dv += P^T dO, dk += dS^T Q */
                frag_a pf, sf;
                wmma::load_matrix_sync(pf, Pt + 16 * rb * LDP + kk, LDP);
                wmma::load_matrix_sync(sf, dSt + 16 * rb * LDP + kk, LDP);
                for (int a = 0; a < NA; a++) {
                    int n = cw + a * CW;
                    if (n >= HD / 16) continue;
                    frag_br of, qf;
                    wmma::load_matrix_sync(of, dOs + kk * LDH + 16 * n, LDH);
                    wmma::load_matrix_sync(qf, Qs + kk * LDH + 16 * n, LDH);
                    wmma::mma_sync(dva[a], pf, of, dva[a]);
                    wmma::mma_sync(dka[a], sf, qf, dka[a]);
                }
            }
            __syncthreads();
        }
    }
    acc_store<HD, NT, NA, CW>(dk + row0 * kvd + (size_t)kh * HD, NULL, kvd, G, dka, cw, rb, j0, BK, T);
    __syncthreads(); /* G is reused for dv */
    acc_store<HD, NT, NA, CW>(NULL, dv + row0 * kvd + (size_t)kh * HD, kvd, G, dva, cw, rb, j0, BK, T);
}

/* ---- launchers --------------------------------------------------------------------- */

/* The opt-in above 48 KiB of dynamic shared memory is set before every
 * launch: it is per device and cheap, and a process may use several devices. */
template <int HD>
static void fwd_tc(cudaStream_t st, bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T,
                   int Hq, int Hkv) {
    constexpr int NW = ATTN_TC_WARPS;
    size_t smem = fwd_smem_bytes<HD>();
    static_assert(fwd_smem_bytes<HD>() <= 101376, "forward tile over 99 KiB of shared memory");
    cudaFuncSetAttribute(attn_fwd_tc_kernel<HD, NW>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    dim3 grid((unsigned)((T + FWD_BQ - 1) / FWD_BQ), (unsigned)Hq, (unsigned)B);
    attn_fwd_tc_kernel<HD, NW><<<grid, NW * 32, smem, st>>>(out, lse, q, k, v, T, Hq, Hkv);
}

template <int HD>
static void bwd_tc(cudaStream_t st, float *dq, float *dk, bf16 *dv, const float *dsum, const float *dout,
                   const float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T, int Hq, int Hkv) {
    constexpr int NW = ATTN_TC_WARPS;
    size_t sq = dq_smem_bytes<HD>(), skv = dkv_smem_bytes<HD>();
    static_assert(dq_smem_bytes<HD>() <= 101376 && dkv_smem_bytes<HD>() <= 101376, "backward tile over 99 KiB");
    cudaFuncSetAttribute(attn_dq_tc_kernel<HD, NW>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sq);
    cudaFuncSetAttribute(attn_dkv_tc_kernel<HD, NW>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)skv);
    dim3 gq((unsigned)((T + DQ_BQ - 1) / DQ_BQ), (unsigned)Hq, (unsigned)B);
    dim3 gkv((unsigned)((T + KV_BK - 1) / KV_BK), (unsigned)Hkv, (unsigned)B);
    attn_dq_tc_kernel<HD, NW><<<gq, NW * 32, sq, st>>>(dq, dout, lse, dsum, q, k, v, T, Hq, Hkv);
    attn_dkv_tc_kernel<HD, NW><<<gkv, NW * 32, skv, st>>>(dk, dv, dout, lse, dsum, q, k, v, T, Hq, Hkv);
}

int attn_tc_supported(int hd) { return hd == 16 || hd == 32 || hd == 64 || hd == 128; }

int k_attn_fwd_tc(cudaStream_t st, bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T,
                  int Hq, int Hkv, int hd) {
    switch (hd) {
    case 16: fwd_tc<16>(st, out, lse, q, k, v, B, T, Hq, Hkv); return 0;
    case 32: fwd_tc<32>(st, out, lse, q, k, v, B, T, Hq, Hkv); return 0;
    case 64: fwd_tc<64>(st, out, lse, q, k, v, B, T, Hq, Hkv); return 0;
    case 128: fwd_tc<128>(st, out, lse, q, k, v, B, T, Hq, Hkv); return 0;
    }
    return -1;
}

int k_attn_bwd_tc(cudaStream_t st, float *dq, float *dk, bf16 *dv, float *dsum, const float *dout, const bf16 *out,
                  const float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T, int Hq, int Hkv, int hd) {
    if (!attn_tc_supported(hd)) return -1;
    k_attn_dsum(st, dsum, dout, out, (long)B * T * Hq, hd);
    switch (hd) {
    case 16: bwd_tc<16>(st, dq, dk, dv, dsum, dout, lse, q, k, v, B, T, Hq, Hkv); break;
    case 32: bwd_tc<32>(st, dq, dk, dv, dsum, dout, lse, q, k, v, B, T, Hq, Hkv); break;
    case 64: bwd_tc<64>(st, dq, dk, dv, dsum, dout, lse, q, k, v, B, T, Hq, Hkv); break;
    case 128: bwd_tc<128>(st, dq, dk, dv, dsum, dout, lse, q, k, v, B, T, Hq, Hkv); break;
    }
    return 0;
}
