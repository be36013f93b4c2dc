/*
 * eval_table.c - held-out evaluation tables: accuracy, format rate and
 * reward per task and overall, as JSON (eval_STAGE.json), as the table
 * printed at the end of a run, and as eval.svg.
 */
#define _GNU_SOURCE
#include "train_job.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"
#include "svg_chart.h"

/* ---- tasks --------------------------------------------------------------------------------- */


/* Distinct task names in order of first appearance. */
int task_names(const struct task_set *ts, const char **names, int max) {
    int n = 0;
    for (size_t i = 0; i < ts->n; i++) {
        int j;
        for (j = 0; j < n && strcmp(names[j], ts->t[i].task_name); j++) {}
        if (j == n && n < max) names[n++] = ts->t[i].task_name;
    }
    return n;
}

/* ---- evaluation ----------------------------------------------------------------------------- */



void table_add(struct eval_table *t, const char *task, double correct, double format) {
    int i;
    for (i = 0; i < t->n && strcmp(t->task[i], task); i++) {}
    if (i == t->n) {
        if (t->n == MAX_SHAPES) return;
        t->task[t->n++] = task;
    }
    t->count[i]++, t->acc[i] += correct, t->fmt[i] += format, t->reward[i] += correct + format;
}

void table_finish(struct eval_table *t) {
    int all = t->n;
    t->task[all] = "all";
    t->count[all] = 0, t->acc[all] = t->fmt[all] = t->reward[all] = 0;
    for (int i = 0; i < t->n; i++) {
        t->count[all] += t->count[i], t->acc[all] += t->acc[i], t->fmt[all] += t->fmt[i], t->reward[all] += t->reward[i];
        double k = t->count[i] ? t->count[i] : 1;
        t->acc[i] /= k, t->fmt[i] /= k, t->reward[i] /= k;
    }
    double k = t->count[all] ? t->count[all] : 1;
    t->acc[all] /= k, t->fmt[all] /= k, t->reward[all] /= k;
    t->valid = 1;
}

char *table_json(const struct eval_table *t, const char *stage, const char *split, double wall_s) {
    cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "per_task");
    cJSON_AddStringToObject(o, "stage", stage);
    cJSON_AddStringToObject(o, "split", split);
    cJSON_AddNumberToObject(o, "wall_s", wall_s);
    cJSON_AddNumberToObject(o, "sandbox_reruns", t->reruns);
    cJSON_AddNumberToObject(o, "sandbox_lost", t->lost);
    for (int i = 0; i <= t->n; i++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "task", t->task[i]);
        cJSON_AddNumberToObject(r, "n", t->count[i]);
        cJSON_AddNumberToObject(r, "accuracy", t->acc[i]);
        cJSON_AddNumberToObject(r, "format_rate", t->fmt[i]);
        cJSON_AddNumberToObject(r, "reward", t->reward[i]);
        if (i == t->n) cJSON_AddItemToObject(o, "overall", r);
        else cJSON_AddItemToArray(a, r);
    }
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

/* Read a table written by table_json (for a resumed run's final print). */
int table_load(const char *path, struct eval_table *t, char **names_store) {
    memset(t, 0, sizeof *t);
    char err[128];
    size_t len;
    char *txt = read_file(path, 1 << 22, &len, err, sizeof err);
    if (!txt) return -1;
    cJSON *o = cJSON_Parse(txt);
    free(txt);
    if (!o) return -1;
    cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "per_task"), *r;
    cJSON_ArrayForEach(r, a) {
        if (t->n == MAX_SHAPES) break;
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(r, "task");
        if (!cJSON_IsString(nm)) continue;
        int i = t->n++;
        names_store[i] = xstrdup(nm->valuestring);
        t->task[i] = names_store[i];
        t->count[i] = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "n"));
        t->acc[i] = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "accuracy"));
        t->fmt[i] = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "format_rate"));
        t->reward[i] = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "reward"));
    }
    cJSON *ov = cJSON_GetObjectItemCaseSensitive(o, "overall");
    t->task[t->n] = "all";
    t->count[t->n] = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(ov, "n"));
    t->acc[t->n] = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(ov, "accuracy"));
    t->fmt[t->n] = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(ov, "format_rate"));
    t->reward[t->n] = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(ov, "reward"));
    const cJSON *rr = cJSON_GetObjectItemCaseSensitive(o, "sandbox_reruns"), *ll = cJSON_GetObjectItemCaseSensitive(o, "sandbox_lost");
    t->reruns = cJSON_IsNumber(rr) ? (int)rr->valuedouble : 0, t->lost = cJSON_IsNumber(ll) ? (int)ll->valuedouble : 0;
    t->valid = 1;
    cJSON_Delete(o);
    return 0;
}

