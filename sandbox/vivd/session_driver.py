# session_driver.py - the Python side of a vivd session (see sandbox/vivd/session.c).
#
# This runs as the job of a normal jail (every namespace, the mount plan,
# rlimits, cgroup, caps dropped, seccomp), started by a session worker W with
# its stdin and stdout as pipes W keeps.
#
# Two processes, so that the code of a call holds nothing of ours:
#
#   keeper K (this process, the jail's job): speaks W's protocol on private
#     duplicates of fds 0 and 1, writes each call's code into a file, and
#     learns everything about the call from the kernel. It is not dumpable:
#     no process of the session can open its /proc entries (fd, mem) to reach
#     W's pipes through them.
#   interpreter I (K's child, forked once): keeps the one globals dict the
#     calls share. It holds fds 0-2 and nothing else, as a cold job does:
#     0 is /dev/null, 1 and 2 a call's fresh capture files while it runs.
#
# One call:
#   K: writes the code to <base>code, makes the capture files <base>out and
#      <base>err (its own descriptors kept), sends I SIGCONT;
#   I: reaps what earlier calls left, takes the three files by name (and
#      unlinks them), runs the code, writes "<seq> <exit>\n" to <base>rc,
#      stops itself (SIGSTOP);
#   K: sees the stop through waitid (the kernel's word, not a line the code
#      could write), kills every process the call left behind (a call's
#      processes end with the call: nothing runs between calls, and nothing
#      of one call can write into the next one's output), reads the exit
#      status from <base>rc (strictly: anything else loses the session), the
#      CPU time from /proc (schedstat of I's threads and its reaped children)
#      and the peak RSS (VmHWM), and answers W.
# The code can always end its own session (kill I or K, stop I early, spoil
# the files): that loses the session, as an overrun does. It can never make K
# parse anything but one bounded line, nor reach W.
#
# Protocol (W <-> K): W sends "<len> <cap>\n" + code; K sends "ready\n" once,
# then per call "<exit> <signal> <lost> <out_len> <out_total> <err_len>
# <err_total> <cpu_ms> <rss_kb>\n" + out + err (exit -1 when a signal ended
# it; lost 1 when the call ended the session: I died, or stopped early).
import builtins, ctypes, errno, os, select, signal, stat, sys, traceback, types

PR_SET_DUMPABLE = 4
libc = ctypes.CDLL(None, use_errno=True)


def write_all(fd, b):
    mv = memoryview(b)
    while mv:
        mv = mv[os.write(fd, mv):]


def read_exact(fd, n):
    b = bytearray()
    while len(b) < n:
        c = os.read(fd, n - len(b))
        if not c:
            raise EOFError
        b += c
    return bytes(b)


def read_line(fd, limit=64):
    b = bytearray()
    while len(b) < limit:
        c = os.read(fd, 1)
        if not c or c == b'\n':
            break
        if c == b'K' and not b:  # W's deadline byte that crossed our answer: nothing to kill
            continue
        b += c
    if not b:
        raise EOFError
    return bytes(b)


# ------------------------------------------------------------ the interpreter

def run_cell(code, g):
    """Run one call's code in the shared globals: its exit status, as a
    script's would be (SystemExit's code; 1 after an uncaught exception)."""
    rc = 0
    try:
        exec(compile(code, '<cell>', 'exec'), g)
    except SystemExit as e:
        if e.code is None:
            rc = 0
        elif isinstance(e.code, int):
            rc = e.code & 0xff
        else:
            rc = 1
            try:
                print(e.code, file=sys.stderr)
            except BaseException:
                pass
    except BaseException as e:
        rc = 1  # the traceback starts at the cell, not in this driver
        try:
            traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        except BaseException:
            pass
    for f in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            f.flush()
        except BaseException:
            pass
    return rc


def reap_children():
    """Collect the exit statuses of processes earlier calls started (K has
    killed them), so they do not pile up as zombies against the pids limit."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def open_fifo(path, flags):
    """One of K's FIFOs, by name; refused if the code replaced it."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, '%s is not a FIFO' % path)
    return fd


