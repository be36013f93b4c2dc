/*
 * kv_decode_bench.c - batched decoding with the KV cache, as the held-out
 * evaluations and GRPO's rollouts run it: the default model's shape (2
 * layers, width 128, 4 query heads over 2 kv heads of 32, ffn 384, vocab
 * 1024), 64 slots each holding a context of 300-1,300 positions, then
 * decode steps that feed one token to every slot.
 *
 * It prints the median time of a decode step (7 runs of 32 steps, each run
 * from the same cache contents) and a checksum of every logit the steps
 * produced: two builds that print the same checksum computed the same bits,
 * so a faster build can be checked to change no value.
 *
 *   build/bench/kv_decode_bench [SLOTS [MEAN_CONTEXT]]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../model/kernels.h"
#include "../../model/qwen3.h"
#include "model_bench.h"

enum { RUNS = 7, STEPS = 32 };

int main(int argc, char **argv) {
    int slots = argc > 1 ? atoi(argv[1]) : 64, mean_ctx = argc > 2 ? atoi(argv[2]) : 800;
    if (slots < 1 || slots > 1024 || mean_ctx < 16 || mean_ctx > 1800) {
        fprintf(stderr, "usage: kv_decode_bench [SLOTS 1..1024 [MEAN_CONTEXT 16..1800]]\n");
        return 2;
    }
    struct qwen3_config c = bench_default_config();
    char err[256];
    struct qwen3 *m = qwen3_create(&c, err, sizeof err);
    if (!m) return fprintf(stderr, "kv_decode_bench: %s\n", err), 1;
    qwen3_init_random(m, 7, 0.05f);
    int max_T = 2048;
    struct qwen3_kv *kv = qwen3_kv_create(m, slots, max_T, err, sizeof err);
    if (!kv) return fprintf(stderr, "kv_decode_bench: %s\n", err), 1;
    /* contexts: mean_ctx +- half, one prefill per slot */
    uint64_t rng = 12345;
    int *len = malloc((size_t)slots * sizeof *len);
    int32_t *ids = malloc((size_t)max_T * sizeof *ids);
    int *sl = malloc((size_t)max_T * sizeof *sl);
    float *logits = malloc((size_t)slots * c.vocab_size * sizeof *logits);
    for (int s = 0; s < slots; s++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        len[s] = mean_ctx / 2 + (int)((rng >> 33) % (uint64_t)mean_ctx);
        for (int i = 0; i < len[s]; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((rng >> 33) % (uint64_t)c.vocab_size), sl[i] = s;
        }
        if (qwen3_kv_forward(m, kv, ids, sl, len[s], NULL, NULL, err, sizeof err))
            return fprintf(stderr, "kv_decode_bench: prefill: %s\n", err), 1;
    }
    int32_t *feed = malloc((size_t)slots * sizeof *feed);
    int *fslot = malloc((size_t)slots * sizeof *fslot);
    double t[RUNS];
    uint64_t sum = BENCH_FNV_START;
    for (int r = 0; r < RUNS; r++) {
        for (int s = 0; s < slots; s++) kv->len[s] = len[s]; /* the same cache contents each run */
        double t0 = bench_now_s();
        for (int step = 0; step < STEPS; step++) {
            for (int s = 0; s < slots; s++) feed[s] = (int32_t)((s * 131 + step * 17) % c.vocab_size), fslot[s] = s;
            if (qwen3_kv_forward(m, kv, feed, fslot, slots, NULL, logits, err, sizeof err))
                return fprintf(stderr, "kv_decode_bench: decode: %s\n", err), 1;
            if (r == 0) sum = bench_fnv1a(sum, logits, (size_t)slots * c.vocab_size * sizeof *logits);
        }
        t[r] = (bench_now_s() - t0) / STEPS;
    }
    double med = bench_median(t, RUNS);
    long ctx = 0;
    for (int s = 0; s < slots; s++) ctx += len[s];
    printf("kv decode: %d slots, mean context %ld, %d threads (%s): %.3f ms a step, %.0f tokens/s, logits %016llx\n",
           slots, ctx / slots, par_threads(), mm_isa(), med * 1e3, slots / med,
           (unsigned long long)sum);
    printf("{\"bench\":\"kv_decode\",\"slots\":%d,\"mean_context\":%ld,\"threads\":%d,\"isa\":\"%s\",\"step_ms\":%.4f,"
           "\"tokens_per_s\":%.1f,\"logits_fnv1a\":\"%016llx\"}\n",
           slots, ctx / slots, par_threads(), mm_isa(), med * 1e3, slots / med,
           (unsigned long long)sum);
    qwen3_kv_free(kv);
    qwen3_free(m);
    free(len), free(ids), free(sl), free(logits), free(feed), free(fslot);
    return 0;
}
