#!/usr/bin/env bash
# Builds the kind node image for Kubernetes $K8S_VERSION on this machine,
# pulling nothing: kind's images/base recipe (sigs.k8s.io/kind@$KIND_VERSION,
# read from the Go module cache) applied to a debootstrapped Debian rootfs
# with Debian's systemd, containerd, runc and CNI plugins; kubelet, kubeadm
# and kubectl built from k8s.io/kubernetes; and the images kubeadm and the
# addons need (images.sh) already in containerd's store, so a node starts
# without pulling. Cached: the image tag carries a hash of every input, and an
# existing image with that tag is used as it is.
#
#   node-image.sh       prints the image reference on the last line
#                       (also tagged $NODE_IMAGE_REPO:$K8S_VERSION)
#
# Needs root (debootstrap, and a temporary containerd that fills the image's
# /var/lib/containerd), docker with a running daemon, go, jq.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || kdie "building the node image needs root"
bash "$E2E_KIND_DIR/tools.sh" >/dev/null
{ read -r K8S_DIR; read -r _; } < <(bash "$E2E_KIND_DIR/tools.sh" --print-k8s-dirs)
NODE_TAR=$(bash "$E2E_KIND_DIR/rootfs.sh" node "$NODE_PACKAGES" | tail -1)
IMAGES_TAR=$(bash "$E2E_KIND_DIR/images.sh" | tail -1)
KIND_SRC=$(cd "$E2E_KIND_DIR" && GOWORK=off GOFLAGS= go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | jq -r .Dir)
BASE="$KIND_SRC/images/base/files"
[[ -d "$BASE" ]] || kdie "kind's images/base files not found in $KIND_SRC"

files=()
while IFS= read -r f; do files+=("$f"); done < <(find "$E2E_KIND_DIR/files" -type f | sort)
KEY=$(hash_inputs "$KIND_VERSION" "${NODE_TAR##*/}" "${IMAGES_TAR##*/}" \
  "kubelet=$(cat "$K8S_DIR/kubelet.stamp")" "kubeadm=$(cat "$K8S_DIR/kubeadm.stamp")" "kubectl=$(cat "$K8S_DIR/kubectl.stamp")" \
  "$E2E_KIND_DIR/node-image.sh" "$E2E_KIND_DIR/runc-wrapper.sh" "${files[@]}")
IMAGE="$NODE_IMAGE_REPO:$K8S_VERSION-$KEY"
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  docker tag "$IMAGE" "$NODE_IMAGE_REPO:$K8S_VERSION"
  klog "node image $IMAGE: already built"
  echo "$IMAGE"
  exit 0
fi
command -v containerd >/dev/null && command -v ctr >/dev/null ||
  kdie "containerd and ctr are needed on the host to fill the image's containerd store (apt-get install containerd)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/coffer-kind-node.XXXXXX")
