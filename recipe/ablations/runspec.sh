#!/usr/bin/env bash
# usage: recipe/ablations/runspec.sh SPEC.toml DATA_DIR PORT — `r1ctl up --config` with timestamps
set -u
R=${R1CTL:-$HOME/.cache/r1-target-recipe/release/r1ctl}
spec=$1; dir=$2; mkdir -p "$dir"; log="$dir/$(basename "$spec" .toml).log"
echo "# $(date -u +%FT%TZ) start $spec; $(uptime)" >> "$log"
start=$(date +%s)
"$R" up --config "$spec" --data-dir "$dir" --listen 127.0.0.1:$3 2>&1 | while IFS= read -r l; do printf '%s %s\n' "$(date -u +%T)" "$l"; done >> "$log"
echo "# $(date -u +%FT%TZ) end wall=$(( $(date +%s) - start ))s; $(uptime)" >> "$log"
