/*
 * bio_env.c - the Biomni protocol as an rl_env_ops (see bio_env.h).
 */
#define _GNU_SOURCE
#include "bio_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../envs/episode.h"
#include "../envs/protocol.h"

static const char EOS_TEXT[] = "<|im_end|>";

/* Copy n bytes to p; the end of the copy. */
static char *put(char *p, const char *s, size_t n) { return (char *)memcpy(p, s, n) + n; }

char *bio_prompt_text(const char *task_prompt) {
    char *s = NULL;
    if (asprintf(&s, "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n",
                 episode_system_prompt, task_prompt) < 0)
        return NULL;
    return s;
}

char *bio_glue_bytes(const char *content, size_t n, size_t *len) {
    static const char open[] = "<|im_end|>\n<|im_start|>user\n", close[] = "<|im_end|>\n<|im_start|>assistant\n";
    char *s = malloc(sizeof open - 1 + n + sizeof close);
    if (!s) return NULL;
    char *p = s;
    if (content) p = put(p, open, sizeof open - 1), p = put(p, content, n); /* else no user turn */
    p = put(p, close, sizeof close - 1);
    *p = 0;
    *len = (size_t)(p - s);
    return s;
}

char *bio_glue_text(const char *content) {
    size_t len;
    return bio_glue_bytes(content, content ? strlen(content) : 0, &len);
}

size_t bio_strip_eos(const char *text, size_t len) {
    size_t k = sizeof EOS_TEXT - 1;
    if (len >= k && memcmp(text + len - k, EOS_TEXT, k) == 0) return len - k;
    return len;
}

int bio_tool_cfgs(struct rl_tool_cfg *out, int max, long timeout_ms) {
    /* Python keeps its state across turns (a vivd session per episode). */
    static const char *const names[] = {"python", "sql", "shell"};
    int n = 0;
    for (int i = 0; i < 3 && n < max; i++)
        out[n++] = (struct rl_tool_cfg){.name = names[i], .timeout_ms = timeout_ms, .session = i == 0};
    return n;
}

static char *be_prompt(void *ctx, int task) {
    struct bio_env *env = ctx;
    if (task < 0 || (size_t)task >= env->ts->n) return NULL;
    return bio_prompt_text(env->ts->t[task].prompt);
}

static char *be_tool_code(void *ctx, int task, const char *tool, const char *code) {
    struct bio_env *env = ctx;
    if (strcmp(tool, "python") || task < 0 || (size_t)task >= env->ts->n) return NULL;
    return proto_with_task_inputs(env->ts->t[task].meta, code);
}

static int be_parse(void *ctx, const char *text, size_t len, struct rl_turn *t) {
    (void)ctx;
    memset(t, 0, sizeof *t);
    struct proto_msg m;
    proto_parse(text, bio_strip_eos(text, len), &m);
    switch (m.action) {
    case PROTO_SOLUTION:
        t->kind = RL_TURN_SOLUTION;
        t->answer = strdup(m.solution ? m.solution : "");
        break;
    case PROTO_EXECUTE: {
        enum proto_tool tool;
        t->kind = RL_TURN_EXECUTE;
        t->code = proto_select_tool(m.code ? m.code : "", &tool);
        /* R has no policy: vivd refuses it and the model sees that error */
        snprintf(t->tool, sizeof t->tool, "%s", proto_tool_name(tool));
        break;
    }
    case PROTO_THINK_ONLY: /* no action: counted as a parse failure here */
        t->kind = RL_TURN_PARSE_ERROR;
        t->error = strdup("a <think> block without <execute> or <solution>");
        break;
    default:
        t->kind = RL_TURN_PARSE_ERROR;
        t->error = strdup("no usable tags");
        break;
    }
    proto_msg_free(&m);
    return 0;
}

/* The observation body as the episode runner writes it: stdout, stderr,
 * then bracketed notes (timeouts, exit codes, sandbox errors). The output
 * goes by its lengths: NUL bytes and what follows them are kept. malloc'd,
 * *len bytes. */
