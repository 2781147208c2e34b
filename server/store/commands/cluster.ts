// cluster.*: the address book of members.
import type { Definitions, Fields } from './definition.js';
import { memberListProblem, type DeclaredMember } from '../members.js';
import { nodeId, raftAddress, text, type Check } from './fields.js';

/** Records a member's Raft address so every node can dial it (precedes adding it as a learner). */
export interface ClusterPeerV1 {
  t: 'cluster.peer';
  v: 1;
  id: string;
  address: string;
}

/** Replaces the declared member list (PUT/DELETE /v1/admin/cluster/members); empty = nothing declared. */
export interface ClusterDeclareV1 {
  t: 'cluster.declare';
  v: 1;
  members: DeclaredMember[];
}

/** Records the storage identity a member joined with, so a member that lost its data is recognised. */
export interface ClusterMemberV1 {
  t: 'cluster.member';
  v: 1;
  id: string;
  data_id: string;
}

export type ClusterCommand = ClusterPeerV1 | ClusterDeclareV1 | ClusterMemberV1;

export const clusterPeer = (fields: Fields<ClusterPeerV1>): ClusterPeerV1 => ({ t: 'cluster.peer', v: 1, ...fields });
export const clusterDeclare = (fields: Fields<ClusterDeclareV1>): ClusterDeclareV1 => ({ t: 'cluster.declare', v: 1, ...fields });
export const clusterMember = (fields: Fields<ClusterMemberV1>): ClusterMemberV1 => ({ t: 'cluster.member', v: 1, ...fields });

const memberList: Check = (v) => {
  if (!Array.isArray(v)) return 'must be a list of members';
  for (const m of v) {
    if (typeof m !== 'object' || m === null || Object.keys(m).sort().join() !== 'address,id') return 'each member must be {id, address}';
    if (typeof (m as DeclaredMember).id !== 'string' || typeof (m as DeclaredMember).address !== 'string') return 'each member must be {id, address}';
  }
  return memberListProblem(v as DeclaredMember[]);
};

export const CLUSTER_COMMANDS: Definitions<ClusterCommand> = {
  'cluster.peer': {
    versions: { 1: { id: nodeId, address: raftAddress } },
    binary: [],
    // Membership has its own forwarded route; the leader proposes this itself.
    forwardable: false,
    invalidates: ['peers'],
  },
  'cluster.declare': {
    versions: { 1: { members: memberList } },
    binary: [],
    // Built by the admin route on any node; the leader takes it from a follower like any API write.
    forwardable: true,
    invalidates: ['peers'],
  },
  'cluster.member': {
    versions: { 1: { id: nodeId, data_id: text(8, 64) } },
    binary: [],
    forwardable: false,
    invalidates: [],
  },
};
