/*
 * adamw.c - see adamw.h.
 */
#include "adamw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void adamw_defaults(struct adamw_config *c) {
    *c = (struct adamw_config){.lr = 1e-5f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                               .grad_clip = 1.0f, .warmup_steps = 0, .total_steps = 0, .min_lr_ratio = 0.1f};
}

int adamw_init(struct adamw *o, const struct adamw_config *c, size_t n) {
    memset(o, 0, sizeof *o);
    o->c = *c;
    o->n = n;
    o->m = calloc(n, sizeof(float));
    o->v = calloc(n, sizeof(float));
    if (!o->m || !o->v) {
        adamw_free(o);
        return -1;
    }
    return 0;
}

void adamw_free(struct adamw *o) {
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
}

float adamw_lr(const struct adamw_config *c, long s) {
    if (c->warmup_steps > 0 && s < c->warmup_steps) return c->lr * (float)(s + 1) / (float)c->warmup_steps;
    if (c->total_steps <= c->warmup_steps) return c->lr;
    double progress = (double)(s - c->warmup_steps) / (double)(c->total_steps - c->warmup_steps);
    if (progress > 1) progress = 1;
    double lo = (double)c->lr * c->min_lr_ratio;
    return (float)(lo + 0.5 * ((double)c->lr - lo) * (1.0 + cos(M_PI * progress)));
}

float adamw_step(struct adamw *o, struct qwen3 *m, float *lr_out) {
    const struct adamw_config *c = &o->c;
    double ss = 0;
    for (size_t i = 0; i < m->n_params; i++) ss += (double)m->grads[i] * m->grads[i];
    float norm = (float)sqrt(ss);
    float clip = 1.0f;
    if (c->grad_clip > 0) {
        clip = c->grad_clip / (norm + 1e-6f);
        if (clip > 1.0f) clip = 1.0f;
    }
    float lr = adamw_lr(c, o->step);
    o->step++;
    double bc1 = 1.0 - pow(c->beta1, (double)o->step), bc2 = 1.0 - pow(c->beta2, (double)o->step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    for (int t = 0; t < m->n_tensors; t++) {
        const struct qwen3_tensor *tt = &m->tensors[t];
        float *p = m->params + tt->offset, *g = m->grads + tt->offset;
        float *mm = o->m + tt->offset, *vv = o->v + tt->offset;
        float decay = tt->is_matrix ? 1.0f - lr * c->weight_decay : 1.0f;
        for (size_t i = 0; i < tt->numel; i++) {
            float gi = g[i] * clip;
            p[i] *= decay;
            mm[i] = c->beta1 * mm[i] + (1.0f - c->beta1) * gi;
            vv[i] = c->beta2 * vv[i] + (1.0f - c->beta2) * gi * gi;
            p[i] -= step_size * mm[i] / (sqrtf(vv[i]) / bc2_sqrt + c->eps);
        }
    }
    if (lr_out) *lr_out = lr;
    return norm;
}
