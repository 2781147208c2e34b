// The membership phase: the operator does not change Raft membership, so a
// formed cluster keeps its size (status.members); a changed spec.replicas is
// a problem, not applied.
import type { VaultCluster } from '../api/types.js';
import type { ObservedStatefulSet } from '../rollout/machine.js';
import type { Pass, Problem } from './pass.js';

export interface Sized {
  /** The spec with replicas at the cluster's Raft size. */
  vc: VaultCluster;
  members: number;
}

export function keepFormedSize(pass: Pass, requested: VaultCluster, sts: ObservedStatefulSet | null): Sized {
  const members = establishedMembers(pass.stored.members, sts, requested.spec.replicas);
  if (members === requested.spec.replicas) return { vc: requested, members };
  pass.problems.push(replicasChangeProblem(members, requested.spec.replicas));
  // members came from a spec once validated, or from the StatefulSet the operator sized from one: 1, 3, 5 or 7.
  return { vc: { ...requested, spec: { ...requested.spec, replicas: members as VaultCluster['spec']['replicas'] } }, members };
}

/**
 * How many Raft voters the cluster was formed with: what status says, else
 * (a cluster from an operator that did not record it) its StatefulSet's size,
 * else, for a cluster not created yet, what the spec asks for.
 */
export function establishedMembers(recorded: unknown, sts: ObservedStatefulSet | null, requested: number): number {
  if (typeof recorded === 'number' && Number.isSafeInteger(recorded) && recorded >= 1) return recorded;
  if (sts !== null && sts.specReplicas >= 1) return sts.specReplicas;
  return requested;
}

/**
 * New pods would bootstrap a Raft configuration of their own and never join
 * (they are initial voters in VAULT_PEERS), and removed pods would stay voters,
 * leaving a shrunk cluster without fault tolerance (a rolling restart of the
 * rest then loses quorum). So the change is not applied, and says why.
 */
function replicasChangeProblem(members: number, requested: number): Problem {
  return {
    reason: 'ReplicasChangeUnsupported',
    message:
      `spec.replicas is ${requested} but this cluster was formed with ${members} Raft voters; the operator does not change Raft ` +
      `membership, so it keeps ${members} pods (new pods would never join; removed ones would stay voters and cost the cluster ` +
      `its fault tolerance). Set spec.replicas back to ${members}. To resize: take a snapshot (GET /v1/admin/snapshot), create a ` +
      `new VaultCluster of the size you want, and restore it there (POST /v1/admin/snapshot).`,
  };
}
