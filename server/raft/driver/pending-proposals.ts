// Proposals waiting for their entry to apply, by log index (etcd's wait.Wait).
// An entry proposed at (index, term) committed iff the entry applied at that
// index has that term; otherwise another leader overwrote it.
import type { ApplyResult } from '../../store/results.js';
import { NoLeaderError } from '../replicator.js';

interface Waiter {
  term: number;
  resolve: (r: ApplyResult) => void;
  reject: (e: Error) => void;
}

const lost = () => new NoLeaderError('write lost to a leader change; retry');

export class PendingProposals {
  private readonly waiters = new Map<number, Waiter>();

  /** Resolves with the entry's result once (index, term) applied; rejects if it was lost. */
  wait(index: number, term: number): Promise<ApplyResult> {
    return new Promise((resolve, reject) => this.waiters.set(index, { term, resolve, reject }));
  }

  /** The entry at `index`, of `term`, applied with `result`. */
  applied(index: number, term: number, result: ApplyResult): void {
    const w = this.waiters.get(index);
    if (!w) return;
    this.waiters.delete(index);
    if (w.term === term) w.resolve(result);
    else w.reject(lost());
  }

  /** Entries up to `index` applied: a proposal still waiting below it was overwritten by another leader's entries. */
  dropBelow(index: number): void {
    if (this.waiters.size === 0) return;
    for (const [i, w] of this.waiters) {
      if (i < index) {
        this.waiters.delete(i);
        w.reject(lost());
      }
    }
  }

  failAll(err: Error): void {
    for (const w of this.waiters.values()) w.reject(err);
    this.waiters.clear();
  }
}
