#!/usr/bin/env bash
# test/bench/vivd.sh - vivd side by side with cold jails, in one run:
#   (a) trivial Python:  vivd exec (a zygote's fresh child)  vs  viv run (cold jail)
#       vs  bwrap python3 -c
#   (b) a pandas snippet: vivd exec (zygote) vs bwrap cold
#   (a', b') the same in a vivd session (a warm interpreter kept per session)
#   (c) sustained executions/s with 8 clients (print(1) in Python)
# Latencies are medians and p99 over N sequential requests; results go to a
# table on stdout and build/bench/vivd.jsonl.
#
#   test/bench/vivd.sh [N]        (default 60; needs ./build.sh first)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-60}
mkdir -p build/bench
tmp=$(mktemp -d)
trap 'kill $(cat "$tmp/pid" 2>/dev/null) 2>/dev/null; rm -rf "$tmp"' EXIT
bin/vivd --socket "$tmp/vivd.sock" --log "$tmp/log" & echo $! >"$tmp/pid"
for _ in $(seq 100); do [ -S "$tmp/vivd.sock" ] && break; sleep 0.05; done

. test/bench/bwrap_args.sh
PANDAS='import pandas as pd; print(pd.DataFrame({"a":[1,2]}).sum())'

python3 - "$tmp/vivd.sock" "$N" "$PANDAS" build/bench/vivd.jsonl "${BWRAP[@]}" <<'PY'
import json, os, statistics, subprocess, sys, threading, time
sys.path.insert(0, "sandbox/python")
from vivarium_client import Client
sock, n, pandas_code, out_path, bwrap = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]

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

add("vivd exec (zygote): python pass", timed(lambda: vivd_exec("pass"), n))
add("viv run: python pass", timed(lambda: run(["bin/viv", "run", "--tool", "python", "--code", "pass"]), n))
add("bwrap: python3 -c pass", timed(lambda: run(bwrap + ["/usr/bin/python3", "-I", "-c", "pass"]), n))
add("vivd exec (zygote): pandas snippet", timed(lambda: vivd_exec(pandas_code), max(10, n // 3)))
# sessions: one warm interpreter per session (pandas imported once, in the first call)
sess = c.session_open("python")
def session_exec(code):
    r = c.exec(None, code, session=sess, timeout_ms=30000)
    assert r["exit_code"] == 0, r
add("vivd session exec: python pass", timed(lambda: session_exec("pass"), n))
session_exec("import pandas as pd")
add("vivd session exec: pandas snippet (pandas imported)", timed(lambda: session_exec('print(pd.DataFrame({"a":[1,2]}).sum())'), n))
c.session_close(sess)
add("bwrap: pandas snippet", timed(lambda: run(bwrap + ["/usr/bin/python3", "-I", "-c", pandas_code]), max(10, n // 3)))

# (c) sustained: 8 clients, each its own connection, for 10 s
done = [0] * 8
stop = time.perf_counter() + 10
def client(i):
    with Client(sock) as cc:
        while time.perf_counter() < stop:
            r = cc.exec("python", "print(1)", timeout_ms=30000)
            if r["stdout"] == "1\n": done[i] += 1
t0 = time.perf_counter()
ts = [threading.Thread(target=client, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
rate = sum(done) / (time.perf_counter() - t0)
c.close()
with open(out_path, "w") as f:
    for r in rows: f.write(json.dumps(r) + "\n")
    f.write(json.dumps({"name": "vivd sustained: 8 clients, print(1)", "exec_per_s": rate}) + "\n")
print("| workload | median | p99 |")
print("|---|---|---|")
for r in rows: print(f"| {r['name']} | {r['median_ms']:.1f} ms | {r['p99_ms']:.1f} ms |")
print(f"| vivd sustained, 8 clients, python print(1) | {rate:.0f} exec/s | |")
PY
