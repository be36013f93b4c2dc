/*
 * mcp.c - `viv mcp`: see mcp.h.
 *
 * One message is handled at a time: a tools/call waits for its job before
 * the next line is read, so a notifications/cancelled for it is read (and
 * ignored) only once the job has ended; the job's own deadline bounds the
 * wait. Replies are written with json_writer, so whatever bytes a job
 * printed (NULs, invalid UTF-8) the line on stdout stays one valid JSON
 * text.
 *
 * Decisions a client may rely on:
 * - isError is true when a job did not end with a clean exit 0 (an
 *   exception, a non-zero exit, a signal, its deadline), when vivd refused
 *   or lost it, and when the tool's arguments are wrong (the model reads the
 *   message and can correct itself). The text says which.
 * - An unknown tool name, or tools/call params that are not an object with
 *   a string name, is the JSON-RPC error -32602.
 */
#define _GNU_SOURCE
#include "mcp.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../sandbox/client/client.h"
#include "../sandbox/base/json_text.h"
#include "../sandbox/base/json_writer.h"
#include "../sandbox/base/util.h"
#include "private_vivd.h"

#ifndef VIV_VERSION
#define VIV_VERSION "0.1.0"
#endif
#define MCP_LATEST_VERSION "2025-06-18"
#define MCP_MAX_LINE (16u << 20) /* a 1 MiB program JSON-escaped, with room to spare */

/* JSON-RPC error codes */
#define RPC_PARSE_ERROR -32700
#define RPC_INVALID_REQUEST -32600
#define RPC_METHOD_NOT_FOUND -32601
#define RPC_INVALID_PARAMS -32602

static const char *const supported_versions[] = {"2025-06-18", "2025-03-26", "2024-11-05", NULL};

/* A vivd tool's limits, from its `policies` answer. */
struct tool_policy {
    bool present;
    char *description;
    char *network; /* the sentence saying what the tool's code may reach */
    long timeout_ms, timeout_ms_max, memory_mb, output_bytes, code_bytes;
};

struct mcp {
    struct viv_client *c;
    struct tool_policy python, shell, sql, r;
    const char *db_file; /* --db, for the sql tool's description; NULL with --socket */
};

static const char usage[] =
    "usage: viv mcp [--socket PATH] [--db FILE]\n"
    "\n"
    "An MCP (Model Context Protocol) server on stdin/stdout: the sandbox's python,\n"
    "shell, r and sql tools, and python sessions, for any MCP client. Logs go to stderr.\n"
    "\n"
    "  --socket PATH  use the vivd serving PATH (its sql tool reads the database it\n"
    "                 was started with, vivd --data db=FILE); without it, a private\n"
    "                 vivd is started from the bin/vivd beside viv and stopped at exit\n"
    "  --db FILE      the SQLite database the sql tool reads (private vivd only);\n"
    "                 without it, the sql tool is not offered\n"
    "\n"
    "Client configuration: {\"command\": \"bin/viv\", \"args\": [\"mcp\"]}\n";

/* ---- replies ---------------------------------------------------------------------------------- */

static char *id_text(const cJSON *id) { return id ? cJSON_PrintUnformatted(id) : xstrdup("null"); }

static char *reply_result(const cJSON *id, const char *result) {
    char *idt = id_text(id);
    char *s = xasprintf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":%s}", idt, result);
    free(idt);
    return s;
}

static char *reply_error(const cJSON *id, int code, const char *msg) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "code"), jw_int(&w, code);
    jw_key(&w, "message"), jw_cstring(&w, msg);
    jw_object_end(&w);
    char *err = jw_finish(&w), *idt = id_text(id);
    char *s = xasprintf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":%s}", idt, err);
    free(err), free(idt);
    return s;
}

/* A tools/call result: one text content, isError, and optionally a
 * structuredContent member given as JSON text. */
static char *tool_result(const char *text, size_t len, bool is_error, const char *structured) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "content"), jw_array_begin(&w);
    jw_object_begin(&w);
    jw_key(&w, "type"), jw_cstring(&w, "text");
    jw_key(&w, "text"), jw_string(&w, text, len);
    jw_object_end(&w);
    jw_array_end(&w);
    jw_key(&w, "isError"), jw_bool(&w, is_error);
    jw_object_end(&w);
    char *s = jw_finish(&w);
    if (structured) { /* splice it in before the closing brace */
        char *t = xasprintf("%.*s,\"structuredContent\":%s}", (int)(strlen(s) - 1), s, structured);
        free(s);
        s = t;
    }
    return s;
}

