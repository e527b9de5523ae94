"""Writes GSM8K-format data for the real-model CPU run (docs/reproduction.md).

Rows in openai/gsm8k's schema, {"question", "answer"}, the answer a worked solution with
calculator annotations ending in `#### n` (thousands written with commas, as GSM8K does).
Small one-step word problems, few of them, so that a 10M-parameter model can learn some on a
CPU in minutes. Also writes the SFT pairs {"prompt", "completion"} of the cold start (the same
solutions). Standard library only; seeded, so the files are the same every time.

Usage: python3 examples/real-model/make_data.py OUT_DIR
"""
import json, os, random, sys

NAMES = ["Tom", "Ann", "Lee", "Mia", "Sam", "Ivy"]
THINGS = ["apples", "pencils", "stamps", "books", "coins", "shells"]


def row(rng):
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    if rng.random() < 0.5:
        q = f"{name} has {a} {thing} and finds {b} more. How many {thing} does {name} have now?"
        c = a + b
        sol = f"{name} has {a}+{b} = <<{a}+{b}={c}>>{c} {thing}.\n#### {c}"
    else:
        k = rng.choice([100, 250, 1000])
        q = f"A box holds {k} {thing}. How many {thing} are in {a} boxes?"
        c = a * k
        sol = f"{a} boxes hold {a}*{k} = <<{a}*{k}={c}>>{c:,} {thing}.\n#### {c:,}"
    return {"question": q, "answer": sol}


def main(out):
    rng = random.Random(0)
    os.makedirs(out, exist_ok=True)
    train = [row(rng) for _ in range(24)]
    test = [row(rng) for _ in range(16)]
    for name, rows in [("train.jsonl", train), ("test.jsonl", test)]:
        with open(os.path.join(out, name), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    with open(os.path.join(out, "sft.jsonl"), "w") as f:
        for r in train:
            f.write(json.dumps({"prompt": r["question"], "completion": r["answer"]}) + "\n")
    print(f"{len(train)} train, {len(test)} test rows -> {out}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
