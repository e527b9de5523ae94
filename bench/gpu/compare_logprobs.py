"""Compares two `r1ctl logprobs`-format JSONL files. Usage: compare_logprobs.py REF GOT TOL"""
import json, sys

ref = [json.loads(l)["logprobs"] for l in open(sys.argv[1])]
got = [json.loads(l)["logprobs"] for l in open(sys.argv[2])]
tol = float(sys.argv[3])
assert len(ref) == len(got), (len(ref), len(got))
worst = max(abs(a - b) for r, g in zip(ref, got) for a, b in zip(r, g))
print(f"max |logprob(r1) - logprob(transformers)| = {worst:.3g} over {len(ref)} sequences (tolerance {tol})")
sys.exit(0 if worst <= tol else 1)
