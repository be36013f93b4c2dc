#!/usr/bin/env bash
# test/bench/gpu.sh - the CUDA backend's speed on a Qwen3-0.6B shape, side by
# side with PyTorch on the same GPU in the same run:
#   train   forward + backward + AdamW, random tokens, B x T (default 4 x 2048):
#           ours (bin/viv-cuda cuda train-bench: bf16 weights/activations,
#           fp32 masters) vs transformers' Qwen3ForCausalLM with
#           torch.optim.AdamW (fused) under bf16 autocast (sdpa attention);
#           tokens/s and MFU (model FLOPs: 6 per weight per token plus causal
#           attention, over the GPU's dense bf16 peak: 989 TFLOPS for
#           H100/H200 SXM; set PEAK_TFLOPS otherwise)
#   decode  ours: 256 sequences at once with the KV cache, 128-token prompts,
#           128 greedy steps: decode tokens/s (all sequences together)
#   attn    the training attention kernels alone on one layer's shape
#           (B x T, 16 query heads, 8 kv heads, hd 128): CUDA-core path
#           (attention.cu) vs tensor-core path (attention_tc.cu), forward
#           and backward ms and TFLOPS (build/test/attn_bench). Training
#           uses the tensor-core path; VIV_ATTN=warp makes train-bench use
#           the other, to compare whole steps.
# Results: a table on stdout and build/bench/gpu.jsonl (one line per result;
# GPU_BENCH_OUT=FILE writes there instead), appended as each part finishes,
# so a run cut off by a time limit keeps what it measured.
#
#   test/bench/gpu.sh [B] [T] [STEPS]     (needs ./build.sh --cuda and a GPU;
#                                          PyTorch side needs torch + transformers)
# Without a CUDA device it prints a skip line and exits 0.
# NOTE: written without access to a GPU; no figures have been measured yet.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${1:-4}; T=${2:-2048}; STEPS=${3:-10}
VIV=${VIV:-bin/viv-cuda}
PY=${PY:-python3}
[ -x "$VIV" ] || { echo "gpu.sh: $VIV missing: run ./build.sh --cuda" >&2; exit 2; }
ndev=$("$VIV" cuda info 2>/dev/null | sed -n 's/^CUDA devices: \([0-9]*\).*/\1/p')
if [ "${ndev:-0}" = 0 ]; then
  echo "skip - gpu bench: no CUDA device ($("$VIV" cuda info 2>/dev/null | head -1))"; exit 0
fi
out=${GPU_BENCH_OUT:-build/bench/gpu.jsonl}
mkdir -p "$(dirname "$out")"
: >"$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/config.json" <<'EOF'
{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 1024,
 "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
 "head_dim": 128, "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
 "tie_word_embeddings": true, "torch_dtype": "bfloat16", "bos_token_id": 151643, "eos_token_id": 151645}
EOF
peak=()
[ -n "${PEAK_TFLOPS:-}" ] && peak=(--peak-tflops "$PEAK_TFLOPS")

echo "== ours: train-bench B=$B T=$T steps=$STEPS"
"$VIV" cuda train-bench --config "$tmp/config.json" --batch "$B" --seq "$T" --steps "$STEPS" "${peak[@]}" \
  --jsonl "$tmp/ours.jsonl" | tail -3
cat "$tmp/ours.jsonl" >>"$out" 2>/dev/null
echo "== ours, the CUDA-core attention kernels instead (VIV_ATTN=warp)"
VIV_ATTN=warp "$VIV" cuda train-bench --config "$tmp/config.json" --batch "$B" --seq "$T" --steps "$STEPS" "${peak[@]}" \
  --jsonl "$tmp/warp.jsonl" | tail -1
sed 's/"bench":"train"/"bench":"train_warp_attn"/' "$tmp/warp.jsonl" >>"$out" 2>/dev/null
echo "== ours: decode-bench 256 sequences"
"$VIV" cuda decode-bench --config "$tmp/config.json" --seqs 256 --prompt 128 --gen 128 --jsonl "$tmp/decode.jsonl"
cat "$tmp/decode.jsonl" >>"$out" 2>/dev/null

echo "== attention kernels alone: CUDA cores (warp) vs tensor cores (tc), B=$B T=$T hd=128"
ATTN_BENCH=${ATTN_BENCH:-build/test/attn_bench}
if [ -x "$ATTN_BENCH" ]; then
  "$ATTN_BENCH" "$B" "$T" 16 8 128 "$STEPS" >"$tmp/attn.out" || echo "attention bench failed"
  grep -v '^{' "$tmp/attn.out"
  grep '^{' "$tmp/attn.out" >>"$out"
else
  echo "skip - attention bench: build/test/attn_bench missing (make cuda)"
fi

echo "== PyTorch (transformers Qwen3ForCausalLM, AdamW fused, bf16 autocast)"
if "$PY" -c 'import torch, transformers' 2>/dev/null; then
  "$PY" - "$tmp/config.json" "$B" "$T" "$STEPS" "${PEAK_TFLOPS:-989}" >>"$out" <<'EOF' || echo "PyTorch bench failed"
import json, sys, time, torch
from transformers import Qwen3Config, Qwen3ForCausalLM
cfg_path, B, T, steps, peak = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
cfg = Qwen3Config(**{k: v for k, v in json.load(open(cfg_path)).items()
                     if k not in ("architectures", "torch_dtype", "model_type")})
cfg._attn_implementation = "sdpa"
torch.manual_seed(0)
m = Qwen3ForCausalLM(cfg).cuda().float()  # fp32 master weights, as ours
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
D, F, L, V = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
qd, kvd = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
fpt = 6.0 * (L * (2 * D * qd + 2 * D * kvd + 3 * D * F) + V * D) + 6.0 * L * qd * T
def step():
    ids = torch.randint(0, V, (B, T), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = m(input_ids=ids, labels=ids).loss  # transformers shifts the labels itself
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss
for _ in range(3):
    step()
torch.cuda.synchronize()
for s in range(steps):
    t0 = time.time()
    loss = step()
    torch.cuda.synchronize()
    dt = time.time() - t0
    tps = B * T / dt
    print(json.dumps({"bench": "train_torch", "step": s, "loss": float(loss), "ms": dt * 1e3, "tokens_per_s": tps,
                      "mfu": tps * fpt / (peak * 1e12), "batch": B, "seq": T,
                      "device": torch.cuda.get_device_name(), "torch": torch.__version__}), flush=True)
EOF
else
  echo "skip - PyTorch side: $PY lacks torch/transformers"
fi

"$PY" - "$out" <<'EOF' 2>/dev/null || cat "$out"
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(kind, key):
    v = [r[key] for r in rows if r["bench"] == kind and r.get("step", 1) > 0]  # step 0 warms up
    return st.median(v) if v else float("nan")
print(f"{'':24}{'tokens/s':>14}{'MFU':>8}")
for kind, name in (("train", "ours (viv-cuda)"), ("train_warp_attn", "ours, CUDA-core attention"),
                   ("train_torch", "PyTorch bf16 autocast")):
    print(f"{name:24}{med(kind, 'tokens_per_s'):>14.0f}{med(kind, 'mfu'):>8.3f}")
for r in rows:
    if r["bench"] == "decode":
        print(f"decode, {r['seqs']} sequences: {r['decode_tokens_per_s']:.0f} tokens/s "
              f"(prefill {r['prefill_tokens_per_s']:.0f} tokens/s) on {r['device']}")
EOF
echo "results: $out"
