/*
 * gen.h - the task generators, one per task shape (envs/gen_<shape>.c), and
 * the helpers they share (envs/gen_common.c).
 *
 * A generator draws entities from the databases with g->rng, builds a task
 * whose answer follows from the database rows alone, and emits it into the
 * split of its entity (split_of) until every split's quota is met or its
 * attempt budget runs out. Each task carries a reference solution: code
 * that, run in the jail against /db/org.Hs.eg.sqlite and /db/GO.sqlite,
 * recomputes the answer from the databases and prints it last; verify.c
 * keeps a task only if it does.
 */
#ifndef VIV_ENVS_GEN_H
#define VIV_ENVS_GEN_H

#include "biodb.h"
#include "task.h"

typedef void (*gen_fn)(const struct biodb *db, struct gen_ctx *g);

struct generator {
    const char *task_name;
    gen_fn fn;
};

void gen_causal_gene(const struct biodb *db, struct gen_ctx *g);
void gen_variant_prioritization(const struct biodb *db, struct gen_ctx *g);
void gen_dbqa(const struct biodb *db, struct gen_ctx *g);
void gen_seqqa(const struct biodb *db, struct gen_ctx *g);
void gen_rare_disease(const struct biodb *db, struct gen_ctx *g);
void gen_patient_gene_detection(const struct biodb *db, struct gen_ctx *g);
void gen_screen_gene_retrieval(const struct biodb *db, struct gen_ctx *g);

/* All generators, in the order tasks are written. NULL-terminated. */
extern const struct generator generators[];

/* Where the databases are inside the jail (policies' @biodb mount). */
#define JAIL_DB_DIR "/db"
/* The sentence every database task's prompt carries. */
#define PROMPT_DB_NOTE                                                                             \
    "The databases are available read-only at /db/org.Hs.eg.sqlite (Bioconductor org.Hs.eg.db) " \
    "and /db/GO.sqlite (GO.db)."
#define INSUFFICIENT "Insufficient information to answer the question"

/* A random protein-coding gene with a unique symbol. */
int random_usable_gene(const struct biodb *db, struct rng *r);

/* Terms of gene g in `sets` (bp or cc) of ontology `ont` annotated to
 * between minc and maxc protein-coding genes, shuffled. Returns the count
 * (at most max) in out. */
int gene_terms(const struct biodb *db, const struct intsets *sets, char ont, int g, int minc, int maxc,
               struct rng *r, int *out, int max);

/* Python lines opening both databases read-only as `db` (GO attached as go). */
void py_open_dbs(struct sb *code);

/* Multiple choice: shuffle n option texts; writes "A. ...\n" lines to b and
 * the letters into letters[i] for option i. */
/* Lay out n options as "A. ..." lines: distractors shuffled, option `correct`
 * at position `correct_pos`; letters[i] is option i's letter. */
void mc_layout(struct rng *r, const char *const *opts, int n, int correct, int correct_pos, struct sb *b,
               char *letters);

/* JSON array of strings for meta. */
cJSON *json_strings(const char *const *v, int n);

/* The options of a multiple-choice task as TASK["options"]: {"A": text, ...}
 * in letter order (opts[i] is shown under letters[i], as mc_layout left them). */
cJSON *mc_options_json(const char *const *opts, const char *letters, int n);
/* The prompt's sentence about TASK (protocol.h: proto_with_task_inputs),
 * naming the keys of `inputs`. */
void sb_task_inputs_note(struct sb *b, const cJSON *inputs);

#endif
