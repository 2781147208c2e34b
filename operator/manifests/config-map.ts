// A ConfigMap the operator keeps for a VaultCluster: in its namespace, with
// its labels and a component label, owned by it so deletion takes it along.
import type { V1ConfigMap } from '@kubernetes/client-node';
import type { VaultCluster } from '../api/types.js';
import { LABEL_COMPONENT, commonLabels, namespaceOf, ownerReferences } from './names.js';

export function ownedConfigMap(vc: VaultCluster, name: string, component: string, data: Record<string, string>): V1ConfigMap {
  const owners = ownerReferences(vc);
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name,
      namespace: namespaceOf(vc),
      labels: { ...commonLabels(vc.metadata.name), [LABEL_COMPONENT]: component },
      ...(owners.length > 0 ? { ownerReferences: owners } : {}),
    },
    data,
  };
}
