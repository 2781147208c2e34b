import { describe, expect, it } from 'vitest';
import { enc, TestNet } from './harness.js';

function addLearner(net: TestNet, leader: string, id: string): void {
  const r = net.raft(leader).proposeConfChange({ type: 'addLearner', nodeId: id });
  expect(r.ok).toBe(true);
  net.add(id);
  net.stabilize();
  net.tickAll(3);
}

describe('membership changes', () => {
  it('a learner receives the log but never votes in the commit quorum', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    addLearner(net, 'a', 'l');
    expect(net.raft('a').status().confState).toEqual({ voters: ['a', 'b', 'c'], learners: ['l'] });
    expect(net.appliedData('l')).toEqual(['x']);
    // With b and c gone, a + learner l are 2 of 4 members but only 1 of 3 voters.
    net.isolate('b');
    net.isolate('c');
    net.raft('a').propose(enc('y'));
    net.stabilize();
    expect(net.raft('l').raft.log.lastIndex()).toBe(net.raft('a').raft.log.lastIndex());
    expect(net.appliedData('a')).toEqual(['x']);
    net.recover();
    net.tickAll(3);
    expect(net.appliedData('l')).toEqual(['x', 'y']);
  });

  it('a learner never campaigns', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    addLearner(net, 'a', 'l');
    net.isolate('l');
    for (let i = 0; i < 100; i++) net.tick('l');
    net.stabilize();
    expect(net.raft('l').raft.role).toBe('follower');
    expect(net.sent.some((m) => m.from === 'l' && (m.type === 'preVote' || m.type === 'vote'))).toBe(false);
  });

  it('promotes a learner only once it has caught up, then counts it', () => {
    const net = new TestNet(['a', 'b', 'c'], { promotionLag: 0 });
    net.elect('a');
    expect(net.raft('a').proposeConfChange({ type: 'addLearner', nodeId: 'l' }).ok).toBe(true);
    net.stabilize(); // committed and applied, but l is not running yet
    expect(net.raft('a').proposeConfChange({ type: 'addVoter', nodeId: 'l' })).toEqual({
      ok: false,
      reason: 'learner_not_caught_up',
    });
    net.add('l');
    net.tickAll(3);
    expect(net.raft('a').proposeConfChange({ type: 'addVoter', nodeId: 'l' }).ok).toBe(true);
    net.stabilize();
    expect(net.raft('a').status().confState).toEqual({ voters: ['a', 'b', 'c', 'l'], learners: [] });
    // 4 voters: a quorum is 3, so a + l alone cannot commit.
    net.isolate('b');
    net.isolate('c');
    net.raft('a').propose(enc('z'));
    net.stabilize();
    expect(net.appliedData('a')).toEqual([]);
  });

  it('allows only one unapplied conf change at a time and rejects nonsense', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    expect(net.raft('a').proposeConfChange({ type: 'addLearner', nodeId: 'l1' }).ok).toBe(true);
    expect(net.raft('a').proposeConfChange({ type: 'addLearner', nodeId: 'l2' })).toEqual({
      ok: false,
      reason: 'conf_change_pending',
    });
    net.stabilize();
    expect(net.raft('a').proposeConfChange({ type: 'addLearner', nodeId: 'l2' }).ok).toBe(true);
    net.stabilize();
    expect(net.raft('a').proposeConfChange({ type: 'addVoter', nodeId: 'stranger' }).ok).toBe(false);
    expect(net.raft('a').proposeConfChange({ type: 'removeNode', nodeId: 'stranger' }).ok).toBe(false);
    expect(net.raft('b').proposeConfChange({ type: 'removeNode', nodeId: 'c' })).toEqual({ ok: false, reason: 'not_leader' });
  });

  it('removes a follower: the rest commit without it', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    expect(net.raft('a').proposeConfChange({ type: 'removeNode', nodeId: 'c' }).ok).toBe(true);
    net.stabilize();
    expect(net.raft('a').status().confState.voters).toEqual(['a', 'b']);
    net.isolate('c');
    net.propose('a', 'after');
    expect(net.appliedData('b')).toEqual(['after']);
  });

  it('a leader that removes itself steps down and the others elect a new leader', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    expect(net.raft('a').proposeConfChange({ type: 'removeNode', nodeId: 'a' }).ok).toBe(true);
    net.stabilize();
    expect(net.raft('a').raft.role).toBe('follower');
    net.isolate('a');
    net.tickAll(40);
    const lead = net.leaderId();
    expect(['b', 'c']).toContain(lead);
    net.propose(lead as string, 'v');
    expect(net.appliedData('b')).toEqual(['v']);
  });

  it('a restarted node rebuilds its membership by replaying conf changes', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    addLearner(net, 'a', 'l');
    net.restart('b');
    expect(net.raft('b').status().confState.learners).toEqual([]); // the snapshot's config
    net.tickAll(3);
    expect(net.raft('b').status().confState.learners).toEqual(['l']);
  });
});
