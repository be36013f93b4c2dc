#!/usr/bin/env bash
# test/run.sh - run the test suites and print the closing tally.
#
#   test/run.sh              the default set: every layer, minutes
#   test/run.sh --full       the long suites (below), what the default set leaves out
#   test/run.sh SUITE...     the suites named (default or long ones)
#   -j N                     run up to N suites at once (default: the number of cores)
#   --check                  only check the arguments (build.sh does, before building)
#
# The default set:
#   unit      policy parsing, JSON output, helpers (ASan + UBSan build)
#   cli       viv run / viv policy as a user meets them (static bin/viv)
#   vivd-asan, vivd-static  the daemon: protocol, abuse, cancellation, drain
#   python-client  the stdlib Python client against a fake server and vivd
#   fuzz      a short libFuzzer run of each target in test/fuzz
#   attack    hostile jobs against the jail, three times: the ASan + UBSan build of
#             viv (catches memory errors in the supervisor and init while
#             they are attacked) and the static bin/viv that users run, and
#             (attack-rootless) the static binary run by an unprivileged user;
#             then the same attacks through vivd's warm paths: attack-zygote
#             (every python job on a zygote) and attack-session (every python
#             job as a session call)
#   <layer>   each test/<layer>/run.sh (agent, envs, gpu, http, model, ...)
# The long suites (--full):
#   gpu-long  kemu's race check, memcheck and access profile (test/gpu/run.sh
#             with VIV_TEST_PART=long; their binaries are `make tests-full`)
#   vivd-long vivd's 10,000-request load over 8 connections (static vivd)
#   fuzz-long each libFuzzer target for FUZZ_LONG_SECONDS (default 120)
#
# Each suite prints "ok - ...", "not ok - ..." or "skip - ..." lines. Suites
# share no port, socket or fixed path (each makes its own temporary
# directory), so they run side by side; a suite's output is held until it
# ends and then printed together under its "== suite (N s)" line. The
# closing lines name the slowest tests, then "N passed, N failed, N skipped".
# Exit status 1 on any failure, 2 on a usage error.
set -u
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

DEFAULT_SUITES=(unit cli attack-asan attack-static attack-rootless attack-zygote attack-session
                vivd-asan vivd-static python-client fuzz)
