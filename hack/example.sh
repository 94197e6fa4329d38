#!/usr/bin/env bash
# The main job on the built-in example, no cluster needed: collect the objects of
# examples/cluster-snapshot with the configuration in examples/first-inventory and print one
# record per target on standard output. Extra arguments are passed to `kollect collect`
# (e.g. `--format yaml`, or `--output DIR`).
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh
bash hack/build-deps.sh
exec cargo run --quiet --release --bin kollect -- collect \
    --config examples/first-inventory --source examples/cluster-snapshot --output - "$@"
