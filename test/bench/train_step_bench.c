/*
 * train_step_bench.c - one training step of the default model (2 layers,
 * width 128, 4 query heads over 2 kv heads of 32, ffn 384, vocab 1024) as
 * SFT runs it: a forward and backward pass over 8 sequences of 730 tokens
 * (the mean length of the main job's SFT batches), no optimizer.
 *
 * It prints the median time of a step (7 timed steps after one warm-up)
 * and a checksum of the loss and of every gradient: two builds that print
 * the same checksum computed the same bits, so a faster build can be
 * checked to change no value.
 *
 *   build/bench/train_step_bench [B [T]]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../model/kernels.h"
#include "../../model/qwen3.h"
#include "model_bench.h"

enum { RUNS = 7 };

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 8, T = argc > 2 ? atoi(argv[2]) : 730;
    if (B < 1 || B > 256 || T < 2 || T > 2048) {
        fprintf(stderr, "usage: train_step_bench [B 1..256 [T 2..2048]]\n");
        return 2;
    }
    struct qwen3_config c = bench_default_config();
    char err[256];
    struct qwen3 *m = qwen3_create(&c, err, sizeof err);
    if (!m) return fprintf(stderr, "train_step_bench: %s\n", err), 1;
    qwen3_init_random(m, 7, 0.05f);
    int32_t *ids = malloc((size_t)(B * T + 1) * sizeof *ids);
    uint64_t s = 99;
    for (int i = 0; i <= B * T; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((s >> 33) % (uint64_t)c.vocab_size);
    }
    double t[RUNS];
    uint64_t sum = BENCH_FNV_START;
    for (int r = -1; r < RUNS; r++) {
        double t0 = bench_now_s();
        float loss = qwen3_forward(m, ids, ids + 1, NULL, B, T);
        qwen3_zero_grad(m);
        if (qwen3_backward(m) != 0) return fprintf(stderr, "train_step_bench: backward failed\n"), 1;
        if (r >= 0) t[r] = bench_now_s() - t0;
        else {
            sum = bench_fnv1a(sum, &loss, sizeof loss);
            sum = bench_fnv1a(sum, m->grads, m->n_params * sizeof *m->grads);
        }
    }
    double med = bench_median(t, RUNS);
    printf("train step: B %d x T %d, %d threads (%s): %.1f ms a step, %.0f tokens/s, loss+grads %016llx\n", B, T,
           par_threads(), mm_isa(), med * 1e3, B * T / med, (unsigned long long)sum);
    printf("{\"bench\":\"train_step\",\"B\":%d,\"T\":%d,\"threads\":%d,\"isa\":\"%s\",\"step_ms\":%.2f,"
           "\"tokens_per_s\":%.1f,\"loss_grads_fnv1a\":\"%016llx\"}\n",
           B, T, par_threads(), mm_isa(), med * 1e3, B * T / med, (unsigned long long)sum);
    qwen3_free(m);
    free(ids);
    return 0;
}
