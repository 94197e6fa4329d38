#!/usr/bin/env bash
# Builds goccy's bigquery-emulator (the BigQuery REST API over ZetaSQL and SQLite) from its Go
# module into $KOLLECT_CACHE/bin. ZetaSQL is C++ compiled through cgo: it needs clang (GCC
# rejects parts of it) and takes long on a cold cache, so this runs beside the other installs.
# Idempotent: an installed binary of the pinned version is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

VERSION=v0.6.6
GOBIN="$KOLLECT_CACHE/bin"
stamp="$GOBIN/.bigquery-emulator-$VERSION"
if [ -x "$GOBIN/bigquery-emulator" ] && [ -f "$stamp" ]; then
    echo "bigquery-emulator: $GOBIN/bigquery-emulator"
    exit 0
fi
for tool in clang clang++; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (hack/setup.sh installs the clang package)" >&2; exit 2; }
done
echo "building bigquery-emulator $VERSION (ZetaSQL through cgo: long on a cold Go cache)"
mkdir -p "$GOBIN"
# `go install module@version` also asks the proxy for the module's version list, which this
# module's proxy entry refuses; downloading the pinned version and building it does not.
src=$(GOFLAGS=-mod=mod go mod download -json "github.com/goccy/bigquery-emulator@$VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
work="$KOLLECT_CACHE/build/bigquery-emulator-$VERSION"
rm -rf "$work" && mkdir -p "$(dirname "$work")" && cp -r "$src" "$work" && chmod -R u+w "$work"
(cd "$work" && CGO_ENABLED=1 CC=clang CXX=clang++ GOFLAGS=-mod=mod \
    go build -trimpath -o "$GOBIN/bigquery-emulator" ./cmd/bigquery-emulator)
rm -f "$GOBIN"/.bigquery-emulator-* && touch "$stamp"
echo "bigquery-emulator: $GOBIN/bigquery-emulator"