/* The run's task names, training set's then any only the held-out set has:
 * the keys that give each task one colour in every chart of the run. */
int run_task_names(const struct task_set *train, const struct task_set *val, const char **names, int max) {
    int n = task_names(train, names, max);
    const char *more[MAX_SHAPES];
    int nm = task_names(val, more, MAX_SHAPES);
    for (int i = 0; i < nm && n < max; i++) {
        int k;
        for (k = 0; k < n && strcmp(names[k], more[i]); k++) {}
        if (k == n) names[n++] = more[i];
    }
    return n;
}

/* ---- the table and the eval chart ------------------------------------------------------------- */

void table_set_episode(struct eval_table *t, int nep, int i, const char *task, double correct) {
    if (!t->ep_correct) {
        t->nep = nep;
        t->ep_correct = xmalloc((size_t)nep * sizeof *t->ep_correct);
        t->ep_task = xcalloc((size_t)nep, sizeof *t->ep_task);
        for (int k = 0; k < nep; k++) t->ep_correct[k] = NAN;
    }
    if (i >= 0 && i < t->nep) t->ep_correct[i] = correct, t->ep_task[i] = task;
}

int table_load_episodes(const char *path, struct eval_table *t, const struct task_set *val) {
    char err[128];
    size_t len;
    char *txt = read_file(path, (size_t)1 << 30, &len, err, sizeof err);
    if (!txt) return -1;
    for (char *line = txt, *nl; *line; line = nl ? nl + 1 : line + strlen(line)) {
        nl = strchr(line, '\n');
        if (nl) *nl = 0;
        cJSON *o = cJSON_Parse(line);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "instance_id");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "correct");
        if (cJSON_IsString(id) && cJSON_IsNumber(c))
            for (size_t i = 0; i < val->n; i++)
                if (!strcmp(val->t[i].instance_id, id->valuestring)) {
                    table_set_episode(t, (int)val->n, (int)i, val->t[i].task_name, c->valuedouble);
                    break;
                }
        cJSON_Delete(o);
        if (!nl) break;
    }
    free(txt);
    return 0;
}

void table_free(struct eval_table *t) {
    free(t->ep_correct), free(t->ep_task);
    t->ep_correct = NULL, t->ep_task = NULL, t->nep = 0;
}

