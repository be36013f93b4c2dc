/*
 * train.h - the trainer: rejection-sampling SFT (rl/sft.c), the GRPO update
 * (rl/grpo_step.c) and the main job (rl/train.c: `viv train`, `viv sft`).
 *
 * The pieces are small functions over plain data so the tests can drive
 * each one alone (test/train/train_tests.c).
 */
#ifndef VIV_RL_TRAIN_H
#define VIV_RL_TRAIN_H

#include <stdint.h>

#include "../envs/agent_provider.h"
#include "../envs/episode.h"
#include "../model/adamw.h"
#include "../model/chat.h"
#include "../model/qwen3.h"
#include "../model/tokenizer.h"
#include "backend.h"
#include "grpo.h"
#include "rollout.h"

/* ---- rejection sampling from the teacher (rl/sft.c) ------------------------ */

/* One kept teacher trajectory, as text turns (tokenised later: the
 * tokenizer is trained on these texts). */
struct sft_traj {
    int task;               /* index into the task set */
    int n;                  /* turns after the prompt */
    enum role *roles;       /* ROLE_ASSISTANT, ROLE_TOOL or ROLE_USER */
    char **texts;
    size_t *lens;           /* texts' lengths (a tool turn may hold NUL bytes);
                               NULL: the texts are C strings */
    double correct, format; /* its scores */
};

struct sft_set {
    struct sft_traj *v;
    int n;
    long sampled;           /* episodes the teacher ran */
    long kept;
    long reruns;            /* teacher episodes run again because the sandbox ended them */
    long lost;              /* still lost to the sandbox after that: neither kept nor counted as failed */
};

struct sft_collect_opts {
    int samples;            /* K per task */
    double error_rate;      /* the scripted teacher's mistake rate */
    uint64_t seed;
    int concurrency;
    int max_turns;
    long timeout_ms;
    agent_fn agent;         /* NULL: the scripted teacher; else this agent (e.g. rl/serve/llm_agent.h's endpoint) */
    void *agent_ctx;
    agent_run_fn run;       /* with agent: runs the episodes instead of run_episodes (may be NULL) */
};

/* K teacher episodes per task through the sandbox pool; per task keep the
 * best one that is correct (highest correct + format; ties: the first).
 * 0, or -1 with err (episodes ended early: their sandbox host failed). */
int sft_collect(const struct task_set *ts, struct viv_pool *pool, const struct sft_collect_opts *o, struct sft_set *out,
                char *err, size_t errlen);
void sft_set_free(struct sft_set *s);

/* The kept trajectories as JSON (malloc'd) and back (data parallel: rank 0
 * collects, the other ranks train on the same set). unpack: 0 or -1 with err. */
char *sft_set_pack(const struct sft_set *s);
int sft_set_unpack(const char *json, struct sft_set *out, char *err, size_t errlen);

/* Render one trajectory in the chat layout of envs/turn.h onto c: mask 1
 * exactly on the assistant messages' tokens. 0 or -1. */
int sft_render(const struct sft_traj *t, const char *task_prompt, const struct tokenizer *tok, struct chat *c);

/* The whole text of a trajectory (for tokenizer training), malloc'd, *len
 * bytes (NULs of its tool turns included). */
char *sft_text(const struct sft_traj *t, const char *task_prompt, size_t *len);

struct sft_opts {
    int epochs, batch, max_len;
    uint64_t seed;
    /* called after every update (may be NULL) */
    void (*on_step)(void *arg, long step, long total, float loss, float lr, double tokens_per_s);
    void *arg;
    /* called after every check_every-th update but the last (may be NULL):
     * 1 ends the training there, 0 goes on, -1 is an error (err set) */
    long check_every;
    int (*check)(void *arg, long step, char *err, size_t errlen);
};

/* Supervised fine-tuning on rendered chats: next-token cross-entropy on the
 * positions whose target has mask 1, batches of `batch` sequences padded to
 * the longest (cut at max_len), shuffled each epoch, one AdamW step of b's
 * optimizer (opt_init first; its schedule should cover
 * ceil(n/batch)*epochs steps) per batch. With several ranks (b->world) each
 * rank takes every world-th sequence of a batch and the gradients are
 * averaged (the same update as one rank on the whole batch). Returns the
 * last epoch's mean loss (of the epoch's steps so far when a check ends
 * it early), or NAN with err. */
float sft_train(struct train_backend *b, const struct chat *ex, int n, const struct sft_opts *o, char *err,
                size_t errlen);

/* Targets / weights for next-token prediction from a chat: targets[t] =
 * ids[t+1] where mask[t+1] == 1, else -1 (so only assistant tokens are
 * learned); the last position has no target. */
void sft_targets(const struct chat *c, int T, int32_t *ids, int32_t *targets);

/* ---- the GRPO update (rl/grpo_step.c) --------------------------------------- */

struct grpo_step_out {
    struct grpo_stats st;   /* aggregated over the groups */
    double entropy;         /* mean policy entropy on trained tokens */
    float grad_norm, lr;
    int nonfinite;          /* 1: NaN/inf met; the update was skipped */
    /* episodes the sandbox decided (infra_error), left out of the update */
    int sandbox_lost;           /* such episodes */
    int groups_renormalised;    /* groups that lost some and were kept over their survivors */
    int groups_sandbox_dropped; /* groups left with fewer than two survivors: dropped whole */
};

/* One GRPO update from finished episodes (groups of group_size in order):
 * per group a forward pass, grpo_loss on the real log-probs against the
 * sampling ones, backward of sum(dL/dlogp * logp), then one AdamW step of
 * b's optimizer. Token-mean normalisation is over the whole batch (each
 * group's coefficients are rescaled by its share of the contributing
 * tokens). With ref != NULL and kl_coef > 0 the low-variance KL to ref is
 * added. Does not step when a loss or gradient is not finite
 * (out->nonfinite).
 * Data parallel (b->world > 1): each rank passes its own groups (possibly
 * none); the normaliser is the token / sequence count of all ranks and the
 * gradients are averaged before the one step, so it is the update of the
 * whole batch. out's statistics are this rank's groups'. 0, or -1 with err.
 *
 * Episodes the sandbox decided (infra_error: a host lost or unreachable, a
 * call refused or lost by vivd; envs/outcome.h decides) never enter the
 * update: a group that lost some is kept over its survivors (its mean, std
 * and advantages are theirs; the normalisers count only them), a group left
 * with fewer than two is dropped whole (one rollout has nothing to be
 * compared with). The update is exactly the one of the survivors alone. */
int grpo_update(struct train_backend *b, struct train_backend *ref, const struct grpo_cfg *gc,
                struct rl_episode *eps, int nseq, int group_size, struct grpo_step_out *out, char *err,
                size_t errlen);

/* The same over groups of any size: group g is eps[start[g] .. start[g+1]),
 * none empty, every episode taken as it is (infra_error is not looked at).
 * grpo_update runs this on the survivors. */
int grpo_update_groups(struct train_backend *b, struct train_backend *ref, const struct grpo_cfg *gc,
                       struct rl_episode *eps, const int *start, int ngroups, struct grpo_step_out *out, char *err,
                       size_t errlen);

/* ---- commands ----------------------------------------------------------------- */
int cmd_train(int argc, char **argv);
int cmd_sft(int argc, char **argv);

#endif
