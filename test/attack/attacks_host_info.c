/* attacks_host_info.c - part of attack_tests.c (one translation unit with its
 * runners and harness): what a job learns about the host, and CPU fairness. */

/* ------------------------------------------------------------ what a job learns about the host */


/* Read a host file's first line (no newline) into buf; "" if unreadable. */
static void host_first_line(const char *path, char *buf, size_t n) {
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (!fgets(buf, (int)n, f)) buf[0] = 0;
    fclose(f);
    buf[strcspn(buf, "\n")] = 0;
}

static void test_proc_shows_no_host_cgroup_cmdline_or_boot_id(void) {
    /* The host side first: which cgroup layout, and the values a job must not see. */
    bool v2_only = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
    char host_cmdline[4096], host_boot_id[64];
    host_first_line("/proc/cmdline", host_cmdline, sizeof host_cmdline);
    host_first_line("/proc/sys/kernel/random/boot_id", host_boot_id, sizeof host_boot_id);
    struct job j;
    run_code(&j, "shell",
             "cat /proc/self/cgroup; echo ===; cat /proc/cmdline; echo ===; cat /proc/sys/kernel/random/boot_id; echo ===; "
             "echo x > /proc/cmdline 2>/dev/null && echo CMDLINE-WRITTEN; echo ===", NULL);
    CHECK_RAN(&j);
    char *out = strdup(jstr(&j, "stdout"));
    char *part[5] = {0};
    int n = 0;
    for (char *p = out; n < 5 && p; n++) {
        part[n] = p;
        char *sep = strstr(p, "===\n");
        if (sep) *sep = 0, p = sep + 4;
        else p = NULL;
    }
    CHECK(n == 5, "unexpected output: %s / %s", jstr(&j, "stdout"), jstr(&j, "stderr"));
    /* every hierarchy's path is the namespace root: no host cgroup names */
    int lines = 0;
    for (char *l = strtok(part[0], "\n"); l; l = strtok(NULL, "\n"), lines++) {
        size_t len = strlen(l);
        CHECK(len >= 2 && strcmp(l + len - 2, ":/") == 0, "/proc/self/cgroup shows a path: '%s'", l);
    }
    CHECK(lines > 0, "no /proc/self/cgroup lines");
    CHECK(strcmp(part[1], "\n") == 0, "/proc/cmdline is not the fixed empty line: '%s'", part[1]);
    CHECK(!*host_cmdline || !strstr(part[1], host_cmdline), "the host's command line is visible");
    CHECK(strcmp(part[2], "00000000-0000-0000-0000-000000000000\n") == 0, "boot_id: '%s'", part[2]);
    CHECK(!*host_boot_id || !strstr(part[2], host_boot_id), "the host's boot id is visible");
    CHECK(!strstr(part[3], "CMDLINE-WRITTEN"), "the job could write over its /proc/cmdline mask");
    free(out);
    job_free(&j);
    NOTE("cgroup %s, %s: /proc/self/cgroup at the root in %d hierarchies", v2_only ? "v2" : "v1/hybrid",
         geteuid() == 0 ? "root (job in its own cgroup)" : "not root", lines);
}

static void test_prctl_memory_merge_denied(void) {
    /* PR_SET_MEMORY_MERGE (67) opts a process into KSM merging, a timing side
     * channel between tenants; its high-bit aliases too. Other prctl options
     * must still work (PR_SET_NO_NEW_PRIVS, PR_GET_DUMPABLE). */
    struct job j;
    run_code(&j, "python",
             PY_SYSCALL
             "print('merge', sc(157, 67, 1, 0, 0, 0))\n"
             "print('merge_highbit', sc(157, 67 | (1 << 32), 1, 0, 0, 0))\n"
             "print('nnp', sc(157, 38, 1, 0, 0, 0))\n"
             "print('dumpable', sc(157, 3, 0, 0, 0, 0))\n", NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "merge -1 1\n");
    CHECK_OUT_HAS(&j, "merge_highbit -1 1\n");
    CHECK_OUT_HAS(&j, "nnp 0 0\n");
    CHECK(strstr(jstr(&j, "stdout"), "dumpable -1") == NULL, "PR_GET_DUMPABLE failed: %s", jstr(&j, "stdout"));
    job_free(&j);
}

static void test_limits_reported(void) {
    struct job j;
    run_code(&j, "shell", "true", NULL);
    CHECK_RAN(&j);
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(j.json, "limits_not_applied");
    CHECK(cJSON_IsArray(l), "limits_not_applied missing: %s", j.out);
    /* On this kind of host (root, cgroup v1 or v2 memory+pids) everything applies;
     * elsewhere each missing limit must be named. */
    cJSON *it;
    cJSON_ArrayForEach(it, l) CHECK(cJSON_IsString(it) && strstr(it->valuestring, "cgroup"), "odd note: %s", j.out);
    if (geteuid() == 0 && access("/sys/fs/cgroup/pids", F_OK) == 0)
        CHECK(cJSON_GetArraySize(l) == 0, "root on a cgroup host, but: %s", j.out);
    job_free(&j);
}

