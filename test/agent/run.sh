#!/usr/bin/env bash
# test/agent/run.sh - the agent suite: protocol, graders, loader, episodes and
# teacher (build/test/agent_tests, ASan + UBSan), then `viv eval` end to end
# through a real vivd on the hand-written fixture tasks, then a short fuzz run
# of the protocol/grader parsers. One "ok - / not ok - / skip - " line per test.
set -u
cd "$(dirname "$0")/../.."
fail=0
ok() { echo "ok - $1"; }
bad() { echo "not ok - $1: $2"; fail=1; }

for f in build/test/agent_tests bin/viv bin/vivd build/fuzz/fuzz_protocol; do
  [ -x "$f" ] || { bad "agent build" "$f missing (make all tests)"; exit 1; }
done

# --- unit tests -------------------------------------------------------------------
build/test/agent_tests || fail=1

# --- viv eval end to end --------------------------------------------------------------
if ! command -v sqlite3 >/dev/null || ! command -v python3 >/dev/null; then
  echo "skip - viv eval end to end: needs sqlite3 and python3 (build.sh installs them)"
  exit $fail
fi
T=$(mktemp -d /tmp/agent-e2e-XXXXXX)
vivd_pid=
cleanup() { [ -n "$vivd_pid" ] && kill "$vivd_pid" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
# the jailed tools run as an unprivileged user: the data must be world-readable
chmod 755 "$T"; mkdir -p "$T/data/db" "$T/data/tasks"; chmod -R 755 "$T/data"
sqlite3 "$T/data/db/org.Hs.eg.sqlite" < test/agent/fixtures/db.sql && chmod 644 "$T/data/db/org.Hs.eg.sqlite"
cp test/agent/fixtures/tasks.jsonl "$T/data/tasks/val.jsonl"

# check FILE.json with a Python expression over `d` (the table) and `t` (trajectory lines)
check() { # name json-file traj-file-or-empty expression
  local out
  if out=$(python3 - "$2" "$3" "$4" 2>&1 <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
t = [json.loads(l) for l in open(sys.argv[2])] if sys.argv[2] else []
ok = eval("(" + sys.argv[3] + ")")
print(json.dumps(d["overall"]))
sys.exit(0 if ok else 1)
EOF
  ); then ok "$1"; else bad "$1" "$out"; fi
}

viv_eval() { bin/viv eval --env viv-bio "$@" >"$T/stdout" 2>"$T/stderr"; }

if viv_eval --data "$T/data" --split val --agent oracle --episodes 24 --concurrency 4 --seed 5 \
     --out "$T/oracle.json" --trajectories "$T/oracle.jsonl"; then
  check "viv eval oracle scores 1.0 on every fixture task" "$T/oracle.json" "$T/oracle.jsonl" \
    'd["overall"]["n"] == 24 and d["overall"]["accuracy"] == 1.0 and d["overall"]["format_rate"] == 1.0
     and len(d["per_task"]) == 7 and all(r["accuracy"] == 1.0 and r["format_rate"] == 1.0 for r in d["per_task"])
     and len(t) == 24 and all(x["reward"] == 2 for x in t) and d["overall"]["tool_calls"] >= 24
     and d["overall"]["ends"]["solution"] == 24'
  grep -q '^all  *24  *1.000  *1.000' "$T/stdout" && ok "viv eval prints the table" || bad "viv eval prints the table" "$(cat "$T/stdout")"
else
  bad "viv eval oracle" "exit $?: $(tail -3 "$T/stderr")"
fi

# episodes finish in any order under concurrency: compare them sorted
same_episodes() { python3 -c 'import json,sys; k=lambda f: sorted((json.loads(l) for l in open(f)), key=lambda x: x["episode"]); sys.exit(k(sys.argv[1]) != k(sys.argv[2]))' "$1" "$2"; }
if viv_eval --data "$T/data" --agent oracle --episodes 24 --concurrency 4 --seed 5 --trajectories "$T/oracle2.jsonl" &&
   same_episodes "$T/oracle.jsonl" "$T/oracle2.jsonl"; then
  ok "viv eval is deterministic for a seed (identical trajectories)"
else
  bad "viv eval is deterministic for a seed" "trajectories differ or the run failed"
fi

if viv_eval --data "$T/data" --agent random --episodes 40 --seed 3 --out "$T/random.json"; then
  check "viv eval random: well formatted, near chance, below the oracle" "$T/random.json" "" \
    'd["overall"]["format_rate"] == 1.0 and 0.05 < d["overall"]["accuracy"] < 0.7 and d["overall"]["mean_turns"] == 1'
else
  bad "viv eval random" "exit $?: $(tail -3 "$T/stderr")"
fi

if viv_eval --data "$T/data" --agent teacher --error-rate 0.5 --episodes 40 --seed 2 --out "$T/teacher.json"; then
  check "viv eval teacher with mistakes: some episodes to reject" "$T/teacher.json" "" \
    '0.2 < d["overall"]["accuracy"] < 1.0 and d["overall"]["format_rate"] < 1.0 and d["error_rate"] == 0.5
     and d["overall"]["ends"]["solution"] + d["overall"]["ends"]["parse_errors"] == 40'
else
  bad "viv eval teacher" "exit $?: $(tail -3 "$T/stderr")"
fi

# Biomni-Eval1 rows: no reference solutions, so the oracle refuses and random runs
viv_eval --tasks test/agent/fixtures/eval1_sample.jsonl --agent oracle
rc=$?
[ $rc -eq 1 ] && grep -q "no reference solution" "$T/stderr" && ok "viv eval oracle refuses Eval1 rows" ||
  bad "viv eval oracle refuses Eval1 rows" "exit $rc: $(cat "$T/stderr")"
if viv_eval --tasks test/agent/fixtures/eval1_sample.jsonl --agent random --out "$T/e1.json"; then
  check "viv eval --tasks Eval1 JSONL with the random agent" "$T/e1.json" "" \
    'd["overall"]["n"] == 4 and {r["task"] for r in d["per_task"]} == {"gwas_causal_gene_pharmaprojects", "crispr_delivery", "lab_bench_seqqa", "patient_gene_detection"}'
else
  bad "viv eval --tasks Eval1" "exit $?: $(tail -3 "$T/stderr")"
fi

# a vivd of our own, through --socket
bin/vivd --socket "$T/own.sock" --log "$T/own.log" --data "db=$T/data/db/org.Hs.eg.sqlite" </dev/null >/dev/null 2>&1 &
vivd_pid=$!
for _ in $(seq 100); do [ -S "$T/own.sock" ] && break; sleep 0.05; done
if viv_eval --data "$T/data" --socket "$T/own.sock" --agent oracle --concurrency 8 --out "$T/sock.json"; then
  check "viv eval --socket uses a running vivd" "$T/sock.json" "" 'd["overall"]["accuracy"] == 1.0 and d["overall"]["n"] == 8'
else
  bad "viv eval --socket" "exit $?: $(tail -3 "$T/stderr")"
fi
kill "$vivd_pid" 2>/dev/null; wait "$vivd_pid" 2>/dev/null; vivd_pid=
# the 4 Python fixture tasks each ran in one session of their own, closed at the end
opens=$(grep -c '"op":"session_open"' "$T/own.log"); closes=$(grep -c '"op":"session_close"' "$T/own.log")
[ "$opens" = 4 ] && [ "$closes" = 4 ] && ok "viv eval: one Python session per episode, closed after it" ||
  bad "viv eval: one Python session per episode" "$opens opened, $closes closed"

# a tool's output reaches the observation and the trajectory file whole: NUL
# and what follows it, invalid UTF-8 (U+FFFD per byte), C0 and C1 controls
python3 - "$T/nul.jsonl" <<'EOF'
import json, sys
code = ("import sys\nprint('a\\x00b')\nsys.stdout.flush()\n"
        "sys.stdout.buffer.write(b'\\xff\\xfe\\x00x\\xc2\\x85\\x01\\n')\nsys.stdout.flush()\n"
        "sys.stderr.write('e\\x00f\\n')\nprint('TP53')")
open(sys.argv[1], "w").write(json.dumps({"instance_id": "nul-1", "task_name": "screen_gene_retrieval", "split": "val",
    "prompt": "Which gene? Answer with its symbol.", "answer": "TP53", "reference": {"tool": "python", "code": code}}) + "\n")
EOF
if viv_eval --data "$T/data" --tasks "$T/nul.jsonl" --agent oracle --episodes 1 --out "$T/nul.json" --trajectories "$T/nul-traj.jsonl"; then
  check "viv eval: a tool's output with NUL, invalid UTF-8 and controls reaches the observation whole" "$T/nul.json" "$T/nul-traj.jsonl" \
    'd["overall"]["accuracy"] == 1.0 and any(m["role"] == "tool" and
       "<observation>a\x00b\n\ufffd\ufffd\x00x\x85\x01\nTP53\ne\x00f\n</observation>" in m["content"] for m in t[0]["messages"])'
