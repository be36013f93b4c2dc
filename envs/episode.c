/*
 * episode.c - the episode state machine and the runner (see episode.h).
 */
#define _GNU_SOURCE
#include "episode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"
#include "outcome.h"

const char *const episode_system_prompt =
    "You are a biomedical research assistant that solves tasks by writing and running code.\n"
    "Each reply has two parts: first your reasoning inside <think>...</think>, then exactly one of\n"
    "  <execute>code</execute>    to run code; its output comes back inside <observation>...</observation>\n"
    "  <solution>answer</solution> to give the final answer (only once, in your last reply)\n"
    "Code is Python 3 by default (numpy, pandas and sqlite3 are available; variables persist between\n"
    "your <execute> blocks). Start the code with the line #!BASH for a shell script, or #!SQL for a\n"
    "read-only SQLite query on the gene database. The databases are /db/org.Hs.eg.sqlite (human genes:\n"
    "symbols, Entrez, Ensembl and UniProt IDs, locations, GO, KEGG, OMIM) and /db/GO.sqlite (GO terms).\n"
    "There is no network. Outputs longer than 10,000 characters are cut. Give the answer in exactly the\n"
    "format the task asks for.";

/* --- conversations ------------------------------------------------------------------ */

void conv_add(struct conversation *c, enum role r, const char *text, size_t len) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->turns = xrealloc(c->turns, c->cap * sizeof *c->turns);
    }
    char *t = xmalloc(len + 1);
    memcpy(t, text, len);
    t[len] = 0;
    c->turns[c->n++] = (struct turn){r, t, len};
}

void conv_free(struct conversation *c) {
    for (size_t i = 0; i < c->n; i++) free(c->turns[i].text);
    free(c->turns);
    memset(c, 0, sizeof *c);
}

const struct turn *conv_last(const struct conversation *c, enum role r) {
    for (size_t i = c->n; i-- > 0;)
        if (c->turns[i].role == r) return &c->turns[i];
    return NULL;
}

/* --- the state machine ----------------------------------------------------------------- */

void episode_init(struct episode *ep, const struct task *t, const struct episode_cfg *cfg, uint64_t seed) {
    memset(ep, 0, sizeof *ep);
    ep->task = t;
    ep->cfg = *cfg;
    if (ep->cfg.max_turns <= 0) ep->cfg.max_turns = 16;
    if (ep->cfg.tool_timeout_ms <= 0) ep->cfg.tool_timeout_ms = 30000;
    ep->seed = seed;
    conv_add(&ep->conv, ROLE_SYSTEM, episode_system_prompt, strlen(episode_system_prompt));
    conv_add(&ep->conv, ROLE_USER, t->prompt, strlen(t->prompt));
    ep->state = EP_NEED_MESSAGE;
}

void episode_free(struct episode *ep) {
    conv_free(&ep->conv);
    free(ep->code), free(ep->session), free(ep->answer), free(ep->last_stdout);
    memset(ep, 0, sizeof *ep);
}

static void finish(struct episode *ep, const char *why) {
    const char *msgs[ep->conv.n ? ep->conv.n : 1];
    size_t lens[ep->conv.n ? ep->conv.n : 1];
    int k = 0;
    for (size_t i = 0; i < ep->conv.n; i++)
        if (ep->conv.turns[i].role == ROLE_ASSISTANT) msgs[k] = ep->conv.turns[i].text, lens[k++] = ep->conv.turns[i].len;
    ep->format = proto_format_reward(msgs, lens, k, NULL, 0);
    ep->end = why;
    ep->state = EP_DONE;
}

void episode_fail(struct episode *ep, const char *why) {
    if (ep->state != EP_DONE) finish(ep, why);
}

/* After an observation or a correction: the agent's turn, if it has turns left. */
static void next_message(struct episode *ep) {
    if (ep->turns >= ep->cfg.max_turns) finish(ep, "max_turns");
    else ep->state = EP_NEED_MESSAGE;
}

/* result[0..len) may hold NUL bytes (a tool's output): it is kept whole. */
static void add_observation(struct episode *ep, const char *result, size_t len) {
    size_t n;
    char *obs = proto_render_observation(result, len, &n);
    conv_add(&ep->conv, ROLE_TOOL, obs, n);
    free(obs);
}

