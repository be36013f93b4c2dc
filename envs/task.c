/*
 * task.c - the shared pieces of task generation: seeded randomness, the
 * entity split, string building and quoting, the task list and its JSON.
 */
#include "task.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"

const char *const split_names[NSPLITS] = {"train", "val", "test"};

uint64_t fnv1a64(const void *data, size_t len, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* splitmix64's output function: a good bijective mix of 64 bits. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

enum split split_of(const char *kind, const char *entity) {
    uint64_t h = fnv1a64(kind, strlen(kind), FNV_OFFSET);
    h = fnv1a64(":", 1, h);
    h = fnv1a64(entity, strlen(entity), h);
    unsigned pct = (unsigned)(mix64(h) % 100);
    return pct < 80 ? SPLIT_TRAIN : pct < 90 ? SPLIT_VAL : SPLIT_TEST;
}

struct rng rng_seed(uint64_t seed, const char *stream) {
    struct rng r = {mix64(seed ^ fnv1a64(stream, strlen(stream), FNV_OFFSET))};
    return r;
}

uint64_t rng_next(struct rng *r) {
    r->s += 0x9e3779b97f4a7c15ull;
    return mix64(r->s);
}

long rng_below(struct rng *r, long n) {
    /* rejection keeps it exactly uniform */
    uint64_t lim = UINT64_MAX - UINT64_MAX % (uint64_t)n;
    uint64_t x;
    do x = rng_next(r);
    while (x >= lim);
    return (long)(x % (uint64_t)n);
}

void rng_shuffle_int(struct rng *r, int *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(r, i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static void sb_reserve(struct sb *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    b->s = xrealloc(b->s, cap);
    b->cap = cap;
}

void sb_printf(struct sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    sb_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sb_puts(struct sb *b, const char *s) {
    size_t n = strlen(s);
    sb_reserve(b, n);
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

void sb_pystr(struct sb *b, const char *s) {
    sb_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') sb_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) sb_printf(b, "\\u%04x", *p);
        else {
            char c[2] = {(char)*p, 0};
            sb_puts(b, c); /* UTF-8 bytes pass through: both languages read them */
        }
    }
    sb_puts(b, "\"");
}

void sb_sqlstr(struct sb *b, const char *s) {
    sb_puts(b, "'");
    for (const char *p = s; *p; p++) {
        if (*p == '\'') sb_puts(b, "''");
        else {
            char c[2] = {*p, 0};
            sb_puts(b, c);
        }
    }
    sb_puts(b, "'");
}

char *sb_take(struct sb *b) {
    char *s = b->s ? b->s : xstrdup("");
    b->s = NULL;
    b->len = b->cap = 0;
    return s;
}

void tasklist_free(struct tasklist *l) {
    for (size_t i = 0; i < l->n; i++) {
        struct task *t = &l->v[i];
        free(t->prompt);
        free(t->answer);
        free(t->ref_code);
        cJSON_Delete(t->meta);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

bool gen_wants(const struct gen_ctx *g, enum split s) { return g->have[s] < g->want[s]; }

bool gen_done(const struct gen_ctx *g) {
    for (int s = 0; s < NSPLITS; s++)
        if (gen_wants(g, s)) return false;
    return true;
}

/* Entities fall into val and test one time in ten, and some attempts find no
 * valid decoys, so a generator may need many more attempts than tasks. */
long gen_attempt_budget(const struct gen_ctx *g) {
    long total = 0;
    for (int s = 0; s < NSPLITS; s++) total += g->want[s];
    return 2000 + 400 * total;
}

static bool seen_add(struct gen_ctx *g, uint64_t h) {
    for (size_t i = 0; i < g->nseen; i++)
        if (g->seen[i] == h) return false;
    if (g->nseen == g->capseen) {
        g->capseen = g->capseen ? 2 * g->capseen : 256;
        g->seen = xrealloc(g->seen, g->capseen * sizeof *g->seen);
    }
    g->seen[g->nseen++] = h;
    return true;
}

int gen_emit(struct gen_ctx *g, enum split s, const char *grader, char *prompt, char *answer,
             const char *tool, char *code, cJSON *meta) {
    if (!gen_wants(g, s) || !seen_add(g, fnv1a64(prompt, strlen(prompt), FNV_OFFSET))) {
        free(prompt);
        free(answer);
        free(code);
        cJSON_Delete(meta);
        return 1;
    }
    struct tasklist *l = g->out;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = (struct task){.task_name = g->task_name, .split = s, .prompt = prompt,
                                 .answer = answer, .grader = grader, .ref_tool = tool,
                                 .ref_code = code, .meta = meta};
    g->have[s]++;
    return 0;
}

char *task_to_json(const struct task *t, const char *instance_id) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "instance_id", instance_id);
    cJSON_AddStringToObject(o, "task_name", t->task_name);
    cJSON_AddStringToObject(o, "split", split_names[t->split]);
    cJSON_AddStringToObject(o, "prompt", t->prompt);
    cJSON_AddStringToObject(o, "answer", t->answer);
    cJSON_AddStringToObject(o, "grader", t->grader);
    cJSON *ref = cJSON_AddObjectToObject(o, "reference");
    cJSON_AddStringToObject(ref, "tool", t->ref_tool);
    cJSON_AddStringToObject(ref, "code", t->ref_code);
    cJSON_AddItemToObject(o, "meta", t->meta ? cJSON_Duplicate(t->meta, 1) : cJSON_CreateObject());
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

const char *task_solution(const struct task *t) {
    const char *s = t->meta ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t->meta, "solution")) : NULL;
    return s ? s : t->answer;
}
