/*
 * cmd_tokenize.c - `viv tokenize`: encode, decode, train.
 *
 *   viv tokenize encode --tokenizer DIR [--json]
 *       --json: stdin is a JSON array; each element is a string (read whole:
 *       \u0000 is a NUL byte, a lone surrogate U+FFFD, as JSON.parse and
 *       TextEncoder give them), or an array of byte values 0..255 (for text
 *       that is not valid UTF-8);
 *       stdout is a JSON array of token-id arrays.
 *       Without --json: stdin is raw text, stdout the ids on one line.
 *   viv tokenize decode --tokenizer DIR [--json | --bytes]
 *       --json: stdin is a JSON array of id arrays; stdout a JSON array of
 *       strings. Bytes that are not valid UTF-8 become U+FFFD, one per
 *       maximal invalid subsequence (what Python's errors="replace", which
 *       HF's decode uses, and JavaScript's TextDecoder do).
 *       --bytes: the same input; stdout a JSON array of byte-value arrays,
 *       exact.  Without either: stdin is whitespace-separated ids, stdout
 *       the raw bytes.
 *   viv tokenize train --vocab N --corpus FILE... --out DIR
 *       train a byte-level BPE (model/tokenizer_train.c) and write
 *       DIR/tokenizer.json and DIR/tokenizer_config.json; progress on stderr,
 *       one JSON summary line on stdout.
 *   viv tokenize bench --tokenizer DIR --corpus FILE [--runs N]
 *       encode every line of FILE, N times (default 5); one JSON line with
 *       the seconds of each run (loading excluded) and the median MB/s.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../sandbox/base/json_text.h"
#include "../sandbox/base/args.h"
#include "tokenizer.h"
#include "tokenizer_cli.h"
#include "unicode.h"

/* What `viv tokenize`'s flags fill in. */
static struct {
    const char *dir, *corpus, *out;
    const char **files;
    int n_files, json, bytes, runs, vocab;
} ta;

static int add_corpus(void *ctx, const char *v, char *err, size_t errlen) {
    (void)ctx, (void)err, (void)errlen;
    ta.corpus = v; /* bench: the one file */
    ta.files[ta.n_files++] = v; /* train: the first of its files */
    return 0;
}

/* One line per flag (each action uses its own; see the synopsis); the help is
 * generated from this table (sandbox/base/args.h). */
static const struct arg_opt tokenize_opts[] = {
    {"--tokenizer", ARG_STR, &ta.dir, 0, 0, "DIR", "encode, decode, bench: the directory with tokenizer.json"},
    {"--json", ARG_FLAG, &ta.json, 0, 0, NULL, "encode: read a JSON array of strings (or byte-value arrays), print id arrays;\n"
                                                "decode: read id arrays, print strings (invalid UTF-8 as U+FFFD)"},
    {"--bytes", ARG_FLAG, &ta.bytes, 0, 0, NULL, "decode: print exact byte arrays instead"},
    {"--corpus", ARG_FN, NULL, 0, 0, "FILE...", "train: the text files (all the words after it); bench: one file", add_corpus},
    {"--runs", ARG_INT, &ta.runs, 1, 64, "N", "bench: timed runs (default 5)"},
    {"--vocab", ARG_INT, &ta.vocab, 1, 1 << 24, "N", "train: the vocabulary size"},
    {"--out", ARG_STR, &ta.out, 0, 0, "DIR", "train: where tokenizer.json is written"},
    {0},
};

static const struct arg_cmd tokenize_cmd = {
    .prog = "viv tokenize",
    .synopsis = "viv tokenize encode --tokenizer DIR [--json]\n"
                "       viv tokenize decode --tokenizer DIR [--json | --bytes]\n"
                "       viv tokenize train --vocab N --corpus FILE... --out DIR\n"
                "       viv tokenize bench --tokenizer DIR --corpus FILE [--runs N]",
    .about = "Byte-level BPE as Qwen3's tokenizer.json: encode stdin to ids, decode ids, train one.\n",
    .opts = tokenize_opts,
    .examples = "  echo 'hello world' | viv tokenize encode --tokenizer runs/viv-bio-tiny/checkpoints/step-000030\n"
                "  viv tokenize train --vocab 1024 --corpus a.txt b.txt --out tok/\n",
};

