#!/usr/bin/env bash
# Resolves a single-node Kafka broker (KRaft mode) from Maven Central with the machine's Maven and
# copies its jars into $KOLLECT_CACHE/kafka/<version>/libs; the testkit runs it with `java`.
# Idempotent: a complete jar folder is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

for tool in java mvn; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool not found; the Kafka test broker needs a Java 17+ runtime and Maven" >&2
        exit 2
    fi
done

version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' hack/kafka/pom.xml)
dest="$KOLLECT_CACHE/kafka/$version"
if [ -f "$dest/.complete" ]; then
    echo "kafka: $dest"
    exit 0
fi
echo "resolving kafka $version jars"
rm -rf "$dest" && mkdir -p "$dest/libs"
mvn -q -B -f hack/kafka/pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$dest/libs" -DincludeScope=runtime
touch "$dest/.complete"
echo "kafka: $dest"
