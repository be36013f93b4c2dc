/*
 * policy.c - strict parsing and validation of sandbox policies.
 *
 * The parser walks the JSON with cJSON and checks every key against the
 * schema below. Anything it does not know is an error: an unknown key, a
 * duplicate key, a syscall name libseccomp cannot resolve, an ioctl or socket
 * family outside our table, a limit outside its range. Messages always have
 * the form "<origin>: <key path>: <problem>" so a user can fix the file
 * without reading this code.
 */
#define _GNU_SOURCE
#include "policy.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "egress.h"
#include "../base/json_writer.h"
#include "../base/util.h"

/* The built-in policies, generated at build time from the JSON files in policies/. */
struct builtin_policy {
    const char *name;
    const char *json;
};
extern const struct builtin_policy viv_builtin_policies[];

/* ---------------------------------------------------------------- tables */

/* Syscalls that no policy may allow. Each either acts on the host beyond the
 * job's namespaces (modules, kexec, clocks, swap, accounting), gives a way
 * around the jail (mount, pivot_root, unshare, setns, open_by_handle_at), or
 * is a large kernel attack surface with a long CVE history that tools never
 * need (bpf, perf_event_open, userfaultfd, io_uring, keyctl). ioctl and clone
 * are absent here because the jail always filters them by argument. */
static const char *const never_allowed[] = {
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "unshare", "setns", "clone3",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load",
    "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "syslog", "acct", "quotactl", "quotactl_fd",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "iopl", "ioperm",
    "modify_ldt", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "vhangup", "personality", "uselib", "nfsservctl",
    "fanotify_init", "seccomp", "flock", "ioctl", "socket", NULL,
};

const char *const *policy_never_allowed(void) { return never_allowed; }

/* ioctl requests a policy may name. Everything else is denied; the jail
 * compares only the low 32 bits of the request so the TIOCSTI high-bit
 * trick (CVE-2019-10063 in flatpak) cannot slip a denied request through. */
static const struct {
    const char *name;
    unsigned long value;
} ioctl_table[] = {
    {"TCGETS", 0x5401},   {"TIOCGPGRP", 0x540F}, {"TIOCGWINSZ", 0x5413},
    {"FIONREAD", 0x541B}, {"FIONBIO", 0x5421},   {"FIONCLEX", 0x5450},
    {"FIOCLEX", 0x5451},
};

/* Socket families a policy may name. The job's network namespace has only a
 * loopback interface that is down, so even AF_INET reaches nothing; netlink,
 * packet and the rest are never allowed. */
static const struct {
    const char *name;
    int value;
} family_table[] = {
    {"AF_UNIX", AF_UNIX},
    {"AF_INET", AF_INET},
    {"AF_INET6", AF_INET6},
};

struct limit_spec {
    const char *key;
    size_t offset;
    long min, max, dflt;
};

#define LIMIT(k, lo, hi, d) {#k, offsetof(struct policy_limits, k), lo, hi, d}
static const struct limit_spec limit_specs[] = {
    LIMIT(timeout_ms, 1, 3600000, 10000),
    LIMIT(timeout_ms_max, 1, 3600000, 60000),
    LIMIT(memory_mb, 16, 1048576, 1024),
    LIMIT(pids, 1, 65536, 64),
    LIMIT(file_size_mb, 0, 1048576, 64),
    LIMIT(tmpfs_mb, 1, 65536, 64),
    LIMIT(open_files, 8, 65536, 256),
    LIMIT(output_bytes, 0, 1L << 30, 1L << 20),
    LIMIT(code_bytes, 1, 64L << 20, 1L << 20),
    /* under the default tmpfs (64 MiB), so input files fit where they go */
    LIMIT(files_bytes, 0, 1L << 30, 16L << 20),
    LIMIT(session_ms_max, 1000, 86400000, 3600000),
    /* cgroup v2 cpu.weight semantics: 100 is every job's equal share */
    LIMIT(cpu_weight, 1, 10000, 100),
    /* ten CPU-minutes: a job at the default deadlines never meets it on one
     * core; a session's leftover spinner is stopped after ten minutes of it */
    LIMIT(cpu_ms, 10, 1L << 40, 600000),
    LIMIT(session_cpu_ms, 10, 1L << 40, 600000),
};
#undef LIMIT

