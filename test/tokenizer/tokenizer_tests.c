/*
 * tokenizer_tests.c - the tokenizer's unit tests (ASan + UBSan build).
 *
 * Oracle comparisons with the real Qwen3 tokenizer live in run.sh (through
 * `viv tokenize`); here: a tiny hand-made tokenizer.json in both merges
 * formats with hand-worked answers, hostile tokenizer.json files, NFC against
 * the UCD's NormalizationTest.txt, the pre-tokenizer scanner on hand-worked
 * cases (including the two characters where JavaScript's \s differs from
 * Oniguruma's), training, save/load, and the chat format's ids and mask.
 *
 *   tokenizer_tests [NAME...]                   run tests
 *   tokenizer_tests --render CASES.json DIR     print our chat rendering of each
 *                                               case as [{"text","ids"}] (run.sh
 *                                               compares it with jinja2 + the JS oracle)
 *   tokenizer_tests --resave SRC DST            load SRC, tokenizer_save to DST
 * NFC_TEST=path/to/NormalizationTest.txt enables the NFC test (run.sh sets it).
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../harness.h"
#include "../../model/chat.h"
#include "../../model/tokenizer.h"
#include "../../model/tokenizer_internal.h"
#include "../../model/unicode.h"

static char tmpdir[256];

static const char *PRE =
    "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+"
    "[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}]}";

/* The tiny tokenizer: 256 byte tokens (id = byte value), 7 merges, 6 added
 * tokens. merges_as_lists picks the ["a","b"] format over "a b". */
static const char *MERGES[][2] = {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"Ġ", "w"}, {"a", "a"}, {"aa", "aa"}};
static const char *ADDED[] = {"<|im_end|>", "<|im_start|>", "<think>", "</think>", "<|endoftext|>", "<|im"};

static char *spell_byte(int b, char *out) {
    uint32_t map[256];
    tok_byte_to_unicode(map);
    int n = utf8_encode(map[b], (unsigned char *)out);
    out[n] = 0;
    if (out[0] == '"' || out[0] == '\\') { out[1] = out[0]; out[0] = '\\'; out[2] = 0; }
    return out;
}

static char *tiny_json(int merges_as_lists, const char *extra_added) {
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap), sp[8];
    n += (size_t)snprintf(s + n, cap - n, "{\"version\":\"1.0\",\"added_tokens\":[");
    for (int i = 0; i < 6; i++)
        n += (size_t)snprintf(s + n, cap - n, "%s{\"id\":%d,\"content\":\"%s\",\"special\":%s}", i ? "," : "", 263 + i,
                              ADDED[i], i < 2 ? "true" : "false");
    n += (size_t)snprintf(s + n, cap - n, "%s],\"normalizer\":{\"type\":\"NFC\"},\"pre_tokenizer\":%s,", extra_added ? extra_added : "", PRE);
    n += (size_t)snprintf(s + n, cap - n, "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{");
    for (int b = 0; b < 256; b++) n += (size_t)snprintf(s + n, cap - n, "%s\"%s\":%d", b ? "," : "", spell_byte(b, sp), b);
    for (int m = 0; m < 7; m++) n += (size_t)snprintf(s + n, cap - n, ",\"%s%s\":%d", MERGES[m][0], MERGES[m][1], 256 + m);
    n += (size_t)snprintf(s + n, cap - n, "},\"merges\":[");
    for (int m = 0; m < 7; m++)
        n += (size_t)snprintf(s + n, cap - n, merges_as_lists ? "%s[\"%s\",\"%s\"]" : "%s\"%s %s\"", m ? "," : "",
                              MERGES[m][0], MERGES[m][1]);
    snprintf(s + n, cap - n, "]}}");
    return s;
}

static int write_text(const char *path, const char *text, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fwrite(text, 1, len, f);
    return fclose(f);
}

static struct tokenizer *load_text(const char *text, size_t len, char *err, size_t errlen) {
    char path[300];
    snprintf(path, sizeof path, "%s/t.json", tmpdir);
    if (write_text(path, text, len)) return NULL;
    return tokenizer_load(path, err, errlen);
}

