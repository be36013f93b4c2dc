#!/bin/bash
# vivd --http with python3-requests as the client (the frameworks' own
# request and response shapes): test/run.sh sandbox_http
set -u
cd "$(dirname "$0")/../.."
if ! python3 -c 'import requests' 2>/dev/null; then
  echo "skip - sandbox_http: python3-requests is not installed (build.sh installs it)"; exit 0
fi
python3 test/sandbox_http/test_http.py "${VIVD:-bin/vivd}" -v 2>&1 | sed -n 's/^\(test_[a-z0-9_]*\) .* \.\.\. \(ok\|FAIL\|ERROR\)$/\2 - \1/p; /^FAIL:\|^ERROR:\|Error\|assert/p'
exit "${PIPESTATUS[0]}"