static char *tool_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *tool_error(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tool_result(msg, strlen(msg), true, NULL);
}

/* ---- the daemon's policies -------------------------------------------------------------------- */

static long member_long(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    /* a value past what a long holds (or NaN) would be undefined to convert: 0, as if absent */
    return cJSON_IsNumber(v) && v->valuedouble >= -9e15 && v->valuedouble <= 9e15 ? (long)v->valuedouble : 0;
}

/* The sentence for a policy's "network" member: "none" is no network; an
 * egress list names each host:port the code may reach, and how (the proxy
 * in the job's environment, which urllib, requests and curl use unasked). A
 * vivd that does not say gets no sentence rather than a guess. */
static char *network_text(const cJSON *net) {
    if (cJSON_IsString(net) && strcmp(net->valuestring, "none") == 0) return xstrdup(" No network.");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(net, "egress");
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0) return xstrdup("");
    char *hosts = xstrdup("");
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        if (!cJSON_IsString(e)) continue;
        char *more = xasprintf("%s%s%s", hosts, *hosts ? ", " : "", e->valuestring);
        free(hosts);
        hosts = more;
    }
    if (!*hosts) {
        free(hosts);
        return xstrdup("");
    }
    char *text = xasprintf(" Network: only %s, through the HTTP proxy in HTTP_PROXY and HTTPS_PROXY (urllib, "
                           "requests and curl use it by themselves); at most %ld connections at once and %ld "
                           "bytes in all per run or session; any other address is refused.",
                           hosts, member_long(net, "max_connections"), member_long(net, "max_bytes"));
    free(hosts);
    return text;
}

/* Ask vivd for its tools' limits; the descriptions state them. */
static int load_policies(struct mcp *m, char *err, size_t errlen) {
    long h = viv_submit_op(m->c, "policies");
    struct viv_response *r = h > 0 ? viv_wait(m->c, h, 10000) : NULL;
    const cJSON *list = r ? cJSON_GetObjectItemCaseSensitive(r->json, "policies") : NULL;
    if (!cJSON_IsArray(list)) {
        viv_response_free(r);
        return fail_with(err, errlen, "vivd did not list its policies");
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, list) {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "name"));
        struct tool_policy *t = !name                        ? NULL
                                : strcmp(name, "python") == 0 ? &m->python
                                : strcmp(name, "shell") == 0  ? &m->shell
                                : strcmp(name, "sql") == 0    ? &m->sql
                                : strcmp(name, "r") == 0      ? &m->r
                                                              : NULL;
        if (!t) continue;
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "description"));
        t->present = true;
        free(t->description); /* a name vivd lists twice: its last entry counts */
        t->description = xstrdup(d ? d : "");
        size_t n = strlen(t->description); /* it goes in parentheses in ours */
        if (n && t->description[n - 1] == '.') t->description[n - 1] = 0;
        t->timeout_ms = member_long(p, "timeout_ms");
        t->timeout_ms_max = member_long(p, "timeout_ms_max");
        t->memory_mb = member_long(p, "memory_mb");
        t->output_bytes = member_long(p, "output_bytes");
        t->code_bytes = member_long(p, "code_bytes");
        free(t->network);
        t->network = network_text(cJSON_GetObjectItemCaseSensitive(p, "network"));
    }
    viv_response_free(r);
    return 0;
}

/* The sql tool is offered with --db (a private vivd mounts it) or with
 * --socket (the daemon's own database; a daemon without one answers each
 * call with an error, which reaches the client as isError). */
static bool sql_offered(const struct mcp *m, bool private_vivd) {
    return m->sql.present && (m->db_file || !private_vivd);
}

/* ---- tools/list ------------------------------------------------------------------------------- */

static char *limits_text(const struct tool_policy *t) {
    return xasprintf("Limits: timeout %ld ms by default, at most %ld ms (timeout_ms); memory %ld MB; "
                     "stdout and stderr %ld bytes each (the rest is dropped and the result says so); "
                     "code %ld bytes.%s",
                     t->timeout_ms, t->timeout_ms_max, t->memory_mb, t->output_bytes, t->code_bytes, t->network);
}

