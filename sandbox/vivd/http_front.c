/*
 * http_front.c - the process behind `vivd --http` (see http_front.h).
 *
 * libmicrohttpd with a thread per connection: each call blocks on its own
 * vivd connection, so one slow job holds one thread, never the others.
 * A one-shot call opens a connection for itself; a runtime (a vivd
 * session) keeps its connection from /start_runtime to /delete_runtime,
 * since a session belongs to the connection that opened it: if that
 * connection breaks, the session is gone and later calls hear so (404),
 * they never silently get a fresh one. Slow or stalled clients are cut by
 * the connection timeout; bodies past max_body get 413 without being kept.
 */
#define _GNU_SOURCE
#include "http_front.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "http_api.h"
#include "../base/util.h"

#define CLIENT_TIMEOUT_S 30   /* a client silent this long mid-request is dropped */
#define MAX_RUNTIMES 1024
#define MAX_ANSWER (256u << 20)

int http_listen(const char *addr, int token_required, char *err, size_t errlen) {
    char host[64];
    const char *colon = strrchr(addr, ':');
    long port;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (!colon || (size_t)(colon - addr) >= sizeof host || parse_long(colon + 1, 0, 65535, &port))
        return fail_with(err, errlen, "--http %s: give ADDR:PORT (an IPv4 address)", addr);
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return fail_with(err, errlen, "--http %s: '%s' is not an IPv4 address", addr, host);
    if (!token_required && (ntohl(sa.sin_addr.s_addr) >> 24) != 127)
        return fail_with(err, errlen, "--http %s: serving beyond loopback needs --token-file (Authorization: Bearer)", addr);
    sa.sin_port = htons((uint16_t)port);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 256) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return fail_with(err, errlen, "--http %s: %s", addr, strerror(e));
    }
    return fd;
}

static const char *sock_path, *bearer;
static size_t body_cap;

struct runtime {
    char *id; /* NULL: free slot */
    int fd;
    bool busy;
};
static struct runtime runtimes[MAX_RUNTIMES];
static pthread_mutex_t runtimes_lock = PTHREAD_MUTEX_INITIALIZER;

static int vivd_connect(void) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) close(fd), fd = -1;
    return fd;
}

/* Send one line, read one answer line (without its newline). NULL when the
 * connection broke. */
static char *vivd_roundtrip(int fd, const char *line, size_t *len) {
    if (write_all(fd, line, strlen(line)) != 0) return NULL;
    size_t n = 0, cap = 65536;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_ANSWER) break;
            buf = xrealloc(buf, cap *= 2);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        char *nl = memchr(buf + n, '\n', (size_t)r);
        n += (size_t)r;
        if (nl) {
            *len = (size_t)(nl - buf);
            return buf;
        }
    }
    free(buf);
    return NULL;
}

/* A runtime's slot, marked busy; NULL with *why when unknown or busy. */
static struct runtime *runtime_take(const char *id, const char **why) {
    pthread_mutex_lock(&runtimes_lock);
    struct runtime *found = NULL;
    for (int i = 0; i < MAX_RUNTIMES && !found; i++)
        if (runtimes[i].id && strcmp(runtimes[i].id, id) == 0) found = &runtimes[i];
    *why = !found ? "unknown session_id (never started, deleted, or lost)" : found->busy ? "busy" : NULL;
    if (found && found->busy) found = NULL;
    if (found) found->busy = true;
    pthread_mutex_unlock(&runtimes_lock);
    return found;
}

static void runtime_release(struct runtime *rt, bool drop) {
    pthread_mutex_lock(&runtimes_lock);
    rt->busy = false;
    if (drop) close(rt->fd), free(rt->id), rt->id = NULL;
    pthread_mutex_unlock(&runtimes_lock);
}

static bool runtime_add(const char *id, int fd) {
    pthread_mutex_lock(&runtimes_lock);
    bool added = false;
    for (int i = 0; i < MAX_RUNTIMES && !added; i++)
        if (!runtimes[i].id) runtimes[i] = (struct runtime){xstrdup(id), fd, false}, added = true;
    pthread_mutex_unlock(&runtimes_lock);
    return added;
}

static enum MHD_Result reply(struct MHD_Connection *conn, int status, char *body, int retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (retry_after > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", retry_after);
        MHD_add_response_header(r, "Retry-After", v);
    }
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_error(struct MHD_Connection *conn, const char *path, int status, const char *msg) {
    return reply(conn, status, http_error_body(path, msg), status == 429 ? 1 : 0);
}

/* The session's id out of session_open's answer, or NULL. */
static char *opened_session(const char *line, size_t len) {
    int status, retry;
    char *body = http_answer(NULL, "/start_runtime", line, len, &status, &retry);
    char *id = NULL;
    const char *k = status == 200 ? strstr(body, "\"session_id\":\"") : NULL;
    if (k) id = strndup(k + 14, strcspn(k + 14, "\""));
    free(body);
    return id && *id ? id : (free(id), NULL);
}

/* Who is asking, as vivd's per-peer caps should count it: behind a token,
 * the token's holder ("token": vivd has one token); otherwise the remote
 * address, so two HTTP clients are two peers even though every call
 * reaches vivd through this one process. */
static void client_name(struct MHD_Connection *conn, char *out, size_t outlen) {
    snprintf(out, outlen, "%s", bearer[0] ? "token" : "unknown");
    if (bearer[0]) return;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)outlen);
}

