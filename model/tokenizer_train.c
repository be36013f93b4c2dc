/*
 * tokenizer_train.c - train a byte-level BPE with Qwen's pre-tokenizer.
 *
 * 1. Count the distinct pre-tokenizer pieces ("words") of the corpus: split
 *    off the special tokens, NFC, then the same scanner encoding uses.
 * 2. Every word starts as its bytes; the vocabulary starts as the 256 byte
 *    tokens (ids in the order of their ByteLevel characters, as GPT-2's).
 * 3. Repeatedly merge the most frequent adjacent pair (every adjacent
 *    position counts, weighted by word counts; ties go to the smaller pair
 *    of ids) into a new token; a merge whose bytes already are a token
 *    reuses that id. Occurrences in a word are merged left to right.
 *
 * Step 3 is incremental, so a merge costs time in proportion to the words it
 * touches, not to the corpus: each pair keeps its count and the list of
 * words it occurs in; a merge rewrites only those words and adjusts the
 * counts of the pairs around each rewritten occurrence. The best pair comes
 * from a max-heap with lazy deletion: an entry whose count is out of date is
 * re-queued with the current count when it surfaces.
 */
#include "../sandbox/base/util.h"
#include "tokenizer_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

static const struct {
    const char *text;
    int special;
} chat_specials[] = {
    {"<|endoftext|>", 1}, {"<|im_start|>", 1}, {"<|im_end|>", 1},
    {"<think>", 0},       {"</think>", 0},      {"<tool_call>", 0},
    {"</tool_call>", 0},  {"<tool_response>", 0}, {"</tool_response>", 0},
};
#define N_SPECIALS ((int)(sizeof chat_specials / sizeof chat_specials[0]))

/* --- step 1: distinct words and their counts ----------------------------------- */

struct word {
    int32_t *sym;
    int n;
    int64_t count;
};

struct words {
    struct word *w;
    size_t n, cap;
    unsigned char *bytes; /* word texts, back to back (only while counting) */
    size_t bytes_used, bytes_cap;
    size_t *off;
    uint32_t *slots; /* hash: index + 1, 0 empty */
    size_t slot_cap;
};

static int words_grow_slots(struct words *ws) {
    size_t cap = ws->slot_cap ? ws->slot_cap * 2 : 1 << 16;
    uint32_t *s = calloc(cap, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < ws->n; i++) {
        uint64_t h = tok_hash(ws->bytes + ws->off[i], (size_t)ws->w[i].n);
        size_t j = h & (cap - 1);
        while (s[j]) j = (j + 1) & (cap - 1);
        s[j] = (uint32_t)i + 1;
    }
    free(ws->slots);
    ws->slots = s;
    ws->slot_cap = cap;
    return 0;
}

static int words_add(struct words *ws, const unsigned char *s, size_t n) {
    if (n > 1 << 20) n = 1 << 20; /* a piece this long is not worth learning from */
    if ((ws->n + 1) * 2 > ws->slot_cap && words_grow_slots(ws)) return -1;
    uint64_t h = tok_hash(s, n);
    size_t j = h & (ws->slot_cap - 1);
    for (; ws->slots[j]; j = (j + 1) & (ws->slot_cap - 1)) {
        struct word *w = &ws->w[ws->slots[j] - 1];
        if ((size_t)w->n == n && memcmp(ws->bytes + ws->off[ws->slots[j] - 1], s, n) == 0) {
            w->count++;
            return 0;
        }
    }
    if (ws->n == ws->cap) {
        size_t cap = ws->cap ? ws->cap * 2 : 4096;
        struct word *nw = realloc(ws->w, cap * sizeof *nw);
        size_t *no = nw ? realloc(ws->off, cap * sizeof *no) : NULL;
        if (nw) ws->w = nw;
        if (!no) return -1;
        ws->off = no;
        ws->cap = cap;
    }
    if (ws->bytes_used + n > ws->bytes_cap) {
        size_t cap = ws->bytes_cap ? ws->bytes_cap * 2 : 1 << 20;
        while (cap < ws->bytes_used + n) cap *= 2;
        unsigned char *nb = realloc(ws->bytes, cap);
        if (!nb) return -1;
        ws->bytes = nb;
        ws->bytes_cap = cap;
    }
    memcpy(ws->bytes + ws->bytes_used, s, n);
    ws->off[ws->n] = ws->bytes_used;
    ws->bytes_used += n;
    ws->w[ws->n] = (struct word){NULL, (int)n, 1};
    ws->slots[j] = (uint32_t)ws->n + 1;
    ws->n++;
    return 0;
}

