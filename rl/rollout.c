/*
 * rollout.c - the asynchronous rollout engine (see rollout.h).
 *
 * One thread, one connection per sandbox host (sandbox/client/pool.h; usually
 * one host), one loop:
 *
 *   1. collect every vivd answer that has arrived (non-blocking): each
 *      finished tool call turns into an observation appended to its episode,
 *      which becomes READY for its next model turn;
 *   2. pick a batch among the READY episodes and call the generator;
 *      each new turn is parsed: a solution ends the episode, a parse error
 *      appends the protocol's reminder, an <execute> goes to vivd at once
 *      (non-blocking submit) and the episode waits in state TOOL;
 *   3. when there is nothing worth generating, wait in viv_next() until the
 *      next answer (or the next scheduled wake-up).
 *
 * Tool calls therefore run in vivd while the generator works for other
 * episodes. vivd runs many jobs in parallel (its --workers), and Python tools
 * run in one vivd session per episode, so globals persist across turns.
 *
 * What to generate, and when (the scheduling rule):
 *   - Order (matters when more episodes are ready than fit in a batch):
 *     turns already under way in chunks first (like a continuous-batching
 *     server, which keeps running sequences in the batch), then
 *     laggards first (fewest turns taken), then oldest-ready first. A step
 *     ends when its last episode does, so the episode furthest behind is
 *     the one to advance (longest-remaining-work-first keeps the step's
 *     tail short); among equals FIFO, so no episode starves.
 *   - Batch now or wait? Batching is nearly free for a GPU up to its
 *     capacity B (a decoding step costs about the same for 1 or B
 *     sequences), so a half-full batch wastes capacity. With k < B episodes
 *     ready, the engine estimates m(t), how many episodes now in a tool call
 *     will be back within t ms: the sum over them of P(back within t | out
 *     for e ms so far), from the tool's recent latency samples longer than
 *     e, and 1 once its deadline falls within t. Two samples are kept per
 *     call: vivd's wall_ms (what the tool itself took; reported) and
 *     submit-to-answer as seen here (the tool plus vivd's queue, session
 *     start-up and transport), which is what says when an episode is back
 *     and so what the prediction uses. Waiting t ms costs t ms of generator
 *     time; each episode taken into this batch instead of a later one saves
 *     about G/B (G: a moving average of one generate call). The engine waits
 *     for the t (on a 1-2000 ms grid, at most fill_wait*G) that maximises
 *     m(t)*G/B - t if that is positive, else generates now; the wait ends
 *     early if the batch fills.
 *   - Sessions: each episode's Python session is opened when the step
 *     starts, so jails start while first turns are generated. If vivd says
 *     "busy" (its per-peer session cap), the engine takes the number it
 *     holds as its own cap and episodes wait for one of its sessions to close.
 *   - Step completion: a group is complete when all its episodes ended
 *     (on_group_done fires then); the step returns when all groups are, or,
 *     with min_groups, as soon as that many are (oversampling: start more
 *     groups than a step needs and keep the first to finish; the rest are
 *     cut off, RL_END_STEP_DEADLINE, their groups incomplete); a step
 *     deadline, if set, cuts the rest off too.
 *
 * Failure rules (every one stays with its episode):
 *   - tool deadline: vivd kills the job (a session call kills its session);
 *     the observation says so, the next Python call opens a fresh session.
 *   - vivd error (busy, sandbox_error, ...): error observation (busy on
 *     session_open waits for a session slot first, see above). Whether the
 *     sandbox rather than the model decided a call's outcome (infra_error)
 *     is envs/outcome.h's decision, the one SFT and evaluation use too.
 *   - a host gone: its client completes every pending call with
 *     "disconnected"; those episodes get an error observation and are marked
 *     infra_error (lost_host says which host), as are episodes whose
 *     session lived there (their next call opens a session elsewhere). The
 *     pool marks the host down and retries it with backoff; new sessions and
 *     one-shot calls go to the hosts that are up (the least loaded: requests
 *     in flight over capacity); with none up, calls fail fast with
 *     "unreachable".
 *   - a turn that fills max_turn_tokens is overlong; no room left in the
 *     context ends the episode (RL_END_CONTEXT).
 */
#define _GNU_SOURCE
#include "rollout.h"
#include "../envs/outcome.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../sandbox/client/client.h"
#include "../sandbox/client/pool.h"
#include "../sandbox/jail/policy.h"

_Static_assert(RL_MAX_HOSTS == VIV_POOL_MAX_HOSTS, "one limit on hosts");

enum ep_state { EP_READY = 0, EP_TOOL, EP_WAIT_SESSION, EP_PENDING_TOOL, EP_DONE };
enum handle_kind { H_NONE = 0, H_OPEN, H_EXEC };

struct rl_rollout {
    struct rl_rollout_cfg cfg;
    struct rl_generator gen;
    struct rl_tokenizer tok;
    struct rl_env_ops env;
    char *spec;                 /* the sandbox address list (cfg.sandbox, or unix:SOCKET) */
    struct viv_pool *pool;
    bool own_pool;              /* opened here (from spec), closed with the engine */
    double last_connect_ms;
    FILE *log;
    int host_epoch[RL_MAX_HOSTS];    /* the pool's epoch per host last seen: a change = its sessions died */
    int host_sessions[RL_MAX_HOSTS]; /* our sessions open (or opening) per host */
    int host_cap[RL_MAX_HOSTS];      /* per-host session cap learned from "busy" (0: none known) */
    struct rl_tool_stats *stats;
    int nstats;
    double gen_ewma_ms;         /* G: moving average of one generate call */
    struct policy_deadline {    /* vivd's policies: default and maximum deadline per tool */
        char name[32];
        long timeout_ms, timeout_ms_max;
    } *pols;
    int npols;
    int sessions_open;          /* over all hosts */
    /* per step */
    struct rl_episode *eps;
    int neps, active, group_size;
    int *group_left;
    struct rl_step_stats *st;
    double step_t0;
    int groups_done;
};

static const char *const default_stop[] = {"</execute>", "</solution>", NULL};

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *xcalloc_(size_t n, size_t s) {
    void *p = calloc(n ? n : 1, s ? s : 1);
    if (!p) abort();
    return p;
}

static char *xstrdup_(const char *s) {
    char *p = strdup(s ? s : "");
    if (!p) abort();
    return p;
}

const char *rl_end_name(int end) {
    static const char *const names[] = {"none", "solution", "turn_limit", "context", "parse_failures", "gen_error",
                                        "step_deadline"};
    return end >= 0 && end <= RL_END_STEP_DEADLINE ? names[end] : "?";
}

