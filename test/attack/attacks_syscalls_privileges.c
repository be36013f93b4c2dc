/* attacks_syscalls_privileges.c - part of attack_tests.c (one translation unit with its
 * runners and harness): syscalls and privileges. */

/* ------------------------------------------------------------ syscalls */

/* Each attack prints "name ret errno"; every one must fail with EPERM
 * (or ENOSYS for clone3), never return success. */
static void check_syscalls_denied(const char *calls, const char *expect) {
    char code[4096];
    snprintf(code, sizeof code, "%s%s", PY_SYSCALL, calls);
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    const char *out = jstr(&j, "stdout");
    CHECK(*out, "no output: %s", jstr(&j, "stderr"));
    char *copy = strdup(out);
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64];
        long ret;
        int err;
        if (sscanf(line, "%63s %ld %d", name, &ret, &err) != 3) continue;
        if (ret != -1 || (err != EPERM && !(expect && strstr(expect, name) && err == ENOSYS))) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s returned %ld errno %d", name, ret, err);
            free(copy);
            job_free(&j);
            FAIL("%s", msg);
        }
    }
    free(copy);
    job_free(&j);
}

static void test_ptrace_and_process_vm(void) {
    check_syscalls_denied(
        "print('ptrace_traceme', sc(101, 0, 0, 0, 0))\n"
        "print('ptrace_attach_init', sc(101, 16, 1, 0, 0))\n"
        "print('process_vm_readv', sc(310, 1, 0, 0, 0, 0, 0))\n"
        "print('kcmp', sc(312, 1, os.getpid(), 0, 0, 0))\n", NULL);
}

static void test_mount_family(void) {
    check_syscalls_denied(
        "print('mount', sc(165, 0, 0, 0, 0, 0))\n"
        "print('umount2', sc(166, 0, 2))\n"
        "print('pivot_root', sc(155, 0, 0))\n"
        "print('chroot', sc(161, 0))\n"
        "print('open_tree', sc(428, -100, 0, 0))\n"
        "print('fsopen', sc(430, 0, 0))\n"
        "print('move_mount', sc(429, 0, 0, 0, 0, 0))\n", NULL);
}

static void test_unshare_setns_nested_userns(void) {
    /* clone(CLONE_NEWUSER) is checked too: if it ever succeeded, the child exits at once. */
    check_syscalls_denied(
        "print('unshare_user', sc(272, 0x10000000))\n"
        "print('unshare_mount', sc(272, 0x00020000))\n"
        "fd = os.open('/proc/self/ns/net', os.O_RDONLY)\n"
        "print('setns', sc(308, fd, 0))\n"
        "r = libc.syscall(ctypes.c_long(56), ctypes.c_long(0x10000000 | 17), ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0))\n"
        "if r == 0: os._exit(0)\n"
        "print('clone_newuser', r, ctypes.get_errno())\n"
        "print('clone3', sc(435, 0, 0))\n", "clone3");
}

static void test_nested_userns_capped_even_without_seccomp(void) {
    /* The jail also sets user.max_user_namespaces to 0 in the job's user
     * namespace, a second wall behind the seccomp filter. */
    struct job j;
    run_code(&j, "shell", "cat /proc/sys/user/max_user_namespaces", NULL);
    CHECK_RAN(&j);
    CHECK(strcmp(jstr(&j, "stdout"), "0\n") == 0, "max_user_namespaces inside: %s", jstr(&j, "stdout"));
    job_free(&j);
}

static void test_keyctl_bpf_perf_userfaultfd_iouring(void) {
    check_syscalls_denied(
        "print('keyctl', sc(250, 0, 0, 0, 0, 0))\n"
        "print('add_key', sc(248, 0, 0, 0, 0, 0))\n"
        "print('request_key', sc(249, 0, 0, 0, 0))\n"
        "print('bpf', sc(321, 0, 0, 0))\n"
        "print('perf_event_open', sc(298, 0, 0, -1, -1, 0))\n"
        "print('userfaultfd', sc(323, 0))\n"
        "print('io_uring_setup', sc(425, 1, 0))\n"
        "print('io_uring_enter', sc(426, 0, 0, 0, 0, 0, 0))\n", NULL);
}

