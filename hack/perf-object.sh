#!/usr/bin/env bash
# Object store scale run: exports one inventory of N rows (default 100,000) to a MinIO the
# testkit starts, once per format, each in its own process so the peak RSS is that format's,
# then a one-row change with the per-resource layout. Prints a Markdown table for
# docs/performance.md. Usage: hack/perf-object.sh [rows]
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

rows="${1:-100000}"
cargo build --locked --quiet --profile perf -p kollect-sinks --example object_store_scale
bin="$CARGO_TARGET_DIR/perf/examples/object_store_scale"

echo "| Format | Rows | Objects | Full export (s) | Bytes written | RSS before export (MiB) | Peak RSS (MiB) | One-row change (s) | Bytes of the change |"
echo "|---|---|---|---|---|---|---|---|---|"
for format in json ndjson csv parquet per-resource; do
    "$bin" "$format" "$rows" | awk -F'\t' '{
        change = ($8 == "") ? "—" : $8; changed = ($9 == "") ? "—" : $9;
        printf "| %s | %s | %s | %s | %s | %.0f | %.0f | %s | %s |\n", $1, $2, $3, $4, $5, $6 / 1024, $7 / 1024, change, changed
    }'
done
