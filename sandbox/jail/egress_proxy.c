/*
 * egress_proxy.c - the proxy process of one job (see egress.h).
 *
 * One thread around poll(): the listening socket the jail handed out, a
 * control pipe whose hang-up means the job has ended, and for each
 * connection the job's side and the upstream side. A connection goes
 *   HEAD      read the request head (EGRESS_HEAD_MAX bytes within header_ms)
 *   BODY      record/replay only: read the Content-Length body
 *   CONNECT   a non-blocking connect to the one address that was checked
 *   RELAY     bytes both ways through two bounded buffers
 *   ANSWER    our own short answer (403, 502, ...) is sent; input is
 *             discarded until the job closes or a second passes
 * and ends with one log line. Every limit is the job's own: at most
 * max_connections open (more are answered 503 at once), max_bytes over the
 * job's life (then every connection closes and new ones get 503),
 * connection_ms per connection. Memory is bounded by
 * max_connections x (head + two relay buffers).
 *
 * Names are resolved here, on the host, with getaddrinfo; the first
 * address that egress_address_allowed() accepts is the one connected to.
 * The lookup blocks this job's proxy only.
 *
 * Record/replay (egress_settings): plain-HTTP requests are keyed by method,
 * absolute URL and body; their whole answer is kept in one file named by a
 * hash of the key, with the key inside, compared on lookup (a hash collision
 * is a miss, never a wrong answer). CONNECT is tunnelled TLS we never
 * decrypt: recording passes it through unrecorded, replay refuses it (502).
 */
#define _GNU_SOURCE
#include "egress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_head.h"
#include "../base/json_writer.h"
#include "../base/util.h"

enum { RELAY_BUF = 65536, LINGER_MS = 1000, ACCEPT_BURST = 64 };
/* Refusals logged one line each per job; past this they are counted and
 * the count is logged when the job ends, so a connect loop cannot fill the
 * disk. Allowed connections are always logged. */
enum { LOG_REFUSALS_MAX = 1000 };
#define RECORD_MAGIC "viv-egress-record 1\n"

enum state { ST_HEAD, ST_BODY, ST_CONNECT, ST_RELAY, ST_ANSWER };

struct buf {
    char *p;
    size_t off, len, cap; /* bytes [off, len) wait to be written */
};

struct conn {
    int cfd, ufd;
    enum state st;
    char head[EGRESS_HEAD_MAX];
    size_t head_len;
    struct http_head h;
    char name[256];
    int family;
    unsigned char addr[16];
    char addr_text[INET6_ADDRSTRLEN];
    char *body; /* record/replay: the request body */
    size_t body_len, body_need;
    struct buf up, down; /* job -> upstream, upstream -> job */
    bool c_eof, u_eof, up_shut;
    double t0, head_deadline, deadline;
    long long bytes_up, bytes_down;
    bool parsed, allowed, logged;
    const char *reason;
    char detail[200];
    bool recording; /* false once recording this answer failed or gave up */
    bool released;  /* the held answer went to the job's side */
    struct buf rec; /* the answer as it came, held while recording */
    struct conn *next;
};

static const struct policy_network *net;
static struct conn *conns;
static int nconns; /* open ones (conn_close counts them out) */
static long long total_bytes;
static bool budget_spent;
static long refusals_logged, refusals_unlogged;

/* ---------------------------------------------------------------- buffers */

