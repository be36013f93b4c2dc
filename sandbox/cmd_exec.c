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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "util.h"
#include "vivd.h"

static const char exec_usage[] =
    "usage: viv exec [--socket PATH] --tool T (--code TEXT | --code-file F | -) [--timeout-ms N] [--json]\n"
    "       viv exec [--socket PATH] --op ping|stats|policies\n"
    "Sends one request to a running vivd (default socket: $VIV_SOCKET, $XDG_RUNTIME_DIR/vivd.sock\n"
    "or /tmp/vivd-UID.sock) and prints the result like viv run.\n";

int cmd_exec(int argc, char **argv) {
    const char *socket_path = NULL, *tool = NULL, *code_arg = NULL, *code_file = NULL, *op = NULL;
    long timeout_ms = 0;
    int json = 0;
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
    struct viv_client *c = viv_connect(socket_path, err, sizeof err);
    if (!c) {
        fprintf(stderr, "viv exec: %s\n", err);
        free(code);
        return 1;
    }
    long h = op ? viv_submit_op(c, op) : viv_submit_exec(c, tool, code, code_len, timeout_ms);
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
    }
    viv_response_free(r);
    viv_close(c);
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
