/* vivd_sessions.c - part of vivd_tests.c (one translation unit, its harness
 * and helpers): sessions: state across calls, overruns, expiry, caps, ownership, lifetime. */

/* ------------------------------------------------------------------ sessions */

/* Open a session on c; its id goes to sid. 0 on success, else -1 with why. */
static int session_open_on(struct viv_client *c, char *sid, size_t n, char *why, size_t whylen) {
    long h = viv_submit_session_open(c, "python");
    struct viv_response *r = viv_wait(c, h, 30000);
    const char *s = r ? cJSON_GetStringValue(cJSON_GetObjectItem(r->json, "session")) : NULL;
    int rc = s && strncmp(s, "s-", 2) == 0 && strlen(s) < n ? 0 : -1;
    if (rc == 0) snprintf(sid, n, "%s", s);
    char *t = r ? cJSON_PrintUnformatted(r->json) : NULL;
    snprintf(why, whylen, "session_open: %.300s", t ? t : "(no answer)");
    free(t);
    viv_response_free(r);
    return rc;
}

/* Run code in a session and wait for the answer (caller frees). */
static struct viv_response *session_run(struct viv_client *c, const char *sid, const char *code, long timeout_ms) {
    long h = viv_submit_session_exec(c, sid, code, strlen(code), timeout_ms);
    return viv_wait(c, h, (int)(timeout_ms > 0 ? timeout_ms : 10000) + 20000);
}

static const char *jstr(const struct viv_response *r, const char *key) {
    const char *s = r ? cJSON_GetStringValue(cJSON_GetObjectItem(r->json, key)) : NULL;
    return s ? s : "(none)";
}

static bool jtrue(const struct viv_response *r, const char *key) {
    return r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, key));
}

static const char *rerr(const struct viv_response *r) {
    const char *e = r ? jerr_code(r->json) : NULL;
    return e ? e : "(none)";
}

static long stats_sessions(struct viv_client *c) {
    long h = viv_submit_op(c, "stats");
    struct viv_response *r = viv_wait(c, h, 5000);
    cJSON *n = r ? cJSON_GetObjectItem(r->json, "sessions") : NULL;
    long v = cJSON_IsNumber(n) ? (long)n->valuedouble : -1;
    viv_response_free(r);
    return v;
}

#define SESSION(c, sid)                                                                    \
    char sid[64], _swhy[400];                                                               \
    CHECK(session_open_on(c, sid, sizeof sid, _swhy, sizeof _swhy) == 0, "%s", _swhy)

