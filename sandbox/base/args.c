/* args.c - see args.h. */
#define _GNU_SOURCE
#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int args_error(const struct arg_cmd *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cmd->prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see %s --help)\n", cmd->prog);
    va_end(ap);
    return ARGS_USAGE;
}

/* Levenshtein distance, for "did you mean"; flag names are short. */
static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return (size_t)-1;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *args_nearest(const char *word, const char *const *names) {
    const char *best = NULL;
    size_t best_d = (size_t)-1, wl = strlen(word);
    for (const char *const *n = names; *n; n++) {
        size_t d = edit_distance(word, *n);
        /* a prefix of a longer flag ("--tim" for "--timeout-ms") is a likely typo too */
        if (wl >= 4 && strncmp(*n, word, wl) == 0) d = d < 2 ? d : 2;
        if (d < best_d) best_d = d, best = *n;
    }
    /* close: at most a third of the word's letters wrong, and at least 1-2 allowed */
    size_t allowed = wl / 3 > 2 ? wl / 3 : 2;
    return best_d <= allowed ? best : NULL;
}

static const struct arg_opt *find_opt(const struct arg_opt *opts, const char *name, size_t len) {
    for (const struct arg_opt *o = opts; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) return o;
    return NULL;
}

static int unknown_option(const struct arg_cmd *cmd, const char *a, size_t len) {
    size_t n = 0;
    for (const struct arg_opt *o = cmd->opts; o->name; o++) n++;
    const char **names = xcalloc(n + 2, sizeof *names);
    n = 0;
    for (const struct arg_opt *o = cmd->opts; o->name; o++) names[n++] = o->name;
    names[n++] = "--help";
    char *word = strndup(a, len);
    const char *near = word ? args_nearest(word, names) : NULL;
    int rc = near ? args_error(cmd, "unknown option '%s' (did you mean %s?)", word, near)
                  : args_error(cmd, "unknown option '%s'", word ? word : a);
    free(word);
    free(names);
    return rc;
}

static int parse_double(const char *v, double lo, double hi, double *out) {
    if (!v || !*v) return -1;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || *end || !isfinite(d) || d < lo || d > hi) return -1;
    *out = d;
    return 0;
}

/* The range of a number as the messages print it: [1, 3600000]. */
static void range_text(const struct arg_opt *o, char *buf, size_t len) {
    if (o->kind == ARG_DOUBLE) snprintf(buf, len, "[%g, %g]", o->lo, o->hi);
    else snprintf(buf, len, "[%.0f, %.0f]", o->lo, o->hi);
}

static int store_value(const struct arg_cmd *cmd, const struct arg_opt *o, const char *v) {
    char range[96];
    long n;
    double d;
    switch (o->kind) {
    case ARG_STR:
        if (!*v) return args_error(cmd, "%s: the value is empty", o->name);
        *(const char **)o->dest = v;
        return 0;
    case ARG_LONG:
    case ARG_INT:
        /* the bounds are exact in a double up to 2^53, which every range here is within */
        if (parse_long(v, (long)o->lo, o->hi >= 9.2e18 ? __LONG_MAX__ : (long)o->hi, &n)) {
            range_text(o, range, sizeof range);
            return args_error(cmd, "%s: '%s' is not a whole number in %s", o->name, v, range);
        }
        if (o->kind == ARG_INT) *(int *)o->dest = (int)n;
        else *(long *)o->dest = n;
        return 0;
    case ARG_DOUBLE:
        if (parse_double(v, o->lo, o->hi, &d)) {
            range_text(o, range, sizeof range);
            return args_error(cmd, "%s: '%s' is not a number in %s", o->name, v, range);
        }
        *(double *)o->dest = d;
        return 0;
    case ARG_FN: {
        char err[256] = "";
        if (o->fn(o->dest, v, err, sizeof err) != 0) {
            /* a checker shared with other callers may name the flag itself */
            if (!strncmp(err, o->name, strlen(o->name))) return args_error(cmd, "%s", err);
            return args_error(cmd, "%s '%s': %s", o->name, v, err);
        }
        return 0;
    }
    default:
        return args_error(cmd, "%s takes no value", o->name);
    }
}

