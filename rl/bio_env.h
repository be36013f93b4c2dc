/*
 * bio_env.h - the Biomni protocol as an rl_env_ops (rl/rollout.h), and the
 * chat rendering shared by SFT and RL so both see the same token layout.
 *
 * An episode's text, turn by turn (Qwen3's chat template, thinking on):
 *
 *   <|im_start|>system\n{episode_system_prompt}<|im_end|>\n
 *   <|im_start|>user\n{task prompt}<|im_end|>\n
 *   <|im_start|>assistant\n                    <- bio_prompt_text() ends here
 *   {generated: <think>..</think>\n<execute>..</execute>}     (mask 1)
 *   <|im_end|>\n<|im_start|>user\n<observation>..</observation><|im_end|>\n
 *   <|im_start|>assistant\n                    <- bio_glue_text() around a turn
 *   {generated: <think>..</think>\n<solution>..</solution>}   (mask 1)
 *
 * Generation stops at </execute> / </solution> (or <|im_end|>), so the model
 * never has to produce the template glue: the environment appends it with the
 * observation. SFT renders teacher conversations with the same functions.
 *
 * Scoring is envs' code: the Eval1 grader of the task on the <solution> text
 * (graders.h) plus the strict format reward over the assistant messages as
 * generated (protocol.h). reward = correct + format (MISSION.md), max 2.
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

/* System + user turns up to the first assistant turn's start (malloc'd). */
char *bio_prompt_text(const char *task_prompt);
/* Glue between two assistant turns: close the assistant turn, a user turn
 * holding `content` (an observation or the protocol's reminder), open the
 * next assistant turn. content NULL: no user turn (two assistant turns in a
 * row). malloc'd. */
char *bio_glue_text(const char *content);
/* The same for content[0..n) that may hold NUL bytes (a tool's output):
 * kept whole; the glue's length in *len. */
char *bio_glue_bytes(const char *content, size_t n, size_t *len);

/* The vivd tools the protocol uses, with per-tool deadlines (ms). */
int bio_tool_cfgs(struct rl_tool_cfg *out, int max, long timeout_ms);

/* Length of text without a trailing "<|im_end|>" (a turn stopped by EOS). */
size_t bio_strip_eos(const char *text, size_t len);

#endif
