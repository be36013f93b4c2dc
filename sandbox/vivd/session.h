/*
 * session.h - one long-lived jailed Python process whose globals survive
 * across calls (vivd's session_open / exec with "session" / session_close).
 * See session.c for the design.
 */
#ifndef VIV_SESSION_H
#define VIV_SESSION_H

#include <stdbool.h>
#include <stddef.h>

#include <linux/filter.h>

#include "../jail/jail.h"

struct session_spec {
    const struct policy *policy;
    const struct sock_fprog *filter; /* compiled once by vivd, or NULL */
    const struct jail_data *data;
    int ndata;
    const char *tool; /* echoed in every call's response */
};

/* Does the policy's command run python* with the policy's code file as its
 * script (so a driver of ours can be the job)? Zygotes need this. */
bool python_code_policy(const struct policy *p);

/* Sessions need that, and mknodat in the seccomp list: the driver passes
 * each call's code, output and status through FIFOs. */
bool session_policy_supported(const struct policy *p);

/* The session worker (a process vivd forks): start the jail, then serve
 * calls read from ctl_fd until it hangs up or the session is lost. Writes one
 * line on ctl_fd for the start ({"ok":true} or an error object) and one
 * exec response object line per call. Returns the exit status. */
int session_worker_main(const struct session_spec *ss, int ctl_fd);

#endif