static uint64_t boot_rng(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

int table_diff_ci(const struct eval_table *a, const struct eval_table *b, const char *task, uint64_t seed,
                  double *mean, double *lo, double *hi) {
    *mean = *lo = *hi = NAN;
    if (!a->ep_correct || !b->ep_correct || a->nep != b->nep) return 0;
    /* the pairs: held-out tasks both stages scored (of this shape) */
    double *d = xmalloc((size_t)a->nep * sizeof *d);
    int n = 0;
    for (int i = 0; i < a->nep; i++)
        if (!isnan(a->ep_correct[i]) && !isnan(b->ep_correct[i]) &&
            (!task || (a->ep_task[i] && !strcmp(a->ep_task[i], task))))
            d[n++] = b->ep_correct[i] - a->ep_correct[i];
    if (n == 0) {
        free(d);
        return 0;
    }
    double sum = 0;
    for (int i = 0; i < n; i++) sum += d[i];
    *mean = sum / n;
    /* paired bootstrap: resample the tasks with replacement, 2,000 times;
     * the 2.5th and 97.5th percentiles of the mean difference */
    enum { B = 2000 };
    double *m = xmalloc(B * sizeof *m);
    uint64_t st = seed ^ 0x5eedb007ull;
    for (int r = 0; r < B; r++) {
        double x = 0;
        for (int i = 0; i < n; i++) x += d[boot_rng(&st) % (uint64_t)n];
        m[r] = x / n;
    }
    qsort(m, B, sizeof *m, cmp_double);
    *lo = m[(int)(0.025 * B)], *hi = m[(int)(0.975 * B) - 1];
    free(m), free(d);
    return n;
}

/* One row's accuracy in table t, or NAN when t has no such row. */
static double row_acc(const struct eval_table *t, const char *task) {
    if (!t || !t->valid) return NAN;
    for (int r = 0; r <= t->n; r++)
        if (!strcmp(t->task[r], task)) return t->acc[r];
    return NAN;
}

static void print_acc(double v) {
    if (isnan(v)) printf("  %10s", "-");
    else printf("  %10.3f", v);
}

void print_tables(const struct eval_table *t, const char *const *stage, int nst, const char *split,
                  const struct eval_table *teacher, uint64_t seed) {
    const struct eval_table *base = NULL;
    for (int k = 0; k < nst; k++)
        if (t[k].valid) base = &t[k];
    if (!base) return;
    /* the difference RL made: the last two stages that ran, paired by task */
    const struct eval_table *from = nst >= 2 && t[nst - 2].valid ? &t[nst - 2] : NULL;
    const struct eval_table *to = nst >= 2 && t[nst - 1].valid ? &t[nst - 1] : NULL;
    printf("\nheld-out (%s) accuracy per task: greedy, one episode per task\n", split);
    printf("%-24s %4s", "task", "n");
    for (int k = 0; k < nst; k++)
        if (t[k].valid) printf("  %10.10s", stage[k]);
    if (from && to) printf("  %-29s", "  RL - SFT [95% CI]");
    if (teacher && teacher->valid) printf("  %10s", "teacher");
    printf("\n");
    for (int i = 0; i <= base->n; i++) {
        const char *task = base->task[i];
        printf("%-24s %4d", task, base->count[i]);
        for (int k = 0; k < nst; k++)
            if (t[k].valid) print_acc(row_acc(&t[k], task));
        if (from && to) {
            double mean, lo, hi;
            int np = table_diff_ci(from, to, i == base->n ? NULL : task, seed, &mean, &lo, &hi);
            char cell[64];
            if (np > 0) snprintf(cell, sizeof cell, "%+.3f [%+.3f, %+.3f]%s", mean, lo, hi,
                                 lo > 0 ? " *" : hi < 0 ? " -" : "");
            else snprintf(cell, sizeof cell, "-");
            printf("  %-29s", cell);
        }
        if (teacher && teacher->valid) print_acc(row_acc(teacher, task));
        printf("\n");
    }
    printf("%-24s %4s", "format rate (all)", "");
    for (int k = 0; k < nst; k++)
        if (t[k].valid) print_acc(t[k].fmt[t[k].n]);
    printf("\n");
    /* held-out episodes the sandbox decided: re-run (and any still lost, not scored) */
    printf("%-24s %4s", "sandbox re-runs / lost", "");
    for (int k = 0; k < nst; k++)
        if (t[k].valid) printf("  %5d / %-2d", t[k].reruns, t[k].lost);
    printf("\n");
    if (from && to)
        printf("RL - SFT: paired bootstrap over the held-out tasks (2,000 resamples); * the interval is above 0, - below\n");
}

/* How eval.svg names each stage of stage[] (before_sft, after_sft, after_rl). */
static const char *const stage_label[3] = {"base", "after SFT", "after RL"};

/* eval.svg: held-out accuracy as grouped bars, one group per stage that ran
 * (named, with its n), one bar per task and the overall; colours from the
 * run's task names, as in reward.svg and accuracy.svg. */
void eval_chart(const char *dir, const struct eval_table *t, int nst, const char *const *keys, int nkeys) {
    struct svg_bar_group g[3];
    int gi[3], ng = 0;
    for (int k = 0; k < nst && k < 3; k++)
        if (t[k].valid) gi[ng] = k, g[ng++] = (struct svg_bar_group){stage_label[k], t[k].count[t[k].n]};
    if (ng == 0) return;
    /* the tasks of every stage that ran, in order of first appearance; "all" last */
    const char *task[MAX_SHAPES + 1];
    int nt = 0;
    for (int q = 0; q < ng; q++)
        for (int r = 0; r < t[gi[q]].n; r++) {
            int i;
            for (i = 0; i < nt && strcmp(task[i], t[gi[q]].task[r]); i++) {}
            if (i == nt && nt < MAX_SHAPES) task[nt++] = t[gi[q]].task[r];
        }
    task[nt++] = "all";
    struct svg_bar_series *se = xcalloc((size_t)nt, sizeof *se);
    double *v = xcalloc((size_t)nt * ng, sizeof *v);
    long *n = xcalloc((size_t)nt * ng, sizeof *n);
    for (int i = 0; i < nt; i++) {
        for (int q = 0; q < ng; q++) {
            const struct eval_table *e = &t[gi[q]];
            v[i * ng + q] = NAN; /* a task a stage did not evaluate has no bar */
            for (int r = 0; r <= e->n; r++)
                if (!strcmp(e->task[r], task[i])) v[i * ng + q] = e->acc[r], n[i * ng + q] = e->count[r];
        }
        se[i] = (struct svg_bar_series){task[i], v + i * ng, n + i * ng};
    }
    struct svg_chart_opts o = {.title = "Held-out accuracy per task by stage",
                               .subtitle = "greedy decoding, one episode per held-out task; n = episodes scored",
                               .ylabel = "accuracy", .ymin = 0, .ymax = 1, .color_keys = keys, .ncolor_keys = nkeys};
    char *svg = svg_bar_chart(&o, g, ng, se, nt);
    char *p = xasprintf("%s/eval.svg", dir);
    rl_write_atomic(p, svg, strlen(svg));
    free(p), free(svg), free(se), free(v), free(n);
}
