/*
 * race_tests.cu - kemu's race check (the KEMU_TSAN build: see kemu.h),
 * which also aborts on a misaligned vector access (-fsanitize=alignment),
 * and, built with KEMU_ASAN instead (AddressSanitizer, build/test/
 * kemu_memcheck_tests), kemu's memcheck: an access past a cudaMalloc'd
 * buffer or past the dynamic shared memory a launch asked for is reported
 * with the kernel's line, as compute-sanitizer's memcheck would.
 *
 * Every CUDA thread is a ThreadSanitizer fiber and barriers are its
 * release/acquire pairs, so two accesses to one address by two threads
 * with no barrier (or kernel boundary) between them, one a write and not
 * both atomic, are reported with both stacks. Two groups of cases, each run
 * in a child process whose stderr is read back:
 *
 *   planted  kernels with a race a GPU would show (a missing
 *            __syncthreads, a missing __syncwarp, a missing __syncwarp
 *            after a wmma store, blocks adding into one counter without
 *            atomics): ThreadSanitizer must report it, naming the kernel;
 *            beside each, the same kernel with its barrier or atomic must
 *            be reported clean; a float4 load 8 bytes off a 16-byte
 *            boundary must stop the run, where an aligned one is clean;
 *            in the memcheck build instead of the races, a read one past a
 *            device buffer and a write one past the shared memory asked
 *            for must be reported, their in-bounds twins clean;
 *   model    every launcher of model/cuda/ops.cuh (kernels.cu,
 *            attention.cu, attention_tc.cu at each head size, partial tiles
 *            and GQA) on small shapes: no report at all.
 *
 * Values are not checked here (gpu_kemu_tests does that against the CPU
 * model); what is checked is the order of memory accesses.
 *
 *   build/test/kemu_race_tests            every case
 *   build/test/kemu_race_tests TEXT...    the cases whose name holds TEXT (stderr shown)
 */
#include "ops.cuh"

#include "wmma_kernel.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace nvcuda;

/* ---- planted races, and their fixed twins -------------------------------------------- */

/* thread t reads what thread (t + 32) % 64, in the other warp, wrote */
__global__ void smem_neighbour_kernel(float *out, int sync) {
    __shared__ float buf[64];
    buf[threadIdx.x] = (float)threadIdx.x;
    if (sync) __syncthreads();
    out[blockIdx.x * 64 + threadIdx.x] = buf[(threadIdx.x + 32) % 64];
}

/* lanes swap through shared memory inside one warp */
__global__ void warp_swap_kernel(float *out, int sync) {
    __shared__ float buf[32];
    buf[threadIdx.x] = (float)threadIdx.x;
    if (sync) __syncwarp();
    out[blockIdx.x * 32 + threadIdx.x] = buf[threadIdx.x ^ 1];
}

/* thread 0 of every block adds one to a global counter */
__global__ void block_count_kernel(int *count, int atomic) {
    if (threadIdx.x != 0) return;
    if (atomic) atomicAdd(count, 1);
    else *count += 1;
}

/* reads one element past the end of its input when `past` */
__global__ void copy_past_end_kernel(float *out, const float *in, int n, int past) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i + (past && i == n - 1)];
}
/* writes dynamic shared memory one float past what the launch asked for when `past` */
__global__ void smem_past_end_kernel(float *out, int n, int past) {
    extern __shared__ float buf[];
    buf[threadIdx.x + (past && (int)threadIdx.x == n - 1)] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = buf[n - 1 - threadIdx.x];
}

/* a float4 load 8 bytes past a 16-byte boundary: "misaligned address" on a GPU */
__global__ void vec4_copy_kernel(float *out, const float *in) {
    ((float4 *)out)[threadIdx.x] = *(const float4 *)(in + 4 * threadIdx.x);
}

/* one launch writes, the next reads other threads' values: a kernel
 * boundary orders them, so this is clean */
__global__ void write_kernel(float *x) { x[blockIdx.x * blockDim.x + threadIdx.x] = (float)threadIdx.x; }
__global__ void read_shifted_kernel(float *out, const float *x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    out[i] = x[(i + 97) % n];
}

static float g_out[1024];
static __align__(32) __nv_bfloat16 g_a[256], g_b[256];

