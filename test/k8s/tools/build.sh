#!/usr/bin/env bash
# Builds the control-plane binaries used by `npm run test:k8s` from their Go
# modules, at pinned versions, into a cache directory outside the checkout.
# Idempotent: a binary whose version stamp matches is not rebuilt.
#
#   COFFER_K8S_BIN   cache dir (default: ${XDG_CACHE_HOME:-$HOME/.cache}/coffer/k8s-<k8s version>)
#   COFFER_K8S_FORCE=1  rebuild everything
#   COFFER_K8S_BUILD_KUBECTL=1  build kubectl even if one is on PATH
#
# Prints the cache dir on the last line of stdout ("bin dir: <path>").
# `build.sh --print-bin-dir` only prints the cache dir (no build).
set -euo pipefail

K8S_VERSION=v1.32.13      # k8s.io/kubernetes (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl)
STAGING_VERSION=v0.32.13  # k8s.io/<staging module> matching K8S_VERSION
ETCD_VERSION=v3.5.23      # k8s 1.32.13 tests with 3.5.24 (hack/lib/etcd.sh); 3.5.24 is missing from
                          # some module mirrors, 3.5.23 is the closest 3.5 patch release
KWOK_VERSION=v0.7.0       # sigs.k8s.io/kwok

BIN_DIR=${COFFER_K8S_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/coffer/k8s-${K8S_VERSION}}

case "${1:-}" in
  --print-bin-dir) echo "$BIN_DIR"; exit 0 ;;
  --print-versions)
    echo "kubernetes=$K8S_VERSION staging=$STAGING_VERSION etcd=$ETCD_VERSION kwok=$KWOK_VERSION"
    exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print-bin-dir|--print-versions]" >&2; exit 2 ;;
esac

mkdir -p "$BIN_DIR"

export GOFLAGS=-mod=mod
export CGO_ENABLED=0
export GOWORK=off
# Quieter, reproducible builds; the default proxy/sumdb settings are kept.
LDFLAGS_BASE="-s -w"

