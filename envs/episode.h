/*
 * episode.h - one agent episode as a state machine, and a runner that keeps
 * many in flight through one vivd connection.
 *
 * An episode starts with a system message (the protocol and the tools) and
 * the task's prompt. Then, until it is done:
 *
 *   EP_NEED_MESSAGE  the agent owes the next assistant message:
 *                    episode_push_message() parses it (protocol.c) and moves on
 *   EP_NEED_TOOL     code is ready to run: episode_submit() sends it to vivd
 *                    (Python through a session, so state persists in the episode)
 *   EP_WAIT_TOOL     episode_on_response() turns vivd's answer into an
 *                    <observation> and asks for the next message
 *   EP_DONE          a solution was graded, or the episode ended (two parsing
 *                    failures, the turn limit, a dead connection)
 *
 * The agent is anything that can write the next message. The runner below
 * calls an agent_fn synchronously (the scripted teacher, the random agent);
 * the RL trainer drives the same state machine itself: it collects every
 * episode in EP_NEED_MESSAGE, generates their messages as one batch and
 * pushes them, while other episodes wait on vivd. Nothing else changes, so a
 * model is scored by exactly the code that scores the teacher.
 */
#ifndef VIV_EPISODE_H
#define VIV_EPISODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../sandbox/client/client.h"
#include "../sandbox/client/pool.h"
#include "eval1.h"
#include "graders.h"
#include "protocol.h"

enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL };

struct turn {
    enum role role;
    char *text;
    size_t len;
};

struct conversation {
    struct turn *turns;
    size_t n, cap;
};

enum ep_state { EP_NEED_MESSAGE, EP_NEED_TOOL, EP_WAIT_TOOL, EP_DONE };

struct episode_cfg {
    int max_turns;          /* assistant messages per episode (default 16) */
    long tool_timeout_ms;   /* per tool call (default 30000) */
    enum grade_mode mode;   /* GRADE_EVAL or GRADE_TRAIN */
};

struct episode {
    const struct task *task;
    struct episode_cfg cfg;
    uint64_t seed;          /* for agents that draw random numbers */
    struct conversation conv;
    enum ep_state state;
    int turns;              /* assistant messages so far */
    int parse_failures;
    int tool_calls;
    double tool_ms;         /* summed round-trip time of tool calls */
    /* the tool call in progress */
    enum proto_tool tool;
    char *code;
    char *session;          /* the episode's Python session, once open */
    int opening_session;
    long handle;            /* the vivd request in flight, 0 if none */
    char *last_stdout;      /* stdout of the latest tool call (the observation mixes in stderr) */
    size_t last_stdout_len; /* its length: it may hold NUL bytes */
    double submitted_at;
    /* the outcome */
    double correct;         /* grader's reward in [0,1] */
    int format;             /* proto_format_reward over the assistant messages */
    char *answer;           /* the <solution> text, NULL if none */
    const char *end;        /* "solution", "parse_errors", "max_turns", "sandbox" */
};

void conv_add(struct conversation *c, enum role r, const char *text, size_t len);
void conv_free(struct conversation *c);
/* The last turn of role r, NULL if none. */
const struct turn *conv_last(const struct conversation *c, enum role r);

/* The system message every episode starts with. */
extern const char *const episode_system_prompt;

void episode_init(struct episode *ep, const struct task *t, const struct episode_cfg *cfg, uint64_t seed);
void episode_free(struct episode *ep);

/* The agent's next message (EP_NEED_MESSAGE only). It is cut at the first
 * stop string like a generator would, recorded, parsed and acted on. */
void episode_push_message(struct episode *ep, const char *text, size_t len);

/* EP_NEED_TOOL: send the request (opening the Python session first when
 * needed). Returns the handle to match with viv_next()'s responses; on a
 * broken client the episode ends ("sandbox") and 0 is returned. */
long episode_submit(struct episode *ep, struct viv_client *c);
/* The response for ep->handle. May submit again (session opened -> exec). */
void episode_on_response(struct episode *ep, struct viv_client *c, const struct viv_response *resp);
/* End the episode now (e.g. "sandbox": its sandbox host is gone). */
void episode_fail(struct episode *ep, const char *why);
/* Did the sandbox end it (end "sandbox": its host failed, vivd refused or
 * lost the call; envs/outcome.h decides)? Such an episode says nothing
 * about the agent: runners run it again, and never score it as wrong. */
