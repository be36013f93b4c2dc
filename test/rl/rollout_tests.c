/*
 * rollout_tests.c - the rollout engine against a real private vivd, with the
 * scripted fake generator and the text test-double environment.
 *
 * Each test starts its own bin/vivd (socket in a temp dir, stdio to
 * /dev/null) and kills it afterwards (t_after_each also kills a daemon a
 * failing test left behind). Built with ASan + UBSan.
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../harness.h"
#include "../../rl/bio_env.h"
#include "../doubles/fake_gen.h"
#include "../../envs/turn.h"
#include "../../model/chat.h"
#include "../../rl/rollout.h"
#include "../../rl/train.h"
#include "../doubles/text_env.h"
#include "../rl_fixture.h"

/* ---- a private vivd ------------------------------------------------------------- */

static char tmpdir[64], sock_path[96];
static pid_t vivd_pid;

static int can_connect(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

static const char *vivd_sessions = "512";

static int vivd_start(void) {
    const char *bin = getenv("VIVD") ? getenv("VIVD") : "bin/vivd";
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/rl-test-XXXXXX");
        if (!mkdtemp(tmpdir)) return -1;
        snprintf(sock_path, sizeof sock_path, "%s/vivd.sock", tmpdir);
    }
    unlink(sock_path);
    char log[128];
    snprintf(log, sizeof log, "%s/vivd.log", tmpdir);
    vivd_pid = fork();
    if (vivd_pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
        execl(bin, bin, "--socket", sock_path, "--log", log, "--max-sessions-per-peer", vivd_sessions, (char *)NULL);
        _exit(99);
    }
    for (int i = 0; i < 500; i++) {
        if (can_connect(sock_path)) return 0;
        usleep(10000);
    }
    return -1;
}

static void vivd_kill(void) {
    if (vivd_pid > 0) {
        kill(vivd_pid, SIGKILL);
        waitpid(vivd_pid, NULL, 0);
    }
    vivd_pid = 0;
}

static void after_each(void) {
    vivd_kill();
    if (tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
        if (system(cmd) != 0) {}
        tmpdir[0] = 0;
    }
}

/* ---- scripts ----------------------------------------------------------------------- */

/* Scripts map (episode, turn) to a turn's text; NULL ends with nothing. */
struct script {
    const char *const *turns[64]; /* per episode (indexed by episode % period), NULL-terminated */
    int period;
};

static const char *script_turn(void *arg, int episode, int turn) {
    struct script *s = arg;
    const char *const *t = s->turns[episode % s->period];
    for (int i = 0; i < turn; i++)
        if (!t[i]) return "";
    return t[turn] ? t[turn] : "";
}

static const struct text_task tasks[] = {
    {"what is 6*7?", "42"}, {"what is 2+3?", "5"}, {"say hi", "hi"}, {"what is 10-1?", "9"}};

static const struct rl_tool_cfg tools[] = {{"python", 5000, true}, {"shell", 5000, false}};

static void fixture_init(struct fixture *f, struct script *s, int max_batch) {
    fixture_setup(f, script_turn, s, max_batch, tasks, 4, tools, 2);
    f->cfg.socket = sock_path;
}

/* The tokens under mask 1, as text, must be exactly the turns the script
 * produced, in order, and nothing else; log-probs must be the fake's. */