static void planted_smem(int sync) { smem_neighbour_kernel<<<1, 64>>>(g_out, sync); }
static void planted_warp(int sync) { warp_swap_kernel<<<1, 32>>>(g_out, sync); }
static void planted_wmma(int sync) {
    for (int i = 0; i < 256; i++) g_a[i] = __float2bfloat16((float)(i % 7) - 3), g_b[i] = __float2bfloat16(1.0f);
    wmma_kernel<<<1, 32>>>(g_out, g_a, g_b, sync);
}
static void planted_blocks(int atomic) {
    static int count;
    count = 0;
    block_count_kernel<<<4, 64>>>(&count, atomic);
}
static void run_race_smem(void) { planted_smem(0); }
static void run_clean_smem(void) { planted_smem(1); }
static void run_race_warp(void) { planted_warp(0); }
static void run_clean_warp(void) { planted_warp(1); }
static void run_race_wmma(void) { planted_wmma(0); }
static void run_clean_wmma(void) { planted_wmma(1); }
static void run_race_blocks(void) { planted_blocks(0); }
static void run_clean_blocks(void) { planted_blocks(1); }
static void run_vec4(int offset) {
    static __align__(16) float in[4 * 32 + 4];
    vec4_copy_kernel<<<1, 32>>>(g_out, in + offset);
}
static void run_misaligned_vec4(void) { run_vec4(2); }
static void run_aligned_vec4(void) { run_vec4(4); }
static void run_past_end(int past) {
    float *in, *out;
    if (cudaMalloc((void **)&in, 100 * sizeof(float)) || cudaMalloc((void **)&out, 100 * sizeof(float))) abort();
    copy_past_end_kernel<<<2, 64>>>(out, in, 100, past);
}
static void run_oob_global(void) { run_past_end(1); }
static void run_inb_global(void) { run_past_end(0); }
static void run_smem_past(int past) { smem_past_end_kernel<<<1, 64, 64 * sizeof(float)>>>(g_out, 64, past); }
static void run_oob_smem(void) { run_smem_past(1); }
static void run_inb_smem(void) { run_smem_past(0); }
static void run_clean_launches(void) {
    static float x[512];
    write_kernel<<<4, 128>>>(x);
    read_shifted_kernel<<<4, 128>>>(g_out, x, 512);
}
/* shared memory is per block: many blocks reusing the same __shared__
 * words behind correct barriers must be clean (kemu gives each block fresh
 * pages, so ThreadSanitizer does not see one block's words as another's) */
static void run_clean_many_blocks(void) {
    for (int i = 0; i < 3; i++) {
        smem_neighbour_kernel<<<7, 64>>>(g_out, 1);
        warp_swap_kernel<<<5, 32>>>(g_out, 1);
    }
}

/* ---- the model's launchers on small shapes ----------------------------------------------- */

static unsigned g_rng = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    g_rng = g_rng * 1664525u + 1013904223u;
    return (float)(g_rng >> 8) / 8388608.0f - 1.0f;
}
static float *dev_f32(size_t n, float scale) {
    float *p;
    if (cudaMalloc((void **)&p, n * sizeof *p)) abort();
    for (size_t i = 0; i < n; i++) p[i] = scale * frand();
    return p;
}
static bf16 *dev_bf16(size_t n, float scale) {
    bf16 *p;
    if (cudaMalloc((void **)&p, n * sizeof *p)) abort();
    for (size_t i = 0; i < n; i++) p[i] = __float2bfloat16(scale * frand());
    return p;
}
static float *dev_zero(size_t n) {
    float *p;
    if (cudaMalloc((void **)&p, n * sizeof *p)) abort();
    memset(p, 0, n * sizeof *p);
    return p;
}
/* Device memory lives until the child exits: each case runs in its own process. */

static void run_model_elementwise(void) {
    size_t n = 1000;
    k_f32_to_bf16(0, dev_bf16(n, 0), dev_f32(n, 1), n);
    k_swiglu_fwd(0, dev_bf16(n, 0), dev_bf16(n, 2), dev_bf16(n, 1), n);
    k_swiglu_bwd(0, dev_bf16(n, 0), dev_bf16(n, 0), dev_f32(n, 1), dev_bf16(n, 2), dev_bf16(n, 1), n);
    k_adamw(0, dev_f32(n, 1), dev_bf16(n, 0), dev_f32(n, 1), dev_f32(n, 0.1f), dev_zero(n), n, 0.99f, 1.0f, 0.9f,
            0.95f, 1e-3f, 0.3f, 1e-8f);
    double *ss;
    if (cudaMalloc((void **)&ss, sizeof *ss)) abort();
    *ss = 0;
    k_sumsq(0, ss, dev_f32(70000, 1), 70000); /* 274 blocks, one atomic each */
}