static void buf_reserve(struct buf *b, size_t more) {
    if (b->len + more <= b->cap) return;
    if (b->off > 0) { /* compact first */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off, b->off = 0;
        if (b->len + more <= b->cap) return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

static void buf_add(struct buf *b, const void *data, size_t n) {
    buf_reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static size_t buf_pending(const struct buf *b) { return b->len - b->off; }

static void buf_free(struct buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Write what is pending; false when the peer is gone. */
static bool buf_flush(struct buf *b, int fd) {
    while (buf_pending(b)) {
        ssize_t w = send(fd, b->p + b->off, buf_pending(b), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
        if (w <= 0) return false;
        b->off += (size_t)w;
    }
    b->off = b->len = 0;
    return true;
}

/* ---------------------------------------------------------------- log and end */

static void conn_log(struct conn *c) {
    if (c->logged) return;
    c->logged = true;
    if (!c->allowed && refusals_logged++ >= LOG_REFUSALS_MAX) {
        refusals_unlogged++;
        return;
    }
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "method"), c->parsed ? jw_cstring(&w, c->h.method) : jw_null(&w);
    jw_key(&w, "host"), c->parsed ? jw_cstring(&w, c->h.host) : jw_null(&w);
    jw_key(&w, "port"), c->parsed ? jw_int(&w, c->h.port) : jw_null(&w);
    jw_key(&w, "addr"), c->addr_text[0] ? jw_cstring(&w, c->addr_text) : jw_null(&w);
    jw_key(&w, "allowed"), jw_bool(&w, c->allowed);
    jw_key(&w, "reason"), jw_cstring(&w, c->reason ? c->reason : "closed");
    if (c->detail[0]) jw_key(&w, "detail"), jw_cstring(&w, c->detail);
    jw_key(&w, "bytes_up"), jw_int(&w, c->bytes_up);
    jw_key(&w, "bytes_down"), jw_int(&w, c->bytes_down);
    jw_key(&w, "ms"), jw_double(&w, now_ms() - c->t0, 1);
    const struct egress_settings *s = egress_settings();
    if (s->record_dir) jw_key(&w, "mode"), jw_cstring(&w, "record"), jw_key(&w, "recorded"), jw_bool(&w, c->recording);
    if (s->replay_dir) jw_key(&w, "mode"), jw_cstring(&w, "replay");
    jw_object_end(&w);
    char *obj = jw_finish(&w);
    obj[strlen(obj) - 1] = 0; /* egress_log_write wants the fields: drop the braces */
    egress_log_write(obj + 1);
    free(obj);
}

static void conn_close(struct conn *c, const char *reason) {
    if (reason && !c->reason) c->reason = reason;
    if (c->cfd >= 0) nconns--;
    conn_log(c);
    if (c->cfd >= 0) close(c->cfd);
    if (c->ufd >= 0) close(c->ufd);
    c->cfd = c->ufd = -1;
    buf_free(&c->up);
    buf_free(&c->down);
    buf_free(&c->rec);
    free(c->body);
    c->body = NULL;
}

/* Our own answer to the job: status, a one-line body, then close. */
static void conn_answer(struct conn *c, int status, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void conn_answer(struct conn *c, int status, const char *reason, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof c->detail, fmt, ap);
    va_end(ap);
    c->reason = reason;
    static const struct {
        int code;
        const char *text;
    } texts[] = {{400, "Bad Request"}, {403, "Forbidden"}, {408, "Request Timeout"}, {413, "Content Too Large"},
                 {431, "Request Header Fields Too Large"}, {501, "Not Implemented"}, {502, "Bad Gateway"},
                 {503, "Service Unavailable"}, {504, "Gateway Timeout"}};
    const char *text = "Error";
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        if (texts[i].code == status) text = texts[i].text;
    char body[300];
    int bl = snprintf(body, sizeof body, "vivarium egress: %s: %s\n", reason, c->detail);
    char *msg = xasprintf("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n"
                          "X-Vivarium-Egress: %s\r\n\r\n%s",
                          status, text, bl, reason, body);
    if (c->ufd >= 0) close(c->ufd);
    c->ufd = -1;
    c->down.off = c->down.len = 0;
    buf_add(&c->down, msg, strlen(msg));
    free(msg);
    c->st = ST_ANSWER;
    c->u_eof = true;
    c->deadline = now_ms() + LINGER_MS;
    if (!buf_flush(&c->down, c->cfd)) conn_close(c, NULL);
    else if (!buf_pending(&c->down)) shutdown(c->cfd, SHUT_WR);
}

static void spend(struct conn *c, size_t n, bool up);

/* ---------------------------------------------------------------- record/replay */

static uint64_t fnv1a(const char *s, size_t n, uint64_t h) {
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return h;
}

/* "METHOD http://host:port/path\n" + body */
static char *record_key(const struct conn *c, size_t *len) {
    char *line = xasprintf("%s http://%s%s%s:%d%.*s\n", c->h.method, c->family == AF_INET6 ? "[" : "",
                           c->family ? c->addr_text : c->name, c->family == AF_INET6 ? "]" : "", c->h.port,
                           (int)c->h.path_len, c->head + c->h.path);
    size_t ll = strlen(line);
    char *key = xmalloc(ll + c->body_len + 1);
    memcpy(key, line, ll);
    if (c->body_len) memcpy(key + ll, c->body, c->body_len);
    free(line);
    *len = ll + c->body_len;
    return key;
}

static char *record_path(const char *dir, const char *key, size_t len) {
    return xasprintf("%s/%016llx%016llx.rec", dir, (unsigned long long)fnv1a(key, len, 0xcbf29ce484222325ULL),
                     (unsigned long long)fnv1a(key, len, 0x84222325cbf29ce4ULL));
}

static void record_save(struct conn *c) {
    size_t klen;
    char *key = record_key(c, &klen);
    char *path = record_path(egress_settings()->record_dir, key, klen);
    char hdr[64];
    int hl = snprintf(hdr, sizeof hdr, RECORD_MAGIC "%zu\n", klen);
    size_t total = (size_t)hl + klen + buf_pending(&c->rec);
    char *data = xmalloc(total);
    memcpy(data, hdr, (size_t)hl);
    memcpy(data + hl, key, klen);
    memcpy(data + hl + klen, c->rec.p + c->rec.off, buf_pending(&c->rec));
    if (write_file_atomic(path, data, total) != 0) {
        c->recording = false;
        snprintf(c->detail, sizeof c->detail, "not recorded: %s", strerror(errno));
    }
    free(data);
    free(path);
    free(key);
}

/* Serve a request from the replay directory: the recorded answer, or 502. */
static void replay_answer(struct conn *c) {
    size_t klen, flen = 0;
    char *key = record_key(c, &klen);
    char *path = record_path(egress_settings()->replay_dir, key, klen);
    char err[256] = "";
    char hdr[64];
    int hl = snprintf(hdr, sizeof hdr, RECORD_MAGIC "%zu\n", klen);
    /* an answer counts against the job's byte budget as a live one would */
    long long left = net->max_bytes - total_bytes;
    char *file = left > 0 ? read_file(path, (size_t)hl + klen + (size_t)left, &flen, err, sizeof err) : NULL;
    bool hit = file && flen >= (size_t)hl + klen && memcmp(file, hdr, (size_t)hl) == 0 &&
               memcmp(file + hl, key, klen) == 0;
    free(path);
    free(key);
    if (!hit) {
        free(file);
        conn_answer(c, 502, "replay_miss", "no recorded answer for %s http://%s:%d%.*s (body %zu bytes)", c->h.method,
                    c->h.host, c->h.port, (int)c->h.path_len, c->head + c->h.path, c->body_len);
        return;
    }
    c->allowed = true;
    c->reason = "replayed";
    buf_add(&c->down, file + hl + klen, flen - (size_t)hl - klen);
    spend(c, flen - (size_t)hl - klen, false);
    free(file);
    c->u_eof = true;
    c->st = ST_RELAY;
}

/* ---------------------------------------------------------------- deciding */

/* Resolve (unless it is an address) and pick the first allowed address. */
static bool choose_address(struct conn *c, struct sockaddr_storage *sa, socklen_t *salen) {
    const char *why = NULL;
    memset(sa, 0, sizeof *sa);
    if (c->family) {
        if (!egress_address_allowed(net, c->family, c->addr, c->h.port, &why)) {
            conn_answer(c, 403, "address_refused", "%s is %s and not listed as an address", c->addr_text, why);
            return false;
        }
    } else {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
        int rc = getaddrinfo(c->name, NULL, &hints, &res);
        if (rc != 0) {
            conn_answer(c, 502, "resolve_failed", "%s: %s", c->name, gai_strerror(rc));
            return false;
        }
        bool found = false;
        char first_bad[INET6_ADDRSTRLEN + 40] = "";
        for (struct addrinfo *a = res; a && !found; a = a->ai_next) {
            unsigned char bytes[16] = {0};
            int fam = a->ai_family;
            if (fam == AF_INET) memcpy(bytes, &((struct sockaddr_in *)a->ai_addr)->sin_addr, 4);
            else if (fam == AF_INET6) memcpy(bytes, &((struct sockaddr_in6 *)a->ai_addr)->sin6_addr, 16);
            else continue;
            char text[INET6_ADDRSTRLEN];
            inet_ntop(fam, bytes, text, sizeof text);
            if (egress_address_allowed(net, fam, bytes, c->h.port, &why)) {
                found = true;
                c->family = fam;
                memcpy(c->addr, bytes, 16);
                snprintf(c->addr_text, sizeof c->addr_text, "%s", text);
            } else if (!first_bad[0]) {
                snprintf(first_bad, sizeof first_bad, "%s (%s)", text, why);
            }
        }
        freeaddrinfo(res);
        if (!found) {
            conn_answer(c, 403, "address_refused", "%s resolves to %s, not listed as an address", c->name,
                        first_bad[0] ? first_bad : "nothing usable");
            return false;
        }
        c->family = c->family ? c->family : AF_INET;
    }
    if (c->family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)sa;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)c->h.port);
        memcpy(&in->sin_addr, c->addr, 4);
        *salen = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)c->h.port);
        memcpy(&in6->sin6_addr, c->addr, 16);
        *salen = sizeof *in6;
    }
    return true;
}

