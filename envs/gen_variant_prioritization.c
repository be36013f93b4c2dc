/*
 * gen_variant_prioritization.c - "which of these variants hits a gene with
 * this function?" (the shape of Eval1's gwas_variant_prioritization; our
 * variants are named by position, "chr7:117559590", since org.Hs.eg.db has
 * no rsIDs).
 *
 * One position lies inside the span of a protein-coding gene annotated
 * (go_bp_all) to a GO biological process; 7-11 others lie within 500 kb of
 * it and inside no gene of any type annotated to that process. A gene's
 * span is its smallest |start_location| to its largest |end_location| on the
 * chromosome (org.Hs.eg.db stores minus-strand genes as negative numbers),
 * which is what the reference solution and the prompt use too. The process
 * and the variants are also given as TASK in the Python tool (meta.inputs;
 * protocol.h), which the reference reads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"
#include "gen.h"

#define FLANK 500000L
#define MIN_DECOYS 7
#define MAX_DECOYS 11

/* First locus index of each chromosome (25 = end). */
static void chrom_bounds(const struct biodb *db, int first[26]) {
    int c = 0;
    first[0] = 0;
    for (int i = 0; i < db->nloci; i++)
        while (c < db->loci[i].chrom) first[++c] = i;
    while (c < 25) first[++c] = db->nloci;
}

/* Is pos inside any gene other than `except` that is annotated to term? */
static bool other_hit(const struct biodb *db, const int *first, int chrom, long pos, int term,
                      int except) {
    for (int i = first[chrom]; i < first[chrom + 1] && db->loci[i].start <= pos; i++) {
        const struct locus *l = &db->loci[i];
        if (l->end >= pos && l->gene != except && intsets_has(&db->bp, l->gene, term)) return true;
    }
    return false;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? -1 : x > y;
}

void gen_variant_prioritization(const struct biodb *db, struct gen_ctx *g) {
    int first[26];
    chrom_bounds(db, first);
    long budget = gen_attempt_budget(g);
    for (g->attempts = 0; g->attempts < budget && !gen_done(g); g->attempts++) {
        int target = random_usable_gene(db, &g->rng);
        const struct bgene *tg = &db->genes[target];
        if (!tg->chrom || tg->end - tg->start < 10) continue;
        enum split s = split_of("gene", tg->entrez);
        if (!gen_wants(g, s)) continue;
        int terms[8], nt = gene_terms(db, &db->bp, 'B', target, 5, 300, &g->rng, terms, 8);
        if (nt == 0) continue;
        int term = terms[0], chrom = tg->chrom;

        long pos[MAX_DECOYS + 1], hit = -1;
        for (int tries = 0; tries < 10 && hit < 0; tries++) {
            long p = tg->start + 1 + rng_below(&g->rng, tg->end - tg->start - 1);
            if (!other_hit(db, first, chrom, p, term, target)) hit = p;
        }
        if (hit < 0) continue;
        long chrom_end = 0;
        for (int i = first[chrom]; i < first[chrom + 1]; i++)
            if (db->loci[i].end > chrom_end) chrom_end = db->loci[i].end;
        long lo = tg->start > FLANK ? tg->start - FLANK : 1;
        long hi = tg->end + FLANK < chrom_end ? tg->end + FLANK : chrom_end;
        int nd = MIN_DECOYS + (int)rng_below(&g->rng, MAX_DECOYS - MIN_DECOYS + 1), n = 0;
        pos[n++] = hit;
        for (int tries = 0; tries < 400 && n < nd + 1; tries++) {
            long p = lo + rng_below(&g->rng, hi - lo + 1);
            bool ok = !(p >= tg->start && p <= tg->end) && !other_hit(db, first, chrom, p, term, -1);
            for (int i = 0; i < n && ok; i++) ok = pos[i] != p;
            if (ok) pos[n++] = p;
        }
        if (n < nd + 1) continue;
        qsort(pos, (size_t)n, sizeof *pos, cmp_long);

        const struct goterm *gt = biodb_term(db, term);
        char gid[16], answer[48];
        go_id(term, gid);
        snprintf(answer, sizeof answer, "%s:%ld", chrom_name(chrom), hit);
        char *vars[MAX_DECOYS + 1];
        for (int i = 0; i < n; i++) vars[i] = xasprintf("%s:%ld", chrom_name(chrom), pos[i]);

        cJSON *inputs = cJSON_CreateObject();
        cJSON_AddStringToObject(inputs, "process", gt->name);
        cJSON_AddItemToObject(inputs, "variants", json_strings((const char *const *)vars, n));
        struct sb note = {0};
        sb_task_inputs_note(&note, inputs);
        struct sb p = {0};
        sb_printf(&p,
                  "Your task is to prioritise genetic variants found in one region of %s (positions as in "
                  "org.Hs.eg.db's chromosome_locations table, UCSC hg38).\n\nVariants:\n",
                  chrom_name(chrom));
        for (int i = 0; i < n; i++) sb_printf(&p, "%s\n", vars[i]);
        sb_printf(&p,
                  "\nWhich variant lies inside a gene annotated to the Gene Ontology biological process "
                  "\"%s\"? A variant is inside a gene when start <= position <= end, where the gene's span "
                  "runs from the smallest |start_location| to the largest |end_location| of its rows on "
                  "that chromosome (negative values mark the minus strand); annotations to descendant "
                  "terms count (table go_bp_all). Exactly one variant qualifies. " PROMPT_DB_NOTE " %s\n\n"
                  "Output format: the variant exactly as listed, e.g. chr1:123456.",
                  gt->name, note.s);

        struct sb c = {0};
        sb_puts(&c, "# The variant inside a gene annotated (go_bp_all) to the process.\n");
        py_open_dbs(&c);
        sb_puts(&c,
                "process, variants = TASK[\"process\"], TASK[\"variants\"]\n"
                "ids = [r[0] for r in db.execute(\"SELECT go_id FROM go.go_term WHERE term = ? AND ontology = 'BP'\", (process,))]\n"
                "marks = \",\".join(\"?\" * len(ids))\n"
                "annotated = {r[0] for r in db.execute(\"SELECT DISTINCT _id FROM go_bp_all WHERE go_id IN (%s)\" % marks, ids)}\n"
                "hits = []\n"
                "for v in variants:\n"
                "    chrom, pos = v[3:].split(\":\")\n"
                "    pos = int(pos)\n"
                "    genes = [r[0] for r in db.execute(\n"
                "        \"SELECT _id FROM chromosome_locations WHERE seqname = ? GROUP BY _id\"\n"
                "        \" HAVING min(abs(start_location)) <= ? AND max(abs(end_location)) >= ?\", (chrom, pos, pos))]\n"
                "    if any(g in annotated for g in genes):\n"
                "        hits.append(v)\n"
                "print(\"inside annotated genes:\", hits)\n"
                "print(hits[0] if len(hits) == 1 else \"ambiguous: %d variants\" % len(hits))\n");

        cJSON *meta = cJSON_CreateObject();
        cJSON_AddStringToObject(meta, "go_id", gid);
        cJSON_AddStringToObject(meta, "go_term", gt->name);
        cJSON_AddStringToObject(meta, "gene", tg->symbol);
        cJSON_AddStringToObject(meta, "entrez_id", tg->entrez);
        cJSON_AddItemToObject(meta, "variants", json_strings((const char *const *)vars, n));
        cJSON_AddItemToObject(meta, "inputs", inputs);
        free(sb_take(&note));
        for (int i = 0; i < n; i++) free(vars[i]);
        gen_emit(g, s, "gwas_variant_prioritization", sb_take(&p), xstrdup(answer), "python", sb_take(&c),
                 meta);
    }
}
