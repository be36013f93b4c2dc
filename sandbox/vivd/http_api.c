/*
 * http_api.c - SandboxFusion's and Biomni-SkyRL's request and response
 * shapes over vivd's own exec and sessions (see http_api.h).
 *
 * Which policy runs each /run_code language, and with what code, is
 * run_languages.c's; here are the contracts' shapes. A compiled language
 * (c, cpp) is two vivd requests: the compile job fetches back the binary,
 * and the run job gets it as a file (http_next_step). Anything else is a
 * SandboxError naming the languages that exist. Job output is read from
 * vivd's answer with its length (json_text.h), so a NUL in it reaches the
 * client as \u0000 instead of ending the text.
 */
#define _GNU_SOURCE
#include "http_api.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/json_text.h"
#include "../base/json_writer.h"
#include "run_languages.h"
#include "../base/util.h"

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

/* A number of seconds -> ms in [1, 86400000], or -1 when not a usable number. */
static long seconds_to_ms(const cJSON *v) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble <= 0 || v->valuedouble > 86400) return -1;
    long ms = (long)ceil(v->valuedouble * 1000.0);
    return ms < 1 ? 1 : ms;
}

/* One exec request line. `files`/`fetch` are the caller's (may be NULL);
 * `extra` adds one file of ours (name -> base64), which wins over a caller's
 * file of that name; `fetch_extra` one name to fetch besides the caller's. */
struct exec_req {
    const char *client;
    const char *tool, *code;
    long timeout_ms;
    const char *stdin_text;
    const cJSON *files, *fetch;
    const char *extra, *extra_b64, *fetch_extra;
};

static char *exec_line(const struct exec_req *e) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "id"), jw_int(&w, 1);
    jw_key(&w, "op"), jw_cstring(&w, "exec");
    if (e->client) jw_key(&w, "client"), jw_cstring(&w, e->client);
    jw_key(&w, "tool"), jw_cstring(&w, e->tool);
    jw_key(&w, "code"), jw_cstring(&w, e->code);
    if (e->timeout_ms > 0) jw_key(&w, "timeout_ms"), jw_int(&w, e->timeout_ms);
    /* an empty stdin is no stdin: the job stays on the warm path */
    if (e->stdin_text && e->stdin_text[0]) jw_key(&w, "stdin"), jw_cstring(&w, e->stdin_text);
    if ((cJSON_IsObject(e->files) && e->files->child) || e->extra) {
        jw_key(&w, "files"), jw_object_begin(&w);
        for (const cJSON *f = cJSON_IsObject(e->files) ? e->files->child : NULL; f; f = f->next) {
            if (e->extra && !strcmp(f->string, e->extra)) continue;
            jw_key(&w, f->string);
            if (cJSON_IsString(f)) jw_cstring(&w, f->valuestring);
            else jw_null(&w); /* vivd refuses it with the reason */
        }
        if (e->extra) jw_key(&w, e->extra), jw_cstring(&w, e->extra_b64);
        jw_object_end(&w);
    }
    if ((cJSON_IsArray(e->fetch) && e->fetch->child) || e->fetch_extra) {
        jw_key(&w, "fetch_files"), jw_array_begin(&w);
        for (const cJSON *f = cJSON_IsArray(e->fetch) ? e->fetch->child : NULL; f; f = f->next) {
            if (cJSON_IsString(f)) jw_cstring(&w, f->valuestring);
            else jw_null(&w);
        }
        if (e->fetch_extra) jw_cstring(&w, e->fetch_extra);
        jw_array_end(&w);
    }
    jw_object_end(&w);
    char *obj = jw_finish(&w), *line = xasprintf("%s\n", obj);
    free(obj);
    return line;
}

/* A member of the request that holds U+0000 would reach us cut short
 * (cJSON's strings end there): refuse it instead. */
static bool member_has_nul(const char *body, size_t len, const char *key) {
    size_t at, end;
    return json_member_span(body, len, key, &at, &end) == 1 && json_text_has_nul(body + at, end - at);
}

