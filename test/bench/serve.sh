#!/usr/bin/env bash
# test/bench/serve.sh - what `viv serve` costs over `viv gen` on the same
# checkpoint and prompt (a model of viv train's default shape, random weights
# saved by viv sft with lr 0; one CPU thread each, so the two compare):
#   gen           viv gen: decode tokens/s for N tokens (its own timing line)
#   serve         POST /v1/chat/completions, non-streamed, N tokens: tokens/s
#                 over the whole HTTP round trip (template, tokenising, JSON)
#   stream        the same streamed: time to the first content chunk, tokens/s
#   overhead      max_tokens 1: median round trip of 50 requests (HTTP, JSON,
#                 chat template, prefill of the short prompt, one token)
#   concurrent    4 clients at once, N tokens each: total tokens/s, one request at a
#                 time (the default) and with --batch 4 (continuous batching)
# Results: a table on stdout and build/bench/serve.jsonl.
#
#   test/bench/serve.sh [N]     (default 256; needs make all and the task data)
#   SHAPE="--d-model 256 --layers 4 ..." test/bench/serve.sh   another model shape (viv sft's options)
set -uo pipefail
cd "$(dirname "$0")/../.."
N=${1:-256}
DATA=${VIV_TEST_DATA:-data}
T=$(mktemp -d /tmp/viv-serve-bench-XXXXXX)
chmod 755 "$T"
SERVE=
trap '[ -n "$SERVE" ] && kill $SERVE 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT  # $SERVE: our two pids
mkdir -p build/bench

bin/viv sft --data "$DATA" --runs "$T/runs" --name m --train-limit 8 --eval-limit 1 --samples 1 --sft-epochs 1 \
  --sft-lr 0 --max-context 4096 --threads 1 ${SHAPE:-} >/dev/null 2>"$T/sft.err" || { tail -3 "$T/sft.err"; exit 1; }
M=$T/runs/m/checkpoints/step-000000
PROMPT="Which gene on chromosome 5 is annotated to neuron migration?"
CHAT=$(printf '<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\nx' "$PROMPT")
CHAT=${CHAT%x}
bin/viv gen --model "$M" --prompt "$CHAT" --max-tokens "$N" --temperature 0 --threads 1 >/dev/null 2>"$T/gen.err"
GEN_TPS=$(sed -n 's/.*generated, \([0-9.]*\) tokens\/s decode.*/\1/p' "$T/gen.err")

bin/viv serve --model "$M" --port 0 --threads 1 >"$T/serve.out" 2>"$T/serve.err" &
SERVE=$!
bin/viv serve --model "$M" --port 0 --threads 1 --batch 4 >"$T/bserve.out" 2>"$T/bserve.err" &
SERVE="$SERVE $!"
PORT= BPORT=
for _ in $(seq 1 200); do
  PORT=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$T/serve.out" 2>/dev/null)
  BPORT=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$T/bserve.out" 2>/dev/null)
  [ -n "$PORT" ] && [ -n "$BPORT" ] && break
  sleep 0.05
done
[ -n "$PORT" ] && [ -n "$BPORT" ] || { cat "$T/serve.err" "$T/bserve.err"; exit 1; }

SHAPE=${SHAPE:-} python3 - "http://127.0.0.1:$PORT" "$N" "$PROMPT" "${GEN_TPS:-0}" "http://127.0.0.1:$BPORT" <<'PYEOF' | tee -a build/bench/serve.jsonl
import http.client, json, os, statistics, sys, threading, time
base, N, prompt, gen_tps, bbase = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
def post(body, stream=False, base=base):
    host, port = base[7:].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=600)
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    return c, c.getresponse()
req = {"messages": [{"role": "user", "content": prompt}], "max_tokens": N, "temperature": 0}
def one(base=base):
    t0 = time.perf_counter()
    c, r = post(req, base=base)
    j = json.loads(r.read())
    c.close()
    return j["usage"]["completion_tokens"], time.perf_counter() - t0
one()  # warm
runs = [one() for _ in range(3)]
serve_tps = sum(n for n, _ in runs) / sum(t for _, t in runs)
t0 = time.perf_counter()
c, r = post({**req, "stream": True, "stream_options": {"include_usage": True}})
first, toks = None, 0
buf = b""
while True:
    chunk = r.read1(65536)
    if not chunk:
        break
    buf += chunk
    if first is None and b'"content":"' in buf and buf.count(b"data: ") >= 2:
        first = time.perf_counter() - t0
stream_s = time.perf_counter() - t0
for ev in buf.split(b"\n\n"):
    if ev.startswith(b"data: {"):
        j = json.loads(ev[6:])
        if j.get("usage"):
            toks = j["usage"]["completion_tokens"]
c.close()
lat = []
for _ in range(50):
    t = time.perf_counter()
    c, r = post({**req, "max_tokens": 1})
    r.read()
    c.close()
    lat.append((time.perf_counter() - t) * 1000)
def concurrent(base):
    res = [None] * 4
    def worker(i):
        res[i] = one(base)
    one(base)  # warm
    t0 = time.perf_counter()
    th = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    [t.start() for t in th]
    [t.join() for t in th]
    return sum(n for n, _ in res) / (time.perf_counter() - t0)
conc_tps = concurrent(base)
bconc_tps = concurrent(bbase)
out = {"bench": "serve", "shape": os.environ.get("SHAPE") or "viv train default", "tokens": N, "gen_tok_s": gen_tps, "serve_tok_s": round(serve_tps, 1),
       "stream_first_chunk_ms": round((first or 0) * 1000, 1), "stream_tok_s": round(toks / stream_s, 1),
       "overhead_median_ms": round(statistics.median(lat), 2), "concurrent4_tok_s": round(conc_tps, 1),
       "concurrent4_batch4_tok_s": round(bconc_tps, 1)}
print(json.dumps(out))
print(f"# gen {gen_tps:.0f} tok/s | serve {serve_tps:.0f} tok/s | stream {toks / stream_s:.0f} tok/s, first chunk "
      f"{(first or 0) * 1000:.1f} ms | max_tokens=1 round trip median {statistics.median(lat):.2f} ms | "
      f"4 clients {conc_tps:.0f} tok/s, with --batch 4 {bconc_tps:.0f} tok/s", file=sys.stderr)
PYEOF
