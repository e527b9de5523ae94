"""PyTorch reference for the learner's minibatch loop (CPU, float32).

Writes learner/tests/data/minibatch_golden.json: several optimizer steps on one rollout
batch of the qwen2-tiny fixture (model/tests/fixtures/qwen2-tiny) with transformers'
Qwen2 and torch's AdamW, as r1's `Trainer::grpo_step` takes them with
`with_steps_per_batch(M, E)`:

- π_old is the policy's log-probs at the batch's start (no gradient), fixed for all steps;
- the batch is split into M contiguous minibatches, each epoch steps once per minibatch,
  the loss of a minibatch normalised by its own counts;
- truncated importance weights min(π_old/π_behaviour, C) on the policy-gradient term only,
  where the first rows are stale (their behaviour log-probs are far from π_old);
- global-norm clipping, then AdamW, constant learning rate.

Re-run after changing the formula on purpose:

    ~/.cache/r1-py/bin/python learner/reference/minibatch_reference.py
"""
import copy
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "model" / "tests" / "fixtures" / "qwen2-tiny"
OUT = ROOT / "learner" / "tests" / "data" / "minibatch_golden.json"
torch.manual_seed(7)

CFG = {
    "clip_eps_low": 0.2, "clip_eps_high": 0.28, "beta": 0.01, "tis_cap": 2.0,
    "log_ratio_clamp": 20.0, "lr": 2e-3, "beta1": 0.9, "beta2": 0.95, "adam_eps": 1e-8,
    "weight_decay": 0.01, "max_grad_norm": 1.0, "minibatches": 2, "epochs": 2,
}

ROLLOUTS = [  # (prompt, completion, advantage); the first two are stale
    ([3, 17, 40, 2], [9, 100, 7], 1.0),
    ([3, 17, 40, 2], [31, 32], -0.5),
    ([5, 6, 7], [8, 250, 11, 12, 13], 0.7),
    ([5, 6, 7], [14], -1.2),
    ([1, 2], [3, 4, 5, 6, 7, 8], 0.3),
    ([1, 2], [60, 61, 62], -0.3),
]
STALE = 2


def completion_logp(model, prompt, completion):
    ids = torch.tensor([prompt + completion])
    logits = model(ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    start = len(prompt) - 1
    pos = torch.arange(start, start + len(completion))
    return logp[pos, torch.tensor(completion)]


def main():
    model = AutoModelForCausalLM.from_pretrained(FIXTURE, dtype=torch.float32)
    model.train()
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)

    with torch.no_grad():
        old = [completion_logp(model, p, c) for p, c, _ in ROLLOUTS]
        ref = [completion_logp(reference, p, c) for p, c, _ in ROLLOUTS]
    behaviour = []
    for i, o in enumerate(old):
        noise = 0.6 * torch.randn(o.shape) if i < STALE else 1e-3 * torch.randn(o.shape)
        behaviour.append(o - noise.abs() if i == 0 else o + noise)

    opt = torch.optim.AdamW(model.parameters(), lr=CFG["lr"], betas=(CFG["beta1"], CFG["beta2"]),
                            eps=CFG["adam_eps"], weight_decay=CFG["weight_decay"])
    m = CFG["minibatches"]
    size = len(ROLLOUTS) // m
    c = CFG["log_ratio_clamp"]
    steps = []
    for _epoch in range(CFG["epochs"]):
        for k in range(m):
            rows = range(k * size, (k + 1) * size)
            opt.zero_grad()
            total = 0.0
            for i in rows:
                p, comp, adv = ROLLOUTS[i]
                logp = completion_logp(model, p, comp)
                ratio = torch.exp(torch.clamp(logp - old[i], -c, c))
                surr = ratio * adv
                surr_clip = torch.clamp(ratio, 1 - CFG["clip_eps_low"], 1 + CFG["clip_eps_high"]) * adv
                pg = -torch.min(surr, surr_clip)
                w = torch.clamp(torch.exp(torch.clamp(old[i] - behaviour[i], -c, c)), max=CFG["tis_cap"])
                pg = pg * w
                d = ref[i] - logp
                kl = torch.exp(d) - d - 1
                per_seq = (pg + CFG["beta"] * kl).mean()  # seq-mean-token-mean
                loss = per_seq / size
                loss.backward()
                total += float(loss.detach())
            norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), CFG["max_grad_norm"]))
            opt.step()
            steps.append({"loss": total, "grad_norm": norm})
    with torch.no_grad():
        final = [completion_logp(model, p, c_) for p, c_, _ in ROLLOUTS]
    data = {
        "config": CFG,
        "rollouts": [{"prompt": p, "completion": comp, "advantage": a, "behaviour_logp": behaviour[i].tolist()}
                     for i, (p, comp, a) in enumerate(ROLLOUTS)],
        "steps": steps,
        "final_logp": [f.tolist() for f in final],
    }
    OUT.write_text(json.dumps(data, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {OUT.name}: {len(steps)} steps, losses {[round(s['loss'], 5) for s in steps]}")


if __name__ == "__main__":
    main()
