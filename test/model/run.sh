#!/usr/bin/env bash
# test/model/run.sh - the Qwen3 model layer.
#
# 1. test/model/ref_qwen3.py (torch, Debian's python3-torch) writes small
#    random Qwen3 checkpoints and what a faithful reference computes on them
#    (logits, loss, log-probs, every gradient, ten AdamW losses).
# 2. build/test/model_tests (ASan + UBSan) checks the C model against that,
#    plus KV-cache decode, save/load, hostile files, sampling, generation.
#    expf_rows_check then compares the vectorised exponential with the C
#    library's on every float it may see. A short libFuzzer run of the
#    safetensors reader follows.
# 3. viv gen on the command line: good and bad invocations.
set -u
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3   # Debian's python, where apt installs torch (a pyenv shim may shadow it)
[ -x "$PY" ] || PY=python3
fx=$(mktemp -d)
trap 'rm -rf "$fx"' EXIT
fail=0

if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
  echo "not ok - model torch oracle: python3-torch is not installed (./build.sh installs it)"
  exit 1
fi
if "$PY" test/model/ref_qwen3.py "$fx/fixtures" >"$fx/ref.log" 2>&1; then
  echo "ok - model torch oracle wrote fixtures"
else
  echo "not ok - model torch oracle: $(tail -1 "$fx/ref.log")"
  exit 1
fi

MODEL_FIXTURES="$fx/fixtures" build/test/model_tests || fail=1

# expf_rows against the C library's expf on every float from -104 to 88, in
# the static musl build bin/viv is (~10 s): the model's softmax depends on it
if [ -x build/test/expf_rows_check ]; then
  build/test/expf_rows_check 1 || fail=1
else
  echo "not ok - expf_rows_matches_libm_expf: build/test/expf_rows_check is not built (make tests)"
  fail=1
fi

# a short fuzz of the safetensors reader, seeded with the fixture files
if [ -x build/fuzz/fuzz_safetensors ]; then
  mkdir -p "$fx/corpus"
  for f in "$fx"/fixtures/*/*.safetensors; do cp "$f" "$fx/corpus/$(basename "$(dirname "$f")")-$(basename "$f")"; done
  if build/fuzz/fuzz_safetensors -max_total_time="${FUZZ_SECONDS:-10}" -seed=1 -artifact_prefix="$fx/" \
       "$fx/corpus" >"$fx/fuzz.log" 2>&1; then
    echo "ok - fuzz safetensors reader ($(grep -o 'Done [0-9]* runs' "$fx/fuzz.log"))"
  else
    keep=$(mktemp -d)
    cp "$fx"/crash-* "$fx"/fuzz.log "$keep"/ 2>/dev/null
    echo "not ok - fuzz safetensors reader: $(grep -m1 -E 'ERROR|SUMMARY' "$fx/fuzz.log") (kept in $keep)"
    fail=1
  fi
else
  echo "not ok - fuzz safetensors reader: build/fuzz/fuzz_safetensors is not built (make tests)"
  fail=1
fi

# viv gen against a fixture checkpoint
viv=bin/viv
check() { # name, expected status, grep pattern for output, command...
  local name=$1 want=$2 pat=$3; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" = "$want" ] && grep -qE "$pat" <<<"$out"; then echo "ok - $name"
  else echo "not ok - $name: status $rc, output: $(head -c 300 <<<"$out" | tr '\n' ' ')"; fail=1; fi
}
m="$fx/fixtures/hd16_untied"
check "viv gen greedy prints ids and tokens/s" 0 '^([0-9]+ ){5}$' \
  sh -c "$viv gen --model $m --prompt-ids 1,2,3 --max-tokens 5 --temperature 0 2>/dev/null"
check "viv gen reports speed" 0 'tokens/s decode' $viv gen --model "$m" --prompt-ids 1,2,3 --max-tokens 5
a=$($viv gen --model "$m" --prompt-ids 4,5 --max-tokens 12 --top-p 0.9 --top-k 20 --seed 7 2>/dev/null)
b=$($viv gen --model "$m" --prompt-ids 4,5 --max-tokens 12 --top-p 0.9 --top-k 20 --seed 7 2>/dev/null)
if [ -n "$a" ] && [ "$a" = "$b" ]; then echo "ok - viv gen is deterministic given --seed"
else echo "not ok - viv gen is deterministic given --seed: '$a' vs '$b'"; fail=1; fi
# generation_config.json supplies defaults: do_sample false -> greedy, eos list -> stop ids
g=$($viv gen --model "$m" --prompt-ids 1,2,3 --max-tokens 6 --temperature 0 2>/dev/null)
read -r -a gt <<<"$g"
gc="$fx/genconf"; mkdir -p "$gc"; cp "$m"/config.json "$m"/model.safetensors "$gc"/
printf '{"do_sample": false, "temperature": 0.6, "eos_token_id": [999999, %s]}\n' "${gt[2]}" >"$gc/generation_config.json"
want=""; for t in "${gt[@]}"; do want+="$t "; [ "$t" = "${gt[2]}" ] && break; done
got=$($viv gen --model "$gc" --prompt-ids 1,2,3 --max-tokens 6 2>/dev/null)
if [ ${#gt[@]} -eq 6 ] && [ "$got" = "$want" ]; then echo "ok - viv gen takes greedy and stop ids from generation_config.json"
else echo "not ok - viv gen takes greedy and stop ids from generation_config.json: got '$got', want '$want' (greedy: '$g')"; fail=1; fi
check "viv gen refuses an id outside the vocabulary" 2 'outside the vocabulary' $viv gen --model "$m" --prompt-ids 1,999
check "viv gen refuses malformed ids" 2 'comma-separated' $viv gen --model "$m" --prompt-ids 1,,x
check "viv gen names a missing model" 2 'model directory not found' $viv gen --model "$fx/nope" --prompt-ids 1
check "viv gen needs --model" 2 'required' $viv gen --prompt-ids 1
exit $fail
