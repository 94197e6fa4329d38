#!/usr/bin/env bash
# Installs Azurite (the Azure Storage emulator) from the npm registry into
# $KOLLECT_CACHE/azurite. Idempotent: an installed version is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

AZURITE_VERSION=3.37.0
dest="$KOLLECT_CACHE/azurite/$AZURITE_VERSION"
if [ -x "$dest/node_modules/.bin/azurite-blob" ]; then
    echo "azurite: $dest"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm not found; Azurite needs Node.js and npm" >&2
    exit 2
fi
echo "installing azurite $AZURITE_VERSION"
mkdir -p "$dest"
npm install --prefix "$dest" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION"
echo "azurite: $dest"
