/* llm_agent.c - see llm_agent.h. */
#define _GNU_SOURCE
#include "llm_agent.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../envs/eval1.h"
#include "../../envs/protocol.h"
#include "../../model/chat.h"
#include "../../model/qwen3.h"
#include "../../model/tokenizer.h"
#include "../../sandbox/base/util.h"
#include "agent_pool.h"
#include "../../envs/turn.h"
#include "http_cmds.h"
#include "openai_client.h"
#include "../../model/config.h"
#include "serve_batch.h"
#include "textgen.h"
#include "../train.h"

#define DEAD_AFTER 3 /* failures in a row */

static const char *const stops[] = {"</execute>", "</solution>"};

struct llm_agent {
    struct agent_options o;
    char *model_name;
    pthread_mutex_t mu;         /* guards everything below (the agent is called from several threads) */
    /* endpoint:URL: one libcurl client per concurrent request, reused */
    struct oai_config cfg;
    char *base_url;
    struct oai_client **idle;
    int n_idle, n_clients;
    /* model:DIR: one generation at a time (the model uses every core already) */
    struct qwen3 *m;
    struct tokenizer *tok;
    struct textgen gen;
    pthread_mutex_t gen_mu;
    struct batcher *batch;      /* llm_agent_run with concurrency > 1: episodes' messages decode together */
    long turns;
    int failures, in_a_row;
    char last[512];
};

int llm_agent_accepts(const char *spec) {
    return spec && (!strncmp(spec, "endpoint:", 9) || !strncmp(spec, "model:", 6));
}

struct llm_agent *llm_agent_open(const char *spec, const struct agent_options *o, char *err, size_t errlen) {
    if (!llm_agent_accepts(spec)) {
        fail_with(err, errlen, "unknown agent '%s' (endpoint:URL or model:DIR)", spec ? spec : "");
        return NULL;
    }
    struct llm_agent *a = xcalloc(1, sizeof *a);
    a->o = *o;
    if (a->o.max_tokens <= 0) a->o.max_tokens = 1024;
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->gen_mu, NULL);
    if (!strncmp(spec, "endpoint:", 9)) {
        if (!o->model || !*o->model) {
            fail_with(err, errlen, "needs --agent-model NAME (the model the endpoint serves)");
            llm_agent_close(a);
            return NULL;
        }
        a->base_url = xstrdup(spec + 9);
        a->cfg = (struct oai_config){.base_url = a->base_url, .api_key_env = o->api_key_env, .max_retries = -1,
                                     .timeout_ms = o->request_timeout_ms};
        /* the first client now: a bad URL or a missing key fails here, not in every episode */
        struct oai_client *c = oai_client_new(&a->cfg, err, errlen);
        if (!c) {
            llm_agent_close(a);
            return NULL;
        }
        /* nothing listening is found now, before any episode runs (and is scored) */
        char why[512];
        if (oai_probe(c, why, sizeof why) != 0) {
            fail_with(err, errlen, "the endpoint does not answer (is the server running?): %s", why);
            oai_client_free(c);
            llm_agent_close(a);
            return NULL;
        }
        a->idle = xcalloc(1, sizeof *a->idle);
        a->idle[a->n_idle++] = c;
        a->n_clients = 1;
        a->model_name = xstrdup(o->model);
        return a;
    }
    /* a run directory or its checkpoints/ means its latest checkpoint */
    char *dir = qwen3_model_dir_resolve(spec + 6, err, errlen);
    if (!dir || !(a->m = qwen3_load(dir, err, errlen)) || !(a->tok = tokenizer_load(dir, err, errlen))) {
        free(dir);
        llm_agent_close(a);
        return NULL;
    }
    if (tokenizer_vocab_size(a->tok) > a->m->cfg.vocab_size) {
        fail_with(err, errlen, "%s: the tokenizer has more ids than the model's vocabulary", dir);
        free(dir);
        llm_agent_close(a);
        return NULL;
    }
    textgen_init(&a->gen, a->m, a->tok, dir);
    a->model_name = dir;
    return a;
}

void llm_agent_close(struct llm_agent *a) {
    if (!a) return;
    batcher_stop(a->batch);
    for (int i = 0; i < a->n_idle; i++) oai_client_free(a->idle[i]);
    free(a->idle);
    free(a->base_url);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->gen_mu);
    if (a->m) qwen3_free(a->m);
    tokenizer_free(a->tok);
    free(a->model_name);
    free(a);
}

