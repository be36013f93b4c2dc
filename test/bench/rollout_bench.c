/*
 * rollout_bench.c - the rollout benchmark's program (test/bench/rollout.sh
 * starts a private vivd and runs this).
 *
 * The same batch of episodes runs under the asynchronous scheduler and under
 * the synchronous baseline (generate for every ready episode, then run every
 * tool call, wait for all, repeat), alternating, several times; it prints
 * each run and the medians: episodes/s and the fraction of the step the
 * generator sat idle.
 *
 * The generator is the scripted fake (test/doubles/fake_gen.c): it sleeps like a GPU
 * decoding a batch (a fixed cost per call plus one step per token of the
 * longest output). The tools are real: every <execute> goes through vivd
 * into a per-episode jailed Python session: most sleep for a log-uniform
 * time between 10 ms and 2 s, the rest do a small real computation.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../doubles/fake_gen.h"
#include "../../rl/rollout.h"
#include "../doubles/text_env.h"

struct bench {
    int tool_turns;
    double lat_min_s, lat_max_s, compute_frac;
    unsigned seed;
    char **texts; /* [episode * (tool_turns + 1) + turn] */
    int nepisodes;
};

static double unit(uint64_t h) { return (double)(h >> 11) / 9007199254740992.0; }

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* Each episode's turns, fixed by the seed so both modes run the same work. */
static void build_scripts(struct bench *b) {
    int per = b->tool_turns + 1;
    b->texts = calloc((size_t)b->nepisodes * per, sizeof *b->texts);
    for (int e = 0; e < b->nepisodes; e++)
        for (int t = 0; t < per; t++) {
            uint64_t h = mix(((uint64_t)b->seed << 40) ^ ((uint64_t)e << 16) ^ (uint64_t)t);
            char code[256], *text = NULL;
            /* thinking text of 40..160 bytes (= tokens with the byte tokenizer) */
            int think = 40 + (int)(unit(mix(h + 1)) * 120);
            char pad[200];
            for (int i = 0; i < think; i++) pad[i] = "reasoning about the data "[i % 25];
            pad[think] = 0;
            if (t == b->tool_turns) {
                if (asprintf(&text, "<think>%s</think><solution>42</solution>", pad) < 0) abort();
            } else {
                if (unit(mix(h + 2)) < b->compute_frac) {
                    int n = 20000 + (int)(unit(mix(h + 3)) * 280000);
                    snprintf(code, sizeof code, "s%d = sum(i * i for i in range(%d))\nprint(s%d %% 1000)", t, n, t);
                } else {
                    double x = exp(log(b->lat_min_s) + unit(mix(h + 4)) * (log(b->lat_max_s) - log(b->lat_min_s)));
                    snprintf(code, sizeof code, "import time\ntime.sleep(%.3f)\nv%d = %d\nprint('slept', %.3f)", x, t, t, x);
                }
                if (asprintf(&text, "<think>%s</think><execute>%s</execute>", pad, code) < 0) abort();
            }
            b->texts[e * per + t] = text;
        }
}

