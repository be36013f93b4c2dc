#!/usr/bin/env python3
"""Tests for sandbox/client/python/vivarium_client.py against a fake, in-process vivd.

The fake speaks the real wire protocol (newline-delimited JSON over a Unix or
TCP socket) and answers every request from its own thread, so responses come
back in whatever order the handlers finish; some tests force a strict reverse
order.  Run:  python3 test/python/test_client.py
"""

import asyncio
import concurrent.futures
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "sandbox", "client", "python"))

from vivarium_client import (  # noqa: E402
    AsyncClient, Client, ProtocolError, VivdError)

# Upper bound for anything a test waits on, so a bug shows up as a failure
# rather than a hung test run.
WAIT = 5.0


def exec_response(rid, stdout, **extra):
    resp = {"id": rid, "ok": True, "exit_code": 0, "signal": 0, "timed_out": False,
            "stdout": stdout, "stderr": "", "stdout_dropped": 0, "stderr_dropped": 0,
            "wall_ms": 1.5, "cpu_ms": 1.0, "max_rss_kb": 9000, "tool": "python"}
    resp.update(extra)
    return resp


def error_response(rid, code, message):
    return {"id": rid, "ok": False, "error": {"code": code, "message": message}}


class FakeConn:
    """One accepted connection; handlers answer through it from any thread."""

    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.wlock = threading.Lock()

    def send(self, obj):
        # record first: the client may see the answer (and the test check
        # `sent`) before this thread runs again
        with self.server.lock:
            self.server.sent.append(obj.get("id"))
        self.send_raw((json.dumps(obj) + "\n").encode())

    def send_raw(self, data):
        with self.wlock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # the client went away; nothing to tell it

    def drop(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class FakeVivd:
    """Speaks vivd's protocol.  The default handler reads exec "code" as a script:

    "sleep S;rest" answer after S seconds   "hang"  never answer
    "die"          drop the connection      "fail"  error "busy"
    "big"          a 4000-byte line         "nullid" an id:null error first
    "crafted:{json}" merge json into the exec response
    anything else  stdout "ran <code>\\n"; in a session, all codes so far joined by "|"
    """

    def __init__(self, *, tcp=False, token=None, handler=None):
        self.tmp = tempfile.TemporaryDirectory()
        self.tcp = tcp
        self.token = token
        self.handler = handler or self.default_handler
        self.lock = threading.Lock()
        self.requests = []      # parsed requests, arrival order
        self.sent = []          # ids of responses, send order
        self.first_lines = []   # first line of each connection (TCP mode)
        self.conns = []
        self.sessions = {}
        self.stopping = False
        if tcp:
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.bind(("127.0.0.1", 0))
            self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        else:
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.address = os.path.join(self.tmp.name, "vivd.sock")
            self.listener.bind(self.address)
        self.listener.listen(64)
        # A timeout lets the accept loop notice stop(); closing a socket does not
        # reliably wake a thread blocked in accept().
        self.listener.settimeout(0.05)
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self.stopping:
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn = FakeConn(self, sock)
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        rfile = conn.sock.makefile("rb")
        try:
            if self.tcp:
                first = rfile.readline()
                with self.lock:
                    self.first_lines.append(first)
                try:
                    ok = json.loads(first) == {"token": self.token}
                except ValueError:
                    ok = False
                if not ok:
                    conn.sock.close()
                    return
                conn.send_raw(b'{"ok":true}\n')
            for line in rfile:
                try:
                    req = json.loads(line)
                except ValueError:
                    conn.send(error_response(None, "bad_request", "not JSON"))
                    continue
                with self.lock:
                    self.requests.append(req)
                threading.Thread(target=self.handler, args=(conn, req), daemon=True).start()
        except OSError:
            pass

    def default_handler(self, conn, req):
        rid, op = req.get("id"), req.get("op")
        if op == "exec":
            code = req["code"]
            m = re.match(r"sleep ([0-9.]+);", code)
            if m:
                time.sleep(float(m.group(1)))
            if code == "hang":
                return
            if code == "die":
                conn.drop()
                return
            if code == "fail":
                conn.send(error_response(rid, "busy", "all workers busy"))
                return
            if code == "big":
                conn.send_raw((json.dumps(exec_response(rid, "x" * 4000)) + "\n").encode())
                return
            if code == "nullid":
                conn.send(error_response(None, "bad_request", "unparseable line"))
            if code.startswith("crafted:"):
                resp = exec_response(rid, "")
                resp.update(json.loads(code[len("crafted:"):]))
                conn.send(resp)
                return
            if "session" in req:
                with self.lock:
                    history = self.sessions.get(req["session"])
                    if history is not None:
                        history.append(code)
                        stdout = "|".join(history) + "\n"
                if history is None:
                    conn.send(error_response(rid, "not_found", "no such session"))
                else:
                    conn.send(exec_response(rid, stdout))
                return
            conn.send(exec_response(rid, "ran %s\n" % code))
        elif op == "session_open":
            with self.lock:
                sid = "s-%d" % (len(self.sessions) + 1)
                self.sessions[sid] = []
            conn.send({"id": rid, "ok": True, "session": sid})
        elif op == "session_close":
            with self.lock:
                found = self.sessions.pop(req.get("session"), None) is not None
            conn.send({"id": rid, "ok": True} if found
                      else error_response(rid, "not_found", "no such session"))
        elif op == "ping":
            conn.send({"id": rid, "ok": True})
        elif op == "stats":
            with self.lock:
                n = len(self.requests)
            conn.send({"id": rid, "ok": True, "requests": n, "workers": 4})
        elif op == "policies":
            conn.send({"id": rid, "ok": True, "policies": ["python", "bash"]})
        else:
            conn.send(error_response(rid, "unknown_op", "unknown op %r" % op))

    def wait_requests(self, n):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return
            time.sleep(0.005)
        raise AssertionError("fake vivd saw %d requests, wanted %d" % (len(self.requests), n))

    def drop_all(self):
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            c.drop()

    def stop(self):
        self.stopping = True
        self.drop_all()
        self.thread.join(WAIT)
        for c in self.conns:
            c.sock.close()
        self.listener.close()
        self.tmp.cleanup()


def reverse_batch_handler(server, n):
    """Hold exec requests until n have arrived, then answer newest first."""
    held = []

    def handler(conn, req):
        with server.lock:
            held.append(req)
            if len(held) < n:
                return
            batch = list(held)
        for r in reversed(batch):
            conn.send(exec_response(r["id"], "ran %s\n" % r["code"]))
    return handler


class ServerTest:
    """Mixin: a fresh fake vivd per test."""

    def make_server(self, **kw):
        server = FakeVivd(**kw)
        self.addCleanup(server.stop)
        return server


class SyncClientTest(ServerTest, unittest.TestCase):

    def setUp(self):
        self.server = self.make_server()
        self.client = Client(self.server.address, timeout=WAIT)
        self.addCleanup(self.client.close)

    def test_exec(self):
        r = self.client.exec("python", "print(1+1)", timeout_ms=5000)
        self.assertTrue(r["ok"])
        self.assertEqual(r["stdout"], "ran print(1+1)\n")
        self.assertEqual(r["exit_code"], 0)
        req = self.server.requests[0]
        self.assertEqual(req["op"], "exec")
        self.assertEqual(req["tool"], "python")
        self.assertEqual(req["code"], "print(1+1)")
        self.assertEqual(req["timeout_ms"], 5000)
        self.assertIsInstance(req["id"], int)
        self.assertEqual(r["id"], req["id"])

    def test_exec_without_timeout_sends_none(self):
        self.client.exec("python", "x")
        self.assertNotIn("timeout_ms", self.server.requests[0])
        self.assertNotIn("session", self.server.requests[0])

    def test_ids_are_monotonic(self):
        for i in range(5):
            self.client.ping()
        ids = [r["id"] for r in self.server.requests]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), 5)

    def test_pipelined_answered_in_reverse(self):
        n = 10
        self.server.handler = reverse_batch_handler(self.server, n)
        futs = [self.client.submit("exec", tool="python", code="job%d" % i) for i in range(n)]
        results = [f.result(WAIT) for f in futs]
        for i, r in enumerate(results):
            self.assertEqual(r["stdout"], "ran job%d\n" % i)
            self.assertEqual(r["id"], futs[i].request_id)
        ids = [f.request_id for f in futs]
        self.assertEqual(self.server.sent, list(reversed(ids)))

    def test_threads_share_one_client(self):
        def work(i):
            delay = (i * 7 % 10) / 200
            r = self.client.exec("python", "sleep %g;t%d" % (delay, i), timeout_ms=2000)
            return r["stdout"]
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            outs = list(pool.map(work, range(64)))
        for i, out in enumerate(outs):
            self.assertEqual(out, "ran sleep %g;t%d\n" % ((i * 7 % 10) / 200, i))
        self.assertEqual(len(self.server.conns), 1)
        self.assertNotEqual(self.server.sent, sorted(self.server.sent))

    def test_error_response_raises_vivd_error(self):
        with self.assertRaises(VivdError) as cm:
            self.client.exec("python", "fail")
        e = cm.exception
        self.assertEqual(e.code, "busy")
        self.assertEqual(e.message, "all workers busy")
        self.assertFalse(e.response["ok"])
        self.assertEqual(e.response["id"], self.server.requests[0]["id"])
        fut = self.client.submit("frobnicate")
        with self.assertRaises(VivdError) as cm:
            fut.result(WAIT)
        self.assertEqual(cm.exception.code, "unknown_op")
        self.assertTrue(self.client.ping()["ok"])  # connection survives errors

    def test_null_id_response_is_ignored(self):
        r = self.client.exec("python", "nullid")
        self.assertEqual(r["stdout"], "ran nullid\n")
        self.assertIsNone(self.client.last_unmatched["id"])
        self.assertEqual(self.client.last_unmatched["error"]["code"], "bad_request")

    def test_connection_loss_fails_all_pending(self):
        futs = [self.client.submit("exec", tool="python", code="hang") for _ in range(3)]
        outcome = {}

        def blocked():
            try:
                self.client.exec("python", "hang")  # no deadline at all
            except BaseException as e:
                outcome["err"] = e
        t = threading.Thread(target=blocked, daemon=True)
        t.start()
        self.server.wait_requests(4)
        t0 = time.monotonic()
        self.server.drop_all()
        for f in futs:
            self.assertIsInstance(f.exception(WAIT), ConnectionError)
        t.join(WAIT)
        self.assertFalse(t.is_alive(), "exec without a deadline hung after connection loss")
        self.assertIsInstance(outcome["err"], ConnectionError)
        self.assertLess(time.monotonic() - t0, 1.0)
        with self.assertRaises(ConnectionError):
            self.client.ping()

    def test_server_closing_mid_request(self):
        with self.assertRaises(ConnectionError):
            self.client.exec("python", "die", timeout_ms=1000)

    def test_client_deadline(self):
        client = Client(self.server.address, deadline_margin=0.2)
        self.addCleanup(client.close)
        t0 = time.monotonic()
        with self.assertRaises(TimeoutError):
            client.exec("python", "sleep 0.6;late", timeout_ms=100)
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, 0.29)
        self.assertLess(elapsed, 0.6)
        self.assertEqual(client._pending, {})  # the id was forgotten
        time.sleep(0.5)  # let the late answer arrive; it must be dropped
        self.assertEqual(self.server.sent[0], self.server.requests[0]["id"])
        r = client.exec("python", "after", timeout_ms=1000)
        self.assertEqual(r["stdout"], "ran after\n")

    def test_default_timeout_for_requests_without_timeout_ms(self):
        client = Client(self.server.address, timeout=0.2)
        self.addCleanup(client.close)
        with self.assertRaises(TimeoutError):
            client.exec("python", "hang")
        self.assertTrue(client.ping()["ok"])

    def test_oversized_line_is_an_error(self):
        client = Client(self.server.address, max_line_bytes=1024, deadline_margin=0.5)
        self.addCleanup(client.close)
        with self.assertRaises(ProtocolError) as cm:
            client.exec("python", "big", timeout_ms=1000)
        self.assertIn("longer than 1024", str(cm.exception))
        with self.assertRaises(ConnectionError):
            client.ping()

    def test_sessions(self):
        sid = self.client.session_open("python")
        self.assertEqual(sid, "s-1")
        self.assertEqual(self.server.requests[0], {"id": self.server.requests[0]["id"],
                                                   "op": "session_open", "tool": "python"})
        self.client.exec(None, "x=3", session=sid)
        r = self.client.exec("python", "print(x)", session=sid)
        self.assertEqual(r["stdout"], "x=3|print(x)\n")
        req = self.server.requests[2]
        self.assertEqual(req["session"], sid)
        self.assertNotIn("tool", req)
        self.client.session_close(sid)
        self.assertEqual(self.server.requests[3]["op"], "session_close")
        with self.assertRaises(VivdError) as cm:
            self.client.exec(None, "print(x)", session=sid)
        self.assertEqual(cm.exception.code, "not_found")

    def test_stats_policies_ping(self):
        self.assertTrue(self.client.ping()["ok"])
        stats = self.client.stats()
        self.assertEqual(stats, {"requests": 2, "workers": 4})
        self.assertEqual(self.client.policies(), ["python", "bash"])

    def test_close_fails_pending_and_is_idempotent(self):
        fut = self.client.submit("exec", tool="python", code="hang")
        self.server.wait_requests(1)
        self.client.close()
        self.assertIsInstance(fut.exception(WAIT), ConnectionError)
        self.client.close()
        with self.assertRaises(ConnectionError):
            self.client.ping()

    def test_context_manager(self):
        with Client(self.server.address) as c:
            self.assertTrue(c.ping()["ok"])
        with self.assertRaises(ConnectionError):
            c.ping()

    def test_argument_checks(self):
        os.environ["VIV_SOCKET"] = "/nonexistent/vivd.sock"  # Client() uses the default socket
        self.addCleanup(os.environ.pop, "VIV_SOCKET", None)
        with self.assertRaises(FileNotFoundError):
            Client()
        with self.assertRaises(ValueError):
            Client(self.server.address, tcp="127.0.0.1:1", token="t")
        with self.assertRaises(ValueError):
            Client(tcp="127.0.0.1:1")  # TCP needs a token
        with self.assertRaises(ValueError):
            self.client.exec(None, "x")  # no tool and no session

    def test_missing_socket_names_path_and_hint(self):
        # the same exception type as before (callers catch it), now with the path and what to do
        with self.assertRaises(FileNotFoundError) as cm:
            Client("/no/such.sock")
        self.assertIn("/no/such.sock", str(cm.exception))
        self.assertIn("is vivd running at /no/such.sock?", str(cm.exception))

    def test_missing_socket_async(self):
        async def go():
            with self.assertRaises(FileNotFoundError) as cm:
                await AsyncClient.connect("/no/such.sock")
            self.assertIn("is vivd running at /no/such.sock?", str(cm.exception))
        asyncio.run(go())

    def test_bad_argument_types_fail_at_the_call(self):
        with self.assertRaisesRegex(TypeError, "socket_path must be a str"):
            Client(5)
        with self.assertRaisesRegex(ValueError, "timeout must be a positive number"):
            Client(self.server.address, timeout="soon")
        with self.assertRaisesRegex(TypeError, "tool must be a str"):
            self.client.exec(3, "print(1)")
        with self.assertRaisesRegex(TypeError, "code must be a str, not bytes"):
            self.client.exec("python", b"print(1)")
        with self.assertRaisesRegex(ValueError, "timeout_ms must be a positive int"):
            self.client.exec("python", "print(1)", timeout_ms="100")


