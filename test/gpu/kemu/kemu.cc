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
 */
#include "kemu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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
    uint3 tid; /* its threadIdx */
};

static struct fiber g_fiber[MAX_THREADS];
static int g_n_stacks, g_n;
static kemu_ctx g_sched;
static void (*g_body)(void *);
static void *g_arg;
uint64_t kemu_slot[32][2][32];
unsigned char kemu_parity[MAX_THREADS];
int kemu_cur;
static char *g_dyn;
static size_t g_dyn_cap;

static void die(const char *what) {
    fprintf(stderr, "kemu: %s (block %u,%u,%u of %u,%u,%u; %u,%u,%u threads)\n", what, kemu_blockIdx.x,
            kemu_blockIdx.y, kemu_blockIdx.z, kemu_gridDim.x, kemu_gridDim.y, kemu_gridDim.z, kemu_blockDim.x,
            kemu_blockDim.y, kemu_blockDim.z);
    abort();
}

static void to_scheduler(int state) {
    g_fiber[kemu_cur].state = state;
#if defined(__x86_64__)
    kemu_switch(&g_fiber[kemu_cur].ctx, g_sched);
#else
    swapcontext(&g_fiber[kemu_cur].ctx, &g_sched);
#endif
}

void kemu_syncthreads(void) { to_scheduler(AT_BLOCK_BARRIER); }
void kemu_syncwarp(void) { to_scheduler(AT_WARP_BARRIER); }
void *kemu_dyn_smem(void) { return g_dyn; }

void kemu_wmma_misuse(const char *what, const void *p, unsigned ldm) {
    char m[160];
    snprintf(m, sizeof m, "%s: %p is not 32-byte aligned or ldm %u is not a multiple of 16 bytes", what, p, ldm);
    die(m);
}

static void fiber_main(void) {
    g_body(g_arg);
    to_scheduler(RETURNED);
    die("a returned fiber was resumed"); /* the scheduler never does this */
}

static void ensure_stacks(int n) {
    long page = 4096;
    for (; g_n_stacks < n; g_n_stacks++) {
        char *m = (char *)mmap(NULL, STACK_BYTES + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) die("out of memory for fiber stacks");
        mprotect(m, page, PROT_NONE); /* an overflowing kernel faults instead of corrupting */
        g_fiber[g_n_stacks].stack = m + page;
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
#if defined(__x86_64__)
    kemu_switch(&g_sched, g_fiber[i].ctx);
#else
    swapcontext(&g_sched, &g_fiber[i].ctx);
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
        int live = 0;
        for (int i = 0; i < g_n; i++)
            if (g_fiber[i].state != RETURNED) live++, g_fiber[i].state = RUNNABLE; /* all at __syncthreads */
        if (!live) return;
    }
}

void kemu_run(const kemu_cfg &c, void (*body)(void *), void *arg) {
    size_t n = (size_t)c.block.x * c.block.y * c.block.z;
    if (n == 0 || n > MAX_THREADS) die("block size must be 1..1024 threads");
    if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0) die("empty grid");
    if (c.smem > g_dyn_cap) {
        free(g_dyn);
        /* aligned as a GPU's shared window is, so wmma's alignment checks hold */
        g_dyn = (char *)aligned_alloc(128, (c.smem + 127) / 128 * 128);
        if (!g_dyn) die("out of memory for dynamic shared memory");
        g_dyn_cap = c.smem;
    }
    ensure_stacks((int)n);
    static int seeded;
    if (!seeded) {
        const char *e = getenv("KEMU_SHUFFLE");
        g_shuffle = e ? strtoull(e, NULL, 10) * 2654435761u + 1 : 0;
        seeded = 1;
    }
    g_n = (int)n;
    g_body = body;
    g_arg = arg;
    kemu_blockDim = c.block;
    kemu_gridDim = c.grid;
    for (unsigned z = 0; z < c.grid.z; z++)
        for (unsigned y = 0; y < c.grid.y; y++)
            for (unsigned x = 0; x < c.grid.x; x++) {
                kemu_blockIdx.x = x, kemu_blockIdx.y = y, kemu_blockIdx.z = z;
                if (c.smem) memset(g_dyn, 0xff, c.smem); /* NaN until the kernel writes it */
                run_block();
            }
}
