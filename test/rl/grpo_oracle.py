#!/usr/bin/python3
"""grpo_oracle.py - rl/grpo.c against an independent numpy oracle.

For random batches under many configurations this script writes the batch as
JSON, runs build/test/rl_grpo_check (rl/grpo.c behind a JSON front end) and
compares with:
  * the loss computed here, from the formulas, in float64 numpy;
  * d(loss)/d(logprob) and d(loss)/d(entropy) by central finite differences
    of that numpy loss (an oracle that shares no derivation with grpo.c);
  * advantages (np.std with ddof=1, like torch.std) and the clip / KL stats.
Prints one "ok - ..." / "not ok - ..." line per configuration.

Usage: grpo_oracle.py BUILD/test/rl_grpo_check [seed]
"""
import json
import subprocess
import sys

import numpy as np

LOG_RATIO_MAX = 20.0


def advantages(r, g, std_norm, eps):
    r = r.reshape(-1, g)
    a = r - r.mean(axis=1, keepdims=True)
    if std_norm:
        sd = r.std(axis=1, ddof=1, keepdims=True) if g > 1 else np.zeros((r.shape[0], 1))
        a = a / (sd + eps)
    varies = (r != r[:, :1]).any(axis=1)
    a = np.where(varies[:, None], a, 0.0)
    return a.reshape(-1), varies


def loss(case, logp, ent):
    """The GRPO loss as grpo.h states it, in float64. Returns (loss, parts)."""
    c = case["cfg"]
    g = case["group_size"]
    offs = np.array(case["offsets"])
    n = len(offs) - 1
    mask = np.array(case["mask"], dtype=bool)
    old = np.array(case["old_logp"], dtype=np.float64)
    ref = None if case["ref_logp"] is None else np.array(case["ref_logp"], dtype=np.float64)
    r = np.array(case["rewards"], dtype=np.float64)
    adv, varies = advantages(r, g, c["std_norm"], 1e-6)
    seq_of = np.repeat(np.arange(n), np.diff(offs))
    keep_seq = np.ones(n, dtype=bool)
    if c["dynamic_sampling"]:
        keep_seq &= np.repeat(varies, g)
    if c["mask_overlong_malformed"]:
        keep_seq &= ~(np.array(case["overlong"], bool) & np.array(case["malformed"], bool))
    m = mask & keep_seq[seq_of]
    counts = np.bincount(seq_of, weights=m, minlength=n)
    used = counts > 0
    nused = used.sum()
    total = m.sum()
    if total == 0:
        return 0.0, {}
    if c["agg"] == "token_mean":
        w = np.full(len(m), 1.0 / total)
    elif c["agg"] == "seq_mean":
        w = 1.0 / (nused * np.maximum(counts[seq_of], 1))
    else:
        w = np.full(len(m), 1.0 / (nused * c["dr_grpo_norm"]))
    w = np.where(m, w, 0.0)
    A = adv[seq_of]
    rho = np.exp(np.clip(logp - old, -LOG_RATIO_MAX, LOG_RATIO_MAX))
    rc = np.clip(rho, 1 - c["clip_low"], 1 + c["clip_high"])
    pg = -np.minimum(rho * A, rc * A)
    f = pg.copy()
    kl = np.zeros_like(f)
    if ref is not None:
        d = ref - logp
        kl = np.exp(d) - d - 1
        f += c["kl_coef"] * kl
    if ent is not None:
        f -= c["entropy_coef"] * ent
    clipped_hi = m & (rho > 1 + c["clip_high"]) & (A > 0)
    clipped_lo = m & (rho < 1 - c["clip_low"]) & (A < 0)
    parts = {
        "pg_loss": float((w * pg).sum()),
        "kl_mean": float(kl[m].mean()) if ref is not None else 0.0,
        "clip_frac_high": clipped_hi.sum() / total,
        "clip_frac_low": clipped_lo.sum() / total,
        "tokens": int(total),
        "adv": adv,
    }
    return float((w * f).sum()), parts


def random_case(rng, cfg):
    g = int(rng.integers(2, 6))
    ngroups = int(rng.integers(1, 5))
    n = g * ngroups
    lens = rng.integers(0, 12, size=n)
    offs = np.concatenate([[0], np.cumsum(lens)]).astype(int)
    t = int(offs[-1])
    old = rng.uniform(-3, -0.05, size=t).astype(np.float32)
    # current policy near the old one, some tokens far enough to be clipped
    logp = (old + rng.normal(0, 0.25, size=t)).astype(np.float32)
    ref = (old + rng.normal(0, 0.2, size=t)).astype(np.float32)
    ent = rng.uniform(0, 3, size=t).astype(np.float32)
    rewards = rng.choice([0.0, 1.0, 2.0, 0.5], size=n).astype(np.float32)
    if ngroups > 1:  # one group where all agree, for dynamic sampling
        rewards[:g] = 1.0
    return {
        "cfg": cfg,
        "group_size": g,
        "offsets": offs.tolist(),
        "mask": (rng.random(t) < 0.7).astype(int).tolist(),
        "logp": logp.tolist(),
        "old_logp": old.tolist(),
        "ref_logp": ref.tolist() if cfg["kl_coef"] else None,
        "entropy": ent.tolist() if cfg["entropy_coef"] else None,
        "rewards": rewards.tolist(),
        "overlong": (rng.random(n) < 0.3).astype(int).tolist(),
        "malformed": (rng.random(n) < 0.5).astype(int).tolist(),
    }


