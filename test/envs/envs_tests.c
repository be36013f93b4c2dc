/*
 * envs_tests.c - unit tests of the task builder's pieces (ASan + UBSan):
 * splits, the seeded stream, quoting, the task's JSON, answer matching,
 * --size, duplicate handling, and the database loader against facts about
 * well-known genes (needs VIV_DB_DIR with the built databases; skipped
 * without it). test/envs/run.sh runs it after building a small data set.
 */
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "../../envs/biodb.h"
#include "../../envs/data_build.h"
#include "../../envs/task.h"
#include "../../envs/verify.h"
#include "../../sandbox/base/util.h"

static void test_split_proportions(void) {
    int n[NSPLITS] = {0};
    char id[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(id, sizeof id, "%d", i + 1);
        n[split_of("gene", id)]++;
    }
    CHECK(n[0] > 15600 && n[0] < 16400, "train %d of 20000", n[0]);
    CHECK(n[1] > 1800 && n[1] < 2200, "val %d", n[1]);
    CHECK(n[2] > 1800 && n[2] < 2200, "test %d", n[2]);
}

/* Published val/test sets depend on split_of: changing it moves entities
 * between splits, so it must be a deliberate change of these pins. */
static void test_split_pinned(void) {
    static const struct {
        const char *kind, *entity;
        enum split want;
    } pins[] = {
        {"gene", "672", SPLIT_TEST}, {"gene", "7157", SPLIT_TRAIN}, {"gene", "1080", SPLIT_TRAIN},
        {"gene", "3", SPLIT_VAL},    {"gene", "15", SPLIT_TEST},   {"mim", "114480", SPLIT_TRAIN},
    };
    for (size_t i = 0; i < sizeof pins / sizeof pins[0]; i++)
        CHECK(split_of(pins[i].kind, pins[i].entity) == pins[i].want, "%s:%s is %s", pins[i].kind, pins[i].entity,
              split_names[split_of(pins[i].kind, pins[i].entity)]);
    /* the kind is part of the key */
    int differ = 0;
    char id[16];
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof id, "%d", i);
        differ += split_of("gene", id) != split_of("mim", id);
    }
    CHECK(differ > 10, "only %d of 200 differ between kinds", differ);
}

static void test_rng(void) {
    struct rng a = rng_seed(1, "x"), b = rng_seed(1, "x"), c = rng_seed(1, "y"), d = rng_seed(2, "x");
    int same_c = 0, same_d = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t va = rng_next(&a);
        CHECK(va == rng_next(&b), "same seed and stream diverge at %d", i);
        same_c += va == rng_next(&c);
        same_d += va == rng_next(&d);
    }
    CHECK(same_c == 0 && same_d == 0, "other stream/seed repeat values: %d %d", same_c, same_d);
    int count[7] = {0};
    for (int i = 0; i < 70000; i++) {
        long v = rng_below(&a, 7);
        CHECK(v >= 0 && v < 7, "rng_below(7) gave %ld", v);
        count[v]++;
    }
    for (int i = 0; i < 7; i++) CHECK(count[i] > 9400 && count[i] < 10600, "value %d drawn %d times of 70000", i, count[i]);
    int perm[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, seen = 0;
    rng_shuffle_int(&a, perm, 10);
    for (int i = 0; i < 10; i++) seen |= 1 << perm[i];
    CHECK(seen == 0x3ff, "shuffle lost elements");
}

static void test_quoting(void) {
    struct sb b = {0};
    sb_pystr(&b, "a\"b\\c\nd\x01");
    char *s = sb_take(&b);
    CHECK(strcmp(s, "\"a\\\"b\\\\c\\u000ad\\u0001\"") == 0, "pystr gave %s", s);
    /* the same text is valid JSON for the same string */
    cJSON *j = cJSON_Parse(s);
    CHECK(j && cJSON_IsString(j) && strcmp(j->valuestring, "a\"b\\c\nd\x01") == 0, "JSON reads it back differently");
    cJSON_Delete(j);
    free(s);
    sb_sqlstr(&b, "O'Brien's");
    s = sb_take(&b);
    CHECK(strcmp(s, "'O''Brien''s'") == 0, "sqlstr gave %s", s);
    free(s);
}

