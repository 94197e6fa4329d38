#!/usr/bin/env bash
# Builds the book (docs/: guide, reference, design record, development pages) into
# $KOLLECT_CACHE/book with mdbook, failing on any broken link between its pages or to files of
# the repository (mdbook-linkcheck; web links are not followed), and checks that every code
# block names its language and every Rust block is compiled code or says why not.
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
echo "book: built into $KOLLECT_CACHE/book/html, every link checked"
