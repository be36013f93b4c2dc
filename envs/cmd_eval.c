/*
 * cmd_eval.c - `viv eval`: whole episodes of an agent through the sandbox,
 * scored with the Eval1 rules and the format reward, summed up per task.
 *
 *   viv eval --env viv-bio [--data DIR] [--split val] --agent oracle|random
 *            [--episodes N] [--concurrency K] [--seed S] [--out FILE.json]
 *
 * Unless --socket names a running vivd, a private one is started from the
 * directory viv lives in, on a socket in a fresh temporary directory, with
 * the task data's databases as its --data values, and stopped at the end.
 */
#define _GNU_SOURCE
#include "eval1.h"
#include "agent_provider.h"
#include "private_vivd.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../sandbox/base/args.h"
#include "../sandbox/base/interrupt.h"
#include "../sandbox/base/json_writer.h"
#include "../sandbox/base/util.h"
#include "episode.h"
#include "teacher.h"

struct eval_args {
    const char *env, *data, *split, *tasks, *agent, *out, *traj, *socket, *model, *api_key_env, *sandbox, *token_file;
    long episodes, concurrency, seed, max_turns, timeout_ms, max_turn_tokens, request_timeout_ms, limit;
    int json;
    double error_rate, temperature;
    int split_given, train;
};

/* agents from outside envs/ (endpoint:URL, model:DIR), see agent_provider.h */
static const struct agent_provider *provider;
void eval_set_agent_provider(const struct agent_provider *p) { provider = p; }

static struct eval_args ev;

/* One line per flag; the help is generated from this table (args.h). */
static const struct arg_opt eval_opts[] = {
    {"--env", ARG_STR, &ev.env, 0, 0, "NAME", "the environment (viv-bio)"},
    {"--data", ARG_STR, &ev.data, 0, 0, "DIR", "task data from `viv data build` (default: data): DIR/tasks/SPLIT.jsonl,\n"
                                                "databases DIR/db/org.Hs.eg.sqlite and DIR/db/GO.sqlite"},
    {"--split", ARG_STR, &ev.split, 0, 0, "S", "rows of this split only (default val; with --tasks: all rows unless given)"},
    {"--tasks", ARG_STR, &ev.tasks, 0, 0, "FILE", "any task JSONL instead (Biomni-Eval1 rows work; they have no reference\n"
                                                   "solutions, so only --agent random runs there)"},
    {"--agent", ARG_STR, &ev.agent, 0, 0, "A", "oracle: the scripted teacher without mistakes (must score 1.0; default);\n"
                                                "random: a random candidate from the prompt, well formatted (chance);\n"
                                                "teacher: the teacher with --error-rate P mistakes;\n"
                                                "endpoint:URL: each message from an OpenAI-compatible server (vLLM, SGLang,\n"
                                                "a hosted API, viv serve) serving --agent-model NAME; model:DIR: a local\n"
                                                "checkpoint, a run directory or its checkpoints/"},
    {"--agent-model", ARG_STR, &ev.model, 0, 0, "NAME", "the model name an endpoint:URL agent asks the server for (as viv\n"
                                                        "train's --teacher-model)"},
    {"--model", ARG_STR, &ev.model, 0, 0, "NAME", "the same as --agent-model (an older name; elsewhere --model is a directory)"},
    {"--api-key-env", ARG_STR, &ev.api_key_env, 0, 0, "VAR", "the endpoint's key variable (default OPENAI_API_KEY)"},
    {"--max-turn-tokens", ARG_LONG, &ev.max_turn_tokens, 1, 1000000, "N", "tokens per message of a model agent (default 1024)"},
    {"--temperature", ARG_DOUBLE, &ev.temperature, 0, 2, "T", "sampling temperature of a model agent (default 0: greedy)"},
    {"--request-timeout-ms", ARG_LONG, &ev.request_timeout_ms, 1, 86400000, "N", "one HTTP request of an endpoint agent (default 600000)"},
    {"--limit", ARG_LONG, &ev.limit, 1, 10000000, "N", "at most N tasks, task shapes taken in turn (a quick, mixed sample)"},
    {"--json", ARG_FLAG, &ev.json, 0, 0, NULL, "print the results as JSON on stdout (the --out object) instead of the table"},
    {"--episodes", ARG_LONG, &ev.episodes, 1, 10000000, "N", "episodes in all, cycling through the tasks (default: one per task)"},
    {"--concurrency", ARG_LONG, &ev.concurrency, 1, 4096, "K", "episodes in flight at once (default 4); an endpoint agent has as many\n"
                                                               "requests in flight"},
    {"--seed", ARG_LONG, &ev.seed, 0, 1e18, "S", "seed of the agents' choices (default 1)"},
    {"--out", ARG_STR, &ev.out, 0, 0, "FILE", "the table as JSON, written atomically (its directory is checked first)"},
    {"--trajectories", ARG_STR, &ev.traj, 0, 0, "FILE", "every episode (messages, scores) as JSONL, written atomically"},
    {"--socket", ARG_STR, &ev.socket, 0, 0, "PATH", "use this running vivd instead of starting one"},
    {"--sandbox", ARG_STR, &ev.sandbox, 0, 0, "LIST", "running vivds to spread tool calls over, by load: unix:/PATH, /PATH or\n"
                                                       "tcp:HOST:PORT, comma-separated (a host that dies ends only its episodes)"},
    {"--sandbox-token-file", ARG_STR, &ev.token_file, 0, 0, "F", "the token of TCP vivds (their --token-file; or $VIV_SANDBOX_TOKEN)"},
    {"--max-turns", ARG_LONG, &ev.max_turns, 1, 1000, "N", "assistant messages per episode (default 16)"},
    {"--timeout-ms", ARG_LONG, &ev.timeout_ms, 1, 3600000, "N", "per tool call (default 10000, as viv train)"},
    {"--error-rate", ARG_DOUBLE, &ev.error_rate, 0, 1, "P", "the teacher agent's mistakes (default 0.3)"},
    {"--train", ARG_FLAG, &ev.train, 0, 0, NULL, "grade in training mode (crispr_delivery partial credit)"},
    {0},
};

