#!/usr/bin/env bash
# test/bench/kernel_access.sh - how the CUDA kernels' memory accesses would
# reach a GPU's memory system, counted off the GPU by kemu's access profile
# (test/gpu/kemu/prof.h): per kernel, the global bytes its warps ask for
# against the 32-byte sectors they move, and the shared-memory passes
# (wavefronts) against the fewest their bytes need (bank conflicts).
# Nothing here is a time: it says where a kernel moves or waits for more
# than its data needs, which a GPU profile would show as uncoalesced
# accesses and bank conflicts.
#
# Three runs of build/test/viv_kemu_prof (viv over the profiled kernels) on
# one Qwen3-0.6B layer (hidden 1024, 16 query / 8 kv heads of 128, MLP 3072;
# vocab 2048 to keep the CPU time down):
#   train       one training step (forward, backward, AdamW), B x T = 1 x 128,
#               tensor-core attention (attention_tc.cu)
#   train_warp  the same with VIV_ATTN=warp (attention.cu's kernels)
#   decode      decode-bench: 8 sequences, 64-token prompts, 4 decode steps
#               (prefill and decode go through attn_decode_kernel)
# With --base REV the same runs are made with the kernels (model/cuda) as
# they were at REV, built in a temporary git worktree with this tree's
# profile machinery (test/gpu/kemu, test/gpu/hostsim, cuda.mk), and the
# table compares the two side by side.
#
# Results: tables on stdout; build/bench/kernel_access.jsonl, one line per
# (run, kernel, site) with "rev" (HEAD or the base) and "run".
#
#   test/bench/kernel_access.sh [--base REV]     (about 4 minutes a revision on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
base=
case "${1:-}" in
  --base) base=$(git rev-parse --verify -q --short "${2:?--base needs a revision}^{commit}") \
            || { echo "kernel_access.sh: no such revision: $2" >&2; exit 2; } ;;
  "") ;;
  *) echo "usage: test/bench/kernel_access.sh [--base REV]" >&2; exit 2 ;;
esac
make -s build/test/viv_kemu_prof >/dev/null || { echo "kernel_access.sh: make build/test/viv_kemu_prof failed" >&2; exit 2; }
out=build/bench
mkdir -p "$out"
tmp=$(mktemp -d)
wt=
cleanup() { [ -n "$wt" ] && git worktree remove --force "$wt" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
# one Qwen3-0.6B layer; test/gpu/kit.sh compares the same step with ncu on a GPU
cp test/gpu/kemu/qwen3_layer.json "$tmp/config.json"

profile() { # label, viv binary: the three runs into $tmp/<label>.jsonl
  local label=$1 viv=$2 run
  : >"$tmp/$label.jsonl"
  for run in train train_warp decode; do
    echo "== $label: $run" >&2
    local env=(KEMU_PROF="$tmp/$label-$run.jsonl") args
    case $run in
      train) args=(cuda train-bench --config "$tmp/config.json" --batch 1 --seq 128 --steps 1) ;;
      train_warp) env+=(VIV_ATTN=warp); args=(cuda train-bench --config "$tmp/config.json" --batch 1 --seq 128 --steps 1) ;;
      decode) args=(cuda decode-bench --config "$tmp/config.json" --seqs 8 --prompt 64 --gen 4) ;;
    esac
    env "${env[@]}" "$viv" "${args[@]}" >/dev/null 2>"$tmp/$label-$run.err" \
      || { echo "kernel_access.sh: $label $run failed:" >&2; tail -5 "$tmp/$label-$run.err" >&2; exit 1; }
    sed "s/^{/{\"rev\":\"$label\",\"run\":\"$run\",/" "$tmp/$label-$run.jsonl" >>"$tmp/$label.jsonl"
  done
}

profile HEAD build/test/viv_kemu_prof
labels=(HEAD)
if [ -n "$base" ]; then
  wt=$tmp/base
  git worktree add -q --detach "$wt" "$base"
  # the kernels and the host code as they were at $base; the profile as it is here
  rm -rf "$wt/test/gpu/kemu" "$wt/test/gpu/hostsim"
  cp -r test/gpu/kemu test/gpu/hostsim "$wt/test/gpu/"
  cp model/cuda/cuda.mk "$wt/model/cuda/cuda.mk"
  ln -s "$PWD/.deps" "$wt/.deps"
  make -s -C "$wt" -j2 build/test/viv_kemu_prof >"$tmp/base-build.log" 2>&1 \
    || { echo "kernel_access.sh: building the profile at $base failed:" >&2; tail -20 "$tmp/base-build.log" >&2; exit 1; }
  profile "$base" "$wt/build/test/viv_kemu_prof"
  labels+=("$base")
fi
: >"$out/kernel_access.jsonl.tmp"
for l in "${labels[@]}"; do cat "$tmp/$l.jsonl" >>"$out/kernel_access.jsonl.tmp"; done
mv "$out/kernel_access.jsonl.tmp" "$out/kernel_access.jsonl"

python3 - "$out/kernel_access.jsonl" "${labels[@]}" <<'PY'
import json, sys
from collections import defaultdict
path, labels = sys.argv[1], sys.argv[2:]
tot = defaultdict(lambda: [0, 0, 0, 0, 0])  # (rev, run, kernel) -> bytes, sectors, fewest sectors, passes, fewest
for line in open(path):
    r = json.loads(line)
    t = tot[(r["rev"], r["run"], r["kernel"])]
    if r["space"] == "global":
        t[0] += r["bytes"]; t[1] += r["sectors"]; t[2] += r["ideal"]
    else:
        t[3] += r["wavefronts"]; t[4] += r["ideal"]
for run in ("train", "train_warp", "decode"):
    kernels = sorted({k for (rev, rn, k) in tot if rn == run})
    print(f"\n{run}: global bytes moved (sectors x 32), sector efficiency (fewest sectors / sectors),"
          " shared passes / fewest (bank conflicts)")
    head = f"{'kernel':30}" + "".join(f" | {l[:12]:>12} moved  eff  conflict" for l in labels)
    print(head)
    for k in kernels:
        row = f"{k:30}"
        for l in labels:
            b, sec, fewest, w, i = tot.get((l, run, k), [0, 0, 0, 0, 0])
            eff = fewest / sec if sec else 0
            conf = w / i if i else 0
            row += f" | {32 * sec / 1e6:15.2f}M {eff:5.2f} {conf:8.2f}"
        print(row)
    for l in labels:
        b = sum(v[0] for (rev, rn, k), v in tot.items() if rev == l and rn == run)
        m = sum(32 * v[1] for (rev, rn, k), v in tot.items() if rev == l and rn == run)
        print(f"  {l}: all kernels {b / 1e6:.2f} MB asked, {m / 1e6:.2f} MB moved")
PY
echo "results: $out/kernel_access.jsonl"