class TcpTest(ServerTest, unittest.TestCase):

    def setUp(self):
        self.server = self.make_server(tcp=True, token="sekrit")

    def test_token_line_first(self):
        with Client(tcp=self.server.address, token="sekrit") as c:
            r = c.exec("python", "print(2)")
            self.assertEqual(r["stdout"], "ran print(2)\n")
        self.assertEqual(json.loads(self.server.first_lines[0]), {"token": "sekrit"})
        self.assertTrue(self.server.first_lines[0].endswith(b"\n"))
        self.assertEqual([q["op"] for q in self.server.requests], ["exec"])

    def test_wrong_token(self):
        with self.assertRaises(ConnectionError):
            Client(tcp=self.server.address, token="guess")
        self.assertEqual(json.loads(self.server.first_lines[0]), {"token": "guess"})

    def test_async_token_line_first(self):
        async def main():
            c = await AsyncClient.connect(tcp=self.server.address, token="sekrit")
            async with c:
                return await c.exec("python", "a")
        r = asyncio.run(main())
        self.assertEqual(r["stdout"], "ran a\n")
        self.assertEqual(json.loads(self.server.first_lines[0]), {"token": "sekrit"})

    def test_async_wrong_token(self):
        async def main():
            await AsyncClient.connect(tcp=self.server.address, token="guess")
        with self.assertRaises(ConnectionError):
            asyncio.run(main())