static enum MHD_Result serve_call(struct MHD_Connection *conn, const char *path, const char *body, size_t len) {
    struct http_call call;
    char client[INET_ADDRSTRLEN + 8];
    client_name(conn, client, sizeof client);
    http_translate(path, client, body, len, &call);
    if (!call.line) {
        enum MHD_Result r = reply(conn, call.status, call.body, 0);
        call.body = NULL;
        http_call_free(&call);
        return r;
    }
    struct runtime *rt = NULL;
    int fd;
    if (call.session) {
        const char *why;
        rt = runtime_take(call.session, &why);
        if (!rt) {
            http_call_free(&call);
            return strcmp(why, "busy") == 0
                       ? reply_error(conn, path, 429, "busy: the session is running another call (one call at a time per session)")
                       : reply_error(conn, path, 404, why);
        }
        fd = rt->fd;
    } else if ((fd = vivd_connect()) < 0) {
        http_call_free(&call);
        return reply_error(conn, path, 503, "vivd is not reachable");
    }
    size_t alen = 0;
    char *answer = vivd_roundtrip(fd, call.line, &alen);
    while (answer && http_next_step(&call, answer, alen, body_cap)) { /* a compiled language: now its run */
        free(answer);
        answer = vivd_roundtrip(fd, call.line, &alen);
    }
    bool is_start = strcmp(path, "/start_runtime") == 0, is_delete = strcmp(path, "/delete_runtime") == 0;
    if (rt) runtime_release(rt, !answer || is_delete); /* a broken connection took its session with it */
    else if (is_start && answer) {
        char *id = opened_session(answer, alen);
        if (!id || !runtime_add(id, fd)) close(fd);
        free(id);
    } else close(fd);
    int status = 502, retry = 0;
    char *out = answer ? http_answer(&call, path, answer, alen, &status, &retry)
                       : http_error_body(path, rt ? "session_lost: the session's connection to vivd broke; its state is gone"
                                                  : "vivd closed the connection without an answer");
    if (!answer && rt) status = 404;
    free(answer);
    http_call_free(&call);
    return reply(conn, status, out, retry);
}

/* Constant-time comparison of the Authorization header with the token. */
static bool authorized(struct MHD_Connection *conn) {
    if (!bearer[0]) return true;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    const char *t = h + 7;
    size_t a = strlen(t), b = strlen(bearer);
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < b; i++) diff |= (unsigned char)bearer[i] ^ (unsigned char)(i < a ? t[i] : 0);
    return diff == 0;
}

struct body {
    char *data;
    size_t len;
    bool too_large;
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)cls, (void)version;
    struct body *b = *con_cls;
    if (!b) {
        *con_cls = xcalloc(1, sizeof *b);
        return MHD_YES;
    }
    if (*upload_size) {
        if (!b->too_large && b->len + *upload_size <= body_cap) {
            b->data = xrealloc(b->data, b->len + *upload_size + 1);
            memcpy(b->data + b->len, upload, *upload_size);
            b->len += *upload_size;
        } else {
            b->too_large = true; /* read and drop the rest, then answer 413 */
            free(b->data);
            b->data = NULL, b->len = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (!authorized(conn)) return reply_error(conn, url, 401, "unauthorized: send Authorization: Bearer TOKEN");
    if (strcmp(url, "/health") == 0 || strcmp(url, "/v1/ping") == 0) return reply(conn, 200, xstrdup("{\"status\":\"ok\"}"), 0);
    if (strcmp(method, "POST") != 0) return reply_error(conn, url, 405, "use POST");
    if (b->too_large) return reply_error(conn, url, 413, "the body is larger than vivd accepts (--max-line-bytes)");
    return serve_call(conn, url, b->data ? b->data : "", b->len);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)conn, (void)toe;
    struct body *b = *con_cls;
    if (b) free(b->data);
    free(b);
    *con_cls = NULL;
}

int http_front_main(int listen_fd, const char *socket_path, const char *token, size_t max_body) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    sock_path = socket_path, bearer = token, body_cap = max_body;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL); /* the threads inherit it; sigwait below takes them */
    signal(SIGPIPE, SIG_IGN);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_request, NULL,
        MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CLIENT_TIMEOUT_S,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)512, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "vivd: --http: libmicrohttpd did not start\n");
        return 1;
    }
    int sig;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    return 0;
}
