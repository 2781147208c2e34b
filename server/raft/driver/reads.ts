// Linearizable reads (ReadIndex): reads that arrive together share one round.
// The core confirms with a quorum of heartbeats that this node's leader still
// leads and names the commit index of that moment; the reads are answered
// once this node has applied up to it. On the leader, a confirmed round
// also starts a read lease (../lease.ts): until it runs out, a read is
// answered at the commit index without a round, and a round no read waits
// for renews the lease before it ends.
import { randomUUID } from 'node:crypto';
import type { ReadLease } from '../lease.js';
import { NoLeaderError } from '../replicator.js';
import type { AppliedIndex } from './applied.js';
import { waitForLeader, type DriverContext } from './context.js';

interface ReadWaiter {
  resolve: () => void;
  reject: (e: Error) => void;
  deadline: number;
}

const READ_TIMEOUT_MS = 5_000;
/** A ReadIndex request or its heartbeat round can be lost like any message: ask again after this long. */
const READ_RETRY_MS = 1_000;

export interface LeaseReads {
  lease: ReadLease;
  /** A monotonic clock in ms (it must keep running while the process is stalled). */
  now: () => number;
  /** Every voter refuses votes after a restart (advertises LEASE_VOTES): without that, no lease is safe. */
  allowed: () => boolean;
}

/** How a linearizable read on a cluster of several voters was confirmed. */
export type ReadPath = 'lease' | 'round';

export class ReadBarrier {
  private queue: ReadWaiter[] = [];
  private round: { context: string; batch: ReadWaiter[]; timer: NodeJS.Timeout } | null = null;
  constructor(
    private readonly ctx: DriverContext,
    private readonly applied: AppliedIndex,
    private readonly leasing: LeaseReads | null = null,
    private readonly onRead: (path: ReadPath) => void = () => {},
  ) {}

  /** Resolves once local state reflects every write acknowledged before the call. */
  wait(): Promise<void> {
    this.ctx.throwIfStopped();
    // A lone voter that leads is the whole quorum: its ReadIndex is its commit index, already applied
    // (the core answers the same without a round trip). Skipping the Ready loop keeps single-node reads cheap.
    const st = this.ctx.node.basicStatus();
    if (st.role === 'leader' && st.confState.voters.length === 1 && this.applied.index >= st.commit) return Promise.resolve();
    if (this.leasing && st.role === 'leader') {
      const now = this.leasing.now();
      const { lease } = this.leasing;
      if (lease.valid(now, st.term) && this.leasing.allowed()) {
        this.onRead('lease');
        if (lease.remaining(now, st.term) < lease.duration / 2) this.startRound(true);
        return this.applied.wait(st.commit);
      }
    }
    this.onRead('round');
    return new Promise((resolve, reject) => {
      this.queue.push({ resolve, reject, deadline: Date.now() + READ_TIMEOUT_MS });
      this.startRound();
    });
  }

  /** The core released the round `context` at `index` (a Ready's readStates). */
  release(context: string, index: number): void {
    this.leasing?.lease.confirmed(context);
    const round = this.round;
    if (!round || round.context !== context) return;
    clearTimeout(round.timer);
    this.round = null;
    if (round.batch.length > 0) void this.applied.wait(index).then(() => round.batch.forEach((w) => w.resolve()));
    this.startRound();
  }

  /** A membership change applied here, or this leader sent TimeoutNow: no read is answered from the lease until a later round. */
  revokeLease(): void {
    if (this.leasing) this.leasing.lease.revoke(this.leasing.now());
  }

  /** The leader is gone: the round in flight will not be answered. */
  leaderLost(): void {
    if (this.round) this.failRound(new NoLeaderError('leader lost'));
  }

  failAll(err: Error): void {
    this.queue.splice(0).forEach((w) => w.reject(err));
    this.failRound(err);
  }

  /** Starts a round for the reads queued, or (`renewal`) one no read waits for, to renew the lease. */
  private startRound(renewal = false): void {
    if (this.round || (this.queue.length === 0 && !renewal)) return;
    const batch = this.queue;
    this.queue = [];
    const context = randomUUID();
    const st = this.ctx.node.basicStatus();
    // Started before readIndex(): the round's heartbeats leave after this moment.
    if (this.leasing && st.role === 'leader') this.leasing.lease.started(context, st.term, this.leasing.now());
    if (!this.ctx.node.readIndex(context)) {
      this.leasing?.lease.abandoned(context);
      if (batch.length === 0) return;
      // No leader known yet: give the election a moment before refusing.
      void waitForLeader(this.ctx)
        .then(() => {
          this.queue.unshift(...batch);
          this.startRound();
        })
        .catch((err: Error) => batch.forEach((w) => w.reject(err)));
      return;
    }
    const timer = setTimeout(() => this.retryRound(context), READ_RETRY_MS);
    this.round = { context, batch, timer };
    this.ctx.schedule();
  }

  /** The round went unanswered: re-ask with a fresh context (still a point after every read began), or give up at the deadline. */
  private retryRound(context: string): void {
    const round = this.round;
    if (!round || round.context !== context) return;
    this.round = null;
    this.leasing?.lease.abandoned(context);
    const now = Date.now();
    const expired = round.batch.filter((w) => w.deadline <= now);
    expired.forEach((w) => w.reject(new NoLeaderError('read barrier timed out')));
    this.queue.unshift(...round.batch.filter((w) => w.deadline > now));
    this.startRound();
  }

  private failRound(err: Error): void {
    const round = this.round;
    if (!round) return;
    clearTimeout(round.timer);
    this.round = null;
    this.leasing?.lease.abandoned(round.context);
    round.batch.forEach((w) => w.reject(err));
    this.startRound();
  }
}
