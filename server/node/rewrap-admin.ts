// The re-wrap worker as the admin API sees it: its status on every node, and
// a pass run on the leader, which a follower asks for over the Raft listener.
import type { ApiDeps } from '../api/deps.js';
import type { RaftReplicator } from '../raft/driver/raft-replicator.js';
import { NoLeaderError } from '../raft/replicator.js';
import { RAFT_PATHS } from '../raft/transport.js';
import type { RewrapWorker } from '../rewrap/worker.js';

export function rewrapAdmin(rewrap: RewrapWorker, replicator: RaftReplicator, nodeId: string): ApiDeps['rewrap'] {
  return {
    status: () => rewrap.status(),
    async forceOnLeader(): Promise<string | null> {
      if (replicator.isLeader()) {
        rewrap.force();
        return nodeId;
      }
      const leader = replicator.status().leader_id;
      if (!leader) throw new NoLeaderError('no leader to run the pass');
      try {
        await replicator.transport.forward(leader, RAFT_PATHS.rewrap, {});
      } catch {
        throw new NoLeaderError('the leader could not be reached');
      }
      return leader;
    },
  };
}