static void usage(FILE *f) { args_help(&tokenize_cmd, f); }

/* Parse argv[1..] (argv[0] is the action); 0 to run, else the exit status. */
static int parse_tokenize(int argc, char **argv) {
    ta.dir = ta.corpus = ta.out = NULL;
    ta.n_files = ta.json = ta.bytes = ta.vocab = 0;
    ta.runs = 5;
    ta.files = calloc((size_t)argc + 1, sizeof *ta.files);
    if (!ta.files) return 1;
    struct args_rest rest;
    struct arg_cmd c = tokenize_cmd;
    c.max_positional = argc; /* the files after --corpus */
    int rc = args_parse(&c, argc, argv, &rest);
    if (rc) return rc == ARGS_HELP ? -1 : 2;
    if (rest.npos && !ta.n_files) {
        args_error(&tokenize_cmd, "unexpected argument '%s'", rest.pos[0]);
        free(rest.pos);
        return 2;
    }
    for (int i = 0; i < rest.npos; i++) ta.files[ta.n_files++] = rest.pos[i];
    free(rest.pos);
    return 0;
}

static char *read_all(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n + 1 >= cap) {
            char *nb = realloc(b, cap * 2);
            if (!nb) { free(b); return NULL; }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n - 1, f);
        if (r == 0) break;
        n += r;
    }
    if (!b || ferror(f)) { free(b); return NULL; }
    b[n] = 0;
    *len = n;
    return b;
}

static struct tokenizer *load_or_die(const char *dir) {
    char err[512];
    if (!dir) {
        fprintf(stderr, "viv tokenize: --tokenizer DIR is required\n");
        return NULL;
    }
    struct tokenizer *t = tokenizer_load(dir, err, sizeof err);
    if (!t) fprintf(stderr, "viv tokenize: %s\n", err);
    return t;
}

static void print_ids(FILE *o, const int32_t *ids, int n, const char *sep) {
    for (int i = 0; i < n; i++) fprintf(o, "%s%d", i ? sep : "", ids[i]);
}

static int json_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* The element of an encode --json array at in[i..end) -> bytes (malloc'd).
 * A string is decoded from the text itself, not through cJSON, whose C
 * strings end at the first \u0000. */
static unsigned char *element_bytes(const char *in, size_t i, size_t end, size_t *len) {
    while (i < end && json_space(in[i])) i++;
    if (i < end && in[i] == '"') {
        char *b;
        return json_string_decode(in + i, end - i, &b, len) ? (unsigned char *)b : NULL;
    }
    cJSON *e = cJSON_ParseWithLength(in + i, end - i);
    int n = cJSON_IsArray(e) ? cJSON_GetArraySize(e) : -1;
    unsigned char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    int k = 0;
    const cJSON *x;
    if (b) cJSON_ArrayForEach(x, e) {
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 255 || x->valuedouble != (int)x->valuedouble) {
            free(b);
            b = NULL;
            break;
        }
        b[k++] = (unsigned char)x->valueint;
    }
    cJSON_Delete(e);
    *len = (size_t)k;
    return b;
}

