import { describe, expect, it } from 'vitest';
import { dec, enc, TestNet } from './harness.js';

describe('log replication and commit', () => {
  it('replicates, commits by quorum and applies in order on every node', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    for (const v of ['x', 'y', 'z']) net.propose('a', v);
    for (const id of ['a', 'b', 'c']) expect(net.appliedData(id)).toEqual(['x', 'y', 'z']);
    expect(net.raft('b').propose(enc('no'))).toEqual({ ok: false, reason: 'not_leader' });
  });

  it('does not commit without a quorum, and commits once it is back', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('b');
    net.isolate('c');
    const r = net.raft('a').propose(enc('x'));
    expect(r.ok).toBe(true);
    net.stabilize();
    expect(net.raft('a').raft.log.committed).toBe(2);
    expect(net.appliedData('a')).toEqual([]);
    net.recover();
    net.tickAll(3);
    for (const id of ['a', 'b', 'c']) expect(net.appliedData(id)).toEqual(['x']);
  });

  it('batches by entry count and by bytes', () => {
    const net = new TestNet(['a', 'b', 'c'], { maxMsgEntries: 2 });
    net.elect('a');
    net.isolate('c');
    for (let i = 0; i < 10; i++) net.propose('a', `v${i}`);
    net.recover();
    net.tickAll(20);
    const toC = net.sent.filter((m) => m.type === 'app' && m.to === 'c');
    expect(toC.length).toBeGreaterThan(4);
    expect(Math.max(...toC.map((m) => m.entries.length))).toBe(2);
    expect(net.appliedData('c')).toHaveLength(10);

    const big = new TestNet(['a', 'b'], { maxMsgBytes: 250 });
    big.elect('a');
    big.isolate('b');
    for (let i = 0; i < 6; i++) {
      expect(big.raft('a').propose(new Uint8Array(100).fill(i)).ok).toBe(true);
    }
    big.stabilize();
    big.recover();
    big.tickAll(20);
    const toB = big.sent.filter((m) => m.type === 'app' && m.to === 'b' && m.entries.length > 0);
    expect(Math.max(...toB.map((m) => m.entries.length))).toBe(2); // 2 * 116 bytes <= 250
    expect(big.get('b').applied.filter((e) => e.type === 'normal')).toHaveLength(6);
  });

  it('pipelines appends to a replicating follower up to the inflight window', () => {
    const net = new TestNet(['a', 'b'], { maxInflightMsgs: 3 });
    net.elect('a');
    expect(net.raft('a').status().progress.get('b')?.state).toBe('replicate');
    // One Ready per proposal (writes arriving a loop turn apart), so each is its own append.
    for (let i = 0; i < 6; i++) {
      expect(net.raft('a').propose(enc(`p${i}`)).ok).toBe(true);
      net.pending();
    }
    // Nothing delivered yet: the leader sent optimistically, but only up to the window.
    const inflight = net.pending().filter((m) => m.type === 'app' && m.to === 'b');
    expect(inflight).toHaveLength(3);
    expect(inflight.map((m) => m.index)).toEqual([2, 3, 4]); // prev indexes of entries 3, 4, 5
    expect(net.raft('a').status().progress.get('b')?.next).toBe(6);
    net.stabilize();
    expect(net.appliedData('b')).toHaveLength(6);
  });

  it('sends the proposals made before the next Ready as one append per follower, answered once', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    const before = net.raft('a').status().commit;
    for (let i = 0; i < 5; i++) expect(net.raft('a').propose(enc(`q${i}`)).ok).toBe(true);
    const appends = net.pending().filter((m) => m.type === 'app');
    expect(appends.map((m) => [m.to, m.entries.map((e) => dec(e.data))])).toEqual([
      ['b', ['q0', 'q1', 'q2', 'q3', 'q4']],
      ['c', ['q0', 'q1', 'q2', 'q3', 'q4']],
    ]);
    net.deliverOnce((m) => m.type === 'app');
    expect(net.pending().filter((m) => m.type === 'appResp').map((m) => [m.from, m.index])).toEqual([
      ['b', before + 5],
      ['c', before + 5],
    ]);
    net.stabilize();
    for (const id of ['a', 'b', 'c']) expect(net.appliedData(id)).toEqual(['q0', 'q1', 'q2', 'q3', 'q4']);
  });

  it('probes one append at a time after a rejection', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.isolate('c');
    for (let i = 0; i < 5; i++) net.propose('a', `v${i}`);
    net.recover();
    // Pretend c was restarted and reports a rejection: the leader falls back to probing.
    net.raft('a').raft.tracker.progress.get('c')?.becomeProbe();
    net.raft('a').propose(enc('p1'));
    net.pending();
    net.raft('a').propose(enc('p2'));
    const probes = net.pending().filter((m) => m.type === 'app' && m.to === 'c');
    expect(probes).toHaveLength(1); // paused until c answers
    expect(net.pending().filter((m) => m.type === 'app' && m.to === 'b')).toHaveLength(2);
    net.stabilize();
    expect(net.raft('a').status().progress.get('c')?.state).toBe('replicate');
    expect(net.appliedData('c')).toHaveLength(7);
  });

  it('overwrites a follower’s conflicting uncommitted entries', () => {
    const net = new TestNet(['a', 'b', 'c'], { checkQuorum: false });
    net.elect('a');
    net.isolate('a');
    for (const v of ['lost1', 'lost2', 'lost3']) expect(net.raft('a').propose(enc(v)).ok).toBe(true);
    net.stabilize();
    net.recover();
    net.isolate('a');
    net.elect('b');
    net.propose('b', 'kept');
    net.recover();
    net.tickAll(5);
    for (const id of ['a', 'b', 'c']) expect(net.appliedData(id)).toEqual(['kept']);
    expect(net.raft('a').raft.log.term(3)).toBe(net.raft('b').raft.term);
    expect(net.get('a').storage.lastIndex()).toBe(net.get('b').storage.lastIndex());
  });

  it('backs off fast over a long divergent tail using the conflict hint', () => {
    const net = new TestNet(['a', 'b', 'c'], { checkQuorum: false });
    net.elect('a');
    net.isolate('a');
    for (let i = 0; i < 50; i++) net.raft('a').propose(enc(`stale${i}`));
    net.stabilize();
    net.recover();
    net.isolate('a');
    net.elect('b');
    for (let i = 0; i < 50; i++) net.propose('b', `new${i}`);
    // A new leader with a long log starts optimistically at its own last index + 1.
    net.elect('c');
    expect(net.raft('c').status().progress.get('a')?.next).toBe(54);
    net.recover();
    const before = net.sent.length;
    net.tickAll(5);
    const rejects = net.sent.slice(before).filter((m) => m.type === 'appResp' && m.from === 'a' && m.reject);
    expect(rejects.length).toBeGreaterThan(0);
    expect(rejects.length).toBeLessThanOrEqual(2); // not one per divergent entry
    expect(net.appliedData('a')).toHaveLength(50);
    expect(net.appliedData('a')[0]).toBe('new0');
  });

  it('Figure 8: a leader never commits an entry of an earlier term by counting replicas', () => {
    // checkQuorum off so we can steer elections by hand; one entry per message so
    // the old-term entry and the new leader's no-op travel separately.
    const net = new TestNet(['a', 'b', 'c', 'd', 'e'], { checkQuorum: false, maxMsgEntries: 1 });
    net.elect('a'); // term 2, no-op at 2 everywhere
    // (1) a replicates x at index 3 (term 2) to b only.
    net.drop((m) => m.from === 'a' && m.to !== 'b');
    net.raft('a').propose(enc('x'));
    net.stabilize();
    net.recover();
    expect(net.raft('b').raft.log.term(3)).toBe(2);
    // (2) e wins term 3 with c and d, appends its no-op at index 3 (term 3) locally only.
    net.isolate('a');
    net.isolate('b');
    net.drop((m) => m.from === 'e' && m.type === 'app');
    net.elect('e');
    expect(net.raft('e').raft.role).toBe('leader');
    expect(net.raft('e').raft.log.term(3)).toBe(3);
    net.recover();
    // (3) a restarts and wins term 4 with b and c. x (term 2) reaches c, so it is on a
    // majority (a, b, c); a's own no-op (term 4) reaches b but not c.
    net.restart('a');
    net.isolate('e');
    net.isolate('d');
    net.drop(
      (m) =>
        m.from === 'a' &&
        m.to === 'c' &&
        m.type === 'app' &&
        m.entries.some((e) => e.term === 4) &&
        net.raft('c').raft.log.lastIndex() >= 3,
    );
    for (let i = 0; i < 3 && net.raft('a').raft.role !== 'leader'; i++) net.elect('a');
    expect(net.raft('a').raft.role).toBe('leader');
    expect(net.raft('a').raft.term).toBe(4);
    expect(net.raft('c').raft.log.term(3)).toBe(2);
    expect(net.raft('c').raft.log.lastIndex()).toBe(3);
    expect(net.raft('a').status().progress.get('c')?.match).toBe(3);
    expect(net.raft('a').status().progress.get('b')?.match).toBe(4);
    // The rule under test: x is not committed, because it is not from term 4.
    expect(net.raft('a').raft.log.committed).toBe(2);
    expect(net.appliedData('a')).toEqual([]);
    // (4) Why: e (restarted) can still win (its last term 3 beats 2) and replace x.
    net.recover();
    net.isolate('a');
    net.restart('e');
    for (let i = 0; i < 3 && net.raft('e').raft.role !== 'leader'; i++) net.elect('e');
    expect(net.raft('e').raft.role).toBe('leader');
    expect(net.raft('e').raft.term).toBe(5);
    net.propose('e', 'y');
    net.recover();
    net.tickAll(5);
    for (const id of ['a', 'b', 'c', 'd', 'e']) {
      expect(net.appliedData(id)).toEqual(['y']);
      expect(net.raft(id).raft.log.term(3)).toBe(3);
    }
  });

  it('a restarted follower keeps what it persisted and catches up', () => {
    const net = new TestNet(['a', 'b', 'c']);
    net.elect('a');
    net.propose('a', 'x');
    net.restart('c');
    expect(net.raft('c').raft.log.committed).toBe(3);
    net.propose('a', 'y');
    net.tickAll(3);
    // c replays everything from its (bootstrap) snapshot point.
    expect(net.appliedData('c')).toEqual(['x', 'y']);
  });
});
