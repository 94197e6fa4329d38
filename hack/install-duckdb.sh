#!/usr/bin/env bash
# Installs DuckDB (the Python package) with its httpfs extension from PyPI into a virtual
# environment under $KOLLECT_CACHE/duckdb/<version>. The tests read the Parquet and CSV objects
# the sinks write with it, as an analyst would. httpfs comes as a wheel because DuckDB would
# otherwise download it at first use. Idempotent: an installed version is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

DUCKDB_VERSION=1.5.5
# Time zone data DuckDB needs to hand TIMESTAMP WITH TIME ZONE values to Python.
PYTZ_VERSION=2026.6
dest="$KOLLECT_CACHE/duckdb/$DUCKDB_VERSION"
if [ -x "$dest/bin/python" ] && "$dest/bin/python" -c "import duckdb, duckdb_extension_httpfs, pytz" 2>/dev/null; then
    echo "duckdb: $dest"
    exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "error: python3 not found; DuckDB is installed from PyPI into a virtual environment" >&2
    exit 2
fi
echo "installing duckdb $DUCKDB_VERSION"
rm -rf "$dest"
python3 -m venv "$dest"
"$dest/bin/pip" install --quiet --disable-pip-version-check \
    "duckdb==$DUCKDB_VERSION" "duckdb-extension-httpfs==$DUCKDB_VERSION" "pytz==$PYTZ_VERSION"
echo "duckdb: $dest"
