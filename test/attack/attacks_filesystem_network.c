/* attacks_filesystem_network.c - part of attack_tests.c (one translation unit with its
 * runners and harness): the filesystem and the network. */

/* ------------------------------------------------------------ filesystem */

static void test_host_file_unreadable(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/viv-secret-%d", (int)getpid());
    put_file(path, "TOPSECRET-42");
    char code[1024];
    snprintf(code, sizeof code,
             "import os\n"
             "for p in ['%s', '/etc/shadow', '/root', '/home', '/var', '/proc/1/root%s']:\n"
             "    try:\n"
             "        print(p, 'READ', open(p).read()[:40] if not os.path.isdir(p) else os.listdir(p))\n"
             "    except Exception as e:\n"
             "        print(p, 'DENIED', type(e).__name__)\n",
             path, path);
    struct job j;
    run_code(&j, "python", code, NULL);
    unlink(path);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "TOPSECRET") == NULL, "host secret leaked: %s", jstr(&j, "stdout"));
    CHECK(strstr(jstr(&j, "stdout"), "READ") == NULL, "a host path was readable: %s", jstr(&j, "stdout"));
    CHECK_OUT_HAS(&j, "/etc/shadow DENIED");
    job_free(&j);
}

static void test_host_paths_not_writable(void) {
    char code[] =
        "for p in ['/usr/viv-pwned', '/viv-pwned', '/etc/viv-pwned', '/bin/viv-pwned', '/lib/viv-pwned', '/dev/viv-pwned', '/proc/viv-pwned']:\n"
        "    try:\n"
        "        open(p, 'w').write('x'); print(p, 'WROTE')\n"
        "    except OSError as e:\n"
        "        print(p, 'DENIED', e.errno)\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "WROTE") == NULL, "wrote outside its tmpfs: %s", jstr(&j, "stdout"));
    CHECK_OUT_HAS(&j, "/usr/viv-pwned DENIED 30"); /* EROFS */
    CHECK(access("/usr/viv-pwned", F_OK) != 0 && access("/viv-pwned", F_OK) != 0, "file appeared on the host");
    job_free(&j);
}

static void test_no_path_to_host_root(void) {
    char code[] =
        "import os\n"
        "print('ROOT', sorted(os.listdir('/')))\n"
        "print('SELFROOT', os.readlink('/proc/self/root'))\n"
        "try:\n"
        "    print('P1ROOT', os.readlink('/proc/1/root'))\n"
        "except OSError as e:\n"
        "    print('P1ROOT DENIED', e.errno)\n"
        "print('MOUNTS', 'oldroot' in open('/proc/self/mountinfo').read())\n"
        "print('CWD', os.getcwd(), os.path.exists('/oldroot'), os.path.exists('/newroot'))\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "SELFROOT /\n");
    CHECK(strstr(jstr(&j, "stdout"), "P1ROOT /\n") || strstr(jstr(&j, "stdout"), "P1ROOT DENIED"),
          "init's root: %s", jstr(&j, "stdout"));
    CHECK_OUT_HAS(&j, "MOUNTS False");
    CHECK_OUT_HAS(&j, "CWD /work False False");
    CHECK(strstr(jstr(&j, "stdout"), "'root'") == NULL && strstr(jstr(&j, "stdout"), "'home'") == NULL,
          "host directories visible at /: %s", jstr(&j, "stdout"));
    job_free(&j);
}

static void test_tmp_private_per_job(void) {
    struct job a, b;
    run_code(&a, "shell", "echo first > /tmp/viv-shared && echo here > /work/viv-shared && ls /tmp /work", NULL);
    run_code(&b, "shell", "ls -A /tmp /work; cat /tmp/viv-shared 2>&1", NULL);
    CHECK_RAN(&a);
    CHECK_RAN(&b);
    CHECK(strstr(jstr(&a, "stdout"), "viv-shared") != NULL, "job a could not write its tmpfs: %s", jstr(&a, "stderr"));
    CHECK(strstr(jstr(&b, "stdout"), "first") == NULL && strstr(jstr(&b, "stdout"), "viv-shared\n") == NULL,
          "job b saw job a's files: %s", jstr(&b, "stdout"));
    CHECK(access("/tmp/viv-shared", F_OK) != 0, "job's /tmp file appeared on the host");
    job_free(&a);
    job_free(&b);
}

static void test_symlink_escape(void) {
    /* A symlink in the job's tmpfs resolves inside the jail's root, never the host's. */
    char code[] =
        "ln -s /etc/passwd /tmp/p && cat /tmp/p; ln -s ../../../../../root /work/r && ls /work/r 2>&1; echo done";
    struct job j;
    run_code(&j, "shell", code, NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "sandbox:x:1000");
    CHECK(strstr(jstr(&j, "stdout"), "root:x:0:0:root:/root") == NULL, "host /etc/passwd read: %s", jstr(&j, "stdout"));
    job_free(&j);
}

static void test_proc_sys_and_sysrq_not_writable(void) {
    char code[] =
        "for p in ['/proc/sys/kernel/hostname', '/proc/sysrq-trigger', '/proc/sys/vm/drop_caches', '/proc/sys/user/max_user_namespaces']:\n"
        "    try:\n"
        "        open(p, 'w').write('1'); print(p, 'WROTE')\n"
        "    except OSError as e:\n"
        "        print(p, 'DENIED', e.errno)\n"
        "import socket; print('HOST', socket.gethostname())\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "WROTE") == NULL, "a kernel knob was writable: %s", jstr(&j, "stdout"));
    CHECK_OUT_HAS(&j, "HOST vivarium");
    job_free(&j);
}

/* ------------------------------------------------------------ network */

static int listen_on(int type, int *port) {
    int s = socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || getsockname(s, (struct sockaddr *)&a, &len)) abort();
    if (type == SOCK_STREAM && listen(s, 8)) abort();
    *port = ntohs(a.sin_port);
    return s;
}

static void test_tcp_to_host_listener(void) {
    int port, s = listen_on(SOCK_STREAM, &port);
    char code[512];
    snprintf(code, sizeof code,
             "import socket\n"
             "try:\n"
             "    c = socket.create_connection(('127.0.0.1', %d), timeout=2); c.send(b'x'); print('CONNECTED')\n"
             "except OSError as e:\n"
             "    print('BLOCKED', e.errno)\n", port);
    struct job j;
    run_code(&j, "python", code, NULL);
    int accepted = accept(s, NULL, NULL);
    close(s);
    CHECK_RAN(&j);
    CHECK(accepted < 0, "the host listener accepted a connection from the jail");
    CHECK_OUT_HAS(&j, "BLOCKED");
    job_free(&j);
}

static void test_udp_to_host(void) {
    int port, s = listen_on(SOCK_DGRAM, &port);
    char code[512];
    snprintf(code, sizeof code,
             "import socket\n"
             "try:\n"
             "    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b'leak', ('127.0.0.1', %d)); print('SENT')\n"
             "except OSError as e:\n"
             "    print('BLOCKED', e.errno)\n", port);
    struct job j;
    run_code(&j, "python", code, NULL);
    char buf[16];
    ssize_t got = recv(s, buf, sizeof buf, MSG_DONTWAIT);
    close(s);
    CHECK_RAN(&j);
    CHECK(got < 0, "the host received a datagram from the jail");
    CHECK_OUT_HAS(&j, "BLOCKED");
    job_free(&j);
}

static void test_raw_netlink_packet_sockets(void) {
    char code[] =
        "import socket\n"
        "for name, fam, typ in [('raw', socket.AF_INET, socket.SOCK_RAW), ('netlink', socket.AF_NETLINK, socket.SOCK_RAW),\n"
        "                       ('packet', 17, socket.SOCK_RAW), ('inet6', socket.AF_INET6, socket.SOCK_STREAM)]:\n"
        "    try:\n"
        "        socket.socket(fam, typ, 0); print(name, 'OPEN')\n"
        "    except OSError as e:\n"
        "        print(name, 'BLOCKED', e.errno)\n";
    struct job j;
    run_code(&j, "python", code, NULL);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "OPEN") == NULL, "a socket opened: %s", jstr(&j, "stdout"));
    CHECK_OUT_HAS(&j, "netlink BLOCKED 1");
    CHECK_OUT_HAS(&j, "raw BLOCKED 1");
    job_free(&j);
}

static void test_network_namespace_empty(void) {
    struct job j;
    run_code(&j, "shell", "cat /proc/net/dev; cat /proc/net/tcp", NULL);
    CHECK_RAN(&j);
    const char *out = jstr(&j, "stdout");
    CHECK(strstr(out, "lo:") != NULL, "no loopback line: %s", out);
    CHECK(strstr(out, "eth") == NULL && strstr(out, "ens") == NULL && strstr(out, "veth") == NULL,
          "host interfaces visible: %s", out);
    job_free(&j);
}
