/*
 * viv.c - the user's command: dispatch to subcommands.
 *
 * Every subcommand parses its flags with sandbox/base/args.h, so all of them err
 * the same way (exit 2) and generate their --help from their flag table.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "../model/tokenizer_cli.h"
#include "../model/cmds.h"
#include "../model/cuda/cmd_cuda.h"
#include "../sandbox/cli/cmds.h"
#include "../envs/cmd_data.h"
#include "../envs/eval1.h"
#include "../envs/mcp.h"
#include "serve/http_cmds.h"
#include "train.h"

#include "../sandbox/base/args.h" /* VIV_VERSION */

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
    fprintf(f, "usage: viv <command> [options]   (viv help <command>, or viv <command> --help, for more)\n"
               "       viv --version\n\ncommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(f, "  %-8s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(f, "\nexit status: 0 done, 2 bad usage, 1 a failure while working, 130 interrupted\n"
               "(docs/exit-codes.md has each command's)\n"
               "\nexamples:\n"
               "  viv run --tool python --code 'print(6*7)'\n"
               "  viv eval --agent oracle --episodes 20\n"
               "  viv train --name my-run\n");
}

static const struct subcommand *find_subcommand(const char *name) {
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (strcmp(name, subcommands[i].name) == 0) return &subcommands[i];
    return NULL;
}

static int unknown_command(const char *name) {
    const char *names[sizeof subcommands / sizeof subcommands[0] + 2];
    size_t n = 0;
    for (; n < sizeof subcommands / sizeof subcommands[0]; n++) names[n] = subcommands[n].name;
    names[n++] = "help", names[n] = NULL;
    const char *near = args_nearest(name, names);
    if (near) fprintf(stderr, "viv: unknown command '%s' (did you mean %s?) (see viv --help)\n", name, near);
    else fprintf(stderr, "viv: unknown command '%s' (see viv --help)\n", name);
    return 2;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || (strcmp(argv[1], "help") == 0 && argc == 2)) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0) { /* viv help CMD: the command's own --help */
        const struct subcommand *sc = find_subcommand(argv[2]);
        if (!sc) return unknown_command(argv[2]);
        char *args[] = {argv[2], "--help", NULL};
        return sc->fn(2, args);
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("viv %s\n", VIV_VERSION);
        return 0;
    }
    const struct subcommand *sc = find_subcommand(argv[1]);
    if (sc) return sc->fn(argc - 1, argv + 1);
    return unknown_command(argv[1]);
}
