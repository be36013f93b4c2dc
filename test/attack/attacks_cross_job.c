/* attacks_cross_job.c - part of attack_tests.c (one translation unit with its
 * runners and harness): what one job can do to another, or to the caller. */

/* ------------------------------------------------------------ cross-job */

static void test_concurrent_jobs_isolated(void) {
    char marker[32];
    snprintf(marker, sizeof marker, "%d.5", 500000 + (int)getpid() % 100000);
    char code_a[128];
    snprintf(code_a, sizeof code_a, "sleep %s", marker);
    struct job a, b;
    const char *args_a[] = {"run", "--json", "--tool", "shell", "--timeout-ms", "5000", "--code", code_a, NULL};
    job_start(&a, args_a);
    usleep(300 * 1000);
    char code_b[1024];
    snprintf(code_b, sizeof code_b,
             "import os, signal\n"
             "mine = [p for p in os.listdir('/proc') if p.isdigit()]\n"
             "seen = [open('/proc/%%s/cmdline' %% p).read() for p in mine]\n"
             "print('SEEN_A', any('%s' in s for s in seen), 'NPROCS', len(seen))\n"
             "hits = 0\n"
             "for pid in range(1, 4000):\n"
             "    if str(pid) in mine: continue\n"
             "    try:\n"
             "        os.kill(pid, 0); hits += 1\n"
             "    except OSError:\n"
             "        pass\n"
             "print('SIGNALABLE', hits)\n", marker);
    run_code(&b, "python", code_b, NULL);
    int a_alive_during_b = host_process_with_marker(marker);
    kill(a.pid, SIGTERM);
    job_finish(&a);
    CHECK_RAN(&b);
    CHECK(a_alive_during_b, "job a was not running while b looked: the test proves nothing");
    /* b sees its own jail only: our init (or a zygote's pid 1) and itself;
     * in a session, also the keeper of its interpreter */
    CHECK_OUT_HAS(&b, attack_path == PATH_SESSION ? "SEEN_A False NPROCS 3" : "SEEN_A False NPROCS 2");
    CHECK_OUT_HAS(&b, "SIGNALABLE 0");
    job_free(&a);
    job_free(&b);
}

static void test_sysv_ipc_neither_crosses_nor_outlives(void) {
    char code_a[] =
        "import ctypes, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('SHM', libc.shmget(0x7669, 4096, 0o1666), 'SEM', libc.semget(0x7669, 1, 0o1666), 'MSG', libc.msgget(0x7669, 0o1666), flush=True)\n"
        "time.sleep(2)\n";
    char code_b[] =
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('SHM', libc.shmget(0x7669, 0, 0), 'SEM', libc.semget(0x7669, 0, 0), 'MSG', libc.msgget(0x7669, 0))\n";
    struct job a, b, c;
    const char *args_a[] = {"run", "--json", "--tool", "python", "--timeout-ms", "5000", "--code", code_a, NULL};
    job_start(&a, args_a);
    usleep(700 * 1000);
    run_code(&b, "python", code_b, NULL); /* while a holds its objects */
    job_finish(&a);
    run_code(&c, "python", code_b, NULL); /* after a is gone */
    CHECK_RAN(&a);
    CHECK_RAN(&b);
    CHECK_RAN(&c);
    CHECK(strstr(jstr(&a, "stdout"), "SHM -1") == NULL && strstr(jstr(&a, "stdout"), "SHM ") != NULL,
          "job a could not create its objects: %s %s", jstr(&a, "stdout"), jstr(&a, "stderr"));
    CHECK_OUT_HAS(&b, "SHM -1 SEM -1 MSG -1");
    CHECK_OUT_HAS(&c, "SHM -1 SEM -1 MSG -1");
    char buf[65536] = "";
    int fd = open("/proc/sysvipc/shm", O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        close(fd);
    }
    CHECK(strstr(buf, "30313") == NULL, "the job's segment (key 0x7669 = 30313) is in the host's IPC namespace");
    job_free(&a);
    job_free(&b);
    job_free(&c);
}

/* A built-in policy as `viv policy check` shows it, less what is shown but
 * not written (origin, always_enforced, mount modes): a policy file's JSON. */
static cJSON *editable_policy(const char *tool) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "\"$VIV\" policy check %s", tool);
    FILE *in = popen(cmd, "r");
    if (!in) return NULL;
    static char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, in);
    pclose(in);
    text[n] = 0;
    cJSON *p = cJSON_Parse(text);
    if (!p) return NULL;
    cJSON_DeleteItemFromObject(p, "origin");
    cJSON_DeleteItemFromObject(p, "always_enforced");
    cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(p, "mounts")) cJSON_DeleteItemFromObject(m, "mode");
    return p;
}

