/*
 * train.c - `viv train`, the main job, and `viv sft` (its first half).
 *
 *   viv train                       data -> vivd -> teacher trajectories ->
 *                                   tokenizer -> tiny Qwen3 -> eval -> SFT ->
 *                                   eval -> GRPO -> eval -> per-task table
 *
 * This file is the spine: run_job() and its phases (teacher collection and
 * the model, SFT, GRPO, the evaluations). The configuration is train_cli.c,
 * the held-out tables eval_table.c, checkpoints checkpoint.c (train_job.h).
 *
 * Biomni-R0's recipe scaled to 2 CPU cores and 15 minutes:
 * rejection-sampling SFT on the scripted teacher (K samples per task, best
 * correct kept, assistant tokens only), then GRPO through the asynchronous
 * rollout engine with reward = correctness + format. Defaults and why are in
 * the usage text and in train_defaults(). --teacher URL --teacher-model NAME
 * samples the trajectories from an OpenAI-compatible endpoint instead
 * (rl/serve/llm_agent.h, several requests in flight), kept by the same rule.
 *
 * A run lives in runs/<name>/ (rl/metrics.h): config.json, metrics.jsonl,
 * eval_{before_sft,after_sft,after_rl}.json, reward.svg, accuracy.svg,
 * eval.svg and checkpoints/step-NNNNNN/ (HF format: config.json,
 * model.safetensors, tokenizer.json + optimizer.bin + state.json), the
 * newest named by checkpoints/latest. Each checkpoint directory is written
 * whole under a temporary name and renamed, then `latest` is replaced
 * atomically, so a kill leaves either the old or the new checkpoint.
 * --resume reloads the latest checkpoint (model, tokenizer, AdamW moments
 * and step) and continues at the next step; metrics lines past the
 * checkpoint are dropped first, so no step is duplicated or lost. Every
 * random choice of step s is a function of (seed, s).
 */
#define _GNU_SOURCE
#include "train_job.h"
#include "serve/llm_agent.h"
#include "serve/openai_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../envs/cmd_data.h"
#include "../envs/private_vivd.h"
#include "../envs/teacher.h"
#include "../model/kernels.h"
#include "../model/config.h"
#include "../sandbox/base/args.h"
#include "../sandbox/base/interrupt.h"
#include "../sandbox/base/util.h"
#include "bio_env.h"
#include "../envs/turn.h"
#include "metrics.h"
#include "model_gen.h"
#include "step_stats.h"
#include "svg_chart.h"

static void fill_rollout_cfg(const struct job *j, struct rl_rollout_cfg *rc) {
    memset(rc, 0, sizeof *rc);
    rc->pool = j->pool;
    rc->max_turns = j->c.max_turns;
    rc->max_context = j->c.max_context;
    rc->max_turn_tokens = j->c.max_turn_tokens;
    rc->max_parse_failures = 2;
    rc->max_sessions = 64;
    rc->default_timeout_ms = j->c.timeout_ms;
    rc->tools = j->tools;
    rc->ntools = j->ntools;
    rc->chunk_tokens = 64; /* episodes back from a tool join the next chunk's batch */
}

/* Every eval episode as a JSON line (the turns as generated, how it ended,
 * its scores): runs/NAME/episodes_STAGE.jsonl, written atomically. */
static void write_episodes(const struct job *j, const char *stage, const struct rl_episode *eps, int n) {
    char *buf = xstrdup("");
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject(), *turns = cJSON_AddArrayToObject(o, "turns");
        cJSON_AddStringToObject(o, "instance_id", j->val.t[eps[i].task].instance_id);
        cJSON_AddStringToObject(o, "task_name", j->val.t[eps[i].task].task_name);
        cJSON_AddStringToObject(o, "end", rl_end_name(eps[i].end));
        cJSON_AddNumberToObject(o, "correct", eps[i].score.correct);
        cJSON_AddNumberToObject(o, "format", eps[i].score.format);
        cJSON_AddNumberToObject(o, "tokens", eps[i].n_tokens);
        cJSON_AddNumberToObject(o, "tool_calls", eps[i].tool_calls);
        if (eps[i].answer) cJSON_AddStringToObject(o, "answer", eps[i].answer);
        for (int t = 0; t < eps[i].n_turns; t++) cJSON_AddItemToArray(turns, cJSON_CreateString(eps[i].turn_text[t]));
        char *line = cJSON_PrintUnformatted(o);
        char *nb = xasprintf("%s%s\n", buf, line ? line : "{}");
        free(buf), cJSON_free(line);
        buf = nb;
        cJSON_Delete(o);
    }
    char *path = xasprintf("%s/episodes_%s.jsonl", j->dir, stage);
    if (rl_write_atomic(path, buf, strlen(buf)) != 0) fprintf(stderr, "viv train: %s: %s\n", path, strerror(errno));
    free(path), free(buf);
}

/* A rollout engine over the job's model for `nseq` episodes at most in one
 * batch (64 at most): g must outlive the engine (the generator points at it);
 * the caller sets g's sampling (temperature, top_p) before stepping. NULL
 * with err; nothing is left to free then. */
static struct rl_rollout *open_rollout(struct job *j, int nseq, struct model_gen *g, const struct rl_env_ops *ops,
                                       char *err, size_t errlen) {
    struct gen_model gm;
    j->be->ops->gen_model(j->be, &gm);
    if (model_gen_init_with(g, &gm, j->tok, nseq < 64 ? nseq : 64, j->c.max_context + 1, err, errlen) != 0) return NULL;
    struct rl_generator gen;
    struct rl_tokenizer tk;
    model_gen_generator(g, &gen);
    model_gen_tokenizer(j->tok, &tk);
    struct rl_rollout_cfg rc;
    fill_rollout_cfg(j, &rc);
    struct rl_rollout *r = rl_rollout_new(&rc, &gen, &tk, ops, err, errlen);
    if (!r) model_gen_free(g);
    return r;
}

/* One greedy episode on each task of ts (the model's mode: what the tables
 * measure). Episodes the sandbox decided are run again (greedy: the same
 * episode the model would have had); any still lost keep infra_error, to be
 * counted apart, never scored as wrong. *eps: ts->n episodes (the caller
 * frees them with rl_episodes_free). 0, or -1 with err. */
static int greedy_episodes(struct job *j, const struct task_set *ts, struct rl_episode **eps, int *reruns, char *err,
                           size_t errlen) {
    int n = (int)ts->n;
    struct bio_env env = {.ts = ts, .mode = GRADE_EVAL};
    struct rl_env_ops ops;
    bio_env_init(&env, &ops);
    struct model_gen g;
    struct rl_rollout *r = open_rollout(j, n, &g, &ops, err, errlen);
    if (!r) return -1;
    g.temperature = 0;
    g.no_logprobs = 1; /* the tables read only the tokens */
    g.seed = (uint64_t)j->c.seed;
    int *tasks = xcalloc((size_t)n, sizeof *tasks);
    for (int i = 0; i < n; i++) tasks[i] = i;
    struct rl_step_stats st;
    *eps = NULL;
    int rc = rl_rollout_step(r, tasks, n, 1, eps, &st, err, errlen);
    if (rc == 0) rc = rl_rollout_rerun_lost(r, *eps, n, 3, reruns, err, errlen);
    if (rc != 0 && *eps) rl_episodes_free(*eps, n), *eps = NULL;
    free(tasks);
    rl_rollout_free(r);
    model_gen_free(&g);
    return rc;
}

