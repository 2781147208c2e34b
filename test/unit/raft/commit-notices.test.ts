// Commit notices (appends without entries) are held briefly and dropped when
// a later append to the same follower carries the commit index.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { message, type Entry, type Message } from '../../../server/raft/core/index.js';
import { CommitNotices } from '../../../server/raft/driver/commit-notices.js';

const entry: Entry = { term: 2, index: 8, type: 'normal', data: new Uint8Array([1]) };
const notice = (to: string, commit: number): Message => message({ type: 'app', from: 'a', to, term: 2, index: 7, logTerm: 2, commit });
const append = (to: string, commit: number): Message => message({ type: 'app', from: 'a', to, term: 2, index: 7, logTerm: 2, commit, entries: [entry] });

describe('commit notices', () => {
  let sent: Message[];
  let notices: CommitNotices;
  beforeEach(() => {
    vi.useFakeTimers();
    sent = [];
    notices = new CommitNotices((m) => sent.push(m), 5);
  });
  afterEach(() => {
    notices.close();
    vi.useRealTimers();
  });

  it('holds a notice and sends it after the delay when no append carries it', () => {
    expect(notices.offer(notice('b', 7))).toBe(true);
    expect(sent).toEqual([]);
    vi.advanceTimersByTime(4);
    expect(sent).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(sent.map((m) => [m.to, m.commit])).toEqual([['b', 7]]);
    expect(notices.size).toBe(0);
  });

  it('drops a notice when an append with entries to that follower leaves first, keeps the others', () => {
    notices.offer(notice('b', 7));
    notices.offer(notice('c', 7));
    expect(notices.offer(append('b', 7))).toBe(false);
    vi.advanceTimersByTime(10);
    expect(sent.map((m) => m.to)).toEqual(['c']);
  });

  it('keeps only the newest notice per follower', () => {
    notices.offer(notice('b', 7));
    notices.offer(notice('b', 8));
    vi.advanceTimersByTime(5);
    expect(sent.map((m) => m.commit)).toEqual([8]);
  });

  it('passes every other message through', () => {
    for (const type of ['heartbeat', 'appResp', 'vote', 'voteResp', 'readIndex', 'timeoutNow'] as const) {
      expect(notices.offer(message({ type, from: 'a', to: 'b', term: 2 }))).toBe(false);
    }
    expect(notices.size).toBe(0);
  });

  it('a heartbeat does not drop a held notice (its commit may be lower)', () => {
    notices.offer(notice('b', 7));
    notices.offer(message({ type: 'heartbeat', from: 'a', to: 'b', term: 2, commit: 5 }));
    vi.advanceTimersByTime(5);
    expect(sent.map((m) => m.commit)).toEqual([7]);
  });

  it('sends nothing held after close', () => {
    notices.offer(notice('b', 7));
    notices.close();
    vi.advanceTimersByTime(50);
    expect(sent).toEqual([]);
  });
});
