/*
 * attacks_egress.c - the attacks on a policy with an egress allowlist.
 * Included by attack_tests.c (it uses that file's job runners), so each
 * runs in the cold, zygote and session paths; an egress policy never runs
 * on a zygote (its proxy belongs to one job), so there it runs cold.
 *
 * The remote side is test/attack/egress_server.py on loopback: HTTP, HTTPS
 * with a certificate made at start, and a spare port where nothing listens
 * ($EGRESS_SERVER names the script where the suite runs from elsewhere).
 * The policy lists them by address and, for the rebinding checks, by the
 * name "localhost", which resolves to 127.0.0.1 through /etc/hosts.
 */

static char *xasprintf_test(const char *fmt, const char *arg) {
    size_t n = strlen(fmt) + strlen(arg) + 1;
    char *s = malloc(n);
    snprintf(s, n, fmt, arg);
    return s;
}

static struct {
    pid_t pid;
    int to; /* its stdin: closing it ends the server */
    int http, https, spare;
    char policy[192];
    bool tried;
} eg;

static void egress_server_stop(void) {
    if (eg.pid > 0) {
        close(eg.to);
        kill(eg.pid, SIGTERM);
        waitpid(eg.pid, NULL, 0);
        eg.pid = 0;
    }
    if (eg.policy[0]) unlink(eg.policy);
}

/* Start the stand-in server and write the egress policy; false (and the
 * reason in why) when this host cannot. */
static bool egress_setup(char *why, size_t len) {
    if (eg.tried) {
        snprintf(why, len, "the egress server did not start earlier");
        return eg.pid > 0;
    }
    eg.tried = true;
    const char *script = getenv("EGRESS_SERVER") ? getenv("EGRESS_SERVER") : "test/attack/egress_server.py";
    if (access(script, R_OK) != 0 || access("/usr/bin/openssl", X_OK) != 0) {
        snprintf(why, len, "needs %s and /usr/bin/openssl", script);
        return false;
    }
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) abort();
    eg.pid = fork();
    if (eg.pid == 0) {
        dup2(in[0], 0), dup2(out[1], 1);
        execl("/usr/bin/python3", "python3", script, (char *)NULL);
        _exit(99);
    }
    close(in[0]), close(out[1]);
    eg.to = in[1];
    atexit(egress_server_stop);
    char line[128] = "";
    size_t n = 0;
    struct pollfd p = {out[0], POLLIN, 0};
    while (n < sizeof line - 1 && !memchr(line, '\n', n) && poll(&p, 1, 20000) == 1) {
        ssize_t r = read(out[0], line + n, sizeof line - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        line[n] = 0;
    }
    close(out[0]);
    if (sscanf(line, "PORTS %d %d %d", &eg.http, &eg.https, &eg.spare) != 3) {
        snprintf(why, len, "the egress server did not start (said '%s')", line);
        egress_server_stop();
        return false;
    }
    cJSON *pol = editable_policy("python");
    cJSON_ReplaceItemInObject(pol, "name", cJSON_CreateString("egress-py"));
    cJSON *fams = cJSON_GetObjectItem(cJSON_GetObjectItem(pol, "seccomp"), "socket_families");
    cJSON_AddItemToArray(fams, cJSON_CreateString("AF_INET"));
    cJSON *net = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(net, "egress");
    char e[64];
    int ports[] = {eg.http, eg.https};
    for (int i = 0; i < 2; i++) {
        snprintf(e, sizeof e, "127.0.0.1:%d", ports[i]);
        cJSON_AddItemToArray(list, cJSON_CreateString(e));
    }
    snprintf(e, sizeof e, "localhost:%d", eg.http); /* a name whose address is also listed */
    cJSON_AddItemToArray(list, cJSON_CreateString(e));
    snprintf(e, sizeof e, "localhost:%d", eg.spare); /* a name only: its loopback address is refused */
    cJSON_AddItemToArray(list, cJSON_CreateString(e));
    cJSON_AddItemToArray(list, cJSON_CreateString("*.example.org:443"));
    cJSON_AddNumberToObject(net, "max_connections", 4);
    cJSON_AddNumberToObject(net, "max_bytes", 2000000);
    cJSON_AddNumberToObject(net, "connection_ms", 4000);
    cJSON_AddNumberToObject(net, "header_ms", 1000);
    cJSON_ReplaceItemInObject(pol, "network", net);
    char *text = cJSON_Print(pol);
    cJSON_Delete(pol);
    snprintf(eg.policy, sizeof eg.policy, "/tmp/viv-egress-policy-%d.json", (int)getpid());
    put_file(eg.policy, text);
    free(text);
    return true;
}

