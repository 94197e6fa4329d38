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
for example in custom_sink; do
    cargo run --locked --quiet -p kollect-examples --example "$example" >/dev/null
    echo "example $example: ok"
done

step "CRDs are up to date"
cargo run --locked --quiet --bin kollect -- crds --check

echo
echo "all checks passed"
