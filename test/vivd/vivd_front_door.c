/* vivd_front_door.c - part of vivd_tests.c (one translation unit, its harness
 * and helpers): the front door: the token line, unauthenticated caps, running out of fds. */

/* ------------------------------------------------------------------ the front door */

/* A free TCP address on loopback ("127.0.0.1:PORT") and a token file. */
static int tcp_setup(char *addr, size_t addrlen, char *tok_path) {
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof sa;
    int rc = bind(probe, (struct sockaddr *)&sa, sizeof sa) == 0 && getsockname(probe, (struct sockaddr *)&sa, &slen) == 0 ? 0 : -1;
    close(probe);
    snprintf(addr, addrlen, "127.0.0.1:%d", ntohs(sa.sin_port));
    strcpy(tok_path, "/tmp/vivd-token-XXXXXX");
    int tfd = mkstemp(tok_path);
    if (tfd < 0 || write(tfd, "0123456789abcdef-secret\n", 24) != 24) rc = -1;
    if (tfd >= 0) close(tfd);
    return rc;
}

#define GOOD_TOKEN "0123456789abcdef-secret"

/* A TCP connection to addr ("127.0.0.1:PORT") from the loopback address src
 * (127.0.0.0/8 all reach lo: distinct peers on one host). -1 on failure,
 * with errno. */
static int tcp_connect_from(const char *src, const char *addr) {
    struct sockaddr_in from = {.sin_family = AF_INET}, to = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &from.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    to.sin_port = htons((uint16_t)atoi(strrchr(addr, ':') + 1));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&from, sizeof from) != 0 || connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* One "stats" field of the daemon, asked over its Unix socket; -1 if none. */
static int daemon_stat(const struct daemon *d, const char *key) {
    char err[256];
    struct viv_client *c = viv_connect(d->sock, err, sizeof err);
    if (!c) return -1;
    struct viv_response *r = viv_wait(c, viv_submit_op(c, "stats"), 5000);
    const cJSON *v = r ? cJSON_GetObjectItem(r->json, key) : NULL;
    int n = cJSON_IsNumber(v) ? v->valueint : -1;
    viv_response_free(r);
    viv_close(c);
    return n;
}

/* Wait (up to 5 s) until the daemon counts `want` connections waiting to authenticate. */
static bool unauth_settles_at(const struct daemon *d, int want) {
    for (int i = 0; i < 500; i++) {
        if (daemon_stat(d, "unauthenticated") == want) return true;
        usleep(10000);
    }
    return false;
}

static int log_count(const char *path, const char *needle) {
    char err[128];
    size_t n;
    char *log = read_file(path, 16 << 20, &n, err, sizeof err);
    int count = 0;
    for (const char *p = log; p && (p = strstr(p, needle)); p += strlen(needle)) count++;
    free(log);
    return count;
}

/* utime + stime of a process, in clock ticks (/proc/PID/stat fields 14, 15). */
static long cpu_ticks(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return -1;
    return (long)(ut + st);
}

static bool ping_ok(struct viv_client *c) {
    struct viv_response *r = viv_wait(c, viv_submit_op(c, "ping"), 5000);
    bool ok = r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "pong"));
    viv_response_free(r);
    return ok;
}

/* The attack: 40 connections each send '{"token":"' and then 7 MiB without
 * a newline, and stay open. Before authentication vivd takes only a short
 * line: each is refused with a line naming --auth-line-bytes, its RSS
 * stays where it was, and a client that has the token is served. */