#define EGRESS_SETUP()                                                                     \
    do {                                                                                   \
        char _why[256];                                                                    \
        if (!egress_setup(_why, sizeof _why)) SKIP("%s", _why);                            \
    } while (0)

/* The code with %H %S %P replaced by the server's http, https and spare ports. */
static void egress_code(const char *code, char *text, size_t len) {
    size_t o = 0;
    for (const char *c = code; *c && o < len - 16; c++) {
        if (c[0] == '%' && (c[1] == 'H' || c[1] == 'S' || c[1] == 'P')) {
            o += (size_t)snprintf(text + o, len - o, "%d", c[1] == 'H' ? eg.http : c[1] == 'S' ? eg.https : eg.spare);
            c++;
        } else {
            text[o++] = *c;
        }
    }
    text[o] = 0;
}

/* Run python code (see egress_code) under the egress policy, in any path. */
static void egress_run(struct job *j, const char *code, const char *timeout_ms) {
    static char text[16384];
    egress_code(code, text, sizeof text);
    const char *args[] = {"run", "--json", "--policy", eg.policy, "--timeout-ms", timeout_ms ? timeout_ms : "20000",
                          "--code", text, NULL};
    run_args(j, args);
}

/* The egress log lines this job's path wrote so far: viv run's stderr, or
 * the log of the vivd serving the policy. Each parsed; caller frees. */
static cJSON *egress_lines(const struct job *j) {
    cJSON *all = cJSON_CreateArray();
    char *text = NULL;
    if (attack_path == PATH_COLD) {
        text = strdup(j->err);
    } else {
        for (int i = 0; i < nvivds; i++)
            if (strcmp(vivds[i].policy, eg.policy) == 0) {
                FILE *f = fopen(vivds[i].log, "r");
                if (!f) break;
                text = calloc(1, 8 << 20);
                size_t n = fread(text, 1, (8 << 20) - 1, f);
                text[n] = 0;
                fclose(f);
            }
    }
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        if (o && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(o, "event")) ?: "", "egress") == 0)
            cJSON_AddItemToArray(all, o);
        else
            cJSON_Delete(o);
    }
    free(text);
    return all;
}

/* The last log line with this method, host, port (and reason, if given). */
static const cJSON *egress_find(const cJSON *lines, const char *method, const char *host, int port, const char *reason) {
    const cJSON *it, *found = NULL;
    cJSON_ArrayForEach(it, lines) {
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "method"));
        const char *h = cJSON_GetStringValue(cJSON_GetObjectItem(it, "host"));
        const char *r = cJSON_GetStringValue(cJSON_GetObjectItem(it, "reason"));
        const cJSON *p = cJSON_GetObjectItem(it, "port");
        if (m && h && r && cJSON_IsNumber(p) && strcmp(m, method) == 0 && strcmp(h, host) == 0 && p->valueint == port &&
            (!reason || strcmp(r, reason) == 0))
            found = it;
    }
    return found;
}

/* The log lines once one matching (method, host, port, reason) is among them.
 * A connection is logged when it closes, and a session's call can answer
 * before its proxy has seen the close, so the line may come a moment later:
 * wait for it (up to 5 s) rather than read the log once. */
static cJSON *egress_lines_with(const struct job *j, const char *method, const char *host, int port, const char *reason) {
    cJSON *lines = egress_lines(j);
    for (double give_up = mono_ms() + 5000; !egress_find(lines, method, host, port, reason) && mono_ms() < give_up;) {
        usleep(50000);
        cJSON_Delete(lines);
        lines = egress_lines(j);
    }
    return lines;
}

static double egress_num(const cJSON *line, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(line, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* GET a path of the server directly (not through any proxy). */
static char *egress_server_get(const char *path) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)eg.http),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        close(s);
        return strdup("");
    }
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    if (write(s, req, strlen(req)) < 0) {}
    char *buf = NULL;
    size_t len = 0;
    char chunk[4096];
    ssize_t r;
    while ((r = read(s, chunk, sizeof chunk)) > 0) append(&buf, &len, chunk, (size_t)r);
    close(s);
    return buf ? buf : strdup("");
}

static int count_hold_eofs(void) {
    char *ev = egress_server_get("/events");
    int n = 0;
    for (char *p = ev; (p = strstr(p, "hold eof")); p++) n++;
    free(ev);
    return n;
}

