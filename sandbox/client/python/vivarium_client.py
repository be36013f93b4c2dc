"""Client for vivd, the vivarium sandbox daemon (Python 3.11, standard library only).

Protocol
--------
Newline-delimited JSON over a Unix stream socket (or TCP): one JSON object per
line in each direction.  Every request carries an integer "id" chosen by the
client; the response carries the same "id".  Responses may arrive in any
order, so a client may pipeline many requests on one connection.

    -> {"id":7,"op":"exec","tool":"python","code":"print(1+1)","timeout_ms":5000}
    <- {"id":7,"ok":true,"exit_code":0,"signal":0,"timed_out":false,
        "stdout":"2\\n","stderr":"","stdout_dropped":0,"stderr_dropped":0,
        "wall_ms":4.1,"cpu_ms":2.0,"max_rss_kb":9120,"tool":"python"}

    -> {"id":8,"op":"session_open","tool":"python"}
    <- {"id":8,"ok":true,"session":"s-..."}
    -> {"id":9,"op":"exec","session":"s-...","code":"x=3"}
    -> {"id":10,"op":"session_close","session":"s-..."}
    -> {"id":11,"op":"stats"}  {"id":12,"op":"policies"}  {"id":13,"op":"ping"}

"exit_code" is null when a signal ended the job.  An exec in a session whose
call overran its deadline has "session_lost": true (the session is gone).
Failures look like {"id":7,"ok":false,"error":{"code":"busy","message":"..."}};
codes include bad_request, busy, unknown_op, not_found, session_lost,
zygote_lost, timeout, internal.  A
request line the server cannot parse is answered with "id": null.

Over TCP the first line the client sends is {"token":"<secret>"}; the server
answers {"ok":true} or closes the connection.

Usage
-----
    from vivarium_client import Client, AsyncClient, VivdError

    with Client("/path/to/vivd.sock") as c:
        r = c.exec("python", "print(1+1)", timeout_ms=5000)
        print(r["stdout"], r["exit_code"])

        s = c.session_open("python")
        c.exec(None, "x = 3", session=s)
        print(c.exec(None, "print(x)", session=s)["stdout"])
        c.session_close(s)

        futs = [c.submit("exec", tool="python", code=f"print({i})") for i in range(10)]
        outs = [f.result() for f in futs]

    async def main():
        async with await AsyncClient.connect(tcp="127.0.0.1:7070", token="...") as c:
            rs = await asyncio.gather(*(c.exec("python", f"print({i})") for i in range(50)))

Failures: a response with "ok": false raises VivdError (.code, .message,
.response).  A lost connection fails every pending request with
ConnectionError.  A request with timeout_ms waits at most
timeout_ms/1000 + deadline_margin seconds, then raises TimeoutError.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import socket
import threading
from typing import Any

__all__ = [
    "AsyncClient",
    "Client",
    "DEFAULT_DEADLINE_MARGIN",
    "MAX_LINE_BYTES",
    "ProtocolError",
    "VivdError",
]

# A job's output is capped by its policy, so a response line beyond this means
# the stream is corrupt rather than that the job printed a lot.
MAX_LINE_BYTES = 64 * 1024 * 1024

# vivd enforces timeout_ms itself; the client waits this much longer so the
# server's own (more informative) timed_out response normally wins the race.
DEFAULT_DEADLINE_MARGIN = 5.0

# Connecting and the TCP token exchange should never take long; bound them even
# when the caller asked for no per-request timeout, so a dead server is noticed.
_CONNECT_TIMEOUT = 30.0


class VivdError(Exception):
    """vivd answered a request with "ok": false."""

    def __init__(self, code: str, message: str, response: dict | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.response = response


class ProtocolError(ConnectionError):
    """The server broke the framing (bad JSON, over-long line).

    A subclass of ConnectionError because the connection cannot be trusted
    afterwards and is dropped, failing every pending request.
    """


def _encode(obj: dict) -> bytes:
    # ensure_ascii keeps every line pure ASCII, so no multi-byte sequence can
    # ever be split by the server's line reader.
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode("ascii")


def _decode(line: bytes) -> dict:
    try:
        msg = json.loads(line)
    except ValueError as e:
        raise ProtocolError(f"vivd sent a line that is not JSON: {e}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"vivd sent a JSON {type(msg).__name__}, not an object")
    return msg


def _split_hostport(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"tcp address must be 'host:port', got {addr!r}")
    if host.startswith("[") and host.endswith("]"):  # [::1]:7070
        host = host[1:-1]
    return host, int(port)


def default_socket() -> str:
    """Where vivd listens unless told otherwise (the same rule as the C client):
    $VIV_SOCKET, else $XDG_RUNTIME_DIR/vivd.sock, else /tmp/vivd-<uid>.sock."""
    if os.environ.get("VIV_SOCKET"):
        return os.environ["VIV_SOCKET"]
    if os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "vivd.sock")
    return f"/tmp/vivd-{os.getuid()}.sock"


def _check_endpoint(socket_path: str | None, tcp: str | None, token: str | None,
                    timeout: float | None = None) -> None:
    # Checked here, with the argument's name, rather than failing deep inside socket or json.
    if socket_path is not None and not isinstance(socket_path, (str, os.PathLike)):
        raise TypeError(f"socket_path must be a str or path, not {type(socket_path).__name__}")
    if tcp is not None and not isinstance(tcp, str):
        raise TypeError(f"tcp must be a 'HOST:PORT' str, not {type(tcp).__name__}")
    if token is not None and not isinstance(token, str):
        raise TypeError(f"token must be a str, not {type(token).__name__}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}")
    if socket_path is not None and tcp is not None:
        raise ValueError("give at most one of socket_path or tcp")
    if tcp is not None and token is None:
        raise ValueError("a TCP connection to vivd needs a token")


def _unreachable(e: OSError, where: str, is_unix: bool) -> OSError:
    """The same kind of error (callers may catch FileNotFoundError or
    ConnectionRefusedError), with the address and what to do about it."""
    hint = f"is vivd running at {where}?"
    if is_unix:
        hint += f" (start it with: viv sandbox --socket {where})"
    return type(e)(e.errno, f"cannot connect to {where}: {e.strerror or e}; {hint}")


def _outcome(resp: dict) -> dict:
    """The response itself on success; the VivdError to raise on failure."""
    if resp.get("ok") is True:
        return resp
    err = resp.get("error")
    if not isinstance(err, dict):
        err = {}
    return VivdError(str(err.get("code", "internal")), str(err.get("message", "")), resp)


def decode_files(resp: dict) -> dict[str, bytes]:
    """The fetched files of an exec response ("files": name -> base64) as bytes."""
    return {name: base64.b64decode(b64) for name, b64 in (resp.get("files") or {}).items()}


def _exec_fields(tool: str | None, code: str, timeout_ms: int | None,
                 session: str | None, stdin: str | None = None,
                 files: dict[str, bytes | str] | None = None,
                 fetch_files: list[str] | None = None) -> dict:
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, not {type(code).__name__}")
    if tool is not None and not isinstance(tool, str):
        raise TypeError(f"tool must be a str such as 'python', not {type(tool).__name__}")
    if session is not None and not isinstance(session, str):
        raise TypeError(f"session must be the str id open_session returned, not {type(session).__name__}")
    if timeout_ms is not None and (isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms < 1):
        raise ValueError(f"timeout_ms must be a positive int of milliseconds or None, not {timeout_ms!r}")
    fields: dict[str, Any] = {"code": code}
    # stdin is text; files are bytes (str is sent as UTF-8), base64 on the
    # wire; fetched files come back in the answer's "files" (decode_files).
    if stdin is not None:
        if not isinstance(stdin, str):
            raise TypeError("stdin must be a str (send bytes as a file)")
        fields["stdin"] = stdin
    if files is not None:
        fields["files"] = {name: base64.b64encode(data.encode() if isinstance(data, str) else bytes(data)).decode()
                           for name, data in files.items()}
    if fetch_files is not None:
        fields["fetch_files"] = [str(name) for name in fetch_files]
    # A session already fixes its tool, and the protocol's session exec carries
    # no "tool", so the argument is not sent there.
    if session is not None:
        fields["session"] = session
    elif tool is None:
        raise ValueError("exec needs a tool unless it runs in a session")
    else:
        fields["tool"] = tool
    if timeout_ms is not None:
        fields["timeout_ms"] = int(timeout_ms)
    return fields


def _strip(resp: dict) -> dict:
    return {k: v for k, v in resp.items() if k not in ("id", "ok")}


def _handshake_result(line: bytes | None) -> None:
    if not line:
        raise ConnectionError("vivd closed the connection during the token handshake "
                              "(wrong token?)")
    resp = _decode(line)
    result = _outcome(resp)
    if isinstance(result, VivdError):
        raise result


def _fresh(err: BaseException) -> BaseException:
    # Each waiter gets its own exception object: one instance raised in many
    # threads at once would have its traceback rewritten under their feet.
    try:
        copy = type(err)(*err.args)
    except Exception:
        copy = ConnectionError(str(err))
    copy.__cause__ = err.__cause__
    return copy


def _as_connection_error(e: BaseException) -> ConnectionError:
    if isinstance(e, ConnectionError):
        return e
    wrapped = ConnectionError(f"vivd connection failed: {e!r}")
    wrapped.__cause__ = e
    return wrapped


class _Base:
    def __init__(self, timeout: float | None, deadline_margin: float, max_line_bytes: int):
        self.timeout = timeout
        self.deadline_margin = deadline_margin
        self.max_line_bytes = max_line_bytes
        self._next_id = 1
        self._pending: dict[int, Any] = {}
        self._dead: BaseException | None = None  # why the connection is unusable
        #: Last response whose "id" matched nothing we sent (e.g. "id": null).
        self.last_unmatched: dict | None = None

    def _wait_seconds(self, timeout_ms: int | None) -> float | None:
        if timeout_ms is not None:
            return timeout_ms / 1000.0 + self.deadline_margin
        return self.timeout

    def _new_request(self, op: str, fields: dict) -> tuple[int, bytes]:
        if "id" in fields or "op" in fields:
            raise TypeError("id and op are set by the client")
        rid = self._next_id
        self._next_id += 1
        req = {"id": rid, "op": op}
        req.update((k, v) for k, v in fields.items() if v is not None)
        return rid, _encode(req)

    def _take_matching(self, msg: dict):
        rid = msg.get("id")
        if not isinstance(rid, int) or isinstance(rid, bool):
            self.last_unmatched = msg
            return None
        # A miss is normal: the caller gave up (deadline) before the answer came.
        return self._pending.pop(rid, None)


class Client(_Base):
    """Blocking, thread-safe client; one background thread reads responses.

    timeout: seconds to wait for a response to a request without timeout_ms
    (None: until it comes or the connection drops); also bounds connecting.
    deadline_margin: extra seconds beyond timeout_ms before TimeoutError.
    """

    def __init__(self, socket_path: str | None = None, *, tcp: str | None = None,
                 token: str | None = None, timeout: float | None = None,
                 deadline_margin: float = DEFAULT_DEADLINE_MARGIN,
                 max_line_bytes: int = MAX_LINE_BYTES):
        _check_endpoint(socket_path, tcp, token, timeout)
        if socket_path is None and tcp is None:
            socket_path = default_socket()
        super().__init__(timeout, deadline_margin, max_line_bytes)
        # Guards _pending, _next_id and _dead together, so a request can never be
        # registered after the reader has failed everything and exited.
        self._lock = threading.Lock()
        # Requests from several threads must not interleave their bytes.
        self._send_lock = threading.Lock()
        self._closed = False
        connect_timeout = timeout if timeout is not None else _CONNECT_TIMEOUT
        if tcp is not None:
            try:
                self._sock = socket.create_connection(_split_hostport(tcp), timeout=connect_timeout)
            except OSError as e:
                if isinstance(e, TimeoutError):
                    raise
                raise _unreachable(e, tcp, False) from e
        else:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.settimeout(connect_timeout)
        try:
            if tcp is None:
                try:
                    self._sock.connect(os.fspath(socket_path))
                except (FileNotFoundError, ConnectionRefusedError, PermissionError) as e:
                    raise _unreachable(e, os.fspath(socket_path), True) from e
            self._rfile = self._sock.makefile("rb")
            if tcp is not None:
                self._sock.sendall(_encode({"token": token}))
                _handshake_result(self._readline())
            self._sock.settimeout(None)  # the reader blocks; deadlines live with callers
        except BaseException:
            self._sock.close()
            raise
        self._reader = threading.Thread(target=self._read_loop, name="vivd-reader", daemon=True)
        self._reader.start()

    # -- plumbing ---------------------------------------------------------

    def _readline(self) -> bytes | None:
        line = self._rfile.readline(self.max_line_bytes + 1)
        if line.endswith(b"\n"):
            return line
        if len(line) > self.max_line_bytes:
            raise ProtocolError(f"vivd sent a line longer than {self.max_line_bytes} bytes")
        return None  # EOF, possibly mid-line: the partial response is useless

    def _read_loop(self) -> None:
        try:
            while True:
                line = self._readline()
                if line is None:
                    raise ConnectionError("vivd closed the connection")
                msg = _decode(line)
                with self._lock:
                    fut = self._take_matching(msg)
                # set_running_or_notify_cancel is False for a future the caller
                # cancelled; afterwards the caller can no longer cancel it.
                if fut is not None and fut.set_running_or_notify_cancel():
                    result = _outcome(msg)
                    if isinstance(result, VivdError):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
        except BaseException as e:
            self._fail_all(_as_connection_error(e))
            # Stop the peer from waiting on a connection nobody reads any more.
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _fail_all(self, err: BaseException) -> None:
        with self._lock:
            if self._dead is None:
                self._dead = err
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            if fut.set_running_or_notify_cancel():
                fut.set_exception(_fresh(self._dead))

    def _forget(self, rid: int) -> None:
        with self._lock:
            self._pending.pop(rid, None)

    def submit(self, op: str, /, **fields: Any) -> concurrent.futures.Future:
        """Send one request now; the Future resolves to the response dict.

        The Future raises VivdError for "ok": false and ConnectionError if the
        connection drops.  Fields that are None are left out.  Cancel a Future
        you stop waiting for, so its id is forgotten.
        """
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._dead is not None:
                raise _fresh(self._dead)
            rid, data = self._new_request(op, fields)
            fut.request_id = rid
            # Registered before sending: the answer may beat sendall's return.
            self._pending[rid] = fut
        fut.add_done_callback(lambda f: f.cancelled() and self._forget(rid))
        try:
            with self._send_lock:
                self._sock.sendall(data)
        except OSError as e:
            self._forget(rid)
            # Wake the reader so every other pending request fails now too.
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            with self._lock:
                dead = self._dead
            if dead is not None:
                raise _fresh(dead) from e
            raise ConnectionError(f"sending to vivd failed: {e!r}") from e
        return fut

    def _call(self, op: str, wait: float | None, **fields: Any) -> dict:
        fut = self.submit(op, **fields)
        try:
            return fut.result(timeout=wait)
        except concurrent.futures.TimeoutError:
            if fut.cancel():  # the cancel callback forgets the id
                raise TimeoutError(f"no response from vivd to {op} request "
                                   f"{fut.request_id} within {wait:.3g} s") from None
            # The answer arrived just as the wait expired and is being delivered
            # right now; the bound only guards against a wedged reader.
            return fut.result(timeout=1.0)

    # -- API ----------------------------------------------------------------

    def exec(self, tool: str | None, code: str, timeout_ms: int | None = None,
             session: str | None = None, *, stdin: str | None = None,
             files: dict[str, bytes | str] | None = None, fetch_files: list[str] | None = None) -> dict:
        """Run code with a tool (or in a session); return the response dict.
        stdin, files (written into /work first) and fetch_files (read back
        after; see decode_files) are for one-shot jobs."""
        fields = _exec_fields(tool, code, timeout_ms, session, stdin, files, fetch_files)  # checks the arguments first
        return self._call("exec", self._wait_seconds(timeout_ms), **fields)

    def session_open(self, tool: str = "python") -> str:
        resp = self._call("session_open", self.timeout, tool=tool)
        sid = resp.get("session")
        if not isinstance(sid, str):
            raise VivdError("internal", "session_open response has no session id", resp)
        return sid

    def session_close(self, session: str) -> None:
        self._call("session_close", self.timeout, session=session)

    def ping(self) -> dict:
        return self._call("ping", self.timeout)

    def stats(self) -> dict:
        return _strip(self._call("stats", self.timeout))

    def policies(self) -> dict | list:
        """The "policies" member of the response, or the whole response."""
        resp = self._call("policies", self.timeout)
        return resp["policies"] if "policies" in resp else _strip(resp)

    def close(self) -> None:
        """Close the connection; pending requests fail with ConnectionError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._fail_all(ConnectionError("vivd client closed"))
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # unblocks the reader's recv
        except OSError:
            pass
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=5.0)
        # Closing the buffered reader waits for its lock, which a reader thread
        # still stuck in recv holds; the socket close alone cannot block.
        if not self._reader.is_alive():
            self._rfile.close()
        self._sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """asyncio client: one reader task dispatches responses to futures by id.

    Create it with ``await AsyncClient.connect(...)``; arguments as for Client.
    All methods are coroutines and may run concurrently on one connection.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 timeout: float | None = None,
                 deadline_margin: float = DEFAULT_DEADLINE_MARGIN,
                 max_line_bytes: int = MAX_LINE_BYTES):
        super().__init__(timeout, deadline_margin, max_line_bytes)
        self._reader = reader
        self._writer = writer
        self._closed = False
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(cls, socket_path: str | None = None, *, tcp: str | None = None,
                      token: str | None = None, timeout: float | None = None,
                      deadline_margin: float = DEFAULT_DEADLINE_MARGIN,
                      max_line_bytes: int = MAX_LINE_BYTES) -> "AsyncClient":
        _check_endpoint(socket_path, tcp, token, timeout)
        if socket_path is None and tcp is None:
            socket_path = default_socket()
        connect_timeout = timeout if timeout is not None else _CONNECT_TIMEOUT
        # The stream limit is what turns an over-long line into LimitOverrunError.
        if tcp is not None:
            host, port = _split_hostport(tcp)
            opening = asyncio.open_connection(host, port, limit=max_line_bytes)
        else:
            opening = asyncio.open_unix_connection(socket_path, limit=max_line_bytes)
        try:
            reader, writer = await asyncio.wait_for(opening, connect_timeout)
        except (FileNotFoundError, ConnectionRefusedError, PermissionError) as e:
            raise _unreachable(e, tcp if tcp is not None else os.fspath(socket_path), tcp is None) from e
        try:
            if tcp is not None:
                writer.write(_encode({"token": token}))
                await writer.drain()
                try:
                    line = await asyncio.wait_for(reader.readuntil(b"\n"), connect_timeout)
                except asyncio.IncompleteReadError:
                    line = None
                _handshake_result(line)
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer, timeout=timeout, deadline_margin=deadline_margin,
                   max_line_bytes=max_line_bytes)

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    line = await self._reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    raise ConnectionError("vivd closed the connection") from None
                except asyncio.LimitOverrunError:
                    raise ProtocolError(
                        f"vivd sent a line longer than {self.max_line_bytes} bytes") from None
                msg = _decode(line)
                fut = self._take_matching(msg)
                if fut is not None and not fut.done():
                    result = _outcome(msg)
                    if isinstance(result, VivdError):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
        except asyncio.CancelledError:
            self._fail_all(ConnectionError("vivd client closed"))
            raise
        except Exception as e:
            self._fail_all(_as_connection_error(e))
            self._writer.close()

    def _fail_all(self, err: BaseException) -> None:
        if self._dead is None:
            self._dead = err
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(_fresh(self._dead))

    async def submit(self, op: str, /, **fields: Any) -> asyncio.Future:
        """Send one request; return a Future resolving to the response dict.

        Awaiting here only waits for the socket buffer to drain (back-pressure),
        not for the response.  Cancelling the Future forgets its id.
        """
        if self._dead is not None:
            raise _fresh(self._dead)
        rid, data = self._new_request(op, fields)
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        fut.add_done_callback(lambda f: f.cancelled() and self._pending.pop(rid, None))
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, RuntimeError) as e:
            self._pending.pop(rid, None)
            if self._dead is not None:
                raise _fresh(self._dead) from e
            raise ConnectionError(f"sending to vivd failed: {e!r}") from e
        return fut

    async def _call(self, op: str, wait: float | None, **fields: Any) -> dict:
        fut = await self.submit(op, **fields)
        if wait is None:
            return await fut
        try:
            # wait_for cancels fut on expiry, and the cancel forgets the id.
            return await asyncio.wait_for(fut, wait)
        except TimeoutError:
            if fut.cancelled():
                raise TimeoutError(f"no response from vivd to {op} request "
                                   f"within {wait:.3g} s") from None
            raise

    async def exec(self, tool: str | None, code: str, timeout_ms: int | None = None,
                   session: str | None = None, *, stdin: str | None = None,
                   files: dict[str, bytes | str] | None = None, fetch_files: list[str] | None = None) -> dict:
        fields = _exec_fields(tool, code, timeout_ms, session, stdin, files, fetch_files)  # checks the arguments first
        return await self._call("exec", self._wait_seconds(timeout_ms), **fields)

    async def session_open(self, tool: str = "python") -> str:
        resp = await self._call("session_open", self.timeout, tool=tool)
        sid = resp.get("session")
        if not isinstance(sid, str):
            raise VivdError("internal", "session_open response has no session id", resp)
        return sid

    async def session_close(self, session: str) -> None:
        await self._call("session_close", self.timeout, session=session)

    async def ping(self) -> dict:
        return await self._call("ping", self.timeout)

    async def stats(self) -> dict:
        return _strip(await self._call("stats", self.timeout))

    async def policies(self) -> dict | list:
        resp = await self._call("policies", self.timeout)
        return resp["policies"] if "policies" in resp else _strip(resp)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._fail_all(ConnectionError("vivd client closed"))
        self._reader_task.cancel()
        self._writer.close()
        # gather with return_exceptions so the reader's CancelledError is not
        # mistaken for a cancellation of the task calling close().
        await asyncio.gather(self._reader_task, return_exceptions=True)
        try:
            await self._writer.wait_closed()
        except (OSError, RuntimeError):
            pass

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
