/*
 * rpc.h - the vivd wire protocol: newline-delimited JSON requests and
 * responses (see docs/sandbox.md, "The protocol"). Parsing is separate from the daemon so it
 * can be fuzzed on its own (test/fuzz/fuzz_request.c).
 */
#ifndef VIV_RPC_H
#define VIV_RPC_H

#include <stdbool.h>
#include <stddef.h>

#include "../jail/job_files.h"

enum rpc_op { RPC_EXEC, RPC_SESSION_OPEN, RPC_SESSION_CLOSE, RPC_STATS, RPC_POLICIES, RPC_PING };

struct rpc_request {
    char *id_json; /* the request's id as JSON text ("null" if it had none) */
    enum rpc_op op;
    char *tool;    /* exec, session_open */
    char *code;    /* exec; code_len bytes, never contains NUL */
    size_t code_len;
    long timeout_ms; /* 0 = the policy's default */
    char *session;
    /* exec only (job_files.h): stdin text, files (base64 on the wire, decoded
     * here), names to fetch back. Sizes are held to the policy later. */
    char *stdin_data;
    size_t stdin_len;
    bool stdin_given;
    struct job_file *files;
    int nfiles;
    char **fetch;
    int nfetch;
    /* Only from vivd's own HTTP front: the HTTP client this connection
     * speaks for, so per-peer caps and the log count that client, not the
     * front (vivd refuses it from anyone else). */
    char *client;
};

#define RPC_ID_MAX 128
#define RPC_CLIENT_MAX 64
#define RPC_CLIENT_MAX_S "64"

/* A client name: 1-RPC_CLIENT_MAX characters of [A-Za-z0-9.:_-], so it
 * can stand in log lines and error messages as it is. */
bool rpc_client_name_ok(const char *name);

/* Parse one request line (without its newline). On failure returns -1 with
 * *code set to a static error code ("bad_request", "unknown_op") and msg
 * filled; req->id_json is still set (possibly "null") so the error can carry
 * the id. Always call rpc_request_free() afterwards. */
int rpc_parse_request(const char *line, size_t len, struct rpc_request *req, const char **code,
                      char *msg, size_t msglen);
void rpc_request_free(struct rpc_request *req);

const char *rpc_op_name(enum rpc_op op);

/* {"id":ID,"ok":false,"error":{"code":CODE,"message":MSG}} + "\n". Caller frees. */
char *rpc_error_line(const char *id_json, const char *code, const char *message);

/* Turn a JSON object text "{...}" into "{"id":ID,...}\n". Caller frees. */
char *rpc_with_id(const char *id_json, const char *object);

#endif