static void test_pids_cgroup_or_rlimit_binds_threads(void) {
    /* Threads count as tasks: a thread bomb stops at the pids limit too. */
    char code[] =
        "import threading, time\n"
        "ts = []\n"
        "try:\n"
        "    for i in range(1000):\n"
        "        t = threading.Thread(target=time.sleep, args=(5,), daemon=True); t.start(); ts.append(t)\n"
        "except RuntimeError as e:\n"
        "    print('STOPPED', len(ts))\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    int n = -1;
    const char *s = strstr(jstr(&j, "stdout"), "STOPPED");
    CHECK(s && sscanf(s, "STOPPED %d", &n) == 1, "thread bomb not stopped: %s %s", jstr(&j, "stdout"), jstr(&j, "stderr"));
    CHECK(n < 64, "%d threads under a 64-task limit", n);
    job_free(&j);
}

/* The directory of this process's own cgroup for `controller` (v1), or in
 * the v2 hierarchy when controller is NULL; false when there is none. */
static bool own_cgroup_dir(const char *controller, char *dir, size_t len) {
    char line[4096], mnt[1024] = "", path[1024] = "";
    FILE *f = fopen("/proc/self/mountinfo", "re");
    while (f && fgets(line, sizeof line, f)) {
        char mp[1024], fs[64], opts[1024];
        const char *dash = strstr(line, " - ");
        if (!dash || sscanf(line, "%*s %*s %*s %*s %1023s", mp) != 1 ||
            sscanf(dash + 3, "%63s %*s %1023s", fs, opts) != 2)
            continue;
        if (!controller && strcmp(fs, "cgroup2") == 0) snprintf(mnt, sizeof mnt, "%s", mp);
        for (char *t = strtok(opts, ","); controller && strcmp(fs, "cgroup") == 0 && t; t = strtok(NULL, ","))
            if (strcmp(t, controller) == 0) snprintf(mnt, sizeof mnt, "%s", mp);
    }
    if (f) fclose(f);
    f = fopen("/proc/self/cgroup", "re");
    while (f && fgets(line, sizeof line, f)) { /* "N:controllers:path" */
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = 0;
        if (!controller && c1[1] == 0) snprintf(path, sizeof path, "%s", c2 + 1);
        for (char *t = strtok(c1 + 1, ","); controller && t; t = strtok(NULL, ","))
            if (strcmp(t, controller) == 0) snprintf(path, sizeof path, "%s", c2 + 1);
    }
    if (f) fclose(f);
    if (!mnt[0] || !path[0]) return false;
    snprintf(dir, len, "%s%s", mnt, strcmp(path, "/") == 0 ? "" : path);
    return true;
}

/* What the host offers this user for a job's CPU: a cpu controller it can
 * make job cgroups under ("cgroup v2 cpu", "cgroup v1 cpu"), or NULL. With
 * `accounting`, a cgroup that counts CPU time instead (every v2 cgroup does
 * in cpu.stat; v1 has cpuacct). */
static const char *host_cpu_cgroup(bool accounting) {
    char dir[2100], path[2200], text[512] = " ";
    if (own_cgroup_dir(NULL, dir, sizeof dir) && access(dir, W_OK) == 0) {
        snprintf(path, sizeof path, "%s/cgroup.controllers", dir);
        FILE *f = fopen(path, "re");
        size_t n = f ? fread(text + 1, 1, sizeof text - 3, f) : 0;
        if (f) fclose(f);
        strcpy(text + 1 + n, " ");
        for (char *c = text; *c; c++)
            if (*c == '\n') *c = ' ';
        /* the jail takes v2 when it offers memory and pids */
        if (strstr(text, " memory ") && strstr(text, " pids ")) {
            if (accounting) return "cgroup v2 cpu.stat";
            if (strstr(text, " cpu ")) return "cgroup v2 cpu";
        }
    }
    const char *v1 = accounting ? "cpuacct" : "cpu";
    if (own_cgroup_dir(v1, dir, sizeof dir) && access(dir, W_OK) == 0)
        return accounting ? "cgroup v1 cpuacct" : "cgroup v1 cpu";
    return NULL;
}

