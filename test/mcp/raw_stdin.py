"""test/mcp: `viv mcp` fed raw lines on stdin, as a careless or hostile client
would write them. The server answers in order, one line per request (none
for a notification), so the replies are matched to the lines by position.

    python3 raw_stdin.py VIV
Prints one "ok - ..." / "not ok - ...: why" line per case.
"""
import json
import os
import re
import subprocess
import sys

VIV = sys.argv[1]
REQ = lambda i, method, params=None: json.dumps(
    {"jsonrpc": "2.0", "id": i, "method": method, **({"params": params} if params is not None else {})})

# (name, line sent, check of the reply: a function of the parsed reply, or None when no reply is due)
CASES = [
    ("raw_malformed_json_is_parse_error_with_null_id", '{"jsonrpc": "2.0", "id": 1, "method": ',
     lambda r: r["id"] is None and r["error"]["code"] == -32700),
    ("raw_two_values_on_one_line_is_parse_error", REQ(2, "ping") + " " + REQ(3, "ping"),
     lambda r: r["id"] is None and r["error"]["code"] == -32700),
    ("raw_notification_initialized_not_answered", '{"jsonrpc":"2.0","method":"notifications/initialized"}', None),
    ("raw_notification_cancelled_not_answered",
     '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99,"reason":"x"}}', None),
    ("raw_unknown_notification_not_answered", '{"jsonrpc":"2.0","method":"notifications/whatever"}', None),
    ("raw_unknown_method_is_method_not_found", REQ(4, "resources/list"),
     lambda r: r["id"] == 4 and r["error"]["code"] == -32601),
    ("raw_ping_answers_empty_object", REQ("p-5", "ping"), lambda r: r["id"] == "p-5" and r["result"] == {}),
    ("raw_wrong_jsonrpc_version_is_invalid_request", '{"jsonrpc":"1.0","id":6,"method":"ping"}',
     lambda r: r["id"] == 6 and r["error"]["code"] == -32600),
    ("raw_object_id_is_invalid_request_null_id", '{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}',
     lambda r: r["id"] is None and r["error"]["code"] == -32600),
    ("raw_non_object_message_is_invalid_request", '42', lambda r: r["id"] is None and r["error"]["code"] == -32600),
    ("raw_empty_batch_is_invalid_request", '[]', lambda r: r["id"] is None and r["error"]["code"] == -32600),
    ("raw_batch_answers_each_request_not_notifications",
     '[%s,{"jsonrpc":"2.0","method":"notifications/initialized"},%s,7]' % (REQ(7, "ping"), REQ(8, "nope")),
     lambda r: [x.get("id") for x in r] == [7, 8, None] and r[0]["result"] == {} and
     r[1]["error"]["code"] == -32601 and r[2]["error"]["code"] == -32600),
    ("raw_batch_of_notifications_not_answered", '[{"jsonrpc":"2.0","method":"notifications/initialized"}]', None),
    ("raw_initialize_echoes_supported_version",
     REQ(9, "initialize", {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
     lambda r: r["result"]["protocolVersion"] == "2025-03-26" and r["result"]["capabilities"]["tools"] == {"listChanged": False}),
    ("raw_initialize_unknown_version_gets_latest",
     REQ(10, "initialize", {"protocolVersion": "1999-01-01", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
     lambda r: r["result"]["protocolVersion"] == "2025-06-18"),
    ("raw_initialize_without_params_is_invalid_params", REQ(11, "initialize"),
     lambda r: r["error"]["code"] == -32602),
    ("raw_tools_call_params_not_object_is_invalid_params", REQ(12, "tools/call", []),
     lambda r: r["id"] == 12 and r["error"]["code"] == -32602),
    ("raw_tools_call_arguments_not_object_is_invalid_params",
     REQ(13, "tools/call", {"name": "python", "arguments": "print(1)"}), lambda r: r["error"]["code"] == -32602),
    # cJSON would end the code at the NUL and run the first half; the call is refused instead
    ("raw_nul_in_code_refused_not_truncated",
     REQ(14, "tools/call", {"name": "shell", "arguments": {"code": "echo first\u0000; echo second"}}),
     lambda r: r["result"]["isError"] is True and "NUL" in r["result"]["content"][0]["text"]),
    ("raw_response_from_client_ignored", '{"jsonrpc":"2.0","id":15,"result":{}}', None),
    ("raw_still_serving_after_all_of_the_above", REQ(16, "tools/call", {"name": "python", "arguments": {"code": "print(7*6)"}}),
     lambda r: r["result"] == {"content": [{"type": "text", "text": "42\n"}], "isError": False}),
]


def main():
    sent = "".join(line + "\n" for _, line, _ in CASES) + "\n\n"  # blank lines are skipped
    p = subprocess.run([VIV, "mcp"], input=sent.encode(), capture_output=True, timeout=120)
    out = p.stdout.decode("utf-8", "strict").splitlines()
    fails = 0
    replies = iter(out)
    for name, _, check in CASES:
        if check is None:
            continue
        line = next(replies, None)
        try:
            ok = line is not None and check(json.loads(line))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            ok = False
        print("ok - %s" % name if ok else "not ok - %s: reply %r" % (name, (line or "")[:300]))
        fails += not ok
    expected = sum(1 for c in CASES if c[2] is not None)
    ok = len(out) == expected
    print("ok - raw_one_reply_per_request_none_per_notification (%d lines)" % len(out) if ok else
          "not ok - raw_one_reply_per_request_none_per_notification: %d replies for %d requests" % (len(out), expected))
    fails += not ok
    # a notification's case passes when no reply came for it: every reply matched its request
    # above, and there are no more replies than requests
    for name, _, check in CASES:
        if check is None:
            print("ok - %s" % name if ok else "not ok - %s: extra replies (see above)" % name)
            fails += not ok
    # end of input ends the server cleanly, its private vivd stopped and its directory gone
    m = re.search(r"vivd at (/tmp/viv-[A-Za-z0-9]+)/vivd.sock", p.stderr.decode())
    ok = p.returncode == 0 and m is not None and not os.path.exists(m.group(1))
    print("ok - raw_eof_exits_0_and_removes_private_vivd" if ok else
          "not ok - raw_eof_exits_0_and_removes_private_vivd: rc %d, stderr %r" % (p.returncode, p.stderr[-300:]))
    fails += not ok
    sys.exit(1 if fails else 0)


main()
