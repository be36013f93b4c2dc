#!/usr/bin/env python3
"""compare.py - our `viv tokenize` output against the oracle's, one ok/not ok line each.

    compare.py NAME CORPUS.json EXPECTED.json OURS_IDS.json OURS_BYTES.json OURS_TEXT.json

Checks: ids equal the oracle's; decode(encode(x)) gives back exactly the
bytes of x (after NFC outside added tokens: what HF gives back too); decode
--json (invalid UTF-8 as U+FFFD) equals the oracle's decode string.
"""
import json
import sys


def show(item):
    return repr(item.get("s", bytes(item.get("b", []))))[:200]


def main():
    name, corpus, expected, ids, byts, text = sys.argv[1:7]
    corpus = json.load(open(corpus))
    exp = json.load(open(expected))
    ids = json.load(open(ids))
    byts = json.load(open(byts))
    text = json.load(open(text))
    fails = 0
    for check in ("ids", "roundtrip", "decode_text"):
        bad = []
        for i, item in enumerate(corpus):
            if check == "ids" and ids[i] != exp[i]["ids"]:
                bad.append("#%d %s: ours %s oracle %s" % (i, show(item), ids[i][:40], exp[i]["ids"][:40]))
            elif check == "roundtrip" and byts[i] != exp[i]["nfc"]:
                bad.append("#%d %s: decode gave %r" % (i, show(item), bytes(byts[i])[:100]))
            elif check == "decode_text" and text[i] != exp[i]["text"]:
                bad.append("#%d %s: ours %r oracle %r" % (i, show(item), text[i][:80], exp[i]["text"][:80]))
        n = len(corpus)
        if bad:
            fails += 1
            print("not ok - %s %s: %d of %d differ; first: %s" % (name, check, len(bad), n, bad[0]))
            for b in bad[1:5]:
                print("#   " + b)
        else:
            print("ok - %s %s (%d strings, %d tokens)" % (name, check, n, sum(len(x) for x in ids)))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
