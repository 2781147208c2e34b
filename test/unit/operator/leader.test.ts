import { describe, expect, it } from 'vitest';
import { LeaderElector, type LeaderElectionRecord, type LeaseLock, type LockedRecord } from '../../../operator/leader/election.js';
import { FakeClock } from './fake-clock.js';

/** An in-memory Lease with resourceVersion checks, like the API server. */
class MemoryLease {
  record: LeaderElectionRecord | null = null;
  version = 0;
  down = false;
  lock(): LeaseLock {
    return {
      describe: () => 'memory',
      get: async (): Promise<LockedRecord | null> => {
        if (this.down) throw new Error('unavailable');
        return this.record ? { record: { ...this.record }, version: String(this.version) } : null;
      },
      create: async (r) => {
        if (this.down) throw new Error('unavailable');
        if (this.record) throw Object.assign(new Error('exists'), { code: 409 });
        this.record = { ...r };
        this.version++;
      },
      update: async (r, v) => {
        if (this.down) throw new Error('unavailable');
        if (String(this.version) !== v) throw Object.assign(new Error('conflict'), { code: 409 });
        this.record = { ...r };
        this.version++;
      },
    };
  }
}

function elector(lease: MemoryLease, clock: FakeClock, identity: string, log: string[], lock: LeaseLock = lease.lock()) {
  return new LeaderElector({
    lock,
    identity,
    clock,
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 5_000,
    onStartedLeading: () => void log.push(`${identity} started`),
    onStoppedLeading: () => void log.push(`${identity} stopped`),
  });
}

describe('leader election', () => {
  it('exactly one of two candidates leads; the other takes over after the leader stops renewing', async () => {
    const clock = new FakeClock();
    const lease = new MemoryLease();
    const log: string[] = [];
    let aDown = false;
    const inner = lease.lock();
    const guarded = <T extends unknown[], R>(f: (...args: T) => Promise<R>) => async (...args: T) => {
      if (aDown) throw new Error('a cannot reach the API server');
      return f(...args);
    };
    const aLock: LeaseLock = { describe: inner.describe, get: guarded(inner.get), create: guarded(inner.create), update: guarded(inner.update) };
    const a = elector(lease, clock, 'a', log, aLock);
    const b = elector(lease, clock, 'b', log);
    a.start();
    await clock.advance(0);
    b.start();
    await clock.advance(0);
    expect(log).toEqual(['a started']);
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false]);
    await clock.advance(60_000);
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false]);
    expect(lease.record?.holderIdentity).toBe('a');

    // a loses API access: it stops leading at its renew deadline (10 s),
    // before the lease (15 s) can expire for b.
    aDown = true;
    await clock.advance(10_000);
    expect(a.isLeader()).toBe(false);
    expect(log).toContain('a stopped');
    expect(b.isLeader()).toBe(false);
    // b takes over once it has not seen the record change for the lease duration.
    await clock.advance(10_000);
    expect(b.isLeader()).toBe(true);
    aDown = false;
    expect(lease.record?.holderIdentity).toBe('b');
    expect(lease.record?.leaseTransitions).toBe(1);
    // a sees b holding it and stays a follower.
    await clock.advance(30_000);
    expect(a.isLeader()).toBe(false);
    await a.stop();
    await b.stop();
  });

  it('a leader that sees another holder stops at once', async () => {
    const clock = new FakeClock();
    const lease = new MemoryLease();
    const log: string[] = [];
    const a = elector(lease, clock, 'a', log);
    a.start();
    await clock.advance(0);
    expect(a.isLeader()).toBe(true);
    lease.record = { ...lease.record!, holderIdentity: 'intruder', renewTime: clock.now() };
    lease.version++;
    await clock.advance(5_000);
    expect(a.isLeader()).toBe(false);
    expect(log).toEqual(['a started', 'a stopped']);
    await a.stop();
  });

  it('stop() releases the lease so a standby acquires it at its next retry', async () => {
    const clock = new FakeClock();
    const lease = new MemoryLease();
    const log: string[] = [];
    const a = elector(lease, clock, 'a', log);
    const b = elector(lease, clock, 'b', log);
    a.start();
    await clock.advance(0);
    b.start();
    await clock.advance(1_000);
    expect(b.isLeader()).toBe(false);
    await a.stop();
    expect(lease.record?.holderIdentity).toBe('');
    await clock.advance(5_000);
    expect(b.isLeader()).toBe(true);
    expect(log).toEqual(['a started', 'a stopped', 'b started']);
    await b.stop();
  });

  it('isLeader() lapses on its own when renewals stall', async () => {
    const clock = new FakeClock();
    const lease = new MemoryLease();
    const a = elector(lease, clock, 'a', []);
    expect(await a.tryAcquireOrRenew()).toBe('ok');
    // Not started: nothing renews. (isLeader needs the loop's bookkeeping; start then stall.)
    a.start();
    await clock.advance(0);
    expect(a.isLeader()).toBe(true);
    lease.down = true;
    await clock.advance(9_999);
    expect(a.isLeader()).toBe(true);
    await clock.advance(1);
    expect(a.isLeader()).toBe(false);
    await a.stop();
  });
});
