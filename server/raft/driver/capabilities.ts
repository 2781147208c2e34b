// Capability gating for rolling upgrades: each member advertises the command
// versions it can apply (`secret.put@2`, …) with every Raft batch and reply,
// and the leader proposes a version only when every voter advertises it, so
// no voter ever meets an entry it cannot decode.
import { setTimeout as sleep } from 'node:timers/promises';
import { LEADER_WAIT_MS, type DriverContext } from './context.js';
import { BASELINE_COMMANDS } from '../../store/commands.js';
import { NoLeaderError } from '../replicator.js';

export class CapabilityGate {
  private readonly peerCaps = new Map<string, string[]>();

  constructor(
    private readonly ctx: DriverContext,
    private readonly own: readonly string[],
  ) {}

  /** What `peer` advertised, from a batch it sent or a reply to ours. */
  heard(peer: string, caps: string[]): void {
    this.peerCaps.set(peer, caps);
  }

  /**
   * The first voter that does not (yet) advertise `cap`, or null. Only the
   * leader hears every voter first-hand (each one's stream to it starts
   * with its capabilities, again after a restart); a follower hears the
   * leader, and other voters only when they campaign, so what it holds for
   * them may be from before a restart into an older release. A follower
   * therefore counts every voter but itself and its leader as a holdout:
   * it builds the version every release decodes, and the leader never has
   * to refuse (after a 3 s wait) a version a voter lost.
   *
   * A baseline version (BASELINE_COMMANDS) needs no word from a peer: every
   * release decodes it, so a voter down since before this leader was elected
   * (never heard by it) does not stop writes.
   */
  holdout(cap: string): string | null {
    // Asked on every linearizable read (the lease check): no copy of the membership.
    const st = this.ctx.node.softState();
    const baseline = BASELINE_COMMANDS.has(cap);
    for (const v of this.ctx.node.voterIds()) {
      if (v === this.ctx.nodeId) {
        if (!this.own.includes(cap)) return v;
        continue;
      }
      if (baseline) continue;
      if (st.role !== 'leader' && v !== st.lead) return v;
      if (!this.peerCaps.get(v)?.includes(cap)) return v;
    }
    return null;
  }

  /** Waits a moment for a voter that has not been heard from yet; refuses after that. */
  async waitFor(cap: string): Promise<void> {
    const deadline = Date.now() + LEADER_WAIT_MS;
    for (;;) {
      const holdout = this.holdout(cap);
      if (holdout === null) return;
      if (Date.now() > deadline) throw new NoLeaderError(`voter ${holdout} does not advertise ${cap}`);
      await sleep(25);
    }
  }
}
