/*
 * rollout.h - the asynchronous rollout engine: many agent episodes in flight,
 * generation batched across every episode that is ready, tool calls running
 * in vivd meanwhile.
 *
 * An episode is: prompt -> model turn (generation stops at </execute> or
 * </solution>) -> tool call in the sandbox -> observation appended -> next
 * turn ... until a solution, the turn limit, the context limit or too many
 * parse failures. The engine never re-tokenises: the token ids a generator
 * returned are kept exactly, with mask 1 on them and mask 0 on everything
 * else (prompt, observations, chat-template glue between turns).
 *
 * Three narrow interfaces plug the engine into the rest of the trainer; the
 * model layer and the environment layer implement them:
 *
 *   struct rl_generator   batched generation (the model; test/doubles/fake_gen.c is a
 *                         scripted test double)
 *   struct rl_tokenizer   text <-> token ids for prompts and observations
 *   struct rl_env_ops     prompts, turn parsing, observations, scoring (the
 *                         Biomni protocol in envs/; test/doubles/text_env.c is a test
 *                         double)
 *
 * Scheduling (rollout.c explains the rules): a single thread alternates
 * between handing the generator a batch of ready episodes and collecting
 * vivd answers. Per-tool latency statistics (vivd's wall_ms) predict when
 * waiting episodes will be back, which decides whether to start a
 * half-empty batch now or wait briefly to fill it. A synchronous mode
 * (generate for all, then run every tool call and wait for all) exists as
 * the benchmark's baseline.
 *
 * Failures stay with their episode: a tool error, a deadline, a lost session,
 * vivd going away, an overlong turn: each is recorded on the episode (and
 * shown to the model as an observation where the protocol would), never
 * aborts the step.
 */
#ifndef VIV_RL_ROLLOUT_H
#define VIV_RL_ROLLOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- generator ------------------------------------------------------------ */

enum rl_gen_stop {
    RL_GEN_STOP_STRING = 1, /* output ends with one of the request's stop strings */
    RL_GEN_STOP_EOS,        /* the model's end-of-sequence token (kept in out_tokens) */
    RL_GEN_STOP_LENGTH,     /* max_new_tokens reached */
};

struct rl_gen_request {
    /* in */
    int episode;                /* engine's episode index (stable within a step) */
    int turn;                   /* 0-based assistant turn of that episode */
    const int *tokens;          /* the episode's whole context so far */
    int n_tokens;
    int turn_start;             /* where this turn begins in tokens: a turn generated in
                                 * chunks continues with tokens[turn_start..n_tokens) already
                                 * generated (stop strings may span the chunk boundary) */
    int max_new_tokens;
    const char *const *stop;    /* stop strings (NULL-terminated list) */
    /* out: the generator writes at most max_new_tokens into these arrays
     * (the engine sizes them) and sets n_out and stop_reason. */
    int *out_tokens;
    float *out_logprobs;        /* log pi(token) under the sampling policy */
    int n_out;
    int stop_reason;            /* enum rl_gen_stop */
};

struct rl_generator {
    void *ctx;
    /* Generate for n requests at once (n <= max_batch). 0 on success; -1 if
     * the whole call failed (every episode of the batch ends as gen_error). A
     * generator that fails one request only sets its n_out to -1. */
    int (*generate)(void *ctx, struct rl_gen_request *reqs, int n);
    int max_batch;              /* the generator's own batch capacity */
};

/* ---- tokenizer ------------------------------------------------------------ */

struct rl_tokenizer {
    void *ctx;
    /* Encode text; *ids is malloc'd (caller frees). 0 or -1. */
    int (*encode)(void *ctx, const char *text, size_t len, int **ids, int *n);
    /* Decode ids to a malloc'd NUL-terminated string (caller frees) of
     * *len bytes: a generated NUL byte is text too. */
    char *(*decode)(void *ctx, const int *ids, int n, size_t *len);
};

/* ---- environment ----------------------------------------------------------- */

/* CONTINUE: a turn with no action that is not a mistake (Biomni: only
 * <think>): env->continue_text follows it, and it counts as a turn only. */
