// Lease-based linearizable reads on the leader, without a heartbeat round
// per read. Pure: times come from the caller (the driver's monotonic clock,
// the simulation's per-node clocks).
//
// Why it is safe: a ReadIndex round started at time s and confirmed by a
// quorum means every voter of that quorum received a heartbeat of this
// leader after s and reset its election timer then. With checkQuorum, a
// voter refuses (pre-)votes until it has counted electionTick ticks since it
// last heard the leader (raft.ts, inLease), and, with Config.leaseReads, for
// electionTick ticks after it starts, so a crash cannot cut that short.
// Ticks come from a timer that never fires early or in bursts, so those
// ticks span more than (E-1) tick intervals of the voter's clock. Any new
// leader needs a vote from that quorum (single-step membership changes keep
// quorums intersecting), so none can exist before s + (E-1)*tick/(1+rho) on
// a clock that runs at most 1+rho times as fast as the voter's. Until then
// this leader's commit index covers every acknowledged write, and a read
// served at it is linearizable.
//
// What ends a lease early: another term or role (the term check), a
// membership change applied on the leader (rounds before it were counted in
// the old configuration), and a TimeoutNow sent (a transfer's forced
// campaign ignores leases): after either, only rounds started later count.

/** Bound on how much faster one node's clock may run than another's (10 %: far beyond real clock drift). */
export const CLOCK_RATE_BOUND = 0.1;

/** How long a confirmed round vouches for this node's leadership, in the clock's units. */
export function leaseDuration(electionTicks: number, tickMs: number, rho = CLOCK_RATE_BOUND): number {
  return ((electionTicks - 1) * tickMs) / (1 + rho);
}

export class ReadLease {
  private readonly rounds = new Map<string, { term: number; startedAt: number }>();
  private lease: { term: number; from: number } | null = null;
  /** Rounds started before this time do not count (a membership change or a transfer happened). */
  private notBefore = -Infinity;

  constructor(readonly duration: number) {}

  /** A ReadIndex round `context` is about to be asked for while this node leads in `term`. Call before readIndex(). */
  started(context: string, term: number, now: number): void {
    this.rounds.set(context, { term, startedAt: now });
  }

  /** The core released the round: a quorum confirmed this node led when it started. */
  confirmed(context: string): void {
    const r = this.rounds.get(context);
    if (!r) return;
    this.rounds.delete(context);
    if (r.startedAt < this.notBefore) return;
    if (this.lease === null || r.term > this.lease.term || (r.term === this.lease.term && r.startedAt > this.lease.from)) {
      this.lease = { term: r.term, from: r.startedAt };
    }
  }

  /** The round will not be confirmed (retried under another context, or failed). */
  abandoned(context: string): void {
    this.rounds.delete(context);
  }

  /** A membership change applied or a TimeoutNow sent: the lease and the rounds in flight no longer vouch. */
  revoke(now: number): void {
    this.lease = null;
    this.notBefore = now;
    this.rounds.clear();
  }

  /** Whether a read at `now` may be served at the commit index, by a node that leads in `term`. */
  valid(now: number, term: number): boolean {
    return this.lease !== null && this.lease.term === term && now - this.lease.from < this.duration;
  }

  /** Time left on a valid lease (0 when none). */
  remaining(now: number, term: number): number {
    return this.valid(now, term) ? this.duration - (now - this.lease!.from) : 0;
  }
}