#define PY_EGRESS_GET                                                                      \
    "import urllib.request, urllib.error, socket\n"                                        \
    "def get(url):\n"                                                                      \
    "    try:\n"                                                                           \
    "        return '200 ' + urllib.request.urlopen(url, timeout=15).read().decode()[:80]\n" \
    "    except urllib.error.HTTPError as e:\n"                                            \
    "        return '%d %s' % (e.code, e.headers.get('X-Vivarium-Egress'))\n"              \
    "    except Exception as e:\n"                                                         \
    "        return 'ERR %s' % e\n"                                                        \
    "def raw(head):\n"                                                                    \
    "    s = socket.create_connection(('127.0.0.1', 3128), timeout=15)\n"                  \
    "    s.sendall(head)\n"                                                                \
    "    lines = s.recv(4096).split(b'\\r\\n')\n"                                           \
    "    reason = [h for h in lines if h.startswith(b'X-Vivarium-Egress')]\n"             \
    "    return s, lines[0].decode().split(' ')[1] + ' ' + (reason[0].decode().split(' ')[1] if reason else '-')\n" \
    "def connect(target):\n"                                                               \
    "    return raw(b'CONNECT ' + target.encode() + b' HTTP/1.1\\r\\n\\r\\n')\n"

/* The Biomni shape: Python requests against a REST database, HTTP and HTTPS. */
static void test_egress_requests_reach_listed_hosts(void) {
    EGRESS_SETUP();
    struct job j;
    egress_run(&j,
               "import requests, urllib3, urllib.request\n"
               "urllib3.disable_warnings()\n"
               "r = requests.get('http://127.0.0.1:%H/gene/TP53', timeout=15)\n"
               "print('HTTP', r.status_code, r.json()['symbol'])\n"
               "r = requests.get('https://127.0.0.1:%S/gene/BRCA1', timeout=15, verify=False)\n"
               "print('HTTPS', r.status_code, r.json()['symbol'])\n"
               "print('URLLIB', urllib.request.urlopen('http://localhost:%H/gene/EGFR', timeout=15).read().decode())\n",
               NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "HTTP 200 TP53");
    CHECK_OUT_HAS(&j, "HTTPS 200 BRCA1");
    CHECK_OUT_HAS(&j, "\"symbol\": \"EGFR\"");
    CHECK(!jtrue(&j, "zygote"), "an egress job ran on a zygote: %s", j.out);
    cJSON *lines = egress_lines_with(&j, "GET", "localhost", eg.http, "closed");
    const cJSON *tls = egress_find(lines, "CONNECT", "127.0.0.1", eg.https, "closed");
    const cJSON *name = egress_find(lines, "GET", "localhost", eg.http, "closed");
    char *all = cJSON_PrintUnformatted(lines);
    CHECK(tls && cJSON_IsTrue(cJSON_GetObjectItem(tls, "allowed")) && egress_num(tls, "bytes_down") > 100 &&
              egress_num(tls, "bytes_up") > 100,
          "no allowed CONNECT line with bytes both ways: %.1500s", all);
    CHECK(name && strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(name, "addr")) ?: "", "127.0.0.1") == 0,
          "the name's line lacks the address it resolved to: %.1500s", all);
    const char *job = cJSON_GetStringValue(cJSON_GetObjectItem(tls, "job")), *peer = cJSON_GetStringValue(cJSON_GetObjectItem(tls, "peer"));
    CHECK(job && *job && peer && strncmp(peer, "uid:", 4) == 0 && egress_num(tls, "ms") >= 0,
          "the line does not say whose job it was: %.600s", all);
    if (attack_path == PATH_SESSION) CHECK(strncmp(job, "s-", 2) == 0, "a session's line names '%s'", job);
    NOTE("requests over HTTP and HTTPS (CONNECT); logged as job %s, peer %s", job, peer);
    free(all);
    cJSON_Delete(lines);
    job_free(&j);
}

