#!/usr/bin/env bash
# Build the real Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd, kwok) from their Go modules into a cache outside the repository,
# keyed by the pinned versions. Reused when present. Prints what it built and how long it took.
#
#   build.sh             build (or reuse) and print the bin directory last
#   build.sh --print     print the bin directory without building
#   build.sh --versions  print the pinned versions (KEY=value)
#
# Versions may be overridden from the environment (K8S_VERSION, ETCD_VERSION, ...); the cache
# key changes with them. CANARYD_CACHE moves the cache (default ~/.cache/canaryd).
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.14}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
ISTIO_API_VERSION="${ISTIO_API_VERSION:-v1.28.0}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.4.1}"
CACHE_ROOT="${CANARYD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canaryd}/realkube"
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
OUT="$CACHE_ROOT/$KEY"
BIN="$OUT/bin"
CRD_VERSIONS="istio.io/api=$ISTIO_API_VERSION sigs.k8s.io/gateway-api=$GATEWAY_API_VERSION"

if [ "${1:-}" = "--print" ]; then echo "$BIN"; exit 0; fi
if [ "${1:-}" = "--versions" ]; then
    printf 'kubernetes=%s\netcd=%s\nkwok=%s\nistio_api=%s\ngateway_api=%s\n' "$K8S_VERSION" \
        "$ETCD_VERSION" "$KWOK_VERSION" "$ISTIO_API_VERSION" "$GATEWAY_API_VERSION"
    exit 0
fi

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
command -v go >/dev/null || { echo "realkube: go is not on PATH" >&2; exit 3; }

have() { [ -x "$BIN/$1" ]; }
if have kube-apiserver && have kube-controller-manager && have kube-scheduler && have etcd \
   && have kwok && [ -d "$OUT/stages" ] && [ "$(cat "$OUT/crds/VERSIONS" 2>/dev/null)" = "$CRD_VERSIONS" ]; then
    echo "realkube: reusing $BIN (Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION)" >&2
    echo "$BIN"; exit 0
fi

mkdir -p "$BIN" "$OUT/work"
LOG="$OUT/build.log"
: > "$LOG"
start_all=$(date +%s)
step() { echo "realkube: $*" >&2; }

# --- Kubernetes: a wrapper module that replaces each staging module with its published tag.
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
staging_version="v0.${K8S_VERSION#v1.}"
kw="$OUT/work/kubernetes"
if ! { have kube-apiserver && have kube-controller-manager && have kube-scheduler; }; then
    t0=$(date +%s)
    rm -rf "$kw"; mkdir -p "$kw"; cd "$kw"
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
    {
        echo "module canaryd.local/realkube"
        echo
        grep -E '^go [0-9]' "$gomod"
        grep -E '^godebug ' "$gomod" || true
        echo
        echo "require k8s.io/kubernetes $K8S_VERSION"
        echo
        echo "replace ("
        sed -n 's#^[[:space:]]*\(k8s.io/[A-Za-z0-9._-]*\) => ./staging/src/k8s.io/.*#\1#p' "$gomod" \
            | sort -u | while read -r m; do echo "	$m => $m $staging_version"; done
        echo ")"
    } > go.mod
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
    step "resolving Kubernetes $K8S_VERSION modules"
    go mod tidy -e >>"$LOG" 2>&1 || { tail -30 "$LOG" >&2; exit 1; }
    ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
    for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
        have "$cmd" && continue
        t1=$(date +%s)
        step "building $cmd $K8S_VERSION"
        go build -trimpath -tags notest,grpcnotrace -ldflags "$ld" -o "$BIN/$cmd.tmp" \
            "k8s.io/kubernetes/cmd/$cmd" >>"$LOG" 2>&1 || { tail -30 "$LOG" >&2; exit 1; }
        mv "$BIN/$cmd.tmp" "$BIN/$cmd"
        step "built $cmd in $(( $(date +%s) - t1 )) s"
    done
    step "Kubernetes binaries in $(( $(date +%s) - t0 )) s"
fi

# --- etcd: its own wrapper module.
if ! have etcd; then
    t0=$(date +%s)
    ew="$OUT/work/etcd"; rm -rf "$ew"; mkdir -p "$ew"; cd "$ew"
    go mod init canaryd.local/realkube-etcd >>"$LOG" 2>&1
    step "building etcd $ETCD_VERSION"
    go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >>"$LOG" 2>&1 || { tail -30 "$LOG" >&2; exit 1; }
    go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3 >>"$LOG" 2>&1 \
        || { tail -30 "$LOG" >&2; exit 1; }
    mv "$BIN/etcd.tmp" "$BIN/etcd"
    step "built etcd in $(( $(date +%s) - t0 )) s"
fi

# --- kwok, and the stage files that ship in its module (v0.8 has no built-in stages).
if ! have kwok || [ ! -d "$OUT/stages" ]; then
    t0=$(date +%s)
    step "building kwok $KWOK_VERSION"
    GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >>"$LOG" 2>&1 \
        || { tail -30 "$LOG" >&2; exit 1; }
    src=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
    rm -rf "$OUT/stages.tmp"; mkdir -p "$OUT/stages.tmp"
    cp -r "$src/kustomize/stage/." "$OUT/stages.tmp/"
    chmod -R u+w "$OUT/stages.tmp"
    rm -rf "$OUT/stages"; mv "$OUT/stages.tmp" "$OUT/stages"
    step "built kwok in $(( $(date +%s) - t0 )) s"
fi

# --- upstream CRDs for the meshes (the project's own copies are checked against them).
if [ "$(cat "$OUT/crds/VERSIONS" 2>/dev/null)" != "$CRD_VERSIONS" ]; then
    rm -rf "$OUT/crds.tmp"; mkdir -p "$OUT/crds.tmp"
    istio=$(go mod download -json "istio.io/api@$ISTIO_API_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
    gw=$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
    cp "$istio/kubernetes/customresourcedefinitions.gen.yaml" "$OUT/crds.tmp/istio.yaml"
    cp "$gw/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml" "$OUT/crds.tmp/gateway-httproutes.yaml"
    echo "$CRD_VERSIONS" > "$OUT/crds.tmp/VERSIONS"
    chmod -R u+w "$OUT/crds.tmp"; rm -rf "$OUT/crds"; mv "$OUT/crds.tmp" "$OUT/crds"
    step "upstream CRDs: istio.io/api $ISTIO_API_VERSION, gateway-api $GATEWAY_API_VERSION"
fi

rm -rf "$OUT/work"
step "control plane ready in $BIN ($(( $(date +%s) - start_all )) s): Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION"
echo "$BIN"
