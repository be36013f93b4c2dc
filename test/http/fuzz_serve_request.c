/*
 * fuzz_serve_request.c - libFuzzer target: arbitrary bytes as the body of a
 * chat-completions request, through what `viv serve` does before generating:
 * JSON parsing, parse_creq (rl/serve/serve_request.c) and, when the request is
 * accepted, the Qwen3 chat template (model/chat.c). Checks the promises a
 * caller relies on: an accepted request has 1+ messages with known roles and
 * non-NULL contents, 1 <= max_tokens <= the cap, at most 4 non-empty stops;
 * a refused one names why.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../model/chat.h"
#include "../../rl/serve/serve_request.h"

#define CAP 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *j = cJSON_ParseWithLength((const char *)data, size);
    if (!j) return 0;
    struct creq q;
    const char *param = NULL;
    char why[256] = "";
    if (parse_creq(j, CAP, &q, &param, why, sizeof why) == 0) {
        if (q.n < 1 || q.max_tokens < 1 || q.max_tokens > CAP || q.n_stop > 4) abort();
        if (!(q.temperature >= 0 && q.temperature <= 2) || !(q.top_p > 0 && q.top_p <= 1)) abort();
        for (int i = 0; i < q.n; i++) {
            const char *r = q.msgs[i].role;
            if (!q.msgs[i].content || (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool")))
                abort();
        }
        for (int i = 0; i < q.n_stop; i++)
            if (!q.stop[i] || !q.stop[i][0]) abort();
        char *text = NULL;
        size_t len = 0;
        if (chat_render(q.msgs, q.n, 1, q.enable_thinking, &text, &len) == 0 && (!text || strlen(text) > len)) abort();
        free(text);
    } else if (!why[0]) abort();
    creq_free(&q);
    cJSON_Delete(j);
    return 0;
}
