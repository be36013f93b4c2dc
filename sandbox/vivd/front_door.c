/*
 * front_door.c - accepting clients: what a connection may cost vivd
 * before its token line, and what vivd does when it runs out of fds.
 */
#define _GNU_SOURCE
#include "vivd_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "../base/util.h"

/* ---------------------------------------------------------------- the front door
 *
 * Before its token line a TCP connection belongs to nobody, so it may cost
 * vivd only a little: a line of --auth-line-bytes, --auth-ms from accept
 * however slowly it trickles, and one of a bounded number of places
 * (--max-unauth in all, --max-unauth-per-peer per address). Past those it is
 * refused with a line and logged. Unix clients are authenticated by the
 * socket's mode and never wait here.
 *
 * Out of file descriptors, accept() fails (EMFILE, ENFILE) while the
 * listening socket stays readable, and a level-triggered loop would spin on
 * it. vivd keeps one fd in reserve: it gives it up, accepts the waiting
 * client, refuses it with a line, closes it and takes the reserve back, so
 * the backlog drains and the loop sleeps while the open connections are
 * served as before. When even that fails (the system as a whole is out of
 * files, or out of memory), the listeners pause until a tick finds an fd
 * free. Each episode is logged once when it starts and once when it ends. */

static int reserve_fd = -1;
static bool out_of_fds;          /* in an episode */
static long out_of_fds_refused;  /* clients turned away in it */
static bool listeners_paused;

static int take_reserve(void) { return open("/dev/null", O_RDONLY | O_CLOEXEC); }

/* At start-up: the reserve fd is taken before any client can use it up. */
int front_door_init(void) { return (reserve_fd = take_reserve()) < 0 ? -1 : 0; }

/* In a child that accepts no clients of ours (the HTTP front). */
void front_door_drop_reserve(void) {
    if (reserve_fd >= 0) close(reserve_fd), reserve_fd = -1;
}

static void listeners_set(bool on) {
    if (listeners_paused == !on) return;
    listeners_paused = !on;
    int fds[2] = {vd.listen_fd, vd.tcp_fd};
    struct ev_ref *refs[2] = {&vd.listen_ref, &vd.tcp_ref};
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0) {
            if (on) epoll_add(fds[i], EPOLLIN, refs[i]);
            else epoll_ctl(vd.epfd, EPOLL_CTL_DEL, fds[i], NULL);
        }
}

/* Refuse a client vivd will not serve: one error line on the fresh socket
 * (its send buffer takes it at once), then close. */
static void refuse_fd(int fd, const char *code, const char *msg) {
    char *line = refusal_line(code, msg);
    if (send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {} /* best effort: the close says it too */
    free(line);
    close(fd);
}

static void fds_episode_begin(int err) {
    if (out_of_fds) return;
    out_of_fds = true;
    out_of_fds_refused = 0;
    log_line("\"op\":\"accept\",\"outcome\":\"out_of_fds\",\"detail\":\"%s; new clients are refused until fds free up\","
             "\"connections\":%d",
             strerror(err), vd.nconns);
}

static void fds_episode_end(void) {
    if (!out_of_fds) return;
    out_of_fds = false;
    log_line("\"op\":\"accept\",\"outcome\":\"fds_available\",\"refused\":%ld", out_of_fds_refused);
}

/* accept() failed for want of fds or memory: turn away what waits on lfd
 * through the reserve fd, or pause the listeners when that cannot work.
 * accept() takes the fd before it looks at the backlog, so EMFILE may come
 * with nobody waiting (the last fd just went to a client): the episode
 * starts only when someone is turned away. */
static void accept_starved(int lfd, int err) {
    bool reserve_helps = err == EMFILE || err == ENFILE;
    for (int i = 0; i < 64 && reserve_helps && reserve_fd >= 0; i++) {
        close(reserve_fd);
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), e = fd < 0 ? errno : 0;
        if (fd >= 0) {
            fds_episode_begin(err);
            refuse_fd(fd, "busy", "vivd is out of file descriptors; retry later");
            out_of_fds_refused++;
        }
        reserve_fd = take_reserve();
        if (e == EAGAIN || e == EWOULDBLOCK) return;  /* drained: epoll wakes us for the next */
        if (e != 0 && e != EINTR && e != ECONNABORTED) reserve_helps = false;
    }
    if (reserve_helps && reserve_fd >= 0) return; /* 64 turned away, more wait: epoll brings us back */
    fds_episode_begin(err);
    listeners_set(false); /* front_door_tick() resumes them once an fd is free again */
}

