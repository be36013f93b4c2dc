/*
 * model_tool.c - helper for test/bench/model.sh (not part of viv).
 *
 *   model_tool init  --config FILE --out DIR [--dtype bf16|f32] [--seed N] [--std S]
 *        random Qwen3 checkpoint in HF layout, written by our own saver
 *   model_tool train --config FILE [--B 4] [--T 64] [--steps 10]
 *        forward + backward + AdamW on random tokens; prints one JSON line
 *        with ms/step and tokens/s (the first step is warm-up, not timed)
 *   model_tool decode --model DIR [--slots S] [--prompt P] [--tokens N]
 *        batched greedy decode through the KV cache: S sequences advance
 *        together, one row each per call; prints aggregate tokens/s
 *   model_tool params --config FILE
 *        parameter count of a config
 *   model_tool stream [--mib 1024]
 *        STREAM-like copy and triad over the pool's threads (GB/s counts
 *        bytes read plus bytes written), and a read-only sum
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../model/adamw.h"
#include "../../model/kernels.h"
#include "../../model/qwen3.h"
#include "../../sandbox/base/util.h"

static const char *opt(int argc, char **argv, const char *name, const char *def) {
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name)) return argv[i + 1];
    return def;
}

static int do_init(int argc, char **argv) {
    const char *cfgp = opt(argc, argv, "--config", NULL), *out = opt(argc, argv, "--out", NULL);
    const char *dt = opt(argc, argv, "--dtype", "bf16");
    if (!cfgp || !out) return fprintf(stderr, "init: --config and --out are required\n"), 2;
    char err[512];
    struct qwen3_config c;
    if (qwen3_config_load(cfgp, &c, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
    struct qwen3 *m = qwen3_create(&c, err, sizeof err);
    if (!m) return fprintf(stderr, "%s\n", err), 1;
    qwen3_init_random(m, strtoull(opt(argc, argv, "--seed", "1"), NULL, 10), (float)atof(opt(argc, argv, "--std", "0.02")));
    int rc = qwen3_save(m, out, strcmp(dt, "f32") == 0 ? ST_F32 : ST_BF16, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    else fprintf(stderr, "init: %zu parameters -> %s (%s)\n", m->n_params, out, dt);
    qwen3_free(m);
    return rc ? 1 : 0;
}

static int do_train(int argc, char **argv) {
    const char *cfgp = opt(argc, argv, "--config", NULL);
    int B = atoi(opt(argc, argv, "--B", "4")), T = atoi(opt(argc, argv, "--T", "64"));
    int steps = atoi(opt(argc, argv, "--steps", "10"));
    if (!cfgp || B <= 0 || T <= 0 || steps <= 0) return fprintf(stderr, "train: --config required\n"), 2;
    char err[512];
    struct qwen3_config c;
    if (qwen3_config_load(cfgp, &c, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
    struct qwen3 *m = qwen3_create(&c, err, sizeof err);
    if (!m) return fprintf(stderr, "%s\n", err), 1;
    qwen3_init_random(m, 1, 0.02f);
    int32_t *ids = xmalloc((size_t)(B * T + 1) * sizeof *ids);
    uint64_t s = 7;
    for (int i = 0; i <= B * T; i++) s = s * 6364136223846793005ull + 1, ids[i] = (int32_t)((s >> 33) % (uint64_t)c.vocab_size);
    struct adamw_config ac;
    adamw_defaults(&ac);
    ac.lr = 1e-4f;
    struct adamw o;
    adamw_init(&o, &ac, m->n_params);
    double t_total = 0, first_loss = 0, loss = 0, part[3] = {0, 0, 0};
    for (int st = 0; st <= steps; st++) {
        double t0 = now_ms();
        loss = qwen3_forward(m, ids, ids + 1, NULL, B, T);
        double t1 = now_ms();
        qwen3_zero_grad(m);
        qwen3_backward(m);
        double t2 = now_ms();
        adamw_step(&o, m, NULL);
        double t3 = now_ms(), dt = t3 - t0;
        if (st == 0) first_loss = loss;
        else t_total += dt, part[0] += t1 - t0, part[1] += t2 - t1, part[2] += t3 - t2;
        fprintf(stderr, "step %d: loss %.4f, %.0f ms (forward %.0f, backward %.0f, adamw %.0f)\n", st, loss, dt,
                t1 - t0, t2 - t1, t3 - t2);
    }
    double ms = t_total / steps;
    printf("{\"bench\":\"model_train\",\"params\":%zu,\"B\":%d,\"T\":%d,\"threads\":%d,\"isa\":\"%s\",\"ms_per_step\":%.1f,"
           "\"tokens_per_s\":%.1f,\"forward_ms\":%.1f,\"backward_ms\":%.1f,\"adamw_ms\":%.1f,\"loss_first\":%.4f,"
           "\"loss_last\":%.4f}\n",
           m->n_params, B, T, par_threads(), mm_isa(), ms, B * T * 1e3 / ms, part[0] / steps, part[1] / steps,
           part[2] / steps, first_loss, loss);
    adamw_free(&o);
    free(ids);
    qwen3_free(m);
    return 0;
}

/* Batched greedy decode: S slots, each prefilled with P prompt tokens in
 * one call, then N steps that advance every slot by one token per call. */
