# zygote_driver.py - the Python side of a vivd zygote (see sandbox/vivd/zygote.c).
#
# This runs as the job of a normal jail (all namespaces, mounts, rlimits,
# cgroup, locked securebits, no_new_privs), started by a zygote worker with
# two capabilities left in the jail's own user namespace: CAP_SYS_ADMIN and
# CAP_SETPCAP. vivd prepends one line, _VIV_CFG = r'''{json}''', with the
# policy's seccomp program and limits.
#
# The zygote imports the policy's preload modules once, then for every
# request keeps ONE child ready, made before the request arrives:
#
#   zygote: setns(own pid ns) + unshare(CLONE_NEWPID), then
#     posix_spawn `sleep infinity`  -> pid 1 of a fresh pid namespace (holds it open;
#                                      started from an unreadable copy, so not dumpable)
#     fork                          -> the request child, pid 2 there
#   child: unshare(NEWNS|NEWIPC|NEWUTS); its own tmpfs on /tmp and /work and
#   its own /proc; drops both capabilities for good (bounding set, then all
#   sets); installs the policy's seccomp filter on top of the zygote's; only
#   then reads the request (code included) from the request pipe.
#
# So the code of a request is read by its own child and never enters the
# zygote's memory: a later child, a copy of the zygote, cannot find it there.
# The zygote only ever holds numbers; output goes from the child's memfds to
# the worker with sendfile(), kernel to kernel.
#
# Pipes (the zygote's fds 0 and 1 from the worker W, kept as req/resp):
#   W -> req:   "<len> <timeout_ms> <memory_mb>\n" + code      (read by the child)
#   child -> status pipe: "S <timeout_ms>\n" once it has read the request, then the
#                         child closes the pipe, before any of the code runs
#   zygote -> resp: "ready\n" once; per request
#       "<exit> <signal> <how> <out_len> <out_total> <err_len> <err_total> <cpu_ms> <rss_kb>\n"
#       + out + err
# (<how>: 0 the child ended, 1 its deadline, 2 its CPU budget.) The zygote
# enforces each request's deadline (it starts at "S") and the policy's CPU
# budget over the request's whole tree (from /proc) itself, by killing the
# child, and with it the child's whole pid namespace; W has a backstop in
# case the zygote stops answering.
#
# The code holds fds 0-2 and nothing else, as a cold job does: the status
# pipe is closed before the code runs, and everything the zygote learns
# afterwards (exit status, CPU, peak RSS, the end of the request) comes from
# the kernel (a pidfd, wait4). The zygote never reads a byte the code can
# write. It is not dumpable, and neither is each namespace's pid 1, so no
# request can open their /proc entries (root, cwd, fd, mem) or write their
# per-process knobs; each request child becomes dumpable again only once it
# is alone in its own namespaces.
# Everything a request child needs is imported here, once: an import in the
# child would be paid on every request's path (traceback alone ~1 ms).
import builtins, ctypes, json, os, resource, select, signal, sys, time, traceback, types

CFG = json.loads(_VIV_CFG)  # noqa: F821 (prepended by the worker)
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID = 0x00020000, 0x04000000, 0x08000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x1, 0x2, 0x4, 0x8, 0x20, 0x1000, 0x4000, 0x40000
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECCOMP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 4, 24, 22, 47, 4
SECCOMP_MODE_FILTER = 2
SLEEP = next((p for p in ('/usr/bin/sleep', '/bin/sleep') if os.path.exists(p)), None)


class SockFprog(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.c_void_p)]


