/*
 * step_stats.h - one GRPO step's statistics, aggregated one way: every
 * figure is a sum (a token-weighted figure is kept as value x tokens), added
 * up over the step's minibatch updates and episodes on each rank, summed
 * over the ranks in one allreduce, and divided only when the metrics line
 * is written.
 */
#ifndef VIV_RL_STEP_STATS_H
#define VIV_RL_STEP_STATS_H

#include "backend.h"
#include "metrics.h"
#include "rollout.h"
#include "train.h"

#define STEP_MAX_SHAPES 32

enum step_sum {
    SS_EPISODES, SS_SCORED, SS_REWARD, SS_CORRECT, SS_FORMAT, /* episodes; scored = not the sandbox's */
    SS_GEN_TOKENS, SS_RESPONSE_TOKENS,
    SS_GROUPS, SS_SIGNAL_GROUPS,                             /* groups, and those whose rewards differ */
    SS_UPDATES, SS_LOSS, SS_PG_LOSS,                         /* per update: mean over the updates */
    SS_TOKENS, SS_KL, SS_RATIO, SS_CLIP, SS_CLIP_LOW, SS_CLIP_HIGH, SS_ENTROPY, /* x tokens */
    SS_GROUPS_KEPT, SS_GROUPS_DROPPED, SS_SEQS_MASKED,
    SS_SANDBOX_LOST, SS_SANDBOX_RENORMALISED, SS_SANDBOX_DROPPED,
    SS_N
};

struct step_stats {
    double v[SS_N];
    int nshapes;
    const char *shape[STEP_MAX_SHAPES];
    double shape_n[STEP_MAX_SHAPES], shape_reward[STEP_MAX_SHAPES], shape_correct[STEP_MAX_SHAPES];
    float grad_norm, lr; /* the largest gradient norm of the step's updates; the last lr */
    int nonfinite;
};

/* Start a step over the run's task names (the per-shape rows, in order). */
void step_stats_init(struct step_stats *s, const char *const *shapes, int nshapes);
/* One minibatch update's output. */
void step_stats_add_update(struct step_stats *s, const struct grpo_step_out *o);
/* The step's episodes on this rank (groups of G in order; shape_of names each one's task). */
void step_stats_add_episodes(struct step_stats *s, const struct rl_episode *eps, int n, int G,
                             const char *(*shape_of)(void *ctx, int task), void *ctx);
/* Sum every rank's figures (a no-op with one rank). 0, or -1 (b->err). */
int step_stats_allreduce(struct step_stats *s, struct train_backend *b);
/* The means for metrics.jsonl and the progress line: kv[] (at most max) and
 * the per-shape rows; returns the number of kv set. */
int step_stats_kv(const struct step_stats *s, struct rl_kv *kv, int max, struct rl_task_metric *tm, int *ntm);

#endif
