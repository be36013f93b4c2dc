/*
 * limits.c - rlimits for the job.
 *
 * rlimits are per process and inherited, so setting them in the job right
 * before exec covers it and everything it starts. They are the limits that
 * work everywhere, without cgroups:
 *   RLIMIT_AS      memory_mb: a memory bomb gets ENOMEM from mmap/brk.
 *   RLIMIT_CPU     the deadline or the CPU budget, whichever is less, rounded
 *                  up + 1 s (soft: SIGXCPU, hard +1: SIGKILL): a second line
 *                  behind the wall-clock deadline and the supervisor's watch
 *                  of the whole job's CPU time (one process at a time only).
 *   RLIMIT_NPROC   pids + 1. The count is per uid per user namespace (kernel
 *                  ucounts), and every job has its own user namespace, so it
 *                  counts exactly this job's tasks plus the jail's init.
 *   RLIMIT_NOFILE  open_files.
 *   RLIMIT_FSIZE   file_size_mb: writing past it gets EFBIG (SIGXFSZ ignored
 *                  would be the job's choice; the default kills it).
 *   RLIMIT_CORE    0: no core files in the job's tmpfs.
 *   RLIMIT_MEMLOCK 0 and RLIMIT_MSGQUEUE 0: nothing pinned, no POSIX queues.
 * Limits are set hard = soft so the job cannot raise them.
 */
#define _GNU_SOURCE
#include "limits.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static int set_limit(int resource, const char *name, rlim_t soft, rlim_t hard, char *err,
                     size_t errlen) {
    struct rlimit rl = {soft, hard};
    if (setrlimit(resource, &rl) != 0) {
        snprintf(err, errlen, "setrlimit %s: %s", name, strerror(errno));
        return -1;
    }
    return 0;
}

int limits_apply(const struct policy_limits *lim, long timeout_ms, long memory_mb, long cpu_ms,
                 char *err, size_t errlen) {
    const rlim_t mib = 1024 * 1024;
    long cpu_cap_ms = cpu_ms < timeout_ms ? cpu_ms : timeout_ms;
    rlim_t cpu = (rlim_t)(cpu_cap_ms + 999) / 1000 + 1;
    if (set_limit(RLIMIT_AS, "AS", (rlim_t)memory_mb * mib, (rlim_t)memory_mb * mib, err, errlen) ||
        set_limit(RLIMIT_CPU, "CPU", cpu, cpu + 1, err, errlen) ||
        set_limit(RLIMIT_NPROC, "NPROC", (rlim_t)lim->pids + 1, (rlim_t)lim->pids + 1, err, errlen) ||
        set_limit(RLIMIT_NOFILE, "NOFILE", (rlim_t)lim->open_files, (rlim_t)lim->open_files, err, errlen) ||
        set_limit(RLIMIT_FSIZE, "FSIZE", (rlim_t)lim->file_size_mb * mib, (rlim_t)lim->file_size_mb * mib, err, errlen) ||
        set_limit(RLIMIT_CORE, "CORE", 0, 0, err, errlen) ||
        set_limit(RLIMIT_MEMLOCK, "MEMLOCK", 0, 0, err, errlen) ||
        set_limit(RLIMIT_MSGQUEUE, "MSGQUEUE", 0, 0, err, errlen))
        return -1;
    return 0;
}
