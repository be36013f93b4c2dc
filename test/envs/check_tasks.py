#!/usr/bin/env python3
"""check_tasks.py OUT VIV - check a `viv data build` output directory.

Prints one "ok - ..." / "not ok - ...: why" line per check (the harness
format) and exits 1 on any failure. Checks: the exact field set, ids and
splits; answer formats as each Eval1 grader reads them; the answer is among
the task's own candidates/options; meta.inputs (TASK in the Python tool)
holds only what the prompt shows and never singles out the answer; splits
are disjoint by the entity each task is about; MANIFEST counts and checksums match the files; and every
task's reference solution, run again here through `viv run` (not the
builder's code path), prints its answer as the last line, while a wrong
answer would not be accepted.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

OUT, VIV = sys.argv[1], sys.argv[2]
failures = 0


def report(ok, name, why=""):
    global failures
    if ok:
        print(f"ok - {name}")
    else:
        failures += 1
        print(f"not ok - {name}: {why}")


FIELDS = {"instance_id", "task_name", "split", "prompt", "answer", "grader", "reference", "meta"}
GRADERS = {
    "causal_gene": "gwas_causal_gene_gwas_catalog",
    "variant_prioritization": "gwas_variant_prioritization",
    "dbqa": "lab_bench_dbqa",
    "seqqa": "lab_bench_seqqa",
    "rare_disease": "rare_disease_diagnosis",
    "patient_gene_detection": "patient_gene_detection",
    "screen_gene_retrieval": "screen_gene_retrieval",
}
SPLITS = ("train", "val", "test")

tasks = []
for split in SPLITS:
    with open(os.path.join(OUT, "tasks", f"{split}.jsonl")) as f:
        for n, line in enumerate(f):
            tasks.append((split, n, json.loads(line)))


def check_fields():
    bad = []
    seen_ids = set()
    counters = defaultdict(int)
    for split, n, t in tasks:
        if set(t) != FIELDS:
            bad.append(f"{split}:{n} fields {sorted(t)}")
            continue
        if set(t["reference"]) != {"tool", "code"} or t["reference"]["tool"] not in ("python", "sql", "bash"):
            bad.append(f"{t['instance_id']}: reference {t['reference'].keys()}")
        if t["split"] != split or t["task_name"] not in GRADERS or t["grader"] != GRADERS[t["task_name"]]:
            bad.append(f"{t['instance_id']}: split/task_name/grader")
        want_id = f"viv-{t['task_name']}-{split}-{counters[(t['task_name'], split)]}"
        counters[(t["task_name"], split)] += 1
        if t["instance_id"] != want_id or t["instance_id"] in seen_ids:
            bad.append(f"{t['instance_id']}: expected id {want_id}")
        seen_ids.add(t["instance_id"])
        if not all(isinstance(t[k], str) and t[k] for k in ("prompt", "answer")) or not isinstance(t["meta"], dict):
            bad.append(f"{t['instance_id']}: empty prompt/answer or meta not an object")
    report(not bad, f"fields, ids and graders of {len(tasks)} tasks", "; ".join(bad[:3]))
    shapes = {t["task_name"] for _, _, t in tasks}
    report(shapes == set(GRADERS), "every shape present", f"missing {set(GRADERS) - shapes}")


def option_letters(prompt):
    return re.findall(r"^([A-E])\. ", prompt, re.M)


def check_formats():
    """The answer as each grader rule reads it, and within the task's own choices."""
    bad = defaultdict(list)
    for _, _, t in tasks:
        name, a, p, m = t["task_name"], t["answer"], t["prompt"], t["meta"]
        ok = True
        if name == "causal_gene":
            ok = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@-]*", a) and a in m["genes"] and \
                 sum(a.lower() == g.lower() for g in m["genes"]) == 1
        elif name == "screen_gene_retrieval":
            ok = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@-]*", a) and a in m["candidates"] and len(m["candidates"]) == 11
        elif name == "variant_prioritization":
            ok = re.fullmatch(r"chr([0-9]{1,2}|X|Y):[0-9]+", a) and a in m["variants"] and f"\n{a}\n" in p
        elif name in ("dbqa", "seqqa"):
            ok = re.fullmatch(r"[A-E]", a) and option_letters(p) == list("ABCDE") and \
                 "Insufficient information to answer the question" in p
        elif name == "rare_disease":
            try:
                j = json.loads(a)
                ok = set(j) == {"disease_name", "OMIM_ID"} and re.fullmatch(r"[0-9]{6}", j["OMIM_ID"]) and \
                     j["OMIM_ID"] == m["omim_id"] and m["causal_gene"] in m["candidates"]
            except ValueError:
                ok = False
        elif name == "patient_gene_detection":
            # Eval1's truth: comma-separated Ensembl IDs; the answer the agent gives is meta.solution
            try:
                j = json.loads(m["solution"])
                ok = set(j) == {"causal_gene"} and j["causal_gene"] == a.split(",") and \
                     all(re.fullmatch(r"ENSG[0-9]{11}", e) and e in m["candidates"] for e in j["causal_gene"])
            except (ValueError, KeyError):
                ok = False
        if not ok:
            bad[name].append(t["instance_id"])
    for name in GRADERS:
        report(not bad[name], f"answer format of {name}", ", ".join(bad[name][:3]))
    # multiple choice: every letter is the right one about equally often in
    # each split, so answering one constant letter cannot beat chance
    from collections import Counter
    skew = []
    for name in ("dbqa", "seqqa"):
        for split in ("train", "val", "test"):
            c = Counter(t["answer"] for _, _, t in tasks if t["task_name"] == name and t["split"] == split)
            if sum(c.values()) >= 5 and max(c[l] for l in "ABCDE") - min(c[l] for l in "ABCDE") > 2:
                skew.append(f"{name}/{split}: {dict(sorted(c.items()))}")
    report(not skew, "multiple-choice answers spread evenly over the letters", "; ".join(skew[:3]))


