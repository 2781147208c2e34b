#!/usr/bin/env bash
# `npm run test:e2e`: Coffer end to end on a kind cluster.
#
#   1. creates a kind cluster (its own kubeconfig; yours is not touched)
#   2. builds the image (Dockerfile) and loads it into the cluster
#   3. installs the operator with the Helm chart (charts/coffer-operator)
#   4. applies a 3-replica VaultCluster whose readAllowlist is one pod's IP
#      and waits for it to be Ready
#   5. writes a secret with the bootstrap token (from the generated Secret),
#      reads it from the allowlisted pod, and is refused from another pod
#   6. enables KMS re-wrap and watches status.rollout go through its phases
#      to Complete, then checks the flag on every pod and reads the secret again
#   7. deletes the cluster
#
# Needs docker (with a running daemon), kind, kubectl and helm (built from its
# Go module by test/tools/helm.sh when go is there). Where one is missing it
# prints "SKIPPED: <why>" and exits 0 without writing a test report: a skip
# is never counted as a pass. A run that happens writes
# test-results/e2e.json (vitest's JSON shape, read by .ci/summary.mjs).
#
#   COFFER_E2E_CLUSTER     kind cluster name (default coffer-e2e)
#   COFFER_E2E_KEEP=1      keep the cluster afterwards (kubeconfig path printed)
#   COFFER_E2E_IMAGE       image to build and load (default coffer:<package version>;
#                          the tag must be the release: the rollout gate compares it
#                          with each pod's /v1/health version)
#   COFFER_E2E_NO_BUILD=1  use an existing local image instead of building
#   COFFER_BASE_IMAGE      Dockerfile BASE_IMAGE (default: the Dockerfile's node LTS image when
#                          it is local, else the local base test/e2e/build-base-image.sh builds)
#   KIND_NODE_IMAGE        kind node image (default: the one test/e2e/kind/node-image.sh builds
#                          here; kind's own where that cannot be built: not root or no go)
#   COFFER_E2E_REUSE=0     delete and recreate a cluster of that name (default: reuse the one
#                          `npm run e2e:up` left, and leave it there afterwards; 0 when CI=true)
#   COFFER_E2E_TIMEOUT     seconds for each wait (default 600)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

CLUSTER=${COFFER_E2E_CLUSTER:-coffer-e2e}
VERSION=$(node -p 'require("./package.json").version')
IMAGE=${COFFER_E2E_IMAGE:-coffer:$VERSION}
TIMEOUT=${COFFER_E2E_TIMEOUT:-600}
NS_OP=coffer-system
NS=coffer-e2e
VC=e2e
REPORT=test-results/e2e.json

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
skip() {
  echo "SKIPPED: $*"
  echo "e2e tier not run: nothing was tested (this is not a pass)."
  exit 0
}

# ---------------------------------------------------------------- kind tooling
# test/e2e/kind: dockerd (started when none answers, with the runc wrapper
# this machine's capability bounding set needs), kind and kubectl from their
# Go modules, and the kind node image built here (nothing can be pulled).
source test/e2e/kind/lib.sh
export PATH="$KIND_BIN:$PATH"
if [[ -z "${KIND_NODE_IMAGE:-}" && $(id -u) == 0 ]] && command -v go >/dev/null 2>&1; then
  if ! { bash test/e2e/kind/docker.sh >/dev/null && bash test/e2e/kind/tools.sh >/dev/null &&
    KIND_NODE_IMAGE=$(bash test/e2e/kind/node-image.sh | tail -1); }; then
    echo "e2e: building the kind tooling or node image failed (test/e2e/kind)"
    echo "e2e: 0 passed, 1 failed"
    exit 1
  fi
  if [[ -z "${COFFER_BASE_IMAGE:-}" ]] && ! docker image inspect node:24-bookworm-slim >/dev/null 2>&1; then
    COFFER_BASE_IMAGE=$(bash test/e2e/build-base-image.sh | tail -1) || { echo "e2e: building the local base image failed"; echo "e2e: 0 passed, 1 failed"; exit 1; }
  fi
fi

# ---------------------------------------------------------------- prerequisites
command -v docker >/dev/null 2>&1 || skip "docker is not installed (the e2e tier builds Coffer's image and runs kind in Docker)"
docker info >/dev/null 2>&1 || skip "the docker daemon is not reachable: $(docker info 2>&1 | grep -m1 -iE 'error|cannot' | sed 's/^ *//' || true)"
command -v kind >/dev/null 2>&1 || skip "kind is not installed (https://kind.sigs.k8s.io; e.g. 'go install sigs.k8s.io/kind@latest')"
command -v kubectl >/dev/null 2>&1 || skip "kubectl is not installed"
if [[ -n "${COFFER_HELM:-}" ]]; then
  HELM=$COFFER_HELM
