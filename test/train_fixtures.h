/*
 * train_fixtures.h - fixtures shared by the trainer's test programs
 * (test/train, test/gpu): a tokenizer trained on a few protocol-shaped
 * strings, small enough that models over it are fast.
 */
#ifndef VIV_TEST_TRAIN_FIXTURES_H
#define VIV_TEST_TRAIN_FIXTURES_H

#include <stdlib.h>
#include <string.h>

#include "../model/qwen3.h"
#include "../model/tokenizer.h"
#include "../rl/rollout.h"

/* An episode of a prompt and a generated continuation: the generated
 * tokens masked in, with their sampling log-probs. Its score is the
 * caller's to set. */
static inline void fixture_episode(struct rl_episode *e, const int *prompt, int n_prompt, const int *out,
                                   const float *lp, int n_out) {
    memset(e, 0, sizeof *e);
    e->n_tokens = n_prompt + n_out, e->prompt_tokens = n_prompt;
    e->tokens = calloc((size_t)e->n_tokens, sizeof(int));
    e->mask = calloc((size_t)e->n_tokens, 1);
    e->logprobs = calloc((size_t)e->n_tokens, sizeof(float));
    memcpy(e->tokens, prompt, (size_t)n_prompt * sizeof(int));
    for (int t = 0; t < n_out; t++)
        e->tokens[n_prompt + t] = out[t], e->mask[n_prompt + t] = 1, e->logprobs[n_prompt + t] = lp[t];
}

static inline struct tokenizer *small_tokenizer(void) {
    const char *texts[] = {
        "<|im_start|>system\nYou are a biomedical research assistant.<|im_end|>\n",
        "<think>I will query the database.</think>\n<execute>#!SQL\nSELECT symbol FROM gene_info;</execute>",
        "<observation>BRCA1\nTP53</observation>",
        "<think>The answer is TP53.</think>\n<solution>TP53</solution>",
    };
    size_t lens[4];
    for (int i = 0; i < 4; i++) lens[i] = strlen(texts[i]);
    char err[256];
    return tokenizer_train(texts, lens, 4, 400, NULL, err, sizeof err);
}

/* The GPU suites' model: GQA, and 32-wide heads so head_dim differs from
 * hidden/heads (16). Random weights from `seed`. */
static inline struct qwen3 *fixture_model(int V, uint64_t seed) {
    struct qwen3_config c = {.vocab_size = V, .hidden_size = 64, .intermediate_size = 128, .num_layers = 2,
                             .num_heads = 4, .num_kv_heads = 2, .head_dim = 32, .max_position = 4096,
                             .rms_norm_eps = 1e-6f, .rope_theta = 10000, .tie_word_embeddings = 1,
                             .bos_token_id = -1, .eos_token_id = -1};
    char err[256];
    struct qwen3 *m = qwen3_create(&c, err, sizeof err);
    if (m) qwen3_init_random(m, seed, 0.1f);
    return m;
}

/* A copy of m's weights in a new model. */
static inline struct qwen3 *fixture_clone(const struct qwen3 *m) {
    char err[256];
    struct qwen3 *c = qwen3_create(&m->cfg, err, sizeof err);
    if (c) memcpy(c->params, m->params, m->n_params * sizeof(float));
    return c;
}

/* The first 16 SFT losses, from sft_opts.on_step (arg: struct losses *). */
struct losses {
    float v[16];
    int n;
};
static inline void rec_loss(void *arg, long step, long total, float loss, float lr, double tps) {
    (void)step, (void)total, (void)lr, (void)tps;
    struct losses *l = arg;
    if (l->n < 16) l->v[l->n++] = loss;
}

#endif
