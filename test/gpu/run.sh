#!/usr/bin/env bash
# test/gpu/run.sh - the CUDA backend (model/cuda).
#
# On any machine: the CPU-vs-CUDA comparisons of gpu_tests.c run against
# model/cuda's host code with the kernels simulated on the CPU (hostsim).
# On any machine with nvcc (/usr/local/cuda/bin/nvcc):
#   - the CUDA objects, bin/viv-cuda and build/test/gpu_tests compile and link
#   - bin/viv-cuda links the CUDA runtime statically and resolves every library
#   - bin/viv (static, no CUDA) refuses --device cuda and `viv cuda` clearly
#   - without a GPU, bin/viv-cuda refuses --device cuda clearly too
# On a machine with a GPU, additionally:
#   - build/test/gpu_tests: CPU vs CUDA logits, loss, gradients, AdamW, decode
#   - viv gen --device cuda vs --device cpu on a small random checkpoint
#   - one-rank `mpirun` data-parallel training smoke run (two ranks with 2+ GPUs)
# Without a GPU those print "skip - ...: no CUDA device". The comparison with
# Hugging Face transformers is test/gpu/check_transformers.sh (needs a GPU,
# torch and transformers; not part of this suite).
set -u
cd "$(dirname "$0")/../.."
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() { # name, expected status, grep pattern for output, command...
  local name=$1 want=$2 pat=$3; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" = "$want" ] && grep -qE "$pat" <<<"$out"; then echo "ok - $name"
  else echo "not ok - $name: status $rc, output: $(head -c 300 <<<"$out" | tr '\n' ' ')"; fail=1; fi
}

# bin/viv: no CUDA in it, and it says so
if [ -x bin/viv ]; then
  check "bin/viv refuses gen --device cuda" 2 'built without CUDA.*viv-cuda' bin/viv gen --device cuda --model x --prompt-ids 1
  check "bin/viv refuses viv cuda" 2 'built without CUDA' bin/viv cuda info
  check "bin/viv gen checks --device" 2 'must be cpu or cuda' bin/viv gen --device tpu --model x --prompt-ids 1
else
  echo "not ok - bin/viv is missing (make all)"; fail=1
fi

# model/cuda's host code (layout, matmul shapes, backward wiring, AdamW, KV
# cache) with its kernels done as plain host loops (test/gpu/hostsim): the
# CPU-vs-CUDA comparisons, runnable without nvcc or a GPU. The CUDA kernels
# themselves are not exercised by this.
if [ -x build/test/gpu_hostsim_tests ]; then
  build/test/gpu_hostsim_tests | sed -E 's/^(ok|not ok|skip) - /\1 - hostsim: /'
  [ "${PIPESTATUS[0]}" = 0 ] || fail=1
elif ! command -v g++ >/dev/null && ! command -v clang++ >/dev/null; then
  echo "skip - hostsim: no C++ compiler (g++ or clang++) to build it"
else
  echo "not ok - hostsim: build/test/gpu_hostsim_tests missing (make tests)"; fail=1
fi

if [ ! -x "$NVCC" ]; then
  echo "skip - cuda build: no nvcc at $NVCC"
  exit $fail
fi

if make -s bin/viv-cuda build/test/gpu_tests >"$tmp/make.log" 2>&1; then
  echo "ok - CUDA objects, bin/viv-cuda and gpu_tests compile and link (nvcc $("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'))"
else
  echo "not ok - CUDA build: $(tail -5 "$tmp/make.log" | tr '\n' ' ')"
  exit 1
fi
libs=$(ldd bin/viv-cuda 2>&1)
if grep -q 'not found' <<<"$libs"; then
  echo "not ok - bin/viv-cuda resolves its libraries: $(grep 'not found' <<<"$libs" | tr '\n' ' ')"; fail=1
elif grep -q 'libcudart' <<<"$libs"; then
  echo "not ok - bin/viv-cuda links the CUDA runtime statically: found $(grep libcudart <<<"$libs")"; fail=1
else
  echo "ok - bin/viv-cuda: static CUDA runtime, every shared library resolves"
fi
check "viv-cuda cuda info" 0 'CUDA devices: [0-9]+' bin/viv-cuda cuda info

