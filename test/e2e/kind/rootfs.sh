#!/usr/bin/env bash
# A Debian rootfs made with debootstrap (variant minbase) from Debian's mirror,
# cached as a tarball keyed by suite, mirror and package list.
#
#   rootfs.sh <name> <comma-separated packages>   prints the tarball's path
#
# Apt lists, caches, docs and man pages are removed (as slim images do).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

name=${1:?usage: rootfs.sh <name> <packages>}
pkgs=${2:?usage: rootfs.sh <name> <packages>}
key=$(hash_inputs "$DEBIAN_SUITE" "$DEBIAN_MIRROR" "$pkgs" "v2")
out="$KIND_CACHE/rootfs/$name-$DEBIAN_SUITE-$key.tar"
if [[ -f "$out" ]]; then
  klog "rootfs $name: cached ($out)"
  echo "$out"
  exit 0
fi
[[ $(id -u) == 0 ]] || kdie "debootstrap needs root"
command -v debootstrap >/dev/null || kdie "debootstrap is not installed (apt-get install debootstrap)"
mkdir -p "$KIND_CACHE/rootfs"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/coffer-rootfs.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
t0=$(date +%s)
klog "debootstrap $DEBIAN_SUITE ($name: $pkgs) ..."
if ! debootstrap --variant=minbase --include="$pkgs" "$DEBIAN_SUITE" "$WORK/root" "$DEBIAN_MIRROR" >"$WORK/log" 2>&1; then
  tail -30 "$WORK/log" >&2
  kdie "debootstrap failed"
fi
cat >"$WORK/root/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR $DEBIAN_SUITE main
deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security $DEBIAN_SUITE-security main
SOURCES
rm -rf "$WORK"/root/var/lib/apt/lists/* "$WORK"/root/var/cache/apt/*.bin "$WORK"/root/var/cache/apt/archives/*.deb \
  "$WORK"/root/usr/share/doc/* "$WORK"/root/usr/share/man/* "$WORK"/root/usr/share/info/* \
  "$WORK"/root/var/log/*.log "$WORK"/root/var/log/apt/* "$WORK"/root/tmp/*
# device nodes: the container runtime makes /dev
rm -rf "$WORK"/root/dev/*
tar --numeric-owner --xattrs -C "$WORK/root" -cf "$out.tmp" .
mv -f "$out.tmp" "$out"
# older tarballs of this rootfs are superseded
find "$KIND_CACHE/rootfs" -name "$name-$DEBIAN_SUITE-*.tar" ! -path "$out" -delete
klog "rootfs $name: $(du -h "$out" | cut -f1) in $(($(date +%s) - t0))s"
echo "$out"