void rl_turn_clear(struct rl_turn *t) {
    free(t->code);
    free(t->answer);
    free(t->error);
    memset(t, 0, sizeof *t);
}

/* ---- latency statistics ------------------------------------------------------ */

static struct rl_tool_stats *stats_for(struct rl_rollout *r, const char *tool) {
    for (int i = 0; i < r->nstats; i++)
        if (strcmp(r->stats[i].name, tool) == 0) return &r->stats[i];
    r->stats = realloc(r->stats, (size_t)(r->nstats + 1) * sizeof *r->stats);
    if (!r->stats) abort();
    struct rl_tool_stats *s = &r->stats[r->nstats++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", tool);
    return s;
}

static void ring_add(struct rl_lat_ring *r, double v) {
    r->v[r->next] = v;
    r->next = (r->next + 1) % RL_LAT_SAMPLES;
    if (r->n < RL_LAT_SAMPLES) r->n++;
}

static void stats_add(struct rl_tool_stats *s, double wall_ms, double back_ms) {
    s->count++;
    s->mean_ms += (wall_ms - s->mean_ms) / (double)s->count;
    if (wall_ms > s->max_ms) s->max_ms = wall_ms;
    ring_add(&s->wall, wall_ms);
    ring_add(&s->back, back_ms);
}

/* E[T - e | T > e] over the samples T; with no sample longer than e, the
 * call is already unusually slow: guess it needs as long again as it has
 * run (at least 10 ms), within the deadline. With no samples: 100 ms. */
double rl_lat_expected_remaining(const struct rl_lat_ring *r, double elapsed_ms, double deadline_ms) {
    double sum = 0;
    int n = 0;
    for (int i = 0; r && i < r->n; i++)
        if (r->v[i] > elapsed_ms) sum += r->v[i] - elapsed_ms, n++;
    double rem;
    if (n) rem = sum / n;
    else if (r && r->n) rem = fmax(elapsed_ms, 10.0);
    else rem = 100.0;
    if (deadline_ms > 0 && elapsed_ms + rem > deadline_ms) rem = fmax(deadline_ms - elapsed_ms, 0.0);
    return rem;
}

/* P(T <= e + t | T > e) over the samples T; with no sample longer than e,
 * an exponential guess with mean max(e, 10 ms) (no samples at all: mean
 * 100 ms). 1 when the deadline falls within t. */
double rl_lat_prob_within(const struct rl_lat_ring *r, double elapsed_ms, double t_ms, double deadline_ms) {
    if (deadline_ms > 0 && elapsed_ms + t_ms >= deadline_ms) return 1;
    int longer = 0, within = 0;
    for (int i = 0; r && i < r->n; i++)
        if (r->v[i] > elapsed_ms) {
            longer++;
            within += r->v[i] <= elapsed_ms + t_ms;
        }
    if (longer) return (double)within / longer;
    double mean = r && r->n ? fmax(elapsed_ms, 10.0) : 100.0;
    return 1 - exp(-t_ms / mean);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double rl_lat_quantile(const struct rl_lat_ring *r, double q) {
    if (!r || r->n == 0) return 0;
    double v[RL_LAT_SAMPLES];
    memcpy(v, r->v, (size_t)r->n * sizeof *v);
    qsort(v, (size_t)r->n, sizeof *v, cmp_double);
    int i = (int)(q * (r->n - 1) + 0.5);
    return v[i < 0 ? 0 : i >= r->n ? r->n - 1 : i];
}

const struct rl_tool_stats *rl_rollout_tool_stats(const struct rl_rollout *r, int *n) {
    *n = r->nstats;
    return r->stats;
}

/* ---- construction ------------------------------------------------------------- */

struct rl_rollout *rl_rollout_new(const struct rl_rollout_cfg *cfg, const struct rl_generator *gen,
                                  const struct rl_tokenizer *tok, const struct rl_env_ops *env, char *err,
                                  size_t errlen) {
    if (!gen || !gen->generate || !tok || !tok->encode || !tok->decode || !env || !env->prompt ||
        !env->parse_turn || !env->observation || !env->parse_error || !env->score) {
        snprintf(err, errlen, "rollout: generator, tokenizer and environment must all be complete");
        return NULL;
    }
    struct rl_rollout *r = xcalloc_(1, sizeof *r);
    r->cfg = *cfg;
    r->gen = *gen;
    r->tok = *tok;
    r->env = *env;
    struct rl_rollout_cfg *c = &r->cfg;
    int cap = gen->max_batch > 0 ? gen->max_batch : 1;
    if (c->max_batch <= 0 || c->max_batch > cap) c->max_batch = cap;
    if (c->max_turns <= 0) c->max_turns = 32;
    if (c->max_context <= 0) c->max_context = 65536;
    if (c->max_turn_tokens <= 0) c->max_turn_tokens = 4096;
    if (c->max_parse_failures <= 0) c->max_parse_failures = 2;
    if (c->max_sessions <= 0) c->max_sessions = 256;
    if (c->default_timeout_ms <= 0) c->default_timeout_ms = 30000;
    if (c->fill_wait < 0) c->fill_wait = 0;
    else if (c->fill_wait == 0) c->fill_wait = 0.5;
    if (!r->env.stop) r->env.stop = default_stop;
    if (cfg->sandbox) {
        bool needs_token;
        if (!cfg->pool && viv_pool_check(cfg->sandbox, &needs_token, err, errlen) != 0) {
            free(r);
            return NULL;
        }
        r->spec = xstrdup_(cfg->sandbox);
    } else {
        char *s = NULL;
        if (asprintf(&s, "unix:%s", cfg->socket ? cfg->socket : viv_default_socket()) < 0) abort();
        r->spec = s;
    }
    r->pool = cfg->pool;
    r->log = cfg->log ? cfg->log : stderr;
    r->last_connect_ms = -1e9;
    return r;
}

void rl_rollout_free(struct rl_rollout *r) {
    if (!r) return;
    if (r->own_pool) viv_pool_close(r->pool);
    free(r->pols);
    free(r->stats);
    free(r->spec);
    free(r);
}

void rl_episodes_free(struct rl_episode *eps, int n) {
    if (!eps) return;
    for (int i = 0; i < n; i++) {
        struct rl_episode *e = &eps[i];
        free(e->tokens);
        free(e->mask);
        free(e->logprobs);
        for (int t = 0; t < e->n_turns; t++) free(e->turn_text[t]);
        free(e->turn_text);
        free(e->answer);
        rl_turn_clear(&e->pending);
    }
    free(eps);
}

/* ---- episode helpers ----------------------------------------------------------- */

static void ep_append(struct rl_episode *e, const int *ids, const float *lp, int n, uint8_t m) {
    if (e->n_tokens + n > e->cap_tokens) {
        int cap = e->cap_tokens ? e->cap_tokens : 256;
        while (cap < e->n_tokens + n) cap *= 2;
        e->tokens = realloc(e->tokens, (size_t)cap * sizeof *e->tokens);
        e->mask = realloc(e->mask, (size_t)cap);
        e->logprobs = realloc(e->logprobs, (size_t)cap * sizeof *e->logprobs);
        if (!e->tokens || !e->mask || !e->logprobs) abort();
        e->cap_tokens = cap;
    }
    memcpy(e->tokens + e->n_tokens, ids, (size_t)n * sizeof *ids);
    memset(e->mask + e->n_tokens, m, (size_t)n);
    for (int i = 0; i < n; i++) e->logprobs[e->n_tokens + i] = lp ? lp[i] : 0.0f;
    e->n_tokens += n;
}

static void session_gone(struct rl_rollout *r, struct rl_episode *e) {
    e->session[0] = 0;
    r->sessions_open--;
    r->host_sessions[e->host]--;
}

/* A session_open that counted as one of ours will not give us a session. */
static void open_failed(struct rl_rollout *r, int host) {
    r->sessions_open--;
    r->host_sessions[host]--;
}

static void close_session(struct rl_rollout *r, struct rl_episode *e) {
    if (!e->session[0]) return;
    struct viv_client *c = r->pool ? viv_pool_client(r->pool, e->host) : NULL;
    if (c && viv_pool_host(r->pool, e->host)->epoch == e->host_epoch)
        viv_submit_session_close(c, e->session); /* its answer is ignored */
    session_gone(r, e);
}

static void ep_end(struct rl_rollout *r, struct rl_episode *e, int end) {
    if (e->state == EP_DONE) return;
    if (e->open_handle) { /* a pre-opened session still on its way: closed when it comes */
        e->open_handle = 0;
        open_failed(r, e->host);
    }
    if (e->handle_kind == H_OPEN) open_failed(r, e->host); /* its answer, when it comes, is ignored */
    e->state = EP_DONE;
    e->end = end;
    e->handle = 0;
    e->handle_kind = H_NONE;
    rl_turn_clear(&e->pending);
    close_session(r, e);
    e->t_end_ms = mono_ms();
    if (r->env.score(r->env.ctx, e->task, e, &e->score) != 0) memset(&e->score, 0, sizeof e->score);
    r->active--;
    r->st->ends[end]++;
    if (--r->group_left[e->group] == 0) {
        r->groups_done++;
        if (r->cfg.on_group_done)
            r->cfg.on_group_done(r->cfg.on_group_arg, e->group, r->eps + e->group * r->group_size, r->group_size);
    }
}

/* Encode text[0..len) (NUL bytes are text too) and append it with mask 0;
 * false (episode ended) if there is no room left in the context for it and
 * at least one more token. */
static bool ep_append_bytes(struct rl_rollout *r, struct rl_episode *e, const char *text, size_t len) {
    int *ids = NULL, n = 0;
    if (r->tok.encode(r->tok.ctx, text, len, &ids, &n) != 0) {
        free(ids);
        ep_end(r, e, RL_END_GEN_ERROR);
        return false;
    }
    if (e->n_tokens + n + 1 > r->cfg.max_context) {
        free(ids);
        e->overlong = true;
        ep_end(r, e, RL_END_CONTEXT);
        return false;
    }
    ep_append(e, ids, NULL, n, 0);
    free(ids);
    return true;
}

/* The same for text of our own making (prompts, reminders): a C string. */
static bool ep_append_text(struct rl_rollout *r, struct rl_episode *e, const char *text) {
    return ep_append_bytes(r, e, text, strlen(text));
}

static void ep_ready(struct rl_episode *e) {
    e->state = EP_READY;
    e->ready_ms = mono_ms();
}

/* ---- vivd --------------------------------------------------------------------- */

static const struct rl_tool_cfg *tool_cfg(const struct rl_rollout *r, const char *tool) {
    for (int i = 0; i < r->cfg.ntools; i++)
        if (strcmp(r->cfg.tools[i].name, tool) == 0) return &r->cfg.tools[i];
    return NULL;
}

/* Ask vivd for its policies' deadlines (once, from the first host that
 * answers within 2 s; the hosts of a pool are expected to run the same
 * policies): a tool configured without a timeout gets its policy's default,
 * and a configured one is capped at the policy's maximum, as vivd would. */
static void fetch_policies(struct rl_rollout *r, struct viv_client *c) {
    long h = viv_submit_op(c, "policies");
    struct viv_response *resp = h > 0 ? viv_wait(c, h, 2000) : NULL;
    if (!resp) return;
    const cJSON *p;
    free(r->pols);
    r->pols = NULL;
    r->npols = 0;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(resp->json, "policies")) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(p, "name");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "timeout_ms");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(p, "timeout_ms_max");
        if (!cJSON_IsString(n) || !cJSON_IsNumber(t)) continue;
        r->pols = realloc(r->pols, (size_t)(r->npols + 1) * sizeof *r->pols);
        if (!r->pols) abort();
        struct policy_deadline *d = &r->pols[r->npols++];
        snprintf(d->name, sizeof d->name, "%s", n->valuestring);
        d->timeout_ms = (long)t->valuedouble;
        d->timeout_ms_max = cJSON_IsNumber(m) ? (long)m->valuedouble : 0;
    }
    viv_response_free(resp);
}

