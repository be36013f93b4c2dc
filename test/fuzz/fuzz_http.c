/*
 * fuzz_http.c - libFuzzer target for the HTTP contracts' parsing
 * (sandbox/vivd/http_api.c): the first byte picks the path, the rest is the
 * request body; then the same bytes as an answer line from vivd. Nothing
 * may crash, leak or read out of bounds, and a call is either a request
 * line or an error body, never neither.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../sandbox/vivd/http_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const paths[] = {"/run_code", "/start_runtime", "/execute", "/delete_runtime", "/nope"};
    if (size < 1) return 0;
    const char *path = paths[data[0] % 5];
    char *body = malloc(size);
    memcpy(body, data + 1, size - 1);
    struct http_call call;
    http_translate(path, "127.0.0.1", body, size - 1, &call);
    if (!call.line == !call.body) abort();
    int status, retry;
    /* the same bytes as the answer to each step the call could be at */
    if (call.line) {
        free(http_answer(&call, path, body, size - 1, &status, &retry));
        if (http_next_step(&call, body, size - 1, size % 2 ? 64 : 1u << 20) && !call.line) abort();
        free(http_answer(&call, path, body, size - 1, &status, &retry));
    }
    http_call_free(&call);
    free(http_answer(NULL, path, body, size - 1, &status, &retry));
    free(body);
    return 0;
}
