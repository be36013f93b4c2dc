/*
 * multihost_tests.c - tool calls across several sandbox hosts: the pool
 * (sandbox/client/pool.c) under the rollout engine, with real vivds, the scripted
 * fake generator and the text test-double environment.
 *
 * The tests of what a lost host costs the learning signal run a real (tiny,
 * random) model's GRPO update on the CPU backend.
 *
 * Each test starts its own vivds (sockets in a temp dir, --zygotes 1,
 * stdio on /dev/null; a TCP one with a token file) and kills them
 * afterwards (t_after_each also kills what a failing test left behind).
 * Built with ASan + UBSan.
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../harness.h"
#include "../doubles/fake_gen.h"
#include "../../rl/rollout.h"
#include "../doubles/text_env.h"
#include "../rl_fixture.h"
#include "../../model/adamw.h"
#include "../../model/qwen3.h"
#include "../../rl/backend.h"
#include "../../rl/train.h"
#include "../../sandbox/client/pool.h"

/* ---- private vivds ------------------------------------------------------------------- */

#define MAXD 3
static char tmpdir[64];
static struct daemon {
    pid_t pid;
    char sock[128], log[128], tcp[32];
} d[MAXD];
static const char *token = "0123456789abcdef-multihost";

static int can_connect(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

static int free_port(void) {
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof sa;
    int port = -1;
    if (bind(probe, (struct sockaddr *)&sa, sizeof sa) == 0 && getsockname(probe, (struct sockaddr *)&sa, &slen) == 0)
        port = ntohs(sa.sin_port);
    close(probe);
    return port;
}

/* Start vivd number i (with_tcp: also on 127.0.0.1:PORT with the token;
 * workers: its --workers, NULL for the default). */
static int vivd_start_w(int i, int with_tcp, const char *workers) {
    const char *bin = getenv("VIVD") ? getenv("VIVD") : "bin/vivd";
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/mh-test-XXXXXX");
        if (!mkdtemp(tmpdir)) return -1;
        char tf[128];
        snprintf(tf, sizeof tf, "%s/token", tmpdir);
        FILE *f = fopen(tf, "w");
        if (!f) return -1;
        fprintf(f, "%s\n", token);
        fclose(f);
    }
    struct daemon *v = &d[i];
    snprintf(v->sock, sizeof v->sock, "%s/vivd%d.sock", tmpdir, i);
    snprintf(v->log, sizeof v->log, "%s/vivd%d.log", tmpdir, i);
    v->tcp[0] = 0;
    if (with_tcp) snprintf(v->tcp, sizeof v->tcp, "127.0.0.1:%d", free_port());
    unlink(v->sock);
    char tf[128];
    snprintf(tf, sizeof tf, "%s/token", tmpdir);
    v->pid = fork();
    if (v->pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
        const char *argv[20] = {bin, "--socket", v->sock, "--log", v->log, "--zygotes", "1", "--max-sessions-per-peer", "64"};
        int k = 9;
        if (with_tcp) argv[k++] = "--tcp", argv[k++] = v->tcp, argv[k++] = "--token-file", argv[k++] = tf;
        if (workers) argv[k++] = "--workers", argv[k++] = workers;
        execv(bin, (char *const *)argv);
        _exit(99);
    }
    for (int k = 0; k < 1000; k++) {
        if (can_connect(v->sock)) return 0;
        usleep(10000);
    }
    return -1;
}

static int vivd_start(int i, int with_tcp) { return vivd_start_w(i, with_tcp, NULL); }

static void vivd_kill(int i) {
    if (d[i].pid > 0) {
        kill(d[i].pid, SIGKILL);
        waitpid(d[i].pid, NULL, 0);
    }
    d[i].pid = 0;
}

static void after_each(void) {
    for (int i = 0; i < MAXD; i++) vivd_kill(i);
    if (tmpdir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
        if (system(cmd) != 0) {}
        tmpdir[0] = 0;
    }
}

/* ---- the engine's fixture ------------------------------------------------------------------ */

struct script {
    const char *const *turns;
};

static const char *script_turn(void *arg, int episode, int turn) {
    struct script *s = arg;
    (void)episode;
    for (int i = 0; i < turn; i++)
        if (!s->turns[i]) return "";
    return s->turns[turn] ? s->turns[turn] : "";
}

static const struct text_task tasks[] = {{"what is 6*7?", "42"}};
static const struct rl_tool_cfg tools[] = {{"python", 8000, true}, {"shell", 5000, false}};

