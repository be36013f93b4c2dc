/*
 * pool.c - several vivd hosts used as one sandbox (see pool.h).
 *
 * Each host has one client connection. The pool itself does no request
 * bookkeeping: a host's requests in flight are its client's pending count,
 * which is what placement reads. What the pool adds is the host's life:
 * connecting (with the token for TCP), learning its capacity from `stats`,
 * noticing that its connection broke, dropping the broken client once the
 * caller has taken every "disconnected" answer it produced, and reconnecting
 * with backoff while the other hosts carry the work.
 */
#define _GNU_SOURCE
#include "pool.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "../base/util.h"

#define BACKOFF_MIN_MS 500.0
#define BACKOFF_MAX_MS 30000.0

struct host {
    struct viv_pool_host pub;
    bool tcp;
    char target[160];           /* the socket path, or HOST:PORT */
    struct viv_client *c;       /* NULL while down and drained */
    double retry_at, backoff_ms;
};

struct viv_pool {
    struct host h[VIV_POOL_MAX_HOSTS];
    int n;
    char *token;
    FILE *log;
    int rr;                     /* where viv_pool_next starts looking (fairness between hosts) */
};

static void logf_(struct viv_pool *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct viv_pool *p, const char *fmt, ...) {
    if (!p->log) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(p->log, "sandbox: ");
    vfprintf(p->log, fmt, ap);
    fputc('\n', p->log);
    fflush(p->log);
    va_end(ap);
}

/* One address: its kind and target. 0 or -1 with err. */
static int parse_addr(const char *a, size_t len, bool *tcp, char *target, size_t tlen, char *err, size_t errlen) {
    char buf[256];
    if (len == 0) return fail_with(err, errlen, "an empty sandbox address (addresses are separated by commas)");
    if (len >= sizeof buf) return fail_with(err, errlen, "sandbox address too long: %.40s...", a);
    memcpy(buf, a, len);
    buf[len] = 0;
    const char *rest;
    if (!strncmp(buf, "tcp:", 4)) {
        rest = buf + 4;
        const char *colon = strrchr(rest, ':');
        long port;
        if (!colon || colon == rest || (size_t)(colon - rest) >= 64 || parse_long(colon + 1, 1, 65535, &port))
            return fail_with(err, errlen, "'%s': expected tcp:HOST:PORT (a port from 1 to 65535)", buf);
        *tcp = true;
    } else if (!strncmp(buf, "unix:", 5) || buf[0] == '/' || buf[0] == '.') {
        rest = buf[0] == '/' || buf[0] == '.' ? buf : buf + 5;
        if (!*rest) return fail_with(err, errlen, "'%s': expected unix:/PATH", buf);
        if (strlen(rest) >= sizeof ((struct sockaddr_un *)0)->sun_path)
            return fail_with(err, errlen, "'%s': socket path too long", buf);
        *tcp = false;
    } else {
        return fail_with(err, errlen, "'%s' is not a sandbox address (unix:/PATH, /PATH or tcp:HOST:PORT)", buf);
    }
    size_t rl = strlen(rest);
    if (rl >= tlen) return fail_with(err, errlen, "'%s': too long", buf);
    memcpy(target, rest, rl + 1);
    return 0;
}

/* Split the list into hosts (p may be NULL: checking only). */
static int parse_spec(const char *spec, struct viv_pool *p, bool *needs_token, char *err, size_t errlen) {
    int n = 0;
    *needs_token = false;
    if (!spec || !*spec) return fail_with(err, errlen, "no sandbox address given");
    for (const char *s = spec;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (n == VIV_POOL_MAX_HOSTS) return fail_with(err, errlen, "more than %d sandbox hosts", VIV_POOL_MAX_HOSTS);
        bool tcp;
        char target[160];
        if (parse_addr(s, len, &tcp, target, sizeof target, err, errlen) != 0) return -1;
        *needs_token |= tcp;
        if (p) {
            struct host *h = &p->h[n];
            h->tcp = tcp;
            snprintf(h->target, sizeof h->target, "%s", target);
            snprintf(h->pub.addr, sizeof h->pub.addr, "%s:%s", tcp ? "tcp" : "unix", target);
        }
        n++;
        if (!comma) break;
        s = comma + 1;
    }
    if (p) p->n = n;
    return 0;
}

int viv_pool_check(const char *spec, bool *needs_token, char *err, size_t errlen) {
    return parse_spec(spec, NULL, needs_token, err, errlen);
}