class AsyncClientTest(ServerTest, unittest.IsolatedAsyncioTestCase):

    async def asyncSetUp(self):
        self.server = self.make_server()
        self.client = await AsyncClient.connect(self.server.address, timeout=WAIT)

    async def asyncTearDown(self):
        await self.client.close()

    async def test_exec(self):
        r = await self.client.exec("python", "print(1)", timeout_ms=5000)
        self.assertEqual(r["stdout"], "ran print(1)\n")
        self.assertEqual(self.server.requests[0]["timeout_ms"], 5000)

    async def test_50_concurrent_over_one_connection(self):
        n = 50
        # Nothing is answered until all 50 are outstanding, so this only passes
        # if the client really has them in flight at once.
        self.server.handler = reverse_batch_handler(self.server, n)
        results = await asyncio.wait_for(
            asyncio.gather(*(self.client.exec("python", "job%d" % i) for i in range(n))), WAIT)
        self.assertEqual([r["stdout"] for r in results], ["ran job%d\n" % i for i in range(n)])
        self.assertEqual(len(self.server.conns), 1)
        ids = [q["id"] for q in self.server.requests]
        self.assertEqual(self.server.sent, list(reversed(ids)))

    async def test_concurrent_with_varied_delays(self):
        codes = ["sleep %g;c%d" % ((i * 13 % 10) / 100, i) for i in range(50)]
        t0 = time.monotonic()
        results = await asyncio.gather(*(self.client.exec("python", c, 2000) for c in codes))
        self.assertLess(time.monotonic() - t0, 1.5)  # serial would take ~2.3 s
        self.assertEqual([r["stdout"] for r in results], ["ran %s\n" % c for c in codes])

    async def test_error_response(self):
        with self.assertRaises(VivdError) as cm:
            await self.client.exec("python", "fail")
        self.assertEqual((cm.exception.code, cm.exception.message), ("busy", "all workers busy"))
        self.assertEqual(cm.exception.response["error"]["code"], "busy")
        fut = await self.client.submit("frobnicate")
        with self.assertRaises(VivdError) as cm:
            await fut
        self.assertEqual(cm.exception.code, "unknown_op")
        self.assertTrue((await self.client.ping())["ok"])

    async def test_connection_loss(self):
        tasks = [asyncio.ensure_future(self.client.exec("python", "hang")) for _ in range(5)]
        await asyncio.to_thread(self.server.wait_requests, 5)
        self.server.drop_all()
        done, pending = await asyncio.wait(tasks, timeout=WAIT)
        self.assertFalse(pending, "requests hung after connection loss")
        for t in done:
            self.assertIsInstance(t.exception(), ConnectionError)
        with self.assertRaises(ConnectionError):
            await self.client.ping()

    async def test_client_deadline(self):
        client = await AsyncClient.connect(self.server.address, deadline_margin=0.2)
        try:
            t0 = time.monotonic()
            with self.assertRaises(TimeoutError):
                await client.exec("python", "sleep 0.6;late", timeout_ms=100)
            self.assertLess(time.monotonic() - t0, 0.6)
            await asyncio.sleep(0)  # let the cancel callback run
            self.assertEqual(client._pending, {})
            await asyncio.sleep(0.5)
            r = await client.exec("python", "after", timeout_ms=1000)
            self.assertEqual(r["stdout"], "ran after\n")
        finally:
            await client.close()

    async def test_oversized_line(self):
        client = await AsyncClient.connect(self.server.address, max_line_bytes=1024,
                                           deadline_margin=0.5)
        try:
            with self.assertRaises(ProtocolError):
                await client.exec("python", "big", timeout_ms=1000)
        finally:
            await client.close()

    async def test_sessions(self):
        sid = await self.client.session_open()
        await self.client.exec(None, "import math", session=sid)
        r = await self.client.exec(None, "print(math.pi)", session=sid)
        self.assertEqual(r["stdout"], "import math|print(math.pi)\n")
        self.assertNotIn("tool", self.server.requests[1])
        await self.client.session_close(sid)
        with self.assertRaises(VivdError) as cm:
            await self.client.session_close(sid)
        self.assertEqual(cm.exception.code, "not_found")

    async def test_stats_policies(self):
        self.assertEqual(await self.client.policies(), ["python", "bash"])
        self.assertEqual((await self.client.stats())["workers"], 4)

    async def test_close_fails_pending(self):
        task = asyncio.ensure_future(self.client.exec("python", "hang"))
        await asyncio.to_thread(self.server.wait_requests, 1)
        await self.client.close()
        with self.assertRaises(ConnectionError):
            await asyncio.wait_for(task, WAIT)