static void test_kexec_and_modules(void) {
    check_syscalls_denied(
        "print('kexec_load', sc(246, 0, 0, 0, 0))\n"
        "print('kexec_file_load', sc(320, 0, 0, 0, 0, 0))\n"
        "print('init_module', sc(175, 0, 0, 0))\n"
        "print('finit_module', sc(313, 0, 0, 0))\n"
        "print('delete_module', sc(176, 0, 0))\n"
        "print('reboot', sc(169, 0, 0, 0, 0))\n"
        "print('swapon', sc(167, 0, 0))\n"
        "print('settimeofday', sc(164, 0, 0))\n"
        "print('open_by_handle_at', sc(304, 0, 0, 0))\n"
        "print('iopl', sc(172, 3))\n", NULL);
}

/* A job reaches no filesystem but its own and writes no /proc file of a
 * process outside its own tree: every process it can see that is not its
 * own descendant (our init; a zygote's pid 1; a session's keeper) refuses
 * root, cwd, fd, environ, mem, maps and its writable knobs. (Its
 * mountinfo stays readable, as the kernel has it for every process: the
 * mount table of the jail, the same one for every job.) The same
 * probes against its own child prove they work. A file planted through any
 * such process would be seen by the next job: the next job looks. */
static void test_foreign_processes_unreachable(void) {
    struct job j;
    run_code(&j, "python",
             "import os, subprocess\n"
             "kid = subprocess.Popen(['sleep', '30'])\n"
             "def ppid(p):\n"
             "    return int(open('/proc/%s/stat' % p).read().rsplit(')', 1)[1].split()[1])\n"
             "mine = {os.getpid()}\n"
             "for p in sorted(int(p) for p in os.listdir('/proc') if p.isdigit()):\n"
             "    q = p\n"
             "    while q > 1 and q not in mine: q = ppid(q)\n"
             "    if q in mine: mine.add(p)\n"
             "def probe(p):\n"
             "    got = []\n"
             "    for what in ('root', 'cwd', 'fd'):\n"
             "        try: os.listdir('/proc/%d/%s' % (p, what)); got.append(what)\n"
             "        except OSError: pass\n"
             "    for what in ('environ', 'mem', 'maps', 'stack', 'syscall'):\n"
             "        try: open('/proc/%d/%s' % (p, what), 'rb').read(1); got.append(what)\n"
             "        except OSError: pass\n"
             "    for what, val in (('oom_score_adj', '1000'), ('autogroup', '19'), ('clear_refs', '1'), ('timerslack_ns', '1')):\n"
             "        try:\n"
             "            with open('/proc/%d/%s' % (p, what), 'w') as f: f.write(val)\n"
             "            got.append('w:' + what)\n"
             "        except OSError: pass\n"
             "    for d in ('tmp', 'work'):\n"
             "        try:\n"
             "            open('/proc/%d/root/%s/planted-by-a-job' % (p, d), 'w').write('x'); got.append('planted:' + d)\n"
             "        except OSError: pass\n"
             "    return got\n"
             "others = [p for p in (int(p) for p in os.listdir('/proc') if p.isdigit()) if p not in mine]\n"
             "reached = {p: probe(p) for p in others}\n"
             "print('OTHERS', len(others), 'REACHED', {p: g for p, g in reached.items() if g})\n"
             "own = probe(kid.pid)\n"
             "print('OWN_CHILD', 'root' in own and 'fd' in own and 'w:oom_score_adj' in own)\n"
             "kid.kill()\n",
             NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "REACHED {}");
    CHECK_OUT_HAS(&j, "OWN_CHILD True");
    int others = -1;
    const char *o = strstr(jstr(&j, "stdout"), "OTHERS ");
    CHECK(o && sscanf(o, "OTHERS %d", &others) == 1 && others >= 1, "no process outside the job was probed: %s", jstr(&j, "stdout"));
    NOTE("%d processes outside the job's tree probed", others);
    job_free(&j);
    struct job k;
    run_code(&k, "python",
             "import os\n"
             "print('SEEN', [d + '/' + f for d in ('/tmp', '/work') for f in os.listdir(d) if 'planted' in f])\n",
             NULL);
    CHECK_RAN(&k);
    CHECK_OUT_HAS(&k, "SEEN []");
    job_free(&k);
}

