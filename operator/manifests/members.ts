// The members ConfigMap `<name>-members`, key `members`: the Raft members the
// operator declares, one `id=host:port` per line in ordinal order (the same
// entries VAULT_PEERS would have for them: the headless Service's names, or
// the overlay addresses when WireGuard is on). Mounted as a directory (never
// subPath, so the kubelet's updates reach the pods) and read through
// VAULT_MEMBERS_FILE: the leader's autopilot moves the Raft configuration
// toward it, and a pod not in VAULT_PEERS (added by a resize) finds its own
// advertise address in it. A resize changes only this ConfigMap and the
// StatefulSet's size, never the pod template.
import type { V1ConfigMap } from '@kubernetes/client-node';
import { parseCidr } from '../../common/ipv4.js';
import { overlayAddress } from '../api/overlay.js';
import type { VaultCluster } from '../api/types.js';
import { ownedConfigMap } from './config-map.js';
import { MEMBERS_KEY, RAFT_PORT, namespaceOf, peerEntries, podName, resourceNames } from './names.js';

export const MEMBERS_COMPONENT = 'members';

/** The declared entries for ordinals 0..declared-1. */
export function memberEntries(vc: VaultCluster, declared: number, clusterDomain?: string): string[] {
  const { name } = vc.metadata;
  const wg = vc.spec.wireguard;
  if (wg.enabled) {
    const cidr = parseCidr(wg.cidr);
    return Array.from({ length: declared }, (_, i) => `${podName(name, i)}=${overlayAddress(cidr, i)}:${RAFT_PORT}`);
  }
  return peerEntries(name, namespaceOf(vc), declared, clusterDomain);
}

export function membersConfigMap(vc: VaultCluster, declared: number, clusterDomain?: string): V1ConfigMap {
  return ownedConfigMap(vc, resourceNames(vc.metadata.name).membersConfigMap, MEMBERS_COMPONENT, {
    [MEMBERS_KEY]: memberEntries(vc, declared, clusterDomain).map((l) => `${l}\n`).join(''),
  });
}