bool episode_lost_to_sandbox(const struct episode *ep);
/* How many times a runner re-runs an episode the sandbox ended before it
 * reports it apart (end "sandbox"): a host that died mid-episode costs one
 * re-run; one failing every time is not hidden for long. */
#define EPISODE_SANDBOX_TRIES 3
/* Close the episode's session, if any (fire and forget). */
void episode_release(struct episode *ep, struct viv_client *c);

/* Episodes over a pool of vivd hosts (sandbox/client/pool.h), for runners: where
 * an episode's calls go. A session stays on its host; a host whose
 * connection died (its epoch changed) took the session with it. */
struct episode_host {
    int host, epoch; /* host -1: none yet */
};
/* EP_NEED_TOOL: submit on the episode's host, or on the least-loaded live
 * one for a call outside a session. Ends the episode ("sandbox") when its
 * host is gone or none is up. */
void episode_submit_pooled(struct episode *ep, struct viv_pool *p, struct episode_host *h);
/* episode_release on its host, if that connection still lives. */
void episode_release_pooled(struct episode *ep, struct viv_pool *p, const struct episode_host *h);
/* For runners: an episode the sandbox ended (EP_DONE, lost to it) that has
 * tries left (*tries < EPISODE_SANDBOX_TRIES) starts again, same task and
 * seed, with no host yet, and *tries counts it: true. Otherwise false. */
bool episode_rerun_if_lost(struct episode *ep, struct viv_pool *p, struct episode_host *h,
                           const struct episode_cfg *cfg, uint64_t seed, int *tries);
/* Wait up to timeout_ms for one vivd answer and give it to its episode
 * among slots[0..n) with busy[s] set. 1 if an answer came, else 0. */
int episode_pool_dispatch(struct viv_pool *p, struct episode *slots, const int *busy, const struct episode_host *hosts,
                          int n, int timeout_ms);
/* Let outstanding answers (session closes) come in before the pool closes. */
void episode_pool_drain(struct viv_pool *p);

/* The observation text for one exec response (stdout, then stderr, then
 * notes), malloc'd, *len bytes: a tool's output may hold NUL bytes, and they
 * and what follows them are kept. */
char *episode_result_text(const struct viv_response *resp, size_t *len);

/* An agent: the next assistant message for the episode so far (malloc'd),
 * NULL if it has none (the episode then ends as a parsing failure would). */
typedef char *(*agent_fn)(void *agent, const struct episode *ep);

/* Per-episode outcome, for tables and trajectory files. */
struct episode_result {
    size_t task_index;
    double correct;
    int format;
    int turns, tool_calls;
    double tool_ms;
    const char *end;        /* "sandbox": still lost after its re-runs: not scored */
    int reruns;             /* times it was run again because the sandbox ended it */
};

/* What a runner calls for each finished episode (before it is freed). */
typedef void (*episode_done_fn)(void *ctx, const struct episode *ep, size_t index);

/* For runners: a slot's episode is EP_DONE. Count it in *lost if the
 * sandbox ended it, write results[index] (when results is given), let
 * on_done (may be NULL) see it, give its host back, and free it. */
void episode_finish_in_slot(struct episode *ep, struct viv_pool *p, const struct episode_host *h,
                            const struct task_set *ts, size_t index, int reruns, struct episode_result *results,
                            episode_done_fn on_done, void *done_ctx, size_t *lost);
/* For runners, at the end: -1 with err saying how many of n episodes were
 * still lost to the sandbox after their re-runs, or 0 when none was. */
int episodes_lost_error(size_t lost, size_t n, char *err, size_t errlen);

/* Run `n` episodes (episode i on task i % ts->n, seed `seed`+i) with at most
 * `concurrency` in flight, their tool calls spread over the pool's hosts by
 * load (a session stays on its host). `on_done` (may be NULL) sees each
 * finished episode before it is freed. An episode the sandbox ends (its host
 * fails, vivd refuses or loses a call) is run again from the start, same
 * task and seed, up to EPISODE_SANDBOX_TRIES times (results[i].reruns); the
 * others go on meanwhile. on_done sees only its last run. 0, or -1 with err
 * saying how many were still lost (end "sandbox") after their re-runs. */
int run_episodes(const struct task_set *ts, size_t n, int concurrency, struct viv_pool *p, agent_fn agent,
                 void *agent_ctx, const struct episode_cfg *cfg, uint64_t seed, struct episode_result *results,
                 episode_done_fn on_done, void *done_ctx, char *err, size_t errlen);

#endif