static void fixture_init(struct fixture *f, struct script *s, struct viv_pool *p) {
    fixture_setup(f, script_turn, s, 16, tasks, 1, tools, 2);
    f->cfg.pool = p;
}

static char *slurp(FILE *f) {
    fflush(f);
    long n = ftell(f);
    char *s = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
    rewind(f);
    if (n > 0 && fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = 0;
    fseek(f, 0, SEEK_END);
    return s;
}

/* ---- tests ------------------------------------------------------------------------------------- */

/* Two hosts, one over a Unix socket and one over TCP with a token: both
 * get calls, every Python session keeps its state on its host, and the
 * step's per-host counts add up to its calls. */
static void test_two_hosts_share_load(void) {
    if (vivd_start(0, 0) != 0 || vivd_start(1, 1) != 0) FAIL("vivd did not start");
    char spec[320], err[512];
    snprintf(spec, sizeof spec, "unix:%s,tcp:%s", d[0].sock, d[1].tcp);
    FILE *log = tmpfile();
    struct viv_pool *p = viv_pool_open(spec, token, log, 5000, err, sizeof err);
    CHECK(p, "%s", err);
    CHECK(viv_pool_size(p) == 2 && viv_pool_up(p) == 2, "hosts %d up %d", viv_pool_size(p), viv_pool_up(p));
    CHECK(viv_pool_host(p, 1)->capacity >= 1, "capacity from stats");
    static const char *const t[] = {"<execute>x = 6*7\nimport time\ntime.sleep(0.1)\nprint('set')</execute>",
                                    "<execute>#!BASH\necho shell-ok</execute>", "<execute>print(x)</execute>",
                                    "<solution>42</solution>", NULL};
    struct script s = {t};
    struct fixture f;
    fixture_init(&f, &s, p);
    struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    CHECK(r, "%s", err);
    int tk[] = {0, 0, 0, 0};
    struct rl_episode *eps;
    struct rl_step_stats st;
    CHECK(rl_rollout_step(r, tk, 4, 4, &eps, &st, err, sizeof err) == 0, "%s", err);
    int on[2] = {0, 0};
    for (int i = 0; i < 16; i++) {
        char *text = episode_text(&eps[i]);
        CHECK(eps[i].end == RL_END_SOLUTION && eps[i].score.correct == 1 && !eps[i].infra_error, "episode %d: %s",
              i, text);
        CHECK(strstr(text, "<observation>42\n</observation>") && strstr(text, "shell-ok"),
              "episode %d: state lost or shell missing: %s", i, text);
        CHECK(eps[i].host == 0 || eps[i].host == 1, "episode %d host %d", i, eps[i].host);
        free(text);
    }
    for (int i = 0; i < 16; i++) on[eps[i].host]++;
    CHECK(st.nhosts == 2 && st.hosts_up == 2, "nhosts %d up %d", st.nhosts, st.hosts_up);
    CHECK(st.host_calls[0] > 0 && st.host_calls[1] > 0, "calls per host %ld %ld", st.host_calls[0], st.host_calls[1]);
    CHECK(st.host_calls[0] + st.host_calls[1] == st.tool_calls && st.tool_calls == 48, "calls %ld + %ld of %ld",
          st.host_calls[0], st.host_calls[1], st.tool_calls);
    /* equal capacities (same machine, same --workers): sessions split near evenly */
    CHECK(on[0] >= 4 && on[1] >= 4, "sessions per host %d %d", on[0], on[1]);
    CHECK(viv_pool_host(p, 0)->calls > 0 && viv_pool_host(p, 1)->calls > 0, "pool counters");
    rl_episodes_free(eps, 16);
    rl_rollout_free(r);
    viv_pool_close(p);
    fclose(log);
}

static void *killer(void *arg) {
    usleep(700000);
    kill(*(pid_t *)arg, SIGKILL);
    return NULL;
}

/* kill -9 one of two hosts mid-step: the step completes; exactly the
 * episodes whose session was on it are infra errors (their call in flight
 * failed as "disconnected"), their next call ran on the live host, the
 * others never noticed; the next step runs entirely on the live host. */
static void test_host_killed_mid_step(void) {
    if (vivd_start(0, 0) != 0 || vivd_start(1, 0) != 0) FAIL("vivd did not start");
    char spec[320], err[512];
    snprintf(spec, sizeof spec, "%s,unix:%s", d[0].sock, d[1].sock);
    FILE *log = tmpfile();
    struct viv_pool *p = viv_pool_open(spec, NULL, log, 5000, err, sizeof err);
    CHECK(p, "%s", err);
    /* every episode sets x, then sleeps 2 s: host 1 dies while all are in flight */
    static const char *const t[] = {"<execute>x = 7\nimport time\ntime.sleep(2)\nprint('slept')</execute>",
                                    "<execute>print(x * 6)</execute>", "<solution>42</solution>", NULL};
    struct script s = {t};
    struct fixture f;
    fixture_init(&f, &s, p);
    struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    CHECK(r, "%s", err);
    pthread_t th;
    pid_t victim = d[1].pid;
    pthread_create(&th, NULL, killer, &victim);
    int tk[] = {0, 0, 0, 0};
    struct rl_episode *eps;
    struct rl_step_stats st;
    int rc = rl_rollout_step(r, tk, 4, 4, &eps, &st, err, sizeof err);
    pthread_join(th, NULL);
    waitpid(d[1].pid, NULL, 0);
    d[1].pid = 0;
    CHECK(rc == 0, "%s", err);
    int lost = 0;
    for (int i = 0; i < 16; i++) {
        struct rl_episode *e = &eps[i];
        char *text = episode_text(e);
        CHECK(e->end == RL_END_SOLUTION, "episode %d did not finish: %s", i, rl_end_name(e->end));
        if (e->infra_error) {
            lost++;
            CHECK(e->lost_host == 1 && e->tool_lost == 1, "episode %d: lost on host %d, %d lost calls", i, e->lost_host,
                  e->tool_lost);
            CHECK(strstr(text, "[tool error: disconnected]"), "episode %d: %s", i, text);
            /* its next call ran on the live host, in a fresh session (x is gone there) */
            CHECK(e->host == 0 && strstr(text, "NameError"), "episode %d: host %d: %s", i, e->host, text);
        } else {
            CHECK(e->lost_host == -1 && e->host == 0 && e->tool_lost == 0, "episode %d: host %d lost_host %d", i,
                  e->host, e->lost_host);
            CHECK(strstr(text, "<observation>slept\n</observation>") && strstr(text, "<observation>42\n</observation>"),
                  "episode %d on the live host: %s", i, text);
        }
        free(text);
    }
    CHECK(lost >= 4 && lost <= 12, "%d episodes were on the killed host (16 spread over 2)", lost);
    CHECK(st.host_lost[1] == lost && st.host_lost[0] == 0, "host_lost %d %d", st.host_lost[0], st.host_lost[1]);
    CHECK(st.hosts_up == 1 && st.tool_lost == lost, "up %d lost %ld", st.hosts_up, st.tool_lost);
    char *l = slurp(log);
    CHECK(strstr(l, "down (") && strstr(l, d[1].sock), "no down event logged: %s", l);
    free(l);
    rl_episodes_free(eps, 16);
    /* the next step: every call goes to the live host */
    static const char *const quick[] = {"<execute>print(6*7)</execute>", "<execute>#!BASH\necho ok</execute>",
                                        "<solution>42</solution>", NULL};
    s.turns = quick;
    long before = viv_pool_host(p, 1)->calls;
    CHECK(rl_rollout_step(r, tk, 4, 4, &eps, &st, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < 16; i++)
        CHECK(eps[i].score.reward == 2 && !eps[i].infra_error && eps[i].host == 0, "after the kill %d: host %d", i,
              eps[i].host);
    CHECK(st.host_calls[0] == 32 && st.host_calls[1] == 0, "calls %ld %ld", st.host_calls[0], st.host_calls[1]);
    CHECK(viv_pool_host(p, 1)->calls == before && !viv_pool_host(p, 1)->up, "the dead host was given calls");
    rl_episodes_free(eps, 16);
    /* the host comes back on its socket: the pool reconnects (backoff) and uses it again */
    if (vivd_start(1, 0) != 0) FAIL("vivd 1 did not restart");
    int up = 0;
    for (int k = 0; k < 60 && !up; k++) {
        usleep(100000);
        up = viv_pool_pick(p, NULL) >= 0 && viv_pool_host(p, 1)->up;
    }
    CHECK(up, "host 1 did not come back within 6 s");
    CHECK(rl_rollout_step(r, tk, 4, 4, &eps, &st, err, sizeof err) == 0, "%s", err);
    CHECK(st.host_calls[1] > 0 && st.tool_lost == 0, "after the restart: host 1 got %ld calls", st.host_calls[1]);
    rl_episodes_free(eps, 16);
    l = slurp(log);
    CHECK(strstr(l, "up again"), "no up event logged: %s", l);
    free(l);
    rl_rollout_free(r);
    viv_pool_close(p);
    fclose(log);
}

/* A TCP host with a wrong token (or none) is refused with a message that
 * says what to fix; the right token works. */
static void test_wrong_token_refused(void) {
    if (vivd_start(0, 1) != 0) FAIL("vivd did not start");
    char spec[320], err[512] = "";
    snprintf(spec, sizeof spec, "tcp:%s", d[0].tcp);
    struct viv_pool *p = viv_pool_open(spec, "0123456789abcdef-WRONG", NULL, 5000, err, sizeof err);
    CHECK(!p, "a wrong token was accepted");
    CHECK(strstr(err, "refused the token") && strstr(err, d[0].tcp), "message: %s", err);
    p = viv_pool_open(spec, NULL, NULL, 5000, err, sizeof err);
    CHECK(!p && strstr(err, "needs a token"), "no token: %s", err);
    p = viv_pool_open(spec, token, NULL, 5000, err, sizeof err);
    CHECK(p, "the right token: %s", err);
    viv_pool_close(p);
    /* the token file, read as vivd reads it */
    char tf[128];
    snprintf(tf, sizeof tf, "%s/token", tmpdir);
    char *t = viv_pool_read_token(tf, err, sizeof err);
    CHECK(t && !strcmp(t, token), "token file: %s", t ? t : err);
    free(t);
}

/* Addresses are checked before anything connects. */
static void test_bad_addresses(void) {
    static const char *const bad[] = {"", "http://x:80", "tcp:127.0.0.1", "tcp:127.0.0.1:0", "tcp::80",
                                      "tcp:127.0.0.1:99999", "unix:", "/a.sock,", ",/a.sock", "vivd.sock", NULL};
    char err[256];
    bool needs;
    for (int i = 0; bad[i]; i++) {
        err[0] = 0;
        CHECK(viv_pool_check(bad[i], &needs, err, sizeof err) != 0 && err[0], "'%s' accepted", bad[i]);
    }
    CHECK(viv_pool_check("/a.sock,unix:/b.sock", &needs, err, sizeof err) == 0 && !needs, "unix pair: %s", err);
    CHECK(viv_pool_check("unix:/a.sock,tcp:10.0.0.2:7070,tcp:node-3:7070", &needs, err, sizeof err) == 0 && needs,
          "mixed: %s", err);
    char many[2048] = "";
    for (int i = 0; i < 17; i++) snprintf(many + strlen(many), sizeof many - strlen(many), "%s/s%d", i ? "," : "", i);
    CHECK(viv_pool_check(many, &needs, err, sizeof err) != 0 && strstr(err, "more than"), "17 hosts: %s", err);
    /* the engine refuses a bad list at once */
    struct script s = {NULL};
    struct fixture f;
    fixture_init(&f, &s, NULL);
    f.cfg.sandbox = "tcp:nowhere";
    struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    CHECK(!r && strstr(err, "tcp:HOST:PORT"), "engine: %s", err);
    /* a host that is not there: the pool gives up after its wait */
    CHECK(!viv_pool_open("/nonexistent/vivd.sock", NULL, NULL, 300, err, sizeof err) && strstr(err, "nonexistent"),
          "missing host: %s", err);
}


static void *freezer(void *arg) {
    usleep(500000);
    kill(*(pid_t *)arg, SIGSTOP);
    return NULL;
}

/* A host that stops answering without closing its connections (SIGSTOP: a
 * hung machine, a dead network path): its calls get no answer; 5 s past
 * their deadline the pool gives the host up, those episodes are infra
 * errors, their next calls run on the live host, and the step completes. */
static void test_host_frozen_mid_step(void) {
    if (vivd_start(0, 0) != 0 || vivd_start(1, 0) != 0) FAIL("vivd did not start");
    char spec[320], err[512];
    snprintf(spec, sizeof spec, "%s,%s", d[0].sock, d[1].sock);
    FILE *log = tmpfile();
    struct viv_pool *p = viv_pool_open(spec, NULL, log, 5000, err, sizeof err);
    CHECK(p, "%s", err);
    static const char *const t[] = {"<execute>import time\ntime.sleep(1)\nprint('slept')</execute>",
                                    "<execute>print(6 * 7)</execute>", "<solution>42</solution>", NULL};
    static const struct rl_tool_cfg fast[] = {{"python", 1500, true}};
    struct script s = {t};
    struct fixture f;
    fixture_init(&f, &s, p);
    f.cfg.tools = fast;
    f.cfg.ntools = 1;
    struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    CHECK(r, "%s", err);
    pthread_t th;
    pid_t victim = d[1].pid;
    pthread_create(&th, NULL, freezer, &victim);
    int tk[] = {0, 0, 0, 0};
    struct rl_episode *eps;
    struct rl_step_stats st;
    int rc = rl_rollout_step(r, tk, 4, 2, &eps, &st, err, sizeof err);
    pthread_join(th, NULL);
    CHECK(rc == 0, "%s", err);
    int lost = 0;
    for (int i = 0; i < 8; i++) {
        char *text = episode_text(&eps[i]);
        CHECK(eps[i].end == RL_END_SOLUTION && eps[i].score.correct == 1, "episode %d: %s", i, text);
        CHECK(strstr(text, "<observation>42\n</observation>"), "episode %d: no second call: %s", i, text);
        if (eps[i].infra_error) {
            lost++;
            CHECK(eps[i].lost_host == 1 && eps[i].host == 0, "episode %d: lost on %d, ended on %d", i,
                  eps[i].lost_host, eps[i].host);
        } else {
            CHECK(eps[i].host == 0 && strstr(text, "slept"), "episode %d: host %d: %s", i, eps[i].host, text);
        }
        free(text);
    }
    CHECK(lost >= 2 && lost <= 6, "%d episodes were on the frozen host (8 spread over 2)", lost);
    CHECK(st.hosts_up == 1 && st.host_lost[1] == lost, "up %d, host_lost %d", st.hosts_up, st.host_lost[1]);
    char *l = slurp(log);
    CHECK(strstr(l, "past a call's deadline"), "no down event: %s", l);
    free(l);
    rl_episodes_free(eps, 8);
    rl_rollout_free(r);
    viv_pool_close(p);
    fclose(log);
    kill(d[1].pid, SIGCONT);
}


/* Placement is by load relative to capacity: a host with 4 workers gets
 * about 4 times the sessions of a host with 1. */
static void test_placement_follows_capacity(void) {
    if (vivd_start_w(0, 0, "4") != 0 || vivd_start_w(1, 0, "1") != 0) FAIL("vivd did not start");
    char spec[320], err[512];
    snprintf(spec, sizeof spec, "%s,%s", d[0].sock, d[1].sock);
    struct viv_pool *p = viv_pool_open(spec, NULL, NULL, 5000, err, sizeof err);
    CHECK(p, "%s", err);
    CHECK(viv_pool_host(p, 0)->capacity == 4 && viv_pool_host(p, 1)->capacity == 1, "capacities %d %d (vivd's workers)",
          viv_pool_host(p, 0)->capacity, viv_pool_host(p, 1)->capacity);
    static const char *const t[] = {"<execute>print(6*7)</execute>", "<solution>42</solution>", NULL};
    struct script s = {t};
    struct fixture f;
    fixture_init(&f, &s, p);
    struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    CHECK(r, "%s", err);
    int tk[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    struct rl_episode *eps;
    struct rl_step_stats st;
    CHECK(rl_rollout_step(r, tk, 10, 2, &eps, &st, err, sizeof err) == 0, "%s", err);
    int on[2] = {0, 0};
    for (int i = 0; i < 20; i++) {
        CHECK(eps[i].score.reward == 2 && (eps[i].host == 0 || eps[i].host == 1), "episode %d", i);
        on[eps[i].host]++;
    }
    /* all 20 sessions are opened at the step's start: (in flight + 1) / capacity
     * gives host 0 four of every five */
    CHECK(on[0] == 16 && on[1] == 4, "sessions per host %d and %d, 16 and 4 expected", on[0], on[1]);
    rl_episodes_free(eps, 20);
    rl_rollout_free(r);
    viv_pool_close(p);
}

/* ---- a failure of the sandbox is never a learning signal ------------------------------------------ */

/* A greedy policy of the context, as a model is: its next turn is a function
 * of what it has seen. It sets x in a Python session (and waits 2 s, so a
 * host killed meanwhile takes the call), then prints x * 7, then answers
 * what the observation showed: 42 after a good run, "unknown" after a tool
 * error or a NameError (a session lost with the host). With vary set, an
 * episode of odd index answers 41 instead of 42, so a group's rewards
 * differ whatever the sandbox did. */
struct policy {
    bool vary;
};

static const char *policy_turn(const struct policy *p, const char *ctx, int episode) {
    int obs = 0;
    for (const char *q = ctx; (q = strstr(q, "<observation>")); q++) obs++;
    if (obs == 0) return "<execute>x = 6\nimport time\ntime.sleep(2)\nprint('slept')</execute>";
    if (obs == 1) return "<execute>print(x * 7)</execute>";
    const char *last = strstr(ctx, "<observation>");
    for (const char *q = last; q && (q = strstr(q + 1, "<observation>"));) last = q;
    if (!strstr(last, "42\n")) return "<solution>unknown</solution>";
    return p->vary && episode % 2 ? "<solution>41</solution>" : "<solution>42</solution>";
}

static int policy_generate(void *arg, struct rl_gen_request *reqs, int n) {
    for (int i = 0; i < n; i++) {
        struct rl_gen_request *q = &reqs[i];
        char *ctx = malloc((size_t)q->n_tokens + 1);
        for (int t = 0; t < q->n_tokens; t++) ctx[t] = (char)q->tokens[t];
        ctx[q->n_tokens] = 0;
        const char *turn = policy_turn(arg, ctx, q->episode);
        free(ctx);
        int len = (int)strlen(turn);
        if (len > q->max_new_tokens) len = q->max_new_tokens;
        for (int t = 0; t < len; t++) q->out_tokens[t] = (unsigned char)turn[t], q->out_logprobs[t] = -0.25f - 0.01f * t;
        q->n_out = len;
        q->stop_reason = RL_GEN_STOP_STRING;
    }
    return 0;
}

static const struct text_task two_tasks[] = {{"what is 6*7?", "42"}, {"what is 6*8?", "48"}};

static void policy_fixture(struct fixture *f, struct policy *pol, struct viv_pool *p) {
    fixture_setup(f, script_turn, NULL, 16, two_tasks, 2, tools, 2);
    f->gen = (struct rl_generator){.ctx = pol, .generate = policy_generate, .max_batch = 16};
    f->cfg.pool = p;
}

/* A tiny random model over the byte vocabulary, and its CPU backend with AdamW. */
static struct train_backend *tiny_backend(struct qwen3 **m, const struct qwen3 *like) {
    struct qwen3_config c = {.vocab_size = 256, .hidden_size = 32, .intermediate_size = 64, .num_layers = 1,
                             .num_heads = 2, .num_kv_heads = 1, .head_dim = 16, .max_position = 4096,
                             .rms_norm_eps = 1e-6f, .rope_theta = 10000, .tie_word_embeddings = 1,
                             .bos_token_id = -1, .eos_token_id = -1};
    char err[256];
    *m = qwen3_create(like ? &like->cfg : &c, err, sizeof err);
    if (!*m) return NULL;
    if (like) memcpy((*m)->params, like->params, like->n_params * sizeof(float));
    else qwen3_init_random(*m, 11, 0.1f);
    struct train_backend *b = train_backend_cpu(*m);
    struct adamw_config ac;
    adamw_defaults(&ac);
    ac.lr = 1e-2f;
    if (b && b->ops->opt_init(b, &ac) != 0) return train_backend_free(b), NULL;
    return b;
}

/* kill -9 one of two hosts mid-step, then the GRPO update of that step: it
 * equals the update computed from the surviving episodes alone (groups kept
 * over their survivors, a group with fewer than two dropped): same loss,
 * same gradient norm, same weights after the step. The same episodes taken
 * as the model's outcomes (the infra marks cleared) give another update, so
 * the lost episodes did carry a (false) signal that was kept out. */
static void test_lost_host_update_is_the_survivors(void) {
    if (vivd_start(0, 0) != 0 || vivd_start(1, 0) != 0) FAIL("vivd did not start");
    char spec[320], err[512];
    snprintf(spec, sizeof spec, "%s,unix:%s", d[0].sock, d[1].sock);
    FILE *log = tmpfile();
    struct viv_pool *p = viv_pool_open(spec, NULL, log, 5000, err, sizeof err);
    CHECK(p, "%s", err);
    struct policy pol = {.vary = true};
    struct fixture f;
    policy_fixture(&f, &pol, p);
    struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    CHECK(r, "%s", err);
    pthread_t th;
    pid_t victim = d[1].pid;
    pthread_create(&th, NULL, killer, &victim);
    int tk[] = {0, 0, 0, 0}, G = 4, N = 16;
    struct rl_episode *eps;
    struct rl_step_stats st;
    int rc = rl_rollout_step(r, tk, 4, G, &eps, &st, err, sizeof err);
    pthread_join(th, NULL);
    waitpid(d[1].pid, NULL, 0);
    d[1].pid = 0;
    CHECK(rc == 0, "%s", err);
    /* the survivors alone, group by group (a group needs two to compare) */
    struct rl_episode surv[16];
    int start[5], ns = 0, ng = 0, lost = 0, renorm = 0, dropped = 0;
    for (int g = 0; g < 4; g++) {
        int k0 = ns, n = 0;
        for (int i = 0; i < G; i++) {
            struct rl_episode *e = &eps[g * G + i];
            if (e->infra_error) {
                lost++;
                CHECK(e->score.correct == 0, "a lost episode answered '%s': the policy saw the failure",
                      e->answer ? e->answer : "");
            } else surv[ns + n++] = *e;
        }
        if (n < 2 && n < G) {
            dropped++;
            continue;
        }
        renorm += n < G;
        start[ng++] = k0, ns += n;
    }
    start[ng] = ns;
    CHECK(lost >= 1 && lost < N, "%d of %d episodes were on the killed host", lost, N);
    struct qwen3 *m1, *m2, *m3;
    struct train_backend *b1 = tiny_backend(&m1, NULL), *b2 = tiny_backend(&m2, m1), *b3 = tiny_backend(&m3, m1);
    CHECK(b1 && b2 && b3, "backends");
    struct grpo_cfg gc;
    grpo_cfg_default(&gc);
    gc.kl_coef = 0; /* the entropy bonus stays: every kept group has a gradient */
    struct grpo_step_out o1, o2, o3;
    CHECK(grpo_update(b1, NULL, &gc, eps, N, G, &o1, err, sizeof err) == 0, "%s", err);
    CHECK(grpo_update_groups(b2, NULL, &gc, surv, start, ng, &o2, err, sizeof err) == 0, "%s", err);
    CHECK(o1.sandbox_lost == lost && o1.groups_renormalised == renorm && o1.groups_sandbox_dropped == dropped,
          "reported lost %d renormalised %d dropped %d; counted %d %d %d", o1.sandbox_lost, o1.groups_renormalised,
          o1.groups_sandbox_dropped, lost, renorm, dropped);
    CHECK(!o1.nonfinite && isfinite(o1.grad_norm) && o1.grad_norm > 0, "no update: grad norm %g", o1.grad_norm);
    CHECK(o1.st.loss == o2.st.loss && o1.grad_norm == o2.grad_norm && o1.st.tokens == o2.st.tokens,
          "with the lost host: loss %.9g grad norm %.9g tokens %ld; survivors alone: %.9g %.9g %ld", o1.st.loss,
          o1.grad_norm, o1.st.tokens, o2.st.loss, o2.grad_norm, o2.st.tokens);
    CHECK(!memcmp(m1->params, m2->params, m1->n_params * sizeof(float)), "the weights after the two updates differ");
    /* not vacuous: scored as the model's, the lost episodes would move the update */
    for (int i = 0; i < N; i++) eps[i].infra_error = false;
    CHECK(grpo_update(b3, NULL, &gc, eps, N, G, &o3, err, sizeof err) == 0, "%s", err);
    CHECK(o3.sandbox_lost == 0 && (o3.st.loss != o1.st.loss || o3.grad_norm != o1.grad_norm),
          "counting the lost episodes changed nothing (loss %.9g, grad norm %.9g)", o3.st.loss, o3.grad_norm);
    NOTE("%d of %d episodes lost with the host: %d groups on their survivors, %d dropped; loss %.6g, grad norm %.6g "
         "(%.6g / %.6g had they counted)",
         lost, N, renorm, dropped, o1.st.loss, o1.grad_norm, o3.st.loss, o3.grad_norm);
    train_backend_free(b1), train_backend_free(b2), train_backend_free(b3);
    qwen3_free(m1), qwen3_free(m2), qwen3_free(m3);
    rl_episodes_free(eps, N);
    rl_rollout_free(r);
    viv_pool_close(p);
    fclose(log);
}

/* The held-out accuracy of greedy episodes (one per task, as the trainer's
 * evaluation runs them) with a host killed during the evaluation equals the
 * uninterrupted evaluation's: the episodes the sandbox decided are run
 * again (rl_rollout_rerun_lost) instead of scored as wrong. Before the
 * re-run they are wrong (the policy answered what the failure showed it),
 * so the re-run is what makes the two equal. */
static double accuracy(const struct rl_episode *eps, int n) {
    double a = 0;
    for (int i = 0; i < n; i++) a += eps[i].score.correct;
    return a / n;
}

static void test_eval_with_lost_host_scores_as_uninterrupted(void) {
    if (vivd_start(0, 0) != 0 || vivd_start(1, 0) != 0) FAIL("vivd did not start");
    char spec[320], err[512];
    snprintf(spec, sizeof spec, "%s,unix:%s", d[0].sock, d[1].sock);
    FILE *log = tmpfile();
    struct viv_pool *p = viv_pool_open(spec, NULL, log, 5000, err, sizeof err);
    CHECK(p, "%s", err);
    struct policy pol = {.vary = false};
    struct fixture f;
    policy_fixture(&f, &pol, p);
    struct rl_rollout *r = rl_rollout_new(&f.cfg, &f.gen, &f.tok, &f.env, err, sizeof err);
    CHECK(r, "%s", err);
    enum { N = 16 };
    int tk[N];
    /* half of them answerable (accuracy 0.5, not trivially 0 or 1), in pairs,
     * so that each host gets both kinds (placement alternates between them) */
    for (int i = 0; i < N; i++) tk[i] = (i / 2) % 2;
    struct rl_episode *clean, *eps;
    struct rl_step_stats st;
    CHECK(rl_rollout_step(r, tk, N, 1, &clean, &st, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < N; i++) CHECK(!clean[i].infra_error, "episode %d lost with no host killed", i);
    double a0 = accuracy(clean, N);
    CHECK(a0 == 0.5, "uninterrupted accuracy %g", a0);
    /* the same evaluation, a host killed while every episode's first call runs */
    pthread_t th;
    pid_t victim = d[1].pid;
    pthread_create(&th, NULL, killer, &victim);
    int rc = rl_rollout_step(r, tk, N, 1, &eps, &st, err, sizeof err);
    pthread_join(th, NULL);
    waitpid(d[1].pid, NULL, 0);
    d[1].pid = 0;
    CHECK(rc == 0, "%s", err);
    int lost = 0, lost_right = 0;
    for (int i = 0; i < N; i++) lost += eps[i].infra_error, lost_right += eps[i].infra_error && eps[i].score.correct > 0;
    CHECK(lost >= 1 && lost_right == 0, "%d lost (%d of them scored right)", lost, lost_right);
    double a_lost = accuracy(eps, N);
    CHECK(a_lost < a0, "scored as they ended, the lost episodes cost nothing (%g, uninterrupted %g)", a_lost, a0);
    int reruns = 0;
    CHECK(rl_rollout_rerun_lost(r, eps, N, 3, &reruns, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < N; i++) {
        CHECK(!eps[i].infra_error && eps[i].task == tk[i] && eps[i].index == i, "episode %d: lost %d, task %d, index %d",
              i, eps[i].infra_error, eps[i].task, eps[i].index);
        CHECK(eps[i].score.correct == clean[i].score.correct, "episode %d: %g, uninterrupted %g", i,
              eps[i].score.correct, clean[i].score.correct);
    }
    double a1 = accuracy(eps, N);
    CHECK(a1 == a0 && reruns == lost, "accuracy %g after %d re-runs, uninterrupted %g", a1, reruns, a0);
    NOTE("%d of %d held-out episodes lost with the host (accuracy %.3f had they been scored), re-run: %.3f = %.3f "
         "uninterrupted", lost, N, a_lost, a1, a0);
    rl_episodes_free(clean, N), rl_episodes_free(eps, N);
    rl_rollout_free(r);
    viv_pool_close(p);
    fclose(log);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    t_after_each = after_each;
    static const struct test_case tests[] = {
        {"multihost_bad_addresses", test_bad_addresses},
        {"multihost_wrong_token_refused", test_wrong_token_refused},
        {"multihost_two_hosts_share_load", test_two_hosts_share_load},
        {"multihost_placement_follows_capacity", test_placement_follows_capacity},
        {"multihost_host_killed_mid_step", test_host_killed_mid_step},
        {"multihost_host_frozen_mid_step", test_host_frozen_mid_step},
        {"multihost_lost_host_update_is_the_survivors", test_lost_host_update_is_the_survivors},
        {"multihost_eval_with_lost_host_scores_as_uninterrupted", test_eval_with_lost_host_scores_as_uninterrupted},
    };
    return run_test_cases(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
}