/* mknod is allowed (FIFOs are ordinary; sessions pass each call through
 * them), but no device node can be made: the job holds no CAP_MKNOD, and a
 * node it did make would be useless on its nodev mounts. */
static void test_device_nodes_cannot_be_made(void) {
    struct job j;
    run_code(&j, "python",
             "import os, stat\n"
             "for d in ('/tmp', '/work'):\n"
             "    for kind, dev in (('chr', stat.S_IFCHR | 0o666), ('blk', stat.S_IFBLK | 0o666)):\n"
             "        try:\n"
             "            os.mknod(d + '/node-' + kind, dev, os.makedev(1, 3)); print('MADE', d, kind)\n"
             "        except OSError as e:\n"
             "            print('denied', d, kind, e.errno)\n"
             "os.mkfifo('/tmp/fifo'); print('fifo', stat.S_ISFIFO(os.stat('/tmp/fifo').st_mode))\n",
             NULL);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "MADE") == NULL, "a device node was made: %s", jstr(&j, "stdout"));
    CHECK_OUT_HAS(&j, "denied /tmp chr 1\ndenied /tmp blk 1\ndenied /work chr 1\ndenied /work blk 1\nfifo True");
    job_free(&j);
}

static void test_x32_abi_killed(void) {
    struct job j;
    run_code(&j, "python", PY_SYSCALL "print('before', flush=True)\nprint('x32', sc(0x40000000 | 39))\n", NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "before");
    CHECK(strstr(jstr(&j, "stdout"), "x32") == NULL, "an x32 syscall returned: %s", jstr(&j, "stdout"));
    CHECK(jnum(&j, "signal") == SIGSYS, "expected death by SIGSYS, got signal %g exit %g", jnum(&j, "signal"), jnum(&j, "exit_code"));
    job_free(&j);
}

/* mov eax, 20 (i386 getpid); int 0x80; ret */
static const unsigned char int80_getpid[] = {0xb8, 0x14, 0, 0, 0, 0xcd, 0x80, 0xc3};

/* What this host does with `int 0x80` from a 64-bit process, outside any jail:
 * 0 when the kernel runs it (the 32-bit entry is reachable), else the signal
 * the host itself delivers (SIGSEGV on kernels built without IA32 emulation
 * or booted with ia32_emulation=0). */
