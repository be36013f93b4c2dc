/* attacks_resources.c - part of attack_tests.c (one translation unit with its
 * runners and harness): resources: memory, processes, output, deadlines, CPU. */

/* ------------------------------------------------------------ resources */

static void test_fork_bomb_bounded(void) {
    char code[] =
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 100000:\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(30); os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print('STOPPED', n, e.errno)\n";
    struct job j;
    double t0 = mono_ms();
    run_code(&j, "python", code, (const char *const[]){"--timeout-ms", "4000", NULL});
    double took = mono_ms() - t0;
    CHECK_RAN(&j);
    const char *out = jstr(&j, "stdout");
    int n = -1, e = -1;
    const char *s = strstr(out, "STOPPED");
    CHECK(s && sscanf(s, "STOPPED %d %d", &n, &e) == 2, "fork never failed: %s %s", out, jstr(&j, "stderr"));
    CHECK(n <= 64 && e == EAGAIN, "forked %d children (policy pids 64), errno %d", n, e);
    CHECK(took < 15000, "the job took %.0f ms", took);
    job_free(&j);
}

static void test_shell_fork_bomb_killed_at_deadline(void) {
    struct job j;
    double t0 = mono_ms();
    /* The bomb starts from a subshell, and the job's own shell then spins
     * without forking: a shell whose fork fails exits ("Cannot fork"), so
     * the shell that must outlive the deadline never forks once the bomb
     * has reached the pids limit. */
    run_code(&j, "shell", "(bomb() { bomb | bomb & }; bomb); while :; do :; done",
             (const char *const[]){"--timeout-ms", "1500", NULL});
    double took = mono_ms() - t0;
    CHECK_RAN(&j);
    CHECK(jtrue(&j, "timed_out"), "a fork bomb with a sleeper outlived no deadline? %s", j.out);
    CHECK(took < 10000, "killing the bomb took %.0f ms", took);
    /* the machine still forks normally */
    struct job k;
    run_code(&k, "shell", "echo alive", NULL);
    CHECK_RAN(&k);
    CHECK(strcmp(jstr(&k, "stdout"), "alive\n") == 0, "next job: %s", k.out);
    job_free(&j);
    job_free(&k);
}

static void test_memory_bomb(void) {
    char code[] =
        "chunks = []\n"
        "try:\n"
        "    while True:\n"
        "        chunks.append(bytearray(32 << 20))\n"
        "except MemoryError:\n"
        "    print('MEMORYERROR', len(chunks) * 32)\n";
    struct job j;
    run_code(&j, "python", code, (const char *const[]){"--mem-mb", "256", NULL});
    CHECK_RAN(&j);
    int mb = -1;
    const char *s = strstr(jstr(&j, "stdout"), "MEMORYERROR");
    CHECK(s && sscanf(s, "MEMORYERROR %d", &mb) == 1, "no MemoryError: %s %s signal=%g", jstr(&j, "stdout"), jstr(&j, "stderr"), jnum(&j, "signal"));
    CHECK(mb <= 256, "allocated %d MiB under a 256 MiB limit", mb);
    CHECK(jnum(&j, "max_rss_kb") < 300 * 1024, "peak RSS %g kB", jnum(&j, "max_rss_kb"));
    job_free(&j);
}

static void test_disk_fill_bounded(void) {
    char code[] =
        "import os\n"
        "total = 0\n"
        "try:\n"
        "    i = 0\n"
        "    while total < (2 << 30):\n"
        "        with open('/tmp/f%d' % i, 'wb') as f:\n"
        "            for _ in range(8):\n"
        "                f.write(b'x' * (1 << 20)); total += 1 << 20\n"
        "        i += 1\n"
        "except OSError as e:\n"
        "    print('FULL', total >> 20, e.errno)\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    int mb = -1, e = -1;
    const char *s = strstr(jstr(&j, "stdout"), "FULL");
    CHECK(s && sscanf(s, "FULL %d %d", &mb, &e) == 2, "disk never filled: %s %s", jstr(&j, "stdout"), jstr(&j, "stderr"));
    CHECK(e == ENOSPC && mb <= 256, "wrote %d MiB (tmpfs 256), errno %d", mb, e);
    job_free(&j);
}

