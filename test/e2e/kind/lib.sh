# Shared settings of the kind tooling (sourced, not run): pinned versions,
# the cache directory and small helpers. Everything here is built on this
# machine from Go modules and Debian packages; nothing is pulled from an
# image registry.
#
#   COFFER_KIND_CACHE   cache dir (default ${XDG_CACHE_HOME:-$HOME/.cache}/coffer/kind)
#   COFFER_DEBIAN_MIRROR  default http://deb.debian.org/debian

KIND_VERSION=v0.30.0              # sigs.k8s.io/kind: the CLI and the node image recipe (images/base)
K8S_VERSION=v1.32.13              # the k8s tier's Kubernetes (test/k8s/tools/build.sh)
K8S_STAGING_VERSION=v0.32.13      # k8s.io/<staging module> matching K8S_VERSION
ETCD_VERSION=v3.5.23              # as test/k8s/tools/build.sh (kubeadm 1.32 names 3.5.x; the tag below is kubeadm's)
COREDNS_VERSION=v1.11.3           # kubeadm 1.32's CoreDNS
LOCAL_PATH_VERSION=v0.0.30        # github.com/rancher/local-path-provisioner (kind's default storage)
DEBIAN_SUITE=bookworm             # node rootfs and the images that need a userland (kube-proxy, helper)

# Image names exactly as kubeadm v1.32 and the node's manifests refer to them.
KUBEADM_ETCD_TAG=3.5.24-0
PAUSE_TAG=3.10
NODE_IMAGE_REPO=coffer.local/kind-node

E2E_KIND_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_ROOT=$(cd "$E2E_KIND_DIR/../../.." && pwd)
KIND_CACHE=${COFFER_KIND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/coffer/kind}
KIND_BIN="$KIND_CACHE/bin"            # kind, kubectl (put first on PATH by the e2e scripts)
DEBIAN_MIRROR=${COFFER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$KIND_BIN"

klog() { printf '[kind %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
kdie() { klog "ERROR: $*"; exit 1; }

# hash_inputs <file|string...>: a short hash of files' contents and strings,
# used to key cached artifacts on what they are built from.
hash_inputs() {
  local x
  for x in "$@"; do
    if [[ -f "$x" ]]; then
      printf 'file %s\n' "${x##*/}"
      cat "$x"
    else
      printf 'str %s\n' "$x"
    fi
  done | sha256sum | cut -c1-16
}

# go_env: a Go environment for static, reproducible builds outside any workspace.
go_env() {
  export CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=mod
  command -v go >/dev/null 2>&1 || kdie "'go' is not on PATH (needed to build kind, kubelet, kubeadm and the node's images)"
}

# quiet_build <docker build args...>: the classic builder (BuildKit needs a
# plugin this machine's docker lacks), its output shown only when it fails.
quiet_build() {
  local out rc=0
  out=$(DOCKER_BUILDKIT=0 docker build "$@" 2>&1) || rc=$?
  ((rc == 0)) || { printf '%s\n' "$out" | tail -40 >&2; kdie "docker build $* failed"; }
}

# timed <what> <command...>
timed() {
  local what=$1 t0
  shift
  t0=$(date +%s)
  klog "$what ..."
  "$@"
  klog "$what: done in $(($(date +%s) - t0))s"
}

# Debian packages (debootstrap --include) of the node rootfs and of the small
# userland the kube-proxy, CNI agent and local-path helper images share.
NODE_PACKAGES=systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,containerd,runc,containernetworking-plugins,socat,less
USERLAND_PACKAGES=iptables,conntrack,iproute2,ca-certificates
