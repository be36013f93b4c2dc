#!/usr/bin/env python3
"""gen_corpus.py - a varied test corpus for the tokenizer, reproducible by seed.

    gen_corpus.py SEED N OUT_CORPUS.json OUT_VIV_INPUT.json [KIND,KIND...]

OUT_CORPUS.json is for test/tokenizer/oracle.js: [{"s": text} | {"b": [bytes]}].
OUT_VIV_INPUT.json is the same items for `viv tokenize encode --json`: a
string (NULs and lone surrogates included, as JSON escapes), or the
byte-value array when the text is not valid UTF-8.

Kinds: biomedical prose, code, JSON, CJK, emoji, white-space runs, numbers,
contractions in mixed case, added tokens inside text (and near misses),
NUL, other C0 and C1 controls, lone surrogates (U+FFFD once encoded, as
TextEncoder writes them),
combining-mark sequences that NFC reorders and composes, long runs (the heap
path of the BPE), random Unicode, invalid UTF-8, and mixtures of all of these.

Random code points are drawn from characters assigned in the UCD we build
with (unicode-data, 15.0): the JS oracle's engine knows a newer Unicode, and
characters assigned since then would be classed differently by design.
U+0085 and U+FEFF are left out of oracle comparisons: JavaScript's \\s
includes U+FEFF and excludes U+0085, the reverse of Oniguruma's (HF's) \\s;
we follow HF, and test/tokenizer/tokenizer_tests.c checks those two by hand.
"""
import json
import random
import sys

UCD = "/usr/share/unicode/UnicodeData.txt"
EXCLUDE = {0x85, 0xFEFF}


def assigned_chars():
    cps, first = [], None
    with open(UCD, encoding="utf-8") as f:
        for line in f:
            fld = line.split(";")
            cp, name, gc = int(fld[0], 16), fld[1], fld[2]
            if name.endswith("First>"):
                first = cp
                continue
            lo = first if name.endswith("Last>") else cp
            first = None
            if gc in ("Cs", "Co", "Cn"):
                continue
            for c in range(lo, cp + 1, 1 if cp - lo < 512 else 37):  # sample big blocks
                if c not in EXCLUDE:
                    cps.append((c, gc))
    return cps


GENES = ["TP53", "BRCA1", "EGFR", "IL-6", "TNF-α", "NF-κB", "β-catenin", "HLA-DRB1*15:01", "CD4+", "p21^{Cip1}",
         "mTORC1", "KRAS G12D", "PD-L1", "ACE2", "COX-2", "5'-UTR", "miR-21", "Wnt/β-catenin", "TGF-β1"]
WORDS = ("the patient was treated with mg/kg daily expression of in cells knockdown reduced apoptosis significantly "
         "compared controls hepatocellular carcinoma cohort hazard ratio confidence interval p-value was measured by "
         "qPCR Western blot RNA-seq differential genes pathway enrichment analysis GO:0006915 ENSG00000141510 "
         "μM IC50 nM °C pH 7.4 ± SD n=12 (95% CI, 1.2–3.4) ≥ ≤ × Δ Ω").split()
CODE = [
    "def f(x):\n    return x**2 + 1\n",
    "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}\n",
    "SELECT gene_id, COUNT(*) FROM go WHERE evidence IN ('IDA','IMP') GROUP BY 1;\r\n",
    "#!BASH\nls -la /tmp && echo \"$HOME\" | grep -v '^#' >> out.txt  \n",
    "import numpy as np\ndf = pd.read_csv('x.csv')\nprint(df.head())\n\n\n",
    "    if (x != NULL && *x == '\\0') { return -1; }   // done\n",
    "const f = async () => { await fetch(`/api/${id}`); };\n",
    "x = [1, 2, 3]\ny = {'a': 1, \"b\": [True, None]}\n",
]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵", "❤️", "🧬", "🦠", "✔︎", "🏳️‍🌈", "🤷‍♀️", "🔬", "💊", "1️⃣", "©", "™"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\n\n", "\u00a0", "\u3000", "\u2028", "\u2029", "\u200b", "\u2009", "\u202f",
          "\x0b", "\x0c", "\u1680", "   \n  ", " \t\n"]
