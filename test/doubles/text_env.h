/*
 * text_env.h - a TEST DOUBLE environment for the rollout engine: a tiny
 * parser of <execute>/<solution> turns and plain observations. It is NOT the
 * Biomni protocol (envs/protocol.c is): no <think> rule, no chat template,
 * no 10,000-character cut, no real graders. Tests and the rollout benchmark
 * use it so that rl/ does not depend on envs/.
 *
 *   turn: "<solution>A</solution>" anywhere -> SOLUTION A
 *         "<execute>CODE</execute>"          -> EXECUTE CODE on "python", or
 *                                               on "shell" if CODE starts "#!BASH\n"
 *         anything else                       -> PARSE_ERROR
 *   observation: "\n<observation>STDOUT STDERR [status]</observation>\n"
 *   score: correct = (answer == task's answer, surrounding spaces ignored),
 *          format = 1 if the episode ended with a solution and no parse
 *          failure; reward = correct + format.
 */
#ifndef VIV_RL_TEXT_ENV_H
#define VIV_RL_TEXT_ENV_H

#include "../../rl/rollout.h"

struct text_task {
    const char *question;
    const char *answer;
};

struct text_env {
    const struct text_task *tasks;
    int ntasks;
};

void text_env_init(struct text_env *te, struct rl_env_ops *ops);

#endif
