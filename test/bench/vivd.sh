#!/usr/bin/env bash
# test/bench/vivd.sh - vivd side by side with cold jails, in one run:
#   (a) trivial Python:  vivd exec (a zygote's fresh child)  vs  viv run (cold jail)
#       vs  bwrap python3 -c
#   (b) a pandas snippet: vivd exec (zygote) vs bwrap cold
#   (a', b') the same in a vivd session (a warm interpreter kept per session)
#   (c) sustained executions/s with 8 clients (print(1) in Python), on
#       zygotes and on a second vivd with zygotes off (cold jails)
#   (d) session_open, and a fresh session's first pandas call
#   (e) where a one-shot request's time goes: a ping round trip (client <->
#       vivd), the worker's own wall_ms (vivd's worker -> zygote -> child ->
#       answer), the rest (vivd <-> worker); and, off the request path, what
#       the zygote pays per request while idle (a fork + exit of a
#       pandas-loaded interpreter)
# Latencies are medians and p99 over N sequential requests; results go to a
# table on stdout (with each warm figure as a ratio of its bwrap baseline
# measured in the same run) and build/bench/vivd.jsonl.
#
#   test/bench/vivd.sh [N]        (default 60; needs ./build.sh first)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-60}
mkdir -p build/bench
tmp=$(mktemp -d)
trap 'kill $(cat "$tmp/pid" 2>/dev/null) 2>/dev/null; rm -rf "$tmp"' EXIT
bin/vivd --socket "$tmp/vivd.sock" --log "$tmp/log" & echo $! >"$tmp/pid"
bin/vivd --socket "$tmp/cold.sock" --log "$tmp/cold.log" --zygotes 0 & echo $! >>"$tmp/pid"
for _ in $(seq 100); do [ -S "$tmp/vivd.sock" ] && [ -S "$tmp/cold.sock" ] && break; sleep 0.05; done

. test/bench/bwrap_args.sh
PANDAS='import pandas as pd; print(pd.DataFrame({"a":[1,2]}).sum())'

python3 - "$tmp/vivd.sock" "$N" "$PANDAS" build/bench/vivd.jsonl "$tmp/cold.sock" "${BWRAP[@]}" <<'PY'
import json, os, statistics, subprocess, sys, threading, time
sys.path.insert(0, "sandbox/client/python")
from vivarium_client import Client
sock, n, pandas_code, out_path, cold_sock, bwrap = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]

def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

def timed(fn, runs, warm=3):
    for _ in range(warm): fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter(); fn(); ts.append((time.perf_counter() - t) * 1e3)
    return ts

def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert r.returncode == 0, cmd

c = Client(sock)
# wait until the python zygotes have imported their preload (otherwise the
# first requests run in cold jails and this measures the start-up)
for _ in range(600):
    z = c.stats()["tools"]["python"].get("zygotes", {})
    if z.get("idle", 0) > 0 and z.get("starting", 1) == 0: break
    time.sleep(0.05)
def vivd_exec(code):
    r = c.exec("python", code, timeout_ms=30000)
    assert r["exit_code"] == 0 and r.get("zygote"), r
rows = []
def add(name, ts):
    rows.append({"name": name, "median_ms": statistics.median(ts), "p99_ms": pct(ts, 0.99), "runs": len(ts)})

walls = []
def vivd_exec_wall(code):
    r = c.exec("python", code, timeout_ms=30000)
    assert r["exit_code"] == 0 and r.get("zygote"), r
    walls.append(r["wall_ms"])
