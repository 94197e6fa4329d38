#!/usr/bin/env bash
# Writes the CycloneDX SBOM of the `kollect` binary: every crate compiled into it (build
# dependencies excluded, since they do not ship), with versions, licences, hashes and the
# dependency graph, for the default features the image is built with.
#
#   hack/sbom.sh [OUTPUT]   default: $KOLLECT_CACHE/sbom/kollect.cdx.json
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

output="${1:-$KOLLECT_CACHE/sbom/kollect.cdx.json}"
mkdir -p "$(dirname "$output")"
# cargo-cyclonedx writes next to each workspace manifest that has a binary
# (`<binary>_bin.cdx.json`); the kollect one is moved out of the tree, the others removed.
written=kollect-operator/kollect_bin.cdx.json
trap 'rm -f */*_bin.cdx.json' EXIT
cargo cyclonedx --quiet --manifest-path kollect-operator/Cargo.toml --format json \
    --describe binaries --target x86_64-unknown-linux-gnu --no-build-deps --spec-version 1.5
mv "$written" "$output"
python3 - "$output" <<'PY'
import json, sys
path = sys.argv[1]
sbom = json.load(open(path))
assert sbom.get("bomFormat") == "CycloneDX", "not a CycloneDX document"
components = sbom.get("components", [])
names = {c["name"] for c in components}
for required in ("kollect-core", "kollect-sinks", "kube-client", "tokio", "rustls"):
    assert required in names, f"{required} missing from the SBOM"
unlicensed = [c["name"] for c in components if not c.get("licenses")]
assert not unlicensed, f"components without a licence: {unlicensed}"
print(f"SBOM {path}: CycloneDX {sbom['specVersion']}, {len(components)} components")
PY
