#!/usr/bin/env bash
# test/gpu/run.sh - the CUDA backend (model/cuda).
#
# On any machine: the CPU-vs-CUDA comparisons of gpu_tests.c run against
# model/cuda's host code with the kernels simulated on the CPU (hostsim);
# so do the trainer's (train_gpu_tests.c: rl/ on the CUDA backend vs the CPU
# backend), and `viv train --device cuda` end to end (build/test/viv_hostsim:
# viv with the CUDA backend over hostsim): it completes, skips an injected
# NaN step, resumes, writes an HF checkpoint that the CPU model loads, and
# its first SFT loss is the CPU run's. Where MPI is installed, data parallel
# over hostsim with MPI standing in for NCCL: train_dp_tests.c (2 ranks
# split SFT batches and GRPO groups: the same update as one rank) and
# `mpirun -np 2 viv train --device cuda` end to end.
# On any machine with nvcc (/usr/local/cuda/bin/nvcc):
#   - the CUDA objects, bin/viv-cuda and build/test/gpu_tests compile and link
#   - bin/viv-cuda links the CUDA runtime statically and resolves every library
#   - bin/viv (static, no CUDA) refuses --device cuda (gen, train, sft) and
#     `viv cuda` clearly
#   - without a GPU, bin/viv-cuda refuses --device cuda clearly too
# On a machine with a GPU, additionally:
#   - build/test/gpu_tests: CPU vs CUDA logits, loss, gradients, AdamW, decode;
#     the training attention kernels alone: tensor cores (attention_tc.cu)
#     vs CUDA cores (attention.cu) vs an fp64 host reference
#   - viv gen --device cuda vs --device cpu on a small random checkpoint
#   - one-rank `mpirun` data-parallel training smoke run (two ranks with 2+ GPUs)
#   - build/test/train_gpu_tests: the trainer on the GPU vs on the CPU
#   - `viv-cuda train --device cuda` (and under `mpirun -np 1`, -np 2 with 2+
#     GPUs) on a tiny config: completes, its checkpoint loads in bin/viv
# Without a GPU those print "skip - ...: no CUDA device". The comparison with
# Hugging Face transformers is test/gpu/check_transformers.sh (needs a GPU,
# torch and transformers; not part of this suite).
# VIV_TEST_PART=long runs the long part alone instead: the trainer over kemu,
# kemu's race check, memcheck and access profile, and the GPU kit (test/run.sh's gpu-long, in `./build.sh test --full`).
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

# The real kernels of kernels.cu / attention.cu(_tc) run on the CPU by kemu
# (test/gpu/kemu: CUDA threads as fibers, warp shuffles and barriers
# emulated; matmuls still hostsim's): kemu's own checks, then gpu_tests.c
# (CPU vs CUDA logits, gradients, AdamW, decode; the training attention's
# tensor-core and CUDA-core kernels vs fp64) with the kernels run once in
# thread order and once in a shuffled order (a race between barriers shows
# as a difference), the race check (race_tests.cu: the kernels under
# ThreadSanitizer, every CUDA thread a fiber, barriers its release/acquire;
# planted races must be reported, the model's kernels must be clean), the
# memcheck (the same under AddressSanitizer: out-of-bounds accesses), then
# the trainer's comparisons (train_gpu_tests.c).
# ThreadSanitizer's runtime (gcc 12) refuses some kernels' address-space
# randomisation ("unexpected memory mapping"); setarch -R turns it off for
# the race-checked binaries alone
# The model's kernels under kemu's access profile (test/gpu/kemu/prof.h) on
# a Qwen3-shaped layer (head size 128): a training step with tensor-core
# attention, the same with the CUDA-core kernels (VIV_ATTN=warp), and a
# decode; no kernel's requests may move or wait for over 1.10x the sectors
# and shared-memory passes their bytes need (access_check.py).
kemu_access() {
  local v=build/test/viv_kemu_prof d=$tmp/access
  if [ ! -x "$v" ]; then echo "not ok - kemu-access: $v missing (make tests-full)"; fail=1; return; fi
  mkdir -p "$d"
  cat >"$d/config.json" <<'EOF'
{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 512, "hidden_size": 256,
 "intermediate_size": 512, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
 "head_dim": 128, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
 "tie_word_embeddings": true, "torch_dtype": "bfloat16"}
EOF
  local train=(cuda train-bench --config "$d/config.json" --batch 1 --seq 96 --steps 1)
  if ! KEMU_PROF=$d/train.jsonl "$v" "${train[@]}" >"$d/log" 2>&1 ||
     ! KEMU_PROF=$d/warp.jsonl VIV_ATTN=warp "$v" "${train[@]}" >>"$d/log" 2>&1 ||
     ! KEMU_PROF=$d/decode.jsonl "$v" cuda decode-bench --config "$d/config.json" --seqs 4 --prompt 40 --gen 3 \
       >>"$d/log" 2>&1; then
    echo "not ok - kemu-access: a profiled run failed: $(tail -3 "$d/log" | tr '\n' ' ')"; fail=1; return
  fi
  python3 test/gpu/kemu/access_check.py 1.10 \
    "train:$d/train.jsonl:attn_fwd_tc_kernel,attn_dq_tc_kernel,attn_dkv_tc_kernel,rmsnorm_fwd_kernel,xent_fwd_kernel,adamw_kernel" \
    "train_warp:$d/warp.jsonl:attn_fwd_kernel,attn_dq_kernel,attn_dkv_kernel" \
    "decode:$d/decode.jsonl:attn_decode_kernel,kv_store_kernel" || fail=1
}
norandom=()
# which make target builds this part's binaries
make_target=tests
[ "${VIV_TEST_PART:-quick}" = long ] && make_target=tests-full
setarch "$(uname -m)" -R true 2>/dev/null && norandom=(setarch "$(uname -m)" -R)
kemu_run() { # label, binary, env...
  local label=$1 bin=$2; shift 2
  if [ ! -x "$bin" ]; then echo "not ok - $label: $bin missing (make $make_target)"; fail=1; return; fi
  env "$@" "${norandom[@]}" "$bin" | sed -E "s/^(ok|not ok|skip) - (kemu: )?/\1 - $label: /"
  [ "${PIPESTATUS[0]}" = 0 ] || fail=1
}
# the trainer on the CUDA backend: a tiny `viv train --device cuda` run
DATA=${VIV_TEST_DATA:-data}
TINY=(--data "$DATA" --train-limit 14 --eval-limit 7 --samples 2 --tasks-per-step 2 --group 2 --sft-epochs 1
      --max-turns 3 --max-turn-tokens 48 --max-context 1024 --vocab 400 --d-model 32 --layers 1 --heads 2
      --kv-heads 1 --head-dim 16 --ffn 64 --ckpt-every 1 --threads 1)
