/*
 * unit_tests.c - policy parsing and validation, JSON output, helpers.
 * Built with AddressSanitizer and UBSan against the sandbox objects.
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <unistd.h>

#include "../harness.h"
#include "../../sandbox/jail/builtin_filters.h"
#include "../../sandbox/jail/jail.h"
#include "../../sandbox/base/json_writer.h"
#include "../../sandbox/jail/policy.h"
#include "../../sandbox/jail/syscall_filter.h"
#include "../../sandbox/base/util.h"

/* A minimal valid policy; tests splice one change into it. */
#define VALID_HEAD "{\"name\":\"t\",\"command\":[\"/bin/true\"],"
#define VALID_SECCOMP "\"seccomp\":{\"syscalls\":[\"read\",\"execve\"]}"

static int parse(const char *json, char *err, size_t errlen) {
    struct policy p;
    int rc = policy_parse(json, strlen(json), "t.json", &p, err, errlen);
    if (rc == 0) policy_free(&p);
    return rc;
}

/* The policy must be rejected, and the message must name the file and `needle`. */
#define REJECTS(json, needle)                                                              \
    do {                                                                                   \
        char _err[1024] = "";                                                              \
        CHECK(parse(json, _err, sizeof _err) == -1, "accepted: %s", json);                 \
        CHECK(strncmp(_err, "t.json: ", 8) == 0, "message does not name the file: %s", _err); \
        CHECK(strstr(_err, needle) != NULL, "message '%s' lacks '%s'", _err, needle);      \
    } while (0)

static void test_builtin_policies_parse(void) {
    int n = 0;
    for (const char *const *name = policy_builtin_names(); *name; name++, n++) {
        struct policy p;
        char err[1024];
        CHECK(policy_load(*name, &p, err, sizeof err) == 0, "%s: %s", *name, err);
        CHECK(p.code_path && p.argc > 0 && p.seccomp.nsyscalls > 50, "%s looks empty", *name);
        struct sock_fprog prog;
        CHECK(syscall_filter_compile(&p.seccomp, &prog, err, sizeof err) == 0, "%s: %s", *name, err);
        CHECK(prog.len > 10, "filter of %s has %u instructions", *name, prog.len);
        syscall_filter_free(&prog);
        policy_free(&p);
    }
    CHECK(n == 4, "expected python, r, shell, sql; got %d built-ins", n);
}

static void test_precompiled_filters_match_a_fresh_compile(void) {
    /* The programs linked in at build time must be exactly what libseccomp
     * compiles from the same policy now; a policy from a file gets none. */
    for (const char *const *name = policy_builtin_names(); *name; name++) {
        struct policy p;
        char err[512];
        CHECK(policy_load(*name, &p, err, sizeof err) == 0, "%s", err);
        const struct sock_fprog *pre = builtin_filter_for(&p);
        struct sock_fprog fresh;
        CHECK(syscall_filter_compile(&p.seccomp, &fresh, err, sizeof err) == 0, "%s", err);
        int same = pre && pre->len == fresh.len &&
                   memcmp(pre->filter, fresh.filter, fresh.len * sizeof *fresh.filter) == 0;
        syscall_filter_free(&fresh);
        policy_free(&p);
        CHECK(same, "the precompiled filter of %s differs from a fresh compile", *name);
    }
    struct policy p;
    char err[512];
    const char *j = "{\"name\":\"python\",\"command\":[\"/bin/true\"],\"seccomp\":{\"syscalls\":[\"read\"]}}";
    CHECK(policy_parse(j, strlen(j), "python.json", &p, err, sizeof err) == 0, "%s", err);
    CHECK(builtin_filter_for(&p) == NULL, "a file policy named like a built-in got the built-in's filter");
    policy_free(&p);
}

static void test_minimal_policy_and_defaults(void) {
    struct policy p;
    char err[512];
    const char *j = VALID_HEAD VALID_SECCOMP "}";
    CHECK(policy_parse(j, strlen(j), "t.json", &p, err, sizeof err) == 0, "%s", err);
    CHECK(p.limits.timeout_ms == 10000 && p.limits.pids == 64 && p.limits.output_bytes == 1 << 20,
          "defaults not applied");
    CHECK(p.limits.cpu_weight == 100 && p.limits.cpu_ms == 600000 && p.limits.session_cpu_ms == 600000,
          "CPU defaults not applied: weight %ld, cpu_ms %ld, session_cpu_ms %ld", p.limits.cpu_weight,
          p.limits.cpu_ms, p.limits.session_cpu_ms);
    CHECK(p.seccomp.default_action == POLICY_DENY_ERRNO, "default action should be errno");
    policy_free(&p);
}

