#!/usr/bin/env python3
"""access_check.py - the model's kernels as kemu's access profile sees them
(test/gpu/kemu/prof.h), checked against caps: for every kernel of a run,
the global sectors its requests move and the shared-memory passes they take
may be at most CAP times the fewest their bytes need (summed over the
kernel's sites), and the kernels the run must have launched are there.

    access_check.py CAP RUN:FILE.jsonl:KERNEL,KERNEL... ...   (a template kernel by its bare name)

Prints one "ok - ..." or "not ok - ..." line per run; exit 1 on a failure.
test/run.sh gpu uses a cap of 1.10. The kernels this replaced read a row
per lane (4-5x the sectors), wrote 8 rows' pieces per request (1.6x for
the tensor-core forward) or stored wmma accumulators with two-way bank
conflicts (1.14-1.19x): each fails it. What stays under it: the dk/dv
pass's two-way conflicts on its S^T and dP^T stores (kept for A100
occupancy, 1.05x) and the per-row lse/D reads strided by the head count.
"""
import json
import sys
from collections import defaultdict


def check(cap, run, path, must):
    tot = defaultdict(lambda: [0, 0, 0, 0])  # kernel -> sectors, ideal, passes, ideal
    for line in open(path):
        r = json.loads(line)
        t = tot[r["kernel"]]
        if r["space"] == "global":
            t[0] += r["sectors"]
            t[1] += r["ideal"]
        else:
            t[2] += r["wavefronts"]
            t[3] += r["ideal"]
    names = {k.split("<")[0] for k in tot}  # templates by their name: attn_fwd_tc_kernel<128, 8>
    bad = [f"{k} was not launched" for k in must if k not in names]
    for k, (s, si, w, wi) in sorted(tot.items()):
        if si and s > cap * si:
            bad.append(f"{k} moves {s} sectors for {si} ({s / si:.2f}x)")
        if wi and w > cap * wi:
            bad.append(f"{k} takes {w} shared passes for {wi} ({w / wi:.2f}x)")
    if bad:
        print(f"not ok - kemu-access: {run}: " + "; ".join(bad))
        return False
    print(f"ok - kemu-access: {run}: {len(tot)} kernels within {cap}x the sectors and shared passes their bytes need")
    return True


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    cap = float(sys.argv[1])
    ok = True
    for spec in sys.argv[2:]:
        run, path, kernels = spec.split(":", 2)
        ok &= check(cap, run, path, [k for k in kernels.split(",") if k])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
