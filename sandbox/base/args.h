/*
 * args.h - the one command-line parser of viv's subcommands and vivd.
 *
 * A command describes its flags as a table, one line per flag:
 *
 *   static const struct arg_opt opts[] = {
 *       {"--timeout-ms", ARG_LONG, &timeout_ms, 1, 3600000, "N", "wall-clock deadline"},
 *       {"--json", ARG_FLAG, &json, 0, 0, NULL, "print one JSON object"},
 *       {0},
 *   };
 *
 * and args_parse() walks argv against it. Every error is one line on stderr
 * of the same shape, and args_parse() returns ARGS_USAGE (the caller exits
 * 2): an unknown option (with the nearest flag as "did you mean"), a missing
 * value, a value out of its range (the range is in the message). `--help`
 * (or -h) prints the help generated from the same table, so it lists every
 * flag, and ends with the command's examples; args_parse() returns
 * ARGS_HELP (the caller exits 0). `--flag=VALUE` is the same as
 * `--flag VALUE`. `--` ends the options; what follows is positional.
 */
#ifndef VIV_ARGS_H
#define VIV_ARGS_H

#include <stddef.h>
#include <stdio.h>

enum arg_kind {
    ARG_FLAG,     /* int *: set to 1 */
    ARG_FLAG_OFF, /* int *: set to 0 (--no-X) */
    ARG_STR,      /* const char **: a non-empty string */
    ARG_LONG,     /* long *: a decimal integer in [lo, hi] */
    ARG_INT,      /* int *: a decimal integer in [lo, hi] */
    ARG_DOUBLE,   /* double *: a number in [lo, hi] */
    ARG_FN,       /* args_fn: the command checks and stores the value itself */
};

/* For ARG_FN: store `value` through ctx; 0, or -1 with err ("is not NAME=PATH"). */
typedef int (*args_fn)(void *ctx, const char *value, char *err, size_t errlen);

struct arg_opt {
    const char *name;    /* "--timeout-ms"; NULL ends the table */
    enum arg_kind kind;
    void *dest;          /* where the value goes (ARG_FN: the ctx) */
    double lo, hi;       /* the range of a number */
    const char *metavar; /* "N", "FILE"; NULL for flags */
    const char *help;    /* one line; "(default X)" where there is one */
    args_fn fn;          /* ARG_FN only */
};

struct arg_cmd {
    const char *prog;      /* "viv run", "vivd": the prefix of every message */
    const char *synopsis;  /* the usage line(s) after "usage: " */
    const char *about;     /* what the command does, a few lines */
    const struct arg_opt *opts;
    const char *examples;  /* two or three command lines, one per line */
    int max_positional;    /* positional arguments allowed before `--` (0: none) */
    int dashdash;          /* 1: `--` ends the options and the rest is a command */
};

struct args_rest {
    char **pos;    /* positional arguments, in order (points into argv) */
    int npos;
    char **after;  /* what follows `--` (NULL when there is no `--`) */
};

enum { ARGS_OK = 0, ARGS_HELP = 1, ARGS_USAGE = 2 };

/* Parse argv[1..argc-1] (argv[0] is the command's name). rest may be NULL
 * when the command takes no positional arguments; rest->pos is malloc'd
 * (free it with free()). Errors go to stderr as one line. */
int args_parse(const struct arg_cmd *cmd, int argc, char **argv, struct args_rest *rest);

/* Print the generated help to f. */
void args_help(const struct arg_cmd *cmd, FILE *f);

/* One usage error in the common shape: "PROG: MESSAGE (see PROG --help)";
 * returns ARGS_USAGE so that `return args_error(...)` exits 2. */
int args_error(const struct arg_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The closest name in `names` (NULL-terminated) to `word`, or NULL if none
 * is close enough to be a likely typo. */
const char *args_nearest(const char *word, const char *const *names);

/* NAME=PATH (the value of --data): name and the absolute, resolved path
 * (both malloc'd); the path must exist, since a jail given a missing one
 * would only see an empty mount point. 0, or -1 with err. */
int args_name_path(const char *v, char **name, char **path, char *err, size_t errlen);

#ifndef VIV_VERSION
#define VIV_VERSION "0.1.0"
#endif

#endif
