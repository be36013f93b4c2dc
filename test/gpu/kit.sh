#!/usr/bin/env bash
# test/gpu/kit.sh - what issue 6 still needs from a GPU machine, packed on a
# build machine and run on the GPU machine in one command.
#
#   test/gpu/kit.sh pack          on a machine with nvcc and the build deps
#                                 (./build.sh's): builds the GPU binaries from
#                                 the working tree in a scratch copy and puts
#                                 them, with the shared libraries they load
#                                 except glibc's and CUDA's, under .gpukit/
#                                 (git ignores it; about 30 MB)
#   test/gpu/kit.sh run [OUTDIR]  on the GPU machine (a CUDA driver, python3
#                                 with torch + transformers for the reference
#                                 and the PyTorch side of the benchmark):
#                                 finds cuBLASLt there, runs the steps below
#                                 within KIT_BUDGET seconds in all (default
#                                 510: a device call may last 600 s), each
#                                 under its own cap, and writes kit.log, one
#                                 log per step and gpu.jsonl to OUTDIR ($OUT
#                                 if set, else build/kit-out) as it goes, so
#                                 a cut-off run still returns what it did
#   test/gpu/kit.sh check         the packed binaries load with nothing but
#                                 glibc, the kit's libraries and cuBLASLt
#                                 (a chroot; run where it was packed)
#
# The steps of `run`, in order of what they settle (cap in seconds; a step
# gets less when the budget runs short, and none under 20 s left):
#   info           20  the device, as bin/viv-cuda sees it
#   gpu_tests     150  CPU vs CUDA: logits, every gradient, AdamW, KV decode,
#                      generation, memory plan, both attention paths vs fp64
#   transformers   90  test/gpu/check_transformers.sh: Hugging Face
#                      transformers as the reference, both ways
#   bench         150  test/bench/gpu.sh: training tokens/s and MFU on the
#                      Qwen3-0.6B shape next to PyTorch (and with the
#                      CUDA-core attention), decode of 256 sequences, the
#                      attention kernels alone
#   train_tests   120  the trainer on the CUDA backend vs the CPU backend
#   access         90  where Nsight Compute (ncu) reads counters: global
#                      sectors and shared-memory passes per kernel of one
#                      training step on a Qwen3-0.6B layer, next to what
#                      kemu's access profile counted for the same step at
#                      pack time (test/gpu/access_vs_ncu.py)
#   memcheck      the rest: compute-sanitizer over gpu_tests, where the tool works
# Binaries are built without MPI (a one-GPU machine runs one rank, and its
# image need not have Open MPI); data parallel stays verified over hostsim.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
kit=${GPUKIT:-$root/.gpukit} # GPUKIT: another place (the tests pack into a temporary one)
BINS=(bin/viv-cuda build/test/gpu_tests build/test/train_gpu_tests build/test/attn_bench)
# the step whose memory accesses kemu counts at pack time and ncu on the GPU
ACCESS_STEP="cuda train-bench --config test/gpu/kemu/qwen3_layer.json --batch 1 --seq 128 --steps 1"
ACCESS_METRICS=l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum,l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum,\
l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum

# ---- pack ------------------------------------------------------------------------------
# glibc's own libraries and the CUDA driver/toolkit stay the GPU machine's
is_system_lib() {
  case "$(basename "$1")" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libresolv.so.*|libutil.so.*|ld-linux*) return 0 ;;
    libcuda.so*|libcudart.so*|libcublas*|libnccl.so*|libnvidia*) return 0 ;;
  esac
  return 1
}