enum rl_turn_kind { RL_TURN_EXECUTE = 1, RL_TURN_SOLUTION, RL_TURN_PARSE_ERROR, RL_TURN_CONTINUE };

struct rl_turn {
    int kind;                   /* enum rl_turn_kind */
    char *code;                 /* EXECUTE: the code (malloc'd) */
    char tool[32];              /* EXECUTE: policy name in vivd ("python", "bash", ...) */
    char *answer;               /* SOLUTION: the answer text (malloc'd) */
    char *error;                /* PARSE_ERROR: what was wrong (malloc'd) */
};

enum rl_tool_status {
    RL_TOOL_OK = 0,             /* ran; exit_code says how it went */
    RL_TOOL_TIMEOUT,            /* the tool's deadline killed it (session lost too, for sessions) */
    RL_TOOL_ERROR,              /* vivd refused or failed it (error_code says why) */
    RL_TOOL_LOST,               /* vivd went away (disconnected, unreachable, client deadline) */
};

struct rl_tool_result {
    int status;                 /* enum rl_tool_status */
    int exit_code, signal;
    const char *out, *err;      /* captured stdout / stderr ("" when none) */
    size_t out_len, err_len;    /* their lengths: output may hold NUL bytes, which are kept */
    double wall_ms;             /* vivd's measure, or the engine's for local failures */
    const char *error_code;     /* vivd's error code or "disconnected"/"unreachable"/... */
    const char *error_message;
    bool session_lost;          /* the tool's Python state is gone */
    double dropped;             /* bytes of output vivd dropped past its caps */
    const char *tool;           /* the tool (vivd policy) the call went to */
};

struct rl_episode;

/* Scores for one finished episode, filled by env->score. */
struct rl_score {
    double reward;              /* what GRPO uses */
    double correct;             /* correctness part, 0..1 */
    double format;              /* format part, 0..1 */
};

struct rl_env_ops {
    void *ctx;
    /* Text of the whole prompt for task `task`, up to where the first
     * assistant turn begins (chat template included). malloc'd. */
    char *(*prompt)(void *ctx, int task);
    /* Parse one assistant turn's text. 0, or -1 on an internal error. */
    int (*parse_turn)(void *ctx, const char *text, size_t len, struct rl_turn *out);
    /* Text appended after an EXECUTE turn, up to where the next assistant
     * turn begins (observation + template). malloc'd, *len bytes: it holds
     * the tool's output whole, NUL bytes included. */
    char *(*observation)(void *ctx, const struct rl_tool_result *r, size_t *len);
    /* Text appended after a PARSE_ERROR turn (the protocol's reminder). */
    char *(*parse_error)(void *ctx, const char *why);
    /* Score a finished episode (any end reason). 0 or -1. */
    int (*score)(void *ctx, int task, const struct rl_episode *ep, struct rl_score *out);
    /* Optional: the code actually run for an EXECUTE turn of task `task`
     * with tool `tool` (malloc'd), e.g. with the task's inputs defined in
     * front; NULL (or a NULL op): the turn's code as written. */
    char *(*tool_code)(void *ctx, int task, const char *tool, const char *code);
    /* Optional: the text after a CONTINUE turn, up to where the next
     * assistant turn begins (malloc'd); NULL op: CONTINUE is a parse error. */
    char *(*continue_text)(void *ctx);
    /* Where generation stops (NULL-terminated); NULL: </execute>, </solution>. */
    const char *const *stop;
};

void rl_turn_clear(struct rl_turn *t);

/* ---- episodes ---------------------------------------------------------------- */

enum rl_end {
    RL_END_NONE = 0,
    RL_END_SOLUTION,            /* a <solution> turn */
    RL_END_TURN_LIMIT,          /* max_turns assistant turns without a solution */
    RL_END_CONTEXT,             /* the context limit: no room for another turn or observation */
    RL_END_PARSE_FAILURES,      /* max_parse_failures unparsable turns */
    RL_END_GEN_ERROR,           /* the generator failed for it */
    RL_END_STEP_DEADLINE,       /* cut off by the step's wall-clock budget */
};
const char *rl_end_name(int end);