static int encode_eq(const struct tokenizer *t, const char *text, const int32_t *want, int n_want) {
    int32_t *ids;
    int n = tokenizer_encode(t, text, strlen(text), &ids);
    int ok = n == n_want && (n == 0 || memcmp(ids, want, (size_t)n * sizeof *ids) == 0);
    if (!ok) {
        fprintf(stderr, "# encode(%s) =", text);
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return ok;
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__}), (int)(sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

static void check_tiny(int lists) {
    char err[256];
    char *j = tiny_json(lists, NULL);
    struct tokenizer *t = load_text(j, strlen(j), err, sizeof err);
    free(j);
    CHECK(t != NULL, "load: %s", err);
    CHECK(tokenizer_vocab_size(t) == 269, "vocab size %d", tokenizer_vocab_size(t));
    int ok = encode_eq(t, "hello", IDS(259)) && encode_eq(t, "hello world", IDS(259, 260, 'o', 'r', 'l', 'd')) &&
             encode_eq(t, "aaa", IDS(261, 'a')) && encode_eq(t, "aaaaa", IDS(262, 'a')) &&
             encode_eq(t, "hi<|im_end|>x", IDS('h', 'i', 263, 'x')) &&
             /* longest added token wins over its prefix "<|im" */
             encode_eq(t, "<|im<|im_start|>", IDS(268, 264)) && encode_eq(t, "<|i", IDS('<', '|', 'i')) &&
             encode_eq(t, "", NULL, 0) && encode_eq(t, "hellhello", IDS(258, 259));
    CHECK(ok, "wrong ids (details above)");
    CHECK(tokenizer_token_id(t, "<think>") == 265 && tokenizer_token_id(t, "hell") == 258 &&
              tokenizer_token_id(t, "Ġw") == 260 && tokenizer_token_id(t, "nope") == -1,
          "token_id");
    int32_t ids[] = {259, 260, 265, 255};
    size_t len;
    char *s = tokenizer_decode(t, ids, 4, &len);
    CHECK(s && len == 15 && memcmp(s, "hello w<think>\xff", 15) == 0, "decode gave '%s'", s ? s : "(null)");
    free(s);
    int32_t bad[] = {5, 9999};
    CHECK(tokenizer_decode(t, bad, 2, &len) == NULL, "decode of an unknown id must fail");
    tokenizer_free(t);
}

static void test_tiny_merges_strings(void) { check_tiny(0); }
static void test_tiny_merges_lists(void) { check_tiny(1); }

/* Save, load again: same ids; the saved tokenizer.json is list-format. */
static void test_save_roundtrip(void) {
    char err[256], dir[300];
    char *j = tiny_json(0, NULL);
    struct tokenizer *t = load_text(j, strlen(j), err, sizeof err);
    free(j);
    CHECK(t, "load: %s", err);
    snprintf(dir, sizeof dir, "%s/saved", tmpdir);
    CHECK(tokenizer_save(t, dir, err, sizeof err) == 0, "save: %s", err);
    tokenizer_free(t);
    struct tokenizer *u = tokenizer_load(dir, err, sizeof err);
    CHECK(u, "reload: %s", err);
    int ok = encode_eq(u, "hello world<think>aaaaa", IDS(259, 260, 'o', 'r', 'l', 'd', 265, 262, 'a'));
    tokenizer_free(u);
    CHECK(ok, "ids changed after save/load");
    char cfg[400];
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    CHECK(access(cfg, R_OK) == 0, "no tokenizer_config.json written");
}

/* HF-trained files often list the special tokens in model.vocab too, under
 * the same id as in added_tokens: that loads, encodes and saves. */
static void test_added_token_also_in_vocab(void) {
    char *base = tiny_json(0, NULL), err[256], dir[300];
    const char *at = strstr(base, "},\"merges\"");
    CHECK(at, "no merges in the tiny json");
    size_t n = strlen(base) + 64;
    char *j = malloc(n);
    snprintf(j, n, "%.*s,\"<|endoftext|>\":267%s", (int)(at - base), base, at);
    free(base);
    struct tokenizer *t = load_text(j, strlen(j), err, sizeof err);
    free(j);
    CHECK(t, "load: %s", err);
    int ok = encode_eq(t, "a<|endoftext|>b", IDS('a', 267, 'b'));
    snprintf(dir, sizeof dir, "%s/also", tmpdir);
    int saved = tokenizer_save(t, dir, err, sizeof err) == 0;
    tokenizer_free(t);
    CHECK(ok && saved, "encode or save failed: %s", err);
    t = tokenizer_load(dir, err, sizeof err);
    CHECK(t, "reload: %s", err);
    ok = encode_eq(t, "a<|endoftext|>b", IDS('a', 267, 'b')) && tokenizer_vocab_size(t) == 269;
    tokenizer_free(t);
    CHECK(ok, "after reload");
}

struct hostile {
    const char *name, *from, *to; /* replace the first `from` in the tiny json by `to` */
};

static void test_hostile_json(void) {
    static const struct hostile cases[] = {
        {"merge of unknown token", "\"h e\"", "\"h zz\""},
        {"merged token missing", "\"h e\"", "\"h x\""},
        {"merge without space", "\"h e\"", "\"he\""},
        {"merge with two spaces", "\"h e\"", "\"h e l\""},
        {"merge of wrong type", "\"h e\"", "42"},
        {"negative id", "\"!\":33", "\"!\":-1"},
        {"fractional id", "\"!\":33", "\"!\":0.5"},
        {"huge id", "\"!\":33", "\"!\":1e12"},
        {"string id", "\"!\":33", "\"!\":\"33\""},
        {"duplicate id", "\"#\":35", "\"#\":34"},
        {"not byte-level", "\"!\":33", "\"\xe2\x82\xac\":33"},
        {"vocab not object", "\"vocab\":{", "\"vocab\":[{"},
        {"merges missing", "\"merges\"", "\"mergez\""},
        {"model missing", "\"model\"", "\"modle\""},
        {"wrong model type", "\"type\":\"BPE\"", "\"type\":\"WordPiece\""},
        {"wrong normalizer", "\"NFC\"", "\"NFKC\""},
        {"wrong regex", "(?i:'s", "(?i:'x"},
        {"added token without content", "\"content\":\"<|im_end|>\"", "\"contents\":\"<|im_end|>\""},
        {"added token empty", "\"content\":\"<|im_end|>\"", "\"content\":\"\""},
        {"added token on a vocab id", "\"id\":263", "\"id\":65"},
        {"added token twice", "\"content\":\"<|im\"", "\"content\":\"<think>\""},
        {"added_tokens not array", "\"added_tokens\":[", "\"added_tokens\":{\"x\":["},
        {"byte_fallback", "\"type\":\"BPE\"", "\"type\":\"BPE\",\"byte_fallback\":true"},
        {"lstrip", "\"special\":true", "\"special\":true,\"lstrip\":true"},
    };
    char *base = tiny_json(0, NULL);
    char err[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *at = strstr(base, cases[i].from);
        CHECK(at, "case '%s': pattern not in the base json", cases[i].name);
        size_t n = strlen(base) + strlen(cases[i].to) + 1;
        char *j = malloc(n);
        snprintf(j, n, "%.*s%s%s", (int)(at - base), base, cases[i].to, at + strlen(cases[i].from));
        err[0] = 0;
        struct tokenizer *t = load_text(j, strlen(j), err, sizeof err);
        free(j);
        if (t) {
            tokenizer_free(t);
            free(base);
            FAIL("case '%s' loaded", cases[i].name);
        }
        CHECK(err[0], "case '%s': no message", cases[i].name);
    }
    /* not JSON, empty, truncated, wrong top-level type, missing file */
    const char *texts[] = {"not json {", "", "[]", "{}", "null"};
    for (size_t i = 0; i < 5; i++) {
        struct tokenizer *t = load_text(texts[i], strlen(texts[i]), err, sizeof err);
        CHECK(!t, "'%s' loaded", texts[i]);
    }
    struct tokenizer *t = load_text(base, strlen(base) / 2, err, sizeof err);
    CHECK(!t, "truncated file loaded");
    t = tokenizer_load("/nonexistent/dir", err, sizeof err);
    CHECK(!t && strstr(err, "nonexistent"), "missing path: '%s'", err);
    free(base);
}

/* Random byte flips of a valid file: load or refuse, never crash (ASan). */
static void test_mutated_json(void) {
    char *base = tiny_json(1, NULL), err[256];
    size_t n = strlen(base);
    uint64_t x = 88172645463325252ULL;
    int loaded = 0;
    for (int round = 0; round < 400; round++) {
        char *j = malloc(n + 1);
        memcpy(j, base, n + 1);
        for (int k = 0; k < 1 + round % 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            j[x % n] = (char)(x >> 40);
        }
        struct tokenizer *t = load_text(j, n, err, sizeof err);
        if (t) {
            int32_t *ids;
            int m = tokenizer_encode(t, "hello <think> world", 19, &ids);
            if (m >= 0) free(ids);
            tokenizer_free(t);
            loaded++;
        }
        free(j);
    }
    free(base);
    printf("# mutated tokenizer.json: %d of 400 still loaded\n", loaded);
}

/* Hand-worked pre-tokenizer pieces; "|" separates expected pieces. */
static void test_scanner(void) {
    static const char *cases[][2] = {
        {"Hello world", "Hello| world"},
        {"  \n\n  x  ", "  \n\n| | x|  "},
        {"I'M here, they'RE", "I|'M| here|,| they|'RE"},
        {"it's 'sup", "it|'s| '|sup"},
        {"a1234b", "a|1|2|3|4|b"},
        {"x  \t y", "x|  \t| y"},
        {"(foo)\n\nbar", "(foo|)\n\n|bar"},
        {"a \r\n", "a| \r\n"},
        {"\tfoo", "\tfoo"},
        {"!!!\r\nx", "!!!\r\n|x"},
        {"a ...  ", "a| ...|  "},
        {"\xff\xfe" "ab", "\xff\xfe|ab"},
        /* U+0085 is \s for Oniguruma (HF): the run "NEL sp sp" before x keeps all but one */
        {"\xc2\x85  x", "\xc2\x85 | x"},
        /* U+FEFF is not \s for Oniguruma: it is punctuation-like, then "  x" */
        {"\xef\xbb\xbf  x", "\xef\xbb\xbf| | x"},
        {"\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xe4\xb8\x96", "\xe4\xbd\xa0\xe5\xa5\xbd|\xef\xbc\x8c\xe4\xb8\x96"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const unsigned char *s = (const unsigned char *)cases[c][0];
        size_t n = strlen(cases[c][0]);
        char got[256] = "";
        size_t g = 0;
        for (size_t i = 0; i < n;) {
            size_t e = tok_scan_next(s, n, i);
            CHECK(e > i && e <= n, "case %zu: no progress", c);
            if (i) got[g++] = '|';
            memcpy(got + g, s + i, e - i);
            g += e - i;
            i = e;
        }
        got[g] = 0;
        CHECK(strcmp(got, cases[c][1]) == 0, "case %zu: got '%s' want '%s'", c, got, cases[c][1]);
    }
}

/* NormalizationTest.txt: NFC(c1) = NFC(c2) = NFC(c3) = c2, NFC(c4) = NFC(c5) = c4. */
static int parse_seq(const char *f, unsigned char *out) {
    int n = 0;
    char *end;
    while (*f && *f != ';') {
        unsigned long cp = strtoul(f, &end, 16);
        if (end == f) break;
        n += utf8_encode((uint32_t)cp, out + n);
        f = end;
        while (*f == ' ') f++;
    }
    return n;
}

static void test_nfc(void) {
    const char *path = getenv("NFC_TEST");
    if (!path) SKIP("NFC_TEST not set (run.sh sets it to the UCD's NormalizationTest.txt)");
    FILE *f = fopen(path, "r");
    CHECK(f, "cannot open %s", path);
    char line[1024];
    int lines = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '@' || line[0] == '\n') continue;
        unsigned char col[5][128];
        int len[5];
        const char *p = line;
        for (int k = 0; k < 5; k++) {
            len[k] = parse_seq(p, col[k]);
            p = strchr(p, ';');
            if (!p) break;
            p++;
        }
        for (int k = 0; k < 5; k++) {
            int want = k < 3 ? 1 : 3;
            unsigned char *o;
            size_t ol;
            if (uni_nfc(col[k], (size_t)len[k], &o, &ol)) { fclose(f); FAIL("out of memory"); }
            const unsigned char *got = o ? o : col[k];
            size_t gl = o ? ol : (size_t)len[k];
            if (gl != (size_t)len[want] || memcmp(got, col[want], gl) != 0) {
                if (bad++ < 3) fprintf(stderr, "# NFC mismatch line: %s", line);
            }
            free(o);
        }
        lines++;
    }
    fclose(f);
    CHECK(lines > 10000, "only %d test lines", lines);
    CHECK(bad == 0, "%d of %d NFC cases wrong", bad, lines * 5);
}

