// Membership (voters, learners), per-member progress, and quorum arithmetic.

import { Progress } from './progress.js';
import type { ConfState, NodeId } from './types.js';

export type VoteResult = 'won' | 'lost' | 'pending';

export class ProgressTracker {
  voters = new Set<NodeId>();
  learners = new Set<NodeId>();
  readonly progress = new Map<NodeId, Progress>();
  votes = new Map<NodeId, boolean>();
  private sortedIds: NodeId[] = [];
  private sortedVoters: NodeId[] = [];

  constructor(
    readonly maxInflight: number,
    readonly maxInflightBytes: number,
  ) {}

  confState(): ConfState {
    return { voters: [...this.sortedVoters], learners: [...this.learners].sort() };
  }

  /** Member ids (voters and learners), sorted. */
  ids(): readonly NodeId[] {
    return this.sortedIds;
  }

  voterIds(): readonly NodeId[] {
    return this.sortedVoters;
  }

  isSingleton(): boolean {
    return this.voters.size === 1;
  }

  quorum(): number {
    return Math.floor(this.voters.size / 2) + 1;
  }

  /** Add or change a member. Progress of a new member starts probing at `next`. */
  setMember(id: NodeId, learner: boolean, next: number): Progress {
    let pr = this.progress.get(id);
    if (!pr) {
      pr = new Progress(next, learner, this.maxInflight, this.maxInflightBytes);
      pr.recentActive = true; // give it a chance before check-quorum counts it
      this.progress.set(id, pr);
    }
    pr.isLearner = learner;
    if (learner) {
      this.voters.delete(id);
      this.learners.add(id);
    } else {
      this.learners.delete(id);
      this.voters.add(id);
    }
    this.resort();
    return pr;
  }

  remove(id: NodeId): void {
    this.voters.delete(id);
    this.learners.delete(id);
    this.progress.delete(id);
    this.votes.delete(id);
    this.resort();
  }

  reset(cs: ConfState, next: number): void {
    this.voters.clear();
    this.learners.clear();
    this.progress.clear();
    this.votes.clear();
    for (const v of cs.voters) this.setMember(v, false, next);
    for (const l of cs.learners) this.setMember(l, true, next);
  }

  private resort(): void {
    this.sortedVoters = [...this.voters].sort();
    this.sortedIds = [...this.progress.keys()].sort();
  }

  /** Largest index replicated on a quorum of voters (0 if there are no voters). */
  committed(): number {
    const n = this.sortedVoters.length;
    if (n === 0) return 0;
    const matches: number[] = [];
    for (const id of this.sortedVoters) matches.push(this.progress.get(id)?.match ?? 0);
    matches.sort((a, b) => b - a);
    return matches[this.quorum() - 1] as number;
  }

  /** Did a quorum of voters talk to us since the last check? The caller's own id counts as active. */
  quorumActive(self: NodeId): boolean {
    let active = 0;
    for (const id of this.sortedVoters) {
      if (id === self || this.progress.get(id)?.recentActive) active++;
    }
    return active >= this.quorum();
  }

  resetVotes(): void {
    this.votes.clear();
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const id of this.sortedVoters) {
      const v = this.votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    const q = this.quorum();
    const n = this.sortedVoters.length;
    let result: VoteResult = 'pending';
    if (granted >= q) result = 'won';
    else if (n - rejected < q) result = 'lost';
    return { granted, rejected, result };
  }

  /** Result of acks (e.g. heartbeat acks for a read) counted over voters. */
  ackResult(acks: ReadonlySet<NodeId>): VoteResult {
    let n = 0;
    for (const id of this.sortedVoters) if (acks.has(id)) n++;
    return n >= this.quorum() ? 'won' : 'pending';
  }
}