static void test_egress_unlisted_refused(void) {
    EGRESS_SETUP();
    struct job j;
    egress_run(&j,
               PY_EGRESS_GET
               "for name, url in [('port', 'http://127.0.0.1:%P/'), ('name', 'http://example.org/'),\n"
               "                  ('metadata', 'http://169.254.169.254/latest/meta-data/'),\n"
               "                  ('private', 'http://10.1.2.3:8080/'), ('mapped', 'http://[::ffff:127.0.0.1]:%P/'),\n"
               "                  ('decimal', 'http://2130706433:%H/'), ('hex', 'http://0x7f.1:%H/')]:\n"
               "    print(name, get(url))\n"
               "print('https_absolute', raw(b'GET https://127.0.0.1:%H/ HTTP/1.1\\r\\n\\r\\n')[1])\n"
               "print('origin_form', raw(b'GET / HTTP/1.1\\r\\nHost: 127.0.0.1:%H\\r\\n\\r\\n')[1])\n"
               "print('userinfo', raw(b'GET http://127.0.0.1:%H@169.254.169.254/ HTTP/1.1\\r\\n\\r\\n')[1])\n"
               "for name, t in [('apex', 'example.org:443'), ('lookalike', 'evil-example.org:443'),\n"
               "                ('ssh', '127.0.0.1:22'), ('meta_tls', '169.254.169.254:443'), ('v6_loop', '[::1]:%H')]:\n"
               "    print(name, connect(t)[1])\n",
               NULL);
    CHECK_RAN(&j);
    static const char *const want[] = {
        "port 403 not_listed", "name 403 not_listed", "metadata 403 not_listed", "private 403 not_listed",
        "mapped 403 not_listed", "decimal 400 bad_request", "hex 400 bad_request", "https_absolute 400 bad_request",
        "origin_form 400 bad_request", "userinfo 400 bad_request",
        "apex 403 not_listed", "lookalike 403 not_listed", "ssh 403 not_listed", "meta_tls 403 not_listed",
        "v6_loop 403 not_listed", NULL};
    for (int i = 0; want[i]; i++) CHECK_OUT_HAS(&j, want[i]);
    cJSON *lines = egress_lines_with(&j, "GET", "169.254.169.254", 80, "not_listed");
    const cJSON *meta = egress_find(lines, "GET", "169.254.169.254", 80, "not_listed");
    CHECK(meta && cJSON_IsFalse(cJSON_GetObjectItem(meta, "allowed")) && egress_num(meta, "bytes_down") == 0,
          "no denied line for the metadata address");
    cJSON_Delete(lines);
    job_free(&j);
}

/* A listed name that resolves to loopback gets nothing unless the address
 * itself is listed; a listed wildcard matches below its suffix only. */
static void test_egress_name_to_loopback_refused(void) {
    EGRESS_SETUP();
    struct job j;
    egress_run(&j,
               PY_EGRESS_GET
               "print('name_only', connect('localhost:%P')[1])\n"
               "print('name_and_addr', get('http://localhost:%H/gene/KRAS'))\n"
               "print('wild_sub', connect('a.b.example.org:443')[1])\n",
               NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "name_only 403 address_refused");
    CHECK_OUT_HAS(&j, "name_and_addr 200 {\"symbol\": \"KRAS\"");
    /* listed, so it was looked up: no resolver answers here (or it refuses) */
    const char *out = jstr(&j, "stdout");
    CHECK(strstr(out, "wild_sub 502 resolve_failed") || strstr(out, "wild_sub 403 address_refused") ||
              strstr(out, "wild_sub 502 connect_failed") || strstr(out, "wild_sub 504 time_cap"),
          "a listed wildcard name was not looked up: %s", out);
    cJSON *lines = egress_lines_with(&j, "CONNECT", "localhost", eg.spare, "address_refused");
    const cJSON *l = egress_find(lines, "CONNECT", "localhost", eg.spare, "address_refused");
    CHECK(l && strstr(cJSON_GetStringValue(cJSON_GetObjectItem(l, "detail")) ?: "", "loopback"),
          "the refusal's line does not say loopback");
    cJSON_Delete(lines);
    job_free(&j);
}

