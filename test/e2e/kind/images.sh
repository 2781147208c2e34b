#!/usr/bin/env bash
# The container images a kind node needs before anything can be pulled, made
# here from the Go-built binaries (tools.sh) and a Debian userland
# (rootfs.sh), and saved into one `docker save` archive, cached by a hash of
# every input:
#
#   registry.k8s.io/kube-apiserver, kube-controller-manager, kube-scheduler,
#     kube-proxy:<k8s version>, etcd:<kubeadm's tag>, coredns/coredns:<tag>,
#     pause:<tag>                          (the names kubeadm v1.32 uses)
#   coffer.local/kind/cni-agent:1          (files/manifests/default-cni.yaml)
#   coffer.local/kind/local-path-provisioner:<version>, local-path-helper:1
#                                          (files/manifests/default-storage.yaml)
#
# Go-only images are one layer made with `docker import` (the binary and
# nothing else); kube-proxy, the CNI agent and the helper share a Debian
# userland layer (iptables, conntrack, iproute2, a shell).
#
#   images.sh      prints the archive's path on the last line
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bash "$E2E_KIND_DIR/tools.sh" >/dev/null
{ read -r K8S_DIR; read -r CP_DIR; } < <(bash "$E2E_KIND_DIR/tools.sh" --print-k8s-dirs)
IMG_BIN="$KIND_CACHE/bin-images"
USERLAND_TAR=$(bash "$E2E_KIND_DIR/rootfs.sh" userland "$USERLAND_PACKAGES" | tail -1)

stamps=()
for f in "$K8S_DIR/kube-proxy" "$K8S_DIR/kubectl" "$IMG_BIN/coredns" "$IMG_BIN/local-path-provisioner" "$IMG_BIN/pause"; do
  stamps+=("${f##*/}=$(cat "$f.stamp")")
done
for t in kube-apiserver kube-controller-manager kube-scheduler etcd; do
  stamps+=("$t=$(cat "$CP_DIR/.$t.version" 2>/dev/null || sha256sum "$CP_DIR/$t" | cut -c1-16)")
done
KEY=$(hash_inputs "${USERLAND_TAR##*/}" "${stamps[@]}" "$K8S_VERSION" "$KUBEADM_ETCD_TAG" "$COREDNS_VERSION" "$PAUSE_TAG" \
  "$E2E_KIND_DIR/images.sh" "$E2E_KIND_DIR/files/cni-agent.sh" "$E2E_KIND_DIR/files/iptables-wrapper")
OUT="$KIND_CACHE/images/images-$K8S_VERSION-$KEY.tar"
if [[ -f "$OUT" ]]; then
  klog "node images: cached ($OUT)"
  echo "$OUT"
  exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/coffer-kind-images.XXXXXX")
TAGS=()
cleanup() {
  rm -rf "$WORK"
  # the archive is the cache; the docker tags were only the way to make it
  ((${#TAGS[@]} == 0)) || docker rmi "${TAGS[@]}" >/dev/null 2>&1 || true
}
trap cleanup EXIT
t0=$(date +%s)
PATH_ENV='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

# go_image <tag> <binary> <path in image> <entrypoint json>
go_image() {
  local tag=$1 bin=$2 dest=$3 entry=$4 d
  d="$WORK/img-${tag//[\/:]/_}"
  mkdir -p "$d$(dirname "$dest")" "$d/tmp" "$d/etc"
  chmod 1777 "$d/tmp"
  install -m 0755 "$bin" "$d$dest"
  # a passwd/group for tools that look names up; nobody is the upstream images' nonroot
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$d/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$d/etc/group"
  tar --numeric-owner --owner=0 --group=0 -C "$d" -c . |
    docker import --change "$PATH_ENV" --change "ENTRYPOINT $entry" - "$tag" >/dev/null
  TAGS+=("$tag")
}

klog "building the node's images ..."
go_image "registry.k8s.io/kube-apiserver:$K8S_VERSION" "$CP_DIR/kube-apiserver" /usr/local/bin/kube-apiserver '["/usr/local/bin/kube-apiserver"]'
go_image "registry.k8s.io/kube-controller-manager:$K8S_VERSION" "$CP_DIR/kube-controller-manager" /usr/local/bin/kube-controller-manager '["/usr/local/bin/kube-controller-manager"]'
go_image "registry.k8s.io/kube-scheduler:$K8S_VERSION" "$CP_DIR/kube-scheduler" /usr/local/bin/kube-scheduler '["/usr/local/bin/kube-scheduler"]'
go_image "registry.k8s.io/etcd:$KUBEADM_ETCD_TAG" "$CP_DIR/etcd" /usr/local/bin/etcd '["/usr/local/bin/etcd"]'
go_image "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" "$IMG_BIN/coredns" /coredns '["/coredns"]'
go_image "registry.k8s.io/pause:$PAUSE_TAG" "$IMG_BIN/pause" /pause '["/pause"]'
go_image "coffer.local/kind/local-path-provisioner:$LOCAL_PATH_VERSION" "$IMG_BIN/local-path-provisioner" \
  /usr/local/bin/local-path-provisioner '["/usr/local/bin/local-path-provisioner"]'

# The Debian userland, and the images built on it with `docker build`.
USERLAND="coffer.local/kind/userland:$KEY"
docker import --change "$PATH_ENV" --change 'CMD ["/bin/sh"]' "$USERLAND_TAR" "$USERLAND" >/dev/null
TAGS+=("$USERLAND")
mkdir -p "$WORK/ctx"
cp "$K8S_DIR/kube-proxy" "$K8S_DIR/kubectl" "$E2E_KIND_DIR/files/iptables-wrapper" "$E2E_KIND_DIR/files/cni-agent.sh" "$WORK/ctx/"
cat >"$WORK/ctx/Dockerfile" <<DOCKERFILE
FROM $USERLAND AS iptables
COPY iptables-wrapper /usr/sbin/iptables-wrapper
RUN chmod 0755 /usr/sbin/iptables-wrapper \\
 && for c in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do \\
      ln -sf iptables-wrapper "/usr/sbin/\$c"; done

FROM iptables AS kube-proxy
COPY kube-proxy /usr/local/bin/kube-proxy
RUN chmod 0755 /usr/local/bin/kube-proxy

FROM iptables AS cni-agent
COPY kubectl /usr/local/bin/kubectl
COPY cni-agent.sh /usr/local/bin/cni-agent
RUN chmod 0755 /usr/local/bin/kubectl /usr/local/bin/cni-agent
ENTRYPOINT ["/usr/local/bin/cni-agent"]
DOCKERFILE
for target in kube-proxy:registry.k8s.io/kube-proxy:$K8S_VERSION cni-agent:coffer.local/kind/cni-agent:1; do
  quiet_build -q --target "${target%%:*}" -t "${target#*:}" "$WORK/ctx"
  TAGS+=("${target#*:}")
done
docker tag "$USERLAND" coffer.local/kind/local-path-helper:1
TAGS+=(coffer.local/kind/local-path-helper:1)

mkdir -p "$KIND_CACHE/images"
save=()
for t in "${TAGS[@]}"; do [[ "$t" == "$USERLAND" ]] || save+=("$t"); done
docker save "${save[@]}" -o "$OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
# older archives of this cache are superseded
find "$KIND_CACHE/images" -name 'images-*.tar' ! -path "$OUT" -delete
klog "node images: ${#save[@]} images, $(du -h "$OUT" | cut -f1), in $(($(date +%s) - t0))s"
echo "$OUT"
