/*
 * http_api.c - SandboxFusion's and Biomni-SkyRL's request and response
 * shapes over vivd's own exec and sessions (see http_api.h).
 *
 * Languages of /run_code: python runs as the python tool (warm); bash runs
 * /bin/bash from the python tool (warm too, and what a lab's bash scripts
 * expect where /bin/sh is dash); sql runs the SQL against a fresh in-memory
 * SQLite database, printed as the sqlite3 shell's default list mode. The
 * same python tool keeps the one set of jail rules for all three. Anything
 * else is a SandboxError naming the languages that exist.
 */
#define _GNU_SOURCE
#include "http_api.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/json_writer.h"
#include "../base/util.h"

#define LANGUAGES "python, bash, sql"

static bool is_path(const char *path, const char *want) { return strcmp(path, want) == 0; }

char *http_error_body(const char *path, const char *message) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    if (is_path(path, "/run_code")) {
        jw_key(&w, "status"), jw_cstring(&w, "SandboxError");
        jw_key(&w, "message"), jw_cstring(&w, message);
        jw_key(&w, "compile_result"), jw_null(&w);
        jw_key(&w, "run_result"), jw_null(&w);
    } else {
        jw_key(&w, "error"), jw_cstring(&w, message);
        /* the runtime's clients show "output" to the agent: say it there too */
        char *out = xasprintf("Error: %s", message);
        jw_key(&w, "output"), jw_cstring(&w, out);
        free(out);
    }
    jw_object_end(&w);
    return jw_finish(&w);
}

static void refuse(struct http_call *call, const char *path, int status, const char *message) {
    call->line = NULL;
    call->status = status;
    call->body = http_error_body(path, message);
}

/* Python text that evaluates to `s` (hex, so no quoting can break out). */
static char *py_str(const char *s, size_t len) {
    char *hex = xmalloc(len * 2 + 1);
    hex[len * 2] = 0;
    for (size_t i = 0; i < len; i++) snprintf(hex + 2 * i, 3, "%02x", (unsigned char)s[i]);
    char *r = xasprintf("bytes.fromhex('%s').decode('utf-8', 'surrogateescape')", hex);
    free(hex);
    return r;
}

/* Bash from Python: its output on the job's own stdout/stderr, its status
 * the job's (128+N for a signal, as a shell reports it). */
static char *bash_program(const char *code, size_t len) {
    char *s = py_str(code, len);
    char *r = xasprintf("import subprocess as _viv_sp, sys as _viv_sys\n"
                        "_viv_sys.stdout.flush(); _viv_sys.stderr.flush()\n"
                        "_viv_rc = _viv_sp.run(['/bin/bash', '-c', %s]).returncode\n"
                        "_viv_sys.exit(_viv_rc if _viv_rc >= 0 else 128 - _viv_rc)\n", s);
    free(s);
    return r;
}

static char *sql_program(const char *code, size_t len) {
    char *s = py_str(code, len);
    char *r = xasprintf(
        "import sqlite3, sys\n"
        "con = sqlite3.connect(':memory:', isolation_level=None)\n"
        "buf = ''\n"
        "def show(v):\n    return '' if v is None else str(v)\n"
        "for part in %s.split(';'):\n"
        "    buf += part + ';'\n"
        "    if not sqlite3.complete_statement(buf):\n        continue\n"
        "    stmt, buf = buf, ''\n"
        "    if not stmt.strip(' \\t\\r\\n;'):\n        continue\n"
        "    try:\n"
        "        for row in con.execute(stmt):\n            print('|'.join(show(v) for v in row))\n"
        "    except sqlite3.Error as e:\n"
        "        sys.stdout.flush(); print('Error: %%s' %% e, file=sys.stderr); sys.exit(1)\n"
        "if buf.strip(' \\t\\r\\n;'):\n"
        "    print('Error: incomplete SQL: %%s' %% buf.strip(), file=sys.stderr); sys.exit(1)\n", s);
    free(s);
    return r;
}

/* A number of seconds -> ms in [1, 86400000], or -1 when not a usable number. */
static long seconds_to_ms(const cJSON *v) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble <= 0 || v->valuedouble > 86400) return -1;
    long ms = (long)ceil(v->valuedouble * 1000.0);
    return ms < 1 ? 1 : ms;
}

