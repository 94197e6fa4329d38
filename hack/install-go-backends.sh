#!/usr/bin/env bash
# Builds the Go-based test backends with `go install` through the Go module proxy into
# $KOLLECT_CACHE/bin: MinIO (S3), fake-gcs-server (GCS JSON API) and FerretDB (MongoDB wire
# protocol on SQLite). Idempotent: installed binaries are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

export GOBIN="$KOLLECT_CACHE/bin" CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$GOBIN"
install() {
    local binary="$1" module="$2"
    if [ -x "$GOBIN/$binary" ]; then
        echo "$binary: $GOBIN/$binary"
        return
    fi
    echo "building $binary from $module"
    go install "$module"
}
install minio github.com/minio/minio@latest
install fake-gcs-server github.com/fsouza/fake-gcs-server@latest

# FerretDB embeds build/version/version.txt, which its own build generates; `go install` from the
# module proxy leaves it empty and the binary panics at start. Build from a copy of the module
# source with the file written.
FERRETDB_VERSION=v1.24.2
if [ ! -x "$GOBIN/ferretdb" ]; then
    echo "building ferretdb $FERRETDB_VERSION"
    src=$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
    work="$KOLLECT_CACHE/build/ferretdb-$FERRETDB_VERSION"
    rm -rf "$work" && mkdir -p "$(dirname "$work")" && cp -r "$src" "$work" && chmod -R u+w "$work"
    echo "$FERRETDB_VERSION" > "$work/build/version/version.txt"
    (cd "$work" && go build -trimpath -o "$GOBIN/ferretdb" ./cmd/ferretdb)
else
    echo "ferretdb: $GOBIN/ferretdb"
fi