elif command -v helm >/dev/null 2>&1; then
  HELM=helm
elif [[ -x "$(bash test/tools/helm.sh --print-path)" ]] || command -v go >/dev/null 2>&1; then
  # test/tools/helm.sh: the cached build, or a build from helm's Go module.
  HELM=$(bash test/tools/helm.sh | tail -1) || skip "helm is not installed and building it with test/tools/helm.sh failed"
else
  skip "helm is not installed and go is not there to build it (test/tools/helm.sh)"
fi

# ---------------------------------------------------------------- bookkeeping
WORK=$(mktemp -d "${TMPDIR:-/tmp}/coffer-e2e.XXXXXX")
export KUBECONFIG="$WORK/kubeconfig"
PASSED=0
CURRENT="setup"
START=$(date +%s)
mkdir -p test-results
rm -f "$REPORT"

report() { # report <failed 0|1> <message>
  node -e '
    const [file, passed, failed, msg, start] = process.argv.slice(1);
    const fs = require("node:fs");
    fs.writeFileSync(file, JSON.stringify({
      numTotalTests: Number(passed) + Number(failed), numPassedTests: Number(passed), numFailedTests: Number(failed),
      numPendingTests: 0, numTodoTests: 0, numFailedTestSuites: Number(failed), numRuntimeErrorTestSuites: 0,
      success: failed === "0", startTime: Number(start) * 1000,
      testResults: [{ name: "test/e2e/run.sh", status: failed === "0" ? "passed" : "failed", message: msg }],
    }, null, 2) + "\n");
  ' "$REPORT" "$PASSED" "$1" "$2" "$START"
}

diagnostics() {
  log "---- diagnostics"
  kubectl get vc,statefulsets,pods,svc,pvc,secrets -A -o wide 2>&1 | grep -v kube-system || true
  kubectl get vc "$VC" -n "$NS" -o yaml 2>&1 | sed -n '/^status:/,$p' || true
  kubectl get events -n "$NS" --sort-by=.lastTimestamp 2>&1 | tail -30 || true
  kubectl logs -n "$NS_OP" -l app.kubernetes.io/name=coffer-operator --tail=200 --prefix 2>&1 || true
  for p in 0 1 2; do kubectl logs -n "$NS" "$VC-$p" -c vault --tail=40 --prefix 2>&1 || true; done
}

REUSED=0
cleanup() {
  local code=$?
  if [[ "${COFFER_E2E_KEEP:-}" == 1 ]]; then
    log "keeping cluster $CLUSTER: export KUBECONFIG=$KUBECONFIG; delete with: kind delete cluster --name $CLUSTER"
  elif [[ "$REUSED" == 1 ]]; then
    # someone else's cluster (npm run e2e:up): only this run's namespace goes
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
    rm -rf "$WORK"
  else
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    rm -rf "$WORK"
  fi
  exit "$code"
}
trap cleanup EXIT

fail() {
  log "FAILED in step '$CURRENT': $*"
  diagnostics
  report 1 "step '$CURRENT': $*"
  echo "e2e: $PASSED passed, 1 failed"
  exit 1
}
step() { CURRENT=$1; log "== $1"; }
ok() { PASSED=$((PASSED + 1)); log "ok: $CURRENT"; }

# wait_for <seconds> <description> <command...>: retries the command every 2 s.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local deadline=$(($(date +%s) + secs))
  until "$@" >/dev/null 2>&1; do
    (($(date +%s) < deadline)) || fail "timed out after ${secs}s waiting for $what"
    sleep 2
  done
}

# in_pod <pod> <command...>: runs a command in a client pod of the test namespace.
in_pod() { local pod=$1; shift; kubectl exec -n "$NS" "$pod" -- "$@"; }
coffer_in() { # coffer_in <pod> <coffer args...> (COFFER_ADDR/COFFER_TOKEN set)
  local pod=$1; shift
  kubectl exec -i -n "$NS" "$pod" -- env "COFFER_ADDR=http://$VC-client.$NS.svc:8200" "COFFER_TOKEN=${TOKEN:-}" \
    node /app/dist/bin/coffer.js "$@"
}

# ---------------------------------------------------------------- 1. cluster
step "create kind cluster $CLUSTER"
# CI (CI=true) always starts from a new cluster
if [[ "${COFFER_E2E_REUSE:-$([[ "${CI:-}" == true ]] && echo 0 || echo 1)}" == 1 ]] &&
  kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  REUSED=1
  log "reusing kind cluster $CLUSTER (left by npm run e2e:up; COFFER_E2E_REUSE=0 recreates it)"
  kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG" >"$WORK/kind-create.log" 2>&1 || fail "kind export kubeconfig failed"
  kubectl delete namespace "$NS" --ignore-not-found --timeout="${TIMEOUT}s" >/dev/null || fail "cannot delete namespace $NS of an earlier run"
