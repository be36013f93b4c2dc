/*
 * bio_env.h - the Biomni turn machine (envs/turn.h) as an rl_env_ops
 * (rl/rollout.h): GRPO's rollouts and `viv train`'s evaluations see the
 * same prompts, observations and reminders as SFT collection and `viv eval`,
 * and are scored by the same graders. reward = correct + format, max 2.
 */
#ifndef VIV_RL_BIO_ENV_H
#define VIV_RL_BIO_ENV_H

#include "../envs/eval1.h"
#include "../envs/graders.h"
#include "rollout.h"

struct bio_env {
    const struct task_set *ts; /* tasks by index (rl_rollout_step's task ids) */
    enum grade_mode mode;      /* GRADE_TRAIN while training, GRADE_EVAL for held-out tables */
};

/* Fill ops for env (which must outlive the rollout). */
void bio_env_init(struct bio_env *env, struct rl_env_ops *ops);

/* The vivd tools the protocol uses, with per-tool deadlines (ms). */
int bio_tool_cfgs(struct rl_tool_cfg *out, int max, long timeout_ms);

#endif
