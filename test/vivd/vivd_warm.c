/* vivd_warm.c - part of vivd_tests.c (one translation unit, its harness
 * and helpers): zygotes and warm jobs: they hold nothing of ours, and behave like cold ones. */

/* ------------------------------------------------------------------ zygotes */

static struct viv_response *exec_python(struct viv_client *c, const char *code, long timeout_ms) {
    return viv_wait(c, viv_submit_exec(c, "python", code, strlen(code), timeout_ms), timeout_ms + 10000);
}

static long jint(const struct viv_response *r, const char *key) {
    cJSON *v = r ? cJSON_GetObjectItem(r->json, key) : NULL;
    return cJSON_IsNumber(v) ? (long)v->valuedouble : -999;
}

/* ------------------------------------------------ warm jobs hold nothing of ours */

/* The response as one line, for failure messages (static buffer). */
static const char *rtext(const struct viv_response *r) {
    static char buf[1500];
    char *t = r ? cJSON_PrintUnformatted(r->json) : NULL;
    snprintf(buf, sizeof buf, "%s", t ? t : "no answer");
    free(t);
    return buf;
}

/* Python run as a warm job: the fds it holds,
 * then bytes of every hostile kind written to every fd from 3 up and to the
 * fds of every other process it can find: long lines, NaN, overflowing and
 * negative numbers, early and repeated status-like lines, binary. */
static const char HOSTILE_FDS[] =
    "import os\n"
    "def is_open(fd):\n"
    "    try: os.fstat(fd); return True\n"
    "    except OSError: return False\n"
    "print('fds', [fd for fd in range(4096) if is_open(fd)])\n"
    "junk = [b'S 1\\n', b'D nan 1e999 -5\\n', b'D 0 0 0\\n' * 50, b'ready\\n', b'S 99999999999999999999999\\n',\n"
    "        b'0 0 0 99999999999 0 0 0 0.0 0\\n', b'-1 -1 -1 -1 -1 -1 -1 nan -1\\n', b'\\xff\\x00' * 4096, b'9' * (1 << 20)]\n"
    "wrote = 0\n"
    "for fd in range(3, 1024):\n"
    "    for j in junk:\n"
    "        try: os.write(fd, j); wrote += 1\n"
    "        except OSError: pass\n"
    "reached = []\n"
    "for p in os.listdir('/proc'):\n"
    "    if not p.isdigit() or int(p) == os.getpid(): continue\n"
    "    try: fds = os.listdir('/proc/%s/fd' % p)\n"
    "    except OSError: continue\n"
    "    reached.append(p)\n"
    "    for f in fds:\n"
    "        try:\n"
    "            w = os.open('/proc/%s/fd/%s' % (p, f), os.O_WRONLY | os.O_NONBLOCK)\n"
    "            for j in junk: os.write(w, j)\n"
    "        except OSError: pass\n"
    "print('wrote', wrote, 'reached', reached)\n";

