/*
 * textgen.h - text out of the CPU Qwen3 with stop strings, for `viv serve`
 * and the local-checkpoint agent of `viv eval --agent model:DIR`.
 *
 * Generation is model/sample.h's qwen3_generate (so a request gives exactly
 * the tokens `viv gen` gives for the same prompt ids and sampling options);
 * around it this adds what an OpenAI-style API needs:
 *   - stop ids: the model's end-of-sequence ids (generation_config.json's
 *     eos_token_id, config.json's, and <|im_end|> / <|endoftext|> when the
 *     tokenizer has them); such a token ends the text and is not part of it;
 *   - stop strings: the text ends just before the first occurrence of any
 *     (found across token boundaries); which one is reported;
 *   - deltas for streaming: bytes are passed on only once they can no longer
 *     become part of a stop string and do not end inside a UTF-8 character,
 *     so the deltas concatenate to the final text exactly.
 */
#ifndef VIV_RL_TEXTGEN_H
#define VIV_RL_TEXTGEN_H

#include <stddef.h>
#include <stdint.h>

#include "../../model/qwen3.h"
#include "../../model/tokenizer.h"

#define TEXTGEN_MAX_STOP_IDS 16
#define TEXTGEN_MAX_STOPS 8

struct textgen {
    const struct qwen3 *m;
    const struct tokenizer *tok;
    int32_t stop_ids[TEXTGEN_MAX_STOP_IDS];
    int n_stop_ids;
};

/* Stop ids from the model directory (see above). */
void textgen_init(struct textgen *g, const struct qwen3 *m, const struct tokenizer *tok, const char *model_dir);

struct textgen_params {
    int max_tokens;
    float temperature, top_p;   /* temperature <= 0: greedy */
    uint64_t seed;
    const char *const *stop;    /* stop strings (non-empty), at most TEXTGEN_MAX_STOPS */
    int n_stop;
    volatile int *cancel;       /* may be NULL; non-zero ends generation ("cancelled") */
};

/* A piece of the text that is final; return non-zero to stop generating. */
typedef int (*textgen_delta_fn)(const char *bytes, size_t len, void *user);

struct textgen_result {
    char *text;                 /* malloc'd, NUL-terminated (may hold NUL bytes: use len) */
    size_t len;
    const char *finish_reason;  /* "stop", "length" or "cancelled" */
    int stop_index;             /* which stop string ended it, -1 if none */
    int prompt_tokens, completion_tokens;
};

/* Generate from prompt ids. max_tokens is cut to what the context holds
 * (the model's max_position); a prompt that fills it is an error. 0, or -1
 * with err. */
int textgen_run(const struct textgen *g, const int32_t *prompt, int n_prompt, const struct textgen_params *p,
                textgen_delta_fn on_delta, void *user, struct textgen_result *out, char *err, size_t errlen);
void textgen_result_free(struct textgen_result *r);

/* The pieces textgen_run is made of, for a caller that samples the tokens
 * itself (rl/serve/serve_batch.c, many requests in one forward pass): */
struct textgen_stream {
    const struct textgen *g;
    const struct textgen_params *p;
    textgen_delta_fn on_delta;
    void *user;
    char *buf;
    size_t len, cap, emitted;
    size_t max_stop;       /* longest stop string */
    int stopped, stop_index, cancelled, completion_tokens;
};
/* Check the prompt's ids and length against a context of ctx tokens
 * (0: none) and cut *max_tokens to fit. 0, or -1 with err. */
int textgen_check_prompt(const struct textgen *g, const int32_t *prompt, int n_prompt, int ctx, int *max_tokens,
                         char *err, size_t errlen);
int textgen_stream_init(struct textgen_stream *c, const struct textgen *g, const struct textgen_params *p,
                        textgen_delta_fn on_delta, void *user, char *err, size_t errlen);
/* One sampled token; returns 1 when the text is finished (stop id, stop
 * string, cancelled), 0 to go on. */
int textgen_stream_feed(struct textgen_stream *c, int32_t tok);
/* The result (the stream's buffer moves into it); then free the stream. */
void textgen_stream_finish(struct textgen_stream *c, int prompt_tokens, struct textgen_result *out);
void textgen_stream_free(struct textgen_stream *c);

/* Bytes of s[0..n) that can be passed on without ending inside a (so far
 * valid) UTF-8 sequence. */
size_t utf8_complete_prefix(const char *s, size_t n);

#endif
