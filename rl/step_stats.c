/*
 * step_stats.c - one GRPO step's statistics as sums (see step_stats.h).
 */
#include "step_stats.h"

#include <string.h>

void step_stats_init(struct step_stats *s, const char *const *shapes, int nshapes) {
    memset(s, 0, sizeof *s);
    s->nshapes = nshapes < STEP_MAX_SHAPES ? nshapes : STEP_MAX_SHAPES;
    for (int i = 0; i < s->nshapes; i++) s->shape[i] = shapes[i];
}

void step_stats_add_update(struct step_stats *s, const struct grpo_step_out *o) {
    double tok = (double)o->st.tokens;
    s->v[SS_UPDATES] += 1, s->v[SS_LOSS] += o->st.loss, s->v[SS_PG_LOSS] += o->st.pg_loss;
    s->v[SS_TOKENS] += tok;
    s->v[SS_KL] += o->st.kl_mean * tok, s->v[SS_RATIO] += o->st.ratio_mean * tok;
    s->v[SS_CLIP] += o->st.clip_frac * tok, s->v[SS_CLIP_LOW] += o->st.clip_frac_low * tok;
    s->v[SS_CLIP_HIGH] += o->st.clip_frac_high * tok, s->v[SS_ENTROPY] += o->entropy * tok;
    s->v[SS_GROUPS_KEPT] += o->st.groups_kept, s->v[SS_GROUPS_DROPPED] += o->st.groups_dropped;
    s->v[SS_SEQS_MASKED] += o->st.seqs_masked;
    s->v[SS_SANDBOX_LOST] += o->sandbox_lost, s->v[SS_SANDBOX_RENORMALISED] += o->groups_renormalised;
    s->v[SS_SANDBOX_DROPPED] += o->groups_sandbox_dropped;
    if (o->grad_norm > s->grad_norm) s->grad_norm = o->grad_norm;
    s->lr = o->lr;
    s->nonfinite |= o->nonfinite;
}

void step_stats_add_episodes(struct step_stats *s, const struct rl_episode *eps, int n, int G,
                             const char *(*shape_of)(void *ctx, int task), void *ctx) {
    for (int i = 0; i < n; i++) {
        const struct rl_episode *e = &eps[i];
        for (int t = 0; t < e->n_tokens; t++) s->v[SS_GEN_TOKENS] += e->mask[t];
        s->v[SS_RESPONSE_TOKENS] += e->n_tokens - e->prompt_tokens;
        s->v[SS_EPISODES] += 1;
        if (e->infra_error) continue; /* the sandbox's outcome: no reward, no accuracy */
        s->v[SS_SCORED] += 1, s->v[SS_REWARD] += e->score.reward, s->v[SS_CORRECT] += e->score.correct;
        s->v[SS_FORMAT] += e->score.format;
        const char *nm = shape_of(ctx, e->task);
        for (int k = 0; k < s->nshapes; k++)
            if (nm && !strcmp(s->shape[k], nm)) {
                s->shape_n[k] += 1, s->shape_reward[k] += e->score.reward, s->shape_correct[k] += e->score.correct;
                break;
            }
    }
    /* groups whose rewards differ: the only ones with a gradient (GRPO's
     * advantage is 0 in a group of equal rewards) */
    for (int g = 0; G > 0 && g + G <= n; g += G) {
        int varies = 0;
        for (int i = 1; i < G; i++) varies |= eps[g + i].score.reward != eps[g].score.reward;
        s->v[SS_GROUPS] += 1, s->v[SS_SIGNAL_GROUPS] += varies;
    }
}

int step_stats_allreduce(struct step_stats *s, struct train_backend *b) {
    if (b->world <= 1) return 0;
    enum { M = SS_N + 3 * STEP_MAX_SHAPES };
    double v[M];
    memcpy(v, s->v, sizeof s->v);
    for (int k = 0; k < s->nshapes; k++)
        v[SS_N + 3 * k] = s->shape_n[k], v[SS_N + 3 * k + 1] = s->shape_reward[k], v[SS_N + 3 * k + 2] = s->shape_correct[k];
    if (b->ops->allreduce_sum(b, v, SS_N + 3 * s->nshapes) != 0) return -1;
    memcpy(s->v, v, sizeof s->v);
    for (int k = 0; k < s->nshapes; k++)
        s->shape_n[k] = v[SS_N + 3 * k], s->shape_reward[k] = v[SS_N + 3 * k + 1], s->shape_correct[k] = v[SS_N + 3 * k + 2];
    return 0;
}

static double per(double a, double b) { return b > 0 ? a / b : 0; }

int step_stats_kv(const struct step_stats *s, struct rl_kv *kv, int max, struct rl_task_metric *tm, int *ntm) {
    int n = 0;
#define KV(k, x) (n < max ? (void)(kv[n++] = (struct rl_kv){k, (double)(x)}) : (void)0)
    const double *v = s->v;
    KV("reward", per(v[SS_REWARD], v[SS_SCORED]));
    KV("accuracy", per(v[SS_CORRECT], v[SS_SCORED]));
    KV("format_rate", per(v[SS_FORMAT], v[SS_SCORED]));
    /* episodes the sandbox decided: left out of the means above and of the
     * update; their groups kept over the survivors, or dropped under two */
    KV("sandbox_lost", v[SS_EPISODES] - v[SS_SCORED]);
    KV("sandbox_groups_renormalised", v[SS_SANDBOX_RENORMALISED]);
    KV("sandbox_groups_dropped", v[SS_SANDBOX_DROPPED]);
    KV("loss", per(v[SS_LOSS], v[SS_UPDATES])), KV("pg_loss", per(v[SS_PG_LOSS], v[SS_UPDATES]));
    KV("kl", per(v[SS_KL], v[SS_TOKENS])), KV("entropy", per(v[SS_ENTROPY], v[SS_TOKENS]));
    KV("clip_frac", per(v[SS_CLIP], v[SS_TOKENS])), KV("clip_frac_low", per(v[SS_CLIP_LOW], v[SS_TOKENS]));
    KV("clip_frac_high", per(v[SS_CLIP_HIGH], v[SS_TOKENS])), KV("ratio_mean", per(v[SS_RATIO], v[SS_TOKENS]));
    KV("grad_norm", s->grad_norm), KV("lr", s->lr);
    KV("tokens", v[SS_TOKENS]), KV("gen_tokens", v[SS_GEN_TOKENS]), KV("response_tokens", v[SS_RESPONSE_TOKENS]);
    KV("signal_frac", per(v[SS_SIGNAL_GROUPS], v[SS_GROUPS]));
    KV("groups_kept", v[SS_GROUPS_KEPT]), KV("groups_dropped", v[SS_GROUPS_DROPPED]);
    KV("seqs_masked", v[SS_SEQS_MASKED]), KV("episodes", v[SS_EPISODES]);
#undef KV
    *ntm = 0;
    for (int k = 0; k < s->nshapes; k++)
        if (s->shape_n[k] > 0)
            tm[(*ntm)++] = (struct rl_task_metric){s->shape[k], s->shape_reward[k] / s->shape_n[k],
                                                   s->shape_correct[k] / s->shape_n[k], (int)s->shape_n[k]};
    return n;
}
