#!/usr/bin/env bash
# Packages every published crate (`cargo package`, in dependency order: metadata, licence and
# readme, the file list, dependency versions), then type-checks the crates as they would be
# published: the .crate files are unpacked into a scratch workspace whose crates refer to each
# other through `[patch.crates-io]`, so only what a package contains is compiled. A source file
# left out of a package, or a path reaching outside it, fails here.
#
# This replaces `cargo package`'s own verification, which builds each crate alone with its own
# dependency features: five full dependency builds (about 20 minutes on a 2-core machine) where
# one `cargo check` sharing the workspace's dependency artifacts proves the same about the
# packages' contents. kollect-sinks' build with each backend feature alone is checked by
# hack/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

CRATES=(kollect-core kollect-collect kollect-testkit kollect-sinks kollect-operator)
version="$(cargo metadata --locked --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "kollect-core"))')"

# --allow-dirty: a developer runs this before committing; CI runs it in a clean clone.
cargo package --locked --allow-dirty --no-verify --quiet --workspace --exclude kollect-examples
echo "packaged: ${CRATES[*]} $version"

scratch="$KOLLECT_CACHE/package-check"
rm -rf "$scratch"
mkdir -p "$scratch"
members=""
patches=""
for crate in "${CRATES[@]}"; do
    tar -xzf "$CARGO_TARGET_DIR/package/$crate-$version.crate" -C "$scratch"
    members+="\"$crate-$version\", "
    patches+="$crate = { path = \"$crate-$version\" }"$'\n'
done
cat >"$scratch/Cargo.toml" <<TOML
[workspace]
resolver = "3"
members = [${members%, }]

# The repository's dev profile, so dependencies already built for the workspace are reused.
[profile.dev]
debug = "line-tables-only"

[profile.dev.package."*"]
opt-level = 1

[patch.crates-io]
$patches
TOML
cp Cargo.lock "$scratch/Cargo.lock"
# Not --locked: the scratch workspace lacks the examples crate, so unused lock entries go; the
# versions of the rest stay those of Cargo.lock, and --offline keeps cargo from updating any.
(cd "$scratch" && cargo check --offline --quiet --workspace --all-features)
echo "every crate builds from its package"
