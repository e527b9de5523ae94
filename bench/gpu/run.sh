#!/usr/bin/env bash
# The prepared GPU check (issue: r1 on the GPU). One run on the device machine, nothing built
# there: correctness first, then r1 vs PyTorch/transformers side by side, then a table.
#
# Here (CPU machine):   cargo build --release -p r1ctl --features cuda
#                       mkdir -p .gpu && cp $CARGO_TARGET_DIR/release/r1ctl .gpu/   (.gpu is in .git/info/exclude)
# There (device tool):  run(command="bash bench/gpu/run.sh", carry=[".gpu"])
#
# Checks: r1's logits on CUDA against transformers' on the same random-weight Qwen2.5-0.5B
# checkpoint (bf16 weights, logits compared in f32 within 5e-2, the bf16 rounding of a
# 24-layer model); then generation tokens/s at batch 64 and 256 (prompt 128, 512 new,
# sampling) and a GRPO train step on 16 x 1024 tokens, each against the peer script.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/r1-gpu-out}; mkdir -p "$OUT"
R1=${R1CTL:-.gpu/r1ctl}
export PYTHONUNBUFFERED=1
[ -x "$R1" ] || { echo "no CUDA r1ctl at $R1: build it here with --features cuda and carry .gpu"; exit 2; }
# cudarc looks for libnccl.so; NCCL ships libnccl.so.2.
if ! ldconfig -p | grep -q 'libnccl.so '; then
  lib=$(ldconfig -p | awk '/libnccl.so.2 /{print $NF; exit}')
  [ -n "$lib" ] && ln -sf "$lib" /usr/local/lib/libnccl.so && ldconfig
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

echo "== correctness: r1 (CUDA) vs transformers on a random Qwen2.5-0.5B checkpoint"
python3 bench/gpu/make_checkpoint.py /tmp/qwen05 | tee "$OUT/ckpt.txt" || exit 1
"$R1" logprobs --device cuda --model /tmp/qwen05 --input /tmp/qwen05/probe.jsonl --output "$OUT/r1_logprobs.jsonl" || exit 1
python3 bench/gpu/compare_logprobs.py /tmp/qwen05/reference_logprobs.jsonl "$OUT/r1_logprobs.jsonl" 5e-2 | tee "$OUT/correctness.txt"

echo "== benchmarks"
rows=()
for B in 64 256; do
  r=$("$R1" bench generate --device cuda --shape qwen2.5-0.5b --batch $B --prompt-len 128 --new-tokens 512 --json | tail -1)
  p=$(python3 bench/peer/peer_torch.py --device cuda --dtype bfloat16 --shape qwen2.5-0.5b --what generate --batch $B --prompt-len 128 --new-tokens 512 | tail -1)
  rows+=("generate B=$B|$r|$p")
done
r=$("$R1" bench train-step --device cuda --shape qwen2.5-0.5b --batch 16 --seq-len 1024 --steps 5 --json | tail -1)
p=$(python3 bench/peer/peer_torch.py --device cuda --dtype bfloat16 --shape qwen2.5-0.5b --what train-step --train-batch 16 --seq-len 1024 --steps 5 | tail -1)
rows+=("train-step 16x1024|$r|$p")
printf '%s\n' "${rows[@]}" > "$OUT/bench_rows.txt"
python3 - "$OUT/bench_rows.txt" <<'PY'
import json, sys
print(f"{'bench':<22}{'r1 tok/s':>12}{'torch tok/s':>14}{'ratio':>8}")
for line in open(sys.argv[1]):
    name, r, p = line.rstrip("\n").split("|")
    r, p = json.loads(r), json.loads(p)
    print(f"{name:<22}{r['tokens_per_s']:>12.0f}{p['tokens_per_s']:>14.0f}{r['tokens_per_s']/p['tokens_per_s']:>8.2f}")
PY