/* The deadline a call of this tool runs under (ms). */
static long tool_deadline(const struct rl_rollout *r, const char *tool) {
    const struct rl_tool_cfg *tc = tool_cfg(r, tool);
    const struct policy_deadline *pd = NULL;
    for (int i = 0; i < r->npols; i++)
        if (strcmp(r->pols[i].name, tool) == 0) pd = &r->pols[i];
    return call_deadline_ms(tc ? tc->timeout_ms : 0, pd ? pd->timeout_ms : r->cfg.default_timeout_ms,
                            pd ? pd->timeout_ms_max : 0);
}

/* The pool, opened on first use from the address list (at most every
 * 500 ms while no host can be reached); NULL when it cannot be opened. The
 * policies are asked once a host is up. */
static struct viv_pool *pool(struct rl_rollout *r) {
    if (!r->pool) {
        double now = mono_ms();
        if (now - r->last_connect_ms < 500) return NULL;
        r->last_connect_ms = now;
        char err[256];
        r->pool = viv_pool_open(r->spec, r->cfg.sandbox_token, r->log, 0, err, sizeof err);
        if (!r->pool) return NULL;
        r->own_pool = true;
        for (int h = 0; h < viv_pool_size(r->pool); h++) r->host_epoch[h] = viv_pool_host(r->pool, h)->epoch;
    }
    if (!r->pols) {
        int h = viv_pool_pick(r->pool, NULL);
        struct viv_client *c = h >= 0 ? viv_pool_client(r->pool, h) : NULL;
        if (c) fetch_policies(r, c);
    }
    return r->pool;
}

