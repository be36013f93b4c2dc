/*
 * rl_fixture.h - the rollout engine over its test doubles (test/doubles/fake_gen.h's
 * scripted generator and byte tokenizer, test/doubles/text_env.h's toy environment),
 * shared by the rl and multihost suites. The caller points cfg at its
 * sandbox (cfg.socket or cfg.pool) after fixture_setup.
 */
#ifndef VIV_TEST_RL_FIXTURE_H
#define VIV_TEST_RL_FIXTURE_H

#include <stdlib.h>
#include <string.h>

#include "doubles/fake_gen.h"
#include "../rl/rollout.h"
#include "doubles/text_env.h"

struct fixture {
    struct fake_gen fg;
    struct rl_generator gen;
    struct rl_tokenizer tok;
    struct text_env te;
    struct rl_env_ops env;
    struct rl_rollout_cfg cfg;
};

static inline void fixture_setup(struct fixture *f, const char *(*script)(void *arg, int episode, int turn),
                                 void *arg, int max_batch, const struct text_task *tasks, int ntasks,
                                 const struct rl_tool_cfg *tools, int ntools) {
    memset(f, 0, sizeof *f);
    f->fg.script = script;
    f->fg.arg = arg;
    f->fg.fail_episode = -1;
    f->fg.step_us = 50;
    fake_gen_init(&f->fg, &f->gen, max_batch);
    byte_tokenizer(&f->tok);
    f->te.tasks = tasks;
    f->te.ntasks = ntasks;
    text_env_init(&f->te, &f->env);
    f->cfg.tools = tools;
    f->cfg.ntools = ntools;
    f->cfg.max_turns = 8;
    f->cfg.max_context = 8192;
    f->cfg.max_turn_tokens = 512;
}

/* An episode's tokens as text (the byte tokenizer: one byte each). malloc'd. */
static inline char *episode_text(const struct rl_episode *e) {
    char *s = malloc((size_t)e->n_tokens + 1);
    for (int i = 0; i < e->n_tokens; i++) s[i] = (char)e->tokens[i];
    s[e->n_tokens] = 0;
    return s;
}

#endif
