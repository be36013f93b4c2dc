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

#include "../sandbox/json_writer.h"
#include "../sandbox/util.h"
#include "episode.h"
#include "teacher.h"

static const char usage[] =
    "usage: viv eval --env viv-bio [--data DIR] [--split val] [--tasks FILE.jsonl]\n"
    "                --agent oracle|random|teacher|endpoint:URL|model:DIR [--episodes N]\n"
    "                [--concurrency K] [--seed S] [--model NAME] [--api-key-env VAR]\n"
    "                [--max-turn-tokens N] [--temperature T] [--request-timeout-ms N]\n"
    "                [--out FILE.json] [--trajectories FILE.jsonl] [--socket PATH]\n"
    "                [--sandbox ADDR[,ADDR...] [--sandbox-token-file F]]\n"
    "                [--max-turns N] [--timeout-ms N] [--error-rate P] [--train]\n"
    "Runs whole agent episodes in the sandbox and prints accuracy, format rate, mean turns\n"
    "and mean tool latency per task.\n"
    "  --data DIR        task data from `viv data build` (default: data): DIR/tasks/SPLIT.jsonl,\n"
    "                    databases DIR/db/org.Hs.eg.sqlite and DIR/db/GO.sqlite\n"
    "  --tasks FILE      any task JSONL instead (Biomni-Eval1 rows work; they have no reference\n"
    "                    solutions, so only --agent random runs there)\n"
    "  --split S         rows of this split only (default val; with --tasks: all rows unless given)\n"
    "  --agent A         oracle: the scripted teacher without mistakes (must score 1.0);\n"
    "                    random: a random candidate from the prompt, well formatted (chance);\n"
    "                    teacher: the teacher with --error-rate P mistakes (default 0.3);\n"
    "                    endpoint:URL: each message from an OpenAI-compatible server (vLLM, SGLang,\n"
    "                    a hosted API, viv serve) serving --model NAME, key from $OPENAI_API_KEY\n"
    "                    or --api-key-env VAR; model:DIR: a local checkpoint on the CPU\n"
    "  --max-turn-tokens N  tokens per message of a model agent (default 1024)\n"
    "  --temperature T   sampling temperature of a model agent (default 0: greedy)\n"
    "  --request-timeout-ms N  one HTTP request of an endpoint agent (default 600000)\n"
    "  --episodes N      episodes in all, cycling through the tasks (default: one per task)\n"
    "  --concurrency K   episodes in flight at once (default 4); an endpoint agent has as many\n"
    "                    requests in flight\n"
    "  --seed S          seed of the agents' choices (default 1)\n"
    "  --out FILE        the table as JSON, written atomically\n"
    "  --trajectories F  every episode (messages, scores) as JSONL, written atomically\n"
    "  --socket PATH     use this running vivd instead of starting one\n"
    "  --sandbox LIST    running vivds to spread tool calls over, by load: unix:/PATH, /PATH or\n"
    "                    tcp:HOST:PORT, comma-separated (a host that dies ends only its episodes)\n"
    "  --sandbox-token-file F  the token of TCP vivds (their --token-file; or $VIV_SANDBOX_TOKEN)\n"
    "  --max-turns N     assistant messages per episode (default 16)\n"
    "  --timeout-ms N    per tool call (default 30000)\n"
    "  --train           grade in training mode (crispr_delivery partial credit)\n";

struct eval_args {
    const char *env, *data, *split, *tasks, *agent, *out, *traj, *socket, *model, *api_key_env, *sandbox, *token_file;
    long episodes, concurrency, seed, max_turns, timeout_ms, max_turn_tokens, request_timeout_ms;
    double error_rate, temperature;
    int split_given, train;
};

/* agents from outside envs/ (endpoint:URL, model:DIR), see agent_provider.h */
static const struct agent_provider *provider;
void eval_set_agent_provider(const struct agent_provider *p) { provider = p; }

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "viv eval: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see viv eval --help)\n");
    va_end(ap);
    return 2;
}

