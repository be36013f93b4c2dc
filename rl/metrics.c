/*
 * metrics.c - run directory, metrics.jsonl, eval tables, charts, progress
 * (see metrics.h).
 */
#define _GNU_SOURCE
#include "metrics.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "svg_chart.h"

struct rl_run {
    char *dir;
    int metrics_fd;
    long total_steps;
    double t0;
    /* the phase being logged: its name, when it began and the last step
     * done before it (a resumed run starts past 0): the ETA is the phase's
     * own pace, not the whole run's (which includes SFT and evaluations) */
    char phase[16];
    double phase_t0;
    long phase_before;
    FILE *progress;
    bool tty, line_open;
    char **task_names; /* the colour keys of the run's charts (svg_series_color) */
    int ntask_names;
};

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int write_all_fd(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

int rl_write_atomic(const char *path, const void *data, size_t len) {
    char *tmp = NULL, *dcopy = strdup(path);
    if (!dcopy || asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0) {
        free(dcopy);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), e;
    if (fd < 0) goto fail;
    if (write_all_fd(fd, data, len) || fsync(fd)) {
        e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        goto fail;
    }
    if (close(fd) || rename(tmp, path)) {
        e = errno;
        unlink(tmp);
        errno = e;
        goto fail;
    }
    /* the rename itself must survive a crash: fsync the directory */
    int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) fsync(dfd), close(dfd);
    free(tmp);
    free(dcopy);
    return 0;
fail:
    e = errno;
    free(tmp);
    free(dcopy);
    errno = e;
    return -1;
}

static int mkdir_p(const char *path) {
    char *p = strdup(path);
    if (!p) return -1;
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) return free(p), -1;
            *s = '/';
        }
    int rc = mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

static bool name_ok(const char *name) {
    if (!name || !*name || strlen(name) > 128 || name[0] == '.') return false;
    for (const char *s = name; *s; s++)
        if (!(*s == '-' || *s == '_' || *s == '.' || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
              (*s >= 'A' && *s <= 'Z')))
            return false;
    return true;
}

struct rl_run *rl_run_open(const char *root, const char *name, const char *config_json, long total_steps,
                           char *err, size_t errlen) {
    if (!name_ok(name)) {
        snprintf(err, errlen, "run name '%s': use letters, digits, '-', '_' and '.' (not first)", name ? name : "");
        return NULL;
    }
    cJSON *cfg = cJSON_Parse(config_json ? config_json : "{}");
    if (!cfg) {
        snprintf(err, errlen, "run %s: config is not valid JSON", name);
        return NULL;
    }
    char *dir = NULL, *path = NULL;
    if (asprintf(&dir, "%s/%s", root, name) < 0) abort();
    if (mkdir_p(dir) != 0) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        goto fail;
    }
    char *text = cJSON_Print(cfg);
    size_t tl = strlen(text);
    text = realloc(text, tl + 2);
    text[tl] = '\n', text[tl + 1] = 0;
    if (asprintf(&path, "%s/config.json", dir) < 0) abort();
    int rc = rl_write_atomic(path, text, tl + 1);
    free(text);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    free(path);
    if (asprintf(&path, "%s/metrics.jsonl", dir) < 0) abort();
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    free(path);
    cJSON_Delete(cfg);
    struct rl_run *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->dir = dir;
    r->metrics_fd = fd;
    r->total_steps = total_steps;
    r->t0 = wall_s();
    r->progress = stderr;
    r->tty = isatty(2);
    return r;
fail:
    cJSON_Delete(cfg);
    free(dir);
    free(path);
    return NULL;
}

const char *rl_run_dir(const struct rl_run *r) { return r->dir; }

void rl_run_set_task_names(struct rl_run *r, const char *const *names, int n) {
    for (int i = 0; i < r->ntask_names; i++) free(r->task_names[i]);
    free(r->task_names);
    r->task_names = calloc((size_t)n + 1, sizeof *r->task_names);
    if (!r->task_names) abort();
    for (int i = 0; i < n; i++)
        if (!(r->task_names[i] = strdup(names[i]))) abort();
    r->ntask_names = n;
}

void rl_run_set_progress(struct rl_run *r, FILE *f, bool tty) {
    r->progress = f;
    r->tty = tty;
}