/* ---------------------------------------------------------------- errors */

struct parse_ctx {
    const char *origin;
    char *err;
    size_t errlen;
};

static int fail(struct parse_ctx *c, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parse_ctx *c, const char *key, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (key && *key)
        snprintf(c->err, c->errlen, "%s: %s: %s", c->origin, key, msg);
    else
        snprintf(c->err, c->errlen, "%s: %s", c->origin, msg);
    return -1;
}

/* Does it's key appear earlier in obj? (cJSON keeps both copies of a repeated key.) */
static int repeats_earlier_key(const cJSON *obj, const cJSON *it) {
    for (const cJSON *o = obj->child; o != it; o = o->next)
        if (strcmp(o->string, it->string) == 0) return 1;
    return 0;
}

/* Every key of `obj` must be in `allowed`, and none may repeat. */
static int check_keys(struct parse_ctx *c, const cJSON *obj, const char *path,
                      const char *const *allowed) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        char key[160];
        snprintf(key, sizeof key, "%s%s%s", path, *path ? "." : "", it->string);
        int known = 0;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, it->string) == 0) known = 1;
        if (!known) return fail(c, key, "unknown key");
        if (repeats_earlier_key(obj, it)) return fail(c, key, "duplicate key");
    }
    return 0;
}

static int get_string(struct parse_ctx *c, const cJSON *obj, const char *key, char **out,
                      int required) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return required ? fail(c, key, "missing (required)") : 0;
    if (!cJSON_IsString(v)) return fail(c, key, "must be a string");
    *out = xstrdup(v->valuestring);
    return 0;
}

/* A clean absolute path: starts with '/', no "//", no "." or ".." parts. */
static int is_clean_abs_path(const char *p) {
    if (p[0] != '/' || strlen(p) >= 256) return 0;
    if (strcmp(p, "/") == 0) return 1;
    if (p[strlen(p) - 1] == '/') return 0;
    for (const char *s = p; *s;) {
        s++; /* past '/' */
        const char *e = strchrnul(s, '/');
        size_t n = (size_t)(e - s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return 0;
        s = e;
    }
    return 1;
}

static int path_is_under(const char *p, const char *dir) {
    size_t n = strlen(dir);
    return strncmp(p, dir, n) == 0 && (p[n] == 0 || p[n] == '/');
}

/* ---------------------------------------------------------------- sections */

static int parse_command(struct parse_ctx *c, const cJSON *root, struct policy *p) {
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(root, "command");
    if (!cmd) return fail(c, "command", "missing (required)");
    if (!cJSON_IsArray(cmd)) return fail(c, "command", "must be an array of strings");
    int n = cJSON_GetArraySize(cmd);
    if (n < 1 || n > POLICY_MAX_ARGV)
        return fail(c, "command", "must have 1 to %d elements", POLICY_MAX_ARGV);
    const cJSON *it;
    cJSON_ArrayForEach(it, cmd) {
        if (!cJSON_IsString(it)) return fail(c, "command", "must be an array of strings");
        p->argv[p->argc++] = xstrdup(it->valuestring);
    }
    p->argv[p->argc] = NULL;
    if (!is_clean_abs_path(p->argv[0]))
        return fail(c, "command[0]", "'%s' must be a clean absolute path", p->argv[0]);
    return 0;
}

static int parse_code_path(struct parse_ctx *c, const cJSON *root, struct policy *p) {
    if (get_string(c, root, "code_path", &p->code_path, 0)) return -1;
    if (!p->code_path) return 0;
    if (!is_clean_abs_path(p->code_path) ||
        !(path_is_under(p->code_path, "/work") || path_is_under(p->code_path, "/tmp")) ||
        strcmp(p->code_path, "/work") == 0 || strcmp(p->code_path, "/tmp") == 0)
        return fail(c, "code_path", "'%s' must be a file path under /work or /tmp",
                    p->code_path);
    if (strchr(p->code_path + 1 + strcspn(p->code_path + 1, "/") + 1, '/'))
        return fail(c, "code_path", "'%s' must be directly inside /work or /tmp", p->code_path);
    return 0;
}

/* "stdin": a file inside the jail the job reads as its standard input (the
 * sql tool's runner reads its query this way). */
static int parse_stdin(struct parse_ctx *c, const cJSON *root, struct policy *p) {
    if (get_string(c, root, "stdin", &p->stdin_path, 0)) return -1;
    if (p->stdin_path && !is_clean_abs_path(p->stdin_path))
        return fail(c, "stdin", "'%s' must be a clean absolute path inside the jail", p->stdin_path);
    return 0;
}

static int parse_preload(struct parse_ctx *c, const cJSON *root, struct policy *p) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "preload");
    if (!arr) return 0;
    if (!cJSON_IsArray(arr)) return fail(c, "preload", "must be an array of module names");
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsString(it)) return fail(c, "preload", "must be an array of module names");
        const char *s = it->valuestring;
        if (!*s || strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") !=
                       strlen(s))
            return fail(c, "preload", "'%s' is not a module name", s);
        if (p->npreload == POLICY_MAX_PRELOAD)
            return fail(c, "preload", "more than %d modules", POLICY_MAX_PRELOAD);
        p->preload[p->npreload++] = xstrdup(s);
    }
    return 0;
}

