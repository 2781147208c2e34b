// The seam between the API and consensus. The API proposes commands and waits
// for their result; it never writes tables. RaftReplicator (driver/) is the
// implementation: it commits by quorum (a lone voter is a quorum of one).
import type { AutopilotReport } from './driver/autopilot.js';
import type { Command } from '../store/commands.js';
import type { ApplyResult } from '../store/results.js';

export type NodeRole = 'leader' | 'follower' | 'candidate' | 'learner';

export interface ClusterPeer {
  id: string;
  address: string;
  voter: boolean;
}

export interface ReplicationStatus {
  node_id: string;
  role: NodeRole;
  leader_id: string | null;
  term: number;
  commit_index: number;
  applied_index: number;
  peers: ClusterPeer[];
  /** False when the node knows no leader, lags what it committed, or stopped applying. */
  ready: boolean;
  /** Why the node is not ready, when it is not. */
  problem: string | null;
  /** The node stopped applying for good (undecodable entry, storage fault): liveness fails so it is restarted. */
  stopped: boolean;
  /** What the autopilot (membership reconciliation) sees and last decided; meaningful on the leader. */
  autopilot: AutopilotReport;
}

export interface Replicator {
  /** Resolves once the command is committed and applied locally, with its deterministic result. */
  propose(cmd: Command): Promise<ApplyResult>;
  /** Resolves when local state reflects every write acknowledged before the call (ReadIndex). */
  readBarrier(): Promise<void>;
  status(): ReplicationStatus;
  isLeader(): boolean;
  /** Adds a member (learner first, promoted once caught up). */
  addPeer(id: string, address: string): Promise<void>;
  removePeer(id: string): Promise<void>;
  /** Moves leadership to `to` (or the most caught-up voter); resolves with the leader afterwards. */
  transferLeadership(to?: string): Promise<string | null>;
  close(): Promise<void>;
}

/** No leader is known or this node cannot commit (maps to 503 no_leader). */
export class NoLeaderError extends Error {
  override readonly name = 'NoLeaderError';
}

/** The node hit an unrecoverable storage fault and stopped (a failed fsync is never retried). */
export class FatalStorageError extends Error {
  override readonly name = 'FatalStorageError';
}

/**
 * A committed entry this release cannot decode (version skew). The node stops
 * applying and stays up, reporting why (/v1/health 503), rather than exiting:
 * a restart would stop at the same entry, and the reason is worth reading.
 */
export class UndecodableEntryError extends FatalStorageError {}
