// The read-allowlist phase: list the pods each spec.readAllowlistFrom entry
// selects (its namespace exactly, its labels) and build the ConfigMap of
// their IPs plus spec.readAllowlist. Applied before the StatefulSet that
// mounts it; the controller's pod watch brings a pass when a matching pod
// starts, moves or goes.
import type { V1ConfigMap, V1Pod } from '@kubernetes/client-node';
import type { VaultCluster } from '../api/types.js';
import { labelSelectorOf, readAllowlistConfigMap, readAllowlistLines, usesReadAllowlistFile } from '../manifests/read-allowlist.js';
import type { ClusterClient } from './client.js';

/** The ConfigMap to apply, or undefined when the spec has no readAllowlistFrom. */
export async function readAllowlistPass(client: ClusterClient, vc: VaultCluster): Promise<V1ConfigMap | undefined> {
  if (!usesReadAllowlistFile(vc)) return undefined;
  const pods: V1Pod[][] = [];
  for (const entry of vc.spec.readAllowlistFrom) pods.push(await client.listPods(entry.namespace, labelSelectorOf(entry)));
  return readAllowlistConfigMap(vc, readAllowlistLines(vc, pods));
}
