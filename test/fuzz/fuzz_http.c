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
    http_translate(path, body, size - 1, &call);
    if (!call.line == !call.body) abort();
    http_call_free(&call);
    int status, retry;
    free(http_answer(path, body, size - 1, &status, &retry));
    free(body);
    return 0;
}
