#!/usr/bin/env bash
# The public API of every library crate, as text, compared with the snapshot under api/:
# a change to a crate's public surface fails the check until the snapshot is updated in the same
# commit (docs/design/versioning.md says when that needs a new minor version).
#
#   hack/public-api.sh           check
#   hack/public-api.sh --update  rewrite api/<crate>.txt
#
# cargo-public-api reads rustdoc's JSON output, which only a nightly toolchain emits; the
# toolchain is pinned (KOLLECT_NIGHTLY, hack/env.sh) so that the listing does not change with the
# compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

CRATES=(kollect-core kollect-collect kollect-sinks kollect-testkit)
# The nightly build artifacts cannot be shared with the stable ones.
export CARGO_TARGET_DIR="$KOLLECT_CACHE/public-api-target"
# Each crate is documented on its own (`-p`), and cargo would resolve the dependencies' features
# for that crate alone: four different feature sets, so most of the dependency graph would be
# checked up to four times. The nightly's workspace feature unification (cargo's
# `-Zfeature-unification`) resolves them once for the whole workspace.
export CARGO_UNSTABLE_FEATURE_UNIFICATION=true
export CARGO_RESOLVER_FEATURE_UNIFICATION=workspace

update=0
[ "${1:-}" = "--update" ] && update=1
mkdir -p api "$KOLLECT_CACHE/public-api"
failed=0
for crate in "${CRATES[@]}"; do
    current="$KOLLECT_CACHE/public-api/$crate.txt"
    # -sss: without blanket, auto-trait and auto-derived impls, which only repeat the items.
    cargo "+$KOLLECT_NIGHTLY" public-api --color never -p "$crate" --all-features -sss >"$current" 2>"$current.log" || {
        cat "$current.log" >&2
        echo "error: cargo public-api failed for $crate" >&2
        exit 1
    }
    if [ "$update" -eq 1 ]; then
        cp "$current" "api/$crate.txt"
        echo "api/$crate.txt: $(wc -l <"$current") items"
    elif ! diff -u "api/$crate.txt" "$current" >"$current.diff"; then
        echo "error: the public API of $crate changed:" >&2
        cat "$current.diff" >&2
        failed=1
    else
        echo "public API of $crate: unchanged ($(wc -l <"$current") items)"
    fi
done
if [ "$failed" -ne 0 ]; then
    echo "If the change is intended, run hack/public-api.sh --update and commit api/ with it." >&2
    exit 1
fi
