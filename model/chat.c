/*
 * chat.c - Qwen3's chat template in C (see chat.h for the format).
 *
 * The template's rules for assistant turns, in words:
 *   - reasoning is message.reasoning_content if given, else the text
 *     between <think> and </think> in the content (the content keeps what
 *     follows the last </think>, without leading newlines);
 *   - "last query" is the last user message that is not a wrapped tool
 *     response (<tool_response>...</tool_response>);
 *   - an assistant turn after the last query shows its reasoning as
 *     <think>\n{reasoning}\n</think>\n\n{content} when it is the last message
 *     or has reasoning; every other assistant turn shows the content only.
 */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

void chat_init(struct chat *c) { memset(c, 0, sizeof *c); }

void chat_free(struct chat *c) {
    free(c->ids);
    free(c->mask);
    memset(c, 0, sizeof *c);
}

static int chat_reserve(struct chat *c, int extra) {
    if (extra < 0 || c->n > INT32_MAX - extra) return -1;
    if (c->n + extra <= c->cap) return 0;
    int cap = c->cap ? c->cap : 256;
    while (cap < c->n + extra) cap = cap > INT32_MAX / 2 ? INT32_MAX : cap * 2;
    int32_t *ni = realloc(c->ids, (size_t)cap * sizeof *ni);
    if (!ni) return -1;
    c->ids = ni;
    uint8_t *nm = realloc(c->mask, (size_t)cap);
    if (!nm) return -1;
    c->mask = nm;
    c->cap = cap;
    return 0;
}

static int append_ids(struct chat *c, const int32_t *ids, int n, uint8_t mask) {
    if (chat_reserve(c, n)) return -1;
    memcpy(c->ids + c->n, ids, (size_t)n * sizeof *ids);
    memset(c->mask + c->n, mask, (size_t)n);
    c->n += n;
    return 0;
}

int chat_append_text(struct chat *c, const struct tokenizer *t, const char *text, size_t len) {
    int32_t *ids;
    int n = tokenizer_encode(t, text, len, &ids);
    if (n < 0) return -1;
    int rc = append_ids(c, ids, n, 0);
    free(ids);
    return rc;
}

int chat_append_generated(struct chat *c, const int32_t *ids, int n) { return append_ids(c, ids, n, 1); }

int chat_append_generation_prompt(struct chat *c, const struct tokenizer *t, int enable_thinking) {
    const char *s = enable_thinking ? "<|im_start|>assistant\n" : "<|im_start|>assistant\n<think>\n\n</think>\n\n";
    return chat_append_text(c, t, s, strlen(s));
}

int chat_end_generated(struct chat *c, const struct tokenizer *t) {
    int32_t end = tokenizer_token_id(t, "<|im_end|>");
    if (end < 0) return -1;
    if (!(c->n > 0 && c->ids[c->n - 1] == end && c->mask[c->n - 1]) && append_ids(c, &end, 1, 0)) return -1;
    return chat_append_text(c, t, "\n", 1);
}

/* --- rendering ---------------------------------------------------------------- */

struct buf {
    char *s;
    size_t n, cap;
    int oom;
};

static void put(struct buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1) cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) { b->oom = 1; return; }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

/* Python's s.strip/lstrip/rstrip('\n') on s[*lo..*hi). */
static void lstrip_nl(const char *s, size_t *lo, size_t hi) { while (*lo < hi && s[*lo] == '\n') (*lo)++; }
static void rstrip_nl(const char *s, size_t lo, size_t *hi) { while (*hi > lo && s[*hi - 1] == '\n') (*hi)--; }

/* Last / first occurrence of needle in s[lo..hi), or (size_t)-1. */
static size_t find_last(const char *s, size_t lo, size_t hi, const char *needle) {
    size_t m = strlen(needle);
    for (size_t i = hi >= m ? hi - m + 1 : 0; i-- > lo;)
        if (i + m <= hi && memcmp(s + i, needle, m) == 0) return i;
    return (size_t)-1;
}

static size_t find_first(const char *s, size_t lo, size_t hi, const char *needle) {
    size_t m = strlen(needle);
    for (size_t i = lo; i + m <= hi; i++)
        if (memcmp(s + i, needle, m) == 0) return i;
    return (size_t)-1;
}

static int starts_ends(const char *s, const char *pre, const char *suf) {
    size_t n = strlen(s), p = strlen(pre), q = strlen(suf);
    return n >= p && n >= q && memcmp(s, pre, p) == 0 && memcmp(s + n - q, suf, q) == 0;
}

