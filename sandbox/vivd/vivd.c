/*
 * vivd.c - the sandbox daemon: many clients, many jobs, one event loop.
 *
 * One thread runs an epoll loop over the listening socket(s), every client
 * connection, every running job's result channel, a signalfd (SIGTERM,
 * SIGINT, SIGCHLD) and a periodic tick for idle timeouts.
 *
 * A request line is parsed (rpc.c) and answered at once (ping, stats,
 * policies, errors) or becomes a job. A job runs in a forked worker process
 * that calls jail_run() with the policy's filter compiled once at start-up,
 * and writes the result object to a socketpair; the daemon adds the request's
 * id and queues the line on the client's connection. Jobs beyond --workers
 * wait in a bounded FIFO; beyond --queue the answer is an immediate "busy".
 * Responses go out in completion order, matched by id.
 *
 * The same socketpair cancels: when a client disconnects, the daemon closes
 * its end and the worker's jail_run() kills the job (the supervisor's
 * cancel_fd), so nothing the client started keeps running. If the daemon
 * itself dies, every worker sees the same hang-up.
 *
 * SIGTERM: stop accepting, answer queued requests with "shutting_down", give
 * running jobs --grace-ms to finish, then cancel them (they are answered with
 * "cancelled":true), flush, exit 0.
 *
 * Never logged: code or output. One JSON line per request: time, peer,
 * op, tool, wall_ms, outcome.
 *
 * The daemon's files: this one (the loop, connections, requests, set-up),
 * jobs.c (one-shot jobs: queue, cold workers, dispatch to zygotes),
 * zygote_pool.c and session_table.c (vivd's side of zygote.c and
 * session.c) and front_door.c (accepting clients). They share one state
 * struct, `vd`, and their types through vivd_internal.h.
 */
#define _GNU_SOURCE
#include "vivd.h"
#include "vivd_internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../base/args.h"
#include "http_front.h"
#include "../base/json_writer.h"
#include "zygote.h"
#include "../jail/egress.h"
#include "../base/util.h"

struct vivd vd = {.listen_fd = -1, .tcp_fd = -1, .listen_ref = {TAG_LISTEN, NULL}, .tcp_ref = {TAG_TCP, NULL},
                  .signal_ref = {TAG_SIGNAL, NULL}};

void epoll_add(int fd, uint32_t events, struct ev_ref *ref) {
    struct epoll_event ev = {.events = events, .data.ptr = ref};
    epoll_ctl(vd.epfd, EPOLL_CTL_ADD, fd, &ev);
}

void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_line(const char *fmt, ...) {
    if (!vd.log_file) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    fprintf(vd.log_file, "{\"ts\":%lld.%03ld,", (long long)ts.tv_sec, ts.tv_nsec / 1000000);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(vd.log_file, fmt, ap);
    va_end(ap);
    fputs("}\n", vd.log_file);
    fflush(vd.log_file);
}

struct loaded_policy *find_policy(const char *name) {
    for (int i = 0; i < vd.npolicies; i++)
        if (strcmp(vd.policies[i].policy.name, name) == 0) return &vd.policies[i];
    return NULL;
}

/* ---------------------------------------------------------------- output */

static void conn_send(struct conn *c, const char *line) {
    if (!c || c->closing) return;
    size_t n = strlen(line);
    if (c->out_len + n > (64u << 20)) { /* a client that never reads */
        c->closing = true;
        return;
    }
    c->out = xrealloc(c->out, c->out_len + n);
    memcpy(c->out + c->out_len, line, n);
    c->out_len += n;
}

/* Answer request `id` with a JSON object ("{...}"): the id goes first. */
void conn_answer(struct conn *c, const char *id, const char *object) {
    char *line = rpc_with_id(id, object);
    conn_send(c, line);
    free(line);
}

void conn_send_error(struct conn *c, const char *id, const char *code, const char *msg) {
    char *line = rpc_error_line(id, code, msg);
    conn_send(c, line);
    free(line);
    vd.stats.errors++;
}

/* The line that turns a client away before it asked anything (no id):
 * {"ok":false,"error":{"code":...,"message":...}} and a newline. */
char *refusal_line(const char *code, const char *msg) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "ok"), jw_bool(&w, false);
    jw_key(&w, "error"), jw_object_begin(&w);
    jw_key(&w, "code"), jw_cstring(&w, code);
    jw_key(&w, "message"), jw_cstring(&w, msg);
    jw_object_end(&w), jw_object_end(&w);
    char *obj = jw_finish(&w), *line = xasprintf("%s\n", obj);
    free(obj);
    return line;
}

