/*
 * attacks_r.c - the attacks on the r policy's jail (Rscript as the job):
 * host files, host paths, the network, denied syscalls, the deadline.
 *
 * Included by attack_tests.c (one translation unit: the harness keeps its
 * state in statics), so these run through every door the others do; R has
 * no zygote or session, so the vivd paths run it as a one-shot job.
 *
 * R itself has no raw syscalls, so the syscall attack does what hostile R
 * code would: it starts native code from R (python3 with ctypes, present
 * under /usr) as a child, which inherits the R job's seccomp filter.
 */

/* R code that evaluates to the bytes of `s` (hex, so nothing in s can
 * break out of the R string). Caller frees. */
static char *r_bytes(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(n * 5 + 64), *p = out;
    p += sprintf(p, "rawToChar(as.raw(c(");
    for (size_t i = 0; i < n; i++) p += sprintf(p, "%s0x%02x", i ? "," : "", (unsigned char)s[i]);
    sprintf(p, ")))");
    return out;
}

static void test_r_host_file_unreadable(void) {
    char path[128], code[2048];
    snprintf(path, sizeof path, "/tmp/viv-r-secret-%d", (int)getpid());
    put_file(path, "TOPSECRET-R-42");
    snprintf(code, sizeof code,
             "for (p in c('%s', '/etc/shadow', '/proc/1/root%s')) {\n"
             "  r <- tryCatch(paste(readLines(p, warn = FALSE), collapse = ''), error = function(e) NULL,\n"
             "                warning = function(w) NULL)\n"
             "  cat(p, if (is.null(r)) 'DENIED' else paste('READ', r), '\\n')\n"
             "}\n"
             "cat('root', paste(list.files('/'), collapse = ','), '\\n')\n",
             path, path);
    struct job j;
    run_code(&j, "r", code, NULL);
    unlink(path);
    CHECK_RAN(&j);
    const char *out = jstr(&j, "stdout");
    CHECK(strstr(out, "TOPSECRET") == NULL, "host secret leaked to R: %s", out);
    CHECK(strstr(out, "READ") == NULL, "a host path was readable from R: %s", out);
    CHECK_OUT_HAS(&j, "/etc/shadow DENIED");
    CHECK(strstr(out, ",home") == NULL && strstr(out, ",root") == NULL, "the host's root shows through: %s", out);
    job_free(&j);
}

static void test_r_host_paths_not_writable(void) {
    char code[] =
        "for (p in c('/usr/viv-r-pwned', '/etc/R/viv-r-pwned', '/usr/lib/R/library/viv-r-pwned', '/viv-r-pwned')) {\n"
        "  ok <- suppressWarnings(tryCatch(file.create(p), error = function(e) FALSE))\n"
        "  cat(p, if (isTRUE(ok)) 'WROTE' else 'DENIED', '\\n')\n"
        "}\n"
        "cat('work', file.create('/work/mine'), '\\n')\n";
    struct job j;
    run_code(&j, "r", code, NULL);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "WROTE") == NULL, "R wrote outside its tmpfs: %s", jstr(&j, "stdout"));
    CHECK_OUT_HAS(&j, "/etc/R/viv-r-pwned DENIED");
    CHECK_OUT_HAS(&j, "work TRUE"); /* the job's own directory is writable: the check can fail */
    CHECK(access("/usr/viv-r-pwned", F_OK) != 0 && access("/etc/R/viv-r-pwned", F_OK) != 0, "file appeared on the host");
    job_free(&j);
}

static void test_r_network_refused(void) {
    int port, s = listen_on(SOCK_STREAM, &port);
    char code[1024];
    snprintf(code, sizeof code,
             "r <- tryCatch({ con <- socketConnection('127.0.0.1', %d, blocking = TRUE, open = 'r+b', timeout = 2);\n"
             "                writeLines('x', con); 'CONNECTED' }, error = function(e) paste('BLOCKED', conditionMessage(e)),\n"
             "              warning = function(w) paste('BLOCKED', conditionMessage(w)))\n"
             "cat('tcp', r, '\\n')\n"
             "u <- tryCatch({ readLines(url('http://127.0.0.1:%d/'), warn = FALSE); 'FETCHED' },\n"
             "              error = function(e) 'BLOCKED', warning = function(w) 'BLOCKED')\n"
             "cat('url', u, '\\n')\n",
             port, port);
    struct job j;
    run_code(&j, "r", code, NULL);
    int accepted = accept(s, NULL, NULL);
    close(s);
    CHECK_RAN(&j);
    CHECK(accepted < 0, "the host listener accepted a connection from R");
    CHECK_OUT_HAS(&j, "tcp BLOCKED");
    CHECK_OUT_HAS(&j, "url BLOCKED");
    job_free(&j);
}

static void test_r_syscalls_denied(void) {
    const char *py = PY_SYSCALL
        "import socket\n"
        "print('ptrace_traceme', sc(101, 0, 0, 0, 0))\n"
        "print('ptrace_attach_init', sc(101, 16, 1, 0, 0))\n"
        "print('process_vm_readv', sc(310, 1, 0, 0, 0, 0, 0))\n"
        "print('unshare_user', sc(272, 0x10000000))\n"
        "print('mount', sc(165, 0, 0, 0, 0, 0))\n"
        "print('bpf', sc(321, 0, 0, 0))\n"
        "print('socket_inet', sc(41, socket.AF_INET, socket.SOCK_STREAM, 0))\n"
        "print('socket_unix', sc(41, socket.AF_UNIX, socket.SOCK_STREAM, 0))\n"
        "print('shmget', sc(29, 0, 4096, 0o1600))\n"
        "print('memfd_create', sc(319, 0, 0))\n"
        "print('DONE')\n";
    char *bytes = r_bytes(py);
    char *code = malloc(strlen(bytes) + 256);
    sprintf(code, "writeLines(%s, '/tmp/a.py', sep = '')\nsystem2('/usr/bin/python3', '/tmp/a.py')\n", bytes);
    struct job j;
    run_code(&j, "r", code, NULL);
    free(code), free(bytes);
    CHECK_RAN(&j);
    const char *out = jstr(&j, "stdout");
    CHECK(strstr(out, "DONE") != NULL, "the native code did not run: %s %s", out, jstr(&j, "stderr"));
    char *copy = strdup(out);
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64];
        long ret;
        int err;
        if (sscanf(line, "%63s %ld %d", name, &ret, &err) != 3) continue;
        if (ret != -1 || err != EPERM) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s returned %ld errno %d under the r policy", name, ret, err);
            free(copy);
            job_free(&j);
            FAIL("%s", msg);
        }
    }
    free(copy);
    job_free(&j);
}

static void test_r_deadline_kills_everything(void) {
    char marker[64], code[512];
    snprintf(marker, sizeof marker, "viv-r-sleeper-%d", (int)getpid());
    snprintf(code, sizeof code, "system(\"/bin/bash -c 'exec -a %s sleep 600' &\")\nrepeat {}\n", marker);
    struct job j;
    const char *extra[] = {"--timeout-ms", "1500", NULL};
    double t0 = mono_ms();
    run_code(&j, "r", code, extra);
    double took = mono_ms() - t0;
    CHECK_RAN(&j);
    CHECK(jtrue(&j, "timed_out"), "the R busy loop was not stopped at its deadline: %s", j.out);
    CHECK(took < 10000, "took %.0f ms for a 1500 ms deadline", took);
    CHECK(!host_process_with_marker(marker), "R's background child outlived the job");
    job_free(&j);
}
