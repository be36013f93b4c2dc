/*
 * tokenizer.c - load a tokenizer.json, encode, decode, save.
 *
 * What is supported is what Qwen3 (and our trainer) write: model BPE over
 * ByteLevel bytes, normalizer NFC or none, pre_tokenizer Sequence[Split
 * (Qwen's regex, Isolated), ByteLevel(use_regex false)], decoder ByteLevel,
 * added tokens matched whole in the raw text. Anything else is refused at
 * load with a message naming the field, rather than tokenised differently.
 */
#include "../sandbox/base/util.h"
#include "tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unicode.h"

#define QWEN_SPLIT_REGEX                                                                                 \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

#define MAX_TOKEN_ID (1 << 22) /* refuse absurd ids instead of allocating for them */

/* --- ByteLevel: bytes <-> printable characters ------------------------------
 * GPT-2's table: the printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ')
 * stand for themselves; the other 68 bytes, in order, become U+0100.. so
 * that no token contains white space or control characters. */
void tok_byte_to_unicode(uint32_t map[256]) {
    int next = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        map[b] = printable ? (uint32_t)b : (uint32_t)(256 + next++);
    }
}

/* Token string (ByteLevel spelling, UTF-8) -> raw bytes in out (room for n).
 * Returns the byte count, or -1 if a character is not one of the 256. */
static long bytelevel_decode(const unsigned char *s, size_t n, unsigned char *out) {
    static int16_t inv[324];
    static int ready;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        uint32_t map[256];
        tok_byte_to_unicode(map);
        for (int i = 0; i < 324; i++) inv[i] = -1;
        for (int b = 0; b < 256; b++) inv[map[b]] = (int16_t)b;
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int len;
        uint32_t cp = utf8_decode(s + i, n - i, &len);
        if (cp >= 324 || inv[cp] < 0) return -1;
        out[k++] = (unsigned char)inv[cp];
        i += (size_t)len;
    }
    return (long)k;
}

/* Raw bytes -> ByteLevel spelling, NUL-terminated, malloc'd. */
static char *bytelevel_encode(const unsigned char *s, size_t n) {
    static uint32_t map[256];
    static int ready;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        tok_byte_to_unicode(map);
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    char *o = malloc(n * 2 + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += (size_t)utf8_encode(map[s[i]], (unsigned char *)o + k);
    o[k] = 0;
    return o;
}

/* --- hash tables -------------------------------------------------------------- */

int32_t tok_vocab_lookup(const struct tokenizer *t, const unsigned char *s, size_t n) {
    if (!t->vocab_cap) return -1;
    uint32_t mask = t->vocab_cap - 1;
    for (uint32_t i = (uint32_t)tok_hash(s, n) & mask;; i = (i + 1) & mask) {
        int32_t id = t->vocab_slots[i];
        if (id < 0) return -1;
        if (t->tok_len[id] == n && memcmp(t->tok[id], s, n) == 0) return id;
    }
}

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* Rank of merging (a, b) and the merged id in *out, or UINT32_MAX. */
static inline uint32_t merge_find(const struct tokenizer *t, int32_t a, int32_t b, int32_t *out) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t mask = t->merge_cap - 1;
    for (uint32_t i = (uint32_t)mix64(key) & mask;; i = (i + 1) & mask) {
        const struct tok_merge *m = &t->merge_slots[i];
        if (m->key == key) {
            *out = m->out;
            return m->rank;
        }
        if (m->key == UINT64_MAX) return UINT32_MAX;
    }
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* --- building ----------------------------------------------------------------- */

static int cmp_added(const void *pa, const void *pb) {
    const struct tok_added *a = pa, *b = pb;
    unsigned char ca = (unsigned char)a->content[0], cb = (unsigned char)b->content[0];
    if (ca != cb) return ca < cb ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1; /* longest first */
    return memcmp(a->content, b->content, a->len);
}

static int cache_init(struct tok_cache *c) {
    memset(c, 0, sizeof *c);
    c->cap = 1u << 15;
    c->keys_cap = 1u << 20;
    c->ids_cap = 1u << 19;
    c->hash = calloc(c->cap, sizeof *c->hash);
    c->key_off = malloc(c->cap * sizeof *c->key_off);
    c->key_len = malloc(c->cap * sizeof *c->key_len);
    c->ids_off = malloc(c->cap * sizeof *c->ids_off);
    c->ids_n = malloc(c->cap * sizeof *c->ids_n);
    c->keys = malloc(c->keys_cap);
    c->ids = malloc(c->ids_cap * sizeof *c->ids);
    if (!c->hash || !c->key_off || !c->key_len || !c->ids_off || !c->ids_n || !c->keys || !c->ids) return -1;
    pthread_mutex_init(&c->lock, NULL);
    return 0;
}

static void cache_free(struct tok_cache *c) {
    if (c->hash) pthread_mutex_destroy(&c->lock);
    free(c->hash);
    free(c->key_off);
    free(c->key_len);
    free(c->ids_off);
    free(c->ids_n);
    free(c->keys);
    free(c->ids);
}

void tokenizer_free(struct tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->tok);
    free(t->tok_len);
    free(t->in_vocab);
    free(t->tok_arena);
    free(t->vocab_slots);
    free(t->merges);
    free(t->merge_slots);
    free(t->config_json);
    cache_free(&t->cache);
    free(t);
}

