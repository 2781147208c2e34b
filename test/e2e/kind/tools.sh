#!/usr/bin/env bash
# Builds, from their Go modules at the versions pinned in lib.sh, every binary
# the kind tier needs, into the kind cache (rebuilt only when a pin changes):
#
#   $KIND_CACHE/bin/kind, $KIND_CACHE/bin/kubectl       on the host
#   $KIND_CACHE/k8s-<version>/{kubelet,kubeadm,kube-proxy,kubectl}
#                                                       in the node image
#   kube-apiserver, kube-controller-manager, kube-scheduler, etcd
#                                                       from the k8s tier's cache
#                                                       (test/k8s/tools/build.sh)
#   $KIND_CACHE/bin-images/{coredns,local-path-provisioner,pause}
#
#   tools.sh            build what is missing; prints "tools: ok"
#   tools.sh --print-k8s-dirs   prints the two Kubernetes binary dirs (no build)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_DIR="$KIND_CACHE/k8s-$K8S_VERSION"
IMG_BIN="$KIND_CACHE/bin-images"
CP_DIR=$(bash "$E2E_ROOT/test/k8s/tools/build.sh" --print-bin-dir)

if [[ "${1:-}" == --print-k8s-dirs ]]; then
  echo "$K8S_DIR"
  echo "$CP_DIR"
  exit 0
fi

go_env
mkdir -p "$K8S_DIR" "$IMG_BIN"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/coffer-kind-tools.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

stamp_ok() { [[ -x "$1" && -f "$1.stamp" && "$(cat "$1.stamp")" == "$2" ]]; }
stamp() { printf '%s\n' "$2" >"$1.stamp"; }

# go_install <dest dir> <name> <module/pkg@version> [ldflags]: `go install` of a
# module at a version (its own go.mod, replace directives included).
go_install() {
  local dest=$1 name=$2 target=$3 ldflags=${4:-}
  stamp_ok "$dest/$name" "$target $ldflags" && return 0
  build() {
    GOBIN="$WORK/gobin" GOFLAGS= go install -trimpath -ldflags "-s -w $ldflags" "$target"
    mv -f "$WORK/gobin/$name" "$dest/$name"
    stamp "$dest/$name" "$target $ldflags"
  }
  timed "go install $target" build
}

# ---------------------------------------------------------------- kind
go_install "$KIND_BIN" kind "sigs.k8s.io/kind@$KIND_VERSION"

# ---------------------------------------------------------------- node binaries
# kubelet, kubeadm, kube-proxy and kubectl from k8s.io/kubernetes. Its go.mod
# replaces the staging modules with local paths, which a dependency's go.mod
# cannot pass on, so a throwaway main module re-creates them as version
# replaces (as test/k8s/tools/build.sh does for the control plane).
k8s_targets=()
for t in kubelet kubeadm kube-proxy kubectl; do
  stamp_ok "$K8S_DIR/$t" "$K8S_VERSION" || k8s_targets+=("$t")
done
build_k8s() {
  local d="$WORK/k8s" out="$WORK/k8s-out"
  mkdir -p "$d" "$out"
  (
    cd "$d"
    go mod init coffer.local/kind-k8s-build >/dev/null 2>&1
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .GoMod)
    [[ -f "$gomod" ]] || kdie "could not download k8s.io/kubernetes@$K8S_VERSION"
    {
      echo "require k8s.io/kubernetes $K8S_VERSION"
      # local-path replaces ("=> ./staging/src/k8s.io/api") become version replaces
      awk -v staging="$K8S_STAGING_VERSION" '
        /^replace[[:space:]]*\(/ { inrep = 1; next }
        inrep && /^\)/ { inrep = 0; next }
        inrep && /=>/ {
          split($0, parts, "=>"); split(parts[1], lhs, " "); split(parts[2], rhs, " ")
          if (rhs[1] ~ /^\.\.?\//) printf "replace %s => %s %s\n", lhs[1], lhs[1], staging
          else printf "replace %s\n", $0
        }' "$gomod"
    } >>go.mod
    local minor=${K8S_VERSION#v1.}
    minor=${minor%%.*}
    local vflags=""
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      vflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
      vflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    local pkgs=()
    for t in "${k8s_targets[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$t"); done
    go build -trimpath -ldflags "-s -w$vflags" -o "$out/" "${pkgs[@]}"
  )
  for t in "${k8s_targets[@]}"; do
    mv -f "$out/$t" "$K8S_DIR/$t"
    stamp "$K8S_DIR/$t" "$K8S_VERSION"
  done
}
if ((${#k8s_targets[@]})); then
  timed "building ${k8s_targets[*]} $K8S_VERSION from k8s.io/kubernetes" build_k8s
fi
ln -sf "$K8S_DIR/kubectl" "$KIND_BIN/kubectl"

# ---------------------------------------------------------------- control plane
# The k8s tier's build (same Kubernetes version and flags): kube-apiserver,
# kube-controller-manager, kube-scheduler and etcd (and kwok, which it also
# builds). Cached there; built once for both tiers.
for t in kube-apiserver kube-controller-manager kube-scheduler etcd; do
  if [[ ! -x "$CP_DIR/$t" ]]; then
    timed "building the control plane with test/k8s/tools/build.sh" bash "$E2E_ROOT/test/k8s/tools/build.sh" >&2
    break
  fi
done

# ---------------------------------------------------------------- images' binaries
go_install "$IMG_BIN" coredns "github.com/coredns/coredns@$COREDNS_VERSION" \
  "-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
go_install "$IMG_BIN" local-path-provisioner "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION" \
  "-X main.VERSION=$LOCAL_PATH_VERSION"
pause_hash=$(hash_inputs "$E2E_KIND_DIR/pause/main.go" "$E2E_KIND_DIR/pause/go.mod")
if ! stamp_ok "$IMG_BIN/pause" "$pause_hash"; then
  (cd "$E2E_KIND_DIR/pause" && go build -trimpath -ldflags "-s -w" -o "$IMG_BIN/pause" .)
  stamp "$IMG_BIN/pause" "$pause_hash"
fi

echo "tools: ok"
