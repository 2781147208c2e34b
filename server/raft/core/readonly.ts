// ReadIndex bookkeeping on the leader: each request remembers the commit
// index at arrival and collects heartbeat acks until a quorum confirms the
// leader was still leader; then it and every earlier request are released.

import type { NodeId } from './types.js';

export interface ReadIndexStatus {
  readonly index: number;
  /** Who asked: the leader itself or a follower that forwarded the request. */
  readonly from: NodeId;
  readonly context: string;
  readonly acks: Set<NodeId>;
}

export class ReadOnly {
  private readonly pending = new Map<string, ReadIndexStatus>();
  private queue: string[] = [];

  addRequest(index: number, from: NodeId, context: string): void {
    if (this.pending.has(context)) return;
    this.pending.set(context, { index, from, context, acks: new Set() });
    this.queue.push(context);
  }

  recvAck(id: NodeId, context: string): ReadonlySet<NodeId> | undefined {
    const rs = this.pending.get(context);
    if (!rs) return undefined;
    rs.acks.add(id);
    return rs.acks;
  }

  /** Release every request up to and including `context`, in arrival order. */
  advance(context: string): ReadIndexStatus[] {
    const k = this.queue.indexOf(context);
    if (k < 0) return [];
    const released = this.queue.slice(0, k + 1);
    this.queue = this.queue.slice(k + 1);
    const out: ReadIndexStatus[] = [];
    for (const ctx of released) {
      const rs = this.pending.get(ctx);
      if (rs) out.push(rs);
      this.pending.delete(ctx);
    }
    return out;
  }

  lastPendingContext(): string | undefined {
    return this.queue[this.queue.length - 1];
  }

  size(): number {
    return this.queue.length;
  }
}
