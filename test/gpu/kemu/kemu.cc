/*
 * kemu.cc - the block scheduler behind kemu.h: CUDA threads as fibers.
 *
 * A launch runs its blocks one after another. For a block of n threads it
 * starts n fibers (one stack each, reused across blocks and launches) and
 * then repeats: resume every runnable fiber until it parks at a barrier or
 * returns; release a warp whose live lanes all wait at a warp barrier;
 * release the block when every live thread waits at __syncthreads. A state
 * that cannot be released (lanes of one warp at different barriers, a
 * shuffle with lanes that returned) is a bug in the kernel and aborts with
 * the block and warp named.
 *
 * Fibers switch with a few lines of x86-64 assembly (callee-saved registers
 * and the stack pointer, as the System V ABI requires of a call): switching
 * with swapcontext would make a system call per switch to save the signal
 * mask, and a shuffle is two switches per lane. Other architectures use
 * ucontext.
 *
 * Shared memory is per block on a GPU, so before each block the static
 * __shared__ section and the dynamic shared buffer are filled with NaN
 * bytes. Under KEMU_TSAN (kemu.h says what it finds) they are remapped as
 * well, together with the block's barrier objects and shuffle slots (one
 * page-aligned arena), so ThreadSanitizer forgets the last block's
 * accesses and the synchronisation it saw, while global memory keeps them.
 * This file itself is built without -fsanitize=thread: the scheduler's own
 * bookkeeping is ordered by the fiber switches, which ThreadSanitizer is
 * told carry no order.
 */
#include "kemu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#ifdef KEMU_TSAN
#include <sanitizer/tsan_interface.h>
#endif
#ifdef KEMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef KEMU_PROF
#include "prof.h"
#endif

uint3 kemu_threadIdx, kemu_blockIdx;
dim3 kemu_blockDim, kemu_gridDim;

enum { RUNNABLE, AT_BLOCK_BARRIER, AT_WARP_BARRIER, RETURNED };

#define STACK_BYTES (256u << 10) /* kernels keep small arrays; generous anyway */
#define MAX_THREADS 1024

#if defined(__x86_64__)
/* kemu_switch(&save, to): push the callee-saved registers, save rsp in
 * *save, load `to` as rsp, pop the other fiber's registers, return into it. */
extern "C" void kemu_switch(void **save, void *to);
__asm__(".text\n"
        ".globl kemu_switch\n"
        ".type kemu_switch,@function\n"
        "kemu_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size kemu_switch, .-kemu_switch\n");
typedef void *kemu_ctx;
#else
#include <ucontext.h>
typedef ucontext_t kemu_ctx;
#endif

struct fiber {
    char *stack; /* STACK_BYTES, a guard page below */
    kemu_ctx ctx;
    int state;
    const void *site; /* where it called __syncthreads (the return address) */
    void *fake;       /* AddressSanitizer's fake stack while switched out (KEMU_ASAN) */
    uint3 tid;        /* its threadIdx */
};

/* Fiber sets: one, or under KEMU_TSAN two used by blocks in turn, so two
 * neighbouring blocks are run by different fibers on different stacks and
 * ThreadSanitizer can tell their threads apart (a fiber's own accesses are
 * ordered: two blocks of one set are, thread index by thread index). */
#ifdef KEMU_TSAN
#define FIBER_SETS 2
#else
#define FIBER_SETS 1
#endif
static struct fiber g_fibers[FIBER_SETS][MAX_THREADS];
static struct fiber *g_fiber = g_fibers[0]; /* the running block's set */
static int g_n_stacks[FIBER_SETS], g_n;
static kemu_ctx g_sched;
static void (*g_body)(void *);
static void *g_arg;
int kemu_cur;

#ifdef KEMU_TSAN
/* ThreadSanitizer's view: a fiber per CUDA thread of each fiber set, the
 * scheduler as the OS thread's own. The host's work before a launch is
 * ordered before every block (launch_start), and every block before the
 * host's work after it (launch_done), as a stream orders kernels. */
static void *g_tsan_fiber[FIBER_SETS][MAX_THREADS], *g_tsan_sched;
static int g_set; /* the running block's fiber set */
static char g_launch_start, g_launch_done;
#endif

/* What one block owns: its barrier objects (only their addresses matter:
 * ThreadSanitizer's release/acquire sync on them), the warps' shuffle
 * slots, then its dynamic shared memory. One page-aligned mapping, so that
 * under KEMU_TSAN it can be replaced by fresh pages before every block. */