struct tokenizer *tok_build(int n_vocab, const unsigned char *const *vocab, const uint32_t *vocab_len, int n_merges,
                            const int32_t (*merges)[2], const struct tok_added *added, int n_added, int nfc,
                            char *err, size_t errlen) {
    struct tokenizer *t = calloc(1, sizeof *t);
    if (!t) { fail_with(err, errlen, "out of memory"); return NULL; }
    t->nfc = nfc;
    int n_ids = n_vocab;
    for (int i = 0; i < n_added; i++)
        if (added[i].id + 1 > n_ids) n_ids = added[i].id + 1;
    t->n_ids = n_ids;
    size_t arena = 0;
    for (int i = 0; i < n_vocab; i++)
        if (vocab[i]) arena += vocab_len[i];
    t->tok = calloc((size_t)n_ids + 1, sizeof *t->tok);
    t->tok_len = calloc((size_t)n_ids + 1, sizeof *t->tok_len);
    t->in_vocab = calloc((size_t)n_ids + 1, 1);
    t->tok_arena = malloc(arena + 1);
    t->vocab_cap = pow2_at_least((uint64_t)n_vocab * 2 + 2);
    t->vocab_slots = malloc(t->vocab_cap * sizeof *t->vocab_slots);
    if (!t->tok || !t->tok_len || !t->in_vocab || !t->tok_arena || !t->vocab_slots || cache_init(&t->cache)) {
        fail_with(err, errlen, "out of memory");
        goto bad;
    }
    memset(t->vocab_slots, 0xff, t->vocab_cap * sizeof *t->vocab_slots);
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    size_t off = 0;
    uint32_t mask = t->vocab_cap - 1;
    for (int id = 0; id < n_vocab; id++) {
        if (!vocab[id]) continue;
        size_t n = vocab_len[id];
        if (n == 0) { fail_with(err, errlen, "model.vocab: id %d is the empty string", id); goto bad; }
        if (tok_vocab_lookup(t, vocab[id], n) >= 0) {
            fail_with(err, errlen, "model.vocab: two ids (%d, %d) for the same token", tok_vocab_lookup(t, vocab[id], n), id);
            goto bad;
        }
        memcpy(t->tok_arena + off, vocab[id], n);
        t->tok[id] = t->tok_arena + off;
        t->tok_len[id] = (uint32_t)n;
        t->in_vocab[id] = 1;
        off += n;
        uint32_t i = (uint32_t)tok_hash(vocab[id], n) & mask;
        while (t->vocab_slots[i] >= 0) i = (i + 1) & mask;
        t->vocab_slots[i] = id;
        if (n == 1) t->byte_id[vocab[id][0]] = id;
    }

    t->n_merges = n_merges;
    t->merges = malloc(((size_t)n_merges + 1) * sizeof *t->merges);
    t->merge_cap = pow2_at_least((uint64_t)n_merges * 2 + 2);
    t->merge_slots = malloc(t->merge_cap * sizeof *t->merge_slots);
    unsigned char *cat = NULL;
    size_t cat_cap = 0;
    if (!t->merges || !t->merge_slots) { fail_with(err, errlen, "out of memory"); goto bad; }
    for (uint32_t i = 0; i < t->merge_cap; i++) t->merge_slots[i].key = UINT64_MAX;
    mask = t->merge_cap - 1;
    for (int r = 0; r < n_merges; r++) {
        int32_t a = merges[r][0], b = merges[r][1];
        if (a < 0 || b < 0 || a >= n_vocab || b >= n_vocab || !t->in_vocab[a] || !t->in_vocab[b]) {
            free(cat);
            fail_with(err, errlen, "model.merges[%d]: token not in model.vocab", r);
            goto bad;
        }
        size_t n = (size_t)t->tok_len[a] + t->tok_len[b];
        if (n > cat_cap) {
            unsigned char *nc = realloc(cat, n * 2);
            if (!nc) { free(cat); fail_with(err, errlen, "out of memory"); goto bad; }
            cat = nc;
            cat_cap = n * 2;
        }
        memcpy(cat, t->tok[a], t->tok_len[a]);
        memcpy(cat + t->tok_len[a], t->tok[b], t->tok_len[b]);
        int32_t out = tok_vocab_lookup(t, cat, n);
        if (out < 0) {
            free(cat);
            fail_with(err, errlen, "model.merges[%d]: the merged token is not in model.vocab", r);
            goto bad;
        }
        t->merges[r][0] = a;
        t->merges[r][1] = b;
        uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
        uint32_t i = (uint32_t)mix64(key) & mask;
        while (t->merge_slots[i].key != UINT64_MAX && t->merge_slots[i].key != key) i = (i + 1) & mask;
        if (t->merge_slots[i].key == key) continue; /* a repeated merge keeps its first (best) rank */
        t->merge_slots[i] = (struct tok_merge){key, (uint32_t)r, out};
    }
    free(cat);

    if (n_added > 0xfff0) { fail_with(err, errlen, "added_tokens: too many (%d)", n_added); goto bad; }
    t->added = calloc((size_t)n_added + 1, sizeof *t->added);
    if (!t->added) { fail_with(err, errlen, "out of memory"); goto bad; }
    for (int i = 0; i < n_added; i++) {
        const struct tok_added *a = &added[i];
        if (a->id < 0 || !a->len) { fail_with(err, errlen, "added_tokens[%d]: bad id or empty content", i); goto bad; }
        t->added[i] = *a;
        t->added[i].content = malloc(a->len + 1);
        if (!t->added[i].content) { fail_with(err, errlen, "out of memory"); goto bad; }
        memcpy(t->added[i].content, a->content, a->len);
        t->added[i].content[a->len] = 0;
        t->n_added = i + 1;
    }
    qsort(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added);
    for (int i = 0; i < t->n_added; i++) {
        const struct tok_added *a = &t->added[i];
        if (i && a->len == t->added[i - 1].len && memcmp(a->content, t->added[i - 1].content, a->len) == 0) {
            fail_with(err, errlen, "added_tokens: '%s' given twice", a->content);
            goto bad;
        }
        if (t->tok[a->id] && !(t->tok_len[a->id] == a->len && memcmp(t->tok[a->id], a->content, a->len) == 0)) {
            fail_with(err, errlen, "added_tokens: id %d ('%s') is already another token", a->id, a->content);
            goto bad;
        }
        t->tok[a->id] = (unsigned char *)a->content;
        t->tok_len[a->id] = (uint32_t)a->len;
    }
    int k = 0;
    for (int b = 0; b < 256; b++) {
        t->added_by_byte[b] = (uint16_t)k;
        while (k < t->n_added && (unsigned char)t->added[k].content[0] == b) k++;
    }
    t->added_by_byte[256] = (uint16_t)k;
    return t;
bad:
    tokenizer_free(t);
    return NULL;
}

