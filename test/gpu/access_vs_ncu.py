#!/usr/bin/env python3
"""access_vs_ncu.py - kemu's access profile (test/gpu/kemu/prof.h, counted on
a CPU) against a GPU's own counters (Nsight Compute) for the same run.

    access_vs_ncu.py KEMU.jsonl NCU.csv OUT.jsonl

KEMU.jsonl: the sites kemu's profile wrote (KEMU_PROF=...) for one
`viv cuda train-bench --config test/gpu/kemu/qwen3_layer.json --batch 1
--seq 128 --steps 1`; test/gpu/kit.sh pack makes it. NCU.csv: `ncu --csv
--page raw` of the same command on the GPU with the metrics METRICS below
(test/gpu/kit.sh run makes it). Per kernel, summed over its launches and
sites, it compares:
    global load / store sectors   l1tex__t_sectors_pipe_lsu_mem_global_op_{ld,st}.sum
    shared load / store passes    l1tex__data_pipe_lsu_wavefronts_mem_shared_op_{ld,st}.sum
and prints a line per kernel and quantity with both counts and their ratio
(ncu / kemu), and writes them to OUT.jsonl. Informational: where they
differ, the model in prof.h (or the instructions nvcc chose) is what to
look at. Known differences: atomics go through another pipe on the GPU
(embed_bwd_kernel's atomicAdd counts as a load and a store in kemu); the
GPU's shared-memory counters also count ldmatrix and the wmma stores as
nvcc really issued them, which kemu only models.
"""
import csv
import json
import sys
from collections import defaultdict

METRICS = {
    "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum": ("global", "load"),
    "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum": ("global", "store"),
    "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum": ("shared", "load"),
    "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum": ("shared", "store"),
}


def base_name(kernel):
    """attn_fwd_tc_kernel<128, 8>(bf16 *, ...) and void attn_fwd_tc_kernel<...> -> attn_fwd_tc_kernel"""
    k = kernel.strip()
    if k.startswith("void "):
        k = k[5:]
    return k.split("(")[0].split("<")[0].strip()


def read_kemu(path):
    tot = defaultdict(int)  # (kernel, space, op) -> sectors or wavefronts
    for line in open(path):
        r = json.loads(line)
        tot[(base_name(r["kernel"]), r["space"], r["op"])] += r["sectors" if r["space"] == "global" else "wavefronts"]
    return tot


def number(text):
    try:
        return float(text.replace(",", "").strip())
    except ValueError:
        return None


def read_ncu(path):
    """ncu --csv --page raw: a header row naming the columns, a units row, a row per launch"""
    rows = list(csv.reader(open(path, newline="")))
    head = next((i for i, r in enumerate(rows) if "Kernel Name" in r), None)
    if head is None:
        raise SystemExit(f"access_vs_ncu: no 'Kernel Name' header in {path}")
    cols = rows[head]
    kcol = cols.index("Kernel Name")
    mcols = {m: cols.index(m) for m in METRICS if m in cols}
    if not mcols:
        raise SystemExit(f"access_vs_ncu: none of the metrics in {path}")
    tot = defaultdict(float)
    launches = defaultdict(int)
    for r in rows[head + 1:]:
        if len(r) <= max(mcols.values()) or not r[kcol]:
            continue
        vals = {m: number(r[c]) for m, c in mcols.items()}
        if all(v is None for v in vals.values()):
            continue  # the units row
        k = base_name(r[kcol])
        launches[k] += 1
        for m, v in vals.items():
            if v is not None:
                tot[(k,) + METRICS[m]] += v
    return tot, launches


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    kemu = read_kemu(sys.argv[1])
    ncu, launches = read_ncu(sys.argv[2])
    kernels = sorted({k for (k, _, _) in kemu} & set(launches))
    if not kernels:
        print("access_vs_ncu: no kernel in both profiles")
        return 1
    with open(sys.argv[3], "w") as out:
        print(f"{'kernel':26} {'what':22} {'kemu':>12} {'ncu':>12} {'ncu/kemu':>9}")
        for k in kernels:
            for space, op in (("global", "load"), ("global", "store"), ("shared", "load"), ("shared", "store")):
                a, b = kemu.get((k, space, op), 0), ncu.get((k, space, op), 0)
                if not a and not b:
                    continue
                unit = "sectors" if space == "global" else "passes"
                ratio = b / a if a else float("inf")
                print(f"{k:26} {space + ' ' + op + ' ' + unit:22} {a:12.0f} {b:12.0f} {ratio:9.3f}")
                out.write(json.dumps({"kernel": k, "space": space, "op": op, "kemu": a, "ncu": b,
                                      "launches": launches[k], "ratio": round(ratio, 4) if a else None}) + "\n")
    print(f"access_vs_ncu: {len(kernels)} kernels compared -> {sys.argv[3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