struct block_mem {
    uint64_t slot[32][2][32];
    unsigned char parity[MAX_THREADS]; /* each thread's next slot set */
    char block_sync[2];     /* __syncthreads, generations in turn */
    char warp_sync[32][2];  /* __syncwarp / shuffles of each warp */
    char dyn[] __attribute__((aligned(128))); /* as a GPU's shared window is, so wmma's alignment checks hold */
};
static struct block_mem *g_mem;
static size_t g_mem_bytes, g_dyn_cap;
uint64_t (*kemu_slot)[2][32];
unsigned char *kemu_parity;
/* the barrier generations: a thread releases into the object of the
 * current one and, once through, acquires from it; the next barrier uses
 * the other object, so a fast thread's next release cannot reach a slow
 * thread's acquire of this one */
static unsigned g_block_gen, g_warp_gen[32];

/* The static __shared__ variables (kemu.h puts them in section kemu_smem);
 * the pad, linked last (kemu.o comes last on kemu's link lines), makes the
 * section end on a page boundary, so remapping its pages touches nothing else. */
extern char __start_kemu_smem[], __stop_kemu_smem[];
__attribute__((section("kemu_smem"), aligned(4096), used)) static char kemu_smem_pad[4096];

/* A misaligned vector access (kemu.h) stops the run where it happened. */
extern "C" const char *__ubsan_default_options(void) { return "abort_on_error=1:print_stacktrace=1"; }

static void die(const char *what) {
    fprintf(stderr, "kemu: %s (block %u,%u,%u of %u,%u,%u; %u,%u,%u threads)\n", what, kemu_blockIdx.x,
            kemu_blockIdx.y, kemu_blockIdx.z, kemu_gridDim.x, kemu_gridDim.y, kemu_gridDim.z, kemu_blockDim.x,
            kemu_blockDim.y, kemu_blockDim.z);
    abort();
}

#ifdef KEMU_ASAN
/* AddressSanitizer is told of every stack switch (it keeps one stack's
 * bounds per thread); the scheduler's stack is learnt at the first switch. */
static const void *g_sched_stack;
static size_t g_sched_stack_size;
static void *g_sched_fake; /* the scheduler's fake stack while a fiber runs */
/* leaving: `save` keeps the leaving context's fake stack (NULL: it is done) */
static void asan_leave(void **save, const void *bottom, size_t size) {
    __sanitizer_start_switch_fiber(save, bottom, size);
}
/* arrived: `fake` is what this context saved when it left */
static void asan_arrived(void *fake) {
    const void *from;
    size_t from_size;
    __sanitizer_finish_switch_fiber(fake, &from, &from_size);
    if (!g_sched_stack) g_sched_stack = from, g_sched_stack_size = from_size;
}
#endif

static void to_scheduler(int state) {
    g_fiber[kemu_cur].state = state;
#ifdef KEMU_TSAN
    __tsan_switch_to_fiber(g_tsan_sched, __tsan_switch_to_fiber_no_sync);
#endif
#ifdef KEMU_ASAN
    asan_leave(state == RETURNED ? NULL : &g_fiber[kemu_cur].fake, g_sched_stack, g_sched_stack_size);
#endif
#if defined(__x86_64__)
    kemu_switch(&g_fiber[kemu_cur].ctx, g_sched);
#else
    swapcontext(&g_fiber[kemu_cur].ctx, &g_sched);
#endif
#ifdef KEMU_ASAN
    asan_arrived(g_fiber[kemu_cur].fake);
#endif
}

#ifdef KEMU_TSAN
static void barrier(int state, void *sync) {
    __tsan_release(sync);
    to_scheduler(state);
    __tsan_acquire(sync);
}
void kemu_syncthreads(void) {
    g_fiber[kemu_cur].site = __builtin_return_address(0);
    barrier(AT_BLOCK_BARRIER, &g_mem->block_sync[g_block_gen & 1]);
}
void kemu_syncwarp(void) {
    int w = kemu_cur >> 5;
    barrier(AT_WARP_BARRIER, &g_mem->warp_sync[w][g_warp_gen[w] & 1]);
}
#else
void kemu_syncthreads(void) {
    g_fiber[kemu_cur].site = __builtin_return_address(0);
    to_scheduler(AT_BLOCK_BARRIER);
}
void kemu_syncwarp(void) { to_scheduler(AT_WARP_BARRIER); }
#endif
#ifdef KEMU_ASAN
/* Under KEMU_ASAN a launch's dynamic shared memory is a heap block of just
 * the size it asked for, so an access past it is AddressSanitizer's
 * heap-buffer-overflow, as compute-sanitizer's memcheck reports an
 * out-of-range __shared__ access. */
