/*
 * llm_agent.h - agents whose every assistant message comes from a language
 * model: an OpenAI-compatible endpoint ("endpoint:URL", through
 * rl/serve/openai_client.h) or a checkpoint on this machine ("model:DIR", through
 * rl/serve/textgen.h on the CPU model).
 *
 * Both see the episode as the model was trained to (envs/turn.h): the
 * system message, the task, then the turns so far, observations as user
 * messages. The local agent renders exactly the token layout SFT and GRPO
 * train on (sft_render: earlier <think> blocks kept verbatim); an endpoint
 * gets the messages and renders them with its own chat template.
 * Generation stops at "</execute>" or "</solution>" (proto_stop_len), which
 * is put back at the end of the message: OpenAI servers leave the stop
 * string out, the protocol and its format reward need it. The endpoint's
 * "stop_reason" says which one (vLLM, viv serve); without it the tag that is
 * open at the end of the text is closed.
 *
 * The agent may be called from several threads at once: an endpoint agent
 * keeps a libcurl client per concurrent request; the local one generates
 * one message at a time, except under llm_agent_run with several episodes in
 * flight, where their messages decode together (continuous batching,
 * rl/serve/serve_batch.h; the texts are those of one at a time).
 *
 * A turn that fails (the endpoint's error after its retries) ends the
 * episode like an unparsable message and is counted; after 3 failures in a
 * row the agent stops asking (a dead endpoint does not cost every episode
 * its retries).
 */
#ifndef VIV_RL_LLM_AGENT_H
#define VIV_RL_LLM_AGENT_H

#include <stddef.h>

#include "../../envs/agent_provider.h"
#include "../../envs/episode.h"

struct llm_agent;

/* 1 if spec is "endpoint:..." or "model:..." */
int llm_agent_accepts(const char *spec);
struct llm_agent *llm_agent_open(const char *spec, const struct agent_options *o, char *err, size_t errlen);
/* agent_fn (rl/../envs/episode.h): the next assistant message, or NULL. */
char *llm_agent_next(void *agent, const struct episode *ep);
/* Turns asked for and turns that failed (the last failure's message). */
/* Run episodes with this agent (agent_run_fn): an endpoint agent keeps one
 * request in flight per episode in flight (rl/serve/agent_pool.h). */
int llm_agent_run(void *agent, const struct task_set *ts, size_t n, int concurrency, struct viv_pool *p,
                  const struct episode_cfg *cfg, uint64_t seed, struct episode_result *results,
                  void (*on_done)(void *ctx, const struct episode *ep, size_t index), void *done_ctx, char *err,
                  size_t errlen);
long llm_agent_turns(const struct llm_agent *a);
int llm_agent_failures(const struct llm_agent *a, const char **last);
void llm_agent_close(struct llm_agent *a);

/* The provider `viv eval` uses (see envs/agent_provider.h). */
extern const struct agent_provider llm_agent_provider;

/* Close the protocol tag left open by a stop string the server cut off:
 * returns text + "</execute>" or "</solution>" when one of those is open at
 * the end (the later-opened one), else a copy. malloc'd. */
char *llm_agent_restore_stop(const char *text, size_t len, const char *stop_reason, const char *finish_reason);

#endif
