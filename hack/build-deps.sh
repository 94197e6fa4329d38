#!/usr/bin/env bash
# Installs the system packages the workspace needs to compile (C toolchain, pkg-config and the
# OpenSSL headers for libgit2/libssh2, cmake for librdkafka) when they are missing. Idempotent.
set -euo pipefail

PACKAGES=(build-essential pkg-config libssl-dev cmake)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing build packages: ${missing[*]}" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi
