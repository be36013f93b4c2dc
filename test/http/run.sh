#!/usr/bin/env bash
# test/http/run.sh - the http suite (test/run.sh http): the OpenAI-compatible side.
#   client_*   rl/serve/openai_client.c (build/test/oai_request, ASan) against scripted servers
#              (test/http/fake_server.py): retries on 503 and connect errors, Retry-After,
#              timeouts, no retry on 401, URL forms, the bearer key from an env variable
#   serve_*    `viv serve` over a tiny checkpoint our code saved, driven by the official
#              `openai` npm client and by our libcurl client: texts equal `viv gen`'s for
#              the same prompt (greedy and seeded sampling, streamed or not, stop strings),
#              usage counts, /v1/models, OpenAI error objects, SIGTERM
#   eval_*     `viv eval --agent endpoint:URL` against a perfect scripted endpoint (accuracy
#              1.0, the cut stop strings restored) and against `viv serve`; --agent model:DIR
#   sft_*      `viv sft --teacher URL --teacher-model NAME` keeps the endpoint's solutions
#   fuzz_*     request bodies through the server's parser and the chat template (libFuzzer)
#   cli_*      bad port, missing model directory, bad URLs: a clear message, non-zero exit
# Needs `make all tests`, the task data (data/ or $VIV_TEST_DATA) and the npm packages of
# build.sh (.deps/npm, or $VIV_NPM_DIR). No network: every server is on 127.0.0.1.
set -u
cd "$(dirname "$0")/../.."
rc=0
PY=/usr/bin/python3
OAI=build/test/oai_request
FAKE=test/http/fake_server.py
DATA=${VIV_TEST_DATA:-data}
export NPM_DIR=${VIV_NPM_DIR:-$PWD/.deps/npm}

report() { # name status(0 ok) message
  if [ "$2" = 0 ]; then echo "ok - $1"; else echo "not ok - $1: $3"; rc=1; fi
}
for f in bin/viv bin/vivd $OAI; do
  [ -x "$f" ] || { echo "not ok - http: $f is missing (make all tests)"; exit 1; }
done
[ -f "$DATA/tasks/train.jsonl" ] || { echo "not ok - http: no task data in $DATA (viv data build)"; exit 1; }

T=$(mktemp -d /tmp/viv-http-test-XXXXXX)
chmod 755 "$T"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ -n "${VIV_HTTP_KEEP:-}" ]; then echo "# kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

# start_fake NAME MODE [TASKS]: a scripted server; sets FP (its port)
start_fake() {
  local name=$1; shift
  FAKE_LOG=$T/$name.log $PY $FAKE "$@" >"$T/$name.port" 2>"$T/$name.err" &
  PIDS+=($!)
  FP=
  for _ in $(seq 1 100); do
    FP=$(sed -n 's/^port //p' "$T/$name.port" 2>/dev/null)
    [ -n "$FP" ] && return 0
    sleep 0.05
  done
  echo "not ok - http: fake server $name did not start: $(cat "$T/$name.err")"; exit 1
}
# jget FILE EXPR: evaluate a Python expression over the JSON object j in FILE
jget() { $PY -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1" 2>&1; }

# ---- the client against scripted servers ------------------------------------------------------
start_fake flaky flaky
$OAI "http://127.0.0.1:$FP/v1" --retries 4 --backoff-ms 50 >"$T/c1.json"
msg=$(jget "$T/c1.json" "'fine' if j['ok'] and j['attempts'] == 3 and j['content'] == 'hello from fake' and j['prompt_tokens'] == 3 else j")
[ "$msg" = fine ] && [ "$(wc -l <"$T/flaky.log")" = 3 ]; report client_retries_503_twice_then_ok $? "$msg"

start_fake ra retry-after
$OAI "http://127.0.0.1:$FP" --retries 3 --backoff-ms 10 >"$T/c2.json"
msg=$(jget "$T/c2.json" "'fine' if j['ok'] and j['attempts'] == 2 and j['elapsed_ms'] >= 1000 else j")
[ "$msg" = fine ]; report client_honours_retry_after $? "$msg"

start_fake hang hang
$OAI "http://127.0.0.1:$FP" --retries 1 --backoff-ms 10 --timeout-ms 400 >"$T/c3.json"
s=$?
msg=$(jget "$T/c3.json" "'fine' if not j['ok'] and j['attempts'] == 2 and 'Timeout' in j['error'] and 'gave up after 2 attempts' in j['error'] and j['elapsed_ms'] < 5000 else j")
[ "$msg" = fine ] && [ $s = 1 ] && [ "$(wc -l <"$T/hang.log")" = 2 ]; report client_timeout_retried_then_fails $? "exit $s: $msg"

start_fake e401 401
$OAI "http://127.0.0.1:$FP/v1/" --retries 4 --backoff-ms 10 >"$T/c4.json"
msg=$(jget "$T/c4.json" "'fine' if not j['ok'] and j['attempts'] == 1 and j['status'] == 401 and 'HTTP 401: Incorrect API key provided' in j['error'] and '\n' not in j['error'] else j")
[ "$msg" = fine ]; report client_401_not_retried_one_line_error $? "$msg"

closed=$($PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1]); s.close()")
$OAI "http://127.0.0.1:$closed" --retries 2 --backoff-ms 20 >"$T/c5.json"
msg=$(jget "$T/c5.json" "'fine' if not j['ok'] and j['attempts'] == 3 and 'connect' in j['error'].lower() and 'gave up after 3 attempts' in j['error'] else j")
[ "$msg" = fine ]; report client_connect_refused_retried $? "$msg"

start_fake echo echo
VIV_TEST_KEY=sk-test-123 $OAI "http://127.0.0.1:$FP" --api-key-env VIV_TEST_KEY >"$T/c6.json"
env -u OPENAI_API_KEY $OAI "http://127.0.0.1:$FP/v1" >"$T/c7.json"
env -u VIV_UNSET_KEY $OAI "http://127.0.0.1:$FP/v1" --api-key-env VIV_UNSET_KEY >"$T/c8.json"
msg=$($PY - "$T" <<'PYEOF' 2>&1
import json, sys
d = sys.argv[1]
a, b, c = (json.load(open(f"{d}/c{i}.json")) for i in (6, 7, 8))
ea, eb = json.loads(a["content"]), json.loads(b["content"])
assert ea == {"path": "/v1/chat/completions", "auth": "Bearer sk-test-123"}, ea
assert eb == {"path": "/v1/chat/completions", "auth": None}, eb
assert not c["ok"] and "VIV_UNSET_KEY is not set" in c["error"] and c["attempts"] == 0, c
print("fine")
PYEOF
)
[ "$msg" = fine ]; report client_key_from_env_and_url_forms $? "$msg"

# ---- a tiny checkpoint saved by our code: viv sft with lr 0 keeps its random weights ------------
TINY=(--data "$DATA" --runs "$T/runs" --train-limit 4 --eval-limit 1 --samples 1 --sft-epochs 1 --sft-lr 0
      --max-turns 2 --max-turn-tokens 16 --max-context 2048 --vocab 400 --d-model 32 --layers 1 --heads 2
      --kv-heads 1 --head-dim 16 --ffn 64 --threads 1)
if ! bin/viv sft "${TINY[@]}" --name m >"$T/m.out" 2>"$T/m.err"; then
  echo "not ok - http: cannot make the tiny model: $(tail -3 "$T/m.err")"; exit 1
fi
M=$T/runs/m/checkpoints/step-000000

bin/viv serve --model "$M" --port 0 --threads 1 --name tiny >"$T/serve.out" 2>"$T/serve.err" &
SERVE=$!
PIDS+=($SERVE)
PORT=
for _ in $(seq 1 200); do
  PORT=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$T/serve.out" 2>/dev/null)
  [ -n "$PORT" ] && break
  sleep 0.05
done
[ -n "$PORT" ] || { echo "not ok - http: viv serve did not start: $(cat "$T/serve.err")"; exit 1; }
BASE=http://127.0.0.1:$PORT

# the oracle: viv gen on the chat template's text (seeded sampling, and greedy)
PROMPT="Name a gene that regulates neuron migration."
CHAT=$(printf '<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\nx' "$PROMPT")
CHAT=${CHAT%x} # $(...) drops trailing newlines; the template ends with one
NTOK=48
bin/viv gen --model "$M" --prompt "$CHAT" --max-tokens $NTOK --temperature 1 --seed 7 --threads 1 >"$T/gen.txt" 2>"$T/gen.err"
bin/viv gen --model "$M" --prompt "$CHAT" --max-tokens $NTOK --temperature 0 --threads 1 >"$T/greedy.txt" 2>"$T/greedy.err"
# the oracle's text as a JSON client sees it (invalid UTF-8 bytes become U+FFFD one each),
# without the newline viv gen ends with and an end-of-sequence token's text; a stop string
# from its middle
$PY - "$T" <<'PYEOF' >"$T/oracle.json" 2>"$T/oracle.err"
import json, re, sys
d = sys.argv[1]
def text(name):
    raw = open(f"{d}/{name}.txt", "rb").read()
    assert raw.endswith(b"\n")
    raw = raw[:-1]
    stopped = raw.endswith(b"<|im_end|>")
    if stopped: raw = raw[:-len(b"<|im_end|>")]
    s = raw.decode("utf-8", "surrogateescape")
    s = re.sub("[\udc80-\udcff]", "\ufffd", s)
    err = open(f"{d}/{name}.err").read()
    m = re.search(r"(\d+) prompt tokens.*?, (\d+) generated", err)
    return s, int(m.group(1)), int(m.group(2)), stopped
s, pt, ct, stopped = text("gen")
g, _, _, gstopped = text("greedy")
# a stop string: 2 characters from the middle of the sampled text (not U+FFFD)
stop = None
for i in range(len(s) // 3, len(s) - 2):
    if "\ufffd" not in s[i:i + 2] and s[i:i + 2].strip():
        stop = s[i:i + 2]
        break
assert stop, repr(s)
print(json.dumps({"text": s, "prompt_tokens": pt, "completion_tokens": ct, "stopped": stopped, "greedy": g,
                  "greedy_stopped": gstopped, "stop": stop, "before_stop": s[:s.index(stop)]}))
PYEOF
[ -s "$T/oracle.json" ] || { echo "not ok - http: the viv gen oracle failed: $(cat "$T/oracle.err" "$T/gen.err")"; exit 1; }
STOP=$(jget "$T/oracle.json" "j['stop']")

# the official openai client
if [ ! -f "$NPM_DIR/node_modules/openai/package.json" ] || ! command -v node >/dev/null; then
  report serve_openai_npm 1 "the openai npm package is missing in $NPM_DIR (./build.sh test installs it)"
elif timeout 120 node test/http/openai_npm.js "$BASE/v1" "$PROMPT" $NTOK 7 "$STOP" >"$T/npm.json" 2>"$T/npm.err"; then
  msg=$($PY - "$T" <<'PYEOF' 2>&1
import json, sys
d = sys.argv[1]
o, n = json.load(open(f"{d}/oracle.json")), json.load(open(f"{d}/npm.json"))
assert n["models"] == ["tiny"], n["models"]
ns = n["nonstream"]
assert ns["content"] == o["text"], ("non-streamed", ns["content"], o["text"])
assert ns["object"] == "chat.completion"
assert ns["finish_reason"] == ("stop" if o["stopped"] else "length"), ns["finish_reason"]
u = ns["usage"]
assert u["prompt_tokens"] == o["prompt_tokens"] and u["completion_tokens"] == o["completion_tokens"], (u, o)
assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
assert n["greedy"]["content"] == o["greedy"], ("greedy", n["greedy"]["content"], o["greedy"])
st = n["stream"]
assert st["content"] == o["text"], ("streamed", st["content"], o["text"])
assert st["chunks"] >= 4 and st["finish_reason"] == ns["finish_reason"] and st["usage"] == u, st
assert n["stopped"]["content"] == o["before_stop"] and n["stopped"]["finish_reason"] == "stop", (n["stopped"], o["before_stop"])
assert n["stopped_stream"] == o["before_stop"], ("stop, streamed", n["stopped_stream"], o["before_stop"])
e = n["error"]
assert e and e["status"] == 400 and "temperature" in e["message"] and e["param"] == "temperature", e
print("fine")
PYEOF
)
  [ "$msg" = fine ]; report serve_openai_npm_equals_viv_gen $? "$msg"
else
  report serve_openai_npm_equals_viv_gen 1 "node failed: $(tail -5 "$T/npm.err")"
fi

# our libcurl client against viv serve
$OAI "$BASE" --prompt "$PROMPT" --max-tokens $NTOK --temperature 1 --seed 7 >"$T/c9.json"
msg=$($PY - "$T" <<'PYEOF' 2>&1
import json, sys
d = sys.argv[1]
o, c = json.load(open(f"{d}/oracle.json")), json.load(open(f"{d}/c9.json"))
assert c["ok"] and c["attempts"] == 1, c
assert c["content"] == o["text"], (c["content"], o["text"])
assert c["prompt_tokens"] == o["prompt_tokens"] and c["completion_tokens"] == o["completion_tokens"], c
print("fine")
PYEOF
)
[ "$msg" = fine ]; report serve_libcurl_client_equals_viv_gen $? "$msg"
$OAI "$BASE/v1" --prompt "$PROMPT" --max-tokens $NTOK --temperature 1 --seed 7 --stop "$STOP" >"$T/c10.json"
msg=$(STOP="$STOP" jget "$T/c10.json" "'fine' if j['ok'] and j['finish_reason'] == 'stop' and j['stop_reason'] == __import__('os').environ['STOP'] and j['content'] == json.load(open('$T/oracle.json'))['before_stop'] else j")
[ "$msg" = fine ]; report serve_stop_string_reported $? "$msg"

# HTTP errors: OpenAI error objects with the right status
msg=$($PY - "$BASE" <<'PYEOF' 2>&1
import json, sys, urllib.request, urllib.error
base = sys.argv[1]
def call(method, path, body=None):
    req = urllib.request.Request(base + path, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
ok = lambda m: json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **m}).encode()
cases = [
    ("GET", "/v1/nope", None, 404, None),
    ("GET", "/v1/chat/completions", None, 405, None),
    ("POST", "/v1/models", b"{}", 405, None),
    ("POST", "/v1/chat/completions", b"{not json", 400, None),
    ("POST", "/v1/chat/completions", b"[1, 2]", 400, None),
    ("POST", "/v1/chat/completions", json.dumps({"messages": []}).encode(), 400, "messages"),
    ("POST", "/v1/chat/completions", json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), 400, "messages"),
    ("POST", "/v1/chat/completions", ok({"stop": 5}), 400, "stop"),
    ("POST", "/v1/chat/completions", ok({"max_tokens": "ten"}), 400, "max_tokens"),
    ("POST", "/v1/chat/completions", ok({"stream": "yes"}), 400, "stream"),
    ("POST", "/v1/chat/completions", ok({"n": 3}), 400, "n"),
    ("POST", "/v1/chat/completions", ok({"tools": [{"type": "function", "function": {"name": "f"}}]}), 400, "tools"),
    ("POST", "/v1/chat/completions", ok({"messages": [{"role": "user", "content": "x" * 40000}]}), 400, "messages"),
    ("POST", "/v1/chat/completions", b"{" + b" " * (9 << 20) + b"}", 413, None),
    # cJSON's strings end at NUL: refused whole, never rendered cut short
    ("POST", "/v1/chat/completions", ok({"messages": [{"role": "user", "content": "a\0b"}]}), 400, "messages"),
    ("POST", "/v1/chat/completions", ok({"messages": [{"role": "tool", "content": [{"type": "text", "text": "\0"}]}]}), 400, "messages"),
]
for method, path, body, status, param in cases:
    s, j = call(method, path, body)
    e = j.get("error")
    assert s == status and isinstance(e, dict) and e.get("message") and e.get("type"), (method, path, s, j)
    assert param is None or e.get("param") == param, (path, param, j)
s, j = call("POST", "/v1/chat/completions", ok({"messages": [{"role": "user", "content": "a\0b"}]}))
assert "NUL" in j["error"]["message"], j
s, j = call("POST", "/v1/chat/completions", ok({"messages": [{"role": "user", "content": "C1 \x85\x9f and \x01\x7f"}]}))
assert s == 200, (s, j)  # other control characters are text like any other
s, j = call("POST", "/chat/completions", ok({}))  # without /v1 too
assert s == 200 and j["choices"][0]["message"]["role"] == "assistant" and j["usage"]["completion_tokens"] <= 2, j
s, j = call("GET", "/models")
assert s == 200 and j["data"][0]["id"] == "tiny", j
print("fine")
PYEOF
)
[ "$msg" = fine ]; report serve_http_errors $? "$msg"