FILTER = bytes.fromhex(CFG['filter_hex'])
FILTER_BUF = ctypes.create_string_buffer(FILTER, len(FILTER))
FPROG = SockFprog(len(FILTER) // 8, ctypes.cast(FILTER_BUF, ctypes.c_void_p))


def fail(what):
    """Raise OSError for a failed libc call, naming the step."""
    e = ctypes.get_errno()
    raise OSError(e, '%s: %s' % (what, os.strerror(e)))


def unreadable_copy(path):
    """A copy of the program at `path` that its runner may execute but not
    read (mode 0111, in a memfd): exec'ing a file it cannot read leaves the
    new process non-dumpable, so its /proc entries belong to root and no
    process of a request can open them (root, cwd, fd, environ, mem) or
    write its knobs (oom_score_adj, autogroup, clear_refs). Returns the
    path that execs it."""
    with open(path, 'rb') as f:
        image = f.read()
    fd = os.memfd_create('viv-pid1', os.MFD_CLOEXEC)
    os.write(fd, image)
    os.fchmod(fd, 0o111)
    return '/proc/self/fd/%d' % fd


def new_pid_namespace(own_pidns, holder):
    """Make the next fork land in a fresh pid namespace, as its pid 2.

    unshare(CLONE_NEWPID) puts the caller's *later children* in a new
    namespace; it works again only once the caller is back in its own
    (setns to its own pid namespace first). The first child there becomes
    pid 1: a `sleep` spawned with vfork+exec (no copy of this large process)
    that holds the namespace open and never reaps anything. Killing it ends
    the namespace and every process in it. The request child, forked next,
    is pid 2: signals and exit statuses behave as for a cold job, and its
    parent (us) reaps it and learns how it really ended."""
    if libc.setns(own_pidns, CLONE_NEWPID) != 0:
        fail('setns to our own pid namespace')
    if libc.unshare(CLONE_NEWPID) != 0:
        fail('unshare a pid namespace')
    return os.posix_spawn(holder, ['sleep', 'infinity'], {}, setsid=True)


def mount(src, dst, fstype, flags, data):
    if libc.mount(src, dst, fstype, flags, data) != 0:
        fail('mount %s' % dst.decode())


# /proc files the jail's mount plan (mounts.c) masks with fixed text: a
# fresh /proc would show the host's again, so the masks move onto it.
MASKED_PROC_FILES = (b'/proc/cmdline', b'/proc/sys/kernel/random/boot_id')


def mount_proc():
    """The request's own /proc, with the jail's masks bound over it again."""
    held = [os.open(f, os.O_PATH | os.O_CLOEXEC) for f in MASKED_PROC_FILES]
    mount(b'proc', b'/proc', b'proc', MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    for f, fd in zip(MASKED_PROC_FILES, held):
        mount(b'/proc/self/fd/%d' % fd, f, None, MS_BIND, None)
        mount(None, f, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        os.close(fd)


def read_caps():
    caps = {}
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb')):
                k, v = line.split(':')
                caps[k] = int(v, 16)
    return caps


def drop_capabilities():
    """Bounding set first (needs CAP_SETPCAP), then ambient, then every set."""
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:  # EINVAL: no such cap
            fail('drop bounding capability %d' % cap)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()                  # effective, permitted, inheritable x 2 words: all zero
    if libc.capset(header, data) != 0:
        fail('capset')
    left = {k: v for k, v in read_caps().items() if v}
    if left:
        raise OSError(0, 'capabilities survived the drop: %r' % left)


def vm_size_kb():
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) for l in f if l.startswith('VmSize:'))


def set_limits(memory_mb, timeout_ms, vm_kb):
    # The child starts as a copy of the zygote's address space: it may grow by memory_mb.
    as_bytes = (vm_kb * 1024) + memory_mb * (1 << 20)
    hard_as = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard_as != resource.RLIM_INFINITY:
        as_bytes = min(as_bytes, hard_as)
    cpu = (timeout_ms + 999) // 1000 + 1
    fsize = CFG['file_size_mb'] * (1 << 20)
    for res, soft, hard in ((resource.RLIMIT_AS, as_bytes, as_bytes), (resource.RLIMIT_CPU, cpu, cpu + 1),
                            (resource.RLIMIT_FSIZE, fsize, fsize), (resource.RLIMIT_CORE, 0, 0)):
        resource.setrlimit(res, (soft, hard))


def read_exact(fd, n):
    b = bytearray()
    while len(b) < n:
        c = os.read(fd, n - len(b))
        if not c:
            raise EOFError
        b += c
    return bytes(b)


def read_line(fd, limit=128):
    b = bytearray()
    while len(b) < limit:
        c = os.read(fd, 1)
        if not c:
            raise EOFError
        if c == b'\n':
            return bytes(b)
        b += c
    raise ValueError('line too long')


def child_main(req, out, err, st_w):
    """The request child: isolate, lock down, take the request, say so,
    close every fd but 0-2, run it. Its exit status is the code's. Never
    returns."""
    rc, errfd = 127, err
    try:
        if libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS) != 0:
            fail('unshare mount/ipc/uts namespaces')
        mount(None, b'/', None, MS_REC | MS_PRIVATE, None)
        opts = ('size=%dk,nr_inodes=%d' % (CFG['tmpfs_kb'], CFG['tmpfs_inodes'])).encode()
        mount(b'tmpfs', b'/tmp', b'tmpfs', MS_NOSUID | MS_NODEV, opts + b',mode=1777')
        mount(b'tmpfs', b'/work', b'tmpfs', MS_NOSUID | MS_NODEV, opts + b',mode=0755')
        mount_proc()
        os.chdir('/work')
        # Alone in its namespaces now: dumpable again, as a cold job is (the
        # zygote's non-dumpable flag was only inherited).
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
        drop_capabilities()
        if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(FPROG), 0, 0) != 0:
            fail('install the seccomp filter')
        vm_kb = vm_size_kb()  # measured while waiting, off the request's path
        n, timeout_ms, memory_mb = map(int, read_line(req).split())
        code = read_exact(req, n)
        set_limits(memory_mb, timeout_ms, vm_kb)
        os.write(st_w, b'S %d\n' % timeout_ms)
        nul = os.open('/dev/null', os.O_RDWR)
        os.dup2(nul, 0), os.dup2(out, 1), os.dup2(err, 2)
        errfd = 2
        os.closerange(3, 65536)  # the status pipe, req, the memfds' first fds: the code gets 0-2 only
        os.setsid()  # its own session and process group, no controlling terminal: as a cold job
        rc = run_code(code)
    except BaseException as e:  # setup failed: say so on the request's stderr, as a cold jail would
        try:
            os.write(errfd, ('vivarium: cannot start the job: %s\n' % e).encode())
        except BaseException:
            pass
    os._exit(rc & 0xff)


