import { describe, expect, it } from 'vitest';
import { enc, TestNet } from './harness.js';

describe('leadership transfer', () => {
  it('hands leadership to a caught-up follower with TimeoutNow', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    const term = net.raft('a').raft.term;
    net.raft('a').transferLeadership('b');
    const timeoutNow = net.pending().filter((m) => m.type === 'timeoutNow');
    expect(timeoutNow.map((m) => m.to)).toEqual(['b']);
    net.stabilize();
    expect(net.raft('b').raft.role).toBe('leader');
    expect(net.raft('b').raft.term).toBe(term + 1);
    expect(net.raft('a').raft.lead).toBe('b');
    net.propose('b', 'y');
    expect(net.appliedData('a')).toEqual(['x', 'y']);
  });

  it('catches a lagging target up first, then transfers', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('c');
    for (let i = 0; i < 5; i++) net.propose('a', `v${i}`);
    net.recover();
    net.raft('a').transferLeadership('c');
    expect(net.pending().some((m) => m.type === 'timeoutNow')).toBe(false);
    expect(net.raft('a').propose(enc('during')).ok).toBe(false); // proposals wait during a transfer
    net.stabilize();
    expect(net.raft('c').raft.role).toBe('leader');
    expect(net.appliedData('c')).toHaveLength(5);
  });

  it('a follower forwards the request to the leader', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.raft('c').transferLeadership('c');
    net.stabilize();
    expect(net.raft('c').raft.role).toBe('leader');
  });

  it('abandons a transfer to an unreachable target after an election timeout', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('c');
    net.propose('a', 'x');
    net.raft('a').transferLeadership('c');
    expect(net.raft('a').raft.leadTransferee).toBe('c');
    expect(net.raft('a').propose(enc('blocked'))).toEqual({ ok: false, reason: 'transfer_in_progress' });
    for (let i = 0; i < 10; i++) {
      net.tick('a');
      net.tick('b');
      net.stabilize();
    }
    expect(net.raft('a').raft.leadTransferee).toBe('');
    expect(net.raft('a').raft.role).toBe('leader');
    expect(net.raft('a').propose(enc('ok')).ok).toBe(true);
  });

  it('ignores a transfer to a learner', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    expect(net.raft('a').proposeConfChange({ type: 'addLearner', nodeId: 'l' }).ok).toBe(true);
    net.add('l');
    net.stabilize();
    net.tickAll(3);
    net.raft('a').transferLeadership('l');
    expect(net.raft('a').raft.leadTransferee).toBe('');
  });
});
