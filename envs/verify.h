/*
 * verify.h - run every task's reference solution in the jail and keep the
 * task only if the last line it prints is exactly the recorded answer.
 */
#ifndef VIV_ENVS_VERIFY_H
#define VIV_ENVS_VERIFY_H

#include <stdbool.h>
#include <stddef.h>

#include "task.h"

struct verify_opts {
    const char *db_dir; /* absolute: holds org.Hs.eg.sqlite and GO.sqlite */
    int jobs;           /* worker processes */
    long timeout_ms;    /* per reference run */
    bool progress;      /* print progress to stderr */
};

/* Sets each task's `verified` (and `why` when not). Returns 0, or -1 with
 * err when the jail could not be used at all. */
int verify_tasks(struct tasklist *l, const struct verify_opts *o, char *err, size_t errlen);

/* The last line of out (without its newline) equals answer. */
bool last_line_is(const char *out, size_t len, const char *answer);

#endif
