/*
 * sft.c - rejection sampling from the scripted teacher, and supervised
 * fine-tuning on the kept trajectories' assistant tokens (see train.h).
 *
 * Biomni-R0's phase 1: K teacher rollouts per task, keep the best correct
 * one, train on the assistant messages only (observations and prompts are
 * context, not targets).
 */
#define _GNU_SOURCE
#include "train.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../envs/teacher.h"
#include "../sandbox/base/json_text.h"
#include "../sandbox/base/json_writer.h"
#include "../sandbox/base/util.h"
#include "../envs/turn.h"

/* The length of turn i's text. */
static size_t sft_len(const struct sft_traj *t, int i) { return t->lens ? t->lens[i] : strlen(t->texts[i]); }

/* ---- collection --------------------------------------------------------------- */

struct collect_ctx {
    const struct task_set *ts;
    struct sft_set *out;
    struct sft_traj *best; /* per task */
    long done, total, lost;
};

static void traj_free(struct sft_traj *t) {
    for (int i = 0; i < t->n; i++) free(t->texts[i]);
    free(t->texts), free(t->roles), free(t->lens);
    memset(t, 0, sizeof *t);
}

static void on_episode(void *arg, const struct episode *ep, size_t index) {
    struct collect_ctx *c = arg;
    c->done++;
    if (episode_lost_to_sandbox(ep)) { /* the sandbox ended it, after its re-runs: no verdict on the teacher */
        c->lost++;
        return;
    }
    size_t task = index % c->ts->n;
    struct sft_traj *b = &c->best[task];
    double r = ep->correct + ep->format;
    /* keep: correct, and better than what we have (strictly: the first wins ties) */
    if (ep->correct < 1.0 || (b->texts && r <= b->correct + b->format)) return;
    traj_free(b);
    b->task = (int)task;
    b->correct = ep->correct, b->format = ep->format;
    /* turns after the system message and the task prompt */
    size_t from = 2 <= ep->conv.n ? 2 : ep->conv.n;
    b->n = (int)(ep->conv.n - from);
    b->roles = xcalloc((size_t)b->n + 1, sizeof *b->roles);
    b->texts = xcalloc((size_t)b->n + 1, sizeof *b->texts);
    b->lens = xcalloc((size_t)b->n + 1, sizeof *b->lens);
    for (int i = 0; i < b->n; i++) {
        const struct turn *u = &ep->conv.turns[from + i];
        b->roles[i] = u->role;
        b->texts[i] = xmalloc(u->len + 1); /* whole: an observation may hold NUL bytes */
        memcpy(b->texts[i], u->text, u->len + 1);
        b->lens[i] = u->len;
    }
    /* the episode may end with an environment message after the last
     * assistant turn (e.g. "terminated"): drop trailing non-assistant turns */
    while (b->n > 0 && b->roles[b->n - 1] != ROLE_ASSISTANT) free(b->texts[--b->n]);
    if (isatty(2) && (c->done % 50 == 0 || c->done == c->total))
        fprintf(stderr, "\rsft: teacher %ld/%ld episodes", c->done, c->total);
}

int sft_collect(const struct task_set *ts, struct viv_pool *cl, const struct sft_collect_opts *o,
                struct sft_set *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (ts->n == 0) return 0;
    struct collect_ctx c = {.ts = ts, .out = out, .best = xcalloc(ts->n, sizeof *c.best)};
    size_t n = ts->n * (size_t)(o->samples > 0 ? o->samples : 1);
    c.total = (long)n;
    struct teacher teacher = {.error_rate = o->error_rate, .seed = o->seed};
    struct episode_cfg cfg = {.max_turns = o->max_turns > 0 ? o->max_turns : 16,
                              .tool_timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000, .mode = GRADE_TRAIN};
    struct episode_result *res = xcalloc(n, sizeof *res);
    agent_fn agent = o->agent ? o->agent : teacher_next;
    void *actx = o->agent ? o->agent_ctx : (void *)&teacher;
    int conc = o->concurrency > 0 ? o->concurrency : 4;
    int rc = o->agent && o->run ? o->run(actx, ts, n, conc, cl, &cfg, o->seed, res, on_episode, &c, err, errlen)
                                : run_episodes(ts, n, conc, cl, agent, actx, &cfg, o->seed, res, on_episode, &c, err,
                                               errlen);
    if (isatty(2)) fputc('\n', stderr);
    for (size_t i = 0; i < n; i++) out->reruns += res[i].reruns;
    free(res);
    out->sampled = (long)n;
    out->lost = c.lost;
    /* episodes still lost to the sandbox after their re-runs are left out,
     * not fatal: the kept set is what the teacher did where it could run */
    if (rc != 0 && c.lost > 0) rc = 0;
    out->v = xcalloc(ts->n, sizeof *out->v);
    for (size_t i = 0; i < ts->n; i++)
        if (c.best[i].texts && c.best[i].n > 0) out->v[out->n++] = c.best[i];
        else traj_free(&c.best[i]);
    out->kept = out->n;
    free(c.best);
    return rc;
}

