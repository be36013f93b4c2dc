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
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/json_writer.h"
#include "../base/util.h"

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

/* "files": {"name": "base64", ...}, at most JOB_FILES_MAX, names checked. */
static int parse_files(const cJSON *root, struct rpc_request *req, char *msg, size_t msglen) {
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
    if (!files) return 0;
    if (!cJSON_IsObject(files)) return fail_with(msg, msglen, "files must be an object of name: base64 content");
    int n = cJSON_GetArraySize(files);
    if (n > JOB_FILES_MAX) return fail_with(msg, msglen, "files has %d entries; at most %d", n, JOB_FILES_MAX);
    req->files = xcalloc((size_t)n + 1, sizeof *req->files);
    for (const cJSON *f = files->child; f; f = f->next) {
        if (job_path_check(f->string, msg, msglen)) return -1;
        for (int k = 0; k < req->nfiles; k++)
            if (strcmp(req->files[k].name, f->string) == 0)
                return fail_with(msg, msglen, "file '%.64s' is given twice", f->string);
        if (!cJSON_IsString(f)) return fail_with(msg, msglen, "file '%.64s': the content must be a base64 string", f->string);
        size_t dl;
        char *data = base64_decode(f->valuestring, strlen(f->valuestring), &dl);
        if (!data) return fail_with(msg, msglen, "file '%.64s': the content is not valid base64", f->string);
        req->files[req->nfiles++] = (struct job_file){xstrdup(f->string), data, dl};
    }
    return 0;
}

/* "fetch_files": ["name", ...], at most JOB_FILES_MAX, names checked. */
static int parse_fetch(const cJSON *root, struct rpc_request *req, char *msg, size_t msglen) {
    const cJSON *fetch = cJSON_GetObjectItemCaseSensitive(root, "fetch_files");
    if (!fetch) return 0;
    if (!cJSON_IsArray(fetch)) return fail_with(msg, msglen, "fetch_files must be an array of file names");
    int n = cJSON_GetArraySize(fetch);
    if (n > JOB_FILES_MAX) return fail_with(msg, msglen, "fetch_files has %d entries; at most %d", n, JOB_FILES_MAX);
    req->fetch = xcalloc((size_t)n + 1, sizeof *req->fetch);
    for (const cJSON *f = fetch->child; f; f = f->next) {
        if (!cJSON_IsString(f)) return fail_with(msg, msglen, "fetch_files must hold strings");
        if (job_path_check(f->valuestring, msg, msglen)) return -1;
        req->fetch[req->nfetch++] = xstrdup(f->valuestring);
    }
    return 0;
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
        static const char *const known[] = {"id", "op", "tool", "code", "timeout_ms", "session", "stdin", "files", "fetch_files", "client", NULL};
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
    const cJSON *client = cJSON_GetObjectItemCaseSensitive(root, "client");
    if (client && !rpc_client_name_ok(cJSON_GetStringValue(client))) {
        fail(code, "bad_request", msg, msglen, "client must be 1-" RPC_CLIENT_MAX_S " characters of A-Z a-z 0-9 . : _ -");
        goto out;
    }
    if (client) req->client = xstrdup(client->valuestring);
    if (tool) req->tool = xstrdup(tool->valuestring);
    if (sess) req->session = xstrdup(sess->valuestring);
    if (tmo) req->timeout_ms = (long)tmo->valuedouble;
    const cJSON *stdinv = cJSON_GetObjectItemCaseSensitive(root, "stdin");
    if (stdinv && !cJSON_IsString(stdinv)) { fail(code, "bad_request", msg, msglen, "stdin must be a string"); goto out; }
    if ((codev || stdinv) && has_escaped_nul(line, len)) {
        fail(code, "bad_request", msg, msglen,
             "code or stdin contains a NUL character (send binary input as a base64 file in 'files')");
        goto out;
    }
    if (codev) {
        req->code = xstrdup(codev->valuestring);
        req->code_len = strlen(req->code);
    }
    if (stdinv) {
        req->stdin_data = xstrdup(stdinv->valuestring);
        req->stdin_len = strlen(req->stdin_data);
        req->stdin_given = true;
    }
    if (parse_files(root, req, msg, msglen) || parse_fetch(root, req, msg, msglen)) {
        *code = "bad_request";
        goto out;
    }
    if ((req->stdin_given || req->files || req->fetch) && req->op != RPC_EXEC) {
        fail(code, "bad_request", msg, msglen, "stdin, files and fetch_files belong to exec");
        goto out;
    }
    if ((req->stdin_given || req->files || req->fetch) && req->session) {
        fail(code, "bad_request", msg, msglen,
             "a session call takes no stdin, files or fetch_files (its code reads and writes the session's /work)");
        goto out;
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

bool rpc_client_name_ok(const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > RPC_CLIENT_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr(".:_-", name[i])) return false;
    return true;
}

void rpc_request_free(struct rpc_request *req) {
    free(req->id_json);
    free(req->client);
    free(req->tool);
    free(req->code);
    free(req->session);
    free(req->stdin_data);
    for (int i = 0; req->files && i < req->nfiles; i++) free(req->files[i].name), free(req->files[i].data);
    free(req->files);
    for (int i = 0; req->fetch && i < req->nfetch; i++) free(req->fetch[i]);
    free(req->fetch);
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
