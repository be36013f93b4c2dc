/*
 * biodb.h - the slice of org.Hs.eg.sqlite and GO.sqlite the task generators
 * need, loaded into memory once.
 *
 * vivarium links no SQLite library (the C dependencies are fixed), so the
 * tables are read by running Debian's sqlite3 shell on the host, read-only
 * and immutable, and parsing its tab-separated output. Everything a
 * generator states as a fact comes from these arrays, which are exactly the
 * rows the reference solutions query later inside the jail.
 */
#ifndef VIV_ENVS_BIODB_H
#define VIV_ENVS_BIODB_H

#include <stdbool.h>
#include <stddef.h>

/* Per-gene sets of strings (Ensembl IDs, UniProt accessions, MIM numbers,
 * KEGG pathway IDs, bands): values of gene i are vals[off[i] .. off[i+1]). */
struct strsets {
    int *off; /* ngenes + 1 */
    char **vals;
    size_t nvals;
};

/* Per-gene sorted sets of GO terms as their numbers (GO:0008150 -> 8150). */
struct intsets {
    int *off;
    int *vals;
    size_t nvals;
};

struct bgene {
    int id;         /* org.Hs.eg.db's internal _id */
    char *entrez;   /* genes.gene_id */
    char *symbol;   /* gene_info.symbol */
    char *name;     /* gene_info.gene_name */
    bool coding;    /* genetype.gene_type = 'protein-coding' */
    bool dup_symbol; /* the symbol names more than one gene: never used in a task */
    int chrom;      /* 1..22, 23 = X, 24 = Y; 0 = no single main-chromosome location */
    long start, end; /* the gene's span: min |start_location| .. max |end_location| on chrom */
};

struct locus {
    int gene, chrom;
    long start, end;
};

struct goterm {
    int num;     /* GO:0008150 -> 8150 */
    char ont;    /* 'B' (biological process) or 'C' (cellular component) */
    char *name;  /* go_term.term */
    int ncoding; /* protein-coding genes annotated to it (the *_all tables) */
};

struct biodb {
    int ngenes;
    struct bgene *genes;  /* ordered by _id */
    struct strsets ensembl, uniprot, omim, kegg, band;
    struct intsets bp, cc; /* go_bp_all / go_cc_all */
    int nterms;
    struct goterm *terms; /* sorted by num */
    /* every gene span on a main chromosome, sorted by (chrom, start) */
    struct locus *loci;
    int nloci;
    /* how many genes each value is linked to, parallel to omim.vals and
     * ensembl.vals (a MIM number linked to several genes is a disorder entry;
     * an Ensembl ID linked to one gene names it unambiguously) */
    int *omim_ngenes, *ensembl_ngenes;
    char *org_path, *go_path;
};

/* Load from the two database files. 0, or -1 with err. */
int biodb_load(struct biodb *db, const char *org_sqlite, const char *go_sqlite, char *err,
               size_t errlen);
void biodb_free(struct biodb *db);

static inline int sets_count(const struct strsets *s, int g) { return s->off[g + 1] - s->off[g]; }
static inline char **sets_of(const struct strsets *s, int g) { return s->vals + s->off[g]; }
bool strsets_has(const struct strsets *s, int g, const char *v);
bool intsets_has(const struct intsets *s, int g, int v);
static inline int isets_count(const struct intsets *s, int g) { return s->off[g + 1] - s->off[g]; }
static inline const int *isets_of(const struct intsets *s, int g) { return s->vals + s->off[g]; }

const struct goterm *biodb_term(const struct biodb *db, int num);
/* "chr7", "chrX" */
const char *chrom_name(int chrom);
/* "GO:0008150" into buf[11] */
const char *go_id(int num, char buf[16]);

/* A gene a task may name: protein-coding, unique symbol. */
static inline bool gene_usable(const struct biodb *db, int g) {
    return db->genes[g].coding && !db->genes[g].dup_symbol;
}

#endif