/* The /run_code request, checked: NULL (and msg) when it is malformed. */
static cJSON *run_code_request(const char *body, size_t len, char *msg, size_t msglen, long *run_ms, long *compile_ms) {
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(msg, msglen, "the body must be a JSON object");
        return NULL;
    }
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "code"), *lang = cJSON_GetObjectItemCaseSensitive(j, "language"),
                *in = cJSON_GetObjectItemCaseSensitive(j, "stdin"), *files = cJSON_GetObjectItemCaseSensitive(j, "files"),
                *fetch = cJSON_GetObjectItemCaseSensitive(j, "fetch_files"),
                *rt = cJSON_GetObjectItemCaseSensitive(j, "run_timeout"),
                *ct = cJSON_GetObjectItemCaseSensitive(j, "compile_timeout");
    msg[0] = 0;
    *run_ms = *compile_ms = 0;
    if (!cJSON_IsString(code)) snprintf(msg, msglen, "'code' must be a string");
    else if (!cJSON_IsString(lang)) snprintf(msg, msglen, "'language' must be a string (" RUN_LANGUAGES ")");
    else if (in && !cJSON_IsNull(in) && !cJSON_IsString(in)) snprintf(msg, msglen, "'stdin' must be a string");
    else if (member_has_nul(body, len, "code") || member_has_nul(body, len, "stdin"))
        snprintf(msg, msglen, "'code' and 'stdin' may not hold U+0000 (send binary input as a base64 file in 'files')");
    else if (files && !cJSON_IsNull(files) && !cJSON_IsObject(files)) snprintf(msg, msglen, "'files' must be an object of name: base64");
    else if (fetch && !cJSON_IsNull(fetch) && !cJSON_IsArray(fetch)) snprintf(msg, msglen, "'fetch_files' must be an array of names");
    else if (rt && !cJSON_IsNull(rt) && (*run_ms = seconds_to_ms(rt)) < 0)
        snprintf(msg, msglen, "'run_timeout' must be a number of seconds in (0, 86400]");
    else if (ct && !cJSON_IsNull(ct) && (*compile_ms = seconds_to_ms(ct)) < 0)
        snprintf(msg, msglen, "'compile_timeout' must be a number of seconds in (0, 86400]");
    if (msg[0]) cJSON_Delete(j), j = NULL;
    return j;
}

/* The run step of a compiled language (or the only step of any other), with
 * the compiled binary as a file when there is one. */
static char *run_step_line(const char *client, const cJSON *j, const struct run_plan *plan, long run_ms,
                           const char *binary_b64) {
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(j, "stdin");
    struct exec_req e = {client, plan->tool, plan->code, run_ms, cJSON_IsString(in) ? in->valuestring : NULL,
                         cJSON_GetObjectItemCaseSensitive(j, "files"), cJSON_GetObjectItemCaseSensitive(j, "fetch_files"),
                         binary_b64 ? RUN_BINARY : NULL, binary_b64, NULL};
    return exec_line(&e);
}

static void run_code(const char *body, size_t len, struct http_call *call) {
    const char *client = call->client;
    const char *P = "/run_code";
    char msg[256];
    long run_ms, compile_ms;
    cJSON *j = run_code_request(body, len, msg, sizeof msg, &run_ms, &compile_ms);
    if (!j) return refuse(call, P, 400, msg);
    const char *l = cJSON_GetObjectItemCaseSensitive(j, "language")->valuestring,
               *code = cJSON_GetObjectItemCaseSensitive(j, "code")->valuestring;
    struct run_plan plan;
    if (run_plan(l, code, strlen(code), &plan) != 0) {
        snprintf(msg, sizeof msg, "language '%.40s' is not supported here; the languages that exist: " RUN_LANGUAGES, l);
        cJSON_Delete(j);
        return refuse(call, P, 200, msg); /* SandboxFusion answers a SandboxError, not an HTTP error */
    }
    if (!plan.source) {
        call->line = run_step_line(client, j, &plan, run_ms, NULL);
    } else {
        /* compile with the caller's files (headers) beside the source; the
         * run step is built from the request again once the binary exists */
        char *src = base64_encode(code, strlen(code));
        struct exec_req e = {client, plan.tool, plan.compile_code, compile_ms, NULL, cJSON_GetObjectItemCaseSensitive(j, "files"), NULL,
                             plan.source, src, RUN_BINARY};
        call->line = exec_line(&e);
        call->step = HTTP_STEP_COMPILE;
        call->request = xmalloc(len + 1);
        memcpy(call->request, body, len);
        call->request[len] = 0;
        call->request_len = len;
        free(src);
    }
    run_plan_free(&plan);
    cJSON_Delete(j);
}

/* The compiled binary in a compile step's answer, when the compiler ended
 * cleanly and left one. */
static const char *compiled_binary(const cJSON *r) {
    const cJSON *ec = cJSON_GetObjectItem(r, "exit_code");
    if (!cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")) || !cJSON_IsNumber(ec) || ec->valuedouble != 0 ||
        cJSON_IsTrue(cJSON_GetObjectItem(r, "timed_out")) || cJSON_IsTrue(cJSON_GetObjectItem(r, "cpu_exceeded")))
        return NULL;
    return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "files"), RUN_BINARY));
}