static void test_utf8_raw_bytes(void) {
    /* overlong, surrogate, truncated, above U+10FFFF: one raw byte each */
    const unsigned char s[] = {0xC0, 0x80, 0xED, 0xA0, 0x80, 0xE2, 0x82, 0xF4, 0x90, 0x80, 0x80};
    int len;
    for (size_t i = 0; i < sizeof s; i++) {
        uint32_t cp = utf8_decode(s + i, sizeof s - i, &len);
        CHECK(cp == UNI_RAW_BYTE(s[i]) && len == 1, "byte %zu decoded as U+%X len %d", i, cp, len);
    }
    const unsigned char ok[] = {0xF0, 0x9F, 0x98, 0x80};
    CHECK(utf8_decode(ok, 4, &len) == 0x1F600 && len == 4, "emoji");
}

static void test_train_small(void) {
    const char *text =
        "the cat sat on the mat. the cat ate the rat. <|im_start|>user\nthe the the<|im_end|>\n"
        "there is a theme in these theses; the thin thing thinks.\n";
    const char *texts[] = {text};
    size_t lens[] = {strlen(text)};
    char err[256], dir[300];
    struct tokenizer *t = tokenizer_train(texts, lens, 1, 300, NULL, err, sizeof err);
    CHECK(t, "train: %s", err);
    CHECK(tokenizer_vocab_size(t) <= 300, "vocab %d > 300", tokenizer_vocab_size(t));
    int32_t the = tokenizer_token_id(t, "the"), sthe = tokenizer_token_id(t, "Ġthe");
    CHECK(the >= 256 && sthe >= 256, "frequent words not learnt: the=%d Ġthe=%d", the, sthe);
    CHECK(tokenizer_token_id(t, "<|im_start|>") >= 0 && tokenizer_token_id(t, "</think>") >= 0, "special tokens missing");
    int32_t *ids;
    int n = tokenizer_encode(t, text, strlen(text), &ids);
    CHECK(n > 0 && n < (int)strlen(text) / 2, "poor compression: %d ids for %zu bytes", n, strlen(text));
    size_t len;
    char *back = tokenizer_decode(t, ids, n, &len);
    free(ids);
    CHECK(back && len == strlen(text) && memcmp(back, text, len) == 0, "round trip");
    free(back);
    snprintf(dir, sizeof dir, "%s/trained", tmpdir);
    CHECK(tokenizer_save(t, dir, err, sizeof err) == 0, "save: %s", err);
    struct tokenizer *u = tokenizer_load(dir, err, sizeof err);
    CHECK(u, "reload: %s", err);
    int32_t *a, *b;
    const char *probe = "the thin cat thinks about themes";
    int na = tokenizer_encode(t, probe, strlen(probe), &a), nb = tokenizer_encode(u, probe, strlen(probe), &b);
    int same = na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0;
    free(a);
    free(b);
    tokenizer_free(t);
    tokenizer_free(u);
    CHECK(same, "reloaded tokenizer encodes differently");
    CHECK(!tokenizer_train(texts, lens, 1, 100, NULL, err, sizeof err) && strstr(err, "minimum"), "tiny vocab accepted");
}