static void run_model_embed(void) {
    int N = 9, D = 300, V = 5;
    int32_t *ids;
    if (cudaMalloc((void **)&ids, N * sizeof *ids)) abort();
    for (int i = 0; i < N; i++) ids[i] = i % 3; /* repeated tokens: the backward's atomics collide */
    k_embed_fwd(0, dev_f32((size_t)N * D, 0), ids, dev_bf16((size_t)V * D, 1), N, D);
    k_embed_bwd(0, dev_zero((size_t)V * D), ids, dev_f32((size_t)N * D, 1), N, D);
}

static void rmsnorm_case(int N, int D) {
    float *x = dev_f32((size_t)N * D, 1), *w = dev_f32(D, 1), *rstd = dev_f32(N, 0);
    k_rmsnorm_fwd(0, dev_bf16((size_t)N * D, 0), rstd, x, w, N, D, 1e-6f);
    k_rmsnorm_bwd(0, dev_f32((size_t)N * D, 1), dev_bf16((size_t)N * D, 0), dev_zero(D), dev_f32((size_t)N * D, 1),
                  x, w, rstd, N, D);
}
static void run_model_rmsnorm(void) {
    rmsnorm_case(6, 300); /* D not a multiple of the block */
    rmsnorm_case(515, 32); /* past 512 rows some blocks take two: block_sum called twice in one block */
}

static void run_model_headnorm_rope(void) {
    int T = 5, N = 10, H = 3, hd = 96, half = hd / 2; /* 48 pairs: two per lane for some lanes */
    float *cosv = dev_f32((size_t)T * half, 1), *sinv = dev_f32((size_t)T * half, 1);
    bf16 *x = dev_bf16((size_t)N * H * hd, 1);
    float *w = dev_f32(hd, 1), *rstd = dev_f32((size_t)N * H, 0);
    k_headnorm_rope_fwd(0, dev_bf16((size_t)N * H * hd, 0), rstd, x, w, N, H, hd, 1e-6f, NULL, T, cosv, sinv);
    int *pos;
    if (cudaMalloc((void **)&pos, N * sizeof *pos)) abort();
    for (int i = 0; i < N; i++) pos[i] = (i * 3) % T;
    k_headnorm_rope_fwd(0, dev_bf16((size_t)N * H * hd, 0), NULL, x, w, N, H, hd, 1e-6f, pos, T, cosv, sinv);
    k_headnorm_rope_bwd(0, dev_bf16((size_t)N * H * hd, 0), dev_zero(hd), dev_f32((size_t)N * H * hd, 1), x, w, rstd,
                        N, H, hd, T, cosv, sinv);
}

static void run_model_xent(void) {
    int N = 3, V = 1500;
    float *logits = dev_f32((size_t)N * V, 4), *lse = dev_f32(N, 0);
    int32_t *t;
    if (cudaMalloc((void **)&t, N * sizeof *t)) abort();
    t[0] = 7, t[1] = -1, t[2] = V - 1; /* -1: a masked row */
    k_xent_fwd(0, lse, dev_f32(N, 0), logits, t, N, V);
    k_xent_bwd(0, dev_bf16((size_t)N * V, 0), logits, lse, t, dev_f32(N, 1), NULL, N, V);
    k_xent_bwd(0, dev_bf16((size_t)N * V, 0), logits, lse, t, dev_f32(N, 1), dev_f32(N, 1), N, V); /* entropy term */
    k_xent_entropy(0, dev_f32(N, 0), logits, lse, N, V);
}

static void run_model_kv(void) {
    int n = 5, kvd = 96, rows = 12;
    int64_t *dst;
    int *rws;
    if (cudaMalloc((void **)&dst, n * sizeof *dst) || cudaMalloc((void **)&rws, n * sizeof *rws)) abort();
    for (int i = 0; i < n; i++) dst[i] = (i * 5) % rows, rws[i] = (i * 7) % rows;
    k_kv_store(0, dev_bf16((size_t)rows * kvd, 0), dev_bf16((size_t)n * kvd, 1), dst, n, kvd);
    k_gather_rows(0, dev_f32((size_t)n * kvd, 0), dev_f32((size_t)rows * kvd, 1), rws, n, kvd);
}

