#!/usr/bin/env bash
# test/envs/run.sh - the environments layer: `viv data build` and the
# database mount the agent's tools see.
#
# Builds a small task set (--size 6) from the real Debian packages (the .debs
# cached in data/debs by ./build.sh are reused; otherwise they are
# downloaded once into the temporary output), twice with one seed and once
# with another, and checks it with check_tasks.py. Prints one ok/not ok line
# per test; exit 1 on any failure. About a minute on two cores.
set -u
cd "$(dirname "$0")/../.."
VIV=${VIV:-bin/viv}
fails=0
ok() { echo "ok - $1"; }
notok() { echo "not ok - $1: $2"; fails=$((fails + 1)); }
check() { # name, then a command that must succeed
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then ok "$name"; else notok "$name" "$(echo "$out" | tail -n 3 | tr '\n' ' ')"; fi
}

T=$(mktemp -d)
chmod 755 "$T" # when root runs viv, jobs run as an unprivileged uid that must reach the databases
trap 'chmod -R u+w "$T" 2>/dev/null; rm -rf "$T"' EXIT
OUT=$T/out
DEBS=$T/debs
if ls data/debs/r-bioc-org.hs.eg.db_*.deb data/debs/r-bioc-go.db_*.deb >/dev/null 2>&1; then DEBS=$(realpath data/debs); fi

# --- bad input fails early and clearly ---------------------------------------
expect_fail() { # name, expected exit code, message regex, args...
  local name=$1 code=$2 re=$3; shift 3
  local err rc
  err=$("$VIV" data "$@" 2>&1 >/dev/null); rc=$?
  if [ "$rc" = "$code" ] && echo "$err" | grep -qE -- "$re"; then ok "$name"
  else notok "$name" "exit $rc, stderr: $(echo "$err" | head -n 2 | tr '\n' ' ')"; fi
}
touch "$T/a-file"
expect_fail "data build: --out is a file" 1 "error: --out '.*a-file/sub'.*Not a directory" build --out "$T/a-file/sub" --debs "$DEBS"
expect_fail "data build: --out cannot be created" 1 "error: --out '/proc/no/such'" build --out /proc/no/such --debs "$DEBS"
expect_fail "data build: --size not a size" 2 "--size 'huge': use default, small, medium, large or a number" build --out "$T/x" --size huge
expect_fail "data build: --size 0" 2 "--size '0'" build --out "$T/x" --size 0
expect_fail "data build: unknown option" 2 "unknown option '--bogus'" build --bogus 1
expect_fail "data: unknown subcommand" 2 "unknown subcommand frobnicate" frobnicate
if [ "$(id -u)" = 0 ]; then
  mkdir -m 700 "$T/private"
  expect_fail "data build as root: --out the jail's user cannot reach" 1 "error: .*/private is mode 0700: sandboxed jobs run as an unprivileged user" build --out "$T/private/out" --debs "$DEBS"
fi
# no network (or no package lists): apt-get download fails, and the message says what it needs
mkdir -p "$T/fakebin" && printf '#!/bin/sh\necho "E: Unable to locate package $3" >&2\nexit 100\n' > "$T/fakebin/apt-get" && chmod +x "$T/fakebin/apt-get"
PATH="$T/fakebin:$PATH" expect_fail "data build: apt-get download failing is explained" 1 \
  "apt-get download r-bioc-org.hs.eg.db failed \(exit 100\).*network access to a Debian mirror" build --out "$T/nonet" --debs "$T/nodebs"
[ ! -e "$T/x" ] && ok "data build: bad arguments create nothing" || notok "data build: bad arguments create nothing" "$T/x exists"

