/*
 * rpc.c - parse vivd requests, build responses.
 *
 * Requests are strict: an object with a known "op", fields of the right
 * types, no unknown fields (a typo such as "timeout" for "timeout_ms" must be
 * an error, not a silently ignored limit). Code may be any text except NUL:
 * cJSON decodes "\u0000" into a C string that would end early, so such a
 * request is refused instead of running a truncated program.
 */
#define _GNU_SOURCE
#include "rpc.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_writer.h"
#include "util.h"

static const char *const op_names[] = {"exec", "session_open", "session_close", "stats", "policies", "ping"};

const char *rpc_op_name(enum rpc_op op) { return op_names[op]; }

/* Does the JSON text contain an escaped NUL (\u0000 not itself escaped)? */
static int has_escaped_nul(const char *s, size_t len) {
    for (size_t i = 0; i + 5 < len; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && s[i + 2] == '0' && s[i + 3] == '0' && s[i + 4] == '0' && s[i + 5] == '0')
            return 1;
        i++; /* skip the escaped character, whatever it is */
    }
    return 0;
}

static int fail(const char **code, const char *c, char *msg, size_t msglen, const char *text) {
    *code = c;
    snprintf(msg, msglen, "%s", text);
    return -1;
}

int rpc_parse_request(const char *line, size_t len, struct rpc_request *req, const char **code,
                      char *msg, size_t msglen) {
    memset(req, 0, sizeof *req);
    req->id_json = xstrdup("null");
    if (memchr(line, 0, len)) return fail(code, "bad_request", msg, msglen, "request contains a NUL byte");
    cJSON *root = cJSON_ParseWithLength(line, len);
    if (!root) return fail(code, "bad_request", msg, msglen, "malformed JSON");
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        fail(code, "bad_request", msg, msglen, "a request must be a JSON object");
        goto out;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (id && (cJSON_IsNumber(id) || (cJSON_IsString(id) && strlen(id->valuestring) <= RPC_ID_MAX))) {
        char *t = cJSON_PrintUnformatted(id);
        if (t) free(req->id_json), req->id_json = t;
    } else if (id && !cJSON_IsNull(id)) {
        fail(code, "bad_request", msg, msglen, "id must be a number or a short string");
        goto out;
    }
    for (const cJSON *f = root->child; f; f = f->next) {
        static const char *const known[] = {"id", "op", "tool", "code", "timeout_ms", "session", NULL};
        int ok = 0;
        for (const char *const *k = known; *k; k++) ok |= strcmp(*k, f->string) == 0;
        if (!ok) {
            char m[200];
            snprintf(m, sizeof m, "unknown field '%.64s'", f->string);
            fail(code, "bad_request", msg, msglen, m);
            goto out;
        }
    }
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(root, "op");
    if (!cJSON_IsString(op)) {
        fail(code, "bad_request", msg, msglen, "missing string field 'op'");
        goto out;
    }
    size_t nops = sizeof op_names / sizeof op_names[0], i;
    for (i = 0; i < nops && strcmp(op_names[i], op->valuestring) != 0; i++) {}
    if (i == nops) {
        char m[200];
        snprintf(m, sizeof m, "unknown op '%.64s' (exec, session_open, session_close, stats, policies, ping)", op->valuestring);
        fail(code, "unknown_op", msg, msglen, m);
        goto out;
    }
    req->op = (enum rpc_op)i;

    const cJSON *tool = cJSON_GetObjectItemCaseSensitive(root, "tool");
    const cJSON *codev = cJSON_GetObjectItemCaseSensitive(root, "code");
    const cJSON *tmo = cJSON_GetObjectItemCaseSensitive(root, "timeout_ms");
    const cJSON *sess = cJSON_GetObjectItemCaseSensitive(root, "session");
    if (tool && !cJSON_IsString(tool)) { fail(code, "bad_request", msg, msglen, "tool must be a string"); goto out; }
    if (codev && !cJSON_IsString(codev)) { fail(code, "bad_request", msg, msglen, "code must be a string"); goto out; }
    if (sess && !cJSON_IsString(sess)) { fail(code, "bad_request", msg, msglen, "session must be a string"); goto out; }
    if (tmo && (!cJSON_IsNumber(tmo) || tmo->valuedouble < 1 || tmo->valuedouble > 86400000.0 ||
                tmo->valuedouble != (double)(long)tmo->valuedouble)) {
        fail(code, "bad_request", msg, msglen, "timeout_ms must be an integer number of milliseconds >= 1");
        goto out;
    }
    if (tool) req->tool = xstrdup(tool->valuestring);
    if (sess) req->session = xstrdup(sess->valuestring);
    if (tmo) req->timeout_ms = (long)tmo->valuedouble;
    if (codev) {
        if (has_escaped_nul(line, len)) {
            fail(code, "bad_request", msg, msglen, "code contains a NUL character");
            goto out;
        }
        req->code = xstrdup(codev->valuestring);
        req->code_len = strlen(req->code);
    }
    switch (req->op) {
    case RPC_EXEC:
        if (!req->code) { fail(code, "bad_request", msg, msglen, "exec needs a string field 'code'"); goto out; }
        if (!req->tool && !req->session) { fail(code, "bad_request", msg, msglen, "exec needs 'tool' (or 'session')"); goto out; }
        break;
    case RPC_SESSION_OPEN:
        if (!req->tool) { fail(code, "bad_request", msg, msglen, "session_open needs 'tool'"); goto out; }
        break;
    case RPC_SESSION_CLOSE:
        if (!req->session) { fail(code, "bad_request", msg, msglen, "session_close needs 'session'"); goto out; }
        break;
    default:
        break;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

void rpc_request_free(struct rpc_request *req) {
    free(req->id_json);
    free(req->tool);
    free(req->code);
    free(req->session);
    memset(req, 0, sizeof *req);
}

char *rpc_with_id(const char *id_json, const char *object) {
    const char *rest = object + 1; /* past '{' */
    while (*rest == ' ') rest++;
    return xasprintf("{\"id\":%s%s%s\n", id_json, *rest == '}' ? "" : ",", rest);
}

char *rpc_error_line(const char *id_json, const char *code, const char *message) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "ok"), jw_bool(&w, false);
    jw_key(&w, "error");
    jw_object_begin(&w);
    jw_key(&w, "code"), jw_cstring(&w, code);
    jw_key(&w, "message"), jw_cstring(&w, message);
    jw_object_end(&w);
    jw_object_end(&w);
    char *obj = jw_finish(&w);
    char *line = rpc_with_id(id_json, obj);
    free(obj);
    return line;
}