/* Greedy episodes on the val tasks, one per task; per-task table. */
static int evaluate(struct job *j, const char *stage, struct eval_table *out, char *err, size_t errlen) {
    double t0 = now_ms();
    int n = (int)j->val.n;
    struct rl_episode *eps = NULL;
    fprintf(stderr, "eval (%s): %d held-out episodes (%s)...\n", stage, n, j->c.eval_split);
    memset(out, 0, sizeof *out);
    int rc2 = greedy_episodes(j, &j->val, &eps, &out->reruns, err, errlen);
    if (rc2 == 0) {
        for (int i = 0; i < n; i++)
            if (eps[i].infra_error) out->lost++;
            else {
                const char *nm = j->val.t[eps[i].task].task_name;
                table_add(out, nm, eps[i].score.correct, eps[i].score.format);
                table_set_episode(out, n, eps[i].task, nm, eps[i].score.correct);
            }
        table_finish(out);
        write_episodes(j, stage, eps, n);
        rl_episodes_free(eps, n);
        double wall = (now_ms() - t0) / 1000.0;
        char *js = table_json(out, stage, j->c.eval_split, wall);
        char *path = xasprintf("%s/eval_%s.json", j->dir, stage);
        if (rl_write_atomic(path, js, strlen(js)) != 0) fprintf(stderr, "viv train: %s: %s\n", path, strerror(errno));
        free(path), free(js);
        fprintf(stderr, "eval (%s): accuracy %.3f, format %.3f, %.1f s\n", stage, out->acc[out->n], out->fmt[out->n], wall);
        if (out->reruns || out->lost)
            fprintf(stderr, "eval (%s): %d episode runs re-run after the sandbox decided them; %d still lost (not scored)\n",
                    stage, out->reruns, out->lost);
    }
    return rc2;
}

/* The scripted teacher's own accuracy on the held-out tasks (one sample per
 * task at the configured error rate): what the model is measured against.
 * 0; -1 with err; 1 when there is no such teacher (an endpoint, or tasks
 * without reference solutions). */
static int evaluate_teacher(struct job *j, struct eval_table *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (strcmp(j->c.teacher, "scripted") || taskset_with_reference(&j->val) < j->val.n) return 1;
    double t0 = now_ms();
    size_t n = j->val.n;
    struct teacher te = {.error_rate = j->c.error_rate, .seed = (uint64_t)j->c.seed};
    struct episode_cfg cfg = {.max_turns = 16, .tool_timeout_ms = j->c.timeout_ms, .mode = GRADE_EVAL};
    struct episode_result *res = xcalloc(n, sizeof *res);
    int rc = run_episodes(&j->val, n, 8, j->pool, teacher_next, &te, &cfg, (uint64_t)j->c.seed, res, NULL, NULL, err,
                          errlen);
    for (size_t i = 0; i < n; i++) {
        if (res[i].end && !strcmp(res[i].end, "sandbox")) { /* still lost after its re-runs: not scored */
            out->lost++;
            continue;
        }
        const char *nm = j->val.t[res[i].task_index].task_name;
        table_add(out, nm, res[i].correct, res[i].format);
        out->reruns += res[i].reruns;
    }
    free(res);
    if (rc != 0 && out->lost == 0) return -1;
    table_finish(out);
    char *js = table_json(out, "teacher", j->c.eval_split, (now_ms() - t0) / 1000.0);
    char *path = xasprintf("%s/eval_teacher.json", j->dir);
    if (rl_write_atomic(path, js, strlen(js)) != 0) fprintf(stderr, "viv train: %s: %s\n", path, strerror(errno));
    free(path), free(js);
    fprintf(stderr, "eval (teacher): accuracy %.3f (error rate %.2f, one sample per task), %.1f s\n", out->acc[out->n],
            j->c.error_rate, (now_ms() - t0) / 1000.0);
    return 0;
}

/* ---- SFT phase ------------------------------------------------------------------------------------ */

struct sft_progress {
    int tty;
    double t0;
    const char *label; /* the phase, for the progress line */
    struct job *j;     /* the checks' (sft_check) */
    char *checks;      /* sft_checks.jsonl so far */
    double *steps, *acc, *fmt; /* the checks so far, for sft.svg */
    int nchecks;
    long first_check;  /* no check before this step: the end of the first epoch */
    long ended_at;     /* the step a check ended SFT at (0: none did) */
};

/* sft.svg: the checks' accuracy and format rate against the SFT step, and
 * the line SFT ends at (--sft-until). */
static void draw_sft_checks(const struct sft_progress *p) {
    const struct job *j = p->j;
    double until_y[2] = {j->c.sft_until, j->c.sft_until}, until_x[2] = {p->steps[0], p->steps[p->nchecks - 1]};
    struct svg_series s[3] = {{"accuracy", p->steps, p->acc, p->nchecks},
                              {"format rate", p->steps, p->fmt, p->nchecks},
                              {"--sft-until", until_x, until_y, 2}};
    char sub[160];
    snprintf(sub, sizeof sub, "greedy episodes on %d train tasks SFT does not see, every %d steps", j->c.sft_check_tasks,
             j->c.sft_check_every);
    struct svg_chart_opts o = {.title = "SFT's checks", .subtitle = sub, .xlabel = "SFT step", .ylabel = "rate",
                               .ymin = 0, .ymax = 1};
    char *svg = svg_line_chart(&o, s, j->c.sft_until > 0 ? 3 : 2);
    char *path = xasprintf("%s/sft.svg", j->dir);
    if (rl_write_atomic(path, svg, strlen(svg)) != 0) fprintf(stderr, "viv train: %s: %s\n", path, strerror(errno));
    free(path), free(svg);
}

static void sft_on_step(void *arg, long step, long total, float loss, float lr, double tps) {
    struct sft_progress *p = arg;
    double el = (now_ms() - p->t0) / 1000.0, eta = step ? el / step * (total - step) : 0;
    if (p->tty) {
        fprintf(stderr, "\r%s: step %ld/%ld loss %.4f lr %.2e %.0f tok/s eta %.0fs   ", p->label, step, total, loss, lr,
                tps, eta);
        if (step == total) fputc('\n', stderr);
    } else if (step == 1 || step % 10 == 0 || step == total)
        fprintf(stderr, "%s: step %ld/%ld loss %.4f lr %.2e %.0f tok/s eta %.0fs\n", p->label, step, total, loss, lr,
                tps, eta);
}

/* Train tasks [0, n) get teacher trajectories; GRPO draws from [rl_first, train.n). */
static size_t rl_first_task(const struct job *j) {
    return j->c.sft_tasks > 0 && (size_t)j->c.sft_tasks < j->train.n ? (size_t)j->c.sft_tasks : 0;
}

/* 0 from rl_first_task: one pool, SFT sees it all */
static size_t sft_task_count(const struct job *j) { return rl_first_task(j) ? rl_first_task(j) : j->train.n; }

/* SFT's check: greedy episodes on the first sft_check_tasks train tasks GRPO
 * draws from (never SFT's, never held out), so SFT can end on a measured
 * criterion without looking at the held-out split; from the end of the
 * first epoch on. Rank 0 runs them and says
 * for every rank whether SFT ends here. Each check is a line of
 * runs/NAME/sft_checks.jsonl (step, accuracy, format, tasks, seconds). */
