import { describe, expect, it } from 'vitest';
import { enc, TestNet } from './harness.js';

function compactAll(net: TestNet, id: string): number {
  const n = net.raft(id);
  const applied = n.raft.log.applied;
  const term = n.raft.log.term(applied) as number;
  const meta = n.compact(applied, term, n.status().confState, enc(`image@${applied}`));
  expect(meta?.index).toBe(applied);
  return applied;
}

describe('log compaction and snapshots', () => {
  it('sends a snapshot to a follower behind the compaction point, which installs it and catches up', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('c');
    for (let i = 0; i < 10; i++) net.propose('a', `v${i}`);
    const idx = compactAll(net, 'a');
    expect(net.get('a').storage.firstIndex()).toBe(idx + 1);
    net.propose('a', 'after');
    net.recover();
    net.tickAll(5);
    const snaps = net.sent.filter((m) => m.type === 'snap' && m.to === 'c');
    expect(snaps).toHaveLength(1);
    expect(snaps[0]?.snapshot?.meta).toMatchObject({ index: idx, term: 2 });
    expect(new TextDecoder().decode(snaps[0]?.snapshot?.data)).toBe(`image@${idx}`);
    // c installed it (durably) and applied only what came after.
    expect(net.get('c').storage.snapshot().meta.index).toBe(idx);
    expect(net.appliedData('c')).toEqual(['after']);
    expect(net.raft('c').raft.log.committed).toBe(net.raft('a').raft.log.committed);
    expect(net.raft('a').status().progress.get('c')?.state).toBe('replicate');
  });

  it('retries after the transport reports a failed snapshot', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('c');
    for (let i = 0; i < 5; i++) net.propose('a', `v${i}`);
    compactAll(net, 'a');
    net.recover();
    net.drop((m) => m.type === 'snap');
    net.tickAll(2);
    expect(net.raft('a').status().progress.get('c')?.state).toBe('snapshot');
    net.raft('a').reportSnapshot('c', false);
    expect(net.raft('a').status().progress.get('c')?.state).toBe('probe');
    net.recover();
    net.tickAll(5);
    expect(net.raft('a').status().progress.get('c')?.state).toBe('replicate');
    expect(net.raft('c').raft.log.committed).toBe(net.raft('a').raft.log.committed);
  });

  it('a new member joins from the leader snapshot', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    for (let i = 0; i < 5; i++) net.propose('a', `v${i}`);
    compactAll(net, 'a');
    expect(net.raft('a').proposeConfChange({ type: 'addLearner', nodeId: 'n' }).ok).toBe(true);
    net.add('n');
    net.stabilize();
    net.tickAll(5);
    expect(net.get('n').storage.snapshot().meta.index).toBeGreaterThan(1);
    expect(net.raft('n').raft.log.committed).toBe(net.raft('a').raft.log.committed);
    expect(net.raft('n').status().confState.learners).toEqual(['n']);
  });

  it('a follower restarted after installing a snapshot recovers from it', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('c');
    for (let i = 0; i < 5; i++) net.propose('a', `v${i}`);
    const idx = compactAll(net, 'a');
    net.recover();
    net.tickAll(3);
    net.restart('c');
    expect(net.raft('c').raft.log.firstIndex()).toBe(idx + 1);
    expect(net.raft('c').raft.log.committed).toBeGreaterThanOrEqual(idx);
    net.propose('a', 'z');
    net.tickAll(2);
    expect(net.appliedData('c')).toEqual(['z']);
  });

  it('compact validates its arguments', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    const n = net.raft('a');
    expect(() => n.compact(99, 2, n.status().confState, enc(''))).toThrow(/beyond applied/);
    expect(() => n.compact(3, 7, n.status().confState, enc(''))).toThrow(/term/);
    expect(n.compact(3, 2, n.status().confState, enc(''))?.index).toBe(3);
    expect(n.compact(2, 2, n.status().confState, enc(''))).toBeUndefined(); // already covered
  });
});
