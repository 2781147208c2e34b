// The storage the core reads: the stable (persisted) part of the log, the
// hard state and the latest snapshot. The core never writes to it except
// through `compact`, which the driver asks for. MemoryStorage is a complete
// in-memory implementation (used by tests and usable as a cache in front of
// a log file).

import { CompactedError, RaftInvariantError, UnavailableError } from './errors.js';
import {
  EMPTY_CONF_STATE,
  EMPTY_DATA,
  EMPTY_HARD_STATE,
  entrySize,
  type ConfState,
  type Entry,
  type HardState,
  type Snapshot,
  type SnapshotMeta,
} from './types.js';

export interface InitialState {
  readonly hardState: HardState;
  /** Membership as of the latest snapshot. Later conf changes are replayed by the driver. */
  readonly confState: ConfState;
}

export interface Storage {
  initialState(): InitialState;
  /**
   * Entries in [lo, hi), at most maxBytes in total but always at least one if
   * any exist. Throws CompactedError if lo <= snapshot index, UnavailableError
   * if hi > lastIndex() + 1.
   */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /** Term of entry i; i may be the snapshot index. Throws CompactedError / UnavailableError. */
  term(i: number): number;
  /** Index of the first available entry (snapshot index + 1). */
  firstIndex(): number;
  /** Index of the last stored entry (snapshot index if none). */
  lastIndex(): number;
  /** Latest snapshot. May throw SnapshotTemporarilyUnavailableError. */
  snapshot(): Snapshot;
  /**
   * The driver has durably saved `snapshot` (a state-machine image as of
   * snapshot.meta.index): drop entries up to that index.
   */
  compact(snapshot: Snapshot): void;
}

/** Snapshot meta of a fresh cluster: index 1, term 1, the initial voters. */
export function bootstrapSnapshot(voters: readonly string[], data: Uint8Array = EMPTY_DATA): Snapshot {
  return {
    meta: { index: 1, term: 1, confState: { voters: [...voters].sort(), learners: [] } },
    data,
  };
}

/**
 * In-memory Storage. `ents[0]` is a dummy entry standing for the snapshot
 * point, so ents[i - offset] is entry i. Appends and truncations are O(batch).
 */
export class MemoryStorage implements Storage {
  private hard: HardState = EMPTY_HARD_STATE;
  private snap: Snapshot = { meta: { index: 0, term: 0, confState: EMPTY_CONF_STATE }, data: EMPTY_DATA };
  private ents: Entry[] = [{ index: 0, term: 0, type: 'noop', data: EMPTY_DATA }];

  /** A storage for a brand-new cluster member of the initial configuration. */
  static bootstrap(voters: readonly string[], data: Uint8Array = EMPTY_DATA): MemoryStorage {
    const s = new MemoryStorage();
    s.applySnapshot(bootstrapSnapshot(voters, data));
    s.setHardState({ term: 1, vote: '', commit: 1 });
    return s;
  }

  initialState(): InitialState {
    return { hardState: this.hard, confState: this.snap.meta.confState };
  }

  hardState(): HardState {
    return this.hard;
  }

  setHardState(h: HardState): void {
    this.hard = h;
  }

  private get offset(): number {
    return (this.ents[0] as Entry).index;
  }

  firstIndex(): number {
    return this.offset + 1;
  }

  lastIndex(): number {
    return this.offset + this.ents.length - 1;
  }

  term(i: number): number {
    const off = this.offset;
    if (i < off) throw new CompactedError(i);
    if (i - off >= this.ents.length) throw new UnavailableError(i);
    return (this.ents[i - off] as Entry).term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const off = this.offset;
    if (lo <= off) throw new CompactedError(lo);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi - 1);
    const out: Entry[] = [];
    let size = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.ents[i - off] as Entry;
      size += entrySize(e);
      if (out.length > 0 && size > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Persist entries; a conflicting suffix is replaced. */
  append(entries: readonly Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    const off = this.offset;
    const last = entries[entries.length - 1] as Entry;
    if (last.index <= off) return; // entirely compacted
    let start = 0;
    if (first.index <= off) start = off + 1 - first.index;
    const from = first.index + start;
    if (from > this.lastIndex() + 1) {
      throw new RaftInvariantError(`storage append gap: last ${this.lastIndex()}, appending ${from}`);
    }
    this.ents.length = from - off; // truncate conflicting suffix
    for (let k = start; k < entries.length; k++) this.ents.push(entries[k] as Entry);
  }

  /** Install a snapshot received from the leader (replaces the whole log). */
  applySnapshot(s: Snapshot): void {
    if (s.meta.index <= this.snap.meta.index) return; // out of date
    this.snap = s;
    this.ents = [{ index: s.meta.index, term: s.meta.term, type: 'noop', data: EMPTY_DATA }];
  }

  compact(s: Snapshot): void {
    const off = this.offset;
    const i = s.meta.index;
    if (i <= off) return;
    if (i > this.lastIndex()) throw new RaftInvariantError(`compact ${i} beyond last index ${this.lastIndex()}`);
    if (this.term(i) !== s.meta.term) throw new RaftInvariantError(`compact ${i}: term mismatch`);
    this.snap = s;
    const keep = this.ents.slice(i - off);
    keep[0] = { index: i, term: s.meta.term, type: 'noop', data: EMPTY_DATA };
    this.ents = keep;
  }

  /** Snapshot meta helper for tests. */
  snapshotMeta(): SnapshotMeta {
    return this.snap.meta;
  }
}