int http_next_step(struct http_call *call, const char *answer, size_t len, size_t max_line) {
    if (call->step != HTTP_STEP_COMPILE) return 0;
    cJSON *r = cJSON_ParseWithLength(answer, len);
    const char *bin = compiled_binary(r);
    int next = 0;
    if (bin) {
        long run_ms, compile_ms;
        char msg[256];
        cJSON *j = run_code_request(call->request, call->request_len, msg, sizeof msg, &run_ms, &compile_ms);
        struct run_plan plan;
        const cJSON *lang = cJSON_GetObjectItemCaseSensitive(j, "language");
        if (j && run_plan(lang->valuestring, "", 0, &plan) == 0) {
            char *line = run_step_line(call->client, j, &plan, run_ms, bin);
            run_plan_free(&plan);
            if (strlen(line) <= max_line) {
                free(call->line);
                call->line = line;
                next = 1;
            } else {
                free(line);
                call->not_run = "the compiled program and the files are larger than a vivd request may be (--max-line-bytes)";
            }
        }
        cJSON_Delete(j);
    }
    free(call->compiled);
    call->compiled = xmalloc(len + 1);
    memcpy(call->compiled, answer, len);
    call->compiled[len] = 0;
    call->compiled_len = len;
    call->step = next ? HTTP_STEP_RUN : HTTP_STEP_COMPILED;
    cJSON_Delete(r);
    return next;
}

static char *session_line(const char *client, const char *op, const char *session, const char *code, long timeout_ms) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "id"), jw_int(&w, 1);
    jw_key(&w, "op"), jw_cstring(&w, op);
    if (client) jw_key(&w, "client"), jw_cstring(&w, client);
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
        call->line = session_line(call->client, "session_open", NULL, NULL, 0);
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
    else if (exec && member_has_nul(body, len, "code")) snprintf(msg, sizeof msg, "'code' may not hold U+0000");
    else if (exec && ts && !cJSON_IsNull(ts) && (timeout_ms = seconds_to_ms(ts)) < 0)
        snprintf(msg, sizeof msg, "'timeout_seconds' must be a number of seconds in (0, 86400]");
    if (msg[0]) {
        cJSON_Delete(j);
        return refuse(call, path, 400, msg);
    }
    call->session = xstrdup(sid->valuestring);
    if (!exec) {
        call->line = session_line(call->client, "session_close", sid->valuestring, NULL, 0);
    } else {
        char *cell = run_biomni_cell(code->valuestring);
        call->line = session_line(call->client, "exec", sid->valuestring, cell, timeout_ms);
        free(cell);
    }
    cJSON_Delete(j);
}

void http_translate(const char *path, const char *client, const char *body, size_t len, struct http_call *call) {
    memset(call, 0, sizeof *call);
    call->client = client && client[0] ? xstrdup(client) : NULL;
    if (memchr(body, 0, len)) return refuse(call, path, 400, "the body contains a NUL byte");
    if (is_path(path, "/run_code")) return run_code(body, len, call);
    if (is_path(path, "/start_runtime") || is_path(path, "/execute") || is_path(path, "/delete_runtime"))
        return runtime_call(path, body, len, call);
    refuse(call, path, 404, "no such endpoint (POST /run_code, /start_runtime, /execute, /delete_runtime)");
}

