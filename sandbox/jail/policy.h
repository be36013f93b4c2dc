/*
 * policy.h - what a jailed tool may do, parsed from policies/<tool>.json.
 *
 * A policy is data, not code: the command to run, where the job's code is
 * written inside the jail, the read-only mounts, the resource limits and the
 * seccomp allowlist. Parsing is strict (unknown keys, unknown syscalls and
 * out-of-range limits are errors naming the file and the key) because a typo
 * in a security policy must never silently widen or narrow it.
 *
 * Some guarantees do not depend on the policy at all and are enforced by the
 * jail itself: the namespaces, the mount plan's shape, dropped capabilities,
 * no_new_privs, no network, no nested user namespaces, and a list of syscalls
 * no policy may allow (policy_never_allowed()).
 */
#ifndef VIV_POLICY_H
#define VIV_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#define POLICY_MAX_MOUNTS 32
#define POLICY_MAX_ENV 64
#define POLICY_MAX_ARGV 64
#define POLICY_MAX_SYSCALLS 512
#define POLICY_MAX_IOCTLS 32
#define POLICY_MAX_FAMILIES 8
#define POLICY_MAX_PRELOAD 32
#define POLICY_MAX_EGRESS 64

/* A read-only bind mount. A source of the form "@name" is a data parameter
 * supplied by the caller at run time (e.g. "@db" from `viv run --db FILE`). */
struct policy_mount {
    char *src;
    char *dst;
    bool optional; /* skip silently when the source does not exist */
};

struct policy_limits {
    long timeout_ms;     /* default wall-clock deadline */
    long timeout_ms_max; /* a request may ask for up to this much */
    long memory_mb;      /* RLIMIT_AS, and the memory cgroup where available */
    long pids;           /* RLIMIT_NPROC, and the pids cgroup where available */
    long file_size_mb;   /* RLIMIT_FSIZE */
    long tmpfs_mb;       /* size of each of /tmp and /work */
    long open_files;     /* RLIMIT_NOFILE */
    long output_bytes;   /* cap on each of stdout and stderr */
    long code_bytes;     /* largest code text accepted */
    long files_bytes;    /* an exec's stdin and files together; again its fetched files */
    long session_ms_max; /* longest life of a vivd session (one jail across many calls) */
    long cpu_weight;     /* the job's share of contended CPU against other jobs (cgroup cpu) */
    long cpu_ms;         /* CPU-time budget of a job, summed over every process it forks */
    long session_cpu_ms; /* the same for a session's or zygote's jail over its whole life */
};

/* One entry of "network": {"egress": [...]}: a host name, a "*." suffix
 * wildcard (any name below the suffix, not the suffix itself) or an address,
 * each with its port. See egress.h for how the proxy applies them. */
struct egress_rule {
    char *text;             /* as written, for messages and `viv policy check` */
    char *name;             /* lower-case name, or the suffix of a wildcard; NULL for an address */
    bool wildcard;
    int family;             /* AF_INET or AF_INET6 for an address, else 0 */
    unsigned char addr[16]; /* the address (IPv4 in the first 4 bytes) */
    int port;
};

/* "network": "none" (nrules 0, the default) or an egress allowlist with its
 * per-job caps. */
struct policy_network {
    int nrules;
    struct egress_rule rules[POLICY_MAX_EGRESS];
    long max_connections; /* open at once */
    long max_bytes;       /* both directions, all connections, the job's whole life */
    long connection_ms;   /* the longest a connection may stay open */
    long header_ms;       /* to send a request head */
};

enum policy_default_action { POLICY_DENY_ERRNO, POLICY_DENY_KILL };

struct policy_seccomp {
    enum policy_default_action default_action;
    int nsyscalls;
    char *syscalls[POLICY_MAX_SYSCALLS];
    int nioctls;
    char *ioctl_names[POLICY_MAX_IOCTLS];
    unsigned long ioctls[POLICY_MAX_IOCTLS];
    int nfamilies;
    char *family_names[POLICY_MAX_FAMILIES];
    int families[POLICY_MAX_FAMILIES];
};

struct policy {
    char *name;
    char *description;
    char *origin; /* file path, or "built-in" */
    int argc;
    char *argv[POLICY_MAX_ARGV + 1]; /* NULL-terminated */
    char *code_path;                 /* where the code text is written inside, or NULL */
    char *stdin_path;                /* the job's stdin, opened inside the jail; NULL = /dev/null */
    int npreload;
    char *preload[POLICY_MAX_PRELOAD];
    int nenv;
    char *env[POLICY_MAX_ENV + 1]; /* "KEY=VALUE", NULL-terminated */
    int nmounts;
    struct policy_mount mounts[POLICY_MAX_MOUNTS];
    struct policy_limits limits;
    struct policy_seccomp seccomp;
    struct policy_network network;
};

/* Parse and validate a policy from JSON text. `origin` names the source in
 * error messages. On failure returns -1 and writes "origin: key: problem" to
 * err. On success the policy owns its strings; free with policy_free(). */
int policy_parse(const char *json, size_t len, const char *origin, struct policy *out,
                 char *err, size_t errlen);

/* Load by name (a built-in policy) or by path (contains '/' or ends in .json). */
int policy_load(const char *name_or_path, struct policy *out, char *err, size_t errlen);

void policy_free(struct policy *p);

/* Names of the built-in policies, NULL-terminated. */
const char *const *policy_builtin_names(void);

/* Syscalls no policy may allow, because they reach the host (mount, ptrace,
 * bpf, keyctl, ...) or reopen the sandbox (unshare, setns). NULL-terminated. */
const char *const *policy_never_allowed(void);

/* Whether a job of the policy can start at all: its command is exec'd after
 * the filter is installed, so an allowlist without execve (or execveat)
 * would end every job with 127 and nothing said. 0, or -1 with err naming
 * the policy and what it lacks. Parsing accepts such a policy (a filter can
 * be checked without running it); running one is refused. */
int policy_check_runnable(const struct policy *p, char *err, size_t errlen);

/* A call's deadline: `requested` ms, or `dflt` when requested <= 0,
 * capped at `max` (no cap when max <= 0). The one owner of that rule:
 * vivd applies it through policy_call_timeout_ms, and a client that knows
 * a policy's numbers from vivd's `policies` answer (the rollout engine)
 * predicts the same deadline with it. `viv run` refuses past the maximum
 * instead: jail_run checks it for every path. */
long call_deadline_ms(long requested, long dflt, long max);

/* call_deadline_ms with this policy's default and maximum. */
long policy_call_timeout_ms(const struct policy *p, long requested);

/* Print the effective policy as indented JSON (viv policy check). */
char *policy_to_json(const struct policy *p);

/* The policy's network as one JSON value: "none", or {"egress": [the entries
 * as written], and each cap by its key}. The one rendering of it: `viv policy
 * check` and vivd's `policies` answer both write this. */
struct json_writer;
void policy_network_write(struct json_writer *w, const struct policy *p);

#endif