static const char result_text[] =
    "The result is the job's stdout, then its stderr, then, unless it exited cleanly with 0, a last "
    "line in brackets with the exit code, signal or timeout; a job that did not exit 0 is an error "
    "result (isError).";

static void schema_begin(struct json_writer *w) {
    jw_key(w, "inputSchema"), jw_object_begin(w);
    jw_key(w, "type"), jw_cstring(w, "object");
    jw_key(w, "properties"), jw_object_begin(w);
}

static void schema_end(struct json_writer *w, const char *const *required) {
    jw_object_end(w); /* properties */
    jw_key(w, "required"), jw_array_begin(w);
    for (; required && *required; required++) jw_cstring(w, *required);
    jw_array_end(w);
    jw_key(w, "additionalProperties"), jw_bool(w, false);
    jw_object_end(w);
}

static void prop_string(struct json_writer *w, const char *name, const char *desc) {
    jw_key(w, name), jw_object_begin(w);
    jw_key(w, "type"), jw_cstring(w, "string");
    jw_key(w, "description"), jw_cstring(w, desc);
    jw_object_end(w);
}

static void prop_timeout(struct json_writer *w, const struct tool_policy *t) {
    char desc[160];
    snprintf(desc, sizeof desc, "wall-clock deadline in milliseconds (default %ld, at most %ld)", t->timeout_ms,
             t->timeout_ms_max);
    jw_key(w, "timeout_ms"), jw_object_begin(w);
    jw_key(w, "type"), jw_cstring(w, "integer");
    jw_key(w, "minimum"), jw_int(w, 1);
    jw_key(w, "maximum"), jw_int(w, t->timeout_ms_max);
    jw_key(w, "description"), jw_cstring(w, desc);
    jw_object_end(w);
}

static void annotations(struct json_writer *w, const char *title, bool read_only) {
    jw_key(w, "annotations"), jw_object_begin(w);
    jw_key(w, "title"), jw_cstring(w, title);
    jw_key(w, "readOnlyHint"), jw_bool(w, read_only);
    jw_key(w, "destructiveHint"), jw_bool(w, false);
    jw_key(w, "idempotentHint"), jw_bool(w, read_only);
    jw_key(w, "openWorldHint"), jw_bool(w, false);
    jw_object_end(w);
}

static void tool_begin(struct json_writer *w, const char *name, const char *desc) {
    jw_object_begin(w);
    jw_key(w, "name"), jw_cstring(w, name);
    jw_key(w, "description"), jw_cstring(w, desc);
}

static void list_python(struct json_writer *w, const struct tool_policy *t) {
    char *lim = limits_text(t);
    char *desc = xasprintf("Run Python 3 code in a fresh sandbox (%s) and return what it printed. With `session` "
                           "(from python_session_open) the code runs in that session's interpreter instead, "
                           "whose globals persist from call to call. %s %s",
                           t->description, lim, result_text);
    static const char *const req[] = {"code", NULL};
    tool_begin(w, "python", desc);
    schema_begin(w);
    prop_string(w, "code", "the Python program; print what you want to see");
    prop_timeout(w, t);
    prop_string(w, "session", "a session id from python_session_open (optional)");
    schema_end(w, req);
    annotations(w, "Run Python in the sandbox", false);
    jw_object_end(w);
    free(desc), free(lim);

    tool_begin(w, "python_session_open",
               "Open a Python session: one sandboxed interpreter whose globals persist across python calls "
               "given its id as `session`. Returns the id. Close it with python_session_close; sessions "
               "also end when this server exits, after a long idle time, or at the sandbox's session "
               "lifetime limit.");
    schema_begin(w);
    schema_end(w, NULL);
    annotations(w, "Open a Python session", false);
    jw_object_end(w);

    static const char *const sreq[] = {"session", NULL};
    tool_begin(w, "python_session_close", "Close a Python session opened with python_session_open.");
    schema_begin(w);
    prop_string(w, "session", "the session id");
    schema_end(w, sreq);
    annotations(w, "Close a Python session", false);
    jw_object_end(w);
}