static void test_session_state_and_per_call_output(void) {
    START(d, NULL);
    CONNECT(c, d);
    SESSION(c, sid);
    struct viv_response *r = session_run(c, sid, "x = 3\nprint('one')", 5000);
    CHECK(jtrue(r, "ok") && strcmp(jstr(r, "stdout"), "one\n") == 0, "first call: stdout %s", jstr(r, "stdout"));
    CHECK(!jtrue(r, "session_lost"), "first call lost the session");
    viv_response_free(r);
    r = session_run(c, sid, "print(x * 2)", 5000);
    CHECK(strcmp(jstr(r, "stdout"), "6\n") == 0, "globals did not persist (or output not per call): %s", jstr(r, "stdout"));
    viv_response_free(r);
    r = session_run(c, sid, "import os\nprint('py', flush=True)\nos.system('echo from-child; echo to-err >&2')", 5000);
    CHECK(strcmp(jstr(r, "stdout"), "py\nfrom-child\n") == 0, "child output: %s", jstr(r, "stdout"));
    CHECK(strcmp(jstr(r, "stderr"), "to-err\n") == 0, "child stderr: %s", jstr(r, "stderr"));
    viv_response_free(r);
    r = session_run(c, sid, "raise KeyError('nope')", 5000);
    CHECK(cJSON_GetObjectItem(r->json, "exit_code")->valueint == 1 && strstr(jstr(r, "stderr"), "KeyError"),
          "exception: exit %d stderr %s", cJSON_GetObjectItem(r->json, "exit_code")->valueint, jstr(r, "stderr"));
    viv_response_free(r);
    r = session_run(c, sid, "import sys\nprint(x)\nsys.exit(4)", 5000);
    CHECK(cJSON_GetObjectItem(r->json, "exit_code")->valueint == 4 && strcmp(jstr(r, "stdout"), "3\n") == 0,
          "SystemExit(4) or state after an exception: %s", jstr(r, "stdout"));
    viv_response_free(r);
    r = session_run(c, sid, "print('y' * 2000000)", 5000);
    cJSON *drop = r ? cJSON_GetObjectItem(r->json, "stdout_dropped") : NULL;
    CHECK(cJSON_IsNumber(drop) && drop->valuedouble == 2000001 - 1048576 && strlen(jstr(r, "stdout")) == 1048576,
          "output cap: dropped %g", cJSON_IsNumber(drop) ? drop->valuedouble : -1);
    viv_response_free(r);
    CHECK(stats_sessions(c) == 1, "stats does not count the open session");
    long h = viv_submit_session_close(c, sid);
    r = viv_wait(c, h, 5000);
    CHECK(jtrue(r, "ok"), "session_close: %s", rerr(r));
    viv_response_free(r);
    r = session_run(c, sid, "print(x)", 5000);
    CHECK(strcmp(rerr(r), "not_found") == 0, "exec after close: %s", rerr(r));
    viv_response_free(r);
    CHECK(stats_sessions(c) == 0, "closed session still counted");
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* Is a live host process named `comm` (its /proc/PID/comm)? */
static int host_has_comm(const char *comm) {
    DIR *dir = opendir("/proc");
    struct dirent *e;
    int found = 0;
    while (dir && (e = readdir(dir))) {
        char path[300], buf[64] = "";
        snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(buf, sizeof buf, f)) buf[strcspn(buf, "\n")] = 0;
        fclose(f);
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        char st[512] = "";
        f = fopen(path, "r");
        if (f) {
            if (!fgets(st, sizeof st, f)) st[0] = 0;
            fclose(f);
        }
        const char *rp = strrchr(st, ')');
        if (strcmp(buf, comm) == 0 && rp && rp[2] != 'Z') found = 1;
    }
    if (dir) closedir(dir);
    return found;
}

/* Marks the session's own interpreter (the process that keeps its
 * globals between calls) by naming it `marker`: it lives exactly as long as
 * the session. (Processes a call starts end with the call.) */
static void session_marker(char *marker, size_t n, char *code, size_t codelen, int k) {
    snprintf(marker, n, "viv%d.%d", (int)getpid() % 100000, k);
    snprintf(code, codelen, "import ctypes\nctypes.CDLL(None).prctl(15, b'%s', 0, 0, 0)", marker);
}

static int wait_present(const char *marker) {
    for (int i = 0; i < 500; i++) {
        if (host_has_comm(marker)) return 1;
        usleep(10000);
    }
    return 0;
}

static int wait_gone(const char *marker) {
    for (int i = 0; i < 500; i++) {
        if (!host_has_comm(marker)) return 1;
        usleep(10000);
    }
    return 0;
}

