#!/usr/bin/env bash
# Builds the operator's OCI image without a container daemon: a release build of `kollect`,
# a root filesystem of that binary, the shared libraries it links (copied from this machine,
# a Debian system like the Dockerfile's base), CA certificates and a non-root user, packed into
# an OCI image layout with umoci. Then it unpacks the image and runs `kollect --version` and
# `kollect run --help` in it with chroot, and prints the image's size.
#
# Output: $KOLLECT_CACHE/image/oci (OCI layout, tag <version>) and
# $KOLLECT_CACHE/image/kollect-<version>.oci.tar (the layout as one archive, for
# `skopeo copy oci-archive:...`, `podman load` or `ctr images import`).
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh
bash hack/install-chart-tools.sh >/dev/null
umoci="$KOLLECT_CACHE/bin/umoci"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
out="$KOLLECT_CACHE/image"
rootfs="$out/rootfs"
layout="$out/oci"

echo "building kollect $version (release)"
cargo build --release --locked -p kollect-operator --bin kollect
binary="$CARGO_TARGET_DIR/release/kollect"

rm -rf "$out" && mkdir -p "$rootfs"/{usr/local/bin,etc/ssl/certs,tmp}
chmod 1777 "$rootfs/tmp"
install -m 0755 "$binary" "$rootfs/usr/local/bin/kollect"
strip "$rootfs/usr/local/bin/kollect"
# The dynamic loader and every library the binary links, at the paths the loader looks in.
for library in $(ldd "$binary" | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$rootfs$(dirname "$library")"
    cp -L "$library" "$rootfs$library"
done
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"

"$umoci" init --layout "$layout"
"$umoci" new --image "$layout:$version"
"$umoci" insert --rootless --image "$layout:$version" "$rootfs" /
"$umoci" config --image "$layout:$version" \
    --os linux --architecture amd64 \
    --config.user 65532:65532 \
    --config.entrypoint /usr/local/bin/kollect --config.cmd run \
    --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --config.workingdir / \
    --config.label "org.opencontainers.image.title=kollect" \
    --config.label "org.opencontainers.image.version=$version"
"$umoci" gc --layout "$layout"
tar -C "$layout" -cf "$out/kollect-$version.oci.tar" .

# Run the image's filesystem: unpacked exactly as a runtime would see it.
bundle="$out/bundle"
"$umoci" unpack --rootless --image "$layout:$version" "$bundle" >/dev/null
run_in_image() {
    if [ "$(id -u)" -eq 0 ]; then
        chroot --userspec=65532:65532 "$bundle/rootfs" "$@"
    else
        unshare --map-root-user chroot "$bundle/rootfs" "$@"
    fi
}
run_in_image /usr/local/bin/kollect --version
run_in_image /usr/local/bin/kollect run --help | head -3
rm -rf "$bundle" "$rootfs"

compressed=$(find "$layout/blobs" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
echo "image: $layout:$version ($(numfmt --to=iec "$compressed") in blobs, compressed layer included)"
echo "archive: $out/kollect-$version.oci.tar"