/* With a list, the jail's network is still its own: loopback and the proxy. */
static void test_egress_no_other_way_out(void) {
    EGRESS_SETUP();
    int tport, tcp = listen_on(SOCK_STREAM, &tport), uport, udp = listen_on(SOCK_DGRAM, &uport);
    char code[2048];
    snprintf(code, sizeof code,
             "import socket\n"
             "def t(name, f):\n"
             "    try:\n"
             "        f(); print(name, 'OPEN')\n"
             "    except OSError as e:\n"
             "        print(name, 'BLOCKED', e.errno)\n"
             "t('host_tcp', lambda: socket.create_connection(('127.0.0.1', %d), timeout=2))\n"
             "t('server_direct', lambda: socket.create_connection(('127.0.0.1', %%H), timeout=2))\n"
             "t('world_tcp', lambda: socket.create_connection(('93.184.216.34', 80), timeout=2))\n"
             "t('dns', lambda: socket.getaddrinfo('example.org', 80))\n"
             "t('udp_world', lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('8.8.8.8', 53)))\n"
             "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'leak', ('127.0.0.1', %d))\n"
             "t('raw', lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))\n"
             "t('netlink', lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))\n"
             "t('take_proxy_port', lambda: socket.socket().bind(('127.0.0.1', 3128)))\n"
             "print('IFACES', [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]])\n",
             tport, uport);
    struct job j;
    egress_run(&j, code, NULL);
    int accepted = accept(tcp, NULL, NULL);
    char buf[16];
    ssize_t got = recv(udp, buf, sizeof buf, MSG_DONTWAIT);
    close(tcp), close(udp);
    CHECK_RAN(&j);
    CHECK(accepted < 0, "the host's listener accepted a connection from the jail");
    CHECK(got < 0, "the host received a datagram from the jail");
    CHECK_OUT_HAS(&j, "host_tcp BLOCKED");
    CHECK_OUT_HAS(&j, "server_direct BLOCKED");
    CHECK_OUT_HAS(&j, "world_tcp BLOCKED");
    CHECK_OUT_HAS(&j, "dns BLOCKED");
    CHECK_OUT_HAS(&j, "udp_world BLOCKED");
    CHECK_OUT_HAS(&j, "raw BLOCKED 1");
    CHECK_OUT_HAS(&j, "netlink BLOCKED 1");
    CHECK_OUT_HAS(&j, "take_proxy_port BLOCKED 98");
    CHECK_OUT_HAS(&j, "IFACES ['lo']");
    job_free(&j);
}

static void test_egress_connection_cap(void) {
    EGRESS_SETUP();
    struct job j;
    egress_run(&j,
               PY_EGRESS_GET
               "held, codes = [], []\n"
               "for i in range(6):\n"
               "    s, code = connect('127.0.0.1:%H'); held.append(s); codes.append(code)\n"
               "print('CODES', sorted(codes))\n",
               NULL);
    CHECK_RAN(&j);
    CHECK_OUT_HAS(&j, "CODES ['200 -', '200 -', '200 -', '200 -', '503 connection_cap', '503 connection_cap']");
    job_free(&j);
}

static void test_egress_byte_cap(void) {
    EGRESS_SETUP();
    struct job j;
    egress_run(&j,
               PY_EGRESS_GET
               "import http.client\n"
               "try:\n"
               "    body = urllib.request.urlopen('http://127.0.0.1:%H/bytes/3000000', timeout=15).read()\n"
               "    print('BIG', len(body))\n"
               "except http.client.IncompleteRead as e:\n"
               "    print('BIG cut at', len(e.partial))\n"
               "except Exception as e:\n"
               "    print('BIG cut', type(e).__name__)\n"
               "print('AFTER', get('http://127.0.0.1:%H/gene/TP53'))\n",
               NULL);
    CHECK_RAN(&j);
    CHECK(strstr(jstr(&j, "stdout"), "BIG cut"), "3 MB came through a 2 MB budget: %s", jstr(&j, "stdout"));
    CHECK_OUT_HAS(&j, "AFTER 503 byte_cap");
    cJSON *lines = egress_lines_with(&j, "GET", "127.0.0.1", eg.http, "byte_cap");
    const cJSON *l = egress_find(lines, "GET", "127.0.0.1", eg.http, "byte_cap");
    CHECK(l && egress_num(l, "bytes_down") <= 2000000 + 65536, "no byte_cap line, or it counts more than the cap");
    cJSON_Delete(lines);
    job_free(&j);
}

/* connection_ms closes a connection the job keeps open; the server sees EOF. */
static void test_egress_connection_time_cap(void) {
    EGRESS_SETUP();
    int before = count_hold_eofs();
    struct job j;
    egress_run(&j,
               "import socket, time\n"
               "s = socket.create_connection(('127.0.0.1', 3128), timeout=30)\n"
               "t0 = time.time()\n"
               "s.sendall(b'GET http://127.0.0.1:%H/hold HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
               "n = 0\n"
               "while True:\n"
               "    b = s.recv(65536)\n"
               "    if not b: break\n"
               "    n += len(b)\n"
               "print('CLOSED after %.1f s' % (time.time() - t0), n)\n",
               NULL);
    CHECK_RAN(&j);
    double secs = -1;
    const char *c = strstr(jstr(&j, "stdout"), "CLOSED after");
    CHECK(c && sscanf(c, "CLOSED after %lf", &secs) == 1 && secs >= 3.0 && secs < 9.0,
          "a held connection was not closed at connection_ms 4000: %s %s", jstr(&j, "stdout"), jstr(&j, "stderr"));
    int after = before;
    for (int i = 0; i < 30 && after == before; i++, usleep(100000)) after = count_hold_eofs();
    CHECK(after > before, "the server never saw the connection end");
    job_free(&j);
}

