/*
 * prof_tests.cu - checks of kemu's access profile (prof.h, the kemu-prof
 * build): kernels whose sector and bank-conflict counts are known by hand,
 * each run alone and its totals compared exactly.
 *
 *   global  a coalesced float load moves 4 sectors a warp, a stride of 32
 *           floats 32, one float off a 32-byte boundary 5, a broadcast 1;
 *           half the lanes active, a loop whose trip count differs by lane,
 *           a partial last warp, float4 loads as one 16-byte request each;
 *   shared  a column of a 32-wide float tile is a 32-way conflict, of a
 *           33-wide one none, stride 2 two-way, a broadcast none; float4 at
 *           stride 2 is two-way per quarter warp;
 *   wmma    a bf16 tile with rows 32 bytes apart (ldm 16) is a two-way
 *           conflict as ldmatrix, 48 bytes apart (ldm 24) none; an fp32
 *           accumulator stored with ldm 16 is two-way, with ldm 24 none;
 *   report  KEMU_PROF=FILE writes each site with its kernel and source line.
 *
 *   build/test/kemu_prof_tests
 */
#include <mma.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "prof.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace nvcuda;

static int failed, passed;

/* device memory on 256-byte boundaries, as cudaMalloc's (so sectors line up) */
static void *dev_alloc(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 256, n)) abort();
    memset(p, 0, n);
    return p;
}

static int same(const char *name, struct kemu_prof_totals got, struct kemu_prof_totals want) {
    int ok = got.requests == want.requests && got.lanes == want.lanes && got.bytes == want.bytes &&
             got.cost == want.cost && got.ideal == want.ideal;
    if (ok) printf("ok - kemu-prof: %s\n", name), passed++;
    else {
        printf("not ok - kemu-prof: %s: requests %llu lanes %llu bytes %llu cost %llu ideal %llu, want %llu %llu %llu "
               "%llu %llu\n",
               name, (unsigned long long)got.requests, (unsigned long long)got.lanes, (unsigned long long)got.bytes,
               (unsigned long long)got.cost, (unsigned long long)got.ideal, (unsigned long long)want.requests,
               (unsigned long long)want.lanes, (unsigned long long)want.bytes, (unsigned long long)want.cost,
               (unsigned long long)want.ideal);
        failed++;
    }
    return ok;
}

/* ---- global memory ----------------------------------------------------------------------- */
__global__ void copy_kernel(float *out, const float *in, int stride, int offset) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    float local[8]; /* a thread's own array: not counted */
    for (int i = 0; i < 8; i++) local[(t + i) % 8] = (float)i;
    out[t] = in[t * stride + offset] + local[t % 8];
}

__global__ void odd_lanes_kernel(float *out, const float *in) {
    int t = threadIdx.x;
    if (t % 2) out[t] = in[t];
}

/* lanes 0-15 read twice, the others once: two requests, 32 and 16 lanes */
__global__ void uneven_loop_kernel(float *out, const float *in) {
    int lane = threadIdx.x;
    float s = 0;
    for (int j = 0; j < (lane < 16 ? 2 : 1); j++) s += in[j * 32 + lane];
    out[lane] = s;
}

/* iteration m reads floats 32m..32m+31, lane l only where (m + l) % 3 != 0:
 * each iteration one request of its own 4 sectors, whichever lanes skip */
__global__ void guarded_loop_kernel(float *out, const float *in) {
    int lane = threadIdx.x;
    float s = 0;
    for (int m = 0; m < 4; m++) {
        if ((m + lane) % 3 != 0) s += in[m * 32 + lane];
        out[m * 32 + lane] = s;
    }
}

/* ---- shared memory ----------------------------------------------------------------------- */
__global__ void smem_column_kernel(float *out, int stride) {
    __shared__ float s[32 * 33];
    int lane = threadIdx.x;
    for (int i = lane; i < 32 * 33; i += 32) s[i] = (float)i;
    __syncthreads();
    out[lane] = s[lane * stride];
}