have_data() {
  [ -f "$DATA/tasks/train.jsonl" ] || bin/viv data build --out "$DATA" >/dev/null 2>&1
}
# e2e_train NAME VIV [LAUNCHER...]: a tiny `train --device cuda` run with VIV
# (a path) and the options in E2E_EXTRA, checked
E2E_EXTRA=()
e2e_train() {
  local name=$1 viv=$2; shift 2
  local d="$tmp/runs/$name"
  if ! "$@" "$viv" train "${TINY[@]}" "${E2E_EXTRA[@]}" --runs "$tmp/runs" --name "$name" --device cuda --steps 2 --inject-nan-step 2 \
       >"$tmp/$name.out" 2>"$tmp/$name.err"; then
    echo "not ok - $name: viv train --device cuda failed: $(tail -3 "$tmp/$name.err" | tr '\n' ' ')"; fail=1; return 1
  fi
  local msg
  msg=$(/usr/bin/python3 - "$d" <<'PYEOF' 2>&1
import json, sys
d = sys.argv[1]
assert json.load(open(f"{d}/config.json"))["device"] == "cuda"
lines = [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
assert [l["step"] for l in lines] == [1, 2], [l["step"] for l in lines]
assert lines[1]["nan_skipped"] == 1 and lines[0]["nan_skipped"] == 0, "the injected NaN step was not skipped"
assert open(f"{d}/checkpoints/latest").read().strip() == "step-000002"
for st in ("before_sft", "after_sft", "after_rl"):
    assert json.load(open(f"{d}/eval_{st}.json"))["overall"]["n"] == 7
PYEOF
)
  if [ $? != 0 ]; then echo "not ok - $name: run files: $msg"; fail=1; return 1; fi
  if ! grep -q 'training and decoding on cuda' "$tmp/$name.err"; then
    echo "not ok - $name: it did not say it trains on cuda"; fail=1; return 1
  fi
  # the HF checkpoint, written from the device's weights, loads in the CPU model
  if ! bin/viv gen --device cpu --model "$d/checkpoints/step-000002" --prompt-ids 1,2,3 --max-tokens 3 \
       --temperature 0 >/dev/null 2>"$tmp/$name.gen"; then
    echo "not ok - $name: the checkpoint does not load in bin/viv: $(tail -2 "$tmp/$name.gen" | tr '\n' ' ')"; fail=1; return 1
  fi
  echo "ok - $name: viv train --device cuda completes, skips an injected NaN step, its checkpoint loads on the CPU"
}

# the GPU kit (test/gpu/kit.sh): packed here, every binary loads with glibc,
# the kit's libraries and cuBLASLt alone (a chroot), and `run` goes through
# its steps (each a skip without a device; with one, this suite runs them
# itself, and the kit's run is the GPU machine's to do)
# Part of the long part: packing builds the CUDA side again apart and runs
# kemu's access profile of a training step (minutes on two cores).
gpu_kit() {
if GPUKIT=$tmp/kit test/gpu/kit.sh pack >"$tmp/kit.log" 2>&1; then
  kc=$(GPUKIT=$tmp/kit test/gpu/kit.sh check 2>&1)
  mkdir -p "$tmp/kitout"
  if bin/viv-cuda cuda info 2>/dev/null | grep -q '^CUDA devices: [1-9]'; then
    printf '== gpu_tests: exit 0 (not run: a device is here)\n== bench: exit 0\n' >"$tmp/kitout/kit.log"
  else
    GPUKIT=$tmp/kit test/gpu/kit.sh run "$tmp/kitout" >>"$tmp/kit.log" 2>&1
  fi
  # the access step's plumbing, with a stand-in ncu that records its
  # arguments and answers one kernel's counters
  mkdir -p "$tmp/fakencu"
  cat >"$tmp/fakencu/ncu" <<'EOF'
#!/bin/sh
echo "$@" >"$FAKE_NCU_ARGS"
echo '"ID","Kernel Name","l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum","l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum","l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum","l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum"'
echo '"","","sector","sector","",""'
echo '"0","void attn_fwd_tc_kernel<128, 8>(__nv_bfloat16 *, float *)","1,000","2","3","4"'
EOF
  chmod +x "$tmp/fakencu/ncu"
  mkdir -p "$tmp/kitoutn"
  PATH=$tmp/fakencu:$PATH FAKE_NCU_ARGS=$tmp/ncu.args GPUKIT=$tmp/kit test/gpu/kit.sh run "$tmp/kitoutn" >>"$tmp/kit.log" 2>&1
  if grep -q '^== access: exit 0' "$tmp/kitoutn/kit.log" &&
     grep -q 'train-bench --config test/gpu/kemu/qwen3_layer.json --batch 1 --seq 128 --steps 1' "$tmp/ncu.args" &&
     grep -q 'l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum' "$tmp/ncu.args" &&
     [ "$(grep -c '"kernel": "attn_fwd_tc_kernel"' "$tmp/kitoutn/access_vs_ncu.jsonl" 2>/dev/null)" = 4 ] &&
     grep -q '"op": "load", "kemu": [0-9]*, "ncu": 1000.0' "$tmp/kitoutn/access_vs_ncu.jsonl"; then
    echo "ok - gpu kit: the access step runs ncu on the packed step and compares its counters with kemu's, per kernel"
  else
    echo "not ok - gpu kit access step: $(grep '^== access' "$tmp/kitoutn/kit.log") args: $(head -c 300 "$tmp/ncu.args" 2>/dev/null)"; fail=1
  fi
  # a budget too small for any step: each says so instead of starting
  mkdir -p "$tmp/kitout0"
  KIT_BUDGET=10 GPUKIT=$tmp/kit test/gpu/kit.sh run "$tmp/kitout0" >>"$tmp/kit.log" 2>&1
  if grep -q '^not ok' <<<"$kc"; then
    echo "not ok - gpu kit: $(grep '^not ok' <<<"$kc" | head -2 | tr '\n' ' ')"; fail=1
  elif ! grep -q '"kernel":"attn_fwd_tc_kernel<128, 8>"' "$tmp/kit/access-kemu.jsonl" 2>/dev/null; then
    echo "not ok - gpu kit: no kemu access profile of the tensor-core forward in the kit (access-kemu.jsonl)"; fail=1
  elif ! grep -q '^== gpu_tests: exit 0' "$tmp/kitout/kit.log" || ! grep -q '^== bench: exit 0' "$tmp/kitout/kit.log"; then
    echo "not ok - gpu kit run: $(grep '^==' "$tmp/kitout/kit.log" | tr '\n' ' ')"; fail=1
  elif [ "$(grep -c '^== [a-z_]*: not run, ' "$tmp/kitout0/kit.log")" -lt 5 ] || grep -q '^== [a-z_]*: exit' "$tmp/kitout0/kit.log"; then
    echo "not ok - gpu kit run under a 10 s budget: $(grep '^==' "$tmp/kitout0/kit.log" | tr '\n' ' ')"; fail=1
  else
    echo "ok - gpu kit: packed ($(du -sh "$tmp/kit" | cut -f1)), $(grep -c '^ok' <<<"$kc") binaries load alone$(grep -q '^skip' <<<"$kc" && echo ' (chroot check skipped: not root)'), run passes through its steps, and a 10 s budget starts none"
  fi
else
  echo "not ok - gpu kit pack: $(tail -3 "$tmp/kit.log" | tr '\n' ' ')"; fail=1
fi
}

# The long part of this suite (VIV_TEST_PART=long, test/run.sh's gpu-long),
# minutes each on two cores: the trainer over the real kernels under kemu,
# and kemu's sanitizer and profile builds, which run every kernel
# instrumented and catch what the plain kemu runs below cannot (races,
# out-of-bounds accesses, access costs).
kemu_long() {
  # the trainer's comparisons (train_gpu_tests.c) and `viv train --device
  # cuda` over the real kernels: the same run over hostsim is the quick
  # part's, the kernels alone are kemu-kernels'
  kemu_run kemu-trainer build/test/train_gpu_kemu_tests
  # the end-to-end run of the hostsim part (below) with the real kernels
  # under kemu, the NaN snapshot kept in host memory (the injected NaN step
  # restores from it)
  if [ ! -x build/test/viv_kemu ] || [ ! -x bin/vivd ]; then
    echo "not ok - kemu-train: build/test/viv_kemu or bin/vivd missing (make tests)"; fail=1
  elif ! have_data; then
    echo "not ok - kemu-train: viv data build failed"; fail=1
  else
    chmod 755 "$tmp"
    mkdir -p "$tmp/kbin" && cp build/test/viv_kemu "$tmp/kbin/viv" && ln -s "$PWD/bin/vivd" "$tmp/kbin/vivd"
    E2E_EXTRA=(--host-snapshot)
    if e2e_train kemu-train "$tmp/kbin/viv"; then
      if grep -q 'NaN snapshot in host memory' "$tmp/kemu-train.err"; then
        echo "ok - kemu-train: --host-snapshot: the log says where the snapshot is"
      else
        echo "not ok - kemu-train: --host-snapshot not in the log"; fail=1
      fi
    fi
    E2E_EXTRA=()
  fi
  kemu_run kemu-race build/test/kemu_race_tests
  # kemu's access profile (prof.h): hand-counted sectors and bank conflicts,
  # then the model's kernels against their caps
  kemu_run kemu-prof build/test/kemu_prof_tests
  kemu_access
  # kemu's memcheck (AddressSanitizer): planted out-of-bounds accesses
  # reported, every launcher clean; then all of gpu_tests over it
  kemu_run kemu-memcheck build/test/kemu_memcheck_tests
  kemu_run kemu-memcheck-model build/test/gpu_kemu_memcheck_tests
  # gpu_tests' model-level cases over the race-checked kernels: the model's
  # own calls (shapes, buffers, in-place use); a report fails the case
  if [ -x build/test/gpu_kemu_race_tests ]; then
    "${norandom[@]}" build/test/gpu_kemu_race_tests forward_untied forward_tied grads_untied grads_tied grads_recompute \
      grads_logprob_coef kv_decode_batched kv_matches_forward logits_chunked >"$tmp/race_model.log" 2>&1
    rc=$?
    sed -nE 's/^(ok|not ok|skip) - /\1 - kemu-race-model: /p' "$tmp/race_model.log"
    if grep -q 'ThreadSanitizer\|runtime error' "$tmp/race_model.log" || [ $rc != 0 ]; then
      echo "not ok - kemu-race-model: exit $rc, $(grep -m1 'SUMMARY: ThreadSanitizer\|runtime error' "$tmp/race_model.log")"; fail=1
    fi
  else
    echo "not ok - kemu-race-model: build/test/gpu_kemu_race_tests missing (make tests-full)"; fail=1
  fi
}
if [ "${VIV_TEST_PART:-quick}" = long ]; then
  if command -v g++ >/dev/null || command -v clang++ >/dev/null; then kemu_long
  else echo "skip - kemu-trainer, kemu-train, kemu-race, kemu-memcheck, kemu-prof: no C++ compiler (g++ or clang++) to build them"; fi
  if [ -x "$NVCC" ]; then gpu_kit
  else echo "skip - gpu kit: no nvcc at $NVCC"; fi
  exit $fail
fi

# bin/viv: no CUDA in it, and it says so
if [ -x bin/viv ]; then
  check "bin/viv refuses gen --device cuda" 2 'built without CUDA.*viv-cuda' bin/viv gen --device cuda --model x --prompt-ids 1
  check "bin/viv refuses viv cuda" 2 'built without CUDA' bin/viv cuda info
  check "bin/viv gen checks --device" 2 'must be cpu or cuda' bin/viv gen --device tpu --model x --prompt-ids 1
  check "bin/viv refuses train --device cuda" 2 'built without CUDA.*bin/viv-cuda' bin/viv train --device cuda
  check "bin/viv refuses sft --device cuda" 2 'built without CUDA.*bin/viv-cuda' bin/viv sft --device cuda
  check "bin/viv train checks --device" 2 'must be cpu or cuda' bin/viv train --device tpu
  check "bin/viv train --zero1 needs --device cuda" 2 'zero1 needs --device cuda' bin/viv train --zero1
  check "bin/viv sft --recompute needs --device cuda" 2 'recompute needs --device cuda' bin/viv sft --device cpu --recompute
  check "bin/viv train --host-snapshot needs --device cuda" 2 'host-snapshot needs --device cuda' bin/viv train --host-snapshot
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

if command -v g++ >/dev/null || command -v clang++ >/dev/null; then
  kemu_run kemu build/test/kemu_tests
  kemu_run kemu-kernels build/test/gpu_kemu_tests
  kemu_run kemu-kernels-shuffled build/test/gpu_kemu_tests KEMU_SHUFFLE=1
fi

# The `viv cuda` and `viv gen --device cuda` command lines with the real
# kernels under kemu (build/test/viv_kemu), on a small random checkpoint:
# the commands test/gpu/check_transformers.sh and test/bench/gpu.sh rely on.
kemu_relerr() { # A B TOL: prints max |a - b| / max |b| of two fp32 files; status 1 above TOL
  /usr/bin/python3 -c '
import array, sys
a, b = (array.array("f", open(f, "rb").read()) for f in sys.argv[1:3])
e = max(abs(x - y) for x, y in zip(a, b)) / max(abs(y) for y in b) if len(a) == len(b) and len(a) else 1e30
print(f"{e:.2e}"); sys.exit(e > float(sys.argv[3]))' "$@"
}
kemu_cli() {
  local v=build/test/viv_kemu d="$tmp/kcli" ids=3,17,250,9,77,100,5,64,128,511,2,90,31,8,400 e a b
  if [ ! -x $v ] || [ ! -x build/test/model_tool ]; then
    echo "not ok - kemu-cli: build/test/viv_kemu or model_tool missing (make tests)"; fail=1; return
  fi
  mkdir -p "$d"
  cat >"$d/config.json" <<'EOF'
{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 512, "hidden_size": 128,
 "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
 "head_dim": 32, "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
 "tie_word_embeddings": false, "torch_dtype": "float32"}
EOF
  build/test/model_tool init --config "$d/config.json" --out "$d/m" --dtype f32 --std 0.1 --seed 3 >/dev/null 2>&1
  if $v cuda logits --model "$d/m" --ids $ids --out "$d/g.bin" --device cuda 2>"$d/err" &&
     $v cuda logits --model "$d/m" --ids $ids --out "$d/c.bin" --device cpu 2>>"$d/err" &&
     e=$(kemu_relerr "$d/g.bin" "$d/c.bin" 0.03); then
    echo "ok - kemu-cli: viv cuda logits --device cuda vs cpu (max rel err $e)"
  else
    echo "not ok - kemu-cli: viv cuda logits cuda vs cpu: ${e:-} $(tail -2 "$d/err" | tr '\n' ' ')"; fail=1
  fi
  # train-bench --save writes a checkpoint that bin/viv loads, trained (its
  # logits moved), with the same logits on both devices
  if $v cuda train-bench --model "$d/m" --batch 2 --seq 32 --steps 3 --lr 1e-2 --save "$d/t" >"$d/tb.out" 2>"$d/err" &&
     [ "$(grep -c '"bench":"train"' "$d/tb.out")" = 3 ] &&
     bin/viv gen --device cpu --model "$d/t" --prompt-ids 1,2 --max-tokens 1 >/dev/null 2>&1 &&
     $v cuda logits --model "$d/t" --ids $ids --out "$d/tc.bin" --device cpu 2>>"$d/err" &&
     $v cuda logits --model "$d/t" --ids $ids --out "$d/tg.bin" --device cuda 2>>"$d/err" &&
     e=$(kemu_relerr "$d/tg.bin" "$d/tc.bin" 0.03) && ! kemu_relerr "$d/tc.bin" "$d/c.bin" 1e-3 >/dev/null; then
    echo "ok - kemu-cli: train-bench --save: 3 steps; the checkpoint loads in bin/viv, moved, cuda = cpu on it ($e)"
  else
    echo "not ok - kemu-cli: train-bench --save: ${e:-} $(tail -2 "$d/err" | tr '\n' ' ')"; fail=1
  fi
  if $v cuda decode-bench --config "$d/config.json" --seqs 4 --prompt 8 --gen 4 >"$d/db.out" 2>"$d/err" &&
     grep -q '"bench":"decode".*"decode_tokens_per_s":[0-9]' "$d/db.out"; then
    echo "ok - kemu-cli: viv cuda decode-bench runs 4 sequences"
  else
    echo "not ok - kemu-cli: decode-bench: $(tail -2 "$d/err" | tr '\n' ' ')"; fail=1
  fi
  if $v cuda plan --config "$d/config.json" --batch 2 --seq 32 --gpu-gib 80 >"$d/plan.out" 2>"$d/err" &&
     grep -q '^fits on a 80.0 GiB GPU' "$d/plan.out" && grep -q '"plan":"train","params":426752,' "$d/plan.out" &&
     ! $v cuda plan --config "$d/config.json" --ranks 0 >/dev/null 2>&1; then
    echo "ok - kemu-cli: viv cuda plan prints the memory per GPU (and refuses --ranks 0)"
  else
    echo "not ok - kemu-cli: viv cuda plan: $(tail -2 "$d/plan.out" "$d/err" | tr '\n' ' ')"; fail=1
  fi
  a=$(bin/viv gen --device cpu --model "$d/m" --prompt-ids 5,6,7 --max-tokens 4 --temperature 0 2>/dev/null)
  b=$($v gen --device cuda --model "$d/m" --prompt-ids 5,6,7 --max-tokens 4 --temperature 0 2>/dev/null)
  if [ -n "$a" ] && [ "$(cut -d' ' -f1-2 <<<"$a")" = "$(cut -d' ' -f1-2 <<<"$b")" ]; then
    echo "ok - kemu-cli: viv gen --device cuda matches bin/viv --device cpu (greedy: $a/ $b)"
  else
    echo "not ok - kemu-cli: viv gen --device cuda vs cpu: cpu '$a' cuda '$b'"; fail=1
  fi
}
if command -v g++ >/dev/null || command -v clang++ >/dev/null; then kemu_cli; fi

# the trainer on the CUDA backend over hostsim: unit comparisons, then viv train end to end
if [ -x build/test/train_gpu_hostsim_tests ] && [ -x build/test/viv_hostsim ] && [ -x bin/vivd ]; then
  build/test/train_gpu_hostsim_tests | sed -E 's/^(ok|not ok|skip) - /\1 - hostsim: /'
  [ "${PIPESTATUS[0]}" = 0 ] || fail=1
  # viv_hostsim finds vivd beside itself, as bin/viv does
  mkdir -p "$tmp/hbin" && cp build/test/viv_hostsim "$tmp/hbin/viv" && ln -s "$PWD/bin/vivd" "$tmp/hbin/vivd"
  chmod 755 "$tmp"
  if ! have_data; then
    echo "not ok - hostsim: viv data build failed"; fail=1
  elif e2e_train hostsim-train "$tmp/hbin/viv"; then
    # resume on the device: the optimizer and weights go back up, step 3 follows 2
    if "$tmp/hbin/viv" train "${TINY[@]}" --runs "$tmp/runs" --name hostsim-train --device cuda --steps 3 --resume \
         >/dev/null 2>"$tmp/resume.err" && grep -q 'resuming from' "$tmp/resume.err" &&
       [ "$(/usr/bin/python3 -c 'import json,sys; print([json.loads(l)["step"] for l in open(sys.argv[1])])' \
            "$tmp/runs/hostsim-train/metrics.jsonl")" = "[1, 2, 3]" ]; then
      echo "ok - hostsim-train: --resume --device cuda continues at step 3"
    else
      echo "not ok - hostsim-train: --resume --device cuda: $(tail -3 "$tmp/resume.err" | tr '\n' ' ')"; fail=1
    fi
  fi
  # viv sft on both devices, same data and seed: the same first loss (bf16 vs fp32: 2%)
  if [ -f "$DATA/tasks/train.jsonl" ]; then
    "$tmp/hbin/viv" sft "${TINY[@]}" --runs "$tmp/runs" --name sft-cuda --device cuda >/dev/null 2>"$tmp/sftg.err"; rg=$?
    bin/viv sft "${TINY[@]}" --runs "$tmp/runs" --name sft-cpu --device cpu >/dev/null 2>"$tmp/sftc.err"; rc_=$?
    lg=$(sed -n 's/^sft: step 1\/[0-9]* loss \([0-9.]*\).*/\1/p' "$tmp/sftg.err")
    lc=$(sed -n 's/^sft: step 1\/[0-9]* loss \([0-9.]*\).*/\1/p' "$tmp/sftc.err")
    if [ $rg = 0 ] && [ $rc_ = 0 ] && [ -n "$lg" ] && [ -n "$lc" ] &&
       /usr/bin/python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); sys.exit(abs(a-b) > 0.02*abs(b))" "$lg" "$lc"; then
      echo "ok - hostsim: viv sft --device cuda first loss $lg, --device cpu $lc"
    else
      echo "not ok - hostsim: viv sft first loss: cuda '$lg' (status $rg) cpu '$lc' (status $rc_)"; fail=1
    fi
    # --recompute: the same SFT losses, step for step (the later ones carry the
    # first steps' gradients), and the backend says it recomputes
    check "hostsim: viv sft --device cpu --recompute refused" 2 'recompute needs --device cuda' \
      "$tmp/hbin/viv" sft "${TINY[@]}" --runs "$tmp/runs" --name sft-cpu-rc --device cpu --recompute
    "$tmp/hbin/viv" sft "${TINY[@]}" --runs "$tmp/runs" --name sft-cuda-rc --device cuda --recompute >/dev/null 2>"$tmp/sftr.err"; rr=$?
    la=$(grep '^sft: step' "$tmp/sftg.err" | sed 's/ lr .*//'); lb=$(grep '^sft: step' "$tmp/sftr.err" | sed 's/ lr .*//')
    if [ $rr = 0 ] && [ -n "$la" ] && [ "$la" = "$lb" ] && grep -q 'training and decoding on cuda (activation recompute)' "$tmp/sftr.err"; then
      echo "ok - hostsim: viv sft --device cuda --recompute: the same losses as without ($(tr '\n' ' ' <<<"$lb"))"
    else
      echo "not ok - hostsim: viv sft --recompute (status $rr): '$lb' vs '$la' $(grep 'decoding on' "$tmp/sftr.err")"; fail=1
    fi
  fi
  # data parallel over hostsim (MPI in place of NCCL)
  MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
  if [ ! -x build/test/train_dp_hostsim_tests ] || [ ! -x build/test/viv_hostsim_mpi ]; then
    echo "skip - hostsim data parallel: not built (needs MPI: libopenmpi-dev)"
  elif ! command -v mpirun >/dev/null; then
    echo "skip - hostsim data parallel: no mpirun (openmpi-bin)"
  elif ! timeout 60 "${MPIRUN[@]}" -np 2 true >/dev/null 2>&1; then
    echo "skip - hostsim data parallel: mpirun cannot start 2 ranks here"
  else
    timeout 300 "${MPIRUN[@]}" -np 2 build/test/train_dp_hostsim_tests 2>"$tmp/dp.err" | sed -E 's/^(ok|not ok|skip) - /\1 - hostsim: /'
    [ "${PIPESTATUS[0]}" = 0 ] || { fail=1; echo "# $(tail -3 "$tmp/dp.err" | tr '\n' ' ')"; }
    mkdir -p "$tmp/mbin" && cp build/test/viv_hostsim_mpi "$tmp/mbin/viv" && ln -s "$PWD/bin/vivd" "$tmp/mbin/vivd"
    if [ -f "$DATA/tasks/train.jsonl" ] && e2e_train hostsim-mpirun-np2 "$tmp/mbin/viv" timeout 300 "${MPIRUN[@]}" -np 2; then
      e=$tmp/hostsim-mpirun-np2.err
      l2=$(sed -n 's/^sft: step 1\/[0-9]* loss \([0-9.]*\).*/\1/p' "$e")
      l1=$(sed -n 's/^sft: step 1\/[0-9]* loss \([0-9.]*\).*/\1/p' "$tmp/hostsim-train.err")
      eps=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["episodes"])' \
            "$tmp/runs/hostsim-mpirun-np2/metrics.jsonl")
      if ! grep -q 'data parallel over 2 ranks' "$e"; then
        echo "not ok - hostsim-mpirun-np2: no 'data parallel over 2 ranks'"; fail=1
      elif [ "$(grep -c '^sft: done' "$e")" != 1 ] || [ "$(grep -c '^eval (after_rl): accuracy' "$e")" != 1 ]; then
        echo "not ok - hostsim-mpirun-np2: ranks other than 0 reported SFT or evaluated"; fail=1
      elif [ "$eps" != 4 ]; then
        echo "not ok - hostsim-mpirun-np2: step 1 logged $eps episodes, not both ranks' 4"; fail=1
      elif [ -z "$l1" ] || [ "$l2" != "$l1" ]; then
        echo "not ok - hostsim-mpirun-np2: first SFT loss $l2 over 2 ranks, $l1 on one"; fail=1
      else
        echo "ok - hostsim-mpirun-np2: 2 ranks split SFT and rollouts (first SFT loss $l2 = one rank's), rank 0 alone reports"
      fi
      # ZeRO-1: the same run with the moments sharded: the same SFT losses and
      # GRPO grad norms as without, the NaN step skipped and restored, and a
      # --resume under mpirun (the moments gathered into optimizer.bin, then
      # each rank's shard loaded back) continues at step 3
      E2E_EXTRA=(--zero1)
      if e2e_train hostsim-mpirun-np2-zero1 "$tmp/mbin/viv" timeout 300 "${MPIRUN[@]}" -np 2; then
        z=$tmp/hostsim-mpirun-np2-zero1.err
        msg=$(/usr/bin/python3 - "$tmp/runs/hostsim-mpirun-np2" "$tmp/runs/hostsim-mpirun-np2-zero1" "$e" "$z" <<'PYEOF' 2>&1
import json, re, sys
a, b, ea, eb = sys.argv[1:]
assert json.load(open(f"{b}/config.json"))["zero1"] == 1
sft = lambda f: [l.split(" lr ")[0] for l in open(f) if l.startswith("sft: step")]
assert sft(ea) and sft(ea) == sft(eb), (sft(ea), sft(eb))
ga = [json.loads(l)["grad_norm"] for l in open(f"{a}/metrics.jsonl")]
gb = [json.loads(l)["grad_norm"] for l in open(f"{b}/metrics.jsonl")]
assert len(ga) == len(gb) and all(abs(x - y) <= 1e-5 * max(abs(x), 1e-12) for x, y in zip(ga, gb)), (ga, gb)
m = re.search(r"ZeRO-1: each rank keeps the fp32 masters and AdamW moments of (\d+) of (\d+) parameters", open(eb).read())
assert m and int(m.group(1)) % 256 == 0 and 2 * int(m.group(1)) >= int(m.group(2)) > int(m.group(1)), "no or a wrong ZeRO-1 line"
print(f"{len(sft(eb))} SFT losses and grad norms {gb} as without, moments of {m.group(1)} of {m.group(2)} parameters per rank")
PYEOF
)
        if [ $? != 0 ]; then
          echo "not ok - hostsim-mpirun-np2-zero1: $(tail -3 <<<"$msg" | tr '\n' ' ')"; fail=1
        else
          echo "ok - hostsim-mpirun-np2-zero1: $msg"
          if timeout 300 "${MPIRUN[@]}" -np 2 "$tmp/mbin/viv" train "${TINY[@]}" --zero1 --runs "$tmp/runs" \
               --name hostsim-mpirun-np2-zero1 --device cuda --steps 3 --resume >/dev/null 2>"$tmp/zresume.err" &&
             grep -q 'resuming from' "$tmp/zresume.err" &&
             [ "$(/usr/bin/python3 -c 'import json,sys; print([json.loads(l)["step"] for l in open(sys.argv[1])])' \
                  "$tmp/runs/hostsim-mpirun-np2-zero1/metrics.jsonl")" = "[1, 2, 3]" ]; then
            echo "ok - hostsim-mpirun-np2-zero1: --resume --zero1 over 2 ranks continues at step 3"
          else
            echo "not ok - hostsim-mpirun-np2-zero1: --resume: $(tail -3 "$tmp/zresume.err" | tr '\n' ' ')"; fail=1
          fi
        fi
      fi
      E2E_EXTRA=()
    fi
    # viv cuda train-bench --zero1 over 2 ranks (each rank its own random
    # tokens): every step's loss and grad norm as without --zero1
    cat >"$tmp/bench.json" <<'EOF'
{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 300, "hidden_size": 48,
 "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
 "head_dim": 32, "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
 "tie_word_embeddings": false, "torch_dtype": "float32"}
