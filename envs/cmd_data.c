/*
 * cmd_data.c - `viv data`: build the biomedical task sets.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../sandbox/util.h"
#include "data_build.h"
#include "cmd_data.h"

static const char usage_text[] =
    "usage: viv data build [--out DIR] [--size small|medium|large|N] [--seed S] [--debs DIR] [--jobs N]\n                      [--shapes a,b,...]\n"
    "\n"
    "Downloads Debian's r-bioc-org.hs.eg.db and r-bioc-go.db (apt-get download, cached),\n"
    "extracts org.Hs.eg.sqlite and GO.sqlite into DIR/db, generates tasks of seven shapes\n"
    "(causal_gene, variant_prioritization, dbqa, seqqa, rare_disease, patient_gene_detection,\n"
    "screen_gene_retrieval), keeps each only if its reference solution, run in the sandbox,\n"
    "prints its answer, and writes DIR/tasks/{train,val,test}.jsonl and DIR/MANIFEST.json.\n"
    "\n"
    "  --out DIR     output directory (default data)\n"
    "  --size S      tasks per shape (train/val/test): default is small except 1000/125/125\n"
    "                for the multiple-choice shapes dbqa and seqqa (viv train's tasks);\n"
    "                small 60/15/15, medium 400/60/60, large 3000/300/300, or N: N train,\n"
    "                N/8 (at least 2) val and test\n"
    "  --seed S      generator seed (default 1); splits do not depend on it\n"
    "  --debs DIR    where the .deb files are cached (default DIR/debs)\n"
    "  --jobs N      sandbox jobs run at once while verifying (default: CPUs)\n"
    "  --shapes L    only these task shapes (comma-separated; default all seven)\n";

static int usage_error(const char *msg, const char *arg) {
    fprintf(stderr, "viv data: %s%s%s\n%s", msg, arg ? " " : "", arg ? arg : "", usage_text);
    return 2;
}

int cmd_data(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "build") != 0) return usage_error("unknown subcommand", argv[1]);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    struct build_opts o = {.out = "data", .size_name = "default", .seed = 1, .jobs = ncpu > 0 ? (int)ncpu : 2,
                           .progress = true};
    char err[256];
    data_size_parse("default", o.want, o.want_mc, err, sizeof err);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (i + 1 >= argc) return usage_error("missing value for", a);
        const char *v = argv[++i];
        long n;
        if (strcmp(a, "--out") == 0) {
            if (!*v) return usage_error("--out: empty path", NULL);
            o.out = v;
        } else if (strcmp(a, "--debs") == 0) {
            if (!*v) return usage_error("--debs: empty path", NULL);
            o.debs = v;
        } else if (strcmp(a, "--size") == 0) {
            if (data_size_parse(v, o.want, o.want_mc, err, sizeof err)) return usage_error(err, NULL);
            o.size_name = v;
        } else if (strcmp(a, "--seed") == 0) {
            if (parse_long(v, 0, 0x7fffffffffffffffL, &n)) return usage_error("--seed: not a non-negative integer:", v);
            o.seed = (uint64_t)n;
        } else if (strcmp(a, "--shapes") == 0) {
            if (data_shapes_check(v, err, sizeof err)) return usage_error(err, NULL);
            o.shapes = v;
        } else if (strcmp(a, "--jobs") == 0) {
            if (parse_long(v, 1, 64, &n)) return usage_error("--jobs: not an integer in 1-64:", v);
            o.jobs = (int)n;
        } else {
            return usage_error("unknown option", a);
        }
    }
    return data_build(&o) == 0 ? 0 : 1;
}