static char *write_policy_with_data(void) {
    /* The python policy plus a read-only @db mount, as a policy file. */
    cJSON *p = editable_policy("python");
    if (!p) return NULL;
    cJSON *mounts = cJSON_GetObjectItem(p, "mounts");
    cJSON *db = cJSON_CreateObject();
    cJSON_AddStringToObject(db, "src", "@db");
    cJSON_AddStringToObject(db, "dst", "/data/db.sqlite");
    cJSON_AddItemToArray(mounts, db);
    cJSON_ReplaceItemInObject(p, "name", cJSON_CreateString("python-data"));
    char *out = cJSON_Print(p);
    cJSON_Delete(p);
    static char path[128];
    snprintf(path, sizeof path, "/tmp/viv-policy-%d.json", (int)getpid());
    put_file(path, out);
    free(out);
    return path;
}

static void test_file_locks_neither_cross_nor_outlive(void) {
    char db[128];
    snprintf(db, sizeof db, "/tmp/viv-lock-%d.db", (int)getpid());
    put_file(db, "data");
    char *policy = write_policy_with_data();
    CHECK(policy != NULL, "could not build the test policy");
    char code_a[] =
        "import fcntl, os, time\n"
        "fd = os.open('/data/db.sqlite', os.O_RDONLY)\n"
        "fcntl.lockf(fd, fcntl.LOCK_SH); print('LOCKED', flush=True)\n"
        "time.sleep(100)\n";
    char code_b[] =
        "import fcntl, os\n"
        "fd = os.open('/data/db.sqlite', os.O_RDONLY)\n"
        "fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB); print('SHARED OK')\n"
        "try:\n"
        "    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('EXCLUSIVE GOT')\n"
        "except OSError as e:\n"
        "    print('EXCLUSIVE DENIED', e.errno)\n"
        "try:\n"
        "    os.open('/data/db.sqlite', os.O_RDWR); print('RDWR OPEN')\n"
        "except OSError as e:\n"
        "    print('RDWR DENIED', e.errno)\n";
    char dbarg[160];
    snprintf(dbarg, sizeof dbarg, "%s", db);
    struct job a, b;
    const char *args_a[] = {"run", "--json", "--policy", policy, "--db", dbarg, "--timeout-ms", "1500", "--code", code_a, NULL};
    job_start(&a, args_a);
    usleep(600 * 1000);
    const char *args_b[] = {"run", "--json", "--policy", policy, "--db", dbarg, "--code", code_b, NULL};
    run_args(&b, args_b);
    job_finish(&a);
    /* After a's deadline its lock must be gone: the host can take a write lock. */
    int fd = open(db, O_RDWR);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int host_locked = fcntl(fd, F_SETLK, &fl) == 0;
    close(fd);
    unlink(db);
    unlink(policy);
    CHECK_RAN(&a);
    CHECK_RAN(&b);
    CHECK_OUT_HAS(&a, "LOCKED");
    CHECK(jtrue(&a, "timed_out"), "job a should have been killed at its deadline");
    CHECK_OUT_HAS(&b, "SHARED OK");
    CHECK_OUT_HAS(&b, "EXCLUSIVE DENIED 9"); /* EBADF: a read-only fd cannot take a write lock */
    CHECK_OUT_HAS(&b, "RDWR DENIED");        /* EROFS or EACCES */
    CHECK(host_locked, "the job's lock outlived the job");
    job_free(&a);
    job_free(&b);
}

/* How many job cgroups named after supervisor `pid` exist on the host. */
static int cgroups_of(pid_t pid) {
    char cmd[160], line[512];
    snprintf(cmd, sizeof cmd, "find /sys/fs/cgroup -maxdepth 5 -type d -name 'viv-%d-*' 2>/dev/null", (int)pid);
    FILE *f = popen(cmd, "r");
    int n = 0;
    while (f && fgets(line, sizeof line, f)) n++;
    if (f) pclose(f);
    return n;
}

static void test_interrupted_viv_kills_job_and_cleans_up(void) {
    char marker[32], code[96];
    snprintf(marker, sizeof marker, "%d.625", 300000 + (int)getpid() % 100000);
    snprintf(code, sizeof code, "( setsid sleep %s & ); sleep %s", marker, marker);
    struct job a;
    const char *args[] = {"run", "--tool", "shell", "--timeout-ms", "30000", "--code", code, NULL};
    job_start(&a, args);
    int started = 0;
    for (int i = 0; i < 100 && !started; i++) usleep(20000), started = host_process_with_marker(marker);
    int cgroups_during = cgroups_of(a.pid);
    kill(a.pid, SIGINT);
    job_finish(&a);
    int alive = host_process_with_marker(marker), cgroups_after = cgroups_of(a.pid);
    CHECK(started, "the job never started: %s", a.err);
    if (attack_path != PATH_COLD) { /* an interrupted client: the job must die with its connection */
        for (int i = 0; i < 100 && alive; i++) usleep(20000), alive = host_process_with_marker(marker);
        CHECK(!alive, "the job outlived its interrupted client");
        NOTE("vivd path: the job died with its client's connection");
        job_free(&a);
        return;
    }
    CHECK(WIFEXITED(a.status) && WEXITSTATUS(a.status) == 130, "viv exit status %d, want 130", a.status);
    CHECK(!alive, "the job outlived an interrupted viv");
    CHECK(cgroups_after == 0, "%d cgroups left behind (%d while running)", cgroups_after, cgroups_during);
    job_free(&a);
}

