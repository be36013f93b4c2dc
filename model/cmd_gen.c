/*
 * cmd_gen.c - `viv gen`: generate token ids from a model directory.
 *
 *   viv gen --model DIR --prompt-ids 1,2,3 [--max-tokens N] [--temperature T]
 *           [--top-p P] [--top-k K] [--seed S] [--stop-ids 1,2] [--threads N]
 *           [--device cpu|cuda]
 *
 * Generated ids go to stdout as they come, space-separated, then a newline;
 * the timing line (prompt and generated counts, prefill ms, decode tokens/s)
 * goes to stderr. Generation stops at max tokens or after a stop id (the
 * eos ids of generation_config.json, else config.json's, unless --stop-ids
 * is given). Sampling defaults come from generation_config.json when it has
 * them (do_sample false means greedy), else temperature 1, no top-p/top-k;
 * flags override either.
 *
 * --device cuda runs the model on the GPU (model/cuda); only bin/viv-cuda
 * is built with it (VIV_CUDA), bin/viv answers with a clear error.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/args.h"
#include "../sandbox/base/util.h"
#include "config.h"
#include "cmds.h"
#include "kernels.h"
#include "qwen3.h"
#include "sample.h"
#include "tokenizer.h"
#ifdef VIV_CUDA
#include "cuda/qwen3_cuda.h"
#endif

int parse_id_list(const char *s, int32_t **out) {
    int n = 0, cap = 16;
    int32_t *ids = xmalloc((size_t)cap * sizeof *ids);
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(ids);
            return -1;
        }
        if (n == cap) ids = xrealloc(ids, (size_t)(cap *= 2) * sizeof *ids);
        ids[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (n == 0) {
        free(ids);
        return -1;
    }
    *out = ids;
    return n;
}

/* With --prompt TEXT, generated tokens are printed as text (each token's
 * bytes as they come: a character split across tokens completes on the
 * terminal); with --prompt-ids, as ids. */
static const struct tokenizer *text_out;

static int print_token(int32_t tok, void *user) {
    (void)user;
    size_t len;
    char *bytes = text_out ? tokenizer_decode(text_out, &tok, 1, &len) : NULL;
    if (bytes) fwrite(bytes, 1, len, stdout);
    else printf("%d ", tok);
    free(bytes);
    fflush(stdout);
    return 0;
}

/* Generate from ids and print; the part `--prompt TEXT` will share once the
 * tokenizer lands (encode, then call this). */
int gen_from_ids(const struct qwen3 *m, const int32_t *ids, int n, const struct gen_opts *o) {
    char err[512];
    for (int i = 0; i < n; i++)
        if (ids[i] >= m->cfg.vocab_size) {
            fprintf(stderr, "viv gen: prompt id %d is outside the vocabulary (%d)\n", ids[i], m->cfg.vocab_size);
            return 2;
        }
    struct gen_stats st;
    if (qwen3_generate(m, ids, n, o, print_token, NULL, &st, err, sizeof err)) {
        fprintf(stderr, "\nviv gen: %s\n", err);
        return 1;
    }
    printf("\n");
    fflush(stdout);
    double tps = st.decode_ms > 0 ? (st.generated > 1 ? st.generated - 1 : 0) * 1e3 / st.decode_ms : 0;
    fprintf(stderr, "viv gen: %d prompt tokens (prefill %.0f ms, %.1f tok/s), %d generated, %.2f tokens/s decode, %d threads, %s\n",
            st.prompt_tokens, st.prefill_ms, st.prefill_ms > 0 ? st.prompt_tokens * 1e3 / st.prefill_ms : 0,
            st.generated, tps, par_threads(), mm_isa());
    return 0;
}

#ifdef VIV_CUDA
/* gen_from_ids on the GPU: the weights are copied up, the CPU copy stays. */
static int gen_cuda(const struct qwen3 *m, const int32_t *ids, int n, const struct gen_opts *o) {
    char err[512], dev[256] = "?";
    for (int i = 0; i < n; i++)
        if (ids[i] >= m->cfg.vocab_size) {
            fprintf(stderr, "viv gen: prompt id %d is outside the vocabulary (%d)\n", ids[i], m->cfg.vocab_size);
            return 2;
        }
    struct qwen3_cuda_opts co = {.device = 0};
    struct qwen3_cuda *g = qwen3_cuda_create(m, &co, err, sizeof err);
    if (!g) {
        fprintf(stderr, "viv gen: %s\n", err);
        return 1;
    }
    qwen3_cuda_device_name(0, dev, sizeof dev);
    struct gen_stats st;
    int rc = qwen3_cuda_generate(g, ids, n, o, print_token, NULL, &st, err, sizeof err);
    qwen3_cuda_free(g);
    if (rc) {
        fprintf(stderr, "\nviv gen: %s\n", err);
        return 1;
    }
    printf("\n");
    fflush(stdout);
    double tps = st.decode_ms > 0 ? (st.generated > 1 ? st.generated - 1 : 0) * 1e3 / st.decode_ms : 0;
    fprintf(stderr, "viv gen: %d prompt tokens (prefill %.0f ms), %d generated, %.2f tokens/s decode, %s\n",
            st.prompt_tokens, st.prefill_ms, st.generated, tps, dev);
    return 0;
}
#endif
/* Defaults from DIR/generation_config.json, when present: temperature,
 * top_p, top_k, do_sample, and eos_token_id (an id or a list) as stop ids. */
