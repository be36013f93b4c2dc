/*
 * jail.h - run one untrusted job in a fresh set of namespaces and report
 * what happened. This is the whole public surface of the one-job sandbox;
 * `viv run` and (later) vivd are thin layers over jail_run().
 *
 * The order of operations (each step lives in its own file):
 *   supervisor.c   pipes, cgroup, clone, id maps, deadline, capture, reaping
 *   namespaces.c   clone with every namespace; uid/gid maps
 *   init.c         pid 1 inside: drop to the jail uid, build the root, write
 *                  the code, drop privileges, fork + exec the job, reap
 *   mounts.c       the new root: tmpfs, read-only binds, /proc, /dev, pivot
 *   limits.c       rlimits
 *   cgroup.c       memory, pids and cpu cgroups where the host allows
 *   caps.c         capabilities and no_new_privs
 *   syscall_filter.c  the seccomp allowlist
 */
#ifndef VIV_JAIL_H
#define VIV_JAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <linux/filter.h>

#include "job_files.h"
#include "policy.h"

/* Inside the jail every job runs as this unprivileged uid/gid. */
#define JAIL_UID 1000
#define JAIL_GID 1000
/* When the caller is host root, jobs run as host uid JAIL_HOST_ID_BASE + n
 * (never as root): see namespaces.c. */
#define JAIL_HOST_ID_BASE 1600000000u

/* Interactive mode (vivd sessions, see session.c): the job's stdin and
 * stdout are these fds of the caller (the job-side ends of two pipes) instead
 * of /dev/null and a captured pipe, so the caller can talk to a long-lived job
 * while jail_run() still watches it exactly as any other job (deadline,
 * cancel_fd, stderr capture). jail_run() duplicates them; the caller keeps and
 * closes its own copies. */
struct jail_stdio {
    int in_fd;  /* read end: becomes the job's fd 0 */
    int out_fd; /* write end: becomes the job's fd 1 (not captured) */
};

/* A value for an "@name" mount source of the policy. */
struct jail_data {
    const char *name; /* without the '@' */
    const char *path; /* host path */
};

struct jail_spec {
    const struct policy *policy;
    char *const *argv;  /* command to run; NULL = the policy's command */
    const char *code;   /* written to policy->code_path before exec; may be NULL */
    size_t code_len;
    long timeout_ms;    /* wall-clock deadline; 0 = policy default */
    long memory_mb;     /* 0 = policy default */
    const struct jail_data *data;
    int ndata;
    /* A filter compiled earlier for this policy (vivd compiles each policy's
     * once), or NULL to compile it for this job. */
    const struct sock_fprog *filter;
    /* If >= 0: when this fd becomes readable or hangs up, the job is killed
     * as at its deadline and the result says cancelled. -1 for none. */
    int cancel_fd;
    /* NULL for a normal job; see struct jail_stdio. */
    const struct jail_stdio *stdio;
    /* The deadline is a vivd session's whole life (many calls), so it is
     * capped by limits.session_ms_max instead of limits.timeout_ms_max. */
    bool session_lifetime;
    /* The job is a zygote interpreter (zygote.c): it keeps CAP_SYS_ADMIN and
     * CAP_SETPCAP in the jail's user namespace (never beyond it), and
     * `filter` must be the policy's zygote filter. Interactive mode only. */
    bool zygote;
    /* The job's stdin (when stdin_given; else the policy's stdin file or
     * /dev/null), files written into the job directory before it starts, and
     * files read back from it when it has ended (job_files.h). stdin and
     * files count against the policy's files_bytes together, the fetched
     * files against it again. Not in interactive mode. */
    const char *stdin_data;
    size_t stdin_len;
    bool stdin_given;
    const struct job_file *files;
    int nfiles;
    char *const *fetch;
    int nfetch;
};

struct jail_result {
    int exit_code;  /* exit status if the job exited, else -1 */
    int signal;     /* signal that ended the job, else 0 */
    bool timed_out; /* the supervisor killed it at the deadline */
    bool cancelled; /* killed because spec->cancel_fd fired */
    bool cpu_exceeded; /* killed because the job's processes together spent the policy's
                        * CPU budget (limits.cpu_ms; session_cpu_ms for a session's life) */
    char *out, *err; /* captured stdout / stderr (not NUL-safe: use the lengths) */
    size_t out_len, err_len;
    size_t out_dropped, err_dropped; /* bytes beyond the output cap, counted and discarded */
    double wall_ms, cpu_ms;
    long max_rss_kb;
    char limits_not_applied[512]; /* "; "-separated notes, empty when all applied */
    char *fetched;  /* the fetched files' records (job_fetched_next), when spec->nfetch */
    size_t fetched_len;
};

/* jail_run() failures (err says why; nothing was left running). */
#define JAIL_BAD_REQUEST (-1)  /* the request is invalid: deadline, code size, data, command */
#define JAIL_SETUP_FAILED (-2) /* the request was fine; the host would not build the jail */

/* Run the job. Returns 0 when the job ran (whatever its own outcome: read
 * the result), else JAIL_BAD_REQUEST or JAIL_SETUP_FAILED. The caller frees
 * the result with jail_result_free(). SIGPIPE is never raised by this call. */
int jail_run(const struct jail_spec *spec, struct jail_result *res, char *err, size_t errlen);

void jail_result_free(struct jail_result *res);

/* The result as one JSON object with the fields of the RPC exec response.
 * Output bytes that are not valid UTF-8 become U+FFFD, so the object is
 * always valid JSON. `tool` may be NULL. Caller frees. */
char *jail_result_to_json(const struct jail_result *res, const char *tool, const char *policy);

/* The same fields (from "ok" to "policy", without limits_not_applied) into an
 * open object, for callers that add fields of their own (sessions). */
struct json_writer;
void jail_result_write_fields(struct json_writer *w, const struct jail_result *res, const char *tool,
                              const char *policy);
/* "limits_not_applied": the "; "-separated notes as a JSON array. */
void jail_result_write_limits(struct json_writer *w, const char *limits_not_applied);

#endif
