/*
 * rl_tests.c - metrics, run directories, SVG charts and atomic writes
 * (ASan + UBSan). SVG validity is judged by test/rl/check_svg.py
 * (python3's xml.etree), not by this file.
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../harness.h"
#include "../../rl/train_job.h"
#include "../../rl/grpo.h"
#include "../../rl/metrics.h"
#include "../../rl/svg_chart.h"

static char tmp[64];

static void make_tmp(void) {
    snprintf(tmp, sizeof tmp, "/tmp/rl-metrics-XXXXXX");
    if (!mkdtemp(tmp)) abort();
}

static void after_each(void) {
    if (tmp[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
        if (system(cmd) != 0) {}
        tmp[0] = 0;
    }
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *s = NULL;
    size_t n = 0;
    if (getdelim(&s, &n, 0, f) < 0) {
        free(s);
        s = NULL;
    }
    fclose(f);
    return s;
}

/* Run check_svg.py with these arguments (shell words); 0 when it says valid. */
static int check_svg_args(const char *args, char *why, size_t wl) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 test/rl/check_svg.py %s 2>&1", args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    why[0] = 0;
    if (!fgets(why, (int)wl, p)) why[0] = 0;
    int st = pclose(p);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* Run check_svg.py; 0 when the file is a valid line chart with these series. */
static int check_svg(const char *file, const char *names, const char *counts, char *why, size_t wl) {
    char args[768];
    snprintf(args, sizeof args, "'%s' '%s' '%s'", file, names, counts);
    return check_svg_args(args, why, wl);
}

static int count_dir(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, needle)) n++;
    if (d) closedir(d);
    return n;
}

static void test_nice_ticks(void) {
    double t[32];
    int n = svg_nice_ticks(0, 1, 6, t, 32);
    CHECK(n == 6 && t[0] == 0 && fabs(t[1] - 0.2) < 1e-12 && fabs(t[5] - 1) < 1e-12, "0..1: %d ticks", n);
    n = svg_nice_ticks(0, 7, 6, t, 32);
    CHECK(n == 5 && t[0] == 0 && t[4] == 8, "0..7: %d ticks, last %g", n, t[n - 1]);
    n = svg_nice_ticks(-0.3, 1.7, 5, t, 32);
    CHECK(t[0] <= -0.3 && t[n - 1] >= 1.7 && fabs(t[1] - t[0] - 0.5) < 1e-12, "-0.3..1.7 step %g", t[1] - t[0]);
    n = svg_nice_ticks(1, 100000, 6, t, 32);
    CHECK(n <= 7 && t[n - 1] >= 100000, "large range: %d", n);
}

static void test_svg_chart_valid(void) {
    make_tmp();
    double x[20], a[20], b[20], c[3] = {0.5, NAN, 0.7}, cx[3] = {1, 2, 3};
    for (int i = 0; i < 20; i++) x[i] = i * 10, a[i] = sin(i / 3.0), b[i] = 0.05 * i;
    struct svg_series s[] = {{"reward <all> & \"more\"", x, a, 20}, {"gwas_causal_gene", x, b, 20}, {"gap", cx, c, 3}};
    struct svg_chart_opts o = {.title = "Reward per task", .xlabel = "step", .ylabel = "reward"};
    char *svg = svg_line_chart(&o, s, 3);
    char path[128], why[512];
    snprintf(path, sizeof path, "%s/c.svg", tmp);
    CHECK(rl_write_atomic(path, svg, strlen(svg)) == 0, "write");
    free(svg);
    CHECK(check_svg(path, "reward <all> & \"more\",gwas_causal_gene,gap", "20,20,2", why, sizeof why) == 0, "%s", why);
    /* the checker must reject a broken chart: drop the legend */
    struct svg_series one[] = {{"only", x, a, 20}};
    svg = svg_line_chart(&o, one, 1);
    CHECK(rl_write_atomic(path, svg, strlen(svg)) == 0, "write");
    free(svg);
    CHECK(check_svg(path, "other", "20", why, sizeof why) != 0, "the checker accepted a wrong legend");
    /* no data at all still draws valid axes */
    svg = svg_line_chart(&o, NULL, 0);
    CHECK(rl_write_atomic(path, svg, strlen(svg)) == 0, "write");
    free(svg);
    CHECK(check_svg(path, "", "", why, sizeof why) == 0, "empty chart: %s", why);
}