NUMBERS = ["3.14159", "1,234,567", "1e-10", "0x1F", "٣٤٥", "½", "Ⅻ", "²³", "१२३", "１２３", "10^6", "-42", "1/2",
           "2024-11-24", "12:30:59", "99.9%", "𝟙𝟚"]
CONTRACT = ["I'M", "you'Re", "they'LL", "it's", "'S", "''s", "'", "don't", "WE'VE", "she'D", "o'clock", "'re'", "'ll've",
            "rock'n'roll", "’s", "I'm'", "'t'", "Y'ALL"]
ADDED = ["<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|endoftext|>", "<tool_call>", "</tool_response>",
         "<|im_sta", "<|im_start|", "<<|im_end|>>", "<think></think>", "<|im_start|>user\n", "<|fim_pad|>", "<thin",
         "</think", "<|<|im_end|>|>", "<|vision_pad|><|image_pad|>"]
COMBINING = ["e\u0301", "a\u0323\u0307", "a\u0307\u0323", "q\u0307\u0323", "\u1100\u1161\u11a8", "\u1100\u1161",
             "\uac00\u11a8", "A\u030a", "\u212b", "o\u0308\u0304", "\u0041\u0300\u0301", "\u0928\u093c", "\u0915\u093c",
             "\u05d0\u05b7", "\u0338>", ">\u0338", "\u00c5\u0301", "\u1e9b\u0323", "\u0f71\u0f72", "\u0301"]
# NUL and the other control characters, lone surrogates: text that crosses
# C strings and JSON on its way to the tokenizer must arrive whole
CONTROLS = ["a\0b", "\0 controls", "\0", "x\0\0\0y", "print('\\0')\0\n\0", "<|im_start|>\0<|im_end|>",
            "\x01\x02\x1b[31mred\x1b[0m\x7f", "\x80\x81\x9f", "caf\xe9\x9b\x8f", " \x9c\x9d ok",
            "\ud800", "x\udc00y", "\udbff\udbff", "end \ud83e", "\udfff\ud800\u00e9", "\ud83e\udd2c\ud83e"]
CJK = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 400)) + "，。、「」ひらがなカタカナ한국어텍스트"


def rand_unicode(rng, cps, n):
    return "".join(chr(rng.choice(cps)[0]) for _ in range(n))


def prose(rng):
    ws = [rng.choice(WORDS + GENES) for _ in range(rng.randint(3, 40))]
    s = " ".join(ws)
    if rng.random() < 0.3:
        s = s.capitalize() + "."
    return s


def json_blob(rng, depth=0):
    r = rng.random()
    if depth > 3 or r < 0.3:
        return rng.choice([rng.randint(-10**6, 10**6), rng.random() * 100, True, None, rng.choice(WORDS),
                           rng.choice(GENES), "".join(rng.choice(CJK) for _ in range(3))])
    if r < 0.65:
        return [json_blob(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(WORDS + GENES): json_blob(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def invalid_bytes(rng):
    parts = []
    for _ in range(rng.randint(1, 8)):
        k = rng.random()
        if k < 0.3:
            parts.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 6))))
        elif k < 0.5:
            parts.append(rng.choice([b"\xc0\x80", b"\xed\xa0\x80", b"\xf5\x80\x80\x80", b"\xe2\x82", b"\xf0\x9f\x98",
                                     b"\x80", b"\xff\xfe", b"\xc3", b"\xf4\x90\x80\x80", b"\xe0\x80\xaf"]))
        else:
            parts.append(rng.choice([prose(rng), rng.choice(CODE), rng.choice(CJK) * 3, rng.choice(EMOJI),
                                     rng.choice(SPACES), rng.choice(COMBINING), rng.choice(CONTRACT)]).encode())
    b = b"".join(parts).replace(b"<", b"[")  # no added tokens in byte items (see oracle.js)
    return b


