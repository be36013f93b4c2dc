/*
 * viv.c - the user's command: dispatch to subcommands.
 *
 * Subcommands land here as their issues do; today: run, policy, sandbox, exec.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "../model/tokenizer_cli.h"
#include "../model/cmds.h"
#include "../model/cuda/cmd_cuda.h"
#include "../sandbox/cmds.h"
#include "../envs/cmd_data.h"
#include "../envs/eval1.h"
#include "../envs/mcp.h"
#include "http_cmds.h"
#include "train.h"

#ifndef VIV_VERSION
#define VIV_VERSION "0.1.0"
#endif

struct subcommand {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct subcommand subcommands[] = {
    {"run", cmd_run, "run one job in a fresh jail (no daemon)"},
    {"policy", cmd_policy, "check and print sandbox policies"},
    {"sandbox", cmd_sandbox, "run vivd, the sandbox daemon, in the foreground"},
    {"exec", cmd_exec, "send one request to a running vivd"},
    {"mcp", cmd_mcp, "serve the sandbox's tools to MCP clients over stdio"},
    {"tokenize", cmd_tokenize, "encode, decode, or train a tokenizer"},
    {"gen", cmd_gen, "generate text (or ids) with a Qwen3 model (HF directory)"},
    {"cuda", cmd_cuda, "GPU backend: device info, training and decode benchmarks (bin/viv-cuda)"},
    {"data", cmd_data, "build the biomedical task sets (viv data build)"},
    {"eval", cmd_eval_with_llm, "run agent episodes in the sandbox and score them (Eval1 rules)"},
    {"sft", cmd_sft, "rejection-sampling SFT from a teacher (scripted, or an OpenAI-compatible endpoint)"},
    {"serve", cmd_serve, "serve a checkpoint as an OpenAI-compatible chat-completions endpoint"},
    {"train", cmd_train, "the main job: tokenizer + small Qwen3, SFT, GRPO, held-out tables"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: viv <command> [options]   (viv <command> --help for more)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(f, "  %-8s %s\n", subcommands[i].name, subcommands[i].summary);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("viv %s\n", VIV_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (strcmp(argv[1], subcommands[i].name) == 0) return subcommands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "viv: unknown command '%s' (see viv --help)\n", argv[1]);
    return 2;
}