static char *g_asan_dyn;
void *kemu_dyn_smem(void) { return g_asan_dyn; }
#else
void *kemu_dyn_smem(void) { return g_mem->dyn; }
#endif

void kemu_wmma_misuse(const char *what, const void *p, unsigned ldm) {
    char m[160];
    snprintf(m, sizeof m, "%s: %p is not 32-byte aligned or ldm %u is not a multiple of 16 bytes", what, p, ldm);
    die(m);
}

static void fiber_main(void) {
#ifdef KEMU_ASAN
    asan_arrived(NULL);
#endif
#ifdef KEMU_TSAN
    __tsan_acquire(&g_launch_start);
#endif
    g_body(g_arg);
#ifdef KEMU_TSAN
    __tsan_release(&g_launch_done);
#endif
    to_scheduler(RETURNED);
    die("a returned fiber was resumed"); /* the scheduler never does this */
}

static void ensure_stacks(int n) {
    long page = 4096;
    for (int set = 0; set < FIBER_SETS; set++)
        for (; g_n_stacks[set] < n; g_n_stacks[set]++) {
            int i = g_n_stacks[set];
            char *m = (char *)mmap(NULL, STACK_BYTES + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED) die("out of memory for fiber stacks");
            mprotect(m, page, PROT_NONE); /* an overflowing kernel faults instead of corrupting */
            g_fibers[set][i].stack = m + page;
#ifdef KEMU_TSAN
            g_tsan_fiber[set][i] = __tsan_create_fiber(0);
            char name[48];
            snprintf(name, sizeof name, "CUDA thread %d (fiber set %d)", i, set);
            __tsan_set_fiber_name(g_tsan_fiber[set][i], name);
#endif
        }
}

static void start_fiber(int i) {
    struct fiber *f = &g_fiber[i];
    f->state = RUNNABLE;
    kemu_parity[i] = 0;
    unsigned bx = kemu_blockDim.x, by = kemu_blockDim.y;
    f->tid.x = (unsigned)i % bx;
    f->tid.y = ((unsigned)i / bx) % by;
    f->tid.z = (unsigned)i / (bx * by);
#if defined(__x86_64__)
    /* The frame kemu_switch pops: six registers, then the return address
     * fiber_main, then a null "caller" slot so fiber_main starts with the
     * stack 8 bytes past a 16-byte boundary, as after a call. */
    uintptr_t top = ((uintptr_t)f->stack + STACK_BYTES) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = NULL;
    *--sp = (void *)fiber_main;
    for (int r = 0; r < 6; r++) *--sp = NULL;
    f->ctx = sp;
#else
    getcontext(&f->ctx);
    f->ctx.uc_stack.ss_sp = f->stack;
    f->ctx.uc_stack.ss_size = STACK_BYTES;
    f->ctx.uc_link = NULL;
    makecontext(&f->ctx, fiber_main, 0);
#endif
}

static void resume(int i) {
    kemu_cur = i;
    kemu_threadIdx = g_fiber[i].tid;
#ifdef KEMU_PROF
    kemu_prof_fiber(g_fiber[i].stack, g_fiber[i].stack + STACK_BYTES);
#endif
#ifdef KEMU_TSAN
    __tsan_switch_to_fiber(g_tsan_fiber[g_set][i], __tsan_switch_to_fiber_no_sync);
#endif
#ifdef KEMU_ASAN
    asan_leave(&g_sched_fake, g_fiber[i].stack, STACK_BYTES);
#endif
#if defined(__x86_64__)
    kemu_switch(&g_sched, g_fiber[i].ctx);
#else
    swapcontext(&g_sched, &g_fiber[i].ctx);
#endif
#ifdef KEMU_ASAN
    asan_arrived(g_sched_fake);
#endif
}

/* KEMU_SHUFFLE=<seed>: resume fibers in a new random order (of the warps,
 * and of the lanes inside a warp) at every round instead of thread order. A
 * kernel without races between barriers computes the same values in any
 * order (up to the order of float atomics), so a test that passes in order
 * and fails shuffled has found a missing barrier. */
static uint64_t g_shuffle;

static void permute(int *v, int n) {
    for (int i = 0; i < n; i++) v[i] = i;
    if (!g_shuffle) return;
    for (int i = n - 1; i > 0; i--) { /* Fisher-Yates with xorshift64 */
        g_shuffle ^= g_shuffle << 13, g_shuffle ^= g_shuffle >> 7, g_shuffle ^= g_shuffle << 17;
        int j = (int)(g_shuffle % (uint64_t)(i + 1)), t = v[i];
        v[i] = v[j], v[j] = t;
    }
}

