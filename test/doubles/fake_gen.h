/*
 * fake_gen.h - TEST DOUBLES for the rollout engine: a scripted generator and
 * a byte-level tokenizer. They stand in for the model (model/) in tests and
 * in the rollout benchmark; nothing here is the real model or tokenizer.
 *
 * The generator "generates" the text a script returns for (episode, turn),
 * one token per byte, stopping after the first stop string it emits (or at
 * max_new_tokens). Log-probs are a fixed function of (episode, turn,
 * position) so tests can check that the engine stored them exactly. Time is
 * simulated like a GPU decoding a batch: a fixed cost per call, plus one
 * decoding step per token of the longest output in the batch, plus a small
 * cost per token generated (batching is cheap but not free).
 */
#ifndef VIV_RL_FAKE_GEN_H
#define VIV_RL_FAKE_GEN_H

#include <stdbool.h>

#include "../../rl/rollout.h"

struct fake_gen {
    /* the text of turn `turn` of episode `episode` (NULL: an empty turn) */
    const char *(*script)(void *arg, int episode, int turn);
    void *arg;
    double call_us;             /* per generate call */
    double step_us;             /* per decoding step (the longest output sets the count) */
    double token_us;            /* per generated token */
    bool spin;                  /* burn CPU instead of sleeping */
    int fail_episode;           /* this episode's requests fail (n_out = -1); -1: none */
    /* counters */
    long calls, requests, tokens;
    int max_batch_seen;
};

/* Fill gen with the fake's function pointers (ctx = fg). */
void fake_gen_init(struct fake_gen *fg, struct rl_generator *gen, int max_batch);
/* The log-prob the fake reports for position pos of that turn. */
float fake_gen_logprob(int episode, int turn, int pos);

/* Bytes as tokens: id = byte value (0..255). */
void byte_tokenizer(struct rl_tokenizer *tok);

#endif
