#!/usr/bin/env bash
# Runs every example of examples/ and checks what it prints.
#
#   hack/examples.sh offline   the examples that need nothing: custom_sink, offline_snapshot,
#                              export_engine
#   hack/examples.sh [all]     also deployment_images and watch_runtime against the testkit's
#                              control plane (started here with the manifests of
#                              examples/cluster-snapshot), and kafka_consumer against a broker
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

which="${1:-all}"
work="$(mktemp -d)"
plane=""
cleanup() {
    if [ -n "$plane" ]; then kill "$plane" 2>/dev/null && wait "$plane" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Every binary and example is built by one workspace build: `cargo run -p kollect-examples` would
# resolve the dependencies' features for that package alone and so rebuild most of the dependency
# graph a second time (minutes on a new machine). Building the examples brings in the
# dev-dependencies, so the features match those of the test build and its artifacts are reused.
cargo build --locked --quiet --workspace --bins --examples

# run NAME EXPECTED: runs the example and fails unless its output contains EXPECTED.
run() {
    local name="$1" expected="$2"
    if ! "$CARGO_TARGET_DIR/debug/examples/$name" >"$work/$name.out" 2>&1; then
        cat "$work/$name.out" >&2
        echo "error: example $name failed" >&2
        exit 1
    fi
    if ! grep -qF -- "$expected" "$work/$name.out"; then
        cat "$work/$name.out" >&2
        echo "error: example $name did not print '$expected'" >&2
        exit 1
    fi
    echo "example $name: ok"
}

run custom_sink "memory-documents passes the sink conformance suite"
run offline_snapshot "storefront"
run export_engine "delta: 1 upsert(s), 0 delete(s)"
[ "$which" = offline ] && exit 0

"$CARGO_TARGET_DIR/debug/kollect-control-plane" --kubeconfig "$work/kubeconfig" \
    --apply examples/cluster-snapshot >"$work/control-plane.log" 2>&1 &
plane=$!
for _ in $(seq 1 240); do
    grep -q '^ready:' "$work/control-plane.log" 2>/dev/null && break
    if ! kill -0 "$plane" 2>/dev/null; then
        cat "$work/control-plane.log" >&2
        echo "error: the control plane did not start" >&2
        exit 1
    fi
    sleep 0.5
done
grep -q '^ready:' "$work/control-plane.log" || { cat "$work/control-plane.log" >&2; exit 1; }
export KUBECONFIG="$work/kubeconfig"
run deployment_images "registry.example.com/shop/storefront:2.14.1"
run watch_runtime "storefront: replicas 3 -> 4 (from the watch)"
unset KUBECONFIG

run kafka_consumer "shop/images (cluster prod): web {\"image\":\"web:2\"}"