static void test_task_json_fields(void) {
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "go_id", "GO:0006281");
    struct task t = {.task_name = "causal_gene", .split = SPLIT_VAL, .prompt = "p\n\"q\"", .answer = "BRCA1",
                     .grader = "gwas_causal_gene_gwas_catalog", .ref_tool = "python", .ref_code = "print('BRCA1')",
                     .meta = meta};
    char *line = task_to_json(&t, "viv-causal_gene-val-0");
    CHECK(!strchr(line, '\n'), "a JSONL line has no newline: %s", line);
    cJSON *o = cJSON_Parse(line);
    free(line);
    CHECK(o, "not JSON");
    static const char *const keys[] = {"instance_id", "task_name", "split", "prompt", "answer", "grader", "reference", "meta"};
    int n = 0;
    for (cJSON *it = o->child; it; it = it->next) n++;
    CHECK(n == 8, "%d fields", n);
    for (int i = 0; i < 8; i++) CHECK(cJSON_GetObjectItemCaseSensitive(o, keys[i]), "no %s", keys[i]);
    CHECK(strcmp(cJSON_GetObjectItem(o, "split")->valuestring, "val") == 0, "split");
    CHECK(strcmp(cJSON_GetObjectItem(o, "prompt")->valuestring, "p\n\"q\"") == 0, "prompt");
    cJSON *ref = cJSON_GetObjectItem(o, "reference");
    CHECK(strcmp(cJSON_GetObjectItem(ref, "tool")->valuestring, "python") == 0 &&
              strcmp(cJSON_GetObjectItem(ref, "code")->valuestring, "print('BRCA1')") == 0,
          "reference");
    CHECK(strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "meta"), "go_id")->valuestring, "GO:0006281") == 0, "meta");
    cJSON_Delete(o);
    cJSON_Delete(meta);
}

static void test_last_line(void) {
    CHECK(last_line_is("x\nBRCA1\n", 8, "BRCA1"), "plain");
    CHECK(last_line_is("BRCA1", 5, "BRCA1"), "no newline");
    CHECK(last_line_is("a\r\nB\r\n", 6, "B"), "CRLF");
    CHECK(last_line_is("a\nB\n\n\n", 6, "B"), "trailing blank lines");
    CHECK(!last_line_is("BRCA1\nx\n", 8, "BRCA1"), "not the last line");
    CHECK(!last_line_is("xBRCA1\n", 7, "BRCA1"), "suffix of a line");
    CHECK(!last_line_is("BRCA12\n", 7, "BRCA1"), "prefix of a line");
    CHECK(!last_line_is("brca1\n", 6, "BRCA1"), "case matters here (graders decide case-insensitivity)");
    CHECK(!last_line_is("", 0, "A"), "empty output");
}

