import { describe, expect, it } from 'vitest';
import { FakeClock, flushMicrotasks } from './fake-clock.js';
import { WorkerPool } from '../../../operator/reconcile/controller.js';
import { every, WorkQueue } from '../../../operator/reconcile/queue.js';
import { NotLeaderError } from '../../../operator/reconcile/pass.js';

describe('WorkQueue', () => {
  it('deduplicates queued keys and keeps order', async () => {
    const q = new WorkQueue({ clock: new FakeClock() });
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.len()).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
  });

  it('never hands one key to two workers; a key added while processing comes back after done()', async () => {
    const q = new WorkQueue({ clock: new FakeClock() });
    q.add('a');
    const k = await q.get();
    q.add('a');
    q.add('a');
    expect(q.len()).toBe(0);
    q.done(k!);
    expect(q.len()).toBe(1);
    expect(await q.get()).toBe('a');
  });

  it('backs off exponentially per key, capped, and forget() resets', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock, baseDelayMs: 100, maxDelayMs: 1_000 });
    expect([1, 2, 3, 4, 5, 6].map(() => q.addRateLimited('a'))).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect(q.numRequeues('a')).toBe(6);
    q.forget('a');
    expect(q.addRateLimited('a')).toBe(100);
  });

  it('addAfter queues later; the earliest of several delays wins', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock });
    q.addAfter('a', 1_000);
    q.addAfter('a', 5_000);
    q.addAfter('a', 300);
    await clock.advance(299);
    expect(q.len()).toBe(0);
    await clock.advance(1);
    expect(q.len()).toBe(1);
    await clock.advance(10_000);
    expect(q.len()).toBe(1);
  });

  it('get() waits for work and resolves undefined on shutdown', async () => {
    const q = new WorkQueue({ clock: new FakeClock() });
    const waiting = q.get();
    q.add('x');
    expect(await waiting).toBe('x');
    const idle = q.get();
    q.shutDown();
    expect(await idle).toBeUndefined();
    q.add('y');
    expect(await q.get()).toBeUndefined();
  });

  it('resyncs periodically', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock });
    const keys = ['ns/a', 'ns/b'];
    const r = every(clock, 60_000, () => keys.forEach((k) => q.add(k)));
    await clock.advance(59_999);
    expect(q.len()).toBe(0);
    await clock.advance(1);
    expect(q.len()).toBe(2);
    q.done((await q.get())!);
    q.done((await q.get())!);
    await clock.advance(60_000);
    expect(q.len()).toBe(2);
    r.stop();
    expect(clock.pending()).toBe(0);
  });
});

describe('WorkerPool', () => {
  it('retries failures with backoff, requeues on request, and forgets after success', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock, baseDelayMs: 1_000 });
    const calls: number[] = [];
    let fail = 2;
    const pool = new WorkerPool(q, {
      async reconcile() {
        calls.push(clock.now());
        if (fail-- > 0) throw new Error('boom');
        return calls.length === 3 ? { outcome: 'reconciled', requeueAfterMs: 5_000 } : { outcome: 'reconciled' };
      },
    });
    pool.start(2);
    const t0 = clock.now();
    q.add('ns/a');
    await flushMicrotasks();
    await clock.advance(1_000); // first retry after 1 s
    await clock.advance(2_000); // second after 2 s more
    await clock.advance(5_000); // requeueAfter
    expect(calls.map((t) => t - t0)).toEqual([0, 1_000, 3_000, 8_000]);
    expect(q.numRequeues('ns/a')).toBe(0);
    q.shutDown();
    await pool.drain();
  });

  it('does not retry when leadership is lost', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock });
    let n = 0;
    const pool = new WorkerPool(q, {
      async reconcile() {
        n++;
        throw new NotLeaderError();
      },
    });
    pool.start(1);
    q.add('ns/a');
    await clock.advance(600_000);
    expect(n).toBe(1);
    q.shutDown();
    await pool.drain();
  });
});
