#!/usr/bin/env bash
# Installs what building and testing the workspace needs on a fresh machine. Idempotent: a second
# run only checks. Everything downloaded is cached under ~/.cache/kollect.
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
    echo "error: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 2
fi
if ! need go; then
    echo "error: go not found; the Go toolchain derives the canonical-JSON parity vectors (hack/go-canonical)" >&2
    exit 2
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        echo "error: the Rust component '$component' is missing; run: rustup component add $component" >&2
        exit 2
    fi
done

# System packages: the real backends the tests run against (PostgreSQL, NATS with JetStream), the
# runtimes of the others (Java for Kafka, Node.js for Azurite), and what the workspace builds with
# (a C toolchain, clang for the BigQuery emulator's ZetaSQL, cmake for librdkafka, pkg-config and
# OpenSSL headers for libgit2 and libssh2).
APT_PACKAGES=(postgresql nats-server git openssh-server procps util-linux patch build-essential clang cmake pkg-config libssl-dev)
# Tools that may come from elsewhere (an SDK install): a Debian package only when the command is
# missing.
declare -A APT_FOR_COMMAND=([java]=default-jre-headless [mvn]=maven [node]=nodejs [npm]=npm)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
for command in "${!APT_FOR_COMMAND[@]}"; do
    need "$command" || missing+=("${APT_FOR_COMMAND[$command]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# Independent installs run in parallel, each logging to its own file (shown when it fails):
# - the local control plane (kube-apiserver + etcd, built from source);
# - Go-built backends: MinIO, fake-gcs-server, FerretDB; the BigQuery emulator (cgo, the longest);
#   Gitea (cgo SQLite);
# - chart and image tools: helm, helm-docs, umoci;
# - Kafka broker jars from Maven Central, Azurite and the book's link checker from npm, DuckDB
#   from PyPI;
# - the cargo-built tools of the checks (mdbook, cargo-deny, cargo-cyclonedx, cargo-public-api).
# Each is cached after its first run.
logs="$KOLLECT_CACHE/setup-logs"
mkdir -p "$logs"
declare -A jobs=()
for script in build-control-plane install-go-backends install-bigquery-emulator install-gitea install-chart-tools install-kafka install-azurite install-duckdb install-link-checker install-cargo-tools; do
    {
        started=$SECONDS
        status=0
        bash "hack/$script.sh" || status=$?
        echo "$script: finished after $((SECONDS - started)) s"
        exit "$status"
    } > "$logs/$script.log" 2>&1 &
    jobs[$script]=$!
done
failed=0
for script in "${!jobs[@]}"; do
    if wait "${jobs[$script]}"; then
        tail -n 3 "$logs/$script.log"
    else
        echo "error: hack/$script.sh failed:" >&2
        tail -n 40 "$logs/$script.log" >&2
        failed=1
    fi
done
[ "$failed" -eq 0 ] || exit 1

bash hack/build-deps.sh

# Fetch crates once so the build steps that follow can run offline-friendly and in parallel.
cargo fetch --locked >/dev/null
echo "setup: ok in $SECONDS s (target dir $CARGO_TARGET_DIR)"