/* Run one warp (threads w0 .. w0+lanes-1) until each of its lanes has
 * returned or waits at __syncthreads. Warp barriers are released here: they
 * involve no other warp. */
static void run_warp(int w0, int lanes) {
    int order[32];
    for (;;) {
        permute(order, lanes);
        for (int k = 0; k < lanes; k++)
            if (g_fiber[w0 + order[k]].state == RUNNABLE) resume(w0 + order[k]);
#ifdef KEMU_PROF
        kemu_prof_warp_round(w0, lanes); /* every lane at a barrier: its requests are complete */
#endif
        int at_warp = 0, ret = 0, blk = 0;
        for (int i = w0; i < w0 + lanes; i++) {
            int st = g_fiber[i].state;
            at_warp += st == AT_WARP_BARRIER;
            ret += st == RETURNED;
            blk += st == AT_BLOCK_BARRIER;
        }
        if (!at_warp) return;
        if (blk) die("lanes of one warp wait at __syncthreads and at a warp shuffle/__syncwarp (divergent barrier)");
        if (ret) die("a warp shuffle/__syncwarp with lanes that already returned");
        for (int i = w0; i < w0 + lanes; i++) g_fiber[i].state = RUNNABLE;
        g_warp_gen[w0 >> 5]++;
    }
}

static void run_block(void) {
    int n_warps = (g_n + 31) / 32, order[MAX_THREADS / 32];
    for (int i = 0; i < g_n; i++) start_fiber(i);
    for (;;) {
        permute(order, n_warps);
        for (int k = 0; k < n_warps; k++) {
            int w0 = order[k] * 32;
            run_warp(w0, g_n - w0 < 32 ? g_n - w0 : 32);
        }
        /* every live thread is at a __syncthreads: one and the same, as the
         * programming guide requires (two in the two arms of a branch the
         * block does not take alike hang or misbehave on a GPU) */
        int live = 0;
        const void *site = NULL;
        for (int i = 0; i < g_n; i++) {
            if (g_fiber[i].state == RETURNED) continue;
            if (live++ && g_fiber[i].site != site) die("threads of one block wait at different __syncthreads");
            site = g_fiber[i].site;
            g_fiber[i].state = RUNNABLE;
        }
        if (!live) return;
        g_block_gen++;
    }
}

static size_t page_round(size_t n) { return (n + 4095) / 4096 * 4096; }

