/*
 * cmd_exec.c - `viv exec` (one request to a running vivd) and `viv sandbox`
 * (vivd in the foreground).
 *
 * viv exec prints the job's output and exits like `viv run` (the job's
 * status, 128+N for a signal, 124 for the deadline); --json prints vivd's
 * response line instead. Exit 2 for usage errors, 1 when vivd is unreachable
 * or answers with an error.
 */
#define _GNU_SOURCE
#include "cmds.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/args.h"
#include "../client/client.h"
#include "../jail/job_files.h"
#include "../base/util.h"
#include "../vivd/vivd.h"

#define MAX_IO JOB_FILES_MAX

struct exec_io_args {
    const char *stdin_file, *fetch_dir;
    const char *file_args[MAX_IO];
    char *fetch[MAX_IO];
    int nfile_args, nfetch;
};
static struct exec_io_args ioa;

/* --file NAME=F and --fetch NAME may repeat (ARG_FN): one more each time. */
static int add_file_arg(void *ctx, const char *value, char *err, size_t errlen) {
    struct exec_io_args *a = ctx;
    if (!strchr(value, '=') || value[0] == '=') return fail_with(err, errlen, "is not NAME=FILE");
    if (a->nfile_args == MAX_IO) return fail_with(err, errlen, "is one too many (at most %d)", MAX_IO);
    a->file_args[a->nfile_args++] = value;
    return 0;
}
static int add_fetch_arg(void *ctx, const char *value, char *err, size_t errlen) {
    struct exec_io_args *a = ctx;
    if (a->nfetch == MAX_IO) return fail_with(err, errlen, "is one too many (at most %d)", MAX_IO);
    a->fetch[a->nfetch++] = (char *)value;
    return 0;
}

/* Read --stdin and --file contents into io: 0, or -1 with err. */
static int load_io(const struct exec_io_args *a, struct viv_exec_io *io, struct job_file *files, char *err, size_t errlen) {
    memset(io, 0, sizeof *io);
    if (a->stdin_file) {
        char *data = read_file(a->stdin_file, 1u << 30, &io->stdin_len, err, errlen);
        if (!data) return -1;
        io->stdin_data = data;
    }
    for (int i = 0; i < a->nfile_args; i++) {
        const char *eq = strchr(a->file_args[i], '=');
        if (!eq || eq == a->file_args[i]) return fail_with(err, errlen, "--file %s: give NAME=FILE", a->file_args[i]);
        files[i].name = strndup(a->file_args[i], (size_t)(eq - a->file_args[i]));
        files[i].data = read_file(eq + 1, 1u << 30, &files[i].len, err, errlen);
        io->nfiles = i + 1;
        if (!files[i].data) return -1;
    }
    io->files = files;
    io->fetch = a->fetch;
    io->nfetch = a->nfetch;
    return 0;
}

static void free_io(struct viv_exec_io *io, struct job_file *files) {
    free((char *)io->stdin_data);
    for (int i = 0; i < io->nfiles; i++) free(files[i].name), free(files[i].data);
}

/* Write the answer's fetched files into dir (names checked again: they
 * came over the wire); report the ones that could not be fetched. 0 or 1. */
static int save_fetched(const cJSON *resp, const char *dir) {
    int rc = 0;
    const cJSON *errs = cJSON_GetObjectItem(resp, "fetch_errors");
    for (const cJSON *e = errs ? errs->child : NULL; e; e = e->next)
        fprintf(stderr, "viv exec: fetch %s: %s\n", e->string, cJSON_GetStringValue(e)), rc = 1;
    const cJSON *files = cJSON_GetObjectItem(resp, "files");
    for (const cJSON *f = files ? files->child : NULL; f && dir; f = f->next) {
        char err[256];
        size_t len;
        char *data = cJSON_IsString(f) ? base64_decode(f->valuestring, strlen(f->valuestring), &len) : NULL;
        char *path = xasprintf("%s/%s", dir, f->string);
        if (job_path_check(f->string, err, sizeof err) || strchr(f->string, '/')) {
            fprintf(stderr, "viv exec: fetched file '%s' not saved: %s\n", f->string,
                    strchr(f->string, '/') ? "--fetch-dir takes plain names only" : err);
            rc = 1;
        } else if (!data || write_file_atomic(path, data, len) != 0) {
            fprintf(stderr, "viv exec: %s: %s\n", path, data ? strerror(errno) : "not base64");
            rc = 1;
        }
        free(path), free(data);
    }
    return rc;
}

