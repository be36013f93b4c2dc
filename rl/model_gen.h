/*
 * model_gen.h - an rl_generator (rl/rollout.h) over the CPU Qwen3 model:
 * batched decoding through the KV cache with temperature / top-p sampling
 * and stop strings, plus the rl_tokenizer over model/tokenizer.h.
 *
 * Each request is given a KV-cache slot. A slot remembers the token ids it
 * holds, so an episode's next turn (its old context + observation) only
 * feeds the new tokens: multi-turn episodes are prefilled once. Then all
 * requests decode together, one row per live request per forward call.
 *
 * out_logprobs are log pi(token) at temperature 1 (the model's own
 * distribution, what GRPO's ratio compares against), whatever the sampling
 * temperature. Each request samples from its own stream seeded by
 * (seed, episode, turn, position), so a request's tokens do not depend on
 * which other requests share its batch.
 */
#ifndef VIV_RL_MODEL_GEN_H
#define VIV_RL_MODEL_GEN_H

#include <stdint.h>

#include "../model/qwen3.h"
#include "../model/tokenizer.h"
#include "rollout.h"

/* A model with a per-sequence KV cache, as qwen3_kv_* (model/qwen3.h). */
struct gen_model {
    void *ctx;
    int vocab_size;
    void *(*kv_create)(void *ctx, int n_slots, int max_T, char *err, size_t errlen);
    void (*kv_free)(void *kv);
    int (*kv_len)(const void *kv, int slot);
    void (*kv_truncate)(void *kv, int slot, int len); /* keep the first len rows (0: empty) */
    /* n rows token[i] for slot[i]; logits of the rows with want[i] (NULL: all) into logits, V each */
    int (*kv_forward)(void *ctx, void *kv, const int32_t *token, const int *slot, int n, const uint8_t *want,
                      float *logits, char *err, size_t errlen);
};

/* The CPU model's gen_model. */
void model_gen_cpu_model(const struct qwen3 *m, struct gen_model *out);

struct model_gen {
    struct gen_model gm;
    const struct tokenizer *tok;
    void *kv;
    int n_slots, max_T;
    int32_t **slot_ids;  /* [n_slots][max_T]: ids cached in each slot */
    int *slot_episode;   /* last episode that used the slot (-1: none) */
    long *slot_used;     /* LRU clock */
    long clock;
    float temperature, top_p;
    uint64_t seed;
    int no_logprobs;     /* 1: leave out_logprobs 0 (a caller that reads only the tokens) */
    int32_t eos_id;      /* <|im_end|>, -1 if absent */
    long tokens_generated, tokens_prefilled;
};

int model_gen_init(struct model_gen *g, const struct qwen3 *m, const struct tokenizer *tok, int n_slots, int max_T,
                   char *err, size_t errlen);
int model_gen_init_with(struct model_gen *g, const struct gen_model *gm, const struct tokenizer *tok, int n_slots,
                        int max_T, char *err, size_t errlen);
void model_gen_free(struct model_gen *g);
/* The model's weights changed (or a new step starts): forget cached slots. */
void model_gen_invalidate(struct model_gen *g);
void model_gen_generator(struct model_gen *g, struct rl_generator *out);
void model_gen_tokenizer(const struct tokenizer *tok, struct rl_tokenizer *out);

#endif