static void list_shell(struct json_writer *w, const struct tool_policy *t) {
    char *lim = limits_text(t);
    char *desc = xasprintf("Run a shell script in a fresh sandbox (%s) and return what it printed. %s %s",
                           t->description, lim, result_text);
    static const char *const req[] = {"code", NULL};
    tool_begin(w, "shell", desc);
    schema_begin(w);
    prop_string(w, "code", "the sh script");
    prop_timeout(w, t);
    schema_end(w, req);
    annotations(w, "Run a shell script in the sandbox", false);
    jw_object_end(w);
    free(desc), free(lim);
}

static void list_r(struct json_writer *w, const struct tool_policy *t) {
    char *lim = limits_text(t);
    char *desc = xasprintf("Run an R script with Rscript in a fresh sandbox (%s) and return what it printed. %s %s",
                           t->description, lim, result_text);
    static const char *const req[] = {"code", NULL};
    tool_begin(w, "r", desc);
    schema_begin(w);
    prop_string(w, "code", "the R script; print() or cat() what you want to see");
    prop_timeout(w, t);
    schema_end(w, req);
    annotations(w, "Run R in the sandbox", false);
    jw_object_end(w);
    free(desc), free(lim);
}

static void list_sql(struct json_writer *w, const struct tool_policy *t, const char *db_file) {
    char *lim = limits_text(t);
    char *db = db_file ? xasprintf("the SQLite database %s", db_file) : xstrdup("the sandbox daemon's database");
    char *desc = xasprintf("Run read-only SQL (SELECT, WITH, reporting pragmas) against %s and return the rows "
                           "tab-separated with a header line, as sqlite3 -header -tabs prints them. %s %s",
                           db, lim, result_text);
    static const char *const req[] = {"query", NULL};
    tool_begin(w, "sql", desc);
    schema_begin(w);
    prop_string(w, "query", "one or more SQL statements; e.g. SELECT name, sql FROM sqlite_master");
    prop_timeout(w, t);
    schema_end(w, req);
    annotations(w, "Query the database (read-only)", true);
    jw_object_end(w);
    free(desc), free(lim), free(db);
}

static char *tools_list(const struct mcp *m, bool private_vivd) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "tools"), jw_array_begin(&w);
    if (m->python.present) list_python(&w, &m->python);
    if (m->shell.present) list_shell(&w, &m->shell);
    if (m->r.present) list_r(&w, &m->r);
    if (sql_offered(m, private_vivd)) list_sql(&w, &m->sql, m->db_file);
    jw_array_end(&w);
    jw_object_end(&w);
    return jw_finish(&w);
}

/* ---- tools/call ------------------------------------------------------------------------------- */

/* The arguments a tool takes, checked before anything runs: every key known,
 * strings where strings belong, timeout_ms an integer in 1..max. NULL when
 * fine, else a malloc'd message. */
static char *check_args(const cJSON *args, const char *tool, const char *const *keys, const struct tool_policy *t) {
    const cJSON *a;
    cJSON_ArrayForEach(a, args) {
        const char *const *k = keys;
        while (*k && strcmp(*k, a->string) != 0) k++;
        if (!*k) return xasprintf("%s: unknown argument '%.64s' (see the tool's inputSchema)", tool, a->string);
        if (strcmp(a->string, "timeout_ms") == 0) {
            double v = a->valuedouble;
            /* the range first: converting a double past LONG_MAX (or NaN) to long is undefined */
            if (!cJSON_IsNumber(a) || !(v >= 1 && v <= 9e15) || v != (double)(long)v ||
                (t && v > (double)t->timeout_ms_max))
                return xasprintf("%s: timeout_ms must be an integer from 1 to %ld", tool, t ? t->timeout_ms_max : 0);
        } else if (!cJSON_IsString(a)) {
            return xasprintf("%s: %s must be a string", tool, a->string);
        }
    }
    return NULL;
}

static const char *arg_str(const cJSON *args, const char *key) {
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, key));
}

static long arg_timeout(const cJSON *args) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(args, "timeout_ms");
    return cJSON_IsNumber(v) ? (long)v->valuedouble : 0; /* 0: the policy's default */
}

static void buf_add(char **buf, size_t *len, const char *s, size_t n) {
    *buf = xrealloc(*buf, *len + n + 1);
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
}