static int check_masks(const struct rl_episode *e, const struct script *s, char *why, size_t wl) {
    const char *const *t = s->turns[e->index % s->period];
    int pos = 0, turn = 0;
    while (pos < e->n_tokens) {
        if (!e->mask[pos]) {
            if (e->logprobs[pos] != 0.0f) return snprintf(why, wl, "logprob on a masked token at %d", pos), -1;
            pos++;
            continue;
        }
        int start = pos;
        while (pos < e->n_tokens && e->mask[pos]) pos++;
        if (turn >= e->n_turns || !t[turn]) return snprintf(why, wl, "an extra masked run at %d", start), -1;
        size_t len = strlen(t[turn]);
        if ((size_t)(pos - start) != len) return snprintf(why, wl, "turn %d: %d masked tokens, %zu expected", turn, pos - start, len), -1;
        for (int i = 0; i < pos - start; i++) {
            if (e->tokens[start + i] != (unsigned char)t[turn][i]) return snprintf(why, wl, "turn %d byte %d differs", turn, i), -1;
            if (e->logprobs[start + i] != fake_gen_logprob(e->index, turn, i))
                return snprintf(why, wl, "turn %d logprob %d differs", turn, i), -1;
        }
        if (strcmp(e->turn_text[turn], t[turn]) != 0) return snprintf(why, wl, "turn_text %d differs", turn), -1;
        turn++;
    }
    if (turn != e->n_turns) return snprintf(why, wl, "%d masked runs for %d turns", turn, e->n_turns), -1;
    return 0;
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_episodes_complete_with_session_state(void) {
    if (vivd_start() != 0) FAIL("vivd did not start");
    static const char *const t0[] = {"<execute>x = 6*7\nprint('set')</execute>", "<execute>print(x)</execute>",
                                     "<solution>42</solution>", NULL};
    static const char *const t1[] = {"<execute>#!BASH\necho $((2+3))</execute>", "<solution>5</solution>", NULL};
    struct script s = {.turns = {t0, t1}, .period = 2};
    struct fixture f;
    fixture_init(&f, &s, 16);
    char err[256];
    struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    CHECK(r, "%s", err);
    /* tasks 0 and 1 alternate with the scripts: group size 2, so episode
     * i runs script i % 2 on task i / 2; give each group its matching task */
    int tk[] = {0, 1, 0, 1};
    struct rl_episode *eps;
    struct rl_step_stats st;
    CHECK(rl_rollout_step(r, tk, 4, 2, &eps, &st, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < 8; i++) {
        struct rl_episode *e = &eps[i];
        char why[256];
        char *text = episode_text(e);
        CHECK(e->end == RL_END_SOLUTION, "episode %d ended %s: %s", i, rl_end_name(e->end), text);
        CHECK(check_masks(e, &s, why, sizeof why) == 0, "episode %d: %s", i, why);
        CHECK(e->group == i / 2, "group");
        if (i % 2 == 0) {
            CHECK(strstr(text, "<observation>set\n</observation>") && strstr(text, "<observation>42\n</observation>"),
                  "python state did not persist: %s", text);
            CHECK(e->n_turns == 3 && e->tool_calls == 2, "turns %d calls %d", e->n_turns, e->tool_calls);
        } else {
            CHECK(strstr(text, "<observation>5\n</observation>"), "shell output missing: %s", text);
        }
        /* the answer is right only where the script matches the task */
        double want = (e->task == 0 && i % 2 == 0) || (e->task == 1 && i % 2 == 1);
        CHECK(e->score.correct == want, "episode %d task %d correct %g", i, e->task, e->score.correct);
        CHECK(e->score.format == 1, "format");
        CHECK(strncmp(text, "<task>", 6) == 0 && e->prompt_tokens == (int)strlen(tasks[e->task].question) + 14,
              "prompt length %d", e->prompt_tokens);
        free(text);
    }
    CHECK(st.ends[RL_END_SOLUTION] == 8 && st.tool_calls == 12 && st.tool_errors == 0, "stats: %ld calls", st.tool_calls);
    CHECK(eps[0].tool_timeout_ms == 5000, "configured deadline: %ld", eps[0].tool_timeout_ms);
    int ns;
    const struct rl_tool_stats *ts = rl_rollout_tool_stats(r, &ns);
    CHECK(ns >= 2, "tool stats for python and shell: %d", ns);
    for (int i = 0; i < ns; i++)
        CHECK(ts[i].count > 0 && ts[i].mean_ms > 0 && ts[i].wall.n == ts[i].count && ts[i].back.n == ts[i].count &&
                  rl_lat_quantile(&ts[i].back, 0.5) >= rl_lat_quantile(&ts[i].wall, 0.5),
              "%s latency not recorded", ts[i].name);
    rl_episodes_free(eps, 8);
    rl_rollout_free(r);
}

static void test_failures_stay_with_their_episode(void) {
    if (vivd_start() != 0) FAIL("vivd did not start");
    /* episode 0: a call past its 1 s deadline (the session dies; x is gone);
     * 1: an exception; 2: the generator fails it; 3: unknown tool in vivd;
     * 4..7: normal */
    static const char *const slow[] = {"<execute>x = 1\nimport time\ntime.sleep(30)</execute>",
                                       "<execute>print(x)</execute>", "<solution>42</solution>", NULL};
    static const char *const boom[] = {"<execute>raise ValueError('boom')</execute>", "<solution>42</solution>", NULL};
    static const char *const okay[] = {"<execute>print(6*7)</execute>", "<solution>42</solution>", NULL};
    static const char *const sh[] = {"<execute>#!BASH\necho 42</execute>", "<solution>42</solution>", NULL};
    struct script s = {.turns = {slow, boom, okay, sh, okay, okay, okay, okay}, .period = 8};
    struct fixture f;
    fixture_init(&f, &s, 8);
    static const struct rl_tool_cfg short_tools[] = {{"python", 1000, true}, {"shell", 0, false}};
    f.cfg.tools = short_tools;
    f.cfg.ntools = 2;
    f.fg.fail_episode = 2;
    char err[256];
    struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    CHECK(r, "%s", err);
    int tk[] = {0, 0};
    struct rl_episode *eps;
    struct rl_step_stats st;
    CHECK(rl_rollout_step(r, tk, 2, 4, &eps, &st, err, sizeof err) == 0, "%s", err);
    char *t0 = episode_text(&eps[0]), *t1 = episode_text(&eps[1]);
    CHECK(eps[0].end == RL_END_SOLUTION && eps[0].tool_timeouts == 1, "slow: %s timeouts %d", rl_end_name(eps[0].end),
          eps[0].tool_timeouts);
    CHECK(strstr(t0, "[timed out]") && strstr(t0, "NameError"), "slow episode's observations: %s", t0);
    CHECK(eps[1].end == RL_END_SOLUTION && strstr(t1, "ValueError: boom") && strstr(t1, "[exit 1]"), "boom: %s", t1);
    CHECK(eps[2].end == RL_END_GEN_ERROR && eps[2].score.reward == 0, "gen failure: %s", rl_end_name(eps[2].end));
    for (int i = 3; i < 8; i++) {
        CHECK(eps[i].end == RL_END_SOLUTION && eps[i].score.reward == 2, "episode %d: %s reward %g", i,
              rl_end_name(eps[i].end), eps[i].score.reward);
        CHECK(eps[i].tool_errors == 0 && eps[i].tool_timeouts == 0, "episode %d saw errors", i);
    }
    /* a tool configured without a deadline runs under its vivd policy's default (shell: 10 s) */
    CHECK(eps[3].tool_timeout_ms == 10000, "shell deadline %ld", eps[3].tool_timeout_ms);
    CHECK(eps[0].tool_timeout_ms == 1000, "python deadline %ld", eps[0].tool_timeout_ms);
    free(t0), free(t1);
    rl_episodes_free(eps, 8);
    rl_rollout_free(r);
}

static int limits_chunk;

static void test_limits_end_episodes_by_rule(void) {
    if (vivd_start() != 0) FAIL("vivd did not start");
    /* 0: two unparsable turns; 1: one, then a solution (format 0);
     * 2: executes forever (turn limit); 3: a turn longer than max_turn_tokens */
    static const char *const junk[] = {"I think the answer", "is maybe 42", "<solution>42</solution>", NULL};
    static const char *const once[] = {"hmm", "<solution>42</solution>", NULL};
    static const char *const loop[] = {"<execute>print(1)</execute>", "<execute>print(2)</execute>",
                                       "<execute>print(3)</execute>", "<execute>print(4)</execute>", NULL};
    static char longturn[400];
    memset(longturn, 'a', sizeof longturn - 1);
    memcpy(longturn, "<execute>", 9);
    static const char *const lng[] = {longturn, "<solution>42</solution>", NULL};
    struct script s = {.turns = {junk, once, loop, lng}, .period = 4};
    struct fixture f;
    fixture_init(&f, &s, 8);
    f.cfg.max_turns = 3;
    f.cfg.max_turn_tokens = 200;
    f.cfg.chunk_tokens = limits_chunk;
    char err[256];
    struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    CHECK(r, "%s", err);
    int tk[] = {0};
    struct rl_episode *eps;
    struct rl_step_stats st;
    CHECK(rl_rollout_step(r, tk, 1, 4, &eps, &st, err, sizeof err) == 0, "%s", err);
    CHECK(eps[0].end == RL_END_PARSE_FAILURES && eps[0].n_turns == 2 && eps[0].score.reward == 0, "junk: %s",
          rl_end_name(eps[0].end));
    CHECK(eps[1].end == RL_END_SOLUTION && eps[1].score.correct == 1 && eps[1].score.format == 0, "once: %s",
          rl_end_name(eps[1].end));
    CHECK(eps[2].end == RL_END_TURN_LIMIT && eps[2].n_turns == 3 && eps[2].tool_calls == 2, "loop: %s after %d turns",
          rl_end_name(eps[2].end), eps[2].n_turns);
    CHECK(eps[3].overlong && eps[3].parse_failures == 1 && eps[3].end == RL_END_SOLUTION, "long: overlong %d end %s",
          eps[3].overlong, rl_end_name(eps[3].end));
    /* the cut turn keeps exactly max_turn_tokens generated tokens */
    int masked = 0;
    for (int i = 0; i < eps[3].n_tokens; i++) masked += eps[3].mask[i];
    CHECK(masked == 200 + (int)strlen("<solution>42</solution>"), "masked %d", masked);
    rl_episodes_free(eps, 4);
    /* the context limit: room for the prompt and one turn, not the observation */
    static const char *const two[] = {"<execute>print('x'*50)</execute>", "<solution>42</solution>", NULL};
    struct script s2 = {.turns = {two}, .period = 1};
    rl_rollout_free(r);
    fixture_init(&f, &s2, 8);
    f.cfg.max_context = 70;
    f.cfg.chunk_tokens = limits_chunk;
    r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    CHECK(rl_rollout_step(r, tk, 1, 2, &eps, &st, err, sizeof err) == 0, "%s", err);
    CHECK(eps[0].end == RL_END_CONTEXT && eps[0].overlong && eps[0].n_tokens <= 70, "context: %s, %d tokens",
          rl_end_name(eps[0].end), eps[0].n_tokens);
    rl_episodes_free(eps, 2);
    rl_rollout_free(r);
}

static void test_limits_with_chunks(void) {
    limits_chunk = 16;
    test_limits_end_episodes_by_rule();
    limits_chunk = 0;
}

static void *killer(void *arg) {
    usleep(600000);
    kill(*(pid_t *)arg, SIGKILL);
    return NULL;
}

static void test_vivd_killed_mid_step(void) {
    if (vivd_start() != 0) FAIL("vivd did not start");
    /* every episode sleeps 1.5 s in its first call: vivd dies while all are in flight */
    static const char *const t[] = {"<execute>import time\ntime.sleep(1.5)\nprint('done')</execute>",
                                    "<execute>print('again')</execute>", "<solution>42</solution>", NULL};
    struct script s = {.turns = {t}, .period = 1};
    struct fixture f;
    fixture_init(&f, &s, 8);
    char err[256];
    struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    CHECK(r, "%s", err);
    pthread_t th;
    pid_t victim = vivd_pid;
    pthread_create(&th, NULL, killer, &victim);
    int tk[] = {0, 0};
    struct rl_episode *eps;
    struct rl_step_stats st;
    int rc = rl_rollout_step(r, tk, 2, 4, &eps, &st, err, sizeof err);
    pthread_join(th, NULL);
    waitpid(vivd_pid, NULL, 0);
    vivd_pid = 0;
    CHECK(rc == 0, "%s", err);
    for (int i = 0; i < 8; i++) {
        char *text = episode_text(&eps[i]);
        CHECK(eps[i].end == RL_END_SOLUTION && eps[i].tool_lost == 2 && eps[i].infra_error, "episode %d: %s lost %d: %s",
              i, rl_end_name(eps[i].end), eps[i].tool_lost, text);
        CHECK(strstr(text, "[tool error: disconnected]") && strstr(text, "[tool error: unreachable]"), "%s", text);
        free(text);
    }
    CHECK(st.tool_lost == 16, "tool_lost %ld", st.tool_lost);
    rl_episodes_free(eps, 8);
    /* a new vivd on the same socket: the next step reconnects and works */
    if (vivd_start() != 0) FAIL("vivd did not restart");
    static const char *const quick[] = {"<execute>print(6*7)</execute>", "<solution>42</solution>", NULL};
    s.turns[0] = quick;
    usleep(600000); /* past the reconnect back-off */
    CHECK(rl_rollout_step(r, tk, 2, 4, &eps, &st, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < 8; i++) CHECK(eps[i].score.reward == 2 && eps[i].tool_lost == 0, "after restart %d", i);
    rl_episodes_free(eps, 8);
    rl_rollout_free(r);
}

static void test_sync_and_async_same_trajectories(void) {
    if (vivd_start() != 0) FAIL("vivd did not start");
    static const char *const a[] = {"<execute>import time\ntime.sleep(0.05)\ny=3\nprint(y)</execute>",
                                    "<execute>print(y*2)</execute>", "<solution>6</solution>", NULL};
    static const char *const b[] = {"<execute>print(sum(range(10)))</execute>", "<solution>45</solution>", NULL};
    struct script s = {.turns = {a, b, a}, .period = 3};
    struct rl_episode *ea, *es;
    struct rl_step_stats sa, ss;
    char err[256];
    int tk[] = {0, 1, 2, 3};
    struct rl_episode *ec;
    struct rl_step_stats sc;
    long chunk_calls = 0, whole_calls = 0;
    /* mode 0: async, 1: sync, 2: async with turns generated in 7-token chunks */
    for (int mode = 0; mode < 3; mode++) {
        struct fixture f;
        fixture_init(&f, &s, 4);
        f.cfg.sync = mode == 1;
        f.cfg.chunk_tokens = mode == 2 ? 7 : 0;
        struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
        struct rl_episode **out = mode == 0 ? &ea : mode == 1 ? &es : &ec;
        struct rl_step_stats *st = mode == 0 ? &sa : mode == 1 ? &ss : &sc;
        CHECK(rl_rollout_step(r, tk, 4, 6, out, st, err, sizeof err) == 0, "%s", err);
        CHECK(f.fg.max_batch_seen <= 4, "batch of %d over the cap", f.fg.max_batch_seen);
        if (mode == 0) whole_calls = f.fg.requests;
        if (mode == 2) chunk_calls = f.fg.requests;
        rl_rollout_free(r);
    }
    for (int i = 0; i < 24; i++) {
        CHECK(ea[i].n_tokens == es[i].n_tokens && memcmp(ea[i].tokens, es[i].tokens, sizeof(int) * ea[i].n_tokens) == 0 &&
                  memcmp(ea[i].mask, es[i].mask, ea[i].n_tokens) == 0,
              "episode %d differs between async and sync", i);
        CHECK(ea[i].n_tokens == ec[i].n_tokens && memcmp(ea[i].tokens, ec[i].tokens, sizeof(int) * ea[i].n_tokens) == 0 &&
                  memcmp(ea[i].mask, ec[i].mask, ea[i].n_tokens) == 0 &&
                  memcmp(ea[i].logprobs, ec[i].logprobs, sizeof(float) * ea[i].n_tokens) == 0,
              "episode %d differs between whole turns and chunks", i);
        CHECK(ea[i].end == RL_END_SOLUTION && ec[i].end == RL_END_SOLUTION && ec[i].n_turns == ea[i].n_turns,
              "episode %d: %s", i, rl_end_name(ea[i].end));
        CHECK(strcmp(ec[i].turn_text[0], ea[i].turn_text[0]) == 0, "chunked turn text");
    }
    CHECK(chunk_calls > 3 * whole_calls, "chunks: %ld requests, whole turns: %ld", chunk_calls, whole_calls);
    CHECK(sa.mean_batch > 1 && ss.mean_batch > 1, "batches of %.1f and %.1f", sa.mean_batch, ss.mean_batch);
    rl_episodes_free(ea, 24);
    rl_episodes_free(es, 24);
    rl_episodes_free(ec, 24);
}

/* vivd allows 2 sessions per peer; 6 episodes want one each: the engine
 * learns the cap from "busy" and the rest wait their turn, no error. */
static void test_session_cap_waits(void) {
    vivd_sessions = "2";
    int rc = vivd_start();
    vivd_sessions = "512";
    if (rc != 0) FAIL("vivd did not start");
    static const char *const t[] = {"<execute>import time\nx = 41\ntime.sleep(0.2)</execute>",
                                    "<execute>print(x + 1)</execute>", "<solution>42</solution>", NULL};
    struct script s = {.turns = {t}, .period = 1};
    struct fixture f;
    fixture_init(&f, &s, 8);
    char err[256];
    struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    CHECK(r, "%s", err);
    int tk[] = {0, 0};
    struct rl_episode *eps;
    struct rl_step_stats st;
    CHECK(rl_rollout_step(r, tk, 2, 3, &eps, &st, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < 6; i++) {
        char *text = episode_text(&eps[i]);
        CHECK(eps[i].score.reward == 2 && eps[i].tool_errors == 0 && strstr(text, "<observation>42\n</observation>"),
              "episode %d: %s", i, text);
        free(text);
    }
    CHECK(st.wall_ms > 3 * 200, "6 episodes ran in %.0f ms with 2 sessions", st.wall_ms);
    /* 6 pre-opens (4 busy), then each waiting episode retries only when a slot frees */
    CHECK(st.sessions_opened <= 16, "%ld session_open requests: retrying in a loop", st.sessions_opened);
    rl_episodes_free(eps, 6);
    rl_rollout_free(r);
}

/* The engine's trace: in async mode the generator works while tool calls
 * are in flight; in the synchronous baseline it never does. */
static void test_generation_overlaps_tools(void) {
    if (vivd_start() != 0) FAIL("vivd did not start");
    static const char *const t[] = {"<execute>import time\ntime.sleep(0.3)</execute>", "<solution>42</solution>", NULL};
    struct script s = {.turns = {t}, .period = 1};
    for (int mode = 0; mode < 2; mode++) {
        struct fixture f;
        fixture_init(&f, &s, 4);
        f.cfg.sync = mode == 1;
        f.cfg.trace = tmpfile();
        char err[256];
        struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
        int tk[] = {0, 0, 0, 0};
        struct rl_episode *eps;
        struct rl_step_stats st;
        CHECK(rl_rollout_step(r, tk, 4, 4, &eps, &st, err, sizeof err) == 0, "%s", err);
        rewind(f.cfg.trace);
        char line[512];
        int calls = 0, overlapped = 0;
        while (fgets(line, sizeof line, f.cfg.trace)) {
            cJSON *o = cJSON_Parse(line);
            CHECK(o, "trace line is not JSON: %s", line);
            calls++;
            overlapped += cJSON_GetObjectItem(o, "in_tool")->valueint > 0 && cJSON_GetObjectItem(o, "batch")->valueint > 0;
            cJSON_Delete(o);
        }
        fclose(f.cfg.trace);
        CHECK(calls == st.gen_calls && calls >= 8, "%d trace lines for %ld calls", calls, st.gen_calls);
        if (mode == 0) CHECK(overlapped > 0, "async: no generate call while a tool ran");
        else CHECK(overlapped == 0, "sync: %d generate calls while tools ran", overlapped);
        for (int i = 0; i < 16; i++) CHECK(eps[i].score.reward == 2, "episode %d", i);
        rl_episodes_free(eps, 16);
        rl_rollout_free(r);
    }
}

static int groups_seen[8], group_calls;
static void on_group(void *arg, int group, struct rl_episode *eps, int n) {
    group_calls++;
    for (int i = 0; i < n; i++)
        if (eps[i].group != group || eps[i].end == RL_END_NONE) return;
    groups_seen[group]++;
}

static void test_group_callback_and_step_deadline(void) {
    if (vivd_start() != 0) FAIL("vivd did not start");
    static const char *const fast[] = {"<solution>42</solution>", NULL};
    static const char *const slow[] = {"<execute>import time\ntime.sleep(4)</execute>", "<solution>42</solution>", NULL};
    struct script s = {.turns = {fast, fast, fast, fast, slow, fast, fast, fast}, .period = 8};
    struct fixture f;
    fixture_init(&f, &s, 8);
    f.cfg.on_group_done = on_group;
    f.cfg.step_deadline_ms = 800;
    char err[256];
    struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    int tk[] = {0, 0};
    struct rl_episode *eps;
    struct rl_step_stats st;
    memset(groups_seen, 0, sizeof groups_seen);
    group_calls = 0;
    CHECK(rl_rollout_step(r, tk, 2, 4, &eps, &st, err, sizeof err) == 0, "%s", err);
    CHECK(group_calls == 2 && groups_seen[0] == 1 && groups_seen[1] == 1, "group callbacks %d", group_calls);
    CHECK(eps[4].end == RL_END_STEP_DEADLINE && st.wall_ms < 3000, "slow: %s after %.0f ms", rl_end_name(eps[4].end),
          st.wall_ms);
    for (int i = 0; i < 8; i++)
        if (i != 4) CHECK(eps[i].end == RL_END_SOLUTION, "episode %d", i);
    rl_episodes_free(eps, 8);
    rl_rollout_free(r);
}

/* Oversampling: 4 groups start, the step needs 2; the two slow groups are
 * cut off (their sessions closed) as soon as the fast two are complete. */
static void test_min_groups_ends_step(void) {
    if (vivd_start() != 0) FAIL("vivd did not start");
    static const char *const fast[] = {"<execute>print(1)</execute>", "<solution>42</solution>", NULL};
    static const char *const slow[] = {"<execute>import time\ntime.sleep(20)</execute>", "<solution>42</solution>", NULL};
    /* groups of 2: episodes 0-1 and 4-5 fast (groups 0, 2), 2-3 and 6-7 slow (groups 1, 3) */
    struct script s = {.turns = {fast, fast, slow, slow}, .period = 4};
    struct fixture f;
    fixture_init(&f, &s, 8);
    f.cfg.min_groups = 2;
    char err[256];
    struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    int tk[] = {0, 0, 0, 0};
    struct rl_episode *eps;
    struct rl_step_stats st;
    CHECK(rl_rollout_step(r, tk, 4, 2, &eps, &st, err, sizeof err) == 0, "%s", err);
    CHECK(st.groups_complete == 2 && st.wall_ms < 10000, "%d groups complete after %.0f ms", st.groups_complete,
          st.wall_ms);
    for (int i = 0; i < 8; i++) {
        bool is_fast = (i / 2) % 2 == 0;
        CHECK(eps[i].end == (is_fast ? RL_END_SOLUTION : RL_END_STEP_DEADLINE), "episode %d: %s", i,
              rl_end_name(eps[i].end));
    }
    rl_episodes_free(eps, 8);
    /* the next step runs normally on the same connection (the cut sessions were closed) */
    s.turns[2] = s.turns[3] = fast;
    CHECK(rl_rollout_step(r, tk, 4, 2, &eps, &st, err, sizeof err) == 0, "%s", err);
    /* at least 2 (several groups can complete within one generate call) */
    CHECK(st.groups_complete >= 2, "second step: %d", st.groups_complete);
    for (int i = 0; i < 8; i++)
        if (eps[i].end == RL_END_SOLUTION) CHECK(eps[i].score.reward == 2 && eps[i].tool_errors == 0, "episode %d", i);
    rl_episodes_free(eps, 8);
    rl_rollout_free(r);
}

/* A tool's output reaches the model's context whole, through the text
 * environment and the Biomni one: NUL and what follows it, invalid UTF-8
 * (vivd sends U+FFFD per byte), an encoded surrogate, C0 and C1 controls,
 * on stdout and stderr. The byte tokenizer makes each byte one token, so
 * the tokens are the observation's bytes. */
static const char nul_code[] = "<execute>import sys\nprint('a\\x00b')\nsys.stdout.flush()\n"
                               "sys.stdout.buffer.write(b'\\xff\\xfe\\x00x\\xc2\\x85\\x01\\xed\\xa0\\x80')\n"
                               "sys.stderr.write('e\\x00f')</execute>";
static const char nul_stdout[] = "a\0b\n\xef\xbf\xbd\xef\xbf\xbd\0x\xc2\x85\x01\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd";

/* Whether the episode's tokens hold want[0..n) under mask 0. */
static int tokens_hold(const struct rl_episode *e, const char *want, size_t n) {
    for (int at = 0; at + (int)n <= e->n_tokens; at++) {
        size_t k = 0;
        while (k < n && !e->mask[at + k] && e->tokens[at + k] == (unsigned char)want[k]) k++;
        if (k == n) return 1;
    }
    return 0;
}

static void rollout_nul_env(const char *name, struct fixture *f, const char *want, size_t want_len) {
    char err[256];
    struct rl_rollout *r = rl_rollout_new(&f->cfg, &f->gen, &f->tok, &f->env, err, sizeof err);
    CHECK(r, "%s: %s", name, err);
    if (!r) return;
    int tk[] = {0};
    struct rl_episode *eps;
    struct rl_step_stats st;
    CHECK(rl_rollout_step(r, tk, 1, 1, &eps, &st, err, sizeof err) == 0, "%s: %s", name, err);
    CHECK(eps[0].end == RL_END_SOLUTION && eps[0].tool_calls == 1 && st.tool_errors == 0, "%s: ended %s", name,
          rl_end_name(eps[0].end));
    CHECK(tokens_hold(&eps[0], want, want_len), "%s: the observation's %zu bytes are not among the %d tokens", name,
          want_len, eps[0].n_tokens);
    rl_episodes_free(eps, 1);
    rl_rollout_free(r);
}

static void test_tool_output_whole(void) {
    if (vivd_start() != 0) FAIL("vivd did not start");
    static const char *const t[] = {nul_code, "<solution>42</solution>", NULL};
    struct script s = {.turns = {t}, .period = 1};
    struct fixture f;
    fixture_init(&f, &s, 4);
    /* the text environment: stdout then stderr, as they came */
    char want[256];
    size_t n = 0;
    memcpy(want, "<observation>", 13), n = 13;
    memcpy(want + n, nul_stdout, sizeof nul_stdout - 1), n += sizeof nul_stdout - 1;
    memcpy(want + n, "e\0f</observation>", 17), n += 17;
    rollout_nul_env("text env", &f, want, n);
    /* the Biomni environment (what `viv train` runs): the chat turn around it */
    struct task task = {.instance_id = "t0", .task_name = "lab_bench_dbqa", .prompt = "p", .answer = "42",
                        .grader = "lab_bench_dbqa"};
    struct task_set ts = {.t = &task, .n = 1};
    struct bio_env be = {.ts = &ts, .mode = GRADE_EVAL};
    bio_env_init(&be, &f.env);
    static const char head[] = "<|im_end|>\n<|im_start|>user\n<observation>",
                      tail[] = "\ne\0f</observation><|im_end|>\n<|im_start|>assistant\n";
    memcpy(want, head, sizeof head - 1), n = sizeof head - 1;
    memcpy(want + n, nul_stdout, sizeof nul_stdout - 1), n += sizeof nul_stdout - 1;
    memcpy(want + n, tail, sizeof tail - 1), n += sizeof tail - 1;
    rollout_nul_env("bio env", &f, want, n);
}

static void test_expected_remaining(void) {
    struct rl_lat_ring s = {0};
    /* samples 10, 20, ..., 100 ms */
    for (int i = 1; i <= 10; i++) s.v[s.n++] = 10.0 * i;
    /* after 0 ms: mean of all = 55; after 55 ms: samples 60..100 -> mean 80 - 55 = 25 */
    CHECK(fabs(rl_lat_expected_remaining(&s, 0, 0) - 55) < 1e-9, "%g", rl_lat_expected_remaining(&s, 0, 0));
    CHECK(fabs(rl_lat_expected_remaining(&s, 55, 0) - 25) < 1e-9, "%g", rl_lat_expected_remaining(&s, 55, 0));
    /* past every sample: as long again as it has run; capped by the deadline */
    CHECK(fabs(rl_lat_expected_remaining(&s, 150, 0) - 150) < 1e-9, "past all");
    CHECK(fabs(rl_lat_expected_remaining(&s, 150, 200) - 50) < 1e-9, "deadline cap");
    CHECK(rl_lat_quantile(&s, 0.5) == 60 && rl_lat_quantile(&s, 1.0) == 100, "quantiles %g", rl_lat_quantile(&s, 0.5));
    /* P(back within t | out for e): after 55 ms, 5 samples remain (60..100); 2 are <= 75 */
    CHECK(fabs(rl_lat_prob_within(&s, 55, 20, 0) - 0.4) < 1e-9, "%g", rl_lat_prob_within(&s, 55, 20, 0));
    CHECK(rl_lat_prob_within(&s, 0, 100, 0) == 1 && rl_lat_prob_within(&s, 0, 5, 0) == 0, "bounds");
    CHECK(rl_lat_prob_within(&s, 90, 20, 100) == 1, "the deadline falls within t");
    CHECK(fabs(rl_lat_prob_within(&s, 200, 200, 0) - (1 - exp(-1))) < 1e-9, "past all: exponential guess");
}

/* ---- one turn machine, every caller ------------------------------------------------- */

/* Scripted Biomni episodes, each ending with the right answer: only
 * thinking, no tags, Python with TASK and stderr and an exit code, a shell
 * script, R (vivd has no "r" policy here), output with a NUL byte, a Python
 * session killed by a signal. */
static const char *const tm0[] = {
    "<think>only thinking</think>",
    "<think>run</think>\n<execute>import sys\nprint(TASK['x'] * 6)\nprint('warn', file=sys.stderr)\nsys.exit(3)</execute>",
    "<think>shell</think>\n<execute>#!BASH\necho shell $((2+3))</execute>", "<think>done</think>\n<solution>42</solution>",
    NULL};
static const char *const tm1[] = {"no tags at all", "<think>r</think>\n<execute>#!R\ncat('R says', 6*7, '\\n')</execute>",
                                  "<think>nul</think>\n<execute>import sys\nsys.stdout.write('a\\0b')</execute>",
                                  "<solution>42</solution>", NULL};
static const char *const tm2[] = {"<think>set</think>\n<execute>x = 1\nprint('set')</execute>",
                                  "<think>die</think>\n<execute>import os\nos.kill(os.getpid(), 9)</execute>",
                                  "<think>again</think>\n<execute>print('x' in globals())</execute>",
                                  "<think>d</think>\n<solution>42</solution>", NULL};
static const char *const *const tm_scripts[] = {tm0, tm1, tm2};
enum { TM_N = 3 };

/* An agent (agent_fn) playing the scripts: episode i of run_episodes has seed base + i. */
static uint64_t tm_seed = 1000;
static char *tm_agent(void *ctx, const struct episode *ep) {
    (void)ctx;
    const char *const *t = tm_scripts[(ep->seed - tm_seed) % TM_N];
    for (int i = 0; i < ep->turns; i++)
        if (!t[i]) return NULL;
    return t[ep->turns] ? strdup(t[ep->turns]) : NULL;
}

static void test_turn_machine_same_text_every_caller(void) {
    /* episode 1 runs an R cell on vivd's r policy (build.sh installs R) */
    if (access("/usr/bin/Rscript", X_OK) != 0) SKIP("no /usr/bin/Rscript on this host (./build.sh installs r-base-core)");
    if (vivd_start() != 0) FAIL("vivd did not start");
    struct task task[TM_N];
    for (int i = 0; i < TM_N; i++)
        task[i] = (struct task){.instance_id = "t", .task_name = "lab_bench_dbqa", .prompt = "what is 6*7?",
                                .answer = "42", .grader = "lab_bench_dbqa",
                                .meta = cJSON_Parse("{\"inputs\":{\"x\":7}}")};
    struct task_set ts = {.t = task, .n = TM_N};
    char err[512];
    /* 1. GRPO's rollouts (and viv train's evaluations): the engine over bio_env */
    struct script s = {.turns = {tm0, tm1, tm2}, .period = TM_N};
    struct fixture f;
    fixture_init(&f, &s, 4);
    struct bio_env be = {.ts = &ts, .mode = GRADE_TRAIN};
    bio_env_init(&be, &f.env);
    struct rl_tool_cfg bt[4];
    f.cfg.tools = bt, f.cfg.ntools = bio_tool_cfgs(bt, 4, 5000);
    struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    CHECK(r, "rollout: %s", err);
    int tk[TM_N] = {0, 1, 2};
    struct rl_episode *eps = NULL;
    struct rl_step_stats st;
    CHECK(rl_rollout_step(r, tk, TM_N, 1, &eps, &st, err, sizeof err) == 0, "rollout step: %s", err);
    /* 2. SFT collection (and viv eval, the endpoint agents: the same
     * episode runner): sft_collect with the scripted agent */
    struct viv_pool *pool = viv_pool_open(sock_path, NULL, NULL, 2000, err, sizeof err);
    CHECK(pool, "pool: %s", err);
    struct sft_collect_opts co = {.samples = 1, .seed = tm_seed, .concurrency = 3, .max_turns = 8, .timeout_ms = 5000,
                                  .agent = tm_agent};
    struct sft_set set;
    CHECK(sft_collect(&ts, pool, &co, &set, err, sizeof err) == 0, "sft_collect: %s", err);
    CHECK(set.n == TM_N, "SFT kept %d of %d scripted episodes (each ends with the right answer)", set.n, TM_N);
    /* the texts the SFT tokenizer is trained on, and what SFT's tokens decode to */
    const char *texts[TM_N];
    size_t lens[TM_N];
    char *sft_texts[TM_N];
    for (int i = 0; i < set.n; i++)
        sft_texts[i] = sft_text(&set.v[i], task[set.v[i].task].prompt, &lens[i]), texts[i] = sft_texts[i];
    struct tokenizer *tok = tokenizer_train(texts, lens, (size_t)set.n, 320, NULL, err, sizeof err);
    CHECK(tok, "tokenizer: %s", err);
    for (int i = 0; i < set.n; i++) {
        int k = set.v[i].task;
        CHECK(eps[k].end == RL_END_SOLUTION && eps[k].score.correct == 1, "rollout episode %d ended %s", k,
              rl_end_name(eps[k].end));
        char *roll = episode_text(&eps[k]);
        size_t rl_len = (size_t)eps[k].n_tokens;
        struct chat c;
        chat_init(&c);
        CHECK(sft_render(&set.v[i], task[k].prompt, tok, &c) == 0, "sft_render %d", k);
        size_t dl = 0;
        char *dec = tokenizer_decode(tok, c.ids, c.n, &dl);
        /* byte for byte: the first difference, shown */
        size_t d = 0;
        while (d < rl_len && d < lens[i] && roll[d] == sft_texts[i][d]) d++;
        CHECK(rl_len == lens[i] && d == rl_len, "episode %d: rollout (%zu bytes) and SFT's text (%zu) differ at byte %zu:\n"
              "  rollout: %.60s\n  sft:     %.60s", k, rl_len, lens[i], d, roll + (d > 20 ? d - 20 : 0),
              sft_texts[i] + (d > 20 ? d - 20 : 0));
        CHECK(dec && dl == rl_len && memcmp(dec, roll, dl) == 0, "episode %d: SFT's tokens decode to other text", k);
        /* the observations carry what the scripts meant them to */
        static const char *const want[TM_N][2] = {
            {"42\nwarn\n", "shell 5"},
            {"R says 42", "a\0b"},
            {"[the Python session was lost; its variables are gone]", "False"}};
        for (int w = 0; w < 2; w++)
            CHECK(memmem(roll, rl_len, want[k][w], strlen(want[k][w]) + (k == 1 && w == 1 ? 2 : 0)),
                  "episode %d: no \"%s\" in its text", k, want[k][w]);
        free(roll), free(dec), chat_free(&c), free(sft_texts[i]);
    }
    tokenizer_free(tok);
    sft_set_free(&set);
    viv_pool_close(pool);
    rl_episodes_free(eps, TM_N);
    rl_rollout_free(r);
    for (int i = 0; i < TM_N; i++) cJSON_Delete(task[i].meta);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    t_after_each = after_each;
    static const struct test_case tests[] = {
        {"rollout_expected_remaining", test_expected_remaining},
        {"rollout_episodes_complete_with_session_state", test_episodes_complete_with_session_state},
        {"rollout_failures_stay_with_their_episode", test_failures_stay_with_their_episode},
        {"rollout_limits_end_episodes_by_rule", test_limits_end_episodes_by_rule},
        {"rollout_limits_with_chunked_turns", test_limits_with_chunks},
        {"rollout_vivd_killed_mid_step", test_vivd_killed_mid_step},
        {"rollout_sync_async_chunked_same_trajectories", test_sync_and_async_same_trajectories},
        {"rollout_group_callback_and_step_deadline", test_group_callback_and_step_deadline},
        {"rollout_session_cap_waits", test_session_cap_waits},
        {"rollout_generation_overlaps_tools", test_generation_overlaps_tools},
        {"rollout_min_groups_ends_step", test_min_groups_ends_step},
        {"rollout_tool_output_whole", test_tool_output_whole},
        {"turn_machine_same_text_every_caller", test_turn_machine_same_text_every_caller},
    };
    return run_test_cases(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
}
