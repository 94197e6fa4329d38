#!/usr/bin/env bash
# Builds the book (docs/: guide, reference, design record, development pages) into
# $KOLLECT_CACHE/book with mdbook, fails on any link of its pages to a missing page, heading or
# repository file (remark-validate-links, hack/install-link-checker.sh; web links are not
# followed), and checks that every code block names its language and every Rust block is
# compiled code or says why not.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

python3 hack/book/code_blocks.py
# mdbook's own progress lines are dropped; warnings, errors and every broken link are shown.
if ! mdbook build docs --dest-dir "$KOLLECT_CACHE/book" 2>"$KOLLECT_CACHE/book.log"; then
    grep -v '\[INFO\]' "$KOLLECT_CACHE/book.log" >&2
    echo "error: the book did not build (see the links above)" >&2
    exit 1
fi
grep -v '\[INFO\]' "$KOLLECT_CACHE/book.log" || true

# Links are checked in the Markdown sources, where they are written. The repository's origin is
# not consulted (`repository:false`): a clone's remote is no web address, and the checks stay
# offline.
checker="$KOLLECT_CACHE/link-checker/$(sha256sum hack/book/package-lock.json | cut -c1-16)/node_modules"
if [ ! -x "$checker/.bin/remark" ]; then
    echo "error: the link checker is not installed; run hack/install-link-checker.sh" >&2
    exit 2
fi
if ! "$checker/.bin/remark" docs --quiet --frail --no-stdout --no-color \
    --use "$checker/remark-validate-links/index.js=repository:false"; then
    echo "error: broken links in the book (above)" >&2
    exit 1
fi
echo "book: built into $KOLLECT_CACHE/book, every link checked"
