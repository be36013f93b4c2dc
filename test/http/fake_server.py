#!/usr/bin/python3
"""A scripted OpenAI-compatible server for test/http/run.sh.

usage: fake_server.py MODE [TASKS.jsonl]
Listens on 127.0.0.1 (a free port, printed as "port N" on stdout) and
appends one JSON line per request ({"n", "path", "auth", "inflight": requests
being answered at its arrival, itself included}) to $FAKE_LOG. $FAKE_DELAY
seconds (default 0) pass before each answer.

MODE
  ok           every POST gets a completion "hello from fake"
  flaky        HTTP 503 (with an error object) twice, then the completion
  retry-after  HTTP 429 with "Retry-After: 1" once, then the completion
  hang         never answers within 30 s
  401          HTTP 401 with OpenAI's invalid_api_key error object
  echo         the completion's content is {"path", "auth"} of the request
  teacher      a perfect agent for the tasks in TASKS.jsonl: first turn
               "<think>..</think>\\n<execute>print(6*7)" (no closing tag, as
               OpenAI servers drop the stop string), after an observation
               "<solution>" + the task's answer (no closing tag either)
"""
import http.server
import json
import os
import sys
import threading
import time

MODE = sys.argv[1]
ANSWERS = {}
if len(sys.argv) > 2:
    for line in open(sys.argv[2]):
        t = json.loads(line)
        a = t["answer"]
        if t["task_name"] == "patient_gene_detection":  # the Eval1 rule grades a JSON object
            a = json.dumps({"causal_gene": [g.strip() for g in a.split(",")]})
        ANSWERS[t["prompt"]] = a
LOCK = threading.Lock()
COUNT = [0]
INFLIGHT = [0]
DELAY = float(os.environ.get("FAKE_DELAY", "0"))


def completion(content, finish="stop"):
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, obj, headers=()):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        with LOCK:
            INFLIGHT[0] += 1
        try:
            self.answer()
        finally:
            with LOCK:
                INFLIGHT[0] -= 1

    def answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with LOCK:
            COUNT[0] += 1
            n, inflight = COUNT[0], INFLIGHT[0]
        auth = self.headers.get("Authorization")
        if os.environ.get("FAKE_LOG"):
            with open(os.environ["FAKE_LOG"], "a") as f:
                f.write(json.dumps({"n": n, "path": self.path, "auth": auth, "inflight": inflight}) + "\n")
        time.sleep(DELAY)
        err = lambda msg, typ, code: {"error": {"message": msg, "type": typ, "param": None, "code": code}}
        if MODE == "flaky" and n <= 2:
            return self.reply(503, err("the engine is overloaded", "server_error", None))
        if MODE == "retry-after" and n == 1:
            return self.reply(429, err("rate limit reached", "requests", "rate_limit_exceeded"), [("Retry-After", "1")])
        if MODE == "hang":
            time.sleep(30)
            return
        if MODE == "401":
            return self.reply(401, err("Incorrect API key provided: sk-wrong", "invalid_request_error", "invalid_api_key"))
        if MODE == "echo":
            return self.reply(200, completion(json.dumps({"path": self.path, "auth": auth})))
        if MODE == "teacher":
            req = json.loads(body)
            msgs = req["messages"]
            assert req.get("stop") == ["</execute>", "</solution>"], req.get("stop")
            if "<observation>" in msgs[-1]["content"]:
                return self.reply(200, completion("<think>the check ran</think>\n<solution>%s" % ANSWERS[msgs[1]["content"]]))
            return self.reply(200, completion("<think>check the sandbox first</think>\n<execute>print(6*7)"))
        return self.reply(200, completion("hello from fake"))


class S(http.server.ThreadingHTTPServer):
    daemon_threads = True


srv = S(("127.0.0.1", 0), H)
print("port", srv.server_address[1], flush=True)
srv.serve_forever()