__global__ void smem_float4_kernel(float4 *out, int stride) {
    __shared__ float4 s4[64];
    int lane = threadIdx.x;
    for (int i = lane; i < 64; i += 32) s4[i] = make_float4((float)i, 0.f, 0.f, 0.f);
    __syncthreads();
    float4 v = s4[lane * stride];
    out[lane] = v;
}

/* ---- wmma tiles -------------------------------------------------------------------------- */
__global__ void wmma_ldm_kernel(float *out, int ldm_a, int ldm_c) {
    __shared__ __align__(32) __nv_bfloat16 a[16 * 24];
    __shared__ __align__(32) float c[16 * 24];
    for (int i = threadIdx.x; i < 16 * 24; i += 32) a[i] = __float2bfloat16(1.0f);
    __syncwarp();
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
    wmma::fill_fragment(fc, 0.0f);
    wmma::fill_fragment(fb, __float2bfloat16(1.0f));
    wmma::load_matrix_sync(fa, a, ldm_a);
    wmma::mma_sync(fc, fa, fb, fc);
    wmma::store_matrix_sync(c, fc, ldm_c, wmma::mem_row_major);
    __syncwarp();
    out[threadIdx.x] = c[threadIdx.x];
}

static struct kemu_prof_totals T(uint64_t requests, uint64_t lanes, uint64_t bytes, uint64_t cost, uint64_t ideal) {
    return {requests, lanes, bytes, cost, ideal};
}

/* run a launch alone, then its totals for (space, direction) */
#define MEASURE(launch) (kemu_prof_reset(), (launch), 0)
static struct kemu_prof_totals gl(void) { return kemu_prof_get(0, 0); }
static struct kemu_prof_totals gs(void) { return kemu_prof_get(0, 1); }
static struct kemu_prof_totals sl(void) { return kemu_prof_get(1, 0); }

static void copy(float *out, const float *in, int blocks, int threads, int stride, int offset) {
    kemu_prof_reset();
    copy_kernel<<<blocks, threads>>>(out, in, stride, offset);
}

/* The report: a child with KEMU_PROF=FILE runs the strided copy and exits. */
static int report_child(void) {
    float *in = (float *)dev_alloc(64 * 32 * sizeof(float)), *out = (float *)dev_alloc(64 * sizeof(float));
    copy(out, in, 1, 64, 32, 0);
    return 0;
}

