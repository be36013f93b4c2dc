/*
 * cmd_run.c - `viv run` (one job in a jail, no daemon) and `viv policy`.
 *
 * Exit status of `viv run`:
 *   2   bad usage: unknown flag, bad number, unknown or invalid policy, ...
 *   1   the sandbox could not be set up (the message says which step)
 *   with --json: 0 whenever the job ran, whatever its own outcome (read
 *   exit_code / signal / timed_out in the object), 130 if interrupted
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

#include "../base/args.h"
#include "../jail/builtin_filters.h"
#include "../jail/jail.h"
#include "../jail/policy.h"
#include "../jail/syscall_filter.h"
#include "../jail/egress.h"
#include "../base/util.h"

#define MAX_DATA 16

/* What `viv run`'s flags fill in. */
struct run_args {
    const char *policy_name, *tool, *code_arg, *code_file;
    long timeout_ms, mem_mb;
    int json;
    const char *egress_log, *egress_record, *egress_replay;
    struct jail_data data[MAX_DATA];
    char *owned[2 * MAX_DATA]; /* names and resolved paths */
    int ndata, nowned;
};

static int set_code(void *ctx, const char *v, char *err, size_t errlen) {
    struct run_args *r = ctx;
    if (r->code_arg || r->code_file) return fail_with(err, errlen, "code given twice");
    r->code_arg = v;
    return 0;
}

static int set_code_file(void *ctx, const char *v, char *err, size_t errlen) {
    struct run_args *r = ctx;
    if (r->code_arg || r->code_file) return fail_with(err, errlen, "code given twice");
    r->code_file = v;
    return 0;
}

static int add_data_value(struct run_args *r, const char *v, int is_db, char *err, size_t errlen) {
    if (r->ndata == MAX_DATA) return fail_with(err, errlen, "more than %d data values", MAX_DATA);
    char *name, *path;
    char *spec = is_db ? xasprintf("db=%s", v) : xstrdup(v);
    int rc = args_name_path(spec, &name, &path, err, errlen);
    free(spec);
    if (rc) return -1;
    struct stat st;
    /* a database is a file: a directory would reach SQLite in the jail as "disk I/O error" */
    if (is_db && (stat(path, &st) != 0 || !S_ISREG(st.st_mode))) {
        free(name), free(path);
        return fail_with(err, errlen, "not a database file (a directory or special file)");
    }
    r->owned[r->nowned++] = name, r->owned[r->nowned++] = path;
    r->data[r->ndata++] = (struct jail_data){name, path};
    return 0;
}

static int add_db(void *ctx, const char *v, char *err, size_t errlen) { return add_data_value(ctx, v, 1, err, errlen); }
static int add_data(void *ctx, const char *v, char *err, size_t errlen) { return add_data_value(ctx, v, 0, err, errlen); }

static struct run_args ra;

static const struct arg_opt run_opts[] = {
    {"--policy", ARG_STR, &ra.policy_name, 0, 0, "NAME|FILE", "a built-in policy (python, shell, sql) or a policy file"},
    {"--tool", ARG_STR, &ra.tool, 0, 0, "NAME", "the tool whose code is given (python, shell, sql, r); also the default policy"},
    {"--code", ARG_FN, &ra, 0, 0, "TEXT", "the code to run (or --code-file F, or - to read it from stdin)", set_code},
    {"--code-file", ARG_FN, &ra, 0, 0, "FILE", "read the code from FILE", set_code_file},
    {"--timeout-ms", ARG_LONG, &ra.timeout_ms, 1, 3600000, "N", "wall-clock deadline (default and maximum from the policy)"},
    {"--mem-mb", ARG_LONG, &ra.mem_mb, 16, 1048576, "N", "address-space limit in MiB (at most the policy's)"},
    {"--db", ARG_FN, &ra, 0, 0, "FILE", "the database for the sql tool (same as --data db=FILE)", add_db},
    {"--data", ARG_FN, &ra, 0, 0, "NAME=PATH", "a value for a policy mount whose src is @NAME", add_data},
    {"--json", ARG_FLAG, &ra.json, 0, 0, NULL, "print one JSON result object (fields of the RPC exec response)"},
    {"--egress-log", ARG_STR, &ra.egress_log, 0, 0, "FILE", "one JSON line per egress connection (default: stderr, for a policy with network.egress)"},
    {"--egress-record", ARG_STR, &ra.egress_record, 0, 0, "DIR", "keep the answers to plain-HTTP egress requests in DIR"},
    {"--egress-replay", ARG_STR, &ra.egress_replay, 0, 0, "DIR", "answer plain-HTTP egress only from DIR (a miss is a 502); refuse HTTPS"},
    {0},
};

