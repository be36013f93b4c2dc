/*
 * biodb.c - load the generators' view of org.Hs.eg.sqlite and GO.sqlite.
 *
 * Each table is one query run by the host's sqlite3 shell (read-only,
 * immutable URI, tab-separated output, ordered by _id), parsed into flat
 * arrays indexed by gene. The whole load takes about two seconds.
 */
#define _GNU_SOURCE
#include "biodb.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../sandbox/base/util.h"

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *sqlite3_bin(void) {
    const char *env = getenv("VIV_SQLITE3");
    if (env && *env) return env;
    return access("/usr/bin/sqlite3", X_OK) == 0 ? "/usr/bin/sqlite3" : "sqlite3";
}

/* Run one query; returns its whole stdout (NUL-terminated) or NULL + err.
 * stderr shares the pipe: on failure its last words become the message. */
static char *run_query(const char *db_uri, const char *sql, size_t *len,
                       char *err, size_t errlen) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return fail(err, errlen, "pipe: %s", strerror(errno)), NULL;
    const char *bin = sqlite3_bin();
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]), close(p[1]);
        return fail(err, errlen, "fork: %s", strerror(errno)), NULL;
    }
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        char *argv[] = {(char *)bin, "-readonly", "-batch", "-noheader", "-separator", "\t",
                        "-newline", "\n", (char *)db_uri, (char *)sql, NULL};
        execvp(bin, argv);
        dprintf(2, "cannot run %s: %s", bin, strerror(errno));
        _exit(127);
    }
    close(p[1]);
    size_t cap = 1 << 20, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (cap - n < 65536) buf = xrealloc(buf, cap *= 2);
        ssize_t r = read(p[0], buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(p[0]);
    buf[n] = 0;
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        const char *tail = n > 300 ? buf + n - 300 : buf;
        fail(err, errlen, "%s failed on %s: %s", bin, db_uri, tail);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Split the next line of *cur into up to max tab-separated fields, in place. */
static int next_row(char **cur, char **f, int max) {
    char *s = *cur;
    if (!*s) return 0;
    char *eol = strchr(s, '\n');
    if (eol) *eol = 0, *cur = eol + 1;
    else *cur = s + strlen(s);
    int n = 0;
    f[n++] = s;
    for (char *t = s; *t && n < max; t++)
        if (*t == '\t') *t = 0, f[n++] = t + 1;
    return n;
}

static int *id2idx;
static int maxid;

static int gene_index(long id) { return id >= 0 && id <= maxid ? id2idx[id] : -1; }

static int load_genes(struct biodb *db, const char *uri, char *err, size_t errlen) {
    size_t len;
    char *out = run_query(uri,
                          "SELECT g._id, g.gene_id, i.symbol, i.gene_name,"
                          " coalesce((SELECT t.gene_type FROM genetype t WHERE t._id = g._id LIMIT 1), '')"
                          " FROM genes g JOIN gene_info i ON i._id = g._id ORDER BY g._id;",
                          &len, err, errlen);
    if (!out) return -1;
    size_t cap = 1024;
    db->genes = xmalloc(cap * sizeof *db->genes);
    char *cur = out, *f[5];
    int n;
    while ((n = next_row(&cur, f, 5)) > 0) {
        if (n != 5) continue;
        if ((size_t)db->ngenes == cap) db->genes = xrealloc(db->genes, (cap *= 2) * sizeof *db->genes);
        struct bgene *g = &db->genes[db->ngenes++];
        memset(g, 0, sizeof *g);
        g->id = atoi(f[0]);
        g->entrez = xstrdup(f[1]);
        g->symbol = xstrdup(f[2]);
        g->name = xstrdup(f[3]);
        g->coding = strcmp(f[4], "protein-coding") == 0;
        if (g->id > maxid) maxid = g->id;
    }
    free(out);
    if (db->ngenes < 1000) return fail(err, errlen, "%s: only %d genes read", uri, db->ngenes);
    id2idx = xmalloc(((size_t)maxid + 1) * sizeof *id2idx);
    for (int i = 0; i <= maxid; i++) id2idx[i] = -1;
    for (int i = 0; i < db->ngenes; i++) id2idx[db->genes[i].id] = i;

    out = run_query(uri,
                    "SELECT _id FROM gene_info WHERE symbol IN"
                    " (SELECT symbol FROM gene_info GROUP BY symbol HAVING count(*) > 1);",
                    &len, err, errlen);
    if (!out) return -1;
    cur = out;
    while (next_row(&cur, f, 1) > 0) {
        int g = gene_index(atol(f[0]));
        if (g >= 0) db->genes[g].dup_symbol = true;
    }
    free(out);
    return 0;
}

static int chrom_number(const char *s) {
    if (strcmp(s, "X") == 0) return 23;
    if (strcmp(s, "Y") == 0) return 24;
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v >= 1 && v <= 22 ? (int)v : 0;
}

const char *chrom_name(int chrom) {
    static const char *names[] = {"chr?", "chr1", "chr2", "chr3", "chr4", "chr5", "chr6", "chr7", "chr8",
                                  "chr9", "chr10", "chr11", "chr12", "chr13", "chr14", "chr15", "chr16",
                                  "chr17", "chr18", "chr19", "chr20", "chr21", "chr22", "chrX", "chrY"};
    return chrom >= 1 && chrom <= 24 ? names[chrom] : names[0];
}

static int locus_cmp(const void *a, const void *b) {
    const struct locus *x = a, *y = b;
    if (x->chrom != y->chrom) return x->chrom - y->chrom;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->gene - y->gene;
}

/* Gene spans on the main chromosomes. A gene with rows on two chromosomes
 * (X/Y pseudo-autosomal) keeps both loci but no single chrom. */
static int load_loci(struct biodb *db, const char *uri, char *err, size_t errlen) {
    size_t len;
    char *out = run_query(uri,
                          "SELECT _id, seqname, min(abs(start_location)), max(abs(end_location))"
                          " FROM chromosome_locations WHERE seqname IN ('1','2','3','4','5','6','7','8',"
                          "'9','10','11','12','13','14','15','16','17','18','19','20','21','22','X','Y')"
                          " GROUP BY _id, seqname ORDER BY _id;",
                          &len, err, errlen);
    if (!out) return -1;
    size_t cap = 1024;
    db->loci = xmalloc(cap * sizeof *db->loci);
    char *cur = out, *f[4];
    while (next_row(&cur, f, 4) == 4) {
        int g = gene_index(atol(f[0])), c = chrom_number(f[1]);
        if (g < 0 || !c) continue;
        if ((size_t)db->nloci == cap) db->loci = xrealloc(db->loci, (cap *= 2) * sizeof *db->loci);
        struct locus *l = &db->loci[db->nloci++];
        *l = (struct locus){g, c, atol(f[2]), atol(f[3])};
        struct bgene *ge = &db->genes[g];
        if (ge->chrom == 0 && ge->start == 0) ge->chrom = c, ge->start = l->start, ge->end = l->end;
        else ge->chrom = 0, ge->start = -1; /* two chromosomes: no single span */
    }
    free(out);
    for (int i = 0; i < db->ngenes; i++)
        if (db->genes[i].start < 0) db->genes[i].start = db->genes[i].end = 0;
    qsort(db->loci, (size_t)db->nloci, sizeof *db->loci, locus_cmp);
    return 0;
}

/* "_id \t value" rows ordered by _id into per-gene sets. */
static int load_strsets(struct strsets *s, int ngenes, const char *uri, const char *sql, char *err,
                        size_t errlen) {
    size_t len;
    char *out = run_query(uri, sql, &len, err, errlen);
    if (!out) return -1;
    s->off = xcalloc((size_t)ngenes + 1, sizeof *s->off);
    size_t cap = 1024;
    s->vals = xmalloc(cap * sizeof *s->vals);
    int *owner = xmalloc(cap * sizeof *owner);
    char *cur = out, *f[2];
    while (next_row(&cur, f, 2) == 2) {
        int g = gene_index(atol(f[0]));
        if (g < 0 || !f[1][0]) continue;
        if (s->nvals == cap) {
            cap *= 2;
            s->vals = xrealloc(s->vals, cap * sizeof *s->vals);
            owner = xrealloc(owner, cap * sizeof *owner);
        }
        owner[s->nvals] = g;
        s->vals[s->nvals++] = xstrdup(f[1]);
        s->off[g + 1]++;
    }
    free(out);
    for (int g = 0; g < ngenes; g++) s->off[g + 1] += s->off[g];
    free(owner); /* rows came ordered by _id, and genes are indexed in _id order */
    return 0;
}

static int load_intsets(struct intsets *s, int ngenes, const char *uri, const char *sql, char *err,
                        size_t errlen) {
    size_t len;
    char *out = run_query(uri, sql, &len, err, errlen);
    if (!out) return -1;
    s->off = xcalloc((size_t)ngenes + 1, sizeof *s->off);
    size_t cap = 1 << 16;
    s->vals = xmalloc(cap * sizeof *s->vals);
    char *cur = out, *f[2];
    while (next_row(&cur, f, 2) == 2) {
        int g = gene_index(atol(f[0]));
        if (g < 0) continue;
        if (s->nvals == cap) s->vals = xrealloc(s->vals, (cap *= 2) * sizeof *s->vals);
        s->vals[s->nvals++] = atoi(f[1]);
        s->off[g + 1]++;
    }
    free(out);
    for (int g = 0; g < ngenes; g++) s->off[g + 1] += s->off[g];
    return 0;
}

static int load_terms(struct biodb *db, const char *go_uri, char *err, size_t errlen) {
    size_t len;
    char *out = run_query(go_uri,
                          "SELECT CAST(substr(go_id, 4) AS INTEGER), ontology, term FROM go_term"
                          " WHERE ontology IN ('BP', 'CC') ORDER BY 1;",
                          &len, err, errlen);
    if (!out) return -1;
    size_t cap = 1024;
    db->terms = xmalloc(cap * sizeof *db->terms);
    char *cur = out, *f[3];
    while (next_row(&cur, f, 3) == 3) {
        if ((size_t)db->nterms == cap) db->terms = xrealloc(db->terms, (cap *= 2) * sizeof *db->terms);
        db->terms[db->nterms++] = (struct goterm){atoi(f[0]), f[1][0], xstrdup(f[2]), 0};
    }
    free(out);
    if (db->nterms < 1000) return fail(err, errlen, "%s: only %d GO terms read", go_uri, db->nterms);
    return 0;
}

const struct goterm *biodb_term(const struct biodb *db, int num) {
    int lo = 0, hi = db->nterms - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (db->terms[mid].num == num) return &db->terms[mid];
        if (db->terms[mid].num < num) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

const char *go_id(int num, char buf[16]) {
    snprintf(buf, 16, "GO:%07d", num);
    return buf;
}

bool strsets_has(const struct strsets *s, int g, const char *v) {
    for (int i = s->off[g]; i < s->off[g + 1]; i++)
        if (strcmp(s->vals[i], v) == 0) return true;
    return false;
}

bool intsets_has(const struct intsets *s, int g, int v) {
    int lo = s->off[g], hi = s->off[g + 1] - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (s->vals[mid] == v) return true;
        if (s->vals[mid] < v) lo = mid + 1;
        else hi = mid - 1;
    }
    return false;
}

static int strptr_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* How many genes each value of a set is linked to (rows are distinct per
 * gene, so equal values in the sorted copy are distinct genes). */
static int *count_genes_per_value(const struct strsets *s) {
    size_t n = s->nvals;
    char **sorted = xmalloc((n ? n : 1) * sizeof *sorted);
    memcpy(sorted, s->vals, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, strptr_cmp);
    int *count = xcalloc(n ? n : 1, sizeof *count);
    for (size_t i = 0; i < n; i++) {
        char **hit = bsearch(&s->vals[i], sorted, n, sizeof *sorted, strptr_cmp);
        size_t lo = (size_t)(hit - sorted), hi = lo;
        while (lo > 0 && strcmp(sorted[lo - 1], s->vals[i]) == 0) lo--;
        while (hi + 1 < n && strcmp(sorted[hi + 1], s->vals[i]) == 0) hi++;
        count[i] = (int)(hi - lo + 1);
    }
    free(sorted);
    return count;
}

static void count_terms(struct biodb *db, const struct intsets *s) {
    for (int g = 0; g < db->ngenes; g++) {
        if (!db->genes[g].coding) continue;
        for (int i = s->off[g]; i < s->off[g + 1]; i++) {
            struct goterm *t = (struct goterm *)biodb_term(db, s->vals[i]);
            if (t) t->ncoding++;
        }
    }
}

int biodb_load(struct biodb *db, const char *org_sqlite, const char *go_sqlite, char *err,
               size_t errlen) {
    memset(db, 0, sizeof *db);
    if (strpbrk(org_sqlite, "?#%'") || strpbrk(go_sqlite, "?#%'"))
        return fail(err, errlen, "database paths may not contain ? # %% or '");
    char *org = xasprintf("file:%s?immutable=1", org_sqlite);
    char *go = xasprintf("file:%s?immutable=1", go_sqlite);
    db->org_path = xstrdup(org_sqlite);
    db->go_path = xstrdup(go_sqlite);
    int rc = -1;
    maxid = 0;
    if (load_genes(db, org, err, errlen) || load_loci(db, org, err, errlen)) goto out;
    int ng = db->ngenes;
    if (load_strsets(&db->ensembl, ng, org, "SELECT DISTINCT _id, ensembl_id FROM ensembl ORDER BY 1, 2;", err, errlen) ||
        load_strsets(&db->uniprot, ng, org, "SELECT DISTINCT _id, uniprot_id FROM uniprot ORDER BY 1, 2;", err, errlen) ||
        load_strsets(&db->omim, ng, org, "SELECT DISTINCT _id, omim_id FROM omim ORDER BY 1, 2;", err, errlen) ||
        load_strsets(&db->kegg, ng, org, "SELECT DISTINCT _id, path_id FROM kegg ORDER BY 1, 2;", err, errlen) ||
        load_strsets(&db->band, ng, org,
                     "SELECT DISTINCT _id, cytogenetic_location FROM cytogenetic_locations ORDER BY 1, 2;",
                     err, errlen) ||
        load_intsets(&db->bp, ng, org,
                     "SELECT DISTINCT _id, CAST(substr(go_id, 4) AS INTEGER) FROM go_bp_all ORDER BY 1, 2;",
                     err, errlen) ||
        load_intsets(&db->cc, ng, org,
                     "SELECT DISTINCT _id, CAST(substr(go_id, 4) AS INTEGER) FROM go_cc_all ORDER BY 1, 2;",
                     err, errlen) ||
        load_terms(db, go, err, errlen))
        goto out;
    db->omim_ngenes = count_genes_per_value(&db->omim);
    db->ensembl_ngenes = count_genes_per_value(&db->ensembl);
    count_terms(db, &db->bp);
    count_terms(db, &db->cc);
    rc = 0;
out:
    free(id2idx);
    id2idx = NULL;
    free(org);
    free(go);
    return rc;
}

static void strsets_free(struct strsets *s) {
    for (size_t i = 0; i < s->nvals; i++) free(s->vals[i]);
    free(s->vals);
    free(s->off);
}

void biodb_free(struct biodb *db) {
    for (int i = 0; i < db->ngenes; i++) {
        free(db->genes[i].entrez);
        free(db->genes[i].symbol);
        free(db->genes[i].name);
    }
    free(db->genes);
    free(db->loci);
    strsets_free(&db->ensembl);
    strsets_free(&db->uniprot);
    strsets_free(&db->omim);
    strsets_free(&db->kegg);
    strsets_free(&db->band);
    free(db->bp.off), free(db->bp.vals);
    free(db->cc.off), free(db->cc.vals);
    for (int i = 0; i < db->nterms; i++) free(db->terms[i].name);
    free(db->terms);
    free(db->omim_ngenes);
    free(db->ensembl_ngenes);
    free(db->org_path);
    free(db->go_path);
    memset(db, 0, sizeof *db);
}
