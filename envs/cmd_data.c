/*
 * cmd_data.c - `viv data`: build the biomedical task sets.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../sandbox/base/args.h"
#include "../sandbox/base/util.h"
#include "data_build.h"
#include "cmd_data.h"

static struct build_opts bo;
static long seed_arg;

static int set_size(void *ctx, const char *v, char *err, size_t errlen) {
    struct build_opts *o = ctx;
    if (data_size_parse(v, o->want, o->want_mc, err, errlen)) return -1;
    o->size_name = v;
    return 0;
}

static int set_shapes(void *ctx, const char *v, char *err, size_t errlen) {
    struct build_opts *o = ctx;
    if (data_shapes_check(v, err, errlen)) return -1;
    o->shapes = v;
    return 0;
}

/* One line per flag; the help is generated from this table (sandbox/base/args.h). */
static const struct arg_opt data_opts[] = {
    {"--out", ARG_STR, &bo.out, 0, 0, "DIR", "output directory (default data)"},
    {"--size", ARG_FN, &bo, 0, 0, "S", "tasks per shape (train/val/test): default is small except 1000/125/125\n"
                                      "for the multiple-choice shapes dbqa and seqqa (viv train's tasks);\n"
                                      "small 60/15/15, medium 400/60/60, large 3000/300/300, or N: N train,\n"
                                      "N/8 (at least 2) val and test", set_size},
    {"--seed", ARG_LONG, &seed_arg, 0, 1e18, "S", "generator seed (default 1); splits do not depend on it"},
    {"--debs", ARG_STR, &bo.debs, 0, 0, "DIR", "where the .deb files are cached (default DIR/debs)"},
    {"--jobs", ARG_INT, &bo.jobs, 1, 64, "N", "sandbox jobs run at once while verifying (default: CPUs)"},
    {"--shapes", ARG_FN, &bo, 0, 0, "L", "only these task shapes (comma-separated; default all seven)", set_shapes},
    {0},
};

static const struct arg_cmd data_cmd = {
    .prog = "viv data",
    .synopsis = "viv data build [--out DIR] [--size small|medium|large|N] [--seed S] [--debs DIR] [--jobs N]\n"
                "                      [--shapes a,b,...]",
    .about = "Downloads Debian's r-bioc-org.hs.eg.db and r-bioc-go.db (apt-get download, ~430 MB,\n"
             "cached), extracts org.Hs.eg.sqlite and GO.sqlite into DIR/db, generates tasks of seven\n"
             "shapes (causal_gene, variant_prioritization, dbqa, seqqa, rare_disease,\n"
             "patient_gene_detection, screen_gene_retrieval), keeps each only if its reference\n"
             "solution, run in the sandbox, prints its answer, and writes DIR/tasks/{train,val,test}.jsonl\n"
             "and DIR/MANIFEST.json.\n",
    .opts = data_opts,
    .examples = "  viv data build\n"
                "  viv data build --out mydata --size medium --jobs 4\n",
};

int cmd_data(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        args_help(&data_cmd, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "build") != 0) return args_error(&data_cmd, "unknown subcommand %s (there is build)", argv[1]);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    bo = (struct build_opts){.out = "data", .size_name = "default", .seed = 1, .jobs = ncpu > 0 ? (int)ncpu : 2,
                             .progress = true};
    seed_arg = 1;
    char err[256];
    data_size_parse("default", bo.want, bo.want_mc, err, sizeof err);
    int rc = args_parse(&data_cmd, argc - 1, argv + 1, NULL);
    if (rc) return rc == ARGS_HELP ? 0 : 2;
    bo.seed = (uint64_t)seed_arg;
    return data_build(&bo) == 0 ? 0 : 1;
}
