/*
 * tokenizer.h - Qwen3's tokenizer: byte-level BPE read from a Hugging Face
 * tokenizer.json, encoding text exactly as the `tokenizers` library does.
 *
 * Encoding, in HF's order:
 *   1. added tokens (<|im_start|>, <think>, ...) are found in the raw text
 *      and matched whole (leftmost, longest first); the text between them
 *      goes through the steps below on its own;
 *   2. the normalizer: NFC (or none);
 *   3. the pre-tokenizer: Qwen's split regex (model/tokenizer_scan.c, a
 *      hand-written scanner), then ByteLevel (bytes as 256 printable chars);
 *   4. the BPE model: merges applied by rank inside each piece.
 * Decoding concatenates the tokens' bytes: the exact bytes that were encoded,
 * including invalid UTF-8 (each invalid byte is its own character, see
 * model/unicode.h).
 *
 * A loaded tokenizer is read-only except for an internal BPE cache with its
 * own lock: encode/decode may be called from several threads at once.
 */
#ifndef VIV_TOKENIZER_H
#define VIV_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct tokenizer;

/* Load DIR/tokenizer.json (and DIR/tokenizer_config.json when present, kept
 * for tokenizer_save) or a tokenizer.json path. NULL + message on error. */
struct tokenizer *tokenizer_load(const char *dir_or_json_path, char *err, size_t errlen);
void tokenizer_free(struct tokenizer *);

/* Token ids of text[0..len) in a malloc'd *ids_out (caller frees): the
 * count, or -1 (out of memory, or a byte the vocabulary cannot express). */
int tokenizer_encode(const struct tokenizer *, const char *text, size_t len, int32_t **ids_out);

/* The bytes of ids[0..n) (NUL-terminated, length in *len_out), or NULL for
 * an id outside the vocabulary or out of memory. Caller frees. */
char *tokenizer_decode(const struct tokenizer *, const int32_t *ids, int n, size_t *len_out);

/* Largest id + 1 (the model's embedding rows must cover this). */
int tokenizer_vocab_size(const struct tokenizer *);

/* Id of a token given in its tokenizer.json spelling ("<|im_end|>", "Ġthe"),
 * or -1 if absent. */
int32_t tokenizer_token_id(const struct tokenizer *, const char *token);

/* Write DIR/tokenizer.json and DIR/tokenizer_config.json (each to a temp
 * file, fsync, rename). Creates DIR if missing. 0, or -1 + message. */
int tokenizer_save(const struct tokenizer *, const char *dir, char *err, size_t errlen);

/* Train a byte-level BPE with the same pre-tokenizer on texts[0..n) (added
 * special tokens: those Qwen3's chat format uses). vocab_size counts the
 * 256 byte tokens, the merges and the special tokens. progress, when not
 * NULL, is called now and then with (merges done, merges wanted). */
struct tokenizer *tokenizer_train(const char *const *texts, const size_t *lens, size_t n, int vocab_size,
                                  void (*progress)(int done, int total), char *err, size_t errlen);

#endif
