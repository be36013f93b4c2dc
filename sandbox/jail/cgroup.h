/*
 * cgroup.h - per-job memory, pids and cpu cgroups, where the host lets us.
 */
#ifndef VIV_CGROUP_H
#define VIV_CGROUP_H
#include <stddef.h>
#include <sys/types.h>

#include <stdbool.h>

struct job_cgroup {
    char memory[512]; /* directory of the job's memory cgroup, "" if none */
    char pids[512];   /* directory of the job's pids cgroup, "" if none */
    char cpu[512];    /* directory of the job's cpu cgroup (its fair share), "" if none */
    char usage[512];  /* where the job's CPU time is read (v2 job cgroup or v1 cpuacct), "" if none */
    bool usage_v2;    /* usage is cpu.stat usage_usec (v2), else cpuacct.usage (v1) */
};

struct cgroup_limits {
    long memory_mb;  /* memory.max / memory.limit_in_bytes */
    long pids;       /* pids.max */
    long cpu_weight; /* cpu.weight (v2), or cpu.shares scaled so 100 is 1024 (v1) */
};

/* Create the job's cgroups (v2 if it has memory and pids, else v1) and set
 * the limits. A controller we cannot use is not an error: a one-line reason
 * naming it is appended to `notes` and the job relies on its rlimits. Never
 * fails. */
void cgroup_create(struct job_cgroup *cg, const struct cgroup_limits *lim, char *notes, size_t noteslen);

/* CPU time used so far by every process that ever ran in the job's cgroup,
 * in ms, or -1 where the host gives no cgroup CPU accounting. */
double cgroup_cpu_ms(const struct job_cgroup *cg);

/* Move `pid` (still waiting for its go signal) into the job's cgroups. */
void cgroup_attach(struct job_cgroup *cg, pid_t pid, char *notes, size_t noteslen);

/* Remove the job's cgroups; call after the job has been reaped. */
void cgroup_destroy(struct job_cgroup *cg);

/* Append "; "-separated text to a notes buffer. */
void notes_add(char *notes, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