static const struct arg_cmd eval_cmd = {
    .prog = "viv eval",
    .synopsis = "viv eval [--agent oracle|random|teacher|endpoint:URL|model:DIR] [--data DIR] [--split S] [options]",
    .about = "Runs whole agent episodes in the sandbox and prints accuracy, format rate, mean turns\n"
             "and mean tool latency per task. Unless --socket or --sandbox names running vivds, a\n"
             "private vivd is started with the task data's databases and stopped at the end.\n",
    .opts = eval_opts,
    .examples = "  viv eval --agent oracle --limit 20\n"
                "  viv eval --agent model:runs/viv-bio-tiny --split test --out ev.json\n"
                "  viv eval --agent endpoint:http://127.0.0.1:8000 --agent-model tiny --trajectories ev.jsonl\n",
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return args_error(&eval_cmd, "%s", msg);
}

/* The file an output flag names can be written: its directory exists and
 * is writable, and it is not itself a directory. Checked before any
 * episode runs, so a typo costs nothing. 0, or -1 with err. */
static int check_output_path(const char *flag, const char *path, char *err, size_t errlen) {
    char *copy = xstrdup(path);
    const char *dir = dirname(copy);
    struct stat st;
    int rc = 0;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) rc = fail_with(err, errlen, "%s %s: the directory %s does not exist", flag, path, dir);
    else if (access(dir, W_OK) != 0) rc = fail_with(err, errlen, "%s %s: the directory %s is not writable", flag, path, dir);
    else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) rc = fail_with(err, errlen, "%s %s: is a directory", flag, path);
    free(copy);
    return rc;
}

