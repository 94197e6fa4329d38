#!/usr/bin/env bash
# Builds the chart and image tools from their Go modules into $KOLLECT_CACHE/bin: helm (lint,
# template, install in the chart tests), helm-docs (the chart README) and umoci (the OCI image,
# without a container daemon). The three builds run in parallel. Idempotent: a binary whose
# version stamp matches is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

export GOBIN="$KOLLECT_CACHE/bin" CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$GOBIN"

HELM_VERSION=v4.3.2
HELM_DOCS_VERSION=v1.14.2
UMOCI_VERSION=v0.6.0

build() {
    local binary="$1" module="$2" version="$3"
    local stamp="$GOBIN/.$binary-$version"
    if [ -x "$GOBIN/$binary" ] && [ -f "$stamp" ]; then
        echo "$binary $version: $GOBIN/$binary"
        return
    fi
    echo "building $binary $version"
    go install -trimpath "$module@$version"
    rm -f "$GOBIN/.$binary-"* && touch "$stamp"
}

# umoci's go.mod has replace directives, which `go install module@version` refuses: build it from
# a copy of the module source, where they apply.
build_from_source() {
    local binary="$1" module="$2" version="$3" package="$4"
    local stamp="$GOBIN/.$binary-$version"
    if [ -x "$GOBIN/$binary" ] && [ -f "$stamp" ]; then
        echo "$binary $version: $GOBIN/$binary"
        return
    fi
    echo "building $binary $version from source"
    local src work="$KOLLECT_CACHE/build/$binary-$version"
    src=$(go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
    rm -rf "$work" && mkdir -p "$(dirname "$work")" && cp -r "$src" "$work" && chmod -R u+w "$work"
    (cd "$work" && go build -trimpath -o "$GOBIN/$binary" "$package")
    rm -f "$GOBIN/.$binary-"* && touch "$stamp"
}

pids=()
build helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION" & pids+=($!)
build helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs "$HELM_DOCS_VERSION" & pids+=($!)
build_from_source umoci github.com/opencontainers/umoci "$UMOCI_VERSION" ./cmd/umoci & pids+=($!)
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit "$status"