def run_code(code):
    """Run the code as python3 would run /work/main.py: a fresh __main__,
    the file on disk for tracebacks, SystemExit as the exit status."""
    with open('/work/main.py', 'wb') as f:
        f.write(code)
    mod = types.ModuleType('__main__')
    mod.__dict__.update(__builtins__=builtins, __file__='/work/main.py')
    sys.modules['__main__'] = mod
    sys.argv = ['/work/main.py']
    if 'numpy' in sys.modules:  # numpy's global generator is not reseeded at fork; Python's random is
        sys.modules['numpy'].random.seed()
    rc = 0
    try:
        exec(compile(code, '/work/main.py', 'exec'), mod.__dict__)
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
        rc = 1
        try:  # the traceback starts at the code, not in this driver
            traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        except BaseException:
            pass
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except BaseException:
            pass
    return rc


def send_output(resp, fd, cap):
    size = os.fstat(fd).st_size
    want, off = min(size, cap), 0
    while off < want:
        n = os.sendfile(resp, fd, off, want - off)
        if n <= 0:
            break
        off += n
    return size


def wait_status(pid):
    """Reap the child; (exit, signal, cpu_ms, rss_kb) from the kernel."""
    _, status, ru = os.wait4(pid, 0)
    cpu = (ru.ru_utime + ru.ru_stime) * 1000.0
    if os.WIFSIGNALED(status):
        return -1, os.WTERMSIG(status), cpu, ru.ru_maxrss
    return os.WEXITSTATUS(status), 0, cpu, ru.ru_maxrss


def read_took_line(fd):
    """The child's one status line, "S <timeout_ms>", written before any code
    runs (so still the driver's own words), then EOF: the timeout in ms, or
    None when the child ended without taking a request."""
    buf = b''
    while len(buf) <= 32:
        c = os.read(fd, 1)
        if not c or c == b'\n':
            break
        buf += c
    parts = buf.split()
    if len(parts) != 2 or parts[0] != b'S' or not parts[1].isdigit():
        return None
    return int(parts[1])


TICK_MS = 1000.0 / os.sysconf('SC_CLK_TCK')
NCPU = max(1, os.cpu_count() or 1)


def request_cpu_ms(roots):
    """CPU time of a request so far: every process of its tree (the child,
    its descendants, the orphans its namespace's pid 1 took in), each with
    what it reaped (utime + stime + cutime + cstime, from /proc). A process
    reaped counts once, in its reaper; a zombie still has its own."""
    ppid, ticks = {}, {}
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % name, 'rb') as f:
                fields = f.read().rsplit(b')', 1)[1].split()
            ppid[int(name)] = int(fields[1])
            ticks[int(name)] = sum(int(x) for x in fields[11:15])
        except (OSError, ValueError, IndexError):
            pass
    total, tree = 0, set(roots)
    for p in sorted(ppid):
        q, seen = p, 0
        while q not in tree and q in ppid and seen < 64:
            q, seen = ppid[q], seen + 1
        if q in tree:
            tree.add(p)
            total += ticks.get(p, 0) if p != roots[1] else 0  # pid 1 (sleep) itself is ours, not the request's
    return total * TICK_MS


def has_children(pid):
    """Does `pid` have children (one small /proc file; True when unsure)?"""
    try:
        with open('/proc/%d/task/%d/children' % (pid, pid), 'rb') as f:
            return bool(f.read().strip())
    except OSError:
        return True