/* A built-in policy with one limit changed, as a policy file (path returned). */
static char *write_policy_with_limit(const char *tool, const char *key, long value) {
    cJSON *p = editable_policy(tool);
    if (!p) return NULL;
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(p, "limits"), key, cJSON_CreateNumber((double)value));
    char name[96];
    snprintf(name, sizeof name, "%s-limit-test", tool); /* python-*: the vivd paths serve it warm */
    cJSON_ReplaceItemInObject(p, "name", cJSON_CreateString(name));
    char *out = cJSON_Print(p);
    cJSON_Delete(p);
    static char path[192];
    snprintf(path, sizeof path, "/tmp/viv-policy-%s-%s-%ld-%d.json", tool, key, value, (int)getpid());
    put_file(path, out);
    free(out);
    return path;
}

/* Is `needle` in one of the job's limits_not_applied notes? */
static bool note_names(const struct job *j, const char *needle) {
    const cJSON *it, *l = cJSON_GetObjectItemCaseSensitive(j->json, "limits_not_applied");
    cJSON_ArrayForEach(it, l) if (cJSON_IsString(it) && strstr(it->valuestring, needle)) return true;
    return false;
}

/* A fixed amount of work for the job that shares the CPU; its share is the
 * CPU time it got per wall-clock ms. */
#define FIXED_LOOP "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done"

static double share_of(const struct job *j) {
    double wall = jnum(j, "wall_ms");
    return wall > 0 ? jnum(j, "cpu_ms") / wall : 0;
}

static void test_setsid_spinners_get_one_share(void) {
    /* Each setsid() makes a session, and with it an autogroup: without a cpu
     * cgroup of its own, a job of N such spinners has N shares of the CPU
     * against another job's one. With one, it has one share in all. */
    enum { SPINNERS = 10 };
    const char *controller = host_cpu_cgroup(false);
    char marker[40], hog[320];
    snprintf(marker, sizeof marker, "spin%d", 700000 + (int)getpid() % 100000);
    snprintf(hog, sizeof hog,
             "for i in $(seq %d); do setsid sh -c 'while :; do :; done # %s' & done; sleep 30",
             SPINNERS, marker);
    if (!controller) {
        struct job j;
        run_code(&j, "shell", "true", NULL);
        CHECK_RAN(&j);
        CHECK(note_names(&j, "cgroup cpu"), "no cpu controller here, yet not named: %s", j.out);
        NOTE("no cgroup cpu controller for this user: the job names it in limits_not_applied");
        job_free(&j);
        return;
    }
    /* Load from outside the test moves both measurements; the guarantee's
     * failure is a ratio near 1/11 or 2/11 every time. So a low ratio is
     * measured again, up to three times in all, until one reaches it. */
    double share_alone = 0, share_beside = 0, ratio = 0;
    struct job a = {0}, b = {0};
    for (int attempt = 0; attempt < 3 && ratio < 0.4; attempt++) {
        if (attempt) job_free(&a), job_free(&b);
        /* The baseline: the fixed loop's share of the CPU on this host now. */
        struct job alone;
        run_code(&alone, "shell", FIXED_LOOP, NULL);
        CHECK_RAN(&alone);
        share_alone = share_of(&alone);
        job_free(&alone);

        const char *args[] = {"run", "--json", "--tool", "shell", "--timeout-ms", "30000", "--code", hog, NULL};
        job_start(&a, args);
        int started = 0;
        for (int i = 0; i < 250 && !started; i++) usleep(20000), started = host_process_with_marker(marker);
        usleep(200000); /* the rest of the spinners follow within a few ms */
        run_code(&b, "shell", FIXED_LOOP, NULL);
        kill(a.pid, SIGINT); /* the hog only lives while the other job runs */
        job_finish(&a);
        CHECK(started, "the spinners never started: %s", a.err);
        CHECK_RAN(&b);
        if (attack_path == PATH_COLD) {
            CHECK(a.json && note_names(&a, "cgroup") == false, "the hog's limits were not all applied: %s", a.out);
        } else { /* an interrupted client gets no answer: a job of the same tool through the same door tells */
            struct job probe;
            run_code(&probe, "shell", "true", NULL);
            CHECK(probe.json && note_names(&probe, "cgroup") == false, "the limits were not all applied: %s", probe.out);
            job_free(&probe);
        }
        share_beside = share_of(&b), ratio = share_alone > 0 ? share_beside / share_alone : 0;
    }
    /* Two jobs of equal weight: the fixed loop keeps at least about half of
     * what it gets alone (more on several CPUs). Ten autogroups against its
     * one would leave it 1/11 of that on one CPU, 2/11 on two. */
    CHECK(ratio >= 0.4, "beside %d setsid spinners the other job got %.2f of a CPU, alone %.2f (ratio %.2f)",
          SPINNERS, share_beside, share_alone, ratio);
    NOTE("%s: the other job's CPU share %.2f alone, %.2f beside %d setsid spinners (ratio %.2f)", controller,
         share_alone, share_beside, SPINNERS, ratio);
    job_free(&a);
    job_free(&b);
}

