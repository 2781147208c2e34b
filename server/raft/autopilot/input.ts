// The decision's input from what a leader sees: its core's status plus, per
// server, what it observed of it. The server driver (probes over the Raft
// listener) and the simulation (its network and disks) observe differently;
// everything else — who is a member, the match and commit indexes, whether a
// conf change is in flight, when each server became stable — is derived here,
// once, so the simulation tests exactly the input the driver builds.
import type { Status } from '../core/index.js';
import type { AutopilotInput, AutopilotServer } from './decide.js';

/** The core status fields the input is built from (RaftNode.status() on the leader). */
export type AutopilotStatus = Pick<Status, 'commit' | 'applied' | 'pendingConfIndex' | 'confState' | 'progress'>;

/** What the leader observed of one current member. */
export interface MemberObservation {
  /** It answered recently (the driver: a probe; the simulation: progress or a message). */
  healthy: boolean;
  /** Its storage identity differs from the one recorded when it was added. */
  lostData: boolean;
}

export interface AutopilotObservations {
  self: string;
  /** Injected clock (ms). */
  now: number;
  /** Declared member ids; null or empty: nothing declared. */
  declared: readonly string[] | null;
  /** What was observed of each current member other than `self`. */
  member(id: string): MemberObservation;
  /** Whether a declared non-member answered (only those may be added). */
  reachable(id: string): boolean;
  /** When each member became stable, as of the previous round of this leader (not modified). */
  stableSince: ReadonlyMap<string, number>;
  stabilizationMs: number;
  promotionLag: number;
}

/**
 * The decision's input, and the stability times to keep for the next round: a member is stable
 * while it is healthy and caught up (match within promotionLag of the commit index) without
 * interruption, from the first round it was seen so; members no longer in the configuration drop out.
 */
export function autopilotInputFrom(status: AutopilotStatus, o: AutopilotObservations): { input: AutopilotInput; stableSince: Map<string, number> } {
  const { voters, learners } = status.confState;
  const members = [...voters, ...learners];
  const servers = new Map<string, AutopilotServer>();
  const stableSince = new Map<string, number>();
  for (const id of members) {
    if (id === o.self) continue;
    const seen = o.member(id);
    const match = status.progress.get(id)?.match ?? 0;
    if (seen.healthy && match + o.promotionLag >= status.commit) stableSince.set(id, o.stableSince.get(id) ?? o.now);
    servers.set(id, { id, voter: voters.includes(id), healthy: seen.healthy, stableSince: stableSince.get(id) ?? null, match, lostData: seen.lostData });
  }
  const reachable = new Set((o.declared ?? []).filter((id) => !members.includes(id) && o.reachable(id)));
  return {
    input: {
      self: o.self,
      now: o.now,
      declared: o.declared,
      voters,
      learners,
      pendingConfChange: status.pendingConfIndex > status.applied,
      commitIndex: status.commit,
      servers,
      reachable,
      stabilizationMs: o.stabilizationMs,
      promotionLag: o.promotionLag,
    },
    stableSince,
  };
}