/* A host whose epoch moved lost its connection: the sessions we held there
 * died with it. Their episodes are infra errors (state the model built is
 * gone); their next Python call opens a session elsewhere. */
static void sync_hosts(struct rl_rollout *r) {
    if (!r->pool) return;
    for (int h = 0; h < viv_pool_size(r->pool); h++) {
        int ep = viv_pool_host(r->pool, h)->epoch;
        if (ep == r->host_epoch[h]) continue;
        r->host_epoch[h] = ep;
        r->host_cap[h] = 0;
        for (int i = 0; i < r->neps; i++) {
            struct rl_episode *e = &r->eps[i];
            if (e->state == EP_DONE || e->host != h || !e->session[0] || e->host_epoch == ep) continue;
            session_gone(r, e);
            if (!e->infra_error && r->st) r->st->host_lost[h]++;
            e->infra_error = true;
            e->lost_host = h;
        }
    }
}

/* Show the model a tool result and make the episode ready again. */
static void deliver(struct rl_rollout *r, struct rl_episode *e, const struct rl_tool_result *res_in) {
    char tool[sizeof e->pending.tool];
    snprintf(tool, sizeof tool, "%s", e->pending.tool); /* the call's tool, for the observation */
    struct rl_tool_result rr = *res_in, *res = &rr;
    rr.tool = tool;
    e->handle = 0;
    e->handle_kind = H_NONE;
    rl_turn_clear(&e->pending);
    e->tool_calls++;
    r->st->tool_calls++;
    if (res->status == RL_TOOL_TIMEOUT) e->tool_timeouts++, r->st->tool_timeouts++;
    if (res->status == RL_TOOL_ERROR) e->tool_errors++, r->st->tool_errors++;
    if (res->status == RL_TOOL_LOST) e->tool_lost++, r->st->tool_lost++;
    struct call_outcome oc = {.answered = res->status == RL_TOOL_OK || res->status == RL_TOOL_TIMEOUT,
                              .error_code = res->error_code, .session_lost = res->session_lost,
                              .timed_out = res->status == RL_TOOL_TIMEOUT, .signal = res->signal};
    bool infra = outcome_sandbox_decided(&oc);
    /* "unreachable": no host was up to take it */
    bool reached = e->host >= 0 && !(res->error_code && !strcmp(res->error_code, "unreachable"));
    if (reached) r->st->host_calls[e->host]++;
    if (infra) {
        if (!e->infra_error && reached && res->status == RL_TOOL_LOST) r->st->host_lost[e->host]++, e->lost_host = e->host;
        e->infra_error = true;
    }
    size_t len = 0;
    char *text = r->env.observation(r->env.ctx, res, &len);
    if (!text) {
        ep_end(r, e, RL_END_GEN_ERROR);
        return;
    }
    bool ok = ep_append_bytes(r, e, text, len);
    free(text);
    if (ok) ep_ready(e);
}

static void deliver_local(struct rl_rollout *r, struct rl_episode *e, int status, const char *code,
                          const char *msg) {
    struct rl_tool_result res = {.status = status, .out = "", .err = "", .error_code = code, .error_message = msg,
                                 .wall_ms = mono_ms() - e->tool_submit_ms};
    deliver(r, e, &res);
}

static long submit_exec(struct rl_rollout *r, struct viv_client *c, struct rl_episode *e) {
    const char *code = e->pending.code ? e->pending.code : "";
    viv_pool_note_call(r->pool, e->host);
    /* the session is the session tool's (Python): a shell or SQL call of the
     * same episode is a one-shot call under its own policy */
    const struct rl_tool_cfg *tc = tool_cfg(r, e->pending.tool);
    if (e->session[0] && tc && tc->session)
        return viv_submit_session_exec(c, e->session, code, strlen(code), e->tool_timeout_ms);
    return viv_submit_exec(c, e->pending.tool, code, strlen(code), e->tool_timeout_ms);
}

/* The host for a new session: the least loaded up host with a session
 * slot (its cap learned from "busy"); -1 if none has one. */
static int pick_session_host(struct rl_rollout *r) {
    bool allowed[RL_MAX_HOSTS];
    int n = viv_pool_size(r->pool);
    for (int h = 0; h < n; h++) allowed[h] = r->host_cap[h] == 0 || r->host_sessions[h] < r->host_cap[h];
    return viv_pool_pick(r->pool, allowed);
}

/* Send a session_open for e to a host chosen by load; the handle, or -1. */
static long open_session(struct rl_rollout *r, struct rl_episode *e, const char *tool) {
    int h = pick_session_host(r);
    struct viv_client *c = h >= 0 ? viv_pool_client(r->pool, h) : NULL;
    if (!c) return 0;
    e->host = h;
    e->host_epoch = viv_pool_host(r->pool, h)->epoch;
    viv_pool_note_call(r->pool, h);
    long id = viv_submit_session_open(c, tool);
    r->st->sessions_opened++;
    if (id <= 0) {
        viv_pool_note_broken(r->pool, h);
        return -1;
    }
    r->sessions_open++;
    r->host_sessions[h]++;
    return id;
}

/* Send the episode's pending EXECUTE turn to vivd (opening its session
 * first if its tool wants one). A session stays on its host; a new session
 * or a one-shot call goes to the least loaded host. */
