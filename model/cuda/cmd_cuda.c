/*
 * cmd_cuda.c - `viv cuda`: the GPU backend from the command line.
 *
 *   viv cuda info                 devices, and whether MPI + NCCL are built in
 *   viv cuda train-bench [opts]   data-parallel training steps on random tokens:
 *                                 loss, tokens/s and MFU per step (run it under
 *                                 mpirun -np N for N GPUs)
 *   viv cuda decode-bench [opts]  batched decode of many sequences with the KV cache
 *   viv cuda logits --model DIR --ids 1,2,3 --out FILE [--device cpu|cuda]
 *                                 raw fp32 logits [n, V] of one sequence (for
 *                                 test/gpu/check_transformers.sh)
 *
 * Model: --model DIR (Hugging Face directory) or --config config.json
 * (random init, std 0.02, --seed). Results: one JSON object per line on
 * stdout (rank 0), and appended to --jsonl FILE if given.
 *
 * bin/viv (static musl, no CUDA) has this subcommand too and answers that
 * it was built without CUDA.
 */
#define _GNU_SOURCE
#include "cmd_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef VIV_CUDA

int cmd_cuda(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "viv cuda: this viv was built without CUDA; use bin/viv-cuda (./build.sh --cuda, needs nvcc)\n");
    return 2;
}

#else

#include <errno.h>
#include <math.h>
#include <time.h>

#include "../../sandbox/base/args.h"
#include "../../sandbox/base/util.h"
#include "../cmds.h"
#include "qwen3_cuda.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct bench_opts {
    const char *model, *config, *jsonl, *save;
    int batch, seq, steps, recompute, zero1, seqs, prompt, gen, ranks, host_snapshot;
    double lr, peak_tflops, gpu_gib;
    unsigned long long seed;
};

static void usage(FILE *f) {
    fprintf(f, "usage: viv cuda info\n"
               "       viv cuda train-bench (--model DIR | --config FILE) [--batch B] [--seq T] [--steps N]\n"
               "                            [--recompute] [--zero1] [--lr X] [--seed S] [--peak-tflops F]\n"
               "                            [--jsonl FILE]  (--zero1: fp32 masters + AdamW moments sharded)\n"
               "                            [--save DIR]   (rank 0 writes the trained model, fp32 safetensors)\n"
               "       viv cuda decode-bench (--model DIR | --config FILE) [--seqs N] [--prompt P] [--gen G]\n"
               "                            [--seed S] [--jsonl FILE]\n"
               "       viv cuda logits --model DIR --ids 1,2,3 --out FILE [--device cpu|cuda]\n"
               "       viv cuda plan (--model DIR | --config FILE) [--batch B] [--seq T] [--recompute]\n"
               "                            [--ranks N] [--zero1] [--host-snapshot] [--gpu-gib G]\n"
               "                            (device memory per GPU, as viv train would use it; no GPU needed)\n"
               "train-bench runs data-parallel over MPI + NCCL when started by mpirun/srun (one rank per GPU).\n");
}

/* The benches' and plan's flags: one table (args.h), each subcommand
 * parsed by it with the subcommand as the program name. */