void sft_set_free(struct sft_set *s) {
    for (int i = 0; i < s->n; i++) traj_free(&s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* ---- sharing a set between ranks ------------------------------------------------- */

char *sft_set_pack(const struct sft_set *s) {
    cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "trajectories");
    cJSON_AddNumberToObject(o, "sampled", (double)s->sampled);
    cJSON_AddNumberToObject(o, "kept", (double)s->kept);
    for (int i = 0; i < s->n; i++) {
        const struct sft_traj *t = &s->v[i];
        cJSON *r = cJSON_CreateObject(), *turns = cJSON_AddArrayToObject(r, "turns");
        cJSON_AddNumberToObject(r, "task", t->task);
        cJSON_AddNumberToObject(r, "correct", t->correct);
        cJSON_AddNumberToObject(r, "format", t->format);
        for (int k = 0; k < t->n; k++) {
            cJSON *u = cJSON_CreateObject();
            cJSON_AddNumberToObject(u, "role", t->roles[k]);
            /* written by length (a NUL as \u0000): cJSON's strings would end there */
            struct json_writer w;
            jw_init(&w);
            jw_string(&w, t->texts[k], sft_len(t, k));
            char *lit = jw_finish(&w);
            cJSON_AddRawToObject(u, "text", lit);
            free(lit);
            cJSON_AddItemToArray(turns, u);
        }
        cJSON_AddItemToArray(a, r);
    }
    char *js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    char *out = xstrdup(js ? js : "{}");
    cJSON_free(js);
    return out;
}

/* The turns' texts of trajectory `ti` in the packed set json[0..n), decoded
 * whole into t (cJSON's strings would end at a NUL). 0, or -1. */
static int unpack_texts(const char *json, size_t n, int ti, struct sft_traj *t) {
    size_t at, end, tat, tend;
    if (json_member_span(json, n, "trajectories", &at, &end) != 1 || json_array_item(json, end, at, ti, &tat, &tend) != 1 ||
        json_member_span(json + tat, tend - tat, "turns", &at, &end) != 1)
        return -1;
    const char *r = json + tat;
    for (int k = 0; k < t->n; k++) {
        size_t uat, uend;
        if (json_array_item(r, end, at, k, &uat, &uend) != 1) return -1;
        char *text;
        size_t len;
        if (json_member_text(r + uat, uend - uat, "text", &text, &len) != 1) text = xstrdup(""), len = 0;
        free(t->texts[k]);
        t->texts[k] = text, t->lens[k] = len;
    }
    return 0;
}

int sft_set_unpack(const char *json, struct sft_set *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    cJSON *o = cJSON_Parse(json);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "trajectories"), *r;
    if (!cJSON_IsArray(a)) {
        cJSON_Delete(o);
        return snprintf(err, errlen, "sft: the shared trajectories are not valid JSON"), -1;
    }
    out->v = xcalloc((size_t)cJSON_GetArraySize(a) + 1, sizeof *out->v);
    out->sampled = (long)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "sampled"));
    out->kept = (long)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "kept"));
    int rc = 0;
    cJSON_ArrayForEach(r, a) {
        struct sft_traj *t = &out->v[out->n++];
        const cJSON *turns = cJSON_GetObjectItemCaseSensitive(r, "turns"), *u;
        int nt = cJSON_GetArraySize(turns);
        t->task = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "task"));
        t->correct = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "correct"));
        t->format = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "format"));
        t->roles = xcalloc((size_t)nt + 1, sizeof *t->roles);
        t->texts = xcalloc((size_t)nt + 1, sizeof *t->texts);
        t->lens = xcalloc((size_t)nt + 1, sizeof *t->lens);
        cJSON_ArrayForEach(u, turns) {
            t->roles[t->n] = (enum role)(int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(u, "role"));
            t->texts[t->n++] = xstrdup("");
        }
        if (rc == 0 && unpack_texts(json, strlen(json), out->n - 1, t) != 0) rc = -1;
    }
    cJSON_Delete(o);
    if (rc) {
        sft_set_free(out);
        return snprintf(err, errlen, "sft: a shared trajectory's text could not be read"), -1;
    }
    return 0;
}