static void submit_tool(struct rl_rollout *r, struct rl_episode *e) {
    const struct rl_tool_cfg *tc = tool_cfg(r, e->pending.tool);
    if (e->state != EP_WAIT_SESSION) e->tool_submit_ms = mono_ms(); /* a retry keeps its first time */
    struct viv_pool *p = pool(r);
    e->tool_timeout_ms = tool_deadline(r, e->pending.tool);
    if (p) sync_hosts(r);
    if (!p || viv_pool_pick(p, NULL) < 0) { /* (picking also retries down hosts whose backoff is over) */
        deliver_local(r, e, RL_TOOL_LOST, "unreachable", "the sandbox daemon cannot be reached");
        return;
    }
    bool want_session = tc && tc->session;
    long h;
    if (want_session && !e->session[0] && e->open_handle) {
        /* its pre-opened session is on its way: the exec follows its answer */
        e->handle = e->open_handle;
        e->handle_kind = H_OPEN;
        e->open_handle = 0;
        e->state = EP_TOOL;
        return;
    }
    if (want_session && !e->session[0]) {
        h = r->sessions_open >= r->cfg.max_sessions ? 0 : open_session(r, e, e->pending.tool);
        if (h == 0) {
            e->state = EP_WAIT_SESSION; /* retried as sessions close */
            return;
        }
        e->handle_kind = H_OPEN;
    } else {
        /* one host per episode at a time: a one-shot call goes where its session is (or is opening) */
        if (!e->session[0] && !e->open_handle) e->host = viv_pool_pick(p, NULL);
        struct viv_client *c = viv_pool_client(p, e->host);
        h = c ? submit_exec(r, c, e) : -1;
        if (h <= 0 && c) viv_pool_note_broken(p, e->host);
        e->handle_kind = H_EXEC;
    }
    if (h <= 0) {
        e->handle_kind = H_NONE;
        deliver_local(r, e, RL_TOOL_LOST, "disconnected", "the connection to the sandbox daemon broke");
        return;
    }
    e->handle = h;
    e->state = EP_TOOL;
}

static struct rl_episode *episode_for(struct rl_rollout *r, int host, long handle) {
    for (int i = 0; i < r->neps; i++)
        if (r->eps[i].state == EP_TOOL && r->eps[i].host == host && r->eps[i].handle == handle) return &r->eps[i];
    return NULL;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
static double jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}
static bool jtrue(const cJSON *o, const char *k) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k)); }

/* The answer to a session opened ahead of the episode's first call. */
static bool handle_preopen(struct rl_rollout *r, int host, struct viv_response *resp) {
    for (int i = 0; i < r->neps; i++) {
        struct rl_episode *e = &r->eps[i];
        if (e->open_handle != resp->handle || e->host != host) continue;
        e->open_handle = 0;
        const char *sid = jstr(resp->json, "session");
        if (jtrue(resp->json, "ok") && sid) snprintf(e->session, sizeof e->session, "%s", sid);
        else open_failed(r, host); /* the first call will try again */
        return true;
    }
    return false;
}

static void handle_response(struct rl_rollout *r, int host, struct viv_response *resp) {
    const cJSON *j = resp->json;
    if (handle_preopen(r, host, resp)) return;
    struct rl_episode *e = episode_for(r, host, resp->handle);
    bool ok = jtrue(j, "ok");
    const cJSON *errobj = cJSON_GetObjectItemCaseSensitive(j, "error");
    const char *ecode = errobj ? jstr(errobj, "code") : NULL, *emsg = errobj ? jstr(errobj, "message") : NULL;
    if (!e) { /* a session_close, or an episode cut off meanwhile */
        const char *sid = jstr(j, "session");
        struct viv_client *c = ok && sid ? viv_pool_client(r->pool, host) : NULL;
        if (c) viv_submit_session_close(c, sid); /* opened too late */
        return;
    }
    if (ecode && !strcmp(ecode, "busy") && !resp->local && e->handle_kind == H_EXEC) viv_pool_note_busy(r->pool, host);
    if (e->handle_kind == H_OPEN) {
        const char *sid = jstr(j, "session");
        if (ok && sid) {
            snprintf(e->session, sizeof e->session, "%s", sid);
            struct viv_client *c = viv_pool_client(r->pool, host);
            long h = c ? submit_exec(r, c, e) : -1;
            if (h > 0) {
                e->handle = h;
                e->handle_kind = H_EXEC;
                return;
            }
            if (c) viv_pool_note_broken(r->pool, host);
            deliver_local(r, e, RL_TOOL_LOST, "disconnected", "the connection to the sandbox daemon broke");
            return;
        }
        open_failed(r, host);
        e->handle = 0;
        e->handle_kind = H_NONE;
        if (ecode && !strcmp(ecode, "busy")) {
            /* vivd's per-peer session cap. If we hold sessions there, that
             * is the host's cap from now on: wait for a slot on any host.
             * If we hold none (others of our uid hold them), retry for 10 s. */
            if (r->host_sessions[host] > 0) {
                r->host_cap[host] = r->host_sessions[host];
                e->state = EP_WAIT_SESSION;
                return;
            }
            if (mono_ms() - e->tool_submit_ms < 10000) {
                e->state = EP_WAIT_SESSION;
                return;
            }
        }
        deliver_local(r, e, resp->local ? RL_TOOL_LOST : RL_TOOL_ERROR, ecode ? ecode : "sandbox_error",
                      emsg ? emsg : "could not open a session");
        return;
    }
    struct rl_tool_result res = {.out = "", .err = "", .error_code = ecode, .error_message = emsg};
    res.session_lost = jtrue(j, "session_lost");
    struct rl_tool_stats *s = stats_for(r, e->pending.tool);
    if (ok) {
        res.status = jtrue(j, "timed_out") ? RL_TOOL_TIMEOUT : RL_TOOL_OK;
        res.exit_code = (int)jnum(j, "exit_code");
        res.signal = (int)jnum(j, "signal");
        /* whole, as the client decoded them: a NUL does not end the output */
        res.out = resp->out, res.out_len = resp->out_len;
        res.err = resp->err, res.err_len = resp->err_len;
        res.wall_ms = jnum(j, "wall_ms");
        res.dropped = jnum(j, "stdout_dropped") + jnum(j, "stderr_dropped");
        /* a timed-out call counts at its deadline: that is what it cost */
        stats_add(s, res.wall_ms, mono_ms() - e->tool_submit_ms);
        if (res.status == RL_TOOL_TIMEOUT) s->timeouts++;
    } else {
        res.status = resp->local ? RL_TOOL_LOST : RL_TOOL_ERROR;
        res.wall_ms = mono_ms() - e->tool_submit_ms;
        s->errors++;
        if (ecode && !strcmp(ecode, "session_lost")) res.session_lost = true;
        if (ecode && !strcmp(ecode, "not_found") && e->session[0]) res.session_lost = true;
    }
    if (res.session_lost && e->session[0]) session_gone(r, e); /* already gone in vivd: nothing to close */
    deliver(r, e, &res);
}

