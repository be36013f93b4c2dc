/*
 * serve_request.h - the body of a chat-completions request, checked
 * (`viv serve`, rl/serve/cmd_serve.c; fuzzed by test/http/fuzz_serve_request.c).
 *
 * Accepted: messages (roles system/developer/user/assistant/tool; content a
 * string, null or a list of text parts; assistant reasoning_content), model
 * (a string, any name), max_tokens or max_completion_tokens (integers >= 1,
 * cut to the server's cap), temperature [0, 2], top_p [0, 1], seed, n (1),
 * stop (a string or up to 4, none empty), stream, stream_options.include_usage,
 * chat_template_kwargs.enable_thinking. Other fields are ignored, except a
 * non-empty tools list, which is refused. A known field of the wrong type or
 * range is an error naming that field.
 */
#ifndef VIV_RL_SERVE_REQUEST_H
#define VIV_RL_SERVE_REQUEST_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "../../model/chat.h"

struct creq {
    struct chat_message *msgs; /* strings point into the parsed JSON (or owned) */
    char **owned;              /* contents we built (joined parts) */
    int n, n_owned;
    long max_tokens;
    double temperature, top_p;
    const char *stop[4];
    int n_stop;
    uint64_t seed;
    int stream, include_usage, enable_thinking;
};

/* Parse j into q (free q with creq_free even on failure). 0, or -1 with the
 * offending field in *param (NULL: the body itself) and why. */
int parse_creq(const cJSON *j, long max_tokens_cap, struct creq *q, const char **param, char *why, size_t whylen);
void creq_free(struct creq *q);

#endif
