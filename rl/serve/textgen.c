/* textgen.c - see textgen.h. */
#include "textgen.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../model/sample.h"
#include "../../sandbox/base/util.h"

static void add_stop_id(struct textgen *g, long id) {
    if (id < 0 || id >= g->m->cfg.vocab_size || g->n_stop_ids == TEXTGEN_MAX_STOP_IDS) return;
    for (int i = 0; i < g->n_stop_ids; i++)
        if (g->stop_ids[i] == id) return;
    g->stop_ids[g->n_stop_ids++] = (int32_t)id;
}

void textgen_init(struct textgen *g, const struct qwen3 *m, const struct tokenizer *tok, const char *model_dir) {
    memset(g, 0, sizeof *g);
    g->m = m, g->tok = tok;
    /* generation_config.json's eos_token_id (an id or a list), as viv gen reads it */
    char why[256], *path = xasprintf("%s/generation_config.json", model_dir);
    char *text = model_dir ? read_file(path, 1 << 20, NULL, why, sizeof why) : NULL;
    free(path);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    /* ids in [0, INT_MAX) only: converting a larger double (or NaN) to long is undefined */
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 2147483647.0)
        add_stop_id(g, (long)v->valuedouble);
    else if (cJSON_IsArray(v))
        for (const cJSON *e = v->child; e; e = e->next)
            if (cJSON_IsNumber(e) && e->valuedouble >= 0 && e->valuedouble < 2147483647.0)
                add_stop_id(g, (long)e->valuedouble);
    cJSON_Delete(root);
    add_stop_id(g, m->cfg.eos_token_id);
    add_stop_id(g, tokenizer_token_id(tok, "<|im_end|>"));
    add_stop_id(g, tokenizer_token_id(tok, "<|endoftext|>"));
}

void textgen_result_free(struct textgen_result *r) {
    free(r->text);
    memset(r, 0, sizeof *r);
}

/* Bytes a lead byte announces (0: not a lead byte). */
static int utf8_need(unsigned char c) {
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

size_t utf8_complete_prefix(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    /* the last lead byte among the final three, followed only by continuations */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = s[n - back];
        if (c >= 0x80 && c <= 0xBF) continue;
        int need = utf8_need(c);
        return need > (int)back ? n - back : n; /* incomplete: hold it back */
    }
    return n;
}

static void emit(struct textgen_stream *c, size_t upto) {
    if (upto <= c->emitted) return;
    if (c->on_delta && c->on_delta(c->buf + c->emitted, upto - c->emitted, c->user)) c->cancelled = 1;
    c->emitted = upto;
}

int textgen_stream_init(struct textgen_stream *c, const struct textgen *g, const struct textgen_params *p,
                        textgen_delta_fn on_delta, void *user, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    if (p->n_stop > TEXTGEN_MAX_STOPS) return fail_with(err, errlen, "at most %d stop strings", TEXTGEN_MAX_STOPS);
    for (int i = 0; i < p->n_stop; i++) {
        size_t sl = strlen(p->stop[i]);
        if (sl == 0) return fail_with(err, errlen, "a stop string is empty");
        if (sl > c->max_stop) c->max_stop = sl;
    }
    c->g = g, c->p = p, c->on_delta = on_delta, c->user = user;
    c->stop_index = -1;
    c->cap = 256;
    c->buf = xmalloc(c->cap);
    c->buf[0] = 0;
    return 0;
}