static int parse_env(struct parse_ctx *c, const cJSON *root, struct policy *p) {
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(root, "env");
    if (!env) return 0;
    if (!cJSON_IsObject(env)) return fail(c, "env", "must be an object of strings");
    for (const cJSON *it = env->child; it; it = it->next) {
        char key[160];
        snprintf(key, sizeof key, "env.%s", it->string);
        const char *k = it->string;
        if (!*k || (k[0] >= '0' && k[0] <= '9') ||
            strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") !=
                strlen(k))
            return fail(c, key, "not a valid variable name");
        if (!cJSON_IsString(it)) return fail(c, key, "must be a string");
        if (repeats_earlier_key(env, it)) return fail(c, key, "duplicate key");
        if (p->nenv == POLICY_MAX_ENV) return fail(c, "env", "more than %d variables", POLICY_MAX_ENV);
        p->env[p->nenv++] = xasprintf("%s=%s", k, it->valuestring);
    }
    p->env[p->nenv] = NULL;
    return 0;
}

static int parse_mounts(struct parse_ctx *c, const cJSON *root, struct policy *p) {
    static const char *const keys[] = {"src", "dst", "optional", NULL};
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "mounts");
    if (!arr) return 0;
    if (!cJSON_IsArray(arr)) return fail(c, "mounts", "must be an array");
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        char path[64];
        snprintf(path, sizeof path, "mounts[%d]", i++);
        if (!cJSON_IsObject(it)) return fail(c, path, "must be an object {src, dst}");
        if (check_keys(c, it, path, keys)) return -1;
        if (p->nmounts == POLICY_MAX_MOUNTS)
            return fail(c, "mounts", "more than %d mounts", POLICY_MAX_MOUNTS);
        struct policy_mount *m = &p->mounts[p->nmounts++];
        if (get_string(c, it, "src", &m->src, 1) || get_string(c, it, "dst", &m->dst, 1))
            return fail(c, path, "needs string fields src and dst");
        const cJSON *opt = cJSON_GetObjectItemCaseSensitive(it, "optional");
        if (opt && !cJSON_IsBool(opt)) return fail(c, path, "optional must be true or false");
        m->optional = cJSON_IsTrue(opt);
        int param = m->src[0] == '@';
        if (param ? strspn(m->src + 1, "abcdefghijklmnopqrstuvwxyz0123456789_") !=
                            strlen(m->src + 1) || !m->src[1]
                  : !is_clean_abs_path(m->src))
            return fail(c, path, "src '%s' must be a clean absolute path or @name", m->src);
        if (!is_clean_abs_path(m->dst) || strcmp(m->dst, "/") == 0)
            return fail(c, path, "dst '%s' must be a clean absolute path other than /", m->dst);
        static const char *const reserved[] = {"/proc", "/dev", "/tmp", "/work", "/etc/passwd",
                                               "/etc/group", "/etc/hosts", "/etc/hostname", NULL};
        for (const char *const *r = reserved; *r; r++)
            if (path_is_under(m->dst, *r))
                return fail(c, path, "dst '%s' is inside %s, which the jail manages itself",
                            m->dst, *r);
        if (strcmp(m->dst, "/etc") == 0)
            return fail(c, path, "dst /etc: the jail writes its own /etc; bind single entries of it");
        for (int j = 0; j + 1 < p->nmounts; j++)
            if (strcmp(p->mounts[j].dst, m->dst) == 0)
                return fail(c, path, "dst '%s' is mounted twice", m->dst);
    }
    return 0;
}

