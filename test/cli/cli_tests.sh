#!/usr/bin/env bash
# cli_tests.sh - `viv run` and `viv policy` as a user meets them: output,
# exit status, and one-line errors for bad input. Usage: cli_tests.sh [VIV]
set -u
VIV=${1:-bin/viv}
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok()   { pass=$((pass + 1)); echo "ok - $1"; }
bad()  { fail=$((fail + 1)); echo "not ok - $1: $2"; }

# expect NAME WANT_STATUS WANT_STDOUT_SUBSTRING WANT_STDERR_SUBSTRING -- ARGS...
expect() {
  local name=$1 want_rc=$2 want_out=$3 want_err=$4; shift 5
  "$VIV" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local rc=$?
  if [ "$rc" != "$want_rc" ]; then bad "$name" "exit $rc, want $want_rc; stderr: $(head -c 300 "$tmp/err")"; return; fi
  if [ -n "$want_out" ] && ! grep -qF -- "$want_out" "$tmp/out"; then bad "$name" "stdout lacks '$want_out': $(head -c 300 "$tmp/out")"; return; fi
  if [ -n "$want_err" ] && ! grep -qF -- "$want_err" "$tmp/err"; then bad "$name" "stderr lacks '$want_err': $(head -c 300 "$tmp/err")"; return; fi
  ok "$name"
}

# errors are one line on stderr, exit 2
one_line_error() {
  local name=$1; shift
  "$VIV" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local rc=$? lines
  lines=$(wc -l <"$tmp/err")
  if [ "$rc" = 2 ] && [ "$lines" = 1 ] && [ ! -s "$tmp/out" ]; then ok "$name"; else bad "$name" "exit $rc, $lines stderr lines: $(cat "$tmp/err")"; fi
}

expect version 0 "viv " "" -- --version
file "$VIV" | grep -q 'statically linked' && ok static_file_check || bad static_file_check "$(file "$VIV")"

expect python_hello 0 "42" "" -- run --tool python --code 'print(6*7)'
expect shell_hello 0 "hi" "" -- run --tool shell --code 'echo hi'
expect command_mode 0 "Linux" "" -- run -- uname -s
expect exit_status_passthrough 3 "" "" -- run --tool shell --code 'exit 3'
expect signal_status 137 "" "" -- run --tool shell --code 'kill -9 $$'
expect timeout_status 124 "" "deadline" -- run --timeout-ms 300 --tool shell --code 'sleep 5'
expect stderr_passthrough 1 "" "ZeroDivisionError" -- run --tool python --code '1/0'
expect json_result 0 '"exit_code":0' "" -- run --json --tool python --code 'print(1)'

printf 'print(sum(range(10)))\n' >"$tmp/code.py"
expect code_file 0 "45" "" -- run --tool python --code-file "$tmp/code.py"
if printf 'echo from-stdin\n' | "$VIV" run --tool shell - 2>"$tmp/err" | grep -q from-stdin; then ok code_on_stdin; else bad code_on_stdin "$(cat "$tmp/err")"; fi

# --json output must be valid JSON even for binary output
"$VIV" run --json --tool python --code 'import sys; sys.stdout.buffer.write(bytes(range(256)))' >"$tmp/bin.json"
if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["exit_code"]==0 and "\ufffd" in d["stdout"]' "$tmp/bin.json"; then ok binary_output_json; else bad binary_output_json "$(head -c 200 "$tmp/bin.json")"; fi

# the sql tool: a real query against a database bound read-only
python3 - "$tmp/g.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.execute("create table genes(symbol text, chrom text)")
c.executemany("insert into genes values(?,?)", [("TP53","17"),("BRCA1","17"),("CFTR","7")]); c.commit()
PY
chmod 644 "$tmp/g.db"; chmod 755 "$tmp"
expect sql_query 0 "BRCA1	17" "" -- run --tool sql --db "$tmp/g.db" --code "select symbol, chrom from genes where chrom='17' order by symbol;"
expect sql_read_only 1 "" "readonly" -- run --tool sql --db "$tmp/g.db" --code "insert into genes values('X','1');"
expect sql_needs_db 2 "" "needs data 'db'" -- run --tool sql --code "select 1;"

one_line_error unknown_flag run --frobnicate
one_line_error missing_value run --timeout-ms
one_line_error bad_number run --timeout-ms 12x --tool shell --code true
one_line_error timeout_over_policy_max run --timeout-ms 3600000 --tool shell --code true
one_line_error mem_over_policy run --mem-mb 999999 --tool shell --code true
one_line_error unknown_policy run --policy nope -- /bin/true
one_line_error unknown_tool run --tool cobol --code x
one_line_error nothing_to_run run --json
one_line_error code_and_command run --tool shell --code x -- /bin/true
one_line_error missing_code_file run --tool python --code-file /nonexistent/x.py
one_line_error unknown_subcommand frobnicate
echo '{"name":"x","command":["/bin/true"],"seccomp":{"syscalls":["read"]},"limits":{"pids":0}}' >"$tmp/badpol.json"
one_line_error invalid_policy_file run --policy "$tmp/badpol.json" -- /bin/true
if grep -q "badpol.json: limits.pids: 0 is out of range" "$tmp/err"; then ok invalid_policy_names_file_and_key; else bad invalid_policy_names_file_and_key "$(cat "$tmp/err")"; fi

expect policy_check 0 '"memory_mb"' "" -- policy check python
expect policy_check_bpf 0 "KILL_PROCESS" "" -- policy check shell --bpf
expect policy_list 0 "sql" "" -- policy list
one_line_error policy_check_invalid policy check "$tmp/badpol.json"

echo "# $pass passed, $fail failed, 0 skipped"
[ "$fail" = 0 ]
