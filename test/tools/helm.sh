#!/usr/bin/env bash
# Installs helm for the chart tests and `npm run test:e2e` by building it from
# its Go module (helm.sh/helm/v3) at a pinned version into a cache directory
# outside the checkout. Needs `go` on PATH and the Go module proxy.
# Idempotent: a binary whose version stamp matches is not rebuilt.
#
#   COFFER_HELM_DIR   cache dir (default: ${XDG_CACHE_HOME:-$HOME/.cache}/coffer/helm-<version>)
#
#   helm.sh                 build if needed; prints the binary's path on the last line
#   helm.sh --print-path    only prints where the binary is (or would be); no build
#
# The chart unit test (test/unit/chart) looks for helm in $COFFER_HELM, then
# in this cache, then on PATH; it never builds it itself.
set -euo pipefail

HELM_VERSION=v3.21.4
# helm v3.21.4 requires k8s.io/client-go v0.36.x: it targets Kubernetes 1.36.
K8S_MAJOR=1
K8S_MINOR=36
DIR=${COFFER_HELM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/coffer/helm-${HELM_VERSION}}
BIN="$DIR/helm"

case "${1:-}" in
  --print-path) echo "$BIN"; exit 0 ;;
  --print-version) echo "$HELM_VERSION"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print-path|--print-version]" >&2; exit 2 ;;
esac

log() { printf '[helm-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ -x "$BIN" && -f "$DIR/.version" && "$(cat "$DIR/.version")" == "$HELM_VERSION k8s-$K8S_MAJOR.$K8S_MINOR" ]]; then
  log "helm $HELM_VERSION: cached"
  echo "$BIN"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  log "ERROR: 'go' is not on PATH; it is needed to build helm from helm.sh/helm/v3"
  exit 1
fi

mkdir -p "$DIR"
t0=$(date +%s)
log "building helm $HELM_VERSION from helm.sh/helm/v3 (a few minutes on 2 cores) ..."
# `go install` of a module@version builds with that module's own go.mod
# (replace directives included), so no throwaway main module is needed.
# The ldflags are those of helm's Makefile: the version `helm version` prints,
# and the Kubernetes version `helm template`/`helm lint` assume without a
# cluster (one minor above helm's k8s.io/client-go, as helm's releases do;
# without them helm assumes v1.20).
GOBIN="$DIR" CGO_ENABLED=0 GOWORK=off GOFLAGS= go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=${K8S_MAJOR} -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${K8S_MINOR} \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=${K8S_MAJOR} -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${K8S_MINOR}" \
  "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
printf '%s\n' "$HELM_VERSION k8s-$K8S_MAJOR.$K8S_MINOR" >"$DIR/.version"
log "built helm $HELM_VERSION in $(($(date +%s) - t0))s"
echo "$BIN"