static int parse_limits(struct parse_ctx *c, const cJSON *root, struct policy *p) {
    const size_t n = sizeof limit_specs / sizeof limit_specs[0];
    for (size_t i = 0; i < n; i++)
        *(long *)((char *)&p->limits + limit_specs[i].offset) = limit_specs[i].dflt;
    const cJSON *lim = cJSON_GetObjectItemCaseSensitive(root, "limits");
    if (!lim) return 0;
    if (!cJSON_IsObject(lim)) return fail(c, "limits", "must be an object");
    for (const cJSON *it = lim->child; it; it = it->next) {
        char key[160];
        snprintf(key, sizeof key, "limits.%s", it->string);
        const struct limit_spec *spec = NULL;
        for (size_t i = 0; i < n; i++)
            if (strcmp(limit_specs[i].key, it->string) == 0) spec = &limit_specs[i];
        if (!spec) return fail(c, key, "unknown key");
        if (repeats_earlier_key(lim, it)) return fail(c, key, "duplicate key");
        if (!cJSON_IsNumber(it)) return fail(c, key, "must be an integer");
        double v = it->valuedouble;
        /* range first: converting an out-of-range double to long is undefined */
        if (!(v >= (double)spec->min && v <= (double)spec->max))
            return fail(c, key, "%.0f is out of range [%ld, %ld]", v, spec->min, spec->max);
        if (v != (double)(long)v) return fail(c, key, "must be an integer");
        *(long *)((char *)&p->limits + spec->offset) = (long)v;
    }
    if (p->limits.timeout_ms > p->limits.timeout_ms_max)
        return fail(c, "limits.timeout_ms", "%ld exceeds limits.timeout_ms_max %ld",
                    p->limits.timeout_ms, p->limits.timeout_ms_max);
    return 0;
}

static int string_in(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(*list, s) == 0) return 1;
    return 0;
}