/* Collect answers from every host: take whatever has arrived; if nothing
 * has, wait up to timeout_ms for the first (and then take the rest).
 * Returns how many were handled. */
static int take_answers(struct rl_rollout *r, int timeout_ms) {
    int n = 0, host;
    struct viv_response *resp;
    while ((resp = viv_pool_next(r->pool, n == 0 ? timeout_ms : 0, &host))) {
        sync_hosts(r);
        handle_response(r, host, resp);
        viv_response_free(resp);
        n++;
    }
    return n;
}

static int poll_vivd(struct rl_rollout *r, int timeout_ms) {
    int n = r->pool ? take_answers(r, 0) : 0;
    if (n == 0 && timeout_ms > 0) {
        if (!r->pool || viv_pool_pending(r->pool) == 0) usleep((useconds_t)timeout_ms * 1000);
        else n = take_answers(r, timeout_ms);
    }
    sync_hosts(r);
    return n;
}

/* Episodes waiting for a session slot get one as slots free up. */
static void start_waiting_sessions(struct rl_rollout *r) {
    for (int i = 0; i < r->neps && r->sessions_open < r->cfg.max_sessions; i++)
        if (r->eps[i].state == EP_WAIT_SESSION) submit_tool(r, &r->eps[i]);
}

/* ---- generation ------------------------------------------------------------------ */

/* Handle one new assistant turn of episode e. */
static void take_turn(struct rl_rollout *r, struct rl_episode *e, struct rl_gen_request *q) {
    if (q->n_out < 0) {
        ep_end(r, e, RL_END_GEN_ERROR);
        return;
    }
    ep_append(e, q->out_tokens, q->out_logprobs, q->n_out, 1);
    r->st->gen_tokens += q->n_out;
    int turn_len = e->n_tokens - q->turn_start;
    if (q->stop_reason == RL_GEN_STOP_LENGTH && q->n_out > 0 && turn_len < r->cfg.max_turn_tokens &&
        e->n_tokens < r->cfg.max_context) {
        /* a chunk of a longer turn: it continues in the next batch */
        e->turn_start = q->turn_start;
        e->state = EP_READY;
        return;
    }
    e->turn_start = -1;
    size_t text_len = 0;
    char *text = r->tok.decode(r->tok.ctx, e->tokens + q->turn_start, turn_len, &text_len);
    if (!text) {
        ep_end(r, e, RL_END_GEN_ERROR);
        return;
    }
    e->turn_text = realloc(e->turn_text, (size_t)(e->n_turns + 1) * sizeof *e->turn_text);
    if (!e->turn_text) abort();
    e->turn_text[e->n_turns++] = text;
    bool cut = q->stop_reason == RL_GEN_STOP_LENGTH;
    if (cut) e->overlong = true;
    struct rl_turn t = {0};
    /* parsed whole: a NUL byte the model wrote must not hide what follows it */
    if (r->env.parse_turn(r->env.ctx, text, text_len, &t) != 0) {
        rl_turn_clear(&t);
        ep_end(r, e, RL_END_GEN_ERROR);
        return;
    }
    if (t.kind == RL_TURN_SOLUTION && !cut) {
        e->answer = t.answer;
        t.answer = NULL;
        rl_turn_clear(&t);
        ep_end(r, e, RL_END_SOLUTION);
        return;
    }
    if (e->n_tokens + 1 >= r->cfg.max_context) {
        rl_turn_clear(&t);
        ep_end(r, e, RL_END_CONTEXT);
        return;
    }
    if (t.kind == RL_TURN_EXECUTE && r->env.tool_code) { /* e.g. the task's inputs defined first */
        char *code = r->env.tool_code(r->env.ctx, e->task, t.tool, t.code ? t.code : "");
        if (code) free(t.code), t.code = code;
    }
    if (t.kind == RL_TURN_CONTINUE && !cut && r->env.continue_text) {
        /* only thinking: the model writes again, no user turn between (not a
         * parse failure; it uses a turn) */
        rl_turn_clear(&t);
        if (e->n_turns >= r->cfg.max_turns) {
            ep_end(r, e, RL_END_TURN_LIMIT);
            return;
        }
        char *msg = r->env.continue_text(r->env.ctx);
        bool ok = msg && ep_append_text(r, e, msg);
        free(msg);
        if (ok) ep_ready(e);
        else if (e->state != EP_DONE) ep_end(r, e, RL_END_GEN_ERROR);
        return;
    }
    if (t.kind != RL_TURN_EXECUTE || cut) {
        /* unparsable, or cut off by max_turn_tokens: the protocol's reminder */
        e->parse_failures++;
        rl_turn_clear(&t);
        if (e->parse_failures >= r->cfg.max_parse_failures) {
            ep_end(r, e, RL_END_PARSE_FAILURES);
            return;
        }
        if (e->n_turns >= r->cfg.max_turns) {
            ep_end(r, e, RL_END_TURN_LIMIT);
            return;
        }
        char *msg = r->env.parse_error(r->env.ctx, t.error ? t.error : cut ? "the turn was cut off" : "unparsable");
        bool ok = msg && ep_append_text(r, e, msg);
        free(msg);
        if (ok) ep_ready(e);
        else if (e->state != EP_DONE) ep_end(r, e, RL_END_GEN_ERROR);
        return;
    }
    if (e->n_turns >= r->cfg.max_turns) { /* no turn left to read the observation */
        rl_turn_clear(&t);
        ep_end(r, e, RL_END_TURN_LIMIT);
        return;
    }
    e->pending = t;
    if (r->cfg.sync) e->state = EP_PENDING_TOOL; /* the baseline runs tools after the whole round */
    else submit_tool(r, e);
}

static int cmp_ready(const void *a, const void *b) {
    const struct rl_episode *x = *(struct rl_episode *const *)a, *y = *(struct rl_episode *const *)b;
    if ((x->turn_start >= 0) != (y->turn_start >= 0)) return x->turn_start >= 0 ? -1 : 1;
    if (x->n_turns != y->n_turns) return x->n_turns - y->n_turns;
    if (x->ready_ms != y->ready_ms) return x->ready_ms < y->ready_ms ? -1 : 1;
    return x->index - y->index;
}

/* One JSON line per generate call: when, how long, how full, and where
 * every episode was at that moment. */