static int do_decode(int argc, char **argv) {
    const char *dir = opt(argc, argv, "--model", NULL);
    int S = atoi(opt(argc, argv, "--slots", "1")), P = atoi(opt(argc, argv, "--prompt", "16"));
    int N = atoi(opt(argc, argv, "--tokens", "16"));
    if (!dir || S <= 0 || P <= 0 || N <= 0) return fprintf(stderr, "decode: --model required\n"), 2;
    char err[512];
    struct qwen3 *m = qwen3_load(dir, err, sizeof err);
    if (!m) return fprintf(stderr, "%s\n", err), 1;
    int V = m->cfg.vocab_size;
    struct qwen3_kv *kv = qwen3_kv_create(m, S, P + N + 1, err, sizeof err);
    if (!kv) return fprintf(stderr, "%s\n", err), 1;
    int32_t *tok = xmalloc((size_t)S * P * sizeof *tok);
    int *slot = xmalloc((size_t)S * P * sizeof *slot);
    uint8_t *want = xcalloc((size_t)S * P, 1);
    float *logits = xmalloc((size_t)S * V * sizeof *logits);
    for (int s = 0; s < S; s++)
        for (int i = 0; i < P; i++) {
            tok[s * P + i] = (100 + 7 * s + i) % V;
            slot[s * P + i] = s;
            want[s * P + i] = i == P - 1;
        }
    double t0 = now_ms();
    if (qwen3_kv_forward(m, kv, tok, slot, S * P, want, logits, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
    double prefill = now_ms() - t0;
    t0 = now_ms();
    for (int step = 0; step < N; step++) {
        for (int s = 0; s < S; s++) {
            const float *l = logits + (size_t)s * V;
            int best = 0;
            for (int i = 1; i < V; i++)
                if (l[i] > l[best]) best = i;
            tok[s] = best;
            slot[s] = s;
        }
        if (qwen3_kv_forward(m, kv, tok, slot, S, NULL, logits, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
    }
    double ms = now_ms() - t0;
    printf("{\"bench\":\"model_decode_batch\",\"slots\":%d,\"prompt\":%d,\"steps\":%d,\"threads\":%d,\"prefill_ms\":%.0f,"
           "\"ms_per_step\":%.1f,\"tokens_per_s\":%.2f}\n",
           S, P, N, par_threads(), prefill, ms / N, S * N * 1e3 / ms);
    free(tok), free(slot), free(want), free(logits);
    qwen3_kv_free(kv);
    qwen3_free(m);
    return 0;
}

struct stream_job {
    float *a, *b, *c;
    size_t n;
    int kind; /* 0 copy, 1 triad, 2 read */
    float sink[256];
};

static void stream_worker(void *p, int tid, int nth) {
    struct stream_job *j = p;
    long lo, hi;
    par_range((long)j->n, 1024, tid, nth, &lo, &hi);
    if (j->kind == 0) {
        memcpy(j->a + lo, j->b + lo, (size_t)(hi - lo) * sizeof(float));
    } else if (j->kind == 1) {
        for (long i = lo; i < hi; i++) j->a[i] = j->b[i] + 3.0f * j->c[i];
    } else { /* read only: what decode does to the weights */
        typedef float v8 __attribute__((vector_size(32), aligned(4)));
        v8 acc[4] = {{0}, {0}, {0}, {0}};
        long i = lo;
        for (; i + 32 <= hi; i += 32)
            for (int k = 0; k < 4; k++) acc[k] += *(const v8 *)(j->b + i + 8 * k);
        float sum = 0;
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 8; l++) sum += acc[k][l];
        for (; i < hi; i++) sum += j->b[i];
        j->sink[tid] = sum;
    }
}

static int do_stream(int argc, char **argv) {
    size_t mib = (size_t)atol(opt(argc, argv, "--mib", "1024")), n = mib * (1 << 20) / 4;
    struct stream_job j = {.a = xmalloc(n * 4), .b = xmalloc(n * 4), .c = xmalloc(n * 4), .n = n};
    struct stream_job init = j;
    init.kind = 1;
    memset(j.b, 0, n * 4);
    memset(j.c, 0, n * 4);
    par_run(stream_worker, &init); /* touch every page on the threads that use it */
    double best[3] = {0, 0, 0};
    for (int kind = 0; kind < 3; kind++) {
        j.kind = kind;
        for (int r = 0; r < 5; r++) {
            double t0 = now_ms();
            par_run(stream_worker, &j);
            double s = (now_ms() - t0) / 1e3, bytes = (kind == 0 ? 2.0 : kind == 1 ? 3.0 : 1.0) * n * 4;
            if (bytes / s / 1e9 > best[kind]) best[kind] = bytes / s / 1e9;
        }
    }
    printf("{\"bench\":\"stream\",\"mib\":%zu,\"threads\":%d,\"copy_gb_s\":%.2f,\"triad_gb_s\":%.2f,\"read_gb_s\":%.2f}\n",
           mib, par_threads(), best[0], best[1], best[2]);
    free(j.a), free(j.b), free(j.c);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: model_tool init|train|decode|stream|params [options]\n"), 2;
    if (!strcmp(argv[1], "init")) return do_init(argc - 1, argv + 1);
    if (!strcmp(argv[1], "train")) return do_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "stream")) return do_stream(argc - 1, argv + 1);
    if (!strcmp(argv[1], "decode")) return do_decode(argc - 1, argv + 1);
    if (!strcmp(argv[1], "params")) { /* parameter count of a config, without allocating it */
        struct qwen3_config c;
        char err[512];
        const char *cfgp = opt(argc - 1, argv + 1, "--config", NULL);
        if (!cfgp || qwen3_config_load(cfgp, &c, err, sizeof err)) return fprintf(stderr, "params: %s\n", cfgp ? err : "--config required"), 1;
        size_t D = (size_t)c.hidden_size, hd = (size_t)c.head_dim, V = (size_t)c.vocab_size;
        size_t per = D * (size_t)c.num_heads * hd * 2 + D * (size_t)c.num_kv_heads * hd * 2 + 3 * D * (size_t)c.intermediate_size + 2 * D + 2 * hd;
        printf("%zu\n", V * D * (c.tie_word_embeddings ? 1 : 2) + per * (size_t)c.num_layers + D);
        return 0;
    }
    fprintf(stderr, "model_tool: unknown command %s\n", argv[1]);
    return 2;
}