static const char *bench_turn(void *arg, int episode, int turn) {
    struct bench *b = arg;
    if (turn > b->tool_turns) return "";
    return b->texts[episode * (b->tool_turns + 1) + turn];
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(void) {
    fprintf(stderr,
            "usage: rollout_bench --socket PATH [--episodes 256] [--group-size 8] [--tool-turns 6]\n"
            "       [--max-batch 64] [--step-us 2000] [--call-us 5000] [--runs 3] [--mode both|async|sync]\n"
            "       [--lat-min-ms 10] [--lat-max-ms 2000] [--compute-frac 0.25] [--seed 1] [--json FILE]\n"
            "       [--fill-wait F (the scheduler's batch-fill wait, a fraction of a generate call)]\n"
            "       [--chunk N (generate turns in chunks of N tokens, both modes)] [--trace FILE (JSONL per generate call)]\n");
}

int main(int argc, char **argv) {
    const char *sock = NULL, *mode = "both", *json = NULL;
    int episodes = 256, group = 8, max_batch = 64, runs = 3;
    double step_us = 2000, call_us = 5000, fill_wait = 0;
    int chunk = 0;
    FILE *trace = NULL;
    struct bench b = {.tool_turns = 6, .lat_min_s = 0.010, .lat_max_s = 2.0, .compute_frac = 0.25, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--socket")) sock = v;
        else if (!strcmp(a, "--episodes")) episodes = atoi(v);
        else if (!strcmp(a, "--group-size")) group = atoi(v);
        else if (!strcmp(a, "--tool-turns")) b.tool_turns = atoi(v);
        else if (!strcmp(a, "--max-batch")) max_batch = atoi(v);
        else if (!strcmp(a, "--step-us")) step_us = atof(v);
        else if (!strcmp(a, "--call-us")) call_us = atof(v);
        else if (!strcmp(a, "--runs")) runs = atoi(v);
        else if (!strcmp(a, "--mode")) mode = v;
        else if (!strcmp(a, "--lat-min-ms")) b.lat_min_s = atof(v) / 1000;
        else if (!strcmp(a, "--lat-max-ms")) b.lat_max_s = atof(v) / 1000;
        else if (!strcmp(a, "--compute-frac")) b.compute_frac = atof(v);
        else if (!strcmp(a, "--seed")) b.seed = (unsigned)atoi(v);
        else if (!strcmp(a, "--json")) json = v;
        else if (!strcmp(a, "--fill-wait")) fill_wait = atof(v);
        else if (!strcmp(a, "--chunk")) chunk = atoi(v);
        else if (!strcmp(a, "--trace")) {
            if (!(trace = fopen(v, "w"))) {
                perror(v);
                return 1;
            }
        }
        else {
            usage();
            return 2;
        }
    }
    if (!sock || episodes <= 0 || group <= 0 || episodes % group || b.tool_turns < 0 || b.tool_turns > 30 ||
        max_batch <= 0 || runs <= 0 || !(b.lat_min_s > 0) || b.lat_max_s < b.lat_min_s ||
        (strcmp(mode, "both") && strcmp(mode, "async") && strcmp(mode, "sync"))) {
        usage();
        return 2;
    }
    b.nepisodes = episodes;
    build_scripts(&b);
    static const struct text_task task = {"answer 42", "42"};
    struct text_env te = {&task, 1};
    struct rl_env_ops env;
    text_env_init(&te, &env);
    struct rl_tokenizer tok;
    byte_tokenizer(&tok);
    static const struct rl_tool_cfg tools[] = {{"python", 10000, true}};
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (json && !jf) {
        perror(json);
        return 1;
    }
    int ngroups = episodes / group;
    int *tasks = calloc((size_t)ngroups, sizeof *tasks);
    double eps_rate[2][64], idle[2][64];
    int nrun[2] = {0, 0}, bad = 0;
    printf("%-6s %4s %9s %11s %10s %10s %8s %7s\n", "mode", "run", "wall_s", "episodes/s", "gen_idle", "mean_batch",
           "tools", "errors");
    for (int r = 0; r < runs && r < 64; r++)
        for (int m = 0; m < 2; m++) {
            if ((m == 0 && !strcmp(mode, "sync")) || (m == 1 && !strcmp(mode, "async"))) continue;
            struct fake_gen fg = {.script = bench_turn, .arg = &b, .call_us = call_us, .step_us = step_us,
                                  .fail_episode = -1};
            struct rl_generator gen;
            fake_gen_init(&fg, &gen, max_batch);
            struct rl_rollout_cfg cfg = {.socket = sock, .tools = tools, .ntools = 1, .max_turns = b.tool_turns + 2,
                                         .max_context = 16384, .max_turn_tokens = 1024, .max_sessions = episodes,
                                         .sync = m == 1, .fill_wait = fill_wait,
                                         .chunk_tokens = chunk, .trace = trace};
            char err[256];
            struct rl_rollout *ro = rl_rollout_new(&cfg, &gen, &tok, &env, err, sizeof err);
            if (!ro) {
                fprintf(stderr, "rollout_bench: %s\n", err);
                return 1;
            }
            struct rl_episode *eps;
            struct rl_step_stats st;
            if (rl_rollout_step(ro, tasks, ngroups, group, &eps, &st, err, sizeof err) != 0) {
                fprintf(stderr, "rollout_bench: %s\n", err);
                return 1;
            }
            int solved = 0;
            for (int i = 0; i < episodes; i++) solved += eps[i].end == RL_END_SOLUTION && eps[i].score.correct == 1;
            long errors = st.tool_errors + st.tool_lost + st.tool_timeouts;
            if (solved != episodes || errors) {
                bad++;
                fprintf(stderr, "  %ld tool errors, %ld lost, %ld timeouts, %d of %d solved\n", st.tool_errors,
                        st.tool_lost, st.tool_timeouts, solved, episodes);
                for (int i = 0; i < episodes; i++) /* show the first failure as the model saw it */
                    if (eps[i].tool_errors + eps[i].tool_lost + eps[i].tool_timeouts > 0 || eps[i].end != RL_END_SOLUTION) {
                        size_t tl;
                        char *t = tok.decode(tok.ctx, eps[i].tokens + eps[i].prompt_tokens,
                                             eps[i].n_tokens - eps[i].prompt_tokens, &tl);
                        fprintf(stderr, "  episode %d (%s): %.2000s\n", i, rl_end_name(eps[i].end), t ? t : "");
                        free(t);
                        break;
                    }
            }
            double rate = episodes / (st.wall_ms / 1000);
            const char *name = m ? "sync" : "async";
            printf("%-6s %4d %9.2f %11.2f %9.1f%% %10.1f %8ld %7ld\n", name, r + 1, st.wall_ms / 1000, rate,
                   100 * st.gen_idle_frac, st.mean_batch, st.tool_calls, errors);
            fflush(stdout);
            if (jf)
                fprintf(jf,
                        "{\"mode\":\"%s\",\"run\":%d,\"episodes\":%d,\"wall_s\":%.3f,\"episodes_per_s\":%.3f,"
                        "\"gen_idle_frac\":%.4f,\"gen_busy_s\":%.3f,\"mean_batch\":%.2f,\"gen_calls\":%ld,"
                        "\"tool_calls\":%ld,\"tool_errors\":%ld,\"solved\":%d}\n",
                        name, r + 1, episodes, st.wall_ms / 1000, rate, st.gen_idle_frac, st.gen_busy_ms / 1000,
                        st.mean_batch, st.gen_calls, st.tool_calls, errors, solved);
            eps_rate[m][nrun[m]] = rate;
            idle[m][nrun[m]++] = st.gen_idle_frac;
            if (m == 0) {
                int nt;
                const struct rl_tool_stats *ts = rl_rollout_tool_stats(ro, &nt);
                for (int i = 0; i < nt; i++)
                    fprintf(stderr,
                            "  latency %s: n=%ld vivd wall_ms mean %.0f p50 %.0f p90 %.0f max %.0f; "
                            "submit-to-answer p50 %.0f p90 %.0f (last %d)\n",
                            ts[i].name, ts[i].count, ts[i].mean_ms, rl_lat_quantile(&ts[i].wall, 0.5),
                            rl_lat_quantile(&ts[i].wall, 0.9), ts[i].max_ms, rl_lat_quantile(&ts[i].back, 0.5),
                            rl_lat_quantile(&ts[i].back, 0.9), ts[i].back.n);
            }
            rl_episodes_free(eps, episodes);
            rl_rollout_free(ro);
        }
    double ma = nrun[0] ? median(eps_rate[0], nrun[0]) : 0, ms = nrun[1] ? median(eps_rate[1], nrun[1]) : 0;
    double ia = nrun[0] ? median(idle[0], nrun[0]) : 0, is = nrun[1] ? median(idle[1], nrun[1]) : 0;
    printf("median async: %.2f episodes/s, generator idle %.1f%%\n", ma, 100 * ia);
    printf("median sync:  %.2f episodes/s, generator idle %.1f%%\n", ms, 100 * is);
    if (nrun[0] && nrun[1]) printf("speed-up: %.2fx\n", ma / ms);
    if (jf) {
        fprintf(jf,
                "{\"summary\":true,\"episodes\":%d,\"max_batch\":%d,\"step_us\":%.0f,\"tool_turns\":%d,"
                "\"async_episodes_per_s\":%.3f,\"sync_episodes_per_s\":%.3f,\"speedup\":%.3f,"
                "\"async_gen_idle_frac\":%.4f,\"sync_gen_idle_frac\":%.4f,\"runs\":%d}\n",
                episodes, max_batch, step_us, b.tool_turns, ma, ms, ms > 0 ? ma / ms : 0, ia, is, runs);
        fclose(jf);
    }
    if (bad) fprintf(stderr, "rollout_bench: %d runs had unsolved episodes or tool errors\n", bad);
    for (int i = 0; i < episodes * (b.tool_turns + 1); i++) free(b.texts[i]);
    free(b.texts);
    free(tasks);
    return bad ? 1 : 0;
}
