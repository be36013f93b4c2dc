/*
 * gen_dbqa.c - multiple-choice questions about gene identifiers and
 * annotations (the shape of LAB-Bench DbQA in Eval1's lab_bench_dbqa).
 *
 * Five kinds: a gene's Ensembl gene ID, UniProt accession, cytogenetic band,
 * KEGG pathway, or which of four genes is annotated to a GO process. Four
 * options plus "Insufficient information to answer the question". For the
 * identifier kinds, about one question in seven asks about a gene that
 * org.Hs.eg.db really has no such identifier for, and then every listed
 * value belongs to other genes and "Insufficient information" is right.
 * Decoy values come from other genes and are never linked to the asked gene.
 * The task's inputs (the gene or GO term, and the options) are also given
 * as TASK in the Python tool (meta.inputs; protocol.h), and the reference
 * solution is Python: one parameterised org.Hs.eg.db query for the values
 * linked to the gene, then the option among them.
 */
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"
#include "gen.h"

enum qkind { Q_ENSEMBL, Q_UNIPROT, Q_BAND, Q_KEGG, Q_GO, NQ };

struct qdef {
    const char *kind;
    const char *q_before, *q_after; /* the question around "SYMBOL (gene name)" */
    const char *prefix;             /* shown before each value */
    const char *query;              /* the values as shown, for the gene TASK["gene"] (?) */
};

static const struct qdef qdefs[Q_GO] = {
    {"ensembl", "Which Ensembl gene ID does org.Hs.eg.db assign to the human gene ", "?", "",
     "SELECT e.ensembl_id FROM ensembl e JOIN gene_info i ON i._id = e._id WHERE i.symbol = ?"},
    {"uniprot", "Which UniProt accession does org.Hs.eg.db map to the human gene ", "?", "",
     "SELECT u.uniprot_id FROM uniprot u JOIN gene_info i ON i._id = u._id WHERE i.symbol = ?"},
    {"band", "On which cytogenetic band does org.Hs.eg.db place the human gene ", "?", "",
     "SELECT c.cytogenetic_location FROM cytogenetic_locations c JOIN gene_info i ON i._id = c._id"
     " WHERE i.symbol = ?"},
    {"kegg", "Which KEGG pathway does org.Hs.eg.db list the human gene ", " in?", "hsa",
     "SELECT 'hsa' || k.path_id FROM kegg k JOIN gene_info i ON i._id = k._id WHERE i.symbol = ?"},
};

static const struct strsets *sets_for(const struct biodb *db, enum qkind k) {
    return k == Q_ENSEMBL ? &db->ensembl : k == Q_UNIPROT ? &db->uniprot : k == Q_BAND ? &db->band : &db->kegg;
}

/* Fill vals[0..nopt) (value strings, not owned): the asked gene's value
 * first unless insufficient, then decoys. Returns the gene or -1. */
static int pick_identifier(const struct biodb *db, struct rng *r, enum qkind k, bool insufficient,
                           const char **vals) {
    const struct strsets *set = sets_for(db, k);
    int g = -1;
    for (int t = 0; t < 60 && g < 0; t++) {
        int c = random_usable_gene(db, r);
        if ((sets_count(set, c) == 0) == insufficient) g = c;
    }
    if (g < 0) return -1;
    int n = 0;
    if (!insufficient) vals[n++] = sets_of(set, g)[rng_below(r, sets_count(set, g))];
    for (int t = 0; t < 400 && n < 4; t++) {
        int h = random_usable_gene(db, r);
        int cnt = sets_count(set, h);
        if (h == g || cnt == 0) continue;
        const char *v = sets_of(set, h)[rng_below(r, cnt)];
        bool ok = !strsets_has(set, g, v);
        for (int i = 0; i < n && ok; i++) ok = strcmp(vals[i], v) != 0;
        if (ok) vals[n++] = v;
    }
    return n == 4 ? g : -1;
}

/* GO kind: the gene annotated to the term first, then three that are not. */
static int pick_go(const struct biodb *db, struct rng *r, int *term, int *genes) {
    int g = random_usable_gene(db, r);
    int terms[4];
    if (gene_terms(db, &db->bp, 'B', g, 5, 300, r, terms, 4) == 0) return -1;
    *term = terms[0];
    int n = 0;
    genes[n++] = g;
    for (int t = 0; t < 400 && n < 4; t++) {
        int h = random_usable_gene(db, r);
        bool ok = isets_count(&db->bp, h) > 0 && !intsets_has(&db->bp, h, *term);
        for (int i = 0; i < n && ok; i++) ok = genes[i] != h;
        if (ok) genes[n++] = h;
    }
    return n == 4 ? g : -1;
}