static void run_code(const char *body, size_t len, struct http_call *call) {
    const char *P = "/run_code";
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return refuse(call, P, 400, "the body must be a JSON object");
    }
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "code"), *lang = cJSON_GetObjectItemCaseSensitive(j, "language"),
                *in = cJSON_GetObjectItemCaseSensitive(j, "stdin"), *files = cJSON_GetObjectItemCaseSensitive(j, "files"),
                *fetch = cJSON_GetObjectItemCaseSensitive(j, "fetch_files"),
                *rt = cJSON_GetObjectItemCaseSensitive(j, "run_timeout");
    char msg[256] = "";
    long timeout_ms = 0;
    if (!cJSON_IsString(code)) snprintf(msg, sizeof msg, "'code' must be a string");
    else if (!cJSON_IsString(lang)) snprintf(msg, sizeof msg, "'language' must be a string (" LANGUAGES ")");
    else if (in && !cJSON_IsNull(in) && !cJSON_IsString(in)) snprintf(msg, sizeof msg, "'stdin' must be a string");
    else if (files && !cJSON_IsNull(files) && !cJSON_IsObject(files)) snprintf(msg, sizeof msg, "'files' must be an object of name: base64");
    else if (fetch && !cJSON_IsNull(fetch) && !cJSON_IsArray(fetch)) snprintf(msg, sizeof msg, "'fetch_files' must be an array of names");
    else if (rt && !cJSON_IsNull(rt) && (timeout_ms = seconds_to_ms(rt)) < 0)
        snprintf(msg, sizeof msg, "'run_timeout' must be a number of seconds in (0, 86400]");
    if (msg[0]) {
        cJSON_Delete(j);
        return refuse(call, P, 400, msg);
    }
    const char *l = lang->valuestring;
    size_t clen = strlen(code->valuestring);
    char *program;
    if (!strcmp(l, "python") || !strcmp(l, "python3")) program = xstrdup(code->valuestring);
    else if (!strcmp(l, "bash")) program = bash_program(code->valuestring, clen);
    else if (!strcmp(l, "sql")) program = sql_program(code->valuestring, clen);
    else {
        snprintf(msg, sizeof msg, "language '%.40s' is not supported here; the languages that exist: " LANGUAGES, l);
        cJSON_Delete(j);
        return refuse(call, P, 200, msg); /* SandboxFusion answers a SandboxError, not an HTTP error */
    }
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "id"), jw_int(&w, 1);
    jw_key(&w, "op"), jw_cstring(&w, "exec");
    jw_key(&w, "tool"), jw_cstring(&w, "python");
    jw_key(&w, "code"), jw_cstring(&w, program);
    if (timeout_ms > 0) jw_key(&w, "timeout_ms"), jw_int(&w, timeout_ms);
    /* an empty stdin is no stdin: the job stays on the warm path */
    if (cJSON_IsString(in) && in->valuestring[0]) jw_key(&w, "stdin"), jw_cstring(&w, in->valuestring);
    if (cJSON_IsObject(files) && files->child) {
        jw_key(&w, "files"), jw_object_begin(&w);
        for (const cJSON *f = files->child; f; f = f->next) {
            jw_key(&w, f->string);
            if (cJSON_IsString(f)) jw_cstring(&w, f->valuestring);
            else jw_null(&w); /* vivd refuses it with the reason */
        }
        jw_object_end(&w);
    }
    if (cJSON_IsArray(fetch) && fetch->child) {
        jw_key(&w, "fetch_files"), jw_array_begin(&w);
        for (const cJSON *f = fetch->child; f; f = f->next) {
            if (cJSON_IsString(f)) jw_cstring(&w, f->valuestring);
            else jw_null(&w);
        }
        jw_array_end(&w);
    }
    jw_object_end(&w);
    free(program);
    cJSON_Delete(j);
    char *obj = jw_finish(&w);
    call->line = xasprintf("%s\n", obj);
    free(obj);
}

/* Biomni A1's routing of one cell: "#!BASH" or "#!CLI" as its first line
 * runs the rest with bash, "#!R" with R, anything else is Python in the
 * session's namespace. Bash runs from that Python, so it shares the
 * session's jail and files. NULL (and msg) when the cell cannot run. */
