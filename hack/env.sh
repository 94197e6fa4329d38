# Shared environment of the project scripts: caches live outside the clone so repeated runs
# (and CI in a fresh clone) reuse them.
export KOLLECT_CACHE="${KOLLECT_CACHE:-$HOME/.cache/kollect}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KOLLECT_CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$KOLLECT_CACHE"
# The cargo-built tools of the checks (hack/install-cargo-tools.sh), ahead of any other copy.
export PATH="$KOLLECT_CACHE/tools/bin:$PATH"
# The nightly whose rustdoc JSON the public-API snapshots are made from (hack/public-api.sh).
export KOLLECT_NIGHTLY="nightly-2026-05-19"
# CI builds each commit once: incremental compilation data would only pile up in the shared
# target directory (tens of GiB over many runs) without ever being reused.
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi
