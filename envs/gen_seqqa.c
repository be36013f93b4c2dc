/*
 * gen_seqqa.c - multiple-choice questions computed from a DNA sequence (the
 * shape of LAB-Bench SeqQA in Eval1's lab_bench_seqqa).
 *
 * The sequences are drawn from the seeded stream (no database holds them);
 * every answer is computed here and recomputed by the reference solution
 * from the sequence alone. Four kinds: reverse complement, GC content,
 * translation of an open reading frame (standard code), and the number of
 * recognition sites of a palindromic restriction enzyme. Decoys are the
 * mistakes people make (reverse without complement, complement without
 * reverse, off-by-one counts, a changed residue). Tasks split by a hash of
 * their sequence. The sequence, the enzyme's site and the options are the
 * task's inputs (TASK in the Python tool; protocol.h), which the reference
 * solution reads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sandbox/base/util.h"
#include "gen.h"

enum skind { S_REVCOMP, S_GC, S_TRANSLATE, S_SITES, NS };

static const char *const skind_names[NS] = {"reverse_complement", "gc_content", "translation",
                                            "restriction_sites"};

static const char bases[] = "ACGT";

static char complement(char b) { return b == 'A' ? 'T' : b == 'T' ? 'A' : b == 'C' ? 'G' : 'C'; }

static void random_dna(struct rng *r, char *s, int n) {
    for (int i = 0; i < n; i++) s[i] = bases[rng_below(r, 4)];
    s[n] = 0;
}

/* The standard genetic code, codons in TCAG order (T=0, C=1, A=2, G=3). */
static const char code_table[] = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG";

static int tcag(char b) { return b == 'T' ? 0 : b == 'C' ? 1 : b == 'A' ? 2 : 3; }

static char translate_codon(const char *c) { return code_table[16 * tcag(c[0]) + 4 * tcag(c[1]) + tcag(c[2])]; }

struct enzyme {
    const char *name, *site;
};
static const struct enzyme enzymes[] = {
    {"EcoRI", "GAATTC"}, {"BamHI", "GGATCC"}, {"HindIII", "AAGCTT"}, {"XhoI", "CTCGAG"},
    {"PstI", "CTGCAG"},  {"SmaI", "CCCGGG"},  {"NotI", "GCGGCCGC"}, {"EcoRV", "GATATC"},
};
#define NENZ ((int)(sizeof enzymes / sizeof enzymes[0]))

static int count_sites(const char *seq, const char *site) {
    int n = 0;
    for (const char *p = seq; (p = strstr(p, site)); p++) n++; /* overlapping matches count */
    return n;
}

static bool distinct(char **v, int n) {
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(v[i], v[j]) == 0) return false;
    return true;
}

/* Build the four value options (opts[0] correct), the question, and the
 * Python that computes the correct value into `value`. 0, or -1 to retry. */
