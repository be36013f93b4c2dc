/* mounts.h - build the job's root filesystem and pivot into it. */
#ifndef VIV_MOUNTS_H
#define VIV_MOUNTS_H
#include <stddef.h>
#include "policy.h"

/* bind_src[i] is the host path for p->mounts[i] (the policy's src, or the
 * value of an @parameter), or NULL to skip an optional mount. On return the
 * process is rooted in the new root with cwd /work. 0, or -1 with err. */
int mounts_build_root(const struct policy *p, const char *const *bind_src, long tmpfs_mb,
                      char *err, size_t errlen);

#endif