/* An idle client, or a new one (NULL + err only if creating fails). */
static struct oai_client *take_client(struct llm_agent *a, char *err, size_t errlen) {
    pthread_mutex_lock(&a->mu);
    struct oai_client *c = a->n_idle ? a->idle[--a->n_idle] : NULL;
    if (!c) a->n_clients++;
    pthread_mutex_unlock(&a->mu);
    return c ? c : oai_client_new(&a->cfg, err, errlen);
}

static void give_client(struct llm_agent *a, struct oai_client *c) {
    pthread_mutex_lock(&a->mu);
    a->idle = xrealloc(a->idle, (size_t)a->n_clients * sizeof *a->idle);
    a->idle[a->n_idle++] = c;
    pthread_mutex_unlock(&a->mu);
}

long llm_agent_turns(const struct llm_agent *a) { return a->turns; }
int llm_agent_failures(const struct llm_agent *a, const char **last) {
    if (last) *last = a->last;
    return a->failures;
}

/* Position just after the last occurrence of needle in text[0..len), or -1. */
static long last_end(const char *text, size_t len, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = len >= k ? len - k + 1 : 0; i-- > 0;)
        if (!memcmp(text + i, needle, k)) return (long)(i + k);
    return -1;
}

char *llm_agent_restore_stop(const char *text, size_t len, const char *stop_reason, const char *finish_reason) {
    const char *add = "";
    if (stop_reason && (!strcmp(stop_reason, stops[0]) || !strcmp(stop_reason, stops[1]))) add = stop_reason;
    else if (finish_reason && !strcmp(finish_reason, "stop")) {
        long oe = last_end(text, len, "<execute>"), ce = last_end(text, len, "</execute>");
        long os = last_end(text, len, "<solution>"), cs = last_end(text, len, "</solution>");
        int open_e = oe >= 0 && oe > ce, open_s = os >= 0 && os > cs;
        if (open_s && (!open_e || os > oe)) add = stops[1];
        else if (open_e) add = stops[0];
    }
    size_t k = strlen(add);
    char *s = xmalloc(len + k + 1);
    memcpy(s, text, len);
    memcpy(s + len, add, k + 1);
    return s;
}

static void failed(struct llm_agent *a, const char *why) {
    pthread_mutex_lock(&a->mu);
    a->failures++, a->in_a_row++;
    snprintf(a->last, sizeof a->last, "%s", why);
    pthread_mutex_unlock(&a->mu);
}

static void succeeded(struct llm_agent *a) {
    pthread_mutex_lock(&a->mu);
    a->in_a_row = 0;
    pthread_mutex_unlock(&a->mu);
}

static char *next_endpoint(struct llm_agent *a, const struct episode *ep) {
    struct oai_message *msgs = xcalloc(ep->conv.n, sizeof *msgs);
    static const char *const roles[] = {"system", "user", "assistant", "user"}; /* observations are user turns */
    for (size_t i = 0; i < ep->conv.n; i++)
        msgs[i] = (struct oai_message){.role = roles[ep->conv.turns[i].role], .content = ep->conv.turns[i].text,
                                       .len = ep->conv.turns[i].len};
    struct oai_request rq = {.model = a->model_name, .messages = msgs, .n_messages = (int)ep->conv.n,
                             .max_tokens = a->o.max_tokens, .temperature = a->o.temperature >= 0 ? a->o.temperature : 0,
                             .top_p = -1, .stop = stops, .n_stop = 2, .has_seed = 1,
                             .seed = ep->seed * 1000003u + (uint64_t)ep->turns};
    struct oai_response r = {0};
    char err[512];
    char *text = NULL;
    struct oai_client *c = take_client(a, err, sizeof err);
    if (!c) failed(a, err);
    else if (oai_chat(c, &rq, &r, err, sizeof err) != 0) failed(a, err);
    else {
        text = llm_agent_restore_stop(r.content, r.len, r.stop_reason, r.finish_reason);
        succeeded(a);
    }
    if (c) give_client(a, c);
    oai_response_free(&r);
    free(msgs);
    return text;
}

/* The training layout (envs/turn.h) of the episode so far, ending with an
 * open assistant turn. */
