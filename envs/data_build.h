/*
 * data_build.h - `viv data build`: fetch the two Debian database packages,
 * extract their SQLite files, generate and verify the task sets, and write
 * the manifest.
 *
 * Layout of <out>/ (default data/):
 *   debs/                 the downloaded .deb files (cache; --debs DIR elsewhere)
 *   db/org.Hs.eg.sqlite   from r-bioc-org.hs.eg.db
 *   db/GO.sqlite          from r-bioc-go.db
 *   tasks/{train,val,test}.jsonl
 *   MANIFEST.json         package versions, sha256 of the .debs and the
 *                         databases, the build's seed, size and task counts
 *                         (written last, atomically: its presence means done)
 */
#ifndef VIV_ENVS_DATA_BUILD_H
#define VIV_ENVS_DATA_BUILD_H

#include <stdbool.h>
#include <stdint.h>

#include "task.h"

struct build_opts {
    const char *out;       /* output directory */
    const char *debs;      /* .deb cache; NULL = <out>/debs */
    const char *size_name; /* "small", "medium", "large" or a number, for the manifest */
    int want[NSPLITS];     /* tasks per shape and split */
    int want_mc[NSPLITS];  /* the same for the multiple-choice shapes (dbqa, seqqa) */
    uint64_t seed;
    int jobs;              /* verification workers */
    const char *shapes;    /* comma-separated task shapes to build; NULL = all */
    bool progress;
};

/* Parse --size: default|small|medium|large|N into tasks per split for the
 * shapes in general (want) and for the multiple-choice ones (want_mc; the
 * same except for "default"). 0, or -1 with err. */
int data_size_parse(const char *s, int want[NSPLITS], int want_mc[NSPLITS], char *err, size_t errlen);

/* The whole build. 0 on success, else -1 (the reason is printed). */
/* Is `name` one of the comma-separated `list`? (NULL list: every name.) */
bool shape_selected(const char *list, const char *name);
/* 0 if every name in the comma-separated list is a known shape, else -1 with err. */
int data_shapes_check(const char *list, char *err, size_t errlen);

int data_build(const struct build_opts *o);

#endif
