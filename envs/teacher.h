/*
 * teacher.h - scripted agents for our tasks: the teacher and the random agent.
 *
 * The teacher solves a task the way a careful person would, in the protocol:
 * it says what it is about to do (in varied words), sometimes looks around
 * first (lists the database's tables, the data directory), runs the task's
 * reference solution or a harmless variant of it (a comment, a first attempt
 * with a typo that it then fixes), reads the observation and answers with
 * its last line. With probability `error_rate` per episode it makes one of
 * the mistakes agents make, so that rejection sampling has something to
 * reject:
 *   TM_PERTURBED  runs a perturbed query (a literal changed) and answers from it
 *   TM_FORMAT     answers in prose instead of the asked format, or drops <think>
 *   TM_GIVE_UP    explores, then gives up without an answer
 *   TM_MALFORMED  writes a message without tags (once: a parsing failure it
 *                 recovers from; or twice: the episode ends)
 * Everything it does is a function of (its seed, the episode's seed, the
 * conversation so far), so a run is reproducible.
 *
 * The random agent answers at once with a plausible candidate drawn from the
 * prompt (a listed gene, rsID, Ensembl ID or option letter) in the right
 * format: the chance baseline.
 */
#ifndef VIV_TEACHER_H
#define VIV_TEACHER_H

#include <stdint.h>

#include "episode.h"

enum teacher_mistake { TM_NONE = 0, TM_PERTURBED, TM_FORMAT, TM_GIVE_UP, TM_MALFORMED, TM_COUNT };

struct teacher {
    double error_rate; /* probability of one mistake per episode */
    uint64_t seed;
};

/* agent_fn for the teacher (ctx: struct teacher *). Needs ep->task->ref_code. */
char *teacher_next(void *ctx, const struct episode *ep);
/* The mistake the teacher makes in this episode (TM_NONE most of the time). */
enum teacher_mistake teacher_plan(const struct teacher *t, const struct episode *ep);
const char *teacher_mistake_name(enum teacher_mistake m);

/* agent_fn for the random agent (ctx: uint64_t * seed, may be NULL). */
char *random_next(void *ctx, const struct episode *ep);
/* A random plausible answer for the task, formatted for its grader (malloc'd). */
char *random_answer(const struct task *t, uint64_t *rng);

/* splitmix64: the one RNG of this file. */
uint64_t teacher_rng(uint64_t *state);

#endif
