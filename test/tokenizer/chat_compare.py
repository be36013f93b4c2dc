#!/usr/bin/env python3
"""chat_compare.py NAMES... : our chat rendering/ids vs jinja2 + the JS oracle.

    chat_compare.py CASES.json JINJA_TEXTS.json ORACLE.json OURS.json
"""
import json
import sys


def main():
    cases, texts, oracle, ours = (json.load(open(p)) for p in sys.argv[1:5])
    fails = 0
    for i, (want, exp, got) in enumerate(zip(texts, oracle, ours)):
        roles = "/".join(m["role"] for m in cases[i]["messages"])
        if got.get("text") != want:
            fails += 1
            print("not ok - chat template case %d (%s): text differs: ours %r jinja2 %r" % (i, roles, got.get("text"), want))
        elif got.get("ids") != exp["ids"]:
            fails += 1
            print("not ok - chat template case %d (%s): ids differ from the oracle's" % (i, roles))
        else:
            print("ok - chat template case %d (%s): %d ids" % (i, roles, len(got["ids"])))
    if len(ours) != len(texts):
        print("not ok - chat template: %d cases rendered, %d expected" % (len(ours), len(texts)))
        fails += 1
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
