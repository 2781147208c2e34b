import { describe, expect, it } from 'vitest';
import { MemoryStorage, message, RaftNode, SeededRng } from '../../../server/raft/core/index.js';
import { TestNet } from './harness.js';

describe('leader election', () => {
  it('elects a leader that appends a no-op in its term', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    const a = net.raft('a').raft;
    expect(a.role).toBe('leader');
    expect(a.term).toBe(2);
    for (const id of ['b', 'c']) {
      expect(net.raft(id).raft.role).toBe('follower');
      expect(net.raft(id).raft.lead).toBe('a');
    }
    const noop = net.get('b').applied.at(-1);
    expect(noop?.type).toBe('noop');
    expect(noop?.term).toBe(2);
    expect(a.log.committed).toBe(2);
  });

  it('elects a leader by ticking alone (randomized timeouts)', () => {
    const net = new TestNet(['a', 'b', 'c'], {}, 42);
    net.tickAll(40);
    const leaders = ['a', 'b', 'c'].filter((id) => net.raft(id).raft.role === 'leader');
    expect(leaders).toHaveLength(1);
  });

  it('draws the randomized election timeout from the injected PRNG, in [et, 2et)', () => {
    const timeouts = (seed: number): number[] => {
      const out: number[] = [];
      const node = new RaftNode({ id: 'a', storage: MemoryStorage.bootstrap(['a', 'b', 'c']), rng: new SeededRng(seed) });
      for (let i = 0; i < 20; i++) {
        node.raft.becomeFollower(node.raft.term + 1, '');
        out.push(node.raft.randomizedElectionTimeout);
      }
      return out;
    };
    const a = timeouts(7);
    expect(timeouts(7)).toEqual(a); // deterministic
    expect(timeouts(8)).not.toEqual(a);
    for (const t of a) {
      expect(t).toBeGreaterThanOrEqual(10);
      expect(t).toBeLessThan(20);
    }
    expect(new Set(a).size).toBeGreaterThan(1);
  });

  it('a node votes at most once per term, and the vote survives a restart', () => {
    const net = new TestNet(['a', 'b', 'c']);
    const b = net.raft('b');
    b.step(message({ type: 'vote', from: 'a', to: 'b', term: 5, index: 1, logTerm: 1 }));
    b.step(message({ type: 'vote', from: 'c', to: 'b', term: 5, index: 1, logTerm: 1 }));
    net.flushReadies();
    const resps = net.sent.filter((m) => m.type === 'voteResp' && m.from === 'b');
    expect(resps.map((m) => [m.to, m.reject])).toEqual([
      ['a', false],
      ['c', true],
    ]);
    net.restart('b');
    net.raft('b').step(message({ type: 'vote', from: 'c', to: 'b', term: 5, index: 1, logTerm: 1 }));
    net.flushReadies();
    expect(net.sent.at(-1)).toMatchObject({ type: 'voteResp', to: 'c', reject: true });
  });

  it('rejects a candidate whose log is less up to date', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x'); // b and c now have index 3 at term 2
    const b = net.raft('b');
    b.step(message({ type: 'vote', from: 'c', to: 'b', term: 9, index: 2, logTerm: 2 }));
    net.flushReadies();
    // b is in a lease from a, so it ignores the vote entirely; without a lease it rejects it.
    expect(net.sent.filter((m) => m.type === 'voteResp' && m.from === 'b' && m.to === 'c')).toHaveLength(0);
    const lone = new TestNet(['a', 'b', 'c'], { checkQuorum: false });
    lone.elect('a');
    lone.propose('a', 'x');
    lone.raft('b').step(message({ type: 'vote', from: 'c', to: 'b', term: 9, index: 2, logTerm: 2 }));
    lone.flushReadies();
    expect(lone.sent.at(-1)).toMatchObject({ type: 'voteResp', from: 'b', reject: true });
  });

  it('pre-vote keeps a partitioned node from inflating its term and disrupting the leader', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    const term = net.raft('a').raft.term;
    net.isolate('c');
    for (let i = 0; i < 100; i++) {
      net.tickAll(1);
    }
    expect(net.raft('c').raft.term).toBe(term); // only pre-votes, which never bump the term
    net.recover();
    net.tickAll(5);
    expect(net.raft('a').raft.role).toBe('leader');
    expect(net.raft('a').raft.term).toBe(term);
    expect(net.raft('c').raft.lead).toBe('a');
  });

  it('without pre-vote the same partition inflates the term and deposes the leader', () => {
    const net = new TestNet(['a', 'b', 'c'], { preVote: false, checkQuorum: false });
    net.elect('a');
    const term = net.raft('a').raft.term;
    net.isolate('c');
    net.tickAll(100);
    expect(net.raft('c').raft.term).toBeGreaterThan(term + 3);
    net.recover();
    net.tickAll(30);
    // c's next campaign at its inflated term forces everyone, a included, to that term.
    expect(net.raft('a').raft.term).toBeGreaterThan(term + 3);
  });

  it('check-quorum: a leader without quorum contact for an election timeout steps down', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('a');
    for (let i = 0; i < 9; i++) net.tick('a');
    expect(net.raft('a').raft.role).toBe('leader');
    for (let i = 0; i < 12; i++) net.tick('a');
    expect(net.raft('a').raft.role).toBe('follower');
    // and with check-quorum off it would not
    const off = new TestNet(['a', 'b', 'c'], { checkQuorum: false });
    off.elect('a');
    off.isolate('a');
    for (let i = 0; i < 50; i++) off.tick('a');
    expect(off.raft('a').raft.role).toBe('leader');
  });

  it('leader lease: followers that hear from a live leader ignore vote requests', () => {
    const net = new TestNet(['a', 'b', 'c'], { preVote: false });
    net.elect('a');
    const term = net.raft('a').raft.term;
    // c is cut off from a only; it times out and campaigns at a higher term.
    net.cut('a', 'c');
    for (let i = 0; i < 40; i++) {
      net.tick('c');
      net.tick('a');
      net.tick('b');
      net.stabilize();
    }
    expect(net.raft('c').raft.term).toBeGreaterThan(term);
    expect(net.raft('b').raft.term).toBe(term); // b ignored c while a was alive
    expect(net.raft('a').raft.role).toBe('leader');
  });

  it('a single voter elects itself and commits immediately', () => {
    const net = new TestNet(['solo']);
    net.tickAll(25);
    expect(net.raft('solo').raft.role).toBe('leader');
    net.propose('solo', 'v');
    expect(net.appliedData('solo')).toEqual(['v']);
  });
});
