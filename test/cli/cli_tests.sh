#!/usr/bin/env bash
# cli_tests.sh - viv's commands and vivd as a user meets them: output, exit
# status, one-line errors for bad input (one parser for every command),
# nothing done silently, clean interrupts. Usage: cli_tests.sh [VIV]
# (vivd is taken from beside VIV; the tests that need task data use
# $VIV_TEST_DATA or data/, and say skip without it).
set -u
VIV=$(realpath "${1:-bin/viv}")
VIVD=$(realpath "${VIVD:-$(dirname "$VIV")/vivd}")
DATA=$(realpath "${VIV_TEST_DATA:-data}")
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
# an egress allowlist: printed by policy check; a bad entry is one line naming it
echo '{"name":"net","command":["/bin/true"],"seccomp":{"syscalls":["read","execve"],"socket_families":["AF_INET"]},
       "network":{"egress":["rest.ensembl.org:443","*.ncbi.nlm.nih.gov:443"]}}' >"$tmp/netpol.json"
expect policy_check_egress 0 '"*.ncbi.nlm.nih.gov:443"' "" -- policy check "$tmp/netpol.json"
sed 's/rest.ensembl.org:443/rest.ensembl.org/' "$tmp/netpol.json" >"$tmp/badnet.json"
one_line_error policy_check_bad_egress policy check "$tmp/badnet.json"
if grep -q "network.egress\[0\]: 'rest.ensembl.org': needs a port" "$tmp/err"; then ok egress_entry_named; else bad egress_entry_named "$(cat "$tmp/err")"; fi
one_line_error egress_record_and_replay_exclusive run --policy "$tmp/netpol.json" --egress-record /tmp --egress-replay /tmp -- /bin/true
one_line_error egress_record_dir_missing run --policy "$tmp/netpol.json" --egress-record /nonexistent/dir -- /bin/true

skips=0
skip() { skips=$((skips + 1)); echo "skip - $1: $2"; }

# ---- one parser, one error style: every command and vivd ----
# run CMD... ; then check exit status, one stderr line, and a piece of it
errs_with() {
  local name=$1 want=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local rc=$? lines
  lines=$(wc -l <"$tmp/err")
  if [ "$rc" != 2 ] || [ "$lines" != 1 ] || [ -s "$tmp/out" ]; then bad "$name" "exit $rc, $lines stderr lines: $(head -c 300 "$tmp/err")"; return; fi
  if ! grep -qF -- "$want" "$tmp/err"; then bad "$name" "stderr lacks '$want': $(cat "$tmp/err")"; return; fi
  ok "$name"
}
for c in run exec eval train sft; do
  errs_with "unknown_option_$c" "viv $c: unknown option '--bogus' (see viv $c --help)" "$VIV" $c --bogus
done
errs_with unknown_option_vivd "vivd: unknown option '--bogus' (see vivd --help)" "$VIVD" --bogus
errs_with did_you_mean_run "unknown option '--timout-ms' (did you mean --timeout-ms?)" "$VIV" run --timout-ms 5
errs_with did_you_mean_eval "(did you mean --concurrency?)" "$VIV" eval --concurency 3
errs_with did_you_mean_train "(did you mean --kl?)" "$VIV" train --kll 0.1
errs_with did_you_mean_vivd "(did you mean --workers?)" "$VIVD" --workrs 3
errs_with did_you_mean_command "unknown command 'evl' (did you mean eval?)" "$VIV" evl
errs_with did_you_mean_policy_action "unknown action 'chek' (did you mean check?)" "$VIV" policy chek python
errs_with policy_check_needs_a_name "check takes one NAME|FILE" "$VIV" policy check
errs_with unknown_option_policy "viv policy: unknown option '--bogus' (see viv policy --help)" "$VIV" policy check python --bogus
errs_with bad_value_eval_limit "--limit: '0' is not a whole number in [1, 10000000]" "$VIV" eval --limit 0
errs_with bad_value_eval "--timeout-ms: 'abc' is not a whole number in [1, 3600000]" "$VIV" eval --timeout-ms abc
errs_with bad_value_vivd "--workers: 'abc' is not a whole number in [1, 4096]" "$VIVD" --workers abc
errs_with bad_value_exec "--timeout-ms: '-5' is not a whole number in [1, 86400000]" "$VIV" exec --timeout-ms -5
errs_with bad_value_train_double "--lr: 'fast' is not a number in [0, 1]" "$VIV" train --lr fast
errs_with bad_value_sft_range "--samples: '65' is not a whole number in [1, 64]" "$VIV" sft --samples 65
errs_with missing_value_eval "--out needs a value (FILE)" "$VIV" eval --out
errs_with missing_value_vivd "--socket needs a value (PATH)" "$VIVD" --socket
errs_with missing_value_train "--name needs a value (NAME)" "$VIV" train --name
errs_with flag_takes_no_value "--json takes no value" "$VIV" run --json=1 --tool shell --code true
errs_with equals_form_checked "--mem-mb: 'x' is not a whole number in [16, 1048576]" "$VIV" run --mem-mb=x --tool shell --code true
errs_with unexpected_argument_eval "unexpected argument 'oracle'" "$VIV" eval oracle

