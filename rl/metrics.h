/*
 * metrics.h - a training run's directory and what goes in it.
 *
 *   runs/<name>/config.json          the run's configuration (atomic write)
 *   runs/<name>/metrics.jsonl        one JSON object per step, appended and fsync'd:
 *                                    {"step":N,"time":UNIX,"elapsed_s":S,<key>:<value>...,
 *                                     "tasks":{"<task>":{"reward":R,"accuracy":A,"n":N}}}
 *   runs/<name>/eval/step-NNNNNN.json + .md   per-task tables (atomic)
 *   runs/<name>/reward.svg, accuracy.svg      charts vs step, per task and overall
 *                                    (redrawn from metrics.jsonl, so a resumed run keeps
 *                                    its history; atomic). reward.svg says what the reward
 *                                    is and draws each step thin, a centred moving average
 *                                    bold. A task has one colour in every chart of the run.
 *
 * Progress: one line per step on stderr; on a terminal a single line
 * redrawn in place (bar, step, reward, accuracy, episodes/s, ETA).
 */
#ifndef VIV_RL_METRICS_H
#define VIV_RL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct rl_kv {
    const char *key;
    double value;
};

struct rl_task_metric {
    const char *task;
    double reward, accuracy;
    int n;
};

struct rl_run;

/* Create root/name (and root), write config.json, open metrics.jsonl for
 * appending. config_json must be valid JSON (it is re-printed indented).
 * total_steps (0: unknown) feeds the ETA. NULL + err on failure. */
struct rl_run *rl_run_open(const char *root, const char *name, const char *config_json, long total_steps,
                           char *err, size_t errlen);
const char *rl_run_dir(const struct rl_run *r);
/* The run's task names: the keys that fix each task's colour in its charts
 * (svg_series_color), so the charts agree with others drawn from the same
 * names (eval.svg). Unset: the names found in metrics.jsonl. */
void rl_run_set_task_names(struct rl_run *r, const char *const *names, int n);
/* Append one step's line (one write, then fsync) and show progress. The
 * keys "reward", "accuracy", "episodes_per_s" and "signal_frac", when
 * given, feed the progress line. 0 or -1 (errno). */
int rl_run_log_step(struct rl_run *r, long step, const struct rl_kv *kv, int nkv, const struct rl_task_metric *tasks,
                    int ntasks);
/* Per-task table for an evaluation at `step` (JSON and Markdown). 0 or -1. */
int rl_run_write_eval(struct rl_run *r, long step, const struct rl_task_metric *tasks, int ntasks);
/* Redraw reward.svg and accuracy.svg from metrics.jsonl. 0 or -1. */
int rl_run_write_charts(struct rl_run *r, char *err, size_t errlen);
/* Where progress goes (default stderr) and whether it is a terminal
 * (default: isatty). */
void rl_run_set_progress(struct rl_run *r, FILE *f, bool tty);
void rl_run_close(struct rl_run *r);

/* A phase of the run begins (e.g. "grpo") at first_step: the progress line
 * names it, and its ETA is measured from here over this phase's steps only. */
void rl_run_begin_phase(struct rl_run *r, const char *phase, long first_step);

/* What the progress line shows for one step. */
struct rl_progress {
    const char *phase;      /* "grpo"; NULL or "": "step" */
    long step, total;       /* total 0: unknown (no ETA) */
    double reward, accuracy, eps_per_s;
    double signal_frac;     /* groups whose rewards differ (they carry the gradient); < 0: not shown */
    double phase_elapsed_s; /* since the phase began */
    long phase_before;      /* the last step done before the phase began */
};

/* The progress text for one step, without line ending: on a TTY with a bar.
 * ETA = the phase's own time per step so far x the steps left. */
void rl_progress_format(char *buf, size_t n, bool tty, const struct rl_progress *p);

/* Write a file atomically: temp file in the same directory, fsync, rename,
 * fsync the directory. 0 or -1 (errno); on failure nothing is left behind. */
int rl_write_atomic(const char *path, const void *data, size_t len);

#endif
