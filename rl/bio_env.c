/*
 * bio_env.c - the Biomni turn machine (envs/turn.h) as an rl_env_ops: every
 * decision and every text comes from envs/turn.c, the code SFT collection
 * and `viv eval` run too; this file only converts between the two shapes.
 */
#define _GNU_SOURCE
#include "bio_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../envs/turn.h"

int bio_tool_cfgs(struct rl_tool_cfg *out, int max, long timeout_ms) {
    /* Python keeps its state across turns (a vivd session per episode); R
     * and the others are one-shot calls (a tool not listed runs under its
     * own vivd policy with the default deadline) */
    static const char *const names[] = {"python", "sql", "shell", "r"};
    int n = 0;
    for (int i = 0; i < 4 && n < max; i++)
        out[n++] = (struct rl_tool_cfg){.name = names[i], .timeout_ms = timeout_ms, .session = i == 0};
    return n;
}

static const struct task *task_of(const struct bio_env *env, int task) {
    return task >= 0 && (size_t)task < env->ts->n ? &env->ts->t[task] : NULL;
}

static char *be_prompt(void *ctx, int task) {
    const struct task *t = task_of(ctx, task);
    return t ? turn_prompt_text(t->prompt) : NULL;
}

static char *be_tool_code(void *ctx, int task, const char *tool, const char *code) {
    const struct task *t = task_of(ctx, task);
    return t ? turn_code_to_run(t, tool, code) : NULL;
}

static int be_parse(void *ctx, const char *text, size_t len, struct rl_turn *t) {
    (void)ctx;
    memset(t, 0, sizeof *t);
    struct turn_decision d;
    /* the engine counts parse failures and ends the episode itself: only
     * the message's own kind matters here; the code's inputs come with
     * tool_code (the task is not known here) */
    turn_decide(NULL, text, turn_message_len(text, len), 0, &d);
    switch (d.next) {
    case TURN_ANSWER: t->kind = RL_TURN_SOLUTION, t->answer = d.answer, d.answer = NULL; break;
    case TURN_RUN:
        t->kind = RL_TURN_EXECUTE, t->code = d.code, d.code = NULL;
        snprintf(t->tool, sizeof t->tool, "%s", d.policy);
        break;
    case TURN_CONTINUE: t->kind = RL_TURN_CONTINUE; break;
    case TURN_CORRECT:
    case TURN_GIVE_UP: t->kind = RL_TURN_PARSE_ERROR, t->error = strdup("no usable tags"); break;
    }
    turn_decision_free(&d);
    return 0;
}

static char *be_observation(void *ctx, const struct rl_tool_result *r, size_t *len) {
    (void)ctx;
    struct turn_tool_out o = {
        .answered = r->status == RL_TOOL_OK || r->status == RL_TOOL_TIMEOUT, .out = r->out, .err = r->err,
        .out_len = r->out_len, .err_len = r->err_len, .exit_code = r->exit_code, .signal = r->signal,
        .timed_out = r->status == RL_TOOL_TIMEOUT, .session_lost = r->session_lost, .wall_ms = r->wall_ms,
        .dropped = r->dropped, .error_code = r->error_code, .error_message = r->error_message};
    size_t olen;
    char *obs = turn_observation(&o, r->tool, &olen);
    char *s = turn_glue_bytes(obs, olen, len);
    free(obs);
    return s;
}

static char *be_parse_error(void *ctx, const char *why) {
    (void)ctx, (void)why; /* the protocol's reminder is fixed text */
    return turn_glue_text(proto_correction_text);
}

static char *be_continue(void *ctx) {
    (void)ctx;
    return turn_glue_text(NULL);
}

static int be_score(void *ctx, int task, const struct rl_episode *ep, struct rl_score *out) {
    struct bio_env *env = ctx;
    memset(out, 0, sizeof *out);
    const struct task *t = task_of(env, task);
    if (!t) return -1;
    if (ep->end == RL_END_SOLUTION && ep->answer) out->correct = turn_grade(t, ep->answer, env->mode);
    if (ep->n_turns > 0) {
        const char **msgs = malloc((size_t)ep->n_turns * sizeof *msgs);
        size_t *lens = malloc((size_t)ep->n_turns * sizeof *lens);
        if (!msgs || !lens) {
            free(msgs), free(lens);
            return -1;
        }
        for (int i = 0; i < ep->n_turns; i++)
            msgs[i] = ep->turn_text[i], lens[i] = turn_message_len(ep->turn_text[i], strlen(ep->turn_text[i]));
        out->format = turn_format(msgs, lens, ep->n_turns, ep->end == RL_END_SOLUTION);
        free(msgs), free(lens);
    }
    out->reward = out->correct + out->format;
    return 0;
}

void bio_env_init(struct bio_env *env, struct rl_env_ops *ops) {
    memset(ops, 0, sizeof *ops);
    ops->ctx = env;
    ops->prompt = be_prompt;
    ops->parse_turn = be_parse;
    ops->tool_code = be_tool_code;
    ops->observation = be_observation;
    ops->parse_error = be_parse_error;
    ops->continue_text = be_continue;
    ops->score = be_score;
}
