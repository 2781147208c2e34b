// Capability gating for rolling upgrades: each member advertises the command
// versions it can apply (`secret.put@2`, …) with every Raft batch and reply,
// and the leader proposes a version only when every voter advertises it, so
// no voter ever meets an entry it cannot decode.
import { setTimeout as sleep } from 'node:timers/promises';
import { LEADER_WAIT_MS, type DriverContext } from './context.js';
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

  /** The first voter that does not (yet) advertise `cap`, or null. */
  holdout(cap: string): string | null {
    for (const v of this.ctx.node.basicStatus().confState.voters) {
      if (v === this.ctx.nodeId) {
        if (!this.own.includes(cap)) return v;
        continue;
      }
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
