/*
 * fuzz_request.c - libFuzzer target for vivd's request parser.
 *
 * Every line a client sends goes through rpc_parse_request(). Whatever the
 * bytes: no crash, no leak, and the answer is well formed: on success the
 * request satisfies the op's requirements; on failure there is an error code
 * and the error line we would send back parses as JSON.
 *
 *   make build/fuzz/fuzz_request
 *   build/fuzz/fuzz_request -max_total_time=600 corpus_dir   # the long run
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../sandbox/vivd/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct rpc_request req;
    const char *code = NULL;
    char msg[256];
    int rc = rpc_parse_request((const char *)data, size, &req, &code, msg, sizeof msg);
    if (rc == 0) {
        if (req.op == RPC_EXEC && (!req.code || (!req.tool && !req.session))) abort();
        if (req.code && strlen(req.code) != req.code_len) abort(); /* no NUL inside code */
    } else {
        if (!code || !*msg) abort();
        char *line = rpc_error_line(req.id_json, code, msg);
        cJSON *o = cJSON_Parse(line);
        if (!o || !cJSON_GetObjectItem(o, "error")) abort();
        cJSON_Delete(o);
        free(line);
    }
    rpc_request_free(&req);
    return 0;
}
