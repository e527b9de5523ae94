#!/usr/bin/env python3
"""Scores bench/reward/math_pairs.jsonl with math-verify (PyPI `math-verify`) on one core.

Usage: python math_verify_bench.py PAIRS.jsonl [VERDICTS.jsonl]
For each pair: parse the gold answer (wrapped in $...$, as math-verify's docs do), parse the
completion with the default extraction configs, verify. Prints a JSON summary: agreement with
the labels and milliseconds per answer (parse gold + parse completion + verify, first pass, so
its LRU parse caches do not hide the cost of answers it has not seen), after a warm-up on
answers outside the set so that imports and parser construction are not counted. Both wall
and process CPU time are reported; on a shared machine CPU time is the fairer one.
"""
import json
import sys
import time
from collections import defaultdict

from math_verify import parse, verify


def main():
    pairs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    for warm in ["1", "\\frac{2}{3}", "(1, 2)", "x^2+1", "[0, 1)"]:
        verify(parse("$" + warm + "$"), parse("so $\\boxed{" + warm + "}$"))
    verdicts = []
    kind_cpu, kind_n = defaultdict(float), defaultdict(int)
    start, cpu = time.perf_counter(), time.process_time()
    for p in pairs:
        one = time.process_time()
        try:
            gold = parse("$" + p["gold"] + "$")
            pred = parse(p["completion"])
            verdicts.append(bool(verify(gold, pred)))
        except Exception:  # math-verify should not raise, but a crash counts as "not equal"
            verdicts.append(False)
        kind_cpu[p["kind"]] += time.process_time() - one
        kind_n[p["kind"]] += 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            for p, v in zip(pairs, verdicts):
                f.write(json.dumps({"id": p["id"], "verdict": v}) + "\n")
    correct = sum(v == p["label"] for v, p in zip(verdicts, pairs))
    print(json.dumps({
        "verifier": "math-verify",
        "pairs": len(pairs),
        "agree_with_label": correct,
        "accuracy": correct / len(pairs),
        "ms_per_answer_wall": round(elapsed * 1e3 / len(pairs), 3),
        "ms_per_answer_cpu": round(cpu * 1e3 / len(pairs), 3),
        "ms_per_answer_cpu_by_kind": {k: round(kind_cpu[k] * 1e3 / kind_n[k], 3) for k in kind_n},
    }))


if __name__ == "__main__":
    main()