/* --- loading ------------------------------------------------------------------ */

static char *read_whole_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { fail_with(err, errlen, "%s: %s", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) { fail_with(err, errlen, "%s: out of memory", path); return NULL; }
    if (bad) { free(buf); fail_with(err, errlen, "%s: read error", path); return NULL; }
    buf[n] = 0;
    *len = n;
    return buf;
}

static int json_is_false_or_absent(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return !v || cJSON_IsNull(v) || cJSON_IsFalse(v);
}

static int json_is_empty_string_or_absent(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return !v || cJSON_IsNull(v) || (cJSON_IsString(v) && v->valuestring[0] == 0);
}

static int json_type_is(const cJSON *o, const char *type) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(v) && strcmp(v->valuestring, type) == 0;
}

static int check_pipeline(const cJSON *root, int *nfc, char *err, size_t errlen) {
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    *nfc = 0;
    if (norm && !cJSON_IsNull(norm)) {
        if (!json_type_is(norm, "NFC")) return fail_with(err, errlen, "normalizer: only NFC (or null) is supported");
        *nfc = 1;
    }
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *seq = pre ? cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers") : NULL;
    if (!json_type_is(pre, "Sequence") || !cJSON_IsArray(seq) || cJSON_GetArraySize(seq) != 2)
        return fail_with(err, errlen, "pre_tokenizer: expected Sequence [Split (Qwen regex), ByteLevel]");
    const cJSON *split = cJSON_GetArrayItem(seq, 0), *bl = cJSON_GetArrayItem(seq, 1);
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(split, "pattern");
    const cJSON *re = pat ? cJSON_GetObjectItemCaseSensitive(pat, "Regex") : NULL;
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(split, "behavior");
    if (!json_type_is(split, "Split") || !cJSON_IsString(re) || strcmp(re->valuestring, QWEN_SPLIT_REGEX) != 0)
        return fail_with(err, errlen, "pre_tokenizer: the Split must use Qwen's regex (the only one this scanner implements)");
    if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") != 0 || !json_is_false_or_absent(split, "invert"))
        return fail_with(err, errlen, "pre_tokenizer: Split must be behavior Isolated, invert false");
    if (!json_type_is(bl, "ByteLevel") || !json_is_false_or_absent(bl, "add_prefix_space") ||
        !json_is_false_or_absent(bl, "use_regex"))
        return fail_with(err, errlen, "pre_tokenizer: expected ByteLevel with add_prefix_space and use_regex false");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (dec && !cJSON_IsNull(dec) && !json_type_is(dec, "ByteLevel"))
        return fail_with(err, errlen, "decoder: only ByteLevel is supported");
    return 0;
}

