#!/usr/bin/env bash
# The whole test suite, as CI runs it: setup, formatting, lints, tests, doc build, examples.
#
# KOLLECT_REQUIRE_INFRA=1 (the default here) makes tests that need a real component (API server,
# database, broker, object store) fail instead of skip when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh
export KOLLECT_REQUIRE_INFRA="${KOLLECT_REQUIRE_INFRA:-1}"

step() { printf '\n==> %s\n' "$*"; }

step "setup"
bash hack/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --locked --workspace --no-fail-fast

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --quiet

step "examples"
for example in custom_sink kafka_consumer; do
    cargo run --locked --quiet -p kollect-examples --example "$example" >/dev/null
    echo "example $example: ok"
done

step "canonical JSON parity with Go's encoding/json"
golden=kollect-core/tests/data/canonical-golden.json
(cd hack/go-canonical && go run . ../../kollect-core/tests/data/canonical-vectors.json) > "$KOLLECT_CACHE/canonical-golden.json"
if ! diff -u "$golden" "$KOLLECT_CACHE/canonical-golden.json"; then
    echo "error: $golden differs from what Go's encoding/json produces; regenerate it with hack/go-canonical" >&2
    exit 1
fi
echo "golden vectors match Go"

step "CEL conformance cases match the CEL specification's tests"
python3 hack/conformance/cel_simple.py --check
echo "cel-conformance.json is up to date"

step "Helm chart: values schema and README are up to date"
python3 hack/chart/schema.py --check
bash hack/chart/docs.sh --check
echo "chart schema and README match their sources"

step "CRDs are up to date"
cargo run --locked --quiet --bin kollect -- crds --check

echo
echo "all checks passed"