static struct bench_opts bo;
static double bo_seed;
static const struct arg_opt bench_flags[] = {
    {"--model", ARG_STR, &bo.model, 0, 0, "DIR", "a Hugging Face model directory (or --config)"},
    {"--config", ARG_STR, &bo.config, 0, 0, "FILE", "a config.json: a model of that shape, random weights"},
    {"--batch", ARG_INT, &bo.batch, 1, 1 << 16, "B", "sequences per step (default 4)"},
    {"--seq", ARG_INT, &bo.seq, 2, 1 << 20, "T", "tokens per sequence (default 1024)"},
    {"--steps", ARG_INT, &bo.steps, 1, 1 << 24, "N", "train-bench steps (default 10)"},
    {"--seqs", ARG_INT, &bo.seqs, 1, 1 << 16, "N", "decode-bench concurrent sequences (default 256)"},
    {"--prompt", ARG_INT, &bo.prompt, 1, 1 << 20, "P", "decode-bench prompt tokens (default 128)"},
    {"--gen", ARG_INT, &bo.gen, 1, 1 << 20, "G", "decode-bench generated tokens (default 128)"},
    {"--lr", ARG_DOUBLE, &bo.lr, 0, 1, "X", "train-bench learning rate (default 1e-4)"},
    {"--seed", ARG_DOUBLE, &bo_seed, 0, 9007199254740992.0, "S", "random seed (default 1)"},
    {"--peak-tflops", ARG_DOUBLE, &bo.peak_tflops, 1, 1e6, "F", "the GPU's peak, for MFU"},
    {"--ranks", ARG_INT, &bo.ranks, 1, 1 << 20, "N", "plan: data-parallel ranks (default 1)"},
    {"--gpu-gib", ARG_DOUBLE, &bo.gpu_gib, 0.1, 1e6, "G", "plan: the GPU's memory"},
    {"--recompute", ARG_FLAG, &bo.recompute, 0, 0, NULL, "recompute activations in backward"},
    {"--zero1", ARG_FLAG, &bo.zero1, 0, 0, NULL, "fp32 masters and AdamW moments sharded over ranks"},
    {"--host-snapshot", ARG_FLAG, &bo.host_snapshot, 0, 0, NULL, "plan: GRPO's snapshot kept in host memory"},
    {"--jsonl", ARG_STR, &bo.jsonl, 0, 0, "FILE", "one JSON line per step"},
    {"--save", ARG_STR, &bo.save, 0, 0, "DIR", "train-bench: rank 0 writes the trained model"},
    {0},
};

static int parse(int argc, char **argv, struct bench_opts *o) {
    bo = (struct bench_opts){.batch = 4, .seq = 1024, .steps = 10, .seqs = 256, .prompt = 128, .gen = 128,
                             .lr = 1e-4, .seed = 1, .ranks = 1};
    bo_seed = 1;
    char prog[64];
    snprintf(prog, sizeof prog, "viv cuda %s", argv[1]);
    const struct arg_cmd cmd = {
        .prog = prog,
        .synopsis = "viv cuda train-bench|decode-bench|plan (--model DIR | --config FILE) [options]",
        .about = "train-bench runs data-parallel over MPI + NCCL when started by mpirun/srun (one rank per GPU);\n"
                 "plan prints the device memory per GPU as viv train would use it (no GPU needed).\n",
        .opts = bench_flags,
        .examples = "  viv cuda plan --model Qwen3-0.6B --batch 8 --seq 2048 --recompute\n"
                    "  viv cuda train-bench --config config.json --steps 20 --jsonl bench.jsonl\n"
                    "  viv cuda decode-bench --model Qwen3-0.6B --seqs 256\n",
    };
    int rc = args_parse(&cmd, argc - 1, argv + 1, NULL);
    if (rc) return rc;
    bo.seed = (unsigned long long)bo_seed;
    if (!bo.model == !bo.config) return args_error(&cmd, "give exactly one of --model DIR and --config FILE");
    *o = bo;
    return 0;
}

static struct qwen3 *load_model(const struct bench_opts *o, char *err, size_t errlen) {
    if (o->model) return qwen3_load(o->model, err, errlen);
    struct qwen3_config c;
    if (qwen3_config_load(o->config, &c, err, errlen)) return NULL;
    struct qwen3 *m = qwen3_create(&c, err, errlen);
    if (m) qwen3_init_random(m, o->seed, 0.02f);
    return m;
}

static void emit(const struct bench_opts *o, const char *line) {
    printf("%s\n", line);
    fflush(stdout);
    if (!o->jsonl) return;
    FILE *f = fopen(o->jsonl, "a");
    if (!f) {
        fprintf(stderr, "viv cuda: %s: %s\n", o->jsonl, strerror(errno));
        return;
    }
    fprintf(f, "%s\n", line);
    fclose(f);
}

/* Model FLOPs per trained token: 6 per matmul weight (forward 2, backward 4)
 * plus causal attention, 6 * L * Hq * hd * T (QK^T and PV over T/2 keys on
 * average, times 3 for the backward). The embedding lookup is free. */
static double flops_per_token(const struct qwen3_config *c, int T) {
    double D = c->hidden_size, F = c->intermediate_size, L = c->num_layers, V = c->vocab_size;
    double qd = (double)c->num_heads * c->head_dim, kvd = (double)c->num_kv_heads * c->head_dim;
    double per_layer = D * qd * 2 + D * kvd * 2 + 3 * D * F;
    return 6.0 * (L * per_layer + V * D) + 6.0 * L * qd * T;
}