static void test_rejects_bad_json(void) {
    REJECTS("{\"name\":", "invalid JSON");
    REJECTS("[1,2]", "must be a JSON object");
    REJECTS("", "invalid JSON");
}

static void test_rejects_unknown_and_duplicate_keys(void) {
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"netwrk\":\"none\"}", "netwrk: unknown key");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"limits\":{\"memroy_mb\":5}}", "limits.memroy_mb: unknown key");
    REJECTS(VALID_HEAD "\"seccomp\":{\"syscalls\":[\"read\"],\"default\":\"kill\"}}", "seccomp.default: unknown key");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"mounts\":[{\"src\":\"/usr\",\"dst\":\"/usr\",\"rw\":true}]}", "mounts[0].rw: unknown key");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"name\":\"u\"}", "name: duplicate key");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"limits\":{\"pids\":5,\"pids\":6}}", "limits.pids: duplicate key");
}

static void test_rejects_bad_syscalls(void) {
    REJECTS(VALID_HEAD "\"seccomp\":{\"syscalls\":[\"read\",\"no_such_call\"]}}", "'no_such_call' is not a syscall");
    REJECTS(VALID_HEAD "\"seccomp\":{\"syscalls\":[\"ptrace\"]}}", "'ptrace' is never allowed");
    REJECTS(VALID_HEAD "\"seccomp\":{\"syscalls\":[\"mount\"]}}", "'mount' is never allowed");
    REJECTS(VALID_HEAD "\"seccomp\":{\"syscalls\":[\"unshare\"]}}", "'unshare' is never allowed");
    REJECTS(VALID_HEAD "\"seccomp\":{\"syscalls\":[\"bpf\"]}}", "'bpf' is never allowed");
    REJECTS(VALID_HEAD "\"seccomp\":{\"syscalls\":[\"ioctl\"]}}", "use seccomp.ioctls");
    REJECTS(VALID_HEAD "\"seccomp\":{\"syscalls\":[\"socket\"]}}", "use seccomp.socket_families");
    REJECTS(VALID_HEAD "\"seccomp\":{\"syscalls\":[\"read\",\"read\"]}}", "listed twice");
    REJECTS(VALID_HEAD "\"seccomp\":{\"syscalls\":[1]}}", "array of names");
    REJECTS(VALID_HEAD "\"seccomp\":{\"syscalls\":[],\"ioctls\":[\"TIOCSTI\"]}}", "'TIOCSTI' is not an ioctl");
    REJECTS(VALID_HEAD "\"seccomp\":{\"syscalls\":[],\"socket_families\":[\"AF_NETLINK\"]}}", "'AF_NETLINK' is not a family");
    REJECTS(VALID_HEAD "\"seccomp\":{\"syscalls\":[],\"default_action\":\"allow\"}}", "must be \"errno\" or \"kill\"");
    REJECTS(VALID_HEAD "\"network\":\"none\"}", "seccomp: missing");
}

static void test_rejects_out_of_range_limits(void) {
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"limits\":{\"memory_mb\":1}}", "limits.memory_mb: 1 is out of range");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"limits\":{\"pids\":0}}", "limits.pids: 0 is out of range");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"limits\":{\"timeout_ms\":99999999}}", "out of range");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"limits\":{\"pids\":2.5}}", "must be an integer");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"limits\":{\"pids\":1e300}}", "out of range");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"limits\":{\"pids\":\"8\"}}", "must be an integer");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"limits\":{\"timeout_ms\":5000,\"timeout_ms_max\":1000}}", "exceeds limits.timeout_ms_max");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"limits\":{\"cpu_weight\":0}}", "limits.cpu_weight: 0 is out of range");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"limits\":{\"cpu_weight\":10001}}", "limits.cpu_weight: 10001 is out of range");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"limits\":{\"cpu_ms\":-1}}", "limits.cpu_ms: -1 is out of range");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"limits\":{\"session_cpu_ms\":5}}", "limits.session_cpu_ms: 5 is out of range");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"limits\":{\"cpu_ms\":100.5}}", "limits.cpu_ms: must be an integer");
}