CONFIGS = [
    ("token_mean std kl ent", dict(std_norm=True, agg="token_mean", kl_coef=0.001, entropy_coef=0.001)),
    ("token_mean std big kl", dict(std_norm=True, agg="token_mean", kl_coef=0.5, entropy_coef=0.0)),
    ("seq_mean std", dict(std_norm=True, agg="seq_mean", kl_coef=0.0, entropy_coef=0.01)),
    ("dr_grpo no std no kl", dict(std_norm=False, agg="dr_grpo", kl_coef=0.0, entropy_coef=0.0)),
    ("dynamic sampling", dict(std_norm=True, agg="token_mean", kl_coef=0.01, entropy_coef=0.0,
                              dynamic_sampling=True)),
    ("no overlong masking", dict(std_norm=True, agg="token_mean", kl_coef=0.0, entropy_coef=0.0,
                                 mask_overlong_malformed=False)),
    ("symmetric clip 0.1", dict(std_norm=True, agg="token_mean", kl_coef=0.0, entropy_coef=0.0,
                                clip_low=0.1, clip_high=0.1)),
]


def full_cfg(over):
    c = dict(clip_low=0.2, clip_high=0.28, std_norm=True, agg="token_mean", dr_grpo_norm=16.0,
             kl_coef=0.001, entropy_coef=0.001, mask_overlong_malformed=True, dynamic_sampling=False)
    c.update(over)
    return c


def check(binary, case):
    out = subprocess.run([binary], input=json.dumps(case), capture_output=True, text=True)
    if out.returncode != 0:
        return "grpo_check failed: " + out.stdout + out.stderr
    got = json.loads(out.stdout)
    logp = np.array(case["logp"], dtype=np.float64)
    ent = None if case["entropy"] is None else np.array(case["entropy"], dtype=np.float64)
    want, parts = loss(case, logp, ent)
    if not np.isclose(got["loss"], want, rtol=1e-6, atol=1e-9):
        return f"loss {got['loss']} != numpy {want}"
    if parts:
        for k in ("pg_loss", "kl_mean", "clip_frac_high", "clip_frac_low"):
            if case["ref_logp"] is None and k == "kl_mean":
                continue
            if not np.isclose(got[k], parts[k], rtol=1e-6, atol=1e-9):
                return f"{k} {got[k]} != numpy {parts[k]}"
        if got["tokens"] != parts["tokens"]:
            return f"tokens {got['tokens']} != {parts['tokens']}"
        if not np.allclose(got["adv"], parts["adv"], rtol=1e-5, atol=1e-6):
            return f"advantages {got['adv']} != numpy {parts['adv'].tolist()}"
    # gradients by central differences of the numpy loss
    h = 1e-6
    num = np.zeros_like(logp)
    for i in range(len(logp)):
        lp = logp.copy(); lp[i] += h
        up, _ = loss(case, lp, ent)
        lp[i] -= 2 * h
        dn, _ = loss(case, lp, ent)
        num[i] = (up - dn) / (2 * h)
    dl = np.array(got["dlogp"])
    if not np.allclose(dl, num, rtol=1e-4, atol=1e-7):
        i = int(np.argmax(np.abs(dl - num)))
        return f"dlogp[{i}] {dl[i]} != finite difference {num[i]}"
    if ent is not None:
        nd = np.zeros_like(ent)
        for i in range(len(ent)):
            e = ent.copy(); e[i] += h
            up, _ = loss(case, logp, e)
            e[i] -= 2 * h
            dn, _ = loss(case, logp, e)
            nd[i] = (up - dn) / (2 * h)
        de = np.array(got["dentropy"])
        if not np.allclose(de, nd, rtol=1e-4, atol=1e-8):
            i = int(np.argmax(np.abs(de - nd)))
            return f"dentropy[{i}] {de[i]} != finite difference {nd[i]}"
    return None


def main():
    binary = sys.argv[1]
    rng = np.random.default_rng(int(sys.argv[2]) if len(sys.argv) > 2 else 7)
    failed = 0
    for name, over in CONFIGS:
        why, clipped = None, 0
        for _ in range(25):
            case = random_case(rng, full_cfg(over))
            why = check(binary, case)
            if why:
                break
        if why:
            failed += 1
            print(f"not ok - grpo vs numpy: {name}: {why}")
        else:
            print(f"ok - grpo vs numpy: {name} (25 random batches, loss + stats + finite-difference gradients)")
    # the clip must actually bite in these cases, or the clip test proves nothing
    case = random_case(np.random.default_rng(1), full_cfg({}))
    _, parts = loss(case, np.array(case["logp"], np.float64), None)
    if parts and parts["clip_frac_high"] + parts["clip_frac_low"] > 0:
        print("ok - grpo oracle cases exercise the clip")
    else:
        failed += 1
        print("not ok - grpo oracle cases exercise the clip: no token clipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