def interpreter(base):
    """I: never returns. Everything of K's is closed before anything else."""
    os.closerange(3, 65536)
    nul = os.open('/dev/null', os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(nul, fd)
    os.close(nul)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # K's flag was only inherited
    os.setsid()  # its own session and process group, as a cold job's code has
    mod = types.ModuleType('__main__')  # user code lives in a real __main__
    mod.__dict__['__builtins__'] = builtins
    sys.modules['__main__'] = mod
    g = mod.__dict__
    seq = 0
    while True:
        os.kill(os.getpid(), signal.SIGSTOP)
        seq += 1
        reap_children()
        try:
            fd = open_fifo(base + 'code', os.O_RDONLY | os.O_NONBLOCK)  # K may have written it all already
            os.set_blocking(fd, True)
            with os.fdopen(fd, 'rb') as f:
                code = f.read()
            fo, fe = open_fifo(base + 'out', os.O_WRONLY), open_fifo(base + 'err', os.O_WRONLY)
        except OSError:  # the FIFOs are gone or replaced: only a call's code can have done that
            os._exit(70)
        os.dup2(fo, 1), os.dup2(fe, 2)
        os.close(fo), os.close(fe)
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        for f in (sys.stdout, sys.stderr):
            try:
                f.reconfigure(line_buffering=True)
            except Exception:
                pass
        rc = run_cell(code, g)
        nul = os.open('/dev/null', os.O_RDWR)
        os.dup2(nul, 1), os.dup2(nul, 2)
        os.close(nul)
        try:
            fd = open_fifo(base + 'rc', os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b'%d %d\n' % (seq, rc))
            os.close(fd)
        except OSError:
            os._exit(70)


# ------------------------------------------------------------ the keeper

TICK_MS = 1000.0 / os.sysconf('SC_CLK_TCK')


def cpu_ms(pid):
    """CPU time of `pid` so far, from the kernel: its own (its threads' run
    time from schedstat in ns where the kernel keeps it, else utime + stime
    in clock ticks) plus its reaped children's (cutime + cstime)."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            fields = f.read().rsplit(b')', 1)[1].split()
        own, children = (int(fields[11]) + int(fields[12])) * TICK_MS, (int(fields[13]) + int(fields[14])) * TICK_MS
    except (OSError, ValueError, IndexError):
        return 0.0
    try:
        ns = 0
        for tid in os.listdir('/proc/%d/task' % pid):
            with open('/proc/%d/task/%s/schedstat' % (pid, tid), 'rb') as f:
                ns += int(f.read().split()[0])
        own = ns / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return own + children


def peak_rss_kb(pid):
    try:
        with open('/proc/%d/status' % pid, 'rb') as f:
            for line in f:
                if line.startswith(b'VmHWM:'):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def kill_leftovers(keep):
    """SIGKILL every process of the jail but `keep` and its init (pid 1),
    until none is left alive (a process may fork while we look)."""
    for _ in range(1000):
        alive = 0
        for name in os.listdir('/proc'):
            if not name.isdigit() or int(name) in keep or name == '1':
                continue
            try:
                with open('/proc/%s/stat' % name, 'rb') as f:
                    state = f.read().rsplit(b')', 1)[1].split()[0]
                if state in (b'Z', b'X'):
                    continue
                os.kill(int(name), signal.SIGKILL)
                alive += 1
            except (OSError, IndexError):
                pass
        if not alive:
            return


def make_fifos(base):
    """(Re)make the call's four FIFOs where the code left them missing or
    replaced. A FIFO keeps no data on the disk: a call that fills /tmp still
    has its code delivered, its output captured and its status read."""
    for name in ('code', 'out', 'err', 'rc'):
        path = base + name
        try:
            if stat.S_ISFIFO(os.lstat(path).st_mode):
                continue
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.mkfifo(path, 0o600)


def open_ends(path):
    """Both ends of a FIFO, without blocking: (read, write)."""
    r = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    w = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    return r, w


class Capture:
    """One output stream of a call: the first `cap` bytes kept, all counted."""

    def __init__(self, fd, cap):
        self.fd, self.cap, self.parts, self.kept, self.total = fd, cap, [], 0, 0

    def pump(self):
        """Read what is there; False at EOF (every writer gone)."""
        while True:
            try:
                b = os.read(self.fd, 65536)
            except BlockingIOError:
                return True
            if not b:
                return False
            self.total += len(b)
            if self.kept < self.cap:
                b = b[:self.cap - self.kept]
                self.parts.append(b)
                self.kept += len(b)

    def drain(self):
        """Read what is left, then close. Called once I is stopped or dead
        and every other process of the call is dead: all that was written
        is in the pipe (I may still hold a duplicate of its write end: no
        EOF is waited for)."""
        self.pump()
        os.close(self.fd)
        return b''.join(self.parts), self.total


def read_rc(fd, seq):
    """The call's exit status from I's one line "<seq> <exit>", or None."""
    try:
        data = os.read(fd, 64)
    except OSError:
        return None
    parts = data.split()
    if len(parts) != 2 or not all(p.isdigit() and len(p) < 12 for p in parts) or int(parts[0]) != seq:
        return None
    rc = int(parts[1])
    return rc if rc <= 255 else None


class Wake:
    """SIGCHLD turned into a readable fd, so K can wait for I's stop."""

    def __init__(self):
        self.r, self.w = os.pipe()
        os.set_blocking(self.w, False)
        os.set_blocking(self.r, False)
        signal.signal(signal.SIGCHLD, lambda *a: None)
        signal.set_wakeup_fd(self.w)

    def child_state(self, pid):
        """('stopped', sig), ('exited', info) or None for I, from waitid. A
        stop is consumed; an exit is left for wait4 (its rusage)."""
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WSTOPPED | os.WNOHANG | os.WNOWAIT)
        if info is None or info.si_pid != pid:
            return None
        if info.si_code in (os.CLD_STOPPED, os.CLD_TRAPPED):
            os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOHANG)
            return 'stopped', info.si_status
        return 'exited', info

    def drain(self):
        try:
            os.read(self.r, 512)
        except BlockingIOError:
            pass

    def wait_child(self, pid):
        while True:
            st = self.child_state(pid)
            if st:
                return st
            try:
                select.select([self.r], [], [])
            except InterruptedError:
                pass
            self.drain()