static void test_rejects_bad_paths_and_fields(void) {
    REJECTS("{\"name\":\"t\",\"command\":[\"true\"]," VALID_SECCOMP "}", "command[0]: 'true' must be a clean absolute path");
    REJECTS("{\"name\":\"t\",\"command\":[]," VALID_SECCOMP "}", "command: must have 1");
    REJECTS("{\"name\":\"T!\",\"command\":[\"/bin/true\"]," VALID_SECCOMP "}", "name: 'T!'");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"code_path\":\"/etc/x.py\"}", "must be a file path under /work or /tmp");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"code_path\":\"/work/../x\"}", "must be a file path");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"mounts\":[{\"src\":\"usr\",\"dst\":\"/usr\"}]}", "must be a clean absolute path or @name");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"mounts\":[{\"src\":\"/usr/../etc\",\"dst\":\"/usr\"}]}", "clean absolute path");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"mounts\":[{\"src\":\"/usr\",\"dst\":\"/proc/x\"}]}", "inside /proc");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"mounts\":[{\"src\":\"/usr\",\"dst\":\"/\"}]}", "other than /");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"mounts\":[{\"src\":\"/etc\",\"dst\":\"/etc\"}]}", "the jail writes its own /etc");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"mounts\":[{\"src\":\"/a\",\"dst\":\"/x\"},{\"src\":\"/b\",\"dst\":\"/x\"}]}", "mounted twice");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"network\":\"host\"}", "must be \"none\" or an object");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"env\":{\"1X\":\"y\"}}", "env.1X: not a valid variable name");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"env\":{\"X\":1}}", "env.X: must be a string");
    REJECTS(VALID_HEAD VALID_SECCOMP ",\"preload\":[\"os; rm\"]}", "is not a module name");
}

static void test_load_by_path_and_unknown_name(void) {
    struct policy p;
    char err[512];
    CHECK(policy_load("no-such-policy", &p, err, sizeof err) == -1 && strstr(err, "unknown policy 'no-such-policy'"), "%s", err);
    CHECK(policy_load("/nonexistent/x.json", &p, err, sizeof err) == -1 && strstr(err, "/nonexistent/x.json: No such file"), "%s", err);
    char path[] = "/tmp/viv-unit-XXXXXX.json";
    int fd = mkstemps(path, 5);
    const char *j = VALID_HEAD VALID_SECCOMP "}";
    CHECK(fd >= 0 && write(fd, j, strlen(j)) == (ssize_t)strlen(j), "tmp file");
    close(fd);
    int rc = policy_load(path, &p, err, sizeof err);
    unlink(path);
    CHECK(rc == 0, "%s", err);
    CHECK(strcmp(p.origin, path) == 0, "origin %s", p.origin);
    policy_free(&p);
}

static void test_policy_to_json_round_trip(void) {
    struct policy p;
    char err[512];
    CHECK(policy_load("python", &p, err, sizeof err) == 0, "%s", err);
    char *text = policy_to_json(&p);
    policy_free(&p);
    cJSON *o = cJSON_Parse(text);
    free(text);
    CHECK(o, "policy_to_json is not JSON");
    const cJSON *lim = cJSON_GetObjectItem(o, "limits");
    CHECK(cJSON_GetObjectItem(lim, "memory_mb") && cJSON_GetObjectItem(o, "always_enforced"), "fields missing");
    CHECK(cJSON_GetObjectItem(lim, "cpu_weight") && cJSON_GetObjectItem(lim, "cpu_ms") &&
              cJSON_GetObjectItem(lim, "session_cpu_ms"), "CPU limits missing from the effective policy");
    cJSON_Delete(o);
}

