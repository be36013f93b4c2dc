/*
 * eval1.h - task sets as JSONL: Biomni-Eval1 and ours.
 *
 * One JSON object per line. Biomni-Eval1 rows have instance_id, task_name,
 * split, prompt and answer (task_name doubles as the grading rule). Our
 * task files (viv data build) add "grader" (the Eval1 rule to grade with),
 * "reference" {"tool": "python"|"sql"|"bash", "code": ...} whose run prints
 * the answer as the last line of stdout, and "meta" {...}.
 */
#ifndef VIV_EVAL1_H
#define VIV_EVAL1_H

#include <stddef.h>

#include <cjson/cJSON.h>

struct task {
    char *instance_id; /* text even when the file has a number */
    char *task_name;
    char *split;
    char *prompt;
    char *answer;      /* text; a non-string answer is kept as compact JSON */
    char *grader;      /* Eval1 rule: "grader" if present, else task_name */
    char *ref_tool;    /* "python", "sql" or "bash"; NULL without a reference */
    char *ref_code;
    cJSON *meta;       /* NULL if absent */
};

struct task_set {
    struct task *t;
    size_t n;
};

/* Load `path`; keep only rows whose split equals `split` (NULL: all). Every
 * row must have task_name, prompt and answer and a known grading rule.
 * 0, or -1 with `err` naming the line. */
int taskset_load(const char *path, const char *split, struct task_set *ts, char *err, size_t errlen);
void taskset_free(struct task_set *ts);

/* Keep the rows whose task_name is in the comma list (NULL: all), at most
 * limit (0: all), taking shapes in turn so that a limit keeps the mix
 * (viv train --eval-limit, viv eval --limit). */
void taskset_filter(struct task_set *ts, const char *list, int limit);

/* Number of rows with a reference solution. */
size_t taskset_with_reference(const struct task_set *ts);

/* `viv eval` (envs/cmd_eval.c). */
int cmd_eval(int argc, char **argv);

#endif
