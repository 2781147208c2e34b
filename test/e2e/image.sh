#!/usr/bin/env bash
# `npm run e2e:image`: the two images the kind tier runs, built on this
# machine with nothing pulled from an image registry:
#   - the kind node image for the k8s tier's Kubernetes version
#     (test/e2e/kind/node-image.sh; cached, rebuilt only when an input changes);
#   - Coffer's image from the Dockerfile, on the local Node LTS base
#     (test/e2e/build-base-image.sh) unless COFFER_BASE_IMAGE names another;
#     Docker's layer cache makes an unchanged rebuild quick.
# Starts dockerd first when none answers (test/e2e/kind/docker.sh).
#
#   COFFER_E2E_IMAGE    Coffer image tag (default coffer:<package version>)
#   COFFER_BASE_IMAGE   Dockerfile BASE_IMAGE (default: the local base)
#
# Prints the node image and the Coffer image on its last two lines.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
source test/e2e/kind/lib.sh

START=$(date +%s)
VERSION=$(node -p 'require("./package.json").version')
IMAGE=${COFFER_E2E_IMAGE:-coffer:$VERSION}

bash test/e2e/kind/docker.sh >/dev/null
NODE_IMAGE=$(bash test/e2e/kind/node-image.sh | tail -1)

BASE=${COFFER_BASE_IMAGE:-$(bash test/e2e/build-base-image.sh | tail -1)}
t0=$(date +%s)
klog "docker build -t $IMAGE (BASE_IMAGE=$BASE) ..."
LOG=$(mktemp "${TMPDIR:-/tmp}/coffer-image-build.XXXXXX")
# host network: the build stage runs npm ci against the npm registry, and
# this machine's dockerd makes no NAT for its bridge
if ! DOCKER_BUILDKIT=0 docker build --network host --build-arg "BASE_IMAGE=$BASE" -t "$IMAGE" . >"$LOG" 2>&1; then
  tail -40 "$LOG" >&2
  rm -f "$LOG"
  kdie "docker build of $IMAGE failed"
fi
rm -f "$LOG"
klog "built $IMAGE in $(($(date +%s) - t0))s ($(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}'))"
klog "e2e:image done in $(($(date +%s) - START))s"
echo "$NODE_IMAGE"
echo "$IMAGE"
