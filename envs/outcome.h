/*
 * outcome.h - who decided a tool call's outcome: the model's code, or the
 * sandbox around it?
 *
 * An episode whose outcome the sandbox decided says nothing about the model:
 * its host died or was unreachable, vivd turned the call away (busy past the
 * client's retries, shutting down), the warm worker or zygote that ran it was
 * lost, its session vanished under it, or the jail could not be set up. Such
 * an episode must never be scored as the model failing: GRPO leaves it out
 * of its group (rl/grpo_step.c), SFT collection and every evaluation run it
 * again (envs/episode.c run_episodes, rl/rollout.h rl_rollout_rerun_lost).
 *
 * What the model's code did stays the model's: a call that ran to an answer
 * is its outcome, a non-zero exit, a crash, a timeout, and a session lost
 * because the call overran its deadline (timed_out + session_lost: vivd
 * kills the jail at the deadline) or because its code killed the
 * interpreter (a signal) included. A refusal of the request itself
 * (bad_request: code over the policy's size, a tool that does not exist) is
 * the model's too.
 *
 * This file is the one place that decides; every runner asks it.
 */
#ifndef VIV_OUTCOME_H
#define VIV_OUTCOME_H

#include <cjson/cJSON.h>
#include <stdbool.h>

/* One tool call's answer, as a runner saw it. */
struct call_outcome {
    bool answered;              /* vivd ran the call and answered "ok": true */
    const char *error_code;     /* otherwise: vivd's code, or the client's own
                                 * ("disconnected", "unreachable", "timeout") */
    bool session_lost;          /* the call's session is gone */
    bool timed_out;             /* the call overran its own deadline */
    int signal;                 /* the signal that ended the call's code, 0: none */
};

/* true: the sandbox decided this call's outcome, not the model. */
bool outcome_sandbox_decided(const struct call_outcome *o);

/* The same decision from a vivd response object ({"ok":..., "error":{"code"}},
 * "session_lost", "timed_out", "signal"); a NULL response (no answer at all)
 * is the sandbox's. */
bool outcome_response_sandbox_decided(const cJSON *resp);

#endif
