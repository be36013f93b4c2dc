/*
 * agent_provider.h - agents `viv eval` can use that live outside envs/:
 * the rl layer's endpoint:URL (an OpenAI-compatible server) and model:DIR
 * (a local checkpoint) agents (rl/serve/llm_agent.c). envs/ does not depend on
 * rl/; the command that links both registers the provider before calling
 * cmd_eval (so envs' own test binaries link without the model and HTTP code).
 */
#ifndef VIV_AGENT_PROVIDER_H
#define VIV_AGENT_PROVIDER_H

#include <stddef.h>

#include "episode.h"

struct agent_options {
    const char *model;        /* --model NAME: the model name sent to an endpoint */
    const char *api_key_env;  /* --api-key-env VAR (NULL: OPENAI_API_KEY, optional) */
    int max_tokens;           /* per assistant message */
    double temperature;       /* < 0: the agent's default (greedy) */
    long request_timeout_ms;  /* one HTTP request, retries aside */
};

/* Runs n episodes with an agent, run_episodes' contract (episode.h); for
 * agents that answer best several at a time (a remote endpoint). */
typedef int (*agent_run_fn)(void *agent, const struct task_set *ts, size_t n, int concurrency, struct viv_pool *p,
                            const struct episode_cfg *cfg, uint64_t seed, struct episode_result *results,
                            void (*on_done)(void *ctx, const struct episode *ep, size_t index), void *done_ctx,
                            char *err, size_t errlen);

struct agent_provider {
    const char *kinds;        /* for messages: "endpoint:URL, model:DIR" */
    int (*accepts)(const char *spec);
    /* The agent for spec (the --agent value); NULL with err. */
    void *(*open)(const char *spec, const struct agent_options *o, char *err, size_t errlen);
    agent_fn next;
    agent_run_fn run;         /* NULL: run_episodes with next */
    /* Free the agent; returns how many of its turns failed (the last
     * failure in err, "" if none). */
    int (*close)(void *agent, char *err, size_t errlen);
};

/* Register (NULL: none); cmd_eval consults it for unknown --agent values. */
void eval_set_agent_provider(const struct agent_provider *p);

#endif
