// The read-allowlist ConfigMap (DESIGN §6): spec.readAllowlist plus the pod
// IPs spec.readAllowlistFrom selects, one per line, sorted. The vault pods
// mount it as a directory (never subPath, so the kubelet's updates reach
// them) and read it through VAULT_READ_ALLOWLIST_FILE. Pod IPs live only
// here, never in the pod template: a pod moving changes this ConfigMap and
// rolls nothing.
import type { V1ConfigMap, V1Pod } from '@kubernetes/client-node';
import type { ReadAllowlistFrom, VaultCluster } from '../api/types.js';
import { ownedConfigMap } from './config-map.js';
import { READ_ALLOWLIST_KEY, resourceNames } from './names.js';

export const READ_ALLOWLIST_COMPONENT = 'read-allowlist';

/** True when the VaultCluster has a read-allowlist ConfigMap (and mounts it): readAllowlistFrom is not empty. */
export function usesReadAllowlistFile(vc: VaultCluster): boolean {
  return vc.spec.readAllowlistFrom.length > 0;
}

/** The label selector string of one entry (`k1=v1,k2=v2`, keys sorted). */
export function labelSelectorOf(entry: ReadAllowlistFrom): string {
  return Object.keys(entry.podSelector.matchLabels)
    .sort()
    .map((k) => `${k}=${entry.podSelector.matchLabels[k]}`)
    .join(',');
}

const IPV4 = /^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$/;

/**
 * Whether a pod's address may read: in exactly the entry's namespace, every
 * selector label present, Running, not being deleted, with an IPv4 pod IP.
 * The API server already filtered by namespace and labels; this checks again
 * so a wrong list answer cannot widen the allowlist.
 */
export function podSelected(pod: V1Pod, entry: ReadAllowlistFrom): boolean {
  if (pod.metadata?.namespace !== entry.namespace) return false;
  if (pod.metadata?.deletionTimestamp) return false;
  const labels = pod.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(entry.podSelector.matchLabels)) if (labels[k] !== v) return false;
  if (pod.status?.phase !== 'Running') return false;
  return typeof pod.status?.podIP === 'string' && IPV4.test(pod.status.podIP);
}

/** The allowlist lines: spec.readAllowlist and `<podIP>/32` for each selected pod, unique and sorted. */
export function readAllowlistLines(vc: VaultCluster, podsPerEntry: readonly (readonly V1Pod[])[]): string[] {
  const lines = new Set<string>(vc.spec.readAllowlist);
  vc.spec.readAllowlistFrom.forEach((entry, i) => {
    for (const pod of podsPerEntry[i] ?? []) if (podSelected(pod, entry)) lines.add(`${pod.status!.podIP!}/32`);
  });
  return [...lines].sort();
}

/** The ConfigMap holding those lines (one per line, newline-terminated; empty when there are none). */
export function readAllowlistConfigMap(vc: VaultCluster, lines: readonly string[]): V1ConfigMap {
  return ownedConfigMap(vc, resourceNames(vc.metadata.name).readAllowlistConfigMap, READ_ALLOWLIST_COMPONENT, {
    [READ_ALLOWLIST_KEY]: lines.map((l) => `${l}\n`).join(''),
  });
}