# --help: every flag of the table, then examples; `viv help CMD` is the same text
help_lists() { # name want... -- cmd...
  local name=$1; shift
  local wants=()
  while [ "$1" != -- ]; do wants+=("$1"); shift; done; shift
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ "$rc" != 0 ]; then bad "$name" "exit $rc"; return; fi
  for w in "${wants[@]}"; do grep -qF -- "$w" "$tmp/out" || { bad "$name" "help lacks '$w'"; return; }; done
  # ends with examples: the last lines after "examples:" are at least two command lines
  if [ "$(sed -n '/^examples:/,$p' "$tmp/out" | grep -c '^  ')" -lt 2 ]; then bad "$name" "no examples at the end"; return; fi
  ok "$name"
}
help_lists help_vivd --zygotes --data --auth-ms --version -- "$VIVD" --help
help_lists help_policy --bpf check list bpf -- "$VIV" policy --help
help_lists help_sft_lists_train_flags --sft-lr --vocab --teacher-model --overwrite --sandbox-token-file -- "$VIV" sft --help
help_lists help_train --overwrite --resume --kl "default 0: off" -- "$VIV" train --help
help_lists help_eval --timeout-ms "default 10000" --trajectories -- "$VIV" eval --help
help_lists help_exec --socket --op -- "$VIV" exec --help
help_lists help_run --db --data --json -- "$VIV" run --help
"$VIV" exec --help >"$tmp/h1"; "$VIV" help exec >"$tmp/h2" 2>&1; hrc=$?
if [ "$hrc" = 0 ] && cmp -s "$tmp/h1" "$tmp/h2"; then ok help_cmd_is_cmd_help; else bad help_cmd_is_cmd_help "exit $hrc: $(head -3 "$tmp/h2")"; fi
errs_with help_unknown_cmd "unknown command 'frob'" "$VIV" help frob
out=$("$VIVD" --version 2>&1); vrc=$?
if [ "$vrc" = 0 ] && [ "$out" = "$("$VIV" --version | sed 's/^viv/vivd/')" ]; then ok vivd_version_matches_viv; else bad vivd_version_matches_viv "exit $vrc: $out"; fi
if "$VIV" --help | grep -qF -- "--version"; then ok version_listed; else bad version_listed "viv --help lacks --version"; fi

# ---- nothing happens silently ----
# vivd: a --data path that does not exist is an error at start, not jobs without /db
errs_with vivd_data_missing "--data 'biodb=/nonexistent': /nonexistent: No such file or directory" "$VIVD" --socket "$tmp/v.sock" --data biodb=/nonexistent
[ -e "$tmp/v.sock" ] && bad vivd_data_missing_no_socket "the socket was created" || ok vivd_data_missing_no_socket
# train: a --data DIR that is not there is an error that says how to build it; nothing is created
(cd "$tmp" && "$VIV" train --data mydata --runs "$tmp/runs" >"$tmp/out" 2>"$tmp/err"); trc=$?
if [ "$trc" = 2 ] && grep -qF "viv data build --out mydata" "$tmp/err" && [ ! -e "$tmp/mydata" ] && [ ! -e "$tmp/runs" ]; then
  ok train_missing_data_dir; else bad train_missing_data_dir "exit $trc, created: $(ls "$tmp"); $(cat "$tmp/err")"; fi