EOF
    for z in "" --zero1; do
      timeout 120 "${MPIRUN[@]}" -np 2 "$tmp/mbin/viv" cuda train-bench --config "$tmp/bench.json" --batch 2 --seq 32 \
        --steps 3 --lr 1e-2 $z >"$tmp/bench$z.out" 2>"$tmp/bench$z.err"
    done
    msg=$(/usr/bin/python3 - "$tmp/bench.out" "$tmp/bench--zero1.out" <<'PYEOF' 2>&1
import json, sys
a, b = ([json.loads(l) for l in open(f) if l.startswith("{")] for f in sys.argv[1:])
assert len(a) == len(b) == 3 and all(r["ranks"] == 2 for r in a + b), "not 3 steps over 2 ranks"
assert all(r["zero1_shard"] == 0 for r in a) and all(r["zero1_shard"] > 0 and r["zero1_shard"] % 256 == 0 for r in b)
for x, y in zip(a, b):
    assert abs(x["loss"] - y["loss"]) <= 1e-5 * x["loss"] and abs(x["grad_norm"] - y["grad_norm"]) <= 1e-4 * x["grad_norm"], (x, y)
print(f"losses {[r['loss'] for r in b]}, shards of {b[0]['zero1_shard']} of {b[0]['params']} parameters")
PYEOF
)
    if [ $? = 0 ]; then echo "ok - hostsim: mpirun -np 2 viv cuda train-bench --zero1 = without: $msg"
    else echo "not ok - hostsim: train-bench --zero1: $(tail -2 <<<"$msg" | tr '\n' ' ') $(tail -2 "$tmp/bench--zero1.err" | tr '\n' ' ')"; fail=1; fi
    # Not started by mpirun, the MPI build is a world of one and leaves MPI
    # alone: it runs even where MPI could not start (here: Open MPI pointed
    # at no components, where an MPI_Init aborts), as on a GPU box that got
    # only the binary.
    if OMPI_MCA_mca_base_component_path=/nonexistent timeout 120 "$tmp/mbin/viv" cuda train-bench \
         --config "$tmp/bench.json" --batch 2 --seq 32 --steps 1 >"$tmp/solo.out" 2>"$tmp/solo.err" &&
       grep -q '"ranks":1' "$tmp/solo.out"; then
      echo "ok - hostsim: the MPI build without mpirun is a world of one and never calls MPI_Init"
    else
      echo "not ok - hostsim: the MPI build without mpirun: $(tail -3 "$tmp/solo.err" | tr '\n' ' ')"; fail=1
    fi
  fi