static void start_connect(struct conn *c) {
    struct sockaddr_storage sa;
    socklen_t salen = 0;
    if (!choose_address(c, &sa, &salen)) return;
    c->ufd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->ufd < 0) {
        conn_answer(c, 502, "connect_failed", "socket: %s", strerror(errno));
        return;
    }
    if (connect(c->ufd, (struct sockaddr *)&sa, salen) != 0 && errno != EINPROGRESS) {
        conn_answer(c, 502, "connect_failed", "%s port %d: %s", c->addr_text, c->h.port, strerror(errno));
        return;
    }
    c->st = ST_CONNECT;
}

/* The upstream is connected: tell a CONNECT client, or forward the head. */
static void connected(struct conn *c) {
    int e = 0;
    socklen_t el = sizeof e;
    if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &e, &el) != 0) e = errno;
    if (e) {
        conn_answer(c, 502, "connect_failed", "%s port %d: %s", c->addr_text, c->h.port, strerror(e));
        return;
    }
    c->allowed = true;
    c->st = ST_RELAY;
    const char *extra = c->head + c->h.head_len;
    size_t extra_len = c->head_len - c->h.head_len;
    if (c->h.connect) {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        buf_add(&c->down, ok, sizeof ok - 1);
        if (extra_len) buf_add(&c->up, extra, extra_len);
        return;
    }
    /* origin form, without hop-by-hop proxy headers; one request per connection */
    char *line = xasprintf("%s %.*s HTTP/1.%d\r\n", c->h.method, (int)c->h.path_len, c->head + c->h.path,
                           c->h.minor_version);
    buf_add(&c->up, line, strlen(line));
    free(line);
    for (int i = 0; i < c->h.nheaders; i++) {
        const struct http_header *hd = &c->h.headers[i];
        if (http_header_is(c->head, hd, "proxy-connection") || http_header_is(c->head, hd, "proxy-authorization") ||
            http_header_is(c->head, hd, "connection") || http_header_is(c->head, hd, "keep-alive"))
            continue;
        buf_add(&c->up, c->head + hd->name, hd->value + hd->value_len - hd->name);
        buf_add(&c->up, "\r\n", 2);
    }
    buf_add(&c->up, "Connection: close\r\n\r\n", 21);
    if (c->body) buf_add(&c->up, c->body, c->body_len);
    else if (extra_len) buf_add(&c->up, extra, extra_len);
}