/* The incremental trainer against the textbook one: recount every pair of
 * every word after each merge, take the most frequent (ties: smaller ids),
 * on the same pieces. The merges must come out the same, in the same order. */
static void test_train_matches_naive(void) {
    const char *text =
        "low lower lowest newer newest wider widest; aaaa aaa aa a bbbbbb abab abba baab "
        "the theme thematic then there therein. 1234 12 21 \n\n  spaces   here\tand\tthere "
        "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xbd\xa0\xe5\xa5\xbd caf\xc3\xa9 caf\xc3\xa9s";
    const char *texts[] = {text};
    size_t lens[] = {strlen(text)};
    char err[256];
    int vocab = 256 + 9 + 120;
    struct tokenizer *t = tokenizer_train(texts, lens, 1, vocab, NULL, err, sizeof err);
    CHECK(t, "train: %s", err);
    /* naive: words as symbol arrays */
    int32_t sym[64][256];
    int wn[64], nw = 0;
    uint32_t map[256];
    int32_t byte_id[256];
    tok_byte_to_unicode(map);
    int next = 0;
    for (uint32_t c = 0; c < 324; c++)
        for (int b = 0; b < 256; b++)
            if (map[b] == c) byte_id[b] = next++;
    unsigned char tok[1024][64];
    int tlen[1024];
    for (int b = 0; b < 256; b++) tok[byte_id[b]][0] = (unsigned char)b, tlen[byte_id[b]] = 1;
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text);
    for (size_t i = 0; i < n;) {
        size_t e = tok_scan_next(s, n, i);
        wn[nw] = (int)(e - i);
        for (size_t k = i; k < e; k++) sym[nw][k - i] = byte_id[s[k]];
        nw++;
        i = e;
    }
    int n_tok = 256, merges = 0;
    while (n_tok < vocab - 9) {
        int64_t best = 0;
        int32_t ba = -1, bb = -1;
        for (int w = 0; w < nw; w++)
            for (int k = 0; k + 1 < wn[w]; k++) {
                int32_t a = sym[w][k], b = sym[w][k + 1];
                int64_t c = 0; /* adjacent occurrences of (a, b) in all words */
                for (int v = 0; v < nw; v++)
                    for (int q = 0; q + 1 < wn[v]; q++)
                        if (sym[v][q] == a && sym[v][q + 1] == b) c++;
                if (c > best || (c == best && c > 0 && ((int64_t)a < ba || (a == ba && b < bb)))) best = c, ba = a, bb = b;
            }
        if (best <= 0) break;
        unsigned char cat[128];
        int cl = tlen[ba] + tlen[bb];
        memcpy(cat, tok[ba], (size_t)tlen[ba]);
        memcpy(cat + tlen[ba], tok[bb], (size_t)tlen[bb]);
        int32_t m = -1;
        for (int k = 0; k < n_tok; k++)
            if (tlen[k] == cl && memcmp(tok[k], cat, (size_t)cl) == 0) m = k;
        if (m < 0) { m = n_tok++; memcpy(tok[m], cat, (size_t)cl); tlen[m] = cl; }
        CHECK(merges < t->n_merges, "naive made more merges than %d", t->n_merges);
        CHECK(t->merges[merges][0] == ba && t->merges[merges][1] == bb, "merge %d: ours (%d,%d) naive (%d,%d)", merges,
              t->merges[merges][0], t->merges[merges][1], ba, bb);
        merges++;
        for (int w = 0; w < nw; w++) {
            int o = 0;
            for (int k = 0; k < wn[w];) {
                if (k + 1 < wn[w] && sym[w][k] == ba && sym[w][k + 1] == bb) sym[w][o++] = m, k += 2;
                else sym[w][o++] = sym[w][k++];
            }
            wn[w] = o;
        }
    }
    int ours = t->n_merges;
    tokenizer_free(t);
    CHECK(merges == ours && merges > 50, "naive %d merges, ours %d", merges, ours);
}