/* Turn a connection away before it has authenticated: one error line
 * (flushed before the close) and one log line saying why. `msg` is ours,
 * never the client's, so it goes into the log as it is. */
void conn_refuse(struct conn *c, const char *code, const char *msg) {
    char *line = refusal_line(code, msg);
    conn_send(c, line);
    free(line);
    c->closing = true;
    log_line("\"peer\":\"%s\",\"op\":\"auth\",\"outcome\":\"refused\",\"detail\":\"%s\"", c->peer, msg);
}

/* ---------------------------------------------------------------- requests */

static void answer_stats(struct conn *c, const char *id) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "ok"), jw_bool(&w, true);
    jw_key(&w, "uptime_s"), jw_double(&w, (now_ms() - vd.started_at) / 1e3, 1);
    jw_key(&w, "connections"), jw_int(&w, vd.nconns);
    jw_key(&w, "unauthenticated"), jw_int(&w, vd.nunauth);
    jw_key(&w, "running"), jw_int(&w, vd.nrunning);
    jw_key(&w, "queued"), jw_int(&w, vd.nqueued);
    jw_key(&w, "workers"), jw_int(&w, vd.cfg.workers);
    jw_key(&w, "queue_cap"), jw_int(&w, vd.cfg.queue_cap);
    jw_key(&w, "requests"), jw_int(&w, vd.stats.requests);
    jw_key(&w, "completed"), jw_int(&w, vd.stats.completed);
    jw_key(&w, "busy"), jw_int(&w, vd.stats.busy);
    jw_key(&w, "errors"), jw_int(&w, vd.stats.errors);
    jw_key(&w, "timeouts"), jw_int(&w, vd.stats.timeouts);
    jw_key(&w, "cancelled"), jw_int(&w, vd.stats.cancelled);
    jw_key(&w, "sessions"), jw_int(&w, vd.nsessions);
    jw_key(&w, "tools"), jw_object_begin(&w);
    for (int i = 0; i < vd.npolicies; i++) {
        jw_key(&w, vd.policies[i].policy.name), jw_object_begin(&w);
        jw_key(&w, "count"), jw_int(&w, vd.policies[i].count);
        jw_key(&w, "wall_ms_mean"),
            jw_double(&w, vd.policies[i].count ? vd.policies[i].wall_ms_total / (double)vd.policies[i].count : 0, 1);
        if (vd.policies[i].zygotes_started) {
            int ready = 0, busy = 0, starting = 0;
            for (struct zygote *z = vd.zygotes; z; z = z->next)
                if (z->lp == &vd.policies[i]) z->job ? busy++ : z->ready ? ready++ : starting++;
            jw_key(&w, "zygotes"), jw_object_begin(&w);
            jw_key(&w, "idle"), jw_int(&w, ready);
            jw_key(&w, "busy"), jw_int(&w, busy);
            jw_key(&w, "starting"), jw_int(&w, starting);
            jw_key(&w, "started"), jw_int(&w, vd.policies[i].zygotes_started);
            jw_key(&w, "lost"), jw_int(&w, vd.policies[i].zygotes_lost);
            jw_key(&w, "enabled"), jw_bool(&w, vd.policies[i].zygotes_on);
            jw_object_end(&w);
        }
        jw_object_end(&w);
    }
    jw_object_end(&w);
    jw_object_end(&w);
    char *obj = jw_finish(&w);
    conn_answer(c, id, obj);
    free(obj);
}

static void answer_policies(struct conn *c, const char *id) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "ok"), jw_bool(&w, true);
    jw_key(&w, "policies"), jw_array_begin(&w);
    for (int i = 0; i < vd.npolicies; i++) {
        const struct policy *p = &vd.policies[i].policy;
        jw_object_begin(&w);
        jw_key(&w, "name"), jw_cstring(&w, p->name);
        jw_key(&w, "description"), jw_cstring(&w, p->description);
        jw_key(&w, "timeout_ms"), jw_int(&w, p->limits.timeout_ms);
        jw_key(&w, "timeout_ms_max"), jw_int(&w, p->limits.timeout_ms_max);
        jw_key(&w, "memory_mb"), jw_int(&w, p->limits.memory_mb);
        jw_key(&w, "output_bytes"), jw_int(&w, p->limits.output_bytes);
        jw_key(&w, "code_bytes"), jw_int(&w, p->limits.code_bytes);
        jw_key(&w, "network"), policy_network_write(&w, p);
        jw_object_end(&w);
    }
    jw_array_end(&w);
    jw_object_end(&w);
    char *obj = jw_finish(&w);
    conn_answer(c, id, obj);
    free(obj);
}