/* The head is in: check it against the policy and go on. */
static void decide(struct conn *c) {
    char err[160];
    const struct egress_settings *s = egress_settings();
    if (http_head_parse(c->head, c->h.head_len, &c->h, err, sizeof err) != 0) {
        size_t keep = c->h.head_len;
        memset(&c->h, 0, sizeof c->h);
        c->h.head_len = keep;
        conn_answer(c, 400, "bad_request", "%s", err);
        return;
    }
    c->parsed = true;
    if (egress_host_normalize(c->h.host, c->name, sizeof c->name, &c->family, c->addr) != 0) {
        conn_answer(c, 400, "bad_request", "'%s' is neither a host name nor an IP address", c->h.host);
        return;
    }
    if (c->family) inet_ntop(c->family, c->addr, c->addr_text, sizeof c->addr_text);
    if (!egress_match(net, c->name, c->family, c->addr, c->h.port)) {
        conn_answer(c, 403, "not_listed", "%s port %d is not in the policy's network.egress", c->h.host, c->h.port);
        return;
    }
    if (budget_spent) {
        conn_answer(c, 503, "byte_cap", "the job's %ld bytes of egress are spent", net->max_bytes);
        return;
    }
    bool keyed = !c->h.connect && (s->record_dir || s->replay_dir);
    if (c->h.connect && s->replay_dir) {
        conn_answer(c, 502, "replay_https", "replay serves plain-HTTP answers only; HTTPS through CONNECT cannot be replayed");
        return;
    }
    if (keyed) {
        if (c->h.chunked) {
            conn_answer(c, 501, "bad_request", "record/replay keys need a Content-Length body, not chunked");
            return;
        }
        long long need = c->h.content_length > 0 ? c->h.content_length : 0;
        if (need > EGRESS_BODY_MAX) {
            conn_answer(c, 413, "bad_request", "a body over %d bytes cannot be recorded or replayed", EGRESS_BODY_MAX);
            return;
        }
        c->body_need = (size_t)need;
        c->body = xmalloc(c->body_need + 1);
        size_t extra = c->head_len - c->h.head_len;
        if (extra > c->body_need) extra = c->body_need; /* a pipelined second request is not forwarded */
        memcpy(c->body, c->head + c->h.head_len, extra);
        c->body_len = extra;
        c->st = ST_BODY;
        c->recording = s->record_dir != NULL;
        if (c->body_len < c->body_need) return;
    }
    if (s->replay_dir && keyed) {
        replay_answer(c);
        return;
    }
    start_connect(c);
}