static char *biomni_cell(const char *code, char *msg, size_t msglen) {
    const char *p = code;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    const char *nl = strchr(p, '\n'), *rest = nl ? nl + 1 : p + strlen(p);
    size_t first = (size_t)((nl ? nl : p + strlen(p)) - p);
    while (first && (p[first - 1] == '\r' || p[first - 1] == ' ')) first--;
    if ((first == 6 && !strncmp(p, "#!BASH", 6)) || (first == 5 && !strncmp(p, "#!CLI", 5))) {
        char *s = py_str(rest, strlen(rest));
        char *r = xasprintf("import subprocess as _viv_sp, sys as _viv_sys\n"
                            "_viv_sys.stdout.flush(); _viv_sys.stderr.flush()\n"
                            "_viv_sp.run(['/bin/bash', '-c', %s], stdin=_viv_sp.DEVNULL)\n", s);
        free(s);
        return r;
    }
    if (first == 3 && !strncmp(p, "#!R", 3)) {
        snprintf(msg, msglen, "R is not available in this sandbox (no R policy); cells may be Python, or bash after #!BASH / #!CLI");
        return NULL;
    }
    return xstrdup(code);
}

static char *session_line(const char *op, const char *session, const char *code, long timeout_ms) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "id"), jw_int(&w, 1);
    jw_key(&w, "op"), jw_cstring(&w, op);
    if (session) jw_key(&w, "session"), jw_cstring(&w, session);
    else jw_key(&w, "tool"), jw_cstring(&w, "python");
    if (code) jw_key(&w, "code"), jw_cstring(&w, code);
    if (timeout_ms > 0) jw_key(&w, "timeout_ms"), jw_int(&w, timeout_ms);
    jw_object_end(&w);
    char *obj = jw_finish(&w), *line = xasprintf("%s\n", obj);
    free(obj);
    return line;
}

static void runtime_call(const char *path, const char *body, size_t len, struct http_call *call) {
    if (is_path(path, "/start_runtime")) {
        call->line = session_line("session_open", NULL, NULL, 0);
        return;
    }
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return refuse(call, path, 400, "the body must be a JSON object");
    }
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(j, "session_id");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "code"), *ts = cJSON_GetObjectItemCaseSensitive(j, "timeout_seconds");
    char msg[256] = "";
    long timeout_ms = 0;
    bool exec = is_path(path, "/execute");
    if (!cJSON_IsString(sid) || !sid->valuestring[0]) snprintf(msg, sizeof msg, "'session_id' must be a non-empty string");
    else if (exec && !cJSON_IsString(code)) snprintf(msg, sizeof msg, "'code' must be a string");
    else if (exec && ts && !cJSON_IsNull(ts) && (timeout_ms = seconds_to_ms(ts)) < 0)
        snprintf(msg, sizeof msg, "'timeout_seconds' must be a number of seconds in (0, 86400]");
    if (msg[0]) {
        cJSON_Delete(j);
        return refuse(call, path, 400, msg);
    }
    call->session = xstrdup(sid->valuestring);
    if (!exec) {
        call->line = session_line("session_close", sid->valuestring, NULL, 0);
    } else {
        char *cell = biomni_cell(code->valuestring, msg, sizeof msg);
        if (!cell) refuse(call, path, 400, msg);
        else call->line = session_line("exec", sid->valuestring, cell, timeout_ms);
        free(cell);
    }
    cJSON_Delete(j);
}

void http_translate(const char *path, const char *body, size_t len, struct http_call *call) {
    memset(call, 0, sizeof *call);
    if (memchr(body, 0, len)) return refuse(call, path, 400, "the body contains a NUL byte");
    if (is_path(path, "/run_code")) return run_code(body, len, call);
    if (is_path(path, "/start_runtime") || is_path(path, "/execute") || is_path(path, "/delete_runtime"))
        return runtime_call(path, body, len, call);
    refuse(call, path, 404, "no such endpoint (POST /run_code, /start_runtime, /execute, /delete_runtime)");
}

void http_call_free(struct http_call *call) {
    free(call->line), free(call->body), free(call->session);
    memset(call, 0, sizeof *call);
}

/* vivd's error codes as HTTP statuses; busy ones come with Retry-After. */
static int error_status(const char *code, int *retry_after) {
    if (!strcmp(code, "busy")) return *retry_after = 1, 429;
    if (!strcmp(code, "shutting_down")) return *retry_after = 5, 503;
    if (!strcmp(code, "not_found") || !strcmp(code, "session_lost")) return 404;
    if (!strcmp(code, "bad_request") || !strcmp(code, "unknown_op")) return 400;
    return 500;
}

/* A numeric member in [lo, hi], else 0 (vivd's answer is trusted, but a
 * missing member must not turn into NaN or an out-of-range int). */
static double number_in(const cJSON *r, const char *key, double lo, double hi) {
    const cJSON *v = cJSON_GetObjectItem(r, key);
    return cJSON_IsNumber(v) && v->valuedouble >= lo && v->valuedouble <= hi ? v->valuedouble : 0;
}

