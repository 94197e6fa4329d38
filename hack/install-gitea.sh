#!/usr/bin/env bash
# Builds Gitea (a Git forge with the Gitea/Forgejo REST API the gitlab sink falls back to) from
# its Go module into $KOLLECT_CACHE/bin, with SQLite (cgo) so a test server needs no database
# server. Templates and options are read from the module source at run time (the binary is
# built without embedded assets), which stays under $KOLLECT_CACHE/build. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

VERSION=v1.26.0
GOBIN="$KOLLECT_CACHE/bin"
work="$KOLLECT_CACHE/build/gitea-$VERSION"
stamp="$GOBIN/.gitea-$VERSION"
if [ -x "$GOBIN/gitea" ] && [ -f "$stamp" ] && [ -d "$work/options" ]; then
    echo "gitea: $GOBIN/gitea"
    exit 0
fi
echo "building gitea $VERSION"
mkdir -p "$GOBIN"
src=$(GOFLAGS=-mod=mod go mod download -json "code.gitea.io/gitea@$VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
rm -rf "$work" && mkdir -p "$(dirname "$work")" && cp -r "$src" "$work" && chmod -R u+w "$work"
(cd "$work" && CGO_ENABLED=1 GOFLAGS=-mod=mod \
    go build -trimpath -tags 'sqlite sqlite_unlock_notify' -o "$GOBIN/gitea" .)
rm -f "$GOBIN"/.gitea-* && touch "$stamp"
echo "gitea: $GOBIN/gitea"