static void fmt_duration(char *b, size_t n, double s) {
    if (!(s >= 0) || s > 1e7) snprintf(b, n, "?");
    else if (s >= 3600) snprintf(b, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(b, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(b, n, "%.0fs", s);
}

void rl_run_begin_phase(struct rl_run *r, const char *phase, long first_step) {
    snprintf(r->phase, sizeof r->phase, "%s", phase ? phase : "");
    r->phase_t0 = wall_s();
    r->phase_before = first_step - 1;
}

void rl_progress_format(char *buf, size_t n, bool tty, const struct rl_progress *p) {
    char eta[32] = "?";
    long done = p->step - p->phase_before; /* steps of this phase so far, the one just logged included */
    if (p->total > 0 && done > 0 && p->phase_elapsed_s > 0)
        fmt_duration(eta, sizeof eta, p->phase_elapsed_s / (double)done * (double)(p->total - p->step));
    char steps[48];
    if (p->total > 0) snprintf(steps, sizeof steps, "%ld/%ld", p->step, p->total);
    else snprintf(steps, sizeof steps, "%ld", p->step);
    const char *ph = p->phase && *p->phase ? p->phase : "step";
    char sig[32] = "";
    if (p->signal_frac >= 0) snprintf(sig, sizeof sig, tty ? "  signal %.2f" : " signal %.3f", p->signal_frac);
    if (tty && p->total > 0) {
        char bar[32];
        int width = 20, fill = (int)((double)width * (double)p->step / (double)p->total);
        if (fill > width) fill = width;
        if (fill < 0) fill = 0;
        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '.', (size_t)(width - fill));
        bar[width] = 0;
        snprintf(buf, n, "[%s] %s %s  reward %.3f  acc %.3f  %.1f ep/s%s  ETA %s", bar, ph, steps, p->reward,
                 p->accuracy, p->eps_per_s, sig, eta);
    } else {
        snprintf(buf, n, "%s %s reward %.4f accuracy %.4f episodes/s %.2f%s eta %s", ph, steps, p->reward, p->accuracy,
                 p->eps_per_s, sig, eta);
    }
}

static double kv_get(const struct rl_kv *kv, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (strcmp(kv[i].key, key) == 0) return kv[i].value;
    return NAN;
}

int rl_run_log_step(struct rl_run *r, long step, const struct rl_kv *kv, int nkv, const struct rl_task_metric *tasks,
                    int ntasks) {
    double el = wall_s() - r->t0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)step);
    cJSON_AddNumberToObject(o, "time", (double)time(NULL));
    cJSON_AddNumberToObject(o, "elapsed_s", el);
    for (int i = 0; i < nkv; i++)
        if (strcmp(kv[i].key, "step") && strcmp(kv[i].key, "tasks") && !cJSON_GetObjectItemCaseSensitive(o, kv[i].key))
            cJSON_AddNumberToObject(o, kv[i].key, kv[i].value);
    if (ntasks > 0) {
        cJSON *t = cJSON_AddObjectToObject(o, "tasks");
        for (int i = 0; i < ntasks; i++) {
            if (cJSON_GetObjectItemCaseSensitive(t, tasks[i].task)) continue;
            cJSON *m = cJSON_AddObjectToObject(t, tasks[i].task);
            cJSON_AddNumberToObject(m, "reward", tasks[i].reward);
            cJSON_AddNumberToObject(m, "accuracy", tasks[i].accuracy);
            cJSON_AddNumberToObject(m, "n", tasks[i].n);
        }
    }
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    size_t len = strlen(line);
    line = realloc(line, len + 2);
    line[len] = '\n';
    /* one write of the whole line (O_APPEND), then fsync: a crash leaves
     * whole lines, at most the last one missing */
    int rc = write_all_fd(r->metrics_fd, line, len + 1) || fsync(r->metrics_fd) ? -1 : 0;
    free(line);
    if (r->progress) {
        char buf[256];
        double sig = kv_get(kv, nkv, "signal_frac");
        struct rl_progress pr = {.phase = r->phase, .step = step, .total = r->total_steps,
                                 .reward = kv_get(kv, nkv, "reward"), .accuracy = kv_get(kv, nkv, "accuracy"),
                                 .eps_per_s = kv_get(kv, nkv, "episodes_per_s"), .signal_frac = isnan(sig) ? -1 : sig,
                                 .phase_elapsed_s = wall_s() - (r->phase_t0 > 0 ? r->phase_t0 : r->t0),
                                 .phase_before = r->phase_t0 > 0 ? r->phase_before : 0};
        rl_progress_format(buf, sizeof buf, r->tty, &pr);
        double lost = kv_get(kv, nkv, "sandbox_lost");
        if (lost > 0) { /* the step went on without them: say how many and what became of their groups */
            size_t l = strlen(buf);
            snprintf(buf + l, sizeof buf - l, r->tty ? "  sandbox lost %.0f (%.0f groups on survivors, %.0f dropped)"
                                                     : " sandbox_lost %.0f renormalised %.0f dropped %.0f",
                     lost, kv_get(kv, nkv, "sandbox_groups_renormalised"), kv_get(kv, nkv, "sandbox_groups_dropped"));
        }
        if (r->tty) fprintf(r->progress, "\r%s\033[K", buf), r->line_open = true;
        else fprintf(r->progress, "%s\n", buf);
        fflush(r->progress);
    }
    return rc;
}