# continuous batching (--batch 4): concurrent requests, streamed or not, get exactly the texts the
# unbatched server gives them one at a time, and the decode steps did carry several requests
bin/viv serve --model "$M" --port 0 --threads 1 --batch 4 >"$T/bserve.out" 2>"$T/bserve.err" &
BSERVE=$!
PIDS+=($BSERVE)
BPORT=
for _ in $(seq 1 200); do
  BPORT=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$T/bserve.out" 2>/dev/null)
  [ -n "$BPORT" ] && break
  sleep 0.05
done
msg=$($PY - "$BASE" "http://127.0.0.1:$BPORT" <<'PYEOF' 2>&1
import json, sys, threading, urllib.request
serial_base, batch_base = sys.argv[1:]
def req(base, prompt, seed, stream):
    body = json.dumps({"messages": [{"role": "user", "content": prompt}], "max_tokens": 300, "temperature": 1,
                       "seed": seed, "stream": stream, "stop": ["qz"]}).encode()
    r = urllib.request.urlopen(urllib.request.Request(base + "/v1/chat/completions", data=body,
                               headers={"Content-Type": "application/json"}), timeout=120).read()
    if not stream:
        j = json.loads(r)
        return j["choices"][0]["message"]["content"], j["usage"]["completion_tokens"]
    text, usage = "", None
    for ev in r.split(b"\n\n"):
        if ev.startswith(b"data: {"):
            j = json.loads(ev[6:])
            if j["choices"]:
                text += j["choices"][0]["delta"].get("content") or ""
    return text, None
prompts = [("hello", 1), ("which gene", 2), ("a longer prompt about neuron migration and its genes", 3),
           ("x", 4), ("hello", 5), ("GO:0001764", 6)]
serial = [req(serial_base, p, s, False)[0] for p, s in prompts]
out = [None] * len(prompts)
def work(i):
    out[i] = req(batch_base, prompts[i][0], prompts[i][1], i % 2 == 0)[0]
th = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
[t.start() for t in th]
[t.join() for t in th]
bad = [(i, a[:40], b[:40]) for i, (a, b) in enumerate(zip(out, serial)) if a != b]
assert not bad, bad
print("fine")
PYEOF
)
kill -TERM $BSERVE
wait $BSERVE
most=$(sed -n 's/.*, \([0-9]*\) at most$/\1/p' "$T/bserve.err")
[ "$msg" = fine ] && [ "${most:-0}" -ge 2 ]
report serve_batch_concurrent_equals_serial $? "$msg; at most ${most:-?} requests per decode step: $(tail -1 "$T/bserve.err")"

# ---- viv eval through endpoints ------------------------------------------------------------------
head -n 3 "$DATA/tasks/val.jsonl" >"$T/val3.jsonl"
FAKE_DELAY=0.3 start_fake teacher teacher "$T/val3.jsonl"
if timeout 120 bin/viv eval --tasks "$T/val3.jsonl" --data "$DATA" --agent "endpoint:http://127.0.0.1:$FP/v1" --model fake \
     --concurrency 3 --trajectories "$T/traj.jsonl" --out "$T/eval.json" >"$T/e1.out" 2>"$T/e1.err"; then
  msg=$($PY - "$T" <<'PYEOF' 2>&1
import json, sys
d = sys.argv[1]
e = json.load(open(f"{d}/eval.json"))
assert e["overall"]["n"] == 3 and e["overall"]["accuracy"] == 1.0 and e["overall"]["format_rate"] == 1.0, e["overall"]
assert e["agent"].startswith("endpoint:") and e["model"] == "fake", e
for line in open(f"{d}/traj.jsonl"):
    t = json.loads(line)
    a = [m["content"] for m in t["messages"] if m["role"] == "assistant"]
    tool = [m["content"] for m in t["messages"] if m["role"] == "tool"]
    assert len(a) == 2 and a[0].endswith("<execute>print(6*7)</execute>"), a
    assert a[1].endswith("</solution>") and t["end"] == "solution", (a, t["end"])
    assert len(tool) == 1 and "42" in tool[0], tool
# --concurrency 3: the three episodes' requests were in flight together (each takes 0.3 s)
log = [json.loads(l) for l in open(f"{d}/teacher.log")]
assert len(log) == 6 and max(l["inflight"] for l in log) >= 2, log
print("fine")
PYEOF
)
  [ "$msg" = fine ] && grep -q "^all " "$T/e1.out"; report eval_endpoint_scripted_perfect_agent $? "$msg"