static void check_report(void) {
    char path[] = "/tmp/kemu-prof-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) abort();
    close(fd);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("KEMU_PROF", path, 1);
        int err = open("/dev/null", O_WRONLY);
        dup2(err, 2); /* the table it prints */
        execl("/proc/self/exe", "kemu_prof_tests", "--report-child", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    char buf[8192] = {0};
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    unlink(path);
    buf[n] = 0;
    /* the strided load's line: its kernel, this file's line, 64 sectors for 8 */
    const char *load = strstr(buf, "\"space\":\"global\",\"op\":\"load\"");
    const char *line_start = load;
    while (line_start && line_start > buf && line_start[-1] != '\n') line_start--;
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && load &&
             !strncmp(line_start, "{\"kernel\":\"copy_kernel\",\"site\":\"prof_tests.cu:", 46) &&
             strstr(load, "\"requests\":2,\"lanes\":64,\"bytes\":256,\"sectors\":64,\"ideal\":8,\"efficiency\":0.1250");
    if (ok) printf("ok - kemu-prof: KEMU_PROF=FILE names the kernel, the source line and the counts\n"), passed++;
    else printf("not ok - kemu-prof: report: status %d, file: %.600s\n", st, buf), failed++;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--report-child")) return report_child();
    float *in = (float *)dev_alloc(64 * 33 * sizeof(float)), *out = (float *)dev_alloc(256 * sizeof(float));

    copy(out, in, 1, 64, 1, 0);
    same("coalesced float load: 4 sectors a warp", gl(), T(2, 64, 256, 8, 8));
    same("... and its store", gs(), T(2, 64, 256, 8, 8));
    copy(out, in, 1, 64, 32, 0);
    same("a stride of 32 floats: 32 sectors a warp for 4", gl(), T(2, 64, 256, 64, 8));
    copy(out, in, 1, 64, 1, 1);
    same("one float off a 32-byte boundary: 5 sectors a warp", gl(), T(2, 64, 256, 10, 8));
    copy(out, in, 1, 64, 0, 0);
    same("every lane the same float: one sector a warp", gl(), T(2, 64, 8, 2, 2));
    copy(out, in, 3, 64, 1, 0);
    same("3 blocks of 2 warps: 6 requests", gl(), T(6, 192, 768, 24, 24));
    copy(out, in, 1, 40, 1, 0);
    same("40 threads: a full warp and one of 8 lanes", gl(), T(2, 40, 160, 5, 5));

    MEASURE((odd_lanes_kernel<<<1, 64>>>(out, in)));
    same("odd lanes only: 16 lanes span 4 sectors for 2 sectors' data", gl(), T(2, 32, 128, 8, 4));
    MEASURE((uneven_loop_kernel<<<1, 32>>>(out, in)));
    same("trip counts that differ by lane: 32 then 16 lanes", gl(), T(2, 48, 192, 6, 6));

    MEASURE((guarded_loop_kernel<<<1, 32>>>(out, in)));
    /* active lanes per iteration: 21, 22, 21, 21 (of 32) */
    same("a guarded load in a loop: one request an iteration, skipping lanes inactive", gl(),
         T(4, 85, 85 * 4, 16, 3 + 3 + 3 + 3));

    struct {
        int stride;
        struct kemu_prof_totals want;
        const char *name;
    } cols[] = {
        {1, T(1, 32, 128, 1, 1), "shared row of 32 floats: one pass"},
        {32, T(1, 32, 128, 32, 1), "shared column, 32 floats a row: 32-way bank conflict"},
        {33, T(1, 32, 128, 1, 1), "shared column, 33 floats a row: no conflict"},
        {2, T(1, 32, 128, 2, 1), "shared stride 2: two-way conflict"},
        {0, T(1, 32, 4, 1, 1), "shared broadcast: one pass"},
    };
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        MEASURE((smem_column_kernel<<<1, 32>>>(out, cols[i].stride)));
        same(cols[i].name, sl(), cols[i].want);
    }
    float4 *out4 = (float4 *)dev_alloc(32 * sizeof(float4));
    MEASURE((smem_float4_kernel<<<1, 32>>>(out4, 1)));
    same("float4 from shared: one request, four quarter-warp passes", sl(), T(1, 32, 512, 4, 4));
    same("float4 to global: one request, 16 sectors", gs(), T(1, 32, 512, 16, 16));
    MEASURE((smem_float4_kernel<<<1, 32>>>(out4, 2)));
    same("float4 from shared at stride 2: two-way in each quarter warp", sl(), T(1, 32, 512, 8, 4));

    /* wmma: the bf16 tile load as ldmatrix.x4 (one request, 4 phases), then
     * 32 floats read back by the lanes (one more shared request) */
    MEASURE((wmma_ldm_kernel<<<1, 32>>>(out, 16, 24)));
    same("wmma bf16 tile, rows 32 bytes apart: two-way as ldmatrix", sl(), T(2, 64, 512 + 128, 8 + 1, 4 + 1));
    MEASURE((wmma_ldm_kernel<<<1, 32>>>(out, 24, 24)));
    same("wmma bf16 tile, rows 48 bytes apart: no conflict", sl(), T(2, 64, 512 + 128, 4 + 1, 4 + 1));
    same("wmma fp32 accumulator store, rows 96 bytes apart: 4 requests, no conflict", kemu_prof_get(1, 1),
         T(12 + 4, 12 * 32 + 4 * 32, 16 * 24 * 2 + 1024, 12 + 8, 12 + 8));
    MEASURE((wmma_ldm_kernel<<<1, 32>>>(out, 24, 16)));
    same("wmma fp32 accumulator store, rows 64 bytes apart: two-way", kemu_prof_get(1, 1),
         T(12 + 4, 12 * 32 + 4 * 32, 16 * 24 * 2 + 1024, 12 + 16, 12 + 8));

    check_report();
    printf("# %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
