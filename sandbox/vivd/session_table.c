/*
 * session_table.c - vivd's side of sessions (session.c is the worker's
 * side): the table, owner and per-peer cap, idle expiry, the ring of lost
 * ids, and the calls in flight.
 */
#define _GNU_SOURCE
#include "vivd_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "session.h"
#include "warm_worker.h"
#include "../jail/egress.h"
#include "../base/util.h"

/* ---------------------------------------------------------------- sessions */

/* The cap is per peer, not per connection: for Unix sockets the uid, for
 * TCP the address without the port (a client could open many connections). */
void peer_key(const struct conn *c, char *out, size_t outlen) {
    snprintf(out, outlen, "%s", c->peer);
    char *colon = c->is_tcp ? strrchr(out, ':') : NULL;
    if (colon) *colon = 0;
}

/* Sessions that ended by themselves (expired, lost, their jail ended) are
 * remembered for a while, so a later call says why instead of "not_found". */
#define LOST_SESSIONS 256
static struct {
    char id[40], peer[96], why[96];
} lost_sessions[LOST_SESSIONS];
static unsigned lost_next;

void remember_lost(const struct session *s, const char *why) {
    unsigned k = lost_next++ % LOST_SESSIONS;
    snprintf(lost_sessions[k].id, sizeof lost_sessions[k].id, "%s", s->id);
    snprintf(lost_sessions[k].peer, sizeof lost_sessions[k].peer, "%s", s->peer);
    snprintf(lost_sessions[k].why, sizeof lost_sessions[k].why, "%s", why);
}

static const char *lost_reason(const char *id, const struct conn *c) {
    char key[96];
    peer_key(c, key, sizeof key);
    for (int k = 0; k < LOST_SESSIONS; k++)
        if (strcmp(lost_sessions[k].id, id) == 0 && strcmp(lost_sessions[k].peer, key) == 0) return lost_sessions[k].why;
    return NULL;
}

static struct session *session_find(const char *id, const struct conn *c) {
    for (struct session *s = vd.sessions; s; s = s->next)
        if (strcmp(s->id, id) == 0) return s->conn == c ? s : NULL; /* another connection's: not yours */
    return NULL;
}

/* Forget a session: closing our end makes its worker kill the jail and exit
 * (SIGCHLD reaps it). A request still waiting on it is answered here. */
void session_destroy(struct session *s, const char *code, const char *why) {
    if (s->pending_id && code[0]) conn_send_error(s->conn, s->pending_id, code, why);
    epoll_ctl(vd.epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    for (struct session **p = &vd.sessions; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    vd.nsessions--;
    if (s->conn) s->conn->jobs--;
    free(s->pending_id);
    rpc_request_free(&s->call);
    free(s->in);
    free(s);
}

void session_open(struct conn *c, struct rpc_request *req) {
    struct loaded_policy *lp = find_policy(req->tool);
    char msg[256], key[96];
    if (!lp) {
        snprintf(msg, sizeof msg, "unknown tool '%.64s' (see op policies)", req->tool);
        return conn_send_error(c, req->id_json, "bad_request", msg);
    }
    if (!session_policy_supported(&lp->policy))
        return conn_send_error(c, req->id_json, "bad_request", "sessions need a Python tool whose seccomp list allows mknodat (e.g. python); this tool is not one");
    if (vd.stopping) return conn_send_error(c, req->id_json, "shutting_down", "vivd is shutting down");
    peer_key(c, key, sizeof key);
    int mine = 0;
    for (struct session *s = vd.sessions; s; s = s->next) mine += strcmp(s->peer, key) == 0;
    if (mine >= vd.cfg.max_sessions_per_peer) {
        snprintf(msg, sizeof msg, "%d sessions open for %s, the most allowed (--max-sessions-per-peer); close one first",
                 mine, key);
        vd.stats.busy++;
        return conn_send_error(c, req->id_json, "busy", msg);
    }
    struct session *s = xcalloc(1, sizeof *s);
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        free(s);
        return conn_send_error(c, req->id_json, "internal", "getrandom failed");
    }
    strcpy(s->id, "s-");
    for (int i = 0; i < 16; i++) snprintf(s->id + 2 + 2 * i, 3, "%02x", rnd[i]);
    pid_t pid = fork_worker(&s->fd);
    if (pid == 0) {
        egress_set_owner(s->id, c->peer);
        struct session_spec ss = {&lp->policy, &lp->filter, vd.cfg.data, vd.cfg.ndata, lp->policy.name};
        _exit(session_worker_main(&ss, 3));
    }
    if (pid < 0) {
        free(s);
        return conn_send_error(c, req->id_json, "internal", "could not start a session worker");
    }
    s->worker = pid;
    s->conn = c;
    s->lp = lp;
    snprintf(s->peer, sizeof s->peer, "%s", key);
    s->opening = true;
    s->pending_id = xstrdup(req->id_json);
    s->call_started = s->last_used = now_ms();
    fcntl(s->fd, F_SETFL, O_NONBLOCK);
    s->ref = (struct ev_ref){TAG_SESSION, s};
    epoll_add(s->fd, EPOLLIN, &s->ref);
    s->next = vd.sessions;
    vd.sessions = s;
    vd.nsessions++;
    c->jobs++; /* keeps the connection from idling out while the session lives */
}

/* Write a whole frame to the (non-blocking) worker socket. The worker is
 * idle and reading, so this takes microseconds; 5 s is a backstop. */
int send_frame(int fd, const char *buf, size_t len) {
    double end = now_ms() + 5000;
    while (len) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
        if (w > 0) buf += w, len -= (size_t)w;
        else if (w < 0 && errno == EINTR) continue;
        else if (w < 0 && errno == EAGAIN && now_ms() < end) {
            struct pollfd p = {fd, POLLOUT, 0};
            poll(&p, 1, 100);
        } else
            return -1;
    }
    return 0;
}

