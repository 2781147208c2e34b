import { describe, expect, it } from 'vitest';
import { enc, TestNet } from './harness.js';

describe('ReadIndex', () => {
  it('the leader releases a read only after a quorum heartbeat round, at its commit index', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    expect(net.raft('a').readIndex('r1')).toBe(true);
    net.flushReadies();
    expect(net.get('a').readStates).toEqual([]); // not before the heartbeat acks
    const hbs = net.pending().filter((m) => m.type === 'heartbeat');
    expect(hbs.map((m) => m.context)).toEqual(['r1', 'r1']);
    net.stabilize();
    expect(net.get('a').readStates).toEqual([{ index: 3, context: 'r1' }]);
  });

  it('a leader cut off from the quorum never releases a read', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('a');
    net.raft('a').readIndex('stale');
    net.stabilize();
    net.tickAll(3);
    expect(net.get('a').readStates).toEqual([]);
  });

  it('a new leader holds reads until it has committed an entry in its term', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    net.isolate('a');
    // b wins; its no-op is not committed yet because b's appends are dropped.
    net.drop((m) => m.from === 'b' && m.type === 'app');
    net.raft('b').raft.becomeFollower(net.raft('b').raft.term, '');
    for (let i = 0; i < 40 && net.raft('b').raft.role !== 'leader'; i++) {
      net.tick('b');
      net.tick('c');
      net.stabilize();
    }
    expect(net.raft('b').raft.role).toBe('leader');
    expect(net.raft('b').raft.log.committed).toBe(3);
    net.raft('b').readIndex('early');
    net.stabilize();
    net.tick('b', 2);
    net.stabilize();
    expect(net.get('b').readStates).toEqual([]);
    net.recover();
    net.isolate('a');
    net.tick('b', 2);
    net.stabilize();
    // Released at the commit index that includes b's no-op (index 4), not the stale 3.
    expect(net.get('b').readStates).toEqual([{ index: 4, context: 'early' }]);
  });

  it('a follower forwards the read to the leader and gets a read state back', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    expect(net.raft('b').readIndex('f1')).toBe(true);
    net.stabilize();
    expect(net.get('b').readStates).toEqual([{ index: 3, context: 'f1' }]);
    expect(net.get('a').readStates).toEqual([]);
  });

  it('a node that knows no leader refuses reads', () => {
    const net = new TestNet(['a', 'b', 'c']);
    expect(net.raft('b').readIndex('nobody')).toBe(false);
  });

  it('releases queued reads in order when a later read is confirmed', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.drop((m) => m.type === 'heartbeatResp' && m.context === 'r1');
    net.raft('a').readIndex('r1');
    net.stabilize();
    expect(net.get('a').readStates).toEqual([]);
    net.raft('a').propose(enc('y'));
    net.stabilize();
    net.raft('a').readIndex('r2');
    net.stabilize();
    expect(net.get('a').readStates.map((r) => r.context)).toEqual(['r1', 'r2']);
    expect(net.get('a').readStates.map((r) => r.index)).toEqual([2, 3]);
  });
});