else
  report eval_endpoint_scripted_perfect_agent 1 "viv eval failed: $(tail -3 "$T/e1.err")"
fi

# Biomni-Eval1 rows (no reference solutions; the Eval1 graders by task name)
start_fake eval1 teacher test/agent/fixtures/eval1_sample.jsonl
if timeout 120 bin/viv eval --tasks test/agent/fixtures/eval1_sample.jsonl --data "$DATA" \
     --agent "endpoint:http://127.0.0.1:$FP" --model fake --out "$T/eval1.json" >"$T/e4.out" 2>"$T/e4.err"; then
  msg=$(jget "$T/eval1.json" "'fine' if j['overall']['n'] == 4 and all(r['accuracy'] == 1.0 for r in j['per_task']) and len(j['per_task']) == 4 else j['per_task']")
  [ "$msg" = fine ]; report eval_endpoint_on_eval1_jsonl $? "$msg"
else
  report eval_endpoint_on_eval1_jsonl 1 "viv eval failed: $(tail -3 "$T/e4.err")"
fi

before=$(grep -c "^viv serve: 200" "$T/serve.err")
if timeout 150 bin/viv eval --data "$DATA" --agent "endpoint:$BASE" --model x --episodes 2 --max-turns 2 \
     --max-turn-tokens 24 >"$T/e2.out" 2>"$T/e2.err"; then
  after=$(grep -c "^viv serve: 200" "$T/serve.err")
  grep -q "^all  *2 " "$T/e2.out" && grep -q "^task  *n  *accuracy" "$T/e2.out" && [ $((after - before)) -ge 2 ]
  report eval_endpoint_viv_serve_end_to_end $? "requests served $((after - before)); $(cat "$T/e2.out")"
else
  report eval_endpoint_viv_serve_end_to_end 1 "viv eval failed: $(tail -3 "$T/e2.err")"
fi
# a local checkpoint: one episode at a time, and four at once (their messages batched): the same
# episodes, message for message (sampled at temperature 1, so the texts are not trivial)
MA=(--data "$DATA" --agent "model:$M" --episodes 4 --max-turns 2 --max-turn-tokens 24 --temperature 1)
if timeout 150 bin/viv eval "${MA[@]}" --concurrency 1 --out "$T/e3.json" --trajectories "$T/t3.jsonl" >"$T/e3.out" 2>"$T/e3.err" &&
   timeout 150 bin/viv eval "${MA[@]}" --concurrency 4 --out "$T/e5.json" --trajectories "$T/t5.jsonl" >"$T/e5.out" 2>"$T/e5.err"; then
  msg=$($PY - "$T" <<'PYEOF' 2>&1
import json, sys
d = sys.argv[1]
# (strict UTF-8: the model's invalid bytes must have become U+FFFD in the file)
rd = lambda f: sorted((json.loads(l) for l in open(f, encoding="utf-8", errors="strict")), key=lambda t: t["episode"])
a, b = rd(f"{d}/t3.jsonl"), rd(f"{d}/t5.jsonl")
assert len(a) == len(b) == 4
for x, y in zip(a, b):
    assert x["messages"] == y["messages"], (x["episode"], [m["content"][:40] for m in x["messages"][2:]],
                                            [m["content"][:40] for m in y["messages"][2:]])
assert any(m["role"] == "assistant" and len(m["content"]) > 10 for t in a for m in t["messages"]), "empty messages"
assert json.load(open(f"{d}/e3.json"))["overall"]["n"] == 4
print("fine")
PYEOF
)
  [ "$msg" = fine ] && grep -q "^all  *4 " "$T/e3.out"; report eval_model_dir_agent_batched_equals_serial $? "$msg"