static char *observation_body(const struct rl_tool_result *r, size_t *len) {
    char *body = NULL;
    if (r->status == RL_TOOL_ERROR || r->status == RL_TOOL_LOST) {
        if (asprintf(&body, "Error from the sandbox: %s: %s", r->error_code ? r->error_code : "error",
                     r->error_message ? r->error_message : "(no message)") < 0)
            return NULL;
        *len = strlen(body);
        return body;
    }
    const char *out = r->out ? r->out : "", *err = r->err ? r->err : "";
    size_t ol = r->out ? r->out_len : 0, el = r->err ? r->err_len : 0;
    char note[160] = "";
    if (r->status == RL_TOOL_TIMEOUT) snprintf(note, sizeof note, "[timed out after %.0f ms]", r->wall_ms);
    else if (r->exit_code != 0 && !el) snprintf(note, sizeof note, "[exit code %d]", r->exit_code);
    const char *sep1 = ol && el && out[ol - 1] != '\n' ? "\n" : "";
    const char *sep2 = *note && (ol || el) && (el ? err[el - 1] : out[ol - 1]) != '\n' ? "\n" : "";
    size_t l1 = strlen(sep1), l2 = strlen(sep2), ln = strlen(note);
    body = malloc(ol + l1 + el + l2 + ln + 1);
    if (!body) return NULL;
    char *p = put(body, out, ol);
    p = put(p, sep1, l1), p = put(p, err, el), p = put(p, sep2, l2), p = put(p, note, ln);
    *p = 0;
    *len = (size_t)(p - body);
    return body;
}

static char *be_observation(void *ctx, const struct rl_tool_result *r, size_t *len) {
    (void)ctx;
    size_t blen, olen;
    char *body = observation_body(r, &blen);
    if (!body) return NULL;
    char *obs = proto_render_observation(body, blen, &olen);
    free(body);
    char *s = bio_glue_bytes(obs, olen, len);
    free(obs);
    return s;
}

static char *be_parse_error(void *ctx, const char *why) {
    (void)ctx, (void)why; /* the protocol's reminder is fixed text */
    return bio_glue_text(proto_correction_text);
}

static int be_score(void *ctx, int task, const struct rl_episode *ep, struct rl_score *out) {
    struct bio_env *env = ctx;
    memset(out, 0, sizeof *out);
    if (task < 0 || (size_t)task >= env->ts->n) return -1;
    const struct task *t = &env->ts->t[task];
    if (ep->end == RL_END_SOLUTION && ep->answer) {
        const cJSON *scores = t->meta ? cJSON_GetObjectItemCaseSensitive(t->meta, "option_scores") : NULL;
        char err[128];
        double g = grade(t->grader, ep->answer, t->answer, env->mode, scores, err, sizeof err);
        out->correct = g > 0 ? g : 0;
    }
    if (ep->n_turns > 0) {
        const char **msgs = malloc((size_t)ep->n_turns * sizeof *msgs);
        size_t *lens = malloc((size_t)ep->n_turns * sizeof *lens);
        if (!msgs || !lens) {
            free(msgs), free(lens);
            return -1;
        }
        for (int i = 0; i < ep->n_turns; i++)
            msgs[i] = ep->turn_text[i], lens[i] = bio_strip_eos(ep->turn_text[i], strlen(ep->turn_text[i]));
        /* an episode that never gave a solution cannot be well formatted */
        out->format = ep->end == RL_END_SOLUTION ? proto_format_reward(msgs, lens, ep->n_turns, NULL, 0) : 0;
        free(msgs), free(lens);
    }
    out->reward = out->correct + out->format;
    return 0;
}

void bio_env_init(struct bio_env *env, struct rl_env_ops *ops) {
    memset(ops, 0, sizeof *ops);
    ops->ctx = env;
    ops->prompt = be_prompt;
    ops->parse_turn = be_parse;
    ops->tool_code = be_tool_code;
    ops->observation = be_observation;
    ops->parse_error = be_parse_error;
    ops->score = be_score;
}
