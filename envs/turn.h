/*
 * turn.h - the turn machine of a Biomni episode: one assistant message in,
 * what happens next out. Every caller that runs episodes goes through it:
 * SFT collection, `viv eval` and the endpoint agents (envs/episode.c's state
 * machine) and GRPO's rollouts (rl/bio_env.c over rl/rollout.c). So a model
 * is trained and scored on exactly the text it will see elsewhere.
 *
 *   message --turn_decide--> RUN code on a vivd policy   --turn_observation--> observation
 *                            ANSWER (graded: turn_grade)
 *                            CONTINUE (only <think>: the model writes again, no user turn)
 *                            CORRECT (no usable tags: the protocol's reminder)
 *                            GIVE_UP (the second unusable message: the episode ends)
 *
 * and the chat layout around the turns (Qwen3's template, thinking on):
 *
 *   <|im_start|>system\n{episode_system_prompt}<|im_end|>\n
 *   <|im_start|>user\n{task prompt}<|im_end|>\n
 *   <|im_start|>assistant\n                    <- turn_prompt_text() ends here
 *   {generated: <think>..</think>\n<execute>..</execute>}
 *   <|im_end|>\n<|im_start|>user\n<observation>..</observation><|im_end|>\n
 *   <|im_start|>assistant\n                    <- turn_glue_text() around a turn
 *   {generated: <think>..</think>\n<solution>..</solution>}
 *
 * Generation stops at </execute> / </solution> (or <|im_end|>), so the model
 * never has to produce the template glue: the environment appends it.
 *
 * Tools: Python by default (a session per episode, TASK defined first:
 * protocol.h), #!BASH / #!CLI a shell script, #!SQL a read-only query, #!R
 * vivd's policy "r". A vivd without that policy answers "unknown tool"; the
 * model then reads that R is not available here, as it would on any host
 * that lacks R.
 */
#ifndef VIV_TURN_H
#define VIV_TURN_H

#include <stdbool.h>
#include <stddef.h>

#include "eval1.h"
#include "graders.h"
#include "protocol.h"

/* ---- the chat layout ---- */

/* System + user turns up to the first assistant turn's start (malloc'd). */
char *turn_prompt_text(const char *task_prompt);
/* Glue after an assistant turn: close it, a user turn holding content[0..n)
 * (an observation or the protocol's reminder; NUL bytes kept), open the
 * next assistant turn. content NULL: no user turn (two assistant turns in a
 * row). malloc'd, *len bytes. */
char *turn_glue_bytes(const char *content, size_t n, size_t *len);
char *turn_glue_text(const char *content); /* the same for a C string */
/* Length of text without a trailing "<|im_end|>" (a turn stopped by EOS). */
size_t turn_strip_eos(const char *text, size_t len);

/* ---- one message ---- */

enum turn_next {
    TURN_RUN,      /* run code: policy, code */
    TURN_ANSWER,   /* the final answer: answer; the episode ends */
    TURN_CONTINUE, /* only <think>: the model writes the next message, no user turn between */
    TURN_CORRECT,  /* no usable tags: user_text (the reminder) follows */
    TURN_GIVE_UP,  /* the PROTO_MAX_PARSE_FAILURES-th unusable message: user_text, the episode ends */
};

struct turn_decision {
    enum turn_next next;
    enum proto_tool tool;  /* TURN_RUN */
    const char *policy;    /* TURN_RUN: vivd's policy ("python", "shell", "sql", "r") */
    char *code;            /* TURN_RUN: the code as run (turn_code_to_run), malloc'd */
    char *answer;          /* TURN_ANSWER: the <solution> text, malloc'd */
    const char *user_text; /* TURN_CORRECT, TURN_GIVE_UP: static */
};

/* The code a call runs: for Python with task t's inputs defined as TASK in
 * front (protocol.h); otherwise (or t NULL) a copy. malloc'd. */
char *turn_code_to_run(const struct task *t, const char *policy, const char *code);

/* Decide what the assistant message text[0..len) (cut at its stop string and
 * any trailing <|im_end|> already) asks for, on task t (NULL: the code as
 * written), after parse_failures unusable messages in this episode. */
void turn_decide(const struct task *t, const char *text, size_t len, int parse_failures, struct turn_decision *d);
void turn_decision_free(struct turn_decision *d);

/* The message as the turn machine keeps it: up to the first stop string
 * (</execute>, </solution>), without a trailing <|im_end|>. */
size_t turn_message_len(const char *text, size_t len);

/* ---- one tool call ---- */

/* What came back from vivd for one call, whichever client carried it. */
struct turn_tool_out {
    bool answered;              /* vivd ran it (ok); else error_code says why not */
    const char *out, *err;      /* stdout / stderr, NUL bytes kept */
    size_t out_len, err_len;
    int exit_code, signal;
    bool timed_out, session_lost;
    double wall_ms;
    double dropped;             /* bytes of output vivd dropped past its caps */
    const char *error_code, *error_message;
};

/* The observation body for a call to `policy`: stdout, then stderr, then
 * bracketed notes (deadline, lost session, signal, exit code, dropped
 * bytes), or vivd's error. malloc'd, *len bytes. */
char *turn_result_text(const struct turn_tool_out *o, const char *policy, size_t *len);
/* The same wrapped as "<observation>..</observation>" (cut to the
 * protocol's 10,000 characters): what the model reads. */
char *turn_observation(const struct turn_tool_out *o, const char *policy, size_t *len);

/* ---- the score ---- */

/* The task's grader on an answer: 0..1. */
double turn_grade(const struct task *t, const char *answer, enum grade_mode mode);
/* The strict format reward over the assistant messages as generated: 1 or
 * 0; an episode that gave no solution has 0. */
int turn_format(const char *const *msgs, const size_t *lens, int n, bool solved);

#endif
