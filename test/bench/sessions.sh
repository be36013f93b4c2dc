#!/usr/bin/env bash
# test/bench/sessions.sh - many concurrent Python sessions on one vivd, as an
# RL step with hundreds of agents in flight holds them:
#   - open S sessions (default 512) over 16 connections: wall time;
#   - memory: the proportional set size (PSS, shared pages split between
#     their users) of every process under vivd, per session;
#   - one call on each open session, round robin: p50 and p99;
#   - one session more than --max-sessions-per-peer: must be `busy`.
# Results go to a table on stdout and build/bench/sessions.jsonl.
#
#   test/bench/sessions.sh [S]        (needs ./build.sh first; ~8 MiB of RAM per session)
set -euo pipefail
cd "$(dirname "$0")/../.."
S=${1:-512}
mkdir -p build/bench
tmp=$(mktemp -d)
trap 'kill $(cat "$tmp/pid" 2>/dev/null) 2>/dev/null; rm -rf "$tmp"' EXIT
bin/vivd --socket "$tmp/vivd.sock" --log "$tmp/log" --zygotes 0 --max-sessions-per-peer "$S" \
  --queue 4096 & echo $! >"$tmp/pid"
for _ in $(seq 100); do [ -S "$tmp/vivd.sock" ] && break; sleep 0.05; done

python3 - "$tmp/vivd.sock" "$S" "$(cat "$tmp/pid")" build/bench/sessions.jsonl <<'PY'
import json, os, statistics, sys, threading, time
sys.path.insert(0, "sandbox/client/python")
from vivarium_client import Client, VivdError
sock, S, vivd_pid, out_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
CONNS = 16

def descendants(root):
    kids = {}
    for p in os.listdir("/proc"):
        if not p.isdigit(): continue
        try:
            with open("/proc/%s/stat" % p) as f:
                kids.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(p))
        except OSError: pass
    out, todo = [], [root]
    while todo:
        p = todo.pop(); out.append(p); todo += kids.get(p, [])
    return out

def pss_kb(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("Pss:"))
        except (OSError, StopIteration): pass
    return total

clients = [Client(sock) for _ in range(CONNS)]
sessions = [[] for _ in range(CONNS)]
errors = []
def opener(i):
    for _ in range(S // CONNS + (1 if i < S % CONNS else 0)):
        try: sessions[i].append(clients[i].session_open("python"))
        except VivdError as e: errors.append(str(e))
base_kb = pss_kb(descendants(vivd_pid))
t0 = time.perf_counter()
ts = [threading.Thread(target=opener, args=(i,)) for i in range(CONNS)]
[t.start() for t in ts]; [t.join() for t in ts]
open_s = time.perf_counter() - t0
opened = sum(len(s) for s in sessions)
pss = (pss_kb(descendants(vivd_pid)) - base_kb) / max(1, opened)
lat = []
for k in range(max(len(s) for s in sessions)):
    for i in range(CONNS):
        if k < len(sessions[i]):
            t = time.perf_counter()
            r = clients[i].exec(None, "x = %d" % k, session=sessions[i][k], timeout_ms=10000)
            lat.append((time.perf_counter() - t) * 1e3)
            assert r["exit_code"] == 0, r
lat.sort()
try:
    clients[0].session_open("python"); extra = "opened (no cap!)"
except VivdError as e:
    extra = str(e)
for c in clients: c.close()
res = {"sessions": opened, "errors": len(errors), "open_s": open_s, "pss_mib_per_session": pss / 1024,
       "call_p50_ms": lat[len(lat) // 2], "call_p99_ms": lat[int(0.99 * (len(lat) - 1))], "past_the_cap": extra}
with open(out_path, "w") as f: f.write(json.dumps(res) + "\n")
print("| figure | value |\n|---|---|")
print(f"| sessions open (over {CONNS} connections) | {opened} ({len(errors)} errors) |")
print(f"| time to open them | {open_s:.1f} s |")
print(f"| PSS per session | {pss/1024:.1f} MiB |")
print(f"| call with all open, p50 / p99 | {res['call_p50_ms']:.1f} / {res['call_p99_ms']:.1f} ms |")
print(f"| one more session_open | {extra[:90]} |")
PY
