#!/usr/bin/env bash
# test/bench/http.sh - vivd's HTTP door (SandboxFusion's POST /run_code)
# beside its own NDJSON protocol, in one run on one daemon:
#   (a) trivial Python and the pandas snippet: /run_code vs NDJSON exec
#       (the HTTP layer's cost; both run on the same zygotes); R (cold
#       jails) the same way, and C through /run_code (compile, then run);
#   (b) sustained requests/s with 32 concurrent HTTP clients (keep-alive).
# Medians and p99 over N sequential requests; a table on stdout and
# build/bench/http.jsonl. SandboxFusion itself cannot be installed here: its
# published figure (< 100 ms overhead per call) is quoted, not measured.
#
#   test/bench/http.sh [N]        (default 40; needs ./build.sh first)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-40}
mkdir -p build/bench
tmp=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
trap 'kill $(cat "$tmp/pid" 2>/dev/null) 2>/dev/null; rm -rf "$tmp"' EXIT
bin/vivd --socket "$tmp/vivd.sock" --log "$tmp/log" --http "127.0.0.1:$port" --queue 1024 & echo $! >"$tmp/pid"
for _ in $(seq 200); do [ -S "$tmp/vivd.sock" ] && break; sleep 0.05; done

python3 - "$tmp/vivd.sock" "$port" "$N" build/bench/http.jsonl <<'PY'
import http.client, json, statistics, sys, threading, time
sys.path.insert(0, "sandbox/client/python")
from vivarium_client import Client
sock, port, n, out_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
PANDAS = 'import pandas as pd; print(pd.DataFrame({"a":[1,2]}).sum())'

def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

def timed(fn, runs, warm=3):
    for _ in range(warm): fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter(); fn(); ts.append((time.perf_counter() - t) * 1e3)
    return ts

c = Client(sock)
for _ in range(600):  # the zygotes have imported their preload
    z = c.stats()["tools"]["python"].get("zygotes", {})
    if z.get("idle", 0) > 0 and z.get("starting", 1) == 0: break
    time.sleep(0.05)

def run_code(conn, code, language="python"):
    body = json.dumps({"code": code, "language": language, "run_timeout": 30, "compile_timeout": 30})
    conn.request("POST", "/run_code", body, {"Content-Type": "application/json"})
    r = json.loads(conn.getresponse().read())
    assert r["status"] == "Success", r
    return r

def ndjson(code, tool="python"):
    r = c.exec(tool, code, timeout_ms=30000)
    assert r["exit_code"] == 0 and (r.get("zygote") or tool != "python"), r

conn = http.client.HTTPConnection("127.0.0.1", port)
rows = []
def add(name, ts):
    rows.append({"name": name, "median_ms": statistics.median(ts), "p99_ms": pct(ts, 0.99), "runs": len(ts)})
add("NDJSON exec: python pass", timed(lambda: ndjson("pass"), n))
add("HTTP /run_code: python pass", timed(lambda: run_code(conn, "pass"), n))
add("NDJSON exec: pandas snippet", timed(lambda: ndjson(PANDAS), max(10, n // 2)))
add("HTTP /run_code: pandas snippet", timed(lambda: run_code(conn, PANDAS), max(10, n // 2)))
add("NDJSON exec: R cat(1)", timed(lambda: ndjson("cat(1)", "r"), max(10, n // 2)))
add("HTTP /run_code: R cat(1)", timed(lambda: run_code(conn, "cat(1)", "R"), max(10, n // 2)))
add("HTTP /run_code: C hello (gcc, then run)",
    timed(lambda: run_code(conn, '#include <stdio.h>\nint main(void){puts("hi");return 0;}', "c"), max(10, n // 4)))

done, stop = [0] * 32, time.perf_counter() + 10
def client(i):
    cc = http.client.HTTPConnection("127.0.0.1", port)
    while time.perf_counter() < stop:
        body = json.dumps({"code": "print(1)", "language": "python", "run_timeout": 30})
        cc.request("POST", "/run_code", body, {"Content-Type": "application/json"})
        r = cc.getresponse()
        data = r.read()
        if r.status == 200 and json.loads(data)["run_result"]["stdout"] == "1\n": done[i] += 1
        elif r.status in (429, 503): time.sleep(float(r.getheader("Retry-After") or 0.01))
t0 = time.perf_counter()
ts = [threading.Thread(target=client, args=(i,)) for i in range(32)]
[t.start() for t in ts]; [t.join() for t in ts]
rate = sum(done) / (time.perf_counter() - t0)
c.close()
by = {r["name"]: r["median_ms"] for r in rows}
with open(out_path, "w") as f:
    for r in rows: f.write(json.dumps(r) + "\n")
    f.write(json.dumps({"name": "HTTP /run_code sustained, 32 clients, print(1)", "req_per_s": rate}) + "\n")
print("| workload | median | p99 |\n|---|---|---|")
for r in rows: print(f"| {r['name']} | {r['median_ms']:.1f} ms | {r['p99_ms']:.1f} ms |")
print(f"| HTTP /run_code sustained, 32 clients, print(1) | {rate:.0f} req/s | |")
print(f"\nHTTP layer's cost (same run): pass {by['HTTP /run_code: python pass'] - by['NDJSON exec: python pass']:+.1f} ms, "
      f"pandas {by['HTTP /run_code: pandas snippet'] - by['NDJSON exec: pandas snippet']:+.1f} ms, "
      f"R {by['HTTP /run_code: R cat(1)'] - by['NDJSON exec: R cat(1)']:+.1f} ms "
      "(SandboxFusion publishes < 100 ms of overhead per call; not measured here)")
PY
