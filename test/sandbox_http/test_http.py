"""vivd --http against the request and response shapes of the frameworks'
own clients, driven with python3-requests as they drive it: verl's
sandbox_fusion client (POST /run_code; it reads status, run_result.status,
return_code, stdout, stderr) and Biomni-SkyRL's runtime (/start_runtime,
/execute, /delete_runtime; it reads session_id and output).
EgressTest gives the python tool an egress allowlist the way a lab does
(a policy file of the same name in --policies DIR) and checks what those
same requests can reach, and what vivd logs and reports.
Usage: test_http.py VIVD_BINARY"""
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import requests

VIVD = sys.argv.pop(1) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "bin/vivd"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class HttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        cls.sock = os.path.join(cls.dir, "vivd.sock")
        cls.url = "http://127.0.0.1:%d" % free_port()
        cls.log = os.path.join(cls.dir, "log")
        cls.proc = subprocess.Popen([VIVD, "--socket", cls.sock, "--log", cls.log, "--http", cls.url[7:]])
        for _ in range(500):
            try:
                if requests.get(cls.url + "/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.02)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(timeout=20)

    def run_code(self, **payload):
        # what verl's call_sandbox_api sends: the whole payload as JSON
        r = requests.post(self.url + "/run_code", json=payload, headers={"Content-Type": "application/json"}, timeout=60)
        return r.status_code, r.json()

    def test_verl_python_stdin(self):
        st, r = self.run_code(code="print(int(input()) * 2)", language="python", stdin="21\n", run_timeout=10,
                              compile_timeout=10, memory_limit_MB=1024)
        self.assertEqual(st, 200)
        self.assertEqual(r["status"], "Success")
        self.assertEqual(r["run_result"]["status"], "Finished")
        self.assertEqual(r["run_result"]["return_code"], 0)
        self.assertEqual(r["run_result"]["stdout"], "42\n")

    def test_verl_timeout_and_failure(self):
        _, r = self.run_code(code="while True: pass", language="python", run_timeout=1)
        self.assertEqual(r["run_result"]["status"], "TimeLimitExceeded")
        _, r = self.run_code(code="import sys; sys.exit(3)", language="python")
        self.assertEqual((r["status"], r["run_result"]["return_code"]), ("Failed", 3))

    def test_bash_is_bash_and_files_round_trip(self):
        _, r = self.run_code(code="[[ -n $BASH_VERSION ]] && echo bash; tr a-z A-Z < in.txt > out.txt", language="bash",
                             files={"in.txt": base64.b64encode(b"abc").decode()}, fetch_files=["out.txt"])
        self.assertEqual(r["run_result"]["stdout"], "bash\n")
        self.assertEqual(base64.b64decode(r["files"]["out.txt"]), b"ABC")

    def test_sql(self):
        _, r = self.run_code(code="create table t(a); insert into t values (1),(2); select sum(a) from t;", language="sql")
        self.assertEqual(r["run_result"]["stdout"], "3\n")

    def test_unsupported_language_names_the_ones_that_exist(self):
        _, r = self.run_code(code="1", language="fortran")
        self.assertEqual(r["status"], "SandboxError")
        self.assertIn("python, bash, sql, R, c, cpp", r["message"])

    def test_r_with_stdin_and_files(self):
        for lang in ("R", "r"):
            _, r = self.run_code(code="x <- readLines(file('stdin')); cat(toupper(x), sep='\\n')\n"
                                      "d <- read.csv('in.csv'); write.csv(data.frame(s=sum(d$a)), 'out.csv', row.names=FALSE)\n"
                                      "cat(R.version$language, '\\n')",
                                 language=lang, stdin="abc\n", files={"in.csv": base64.b64encode(b"a\n1\n2\n").decode()},
                                 fetch_files=["out.csv"], run_timeout=20)
            self.assertEqual(r["status"], "Success", r)
            self.assertEqual(r["run_result"]["stdout"], "ABC\nR \n")
            self.assertEqual(base64.b64decode(r["files"]["out.csv"]), b'"s"\n3\n')
        _, r = self.run_code(code="stop('no such thing')", language="R")
        self.assertEqual((r["status"], r["run_result"]["return_code"]), ("Failed", 1))
        self.assertIn("no such thing", r["run_result"]["stderr"])
        with open(self.log) as f:
            self.assertIn('"op":"exec","tool":"r"', f.read())

    def test_c_and_cpp_compile_then_run(self):
        _, r = self.run_code(code="#include <stdio.h>\n#include <math.h>\nint main(void){int n; scanf(\"%d\", &n);"
                                  " printf(\"%d %.0f\\n\", n * 2, sqrt(81.0)); return 0;}",
                             language="c", stdin="21\n", run_timeout=10, compile_timeout=30)
        self.assertEqual(r["status"], "Success", r)
        self.assertEqual(r["run_result"]["stdout"], "42 9\n")
        self.assertEqual((r["compile_result"]["status"], r["compile_result"]["return_code"]), ("Finished", 0))
        self.assertGreater(r["compile_result"]["execution_time"], 0)
        _, r = self.run_code(code="#include <iostream>\n#include <vector>\nint main(){std::vector<int> v{1,2,3}; int s=0;"
                                  " for(int x: v) s+=x; std::cout << s << std::endl; std::ifstream f; return 4;}",
                             language="cpp", compile_timeout=30)
        # std::ifstream without <fstream>: g++'s own message comes back, and nothing runs
        self.assertEqual(r["status"], "Failed")
        self.assertIsNone(r["run_result"])
        self.assertEqual(r["compile_result"]["status"], "Finished")
        self.assertNotEqual(r["compile_result"]["return_code"], 0)
        self.assertIn("error", r["compile_result"]["stderr"])
        self.assertIn("ifstream", r["compile_result"]["stderr"])
        _, r = self.run_code(code="#include <iostream>\n#include <fstream>\nint main(){std::ifstream f(\"in.txt\"); int a, b;"
                                  " f >> a >> b; std::cout << a * b << std::endl; return 4;}",
                             language="cpp", files={"in.txt": base64.b64encode(b"6 7").decode()}, compile_timeout=30)
        self.assertEqual((r["status"], r["run_result"]["return_code"], r["run_result"]["stdout"]), ("Failed", 4, "42\n"))
        _, r = self.run_code(code="int main(void){for(;;);}", language="c", run_timeout=1, compile_timeout=30)
        self.assertEqual((r["compile_result"]["status"], r["run_result"]["status"]), ("Finished", "TimeLimitExceeded"))
        _, r = self.run_code(code="int main(void){return *(volatile int *)0;}", language="c", compile_timeout=30)
        self.assertEqual((r["status"], r["run_result"]["return_code"]), ("Failed", -11))
        st, r = self.run_code(code="int main(void){return 0;}", language="c", compile_timeout="soon")
        self.assertEqual((st, r["status"]), (400, "SandboxError"))

    def test_c_binary_that_cannot_reach_its_run_is_said(self):
        # over vivd's request line (8 MiB with base64), then over the policy's files_bytes (16 MiB)
        for mb, why in ((7, "--max-line-bytes"), (20, "files_bytes")):
            _, r = self.run_code(code="char big[%d << 20] = {1}; int main(void){volatile char *p = big; return p[1];}" % mb,
                                 language="c", compile_timeout=60)
            self.assertEqual((r["status"], r["compile_result"]["return_code"], r["run_result"]), ("Failed", 0, None))
            self.assertIn(why, r["message"])

    def test_nul_in_output_round_trips(self):
        _, r = self.run_code(code="import sys; sys.stdout.write('a\\0b'); sys.stderr.write('c\\0d')", language="python")
        self.assertEqual((r["run_result"]["stdout"], r["run_result"]["stderr"]), ("a\0b", "c\0d"))
        _, r = self.run_code(code="printf 'x\\0y'", language="bash")
        self.assertEqual(r["run_result"]["stdout"], "x\0y")
        sid = requests.post(self.url + "/start_runtime", json={}, timeout=60).json()["session_id"]
        r = requests.post(self.url + "/execute", json={"session_id": sid, "code": "print('p\\0q')"}, timeout=60)
        self.assertEqual(r.json()["output"], "p\0q\n")
        requests.post(self.url + "/delete_runtime", json={"session_id": sid}, timeout=10)
        # a NUL in what the client sends cannot reach the job whole: refused, never cut short
        st, r = self.run_code(code="print(1)\0", language="python")
        self.assertEqual((st, r["status"]), (400, "SandboxError"))
        st, r = self.run_code(code="print(input())", language="python", stdin="a\0b")
        self.assertEqual((st, r["status"]), (400, "SandboxError"))

    def test_files_cannot_escape(self):
        st, r = self.run_code(code="1", language="python", files={"../x": "eA=="})
        self.assertEqual((st, r["status"]), (400, "SandboxError"))
        st, r = self.run_code(code="import os; os.symlink('/etc/passwd', 'p')", language="python", fetch_files=["p"])
        self.assertNotIn("p", r["files"])

    def test_bad_bodies_get_4xx(self):
        for body in (b"{bad", b"[]", b'{"code": 5, "language": "python"}', b'{"code": "1", "language": "python", "run_timeout": "x"}',
                     b"\x00"):
            r = requests.post(self.url + "/run_code", data=body, timeout=10)
            self.assertEqual(r.status_code, 400, body)
        r = requests.post(self.url + "/run_code", data=b"x" * (9 << 20), timeout=30)
        self.assertEqual(r.status_code, 413)
        self.assertEqual(requests.post(self.url + "/nope", json={}, timeout=10).status_code, 404)

    def test_slow_client_is_cut_not_hung(self):
        s = socket.create_connection(("127.0.0.1", int(self.url.rsplit(":", 1)[1])))
        s.sendall(b"POST /run_code HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        s.settimeout(60)
        self.assertEqual(s.recv(100), b"")  # dropped by the connection timeout, nothing else held
        s.close()

    def test_biomni_runtime(self):
        sid = requests.post(self.url + "/start_runtime", json={}, timeout=60).json()["session_id"]

        def execute(code, t=10):
            return requests.post(self.url + "/execute", json={"session_id": sid, "code": code, "timeout_seconds": t},
                                 timeout=60)
        self.assertEqual(execute("x = 41\nopen('f.txt', 'w').write('shared')").json()["output"], "")
        self.assertEqual(execute("print(x + 1)").json()["output"], "42\n")
        self.assertEqual(execute("#!BASH\ncat f.txt; echo; echo e >&2").json()["output"], "shared\ne\n")
        self.assertEqual(execute("#!CLI\necho $BASH_VERSION | cut -c1").json()["output"].strip().isdigit(), True)
        # R runs in the session's own jail: it sees the Python cells' files, and they see its files
        self.assertEqual(execute("#!R\ncat(readLines('f.txt', warn = FALSE), 2 + 2, '\\n'); writeLines('from R', 'r.txt')").json()["output"],
                         "shared 4 \n")
        self.assertEqual(execute("print(open('r.txt').read().strip(), x)").json()["output"], "from R 41\n")
        self.assertIn("Error", execute("#!R\nstop('bad cell')").json()["output"])
        self.assertIn("killed", execute("import time; time.sleep(30)", 1).json()["output"])
        requests.post(self.url + "/delete_runtime", json={"session_id": sid}, timeout=10)
        r = execute("print(x)")
        self.assertEqual(r.status_code, 404)  # a lost runtime is an error, never a fresh one
        self.assertEqual(requests.post(self.url + "/execute", json={"session_id": "s-made-up", "code": "1"}, timeout=10).status_code, 404)

    def test_calls_are_logged_as_vivd_requests(self):
        self.run_code(code="print(1)", language="python")
        with open(self.log) as f:
            self.assertIn('"op":"exec","tool":"python"', f.read())


class SourceAddress(requests.adapters.HTTPAdapter):
    """requests from a chosen local address (127.0.0.0/8 is all loopback)."""

    def __init__(self, addr):
        self.addr = addr
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.addr, 0)
        return super().init_poolmanager(*args, **kwargs)


def client_from(addr):
    s = requests.Session()
    s.mount("http://", SourceAddress(addr))
    return s


class PerClientCapTest(unittest.TestCase):
    """Every HTTP call reaches vivd through the one front process; the
    per-peer caps must still count each HTTP client on its own."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.sock = os.path.join(self.dir, "vivd.sock")
        self.log = os.path.join(self.dir, "log")
        self.url = "http://127.0.0.1:%d" % free_port()
        self.proc = subprocess.Popen([VIVD, "--socket", self.sock, "--log", self.log, "--http", self.url[7:],
                                      "--max-sessions-per-peer", "2", "--zygotes", "0"])
        for _ in range(500):
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.02)

    def tearDown(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)

    def test_one_client_at_its_cap_does_not_block_another(self):
        a, b = client_from("127.0.0.1"), client_from("127.0.0.2")
        start = lambda c: c.post(self.url + "/start_runtime", json={}, timeout=60)
        ra = [start(a) for _ in range(3)]
        self.assertEqual([r.status_code for r in ra], [200, 200, 429])
        self.assertIn("http:127.0.0.1", ra[2].json()["error"])
        self.assertEqual(ra[2].headers.get("Retry-After"), "1")
        rb = start(b)
        self.assertEqual(rb.status_code, 200, rb.text)  # 127.0.0.2 has its own count
        sid = rb.json()["session_id"]
        self.assertEqual(b.post(self.url + "/execute", json={"session_id": sid, "code": "print(6*7)"}, timeout=60).json()["output"], "42\n")
        # a runtime is its client's: closing one frees a place for that client only
        a.post(self.url + "/delete_runtime", json={"session_id": ra[0].json()["session_id"]}, timeout=10)
        self.assertEqual(start(a).status_code, 200)
        with open(self.log) as f:
            log = f.read()
        self.assertIn('"peer":"http:127.0.0.2","op":"session_open"', log)

    def test_only_the_front_may_name_a_client(self):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.sock)
        s.sendall(b'{"id":1,"op":"session_open","tool":"python","client":"127.0.0.9"}\n')
        answer = s.makefile().readline()
        s.close()
        self.assertIn('"bad_request"', answer)
        self.assertIn("only from vivd's own HTTP front", answer)


def start_vivd(workdir, *extra):
    """vivd with --http on a free port; (process, url, unix socket)."""
    sock = os.path.join(workdir, "vivd.sock")
    url = "http://127.0.0.1:%d" % free_port()
    proc = subprocess.Popen([VIVD, "--socket", sock, "--log", os.path.join(workdir, "log"), "--http", url[7:]] + list(extra))
    for _ in range(500):
        try:
            if requests.get(url + "/health", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.02)
    return proc, url, sock


def vivd_policies(sock):
    """vivd's `policies` answer, by name, through the Python client."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../sandbox/client/python"))
    import vivarium_client
    c = vivarium_client.Client(sock)
    try:
        return {p["name"]: p for p in c.policies()}
    finally:
        c.close()


# What the job prints for one URL fetched with urllib: "STATUS REASON-HEADER BODY",
# or "ERROR <exception class>" when no HTTP answer came at all.
FETCH = """import sys, urllib.request, urllib.error, ssl
def fetch(url):
    ctx = ssl._create_unverified_context()  # the stand-in's certificate is self-signed
    try:
        r = urllib.request.urlopen(url, timeout=10, context=ctx)
        return "%d - %s" % (r.status, r.read().decode())
    except urllib.error.HTTPError as e:
        return "%d %s %s" % (e.code, e.headers.get("X-Vivarium-Egress"), e.read().decode().strip())
    except Exception as e:
        return "ERROR %s" % type(e).__name__
"""


class EgressTest(unittest.TestCase):
    """An allowlist given to /run_code and Biomni's runtime by overriding the
    built-in python policy: the listed stand-in server is reached, every other
    address is refused by the proxy, each connection is logged with its job
    and HTTP client, and vivd's `policies` answer says so. The same code
    against the built-in policy has no network at all."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        here = os.path.dirname(os.path.abspath(__file__))
        cls.server = subprocess.Popen([sys.executable, os.path.join(here, "../attack/egress_server.py")],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # serves until stdin closes
        ports = cls.server.stdout.readline().split()
        assert ports and ports[0] == "PORTS", "egress_server.py did not start: %r" % ports
        cls.http, cls.https, cls.spare = (int(p) for p in ports[1:4])
        # the built-in python policy, plus the two stand-in ports and the
        # socket family the job needs to reach its proxy
        with open(os.path.join(here, "../../policies/python.json")) as f:
            pol = json.load(f)
        assert pol["network"] == "none"
        pol["seccomp"]["socket_families"].append("AF_INET")
        pol["network"] = {"egress": ["127.0.0.1:%d" % cls.http, "127.0.0.1:%d" % cls.https], "max_connections": 4}
        pdir = os.path.join(cls.dir, "policies")
        os.mkdir(pdir)
        with open(os.path.join(pdir, "python.json"), "w") as f:
            json.dump(pol, f)
        cls.egress_log = os.path.join(cls.dir, "egress.log")
        os.mkdir(os.path.join(cls.dir, "on"))
        os.mkdir(os.path.join(cls.dir, "off"))
        cls.proc, cls.url, cls.sock = start_vivd(os.path.join(cls.dir, "on"), "--policies", pdir,
                                                 "--egress-log", cls.egress_log)
        cls.plain, cls.plain_url, cls.plain_sock = start_vivd(os.path.join(cls.dir, "off"))

    @classmethod
    def tearDownClass(cls):
        for p in (cls.proc, cls.plain):
            p.terminate()
            p.wait(timeout=20)
        cls.server.stdin.close()
        cls.server.wait(timeout=20)

    def run_python(self, code, url=None):
        r = requests.post((url or self.url) + "/run_code", json={"code": FETCH + code, "language": "python",
                                                                "run_timeout": 30}, timeout=90)
        self.assertEqual(r.status_code, 200, r.text)
        return r.json()

    def log_lines(self):
        with open(self.egress_log) as f:
            return [json.loads(line) for line in f if line.strip()]

    def test_run_code_reaches_the_listed_host(self):
        r = self.run_python("print(fetch('http://127.0.0.1:%d/gene/TP53'))\n"
                            "print(fetch('https://127.0.0.1:%d/gene/BRCA1'))\n"
                            "import requests\n"
                            "print(requests.get('http://127.0.0.1:%d/bytes/5', timeout=10).text)"
                            % (self.http, self.https, self.http))
        self.assertEqual(r["status"], "Success", r)
        out = r["run_result"]["stdout"].splitlines()
        self.assertEqual(json.loads(out[0].split(" - ", 1)[1]), {"symbol": "TP53", "chromosome": "17", "source": "stand-in"})
        self.assertEqual(json.loads(out[1].split(" - ", 1)[1])["symbol"], "BRCA1")
        self.assertEqual(out[2], "xxxxx")

    def test_run_code_unlisted_addresses_are_refused(self):
        r = self.run_python("print(fetch('http://127.0.0.1:%d/'))\n"
                            "print(fetch('http://169.254.169.254/latest/meta-data/'))\n"
                            "print(fetch('https://127.0.0.1:%d/'))\n"
                            "import requests\n"
                            "try:\n"
                            "    requests.get('https://169.254.169.254/', timeout=10, verify=False)\n"
                            "except requests.exceptions.ProxyError as e:\n"
                            "    print('ProxyError', '403' in str(e))"
                            % (self.spare, self.spare))
        out = r["run_result"]["stdout"].splitlines()
        self.assertEqual(len(out), 4, r)
        for line in out[:2]:
            self.assertRegex(line, r"^403 not_listed vivarium egress: not_listed: ")
        self.assertIn("169.254.169.254 port 80", out[1])
        self.assertEqual(out[2], "ERROR URLError")  # CONNECT refused: urllib says "Tunnel connection failed: 403"
        self.assertEqual(out[3], "ProxyError True")

    def test_biomni_runtime_reaches_listed_host_and_nothing_else(self):
        sid = requests.post(self.url + "/start_runtime", json={}, timeout=60).json()["session_id"]
        try:
            def execute(code):
                r = requests.post(self.url + "/execute", json={"session_id": sid, "code": code, "timeout_seconds": 30},
                                  timeout=90)
                self.assertEqual(r.status_code, 200, r.text)
                return r.json()["output"]
            out = execute(FETCH + "print(fetch('http://127.0.0.1:%d/gene/EGFR'))" % self.http)
            self.assertIn('"symbol": "EGFR"', out)
            self.assertTrue(out.startswith("200 - "), out)
            self.assertRegex(execute("print(fetch('http://169.254.169.254/'))"), r"^403 not_listed ")
            # a #!BASH cell: curl finds the proxy in the same environment
            self.assertEqual(execute("#!BASH\ncurl -sS http://127.0.0.1:%d/gene/KRAS" % self.http),
                             '{"symbol": "KRAS", "chromosome": "17", "source": "stand-in"}')
            out = execute("#!BASH\ncurl -s -o /dev/null -w '%%{http_code}\\n' http://127.0.0.1:%d/; "
                          "curl -s http://169.254.169.254/latest/" % self.spare)
            self.assertEqual(out.splitlines()[0], "403")
            self.assertIn("vivarium egress: not_listed", out)
        finally:
            requests.post(self.url + "/delete_runtime", json={"session_id": sid}, timeout=10)
        lines = [l for l in self.log_lines() if l["job"] == sid]
        self.assertGreaterEqual(len(lines), 5, lines)
        self.assertTrue(all(l["peer"] == "http:127.0.0.1" for l in lines), lines)
        self.assertEqual(sum(l["allowed"] and l["port"] == self.http for l in lines), 2, lines)

    def test_egress_log_names_job_and_http_client(self):
        marker = "/count?%d" % time.time_ns()
        self.run_python("print(fetch('http://127.0.0.1:%d%s'))\nprint(fetch('http://127.0.0.1:%d/'))"
                        % (self.http, marker, self.spare))
        lines = self.log_lines()
        allowed = [l for l in lines if l["allowed"] and l["port"] == self.http and l["method"] == "GET"]
        self.assertTrue(allowed, lines)
        mine = allowed[-1]
        self.assertRegex(mine["job"], r"^j-[0-9]+$")
        self.assertEqual((mine["peer"], mine["event"], mine["host"], mine["addr"]),
                         ("http:127.0.0.1", "egress", "127.0.0.1", "127.0.0.1"))
        self.assertGreater(mine["bytes_down"], 0)
        refused = [l for l in lines if l["job"] == mine["job"] and not l["allowed"]]
        self.assertEqual([(l["port"], l["reason"], l["peer"]) for l in refused], [(self.spare, "not_listed", "http:127.0.0.1")])

    def test_builtin_python_has_no_network(self):
        code = ("import os, socket\n"
                "print(os.environ.get('HTTP_PROXY'), os.environ.get('HTTPS_PROXY'))\n"
                "print(fetch('http://127.0.0.1:%d/gene/TP53'))\n"
                "s = socket.socket(socket.AF_INET)\n"  # the socket family itself is refused
                % self.http)
        r = self.run_python(code, self.plain_url)
        out = r["run_result"]["stdout"].splitlines()
        self.assertEqual(out[:2], ["None None", "ERROR URLError"], r)
        self.assertIn("PermissionError", r["run_result"]["stderr"])
        self.assertEqual(r["status"], "Failed")
        sid = requests.post(self.plain_url + "/start_runtime", json={}, timeout=60).json()["session_id"]
        out = requests.post(self.plain_url + "/execute", json={"session_id": sid, "code": "#!BASH\ncurl -sS -m 5 "
                            "http://127.0.0.1:%d/gene/TP53; echo rc=$?" % self.http}, timeout=60).json()["output"]
        requests.post(self.plain_url + "/delete_runtime", json={"session_id": sid}, timeout=10)
        self.assertNotIn("stand-in", out)
        self.assertRegex(out, r"rc=[1-9]")

    def test_policies_answer_reports_the_network(self):
        on, off = vivd_policies(self.sock), vivd_policies(self.plain_sock)
        self.assertEqual(on["python"]["network"], {"egress": ["127.0.0.1:%d" % self.http, "127.0.0.1:%d" % self.https],
                                                   "max_connections": 4, "max_bytes": 256 << 20,
                                                   "connection_ms": 60000, "header_ms": 5000})
        self.assertEqual((on["shell"]["network"], off["python"]["network"], off["r"]["network"]), ("none", "none", "none"))


if __name__ == "__main__":
    unittest.main()
