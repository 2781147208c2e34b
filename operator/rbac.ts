// The exact Kubernetes permissions the operator needs: least privilege, one
// rule per kind of object, each verb justified. The Helm chart renders its
// ClusterRole and Role from these structures (import them, or generate the
// YAML with `clusterRoleManifest()` / `leaderElectionRoleManifest()`); the
// test:k8s suite runs the operator under exactly these rules.
//
// What is deliberately absent:
// - patch/delete on Secrets: the bootstrap-token, cluster-key and master-key Secrets are
//   created once, immutable, and never overwritten; user-supplied ones are
//   only read. `update` exists for one Secret only, the WireGuard key Secret
//   (keys added on scale-up, removed on scale-down, replaced by a rotation),
//   written with resourceVersion preconditions (RBAC cannot name it: its name
//   depends on the VaultCluster's);
// - delete on anything: owned objects go with the VaultCluster through the
//   garbage collector (ownerReferences), PVCs through the StatefulSet's
//   persistentVolumeClaimRetentionPolicy (spec.storage.deleteClaimsOn*);
// - create/delete on Pods: the operator lists the vault pods to find
//   their IPs and probe /v1/health, and lists and watches the pods
//   spec.readAllowlistFrom selects; the StatefulSet controller owns them. A
//   WireGuard key rotation restarts one pod through the Eviction API
//   (pods/eviction), which the PodDisruptionBudget can refuse, not by deleting it.

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

/** Default name of the leader election Lease (in the operator's namespace). */
export const DEFAULT_LEASE_NAME = 'coffer-operator';

/** Cluster-wide rules (ClusterRole; bind with a ClusterRoleBinding, or a RoleBinding per watched namespace). */
export const OPERATOR_RULES: readonly PolicyRule[] = [
  // Read and watch the custom resource.
  { apiGroups: ['coffer.dev'], resources: ['vaultclusters'], verbs: ['get', 'list', 'watch'] },
  // Write status (server-side apply on the status subresource).
  { apiGroups: ['coffer.dev'], resources: ['vaultclusters/status'], verbs: ['get', 'patch', 'update'] },
  // Owner references with blockOwnerDeletion (OwnerReferencesPermissionEnforcement).
  { apiGroups: ['coffer.dev'], resources: ['vaultclusters/finalizers'], verbs: ['update'] },
  // Owned objects: server-side apply (patch, and create when absent), watched to bring them back.
  { apiGroups: ['apps'], resources: ['statefulsets'], verbs: ['get', 'list', 'watch', 'create', 'patch'] },
  { apiGroups: [''], resources: ['services', 'serviceaccounts'], verbs: ['get', 'list', 'watch', 'create', 'patch'] },
  { apiGroups: ['policy'], resources: ['poddisruptionbudgets'], verbs: ['get', 'list', 'watch', 'create', 'patch'] },
  // Generated Secrets: created once; user-supplied ones read to report them
  // missing; the watch uses the managed-by label selector. update: the
  // WireGuard key Secret only (the others are immutable).
  { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch', 'create', 'update'] },
  // The WireGuard peer and read-allowlist ConfigMaps: server-side apply, watched to bring them back.
  { apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch', 'create', 'patch'] },
  // Pod IPs for the /v1/health gate, pod readiness for the key rotation;
  // watched for the read-allowlist ConfigMap (spec.readAllowlistFrom).
  { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
  // WireGuard key rotation: restart one pod at a time, subject to the PodDisruptionBudget.
  { apiGroups: [''], resources: ['pods/eviction'], verbs: ['create'] },
  // Refuse to generate a new master key when data volumes already exist.
  { apiGroups: [''], resources: ['persistentvolumeclaims'], verbs: ['get'] },
  // Events for every step.
  { apiGroups: [''], resources: ['events'], verbs: ['create'] },
];

/** Rules for leader election, in the operator's own namespace (Role + RoleBinding). */
export function leaderElectionRules(leaseName: string = DEFAULT_LEASE_NAME): PolicyRule[] {
  return [
    // create cannot be restricted by name.
    { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
    { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: [leaseName], verbs: ['get', 'update'] },
    // Events about leadership are not recorded; nothing else is needed here.
  ];
}

export function clusterRoleManifest(name: string): Record<string, unknown> {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name },
    rules: OPERATOR_RULES.map((r) => structuredClone(r)),
  };
}

export function leaderElectionRoleManifest(name: string, namespace: string, leaseName: string = DEFAULT_LEASE_NAME): Record<string, unknown> {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'Role',
    metadata: { name, namespace },
    rules: leaderElectionRules(leaseName),
  };
}
