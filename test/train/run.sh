#!/usr/bin/env bash
# test/train/run.sh - the train suite (test/run.sh train):
#   train_tests        unit tests (SFT masks, env scoring, the generator, the GRPO update, NaN guard,
#                      the CPU backend of rl/backend.h against the plain model loop, --device)
#   e2e_*              bin/viv train end to end on a tiny config through a real private vivd:
#                      run files (JSON parsed, SVG parsed as XML, HF checkpoint read back),
#                      resume after SIGKILL (steps 1..N exactly once, same task draws as an
#                      uninterrupted run), injected NaN (skipped, restored, run completes)
# Needs `make all tests` and the task data (data/, or $VIV_TEST_DATA; built here if missing).
set -u
cd "$(dirname "$0")/../.."
rc=0
PY=/usr/bin/python3
if [ ! -x build/test/train_tests ]; then echo "not ok - train: build/test/train_tests is missing (make tests)"; exit 1; fi
build/test/train_tests || rc=1
if [ ! -x bin/viv ] || [ ! -x bin/vivd ]; then echo "not ok - train e2e: bin/viv or bin/vivd missing (make all)"; exit 1; fi

DATA=${VIV_TEST_DATA:-data}
if [ ! -f "$DATA/tasks/train.jsonl" ]; then
  bin/viv data build --out "$DATA" >/dev/null 2>&1 || { echo "not ok - train e2e: viv data build failed"; exit 1; }
fi
T=$(mktemp -d /tmp/viv-train-test-XXXXXX)
chmod 755 "$T"
trap 'rm -rf "$T"' EXIT
TINY=(--data "$DATA" --runs "$T/runs" --train-limit 14 --eval-limit 7 --samples 2 --tasks-per-step 2 --group 2
      --sft-epochs 1 --max-turns 3 --max-turn-tokens 48 --max-context 1024 --vocab 400 --d-model 32 --layers 1
      --heads 2 --kv-heads 1 --head-dim 16 --ffn 64 --ckpt-every 1 --threads 1)

report() { # name status(0 ok) message
  if [ "$2" = 0 ]; then echo "ok - $1"; else echo "not ok - $1: $3"; rc=1; fi
}