static int render_local(struct llm_agent *a, const struct episode *ep, struct chat *c) {
    size_t from = ep->conv.n >= 2 ? 2 : ep->conv.n;
    struct sft_traj t = {.n = (int)(ep->conv.n - from)};
    t.roles = xcalloc((size_t)t.n + 1, sizeof *t.roles);
    t.texts = xcalloc((size_t)t.n + 1, sizeof *t.texts);
    t.lens = xcalloc((size_t)t.n + 1, sizeof *t.lens);
    for (int i = 0; i < t.n; i++) { /* by length: an observation may hold NUL bytes */
        t.roles[i] = ep->conv.turns[from + i].role;
        t.texts[i] = ep->conv.turns[from + i].text;
        t.lens[i] = ep->conv.turns[from + i].len;
    }
    int rc = sft_render(&t, ep->task->prompt, a->tok, c);
    if (rc == 0 && t.n > 0 && t.roles[t.n - 1] == ROLE_ASSISTANT) { /* a think-only message: open the next turn */
        char *g = turn_glue_text(NULL);
        rc = g ? chat_append_text(c, a->tok, g, strlen(g)) : -1;
        free(g);
    }
    free(t.roles);
    free(t.texts);
    free(t.lens);
    return rc;
}

static char *next_local(struct llm_agent *a, const struct episode *ep) {
    struct chat c;
    chat_init(&c);
    char err[512];
    char *text = NULL;
    if (render_local(a, ep, &c) != 0) {
        failed(a, "cannot tokenise the episode");
        chat_free(&c);
        return NULL;
    }
    struct textgen_params p = {.max_tokens = a->o.max_tokens, .temperature = (float)(a->o.temperature >= 0 ? a->o.temperature : 0),
                               .top_p = 1.0f, .seed = ep->seed * 1000003u + (uint64_t)ep->turns, .stop = stops,
                               .n_stop = 2};
    struct textgen_result r;
    int rc;
    if (a->batch) rc = batcher_run(a->batch, c.ids, c.n, &p, NULL, NULL, &r, err, sizeof err);
    else {
        pthread_mutex_lock(&a->gen_mu);
        rc = textgen_run(&a->gen, c.ids, c.n, &p, NULL, NULL, &r, err, sizeof err);
        pthread_mutex_unlock(&a->gen_mu);
    }
    if (rc != 0) failed(a, err);
    else {
        text = llm_agent_restore_stop(r.text, r.len, r.stop_index >= 0 ? stops[r.stop_index] : NULL, NULL);
        succeeded(a);
        textgen_result_free(&r);
    }
    chat_free(&c);
    return text;
}

char *llm_agent_next(void *agent, const struct episode *ep) {
    struct llm_agent *a = agent;
    pthread_mutex_lock(&a->mu);
    a->turns++;
    int dead = a->in_a_row >= DEAD_AFTER;
    if (dead) a->failures++;
    pthread_mutex_unlock(&a->mu);
    if (dead) return NULL;
    return a->base_url ? next_endpoint(a, ep) : next_local(a, ep);
}

int llm_agent_run(void *agent, const struct task_set *ts, size_t n, int concurrency, struct viv_pool *p,
                  const struct episode_cfg *cfg, uint64_t seed, struct episode_result *results,
                  void (*on_done)(void *ctx, const struct episode *ep, size_t index), void *done_ctx, char *err,
                  size_t errlen) {
    struct llm_agent *a = agent;
    /* an endpoint: a request per episode in flight; the local model: the episodes' messages are decoded
     * together by a batcher (rl/serve/serve_batch.h) with a slot per episode in flight */
    int workers = concurrency;
    if (!a->base_url && concurrency > 1 && !a->batch) {
        int ctx = a->m->cfg.max_position;
        a->batch = batcher_start(&a->gen, concurrency, ctx > 0 && ctx < 4096 ? ctx : 4096, err, errlen);
        if (!a->batch) return -1;
    }
    return pool_run_episodes(ts, n, concurrency, workers, p, llm_agent_next, agent, cfg, seed, results, on_done,
                             done_ctx, err, errlen);
}

/* ---- viv eval's provider -------------------------------------------------------------------- */

static void *provider_open(const char *spec, const struct agent_options *o, char *err, size_t errlen) {
    return llm_agent_open(spec, o, err, errlen);
}

static int provider_close(void *agent, char *err, size_t errlen) {
    const char *last;
    int n = llm_agent_failures(agent, &last);
    snprintf(err, errlen, "%s", n ? last : "");
    llm_agent_close(agent);
    return n;
}

const struct agent_provider llm_agent_provider = {
    .kinds = "endpoint:URL, model:DIR",
    .accepts = llm_agent_accepts,
    .open = provider_open,
    .next = llm_agent_next,
    .run = llm_agent_run,
    .close = provider_close,
};

int cmd_eval_with_llm(int argc, char **argv) {
    eval_set_agent_provider(&llm_agent_provider);
    return cmd_eval(argc, argv);
}