void episode_push_message(struct episode *ep, const char *text, size_t len) {
    if (ep->state != EP_NEED_MESSAGE) return;
    len = proto_stop_len(text, len);
    conv_add(&ep->conv, ROLE_ASSISTANT, text, len);
    ep->turns++;
    struct proto_msg m;
    proto_parse(text, len, &m);
    switch (m.action) {
    case PROTO_SOLUTION: {
        ep->answer = xstrdup(m.solution);
        const cJSON *scores = ep->task->meta ? cJSON_GetObjectItemCaseSensitive(ep->task->meta, "option_scores") : NULL;
        double r = grade(ep->task->grader, ep->answer, ep->task->answer, ep->cfg.mode, scores, NULL, 0);
        ep->correct = r < 0 ? 0 : r;
        finish(ep, "solution");
        break;
    }
    case PROTO_EXECUTE:
        free(ep->code);
        ep->code = proto_select_tool(m.code, &ep->tool);
        if (ep->tool == PROTO_TOOL_PYTHON) {
            char *c = proto_with_task_inputs(ep->task->meta, ep->code);
            free(ep->code);
            ep->code = c;
        }
        if (ep->tool == PROTO_TOOL_R) {
            static const char no_r[] = "Error: R is not available here. Write Python (the default), or start the "
                                       "code with #!BASH for a shell script or #!SQL for a database query.";
            free(ep->last_stdout);
            ep->last_stdout = xstrdup("");
            ep->last_stdout_len = 0;
            add_observation(ep, no_r, sizeof no_r - 1);
            next_message(ep);
        } else ep->state = EP_NEED_TOOL;
        break;
    case PROTO_THINK_ONLY: /* upstream simply asks the model again */
        next_message(ep);
        break;
    case PROTO_PARSE_ERROR:
        if (++ep->parse_failures >= PROTO_MAX_PARSE_FAILURES) {
            conv_add(&ep->conv, ROLE_USER, proto_terminated_text, strlen(proto_terminated_text));
            finish(ep, "parse_errors");
        } else {
            conv_add(&ep->conv, ROLE_USER, proto_correction_text, strlen(proto_correction_text));
            next_message(ep);
        }
        break;
    }
    proto_msg_free(&m);
}

long episode_submit(struct episode *ep, struct viv_client *c) {
    if (ep->state != EP_NEED_TOOL) return 0;
    long h;
    if (ep->tool == PROTO_TOOL_PYTHON && !ep->session) {
        h = viv_submit_session_open(c, "python");
        ep->opening_session = 1;
    } else if (ep->tool == PROTO_TOOL_PYTHON) {
        h = viv_submit_session_exec(c, ep->session, ep->code, strlen(ep->code), ep->cfg.tool_timeout_ms);
        ep->opening_session = 0;
        ep->submitted_at = now_ms();
    } else {
        h = viv_submit_exec(c, proto_tool_policy(ep->tool), ep->code, strlen(ep->code), ep->cfg.tool_timeout_ms);
        ep->opening_session = 0;
        ep->submitted_at = now_ms();
    }
    if (h <= 0) {
        ep->handle = 0;
        finish(ep, "sandbox");
        return 0;
    }
    ep->handle = h;
    ep->state = EP_WAIT_TOOL;
    return h;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double jnum(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

char *episode_result_text(const struct viv_response *r, size_t *len) {
    const cJSON *resp = r->json;
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok"))) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(resp, "error");
        const char *code = jstr(e, "code"), *msg = jstr(e, "message");
        char *t = xasprintf("Error from the sandbox: %s: %s", code ? code : "error", msg ? msg : "(no message)");
        *len = strlen(t);
        return t;
    }
    /* stdout and stderr as the client decoded them whole: NULs and all */
    const char *out = r->out, *err = r->err;
    size_t ol = r->out_len, el = r->err_len;
    char *notes = xstrdup("");
#define NOTE(...)                                                                   \
    do {                                                                            \
        char *_n = xasprintf(__VA_ARGS__), *_t = xasprintf("%s%s%s", notes, *notes ? "\n" : "", _n); \
        free(notes), free(_n), notes = _t;                                          \
    } while (0)
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "timed_out"))) NOTE("[timed out after %.0f ms]", jnum(resp, "wall_ms"));
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "session_lost")))
        NOTE("[the Python session was lost; its variables are gone]");
    if (jnum(resp, "signal") > 0 && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "timed_out")))
        NOTE("[killed by signal %.0f]", jnum(resp, "signal"));
    if (jnum(resp, "exit_code") != 0 && el == 0) NOTE("[exit code %.0f]", jnum(resp, "exit_code"));
    if (jnum(resp, "stdout_dropped") + jnum(resp, "stderr_dropped") > 0)
        NOTE("[%.0f bytes of output dropped]", jnum(resp, "stdout_dropped") + jnum(resp, "stderr_dropped"));