/* A job killed at its deadline loses its connections at once. */
static void test_egress_job_end_closes_connections(void) {
    EGRESS_SETUP();
    int before = count_hold_eofs();
    struct job j;
    egress_run(&j,
               "import socket, os, time\n"
               "s = socket.create_connection(('127.0.0.1', 3128), timeout=30)\n"
               "s.sendall(b'GET http://127.0.0.1:%H/hold HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
               "print('HOLDING', len(s.recv(100)) > 0, flush=True)\n"
               "if os.fork() == 0:\n"
               "    time.sleep(60)\n"
               "time.sleep(60)\n",
               "1500");
    double ended = mono_ms();
    CHECK_RAN(&j);
    CHECK(jtrue(&j, "timed_out"), "the holding job was not stopped at its deadline: %s", j.out);
    int after = before;
    while (after == before && mono_ms() - ended < 3000) {
        usleep(50000);
        after = count_hold_eofs();
    }
    CHECK(after > before, "3 s after the job ended its connection was still open at the server");
    NOTE("the server saw EOF within %.0f ms of the result", mono_ms() - ended);
    job_free(&j);
}

/* The uids owning TCP sockets connected to the server's http port (the
 * proxy's upstream side), from /proc/net/tcp; how many found. */
static int upstream_socket_uids(unsigned *uids, int max) {
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512];
    int n = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f) && n < max) {
        unsigned rport, st, uid;
        if (sscanf(line, " %*d: %*x:%*x %*x:%x %x %*x:%*x %*x:%*x %*x %u", &rport, &st, &uid) == 3 &&
            rport == (unsigned)eg.http && st == 1)
            uids[n++] = uid;
    }
    fclose(f);
    return n;
}

/* A root caller's proxy parses the job's bytes as the job's unprivileged
 * host uid, never as root. */
static void test_egress_proxy_not_root(void) {
    EGRESS_SETUP();
    if (getuid() != 0) SKIP("the caller is not root: the proxy has the caller's uid");
    struct job j;
    char text[2048];
    egress_code("import socket, time\n"
                "s = socket.create_connection(('127.0.0.1', 3128), timeout=30)\n"
                "s.sendall(b'GET http://127.0.0.1:%H/hold HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
                "s.recv(100)\n"
                "time.sleep(3)\n",
                text, sizeof text);
    const char *args[] = {"run", "--json", "--policy", eg.policy, "--code", text, NULL};
    job_start(&j, args);
    unsigned uids[16];
    int n = 0;
    for (int i = 0; i < 50 && n == 0; i++, usleep(50000)) n = upstream_socket_uids(uids, 16);
    job_finish(&j);
    CHECK_RAN(&j);
    CHECK(n > 0, "no connection to the server was seen while the job held one");
    for (int i = 0; i < n; i++) CHECK(uids[i] != 0, "the proxy's upstream socket belongs to root");
    NOTE("the proxy's upstream socket belongs to uid %u", uids[0]);
    job_free(&j);
}

