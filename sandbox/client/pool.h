/*
 * pool.h - several vivd hosts used as one sandbox.
 *
 *   struct viv_pool *p = viv_pool_open("unix:/run/vivd.sock,tcp:10.0.0.7:7070", token, stderr, err, sizeof err);
 *   int h = viv_pool_pick(p);                          // the least loaded host that is up
 *   long id = viv_submit_exec(viv_pool_client(p, h), "python", code, len, 5000);
 *   struct viv_response *r = viv_pool_next(p, 100, &h); // an answer from any host
 *
 * An address is a Unix socket (`unix:/path`, or a path starting with / or .)
 * or `tcp:HOST:PORT` (HOST an IPv4 address or a name), which needs the token
 * vivd was started with (--token-file). Handles are per host: a caller keeps
 * (host, handle) pairs.
 *
 * Load: a host's load is its requests in flight divided by its capacity,
 * the number of jobs it runs at once (vivd's `workers`, from `stats` at
 * connect; lowered when the host answers "busy" because its queue is full).
 * viv_pool_pick() returns the up host with the lowest (in flight + 1) /
 * capacity, ties going to the host that was given fewer calls.
 *
 * Failure: when a host's connection breaks, the client completes every
 * request in flight there with error code "disconnected" (viv_pool_next
 * hands those out like any answer); the host is marked down, its connection
 * dropped once those are taken, and its `epoch` goes up (sessions opened on
 * it are gone). Reconnection is tried from viv_pool_pick()/viv_pool_next()
 * with backoff (0.5 s doubling to 30 s). Up and down events are logged.
 */
#ifndef VIV_POOL_H
#define VIV_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "client.h"

#define VIV_POOL_MAX_HOSTS 16

struct viv_pool;

struct viv_pool_host {
    char addr[192];             /* as given: unix:/path or tcp:HOST:PORT */
    bool up;
    int capacity;               /* jobs at once (workers; lowered by "busy") */
    int epoch;                  /* +1 each time the connection is lost: its sessions are gone */
    long calls;                 /* exec and session_open requests sent through viv_pool_note_call */
    long downs;                 /* times it went down */
};

/* Check an address list without connecting: 0, or -1 with a message
 * naming the bad address (for a usage error). needs_token is set when a
 * TCP address is in the list. */
int viv_pool_check(const char *spec, bool *needs_token, char *err, size_t errlen);

/* Read a token the way vivd reads --token-file (the file's text, trailing
 * whitespace dropped; at least 16 characters). malloc'd, or NULL with err. */
char *viv_pool_read_token(const char *path, char *err, size_t errlen);

/* The token for TCP hosts: from file if given, else $VIV_SANDBOX_TOKEN;
 * NULL with err empty when there is none, NULL with err when the file is
 * bad. malloc'd. */
char *viv_pool_token(const char *file, char *err, size_t errlen);

/* Connect to every host (each is given up to wait_ms to come up: a vivd
 * still starting refuses connections). NULL with err if an address is bad,
 * a token is refused or a host cannot be reached in time. log: where up and
 * down events go (NULL: nowhere). */
struct viv_pool *viv_pool_open(const char *spec, const char *token, FILE *log, int wait_ms, char *err,
                               size_t errlen);
void viv_pool_close(struct viv_pool *p);

int viv_pool_size(const struct viv_pool *p);
const struct viv_pool_host *viv_pool_host(const struct viv_pool *p, int host);
int viv_pool_up(const struct viv_pool *p); /* hosts up now */

/* The up host to send a new episode's session or one-shot call to (the
 * lowest load; hosts where allowed[h] is false are skipped when allowed is
 * not NULL); -1 when none is up. Retries down hosts whose backoff is over. */
int viv_pool_pick(struct viv_pool *p, const bool *allowed);

/* Try the down hosts at the next chance, whatever their backoff (a caller
 * with no host up and work to do). */
void viv_pool_retry_now(struct viv_pool *p);

/* The host's client, or NULL if it is down. Submitting through it is the
 * caller's business; count exec/session_open calls with viv_pool_note_call. */
struct viv_client *viv_pool_client(struct viv_pool *p, int host);
void viv_pool_note_call(struct viv_pool *p, int host);
/* A submit on this host returned -1: its connection is broken. */
void viv_pool_note_broken(struct viv_pool *p, int host);
/* The host answered "busy" because its queue was full: lower its capacity. */
void viv_pool_note_busy(struct viv_pool *p, int host);

/* Requests in flight on all hosts. */
int viv_pool_pending(const struct viv_pool *p);

/* The next answer from any host, waiting up to timeout_ms (0: one round of
 * I/O without waiting). *host says where it came from. NULL when nothing
 * came in time. */
struct viv_response *viv_pool_next(struct viv_pool *p, int timeout_ms, int *host);

#endif
