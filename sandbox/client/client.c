/*
 * client.c - see client.h.
 *
 * State: an output buffer of request lines, an input buffer of partial
 * response lines, a list of pending requests (handle, deadline) and a list
 * of completed responses not yet handed out. viv_next() flushes, reads,
 * parses complete lines, times out overdue requests, and returns the oldest
 * completion.
 */
#define _GNU_SOURCE
#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../base/json_text.h"
#include "../jail/job_files.h"
#include "../base/json_writer.h"
#include "../base/util.h"

#define MAX_RESPONSE_LINE (256u << 20)

struct pending {
    long handle;
    double deadline;
    struct pending *next;
};

struct done {
    struct viv_response *r;
    struct done *next;
};

struct viv_client {
    int fd;
    bool broken;
    long next_handle, margin_ms;
    char *out;
    size_t out_len, out_off;
    char *in;
    size_t in_len, in_cap;
    struct pending *pending;
    int npending;
    struct done *done_head, *done_tail;
};

const char *viv_default_socket(void) {
    static char path[256];
    const char *env = getenv("VIV_SOCKET"), *xdg = getenv("XDG_RUNTIME_DIR");
    if (env && *env) return env;
    if (xdg && *xdg) snprintf(path, sizeof path, "%s/vivd.sock", xdg);
    else snprintf(path, sizeof path, "/tmp/vivd-%u.sock", (unsigned)getuid());
    return path;
}

static struct viv_client *client_new(int fd) {
    struct viv_client *c = xcalloc(1, sizeof *c);
    c->fd = fd;
    c->next_handle = 1;
    c->margin_ms = 5000;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return c;
}

struct viv_client *viv_connect(const char *path, char *err, size_t errlen) {
    if (!path) path = viv_default_socket();
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "%s: socket path too long", path);
        return NULL;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        snprintf(err, errlen, "connect %s: %s (is vivd running? start it with: viv sandbox --socket %s)", path,
                 strerror(errno), path);
        if (fd >= 0) close(fd);
        return NULL;
    }
    return client_new(fd);
}

/* connect() that gives up after timeout_ms (a host that is down may not
 * answer at all, and the kernel's own limit is minutes). */
static int connect_within(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms) {
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int rc = connect(fd, sa, len);
    if (rc != 0 && errno == EINPROGRESS) {
        struct pollfd p = {fd, POLLOUT, 0};
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (poll(&p, 1, timeout_ms) != 1) errno = ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) rc = 0;
        else errno = soerr ? soerr : ECONNREFUSED;
    }
    fcntl(fd, F_SETFL, fl);
    return rc;
}