static void test_killed_supervisor_takes_the_job_down(void) {
    /* If viv itself dies (kill -9, OOM), nothing it started may live on. */
    char marker[32], code[96];
    snprintf(marker, sizeof marker, "%d.25", 600000 + (int)getpid() % 100000);
    snprintf(code, sizeof code, "( setsid sleep %s & ); sleep %s", marker, marker);
    struct job a;
    const char *args[] = {"run", "--json", "--tool", "shell", "--timeout-ms", "30000", "--code", code, NULL};
    job_start(&a, args);
    int started = 0;
    for (int i = 0; i < 50 && !started; i++) usleep(20000), started = host_process_with_marker(marker);
    kill(a.pid, SIGKILL);
    job_finish(&a);
    int alive = 1;
    for (int i = 0; i < 50 && alive; i++) usleep(20000), alive = host_process_with_marker(marker);
    CHECK(started, "the job never started: %s", a.err);
    CHECK(!alive, "the job's processes outlived a killed supervisor");
    if (attack_path != PATH_COLD) { /* the client was what died: its job went with its connection */
        NOTE("vivd path: a SIGKILLed client's job died with its connection");
        job_free(&a);
        return;
    }
    /* A SIGKILLed viv cannot remove its cgroups; the next job sweeps them. */
    struct job next;
    run_code(&next, "shell", "true", NULL);
    CHECK_RAN(&next);
    CHECK(cgroups_of(a.pid) == 0, "the killed viv's cgroups were not swept by the next job");
    job_free(&next);
    job_free(&a);
}

static void test_sql_tool_stays_a_query(void) {
    /* A query tool reads the database it was given and nothing else: no
     * programs, no other files read or written (the sqlite3 shell's fsdir,
     * readfile, writefile, edit and its dot-commands), no writes, no other
     * databases. Each attack must fail with a non-zero exit. */
    char db[128];
    snprintf(db, sizeof db, "/tmp/viv-sql-%d.db", (int)getpid());
    char cmd[256];
    snprintf(cmd, sizeof cmd, "python3 -c \"import sqlite3; c=sqlite3.connect('%s'); c.execute('create table t(a)'); c.execute('insert into t values(7)'); c.commit()\" && chmod 644 %s", db, db);
    CHECK(system(cmd) == 0, "could not create the test database");
    const char *attacks[] = {
        ".shell echo PWNED", ".system echo PWNED", ".output /work/out.txt\nselect 'PWNED';",
        "ATTACH DATABASE '/tmp/evil.db' AS e; create table e.x(a);", "select load_extension('/usr/lib/x86_64-linux-gnu/libz.so.1');",
        "insert into t values(8);", "pragma journal_mode=wal; delete from t;", ".read /etc/passwd", ".import /etc/passwd t",
        "select name, data from fsdir('/etc');", "select readfile('/etc/passwd');", "select readfile('/data/db.sqlite');",
        "select writefile('/work/w.txt', 'PWNED');", "select edit('PWNED', 'cat');", "VACUUM INTO '/tmp/copy.db';",
        ".trace /work/t.txt\nselect 'PWNED';", ".log /work/l.txt\nselect 'PWNED';", ".once /work/o.txt\nselect 'PWNED';",
        ".save /work/s.db", ".tables", "create temp table x(a);",
    };
    for (size_t i = 0; i < sizeof attacks / sizeof *attacks; i++) {
        struct job j;
        run_code(&j, "sql", attacks[i], (const char *const[]){"--db", db, NULL});
        CHECK_RAN(&j);
        int refused = jnum(&j, "exit_code") != 0 && strstr(jstr(&j, "stdout"), "PWNED") == NULL;
        char out[600];
        snprintf(out, sizeof out, "%.250s | %.250s", jstr(&j, "stdout"), jstr(&j, "stderr"));
        job_free(&j);
        if (!refused) {
            unlink(db);
            FAIL("'%s' was not refused: %s", attacks[i], out);
        }
    }
    struct job ok;
    run_code(&ok, "sql", "select a from t;", (const char *const[]){"--db", db, NULL});
    unlink(db);
    CHECK_RAN(&ok);
    CHECK(strcmp(jstr(&ok, "stdout"), "a\n7\n") == 0, "the database changed or the query failed: %s %s", jstr(&ok, "stdout"), jstr(&ok, "stderr"));
    job_free(&ok);
}