# layers with their own runner join the default run
for r in test/*/run.sh; do [ -x "$r" ] && DEFAULT_SUITES+=("$(basename "$(dirname "$r")")"); done
LONG_SUITES=(gpu-long vivd-long fuzz-long)
# Side by side, the run ends when its longest suite does: the suites that
# take longest start first (the order of the rest is kept).
LONGEST_FIRST=(gpu-long gpu attack-zygote attack-session envs train vivd-static vivd-long vivd-asan)
longest_first() {
  local s f out=()
  for f in "${LONGEST_FIRST[@]}"; do
    for s in "$@"; do [ "$s" = "$f" ] && out+=("$s"); done
  done
  for s in "$@"; do
    [[ " ${LONGEST_FIRST[*]} " == *" $s "* ]] || out+=("$s")
  done
  printf '%s\n' "${out[@]}"
}
# the load test needs seconds of a static daemon, minutes of an ASan one
VIVD_LOAD_TEST=load_8_clients_10000_requests

usage() {
  echo "usage: test/run.sh [-j N] [--check] [--full] [SUITE...]" >&2
  echo "  default suites: ${DEFAULT_SUITES[*]}" >&2
  echo "  long suites (--full): ${LONG_SUITES[*]}" >&2
  exit 2
}

jobs=$(nproc 2>/dev/null || echo 2)
suites=()
full=0
check_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --full) full=1 ;;
    --check) check_only=1 ;;
    -j) [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || usage; jobs=$2; shift ;;
    -j*) [[ ${1#-j} =~ ^[1-9][0-9]*$ ]] || usage; jobs=${1#-j} ;;
    -h|--help) usage ;;
    -*) echo "test/run.sh: unknown option '$1'" >&2; usage ;;
    *) suites+=("$1") ;;
  esac
  shift
done
if [ ${#suites[@]} -eq 0 ]; then
  if [ $full = 1 ]; then suites=("${LONG_SUITES[@]}"); else suites=("${DEFAULT_SUITES[@]}"); fi
fi
known() { local s; for s in "${DEFAULT_SUITES[@]}" "${LONG_SUITES[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
for s in "${suites[@]}"; do
  known "$s" || { echo "test/run.sh: unknown suite '$s'" >&2; usage; }
done
[ $check_only = 1 ] && exit 0
mapfile -t suites < <(longest_first "${suites[@]}")

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# A short libFuzzer run per target (the long run is fuzz-long).
fuzz_run() {
  local seconds=$1 target=$2 corpus; shift 2
  corpus=$(mktemp -d)
  # the seed and regression dirs are read only; new inputs and any crash go to $corpus
  if "build/fuzz/$target" -max_total_time="$seconds" -seed=1 -artifact_prefix="$corpus/" \
       "$corpus" "$@" >"$corpus.log" 2>&1; then
    echo "ok - fuzz $target, ${seconds}s ($(grep -o 'Done [0-9]* runs' "$corpus.log"))"
  else
    echo "not ok - fuzz $target: $(grep -m1 -E 'ERROR|SUMMARY|crash' "$corpus.log")"
    echo "  (reproducer and log kept in $corpus and $corpus.log)"
    return 1
  fi
  rm -rf "$corpus" "$corpus.log"
}
fuzz_targets() { # seconds per target
  local rc=0
  fuzz_run "$1" fuzz_policy policies test/fuzz/regressions_policy || rc=1
  fuzz_run "$1" fuzz_request test/fuzz/seeds_request || rc=1
  fuzz_run "$1" fuzz_http test/fuzz/seeds_http || rc=1
  fuzz_run "$1" fuzz_mcp test/fuzz/seeds_mcp || rc=1
  fuzz_run "$1" fuzz_egress_head test/fuzz/seeds_egress_head || rc=1
  return $rc
}
fuzz_long() {
  local s=${FUZZ_LONG_SECONDS:-120} rc=0
  fuzz_targets "$s" || rc=1
  # the layers' targets, each run briefly by its own layer's suite
  fuzz_run "$s" fuzz_protocol test/fuzz/seeds_protocol || rc=1
  fuzz_run "$s" fuzz_tokenizer_json test/tokenizer/seeds_json || rc=1
  return $rc
}

# The attack suite again as an unprivileged user (nobody), when we are root:
# the rootless path (caller's own uid mapped, no cgroups) must hold as well.
attack_unprivileged() {
  if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
    echo "skip - attack suite as nobody: needs root and setpriv to switch users"; return 0
  fi
  local d; d=$(mktemp -d); chmod 755 "$d"
  cp bin/viv build/test/attack_tests test/attack/egress_server.py "$d/"
  (cd "$d" && setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$d" VIV="$d/viv" \
     EGRESS_SERVER="$d/egress_server.py" ./attack_tests)
  local rc=$?
  rm -rf "$d"
  return $rc
}

# unittest -v lines ("test_x (mod.Class) ... ok") in the harness's format.
python_suite() {
  python3 "$1" -v 2>&1 | sed -E \
    -e 's/^(test[^ ]*) \(([^)]*)\)( [^.]*)?\.\.\. ok$/ok - python \2.\1/' \
    -e 's/^(test[^ ]*) \(([^)]*)\)( [^.]*)?\.\.\. (FAIL|ERROR)$/not ok - python \2.\1: \4 (details above)/' \
    -e 's/^(test[^ ]*) \(([^)]*)\)( [^.]*)?\.\.\. skipped (.*)$/skip - python \2.\1: \4/'
  return "${PIPESTATUS[0]}"
}
python_clients() {
  local rc=0
  python_suite test/python/test_client.py || rc=1
  python_suite test/python/test_client_vivd.py || rc=1
  return $rc
}

# The one place a suite's name becomes its command.
suite_command() {
  case "$1" in
    unit) build/test/unit_tests ;;
    cli) test/cli/cli_tests.sh bin/viv ;;
    attack-asan) env VIV=build/asan/viv build/test/attack_tests ;;
    attack-static) env VIV=bin/viv build/test/attack_tests ;;
    attack-rootless) attack_unprivileged ;;
    attack-zygote) env ATTACK_PATH=zygote VIV=bin/viv VIVD=bin/vivd build/test/attack_tests ;;
    attack-session) env ATTACK_PATH=session VIV=bin/viv VIVD=bin/vivd build/test/attack_tests ;;
    fuzz) fuzz_targets "${FUZZ_SECONDS:-10}" ;;
    fuzz-long) fuzz_long ;;
    vivd-asan) env VIVD=build/asan/vivd \
                 TEST_SKIP="$VIVD_LOAD_TEST: 1,000 forks of an ASan daemon outrun the test's deadlines; the load test runs in vivd-long" \
                 build/test/vivd_tests ;;
    vivd-static) env VIVD=bin/vivd TEST_SKIP="$VIVD_LOAD_TEST: a long suite, run by vivd-long (test/run.sh --full)" \
                   build/test/vivd_tests ;;
    vivd-long) env VIVD=bin/vivd build/test/vivd_tests "$VIVD_LOAD_TEST" ;;
    python-client) python_clients ;;
    gpu-long) env VIV_TEST_PART=long test/gpu/run.sh ;;
    # a layer's own suite: test/<layer>/run.sh prints ok/not ok lines
    *) "test/$1/run.sh" ;;
  esac
}

# Copies a suite's output, prefixing each result line with the milliseconds
# since the suite's previous line: a result line is printed when its test
# ends, so that gap is the test's own time (wall clock, side by side with
# the other suites running).
stamp_lines() {
  local prev=${EPOCHREALTIME/./} now line
  while IFS= read -r line; do
    now=${EPOCHREALTIME/./}
    printf '%d\t%s\n' $(((now - prev) / 1000)) "$line"
    prev=$now
  done
}

# Runs one suite into $out/<n>.*: .log the stamped lines, .time its seconds.
run_suite() {
  local n=$1 name=$2 t0 rc
  t0=${EPOCHREALTIME/./}
  suite_command "$name" 2>&1 | stamp_lines >"$out/$n.log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ] && ! cut -f2- "$out/$n.log" | grep -q '^not ok - '; then
    # a suite that died without reporting a failure (crash, sanitizer) is a failure
    printf '0\tnot ok - %s: exited with status %d\n' "$name" "$rc" >>"$out/$n.log"
  fi
  echo $(((${EPOCHREALTIME/./} - t0) / 100000)) >"$out/$n.time"
}

# A finished suite's part of the report: its name and time, then the lines
# worth reading (failures, skips, summaries, sanitizer reports).
print_suite() {
  local n=$1 name=$2 ds
  ds=$(cat "$out/$n.time")
  echo "== $name ($((ds / 10)).$((ds % 10)) s)"
  cut -f2- "$out/$n.log" | grep -E '^(not ok|skip|#)|ERROR: (Address|Leak|Undefined)|runtime error' || true
}

# The run itself, in a function: bash reads all of it before it starts, so
# an edit to this file during a run does not change the run.
main() {
  local pid printed=0 next=0 t_start total pass fail skip
  declare -A running=() # pid -> suite index
  t_start=${EPOCHREALTIME/./}
  while [ $printed -lt ${#suites[@]} ]; do
    while [ $next -lt ${#suites[@]} ] && [ ${#running[@]} -lt "$jobs" ]; do
      run_suite "$next" "${suites[$next]}" &
      running[$!]=$next
      next=$((next + 1))
    done
    wait -n
    for pid in "${!running[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid"
        print_suite "${running[$pid]}" "${suites[${running[$pid]}]}"
        unset "running[$pid]"
        printed=$((printed + 1))
      fi
    done
  done

  results() { cat "$out"/*.log | cut -f2-; }
  echo "# slowest tests (ms, side by side with other suites):"
  cat "$out"/*.log | grep -E $'^[0-9]+\t(ok|not ok) - ' | sort -rn | head -n "${SLOWEST:-10}" |
    sed -E $'s/^([0-9]+)\t/#   \\1  /; s/ \\([0-9]+ ms[;)].*$//' | cut -c1-160
  total=$(((${EPOCHREALTIME/./} - t_start) / 1000000))
  pass=$(results | grep -c '^ok - ')
  fail=$(results | grep -c '^not ok - ')
  skip=$(results | grep -c '^skip - ')
  echo "# ${#suites[@]} suites in ${total} s, up to $jobs at once"
  echo "$pass passed, $fail failed, $skip skipped"
  [ "$fail" -eq 0 ]
}
main; exit $?