/* The same budget for python jobs, which the vivd paths serve warm: a
 * zygote request's tree is held to the policy's cpu_ms as a cold job is; a
 * session is held to session_cpu_ms over its life (the session is lost). */
static void test_python_cpu_budget_holds_across_forks(void) {
    enum { BUDGET_MS = 1000 };
    const char *accounting = host_cpu_cgroup(true);
    bool session = attack_path == PATH_SESSION;
    if (!accounting && attack_path != PATH_ZYGOTE)
        SKIP("no cgroup CPU accounting for this user (the shell variant asserts what holds then)");
    char *policy = write_policy_with_limit("python", session ? "session_cpu_ms" : "cpu_ms", BUDGET_MS);
    CHECK(policy != NULL, "could not build the test policy");
    const char *spin =
        "import os, time\n"
        "for i in range(4):\n"
        "    if os.fork() == 0:\n"
        "        while True: pass\n"
        "time.sleep(8)\n"
        "print('OUTLIVED')\n";
    struct job j;
    const char *args[] = {"run", "--json", "--policy", policy, "--timeout-ms", "10000", "--code", spin, NULL};
    run_args(&j, args);
    CHECK_RAN(&j);
    double cpu = jnum(&j, "cpu_ms");
    CHECK(strstr(jstr(&j, "stdout"), "OUTLIVED") == NULL && jnum(&j, "signal") == SIGKILL && !jtrue(&j, "timed_out"),
          "four parallel spinners were not stopped at the CPU budget: %s", j.out);
    if (session) CHECK(jtrue(&j, "session_lost"), "the session outlived its CPU budget: %s", j.out);
    else CHECK(jtrue(&j, "cpu_exceeded"), "not reported as cpu_exceeded: %s", j.out);
    CHECK(cpu >= BUDGET_MS * 0.9 && cpu < BUDGET_MS * 1.6, "cpu_ms %.0f for a %d ms budget", cpu, BUDGET_MS);
    NOTE("four forked python spinners stopped at %.0f ms of CPU for a %d ms budget (%.0f ms wall)", cpu, BUDGET_MS,
         jnum(&j, "wall_ms"));
    job_free(&j);
}

static void test_cpu_budget_holds_across_forks(void) {
    /* RLIMIT_CPU is per process: a job that forks spinners in parallel would
     * spend N times it. The budget counts the job's processes together. */
    enum { BUDGET_MS = 1000 };
    const char *accounting = host_cpu_cgroup(true);
    char *policy = write_policy_with_limit("shell", "cpu_ms", BUDGET_MS);
    CHECK(policy != NULL, "could not build the test policy");
    /* Without accounting each spinner spends its own RLIMIT_CPU (2 s): fewer. */
    const char *spin = accounting ? "for i in 1 2 3 4; do (while :; do :; done) & done; wait; echo OUTLIVED"
                                  : "for i in 1 2; do (while :; do :; done) & done; wait; echo OUTLIVED";
    /* Without accounting the job needs 4 s of CPU: a deadline that a
     * loaded host (other suites beside this one) cannot turn into a false
     * failure; the job ends when its spinners do. */
    struct job j;
    const char *args[] = {"run", "--json", "--policy", policy, "--timeout-ms", accounting ? "10000" : "40000",
                          "--code", spin, NULL};
    run_args(&j, args);
    unlink(policy);
    CHECK_RAN(&j);
    double cpu = jnum(&j, "cpu_ms");
    if (!accounting) {
        /* Without cgroup CPU accounting only each process is held (to the
         * budget rounded up + 1 s): the job ends long before its deadline. */
        CHECK(note_names(&j, "cgroup cpu accounting"), "no CPU accounting here, yet not named: %s", j.out);
        CHECK(!jtrue(&j, "timed_out") && strstr(jstr(&j, "stdout"), "OUTLIVED"),
              "the spinners were not each stopped by RLIMIT_CPU: %s", j.out);
        NOTE("no cgroup CPU accounting for this user: named in limits_not_applied; each process stopped alone at RLIMIT_CPU (job %.0f ms CPU)", cpu);
        job_free(&j);
        return;
    }
    CHECK(jtrue(&j, "cpu_exceeded") && !jtrue(&j, "timed_out") && jnum(&j, "signal") == SIGKILL,
          "four parallel spinners were not stopped at the job's CPU budget: %s", j.out);
    CHECK(strstr(jstr(&j, "stdout"), "OUTLIVED") == NULL, "the job went on past its budget: %s", j.out);
    CHECK(cpu >= BUDGET_MS && cpu < BUDGET_MS * 1.5, "cpu_ms %.0f for a %d ms budget", cpu, BUDGET_MS);
    NOTE("%s: four parallel spinners stopped at %.0f ms of CPU for a %d ms budget (%.0f ms wall)", accounting,
         cpu, BUDGET_MS, jnum(&j, "wall_ms"));
    job_free(&j);
}