static int count_segment(struct words *ws, const unsigned char *s, size_t n) {
    unsigned char *norm = NULL;
    size_t nl;
    if (uni_nfc(s, n, &norm, &nl)) return -1;
    if (norm) s = norm, n = nl;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t e = tok_scan_next(s, n, i);
        rc = words_add(ws, s + i, e - i);
        i = e;
    }
    free(norm);
    return rc;
}

/* Text minus the special tokens, which are never learnt from. */
static int count_text(struct words *ws, const unsigned char *s, size_t n) {
    size_t start = 0;
    for (size_t i = 0; i < n;) {
        int hit = 0;
        if (s[i] == '<')
            for (int k = 0; k < N_SPECIALS && !hit; k++) {
                size_t l = strlen(chat_specials[k].text);
                if (l <= n - i && memcmp(s + i, chat_specials[k].text, l) == 0) {
                    if (i > start && count_segment(ws, s + start, i - start)) return -1;
                    i += l;
                    start = i;
                    hit = 1;
                }
            }
        if (!hit) i++;
    }
    return start < n ? count_segment(ws, s + start, n - start) : 0;
}

/* --- step 3: pairs ----------------------------------------------------------------- */

struct pair {
    uint64_t key; /* left << 32 | right */
    int64_t count;
    int32_t *where; /* word indices, may repeat or be stale */
    int n_where, cap_where;
};

struct pairs {
    struct pair *p;
    size_t n, cap;
    uint32_t *slots; /* index + 1 */
    size_t slot_cap;
};

static inline uint64_t pkey(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static inline size_t phash(uint64_t k, size_t cap) {
    k ^= k >> 31;
    k *= 0x9E3779B97F4A7C15ULL;
    return (size_t)(k >> 17) & (cap - 1);
}

static int pairs_grow(struct pairs *ps) {
    size_t cap = ps->slot_cap ? ps->slot_cap * 2 : 1 << 16;
    uint32_t *s = calloc(cap, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < ps->n; i++) {
        size_t j = phash(ps->p[i].key, cap);
        while (s[j]) j = (j + 1) & (cap - 1);
        s[j] = (uint32_t)i + 1;
    }
    free(ps->slots);
    ps->slots = s;
    ps->slot_cap = cap;
    return 0;
}

/* The pair (a, b), created with count 0 if new; NULL when out of memory. */
static struct pair *pair_get(struct pairs *ps, int32_t a, int32_t b) {
    if ((ps->n + 1) * 2 > ps->slot_cap && pairs_grow(ps)) return NULL;
    uint64_t k = pkey(a, b);
    size_t j = phash(k, ps->slot_cap);
    for (; ps->slots[j]; j = (j + 1) & (ps->slot_cap - 1))
        if (ps->p[ps->slots[j] - 1].key == k) return &ps->p[ps->slots[j] - 1];
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 1 << 14;
        struct pair *np = realloc(ps->p, cap * sizeof *np);
        if (!np) return NULL;
        ps->p = np;
        ps->cap = cap;
    }
    ps->p[ps->n] = (struct pair){k, 0, NULL, 0, 0};
    ps->slots[j] = (uint32_t)ps->n + 1;
    return &ps->p[ps->n++];
}

static int pair_note_word(struct pair *p, int32_t w) {
    if (p->n_where && p->where[p->n_where - 1] == w) return 0;
    if (p->n_where == p->cap_where) {
        int cap = p->cap_where ? p->cap_where * 2 : 4;
        int32_t *nw = realloc(p->where, (size_t)cap * sizeof *nw);
        if (!nw) return -1;
        p->where = nw;
        p->cap_where = cap;
    }
    p->where[p->n_where++] = w;
    return 0;
}

/* Max-heap of (count, pair index); ties: the smaller key first. */
struct hent {
    int64_t count;
    uint64_t key;
    uint32_t idx;
};

static inline int hbefore(const struct hent *a, const struct hent *b) {
    return a->count > b->count || (a->count == b->count && a->key < b->key);
}

struct heap {
    struct hent *h;
    size_t n, cap;
};

