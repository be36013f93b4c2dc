#!/usr/bin/env bash
# test/bench/model.sh - CPU speed of the Qwen3 model layer, on CPUS (default
# the first two cores, "0,1"), with as many threads as CPUs:
#   stream  STREAM-like copy and triad bandwidth (GB/s, read + write bytes)
#   train   forward + backward + AdamW on a 124M-parameter Qwen3 config
#           (GPT-2 small's sizes: vocab 50257, 768 wide, 12 layers, 12 heads,
#           SwiGLU width 2048, tied head) at B=4, T=64: tokens/s
#   decode  viv gen on a Qwen3-0.6B-shaped model with random weights saved
#           as bf16 by our own writer (model_tool init): decode tokens/s, and
#           that as a fraction of the bandwidth bound (copy GB/s, and the
#           read-only GB/s, divided by the fp32 weight bytes every decoded
#           token must read); then
#           8 sequences decoded as one batch through the KV cache
# Optional comparison: LLMC_DIR=/path/to/a/built/llm.c runs its CPU trainer
# train_gpt2 (B=4, T=64, its defaults) on the same CPUs for LLMC_SECONDS and
# reports its median ms/step next to ours. llm.c is not part of this repo:
# build it yourself outside it, with a gpt2_124M.bin and token files in
# place (see ARCHITECTURE.md, "Model").
# Results: lines on stdout and build/bench/model.jsonl.
#
#   test/bench/model.sh        (needs ./build.sh and make tests first)
#   env: CPUS=0,1 STEPS=5 DECODE_TOKENS=32 LLMC_DIR= LLMC_SECONDS=150
set -euo pipefail
cd "$(dirname "$0")/../.."
CPUS=${CPUS:-0,1}
NTH=$(awk -F, '{print NF}' <<<"$CPUS")
STEPS=${STEPS:-5}
DECODE_TOKENS=${DECODE_TOKENS:-32}
TOOL=build/test/model_tool
VIV=${VIV:-bin/viv}
[ -x "$TOOL" ] && [ -x "$VIV" ] || { echo "model.sh: run ./build.sh and make tests first" >&2; exit 2; }
out=build/bench
mkdir -p "$out"
jsonl=$out/model.jsonl
: >"$jsonl"
run() { VIV_THREADS=$NTH taskset -c "$CPUS" "$@"; }

cat >"$out/qwen3-124m.json" <<'JSON'
{"model_type":"qwen3","vocab_size":50257,"hidden_size":768,"intermediate_size":2048,"num_hidden_layers":12,
 "num_attention_heads":12,"num_key_value_heads":12,"head_dim":64,"rms_norm_eps":1e-6,"rope_theta":10000,
 "tie_word_embeddings":true,"max_position_embeddings":1024}
JSON
cat >"$out/qwen3-0.6b.json" <<'JSON'
{"model_type":"qwen3","vocab_size":151936,"hidden_size":1024,"intermediate_size":3072,"num_hidden_layers":28,
 "num_attention_heads":16,"num_key_value_heads":8,"head_dim":128,"rms_norm_eps":1e-6,"rope_theta":1000000,
 "tie_word_embeddings":true,"max_position_embeddings":40960,"bos_token_id":151643,"eos_token_id":151645}
JSON

echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg) (the numbers below are only as quiet as the machine)"
stream=$(run "$TOOL" stream --mib 512)
echo "$stream" | tee -a "$jsonl"
copy=$(sed -E 's/.*"copy_gb_s":([0-9.]+).*/\1/' <<<"$stream")
read_bw=$(sed -E 's/.*"read_gb_s":([0-9.]+).*/\1/' <<<"$stream")

train=$(run "$TOOL" train --config "$out/qwen3-124m.json" --B 4 --T 64 --steps "$STEPS" 2>/dev/null)
echo "$train" | tee -a "$jsonl"

model=$out/qwen3-0.6b-random
if [ ! -f "$model/model.safetensors" ]; then
  run "$TOOL" init --config "$out/qwen3-0.6b.json" --out "$model" --dtype bf16 --seed 1 --std 0.02
fi
params=$("$TOOL" params --config "$model/config.json")
prompt=$(seq -s, 100 115)
gen=$(run "$VIV" gen --model "$model" --prompt-ids "$prompt" --max-tokens "$DECODE_TOKENS" --temperature 0 \
        --stop-ids 0 --threads "$NTH" 2>&1 >/dev/null | grep 'tokens/s decode')
tps=$(sed -E 's/.* ([0-9.]+) tokens\/s decode.*/\1/' <<<"$gen")
python3 - "$tps" "$copy" "$read_bw" "$params" "$NTH" "$DECODE_TOKENS" <<'PY' | tee -a "$jsonl"
import json, sys
tps, copy, rd = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
params, nth, n = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
bytes_per_token = 4 * params  # every fp32 weight (the tied head included) is read once per decoded token
bound, rbound = copy * 1e9 / bytes_per_token, rd * 1e9 / bytes_per_token
print(json.dumps({"bench": "model_decode", "model": "qwen3-0.6b-shaped, random, bf16 on disk, fp32 in memory",
                  "params": params, "threads": nth, "tokens": n, "tokens_per_s": tps,
                  "weight_gb_s": round(tps * bytes_per_token / 1e9, 2),
                  "copy_bound_tokens_per_s": round(bound, 2), "fraction_of_copy_bound": round(tps / bound, 3),
                  "read_bound_tokens_per_s": round(rbound, 2), "fraction_of_read_bound": round(tps / rbound, 3)}))
PY

# batched decode (what the RL rollouts do): 8 sequences advance together
run "$TOOL" decode --model "$model" --slots 8 --prompt 16 --tokens 8 | tee -a "$jsonl"

if [ -n "${LLMC_DIR:-}" ]; then
  log=$out/llmc.log
  (cd "$LLMC_DIR" && OMP_NUM_THREADS=$NTH timeout "${LLMC_SECONDS:-150}" taskset -c "$CPUS" stdbuf -oL ./train_gpt2) >"$log" 2>&1 || true
  python3 - "$log" "$train" <<'PY' | tee -a "$jsonl"
import json, re, statistics, sys
steps = [float(m) for m in re.findall(r"step (?:[1-9]\d*): train loss [0-9.]+ \(took ([0-9.]+) ms\)", open(sys.argv[1]).read())]
ours = json.loads(sys.argv[2])
if not steps:
    print(json.dumps({"bench": "llmc_train_gpt2", "error": "no timed steps in " + sys.argv[1]}))
else:
    ms = statistics.median(steps)
    print(json.dumps({"bench": "llmc_train_gpt2", "B": 4, "T": 64, "steps": len(steps), "median_ms_per_step": ms,
                      "tokens_per_s": round(256e3 / ms, 1), "ours_over_llmc": round(ours["tokens_per_s"] / (256e3 / ms), 3)}))
PY
fi
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
