/*
 * train_cli.c - viv train's and viv sft's configuration: the defaults and
 * why, one flag table (the --help is generated from it), the checks across
 * flags, and the run's config.json.
 */
#define _GNU_SOURCE
#include "train_job.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/args.h"
#include "../sandbox/base/util.h"
#include "serve/openai_client.h"

void train_defaults(struct train_cfg *c) {
    *c = (struct train_cfg){
        .data = "data", .runs = "runs", .name = "viv-bio-tiny", .teacher = "scripted", .seed = 1, .device = "cpu",
        .teacher_max_tokens = 1024, .teacher_temperature = 0.7, .teacher_concurrency = 8,
        /* The two multiple-choice shapes (letter answers A-E), 1000 train tasks
         * each in the default data. With the task's inputs given as TASK the
         * code is a template per question kind, and what a model trained
         * from scratch must learn is to pick the template and to carry the
         * letter the code printed into its answer. That copy is learnt
         * suddenly: measured, 350 SFT steps of 8 leave held-out accuracy at
         * chance (0.21), 425 give 0.88, 478 give 0.97, and GRPO cannot find
         * the copy from chance (0.20 after 30 steps at lr 1e-4 or 3e-4). */
        .tasks = "dbqa,seqqa",
        /* held out: all seven shapes, the five the model is not trained on
         * included (it should not be better on them than before; the teacher
         * solves them) */
        .eval_tasks = "all",
        /* both held-out splits: 250 episodes per shape */
        .eval_split = "val,test",
        /* a 2-layer, 128-wide Qwen3 with a 1024-token BPE: ~0.5M parameters,
         * 10-15k tokens/s of training on two cores */
        .vocab = 1024, .d_model = 128, .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 32, .ffn = 384,
        /* Biomni-R0 keeps the best of 8 teacher samples per task; the scripted
         * teacher errs 30% of the time, so 2 samples keep ~95% of 2000 tasks
         * at a quarter of 8's sandbox time */
        .samples = 2, .error_rate = 0.3,
        /* R0's economics: teacher trajectories are the scarce resource, the
         * grader's reward the plentiful one. SFT sees the teacher on 500 of
         * the 2,000 train tasks; GRPO works on the other 1,500 with the
         * grader alone. SFT is the cold start: the model learns the code
         * templates within ~100 steps and then, suddenly and at a step that
         * depends on the seed (~190 to past 490 of the 8 epochs), to carry
         * the printed letter into its answer. SFT ends at the first check
         * (every 10 steps, greedy on 64 train tasks it does not see) where
         * the model solves half of them, or after 8 epochs (batch 8: ~490
         * steps), so every seed hands GRPO a model in the same state.
         * -1: not given (resolved in parse_train_args) */
        .sft_tasks = 500, .sft_epochs = 8, .sft_batch = 8, .sft_lr = 5e-3,
        .sft_check_every = -1, .sft_check_tasks = 64, .sft_until = -1,
        /* GRPO: G = 8 and clip 0.2/0.28 as Biomni-R0; temperature 0.7 (R0: 0.6);
         * two optimizer steps per rollout batch; no KL / entropy terms by
         * default. lr 1e-4: 1e-3 wrecks a model this sharp (format rate 0.09
         * by step 6), 2e-4 over 50 steps lowered held-out accuracy (0.966 ->
         * 0.930) */
        .steps = 40, .tasks_per_step = 8, .group = 8, .ckpt_every = 4, .minibatches = 2, .rl_lr = 1e-4,
        .temperature = 0.7, .top_p = 1.0, .clip_low = 0.2, .clip_high = 0.28, .agg = "token_mean", .std_norm = 1,
        .mask_overlong_malformed = 1, .overlong_buffer = 256,
        /* a message holds the longest solution of the trained shapes: seqqa's
         * translation code is 275 tokens of this tokenizer (256 cut it, and
         * that question kind could not be solved) */
        .max_turns = 4, .max_turn_tokens = 320, .max_context = 2048, .timeout_ms = 10000, .threads = 2,
        .inject_nan_step = -1,
    };
}

static struct train_cfg tc; /* what the flags fill in (parse_train_args copies it out) */