/* What `viv exec`'s flags fill in. */
static struct exec_args {
    const char *socket_path, *tool, *code_arg, *code_file, *op;
    long timeout_ms;
    int json;
} ea;

/* One line per flag; the help is generated from this table (args.h). */
static const struct arg_opt exec_opts[] = {
    {"--socket", ARG_STR, &ea.socket_path, 0, 0, "PATH", "vivd's socket (default: $VIV_SOCKET, $XDG_RUNTIME_DIR/vivd.sock\n"
                                                         "or /tmp/vivd-UID.sock)"},
    {"--tool", ARG_STR, &ea.tool, 0, 0, "NAME", "the tool (policy) that runs the code: python, shell, sql, ..."},
    {"--code", ARG_STR, &ea.code_arg, 0, 0, "TEXT", "the code to run (or --code-file F, or - to read it from stdin)"},
    {"--code-file", ARG_STR, &ea.code_file, 0, 0, "FILE", "read the code from FILE"},
    {"--timeout-ms", ARG_LONG, &ea.timeout_ms, 1, 86400000, "N", "the job's deadline (default: the policy's)"},
    {"--op", ARG_STR, &ea.op, 0, 0, "OP", "ping, stats or policies instead of a job (prints vivd's JSON answer)"},
    {"--json", ARG_FLAG, &ea.json, 0, 0, NULL, "print vivd's response line instead of the job's output"},
    {"--stdin", ARG_STR, &ioa.stdin_file, 0, 0, "FILE", "the job's stdin is the content of FILE"},
    {"--file", ARG_FN, &ioa, 0, 0, "NAME=FILE", "FILE is written to /work/NAME before the job runs (repeatable)", add_file_arg},
    {"--fetch", ARG_FN, &ioa, 0, 0, "NAME", "/work/NAME comes back after the job (in --json, or into --fetch-dir; repeatable)",
     add_fetch_arg},
    {"--fetch-dir", ARG_STR, &ioa.fetch_dir, 0, 0, "DIR", "where fetched files are written"},
    {0},
};

static const struct arg_cmd exec_cmd = {
    .prog = "viv exec",
    .synopsis = "viv exec [--socket PATH] --tool T (--code TEXT | --code-file F | -) [--timeout-ms N] [--json]\n"
                "                [--stdin F] [--file NAME=F]... [--fetch NAME]... [--fetch-dir DIR]\n"
                "       viv exec [--socket PATH] --op ping|stats|policies",
    .about = "Sends one request to a running vivd and prints the result like viv run: the job's exit\n"
             "status, 128+N for signal N, 124 at the deadline; 1 when vivd is unreachable or refuses.\n",
    .opts = exec_opts,
    .examples = "  viv exec --tool python --code 'print(6*7)'\n"
                "  viv exec --socket /tmp/vivd.sock --tool shell --code-file job.sh --json\n"
                "  viv exec --op stats\n",
    .max_positional = 1,
};

