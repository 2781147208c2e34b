#!/bin/bash
# The node network of the kind node image (test/e2e/kind/node-image.sh): the
# part of kind's kindnetd this project needs, as a DaemonSet on every node.
# kindnetd itself cannot be built here (its Go module is not served), so this
# does the same with Debian's CNI plugins and kubectl:
#   - writes /etc/cni/net.d/10-kindnet.conflist for this node's podCIDR
#     (ptp + host-local, portmap), which makes the node Ready;
#   - routes every other node's podCIDR via that node's InternalIP (all nodes
#     share one docker bridge, so the next hop is on-link);
#   - masquerades pod traffic leaving the pod network.
# Env: NODE_NAME, POD_SUBNET, CONTROL_PLANE_ENDPOINT (added by kind; host:port).
set -uo pipefail
: "${NODE_NAME:?}" "${POD_SUBNET:?}"
CONF=/etc/cni/net.d/10-kindnet.conflist
log() { echo "$(date -u +%FT%TZ) $*"; }

KUBECTL=(kubectl)
if [[ -n "${CONTROL_PLANE_ENDPOINT:-}" ]] && getent hosts "${CONTROL_PLANE_ENDPOINT%:*}" >/dev/null 2>&1; then
  # reach the API server directly, not through the Service kube-proxy programs,
  # with the pod's ServiceAccount token (re-read as it is rotated)
  sa=/var/run/secrets/kubernetes.io/serviceaccount
  cat >/tmp/kubeconfig <<YAML
apiVersion: v1
kind: Config
clusters: [{name: kind, cluster: {server: "https://$CONTROL_PLANE_ENDPOINT", certificate-authority: $sa/ca.crt}}]
users: [{name: kindnet, user: {tokenFile: $sa/token}}]
contexts: [{name: kind, context: {cluster: kind, user: kindnet}}]
current-context: kind
YAML
  KUBECTL+=(--kubeconfig /tmp/kubeconfig)
fi

mtu=$(cat /sys/class/net/eth0/mtu 2>/dev/null || echo 1500)

masquerade() {
  iptables -t nat -N KIND-MASQ-AGENT 2>/dev/null || true
  iptables -t nat -C POSTROUTING -m addrtype ! --dst-type LOCAL -j KIND-MASQ-AGENT \
    -m comment --comment "kind-masq-agent: masquerade pod traffic leaving the pod network" 2>/dev/null ||
    iptables -t nat -A POSTROUTING -m addrtype ! --dst-type LOCAL -j KIND-MASQ-AGENT \
      -m comment --comment "kind-masq-agent: masquerade pod traffic leaving the pod network"
  iptables -t nat -F KIND-MASQ-AGENT
  iptables -t nat -A KIND-MASQ-AGENT -d "$POD_SUBNET" -j RETURN
  iptables -t nat -A KIND-MASQ-AGENT -s "$POD_SUBNET" -j MASQUERADE
}
until masquerade; do log "iptables failed; retrying"; sleep 2; done
log "masquerading $POD_SUBNET traffic to other networks"

write_conf() {
  local cidr=$1 tmp
  tmp=$(mktemp /etc/cni/net.d/.kindnet.XXXXXX)
  cat >"$tmp" <<JSON
{
  "cniVersion": "0.3.1",
  "name": "kindnet",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "mtu": $mtu,
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "routes": [{ "dst": "0.0.0.0/0" }],
        "ranges": [[{ "subnet": "$cidr" }]]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
JSON
  if cmp -s "$tmp" "$CONF"; then rm -f "$tmp"; else mv -f "$tmp" "$CONF" && log "wrote $CONF for $cidr"; fi
}

declare -A routed=()
while :; do
  if nodes=$("${KUBECTL[@]}" get nodes -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.spec.podCIDR}{" "}{range .status.addresses[?(@.type=="InternalIP")]}{.address}{" "}{end}{"\n"}{end}' 2>&1); then
    while read -r name cidr ips; do
      [[ -n "$name" && -n "$cidr" ]] || continue
      if [[ "$name" == "$NODE_NAME" ]]; then
        write_conf "$cidr"
        continue
      fi
      ip=""
      for a in $ips; do [[ "$a" == *.* ]] && { ip=$a; break; }; done
      [[ -n "$ip" ]] || continue
      if [[ "${routed[$cidr]:-}" != "$ip" ]] || ! ip route show "$cidr" | grep -q "via $ip"; then
        ip route replace "$cidr" via "$ip" && routed[$cidr]=$ip && log "route $cidr via $ip ($name)"
      fi
    done <<<"$nodes"
  else
    log "kubectl get nodes: ${nodes//$'\n'/ }"
  fi
  [[ -f "$CONF" ]] && sleep 10 || sleep 2
done