# eval: an --out whose directory does not exist fails before any episode (nothing on stdout)
errs_with eval_out_dir_missing "--out /no/such/dir/ev.json: the directory /no/such/dir does not exist" "$VIV" eval --out /no/such/dir/ev.json
errs_with eval_trajectories_is_dir "--trajectories $tmp: is a directory" "$VIV" eval --trajectories "$tmp"
# run: a database given as a directory is refused before the jail starts; a relative one is found
errs_with run_db_directory "--db '$tmp': not a database file" "$VIV" run --tool sql --db "$tmp" --code 'select 1;'
errs_with run_db_missing "No such file or directory" "$VIV" run --tool sql --db "$tmp/none.sqlite" --code 'select 1;'
(cd "$tmp" && "$VIV" run --tool sql --db g.db --code "select count(*) from genes;" >"$tmp/out" 2>"$tmp/err"); rrc=$?
if [ "$rrc" = 0 ] && grep -q '^3$' "$tmp/out"; then ok run_db_relative_path; else bad run_db_relative_path "exit $rrc: $(cat "$tmp/err")"; fi

# ---- paths and models ----
errs_with gen_model_not_found "viv gen: --model: model directory not found: /nonexistent" "$VIV" gen --model /nonexistent --prompt hi
errs_with serve_model_not_found "viv serve: --model: model directory not found: /nonexistent" "$VIV" serve --model /nonexistent
errs_with gen_model_not_a_model "not a model directory" "$VIV" gen --model "$tmp" --prompt-ids 1
errs_with train_model_not_found "--model: model directory not found: /nonexistent" "$VIV" train --model /nonexistent --no-sft
# a policy whose allowlist lacks execve can never start its command: said, not exit 127 with nothing
echo '{"name":"noexec","command":["/bin/true"],"seccomp":{"syscalls":["read","write","exit_group"]}}' >"$tmp/noexec.json"
errs_with policy_without_execve "policy 'noexec': seccomp.syscalls lacks execve, so its command could never be executed" \
  "$VIV" run --policy "$tmp/noexec.json" -- /bin/true
errs_with policy_without_execve_json "lacks execve" "$VIV" run --json --policy "$tmp/noexec.json" -- /bin/true

# ---- interrupts: exit 130, one line, temporary files gone ----
"$VIV" run --json --tool shell --code 'sleep 30' >"$tmp/out" 2>"$tmp/err" &
jpid=$!
for _ in $(seq 1 100); do pgrep -P "$jpid" >/dev/null && break; sleep 0.05; done
sleep 0.5; kill -INT "$jpid"; wait "$jpid"; jrc=$?
if [ "$jrc" = 130 ] && grep -q '"cancelled":true' "$tmp/out" && grep -qF "interrupted" "$tmp/err"; then ok run_json_interrupt_130
else bad run_json_interrupt_130 "exit $jrc: $(cat "$tmp/out" "$tmp/err")"; fi

if [ -f "$DATA/tasks/train.jsonl" ] && [ -x "$VIVD" ]; then
  # an endpoint with nothing listening: an error before any episode, and no score table
  "$VIV" eval --data "$DATA" --agent endpoint:http://127.0.0.1:1 --model m >"$tmp/out" 2>"$tmp/err"; erc=$?
  if [ "$erc" = 1 ] && grep -qF "the endpoint does not answer" "$tmp/err" && ! grep -q accuracy "$tmp/out"; then ok eval_endpoint_down_before_episodes
  else bad eval_endpoint_down_before_episodes "exit $erc: $(head -c 300 "$tmp/err") / $(head -c 200 "$tmp/out")"; fi
  # eval --limit N: a mixed sample (shapes in turn, not the first N rows); --json: the results on stdout
  "$VIV" eval --data "$DATA" --limit 7 --json >"$tmp/ev.json" 2>"$tmp/err"; erc=$?
  if [ "$erc" = 0 ] && python3 - "$tmp/ev.json" "$DATA/tasks/val.jsonl" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