def make(rng, cps, kind):
    if kind == "prose":
        return prose(rng)
    if kind == "code":
        return "".join(rng.choice(CODE) for _ in range(rng.randint(1, 4)))
    if kind == "json":
        return json.dumps(json_blob(rng), ensure_ascii=rng.random() < 0.3, indent=rng.choice([None, 2, "\t"]))
    if kind == "cjk":
        return "".join(rng.choice([rng.choice(CJK), rng.choice(CJK), " ", "。", rng.choice(NUMBERS)])
                       for _ in range(rng.randint(1, 60)))
    if kind == "emoji":
        return "".join(rng.choice(EMOJI + [" ", "a", "!", "\n"]) for _ in range(rng.randint(1, 20)))
    if kind == "space":
        return "".join(rng.choice(SPACES + ["x", "yz", ".", "1"]) for _ in range(rng.randint(1, 20)))
    if kind == "number":
        return " ".join(rng.choice(NUMBERS + [str(rng.randint(0, 10**12))]) for _ in range(rng.randint(1, 10)))
    if kind == "contraction":
        return "".join(rng.choice(CONTRACT + [" ", "a", "B", "\n", "'"]) for _ in range(rng.randint(1, 12)))
    if kind == "added":
        return "".join(rng.choice(ADDED + [prose(rng), "\n", " ", "x"]) for _ in range(rng.randint(1, 8)))
    if kind == "combining":
        return "".join(rng.choice(COMBINING + ["a", " ", "\u0300", "\u0327", "\u05b7"]) for _ in range(rng.randint(1, 12)))
    if kind == "long":
        c = rng.random()
        n = rng.randint(200, 3000)
        if c < 0.3:
            return "".join(rng.choice("abcdefghij") for _ in range(n))
        if c < 0.5:
            return "a" * n
        if c < 0.7:
            return " " * n + "x"
        if c < 0.85:
            return "".join(rng.choice(CJK) for _ in range(n // 3))
        return "".join(str(rng.randint(0, 9)) for _ in range(n))
    if kind == "random":
        return rand_unicode(rng, cps, rng.randint(1, 40))
    if kind == "mixed":
        return "".join(make(rng, cps, rng.choice(KINDS[:-1])) for _ in range(rng.randint(2, 5)))
    raise ValueError(kind)


KINDS = ["prose", "code", "json", "cjk", "emoji", "space", "number", "contraction", "added", "combining", "long",
         "random", "mixed"]


def main():
    seed, n, out_corpus, out_viv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    kinds = sys.argv[5].split(",") if len(sys.argv) > 5 else None
    rng = random.Random(seed)
    cps = assigned_chars()
    corpus, viv = [], []
    fixed = [] if kinds else ["", " ", "\n", "a", "<|im_start|>", "Hello, world!", "I'M here, they'RE <|im_start|>user\nhi<|im_end|>"]
    fixed += [] if kinds else CONTROLS
    for s in fixed:
        corpus.append({"s": s})
        viv.append(s)
    for i in range(n):
        if kinds:  # only these kinds, no fixed strings or invalid UTF-8 (for the benchmark)
            s = make(rng, cps, kinds[i % len(kinds)])
            corpus.append({"s": s})
            viv.append(s)
            continue
        if i % 16 == 11:
            s = make(rng, cps, rng.choice(KINDS[:-1]))
            s = "".join(ch + rng.choice(CONTROLS) if rng.random() < 0.2 else ch for ch in s)
            s = "".join(ch for ch in s if ord(ch) not in EXCLUDE)
            corpus.append({"s": s})
            viv.append(s)
            continue
        if i % 8 == 7:
            b = invalid_bytes(rng)
            corpus.append({"b": list(b)})
            viv.append(list(b))
            continue
        s = make(rng, cps, KINDS[i % len(KINDS)] if i % 3 else rng.choice(KINDS))
        s = "".join(ch for ch in s if ord(ch) not in EXCLUDE)
        corpus.append({"s": s})
        viv.append(s)
    with open(out_corpus, "w") as f:
        json.dump(corpus, f)
    with open(out_viv, "w") as f:
        json.dump(viv, f)


if __name__ == "__main__":
    main()
