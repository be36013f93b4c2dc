/*
 * task.h - one generated task, the list they gather in, and the small tools
 * every generator shares: a seeded random stream, the entity-hash split, a
 * string builder, and literal quoting for the reference code's languages.
 *
 * A task is written as one JSONL line with exactly these fields (the eval
 * loader and the scripted teacher read them):
 *   instance_id, task_name, split, prompt, answer, grader,
 *   reference {tool, code}, meta {...}
 * Running reference.code with reference.tool in the sandbox prints `answer`
 * as the last line of its stdout.
 */
#ifndef VIV_ENVS_TASK_H
#define VIV_ENVS_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

enum split { SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST, NSPLITS };
extern const char *const split_names[NSPLITS];

/* The split of the entity a task is about (a gene's Entrez ID, a MIM number,
 * a sequence): a hash of "kind:entity" alone, so every task about the same
 * entity lands in the same split whatever the seed or the size, and no
 * answer crosses from train into val or test. 80/10/10. */
enum split split_of(const char *kind, const char *entity);

/* splitmix64: a seeded stream, the same on every machine. */
struct rng {
    uint64_t s;
};
struct rng rng_seed(uint64_t seed, const char *stream);
uint64_t rng_next(struct rng *r);
/* Uniform in [0, n); n > 0. */
long rng_below(struct rng *r, long n);
/* Fisher-Yates on an int array. */
void rng_shuffle_int(struct rng *r, int *a, int n);

uint64_t fnv1a64(const void *data, size_t len, uint64_t h);
#define FNV_OFFSET 1469598103934665603ull

/* A growing NUL-terminated string. */
struct sb {
    char *s;
    size_t len, cap;
};
void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_puts(struct sb *b, const char *s);
/* A double-quoted literal that both JSON and Python read back as `s`. */
void sb_pystr(struct sb *b, const char *s);
/* A single-quoted SQL literal ('' doubles a quote). */
void sb_sqlstr(struct sb *b, const char *s);
/* Give the string away (the builder is reset). Never NULL. */
char *sb_take(struct sb *b);

struct task {
    const char *task_name; /* static: the generator's name */
    enum split split;
    char *prompt;
    char *answer;
    const char *grader;   /* static: the Eval1 rule name */
    const char *ref_tool; /* "python", "sql" or "bash" */
    char *ref_code;
    cJSON *meta;
    /* set by verification */
    bool verified;
    char why[160];
};

/* What the reference prints last and an agent answers: meta.solution when
 * the grader's truth has another form (patient_gene_detection), else the
 * answer itself. */
const char *task_solution(const struct task *t);

struct tasklist {
    struct task *v;
    size_t n, cap;
};
void tasklist_free(struct tasklist *l);

/* What a generator is asked for and how far it got. */
struct gen_ctx {
    const char *task_name;
    struct rng rng;
    int want[NSPLITS];
    int have[NSPLITS];
    long attempts;
    struct tasklist *out;
    /* prompt hashes already emitted by this generator (no duplicates) */
    uint64_t *seen;
    size_t nseen, capseen;
};

bool gen_wants(const struct gen_ctx *g, enum split s);
bool gen_done(const struct gen_ctx *g);
/* Attempts a generator may make before it gives up on its quotas. */
long gen_attempt_budget(const struct gen_ctx *g);
/* Add a task (takes ownership of prompt, answer, code and meta). Returns 0
 * when added, 1 when dropped as a duplicate prompt or a full split. */
int gen_emit(struct gen_ctx *g, enum split s, const char *grader, char *prompt, char *answer,
             const char *tool, char *code, cJSON *meta);

/* One task as a single JSON line (no newline); caller frees. */
char *task_to_json(const struct task *t, const char *instance_id);

#endif
