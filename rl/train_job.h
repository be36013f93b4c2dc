/*
 * train_job.h - the pieces of `viv train` / `viv sft` (rl/train.c is the
 * spine: run_job and its phases) shared between its files:
 *
 *   train_cli.c    the configuration: defaults, the flag table, --help, config.json
 *   eval_table.c   held-out tables: per-task rows, JSON, the printed table, eval.svg
 *   checkpoint.c   checkpoints (HF format + optimizer.bin + state.json), resume
 *
 * Internal to rl/: users call cmd_train / cmd_sft (train.h).
 */
#ifndef VIV_RL_TRAIN_JOB_H
#define VIV_RL_TRAIN_JOB_H

#include "../envs/eval1.h"
#include "../sandbox/client/pool.h"
#include "backend.h"
#include "metrics.h"
#include "rollout.h"
#include "train.h"

/* ---- configuration (train_cli.c) ---- */

struct train_cfg {
    const char *data, *runs, *name, *model_dir, *teacher, *teacher_model, *socket, *tasks, *out, *eval_split;
    const char *eval_tasks; /* shapes the held-out evaluations cover ("all": every one) */
    const char *device; /* cpu | cuda (rl/backend.h) */
    struct train_backend_opts bopts; /* --zero1, --recompute (cuda only) */
    const char *api_key_env;            /* an endpoint teacher's key variable (NULL: OPENAI_API_KEY) */
    int teacher_max_tokens;             /* per message of an endpoint teacher */
    int teacher_concurrency;            /* its requests in flight */
    double teacher_temperature;
    const char *sandbox, *sandbox_token_file; /* --sandbox ADDR[,ADDR...]: running vivds */
    int resume, sft_only, no_sft, overwrite;
    int data_given; /* --data named a directory (only the default one is built when missing) */
    long seed;
    /* tokenizer + model from scratch */
    int vocab, d_model, layers, heads, kv_heads, head_dim, ffn;
    /* teacher / SFT */
    int samples, sft_epochs, sft_batch, train_limit;
    int sft_tasks; /* teacher trajectories for the first N train tasks only; RL draws from the rest (0: all, shared) */
    double error_rate, sft_lr;
    /* SFT's checks: every sft_check_every steps (0: none), greedy episodes on
     * sft_check_tasks train tasks SFT does not see; SFT ends at the first check
     * whose accuracy reaches sft_until (0: it runs every epoch). By default on
     * (10, 64, 0.5) where GRPO has such tasks, off where it has none. */
    int sft_check_every, sft_check_tasks;
    double sft_until;
    int sft_checks_given; /* --sft-check-every or --sft-until was given (not the defaults) */
    /* RL */
    int steps, tasks_per_step, group, ckpt_every, minibatches;
    double rl_lr, temperature, top_p, clip_low, clip_high, kl_coef, entropy_coef;
    const char *agg;
    int std_norm, dynamic_sampling, mask_overlong_malformed;
    int overlong_buffer; /* DAPO's soft overlong punishment: tokens before the episode's budget (0: off) */
    /* episodes */
    int max_turns, max_turn_tokens, max_context, eval_limit, threads;
    long timeout_ms;
    long inject_nan_step; /* tests: poison the weights before this step's update */
};

void train_defaults(struct train_cfg *c);
/* Parse viv train's / viv sft's flags (cmd "train" or "sft") into c: 0, ARGS_HELP, or another
 * non-zero after printing the usage error. */
int parse_train_args(const char *cmd, int argc, char **argv, struct train_cfg *c);
/* config.json of a run (malloc'd). */
char *config_json(const struct train_cfg *c);

/* ---- the job ---- */

struct job {
    struct train_cfg c;
    struct viv_pool *pool; /* the sandbox hosts (one: the private vivd or --socket) */
    struct task_set train, val;
    struct tokenizer *tok;
    struct qwen3 *m;           /* the host model (a mirror of the GPU's with --device cuda) */
    struct train_backend *be;  /* where it trains and decodes; be->opt is the optimizer */
    struct rl_run *run;        /* NULL on ranks other than 0 */
    char *dir; /* runs/NAME */
    double t0;
    struct rl_tool_cfg tools[4];
    int ntools;
};


/* ---- held-out tables (eval_table.c) ---- */

#define MAX_SHAPES 32
struct eval_table {
    int n;
    const char *task[MAX_SHAPES + 1]; /* last row: "all" */
    int count[MAX_SHAPES + 1];
    double acc[MAX_SHAPES + 1], fmt[MAX_SHAPES + 1], reward[MAX_SHAPES + 1];
    int valid;
    int reruns;  /* episodes run again because the sandbox decided their outcome */
    int lost;    /* still lost after that: not in count[] nor in the rates */
    /* per held-out task index: correctness (NAN: not scored) and shape, for
     * paired differences between stages (table_set_episode) */
    int nep;
    double *ep_correct;
    const char **ep_task;
};

/* Distinct task names in order of first appearance. */
int task_names(const struct task_set *ts, const char **names, int max);
/* The run's task names, the training set's then any only the held-out set has. */
int run_task_names(const struct task_set *train, const struct task_set *val, const char **names, int max);
void table_add(struct eval_table *t, const char *task, double correct, double format);
/* Per-task means and the "all" row. */
void table_finish(struct eval_table *t);
char *table_json(const struct eval_table *t, const char *stage, const char *split, double wall_s);
/* Read a table written by table_json (names_store[] owns its names). 0 or -1. */
int table_load(const char *path, struct eval_table *t, char **names_store);
/* Episode i of nep (a held-out task index) of task `task` scored `correct`
 * (the first call sizes the table's per-episode record). */
void table_set_episode(struct eval_table *t, int nep, int i, const char *task, double correct);
void table_free(struct eval_table *t);
/* The per-episode record from an episodes_STAGE.jsonl (a resumed run's
 * earlier stages), matched to val's tasks by instance id. 0 or -1. */
int table_load_episodes(const char *path, struct eval_table *t, const struct task_set *val);
/* b minus a over the held-out tasks both scored (of shape `task`; NULL: all):
 * the mean difference of accuracy and its 95% paired-bootstrap interval.
 * Returns the number of pairs (0: none; the figures are NAN). */
int table_diff_ci(const struct eval_table *a, const struct eval_table *b, const char *task, uint64_t seed,
                  double *mean, double *lo, double *hi);
/* The per-task accuracy of the stages that ran, on stdout, with the last
 * two stages' difference and its interval, and the teacher's own accuracy
 * (NULL: no column). */
void print_tables(const struct eval_table *t, const char *const *stage, int nst, const char *split,
                  const struct eval_table *teacher, uint64_t seed);
/* dir/eval.svg: held-out accuracy per stage and task. */
void eval_chart(const char *dir, const struct eval_table *t, int nst, const char *const *keys, int nkeys);

/* ---- checkpoints (checkpoint.c) ---- */

/* What an interrupt leaves and how to go on from it (interrupt.h). */
void note_resumable(const struct train_cfg *c, long step);
int save_checkpoint(struct job *j, long step, char *err, size_t errlen);
int file_exists(const char *p);
int run_dir_has_run(const char *dir);
char *latest_checkpoint(const char *run_dir, long *step);
int load_optimizer(struct adamw *o, const char *dir, char *err, size_t errlen);
int truncate_metrics(const char *run_dir, long step);

#endif