static void sandbox_fusion_result(struct json_writer *w, const cJSON *r) {
    bool timed_out = cJSON_IsTrue(cJSON_GetObjectItem(r, "timed_out")) || cJSON_IsTrue(cJSON_GetObjectItem(r, "cpu_exceeded"));
    const cJSON *ec = cJSON_GetObjectItem(r, "exit_code");
    int sig = (int)number_in(r, "signal", 0, 64);
    if (!cJSON_IsNumber(ec) || ec->valuedouble < 0 || ec->valuedouble > 255) ec = NULL;
    bool ok = ec && ec->valueint == 0 && !timed_out;
    jw_key(w, "status"), jw_cstring(w, ok ? "Success" : "Failed");
    jw_key(w, "message"), jw_cstring(w, timed_out ? "the code ran past its run_timeout" : "");
    jw_key(w, "compile_result"), jw_null(w);
    jw_key(w, "run_result"), jw_object_begin(w);
    jw_key(w, "status"), jw_cstring(w, timed_out ? "TimeLimitExceeded" : "Finished");
    jw_key(w, "execution_time"), jw_double(w, number_in(r, "wall_ms", 0, 1e12) / 1000.0, 4);
    jw_key(w, "return_code");
    if (ec) jw_int(w, ec->valueint);
    else if (sig && !timed_out) jw_int(w, -sig);
    else jw_null(w);
    const char *out = cJSON_GetStringValue(cJSON_GetObjectItem(r, "stdout")), *err = cJSON_GetStringValue(cJSON_GetObjectItem(r, "stderr"));
    jw_key(w, "stdout"), jw_cstring(w, out ? out : "");
    jw_key(w, "stderr"), jw_cstring(w, err ? err : "");
    jw_object_end(w);
    jw_key(w, "executor_pod_name"), jw_null(w);
    jw_key(w, "files"), jw_object_begin(w);
    const cJSON *files = cJSON_GetObjectItem(r, "files");
    for (const cJSON *f = files ? files->child : NULL; f; f = f->next)
        if (cJSON_IsString(f)) jw_key(w, f->string), jw_cstring(w, f->valuestring);
    jw_object_end(w);
}

/* What Biomni A1 shows the agent: stdout, then stderr, and how a call that
 * ran out of time ended. */
static void biomni_output(struct json_writer *w, const cJSON *r) {
    const char *out = cJSON_GetStringValue(cJSON_GetObjectItem(r, "stdout")), *err = cJSON_GetStringValue(cJSON_GetObjectItem(r, "stderr"));
    bool timed_out = cJSON_IsTrue(cJSON_GetObjectItem(r, "timed_out"));
    char *text = xasprintf("%s%s%s", out ? out : "", err ? err : "",
                           timed_out ? "\n[the call ran past its timeout and was killed, with everything it started]" : "");
    jw_key(w, "output"), jw_cstring(w, text);
    free(text);
}

char *http_answer(const char *path, const char *line, size_t len, int *status, int *retry_after) {
    *retry_after = 0;
    cJSON *r = cJSON_ParseWithLength(line, len);
    if (!cJSON_IsObject(r)) {
        cJSON_Delete(r);
        *status = 502;
        return http_error_body(path, "vivd gave no answer");
    }
    if (!cJSON_IsTrue(cJSON_GetObjectItem(r, "ok"))) {
        const cJSON *e = cJSON_GetObjectItem(r, "error");
        const char *code = cJSON_GetStringValue(cJSON_GetObjectItem(e, "code")), *m = cJSON_GetStringValue(cJSON_GetObjectItem(e, "message"));
        *status = error_status(code ? code : "internal", retry_after);
        char *msg = xasprintf("%s: %s", code ? code : "internal", m ? m : "");
        char *body = http_error_body(path, msg);
        free(msg);
        cJSON_Delete(r);
        return body;
    }
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    if (is_path(path, "/run_code")) sandbox_fusion_result(&w, r);
    else if (is_path(path, "/start_runtime")) jw_key(&w, "session_id"), jw_cstring(&w, cJSON_GetStringValue(cJSON_GetObjectItem(r, "session")) ?: "");
    else if (is_path(path, "/execute")) biomni_output(&w, r);
    else jw_key(&w, "status"), jw_cstring(&w, "deleted");
    jw_object_end(&w);
    cJSON_Delete(r);
    *status = 200;
    return jw_finish(&w);
}