/* ---- rendering ------------------------------------------------------------------ */

static int append_text(struct chat *c, const struct tokenizer *tok, const char *s) {
    return s ? chat_append_text(c, tok, s, strlen(s)) : -1;
}

/* The glue around turn i (a tool or user turn), holding its text whole. */
static char *glue_turn(const struct sft_traj *t, int i, size_t *len) {
    return turn_glue_bytes(t->texts[i], sft_len(t, i), len);
}

int sft_render(const struct sft_traj *t, const char *task_prompt, const struct tokenizer *tok, struct chat *c) {
    char *p = turn_prompt_text(task_prompt);
    int rc = append_text(c, tok, p);
    free(p);
    int prev_assistant = 0;
    for (int i = 0; rc == 0 && i < t->n; i++) {
        if (t->roles[i] == ROLE_ASSISTANT) {
            if (prev_assistant) { /* two assistant turns in a row: glue without a user turn */
                char *g = turn_glue_text(NULL);
                rc = append_text(c, tok, g);
                free(g);
                if (rc) break;
            }
            int32_t *ids = NULL;
            int k = tokenizer_encode(tok, t->texts[i], sft_len(t, i), &ids);
            rc = k < 0 ? -1 : chat_append_generated(c, ids, k);
            free(ids);
            prev_assistant = 1;
        } else {
            size_t gl;
            char *g = glue_turn(t, i, &gl);
            rc = g ? chat_append_text(c, tok, g, gl) : -1;
            free(g);
            prev_assistant = 0;
        }
    }
    return rc;
}

/* s[0..*n) + add[0..an), s malloc'd (or NULL) */
static char *append_bytes(char *s, size_t *n, const char *add, size_t an) {
    s = xrealloc(s, *n + an + 1);
    if (an) memcpy(s + *n, add, an);
    *n += an;
    s[*n] = 0;
    return s;
}

char *sft_text(const struct sft_traj *t, const char *task_prompt, size_t *len) {
    char *p = turn_prompt_text(task_prompt);
    size_t n = 0;
    char *s = append_bytes(NULL, &n, p, p ? strlen(p) : 0);
    free(p);
    for (int i = 0; i < t->n; i++) {
        size_t gl = sft_len(t, i);
        if (t->roles[i] == ROLE_ASSISTANT) {
            if (i > 0 && t->roles[i - 1] == ROLE_ASSISTANT) { /* as sft_render: glue without a user turn */
                char *g = turn_glue_text(NULL);
                s = append_bytes(s, &n, g, strlen(g));
                free(g);
            }
            s = append_bytes(s, &n, t->texts[i], gl);
            continue;
        }
        char *g = glue_turn(t, i, &gl);
        s = append_bytes(s, &n, g, g ? gl : 0);
        free(g);
    }
    *len = n;
    return s;
}

/* ---- training ----------------------------------------------------------------------- */

void sft_targets(const struct chat *c, int T, int32_t *ids, int32_t *targets) {
    int n = c->n < T ? c->n : T;
    for (int t = 0; t < T; t++) {
        ids[t] = t < n ? c->ids[t] : 0;
        targets[t] = t + 1 < n && c->mask[t + 1] ? c->ids[t + 1] : -1;
    }
}

