/*
 * turn.c - the turn machine (see turn.h).
 */
#define _GNU_SOURCE
#include "turn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"
#include "episode.h"

static const char EOS_TEXT[] = "<|im_end|>";

/* ---- the chat layout ---- */

char *turn_prompt_text(const char *task_prompt) {
    return xasprintf("<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n",
                     episode_system_prompt, task_prompt);
}

char *turn_glue_bytes(const char *content, size_t n, size_t *len) {
    static const char open[] = "<|im_end|>\n<|im_start|>user\n", close[] = "<|im_end|>\n<|im_start|>assistant\n";
    char *s = xmalloc(sizeof open - 1 + n + sizeof close), *p = s;
    if (content) p = mempcpy(p, open, sizeof open - 1), p = mempcpy(p, content, n); /* else no user turn */
    p = mempcpy(p, close, sizeof close - 1);
    *p = 0;
    *len = (size_t)(p - s);
    return s;
}

char *turn_glue_text(const char *content) {
    size_t len;
    return turn_glue_bytes(content, content ? strlen(content) : 0, &len);
}

size_t turn_strip_eos(const char *text, size_t len) {
    size_t k = sizeof EOS_TEXT - 1;
    if (len >= k && memcmp(text + len - k, EOS_TEXT, k) == 0) return len - k;
    return len;
}

/* ---- one message ---- */

size_t turn_message_len(const char *text, size_t len) { return turn_strip_eos(text, proto_stop_len(text, len)); }

char *turn_code_to_run(const struct task *t, const char *policy, const char *code) {
    if (t && policy && !strcmp(policy, "python")) return proto_with_task_inputs(t->meta, code);
    return xstrdup(code);
}

void turn_decide(const struct task *t, const char *text, size_t len, int parse_failures, struct turn_decision *d) {
    memset(d, 0, sizeof *d);
    struct proto_msg m;
    proto_parse(text, len, &m);
    switch (m.action) {
    case PROTO_SOLUTION:
        d->next = TURN_ANSWER;
        d->answer = xstrdup(m.solution ? m.solution : "");
        break;
    case PROTO_EXECUTE:
        d->next = TURN_RUN;
        d->code = proto_select_tool(m.code ? m.code : "", &d->tool);
        d->policy = proto_tool_name(d->tool);
        if (t) {
            char *c = turn_code_to_run(t, d->policy, d->code);
            free(d->code);
            d->code = c;
        }
        break;
    case PROTO_THINK_ONLY: /* upstream simply asks the model again: not a failure */
        d->next = TURN_CONTINUE;
        break;
    case PROTO_PARSE_ERROR:
        if (parse_failures + 1 >= PROTO_MAX_PARSE_FAILURES) d->next = TURN_GIVE_UP, d->user_text = proto_terminated_text;
        else d->next = TURN_CORRECT, d->user_text = proto_correction_text;
        break;
    }
    proto_msg_free(&m);
}

void turn_decision_free(struct turn_decision *d) {
    free(d->code), free(d->answer);
    memset(d, 0, sizeof *d);
}

/* ---- one tool call ---- */

static const char no_r[] = "Error: R is not available here. Write Python (the default), or start the code with "
                           "#!BASH for a shell script or #!SQL for a database query.";

/* vivd refuses a policy it does not have as a bad request naming the tool */
static bool policy_missing(const struct turn_tool_out *o) {
    return !o->answered && o->error_code && !strcmp(o->error_code, "bad_request") && o->error_message &&
           !strncmp(o->error_message, "unknown tool", 12);
}

char *turn_result_text(const struct turn_tool_out *o, const char *policy, size_t *len) {
    if (!o->answered) {
        char *t = policy && !strcmp(policy, "r") && policy_missing(o)
                      ? xstrdup(no_r)
                      : xasprintf("Error from the sandbox: %s: %s", o->error_code ? o->error_code : "error",
                                  o->error_message ? o->error_message : "(no message)");
        *len = strlen(t);
        return t;
    }
    const char *out = o->out ? o->out : "", *err = o->err ? o->err : "";
    size_t ol = o->out ? o->out_len : 0, el = o->err ? o->err_len : 0;
    /* notes, one a line, in this order */
    char notes[512] = "";
    size_t nl = 0;
#define NOTE(...) nl += (size_t)snprintf(notes + nl, sizeof notes - nl, "%s", nl ? "\n" : ""), \
                  nl += (size_t)snprintf(notes + nl, sizeof notes - nl, __VA_ARGS__)
    if (o->timed_out) NOTE("[timed out after %.0f ms]", o->wall_ms);
    if (o->session_lost) NOTE("[the Python session was lost; its variables are gone]");
    if (o->signal > 0 && !o->timed_out) NOTE("[killed by signal %d]", o->signal);
    if (o->exit_code != 0 && el == 0) NOTE("[exit code %d]", o->exit_code);
    if (o->dropped > 0) NOTE("[%.0f bytes of output dropped]", o->dropped);
#undef NOTE
    const char *sep1 = ol && el && out[ol - 1] != '\n' ? "\n" : "";
    const char *sep2 = nl && (ol || el) && (el ? err[el - 1] : out[ol - 1]) != '\n' ? "\n" : "";
    size_t l1 = strlen(sep1), l2 = strlen(sep2);
    char *t = xmalloc(ol + l1 + el + l2 + nl + 1), *p = t;
    p = mempcpy(p, out, ol), p = mempcpy(p, sep1, l1), p = mempcpy(p, err, el);
    p = mempcpy(p, sep2, l2), p = mempcpy(p, notes, nl);
    *p = 0;
    *len = (size_t)(p - t);
    return t;
}

char *turn_observation(const struct turn_tool_out *o, const char *policy, size_t *len) {
    size_t bl;
    char *body = turn_result_text(o, policy, &bl);
    char *obs = proto_render_observation(body, bl, len);
    free(body);
    return obs;
}

/* ---- the score ---- */

double turn_grade(const struct task *t, const char *answer, enum grade_mode mode) {
    const cJSON *scores = t->meta ? cJSON_GetObjectItemCaseSensitive(t->meta, "option_scores") : NULL;
    double g = grade(t->grader, answer, t->answer, mode, scores, NULL, 0);
    return g > 0 ? g : 0;
}

int turn_format(const char *const *msgs, const size_t *lens, int n, bool solved) {
    return solved && n > 0 ? proto_format_reward(msgs, lens, n, NULL, 0) : 0;
}