log() { printf '[k8s-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "ERROR: 'go' is not on PATH; it is needed to build the k8s test binaries"
  exit 1
fi

# stamp_ok <name> <version>: true if $BIN_DIR/<name> exists and was built at <version>.
stamp_ok() {
  [[ "${COFFER_K8S_FORCE:-}" != 1 && -x "$BIN_DIR/$1" && -f "$BIN_DIR/.$1.version" ]] &&
    [[ "$(cat "$BIN_DIR/.$1.version")" == "$2" ]]
}
stamp() { printf '%s\n' "$2" >"$BIN_DIR/.$1.version"; }

# new_module <dir> <module> <version> <staging-version>
# Creates a throwaway main module in <dir> requiring <module>@<version>.
# Replace directives are not inherited from dependencies, so the upstream
# go.mod's replaces are re-created: local-path replaces ("=> ./staging/...")
# become version replaces (the required version if it is a real one,
# otherwise <staging-version>); other replaces are copied verbatim.
new_module() {
  local dir=$1 mod=$2 ver=$3 staging=$4
  (
    cd "$dir"
    go mod init coffer.local/k8s-build >/dev/null 2>&1
    local gomod
    gomod=$(go mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' || true)
    [[ -n "$gomod" && -f "$gomod" ]] || { log "ERROR: could not download $mod@$ver"; exit 1; }
    {
      echo "require $mod $ver"
      awk -v staging="$staging" '
        # collect required versions
        /^require[[:space:]]*\(/ { inreq = 1; next }
        inreq && /^\)/ { inreq = 0; next }
        inreq && NF >= 2 { req[$1] = $2; next }
        /^require[[:space:]]+[^(]/ { req[$2] = $3; next }
        /^replace[[:space:]]*\(/ { inrep = 1; next }
        inrep && /^\)/ { inrep = 0; next }
        inrep && /=>/ { reps[++n] = $0; next }
        /^replace[[:space:]]+[^(]/ { line = $0; sub(/^replace[[:space:]]+/, "", line); reps[++n] = line; next }
        END {
          for (i = 1; i <= n; i++) {
            split(reps[i], parts, "=>")
            split(parts[1], lhs, " ")
            split(parts[2], rhs, " ")
            if (rhs[1] ~ /^\.\.?\//) {
              v = req[lhs[1]]
              if (v == "" || v ~ /^v0\.0\.0($|-)/) v = staging
              if (v == "") continue
              printf "replace %s => %s %s\n", lhs[1], lhs[1], v
            } else {
              printf "replace %s\n", reps[i]
            }
          }
        }' "$gomod"
    } >>go.mod
    resolve_unavailable_replaces
  )
}

# Some module proxies/mirrors lack a tag for one staging module (e.g. a
# publishing-bot gap). For each replace target that cannot be downloaded, fall
# back to the highest available version of that module in the same minor line
# that is not newer than the wanted one, and say so loudly.
resolve_unavailable_replaces() {
  local targets=() line
  while read -r line; do targets+=("$line"); done < <(awk '/^replace / && NF == 5 { print $4 "@" $5 }' go.mod)
  ((${#targets[@]})) || return 0
  local bad
  bad=$(go mod download -json "${targets[@]}" 2>/dev/null |
    awk -F'"' '/^\t"Path"/ { p = $4 } /^\t"Version"/ { v = $4 } /^\t"Error"/ { print p "@" v }' || true)
  local t m v minor alt
  for t in $bad; do
    m=${t%@*}
    v=${t#*@}
    minor=$(echo "$v" | cut -d. -f1,2)
    alt=$(go list -m -versions "$m" 2>/dev/null | tr ' ' '\n' | grep -E "^${minor//./\\.}\.[0-9]+$" |
      sort -t. -k3,3n | awk -v want="${v##*.}" -F. '$3 <= want { last = $0 } END { print last }' || true)
    if [[ -z "$alt" ]]; then
      # Harmless unless a built package imports it (then `go build` fails loudly).
      log "WARNING: $m@$v is not available from the module proxy and has no $minor.x release; dropping its replace"
      sed -i "\#^replace $m => $m $v\$#d" go.mod
      continue
    fi
    log "WARNING: $m@$v is not available from the module proxy; using $m@$alt instead"
    sed -i "s#^replace $m => $m $v\$#replace $m => $m $alt#" go.mod
  done
}

# build_pkgs <dir> <out-dir> <ldflags> <pkg...>: builds each package into <out-dir>.
build_pkgs() {
  local dir=$1 out=$2 ldflags=$3
  shift 3
  (cd "$dir" && go build -trimpath -ldflags="$ldflags" -o "$out/" "$@")
}

TOTAL_START=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/coffer-k8s-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

timed() {
  local what=$1
  shift
  local t0
  t0=$(date +%s)
  log "building $what ..."
  "$@"
  log "built $what in $(($(date +%s) - t0))s"
}

# --- kube-apiserver, kube-controller-manager, kube-scheduler (+ kubectl) -----
# kwok fakes nodes and pod status but does not schedule: the real scheduler
# binds pods to the fake nodes. kubectl is only built when none is on PATH.
k8s_targets=()
stamp_ok kube-apiserver "$K8S_VERSION" || k8s_targets+=(kube-apiserver)
stamp_ok kube-controller-manager "$K8S_VERSION" || k8s_targets+=(kube-controller-manager)
stamp_ok kube-scheduler "$K8S_VERSION" || k8s_targets+=(kube-scheduler)
if { [[ "${COFFER_K8S_BUILD_KUBECTL:-}" == 1 ]] || ! command -v kubectl >/dev/null 2>&1; } &&
  ! stamp_ok kubectl "$K8S_VERSION"; then
  k8s_targets+=(kubectl)
fi
if ((${#k8s_targets[@]})); then
  build_k8s() {
    local d="$WORK/k8s" out="$WORK/k8s-out"
    mkdir -p "$d" "$out"
    new_module "$d" k8s.io/kubernetes "$K8S_VERSION" "$STAGING_VERSION"
    local minor=${K8S_VERSION#v1.}
    minor=${minor%%.*}
    local vflags=""
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      vflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
      vflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    local pkgs=()
    for t in "${k8s_targets[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$t"); done
    build_pkgs "$d" "$out" "$LDFLAGS_BASE$vflags" "${pkgs[@]}"
    for t in "${k8s_targets[@]}"; do
      mv -f "$out/$t" "$BIN_DIR/$t"
      stamp "$t" "$K8S_VERSION"
    done
  }
  timed "${k8s_targets[*]} ($K8S_VERSION)" build_k8s
else
  log "kube-apiserver, kube-controller-manager, kube-scheduler $K8S_VERSION: cached"
fi

# --- etcd ---------------------------------------------------------------------
if ! stamp_ok etcd "$ETCD_VERSION"; then
  build_etcd() {
    local d="$WORK/etcd" out="$WORK/etcd-out"
    mkdir -p "$d" "$out"
    new_module "$d" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" ""
    build_pkgs "$d" "$out" "$LDFLAGS_BASE" go.etcd.io/etcd/server/v3
    mv -f "$out"/* "$BIN_DIR/etcd"  # binary is named after the import path
    stamp etcd "$ETCD_VERSION"
  }
  timed "etcd ($ETCD_VERSION)" build_etcd
else
  log "etcd $ETCD_VERSION: cached"
fi

# --- kwok ---------------------------------------------------------------------
if ! stamp_ok kwok "$KWOK_VERSION"; then
  build_kwok() {
    local d="$WORK/kwok" out="$WORK/kwok-out"
    mkdir -p "$d" "$out"
    new_module "$d" sigs.k8s.io/kwok "$KWOK_VERSION" ""
    build_pkgs "$d" "$out" "$LDFLAGS_BASE -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" sigs.k8s.io/kwok/cmd/kwok
    mv -f "$out/kwok" "$BIN_DIR/kwok"
    stamp kwok "$KWOK_VERSION"
  }
  timed "kwok ($KWOK_VERSION)" build_kwok
else
  log "kwok $KWOK_VERSION: cached"
fi

log "done in $(($(date +%s) - TOTAL_START))s"
echo "bin dir: $BIN_DIR"