/* Several threads encoding at once share the BPE cache: same ids as alone. */
struct mt_arg {
    const struct tokenizer *t;
    const char *text;
    const int32_t *want;
    int n_want, bad;
};

static void *mt_worker(void *p) {
    struct mt_arg *a = p;
    for (int r = 0; r < 200; r++) {
        int32_t *ids;
        int n = tokenizer_encode(a->t, a->text + r % 7, strlen(a->text + r % 7), &ids);
        if (r % 7 == 0 && (n != a->n_want || memcmp(ids, a->want, (size_t)n * sizeof *ids) != 0)) a->bad++;
        if (n >= 0) free(ids);
    }
    return NULL;
}

static void test_threads_share_cache(void) {
    const char *text = "the cat sat on the mat; hello world aaaa heller hellos <think> ll ee hh 1234 ÆØÅ 你好 ";
    const char *texts[] = {text};
    size_t lens[] = {strlen(text)};
    char err[256];
    struct tokenizer *t = tokenizer_train(texts, lens, 1, 300, NULL, err, sizeof err);
    CHECK(t, "train: %s", err);
    int32_t *want;
    int n = tokenizer_encode(t, text, strlen(text), &want);
    pthread_t th[4];
    struct mt_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct mt_arg){t, text, want, n, 0};
        pthread_create(&th[i], NULL, mt_worker, &args[i]);
    }
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        bad += args[i].bad;
    }
    free(want);
    tokenizer_free(t);
    CHECK(bad == 0, "%d encodes differed under threads", bad);
}

