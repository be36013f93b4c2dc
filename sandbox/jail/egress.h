/*
 * egress.h - controlled network egress for jobs whose policy lists hosts.
 *
 * A job never gets a network interface that reaches anything. When its
 * policy has "network": {"egress": [...]}, the jail's init brings up the
 * namespace's loopback, listens on EGRESS_PROXY_ADDR:EGRESS_PROXY_PORT there,
 * hands that listening socket out to the supervisor (SCM_RIGHTS) and closes
 * its own copy, so nothing in the jail holds it. The supervisor forks the
 * proxy (egress_proxy.c), a process of its own in the host's network
 * namespace, which accepts on that socket: CONNECT host:port (HTTPS, spliced,
 * never decrypted) and absolute-form http:// requests, each allowed only to a
 * listed name or address and port. It resolves names itself, refuses
 * loopback, link-local, private, multicast, reserved and unspecified
 * addresses (and IPv6 forms that embed them) unless the policy lists that
 * very address, and connects to the address it checked. The job finds it
 * through HTTP_PROXY/HTTPS_PROXY. When the job ends the supervisor ends the
 * proxy, and with it every connection. One JSON line per connection goes to
 * the egress log.
 *
 *   egress_rules.c   policy entries, host names, address classes (pure)
 *   http_head.c      the request-head parser (pure)
 *   egress_proxy.c   the proxy process
 *   egress.c         this interface: settings, the log, the jail's listener,
 *                    starting and stopping the proxy
 */
#ifndef VIV_EGRESS_H
#define VIV_EGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "policy.h"

#define EGRESS_PROXY_ADDR "127.0.0.1"
#define EGRESS_PROXY_PORT 3128
#define EGRESS_STR_(x) #x
#define EGRESS_STR(x) EGRESS_STR_(x)
#define EGRESS_PROXY_URL "http://" EGRESS_PROXY_ADDR ":" EGRESS_STR(EGRESS_PROXY_PORT)
#define EGRESS_HEAD_MAX 16384 /* a request head, bytes */
#define EGRESS_BODY_MAX (1 << 20) /* a request body the proxy holds for record/replay */
#define EGRESS_RECORD_MAX (64 << 20) /* an answer held and recorded whole; a larger one passes through unrecorded */

/* ---------------------------------------------------------------- rules */

/* Parse one policy entry ("name:port", "*.suffix:port", "1.2.3.4:port",
 * "[v6]:port"). 0, or -1 with err saying what is wrong (the caller names
 * the entry). */
int egress_rule_parse(const char *text, struct egress_rule *r, char *err, size_t errlen);
void egress_rule_free(struct egress_rule *r);

/* A host as a job wrote it (no brackets), normalised: an address literal
 * sets *family and addr (IPv4-mapped IPv6 becomes IPv4); a name is lower-cased
 * into name (trailing dot dropped). -1 when it is neither a valid name nor a
 * plain address (so "0x7f.1", "2130706433" or "a..b" never reach a resolver). */
int egress_host_normalize(const char *host, char *name, size_t namelen, int *family, unsigned char addr[16]);

/* The rule that lets a job ask for (host, port), or NULL. */
const struct egress_rule *egress_match(const struct policy_network *n, const char *name, int family,
                                       const unsigned char *addr, int port);

/* NULL for a public unicast address; else what it is ("loopback",
 * "link-local", "private", "multicast", "unspecified", "reserved"), looking
 * through IPv4-mapped, NAT64 and 6to4 forms to the IPv4 address inside. */
const char *egress_address_class(int family, const unsigned char *addr);

/* May the proxy connect to this address and port? A public address yes; any
 * other only when the policy lists that very address with that port. *why is
 * the refusal's class. */
bool egress_address_allowed(const struct policy_network *n, int family, const unsigned char *addr, int port,
                            const char **why);

/* ---------------------------------------------------------------- settings */

/* What the process that runs jobs (viv run, vivd) sets once, before any job:
 * where the log goes and the record/replay mode. Forked workers inherit it. */
struct egress_settings {
    int log_fd;             /* -1: no egress log */
    const char *record_dir; /* plain-HTTP answers are kept here, or NULL */
    const char *replay_dir; /* only these answers are served, or NULL */
};

/* Open the log (O_APPEND; "-" is stderr) and check the directories. 0 or -1
 * with err. Any argument may be NULL. */
int egress_configure(const char *log_path, const char *record_dir, const char *replay_dir, char *err,
                     size_t errlen);
/* Send the log to (a copy of) an fd the caller has open (vivd's main log). */
void egress_set_log_fd(int fd);
const struct egress_settings *egress_settings(void);
/* A forked worker that closes its inherited fds keeps the log at `fd`. */
int egress_keep_log_at(int fd);

/* Who the next jobs of this process belong to, for the log: the job or
 * session id, and the peer ("uid:N", "tcp:ADDR:PORT"). */
void egress_set_owner(const char *job, const char *peer);

/* ---------------------------------------------------------------- jail side */

/* The job's environment: the policy's, with HTTP_PROXY, HTTPS_PROXY,
 * http_proxy, https_proxy pointing at the proxy and NO_PROXY, no_proxy
 * empty (replacing any the policy set). Heap, NULL-terminated; free with
 * egress_env_free. */
char **egress_job_env(const struct policy *p);
void egress_env_free(char **env);

/* In the jail's init, with its capabilities still held: bring up loopback,
 * listen on the proxy address, send the listening socket on `sock` and close
 * our copy. 0 or -1 with err. */
int egress_jail_listener(int sock, char *err, size_t errlen);

/* ---------------------------------------------------------------- supervisor side */

struct egress_proxy {
    pid_t pid;  /* 0: none */
    int ctl_fd; /* closing it tells the proxy the job has ended */
};

/* Receive the listening socket from `sock` and fork the proxy for policy p.
 * 0 or -1 with err. The supervisor calls it once sock is readable. With
 * `drop` (the supervisor is root) the proxy first becomes uid/gid, the
 * job's unprivileged host ids, unless it must write a record directory. */
int egress_proxy_start(int sock, const struct policy *p, bool drop, uid_t uid, gid_t gid, struct egress_proxy *px,
                       char *err, size_t errlen);

/* End the proxy: every connection is closed and logged at once. */
void egress_proxy_stop(struct egress_proxy *px);

/* The proxy process itself (egress_proxy.c). Never returns. */
void egress_proxy_main(int listen_fd, int ctl_fd, const struct policy_network *n) __attribute__((noreturn));

/* One log line (egress_proxy.c builds them, egress.c owns the fd): `obj` is
 * a JSON object's text; it is written with the owner's fields in one
 * write(), so lines from many proxies never interleave. */
void egress_log_write(const char *obj_fields);
const char *egress_owner_job(void);
const char *egress_owner_peer(void);

#endif
