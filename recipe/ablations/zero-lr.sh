#!/usr/bin/env bash
# usage: recipe/ablations/zero-lr.sh DIR [PORT]
#
# The R1-Zero learning-rate sweep of 2026-12-07 (docs/reproduction.md): R1-Zero again from
# the base model of a finished `r1ctl up --data-dir DIR`, at lr 1e-4 … 3e-4 and sampling seeds
# 0–2, 60 steps (and 80 at two rates), two runs at a time (one per core). Each run is
# `r1ctl up --config` on the spec the recipe's side process submitted for R1-Zero
# (DIR/recipe/side/runs/2/spec.json) with overrides; the specs, data folders and logs go to
# DIR/zero-lr/. Prints the step-0 and last evaluation of each (pass@1 over the eval split,
# G = 8 samples a question). Run ids seed the sampling, so a run here does not repeat the
# recipe's own R1-Zero (run 2 of the side process) even at its settings.
set -eu
dir=$1; port=${2:-7700}
here=$(cd "$(dirname "$0")" && pwd)
R=${R1CTL:-$HOME/.cache/r1-target-release/release/r1ctl}
src=$dir/recipe/side/runs/2/spec.json
out=$dir/zero-lr; mkdir -p "$out"
one() { # name lr seed steps
    python3 "$here/spec.py" "$src" "$out/$1.toml" name="\"$1\"" algorithm.learner.lr="$2" \
        algorithm.sampling.seed="$3" schedule.total_steps="$4" schedule.checkpoint_every="$4" schedule.eval_every="$4"
    rm -rf "${out:?}/$1"
    "$R" up --config "$out/$1.toml" --data-dir "$out/$1" --listen "127.0.0.1:$5" > "$out/$1.log" 2>&1
    python3 - "$out/$1" "$1" <<'PY'
import json, sys, glob
rows = [json.loads(l) for l in open(glob.glob(sys.argv[1] + "/runs/*/metrics.jsonl")[0])]
ev = [(r["step"], r["eval_accuracy"]) for r in rows if "eval_accuracy" in r]
print(sys.argv[2], " ".join(f"step {s}: {a:.3f}" for s, a in ev))
PY
}
pair() { one "$1" "$2" "$3" "$4" "$port" & one "$5" "$6" "$7" "$8" $((port + 1)); wait; }
pair lr2e-4-s0 2e-4 0 60 lr2e-4-s1 2e-4 1 60
pair lr3e-4-s0 3e-4 0 60 lr3e-4-s1 3e-4 1 60
pair lr1.5e-4-s0 1.5e-4 0 60 lr1e-4-s0 1e-4 0 60
pair lr1.5e-4-s1 1.5e-4 1 60 lr1e-4-s1 1e-4 1 60
pair lr1.5e-4-s2 1.5e-4 2 60 lr1e-4-s2 1e-4 2 60
pair lr1.5e-4-s0-80 1.5e-4 0 80 lr1e-4-s0-80 1e-4 0 80
