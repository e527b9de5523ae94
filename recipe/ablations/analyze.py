#!/usr/bin/env python3
"""Per-family / per-difficulty numbers for one `r1ctl up --recipe` data folder.

usage: analyze.py DATA_DIR R1CTL [--models label=path ...]

Reads DATA_DIR/recipe/report/report.md for the model folders, evaluates each model on the
teacher's eval split with the report's settings (k = 4, T = 1, 64 new tokens, seed 0) and
splits pass@1 / format / mean length by family and difficulty (eval.jsonl carries both).
Also: R1-Zero's response length per step by family/difficulty from the kept samples
(runs/<id>/samples/<step>.json, 2 groups a step), and metrics.jsonl's response_len_mean.
"""
import collections, json, os, re, subprocess, sys

data, r1ctl = sys.argv[1], sys.argv[2]
root = os.path.join(data, "recipe")
report = open(os.path.join(root, "report", "report.md")).read()
rows = re.findall(r"^\| ([^|]+?) \| [\d.]+% \|.*\| `([^`]+)` \|$", report, re.M)
evalf = os.path.join(root, "teacher", "data", "eval.jsonl")
meta = {}
for l in open(evalf):
    r = json.loads(l)
    meta[r["prompt"]] = (r["family"], r["difficulty"])
out = os.path.join(data, "analysis")
os.makedirs(out, exist_ok=True)
res = {}
for label, model in rows:
    if not model.startswith("/"):
        model = os.path.join(os.getcwd(), model)
    tag = re.sub(r"\W+", "_", label).strip("_")
    samples = os.path.join(out, tag + ".samples.jsonl")
    if not os.path.exists(samples):
        subprocess.run([r1ctl, "eval", "--model", model, "--dataset", evalf, "-k", "4",
                        "--max-new-tokens", "64", "--samples-out", samples, "--json"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cells = collections.defaultdict(lambda: [0, 0, 0, 0])  # n, correct, formatted, tokens
    for l in open(samples):
        o = json.loads(l)
        fam, d = meta[o["prompt"]]
        for s in o["samples"]:
            for key in [("all",), (fam,), (fam, d)]:
                c = cells[key]
                c[0] += 1; c[1] += s["correct"]; c[2] += s["formatted"]; c[3] += s["tokens"]
    res[label] = cells

keys = sorted({k for c in res.values() for k in c}, key=lambda k: (len(k) > 1 and k != ("all",), k))
print("| model | " + " | ".join("/".join(map(str, k)) for k in keys) + " |")
print("|---|" + "---:|" * len(keys))
for label, cells in res.items():
    print(f"| {label} | " + " | ".join(
        f"{100*c[1]/c[0]:.0f}% f{100*c[2]/c[0]:.0f} L{c[3]/c[0]:.0f}" if (c := cells.get(k)) else "-" for k in keys) + " |")

# R1-Zero over its steps: kept samples by family/difficulty, in thirds of the run.
runs = os.path.join(data, "runs")
train = [json.loads(l) for l in open(os.path.join(root, "teacher", "data", "train.jsonl"))]
for label, model in rows:
    m = re.search(r"run-(\d+)", model)
    if not m or not label.startswith(("R1-Zero", "R1 (")):
        continue
    rid = m.group(1)
    met = [json.loads(l) for l in open(os.path.join(runs, rid, "metrics.jsonl"))]
    lens = [(x["step"], x["response_len_mean"], x.get("format_rate"), x.get("accuracy", x.get("reward_accuracy_mean"))) for x in met if "response_len_mean" in x]
    print(f"\n{label} (run {rid}) metrics response_len_mean first/last: "
          + ", ".join(f"s{s}:{l:.1f}" for s, l, *_ in lens[:3] + lens[-3:]))
    sdir = os.path.join(runs, rid, "samples")
    if not os.path.isdir(sdir):
        continue
    steps = sorted(int(f[:-5]) for f in os.listdir(sdir) if f.endswith(".json"))
    if not steps:
        continue
    n = max(steps)
    agg = collections.defaultdict(lambda: [0, 0, 0])
    for st in steps:
        third = min(2, (st - 1) * 3 // n)
        for g in json.load(open(os.path.join(sdir, f"{st}.json")))["groups"]:
            t = train[g["row"] - 1]
            for c in g["completions"]:
                for key in [(t["family"],), (t["family"], t["difficulty"])]:
                    a = agg[(key, third)]
                    a[0] += 1; a[1] += c["tokens"]; a[2] += c["components"].get("accuracy", 0) > 0
    print("kept training samples, thirds of the run: key: (n, mean tokens, acc) per third")
    for key in sorted({k for k, _ in agg}, key=str):
        print("  ", "/".join(map(str, key)), " ".join(
            f"[{a[0]} {a[1]/a[0]:.1f} {a[2]/a[0]:.2f}]" if (a := agg.get((key, t))) else "[-]" for t in range(3)))