else
kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
# one control plane and two workers (test/e2e/kind/cluster.yaml), as npm run e2e:up
if ! kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 180s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} \
  --config test/e2e/kind/cluster.yaml >"$WORK/kind-create.log" 2>&1; then
  cat "$WORK/kind-create.log"
  # No node image (none local, and no registry to pull one from) is a missing
  # prerequisite like a missing kind: skip, and leave no report behind.
  if grep -qiE 'pull(ing)? image|failed to pull|manifest unknown|no such image|error response from daemon: .*(registry|Get "https)' "$WORK/kind-create.log"; then
    trap - EXIT
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    skip "kind cannot get its node image (${KIND_NODE_IMAGE:-the kind default}): none is local and none can be pulled here; load one into docker and set KIND_NODE_IMAGE"
  fi
  fail "kind create cluster failed"
fi
fi
cat "$WORK/kind-create.log"
kubectl version >/dev/null || fail "the cluster's API server does not answer"
ok

# ---------------------------------------------------------------- 2. image
step "build and load image $IMAGE"
if [[ "${COFFER_E2E_NO_BUILD:-}" == 1 ]]; then
  docker image inspect "$IMAGE" >/dev/null 2>&1 || fail "COFFER_E2E_NO_BUILD=1 but image $IMAGE does not exist"
else
  # host network: npm ci reaches the npm registry without NAT on docker's bridge
  docker build --network host ${COFFER_BASE_IMAGE:+--build-arg "BASE_IMAGE=$COFFER_BASE_IMAGE"} -t "$IMAGE" . || fail "docker build failed"
fi
kind load docker-image "$IMAGE" --name "$CLUSTER" || fail "kind load docker-image failed"
ok

