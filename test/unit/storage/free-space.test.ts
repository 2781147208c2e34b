// The free-space floor (VAULT_MIN_FREE_BYTES): measured at most once per
// interval however many writes ask, refused with InsufficientStorageError
// below it, and writes resume by themselves once space is back.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FreeSpaceWatcher, type VolumeStats } from '../../../server/storage/free-space.js';
import { InsufficientStorageError, isNoSpace, WriteGuard } from '../../../server/storage/write-guard.js';
import { tempDir } from '../../helpers/node.js';

const MiB = 1024 * 1024;

/** A volume whose free space the test sets, counting statfs calls, on a clock the test moves. */
function fakeVolume(freeBytes: number) {
  const v = { free: freeBytes, calls: 0, now: 1_000, fail: false };
  const statfs = (): VolumeStats => {
    v.calls++;
    if (v.fail) throw Object.assign(new Error('EIO'), { code: 'EIO' });
    return { bavail: Math.floor(v.free / 4096), bsize: 4096 };
  };
  return { v, statfs, now: () => v.now };
}

describe('FreeSpaceWatcher', () => {
  it('measures the real data volume with statfs', () => {
    const dir = tempDir();
    const w = new FreeSpaceWatcher({ dir, minFreeBytes: 0 });
    const s = fs.statfsSync(dir);
    // Another process may write meanwhile: compare within a few MiB.
    expect(Math.abs(w.available() - s.bavail * s.bsize)).toBeLessThan(64 * MiB);
    expect(w.belowFloor()).toBe(false); // 0 turns the floor off
    expect(new FreeSpaceWatcher({ dir, minFreeBytes: Number.MAX_SAFE_INTEGER }).belowFloor()).toBe(true);
  });

  it('takes at most one reading per interval, however many writes ask', () => {
    const { v, statfs, now } = fakeVolume(100 * MiB);
    const w = new FreeSpaceWatcher({ dir: '/unused', minFreeBytes: 64 * MiB, maxAgeMs: 250, statfs, now });
    for (let i = 0; i < 10_000; i++) expect(w.belowFloor()).toBe(false);
    expect(v.calls).toBe(1);
    v.free = 10 * MiB; // the volume fills up: still the cached reading until it is 250 ms old
    v.now += 249;
    expect(w.belowFloor()).toBe(false);
    expect(v.calls).toBe(1);
    v.now += 1;
    expect(w.belowFloor()).toBe(true);
    expect(w.available()).toBe(10 * MiB);
    expect(v.calls).toBe(2);
  });

  it('re-measures at once after a write found the volume full', () => {
    const { v, statfs, now } = fakeVolume(100 * MiB);
    const w = new FreeSpaceWatcher({ dir: '/unused', minFreeBytes: 64 * MiB, statfs, now });
    expect(w.belowFloor()).toBe(false);
    v.free = 0;
    w.invalidate();
    expect(w.belowFloor()).toBe(true);
    expect(v.calls).toBe(2);
  });

  it('keeps the last reading when the volume cannot be measured, and refuses nothing because of it', () => {
    const { v, statfs, now } = fakeVolume(10 * MiB);
    const fresh = new FreeSpaceWatcher({ dir: '/unused', minFreeBytes: 64 * MiB, statfs, now });
    v.fail = true;
    expect(fresh.belowFloor()).toBe(false); // never measured: unknown is not "full"
    v.fail = false;
    v.now += 1_000;
    expect(fresh.belowFloor()).toBe(true);
    v.fail = true;
    v.now += 1_000;
    expect(fresh.belowFloor()).toBe(true); // the last good reading stands
  });
});

describe('WriteGuard', () => {
  it('refuses below the floor, counts it, and lets writes through again once space is back', () => {
    const { v, statfs, now } = fakeVolume(100 * MiB);
    const refused: string[] = [];
    const g = new WriteGuard(new FreeSpaceWatcher({ dir: '/unused', minFreeBytes: 64 * MiB, statfs, now }), { onRefused: (r) => refused.push(r) });
    expect(() => g.check()).not.toThrow();
    v.free = 63 * MiB;
    v.now += 250;
    expect(() => g.check()).toThrow(InsufficientStorageError);
    expect(() => g.check()).toThrow(/less than 64 MiB free on the data volume/);
    expect(refused).toEqual(['below_floor', 'below_floor']);
    expect(g.problem()).toBeNull(); // under the floor the node still serves reads: it stays ready
    v.free = 65 * MiB;
    v.now += 250;
    expect(() => g.check()).not.toThrow();
  });

  it('refuses while a storage write waits for space, even with the floor off, until it resumed', () => {
    const { v, statfs, now } = fakeVolume(0);
    const refused: string[] = [];
    const g = new WriteGuard(new FreeSpaceWatcher({ dir: '/unused', minFreeBytes: 0, statfs, now }), { onRefused: (r) => refused.push(r) });
    expect(() => g.check()).not.toThrow(); // floor off: an empty volume alone refuses nothing
    g.waitForSpace('raft', 'appending to the raft log');
    g.waitForSpace('audit', 'writing audit records');
    expect(g.stalled()).toBe(true);
    expect(g.problem()).toBe('data volume full: appending to the raft log; writing audit records waits for space');
    expect(() => g.check()).toThrow(/the data volume is full/);
    g.resumed('raft');
    expect(() => g.check()).toThrow(InsufficientStorageError);
    g.resumed('audit');
    expect(() => g.check()).not.toThrow();
    expect(g.problem()).toBeNull();
    expect(refused).toEqual(['volume_full', 'volume_full']);
    expect(v.calls).toBe(0); // with the floor off the volume is never measured on the write path
  });

  it('tells a full volume from other storage errors', () => {
    expect(isNoSpace(Object.assign(new Error('x'), { code: 'ENOSPC' }))).toBe(true);
    expect(isNoSpace(Object.assign(new Error('x'), { code: 'EDQUOT' }))).toBe(true);
    expect(isNoSpace(Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }))).toBe(true);
    expect(isNoSpace(Object.assign(new Error('x'), { code: 'EIO' }))).toBe(false);
    expect(isNoSpace(Object.assign(new Error('x'), { code: 'SQLITE_IOERR_WRITE' }))).toBe(false);
    expect(isNoSpace(new Error('no code'))).toBe(false);
    expect(isNoSpace(null)).toBe(false);
  });
});