static void test_zygote_job_holds_only_std_fds_and_cannot_hurt_its_zygote(void) {
    START(d, NULL);
    CONNECT(c, d);
    for (int i = 0; i < 3; i++) {
        struct viv_response *r = exec_python(c, HOSTILE_FDS, 20000);
        CHECK(jtrue(r, "zygote"), "hostile job %d did not run on a zygote: %s", i, rtext(r));
        CHECK(strcmp(jstr(r, "stdout"), "fds [0, 1, 2]\nwrote 0 reached []\n") == 0, "hostile job %d saw: %s %s", i,
              jstr(r, "stdout"), jstr(r, "stderr"));
        viv_response_free(r);
    }
    struct viv_response *r = exec_python(c, "print(6 * 7)", 10000);
    CHECK(jtrue(r, "zygote") && strcmp(jstr(r, "stdout"), "42\n") == 0, "after the hostile jobs: %s", rtext(r));
    viv_response_free(r);
    struct zygote_counts z = zygote_counts(d.sock);
    CHECK(z.lost == 0 && z.started == 1, "hostile jobs cost zygotes: started %d, lost %d", z.started, z.lost);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_session_code_holds_only_std_fds_and_cannot_reach_its_keeper(void) {
    START(d, NULL);
    CONNECT(c, d);
    SESSION(c, sid);
    struct viv_response *r = session_run(c, sid, "x = 41", 5000);
    CHECK(jtrue(r, "ok"), "first call: %s", rerr(r));
    viv_response_free(r);
    for (int i = 0; i < 3; i++) {
        r = session_run(c, sid, HOSTILE_FDS, 20000);
        CHECK(r && !jtrue(r, "session_lost") && strcmp(jstr(r, "stdout"), "fds [0, 1, 2]\nwrote 0 reached []\n") == 0,
              "hostile call %d: %s", i, rtext(r));
        viv_response_free(r);
    }
    r = session_run(c, sid, "print(x + 1)", 5000);
    CHECK(r && strcmp(jstr(r, "stdout"), "42\n") == 0 && !strstr(jstr(r, "stderr"), "Traceback"),
          "the session after hostile calls: %s", rtext(r));
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* A call's processes end with the call: a setsid'd sleeper and a spinner
 * started in the background are gone once the call is answered, and the
 * next call finds only the session's own processes. */
static void test_session_call_leaves_nothing_running(void) {
    START(d, NULL);
    CONNECT(c, d);
    SESSION(c, sid);
    char marker[32], code[512];
    snprintf(marker, sizeof marker, "%d.45", 700000 + (int)getpid() % 100000);
    snprintf(code, sizeof code,
             "import subprocess, os\n"
             "subprocess.Popen(['sleep', '%s'], start_new_session=True)\n"
             "subprocess.Popen(['sh', '-c', 'while :; do :; done'], start_new_session=True)\n"
             "n0 = len([p for p in os.listdir('/proc') if p.isdigit()])\n"
             "print('started', n0)\n", marker);
    struct viv_response *r = session_run(c, sid, code, 5000);
    int n0 = -1;
    CHECK(r && sscanf(jstr(r, "stdout"), "started %d", &n0) == 1, "the call: %s", rtext(r));
    viv_response_free(r);
    int alive = 1;
    for (int i = 0; i < 100 && alive; i++) alive = host_has(marker), usleep(alive ? 10000 : 0);
    CHECK(!alive, "a process the call started outlived the call");
    r = session_run(c, sid,
                    "import os\n"
                    "live = []\n"
                    "for p in os.listdir('/proc'):\n"
                    "    if p.isdigit():\n"
                    "        st = open('/proc/%s/stat' % p).read().rsplit(')', 1)[1].split()[0]\n"
                    "        if st != 'Z': live.append(p)\n"
                    "print(len(live))\n",
                    5000);
    int n1 = -1;
    CHECK(r && sscanf(jstr(r, "stdout"), "%d", &n1) == 1 && n1 == n0 - 2, "live processes: %d during the first call, %d after (%s)",
          n0, n1, rtext(r));
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_zygote_runs_warm_jobs_like_cold_ones(void) {
    START(d, NULL);
    CONNECT(c, d);
    struct viv_response *r = exec_python(c, "import pandas as pd\nprint(pd.DataFrame({'a':[1,2]})['a'].sum())", 10000);
    CHECK(jtrue(r, "zygote"), "the job did not run on a zygote: %s", r ? "no zygote field" : "no answer");
    CHECK(strcmp(jstr(r, "stdout"), "3\n") == 0, "stdout %s", jstr(r, "stdout"));
    viv_response_free(r);
    /* exit statuses, signals, tracebacks and the output cap as a cold job has them */
    r = exec_python(c, "import sys; print('out'); sys.exit(7)", 10000);
    CHECK(jint(r, "exit_code") == 7 && strcmp(jstr(r, "stdout"), "out\n") == 0, "sys.exit(7): %ld", jint(r, "exit_code"));
    viv_response_free(r);
    r = exec_python(c, "import os; os._exit(5)", 10000);
    CHECK(jint(r, "exit_code") == 5, "os._exit(5): %ld", jint(r, "exit_code"));
    viv_response_free(r);
    r = exec_python(c, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", 10000);
    CHECK(jint(r, "signal") == SIGSEGV, "killed by SIGSEGV: signal %ld", jint(r, "signal"));
    viv_response_free(r);
    r = exec_python(c, "def f():\n    raise ValueError('boom')\nf()\n", 10000);
    CHECK(jint(r, "exit_code") == 1 && strstr(jstr(r, "stderr"), "File \"/work/main.py\", line 3") &&
              strstr(jstr(r, "stderr"), "ValueError: boom") && !strstr(jstr(r, "stderr"), "zygote"),
          "traceback: %s", jstr(r, "stderr"));
    viv_response_free(r);
    r = exec_python(c, "import sys; sys.stdout.write('x' * 3000000)", 10000);
    CHECK(jint(r, "stdout_dropped") == 3000000 - 1048576 && strlen(jstr(r, "stdout")) == 1048576,
          "output cap: dropped %ld", jint(r, "stdout_dropped"));
    viv_response_free(r);
    /* the deadline kills the request, not the zygote */
    r = exec_python(c, "while True: pass", 300);
    CHECK(jtrue(r, "timed_out") && jtrue(r, "zygote"), "timed_out %d", jtrue(r, "timed_out"));
    CHECK(jint(r, "wall_ms") < 2000, "killed after %ld ms", jint(r, "wall_ms"));
    viv_response_free(r);
    r = exec_python(c, "print('alive')", 10000);
    CHECK(jtrue(r, "zygote") && strcmp(jstr(r, "stdout"), "alive\n") == 0, "after a timeout: %s", jstr(r, "stdout"));
    viv_response_free(r);
    struct zygote_counts z = zygote_counts(d.sock);
    CHECK(z.lost == 0 && z.started == 1, "zygotes started %d, lost %d", z.started, z.lost);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* Request A leaves files, a process, a SysV shared memory segment and a
 * hostname-free trace behind; request B, on the same zygote, must see none
 * of it, and must hold no capability or way to make namespaces. */
static void test_zygote_requests_cannot_see_each_other(void) {
    START(d, NULL);
    CONNECT(c, d);
    char marker[32], code[1024];
    snprintf(marker, sizeof marker, "%d.25", 500000 + (int)getpid() % 100000);
    snprintf(code, sizeof code,
             "import subprocess, ctypes\n"
             "open('/tmp/a-left-this', 'w').write('x'); open('/work/a-left-this', 'w').write('y')\n"
             "subprocess.Popen(['sleep', '%s'], start_new_session=True)\n"
             "libc = ctypes.CDLL(None); print(libc.shmget(0x7a7a, 4096, 0o1666))\n", marker);
    struct viv_response *r = exec_python(c, code, 10000);
    CHECK(jtrue(r, "zygote") && jint(r, "exit_code") == 0 && atoi(jstr(r, "stdout")) >= 0,
          "request A: %s %s", jstr(r, "stdout"), jstr(r, "stderr"));
    viv_response_free(r);
    int alive = 1;
    for (int i = 0; i < 200 && alive; i++) usleep(10000), alive = host_has(marker);
    CHECK(!alive, "request A's background process outlived its answer");
    const char *look =
        "import os, ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(sorted(os.listdir('/tmp')), sorted(os.listdir('/work')))\n"
        "print(sorted(p for p in os.listdir('/proc') if p.isdigit()))\n"
        "print(libc.shmget(0x7a7a, 4096, 0))\n"
        "print(' '.join(l.split()[1] for l in open('/proc/self/status') if l.startswith(('Cap', 'NoNewPrivs', 'Seccomp:'))))\n"
        "print(libc.unshare(0x20000000), libc.unshare(0x10000000), libc.mount(b'none', b'/tmp', b'tmpfs', 0, None),\n"
        "      libc.setns(os.open('/proc/self/ns/pid', 0), 0x20000000))\n";
    r = exec_python(c, look, 10000);
    const char *want =
        "[] ['main.py']\n"
        "['1', '2']\n"
        "-1\n"
        "0000000000000000 0000000000000000 0000000000000000 0000000000000000 0000000000000000 1 2\n"
        "-1 -1 -1 -1\n";
    CHECK(jtrue(r, "zygote") && strcmp(jstr(r, "stdout"), want) == 0, "request B saw:\n%s%s", jstr(r, "stdout"),
          jstr(r, "stderr"));
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* The code of one request must never reach the zygote's memory, or a later
 * request (a copy of the zygote) could read it there. B scans every
 * readable byte of its own address space for A's secret, without ever
 * holding the whole secret itself: it looks for the first half and
 * compares a hash of what follows with the hash of the second half. */
static void test_zygote_request_cannot_read_earlier_code(void) {
    START(d, NULL);
    CONNECT(c, d);
    unsigned char rnd[16];
    CHECK(getrandom(rnd, sizeof rnd, 0) == (ssize_t)sizeof rnd, "getrandom");
    char secret[33], code[512];
    for (int i = 0; i < 16; i++) snprintf(secret + 2 * i, 3, "%02x", rnd[i]);
    snprintf(code, sizeof code, "s = '%s'\nprint(len(s))\n", secret);
    for (int k = 0; k < 3; k++) { /* several times: whatever buffer once held it */
        struct viv_response *r = exec_python(c, code, 10000);
        CHECK(jtrue(r, "zygote") && strcmp(jstr(r, "stdout"), "32\n") == 0, "request A: %s", jstr(r, "stderr"));
        viv_response_free(r);
    }
    char scan[2048], half[17];
    memcpy(half, secret, 16), half[16] = 0;
    /* sha256 of the second half, computed inside the jail of request A would
     * leak nothing; compute it here in B's code from a reversed copy */
    char rev[17];
    for (int i = 0; i < 16; i++) rev[i] = secret[31 - i];
    rev[16] = 0;
    snprintf(scan, sizeof scan,
             "import hashlib, re\n"
             "head = b'%s'\n"
             "tail_hash = hashlib.sha256(b'%s'[::-1]).digest()\n"
             "found = scanned = 0\n"
             "mem = open('/proc/self/mem', 'rb', 0)\n"
             "for line in open('/proc/self/maps'):\n"
             "    addr, perms = line.split()[:2]\n"
             "    if perms[0] != 'r' or '[vvar]' in line or '[vsyscall]' in line: continue\n"
             "    lo, hi = (int(x, 16) for x in addr.split('-'))\n"
             "    try:\n"
             "        mem.seek(lo); data = mem.read(hi - lo)\n"
             "    except OSError: continue\n"
             "    scanned += len(data)\n"
             "    for m in re.finditer(re.escape(head), data):\n"
             "        if hashlib.sha256(data[m.end():m.end() + 16]).digest() == tail_hash: found += 1\n"
             "print(found, scanned > 10_000_000)\n",
             half, rev);
    struct viv_response *r = exec_python(c, scan, 30000);
    CHECK(jtrue(r, "zygote") && strcmp(jstr(r, "stdout"), "0 True\n") == 0, "request B found A's code: %s %s",
          jstr(r, "stdout"), jstr(r, "stderr"));
    viv_response_free(r);
    viv_close(c);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

/* Find the zygote interpreters of a daemon: python3 processes whose
 * cmdline is the policy's and whose ancestry reaches the daemon. */
static int find_zygotes(pid_t daemon, pid_t *out, int max) {
    DIR *dir = opendir("/proc");
    struct dirent *e;
    int n = 0;
    while (dir && (e = readdir(dir)) && n < max) {
        pid_t pid = atoi(e->d_name);
        if (pid <= 0) continue;
        char path[64], buf[256];
        snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
        int fd = open(path, O_RDONLY);
        ssize_t len = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0) close(fd);
        if (len > 0) buf[len] = 0;
        if (len <= 0 || strcmp(buf, "/usr/bin/python3") != 0) continue;
        /* the zygote itself, not the request child it keeps ready (whose parent is the zygote) */
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *sf = fopen(path, "r");
        int parent = 0;
        if (!sf || fscanf(sf, "%*d (%*[^)]) %*c %d", &parent) != 1) parent = 0;
        if (sf) fclose(sf);
        snprintf(path, sizeof path, "/proc/%d/cmdline", parent);
        fd = open(path, O_RDONLY);
        len = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0) close(fd);
        if (len > 0) buf[len] = 0;
        if (len > 0 && strcmp(buf, "/usr/bin/python3") == 0) continue;
        /* walk up the parents */
        for (pid_t p = pid; p > 1;) {
            snprintf(path, sizeof path, "/proc/%d/stat", p);
            FILE *f = fopen(path, "r");
            int pp = 0;
            if (!f || fscanf(f, "%*d (%*[^)]) %*c %d", &pp) != 1) pp = 0;
            if (f) fclose(f);
            if (pp == daemon) {
                out[n++] = pid;
                break;
            }
            p = pp;
        }
    }
    if (dir) closedir(dir);
    return n;
}

static void test_zygote_that_dies_is_replaced(void) {
    START(d, "--zygotes", "2", NULL);
    pid_t z[8];
    int n = find_zygotes(d.pid, z, 8);
    CHECK(n == 2, "found %d zygote interpreters", n);
    for (int i = 0; i < n; i++) kill(z[i], SIGKILL);
    struct zygote_counts zc = {0};
    for (int i = 0; i < 600; i++) {
        zc = zygote_counts(d.sock);
        if (zc.lost == 2 && zc.idle == 2) break;
        usleep(50000);
    }
    CHECK(zc.lost == 2 && zc.idle == 2 && zc.started == 4, "lost %d, idle %d, started %d", zc.lost, zc.idle, zc.started);
    CONNECT(c, d);
    struct viv_response *r = exec_python(c, "print(42)", 10000);
    CHECK(jtrue(r, "zygote") && strcmp(jstr(r, "stdout"), "42\n") == 0, "after the replacement: %s", jstr(r, "stdout"));
    viv_response_free(r);
    viv_close(c);
    char *log = read_file(d.log, 1 << 20, &(size_t){0}, (char[64]){0}, 64);
    CHECK(log && strstr(log, "\"op\":\"zygote_lost\""), "the loss was not logged");
    free(log);
    CHECK(daemon_stop(&d) == 0, "exit status");
}

static void test_zygote_job_cancelled_on_disconnect(void) {
    START(d, NULL);
    char marker[32], code[160];
    snprintf(marker, sizeof marker, "%d.5", 600000 + (int)getpid() % 100000);
    snprintf(code, sizeof code, "import subprocess; subprocess.run(['sleep', '%s'])", marker);
    {
        CONNECT(warm, d); /* the first job warms the daemon's allocations */
        viv_response_free(exec_python(warm, "pass", 10000));
        viv_close(warm);
    }
    usleep(200000);
    int base_fds = count_fds(d.pid);
    CONNECT(c, d);
    viv_submit_exec(c, "python", code, strlen(code), 30000);
    viv_next(c, 100);
    int started = 0;
    for (int i = 0; i < 500 && !started; i++) usleep(10000), started = host_has(marker);
    viv_close(c);
    int alive = 1;
    for (int i = 0; i < 300 && alive; i++) usleep(10000), alive = host_has(marker);
    CHECK(started, "the job never started");
    CHECK(!alive, "the job outlived its client's disconnect");
    CHECK(zygotes_settle(d.sock) == 0, "no zygote came back");
    usleep(200000);
    CHECK(count_fds(d.pid) == base_fds, "daemon fds %d, %d before", count_fds(d.pid), base_fds);
    CHECK(daemon_stop(&d) == 0, "exit status");
}
