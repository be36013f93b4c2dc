#!/usr/bin/env bash
# test/bench/jail.sh - what one jail costs, side by side in one run:
#   bare exec  vs  bubblewrap (--unshare-all, the same binds)  vs  viv run
# for /bin/true and for `python3 -I -c pass`. hyperfine times each command
# (warm-up runs, then N runs); we report medians and the ratio to bwrap.
# Results: a table on stdout and build/bench/jail.jsonl (one line per
# command: name, median_ms, mean_ms, stddev_ms, min_ms, max_ms, runs).
#
#   test/bench/jail.sh [RUNS]        (default 40; needs ./build.sh first)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-40}
VIV=${VIV:-bin/viv}
command -v hyperfine >/dev/null || { echo "jail.sh: hyperfine missing (./build.sh installs it)" >&2; exit 2; }
command -v bwrap >/dev/null || { echo "jail.sh: bwrap missing (./build.sh installs it)" >&2; exit 2; }
[ -x "$VIV" ] || { echo "jail.sh: $VIV missing: run ./build.sh" >&2; exit 2; }
mkdir -p build/bench

. test/bench/bwrap_args.sh
BWRAP="${BWRAP[*]}"

$BWRAP /bin/true || { echo "jail.sh: bwrap cannot run here" >&2; exit 1; }

hyperfine -N --warmup 5 --runs "$RUNS" --style basic --export-json build/bench/jail-hyperfine.json \
  -n "bare: /bin/true" "/bin/true" \
  -n "bwrap: /bin/true" "$BWRAP /bin/true" \
  -n "viv run: /bin/true" "$VIV run -- /bin/true" \
  -n "bare: python3 -c pass" "/usr/bin/python3 -I -c pass" \
  -n "bwrap: python3 -c pass" "$BWRAP /usr/bin/python3 -I -c pass" \
  -n "viv run: python --code pass" "$VIV run --tool python --code pass" >/dev/null

python3 - build/bench/jail-hyperfine.json build/bench/jail.jsonl <<'PY'
import json, statistics, sys
res = json.load(open(sys.argv[1]))["results"]
rows = {r["command"]: r for r in res}
with open(sys.argv[2], "w") as out:
    for r in res:
        t = [x * 1e3 for x in r["times"]]
        out.write(json.dumps({"name": r["command"], "median_ms": statistics.median(t), "mean_ms": statistics.mean(t),
                              "stddev_ms": statistics.pstdev(t), "min_ms": min(t), "max_ms": max(t), "runs": len(t)}) + "\n")
med = lambda name: statistics.median(rows[name]["times"]) * 1e3
print("| workload | bare exec | bwrap | viv run | viv - bare | viv / bwrap |")
print("|---|---|---|---|---|---|")
for label, b, w, v in [("/bin/true", "bare: /bin/true", "bwrap: /bin/true", "viv run: /bin/true"),
                       ("python3 -c pass", "bare: python3 -c pass", "bwrap: python3 -c pass", "viv run: python --code pass")]:
    print(f"| {label} | {med(b):.2f} ms | {med(w):.2f} ms | {med(v):.2f} ms | {med(v)-med(b):.2f} ms | {med(v)/med(w):.2f} |")
PY