static int parse_seccomp(struct parse_ctx *c, const cJSON *root, struct policy *p) {
    static const char *const keys[] = {"default_action", "syscalls", "ioctls",
                                       "socket_families", NULL};
    struct policy_seccomp *s = &p->seccomp;
    const cJSON *sec = cJSON_GetObjectItemCaseSensitive(root, "seccomp");
    if (!sec) return fail(c, "seccomp", "missing (required)");
    if (!cJSON_IsObject(sec)) return fail(c, "seccomp", "must be an object");
    if (check_keys(c, sec, "seccomp", keys)) return -1;

    char *action = NULL;
    if (get_string(c, sec, "default_action", &action, 0)) return fail(c, "seccomp.default_action", "must be a string");
    if (!action || strcmp(action, "errno") == 0)
        s->default_action = POLICY_DENY_ERRNO;
    else if (strcmp(action, "kill") == 0)
        s->default_action = POLICY_DENY_KILL;
    else {
        int r = fail(c, "seccomp.default_action", "'%s' must be \"errno\" or \"kill\"", action);
        free(action);
        return r;
    }
    free(action);

    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(sec, "syscalls");
    if (!cJSON_IsArray(arr)) return fail(c, "seccomp.syscalls", "missing or not an array");
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsString(it)) return fail(c, "seccomp.syscalls", "must be an array of names");
        const char *name = it->valuestring;
        if (string_in(name, never_allowed)) {
            if (strcmp(name, "ioctl") == 0)
                return fail(c, "seccomp.syscalls", "'ioctl' is granted per request: use seccomp.ioctls");
            if (strcmp(name, "socket") == 0)
                return fail(c, "seccomp.syscalls", "'socket' is granted per family: use seccomp.socket_families");
            return fail(c, "seccomp.syscalls", "'%s' is never allowed in a jail", name);
        }
        if (seccomp_syscall_resolve_name(name) == __NR_SCMP_ERROR)
            return fail(c, "seccomp.syscalls", "'%s' is not a syscall this machine knows", name);
        for (int j = 0; j < s->nsyscalls; j++)
            if (strcmp(s->syscalls[j], name) == 0)
                return fail(c, "seccomp.syscalls", "'%s' is listed twice", name);
        if (s->nsyscalls == POLICY_MAX_SYSCALLS)
            return fail(c, "seccomp.syscalls", "more than %d names", POLICY_MAX_SYSCALLS);
        s->syscalls[s->nsyscalls++] = xstrdup(name);
    }

    arr = cJSON_GetObjectItemCaseSensitive(sec, "ioctls");
    if (arr && !cJSON_IsArray(arr)) return fail(c, "seccomp.ioctls", "must be an array of names");
    cJSON_ArrayForEach(it, arr) {
        size_t i, n = sizeof ioctl_table / sizeof ioctl_table[0];
        if (!cJSON_IsString(it)) return fail(c, "seccomp.ioctls", "must be an array of names");
        for (i = 0; i < n && strcmp(ioctl_table[i].name, it->valuestring) != 0; i++) {}
        if (i == n) return fail(c, "seccomp.ioctls", "'%s' is not an ioctl a jail may allow", it->valuestring);
        if (s->nioctls == POLICY_MAX_IOCTLS) return fail(c, "seccomp.ioctls", "too many");
        s->ioctl_names[s->nioctls] = xstrdup(ioctl_table[i].name);
        s->ioctls[s->nioctls++] = ioctl_table[i].value;
    }

    arr = cJSON_GetObjectItemCaseSensitive(sec, "socket_families");
    if (arr && !cJSON_IsArray(arr)) return fail(c, "seccomp.socket_families", "must be an array of names");
    cJSON_ArrayForEach(it, arr) {
        size_t i, n = sizeof family_table / sizeof family_table[0];
        if (!cJSON_IsString(it)) return fail(c, "seccomp.socket_families", "must be an array of names");
        for (i = 0; i < n && strcmp(family_table[i].name, it->valuestring) != 0; i++) {}
        if (i == n)
            return fail(c, "seccomp.socket_families", "'%s' is not a family a jail may allow (AF_UNIX, AF_INET, AF_INET6)", it->valuestring);
        if (s->nfamilies == POLICY_MAX_FAMILIES) return fail(c, "seccomp.socket_families", "too many");
        s->family_names[s->nfamilies] = xstrdup(family_table[i].name);
        s->families[s->nfamilies++] = family_table[i].value;
    }
    return 0;
}

/* "network": "none" (the default), or {"egress": ["host:port", ...], caps}.
 * An allowlist needs AF_INET among the socket families: the job reaches
 * the proxy over loopback TCP. */
static const struct limit_spec network_specs[] = {
    {"max_connections", offsetof(struct policy_network, max_connections), 1, 256, 16},
    {"max_bytes", offsetof(struct policy_network, max_bytes), 1, 1L << 40, 256L << 20},
    {"connection_ms", offsetof(struct policy_network, connection_ms), 100, 3600000, 60000},
    {"header_ms", offsetof(struct policy_network, header_ms), 100, 60000, 5000},
};