static int takes_value(const struct arg_opt *o) { return o->kind != ARG_FLAG && o->kind != ARG_FLAG_OFF; }

int args_parse(const struct arg_cmd *cmd, int argc, char **argv, struct args_rest *rest) {
    if (rest) *rest = (struct args_rest){0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            args_help(cmd, stdout);
            if (rest) free(rest->pos), rest->pos = NULL;
            return ARGS_HELP;
        }
        if (!strcmp(a, "--") && cmd->dashdash) {
            if (rest) rest->after = argv + i + 1;
            break;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            /* "-" (stdin) and words are positional where the command takes them */
            if (!rest || rest->npos >= cmd->max_positional) {
                if (rest) free(rest->pos), rest->pos = NULL;
                return a[0] == '-' && a[1] && a[1] != '-' ? unknown_option(cmd, a, strlen(a))
                                                          : args_error(cmd, "unexpected argument '%s'", a);
            }
            if (!rest->pos) rest->pos = xcalloc((size_t)cmd->max_positional + 1, sizeof *rest->pos);
            rest->pos[rest->npos++] = argv[i];
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const struct arg_opt *o = find_opt(cmd->opts, a, len);
        int rc;
        if (!o) {
            rc = unknown_option(cmd, a, len);
        } else if (!takes_value(o)) {
            rc = eq ? args_error(cmd, "%s takes no value", o->name) : 0;
            if (!rc) *(int *)o->dest = o->kind == ARG_FLAG;
        } else if (eq) {
            rc = store_value(cmd, o, eq + 1);
        } else if (i + 1 >= argc) {
            rc = args_error(cmd, "%s needs a value (%s)", o->name, o->metavar ? o->metavar : "VALUE");
        } else {
            rc = store_value(cmd, o, argv[++i]);
        }
        if (rc) {
            if (rest) free(rest->pos), rest->pos = NULL;
            return rc;
        }
    }
    return ARGS_OK;
}

void args_help(const struct arg_cmd *cmd, FILE *f) {
    fprintf(f, "usage: %s\n", cmd->synopsis);
    if (cmd->about) fprintf(f, "\n%s", cmd->about);
    fprintf(f, "\noptions:\n");
    for (const struct arg_opt *o = cmd->opts; o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        /* a help line may carry several lines of text, each indented under the first */
        const char *h = o->help ? o->help : "";
        if (strlen(left) > 24) fprintf(f, "  %s\n  %-24s ", left, "");
        else fprintf(f, "  %-24s ", left);
        for (const char *p = h; *p; p++) {
            fputc(*p, f);
            if (*p == '\n' && p[1]) fprintf(f, "  %-24s ", "");
        }
        if (o->kind == ARG_LONG || o->kind == ARG_INT || o->kind == ARG_DOUBLE) {
            char range[96];
            range_text(o, range, sizeof range);
            fprintf(f, " %s", range);
        }
        fputc('\n', f);
    }
    fprintf(f, "  %-24s %s\n", "-h, --help", "this help");
    if (cmd->examples) fprintf(f, "\nexamples:\n%s", cmd->examples);
}

int args_name_path(const char *v, char **name, char **path, char *err, size_t errlen) {
    const char *eq = strchr(v, '=');
    if (!eq || eq == v || !eq[1]) return fail_with(err, errlen, "expected NAME=PATH");
    char *real = realpath(eq + 1, NULL);
    if (!real) return fail_with(err, errlen, "%s: %s", eq + 1, strerror(errno));
    *name = xasprintf("%.*s", (int)(eq - v), v);
    *path = real;
    return 0;
}
