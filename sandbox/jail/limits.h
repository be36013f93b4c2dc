/* limits.h - resource limits (rlimits) for the job process. */
#ifndef VIV_LIMITS_H
#define VIV_LIMITS_H
#include <stddef.h>
#include "policy.h"

/* Apply the policy's limits to the calling process (the job, just before
 * exec): address space, CPU seconds (the lesser of the wall deadline and
 * the CPU budget cpu_ms),
 * processes, open files, file size, core dumps 0, memlock and POSIX message
 * queues 0. 0, or -1 with err. */
int limits_apply(const struct policy_limits *lim, long timeout_ms, long memory_mb, long cpu_ms,
                 char *err, size_t errlen);

#endif
