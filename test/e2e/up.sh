#!/usr/bin/env bash
# `npm run e2e:up`: Coffer on a kind cluster, for people and for other checks.
#   1. starts dockerd when none answers (test/e2e/kind/docker.sh);
#   2. builds the node image and Coffer's image when missing (test/e2e/image.sh);
#   3. creates kind cluster coffer-e2e (one control plane, two workers;
#      test/e2e/kind/cluster.yaml), or reuses it when it is already there;
#   4. loads Coffer's image into it and installs the operator chart
#      (charts/coffer-operator, release coffer-operator in coffer-system);
#   5. applies examples/vaultcluster.yaml (VaultCluster vault in namespace
#      coffer, 3 replicas) and waits until it is Ready.
# The last line it prints is KUBECONFIG=<path> (your own kubeconfig is not
# touched). `npm run e2e:down` deletes the cluster.
#
#   COFFER_E2E_CLUSTER     cluster name (default coffer-e2e)
#   COFFER_E2E_IMAGE       Coffer image (default coffer:<package version>)
#   COFFER_E2E_KUBECONFIG  kubeconfig to write (default <kind cache>/<cluster>.kubeconfig)
#   COFFER_E2E_WORKERS     worker nodes (default 2)
#   KIND_NODE_IMAGE        node image (default: the one test/e2e/kind/node-image.sh builds)
#   COFFER_E2E_TIMEOUT     seconds for each wait (default 600)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
source test/e2e/kind/lib.sh
export PATH="$KIND_BIN:$PATH"

START=$(date +%s)
CLUSTER=${COFFER_E2E_CLUSTER:-coffer-e2e}
VERSION=$(node -p 'require("./package.json").version')
IMAGE=${COFFER_E2E_IMAGE:-coffer:$VERSION}
TIMEOUT=${COFFER_E2E_TIMEOUT:-600}
WORKERS=${COFFER_E2E_WORKERS:-2}
export KUBECONFIG=${COFFER_E2E_KUBECONFIG:-$KIND_CACHE/$CLUSTER.kubeconfig}

step() { klog "== $*"; }

step "docker"
bash test/e2e/kind/docker.sh >/dev/null
bash test/e2e/kind/tools.sh >/dev/null
HELM=${COFFER_HELM:-$(bash test/tools/helm.sh | tail -1)}

step "images"
# both are cached: seconds when nothing changed, and Coffer's image follows
# the working tree
built=$(COFFER_E2E_IMAGE=$IMAGE bash test/e2e/image.sh | tail -2)
NODE_IMAGE=${KIND_NODE_IMAGE:-$(head -1 <<<"$built")}
klog "node image $NODE_IMAGE, Coffer image $IMAGE"

step "cluster $CLUSTER"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  klog "cluster $CLUSTER exists: reusing it"
  kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG" >/dev/null
else
  cfg=$(mktemp "${TMPDIR:-/tmp}/coffer-kind-config.XXXXXX")
  {
    sed -n '/^kind:/,/^nodes:/p' test/e2e/kind/cluster.yaml
    echo "  - role: control-plane"
    for ((i = 0; i < WORKERS; i++)); do echo "  - role: worker"; done
  } >"$cfg"
  t0=$(date +%s)
  if ! kind create cluster --name "$CLUSTER" --image "$NODE_IMAGE" --config "$cfg" --kubeconfig "$KUBECONFIG" \
    --wait "${TIMEOUT}s"; then
    rm -f "$cfg"
    kdie "kind create cluster failed (logs: kind export logs --name $CLUSTER)"
  fi
  rm -f "$cfg"
  klog "cluster created in $(($(date +%s) - t0))s"
fi
kubectl wait --for=condition=Ready nodes --all --timeout="${TIMEOUT}s" >/dev/null

step "load $IMAGE"
kind load docker-image "$IMAGE" --name "$CLUSTER"

step "operator chart"
"$HELM" upgrade --install coffer-operator charts/coffer-operator --namespace coffer-system --create-namespace \
  --set "image.repository=${IMAGE%:*}" --set "image.tag=${IMAGE##*:}" --set image.pullPolicy=Never \
  --wait --timeout "${TIMEOUT}s" >/dev/null
kubectl rollout status -n coffer-system deployment/coffer-operator --timeout="${TIMEOUT}s"

step "VaultCluster coffer/vault"
sed "s#^\(  image: \).*#\1$IMAGE#" examples/vaultcluster.yaml | kubectl apply -f -
if ! kubectl wait -n coffer vaultcluster/vault --for=condition=Ready --timeout="${TIMEOUT}s"; then
  kubectl get vc,sts,pods,pvc -n coffer -o wide >&2 || true
  kubectl get vc vault -n coffer -o jsonpath='{.status}' >&2 || true
  kubectl logs -n coffer-system -l app.kubernetes.io/name=coffer-operator --tail=50 >&2 || true
  kdie "VaultCluster coffer/vault did not become Ready"
fi
kubectl get pods -n coffer -o wide
klog "e2e:up done in $(($(date +%s) - START))s; delete with: npm run e2e:down"
echo "KUBECONFIG=$KUBECONFIG"
