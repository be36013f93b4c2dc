/*
 * grpo_step.c - one GRPO update of the model from scored episodes (see
 * train.h). rl/grpo.c has the loss math; this file runs the model around it.
 *
 * Per group (group_size sequences, padded to the longest):
 *   forward with targets = the next token, giving logp_t for every position
 *   grpo_loss(logp, old_logp = the sampling log-probs, rewards, masks) -> dL/dlogp_t
 *   backward of sum_t (dL/dlogp_t * w_g) * logp_t, accumulated over groups;
 *   with an entropy bonus (entropy_coef > 0) also of sum_t (dL/dH_t * w_g) * H_t,
 *   H_t the policy's entropy at t (grpo_loss gives dL/dH_t = -entropy_coef w_t)
 * then one AdamW step. Groups are processed one at a time so a batch of any
 * size fits in memory; advantages are per group anyway. grpo_loss normalises
 * by its own (the group's) token count, so w_g rescales: for token_mean
 * w_g = tokens_g / tokens_total, for seq_mean and dr_grpo w_g = G / nseq.
 * That makes the accumulated gradient the gradient of the whole batch's loss.
 *
 * Episodes the sandbox decided (infra_error) are not the model's outcomes:
 * a dead host's "fake zeros" in a group would bias its mean and std and so
 * every advantage in it. They are left out before anything is computed: a
 * group keeps its survivors and is normalised over them (G above becomes
 * the survivors' count, in the group statistics and in w_g), a group with
 * fewer than two left is dropped (no one to compare with), and the step
 * goes on with the rest (never aborted for them). Re-running lost episodes
 * would cost the step's wall time for every lost host; the engine's
 * oversampling (min_groups) is the way to buy spare groups instead.
 *
 * The model is reached through rl/backend.h (CPU or GPU). Data parallel:
 * tokens_total and nseq are summed over the ranks first, every rank scales
 * its coefficients by the world size, and reduce_grads averages, so the
 * sum over all ranks' groups is the whole batch's gradient again. Whether
 * to step (no tokens anywhere, a non-finite loss on any rank, non-finite
 * averaged gradients) is decided on numbers every rank shares, so all
 * ranks take the same step or none.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"
#include "train.h"

/* Flattened per-token arrays of one group, positions t = 0 .. n-2 of each
 * sequence predicting token t+1. */
struct flat {
    int *offsets;
    uint8_t *mask, *overlong, *malformed;
    float *logp, *old_logp, *ref_logp, *rewards, *dlogp, *entropy, *dentropy;
};

static void flat_alloc(struct flat *f, int G, long ntok) {
    f->offsets = xcalloc((size_t)G + 1, sizeof *f->offsets);
    f->mask = xcalloc((size_t)ntok + 1, 1);
    f->overlong = xcalloc((size_t)G, 1), f->malformed = xcalloc((size_t)G, 1);
    f->logp = xcalloc((size_t)ntok + 1, sizeof(float)), f->old_logp = xcalloc((size_t)ntok + 1, sizeof(float));
    f->ref_logp = xcalloc((size_t)ntok + 1, sizeof(float)), f->dlogp = xcalloc((size_t)ntok + 1, sizeof(float));
    f->rewards = xcalloc((size_t)G, sizeof(float));
    f->entropy = xcalloc((size_t)ntok + 1, sizeof(float)), f->dentropy = xcalloc((size_t)ntok + 1, sizeof(float));
}

static void flat_free(struct flat *f) {
    free(f->offsets), free(f->mask), free(f->overlong), free(f->malformed), free(f->logp), free(f->old_logp);
    free(f->ref_logp), free(f->dlogp), free(f->rewards), free(f->entropy), free(f->dentropy);
}

/* Fill the group's arrays from its episodes; logp from `lp` ([G*T] model
 * log-probs at each position) or, when NULL, the sampling log-probs. */
