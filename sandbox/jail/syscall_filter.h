/* syscall_filter.h - the seccomp allowlist, built with libseccomp. */
#ifndef VIV_SYSCALL_FILTER_H
#define VIV_SYSCALL_FILTER_H
#include <stddef.h>
#include "policy.h"

#include <linux/filter.h>

/* Compile the filter for `sec` into a BPF program (once, in the supervisor).
 * 0, or -1 with err. Free with syscall_filter_free(). */
int syscall_filter_compile(const struct policy_seccomp *sec, struct sock_fprog *prog, char *err,
                           size_t errlen);
void syscall_filter_free(struct sock_fprog *prog);

/* The filter for a zygote interpreter (see zygote.c): the policy's allowlist
 * plus what the zygote needs to give each request child its own namespaces
 * and then lock it down: unshare of CLONE_NEWNS/NEWPID/NEWIPC/NEWUTS only
 * (never NEWUSER, NEWNET, NEWCGROUP, NEWTIME), setns into a pid namespace
 * only, mount, and capset. The child then
 * installs the policy's own filter on top; stacked filters only narrow. */
int syscall_filter_compile_zygote(const struct policy_seccomp *sec, struct sock_fprog *prog, char *err,
                                  size_t errlen);

/* Install a compiled program in the calling thread. It allocates nothing,
 * so it can run after RLIMIT_AS is set. The caller must have set
 * no_new_privs. 0, or -1 with errno. */
int syscall_filter_install(const struct sock_fprog *prog);

/* The filter as libseccomp's pseudo-filter-code text, for viv policy check
 * --bpf. Caller frees. NULL with err on failure. */
char *syscall_filter_describe(const struct policy_seccomp *sec, char *err, size_t errlen);

#endif