static double default_peak(const char *dev) {
    if (strstr(dev, "H100") || strstr(dev, "H200") || strstr(dev, "H800") || strstr(dev, "GH200")) return 989.0;
    if (strstr(dev, "A100")) return 312.0;
    return 0;
}

static int train_bench(const struct bench_opts *o, int argc, char **argv) {
    char err[512], dev[256] = "?";
    int rank = 0, world = 1, local = 0;
    if (qwen3_dist_init(&argc, &argv, &rank, &world, &local, err, sizeof err)) {
        fprintf(stderr, "viv cuda: %s\n", err);
        qwen3_dist_finalize();
        return 1;
    }
    struct qwen3 *m = load_model(o, err, sizeof err);
    if (!m) {
        fprintf(stderr, "viv cuda: %s\n", err);
        qwen3_dist_finalize();
        return 1;
    }
    struct qwen3_cuda_opts co = {.device = local, .recompute = o->recompute, .zero1 = o->zero1};
    struct qwen3_cuda *g = qwen3_cuda_create(m, &co, err, sizeof err);
    if (!g) {
        fprintf(stderr, "viv cuda: %s\n", err);
        qwen3_free(m);
        qwen3_dist_finalize();
        return 1;
    }
    qwen3_cuda_device_name(local, dev, sizeof dev);
    struct adamw_config ac;
    adamw_defaults(&ac);
    ac.lr = (float)o->lr;
    int rc = 1, B = o->batch, T = o->seq, V = m->cfg.vocab_size;
    size_t N = (size_t)B * T;
    int32_t *ids = xmalloc((N + 1) * sizeof *ids);
    uint64_t s = o->seed * 1000003ull + (uint64_t)rank; /* each rank its own data */
    double peak = o->peak_tflops > 0 ? o->peak_tflops : default_peak(dev), fpt = flops_per_token(&m->cfg, T);
    if (qwen3_cuda_broadcast_weights(g, m) || qwen3_cuda_adamw_init(g, &ac)) goto out;
    for (int step = 0; step < o->steps; step++) {
        for (size_t i = 0; i <= N; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            ids[i] = (int32_t)(s % (uint64_t)V);
        }
        double t0 = now_s();
        float loss = qwen3_cuda_forward(g, ids, ids + 1, NULL, B, T);
        if (isnan(loss)) goto out;
        qwen3_cuda_zero_grad(g);
        if (qwen3_cuda_backward(g) || qwen3_cuda_allreduce_grads(g)) goto out;
        float lr = 0, norm = qwen3_cuda_adamw_step(g, &lr);
        if (isnan(norm)) goto out;
        double dt = now_s() - t0, tps = (double)N * world / dt;
        double mfu = peak > 0 ? tps * fpt / (peak * 1e12 * world) : 0;
        if (rank == 0) {
            char line[768];
            snprintf(line, sizeof line,
                     "{\"bench\":\"train\",\"step\":%d,\"loss\":%.5f,\"grad_norm\":%.4f,\"lr\":%.3g,\"ms\":%.2f,"
                     "\"tokens_per_s\":%.1f,\"mfu\":%.4f,\"batch\":%d,\"seq\":%d,\"ranks\":%d,\"recompute\":%d,"
                     "\"zero1_shard\":%zu,\"device\":\"%s\",\"params\":%zu}",
                     step, loss, norm, lr, dt * 1e3, tps, mfu, B, T, world, o->recompute,
                     qwen3_cuda_zero1_shard(g, NULL), dev, m->n_params);
            emit(o, line);
        }
    }
    if (o->save) {
        if (qwen3_cuda_to_host(g, m)) goto out; /* every rank: ZeRO-1 gathers the shards */
        if (rank == 0 && qwen3_save(m, o->save, ST_F32, err, sizeof err)) {
            fprintf(stderr, "viv cuda: %s\n", err);
            goto out;
        }
        if (rank == 0) fprintf(stderr, "viv cuda: saved the trained model to %s\n", o->save);
    }
    rc = 0;
out:
    if (rc) fprintf(stderr, "viv cuda: rank %d: %s\n", rank, qwen3_cuda_error(g));
    free(ids);
    qwen3_cuda_free(g);
    qwen3_free(m);
    qwen3_dist_finalize();
    return rc;
}