/* Split one merges entry, "a b" or ["a", "b"], into its two strings. */
static int merge_parts(const cJSON *m, const char **a, size_t *alen, const char **b, size_t *blen) {
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ')) return -1;
        *a = s, *alen = (size_t)(sp - s), *b = sp + 1, *blen = strlen(sp + 1);
        return 0;
    }
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2) {
        const cJSON *x = cJSON_GetArrayItem(m, 0), *y = cJSON_GetArrayItem(m, 1);
        if (!cJSON_IsString(x) || !cJSON_IsString(y) || !x->valuestring[0] || !y->valuestring[0]) return -1;
        *a = x->valuestring, *alen = strlen(x->valuestring), *b = y->valuestring, *blen = strlen(y->valuestring);
        return 0;
    }
    return -1;
}

static int json_bool(const cJSON *o, const char *key) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static struct tokenizer *from_json(const cJSON *root, char *err, size_t errlen) {
    struct tokenizer *t = NULL, *lookup = NULL;
    unsigned char **vocab = NULL;
    uint32_t *vlen = NULL;
    int32_t (*merges)[2] = NULL;
    struct tok_added *added = NULL;
    unsigned char *buf = NULL;
    int n_vocab = 0, n_merges = 0, n_added = 0, nfc;

    if (!cJSON_IsObject(root)) { fail_with(err, errlen, "not a JSON object"); return NULL; }
    if (check_pipeline(root, &nfc, err, errlen)) return NULL;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) { fail_with(err, errlen, "model: missing"); return NULL; }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (type && !json_type_is(model, "BPE")) { fail_with(err, errlen, "model.type: only BPE is supported"); return NULL; }
    if (!json_is_false_or_absent(model, "byte_fallback") || !json_is_false_or_absent(model, "ignore_merges") ||
        !json_is_empty_string_or_absent(model, "continuing_subword_prefix") ||
        !json_is_empty_string_or_absent(model, "end_of_word_suffix")) {
        fail_with(err, errlen, "model: byte_fallback, ignore_merges, subword prefix/suffix are not supported");
        return NULL;
    }
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0)) {
        fail_with(err, errlen, "model.dropout: BPE dropout is not supported");
        return NULL;
    }
    const cJSON *jv = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(jv)) { fail_with(err, errlen, "model.vocab: missing or not an object"); return NULL; }
    if (!cJSON_IsArray(jm)) { fail_with(err, errlen, "model.merges: missing or not an array"); return NULL; }

    const cJSON *it;
    cJSON_ArrayForEach(it, jv) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= MAX_TOKEN_ID ||
            it->valuedouble != (double)(int)it->valuedouble) {
            fail_with(err, errlen, "model.vocab: bad id for token '%.40s'", it->string ? it->string : "");
            goto out;
        }
        if (it->valueint + 1 > n_vocab) n_vocab = it->valueint + 1;
    }
    vocab = calloc((size_t)n_vocab + 1, sizeof *vocab);
    vlen = calloc((size_t)n_vocab + 1, sizeof *vlen);
    if (!vocab || !vlen) { fail_with(err, errlen, "out of memory"); goto out; }
    cJSON_ArrayForEach(it, jv) {
        size_t n = strlen(it->string);
        unsigned char *b = malloc(n + 1);
        long k = b ? bytelevel_decode((const unsigned char *)it->string, n, b) : -1;
        if (k <= 0) {
            free(b);
            fail_with(err, errlen, "model.vocab: token '%.40s' is not ByteLevel text", it->string);
            goto out;
        }
        if (vocab[it->valueint]) {
            free(b);
            fail_with(err, errlen, "model.vocab: id %d given twice", it->valueint);
            goto out;
        }
        vocab[it->valueint] = b;
        vlen[it->valueint] = (uint32_t)k;
    }

    n_merges = cJSON_GetArraySize(jm);
    merges = malloc(((size_t)n_merges + 1) * sizeof *merges);
    buf = malloc(4096);
    if (!merges || !buf) { fail_with(err, errlen, "out of memory"); goto out; }
    {
        /* resolve each side through a temporary lookup over the vocab */
        lookup = tok_build(n_vocab, (const unsigned char *const *)vocab, vlen, 0, NULL, NULL, 0, 0, err, errlen);
        if (!lookup) goto out;
        int r = 0;
        cJSON_ArrayForEach(it, jm) {
            const char *a, *b;
            size_t al, bl;
            if (merge_parts(it, &a, &al, &b, &bl)) {
                fail_with(err, errlen, "model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", r);
                goto out;
            }
            int32_t ids[2] = {-1, -1};
            const char *side[2] = {a, b};
            size_t slen[2] = {al, bl};
            for (int s = 0; s < 2; s++) {
                if (slen[s] > 4096) break;
                long k = bytelevel_decode((const unsigned char *)side[s], slen[s], buf);
                if (k > 0) ids[s] = tok_vocab_lookup(lookup, buf, (size_t)k);
            }
            if (ids[0] < 0 || ids[1] < 0) {
                fail_with(err, errlen, "model.merges[%d]: '%.*s' + '%.*s': a part is not in model.vocab", r, (int)(al > 40 ? 40 : al),
                     a, (int)(bl > 40 ? 40 : bl), b);
                goto out;
            }
            merges[r][0] = ids[0];
            merges[r][1] = ids[1];
            r++;
        }
    }

    const cJSON *ja = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (ja && !cJSON_IsNull(ja) && !cJSON_IsArray(ja)) { fail_with(err, errlen, "added_tokens: not an array"); goto out; }
    n_added = ja && cJSON_IsArray(ja) ? cJSON_GetArraySize(ja) : 0;
    added = calloc((size_t)n_added + 1, sizeof *added);
    if (!added) { fail_with(err, errlen, "out of memory"); goto out; }
    int i = 0;
    cJSON_ArrayForEach(it, ja) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= MAX_TOKEN_ID ||
            id->valuedouble != (double)(int)id->valuedouble || !cJSON_IsString(c) || !c->valuestring[0]) {
            fail_with(err, errlen, "added_tokens[%d]: needs an integer id and a non-empty content", i);
            goto out;
        }
        if (id->valueint < n_vocab && vocab[id->valueint] &&
            !(vlen[id->valueint] == strlen(c->valuestring) &&
              memcmp(vocab[id->valueint], c->valuestring, vlen[id->valueint]) == 0)) {
            /* HF allows an added token to reuse a vocab id only for the same text */
            char *spelled = bytelevel_encode(vocab[id->valueint], vlen[id->valueint]);
            int same = spelled && strcmp(spelled, c->valuestring) == 0;
            free(spelled);
            if (!same) {
                fail_with(err, errlen, "added_tokens[%d]: id %d is already another token", i, id->valueint);
                goto out;
            }
            free(vocab[id->valueint]);
            vocab[id->valueint] = NULL; /* the added token (raw text) takes the id */
        }
        added[i].id = id->valueint;
        added[i].content = c->valuestring;
        added[i].len = strlen(c->valuestring);
        added[i].special = json_bool(it, "special");
        added[i].lstrip = json_bool(it, "lstrip");
        added[i].rstrip = json_bool(it, "rstrip");
        added[i].single_word = json_bool(it, "single_word");
        added[i].normalized = json_bool(it, "normalized");
        if (added[i].lstrip || added[i].rstrip || added[i].single_word) {
            fail_with(err, errlen, "added_tokens[%d]: lstrip, rstrip and single_word are not supported", i);
            goto out;
        }
        i++;
    }
    t = tok_build(n_vocab, (const unsigned char *const *)vocab, vlen, n_merges, (const int32_t(*)[2])merges, added,
                  n_added, nfc, err, errlen);