static int parse_args(int argc, char **argv, struct eval_args *a) {
    ev = (struct eval_args){.env = "viv-bio", .data = "data", .split = NULL, .agent = "oracle", .episodes = 0,
                            .concurrency = 4, .seed = 1, .max_turns = 16, .timeout_ms = 10000, .error_rate = 0.3,
                            .max_turn_tokens = 1024, .temperature = 0, .request_timeout_ms = 600000};
    int rc = args_parse(&eval_cmd, argc, argv, NULL);
    *a = ev;
    if (rc) return rc;
    a->split_given = a->split != NULL;
    if (!a->split) a->split = "val";
    if (strcmp(a->env, "viv-bio") != 0) return usage_error("unknown environment '%s' (there is viv-bio)", a->env);
    if (strcmp(a->agent, "oracle") && strcmp(a->agent, "random") && strcmp(a->agent, "teacher") &&
        !(provider && provider->accepts(a->agent)))
        return usage_error("unknown agent '%s' (oracle, random, teacher%s%s)", a->agent, provider ? ", " : "",
                           provider ? provider->kinds : "");
    if (a->sandbox) {
        char why[256];
        bool needs_token;
        if (a->socket) return usage_error("--socket and --sandbox: give one (--sandbox unix:PATH is --socket PATH)");
        if (viv_pool_check(a->sandbox, &needs_token, why, sizeof why) != 0) return usage_error("--sandbox: %s", why);
        if (needs_token && !a->token_file && !(getenv("VIV_SANDBOX_TOKEN") && *getenv("VIV_SANDBOX_TOKEN")))
            return usage_error("--sandbox: a tcp: host needs its token: --sandbox-token-file F or VIV_SANDBOX_TOKEN");
    }
    char err[512];
    if ((a->out && check_output_path("--out", a->out, err, sizeof err)) ||
        (a->traj && check_output_path("--trajectories", a->traj, err, sizeof err))) {
        fprintf(stderr, "viv eval: %s\n", err);
        return ARGS_USAGE;
    }
    return 0;
}

/* --- tables ------------------------------------------------------------------------------- */

/* how episodes end: "solution", "parse_errors", "max_turns", "sandbox" (the last: lost to the
 * sandbox after EPISODE_SANDBOX_TRIES re-runs; counted in `sandbox_lost`, outside n and the rates) */
static const char *const end_names[] = {"solution", "parse_errors", "max_turns", "sandbox"};
#define NENDS 4

struct row {
    char *task;
    long n, tool_calls, ends[NENDS];
    long reruns, lost;     /* episodes re-run because the sandbox ended them; still lost after that (not in n) */
    double correct, format, turns, tool_ms;
};

struct progress {
    size_t done, total;
    int tty;
    FILE *traj;            /* trajectories, to a temp file renamed at the end */
    const struct task_set *ts;
};

/* text as a JSON string literal (malloc'd), written by length: a NUL is
 * \u0000 and kept with what follows it (a tool's output may hold one), and
 * invalid UTF-8 bytes, which a model agent's messages may hold, become
 * U+FFFD, so the trajectory file stays valid UTF-8 JSON lines. */
static char *json_literal(const char *text, size_t len) {
    struct json_writer w;
    jw_init(&w);
    jw_string(&w, text, len);
    return jw_finish(&w);
}

static void on_done(void *ctx, const struct episode *ep, size_t index) {
    struct progress *p = ctx;
    p->done++;
    if (p->traj) {
        cJSON *o = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(o, "messages");
        cJSON_AddNumberToObject(o, "episode", (double)index);
        cJSON_AddStringToObject(o, "instance_id", ep->task->instance_id);
        cJSON_AddStringToObject(o, "task_name", ep->task->task_name);
        cJSON_AddNumberToObject(o, "correct", ep->correct);
        cJSON_AddNumberToObject(o, "format", ep->format);
        cJSON_AddNumberToObject(o, "reward", ep->correct + ep->format);
        cJSON_AddStringToObject(o, "end", ep->end ? ep->end : "?");
        if (ep->answer) cJSON_AddStringToObject(o, "answer", ep->answer);
        static const char *const roles[] = {"system", "user", "assistant", "tool"};
        for (size_t i = 0; i < ep->conv.n; i++) {
            cJSON *m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", roles[ep->conv.turns[i].role]);
            char *content = json_literal(ep->conv.turns[i].text, ep->conv.turns[i].len);
            cJSON_AddRawToObject(m, "content", content);
            free(content);
            cJSON_AddItemToArray(msgs, m);
        }
        char *line = cJSON_PrintUnformatted(o);
        fprintf(p->traj, "%s\n", line);
        cJSON_free(line);
        cJSON_Delete(o);
    }
    interrupt_note("%zu of %zu episodes had finished; nothing was written (results are written at the end): "
                   "rerun, with --episodes N for fewer", p->done, p->total);
    if (p->tty) {
        int w = 30, f = (int)(w * p->done / p->total);
        fprintf(stderr, "\r[%.*s%.*s] %zu/%zu episodes", f, "##############################", w - f,
                "..............................", p->done, p->total);
        if (p->done == p->total) fputc('\n', stderr);
    } else if (p->done == p->total || p->done % (p->total / 10 ? p->total / 10 : 1) == 0)
        fprintf(stderr, "eval: %zu/%zu episodes\n", p->done, p->total);
}