# 1. a whole tiny run
if bin/viv train "${TINY[@]}" --name full --steps 4 >"$T/full.out" 2>"$T/full.err"; then
  msg=$($PY - "$T/runs/full" <<'PYEOF' 2>&1
import json, sys, os, struct, math
import xml.etree.ElementTree as ET
d = sys.argv[1]
cfg = json.load(open(f"{d}/config.json"))
assert cfg["steps"] == 4 and cfg["group"] == 2, cfg
lines = [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
assert [l["step"] for l in lines] == [1, 2, 3, 4], [l["step"] for l in lines]
for k in ("reward", "accuracy", "format_rate", "entropy", "kl", "clip_frac", "tokens", "episodes_per_s",
          "gen_s", "tool_wait_s", "nan_skipped", "tasks", "signal_frac"):
    assert k in lines[0], "metrics lack " + k
assert any(k.startswith("tool_ms_") for k in lines[0]), "no per-tool latency"
for st in ("before_sft", "after_sft", "after_rl"):
    e = json.load(open(f"{d}/eval_{st}.json"))
    assert e["overall"]["n"] == 7 and sum(r["n"] for r in e["per_task"]) == 7, e
    assert all(0 <= r["accuracy"] <= 1 and 0 <= r["format_rate"] <= 1 for r in e["per_task"])
    # the episodes behind each table: anyone can recompute the difference and its interval
    eps = [json.loads(l) for l in open(f"{d}/episodes_{st}.jsonl")]
    assert len(eps) == 7 and all({"instance_id", "task_name", "correct"} <= set(x) for x in eps), st
    assert abs(sum(x["correct"] for x in eps) / 7 - e["overall"]["accuracy"]) < 1e-9, st
# the scripted teacher's own accuracy on the same held-out tasks
te = json.load(open(f"{d}/eval_teacher.json"))
assert te["stage"] == "teacher" and te["overall"]["n"] == 7 and 0 <= te["overall"]["accuracy"] <= 1, te
for svg in ("reward.svg", "accuracy.svg", "eval.svg"):
    root = ET.parse(f"{d}/{svg}").getroot()
    assert root.tag.endswith("svg"), svg
for svg in ("reward.svg", "accuracy.svg"):
    assert ET.parse(f"{d}/{svg}").getroot().findall(".//{http://www.w3.org/2000/svg}polyline"), svg
# eval.svg: grouped bars per stage, named, with its n; a task keeps its colour across charts
import subprocess
chk = lambda *a: subprocess.run(["/usr/bin/python3", "test/rl/check_svg.py", *a], capture_output=True, text=True).stdout.strip()
tasks = [r["task"] for r in json.load(open(f"{d}/eval_before_sft.json"))["per_task"]]
out = chk("--bars", f"{d}/eval.svg", "base,after SFT,after RL", "7,7,7", ",".join(tasks + ["all"]))
assert out == "valid", "eval.svg: " + out
for other in ("reward.svg", "accuracy.svg"):
    out = chk("--same-colors", f"{d}/eval.svg", f"{d}/{other}")
    assert out == "valid", "eval.svg vs " + other + ": " + out
order = ["all"]
for l in lines:
    order += [t for t in l["tasks"] if t not in order]
out = chk(f"{d}/reward.svg", ",".join(order), "", "--smoothed", "--caption", "correctness (0-1) + format (0-1), so 0-2",
          "--caption", "rollout rewards are noisy")
assert out == "valid", "reward.svg: " + out
latest = open(f"{d}/checkpoints/latest").read().strip()
assert latest == "step-000004", latest
ck = f"{d}/checkpoints/{latest}"
for f in ("config.json", "model.safetensors", "tokenizer.json", "optimizer.bin", "state.json", "generation_config.json"):
    assert os.path.exists(f"{ck}/{f}"), f
assert json.load(open(f"{ck}/state.json"))["step"] == 4
# the SFT model stays beside the latest; the steps between are gone
sft = f"{d}/checkpoints/step-000000"
assert os.path.exists(f"{sft}/model.safetensors") and json.load(open(f"{sft}/state.json"))["step"] == 0
assert sorted(os.listdir(f"{d}/checkpoints")) == ["latest", "step-000000", "step-000004"], os.listdir(f"{d}/checkpoints")
hf = json.load(open(f"{ck}/config.json"))
assert hf["hidden_size"] == 32 and hf["num_hidden_layers"] == 1, hf
raw = open(f"{ck}/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
tot = 0
for name, t in hdr.items():
    if name == "__metadata__": continue
    assert t["dtype"] == "F32"
    a, b = t["data_offsets"]
    vals = struct.unpack(f"<{(b - a) // 4}f", raw[8 + n + a:8 + n + b])
    assert all(math.isfinite(v) for v in vals), name
    tot += len(vals)
assert tot > 10000, tot
assert not [x for x in os.listdir(f"{d}/checkpoints") if x.endswith(".tmp")], "temp dir left"
print("fine")
PYEOF
)
  [ "$msg" = fine ]; report e2e_tiny_run_files $? "$msg"
  grep -q "after_rl" "$T/full.out" && grep -q "^all " "$T/full.out" && grep -q "RL - SFT \[95% CI\]" "$T/full.out" &&
    grep -q "teacher" "$T/full.out" && grep -Eq "^all .* [+-][0-9.]+ \[[+-][0-9.]+, [+-][0-9.]+\]" "$T/full.out"
  report e2e_table_printed $? "no table with the difference, its interval and the teacher on stdout: $(head -c 600 "$T/full.out")"
else
  report e2e_tiny_run_files 1 "viv train failed: $(tail -5 "$T/full.err")"
fi

# 2. resume after SIGKILL: steps 1..N once each, the same task draws as run 1
bin/viv train "${TINY[@]}" --name killed --steps 4 >"$T/k1.out" 2>"$T/k1.err" &
pid=$!
for _ in $(seq 1 3000); do
  n=$(cat "$T/runs/killed/metrics.jsonl" 2>/dev/null | wc -l)
  [ "$n" -ge 2 ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.02
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
before=$(cat "$T/runs/killed/metrics.jsonl" 2>/dev/null | wc -l)
if [ -f "$T/runs/killed/eval_after_rl.json" ]; then
  report e2e_resume_after_kill 1 "the run finished before the kill landed (cannot test resume)"
elif bin/viv train "${TINY[@]}" --name killed --steps 4 --resume >"$T/k2.out" 2>"$T/k2.err"; then
  msg=$($PY - "$T/runs/killed" "$T/runs/full" "$before" <<'PYEOF' 2>&1
import json, sys
k = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
f = [json.loads(l) for l in open(sys.argv[2] + "/metrics.jsonl")]
steps = [l["step"] for l in k]
assert steps == [1, 2, 3, 4], f"steps after resume: {steps} (killed run had logged {sys.argv[3]} lines)"
for a, b in zip(k, f):
    ta = sorted((t, v["n"]) for t, v in a["tasks"].items())
    tb = sorted((t, v["n"]) for t, v in b["tasks"].items())
    assert ta == tb, f"step {a['step']}: tasks {ta} vs uninterrupted {tb}"
print("fine")
PYEOF
)
  [ "$msg" = fine ] && grep -q "resuming from" "$T/k2.err"; report e2e_resume_after_kill $? "$msg $(grep -m1 resum "$T/k2.err")"
else
  report e2e_resume_after_kill 1 "resume failed: $(tail -3 "$T/k2.err")"
fi

# 3. NaN injected into the weights before step 2's update: skipped, restored, run completes;
# with dynamic sampling: a step whose first groups all had signal samples 2 tasks x 2, and one
# that had a group without rolls out more tasks (refills), every episode counted
if bin/viv train "${TINY[@]}" --name nan --steps 3 --inject-nan-step 2 --dynamic-sampling >"$T/n.out" 2>"$T/n.err"; then
  msg=$($PY - "$T/runs/nan" <<'PYEOF' 2>&1
import json, sys, math
k = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
assert [l["nan_skipped"] for l in k] == [0, 1, 0], [l["nan_skipped"] for l in k]
assert math.isfinite(k[2]["loss"]) and math.isfinite(k[2]["grad_norm"]), k[2]
for l in k:
    assert (l["signal_frac"] == 1) == (l["episodes"] == 4) and l["episodes"] in (4, 6, 8, 10, 12), (l["signal_frac"], l["episodes"])
print("fine")
PYEOF
)
  [ "$msg" = fine ] && grep -q "NaN/inf" "$T/n.err" && grep -q "restored" "$T/n.err"
  report e2e_nan_restored $? "$msg $(grep -m1 NaN "$T/n.err")"
else
  report e2e_nan_restored 1 "run failed: $(tail -3 "$T/n.err")"
fi

# 4. viv sft alone, then viv train --model on its checkpoint (an HF directory) without SFT,
#    with the entropy bonus on
if bin/viv sft "${TINY[@]}" --name sftonly >"$T/s.out" 2>"$T/s.err" &&
   [ -f "$T/runs/sftonly/checkpoints/step-000000/model.safetensors" ] &&
   [ -f "$T/runs/sftonly/checkpoints/step-000000/tokenizer.json" ] &&
   bin/viv train "${TINY[@]}" --name frommodel --model "$T/runs/sftonly/checkpoints/step-000000" --no-sft --steps 1 \
     --entropy 0.01 --no-mask-overlong >"$T/m.out" 2>"$T/m.err"; then
  msg=$($PY - "$T/runs/sftonly" "$T/runs/frommodel" <<'PYEOF' 2>&1
import json, sys
a = json.load(open(sys.argv[1] + "/eval_after_sft.json"))
b = json.load(open(sys.argv[2] + "/eval_after_sft.json"))
# the same weights, greedy decoding: the same table
assert a["per_task"] == b["per_task"], (a["per_task"], b["per_task"])
lines = [json.loads(l) for l in open(sys.argv[2] + "/metrics.jsonl")]
assert [l["step"] for l in lines] == [1]
# this run trains with the entropy bonus (CPU): recorded, and the step is finite
assert json.load(open(sys.argv[2] + "/config.json"))["entropy_coef"] == 0.01
assert lines[0]["nan_skipped"] == 0 and lines[0]["entropy"] > 0, lines[0]
print("fine")
PYEOF
)
  [ "$msg" = fine ]; report e2e_sft_then_train_from_model $? "$msg"
else
  report e2e_sft_then_train_from_model 1 "$(tail -3 "$T/s.err" "$T/m.err" 2>/dev/null)"
fi

# 4b. SFT's checks: greedy episodes on train tasks SFT does not see, every N steps but the
#     last, from the end of the first epoch on, one line each in sft_checks.jsonl and sft.svg
if bin/viv sft "${TINY[@]}" --name checks --sft-tasks 8 --sft-batch 2 --sft-epochs 3 --sft-check-every 1 --sft-check-tasks 3 \
     >"$T/c.out" 2>"$T/c.err"; then
  msg=$($PY - "$T/runs/checks" <<'PYEOF' 2>&1
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1] + "/sft_checks.jsonl")]
steps = [l["step"] for l in lines]
# from the end of the first epoch (steps[0] steps each) to the step before the last
assert len(steps) >= 2 and steps == list(range(steps[0], 3 * steps[0])), steps
for l in lines:
    assert l["tasks"] == 3 and 0 <= l["accuracy"] <= 1 and 0 <= l["format_rate"] <= 1 and l["seconds"] >= 0, l
assert json.load(open(sys.argv[1] + "/config.json"))["sft_check_every"] == 1
import xml.etree.ElementTree as ET
svg = ET.parse(sys.argv[1] + "/sft.svg").getroot()
assert svg.tag.endswith("svg") and any((e.text or "") == "SFT's checks" for e in svg.iter()), "no title"
print("fine")
PYEOF
)
  [ "$msg" = fine ] && grep -q "sft: check at step [0-9]*: accuracy" "$T/c.err"; report e2e_sft_checks $? "$msg"