pack() {
  command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || { echo "kit pack: nvcc missing" >&2; return 2; }
  local src
  src=$(mktemp -d)
  trap 'rm -rf "$src"' RETURN
  # the working tree as it is (tracked files, edits included), built apart
  # so the repo's own build/ and bin/ keep their MPI-enabled binaries
  (cd "$root" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$src" || return 1
  [ -d "$root/.deps" ] && ln -s "$root/.deps" "$src/.deps"
  echo "kit pack: building in $src (no MPI) ..."
  if ! (cd "$src" && make -s -j"$(nproc)" MUSL="$root/.deps/musl" VIV_DIST=0 cuda >"$src/make.log" 2>&1); then
    tail -20 "$src/make.log" >&2
    echo "kit pack: the build failed" >&2
    return 1
  fi
  rm -rf "$kit"
  mkdir -p "$kit/real" "$kit/lib" "$kit/bin"
  local b lib
  for b in "${BINS[@]}"; do
    [ -x "$src/$b" ] || { echo "kit pack: $b was not built" >&2; return 1; }
    cp "$src/$b" "$kit/real/"
    # a wrapper: the kit's libraries for this binary only (python3 and the
    # rest of the machine keep theirs), cuBLASLt from where `run` found it
    cat >"$kit/bin/$(basename "$b")" <<EOF
#!/bin/sh
kit=\$(cd "\$(dirname "\$0")/.." && pwd)
LD_LIBRARY_PATH="\$kit/lib\${VIV_CUDA_LIB:+:\$VIV_CUDA_LIB}" exec "\$kit/real/$(basename "$b")" "\$@"
EOF
    chmod +x "$kit/bin/$(basename "$b")"
    for lib in $(ldd "$src/$b" | awk '/=> \// {print $3}'); do
      is_system_lib "$lib" || cp -nL "$lib" "$kit/lib/"
    done
  done
  # kemu's access profile of the step the access step runs under ncu
  # (KIT_NO_ACCESS=1 leaves it out: it takes a minute or two of CPU)
  if [ "${KIT_NO_ACCESS:-0}" != 1 ]; then
    echo "kit pack: kemu's access profile of one training step (for the ncu comparison) ..."
    if ! (cd "$root" && make -s build/test/viv_kemu_prof >"$src/kemu.log" 2>&1 &&
          KEMU_PROF="$kit/access-kemu.jsonl" build/test/viv_kemu_prof $ACCESS_STEP >>"$src/kemu.log" 2>&1); then
      tail -5 "$src/kemu.log" >&2
      echo "kit pack: the access profile failed" >&2
      return 1
    fi
  fi
  {
    echo "packed $(date -u +%FT%TZ) from $(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && git diff --quiet HEAD || echo '+edits')"
    echo "nvcc: $("$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" --version | tail -1)"
    echo "binaries: ${BINS[*]}"
    echo "libraries: $(cd "$kit/lib" && ls | tr '\n' ' ')"
  } >"$kit/MANIFEST"
  cat "$kit/MANIFEST"
  echo "kit pack: $(du -sh "$kit" | cut -f1) in .gpukit; on the GPU machine: test/gpu/kit.sh run"
}

# ---- check -----------------------------------------------------------------------------
# Each packed binary in a chroot holding only glibc, the kit and cuBLASLt
# (bind-mounted): a library the kit forgot fails the load.
check() {
  [ -d "$kit/real" ] || { echo "kit check: no kit (test/gpu/kit.sh pack)" >&2; return 2; }
  local r lib rc=0 cu=/usr/local/cuda/lib64
  r=$(mktemp -d)
  mkdir -p "$r/lib64" "$r/lib/x86_64-linux-gnu" "$r/kit" "$r/cuda" "$r/tmp"
  for lib in /lib64/ld-linux-x86-64.so.2 /lib/x86_64-linux-gnu/{libc,libm,libpthread,libdl,librt,libresolv}.so.*; do
    [ -e "$lib" ] && cp -L "$lib" "$r$lib"
  done
  cp -a "$kit/real" "$kit/lib" "$r/kit/"
  if ! mount --bind "$cu" "$r/cuda" 2>/dev/null; then
    echo "skip - kit check: cannot bind-mount $cu (needs root)"
    rm -rf "$r"
    return 0
  fi
  for b in "$r"/kit/real/*; do
    local n out
    n=$(basename "$b")
    out=$(LD_LIBRARY_PATH=/kit/lib:/cuda chroot "$r" "/kit/real/$n" --help 2>&1 | head -3)
    if grep -q "error while loading shared libraries" <<<"$out"; then
      echo "not ok - kit check: $n: $out"; rc=1
    else
      echo "ok - kit check: $n loads with glibc, the kit and cuBLASLt alone"
    fi
  done
  umount "$r/cuda"
  rm -rf "$r"
  return $rc
}

# ---- run -------------------------------------------------------------------------------
find_cublaslt() {
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
    [ -e "$d/libcublasLt.so.13" ] && { echo "$d"; return 0; }
  done
  # pip's nvidia wheels (PyTorch's own cuBLAS)
  d=$(find /opt /usr/local /usr/lib /root 2>/dev/null -name 'libcublasLt.so.13' -print -quit)
  [ -n "$d" ] && dirname "$d"
}

run() {
  local out=${1:-${OUT:-$root/build/kit-out}}
  [ -d "$kit/bin" ] || { echo "kit run: no .gpukit (test/gpu/kit.sh pack, then carry .gpukit)" >&2; return 2; }
  mkdir -p "$out"
  VIV_CUDA_LIB=$(find_cublaslt)
  export VIV_CUDA_LIB
  local log=$out/kit.log
  {
    echo "kit run $(date -u +%FT%TZ) on $(hostname)"
    cat "$kit/MANIFEST"
    echo "cuBLASLt: ${VIV_CUDA_LIB:-not found}"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' 2>&1 | tail -1
  } | tee "$log"
  local B=$kit/bin budget=${KIT_BUDGET:-510} t_start=$SECONDS
  step() { # name cap command...: runs under min(cap, what the budget has left)
    local name=$1 cap=$2
    shift 2
    local left=$((budget - (SECONDS - t_start))) t0=$SECONDS rc
    [ "$left" -lt "$cap" ] && cap=$left
    if [ "$cap" -lt 20 ]; then
      echo "== $name: not run, ${left} s of the ${budget} s budget left" | tee -a "$log"
      return
    fi
    timeout "$cap" "$@" >"$out/$name.log" 2>&1
    rc=$?
    [ $rc = 124 ] && echo "kit: $name stopped at its ${cap} s limit" >>"$out/$name.log"
    { echo "== $name: exit $rc in $((SECONDS - t0)) s"; grep -E '^(ok|not ok|skip) - |passed|failed|tokens/s|MFU|decode|results|stopped at|ncu/kemu| sectors | passes ' "$out/$name.log" | head -60; } | tee -a "$log"
  }
  cd "$root" || return 1
  step info 20 "$B/viv-cuda" cuda info
  step gpu_tests 150 "$B/gpu_tests"
  step transformers 90 env VIV="$B/viv-cuda" test/gpu/check_transformers.sh
  step bench 150 env VIV="$B/viv-cuda" ATTN_BENCH="$B/attn_bench" GPU_BENCH_OUT="$out/gpu.jsonl" test/bench/gpu.sh 4 2048 10
  step train_tests 120 "$B/train_gpu_tests"
  if command -v ncu >/dev/null && [ -s "$kit/access-kemu.jsonl" ]; then
    # our kernels only (not cuBLASLt's; a template kernel's name starts "void "), clocks left alone
    step access 90 bash -c 'ncu --clock-control none --csv --page raw --log-file "$2/ncu.log" --metrics "$3" \
      --kernel-name "regex:(attn_|rmsnorm_|headnorm_|swiglu_|xent_|embed_|adamw_|sumsq_|f32_to_bf16)" \
      "$1" $4 >"$2/ncu.csv" && python3 test/gpu/access_vs_ncu.py "$5" "$2/ncu.csv" "$2/access_vs_ncu.jsonl"' \
      _ "$B/viv-cuda" "$out" "$ACCESS_METRICS" "$ACCESS_STEP" "$kit/access-kemu.jsonl"
  else
    echo "== access: no ncu, or no kemu profile in the kit" | tee -a "$log"
  fi
  if command -v compute-sanitizer >/dev/null; then # the wrapper's child is the test binary
    step memcheck 600 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 3 "$B/gpu_tests"
  else
    echo "== memcheck: no compute-sanitizer" | tee -a "$log"
  fi
  echo "kit run: logs in $out ($((SECONDS - t_start)) s)" | tee -a "$log"
}

case "${1:-}" in
  pack) pack ;;
  check) check ;;
  run) shift; run "$@" ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