static int row_of(struct row *rows, int *nrows, const char *task) {
    for (int i = 0; i < *nrows; i++)
        if (!strcmp(rows[i].task, task)) return i;
    rows[*nrows] = (struct row){.task = xstrdup(task)};
    return (*nrows)++;
}

static void add_row_json(cJSON *arr, const struct row *r) {
    cJSON *o = cJSON_CreateObject();
    double n = r->n ? (double)r->n : 1;
    cJSON_AddStringToObject(o, "task", r->task);
    cJSON_AddNumberToObject(o, "n", (double)r->n);
    cJSON_AddNumberToObject(o, "accuracy", r->correct / n);
    cJSON_AddNumberToObject(o, "format_rate", r->format / n);
    cJSON_AddNumberToObject(o, "mean_turns", r->turns / n);
    cJSON_AddNumberToObject(o, "tool_calls", (double)r->tool_calls);
    cJSON_AddNumberToObject(o, "mean_tool_ms", r->tool_calls ? r->tool_ms / (double)r->tool_calls : 0);
    cJSON_AddNumberToObject(o, "sandbox_reruns", (double)r->reruns);
    cJSON_AddNumberToObject(o, "sandbox_lost", (double)r->lost);
    cJSON *ends = cJSON_AddObjectToObject(o, "ends");
    for (int k = 0; k < NENDS; k++) cJSON_AddNumberToObject(ends, end_names[k], (double)r->ends[k]);
    cJSON_AddItemToArray(arr, o);
}

static void print_row(const struct row *r) {
    double n = r->n ? (double)r->n : 1;
    printf("%-32s %6ld %9.3f %8.3f %7.2f %10.1f\n", r->task, r->n, r->correct / n, r->format / n, r->turns / n,
           r->tool_calls ? r->tool_ms / (double)r->tool_calls : 0.0);
}

/* --- the command --------------------------------------------------------------------------- */