static int parse_network(struct parse_ctx *c, const cJSON *root, struct policy *p) {
    struct policy_network *n = &p->network;
    const size_t nspecs = sizeof network_specs / sizeof network_specs[0];
    for (size_t i = 0; i < nspecs; i++) *(long *)((char *)n + network_specs[i].offset) = network_specs[i].dflt;
    const cJSON *net = cJSON_GetObjectItemCaseSensitive(root, "network");
    if (!net) return 0;
    if (cJSON_IsString(net)) {
        if (strcmp(net->valuestring, "none") == 0) return 0;
        return fail(c, "network", "'%s' must be \"none\" or an object {\"egress\": [\"host:port\", ...]}", net->valuestring);
    }
    if (!cJSON_IsObject(net)) return fail(c, "network", "must be \"none\" or an object {\"egress\": [\"host:port\", ...]}");
    static const char *const keys[] = {"egress", "max_connections", "max_bytes", "connection_ms", "header_ms", NULL};
    if (check_keys(c, net, "network", keys)) return -1;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(net, "egress");
    if (!cJSON_IsArray(arr)) return fail(c, "network.egress", "missing or not an array of \"host:port\" strings");
    if (cJSON_GetArraySize(arr) == 0) return fail(c, "network.egress", "empty: for no network write \"network\": \"none\"");
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        char key[64], why[256];
        snprintf(key, sizeof key, "network.egress[%d]", n->nrules);
        if (!cJSON_IsString(it)) return fail(c, key, "must be a \"host:port\" string");
        if (n->nrules == POLICY_MAX_EGRESS) return fail(c, "network.egress", "more than %d entries", POLICY_MAX_EGRESS);
        if (egress_rule_parse(it->valuestring, &n->rules[n->nrules], why, sizeof why))
            return fail(c, key, "'%s': %s", it->valuestring, why);
        n->nrules++;
        const struct egress_rule *r = &n->rules[n->nrules - 1];
        for (int j = 0; j + 1 < n->nrules; j++) {
            const struct egress_rule *o = &n->rules[j];
            if (o->port == r->port && o->wildcard == r->wildcard && o->family == r->family &&
                (r->name ? o->name && strcmp(o->name, r->name) == 0 : !o->name && memcmp(o->addr, r->addr, 16) == 0))
                return fail(c, key, "'%s' is listed twice", it->valuestring);
        }
    }
    for (const cJSON *k = net->child; k; k = k->next) {
        if (strcmp(k->string, "egress") == 0) continue;
        const struct limit_spec *spec = NULL;
        for (size_t i = 0; i < nspecs; i++)
            if (strcmp(network_specs[i].key, k->string) == 0) spec = &network_specs[i];
        char key[96];
        snprintf(key, sizeof key, "network.%s", k->string);
        if (!cJSON_IsNumber(k)) return fail(c, key, "must be an integer");
        double v = k->valuedouble;
        if (!(v >= (double)spec->min && v <= (double)spec->max))
            return fail(c, key, "%.0f is out of range [%ld, %ld]", v, spec->min, spec->max);
        if (v != (double)(long)v) return fail(c, key, "must be an integer");
        *(long *)((char *)n + spec->offset) = (long)v;
    }
    bool inet = false;
    for (int i = 0; i < p->seccomp.nfamilies; i++) inet |= p->seccomp.families[i] == AF_INET;
    if (!inet)
        return fail(c, "network.egress", "the job reaches its proxy over TCP on loopback: add \"AF_INET\" to seccomp.socket_families");
    return 0;
}

/* ---------------------------------------------------------------- entry points */

int policy_parse(const char *json, size_t len, const char *origin, struct policy *p, char *err,
                 size_t errlen) {
    static const char *const keys[] = {"name", "description", "command", "code_path", "stdin",
                                       "preload", "env", "mounts", "limits", "seccomp", "network", NULL};
    struct parse_ctx c = {origin, err, errlen};
    memset(p, 0, sizeof *p);
    p->origin = xstrdup(origin);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t off = end ? (size_t)(end - json) : 0;
        fail(&c, NULL, "invalid JSON near byte %zu", off);
        policy_free(p);
        return -1;
    }
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        fail(&c, NULL, "must be a JSON object");
        goto out;
    }
    if (check_keys(&c, root, "", keys)) goto out;
    if (get_string(&c, root, "name", &p->name, 1) || get_string(&c, root, "description", &p->description, 0))
        goto out;
    if (!*p->name || strspn(p->name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(p->name)) {
        fail(&c, "name", "'%s' must be lower-case letters, digits, '_' or '-'", p->name);
        goto out;
    }
    if (parse_command(&c, root, p) || parse_code_path(&c, root, p) || parse_stdin(&c, root, p) ||
        parse_preload(&c, root, p) ||
        parse_env(&c, root, p) || parse_mounts(&c, root, p) || parse_limits(&c, root, p) ||
        parse_seccomp(&c, root, p) || parse_network(&c, root, p))
        goto out;
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc) policy_free(p);
    return rc;
}

