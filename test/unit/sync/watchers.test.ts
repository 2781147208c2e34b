// The per-CofferSecret blocking query loop against a scripted Coffer: it
// queues on a version change only, follows the index (and a reset), backs off
// on errors, reports an error streak and the recovery once each, and stops.
import { describe, expect, it } from 'vitest';
import { VaultError, type VaultApi, type WatchAnswer, type WatchRequest } from '../../../sync/vault/client.js';
import { Watchers } from '../../../sync/watch/watchers.js';

/** Answers each watch call from a script; a call beyond the script waits until aborted. */
function scripted(answers: (WatchAnswer | Error)[]) {
  const calls: WatchRequest[] = [];
  const api: VaultApi = {
    watch: (req) => {
      calls.push(req);
      const next = answers.shift();
      if (next === undefined) {
        return new Promise((_r, reject) => req.signal?.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { name: 'AbortError' }))));
      }
      return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
    },
    read: () => Promise.reject(new Error('not used')),
  };
  return { api, calls };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('Watchers', () => {
  it('queues only when a followed version changes, and waits with the index it was given', async () => {
    const { api, calls } = scripted([
      { index: 11, versions: { a: 1, b: 1 }, missing: [] }, // nothing new (wait ran out)
      { index: 12, versions: { a: 2, b: 1 }, missing: [] }, // a rotated
      { index: 9, versions: { a: 2, b: 1 }, missing: [] }, // another node: index went back, nothing new
    ]);
    const queued: string[] = [];
    const w = new Watchers({ waitMs: 300_000, minBackoffMs: 1, maxBackoffMs: 1, onChange: (k) => queued.push(k) });
    w.ensure('ns/x', { api, address: 'http://a', token: 't', names: ['a', 'b'], versions: { a: 1, b: 1 }, index: 10 });
    for (let i = 0; i < 10 && calls.length < 4; i++) await tick();
    expect(calls.map((c) => c.index)).toEqual([10, 11, 12, 9]);
    expect(calls.every((c) => c.waitMs === 300_000 && c.token === 't')).toBe(true);
    expect(queued).toEqual(['ns/x']);
    expect(w.waitingQueries()).toBe(1);
    expect(w.watchedNames()).toBe(2);
    w.stopAll();
    expect(w.waitingQueries()).toBe(0);
  });

  it('a missing name that appears queues the CofferSecret', async () => {
    const { api } = scripted([{ index: 5, versions: { a: 1 }, missing: [] }]);
    const queued: string[] = [];
    const w = new Watchers({ waitMs: 1000, minBackoffMs: 1, maxBackoffMs: 1, onChange: (k) => queued.push(k) });
    w.ensure('ns/x', { api, address: 'http://a', token: 't', names: ['a'], versions: {}, index: 4 });
    for (let i = 0; i < 10 && queued.length === 0; i++) await tick();
    expect(queued).toEqual(['ns/x']);
    w.stopAll();
  });

  it('reports an error streak once, backs off, restarts from index 0, and reports the recovery', async () => {
    const down = new VaultError('VaultUnavailable', 'unreachable');
    const { api, calls } = scripted([down, down, down, { index: 20, versions: { a: 1 }, missing: [] }]);
    const queued: string[] = [];
    const slept: number[] = [];
    const w = new Watchers({
      waitMs: 1000, minBackoffMs: 100, maxBackoffMs: 250, onChange: (k) => queued.push(k),
      sleep: async (ms) => void slept.push(ms),
    });
    w.ensure('ns/x', { api, address: 'http://a', token: 't', names: ['a'], versions: { a: 1 }, index: 3 });
    for (let i = 0; i < 10 && calls.length < 5; i++) await tick();
    expect(queued).toEqual(['ns/x', 'ns/x']); // first failure, then recovery
    expect(calls.map((c) => c.index)).toEqual([3, 0, 0, 0, 20]);
    // Jittered exponential backoff, capped.
    expect(slept).toHaveLength(3);
    expect(slept[0]).toBeGreaterThanOrEqual(50);
    expect(slept[0]).toBeLessThanOrEqual(100);
    expect(slept[2]).toBeLessThanOrEqual(250);
    w.stopAll();
  });

  it('keeps one query per CofferSecret: the same names only move the baseline, new names restart it', async () => {
    const { api, calls } = scripted([]);
    const w = new Watchers({ waitMs: 1000, minBackoffMs: 1, maxBackoffMs: 1, onChange: () => {} });
    const spec = { api, address: 'http://a', token: 't', names: ['a'], versions: { a: 1 }, index: 3 };
    w.ensure('ns/x', spec);
    w.ensure('ns/x', { ...spec, versions: { a: 2 } });
    await tick();
    expect(calls).toHaveLength(1);
    w.ensure('ns/x', { ...spec, names: ['a', 'b'] });
    await tick();
    expect(calls).toHaveLength(2);
    expect(calls[0]!.signal!.aborted).toBe(true);
    w.ensure('ns/x', { ...spec, token: 'rotated' });
    await tick();
    expect(calls).toHaveLength(3);
    w.stop('ns/x');
    expect(calls[2]!.signal!.aborted).toBe(true);
    expect(w.watchedNames()).toBe(0);
  });
});