out:
    tokenizer_free(lookup);
    if (vocab)
        for (int k = 0; k < n_vocab; k++) free(vocab[k]);
    free(vocab);
    free(vlen);
    free(merges);
    free(added);
    free(buf);
    return t;
}

struct tokenizer *tokenizer_load(const char *path, char *err, size_t errlen) {
    struct stat st;
    char json_path[4096], cfg_path[4096];
    if (stat(path, &st) != 0) { fail_with(err, errlen, "%s: %s", path, strerror(errno)); return NULL; }
    if (S_ISDIR(st.st_mode)) {
        snprintf(json_path, sizeof json_path, "%s/tokenizer.json", path);
        snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", path);
    } else {
        snprintf(json_path, sizeof json_path, "%s", path);
        const char *slash = strrchr(path, '/');
        int dlen = slash ? (int)(slash - path) : 1;
        snprintf(cfg_path, sizeof cfg_path, "%.*s/tokenizer_config.json", dlen, slash ? path : ".");
    }
    size_t len;
    char *text = read_whole_file(json_path, &len, err, errlen);
    if (!text) return NULL;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) { fail_with(err, errlen, "%s: not valid JSON", json_path); return NULL; }
    char sub[256] = "";
    struct tokenizer *t = from_json(root, sub, sizeof sub);
    cJSON_Delete(root);
    if (!t) { fail_with(err, errlen, "%s: %s", json_path, sub); return NULL; }
    if (access(cfg_path, R_OK) == 0) {
        size_t clen;
        char *cfg = read_whole_file(cfg_path, &clen, sub, sizeof sub);
        cJSON *c = cfg ? cJSON_ParseWithLength(cfg, clen) : NULL;
        if (!c) {
            free(cfg);
            tokenizer_free(t);
            fail_with(err, errlen, "%s: not valid JSON", cfg_path);
            return NULL;
        }
        cJSON_Delete(c);
        t->config_json = cfg;
    }
    return t;
}