def string_leaves(v, in_list=False):
    """(string, in_list) for every string in a JSON value; in_list when it is one
    of two or more entries of a list or an options map."""
    if isinstance(v, str):
        yield v, in_list
    elif isinstance(v, list):
        for x in v:
            yield from string_leaves(x, len(v) >= 2)
    elif isinstance(v, dict):
        for k, x in v.items():
            yield from string_leaves(x, k == "options" or (in_list and len(v) >= 2))


def check_inputs():
    """Every task carries meta.inputs, the data its prompt already shows, and
    nothing that gives the answer away: the answer (or meta.solution, the MIM
    number, the causal gene, its Entrez ID) may occur only as one entry of a
    list of candidates or options, never as a value of its own."""
    bad = defaultdict(list)
    for _, _, t in tasks:
        m, inp = t["meta"], t["meta"].get("inputs")
        name, why = t["task_name"], None
        if not isinstance(inp, dict) or not inp:
            why = "no meta.inputs"
        elif t["reference"]["tool"] == "python" and "TASK[" not in t["reference"]["code"]:
            why = "the reference does not read TASK"
        else:
            secrets = [s for s in (t["answer"], m.get("solution"), m.get("omim_id")) if s]
            exact = secrets + [s for s in (m.get("causal_gene"), m.get("entrez_id")) if s]
            options = inp.get("options", {})
            for leaf, in_list in string_leaves({k: v for k, v in inp.items() if k != "options"}):
                if leaf not in t["prompt"]:
                    why = f"input {leaf[:40]!r} is not in the prompt"
                elif not in_list and (leaf in exact or any(len(s) >= 3 and s in leaf for s in secrets)):
                    why = f"input {leaf[:40]!r} gives the answer away"
            for letter, text in options.items():
                if f"{letter}. {text}\n" not in t["prompt"]:
                    why = f"option {letter} is not as the prompt shows it"
            if len(options) == 1:
                why = "a single option"
            if json.dumps(m.get("solution", "")) in json.dumps(inp) and m.get("solution"):
                why = "meta.solution is in the inputs"
        if why:
            bad[name].append(f"{t['instance_id']}: {why}")
    for name in GRADERS:
        report(not bad[name], f"meta.inputs of {name}: the prompt's data, never the answer", "; ".join(bad[name][:3]))