static void trace_call(struct rl_rollout *r, double t0, double dt, int batch) {
    int n[EP_DONE + 1] = {0};
    for (int i = 0; i < r->neps; i++) n[r->eps[i].state]++;
    fprintf(r->cfg.trace,
            "{\"t_ms\":%.1f,\"gen_ms\":%.1f,\"batch\":%d,\"ready\":%d,\"in_tool\":%d,\"wait_session\":%d,"
            "\"done\":%d}\n",
            t0 - r->step_t0, dt, batch, n[EP_READY], n[EP_TOOL], n[EP_WAIT_SESSION], n[EP_DONE]);
}

/* One generate call for these episodes. */
static void generate(struct rl_rollout *r, struct rl_episode **batch, int n) {
    struct rl_gen_request *q = xcalloc_((size_t)n, sizeof *q);
    int live = 0;
    for (int i = 0; i < n; i++) {
        struct rl_episode *e = batch[i];
        int start = e->turn_start >= 0 ? e->turn_start : e->n_tokens;
        int room = r->cfg.max_context - e->n_tokens, left = r->cfg.max_turn_tokens - (e->n_tokens - start);
        int max_new = room < left ? room : left;
        if (r->cfg.chunk_tokens > 0 && max_new > r->cfg.chunk_tokens) max_new = r->cfg.chunk_tokens;
        if (max_new <= 0) {
            e->overlong = true;
            ep_end(r, e, RL_END_CONTEXT);
            continue;
        }
        struct rl_gen_request *g = &q[live];
        g->episode = e->index;
        g->turn = e->n_turns;
        g->tokens = e->tokens;
        g->n_tokens = e->n_tokens;
        g->turn_start = start;
        g->max_new_tokens = max_new;
        g->stop = r->env.stop;
        g->out_tokens = xcalloc_((size_t)max_new, sizeof *g->out_tokens);
        g->out_logprobs = xcalloc_((size_t)max_new, sizeof *g->out_logprobs);
        batch[live++] = e;
    }
    if (live > 0) {
        double t0 = mono_ms();
        int rc = r->gen.generate(r->gen.ctx, q, live);
        double dt = mono_ms() - t0;
        if (r->cfg.trace) trace_call(r, t0, dt, live);
        r->st->gen_busy_ms += dt;
        r->st->gen_calls++;
        r->st->gen_requests += live;
        r->gen_ewma_ms = r->gen_ewma_ms > 0 ? 0.8 * r->gen_ewma_ms + 0.2 * dt : dt;
        for (int i = 0; i < live; i++) {
            if (rc != 0) q[i].n_out = -1;
            if (q[i].n_out > q[i].max_new_tokens) q[i].n_out = -1; /* a generator bug: never trust it */
            take_turn(r, batch[i], &q[i]);
        }
    }
    for (int i = 0; i < live; i++) free(q[i].out_tokens), free(q[i].out_logprobs);
    free(q);
}

/* READY episodes in serving order (laggards, then oldest) into out (size >= neps); returns the count. */
static int ready_list(struct rl_rollout *r, struct rl_episode **out) {
    int k = 0;
    for (int i = 0; i < r->neps; i++)
        if (r->eps[i].state == EP_READY) out[k++] = &r->eps[i];
    qsort(out, (size_t)k, sizeof *out, cmp_ready);
    return k;
}

/* The batch-or-wait rule from the top of this file: how long (ms) to wait
 * for returning episodes before generating for the k ready ones; 0: now.
 * The expected number of episodes back within t is the sum over episodes in
 * a tool call of P(back within t | still running after e).  */
static const double wait_grid[] = {1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 1500, 2000};
#define NGRID ((int)(sizeof wait_grid / sizeof wait_grid[0]))

static double fill_wait_ms(struct rl_rollout *r, int k) {
    int B = r->cfg.max_batch;
    double G = r->gen_ewma_ms;
    if (k >= B || G <= 0) return 0;
    double limit = r->cfg.fill_wait * G, now = mono_ms();
    double m[NGRID] = {0};
    int ngrid = 0;
    while (ngrid < NGRID && wait_grid[ngrid] <= limit) ngrid++;
    if (ngrid == 0) return 0;
    for (int i = 0; i < r->neps; i++) {
        struct rl_episode *e = &r->eps[i];
        if (e->state != EP_TOOL) continue;
        struct rl_tool_stats *s = stats_for(r, e->pending.tool);
        double elapsed = now - e->tool_submit_ms;
        for (int g = 0; g < ngrid; g++)
            m[g] += rl_lat_prob_within(&s->back, elapsed, wait_grid[g], (double)e->tool_timeout_ms);
    }
    double best_t = 0, best_gain = 0;
    for (int g = 0; g < ngrid; g++) {
        double got = fmin(m[g], (double)(B - k));
        double gain = got * G / B - wait_grid[g];
        if (gain > best_gain) best_gain = gain, best_t = wait_grid[g];
    }
    return best_t;
}

/* ---- the step ---------------------------------------------------------------------- */

static int count_state(const struct rl_rollout *r, int state) {
    int n = 0;
    for (int i = 0; i < r->neps; i++) n += r->eps[i].state == state;
    return n;
}

/* The step may end once cfg.min_groups groups are complete. */
static bool enough_groups(const struct rl_rollout *r) {
    return r->cfg.min_groups > 0 && r->groups_done >= r->cfg.min_groups;
}

static void step_async(struct rl_rollout *r, struct rl_episode **ready, double deadline) {
    double hold_until = -1; /* set while waiting to fill a batch */
    while (r->active > 0 && !enough_groups(r)) {
        poll_vivd(r, 0);
        start_waiting_sessions(r);
        if (deadline > 0 && mono_ms() >= deadline) return;
        int k = ready_list(r, ready);
        if (k > 0) {
            double now = mono_ms();
            if (hold_until < 0) {
                double w = fill_wait_ms(r, k);
                hold_until = w > 0 ? now + w : now;
            }
            if (now >= hold_until || k >= r->cfg.max_batch) {
                hold_until = -1;
                generate(r, ready, k < r->cfg.max_batch ? k : r->cfg.max_batch);
                continue;
            }
            poll_vivd(r, (int)ceil(hold_until - now));
            continue;
        }
        hold_until = -1;
        int wait = 100;
        if (deadline > 0) {
            double left = deadline - mono_ms();
            if (left < wait) wait = left > 1 ? (int)left : 1;
        }
        if (count_state(r, EP_WAIT_SESSION) > 0 && (!r->pool || viv_pool_pending(r->pool) == 0)) wait = 20; /* busy retry */
        poll_vivd(r, wait);
    }
}