/* Encode each element of the JSON array in[0..len), printing the id arrays. */
static int encode_json_array(struct tokenizer *t, const char *in, size_t len) {
    size_t i = 0;
    while (i < len && json_space(in[i])) i++;
    size_t end = json_value_end(in, len, i), tail = end;
    while (tail < len && json_space(in[tail])) tail++;
    if (!end || in[i] != '[' || tail != len) {
        fprintf(stderr, "viv tokenize: stdin is not a JSON array\n");
        return 1;
    }
    putchar('[');
    int rc = 0;
    size_t k = i + 1;
    for (int idx = 0;; idx++) {
        size_t e = json_value_end(in, end - 1, k); /* the closing bracket is no element */
        if (!e) break;                             /* an empty array */
        size_t n;
        unsigned char *b = element_bytes(in, k, e, &n);
        if (!b) {
            fprintf(stderr, "viv tokenize: element %d is not a string or an array of bytes\n", idx);
            rc = 1;
            break;
        }
        int32_t *ids;
        int m = tokenizer_encode(t, (const char *)b, n, &ids);
        free(b);
        if (m < 0) {
            fprintf(stderr, "viv tokenize: cannot encode element %d\n", idx);
            rc = 1;
            break;
        }
        printf("%s[", idx ? "," : "");
        print_ids(stdout, ids, m, ",");
        putchar(']');
        free(ids);
        k = e;
        while (k < end && in[k] != ',') k++; /* json_value_end checked what lies between */
        if (k++ >= end) break;
    }
    printf("]\n");
    return rc;
}

static int do_encode(struct tokenizer *t, int json) {
    size_t len;
    char *in = read_all(stdin, &len);
    if (!in) { fprintf(stderr, "viv tokenize: cannot read stdin\n"); return 1; }
    int rc = 0;
    if (!json) {
        int32_t *ids;
        int n = tokenizer_encode(t, in, len, &ids);
        free(in);
        if (n < 0) { fprintf(stderr, "viv tokenize: cannot encode the input\n"); return 1; }
        print_ids(stdout, ids, n, " ");
        putchar('\n');
        free(ids);
        return 0;
    }
    rc = encode_json_array(t, in, len);
    free(in);
    return rc;
}

/* s[0..n) as a JSON string, invalid UTF-8 -> U+FFFD per maximal subpart (WHATWG). */
static void print_json_string(FILE *o, const unsigned char *s, size_t n) {
    fputc('"', o);
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (c == '"' || c == '\\') fprintf(o, "\\%c", c);
            else if (c == '\n') fputs("\\n", o);
            else if (c == '\r') fputs("\\r", o);
            else if (c == '\t') fputs("\\t", o);
            else if (c < 0x20 || c == 0x7f) fprintf(o, "\\u%04x", c);
            else fputc((int)c, o);
            i++;
            continue;
        }
        int len;
        uint32_t cp = utf8_decode(s + i, n - i, &len);
        if (cp < UNI_RAW_BASE) {
            fwrite(s + i, 1, (size_t)len, o);
            i += (size_t)len;
            continue;
        }
        /* the longest prefix of a valid sequence starting here, replaced as one */
        int need = c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : 0;
        size_t j = i + 1;
        for (int k = 0; k < need && j < n; k++, j++) {
            unsigned lo = 0x80, hi = 0xBF;
            if (k == 0 && c == 0xE0) lo = 0xA0;
            if (k == 0 && c == 0xED) hi = 0x9F;
            if (k == 0 && c == 0xF0) lo = 0x90;
            if (k == 0 && c == 0xF4) hi = 0x8F;
            if (s[j] < lo || s[j] > hi) break;
        }
        fputs("\xEF\xBF\xBD", o);
        i = j;
    }
    fputc('"', o);
}

