/*
 * grpo.c - GRPO loss, gradients and statistics (formulas in grpo.h).
 *
 * Gradients, per contributing token t with aggregation weight w_t (the
 * factor f_t gets in the aggregated loss: 1/sum(m) for token_mean,
 * 1/(N*|o_i|) for seq_mean, 1/(N*dr_grpo_norm) for dr_grpo):
 *
 *   policy term  l = -min(rho A, clip(rho) A), d rho / d logp = rho.
 *                When rho A <= clip(rho) A the min is the unclipped term
 *                (this includes every rho inside the clip range, where the
 *                two are equal): dl/dlogp = -A rho. Otherwise the clipped
 *                term is the min and rho is outside the range, where clip()
 *                is constant: dl/dlogp = 0 (the token is "clipped").
 *   KL k3        k = e^d - d - 1 with d = ref - logp: dk/dlogp = 1 - e^d.
 *   entropy      the term is -entropy_coef H: dL/dH = -entropy_coef w_t;
 *                H depends on the whole distribution, not only on the
 *                sampled token's log-prob, so the model applies dH/dlogits.
 *
 *   dL/dlogp_t = w_t (dl/dlogp + kl_coef dk/dlogp), 0 on masked tokens.
 *
 * The log-ratio is clamped to [-20, 20] before exp (a token whose
 * probability moved by e^20 is an outlier, not a signal); a clamped token
 * gets no policy gradient. Sums run in double.
 */
#include "grpo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_RATIO_MAX 20.0

void grpo_cfg_default(struct grpo_cfg *c) {
    memset(c, 0, sizeof *c);
    c->clip_low = 0.2;
    c->clip_high = 0.28;
    c->std_norm = true;
    c->agg = GRPO_AGG_TOKEN_MEAN;
    c->dr_grpo_norm = 4096;
    c->kl_coef = 0.001;
    c->entropy_coef = 0.001;
    c->mask_overlong_malformed = true;
    c->dynamic_sampling = false;
    c->adv_eps = 1e-6;
}

static const char *const agg_names[] = {"token_mean", "seq_mean", "dr_grpo"};

int grpo_agg_parse(const char *s) {
    for (int i = 0; i < 3; i++)
        if (strcmp(s, agg_names[i]) == 0) return i;
    return -1;
}

const char *grpo_agg_name(int agg) { return agg >= 0 && agg < 3 ? agg_names[agg] : "?"; }

/* Advantages in double (the loss uses them unrounded). */
static void advantages(const struct grpo_cfg *c, const float *rewards, int nseq, int group_size, double *adv,
                       uint8_t *group_varies) {
    for (int g = 0; g < nseq / group_size; g++) {
        const float *r = rewards + g * group_size;
        double mean = 0, var = 0;
        for (int i = 0; i < group_size; i++) mean += r[i];
        mean /= group_size;
        for (int i = 0; i < group_size; i++) var += (r[i] - mean) * (r[i] - mean);
        double sd = group_size > 1 ? sqrt(var / (group_size - 1)) : 0;
        bool varies = false;
        for (int i = 1; i < group_size; i++) varies |= r[i] != r[0];
        if (group_varies) group_varies[g] = varies;
        for (int i = 0; i < group_size; i++) {
            double a = r[i] - mean;
            if (c->std_norm) a /= sd + c->adv_eps;
            adv[g * group_size + i] = varies ? a : 0.0; /* exact 0, not rounding noise */
        }
    }
}

int grpo_advantages(const struct grpo_cfg *c, const float *rewards, int nseq, int group_size, float *adv,
                    uint8_t *group_varies) {
    if (group_size <= 0 || nseq <= 0 || nseq % group_size) return -1;
    double *a = malloc((size_t)nseq * sizeof *a);
    if (!a) return -1;
    advantages(c, rewards, nseq, group_size, a, group_varies);
    for (int i = 0; i < nseq; i++) adv[i] = (float)a[i];
    free(a);
    return 0;
}

