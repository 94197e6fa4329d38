#!/usr/bin/env bash
# Installs the cargo-built tools of the test command into $KOLLECT_CACHE/tools (pinned versions,
# built once from crates.io with their lock files):
#   mdbook                     the book (hack/book.sh)
#   cargo-deny                 licences, bans and sources (hack/deny.sh)
#   cargo-cyclonedx            the SBOM of the binary (hack/sbom.sh)
#   cargo-public-api           the public-API snapshots (hack/public-api.sh)
# A second run only checks the versions.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

TOOLS="$KOLLECT_CACHE/tools"
# crate@version, then the command that prints its version (cargo subcommands through cargo).
PINNED=(
    "mdbook@0.4.52 mdbook --version"
    "cargo-deny@0.20.2 cargo deny --version"
    "cargo-cyclonedx@0.5.9 cargo cyclonedx --version"
    "cargo-public-api@0.52.0 cargo public-api --version"
)
# The tools build in their own target directory: sharing the workspace's would rebuild the
# workspace's dependencies with the tools' feature sets.
export CARGO_TARGET_DIR="$KOLLECT_CACHE/tools-target"
# The checks run each tool for seconds, so an optimised build (often with LTO, as some of these
# crates ask for) is compile time spent for nothing: on a new machine the tools are the longest
# chain of setup. The release profile is overridden to an unoptimised build without debug
# information; config overrides take precedence over the crates' own profiles.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=0
export CARGO_PROFILE_RELEASE_LTO=off
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256
export CARGO_PROFILE_RELEASE_DEBUG=false
export CARGO_PROFILE_RELEASE_INCREMENTAL=false
for entry in "${PINNED[@]}"; do
    read -r spec check <<<"$entry"
    version="${spec#*@}"
    # shellcheck disable=SC2086 # the check is a command line
    if $check 2>/dev/null | grep -qF "$version"; then
        continue
    fi
    echo "installing $spec"
    started=$(date +%s)
    # mdbook's `serve` and `watch` (a web server and a file watcher) are not used: building
    # without them halves its compile time.
    features=()
    [ "${spec%@*}" = mdbook ] && features=(--no-default-features --features search)
    cargo install --quiet --locked --root "$TOOLS" "${features[@]}" "$spec"
    echo "installed $spec in $(($(date +%s) - started)) s"
done
rm -rf "$CARGO_TARGET_DIR"

# cargo-public-api reads rustdoc JSON, which only nightly emits: a pinned nightly (hack/public-api.sh).
if ! rustup run "$KOLLECT_NIGHTLY" rustdoc --version >/dev/null 2>&1; then
    echo "installing the $KOLLECT_NIGHTLY toolchain (minimal profile)"
    rustup toolchain install "$KOLLECT_NIGHTLY" --profile minimal --no-self-update
fi
echo "cargo tools: ok ($TOOLS/bin)"