struct viv_client *viv_connect_tcp(const char *addr, const char *token, char *err, size_t errlen) {
    char host[64];
    const char *colon = strrchr(addr, ':');
    long port;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (!colon || (size_t)(colon - addr) >= sizeof host || parse_long(colon + 1, 1, 65535, &port)) {
        snprintf(err, errlen, "%s: expected HOST:PORT", addr);
        return NULL;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        /* a name (a cluster's node names): its first IPv4 address */
        struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
        int gai = getaddrinfo(host, NULL, &hints, &ai);
        if (gai != 0 || !ai) {
            snprintf(err, errlen, "%s: unknown host (%s)", host, gai ? gai_strerror(gai) : "no IPv4 address");
            return NULL;
        }
        sa.sin_addr = ((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        freeaddrinfo(ai);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect_within(fd, (struct sockaddr *)&sa, sizeof sa, 3000) != 0) {
        snprintf(err, errlen, "connect %s: %s", addr, strerror(errno));
        if (fd >= 0) close(fd);
        return NULL;
    }
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "token"), jw_cstring(&w, token);
    jw_object_end(&w);
    char *line = jw_finish(&w);
    char *full = xasprintf("%s\n", line);
    free(line);
    int rc = write_all(fd, full, strlen(full));
    free(full);
    char reply[256];
    size_t n = 0;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (rc == 0 && n < sizeof reply - 1) {
        ssize_t r = read(fd, reply + n, 1);
        if (r <= 0) break;
        if (reply[n++] == '\n') break;
    }
    reply[n] = 0;
    if (rc != 0 || !strstr(reply, "\"ok\":true")) {
        snprintf(err, errlen, "%s: token refused", addr);
        close(fd);
        return NULL;
    }
    return client_new(fd);
}

void viv_set_deadline_margin(struct viv_client *c, long margin_ms) { c->margin_ms = margin_ms; }
int viv_client_fd(const struct viv_client *c) { return c->fd; }
int viv_pending(const struct viv_client *c) { return c->npending; }
bool viv_drained(const struct viv_client *c) { return c->npending == 0 && !c->done_head; }
bool viv_wants_write(const struct viv_client *c) { return !c->broken && c->out_len > c->out_off; }

static long queue_request(struct viv_client *c, struct json_writer *w, long timeout_ms) {
    char *obj = jw_finish(w);
    if (c->broken) {
        free(obj);
        return -1;
    }
    size_t n = strlen(obj);
    c->out = xrealloc(c->out, c->out_len + n + 1);
    memcpy(c->out + c->out_len, obj, n);
    c->out[c->out_len + n] = '\n';
    c->out_len += n + 1;
    free(obj);
    struct pending *p = xcalloc(1, sizeof *p);
    p->handle = c->next_handle - 1;
    p->deadline = timeout_ms > 0 ? now_ms() + (double)(timeout_ms + c->margin_ms) : 1e300;
    p->next = c->pending;
    c->pending = p;
    c->npending++;
    return p->handle;
}

/* Every request starts {"id":N,"op":OP; the caller adds fields and closes it. */
static void begin_request(struct viv_client *c, struct json_writer *w, const char *op) {
    jw_init(w);
    jw_object_begin(w);
    jw_key(w, "id"), jw_int(w, c->next_handle++);
    jw_key(w, "op"), jw_cstring(w, op);
}

/* An exec's code and deadline; its client-side deadline (no timeout given:
 * the policy default applies, so wait at most an hour). */
static long finish_exec(struct viv_client *c, struct json_writer *w, const char *code, size_t code_len,
                        long timeout_ms) {
    jw_key(w, "code"), jw_string(w, code, code_len);
    if (timeout_ms > 0) jw_key(w, "timeout_ms"), jw_int(w, timeout_ms);
    jw_object_end(w);
    return queue_request(c, w, timeout_ms > 0 ? timeout_ms : 3600000);
}

long viv_submit_exec(struct viv_client *c, const char *tool, const char *code, size_t code_len,
                     long timeout_ms) {
    struct json_writer w;
    begin_request(c, &w, "exec");
    jw_key(&w, "tool"), jw_cstring(&w, tool);
    return finish_exec(c, &w, code, code_len, timeout_ms);
}

long viv_submit_exec_io(struct viv_client *c, const char *tool, const char *code, size_t code_len,
                        long timeout_ms, const struct viv_exec_io *io) {
    struct json_writer w;
    begin_request(c, &w, "exec");
    jw_key(&w, "tool"), jw_cstring(&w, tool);
    if (io && io->stdin_data) jw_key(&w, "stdin"), jw_string(&w, io->stdin_data, io->stdin_len);
    if (io && io->nfiles > 0) {
        jw_key(&w, "files"), jw_object_begin(&w);
        for (int i = 0; i < io->nfiles; i++) {
            char *b64 = base64_encode(io->files[i].data, io->files[i].len);
            jw_key(&w, io->files[i].name), jw_cstring(&w, b64);
            free(b64);
        }
        jw_object_end(&w);
    }
    if (io && io->nfetch > 0) {
        jw_key(&w, "fetch_files"), jw_array_begin(&w);
        for (int i = 0; i < io->nfetch; i++) jw_cstring(&w, io->fetch[i]);
        jw_array_end(&w);
    }
    return finish_exec(c, &w, code, code_len, timeout_ms);
}

long viv_submit_op(struct viv_client *c, const char *op) {
    struct json_writer w;
    begin_request(c, &w, op);
    jw_object_end(&w);
    return queue_request(c, &w, 60000);
}

long viv_submit_session_open(struct viv_client *c, const char *tool) {
    struct json_writer w;
    begin_request(c, &w, "session_open");
    jw_key(&w, "tool"), jw_cstring(&w, tool);
    jw_object_end(&w);
    return queue_request(c, &w, 60000);
}

long viv_submit_session_exec(struct viv_client *c, const char *session, const char *code, size_t code_len,
                             long timeout_ms) {
    struct json_writer w;
    begin_request(c, &w, "exec");
    jw_key(&w, "session"), jw_cstring(&w, session);
    return finish_exec(c, &w, code, code_len, timeout_ms);
}

long viv_submit_session_close(struct viv_client *c, const char *session) {
    struct json_writer w;
    begin_request(c, &w, "session_close");
    jw_key(&w, "session"), jw_cstring(&w, session);
    jw_object_end(&w);
    return queue_request(c, &w, 60000);
}

static void complete(struct viv_client *c, struct viv_response *r) {
    long handle = r->handle;
    struct pending **pp = &c->pending;
    while (*pp && (*pp)->handle != handle) pp = &(*pp)->next;
    if (!*pp) { /* not ours (or already timed out locally): drop it */
        viv_response_free(r);
        return;
    }
    struct pending *p = *pp;
    *pp = p->next;
    free(p);
    c->npending--;
    struct done *d = xcalloc(1, sizeof *d);
    d->r = r;
    if (c->done_tail) c->done_tail->next = d;
    else c->done_head = d;
    c->done_tail = d;
}

/* The member `key` of the response line, decoded whole ("" if absent). */
static void whole_text(const char *line, size_t len, const char *key, char **out, size_t *out_len) {
    if (line && json_member_text(line, len, key, out, out_len) == 1) return;
    *out = xstrdup("");
    *out_len = 0;
}

static struct viv_response *response_new(cJSON *json, const char *line, size_t len, bool local) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(json, "id");
    struct viv_response *r = xcalloc(1, sizeof *r);
    r->handle = cJSON_IsNumber(id) ? (long)id->valuedouble : 0;
    r->json = json;
    r->local = local;
    whole_text(line, len, "stdout", &r->out, &r->out_len);
    whole_text(line, len, "stderr", &r->err, &r->err_len);
    return r;
}