static void test_file_size_limit(void) {
    char code[] =
        "try:\n"
        "    with open('/work/big', 'wb') as f:\n"
        "        for i in range(200): f.write(b'x' * (1 << 20))\n"
        "    print('WROTE 200')\n"
        "except OSError as e:\n"
        "    import os; print('EFBIG' if e.errno == 27 else e, os.path.getsize('/work/big') >> 20)\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "EFBIG 64");
    job_free(&j);
}

static void test_output_flood_capped(void) {
    struct job j;
    run_code(&j, "shell", "yes flood & yes flood >&2", (const char *const[]){"--timeout-ms", "1000", NULL});
    CHECK_RAN(&j);
    CHECK(strlen(jstr(&j, "stdout")) == 1048576, "stdout kept %zu bytes, cap 1 MiB", strlen(jstr(&j, "stdout")));
    CHECK(strlen(jstr(&j, "stderr")) == 1048576, "stderr kept %zu bytes", strlen(jstr(&j, "stderr")));
    CHECK(jnum(&j, "stdout_dropped") > 0 && jnum(&j, "stderr_dropped") > 0, "drops not counted: %g %g",
          jnum(&j, "stdout_dropped"), jnum(&j, "stderr_dropped"));
    CHECK(jtrue(&j, "timed_out"), "flood not stopped at the deadline");
    job_free(&j);
}

static void test_busy_loop_deadline(void) {
    struct job j;
    run_code(&j, "python", "while True: pass", (const char *const[]){"--timeout-ms", "700", NULL});
    CHECK_RAN(&j);
    CHECK(jtrue(&j, "timed_out") && jnum(&j, "signal") == SIGKILL, "not killed: %s", j.out);
    CHECK(jnum(&j, "wall_ms") >= 700 && jnum(&j, "wall_ms") < 2000, "wall_ms %g for a 700 ms deadline", jnum(&j, "wall_ms"));
    /* counted at all, and no more than the wall time (a loaded machine may give the loop little CPU) */
    CHECK(jnum(&j, "cpu_ms") > 5 && jnum(&j, "cpu_ms") <= jnum(&j, "wall_ms") + 50,
          "cpu_ms %g (wall %g): the loop's CPU time was not counted", jnum(&j, "cpu_ms"), jnum(&j, "wall_ms"));
    job_free(&j);
}

static void sleepers_dead_after(const char *marker_arg, int deadline_case) {
    char code[512];
    /* a double-forked, setsid'd sleeper and a plain background one, both with a unique argument */
    snprintf(code, sizeof code,
             "( setsid sleep %s & ) ; sleep %s & echo started; %s",
             marker_arg, marker_arg, deadline_case ? "sleep 1000" : "sleep 0.3; exit 0");
    struct job j;
    run_code(&j, "shell", code, (const char *const[]){"--timeout-ms", "1000", NULL});
    int alive = host_process_with_marker(marker_arg);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "started");
    CHECK(jtrue(&j, "timed_out") == (deadline_case != 0), "timed_out should be %d: %s", deadline_case, j.out);
    CHECK(!alive, "a sleeper ('sleep %s') is still alive on the host after the job", marker_arg);
    job_free(&j);
}

static void test_sleepers_dead_after_deadline(void) {
    char m[32];
    snprintf(m, sizeof m, "%d.125", 700000 + (int)getpid() % 100000);
    sleepers_dead_after(m, 1);
}

static void test_sleepers_dead_after_exit(void) {
    char m[32];
    snprintf(m, sizeof m, "%d.375", 800000 + (int)getpid() % 100000);
    sleepers_dead_after(m, 0);
}
