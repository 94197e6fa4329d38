#!/usr/bin/env bash
# Prints the machine, date and commit lines that head every figure in docs/performance.md.
set -euo pipefail
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
memory=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
echo "Machine: $(nproc) vCPU \"$cpu\", $memory, Linux $(uname -r | cut -d- -f1); $(rustc --version | cut -d' ' -f1-2)."
echo "Date: $(date -u +%Y-%m-%d). Commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')."
echo