else
  report eval_model_dir_agent_batched_equals_serial 1 "viv eval failed: $(tail -3 "$T/e3.err" "$T/e5.err")"
fi

# the sanitizer build runs the threaded agents: endpoint requests in flight together, a batched local model
if [ -x build/asan/viv ] && [ -x build/asan/vivd ]; then
  start_fake ateacher teacher "$T/val3.jsonl"
  timeout 150 build/asan/viv eval --tasks "$T/val3.jsonl" --data "$DATA" --agent "endpoint:http://127.0.0.1:$FP" \
    --model fake --concurrency 3 --out "$T/ae1.json" >"$T/ae1.out" 2>"$T/ae1.err"; s1=$?
  timeout 150 build/asan/viv eval --data "$DATA" --agent "model:$M" --episodes 3 --max-turns 2 --max-turn-tokens 16 \
    --concurrency 3 >"$T/ae2.out" 2>"$T/ae2.err"; s2=$?
  ! grep -q "AddressSanitizer\|runtime error\|LeakSanitizer" "$T/ae1.err" "$T/ae2.err" && [ $s1 = 0 ] && [ $s2 = 0 ] &&
    [ "$(jget "$T/ae1.json" "j['overall']['accuracy'] == 1")" = True ]
  report eval_asan_threaded_agents $? "exits $s1 $s2, accuracy $(jget "$T/ae1.json" "j['overall']['accuracy']"): $(grep -m3 -h "ERROR\|runtime error\|Leak\|viv eval:" "$T/ae1.err" "$T/ae2.err")"
else
  report eval_asan_threaded_agents 1 "build/asan/viv or build/asan/vivd is missing (make tests)"
fi

# ---- viv sft from an endpoint teacher --------------------------------------------------------------
$PY -c "
import json
rows = [json.loads(l) for l in open('$DATA/tasks/train.jsonl')]
open('$T/train_answers.jsonl', 'w').writelines(json.dumps(r) + '\n' for r in rows)"
start_fake steacher teacher "$T/train_answers.jsonl"
if timeout 150 bin/viv sft "${TINY[@]}" --name fromurl --teacher "http://127.0.0.1:$FP" --teacher-model fake \
     >"$T/s.out" 2>"$T/s.err"; then
  grep -q "kept 4 of 4 tasks" "$T/s.err" && [ -f "$T/runs/fromurl/checkpoints/step-000000/model.safetensors" ] &&
    [ "$(jget "$T/runs/fromurl/config.json" "j['teacher_model']")" = fake ]
  report sft_endpoint_teacher_keeps_solutions $? "$(grep -m2 "kept\|failed" "$T/s.err")"
else
  report sft_endpoint_teacher_keeps_solutions 1 "viv sft failed: $(tail -3 "$T/s.err")"
fi

# ---- SIGTERM: the server stops cleanly -------------------------------------------------------------
kill -TERM $SERVE
for _ in $(seq 1 100); do kill -0 $SERVE 2>/dev/null || break; sleep 0.05; done
if kill -0 $SERVE 2>/dev/null; then
  report serve_sigterm_stops 1 "still running 5 s after SIGTERM"
else
  wait $SERVE; s=$?
  [ $s = 0 ] && grep -q "stopping" "$T/serve.err"; report serve_sigterm_stops $? "exit $s: $(tail -2 "$T/serve.err")"
fi

# ---- the sanitizer build of viv serve (--batch 3): concurrent requests, a client that leaves
# mid-stream, the npm client, SIGTERM; no AddressSanitizer/UBSan/leak report, exit 0 -------------------
if [ -x build/asan/viv ]; then
  build/asan/viv serve --model "$M" --port 0 --threads 1 --name tiny --batch 3 >"$T/aserve.out" 2>"$T/aserve.err" &
  ASERVE=$!
  PIDS+=($ASERVE)
  APORT=
  for _ in $(seq 1 400); do
    APORT=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\)$/\1/p' "$T/aserve.out" 2>/dev/null)
    [ -n "$APORT" ] && break
    sleep 0.05
  done
  msg=$($PY - "http://127.0.0.1:$APORT" <<'PYEOF' 2>&1
import json, sys, threading, urllib.request, http.client
base = sys.argv[1]
body = json.dumps({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
                   "max_tokens": 12, "temperature": 1, "seed": 3}).encode()
out = [None] * 4
def one(i):
    req = urllib.request.Request(base + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        out[i] = json.loads(r.read())["choices"][0]["message"]["content"]
th = [threading.Thread(target=one, args=(i,)) for i in range(4)]
[t.start() for t in th]
[t.join() for t in th]
assert all(o is not None for o in out) and len(set(out)) == 1, out  # serialised: the same seed, the same text
# a streaming client that reads the first event and goes away
host, port = base[7:].split(":")
c = http.client.HTTPConnection(host, int(port), timeout=30)
c.request("POST", "/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": "hi"}],
          "max_tokens": 2000, "stream": True}), {"Content-Type": "application/json"})
