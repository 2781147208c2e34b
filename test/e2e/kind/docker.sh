#!/usr/bin/env bash
# Makes sure a Docker daemon answers and can run privileged containers (kind's
# nodes are privileged containers). Idempotent:
#   - installs docker.io, jq and debootstrap with apt-get when missing (root);
#   - starts dockerd in the background when no daemon answers (log in the
#     kind cache dir; it keeps running, the cluster lives in it);
#   - ONLY when `docker run --privileged` fails, registers
#     test/e2e/kind/runc-wrapper.sh (runc minus CAP_SYS_RESOURCE, which this
#     machine's capability bounding set lacks) as the daemon's default runtime
#     in /etc/docker/daemon.json, reloads the daemon and checks again.
#
#   docker.sh            prints "docker: ok" on the last line, or fails
#
# dockerd is started without iptables rules of its own (--iptables=false):
# the host's firewall and forwarding are left alone; kind's nodes talk over
# their bridge, and the API server is reached through docker-proxy on
# 127.0.0.1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WRAPPER_DST=/usr/local/libexec/coffer/runc-wrapper
DAEMON_JSON=/etc/docker/daemon.json
RUNTIME_NAME=coffer-runc

# -------------------------------------------------------------- packages
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
[[ -x /usr/sbin/runc || -x /usr/bin/runc ]] || need+=(runc)
if ((${#need[@]})); then
  [[ $(id -u) == 0 ]] || kdie "missing ${need[*]} and not root to apt-get install them"
  klog "apt-get install ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Debian's docker client matches Debian's daemon; a newer client elsewhere on
# PATH negotiates the API version down, so either works.
docker_ok() { docker info >/dev/null 2>&1; }

# -------------------------------------------------------------- daemon
if ! docker_ok; then
  [[ $(id -u) == 0 ]] || kdie "no docker daemon answers and not root to start one"
  if [[ -S /var/run/docker.sock ]] && ! pgrep -x dockerd >/dev/null; then rm -f /var/run/docker.sock; fi
  if ! pgrep -x dockerd >/dev/null; then
    klog "starting dockerd (log: $KIND_CACHE/dockerd.log)"
    # setsid: not a child of this shell's job, so it outlives the script
    setsid nohup dockerd --iptables=false --ip-masq=false >>"$KIND_CACHE/dockerd.log" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 60); do docker_ok && break; sleep 1; done
  docker_ok || { tail -20 "$KIND_CACHE/dockerd.log" >&2; kdie "dockerd did not start"; }
fi

# -------------------------------------------------------------- privileged
# A probe image with nothing in it: the host's /usr is mounted read-only and
# /usr/bin/true runs from it.
PROBE=coffer.local/kind-probe:1
if ! docker image inspect "$PROBE" >/dev/null 2>&1; then
  d=$(mktemp -d)
  ln -s usr/bin "$d/bin"
  ln -s usr/lib "$d/lib"
  ln -s usr/lib64 "$d/lib64"
  mkdir "$d/usr"
  tar -C "$d" -c . | docker import - "$PROBE" >/dev/null
  rm -rf "$d"
fi
privileged_ok() {
  docker run --rm --privileged --network none -v /usr:/usr:ro "$PROBE" /usr/bin/true >/dev/null 2>"$KIND_CACHE/privileged-probe.err"
}

# A wrapper registered earlier is kept up to date with this checkout's.
if [[ -f "$WRAPPER_DST" && $(id -u) == 0 ]] && ! cmp -s "$E2E_KIND_DIR/runc-wrapper.sh" "$WRAPPER_DST"; then
  install -m 0755 "$E2E_KIND_DIR/runc-wrapper.sh" "$WRAPPER_DST"
fi
if privileged_ok; then
  klog "docker run --privileged works ($(docker info --format '{{.DefaultRuntime}}' 2>/dev/null) runtime)"
  echo "docker: ok"
  exit 0
fi
klog "docker run --privileged fails: $(tr -s '\n' ' ' <"$KIND_CACHE/privileged-probe.err" | cut -c1-200)"
[[ $(id -u) == 0 ]] || kdie "not root: cannot register the runc wrapper in $DAEMON_JSON"
grep -q CapBnd /proc/self/status && klog "capability bounding set: $(awk '/CapBnd/ {print $2}' /proc/self/status)"

install -D -m 0755 "$E2E_KIND_DIR/runc-wrapper.sh" "$WRAPPER_DST"
mkdir -p "$(dirname "$DAEMON_JSON")"
[[ -s "$DAEMON_JSON" ]] || echo '{}' >"$DAEMON_JSON"
tmp=$(mktemp)
jq --arg n "$RUNTIME_NAME" --arg p "$WRAPPER_DST" '.runtimes[$n] = {path: $p} | ."default-runtime" = $n' "$DAEMON_JSON" >"$tmp"
if ! cmp -s "$tmp" "$DAEMON_JSON"; then
  klog "registering $WRAPPER_DST as runtime '$RUNTIME_NAME' (default) in $DAEMON_JSON"
  cat "$tmp" >"$DAEMON_JSON"
fi
rm -f "$tmp"
# runtimes and default-runtime are reloaded on SIGHUP
pid=$(pgrep -xo dockerd || true)
[[ -n "$pid" ]] || kdie "the docker daemon is not a local dockerd process; add the runtime by hand and restart it"
kill -HUP "$pid"
for _ in $(seq 1 20); do
  [[ "$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null)" == "$RUNTIME_NAME" ]] && break
  sleep 0.5
done
privileged_ok || kdie "docker run --privileged still fails with the wrapper: $(cat "$KIND_CACHE/privileged-probe.err")"
klog "docker run --privileged works with runtime $RUNTIME_NAME"
echo "docker: ok"
