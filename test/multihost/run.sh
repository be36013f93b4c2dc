#!/usr/bin/env bash
# test/multihost/run.sh - tool calls across several sandbox hosts (test/run.sh multihost):
#   multihost_tests   the sandbox pool (sandbox/client/pool.c) under the rollout engine
#                     against real vivds: load shared (by capacity), a host killed mid-step,
#                     a host frozen (SIGSTOP) mid-step,
#                     tokens, bad addresses (ASan + UBSan)
#   viv eval --sandbox end to end over two vivds (a Unix socket and TCP with a
#                     token) on the agent suite's fixture tasks; a host killed
#                     mid-run (its episodes re-run, none scored wrong); a wrong token
#                     and bad addresses on viv eval / train / sft are clear errors
#   viv train --sandbox a tiny run over two vivds: SFT collection and evals use both;
#                     metrics.jsonl's step lines carry the per-host counts (the tiny
#                     model rarely calls a tool, so the counting itself is tested
#                     in multihost_tests, where the step stats come from)
# Needs `make all tests` and the task data (data/, or $VIV_TEST_DATA; built
# here if missing, as the train suite does). One "ok - / not ok - / skip - "
# line per test.
set -u
cd "$(dirname "$0")/../.."
fail=0
ok() { echo "ok - $1"; }
bad() { echo "not ok - $1: $2"; fail=1; }

for f in build/test/multihost_tests bin/viv bin/vivd; do
  [ -x "$f" ] || { bad "multihost build" "$f missing (make all tests)"; exit 1; }
done
VIVD=${VIVD:-bin/vivd} build/test/multihost_tests || fail=1

