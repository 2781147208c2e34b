#!/usr/bin/env bash
# `npm run e2e:down`: deletes the kind cluster `npm run e2e:up` made (and its
# kubeconfig). dockerd and the cached images stay.
#
#   COFFER_E2E_CLUSTER     cluster name (default coffer-e2e)
#   COFFER_E2E_KUBECONFIG  the kubeconfig e2e:up wrote
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$ROOT/test/e2e/kind/lib.sh"
export PATH="$KIND_BIN:$PATH"
CLUSTER=${COFFER_E2E_CLUSTER:-coffer-e2e}
KUBECONFIG_FILE=${COFFER_E2E_KUBECONFIG:-$KIND_CACHE/$CLUSTER.kubeconfig}

command -v kind >/dev/null || kdie "kind is not built yet (npm run e2e:up builds it)"
if ! docker info >/dev/null 2>&1; then
  klog "no docker daemon answers: nothing to delete"
  exit 0
fi
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE"
else
  klog "no kind cluster $CLUSTER"
fi
rm -f "$KUBECONFIG_FILE"