static void map_fixed(void *at, size_t n) {
    if (mmap(at, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != at)
        die("cannot map shared memory");
}

static void ensure_block_mem(size_t smem) {
    if (g_mem && smem <= g_dyn_cap) return;
    if (g_mem) munmap(g_mem, g_mem_bytes);
    g_mem_bytes = page_round(sizeof(struct block_mem) + smem);
    g_mem = (struct block_mem *)mmap(NULL, g_mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g_mem == MAP_FAILED) die("out of memory for shared memory");
    g_dyn_cap = g_mem_bytes - sizeof(struct block_mem);
    kemu_slot = g_mem->slot;
    kemu_parity = g_mem->parity;
}

/* A new block's shared memory: NaN bytes until the kernel writes it, so a
 * read before the write gets NaNs, not the last block's values or zeros.
 * Under KEMU_TSAN the pages are replaced first (munmap makes
 * ThreadSanitizer drop their history and sync objects). */
static void fresh_shared_memory(size_t smem) {
    char *s0 = __start_kemu_smem, *s1 = __stop_kemu_smem;
#ifdef KEMU_TSAN
    static int checked;
    if (!checked) {
        /* compared as integers: the compiler takes two declared objects'
         * addresses to differ and would fold a pointer comparison */
        uintptr_t pad_end = (uintptr_t)kemu_smem_pad + sizeof kemu_smem_pad, end = (uintptr_t)s1;
        __asm__("" : "+r"(pad_end), "+r"(end));
        if ((uintptr_t)s0 % 4096 || end % 4096 || pad_end != end)
            die("section kemu_smem is not page-aligned or kemu.o is not linked last");
        checked = 1;
    }
    munmap(g_mem, g_mem_bytes);
    map_fixed(g_mem, g_mem_bytes);
    if (s1 > s0) {
        munmap(s0, page_round((size_t)(s1 - s0)));
        map_fixed(s0, page_round((size_t)(s1 - s0)));
    }
#endif
    memset(s0, 0xff, (size_t)(s1 - s0));
    if (smem) memset(kemu_dyn_smem(), 0xff, smem);
}

/* ---- what a launch may ask for (sm_90, the CUDA programming guide's table) ---------- */
#define SMEM_DEFAULT_MAX 49152u /* dynamic shared memory without an opt-in: 48 KiB */
#define SMEM_OPTIN_MAX 232448u  /* with cudaFuncAttributeMaxDynamicSharedMemorySize: 227 KiB */

static struct {
    const void *kernel;
    unsigned bytes;
} g_optin[64];
static int g_n_optin;

cudaError_t kemu_set_max_dyn_smem(const void *kernel, int bytes) {
    if (bytes < 0 || (unsigned)bytes > SMEM_OPTIN_MAX) return cudaErrorInvalidValue;
    for (int i = 0; i < g_n_optin; i++)
        if (g_optin[i].kernel == kernel) return g_optin[i].bytes = (unsigned)bytes, cudaSuccess;
    if (g_n_optin == (int)(sizeof g_optin / sizeof g_optin[0])) die("too many kernels with a shared memory opt-in");
    g_optin[g_n_optin].kernel = kernel, g_optin[g_n_optin++].bytes = (unsigned)bytes;
    return cudaSuccess;
}

static unsigned max_dyn_smem(const void *kernel) {
    for (int i = 0; i < g_n_optin; i++)
        if (g_optin[i].kernel == kernel && g_optin[i].bytes > SMEM_DEFAULT_MAX) return g_optin[i].bytes;
    return SMEM_DEFAULT_MAX;
}

/* A launch a GPU would refuse (cudaErrorInvalidConfiguration, or
 * cudaErrorInvalidValue for the shared memory) is a bug kemu reports. */
static void check_launch(const kemu_cfg &c, const void *kernel) {
    char m[200];
    size_t n = (size_t)c.block.x * c.block.y * c.block.z;
    if (n == 0 || n > MAX_THREADS || c.block.x > 1024 || c.block.y > 1024 || c.block.z > 64)
        die("block must be 1..1024 threads, at most 1024 x 1024 x 64");
    if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0) die("empty grid");
    if (c.grid.x > 2147483647u || c.grid.y > 65535u || c.grid.z > 65535u)
        die("grid over 2^31-1 x 65535 x 65535 blocks");
    if (c.smem > max_dyn_smem(kernel)) {
        snprintf(m, sizeof m,
                 "%zu bytes of dynamic shared memory: over %u without a cudaFuncSetAttribute"
                 "(MaxDynamicSharedMemorySize) opt-in that covers it",
                 c.smem, max_dyn_smem(kernel));
        die(m);
    }
}

void kemu_run(const kemu_cfg &c, void (*body)(void *), void *arg, const void *kernel) {
    size_t n = (size_t)c.block.x * c.block.y * c.block.z;
    kemu_blockDim = c.block, kemu_gridDim = c.grid, kemu_blockIdx = uint3{0, 0, 0}; /* for die()'s message */
    check_launch(c, kernel);
    ensure_block_mem(c.smem);
    ensure_stacks((int)n);
#ifdef KEMU_ASAN
    free(g_asan_dyn);
    g_asan_dyn = NULL;
    if (c.smem && posix_memalign((void **)&g_asan_dyn, 128, c.smem)) die("out of memory for shared memory");
#endif
#ifdef KEMU_TSAN
    if (!g_tsan_sched) g_tsan_sched = __tsan_get_current_fiber();
#endif
    static int seeded;
    if (!seeded) {
        const char *e = getenv("KEMU_SHUFFLE");
        g_shuffle = e ? strtoull(e, NULL, 10) * 2654435761u + 1 : 0;
        seeded = 1;
    }
    g_n = (int)n;
#ifdef KEMU_PROF
    kemu_prof_launch(kernel);
#endif
    g_body = body;
    g_arg = arg;
    kemu_blockDim = c.block;
    kemu_gridDim = c.grid;
    for (unsigned z = 0; z < c.grid.z; z++)
        for (unsigned y = 0; y < c.grid.y; y++)
            for (unsigned x = 0; x < c.grid.x; x++) {
                kemu_blockIdx.x = x, kemu_blockIdx.y = y, kemu_blockIdx.z = z;
                fresh_shared_memory(c.smem);
#ifdef KEMU_TSAN
                g_set = (int)((x + y + z) % FIBER_SETS); /* neighbours along any axis differ */
                g_fiber = g_fibers[g_set];
                /* after the remap, which ThreadSanitizer counts as the scheduler's write */
                __tsan_release(&g_launch_start);
#endif
#ifdef KEMU_PROF
                kemu_prof_block(kemu_dyn_smem(), c.smem, g_mem);
#endif
                run_block();
            }
#ifdef KEMU_TSAN
    __tsan_acquire(&g_launch_done);
#endif
#ifdef KEMU_PROF
    kemu_prof_launch_done();
#endif
}