#undef NOTE
    const char *sep1 = ol && el && out[ol - 1] != '\n' ? "\n" : "";
    const char *sep2 = *notes && (ol || el) && (el ? err[el - 1] : out[ol - 1]) != '\n' ? "\n" : "";
    size_t l1 = strlen(sep1), l2 = strlen(sep2), ln = strlen(notes);
    char *t = xmalloc(ol + l1 + el + l2 + ln + 1), *p = t;
    p = mempcpy(p, out, ol), p = mempcpy(p, sep1, l1), p = mempcpy(p, err, el);
    p = mempcpy(p, sep2, l2), p = mempcpy(p, notes, ln);
    *p = 0;
    *len = (size_t)(p - t);
    free(notes);
    return t;
}

void episode_on_response(struct episode *ep, struct viv_client *c, const struct viv_response *r) {
    const cJSON *resp = r->json;
    if (ep->state != EP_WAIT_TOOL) return;
    ep->handle = 0;
    if (ep->opening_session) {
        ep->opening_session = 0;
        const char *s = jstr(resp, "session");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok")) && s) {
            ep->session = xstrdup(s);
            ep->state = EP_NEED_TOOL;
            episode_submit(ep, c);
            return;
        }
        /* vivd's session cap (busy): run it without a session. Any other
         * failure to open one is the sandbox's: the episode is lost to it */
        const cJSON *oe = cJSON_GetObjectItemCaseSensitive(resp, "error");
        const char *ocode = jstr(oe, "code");
        if (!(ocode && !strcmp(ocode, "busy")) && outcome_response_sandbox_decided(resp)) {
            finish(ep, "sandbox");
            return;
        }
        ep->submitted_at = now_ms();
        long h = viv_submit_exec(c, "python", ep->code, strlen(ep->code), ep->cfg.tool_timeout_ms);
        if (h <= 0) {
            finish(ep, "sandbox");
            return;
        }
        ep->handle = h;
        return;
    }
    ep->tool_calls++;
    ep->tool_ms += now_ms() - ep->submitted_at;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "session_lost"))) {
        free(ep->session);
        ep->session = NULL;
    } else if (ep->session && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok"))) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(resp, "error");
        const char *code = jstr(e, "code");
        if (code && (!strcmp(code, "not_found") || !strcmp(code, "session_lost"))) {
            free(ep->session);
            ep->session = NULL;
        }
    }
    free(ep->last_stdout);
    ep->last_stdout = xmalloc(r->out_len + 1);
    memcpy(ep->last_stdout, r->out, r->out_len + 1);
    ep->last_stdout_len = r->out_len;
    size_t len;
    char *text = episode_result_text(r, &len);
    add_observation(ep, text, len);
    free(text);
    /* an outcome the sandbox decided ends the episode: what the model does
     * next would be scored on the sandbox's failure (the runner runs it again) */
    if (outcome_response_sandbox_decided(resp)) finish(ep, "sandbox");
    else next_message(ep);
}

bool episode_lost_to_sandbox(const struct episode *ep) {
    return ep->state == EP_DONE && ep->end && !strcmp(ep->end, "sandbox");
}

void episode_release(struct episode *ep, struct viv_client *c) {
    if (ep->session) viv_submit_session_close(c, ep->session);
    free(ep->session);
    ep->session = NULL;
}

/* --- the runner ------------------------------------------------------------------------ */

void episode_submit_pooled(struct episode *ep, struct viv_pool *p, struct episode_host *h) {
    if (ep->session && (!viv_pool_client(p, h->host) || viv_pool_host(p, h->host)->epoch != h->epoch)) {
        episode_fail(ep, "sandbox");
        return;
    }
    if (!ep->session) h->host = viv_pool_pick(p, NULL);
    struct viv_client *c = viv_pool_client(p, h->host);
    if (!c) { /* no host up */
        episode_fail(ep, "sandbox");
        return;
    }
    h->epoch = viv_pool_host(p, h->host)->epoch;
    viv_pool_note_call(p, h->host);
    episode_submit(ep, c);
    if (ep->state == EP_DONE) viv_pool_note_broken(p, h->host);
}

bool episode_rerun_if_lost(struct episode *ep, struct viv_pool *p, struct episode_host *h,
                           const struct episode_cfg *cfg, uint64_t seed, int *tries) {
    if (ep->state != EP_DONE || !episode_lost_to_sandbox(ep) || *tries >= EPISODE_SANDBOX_TRIES) return false;
    const struct task *t = ep->task;
    episode_release_pooled(ep, p, h);
    episode_free(ep);
    episode_init(ep, t, cfg, seed);
    *h = (struct episode_host){-1, 0};
    (*tries)++;
    return true;
}