#define I(flag, field, lo, hi, mv, help) {flag, ARG_INT, &tc.field, lo, hi, mv, help}
#define L(flag, field, lo, hi, mv, help) {flag, ARG_LONG, &tc.field, lo, hi, mv, help}
#define D(flag, field, lo, hi, mv, help) {flag, ARG_DOUBLE, &tc.field, lo, hi, mv, help}
#define S(flag, field, mv, help) {flag, ARG_STR, &tc.field, 0, 0, mv, help}
#define F(flag, field, help) {flag, ARG_FLAG, &tc.field, 0, 0, NULL, help}
#define OFF(flag, field, help) {flag, ARG_FLAG_OFF, &tc.field, 0, 0, NULL, help}
/* One line per flag, viv train's and viv sft's alike; --help is generated from it. */
static const struct arg_opt train_opts[] = {
    S("--data", data, "DIR", "task data (default data, built there with `viv data build` if missing;\n"
                             "another DIR must exist: build it with viv data build --out DIR)"),
    S("--name", name, "NAME", "run directory runs/NAME (default viv-bio-tiny; viv sft: viv-sft)"),
    S("--runs", runs, "DIR", "where run directories live (default runs)"),
    F("--resume", resume, "continue runs/NAME from its last checkpoint"),
    F("--overwrite", overwrite, "replace an existing runs/NAME (without it, an existing run is an error)"),
    S("--model", model_dir, "DIR", "start from this HF Qwen3 directory (with its tokenizer.json), a run\n"
                                   "directory or its checkpoints/ (the latest checkpoint)"),
    S("--device", device, "cpu|cuda", "where the model trains and decodes (cuda: bin/viv-cuda; under\n"
                                      "`mpirun -np N bin/viv-cuda train --device cuda` the ranks split each\n"
                                      "step's tasks and SFT batches and average gradients over NCCL)"),
    F("--zero1", bopts.zero1, "(cuda, several ranks) ZeRO-1: each rank keeps 1/N of the masters + moments"),
    F("--recompute", bopts.recompute, "(cuda) keep only layer inputs, recompute the rest in backward"),
    F("--host-snapshot", bopts.host_snapshot, "(cuda) keep the NaN-recovery copy of weights and moments in host memory"),
    F("--no-sft", no_sft, "skip teacher collection and SFT (with --model)"),
    L("--seed", seed, 0, 1e18, "S", "(default 1)"),
    S("--tasks", tasks, "a,b,...|all", "task shapes to use (default dbqa,seqqa: the multiple-choice ones)"),
    S("--eval-tasks", eval_tasks, "a,b,...|all", "task shapes the held-out evaluations cover (default all)"),
    I("--train-limit", train_limit, 1, 10000000, "N", "at most N training tasks (default all)"),
    I("--eval-limit", eval_limit, 1, 10000000, "N", "at most N held-out tasks, shapes taken in turn (default all)"),
    S("--eval-split", eval_split, "S", "held-out tasks to evaluate on: val,test (default) or val"),
    S("--socket", socket, "PATH", "use a running vivd instead of a private one"),
    S("--sandbox", sandbox, "LIST", "running vivds to spread tool calls over, by load: unix:/PATH, /PATH or\n"
                                    "tcp:HOST:PORT, comma-separated (README \"Beyond one machine\")"),
    S("--sandbox-token-file", sandbox_token_file, "F", "token of the tcp: vivds (their --token-file; or $VIV_SANDBOX_TOKEN)"),
    I("--vocab", vocab, 300, 262144, "N", "model: tokenizer vocabulary (default 1024)"),
    I("--d-model", d_model, 8, 8192, "N", "model: width (default 128)"),
    I("--layers", layers, 1, 128, "N", "model: layers (default 2)"),
    I("--heads", heads, 1, 256, "N", "model: attention heads (default 4)"),
    I("--kv-heads", kv_heads, 1, 256, "N", "model: key/value heads (default 2)"),
    I("--head-dim", head_dim, 2, 1024, "N", "model: head width (default 32)"),
    I("--ffn", ffn, 4, 65536, "N", "model: MLP width (default 384)"),
    S("--teacher", teacher, "scripted|URL", "the teacher: scripted (default) or an OpenAI-compatible endpoint"),
    S("--teacher-model", teacher_model, "NAME", "the model an endpoint teacher serves"),
    S("--api-key-env", api_key_env, "VAR", "the endpoint teacher's key variable (default OPENAI_API_KEY)"),
    D("--teacher-temperature", teacher_temperature, 0, 2, "T", "endpoint teacher's temperature (default 0.7)"),
    I("--teacher-max-tokens", teacher_max_tokens, 1, 1000000, "N", "per message of an endpoint teacher (default 1024)"),
    I("--teacher-concurrency", teacher_concurrency, 1, 256, "N", "an endpoint teacher's requests in flight (default 8)"),
    I("--sft-tasks", sft_tasks, 0, 10000000, "N", "teacher trajectories for N train tasks (shapes in turn); GRPO\n"
                                                  "draws from the other tasks only (default 500; 0: all tasks, shared)"),
    I("--samples", samples, 1, 64, "K", "teacher samples per task, best correct kept (default 2)"),
    D("--error-rate", error_rate, 0, 1, "P", "the scripted teacher's mistakes (default 0.3)"),
    I("--sft-epochs", sft_epochs, 0, 1000, "N", "SFT epochs (default 8)"),
    I("--sft-batch", sft_batch, 1, 1024, "N", "SFT batch (default 8)"),
    D("--sft-lr", sft_lr, 0, 1, "LR", "SFT learning rate (default 5e-3)"),
    I("--sft-check-every", sft_check_every, 0, 1000000, "N", "SFT: a check every N steps: greedy episodes on train tasks\n"
                                                            "SFT does not see (default 10 where there are such tasks; 0: none)"),
    I("--sft-check-tasks", sft_check_tasks, 1, 100000, "N", "SFT: the check's tasks (default 64)"),
    D("--sft-until", sft_until, 0, 1, "ACC", "SFT ends at the first check whose accuracy reaches ACC\n"
                                            "(default 0.5; 0: every epoch)"),
    I("--steps", steps, 0, 10000000, "N", "GRPO steps (default 40)"),
    I("--tasks-per-step", tasks_per_step, 1, 4096, "N", "GRPO tasks per step (default 8)"),
    I("--group", group, 1, 1024, "G", "GRPO samples per task (default 8)"),
    I("--minibatches", minibatches, 1, 4096, "N", "optimizer steps per rollout batch; groups split evenly (default 2)"),
    D("--lr", rl_lr, 0, 1, "LR", "GRPO learning rate (default 1e-4)"),
    D("--temperature", temperature, 0, 10, "T", "GRPO sampling temperature (default 0.7)"),
    D("--top-p", top_p, 0.01, 1, "P", "GRPO nucleus sampling (default 1.0)"),
    D("--clip-low", clip_low, 0, 1, "E", "GRPO ratio clip below (default 0.2)"),
    D("--clip-high", clip_high, 0, 10, "E", "GRPO ratio clip above (default 0.28)"),
    S("--agg", agg, "MODE", "loss aggregation: token_mean (default), seq_mean or dr_grpo"),
    OFF("--no-std-norm", std_norm, "do not divide advantages by the group's standard deviation"),
    D("--kl", kl_coef, 0, 100, "C", "KL penalty to the SFT model (default 0: off)"),
    D("--entropy", entropy_coef, 0, 100, "C", "bonus -C * mean policy entropy in the loss (default 0: off)"),
    F("--dynamic-sampling", dynamic_sampling, "groups whose rewards are all equal make way for groups of more\n"
                                              "tasks, up to 2 more rounds per step (DAPO)"),
    OFF("--no-mask-overlong", mask_overlong_malformed, "keep overlong or malformed samples in the loss"),
    I("--overlong-buffer", overlong_buffer, 0, 10000000, "N", "soft overlong punishment: reward falls linearly to -1 over\n"
                                                             "the last N tokens (at most a quarter) of max-turns x max-turn-tokens\n"
                                                             "generated (default 256; 0: off)"),
    I("--ckpt-every", ckpt_every, 1, 10000000, "N", "GRPO steps between checkpoints (default 4)"),
    I("--max-turns", max_turns, 1, 1000, "N", "episodes: assistant messages per episode (default 4)"),
    I("--max-turn-tokens", max_turn_tokens, 8, 1000000, "N", "episodes: tokens per message (default 320)"),
    I("--max-context", max_context, 64, 10000000, "N", "episodes: tokens of a whole episode (default 2048)"),
    L("--timeout-ms", timeout_ms, 1, 3600000, "N", "episodes: per tool call (default 10000, as viv eval)"),
    I("--threads", threads, 1, 256, "N", "CPU threads of the model (default 2)"),
    L("--inject-nan-step", inject_nan_step, 0, 1e18, "S", "(tests) poison the weights before this step's update"),
    {0},
};
#undef I
#undef L
#undef D
#undef S
#undef F
#undef OFF

