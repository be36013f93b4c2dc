/*
 * gen_rare_disease.c - "which disorder does this patient have?" (the shape
 * of Eval1's rare_disease_diagnosis: JSON {"disease_name", "OMIM_ID"},
 * graded on OMIM_ID).
 *
 * What org.Hs.eg.db really has: its omim table links genes to MIM numbers,
 * with no disease names and no HPO phenotypes. Both gene entries and
 * disorder entries appear there (NCBI's mim2gene), undistinguished. We use
 * the one distinction the table itself supports: a MIM number linked to two
 * or more genes is a disorder entry (a gene entry names one gene). So:
 *  - the causal gene is linked to exactly one such shared MIM number, which
 *    is the answer (the task splits by that number);
 *  - the "phenotype" is given as 2-3 GO biological processes of the causal
 *    gene (go_bp_all; each annotated to 10-800 protein-coding genes), a
 *    stand-in for phenotype terms that the database can ground;
 *  - the 4-7 other candidates have MIM numbers too, are not linked to the
 *    answer, and each misses at least one of the processes;
 *  - disease_name is "<SYMBOL>-related disorder" (there is no name to give;
 *    it is not graded).
 * The processes and the candidates are also given as TASK in the Python tool
 * (meta.inputs; protocol.h), which the reference reads; never the answer.
 */
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"
#include "gen.h"

#define MAX_CAND 8

static bool has_all(const struct biodb *db, int gene, const int *terms, int n) {
    for (int i = 0; i < n; i++)
        if (!intsets_has(&db->bp, gene, terms[i])) return false;
    return true;
}