static int conn_speak_for(struct conn *c, const char *client, char *msg, size_t msglen);

static void handle_line(struct conn *c, const char *line, size_t len) {
    if (c->is_tcp && !c->authed) {
        /* {"token":"..."} first, compared in constant time */
        cJSON *o = cJSON_ParseWithLength(line, len);
        const cJSON *t = o ? cJSON_GetObjectItemCaseSensitive(o, "token") : NULL;
        int good = 0;
        if (cJSON_IsString(t)) {
            size_t a = strlen(t->valuestring), b = strlen(vd.token);
            unsigned diff = (unsigned)(a ^ b);
            for (size_t i = 0; i < b; i++) diff |= (unsigned char)vd.token[i] ^ (unsigned char)(i < a ? t->valuestring[i] : 0);
            good = diff == 0;
        }
        cJSON_Delete(o);
        if (!good) return conn_refuse(c, "unauthorized", "bad token");
        log_line("\"peer\":\"%s\",\"op\":\"auth\",\"outcome\":\"ok\"", c->peer);
        c->authed = true;
        vd.nunauth--;
        conn_send(c, "{\"ok\":true}\n");
        return;
    }
    vd.stats.requests++;
    struct rpc_request req;
    const char *code = NULL;
    char msg[256];
    if (rpc_parse_request(line, len, &req, &code, msg, sizeof msg) != 0 ||
        (req.client && conn_speak_for(c, req.client, msg, sizeof msg) != 0 && (code = "bad_request"))) {
        conn_send_error(c, req.id_json, code, msg);
        log_request(c, &req, 0, code);
        rpc_request_free(&req);
        return;
    }
    switch (req.op) {
    case RPC_PING:
        conn_answer(c, req.id_json, "{\"ok\":true,\"pong\":true}");
        break;
    case RPC_STATS: answer_stats(c, req.id_json); break;
    case RPC_POLICIES: answer_policies(c, req.id_json); break;
    case RPC_SESSION_OPEN: session_open(c, &req); break;
    case RPC_SESSION_CLOSE: session_close_req(c, &req); break;
    case RPC_EXEC: {
        if (req.session) {
            if (session_exec(c, &req)) return; /* the session owns req now */
            log_request(c, &req, 0, "error");
            break;
        }
        struct loaded_policy *lp = find_policy(req.tool);
        if (!lp) {
            snprintf(msg, sizeof msg, "unknown tool '%.64s' (see op policies)", req.tool);
            conn_send_error(c, req.id_json, "bad_request", msg);
            break;
        }
        if (!lp->policy.code_path) {
            conn_send_error(c, req.id_json, "bad_request", "this tool takes no code");
            break;
        }
        if (vd.stopping) {
            conn_send_error(c, req.id_json, "shutting_down", "vivd is shutting down");
            break;
        }
        if (vd.nqueued >= vd.cfg.queue_cap && !can_start_now(lp, req.stdin_given || req.files || req.fetch)) {
            conn_send_error(c, req.id_json, "busy", "all workers busy and the queue is full; retry later");
            vd.stats.busy++;
            log_request(c, &req, 0, "busy");
            break;
        }
        req.timeout_ms = policy_call_timeout_ms(&lp->policy, req.timeout_ms);
        struct job *j = xcalloc(1, sizeof *j);
        j->conn = c;
        j->req = req;
        j->lp = lp;
        j->fd = -1;
        c->jobs++;
        if (vd.queue_tail) vd.queue_tail->next = j;
        else vd.queue_head = j;
        vd.queue_tail = j;
        vd.nqueued++;
        pump_queue();
        return; /* the job owns req now */
    }
    }
    if (req.op != RPC_EXEC && req.op != RPC_SESSION_OPEN) log_request(c, &req, 0, "ok");
    rpc_request_free(&req);
}

/* ---------------------------------------------------------------- connections */

static void conn_close(struct conn *c) {
    epoll_ctl(vd.epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    /* cancel its running jobs (the worker's cancel_fd hangs up), drop queued ones */
    for (struct job *j = vd.running, *next; j; j = next) {
        next = j->next;
        if (j->conn != c) continue;
        j->conn = NULL;
        if (j->zygote) zygote_destroy(j->zygote, "cancelled: the client went away"); /* frees nothing of c */
        else shutdown(j->fd, SHUT_WR);
    }
    for (struct job *j = vd.queue_head; j; j = j->next)
        if (j->conn == c) j->conn = NULL;
    /* its sessions die with it (docs/sandbox.md: a session belongs to its connection) */
    for (struct session *s = vd.sessions, *next; s; s = next) {
        next = s->next;
        if (s->conn == c) session_destroy(s, "", "");
    }
    for (struct conn **p = &vd.conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    vd.nconns--;
    if (c->is_tcp && !c->authed) vd.nunauth--;
    free(c->in);
    free(c->out);
    free(c);
}

static void conn_flush(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) break;
        if (w < 0) {
            c->closing = true;
            c->out_off = c->out_len;
            break;
        }
        c->out_off += (size_t)w;
    }
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
}