elif ! command -v g++ >/dev/null && ! command -v clang++ >/dev/null; then
  echo "skip - hostsim trainer: no C++ compiler (g++ or clang++) to build it"
else
  echo "not ok - hostsim trainer: build/test/train_gpu_hostsim_tests, build/test/viv_hostsim or bin/vivd missing (make all tests)"; fail=1
fi

if [ ! -x "$NVCC" ]; then
  echo "skip - cuda build: no nvcc at $NVCC"
  exit $fail
fi

if make -s bin/viv-cuda build/test/gpu_tests build/test/train_gpu_tests build/test/train_dp_tests build/test/attn_bench \
     >"$tmp/make.log" 2>&1; then
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
  build/test/train_gpu_tests || fail=1
  check "viv-cuda train --device cuda without a GPU says so" 1 'no CUDA device' \
    bin/viv-cuda train --device cuda --data "$tmp/nodata"
  # MPI start-up and rank placement run up to the device check on every rank
  if command -v mpirun >/dev/null && bin/viv-cuda cuda info | grep -q 'MPI + NCCL): built in'; then
    check "mpirun -np 2 without a GPU: every rank says no CUDA device" 1 'rank 1: no CUDA device' \
      timeout 120 mpirun --allow-run-as-root --oversubscribe -np 2 bin/viv-cuda cuda train-bench \
      --config "$tmp/config.json" --steps 1 --zero1
  fi
  echo "skip - viv gen --device cuda matches --device cpu: no CUDA device ($why)"
  echo "skip - mpirun data-parallel training smoke run: no CUDA device ($why)"
  echo "skip - viv-cuda train --device cuda end to end: no CUDA device ($why)"
  echo "skip - mpirun viv-cuda train --device cuda (data parallel): no CUDA device ($why)"
  echo "skip - data parallel vs one rank on GPUs (train_dp_tests): no CUDA device ($why)"
  exit $fail
