"""The Python client against the real daemon (bin/vivd): sync, pipelined
threads, asyncio, errors. Usage: test_client_vivd.py [VIVD_BINARY]"""
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "sandbox", "client", "python"))
from vivarium_client import AsyncClient, Client, VivdError, decode_files  # noqa: E402

VIVD = sys.argv.pop(1) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "bin/vivd"


class RealVivdTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        cls.sock = os.path.join(cls.dir, "vivd.sock")
        cls.proc = subprocess.Popen([VIVD, "--socket", cls.sock, "--log", os.path.join(cls.dir, "log")])
        for _ in range(500):
            if os.path.exists(cls.sock):
                break
            time.sleep(0.01)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.assert_exit = cls.proc.wait(timeout=20)

    def test_exec_and_errors(self):
        with Client(self.sock) as c:
            r = c.exec("python", "print(sum(range(10)))", timeout_ms=10000)
            self.assertEqual(r["stdout"], "45\n")
            self.assertEqual(r["exit_code"], 0)
            r = c.exec("shell", "sleep 5", timeout_ms=300)
            self.assertTrue(r["timed_out"])
            with self.assertRaises(VivdError) as e:
                c.exec("cobol", "x")
            self.assertEqual(e.exception.code, "bad_request")

    def test_stdin_files_fetch(self):
        with Client(self.sock) as c:
            code = "import sys\nd = open('in/x.bin', 'rb').read()\nopen('out.bin', 'wb').write(d + sys.stdin.read().encode())"
            r = c.exec("python", code, timeout_ms=10000, stdin="tail", files={"in/x.bin": b"\x00\xff"},
                       fetch_files=["out.bin", "missing"])
            self.assertEqual(decode_files(r), {"out.bin": b"\x00\xfftail"})
            self.assertIn("missing", r["fetch_errors"])
            with self.assertRaises(VivdError) as e:
                c.exec("python", "1", files={"../escape": b"x"})
            self.assertEqual(e.exception.code, "bad_request")

    def test_output_whole(self):
        # NUL and what follows it, invalid UTF-8 (U+FFFD per byte), C0/C1 controls
        code = ("import sys\nprint('a\\x00b')\nsys.stdout.flush()\n"
                "sys.stdout.buffer.write(b'\\xff\\xfe\\x00x\\xc2\\x85\\x01')\nsys.stderr.write('e\\x00f')")
        with Client(self.sock) as c:
            r = c.exec("python", code, timeout_ms=10000)
            self.assertEqual(r["stdout"], "a\x00b\n\ufffd\ufffd\x00x\x85\x01")
            self.assertEqual(r["stderr"], "e\x00f")

    def test_session_keeps_state(self):
        with Client(self.sock) as c:
            s = c.session_open("python")
            self.assertEqual(c.exec(None, "x = 6 * 7", session=s, timeout_ms=10000)["exit_code"], 0)
            self.assertEqual(c.exec(None, "print(x)", session=s, timeout_ms=10000)["stdout"], "42\n")
            c.session_close(s)
            with self.assertRaises(VivdError) as e:
                c.exec(None, "print(x)", session=s, timeout_ms=10000)
            self.assertEqual(e.exception.code, "not_found")

    def test_threads_share_one_connection(self):
        out = {}
        with Client(self.sock) as c:
            def work(i):
                out[i] = c.exec("shell", f"echo {i}", timeout_ms=10000)["stdout"]
            ts = [threading.Thread(target=work, args=(i,)) for i in range(16)]
            [t.start() for t in ts]
            [t.join() for t in ts]
        self.assertEqual(out, {i: f"{i}\n" for i in range(16)})

    def test_asyncio(self):
        async def main():
            c = await AsyncClient.connect(self.sock)
            rs = await asyncio.gather(*[c.exec("shell", f"echo a{i}", timeout_ms=10000) for i in range(20)])
            await c.close()
            return [r["stdout"] for r in rs]
        self.assertEqual(asyncio.run(main()), [f"a{i}\n" for i in range(20)])


if __name__ == "__main__":
    unittest.main()
