// cluster.*: the address book of members.
import type { Definitions, Fields } from './definition.js';
import { nodeId, raftAddress } from './fields.js';

/** Records a member's Raft address so every node can dial it (precedes adding it as a learner). */
export interface ClusterPeerV1 {
  t: 'cluster.peer';
  v: 1;
  id: string;
  address: string;
}

export type ClusterCommand = ClusterPeerV1;

export const clusterPeer = (fields: Fields<ClusterPeerV1>): ClusterPeerV1 => ({ t: 'cluster.peer', v: 1, ...fields });

export const CLUSTER_COMMANDS: Definitions<ClusterCommand> = {
  'cluster.peer': {
    versions: { 1: { id: nodeId, address: raftAddress } },
    binary: [],
    // Membership has its own forwarded route; the leader proposes this itself.
    forwardable: false,
    invalidates: ['peers'],
  },
};
