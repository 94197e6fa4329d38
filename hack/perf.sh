#!/usr/bin/env bash
# Scale run of the whole system: the `kollect` binary as its own process against the local
# control plane and PostgreSQL, with N objects in one inventory (kollect-operator/benches/scale.rs
# says what is measured). Prints the machine, the commit and one Markdown table for
# docs/performance.md. Needs hack/setup.sh.
#
# Usage: hack/perf.sh [objects (10000)] [configmap|deployment]
# The phases' sizes can be changed with KOLLECT_PERF_CHANGES, KOLLECT_PERF_CHURN_RATE,
# KOLLECT_PERF_CHURN_SECONDS and KOLLECT_PERF_IDLE_SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

export KOLLECT_PERF_OBJECTS="${1:-10000}"
export KOLLECT_PERF_KIND="${2:-configmap}"
case "$KOLLECT_PERF_KIND" in
    configmap|deployment) ;;
    *) echo "error: the kind is configmap or deployment, not '$KOLLECT_PERF_KIND'" >&2; exit 2 ;;
esac

bash hack/perf-machine.sh
cargo bench --locked --quiet -p kollect-operator --bench scale
