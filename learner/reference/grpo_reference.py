"""PyTorch reference for r1-learner's golden tests (CPU, float32).

Writes learner/tests/data/{grpo,sft,optim}_golden.json. The Rust tests read the same
inputs, compute the same quantities with Burn, and must match within 1e-5 (losses and
gradients) or 1e-6 (optimizer trajectories). Re-run after changing a formula on purpose:

    ~/.cache/r1-py/bin/python learner/reference/grpo_reference.py

The formulas below are written from the papers (DeepSeekMath §4.1, DAPO, Dr. GRPO) in
plain torch, independently of the Rust code.
"""
import itertools
import json
import math
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent.parent / "tests" / "data"
torch.manual_seed(1234)


def tolist(t):
    return t.detach().double().tolist()


# ---------------------------------------------------------------- group advantages
def advantages(rewards, group_size, std_normalize, eps):
    r = torch.tensor(rewards, dtype=torch.float64).view(-1, group_size)
    mean = r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, keepdim=True)  # unbiased, as TRL and veRL use
    adv = r - mean
    if std_normalize:
        adv = adv / (std + eps)
    same = (r == r[:, :1]).all(dim=1)
    adv[same] = 0.0  # no signal; never 0/0
    degenerate = same.nonzero().flatten().tolist()
    return adv.flatten().float(), degenerate


# ---------------------------------------------------------------- GRPO
def grpo(logp, old, ref, beh, adv, mask, cfg):
    """Loss to minimise and stats; logp requires grad."""
    pad = mask <= 0
    c = cfg["log_ratio_clamp"]
    old = logp.detach() if old is None else old
    log_ratio = torch.clamp(torch.where(pad, torch.zeros_like(logp), logp - old), -c, c)
    ratio = torch.exp(log_ratio)
    a = adv[:, None]
    surr = ratio * a
    surr_clip = torch.clamp(ratio, 1 - cfg["clip_eps_low"], 1 + cfg["clip_eps_high"]) * a
    pg = -torch.min(surr, surr_clip)
    # Truncated IS against the behaviour policy, on the policy-gradient term only (veRL).
    w = None
    capped = None
    if cfg["tis_cap"] is not None and beh is not None:
        d = torch.clamp(torch.where(pad, torch.zeros_like(old), old - beh), -c, c)
        if cfg["tis_level"] == "sequence":
            w = torch.exp(torch.clamp((d * mask).sum(1, keepdim=True), -c, c)).expand_as(d)
        else:
            w = torch.exp(d)
        capped = (w >= cfg["tis_cap"]).float()
        w = torch.clamp(w, max=cfg["tis_cap"]).detach()
        pg = pg * w
    kl = None
    if ref is not None:
        d = torch.where(pad, torch.zeros_like(logp), ref - logp)
        kl = torch.exp(d) - d - 1
    loss_tok = pg + cfg["beta"] * kl if cfg["beta"] > 0 else pg
    loss_tok = loss_tok * mask
    B, T = logp.shape
    agg = cfg["aggregation"]
    if agg == "token-mean":
        loss = loss_tok.sum() / mask.sum().clamp(min=1)
    elif agg == "seq-mean-token-mean":
        loss = (loss_tok.sum(1) / mask.sum(1).clamp(min=1)).mean()
    elif agg == "seq-mean-token-sum-norm":
        loss = (loss_tok.sum(1) / cfg["token_sum_norm"]).mean()
    n = mask.sum()
    mm = lambda x: float((x.detach() * mask).sum() / n)
    stats = {
        "clip_frac": mm((surr_clip < surr).float()),
        "clip_frac_low": mm(((ratio < 1 - cfg["clip_eps_low"]) & (a < 0)).float()),
        "clip_frac_high": mm(((ratio > 1 + cfg["clip_eps_high"]) & (a > 0)).float()),
        "kl_ref_mean": None if kl is None else mm(kl),
        "approx_kl_old": mm(ratio - 1 - log_ratio),
        "ratio_mean": mm(ratio),
        "ratio_max": float((ratio.detach() * mask).max()),
        "tis_weight_mean": 1.0 if w is None else mm(w),
        "tis_capped_frac": 0.0 if capped is None else mm(capped),
        "tokens": float(n),
    }
    return loss, stats


