/*
 * agent_pool.h - run_episodes (envs/episode.h) with the agent's messages
 * computed by a pool of threads.
 *
 * envs' runner asks its agent synchronously, which suits the scripted
 * teacher (microseconds a message) but not a remote model: one request to an
 * endpoint takes seconds, and with one in flight a rejection-sampling pass
 * over hundreds of tasks takes hours. Here the episodes that owe a message
 * are handed to `workers` threads; the main thread keeps owning the episodes
 * and the vivd connection (it alone pushes messages, submits tool calls and
 * reads answers), so the episode state machine and its scoring are envs'
 * unchanged. An episode is touched by a worker only while it waits for its
 * message, and by nobody else then.
 *
 * The agent must be safe to call from several threads at once (rl/serve/llm_agent
 * is). Same arguments, results and on_done calls as run_episodes, plus the
 * number of worker threads.
 */
#ifndef VIV_RL_AGENT_POOL_H
#define VIV_RL_AGENT_POOL_H

#include "../../envs/episode.h"

int pool_run_episodes(const struct task_set *ts, size_t n, int concurrency, int workers, struct viv_pool *p,
                      agent_fn agent, void *agent_ctx, const struct episode_cfg *cfg, uint64_t seed,
                      struct episode_result *results,
                      void (*on_done)(void *ctx, const struct episode *ep, size_t index), void *done_ctx, char *err,
                      size_t errlen);

#endif
