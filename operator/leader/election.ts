// Lease-based leader election (coordination.k8s.io/v1 Lease), the algorithm
// of client-go's leaderelection in a small, clock-injected form:
//
// - a candidate acquires the Lease when it does not exist, when nobody holds
//   it (holderIdentity empty), or when the holder has not renewed it for
//   leaseDuration as measured on the candidate's own clock since it last saw
//   the record change (no cross-node clock comparison);
// - the leader renews every retryPeriod; if it cannot renew for renewDeadline
//   (< leaseDuration), or it sees someone else holding the Lease, it stops
//   leading at once (onStoppedLeading) before anybody else may take over;
// - updates are optimistic (resourceVersion): two candidates never both win;
// - stop() releases a held Lease (holder emptied) so a standby takes over
//   without waiting for the lease to expire.
import { realClock, type Clock } from '../reconcile/clock.js';
import { silentLogger, type Logger } from '../reconcile/logger.js';

export interface LeaderElectionRecord {
  /** '' or null when released. */
  holderIdentity: string | null;
  leaseDurationSeconds: number;
  acquireTime: number | null;
  renewTime: number | null;
  leaseTransitions: number;
}

export interface LockedRecord {
  record: LeaderElectionRecord;
  /** resourceVersion for optimistic concurrency. */
  version: string;
}

/** Storage of the record (a Lease object); conflicts and errors are thrown. */
export interface LeaseLock {
  get(): Promise<LockedRecord | null>;
  create(record: LeaderElectionRecord): Promise<void>;
  update(record: LeaderElectionRecord, version: string): Promise<void>;
  describe(): string;
}

export interface LeaderElectorOptions {
  lock: LeaseLock;
  identity: string;
  /** Default 15 s. */
  leaseDurationMs?: number;
  /** Default 10 s; must be < leaseDurationMs. */
  renewDeadlineMs?: number;
  /** Default 5 s (the renew interval). */
  retryPeriodMs?: number;
  clock?: Clock;
  logger?: Logger;
  onStartedLeading: () => void | Promise<void>;
  onStoppedLeading: () => void | Promise<void>;
  onNewLeader?: (identity: string) => void;
}

export class LeaderElector {
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private leading = false;
  private lastRenewAt = 0;
  private observed: { record: LeaderElectionRecord; at: number } | null = null;
  private stopped = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private reportedLeader: string | null = null;

  constructor(private readonly opts: LeaderElectorOptions) {
    this.clock = opts.clock ?? realClock;
    this.log = opts.logger ?? silentLogger;
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 5_000;
    if (this.renewDeadlineMs >= this.leaseDurationMs) throw new Error('renewDeadline must be shorter than leaseDuration');
  }

  /**
   * True while this replica holds an unexpired Lease. Checked before every
   * write: even if the renew loop is starved, leadership lapses on its own
   * renewDeadline after the last successful renewal.
   */
  isLeader(): boolean {
    return this.leading && this.clock.now() - this.lastRenewAt < this.renewDeadlineMs;
  }

  /** Starts campaigning in the background. */
  start(): void {
    if (this.loop) return;
    this.stopped = false;
    this.loop = this.run().catch((err: unknown) => this.log.error({ err: String(err) }, 'leader election loop failed'));
  }

  /** Stops campaigning; releases the Lease if held (onStoppedLeading runs first). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
    this.loop = null;
    if (this.leading) {
      await this.lose('shutting down');
      await this.release();
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const result = await this.tryAcquireOrRenew();
      if (this.stopped) break;
      const now = this.clock.now();
      if (result === 'ok') {
        this.lastRenewAt = now;
        if (!this.leading) {
          this.leading = true;
          this.log.info({ identity: this.opts.identity, lease: this.opts.lock.describe() }, 'became leader');
          this.reportLeader(this.opts.identity);
          await this.opts.onStartedLeading();
        }
      } else if (this.leading) {
        if (result === 'held') await this.lose('another replica holds the lease');
        else if (now - this.lastRenewAt >= this.renewDeadlineMs) await this.lose('could not renew the lease within the renew deadline');
      }
      await this.sleep(this.retryPeriodMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = this.clock.setTimer(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        t.cancel();
        this.wake = null;
        resolve();
      };
    });
  }

  private async lose(why: string): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    this.log.warn({ identity: this.opts.identity, why }, 'stopped leading');
    await this.opts.onStoppedLeading();
  }

  private reportLeader(id: string): void {
    if (id && id !== this.reportedLeader) {
      this.reportedLeader = id;
      this.opts.onNewLeader?.(id);
    }
  }

  /** One attempt: 'ok' (we hold it now), 'held' (someone else validly holds it) or 'error'. */
  async tryAcquireOrRenew(): Promise<'ok' | 'held' | 'error'> {
    const now = this.clock.now();
    const me = this.opts.identity;
    const fresh: LeaderElectionRecord = {
      holderIdentity: me,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      acquireTime: now,
      renewTime: now,
      leaseTransitions: 0,
    };
    let current: LockedRecord | null;
    try {
      current = await this.opts.lock.get();
    } catch (err) {
      this.log.warn({ err: String(err) }, 'cannot read the leader election lease');
      return 'error';
    }
    if (!current) {
      try {
        await this.opts.lock.create(fresh);
        this.observed = { record: fresh, at: now };
        return 'ok';
      } catch (err) {
        this.log.debug({ err: String(err) }, 'lost the race to create the lease');
        return 'error';
      }
    }
    const rec = current.record;
    if (!this.observed || !sameRecord(this.observed.record, rec)) this.observed = { record: rec, at: now };
    const holder = rec.holderIdentity ?? '';
    if (holder !== '' && holder !== me) {
      this.reportLeader(holder);
      const expiresAt = this.observed.at + rec.leaseDurationSeconds * 1000;
      if (expiresAt > now) return 'held';
    }
    const next: LeaderElectionRecord =
      holder === me
        ? { ...rec, holderIdentity: me, leaseDurationSeconds: fresh.leaseDurationSeconds, renewTime: now }
        : { ...fresh, leaseTransitions: rec.leaseTransitions + 1 };
    try {
      await this.opts.lock.update(next, current.version);
      this.observed = { record: next, at: now };
      return 'ok';
    } catch (err) {
      this.log.debug({ err: String(err) }, 'lease update conflicted');
      return 'error';
    }
  }

  /** Empties the holder so a standby acquires at once. */
  private async release(): Promise<void> {
    try {
      const current = await this.opts.lock.get();
      if (!current || current.record.holderIdentity !== this.opts.identity) return;
      await this.opts.lock.update(
        { ...current.record, holderIdentity: '', leaseDurationSeconds: 1, renewTime: this.clock.now() },
        current.version,
      );
      this.log.info({ identity: this.opts.identity }, 'released the leader election lease');
    } catch (err) {
      this.log.warn({ err: String(err) }, 'could not release the lease');
    }
  }
}

function sameRecord(a: LeaderElectionRecord, b: LeaderElectionRecord): boolean {
  return (
    a.holderIdentity === b.holderIdentity &&
    a.renewTime === b.renewTime &&
    a.acquireTime === b.acquireTime &&
    a.leaseTransitions === b.leaseTransitions &&
    a.leaseDurationSeconds === b.leaseDurationSeconds
  );
}