static void conn_readable(struct conn *c) {
    char buf[65536];
    for (;;) {
        /* Before authentication read no more than the token line may hold,
         * so an unauthenticated client never costs more than that. */
        size_t want = sizeof buf;
        if (c->is_tcp && !c->authed && vd.cfg.auth_line + 1 - c->in_len < want) want = vd.cfg.auth_line + 1 - c->in_len;
        ssize_t r = recv(c->fd, buf, want, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) break;
        if (r <= 0) {
            c->closing = true;
            break;
        }
        c->last_active = now_ms();
        /* append, then handle every complete line */
        if (c->in_len + (size_t)r > c->in_cap) {
            c->in_cap = (c->in_len + (size_t)r) * 2;
            c->in = xrealloc(c->in, c->in_cap);
        }
        memcpy(c->in + c->in_len, buf, (size_t)r);
        c->in_len += (size_t)r;
        size_t start = 0;
        for (;;) {
            char *nl = memchr(c->in + start, '\n', c->in_len - start);
            if (!nl) break;
            size_t n = (size_t)(nl - (c->in + start));
            if (n > vd.cfg.max_line) {
                c->closing = true;
                break;
            }
            if (n > 0 && !c->closing) handle_line(c, c->in + start, n);
            start += n + 1;
        }
        memmove(c->in, c->in + start, c->in_len - start);
        c->in_len -= start;
        if (!c->closing && c->is_tcp && !c->authed && c->in_len > vd.cfg.auth_line) {
            char msg[160];
            snprintf(msg, sizeof msg, "the first line must be the token line, at most %zu bytes (--auth-line-bytes)",
                     vd.cfg.auth_line);
            conn_refuse(c, "bad_request", msg);
        } else if (c->in_len > vd.cfg.max_line) { /* a line longer than the cap: drop the client */
            log_line("\"peer\":\"%s\",\"op\":\"read\",\"outcome\":\"line_too_long\"", c->peer);
            c->closing = true;
        }
        if (c->in_cap > 65536 && c->in_len < 16384) { /* give back big buffers */
            c->in_cap = 65536;
            c->in = xrealloc(c->in, c->in_cap);
        }
        if (c->closing) break;
    }
}

/* ---------------------------------------------------------------- setup */

static int load_policies(char *err, size_t errlen) {
    for (const char *const *n = policy_builtin_names(); *n && vd.npolicies < MAX_POLICIES; n++) {
        if (policy_load(*n, &vd.policies[vd.npolicies].policy, err, errlen)) return -1;
        vd.npolicies++;
    }
    if (vd.cfg.policies_dir) {
        DIR *d = opendir(vd.cfg.policies_dir);
        if (!d) {
            snprintf(err, errlen, "--policies %s: %s", vd.cfg.policies_dir, strerror(errno));
            return -1;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t n = strlen(e->d_name);
            if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0) continue;
            char *path = xasprintf("%s/%s", vd.cfg.policies_dir, e->d_name);
            struct policy p;
            int rc = policy_load(path, &p, err, errlen);
            free(path);
            if (rc == 0 && (rc = policy_check_runnable(&p, err, errlen)) != 0) policy_free(&p);
            if (rc) {
                closedir(d);
                return -1;
            }
            struct loaded_policy *same = find_policy(p.name);
            if (same) { /* a file overrides the built-in of the same name */
                policy_free(&same->policy);
                same->policy = p;
            } else if (vd.npolicies < MAX_POLICIES) {
                vd.policies[vd.npolicies++].policy = p;
            } else {
                policy_free(&p);
            }
        }
        closedir(d);
    }
    for (int i = 0; i < vd.npolicies; i++) {
        struct loaded_policy *lp = &vd.policies[i];
        if (syscall_filter_compile(&lp->policy.seccomp, &lp->filter, err, errlen)) return -1;
        lp->zygotes_on = vd.cfg.zygotes > 0 && zygote_policy_supported(&lp->policy);
        if (lp->zygotes_on && syscall_filter_compile_zygote(&lp->policy.seccomp, &lp->zygote_filter, err, errlen))
            return -1;
    }
    return 0;
}