/* one training forward + backward of the attention path chosen */
static void attention_case(int tc, int B, int T, int Hq, int Hkv, int hd) {
    size_t nq = (size_t)B * T * Hq * hd, nkv = (size_t)B * T * Hkv * hd, nrow = (size_t)B * T * Hq;
    bf16 *q = dev_bf16(nq, 1), *k = dev_bf16(nkv, 1), *v = dev_bf16(nkv, 1), *out = dev_bf16(nq, 0);
    float *lse = dev_f32(nrow, 0), *dout = dev_f32(nq, 1), *dsum = dev_f32(nrow, 0);
    float *dq = dev_f32(nq, 0), *dk = dev_f32(nkv, 0);
    bf16 *dv = dev_bf16(nkv, 0);
    if (tc) {
        if (k_attn_fwd_tc(0, out, lse, q, k, v, B, T, Hq, Hkv, hd) ||
            k_attn_bwd_tc(0, dq, dk, dv, dsum, dout, out, lse, q, k, v, B, T, Hq, Hkv, hd)) {
            fprintf(stderr, "race_tests: no tensor-core attention for hd %d\n", hd);
            exit(2);
        }
    } else {
        k_attn_fwd_warp(0, out, lse, q, k, v, B, T, Hq, Hkv, hd);
        k_attn_bwd_warp(0, dq, dk, dv, dsum, dout, out, lse, q, k, v, B, T, Hq, Hkv, hd);
    }
}
static void run_model_attn_warp(void) {
    attention_case(0, 2, 37, 4, 2, 16);
    attention_case(0, 1, 20, 2, 1, 128);
}
/* T = 70: one full 64-row tile and a partial one */
static void run_model_attn_tc16(void) { attention_case(1, 2, 70, 4, 2, 16); }
static void run_model_attn_tc32(void) { attention_case(1, 1, 70, 4, 1, 32); }
static void run_model_attn_tc64(void) { attention_case(1, 1, 70, 2, 2, 64); }
static void run_model_attn_tc128(void) { attention_case(1, 1, 70, 2, 1, 128); }

static void run_model_attn_decode(void) {
    int n = 3, Hq = 4, Hkv = 2, hd = 64, rows = 40, kvd = Hkv * hd;
    int64_t *row0;
    int *pos;
    if (cudaMalloc((void **)&row0, n * sizeof *row0) || cudaMalloc((void **)&pos, n * sizeof *pos)) abort();
    for (int i = 0; i < n; i++) row0[i] = i * 13, pos[i] = 3 + 4 * i; /* three sequences' slots */
    k_attn_decode(0, dev_bf16((size_t)n * Hq * hd, 0), dev_bf16((size_t)n * Hq * hd, 1),
                  dev_bf16((size_t)rows * kvd, 1), dev_bf16((size_t)rows * kvd, 1), row0, pos, n, Hq, Hkv, hd);
}

/* ---- the runner ---------------------------------------------------------------------- */

/* no second of sleep at each child's exit (ThreadSanitizer's default) */
extern "C" const char *__tsan_default_options(void) { return "atexit_sleep_ms=0"; }

struct race_case {
    const char *name;
    void (*run)(void);
    const char *race_in; /* the kernel a report must name; NULL: the case must be clean */
    const char *report;  /* what the report says (default: a data race) */
    char build;          /* 'T' race check only, 'A' memcheck only, 0 both */
};
#define DATA_RACE "ThreadSanitizer: data race"
#define OVERFLOW "AddressSanitizer: heap-buffer-overflow"
#ifdef KEMU_ASAN
#define BUILD 'A'
#define LABEL "memcheck"
#else
#define BUILD 'T'
#define LABEL "race check"
#endif