static int host_int80_signal(void) {
    pid_t pid = fork();
    if (pid == 0) {
        void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED) _exit(3);
        memcpy(page, int80_getpid, sizeof int80_getpid);
        ((long (*)(void))page)();
        _exit(0);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    if (WIFSIGNALED(st)) return WTERMSIG(st);
    return WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void test_int80_abi_killed(void) {
    int host = host_int80_signal();
    if (host < 0) SKIP("could not probe what the host does with int 0x80 (no RWX page?)");
    /* Where the kernel would run it, the jail's filter must kill it (SIGSYS);
     * where the host itself faults, the job must die of that same fault. */
    int want = host == 0 ? SIGSYS : host;
    char code[1024];
    int n = snprintf(code, sizeof code,
                     "import ctypes, mmap\n"
                     "buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
                     "buf.write(bytes([");
    for (size_t i = 0; i < sizeof int80_getpid; i++) n += snprintf(code + n, sizeof code - (size_t)n, "%s%d", i ? ", " : "", int80_getpid[i]);
    snprintf(code + n, sizeof code - (size_t)n,
             "]))\n"
             "addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))\n"
             "f = ctypes.CFUNCTYPE(ctypes.c_long)(addr)\n"
             "print('before', flush=True)\n"
             "print('int80 returned', f())\n");
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "before");
    CHECK(strstr(jstr(&j, "stdout"), "int80 returned") == NULL, "int 0x80 returned: %s", jstr(&j, "stdout"));
    CHECK(jnum(&j, "signal") == want, "host %s, so expected signal %d, got signal %g: %s",
          host == 0 ? "runs int 0x80" : "faults on int 0x80", want, jnum(&j, "signal"), jstr(&j, "stderr"));
    if (host == 0) NOTE("host runs int 0x80; the jail kills it with SIGSYS");
    else NOTE("the host itself faults on int 0x80 (signal %d); so does the jail", host);
    job_free(&j);
}

static void test_tiocsti_blocked(void) {
    /* TIOCSTI with and without high bits set in the request word; and no tty to aim at. */
    struct job j;
    run_code(&j, "python",
             PY_SYSCALL
             "c = ctypes.c_char(b'x')\n"
             "for name, req in [('plain', 0x5412), ('highbit', 0x5412 | (1 << 32)), ('tioclinux', 0x541C | (1 << 40))]:\n"
             "    ctypes.set_errno(0)\n"
             "    r = libc.syscall(ctypes.c_long(16), ctypes.c_long(0), ctypes.c_ulong(req), ctypes.byref(c))\n"
             "    print(name, r, ctypes.get_errno())\n"
             "try:\n"
             "    open('/dev/tty'); print('TTY OPEN')\n"
             "except OSError as e:\n"
             "    print('no tty', e.errno)\n",
             NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "plain -1 1");
    CHECK_OUT_HAS(&j, "highbit -1 1");
    CHECK_OUT_HAS(&j, "tioclinux -1 1");
    CHECK_OUT_HAS(&j, "no tty");
    job_free(&j);
}

static void test_flock_denied(void) {
    check_syscalls_denied(
        "fd = os.open('/usr/bin/python3', os.O_RDONLY)\n"
        "print('flock_shared_file', sc(73, fd, 2 | 4))\n", NULL);
}

/* ------------------------------------------------------------ privileges */

static void test_capabilities_and_nnp(void) {
    struct job j;
    run_code(&j, "shell", "grep -E '^(Cap|NoNewPrivs|Seccomp:|Uid|Gid|Groups)' /proc/self/status; cat /proc/self/uid_map", NULL);
    CHECK_RAN(&j);
    const char *out = jstr(&j, "stdout");
    const char *caps[] = {"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000",
                          "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000",
                          "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2",
                          "Uid:\t1000\t1000\t1000\t1000", "Gid:\t1000\t1000\t1000\t1000"};
    for (size_t i = 0; i < sizeof caps / sizeof *caps; i++)
        CHECK(strstr(out, caps[i]) != NULL, "missing '%s' in: %s", caps[i], out);
    unsigned inside = 0, outside = 0, count = 0;
    const char *map = strstr(out, "      1000");
    CHECK(map && sscanf(map, "%u %u %u", &inside, &outside, &count) == 3, "no uid_map line: %s", out);
    CHECK(inside == 1000 && count == 1 && outside != 0, "uid map %u -> %u (%u): jobs must never be host root", inside, outside, count);
    job_free(&j);
}