struct gen_defaults {
    double temperature, top_p, top_k;
    int32_t stops[16];
    int n_stop;
};

static void read_generation_config(const char *dir, struct gen_defaults *d) {
    char *path = xasprintf("%s/generation_config.json", dir), why[256];
    char *text = read_file(path, 1 << 20, NULL, why, sizeof why);
    free(path);
    if (!text) return;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "temperature")) && cJSON_IsNumber(v) && v->valuedouble >= 0)
        d->temperature = v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "top_p")) && cJSON_IsNumber(v) && v->valuedouble > 0 &&
        v->valuedouble <= 1)
        d->top_p = v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "top_k")) && cJSON_IsNumber(v) && v->valuedouble >= 0)
        d->top_k = v->valuedouble;
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "do_sample")) && cJSON_IsFalse(v)) d->temperature = 0;
    v = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    if (cJSON_IsNumber(v) && v->valuedouble >= 0) d->stops[d->n_stop++] = (int32_t)v->valuedouble;
    else if (cJSON_IsArray(v))
        for (const cJSON *e = v->child; e && d->n_stop < 16; e = e->next)
            if (cJSON_IsNumber(e) && e->valuedouble >= 0 && e->valuedouble < 2147483647.0)
                d->stops[d->n_stop++] = (int32_t)e->valuedouble;
    cJSON_Delete(root);
}

/* What `viv gen`'s flags fill in; numbers < 0: not given (generation_config.json's apply). */
static struct {
    const char *model, *prompt_ids, *prompt, *stop_s, *device;
    double max_tokens, temperature, top_p, top_k, seed, threads;
} ga;

/* One line per flag; the help is generated from this table (sandbox/base/args.h). */
static const struct arg_opt gen_opts[] = {
    {"--model", ARG_STR, &ga.model, 0, 0, "DIR", "a Hugging Face Qwen3 directory (config.json + safetensors), a run\n"
                                                 "directory or its checkpoints/ (the latest checkpoint)"},
    {"--prompt", ARG_STR, &ga.prompt, 0, 0, "TEXT", "the prompt (needs the model's tokenizer.json); prints text"},
    {"--prompt-ids", ARG_STR, &ga.prompt_ids, 0, 0, "1,2,3", "the prompt as token ids; prints ids"},
    {"--max-tokens", ARG_DOUBLE, &ga.max_tokens, 0, 1 << 24, "N", "tokens to generate at most (default 64)"},
    {"--temperature", ARG_DOUBLE, &ga.temperature, 0, 100, "T", "sampling temperature (default: generation_config.json, else 1)"},
    {"--top-p", ARG_DOUBLE, &ga.top_p, 0, 1, "P", "nucleus sampling (default: generation_config.json, else off)"},
    {"--top-k", ARG_DOUBLE, &ga.top_k, 0, 1 << 30, "K", "top-k sampling (default: generation_config.json, else off)"},
    {"--seed", ARG_DOUBLE, &ga.seed, 0, 9007199254740992.0, "S", "sampling seed (default 0)"},
    {"--stop-ids", ARG_STR, &ga.stop_s, 0, 0, "1,2", "stop after any of these ids (default: the eos ids)"},
    {"--threads", ARG_DOUBLE, &ga.threads, 1, 256, "N", "CPU threads (default: $VIV_THREADS or all cores)"},
    {"--device", ARG_STR, &ga.device, 0, 0, "cpu|cuda", "where the model runs (cuda: bin/viv-cuda)"},
    {0},
};

static const struct arg_cmd gen_cmd = {
    .prog = "viv gen",
    .synopsis = "viv gen --model DIR (--prompt TEXT | --prompt-ids 1,2,3) [options]",
    .about = "Generates with the model in DIR and prints the text (or ids) as it comes, then the\n"
             "tokens/s on stderr.\n",
    .opts = gen_opts,
    .examples = "  viv gen --model runs/viv-bio-tiny --prompt 'Which gene' --max-tokens 32\n"
                "  viv gen --model Qwen3-0.6B --prompt-ids 151644,872 --temperature 0\n",
};