static const struct arg_cmd train_cmd = {
    .prog = "viv train",
    .synopsis = "viv train [options]      (no options: the whole main job, 8-10 min on 2 cores)",
    .about = "Builds the data if missing (default location only), starts a private vivd, collects\n"
             "scripted-teacher trajectories (rejection sampling), trains a tokenizer and a small Qwen3\n"
             "from scratch, SFT, then GRPO through the rollout engine; evaluates on the held-out val\n"
             "and test splits before SFT, after SFT and after RL. Reward = correctness + format (0-2).\n",
    .opts = train_opts,
    .examples = "  viv train --name my-run\n"
                "  viv train --name my-run --resume\n"
                "  viv train --name small --steps 10 --eval-limit 50 --overwrite\n",
};

static const struct arg_cmd sft_cmd = {
    .prog = "viv sft",
    .synopsis = "viv sft [options]",
    .about = "Rejection sampling from a teacher (K samples per task, best correct kept), then SFT on\n"
             "the assistant tokens. Writes the model + tokenizer to runs/NAME/checkpoints/ (as viv\n"
             "train's SFT). Takes viv train's flags; the GRPO ones have no effect here.\n",
    .opts = train_opts,
    .examples = "  viv sft --name my-sft\n"
                "  viv sft --teacher http://127.0.0.1:8000 --teacher-model qwen3 --samples 4\n"
                "  viv train --model runs/my-sft --no-sft --name my-grpo\n",
};

