/*
 * namespaces.h - start a process in fresh namespaces and give it an identity.
 */
#ifndef VIV_NAMESPACES_H
#define VIV_NAMESPACES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Every namespace a job gets: user, pid, mount, net, ipc, uts, cgroup. */
#define JAIL_CLONE_FLAGS                                                                   \
    (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC |             \
     CLONE_NEWUTS | CLONE_NEWCGROUP)

/* Host identity the job runs as: the caller's own ids, or, when the caller is
 * root, an unprivileged id that no other concurrent job shares. */
struct host_ids {
    uid_t uid;
    gid_t gid;
    bool caller_is_root;
};

void ns_choose_host_ids(struct host_ids *ids);

/* fork-like clone into new namespaces: returns the child's pid in the parent
 * (as seen from the parent's pid namespace) and 0 in the child, which is pid
 * 1 of its new pid namespace. -1 with errno on failure. */
pid_t ns_clone(void);

/* Map JAIL_UID/JAIL_GID inside to ids->uid/gid outside, one id each, and
 * (unprivileged callers) deny setgroups as the kernel requires. */
int ns_write_id_maps(pid_t child, const struct host_ids *ids, char *err, size_t errlen);

#endif
