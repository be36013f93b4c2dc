/* serve_request.c - see serve_request.h. */
#include "serve_request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../sandbox/base/util.h"

void creq_free(struct creq *q) {
    for (int i = 0; i < q->n_owned; i++) free(q->owned[i]);
    free(q->owned);
    free(q->msgs);
}

/* A message's content: a string, null, or a list of {"type": "text", "text"} parts. */
static const char *content_of(const cJSON *c, struct creq *q, char *why, size_t whylen) {
    if (!c || cJSON_IsNull(c)) return "";
    if (cJSON_IsString(c)) return c->valuestring;
    if (!cJSON_IsArray(c)) return snprintf(why, whylen, "content must be a string or a list of text parts"), NULL;
    size_t len = 0;
    char *s = xstrdup("");
    for (const cJSON *p = c->child; p; p = p->next) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "type"), *x = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text") || !cJSON_IsString(x)) {
            free(s);
            return snprintf(why, whylen, "only text content parts are supported"), NULL;
        }
        size_t k = strlen(x->valuestring);
        s = xrealloc(s, len + k + 1);
        memcpy(s + len, x->valuestring, k + 1);
        len += k;
    }
    q->owned = xrealloc(q->owned, (size_t)(q->n_owned + 1) * sizeof *q->owned);
    q->owned[q->n_owned++] = s;
    return s;
}

/* Parse and check the body. 0, or -1 with the offending param and message. */
int parse_creq(const cJSON *j, long max_tokens_cap, struct creq *q, const char **param, char *why, size_t whylen) {
    memset(q, 0, sizeof *q);
    q->max_tokens = -1, q->temperature = 1.0, q->top_p = 1.0, q->enable_thinking = 1;
    if (!cJSON_IsObject(j)) return *param = NULL, snprintf(why, whylen, "the body must be a JSON object"), -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "model");
    if (v && !cJSON_IsString(v)) return *param = "model", snprintf(why, whylen, "model must be a string"), -1;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
    *param = "messages";
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
        return snprintf(why, whylen, "messages must be a non-empty list"), -1;
    int n = cJSON_GetArraySize(msgs);
    q->msgs = xcalloc((size_t)n, sizeof *q->msgs);
    for (const cJSON *m = msgs->child; m; m = m->next) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role))
            return snprintf(why, whylen, "messages[%d] needs a string role", q->n), -1;
        const char *r = role->valuestring;
        if (!strcmp(r, "developer")) r = "system";
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool"))
            return snprintf(why, whylen, "messages[%d]: unknown role '%.40s'", q->n, r), -1;
        char cwhy[128];
        const char *content = content_of(cJSON_GetObjectItemCaseSensitive(m, "content"), q, cwhy, sizeof cwhy);
        if (!content) return snprintf(why, whylen, "messages[%d]: %s", q->n, cwhy), -1;
        const cJSON *rc = cJSON_GetObjectItemCaseSensitive(m, "reasoning_content");
        q->msgs[q->n++] = (struct chat_message){.role = r, .content = content,
                                                .reasoning_content = cJSON_IsString(rc) ? rc->valuestring : NULL};
    }
#define NUM(key, lo, hi, dst)                                                                                   \
    if ((v = cJSON_GetObjectItemCaseSensitive(j, key)) && !cJSON_IsNull(v)) {                                   \
        *param = key;                                                                                           \
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= (lo) && v->valuedouble <= (hi)))                          \
            return snprintf(why, whylen, "%s must be a number in [%g, %g]", key, (double)(lo), (double)(hi)), -1; \
        dst = v->valuedouble;                                                                                   \
    }
    double d = -1;
    NUM("max_tokens", 1, 1e9, d)
    NUM("max_completion_tokens", 1, 1e9, d)
    if (d >= 1) {
        if (d != (double)(long)d) return snprintf(why, whylen, "%s must be an integer", *param), -1;
        q->max_tokens = (long)d;
    }
    NUM("temperature", 0, 2, q->temperature)
    NUM("top_p", 0, 1, q->top_p)
    if (q->top_p <= 0) q->top_p = 1e-6; /* OpenAI allows 0: only the most likely token */
    d = 0;
    NUM("seed", -9.2e18, 9.2e18, d)
    q->seed = (uint64_t)(int64_t)d;
    d = 1;
    NUM("n", 1, 1e9, d)
    if (d != 1) return snprintf(why, whylen, "only n = 1 is supported"), -1;
#undef NUM
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "stop")) && !cJSON_IsNull(v)) {
        *param = "stop";
        if (cJSON_IsString(v)) q->stop[q->n_stop++] = v->valuestring;
        else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) <= 4) {
            for (const cJSON *e = v->child; e; e = e->next) {
                if (!cJSON_IsString(e)) return snprintf(why, whylen, "stop must be a string or a list of strings"), -1;
                q->stop[q->n_stop++] = e->valuestring;
            }
        } else return snprintf(why, whylen, "stop must be a string or a list of up to 4 strings"), -1;
        for (int i = 0; i < q->n_stop; i++)
            if (!q->stop[i][0]) return snprintf(why, whylen, "stop strings must not be empty"), -1;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "stream")) && !cJSON_IsNull(v)) {
        *param = "stream";
        if (!cJSON_IsBool(v)) return snprintf(why, whylen, "stream must be a boolean"), -1;
        q->stream = cJSON_IsTrue(v);
    }
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(j, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        *param = "stream_options";
        if (!cJSON_IsObject(so)) return snprintf(why, whylen, "stream_options must be an object"), -1;
        q->include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    }
    const cJSON *kw = cJSON_GetObjectItemCaseSensitive(j, "chat_template_kwargs");
    const cJSON *et = cJSON_GetObjectItemCaseSensitive(kw, "enable_thinking");
    if (et) {
        *param = "chat_template_kwargs";
        if (!cJSON_IsBool(et)) return snprintf(why, whylen, "enable_thinking must be a boolean"), -1;
        q->enable_thinking = cJSON_IsTrue(et);
    }
    /* tools need a tool-call parser and the template's tool section, which we do not have */
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(j, "tools");
    if (cJSON_IsArray(tools) && cJSON_GetArraySize(tools) > 0)
        return *param = "tools", snprintf(why, whylen, "tools are not supported by this server"), -1;
    if (q->max_tokens < 0 || q->max_tokens > max_tokens_cap) q->max_tokens = max_tokens_cap;
    return 0;
}