char *viv_pool_read_token(const char *path, char *err, size_t errlen) {
    size_t n;
    char e[200];
    char *t = read_file(path, 255, &n, e, sizeof e);
    if (!t) {
        fail_with(err, errlen, "sandbox token file %s", e);
        return NULL;
    }
    while (n && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ')) t[--n] = 0;
    if (n < 16) {
        fail_with(err, errlen, "sandbox token file %s: the token must be at least 16 characters (as vivd's)", path);
        free(t);
        return NULL;
    }
    return t;
}

char *viv_pool_token(const char *file, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (file) return viv_pool_read_token(file, err, errlen);
    const char *env = getenv("VIV_SANDBOX_TOKEN");
    return env && *env ? xstrdup(env) : NULL;
}

/* Connect one host and ask its capacity. 0, or -1 with err (refused says
 * whether vivd refused the token, which waiting will not mend). */
static int host_connect(struct viv_pool *p, struct host *h, int stats_ms, bool *refused, char *err, size_t errlen) {
    char e[256] = "";
    *refused = false;
    if (h->tcp && !p->token)
        return *refused = true, fail_with(err, errlen, "%s: a TCP sandbox needs a token (--sandbox-token-file or "
                                                       "VIV_SANDBOX_TOKEN)", h->pub.addr);
    struct viv_client *c = h->tcp ? viv_connect_tcp(h->target, p->token, e, sizeof e) : viv_connect(h->target, e, sizeof e);
    if (!c) {
        if (strstr(e, "token refused")) {
            *refused = true;
            return fail_with(err, errlen, "%s: vivd refused the token (the trainer's --sandbox-token-file or "
                                          "VIV_SANDBOX_TOKEN must hold the token of vivd's --token-file)", h->pub.addr);
        }
        return fail_with(err, errlen, "%s: %s", h->pub.addr, e);
    }
    int cap = 0;
    long id = viv_submit_op(c, "stats");
    struct viv_response *r = id > 0 ? viv_wait(c, id, stats_ms) : NULL;
    const cJSON *w = r ? cJSON_GetObjectItemCaseSensitive(r->json, "workers") : NULL;
    if (cJSON_IsNumber(w) && w->valuedouble >= 1) cap = (int)w->valuedouble;
    viv_response_free(r);
    if (cap <= 0) {
        viv_close(c);
        return fail_with(err, errlen, "%s: no answer to stats (is it a vivd?)", h->pub.addr);
    }
    viv_set_deadline_margin(c, 5000);
    h->c = c;
    h->pub.up = true;
    h->pub.capacity = cap;
    h->backoff_ms = BACKOFF_MIN_MS;
    return 0;
}

struct viv_pool *viv_pool_open(const char *spec, const char *token, FILE *log, int wait_ms, char *err,
                               size_t errlen) {
    struct viv_pool *p = xcalloc(1, sizeof *p);
    bool needs_token;
    p->log = log;
    if (parse_spec(spec, p, &needs_token, err, errlen) != 0) {
        free(p);
        return NULL;
    }
    p->token = token ? xstrdup(token) : NULL;
    double give_up = now_ms() + wait_ms;
    for (int i = 0; i < p->n; i++) {
        struct host *h = &p->h[i];
        bool refused;
        while (host_connect(p, h, 5000, &refused, err, errlen) != 0) {
            if (refused || now_ms() >= give_up) {
                viv_pool_close(p);
                return NULL;
            }
            usleep(100000);
        }
        if (p->n > 1) logf_(p, "%s up (%d workers)", h->pub.addr, h->pub.capacity);
    }
    return p;
}

void viv_pool_close(struct viv_pool *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) viv_close(p->h[i].c);
    free(p->token);
    free(p);
}

int viv_pool_size(const struct viv_pool *p) { return p->n; }
const struct viv_pool_host *viv_pool_host(const struct viv_pool *p, int host) { return &p->h[host].pub; }

int viv_pool_up(const struct viv_pool *p) {
    int n = 0;
    for (int i = 0; i < p->n; i++) n += p->h[i].pub.up;
    return n;
}

int viv_pool_pending(const struct viv_pool *p) {
    int n = 0;
    for (int i = 0; i < p->n; i++) n += p->h[i].c ? viv_pending(p->h[i].c) : 0;
    return n;
}

/* The host went down: log it, schedule the first reconnection. Its client
 * stays until the caller has taken the answers it completed locally. */
static void mark_down(struct viv_pool *p, struct host *h, const char *why) {
    if (!h->pub.up) return;
    h->pub.up = false;
    h->pub.downs++;
    h->pub.epoch++;
    h->retry_at = now_ms() + h->backoff_ms;
    logf_(p, "%s down (%s): its calls in flight fail; retrying in %.1f s", h->pub.addr, why, h->backoff_ms / 1000);
}

/* A down host whose answers were all taken: close it; if its retry time has
 * come, try to connect again. */
static void tend(struct viv_pool *p, struct host *h) {
    if (h->pub.up) return;
    if (h->c && viv_drained(h->c)) {
        viv_close(h->c); /* every request it held has been answered and taken */
        h->c = NULL;
    }
    if (h->c || now_ms() < h->retry_at) return;
    char err[256];
    bool refused;
    /* (a hung vivd accepts connections but does not answer: wait 1 s, not 5) */
    if (host_connect(p, h, 1000, &refused, err, sizeof err) == 0) {
        logf_(p, "%s up again (%d workers)", h->pub.addr, h->pub.capacity);
        return;
    }
    h->backoff_ms = h->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : h->backoff_ms * 2;
    h->retry_at = now_ms() + h->backoff_ms;
}

