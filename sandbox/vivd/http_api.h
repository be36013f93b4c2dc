/*
 * http_api.h - the HTTP contracts other frameworks' clients speak, as
 * translations to and from vivd's own requests (rpc.h). Pure functions of
 * their input (no I/O), so they can be fuzzed on their own
 * (test/fuzz/fuzz_http.c); http_front.c serves them.
 *
 *   POST /run_code        SandboxFusion (verl's sandbox_fusion client): one exec,
 *                         or for C/C++ a compile exec, then a run exec
 *   POST /start_runtime   Biomni-SkyRL's runtime: session_open
 *   POST /execute         ... exec in the session (#!BASH, #!CLI, #!R routed as Biomni A1 does)
 *   POST /delete_runtime  ... session_close
 */
#ifndef VIV_HTTP_API_H
#define VIV_HTTP_API_H

#include <stddef.h>

/* Where a call is: most calls are one request; a compiled language's
 * /run_code is a compile request, then (if that made a binary) a run. */
enum http_step { HTTP_STEP_ONE, HTTP_STEP_COMPILE, HTTP_STEP_RUN, HTTP_STEP_COMPILED };

/* What to send vivd for one HTTP request, or the HTTP error to answer. */
struct http_call {
    char *line;     /* the NDJSON request line (with its newline), or NULL */
    int status;     /* when line is NULL: the HTTP status of `body` */
    char *body;     /* when line is NULL: the JSON to answer */
    char *session;  /* /execute, /delete_runtime: the session it names */
    char *client;   /* who asks (vivd's per-peer caps count it), or NULL */
    enum http_step step;
    char *request;  /* HTTP_STEP_COMPILE: the request body, for the run step */
    size_t request_len;
    char *compiled; /* HTTP_STEP_RUN/COMPILED: the compile step's answer */
    size_t compiled_len;
    const char *not_run; /* HTTP_STEP_COMPILED: why a binary did not go on to run (static text), or NULL */
};

/* Translate one request body for `path` from `client` (the HTTP client's
 * name as rpc_client_name_ok() allows, carried as each request's "client";
 * NULL for none). Caller frees with http_call_free. */
void http_translate(const char *path, const char *client, const char *body, size_t len, struct http_call *call);
void http_call_free(struct http_call *call);

/* After vivd answered call->line: 1 when the call has a next request (now
 * in call->line; a compile step that made a binary, and a run request no
 * longer than max_line, vivd's --max-line-bytes), 0 when `answer` is the
 * last one, for http_answer. */
int http_next_step(struct http_call *call, const char *answer, size_t len, size_t max_line);

/* vivd's last answer line to `call` (NULL: a one-request call) made for
 * `path` -> the HTTP status and body (caller frees). *retry_after is set
 * (seconds) for busy answers. Output keeps its NULs (as \u0000). */
char *http_answer(const struct http_call *call, const char *path, const char *line, size_t len, int *status,
                  int *retry_after);

/* An error body in the shape the path's clients read. Caller frees. */
char *http_error_body(const char *path, const char *message);

#endif
