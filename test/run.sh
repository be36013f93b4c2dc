#!/usr/bin/env bash
# test/run.sh - run every test suite and print the closing tally.
#
#   unit      policy parsing, JSON output, helpers (ASan + UBSan build)
#   cli       viv run / viv policy as a user meets them (static bin/viv)
#   vivd      the daemon: protocol, abuse, cancellation, drain, load (ASan and static)
#   python-client  the stdlib Python client against a fake server
#   fuzz      a short libFuzzer run of each target in test/fuzz
#   attack    hostile jobs against the jail, three times: the ASan + UBSan build of
#             viv (catches memory errors in the supervisor and init while
#             they are attacked) and the static bin/viv that users run, and
#             (attack-rootless) the static binary run by an unprivileged user;
#             then the same attacks through vivd's warm paths: attack-zygote
#             (every python job on a zygote) and attack-session (every python
#             job as a session call)
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
if [ ${#suites[@]} -eq 0 ]; then
  suites=(unit cli attack-asan attack-static attack-rootless attack-zygote attack-session vivd-asan vivd-static python-client fuzz)
  # layers with their own runner join the default run
  for r in test/*/run.sh; do [ -x "$r" ] && suites+=("$(basename "$(dirname "$r")")"); done
fi

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

# A short libFuzzer run per target (the long run is documented in the target).
fuzz_smoke() {
  local target=$1 corpus; shift
  corpus=$(mktemp -d)
  # the seed and regression dirs are read only; new inputs and any crash go to $corpus
  if "build/fuzz/$target" -max_total_time="${FUZZ_SECONDS:-10}" -seed=1 -artifact_prefix="$corpus/" \
       "$corpus" "$@" >"$corpus.log" 2>&1; then
    echo "ok - fuzz $target ($(grep -o 'Done [0-9]* runs' "$corpus.log"))"
  else
    echo "not ok - fuzz $target: $(grep -m1 -E 'ERROR|SUMMARY|crash' "$corpus.log")"
    echo "  (reproducer and log kept in $corpus and $corpus.log)"
    return 1
  fi
  rm -rf "$corpus" "$corpus.log"
}

# The attack suite again as an unprivileged user (nobody), when we are root:
# the rootless path (caller's own uid mapped, no cgroups) must hold as well.
attack_unprivileged() {
  if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
    echo "skip - attack suite as nobody: needs root and setpriv to switch users"; return 0
  fi
  local d; d=$(mktemp -d); chmod 755 "$d"
  cp bin/viv build/test/attack_tests "$d/"
  (cd "$d" && setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$d" VIV="$d/viv" ./attack_tests)
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

for s in "${suites[@]}"; do
  case "$s" in
    unit) run_suite unit build/test/unit_tests ;;
    cli) run_suite cli test/cli/cli_tests.sh bin/viv ;;
    attack-asan) run_suite attack-asan env VIV=build/asan/viv build/test/attack_tests ;;
    attack-static) run_suite attack-static env VIV=bin/viv build/test/attack_tests ;;
    attack-rootless) run_suite attack-rootless attack_unprivileged ;;
    attack-zygote) run_suite attack-zygote env ATTACK_PATH=zygote VIV=bin/viv VIVD=bin/vivd build/test/attack_tests ;;
    attack-session) run_suite attack-session env ATTACK_PATH=session VIV=bin/viv VIVD=bin/vivd build/test/attack_tests ;;
    fuzz) run_suite fuzz fuzz_smoke fuzz_policy policies test/fuzz/regressions_policy
          run_suite fuzz fuzz_smoke fuzz_request test/fuzz/seeds_request
          run_suite fuzz fuzz_smoke fuzz_http test/fuzz/seeds_http ;;
    vivd-asan) run_suite vivd-asan env VIVD=build/asan/vivd \
                 TEST_SKIP="load_8_clients_10000_requests: 1,000 forks of an ASan daemon outrun the test's deadlines; the load test runs in vivd-static" \
                 build/test/vivd_tests ;;
    vivd-static) run_suite vivd-static env VIVD=bin/vivd build/test/vivd_tests ;;
    python-client) run_suite python-client python_suite test/python/test_client.py
                   run_suite python-vivd python_suite test/python/test_client_vivd.py ;;
    *) if [ -x "test/$s/run.sh" ]; then
         # a layer's own suite (envs, model, tokenizer, rl): test/<layer>/run.sh prints ok/not ok lines
         run_suite "$s" "test/$s/run.sh"
         continue
       fi
       echo "unknown suite '$s' (unit, cli, attack-asan, attack-static, attack-rootless, attack-zygote, attack-session, vivd-asan, vivd-static, python-client, fuzz)"; exit 2 ;;
  esac
done

pass=$(grep -c '^ok - ' "$log")
fail=$(grep -c '^not ok - ' "$log")
skip=$(grep -c '^skip - ' "$log")
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