void viv_pool_retry_now(struct viv_pool *p) {
    double now = now_ms();
    for (int i = 0; i < p->n; i++)
        if (!p->h[i].pub.up && p->h[i].retry_at > now) p->h[i].retry_at = now;
}

int viv_pool_pick(struct viv_pool *p, const bool *allowed) {
    int best = -1;
    double best_load = 0;
    for (int i = 0; i < p->n; i++) {
        struct host *h = &p->h[i];
        tend(p, h);
        if (!h->pub.up || (allowed && !allowed[i])) continue;
        double load = (double)(viv_pending(h->c) + 1) / h->pub.capacity;
        if (best < 0 || load < best_load - 1e-12 ||
            (load <= best_load + 1e-12 && h->pub.calls < p->h[best].pub.calls))
            best = i, best_load = load;
    }
    return best;
}

struct viv_client *viv_pool_client(struct viv_pool *p, int host) {
    if (host < 0 || host >= p->n) return NULL;
    struct host *h = &p->h[host];
    tend(p, h);
    return h->pub.up ? h->c : NULL;
}

void viv_pool_note_call(struct viv_pool *p, int host) {
    if (host >= 0 && host < p->n) p->h[host].pub.calls++;
}

void viv_pool_note_broken(struct viv_pool *p, int host) {
    if (host >= 0 && host < p->n) mark_down(p, &p->h[host], "the connection broke");
}

void viv_pool_note_busy(struct viv_pool *p, int host) {
    if (host < 0 || host >= p->n) return;
    struct host *h = &p->h[host];
    /* its queue was full with this many of ours in flight: never plan on more */
    int inflight = h->c ? viv_pending(h->c) : 0;
    if (inflight >= 1 && inflight < h->pub.capacity) h->pub.capacity = inflight;
}

/* An answer from host h: a "disconnected" made up by the client means the
 * host is gone. So does a "timeout" made up by the client: vivd enforces
 * every deadline itself and answers, so no answer 5 s past one means the
 * host (or the network to it) is dead without having closed the
 * connection, as a crashed machine does; the connection is given up, its
 * other calls fail now rather than each at its own deadline, and the host
 * is retried like any other that went down. */
static void inspect(struct viv_pool *p, struct host *h, const struct viv_response *r) {
    if (!r->local) return;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    const cJSON *code = e ? cJSON_GetObjectItemCaseSensitive(e, "code") : NULL;
    const cJSON *msg = e ? cJSON_GetObjectItemCaseSensitive(e, "message") : NULL;
    if (!cJSON_IsString(code)) return;
    if (!strcmp(code->valuestring, "disconnected")) {
        mark_down(p, h, cJSON_IsString(msg) ? msg->valuestring : "disconnected");
    } else if (!strcmp(code->valuestring, "timeout") && h->pub.up) {
        viv_abort(h->c, "the sandbox host stopped answering");
        mark_down(p, h, "no answer 5 s past a call's deadline");
    }
}

/* One non-blocking pass over the hosts, starting after the last one served. */
static struct viv_response *take_any(struct viv_pool *p, int *host) {
    for (int k = 0; k < p->n; k++) {
        int i = (p->rr + k) % p->n;
        struct host *h = &p->h[i];
        if (!h->c) continue;
        struct viv_response *r = viv_next(h->c, 0);
        if (r) {
            inspect(p, h, r);
            p->rr = (i + 1) % p->n;
            *host = i;
            return r;
        }
        tend(p, h);
    }
    return NULL;
}

struct viv_response *viv_pool_next(struct viv_pool *p, int timeout_ms, int *host) {
    *host = -1;
    if (p->n == 1 && p->h[0].c) { /* one host: the client's own wait, exactly */
        struct viv_response *r = viv_next(p->h[0].c, timeout_ms);
        if (r) inspect(p, &p->h[0], r), *host = 0;
        tend(p, &p->h[0]);
        return r;
    }
    double end = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        struct viv_response *r = take_any(p, host);
        if (r) return r;
        double left = end - now_ms();
        if (left <= 0) return NULL;
        struct pollfd fds[VIV_POOL_MAX_HOSTS];
        int nf = 0;
        for (int i = 0; i < p->n; i++)
            if (p->h[i].c && p->h[i].pub.up && viv_pending(p->h[i].c) > 0)
                fds[nf++] = (struct pollfd){viv_client_fd(p->h[i].c), POLLIN | (viv_wants_write(p->h[i].c) ? POLLOUT : 0), 0};
        /* wake at least every 100 ms: clients' own deadlines, down hosts' retries */
        int wait = left > 100 ? 100 : (int)left + 1;
        if (nf == 0) usleep((useconds_t)wait * 1000);
        else if (poll(fds, (nfds_t)nf, wait) < 0 && errno != EINTR) return NULL;
    }
}