/* ---------------------------------------------------------------- reading */

static void spend(struct conn *c, size_t n, bool up) {
    if (up) c->bytes_up += (long long)n;
    else c->bytes_down += (long long)n;
    total_bytes += (long long)n;
    if (total_bytes > net->max_bytes) budget_spent = true;
}

static void read_head(struct conn *c) {
    ssize_t r = recv(c->cfd, c->head + c->head_len, sizeof c->head - c->head_len, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0) {
        snprintf(c->detail, sizeof c->detail, "closed before a whole request head");
        conn_close(c, "bad_request");
        return;
    }
    size_t before = c->head_len;
    c->head_len += (size_t)r;
    spend(c, (size_t)r, true);
    size_t from = before > 3 ? before - 3 : 0;
    size_t end = http_head_end(c->head + from, c->head_len - from);
    if (end) {
        c->h.head_len = from + end;
        decide(c);
    } else if (c->head_len == sizeof c->head) {
        conn_answer(c, 431, "header_too_large", "a request head over %d bytes", EGRESS_HEAD_MAX);
    }
}

static void read_body(struct conn *c) {
    ssize_t r = recv(c->cfd, c->body + c->body_len, c->body_need - c->body_len, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0) {
        snprintf(c->detail, sizeof c->detail, "closed before the whole request body");
        conn_close(c, "bad_request");
        return;
    }
    c->body_len += (size_t)r;
    spend(c, (size_t)r, true);
    if (c->body_len < c->body_need) return;
    if (egress_settings()->replay_dir) replay_answer(c);
    else start_connect(c);
}

/* Hand the held answer to the job: what record_save kept, or what was
 * held when recording gave up. */
static void release_held(struct conn *c) {
    buf_add(&c->down, c->rec.p + c->rec.off, buf_pending(&c->rec));
    buf_free(&c->rec);
    c->released = true;
}

/* Move bytes from fd into b (at most RELAY_BUF pending). While recording,
 * the upstream's answer is held whole in c->rec instead and reaches the
 * job only after it is saved (store and forward): whatever a job saw in
 * record mode is on disk before the job read a byte of it, so a job or
 * session that ends at once after its request cannot lose the record. */
