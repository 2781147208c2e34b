// Safety invariants, checked as the simulation runs. Every check is O(1) or
// O(batch) per event so it can run after every step.

import type { Entry, NodeId } from '../../../../server/raft/core/index.js';
import { BOOTSTRAP_CHAIN, chainNext, EMPTY_CHAIN, entryIdentity } from './hash.js';

export class InvariantViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvariantViolation';
  }
}

/** The chain hashes of one node's durable log, from its snapshot point on. */
export class ChainLog {
  /** Index of chains[0] (the snapshot point). */
  offset: number;
  chains: number[];

  constructor(offset: number, chain: number) {
    this.offset = offset;
    this.chains = [chain];
  }

  lastIndex(): number {
    return this.offset + this.chains.length - 1;
  }

  at(i: number): number | undefined {
    if (i < this.offset) return undefined;
    return this.chains[i - this.offset];
  }
}

export class Checker {
  /** term -> leader id (election safety). */
  private readonly leaders = new Map<number, NodeId>();
  /** "index:term" -> chain (log matching). */
  private readonly entryChains = new Map<string, number>();
  /** index -> chain of the committed prefix ending there. */
  private readonly committed: number[] = [];
  private maxCommitted = 0;
  /** observer term -> highest commit index observed by a node in that term. */
  private readonly commitByTerm = new Map<number, number>();
  /** index -> identity of the entry applied there (state-machine safety). */
  private readonly applied: string[] = [];
  leadersElected = 0;
  /** Conflicting suffixes replaced on some node (divergent logs were exercised). */
  truncations = 0;
  truncatedEntries = 0;

  constructor() {
    this.committed[0] = EMPTY_CHAIN;
    this.committed[1] = BOOTSTRAP_CHAIN;
    this.maxCommitted = 1;
  }

  /** Entries persisted by `node` (a suffix starting at entries[0].index). */
  onPersistEntries(node: NodeId, log: ChainLog, entries: readonly Entry[]): void {
    for (const e of entries) {
      if (e.index <= log.offset) continue;
      const k = e.index - log.offset;
      if (k > log.chains.length) {
        throw new InvariantViolation(`${node}: persisted entry ${e.index} leaves a gap after ${log.lastIndex()}`);
      }
      if (k < log.chains.length) {
        this.truncations++;
        this.truncatedEntries += log.chains.length - k;
      }
      log.chains.length = k;
      const c = chainNext(log.chains[k - 1] as number, e);
      log.chains.push(c);
      const key = `${e.index}:${e.term}`;
      const seen = this.entryChains.get(key);
      if (seen === undefined) this.entryChains.set(key, c);
      else if (seen !== c) {
        throw new InvariantViolation(
          `log matching: ${node} has entry ${e.index} term ${e.term} whose log prefix differs from another node's`,
        );
      }
    }
  }

  /** A snapshot was installed on `node`: its log now starts at the snapshot point. */
  onInstallSnapshot(node: NodeId, index: number): ChainLog {
    const c = this.committed[index];
    if (c === undefined || index > this.maxCommitted) {
      throw new InvariantViolation(`${node}: installed snapshot at ${index} which no node has committed`);
    }
    return new ChainLog(index, c);
  }

  /** `node` durably recorded commit index `commit` while at `term`. */
  onCommit(node: NodeId, log: ChainLog, term: number, commit: number): void {
    if (commit > log.lastIndex()) {
      throw new InvariantViolation(`${node}: commit ${commit} beyond its durable last index ${log.lastIndex()}`);
    }
    if (commit >= log.offset) {
      const mine = log.at(commit) as number;
      if (commit <= this.maxCommitted) {
        if (this.committed[commit] !== mine) {
          throw new InvariantViolation(`committed prefix at ${commit} on ${node} differs from another node's`);
        }
      } else {
        if (log.at(this.maxCommitted) !== undefined && log.at(this.maxCommitted) !== this.committed[this.maxCommitted]) {
          throw new InvariantViolation(`committed prefix at ${this.maxCommitted} on ${node} differs from another node's`);
        }
        for (let i = Math.max(this.maxCommitted + 1, log.offset); i <= commit; i++) {
          this.committed[i] = log.at(i) as number;
        }
        this.maxCommitted = commit;
      }
    }
    if ((this.commitByTerm.get(term) ?? 0) < commit) this.commitByTerm.set(term, commit);
  }

  /** `node` became leader of `term` (observed after persisting its Ready). */
  onLeader(node: NodeId, term: number, log: ChainLog): void {
    const prev = this.leaders.get(term);
    if (prev !== undefined && prev !== node) {
      throw new InvariantViolation(`election safety: ${prev} and ${node} are both leaders of term ${term}`);
    }
    if (prev === undefined) this.leadersElected++;
    this.leaders.set(term, node);
    // Leader completeness: everything committed before this term is in the leader's log.
    let must = 0;
    for (const [t, c] of this.commitByTerm) if (t < term && c > must) must = c;
    if (must === 0 || must < log.offset) return;
    if (must > log.lastIndex() || log.at(must) !== this.committed[must]) {
      throw new InvariantViolation(
        `leader completeness: leader ${node} of term ${term} lacks committed entry ${must} (its last index ${log.lastIndex()})`,
      );
    }
  }

  /** `node` applied `e` to its state machine. */
  onApply(node: NodeId, e: Entry): void {
    const id = entryIdentity(e);
    const prev = this.applied[e.index];
    if (prev === undefined) this.applied[e.index] = id;
    else if (prev !== id) {
      throw new InvariantViolation(`state machine safety: ${node} applied ${id} at ${e.index}, another node applied ${prev}`);
    }
    if (e.index > this.maxCommitted || this.committed[e.index] === undefined) {
      throw new InvariantViolation(`${node} applied entry ${e.index} before any node durably committed it`);
    }
  }
}
