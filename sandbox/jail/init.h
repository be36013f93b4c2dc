/*
 * init.h - what runs as pid 1 inside a job's namespaces.
 */
#ifndef VIV_INIT_H
#define VIV_INIT_H

#include <stdbool.h>
#include <signal.h>
#include <stddef.h>

#include <linux/filter.h>

#include "job_files.h"
#include "policy.h"

/* Everything the jail's init needs, prepared by the supervisor before clone
 * (the child gets a copy of it with the rest of the address space). */
struct init_context {
    const struct policy *policy;
    char *const *argv;            /* the command to exec */
    const char *const *bind_src;  /* resolved source per policy mount */
    long timeout_ms, memory_mb;
    long cpu_ms;                  /* the job's CPU budget: RLIMIT_CPU holds each process to it */
    bool has_code;                /* read code from code_fd into policy->code_path */
    bool drop_supplementary_groups;
    bool zygote;                  /* keep the zygote's two capabilities for the job (caps.c) */
    int sync_fd;   /* read end: one byte once the uid/gid maps and cgroup are in place */
    int status_fd; /* write end: 'S' + wait status, or 'E' + setup error text */
    int code_fd;   /* socket: u32 n, n BPF instructions (the seccomp filter), the code text, EOF */
    int out_fd, err_fd; /* write ends of the job's stdout/stderr pipes */
    int in_fd;     /* the job's stdin (interactive mode, or the request's stdin), or -1 for /dev/null */
    const struct job_file *files; /* written into the job directory before the job starts */
    int nfiles;
    char *const *fetch;  /* read back once every process of the jail is gone ... */
    int nfetch;
    int fetch_fd;        /* ... and sent on this pipe (job_files.h records), or -1 */
    size_t fetch_budget; /* bytes of fetched content in all */
    char *const *env;    /* the job's environment (the policy's, plus the proxy's when egress is on) */
    int egress_fd;       /* socket: the init sends its proxy listener here (egress.h), or -1 */
};

/* Status channel record tags. */
#define INIT_STATUS_EXITED 'S'
#define INIT_SETUP_ERROR 'E'

/* Sent by the supervisor at the deadline (see init.c). */
#define INIT_DEADLINE_SIGNAL SIGUSR1

/* Never returns. */
void jail_init_main(const struct init_context *ctx) __attribute__((noreturn));

#endif