def wait_exit(pidfd, deadline, budget_ms, roots):
    """Wait until the request child behind `pidfd` has ended, `deadline`
    (monotonic seconds) passes, or its tree has spent `budget_ms` of CPU:
    'exited', 'deadline' or 'cpu'. The tree is looked at no sooner than the
    budget could be spent with every CPU busy for it."""
    next_look = time.monotonic() + budget_ms / 1000.0 / NCPU
    while True:
        now = time.monotonic()
        if now >= deadline:
            return 'deadline'
        if now >= next_look:
            left = budget_ms - request_cpu_ms(roots)
            if left <= 0:
                return 'cpu'
            next_look = now + min(1.0, max(0.005, left / 1000.0 / NCPU))
        try:
            if select.select([pidfd], [], [], max(0.0, min(deadline, next_look) - now))[0]:
                return 'exited'
        except InterruptedError:
            pass


def serve(req, resp, holder):
    cap = CFG['output_cap']
    own_pidns = os.open('/proc/self/ns/pid', os.O_RDONLY | os.O_CLOEXEC)
    dying = []  # namespaces' pid 1s told to die after their answer; reaped once the next child is ready
    while True:
        out = os.memfd_create('viv-out', os.MFD_CLOEXEC)
        err = os.memfd_create('viv-err', os.MFD_CLOEXEC)
        st_r, st_w = os.pipe()
        ns_init = new_pid_namespace(own_pidns, holder)
        pid = os.fork()
        if pid == 0:
            os.close(st_r)
            child_main(req, out, err, st_w)
        os.close(st_w)
        pidfd = os.pidfd_open(pid)
        for old in dying:
            os.waitpid(old, 0)
        dying.clear()
        timeout_ms = read_took_line(st_r)  # blocks until a request arrives
        os.close(st_r)
        if timeout_ms is None:
            # The child died before taking a request: the zygote is broken. Say why and stop.
            os.kill(ns_init, signal.SIGKILL)
            code, sig, _, _ = wait_status(pid)
            os.lseek(err, 0, 0)
            sys.stderr.write('zygote: a request child failed before its request (exit %d, signal %d): %s\n'
                             % (code, sig, os.read(err, 2000).decode('utf-8', 'replace')))
            return 1
        how = wait_exit(pidfd, time.monotonic() + timeout_ms / 1000.0, CFG['cpu_ms'], (pid, ns_init))
        os.close(pidfd)
        timed_out = how != 'exited'
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        # The kernel's word on how it ended; then the namespace ends: killing
        # its pid 1 kills everything the code left running. (Reap the request
        # child before the pid 1: a dying pid 1 waits until every process of
        # its namespace has been reaped.)
        rc, sig, cpu, rss = wait_status(pid)
        if has_children(ns_init):  # its orphans: what they spent (the child is reaped: not counted twice)
            cpu += request_cpu_ms((pid, ns_init))
        if timed_out:
            rc, sig = -1, signal.SIGKILL
        os.kill(ns_init, signal.SIGKILL)
        dying.append(ns_init)
        out_total, err_total = os.fstat(out).st_size, os.fstat(err).st_size
        ol, el = min(out_total, cap), min(err_total, cap)
        # the flag: 0 ended, 1 deadline, 2 CPU budget spent
        flag = {'exited': 0, 'deadline': 1, 'cpu': 2}[how]
        os.write(resp, b'%d %d %d %d %d %d %d %.1f %d\n' % (rc, sig, flag, ol, out_total, el, err_total, cpu, rss))
        send_output(resp, out, ol)
        send_output(resp, err, el)
        os.close(out), os.close(err)


def main():
    import importlib, threading
    req, resp = os.dup(0), os.dup(1)
    nul = os.open('/dev/null', os.O_RDWR)
    os.dup2(nul, 0), os.dup2(nul, 1)
    if SLEEP is None:
        sys.stderr.write('zygote: no sleep program for the pid namespaces\' pid 1\n')
        return 1
    # Not dumpable: no process of a request may open our /proc entries.
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    holder = unreadable_copy(SLEEP)
    # Our ambient capabilities were only for exec'ing this interpreter:
    # clear them, so nothing we spawn (the namespaces' sleep) inherits any.
    # (They can never be raised again: the securebits are locked.)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for name in CFG['preload']:
        importlib.import_module(name)
    if threading.active_count() != 1 or len(os.listdir('/proc/self/task')) != 1:
        sys.stderr.write('zygote: the preload started threads; forking it would not be safe\n')
        return 1
    # Everything imported so far is left out of every later garbage
    # collection: a child's collections then never write to these objects'
    # headers, so their pages stay shared with the zygote instead of being
    # copied (several ms per request otherwise).
    import gc
    gc.collect()
    gc.freeze()
    os.write(resp, b'ready\n')
    return serve(req, resp, holder)


sys.exit(main())
