#!/usr/bin/env bash
# test/rl/run.sh - the rl suite (test/run.sh rl):
#   rl_tests          metrics.jsonl, run directories, eval tables, SVG charts
#                     (checked by python3 xml.etree in check_svg.py), atomic writes,
#                     GRPO argument checks
#   rl_rollout_tests  the rollout engine with the scripted fake generator against a
#                     real private vivd (bin/vivd, or $VIVD)
#   grpo_oracle.py    rl/grpo.c against numpy and finite differences
# Needs `make tests` (the binaries) and `make all` (bin/vivd). Prints ok/not ok lines.
set -u
cd "$(dirname "$0")/../.."
rc=0
need() {
  if [ ! -x "$1" ]; then echo "not ok - rl: $1 is missing (build it with: make tests)"; rc=1; return 1; fi
}
need build/test/rl_tests && { build/test/rl_tests || rc=1; }
need build/test/rl_rollout_tests && need "${VIVD:-bin/vivd}" && { VIVD=${VIVD:-bin/vivd} build/test/rl_rollout_tests || rc=1; }
if [ ! -x /usr/bin/python3 ] || ! /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
  echo "not ok - grpo vs numpy: /usr/bin/python3 with numpy is missing (apt-get install python3-numpy)"; rc=1
else
  need build/test/rl_grpo_check && { /usr/bin/python3 test/rl/grpo_oracle.py build/test/rl_grpo_check || rc=1; }
fi
exit $rc
