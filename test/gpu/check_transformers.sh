#!/usr/bin/env bash
# test/gpu/check_transformers.sh - the CUDA (and CPU) Qwen3 against Hugging
# Face transformers, on a machine with a GPU, torch and transformers:
#
#   ./build.sh --cuda && test/gpu/check_transformers.sh
#
# For a small Qwen3 config, untied and tied embeddings:
#   1. transformers random-initialises Qwen3ForCausalLM and saves it
#      (save_pretrained, fp32 safetensors); our loader reads that directory
#      and our logits (viv cuda logits, --device cuda and cpu) must match
#      transformers' fp32 logits on the same ids;
#   2. we train it a few AdamW steps on the GPU (viv cuda train-bench --save)
#      and save; transformers loads our directory (from_pretrained) and its
#      logits must match ours.
# Tolerance: max |ours - theirs| / max |theirs| below 3% for the bf16 CUDA
# path, 1e-4 for the fp32 CPU path.
#
# Prints ok / not ok / skip lines like the other suites; exit 1 on failure.
# NOTE: written without access to a GPU or to transformers; not yet run.
set -u
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
VIV=${VIV:-bin/viv-cuda}
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

[ -x "$VIV" ] || { echo "not ok - $VIV missing: run ./build.sh --cuda"; exit 1; }
if ! "$PY" -c 'import torch, transformers, safetensors' 2>/dev/null; then
  echo "skip - transformers comparison: $PY lacks torch/transformers/safetensors"; exit 0
fi
ndev=$("$VIV" cuda info 2>/dev/null | sed -n 's/^CUDA devices: \([0-9]*\).*/\1/p')
if [ "${ndev:-0}" = 0 ]; then
  echo "skip - transformers comparison: no CUDA device"; exit 0
fi

IDS=3,17,250,9,77,1000,5,64,128,511,2,900,31,8,400,600,12,45,1023,7,99,300,13,21
cat >"$tmp/ref.py" <<'EOF'
# ref.py init DIR TIED IDS OUT | logits DIR IDS OUT | compare A B TOL NAME
import sys, numpy as np, torch
from transformers import Qwen3Config, Qwen3ForCausalLM

def logits(model, ids):
    x = torch.tensor([[int(i) for i in ids.split(",")]])
    with torch.no_grad():
        return model(x).logits[0].float().numpy()

cmd = sys.argv[1]
if cmd == "init":
    d, tied, ids, out = sys.argv[2], sys.argv[3] == "1", sys.argv[4], sys.argv[5]
    torch.manual_seed(1234)
    cfg = Qwen3Config(vocab_size=1024, hidden_size=256, intermediate_size=512, num_hidden_layers=3,
                      num_attention_heads=8, num_key_value_heads=4, head_dim=64, max_position_embeddings=512,
                      rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=tied,
                      initializer_range=0.1, attn_implementation="eager")
    m = Qwen3ForCausalLM(cfg).float().eval()
    with torch.no_grad():  # norm weights away from 1, so a wrong norm shows
        for n, p in m.named_parameters():
            if n.endswith("norm.weight"):
                p.uniform_(0.8, 1.2)
    m.save_pretrained(d, safe_serialization=True)
    logits(m, ids).astype("<f4").tofile(out)
elif cmd == "logits":
    d, ids, out = sys.argv[2:5]
    m = Qwen3ForCausalLM.from_pretrained(d, torch_dtype=torch.float32, attn_implementation="eager").eval()
    logits(m, ids).astype("<f4").tofile(out)
elif cmd == "compare":
    a, b = np.fromfile(sys.argv[2], "<f4"), np.fromfile(sys.argv[3], "<f4")
    tol, name = float(sys.argv[4]), sys.argv[5]
    if a.shape != b.shape:
        print(f"not ok - {name}: {a.size} vs {b.size} values"); sys.exit(1)
    e = float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
    same_argmax = float(np.mean(a.reshape(-1, 1024).argmax(1) == b.reshape(-1, 1024).argmax(1)))
    if e < tol:
        print(f"ok - {name} (max rel err {e:.2e}, argmax agreement {same_argmax:.2f})")
    else:
        print(f"not ok - {name}: max rel err {e:.2e} >= {tol}"); sys.exit(1)
EOF

cmp_() { "$PY" "$tmp/ref.py" compare "$@" || fail=1; }

for tied in 0 1; do
  d="$tmp/hf$tied"; ours="$tmp/ours$tied"
  if ! "$PY" "$tmp/ref.py" init "$d" $tied $IDS "$tmp/hf_logits$tied.bin" >"$tmp/log" 2>&1; then
    echo "not ok - transformers init (tied=$tied): $(tail -2 "$tmp/log" | tr '\n' ' ')"; fail=1; continue
  fi
  for dev in cuda cpu; do
    tol=0.03; [ $dev = cpu ] && tol=1e-4
    if "$VIV" cuda logits --model "$d" --ids $IDS --out "$tmp/o.bin" --device $dev 2>"$tmp/log"; then
      cmp_ "$tmp/o.bin" "$tmp/hf_logits$tied.bin" $tol "transformers checkpoint -> our $dev logits (tied=$tied)"
    else
      echo "not ok - our $dev loader on a transformers checkpoint (tied=$tied): $(tail -1 "$tmp/log")"; fail=1
    fi
  done
  # train on the GPU, save, load in transformers
  if "$VIV" cuda train-bench --model "$d" --batch 2 --seq 64 --steps 5 --lr 1e-3 --save "$ours" >"$tmp/train.log" 2>&1 \
     && "$PY" "$tmp/ref.py" logits "$ours" $IDS "$tmp/hf_ours$tied.bin" >"$tmp/log" 2>&1; then
    "$VIV" cuda logits --model "$ours" --ids $IDS --out "$tmp/o_cpu.bin" --device cpu 2>/dev/null \
      && cmp_ "$tmp/o_cpu.bin" "$tmp/hf_ours$tied.bin" 1e-4 "our GPU-trained checkpoint in transformers = our CPU logits (tied=$tied)"
    "$VIV" cuda logits --model "$ours" --ids $IDS --out "$tmp/o_gpu.bin" --device cuda 2>/dev/null \
      && cmp_ "$tmp/o_gpu.bin" "$tmp/hf_ours$tied.bin" 0.03 "our GPU-trained checkpoint in transformers = our CUDA logits (tied=$tied)"
    # the training must have changed the weights, or the check above proves little
    if "$PY" "$tmp/ref.py" compare "$tmp/hf_ours$tied.bin" "$tmp/hf_logits$tied.bin" 1e-6 x >/dev/null 2>&1; then
      echo "not ok - training changed the model (tied=$tied): logits identical before and after"; fail=1
    else
      echo "ok - training changed the model (tied=$tied)"
    fi
  else
    echo "not ok - train, save, load in transformers (tied=$tied): $(tail -2 "$tmp/train.log" "$tmp/log" | tr '\n' ' ')"; fail=1
  fi
done
exit $fail