/* Slow and huge heads and 2,000 connects hurt only the job that sends them. */
static void test_egress_hostile_client_bounded(void) {
    EGRESS_SETUP();
    struct job flood, other;
    const char *code =
        "import socket, time, urllib.request\n"
        "t0 = time.time()\n"
        "s = socket.create_connection(('127.0.0.1', 3128)); s.sendall(b'CONNECT 127.0.0.1:%H HTTP/1.1\\r\\n')\n"
        "print('slow', s.recv(100).split(b' ')[1].decode(), round(time.time() - t0, 1))\n"
        "s = socket.create_connection(('127.0.0.1', 3128))\n"
        "try:\n"
        "    s.sendall(b'GET http://127.0.0.1:%H/ HTTP/1.1\\r\\nX-Pad: ' + b'a' * 40000 + b'\\r\\n\\r\\n')\n"
        "except OSError:\n"
        "    pass\n"
        "print('huge', s.recv(100).split(b' ')[1].decode())\n"
        "n = 0\n"
        "for i in range(2000):\n"
        "    try:\n"
        "        c = socket.create_connection(('127.0.0.1', 3128), timeout=5); c.close(); n += 1\n"
        "    except OSError:\n"
        "        pass\n"
        "print('connects', n)\n"
        "print('after', urllib.request.urlopen('http://127.0.0.1:%H/gene/MYC', timeout=15).status)\n";
    char text[4096];
    egress_code(code, text, sizeof text);
    const char *args[] = {"run", "--json", "--policy", eg.policy, "--timeout-ms", "60000", "--code", text, NULL};
    job_start(&flood, args);
    usleep(300000);
    double t0 = mono_ms();
    egress_run(&other, "import urllib.request\nprint('OTHER', urllib.request.urlopen('http://127.0.0.1:%H/gene/TP53', timeout=15).status)\n",
               NULL);
    double other_ms = mono_ms() - t0;
    job_finish(&flood);
    CHECK_RAN(&other);
    CHECK_OUT_HAS(&other, "OTHER 200");
    CHECK(other_ms < 15000, "a job beside the flood took %.0f ms", other_ms);
    CHECK_RAN(&flood);
    double slow = -1;
    const char *s = strstr(jstr(&flood, "stdout"), "slow 408 ");
    CHECK(s && sscanf(s, "slow 408 %lf", &slow) == 1 && slow >= 0.9 && slow < 5, "slow head: %s %s", jstr(&flood, "stdout"),
          jstr(&flood, "stderr"));
    CHECK_OUT_HAS(&flood, "huge 431");
    CHECK_OUT_HAS(&flood, "connects 2000");
    CHECK_OUT_HAS(&flood, "after 200");
    /* The refusals it caused are logged up to a cap, then counted in a line
     * written when its proxy ends (a session's, after the session closes). */
    cJSON *lines = NULL;
    const cJSON *it;
    int refused = 0, unlogged = -1;
    const char *job = NULL;
    for (double give_up = mono_ms() + 5000; !job && mono_ms() < give_up; usleep(100000)) {
        cJSON_Delete(lines);
        lines = egress_lines(&flood);
        cJSON_ArrayForEach(it, lines) {
            const char *r = cJSON_GetStringValue(cJSON_GetObjectItem(it, "reason"));
            if (r && strcmp(r, "refusals_not_logged") == 0) {
                unlogged = (int)egress_num(it, "count");
                job = cJSON_GetStringValue(cJSON_GetObjectItem(it, "job"));
            }
        }
    }
    cJSON_ArrayForEach(it, lines) {
        const char *j2 = cJSON_GetStringValue(cJSON_GetObjectItem(it, "job"));
        if (job && j2 && strcmp(job, j2) == 0 && cJSON_IsFalse(cJSON_GetObjectItem(it, "allowed"))) refused++;
    }
    cJSON_Delete(lines);
    CHECK(unlogged > 0 && refused == 1000 + 1 && unlogged + 1000 >= 2000,
          "2,002 refusals: %d lines for the job, %d counted unlogged", refused, unlogged);
    NOTE("beside 2,000 connects, another job's request took %.0f ms in all", other_ms);
    job_free(&flood);
    job_free(&other);
}

/* In the vivd paths: one exec (a session call in the session path) on a
 * vivd of its own started with `flag dir`; the stdout, or the failure. */
static char *egress_vivd_exec(const char *flag, const char *dir, const char *code) {
    char d[64], sock[128], pdir[128], cmd[512];
    snprintf(d, sizeof d, "/tmp/viv-egress-vivd-%d", (int)getpid());
    snprintf(sock, sizeof sock, "%s/s.sock", d);
    snprintf(pdir, sizeof pdir, "%s/policies", d);
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && cp %s %s/", d, pdir, eg.policy, pdir);
    if (system(cmd) != 0) return strdup("FAILED: setup");
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0), dup2(null, 1), dup2(null, 2);
        execl(vivd_bin, vivd_bin, "--socket", sock, "--policies", pdir, "--zygotes", "0", flag, dir, (char *)NULL);
        _exit(99);
    }
    int fd = -1;
    for (int i = 0; i < 200 && fd < 0; i++) {
        fd = vivd_connect(sock);
        if (fd < 0) usleep(50000);
    }
    char *out = NULL;
    if (fd >= 0) {
        const char *session = NULL;
        cJSON *opened = NULL;
        if (attack_path == PATH_SESSION) {
            cJSON *req = cJSON_CreateObject();
            cJSON_AddNumberToObject(req, "id", 1);
            cJSON_AddStringToObject(req, "op", "session_open");
            cJSON_AddStringToObject(req, "tool", "egress-py");
            opened = vivd_call(fd, req);
            session = cJSON_GetStringValue(cJSON_GetObjectItem(opened, "session"));
        }
        cJSON *req = cJSON_CreateObject();
        cJSON_AddNumberToObject(req, "id", 2);
        cJSON_AddStringToObject(req, "op", "exec");
        if (session) cJSON_AddStringToObject(req, "session", session);
        else cJSON_AddStringToObject(req, "tool", "egress-py");
        cJSON_AddStringToObject(req, "code", code);
        cJSON *r = vivd_call(fd, req);
        const char *so = cJSON_GetStringValue(cJSON_GetObjectItem(r, "stdout"));
        if (so) out = strdup(so);
        else {
            char *t = r ? cJSON_PrintUnformatted(r) : NULL;
            out = xasprintf_test("FAILED: %s", t ? t : "no answer");
            free(t);
        }
        cJSON_Delete(r);
        cJSON_Delete(opened);
        close(fd);
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    if (system(cmd)) {}
    return out ? out : strdup("FAILED: vivd did not start");
}