void gen_dbqa(const struct biodb *db, struct gen_ctx *g) {
    long budget = gen_attempt_budget(g);
    for (g->attempts = 0; g->attempts < budget && !gen_done(g); g->attempts++) {
        enum qkind k = (enum qkind)rng_below(&g->rng, NQ);
        bool insufficient = k != Q_GO && rng_below(&g->rng, 100) < 15;
        const char *vals[4];
        char *shown[5];
        int gene, term = -1, genes[4];
        if (k == Q_GO) {
            if ((gene = pick_go(db, &g->rng, &term, genes)) < 0) continue;
            for (int i = 0; i < 4; i++) vals[i] = db->genes[genes[i]].symbol;
        } else if ((gene = pick_identifier(db, &g->rng, k, insufficient, vals)) < 0) {
            continue;
        }
        const struct bgene *ge = &db->genes[gene];
        enum split s = split_of("gene", ge->entrez);
        if (!gen_wants(g, s)) continue;

        const char *prefix = k == Q_GO ? "" : qdefs[k].prefix;
        for (int i = 0; i < 4; i++) shown[i] = xasprintf("%s%s", prefix, vals[i]);
        shown[4] = xstrdup(INSUFFICIENT);
        char letters[5];
        struct sb opts = {0};
        mc_layout(&g->rng, (const char *const *)shown, 5, insufficient ? 4 : 0, g->have[s] % 5, &opts, letters);
        char answer[2] = {insufficient ? letters[4] : letters[0], 0};

        struct sb q = {0};
        char gid[16];
        if (k == Q_GO) {
            const struct goterm *gt = biodb_term(db, term);
            sb_printf(&q,
                      "Which of these human genes does org.Hs.eg.db annotate to the GO biological process "
                      "%s (%s), directly or through a descendant term (table go_bp_all)?",
                      go_id(term, gid), gt->name);
        } else {
            sb_printf(&q, "%s%s (%s)%s", qdefs[k].q_before, ge->symbol, ge->name, qdefs[k].q_after);
        }
        char gid2[16];
        cJSON *inputs = cJSON_CreateObject();
        if (k == Q_GO) cJSON_AddStringToObject(inputs, "go_id", go_id(term, gid2));
        else cJSON_AddStringToObject(inputs, "gene", ge->symbol);
        cJSON_AddItemToObject(inputs, "options", mc_options_json((const char *const *)shown, letters, 5));
        struct sb note = {0};
        sb_task_inputs_note(&note, inputs);
        struct sb p = {0};
        sb_printf(&p,
                  "The following is a multiple choice question about human gene annotation; answer it "
                  "from org.Hs.eg.db. " PROMPT_DB_NOTE " %s\n\nQuestion: %s\nOptions:\n%s\n"
                  "Output format: the letter of the correct option alone, e.g. A.",
                  note.s, q.s, opts.s);

        struct sb c = {0};
        sb_printf(&c,
                  "# The option whose value org.Hs.eg.db links to the question's %s; when none is,\n"
                  "# the answer is \"Insufficient information\".\n"
                  "import sqlite3\n"
                  "db = sqlite3.connect(\"" JAIL_DB_DIR "/org.Hs.eg.sqlite\")\n"
                  "linked = {row[0] for row in db.execute(\"%s\", (TASK[\"%s\"],))}\n"
                  "hits = [letter for letter, text in TASK[\"options\"].items() if text in linked]\n"
                  "none = [letter for letter, text in TASK[\"options\"].items() if text.startswith(\"Insufficient\")]\n"
                  "print(hits[0] if len(hits) == 1 else none[0] if not hits else \"ambiguous\")\n",
                  k == Q_GO ? "GO term" : "gene",
                  k == Q_GO ? "SELECT i.symbol FROM gene_info i JOIN go_bp_all a ON a._id = i._id WHERE a.go_id = ?"
                            : qdefs[k].query,
                  k == Q_GO ? "go_id" : "gene");

        cJSON *meta = cJSON_CreateObject();
        cJSON_AddStringToObject(meta, "kind", k == Q_GO ? "go" : qdefs[k].kind);
        cJSON_AddStringToObject(meta, "gene", ge->symbol);
        cJSON_AddStringToObject(meta, "entrez_id", ge->entrez);
        if (k == Q_GO) cJSON_AddStringToObject(meta, "go_id", go_id(term, gid));
        cJSON_AddBoolToObject(meta, "insufficient", insufficient);
        cJSON_AddStringToObject(meta, "correct_value", insufficient ? INSUFFICIENT : shown[0]);
        cJSON_AddItemToObject(meta, "inputs", inputs);
        for (int i = 0; i < 5; i++) free(shown[i]);
        free(sb_take(&q)), free(sb_take(&opts)), free(sb_take(&note));
        gen_emit(g, s, "lab_bench_dbqa", sb_take(&p), xstrdup(answer), "python", sb_take(&c), meta);
    }
}
