// When a node's apply lag makes it unready (server/raft/driver/apply-lag.ts).
import { describe, expect, it } from 'vitest';
import { ApplyLag } from '../../../server/raft/driver/apply-lag.js';

function clocked() {
  let t = 0;
  const lag = new ApplyLag(() => t, 1_000);
  return { lag, advance: (ms: number) => (t += ms) };
}

describe('apply lag as a readiness problem', () => {
  it('counts at once before the node first caught up: a restarting node replays before it says ready', () => {
    const { lag, advance } = clocked();
    expect(lag.problem(0, 500)).toBe(true);
    advance(10);
    expect(lag.problem(499, 500)).toBe(true);
    expect(lag.problem(500, 500)).toBe(false);
  });

  it('forgives a lag behind a commit index just learned, while each watched entry applies within the grace', () => {
    const { lag, advance } = clocked();
    lag.problem(10, 10);
    // Under load the commit index keeps moving ahead of apply, but every entry applies within ms.
    for (let i = 0; i < 100; i++) {
      advance(300);
      expect(lag.problem(10 + i * 5, 15 + i * 5)).toBe(false);
    }
  });

  it('reports an entry committed longer than the grace ago and still unapplied', () => {
    const { lag, advance } = clocked();
    lag.problem(10, 10);
    expect(lag.problem(10, 20)).toBe(false);
    advance(600);
    expect(lag.problem(15, 25)).toBe(false); // progress, but entry 20 is still waiting
    advance(600);
    expect(lag.problem(19, 30)).toBe(true);
    expect(lag.problem(30, 30)).toBe(false);
  });

  it('reports a node that stopped applying for good, however often it is asked', () => {
    const { lag, advance } = clocked();
    lag.problem(5, 5);
    let last = false;
    for (let i = 0; i < 30; i++) {
      advance(100);
      last = lag.problem(5, 6);
    }
    expect(last).toBe(true);
  });
});