/* Prefill o->seqs prompts (each its own slot), then o->gen greedy steps with
 * one row per slot per step: the rollout engine's shape. */
static int decode_bench(const struct bench_opts *o) {
    char err[512], dev[256] = "?";
    struct qwen3 *m = load_model(o, err, sizeof err);
    if (!m) {
        fprintf(stderr, "viv cuda: %s\n", err);
        return 1;
    }
    struct qwen3_cuda_opts co = {.device = 0};
    struct qwen3_cuda *g = qwen3_cuda_create(m, &co, err, sizeof err);
    if (!g) {
        fprintf(stderr, "viv cuda: %s\n", err);
        qwen3_free(m);
        return 1;
    }
    qwen3_cuda_device_name(0, dev, sizeof dev);
    int S = o->seqs, P = o->prompt, V = m->cfg.vocab_size, rc = 1;
    struct qwen3_cuda_kv *kv = qwen3_cuda_kv_create(g, S, P + o->gen, err, sizeof err);
    int32_t *tok = xmalloc((size_t)S * P * sizeof *tok);
    int *slot = xmalloc((size_t)S * P * sizeof *slot);
    uint8_t *want = xcalloc((size_t)S * P, 1);
    float *logits = xmalloc((size_t)S * V * sizeof *logits);
    uint64_t s = o->seed | 1;
    double t0, prefill_s, decode_s;
    if (!kv) goto out;
    for (int i = 0; i < S * P; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        tok[i] = (int32_t)(s % (uint64_t)V);
        slot[i] = i / P;
        want[i] = i % P == P - 1;
    }
    t0 = now_s();
    for (int b = 0; b < S; b += 8) { /* 8 prompts per call */
        int n = (S - b < 8 ? S - b : 8) * P;
        if (qwen3_cuda_kv_forward(g, kv, tok + (size_t)b * P, slot + (size_t)b * P, n, want + (size_t)b * P,
                                  logits + (size_t)b * V, err, sizeof err))
            goto out;
    }
    prefill_s = now_s() - t0;
    t0 = now_s();
    for (int k = 0; k < o->gen; k++) {
        for (int i = 0; i < S; i++) { /* greedy */
            const float *l = logits + (size_t)i * V;
            int best = 0;
            for (int j = 1; j < V; j++)
                if (l[j] > l[best]) best = j;
            tok[i] = best;
            slot[i] = i;
        }
        if (k + 1 == o->gen) break;
        if (qwen3_cuda_kv_forward(g, kv, tok, slot, S, NULL, logits, err, sizeof err)) goto out;
    }
    decode_s = now_s() - t0;
    {
        char line[512];
        snprintf(line, sizeof line,
                 "{\"bench\":\"decode\",\"seqs\":%d,\"prompt\":%d,\"gen\":%d,\"prefill_tokens_per_s\":%.1f,"
                 "\"decode_tokens_per_s\":%.1f,\"device\":\"%s\"}",
                 S, P, o->gen, S * (double)P / prefill_s, S * (double)(o->gen - 1) / decode_s, dev);
        emit(o, line);
    }
    rc = 0;
out:
    if (rc) fprintf(stderr, "viv cuda: %s\n", err);
    free(tok);
    free(slot);
    free(want);
    free(logits);
    qwen3_cuda_kv_free(kv);
    qwen3_cuda_free(g);
    qwen3_free(m);
    return rc;
}

