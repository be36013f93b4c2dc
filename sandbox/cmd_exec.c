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

#include "client.h"
#include "job_files.h"
#include "util.h"
#include "vivd.h"

static const char exec_usage[] =
    "usage: viv exec [--socket PATH] --tool T (--code TEXT | --code-file F | -) [--timeout-ms N] [--json]\n"
    "                [--stdin F] [--file NAME=F]... [--fetch NAME]... [--fetch-dir DIR]\n"
    "       viv exec [--socket PATH] --op ping|stats|policies\n"
    "Sends one request to a running vivd (default socket: $VIV_SOCKET, $XDG_RUNTIME_DIR/vivd.sock\n"
    "or /tmp/vivd-UID.sock) and prints the result like viv run.\n"
    "  --stdin F        the job's stdin is the content of F\n"
    "  --file NAME=F    F is written to /work/NAME before the job runs\n"
    "  --fetch NAME     /work/NAME comes back after it ends (in --json, or written to --fetch-dir)\n";

#define MAX_IO JOB_FILES_MAX

struct exec_io_args {
    const char *stdin_file, *fetch_dir;
    const char *file_args[MAX_IO];
    char *fetch[MAX_IO];
    int nfile_args, nfetch;
};

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

int cmd_exec(int argc, char **argv) {
    const char *socket_path = NULL, *tool = NULL, *code_arg = NULL, *code_file = NULL, *op = NULL;
    long timeout_ms = 0;
    int json = 0;
    struct exec_io_args ioa = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(exec_usage, stdout);
            return 0;
        }
        if (strcmp(a, "--json") == 0) { json = 1; continue; }
        if (strcmp(a, "-") == 0) { code_file = "-"; continue; }
        if (!v) {
            fprintf(stderr, "viv exec: %s: %s (see viv exec --help)\n", a, strncmp(a, "--", 2) == 0 ? "needs a value" : "unexpected argument");
            return 2;
        }
        i++;
        if (strcmp(a, "--socket") == 0) socket_path = v;
        else if (strcmp(a, "--tool") == 0) tool = v;
        else if (strcmp(a, "--code") == 0) code_arg = v;
        else if (strcmp(a, "--code-file") == 0) code_file = v;
        else if (strcmp(a, "--op") == 0) op = v;
        else if (strcmp(a, "--stdin") == 0) ioa.stdin_file = v;
        else if (strcmp(a, "--fetch-dir") == 0) ioa.fetch_dir = v;
        else if ((strcmp(a, "--file") == 0 && ioa.nfile_args == MAX_IO) || (strcmp(a, "--fetch") == 0 && ioa.nfetch == MAX_IO)) {
            fprintf(stderr, "viv exec: %s: at most %d\n", a, MAX_IO);
            return 2;
        } else if (strcmp(a, "--file") == 0) ioa.file_args[ioa.nfile_args++] = v;
        else if (strcmp(a, "--fetch") == 0) ioa.fetch[ioa.nfetch++] = (char *)v;
        else if (strcmp(a, "--timeout-ms") == 0) {
            if (parse_long(v, 1, 86400000, &timeout_ms)) {
                fprintf(stderr, "viv exec: --timeout-ms: '%s' is not a number of milliseconds (see viv exec --help)\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "viv exec: unknown option '%s' (see viv exec --help)\n", a);
            return 2;
        }
    }
    if (!op && (!tool || (!code_arg == !code_file))) {
        fprintf(stderr, "viv exec: give --tool and exactly one of --code, --code-file, - (or --op) (see viv exec --help)\n");
        return 2;
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
