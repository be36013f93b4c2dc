/*
 * cmds.h - the model layer's viv subcommands and their reusable parts.
 */
#ifndef VIV_MODEL_CMDS_H
#define VIV_MODEL_CMDS_H

#include <stdint.h>

#include "qwen3.h"
#include "sample.h"

int cmd_gen(int argc, char **argv);
/* "1,2,3" -> malloc'd ids; returns the count, or -1 when malformed. */
int parse_id_list(const char *s, int32_t **out);
/* Generate from prompt ids, printing ids to stdout and timing to stderr;
 * returns an exit status. */
int gen_from_ids(const struct qwen3 *m, const int32_t *ids, int n, const struct gen_opts *o);

#endif
