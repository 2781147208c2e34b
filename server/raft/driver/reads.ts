// Linearizable reads (ReadIndex): reads that arrive together share one round.
// The core confirms with a quorum of heartbeats that this node's leader still
// leads and names the commit index of that moment; the reads are answered
// once this node has applied up to it.
import { randomUUID } from 'node:crypto';
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

export class ReadBarrier {
  private queue: ReadWaiter[] = [];
  private round: { context: string; batch: ReadWaiter[]; timer: NodeJS.Timeout } | null = null;

  constructor(
    private readonly ctx: DriverContext,
    private readonly applied: AppliedIndex,
  ) {}

  /** Resolves once local state reflects every write acknowledged before the call. */
  wait(): Promise<void> {
    this.ctx.throwIfStopped();
    // A lone voter that leads is the whole quorum: its ReadIndex is its commit index, already applied
    // (the core answers the same without a round trip). Skipping the Ready loop keeps single-node reads cheap.
    const st = this.ctx.node.basicStatus();
    if (st.role === 'leader' && st.confState.voters.length === 1 && this.applied.index >= st.commit) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.queue.push({ resolve, reject, deadline: Date.now() + READ_TIMEOUT_MS });
      this.startRound();
    });
  }

  /** The core released the round `context` at `index` (a Ready's readStates). */
  release(context: string, index: number): void {
    const round = this.round;
    if (!round || round.context !== context) return;
    clearTimeout(round.timer);
    this.round = null;
    void this.applied.wait(index).then(() => round.batch.forEach((w) => w.resolve()));
    this.startRound();
  }

  /** The leader is gone: the round in flight will not be answered. */
  leaderLost(): void {
    if (this.round) this.failRound(new NoLeaderError('leader lost'));
  }

  failAll(err: Error): void {
    this.queue.splice(0).forEach((w) => w.reject(err));
    this.failRound(err);
  }

  private startRound(): void {
    if (this.round || this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    const context = randomUUID();
    if (!this.ctx.node.readIndex(context)) {
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
    round.batch.forEach((w) => w.reject(err));
    this.startRound();
  }
}