static uint64_t sft_rng(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One update on batch rows [s, s+bsz) of order (length T): this rank's share
 * is the rows k with k % world == rank. With one rank: the model's own mean
 * cross-entropy backward. With several: every rank weights its targets by
 * -world / (targets of the whole batch), so the gradients' average over the
 * ranks (reduce_grads) is exactly the whole batch's mean cross-entropy
 * gradient; the loss is the whole batch's too. NAN on error. */
static float sft_update(struct train_backend *b, const struct chat *ex, const int *order, int s, int bsz, int T,
                        int32_t *ids, int32_t *tg, float *coef, float *lr, char *err, size_t errlen) {
    int W = b->world, bl = 0;
    for (int k = 0; k < bsz; k++)
        if (k % W == b->rank) sft_targets(&ex[order[s + k]], T, ids + (size_t)bl * T, tg + (size_t)bl * T), bl++;
    b->ops->zero_grad(b);
    float loss = 0;
    if (bl > 0) {
        loss = b->ops->forward(b, ids, tg, bl, T);
        if (!isfinite(loss)) return snprintf(err, errlen, "sft: loss is not finite (%s)", b->err), NAN;
    }
    if (W == 1) {
        if (b->ops->backward(b) != 0) return snprintf(err, errlen, "sft: backward: %s", b->err), NAN;
    } else {
        double nd[2] = {0, 0}; /* sum of -logp over targets, number of targets */
        for (int i = 0; i < bl * T; i++) nd[1] += tg[i] >= 0;
        nd[0] = (double)loss * nd[1];
        if (b->ops->allreduce_sum(b, nd, 2) != 0) return snprintf(err, errlen, "sft: %s", b->err), NAN;
        loss = nd[1] > 0 ? (float)(nd[0] / nd[1]) : 0.0f;
        if (bl > 0) {
            for (int i = 0; i < bl * T; i++) coef[i] = tg[i] >= 0 && nd[1] > 0 ? (float)(-W / nd[1]) : 0.0f;
            if (b->ops->backward_logprobs(b, coef) != 0) return snprintf(err, errlen, "sft: backward: %s", b->err), NAN;
        }
        if (b->ops->reduce_grads(b) != 0) return snprintf(err, errlen, "sft: gradient all-reduce: %s", b->err), NAN;
    }
    b->err[0] = 0;
    float gn = b->ops->opt_step(b, lr);
    if (isnan(gn) && b->err[0]) return snprintf(err, errlen, "sft: AdamW: %s", b->err), NAN;
    return loss;
}

float sft_train(struct train_backend *b, const struct chat *ex, int n, const struct sft_opts *o, char *err,
                size_t errlen) {
    if (n <= 0 || o->batch <= 0 || o->epochs <= 0) return snprintf(err, errlen, "sft: nothing to train on"), NAN;
    int B = o->batch, maxT = o->max_len;
    int *order = xcalloc((size_t)n, sizeof *order);
    int32_t *ids = xcalloc((size_t)B * maxT, sizeof *ids), *tg = xcalloc((size_t)B * maxT, sizeof *tg);
    float *coef = xcalloc((size_t)B * maxT, sizeof *coef);
    uint64_t rs = o->seed ^ 0x5f7u;
    long steps_per_epoch = (n + B - 1) / B, total = steps_per_epoch * o->epochs, step = 0;
    float last_mean = NAN;
    for (int i = 0; i < n; i++) order[i] = i;
    for (int ep = 0; ep < o->epochs; ep++) {
        for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)(sft_rng(&rs) % (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        double sum = 0;
        int cnt = 0;
        for (int s = 0; s < n; s += B) {
            int bsz = n - s < B ? n - s : B, T = 2;
            for (int k = 0; k < bsz; k++) T = ex[order[s + k]].n > T ? ex[order[s + k]].n : T;
            if (T > maxT) T = maxT;
            double t0 = now_ms();
            float lr = 0;
            float loss = sft_update(b, ex, order, s, bsz, T, ids, tg, coef, &lr, err, errlen);
            if (isnan(loss)) {
                free(order), free(ids), free(tg), free(coef);
                size_t l = strlen(err);
                snprintf(err + l, errlen > l ? errlen - l : 0, " at step %ld", step);
                return NAN;
            }
            step++;
            sum += loss, cnt++;
            if (o->on_step) o->on_step(o->arg, step, total, loss, lr, (double)bsz * T / ((now_ms() - t0) / 1000.0 + 1e-9));
            int verdict = o->check && o->check_every > 0 && step % o->check_every == 0 && step < total
                              ? o->check(o->arg, step, err, errlen)
                              : 0;
            if (verdict < 0) {
                free(order), free(ids), free(tg), free(coef);
                return NAN;
            }
            if (verdict > 0) {
                ep = o->epochs; /* ends the epoch loop too */
                break;
            }
        }
        last_mean = (float)(sum / (cnt ? cnt : 1));
    }
    free(order), free(ids), free(tg), free(coef);
    return last_mean;
}