static int gen_main(const char *model);

int cmd_gen(int argc, char **argv) {
    ga.model = ga.prompt_ids = ga.prompt = ga.stop_s = NULL;
    ga.device = "cpu";
    ga.max_tokens = 64, ga.temperature = -1, ga.top_p = -1, ga.top_k = -1, ga.seed = 0, ga.threads = 0;
    int prc = args_parse(&gen_cmd, argc, argv, NULL);
    if (prc) return prc == ARGS_HELP ? 0 : 2;
    if (!ga.model || !ga.prompt_ids == !ga.prompt) return args_error(&gen_cmd, "--model and one of --prompt or --prompt-ids are required");
    /* the flags first: a bad --device is said before the model is looked for */
    const char *device = ga.device;
    if (strcmp(device, "cpu") && strcmp(device, "cuda")) {
        fprintf(stderr, "viv gen: --device must be cpu or cuda\n");
        return 2;
    }
#ifndef VIV_CUDA
    if (!strcmp(device, "cuda")) {
        fprintf(stderr, "viv gen: --device cuda: this viv was built without CUDA; use bin/viv-cuda "
                        "(./build.sh --cuda, needs nvcc)\n");
        return 2;
    }
#endif
    char rerr[512];
    char *model_dir = qwen3_model_dir_resolve(ga.model, rerr, sizeof rerr);
    if (!model_dir) {
        fprintf(stderr, "viv gen: --model: %s\n", rerr);
        return 2;
    }
    int rc = gen_main(model_dir);
    free(model_dir);
    return rc;
}

/* viv gen with the flags parsed and the model directory found */
static int gen_main(const char *model) {
    const char *prompt_ids = ga.prompt_ids, *prompt = ga.prompt, *stop_s = ga.stop_s;
    double max_tokens = ga.max_tokens, temperature = ga.temperature, top_p = ga.top_p, top_k = ga.top_k, seed = ga.seed,
           threads = ga.threads;
    int32_t *ids = NULL, *stops = NULL;
    int n = 0, n_stop = 0;
    struct tokenizer *tok = NULL;
    if (prompt) {
        char terr[512];
        if (!(tok = tokenizer_load(model, terr, sizeof terr))) {
            fprintf(stderr, "viv gen: --prompt needs the model's tokenizer: %s\n", terr);
            return 1;
        }
        n = tokenizer_encode(tok, prompt, strlen(prompt), &ids);
        if (n <= 0) {
            fprintf(stderr, "viv gen: --prompt: the text encodes to no tokens\n");
            tokenizer_free(tok);
            free(ids);
            return 2;
        }
        text_out = tok;
    } else if ((n = parse_id_list(prompt_ids, &ids)) < 0) {
        fprintf(stderr, "viv gen: --prompt-ids must be a comma-separated list of token ids\n");
        return 2;
    }
    if (stop_s && (n_stop = parse_id_list(stop_s, &stops)) < 0) {
        fprintf(stderr, "viv gen: --stop-ids must be a comma-separated list of token ids\n");
        free(ids);
        return 2;
    }
    if (threads > 0) par_set_threads((int)threads);
    char err[512];
    struct qwen3 *m = qwen3_load(model, err, sizeof err);
    if (!m) {
        fprintf(stderr, "viv gen: %s\n", err);
        free(ids);
        free(stops);
        return 1;
    }
    struct gen_defaults d = {.temperature = 1.0, .top_p = 1.0, .top_k = 0};
    read_generation_config(model, &d);
    if (d.n_stop == 0 && m->cfg.eos_token_id >= 0) d.stops[d.n_stop++] = m->cfg.eos_token_id;
    struct gen_opts o = {.max_tokens = (int)max_tokens,
                         .temperature = (float)(temperature >= 0 ? temperature : d.temperature),
                         .top_p = (float)(top_p >= 0 ? top_p : d.top_p),
                         .top_k = (int)(top_k >= 0 ? top_k : d.top_k),
                         .seed = (uint64_t)seed};
    if (stops) o.stop_ids = stops, o.n_stop = n_stop;
    else o.stop_ids = d.stops, o.n_stop = d.n_stop;
    int rc;
#ifdef VIV_CUDA
    if (!strcmp(ga.device, "cuda")) rc = gen_cuda(m, ids, n, &o);
    else
#endif
        rc = gen_from_ids(m, ids, n, &o);
    qwen3_free(m);
    tokenizer_free(tok);
    free(ids);
    free(stops);
    return rc;
}