static int sft_check(void *arg, long step, char *err, size_t errlen) {
    struct sft_progress *p = arg;
    struct job *j = p->j;
    if (step < p->first_check) return 0; /* every rank skips it alike */
    double verdict = 0; /* rank 0's: -1 error, 0 go on, 1 end SFT here */
    if (j->be->rank == 0) {
        double t0 = now_ms();
        size_t first = rl_first_task(j), left = first > 0 && first < j->train.n ? j->train.n - first : 0;
        struct task_set probe = {.t = j->train.t + first,
                                 .n = left < (size_t)j->c.sft_check_tasks ? left : (size_t)j->c.sft_check_tasks};
        struct rl_episode *eps = NULL;
        int reruns = 0, scored = 0, correct = 0, format = 0;
        if (probe.n == 0)
            verdict = -1, snprintf(err, errlen, "the SFT check has no train tasks SFT does not see (--sft-tasks)");
        else if (greedy_episodes(j, &probe, &eps, &reruns, err, errlen) != 0)
            verdict = -1;
        else {
            for (size_t i = 0; i < probe.n; i++)
                if (!eps[i].infra_error) scored++, correct += eps[i].score.correct > 0, format += eps[i].score.format > 0;
            rl_episodes_free(eps, (int)probe.n);
            double acc = scored ? (double)correct / scored : 0, fmt = scored ? (double)format / scored : 0;
            double secs = (now_ms() - t0) / 1000.0;
            verdict = j->c.sft_until > 0 && scored > 0 && acc >= j->c.sft_until;
            fprintf(stderr, "%ssft: check at step %ld: accuracy %.3f, format %.3f on %d unseen train tasks (%.1f s)%s\n",
                    p->tty ? "\n" : "", step, acc, fmt, scored, secs, verdict > 0 ? ": SFT ends here (--sft-until)" : "");
            char *line = xasprintf("%s{\"step\":%ld,\"accuracy\":%.6g,\"format_rate\":%.6g,\"tasks\":%d,\"seconds\":%.3f}\n",
                                   p->checks ? p->checks : "", step, acc, fmt, scored, secs);
            free(p->checks);
            p->checks = line;
            p->steps = xrealloc(p->steps, (size_t)(p->nchecks + 1) * sizeof *p->steps);
            p->acc = xrealloc(p->acc, (size_t)(p->nchecks + 1) * sizeof *p->acc);
            p->fmt = xrealloc(p->fmt, (size_t)(p->nchecks + 1) * sizeof *p->fmt);
            p->steps[p->nchecks] = (double)step, p->acc[p->nchecks] = acc, p->fmt[p->nchecks] = fmt;
            p->nchecks++;
            draw_sft_checks(p);
            char *path = xasprintf("%s/sft_checks.jsonl", j->dir);
            if (rl_write_atomic(path, line, strlen(line)) != 0) fprintf(stderr, "viv train: %s: %s\n", path, strerror(errno));
            free(path);
        }
    }
    if (j->be->world > 1 && j->be->ops->allreduce_sum(j->be, &verdict, 1) != 0) /* the others add 0 */
        return snprintf(err, errlen, "the SFT check's verdict: %s", j->be->err), -1;
    if (verdict < 0 && j->be->rank != 0) snprintf(err, errlen, "the SFT check failed on rank 0");
    if (verdict > 0) p->ended_at = step;
    return verdict < 0 ? -1 : verdict > 0;
}

static int tok_progress_tty;
static void tok_progress(int done, int total) {
    if (tok_progress_tty) fprintf(stderr, "\rtokenizer: %d/%d merges", done, total);
}

static int sft_phase(struct job *j, struct sft_set *set, char *err, size_t errlen) {
    int n = set->n;
    struct chat *ex = xcalloc((size_t)n, sizeof *ex);
    long toks = 0, masked = 0;
    for (int i = 0; i < n; i++) {
        chat_init(&ex[i]);
        if (sft_render(&set->v[i], j->train.t[set->v[i].task].prompt, j->tok, &ex[i]) != 0) {
            snprintf(err, errlen, "sft: cannot tokenise trajectory %d", i);
            for (int k = 0; k <= i; k++) chat_free(&ex[k]);
            free(ex);
            return -1;
        }
        toks += ex[i].n;
        for (int t = 0; t < ex[i].n; t++) masked += ex[i].mask[t];
    }
    int quiet = j->be->rank != 0; /* rank 0 alone reports */
    if (!quiet) fprintf(stderr, "sft: %d trajectories, %ld tokens (%ld assistant tokens trained on)\n", n, toks, masked);
    struct adamw_config ac;
    adamw_defaults(&ac);
    ac.lr = (float)j->c.sft_lr;
    ac.weight_decay = 0.0f;
    long steps = (long)((n + j->c.sft_batch - 1) / j->c.sft_batch) * j->c.sft_epochs;
    ac.warmup_steps = (int)(steps / 20 + 1);
    ac.total_steps = (int)steps;
    ac.min_lr_ratio = 0.1f;
    if (j->be->ops->opt_init(j->be, &ac) != 0) {
        for (int i = 0; i < n; i++) chat_free(&ex[i]);
        free(ex);
        return snprintf(err, errlen, "sft: %s", j->be->err), -1;
    }
    if (!quiet && !j->c.sft_checks_given && j->c.sft_check_every == 0)
        fprintf(stderr, "sft: it sees every train task, so there are none to check on: it runs all %d epochs\n",
                j->c.sft_epochs);
    /* a model that has not yet seen every trajectory once is not judged:
     * the checks start at the end of the first epoch (they would measure 0
     * there, at the price of its longest episodes) */
    struct sft_progress pr = {.tty = isatty(2), .t0 = now_ms(), .label = "sft", .j = j,
                              .first_check = (n + j->c.sft_batch - 1) / j->c.sft_batch};
    struct sft_opts so = {.epochs = j->c.sft_epochs, .batch = j->c.sft_batch, .max_len = j->c.max_context,
                          .seed = (uint64_t)j->c.seed, .on_step = quiet ? NULL : sft_on_step, .arg = &pr,
                          .check_every = j->c.sft_check_every, .check = sft_check};
    float loss = sft_train(j->be, ex, n, &so, err, errlen);
    for (int i = 0; i < n; i++) chat_free(&ex[i]);
    free(ex);
    free(pr.checks), free(pr.steps), free(pr.acc), free(pr.fmt);
    if (isnan(loss)) return -1;
    if (!quiet && pr.ended_at)
        fprintf(stderr, "sft: ended by the check at step %ld of %ld, last epoch's mean loss %.4f, %.1f s\n", pr.ended_at,
                steps, loss, (now_ms() - pr.t0) / 1000.0);
    else if (!quiet)
        fprintf(stderr, "sft: done, last epoch's mean loss %.4f, %.1f s\n", loss, (now_ms() - pr.t0) / 1000.0);
    return 0;
}

