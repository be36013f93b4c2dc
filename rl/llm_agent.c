/* llm_agent.c - see llm_agent.h. */
#define _GNU_SOURCE
#include "llm_agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../envs/eval1.h"
#include "../envs/protocol.h"
#include "../model/chat.h"
#include "../model/qwen3.h"
#include "../model/tokenizer.h"
#include "../sandbox/util.h"
#include "bio_env.h"
#include "http_cmds.h"
#include "openai_client.h"
#include "textgen.h"
#include "train.h"

#define DEAD_AFTER 3 /* failures in a row */

static const char *const stops[] = {"</execute>", "</solution>"};

struct llm_agent {
    struct agent_options o;
    char *model_name;
    /* endpoint:URL */
    struct oai_client *client;
    /* model:DIR */
    struct qwen3 *m;
    struct tokenizer *tok;
    struct textgen gen;
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
    if (!strncmp(spec, "endpoint:", 9)) {
        if (!o->model || !*o->model) {
            fail_with(err, errlen, "--agent %s needs --model NAME (the model the endpoint serves)", spec);
            free(a);
            return NULL;
        }
        struct oai_config cfg = {.base_url = spec + 9, .api_key_env = o->api_key_env, .max_retries = -1,
                                 .timeout_ms = o->request_timeout_ms};
        if (!(a->client = oai_client_new(&cfg, err, errlen))) {
            free(a);
            return NULL;
        }
        a->model_name = xstrdup(o->model);
        return a;
    }
    const char *dir = spec + 6;
    if (!(a->m = qwen3_load(dir, err, errlen)) || !(a->tok = tokenizer_load(dir, err, errlen))) {
        if (a->m) qwen3_free(a->m);
        free(a);
        return NULL;
    }
    if (tokenizer_vocab_size(a->tok) > a->m->cfg.vocab_size) {
        fail_with(err, errlen, "%s: the tokenizer has more ids than the model's vocabulary", dir);
        llm_agent_close(a);
        return NULL;
    }
    textgen_init(&a->gen, a->m, a->tok, dir);
    a->model_name = xstrdup(dir);
    return a;
}

void llm_agent_close(struct llm_agent *a) {
    if (!a) return;
    oai_client_free(a->client);
    if (a->m) qwen3_free(a->m);
    tokenizer_free(a->tok);
    free(a->model_name);
    free(a);
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
    a->failures++, a->in_a_row++;
    snprintf(a->last, sizeof a->last, "%s", why);
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
    struct oai_response r;
    char err[512];
    char *text = NULL;
    if (oai_chat(a->client, &rq, &r, err, sizeof err) != 0) failed(a, err);
    else {
        text = llm_agent_restore_stop(r.content, r.len, r.stop_reason, r.finish_reason);
        a->in_a_row = 0;
    }
    oai_response_free(&r);
    free(msgs);
    return text;
}

/* The training layout (rl/bio_env.h) of the episode so far, ending with an
 * open assistant turn. */
static int render_local(struct llm_agent *a, const struct episode *ep, struct chat *c) {
    size_t from = ep->conv.n >= 2 ? 2 : ep->conv.n;
    struct sft_traj t = {.n = (int)(ep->conv.n - from)};
    t.roles = xcalloc((size_t)t.n + 1, sizeof *t.roles);
    t.texts = xcalloc((size_t)t.n + 1, sizeof *t.texts);
    for (int i = 0; i < t.n; i++) {
        t.roles[i] = ep->conv.turns[from + i].role;
        t.texts[i] = ep->conv.turns[from + i].text;
    }
    int rc = sft_render(&t, ep->task->prompt, a->tok, c);
    if (rc == 0 && t.n > 0 && t.roles[t.n - 1] == ROLE_ASSISTANT) { /* a think-only message: open the next turn */
        char *g = bio_glue_text(NULL);
        rc = g ? chat_append_text(c, a->tok, g, strlen(g)) : -1;
        free(g);
    }
    free(t.roles);
    free(t.texts);
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
    if (textgen_run(&a->gen, c.ids, c.n, &p, NULL, NULL, &r, err, sizeof err) != 0) failed(a, err);
    else {
        text = llm_agent_restore_stop(r.text, r.len, r.stop_index >= 0 ? stops[r.stop_index] : NULL, NULL);
        a->in_a_row = 0;
        textgen_result_free(&r);
    }
    chat_free(&c);
    return text;
}

char *llm_agent_next(void *agent, const struct episode *ep) {
    struct llm_agent *a = agent;
    a->turns++;
    if (a->in_a_row >= DEAD_AFTER) {
        a->failures++;
        return NULL;
    }
    return a->client ? next_endpoint(a, ep) : next_local(a, ep);
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
    .close = provider_close,
};

int cmd_eval_with_llm(int argc, char **argv) {
    eval_set_agent_provider(&llm_agent_provider);
    return cmd_eval(argc, argv);
}
