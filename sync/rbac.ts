// The exact Kubernetes permissions the sync controller needs. The chart
// renders its ClusterRole and lease Role from these (charts/generate.mjs), and
// the k8s tier runs the controller under exactly these rules.
//
// What is deliberately absent:
// - delete on anything: a target Secret goes with its CofferSecret through the
//   garbage collector (ownerReferences); a Secret whose type would change is
//   reported (Secret types are immutable), not deleted and recreated;
// - update on Secrets: every write is a server-side apply (patch), so a field
//   another manager owns is never overwritten by accident;
// - list/watch on workloads: a restart target is patched by name (its pod
//   template annotation) and read by name first;
// - pods: the controller never needs them.
import type { PolicyRule } from '../operator/rbac.js';

/** Default name of the sync controller's leader election Lease. */
export const SYNC_LEASE_NAME = 'coffer-sync';

/** Cluster-wide rules (ClusterRole + ClusterRoleBinding, or a Role per watched namespace). */
export const SYNC_RULES: readonly PolicyRule[] = [
  // The resource it serves.
  { apiGroups: ['coffer.dev'], resources: ['coffersecrets'], verbs: ['get', 'list', 'watch'] },
  // Status: server-side apply on the status subresource.
  { apiGroups: ['coffer.dev'], resources: ['coffersecrets/status'], verbs: ['get', 'patch', 'update'] },
  // Owner references with blockOwnerDeletion on the target Secrets.
  { apiGroups: ['coffer.dev'], resources: ['coffersecrets/finalizers'], verbs: ['update'] },
  // vaultRef.name: the VaultCluster's TLS setting decides http or https.
  { apiGroups: ['coffer.dev'], resources: ['vaultclusters'], verbs: ['get'] },
  // Target Secrets: server-side apply (patch, create when absent), watched
  // (label selector app.kubernetes.io/managed-by=coffer-sync) so an edited or
  // deleted one is put back; get: the token Secret and a conflicting target.
  { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch', 'create', 'patch'] },
  // rolloutRestartTargets: the versions hash in the pod template.
  { apiGroups: ['apps'], resources: ['deployments', 'statefulsets', 'daemonsets'], verbs: ['get', 'patch'] },
  // Events on the CofferSecrets.
  { apiGroups: [''], resources: ['events'], verbs: ['create'] },
];

export { leaderElectionRules } from '../operator/rbac.js';