static int hpush(struct heap *hp, struct hent e) {
    if (hp->n == hp->cap) {
        size_t cap = hp->cap ? hp->cap * 2 : 1 << 14;
        struct hent *nh = realloc(hp->h, cap * sizeof *nh);
        if (!nh) return -1;
        hp->h = nh;
        hp->cap = cap;
    }
    size_t i = hp->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hbefore(&e, &hp->h[p])) break;
        hp->h[i] = hp->h[p];
        i = p;
    }
    hp->h[i] = e;
    return 0;
}

static struct hent hpop(struct heap *hp) {
    struct hent top = hp->h[0], e = hp->h[--hp->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= hp->n) break;
        if (c + 1 < hp->n && hbefore(&hp->h[c + 1], &hp->h[c])) c++;
        if (!hbefore(&hp->h[c], &e)) break;
        hp->h[i] = hp->h[c];
        i = c;
    }
    hp->h[i] = e;
    return top;
}

/* count += delta for pair (a, b) of word w; queue it when it grew. */
static int pair_add(struct pairs *ps, struct heap *hp, int32_t a, int32_t b, int64_t delta, int32_t w) {
    struct pair *p = pair_get(ps, a, b);
    if (!p) return -1;
    p->count += delta;
    if (delta > 0) {
        if (pair_note_word(p, w)) return -1;
        if (hpush(hp, (struct hent){p->count, p->key, (uint32_t)(p - ps->p)})) return -1;
    }
    return 0;
}

/* --- the vocabulary being built ---------------------------------------------------- */

struct vocab {
    unsigned char **tok;
    uint32_t *len;
    int n, cap;
    uint32_t *slots; /* id + 1 */
    size_t slot_cap;
};

static int vocab_find(const struct vocab *v, const unsigned char *s, size_t n) {
    size_t j = tok_hash(s, n) & (v->slot_cap - 1);
    for (; v->slots[j]; j = (j + 1) & (v->slot_cap - 1)) {
        int id = (int)v->slots[j] - 1;
        if (v->len[id] == n && memcmp(v->tok[id], s, n) == 0) return id;
    }
    return -1;
}

static int vocab_add(struct vocab *v, unsigned char *s, size_t n) {
    if (v->n == v->cap) return -1;
    size_t j = tok_hash(s, n) & (v->slot_cap - 1);
    while (v->slots[j]) j = (j + 1) & (v->slot_cap - 1);
    v->slots[j] = (uint32_t)v->n + 1;
    v->tok[v->n] = s;
    v->len[v->n] = (uint32_t)n;
    return v->n++;
}

/* --- training ---------------------------------------------------------------------- */

struct tokenizer *tokenizer_train(const char *const *texts, const size_t *lens, size_t n_texts, int vocab_size,
                                  void (*progress)(int done, int total), char *err, size_t errlen) {
    struct words ws = {0};
    struct pairs ps = {0};
    struct heap hp = {0};
    struct vocab v = {0};
    int32_t (*merges)[2] = NULL;
    struct tokenizer *t = NULL;
    int n_merges = 0;
    int want = vocab_size - 256 - N_SPECIALS;

    if (want < 0) {
        fail_with(err, errlen, "vocab size %d is below the minimum %d (256 bytes + %d special tokens)", vocab_size,
             256 + N_SPECIALS, N_SPECIALS);
        return NULL;
    }
    for (size_t i = 0; i < n_texts; i++)
        if (count_text(&ws, (const unsigned char *)texts[i], lens[i])) goto oom;

    v.cap = 256 + want;
    v.tok = calloc((size_t)v.cap, sizeof *v.tok);
    v.len = calloc((size_t)v.cap, sizeof *v.len);
    v.slot_cap = 16;
    while (v.slot_cap < (size_t)v.cap * 2) v.slot_cap *= 2;
    v.slots = calloc(v.slot_cap, sizeof *v.slots);
    merges = malloc(((size_t)want + 1) * sizeof *merges);
    if (!v.tok || !v.len || !v.slots || !merges) goto oom;
    /* byte tokens, ordered by their ByteLevel character */
    uint32_t map[256];
    int32_t byte_id[256];
    tok_byte_to_unicode(map);
    for (uint32_t c = 0; c < 324; c++)
        for (int b = 0; b < 256; b++)
            if (map[b] == c) {
                unsigned char *s = malloc(1);
                if (!s) goto oom;
                s[0] = (unsigned char)b;
                byte_id[b] = vocab_add(&v, s, 1);
            }

    for (size_t i = 0; i < ws.n; i++) {
        struct word *w = &ws.w[i];
        w->sym = malloc((size_t)w->n * sizeof *w->sym);
        if (!w->sym) goto oom;
        for (int k = 0; k < w->n; k++) w->sym[k] = byte_id[ws.bytes[ws.off[i] + (size_t)k]];
        for (int k = 0; k + 1 < w->n; k++)
            if (pair_add(&ps, &hp, w->sym[k], w->sym[k + 1], w->count, (int32_t)i)) goto oom;
    }
    free(ws.bytes);
    ws.bytes = NULL;

    while (v.n < 256 + want && hp.n) {
        struct hent e = hpop(&hp);
        struct pair *p = &ps.p[e.idx];
        if (p->count != e.count) { /* out of date: requeue with the current count */
            if (p->count > 0 && hpush(&hp, (struct hent){p->count, p->key, e.idx})) goto oom;
            continue;
        }
        if (p->count <= 0) break;
        int32_t a = (int32_t)(p->key >> 32), b = (int32_t)(uint32_t)p->key;
        size_t n = (size_t)v.len[a] + v.len[b];
        unsigned char *s = malloc(n);
        if (!s) goto oom;
        memcpy(s, v.tok[a], v.len[a]);
        memcpy(s + v.len[a], v.tok[b], v.len[b]);
        int32_t m = vocab_find(&v, s, n);
        if (m >= 0) free(s);
        else if ((m = vocab_add(&v, s, n)) < 0) { free(s); goto oom; }
        merges[n_merges][0] = a;
        merges[n_merges][1] = b;
        n_merges++;

        /* rewrite the words that hold (a, b); p may move as pairs are added */
        int n_where = p->n_where;
        int32_t *where = p->where;
        p->where = NULL;
        p->n_where = p->cap_where = 0;
        for (int wi = 0; wi < n_where; wi++) {
            struct word *w = &ws.w[where[wi]];
            int32_t *sy = w->sym;
            int k = 0, o = 0;
            while (k < w->n) {
                if (k + 1 < w->n && sy[k] == a && sy[k + 1] == b) {
                    /* the pairs around this occurrence change */
                    if (o > 0 && (pair_add(&ps, &hp, sy[o - 1], a, -w->count, where[wi]) ||
                                  pair_add(&ps, &hp, sy[o - 1], m, w->count, where[wi])))
                        goto oom_where;
                    if (k + 2 < w->n && (pair_add(&ps, &hp, b, sy[k + 2], -w->count, where[wi]) ||
                                         pair_add(&ps, &hp, m, sy[k + 2], w->count, where[wi])))
                        goto oom_where;
                    if (pair_add(&ps, &hp, a, b, -w->count, where[wi])) goto oom_where;
                    sy[o++] = m;
                    k += 2;
                } else {
                    sy[o++] = sy[k++];
                }
            }
            w->n = o;
        }
        free(where);
        if (progress && (n_merges % 200 == 0 || v.n == 256 + want)) progress(n_merges, want);
        continue;
    oom_where:
        free(where);
        goto oom;
    }

    struct tok_added added[N_SPECIALS];
    for (int i = 0; i < N_SPECIALS; i++)
        added[i] = (struct tok_added){.id = v.n + i, .content = (char *)chat_specials[i].text,
                                      .len = strlen(chat_specials[i].text), .special = chat_specials[i].special};
    t = tok_build(v.n, (const unsigned char *const *)v.tok, v.len, n_merges, (const int32_t(*)[2])merges, added,
                  N_SPECIALS, 1, err, errlen);
    goto done;
oom:
    fail_with(err, errlen, "out of memory while training");
done:
    for (size_t i = 0; i < ws.n; i++) free(ws.w[i].sym);
    free(ws.w);
    free(ws.off);
    free(ws.bytes);
    free(ws.slots);
    for (size_t i = 0; i < ps.n; i++) free(ps.p[i].where);
    free(ps.p);
    free(ps.slots);
    free(hp.h);
    for (int i = 0; i < v.n; i++) free(v.tok[i]);
    free(v.tok);
    free(v.len);
    free(v.slots);
    free(merges);
    return t;
}