struct viv_response *viv_response_parse(const char *line, size_t len) {
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return NULL;
    }
    return response_new(o, line, len, false);
}

static struct viv_response *local_error(long handle, const char *code, const char *message) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)handle);
    cJSON_AddFalseToObject(o, "ok");
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", message);
    return response_new(o, NULL, 0, true);
}

static void fail_all(struct viv_client *c, const char *code, const char *message) {
    c->broken = true;
    while (c->pending) complete(c, local_error(c->pending->handle, code, message));
}

void viv_abort(struct viv_client *c, const char *why) {
    if (c->broken) return;
    shutdown(c->fd, SHUT_RDWR);
    fail_all(c, "disconnected", why);
}

static void handle_lines(struct viv_client *c) {
    size_t start = 0;
    for (;;) {
        char *nl = memchr(c->in + start, '\n', c->in_len - start);
        if (!nl) break;
        size_t n = (size_t)(nl - (c->in + start));
        struct viv_response *r = viv_response_parse(c->in + start, n);
        if (r && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(r->json, "id"))) complete(c, r);
        else viv_response_free(r); /* an error about a line we could not have sent: ignore */
        start += n + 1;
    }
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
}

/* One round of I/O, waiting up to wait_ms. */
static void drive(struct viv_client *c, int wait_ms) {
    if (c->broken) return;
    struct pollfd p = {c->fd, POLLIN | (c->out_len > c->out_off ? POLLOUT : 0), 0};
    if (poll(&p, 1, wait_ms) < 0) return;
    if (p.revents & POLLOUT) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) c->out_off += (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EINTR) return fail_all(c, "disconnected", "vivd closed the connection");
        if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        for (;;) {
            if (c->in_cap - c->in_len < 65536) {
                c->in_cap = c->in_cap ? c->in_cap * 2 : 131072;
                c->in = xrealloc(c->in, c->in_cap);
            }
            ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
            if (r > 0) {
                c->in_len += (size_t)r;
                if (c->in_len > MAX_RESPONSE_LINE) return fail_all(c, "disconnected", "response line too long");
                continue;
            }
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
            handle_lines(c);
            return fail_all(c, "disconnected", "vivd closed the connection");
        }
        handle_lines(c);
    }
}

static void expire(struct viv_client *c) {
    double now = now_ms();
    for (struct pending *p = c->pending, *next; p; p = next) {
        next = p->next;
        if (now >= p->deadline) complete(c, local_error(p->handle, "timeout", "no answer from vivd before the request's deadline"));
    }
}

static struct viv_response *take(struct viv_client *c, long handle) {
    for (struct done **dd = &c->done_head, *prev = NULL; *dd; prev = *dd, dd = &(*dd)->next) {
        struct done *d = *dd;
        if (handle && d->r->handle != handle) continue;
        *dd = d->next;
        if (c->done_tail == d) c->done_tail = prev;
        struct viv_response *r = d->r;
        free(d);
        return r;
    }
    return NULL;
}

static struct viv_response *wait_for(struct viv_client *c, long handle, int timeout_ms) {
    double end = timeout_ms < 0 ? 1e300 : now_ms() + timeout_ms;
    bool drove = false;
    for (;;) {
        struct viv_response *r = take(c, handle);
        if (r) return r;
        if (c->npending == 0) return NULL;
        double now = now_ms();
        if (now >= end) {
            /* out of time, but do one round of I/O without waiting first, so
             * that viv_next(c, 0) sends what was queued and takes what has
             * arrived (a caller busy elsewhere polls this way) */
            if (drove) return NULL;
            drive(c, 0);
            expire(c);
            drove = true;
            continue;
        }
        drove = true;
        double next_deadline = end;
        for (struct pending *p = c->pending; p; p = p->next)
            if (p->deadline < next_deadline) next_deadline = p->deadline;
        double wait = next_deadline - now;
        drive(c, wait > 1000 ? 1000 : (int)wait + 1);
        expire(c);
    }
}

struct viv_response *viv_next(struct viv_client *c, int timeout_ms) { return wait_for(c, 0, timeout_ms); }
struct viv_response *viv_wait(struct viv_client *c, long handle, int timeout_ms) {
    return wait_for(c, handle, timeout_ms);
}

void viv_response_free(struct viv_response *r) {
    if (!r) return;
    cJSON_Delete(r->json);
    free(r->out), free(r->err);
    free(r);
}

void viv_close(struct viv_client *c) {
    if (!c) return;
    close(c->fd);
    while (c->pending) {
        struct pending *p = c->pending;
        c->pending = p->next;
        free(p);
    }
    struct viv_response *r;
    while ((r = take(c, 0))) viv_response_free(r);
    free(c->out);
    free(c->in);
    free(c);
}
