#!/usr/bin/env bash
# usage: cpumon.sh PID OUT — every 10 s: UTC time, elapsed s, CPU s of PID, load average
while kill -0 "$1" 2>/dev/null; do
  echo "$(date -u +%T) $(ps -o etimes=,times= -p "$1") $(cut -d' ' -f1-3 /proc/loadavg)" >> "$2"
  sleep 10
done
