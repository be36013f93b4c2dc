/*
 * adamw.h - AdamW (decoupled weight decay, Loshchilov & Hutter) with global
 * gradient-norm clipping and a linear-warmup + cosine learning-rate schedule.
 *
 * The update is torch.optim.AdamW's, step for step:
 *   p *= 1 - lr*wd                       (matrices only; norm weights are not decayed)
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 * after g *= min(1, clip / (||g||_2 + 1e-6)) over all gradients at once
 * (torch.nn.utils.clip_grad_norm_).
 */
#ifndef VIV_MODEL_ADAMW_H
#define VIV_MODEL_ADAMW_H

#include <stddef.h>

#include "qwen3.h"

struct adamw_config {
    float lr;           /* peak learning rate */
    float beta1, beta2, eps;
    float weight_decay;
    float grad_clip;    /* <= 0: no clipping */
    int warmup_steps;   /* linear from lr/warmup to lr over these steps */
    int total_steps;    /* cosine decay to lr*min_lr_ratio at this step; 0 = constant after warmup */
    float min_lr_ratio;
};

struct adamw {
    struct adamw_config c;
    float *m, *v;
    size_t n;
    long step; /* steps taken */
};

void adamw_defaults(struct adamw_config *c); /* lr 1e-5, betas (0.9, 0.999), eps 1e-8, wd 0.01, clip 1 */
int adamw_init(struct adamw *o, const struct adamw_config *c, size_t n_params);
void adamw_free(struct adamw *o);
/* Learning rate for 0-based step s. */
float adamw_lr(const struct adamw_config *c, long s);
/* One update of m->params from m->grads. Returns the gradient norm before
 * clipping; *lr_out (if not NULL) gets the learning rate used. */
float adamw_step(struct adamw *o, struct qwen3 *m, float *lr_out);

#endif
