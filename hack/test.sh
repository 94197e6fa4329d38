#!/usr/bin/env bash
# The test suite in tiers. With no argument (as CI runs it) everything: setup, formatting, lints,
# per-feature builds, all tests, the doc build, examples and the drift checks.
#
#   hack/test.sh unit         no backends: formatting, lints, per-feature builds, library,
#                             binary and doc tests, the examples that need nothing, the doc and
#                             book builds, packaging, supply-chain and public-API checks, and the
#                             drift checks (installs the cargo tools it needs on first use)
#   hack/test.sh integration  setup, then the integration test binaries and every example
#   hack/test.sh [all]        both, with one `cargo test` for every test target
#
# KOLLECT_REQUIRE_INFRA=1 (the default for integration and all) makes tests that need a real
# component (API server, database, broker, object store) fail instead of skip when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

tier="${1:-all}"
case "$tier" in
    unit | integration | all) ;;
    *)
        echo "usage: hack/test.sh [unit|integration|all] (got '$tier')" >&2
        exit 2
        ;;
esac
wants() { [ "$tier" = all ] || [ "$tier" = "$1" ]; }

# Each step is stamped with the time since the start, so a log shows where a cold run went.
step() { printf '\n==> %s [%dm%02ds]\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }

if wants integration; then
    export KOLLECT_REQUIRE_INFRA="${KOLLECT_REQUIRE_INFRA:-1}"
    step "setup"
    bash hack/setup.sh
fi

if [ "$tier" = unit ]; then
    step "cargo tools and the link checker"
    bash hack/install-cargo-tools.sh
    bash hack/install-link-checker.sh
fi

if wants unit; then
    step "cargo fmt --check"
    cargo fmt --all -- --check

    step "cargo clippy"
    cargo clippy --locked --workspace --all-targets -- -D warnings

    step "kollect-sinks builds with each backend feature alone, and with none"
    for feature in "" local stdout git gitlab postgres mongodb bigquery object kafka nats; do
        cargo clippy --locked --quiet -p kollect-sinks --lib --no-default-features \
            ${feature:+--features "$feature"} -- -D warnings
        echo "kollect-sinks features [${feature:-none}]: ok"
    done
fi

case "$tier" in
    all)
        step "cargo test"
        cargo test --locked --workspace --no-fail-fast
        ;;
    unit)
        step "cargo test (libraries and binaries)"
        cargo test --locked --workspace --no-fail-fast --lib --bins
        # Doctests cannot share a run with other target kinds.
        step "cargo test (doctests)"
        cargo test --locked --workspace --no-fail-fast --doc
        ;;
    integration)
        step "cargo test (integration test binaries)"
        cargo test --locked --workspace --no-fail-fast --test '*'
        ;;
esac

step "examples"
if wants integration; then
    bash hack/examples.sh all
else
    bash hack/examples.sh offline
fi

if ! wants unit; then
    echo
    echo "integration checks passed"
    exit 0
fi

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --quiet

step "the book"
bash hack/book.sh

step "public API snapshots"
bash hack/public-api.sh

step "cargo package: every published crate packages and builds from its package"
bash hack/package.sh

step "supply chain: licences, bans, sources, advisories"
bash hack/deny.sh

step "SBOM of the kollect binary"
bash hack/sbom.sh

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
# The binary of the workspace build (hack/examples.sh says why not `cargo run --bin`).
cargo build --locked --quiet --workspace --bins --examples
"$CARGO_TARGET_DIR/debug/kollect" crds --check

echo
echo "$tier checks passed in $((SECONDS / 60))m$((SECONDS % 60))s"
