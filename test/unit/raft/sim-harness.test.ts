import { describe, expect, it } from 'vitest';
import { Checker, ChainLog, InvariantViolation } from './sim/checker.js';
import { BOOTSTRAP_CHAIN } from './sim/hash.js';
import { runSeed } from './sim/scenario.js';
import { replayHint, seedsForShard } from './sim/seeds.js';
import { enc } from './harness.js';

describe('simulation harness', () => {
  it('is deterministic: a seed replays identically', () => {
    const a = runSeed(123);
    const b = runSeed(123);
    expect(a.ok).toBe(true);
    expect(b.stats).toEqual(a.stats);
  });

  it('selects seeds from RAFT_SIM_SEED / RAFT_SIM_SEEDS', () => {
    expect(seedsForShard(0, { RAFT_SIM_SEED: '77' })).toEqual([77]);
    expect(seedsForShard(1, { RAFT_SIM_SEED: '77' })).toEqual([]);
    expect(seedsForShard(0, { RAFT_SIM_SEEDS: '5' })).toEqual([0, 2, 4]);
    expect(seedsForShard(1, {})).toHaveLength(500);
    expect(() => seedsForShard(0, { RAFT_SIM_SEED: 'x' })).toThrow();
    expect(replayHint(9)).toBe('replay with RAFT_SIM_SEED=9 npx vitest run test/unit/raft');
  });

  it('the checker catches two leaders in one term', () => {
    const c = new Checker();
    c.onLeader('a', 2, new ChainLog(1, BOOTSTRAP_CHAIN));
    expect(() => c.onLeader('b', 2, new ChainLog(1, BOOTSTRAP_CHAIN))).toThrow(InvariantViolation);
  });

  it('the checker catches diverging logs and diverging applies', () => {
    const c = new Checker();
    const la = new ChainLog(1, BOOTSTRAP_CHAIN);
    const lb = new ChainLog(1, BOOTSTRAP_CHAIN);
    c.onPersistEntries('a', la, [{ index: 2, term: 2, type: 'normal', data: enc('x') }]);
    // same index and term, different content: log matching violated
    expect(() => c.onPersistEntries('b', lb, [{ index: 2, term: 2, type: 'normal', data: enc('y') }])).toThrow(/log matching/);
    c.onCommit('a', la, 2, 2);
    c.onApply('a', { index: 2, term: 2, type: 'normal', data: enc('x') });
    expect(() => c.onApply('b', { index: 2, term: 3, type: 'normal', data: enc('z') })).toThrow(/state machine safety/);
  });

  it('the checker catches a leader missing a committed entry', () => {
    const c = new Checker();
    const la = new ChainLog(1, BOOTSTRAP_CHAIN);
    c.onPersistEntries('a', la, [{ index: 2, term: 2, type: 'noop', data: new Uint8Array() }]);
    c.onCommit('a', la, 2, 2);
    expect(() => c.onLeader('b', 3, new ChainLog(1, BOOTSTRAP_CHAIN))).toThrow(/leader completeness/);
  });
});