static int uerr(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int uerr(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "viv %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see viv %s --help)\n", cmd);
    va_end(ap);
    return 2;
}

/* 0: run; ARGS_HELP: help printed (exit 0); ARGS_USAGE: exit 2. c holds the
 * command's defaults on entry. */
int parse_train_args(const char *cmd, int argc, char **argv, struct train_cfg *c) {
    tc = *c;
    int rc = args_parse(c->sft_only ? &sft_cmd : &train_cmd, argc, argv, NULL);
    int data_given = tc.data != c->data; /* the default is a literal, a given value points into argv */
    *c = tc;
    c->data_given = data_given;
    if (rc) return rc;
    if (strcmp(c->eval_split, "val") && strcmp(c->eval_split, "val,test"))
        return uerr(cmd, "--eval-split: '%s' (val or val,test)", c->eval_split);
    if (grpo_agg_parse(c->agg) < 0) return uerr(cmd, "--agg: '%s' (token_mean, seq_mean or dr_grpo)", c->agg);
    if (c->heads % c->kv_heads) return uerr(cmd, "--heads %d is not a multiple of --kv-heads %d", c->heads, c->kv_heads);
    if (strcmp(c->teacher, "scripted") != 0) {
        char *url = oai_completions_url(c->teacher);
        free(url);
        if (!url) return uerr(cmd, "--teacher: '%s' is neither scripted nor an http(s):// URL", c->teacher);
        if (!c->teacher_model) return uerr(cmd, "--teacher %s needs --teacher-model NAME", c->teacher);
    }
    if (c->no_sft && !c->model_dir) return uerr(cmd, "--no-sft needs --model DIR (a model to start from)");
    c->sft_checks_given = c->sft_check_every >= 0 || c->sft_until >= 0;
    if (c->sft_until > 0 && c->sft_check_every == 0) return uerr(cmd, "--sft-until needs the checks (--sft-check-every N > 0)");
    if (c->sft_until < 0) c->sft_until = 0.5;
    if (c->sft_check_every < 0) c->sft_check_every = 10;
    if (c->sft_checks_given && c->sft_check_every > 0 && c->sft_tasks == 0)
        return uerr(cmd, "--sft-check-every / --sft-until check on train tasks SFT does not see: give --sft-tasks N");
    if (!c->sft_checks_given && c->sft_tasks == 0) c->sft_check_every = 0; /* no such tasks: SFT runs every epoch */
    if (strcmp(c->device, "cpu") && strcmp(c->device, "cuda")) return uerr(cmd, "--device must be cpu or cuda, not '%s'", c->device);
    if (strcmp(c->device, "cuda") && (c->bopts.zero1 || c->bopts.recompute || c->bopts.host_snapshot))
        return uerr(cmd, "%s needs --device cuda (bin/viv-cuda)",
                    c->bopts.zero1 ? "--zero1" : c->bopts.recompute ? "--recompute" : "--host-snapshot");
    if (!strcmp(c->device, "cuda") && !train_backend_cuda_built()) {
        fprintf(stderr, "viv %s: --device cuda: this viv was built without CUDA; use bin/viv-cuda "
                        "(./build.sh --cuda, or `make cuda` where nvcc is installed)\n", cmd);
        return 2;
    }
    if (c->sandbox) {
        char why[256];
        bool needs_token;
        if (c->socket) return uerr(cmd, "--socket and --sandbox: give one (--sandbox unix:PATH is --socket PATH)");
        if (viv_pool_check(c->sandbox, &needs_token, why, sizeof why) != 0) return uerr(cmd, "--sandbox: %s", why);
        if (needs_token && !c->sandbox_token_file && !(getenv("VIV_SANDBOX_TOKEN") && *getenv("VIV_SANDBOX_TOKEN")))
            return uerr(cmd, "--sandbox: a tcp: host needs its token: --sandbox-token-file F or VIV_SANDBOX_TOKEN");
    }
    if (strchr(c->name, '/') || !strcmp(c->name, ".") || !strcmp(c->name, "..")) return uerr(cmd, "--name: '%s' is not a plain name", c->name);
    if (c->resume && c->overwrite) return uerr(cmd, "--resume and --overwrite: give one");
    if (c->model_dir) { /* a run directory or its checkpoints/ means its latest checkpoint */
        static char *resolved; /* lives as long as the command */
        char why[512];
        free(resolved);
        if (!(resolved = qwen3_model_dir_resolve(c->model_dir, why, sizeof why))) return uerr(cmd, "--model: %s", why);
        c->model_dir = resolved;
    }
    return 0;
}

char *config_json(const struct train_cfg *c) {
    cJSON *o = cJSON_CreateObject();
#define S(k, v) cJSON_AddStringToObject(o, k, (v) ? (v) : "")
#define N(k, v) cJSON_AddNumberToObject(o, k, (double)(v))
    S("data", c->data), S("eval_split", c->eval_split), S("device", c->device), S("name", c->name), S("model", c->model_dir), S("teacher", c->teacher), S("tasks", c->tasks), S("eval_tasks", c->eval_tasks);
    if (strcmp(c->teacher, "scripted")) S("teacher_model", c->teacher_model), N("teacher_temperature", c->teacher_temperature);
    N("seed", c->seed), N("vocab", c->vocab), N("d_model", c->d_model), N("layers", c->layers), N("heads", c->heads);
    N("kv_heads", c->kv_heads), N("head_dim", c->head_dim), N("ffn", c->ffn), N("samples", c->samples);
    N("error_rate", c->error_rate), N("sft_epochs", c->sft_epochs), N("sft_batch", c->sft_batch), N("sft_lr", c->sft_lr);
    N("sft_check_every", c->sft_check_every), N("sft_check_tasks", c->sft_check_tasks), N("sft_until", c->sft_until);
    N("train_limit", c->train_limit), N("sft_tasks", c->sft_tasks), N("eval_limit", c->eval_limit), N("steps", c->steps);
    N("tasks_per_step", c->tasks_per_step), N("group", c->group), N("minibatches", c->minibatches), N("lr", c->rl_lr), N("temperature", c->temperature);
    N("top_p", c->top_p), N("clip_low", c->clip_low), N("clip_high", c->clip_high), S("agg", c->agg);
    N("std_norm", c->std_norm), N("kl_coef", c->kl_coef), N("entropy_coef", c->entropy_coef);
    N("dynamic_sampling", c->dynamic_sampling), N("mask_overlong_malformed", c->mask_overlong_malformed);
    N("overlong_buffer", c->overlong_buffer);
    N("zero1", c->bopts.zero1), N("recompute", c->bopts.recompute), N("host_snapshot", c->bopts.host_snapshot);
    N("max_turns", c->max_turns), N("max_turn_tokens", c->max_turn_tokens), N("max_context", c->max_context);
    N("timeout_ms", c->timeout_ms), N("threads", c->threads), N("no_sft", c->no_sft);
    cJSON_AddStringToObject(o, "reward", "correctness + format (max 2)");
#undef S
#undef N
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