static void buf_line(char **buf, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void buf_line(char **buf, size_t *len, const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (*len && (*buf)[*len - 1] != '\n') buf_add(buf, len, "\n", 1);
    buf_add(buf, len, line, strlen(line));
    buf_add(buf, len, "\n", 1);
}

/* vivd's refusal, or the client's own (deadline passed, connection lost). */
static char *vivd_error_result(const struct viv_response *r) {
    if (!r) return tool_error("the sandbox did not answer");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    const char *code = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "code"));
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message"));
    return tool_error("sandbox error %s: %s", code ? code : "unknown", msg ? msg : "(no message)");
}

/* A job's answer as the tool's text: stdout, stderr, then a bracketed line
 * for everything that was not a clean exit 0. */
static char *job_result(const struct viv_response *r, long timeout_ms) {
    const cJSON *j = r->json;
    char *text = NULL;
    size_t len = 0;
    buf_add(&text, &len, r->out, r->out_len);
    if (r->err_len && len && text[len - 1] != '\n') buf_add(&text, &len, "\n", 1);
    buf_add(&text, &len, r->err, r->err_len);
    const cJSON *ec = cJSON_GetObjectItemCaseSensitive(j, "exit_code");
    long sig = member_long(j, "signal");
    bool failed = false;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "timed_out"))) {
        if (timeout_ms > 0) buf_line(&text, &len, "[timed out: killed at its %ld ms deadline]", timeout_ms);
        else buf_line(&text, &len, "[timed out: killed at the tool's default deadline]");
        failed = true;
    } else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "cpu_exceeded"))) {
        buf_line(&text, &len, "[killed: its CPU-time budget was spent]");
        failed = true;
    } else if (sig > 0) {
        buf_line(&text, &len, "[killed by signal %ld (%s)]", sig, strsignal((int)sig));
        failed = true;
    } else if (cJSON_IsNumber(ec) && ec->valuedouble != 0) {
        buf_line(&text, &len, "[exit code %d]", ec->valueint);
        failed = true;
    }
    long od = member_long(j, "stdout_dropped"), ed = member_long(j, "stderr_dropped");
    if (od > 0 || ed > 0)
        buf_line(&text, &len, "[output over the cap: %ld bytes of stdout and %ld of stderr dropped]", od, ed);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "session_lost"))) {
        buf_line(&text, &len, "[the session is gone: open a new one]");
        failed = true;
    }
    if (len == 0) buf_add(&text, &len, "(no output)", 11);
    char *s = tool_result(text, len, failed, NULL);
    free(text);
    return s;
}

/* Submit, wait for the answer, and turn it into a result: `ok_text` for a
 * request whose answer is no job (session open and close). */
static char *run_request(struct mcp *m, long h, long timeout_ms, char *(*ok_text)(const cJSON *)) {
    if (h < 0) return tool_error("the connection to the sandbox is lost; restart the MCP server");
    struct viv_response *r = viv_wait(m->c, h, -1);
    char *s;
    if (!r || !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->json, "ok"))) s = vivd_error_result(r);
    else if (ok_text) s = ok_text(r->json);
    else s = job_result(r, timeout_ms);
    viv_response_free(r);
    return s;
}

static char *session_opened(const cJSON *j) {
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "session"));
    if (!id) return tool_error("the sandbox opened a session but gave no id");
    char *text = xasprintf("%s", id);
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "session"), jw_cstring(&w, id);
    jw_object_end(&w);
    char *structured = jw_finish(&w);
    char *s = tool_result(text, strlen(text), false, structured);
    free(text), free(structured);
    return s;
}

static char *session_closed(const cJSON *j) { return tool_result("closed", 6, false, NULL); }

static char *call_python(struct mcp *m, const cJSON *args) {
    static const char *const keys[] = {"code", "timeout_ms", "session", NULL};
    char *bad = check_args(args, "python", keys, &m->python);
    const char *code = arg_str(args, "code"), *session = arg_str(args, "session");
    if (!bad && !code) bad = xstrdup("python: code is required");
    if (bad) {
        char *s = tool_result(bad, strlen(bad), true, NULL);
        free(bad);
        return s;
    }
    long t = arg_timeout(args);
    long h = session ? viv_submit_session_exec(m->c, session, code, strlen(code), t)
                     : viv_submit_exec(m->c, "python", code, strlen(code), t);
    return run_request(m, h, t, NULL);
}