/* --- encoding ----------------------------------------------------------------- */

struct ids {
    int32_t *v;
    size_t n, cap;
};

static int ids_push(struct ids *o, int32_t id) {
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        int32_t *nv = realloc(o->v, nc * sizeof *nv);
        if (!nv) return -1;
        o->v = nv;
        o->cap = nc;
    }
    o->v[o->n++] = id;
    return 0;
}

/* Cached BPE result of piece s[0..n) appended to o: 1 hit, 0 miss. */
static int cache_get(struct tok_cache *c, uint64_t h, const unsigned char *s, size_t n, struct ids *o) {
    int hit = 0;
    pthread_mutex_lock(&c->lock);
    uint32_t mask = c->cap - 1;
    for (uint32_t i = (uint32_t)h & mask; c->hash[i]; i = (i + 1) & mask) {
        if (c->hash[i] == h && c->key_len[i] == n && memcmp(c->keys + c->key_off[i], s, n) == 0) {
            hit = 1;
            for (uint32_t k = 0; k < c->ids_n[i] && hit; k++)
                if (ids_push(o, c->ids[c->ids_off[i] + k])) hit = -1;
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

static void cache_put(struct tok_cache *c, uint64_t h, const unsigned char *s, size_t n, const int32_t *ids, size_t k) {
    pthread_mutex_lock(&c->lock);
    if (c->used * 2 >= c->cap || c->keys_used + n > c->keys_cap || c->ids_used + k > c->ids_cap) {
        memset(c->hash, 0, c->cap * sizeof *c->hash); /* full: start over */
        c->used = 0;
        c->keys_used = c->ids_used = 0;
    }
    uint32_t mask = c->cap - 1, i = (uint32_t)h & mask;
    while (c->hash[i]) i = (i + 1) & mask;
    c->hash[i] = h;
    c->key_off[i] = (uint32_t)c->keys_used;
    c->key_len[i] = (uint32_t)n;
    c->ids_off[i] = (uint32_t)c->ids_used;
    c->ids_n[i] = (uint32_t)k;
    memcpy(c->keys + c->keys_used, s, n);
    memcpy(c->ids + c->ids_used, ids, k * sizeof *ids);
    c->keys_used += n;
    c->ids_used += k;
    c->used++;
    pthread_mutex_unlock(&c->lock);
}

/* Merge the symbols sym[0..n) in place, lowest rank first (leftmost among
 * equal ranks), for short pieces: rank[i] caches the rank of pair (i, i+1),
 * so each merge costs one scan and two lookups. Returns the new count. */
static size_t bpe_small(const struct tokenizer *t, int32_t *sym, size_t n) {
    uint32_t rank[256];
    int32_t out[256];
    for (size_t i = 0; i + 1 < n; i++) rank[i] = merge_find(t, sym[i], sym[i + 1], &out[i]);
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (rank[i] < rank[best]) best = i;
        if (rank[best] == UINT32_MAX) break;
        sym[best] = out[best];
        memmove(sym + best + 1, sym + best + 2, (n - best - 2) * sizeof *sym);
        if (best + 2 < n) {
            memmove(rank + best + 1, rank + best + 2, (n - best - 3) * sizeof *rank);
            memmove(out + best + 1, out + best + 2, (n - best - 3) * sizeof *out);
        }
        n--;
        if (best + 1 < n) rank[best] = merge_find(t, sym[best], sym[best + 1], &out[best]);
        if (best > 0) rank[best - 1] = merge_find(t, sym[best - 1], sym[best], &out[best - 1]);
    }
    return n;
}

/* The same for long pieces: a binary min-heap of (rank << 32 | position)
 * over a linked list of symbols (one integer compare orders by rank, then
 * leftmost); stale entries are recognised when popped and skipped. */
static void heap_push(uint64_t *h, size_t *n, uint64_t e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= e) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], e = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        c += c + 1 < *n && h[c + 1] < h[c];
        if (e <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = e;
    return top;
}

static long bpe_large(const struct tokenizer *t, int32_t *sym, size_t n) {
    int32_t *next = malloc(n * sizeof *next), *prev = malloc(n * sizeof *prev);
    uint64_t *h = malloc(n * 2 * sizeof *h);
    if (!next || !prev || !h) { free(next); free(prev); free(h); return -1; }
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
        int32_t o;
        uint32_t r = i + 1 < n ? merge_find(t, sym[i], sym[i + 1], &o) : UINT32_MAX;
        if (r != UINT32_MAX) heap_push(h, &hn, (uint64_t)r << 32 | i);
    }
    while (hn) {
        uint64_t e = heap_pop(h, &hn);
        size_t i = (uint32_t)e;
        if (sym[i] < 0 || next[i] < 0) continue;
        int32_t o = -1;
        if (merge_find(t, sym[i], sym[next[i]], &o) != (uint32_t)(e >> 32)) continue; /* stale */
        int32_t j = next[i];
        sym[i] = o;
        sym[j] = -1;
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = (int32_t)i;
        if (hn + 2 > n * 2) continue; /* cannot happen: each merge adds at most two */
        uint32_t r;
        if (next[i] >= 0 && (r = merge_find(t, sym[i], sym[next[i]], &o)) != UINT32_MAX)
            heap_push(h, &hn, (uint64_t)r << 32 | i);
        if (prev[i] >= 0 && (r = merge_find(t, sym[prev[i]], sym[i], &o)) != UINT32_MAX)
            heap_push(h, &hn, (uint64_t)r << 32 | (uint32_t)prev[i]);
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (sym[i] >= 0) sym[k++] = sym[i];
    free(next);
    free(prev);
    free(h);
    return (long)k;
}

/* BPE of one pre-tokenizer piece, ids appended to o. */
static int encode_piece(const struct tokenizer *t, const unsigned char *s, size_t n, struct ids *o) {
    if (n >= (size_t)1 << 31) return -1; /* positions are 32-bit in the heap */
    if (n == 1) return t->byte_id[s[0]] < 0 ? -1 : ids_push(o, t->byte_id[s[0]]);
    struct tok_cache *c = (struct tok_cache *)&t->cache; /* the cache is the one mutable part */
    uint64_t h = 0;
    if (n <= 64) {
        h = tok_hash(s, n);
        int hit = cache_get(c, h, s, n, o);
        if (hit) return hit < 0 ? -1 : 0;
    }
    int32_t small[256], *sym = n <= 256 ? small : malloc(n * sizeof *sym);
    if (!sym) return -1;
    for (size_t i = 0; i < n; i++) {
        sym[i] = t->byte_id[s[i]];
        if (sym[i] < 0) {
            if (sym != small) free(sym);
            return -1;
        }
    }
    long k = n <= 256 ? (long)bpe_small(t, sym, n) : bpe_large(t, sym, n);
    int rc = k < 0 ? -1 : 0;
    for (long i = 0; i < k && rc == 0; i++) rc = ids_push(o, sym[i]);
    if (rc == 0 && n <= 64) cache_put(c, h, s, n, sym, (size_t)k);
    if (sym != small) free(sym);
    return rc;
}

/* Text between added tokens: normalise, pre-tokenise, BPE. */
static int encode_segment(const struct tokenizer *t, const unsigned char *s, size_t n, struct ids *o) {
    unsigned char *norm = NULL;
    size_t norm_len;
    if (t->nfc) {
        if (uni_nfc(s, n, &norm, &norm_len)) return -1;
        if (norm) s = norm, n = norm_len;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t e = tok_scan_next(s, n, i);
        rc = encode_piece(t, s + i, e - i, o);
        i = e;
    }
    free(norm);
    return rc;
}

/* The added token that matches at s[i], longest first, or NULL. */
static const struct tok_added *added_at(const struct tokenizer *t, const unsigned char *s, size_t n, size_t i) {
    for (int k = t->added_by_byte[s[i]]; k < t->added_by_byte[s[i] + 1]; k++) {
        const struct tok_added *a = &t->added[k];
        if (a->len <= n - i && memcmp(a->content, s + i, a->len) == 0) return a;
    }
    return NULL;
}

int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, int32_t **ids_out) {
    const unsigned char *s = (const unsigned char *)text;
    struct ids o = {0};
    *ids_out = NULL;
    size_t start = 0;
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0;) {
        const struct tok_added *a = t->added_by_byte[s[i]] < t->added_by_byte[s[i] + 1] ? added_at(t, s, len, i) : NULL;
        if (!a) { i++; continue; }
        if (i > start) rc = encode_segment(t, s + start, i - start, &o);
        if (rc == 0) rc = ids_push(&o, a->id);
        i += a->len;
        start = i;
    }
    if (rc == 0 && start < len) rc = encode_segment(t, s + start, len - start, &o);
    if (rc != 0 || o.n > INT32_MAX) { free(o.v); return -1; }
    if (!o.v) o.v = malloc(sizeof *o.v); /* a valid pointer even for no tokens */
    if (!o.v) return -1;
    *ids_out = o.v;
    return (int)o.n;
}

