/*
 * serve_batch.h - continuous batching for `viv serve --batch N`.
 *
 * One scheduler thread owns the model and a KV cache of N slots. Requests
 * wait in a queue; whenever a slot is free the next request takes it and its
 * prompt is prefilled (in chunks, as qwen3_generate does); then every step
 * feeds the last token of each running request as one row of a single
 * forward pass (qwen3_kv_forward: one matmul over all rows instead of N
 * matrix-vector products), samples each row with the request's own sampler
 * (its seed, temperature, top_p) and passes the token to the request's
 * textgen stream (stop ids, stop strings, streamed deltas). A finished
 * request frees its slot for the next at once, so short and long requests
 * do not wait for each other.
 *
 * A request alone in the batch runs exactly the calls qwen3_generate makes,
 * so its text equals `viv gen`'s; with others beside it, its rows go through
 * the same per-row arithmetic (the kernels compute each row on its own).
 */
#ifndef VIV_RL_SERVE_BATCH_H
#define VIV_RL_SERVE_BATCH_H

#include <stdint.h>

#include "textgen.h"

struct batcher;

/* Start the scheduler: n_slots requests at once, each up to max_T tokens
 * (prompt + completion). NULL + err. */
struct batcher *batcher_start(const struct textgen *g, int n_slots, int max_T, char *err, size_t errlen);
/* Cancel what runs, fail what waits, join the thread, free. */
void batcher_stop(struct batcher *b);

/* Generate for one request (blocks until it is finished; deltas are passed
 * to on_delta from the scheduler thread). The same contract as textgen_run,
 * with the batcher's slot size as the context. 0, or -1 with err. */
int batcher_run(struct batcher *b, const int32_t *prompt, int n_prompt, const struct textgen_params *p,
                textgen_delta_fn on_delta, void *user, struct textgen_result *out, char *err, size_t errlen);

/* Decode steps so far, the rows they carried, the most rows in one step
 * (read after batcher_run calls have returned, or approximately). */
void batcher_stats(const struct batcher *b, long *steps, long *rows, int *max_rows);

#endif
