/*
 * attn_bench.c - the training attention kernels alone on the GPU: the
 * CUDA-core path (attention.cu, one warp per query row) against the
 * tensor-core path (attention_tc.cu, wmma tiles), forward and backward,
 * on random bf16 q/k/v of one layer's shape.
 *
 *   build/test/attn_bench [B T Hq Hkv hd iters]   (default 4 2048 16 8 128 10:
 *                                                  a Qwen3-0.6B layer at T = 2048)
 *
 * Prints one line per path and one JSON line per path (bench "attn") with
 * milliseconds and achieved TFLOPS, counting causal attention's matmul
 * FLOPs: forward 2 products (QK^T, PV) of 2*hd FLOPs per (query, key <=
 * query, head) pair, backward 5 (QK^T again, dO V^T, dS K, dS^T Q, P^T dO).
 * test/bench/gpu.sh runs it. Without a CUDA device it prints a skip line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../model/cuda/qwen3_cuda.h"

int main(int argc, char **argv) {
    int a[6] = {4, 2048, 16, 8, 128, 10};
    if (argc > 1 && argc != 7) {
        fprintf(stderr, "usage: attn_bench [B T Hq Hkv hd iters]\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        char *end;
        long v = strtol(argv[i], &end, 10);
        if (*end || v < 1 || v > (1 << 20)) {
            fprintf(stderr, "attn_bench: bad number '%s'\n", argv[i]);
            return 2;
        }
        a[i - 1] = (int)v;
    }
    char why[256];
    if (qwen3_cuda_device_count(why, sizeof why) < 1) {
        printf("skip - attention bench: no CUDA device (%s)\n", why);
        return 0;
    }
    int B = a[0], T = a[1], Hq = a[2], Hkv = a[3], hd = a[4], iters = a[5];
    double pairs = (double)B * Hq * T * (T + 1) / 2.0, fwd_flop = 2 * 2.0 * hd * pairs, bwd_flop = 5 * 2.0 * hd * pairs;
    static const char *names[2] = {"warp", "tc"};
    static const int paths[2] = {QWEN3_ATTN_WARP, QWEN3_ATTN_TC};
    int rc = 0;
    for (int p = 0; p < 2; p++) {
        double fms, bms;
        char err[512];
        if (qwen3_cuda_attn_bench(paths[p], B, T, Hq, Hkv, hd, iters, &fms, &bms, err, sizeof err)) {
            fprintf(stderr, "attn_bench %s: %s\n", names[p], err);
            rc = 1;
            continue;
        }
        printf("attention %-4s B=%d T=%d Hq=%d Hkv=%d hd=%d: forward %8.3f ms (%6.1f TFLOPS)  backward %8.3f ms "
               "(%6.1f TFLOPS)\n",
               names[p], B, T, Hq, Hkv, hd, fms, fwd_flop / fms * 1e-9, bms, bwd_flop / bms * 1e-9);
        printf("{\"bench\": \"attn\", \"path\": \"%s\", \"batch\": %d, \"seq\": %d, \"heads\": %d, \"kv_heads\": %d, "
               "\"head_dim\": %d, \"fwd_ms\": %.4f, \"bwd_ms\": %.4f, \"fwd_tflops\": %.2f, \"bwd_tflops\": %.2f}\n",
               names[p], B, T, Hq, Hkv, hd, fms, bms, fwd_flop / fms * 1e-9, bwd_flop / bms * 1e-9);
    }
    return rc;
}
