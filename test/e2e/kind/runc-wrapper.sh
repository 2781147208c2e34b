#!/bin/bash
# An OCI runtime that is runc, minus CAP_SYS_RESOURCE.
#
# On machines whose capability bounding set lacks CAP_SYS_RESOURCE (grep CapBnd
# /proc/self/status), runc cannot give a process every capability, and
# privileged containers ("docker run --privileged", kind's nodes, privileged
# pods such as kube-proxy) fail with "unable to apply caps: operation not
# permitted". This wrapper deletes CAP_SYS_RESOURCE from every capability set
# of the bundle's config.json (create, run) and of the --process file (exec),
# then runs the real runc with the same arguments.
#
# Installed by test/e2e/kind/docker.sh for dockerd (only where privileged
# containers fail without it) and into the kind node image for containerd.
#   COFFER_RUNC   the real runc (default /usr/sbin/runc, Debian's package)
set -euo pipefail

RUNC=${COFFER_RUNC:-/usr/sbin/runc}
[[ -x "$RUNC" ]] || RUNC=/usr/bin/runc

# strip <json file> <jq path of the capabilities object>
strip() {
  local file=$1 path=$2 tmp
  [[ -f "$file" ]] || return 0
  grep -q CAP_SYS_RESOURCE "$file" || return 0
  tmp=$(mktemp "$file.XXXXXX")
  jq -c "if $path then $path |= with_entries(.value |= (if type == \"array\" then map(select(. != \"CAP_SYS_RESOURCE\")) else . end)) else . end" \
    "$file" >"$tmp"
  chmod --reference="$file" "$tmp"
  mv -f "$tmp" "$file"
}

cmd=""
bundle=""
process=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  a=${args[$i]}
  case "$a" in
    --bundle | -b) bundle=${args[$((i + 1))]:-} ;;
    --bundle=*) bundle=${a#--bundle=} ;;
    --process | -p) process=${args[$((i + 1))]:-} ;;
    --process=*) process=${a#--process=} ;;
    create | run | exec)
      # the first non-flag word is the command; global flags with values
      # (--root, --log, --log-format, --criu) come before it
      if [[ -z "$cmd" ]]; then
        prev=${args[$((i - 1))]:-}
        case "$prev" in --root | --log | --log-format | --criu) ;; *) cmd=$a ;; esac
      fi
      ;;
  esac
done

case "$cmd" in
  create | run) strip "${bundle:-.}/config.json" .process.capabilities ;;
  exec) [[ -n "$process" ]] && strip "$process" .capabilities ;;
esac
exec "$RUNC" "$@"