static char *call_job(struct mcp *m, const char *tool, const char *code_key, const struct tool_policy *p,
                      const cJSON *args) {
    const char *const keys[] = {code_key, "timeout_ms", NULL};
    char *bad = check_args(args, tool, keys, p);
    const char *code = arg_str(args, code_key);
    if (!bad && !code) bad = xasprintf("%s: %s is required", tool, code_key);
    if (bad) {
        char *s = tool_result(bad, strlen(bad), true, NULL);
        free(bad);
        return s;
    }
    long t = arg_timeout(args);
    return run_request(m, viv_submit_exec(m->c, tool, code, strlen(code), t), t, NULL);
}

static char *call_session_open(struct mcp *m, const cJSON *args) {
    char *bad = check_args(args, "python_session_open", (const char *const[]){NULL}, NULL);
    if (bad) {
        char *s = tool_result(bad, strlen(bad), true, NULL);
        free(bad);
        return s;
    }
    return run_request(m, viv_submit_session_open(m->c, "python"), 0, session_opened);
}

static char *call_session_close(struct mcp *m, const cJSON *args) {
    char *bad = check_args(args, "python_session_close", (const char *const[]){"session", NULL}, NULL);
    const char *session = arg_str(args, "session");
    if (!bad && !session) bad = xstrdup("python_session_close: session is required");
    if (bad) {
        char *s = tool_result(bad, strlen(bad), true, NULL);
        free(bad);
        return s;
    }
    return run_request(m, viv_submit_session_close(m->c, session), 0, session_closed);
}

/* tools/call: a result (possibly isError), or NULL with *rpc_err set for a
 * protocol error (params malformed, unknown tool). */
static char *tools_call(struct mcp *m, bool private_vivd, const cJSON *params, bool has_nul, char *rpc_err,
                        size_t errlen) {
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(params, "name"));
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(params, "arguments");
    if (!cJSON_IsObject(params) || !name) return fail_with(rpc_err, errlen, "tools/call needs params {name, arguments}"), NULL;
    if (args && !cJSON_IsObject(args) && !cJSON_IsNull(args))
        return fail_with(rpc_err, errlen, "tools/call: arguments must be an object"), NULL;
    cJSON *empty = NULL;
    if (!cJSON_IsObject(args)) args = empty = cJSON_CreateObject();
    char *s = NULL;
    bool python = m->python.present;
    if (!(python && (strcmp(name, "python") == 0 || strcmp(name, "python_session_open") == 0 ||
                     strcmp(name, "python_session_close") == 0)) &&
        !(m->shell.present && strcmp(name, "shell") == 0) && !(m->r.present && strcmp(name, "r") == 0) &&
        !(sql_offered(m, private_vivd) && strcmp(name, "sql") == 0))
        fail_with(rpc_err, errlen, "unknown tool '%.64s' (see tools/list)", name);
    else if (has_nul) /* cJSON would cut the text at the NUL: refuse rather than run half a program */
        s = tool_error("%s: the arguments hold a NUL character (\\u0000), which no tool accepts", name);
    else if (strcmp(name, "python") == 0) s = call_python(m, args);
    else if (strcmp(name, "python_session_open") == 0) s = call_session_open(m, args);
    else if (strcmp(name, "python_session_close") == 0) s = call_session_close(m, args);
    else if (strcmp(name, "shell") == 0) s = call_job(m, "shell", "code", &m->shell, args);
    else if (strcmp(name, "r") == 0) s = call_job(m, "r", "code", &m->r, args);
    else s = call_job(m, "sql", "query", &m->sql, args);
    cJSON_Delete(empty);
    return s;
}

/* ---- JSON-RPC --------------------------------------------------------------------------------- */