void gen_rare_disease(const struct biodb *db, struct gen_ctx *g) {
    long budget = gen_attempt_budget(g);
    for (g->attempts = 0; g->attempts < budget && !gen_done(g); g->attempts++) {
        int G = random_usable_gene(db, &g->rng);
        const char *mim = NULL;
        int shared = 0;
        for (int i = db->omim.off[G]; i < db->omim.off[G + 1]; i++)
            if (db->omim_ngenes[i] >= 2) shared++, mim = db->omim.vals[i];
        if (shared != 1) continue;
        enum split s = split_of("mim", mim);
        if (!gen_wants(g, s)) continue;
        int terms[16], nt = gene_terms(db, &db->bp, 'B', G, 10, 800, &g->rng, terms, 16);
        if (nt < 2) continue;
        int nclue = 2 + (int)rng_below(&g->rng, 2);
        if (nclue > nt) nclue = nt;

        int ncand = 5 + (int)rng_below(&g->rng, MAX_CAND - 4), cand[MAX_CAND], n = 0;
        cand[n++] = G;
        for (int t = 0; t < 600 && n < ncand; t++) {
            int h = random_usable_gene(db, &g->rng);
            bool ok = sets_count(&db->omim, h) > 0 && !strsets_has(&db->omim, h, mim) &&
                      !has_all(db, h, terms, nclue);
            for (int i = 0; i < n && ok; i++) ok = cand[i] != h;
            if (ok) cand[n++] = h;
        }
        if (n < ncand) continue;
        rng_shuffle_int(&g->rng, cand, n);
        const char *syms[MAX_CAND], *names[3];
        for (int i = 0; i < n; i++) syms[i] = db->genes[cand[i]].symbol;
        for (int i = 0; i < nclue; i++) names[i] = biodb_term(db, terms[i])->name;
        const char *sym = db->genes[G].symbol;

        cJSON *inputs = cJSON_CreateObject();
        cJSON_AddItemToObject(inputs, "processes", json_strings(names, nclue));
        cJSON_AddItemToObject(inputs, "candidates", json_strings(syms, n));
        struct sb note = {0};
        sb_task_inputs_note(&note, inputs);
        struct sb p = {0};
        sb_puts(&p, "A patient presents with a suspected Mendelian disorder. Exome sequencing left these "
                    "candidate genes: ");
        for (int i = 0; i < n; i++) sb_printf(&p, "%s%s", i ? ", " : "", syms[i]);
        sb_puts(&p, ".\nPhenotype, given as the Gene Ontology biological processes affected in the patient: ");
        for (int i = 0; i < nclue; i++) sb_printf(&p, "%s\"%s\"", i ? "; " : "", names[i]);
        sb_printf(&p,
                  ".\n\nThe causal gene is the only candidate annotated to all of these processes in "
                  "org.Hs.eg.db (table go_bp_all, which includes annotations to descendant terms). "
                  "Diagnose the disorder: give the OMIM MIM number of the disorder entry linked to the "
                  "causal gene. In org.Hs.eg.db's omim table a disorder entry is a MIM number linked to two "
                  "or more genes (a gene's own entry is linked to that gene alone); the causal gene has "
                  "exactly one. org.Hs.eg.db has no disease names, so write disease_name as "
                  "\"<causal gene symbol>-related disorder\". " PROMPT_DB_NOTE " %s\n\n"
                  "Output format: a JSON object, e.g. {\"disease_name\": \"GENE1-related disorder\", "
                  "\"OMIM_ID\": \"100000\"}",
                  note.s);
        char *answer = xasprintf("{\"disease_name\": \"%s-related disorder\", \"OMIM_ID\": \"%s\"}", sym, mim);

        struct sb c = {0};
        sb_puts(&c, "# The causal gene is annotated to every process; its disorder entry is its one MIM\n"
                    "# number that the omim table links to two or more genes.\n");
        py_open_dbs(&c);
        sb_puts(&c,
                "processes, genes = TASK[\"processes\"], TASK[\"candidates\"]\n"
                "ids = {t: [r[0] for r in db.execute(\"SELECT go_id FROM go.go_term WHERE term = ? AND ontology = 'BP'\", (t,))]\n"
                "       for t in processes}\n"
                "def annotated(symbol, go_ids):\n"
                "    marks = \",\".join(\"?\" * len(go_ids))\n"
                "    return db.execute(\"SELECT 1 FROM gene_info i JOIN go_bp_all a ON a._id = i._id\"\n"
                "                      \" WHERE i.symbol = ? AND a.go_id IN (%s) LIMIT 1\" % marks,\n"
                "                      (symbol, *go_ids)).fetchone() is not None\n"
                "causal = [g for g in genes if all(annotated(g, ids[t]) for t in processes)]\n"
                "print(\"annotated to every process:\", causal)\n"
                "disorders = []\n"
                "if len(causal) == 1:\n"
                "    mims = [r[0] for r in db.execute(\"SELECT DISTINCT o.omim_id FROM omim o JOIN gene_info i\"\n"
                "                                     \" ON i._id = o._id WHERE i.symbol = ?\", (causal[0],))]\n"
                "    disorders = [m for m in mims if db.execute(\n"
                "        \"SELECT count(DISTINCT _id) FROM omim WHERE omim_id = ?\", (m,)).fetchone()[0] >= 2]\n"
                "    print(\"MIM numbers:\", mims, \"disorder entries:\", disorders)\n"
                "if len(causal) == 1 and len(disorders) == 1:\n"
                "    print(json.dumps({\"disease_name\": causal[0] + \"-related disorder\", \"OMIM_ID\": disorders[0]}))\n"
                "else:\n"
                "    print(\"no single answer\")\n");

        cJSON *meta = cJSON_CreateObject();
        cJSON_AddStringToObject(meta, "causal_gene", sym);
        cJSON_AddStringToObject(meta, "entrez_id", db->genes[G].entrez);
        cJSON_AddStringToObject(meta, "omim_id", mim);
        cJSON_AddItemToObject(meta, "phenotype_go_terms", json_strings(names, nclue));
        cJSON_AddItemToObject(meta, "candidates", json_strings(syms, n));
        cJSON_AddItemToObject(meta, "inputs", inputs);
        free(sb_take(&note));
        gen_emit(g, s, "rare_disease_diagnosis", sb_take(&p), answer, "python", sb_take(&c), meta);
    }
}