int textgen_stream_feed(struct textgen_stream *c, int32_t tok) {
    c->completion_tokens++;
    if (c->p->cancel && *c->p->cancel) {
        c->cancelled = 1;
        return 1;
    }
    for (int i = 0; i < c->g->n_stop_ids; i++)
        if (tok == c->g->stop_ids[i]) {
            c->stopped = 1;
            return 1;
        }
    size_t n = 0;
    char *bytes = tokenizer_decode(c->g->tok, &tok, 1, &n);
    if (!bytes) return 0; /* an id without text */
    size_t old = c->len;
    if (c->len + n + 1 > c->cap) {
        c->cap = (c->len + n + 1) * 2;
        c->buf = xrealloc(c->buf, c->cap);
    }
    memcpy(c->buf + c->len, bytes, n);
    c->len += n;
    c->buf[c->len] = 0;
    free(bytes);
    /* a stop string can only end in the new bytes: search from max_stop-1 before them */
    size_t from = old >= c->max_stop ? old - c->max_stop + 1 : 0;
    size_t best = (size_t)-1;
    for (int i = 0; i < c->p->n_stop; i++) {
        size_t sl = strlen(c->p->stop[i]);
        for (size_t k = from; k + sl <= c->len && k < best; k++)
            if (!memcmp(c->buf + k, c->p->stop[i], sl)) {
                best = k, c->stop_index = i;
                break;
            }
    }
    if (best != (size_t)-1) {
        c->len = best;
        c->buf[c->len] = 0;
        c->stopped = 1;
        emit(c, c->len);
        return 1;
    }
    size_t hold = c->max_stop ? c->max_stop - 1 : 0; /* could still begin a stop string */
    size_t safe = c->len > hold ? c->len - hold : 0;
    emit(c, utf8_complete_prefix(c->buf, safe));
    return c->cancelled;
}

void textgen_stream_finish(struct textgen_stream *c, int prompt_tokens, struct textgen_result *out) {
    if (!c->cancelled) emit(c, c->len); /* the held-back tail is final now */
    memset(out, 0, sizeof *out);
    out->text = c->buf;
    out->len = c->len;
    out->finish_reason = c->cancelled ? "cancelled" : c->stopped ? "stop" : "length";
    out->stop_index = c->stop_index;
    out->prompt_tokens = prompt_tokens;
    out->completion_tokens = c->completion_tokens;
    c->buf = NULL;
}

void textgen_stream_free(struct textgen_stream *c) {
    free(c->buf);
    c->buf = NULL;
}

static int on_token(int32_t tok, void *user) { return textgen_stream_feed(user, tok); }

int textgen_check_prompt(const struct textgen *g, const int32_t *prompt, int n_prompt, int ctx, int *max_tokens,
                         char *err, size_t errlen) {
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= g->m->cfg.vocab_size)
            return fail_with(err, errlen, "prompt id %d is outside the vocabulary (%d)", prompt[i], g->m->cfg.vocab_size);
    if (n_prompt <= 0) return fail_with(err, errlen, "the prompt is empty");
    if (ctx > 0) {
        if (n_prompt >= ctx)
            return fail_with(err, errlen, "the prompt has %d tokens; the model's context is %d", n_prompt, ctx);
        if (*max_tokens > ctx - n_prompt) *max_tokens = ctx - n_prompt;
    }
    return 0;
}

int textgen_run(const struct textgen *g, const int32_t *prompt, int n_prompt, const struct textgen_params *p,
                textgen_delta_fn on_delta, void *user, struct textgen_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->stop_index = -1;
    int max_tokens = p->max_tokens;
    if (textgen_check_prompt(g, prompt, n_prompt, g->m->cfg.max_position, &max_tokens, err, errlen) != 0) return -1;
    struct textgen_stream c;
    if (textgen_stream_init(&c, g, p, on_delta, user, err, errlen) != 0) return -1;
    struct gen_opts o = {.max_tokens = max_tokens, .temperature = p->temperature, .top_p = p->top_p,
                         .top_k = 0, .seed = p->seed, .stop_ids = NULL, .n_stop = 0};
    struct gen_stats st;
    if (max_tokens > 0 && qwen3_generate(g->m, prompt, n_prompt, &o, on_token, &c, &st, err, errlen) != 0) {
        textgen_stream_free(&c);
        return -1;
    }
    textgen_stream_finish(&c, n_prompt, out);
    return 0;
}