def status_of(info):
    """(exit, signal) of a process that ended, from waitid."""
    if info.si_code == os.CLD_EXITED:
        return info.si_status & 0xff, 0
    return -1, info.si_status


def run_call(ctx, code, cap, seq):
    """One call, K's side: deliver the code, capture the output while it
    runs, and learn how it ended. A byte from W meanwhile means the call's
    deadline has passed: the call is killed, its output so far still
    answered. Returns (exit, signal, lost, out, out_total, err, err_total,
    note)."""
    pid, base, wake, rfd = ctx['pid'], ctx['base'], ctx['wake'], ctx['rfd']
    make_fifos(base)
    code_r, code_w = open_ends(base + 'code')  # our reader only keeps the FIFO open: I reads it
    out_r, out_w = open_ends(base + 'out')     # our writers keep EOF away until the call is over
    err_r, err_w = open_ends(base + 'err')
    rc_r, rc_w = open_ends(base + 'rc')
    out, err = Capture(out_r, cap), Capture(err_r, cap)
    pending, note, killed = memoryview(code), b'', False
    if not pending:
        os.close(code_w)
        code_w = -1
    os.kill(pid, signal.SIGCONT)
    state = None
    while state is None:
        watch = [wake.r, out_r, err_r] + ([] if killed else [rfd])
        try:
            rd, wr, _ = select.select(watch, [code_w] if code_w >= 0 else [], [])
        except InterruptedError:
            continue
        if wr:
            try:
                pending = pending[os.write(code_w, pending[:65536]):]
            except BlockingIOError:
                pass
            if not pending:
                os.close(code_w)
                code_w = -1
        if out_r in rd:
            out.pump()
        if err_r in rd:
            err.pump()
        if rfd in rd:  # W: the deadline
            os.kill(pid, signal.SIGKILL)
            killed = True
        wake.drain()
        state = wake.child_state(pid)
    kill_leftovers(ctx['keep'])  # returns once every other process of the call is dead
    lost = state[0] != 'stopped'
    if lost:
        rc, sig = status_of(state[1])
    else:
        rc, sig = read_rc(rc_r, seq), 0
        if rc is None:  # stopped before it finished, or its line was spoilt
            os.kill(pid, signal.SIGKILL)
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            rc, sig, lost = -1, signal.SIGKILL, True
            note = b"vivarium: the code stopped the session's interpreter, or spoilt its FIFOs, before the call finished\n"
    for fd in (code_w, out_w, err_w, rc_w, code_r, rc_r):
        if fd >= 0:
            os.close(fd)
    out_b, out_total = out.drain()
    err_b, err_total = err.drain()
    return rc, sig, lost, out_b, out_total, err_b, err_total, note


def keeper():
    rfd, wfd = os.dup(0), os.dup(1)  # W's pipes, kept high and close-on-exec
    nul = os.open('/dev/null', os.O_RDWR)
    os.dup2(nul, 0), os.dup2(nul, 1)  # fd 2 stays the jail's stderr: what we say when the session is lost
    os.close(nul)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    base = '/tmp/.viv-session-'
    make_fifos(base)
    wake = Wake()
    pid = os.fork()
    if pid == 0:
        interpreter(base)
    ctx = {'pid': pid, 'base': base, 'wake': wake, 'rfd': rfd, 'keep': {os.getpid(), pid}}
    state, info = wake.wait_child(pid)  # I stops once it is ready
    if state != 'stopped':
        os.wait4(pid, 0)
        return 70
    write_all(wfd, b'ready\n')
    seq = 0
    while True:
        try:
            n, cap = map(int, read_line(rfd).split())
            code = read_exact(rfd, n)
        except (EOFError, ValueError):
            return 0
        seq += 1
        c0 = cpu_ms(pid)
        try:
            rc, sig, lost, out, osz, err, esz, note = run_call(ctx, code, cap, seq)
        except OSError as e:  # the FIFOs could not be made (the code used up /tmp's inodes)
            os.kill(pid, signal.SIGKILL)
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            rc, sig, lost, out, osz, err, esz = -1, signal.SIGKILL, True, b'', 0, b'', 0
            note = ('vivarium: the session could not run the call: %s\n' % e).encode()
        if lost:
            _, _, ru = os.wait4(pid, 0)
            c1, rss = (ru.ru_utime + ru.ru_stime) * 1000.0, ru.ru_maxrss
        else:
            c1, rss = cpu_ms(pid), peak_rss_kb(pid)
        if note:
            err, esz = (err + note)[-cap:] if cap else b'', esz + len(note)
        write_all(wfd, b'%d %d %d %d %d %d %d %.1f %d\n' % (rc, sig, lost, len(out), osz, len(err), esz,
                                                           max(0.0, c1 - c0), rss) + out + err)
        if lost:
            return 0


sys.exit(keeper())
