// The linearizability checker used by the chaos test, proven on histories
// whose verdict is known, including ones that must be rejected.
import { describe, expect, it } from 'vitest';
import { checkLinearizable, type Op } from '../helpers/linearizability.js';

const w = (value: string, call: number, ret: number | undefined, key = 'k'): Op => ({ key, kind: 'write', value, call, ret });
const r = (value: string | null, call: number, ret: number | undefined, key = 'k'): Op => ({ key, kind: 'read', value, call, ret });

describe('linearizability checker: histories that are linearizable', () => {
  it('accepts an empty history and a read of an absent key', () => {
    expect(checkLinearizable([]).ok).toBe(true);
    expect(checkLinearizable([r(null, 0, 1)]).ok).toBe(true);
  });

  it('accepts a sequential history', () => {
    expect(checkLinearizable([r(null, 0, 1), w('a', 2, 3), r('a', 4, 5), w('b', 6, 7), r('b', 8, 9), r('b', 10, 11)]).ok).toBe(true);
  });

  it('accepts overlapping writes read in either order', () => {
    // a and b overlap, so either may be linearized last.
    const base = [w('a', 0, 10), w('b', 1, 9)];
    expect(checkLinearizable([...base, r('a', 11, 12)]).ok).toBe(true);
    expect(checkLinearizable([...base, r('b', 11, 12)]).ok).toBe(true);
    // Reads during the writes may see the old value, then either new one.
    expect(checkLinearizable([...base, r(null, 2, 3), r('b', 4, 5), r('a', 6, 7), r('a', 11, 12)]).ok).toBe(true);
  });

  it('accepts a read concurrent with a write seeing either value', () => {
    expect(checkLinearizable([w('a', 0, 1), w('b', 2, 6), r('a', 3, 4)]).ok).toBe(true);
    expect(checkLinearizable([w('a', 0, 1), w('b', 2, 6), r('b', 3, 4)]).ok).toBe(true);
  });

  it('accepts an indeterminate write that took effect, even long after its call', () => {
    expect(checkLinearizable([w('a', 0, 1), w('x', 2, undefined), r('a', 3, 4), r('x', 50, 51), r('x', 60, 61)]).ok).toBe(true);
  });

  it('accepts an indeterminate write that never took effect', () => {
    expect(checkLinearizable([w('a', 0, 1), w('x', 2, undefined), r('a', 3, 4), r('a', 50, 51)]).ok).toBe(true);
    // Also when its value is read elsewhere in the history it is still free to land late.
    expect(checkLinearizable([w('a', 0, 1), w('x', 2, undefined), r('a', 30, 31), r('x', 50, 51)]).ok).toBe(true);
  });

  it('ignores reads without a response', () => {
    expect(checkLinearizable([w('a', 0, 1), r('zzz', 2, undefined), r('a', 3, 4)]).ok).toBe(true);
  });

  it('checks keys independently', () => {
    expect(checkLinearizable([w('a', 0, 1, 'k1'), w('b', 0, 1, 'k2'), r('b', 2, 3, 'k2'), r('a', 2, 3, 'k1')]).ok).toBe(true);
  });

  it('finds the one valid order among many concurrent writes and reads', () => {
    // 12 writes all overlapping, then reads that pin down a specific order of the last few.
    const ops: Op[] = [];
    for (let i = 0; i < 12; i++) ops.push(w(`v${i}`, i, 100 + i));
    ops.push(r('v3', 20, 21), r('v7', 30, 31), r('v1', 40, 41), r('v11', 200, 201));
    expect(checkLinearizable(ops).ok).toBe(true);
  });

  it('handles a few thousand ops over several keys quickly', () => {
    // A simulated linearizable register store with concurrent clients and random delays.
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const state = new Map<string, string | null>();
    const ops: Op[] = [];
    let t = 0;
    for (let i = 0; i < 4000; i++) {
      const key = `k${Math.floor(rand() * 12)}`;
      const call = t + rand() * 5;
      const at = call + rand() * 5; // the linearization point
      const ret = at + rand() * 5;
      t += 0.7; // lots of overlap
      ops.push({ key, kind: rand() < 0.5 ? 'write' : 'read', value: null, call, ret: rand() < 0.03 ? undefined : ret, meta: String(at) });
    }
    // Apply in linearization-point order to produce read results.
    for (const [i, op] of [...ops.entries()].sort((a, b) => Number(a[1].meta) - Number(b[1].meta))) {
      if (op.kind === 'write') {
        op.value = `w${i}`;
        if (op.ret !== undefined || rand() < 0.5) state.set(op.key, op.value); // indeterminate: maybe applied
      } else op.value = state.get(op.key) ?? null;
    }
    const started = Date.now();
    expect(checkLinearizable(ops)).toEqual({ ok: true });
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('linearizability checker: histories that are not linearizable', () => {
  it('rejects a stale read after a completed write', () => {
    const res = checkLinearizable([w('a', 0, 1), w('b', 2, 3), r('a', 4, 5)]);
    expect(res.ok).toBe(false);
    expect(res.key).toBe('k');
    expect(res.inconclusive).toBeUndefined();
    expect(res.explanation).toContain('read("a")');
  });

  it('rejects reading an absent key after a completed write', () => {
    expect(checkLinearizable([w('a', 0, 1), r(null, 2, 3)]).ok).toBe(false);
  });

  it('rejects a read of a value never written', () => {
    expect(checkLinearizable([w('a', 0, 1), r('ghost', 2, 3)]).ok).toBe(false);
    expect(checkLinearizable([r('ghost', 0, 1)]).ok).toBe(false);
  });

  it('rejects the new-old inversion: two reads ordered in real time seeing new then old', () => {
    // Write of b is in flight; one read sees b, a later read (started after the first returned) sees a again.
    const res = checkLinearizable([w('a', 0, 1), w('b', 2, 20), r('b', 3, 4), r('a', 5, 6)]);
    expect(res.ok).toBe(false);
    // Same with the reads from "different clients" whose intervals do not overlap.
    expect(checkLinearizable([w('a', 0, 1), w('b', 2, undefined), r('b', 3, 4), r('a', 5, 6)]).ok).toBe(false);
  });

  it('rejects a read returning a value whose write started after the read returned', () => {
    expect(checkLinearizable([w('a', 0, 1), r('b', 2, 3), w('b', 4, 5)]).ok).toBe(false);
    expect(checkLinearizable([r('b', 2, 3), w('b', 4, undefined)]).ok).toBe(false);
  });

  it('rejects a lost acknowledged write even when a later write was indeterminate', () => {
    // b was acknowledged, then the register goes back to a value written before b completed.
    expect(checkLinearizable([w('a', 0, 1), w('b', 2, 3), w('c', 4, undefined), r('a', 10, 11)]).ok).toBe(false);
  });

  it('rejects two overlapping writes observed in both orders by sequential reads', () => {
    const base = [w('a', 0, 10), w('b', 0, 10)];
    expect(checkLinearizable([...base, r('a', 1, 2), r('b', 3, 4), r('a', 5, 6)]).ok).toBe(false);
  });

  it('reports the failing key among many good ones', () => {
    const ops: Op[] = [];
    for (let k = 0; k < 10; k++) ops.push(w(`a${k}`, 0, 1, `key${k}`), r(`a${k}`, 2, 3, `key${k}`));
    ops.push(w('x', 4, 5, 'key7'), r('a7', 6, 7, 'key7'));
    const res = checkLinearizable(ops);
    expect(res).toMatchObject({ ok: false, key: 'key7' });
  });

  it('gives up inconclusively, not with a pass, when the budget runs out', () => {
    const ops: Op[] = [];
    for (let i = 0; i < 20; i++) ops.push(w(`v${i}`, 0, 100));
    ops.push(r('nope', 1, 2));
    const res = checkLinearizable(ops, { maxSteps: 50 });
    expect(res.ok).toBe(false);
  });
});

describe('linearizability checker against brute force', () => {
  /** Tries every order (and every subset of indeterminate writes) directly from the definition. */
  function bruteForce(ops: Op[]): boolean {
    const live = ops.filter((o) => !(o.kind === 'read' && o.ret === undefined));
    const n = live.length;
    const used = new Array<boolean>(n).fill(false);
    const go = (placed: number, state: string | null): boolean => {
      const left = live.filter((_, i) => !used[i]);
      // Done when every remaining op is an indeterminate write (those may never happen).
      if (left.every((o) => o.kind === 'write' && o.ret === undefined)) return true;
      for (let i = 0; i < n; i++) {
        if (used[i]) continue;
        const op = live[i]!;
        // op can go next only if no other unplaced op returned before op was called.
        if (live.some((o, j) => !used[j] && j !== i && o.ret !== undefined && o.ret < op.call)) continue;
        if (op.kind === 'read' && op.value !== state) continue;
        used[i] = true;
        const ok = go(placed + 1, op.kind === 'write' ? op.value : state);
        used[i] = false;
        if (ok) return true;
      }
      return false;
    };
    return go(0, null);
  }

  it('agrees on 3000 random small histories', () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let good = 0;
    for (let trial = 0; trial < 3000; trial++) {
      const ops: Op[] = [];
      const n = 2 + Math.floor(rand() * 6);
      for (let i = 0; i < n; i++) {
        const call = Math.floor(rand() * 10);
        const ret = rand() < 0.15 ? undefined : call + Math.floor(rand() * 5);
        if (rand() < 0.5) ops.push(w(`v${i}`, call, ret));
        else ops.push(r(rand() < 0.2 ? null : `v${Math.floor(rand() * n)}`, call, ret));
      }
      const expected = bruteForce(ops);
      if (expected) good++;
      expect({ ops, ok: checkLinearizable(ops).ok }).toEqual({ ops, ok: expected });
    }
    // Both verdicts are well represented.
    expect(good).toBeGreaterThan(300);
    expect(good).toBeLessThan(2700);
  });
});
