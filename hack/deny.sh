#!/usr/bin/env bash
# Supply-chain checks of deny.toml: licences, bans (duplicate versions, wildcards) and sources
# (crates.io only) always; security advisories too when the RustSec database can be fetched
# (it is a git repository on github.com, which some test machines cannot reach; the script says
# so instead of passing silently).
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

cargo deny --locked check licenses bans sources

if cargo deny --locked fetch db >"$KOLLECT_CACHE/deny-fetch.log" 2>&1; then
    cargo deny --locked check advisories
else
    echo "advisories: NOT CHECKED, the RustSec database could not be fetched:"
    grep -m1 -iE "error|fatal" "$KOLLECT_CACHE/deny-fetch.log" || tail -n 1 "$KOLLECT_CACHE/deny-fetch.log"
    if [ -n "${KOLLECT_REQUIRE_ADVISORIES:-}" ]; then
        echo "error: KOLLECT_REQUIRE_ADVISORIES is set" >&2
        exit 1
    fi
fi
