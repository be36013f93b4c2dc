/* result_json.c - a jail_result as the RPC exec response object. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jail.h"
#include "../base/json_writer.h"
#include "../base/util.h"

void jail_result_write_fields(struct json_writer *w, const struct jail_result *r, const char *tool,
                              const char *policy) {
    jw_key(w, "ok"), jw_bool(w, true);
    jw_key(w, "exit_code");
    if (r->exit_code >= 0) jw_int(w, r->exit_code);
    else jw_null(w);
    jw_key(w, "signal"), jw_int(w, r->signal);
    jw_key(w, "timed_out"), jw_bool(w, r->timed_out);
    if (r->cancelled) jw_key(w, "cancelled"), jw_bool(w, true);
    if (r->cpu_exceeded) jw_key(w, "cpu_exceeded"), jw_bool(w, true);
    jw_key(w, "stdout"), jw_string(w, r->out ? r->out : "", r->out_len);
    jw_key(w, "stderr"), jw_string(w, r->err ? r->err : "", r->err_len);
    jw_key(w, "stdout_dropped"), jw_int(w, (long long)r->out_dropped);
    jw_key(w, "stderr_dropped"), jw_int(w, (long long)r->err_dropped);
    jw_key(w, "wall_ms"), jw_double(w, r->wall_ms, 1);
    jw_key(w, "cpu_ms"), jw_double(w, r->cpu_ms, 1);
    jw_key(w, "max_rss_kb"), jw_int(w, r->max_rss_kb);
    if (tool) jw_key(w, "tool"), jw_cstring(w, tool);
    if (policy) jw_key(w, "policy"), jw_cstring(w, policy);
}

void jail_result_write_limits(struct json_writer *w, const char *limits_not_applied) {
    jw_key(w, "limits_not_applied");
    jw_array_begin(w);
    const char *s = limits_not_applied;
    while (*s) {
        const char *e = s;
        while (*e && !(e[0] == ';' && e[1] == ' ')) e++;
        jw_string(w, s, (size_t)(e - s));
        s = *e ? e + 2 : e;
    }
    jw_array_end(w);
}

/* "files": name -> base64 of each fetched file; "fetch_errors": name ->
 * why one was not fetched (a symlink, a directory, missing, too big). */
static void write_fetched(struct json_writer *w, const struct jail_result *r) {
    struct job_fetched f;
    size_t off = 0;
    jw_key(w, "files"), jw_object_begin(w);
    while (job_fetched_next(r->fetched, r->fetched_len, &off, &f)) {
        if (f.err) continue;
        char *name = strndup(f.name, f.name_len), *b64 = base64_encode(f.data, f.len);
        jw_key(w, name), jw_cstring(w, b64);
        free(name), free(b64);
    }
    jw_object_end(w);
    jw_key(w, "fetch_errors"), jw_object_begin(w);
    for (off = 0; job_fetched_next(r->fetched, r->fetched_len, &off, &f);) {
        if (!f.err) continue;
        char *name = strndup(f.name, f.name_len);
        jw_key(w, name);
        jw_cstring(w, f.err == ELOOP ? "a symlink (or under one): not followed"
                      : f.err == EFBIG ? "past the policy's files_bytes"
                      : f.err == EINVAL ? "not a regular file in the job directory" : strerror(f.err));
        free(name);
    }
    jw_object_end(w);
}

char *jail_result_to_json(const struct jail_result *r, const char *tool, const char *policy) {
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jail_result_write_fields(&w, r, tool, policy);
    jail_result_write_limits(&w, r->limits_not_applied);
    if (r->fetched) write_fetched(&w, r);
    jw_object_end(&w);
    return jw_finish(&w);
}