static int listen_unix(const char *path, char *err, size_t errlen) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "--socket %s: path too long", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    /* Replace a stale socket, but never another kind of file. */
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "--socket %s: exists and is not a socket", path);
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(probe);
            snprintf(err, errlen, "--socket %s: another vivd is serving it", path);
            return -1;
        }
        if (probe >= 0) close(probe);
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    mode_t old = umask(0117); /* socket mode 0660 */
    int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc != 0 || listen(fd, 256) != 0) {
        snprintf(err, errlen, "--socket %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static int listen_tcp(const char *addr, char *err, size_t errlen) {
    char host[64];
    const char *colon = strrchr(addr, ':');
    long port;
    if (!colon || (size_t)(colon - addr) >= sizeof host || parse_long(colon + 1, 1, 65535, &port)) {
        snprintf(err, errlen, "--tcp %s: expected ADDR:PORT", addr);
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "--tcp %s: '%s' is not an IPv4 address", addr, host);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 256) != 0) {
        snprintf(err, errlen, "--tcp %s: %s", addr, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

/* --data NAME=PATH: the path resolved and checked now, so a typo is an
 * error at start rather than jobs that silently lack the mount */
static int add_data(void *ctx, const char *v, char *err, size_t errlen) {
    struct config *c = ctx;
    if (c->ndata == MAX_DATA) return fail_with(err, errlen, "more than %d --data values", MAX_DATA);
    char *name, *path;
    if (args_name_path(v, &name, &path, err, errlen) != 0) return -1;
    c->data[c->ndata++] = (struct jail_data){name, path};
    return 0;
}

static int show_version;

/* One line per flag; the help is generated from this table (args.h). */
static const struct arg_opt vivd_opts[] = {
    {"--socket", ARG_STR, &vd.cfg.socket_path, 0, 0, "PATH", "the Unix socket to serve (required; mode 0660)"},
    {"--policies", ARG_STR, &vd.cfg.policies_dir, 0, 0, "DIR", "policy files to serve besides the built-in ones"},
    {"--workers", ARG_INT, &vd.cfg.workers, 1, 4096, "N", "jobs run at once (default: 2 per core)"},
    {"--queue", ARG_INT, &vd.cfg.queue_cap, 0, 1000000, "N", "requests waiting beyond that; more get \"busy\" (default 64)"},
    {"--log", ARG_STR, &vd.cfg.log_path, 0, 0, "FILE", "one JSON line per request (default: stderr)"},
    {"--egress-log", ARG_STR, &vd.cfg.egress_log, 0, 0, "FILE", "one JSON line per egress connection of a job (default: the --log)"},
    {"--egress-record", ARG_STR, &vd.cfg.egress_record, 0, 0, "DIR", "keep the answers to jobs' plain-HTTP egress requests in DIR"},
    {"--egress-replay", ARG_STR, &vd.cfg.egress_replay, 0, 0, "DIR", "answer jobs' plain-HTTP egress only from DIR (a miss is a 502); refuse HTTPS"},
    {"--data", ARG_FN, &vd.cfg, 0, 0, "NAME=PATH", "a value for policies' @NAME mounts (e.g. db=genes.sqlite);\n"
                                                 "the path must exist (relative paths are resolved)", add_data},
    {"--idle-ms", ARG_LONG, &vd.cfg.idle_ms, 10, 86400000, "N", "close connections idle this long with nothing in flight (default 60000)"},
    {"--grace-ms", ARG_LONG, &vd.cfg.grace_ms, 0, 3600000, "N", "on SIGTERM, how long running jobs may finish (default 10000)"},
    {"--max-line-bytes", ARG_LONG, &vd.cfg.max_line_arg, 1024, 1073741824, "N", "longest request line; longer closes the connection (default 8 MiB)"},
    {"--tcp", ARG_STR, &vd.cfg.tcp_addr, 0, 0, "ADDR:PORT", "also listen on TCP; needs --token-file (first line: {\"token\":\"...\"})"},
    {"--token-file", ARG_STR, &vd.cfg.token_file, 0, 0, "FILE", "the token TCP clients must send first"},
    {"--http", ARG_STR, &vd.cfg.http_addr, 0, 0, "ADDR:PORT", "also serve HTTP: SandboxFusion's POST /run_code, Biomni's /start_runtime,\n"
                                                           "/execute, /delete_runtime (IPv4; loopback only unless --token-file, then\n"
                                                           "Authorization: Bearer TOKEN); each call is an ordinary request here"},
    {"--session-idle-ms", ARG_LONG, &vd.cfg.session_idle_ms, 10, 86400000, "N", "close sessions unused this long (default 600000)"},
    {"--max-sessions-per-peer", ARG_INT, &vd.cfg.max_sessions_per_peer, 0, 100000, "N", "open sessions per uid (or TCP address) (default 16)"},
    {"--zygotes", ARG_INT, &vd.cfg.zygotes, 0, 256, "N", "warm interpreters per policy with a preload list, each running one-shot\n"
                                                       "jobs in fresh isolated children (default: --workers; 0 = none)"},
    {"--auth-line-bytes", ARG_LONG, &vd.cfg.auth_line_arg, 64, 1048576, "N", "(TCP, before the token) the token line is at most this long (default 4096)"},
    {"--auth-ms", ARG_LONG, &vd.cfg.auth_ms, 10, 600000, "N", "(TCP) the token line comes within this long of connecting (default 5000)"},
    {"--max-unauth", ARG_INT, &vd.cfg.max_unauth, 1, 1000000, "N", "(TCP) connections waiting to authenticate, in all (default 256)"},
    {"--max-unauth-per-peer", ARG_INT, &vd.cfg.max_unauth_per_peer, 1, 1000000, "N", "(TCP) of those, from one address (default 64)"},
    {"--version", ARG_FLAG, &show_version, 0, 0, NULL, "print the version and exit"},
    {0},
};

static const struct arg_cmd vivd_cmd = {
    .prog = "vivd",
    .synopsis = "vivd --socket PATH [options]",
    .about = "Serves the sandbox RPC (newline-delimited JSON) on a Unix socket, and on TCP with a token.\n"
             "A TCP connection that breaks the --auth-* limits before its token line gets an error\n"
             "line and is closed, and the log says why.\n",
    .opts = vivd_opts,
    .examples = "  vivd --socket /tmp/vivd.sock\n"
                "  vivd --socket /tmp/vivd.sock --data db=data/db/org.Hs.eg.sqlite --workers 8\n"
                "  vivd --socket /tmp/vivd.sock --tcp 0.0.0.0:7070 --token-file token.json\n"
                "  vivd --socket /tmp/vivd.sock --http 127.0.0.1:8080\n",
};

/* 0: run; ARGS_HELP: help or version printed (exit 0); ARGS_USAGE: exit 2 */
static int parse_args(int argc, char **argv) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    vd.cfg.workers = (int)(cores > 0 ? cores * 2 : 2);
    vd.cfg.queue_cap = 64;
    vd.cfg.idle_ms = 60000;
    vd.cfg.grace_ms = 10000;
    vd.cfg.max_line_arg = 8u << 20;
    vd.cfg.auth_line_arg = 4096; /* {"token":"..."}: the token is under 256 bytes, escaped at most 6x */
    vd.cfg.auth_ms = 5000;     /* clients send it with the connect; this is for slow links */
    vd.cfg.max_unauth = 256;   /* at ~10 KiB each (the line, the conn): a few MiB and fds in all */
    vd.cfg.max_unauth_per_peer = 64; /* a trainer host opens its connections in bursts */
    vd.cfg.session_idle_ms = 600000;
    vd.cfg.max_sessions_per_peer = 16;
    vd.cfg.zygotes = -1; /* default: as many as --workers */
    int rc = args_parse(&vivd_cmd, argc, argv, NULL);
    if (rc) return rc;
    if (show_version) {
        printf("vivd %s\n", VIV_VERSION);
        return ARGS_HELP;
    }
    vd.cfg.max_line = (size_t)vd.cfg.max_line_arg;
    vd.cfg.auth_line = (size_t)vd.cfg.auth_line_arg;
    if (vd.cfg.zygotes < 0) vd.cfg.zygotes = vd.cfg.workers;
    if (!vd.cfg.socket_path) return args_error(&vivd_cmd, "--socket PATH is required");
    if (vd.cfg.tcp_addr && !vd.cfg.token_file) return args_error(&vivd_cmd, "--tcp needs --token-file: TCP is never served without a token");
    return 0;
}

/* ---------------------------------------------------------------- loop */

/* The HTTP front (http_front.c): a process of its own that is a client of
 * our Unix socket, so its calls meet the same admission, limits and log as
 * any other. It dies with us (parent-death signal) or at shutdown. */
static pid_t http_pid = -1;

/* A request's "client" (rpc.h): the HTTP front's connection takes on the
 * HTTP client it serves as its peer, so the per-peer caps, the lost-session
 * ring and the log count that client; one client per connection, and no
 * other connection may claim one. */
static int conn_speak_for(struct conn *c, const char *client, char *msg, size_t msglen) {
    struct ucred cred;
    socklen_t cl = sizeof cred;
    if (c->is_tcp || http_pid <= 0 || getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 || cred.pid != http_pid)
        return fail_with(msg, msglen, "'client' is accepted only from vivd's own HTTP front");
    char peer[sizeof c->peer];
    snprintf(peer, sizeof peer, "http:%s", client);
    if (c->speaks_for_client && strcmp(peer, c->peer) != 0)
        return fail_with(msg, msglen, "this connection already speaks for another client");
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->speaks_for_client = true;
    return 0;
}

static int start_http_front(char *err, size_t errlen) {
    int fd = http_listen(vd.cfg.http_addr, vd.token[0] != 0, err, errlen);
    if (fd < 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        return fail_with(err, errlen, "--http: fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(vd.listen_fd), close(vd.epfd), front_door_drop_reserve();
        if (vd.tcp_fd >= 0) close(vd.tcp_fd);
        if (vd.log_file) fclose(vd.log_file), vd.log_file = NULL;
        _exit(http_front_main(fd, vd.cfg.socket_path, vd.token, vd.cfg.max_line));
    }
    close(fd);
    http_pid = pid;
    log_line("\"op\":\"http\",\"listen\":\"%s\",\"token\":%s", vd.cfg.http_addr, vd.token[0] ? "true" : "false");
    return 0;
}

static void begin_shutdown(void) {
    if (http_pid > 0) kill(http_pid, SIGTERM);
    if (vd.stopping) return;
    vd.stopping = true;
    vd.stop_deadline = now_ms() + (double)vd.cfg.grace_ms;
    log_line("\"op\":\"shutdown\",\"running\":%d,\"queued\":%d", vd.nrunning, vd.nqueued);
    if (vd.listen_fd >= 0) epoll_ctl(vd.epfd, EPOLL_CTL_DEL, vd.listen_fd, NULL), close(vd.listen_fd), vd.listen_fd = -1;
    if (vd.tcp_fd >= 0) epoll_ctl(vd.epfd, EPOLL_CTL_DEL, vd.tcp_fd, NULL), close(vd.tcp_fd), vd.tcp_fd = -1;
    unlink(vd.cfg.socket_path);
    while (vd.queue_head) {
        struct job *j = vd.queue_head;
        vd.queue_head = j->next;
        conn_send_error(j->conn, j->req.id_json, "shutting_down", "vivd is shutting down");
        if (j->conn) j->conn->jobs--;
        job_free(j);
    }
    vd.queue_tail = NULL;
    vd.nqueued = 0;
    for (struct zygote *z = vd.zygotes, *next; z; z = next) { /* busy ones finish their job first */
        next = z->next;
        if (!z->job) zygote_destroy(z, "");
    }
    for (struct session *s = vd.sessions, *next; s; s = next) { /* busy ones finish their call first */
        next = s->next;
        if (!s->pending_id) session_destroy(s, "", "");
    }
}

static void handle_signals(void) {
    struct signalfd_siginfo si;
    while (read(vd.sigfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGCHLD) {
            while (waitpid(-1, NULL, WNOHANG) > 0) {}
        } else {
            begin_shutdown();
        }
    }
}

static void tick(void) {
    double now = now_ms();
    for (struct session *s = vd.sessions, *next; s; s = next) {
        next = s->next;
        if (!s->pending_id && now - s->last_used > (double)vd.cfg.session_idle_ms) {
            log_line("\"peer\":\"%s\",\"op\":\"session_expire\",\"outcome\":\"idle\"", s->peer);
            remember_lost(s, "it expired after --session-idle-ms without a call");
            session_destroy(s, "", "");
        } else if (vd.stopping && now >= vd.stop_deadline) {
            session_destroy(s, "shutting_down", "vivd is shutting down; the session was closed");
        }
    }
    for (struct conn *c = vd.conns; c; c = c->next)
        if (c->jobs == 0 && c->out_len == 0 && now - c->last_active > (double)vd.cfg.idle_ms) c->closing = true;
    front_door_tick(now);
    if (vd.stopping && now >= vd.stop_deadline) {
        /* grace is over: cancel what still runs; it is answered as cancelled */
        for (struct job *j = vd.running; j; j = j->next)
            if (!j->zygote && write(j->fd, "x", 1) < 0) {}
        for (struct zygote *z = vd.zygotes, *next; z; z = next) {
            next = z->next;
            zygote_destroy(z, "cancelled: vivd is shutting down");
        }
        vd.stop_deadline = now + 1e9;
    }
}

int vivd_main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    int prc = parse_args(argc, argv);
    if (prc) return prc == ARGS_HELP ? 0 : 2;
    char err[1024];
    vd.log_file = stderr;
    if (vd.cfg.log_path && !(vd.log_file = fopen(vd.cfg.log_path, "ae"))) {
        fprintf(stderr, "vivd: --log %s: %s\n", vd.cfg.log_path, strerror(errno));
        return 2;
    }
    if (egress_configure(vd.cfg.egress_log, vd.cfg.egress_record, vd.cfg.egress_replay, err, sizeof err) != 0) {
        fprintf(stderr, "vivd: %s\n", err);
        return 2;
    }
    if (!vd.cfg.egress_log) egress_set_log_fd(fileno(vd.log_file));
    if (load_policies(err, sizeof err)) {
        fprintf(stderr, "vivd: %s\n", err);
        return 2;
    }
    if (vd.cfg.token_file) {
        size_t n;
        char *t = read_file(vd.cfg.token_file, sizeof vd.token - 1, &n, err, sizeof err);
        if (!t) {
            fprintf(stderr, "vivd: --token-file %s\n", err);
            return 2;
        }
        while (n && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ')) t[--n] = 0;
        if (n < 16) {
            fprintf(stderr, "vivd: --token-file: the token must be at least 16 characters\n");
            free(t);
            return 2;
        }
        memcpy(vd.token, t, n + 1);
        free(t);
    }
    vd.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (front_door_init() < 0) {
        fprintf(stderr, "vivd: /dev/null: %s (kept open to refuse clients cleanly when out of fds)\n", strerror(errno));
        return 2;
    }
    if ((vd.listen_fd = listen_unix(vd.cfg.socket_path, err, sizeof err)) < 0 ||
        (vd.cfg.tcp_addr && (vd.tcp_fd = listen_tcp(vd.cfg.tcp_addr, err, sizeof err)) < 0)) {
        fprintf(stderr, "vivd: %s\n", err);
        return 2;
    }
    if (vd.cfg.http_addr && start_http_front(err, sizeof err)) {
        fprintf(stderr, "vivd: %s\n", err);
        return 2;
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    vd.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    epoll_add(vd.listen_fd, EPOLLIN, &vd.listen_ref);
    if (vd.tcp_fd >= 0) epoll_add(vd.tcp_fd, EPOLLIN, &vd.tcp_ref);
    epoll_add(vd.sigfd, EPOLLIN, &vd.signal_ref);
    vd.started_at = now_ms();
    log_line("\"op\":\"start\",\"socket\":\"%s\",\"workers\":%d,\"queue\":%d,\"policies\":%d%s", vd.cfg.socket_path,
             vd.cfg.workers, vd.cfg.queue_cap, vd.npolicies, vd.cfg.tcp_addr ? ",\"tcp\":true" : "");

    zygotes_top_up();
    while (!(vd.stopping && vd.nrunning == 0 && vd.nqueued == 0 && vd.nsessions == 0)) {
        struct epoll_event evs[64];
        int n = epoll_wait(vd.epfd, evs, 64, 200);
        for (int i = 0; i < n; i++) {
            struct ev_ref *ref = evs[i].data.ptr;
            switch (ref->tag) {
            case TAG_LISTEN: accept_clients(vd.listen_fd, false); break;
            case TAG_TCP: accept_clients(vd.tcp_fd, true); break;
            case TAG_SIGNAL: handle_signals(); break;
            case TAG_JOB: job_readable(ref->ptr); break;
            case TAG_SESSION: session_readable(ref->ptr); break;
            case TAG_ZYGOTE: zygote_readable(ref->ptr); break;
            case TAG_CONN: {
                struct conn *c = ref->ptr;
                if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) conn_readable(c);
                break;
            }
            }
        }
        tick();
        zygotes_top_up();
        /* flush output; close finished or broken connections */
        for (struct conn *c = vd.conns, *next; c; c = next) {
            next = c->next;
            if (c->out_len) conn_flush(c);
            if (c->closing) {
                conn_close(c);
                continue;
            }
            bool want = c->out_len > 0;
            if (want != c->want_out) { /* wake up when the client can take more */
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0u), .data.ptr = &c->ref};
                epoll_ctl(vd.epfd, EPOLL_CTL_MOD, c->fd, &ev);
                c->want_out = want;
            }
        }
    }
    /* last answers: give each client up to a second to take them */
    for (struct conn *c = vd.conns; c; c = c->next) {
        int fl = fcntl(c->fd, F_GETFL);
        fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
        struct timeval tv = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        conn_flush(c);
    }
    log_line("\"op\":\"stop\",\"requests\":%ld,\"completed\":%ld", vd.stats.requests, vd.stats.completed);
    return 0;
}