static void test_tcp_token_line_is_short(void) {
    char addr[32], tok[32];
    CHECK(tcp_setup(addr, sizeof addr, tok) == 0, "tcp setup");
    START(d, "--tcp", addr, "--token-file", tok, "--zygotes", "0", NULL);
    char err[256];
    struct viv_client *good = viv_connect_tcp(addr, GOOD_TOKEN, err, sizeof err);
    unlink(tok);
    CHECK(good, "the right token was refused: %s", err);
    long rss0 = rss_kb(d.pid);
    enum { NCONN = 40 };
    size_t body = 7u << 20, chunk = 1u << 16;
    char *junk = malloc(chunk);
    memset(junk, 'a', chunk);
    int fds[NCONN], refused = 0;
    size_t most_sent = 0;
    char first_line[512] = "";
    for (int k = 0; k < NCONN; k++) {
        fds[k] = tcp_connect_from("127.0.0.1", addr);
        CHECK(fds[k] >= 0, "connect: %s", strerror(errno));
        CHECK(write_all(fds[k], "{\"token\":\"", 10) == 0, "send");
        fcntl(fds[k], F_SETFL, O_NONBLOCK);
        size_t sent = 0;
        while (sent < body) {
            ssize_t w = send(fds[k], junk, chunk < body - sent ? chunk : body - sent, MSG_NOSIGNAL);
            if (w > 0) {
                sent += (size_t)w;
                continue;
            }
            if (w < 0 && errno != EAGAIN) break; /* vivd closed it */
            struct pollfd p = {fds[k], POLLOUT, 0};
            if (poll(&p, 1, 2000) <= 0 || (p.revents & (POLLHUP | POLLERR))) break;
        }
        if (sent > most_sent) most_sent = sent;
        fcntl(fds[k], F_SETFL, 0);
        char *line = raw_roundtrip(fds[k], NULL, 0);
        if (strstr(line, "\"bad_request\"") && strstr(line, "--auth-line-bytes")) refused++;
        if (k == 0) snprintf(first_line, sizeof first_line, "%s", line);
    }
    free(junk);
    long rss1 = rss_kb(d.pid); /* the attack's connections are all still open on this side */
    bool served = ping_ok(good);
    for (int k = 0; k < NCONN; k++) close(fds[k]);
    viv_close(good);
    int logged = log_count(d.log, "(--auth-line-bytes)");
    CHECK(rss1 - rss0 < 16 * 1024, "vivd RSS grew from %ld to %ld kB under %d unauthenticated 7 MiB lines", rss0, rss1,
          NCONN);
    CHECK(refused == NCONN, "%d of %d over-long token lines refused with a line; the first got: %.200s", refused, NCONN,
          first_line);
    CHECK(served, "the authenticated client's ping went unanswered");
    CHECK(logged == NCONN, "%d refusals in the log, %d expected", logged, NCONN);
    NOTE("RSS %ld -> %ld kB; at most %zu bytes sent before a refusal", rss0, rss1, most_sent);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* A client that trickles its token line a byte at a time (so it is never
 * idle) is still refused once --auth-ms from connecting has passed: the
 * trickle outlasts the deadline five times over. */
static void test_tcp_token_deadline_not_extended_by_trickle(void) {
    char addr[32], tok[32];
    CHECK(tcp_setup(addr, sizeof addr, tok) == 0, "tcp setup");
    START(d, "--tcp", addr, "--token-file", tok, "--zygotes", "0", "--auth-ms", "500", NULL);
    char err[256];
    struct viv_client *good = viv_connect_tcp(addr, GOOD_TOKEN, err, sizeof err);
    unlink(tok);
    CHECK(good, "the right token was refused: %s", err);
    int fd = tcp_connect_from("127.0.0.1", addr);
    CHECK(fd >= 0, "connect: %s", strerror(errno));
    const char *slow = "{\"token\":\"0123456789abcdef-wrong-but-slow-so-never-judged\"}"; /* no newline: never judged */
    int refused_after = -1;
    char got[512] = "";
    for (int i = 0; i < 25 && refused_after < 0; i++) { /* 25 x 100 ms: 5x the deadline */
        if (send(fd, slow + i, 1, MSG_NOSIGNAL) != 1) {
            refused_after = i;
            break;
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) == 1) refused_after = i + 1;
    }
    if (refused_after >= 0) snprintf(got, sizeof got, "%s", raw_roundtrip(fd, NULL, 0));
    close(fd);
    bool served = ping_ok(good);
    viv_close(good);
    int logged = log_count(d.log, "no token line within 500 ms (--auth-ms)");
    CHECK(refused_after >= 0, "a connection trickling its token line was kept 2.5 s past a 500 ms --auth-ms");
    CHECK(strstr(got, "\"unauthorized\"") && strstr(got, "--auth-ms"), "the refusal line: %.200s", got);
    CHECK(served, "the authenticated client's ping went unanswered");
    CHECK(logged == 1, "%d deadline refusals in the log, 1 expected", logged);
    NOTE("refused after %d trickled bytes", refused_after);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* Connections that never authenticate are capped per address and in all:
 * past either cap a new one gets a "busy" line naming the flag and is
 * logged, while an authenticated client is served throughout, and a client
 * with the token gets in once a place is free. */
static void test_tcp_unauthenticated_capped(void) {
    char addr[32], tok[32];
    CHECK(tcp_setup(addr, sizeof addr, tok) == 0, "tcp setup");
    int probe = tcp_connect_from("127.0.0.2", addr); /* is 127.0.0.2 usable here? (nothing listens yet) */
    if (probe < 0 && errno == EADDRNOTAVAIL) {
        unlink(tok);
        SKIP("this host's loopback has no 127.0.0.2: two peer addresses are needed");
    }
    if (probe >= 0) close(probe);
    START(d, "--tcp", addr, "--token-file", tok, "--zygotes", "0", "--max-unauth-per-peer", "2", "--max-unauth", "3",
          NULL);
    char err[256];
    struct viv_client *good = viv_connect_tcp(addr, GOOD_TOKEN, err, sizeof err);
    CHECK(good, "the right token was refused: %s", err);
    int a1 = tcp_connect_from("127.0.0.1", addr), a2 = tcp_connect_from("127.0.0.1", addr);
    CHECK(a1 >= 0 && a2 >= 0 && unauth_settles_at(&d, 2), "two silent connections from 127.0.0.1 were not held");
    int a3 = tcp_connect_from("127.0.0.1", addr);
    char per_peer[512], in_all[512];
    snprintf(per_peer, sizeof per_peer, "%s", a3 >= 0 ? raw_roundtrip(a3, NULL, 0) : "");
    CHECK(strstr(per_peer, "\"busy\"") && strstr(per_peer, "(--max-unauth-per-peer)"), "third from one address got: %.200s",
          per_peer);
    int b1 = tcp_connect_from("127.0.0.2", addr);
    CHECK(b1 >= 0 && unauth_settles_at(&d, 3), "a silent connection from 127.0.0.2 was not held");
    int b2 = tcp_connect_from("127.0.0.2", addr);
    snprintf(in_all, sizeof in_all, "%s", b2 >= 0 ? raw_roundtrip(b2, NULL, 0) : "");
    bool served = ping_ok(good);
    struct viv_client *late = viv_connect_tcp(addr, GOOD_TOKEN, err, sizeof err); /* no place left for it */
    bool late_refused = late == NULL;
    viv_close(late);
    close(a1);
    bool freed = unauth_settles_at(&d, 2);
    struct viv_client *later = viv_connect_tcp(addr, GOOD_TOKEN, err, sizeof err);
    bool later_served = later && ping_ok(later);
    viv_close(later);
    unlink(tok);
    close(a2), close(a3), close(b1), close(b2);
    viv_close(good);
    CHECK(strstr(in_all, "\"busy\"") && strstr(in_all, "(--max-unauth)"), "fourth in all got: %.200s", in_all);
    CHECK(served, "the authenticated client's ping went unanswered");
    CHECK(late_refused, "a fourth connection waiting to authenticate was let in past --max-unauth 3");
    CHECK(freed && later_served, "a client with the token was not served once a place was free: %s", err);
    CHECK(log_count(d.log, "(--max-unauth-per-peer)\"") == 1 && log_count(d.log, "(--max-unauth); retry later\"") == 2,
          "the refusals are not in the log");
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* Open Unix connections until vivd can take no more: returns how many it
 * took (held in fds), and in *refused the line that turned the next away
 * (empty when nothing answered it within 2 s). */
/* The "refused" count of the log's first fds_available line, or -1. */
static int log_refused_count(const char *log_path) {
    size_t n = 0;
    char err[64];
    char *log = read_file(log_path, 1 << 22, &n, err, sizeof err);
    const char *at = log ? strstr(log, "\"outcome\":\"fds_available\",\"refused\":") : NULL;
    int v = at ? atoi(at + strlen("\"outcome\":\"fds_available\",\"refused\":")) : -1;
    free(log);
    return v;
}

static int fill_fds(const struct daemon *d, int *fds, int max, char *refused, size_t rlen) {
    int n = 0;
    refused[0] = 0;
    while (n < max) {
        int before = count_fds(d->pid), fd = try_connect(d->sock);
        if (fd < 0) break;
        bool taken = false;
        for (int i = 0; i < 2000 && !taken; i++) { /* accepted (its fd count rises) or refused (a line); 10 s on a loaded host */
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 5) == 1) break;
            taken = count_fds(d->pid) > before;
        }
        if (!taken) {
            snprintf(refused, rlen, "%s", raw_roundtrip(fd, NULL, 0));
            close(fd);
            break;
        }
        fds[n++] = fd;
    }
    return n;
}