/* Logits of one sequence, fp32 little-endian [n, V], written atomically. */
static int logits_cmd(int argc, char **argv) {
    static const char *model, *ids_s, *out, *device;
    model = ids_s = out = NULL, device = "cuda";
    static const struct arg_opt opts[] = {
        {"--model", ARG_STR, &model, 0, 0, "DIR", "the model directory (required)"},
        {"--ids", ARG_STR, &ids_s, 0, 0, "1,2,3", "the token ids (required)"},
        {"--out", ARG_STR, &out, 0, 0, "FILE", "where the logits go, raw fp32 (required)"},
        {"--device", ARG_STR, &device, 0, 0, "cpu|cuda", "where the model runs (default cuda)"},
        {0},
    };
    static const struct arg_cmd cmd = {
        .prog = "viv cuda logits",
        .synopsis = "viv cuda logits --model DIR --ids 1,2,3 --out FILE [--device cpu|cuda]",
        .about = "The logits of one sequence, for comparing the CUDA model with the CPU one.\n",
        .opts = opts,
        .examples = "  viv cuda logits --model Qwen3-0.6B --ids 1,2,3 --out gpu.f32\n"
                    "  viv cuda logits --model Qwen3-0.6B --ids 1,2,3 --out cpu.f32 --device cpu\n",
    };
    int prc = args_parse(&cmd, argc - 1, argv + 1, NULL);
    if (prc) return prc == ARGS_HELP ? 0 : 2;
    if (!model || !ids_s || !out) return args_error(&cmd, "--model, --ids and --out are required");
    if (strcmp(device, "cpu") && strcmp(device, "cuda")) return args_error(&cmd, "--device: '%s' is not cpu or cuda", device);
    int32_t *ids = NULL;
    int n = parse_id_list(ids_s, &ids);
    if (n < 0) return fprintf(stderr, "viv cuda logits: --ids must be a comma-separated list of token ids\n"), 2;
    char err[512];
    struct qwen3 *m = qwen3_load(model, err, sizeof err);
    if (!m) {
        free(ids);
        return fprintf(stderr, "viv cuda logits: %s\n", err), 1;
    }
    int V = m->cfg.vocab_size, rc = 1;
    float *lg = NULL;
    struct qwen3_cuda *g = NULL;
    if (!strcmp(device, "cpu")) {
        if (isnan(qwen3_forward(m, ids, NULL, NULL, 1, n))) {
            fprintf(stderr, "viv cuda logits: bad ids for this model\n");
            goto done;
        }
        lg = qwen3_logits(m);
    } else {
        struct qwen3_cuda_opts co = {.device = 0};
        g = qwen3_cuda_create(m, &co, err, sizeof err);
        if (!g) {
            fprintf(stderr, "viv cuda logits: %s\n", err);
            goto done;
        }
        lg = xmalloc((size_t)n * V * sizeof *lg);
        if (isnan(qwen3_cuda_forward(g, ids, NULL, NULL, 1, n)) || qwen3_cuda_logits(g, lg)) {
            fprintf(stderr, "viv cuda logits: %s\n", qwen3_cuda_error(g));
            goto done;
        }
    }
    if (write_file_atomic(out, lg, (size_t)n * V * sizeof *lg)) {
        fprintf(stderr, "viv cuda logits: %s: %s\n", out, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (g) free(lg);
    qwen3_cuda_free(g);
    qwen3_free(m);
    free(ids);
    return rc;
}

/* viv cuda plan: the device memory of training a config at B x T, per
 * GPU, as qwen3_cuda_plan_memory computes it from the backend's own layout
 * (the test gpu_tests.c memory_plan checks it against real allocations). */
static int plan_cmd(const struct bench_opts *o) {
    char err[512];
    struct qwen3_config c;
    char *path = o->model ? xasprintf("%s/config.json", o->model) : xstrdup(o->config);
    int rc = qwen3_config_load(path, &c, err, sizeof err);
    free(path);
    if (rc) {
        fprintf(stderr, "viv cuda: %s\n", err);
        return 1;
    }
    struct qwen3_cuda_mem m;
    if (qwen3_cuda_plan_memory(&c, o->batch, o->seq, o->recompute, o->ranks, o->zero1, o->host_snapshot ? 2 : 1, &m)) {
        fprintf(stderr, "viv cuda: bad plan arguments\n");
        return 2;
    }
    const double G = 1073741824.0;
    printf("%.3g B parameters, batch %d x %d tokens per GPU, %d rank%s%s%s\n", m.params / 1e9, o->batch, o->seq,
           o->ranks, o->ranks > 1 ? "s" : "", o->zero1 && o->ranks > 1 ? ", ZeRO-1" : "",
           o->recompute ? ", recompute" : "");
    const struct {
        const char *what;
        size_t bytes;
    } rows[] = {{"fp32 master weights", m.weights_f32}, {"bf16 weights", m.weights_bf16},
                {"fp32 gradients", m.grads},             {"AdamW m and v", m.adam},
                {"NaN-recovery snapshot", m.snapshot},   {"activations (one micro-batch)", m.activations},
                {"cuBLASLt workspace + scratch", m.workspace + m.scratch} /* scratch: ZeRO-1 staging too */};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) printf("  %-30s %9.2f GiB\n", rows[i].what, rows[i].bytes / G);
    printf("  %-30s %9.2f GiB\n", "total", m.total / G);
    printf("  %-30s %9.2f GiB  (viv train's KL reference, when --kl > 0 as by default: %.2f GiB in all)\n",
           "+ KL reference", m.reference / G, (m.total + m.reference) / G);
    if (m.snapshot_host) printf("  (plus %.2f GiB of host memory for the NaN-recovery snapshot)\n", m.snapshot_host / G);
    if (m.logit_rows < o->batch * o->seq)
        printf("  (logits held %d rows at a time of %d: backward recomputes lm_head for the others)\n", m.logit_rows,
               o->batch * o->seq);
    printf("  (rollouts' KV cache: %.1f KiB per cached token; CUDA context and NCCL: a few hundred MiB more)\n",
           m.kv_bytes_per_token / 1024.0);
    double cap = o->gpu_gib;
    char name[256] = "";
    if (cap <= 0 && qwen3_cuda_device_count(NULL, 0) > 0 && !qwen3_cuda_device_name(0, name, sizeof name)) {
        const char *gib = strstr(name, " GiB"), *num = gib; /* "NAME, 79.1 GiB, sm_90" */
        while (num && num > name && num[-1] != ' ') num--;
        if (num) cap = atof(num);
    }
    if (cap > 0)
        printf("%s on a %.1f GiB GPU%s%s; with the KL reference %s\n", m.total / G <= cap * 0.95 ? "fits" : "does NOT fit",
               cap, name[0] ? ": " : "", name, (m.total + m.reference) / G <= cap * 0.95 ? "it fits" : "it does NOT (--kl 0)");
    printf("{\"plan\":\"train\",\"params\":%zu,\"batch\":%d,\"seq\":%d,\"ranks\":%d,\"zero1\":%d,\"recompute\":%d,"
           "\"weights_f32\":%zu,\"weights_bf16\":%zu,\"grads\":%zu,\"adam\":%zu,\"snapshot\":%zu,"
           "\"activations\":%zu,\"workspace\":%zu,\"total\":%zu,\"snapshot_host\":%zu,\"reference\":%zu}\n",
           m.params, o->batch, o->seq, o->ranks, o->zero1, o->recompute, m.weights_f32, m.weights_bf16, m.grads, m.adam,
           m.snapshot, m.activations, m.workspace + m.scratch, m.total, m.snapshot_host, m.reference);
    return 0;
}

int cmd_cuda(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "info")) {
        char why[256] = "", name[256];
        int n = qwen3_cuda_device_count(why, sizeof why);
        if (n) printf("CUDA devices: %d\n", n);
        else printf("CUDA devices: 0 (%s)\n", why);
        for (int i = 0; i < n; i++)
            if (!qwen3_cuda_device_name(i, name, sizeof name)) printf("  %d: %s\n", i, name);
        printf("data parallel (MPI + NCCL): %s\n", qwen3_dist_compiled() ? "built in" : "not built in");
        return 0;
    }
    if (!strcmp(argv[1], "logits")) return logits_cmd(argc, argv);
    struct bench_opts o;
    int prc;
    if (!strcmp(argv[1], "train-bench")) {
        if ((prc = parse(argc, argv, &o))) return prc == ARGS_HELP ? 0 : 2;
        return train_bench(&o, argc, argv);
    }
    if (!strcmp(argv[1], "plan")) {
        if ((prc = parse(argc, argv, &o))) return prc == ARGS_HELP ? 0 : 2;
        return plan_cmd(&o);
    }
    if (!strcmp(argv[1], "decode-bench")) {
        if ((prc = parse(argc, argv, &o))) return prc == ARGS_HELP ? 0 : 2;
        return decode_bench(&o);
    }
    static const char *const subs[] = {"info", "logits", "train-bench", "plan", "decode-bench", NULL};
    const char *near = args_nearest(argv[1], subs);
    if (near) fprintf(stderr, "viv cuda: unknown command '%s' (did you mean %s?) (see viv cuda --help)\n", argv[1], near);
    else fprintf(stderr, "viv cuda: unknown command '%s' (see viv cuda --help)\n", argv[1]);
    return 2;
}

#endif