static const struct arg_cmd run_cmd = {
    .prog = "viv run",
    .synopsis = "viv run [--policy NAME|FILE] [options] -- CMD [ARGS...]\n"
                "       viv run --tool python|shell|sql|r (--code TEXT | --code-file F | -) [options]",
    .about = "Runs one job in a fresh jail and reports how it ended: the job's exit status, 128+N\n"
             "for signal N, 124 at the deadline, 152 at the CPU budget, 130 if interrupted.\n",
    .opts = run_opts,
    .examples = "  viv run --tool python --code 'print(6*7)'\n"
                "  viv run --tool sql --db genes.sqlite --code 'select count(*) from genes;'\n"
                "  viv run --policy shell --timeout-ms 2000 -- uname -a\n",
    .max_positional = 1,
    .dashdash = 1,
};

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
    struct args_rest rest;
    int prc = args_parse(&run_cmd, argc, argv, &rest);
    if (prc) return prc == ARGS_HELP ? 0 : 2;
    if (rest.npos == 1 && strcmp(rest.pos[0], "-") != 0) {
        int rc = usage_error("unexpected argument '%s' (a command goes after --)", rest.pos[0]);
        free(rest.pos);
        return rc;
    }
    if (rest.npos == 1 && (ra.code_arg || ra.code_file)) {
        free(rest.pos);
        return usage_error("-: code given twice");
    }
    if (rest.npos == 1) ra.code_file = "-";
    free(rest.pos);
    char **cmd = rest.after;
    if (cmd && !cmd[0]) return usage_error("-- needs a command after it");
    const char *policy_name = ra.policy_name, *tool = ra.tool, *code_arg = ra.code_arg, *code_file = ra.code_file;
    long timeout_ms = ra.timeout_ms, mem_mb = ra.mem_mb;
    int json = ra.json, ndata = ra.ndata;
    struct jail_data *data = ra.data;
    int has_code = code_arg || code_file;
    if (has_code && cmd) return usage_error("%s", "give either code (--code, --code-file, -) or a command after --, not both");
    if (!has_code && !cmd) return usage_error("%s", "nothing to run: give --tool with --code, or -- CMD");
    if (has_code && !tool && !policy_name) return usage_error("%s", "code needs --tool (python, shell, sql or r)");
    if (tool && cmd) return usage_error("%s", "--tool runs code; for a command use --policy NAME -- CMD");

    struct policy pol;
    char err[1024];
    if (policy_load(policy_name ? policy_name : tool ? tool : "shell", &pol, err, sizeof err)) {
        fprintf(stderr, "viv run: %s\n", err);
        return 2;
    }
    if (policy_check_runnable(&pol, err, sizeof err) != 0) {
        fprintf(stderr, "viv run: %s\n", err);
        policy_free(&pol);
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

    if (egress_configure(ra.egress_log ? ra.egress_log : pol.network.nrules ? "-" : NULL, ra.egress_record,
                         ra.egress_replay, err, sizeof err) != 0) {
        fprintf(stderr, "viv run: %s\n", err);
        policy_free(&pol);
        free(code);
        free(run_argv);
        free(resolved);
        return 2;
    }
    char owner[32], peer[32];
    snprintf(owner, sizeof owner, "run-%d", (int)getpid());
    snprintf(peer, sizeof peer, "uid:%u", (unsigned)getuid());
    egress_set_owner(owner, peer);

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
        /* the object says "cancelled":true; the status says so too, as without --json */
        rc = res.cancelled ? 130 : 0;
        if (res.cancelled) fprintf(stderr, "viv run: interrupted; the job was killed\n");
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
    for (int k = 0; k < ra.nowned; k++) free(ra.owned[k]);
    free(code);
    free(resolved);
    free(run_argv);
    policy_free(&pol);
    return rc;
}