void http_call_free(struct http_call *call) {
    free(call->line), free(call->body), free(call->session), free(call->request), free(call->compiled), free(call->client);
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

/* One of vivd's answers, parsed, with its raw text for the members cJSON
 * would cut at U+0000 (stdout, stderr). */
struct answer {
    cJSON *r;
    const char *line;
    size_t len;
};

/* A string member whole, NULs included, as JSON (jw_string escapes them). */
static void write_text_member(struct json_writer *w, const struct answer *a, const char *key) {
    char *text = NULL;
    size_t n = 0;
    if (json_member_text(a->line, a->len, key, &text, &n) == 1) jw_string(w, text, n);
    else jw_cstring(w, "");
    free(text);
}

static bool answer_timed_out(const cJSON *r) {
    return cJSON_IsTrue(cJSON_GetObjectItem(r, "timed_out")) || cJSON_IsTrue(cJSON_GetObjectItem(r, "cpu_exceeded"));
}

/* The exit code when a plain exit ended the job, else NULL. */
static const cJSON *answer_exit_code(const cJSON *r) {
    const cJSON *ec = cJSON_GetObjectItem(r, "exit_code");
    return cJSON_IsNumber(ec) && ec->valuedouble >= 0 && ec->valuedouble <= 255 ? ec : NULL;
}

/* SandboxFusion's CommandRunResult: how one command (compile or run) ended. */
static void command_result(struct json_writer *w, const struct answer *a) {
    const cJSON *r = a->r, *ec = answer_exit_code(r);
    bool timed_out = answer_timed_out(r);
    int sig = (int)number_in(r, "signal", 0, 64);
    jw_object_begin(w);
    jw_key(w, "status"), jw_cstring(w, timed_out ? "TimeLimitExceeded" : "Finished");
    jw_key(w, "execution_time"), jw_double(w, number_in(r, "wall_ms", 0, 1e12) / 1000.0, 4);
    jw_key(w, "return_code");
    if (ec) jw_int(w, ec->valueint);
    else if (sig && !timed_out) jw_int(w, -sig);
    else jw_null(w);
    jw_key(w, "stdout"), write_text_member(w, a, "stdout");
    jw_key(w, "stderr"), write_text_member(w, a, "stderr");
    jw_object_end(w);
}

static bool command_ok(const cJSON *r) {
    const cJSON *ec = answer_exit_code(r);
    return ec && ec->valueint == 0 && !answer_timed_out(r);
}

/* /run_code's answer. `compiled` is the compile step's answer (compiled
 * languages), `run` the run step's (NULL when the compile step failed). */
static void sandbox_fusion_result(struct json_writer *w, const struct answer *compiled, const struct answer *run,
                                  const char *not_run) {
    char message[256] = "";
    bool ok;
    if (run) {
        ok = command_ok(run->r);
        if (answer_timed_out(run->r)) snprintf(message, sizeof message, "the code ran past its run_timeout");
    } else if (answer_timed_out(compiled->r)) {
        ok = false;
        snprintf(message, sizeof message, "the compile step ran past its compile_timeout");
    } else if (command_ok(compiled->r)) { /* compiled, but the binary could not go on to its run */
        ok = false;
        const char *why = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(compiled->r, "fetch_errors"), RUN_BINARY));
        snprintf(message, sizeof message, "the compiled program could not be taken to its run: %.160s",
                 not_run ? not_run : why ? why : "no binary");
    } else {
        ok = false;
        snprintf(message, sizeof message, "the compile step failed (see compile_result.stderr)");
    }
    jw_key(w, "status"), jw_cstring(w, ok ? "Success" : "Failed");
    jw_key(w, "message"), jw_cstring(w, message);
    jw_key(w, "compile_result");
    if (compiled) command_result(w, compiled);
    else jw_null(w);
    jw_key(w, "run_result");
    if (run) command_result(w, run);
    else jw_null(w);
    jw_key(w, "executor_pod_name"), jw_null(w);
    jw_key(w, "files"), jw_object_begin(w);
    const cJSON *files = run ? cJSON_GetObjectItem(run->r, "files") : NULL;
    for (const cJSON *f = files ? files->child : NULL; f; f = f->next)
        if (cJSON_IsString(f)) jw_key(w, f->string), jw_cstring(w, f->valuestring);
    jw_object_end(w);
}

/* What Biomni A1 shows the agent: stdout, then stderr, and how a call that
 * ran out of time ended. */
static void biomni_output(struct json_writer *w, const struct answer *a) {
    char *out = NULL, *err = NULL;
    size_t nout = 0, nerr = 0;
    json_member_text(a->line, a->len, "stdout", &out, &nout);
    json_member_text(a->line, a->len, "stderr", &err, &nerr);
    const char *note = cJSON_IsTrue(cJSON_GetObjectItem(a->r, "timed_out"))
                           ? "\n[the call ran past its timeout and was killed, with everything it started]" : "";
    size_t nnote = strlen(note);
    char *text = xmalloc(nout + nerr + nnote + 1);
    if (nout) memcpy(text, out, nout);
    if (nerr) memcpy(text + nout, err, nerr);
    memcpy(text + nout + nerr, note, nnote + 1);
    jw_key(w, "output"), jw_string(w, text, nout + nerr + nnote);
    free(text), free(out), free(err);
}

char *http_answer(const struct http_call *call, const char *path, const char *line, size_t len, int *status, int *retry_after) {
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
    struct answer a = {r, line, len}, c = {NULL, NULL, 0};
    int step = call ? call->step : HTTP_STEP_ONE;
    if (step == HTTP_STEP_RUN) c = (struct answer){cJSON_ParseWithLength(call->compiled, call->compiled_len), call->compiled, call->compiled_len};
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    if (is_path(path, "/run_code")) {
        if (step == HTTP_STEP_COMPILED) sandbox_fusion_result(&w, &a, NULL, call->not_run);
        else sandbox_fusion_result(&w, cJSON_IsObject(c.r) ? &c : NULL, &a, NULL);
    } else if (is_path(path, "/start_runtime")) jw_key(&w, "session_id"), jw_cstring(&w, cJSON_GetStringValue(cJSON_GetObjectItem(r, "session")) ?: "");
    else if (is_path(path, "/execute")) biomni_output(&w, &a);
    else jw_key(&w, "status"), jw_cstring(&w, "deleted");
    jw_object_end(&w);
    cJSON_Delete(r);
    cJSON_Delete(c.r);
    *status = 200;
    return jw_finish(&w);
}