int grpo_loss(const struct grpo_cfg *c, const struct grpo_batch *b, struct grpo_out *out, struct grpo_stats *st,
              char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    if (!b || b->nseq <= 0 || b->group_size <= 0 || b->nseq % b->group_size || !b->offsets || !b->mask ||
        !b->logp || !b->rewards || !out || !out->dlogp) {
        snprintf(err, errlen, "grpo: need nseq a positive multiple of group_size, offsets, mask, logp, rewards, dlogp");
        return -1;
    }
    if (c->clip_low < 0 || c->clip_low >= 1 || c->clip_high < 0) {
        snprintf(err, errlen, "grpo: clip_low must be in [0,1) and clip_high >= 0");
        return -1;
    }
    if (c->agg == GRPO_AGG_DR_GRPO && !(c->dr_grpo_norm > 0)) {
        snprintf(err, errlen, "grpo: dr_grpo needs dr_grpo_norm > 0");
        return -1;
    }
    if (c->agg < 0 || c->agg > GRPO_AGG_DR_GRPO) {
        snprintf(err, errlen, "grpo: unknown aggregation %d", c->agg);
        return -1;
    }
    int n = b->nseq, ngroups = n / b->group_size;
    for (int i = 0; i < n; i++)
        if (b->offsets[i + 1] < b->offsets[i] || b->offsets[0] != 0) {
            snprintf(err, errlen, "grpo: offsets must start at 0 and not decrease");
            return -1;
        }
    int ntok = b->offsets[n];
    double *adv = malloc((size_t)n * sizeof *adv);
    uint8_t *varies = malloc((size_t)ngroups), *used = calloc((size_t)n, 1);
    long *count = calloc((size_t)n, sizeof *count);
    if (!adv || !varies || !used || !count) abort();
    advantages(c, b->rewards, n, b->group_size, adv, varies);

    /* which sequences contribute, and how many tokens each */
    int nused = 0;
    long total = 0;
    for (int i = 0; i < n; i++) {
        int g = i / b->group_size;
        bool drop = c->dynamic_sampling && !varies[g];
        bool bad = c->mask_overlong_malformed && b->overlong && b->malformed && b->overlong[i] && b->malformed[i];
        if (bad) st->seqs_masked++;
        if (drop || bad) continue;
        for (int t = b->offsets[i]; t < b->offsets[i + 1]; t++) count[i] += b->mask[t] != 0;
        if (count[i] == 0) continue;
        used[i] = 1;
        nused++;
        total += count[i];
    }
    for (int g = 0; g < ngroups; g++) {
        if (c->dynamic_sampling && !varies[g]) st->groups_dropped++;
        else st->groups_kept++;
    }

    memset(out->dlogp, 0, (size_t)ntok * sizeof *out->dlogp);
    if (out->dentropy) memset(out->dentropy, 0, (size_t)ntok * sizeof *out->dentropy);
    double pg = 0, kl = 0, ent = 0, kl_sum = 0, ent_sum = 0, ratio_sum = 0;
    long clip_lo = 0, clip_hi = 0;
    for (int i = 0; i < n; i++) {
        if (!used[i]) continue;
        double w = c->agg == GRPO_AGG_TOKEN_MEAN ? 1.0 / (double)total
                   : c->agg == GRPO_AGG_SEQ_MEAN  ? 1.0 / ((double)nused * (double)count[i])
                                                  : 1.0 / ((double)nused * c->dr_grpo_norm);
        double A = adv[i];
        for (int t = b->offsets[i]; t < b->offsets[i + 1]; t++) {
            if (!b->mask[t]) continue;
            double lp = b->logp[t], old = b->old_logp ? b->old_logp[t] : lp;
            double lr = lp - old, d = 0;
            bool clamped = lr > LOG_RATIO_MAX || lr < -LOG_RATIO_MAX;
            if (clamped) lr = lr > 0 ? LOG_RATIO_MAX : -LOG_RATIO_MAX;
            double rho = exp(lr);
            double rc = fmin(fmax(rho, 1.0 - c->clip_low), 1.0 + c->clip_high);
            double un = rho * A, cl = rc * A, l;
            if (un <= cl) {
                l = -un;
                if (!clamped) d = -A * rho;
            } else {
                l = -cl;
                if (rho > 1.0 + c->clip_high) clip_hi++;
                else clip_lo++;
            }
            pg += w * l;
            ratio_sum += rho;
            if (b->ref_logp && c->kl_coef != 0) {
                double dr = b->ref_logp[t] - lp, e = exp(dr);
                double k = e - dr - 1.0;
                kl += w * k;
                kl_sum += k;
                d += c->kl_coef * (1.0 - e);
            } else if (b->ref_logp) {
                double dr = b->ref_logp[t] - lp;
                kl_sum += exp(dr) - dr - 1.0;
            }
            if (b->entropy) {
                ent_sum += b->entropy[t];
                if (c->entropy_coef != 0) {
                    ent += w * b->entropy[t];
                    if (out->dentropy) out->dentropy[t] = (float)(-c->entropy_coef * w);
                }
            }
            out->dlogp[t] = (float)(w * d);
        }
    }
    st->pg_loss = pg;
    st->kl_loss = c->kl_coef * kl;
    st->entropy_loss = -c->entropy_coef * ent;
    st->loss = st->pg_loss + st->kl_loss + st->entropy_loss;
    st->tokens = total;
    if (total) {
        st->kl_mean = kl_sum / (double)total;
        st->entropy_mean = ent_sum / (double)total;
        st->ratio_mean = ratio_sum / (double)total;
        st->clip_frac_low = (double)clip_lo / (double)total;
        st->clip_frac_high = (double)clip_hi / (double)total;
        st->clip_frac = st->clip_frac_low + st->clip_frac_high;
    }
    double am = 0, av = 0, rm = 0;
    for (int i = 0; i < n; i++) am += adv[i] / n, rm += b->rewards[i] / (double)n;
    for (int i = 0; i < n; i++) av += (adv[i] - am) * (adv[i] - am) / n;
    st->adv_mean = am;
    st->adv_std = sqrt(av);
    st->reward_mean = rm;
    if (out->adv)
        for (int i = 0; i < n; i++) out->adv[i] = (float)adv[i];
    if (out->seq_used) memcpy(out->seq_used, used, (size_t)n);
    free(adv);
    free(varies);
    free(used);
    free(count);
    return 0;
}