static int policy_bpf_flag;
static const struct arg_opt policy_opts[] = {
    {"--bpf", ARG_FLAG, &policy_bpf_flag, 0, 0, NULL, "with check: print the compiled seccomp filter instead of the policy"},
    {0},
};
static const struct arg_cmd policy_cmd = {
    .prog = "viv policy",
    .synopsis = "viv policy check NAME|FILE [--bpf]   validate and print the effective policy\n"
                "       viv policy list                      the built-in policies\n"
                "       viv policy bpf NAME|FILE OUT         write the compiled seccomp program (raw) to OUT",
    .about = "Policies say what a tool's jail runs, mounts, allows and limits (docs/sandbox.md#policies).\n"
             "check exits 2 with FILE: KEY: problem for a policy that does not validate.\n",
    .opts = policy_opts,
    .examples = "  viv policy list\n"
                "  viv policy check python\n"
                "  viv policy check my-tool.json --bpf\n",
    .max_positional = 3,
};

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
    policy_bpf_flag = 0;
    struct args_rest rest;
    int prc = args_parse(&policy_cmd, argc, argv, &rest);
    if (prc) return prc == ARGS_HELP ? 0 : 2;
    const char *action = rest.npos ? rest.pos[0] : NULL;
    int nargs = rest.npos - 1;
    char **args = rest.pos + 1;
    int rc;
    static const char *const actions[] = {"check", "list", "bpf", NULL};
    if (!action) {
        rc = args_error(&policy_cmd, "give an action: check, list or bpf");
    } else if (strcmp(action, "bpf") == 0 && nargs == 2 && !policy_bpf_flag) {
        rc = write_policy_bpf(args[0], args[1]);
    } else if (strcmp(action, "list") == 0 && nargs == 0 && !policy_bpf_flag) {
        for (const char *const *n = policy_builtin_names(); *n; n++) puts(*n);
        rc = 0;
    } else if (strcmp(action, "check") == 0 && nargs == 1) {
        struct policy p;
        char err[1024];
        if (policy_load(args[0], &p, err, sizeof err)) {
            fprintf(stderr, "viv policy: %s\n", err);
            rc = 2;
        } else {
            char *text = policy_bpf_flag ? syscall_filter_describe(&p.seccomp, err, sizeof err) : policy_to_json(&p);
            policy_free(&p);
            if (!text) {
                fprintf(stderr, "viv policy: %s\n", err);
                rc = 1;
            } else {
                fputs(text, stdout);
                if (!policy_bpf_flag) putchar('\n');
                free(text);
                rc = 0;
            }
        }
    } else if (strcmp(action, "check") && strcmp(action, "list") && strcmp(action, "bpf")) {
        const char *near = args_nearest(action, actions);
        rc = near ? args_error(&policy_cmd, "unknown action '%s' (did you mean %s?)", action, near)
                  : args_error(&policy_cmd, "unknown action '%s' (check, list or bpf)", action);
    } else {
        rc = args_error(&policy_cmd, "%s takes %s", action,
                        !strcmp(action, "check") ? "one NAME|FILE (and --bpf)" : !strcmp(action, "bpf") ? "NAME|FILE OUT" : "no arguments");
    }
    free(rest.pos);
    return rc;
}