/* --- chat -------------------------------------------------------------------- */

static struct tokenizer *tiny(void) {
    char err[256];
    char *j = tiny_json(0, NULL);
    struct tokenizer *t = load_text(j, strlen(j), err, sizeof err);
    free(j);
    return t;
}

static void test_chat_render(void) {
    struct chat_message m[] = {
        {"system", "You are helpful.", NULL},
        {"user", "Hi", NULL},
        {"assistant", "<think>\nplan\n</think>\n\nHello!", NULL},
        {"user", "And?", NULL},
        {"assistant", "<think>\nmore\n</think>\n\nDone.", NULL},
        {"tool", "42", NULL},
        {"tool", "43", NULL},
    };
    char *s;
    size_t n;
    CHECK(chat_render(m, 5, 1, 1, &s, &n) == 0, "render");
    const char *want =
        "<|im_start|>system\nYou are helpful.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"          /* before the last query: no think */
        "<|im_start|>user\nAnd?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nmore\n</think>\n\nDone.<|im_end|>\n"
        "<|im_start|>assistant\n";
    int ok = strcmp(s, want) == 0;
    if (!ok) fprintf(stderr, "# got:\n%s\n", s);
    free(s);
    CHECK(ok, "render differs (above)");
    CHECK(chat_render(m, 7, 0, 0, &s, &n) == 0, "render with tools");
    ok = strstr(s, "Done.<|im_end|>\n<|im_start|>user\n<tool_response>\n42\n</tool_response>\n<tool_response>\n43\n"
                   "</tool_response><|im_end|>\n") != NULL;
    free(s);
    CHECK(ok, "tool responses not grouped into one user turn");
    CHECK(chat_render(m + 1, 1, 1, 0, &s, &n) == 0 &&
              strcmp(s, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n") == 0,
          "enable_thinking=false");
    free(s);
    struct chat_message bad = {"wizard", "x", NULL};
    CHECK(chat_render(&bad, 1, 0, 1, &s, &n) != 0, "unknown role accepted");
}

static void test_chat_mask_and_verbatim(void) {
    struct tokenizer *t = tiny();
    CHECK(t, "tiny tokenizer");
    struct chat c;
    chat_init(&c);
    struct chat_message m[] = {{"user", "hello", NULL}};
    CHECK(chat_append_messages(&c, t, m, 1, 1, 1) == 0, "append");
    int prompt = c.n;
    /* "h","e","l","l","o" as the model generated them: encode would give 259 */
    int32_t gen[] = {'h', 'e', 'l', 'l', 'o'};
    CHECK(chat_append_generated(&c, gen, 5) == 0, "generated");
    CHECK(chat_end_generated(&c, t) == 0, "end");
    int32_t im_end = tokenizer_token_id(t, "<|im_end|>");
    CHECK(c.n == prompt + 5 + 2 && c.ids[prompt + 5] == im_end && c.ids[prompt + 6] == '\n', "turn not closed");
    for (int i = 0; i < c.n; i++)
        CHECK(c.mask[i] == (i >= prompt && i < prompt + 5), "mask[%d] = %d", i, c.mask[i]);
    CHECK(memcmp(c.ids + prompt, gen, sizeof gen) == 0, "generated ids re-tokenised");
    /* a generated turn that ends with <|im_end|> is not closed twice */
    int before = c.n;
    CHECK(chat_append_generation_prompt(&c, t, 1) == 0, "prompt");
    int32_t gen2[] = {'o', 'k', im_end};
    chat_append_generated(&c, gen2, 3);
    chat_end_generated(&c, t);
    int p2 = c.n - 4;
    CHECK(c.ids[c.n - 1] == '\n' && c.ids[c.n - 2] == im_end && c.mask[c.n - 2] == 1 && c.ids[p2] == 'o',
          "double <|im_end|>");
    CHECK(c.n > before, "nothing appended");
    chat_free(&c);
    tokenizer_free(t);
}

/* --render: our rendering + ids of each case, for run.sh's jinja2/JS comparison. */
static int render_cases(const char *cases_path, const char *dir) {
    char err[512];
    struct tokenizer *t = tokenizer_load(dir, err, sizeof err);
    if (!t) { fprintf(stderr, "%s\n", err); return 1; }
    FILE *f = fopen(cases_path, "rb");
    if (!f) { perror(cases_path); return 1; }
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *cases = cJSON_Parse(buf), *cs;
    if (!cJSON_IsArray(cases)) { fprintf(stderr, "bad cases file\n"); return 1; }
    cJSON *out = cJSON_CreateArray();
    cJSON_ArrayForEach(cs, cases) {
        cJSON *msgs = cJSON_GetObjectItem(cs, "messages"), *mj;
        int nm = cJSON_GetArraySize(msgs), k = 0;
        struct chat_message *m = calloc((size_t)nm + 1, sizeof *m);
        cJSON_ArrayForEach(mj, msgs) {
            m[k].role = cJSON_GetStringValue(cJSON_GetObjectItem(mj, "role"));
            m[k].content = cJSON_GetStringValue(cJSON_GetObjectItem(mj, "content"));
            m[k].reasoning_content = cJSON_GetStringValue(cJSON_GetObjectItem(mj, "reasoning_content"));
            k++;
        }
        int gen = cJSON_IsTrue(cJSON_GetObjectItem(cs, "add_generation_prompt"));
        cJSON *et = cJSON_GetObjectItem(cs, "enable_thinking");
        int think = !cJSON_IsFalse(et);
        char *text;
        size_t len;
        struct chat c;
        chat_init(&c);
        cJSON *o = cJSON_CreateObject();
        if (chat_render(m, nm, gen, think, &text, &len) == 0 && chat_append_messages(&c, t, m, nm, gen, think) == 0) {
            cJSON_AddStringToObject(o, "text", text);
            cJSON_AddItemToObject(o, "ids", cJSON_CreateIntArray(c.ids, c.n));
            free(text);
        }
        cJSON_AddItemToArray(out, o);
        chat_free(&c);
        free(m);
    }
    char *s = cJSON_PrintUnformatted(out);
    puts(s);
    free(s);
    cJSON_Delete(out);
    cJSON_Delete(cases);
    tokenizer_free(t);
    return 0;
}

/* --resave SRC DST: load and save (run.sh checks the copy with the JS oracle). */
static int resave(const char *src, const char *dst) {
    char err[512];
    struct tokenizer *t = tokenizer_load(src, err, sizeof err);
    if (!t || tokenizer_save(t, dst, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        tokenizer_free(t);
        return 1;
    }
    tokenizer_free(t);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--render") == 0) return render_cases(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "--resave") == 0) return resave(argv[2], argv[3]);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/viv-tok-test.XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    static const struct test_case tests[] = {
        {"tiny_merges_strings", test_tiny_merges_strings},
        {"tiny_merges_lists", test_tiny_merges_lists},
        {"save_roundtrip", test_save_roundtrip},
        {"added_token_also_in_vocab", test_added_token_also_in_vocab},
        {"hostile_json", test_hostile_json},
        {"mutated_json", test_mutated_json},
        {"scanner", test_scanner},
        {"utf8_raw_bytes", test_utf8_raw_bytes},
        {"nfc_normalization_test", test_nfc},
        {"train_small", test_train_small},
        {"threads_share_cache", test_threads_share_cache},
        {"train_matches_naive", test_train_matches_naive},
        {"chat_render", test_chat_render},
        {"chat_mask_and_verbatim", test_chat_mask_and_verbatim},
    };
    int rc = run_test_cases(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "# could not remove %s\n", tmpdir);
    return rc;
}
