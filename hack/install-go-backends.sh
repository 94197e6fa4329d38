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
install ferretdb github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2
