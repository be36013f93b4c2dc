/*
 * tokenizer_internal.h - the tokenizer's data, shared by its .c files
 * (tokenizer.c: load/save/encode/decode, tokenizer_scan.c: pre-tokenizer,
 * tokenizer_train.c: BPE training). Not for users: see tokenizer.h.
 */
#ifndef VIV_TOKENIZER_INTERNAL_H
#define VIV_TOKENIZER_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

struct tok_added {
    int32_t id;
    char *content; /* raw bytes, as written in tokenizer.json */
    size_t len;
    int special, lstrip, rstrip, single_word, normalized;
};

/* BPE cache: piece bytes -> token ids, open addressing, cleared when full. */
struct tok_cache {
    pthread_mutex_t lock;
    uint64_t *hash; /* 0 = empty slot */
    uint32_t *key_off, *key_len, *ids_off, *ids_n;
    uint32_t cap, used;
    unsigned char *keys;
    int32_t *ids;
    size_t keys_used, keys_cap, ids_used, ids_cap;
};

struct tokenizer {
    int n_ids;            /* largest id + 1 */
    unsigned char **tok;  /* id -> bytes (into tok_arena or an added token), NULL if unused */
    uint32_t *tok_len;
    uint8_t *in_vocab;    /* 1 if the id is in model.vocab (not only an added token) */
    unsigned char *tok_arena;

    /* model.vocab bytes -> id: open addressing over ids, -1 empty */
    int32_t *vocab_slots;
    uint32_t vocab_cap;
    int32_t byte_id[256]; /* single-byte tokens, -1 if absent */

    /* merges: (left id, right id) -> rank and merged id */
    int n_merges;
    int32_t (*merges)[2]; /* by rank */
    struct tok_merge {
        uint64_t key; /* left << 32 | right, UINT64_MAX empty */
        uint32_t rank;
        int32_t out;  /* the merged token */
    } *merge_slots;   /* one 16-byte slot: a look-up touches one cache line */
    uint32_t merge_cap;

    struct tok_added *added;
    int n_added;
    uint16_t added_by_byte[257]; /* added[] sorted by first byte then longest first; range per first byte */

    int nfc;             /* normalizer: 1 NFC, 0 none */
    char *config_json;   /* tokenizer_config.json as loaded, for tokenizer_save; may be NULL */

    struct tok_cache cache;
};

/* End of the pre-tokenizer piece that starts at s[i] (i < n). */
size_t tok_scan_next(const unsigned char *s, size_t n, size_t i);

/* The 256 printable characters GPT-2's ByteLevel maps bytes to. */
void tok_byte_to_unicode(uint32_t map[256]);

/* Build a tokenizer from parts (used by the loader and the trainer): token
 * bytes per id of model.vocab (NULL for holes), merges as id pairs by rank
 * (merged id found by concatenation), added tokens. Takes nothing over. */
struct tokenizer *tok_build(int n_vocab, const unsigned char *const *vocab, const uint32_t *vocab_len, int n_merges,
                            const int32_t (*merges)[2], const struct tok_added *added, int n_added, int nfc,
                            char *err, size_t errlen);

/* FNV-1a, good enough for token strings. */
static inline uint64_t tok_hash(const unsigned char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ULL;
    return h ? h : 1;
}

/* Id of the model.vocab token with bytes s[0..n), or -1. */
int32_t tok_vocab_lookup(const struct tokenizer *t, const unsigned char *s, size_t n);

#endif