def entity(t):
    m = t["meta"]
    if t["task_name"] == "seqqa":
        return "seq:" + m["sequence"]
    if t["task_name"] == "rare_disease":
        return "mim:" + m["omim_id"]
    return "gene:" + m["entrez_id"]


def check_splits():
    where = defaultdict(set)
    prompts = defaultdict(set)
    for split, _, t in tasks:
        where[entity(t)].add(split)
        prompts[t["prompt"]].add(split)
    leaks = [e for e, s in where.items() if len(s) > 1]
    report(not leaks, f"splits disjoint by entity ({len(where)} entities)", ", ".join(leaks[:3]))
    dups = [p[:60] for p, s in prompts.items() if len(s) > 1]
    report(not dups, "no prompt in two splits", "; ".join(dups[:2]))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_manifest():
    m = json.load(open(os.path.join(OUT, "MANIFEST.json")))
    names = {p["name"]: p for p in m["packages"]}
    ok = set(names) == {"r-bioc-org.hs.eg.db", "r-bioc-go.db"} and all(p["version"] for p in names.values())
    report(ok, "manifest names both packages and their versions", str(list(names)))
    bad = [d["path"] for d in m["databases"] if sha256(os.path.join(OUT, d["path"])) != d["sha256"]
           or os.path.getsize(os.path.join(OUT, d["path"])) != d["bytes"]]
    report(not bad, "manifest checksums match the databases", ", ".join(bad))
    kept = defaultdict(int)
    for split, _, t in tasks:
        kept[(t["task_name"], split)] += 1
    bad = [f"{n}/{s}" for n, per in m["tasks"].items() for s in SPLITS if per[s]["kept"] != kept[(n, s)]]
    report(not bad, "manifest task counts match the files", ", ".join(bad))


def with_task(t):
    """The reference as eval and verification run it: Python gets one line
    defining TASK from meta.inputs first (envs/protocol.c)."""
    code, inp = t["reference"]["code"], t["meta"].get("inputs")
    if t["reference"]["tool"] != "python" or not isinstance(inp, dict):
        return code
    return "TASK = __import__(\"json\").loads(" + json.dumps(json.dumps(inp)) + ")\n" + code


def run_reference(t, db_dir):
    ref = t["reference"]
    tool = {"bash": "shell"}.get(ref["tool"], ref["tool"])
    r = subprocess.run([VIV, "run", "--tool", tool, "--data", f"biodb={db_dir}", "--db",
                        os.path.join(db_dir, "org.Hs.eg.sqlite"), "--timeout-ms", "30000", "--code-file", "-"],
                       input=with_task(t).encode(), capture_output=True)
    lines = r.stdout.decode(errors="replace").rstrip("\n").split("\n")
    return r.returncode, lines[-1] if lines else ""


def check_references():
    db_dir = os.path.realpath(os.path.join(OUT, "db"))
    with ThreadPoolExecutor(max_workers=2) as ex:
        results = list(ex.map(lambda x: run_reference(x[2], db_dir), tasks))
    bad = [f"{t['instance_id']} printed {last!r} (exit {rc})"
           for (_, _, t), (rc, last) in zip(tasks, results) if rc != 0 or last != t["meta"].get("solution", t["answer"])]
    report(not bad, f"all {len(tasks)} reference solutions print their answer in viv run", "; ".join(bad[:3]))
    # the same comparison rejects a wrong answer: every task against another task's answer of its shape
    by_shape = defaultdict(list)
    for (_, _, t), (_, last) in zip(tasks, results):
        by_shape[t["task_name"]].append((t["meta"].get("solution", t["answer"]), last))
    accepted = 0
    for pairs in by_shape.values():
        for i, (_, last) in enumerate(pairs):
            wrong = next((a for a, _ in pairs[i + 1:] + pairs[:i] if a != pairs[i][0]), None)
            accepted += wrong is not None and last == wrong
    report(accepted == 0, "a different answer of the same shape is never what a reference prints",
           f"{accepted} accepted")


check_fields()
check_formats()
check_inputs()
check_splits()
check_manifest()
if os.environ.get("CHECK_REFERENCES", "1") == "1":
    check_references()
sys.exit(1 if failures else 0)
