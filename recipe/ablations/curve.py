#!/usr/bin/env python3
"""Per-family pass@1 and mean length of every checkpoint of one run (and its base model).

usage: curve.py DATA_DIR RUN_ID EVAL_JSONL R1CTL
Evaluates each DATA_DIR/checkpoints/run-ID/step-N (k = 4, T = 1, 64 new tokens, seed 0).
"""
import collections, json, os, re, subprocess, sys

data, rid, evalf, r1ctl = sys.argv[1:5]
spec = json.load(open(os.path.join(data, "runs", rid, "spec.json")))
meta = {(r := json.loads(l))["prompt"]: (r["family"], r["difficulty"]) for l in open(evalf)}
ck = os.path.join(data, "checkpoints", f"run-{rid}")
steps = sorted((int(m.group(1)), os.path.join(ck, d)) for d in os.listdir(ck) if (m := re.fullmatch(r"step-(\d+)", d)))
models = [(0, spec["base_model"])] + steps
out = os.path.join(data, "analysis", f"run-{rid}")
os.makedirs(out, exist_ok=True)
table = {}
for step, model in models:
    samples = os.path.join(out, f"step-{step}.samples.jsonl")
    if not os.path.exists(samples):
        subprocess.run([r1ctl, "eval", "--model", model, "--dataset", evalf, "-k", "4", "--max-new-tokens", "64",
                        "--samples-out", samples, "--json"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cells = collections.defaultdict(lambda: [0, 0, 0])
    for l in open(samples):
        o = json.loads(l)
        fam, d = meta[o["prompt"]]
        for s in o["samples"]:
            for key in ["all", fam, f"{fam}/{d}"]:
                c = cells[key]; c[0] += 1; c[1] += s["correct"]; c[2] += s["tokens"]
    table[step] = cells
keys = sorted({k for c in table.values() for k in c}, key=lambda k: (k != "all", k))
print(f"run {rid} `{spec['name']}`: pass@1 / mean tokens per eval cell")
print("| step | " + " | ".join(keys) + " |\n|---:|" + "---:|" * len(keys))
for step, cells in table.items():
    print(f"| {step} | " + " | ".join(f"{100*c[1]/c[0]:.0f}% L{c[2]/c[0]:.1f}" for k in keys if (c := cells[k])) + " |")