static void test_run_directory(void) {
    make_tmp();
    char root[128], err[256], path[256], why[512];
    snprintf(root, sizeof root, "%s/runs", tmp);
    const char *cfg = "{\"lr\":1e-6,\"group_size\":8,\"name\":\"t\"}";
    struct rl_run *r = rl_run_open(root, "exp1", cfg, 10, err, sizeof err);
    CHECK(r, "%s", err);
    FILE *prog = tmpfile();
    rl_run_set_progress(r, prog, false);
    for (int s = 1; s <= 5; s++) {
        /* step 5 lost episodes to the sandbox: its line and progress say so */
        struct rl_kv kv[] = {{"reward", 0.1 * s}, {"accuracy", 0.05 * s}, {"episodes_per_s", 3.5}, {"loss", -0.01 * s},
                             {"sandbox_lost", 3}, {"sandbox_groups_renormalised", 1}, {"sandbox_groups_dropped", 1}};
        struct rl_task_metric tm[] = {{"gwas", 0.2 * s, 0.1 * s, 8}, {"lab_bench|dbqa", 0.1, 0.05, 8}};
        CHECK(rl_run_log_step(r, s, kv, s == 5 ? 7 : 4, tm, 2) == 0, "log step %d", s);
    }
    struct rl_task_metric ev[] = {{"gwas", 1.5, 0.75, 40}, {"lab_bench|dbqa", 0.5, 0.25, 10}};
    CHECK(rl_run_write_eval(r, 5, ev, 2) == 0, "eval table");
    CHECK(rl_run_write_charts(r, err, sizeof err) == 0, "%s", err);
    /* config.json: the same JSON */
    snprintf(path, sizeof path, "%s/exp1/config.json", root);
    char *txt = slurp(path);
    cJSON *a = cJSON_Parse(txt), *b = cJSON_Parse(cfg);
    CHECK(a && cJSON_Compare(a, b, true), "config.json: %s", txt ? txt : "(missing)");
    cJSON_Delete(a), cJSON_Delete(b), free(txt);
    /* metrics.jsonl: 5 lines, each a JSON object with its step and tasks */
    snprintf(path, sizeof path, "%s/exp1/metrics.jsonl", root);
    txt = slurp(path);
    CHECK(txt, "no metrics.jsonl");
    int lines = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        lines++;
        CHECK(o && cJSON_GetObjectItem(o, "step")->valueint == lines, "line %d: %s", lines, line);
        cJSON *t = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "tasks"), "gwas");
        CHECK(t && fabs(cJSON_GetObjectItem(t, "reward")->valuedouble - 0.2 * lines) < 1e-9, "task metrics: %s", line);
        CHECK(fabs(cJSON_GetObjectItem(o, "loss")->valuedouble + 0.01 * lines) < 1e-9, "loss");
        const cJSON *sl = cJSON_GetObjectItem(o, "sandbox_lost");
        CHECK(lines == 5 ? sl && sl->valuedouble == 3 : !sl, "line %d: sandbox_lost: %s", lines, line);
        cJSON_Delete(o);
    }
    free(txt);
    CHECK(lines == 5, "%d lines", lines);
    /* eval tables */
    snprintf(path, sizeof path, "%s/exp1/eval/step-000005.md", root);
    txt = slurp(path);
    CHECK(txt && strstr(txt, "| gwas | 40 | 1.5000 | 0.7500 |") && strstr(txt, "| lab_bench\\|dbqa | 10 |") &&
              strstr(txt, "| **all** | 50 | 1.3000 | 0.6500 |"),
          "markdown table: %s", txt ? txt : "(missing)");
    free(txt);
    snprintf(path, sizeof path, "%s/exp1/eval/step-000005.json", root);
    txt = slurp(path);
    a = txt ? cJSON_Parse(txt) : NULL;
    CHECK(a && fabs(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "all"), "accuracy")->valuedouble - 0.65) < 1e-9,
          "eval json: %s", txt ? txt : "(missing)");
    cJSON_Delete(a), free(txt);
    /* charts */
    snprintf(path, sizeof path, "%s/exp1/reward.svg", root);
    CHECK(check_svg(path, "all,gwas,lab_bench|dbqa", "5,5,5", why, sizeof why) != 0 && strstr(why, "smoothed"),
          "reward.svg passed as a chart without smoothing: %s", why);
    /* reward.svg: each step thin, the centred average bold, and captions
     * saying what the reward is and that rollouts are noisy */
    char args[768];
    snprintf(args, sizeof args,
             "'%s' 'all,gwas,lab_bench|dbqa' 5,5,5 --smoothed --caption 'correctness (0-1) + format (0-1), so 0-2' "
             "--caption 'rollout rewards are noisy' --caption 'centred moving average over 3 steps'",
             path);
    CHECK(check_svg_args(args, why, sizeof why) == 0, "reward.svg: %s", why);
    snprintf(path, sizeof path, "%s/exp1/accuracy.svg", root);
    CHECK(check_svg(path, "all,gwas,lab_bench|dbqa", "5,5,5", why, sizeof why) == 0, "accuracy.svg: %s", why);
    /* one colour per task in both charts */
    snprintf(args, sizeof args, "--same-colors '%s/exp1/reward.svg' '%s/exp1/accuracy.svg'", root, root);
    CHECK(check_svg_args(args, why, sizeof why) == 0, "colours: %s", why);
    /* progress: plain lines when not a TTY */
    rewind(prog);
    char line[256];
    int n = 0;
    int with_lost = 0;
    while (fgets(line, sizeof line, prog)) n++, with_lost += strstr(line, "sandbox") != NULL;
    CHECK(n == 5 && strncmp(line, "step 5/10 reward 0.5000 accuracy 0.2500 episodes/s 3.50 eta", 59) == 0,
          "%d progress lines, last: %s", n, line);
    CHECK(with_lost == 1 && strstr(line, " sandbox_lost 3 renormalised 1 dropped 1"),
          "%d progress lines mention the sandbox; the step that lost 3: %s", with_lost, line);
    fclose(prog);
    rl_run_close(r);
    /* resuming appends; the charts keep the history */
    r = rl_run_open(root, "exp1", cfg, 10, err, sizeof err);
    CHECK(r, "%s", err);
    rl_run_set_progress(r, NULL, false);
    struct rl_kv kv[] = {{"reward", 0.9}, {"accuracy", 0.5}};
    CHECK(rl_run_log_step(r, 6, kv, 2, NULL, 0) == 0, "log");
    CHECK(rl_run_write_charts(r, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s/exp1/reward.svg", root);
    snprintf(args, sizeof args, "'%s' 'all,gwas,lab_bench|dbqa' 6,5,5 --smoothed", path);
    CHECK(check_svg_args(args, why, sizeof why) == 0, "after resume: %s", why);
    rl_run_close(r);
    snprintf(path, sizeof path, "%s/exp1", root);
    CHECK(count_dir(path, ".tmp.") == 0, "temp files left behind");
    /* names that would escape the runs directory are refused */
    CHECK(!rl_run_open(root, "../evil", cfg, 0, err, sizeof err) && strstr(err, "run name"), "accepted ../evil");
    CHECK(!rl_run_open(root, "x", "{not json", 0, err, sizeof err), "accepted a bad config");
}

/* eval.svg's form: grouped bars, one group per stage named with its n, one
 * bar per task; names escaped; the checker rejects wrong labels or n. */
static void test_svg_bar_chart(void) {
    make_tmp();
    char path[128], args[768], why[512];
    snprintf(path, sizeof path, "%s/bars.svg", tmp);
    struct svg_bar_group g[] = {{"base", 7}, {"after SFT", 7}, {"after <RL> & \"more\"", 6}};
    double va[] = {0.1, 0.5, 0.75}, vb[] = {0, NAN, 1}, vall[] = {0.05, 0.4, 0.8};
    long na[] = {4, 4, 3}, nb[] = {3, 3, 3}, nall[] = {7, 7, 6};
    struct svg_bar_series s[] = {{"dbqa", va, na}, {"seq<qa>", vb, nb}, {"all", vall, nall}};
    const char *keys[] = {"seq<qa>", "dbqa"};
    struct svg_chart_opts o = {.title = "Held-out accuracy per task by stage", .subtitle = "greedy\nn = episodes scored",
                               .ylabel = "accuracy", .ymin = 0, .ymax = 1, .color_keys = keys, .ncolor_keys = 2};
    char *svg = svg_bar_chart(&o, g, 3, s, 3);
    CHECK(rl_write_atomic(path, svg, strlen(svg)) == 0, "write");
    free(svg);
    snprintf(args, sizeof args,
             "--bars '%s' 'base,after SFT,after <RL> & \"more\"' 7,7,6 'dbqa,seq<qa>,all' --caption 'n = episodes'", path);
    CHECK(check_svg_args(args, why, sizeof why) == 0, "bars: %s", why);
    snprintf(args, sizeof args, "--bars '%s' 'base,after SFT,after RL' 7,7,6 'dbqa,seq<qa>,all'", path);
    CHECK(check_svg_args(args, why, sizeof why) != 0, "the checker accepted wrong stage names");
    snprintf(args, sizeof args, "--bars '%s' 'base,after SFT,after <RL> & \"more\"' 7,7,7 'dbqa,seq<qa>,all'", path);
    CHECK(check_svg_args(args, why, sizeof why) != 0, "the checker accepted a wrong n");
    /* the unmeasured value (NaN) has no bar; the measured zero has one */
    char *txt = slurp(path);
    int nbars = 0;
    for (char *q = txt; q && (q = strstr(q, "class=\"bar\"")); q++) nbars++;
    CHECK(nbars == 8, "%d bars, 8 expected (9 values, one NaN)", nbars);
    free(txt);
    /* a line chart with the same keys, other series in another order: the
     * same colour per name; with other keys the checker sees the difference */
    double x[] = {1, 2, 3}, y[] = {0.2, 0.4, 0.3};
    struct svg_series ls[] = {{"seq<qa>", x, y, 3}, {"all", x, y, 3}, {"dbqa", x, y, 3}};
    struct svg_chart_opts lo = {.title = "t", .xlabel = "step", .ylabel = "r", .color_keys = keys, .ncolor_keys = 2};
    char lpath[160];
    snprintf(lpath, sizeof lpath, "%s/line.svg", tmp);
    svg = svg_line_chart(&lo, ls, 3);
    CHECK(rl_write_atomic(lpath, svg, strlen(svg)) == 0, "write");
    free(svg);
    snprintf(args, sizeof args, "--same-colors '%s' '%s'", path, lpath);
    CHECK(check_svg_args(args, why, sizeof why) == 0, "colours across charts: %s", why);
    const char *other[] = {"aaa", "dbqa", "seq<qa>"};
    lo.color_keys = other, lo.ncolor_keys = 3;
    svg = svg_line_chart(&lo, ls, 3);
    CHECK(rl_write_atomic(lpath, svg, strlen(svg)) == 0, "write");
    free(svg);
    CHECK(check_svg_args(args, why, sizeof why) != 0, "the checker accepted different colours for one task");
    /* no groups, no series: still a valid document */
    svg = svg_bar_chart(&o, NULL, 0, NULL, 0);
    CHECK(svg && strstr(svg, "</svg>"), "empty bar chart");
    free(svg);
}

/* The palette: the overall apart, distinct colours for up to 10 keys
 * whatever their order; the smoothing a centred mean that keeps gaps. */
static void test_colors_and_smoothing(void) {
    const char *k1[] = {"seqqa", "dbqa", "causal_gene", "variant_prioritization", "rare_disease",
                        "patient_gene_detection", "screen_gene_retrieval"};
    const char *k2[] = {"screen_gene_retrieval", "rare_disease", "dbqa", "dbqa", "all", "seqqa", "causal_gene",
                        "variant_prioritization", "patient_gene_detection"};
    for (int i = 0; i < 7; i++) {
        const char *c = svg_series_color(k1[i], k1, 7);
        CHECK(strcmp(c, svg_series_color(k1[i], k2, 9)) == 0, "%s: colour depends on the keys' order", k1[i]);
        CHECK(strcmp(c, svg_series_color("all", k1, 7)) != 0, "%s has the overall's colour", k1[i]);
        for (int j = 0; j < i; j++)
            CHECK(strcmp(c, svg_series_color(k1[j], k1, 7)) != 0, "%s and %s share %s", k1[i], k1[j], c);
    }
    double y[] = {0, 1, NAN, 3, 5, 7}, out[6];
    svg_smooth_centred(y, 6, 3, out);
    CHECK(out[0] == 0.5 && out[1] == 0.5 && isnan(out[2]) && out[3] == 4 && out[4] == 5 && out[5] == 6,
          "smoothed %g %g %g %g %g %g", out[0], out[1], out[2], out[3], out[4], out[5]);
    svg_smooth_centred(y, 6, 1, out);
    CHECK(out[1] == 1 && out[5] == 7, "window 1 changed the series");
}

static void test_progress_tty(void) {
    char buf[256];
    struct rl_progress p = {.phase = "grpo", .step = 5, .total = 20, .reward = 1.25, .accuracy = 0.5, .eps_per_s = 12.5,
                            .signal_frac = 0.375, .phase_elapsed_s = 50, .phase_before = 0};
    rl_progress_format(buf, sizeof buf, true, &p);
    CHECK(strncmp(buf, "[#####...............] grpo 5/20", 32) == 0 && strstr(buf, "reward 1.250") &&
              strstr(buf, "acc 0.500") && strstr(buf, "12.5 ep/s") && strstr(buf, "signal 0.38") &&
              strstr(buf, "ETA 2m30s"),
          "%s", buf);
    p = (struct rl_progress){.step = 3, .reward = 1, .accuracy = 1, .eps_per_s = 1, .signal_frac = -1,
                             .phase_elapsed_s = 10};
    rl_progress_format(buf, sizeof buf, false, &p);
    CHECK(strcmp(buf, "step 3 reward 1.0000 accuracy 1.0000 episodes/s 1.00 eta ?") == 0, "%s", buf);
}

/* The ETA is the phase's own pace: a GRPO phase resumed at step 11, 20 s
 * and 2 steps into it, 8 steps left: 1m20s, however long the run took
 * before (SFT, evaluations). Step 1 of a phase that took 6 s: 6 s a step. */
static void test_progress_eta_from_phase(void) {
    char buf[256];
    struct rl_progress p = {.phase = "grpo", .step = 12, .total = 20, .reward = 1, .accuracy = 1, .eps_per_s = 1,
                            .signal_frac = 0.5, .phase_elapsed_s = 20, .phase_before = 10};
    rl_progress_format(buf, sizeof buf, false, &p);
    CHECK(strcmp(buf, "grpo 12/20 reward 1.0000 accuracy 1.0000 episodes/s 1.00 signal 0.500 eta 1m20s") == 0, "%s",
          buf);
    p = (struct rl_progress){.phase = "grpo", .step = 1, .total = 30, .signal_frac = 0, .phase_elapsed_s = 6};
    rl_progress_format(buf, sizeof buf, false, &p);
    CHECK(strstr(buf, "grpo 1/30 ") && strstr(buf, "eta 2m54s"), "%s", buf);
}

/* A writer replaces the file again and again with 1 MiB of one letter; a
 * reader must only ever see a whole file of one letter. */
static void test_atomic_write_no_torn_reads(void) {
    make_tmp();
    char path[128];
    snprintf(path, sizeof path, "%s/f.bin", tmp);
    size_t n = 1 << 20;
    char *buf = malloc(n);
    memset(buf, 'A', n);
    CHECK(rl_write_atomic(path, buf, n) == 0, "first write");
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 60; i++) {
            memset(buf, i % 2 ? 'B' : 'A', n);
            if (rl_write_atomic(path, buf, n) != 0) _exit(1);
        }
        _exit(0);
    }
    int reads = 0, bad = 0;
    char *got = malloc(n + 1);
    for (;;) {
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            size_t len = 0;
            ssize_t k;
            while ((k = read(fd, got + len, n + 1 - len)) > 0) len += (size_t)k;
            close(fd);
            reads++;
            if (len != n) bad++;
            else
                for (size_t i = 1; i < n; i += 4096)
                    if (got[i] != got[0]) {
                        bad++;
                        break;
                    }
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer failed");
            break;
        }
    }
    free(got);
    free(buf);
    CHECK(bad == 0, "%d of %d reads saw a partial file", bad, reads);
    CHECK(count_dir(tmp, ".tmp.") == 0, "temp files left behind");
    /* a write into a missing directory fails and leaves nothing */
    snprintf(path, sizeof path, "%s/missing/f", tmp);
    CHECK(rl_write_atomic(path, "x", 1) == -1, "write into a missing dir succeeded");
}