/* Teacher trajectories, tokenizer (when training from scratch), model. */
static int prepare_model(struct job *j, struct sft_set *set, char *err, size_t errlen) {
    if (!j->c.no_sft) {
        struct sft_collect_opts co = {.samples = j->c.samples, .error_rate = j->c.error_rate,
                                      .seed = (uint64_t)j->c.seed, .concurrency = 8, .max_turns = 16,
                                      .timeout_ms = j->c.timeout_ms};
        double t0 = now_ms();
        struct llm_agent *endpoint = NULL;
        if (strcmp(j->c.teacher, "scripted") != 0) { /* an OpenAI-compatible endpoint (rl/serve/llm_agent.h) */
            char *spec = xasprintf("endpoint:%s", j->c.teacher);
            struct agent_options ao = {.model = j->c.teacher_model, .api_key_env = j->c.api_key_env,
                                       .max_tokens = j->c.teacher_max_tokens, .temperature = j->c.teacher_temperature};
            endpoint = llm_agent_open(spec, &ao, err, errlen);
            free(spec);
            if (!endpoint) return -1;
            co.agent = llm_agent_next, co.agent_ctx = endpoint, co.run = llm_agent_run;
            co.concurrency = j->c.teacher_concurrency; /* requests in flight (rl/serve/agent_pool.h) */
        }
        /* the first sft_tasks train tasks (shapes in turn): a prefix, so a
         * trajectory's task index is the same in j->train */
        struct task_set sft_ts = {.t = j->train.t, .n = sft_task_count(j)};
        fprintf(stderr, "sft: rejection sampling: %d teacher samples for each of %zu train tasks%s%s\n", j->c.samples,
                sft_ts.n, endpoint ? " from " : "", endpoint ? j->c.teacher : "");
        int crc = sft_collect(&sft_ts, j->pool, &co, set, err, errlen);
        if (endpoint) {
            const char *last;
            long turns = llm_agent_turns(endpoint);
            int failed = llm_agent_failures(endpoint, &last);
            if (failed) fprintf(stderr, "sft: %d of %ld teacher requests failed; the last: %s\n", failed, turns, last);
            if (crc == 0 && failed && failed == turns)
                crc = (snprintf(err, errlen, "sft: every request to the teacher failed: %s", last), -1);
            llm_agent_close(endpoint);
        }
        if (crc != 0) return -1;
        fprintf(stderr, "sft: kept %d of %zu tasks (%ld teacher episodes, %.1f s)\n", set->n, sft_ts.n, set->sampled,
                (now_ms() - t0) / 1000.0);
        if (set->reruns || set->lost)
            fprintf(stderr, "sft: %ld teacher episodes ended by the sandbox were run again; %ld still lost (not counted)\n",
                    set->reruns, set->lost);
        if (set->n == 0) return snprintf(err, errlen, "sft: the teacher solved no task"), -1;
    }
    if (j->c.model_dir) {
        j->m = qwen3_load(j->c.model_dir, err, errlen);
        if (!j->m) return -1;
        j->tok = tokenizer_load(j->c.model_dir, err, errlen);
        if (!j->tok) return -1;
        if (tokenizer_vocab_size(j->tok) > j->m->cfg.vocab_size)
            return snprintf(err, errlen, "%s: the tokenizer has more ids than the model's vocabulary", j->c.model_dir), -1;
        return 0;
    }
    /* tokenizer: prompts of every train task + the kept trajectories */
    size_t nt = j->train.n + (size_t)set->n;
    char **texts = xcalloc(nt, sizeof *texts);
    size_t *lens = xcalloc(nt, sizeof *lens);
    for (size_t i = 0; i < j->train.n; i++) texts[i] = turn_prompt_text(j->train.t[i].prompt);
    for (size_t i = 0; i < j->train.n; i++) lens[i] = strlen(texts[i]);
    for (int i = 0; i < set->n; i++)
        texts[j->train.n + i] = sft_text(&set->v[i], j->train.t[set->v[i].task].prompt, &lens[j->train.n + i]);
    double t0 = now_ms();
    tok_progress_tty = isatty(2);
    j->tok = tokenizer_train((const char *const *)texts, lens, nt, j->c.vocab, tok_progress, err, errlen);
    if (tok_progress_tty) fputc('\n', stderr);
    for (size_t i = 0; i < nt; i++) free(texts[i]);
    free(texts), free(lens);
    if (!j->tok) return -1;
    fprintf(stderr, "tokenizer: %d ids, %.1f s\n", tokenizer_vocab_size(j->tok), (now_ms() - t0) / 1000.0);
    struct qwen3_config mc = {.vocab_size = tokenizer_vocab_size(j->tok), .hidden_size = j->c.d_model,
                              .intermediate_size = j->c.ffn, .num_layers = j->c.layers, .num_heads = j->c.heads,
                              .num_kv_heads = j->c.kv_heads, .head_dim = j->c.head_dim,
                              .max_position = j->c.max_context, .rms_norm_eps = 1e-6f, .rope_theta = 10000.0,
                              .tie_word_embeddings = 1, .bos_token_id = -1,
                              .eos_token_id = tokenizer_token_id(j->tok, "<|im_end|>")};
    if (qwen3_config_validate(&mc, err, errlen) != 0) return -1;
    j->m = qwen3_create(&mc, err, errlen);
    if (!j->m) return -1;
    qwen3_init_random(j->m, (uint64_t)j->c.seed, 0.02f);
    fprintf(stderr, "model: Qwen3 %d layers, width %d, %d heads (%d kv), ffn %d, vocab %d: %zu parameters\n",
            mc.num_layers, mc.hidden_size, mc.num_heads, mc.num_kv_heads, mc.intermediate_size, mc.vocab_size,
            j->m->n_params);
    return 0;
}

/* ---- the GRPO loop ------------------------------------------------------------------------------ */

