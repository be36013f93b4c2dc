/*
 * http_api.h - the HTTP contracts other frameworks' clients speak, as
 * translations to and from vivd's own requests (rpc.h). Pure functions of
 * their input (no I/O), so they can be fuzzed on their own
 * (test/fuzz/fuzz_http.c); http_front.c serves them.
 *
 *   POST /run_code        SandboxFusion (verl's sandbox_fusion client): one exec
 *   POST /start_runtime   Biomni-SkyRL's runtime: session_open
 *   POST /execute         ... exec in the session (#!BASH, #!CLI, #!R routed as Biomni A1 does)
 *   POST /delete_runtime  ... session_close
 */
#ifndef VIV_HTTP_API_H
#define VIV_HTTP_API_H

#include <stddef.h>

/* What to send vivd for one HTTP request, or the HTTP error to answer. */
struct http_call {
    char *line;     /* the NDJSON request line (with its newline), or NULL */
    int status;     /* when line is NULL: the HTTP status of `body` */
    char *body;     /* when line is NULL: the JSON to answer */
    char *session;  /* /execute, /delete_runtime: the session it names */
};

/* Translate one request body for `path`. Caller frees with http_call_free. */
void http_translate(const char *path, const char *body, size_t len, struct http_call *call);
void http_call_free(struct http_call *call);

/* vivd's answer line to the call made for `path` -> the HTTP status and
 * body (caller frees). *retry_after is set (seconds) for busy answers. */
char *http_answer(const char *path, const char *line, size_t len, int *status, int *retry_after);

/* An error body in the shape the path's clients read. Caller frees. */
char *http_error_body(const char *path, const char *message);

#endif
