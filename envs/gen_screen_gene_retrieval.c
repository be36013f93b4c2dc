/*
 * gen_screen_gene_retrieval.c - "which of these 11 genes is the screen's
 * true hit?" (the shape of Eval1's screen_gene_retrieval: a symbol among
 * about 11 candidates, exact match).
 *
 * The screen targets a KEGG pathway (org.Hs.eg.db's kegg table) or a GO
 * cellular component (go_cc_all, 10-1500 protein-coding genes). Exactly one
 * candidate belongs to it; the ten others are protein-coding genes that have
 * KEGG pathways (or cellular-component annotations) of their own, but not
 * this one. The pathway ID (or the component's GO ID and name) and the
 * candidates are also given as TASK in the Python tool (meta.inputs;
 * protocol.h); the reference is one parameterised query on them.
 */
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"
#include "gen.h"

#define NCAND 11

void gen_screen_gene_retrieval(const struct biodb *db, struct gen_ctx *g) {
    long budget = gen_attempt_budget(g);
    for (g->attempts = 0; g->attempts < budget && !gen_done(g); g->attempts++) {
        bool kegg = rng_below(&g->rng, 2) == 0;
        int G = random_usable_gene(db, &g->rng);
        /* most genes have no KEGG pathway: draw until one has, so both contexts are equally common */
        for (int t = 0; kegg && t < 100 && sets_count(&db->kegg, G) == 0; t++) G = random_usable_gene(db, &g->rng);
        enum split s = split_of("gene", db->genes[G].entrez);
        if (!gen_wants(g, s)) continue;
        const char *path = NULL;
        int cc = -1;
        if (kegg) {
            int k = sets_count(&db->kegg, G);
            if (k == 0) continue;
            path = sets_of(&db->kegg, G)[rng_below(&g->rng, k)];
        } else if (gene_terms(db, &db->cc, 'C', G, 10, 1500, &g->rng, &cc, 1) < 1) {
            continue;
        }
        int cand[NCAND], n = 0;
        cand[n++] = G;
        for (int t = 0; t < 800 && n < NCAND; t++) {
            int h = random_usable_gene(db, &g->rng);
            bool ok = kegg ? sets_count(&db->kegg, h) > 0 && !strsets_has(&db->kegg, h, path)
                           : isets_count(&db->cc, h) > 0 && !intsets_has(&db->cc, h, cc);
            for (int i = 0; i < n && ok; i++) ok = cand[i] != h;
            if (ok) cand[n++] = h;
        }
        if (n < NCAND) continue;
        rng_shuffle_int(&g->rng, cand, n);
        const char *syms[NCAND];
        for (int i = 0; i < n; i++) syms[i] = db->genes[cand[i]].symbol;

        char gid[16];
        struct sb ctx = {0}, rule = {0};
        cJSON *inputs = cJSON_CreateObject();
        if (kegg) {
            sb_printf(&ctx, "genes of the KEGG pathway hsa%s", path);
            sb_printf(&rule, "is listed in pathway %s in org.Hs.eg.db's kegg table", path);
            cJSON_AddStringToObject(inputs, "kegg_path", path);
        } else {
            const struct goterm *t = biodb_term(db, cc);
            sb_printf(&ctx, "proteins of the cellular component \"%s\" (%s)", t->name, go_id(cc, gid));
            sb_printf(&rule, "is annotated to %s in org.Hs.eg.db's go_cc_all table (descendant terms count)", gid);
            cJSON_AddStringToObject(inputs, "go_id", gid);
            cJSON_AddStringToObject(inputs, "component", t->name);
        }
        cJSON_AddItemToObject(inputs, "candidates", json_strings(syms, n));
        struct sb note = {0};
        sb_task_inputs_note(&note, inputs);
        struct sb p = {0};
        sb_printf(&p, "A pooled CRISPR knockout screen was designed to find %s. Of these %d candidate genes, "
                      "exactly one is a true hit:\n", ctx.s, n);
        for (int i = 0; i < n; i++) sb_printf(&p, "%s%s", i ? ", " : "", syms[i]);
        sb_printf(&p, "\n\nThe true hit is the candidate that %s. " PROMPT_DB_NOTE " %s\n\n"
                      "Output format: the gene symbol alone, e.g. GENE1.", rule.s, note.s);

        struct sb c = {0};
        sb_printf(&c, "# The one candidate that belongs to the screened %s.\n"
                      "import sqlite3\n"
                      "db = sqlite3.connect(\"" JAIL_DB_DIR "/org.Hs.eg.sqlite\")\n"
                      "marks = \",\".join(\"?\" * len(TASK[\"candidates\"]))\n"
                      "hits = [row[0] for row in db.execute(\"SELECT i.symbol FROM gene_info i WHERE i.symbol IN (%%s)\"\n"
                      "    \" AND i._id IN (SELECT _id FROM %s WHERE %s = ?)\" %% marks, (*TASK[\"candidates\"], TASK[\"%s\"]))]\n"
                      "print(hits[0] if len(hits) == 1 else \"ambiguous: %%d\" %% len(hits))\n",
                  kegg ? "pathway" : "component", kegg ? "kegg" : "go_cc_all", kegg ? "path_id" : "go_id",
                  kegg ? "kegg_path" : "go_id");

        cJSON *meta = cJSON_CreateObject();
        cJSON_AddStringToObject(meta, "context", kegg ? "kegg" : "go_cc");
        if (kegg) cJSON_AddStringToObject(meta, "kegg_path", path);
        else cJSON_AddStringToObject(meta, "go_id", gid);
        cJSON_AddStringToObject(meta, "entrez_id", db->genes[G].entrez);
        cJSON_AddItemToObject(meta, "candidates", json_strings(syms, n));
        cJSON_AddItemToObject(meta, "inputs", inputs);
        free(sb_take(&ctx)), free(sb_take(&rule)), free(sb_take(&note));
        gen_emit(g, s, "screen_gene_retrieval", sb_take(&p), xstrdup(db->genes[G].symbol), "python", sb_take(&c),
                 meta);
    }
}