/* With its fd limit reached, vivd neither spins (its CPU over an idle
 * second, with a client waiting, stays far under a busy loop's) nor stops
 * serving the connections it has; every new client is refused with a line
 * (Unix and TCP alike), the episode is logged once however many are
 * refused, and once fds free up a new client is served. */
static void test_out_of_fds_no_spin(void) {
    char addr[32], tok[32];
    CHECK(tcp_setup(addr, sizeof addr, tok) == 0, "tcp setup");
    daemon_nofile = 40;
    START(d, "--tcp", addr, "--token-file", tok, "--zygotes", "0", NULL);
    daemon_nofile = 0;
    char err[256];
    struct viv_client *mine = viv_connect(d.sock, err, sizeof err);
    struct viv_client *mine_tcp = viv_connect_tcp(addr, GOOD_TOKEN, err, sizeof err);
    unlink(tok);
    CHECK(mine && mine_tcp, "clients: %s", err);
    int held[64];
    char line[512];
    char first[512];
    int n = fill_fds(&d, held, 64, first, sizeof first);
    CHECK(n > 0 && n < 64, "took %d connections under a limit of 40 fds", n);
    /* a client waits in the backlog: an idle second must not be spent on it */
    int waiting = try_connect(d.sock);
    long clk = sysconf(_SC_CLK_TCK), t0 = cpu_ticks(d.pid);
    double w0 = now_ms();
    usleep(1000000);
    long t1 = cpu_ticks(d.pid);
    double wall_ticks = (now_ms() - w0) / 1000.0 * (double)clk, ratio = (double)(t1 - t0) / wall_ticks;
    snprintf(line, sizeof line, "%s", raw_roundtrip(waiting, NULL, 0));
    close(waiting);
    bool waiting_refused = strstr(line, "out of file descriptors") != NULL;
    int more_refused = 0;
    for (int k = 0; k < 5; k++) {
        int fd = try_connect(d.sock);
        more_refused += strstr(raw_roundtrip(fd, NULL, 0), "out of file descriptors") != NULL;
        close(fd);
    }
    int tcp = tcp_connect_from("127.0.0.1", addr);
    bool tcp_refused = strstr(raw_roundtrip(tcp, NULL, 0), "out of file descriptors") != NULL;
    close(tcp);
    bool served = ping_ok(mine), served_tcp = ping_ok(mine_tcp);
    int episodes = log_count(d.log, "\"outcome\":\"out_of_fds\"");
    CHECK(t0 >= 0 && t1 >= 0 && ratio < 0.2, "vivd used %ld CPU ticks in %.0f idle ones at its fd limit", t1 - t0,
          wall_ticks);
    CHECK(strstr(first, "\"busy\"") && strstr(first, "out of file descriptors"), "the first client past the limit got: %.200s",
          first);
    CHECK(waiting_refused && more_refused == 5 && tcp_refused, "clients past the limit were not refused with a line");
    CHECK(served && served_tcp, "a connection already open was not served at the fd limit");
    CHECK(episodes == 1, "%d out_of_fds lines in the log for one episode", episodes);
    /* fds free up: the next client is served, and the episode's end is logged */
    for (int k = 0; k < 3; k++) close(held[--n]);
    struct viv_client *next = NULL;
    for (int i = 0; i < 200 && !next; i++) {
        next = viv_connect(d.sock, err, sizeof err);
        if (next && !ping_ok(next)) viv_close(next), next = NULL, usleep(10000);
    }
    CHECK(next, "no new client was served after fds freed up");
    viv_close(next);
    /* at least the 8 refused above (more if a retry here came before vivd saw the fds close) */
    int refused_logged = log_refused_count(d.log);
    CHECK(log_count(d.log, "\"outcome\":\"fds_available\"") == 1 && refused_logged >= 8,
          "the episode's end is not in the log once with its refusals (%d)", refused_logged);
    while (n) close(held[--n]);
    viv_close(mine);
    viv_close(mine_tcp);
    NOTE("%ld CPU ticks in %.0f at the fd limit (ratio %.3f)", t1 - t0, wall_ticks, ratio);
    CHECK(daemon_stop(&d) == 0, "exit status");
}