const char *const *policy_builtin_names(void) {
    static const char *names[32];
    int n = 0;
    for (const struct builtin_policy *b = viv_builtin_policies; b->name && n < 31; b++)
        names[n++] = b->name;
    names[n] = NULL;
    return names;
}

int policy_load(const char *name_or_path, struct policy *out, char *err, size_t errlen) {
    size_t n = strlen(name_or_path);
    int is_path = strchr(name_or_path, '/') || (n > 5 && strcmp(name_or_path + n - 5, ".json") == 0);
    if (!is_path) {
        for (const struct builtin_policy *b = viv_builtin_policies; b->name; b++)
            if (strcmp(b->name, name_or_path) == 0) {
                char origin[96];
                snprintf(origin, sizeof origin, "built-in policy '%s'", b->name);
                return policy_parse(b->json, strlen(b->json), origin, out, err, errlen);
            }
        char names[256] = "";
        for (const struct builtin_policy *b = viv_builtin_policies; b->name; b++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? ", " : "", b->name);
        snprintf(err, errlen, "unknown policy '%s' (built-in: %s; or give a path to a .json file)",
                 name_or_path, names);
        return -1;
    }
    size_t len;
    char *text = read_file(name_or_path, 1 << 20, &len, err, errlen);
    if (!text) return -1;
    int rc = policy_parse(text, len, name_or_path, out, err, errlen);
    free(text);
    return rc;
}

void policy_free(struct policy *p) {
    free(p->name);
    free(p->description);
    free(p->origin);
    for (int i = 0; i < p->argc; i++) free(p->argv[i]);
    free(p->code_path);
    free(p->stdin_path);
    for (int i = 0; i < p->npreload; i++) free(p->preload[i]);
    for (int i = 0; i < p->nenv; i++) free(p->env[i]);
    for (int i = 0; i < p->nmounts; i++) {
        free(p->mounts[i].src);
        free(p->mounts[i].dst);
    }
    for (int i = 0; i < p->seccomp.nsyscalls; i++) free(p->seccomp.syscalls[i]);
    for (int i = 0; i < p->seccomp.nioctls; i++) free(p->seccomp.ioctl_names[i]);
    for (int i = 0; i < p->seccomp.nfamilies; i++) free(p->seccomp.family_names[i]);
    for (int i = 0; i < p->network.nrules; i++) egress_rule_free(&p->network.rules[i]);
    memset(p, 0, sizeof *p);
}

void policy_network_write(struct json_writer *w, const struct policy *p) {
    if (p->network.nrules == 0) {
        jw_cstring(w, "none");
        return;
    }
    jw_object_begin(w);
    jw_key(w, "egress"), jw_array_begin(w);
    for (int i = 0; i < p->network.nrules; i++) jw_cstring(w, p->network.rules[i].text);
    jw_array_end(w);
    for (size_t i = 0; i < sizeof network_specs / sizeof network_specs[0]; i++)
        jw_key(w, network_specs[i].key), jw_int(w, *(const long *)((const char *)&p->network + network_specs[i].offset));
    jw_object_end(w);
}