static void test_session_overrun_kills_session(void) {
    START(d, NULL);
    CONNECT(c, d);
    SESSION(c, sid);
    char marker[32], code[160];
    session_marker(marker, sizeof marker, code, sizeof code, 1);
    struct viv_response *r = session_run(c, sid, code, 5000);
    CHECK(jtrue(r, "ok"), "start the marker: %s", rerr(r));
    viv_response_free(r);
    CHECK(wait_present(marker), "the session's interpreter is not running");
    double t0 = now_ms();
    r = session_run(c, sid, "while True: pass", 500);
    double took = now_ms() - t0;
    CHECK(jtrue(r, "timed_out") && jtrue(r, "session_lost"), "overrun: timed_out %d session_lost %d (%s)",
          jtrue(r, "timed_out"), jtrue(r, "session_lost"), rerr(r));
    CHECK(took < 3000, "a 500 ms call took %.0f ms", took);
    viv_response_free(r);
    r = session_run(c, sid, "print(1)", 5000);
    CHECK(strcmp(rerr(r), "session_lost") == 0, "a call to the lost session: %s", rerr(r));
    viv_response_free(r);
    CHECK(wait_gone(marker), "a process of the lost session outlived it");
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_session_idle_expiry(void) {
    START(d, "--session-idle-ms", "300", NULL);
    CONNECT(c, d);
    SESSION(c, sid);
    char marker[32], code[160];
    session_marker(marker, sizeof marker, code, sizeof code, 2);
    struct viv_response *r = session_run(c, sid, code, 5000);
    CHECK(jtrue(r, "ok"), "first call: %s", rerr(r));
    viv_response_free(r);
    usleep(1000000);
    r = session_run(c, sid, "print(p)", 5000);
    CHECK(strcmp(rerr(r), "session_lost") == 0 && strstr(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "message")) ?: "", "expired"),
          "an idle session did not expire, or the answer does not say so: %s", rerr(r));
    viv_response_free(r);
    CHECK(wait_gone(marker), "an expired session's process lives on");
    CHECK(stats_sessions(c) == 0, "expired session still counted");
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_session_cap_per_peer(void) {
    START(d, "--max-sessions-per-peer", "2", NULL);
    CONNECT(c, d);
    char err[256];
    struct viv_client *c2 = viv_connect(d.sock, err, sizeof err);
    CHECK(c2, "%s", err);
    SESSION(c, s1);
    char s2[64], why[400];
    CHECK(session_open_on(c2, s2, sizeof s2, why, sizeof why) == 0, "%s", why);
    long h = viv_submit_session_open(c, "python");
    struct viv_response *r = viv_wait(c, h, 10000);
    CHECK(strcmp(rerr(r), "busy") == 0, "a third session for the same uid: %s", rerr(r));
    CHECK(strstr(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "message")), "max-sessions-per-peer"),
          "the busy message does not say why");
    viv_response_free(r);
    h = viv_submit_session_close(c2, s2);
    viv_response_free(viv_wait(c2, h, 5000));
    char s3[64];
    CHECK(session_open_on(c, s3, sizeof s3, why, sizeof why) == 0, "after a close: %s", why);
    viv_close(c2);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_session_private_to_connection(void) {
    START(d, NULL);
    CONNECT(c, d);
    char err[256];
    struct viv_client *other = viv_connect(d.sock, err, sizeof err);
    CHECK(other, "%s", err);
    SESSION(c, sid);
    struct viv_response *r = session_run(c, sid, "secret = 42", 5000);
    viv_response_free(r);
    r = session_run(other, sid, "print(secret)", 5000);
    CHECK(strcmp(rerr(r), "not_found") == 0, "another connection used the session: %s", rerr(r));
    viv_response_free(r);
    long h = viv_submit_session_close(other, sid);
    r = viv_wait(other, h, 5000);
    CHECK(strcmp(rerr(r), "not_found") == 0, "another connection closed the session: %s", rerr(r));
    viv_response_free(r);
    r = session_run(c, sid, "print(secret)", 5000);
    CHECK(strcmp(jstr(r, "stdout"), "42\n") == 0, "the owner lost its session: %s", jstr(r, "stdout"));
    viv_response_free(r);
    viv_close(other);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_session_lifetime_is_session_ms_max(void) {
    /* A session outlives the per-call maximum (timeout_ms_max) but not the
     * policy's session_ms_max. */
    char dir[] = "/tmp/vivd-pol-XXXXXX", path[128];
    CHECK(mkdtemp(dir), "mkdtemp");
    CHECK(write_policy_variant(dir, "python", "python", 500, 800, 2500, path, sizeof path) == 0, "policy variant");
    START(d, "--policies", dir, NULL);
    CONNECT(c, d);
    char sid[64], why[400];
    CHECK(session_open_on(c, sid, sizeof sid, why, sizeof why) == 0, "%s", why);
    double t0 = now_ms();
    struct viv_response *r = session_run(c, sid, "x = 41", 500);
    CHECK(r && cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok")), "first call failed");
    viv_response_free(r);
    usleep(1200 * 1000); /* past timeout_ms_max */
    r = session_run(c, sid, "print(x + 1)", 500);
    CHECK(strcmp(jstr(r, "stdout"), "42\n") == 0, "the session died at timeout_ms_max: %s", jstr(r, "stdout"));
    viv_response_free(r);
    while (now_ms() - t0 < 3500) usleep(100 * 1000); /* past session_ms_max */
    r = session_run(c, sid, "print(x)", 500);
    int ended = r && !cJSON_IsTrue(cJSON_GetObjectItem(r->json, "ok"));
    viv_response_free(r);
    unlink(path);
    rmdir(dir);
    CHECK(ended, "the session outlived session_ms_max");
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_session_dies_with_connection(void) {
    START(d, NULL);
    int base_fds = count_fds(d.pid);
    char marker[32], code[160];
    session_marker(marker, sizeof marker, code, sizeof code, 3);
    {
        CONNECT(c, d);
        SESSION(c, sid);
        struct viv_response *r = session_run(c, sid, code, 5000);
        CHECK(jtrue(r, "ok"), "start the marker: %s", rerr(r));
        viv_response_free(r);
        CHECK(wait_present(marker), "the session's interpreter is not running");
        viv_close(c);
    }
    CHECK(wait_gone(marker), "the session outlived its connection");
    usleep(200000);
    CONNECT(c2, d);
    long counted = -1;
    for (int i = 0; i < 100 && (counted = stats_sessions(c2)) != 0; i++) usleep(20000);
    CHECK(counted == 0, "the session is still counted 2 s after its connection closed");
    viv_close(c2);
    usleep(100000);
    CHECK(count_fds(d.pid) == base_fds, "daemon fds %d, %d before", count_fds(d.pid), base_fds);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_sigterm_with_open_session(void) {
    /* vivd stops promptly with a session open (idle ones close at once) and
     * takes the session's processes with it. */
    START(d, "--grace-ms", "3000", NULL);
    char marker[32], code[160];
    session_marker(marker, sizeof marker, code, sizeof code, 7);
    CONNECT(c, d);
    SESSION(c, sid);
    struct viv_response *r = session_run(c, sid, code, 5000);
    CHECK(jtrue(r, "ok"), "start the marker: %s", rerr(r));
    viv_response_free(r);
    CHECK(wait_present(marker), "the session's interpreter is not running");
    double t0 = now_ms();
    int status = daemon_stop(&d);
    double took = now_ms() - t0;
    int gone = wait_gone(marker);
    viv_close(c);
    CHECK(status == 0, "vivd exit status %d after SIGTERM with a session open", status);
    CHECK(took < 2500, "stopping took %.0f ms with an idle session", took);
    CHECK(gone, "the session's process outlived vivd");
}

static void test_session_rules(void) {
    START(d, NULL);
    CONNECT(c, d);
    long h1 = viv_submit_session_open(c, "shell"), h2 = viv_submit_session_open(c, "sql");
    struct viv_response *r1 = viv_wait(c, h1, 5000), *r2 = viv_wait(c, h2, 5000);
    CHECK(strcmp(rerr(r1), "bad_request") == 0 && strcmp(rerr(r2), "bad_request") == 0,
          "non-Python tools: %s, %s", rerr(r1), rerr(r2));
    viv_response_free(r1), viv_response_free(r2);
    SESSION(c, sid);
    /* one call at a time: a second concurrent call is refused, the first is unharmed */
    const char *slow = "import time; time.sleep(0.5); print('a')", *quick = "print('b')";
    long a = viv_submit_session_exec(c, sid, slow, strlen(slow), 5000);
    long b = viv_submit_session_exec(c, sid, quick, strlen(quick), 5000);
    struct viv_response *rb = viv_wait(c, b, 5000), *ra = viv_wait(c, a, 5000);
    CHECK(strcmp(rerr(rb), "busy") == 0, "concurrent call: %s", rerr(rb));
    CHECK(strcmp(jstr(ra, "stdout"), "a\n") == 0, "the running call: %s", jstr(ra, "stdout"));
    viv_response_free(ra), viv_response_free(rb);
    struct viv_response *r = session_run(c, "s-00000000000000000000000000000000", "1", 5000);
    CHECK(strcmp(rerr(r), "not_found") == 0, "unknown session: %s", rerr(r));
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}
