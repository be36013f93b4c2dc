#!/usr/bin/env bash
# test/run.sh - run every test suite and print the closing tally.
#
#   unit      policy parsing, JSON output, helpers (ASan + UBSan build)
#   cli       viv run / viv policy as a user meets them (static bin/viv)
#   attack    hostile jobs against the jail, twice: the ASan + UBSan build of
#             viv (catches memory errors in the supervisor and init while
#             they are attacked) and the static bin/viv that users run
#
# Each suite prints "ok - ...", "not ok - ..." or "skip - ..." lines; the
# last line here is "N passed, N failed, N skipped". Exit status 1 on any
# failure. Pass suite names to run only those.
set -u
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(unit cli attack-asan attack-static)

run_suite() {
  local name=$1; shift
  echo "== $name"
  local before
  before=$(grep -c '^not ok - ' "$log")
  "$@" 2>&1 | tee -a "$log" | grep -E '^(not ok|skip|#)|ERROR: (Address|Leak|Undefined)|runtime error' || true
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ] && [ "$(grep -c '^not ok - ' "$log")" = "$before" ]; then
    # a suite that died without reporting a failure (crash, sanitizer) is a failure
    echo "not ok - $name: exited with status $rc" | tee -a "$log"
  fi
}

for s in "${suites[@]}"; do
  case "$s" in
    unit) run_suite unit build/test/unit_tests ;;
    cli) run_suite cli test/cli/cli_tests.sh bin/viv ;;
    attack-asan) run_suite attack-asan env VIV=build/asan/viv build/test/attack_tests ;;
    attack-static) run_suite attack-static env VIV=bin/viv build/test/attack_tests ;;
    *) echo "unknown suite '$s' (unit, cli, attack-asan, attack-static)"; exit 2 ;;
  esac
done

pass=$(grep -c '^ok - ' "$log")
fail=$(grep -c '^not ok - ' "$log")
skip=$(grep -c '^skip - ' "$log")
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
