/*
 * chat.h - Qwen3's chat format as token ids, with a loss mask.
 *
 * A conversation is rendered as Qwen3's chat template does (tokenizer_config
 * .json, without tools):
 *
 *   <|im_start|>system\n{content}<|im_end|>\n
 *   <|im_start|>user\n{content}<|im_end|>\n
 *   <|im_start|>assistant\n{content}<|im_end|>\n      (history; <think> kept
 *        only on assistant turns after the last real user query)
 *   <|im_start|>user\n<tool_response>\n{content}\n</tool_response><|im_end|>\n
 *                                                       (role "tool"; runs merge)
 *   <|im_start|>assistant\n                             (generation prompt;
 *        + <think>\n\n</think>\n\n when thinking is disabled)
 *
 * Text is tokenised one rendered piece at a time; because every piece starts
 * and ends at an added token (<|im_start|>, <|im_end|>, <think>...) this
 * gives the ids that tokenising the whole rendered string gives.
 *
 * Token ids the model generated are appended verbatim (chat_append_generated)
 * and never re-tokenised: re-tokenising decoded text can give different ids.
 * mask[i] is 1 exactly on those generated ids (what the loss trains on).
 * Note what verbatim means for multi-turn episodes: an earlier assistant turn
 * keeps its <think>...</think> as generated, where the template, re-rendering
 * the history, would drop the reasoning of turns before the last user query.
 * Training and generation both see the verbatim form, which is the point.
 */
#ifndef VIV_CHAT_H
#define VIV_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

struct chat {
    int32_t *ids;
    uint8_t *mask;
    int n, cap;
};

struct chat_message {
    const char *role;              /* "system", "user", "assistant" or "tool" */
    const char *content;
    const char *reasoning_content; /* assistant only, may be NULL */
};

void chat_init(struct chat *c);
void chat_free(struct chat *c);

/* Render messages to text as the template does. enable_thinking 0 adds the
 * empty think block to the generation prompt. *out is malloc'd. 0 or -1. */
int chat_render(const struct chat_message *msgs, int n, int add_generation_prompt, int enable_thinking, char **out,
                size_t *out_len);

/* Render and tokenise messages onto c (mask 0). 0, or -1 (memory, bad role). */
int chat_append_messages(struct chat *c, const struct tokenizer *t, const struct chat_message *msgs, int n,
                         int add_generation_prompt, int enable_thinking);

/* Tokenise text[0..len) onto c (mask 0): e.g. an observation turn. */
int chat_append_text(struct chat *c, const struct tokenizer *t, const char *text, size_t len);

/* "<|im_start|>assistant\n" (+ the empty think block if !enable_thinking). */
int chat_append_generation_prompt(struct chat *c, const struct tokenizer *t, int enable_thinking);

/* Ids the model generated, verbatim, mask 1. */
int chat_append_generated(struct chat *c, const int32_t *ids, int n);

/* Close the assistant turn the model generated: <|im_end|> when it did not
 * end with one (cut off at a length limit), then "\n"; mask 0. */
int chat_end_generated(struct chat *c, const struct tokenizer *t);

#endif