static void test_size_parse(void) {
    int w[NSPLITS], mc[NSPLITS];
    char err[256];
    CHECK(data_size_parse("small", w, mc, err, sizeof err) == 0 && w[0] == 60 && w[1] == 15 && w[2] == 15 &&
              !memcmp(w, mc, sizeof w), "small (the same for every shape)");
    CHECK(data_size_parse("large", w, mc, err, sizeof err) == 0 && w[0] == 3000 && w[1] == 300, "large");
    CHECK(data_size_parse("80", w, mc, err, sizeof err) == 0 && w[0] == 80 && w[1] == 10 && w[2] == 10, "80");
    CHECK(data_size_parse("3", w, mc, err, sizeof err) == 0 && w[0] == 3 && w[1] == 2 && w[2] == 2, "3");
    CHECK(data_size_parse("default", w, mc, err, sizeof err) == 0 && w[0] == 60 && w[1] == 15 && mc[0] == 1000 &&
              mc[1] == 125 && mc[2] == 125, "default: small, 1000/125/125 for the multiple-choice shapes");
    static const char *const bad[] = {"0", "-1", "huge", "100001", "", "5x", "1e3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(data_size_parse(bad[i], w, mc, err, sizeof err) == -1 && strstr(err, "--size"), "'%s' accepted", bad[i]);
}

static void test_gen_emit_quota_and_duplicates(void) {
    struct tasklist l = {0};
    struct gen_ctx g = {.task_name = "t", .want = {2, 1, 0}, .out = &l};
    CHECK(gen_emit(&g, SPLIT_TRAIN, "r", xstrdup("p1"), xstrdup("a"), "python", xstrdup("c"), NULL) == 0, "first");
    CHECK(gen_emit(&g, SPLIT_TRAIN, "r", xstrdup("p1"), xstrdup("a"), "python", xstrdup("c"), NULL) == 1, "duplicate kept");
    CHECK(gen_emit(&g, SPLIT_TEST, "r", xstrdup("p2"), xstrdup("a"), "python", xstrdup("c"), NULL) == 1, "over quota kept");
    CHECK(gen_emit(&g, SPLIT_VAL, "r", xstrdup("p2"), xstrdup("a"), "python", xstrdup("c"), cJSON_CreateObject()) == 0, "val");
    CHECK(!gen_done(&g), "done with train short");
    CHECK(gen_emit(&g, SPLIT_TRAIN, "r", xstrdup("p3"), xstrdup("a"), "python", xstrdup("c"), NULL) == 0, "second train");
    CHECK(gen_done(&g) && l.n == 3, "done %d, %zu tasks", gen_done(&g), l.n);
    free(g.seen);
    tasklist_free(&l);
}

static int find_symbol(const struct biodb *db, const char *sym) {
    for (int i = 0; i < db->ngenes; i++)
        if (strcmp(db->genes[i].symbol, sym) == 0) return i;
    return -1;
}

static bool has_value(const struct strsets *s, int g, const char *v) { return g >= 0 && strsets_has(s, g, v); }

/* Facts about well-known genes (NCBI Gene, Ensembl, UniProt, GO), as the
 * 2022 org.Hs.eg.db in Debian bookworm records them. */
static void test_biodb_known_genes(void) {
    const char *dir = getenv("VIV_DB_DIR");
    if (!dir || !*dir) SKIP("VIV_DB_DIR not set (test/envs/run.sh sets it after a build)");
    char *org = xasprintf("%s/org.Hs.eg.sqlite", dir), *go = xasprintf("%s/GO.sqlite", dir);
    struct biodb db;
    char err[1024];
    int rc = biodb_load(&db, org, go, err, sizeof err);
    free(org);
    free(go);
    CHECK(rc == 0, "%s", err);
    int brca1 = find_symbol(&db, "BRCA1"), tp53 = find_symbol(&db, "TP53"), cftr = find_symbol(&db, "CFTR");
    bool ok = brca1 >= 0 && tp53 >= 0 && cftr >= 0;
    const char *why = !ok ? "a gene is missing" : NULL;
    if (ok) {
        const struct bgene *b = &db.genes[brca1], *c = &db.genes[cftr];
        if (strcmp(b->entrez, "672") || strcmp(db.genes[tp53].entrez, "7157") || strcmp(c->entrez, "1080"))
            why = "Entrez IDs";
        else if (!b->coding || b->dup_symbol || b->chrom != 17 || db.genes[tp53].chrom != 17 || c->chrom != 7)
            why = "type or chromosome";
        else if (c->start != 117480024 || c->end != 117668664)
            why = "CFTR span (hg38, as stored)";
        else if (sets_count(&db.band, brca1) != 1 || strcmp(sets_of(&db.band, brca1)[0], "17q21.31"))
            why = "BRCA1 band";
        else if (!has_value(&db.ensembl, brca1, "ENSG00000012048") || !has_value(&db.uniprot, brca1, "P38398") ||
                 !has_value(&db.ensembl, tp53, "ENSG00000141510") || !has_value(&db.uniprot, tp53, "P04637"))
            why = "Ensembl/UniProt";
        else if (!has_value(&db.omim, cftr, "219700") || !has_value(&db.omim, cftr, "602421"))
            why = "CFTR MIM numbers";
        else if (!intsets_has(&db.bp, brca1, 6281) || !intsets_has(&db.bp, brca1, 8150) ||
                 !intsets_has(&db.cc, brca1, 5634))
            why = "BRCA1 GO (DNA repair; biological_process; nucleus)";
    }
    const struct goterm *t = biodb_term(&db, 6281), *root = biodb_term(&db, 8150);
    if (!why && (!t || strcmp(t->name, "DNA repair") || t->ont != 'B' || t->ncoding < 100 || !root ||
                 root->ncoding < 15000))
        why = "GO term 6281 / 8150";
    if (!why) {
        /* 114480 (familial breast cancer) is linked to BRCA1 and TP53, among others: a shared (disorder) entry */
        int shared = 0;
        for (int i = db.omim.off[brca1]; i < db.omim.off[brca1 + 1]; i++)
            if (strcmp(db.omim.vals[i], "114480") == 0) shared = db.omim_ngenes[i];
        if (shared < 2) why = "MIM 114480 linked to fewer than 2 genes";
    }
    if (!why) {
        /* loci sorted by (chromosome, start) */
        for (int i = 1; i < db.nloci && !why; i++)
            if (db.loci[i].chrom < db.loci[i - 1].chrom ||
                (db.loci[i].chrom == db.loci[i - 1].chrom && db.loci[i].start < db.loci[i - 1].start))
                why = "loci out of order";
    }
    biodb_free(&db);
    CHECK(!why, "%s", why);
}

int main(int argc, char **argv) {
    static const struct test_case tests[] = {
#define T(name) {#name, test_##name}
        T(split_proportions), T(split_pinned), T(rng), T(quoting), T(task_json_fields), T(last_line),
        T(size_parse), T(gen_emit_quota_and_duplicates), T(biodb_known_genes),
#undef T
    };
    return run_test_cases(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
}