struct rl_episode {
    int index, task, group;     /* group: index of its task in the step's task list */
    /* the trajectory, exactly as generated */
    int *tokens;
    uint8_t *mask;              /* 1: generated by the model (loss applies) */
    float *logprobs;            /* sampling log-probs on mask=1 tokens, 0 elsewhere */
    int n_tokens, cap_tokens, prompt_tokens;
    /* assistant turn texts (decoded), for the format reward */
    char **turn_text;
    int n_turns;
    char *answer;               /* the <solution> text, or NULL */
    int end;                    /* enum rl_end */
    bool overlong;              /* a turn hit max_turn_tokens or the context limit */
    int parse_failures;
    int tool_calls, tool_errors, tool_timeouts, tool_lost;
    bool infra_error;           /* the sandbox decided its outcome (a host lost or unreachable, busy,
                                 * zygote_lost, a session gone under a call, sandbox_error; envs/outcome.h),
                                 * not the model: never scored, never learnt from */
    int host;                   /* sandbox host (index in the pool) of its session or latest call; -1: none */
    int lost_host;              /* the host whose failure made it an infra_error (its call in flight or
                                 * its session died with it); -1: none */
    struct rl_score score;
    double t_start_ms, t_end_ms;
    /* engine-private state */
    int state;
    long handle;                /* vivd request in flight, or 0 */
    int handle_kind;
    char session[80];
    struct rl_turn pending;     /* the EXECUTE turn waiting for a session */
    double tool_submit_ms, ready_ms;
    int turn_start;             /* -1, or where the turn being generated in chunks began */
    long tool_timeout_ms;
    long open_handle;           /* session_open sent ahead of the first call, or 0 */
    int host_epoch;             /* the pool's epoch of `host` when its session was opened */
    int tool_idx;
};

/* ---- tool latency statistics ------------------------------------------------ */

#define RL_LAT_SAMPLES 256
struct rl_lat_ring {            /* the most recent RL_LAT_SAMPLES latencies (ms) */
    double v[RL_LAT_SAMPLES];
    int n, next;
};
struct rl_tool_stats {
    char name[32];
    long count, timeouts, errors;
    double mean_ms, max_ms;     /* vivd's wall_ms */
    struct rl_lat_ring wall;    /* vivd's wall_ms: what the tool itself took */
    struct rl_lat_ring back;    /* submit -> answer as the engine saw it: the tool plus
                                 * vivd's queue, session start and transport. The
                                 * scheduler predicts from these. */
};
/* Expected remaining time (ms) of a call that has already run elapsed_ms,
 * from the samples longer than that; deadline_ms (> 0) caps it. */
double rl_lat_expected_remaining(const struct rl_lat_ring *r, double elapsed_ms, double deadline_ms);
/* P(done within t_ms more | still running after elapsed_ms). */
double rl_lat_prob_within(const struct rl_lat_ring *r, double elapsed_ms, double t_ms, double deadline_ms);
/* A quantile (0..1) of the samples; 0 when none. */
double rl_lat_quantile(const struct rl_lat_ring *r, double q);

/* ---- the engine ---------------------------------------------------------------- */

struct rl_tool_cfg {
    const char *name;           /* vivd policy name */
    long timeout_ms;            /* the per-call deadline sent to vivd (0: the vivd policy's
                                 * default); capped at the policy's timeout_ms_max */
    bool session;               /* run in a per-episode vivd session (Python state persists) */
};

struct viv_pool;
#define RL_MAX_HOSTS 16         /* sandbox hosts in a pool (VIV_POOL_MAX_HOSTS) */