static int do_decode(struct tokenizer *t, int json, int bytes) {
    size_t len;
    char *in = read_all(stdin, &len);
    if (!in) { fprintf(stderr, "viv tokenize: cannot read stdin\n"); return 1; }
    if (!json && !bytes) {
        size_t cap = 1024, n = 0;
        int32_t *ids = malloc(cap * sizeof *ids);
        char *p = in, *end;
        while (ids) {
            while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
            if (!*p) break;
            errno = 0;
            long v = strtol(p, &end, 10);
            if (end == p || errno || v < 0 || v > INT32_MAX) {
                fprintf(stderr, "viv tokenize: not a token id: '%.20s'\n", p);
                free(ids);
                free(in);
                return 1;
            }
            if (n == cap) {
                int32_t *ni = realloc(ids, cap * 2 * sizeof *ni);
                if (!ni) { free(ids); ids = NULL; break; }
                ids = ni;
                cap *= 2;
            }
            ids[n++] = (int32_t)v;
            p = end;
        }
        free(in);
        size_t olen;
        char *out = ids && n < INT32_MAX ? tokenizer_decode(t, ids, (int)n, &olen) : NULL;
        free(ids);
        if (!out) { fprintf(stderr, "viv tokenize: cannot decode (id outside the vocabulary?)\n"); return 1; }
        fwrite(out, 1, olen, stdout);
        free(out);
        return 0;
    }
    cJSON *arr = cJSON_ParseWithLength(in, len);
    free(in);
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        fprintf(stderr, "viv tokenize: stdin is not a JSON array of id arrays\n");
        return 1;
    }
    int rc = 0, k = 0;
    putchar('[');
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        int n = cJSON_IsArray(e) ? cJSON_GetArraySize(e) : -1;
        int32_t *ids = n >= 0 ? malloc(((size_t)n + 1) * sizeof *ids) : NULL;
        int i = 0, ok = ids != NULL;
        const cJSON *x;
        if (ok) cJSON_ArrayForEach(x, e) {
            if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > INT32_MAX ||
                x->valuedouble != (double)(int32_t)x->valuedouble) { ok = 0; break; }
            ids[i++] = (int32_t)x->valuedouble;
        }
        size_t olen;
        char *out = ok ? tokenizer_decode(t, ids, n, &olen) : NULL;
        free(ids);
        if (!out) {
            fprintf(stderr, "viv tokenize: element %d: not an array of ids in the vocabulary\n", k);
            rc = 1;
            break;
        }
        if (k) putchar(',');
        if (bytes) {
            putchar('[');
            for (size_t j = 0; j < olen; j++) printf("%s%u", j ? "," : "", (unsigned char)out[j]);
            putchar(']');
        } else {
            print_json_string(stdout, (const unsigned char *)out, olen);
        }
        free(out);
        k++;
    }
    printf("]\n");
    cJSON_Delete(arr);
    return rc;
}

static int progress_tty;

static void train_progress(int done, int total) {
    if (progress_tty) {
        int w = 40, f = total ? (int)((long)done * w / total) : w;
        fprintf(stderr, "\rtrain [%.*s%*s] %d/%d merges", f, "########################################", w - f, "", done,
                total);
        if (done >= total) fputc('\n', stderr);
    } else {
        fprintf(stderr, "train: %d/%d merges\n", done, total);
    }
}