def grpo_golden():
    group_size, groups, T = 4, 3, 9
    B = group_size * groups
    rewards = [1.0, 0.0, 0.0, 1.0,  0.5, 1.0, 0.0, 0.2,  1.0, 1.0, 1.0, 1.0]  # last group all equal
    mask = torch.zeros(B, T)
    for i in range(B):
        start = int(torch.randint(0, 3, ()))
        length = int(torch.randint(1, T - start + 1, ()))
        mask[i, start:start + length] = 1.0
    mask[5] = 0.0  # a row with no completion tokens
    logp = -3.0 * torch.rand(B, T)
    old = logp + 0.3 * torch.randn(B, T)
    ref = logp + 0.2 * torch.randn(B, T)
    beh = old + 0.6 * torch.randn(B, T)
    # garbage on padding must not leak (exp(100) overflows f32)
    for x, v in ((logp, -100.0), (old, 100.0), (ref, 100.0), (beh, -100.0)):
        x[mask <= 0] = v
    inputs = {"batch": B, "time": T, "group_size": group_size, "rewards": rewards,
              "logp": tolist(logp), "old_logp": tolist(old), "ref_logp": tolist(ref),
              "behaviour_logp": tolist(beh), "mask": tolist(mask)}

    cases = []
    def add(name, cfg, on_policy=False):
        adv, degenerate = advantages(rewards, group_size, cfg["std_normalize"], cfg["adv_eps"])
        lp = logp.clone().requires_grad_(True)
        loss, stats = grpo(lp, None if on_policy else old, ref, beh, adv, mask, cfg)
        loss.backward()
        cases.append({"name": name, "config": cfg, "on_policy": on_policy,
                      "advantages": tolist(adv), "degenerate_groups": degenerate,
                      "loss": float(loss.detach()), "grad_logp": tolist(lp.grad), "stats": stats})

    aggs = ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"]
    for agg, std, beta, (lo, hi), tis in itertools.product(aggs, [True, False], [0.0, 0.04], [(0.2, 0.2), (0.2, 0.28)], [None, 2.0]):
        cfg = {"clip_eps_low": lo, "clip_eps_high": hi, "beta": beta, "aggregation": agg,
               "token_sum_norm": 16 if agg == "seq-mean-token-sum-norm" else None,
               "std_normalize": std, "adv_eps": 1e-6, "tis_cap": tis, "tis_level": "token",
               "log_ratio_clamp": 20.0}
        add(f"{agg} std={std} beta={beta} eps=({lo},{hi}) tis={tis}", cfg)
    base = {"clip_eps_low": 0.2, "clip_eps_high": 0.2, "beta": 0.001, "aggregation": "seq-mean-token-mean",
            "token_sum_norm": None, "std_normalize": True, "adv_eps": 1e-6, "tis_cap": None,
            "tis_level": "token", "log_ratio_clamp": 20.0}
    add("dr-grpo with a constant normaliser", {**base, "aggregation": "seq-mean-token-sum-norm", "token_sum_norm": 12, "std_normalize": False})
    add("on-policy single update", base, on_policy=True)
    add("r1 clip eps=10", {**base, "clip_eps_low": 10.0, "clip_eps_high": 10.0})
    add("tight clip binds often", {**base, "clip_eps_low": 0.05, "clip_eps_high": 0.05, "tis_cap": 1.2})
    add("sequence-level tis", {**base, "beta": 0.04, "tis_cap": 2.0, "tis_level": "sequence"})
    add("sequence-level tis, dapo", {**base, "clip_eps_high": 0.28, "beta": 0.0, "aggregation": "token-mean", "tis_cap": 1.5, "tis_level": "sequence"})
    add("log-ratio clamp binds", {**base, "log_ratio_clamp": 0.25, "tis_cap": 2.0})
    return {"inputs": inputs, "cases": cases}


# ---------------------------------------------------------------- SFT
def sft_golden():
    B, T, V = 3, 6, 11
    logits = 2.0 * torch.randn(B, T, V)
    targets = torch.randint(0, V, (B, T))
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 0]], dtype=torch.float32)
    x = logits.clone().requires_grad_(True)
    nll = torch.nn.functional.cross_entropy(x.view(-1, V), targets.view(-1), reduction="none").view(B, T)
    loss = (nll * mask).sum() / mask.sum()
    loss.backward()
    return {"logits": tolist(logits), "targets": targets.tolist(), "mask": tolist(mask),
            "loss": float(loss.detach()), "grad_logits": tolist(x.grad)}


# ---------------------------------------------------------------- AdamW + schedule + clip
def factor(k, warmup, decay, total, min_ratio):
    if k < warmup:
        return (k + 1) / warmup
    if decay == "constant":
        return 1.0
    p = min(1.0, (k - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))


def optim_golden():
    x = torch.randn(8, 4)
    y = torch.randn(8, 3)
    w0 = torch.randn(4, 3)
    b0 = torch.randn(3)
    cases = []
    for name, opt, sched, steps in [
        ("cosine warmup, clipped", {"lr": 0.05, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "max_grad_norm": 6.5},
         {"warmup_steps": 2, "decay": "cosine", "total_steps": 6, "min_lr_ratio": 0.1}, 8),
        ("constant, unclipped", {"lr": 0.01, "beta1": 0.8, "beta2": 0.999, "eps": 1e-6, "weight_decay": 0.0, "max_grad_norm": None},
         {"warmup_steps": 0, "decay": "constant", "total_steps": 0, "min_lr_ratio": 0.0}, 5),
    ]:
        w = w0.clone().requires_grad_(True)
        b = b0.clone().requires_grad_(True)
        o = torch.optim.AdamW([w, b], lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"], weight_decay=opt["weight_decay"])
        s = torch.optim.lr_scheduler.LambdaLR(o, lambda k: factor(k, sched["warmup_steps"], sched["decay"], sched["total_steps"], sched["min_lr_ratio"]))
        traj = []
        for _ in range(steps):
            o.zero_grad()
            loss = ((x @ w + b - y) ** 2).mean() * 3.0
            loss.backward()
            lr = o.param_groups[0]["lr"]
            if opt["max_grad_norm"] is not None:
                norm = float(torch.nn.utils.clip_grad_norm_([w, b], opt["max_grad_norm"]))
            else:
                norm = float(torch.cat([w.grad.flatten(), b.grad.flatten()]).norm())
            o.step()
            s.step()
            traj.append({"lr": lr, "grad_norm": norm, "w": tolist(w), "b": tolist(b)})
        cases.append({"name": name, "optim": {**opt, "schedule": sched}, "steps": traj})
    return {"x": tolist(x), "y": tolist(y), "w0": tolist(w0), "b0": tolist(b0), "cases": cases}


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, make in [("grpo", grpo_golden), ("sft", sft_golden), ("optim", optim_golden)]:
        data = make()
        (OUT / f"{name}_golden.json").write_text(json.dumps(data, indent=None, separators=(",", ":")) + "\n")
        print(f"wrote {name}_golden.json")
