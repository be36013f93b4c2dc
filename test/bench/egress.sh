#!/usr/bin/env bash
# test/bench/egress.sh - what a job's egress proxy costs: the same Python
# (urllib) fetching from a local HTTP server (a) from a `viv run` job whose
# policy lists that server, through the job's proxy, and (b) from the host
# directly, alternating, in one run. Two workloads, timed inside Python so
# both sides time the same thing: one large body (MB/s) and 50 small GETs
# (ms each). Medians over RUNS rounds, the ratio, and
# build/bench/egress.jsonl.
#
#   test/bench/egress.sh [RUNS] [MB]     (default 5 rounds, 64 MB; needs ./build.sh first)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-5}
MB=${2:-64}
mkdir -p build/bench
tmp=$(mktemp -d)
trap 'kill $(cat "$tmp/pid" 2>/dev/null) 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir "$tmp/www"
head -c $((MB << 20)) /dev/zero >"$tmp/www/big"
echo small >"$tmp/www/small"
port=$((20000 + RANDOM % 20000))
(cd "$tmp/www" && exec /usr/bin/python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) & echo $! >"$tmp/pid"
for _ in $(seq 100); do /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && break; sleep 0.05; done

# the built-in python policy, plus AF_INET and a list naming only that server
/usr/bin/python3 - "$port" "$tmp/python-net.json" <<'PY'
import json, sys
p = json.load(open("policies/python.json"))
p["name"] = "python-net"
p["seccomp"]["socket_families"].append("AF_INET")
p["network"] = {"egress": ["127.0.0.1:%s" % sys.argv[1]], "max_bytes": 1 << 40, "max_connections": 64}
json.dump(p, open(sys.argv[2], "w"))
PY

code=$(cat <<PY
import time, urllib.request
u = "http://127.0.0.1:$port/"
t = time.perf_counter(); n = len(urllib.request.urlopen(u + "big").read()); big = time.perf_counter() - t
t = time.perf_counter()
for _ in range(50): urllib.request.urlopen(u + "small").read()
small = (time.perf_counter() - t) / 50
print(n / big / 1e6, small * 1e3)
PY
)
for i in $(seq "$RUNS"); do
  bin/viv run --policy "$tmp/python-net.json" --timeout-ms 120000 --egress-log /dev/null --code "$code" >>"$tmp/proxy"
  env -u http_proxy -u HTTP_PROXY /usr/bin/python3 -c "$code" >>"$tmp/direct"
done
/usr/bin/python3 - "$tmp/proxy" "$tmp/direct" "$MB" build/bench/egress.jsonl <<'PY'
import json, statistics, sys
rows = {k: [tuple(map(float, l.split())) for l in open(f)] for k, f in (("proxy", sys.argv[1]), ("direct", sys.argv[2]))}
med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in rows.items()}
print("%-36s %12s %12s %8s" % ("workload (median of %d)" % len(rows["proxy"]), "proxy", "direct", "ratio"))
print("%-36s %12.0f %12.0f %8.2f" % ("%s MB body, MB/s" % sys.argv[3], med["proxy"][0], med["direct"][0],
                                     med["proxy"][0] / med["direct"][0]))
print("%-36s %12.2f %12.2f %8.2f" % ("small GET, ms each", med["proxy"][1], med["direct"][1],
                                     med["proxy"][1] / med["direct"][1]))
with open(sys.argv[4], "w") as f:
    for k, (mbs, ms) in med.items():
        f.write(json.dumps({"path": k, "body_mb_per_s": mbs, "small_get_ms": ms, "runs": len(rows[k])}) + "\n")
PY
