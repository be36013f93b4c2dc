/*
 * client.h - C client for vivd: one connection, many requests in flight.
 *
 *   struct viv_client *c = viv_connect(NULL, err, sizeof err);   // default socket
 *   long h = viv_submit_exec(c, "python", code, len, 5000);
 *   struct viv_response *r;
 *   while ((r = viv_next(c, 1000))) { ... r->handle, r->json ...; viv_response_free(r); }
 *
 * Submitting never blocks: requests are buffered and written as the socket
 * accepts them while viv_next()/viv_wait() drive the connection. Every
 * request has a client-side deadline (its timeout_ms plus a margin): if no
 * answer comes by then, it completes locally with error code "timeout". If
 * the connection drops, every pending request completes with error code
 * "disconnected". The trainer drives hundreds of requests through one client.
 */
#ifndef VIV_CLIENT_H
#define VIV_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "../jail/job_files.h"

struct viv_client;

struct viv_response {
    long handle;       /* what viv_submit_* returned */
    cJSON *json;       /* the response object ({"id":..,"ok":..,...}) */
    bool local;        /* made up by the client (timeout, disconnected) */
    /* "stdout" and "stderr" decoded whole from the response line, with
     * their lengths: cJSON's strings end at the first \u0000, and a tool's
     * output may hold NUL bytes that must reach the reader. "" (length 0)
     * when the member is absent or not a string; NUL-terminated after len. */
    char *out, *err;
    size_t out_len, err_len;
};

/* $VIV_SOCKET, else $XDG_RUNTIME_DIR/vivd.sock, else /tmp/vivd-<uid>.sock. */
const char *viv_default_socket(void);

struct viv_client *viv_connect(const char *socket_path, char *err, size_t errlen);
/* TCP ("host:port", host an IPv4 address or a name), sending the token
 * first; blocks until it is accepted (connecting: 3 s at most). */
struct viv_client *viv_connect_tcp(const char *addr, const char *token, char *err, size_t errlen);
void viv_close(struct viv_client *c);
/* Give up on the connection: every pending request completes at once with
 * error code "disconnected" (message: why); later submits return -1. */
void viv_abort(struct viv_client *c, const char *why);

/* The connection's fd, for callers that poll several things at once. */
int viv_client_fd(const struct viv_client *c);

/* Margin added to each request's timeout for its client-side deadline (ms). */
void viv_set_deadline_margin(struct viv_client *c, long margin_ms);

/* Queue a request; returns its handle (> 0) or -1 if the client is broken. */
long viv_submit_exec(struct viv_client *c, const char *tool, const char *code, size_t code_len,
                     long timeout_ms);
/* An exec with stdin, files written into the job directory before it runs
 * and files read back after (their content in the answer's "files" as
 * base64, why one could not be read in "fetch_errors"). NULL members are
 * left out; names as job_files.h says. */
struct viv_exec_io {
    const char *stdin_data; /* NULL: none; may not hold NUL bytes (a file may) */
    size_t stdin_len;
    const struct job_file *files;
    int nfiles;
    char *const *fetch;
    int nfetch;
};
long viv_submit_exec_io(struct viv_client *c, const char *tool, const char *code, size_t code_len,
                        long timeout_ms, const struct viv_exec_io *io);
long viv_submit_op(struct viv_client *c, const char *op); /* ping, stats, policies */
/* Sessions (docs/sandbox.md, "vivd"): open one ("session" in the answer), run code in
 * it (globals persist between calls), close it. A session belongs to this
 * connection and is closed when it closes. */
long viv_submit_session_open(struct viv_client *c, const char *tool);
long viv_submit_session_exec(struct viv_client *c, const char *session, const char *code, size_t code_len,
                             long timeout_ms);
long viv_submit_session_close(struct viv_client *c, const char *session);

/* Next completed request, waiting up to timeout_ms (-1: forever, until all
 * pending are done; 0: one round of I/O without waiting, which also sends
 * what was queued). NULL when nothing completed in time or none pending. */
struct viv_response *viv_next(struct viv_client *c, int timeout_ms);
/* Wait for one particular request; others completing meanwhile are kept. */
struct viv_response *viv_wait(struct viv_client *c, long handle, int timeout_ms);
int viv_pending(const struct viv_client *c);
/* Nothing pending and every completion handed out. */
bool viv_drained(const struct viv_client *c);
/* Requests are queued but not yet all written (poll its fd for POLLOUT too). */
bool viv_wants_write(const struct viv_client *c);

/* A response from one response line (no newline): the tree and the whole
 * stdout/stderr; NULL if the line is not a JSON object. The client makes
 * its responses with this; tests and tools may too. */
struct viv_response *viv_response_parse(const char *line, size_t len);

void viv_response_free(struct viv_response *r);

#endif