add("vivd exec (zygote): python pass", timed(lambda: vivd_exec_wall("pass"), n))
add("viv run: python pass", timed(lambda: run(["bin/viv", "run", "--tool", "python", "--code", "pass"]), n))
add("bwrap: python3 -c pass", timed(lambda: run(bwrap + ["/usr/bin/python3", "-I", "-c", "pass"]), n))
add("vivd exec (zygote): pandas snippet", timed(lambda: vivd_exec(pandas_code), max(10, n // 3)))
add("bwrap: pandas snippet", timed(lambda: run(bwrap + ["/usr/bin/python3", "-I", "-c", pandas_code]), max(10, n // 3)))
# (e) the request path, piece by piece
add("vivd ping round trip (client <-> vivd)", timed(lambda: c.ping(), n))
rows.append({"name": "worker's wall_ms of a zygote pass (worker -> zygote -> answer)", "median_ms": statistics.median(walls[-n:]),
             "p99_ms": pct(walls[-n:], 0.99), "runs": n})
fork_ms = subprocess.run(["/usr/bin/python3", "-c", "import pandas, os, time\n"
                          "ts = []\n"
                          "for _ in range(%d):\n"
                          "    t = time.perf_counter(); p = os.fork()\n"
                          "    if p == 0: os._exit(0)\n"
                          "    os.waitpid(p, 0); ts.append((time.perf_counter() - t) * 1e3)\n"
                          "ts.sort(); print(ts[len(ts) // 2])" % max(10, n // 2)], capture_output=True, text=True).stdout
rows.append({"name": "off the request path: fork + exit of a pandas-loaded python (host)", "median_ms": float(fork_ms), "p99_ms": float("nan"), "runs": max(10, n // 2)})
# sessions: one warm interpreter per session
def open_close():
    s = c.session_open("python"); c.session_close(s)
add("vivd session_open + close", timed(open_close, max(10, n // 3)))
first = []
for _ in range(max(3, n // 12)):
    s = c.session_open("python")
    t = time.perf_counter()
    r = c.exec(None, pandas_code, session=s, timeout_ms=30000)
    first.append((time.perf_counter() - t) * 1e3)
    assert r["exit_code"] == 0, r
    c.session_close(s)
add("vivd session: first pandas snippet (imports pandas)", first)
sess = c.session_open("python")
def session_exec(code):
    r = c.exec(None, code, session=sess, timeout_ms=30000)
    assert r["exit_code"] == 0, r
add("vivd session exec: python pass", timed(lambda: session_exec("pass"), n))
session_exec("import pandas as pd")
add("vivd session exec: pandas snippet (pandas imported)", timed(lambda: session_exec('print(pd.DataFrame({"a":[1,2]}).sum())'), n))
c.session_close(sess)

# (c) sustained: 8 clients, each its own connection, for 10 s; zygotes, then cold jails
def sustained(path, seconds=10):
    done = [0] * 8
    stop = time.perf_counter() + seconds
    def client(i):
        with Client(path) as cc:
            while time.perf_counter() < stop:
                r = cc.exec("python", "print(1)", timeout_ms=30000)
                if r["stdout"] == "1\n": done[i] += 1
    t0 = time.perf_counter()
    ts = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    [t.start() for t in ts]; [t.join() for t in ts]
    return sum(done) / (time.perf_counter() - t0)
rate = sustained(sock)
rate_cold = sustained(cold_sock)
c.close()
by = {r["name"]: r["median_ms"] for r in rows}
ratios = [
    ("one-shot python pass / bwrap python3 -c pass", by["vivd exec (zygote): python pass"] / by["bwrap: python3 -c pass"], "<= 0.25"),
    ("one-shot pandas snippet / bwrap pandas snippet", by["vivd exec (zygote): pandas snippet"] / by["bwrap: pandas snippet"], "<= 0.033"),
    ("8-client exec/s, zygotes / cold jails", rate / rate_cold, ">= 5"),
    ("session_open + close / bwrap python3 -c pass", by["vivd session_open + close"] / by["bwrap: python3 -c pass"], "<= 0.3"),
    ("session's first pandas snippet / bwrap pandas snippet", by["vivd session: first pandas snippet (imports pandas)"] / by["bwrap: pandas snippet"], "<= 0.033"),
]
with open(out_path, "w") as f:
    for r in rows: f.write(json.dumps(r) + "\n")
    f.write(json.dumps({"name": "vivd sustained: 8 clients, print(1), zygotes", "exec_per_s": rate}) + "\n")
    f.write(json.dumps({"name": "vivd sustained: 8 clients, print(1), cold jails", "exec_per_s": rate_cold}) + "\n")
    for name, v, goal in ratios: f.write(json.dumps({"name": name, "ratio": v, "goal": goal}) + "\n")
print("| workload | median | p99 |")
print("|---|---|---|")
for r in rows: print(f"| {r['name']} | {r['median_ms']:.1f} ms | {r['p99_ms']:.1f} ms |")
print(f"| vivd sustained, 8 clients, python print(1), zygotes | {rate:.0f} exec/s | |")
print(f"| vivd sustained, 8 clients, python print(1), cold jails | {rate_cold:.0f} exec/s | |")
print()
print("| ratio (same run) | value | goal |")
print("|---|---|---|")
for name, v, goal in ratios: print(f"| {name} | {v:.3f} | {goal} |")
PY