int rl_run_write_eval(struct rl_run *r, long step, const struct rl_task_metric *tasks, int ntasks) {
    char *dir = NULL, *path = NULL;
    if (asprintf(&dir, "%s/eval", r->dir) < 0) abort();
    if (mkdir_p(dir) != 0) return free(dir), -1;
    cJSON *o = cJSON_CreateObject(), *arr;
    cJSON_AddNumberToObject(o, "step", (double)step);
    arr = cJSON_AddArrayToObject(o, "tasks");
    double rs = 0, as = 0;
    long ns = 0;
    /* Markdown: one row per task and an overall row (episode-weighted) */
    char *md = NULL;
    size_t mdlen = 0;
    FILE *m = open_memstream(&md, &mdlen);
    fprintf(m, "# Evaluation at step %ld\n\n| task | n | reward | accuracy |\n|---|---:|---:|---:|\n", step);
    for (int i = 0; i < ntasks; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "task", tasks[i].task);
        cJSON_AddNumberToObject(t, "n", tasks[i].n);
        cJSON_AddNumberToObject(t, "reward", tasks[i].reward);
        cJSON_AddNumberToObject(t, "accuracy", tasks[i].accuracy);
        cJSON_AddItemToArray(arr, t);
        fprintf(m, "| ");
        for (const char *s = tasks[i].task; *s; s++) fputs(*s == '|' ? "\\|" : (char[]){*s, 0}, m);
        fprintf(m, " | %d | %.4f | %.4f |\n", tasks[i].n, tasks[i].reward, tasks[i].accuracy);
        rs += tasks[i].reward * tasks[i].n, as += tasks[i].accuracy * tasks[i].n, ns += tasks[i].n;
    }
    double rall = ns ? rs / (double)ns : 0, aall = ns ? as / (double)ns : 0;
    fprintf(m, "| **all** | %ld | %.4f | %.4f |\n", ns, rall, aall);
    fclose(m);
    cJSON *all = cJSON_AddObjectToObject(o, "all");
    cJSON_AddNumberToObject(all, "n", (double)ns);
    cJSON_AddNumberToObject(all, "reward", rall);
    cJSON_AddNumberToObject(all, "accuracy", aall);
    char *js = cJSON_Print(o);
    cJSON_Delete(o);
    int rc = 0;
    if (asprintf(&path, "%s/step-%06ld.json", dir, step) < 0) abort();
    rc |= rl_write_atomic(path, js, strlen(js));
    free(path);
    if (asprintf(&path, "%s/step-%06ld.md", dir, step) < 0) abort();
    rc |= rl_write_atomic(path, md, mdlen);
    free(path);
    free(js);
    free(md);
    free(dir);
    return rc ? -1 : 0;
}

/* ---- charts -------------------------------------------------------------------- */

struct series_acc {
    char *name;
    double *x, *y;
    int n, cap;
};

static struct series_acc *series_get(struct series_acc **s, int *ns, const char *name) {
    for (int i = 0; i < *ns; i++)
        if (strcmp((*s)[i].name, name) == 0) return &(*s)[i];
    *s = realloc(*s, (size_t)(*ns + 1) * sizeof **s);
    if (!*s) abort();
    struct series_acc *a = &(*s)[(*ns)++];
    memset(a, 0, sizeof *a);
    a->name = strdup(name);
    return a;
}

static void series_add(struct series_acc *a, double x, double y) {
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 64;
        a->x = realloc(a->x, (size_t)a->cap * sizeof *a->x);
        a->y = realloc(a->y, (size_t)a->cap * sizeof *a->y);
        if (!a->x || !a->y) abort();
    }
    a->x[a->n] = x, a->y[a->n++] = y;
}

/* The smoothing window for per-step curves of n points: about a tenth of
 * the run, odd so the window is centred, 3 at least. */
static int smooth_window(int n) {
    int w = n / 10;
    if (w < 3) w = 3;
    return w | 1;
}

