/*
 * namespaces.c - clone into new namespaces; uid/gid maps.
 *
 * The child is created with CLONE_NEWUSER and the six other namespaces in
 * one clone, so it is pid 1 of a new pid namespace and owns a private mount,
 * network, IPC, UTS and cgroup namespace. Creating a user namespace gives the
 * child every capability *inside* it, which is what lets an unprivileged
 * caller build mounts; those capabilities mean nothing to the host.
 *
 * Exactly one uid and one gid are mapped: JAIL_UID inside -> host uid. Root
 * inside the namespace is left unmapped on purpose, so nothing in the jail
 * can ever become uid 0 there, and execve() of the job clears every
 * capability (the kernel gives exec'd non-root processes none).
 *
 * When the caller is host root we do not map to root: each job gets host uid
 * JAIL_HOST_ID_BASE + (supervisor pid). Two live supervisors never share a
 * pid, so concurrent jobs never share a uid, and RLIMIT_NPROC (which does not
 * bind root) binds them.
 */
#define _GNU_SOURCE
#include "namespaces.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jail.h"
#include "../base/util.h"

void ns_choose_host_ids(struct host_ids *ids) {
    ids->caller_is_root = geteuid() == 0;
    if (ids->caller_is_root) {
        /* pid_max is at most 2^22, so this stays below 2^31. */
        ids->uid = JAIL_HOST_ID_BASE + (uid_t)getpid();
        ids->gid = JAIL_HOST_ID_BASE + (gid_t)getpid();
    } else {
        ids->uid = geteuid();
        ids->gid = getegid();
    }
}

pid_t ns_clone(void) {
    /* A raw clone with no new stack behaves like fork(): the child continues
     * on a copy-on-write copy of our stack. glibc's clone() wrapper insists on
     * a stack and a function, which we do not need. */
    return (pid_t)syscall(SYS_clone, (unsigned long)(JAIL_CLONE_FLAGS | SIGCHLD), NULL, NULL,
                          NULL, NULL);
}

static int write_proc_file(pid_t pid, const char *name, const char *text, char *err,
                           size_t errlen) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, text, strlen(text)) < 0) {
        snprintf(err, errlen, "write %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

int ns_write_id_maps(pid_t child, const struct host_ids *ids, char *err, size_t errlen) {
    char line[64];
    /* An unprivileged writer must deny setgroups before writing gid_map
     * (otherwise the child could drop a supplementary group that a file's
     * permissions deny it). Root writes the maps with CAP_SETGID and leaves
     * setgroups allowed so the child can clear root's supplementary groups. */
    if (!ids->caller_is_root && write_proc_file(child, "setgroups", "deny", err, errlen)) return -1;
    snprintf(line, sizeof line, "%u %u 1\n", JAIL_UID, (unsigned)ids->uid);
    if (write_proc_file(child, "uid_map", line, err, errlen)) return -1;
    snprintf(line, sizeof line, "%u %u 1\n", JAIL_GID, (unsigned)ids->gid);
    if (write_proc_file(child, "gid_map", line, err, errlen)) return -1;
    return 0;
}