r = c.getresponse()
assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
assert r.read(7) == b"data: {"  # (chunked: read() decodes the framing)
c.close()
print("fine")
PYEOF
)
  [ "$msg" = fine ] && timeout 120 node test/http/openai_npm.js "http://127.0.0.1:$APORT/v1" "$PROMPT" 16 5 "e" >/dev/null 2>"$T/anpm.err"
  s1=$?
  kill -TERM $ASERVE
  wait $ASERVE; s=$?
  ! grep -q "AddressSanitizer\|runtime error\|LeakSanitizer" "$T/aserve.err" && [ $s = 0 ] && [ $s1 = 0 ] &&
    grep -q "(cancelled)" "$T/aserve.err"
  report serve_asan_concurrent_disconnect_sigterm $? "$msg; npm exit $s1; serve exit $s: $(grep -m3 "ERROR\|runtime error\|Leak" "$T/aserve.err")"
else
  report serve_asan_concurrent_disconnect_sigterm 1 "build/asan/viv is missing (make tests)"
fi

# ---- fuzz smoke: request bodies through parse_creq and the chat template --------------------------
if [ -x build/fuzz/fuzz_serve_request ]; then
  mkdir -p "$T/corpus"
  if build/fuzz/fuzz_serve_request -max_total_time="${FUZZ_SECONDS:-5}" -seed=1 -artifact_prefix="$T/corpus/" \
       "$T/corpus" test/http/seeds_serve >"$T/fuzz.log" 2>&1; then
    report "fuzz_serve_request ($(grep -o 'Done [0-9]* runs' "$T/fuzz.log"))" 0 ""
  else
    report fuzz_serve_request 1 "$(grep -m3 "ERROR\|SUMMARY\|abort" "$T/fuzz.log")"
  fi
else
  report fuzz_serve_request 1 "build/fuzz/fuzz_serve_request is missing (make tests)"
fi

# ---- bad input -------------------------------------------------------------------------------------
bad() { # name expected-exit pattern command...
  local name=$1 want=$2 pat=$3; shift 3
  timeout 30 "$@" >/dev/null 2>"$T/bad.err"; local s=$?
  [ $s = "$want" ] && grep -q -- "$pat" "$T/bad.err"; report "$name" $? "exit $s: $(head -c 300 "$T/bad.err")"
}
bad cli_serve_bad_port 2 "'70000' is not a whole number in \[0, 65535\]" bin/viv serve --model "$M" --port 70000
bad cli_serve_missing_model 2 "model directory not found" bin/viv serve --model "$T/nope" --port 0
bad cli_serve_port_in_use 1 "cannot listen" bin/viv serve --model "$M" --port "$FP"
bad cli_serve_bad_host 2 "not a numeric" bin/viv serve --model "$M" --host localhost
bad cli_eval_bad_url 1 "bad endpoint URL" bin/viv eval --data "$DATA" --agent endpoint:localhost:8000 --model x
bad cli_eval_endpoint_needs_model 1 "needs --agent-model" bin/viv eval --data "$DATA" --agent endpoint:http://127.0.0.1:9
bad cli_eval_missing_model_dir 1 "model directory not found" bin/viv eval --data "$DATA" --agent "model:$T/nope"
bad cli_sft_bad_teacher_url 2 "neither scripted nor" bin/viv sft --teacher ftp://x --teacher-model m
bad cli_sft_teacher_needs_model 2 "needs --teacher-model" bin/viv sft --teacher http://127.0.0.1:9/v1
exit $rc