static int do_train(void) {
    int vocab = ta.vocab, n_files = ta.n_files;
    const char *out = ta.out;
    const char **files = ta.files;
    if (!vocab || !out || !n_files) {
        args_error(&tokenize_cmd, "train: --vocab N, --corpus FILE... and --out DIR are required");
        return 2;
    }
    char **texts = calloc((size_t)n_files, sizeof *texts);
    size_t *lens = calloc((size_t)n_files, sizeof *lens), total = 0;
    int rc = 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; texts && lens && i < n_files; i++) {
        FILE *f = fopen(files[i], "rb");
        if (!f) { fprintf(stderr, "viv tokenize train: %s: %s\n", files[i], strerror(errno)); goto done; }
        texts[i] = read_all(f, &lens[i]);
        fclose(f);
        if (!texts[i]) { fprintf(stderr, "viv tokenize train: %s: cannot read\n", files[i]); goto done; }
        total += lens[i];
    }
    char err[512];
    progress_tty = isatty(2);
    struct tokenizer *t =
        tokenizer_train((const char *const *)texts, lens, (size_t)n_files, vocab, train_progress, err, sizeof err);
    if (!t) { fprintf(stderr, "viv tokenize train: %s\n", err); goto done; }
    if (tokenizer_save(t, out, err, sizeof err)) {
        fprintf(stderr, "viv tokenize train: %s\n", err);
        tokenizer_free(t);
        goto done;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("{\"out\":\"%s\",\"vocab_size\":%d,\"corpus_bytes\":%zu,\"seconds\":%.3f}\n", out, tokenizer_vocab_size(t),
           total, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    tokenizer_free(t);
    rc = 0;
done:
    for (int i = 0; texts && i < n_files; i++) free(texts[i]);
    free(texts);
    free(lens);
    return rc;
}

static double now_s(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int do_bench(struct tokenizer *t, const char *corpus, int runs) {
    FILE *f = fopen(corpus, "rb");
    if (!f) { fprintf(stderr, "viv tokenize bench: %s: %s\n", corpus, strerror(errno)); return 1; }
    size_t len;
    char *text = read_all(f, &len);
    fclose(f);
    if (!text) { fprintf(stderr, "viv tokenize bench: cannot read %s\n", corpus); return 1; }
    double secs[64], cpu[64];
    long tokens = 0;
    for (int r = 0; r < runs; r++) {
        double t0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
        tokens = 0;
        for (size_t i = 0; i < len;) {
            const char *nl = memchr(text + i, '\n', len - i);
            size_t e = nl ? (size_t)(nl - text) : len;
            int32_t *ids;
            int n = tokenizer_encode(t, text + i, e - i, &ids);
            if (n < 0) { free(text); fprintf(stderr, "viv tokenize bench: encode failed\n"); return 1; }
            tokens += n;
            free(ids);
            i = e + 1;
        }
        secs[r] = now_s(CLOCK_MONOTONIC) - t0;
        cpu[r] = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    }
    /* wall and CPU time: on a loaded machine the CPU time is the steadier figure */
    printf("{\"impl\":\"viv\",\"bytes\":%zu,\"tokens\":%ld,\"seconds\":[", len, tokens);
    for (int r = 0; r < runs; r++) printf("%s%.4f", r ? "," : "", secs[r]);
    printf("],\"cpu_seconds\":[");
    for (int r = 0; r < runs; r++) printf("%s%.4f", r ? "," : "", cpu[r]);
    qsort(secs, (size_t)runs, sizeof *secs, cmp_double);
    qsort(cpu, (size_t)runs, sizeof *cpu, cmp_double);
    printf("],\"median_mb_s\":%.2f,\"median_cpu_mb_s\":%.2f}\n", (double)len / 1e6 / secs[runs / 2],
           (double)len / 1e6 / cpu[runs / 2]);
    free(text);
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    int encode = strcmp(argv[1], "encode") == 0, decode = strcmp(argv[1], "decode") == 0;
    int bench = strcmp(argv[1], "bench") == 0, train = strcmp(argv[1], "train") == 0;
    if (!encode && !decode && !bench && !train)
        return args_error(&tokenize_cmd, "unknown action '%s' (encode, decode, train, bench)", argv[1]);
    int prc = parse_tokenize(argc - 1, argv + 1);
    if (prc) {
        free(ta.files);
        return prc < 0 ? 0 : prc;
    }
    if (train) {
        int trc = do_train();
        free(ta.files);
        return trc;
    }
    free(ta.files);
    if (bench && !ta.corpus) return args_error(&tokenize_cmd, "bench: --corpus FILE is required");
    struct tokenizer *t = load_or_die(ta.dir);
    if (!t) return 1;
    int rc = bench ? do_bench(t, ta.corpus, ta.runs) : encode ? do_encode(t, ta.json) : do_decode(t, ta.json, ta.bytes);
    tokenizer_free(t);
    if (fflush(stdout) != 0) rc = 1;
    return rc;
}