static int draw(struct rl_run *r, const char *file, struct svg_chart_opts *o, struct series_acc *s, int ns) {
    struct svg_series *ss = calloc((size_t)ns + 1, sizeof *ss);
    if (!ss) abort();
    int k = 0;
    for (int i = 0; i < ns; i++) /* a series with no points would only clutter the legend */
        if (s[i].n > 0) ss[k++] = (struct svg_series){s[i].name, s[i].x, s[i].y, s[i].n};
    ns = k;
    /* colours: from the run's task names when it gave them, else from every
     * name in metrics.jsonl (both charts see the same names, so they agree) */
    const char **keys = NULL;
    if (r->ntask_names) o->color_keys = (const char *const *)r->task_names, o->ncolor_keys = r->ntask_names;
    else {
        keys = calloc((size_t)ns + 1, sizeof *keys);
        if (!keys) abort();
        for (int i = 0; i < ns; i++) keys[i] = ss[i].name;
        o->color_keys = keys, o->ncolor_keys = ns;
    }
    char *svg = svg_line_chart(o, ss, ns);
    char *path = NULL;
    if (asprintf(&path, "%s/%s", r->dir, file) < 0) abort();
    int rc = rl_write_atomic(path, svg, strlen(svg));
    free(path);
    free(svg);
    free(ss);
    free(keys);
    return rc;
}

int rl_run_write_charts(struct rl_run *r, char *err, size_t errlen) {
    char *path = NULL;
    if (asprintf(&path, "%s/metrics.jsonl", r->dir) < 0) abort();
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    struct series_acc *rew = NULL, *acc = NULL;
    int nrew = 0, nacc = 0;
    char *line = NULL;
    size_t cap = 0;
    /* overall first, so it keeps the first colour */
    series_get(&rew, &nrew, "all");
    series_get(&acc, &nacc, "all");
    while (getline(&line, &cap, f) > 0) {
        cJSON *o = cJSON_Parse(line);
        if (!o) continue; /* a torn last line after a crash */
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step");
        if (cJSON_IsNumber(st)) {
            double x = st->valuedouble;
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "reward");
            if (cJSON_IsNumber(v)) series_add(&rew[0], x, v->valuedouble);
            v = cJSON_GetObjectItemCaseSensitive(o, "accuracy");
            if (cJSON_IsNumber(v)) series_add(&acc[0], x, v->valuedouble);
            const cJSON *t;
            cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(o, "tasks")) {
                const cJSON *tr = cJSON_GetObjectItemCaseSensitive(t, "reward");
                const cJSON *ta = cJSON_GetObjectItemCaseSensitive(t, "accuracy");
                if (cJSON_IsNumber(tr)) series_add(series_get(&rew, &nrew, t->string), x, tr->valuedouble);
                if (cJSON_IsNumber(ta)) series_add(series_get(&acc, &nacc, t->string), x, ta->valuedouble);
            }
        }
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    free(path);
    /* a step's reward is the mean over a handful of sampled rollouts: noisy
     * from step to step, so the chart says so and draws the trend over it */
    int longest = 0;
    for (int i = 0; i < nrew; i++) longest = rew[i].n > longest ? rew[i].n : longest;
    int w = smooth_window(longest);
    char sub[256];
    snprintf(sub, sizeof sub,
             "reward per episode = correctness (0-1) + format (0-1), so 0-2; mean over the step's training rollouts\n"
             "rollout rewards are noisy: thin = each step, bold = centred moving average over %d steps", w);
    struct svg_chart_opts ro = {.title = "Training reward per task (GRPO rollouts)", .subtitle = sub, .xlabel = "step",
                                .ylabel = "reward (0-2)", .ymin = 0, .ymax = 2, .smooth = w};
    struct svg_chart_opts ao = {.title = "Accuracy per task", .xlabel = "step", .ylabel = "accuracy", .ymin = 0, .ymax = 1};
    int rc = draw(r, "reward.svg", &ro, rew, nrew);
    rc |= draw(r, "accuracy.svg", &ao, acc, nacc);
    for (int i = 0; i < nrew; i++) free(rew[i].name), free(rew[i].x), free(rew[i].y);
    for (int i = 0; i < nacc; i++) free(acc[i].name), free(acc[i].x), free(acc[i].y);
    free(rew);
    free(acc);
    if (rc) snprintf(err, errlen, "%s: writing charts: %s", r->dir, strerror(errno));
    return rc ? -1 : 0;
}

void rl_run_close(struct rl_run *r) {
    if (!r) return;
    if (r->tty && r->line_open && r->progress) fprintf(r->progress, "\n");
    close(r->metrics_fd);
    for (int i = 0; i < r->ntask_names; i++) free(r->task_names[i]);
    free(r->task_names);
    free(r->dir);
    free(r);
}