static void test_utf8_sequences(void) {
    struct {
        const char *bytes;
        int want;
    } cases[] = {
        {"a", 1}, {"\xc3\xa9", 2}, {"\xe2\x82\xac", 3}, {"\xf0\x9f\x98\x80", 4},
        {"\xc0\xaf", 0},            /* overlong '/' */
        {"\xe0\x80\xaf", 0},        /* overlong */
        {"\xed\xa0\x80", 0},        /* UTF-16 surrogate */
        {"\xf4\x90\x80\x80", 0},    /* > U+10FFFF */
        {"\xc3", 0},                /* truncated */
        {"\x80", 0}, {"\xff", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = utf8_sequence_length((const unsigned char *)cases[i].bytes, strlen(cases[i].bytes));
        CHECK(got == cases[i].want, "case %zu: got %d want %d", i, got, cases[i].want);
    }
}

static void test_json_writer_escapes_any_bytes(void) {
    static const char raw[] = "a\"b\\c\n\t\x01\x00z\xff\xc3\xa9\xed\xa0\x80!";
    struct json_writer w;
    jw_init(&w);
    jw_object_begin(&w);
    jw_key(&w, "s"), jw_string(&w, raw, sizeof raw - 1);
    jw_key(&w, "n"), jw_int(&w, -7);
    jw_key(&w, "d"), jw_double(&w, 1.25, 2);
    jw_key(&w, "a"), jw_array_begin(&w), jw_bool(&w, true), jw_null(&w), jw_array_end(&w);
    jw_object_end(&w);
    char *text = jw_finish(&w);
    CHECK(strcmp(text, "{\"s\":\"a\\\"b\\\\c\\n\\t\\u0001\\u0000z\\ufffd\xc3\xa9\\ufffd\\ufffd\\ufffd!\",\"n\":-7,\"d\":1.25,\"a\":[true,null]}") == 0,
          "got %s", text);
    cJSON *o = cJSON_Parse(text);
    free(text);
    CHECK(o != NULL, "not parseable");
    cJSON_Delete(o);
}

static void test_result_json_with_binary_output(void) {
    struct jail_result r;
    memset(&r, 0, sizeof r);
    char out[256];
    for (int i = 0; i < 256; i++) out[i] = (char)i;
    r.out = out, r.out_len = sizeof out;
    r.err = "", r.exit_code = 3, r.wall_ms = 1.5;
    snprintf(r.limits_not_applied, sizeof r.limits_not_applied, "cgroup memory: x; cgroup pids: y");
    char *text = jail_result_to_json(&r, "python", "python");
    int escaped = strstr(text, "\"stdout\":\"\\u0000\\u0001") != NULL && strstr(text, "~\\u007f\\ufffd") != NULL;
    cJSON *o = cJSON_Parse(text);
    free(text);
    CHECK(escaped, "control and invalid bytes not escaped as expected");
    CHECK(o, "result with binary output is not valid JSON");
    CHECK(cJSON_GetObjectItem(o, "exit_code")->valueint == 3, "exit_code");
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(o, "limits_not_applied")) == 2, "notes not split");
    CHECK(!cJSON_GetObjectItem(o, "cpu_exceeded"), "cpu_exceeded written for a job that did not exceed");
    cJSON_Delete(o);
    r.cpu_exceeded = true;
    text = jail_result_to_json(&r, "python", "python");
    o = cJSON_Parse(text);
    free(text);
    CHECK(o && cJSON_IsTrue(cJSON_GetObjectItem(o, "cpu_exceeded")), "cpu_exceeded missing");
    cJSON_Delete(o);
}

static void test_parse_long(void) {
    long v;
    CHECK(parse_long("42", 0, 100, &v) == 0 && v == 42, "42");
    CHECK(parse_long("101", 0, 100, &v) == -1, "range");
    CHECK(parse_long("4x", 0, 100, &v) == -1, "junk");
    CHECK(parse_long("", 0, 100, &v) == -1, "empty");
    CHECK(parse_long("99999999999999999999999", 0, 100, &v) == -1, "overflow");
}

static void test_write_file_atomic(void) {
    char path[] = "/tmp/viv-atomic-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK(write_file_atomic(path, "hello", 5) == 0, "write");
    char err[128];
    size_t n;
    char *back = read_file(path, 100, &n, err, sizeof err);
    unlink(path);
    CHECK(back && n == 5 && memcmp(back, "hello", 5) == 0, "content");
    free(back);
    CHECK(write_file_atomic("/nonexistent-dir/x", "a", 1) == -1, "bad dir must fail");
}

static void test_jail_run_rejects_bad_requests(void) {
    struct policy p;
    char err[512];
    CHECK(policy_load("sql", &p, err, sizeof err) == 0, "%s", err);
    struct jail_result r;
    struct jail_spec s = {.policy = &p, .code = "select 1;", .code_len = 9, .cancel_fd = -1};
    CHECK(jail_run(&s, &r, err, sizeof err) == JAIL_BAD_REQUEST && strstr(err, "needs data 'db'"), "%s", err);
    s.timeout_ms = p.limits.timeout_ms_max + 1;
    CHECK(jail_run(&s, &r, err, sizeof err) == JAIL_BAD_REQUEST && strstr(err, "exceeds policy"), "%s", err);
    s.timeout_ms = 0;
    s.code_len = (size_t)p.limits.code_bytes + 1;
    CHECK(jail_run(&s, &r, err, sizeof err) == JAIL_BAD_REQUEST && strstr(err, "accepts at most"), "%s", err);
    policy_free(&p);
}

/* the egress allowlist, address classes and request heads */
#include "egress_unit.h"

int main(int argc, char **argv) {
    static const struct test_case tests[] = {
#define T(name) {#name, test_##name}
        T(builtin_policies_parse), T(precompiled_filters_match_a_fresh_compile), T(minimal_policy_and_defaults), T(rejects_bad_json),
        T(rejects_unknown_and_duplicate_keys), T(rejects_bad_syscalls),
        T(rejects_out_of_range_limits), T(rejects_bad_paths_and_fields),
        T(load_by_path_and_unknown_name), T(policy_to_json_round_trip), T(utf8_sequences),
        T(json_writer_escapes_any_bytes), T(result_json_with_binary_output), T(parse_long),
        T(write_file_atomic), T(jail_run_rejects_bad_requests), EGRESS_UNIT_TESTS,
#undef T
    };
    return run_test_cases(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
}