fi

# ---- with a GPU ----
build/test/gpu_tests || fail=1
# the attention benchmark's two paths run (their numbers are gpu_tests'
# attn_kernels test; the timings are test/bench/gpu.sh's)
check "attn_bench runs the CUDA-core and tensor-core attention" 0 'attention tc .*backward' \
  build/test/attn_bench 1 256 4 2 128 2
build/test/train_gpu_tests || fail=1
if [ "$ndev" -ge 2 ] && command -v mpirun >/dev/null && bin/viv-cuda cuda info | grep -q 'MPI + NCCL): built in'; then
  mpirun --allow-run-as-root --oversubscribe -np 2 build/test/train_dp_tests || fail=1
else
  echo "skip - data parallel vs one rank on GPUs (train_dp_tests): needs 2 GPUs and MPI + NCCL"
fi
if have_data && [ -x bin/vivd ]; then
  e2e_train viv-cuda-train "$PWD/bin/viv-cuda"
  if command -v mpirun >/dev/null && bin/viv-cuda cuda info | grep -q 'MPI + NCCL): built in'; then
    np=1; [ "$ndev" -ge 2 ] && np=2
    if e2e_train "mpirun-np$np" "$PWD/bin/viv-cuda" mpirun --allow-run-as-root --oversubscribe -np $np; then
      if grep -q "data parallel over $np ranks" "$tmp/mpirun-np$np.err"; then
        echo "ok - mpirun -np $np viv-cuda train --device cuda ran data parallel over $np ranks"
      else
        echo "not ok - mpirun -np $np viv-cuda train: no 'data parallel over $np ranks' line"; fail=1
      fi
    fi
  else
    echo "skip - mpirun viv-cuda train --device cuda: mpirun or MPI + NCCL not built in"
  fi
else
  echo "not ok - viv-cuda train --device cuda: no task data or bin/vivd"; fail=1
fi
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
  if [ "$np" = 2 ]; then # ZeRO-1 on two GPUs: shards of the moments, and the run completes
    out=$(mpirun --allow-run-as-root --oversubscribe -np 2 bin/viv-cuda cuda train-bench --config "$tmp/config.json" \
          --batch 2 --seq 64 --steps 3 --lr 1e-3 --zero1 2>&1)
    if [ $? = 0 ] && [ "$(grep -c '"zero1_shard":[1-9]' <<<"$out")" = 3 ]; then
      echo "ok - mpirun -np 2 train-bench --zero1"
    else
      echo "not ok - mpirun -np 2 train-bench --zero1: $(tail -3 <<<"$out" | tr '\n' ' ')"; fail=1
    fi
  fi
else
  echo "skip - mpirun data-parallel training smoke run: mpirun not installed (libopenmpi-dev / openmpi-bin)"
fi
exit $fail
