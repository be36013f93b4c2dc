/*
 * text_env.c - TEST DOUBLE environment (see text_env.h). Not the protocol.
 */
#define _GNU_SOURCE
#include "text_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *te_prompt(void *ctx, int task) {
    struct text_env *te = ctx;
    if (task < 0 || task >= te->ntasks) return NULL;
    char *s = NULL;
    if (asprintf(&s, "<task>%s</task>\n", te->tasks[task].question) < 0) return NULL;
    return s;
}

/* The text between open and close tags, malloc'd; NULL if not both there. */
static char *between(const char *text, size_t len, const char *open, const char *close) {
    const char *a = memmem(text, len, open, strlen(open));
    if (!a) return NULL;
    a += strlen(open);
    const char *b = memmem(a, len - (size_t)(a - text), close, strlen(close));
    return b ? strndup(a, (size_t)(b - a)) : NULL;
}

static int te_parse(void *ctx, const char *text, size_t len, struct rl_turn *t) {
    memset(t, 0, sizeof *t);
    if ((t->answer = between(text, len, "<solution>", "</solution>"))) {
        t->kind = RL_TURN_SOLUTION;
        return 0;
    }
    if ((t->code = between(text, len, "<execute>", "</execute>"))) {
        t->kind = RL_TURN_EXECUTE;
        snprintf(t->tool, sizeof t->tool, "%s", strncmp(t->code, "#!BASH\n", 7) == 0 ? "shell" : "python");
        return 0;
    }
    t->kind = RL_TURN_PARSE_ERROR;
    t->error = strdup("expected <execute>...</execute> or <solution>...</solution>");
    return t->error ? 0 : -1;
}

/* stdout and stderr go in by their lengths: NUL bytes are output too */
static char *te_observation(void *ctx, const struct rl_tool_result *r, size_t *len) {
    char status[160] = "";
    if (r->status == RL_TOOL_TIMEOUT) snprintf(status, sizeof status, "[timed out]");
    else if (r->status != RL_TOOL_OK)
        snprintf(status, sizeof status, "[tool error: %s]", r->error_code ? r->error_code : "unknown");
    else if (r->exit_code) snprintf(status, sizeof status, "[exit %d]", r->exit_code);
    size_t ol = r->out ? r->out_len : 0, el = r->err ? r->err_len : 0;
    char *s = NULL, *tail = NULL;
    if (asprintf(&tail, "%s</observation>\n", status) < 0) return NULL;
    size_t tl = strlen(tail);
    s = malloc(sizeof "\n<observation>" - 1 + ol + el + tl + 1);
    if (s) {
        char *p = mempcpy(s, "\n<observation>", sizeof "\n<observation>" - 1);
        if (ol) p = mempcpy(p, r->out, ol);
        if (el) p = mempcpy(p, r->err, el);
        p = mempcpy(p, tail, tl);
        *p = 0;
        *len = (size_t)(p - s);
    }
    free(tail);
    return s;
}

static char *te_parse_error(void *ctx, const char *why) {
    char *s = NULL;
    if (asprintf(&s, "\n<observation>[format error: %s]</observation>\n", why) < 0) return NULL;
    return s;
}

static int same_trimmed(const char *a, const char *b) {
    while (*a == ' ' || *a == '\n') a++;
    while (*b == ' ' || *b == '\n') b++;
    size_t la = strlen(a), lb = strlen(b);
    while (la && (a[la - 1] == ' ' || a[la - 1] == '\n')) la--;
    while (lb && (b[lb - 1] == ' ' || b[lb - 1] == '\n')) lb--;
    return la == lb && memcmp(a, b, la) == 0;
}

static int te_score(void *ctx, int task, const struct rl_episode *ep, struct rl_score *out) {
    struct text_env *te = ctx;
    memset(out, 0, sizeof *out);
    if (task < 0 || task >= te->ntasks) return -1;
    out->correct = ep->end == RL_END_SOLUTION && ep->answer && same_trimmed(ep->answer, te->tasks[task].answer);
    out->format = ep->end == RL_END_SOLUTION && ep->parse_failures == 0;
    out->reward = out->correct + out->format;
    return 0;
}

void text_env_init(struct text_env *te, struct rl_env_ops *ops) {
    memset(ops, 0, sizeof *ops);
    ops->ctx = te;
    ops->prompt = te_prompt;
    ops->parse_turn = te_parse;
    ops->observation = te_observation;
    ops->parse_error = te_parse_error;
    ops->score = te_score;
}