static void step_sync(struct rl_rollout *r, struct rl_episode **ready, double deadline) {
    while (r->active > 0 && !enough_groups(r)) {
        if (deadline > 0 && mono_ms() >= deadline) return;
        /* generate for every ready episode, batch after batch */
        int k;
        while ((k = ready_list(r, ready)) > 0) generate(r, ready, k < r->cfg.max_batch ? k : r->cfg.max_batch);
        /* then run every tool call and wait for all of them */
        for (int i = 0; i < r->neps; i++)
            if (r->eps[i].state == EP_PENDING_TOOL) submit_tool(r, &r->eps[i]);
        while (count_state(r, EP_TOOL) + count_state(r, EP_WAIT_SESSION) > 0 && !enough_groups(r)) {
            if (deadline > 0 && mono_ms() >= deadline) return;
            start_waiting_sessions(r);
            poll_vivd(r, 100);
        }
    }
}

/* Open each episode's session now, so that its jail starts while the
 * first turn is being generated rather than after it. */
static void preopen_sessions(struct rl_rollout *r) {
    const char *tool = NULL;
    for (int i = 0; i < r->cfg.ntools && !tool; i++)
        if (r->cfg.tools[i].session) tool = r->cfg.tools[i].name;
    if (!tool || r->cfg.no_preopen) return;
    if (!pool(r)) return;
    sync_hosts(r);
    for (int i = 0; i < r->neps && r->sessions_open < r->cfg.max_sessions; i++) {
        struct rl_episode *e = &r->eps[i];
        if (e->state != EP_READY) continue;
        long h = open_session(r, e, tool);
        if (h <= 0) break;
        e->open_handle = h;
    }
    poll_vivd(r, 0); /* send them */
}

int rl_rollout_step(struct rl_rollout *r, const int *tasks, int ntasks, int group_size, struct rl_episode **out,
                    struct rl_step_stats *st, char *err, size_t errlen) {
    *out = NULL;
    memset(st, 0, sizeof *st);
    if (ntasks <= 0 || group_size <= 0 || ntasks > (1 << 20) / group_size) {
        snprintf(err, errlen, "rollout: need at least one task and one episode per task");
        return -1;
    }
    int n = ntasks * group_size;
    r->eps = xcalloc_((size_t)n, sizeof *r->eps);
    r->neps = n;
    r->active = n;
    r->group_size = group_size;
    r->group_left = xcalloc_((size_t)ntasks, sizeof *r->group_left);
    r->st = st;
    st->episodes = n;
    st->groups = ntasks;
    double t0 = mono_ms();
    r->step_t0 = t0;
    r->groups_done = 0;
    for (int g = 0; g < ntasks; g++) r->group_left[g] = group_size;
    for (int i = 0; i < n; i++) {
        struct rl_episode *e = &r->eps[i];
        e->index = i;
        e->turn_start = -1;
        e->host = e->lost_host = -1;
        e->group = i / group_size;
        e->task = tasks[e->group];
        e->t_start_ms = t0;
    }
    for (int i = 0; i < n; i++) {
        struct rl_episode *e = &r->eps[i];
        char *prompt = r->env.prompt(r->env.ctx, e->task);
        if (!prompt) {
            ep_end(r, e, RL_END_GEN_ERROR);
            continue;
        }
        bool ok = ep_append_text(r, e, prompt);
        free(prompt);
        e->prompt_tokens = e->n_tokens;
        if (ok) ep_ready(e);
    }
    /* no host up: try them all now rather than after their backoff */
    if (r->pool && viv_pool_up(r->pool) == 0) viv_pool_retry_now(r->pool);
    preopen_sessions(r);
    struct rl_episode **ready = xcalloc_((size_t)n, sizeof *ready);
    double deadline = r->cfg.step_deadline_ms > 0 ? t0 + r->cfg.step_deadline_ms : 0;
    if (r->cfg.sync) step_sync(r, ready, deadline);
    else step_async(r, ready, deadline);
    st->groups_complete = r->groups_done;
    for (int i = 0; i < n; i++)
        if (r->eps[i].state != EP_DONE) ep_end(r, &r->eps[i], RL_END_STEP_DEADLINE);
    free(ready);
    /* closes of the sessions just ended go out now; their answers are read later */
    poll_vivd(r, 0);
    st->wall_ms = mono_ms() - t0;
    if (r->pool) {
        st->nhosts = viv_pool_size(r->pool);
        st->hosts_up = viv_pool_up(r->pool);
    }
    st->gen_idle_frac = st->wall_ms > 0 ? 1.0 - st->gen_busy_ms / st->wall_ms : 0;
    st->mean_batch = st->gen_calls ? (double)st->gen_requests / (double)st->gen_calls : 0;
    for (int i = 0; i < n; i++) {
        st->reward_mean += r->eps[i].score.reward / n;
        st->correct_mean += r->eps[i].score.correct / n;
    }
    *out = r->eps;
    r->eps = NULL;
    r->neps = 0;
    free(r->group_left);
    r->group_left = NULL;
    r->st = NULL;
    return 0;
}

int rl_rollout_rerun_lost(struct rl_rollout *r, struct rl_episode *eps, int n, int max_tries, int *reruns, char *err,
                          size_t errlen) {
    *reruns = 0;
    int *idx = calloc((size_t)n + 1, sizeof *idx), *tasks = calloc((size_t)n + 1, sizeof *tasks);
    if (!idx || !tasks) {
        free(idx), free(tasks);
        return snprintf(err, errlen, "out of memory"), -1;
    }
    int rc = 0;
    for (int round = 0; round < max_tries && rc == 0; round++) {
        int k = 0;
        for (int i = 0; i < n; i++)
            if (eps[i].infra_error) idx[k] = i, tasks[k++] = eps[i].task;
        if (k == 0) break;
        struct rl_episode *again = NULL;
        struct rl_step_stats st;
        if ((rc = rl_rollout_step(r, tasks, k, 1, &again, &st, err, errlen)) != 0) break;
        *reruns += k;
        for (int j = 0; j < k; j++) { /* the new run takes the old one's place (and index) */
            struct rl_episode *old = &eps[idx[j]];
            int index = old->index, group = old->group;
            struct rl_episode tmp = *old;
            *old = again[j];
            old->index = index, old->group = group;
            again[j] = tmp;
        }
        rl_episodes_free(again, k);
    }
    free(idx), free(tasks);
    return rc;
}
