/*
 * vivd_internal.h - what the daemon's files share: the kinds of thing the
 * event loop serves (connections, jobs, sessions, zygotes), the daemon's
 * one state struct, and the functions one file calls in another. Not an
 * API: only the daemon's own files include it.
 */
#ifndef VIV_VIVD_INTERNAL_H
#define VIV_VIVD_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "../jail/jail.h"
#include "../jail/syscall_filter.h"
#include "rpc.h"

#define MAX_POLICIES 32
#define MAX_DATA 16

struct loaded_policy {
    struct policy policy;
    struct sock_fprog filter;
    /* zygotes (zygote.c), for policies with a preload list */
    bool zygotes_on;                /* supported, and not given up on */
    struct sock_fprog zygote_filter;
    int zygote_fail_streak;         /* zygotes that failed to start, in a row */
    double zygote_next_start;       /* backoff after a failure */
    long zygotes_started, zygotes_lost;
    long count;
    double wall_ms_total;
};

struct config {
    const char *socket_path;
    const char *tcp_addr;
    const char *token_file;
    const char *http_addr;
    const char *policies_dir;
    const char *log_path;
    const char *egress_log, *egress_record, *egress_replay;
    int workers, queue_cap;
    long idle_ms, grace_ms;
    size_t max_line;
    long max_line_arg, auth_line_arg; /* as parsed (args.h stores longs) */
    /* before a TCP connection's token line (see "the front door") */
    long auth_ms;
    size_t auth_line;
    int max_unauth, max_unauth_per_peer;
    long session_idle_ms;
    int max_sessions_per_peer;
    int zygotes; /* per policy with a preload list; 0 = none */
    struct jail_data data[MAX_DATA];
    int ndata;
};

/* epoll data: a tagged pointer so one loop serves every kind of fd. */
enum tag { TAG_LISTEN, TAG_TCP, TAG_SIGNAL, TAG_CONN, TAG_JOB, TAG_SESSION, TAG_ZYGOTE };
struct ev_ref {
    enum tag tag;
    void *ptr;
};

struct conn {
    struct ev_ref ref;
    int fd;
    bool want_out; /* EPOLLOUT registered */
    char peer[96];
    bool is_tcp, authed, closing;
    bool speaks_for_client; /* the HTTP front's: peer is "http:CLIENT" */
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off;
    int jobs;       /* running or queued jobs of this connection */
    double accepted, last_active;
    struct conn *next;
};

struct job {
    struct ev_ref ref;
    struct conn *conn; /* NULL once the client is gone */
    struct rpc_request req;
    struct loaded_policy *lp;
    pid_t worker;
    int fd;            /* daemon's end of the worker's socketpair (-1 on a zygote) */
    struct zygote *zygote; /* the zygote running it, or NULL for a cold jail */
    char *result;
    size_t result_len;
    double started;
    struct job *next;  /* queue or running list */
};

/* A session (see session.c): a long-lived worker that owns one jail. It
 * belongs to the connection that opened it and dies with it; one call at a
 * time (a second concurrent call is answered "busy"). */
struct session {
    struct ev_ref ref;
    char id[40];          /* "s-" + 32 hex digits from getrandom() */
    struct conn *conn;    /* owner */
    char peer[96];        /* for the per-peer cap */
    struct loaded_policy *lp;
    pid_t worker;
    int fd;               /* daemon's end of the worker's socketpair */
    char *in;             /* partial line from the worker */
    size_t in_len;
    bool opening;         /* session_open not answered yet */
    char *pending_id;     /* id of the request awaiting the worker's line, or NULL */
    struct rpc_request call; /* the exec in flight (for the log) */
    double call_started, last_used;
    struct session *next;
};

/* A zygote worker (zygote.c): one warmed interpreter of a policy that runs
 * one-shot jobs one at a time, each in a fresh isolated child. */
struct zygote {
    struct ev_ref ref;
    struct loaded_policy *lp;
    pid_t worker;
    int fd;           /* daemon's end of the worker's socketpair */
    bool ready;       /* it said {"ok":true}: the preload is imported */
    double since;
    struct job *job;  /* the job in flight, or NULL when idle */
    char *in;         /* partial line from the worker */
    size_t in_len;
    struct zygote *next;
};

/* The daemon's state: one owner, shared by vivd.c (the loop, connections,
 * requests), jobs.c, zygote_pool.c, session_table.c and front_door.c. */
struct vivd {
    struct config cfg;
    struct loaded_policy policies[MAX_POLICIES];
    int npolicies;
    int epfd, sigfd, listen_fd, tcp_fd;
    char token[256];
    struct conn *conns;
    struct job *queue_head, *queue_tail, *running;
    int nqueued, nrunning, nconns;
    int nunauth; /* TCP connections that have not sent a good token yet */
    int ncold;   /* running jobs in cold jails (at most cfg.workers) */
    long cold_started; /* cold jobs started so far: job N is "j-N" in the egress log */
    struct session *sessions;
    int nsessions;
    struct zygote *zygotes;
    bool stopping;
    double stop_deadline, started_at;
    FILE *log_file;
    struct {
        long requests, completed, busy, errors, timeouts, cancelled;
    } stats;
    struct ev_ref listen_ref, tcp_ref, signal_ref;
};
extern struct vivd vd;

void conn_answer(struct conn *c, const char *id, const char *object);
void conn_send_error(struct conn *c, const char *id, const char *code, const char *msg);
char *refusal_line(const char *code, const char *msg);
void conn_refuse(struct conn *c, const char *code, const char *msg);
void job_free(struct job *j);
void log_request(const struct conn *c, const struct rpc_request *req, double wall_ms,
                 const char *outcome);
pid_t fork_worker(int *fd);
bool can_start_now(const struct loaded_policy *lp, bool cold);
void pump_queue(void);
void job_finish(struct job *j, const char *result);
void job_readable(struct job *j);
struct zygote *idle_zygote(const struct loaded_policy *lp);
bool zygote_ready(const struct loaded_policy *lp);
void zygote_destroy(struct zygote *z, const char *why);
void zygote_readable(struct zygote *z);
void zygotes_top_up(void);
void peer_key(const struct conn *c, char *out, size_t outlen);
void remember_lost(const struct session *s, const char *why);
void session_destroy(struct session *s, const char *code, const char *why);
void session_open(struct conn *c, struct rpc_request *req);
int send_frame(int fd, const char *buf, size_t len);
bool session_exec(struct conn *c, struct rpc_request *req);
void session_close_req(struct conn *c, struct rpc_request *req);
int read_worker_lines(int fd, char **in, size_t *in_len, bool (*on_line)(void *, const char *), void *owner);
void session_readable(struct session *s);
int front_door_init(void);
void front_door_drop_reserve(void);
void accept_clients(int lfd, bool tcp);
void front_door_tick(double now);
void epoll_add(int fd, uint32_t events, struct ev_ref *ref);
void log_line(const char *fmt, ...);
struct loaded_policy *find_policy(const char *name);

#endif