static void test_grpo_bad_input(void) {
    struct grpo_cfg c;
    grpo_cfg_default(&c);
    int offs[] = {0, 2, 3};
    uint8_t mask[] = {1, 1, 1};
    float lp[] = {-1, -1, -1}, rw[] = {1, 0}, d[3];
    struct grpo_batch b = {.nseq = 2, .group_size = 3, .offsets = offs, .mask = mask, .logp = lp, .rewards = rw};
    struct grpo_out o = {.dlogp = d};
    struct grpo_stats st;
    char err[256];
    CHECK(grpo_loss(&c, &b, &o, &st, err, sizeof err) == -1, "nseq not a multiple of group_size accepted");
    b.group_size = 2;
    c.agg = GRPO_AGG_DR_GRPO;
    c.dr_grpo_norm = 0;
    CHECK(grpo_loss(&c, &b, &o, &st, err, sizeof err) == -1, "dr_grpo without a normaliser accepted");
    grpo_cfg_default(&c);
    CHECK(grpo_loss(&c, &b, &o, &st, err, sizeof err) == 0, "%s", err);
    /* on-policy (old = current): ratio 1; A = +-1/(sqrt(0.5)+eps); token mean over 3 tokens */
    double A = 0.5 / (sqrt(0.5) + 1e-6);
    CHECK(fabs(st.loss - (-(2 * A) + A) / 3) < 1e-6 && fabs(d[0] + A / 3) < 1e-6 && fabs(d[2] - A / 3) < 1e-6,
          "loss %g d0 %g", st.loss, d[0]);
    CHECK(grpo_agg_parse("dr_grpo") == GRPO_AGG_DR_GRPO && grpo_agg_parse("nope") == -1, "agg names");
}

