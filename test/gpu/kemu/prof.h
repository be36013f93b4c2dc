/*
 * kemu/prof.h - kemu's access profile (the KEMU_PROF build): how each
 * kernel's memory accesses would reach a GPU's memory system.
 *
 * On a GPU a warp issues one load or store for its 32 lanes. What that
 * costs depends on the addresses, not on the arithmetic:
 *   global memory  moves whole 32-byte sectors: 32 lanes reading 32
 *                  consecutive floats move 4 sectors, 32 lanes reading one
 *                  float each 128 bytes apart move 32 (8x the traffic);
 *   shared memory  is 32 banks of 4-byte words; a request takes one pass
 *                  ("wavefront") per distinct word that two lanes want
 *                  from the same bank: a column of a 32 x 32 float tile is
 *                  32 passes, of a 32 x 33 one a single pass.
 * Nsight Compute reports both (sectors per request, bank conflicts); this
 * is the same count made off the GPU, from the real kernels' addresses.
 *
 * How the addresses are seen. The kernel sources are compiled with gcc's
 * -fsanitize=thread instrumentation but linked without ThreadSanitizer's
 * runtime: prof.cc supplies the __tsan_read/write hooks itself, so every
 * load and store of a kernel calls it with its address, size and call
 * site. kemu runs a warp's lanes one after another between barriers, so
 * each lane's accesses are kept in order until every lane of the warp has
 * reached its barrier (kemu.cc calls kemu_prof_warp_round); then the lanes'
 * the lanes' sequences are grouped into the warp's requests (prof.cc): a
 * site that every lane executed equally often is an anchor whose k-th
 * executions form one request each and whose executions so far mark a
 * lane's place (in a loop, its iteration); any other site's request is its
 * k-th execution since the same anchors. Lanes that took a branch around a
 * site are absent from that request, as inactive lanes are on a GPU, and a
 * lane that skipped a guarded access in one iteration joins the next
 * iteration's request, not another lane's earlier one. What this can get
 * wrong: a loop with no anchor whose lanes skip different iterations, or a
 * site whose count is equal across lanes by coincidence.
 *
 * Where an address is: the block's shared memory (static __shared__
 * section and the launch's dynamic buffer) is shared; the running fiber's
 * stack is a thread's own (registers or local memory on a GPU, not
 * counted); the executable's own data and the host's stack (kernel
 * parameters) are not counted; everything else is device memory (hostsim's
 * cudaMalloc is the heap).
 *
 * The models, with what they leave out:
 *   global  sectors = distinct 32-byte sectors the active lanes touch;
 *           ideal   = the distinct bytes they touch / 32, rounded up.
 *           (L1 hits, the 128-byte line and atomics' own path are not
 *           modelled: this is DRAM/L2 traffic per request.)
 *   shared  accesses of 4 bytes or fewer are one phase of 32 lanes, of 8
 *           bytes two phases of 16, of 16 bytes four phases of 8; a phase
 *           costs the largest number of distinct words any one bank holds
 *           among its lanes' words; ideal = one pass per 128 distinct bytes
 *           of the phase, rounded up.
 *   wmma    tiles are costed as the instructions nvcc issues for them on
 *           sm_80 and later: a bf16 matrix_a/matrix_b load as ldmatrix.x4
 *           (four 8 x 8 matrices, each 8 lines of 16 bytes, one phase per
 *           matrix), an fp32 accumulator load or store as the mma.sync
 *           m16n8 accumulator layout the PTX ISA documents (lane l holds
 *           row l/4 (+8), columns 2 (l%4) and 2 (l%4)+1 of each 8-column
 *           half: four 8-byte requests per 16 x 16 tile, row-major).
 * Speed itself is not measured: this says which requests move more bytes
 * or take more passes than their data needs, and where.
 *
 * Use: any kemu binary built as kemu-prof (cuda.mk) profiles every launch;
 * KEMU_PROF=FILE writes each site's totals to FILE as JSON lines at exit
 * and prints a per-kernel table to stderr (test/bench/kernel_access.sh).
 */
#ifndef VIV_KEMU_PROF_H
#define VIV_KEMU_PROF_H

#include <stddef.h>
#include <stdint.h>

/* what kemu.cc tells the profile */
void kemu_prof_launch(const void *kernel);                                    /* a launch starts */
void kemu_prof_launch_done(void);                                             /* ... and ended */
void kemu_prof_block(const void *dyn, size_t dyn_bytes, const void *kemu_mem); /* a block's shared memory */
void kemu_prof_fiber(const void *stack_lo, const void *stack_hi);             /* the fiber now running */
void kemu_prof_warp_round(int w0, int lanes); /* lanes w0.. all reached a barrier or returned */

/* mma.h's tiles: one call per warp (from lane 0) with the tile's memory
 * layout; elem is 2 (bf16 matrix_a/b) or 4 (fp32 accumulator) */
void kemu_prof_tile(const void *p, unsigned ldm, int rows, int cols, int elem, int row_major, int write,
                    const void *site);

/* what tests read back: totals since the last kemu_prof_reset, for one
 * space (0 global, 1 shared) and direction (0 load, 1 store) */
struct kemu_prof_totals {
    uint64_t requests; /* warp-level requests */
    uint64_t lanes;    /* active lanes over all requests */
    uint64_t bytes;    /* distinct bytes the requests touched */
    uint64_t cost;     /* global: 32-byte sectors moved; shared: wavefronts */
    uint64_t ideal;    /* the fewest sectors or wavefronts those bytes need */
};
void kemu_prof_reset(void);
struct kemu_prof_totals kemu_prof_get(int shared, int store);

#endif