void episode_release_pooled(struct episode *ep, struct viv_pool *p, const struct episode_host *h) {
    struct viv_client *c = h->host >= 0 ? viv_pool_client(p, h->host) : NULL;
    if (c && viv_pool_host(p, h->host)->epoch == h->epoch) episode_release(ep, c);
}

int episode_pool_dispatch(struct viv_pool *p, struct episode *slots, const int *busy, const struct episode_host *hosts,
                          int n, int timeout_ms) {
    int h;
    struct viv_response *r = viv_pool_next(p, timeout_ms, &h);
    if (!r) return 0;
    for (int s = 0; s < n; s++)
        if (busy[s] && slots[s].state == EP_WAIT_TOOL && hosts[s].host == h && slots[s].handle == r->handle) {
            struct viv_client *c = viv_pool_client(p, h);
            if (c) episode_on_response(&slots[s], c, r);
            else episode_fail(&slots[s], "sandbox"); /* its host went down with this answer */
            break;
        }
    viv_response_free(r); /* answers to session_close land here too */
    return 1;
}

void episode_pool_drain(struct viv_pool *p) {
    struct viv_response *r;
    int h;
    while (viv_pool_pending(p) > 0 && (r = viv_pool_next(p, 2000, &h))) viv_response_free(r);
}

int run_episodes(const struct task_set *ts, size_t n, int concurrency, struct viv_pool *p, agent_fn agent,
                 void *agent_ctx, const struct episode_cfg *cfg, uint64_t seed, struct episode_result *results,
                 void (*on_done)(void *ctx, const struct episode *ep, size_t index), void *done_ctx, char *err,
                 size_t errlen) {
    if (ts->n == 0 || n == 0) return 0;
    if (concurrency < 1) concurrency = 1;
    struct episode *slots = xcalloc((size_t)concurrency, sizeof *slots);
    size_t *index = xcalloc((size_t)concurrency, sizeof *index);
    int *busy = xcalloc((size_t)concurrency, sizeof *busy), *tries = xcalloc((size_t)concurrency, sizeof *tries);
    struct episode_host *host = xcalloc((size_t)concurrency, sizeof *host);
    size_t started = 0, finished = 0, broken = 0;
    while (finished < n) {
        int waiting = 0;
        for (int s = 0; s < concurrency; s++) {
            if (!busy[s] && started < n) {
                index[s] = started;
                episode_init(&slots[s], &ts->t[started % ts->n], cfg, seed + started);
                busy[s] = 1, started++, tries[s] = 0;
                host[s] = (struct episode_host){-1, 0};
            }
            if (!busy[s]) continue;
            struct episode *ep = &slots[s];
            while (ep->state == EP_NEED_MESSAGE) {
                char *msg = agent(agent_ctx, ep);
                episode_push_message(ep, msg ? msg : "", msg ? strlen(msg) : 0);
                free(msg);
            }
            if (ep->state == EP_NEED_TOOL) episode_submit_pooled(ep, p, &host[s]);
            if (episode_rerun_if_lost(ep, p, &host[s], cfg, seed + index[s], &tries[s])) {
                s--; /* the sandbox ended it: the same episode again, at once */
                continue;
            }
            if (ep->state == EP_DONE) {
                if (episode_lost_to_sandbox(ep)) broken++;
                if (results)
                    results[index[s]] = (struct episode_result){(size_t)(ep->task - ts->t), ep->correct, ep->format,
                                                                ep->turns, ep->tool_calls, ep->tool_ms, ep->end,
                                                                tries[s]};
                if (on_done) on_done(done_ctx, ep, index[s]);
                episode_release_pooled(ep, p, &host[s]);
                episode_free(ep);
                busy[s] = 0, finished++;
                s--; /* refill this slot at once */
                continue;
            }
            waiting += ep->state == EP_WAIT_TOOL;
        }
        if (waiting) episode_pool_dispatch(p, slots, busy, host, concurrency, 1000);
    }
    episode_pool_drain(p); /* let the session closes go out before the caller closes the connections */
    free(slots), free(index), free(busy), free(tries), free(host);
    if (broken) {
        snprintf(err, errlen, "%zu of %zu episodes were lost to the sandbox %d times (host failed, unreachable or "
                              "refusing): not scored",
                 broken, n, EPISODE_SANDBOX_TRIES + 1);
        return -1;
    }
    return 0;
}
