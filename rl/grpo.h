/*
 * grpo.h - the GRPO loss as pure functions over arrays.
 *
 * No model here: the caller runs the forward pass, hands us per-token
 * log-probs (and entropies), and gets back the loss, d(loss)/d(logprob) per
 * token (what the model's backward pass starts from) and d(loss)/d(entropy)
 * per token when an entropy bonus is on.
 *
 * Sequences are flattened: sequence i owns tokens offsets[i] .. offsets[i+1]-1
 * of every per-token array. Sequences come in groups of group_size rollouts
 * of the same prompt (sequence i is in group i / group_size).
 *
 * The math (grpo.c derives each gradient):
 *   advantage      A_i = r_i - mean_g(r)            (std_norm off: Dr.GRPO)
 *                  A_i = (r_i - mean_g(r)) / (std_g(r) + eps)   (std_norm on;
 *                  std is the unbiased sample std, as torch.std computes it)
 *   ratio          rho_t = exp(logp_t - old_logp_t)
 *   policy term    l_t = -min(rho_t A, clip(rho_t, 1-clip_low, 1+clip_high) A)
 *   KL (k3)        k_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1  (>= 0, low variance)
 *   per token      f_t = l_t + kl_coef k_t - entropy_coef H_t
 *   aggregation    token_mean: sum_i sum_t m f / sum_i sum_t m          (DAPO)
 *                  seq_mean:   1/N sum_i (sum_t m f / sum_t m)           (original GRPO)
 *                  dr_grpo:    sum_i sum_t m f / (N * dr_grpo_norm)      (Dr.GRPO)
 *   masks          m_t = mask_t, times 0 for a sequence that is overlong AND
 *                  malformed (mask_overlong_malformed), times 0 for every
 *                  sequence of a group whose rewards are all equal
 *                  (dynamic_sampling: all-correct / all-wrong groups carry
 *                  no signal and would only dilute the normaliser).
 */
#ifndef VIV_RL_GRPO_H
#define VIV_RL_GRPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum grpo_agg { GRPO_AGG_TOKEN_MEAN = 0, GRPO_AGG_SEQ_MEAN, GRPO_AGG_DR_GRPO };

struct grpo_cfg {
    double clip_low, clip_high;  /* 0.2, 0.28 */
    bool std_norm;               /* true; false for Dr.GRPO */
    int agg;                     /* enum grpo_agg */
    double dr_grpo_norm;         /* Dr.GRPO's constant per-sequence normaliser (e.g. the max response tokens) */
    double kl_coef;              /* 0.001 (0: off) */
    double entropy_coef;         /* 0.001 (0: off) */
    bool mask_overlong_malformed;/* true */
    bool dynamic_sampling;       /* false */
    double adv_eps;              /* 1e-6 */
};

void grpo_cfg_default(struct grpo_cfg *c);
/* Parse "token_mean", "seq_mean", "dr_grpo"; -1 if unknown. */
int grpo_agg_parse(const char *s);
const char *grpo_agg_name(int agg);

struct grpo_batch {
    int nseq, group_size;        /* nseq a multiple of group_size */
    const int *offsets;          /* nseq + 1 */
    const uint8_t *mask;         /* per token: 1 where the loss applies (model-generated) */
    const float *logp;           /* per token: current policy */
    const float *old_logp;       /* per token: the policy that sampled (NULL: = logp, on-policy) */
    const float *ref_logp;       /* per token: reference policy (NULL: no KL term) */
    const float *entropy;        /* per token: H of the current policy (NULL: no entropy term) */
    const float *rewards;        /* per sequence */
    const uint8_t *overlong;     /* per sequence (NULL: none) */
    const uint8_t *malformed;    /* per sequence (NULL: none) */
};

struct grpo_out {
    float *dlogp;                /* per token (required): dL/dlogp_t */
    float *dentropy;             /* per token (optional): dL/dH_t */
    float *adv;                  /* per sequence (optional): the advantages used */
    uint8_t *seq_used;           /* per sequence (optional): 1 if it contributes */
};

struct grpo_stats {
    double loss, pg_loss, kl_loss, entropy_loss; /* aggregated terms; loss is their sum */
    double kl_mean, entropy_mean, ratio_mean;    /* plain means over contributing tokens */
    double clip_frac, clip_frac_low, clip_frac_high;
    double adv_mean, adv_std, reward_mean;
    long tokens;                 /* contributing tokens */
    int groups_kept, groups_dropped, seqs_masked;
};

/* Group-normalised advantages: adv[nseq]; group_varies[nseq/group_size] (may
 * be NULL) set to 1 where the group's rewards are not all equal. 0 or -1. */
int grpo_advantages(const struct grpo_cfg *c, const float *rewards, int nseq, int group_size, float *adv,
                    uint8_t *group_varies);

/* Loss, gradients, stats. 0, or -1 with err set on bad input. */
int grpo_loss(const struct grpo_cfg *c, const struct grpo_batch *b, struct grpo_out *out, struct grpo_stats *st,
              char *err, size_t errlen);

#endif
