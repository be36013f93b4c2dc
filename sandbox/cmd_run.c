/*
 * cmd_run.c - `viv run` (one job in a jail, no daemon) and `viv policy`.
 *
 * Exit status of `viv run`:
 *   2   bad usage: unknown flag, bad number, unknown or invalid policy, ...
 *   1   the sandbox could not be set up (the message says which step)
 *   with --json: 0 whenever the job ran, whatever its own outcome (read
 *   exit_code / signal / timed_out in the object)
 *   without --json: the job's exit status; 128+N if signal N ended it;
 *   124 if the deadline did (like timeout(1)), with one line on stderr;
 *   152 (128 + SIGXCPU, as for one process over RLIMIT_CPU) if the job's
 *   processes together spent its CPU budget ("cpu_exceeded":true in JSON);
 *   130 if viv itself was interrupted (SIGINT, SIGTERM, SIGHUP): the job is
 *   killed and its cgroups removed first (with --json: "cancelled":true).
 */
#define _GNU_SOURCE
#include "cmds.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "builtin_filters.h"
#include "jail.h"
#include "policy.h"
#include "syscall_filter.h"
#include "util.h"

#define MAX_DATA 16

static const char run_usage[] =
    "usage: viv run [--policy NAME|FILE] [--timeout-ms N] [--mem-mb N] [--json]\n"
    "               [--db FILE] [--data NAME=PATH] -- CMD [ARGS...]\n"
    "       viv run --tool python|shell|sql (--code TEXT | --code-file F | -) [options]\n"
    "\n"
    "Runs one job in a fresh jail and reports how it ended.\n"
    "  --policy NAME|FILE  a built-in policy (python, shell, sql) or a policy file\n"
    "  --tool NAME         the tool whose code is given; also the default policy\n"
    "  --code TEXT         the code to run;  --code-file F  read it from F;  -  from stdin\n"
    "  --timeout-ms N      wall-clock deadline (default and maximum from the policy)\n"
    "  --mem-mb N          address-space limit in MiB (at most the policy's)\n"
    "  --db FILE           the database for the sql tool (same as --data db=FILE)\n"
    "  --data NAME=PATH    a value for a policy mount whose src is @NAME\n"
    "  --json              print one JSON result object (fields of the RPC exec response)\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "viv run: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see viv run --help)\n");
    va_end(ap);
    return 2;
}

/* "python3" -> "/usr/bin/python3", looked up in the directories a policy
 * normally mounts. Absolute paths are taken as they are. */
static char *resolve_command(const char *name) {
    if (strchr(name, '/')) return xstrdup(name);
    static const char *const dirs[] = {"/usr/bin", "/bin", "/usr/sbin", "/sbin", NULL};
    for (const char *const *d = dirs; *d; d++) {
        char *path = xasprintf("%s/%s", *d, name);
        if (access(path, X_OK) == 0) return path;
        free(path);
    }
    return xstrdup(name);
}

static char *read_code(const char *path, size_t *len) {
    char err[512];
    if (strcmp(path, "-") == 0) path = "/dev/stdin";
    char *text = read_file(path, 64u << 20, len, err, sizeof err);
    if (!text) fprintf(stderr, "viv run: code: %s\n", err);
    return text;
}

/* Ctrl-C or kill: the handler writes to a pipe that is the job's cancel_fd,
 * so the supervisor kills the jail, removes its cgroups and reports. */
static int cancel_pipe[2] = {-1, -1};
static void on_signal(int sig) {
    char c = (char)sig;
    if (write(cancel_pipe[1], &c, 1) < 0) {}
}

