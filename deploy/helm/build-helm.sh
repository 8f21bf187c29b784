#!/usr/bin/env bash
# Build helm from its Go module (go install helm.sh/helm/v3/cmd/helm@<pinned>) into a cache
# outside the repository, beside the real control plane's binaries, keyed by the version.
# Reused when present. Prints the helm binary's path last; progress and timing on stderr.
#
#   build-helm.sh            build (or reuse) and print the binary's path
#   build-helm.sh --print    print the binary's path without building
#   build-helm.sh --version  print the pinned version
#
# HELM_VERSION overrides the pin; CANARYD_CACHE moves the cache (default ~/.cache/canaryd).
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
BIN="${CANARYD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canaryd}/helm/$HELM_VERSION/bin"

if [ "${1:-}" = "--print" ]; then echo "$BIN/helm"; exit 0; fi
if [ "${1:-}" = "--version" ]; then echo "$HELM_VERSION"; exit 0; fi

if [ -x "$BIN/helm" ]; then
    echo "helm: reusing $BIN/helm ($HELM_VERSION)" >&2
    echo "$BIN/helm"; exit 0
fi
command -v go >/dev/null || { echo "helm: go is not on PATH" >&2; exit 3; }
export GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$BIN"
t0=$(date +%s)
echo "helm: building helm $HELM_VERSION" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# What the linker sets, as helm's own Makefile does: the version `helm version` reports, and
# the Kubernetes version `helm template` and `helm lint` assume without a cluster (client-go's
# v0.N is Kubernetes 1.N; unset, helm would assume 1.20).
gomod=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
kminor=$(sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod" | head -1)
[ -n "$kminor" ] || { echo "helm: no k8s.io/client-go in $gomod" >&2; exit 1; }
ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
ld="$ld -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in pkg/lint/rules pkg/chartutil; do
    ld="$ld -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$kminor"
done
GOBIN="$tmp" go install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
mv "$tmp/helm" "$BIN/helm"
echo "helm: built $HELM_VERSION in $(( $(date +%s) - t0 )) s: $BIN/helm" >&2
echo "$BIN/helm"
