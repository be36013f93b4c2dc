/*
 * mounts.c - the job's root filesystem.
 *
 * Runs in the jail's init, inside its own user and mount namespaces, with
 * the capabilities that the new user namespace grants. The plan:
 *
 *   1. Make every mount private, so nothing we do propagates to the host.
 *   2. Mount a small tmpfs over /tmp (in our namespace only) and pivot into
 *      it, keeping the host root at /oldroot. From here on every host path
 *      is reached as /oldroot/<path>, so a bind source under the host's /tmp
 *      still works.
 *   3. Build the new root at /newroot on its own tmpfs:
 *        read-only, nosuid, nodev binds of the policy's mounts (/usr, data);
 *        a source that is a symlink on the host (/bin -> usr/bin on merged-
 *        /usr systems) becomes the same symlink;
 *        /proc: a fresh procfs of the jail's pid namespace, with the
 *        host's boot command line and boot id masked by fixed files;
 *        /dev: a tmpfs holding null, zero, random, urandom (bound from the
 *        host; nothing else) and the fd/stdin/stdout/stderr links;
 *        /tmp and /work: fresh tmpfs, size-capped, nosuid, nodev;
 *        /etc: passwd, group, hosts, hostname for the jail user.
 *   4. Remount the new root read-only, detach the old root, pivot into the
 *      new root and detach what is left of the old one. No path, fd or
 *      mount leads back to the host root.
 */
#define _GNU_SOURCE
#include "mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jail.h"
#include "../base/util.h"

#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
struct viv_mount_attr {
    unsigned long long attr_set, attr_clr, propagation, userns_fd;
};

#define BASE "/tmp"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    int e = errno;
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s: %s", msg, strerror(e));
    return -1;
}

/* mkdir -p for a path inside the new root. */
static int mkdir_p(const char *path, mode_t mode) {
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, mode) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST) return -1;
    return 0;
}

static int write_small_file(const char *path, const char *text, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) return -1;
    int rc = write_all(fd, text, strlen(text));
    close(fd);
    return rc;
}

/* Make a bind mount (and everything under it) read-only, nosuid, nodev.
 * mount_setattr (Linux 5.12) does the whole subtree at once; on older kernels
 * a remount handles the top mount, keeping the flags the kernel locked on it
 * (a user namespace may not clear nodev/noexec/... inherited from the host). */