else
  report e2e_sft_checks 1 "$(tail -3 "$T/c.err")"
fi

# 5. the KL term: with --kl, the policy's divergence from the frozen reference (the model GRPO
#    started from) is measured and moves off 0 once updates move the policy; without it, nothing
#    is measured (no reference is kept). The untrained tiny model earns equal rewards (advantages
#    0), so the entropy bonus is what moves it; unmasked so its tokens count.
if bin/viv train "${TINY[@]}" --name kl --steps 3 --kl 0.5 --entropy 0.5 --lr 2e-2 --no-mask-overlong \
     >"$T/kl.out" 2>"$T/kl.err" &&
   bin/viv train "${TINY[@]}" --name nokl --steps 2 --entropy 0.5 --lr 2e-2 --no-mask-overlong \
     >"$T/nokl.out" 2>"$T/nokl.err"; then
  msg=$($PY - "$T/runs/kl" "$T/runs/nokl" <<'PYEOF' 2>&1
import json, sys, math
k = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
n = [json.loads(l) for l in open(sys.argv[2] + "/metrics.jsonl")]
assert json.load(open(sys.argv[1] + "/config.json"))["kl_coef"] == 0.5
assert all(math.isfinite(l["kl"]) and l["kl"] >= 0 for l in k), [l["kl"] for l in k]
assert max(l["kl"] for l in k) > 1e-4, "KL never moved off 0: %s" % [l["kl"] for l in k]
assert all(l["kl"] == 0 for l in n), [l["kl"] for l in n]
print("fine")
PYEOF
)
  [ "$msg" = fine ]; report e2e_kl_to_reference $? "$msg"
else
  report e2e_kl_to_reference 1 "run failed: $(tail -3 "$T/kl.err" "$T/nokl.err")"
fi

# 6. bad input: clear errors, no crash
bin/viv train --steps -1 >/dev/null 2>"$T/bad.err"; s=$?
[ $s = 2 ] && grep -q "steps" "$T/bad.err"; report cli_bad_option $? "exit $s: $(cat "$T/bad.err")"
bin/viv sft --teacher http://127.0.0.1:9/v1 >/dev/null 2>"$T/bad.err"; s=$?
[ $s = 2 ] && grep -q "needs --teacher-model" "$T/bad.err"; report cli_endpoint_teacher_needs_model $? "exit $s: $(cat "$T/bad.err")"
bin/viv sft "${TINY[@]}" --name nocheck --sft-until 0.5 >/dev/null 2>"$T/bad.err"; s=$?
[ $s = 2 ] && grep -q "leaves none of the 14" "$T/bad.err" && [ ! -d "$T/runs/nocheck/checkpoints" ]
report cli_sft_until_needs_unseen_tasks $? "exit $s: $(cat "$T/bad.err")"
exit $rc