static char *initialize(const cJSON *params) {
    const char *asked = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(params, "protocolVersion"));
    const char *version = MCP_LATEST_VERSION;
    for (const char *const *v = supported_versions; asked && *v; v++)
        if (strcmp(asked, *v) == 0) version = *v;
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "protocolVersion"), jw_cstring(&w, version);
    jw_key(&w, "capabilities"), jw_object_begin(&w);
    jw_key(&w, "tools"), jw_object_begin(&w);
    jw_key(&w, "listChanged"), jw_bool(&w, false);
    jw_object_end(&w);
    jw_object_end(&w);
    jw_key(&w, "serverInfo"), jw_object_begin(&w);
    jw_key(&w, "name"), jw_cstring(&w, "vivarium");
    jw_key(&w, "version"), jw_cstring(&w, VIV_VERSION);
    jw_object_end(&w);
    jw_key(&w, "instructions"),
        jw_cstring(&w, "Each tool runs code in a fresh sandbox with the limits and the network (none, or the "
                       "hosts it names) its description states. To keep Python state between calls, open a "
                       "session with python_session_open and pass its id as `session` to python.");
    jw_object_end(&w);
    return jw_finish(&w);
}

/* One request or notification: the reply line's text, or NULL when none is
 * due (a notification, or a response from the client). */
static char *handle_message(struct mcp *m, bool private_vivd, const cJSON *msg, bool has_nul) {
    if (!cJSON_IsObject(msg)) return reply_error(NULL, RPC_INVALID_REQUEST, "a message must be a JSON object");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(msg, "method");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(msg, "params");
    bool good_id = cJSON_IsString(id) || cJSON_IsNumber(id);
    if (!method && id && (cJSON_GetObjectItemCaseSensitive(msg, "result") || cJSON_GetObjectItemCaseSensitive(msg, "error")))
        return NULL; /* a response: we send no requests, so there is nothing to match it with */
    if (!cJSON_IsString(method) || strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "jsonrpc")) ?: "", "2.0") != 0 ||
        (id && !good_id) || (params && !cJSON_IsObject(params) && !cJSON_IsArray(params)))
        return reply_error(good_id ? id : NULL, RPC_INVALID_REQUEST,
                           "not a JSON-RPC 2.0 request (jsonrpc \"2.0\", a string method, a string or number id)");
    const char *name = method->valuestring;
    if (!id) return NULL; /* a notification (initialized, cancelled, ...): never answered */
    char *result = NULL, err[256] = "";
    int code = RPC_INVALID_PARAMS;
    if (strcmp(name, "initialize") == 0) {
        if (cJSON_IsObject(params)) result = initialize(params);
        else snprintf(err, sizeof err, "initialize needs params {protocolVersion, capabilities, clientInfo}");
    } else if (strcmp(name, "ping") == 0) {
        result = xstrdup("{}");
    } else if (strcmp(name, "tools/list") == 0) {
        result = tools_list(m, private_vivd);
    } else if (strcmp(name, "tools/call") == 0) {
        result = tools_call(m, private_vivd, params, has_nul, err, sizeof err);
    } else {
        code = RPC_METHOD_NOT_FOUND;
        snprintf(err, sizeof err, "method '%.64s' not found (this server offers tools only)", name);
    }
    if (!result) return reply_error(id, code, err);
    char *s = reply_result(id, result);
    free(result);
    return s;
}

/* A line from stdin: one message or a batch (an array: the replies as an
 * array, none at all when every member was a notification). */
