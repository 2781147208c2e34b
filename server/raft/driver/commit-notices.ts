// Commit notices: the appends without entries that a leader sends to every
// caught-up follower when its commit index advances (raft.ts bcastAppend after
// maybeCommit, as in etcd). Each one costs a frame out, a frame back (the
// follower answers every append) and a Ready on both ends; for one client
// writing in a loop that doubled the messages of a write. They are held here
// for a few milliseconds instead, and dropped when an append with entries to
// the same follower leaves first: the next write's append carries a commit
// index at least as high (the core's commit index never decreases), so the
// follower learns the same thing one message earlier.
//
// Safe because Raft tolerates any message being delayed or lost: the commit
// index a follower knows only decides when it applies, never what is
// committed. Nothing the leader waits for depends on these answers: reads use
// heartbeat rounds (which are not held), and a follower that misses a notice
// hears the index from the next append or heartbeat. What it costs: a
// follower with no write after the last one applies it up to `delayMs` later
// (stale follower reads see it that much later; linearizable reads wait for
// the index the leader's heartbeat round gives them, as before).
import type { Message } from '../core/index.js';

/** How long a commit notice waits for a write's append to carry it instead. */
export const COMMIT_NOTICE_DELAY_MS = 5;

export class CommitNotices {
  private readonly held = new Map<string, Message>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly deliver: (m: Message) => void,
    private readonly delayMs = COMMIT_NOTICE_DELAY_MS,
  ) {}

  /**
   * Called with every outgoing message; returns true when it took the message
   * (a commit notice, held), false when the caller sends it now.
   */
  offer(m: Message): boolean {
    if (m.type !== 'app') return false;
    if (m.entries.length > 0) {
      // Carries a commit index at least as high as the held notice's.
      this.held.delete(m.to);
      return false;
    }
    this.held.set(m.to, m);
    this.timer ??= setTimeout(this.flush, this.delayMs);
    return true;
  }

  /** Number of notices waiting (tests and metrics). */
  get size(): number {
    return this.held.size;
  }

  /** Sends what is held now. */
  readonly flush = (): void => {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const due = [...this.held.values()];
    this.held.clear();
    for (const m of due) this.deliver(m);
  };

  /** Drops what is held (the node is closing). */
  close(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.held.clear();
  }
}
