/*
 * sample.h - next-token sampling and generation.
 *
 * Sampling follows transformers' order: logits / temperature, keep the top_k
 * largest, keep the smallest set of most likely tokens whose probability
 * reaches top_p, renormalise, draw. temperature <= 0 is greedy (argmax,
 * lowest id on ties). The random stream is a xorshift64* seeded by
 * splitmix64(seed): the same seed and logits give the same tokens.
 */
#ifndef VIV_MODEL_SAMPLE_H
#define VIV_MODEL_SAMPLE_H

#include <stdint.h>

#include "qwen3.h"

struct sampler {
    float temperature; /* <= 0: greedy */
    float top_p;       /* (0, 1]; 1 = off */
    int top_k;         /* 0 = off */
    uint64_t rng;
    int cap;
    float *prob;
    int *idx;
};

void sampler_init(struct sampler *s, float temperature, float top_p, int top_k, uint64_t seed);
/* The same settings and stream as sampler_init, keeping the buffers a
 * previous sampler_sample grew: one sampler reused for many draws. */
void sampler_reset(struct sampler *s, float temperature, float top_p, int top_k, uint64_t seed);
void sampler_free(struct sampler *s);
int sampler_sample(struct sampler *s, const float *logits, int V);
/* uniform in [0, 1) from the sampler's stream */
float sampler_uniform(struct sampler *s);

struct gen_opts {
    int max_tokens;
    const int32_t *stop_ids; /* generation ends after emitting one of these */
    int n_stop;
    float temperature, top_p;
    int top_k;
    uint64_t seed;
};

struct gen_stats {
    int prompt_tokens, generated;
    double prefill_ms, decode_ms;
    int stopped_on_stop_id;
};

/* Called for each generated token; return non-zero to stop early. */
typedef int (*gen_token_fn)(int32_t token, void *user);

/* The model side of one sequence's generation, so that the sampling loop
 * exists once for every backend: feed(self, tokens, n, want_last, logits)
 * runs the next n positions (n <= GEN_CHUNK) through the model's KV cache
 * and, when want_last, writes the last one's vocab logits. qwen3_generate
 * (CPU) and qwen3_cuda_generate (model/cuda/infer.cu) each pass theirs. */
enum { GEN_CHUNK = 256 };
struct gen_decoder {
    int vocab;
    int (*feed)(void *self, const int32_t *tokens, int n, int want_last, float *logits, char *err, size_t errlen);
    void *self;
};
/* 0 when n_prompt and o describe a generation, else -1 + err. */
int gen_args_ok(int n_prompt, const struct gen_opts *o, char *err, size_t errlen);
/* Prefill the prompt in GEN_CHUNK pieces (logits only for its last token),
 * then sample, call on_token, and feed each token back, until max_tokens, a
 * stop id (emitted, then stop) or on_token asks to stop. 0, or -1 + err. */
int gen_run(const struct gen_decoder *gm, const int32_t *prompt, int n_prompt, const struct gen_opts *o,
            gen_token_fn on_token, void *user, struct gen_stats *st, char *err, size_t errlen);

/* Generate from prompt ids with a fresh one-slot KV cache. 0, or -1 + err. */
int qwen3_generate(const struct qwen3 *m, const int32_t *prompt, int n_prompt, const struct gen_opts *o,
                   gen_token_fn on_token, void *user, struct gen_stats *st, char *err, size_t errlen);

#endif
