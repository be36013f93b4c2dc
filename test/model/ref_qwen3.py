#!/usr/bin/env python3
"""Reference Qwen3 in torch for the C model's tests (test/model/run.sh).

transformers is not available on our machines, so this is a small Qwen3
written from the definition in transformers' modeling_qwen3.py:
RMSNorm in fp32-or-wider then times the weight, q_norm/k_norm per head
before rotate_half RoPE (inv_freq, angles, cos/sin computed in fp32 as HF
does), GQA by repeating kv heads, SwiGLU MLP, no biases, tied or untied
lm_head. It computes in float64 so that it is the more exact side of every
comparison.

For each config it writes a model directory (config.json + a
model.safetensors written by hand: 8-byte little-endian header length, JSON
header, raw data) and expected.safetensors / expected.json holding the
inputs, logits, loss, every parameter's gradient and the losses of ten
AdamW steps.

usage: ref_qwen3.py OUTDIR   (writes OUTDIR/<config name>/...)
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_num_threads(1)

CONFIGS = {
    # GQA (4 query heads on 2 kv heads), tied embeddings, fp32 on disk
    "gqa_tied": dict(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-6,
                     rope_theta=10000.0, tie_word_embeddings=True, dtype="F32", B=2, T=7),
    # head_dim (16) != hidden/heads (24/4 = 6), one kv head, untied head,
    # rope_theta given inside rope_parameters (newer transformers), bf16 on disk
    "hd16_untied": dict(vocab_size=80, hidden_size=24, intermediate_size=40, num_hidden_layers=3,
                        num_attention_heads=4, num_key_value_heads=1, head_dim=16, rms_norm_eps=1e-5,
                        rope_parameters={"rope_type": "default", "rope_theta": 500.0},
                        tie_word_embeddings=False, dtype="BF16", B=3, T=9),
    # plain multi-head attention, sizes that are multiples of the vector width
    "mha_wide": dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6,
                     rope_theta=1000000.0, tie_word_embeddings=False, dtype="F32", B=1, T=20),
    # long context: RoPE angles at positions up to 767 (fp32 angles as HF computes them)
    "long_ctx": dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=1, head_dim=8, rms_norm_eps=1e-6,
                     rope_theta=10000.0, tie_word_embeddings=True, dtype="F32", B=1, T=768),
}

ADAM = dict(lr=3e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=0.5,
            warmup_steps=3, total_steps=10, min_lr_ratio=0.1, steps=10)


def rope_theta(cfg):
    if "rope_parameters" in cfg:
        return cfg["rope_parameters"]["rope_theta"]
    return cfg["rope_theta"]


def tensor_names(cfg):
    V, D, F = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]
    hd, Hq, Hkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    out = [("model.embed_tokens.weight", (V, D))]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", (D,)),
                (p + "self_attn.q_proj.weight", (Hq * hd, D)),
                (p + "self_attn.k_proj.weight", (Hkv * hd, D)),
                (p + "self_attn.v_proj.weight", (Hkv * hd, D)),
                (p + "self_attn.o_proj.weight", (D, Hq * hd)),
                (p + "self_attn.q_norm.weight", (hd,)),
                (p + "self_attn.k_norm.weight", (hd,)),
                (p + "post_attention_layernorm.weight", (D,)),
                (p + "mlp.gate_proj.weight", (cfg["intermediate_size"], D)),
                (p + "mlp.up_proj.weight", (cfg["intermediate_size"], D)),
                (p + "mlp.down_proj.weight", (D, cfg["intermediate_size"]))]
    out.append(("model.norm.weight", (D,)))
    if not cfg["tie_word_embeddings"]:
        out.append(("lm_head.weight", (V, D)))
    return out


def write_safetensors(path, tensors, dtype="F32"):
    """tensors: list of (name, float32 numpy array). BF16 rounds to nearest even."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors:
        a = np.ascontiguousarray(a, dtype=np.float32)
        if dtype == "BF16":
            raw = torch.from_numpy(a).to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        else:
            raw = a.astype("<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(cfg, T):
    """As HF's Qwen3RotaryEmbedding: fp32 inv_freq and angles, then cos/sin."""
    hd = cfg["head_dim"]
    inv_freq = 1.0 / (rope_theta(cfg) ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    pos = torch.arange(T, dtype=torch.float32)
    freqs = pos[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().double(), emb.sin().double()


def forward(cfg, P, ids):
    """ids [B, T] -> logits [B, T, V] in float64. P: name -> tensor."""
    B, T = ids.shape
    hd, Hq, Hkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    eps = cfg["rms_norm_eps"]
    cos, sin = rope_cos_sin(cfg, T)
    x = P["model.embed_tokens.weight"][ids]
    causal = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, P[p + "input_layernorm.weight"], eps)
        q = (h @ P[p + "self_attn.q_proj.weight"].T).view(B, T, Hq, hd)
        k = (h @ P[p + "self_attn.k_proj.weight"].T).view(B, T, Hkv, hd)
        v = (h @ P[p + "self_attn.v_proj.weight"].T).view(B, T, Hkv, hd)
        q = rms_norm(q, P[p + "self_attn.q_norm.weight"], eps).transpose(1, 2)
        k = rms_norm(k, P[p + "self_attn.k_norm.weight"], eps).transpose(1, 2)
        v = v.transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(Hq // Hkv, dim=1)  # GQA: query head h uses kv head h // (Hq/Hkv)
        v = v.repeat_interleave(Hq // Hkv, dim=1)
        att = (q @ k.transpose(-1, -2)) * hd ** -0.5 + causal
        o = (torch.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(B, T, Hq * hd)
        x = x + o @ P[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, P[p + "post_attention_layernorm.weight"], eps)
        g = h @ P[p + "mlp.gate_proj.weight"].T
        u = h @ P[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ P[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, P["model.norm.weight"], eps)
    head = P["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else P["lm_head.weight"]
    return x @ head.T


def masked_ce(logits, targets, mask):
    """mean over positions of -mask * log p(target); targets < 0 ignored."""
    V = logits.shape[-1]
    logp = torch.log_softmax(logits.reshape(-1, V), dim=-1)
    t = targets.reshape(-1)
    valid = t >= 0
    w = mask.reshape(-1) * valid
    lp = logp[torch.arange(t.numel()), t.clamp(min=0)]
    return -(w * lp).sum() / w.sum(), lp * valid


def lr_at(s):
    a = ADAM
    if a["warmup_steps"] > 0 and s < a["warmup_steps"]:
        return a["lr"] * (s + 1) / a["warmup_steps"]
    prog = min(1.0, (s - a["warmup_steps"]) / (a["total_steps"] - a["warmup_steps"]))
    lo = a["lr"] * a["min_lr_ratio"]
    return lo + 0.5 * (a["lr"] - lo) * (1 + math.cos(math.pi * prog))


def make(name, cfg, outdir):
    g = torch.Generator().manual_seed(1234 + len(name))
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    names = tensor_names(cfg)
    weights = []
    for n, shape in names:
        if len(shape) == 1:  # norm weights near 1, not exactly 1, so their gradients matter
            a = 1.0 + 0.2 * torch.randn(shape, generator=g)
        else:
            a = 0.3 * torch.randn(shape, generator=g)
        a = a.float()
        if cfg["dtype"] == "BF16":  # the values the C side will load
            a = a.to(torch.bfloat16).float()
        weights.append((n, a.numpy()))
    write_safetensors(os.path.join(d, "model.safetensors"), weights, cfg["dtype"])
    conf = {k: v for k, v in cfg.items() if k not in ("dtype", "B", "T")}
    conf.update(model_type="qwen3", architectures=["Qwen3ForCausalLM"], hidden_act="silu",
                attention_bias=False, max_position_embeddings=512,
                torch_dtype="bfloat16" if cfg["dtype"] == "BF16" else "float32")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(conf, f, indent=2)

    B, T, V = cfg["B"], cfg["T"], cfg["vocab_size"]
    ids = torch.randint(0, V, (B, T), generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    targets[0, 0] = -1  # ignored position
    mask = (torch.rand((B, T), generator=g) < 0.8).double()
    mask[0, 1] = 0.5  # a fractional weight
    if mask.sum() == 0:
        mask[0, 2] = 1.0

    P = {n: torch.tensor(a, dtype=torch.float64, requires_grad=True) for n, a in weights}
    logits = forward(cfg, P, ids)
    loss, logprobs = masked_ce(logits, targets, mask)
    loss.backward()
    expected = [("ids", ids.float().numpy()), ("targets", targets.float().numpy()),
                ("mask", mask.float().numpy()), ("logits", logits.detach().float().numpy()),
                ("logprobs", logprobs.detach().float().numpy().reshape(B, T))]
    expected += [("grad." + n, P[n].grad.float().numpy()) for n, _ in names]

    # the RL objective: gradient of sum_i coef[i] * logprob[i] for arbitrary
    # per-token coefficients (what qwen3_backward_logprobs takes)
    coef = torch.randn((B * T,), generator=g, dtype=torch.float64)
    P = {n: torch.tensor(a, dtype=torch.float64, requires_grad=True) for n, a in weights}
    _, lp = masked_ce(forward(cfg, P, ids), targets, mask)
    (coef * lp).sum().backward()
    expected.append(("coef", coef.float().numpy()))
    expected += [("gradlp." + n, P[n].grad.float().numpy()) for n, _ in names]

    # the same plus an entropy bonus: sum_i coef[i] * logprob[i] + sum_i went[i] * H_i,
    # H_i the entropy of position i's next-token distribution, every position
    # (what qwen3_backward_logprobs_entropy takes; the ignored target keeps its H)
    went = torch.randn((B * T,), generator=g, dtype=torch.float64)
    P = {n: torch.tensor(a, dtype=torch.float64, requires_grad=True) for n, a in weights}
    lg = forward(cfg, P, ids)
    _, lp = masked_ce(lg, targets, mask)
    ls = torch.log_softmax(lg.reshape(B * T, V), dim=-1)
    H = -(ls.exp() * ls).sum(-1)
    ((coef * lp).sum() + (went * H).sum()).backward()
    expected.append(("went", went.float().numpy()))
    expected += [("gradent." + n, P[n].grad.float().numpy()) for n, _ in names]

    # ten AdamW steps on the same batch, torch's optimiser and clipping
    P = {n: torch.tensor(a, dtype=torch.float64, requires_grad=True) for n, a in weights}
    decay = [P[n] for n, s in names if len(s) == 2]
    no_decay = [P[n] for n, s in names if len(s) == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAM["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=ADAM["lr"], betas=(ADAM["beta1"], ADAM["beta2"]), eps=ADAM["eps"])
    losses = []
    for s in range(ADAM["steps"]):
        for group in opt.param_groups:
            group["lr"] = lr_at(s)
        opt.zero_grad()
        loss, _ = masked_ce(forward(cfg, P, ids), targets, mask)
        losses.append(loss.item())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(P.values()), ADAM["grad_clip"])
        opt.step()
    expected.append(("adam_losses", np.array(losses, dtype=np.float32)))
    write_safetensors(os.path.join(d, "expected.safetensors"), expected, "F32")
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump({"B": B, "T": T, "adam": ADAM, "loss": float(losses[0])}, f, indent=2)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for name, cfg in CONFIGS.items():
        make(name, cfg, sys.argv[1])
    print("\n".join(CONFIGS))


if __name__ == "__main__":
    main()
