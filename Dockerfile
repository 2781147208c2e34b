# Coffer's one image: `coffer server` (the vault pods; the operator's
# StatefulSet passes args ["server"]) and `coffer operator` (the Helm chart
# passes args ["operator"]). The entrypoint is the `coffer` executable, also
# on PATH as /usr/local/bin/coffer for `kubectl exec … -- coffer …`.
#
#   docker build -t coffer:$(node -p 'require("./package.json").version') .
#
# BASE_IMAGE is the current Node LTS on Debian bookworm, slim. Both stages
# use it, so the native module (better-sqlite3) is compiled against the same
# glibc, architecture and Node ABI it runs on. Where no registry can be
# pulled from, build a compatible base locally and pass it in
# (test/e2e/image-smoke.sh does: debootstrap + Node from the npm registry):
#
#   docker build --build-arg BASE_IMAGE=coffer-base/node:24-bookworm-slim .
#
# The base must provide node and npm on PATH and Node's headers under
# <node prefix>/include/node (the official node images and Node's release
# tarballs do), and have apt-get (the build stage installs the compiler).
ARG BASE_IMAGE=node:24-bookworm-slim

# ---------------------------------------------------------------- build
FROM ${BASE_IMAGE} AS build

# Toolchain for better-sqlite3's node-gyp build.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Build native modules from source against the local Node headers: no
# prebuilt binary or header download from outside the package registry, and
# the addon always matches this base image. prebuild-install and node-gyp
# read these npm_config_* variables themselves; npm 11 warns that it does
# not know them, which is harmless.
ENV npm_config_build_from_source=true \
    npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false

COPY package.json package-lock.json ./
RUN export npm_config_nodedir="$(dirname "$(dirname "$(command -v node)")")" \
 && test -f "$npm_config_nodedir/include/node/node.h" \
 && npm ci \
 && npm cache clean --force

COPY tsconfig.json ./
COPY bin ./bin
COPY common ./common
COPY server ./server
COPY wg-agent ./wg-agent
COPY operator ./operator
COPY sync ./sync
COPY bench ./bench
# dist/bin/coffer.js starts with `#!/usr/bin/env node`; executable, so the
# runtime's /usr/local/bin/coffer link runs it.
RUN npm run build && chmod 0755 dist/bin/coffer.js

# Production dependencies only, and only what runs: the addon binary stays,
# the SQLite sources and object files it was built from go.
RUN npm prune --omit=dev \
 && npm cache clean --force \
 && cd node_modules/better-sqlite3 \
 && rm -rf deps src build/Release/obj.target build/Release/.deps build/deps build/Makefile build/*.mk build/config.gypi \
 && test -f build/Release/better_sqlite3.node \
 && cd /src \
 && node -e "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()"

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS runtime

# No package managers or headers at run time (npm, npx, corepack, yarn are
# not used by Coffer), no caches; a fixed non-root user whose UID/GID the
# manifests run as (operator/manifests/names.ts RUN_AS_USER/RUN_AS_GROUP and
# the chart's securityContext), and a data directory it owns.
# The WireGuard sidecar (`coffer wg-agent`, WIREGUARD.md) runs from this same
# image and drives Debian's userspace wireguard-go with wg and ip; the
# kernel module is not assumed. The apt lists and caches are removed after.
RUN apt-get update \
 && apt-get install -y --no-install-recommends wireguard-go wireguard-tools iproute2 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && wireguard-go --version >/dev/null && wg --version >/dev/null && ip -V >/dev/null

RUN rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx \
           /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
           /usr/local/include/node /root/.npm /root/.cache /tmp/* \
 && groupadd --system --gid 10001 coffer \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin coffer \
 && mkdir -p /var/lib/coffer \
 && chown 10001:10001 /var/lib/coffer \
 && chmod 0700 /var/lib/coffer

WORKDIR /app
# Owned by root, read-only for the coffer user.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/bin ./dist/bin
COPY --from=build /src/dist/common ./dist/common
COPY --from=build /src/dist/server ./dist/server
COPY --from=build /src/dist/wg-agent ./dist/wg-agent
COPY --from=build /src/dist/operator ./dist/operator
COPY --from=build /src/dist/sync ./dist/sync
# `coffer` on PATH, so `kubectl exec vault-0 -c vault -- coffer cluster status`
# works (inside a vault pod the CLI falls back to VAULT_BOOTSTRAP_TOKEN).
RUN ln -s /app/dist/bin/coffer.js /usr/local/bin/coffer \
 && coffer --help >/dev/null

ENV NODE_ENV=production \
    VAULT_DATA_DIR=/var/lib/coffer

USER 10001:10001
# API and Raft listeners (DESIGN §3), the management listener when
# VAULT_MGMT_ADDR is set, the wg-agent's readiness, and WireGuard's UDP port.
EXPOSE 8200 8201 8202 8203 51820/udp
ENTRYPOINT ["node", "/app/dist/bin/coffer.js"]
CMD ["help"]
