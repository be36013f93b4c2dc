/*
 * gen_causal_gene.c - "which gene in this locus explains the phenotype?"
 * (the shape of Eval1's gwas_causal_gene_* tasks).
 *
 * A locus is 8-12 consecutive protein-coding genes of one chromosome (in
 * org.Hs.eg.db's chromosome_locations order). The phenotype is a GO
 * biological process that exactly one of them is annotated to in go_bp_all
 * (which counts annotations to descendant terms); that gene is the answer.
 * Terms annotated to fewer than 5 or more than 300 protein-coding genes are
 * not used: too obscure to be a phenotype, or too broad to single one out.
 * The phenotype, the locus and its genes are also given as TASK in the
 * Python tool (meta.inputs; protocol.h), which the reference reads.
 */
#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "../sandbox/base/util.h"

#define MIN_GENES 8
#define MAX_GENES 12

static bool window_gene(const struct biodb *db, int li, int chrom) {
    const struct locus *l = &db->loci[li];
    return l->chrom == chrom && gene_usable(db, l->gene) && db->genes[l->gene].chrom == chrom;
}

/* k window genes around locus L, the target at position `at`. 0 or -1. */
static int build_window(const struct biodb *db, int L, int k, int at, int *genes) {
    int chrom = db->loci[L].chrom, n = 0;
    int back[MAX_GENES];
    for (int i = L - 1; i >= 0 && n < at && db->loci[i].chrom == chrom; i--)
        if (window_gene(db, i, chrom)) back[n++] = db->loci[i].gene;
    if (n < at) return -1;
    for (int i = 0; i < n; i++) genes[i] = back[n - 1 - i];
    genes[n++] = db->loci[L].gene;
    for (int i = L + 1; i < db->nloci && n < k && db->loci[i].chrom == chrom; i++)
        if (window_gene(db, i, chrom)) genes[n++] = db->loci[i].gene;
    return n == k ? 0 : -1;
}

static const char *single_band(const struct biodb *db, int g) {
    return sets_count(&db->band, g) == 1 ? sets_of(&db->band, g)[0] : NULL;
}

void gen_causal_gene(const struct biodb *db, struct gen_ctx *g) {
    long budget = gen_attempt_budget(g);
    for (g->attempts = 0; g->attempts < budget && !gen_done(g); g->attempts++) {
        int L = (int)rng_below(&g->rng, db->nloci);
        int chrom = db->loci[L].chrom, target = db->loci[L].gene;
        if (!window_gene(db, L, chrom)) continue;
        enum split s = split_of("gene", db->genes[target].entrez);
        if (!gen_wants(g, s)) continue;
        int k = MIN_GENES + (int)rng_below(&g->rng, MAX_GENES - MIN_GENES + 1);
        int at = (int)rng_below(&g->rng, k);
        int win[MAX_GENES];
        if (build_window(db, L, k, at, win)) continue;

        int terms[64], nt = gene_terms(db, &db->bp, 'B', target, 5, 300, &g->rng, terms, 64);
        int term = -1;
        for (int t = 0; t < nt && term < 0; t++) {
            int hits = 0;
            for (int i = 0; i < k; i++) hits += intsets_has(&db->bp, win[i], terms[t]);
            if (hits == 1) term = terms[t];
        }
        if (term < 0) continue;
        const struct goterm *gt = biodb_term(db, term);
        char gid[16];
        go_id(term, gid);

        long lo = db->genes[win[0]].start, hi = 0;
        const char *syms[MAX_GENES];
        for (int i = 0; i < k; i++) {
            const struct bgene *ge = &db->genes[win[i]];
            syms[i] = ge->symbol;
            if (ge->start < lo) lo = ge->start;
            if (ge->end > hi) hi = ge->end;
        }
        const char *b0 = single_band(db, win[0]), *b1 = single_band(db, win[k - 1]);
        struct sb locus = {0};
        sb_printf(&locus, "%s:%ld-%ld", chrom_name(chrom), lo, hi);
        if (b0 && b1 && strcmp(b0, b1) == 0) sb_printf(&locus, " (band %s)", b0);
        else if (b0 && b1) sb_printf(&locus, " (bands %s to %s)", b0, b1);

        cJSON *inputs = cJSON_CreateObject();
        cJSON_AddStringToObject(inputs, "phenotype", gt->name);
        cJSON_AddStringToObject(inputs, "locus", locus.s);
        cJSON_AddItemToObject(inputs, "genes", json_strings(syms, k));
        struct sb note = {0};
        sb_task_inputs_note(&note, inputs);
        struct sb p = {0};
        sb_printf(&p,
                  "Your task is to identify the likely causal gene within a locus, given a phenotype.\n\n"
                  "Phenotype (a Gene Ontology biological process): %s\n"
                  "Locus: %s, containing these %d protein-coding genes in genomic order:\n",
                  gt->name, locus.s, k);
        for (int i = 0; i < k; i++) sb_printf(&p, "%s%s", i ? ", " : "", syms[i]);
        sb_printf(&p,
                  "\n\nExactly one of these genes is annotated to this process in org.Hs.eg.db, counting "
                  "annotations to its more specific descendant terms (table go_bp_all); that gene is the "
                  "causal gene. " PROMPT_DB_NOTE " %s\n\n"
                  "Identify the causal gene. Output format: the gene symbol alone, e.g. GENE1.",
                  note.s);

        struct sb c = {0};
        sb_puts(&c, "# The causal gene: the one locus gene annotated (go_bp_all) to the phenotype's GO term.\n");
        py_open_dbs(&c);
        sb_puts(&c,
                "phenotype, genes = TASK[\"phenotype\"], TASK[\"genes\"]\n"
                "ids = [r[0] for r in db.execute(\"SELECT go_id FROM go.go_term WHERE term = ? AND ontology = 'BP'\", (phenotype,))]\n"
                "print(\"GO term:\", ids)\n"
                "marks = \",\".join(\"?\" * len(ids))\n"
                "hits = [g for g in genes if db.execute(\n"
                "    \"SELECT 1 FROM gene_info i JOIN go_bp_all a ON a._id = i._id\"\n"
                "    \" WHERE i.symbol = ? AND a.go_id IN (%s) LIMIT 1\" % marks, (g, *ids)).fetchone()]\n"
                "print(\"annotated:\", hits)\n"
                "print(hits[0] if len(hits) == 1 else \"ambiguous: %d genes\" % len(hits))\n");

        cJSON *meta = cJSON_CreateObject();
        cJSON_AddStringToObject(meta, "go_id", gid);
        cJSON_AddStringToObject(meta, "go_term", gt->name);
        cJSON_AddStringToObject(meta, "locus", locus.s);
        cJSON_AddItemToObject(meta, "genes", json_strings(syms, k));
        cJSON_AddStringToObject(meta, "entrez_id", db->genes[target].entrez);
        cJSON_AddItemToObject(meta, "inputs", inputs);
        free(sb_take(&locus)), free(sb_take(&note));
        gen_emit(g, s, "gwas_causal_gene_gwas_catalog", sb_take(&p), xstrdup(db->genes[target].symbol),
                 "python", sb_take(&c), meta);
    }
}
