import { describe, expect, it } from 'vitest';
import { CompactedError, MemoryStorage, RaftLog, UnavailableError, type Entry } from '../../../server/raft/core/index.js';

const ent = (index: number, term: number): Entry => ({ index, term, type: 'normal', data: new Uint8Array(4) });

describe('MemoryStorage', () => {
  it('appends, truncates a conflicting suffix and compacts', () => {
    const s = new MemoryStorage();
    s.append([ent(1, 1), ent(2, 1), ent(3, 2)]);
    expect([s.firstIndex(), s.lastIndex(), s.term(3)]).toEqual([1, 3, 2]);
    s.append([ent(3, 3), ent(4, 3)]);
    expect(s.term(3)).toBe(3);
    expect(s.lastIndex()).toBe(4);
    expect(() => s.append([ent(6, 3)])).toThrow(/gap/);
    s.compact({ meta: { index: 2, term: 1, confState: { voters: ['a'], learners: [] } }, data: new Uint8Array() });
    expect(s.firstIndex()).toBe(3);
    expect(s.term(2)).toBe(1);
    expect(() => s.term(1)).toThrow(CompactedError);
    expect(() => s.entries(2, 4, 1e9)).toThrow(CompactedError);
    expect(() => s.entries(3, 6, 1e9)).toThrow(UnavailableError);
    expect(s.entries(3, 5, 1e9).map((e) => e.index)).toEqual([3, 4]);
    expect(s.entries(3, 5, 1).map((e) => e.index)).toEqual([3]); // size limit keeps at least one
    expect(s.initialState().confState.voters).toEqual(['a']);
  });

  it('bootstraps a cluster at index 1, term 1', () => {
    const s = MemoryStorage.bootstrap(['c', 'a', 'b']);
    expect(s.snapshot().meta).toEqual({ index: 1, term: 1, confState: { voters: ['a', 'b', 'c'], learners: [] } });
    expect(s.initialState().hardState).toEqual({ term: 1, vote: '', commit: 1 });
  });
});

describe('RaftLog', () => {
  function logWith(terms: number[]): RaftLog {
    const s = new MemoryStorage();
    s.append(terms.map((t, i) => ent(i + 1, t)));
    return new RaftLog(s, 1 << 20);
  }

  it('finds the conflict hint by term', () => {
    const l = logWith([1, 1, 2, 2, 2, 4, 4]);
    expect(l.findConflictByTerm(7, 3)).toEqual({ index: 5, term: 2 });
    expect(l.findConflictByTerm(7, 4)).toEqual({ index: 7, term: 4 });
    expect(l.findConflictByTerm(3, 1)).toEqual({ index: 2, term: 1 });
    expect(l.findConflictByTerm(7, 0)).toEqual({ index: 0, term: 0 });
  });

  it('maybeAppend truncates only on conflict and commits at most the last new entry', () => {
    const l = logWith([1, 1, 1]);
    expect(l.maybeAppend(3, 2, 3, [])).toBeUndefined(); // term mismatch at 3
    expect(l.maybeAppend(1, 1, 5, [ent(2, 1)])).toBe(2);
    expect(l.lastIndex()).toBe(3); // matching entry: nothing truncated
    expect(l.committed).toBe(2); // min(leader commit 5, last new 2)
    expect(l.maybeAppend(2, 1, 5, [ent(3, 2), ent(4, 2)])).toBe(4);
    expect(l.term(3)).toBe(2);
    expect(l.committed).toBe(4);
    expect(() => l.maybeAppend(1, 1, 5, [ent(2, 9)])).toThrow(/committed/);
  });

  it('moves unstable entries to stable without copying the log', () => {
    const s = new MemoryStorage();
    const l = new RaftLog(s, 1 << 20);
    l.append([ent(1, 1), ent(2, 1)]);
    expect(l.unstableEntries().map((e) => e.index)).toEqual([1, 2]);
    s.append(l.unstableEntries());
    l.stableTo(2, 1);
    expect(l.unstableEntries()).toEqual([]);
    expect(l.lastIndex()).toBe(2);
    l.append([ent(3, 1)]);
    expect(l.entries(1, 1e9, 100)?.map((e) => e.index)).toEqual([1, 2, 3]);
    expect(l.entries(1, 1e9, 2)?.map((e) => e.index)).toEqual([1, 2]);
  });

  it('only commits an entry of the given term', () => {
    const l = logWith([1, 2, 3]);
    expect(l.maybeCommit(2, 3)).toBe(false);
    expect(l.maybeCommit(3, 3)).toBe(true);
    expect(l.committed).toBe(3);
  });
});
