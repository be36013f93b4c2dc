/*
 * syscall_filter.c - turn a policy's allowlist into a seccomp BPF program.
 *
 * Shape of the filter:
 *   - architecture: only the native one (x86_64). A syscall made through
 *     another ABI the CPU offers (i386 via int 0x80, x32 via the
 *     __X32_SYSCALL_BIT numbers) kills the whole process: libseccomp's
 *     "bad arch" action. Without this, a 32-bit syscall number could name a
 *     different, unfiltered call.
 *   - default: EPERM or kill the process, as the policy says.
 *   - the policy's syscalls: allowed, except the ones the jail always
 *     filters by argument:
 *       clone    allowed only when its flags carry no CLONE_NEW* bit: no
 *                nested user (or any other) namespaces;
 *       clone3   always ENOSYS: its flags live in memory BPF cannot read,
 *                and libc falls back to clone on ENOSYS;
 *       ioctl    allowed only for the policy's requests, compared on the
 *                low 32 bits (the kernel truncates the request to 32 bits,
 *                so TIOCSTI | 1<<32 must still count as TIOCSTI);
 *       socket   allowed only for the policy's address families;
 *       prctl    allowed except PR_SET_MEMORY_MERGE (and options with high
 *                bits, which could truncate to it): those get the default
 *                action (EPERM or kill): opting a process into KSM page merging would let
 *                one tenant time copy-on-write faults on pages merged with
 *                another's.
 */
#define _GNU_SOURCE
#include "syscall_filter.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <seccomp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../base/util.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#define PR_SET_MEMORY_MERGE_OPTION 67 /* <linux/prctl.h> since 6.4 */
#define ANY_NAMESPACE_FLAG                                                                 \
    (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |             \
     CLONE_NEWUTS | CLONE_NEWCGROUP | CLONE_NEWTIME)

static int add(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned nargs,
               const struct scmp_arg_cmp *args, char *err, size_t errlen) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) {
        snprintf(err, errlen, "seccomp: unknown syscall '%s'", name);
        return -1;
    }
    int rc = seccomp_rule_add_array(ctx, action, nr, nargs, args);
    if (rc < 0) {
        snprintf(err, errlen, "seccomp: rule for '%s': %s", name, strerror(-rc));
        return -1;
    }
    return 0;
}

/* Allow prctl for every option below 2^32 except PR_SET_MEMORY_MERGE. The
 * kernel reads the option as an int, so an option with high bits set (which
 * could truncate to it) is left to the default action too. libseccomp
 * refuses an "allow all but one value" pair of rules, so the allowed set is
 * written as 32 disjoint masked compares: for each bit b, the options equal
 * to PR_SET_MEMORY_MERGE above bit b and different at bit b. */
static int allow_prctl_except_memory_merge(scmp_filter_ctx ctx, char *err, size_t errlen) {
    for (unsigned b = 0; b < 32; b++) {
        uint64_t mask = ~((UINT64_C(1) << b) - 1);
        uint64_t value = ((uint64_t)(PR_SET_MEMORY_MERGE_OPTION >> b) ^ 1) << b;
        struct scmp_arg_cmp cmp = SCMP_A0(SCMP_CMP_MASKED_EQ, mask, value);
        if (add(ctx, SCMP_ACT_ALLOW, "prctl", 1, &cmp, err, errlen)) return -1;
    }
    return 0;
}

/* Namespace flags a zygote may pass to clone for a request child. */
#define ZYGOTE_NAMESPACES (CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS)

