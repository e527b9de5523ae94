#!/usr/bin/env bash
# usage: recipe/ablations/run.sh RECIPE.toml DATA_DIR
# Runs `r1ctl up --recipe` with a UTC time on every output line (DATA_DIR/<recipe>.log) and
# the process's elapsed and CPU seconds and the load average every 10 s (DATA_DIR/<recipe>.cpu).
set -u
R=${R1CTL:-$HOME/.cache/r1-target-recipe/release/r1ctl}
recipe=$1; dir=$2; mkdir -p "$dir"
name=$(basename "$recipe" .toml); log="$dir/$name.log"
echo "# $(date -u +%FT%TZ) start $recipe in $dir; $(uptime)" | tee -a "$log"
start=$(date +%s)
"$R" up --recipe "$recipe" --data-dir "$dir" --listen 127.0.0.1:${R1_PORT:-7391} \
  > >(while IFS= read -r l; do printf '%s %s\n' "$(date -u +%T)" "$l"; done >> "$log") 2>&1 &
pid=$!
"$(dirname "$0")/cpumon.sh" "$pid" "$dir/$name.cpu" &
wait "$pid"; rc=$?
sleep 1
echo "# $(date -u +%FT%TZ) end rc=$rc wall=$(( $(date +%s) - start ))s; last cpu sample: $(tail -1 "$dir/$name.cpu"); $(uptime)" | tee -a "$log"
