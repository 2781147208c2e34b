// The waiter registry of blocking metadata queries: what wakes whom, the
// shared sweep timer, the floor of the change log, bounds.
import { afterEach, describe, expect, it } from 'vitest';
import { ancestorPrefixes, WatchRegistry, type WakeReason } from '../../../server/watch/registry.js';
import { parseWait } from '../../../server/api/routes/watch.js';
import { patternReachesUnder } from '../../../server/rbac/rules.js';

const all = () => true;
let reg: WatchRegistry | null = null;
afterEach(() => reg?.close());

function make(opts: Partial<ConstructorParameters<typeof WatchRegistry>[0]> = {}): WatchRegistry {
  reg = new WatchRegistry({ index: 10, ...opts });
  return reg;
}

describe('WatchRegistry', () => {
  it('lists the ancestor prefixes of a name', () => {
    expect(ancestorPrefixes('a')).toEqual(['']);
    expect(ancestorPrefixes('a/b/c')).toEqual(['', 'a/', 'a/b/']);
  });

  it('wakes exact-name and ancestor-prefix waiters only, and only for names they may see', () => {
    const r = make();
    const woke: string[] = [];
    r.wait({ names: ['app/db'], visible: all, waitMs: 60_000 }, (why) => woke.push(`exact:${why}`));
    r.wait({ prefix: 'app/', visible: all, waitMs: 60_000 }, (why) => woke.push(`app:${why}`));
    r.wait({ prefix: 'other/', visible: all, waitMs: 60_000 }, (why) => woke.push(`other:${why}`));
    r.wait({ prefix: 'app/', visible: (n) => n !== 'app/hidden', waitMs: 60_000 }, (why) => woke.push(`filtered:${why}`));
    r.wait({ prefix: 'ap', visible: all, waitMs: 60_000 }, (why) => woke.push(`partial:${why}`)); // not a segment prefix: never an ancestor
    expect(r.waiting).toBe(5);

    r.publish([{ name: 'app/hidden', index: 11 }]);
    expect(woke.sort()).toEqual(['app:changed']);
    r.publish([{ name: 'app/db', index: 12 }]);
    expect(woke.sort()).toEqual(['app:changed', 'exact:changed', 'filtered:changed']);
    expect(r.waiting).toBe(2);
    expect(r.index).toBe(12);
  });

  it('ignores replayed changes at or below its index', () => {
    const r = make();
    let woke = 0;
    r.wait({ names: ['x'], visible: all, waitMs: 60_000 }, () => woke++);
    r.publish([{ name: 'x', index: 10 }]);
    expect(woke).toBe(0);
    expect(r.index).toBe(10);
  });

  it('answers changedSince from the log above its floor', () => {
    const r = make();
    expect(r.changedSince(9, () => false)).toBe(true); // below the floor: anything may have changed
    expect(r.changedSince(10, all)).toBe(false);
    r.publish([{ name: 'a/x', index: 15 }, { name: 'b/y', index: 17 }]);
    expect(r.changedSince(10, (n) => n.startsWith('a/'))).toBe(true);
    expect(r.changedSince(15, (n) => n.startsWith('a/'))).toBe(false);
    expect(r.changedSince(16, (n) => n === 'b/y')).toBe(true);
    expect(r.changedSince(17, all)).toBe(false);
  });

  it('raises the floor when the log is full, and never lowers the index', () => {
    const r = make({ maxLog: 10 });
    for (let i = 11; i <= 21; i++) r.publish([{ name: `n${i}`, index: i }]);
    expect(r.floor).toBeGreaterThan(10);
    expect(r.changedSince(10, () => false)).toBe(true);
    expect(r.changedSince(21, all)).toBe(false);
    r.reset(5); // a restore at a lower index than seen cannot move it back
    expect(r.index).toBe(21);
    expect(r.floor).toBe(21);
  });

  it('a reset wakes every waiter', () => {
    const r = make();
    const woke: WakeReason[] = [];
    r.wait({ names: ['x'], visible: all, waitMs: 60_000 }, (w) => woke.push(w));
    r.wait({ prefix: '', visible: all, waitMs: 60_000 }, (w) => woke.push(w));
    r.reset(40);
    expect(woke).toEqual(['changed', 'changed']);
    expect(r.index).toBe(40);
    expect(r.changedSince(39, () => false)).toBe(true);
  });

  it('times waiters out from one shared sweep, running only while someone waits', () => {
    let now = 1_000_000;
    const r = make({ now: () => now });
    expect(r.sweeping).toBe(false);
    const woke: string[] = [];
    r.wait({ names: ['a'], visible: all, waitMs: 2_000 }, (w) => woke.push(`a:${w}`));
    r.wait({ names: ['b'], visible: all, waitMs: 5_000 }, (w) => woke.push(`b:${w}`));
    expect(r.sweeping).toBe(true);
    now += 1_000;
    r.sweep();
    expect(woke).toEqual([]);
    now += 1_000;
    r.sweep();
    expect(woke).toEqual(['a:timeout']);
    now += 3_000;
    r.sweep();
    expect(woke).toEqual(['a:timeout', 'b:timeout']);
    expect(r.waiting).toBe(0);
    expect(r.sweeping).toBe(false);
  });

  it('2,000 waiters share one timer and all wake on one change', () => {
    const r = make();
    const before = process.getActiveResourcesInfo().filter((t) => t === 'Timeout').length;
    let woke = 0;
    for (let i = 0; i < 2000; i++) r.wait({ prefix: 'app/', visible: all, waitMs: 60_000 }, () => woke++);
    const during = process.getActiveResourcesInfo().filter((t) => t === 'Timeout').length;
    expect(during - before).toBeLessThanOrEqual(1);
    r.publish([{ name: 'app/x/y', index: 11 }]);
    expect(woke).toBe(2000);
    expect(r.waiting).toBe(0);
    expect(r.sweeping).toBe(false);
  });

  it('cancel removes a waiter; the bound refuses more', () => {
    const r = make({ maxWaiters: 2 });
    const woke: WakeReason[] = [];
    const w1 = r.wait({ names: ['a'], visible: all, waitMs: 60_000 }, (w) => woke.push(w))!;
    r.wait({ names: ['a'], visible: all, waitMs: 60_000 }, (w) => woke.push(w));
    expect(r.wait({ names: ['a'], visible: all, waitMs: 60_000 }, () => {})).toBeNull();
    r.cancel(w1);
    r.cancel(w1);
    expect(woke).toEqual(['closed']);
    expect(r.waiting).toBe(1);
    r.publish([{ name: 'a', index: 11 }]);
    expect(woke).toEqual(['closed', 'changed']);
  });

  it('close answers everyone and refuses new waiters', () => {
    const r = make();
    const woke: WakeReason[] = [];
    r.wait({ names: ['a'], visible: all, waitMs: 60_000 }, (w) => woke.push(w));
    r.close();
    expect(woke).toEqual(['closed']);
    expect(r.wait({ names: ['a'], visible: all, waitMs: 60_000 }, () => {})).toBeNull();
  });
});

describe('watch route helpers', () => {
  it('parses wait durations', () => {
    expect(parseWait('30')).toBe(30_000);
    expect(parseWait('30s')).toBe(30_000);
    expect(parseWait('1500ms')).toBe(1500);
    expect(parseWait('5m')).toBe(300_000);
    expect(parseWait('x')).toBeNaN();
  });

  it('decides whether a rule path reaches below a prefix', () => {
    expect(patternReachesUnder('*', '')).toBe(true);
    expect(patternReachesUnder('app/*', 'app/')).toBe(true);
    expect(patternReachesUnder('app/*', '')).toBe(true);
    expect(patternReachesUnder('app/*', 'app/sub/')).toBe(true);
    expect(patternReachesUnder('app/db', 'app/')).toBe(true);
    expect(patternReachesUnder('app', 'app/')).toBe(false);
    expect(patternReachesUnder('other/*', 'app/')).toBe(false);
    expect(patternReachesUnder('teams/+/db', 'teams/red/')).toBe(true);
    expect(patternReachesUnder('teams/+/db', 'teams/red/db/')).toBe(false);
    expect(patternReachesUnder('svc/+', 'svc/')).toBe(true);
  });
});
