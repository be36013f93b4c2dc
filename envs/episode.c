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
#include "turn.h"

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
    ep->format = turn_format(msgs, lens, k, !strcmp(why, "solution"));
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

void episode_push_message(struct episode *ep, const char *text, size_t len) {
    if (ep->state != EP_NEED_MESSAGE) return;
    len = turn_message_len(text, len);
    conv_add(&ep->conv, ROLE_ASSISTANT, text, len);
    ep->turns++;
    struct turn_decision d;
    turn_decide(ep->task, text, len, ep->parse_failures, &d);
    switch (d.next) {
    case TURN_ANSWER:
        ep->answer = d.answer, d.answer = NULL;
        ep->correct = turn_grade(ep->task, ep->answer, ep->cfg.mode);
        finish(ep, "solution");
        break;
    case TURN_RUN:
        free(ep->code);
        ep->code = d.code, d.code = NULL;
        ep->tool = d.tool;
        ep->state = EP_NEED_TOOL;
        break;
    case TURN_CONTINUE:
        next_message(ep);
        break;
    case TURN_CORRECT:
    case TURN_GIVE_UP:
        ep->parse_failures++;
        conv_add(&ep->conv, ROLE_USER, d.user_text, strlen(d.user_text));
        if (d.next == TURN_GIVE_UP) finish(ep, "parse_errors");
        else next_message(ep);
        break;
    }
    turn_decision_free(&d);
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
        h = viv_submit_exec(c, proto_tool_name(ep->tool), ep->code, strlen(ep->code), ep->cfg.tool_timeout_ms);
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

/* vivd's answer as the turn machine reads it */
static struct turn_tool_out tool_out(const struct viv_response *r) {
    const cJSON *resp = r->json, *e = cJSON_GetObjectItemCaseSensitive(resp, "error");
    return (struct turn_tool_out){
        .answered = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "ok")),
        .out = r->out, .err = r->err, .out_len = r->out_len, .err_len = r->err_len, /* NULs and all */
        .exit_code = (int)jnum(resp, "exit_code"), .signal = (int)jnum(resp, "signal"),
        .timed_out = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "timed_out")),
        .session_lost = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(resp, "session_lost")),
        .wall_ms = jnum(resp, "wall_ms"), .dropped = jnum(resp, "stdout_dropped") + jnum(resp, "stderr_dropped"),
        .error_code = jstr(e, "code"), .error_message = jstr(e, "message")};
}

char *episode_result_text(const struct viv_response *r, size_t *len) {
    struct turn_tool_out o = tool_out(r);
    return turn_result_text(&o, NULL, len);
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
    struct turn_tool_out o = tool_out(r);
    char *obs = turn_observation(&o, proto_tool_name(ep->tool), &len);
    conv_add(&ep->conv, ROLE_TOOL, obs, len);
    free(obs);
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

void episode_finish_in_slot(struct episode *ep, struct viv_pool *p, const struct episode_host *h,
                            const struct task_set *ts, size_t index, int reruns, struct episode_result *results,
                            episode_done_fn on_done, void *done_ctx, size_t *lost) {
    if (episode_lost_to_sandbox(ep)) ++*lost;
    if (results)
        results[index] = (struct episode_result){(size_t)(ep->task - ts->t), ep->correct, ep->format, ep->turns,
                                                 ep->tool_calls, ep->tool_ms, ep->end, reruns};
    if (on_done) on_done(done_ctx, ep, index);
    episode_release_pooled(ep, p, h);
    episode_free(ep);
}

int episodes_lost_error(size_t lost, size_t n, char *err, size_t errlen) {
    if (!lost) return 0;
    snprintf(err, errlen, "%zu of %zu episodes were lost to the sandbox %d times (host failed, unreachable or "
                          "refusing): not scored",
             lost, n, EPISODE_SANDBOX_TRIES + 1);
    return -1;
}

int run_episodes(const struct task_set *ts, size_t n, int concurrency, struct viv_pool *p, agent_fn agent,
                 void *agent_ctx, const struct episode_cfg *cfg, uint64_t seed, struct episode_result *results,
                 episode_done_fn on_done, void *done_ctx, char *err, size_t errlen) {
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
                episode_finish_in_slot(ep, p, &host[s], ts, index[s], tries[s], results, on_done, done_ctx, &broken);
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
    return episodes_lost_error(broken, n, err, errlen);
}