/* A new TCP client may wait for its token line only while the caps allow:
 * NULL, or the refusal's message (in msg). */
static const char *unauth_cap_reached(const struct conn *nc, char *msg, size_t len) {
    if (vd.nunauth >= vd.cfg.max_unauth) {
        snprintf(msg, len, "%d connections are waiting to authenticate, the most allowed (--max-unauth); retry later",
                 vd.nunauth);
        return msg;
    }
    char key[96], other[96];
    peer_key(nc, key, sizeof key);
    int mine = 0;
    for (struct conn *c = vd.conns; c; c = c->next)
        if (c->is_tcp && !c->authed) {
            peer_key(c, other, sizeof other);
            mine += strcmp(key, other) == 0;
        }
    if (mine >= vd.cfg.max_unauth_per_peer) {
        snprintf(msg, len, "%d connections from %s are waiting to authenticate, the most allowed (--max-unauth-per-peer)",
                 mine, key + 4 /* past "tcp:" */);
        return msg;
    }
    return NULL;
}

static void conn_set_peer(struct conn *c, int fd, const struct sockaddr_storage *sa) {
    if (c->is_tcp) {
        char host[64] = "?";
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(c->peer, sizeof c->peer, "tcp:%s:%d", host, ntohs(in->sin_port));
    } else {
        struct ucred cred;
        socklen_t cl = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
            snprintf(c->peer, sizeof c->peer, "uid:%u", (unsigned)cred.uid);
        else
            snprintf(c->peer, sizeof c->peer, "uid:?");
    }
}

void accept_clients(int lfd, bool tcp) {
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t slen = sizeof sa;
        int fd = accept4(lfd, (struct sockaddr *)&sa, &slen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) accept_starved(lfd, errno);
            return;
        }
        fds_episode_end();
        struct conn *c = xcalloc(1, sizeof *c);
        c->fd = fd;
        c->is_tcp = tcp;
        c->accepted = c->last_active = now_ms();
        conn_set_peer(c, fd, &sa);
        char msg[200];
        if (tcp && unauth_cap_reached(c, msg, sizeof msg)) {
            log_line("\"peer\":\"%s\",\"op\":\"auth\",\"outcome\":\"refused\",\"detail\":\"%s\"", c->peer, msg);
            refuse_fd(fd, "busy", msg);
            free(c);
            continue;
        }
        if (tcp) vd.nunauth++;
        c->next = vd.conns;
        vd.conns = c;
        vd.nconns++;
        c->ref = (struct ev_ref){TAG_CONN, c};
        epoll_add(fd, EPOLLIN | EPOLLRDHUP, &c->ref);
    }
}

/* Called every loop turn: TCP clients past --auth-ms without a good token
 * line are refused (counted from accept, so trickled bytes buy nothing),
 * and paused listeners resume once an fd is free for the reserve. */
void front_door_tick(double now) {
    for (struct conn *c = vd.conns; c; c = c->next)
        if (c->is_tcp && !c->authed && !c->closing && now - c->accepted > (double)vd.cfg.auth_ms) {
            char msg[120];
            snprintf(msg, sizeof msg, "no token line within %ld ms (--auth-ms)", vd.cfg.auth_ms);
            conn_refuse(c, "unauthorized", msg);
        }
    if (listeners_paused && !vd.stopping && (reserve_fd >= 0 || (reserve_fd = take_reserve()) >= 0))
        listeners_set(true);
}
