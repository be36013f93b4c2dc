/*
 * run_languages.h - how a language name of SandboxFusion's /run_code, or a
 * Biomni cell tag, becomes vivd jobs: which policy runs it and with what
 * code. Pure functions (no I/O), used by http_api.c and fuzzed with it.
 *
 *   python, python3   the python policy (warm), the code as it is
 *   bash              /bin/bash from the python policy (warm too)
 *   sql               a fresh in-memory SQLite database, from python
 *   R, r              the r policy (Rscript)
 *   c, cpp            two jobs of the shell policy: gcc/g++ compiles the
 *                     source into a binary (fetched back), then a second
 *                     jail runs that binary with the caller's stdin/files
 */
#ifndef VIV_RUN_LANGUAGES_H
#define VIV_RUN_LANGUAGES_H

#include <stdbool.h>
#include <stddef.h>

#define RUN_LANGUAGES "python, bash, sql, R, c, cpp"

/* What the compile step of a compiled language names (in /work). */
#define RUN_BINARY "a.out"

struct run_plan {
    const char *tool;    /* the policy of the (run) job */
    char *code;          /* the (run) job's code, malloc'd */
    const char *source;  /* compiled languages: the source file's name, else NULL */
    char *compile_code;  /* compiled languages: the shell code that compiles it */
};

/* Plan `language`'s job for `code`. 0, or -1 when the language is not one
 * of RUN_LANGUAGES. Free with run_plan_free. */
int run_plan(const char *language, const char *code, size_t len, struct run_plan *p);
void run_plan_free(struct run_plan *p);

/* Biomni A1's routing of one cell of a Python session: "#!BASH" or "#!CLI"
 * as its first line runs the rest with bash, "#!R" with Rscript (both from
 * the session's Python, so they share its jail and files), anything else
 * is Python. Returns the session code, malloc'd. */
char *run_biomni_cell(const char *code);

#endif
