#!/usr/bin/env bash
# test/bench/rollout.sh - the asynchronous rollout scheduler against the
# synchronous generate-then-execute loop, side by side in one run.
#
# The same 256 episodes (32 groups of 8; 8 tool turns then a solution) run
# through rl/rollout.c twice per round, once per mode, for RUNS rounds,
# alternating modes: the scripted fake generator (test/doubles/fake_gen.c: sleeps like
# a GPU decoding a batch of up to 64: 5 ms per call + 1 ms per token of the
# longest output, ~100-250 tokens per turn) and real tool calls through a
# private bin/vivd, one jailed Python session per episode: 3 in 4 calls sleep
# for a log-uniform 10 ms..2 s, 1 in 4 compute a sum of squares (2-30 ms).
# Reports every run and the medians: episodes/s and the fraction of the step
# the generator sat idle; JSON lines go to build/bench/rollout.jsonl.
#
#   test/bench/rollout.sh [RUNS] [extra rollout_bench options]   (default 3; needs make all tests)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
shift || true
[ -x build/bench/rollout_bench ] || { echo "build/bench/rollout_bench missing: make tests" >&2; exit 1; }
mkdir -p build/bench
tmp=$(mktemp -d)
trap 'kill $(cat "$tmp/pid" 2>/dev/null) 2>/dev/null; rm -rf "$tmp"' EXIT
# a session per episode: allow them all on this one connection
bin/vivd --socket "$tmp/vivd.sock" --log "$tmp/log" --max-sessions-per-peer 1024 </dev/null >/dev/null 2>&1 &
echo $! >"$tmp/pid"
for _ in $(seq 100); do [ -S "$tmp/vivd.sock" ] && break; sleep 0.05; done
echo "rollout benchmark: $(nproc) cores, $RUNS runs per mode"
rc=0
build/bench/rollout_bench --socket "$tmp/vivd.sock" --runs "$RUNS" --episodes 256 --group-size 8 \
  --tool-turns 8 --max-batch 64 --step-us 1000 --call-us 5000 --json build/bench/rollout.jsonl "$@" || rc=$?
if [ "$rc" -ne 0 ]; then
  cp "$tmp/log" build/bench/rollout-vivd.log
  echo "some episodes failed (above); vivd's log: build/bench/rollout-vivd.log" >&2
fi
exit "$rc"