static int parse_args(int argc, char **argv, struct eval_args *a) {
    *a = (struct eval_args){.env = "viv-bio", .data = "data", .split = "val", .agent = "oracle", .episodes = 0,
                            .concurrency = 4, .seed = 1, .max_turns = 16, .timeout_ms = 30000, .error_rate = 0.3,
                            .max_turn_tokens = 1024, .temperature = 0, .request_timeout_ms = 600000};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            fputs(usage, stdout);
            return 1;
        }
        if (!strcmp(o, "--train")) {
            a->train = 1;
            continue;
        }
        if (strncmp(o, "--", 2) != 0) return usage_error("unexpected argument '%s'", o);
        if (i + 1 >= argc) return usage_error("%s needs a value", o);
        const char *v = argv[++i];
        long n;
        if (!strcmp(o, "--env")) a->env = v;
        else if (!strcmp(o, "--data")) a->data = v;
        else if (!strcmp(o, "--split")) a->split = v, a->split_given = 1;
        else if (!strcmp(o, "--tasks")) a->tasks = v;
        else if (!strcmp(o, "--agent")) a->agent = v;
        else if (!strcmp(o, "--out")) a->out = v;
        else if (!strcmp(o, "--trajectories")) a->traj = v;
        else if (!strcmp(o, "--socket")) a->socket = v;
        else if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--api-key-env")) a->api_key_env = v;
        else if (!strcmp(o, "--max-turn-tokens") && parse_long(v, 1, 1000000, &n) == 0) a->max_turn_tokens = n;
        else if (!strcmp(o, "--request-timeout-ms") && parse_long(v, 1, 86400000, &n) == 0) a->request_timeout_ms = n;
        else if (!strcmp(o, "--temperature")) {
            char *end;
            a->temperature = strtod(v, &end);
            if (*end || end == v || !(a->temperature >= 0 && a->temperature <= 2)) return usage_error("--temperature: '%s' is not in [0, 2]", v);
        }
        else if (!strcmp(o, "--sandbox")) a->sandbox = v;
        else if (!strcmp(o, "--sandbox-token-file")) a->token_file = v;
        else if (!strcmp(o, "--episodes") && parse_long(v, 1, 10000000, &n) == 0) a->episodes = n;
        else if (!strcmp(o, "--concurrency") && parse_long(v, 1, 4096, &n) == 0) a->concurrency = n;
        else if (!strcmp(o, "--seed") && parse_long(v, 0, LONG_MAX, &n) == 0) a->seed = n;
        else if (!strcmp(o, "--max-turns") && parse_long(v, 1, 1000, &n) == 0) a->max_turns = n;
        else if (!strcmp(o, "--timeout-ms") && parse_long(v, 1, 3600000, &n) == 0) a->timeout_ms = n;
        else if (!strcmp(o, "--error-rate")) {
            char *end;
            a->error_rate = strtod(v, &end);
            if (*end || end == v || !(a->error_rate >= 0 && a->error_rate <= 1)) return usage_error("--error-rate: '%s' is not in [0, 1]", v);
        } else return usage_error("bad option or value: %s", o);
    }
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
    if (rc) return rc == 1 ? 0 : rc;
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
    if (a.traj) {
        traj_tmp = xasprintf("%s.tmp.%d", a.traj, (int)getpid());
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
    printf("viv eval: env viv-bio, agent %s, %zu episodes on %s, %.1f s\n", a.agent, n, tasks_path, wall_s);
    printf("%-32s %6s %9s %8s %7s %10s\n", "task", "n", "accuracy", "format", "turns", "tool_ms");
    for (int i = 0; i < nrows; i++) print_row(&rows[i]);
    print_row(&all);
    if (all.reruns || all.lost)
        printf("sandbox: %ld episode runs ended by the sandbox were run again; %ld episodes still lost (not scored)\n",
               all.reruns, all.lost);
    if (a.out) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "env", a.env);
        cJSON_AddStringToObject(o, "agent", a.agent);
        cJSON_AddStringToObject(o, "tasks_file", tasks_path);
        if (!a.tasks || a.split_given) cJSON_AddStringToObject(o, "split", a.split);
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
        if (write_file_atomic(a.out, withnl, strlen(withnl)) != 0) {
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