/* exec with "session": returns true when the session took ownership of req. */
bool session_exec(struct conn *c, struct rpc_request *req) {
    struct session *s = session_find(req->session, c);
    if (!s) {
        const char *why = lost_reason(req->session, c);
        char msg[160];
        snprintf(msg, sizeof msg, "the session is gone: %s", why ? why : "");
        if (why) conn_send_error(c, req->id_json, "session_lost", msg);
        else conn_send_error(c, req->id_json, "not_found", "no such session on this connection (closed, or opened by another connection)");
        return false;
    }
    const struct policy *p = &s->lp->policy;
    if (req->tool && strcmp(req->tool, p->name) != 0) {
        conn_send_error(c, req->id_json, "bad_request", "tool does not match the session's tool");
        return false;
    }
    if (req->code_len > (size_t)p->limits.code_bytes) {
        conn_send_error(c, req->id_json, "bad_request", "code is longer than the policy's code_bytes");
        return false;
    }
    if (s->pending_id) {
        vd.stats.busy++;
        conn_send_error(c, req->id_json, "busy", "the session is running another call (one call at a time per session)");
        return false;
    }
    long t = policy_call_timeout_ms(p, req->timeout_ms);
    size_t n;
    char *frame = warm_call_frame(t, p->limits.memory_mb, req->code, req->code_len, &n);
    int rc = send_frame(s->fd, frame, n);
    free(frame);
    if (rc != 0) {
        conn_send_error(c, req->id_json, "session_lost", "the session's worker is gone");
        session_destroy(s, "", "");
        return false;
    }
    s->pending_id = xstrdup(req->id_json);
    s->call = *req;
    s->call_started = now_ms();
    return true;
}

void session_close_req(struct conn *c, struct rpc_request *req) {
    struct session *s = session_find(req->session, c);
    if (!s) return conn_send_error(c, req->id_json, "not_found", "no such session on this connection");
    session_destroy(s, "cancelled", "the session was closed while this call ran");
    conn_answer(c, req->id_json, "{\"ok\":true}");
}

/* One line from the worker answers the request in flight. Returns true
 * when the session is over (and s freed). */
static bool session_line(struct session *s, const char *line) {
    double wall = now_ms() - s->call_started;
    s->last_used = now_ms();
    if (!s->pending_id) return false; /* never sent unasked; ignore */
    char *id = s->pending_id;
    s->pending_id = NULL;
    bool ok = strncmp(line, "{\"ok\":true", 10) == 0;
    if (s->opening) {
        s->opening = false;
        if (ok) {
            char *obj = xasprintf("{\"ok\":true,\"session\":\"%s\"}", s->id);
            conn_answer(s->conn, id, obj);
            free(obj);
            log_line("\"peer\":\"%s\",\"op\":\"session_open\",\"tool\":\"%s\",\"wall_ms\":%.1f,\"outcome\":\"ok\"",
                     s->peer, s->lp->policy.name, wall);
        } else {
            conn_answer(s->conn, id, line);
            vd.stats.errors++;
            free(id);
            session_destroy(s, "", "");
            return true;
        }
        free(id);
        if (vd.stopping) session_destroy(s, "", "");
        return vd.stopping;
    }
    conn_answer(s->conn, id, line);
    free(id);
    bool lost = strstr(line, "\"session_lost\":true") != NULL;
    const char *outcome = !ok ? "error" : strstr(line, "\"timed_out\":true") ? "timed_out" : lost ? "session_lost" : "ok";
    if (!ok) vd.stats.errors++;
    else if (strcmp(outcome, "timed_out") == 0) vd.stats.timeouts++;
    vd.stats.completed++;
    s->lp->count++;
    s->lp->wall_ms_total += wall;
    log_request(s->conn, &s->call, wall, outcome);
    rpc_request_free(&s->call);
    if (lost) remember_lost(s, "an earlier call overran its deadline or broke the session");
    if (lost || vd.stopping) session_destroy(s, "", "");
    return lost || vd.stopping;
}

/* Read what a session or zygote worker wrote and hand each whole line to
 * `on_line` (which returns true when it destroyed its owner). Returns 0 at
 * the worker's EOF (the owner still exists), 1 when there is nothing more to
 * read now or the owner is gone. */
int read_worker_lines(int fd, char **in, size_t *in_len, bool (*on_line)(void *, const char *), void *owner) {
    char buf[65536];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) return 1;
        if (r <= 0) return 0;
        *in = xrealloc(*in, *in_len + (size_t)r + 1);
        memcpy(*in + *in_len, buf, (size_t)r);
        *in_len += (size_t)r;
        char *nl;
        while ((nl = memchr(*in, '\n', *in_len))) {
            *nl = 0;
            size_t used = (size_t)(nl - *in) + 1;
            char *line = xstrdup(*in);
            memmove(*in, *in + used, *in_len - used);
            *in_len -= used;
            bool destroyed = on_line(owner, line);
            free(line);
            if (destroyed) return 1;
        }
    }
}

static bool session_line_cb(void *s, const char *line) { return session_line(s, line); }

void session_readable(struct session *s) {
    if (read_worker_lines(s->fd, &s->in, &s->in_len, session_line_cb, s) != 0) return; /* more to come, or s is gone */
    /* the worker exited: the jail ended on its own (lifetime) or it crashed */
    if (!s->opening) remember_lost(s, "its jail ended (the policy's session_ms_max, or a crash)");
    session_destroy(s, s->opening ? "sandbox_error" : "session_lost", "the session's jail ended; session lost");
}