else
  bad "viv eval with NUL in a tool's output" "exit $?: $(tail -3 "$T/stderr")"
fi

# bad input: a clear message and a non-zero exit, never a crash
usage_case() { # name expected-rc args...
  local name=$1 want=$2; shift 2
  bin/viv eval "$@" >/dev/null 2>"$T/err"; local rc=$?
  [ $rc -eq "$want" ] && [ -s "$T/err" ] && ok "viv eval rejects $name" || bad "viv eval rejects $name" "exit $rc: $(cat "$T/err")"
}
usage_case "an unknown env" 2 --env other --data "$T/data"
usage_case "an unknown agent" 2 --data "$T/data" --agent smart
usage_case "--episodes 0" 2 --data "$T/data" --episodes 0
usage_case "a stray argument" 2 --data "$T/data" oracle
usage_case "a missing task file" 1 --data "$T/nowhere"
usage_case "an empty split" 1 --data "$T/data" --split test

# --- fuzz smoke ------------------------------------------------------------------------
c=$(mktemp -d)
if build/fuzz/fuzz_protocol -max_total_time="${FUZZ_SECONDS:-10}" -seed=1 -artifact_prefix="$c/" "$c" test/fuzz/seeds_protocol >"$c.log" 2>&1; then
  ok "fuzz fuzz_protocol ($(grep -o 'Done [0-9]* runs' "$c.log"))"
  rm -rf "$c" "$c.log"
else
  bad "fuzz fuzz_protocol" "$(grep -m1 -E 'ERROR|SUMMARY|crash' "$c.log") (kept in $c, $c.log)"
fi
exit $fail
