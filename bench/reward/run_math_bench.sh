#!/usr/bin/env bash
# Compares r1's math verifier with math-verify (PyPI) on bench/reward/math_pairs.jsonl:
# agreement with the hand/constructed labels, time per answer on one core, and every pair
# where the two verifiers disagree. Needs a Python with `math-verify` installed:
#   python3 -m venv ~/.cache/r1-py && ~/.cache/r1-py/bin/pip install 'math-verify[antlr4_13_2]'
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-$HOME/.cache/r1-py/bin/python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/r1-target}
PAIRS=bench/reward/math_pairs.jsonl
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 bench/reward/make_pairs.py > "$tmp/pairs.jsonl"
cmp -s "$tmp/pairs.jsonl" "$PAIRS" || { echo "$PAIRS is stale: rerun make_pairs.py" >&2; exit 1; }
cargo build --release -q -p r1-reward --example math_bench
pin=(); command -v taskset >/dev/null && pin=(taskset -c 0)
"${pin[@]}" "$PY" bench/reward/math_verify_bench.py "$PAIRS" "$tmp/mv.jsonl" > "$tmp/mv.json"
"${pin[@]}" "$CARGO_TARGET_DIR/release/examples/math_bench" "$PAIRS" "$tmp/r1.jsonl" > "$tmp/r1.json"

python3 - "$PAIRS" "$tmp" <<'PY'
import json, sys
pairs = [json.loads(l) for l in open(sys.argv[1])]
tmp = sys.argv[2]
mv, r1 = json.load(open(f"{tmp}/mv.json")), json.load(open(f"{tmp}/r1.json"))
vm = [json.loads(l)["verdict"] for l in open(f"{tmp}/mv.jsonl")]
vr = [json.loads(l)["verdict"] for l in open(f"{tmp}/r1.jsonl")]
mv_us, r1_us = mv["ms_per_answer_cpu"] * 1e3, r1["us_per_answer_cpu"]
print(f"{'verifier':<16}{'agree/pairs':>14}{'accuracy':>10}{'CPU µs/answer':>15}")
print(f"{'math-verify':<16}{mv['agree_with_label']:>8}/{len(pairs):<5}{mv['accuracy']:>10.4f}{mv_us:>15.1f}")
print(f"{'r1-reward':<16}{r1['agree_with_label']:>8}/{len(pairs):<5}{r1['accuracy']:>10.4f}{r1_us:>15.2f}")
print(f"speed-up per core: {mv_us / r1_us:.0f}x (CPU time per answer, one thread each)")
print("CPU µs per answer by kind (math-verify / r1):")
for k, t in mv["ms_per_answer_cpu_by_kind"].items():
    print(f"  {k:<12}{t * 1e3:>10.1f} /{r1['us_per_answer_cpu_by_kind'][k]:>7.2f}")
print("pairs where the verifiers disagree (label, math-verify, r1):")
for p, a, b in zip(pairs, vm, vr):
    if a != b:
        print(f"  #{p['id']:<4} gold {p['gold']!r}  completion …{p['completion'][-48:]!r}  {p['label']} {a} {b}")
PY