/* The paired bootstrap of the end table: a difference every task shows has
 * a zero-width interval at it; a difference of +0.5 on 400 tasks has an
 * interval around +0.5 that excludes 0 and is about +-0.05 wide; one that
 * only noise makes has an interval holding 0; a shape's row uses its tasks
 * only; no pairs, no figures. */
static void test_eval_diff_interval(void) {
    enum { N = 400 };
    struct eval_table a = {0}, b = {0};
    for (int i = 0; i < N; i++) {
        const char *shape = i % 2 ? "dbqa" : "seqqa";
        table_set_episode(&a, N, i, shape, 0);
        /* dbqa: every task fixed; seqqa: none */
        table_set_episode(&b, N, i, shape, i % 2 ? 1 : 0);
    }
    double m, lo, hi;
    CHECK(table_diff_ci(&a, &b, "dbqa", 1, &m, &lo, &hi) == N / 2 && m == 1 && lo == 1 && hi == 1, "dbqa %g [%g, %g]",
          m, lo, hi);
    CHECK(table_diff_ci(&a, &b, "seqqa", 1, &m, &lo, &hi) == N / 2 && m == 0 && lo == 0 && hi == 0, "seqqa %g", m);
    CHECK(table_diff_ci(&a, &b, NULL, 1, &m, &lo, &hi) == N && fabs(m - 0.5) < 1e-12 && lo > 0.44 && lo < 0.5 &&
              hi > 0.5 && hi < 0.56,
          "all %g [%g, %g]", m, lo, hi);
    /* noise: half the tasks gained, half lost */
    struct eval_table c = {0};
    for (int i = 0; i < N; i++) table_set_episode(&c, N, i, "dbqa", i % 4 == 0 ? 1 : 0);
    struct eval_table e = {0};
    for (int i = 0; i < N; i++) table_set_episode(&e, N, i, "dbqa", i % 4 == 1 ? 1 : 0);
    CHECK(table_diff_ci(&c, &e, NULL, 1, &m, &lo, &hi) == N && m == 0 && lo < 0 && hi > 0, "noise %g [%g, %g]", m, lo, hi);
    /* an episode one stage did not score is left out of the pairs */
    table_set_episode(&c, N, 7, "dbqa", NAN);
    CHECK(table_diff_ci(&c, &e, NULL, 1, &m, &lo, &hi) == N - 1, "unscored left out");
    struct eval_table none = {0};
    CHECK(table_diff_ci(&none, &e, NULL, 1, &m, &lo, &hi) == 0 && isnan(m), "no pairs");
    table_free(&a), table_free(&b), table_free(&c), table_free(&e);
}

int main(int argc, char **argv) {
    t_after_each = after_each;
    static const struct test_case tests[] = {
        {"svg_nice_ticks", test_nice_ticks},
        {"svg_chart_valid_xml", test_svg_chart_valid},
        {"svg_bar_chart_stages", test_svg_bar_chart},
        {"svg_colors_and_smoothing", test_colors_and_smoothing},
        {"metrics_run_directory", test_run_directory},
        {"metrics_progress_line", test_progress_tty},
        {"metrics_progress_eta_from_phase", test_progress_eta_from_phase},
        {"eval_diff_paired_bootstrap", test_eval_diff_interval},
        {"atomic_write_no_torn_reads", test_atomic_write_no_torn_reads},
        {"grpo_bad_input_and_hand_case", test_grpo_bad_input},
    };
    return run_test_cases(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
}