static const struct race_case CASES[] = {
    {"planted: missing __syncthreads", run_race_smem, "smem_neighbour_kernel", NULL, 'T'},
    {"planted: the same with __syncthreads", run_clean_smem, NULL, NULL, 'T'},
    {"planted: missing __syncwarp", run_race_warp, "warp_swap_kernel", NULL, 'T'},
    {"planted: the same with __syncwarp", run_clean_warp, NULL, NULL, 'T'},
    {"planted: wmma store read without __syncwarp", run_race_wmma, "wmma_kernel", NULL, 'T'},
    {"planted: the same with __syncwarp", run_clean_wmma, NULL, NULL, 'T'},
    {"planted: blocks add to one counter without atomics", run_race_blocks, "block_count_kernel", NULL, 'T'},
    {"planted: the same with atomicAdd", run_clean_blocks, NULL, NULL, 'T'},
    {"planted: a read one past the end of a device buffer", run_oob_global, "copy_past_end_kernel", OVERFLOW, 'A'},
    {"planted: the same in bounds", run_inb_global, NULL, NULL, 'A'},
    {"planted: a write past the dynamic shared memory asked for", run_oob_smem, "smem_past_end_kernel", OVERFLOW, 'A'},
    {"planted: the same in bounds", run_inb_smem, NULL, NULL, 'A'},
    {"planted: a float4 load 8 bytes off its alignment", run_misaligned_vec4, "vec4_copy_kernel",
     "misaligned address", 0},
    {"planted: the same aligned", run_aligned_vec4, NULL, NULL, 0},
    {"planted: a kernel reads what the previous launch wrote", run_clean_launches, NULL, NULL, 0},
    {"planted: blocks reuse __shared__ behind barriers", run_clean_many_blocks, NULL, NULL, 0},
    {"model: f32_to_bf16, swiglu fwd/bwd, adamw, sumsq", run_model_elementwise, NULL, NULL, 0},
    {"model: embedding fwd/bwd (repeated ids)", run_model_embed, NULL, NULL, 0},
    {"model: rmsnorm fwd/bwd", run_model_rmsnorm, NULL, NULL, 0},
    {"model: head norm + RoPE fwd/bwd", run_model_headnorm_rope, NULL, NULL, 0},
    {"model: softmax + cross-entropy fwd/bwd/entropy", run_model_xent, NULL, NULL, 0},
    {"model: kv_store, gather_rows", run_model_kv, NULL, NULL, 0},
    {"model: attention, CUDA-core path (hd 16, 128)", run_model_attn_warp, NULL, NULL, 0},
    {"model: attention, tensor cores, hd 16", run_model_attn_tc16, NULL, NULL, 0},
    {"model: attention, tensor cores, hd 32", run_model_attn_tc32, NULL, NULL, 0},
    {"model: attention, tensor cores, hd 64", run_model_attn_tc64, NULL, NULL, 0},
    {"model: attention, tensor cores, hd 128", run_model_attn_tc128, NULL, NULL, 0},
    {"model: attention decode against the KV cache", run_model_attn_decode, NULL, NULL, 0},
};
#define N_CASES (int)(sizeof CASES / sizeof CASES[0])

/* Runs one case in a child; returns its exit status, its stderr in *err. */
static int run_child(const struct race_case *c, char **err) {
    int fd[2];
    if (pipe(fd)) return perror("pipe"), -1;
    fflush(stdout);
    pid_t p = fork();
    if (p < 0) return perror("fork"), -1;
    if (p == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        close(fd[1]);
        c->run();
#ifdef KEMU_ASAN
        _exit(0); /* a case's buffers live until here on purpose: no leak check (AddressSanitizer reports as it goes) */
#else
        exit(0); /* exit, not _exit: ThreadSanitizer sets the status (66) at exit when it reported */
#endif
    }
    close(fd[1]);
    size_t cap = 1 << 16, len = 0;
    char *buf = (char *)malloc(cap);
    ssize_t got;
    while (buf && (got = read(fd[0], buf + len, cap - len - 1)) > 0) {
        len += (size_t)got;
        if (cap - len < 4096) buf = (char *)realloc(buf, cap *= 2);
    }
    close(fd[0]);
    if (buf) buf[len] = 0;
    int st = 0;
    waitpid(p, &st, 0);
    *err = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void print_first_lines(const char *s, int n) {
    for (; s && *s && n > 0; n--) {
        const char *e = strchr(s, '\n');
        int len = e ? (int)(e - s) : (int)strlen(s);
        printf("#   %.*s\n", len, s);
        s = e ? e + 1 : s + len;
    }
}

int main(int argc, char **argv) {
    int passed = 0, failed = 0;
    for (int i = 0; i < N_CASES; i++) {
        const struct race_case *c = &CASES[i];
        if (c->build && c->build != BUILD) continue;
        if (argc > 1) { /* only the named cases, their stderr in full */
            int want = 0;
            for (int a = 1; a < argc; a++) want |= strstr(c->name, argv[a]) != NULL;
            if (!want) continue;
        }
        char *err = NULL;
        int rc = run_child(c, &err);
        int reported = err && strstr(err, c->report ? c->report : DATA_RACE) != NULL;
        int ok;
        if (c->race_in)
            ok = reported && strstr(err, c->race_in) != NULL;
        else
            ok = rc == 0 && err && !strstr(err, "Sanitizer") && !strstr(err, "runtime error");
        if (ok) {
            printf("ok - " LABEL ": %s%s\n", c->name, c->race_in ? " (reported)" : "");
            passed++;
        } else {
            printf("not ok - " LABEL ": %s: exit %d, %s\n", c->name, rc,
                   c->race_in ? "no report naming the kernel" : "a report or an error");
            print_first_lines(err, argc > 1 ? 400 : 40);
            failed++;
        }
        if (argc > 1 && ok) print_first_lines(err, 400);
        free(err);
    }
    printf("# %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