static void render_assistant(struct buf *b, const struct chat_message *m, int after_last_query, int is_last) {
    const char *c = m->content ? m->content : "";
    size_t clo = 0, chi = strlen(c); /* content = c[clo..chi) */
    const char *r = "";
    size_t rlo = 0, rhi = 0;         /* reasoning = r[rlo..rhi) */
    if (m->reasoning_content) {
        r = m->reasoning_content;
        rhi = strlen(r);
    } else {
        size_t end = find_first(c, 0, chi, "</think>");
        if (end != (size_t)-1) {
            /* reasoning: before the first </think>, rstrip \n, after the last <think>, lstrip \n */
            r = c;
            rhi = end;
            rstrip_nl(r, 0, &rhi);
            size_t open = find_last(r, 0, rhi, "<think>");
            rlo = open == (size_t)-1 ? 0 : open + strlen("<think>");
            lstrip_nl(r, &rlo, rhi);
            /* content: after the last </think>, lstrip \n */
            clo = find_last(c, 0, chi, "</think>") + strlen("</think>");
            lstrip_nl(c, &clo, chi);
        }
    }
    puts_(b, "<|im_start|>assistant\n");
    if (after_last_query && (is_last || rhi > rlo)) {
        size_t slo = rlo, shi = rhi;
        lstrip_nl(r, &slo, shi);
        rstrip_nl(r, slo, &shi);
        puts_(b, "<think>\n");
        put(b, r + slo, shi - slo);
        puts_(b, "\n</think>\n\n");
        lstrip_nl(c, &clo, chi);
    }
    put(b, c + clo, chi - clo);
    puts_(b, "<|im_end|>\n");
}

int chat_render(const struct chat_message *msgs, int n, int add_generation_prompt, int enable_thinking, char **out,
                size_t *out_len) {
    struct buf b = {0};
    *out = NULL;
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || (!msgs[i].content && strcmp(msgs[i].role, "assistant") != 0)) return -1;
    if (n > 0 && strcmp(msgs[0].role, "system") == 0) {
        puts_(&b, "<|im_start|>system\n");
        puts_(&b, msgs[0].content);
        puts_(&b, "<|im_end|>\n");
    }
    int last_query = n - 1;
    for (int i = n - 1; i >= 0; i--)
        if (strcmp(msgs[i].role, "user") == 0 && !starts_ends(msgs[i].content, "<tool_response>", "</tool_response>")) {
            last_query = i;
            break;
        }
    for (int i = 0; i < n; i++) {
        const struct chat_message *m = &msgs[i];
        if (strcmp(m->role, "user") == 0 || (strcmp(m->role, "system") == 0 && i > 0)) {
            puts_(&b, "<|im_start|>");
            puts_(&b, m->role);
            puts_(&b, "\n");
            puts_(&b, m->content);
            puts_(&b, "<|im_end|>\n");
        } else if (strcmp(m->role, "assistant") == 0) {
            render_assistant(&b, m, i > last_query, i == n - 1);
        } else if (strcmp(m->role, "tool") == 0) {
            if (i == 0 || strcmp(msgs[i - 1].role, "tool") != 0) puts_(&b, "<|im_start|>user");
            puts_(&b, "\n<tool_response>\n");
            puts_(&b, m->content);
            puts_(&b, "\n</tool_response>");
            if (i == n - 1 || strcmp(msgs[i + 1].role, "tool") != 0) puts_(&b, "<|im_end|>\n");
        } else if (strcmp(m->role, "system") != 0) {
            free(b.s);
            return -1; /* the template renders nothing for other roles; refuse rather than drop */
        }
    }
    if (add_generation_prompt) {
        puts_(&b, "<|im_start|>assistant\n");
        if (!enable_thinking) puts_(&b, "<think>\n\n</think>\n\n");
    }
    if (!b.s) puts_(&b, "");
    if (b.oom) { free(b.s); return -1; }
    *out = b.s;
    *out_len = b.n;
    return 0;
}

int chat_append_messages(struct chat *c, const struct tokenizer *t, const struct chat_message *msgs, int n,
                         int add_generation_prompt, int enable_thinking) {
    char *text;
    size_t len;
    if (chat_render(msgs, n, add_generation_prompt, enable_thinking, &text, &len)) return -1;
    int rc = chat_append_text(c, t, text, len);
    free(text);
    return rc;
}
