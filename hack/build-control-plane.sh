#!/usr/bin/env bash
# Builds kube-apiserver and etcd from source with the machine's Go toolchain, through the Go
# module proxy, into $KOLLECT_CACHE/envtest/<kubernetes version>/ (the KUBEBUILDER_ASSETS layout).
# Idempotent: an existing build is reused. The Kubernetes release matches the k8s-openapi feature
# of the workspace (v1_37).
set -euo pipefail
cd "$(dirname "$0")/.."
. hack/env.sh

K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.7.0}"
STAGING_VERSION="v0.${K8S_VERSION#1.}"
dest="$KOLLECT_CACHE/envtest/$K8S_VERSION"
if [ -x "$dest/kube-apiserver" ] && [ -x "$dest/etcd" ]; then
    echo "control plane binaries: $dest"
    exit 0
fi
command -v go >/dev/null || { echo "error: go is required to build kube-apiserver and etcd" >&2; exit 2; }

work="$KOLLECT_CACHE/envtest/build-$K8S_VERSION"
mkdir -p "$work/apiserver" "$work/etcd" "$dest"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

# Every k8s.io staging module is pinned to the release's v0.X.Y tag, as Kubernetes' own go.mod
# replaces them with ./staging.
staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
    cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
    cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt
    kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
    mount-utils pod-security-admission sample-apiserver streaming)

if [ ! -x "$dest/kube-apiserver" ]; then
    echo "building kube-apiserver $K8S_VERSION (several minutes on a cold cache)"
    (
        cd "$work/apiserver"
        {
            echo "module kollect.dev/envtest/apiserver"
            echo
            echo "go 1.26.0"
            echo
            echo "replace ("
            for m in "${staging[@]}"; do echo "	k8s.io/$m => k8s.io/$m $STAGING_VERSION"; done
            echo ")"
        } > go.mod
        go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION"
        # The version is stamped as the release build does; the API server derives its emulated
        # version and feature defaults from it.
        minor="${K8S_VERSION#1.}"; minor="${minor%%.*}"
        ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION"
        ldflags="$ldflags -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
        ldflags="$ldflags -X k8s.io/component-base/version/verflag.programName=kube-apiserver"
        go build -trimpath -ldflags "$ldflags" -o "$dest/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
        mv "$dest/kube-apiserver.tmp" "$dest/kube-apiserver"
    )
fi

if [ ! -x "$dest/etcd" ]; then
    echo "building etcd $ETCD_VERSION"
    (
        cd "$work/etcd"
        printf 'module kollect.dev/envtest/etcd\n\ngo 1.26.0\n' > go.mod
        cat > main.go <<'GO'
// Command etcd runs etcd's server entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
        go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
        go mod tidy
        go build -trimpath -ldflags "-s -w" -o "$dest/etcd.tmp" .
        mv "$dest/etcd.tmp" "$dest/etcd"
    )
fi
echo "control plane binaries: $dest"