/* --- decoding and look-ups ------------------------------------------------------ */

char *tokenizer_decode(const struct tokenizer *t, const int32_t *ids, int n, size_t *len_out) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_ids || !t->tok[ids[i]]) return NULL;
        total += t->tok_len[ids[i]];
    }
    char *o = malloc(total + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        memcpy(o + k, t->tok[ids[i]], t->tok_len[ids[i]]);
        k += t->tok_len[ids[i]];
    }
    o[k] = 0;
    if (len_out) *len_out = k;
    return o;
}

int tokenizer_vocab_size(const struct tokenizer *t) { return t->n_ids; }

int32_t tokenizer_token_id(const struct tokenizer *t, const char *token) {
    size_t n = strlen(token);
    if (!n) return -1;
    for (int k = t->added_by_byte[(unsigned char)token[0]]; k < t->added_by_byte[(unsigned char)token[0] + 1]; k++)
        if (t->added[k].len == n && memcmp(t->added[k].content, token, n) == 0) return t->added[k].id;
    unsigned char *b = malloc(n);
    if (!b) return -1;
    long k = bytelevel_decode((const unsigned char *)token, n, b);
    int32_t id = k > 0 ? tok_vocab_lookup(t, b, (size_t)k) : -1;
    free(b);
    return id;
}