static int build(struct rng *r, enum skind k, char *seq, char **opts, struct sb *q, struct sb *py, const char **site) {
    char buf[512];
    if (k == S_REVCOMP) {
        int n = 18 + (int)rng_below(r, 13);
        random_dna(r, seq, n);
        char rc[64], rev[64], comp[64], mut[64];
        for (int i = 0; i < n; i++) {
            rc[i] = complement(seq[n - 1 - i]);
            rev[i] = seq[n - 1 - i];
            comp[i] = complement(seq[i]);
        }
        rc[n] = rev[n] = comp[n] = 0;
        memcpy(mut, rc, (size_t)n + 1);
        int at = (int)rng_below(r, n);
        mut[at] = bases[(strchr(bases, mut[at]) - bases + 1 + rng_below(r, 3)) % 4];
        opts[0] = xstrdup(rc), opts[1] = xstrdup(rev), opts[2] = xstrdup(comp), opts[3] = xstrdup(mut);
        sb_printf(q, "What is the reverse complement of the DNA sequence 5'-%s-3' (written 5' to 3')?", seq);
        sb_puts(py, "pair = {\"A\": \"T\", \"C\": \"G\", \"G\": \"C\", \"T\": \"A\"}\n"
                    "value = \"\".join(pair[b] for b in reversed(seq))\n");
    } else if (k == S_GC) {
        int n = 40 + (int)rng_below(r, 41);
        random_dna(r, seq, n);
        int gc = 0;
        for (int i = 0; i < n; i++) gc += seq[i] == 'G' || seq[i] == 'C';
        /* decoys: the AT content, and counts off by a few bases */
        int alt[3] = {n - gc, gc + 2 + (int)rng_below(r, 3), gc - 2 - (int)rng_below(r, 3)};
        if (alt[2] < 0) alt[2] = gc + 6;
        if (alt[1] > n) alt[1] = gc - 5;
        snprintf(buf, sizeof buf, "%.1f%%", 100.0 * gc / n);
        opts[0] = xstrdup(buf);
        for (int i = 0; i < 3; i++) {
            snprintf(buf, sizeof buf, "%.1f%%", 100.0 * alt[i] / n);
            opts[i + 1] = xstrdup(buf);
        }
        sb_printf(q, "What is the GC content of the DNA sequence 5'-%s-3', as a percentage rounded to one decimal?", seq);
        sb_puts(py, "value = \"%.1f%%\" % (100.0 * sum(b in \"GC\" for b in seq) / len(seq))\n");
    } else if (k == S_TRANSLATE) {
        static const char *const stops[] = {"TAA", "TAG", "TGA"};
        int codons = 8 + (int)rng_below(r, 7), n = 0;
        memcpy(seq, "ATG", 3), n = 3;
        for (int i = 0; i < codons; i++) {
            do random_dna(r, seq + n, 3);
            while (translate_codon(seq + n) == '*');
            n += 3;
        }
        memcpy(seq + n, stops[rng_below(r, 3)], 3), n += 3;
        seq[n] = 0;
        char prot[32];
        int m = 0;
        for (int i = 0; i + 3 <= n && translate_codon(seq + i) != '*'; i += 3) prot[m++] = translate_codon(seq + i);
        prot[m] = 0;
        static const char aas[] = "ACDEFGHIKLMNPQRSTVWY";
        char a[32], b[32], c[32];
        memcpy(a, prot, (size_t)m + 1), memcpy(b, prot, (size_t)m + 1);
        int i1 = 1 + (int)rng_below(r, m - 1), i2 = 1 + (int)rng_below(r, m - 1);
        a[i1] = aas[(strchr(aas, a[i1]) - aas + 1 + rng_below(r, 19)) % 20];
        b[i2] = aas[(strchr(aas, b[i2]) - aas + 1 + rng_below(r, 19)) % 20];
        memcpy(c, prot, (size_t)m + 1);
        c[m - 1] = 0; /* one residue short: the last codon read as the stop */
        opts[0] = xstrdup(prot), opts[1] = xstrdup(a), opts[2] = xstrdup(b), opts[3] = xstrdup(c);
        sb_printf(q,
                  "Translate the open reading frame 5'-%s-3' with the standard genetic code, from its first "
                  "codon up to (not including) the first stop codon. Which protein sequence results?",
                  seq);
        sb_puts(py, "bases = \"TCAG\"\n"
                    "table = \"FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG\"\n"
                    "value = \"\"\n"
                    "for i in range(0, len(seq) - 2, 3):\n"
                    "    aa = table[16 * bases.index(seq[i]) + 4 * bases.index(seq[i + 1]) + bases.index(seq[i + 2])]\n"
                    "    if aa == \"*\":\n"
                    "        break\n"
                    "    value += aa\n");
    } else {
        const struct enzyme *e = &enzymes[rng_below(r, NENZ)];
        *site = e->site;
        int n = 60 + (int)rng_below(r, 91), planted = (int)rng_below(r, 4);
        size_t m = strlen(e->site);
        random_dna(r, seq, n);
        for (int i = 0; i < planted; i++) memcpy(seq + rng_below(r, n - (long)m + 1), e->site, m);
        int sites = count_sites(seq, e->site);
        int base = sites - (int)rng_below(r, 4);
        if (base < 0) base = 0;
        for (int i = 0; i < 4; i++) opts[i] = xasprintf("%d", base + i);
        /* opts[0] must be the correct one: swap it into place */
        int at = sites - base;
        char *t = opts[0];
        opts[0] = opts[at], opts[at] = t;
        sb_printf(q,
                  "How many %s recognition sites (%s) does the double-stranded DNA sequence 5'-%s-3' "
                  "contain? The site is palindromic, so count each site once (overlapping sites count "
                  "separately).",
                  e->name, e->site, seq);
        sb_puts(py, "site = TASK[\"site\"]\n"
                    "value = str(sum(seq.startswith(site, i) for i in range(len(seq))))\n");
    }
    return distinct(opts, 4) ? 0 : -1;
}