class ExampleToolTest(ServerTest, unittest.TestCase):

    def setUp(self):
        self.server = self.make_server()
        os.environ["VIV_SOCKET"] = self.server.address
        self.addCleanup(os.environ.pop, "VIV_SOCKET", None)
        import example_agent_tool
        self.tool = example_agent_tool
        self.tool._reset()
        self.addCleanup(self.tool._reset)

    def test_run_python(self):
        self.assertEqual(self.tool.run_python("print(1)"), "ran print(1)")
        crafted = {"stdout": "partial\n", "stderr": "warn\n", "timed_out": True,
                   "wall_ms": 10000, "stdout_dropped": 123, "exit_code": None, "signal": 9}
        obs = self.tool.run_python("crafted:" + json.dumps(crafted))
        self.assertEqual(obs.splitlines()[:2], ["partial", "warn"])
        self.assertIn("123 stdout", obs)
        self.assertIn("timed out after 10000 ms", obs)
        self.assertIn("sandbox error busy", self.tool.run_python("fail"))

    def test_session(self):
        s = self.tool.PythonSession()
        self.assertEqual(s.run("x=3"), "x=3")
        self.assertEqual(s.run("print(x)"), "x=3|print(x)")
        lost = s.run('crafted:{"session_lost": true, "timed_out": true}')
        self.assertIn("session lost", lost)
        self.assertEqual(s.run("y=1"), "y=1")  # a fresh session
        s.close()
        self.assertEqual(self.server.sessions, {"s-1": ["x=3", "print(x)"]})


if __name__ == "__main__":
    unittest.main()
