// Before a node with an empty Raft log bootstraps from VAULT_PEERS, it asks
// those peers whether the cluster already knows it under another storage
// identity. If one does, this node is a former member that lost its data (a
// new volume under an old pod name): bootstrapping would make it a voter with
// an empty log, able to vote away entries it acknowledged before. It starts
// as a joiner instead and waits for the autopilot to re-add it as a learner.
import type { ClusterAuth } from '../cluster-auth.js';
import { Transport } from '../transport.js';

export interface JoinCheckOptions {
  nodeId: string;
  peers: ReadonlyArray<{ id: string; address: string }>;
  auth: ClusterAuth;
  capabilities: string[];
}

/** True when any reachable peer holds a storage identity for this node (all peers down or new: false). */
export async function isFormerMember(opts: JoinCheckOptions): Promise<boolean> {
  const others = opts.peers.filter((p) => p.id !== opts.nodeId);
  if (others.length === 0) return false;
  const transport = new Transport({ nodeId: opts.nodeId, capabilities: opts.capabilities, onUnreachable: () => {}, onPeerCapabilities: () => {} });
  transport.authenticate(opts.auth);
  try {
    for (const p of others) transport.setPeer(p.id, p.address);
    const replies = await Promise.all(others.map((p) => transport.probe(p.id)));
    return replies.some((r) => r !== null && r.your_data_id !== null);
  } finally {
    transport.close();
  }
}
