/*
 * cgroup.h - per-job memory and pids cgroups, where the host lets us.
 */
#ifndef VIV_CGROUP_H
#define VIV_CGROUP_H
#include <stddef.h>
#include <sys/types.h>

struct job_cgroup {
    char memory[512]; /* directory of the job's memory cgroup, "" if none */
    char pids[512];   /* directory of the job's pids cgroup, "" if none */
};

/* Create the job's cgroups (v2 if it has the controllers, else v1) and set
 * memory.max/limit_in_bytes = memory_mb and pids.max = pids. A controller we
 * cannot use is not an error: a one-line reason is appended to `notes` and
 * the job relies on its rlimits. Never fails. */
void cgroup_create(struct job_cgroup *cg, long memory_mb, long pids, char *notes, size_t noteslen);

/* Move `pid` (still waiting for its go signal) into the job's cgroups. */
void cgroup_attach(struct job_cgroup *cg, pid_t pid, char *notes, size_t noteslen);

/* Remove the job's cgroups; call after the job has been reaped. */
void cgroup_destroy(struct job_cgroup *cg);

/* Append "; "-separated text to a notes buffer. */
void notes_add(char *notes, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