T=$(mktemp -d /tmp/multihost-e2e-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT

# --- usage errors: checked before anything starts ----------------------------------
usage_case() { # name expected-message cmd args...
  local name=$1 want=$2; shift 2
  # (--data points nowhere: a check that failed to stop the command must not build data)
  VIV_SANDBOX_TOKEN= bin/viv "$@" --data "$T/no-data" >/dev/null 2>"$T/err"; local rc=$?
  if [ "$rc" = 2 ] && grep -q -- "$want" "$T/err"; then ok "$name"; else bad "$name" "exit $rc: $(head -c 300 "$T/err")"; fi
}
usage_case "viv train --sandbox http://x is a usage error" "is not a sandbox address" train --sandbox http://x:80
usage_case "viv sft --sandbox tcp:HOST without a port is a usage error" "expected tcp:HOST:PORT" sft --sandbox tcp:127.0.0.1
usage_case "viv eval --sandbox with an empty address is a usage error" "empty sandbox address" eval --sandbox /a.sock,
usage_case "viv train --sandbox tcp: without a token is a usage error" "needs its token" train --sandbox tcp:127.0.0.1:7070
usage_case "viv eval --socket and --sandbox together is a usage error" "give one" eval --socket /a --sandbox /b

# --- viv eval over two vivds ---------------------------------------------------------------
if ! command -v sqlite3 >/dev/null || ! command -v python3 >/dev/null; then
  echo "skip - viv eval --sandbox end to end: needs sqlite3 and python3 (build.sh installs them)"
  exit $fail
fi
chmod 755 "$T"; mkdir -p "$T/data/db" "$T/data/tasks"; chmod -R 755 "$T/data"
sqlite3 "$T/data/db/org.Hs.eg.sqlite" < test/agent/fixtures/db.sql && chmod 644 "$T/data/db/org.Hs.eg.sqlite"
cp test/agent/fixtures/tasks.jsonl "$T/data/tasks/val.jsonl"
echo "0123456789abcdef-e2e-token" > "$T/token"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for i in 0 1; do
  extra=()
  [ "$i" = 1 ] && extra=(--tcp "127.0.0.1:$port" --token-file "$T/token")
  bin/vivd --socket "$T/v$i.sock" --log "$T/v$i.log" --zygotes 1 --data "db=$T/data/db/org.Hs.eg.sqlite" \
    "${extra[@]}" </dev/null >/dev/null 2>&1 &
  pids+=($!)
done
for _ in $(seq 200); do [ -S "$T/v0.sock" ] && [ -S "$T/v1.sock" ] && break; sleep 0.05; done

if bin/viv eval --env viv-bio --data "$T/data" --agent oracle --episodes 24 --concurrency 8 --seed 5 \
     --sandbox "unix:$T/v0.sock,tcp:127.0.0.1:$port" --sandbox-token-file "$T/token" --out "$T/two.json" \
     >"$T/stdout" 2>"$T/stderr"; then
  if python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["overall"]; sys.exit(0 if d["n"]==24 and d["accuracy"]==1.0 else 1)' "$T/two.json"; then
    ok "viv eval --sandbox over two vivds: the oracle scores 1.0"
  else bad "viv eval --sandbox over two vivds" "$(cat "$T/two.json")"; fi
  # both hosts ran tool calls (vivd logs one line per request)
  c0=$(grep -c '"op":"\(exec\|session_open\)"' "$T/v0.log"); c1=$(grep -c '"op":"\(exec\|session_open\)"' "$T/v1.log")
  [ "$c0" -gt 0 ] && [ "$c1" -gt 0 ] && ok "viv eval --sandbox: both hosts got calls ($c0 and $c1)" ||
    bad "viv eval --sandbox: both hosts got calls" "$c0 and $c1"
else
  bad "viv eval --sandbox over two vivds" "exit $?: $(tail -3 "$T/stderr")"
fi

# a host killed during viv eval: the episodes it ended are run again on the other, none is
# scored as wrong (the oracle still scores 1.0 over all 24), and the table says how many re-ran
for i in 4 5; do
  bin/vivd --socket "$T/v$i.sock" --log "$T/v$i.log" --zygotes 1 --data "db=$T/data/db/org.Hs.eg.sqlite" \
    </dev/null >/dev/null 2>&1 &
  pids+=($!)
  [ "$i" = 5 ] && victim=$!
done
for _ in $(seq 200); do [ -S "$T/v4.sock" ] && [ -S "$T/v5.sock" ] && break; sleep 0.05; done
bin/viv eval --env viv-bio --data "$T/data" --agent oracle --episodes 24 --concurrency 8 --seed 5 \
  --sandbox "unix:$T/v4.sock,unix:$T/v5.sock" --out "$T/killed.json" >"$T/kstdout" 2>"$T/kstderr" &
evalpid=$!
# the victim dies once it has taken a few calls (its log has a line per request)
for _ in $(seq 400); do [ "$(grep -c '"op":' "$T/v5.log" 2>/dev/null)" -ge 4 ] && break; sleep 0.01; done
kill -9 "$victim"
wait "$evalpid"; erc=$?
if [ "$erc" = 0 ] && out=$(python3 - "$T/killed.json" <<'EOF2'
import json, sys
d = json.load(open(sys.argv[1]))["overall"]
assert d["n"] == 24 and d["accuracy"] == 1.0 and d["sandbox_lost"] == 0, d
print(d["sandbox_reruns"])
EOF2
); then
  if [ "$out" -ge 1 ]; then ok "viv eval with a host killed mid-run: $out episodes re-run on the live host, the oracle still scores 1.0 over 24"
  else echo "skip - viv eval with a host killed mid-run: the kill caught no episode in flight (accuracy 1.0 over 24)"; fi
else bad "viv eval with a host killed mid-run" "exit $erc: $(tail -3 "$T/kstderr") $(cat "$T/killed.json" 2>/dev/null | head -c 600)"; fi

# a wrong token: refused with a message that says what to fix
VIV_SANDBOX_TOKEN=0123456789abcdef-wrong bin/viv eval --env viv-bio --data "$T/data" --agent oracle --episodes 2 \
  --sandbox "tcp:127.0.0.1:$port" >/dev/null 2>"$T/err"; rc=$?
if [ "$rc" = 1 ] && grep -q "refused the token" "$T/err"; then ok "viv eval: a wrong token is refused clearly"
else bad "viv eval: a wrong token is refused clearly" "exit $rc: $(head -c 300 "$T/err")"; fi

# --- viv train --sandbox: the GRPO steps' calls over two vivds, per host in metrics.jsonl ----------
DATA=${VIV_TEST_DATA:-data}
if [ ! -f "$DATA/tasks/train.jsonl" ]; then
  bin/viv data build --out "$DATA" >/dev/null 2>&1 || { bad "viv train --sandbox" "viv data build failed"; exit 1; }
fi
dbdir=$(cd "$DATA/db" && pwd)
for i in 2 3; do
  bin/vivd --socket "$T/v$i.sock" --log "$T/v$i.log" --zygotes 1 --max-sessions-per-peer 64 \
    --data "biodb=$dbdir" --data "db=$dbdir/org.Hs.eg.sqlite" </dev/null >/dev/null 2>&1 &
  pids+=($!)
done
for _ in $(seq 200); do [ -S "$T/v2.sock" ] && [ -S "$T/v3.sock" ] && break; sleep 0.05; done
if bin/viv train --data "$DATA" --runs "$T/runs" --name mh --steps 2 --train-limit 14 --eval-limit 4 --samples 1 \
     --tasks-per-step 4 --group 2 --sft-epochs 1 --max-turns 3 --max-turn-tokens 48 --max-context 1024 --vocab 400 \
     --d-model 32 --layers 1 --heads 2 --kv-heads 1 --head-dim 16 --ffn 64 --threads 1 \
     --sandbox "$T/v2.sock,unix:$T/v3.sock" >"$T/train.out" 2>"$T/train.err"; then
  if out=$(python3 - "$T/runs/mh/metrics.jsonl" 2>&1 <<'EOF'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1])]
steps = [s for s in steps if "sandbox_calls_0" in s]
assert len(steps) == 2, "%d step lines with sandbox_calls_0" % len(steps)
for s in steps:
    assert s["sandbox_calls_0"] + s["sandbox_calls_1"] == s["tool_calls"], s
    assert s["sandbox_hosts_up"] == 2 and "reward" in s and "loss" in s, s
print("GRPO calls per host: %d and %d" % (sum(s["sandbox_calls_0"] for s in steps), sum(s["sandbox_calls_1"] for s in steps)))
EOF
  ); then
    c2=$(grep -c '"op":"\(exec\|session_open\)"' "$T/v2.log"); c3=$(grep -c '"op":"\(exec\|session_open\)"' "$T/v3.log")
    [ "$c2" -gt 0 ] && [ "$c3" -gt 0 ] && ok "viv train --sandbox: the teacher's and eval's calls ran on both hosts ($c2, $c3); step lines carry sandbox_calls_<i> ($out)" ||
      bad "viv train --sandbox: both hosts ran calls" "vivd logs: $c2 and $c3"
  else bad "viv train --sandbox: per-host calls in metrics.jsonl" "$out"; fi
else
  bad "viv train --sandbox" "exit $?: $(tail -3 "$T/train.err")"
fi
exit $fail