static char *handle_line(struct mcp *m, bool private_vivd, const char *line, size_t len) {
    if (len > MCP_MAX_LINE) return reply_error(NULL, RPC_INVALID_REQUEST, "message over the 16 MiB limit");
    const char *end = NULL;
    cJSON *msg = cJSON_ParseWithLengthOpts(line, len, &end, false);
    while (msg && end < line + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')) end++;
    if (!msg || end != line + len) {
        cJSON_Delete(msg);
        return reply_error(NULL, RPC_PARSE_ERROR, "parse error: not one JSON text on the line");
    }
    bool has_nul = json_text_has_nul(line, len);
    char *out = NULL;
    if (!cJSON_IsArray(msg)) {
        out = handle_message(m, private_vivd, msg, has_nul);
    } else if (cJSON_GetArraySize(msg) == 0) {
        out = reply_error(NULL, RPC_INVALID_REQUEST, "an empty batch");
    } else {
        size_t n = 0;
        const cJSON *item;
        cJSON_ArrayForEach(item, msg) {
            char *r = handle_message(m, private_vivd, item, has_nul);
            if (!r) continue;
            buf_add(&out, &n, n ? "," : "[", 1);
            buf_add(&out, &n, r, strlen(r));
            free(r);
        }
        if (out) buf_add(&out, &n, "]", 1);
    }
    cJSON_Delete(msg);
    return out;
}

struct mcp *mcp_new(struct viv_client *c, const char *db_file, char *err, size_t errlen) {
    struct mcp *m = xcalloc(1, sizeof *m);
    m->c = c;
    m->db_file = db_file ? xstrdup(db_file) : NULL;
    if (load_policies(m, err, errlen) != 0) {
        mcp_free(m);
        return NULL;
    }
    return m;
}

void mcp_free(struct mcp *m) {
    if (!m) return;
    free(m->python.description), free(m->shell.description), free(m->sql.description), free(m->r.description);
    free(m->python.network), free(m->shell.network), free(m->sql.network), free(m->r.network);
    free((char *)m->db_file);
    free(m);
}

char *mcp_reply(struct mcp *m, bool private_vivd, const char *line, size_t len) {
    return handle_line(m, private_vivd, line, len);
}

/* ---- the command ------------------------------------------------------------------------------ */

static volatile sig_atomic_t stop_asked;
static void on_stop(int sig) { stop_asked = sig; }

/* SIGTERM, SIGINT and SIGHUP end the read loop (no SA_RESTART: the read
 * returns EINTR) so the private vivd is stopped and its directory removed. */
static void catch_stop_signals(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static int serve(struct mcp *m, bool private_vivd) {
    char *line = NULL;
    size_t cap = 0;
    while (!stop_asked) {
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) break; /* end of input (the client is gone), an error, or a stop signal */
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        if (n == 0) continue;
        char *reply = mcp_reply(m, private_vivd, line, (size_t)n);
        if (!reply) continue;
        size_t rl = strlen(reply);
        reply[rl] = '\n'; /* overwrites the NUL; written with its length */
        int w = write_all(STDOUT_FILENO, reply, rl + 1);
        free(reply);
        if (w != 0) break; /* stdout closed: nobody to answer */
    }
    free(line);
    return 0;
}

int cmd_mcp(int argc, char **argv) {
    const char *socket_path = NULL, *db = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(a, "--socket") != 0 && strcmp(a, "--db") != 0) {
            fprintf(stderr, "viv mcp: unknown option '%s' (see viv mcp --help)\n", a);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "viv mcp: %s needs a value (see viv mcp --help)\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--socket") == 0) socket_path = v;
        else db = v;
    }
    char dbpath[PATH_MAX];
    struct stat st;
    if (db && socket_path) {
        fprintf(stderr, "viv mcp: --db starts the private vivd with that database; a running vivd (--socket) "
                        "has its own (vivd --data db=FILE)\n");
        return 2;
    }
    if (db && (!realpath(db, dbpath) || stat(dbpath, &st) != 0 || access(dbpath, R_OK) != 0)) {
        fprintf(stderr, "viv mcp: --db %s: %s\n", db, strerror(errno));
        return 2;
    }
    if (db && !S_ISREG(st.st_mode)) {
        fprintf(stderr, "viv mcp: --db %s: not a regular file (an SQLite database file)\n", db);
        return 2;
    }
    struct private_vivd d = {0};
    char err[512];
    int rc = 1;
    if (!socket_path) {
        char *mount = db ? xasprintf("db=%s", dbpath) : NULL;
        const char *data[1] = {mount};
        int started = private_vivd_start_with_data(&d, data, mount ? 1 : 0, "viv mcp", err, sizeof err);
        free(mount);
        if (started != 0) {
            fprintf(stderr, "viv mcp: %s\n", err);
            private_vivd_stop(&d);
            return 1;
        }
        socket_path = d.sock;
    }
    catch_stop_signals();
    struct viv_client *c = viv_connect(socket_path, err, sizeof err);
    struct mcp *m = c ? mcp_new(c, db ? dbpath : NULL, err, sizeof err) : NULL;
    if (!c) {
        fprintf(stderr, "viv mcp: %s\n", err);
    } else if (!m) {
        fprintf(stderr, "viv mcp: %s: %s\n", socket_path, err);
    } else {
        fprintf(stderr, "viv mcp: serving on stdin/stdout (vivd at %s%s)\n", socket_path, d.pid ? ", private" : "");
        rc = serve(m, d.pid > 0);
    }
    mcp_free(m);
    if (c) viv_close(c);
    private_vivd_stop(&d);
    return rc;
}
