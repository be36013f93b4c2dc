/*
 * adamw.c - see adamw.h.
 */
#include "adamw.h"

#include "kernels.h"

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

/* The update over global parameter indices [lo, hi), tensor by tensor (the
 * tensor decides whether weight decay applies). */
struct adamw_job {
    struct adamw *o;
    struct qwen3 *m;
    float clip, lr, step_size, bc2_sqrt;
    double *sumsq; /* per thread, for the norm pass */
};

static void norm_worker(void *p, int tid, int nth) {
    struct adamw_job *j = p;
    long lo, hi;
    par_range((long)j->m->n_params, 64, tid, nth, &lo, &hi);
    double ss = 0;
    for (long i = lo; i < hi; i++) ss += (double)j->m->grads[i] * j->m->grads[i];
    j->sumsq[tid] = ss;
}

static void update_worker(void *p, int tid, int nth) {
    struct adamw_job *j = p;
    const struct adamw_config *c = &j->o->c;
    struct qwen3 *m = j->m;
    long lo, hi;
    par_range((long)m->n_params, 64, tid, nth, &lo, &hi);
    for (int t = 0; t < m->n_tensors; t++) {
        const struct qwen3_tensor *tt = &m->tensors[t];
        long a = (long)tt->offset, b = (long)(tt->offset + tt->numel);
        if (a < lo) a = lo;
        if (b > hi) b = hi;
        if (a >= b) continue;
        float *pp = m->params, *g = m->grads, *mm = j->o->m, *vv = j->o->v;
        float decay = tt->is_matrix ? 1.0f - j->lr * c->weight_decay : 1.0f;
        float b1 = c->beta1, b2 = c->beta2, clip = j->clip, ss = j->step_size, bc2 = j->bc2_sqrt, eps = c->eps;
        for (long i = a; i < b; i++) {
            float gi = g[i] * clip;
            pp[i] *= decay;
            mm[i] = b1 * mm[i] + (1.0f - b1) * gi;
            vv[i] = b2 * vv[i] + (1.0f - b2) * gi * gi;
            pp[i] -= ss * mm[i] / (sqrtf(vv[i]) / bc2 + eps);
        }
    }
}

float adamw_step(struct adamw *o, struct qwen3 *m, float *lr_out) {
    const struct adamw_config *c = &o->c;
    int nth = par_threads();
    double *sumsq = calloc((size_t)nth, sizeof *sumsq), ss = 0;
    if (!sumsq) abort();
    struct adamw_job j = {.o = o, .m = m, .sumsq = sumsq};
    par_run(norm_worker, &j);
    for (int i = 0; i < nth; i++) ss += sumsq[i];
    free(sumsq);
    float norm = (float)sqrt(ss);
    j.clip = 1.0f;
    if (c->grad_clip > 0) {
        j.clip = c->grad_clip / (norm + 1e-6f);
        if (j.clip > 1.0f) j.clip = 1.0f;
    }
    j.lr = adamw_lr(c, o->step);
    o->step++;
    double bc1 = 1.0 - pow(c->beta1, (double)o->step), bc2 = 1.0 - pow(c->beta2, (double)o->step);
    j.step_size = (float)(j.lr / bc1);
    j.bc2_sqrt = (float)sqrt(bc2);
    par_run(update_worker, &j);
    if (lr_out) *lr_out = j.lr;
    return norm;
}