# ---------------------------------------------------------------- 3. chart
step "install the operator chart"
repo=${IMAGE%:*}
tag=${IMAGE##*:}
"$HELM" upgrade --install coffer-operator charts/coffer-operator --namespace "$NS_OP" --create-namespace \
  --set "image.repository=$repo" --set "image.tag=$tag" --set image.pullPolicy=Never --set logLevel=debug \
  --wait --timeout "${TIMEOUT}s" || fail "helm install failed"
kubectl get crd vaultclusters.coffer.dev >/dev/null || fail "the chart did not install the VaultCluster CRD"
kubectl rollout status -n "$NS_OP" deployment/coffer-operator --timeout="${TIMEOUT}s" || fail "operator Deployment not ready"
ok

# ---------------------------------------------------------------- 4. VaultCluster
step "client pods"
kubectl create namespace "$NS" >/dev/null || fail "cannot create namespace $NS"
for pod in reader outsider; do
  kubectl apply -n "$NS" -f - >/dev/null <<YAML || fail "cannot create pod $pod"
apiVersion: v1
kind: Pod
metadata: {name: $pod, labels: {app: coffer-e2e-client}}
spec:
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: client
      image: $IMAGE
      imagePullPolicy: Never
      command: ["node", "-e", "setInterval(() => {}, 1 << 30)"]
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
YAML
done
kubectl wait -n "$NS" --for=condition=Ready pod/reader pod/outsider --timeout="${TIMEOUT}s" >/dev/null || fail "client pods not ready"
READER_IP=$(kubectl get pod reader -n "$NS" -o jsonpath='{.status.podIP}')
OUTSIDER_IP=$(kubectl get pod outsider -n "$NS" -o jsonpath='{.status.podIP}')
[[ -n "$READER_IP" && "$READER_IP" != "$OUTSIDER_IP" ]] || fail "client pods have no distinct IPs ($READER_IP, $OUTSIDER_IP)"
log "reader $READER_IP (allowlisted), outsider $OUTSIDER_IP"
ok

step "apply a 3-replica VaultCluster and wait for Ready"
kubectl apply -n "$NS" -f - <<YAML || fail "kubectl apply VaultCluster failed"
apiVersion: coffer.dev/v1alpha1
kind: VaultCluster
metadata: {name: $VC}
spec:
  replicas: 3
  image: $IMAGE
  readAllowlist: ["$READER_IP/32"]
  kms: {mode: local}
  storage: {size: 256Mi}
YAML
kubectl wait -n "$NS" "vaultcluster/$VC" --for=condition=Ready --timeout="${TIMEOUT}s" || fail "VaultCluster never became Ready"
[[ $(kubectl get vc "$VC" -n "$NS" -o jsonpath='{.status.readyReplicas}') == 3 ]] || fail "status.readyReplicas is not 3"
log "leader: $(kubectl get vc "$VC" -n "$NS" -o jsonpath='{.status.leader}')"
ok

# ---------------------------------------------------------------- 5. secrets
step "write a secret with the bootstrap token"
TOKEN=$(kubectl get secret "$VC-bootstrap-token" -n "$NS" -o jsonpath='{.data.token}' | base64 -d)
[[ ${#TOKEN} -ge 32 ]] || fail "no bootstrap token in Secret $VC-bootstrap-token"
VALUE="e2e-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s' "$VALUE" | coffer_in reader secret put e2e/db-password || fail "coffer secret put failed"
ok

step "read it from the allowlisted pod"
got=$(TOKEN= coffer_in reader secret get e2e/db-password) || fail "coffer secret get from the allowlisted pod failed"
[[ "$got" == "$VALUE" ]] || fail "read back '$got', wrote '$VALUE'"
ok

step "reads from a pod outside the allowlist are refused"
if out=$(TOKEN="$TOKEN" coffer_in outsider secret get e2e/db-password 2>&1); then
  fail "the outsider pod read the value: $out"
fi
grep -q 'ip_not_allowed\|403' <<<"$out" || fail "expected 403 ip_not_allowed, got: $out"
ok

# ---------------------------------------------------------------- 6. re-wrap rollout
step "enable re-wrap and watch the staged rollout"
kubectl patch vc "$VC" -n "$NS" --type merge -p '{"spec":{"kms":{"rewrap":{"enabled":true}}}}' >/dev/null || fail "kubectl patch failed"
ORDER=(Idle RollingOutFlagOff WaitingForGate EnablingFlag RollingOutFlagOn Complete)
rank() { local i; for i in "${!ORDER[@]}"; do [[ "${ORDER[$i]}" == "$1" ]] && { echo "$i"; return; }; done; echo -1; }
seen=()
last=""
deadline=$(($(date +%s) + TIMEOUT))
while :; do
  phase=$(kubectl get vc "$VC" -n "$NS" -o jsonpath='{.status.rollout.phase}' 2>/dev/null)
  if [[ -n "$phase" && "$phase" != "$last" ]]; then
    log "rollout phase: $phase ($(kubectl get vc "$VC" -n "$NS" -o jsonpath='{.status.rollout.message}' 2>/dev/null))"
    [[ $(rank "$phase") -ge 0 ]] || fail "unknown rollout phase '$phase'"
    if [[ -n "$last" && $(rank "$phase") -lt $(rank "$last") && "$phase" != Idle ]]; then
      fail "rollout went backwards: $last -> $phase"
    fi
    seen+=("$phase")
    last=$phase
  fi
  [[ "$phase" == Complete ]] && break
  (($(date +%s) < deadline)) || fail "rollout did not complete in ${TIMEOUT}s (phases seen: ${seen[*]:-none})"
  sleep 1
done
log "phases seen: ${seen[*]}"
[[ " ${seen[*]} " == *" RollingOutFlagOn "* || " ${seen[*]} " == *" EnablingFlag "* ]] ||
  fail "never saw the flag-on step (phases seen: ${seen[*]})"
ok

step "every pod runs with the flag, the cluster is whole, the secret survived"
wait_for "$TIMEOUT" "the StatefulSet to be fully rolled and ready" bash -c '
  s=$(kubectl get sts '"$VC"' -n '"$NS"' -o jsonpath="{.status.updateRevision} {.status.currentRevision} {.status.readyReplicas} {.status.updatedReplicas}")
  set -- $s; [[ "$1" == "$2" && "$3" == 3 && "$4" == 3 ]]'
for p in 0 1 2; do
  flag=$(kubectl get pod "$VC-$p" -n "$NS" -o jsonpath='{.spec.containers[?(@.name=="vault")].env[?(@.name=="VAULT_KMS_REWRAP_ENABLED")].value}')
  [[ "$flag" == true ]] || fail "pod $VC-$p has VAULT_KMS_REWRAP_ENABLED=$flag"
done
status=$(in_pod reader node -e '
  fetch(process.argv[1], { headers: { authorization: "Bearer " + process.argv[2] } })
    .then(async (r) => { const t = await r.text(); if (!r.ok) { console.error(r.status, t); process.exit(1); } console.log(t); })
    .catch((e) => { console.error(e.message); process.exit(1); });
' "http://$VC-client.$NS.svc:8200/v1/admin/kms/rewrap/status" "$TOKEN") || fail "GET /v1/admin/kms/rewrap/status failed: $status"
log "rewrap status: $status"
grep -q '"enabled":true' <<<"$status" || fail "the leader's re-wrap worker is not enabled: $status"
got=$(TOKEN= coffer_in reader secret get e2e/db-password) || fail "secret get after the rollout failed"
[[ "$got" == "$VALUE" ]] || fail "after the rollout read back '$got', wrote '$VALUE'"
ok

# ---------------------------------------------------------------- done
report 0 "ok"
log "all steps passed in $(($(date +%s) - START))s"
echo "e2e: $PASSED passed, 0 failed"