# --- build, rebuild with the same seed, build with another seed ---------------
# build SEED TAG [VIV]: the rebuild runs the ASan/UBSan viv when there is one
build() { "${3:-$VIV}" data build --out "$OUT" --size 6 --seed "$1" --debs "$DEBS" --jobs 2 >"$T/build-$1-$2.log" 2>&1; }
VIV_ASAN=${VIV_ASAN:-build/asan/viv}
[ -x "$VIV_ASAN" ] || VIV_ASAN=$VIV
if build 7 a; then
  ok "data build --size 6 --seed 7"
  mkdir -p "$T/first" && cp "$OUT"/tasks/*.jsonl "$T/first/"
  if build 7 b "$VIV_ASAN" && cmp -s "$T/first/train.jsonl" "$OUT/tasks/train.jsonl" && cmp -s "$T/first/val.jsonl" "$OUT/tasks/val.jsonl" \
     && cmp -s "$T/first/test.jsonl" "$OUT/tasks/test.jsonl"; then
    ok "same seed, same tasks (byte for byte)"
  else
    notok "same seed, same tasks (byte for byte)" "$(tail -n 2 "$T/build-7-b.log" | tr '\n' ' ')"
  fi
  if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error" "$T/build-7-b.log"; then
    notok "data build under ASan/UBSan ($VIV_ASAN)" "$(grep -m2 -E 'ERROR|runtime error' "$T/build-7-b.log" | tr '\n' ' ')"
  else ok "data build under ASan/UBSan ($VIV_ASAN): no memory errors or leaks"; fi
  grep -q "GO.sqlite.*reused" "$T/build-7-b.log" && ok "rebuild reuses the extracted databases (checksums match)" \
    || notok "rebuild reuses the extracted databases (checksums match)" "no 'reused' in the log"
  if grep -qE "dropped [1-9]|^viv data: dropped " "$T/build-7-a.log"; then notok "every generated task verified" "$(grep -m3 'dropped' "$T/build-7-a.log" | tr '\n' ' ')"
  else ok "every generated task verified in the sandbox (none dropped)"; fi
  want=$(grep -c . "$T/first/train.jsonl")
  [ "$want" = 42 ] && ok "6 train tasks for each of 7 shapes" || notok "6 train tasks for each of 7 shapes" "$want lines"
  cp "$OUT/MANIFEST.json" "$T/manifest-7.json"
  if build 8 c; then
    if cmp -s "$T/first/train.jsonl" "$OUT/tasks/train.jsonl"; then notok "another seed, other tasks" "identical train.jsonl"
    else ok "another seed, other tasks"; fi
    /usr/bin/env python3 - "$T/first" "$OUT/tasks" <<'EOF' && ok "splits do not depend on the seed (no entity changes split)" || notok "splits do not depend on the seed" "see above"
import json, sys
def ents(d):
    out = {}
    for s in ("train", "val", "test"):
        for line in open(f"{d}/{s}.jsonl"):
            t = json.loads(line); m = t["meta"]
            e = m.get("sequence") if t["task_name"] == "seqqa" else m.get("omim_id") if t["task_name"] == "rare_disease" else m["entrez_id"]
            out.setdefault(e, set()).add(s)
    return out
a, b = ents(sys.argv[1]), ents(sys.argv[2])
clash = [e for e in set(a) & set(b) if a[e] != b[e]]
for e in clash[:3]:
    print(f"# {e}: {a[e]} vs {b[e]}")
sys.exit(1 if clash else 0)
EOF
    # back to the seed-7 tasks for the checks below
    build 7 d || notok "rebuild seed 7" "$(tail -n 2 "$T/build-7-d.log")"
  else
    notok "data build --seed 8" "$(tail -n 3 "$T/build-8-c.log" | tr '\n' ' ')"
  fi
  python3 test/envs/check_tasks.py "$OUT" "$VIV" || fails=$((fails + 1))
  # the data and the agent layers agree: the oracle teacher, graded by the
  # Eval1 rules, solves every built task through a real vivd; random does not
  if "$VIV" eval --env viv-bio --data "$OUT" --agent oracle --concurrency 4 --out "$T/oracle.json" >"$T/oracle.log" 2>&1 &&
     python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); t=r.get("tasks", r.get("per_task", {}));
rows=t.values() if isinstance(t, dict) else t
accs=[x["accuracy"] for x in rows]
sys.exit(0 if accs and min(accs) == 1.0 else 1)' "$T/oracle.json"; then
    ok "viv eval: the oracle solves every built task (all splits, Eval1 graders)"
  else
    notok "viv eval: the oracle solves every built task" "$(tail -n 12 "$T/oracle.log" | tr '\n' ' ')"
  fi
  if [ -x build/test/envs_tests ]; then
    VIV_DB_DIR=$OUT/db build/test/envs_tests || fails=$((fails + 1))
  else
    notok "envs unit tests" "build/test/envs_tests is not built (make tests)"
  fi
else
  notok "data build --size 6 --seed 7" "$(tail -n 5 "$T/build-7-a.log" | tr '\n' ' ')"
fi

# --- the database mount inside the jail ---------------------------------------
DB=$OUT/db
if [ -f "$DB/org.Hs.eg.sqlite" ]; then
  py() { "$VIV" run --tool python --data "biodb=$(realpath "$DB")" --code "$1"; }
  check "python sees /db with both databases and queries them" \
    bash -c "out=\$($VIV run --tool python --data biodb=$(realpath "$DB") --code 'import os, sqlite3
print(sorted(os.listdir(\"/db\")))
c = sqlite3.connect(\"file:/db/org.Hs.eg.sqlite?immutable=1\", uri=True)
c.execute(\"ATTACH \x27file:/db/GO.sqlite?immutable=1\x27 AS go\")
print(c.execute(\"SELECT symbol FROM gene_info WHERE _id = (SELECT _id FROM genes WHERE gene_id = \x27672\x27)\").fetchone()[0])
print(c.execute(\"SELECT term FROM go.go_term WHERE go_id = \x27GO:0006281\x27\").fetchone()[0])'); echo \"\$out\"; [ \"\$out\" = \"['GO.sqlite', 'org.Hs.eg.sqlite']
BRCA1
DNA repair\" ]"
  check "python cannot write, create or remove in /db" \
    bash -c "out=\$($VIV run --tool python --data biodb=$(realpath "$DB") --code 'import errno, os
res = []
for f in (lambda: open(\"/db/org.Hs.eg.sqlite\", \"r+b\"), lambda: open(\"/db/new\", \"w\"),
          lambda: os.remove(\"/db/GO.sqlite\"), lambda: os.chmod(\"/db/GO.sqlite\", 0o666), lambda: os.mkdir(\"/db/d\")):
    try:
        f(); res.append(\"WROTE\")
    except OSError as e:
        res.append(errno.errorcode[e.errno])
print(\" \".join(res))
print(os.statvfs(\"/db\").f_flag & os.ST_RDONLY)'); echo \"\$out\"; ! echo \"\$out\" | grep -q WROTE && echo \"\$out\" | tail -n 1 | grep -qx 1"
  check "shell sees /db read-only" \
    bash -c "out=\$($VIV run --tool shell --data biodb=$(realpath "$DB") --code 'test -r /db/GO.sqlite && echo readable; touch /db/x 2>/dev/null && echo WROTE; echo x >> /db/GO.sqlite 2>/dev/null && echo APPENDED; echo end'); echo \"\$out\"; [ \"\$out\" = 'readable
end' ]"
  check "sql tool queries org.Hs.eg.sqlite as @db" \
    bash -c "out=\$($VIV run --tool sql --db $(realpath "$DB")/org.Hs.eg.sqlite --code \"SELECT count(*) AS n FROM genes;\"); echo \"\$out\"; [ \"\$(echo \"\$out\" | tail -n 1)\" = 77614 ]"
  # vivd serves the same mount: --data biodb=DIR for python/shell, db=FILE for sql
  "${VIVD:-bin/vivd}" --socket "$T/vivd.sock" --data "biodb=$(realpath "$DB")" --data "db=$(realpath "$DB")/org.Hs.eg.sqlite" \
    --log "$T/vivd.log" </dev/null >/dev/null 2>&1 &
  vivd_pid=$!
  for _ in $(seq 50); do [ -S "$T/vivd.sock" ] && break; sleep 0.1; done
  check "vivd --data biodb=DIR: python sees /db read-only; sql queries @db" \
    bash -c "a=\$($VIV exec --socket $T/vivd.sock --tool python --code 'import os; print(sorted(os.listdir(\"/db\")), os.statvfs(\"/db\").f_flag & os.ST_RDONLY)') &&
             b=\$($VIV exec --socket $T/vivd.sock --tool sql --code 'SELECT symbol FROM gene_info WHERE _id = 1;') &&
             echo \"\$a | \$b\" && [ \"\$a\" = \"['GO.sqlite', 'org.Hs.eg.sqlite'] 1\" ] && [ \"\$(echo \"\$b\" | tail -n 1)\" = A1BG ]"
  kill "$vivd_pid" 2>/dev/null; wait "$vivd_pid" 2>/dev/null
else
  notok "database mount tests" "no databases were built"
fi
# an optional @mount without a value is simply absent (policies keep working without --data)
check "python without --data biodb runs, and has no /db" \
  bash -c "out=\$($VIV run --tool python --code 'import os; print(os.path.exists(\"/db\"))'); [ \"\$out\" = False ]"
check "shell without --data biodb runs, and has no /db" \
  bash -c "out=\$($VIV run --tool shell --code 'ls -d /db 2>/dev/null || echo absent'); [ \"\$out\" = absent ]"
check "policy check lists @biodb as optional for python and shell" \
  bash -c "$VIV policy check python | tr -d ' \t\n' | grep -q '\"src\":\"@biodb\",\"dst\":\"/db\",\"mode\":\"read-only,nosuid,nodev\",\"optional\":true' && $VIV policy check shell | tr -d ' \t\n' | grep -q '\"src\":\"@biodb\",\"dst\":\"/db\",\"mode\":\"read-only,nosuid,nodev\",\"optional\":true'"
check "a file policy with an unfilled optional @mount runs without it" \
  bash -c "sed 's|\"@biodb\", \"dst\": \"/db\"|\"@extra\", \"dst\": \"/extra\"|' policies/shell.json > $T/p.json && out=\$($VIV run --policy $T/p.json -- /bin/sh -c 'ls -d /extra 2>/dev/null || echo absent'); [ \"\$out\" = absent ]"

[ "$fails" -eq 0 ]