char *policy_to_json(const struct policy *p) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", p->name);
    cJSON_AddStringToObject(o, "origin", p->origin);
    if (p->description) cJSON_AddStringToObject(o, "description", p->description);
    cJSON_AddItemToObject(o, "command", cJSON_CreateStringArray((const char *const *)p->argv, p->argc));
    if (p->code_path) cJSON_AddStringToObject(o, "code_path", p->code_path);
    if (p->stdin_path) cJSON_AddStringToObject(o, "stdin", p->stdin_path);
    cJSON_AddItemToObject(o, "preload", cJSON_CreateStringArray((const char *const *)p->preload, p->npreload));
    cJSON *env = cJSON_AddObjectToObject(o, "env");
    for (int i = 0; i < p->nenv; i++) {
        char *kv = xstrdup(p->env[i]);
        char *eq = strchr(kv, '=');
        *eq = 0;
        cJSON_AddStringToObject(env, kv, eq + 1);
        free(kv);
    }
    cJSON *mounts = cJSON_AddArrayToObject(o, "mounts");
    for (int i = 0; i < p->nmounts; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "src", p->mounts[i].src);
        cJSON_AddStringToObject(m, "dst", p->mounts[i].dst);
        cJSON_AddStringToObject(m, "mode", "read-only, nosuid, nodev");
        if (p->mounts[i].optional) cJSON_AddTrueToObject(m, "optional");
        cJSON_AddItemToArray(mounts, m);
    }
    cJSON *lim = cJSON_AddObjectToObject(o, "limits");
    for (size_t i = 0; i < sizeof limit_specs / sizeof limit_specs[0]; i++)
        cJSON_AddNumberToObject(lim, limit_specs[i].key,
                                (double)*(const long *)((const char *)&p->limits + limit_specs[i].offset));
    cJSON *sec = cJSON_AddObjectToObject(o, "seccomp");
    cJSON_AddStringToObject(sec, "default_action",
                            p->seccomp.default_action == POLICY_DENY_KILL ? "kill" : "errno");
    cJSON_AddItemToObject(sec, "syscalls",
                          cJSON_CreateStringArray((const char *const *)p->seccomp.syscalls, p->seccomp.nsyscalls));
    cJSON_AddItemToObject(sec, "ioctls",
                          cJSON_CreateStringArray((const char *const *)p->seccomp.ioctl_names, p->seccomp.nioctls));
    cJSON_AddItemToObject(sec, "socket_families",
                          cJSON_CreateStringArray((const char *const *)p->seccomp.family_names, p->seccomp.nfamilies));
    struct json_writer nw;
    jw_init(&nw);
    policy_network_write(&nw, p);
    char *net_text = jw_finish(&nw);
    cJSON *net = cJSON_Parse(net_text);
    free(net_text);
    cJSON_AddItemToObject(o, "network", net);
    if (cJSON_IsObject(net))
        cJSON_AddStringToObject(net, "proxy", EGRESS_PROXY_URL " inside the jail (HTTP_PROXY, HTTPS_PROXY); "
                                              "loopback, link-local, private, multicast and reserved addresses refused unless listed as addresses");
    cJSON *always = cJSON_AddObjectToObject(o, "always_enforced");
    cJSON_AddStringToObject(always, "network", "own network namespace: loopback only (up only to reach the egress proxy)");
    cJSON_AddStringToObject(always, "namespaces", "user, pid, mount, net, ipc, uts, cgroup");
    cJSON_AddStringToObject(always, "capabilities", "none (bounding, ambient, inheritable, effective, permitted cleared)");
    cJSON_AddStringToObject(always, "no_new_privs", "set");
    cJSON_AddStringToObject(always, "clone", "allowed only without namespace flags; clone3 fails with ENOSYS");
    cJSON_AddStringToObject(always, "non_native_abis", "x32 and i386 system calls kill the process");
    cJSON_AddItemToObject(always, "never_allowed", cJSON_CreateStringArray(never_allowed, (int)(sizeof never_allowed / sizeof *never_allowed) - 1));
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

int policy_check_runnable(const struct policy *p, char *err, size_t errlen) {
    for (int i = 0; i < p->seccomp.nsyscalls; i++)
        if (!strcmp(p->seccomp.syscalls[i], "execve") || !strcmp(p->seccomp.syscalls[i], "execveat")) return 0;
    return fail_with(err, errlen, "policy '%s': seccomp.syscalls lacks execve, so its command could never be executed "
                                  "(add \"execve\" to the list)", p->name);
}

long call_deadline_ms(long requested, long dflt, long max) {
    long t = requested > 0 ? requested : dflt;
    return max > 0 && t > max ? max : t;
}

long policy_call_timeout_ms(const struct policy *p, long requested) {
    return call_deadline_ms(requested, p->limits.timeout_ms, p->limits.timeout_ms_max);
}
