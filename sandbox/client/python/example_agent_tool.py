"""Agent tool: run Python in the vivarium sandbox via vivd (paste into a framework).

run_python(code) is stateless; PythonSession().run(code) keeps variables
between calls.  vivd's socket: $VIV_SOCKET, else the default (see
vivarium_client.default_socket).
"""
import os

from vivarium_client import Client, VivdError

TIMEOUT_MS = 10_000
_client = None


def _vivd() -> Client:
    global _client  # one connection shared by every call; Client is thread-safe
    if _client is None:
        _client = Client()  # $VIV_SOCKET or the default socket
    return _client


def _reset() -> None:
    global _client  # reconnect on the next call; sessions died with the connection
    if _client is not None:
        _client.close()
    _client = None


def observation(r: dict) -> str:
    parts = [r.get("stdout", ""), r.get("stderr", "")]
    if r.get("stdout_dropped") or r.get("stderr_dropped"):
        parts.append(f"[output truncated: {r.get('stdout_dropped', 0)} stdout and "
                     f"{r.get('stderr_dropped', 0)} stderr bytes dropped]")
    if r.get("timed_out"):
        parts.append(f"[timed out after {r.get('wall_ms', 0):.0f} ms]")
    elif r.get("exit_code") is None and r.get("signal"):
        parts.append(f"[killed by signal {r['signal']}]")
    elif r.get("exit_code"):
        parts.append(f"[exit code {r['exit_code']}]")
    if r.get("session_lost"):
        parts.append("[session lost: earlier variables are gone]")
    return "\n".join(p.rstrip("\n") for p in parts if p) or "[no output]"


def _run(code: str, session: str | None = None) -> tuple[str, bool]:
    """The observation, and whether the session (if any) is still alive."""
    try:
        r = _vivd().exec("python", code, TIMEOUT_MS, session=session)
        return observation(r), not r.get("session_lost")
    except VivdError as e:
        return f"[sandbox error {e.code}: {e.message}]", e.code != "not_found"
    except OSError as e:  # no daemon, connection lost, no answer
        _reset()
        return f"[sandbox unavailable: {e}]", False


def run_python(code: str) -> str:
    """Run code in a fresh sandbox; return stdout + stderr as one observation."""
    return _run(code)[0]


class PythonSession:
    """Like run_python, but variables and imports persist across run() calls."""

    def __init__(self):
        self.session = None  # opened on first use, reopened after a loss

    def run(self, code: str) -> str:
        try:
            if self.session is None:
                self.session = _vivd().session_open("python")
        except VivdError as e:
            return f"[sandbox error {e.code}: {e.message}]"
        except OSError as e:  # no daemon, connection lost, no answer
            _reset()
            return f"[sandbox unavailable: {e}]"
        out, alive = _run(code, self.session)
        if not alive:
            self.session = None
        return out

    def close(self) -> None:
        if self.session is not None:
            _vivd().session_close(self.session)
            self.session = None