struct rl_rollout_cfg {
    /* Where tools run (the first that is set): a pool the caller opened and
     * keeps (sandbox/client/pool.h), an address list "ADDR[,ADDR...]" (unix:/PATH,
     * /PATH or tcp:HOST:PORT; TCP needs sandbox_token) the engine opens on
     * first use, or one vivd socket (NULL: the default one). */
    struct viv_pool *pool;
    const char *sandbox;
    const char *sandbox_token;
    const char *socket;
    FILE *log;                  /* sandbox hosts going down and up (NULL: stderr) */
    int max_batch;              /* cap on a generate call (0: the generator's max_batch) */
    int max_turns;              /* assistant turns per episode (default 32) */
    int max_context;            /* tokens per episode, everything included (default 65536) */
    int max_turn_tokens;        /* new tokens per turn (default 4096) */
    int max_parse_failures;     /* default 2 */
    int max_sessions;           /* vivd sessions open at once (default 256) */
    long default_timeout_ms;    /* tools neither in `tools` nor known to vivd (default 30000) */
    const struct rl_tool_cfg *tools;
    int ntools;
    bool sync;                  /* baseline: generate for all, run all tools, wait for all */
    int chunk_tokens;           /* generate turns in chunks of this many tokens, so episodes
                                 * back from tools join the next chunk's batch (continuous
                                 * batching at chunk granularity); 0: whole turns */
    double fill_wait;           /* wait up to this fraction of a generate call's time to fill a batch
                                 * (default 0.5; negative: never wait) */
    FILE *trace;                /* if set: a JSON line per generate call (batch, states) */
    bool no_preopen;            /* do not open each episode's session at the start of the step */
    double step_deadline_ms;    /* cut episodes off after this (0: none) */
    int min_groups;             /* end the step once this many groups are complete, cutting
                                 * the others off (0: wait for all) */
    /* called as each group of a step completes (all its episodes ended) */
    void (*on_group_done)(void *arg, int group, struct rl_episode *eps, int n);
    void *on_group_arg;
};

struct rl_step_stats {
    int episodes, groups;
    int groups_complete;        /* groups whose episodes all ended before the step did */
    double wall_ms;
    double gen_busy_ms;         /* time inside generate() */
    double gen_idle_frac;       /* 1 - gen_busy_ms / wall_ms */
    long gen_calls, gen_requests, gen_tokens;
    long tool_calls, tool_errors, tool_timeouts, tool_lost;
    long sessions_opened;       /* session_open requests sent (retries after "busy" included) */
    int nhosts, hosts_up;       /* sandbox hosts in the pool; up when the step ended */
    long host_calls[RL_MAX_HOSTS]; /* tool calls answered per host (lost ones included) */
    int host_lost[RL_MAX_HOSTS];   /* episodes made infra_error by that host's failure */
    double mean_batch;
    double reward_mean, correct_mean;
    int ends[RL_END_STEP_DEADLINE + 1];
};

struct rl_rollout;

struct rl_rollout *rl_rollout_new(const struct rl_rollout_cfg *cfg, const struct rl_generator *gen,
                                  const struct rl_tokenizer *tok, const struct rl_env_ops *env, char *err,
                                  size_t errlen);
/* Run one step: group_size episodes for each of the ntasks tasks. On return
 * *eps holds ntasks*group_size finished, scored episodes (episode i belongs
 * to group i / group_size). 0, or -1 with err set for engine-level failures
 * (bad arguments, out of memory); episode failures never fail the step. */
int rl_rollout_step(struct rl_rollout *r, const int *tasks, int ntasks, int group_size,
                    struct rl_episode **eps, struct rl_step_stats *st, char *err, size_t errlen);
void rl_episodes_free(struct rl_episode *eps, int n);
/* Evaluation's rule for episodes the sandbox decided (infra_error): run
 * them again. Each of eps[0..n) (groups of one, as an evaluation runs them)
 * that is an infra_error is replaced by a fresh run of its task, up to
 * max_tries rounds; *reruns counts the runs made. With greedy decoding the
 * re-run is the episode the model would have had without the failure, so
 * the evaluation scores what an uninterrupted one would. Episodes still
 * infra_error afterwards are the caller's to report apart. 0, or -1 with
 * err (an engine-level failure). */
int rl_rollout_rerun_lost(struct rl_rollout *r, struct rl_episode *eps, int n, int max_tries, int *reruns, char *err,
                          size_t errlen);
/* Latency statistics gathered so far (kept across steps). */
const struct rl_tool_stats *rl_rollout_tool_stats(const struct rl_rollout *r, int *n);
void rl_rollout_free(struct rl_rollout *r);

#endif