# a small random checkpoint (GQA, head_dim 32) for the command-line checks
cat >"$tmp/config.json" <<'EOF'
{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 512, "hidden_size": 128,
 "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
 "head_dim": 32, "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
 "tie_word_embeddings": false, "torch_dtype": "float32"}
EOF
have_model=0
if [ -x build/test/model_tool ] && build/test/model_tool init --config "$tmp/config.json" --out "$tmp/m" --dtype f32 --std 0.1 --seed 3 2>/dev/null; then
  have_model=1
else
  echo "not ok - model_tool init (make tests builds build/test/model_tool)"; fail=1
fi

ndev=$(bin/viv-cuda cuda info 2>/dev/null | sed -n 's/^CUDA devices: \([0-9]*\).*/\1/p')
ndev=${ndev:-0}
if [ "$ndev" = 0 ]; then
  why=$(bin/viv-cuda cuda info 2>/dev/null | sed -n 's/^CUDA devices: 0 (\(.*\))/\1/p')
  [ $have_model = 1 ] && check "viv-cuda gen --device cuda without a GPU says so" 1 'no CUDA device' \
    bin/viv-cuda gen --device cuda --model "$tmp/m" --prompt-ids 1,2,3 --max-tokens 3
  [ $have_model = 1 ] && check "viv-cuda gen --device cpu still works" 0 '^([0-9]+ ){3}$' \
    sh -c "bin/viv-cuda gen --device cpu --model $tmp/m --prompt-ids 1,2,3 --max-tokens 3 --temperature 0 2>/dev/null"
  build/test/gpu_tests || fail=1
  # MPI start-up and rank placement run up to the device check on every rank
  if command -v mpirun >/dev/null && bin/viv-cuda cuda info | grep -q 'MPI + NCCL): built in'; then
    check "mpirun -np 2 without a GPU: every rank says no CUDA device" 1 'rank 1: no CUDA device' \
      timeout 120 mpirun --allow-run-as-root --oversubscribe -np 2 bin/viv-cuda cuda train-bench \
      --config "$tmp/config.json" --steps 1
  fi
  echo "skip - viv gen --device cuda matches --device cpu: no CUDA device ($why)"
  echo "skip - mpirun data-parallel training smoke run: no CUDA device ($why)"
  exit $fail
fi

# ---- with a GPU ----
build/test/gpu_tests || fail=1
if [ $have_model = 1 ]; then
  # greedy ids: the first few must agree (bf16 may flip a near-tie later on)
  a=$(bin/viv-cuda gen --device cpu --model "$tmp/m" --prompt-ids 5,6,7 --max-tokens 4 --temperature 0 2>/dev/null)
  b=$(bin/viv-cuda gen --device cuda --model "$tmp/m" --prompt-ids 5,6,7 --max-tokens 4 --temperature 0 2>/dev/null)
  if [ -n "$a" ] && [ "$(cut -d' ' -f1-2 <<<"$a")" = "$(cut -d' ' -f1-2 <<<"$b")" ]; then
    echo "ok - viv gen --device cuda matches --device cpu (first greedy tokens: $a / $b)"
  else
    echo "not ok - viv gen --device cuda matches --device cpu: cpu '$a' cuda '$b'"; fail=1
  fi
fi
if command -v mpirun >/dev/null; then
  np=1; [ "$ndev" -ge 2 ] && np=2
  out=$(mpirun --allow-run-as-root --oversubscribe -np $np bin/viv-cuda cuda train-bench --config "$tmp/config.json" \
        --batch 2 --seq 64 --steps 3 --lr 1e-3 2>&1)
  if [ $? = 0 ] && [ "$(grep -c '"bench":"train"' <<<"$out")" = 3 ] && grep -q "\"ranks\":$np" <<<"$out"; then
    echo "ok - mpirun -np $np data-parallel training smoke run"
  else
    echo "not ok - mpirun -np $np data-parallel training: $(tail -3 <<<"$out" | tr '\n' ' ')"; fail=1
  fi
else
  echo "skip - mpirun data-parallel training smoke run: mpirun not installed (libopenmpi-dev / openmpi-bin)"
fi
exit $fail