/* One run under --egress-record/--egress-replay DIR: viv run (cold), or a
 * vivd started with the flag (the vivd paths). Its stdout. */
static char *egress_mode_run(const char *flag, const char *dir, const char *code) {
    if (attack_path != PATH_COLD) return egress_vivd_exec(flag, dir, code);
    struct job j;
    const char *args[] = {"run", "--json", "--policy", eg.policy, flag, dir, "--code", code, NULL};
    run_args(&j, args);
    char *out = j.json ? strdup(jstr(&j, "stdout")) : xasprintf_test("FAILED: %s", j.err);
    job_free(&j);
    return out;
}

/* Record plain-HTTP answers, then replay them without the server: same
 * bytes, the server not asked, a miss and HTTPS refused with a clear 502.
 * The last answer is whole a second before its connection closes, and the
 * job (and in the vivd paths, vivd) ends right after reading it: what the
 * job saw while recording must be on disk all the same. */
static void test_egress_record_then_replay(void) {
    EGRESS_SETUP();
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/viv-egress-rec-%d", (int)getpid());
    mkdir(dir, 0755);
    char text[4096], code2[4096];
    egress_code(PY_EGRESS_GET
                "print('COUNT', get('http://127.0.0.1:%H/count'))\n"
                "req = urllib.request.Request('http://127.0.0.1:%H/echo', data=b'gene=TP53', method='POST')\n"
                "print('ECHO', urllib.request.urlopen(req, timeout=15).read().decode())\n"
                "print('LATE', get('http://127.0.0.1:%H/late'))\n",
                text, sizeof text);
    egress_code(PY_EGRESS_GET
                "print('MISS', get('http://127.0.0.1:%H/count?other'))\n"
                "print('TLS', connect('127.0.0.1:%S')[1])\n",
                code2, sizeof code2);
    char *rec = egress_mode_run("--egress-record", dir, text);
    char *rep = egress_mode_run("--egress-replay", dir, text);
    char *miss = egress_mode_run("--egress-replay", dir, code2);
    char *direct = egress_server_get("/count");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
    int n_rec = -1, n_direct = -1;
    const char *c = strstr(rec, "COUNT 200 count ");
    CHECK(c && sscanf(c, "COUNT 200 count %d", &n_rec) == 1, "record run: %s", rec);
    CHECK(strstr(rec, "ECHO echo:gene=TP53") && strstr(rec, "LATE 200 late"), "record run: %s", rec);
    CHECK(strcmp(rec, rep) == 0, "replay differs: recorded %s replayed %s", rec, rep);
    const char *d = strstr(direct, "count ");
    CHECK(d && sscanf(d, "count %d", &n_direct) == 1 && n_direct == n_rec + 1,
          "the replay reached the server (recorded count %d, then the server says %s)", n_rec, direct);
    CHECK(strstr(miss, "MISS 502 replay_miss") && strstr(miss, "TLS 502 replay_https"), "replay miss: %s", miss);
    NOTE("%s", attack_path == PATH_COLD ? "viv run --egress-record/--egress-replay" : "vivd --egress-record/--egress-replay");
    free(rec), free(rep), free(miss), free(direct);
}

#define EGRESS_ATTACKS                                                                     \
    T(egress_requests_reach_listed_hosts), T(egress_unlisted_refused), T(egress_name_to_loopback_refused), \
        T(egress_no_other_way_out), T(egress_connection_cap), T(egress_byte_cap),         \
        T(egress_connection_time_cap), T(egress_job_end_closes_connections),               \
        T(egress_hostile_client_bounded), T(egress_record_then_replay), T(egress_proxy_not_root)
