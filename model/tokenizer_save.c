/*
 * tokenizer_save.c - write a tokenizer back as tokenizer.json and
 * tokenizer_config.json (the Hugging Face layout), each atomically.
 *
 * tokenizer.json is rebuilt from the tables, in the pipeline Qwen3 uses (the
 * only one we load), with merges as ["a", "b"] pairs (the newer format;
 * both load here, in transformers and in transformers.js).
 * tokenizer_config.json is the one loaded beside tokenizer.json, unchanged,
 * when there was one; otherwise a Qwen2Tokenizer config naming the added
 * tokens (what a trained tokenizer gets).
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

#define QWEN_SPLIT_REGEX                                                                                 \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* Bytes -> ByteLevel spelling (each byte one of 256 printable characters). */
static char *spell(const unsigned char *s, size_t n) {
    uint32_t map[256];
    tok_byte_to_unicode(map);
    char *o = malloc(n * 2 + 1), *p = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = map[s[i]];
        if (c < 0x80) *p++ = (char)c;
        else { *p++ = (char)(0xC0 | (c >> 6)); *p++ = (char)(0x80 | (c & 0x3F)); }
    }
    *p = 0;
    return o;
}

static cJSON *bytelevel_obj(void) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddFalseToObject(o, "add_prefix_space");
    cJSON_AddFalseToObject(o, "trim_offsets");
    cJSON_AddFalseToObject(o, "use_regex");
    return o;
}

static cJSON *added_obj(const struct tok_added *a, int with_id) {
    cJSON *o = cJSON_CreateObject();
    if (with_id) cJSON_AddNumberToObject(o, "id", a->id);
    cJSON_AddStringToObject(o, "content", a->content);
    cJSON_AddBoolToObject(o, "single_word", a->single_word);
    cJSON_AddBoolToObject(o, "lstrip", a->lstrip);
    cJSON_AddBoolToObject(o, "rstrip", a->rstrip);
    cJSON_AddBoolToObject(o, "normalized", a->normalized);
    cJSON_AddBoolToObject(o, "special", a->special);
    return o;
}

/* Added tokens in id order (they are stored sorted by text). */
static int *added_by_id(const struct tokenizer *t) {
    int *ord = malloc(((size_t)t->n_added + 1) * sizeof *ord);
    if (!ord) return NULL;
    for (int i = 0; i < t->n_added; i++) ord[i] = i;
    for (int i = 1; i < t->n_added; i++) { /* insertion sort: a few dozen */
        int x = ord[i], j = i;
        while (j > 0 && t->added[ord[j - 1]].id > t->added[x].id) { ord[j] = ord[j - 1]; j--; }
        ord[j] = x;
    }
    return ord;
}

static cJSON *tokenizer_json(const struct tokenizer *t) {
    int *ord = added_by_id(t);
    cJSON *root = cJSON_CreateObject();
    if (!ord || !root) { free(ord); cJSON_Delete(root); return NULL; }
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int i = 0; i < t->n_added; i++) cJSON_AddItemToArray(added, added_obj(&t->added[ord[i]], 1));
    free(ord);
    if (t->nfc) {
        cJSON *n = cJSON_AddObjectToObject(root, "normalizer");
        cJSON_AddStringToObject(n, "type", "NFC");
    } else {
        cJSON_AddNullToObject(root, "normalizer");
    }
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "Sequence");
    cJSON *seq = cJSON_AddArrayToObject(pre, "pretokenizers");
    cJSON *split = cJSON_CreateObject();
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON *pat = cJSON_AddObjectToObject(split, "pattern");
    cJSON_AddStringToObject(pat, "Regex", QWEN_SPLIT_REGEX);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddFalseToObject(split, "invert");
    cJSON_AddItemToArray(seq, split);
    cJSON_AddItemToArray(seq, bytelevel_obj());
    cJSON_AddItemToObject(root, "post_processor", bytelevel_obj());
    cJSON_AddItemToObject(root, "decoder", bytelevel_obj());

    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddStringToObject(model, "continuing_subword_prefix", "");
    cJSON_AddStringToObject(model, "end_of_word_suffix", "");
    cJSON_AddFalseToObject(model, "fuse_unk");
    cJSON_AddFalseToObject(model, "byte_fallback");
    cJSON_AddFalseToObject(model, "ignore_merges");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    char **spelled = calloc((size_t)t->n_ids + 1, sizeof *spelled);
    int ok = spelled != NULL;
    for (int id = 0; ok && id < t->n_ids; id++) {
        if (!t->in_vocab[id]) continue;
        spelled[id] = spell(t->tok[id], t->tok_len[id]);
        cJSON *num = cJSON_CreateNumber(id);
        if (!spelled[id] || !num) { cJSON_Delete(num); ok = 0; break; }
        cJSON_AddItemToObject(vocab, spelled[id], num);
    }
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    for (int r = 0; ok && r < t->n_merges; r++) {
        const char *pair[2] = {spelled[t->merges[r][0]], spelled[t->merges[r][1]]};
        cJSON *m = cJSON_CreateStringArray(pair, 2);
        if (!m) { ok = 0; break; }
        cJSON_AddItemToArray(merges, m);
    }
    if (spelled)
        for (int id = 0; id < t->n_ids; id++) free(spelled[id]);
    free(spelled);
    if (!ok) { cJSON_Delete(root); return NULL; }
    return root;
}

