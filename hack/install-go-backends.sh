#!/usr/bin/env bash
# Builds the Go-based test backends through the Go module proxy into $KOLLECT_CACHE/bin: MinIO
# (S3), fake-gcs-server (GCS JSON and XML APIs) and FerretDB (MongoDB wire protocol on SQLite).
# Idempotent: installed binaries are kept.
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
# Pinned: MinIO publishes no module versions, only pseudo-versions of its main branch.
install minio github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c

# fake-gcs-server serves the JSON API and object downloads, but routes an XML-API upload
# (`PUT /<bucket>/<object>`, which object_store uses) to its XML handler only when the URL is
# signed, and answers it without an ETag header. Real GCS accepts such a PUT with a bearer token
# and returns the ETag, so the copy built here applies hack/fake-gcs-server-xml-put.patch: two
# lines, nothing else.
FAKE_GCS_VERSION=v1.56.1
stamp="$GOBIN/.fake-gcs-server-$FAKE_GCS_VERSION-$(sha256sum hack/fake-gcs-server-xml-put.patch | cut -c1-12)"
if [ ! -x "$GOBIN/fake-gcs-server" ] || [ ! -f "$stamp" ]; then
    echo "building fake-gcs-server $FAKE_GCS_VERSION"
    src=$(go mod download -json "github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
    work="$KOLLECT_CACHE/build/fake-gcs-server-$FAKE_GCS_VERSION"
    rm -rf "$work" && mkdir -p "$(dirname "$work")" && cp -r "$src" "$work" && chmod -R u+w "$work"
    patch -s -d "$work" -p1 < hack/fake-gcs-server-xml-put.patch
    (cd "$work" && go build -trimpath -o "$GOBIN/fake-gcs-server" .)
    rm -f "$GOBIN"/.fake-gcs-server-* && touch "$stamp"
else
    echo "fake-gcs-server: $GOBIN/fake-gcs-server"
fi

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