static void flat_fill(struct flat *f, const struct rl_episode *e, int G, int T, const float *lp, const float *ref_lp,
                      const float *ent) {
    int k = 0;
    for (int i = 0; i < G; i++) {
        f->offsets[i] = k;
        for (int t = 0; t + 1 < e[i].n_tokens && t < T; t++, k++) {
            f->mask[k] = e[i].mask[t + 1];
            f->old_logp[k] = e[i].logprobs[t + 1];
            f->logp[k] = lp ? lp[(size_t)i * T + t] : f->old_logp[k];
            f->ref_logp[k] = ref_lp ? ref_lp[(size_t)i * T + t] : 0;
            f->entropy[k] = ent ? ent[(size_t)i * T + t] : 0;
        }
        f->rewards[i] = (float)e[i].score.reward;
        f->overlong[i] = e[i].overlong;
        f->malformed[i] = e[i].score.format < 0.5;
    }
    f->offsets[G] = k;
}

static int group_T(const struct rl_episode *e, int G) {
    int T = 2;
    for (int i = 0; i < G; i++) T = e[i].n_tokens > T ? e[i].n_tokens : T;
    return T;
}

int grpo_update_groups(struct train_backend *bk, struct train_backend *ref, const struct grpo_cfg *gc,
                       struct rl_episode *eps, const int *start, int ngroups, struct grpo_step_out *out, char *err,
                       size_t errlen) {
    memset(out, 0, sizeof *out);
    int nseq = ngroups > 0 ? start[ngroups] - start[0] : 0;
    for (int g = 0; g < ngroups; g++)
        if (start[g + 1] - start[g] < 1) return snprintf(err, errlen, "grpo: group %d is empty", g), -1;
    bool use_ref = ref && gc->kl_coef > 0, use_ent = gc->entropy_coef > 0;
    /* pass 1: contributing tokens per group (masks, dynamic sampling), no model */
    long *tok_g = xcalloc((size_t)ngroups + 1, sizeof *tok_g), tok_local = 0;
    for (int g = 0; g < ngroups; g++) {
        struct rl_episode *e = eps + start[g];
        int G = start[g + 1] - start[g], T = group_T(e, G);
        struct flat f;
        flat_alloc(&f, G, (long)G * T);
        flat_fill(&f, e, G, T, NULL, NULL, NULL);
        struct grpo_batch b = {.nseq = G, .group_size = G, .offsets = f.offsets, .mask = f.mask, .logp = f.logp,
                               .rewards = f.rewards, .overlong = f.overlong, .malformed = f.malformed};
        struct grpo_out go = {.dlogp = f.dlogp};
        struct grpo_stats st;
        if (grpo_loss(gc, &b, &go, &st, err, errlen) != 0) {
            flat_free(&f), free(tok_g);
            return -1;
        }
        tok_g[g] = st.tokens, tok_local += st.tokens;
        flat_free(&f);
    }
    /* the normalisers of the whole batch, over every rank */
    double tot[2] = {(double)tok_local, (double)nseq};
    if (bk->ops->allreduce_sum(bk, tot, 2) != 0) {
        free(tok_g);
        return snprintf(err, errlen, "grpo: %s", bk->err), -1;
    }
    double tok_total = tot[0], nseq_total = tot[1], scale = bk->world;
    bk->ops->zero_grad(bk);
    double w_sum = 0, ent_sum = 0;
    long ent_n = 0;
    int bad = 0; /* 1: a loss was not finite, 2: an error */
    for (int g = 0; g < ngroups && !bad; g++) {
        struct rl_episode *e = eps + start[g];
        int G = start[g + 1] - start[g];
        if (tok_g[g] == 0) { /* nothing to learn from this group (all rewards equal + dynamic sampling, or masked) */
            out->st.groups_dropped++;
            continue;
        }
        /* equal rewards and no KL term: every advantage is 0, so is the gradient:
         * skip the forward and backward (its tokens still count in the normaliser);
         * not so with an entropy bonus, whose gradient needs no advantage */
        int same = 1;
        for (int i = 1; i < G; i++) same &= e[i].score.reward == e[0].score.reward;
        if (same && !use_ref && !use_ent) {
            out->st.tokens += tok_g[g];
            continue;
        }
        int T = group_T(e, G);
        size_t BT = (size_t)G * T;
        int32_t *ids = xcalloc(BT, sizeof *ids), *tg = xcalloc(BT, sizeof *tg);
        for (int i = 0; i < G; i++)
            for (int t = 0; t < T; t++) {
                ids[(size_t)i * T + t] = t < e[i].n_tokens ? e[i].tokens[t] : 0;
                tg[(size_t)i * T + t] = t + 1 < e[i].n_tokens && e[i].mask[t + 1] ? e[i].tokens[t + 1] : -1;
            }
        float *ref_lp = NULL, *lp = xcalloc(BT, sizeof *lp);
        if (use_ref) {
            ref_lp = xcalloc(BT, sizeof *ref_lp);
            if (isnan(ref->ops->forward(ref, ids, tg, G, T)) || ref->ops->last_logprobs(ref, ref_lp) != 0) {
                snprintf(err, errlen, "grpo: reference forward failed: %s", ref->err);
                free(ids), free(tg), free(ref_lp), free(lp);
                bad = 2;
                break;
            }
        }
        float fl = bk->ops->forward(bk, ids, tg, G, T), *ent = use_ent ? xcalloc(BT, sizeof *ent) : NULL;
        if (!isnan(fl) && bk->ops->last_logprobs(bk, lp) != 0) fl = NAN;
        if (!isnan(fl) && ent && bk->ops->entropy_rows(bk, tg, ent) != 0) fl = NAN;
        for (size_t r = 0; ent && !isnan(fl) && r < BT; r++) /* the mean entropy reported, from the same rows */
            if (tg[r] >= 0) ent_sum += ent[r], ent_n++;
        struct flat f;
        flat_alloc(&f, G, (long)BT);
        flat_fill(&f, e, G, T, lp, ref_lp, ent);
        free(ent);
        struct grpo_batch b = {.nseq = G, .group_size = G, .offsets = f.offsets, .mask = f.mask, .logp = f.logp,
                               .old_logp = f.old_logp, .ref_logp = use_ref ? f.ref_logp : NULL, .rewards = f.rewards,
                               .overlong = f.overlong, .malformed = f.malformed,
                               .entropy = use_ent ? f.entropy : NULL};
        struct grpo_out go = {.dlogp = f.dlogp, .dentropy = use_ent ? f.dentropy : NULL};
        struct grpo_stats st;
        int lrc = grpo_loss(gc, &b, &go, &st, err, errlen);
        if (lrc != 0 || !isfinite(st.loss) || isnan(fl)) {
            bad = lrc == 0 ? 1 : 2;
            flat_free(&f), free(ids), free(tg), free(ref_lp), free(lp);
            break;
        }
        double w = gc->agg == GRPO_AGG_TOKEN_MEAN ? (double)st.tokens / tok_total : (double)G / nseq_total;
        float *coef = xcalloc(BT, sizeof *coef), *went = use_ent ? xcalloc(BT, sizeof *went) : NULL;
        for (int i = 0; i < G; i++)
            for (int k = f.offsets[i]; k < f.offsets[i + 1]; k++) {
                size_t r = (size_t)i * T + (k - f.offsets[i]);
                coef[r] = (float)(f.dlogp[k] * w * scale);
                if (went) went[r] = (float)(f.dentropy[k] * w * scale);
            }
        int brc = went ? 0 : bk->ops->entropy_sum(bk, tg, &ent_sum, &ent_n);
        if (brc == 0)
            brc = went ? bk->ops->backward_logprobs_entropy(bk, coef, went) : bk->ops->backward_logprobs(bk, coef);
        if (brc != 0) {
            snprintf(err, errlen, "grpo: %s", bk->err);
            bad = 2;
        }
        /* aggregate: loss terms add up (already weighted), rates by tokens */
        double tw = (double)st.tokens;
        out->st.loss += st.loss * w, out->st.pg_loss += st.pg_loss * w, out->st.kl_loss += st.kl_loss * w;
        out->st.entropy_loss += st.entropy_loss * w;
        out->st.kl_mean += st.kl_mean * tw, out->st.ratio_mean += st.ratio_mean * tw;
        out->st.clip_frac += st.clip_frac * tw, out->st.clip_frac_low += st.clip_frac_low * tw;
        out->st.clip_frac_high += st.clip_frac_high * tw;
        out->st.adv_mean += st.adv_mean, out->st.adv_std += st.adv_std, out->st.reward_mean += st.reward_mean;
        out->st.tokens += st.tokens, out->st.groups_kept += st.groups_kept, out->st.groups_dropped += st.groups_dropped;
        out->st.seqs_masked += st.seqs_masked;
        w_sum += tw;
        free(coef), free(went), flat_free(&f), free(ids), free(tg), free(ref_lp), free(lp);
    }
    free(tok_g);
    if (bad == 2) return -1; /* an error: the command stops (under mpirun the launcher ends the other ranks) */
    double any_bad = bad;
    if (bk->ops->allreduce_sum(bk, &any_bad, 1) != 0) return snprintf(err, errlen, "grpo: %s", bk->err), -1;
    if (any_bad > 0) { /* a non-finite loss on some rank: no rank steps */
        out->nonfinite = 1;
        bk->ops->zero_grad(bk);
        return 0;
    }
    if (w_sum > 0) {
        out->st.kl_mean /= w_sum, out->st.ratio_mean /= w_sum, out->st.clip_frac /= w_sum;
        out->st.clip_frac_low /= w_sum, out->st.clip_frac_high /= w_sum;
    }
    if (ngroups > 0) out->st.adv_mean /= ngroups, out->st.adv_std /= ngroups, out->st.reward_mean /= ngroups;
    out->entropy = ent_n ? ent_sum / (double)ent_n : 0;
    if (tok_total == 0) return 0; /* no signal anywhere: no step (AdamW would still decay weights) */
    if (bk->ops->reduce_grads(bk) != 0) return snprintf(err, errlen, "grpo: gradient all-reduce: %s", bk->err), -1;
    if (!bk->ops->grads_finite(bk)) {
        out->nonfinite = 1;
        bk->ops->zero_grad(bk);
        return 0;
    }
    bk->err[0] = 0;
    out->grad_norm = bk->ops->opt_step(bk, &out->lr);
    if (isnan(out->grad_norm) && bk->err[0]) return snprintf(err, errlen, "grpo: AdamW: %s", bk->err), -1;
    if (!isfinite(out->grad_norm)) out->nonfinite = 1;
    return 0;
}

/* Does the episode's outcome say something about the model? Not when the
 * sandbox decided it (rollout.h infra_error, from envs/outcome.h). */
static bool learnable(const struct rl_episode *e) { return !e->infra_error; }

int grpo_update(struct train_backend *bk, struct train_backend *ref, const struct grpo_cfg *gc,
                struct rl_episode *eps, int nseq, int G, struct grpo_step_out *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (G <= 0 || nseq < 0 || nseq % G || (nseq == 0 && bk->world == 1))
        return snprintf(err, errlen, "grpo: %d sequences in groups of %d", nseq, G), -1;
    int ngroups = nseq / G, nk = 0, lost = 0, groups_renorm = 0, groups_lost = 0;
    /* the surviving episodes of each group, in order (shallow copies: the
     * arrays stay the caller's) */
    struct rl_episode *kept = xcalloc((size_t)nseq + 1, sizeof *kept);
    int *start = xcalloc((size_t)ngroups + 1, sizeof *start), nkg = 0;
    for (int g = 0; g < ngroups; g++) {
        int n = 0, k0 = nk;
        for (int i = 0; i < G; i++)
            if (learnable(&eps[(size_t)g * G + i])) kept[nk + n++] = eps[(size_t)g * G + i];
        lost += G - n;
        if (n < G && n < 2) { /* too few left to compare with each other */
            groups_lost++;
            continue;
        }
        groups_renorm += n < G;
        start[nkg++] = k0;
        nk += n;
    }
    start[nkg] = nk;
    int rc = grpo_update_groups(bk, ref, gc, kept, start, nkg, out, err, errlen);
    free(kept), free(start);
    out->sandbox_lost = lost, out->groups_renormalised = groups_renorm, out->groups_sandbox_dropped = groups_lost;
    return rc;
}
