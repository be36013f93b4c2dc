#!/usr/bin/env bash
# test/mcp/run.sh - the mcp suite (test/run.sh mcp): `viv mcp` as MCP clients meet it.
#   sdk_*   the official MCP TypeScript SDK (@modelcontextprotocol/sdk, pinned in build.sh's
#           NPM_PACKAGES) over its stdio transport: initialize, the tool list and the limits
#           in its schemas, python (print, exception, timeout, NUL and invalid UTF-8 output,
#           the output cap), shell, r, a python session, sql on --db (read-only), an unknown
#           tool, bad arguments, and --socket against a running vivd; egress: a vivd whose
#           python policy has an allowlist (--policies), its tool description naming the hosts
#           and a call reaching the listed one, while the others say "No network."
#   raw_*   raw lines on stdin: malformed JSON, notifications, unknown methods, batches,
#           bad ids and params, NUL in code, end of input
#   cli_*   bad options: a clear message and a non-zero exit, no hang
# Needs bin/viv and bin/vivd (make all). The SDK is installed into $NPM_DIR (.deps/npm, or
# $VIV_NPM_DIR) when missing, at the version build.sh pins.
set -u
cd "$(dirname "$0")/../.."
rc=0
export NPM_DIR=${VIV_NPM_DIR:-$PWD/.deps/npm}
VIV=$PWD/bin/viv

report() { # name status(0 ok) message
  if [ "$2" = 0 ]; then echo "ok - $1"; else echo "not ok - $1: $3"; rc=1; fi
}
for f in bin/viv bin/vivd; do
  [ -x "$f" ] || { echo "not ok - mcp: $f is missing (make all)"; exit 1; }
done

T=$(mktemp -d /tmp/viv-mcp-test-XXXXXX)
chmod 755 "$T" # a root caller's jobs run as an unprivileged uid that must reach the database
VIVD_PID= EGRESS_VIVD_PID= SERVER_PID=
cleanup() {
  [ -n "$VIVD_PID" ] && kill "$VIVD_PID" 2>/dev/null && wait "$VIVD_PID" 2>/dev/null
  [ -n "$EGRESS_VIVD_PID" ] && kill "$EGRESS_VIVD_PID" 2>/dev/null && wait "$EGRESS_VIVD_PID" 2>/dev/null
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT

# ---- bad options ------------------------------------------------------------------------------
expect_fail() { # name, expected exit code, message regex, args...
  local name=$1 want=$2 re=$3; shift 3
  local err got
  err=$(timeout 30 "$VIV" mcp "$@" </dev/null 2>&1 >/dev/null); got=$?
  if [ "$got" = "$want" ] && [[ "$err" =~ $re ]]; then report "$name" 0
  else report "$name" 1 "exit $got (want $want), stderr: $err"; fi
}
expect_fail cli_unknown_option 2 "unknown option '--bogus'" --bogus
expect_fail cli_option_without_value 2 "--socket needs a value" --socket
expect_fail cli_db_missing_file 2 "--db $T/none.sqlite: No such file" --db "$T/none.sqlite"
expect_fail cli_db_is_directory 2 "not a regular file" --db "$T"
expect_fail cli_db_with_socket 2 "--db starts the private vivd" --db /etc/hostname --socket "$T/x.sock"
expect_fail cli_socket_nobody_serves 1 "viv mcp: .*$T/none.sock" --socket "$T/none.sock"

# ---- raw stdin --------------------------------------------------------------------------------
python3 test/mcp/raw_stdin.py "$VIV" || rc=1

# ---- the official SDK -------------------------------------------------------------------------
SDK_SPEC=$(grep -o '@modelcontextprotocol/sdk@[0-9.]*' build.sh | head -1)
if [ ! -f "$NPM_DIR/node_modules/@modelcontextprotocol/sdk/package.json" ] && command -v npm >/dev/null; then
  echo "# npm install $SDK_SPEC into $NPM_DIR" >&2
  mkdir -p "$NPM_DIR"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error "$SDK_SPEC" >&2
fi
if [ ! -f "$NPM_DIR/node_modules/@modelcontextprotocol/sdk/package.json" ] || ! command -v node >/dev/null; then
  report sdk_client 1 "$SDK_SPEC is missing in $NPM_DIR and npm could not install it (./build.sh test installs it)"
  exit 1
fi
python3 - "$T/genes.sqlite" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.executescript("CREATE TABLE genes(name TEXT, n INTEGER); INSERT INTO genes VALUES ('TP53', 1), ('BRCA1', 2);")
con.commit()
PY
chmod 644 "$T/genes.sqlite"
bin/vivd --socket "$T/vivd.sock" --log "$T/vivd.log" </dev/null >/dev/null 2>&1 &
VIVD_PID=$!
for _ in $(seq 1 200); do [ -S "$T/vivd.sock" ] && break; sleep 0.05; done
# egress: the stand-in server, and a vivd whose python policy (the built-in one, overridden
# with a file of the same name) may reach its HTTP port and nothing else
# (a coprocess: the server serves while its stdin stays open)
coproc SERVER { exec python3 test/attack/egress_server.py; }
read -r -t 30 _ HTTP_PORT _ _ <&"${SERVER[0]}"
mkdir "$T/policies" "$T/egress"
python3 - "$T/policies/python.json" "$HTTP_PORT" <<'PY'
import json, sys
pol = json.load(open("policies/python.json"))
pol["seccomp"]["socket_families"].append("AF_INET")
pol["network"] = {"egress": ["127.0.0.1:%s" % sys.argv[2]], "max_connections": 3}
json.dump(pol, open(sys.argv[1], "w"))
PY
bin/vivd --socket "$T/egress/vivd.sock" --log "$T/egress/vivd.log" --policies "$T/policies" </dev/null >/dev/null 2>&1 &
EGRESS_VIVD_PID=$!
for _ in $(seq 1 200); do [ -S "$T/egress/vivd.sock" ] && break; sleep 0.05; done
timeout 300 node test/mcp/sdk_client.js "$VIV" "$T/genes.sqlite" "$T/vivd.sock" "$T/egress/vivd.sock" "$HTTP_PORT" \
  2>"$T/sdk.err" || rc=1
if grep -q "not ok" "$T/sdk.err" 2>/dev/null || [ -s "$T/sdk.err" ]; then sed 's/^/# /' "$T/sdk.err" | grep -v "serving on stdin" | head -20; fi
exit $rc