static uint64_t step_rng(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The tasks of step s: a function of (seed, s) only, so a resumed run
 * draws exactly what the killed one would have. */
static void step_tasks(const struct job *j, long s, int *tasks, int n) {
    uint64_t st = (uint64_t)j->c.seed * 0x100000001b3ull ^ (uint64_t)s * 0x9e3779b97f4a7c15ull;
    int first = (int)rl_first_task(j), N = (int)j->train.n - first;
    int *perm = xcalloc((size_t)N, sizeof *perm);
    for (int i = 0; i < N; i++) perm[i] = i;
    for (int i = 0; i < n; i++) {
        int k = i + (int)(step_rng(&st) % (uint64_t)(N - i));
        int t = perm[i];
        perm[i] = perm[k], perm[k] = t;
        tasks[i] = first + perm[i];
    }
    free(perm);
}

/* The task name of train task `task` (step_stats' per-shape rows). */
static const char *train_shape_of(void *ctx, int task) {
    const struct job *j = ctx;
    return task >= 0 && (size_t)task < j->train.n ? j->train.t[task].task_name : NULL;
}

/* DAPO's soft overlong punishment: an episode whose generated tokens L go
 * past budget - buffer loses (L - (budget - buffer)) / buffer of reward, up
 * to 1 at the budget (max_turns x max_turn_tokens), so length is discouraged
 * smoothly before the hard cut (whose samples are masked). buffer 0: off. */
static void overlong_shape(struct rl_episode *eps, int n, double budget, double buffer) {
    if (buffer <= 0) return;
    if (buffer > budget / 4) buffer = budget / 4; /* a small budget: its last quarter (DAPO: 4k of 20k) */
    for (int i = 0; i < n; i++) {
        double L = 0;
        for (int t = 0; t < eps[i].n_tokens; t++) L += eps[i].mask[t];
        double over = (L - (budget - buffer)) / buffer;
        if (over > 0) eps[i].score.reward -= over < 1 ? over : 1;
    }
}

/* Does group eps[0..G) carry signal (rewards not all equal)? */
static int group_varies(const struct rl_episode *e, int G) {
    for (int i = 1; i < G; i++)
        if (e[i].score.reward != e[0].score.reward) return 1;
    return 0;
}

/* Dynamic sampling: keep the groups of *eps with signal; while fewer than
 * ntasks and rounds are left, roll out the next tasks of the step's draw
 * (tasks[ntasks * k ..]) and keep theirs. *eps / *nseq become the kept
 * groups (at most ntasks; all of the first round's when none has signal, so
 * the update still runs). Every sampled episode goes into ss. 0 or -1. */
static int refill_groups(struct job *j, struct rl_rollout *r, struct model_gen *g, long s, const int *tasks,
                         int ntasks, int rounds, int G, struct rl_episode **eps, int *nseq, struct step_stats *ss,
                         struct rl_step_stats *st, char *err, size_t errlen) {
    struct rl_episode *keep = xcalloc((size_t)ntasks * G, sizeof *keep), *drop = NULL;
    int nkeep = 0, ndrop = 0;
    struct rl_episode *cur = *eps;
    int ncur = *nseq, rc = 0;
    for (int k = 0;; k++) {
        drop = xrealloc(drop, (size_t)(ndrop + ncur) * sizeof *drop);
        for (int gi = 0; gi + G <= ncur; gi += G) {
            int take = nkeep < ntasks * G && group_varies(cur + gi, G);
            for (int i = 0; i < G; i++) {
                if (take) keep[nkeep++] = cur[gi + i];
                else drop[ndrop++] = cur[gi + i];
            }
        }
        free(cur); /* its episodes now live in keep[] or drop[] */
        cur = NULL;
        if (nkeep >= ntasks * G || k == rounds) break;
        int need = ntasks - nkeep / G;
        model_gen_invalidate(g);
        g->seed = (uint64_t)j->c.seed * 1000003u + (uint64_t)s + 7919u * (uint64_t)(k + 1);
        struct rl_step_stats st2;
        memset(&st2, 0, sizeof st2);
        if (rl_rollout_step(r, tasks + ntasks * (k + 1), need, G, &cur, &st2, err, errlen) != 0) {
            rc = -1;
            break;
        }
        ncur = need * G;
        overlong_shape(cur, ncur, (double)j->c.max_turns * j->c.max_turn_tokens, j->c.overlong_buffer);
        step_stats_add_episodes(ss, cur, ncur, G, train_shape_of, j);
        st->gen_busy_ms += st2.gen_busy_ms, st->wall_ms += st2.wall_ms, st->tool_calls += st2.tool_calls;
        st->tool_errors += st2.tool_errors, st->tool_timeouts += st2.tool_timeouts, st->tool_lost += st2.tool_lost;
    }
    if (rc == 0 && nkeep == 0) { /* no group had signal: the first round's go to the update (they teach nothing) */
        int n = ndrop < ntasks * G ? ndrop : ntasks * G;
        memcpy(keep, drop, (size_t)n * sizeof *keep);
        memmove(drop, drop + n, (size_t)(ndrop - n) * sizeof *drop);
        nkeep = n, ndrop -= n;
    }
    rl_episodes_free(drop, ndrop);
    *eps = keep, *nseq = nkeep;
    return rc;
}

/* One step's line of metrics.jsonl: the step's statistics (step_stats.c)
 * and the rollout's timings and tool counters, with the key strings they
 * need. */
struct step_line {
    struct rl_kv kv[96];
    int nkv, ntm;
    struct rl_task_metric tm[MAX_SHAPES];
    char toolkey[8][48], hostkey[RL_MAX_HOSTS][32];
};

static void step_line_fill(struct step_line *l, const struct job *j, struct rl_rollout *r, const struct step_stats *ss,
                           const struct rl_step_stats *st, double t_roll, double t_upd, int skipped) {
    struct rl_kv *kv = l->kv;
    int nkv = step_stats_kv(ss, kv, 64, l->tm, &l->ntm);
#define KV(k, v) kv[nkv++] = (struct rl_kv){k, (double)(v)}
    KV("episodes_per_s", ss->v[SS_EPISODES] / ((t_roll + 1e-9) / 1000.0));
    KV("rollout_s", t_roll / 1000.0), KV("update_s", t_upd / 1000.0);
    KV("gen_s", st->gen_busy_ms / 1000.0), KV("tool_wait_s", (st->wall_ms - st->gen_busy_ms) / 1000.0);
    KV("gen_idle_frac", st->gen_idle_frac), KV("tool_calls", st->tool_calls), KV("tool_errors", st->tool_errors);
    KV("tool_timeouts", st->tool_timeouts), KV("nan_skipped", skipped);
    /* mean vivd wall time per configured tool so far (0 until it is first called) */
    int ntools_st = 0;
    const struct rl_tool_stats *ts = rl_rollout_tool_stats(r, &ntools_st);
    for (int t = 0; t < j->ntools && t < 8 && nkv < 62; t++) {
        double mean = 0;
        for (int u = 0; u < ntools_st; u++)
            if (!strcmp(ts[u].name, j->tools[t].name)) mean = ts[u].mean_ms;
        snprintf(l->toolkey[t], sizeof l->toolkey[t], "tool_ms_%s", j->tools[t].name);
        KV(l->toolkey[t], mean);
    }
    /* the sandbox hosts: calls answered by each this step, hosts up at its end */
    for (int h = 0; h < st->nhosts && h < RL_MAX_HOSTS && nkv < 94; h++) {
        snprintf(l->hostkey[h], sizeof l->hostkey[h], "sandbox_calls_%d", h);
        KV(l->hostkey[h], st->host_calls[h]);
    }
    if (nkv < 94) KV("sandbox_hosts_up", st->hosts_up), KV("tool_lost", st->tool_lost);
#undef KV
    l->nkv = nkv;
}

static int rl_phase(struct job *j, long first_step, char *err, size_t errlen) {
    int G = j->c.group, ntasks = j->c.tasks_per_step;
    if (ntasks > (int)(j->train.n - rl_first_task(j))) ntasks = (int)(j->train.n - rl_first_task(j));
    int nseq = ntasks * G;
    struct grpo_cfg gc;
    grpo_cfg_default(&gc);
    gc.clip_low = j->c.clip_low, gc.clip_high = j->c.clip_high, gc.std_norm = j->c.std_norm;
    gc.agg = grpo_agg_parse(j->c.agg), gc.kl_coef = j->c.kl_coef, gc.entropy_coef = j->c.entropy_coef;
    gc.dynamic_sampling = j->c.dynamic_sampling, gc.mask_overlong_malformed = j->c.mask_overlong_malformed;
    gc.dr_grpo_norm = j->c.max_turn_tokens;
    struct train_backend *be = j->be, *ref = NULL;
    int W = be->world, rank = be->rank;
    if (gc.kl_coef > 0) { /* the reference: the policy as RL starts */
        ref = be->ops->fork(be);
        if (!ref) return snprintf(err, errlen, "KL reference: %s", be->err), -1;
    }
    struct bio_env env = {.ts = &j->train, .mode = GRADE_TRAIN};
    struct rl_env_ops ops;
    bio_env_init(&env, &ops);
    struct model_gen g;
    struct rl_rollout *r = open_rollout(j, (ntasks + W - 1) / W * G, &g, &ops, err, errlen);
    if (!r) {
        train_backend_free(ref);
        return -1;
    }
    g.temperature = (float)j->c.temperature, g.top_p = (float)j->c.top_p;
    /* data parallel: this rank rolls out and trains on the step's tasks i with
     * i % W == rank (all of them with one rank) */
    /* dynamic sampling (DAPO): groups whose rewards are all equal carry no
     * gradient; they are set aside and more tasks rolled out, up to
     * REFILL_ROUNDS more rounds, until the step has ntasks groups with signal
     * (one rank only: with several, such groups are just left out) */
    enum { REFILL_ROUNDS = 2 };
    int refill = j->c.dynamic_sampling && W == 1 ? REFILL_ROUNDS : 0;
    int *tasks = xcalloc((size_t)ntasks * (refill + 1), sizeof *tasks), *ltasks = xcalloc((size_t)ntasks, sizeof *ltasks);
    const char *names[MAX_SHAPES];
    int nnames = task_names(&j->train, names, MAX_SHAPES);
    int rcode = 0;
    if (j->run) rl_run_begin_phase(j->run, "grpo", first_step);
    for (long s = first_step; s <= j->c.steps; s++) {
        if (be->ops->snapshot(be) != 0) { /* last good state, for NaN/inf recovery */
            snprintf(err, errlen, "snapshot: %s", be->err);
            rcode = -1;
            break;
        }
        step_tasks(j, s, tasks, ntasks * (refill + 1)); /* the refills' tasks follow the step's own */
        int nloc = 0;
        for (int i = rank; i < ntasks; i += W) ltasks[nloc++] = tasks[i];
        nseq = nloc * G;
        model_gen_invalidate(&g);
        g.seed = (uint64_t)j->c.seed * 1000003u + (uint64_t)s;
        struct rl_episode *eps = NULL;
        struct rl_step_stats st;
        double t0 = now_ms();
        memset(&st, 0, sizeof st);
        if (nloc > 0 && rl_rollout_step(r, ltasks, nloc, G, &eps, &st, err, errlen) != 0) {
            rcode = -1;
            break;
        }
        double budget = (double)j->c.max_turns * j->c.max_turn_tokens;
        overlong_shape(eps, nseq, budget, j->c.overlong_buffer);
        struct step_stats ss;
        step_stats_init(&ss, names, nnames);
        step_stats_add_episodes(&ss, eps, nseq, G, train_shape_of, j); /* every episode sampled */
        int ngroups = ntasks; /* the groups the update sees (over all ranks) */
        if (refill > 0 && refill_groups(j, r, &g, s, tasks, ntasks, refill, G, &eps, &nseq, &ss, &st, err, errlen) != 0) {
            rl_episodes_free(eps, nseq);
            rcode = -1;
            break;
        }
        if (refill > 0) ngroups = nseq / G;
        double t_roll = now_ms() - t0;
        if (j->c.inject_nan_step == s) be->ops->set_param(be, 0, NAN); /* tests: a poisoned update */
        double t1 = now_ms();
        /* minibatches: the step's groups split into `minibatches` updates (verl's
         * ppo_mini_batch): the later ones are slightly off-policy, which is what the
         * clipped ratio against the sampling log-probs corrects for */
        int nmb = j->c.minibatches < ngroups ? j->c.minibatches : ngroups, ok = 1;
        for (int b = 0; b < nmb && ok; b++) {
            int g0 = ngroups * b / nmb, g1 = ngroups * (b + 1) / nmb;
            /* this rank's groups among [g0, g1): those with index i % W == rank */
            int l0 = g0 > rank ? (g0 - rank + W - 1) / W : 0, l1 = g1 > rank ? (g1 - rank + W - 1) / W : 0;
            struct grpo_step_out o1;
            if (grpo_update(be, ref, &gc, eps + (size_t)l0 * G, (l1 - l0) * G, G, &o1, err, errlen) != 0) {
                ok = 0;
                break;
            }
            step_stats_add_update(&ss, &o1);
            if (ss.nonfinite) break;
        }
        if (!ok) {
            rl_episodes_free(eps, nseq);
            rcode = -1;
            break;
        }
        double t_upd = now_ms() - t1;
        int skipped = ss.nonfinite || !be->ops->params_finite(be);
        if (skipped) {
            if (be->ops->restore(be) != 0) {
                snprintf(err, errlen, "restore: %s", be->err);
                rl_episodes_free(eps, nseq);
                rcode = -1;
                break;
            }
            if (rank == 0) fprintf(stderr, "\nviv train: step %ld: NaN/inf in the loss or gradients: update skipped, "
                            "last good weights and optimizer state restored\n", s);
        }
        /* metrics: every rank's sums */
        if (step_stats_allreduce(&ss, be) != 0) {
            snprintf(err, errlen, "metrics: %s", be->err);
            rl_episodes_free(eps, nseq);
            rcode = -1;
            break;
        }
        struct step_line line;
        step_line_fill(&line, j, r, &ss, &st, t_roll, t_upd, skipped);
        rl_episodes_free(eps, nseq);
        int ckpt_now = s % j->c.ckpt_every == 0 || s == j->c.steps;
        if (ckpt_now && be->ops->sync_down(be) != 0) { /* every rank: the GPU's weights and moments into j->m, opt */
            snprintf(err, errlen, "%s", be->err);
            rcode = -1;
            break;
        }
        if (rank != 0) continue; /* rank 0 alone writes metrics and checkpoints */
        rl_run_log_step(j->run, s, line.kv, line.nkv, line.tm, line.ntm);
        if (ckpt_now) {
            if (save_checkpoint(j, s, err, errlen) != 0) {
                rcode = -1;
                break;
            }
            rl_run_write_charts(j->run, err, errlen);
        }
    }
    free(tasks), free(ltasks);
    rl_rollout_free(r);
    model_gen_free(&g);
    train_backend_free(ref);
    return rcode;
}

/* ---- the command ---------------------------------------------------------------------------- */

/* The world size an MPI launcher (Open MPI, MPICH / PMI, PMIx, Slurm's
 * srun with PMI) gave this process; 0 when none started it. */
static int mpi_launch_size(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 0;
}

/* Data parallel: rank 0 prepared the model (teacher trajectories,
 * tokenizer, initial weights; prc its status); every other rank gets the
 * same. The trajectories travel as JSON over MPI; the tokenizer and the
 * weights through runs/NAME/init (written by rank 0) or the --model
 * directory. 0, or -1 with err on every rank when rank 0 failed. */
static int share_prepared(struct job *j, struct sft_set *set, int prc, int rank, char *err, size_t errlen) {
    char *init = xasprintf("%s/init", j->dir), *blob = NULL;
    uint64_t len = 0; /* 0: rank 0 has nothing to share */
    if (rank == 0 && prc == 0 &&
        (j->c.model_dir || (qwen3_save(j->m, init, ST_F32, err, errlen) == 0 && tokenizer_save(j->tok, init, err, errlen) == 0))) {
        blob = sft_set_pack(set);
        len = strlen(blob) + 1;
    }
    int rc = -1;
    if (train_dist_bcast(&len, sizeof len) != 0) {
        snprintf(err, errlen, "MPI_Bcast failed");
        goto out;
    }
    if (len == 0) {
        if (rank != 0 || prc == 0) snprintf(err, errlen, "rank 0 could not prepare the model");
        goto out;
    }
    if (rank != 0) blob = xmalloc(len);
    if (train_dist_bcast(blob, len) != 0) {
        snprintf(err, errlen, "MPI_Bcast failed");
        goto out;
    }
    if (rank != 0) {
        const char *from = j->c.model_dir ? j->c.model_dir : init;
        if (sft_set_unpack(blob, set, err, errlen) != 0) goto out;
        if (!(j->m = qwen3_load(from, err, errlen)) || !(j->tok = tokenizer_load(from, err, errlen))) goto out;
    }
    rc = 0;
out:
    free(init), free(blob);
    return rc;
}

static int run_job(struct train_cfg *c) {
    const char *cmd = c->sft_only ? "sft" : "train";
    char err[512] = "";
    struct job j = {.c = *c, .t0 = now_ms()};
    struct private_vivd vp = {0};
    struct sft_set set = {0};
    int rc = 1;
    static const char *const stage[3] = {"before_sft", "after_sft", "after_rl"};
    struct eval_table tab[3], teacher_tab;
    memset(tab, 0, sizeof tab);
    memset(&teacher_tab, 0, sizeof teacher_tab);
    char *names_store[3][MAX_SHAPES] = {{0}};
    char *ckpt = NULL;
    long ckpt_step = -1;
    int rank = 0, world = 1;
    par_set_threads(c->threads);
    char *train_path = xasprintf("%s/tasks/train.jsonl", c->data), *val_path = xasprintf("%s/tasks/val.jsonl", c->data);
    /* 0. the device, and data parallel: under an MPI launcher with --device cuda,
     * one rank per GPU (MPI + NCCL; a launch of one rank runs the same path) */
    if (!strcmp(c->device, "cuda") && train_backend_cuda_devices(err, sizeof err) <= 0) {
        fprintf(stderr, "viv %s: --device cuda: no CUDA device (%s)\n", cmd, err);
        goto out;
    }
    if (mpi_launch_size() > 1 || (mpi_launch_size() == 1 && !strcmp(c->device, "cuda"))) {
        if (strcmp(c->device, "cuda")) {
            fprintf(stderr, "viv %s: started by mpirun: data-parallel training needs --device cuda (bin/viv-cuda)\n", cmd);
            goto out;
        }
        if (train_dist_init(NULL, NULL, &rank, &world, err, sizeof err) != 0) {
            fprintf(stderr, "viv %s: %s\n", cmd, err);
            goto out;
        }
        if (rank == 0) fprintf(stderr, "viv %s: data parallel over %d ranks (MPI + NCCL)\n", cmd, world);
    }
    /* 1. data (rank 0 builds it; the others wait). Only the default location
     * is built: a --data DIR that lacks the tasks is most likely a typo, and
     * building takes a while and downloads ~430 MB. */
    if (rank == 0 && c->data_given && (!file_exists(train_path) || !file_exists(val_path))) {
        fprintf(stderr, "viv %s: --data %s: no task data there (%s missing); build it with: viv data build --out %s\n",
                cmd, c->data, file_exists(train_path) ? val_path : train_path, c->data);
        rc = 2;
        goto out;
    }
    if (rank == 0 && (!file_exists(train_path) || !file_exists(val_path))) {
        fprintf(stderr, "viv %s: no task data in %s: building it (viv data build --out %s)\n", cmd, c->data, c->data);
        char *argv[] = {"data", "build", "--out", (char *)c->data, NULL};
        if (cmd_data(4, argv) != 0) {
            fprintf(stderr, "viv %s: building the data failed\n", cmd);
            goto out;
        }
    }
    if (world > 1 && train_dist_barrier() != 0) goto out;
    if (taskset_load(train_path, "train", &j.train, err, sizeof err) != 0 ||
        taskset_load(val_path, "val", &j.val, err, sizeof err) != 0) {
        fprintf(stderr, "viv %s: %s\n", cmd, err);
        goto out;
    }
    if (!strcmp(c->eval_split, "val,test")) { /* both held-out splits: twice the episodes, half the variance */
        char *test_path = xasprintf("%s/tasks/test.jsonl", c->data);
        struct task_set te;
        int lrc = taskset_load(test_path, "test", &te, err, sizeof err);
        free(test_path);
        if (lrc != 0) {
            fprintf(stderr, "viv %s: %s\n", cmd, err);
            goto out;
        }
        j.val.t = xrealloc(j.val.t, (j.val.n + te.n) * sizeof *j.val.t);
        memcpy(j.val.t + j.val.n, te.t, te.n * sizeof *te.t);
        j.val.n += te.n;
        free(te.t); /* the rows now belong to j.val */
    }
    const char *shapes = c->tasks && strcmp(c->tasks, "all") ? c->tasks : NULL;
    taskset_filter(&j.train, shapes, c->train_limit);
    /* SFT's share is a prefix of the train tasks: shapes in turn, so it holds each shape */
    if (c->sft_tasks > 0) taskset_filter(&j.train, NULL, (int)j.train.n);
    taskset_filter(&j.val, c->eval_tasks && strcmp(c->eval_tasks, "all") ? c->eval_tasks : NULL, c->eval_limit);
    if (j.train.n == 0 || j.val.n == 0) {
        fprintf(stderr, "viv %s: no tasks left (check --tasks)\n", cmd);
        goto out;
    }
    if (c->sft_check_every > 0 && !c->no_sft && rl_first_task(&j) == 0) {
        if (c->sft_checks_given) {
            fprintf(stderr, "viv %s: --sft-check-every / --sft-until check on train tasks SFT does not see, and --sft-tasks %d "
                            "leaves none of the %zu (give a smaller --sft-tasks)\n", cmd, c->sft_tasks, j.train.n);
            rc = 2;
            goto out;
        }
        c->sft_check_every = j.c.sft_check_every = 0; /* the default checks need such tasks (sft_phase says so) */
    }
    if (taskset_with_reference(&j.train) < j.train.n && !c->no_sft && !strcmp(c->teacher, "scripted")) {
        fprintf(stderr, "viv %s: some training tasks have no reference solution for the scripted teacher\n", cmd);
        goto out;
    }
    /* 2. the run directory */
    j.dir = xasprintf("%s/%s", c->runs, c->name);
    ckpt = c->resume ? latest_checkpoint(j.dir, &ckpt_step) : NULL;
    note_resumable(c, ckpt ? ckpt_step : -1);
    if (c->resume && !ckpt) fprintf(stderr, "viv %s: --resume: no checkpoint in %s: starting from the beginning\n", cmd, j.dir);
    if (!c->resume && !c->overwrite && rank == 0 && run_dir_has_run(j.dir)) {
        fprintf(stderr, "viv %s: %s already holds a run: continue it with --resume, or replace it with --overwrite "
                        "(or pick another --name)\n", cmd, j.dir);
        rc = 2;
        goto out;
    }
    if (!c->resume && rank == 0 && file_exists(j.dir)) {
        /* --overwrite: a fresh run replaces the old one of the same name */
        static const char *const stale[] = {"checkpoints/latest", "metrics.jsonl", "sft_checks.jsonl", "sft.svg"};
        for (size_t i = 0; i < sizeof stale / sizeof stale[0]; i++) {
            char *old = xasprintf("%s/%s", j.dir, stale[i]);
            unlink(old);
            free(old);
        }
    }
    if (rank == 0) { /* rank 0 alone writes the run's files */
        if (ckpt) truncate_metrics(j.dir, ckpt_step);
        char *cj = config_json(c);
        j.run = rl_run_open(c->runs, c->name, cj, c->steps, err, sizeof err);
        free(cj);
        if (!j.run) {
            fprintf(stderr, "viv %s: %s\n", cmd, err);
            goto out;
        }
        const char *keys[MAX_SHAPES];
        rl_run_set_task_names(j.run, keys, run_task_names(&j.train, &j.val, keys, MAX_SHAPES));
    }
    /* 3. vivd */
    {
        char *spec = NULL, *token = NULL;
        if (c->sandbox) spec = xstrdup(c->sandbox);
        else if (c->socket) spec = xasprintf("unix:%s", c->socket);
        else {
            if (private_vivd_start(&vp, c->data, "viv train", err, sizeof err) != 0) {
                fprintf(stderr, "viv %s: %s\n", cmd, err);
                goto out;
            }
            spec = xasprintf("unix:%s", vp.sock);
        }
        token = viv_pool_token(c->sandbox_token_file, err, sizeof err);
        j.pool = token || !err[0] ? viv_pool_open(spec, token, stderr, 10000, err, sizeof err) : NULL;
        free(spec), free(token);
        if (!j.pool) {
            fprintf(stderr, "viv %s: %s\n", cmd, err);
            goto out;
        }
    }
    j.ntools = bio_tool_cfgs(j.tools, 4, c->timeout_ms);
    if (rank == 0) fprintf(stderr, "viv %s: %zu train tasks, %zu held-out tasks (%s), run dir %s\n", cmd, j.train.n, j.val.n,
            c->eval_split, j.dir);
    long first_step = 1;
    if (ckpt) {
        j.m = qwen3_load(ckpt, err, sizeof err);
        j.tok = j.m ? tokenizer_load(ckpt, err, sizeof err) : NULL;
        if (!j.m || !j.tok) {
            fprintf(stderr, "viv %s: %s: %s\n", cmd, ckpt, err);
            goto out;
        }
        fprintf(stderr, "viv %s: resuming from %s (step %ld)\n", cmd, ckpt, ckpt_step);
        first_step = ckpt_step + 1;
        for (int k = 0; k < 2; k++) {
            char *p = xasprintf("%s/eval_%s.json", j.dir, stage[k]);
            table_load(p, &tab[k], names_store[k]);
            free(p);
            p = xasprintf("%s/episodes_%s.jsonl", j.dir, stage[k]); /* per task, for the paired difference */
            table_load_episodes(p, &tab[k], &j.val);
            free(p);
        }
    } else {
        /* rank 0 collects the teacher's trajectories and builds the model; the others get them */
        int prc = rank == 0 ? prepare_model(&j, &set, err, sizeof err) : 0;
        if (prc != 0) fprintf(stderr, "viv %s: %s\n", cmd, err);
        if (world > 1 && share_prepared(&j, &set, prc, rank, err, sizeof err) != 0) {
            if (prc == 0) fprintf(stderr, "viv %s: rank %d: %s\n", cmd, rank, err);
            goto out;
        }
        if (prc != 0) goto out;
    }
    /* 3b. the device: the model's weights go up once (--device cuda) */
    j.be = train_backend_open_opts(c->device, j.m, &c->bopts, err, sizeof err);
    if (!j.be) {
        fprintf(stderr, "viv %s: %s\n", cmd, err);
        goto out;
    }
    if (rank == 0 && strcmp(c->device, "cpu")) fprintf(stderr, "viv %s: training and decoding on %s%s\n", cmd, c->device, j.be->desc);
    if (!ckpt) {
        if (!c->no_sft) {
            if (!c->sft_only && rank == 0 && evaluate(&j, stage[0], &tab[0], err, sizeof err) != 0) {
                fprintf(stderr, "viv %s: eval: %s\n", cmd, err);
                goto out;
            }
            if (sft_phase(&j, &set, err, sizeof err) != 0) {
                fprintf(stderr, "viv %s: %s\n", cmd, err);
                goto out;
            }
        }
        if (rank == 0 && evaluate(&j, stage[1], &tab[1], err, sizeof err) != 0) {
            fprintf(stderr, "viv %s: eval: %s\n", cmd, err);
            goto out;
        }
    }
    /* 4. GRPO */
    struct adamw_config ac;
    adamw_defaults(&ac);
    ac.lr = (float)c->rl_lr;
    ac.weight_decay = 0.0f;
    ac.warmup_steps = 1;
    ac.total_steps = c->steps * (c->minibatches < c->tasks_per_step ? c->minibatches : c->tasks_per_step);
    ac.min_lr_ratio = 0.1f;
    if (j.be->ops->opt_init(j.be, &ac) != 0) {
        fprintf(stderr, "viv %s: %s\n", cmd, j.be->err);
        goto out;
    }
    if (ckpt && (load_optimizer(&j.be->opt, ckpt, err, sizeof err) != 0 ||
                 (j.be->ops->sync_up(j.be) != 0 && snprintf(err, sizeof err, "%s", j.be->err)))) {
        fprintf(stderr, "viv %s: %s\n", cmd, err);
        goto out;
    }
    if (!ckpt && j.be->ops->sync_down(j.be) != 0) { /* every rank (ZeRO-1 gathers the shards), rank 0 writes */
        fprintf(stderr, "viv %s: checkpoint: %s\n", cmd, j.be->err);
        goto out;
    }
    if (!ckpt && rank == 0 && save_checkpoint(&j, 0, err, sizeof err) != 0) { /* step 0: the SFT model */
        fprintf(stderr, "viv %s: checkpoint: %s\n", cmd, err);
        goto out;
    }
    if (!c->sft_only && c->steps > 0) {
        if (rank == 0) fprintf(stderr, "grpo: steps %ld..%d, %d tasks x %d samples per step\n", first_step, c->steps, c->tasks_per_step,
                c->group);
        if (first_step <= c->steps && rl_phase(&j, first_step, err, sizeof err) != 0) {
            fprintf(stderr, "viv %s: grpo: %s\n", cmd, err);
            goto out;
        }
        if (rank == 0 && evaluate(&j, stage[2], &tab[2], err, sizeof err) != 0) {
            fprintf(stderr, "viv %s: eval: %s\n", cmd, err);
            goto out;
        }
        if (rank == 0) rl_run_write_charts(j.run, err, sizeof err);
    }
    if (rank != 0) { /* the table, the charts and the summary are rank 0's */
        rc = 0;
        goto out;
    }
    {
        const char *keys[MAX_SHAPES];
        eval_chart(j.dir, tab, 3, keys, run_task_names(&j.train, &j.val, keys, MAX_SHAPES));
    }
    if (!c->sft_only && evaluate_teacher(&j, &teacher_tab, err, sizeof err) < 0)
        fprintf(stderr, "viv %s: the teacher's held-out accuracy: %s\n", cmd, err); /* the table goes without it */
    print_tables(tab, stage, 3, c->eval_split, &teacher_tab, (uint64_t)c->seed);
    printf("\nrun: %s  (%.1f min)\n", j.dir, (now_ms() - j.t0) / 60000.0);
    char *sft_svg = xasprintf("%s/sft.svg", j.dir);
    printf("charts: %s/reward.svg %s/accuracy.svg %s/eval.svg%s%s\n", j.dir, j.dir, j.dir, file_exists(sft_svg) ? " " : "",
           file_exists(sft_svg) ? sft_svg : "");
    free(sft_svg);
    {
        long ls = 0;
        char *lc = latest_checkpoint(j.dir, &ls);
        if (lc) printf("checkpoint (HF format, + optimizer.bin, state.json): %s\n", lc);
        free(lc);
    }
    fflush(stdout);
    rc = 0;
out:
    viv_pool_close(j.pool);
    private_vivd_stop(&vp);
    sft_set_free(&set);
    for (int k = 0; k < 3; k++) {
        table_free(&tab[k]);
        for (int i = 0; i < MAX_SHAPES; i++) free(names_store[k][i]);
    }
    if (j.run) rl_run_close(j.run);
    train_backend_free(j.be);
    if (j.m) qwen3_free(j.m);
    if (j.tok) tokenizer_free(j.tok);
    if (j.train.t) taskset_free(&j.train);
    if (j.val.t) taskset_free(&j.val);
    free(j.dir), free(ckpt), free(train_path), free(val_path);
    train_dist_finalize(rc != 0);
    return rc;
}

int cmd_train(int argc, char **argv) {
    struct train_cfg c;
    train_defaults(&c);
    int rc = parse_train_args("train", argc, argv, &c);
    if (rc) return rc == ARGS_HELP ? 0 : 2;
    interrupt_install("viv train");
    return run_job(&c);
}

int cmd_sft(int argc, char **argv) {
    struct train_cfg c;
    train_defaults(&c);
    c.sft_only = 1;
    c.name = "viv-sft";
    int rc = parse_train_args("sft", argc, argv, &c);
    if (rc) return rc == ARGS_HELP ? 0 : 2;
    interrupt_install("viv sft");
    return run_job(&c);
}