static void install_cancel_handlers(void) {
    if (pipe2(cancel_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int cmd_run(int argc, char **argv) {
    const char *policy_name = NULL, *tool = NULL, *code_arg = NULL, *code_file = NULL;
    long timeout_ms = 0, mem_mb = 0;
    int json = 0, i;
    struct jail_data data[MAX_DATA];
    char *owned_names[MAX_DATA] = {0};
    int ndata = 0;
    char **cmd = NULL;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                                      \
    do {                                                                                  \
        if (!v) return usage_error("%s needs a value", a);                                \
        i++;                                                                              \
    } while (0)
        if (strcmp(a, "--") == 0) {
            cmd = argv + i + 1;
            if (!cmd[0]) return usage_error("%s needs a command after it", a);
            break;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(run_usage, stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--policy") == 0) {
            NEED_VALUE();
            policy_name = v;
        } else if (strcmp(a, "--tool") == 0) {
            NEED_VALUE();
            tool = v;
        } else if (strcmp(a, "--code") == 0) {
            NEED_VALUE();
            if (code_arg || code_file) return usage_error("%s: code given twice", a);
            code_arg = v;
        } else if (strcmp(a, "--code-file") == 0 || strcmp(a, "-") == 0) {
            if (a[0] == '-' && a[1] == '-') NEED_VALUE();
            if (code_arg || code_file) return usage_error("%s: code given twice", a);
            code_file = a[1] ? v : "-";
        } else if (strcmp(a, "--timeout-ms") == 0) {
            NEED_VALUE();
            if (parse_long(v, 1, 3600000, &timeout_ms))
                return usage_error("--timeout-ms: '%s' is not a number of milliseconds in [1, 3600000]", v);
        } else if (strcmp(a, "--mem-mb") == 0) {
            NEED_VALUE();
            if (parse_long(v, 16, 1048576, &mem_mb))
                return usage_error("--mem-mb: '%s' is not a number of MiB in [16, 1048576]", v);
        } else if (strcmp(a, "--db") == 0 || strcmp(a, "--data") == 0) {
            NEED_VALUE();
            if (ndata == MAX_DATA) return usage_error("%s: too many data values", a);
            if (a[2] == 'd' && a[3] == 'b') {
                data[ndata++] = (struct jail_data){"db", v};
            } else {
                const char *eq = strchr(v, '=');
                if (!eq || eq == v || !eq[1]) return usage_error("--data: '%s' is not NAME=PATH", v);
                owned_names[ndata] = strndup(v, (size_t)(eq - v));
                data[ndata] = (struct jail_data){owned_names[ndata], eq + 1};
                ndata++;
            }
        } else {
            return usage_error("unknown option '%s'", a);
        }
#undef NEED_VALUE
    }
    int has_code = code_arg || code_file;
    if (has_code && cmd) return usage_error("%s", "give either code (--code, --code-file, -) or a command after --, not both");
    if (!has_code && !cmd) return usage_error("%s", "nothing to run: give --tool with --code, or -- CMD");
    if (has_code && !tool && !policy_name) return usage_error("%s", "code needs --tool (python, shell or sql)");
    if (tool && cmd) return usage_error("%s", "--tool runs code; for a command use --policy NAME -- CMD");

    struct policy pol;
    char err[1024];
    if (policy_load(policy_name ? policy_name : tool ? tool : "shell", &pol, err, sizeof err)) {
        fprintf(stderr, "viv run: %s\n", err);
        return 2;
    }
    if (timeout_ms > pol.limits.timeout_ms_max) {
        fprintf(stderr, "viv run: --timeout-ms %ld exceeds policy '%s' maximum %ld\n", timeout_ms, pol.name, pol.limits.timeout_ms_max);
        policy_free(&pol);
        return 2;
    }
    if (mem_mb > pol.limits.memory_mb) {
        fprintf(stderr, "viv run: --mem-mb %ld exceeds policy '%s' limit %ld\n", mem_mb, pol.name, pol.limits.memory_mb);
        policy_free(&pol);
        return 2;
    }
    if (has_code && !pol.code_path) {
        fprintf(stderr, "viv run: policy '%s' takes no code; run a command with -- CMD\n", pol.name);
        policy_free(&pol);
        return 2;
    }

    size_t code_len = 0;
    char *code = NULL;
    if (code_arg) code = xstrdup(code_arg), code_len = strlen(code_arg);
    if (code_file && !(code = read_code(code_file, &code_len))) {
        policy_free(&pol);
        return 2;
    }
    char *resolved = NULL;
    char **run_argv = NULL;
    if (cmd) {
        int n = 0;
        while (cmd[n]) n++;
        run_argv = xcalloc((size_t)n + 1, sizeof *run_argv);
        resolved = resolve_command(cmd[0]);
        run_argv[0] = resolved;
        for (int k = 1; k < n; k++) run_argv[k] = cmd[k];
    }

    install_cancel_handlers();
    /* a built-in policy's filter was compiled when viv was built */
    const struct sock_fprog *filter = builtin_filter_for(&pol);
    struct jail_spec spec = {.policy = &pol, .argv = run_argv, .code = code, .code_len = code_len,
                             .timeout_ms = timeout_ms, .memory_mb = mem_mb, .data = data, .ndata = ndata,
                             .filter = filter, .cancel_fd = cancel_pipe[0]};
    struct jail_result res;
    int rc;
    int ran = jail_run(&spec, &res, err, sizeof err);
    if (ran != 0) {
        fprintf(stderr, "viv run: %s\n", err);
        rc = ran == JAIL_SETUP_FAILED ? 1 : 2;
    } else if (json) {
        char *text = jail_result_to_json(&res, tool, pol.name);
        puts(text);
        free(text);
        rc = 0;
        jail_result_free(&res);
    } else {
        fwrite(res.out, 1, res.out_len, stdout);
        fflush(stdout);
        fwrite(res.err, 1, res.err_len, stderr);
        if (res.out_dropped || res.err_dropped)
            fprintf(stderr, "viv run: output cap reached: %zu stdout and %zu stderr bytes dropped\n",
                    res.out_dropped, res.err_dropped);
        if (res.limits_not_applied[0]) fprintf(stderr, "viv run: limits not applied: %s\n", res.limits_not_applied);
        if (res.timed_out) {
            fprintf(stderr, "viv run: job killed at its %ld ms deadline\n", timeout_ms ? timeout_ms : pol.limits.timeout_ms);
            rc = 124;
        } else if (res.cpu_exceeded) {
            fprintf(stderr, "viv run: job killed at its CPU budget (%.0f ms of CPU across its processes)\n", res.cpu_ms);
            rc = 128 + SIGXCPU;
        } else if (res.cancelled) {
            fprintf(stderr, "viv run: interrupted; the job was killed\n");
            rc = 130;
        } else {
            rc = res.signal ? 128 + res.signal : res.exit_code;
        }
        jail_result_free(&res);
    }
    for (int k = 0; k < ndata; k++) free(owned_names[k]);
    free(code);
    free(resolved);
    free(run_argv);
    policy_free(&pol);
    return rc;
}

static const char policy_usage[] =
    "usage: viv policy check NAME|FILE [--bpf]   validate and print the effective policy\n"
    "       viv policy list                      the built-in policies\n"
    "       viv policy bpf NAME|FILE OUT         write the compiled seccomp program (raw) to OUT\n";

/* viv policy bpf: the build uses it to precompile the built-in policies. */
static int write_policy_bpf(const char *name, const char *out) {
    struct policy p;
    char err[1024];
    if (policy_load(name, &p, err, sizeof err)) {
        fprintf(stderr, "viv policy: %s\n", err);
        return 2;
    }
    struct sock_fprog prog;
    int rc = syscall_filter_compile(&p.seccomp, &prog, err, sizeof err);
    policy_free(&p);
    if (rc) {
        fprintf(stderr, "viv policy: %s\n", err);
        return 1;
    }
    rc = write_file_atomic(out, prog.filter, (size_t)prog.len * sizeof *prog.filter);
    syscall_filter_free(&prog);
    if (rc) {
        fprintf(stderr, "viv policy: %s: %s\n", out, strerror(errno));
        return 1;
    }
    return 0;
}

int cmd_policy(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "bpf") == 0) return write_policy_bpf(argv[2], argv[3]);
    if (argc >= 2 && strcmp(argv[1], "list") == 0 && argc == 2) {
        for (const char *const *n = policy_builtin_names(); *n; n++) puts(*n);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "check") == 0 && (argc == 3 || (argc == 4 && strcmp(argv[3], "--bpf") == 0))) {
        struct policy p;
        char err[1024];
        if (policy_load(argv[2], &p, err, sizeof err)) {
            fprintf(stderr, "viv policy: %s\n", err);
            return 2;
        }
        char *text = argc == 4 ? syscall_filter_describe(&p.seccomp, err, sizeof err) : policy_to_json(&p);
        policy_free(&p);
        if (!text) {
            fprintf(stderr, "viv policy: %s\n", err);
            return 1;
        }
        fputs(text, stdout);
        if (argc == 3) putchar('\n');
        free(text);
        return 0;
    }
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(policy_usage, stdout);
        return 0;
    }
    fputs(policy_usage, stderr);
    return 2;
}
