#!/usr/bin/env python3
"""chat_render.py - render chat cases with Qwen3's own chat template (jinja2).

    chat_render.py TOKENIZER_CONFIG.json CASES.json OUT_CORPUS.json OUT_TEXTS.json

Renders as transformers' apply_chat_template does (jinja2 sandbox,
trim_blocks, lstrip_blocks, a tojson filter), writes the texts (for the
comparison) and a corpus of them for test/tokenizer/oracle.js (for the ids).
"""
import json
import sys

from jinja2.sandbox import ImmutableSandboxedEnvironment


def main():
    cfg, cases, out_corpus, out_texts = sys.argv[1:5]
    template = json.load(open(cfg))["chat_template"]
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False, **kw)
    tmpl = env.from_string(template)
    texts = []
    for case in json.load(open(cases)):
        kw = {"messages": case["messages"], "add_generation_prompt": case.get("add_generation_prompt", False)}
        if "enable_thinking" in case:
            kw["enable_thinking"] = case["enable_thinking"]
        texts.append(tmpl.render(**kw))
    json.dump([{"s": t} for t in texts], open(out_corpus, "w"))
    json.dump(texts, open(out_texts, "w"))


if __name__ == "__main__":
    main()