static int relay_read(struct conn *c, int fd, struct buf *b, bool up) {
    bool hold = !up && c->recording && !c->released;
    if (hold) b = &c->rec;
    else if (buf_pending(b) >= RELAY_BUF) return 0;
    buf_reserve(b, RELAY_BUF);
    size_t room = hold ? RELAY_BUF : RELAY_BUF - buf_pending(b);
    ssize_t r = recv(fd, b->p + b->len, room, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (r <= 0) return -1;
    b->len += (size_t)r;
    spend(c, (size_t)r, up);
    if (hold && buf_pending(b) > EGRESS_RECORD_MAX) {
        c->recording = false;
        snprintf(c->detail, sizeof c->detail, "not recorded: the answer is over %d bytes", EGRESS_RECORD_MAX);
        release_held(c);
    }
    return 1;
}

/* ---------------------------------------------------------------- the loop */

/* At the cap: close the connections whose job side has already hung up
 * without a request (what a connect flood leaves behind), so that they do
 * not hold slots a real request needs. */
static void reap_abandoned(void) {
    for (struct conn *c = conns; c; c = c->next) {
        if (c->cfd < 0 || (c->st != ST_HEAD && c->st != ST_ANSWER)) continue;
        char b;
        ssize_t r = recv(c->cfd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            if (c->st == ST_HEAD) snprintf(c->detail, sizeof c->detail, "closed before a whole request head");
            conn_close(c, c->st == ST_HEAD ? "bad_request" : NULL);
        }
    }
}

static void accept_new(int lfd) {
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        struct conn *c = xcalloc(1, sizeof *c);
        c->cfd = fd, c->ufd = -1;
        c->t0 = now_ms();
        c->head_deadline = c->t0 + (double)net->header_ms;
        c->deadline = c->t0 + (double)net->connection_ms;
        if (nconns >= net->max_connections) reap_abandoned();
        c->next = conns, conns = c;
        nconns++;
        if (nconns > net->max_connections) {
            conn_answer(c, 503, "connection_cap", "the job has %ld connections open, the policy's max_connections",
                        net->max_connections);
            if (c->cfd >= 0) conn_close(c, NULL); /* no lingering for these: a flood must not pile up */
        } else if (budget_spent) {
            conn_answer(c, 503, "byte_cap", "the job's %ld bytes of egress are spent", net->max_bytes);
        }
    }
}