static scmp_filter_ctx build(const struct policy_seccomp *sec, bool zygote, char *err, size_t errlen) {
    uint32_t deny = sec->default_action == POLICY_DENY_KILL ? SCMP_ACT_KILL_PROCESS
                                                            : SCMP_ACT_ERRNO(EPERM);
    scmp_filter_ctx ctx = seccomp_init(deny);
    if (!ctx) {
        snprintf(err, errlen, "seccomp_init failed");
        return NULL;
    }
    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) != 0) {
        snprintf(err, errlen, "seccomp: cannot set the bad-arch action");
        goto fail;
    }
    for (int i = 0; i < sec->nsyscalls; i++) {
        const char *name = sec->syscalls[i];
        if (strcmp(name, "clone") == 0) {
            struct scmp_arg_cmp no_ns = SCMP_A0(SCMP_CMP_MASKED_EQ, ANY_NAMESPACE_FLAG, 0);
            if (add(ctx, SCMP_ACT_ALLOW, name, 1, &no_ns, err, errlen)) goto fail;
        } else if (strcmp(name, "prctl") == 0) {
            if (allow_prctl_except_memory_merge(ctx, err, errlen)) goto fail;
        } else if (add(ctx, SCMP_ACT_ALLOW, name, 0, NULL, err, errlen)) {
            goto fail;
        }
    }
    if (add(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err, errlen)) goto fail;
    if (zygote) {
        /* unshare: only the four namespaces, never a user/net/cgroup/time one */
        struct scmp_arg_cmp only_ours = SCMP_A0(SCMP_CMP_MASKED_EQ, ~(uint64_t)ZYGOTE_NAMESPACES & 0xFFFFFFFFu, 0);
        /* setns: only back into a pid namespace (its own, before each unshare) */
        struct scmp_arg_cmp pid_only = SCMP_A1(SCMP_CMP_EQ, CLONE_NEWPID);
        if (add(ctx, SCMP_ACT_ALLOW, "unshare", 1, &only_ours, err, errlen) ||
            add(ctx, SCMP_ACT_ALLOW, "setns", 1, &pid_only, err, errlen) ||
            add(ctx, SCMP_ACT_ALLOW, "mount", 0, NULL, err, errlen) ||
            add(ctx, SCMP_ACT_ALLOW, "capset", 0, NULL, err, errlen))
            goto fail;
    }
    for (int i = 0; i < sec->nioctls; i++) {
        struct scmp_arg_cmp req = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xFFFFFFFFu, sec->ioctls[i]);
        if (add(ctx, SCMP_ACT_ALLOW, "ioctl", 1, &req, err, errlen)) goto fail;
    }
    for (int i = 0; i < sec->nfamilies; i++) {
        struct scmp_arg_cmp fam = SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)sec->families[i]);
        if (add(ctx, SCMP_ACT_ALLOW, "socket", 1, &fam, err, errlen)) goto fail;
    }
    return ctx;
fail:
    seccomp_release(ctx);
    return NULL;
}

static int compile(const struct policy_seccomp *sec, bool zygote, struct sock_fprog *prog, char *err,
                   size_t errlen) {
    memset(prog, 0, sizeof *prog);
    scmp_filter_ctx ctx = build(sec, zygote, err, errlen);
    if (!ctx) return -1;
    int fd = memfd_create("viv-seccomp-bpf", MFD_CLOEXEC);
    int rc = fd < 0 ? -errno : seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
    off_t len = rc == 0 ? lseek(fd, 0, SEEK_END) : -1;
    if (rc == 0 && (len <= 0 || len % (off_t)sizeof(struct sock_filter) != 0 ||
                    len / (off_t)sizeof(struct sock_filter) > 65535))
        rc = -EINVAL;
    if (rc == 0) {
        prog->filter = xmalloc((size_t)len);
        prog->len = (unsigned short)(len / (off_t)sizeof(struct sock_filter));
        if (pread(fd, prog->filter, (size_t)len, 0) != len) rc = -EIO;
    }
    if (fd >= 0) close(fd);
    if (rc != 0) {
        syscall_filter_free(prog);
        snprintf(err, errlen, "seccomp: export the filter: %s", strerror(-rc));
        return -1;
    }
    return 0;
}

int syscall_filter_compile(const struct policy_seccomp *sec, struct sock_fprog *prog, char *err,
                           size_t errlen) {
    return compile(sec, false, prog, err, errlen);
}

int syscall_filter_compile_zygote(const struct policy_seccomp *sec, struct sock_fprog *prog, char *err,
                                  size_t errlen) {
    return compile(sec, true, prog, err, errlen);
}

void syscall_filter_free(struct sock_fprog *prog) {
    free(prog->filter);
    prog->filter = NULL;
    prog->len = 0;
}

int syscall_filter_install(const struct sock_fprog *prog) {
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog);
}

char *syscall_filter_describe(const struct policy_seccomp *sec, char *err, size_t errlen) {
    scmp_filter_ctx ctx = build(sec, false, err, errlen);
    if (!ctx) return NULL;
    /* libseccomp writes the text to a file descriptor: use an anonymous one. */
    int fd = memfd_create("viv-seccomp-pfc", MFD_CLOEXEC);
    if (fd < 0) {
        seccomp_release(ctx);
        snprintf(err, errlen, "memfd_create: %s", strerror(errno));
        return NULL;
    }
    int rc = seccomp_export_pfc(ctx, fd);
    seccomp_release(ctx);
    off_t len = lseek(fd, 0, SEEK_END);
    char *text = NULL;
    if (rc == 0 && len >= 0) {
        text = xmalloc((size_t)len + 1);
        if (pread(fd, text, (size_t)len, 0) != len) rc = -EIO;
        else text[len] = 0;
    }
    close(fd);
    if (rc < 0 || len < 0) {
        free(text);
        snprintf(err, errlen, "seccomp_export_pfc: %s", strerror(rc < 0 ? -rc : EIO));
        return NULL;
    }
    return text;
}
