#!/usr/bin/env bash
# CLI scale run: `kollect collect` as its own process against the local control plane with N
# ConfigMaps, next to a raw unpaginated LIST of them (kollect-operator/benches/collect_cli.rs
# says what is measured). Prints the machine, the commit and one Markdown table for
# docs/performance.md. Needs hack/setup.sh.
#
# Usage: hack/perf-cli.sh [objects (10000)]; KOLLECT_PERF_ROUNDS (3) sets the rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

export KOLLECT_PERF_OBJECTS="${1:-10000}"
bash hack/perf-machine.sh
cargo bench --locked --quiet -p kollect-operator --bench collect_cli