CTD_PID=""
cleanup() {
  if [[ -n "$CTD_PID" ]]; then kill "$CTD_PID" 2>/dev/null || true; wait "$CTD_PID" 2>/dev/null || true; fi
  [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT
R="$WORK/root"
mkdir -p "$R"
t0=$(date +%s)
klog "node image $IMAGE: assembling the rootfs ..."
tar --numeric-owner --xattrs -C "$R" -xf "$NODE_TAR"

# ---------------------------------------------------------------- kind's images/base
# files/usr/local/bin (entrypoint, clean-install), /kind, /etc: as its Dockerfile
# copies them (scripts 0755, the rest 0644); the fuse-overlayfs unit is left out.
install -m 0755 "$BASE"/usr/local/bin/* "$R/usr/local/bin/"
mkdir -p "$R/kind/bin" "$R/kind/manifests" "$R/LICENSES"
install -m 0644 "$BASE/kind/README.txt" "$R/kind/"
install -m 0755 "$BASE"/kind/bin/* "$R/kind/bin/"
install -m 0644 "$BASE/LICENSES/README.txt" "$R/LICENSES/"
install -m 0644 "$BASE/etc/crictl.yaml" "$R/etc/"
install -m 0644 "$BASE"/etc/sysctl.d/* "$R/etc/sysctl.d/"
mkdir -p "$R/etc/systemd/system/kubelet.service.d"
for u in containerd.service kubelet.service kubelet.slice undo-mount-hacks.service; do
  install -m 0644 "$BASE/etc/systemd/system/$u" "$R/etc/systemd/system/"
done
install -m 0644 "$BASE"/etc/systemd/system/kubelet.service.d/* "$R/etc/systemd/system/kubelet.service.d/"
# Debian's containerd is /usr/bin/containerd (kind builds its own into /usr/local/bin)
sed -i 's#^ExecStart=/usr/local/bin/containerd#ExecStart=/usr/bin/containerd#' "$R/etc/systemd/system/containerd.service"
# The kubelet: cgroupfs, as containerd (flags override kind's KubeletConfiguration,
# which asks for systemd).
cat >"$R/etc/default/kubelet" <<'EOF'
KUBELET_EXTRA_ARGS=--runtime-cgroups=/system.slice/containerd.service --cgroup-driver=cgroupfs
EOF

# The Dockerfile's RUN steps: systemd as a container's init, only kind's units enabled.
find "$R/lib/systemd/system/sysinit.target.wants/" -name "systemd-tmpfiles-setup.service" -delete
rm -f "$R"/lib/systemd/system/multi-user.target.wants/* "$R"/etc/systemd/system/*.wants/* \
  "$R"/lib/systemd/system/local-fs.target.wants/* "$R"/lib/systemd/system/sockets.target.wants/*udev* \
  "$R"/lib/systemd/system/sockets.target.wants/*initctl* "$R"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >>"$R/etc/systemd/journald.conf"
[[ -e "$R/sbin/init" ]] || ln -s /lib/systemd/systemd "$R/sbin/init"
chroot "$R" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
chroot "$R" systemctl mask systemd-binfmt.service >/dev/null 2>&1
mkdir -p "$R/etc/kubernetes/manifests"
# no host configuration in the image (docker mounts its own)
: >"$R/etc/resolv.conf"
echo kind >"$R/etc/hostname"

# ---------------------------------------------------------------- runtime
install -m 0644 "$E2E_KIND_DIR/files/containerd-config.toml" "$R/etc/containerd/config.toml"
install -m 0755 "$E2E_KIND_DIR/runc-wrapper.sh" "$R/usr/local/sbin/runc-wrapper"
install -m 0755 "$E2E_KIND_DIR/files/crictl" "$R/usr/local/bin/crictl"
chroot "$R" ctr oci spec |
  jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
  jq 'del(.process.rlimits)' >"$R/etc/containerd/cri-base.json"
mkdir -p "$R/opt/cni/bin" "$R/etc/cni/net.d"
for p in host-local loopback ptp portmap bridge; do ln -sf "/usr/lib/cni/$p" "$R/opt/cni/bin/$p"; done

# ---------------------------------------------------------------- Kubernetes
for b in kubelet kubeadm kubectl; do install -m 0755 -o root -g root "$K8S_DIR/$b" "$R/usr/bin/$b"; done
printf '%s' "$K8S_VERSION" >"$R/kind/version"
install -m 0644 "$E2E_KIND_DIR/files/manifests/default-cni.yaml" "$E2E_KIND_DIR/files/manifests/default-storage.yaml" "$R/kind/manifests/"

# ---------------------------------------------------------------- images
# A containerd of the same Debian version as the node's, on the host, with the
# image's /var/lib/containerd as its root: the images land in the k8s.io
# namespace (the CRI's), unpacked by the overlayfs snapshotter, as kind's own
# build leaves them.
mkdir -p "$WORK/ctd-state"
cat >"$WORK/ctd.toml" <<EOF
version = 2
root = "$R/var/lib/containerd"
state = "$WORK/ctd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$WORK/ctd.sock"
[ttrpc]
  address = "$WORK/ctd.sock.ttrpc"
EOF
containerd --config "$WORK/ctd.toml" >"$WORK/ctd.log" 2>&1 &
CTD_PID=$!
for _ in $(seq 1 50); do [[ -S "$WORK/ctd.sock" ]] && break; sleep 0.2; done
[[ -S "$WORK/ctd.sock" ]] || { cat "$WORK/ctd.log" >&2; kdie "the temporary containerd did not start"; }
ctr --address "$WORK/ctd.sock" -n k8s.io images import --snapshotter overlayfs "$IMAGES_TAR" >"$WORK/import.log"
ctr --address "$WORK/ctd.sock" -n k8s.io images ls -q | sed 's/^/[kind]   /' >&2
kill "$CTD_PID"
wait "$CTD_PID" 2>/dev/null || true
CTD_PID=""
# An overlayfs whiteout (a 0:0 character device) inside a snapshot would turn
# into a whiteout of the node image's own layer: refuse rather than lose it.
if find "$R/var/lib/containerd" -type c -exec stat -c '%t:%T' {} + | grep -qx '0:0'; then
  kdie "an image layer deletes files (whiteouts in the snapshots); build that image without deletions"
fi

# ---------------------------------------------------------------- image
# As kind's base image: systemd knows it is in a container, stops on
# SIGRTMIN+3, and kind's entrypoint runs before it.
klog "node image: docker import ($(du -sh "$R" | cut -f1)) ..."
tar --numeric-owner --xattrs -C "$R" -c . | docker import \
  --change 'ENV container=docker' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  - "$IMAGE.import" >/dev/null
mkdir -p "$WORK/ctx"
printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\n' "$IMAGE.import" >"$WORK/ctx/Dockerfile"
quiet_build -q -t "$IMAGE" "$WORK/ctx"
docker rmi "$IMAGE.import" >/dev/null
docker tag "$IMAGE" "$NODE_IMAGE_REPO:$K8S_VERSION"
# older builds of the node image are superseded
docker images "$NODE_IMAGE_REPO" --format '{{.Repository}}:{{.Tag}}' |
  grep -vxF -e "$IMAGE" -e "$NODE_IMAGE_REPO:$K8S_VERSION" | xargs -r docker rmi >/dev/null 2>&1 || true
klog "node image $IMAGE: built in $(($(date +%s) - t0))s ($(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}'))"
echo "$IMAGE"