static cJSON *default_config(const struct tokenizer *t) {
    cJSON *c = cJSON_CreateObject();
    int *ord = added_by_id(t);
    if (!c || !ord) { free(ord); cJSON_Delete(c); return NULL; }
    cJSON_AddFalseToObject(c, "add_bos_token");
    cJSON_AddFalseToObject(c, "add_prefix_space");
    cJSON *dec = cJSON_AddObjectToObject(c, "added_tokens_decoder");
    cJSON *extra = cJSON_CreateArray();
    for (int i = 0; i < t->n_added; i++) {
        const struct tok_added *a = &t->added[ord[i]];
        char key[16];
        snprintf(key, sizeof key, "%d", a->id);
        cJSON_AddItemToObject(dec, key, added_obj(a, 0));
        if (a->special && strcmp(a->content, "<|endoftext|>") != 0)
            cJSON_AddItemToArray(extra, cJSON_CreateString(a->content));
    }
    free(ord);
    cJSON_AddItemToObject(c, "additional_special_tokens", extra);
    cJSON_AddNullToObject(c, "bos_token");
    cJSON_AddFalseToObject(c, "clean_up_tokenization_spaces");
    cJSON_AddStringToObject(c, "eos_token", "<|im_end|>");
    cJSON_AddStringToObject(c, "errors", "replace");
    cJSON_AddNumberToObject(c, "model_max_length", 131072);
    cJSON_AddStringToObject(c, "pad_token", "<|endoftext|>");
    cJSON_AddFalseToObject(c, "split_special_tokens");
    cJSON_AddStringToObject(c, "tokenizer_class", "Qwen2Tokenizer");
    cJSON_AddNullToObject(c, "unk_token");
    return c;
}

/* dir/name <- data, through dir/.name.tmp: write, fsync, rename, fsync dir. */
static int write_atomic(const char *dir, const char *name, const char *data, size_t len, char *err, size_t errlen) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld", dir, name, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fail_with(err, errlen, "%s: %s", tmp, strerror(errno));
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return fail_with(err, errlen, "%s: %s", tmp, strerror(e));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return fail_with(err, errlen, "%s: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return fail_with(err, errlen, "%s: %s", path, strerror(e));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int tokenizer_save(const struct tokenizer *t, const char *dir, char *err, size_t errlen) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return fail_with(err, errlen, "%s: %s", dir, strerror(errno));
    cJSON *j = tokenizer_json(t);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!text) return fail_with(err, errlen, "out of memory");
    int rc = write_atomic(dir, "tokenizer.json", text, strlen(text), err, errlen);
    free(text);
    if (rc) return rc;
    if (t->config_json) return write_atomic(dir, "tokenizer_config.json", t->config_json, strlen(t->config_json), err, errlen);
    cJSON *c = default_config(t);
    text = c ? cJSON_Print(c) : NULL;
    cJSON_Delete(c);
    if (!text) return fail_with(err, errlen, "out of memory");
    rc = write_atomic(dir, "tokenizer_config.json", text, strlen(text), err, errlen);
    free(text);
    return rc;
}