shapes = {json.loads(l)["task_name"] for l in open(sys.argv[2]) if l.strip()}
assert d["episodes"] == 7 and d["limit"] == 7, d
assert len(d["per_task"]) == min(7, len(shapes)), [r["task"] for r in d["per_task"]]
assert d["overall"]["n"] == 7 and d["overall"]["accuracy"] == 1.0, d["overall"]
PY
  then ok eval_limit_is_stratified_json; else bad eval_limit_is_stratified_json "exit $erc: $(tail -2 "$tmp/err")"; fi
  # eval --trajectories F interrupted: no F.tmp.PID, no private vivd directory left, exit 130
  ls -d /tmp/viv-?????? 2>/dev/null | sort >"$tmp/before"
  "$VIV" eval --data "$DATA" --concurrency 1 --trajectories "$tmp/tr.jsonl" >"$tmp/out" 2>"$tmp/err" &
  epid=$!
  for _ in $(seq 1 200); do ls "$tmp"/tr.jsonl.tmp.* >/dev/null 2>&1 && break; sleep 0.1; done
  sleep 1; kill -INT "$epid"; wait "$epid"; erc=$?
  ls -d /tmp/viv-?????? 2>/dev/null | sort >"$tmp/after"
  left=$(comm -13 "$tmp/before" "$tmp/after" | while read -r d; do grep -l "\"op\":\"start\"" "$d/vivd.log" 2>/dev/null; done)
  if [ "$erc" = 130 ] && ! ls "$tmp"/tr.jsonl* >/dev/null 2>&1 && [ "$(grep -c 'interrupted;' "$tmp/err")" = 1 ] && [ -z "$left" ]; then
    ok eval_interrupt_removes_temporary_files
  else bad eval_interrupt_removes_temporary_files "exit $erc, left: $(ls "$tmp"/tr.jsonl* 2>/dev/null) $left; $(tail -1 "$tmp/err")"; fi
  # train: an interrupt keeps the last checkpoint, removes one being written, says how to resume
  TINY=(--data "$DATA" --runs "$tmp/runs" --train-limit 14 --eval-limit 7 --samples 2 --tasks-per-step 2 --group 2
        --sft-epochs 1 --max-turns 3 --max-turn-tokens 48 --max-context 1024 --vocab 400 --d-model 32 --layers 1
        --heads 2 --kv-heads 1 --head-dim 16 --ffn 64 --ckpt-every 1 --threads 1)
  "$VIV" train "${TINY[@]}" --name k --steps 100000 >"$tmp/out" 2>"$tmp/err" &
  tpid=$!
  for _ in $(seq 1 600); do [ -f "$tmp/runs/k/checkpoints/latest" ] && break; sleep 0.2; done
  sleep 1; kill -INT "$tpid"; wait "$tpid"; trc=$?
  if [ "$trc" = 130 ] && grep -qF -- "--name k --runs $tmp/runs --resume" "$tmp/err" && ! ls -d "$tmp"/runs/k/checkpoints/*.tmp >/dev/null 2>&1; then
    ok train_interrupt_says_how_to_resume
  else bad train_interrupt_says_how_to_resume "exit $trc: $(tail -1 "$tmp/err"); $(ls "$tmp/runs/k/checkpoints" 2>&1)"; fi
  # the finished or interrupted run is not replaced without --resume or --overwrite
  cp "$tmp/runs/k/metrics.jsonl" "$tmp/metrics.before" 2>/dev/null
  errs_with train_existing_run_refused "already holds a run: continue it with --resume, or replace it with --overwrite" \
    "$VIV" train "${TINY[@]}" --name k --steps 1
  if cmp -s "$tmp/runs/k/metrics.jsonl" "$tmp/metrics.before"; then ok train_existing_run_untouched; else bad train_existing_run_untouched "metrics.jsonl changed"; fi
  # a run directory, or its checkpoints/, is a model directory: its latest checkpoint
  for m in "$tmp/runs/k" "$tmp/runs/k/checkpoints"; do
    "$VIV" gen --model "$m" --prompt-ids 1,2 --max-tokens 2 --threads 1 >"$tmp/out" 2>"$tmp/err"; grc=$?
    if [ "$grc" = 0 ] && grep -qE '^[0-9]+ [0-9]+ ?$' "$tmp/out"; then ok "gen_model_is_run_dir${m##*/k}"
    else bad "gen_model_is_run_dir${m##*/k}" "exit $grc: $(cat "$tmp/err")"; fi
  done
else
  for t in eval_endpoint_down_before_episodes eval_interrupt_removes_temporary_files train_interrupt_says_how_to_resume train_existing_run_refused gen_model_is_run_dir eval_limit_is_stratified_json; do
    skip "$t" "no task data in $DATA (viv data build --out $DATA)"
  done
fi

echo "# $pass passed, $fail failed, $skips skipped"
[ "$fail" = 0 ]
