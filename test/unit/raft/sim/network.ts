// Simulated network: per-message random delay (so reordering), drops,
// duplicates, and partitions. Deterministic given its PRNG.

import type { Message, NodeId, SeededRng } from '../../../../server/raft/core/index.js';

export interface NetworkFaults {
  /** Probability a message is lost. */
  drop: number;
  /** Probability a message is delivered twice. */
  duplicate: number;
  /** Extra delay in steps, uniform in [0, maxDelay]. Every message takes at least 1 step. */
  maxDelay: number;
}

export const CALM: NetworkFaults = { drop: 0, duplicate: 0, maxDelay: 0 };

interface InFlight {
  readonly m: Message;
  readonly at: number;
}

export class SimNetwork {
  faults: NetworkFaults;
  private queue: InFlight[] = [];
  /** node -> partition group; nodes in different groups cannot talk. */
  private groups: Map<NodeId, number> | undefined;
  sent = 0;
  dropped = 0;

  constructor(
    private readonly rng: SeededRng,
    faults: NetworkFaults,
    /** Called for every message lost in the network (sender learns e.g. a snapshot failed). */
    private readonly onDrop: (m: Message) => void,
  ) {
    this.faults = faults;
  }

  partition(groups: readonly (readonly NodeId[])[]): void {
    this.groups = new Map();
    groups.forEach((g, k) => g.forEach((id) => this.groups?.set(id, k)));
  }

  heal(): void {
    this.groups = undefined;
  }

  isPartitioned(): boolean {
    return this.groups !== undefined;
  }

  canTalk(a: NodeId, b: NodeId): boolean {
    if (!this.groups) return true;
    return (this.groups.get(a) ?? -1) === (this.groups.get(b) ?? -1);
  }

  send(m: Message, now: number): void {
    this.sent++;
    if (!this.canTalk(m.from, m.to) || this.rng.chance(this.faults.drop)) {
      this.dropped++;
      this.onDrop(m);
      return;
    }
    this.queue.push({ m, at: now + 1 + this.rng.int(this.faults.maxDelay + 1) });
    if (this.rng.chance(this.faults.duplicate)) {
      this.queue.push({ m, at: now + 1 + this.rng.int(this.faults.maxDelay + 2) });
    }
  }

  /** How many messages in flight match `pred`. */
  pending(pred: (m: Message) => boolean): number {
    return this.queue.filter((f) => pred(f.m)).length;
  }

  /** Hold a message until `at` (its receiver is paused). */
  defer(m: Message, at: number): void {
    this.queue.push({ m, at });
  }

  /** Messages due at `now`, in random order; partitions are re-checked at delivery. */
  due(now: number): Message[] {
    const out: Message[] = [];
    const rest: InFlight[] = [];
    for (const f of this.queue) {
      if (f.at <= now) out.push(f.m);
      else rest.push(f);
    }
    this.queue = rest;
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.rng.int(i + 1);
      const t = out[i] as Message;
      out[i] = out[j] as Message;
      out[j] = t;
    }
    const delivered: Message[] = [];
    for (const m of out) {
      if (this.canTalk(m.from, m.to)) delivered.push(m);
      else {
        this.dropped++;
        this.onDrop(m);
      }
    }
    return delivered;
  }

  /** Forget in-flight messages matching `f` (e.g. everything a wiped node sent before it died). */
  purge(f: (m: Message) => boolean): void {
    this.queue = this.queue.filter((q) => !f(q.m));
  }

  inFlight(): number {
    return this.queue.length;
  }
}