int cmd_exec(int argc, char **argv) {
    struct args_rest rest;
    int prc = args_parse(&exec_cmd, argc, argv, &rest);
    if (prc) return prc == ARGS_HELP ? 0 : 2;
    int stdin_code = rest.npos == 1 && !strcmp(rest.pos[0], "-");
    if (rest.npos == 1 && !stdin_code) {
        args_error(&exec_cmd, "unexpected argument '%s'", rest.pos[0]);
        free(rest.pos);
        return 2;
    }
    free(rest.pos);
    const char *socket_path = ea.socket_path, *tool = ea.tool, *code_arg = ea.code_arg, *code_file = ea.code_file, *op = ea.op;
    long timeout_ms = ea.timeout_ms;
    int json = ea.json;
    if (stdin_code) {
        if (code_arg || code_file) return args_error(&exec_cmd, "-: code given twice");
        code_file = "-";
    }
    if (!op && (!tool || (!code_arg == !code_file))) {
        return args_error(&exec_cmd, "give --tool and exactly one of --code, --code-file, - (or --op)");
    }
    char err[512];
    size_t code_len = 0;
    char *code = NULL;
    if (code_file) {
        code = read_file(strcmp(code_file, "-") == 0 ? "/dev/stdin" : code_file, 64u << 20, &code_len, err, sizeof err);
        if (!code) {
            fprintf(stderr, "viv exec: code: %s\n", err);
            return 2;
        }
    } else if (code_arg) {
        code = xstrdup(code_arg);
        code_len = strlen(code);
    }
    struct viv_exec_io io;
    struct job_file files[MAX_IO];
    if (load_io(&ioa, &io, files, err, sizeof err)) {
        fprintf(stderr, "viv exec: %s\n", err);
        free_io(&io, files);
        free(code);
        return 2;
    }
    struct viv_client *c = viv_connect(socket_path, err, sizeof err);
    if (!c) {
        fprintf(stderr, "viv exec: %s\n", err);
        free_io(&io, files);
        free(code);
        return 1;
    }
    long h = op ? viv_submit_op(c, op) : viv_submit_exec_io(c, tool, code, code_len, timeout_ms, &io);
    struct viv_response *r = viv_wait(c, h, -1);
    int rc = 1;
    if (!r) {
        fprintf(stderr, "viv exec: no response\n");
    } else if (json || op) {
        char *text = cJSON_PrintUnformatted(r->json);
        puts(text);
        free(text);
        rc = cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")) ? 0 : 1;
    } else if (!cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok"))) {
        const cJSON *e = cJSON_GetObjectItem(r->json, "error");
        fprintf(stderr, "viv exec: %s: %s\n", cJSON_GetStringValue(cJSON_GetObjectItem(e, "code")),
                cJSON_GetStringValue(cJSON_GetObjectItem(e, "message")));
    } else {
        const char *out = cJSON_GetStringValue(cJSON_GetObjectItem(r->json, "stdout"));
        const char *errs = cJSON_GetStringValue(cJSON_GetObjectItem(r->json, "stderr"));
        if (out) fputs(out, stdout);
        fflush(stdout);
        if (errs) fputs(errs, stderr);
        const cJSON *ec = cJSON_GetObjectItem(r->json, "exit_code");
        int sig = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(r->json, "signal"));
        if (cJSON_IsTrue(cJSON_GetObjectItem(r->json, "timed_out"))) {
            fprintf(stderr, "viv exec: job killed at its deadline\n");
            rc = 124;
        } else {
            rc = cJSON_IsNumber(ec) ? ec->valueint : 128 + sig;
        }
        if (ioa.nfetch && save_fetched(r->json, ioa.fetch_dir) && rc == 0) rc = 1;
    }
    viv_response_free(r);
    viv_close(c);
    free_io(&io, files);
    free(code);
    return rc;
}

int cmd_sandbox(int argc, char **argv) {
    /* `viv sandbox ARGS` is `vivd ARGS`, with the default socket filled in. */
    char **args = xcalloc((size_t)argc + 3, sizeof *args);
    int n = 0, has_socket = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--socket") == 0) has_socket = 1;
        args[n++] = argv[i];
    }
    if (!has_socket) {
        args[n++] = "--socket";
        args[n++] = (char *)viv_default_socket();
    }
    int rc = vivd_main(n, args);
    free(args);
    return rc;
}