static void test_setuid_binaries_powerless(void) {
    struct job j;
    run_code(&j, "shell",
             "ls -l /usr/bin/su | cut -c1-10; su -c 'id -u' root </dev/null 2>&1; echo su=$?; "
             "python3 -c 'import os; print(\"nosuid\", bool(os.statvfs(\"/usr\").f_flag & os.ST_NOSUID))'; id -u",
             NULL);
    CHECK_RAN(&j);
    const char *out = jstr(&j, "stdout");
    if (strstr(out, "No such file")) SKIP("no /usr/bin/su on this host");
    CHECK(strstr(out, "-rwsr") != NULL, "su is not setuid on the host, the test proves nothing: %s", out);
    CHECK(strstr(out, "su=0") == NULL, "su succeeded: %s", out);
    CHECK(strstr(out, "nosuid True") != NULL, "/usr is not nosuid: %s", out);
    CHECK(strstr(out, "\n0\n") == NULL && strstr(out, "1000\n") != NULL, "uid 0 reached: %s", out);
    job_free(&j);
}

static void test_init_not_inspectable(void) {
    /* pid 1 is the jail's init (non-dumpable): its memory, environment and fds are out of reach. */
    char code[] =
        "import os\n"
        "for p in ['/proc/1/mem', '/proc/1/environ', '/proc/1/fd']:\n"
        "    try:\n"
        "        (os.listdir(p) if p.endswith('fd') else open(p, 'rb').read(16)); print(p, 'OPEN')\n"
        "    except OSError as e:\n"
        "        print(p, 'DENIED', e.errno)\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "OPEN") == NULL, "init inspectable: %s", jstr(&j, "stdout"));
    job_free(&j);
}

static void test_no_leaked_fds(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/viv-leak-%d", (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT, 0600); /* deliberately inheritable */
    int fd2 = dup2(fd, 37);
    struct job j;
    run_code(&j, "python",
             "import os\n"
             "leaked = []\n"
             "for f in range(3, 1024):\n"
             "    try:\n"
             "        os.fstat(f); leaked.append(f)\n"
             "    except OSError:\n"
             "        pass\n"
             "print('FDS', leaked)\n",
             NULL);
    close(fd);
    close(fd2);
    unlink(path);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "FDS []");
    job_free(&j);
}

static void test_clean_environment(void) {
    setenv("VIV_TEST_SECRET", "hunter2", 1);
    struct job j;
    run_code(&j, "python", "import os\nprint(sorted(os.environ.items()))\n", NULL);
    unsetenv("VIV_TEST_SECRET");
    CHECK_RAN(&j);
    const char *out = jstr(&j, "stdout");
    CHECK(strstr(out, "hunter2") == NULL && strstr(out, "VIV_TEST_SECRET") == NULL, "host env leaked: %s", out);
    CHECK(strstr(out, "('HOME', '/work')") != NULL && strstr(out, "('PATH', '/usr/bin:/bin')") != NULL, "policy env missing: %s", out);
    job_free(&j);
}

static void test_no_controlling_terminal_and_own_session(void) {
    struct job j;
    run_code(&j, "python",
             "import os\n"
             "try:\n"
             "    os.open('/dev/tty', os.O_RDWR); print('TTY OPEN')\n"
             "except OSError as e:\n"
             "    print('no tty', e.errno)\n"
             "print('SID', os.getsid(0) == os.getpid(), 'PGID', os.getpgid(0) == os.getpid(), 'PID', os.getpid(), 'PPID', os.getppid())\n",
             NULL);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "no tty 6") || strstr(jstr(&j, "stdout"), "no tty 2"),
          "a terminal opened, or an odd error: %s", jstr(&j, "stdout")); /* ENXIO (no controlling terminal) or ENOENT */
    CHECK_OUT_HAS(&j, "SID True PGID True");
    /* cold: our init is pid 1 and the job pid 2; a zygote's request child
     * is pid 2 under a parent outside its namespace (0); a session's
     * interpreter runs under the session's keeper */
    const char *ids = strstr(jstr(&j, "stdout"), "PID ");
    NOTE("%.40s", ids ? ids : "");
    if (attack_path == PATH_COLD) CHECK_OUT_HAS(&j, "PID 2 PPID 1");
    job_free(&j);
}