void gen_seqqa(const struct biodb *db, struct gen_ctx *g) {
    (void)db;
    long budget = gen_attempt_budget(g);
    for (g->attempts = 0; g->attempts < budget && !gen_done(g); g->attempts++) {
        enum skind k = (enum skind)rng_below(&g->rng, NS);
        char seq[256];
        char *opts[5] = {0};
        struct sb q = {0}, py = {0};
        const char *site = NULL;
        int rc = build(&g->rng, k, seq, opts, &q, &py, &site);
        enum split s = split_of("seq", seq);
        if (rc || !gen_wants(g, s)) {
            for (int i = 0; i < 4; i++) free(opts[i]);
            free(sb_take(&q)), free(sb_take(&py));
            continue;
        }
        opts[4] = xstrdup(INSUFFICIENT);
        char letters[5];
        struct sb o = {0};
        mc_layout(&g->rng, (const char *const *)opts, 5, 0, g->have[s] % 5, &o, letters);
        char answer[2] = {letters[0], 0};

        cJSON *inputs = cJSON_CreateObject();
        cJSON_AddStringToObject(inputs, "sequence", seq);
        if (site) cJSON_AddStringToObject(inputs, "site", site);
        cJSON_AddItemToObject(inputs, "options", mc_options_json((const char *const *)opts, letters, 5));
        struct sb note = {0};
        sb_task_inputs_note(&note, inputs);
        struct sb p = {0};
        sb_printf(&p,
                  "The following is a multiple choice question about a DNA sequence. %s\n\nQuestion: %s\n"
                  "Options:\n%s\nOutput format: the letter of the correct option alone, e.g. A.",
                  note.s, q.s, o.s);
        struct sb c = {0};
        sb_printf(&c, "# Compute the %s of the sequence, then find the option that equals it.\n"
                      "seq = TASK[\"sequence\"]\n%s"
                      "print(\"computed:\", value)\n"
                      "hits = [letter for letter, text in TASK[\"options\"].items() if text == value]\n"
                      "print(hits[0] if len(hits) == 1 else \"no single option matches\")\n",
                  skind_names[k], py.s);

        cJSON *meta = cJSON_CreateObject();
        cJSON_AddStringToObject(meta, "kind", skind_names[k]);
        cJSON_AddStringToObject(meta, "sequence", seq);
        cJSON_AddStringToObject(meta, "correct_value", opts[0]);
        cJSON_AddItemToObject(meta, "inputs", inputs);
        for (int i = 0; i < 5; i++) free(opts[i]);
        free(sb_take(&q)), free(sb_take(&py)), free(sb_take(&o)), free(sb_take(&note));
        gen_emit(g, s, "lab_bench_seqqa", sb_take(&p), xstrdup(answer), "python", sb_take(&c), meta);
    }
}