/* One connection's events; closes it when it is done. */
static void conn_step(struct conn *c, short cev, short uev, double now) {
    if (c->st == ST_HEAD && (cev & (POLLIN | POLLHUP | POLLERR))) read_head(c);
    else if (c->st == ST_BODY && (cev & (POLLIN | POLLHUP | POLLERR))) read_body(c);
    if (c->cfd < 0) return;
    if (c->st == ST_CONNECT && uev) connected(c);
    if (c->st == ST_ANSWER) {
        if (cev & (POLLIN | POLLHUP | POLLERR)) {
            char junk[4096];
            ssize_t r = recv(c->cfd, junk, sizeof junk, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return conn_close(c, NULL);
        }
        if (!buf_flush(&c->down, c->cfd)) return conn_close(c, NULL);
        if (!buf_pending(&c->down)) shutdown(c->cfd, SHUT_WR);
        if (now >= c->deadline) conn_close(c, NULL);
        return;
    }
    if (c->st != ST_RELAY) {
        if (c->st == ST_HEAD && now >= c->head_deadline)
            conn_answer(c, 408, "header_timeout", "no whole request head within %ld ms", net->header_ms);
        else if (now >= c->deadline)
            conn_answer(c, 504, "time_cap", "not connected within the policy's connection_ms (%ld ms)", net->connection_ms);
        return;
    }
    if ((cev & (POLLIN | POLLHUP | POLLERR)) && !c->c_eof && relay_read(c, c->cfd, &c->up, true) < 0) c->c_eof = true;
    if (c->ufd >= 0 && (uev & (POLLIN | POLLHUP | POLLERR)) && !c->u_eof && relay_read(c, c->ufd, &c->down, false) < 0)
        c->u_eof = true;
    if (c->ufd >= 0 && !buf_flush(&c->up, c->ufd)) return conn_close(c, "upstream_error");
    if (!buf_flush(&c->down, c->cfd)) return conn_close(c, "client_gone");
    if (c->c_eof && !buf_pending(&c->up) && c->ufd >= 0 && !c->up_shut) shutdown(c->ufd, SHUT_WR), c->up_shut = true;
    if (budget_spent) return conn_close(c, "byte_cap");
    if (c->u_eof && c->recording && !c->released) {
        record_save(c);
        release_held(c);
        if (!buf_flush(&c->down, c->cfd)) return conn_close(c, "client_gone");
    }
    if (c->u_eof && !buf_pending(&c->down)) {
        return conn_close(c, c->reason ? c->reason : "closed");
    }
    if (c->c_eof && c->ufd < 0) return conn_close(c, "client_gone");
    if (now >= c->deadline) {
        c->recording = false;
        conn_close(c, "time_cap");
    }
}

static void end_all(const char *reason) {
    for (struct conn *c = conns; c; c = c->next) {
        if (c->cfd < 0) continue;
        c->recording = false;
        conn_close(c, reason);
    }
}

void egress_proxy_main(int lfd, int ctl, const struct policy_network *n) {
    net = n;
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
    struct pollfd *fds = NULL;
    struct conn **owner = NULL;
    size_t cap = 0;
    for (;;) {
        size_t want = 2;
        for (struct conn *c = conns; c; c = c->next) want += 2;
        if (want > cap) {
            cap = want * 2;
            fds = xrealloc(fds, cap * sizeof *fds);
            owner = xrealloc(owner, cap * sizeof *owner);
        }
        size_t k = 0;
        fds[k++] = (struct pollfd){ctl, POLLIN, 0};
        fds[k++] = (struct pollfd){lfd, POLLIN, 0};
        double now = now_ms(), next = now + 60000;
        for (struct conn *c = conns; c; c = c->next) {
            short ce = 0, ue = 0;
            switch (c->st) {
            case ST_HEAD: case ST_BODY: ce = POLLIN; break;
            case ST_CONNECT: ue = POLLOUT; break;
            case ST_ANSWER: ce = (short)(POLLIN | (buf_pending(&c->down) ? POLLOUT : 0)); break;
            case ST_RELAY:
                if (!c->c_eof && buf_pending(&c->up) < RELAY_BUF) ce |= POLLIN;
                if (buf_pending(&c->down)) ce |= POLLOUT;
                if (c->ufd >= 0 && !c->u_eof && buf_pending(&c->down) < RELAY_BUF) ue |= POLLIN;
                if (c->ufd >= 0 && buf_pending(&c->up)) ue |= POLLOUT;
                break;
            }
            owner[k] = c, fds[k++] = (struct pollfd){c->cfd, ce, 0};
            owner[k] = c, fds[k++] = (struct pollfd){c->ufd, ue, 0};
            double d = c->st == ST_HEAD && c->head_deadline < c->deadline ? c->head_deadline : c->deadline;
            if (d < next) next = d;
        }
        int wait = (int)(next - now) + 1;
        if (wait < 0) wait = 0;
        if (poll(fds, (nfds_t)k, wait) < 0 && errno != EINTR) break;
        if (fds[0].revents) break; /* the job has ended (or its supervisor is gone) */
        now = now_ms();
        for (size_t i = 2; i < k; i += 2) {
            struct conn *c = owner[i];
            if (c->cfd >= 0) conn_step(c, fds[i].revents, c->ufd == fds[i + 1].fd ? fds[i + 1].revents : 0, now);
        }
        if (budget_spent) end_all("byte_cap");
        for (struct conn **pp = &conns; *pp;) { /* free the closed */
            struct conn *c = *pp;
            if (c->cfd < 0) {
                *pp = c->next;
                free(c);
            } else {
                pp = &c->next;
            }
        }
        if (fds[1].revents) accept_new(lfd);
    }
    end_all("job_ended");
    if (refusals_unlogged) {
        char fields[160];
        snprintf(fields, sizeof fields, "\"allowed\":false,\"reason\":\"refusals_not_logged\",\"count\":%ld", refusals_unlogged);
        egress_log_write(fields);
    }
    _exit(0);
}
