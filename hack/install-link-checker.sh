#!/usr/bin/env bash
# Installs the book's link checker (remark-cli with remark-validate-links, from the npm registry,
# the versions of hack/book/package-lock.json) into $KOLLECT_CACHE/link-checker/<lock digest>.
# Idempotent: an install of the same lock file is kept.
#
# It replaces mdbook-linkcheck: that crate took longer to compile on a new machine than any other
# tool of the checks (17 minutes beside the other setup builds on 2 cores), while this installs
# in seconds and also checks headings that links point to.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

digest="$(sha256sum hack/book/package-lock.json | cut -c1-16)"
dest="$KOLLECT_CACHE/link-checker/$digest"
if [ -x "$dest/node_modules/.bin/remark" ]; then
    echo "link checker: $dest"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm not found; the book's link checker needs Node.js and npm" >&2
    exit 2
fi
echo "installing the link checker (remark-validate-links)"
rm -rf "$dest"
mkdir -p "$dest"
cp hack/book/package.json hack/book/package-lock.json "$dest/"
npm ci --prefix "$dest" --no-audit --no-fund --silent
echo "link checker: $dest"
