/*
 * gen_patient_gene_detection.c - "which of this patient's candidate genes is
 * causal?" with genes named by Ensembl ID (the shape of Eval1's
 * patient_gene_detection: JSON {"causal_gene": [Ensembl IDs]}, any overlap
 * with the truth scores).
 *
 * The patient's phenotype is a GO biological process plus the cellular
 * component where the defective protein acts (both from go_*_all). Of
 * 10-20 candidates, exactly one protein-coding gene is annotated to both;
 * each other candidate misses one or both. Every listed Ensembl gene ID maps
 * to a single gene in org.Hs.eg.db's ensembl table, so the ID names the gene
 * without ambiguity. The process, the component and the candidates are also
 * given as TASK in the Python tool (meta.inputs; protocol.h), which the
 * reference reads.
 */
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"
#include "gen.h"

#define MAX_CAND 20

/* One of the gene's Ensembl IDs that names it alone, or NULL. */
static const char *unique_ensembl(const struct biodb *db, int g, struct rng *r) {
    int idx[32], n = 0;
    for (int i = db->ensembl.off[g]; i < db->ensembl.off[g + 1] && n < 32; i++)
        if (db->ensembl_ngenes[i] == 1) idx[n++] = i;
    return n ? db->ensembl.vals[idx[rng_below(r, n)]] : NULL;
}

void gen_patient_gene_detection(const struct biodb *db, struct gen_ctx *g) {
    long budget = gen_attempt_budget(g);
    for (g->attempts = 0; g->attempts < budget && !gen_done(g); g->attempts++) {
        int G = random_usable_gene(db, &g->rng);
        const char *gid = unique_ensembl(db, G, &g->rng);
        if (!gid) continue;
        enum split s = split_of("gene", db->genes[G].entrez);
        if (!gen_wants(g, s)) continue;
        int bp, cc;
        if (gene_terms(db, &db->bp, 'B', G, 10, 800, &g->rng, &bp, 1) < 1 ||
            gene_terms(db, &db->cc, 'C', G, 10, 2000, &g->rng, &cc, 1) < 1)
            continue;

        int ncand = 10 + (int)rng_below(&g->rng, MAX_CAND - 9), cand[MAX_CAND], n = 0;
        const char *ids[MAX_CAND];
        cand[n] = G, ids[n++] = gid;
        for (int t = 0; t < 800 && n < ncand; t++) {
            int h = random_usable_gene(db, &g->rng);
            bool ok = !(intsets_has(&db->bp, h, bp) && intsets_has(&db->cc, h, cc));
            for (int i = 0; i < n && ok; i++) ok = cand[i] != h;
            const char *hid = ok ? unique_ensembl(db, h, &g->rng) : NULL;
            if (hid) cand[n] = h, ids[n++] = hid;
        }
        if (n < ncand) continue;
        int order[MAX_CAND];
        for (int i = 0; i < n; i++) order[i] = i;
        rng_shuffle_int(&g->rng, order, n);
        const char *shown[MAX_CAND];
        for (int i = 0; i < n; i++) shown[i] = ids[order[i]];
        const struct goterm *tb = biodb_term(db, bp), *tc = biodb_term(db, cc);

        cJSON *inputs = cJSON_CreateObject();
        cJSON_AddStringToObject(inputs, "process", tb->name);
        cJSON_AddStringToObject(inputs, "component", tc->name);
        cJSON_AddItemToObject(inputs, "candidates", json_strings(shown, n));
        struct sb note = {0};
        sb_task_inputs_note(&note, inputs);
        struct sb p = {0};
        sb_printf(&p,
                  "A patient's phenotype points to a defect in the biological process \"%s\", in a protein "
                  "that acts at the cellular component \"%s\" (Gene Ontology terms). Sequencing found rare "
                  "variants in these candidate genes (Ensembl gene IDs):\n",
                  tb->name, tc->name);
        for (int i = 0; i < n; i++) sb_printf(&p, "%s%s", i ? ", " : "", shown[i]);
        sb_printf(&p, "\n\nThe causal gene is the candidate that org.Hs.eg.db annotates both to the process "
                      "(table go_bp_all) and to the component (table go_cc_all), counting annotations to "
                      "descendant terms; exactly one candidate qualifies. " PROMPT_DB_NOTE " %s\n\n"
                      "Output format: a JSON object listing the causal gene's Ensembl ID, e.g. "
                      "{\"causal_gene\": [\"ENSG00000000000\"]}",
                  note.s);
        /* Eval1's answer column holds the causal Ensembl ID(s), comma-separated;
         * the agent answers (and the reference prints) the JSON object, kept
         * in meta.solution for verification */
        char *answer = xstrdup(gid);
        char *solution = xasprintf("{\"causal_gene\": [\"%s\"]}", gid);

        struct sb c = {0};
        sb_puts(&c, "# The candidate annotated both to the process (go_bp_all) and the component (go_cc_all).\n");
        py_open_dbs(&c);
        sb_puts(&c,
                "process, component, candidates = TASK[\"process\"], TASK[\"component\"], TASK[\"candidates\"]\n"
                "def term_ids(name, ontology):\n"
                "    return [r[0] for r in db.execute(\"SELECT go_id FROM go.go_term WHERE term = ? AND ontology = ?\",\n"
                "                                     (name, ontology))]\n"
                "def annotated(ensembl_id, table, go_ids):\n"
                "    marks = \",\".join(\"?\" * len(go_ids))\n"
                "    return db.execute(\"SELECT 1 FROM ensembl e JOIN %s a ON a._id = e._id\"\n"
                "                      \" WHERE e.ensembl_id = ? AND a.go_id IN (%s) LIMIT 1\" % (table, marks),\n"
                "                      (ensembl_id, *go_ids)).fetchone() is not None\n"
                "bp, cc = term_ids(process, \"BP\"), term_ids(component, \"CC\")\n"
                "hits = [e for e in candidates if annotated(e, \"go_bp_all\", bp) and annotated(e, \"go_cc_all\", cc)]\n"
                "print(\"annotated to both:\", hits)\n"
                "print(json.dumps({\"causal_gene\": hits}) if len(hits) == 1 else \"no single answer\")\n");

        cJSON *meta = cJSON_CreateObject();
        cJSON_AddStringToObject(meta, "causal_gene", db->genes[G].symbol);
        cJSON_AddStringToObject(meta, "entrez_id", db->genes[G].entrez);
        char b1[16], b2[16];
        cJSON_AddStringToObject(meta, "bp_go_id", go_id(bp, b1));
        cJSON_AddStringToObject(meta, "cc_go_id", go_id(cc, b2));
        cJSON_AddItemToObject(meta, "candidates", json_strings(shown, n));
        cJSON_AddStringToObject(meta, "solution", solution);
        cJSON_AddItemToObject(meta, "inputs", inputs);
        free(solution), free(sb_take(&note));
        gen_emit(g, s, "patient_gene_detection", sb_take(&p), answer, "python", sb_take(&c), meta);
    }
}
