/*
 * gen_screen_gene_retrieval.c - "which of these 11 genes is the screen's
 * true hit?" (the shape of Eval1's screen_gene_retrieval: a symbol among
 * about 11 candidates, exact match).
 *
 * The screen targets a KEGG pathway (org.Hs.eg.db's kegg table) or a GO
 * cellular component (go_cc_all, 10-1500 protein-coding genes). Exactly one
 * candidate belongs to it; the ten others are protein-coding genes that have
 * KEGG pathways (or cellular-component annotations) of their own, but not
 * this one. The reference solution is one SQL query.
 */
#include <stdlib.h>
#include <string.h>

#include "../sandbox/util.h"
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
        struct sb ctx = {0}, rule = {0}, sub = {0};
        if (kegg) {
            sb_printf(&ctx, "genes of the KEGG pathway hsa%s", path);
            sb_printf(&rule, "is listed in pathway %s in org.Hs.eg.db's kegg table", path);
            sb_puts(&sub, "SELECT _id FROM kegg WHERE path_id = ");
            sb_sqlstr(&sub, path);
        } else {
            const struct goterm *t = biodb_term(db, cc);
            sb_printf(&ctx, "proteins of the cellular component \"%s\" (%s)", t->name, go_id(cc, gid));
            sb_printf(&rule, "is annotated to %s in org.Hs.eg.db's go_cc_all table (descendant terms count)", gid);
            sb_puts(&sub, "SELECT _id FROM go_cc_all WHERE go_id = ");
            sb_sqlstr(&sub, gid);
        }
        struct sb p = {0};
        sb_printf(&p, "A pooled CRISPR knockout screen was designed to find %s. Of these %d candidate genes, "
                      "exactly one is a true hit:\n", ctx.s, n);
        for (int i = 0; i < n; i++) sb_printf(&p, "%s%s", i ? ", " : "", syms[i]);
        sb_printf(&p, "\n\nThe true hit is the candidate that %s. " PROMPT_DB_NOTE "\n\n"
                      "Output format: the gene symbol alone, e.g. GENE1.", rule.s);

        struct sb c = {0};
        sb_puts(&c, "-- The one candidate that belongs to the screened pathway or component.\n"
                    "SELECT CASE count(*) WHEN 1 THEN max(i.symbol) ELSE 'ambiguous: ' || count(*) END AS answer\n"
                    "FROM gene_info i WHERE i.symbol IN (");
        for (int i = 0; i < n; i++) {
            if (i) sb_puts(&c, ", ");
            sb_sqlstr(&c, syms[i]);
        }
        sb_printf(&c, ")\n  AND i._id IN (%s);\n", sub.s);

        cJSON *meta = cJSON_CreateObject();
        cJSON_AddStringToObject(meta, "context", kegg ? "kegg" : "go_cc");
        if (kegg) cJSON_AddStringToObject(meta, "kegg_path", path);
        else cJSON_AddStringToObject(meta, "go_id", gid);
        cJSON_AddStringToObject(meta, "entrez_id", db->genes[G].entrez);
        cJSON_AddItemToObject(meta, "candidates", json_strings(syms, n));
        free(sb_take(&ctx)), free(sb_take(&rule)), free(sb_take(&sub));
        gen_emit(g, s, "screen_gene_retrieval", sb_take(&p), xstrdup(db->genes[G].symbol), "sql", sb_take(&c),
                 meta);
    }
}