static int make_readonly(const char *path, char *err, size_t errlen) {
    struct viv_mount_attr attr = {MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, 0};
    if (syscall(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof attr) != 0) {
        if (errno != ENOSYS) return fail(err, errlen, "mount_setattr read-only %s", path);
        struct statvfs sv;
        if (statvfs(path, &sv) != 0) return fail(err, errlen, "statvfs %s", path);
        unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV;
        if (sv.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
        if (sv.f_flag & ST_NOATIME) flags |= MS_NOATIME;
        if (sv.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
        if (sv.f_flag & ST_RELATIME) flags |= MS_RELATIME;
        if (mount(NULL, path, NULL, flags, NULL) != 0)
            return fail(err, errlen, "remount read-only %s", path);
    }
    /* Never trust that it worked: a writable bind would be a hole. */
    struct statvfs sv;
    if (statvfs(path, &sv) != 0 || !(sv.f_flag & ST_RDONLY)) {
        errno = EPERM;
        return fail(err, errlen, "%s is still writable after remount", path);
    }
    return 0;
}

/* Bind host path `src` (absolute, as seen from the host) read-only at `dst`
 * (absolute, inside the jail). */
static int bind_readonly(const char *src, const char *dst, bool optional, char *err,
                         size_t errlen) {
    char from[600], to[600];
    snprintf(from, sizeof from, "/oldroot%s", src);
    snprintf(to, sizeof to, "/newroot%s", dst);
    struct stat st;
    if (lstat(from, &st) != 0) {
        if (optional && errno == ENOENT) return 0;
        return fail(err, errlen, "bind source %s", src);
    }
    char parent[600];
    snprintf(parent, sizeof parent, "%s", to);
    *strrchr(parent, '/') = 0;
    if (parent[0] && mkdir_p(parent, 0755) != 0) return fail(err, errlen, "mkdir %s", parent);
    if (S_ISLNK(st.st_mode)) {
        char target[512];
        ssize_t n = readlink(from, target, sizeof target - 1);
        if (n < 0) return fail(err, errlen, "readlink %s", src);
        target[n] = 0;
        if (symlink(target, to) != 0) return fail(err, errlen, "symlink %s", dst);
        return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        if (mkdir(to, 0755) != 0 && errno != EEXIST) return fail(err, errlen, "mkdir %s", dst);
    } else {
        int fd = open(to, O_WRONLY | O_CREAT | O_CLOEXEC, 0444);
        if (fd < 0) return fail(err, errlen, "create mount point %s", dst);
        close(fd);
    }
    if (mount(from, to, NULL, MS_BIND | MS_REC, NULL) != 0)
        return fail(err, errlen, "bind %s -> %s", src, dst);
    return make_readonly(to, err, errlen);
}

static int mount_tmpfs(const char *path, long size_kb, const char *mode, long inodes, char *err,
                       size_t errlen) {
    char opts[128];
    snprintf(opts, sizeof opts, "size=%ldk,nr_inodes=%ld,mode=%s", size_kb, inodes, mode);
    if (mkdir_p(path, 0755) != 0) return fail(err, errlen, "mkdir %s", path);
    if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0)
        return fail(err, errlen, "mount tmpfs on %s", path);
    return 0;
}

static int build_dev(char *err, size_t errlen) {
    static const char *const nodes[] = {"null", "zero", "random", "urandom", NULL};
    if (mount_tmpfs("/newroot/dev", 64, "0755", 64, err, errlen)) return -1;
    for (const char *const *n = nodes; *n; n++) {
        char from[64], to[64];
        snprintf(from, sizeof from, "/oldroot/dev/%s", *n);
        snprintf(to, sizeof to, "/newroot/dev/%s", *n);
        int fd = open(to, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) return fail(err, errlen, "create /dev/%s", *n);
        close(fd);
        if (mount(from, to, NULL, MS_BIND, NULL) != 0) return fail(err, errlen, "bind /dev/%s", *n);
        if (mount(NULL, to, NULL, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC, NULL) != 0)
            return fail(err, errlen, "remount /dev/%s", *n);
    }
    static const char *const links[][2] = {{"/proc/self/fd", "/newroot/dev/fd"},
                                           {"/proc/self/fd/0", "/newroot/dev/stdin"},
                                           {"/proc/self/fd/1", "/newroot/dev/stdout"},
                                           {"/proc/self/fd/2", "/newroot/dev/stderr"}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
        if (symlink(links[i][0], links[i][1]) != 0) return fail(err, errlen, "symlink %s", links[i][1]);
    if (mount(NULL, "/newroot/dev", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755") != 0)
        return fail(err, errlen, "remount /dev read-only");
    return 0;
}

/* Files of the fresh /proc that describe the host rather than the job: the
 * kernel's boot command line (host devices, paths, options) and the boot id
 * (one value shared by every job on this host since boot, so jobs could tell
 * they share a machine, and across runs when it rebooted). Each gets a
 * read-only bind of a fixed file instead. The sources live in the staging
 * tmpfs, which the binds keep alive after the old root is gone. */
static const char *const proc_masks[][2] = {
    {"/proc/cmdline", "\n"},
    {"/proc/sys/kernel/random/boot_id", "00000000-0000-0000-0000-000000000000\n"},
};

static int mask_host_proc_files(char *err, size_t errlen) {
    for (size_t i = 0; i < sizeof proc_masks / sizeof proc_masks[0]; i++) {
        char src[64], dst[96];
        snprintf(src, sizeof src, "/proc-mask-%zu", i);
        snprintf(dst, sizeof dst, "/newroot%s", proc_masks[i][0]);
        if (write_small_file(src, proc_masks[i][1], 0444)) return fail(err, errlen, "write %s", src);
        if (mount(src, dst, NULL, MS_BIND, NULL) != 0) return fail(err, errlen, "mask %s", proc_masks[i][0]);
        if (mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
            return fail(err, errlen, "remount %s read-only", proc_masks[i][0]);
    }
    return 0;
}

static int build_etc(char *err, size_t errlen) {
    char text[512];
    if (mkdir("/newroot/etc", 0755) != 0) return fail(err, errlen, "mkdir /etc");
    snprintf(text, sizeof text, "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
                                "sandbox:x:%d:%d:vivarium job:/work:/bin/sh\n"
                                "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
             JAIL_UID, JAIL_GID);
    if (write_small_file("/newroot/etc/passwd", text, 0644)) return fail(err, errlen, "write /etc/passwd");
    snprintf(text, sizeof text, "root:x:0:\nsandbox:x:%d:\nnogroup:x:65534:\n", JAIL_GID);
    if (write_small_file("/newroot/etc/group", text, 0644)) return fail(err, errlen, "write /etc/group");
    if (write_small_file("/newroot/etc/hosts", "127.0.0.1 localhost vivarium\n::1 localhost\n", 0644) ||
        write_small_file("/newroot/etc/hostname", "vivarium\n", 0644))
        return fail(err, errlen, "write /etc/hosts");
    return 0;
}

int mounts_build_root(const struct policy *p, const char *const *bind_src, long tmpfs_mb,
                      char *err, size_t errlen) {
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return fail(err, errlen, "make / private");
    if (mount("tmpfs", BASE, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,nr_inodes=16,mode=0755") != 0)
        return fail(err, errlen, "mount the staging tmpfs");
    if (mkdir(BASE "/oldroot", 0755) != 0 || mkdir(BASE "/newroot", 0755) != 0)
        return fail(err, errlen, "mkdir staging dirs");
    if (syscall(SYS_pivot_root, BASE, BASE "/oldroot") != 0) return fail(err, errlen, "pivot_root to staging");
    if (chdir("/") != 0) return fail(err, errlen, "chdir /");

    if (mount("tmpfs", "/newroot", "tmpfs", MS_NOSUID | MS_NODEV, "size=1024k,nr_inodes=1024,mode=0755") != 0)
        return fail(err, errlen, "mount the root tmpfs");
    if (build_etc(err, errlen)) return -1;
    for (int i = 0; i < p->nmounts; i++) {
        if (!bind_src[i]) continue; /* optional parameter not given */
        if (bind_readonly(bind_src[i], p->mounts[i].dst, p->mounts[i].optional, err, errlen))
            return -1;
    }
    if (mkdir("/newroot/proc", 0755) != 0) return fail(err, errlen, "mkdir /proc");
    if (mount("proc", "/newroot/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        return fail(err, errlen, "mount a fresh /proc");
    if (mask_host_proc_files(err, errlen)) return -1;
    if (build_dev(err, errlen)) return -1;
    long kb = tmpfs_mb * 1024, inodes = tmpfs_mb * 256 > 4096 ? tmpfs_mb * 256 : 4096;
    if (mount_tmpfs("/newroot/tmp", kb, "1777", inodes, err, errlen) ||
        mount_tmpfs("/newroot/work", kb, "0755", inodes, err, errlen))
        return -1;

    /* Seal: read-only root, then leave the old root behind for good. */
    if (mount(NULL, "/newroot", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0)
        return fail(err, errlen, "remount / read-only");
    if (umount2("/oldroot", MNT_DETACH) != 0) return fail(err, errlen, "detach the old root");
    if (chdir("/newroot") != 0) return fail(err, errlen, "chdir /newroot");
    /* pivot_root(".", ".") stacks the staging root on top of the new root;
     * detaching "." then removes it, leaving the new root alone. */
    if (syscall(SYS_pivot_root, ".", ".") != 0) return fail(err, errlen, "pivot_root into the new root");
    if (umount2(".", MNT_DETACH) != 0) return fail(err, errlen, "detach the staging root");
    if (chdir("/work") != 0) return fail(err, errlen, "chdir /work");
    return 0;
}
