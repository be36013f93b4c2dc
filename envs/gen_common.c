/*
 * gen_common.c - helpers shared by the task generators, and their table.
 */
#include "gen.h"

#include <string.h>

const struct generator generators[] = {
    {"causal_gene", gen_causal_gene},
    {"variant_prioritization", gen_variant_prioritization},
    {"dbqa", gen_dbqa},
    {"seqqa", gen_seqqa},
    {"rare_disease", gen_rare_disease},
    {"patient_gene_detection", gen_patient_gene_detection},
    {"screen_gene_retrieval", gen_screen_gene_retrieval},
    {NULL, NULL},
};

int random_usable_gene(const struct biodb *db, struct rng *r) {
    for (;;) {
        int g = (int)rng_below(r, db->ngenes);
        if (gene_usable(db, g)) return g;
    }
}

int gene_terms(const struct biodb *db, const struct intsets *sets, char ont, int g, int minc, int maxc,
               struct rng *r, int *out, int max) {
    int n = 0, cnt = isets_count(sets, g);
    const int *v = isets_of(sets, g);
    /* reservoir sampling keeps it uniform when there are more than max */
    int seen = 0;
    for (int i = 0; i < cnt; i++) {
        const struct goterm *t = biodb_term(db, v[i]);
        if (!t || t->ont != ont || t->ncoding < minc || t->ncoding > maxc) continue;
        if (n < max) out[n++] = v[i];
        else {
            long j = rng_below(r, seen + 1);
            if (j < max) out[j] = v[i];
        }
        seen++;
    }
    rng_shuffle_int(r, out, n);
    return n;
}

void py_open_dbs(struct sb *code) {
    sb_puts(code, "import json, sqlite3\n"
                  "db = sqlite3.connect(\"file:" JAIL_DB_DIR "/org.Hs.eg.sqlite?immutable=1\", uri=True)\n"
                  "db.execute(\"ATTACH 'file:" JAIL_DB_DIR "/GO.sqlite?immutable=1' AS go\")\n");
}

void mc_layout(struct rng *r, const char *const *opts, int n, int correct, int correct_pos, struct sb *b,
               char *letters) {
    int order[16];
    for (int i = 0; i < n; i++) order[i] = i;
    rng_shuffle_int(r, order, n);
    /* the correct option goes where the caller says (the distractors stay
     * shuffled): with correct_pos cycling over the tasks of a split, every
     * letter is right equally often, so no constant answer beats chance */
    for (int pos = 0; pos < n; pos++)
        if (order[pos] == correct) {
            order[pos] = order[correct_pos];
            order[correct_pos] = correct;
            break;
        }
    for (int pos = 0; pos < n; pos++) {
        letters[order[pos]] = (char)('A' + pos);
        sb_printf(b, "%c. %s\n", 'A' + pos, opts[order[pos]]);
    }
}

cJSON *json_strings(const char *const *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
    return a;
}

cJSON *mc_options_json(const char *const *opts, const char *letters, int n) {
    cJSON *o = cJSON_CreateObject();
    for (int pos = 0; pos < n; pos++)
        for (int i = 0; i < n; i++)
            if (letters[i] == 'A' + pos) {
                char l[2] = {letters[i], 0};
                cJSON_AddStringToObject(o, l, opts[i]);
            }
    return o;
}

void sb_task_inputs_note(struct sb *b, const cJSON *inputs) {
    sb_puts(b, "In the Python tool the dict TASK already holds this question's inputs (keys:");
    int i = 0;
    for (const cJSON *it = inputs ? inputs->child : NULL; it; it = it->next) sb_printf(b, "%s \"%s\"", i++ ? "," : "", it->string);
    /* multiple-choice inputs say what their options map holds */
    sb_puts(b, cJSON_GetObjectItemCaseSensitive(inputs, "options") ? "; \"options\" maps each option letter to its text)."
                                                                    : ").");
}