int cmd_eval(int argc, char **argv) {
    struct eval_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc == ARGS_HELP ? 0 : 2;
    interrupt_install("viv eval");
    interrupt_note("no episode had finished; nothing was written");
    char err[512];
    char *tasks_path = a.tasks ? xstrdup(a.tasks) : xasprintf("%s/tasks/%s.jsonl", a.data, a.split);
    struct task_set ts;
    if (taskset_load(tasks_path, a.tasks && !a.split_given ? NULL : a.split, &ts, err, sizeof err) < 0) {
        fprintf(stderr, "viv eval: %s\n", err);
        free(tasks_path);
        return 1;
    }
    if (ts.n == 0) {
        fprintf(stderr, "viv eval: %s: no tasks%s%s\n", tasks_path, a.split_given || !a.tasks ? " in split " : "",
                a.split_given || !a.tasks ? a.split : "");
        free(tasks_path);
        taskset_free(&ts);
        return 1;
    }
    if (a.limit) taskset_filter(&ts, NULL, (int)a.limit);
    int scripted = !strcmp(a.agent, "oracle") || !strcmp(a.agent, "teacher");
    int external = !scripted && strcmp(a.agent, "random") != 0;
    if (scripted && taskset_with_reference(&ts) < ts.n) {
        fprintf(stderr, "viv eval: %s: %zu of %zu tasks have no reference solution, which the %s agent needs "
                        "(Biomni-Eval1 has none): use --agent random there\n",
                tasks_path, ts.n - taskset_with_reference(&ts), ts.n, a.agent);
        free(tasks_path);
        taskset_free(&ts);
        return 1;
    }
    /* a model agent is opened first: a bad URL or checkpoint fails before vivd starts */
    void *ext = NULL;
    if (external) {
        struct agent_options ao = {.model = a.model, .api_key_env = a.api_key_env, .max_tokens = (int)a.max_turn_tokens,
                                   .temperature = a.temperature, .request_timeout_ms = a.request_timeout_ms};
        if (!(ext = provider->open(a.agent, &ao, err, sizeof err))) {
            fprintf(stderr, "viv eval: --agent %s: %s\n", a.agent, err);
            free(tasks_path);
            taskset_free(&ts);
            return 1;
        }
    }
    struct private_vivd d = {0};
    char *spec = NULL, *token = NULL;
    if (a.sandbox) spec = xstrdup(a.sandbox);
    else if (a.socket) spec = xasprintf("unix:%s", a.socket);
    else {
        if (private_vivd_start(&d, a.data, "viv eval", err, sizeof err) < 0) {
            fprintf(stderr, "viv eval: %s\n", err);
            private_vivd_stop(&d);
            if (ext) provider->close(ext, err, sizeof err);
            free(tasks_path);
            taskset_free(&ts);
            return 1;
        }
        spec = xasprintf("unix:%s", d.sock);
    }
    token = viv_pool_token(a.token_file, err, sizeof err);
    struct viv_pool *c = token || !err[0] ? viv_pool_open(spec, token, stderr, 10000, err, sizeof err) : NULL;
    free(spec);
    free(token);
    if (!c) {
        fprintf(stderr, "viv eval: %s\n", err);
        private_vivd_stop(&d);
        if (ext) provider->close(ext, err, sizeof err);
        free(tasks_path);
        taskset_free(&ts);
        return 1;
    }
    size_t n = a.episodes ? (size_t)a.episodes : ts.n;
    struct episode_result *res = xcalloc(n, sizeof *res);
    struct episode_cfg cfg = {.max_turns = (int)a.max_turns, .tool_timeout_ms = a.timeout_ms,
                              .mode = a.train ? GRADE_TRAIN : GRADE_EVAL};
    struct teacher teacher = {.error_rate = strcmp(a.agent, "oracle") ? a.error_rate : 0.0, .seed = (uint64_t)a.seed};
    uint64_t rseed = (uint64_t)a.seed;
    struct progress prog = {.total = n, .tty = isatty(2), .ts = &ts};
    char *traj_tmp = NULL;
    int traj_slot = -1;
    if (a.traj) {
        traj_tmp = xasprintf("%s.tmp.%d", a.traj, (int)getpid());
        traj_slot = interrupt_track_path(traj_tmp);
        if (!(prog.traj = fopen(traj_tmp, "w"))) {
            fprintf(stderr, "viv eval: %s: %s\n", traj_tmp, strerror(errno));
            rc = 1;
            goto out;
        }
    }
    double t0 = now_ms();
    agent_fn next = external ? provider->next : scripted ? teacher_next : random_next;
    void *agent_ctx = external ? ext : scripted ? (void *)&teacher : (void *)&rseed;
    int run_rc = external && provider->run
                     ? provider->run(ext, &ts, n, (int)a.concurrency, c, &cfg, (uint64_t)a.seed, res, on_done, &prog, err,
                                     sizeof err)
                     : run_episodes(&ts, n, (int)a.concurrency, c, next, agent_ctx, &cfg, (uint64_t)a.seed, res, on_done,
                                    &prog, err, sizeof err);
    double wall_s = (now_ms() - t0) / 1000.0;
    if (run_rc < 0) {
        fprintf(stderr, "viv eval: %s\n", err);
        rc = 1;
    }
    if (ext) { /* turns the model agent could not get count as failures of the run */
        int failed = provider->close(ext, err, sizeof err);
        ext = NULL;
        if (failed) {
            fprintf(stderr, "viv eval: %d agent turns failed (their episodes ended); the last: %s\n", failed, err);
            rc = 1;
        }
    }
    if (prog.traj) {
        int bad = fflush(prog.traj) != 0 || fsync(fileno(prog.traj)) != 0;
        bad |= fclose(prog.traj) != 0;
        prog.traj = NULL;
        interrupt_forget_path(traj_slot);
        if (bad || rename(traj_tmp, a.traj) != 0) {
            fprintf(stderr, "viv eval: %s: %s\n", a.traj, strerror(errno));
            unlink(traj_tmp);
            rc = 1;
        }
    }
    /* the table: one row per task name, then all */
    struct row *rows = xcalloc(ts.n + 1, sizeof *rows), all = {.task = "all"};
    int nrows = 0;
    for (size_t i = 0; i < n; i++) {
        const struct episode_result *e = &res[i];
        struct row *r = &rows[row_of(rows, &nrows, ts.t[e->task_index].task_name)];
        struct row *rs[2] = {r, &all};
        for (int k = 0; k < 2; k++) {
            rs[k]->reruns += e->reruns;
            /* lost to the sandbox even after its re-runs: reported apart, never scored as wrong */
            if (e->end && !strcmp(e->end, "sandbox")) {
                rs[k]->lost++;
                rs[k]->ends[NENDS - 1]++;
                continue;
            }
            rs[k]->n++;
            rs[k]->correct += e->correct, rs[k]->format += e->format, rs[k]->turns += e->turns;
            rs[k]->tool_calls += e->tool_calls, rs[k]->tool_ms += e->tool_ms;
            for (int j = 0; j < NENDS; j++) rs[k]->ends[j] += e->end && !strcmp(e->end, end_names[j]);
        }
    }
    if (!a.json) {
        printf("viv eval: env viv-bio, agent %s, %zu episodes on %s, %.1f s\n", a.agent, n, tasks_path, wall_s);
        printf("%-32s %6s %9s %8s %7s %10s\n", "task", "n", "accuracy", "format", "turns", "tool_ms");
        for (int i = 0; i < nrows; i++) print_row(&rows[i]);
        print_row(&all);
    }
    if (all.reruns || all.lost)
        fprintf(a.json ? stderr : stdout,
                "sandbox: %ld episode runs ended by the sandbox were run again; %ld episodes still lost (not scored)\n",
                all.reruns, all.lost);
    if (a.out || a.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "env", a.env);
        cJSON_AddStringToObject(o, "agent", a.agent);
        cJSON_AddStringToObject(o, "tasks_file", tasks_path);
        if (!a.tasks || a.split_given) cJSON_AddStringToObject(o, "split", a.split);
        if (a.limit) cJSON_AddNumberToObject(o, "limit", (double)a.limit);
        cJSON_AddNumberToObject(o, "seed", (double)a.seed);
        cJSON_AddNumberToObject(o, "episodes", (double)n);
        cJSON_AddNumberToObject(o, "concurrency", (double)a.concurrency);
        cJSON_AddNumberToObject(o, "max_turns", (double)a.max_turns);
        cJSON_AddStringToObject(o, "grading", a.train ? "train" : "eval");
        if (!strcmp(a.agent, "teacher")) cJSON_AddNumberToObject(o, "error_rate", a.error_rate);
        if (external && a.model) cJSON_AddStringToObject(o, "model", a.model);
        if (external) cJSON_AddNumberToObject(o, "temperature", a.temperature);
        cJSON_AddNumberToObject(o, "wall_s", wall_s);
        cJSON *arr = cJSON_AddArrayToObject(o, "per_task");
        for (int i = 0; i < nrows; i++) add_row_json(arr, &rows[i]);
        cJSON *tmp = cJSON_CreateArray();
        add_row_json(tmp, &all);
        cJSON_AddItemToObject(o, "overall", cJSON_DetachItemFromArray(tmp, 0));
        cJSON_Delete(tmp);
        char *text = cJSON_Print(o);
        char *withnl = xasprintf("%s\n", text);
        if (a.json) fputs(withnl, stdout);
        if (a.out && write_file_atomic(a.out, withnl, strlen(withnl)) != 0) {
            fprintf(stderr, "viv eval: %s: %s\n", a.out, strerror(errno));
            rc = 1;
        }
        free(withnl);
        cJSON_free(text);
        cJSON_Delete(o);
    }
    for (int i = 0; i < nrows; i++) free(rows[i].task);
    free(rows);
out:
    if (ext) provider->close(ext, err, sizeof err);
    if (prog.traj) fclose(prog.traj), unlink(traj_tmp);
    free(traj_tmp);
    free(res);
    viv_pool_close(c);
    private_vivd_stop(&d);
    free(tasks_path);
    taskset_free(&ts);
    return rc;
}
