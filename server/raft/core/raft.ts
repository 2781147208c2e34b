// The Raft state machine (after etcd-io/raft's raft.go). Pure and
// deterministic: it only reacts to step()/tick()/API calls, reads Storage,
// and queues outgoing messages and read states for the driver (node.ts).

import { encodeConfChange } from './confchange.js';
import { RaftInvariantError, SnapshotTemporarilyUnavailableError } from './errors.js';
import { RaftLog } from './log.js';
import type { Rng } from './rand.js';
import { ReadOnly } from './readonly.js';
import type { Storage } from './storage.js';
import { ProgressTracker } from './tracker.js';
import {
  EMPTY_DATA,
  entrySize,
  isEmptyHardState,
  message,
  NONE,
  type ConfChange,
  type ConfState,
  type Entry,
  type EntryType,
  type HardState,
  type Message,
  type MessageType,
  type NodeId,
  type ReadState,
  type Role,
  type Snapshot,
  type SoftState,
} from './types.js';

export interface Config {
  /** This node's id; must be non-empty. */
  id: NodeId;
  storage: Storage;
  /** Source of election-timeout jitter (seeded in tests). */
  rng: Rng;
  /** Ticks without hearing from a leader before campaigning (randomized in [n, 2n)). Default 10. */
  electionTick?: number;
  /** Ticks between leader heartbeats. Default 1. Must be < electionTick. */
  heartbeatTick?: number;
  /** Last index already applied by the state machine (if it survives restarts). Default: snapshot index. */
  applied?: number;
  /** Max entries per MsgApp. Default 64. */
  maxMsgEntries?: number;
  /** Max bytes of entries per MsgApp (at least one entry is always sent). Default 1 MiB. */
  maxMsgBytes?: number;
  /** Max MsgApps in flight per follower in replicate state (pipelining window). Default 64. */
  maxInflightMsgs?: number;
  /** Max bytes in flight per follower; 0 = unlimited. Default 0. */
  maxInflightBytes?: number;
  /** Max bytes of committed entries handed out per Ready. Default 4 MiB. */
  maxApplyBytes?: number;
  /** Pre-vote phase before real elections (no term inflation by partitioned nodes). Default true. */
  preVote?: boolean;
  /** Leader steps down without quorum contact; followers with a live leader ignore votes. Default true. */
  checkQuorum?: boolean;
  /** A learner may be promoted once its match is within this many entries of the commit index. Default maxMsgEntries. */
  promotionLag?: number;
  /**
   * The node starts with an empty (wiped or brand-new) log in an already
   * formed cluster: it must neither campaign nor grant (pre-)votes, since a
   * vote from a node that forgot what it acknowledged could elect a leader
   * missing committed entries. Cleared once it has applied a configuration
   * listing itself as a LEARNER (an addLearner conf change for itself, or a
   * restored snapshot). Not persisted by the core. Default false.
   */
  awaitingJoin?: boolean;
  /**
   * The driver serves lease-based reads on the leader (server/raft/lease.ts).
   * Their safety rests on voters refusing (pre-)votes for an election
   * timeout after they last heard the leader, and a restart must not cut
   * that short: with this set, a node also refuses them for its first
   * electionTick ticks after it starts. Default false.
   */
  leaseReads?: boolean;
}

export type ProposeError =
  | 'not_leader'
  | 'transfer_in_progress'
  | 'conf_change_pending'
  | 'invalid_conf_change'
  | 'learner_not_caught_up';

export type ProposeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | { readonly ok: false; readonly reason: ProposeError };

type CampaignType = 'preElection' | 'election' | 'transfer';

/** Vote context marking an election forced by leadership transfer (bypasses leases). */
export const CAMPAIGN_TRANSFER = 'transfer';

type Tail = Partial<Message> & Pick<Message, 'type' | 'to'>;

export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  lead: NodeId = NONE;
  role: Role = 'follower';
  readonly log: RaftLog;
  tracker: ProgressTracker;
  /** Outgoing messages, drained by the driver via Ready. */
  msgs: Message[] = [];
  /** Released reads, drained by the driver via Ready. */
  readStates: ReadState[] = [];

  readonly electionTimeout: number;
  readonly heartbeatTimeout: number;
  randomizedElectionTimeout = 0;
  electionElapsed = 0;
  heartbeatElapsed = 0;

  leadTransferee: NodeId = NONE;
  /** Index of the last conf change proposed by this leader; only one may be unapplied. */
  pendingConfIndex = 0;
  readOnly = new ReadOnly();
  private pendingReadIndexMessages: Message[] = [];
  /** Entries were proposed and not yet offered to the followers (see propose). */
  private appendsDeferred = false;

  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  /** See Config.awaitingJoin: no campaigning and no votes until re-added as a learner. */
  awaitingJoin: boolean;
  readonly leaseReads: boolean;
  /** Ticks since this node started, counted up to electionTimeout (see Config.leaseReads). */
  private ticksSinceStart = 0;
  private readonly rng: Rng;
  private readonly maxMsgEntries: number;
  private readonly maxMsgBytes: number;
  private readonly promotionLag: number;

  constructor(c: Config) {
    if (!c.id) throw new RaftInvariantError('node id must be non-empty');
    this.id = c.id;
    this.rng = c.rng;
    this.electionTimeout = c.electionTick ?? 10;
    this.heartbeatTimeout = c.heartbeatTick ?? 1;
    if (this.heartbeatTimeout <= 0 || this.electionTimeout <= this.heartbeatTimeout) {
      throw new RaftInvariantError('electionTick must be greater than heartbeatTick > 0');
    }
    this.maxMsgEntries = c.maxMsgEntries ?? 64;
    this.maxMsgBytes = c.maxMsgBytes ?? 1 << 20;
    this.promotionLag = c.promotionLag ?? this.maxMsgEntries;
    this.preVote = c.preVote ?? true;
    this.checkQuorum = c.checkQuorum ?? true;
    this.awaitingJoin = c.awaitingJoin ?? false;
    this.leaseReads = c.leaseReads ?? false;
    this.log = new RaftLog(c.storage, c.maxApplyBytes ?? 4 << 20);
    this.tracker = new ProgressTracker(c.maxInflightMsgs ?? 64, c.maxInflightBytes ?? 0);

    const { hardState, confState } = c.storage.initialState();
    this.tracker.reset(confState, this.log.lastIndex() + 1);
    this.maybeJoined();
    if (!isEmptyHardState(hardState)) this.loadState(hardState);
    if (c.applied !== undefined && c.applied > 0) this.log.appliedTo(c.applied);
    this.becomeFollower(this.term, NONE);
  }

  // ---- state accessors -------------------------------------------------

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  softState(): SoftState {
    return { lead: this.lead, role: this.role };
  }

  confState(): ConfState {
    return this.tracker.confState();
  }

  private loadState(hs: HardState): void {
    if (hs.commit < this.log.committed || hs.commit > this.log.lastIndex()) {
      throw new RaftInvariantError(`hard state commit ${hs.commit} out of range [${this.log.committed}, ${this.log.lastIndex()}]`);
    }
    this.log.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  private promotable(): boolean {
    if (this.awaitingJoin) return false;
    const pr = this.tracker.progress.get(this.id);
    return pr !== undefined && !pr.isLearner && !this.log.hasPendingSnapshot();
  }

  /** An awaiting node that sees itself as a learner in its configuration has been (re-)added: it may vote from now on. */
  private maybeJoined(): void {
    if (this.awaitingJoin && this.tracker.progress.get(this.id)?.isLearner === true) this.awaitingJoin = false;
  }

  // ---- sending ---------------------------------------------------------

  private send(m: Tail): void {
    const type = m.type;
    let term = m.term ?? 0;
    if (type === 'vote' || type === 'voteResp' || type === 'preVote' || type === 'preVoteResp') {
      if (term === 0) throw new RaftInvariantError(`term should be set when sending ${type}`);
    } else if (type !== 'readIndex') {
      term = this.term;
    }
    this.msgs.push(message({ ...m, from: m.from || this.id, term }));
  }

  /** Send an append (or snapshot) to `to` if its progress allows. */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.tracker.progress.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    let ents: Entry[] | undefined = [];
    if (pr.state !== 'replicate' || !pr.inflights.full()) {
      ents = this.log.entries(pr.next, this.maxMsgBytes, this.maxMsgEntries);
    }
    if (ents !== undefined && ents.length === 0 && !sendIfEmpty) return false;

    if (prevTerm === undefined || ents === undefined) {
      // The entries the follower needs are compacted: send a snapshot.
      if (!pr.recentActive) return false;
      let snap: Snapshot;
      try {
        snap = this.log.snapshot();
      } catch (err) {
        if (err instanceof SnapshotTemporarilyUnavailableError) return false;
        throw err;
      }
      if (snap.meta.index === 0) throw new RaftInvariantError('need non-empty snapshot');
      pr.becomeSnapshot(snap.meta.index);
      this.send({ to, type: 'snap', snapshot: snap });
      return true;
    }
    let bytes = 0;
    for (const e of ents) bytes += entrySize(e);
    this.send({ to, type: 'app', index: prevIndex, logTerm: prevTerm, entries: ents, commit: this.log.committed });
    pr.sentEntries(ents.length, bytes);
    return true;
  }

  private sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  private bcastAppend(): void {
    for (const id of this.tracker.ids()) {
      if (id !== this.id) this.sendAppend(id);
    }
  }

  private sendHeartbeat(to: NodeId, context: string | undefined): void {
    const pr = this.tracker.progress.get(to);
    const commit = Math.min(pr?.match ?? 0, this.log.committed);
    this.send({ to, type: 'heartbeat', commit, context });
  }

  private bcastHeartbeat(context: string | undefined = this.readOnly.lastPendingContext()): void {
    for (const id of this.tracker.ids()) {
      if (id !== this.id) this.sendHeartbeat(id, context);
    }
  }

  // ---- role transitions --------------------------------------------------

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.electionTimeout + this.rng.int(this.electionTimeout);
    this.leadTransferee = NONE;
    this.tracker.resetVotes();
    const last = this.log.lastIndex();
    for (const [id, pr] of this.tracker.progress) {
      pr.becomeProbe();
      pr.match = id === this.id ? last : 0;
      pr.next = last + 1;
      pr.recentActive = false;
    }
    this.pendingConfIndex = 0;
    this.readOnly = new ReadOnly();
    this.pendingReadIndexMessages = [];
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.lead = lead;
    this.role = 'follower';
  }

  private becomePreCandidate(): void {
    if (this.role === 'leader') throw new RaftInvariantError('leader cannot become pre-candidate');
    // Pre-candidates keep their term and vote.
    this.tracker.resetVotes();
    this.lead = NONE;
    this.role = 'preCandidate';
  }

  private becomeCandidate(): void {
    if (this.role === 'leader') throw new RaftInvariantError('leader cannot become candidate');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
  }

  private becomeLeader(): void {
    if (this.role === 'follower') throw new RaftInvariantError('follower cannot become leader');
    this.reset(this.term);
    this.lead = this.id;
    this.role = 'leader';
    const self = this.tracker.progress.get(this.id);
    if (self) {
      self.becomeReplicate();
      self.recentActive = true;
    }
    // Conservatively treat everything in the log as possibly holding an unapplied conf change.
    this.pendingConfIndex = this.log.lastIndex();
    // The no-op lets the leader commit (and so learn the commit index) in its own term.
    this.appendEntries([{ type: 'noop', data: EMPTY_DATA }]);
    this.bcastAppend();
  }

  private hup(t: CampaignType): void {
    if (this.role === 'leader') return;
    if (!this.promotable()) return;
    if (this.hasUnappliedConfChanges()) return;
    this.campaign(t);
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    let lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    const hi = this.log.committed + 1;
    while (lo < hi) {
      const ents = this.log.slice(lo, hi, 1 << 20, 1024);
      if (!ents || ents.length === 0) return false;
      for (const e of ents) if (e.type === 'confChange') return true;
      lo += ents.length;
    }
    return false;
  }

  private campaign(t: CampaignType): void {
    let term: number;
    let voteType: MessageType;
    if (t === 'preElection') {
      this.becomePreCandidate();
      voteType = 'preVote';
      term = this.term + 1; // the term we would campaign in
    } else {
      this.becomeCandidate();
      voteType = 'vote';
      term = this.term;
    }
    if (this.poll(this.id, true) === 'won') {
      // Single voter.
      if (t === 'preElection') this.campaign('election');
      else this.becomeLeader();
      return;
    }
    const index = this.log.lastIndex();
    const logTerm = this.log.lastTerm();
    const context = t === 'transfer' ? CAMPAIGN_TRANSFER : undefined;
    for (const id of this.tracker.voterIds()) {
      if (id === this.id) continue;
      this.send({ to: id, term, type: voteType, index, logTerm, context });
    }
  }

  private poll(id: NodeId, granted: boolean): 'won' | 'lost' | 'pending' {
    this.tracker.recordVote(id, granted);
    return this.tracker.tallyVotes().result;
  }

  // ---- ticks -------------------------------------------------------------

  tick(): void {
    if (this.ticksSinceStart < this.electionTimeout) this.ticksSinceStart++;
    if (this.role === 'leader') this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.step(message({ type: 'hup', from: this.id }));
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) this.step(message({ type: 'checkQuorum', from: this.id }));
      // A transfer that has not finished within an election timeout is abandoned.
      if (this.role === 'leader' && this.leadTransferee !== NONE) this.leadTransferee = NONE;
    }
    if (this.role !== 'leader') return;
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.step(message({ type: 'beat', from: this.id }));
    }
  }

  // ---- step --------------------------------------------------------------

  step(m: Message): void {
    if (m.term === 0) {
      // local message or term-less forward
    } else if (m.term > this.term) {
      if (m.type === 'vote' || m.type === 'preVote') {
        const force = m.context === CAMPAIGN_TRANSFER;
        // Leader lease: while we hear from a live leader, ignore disruptive candidates (and, under
        // lease reads, for an election timeout after starting: we may have heard one just before).
        const inLease =
          this.checkQuorum &&
          ((this.lead !== NONE && this.electionElapsed < this.electionTimeout) || (this.leaseReads && this.ticksSinceStart < this.electionTimeout));
        if (!force && inLease) return;
      }
      if (m.type === 'preVote') {
        // Never change term in response to a pre-vote.
      } else if (m.type === 'preVoteResp' && !m.reject) {
        // Granted pre-votes carry the future term; we bump it once we win.
      } else if (m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === 'heartbeat' || m.type === 'app')) {
        // A stale leader (e.g. after a partition) learns our term and steps down.
        this.send({ to: m.from, type: 'appResp' });
      } else if (m.type === 'preVote') {
        this.send({ to: m.from, term: this.term, type: 'preVoteResp', reject: true });
      }
      return;
    }

    switch (m.type) {
      case 'hup':
        this.hup(this.preVote ? 'preElection' : 'election');
        return;
      case 'vote':
      case 'preVote': {
        const respType: MessageType = m.type === 'vote' ? 'voteResp' : 'preVoteResp';
        const canVote =
          !this.awaitingJoin &&
          (this.vote === m.from ||
            (this.vote === NONE && this.lead === NONE) ||
            (m.type === 'preVote' && m.term > this.term));
        if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
          this.send({ to: m.from, term: m.term, type: respType });
          if (m.type === 'vote') {
            this.electionElapsed = 0;
            this.vote = m.from;
          }
        } else if (this.term > 0) {
          // (A wiped node at term 0 has no term to reject with; silence is a rejection too.)
          this.send({ to: m.from, term: this.term, type: respType, reject: true });
        }
        return;
      }
      default:
        switch (this.role) {
          case 'leader':
            this.stepLeader(m);
            return;
          case 'candidate':
          case 'preCandidate':
            this.stepCandidate(m);
            return;
          case 'follower':
            this.stepFollower(m);
            return;
        }
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case 'beat':
        this.bcastHeartbeat();
        return;
      case 'checkQuorum':
        if (!this.tracker.quorumActive(this.id)) {
          this.becomeFollower(this.term, NONE);
        }
        for (const [id, pr] of this.tracker.progress) pr.recentActive = id === this.id;
        return;
      case 'readIndex':
        this.leaderReadIndex(m);
        return;
      default:
        break;
    }

    const pr = this.tracker.progress.get(m.from);
    if (!pr) return;
    switch (m.type) {
      case 'appResp': {
        pr.recentActive = true;
        if (m.reject) {
          let nextProbe = m.rejectHint;
          if (m.logTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
          if (pr.maybeDecrTo(m.index, nextProbe)) {
            if (pr.state === 'replicate') pr.becomeProbe();
            this.sendAppend(m.from);
          }
          return;
        }
        const oldPaused = pr.isPaused();
        if (!pr.maybeUpdate(m.index)) return;
        if (pr.state === 'probe') {
          pr.becomeReplicate();
        } else if (pr.state === 'snapshot' && pr.match + 1 >= this.log.firstIndex()) {
          // The follower caught up far enough (snapshot installed or log already there).
          pr.becomeProbe();
          pr.becomeReplicate();
        } else if (pr.state === 'replicate') {
          pr.inflights.freeLE(m.index);
        }
        if (this.maybeCommit()) {
          this.releasePendingReadIndexMessages();
          this.bcastAppend();
        } else if (oldPaused) {
          this.sendAppend(m.from);
        }
        // Pipelining: keep the window full.
        while (this.maybeSendAppend(m.from, false)) {
          // loop
        }
        if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
          this.send({ to: m.from, type: 'timeoutNow' });
        }
        return;
      }
      case 'heartbeatResp': {
        pr.recentActive = true;
        pr.probeSent = false;
        if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirst();
        if (pr.match < this.log.lastIndex()) this.sendAppend(m.from);
        if (m.context === undefined) return;
        const acks = this.readOnly.recvAck(m.from, m.context);
        if (!acks || this.tracker.ackResult(acks) !== 'won') return;
        for (const rs of this.readOnly.advance(m.context)) this.respondReadIndex(rs.from, rs.context, rs.index);
        return;
      }
      case 'snapStatus':
        if (pr.state !== 'snapshot') return;
        if (m.reject) pr.pendingSnapshot = 0;
        pr.becomeProbe();
        // Wait for the next heartbeat response before probing again.
        pr.probeSent = true;
        return;
      case 'unreachable':
        if (pr.state === 'replicate') pr.becomeProbe();
        return;
      case 'transferLeader': {
        if (pr.isLearner) return;
        const transferee = m.from;
        if (this.leadTransferee !== NONE) {
          if (this.leadTransferee === transferee) return;
          this.leadTransferee = NONE;
        }
        if (transferee === this.id) return;
        this.electionElapsed = 0; // the transfer must finish within one election timeout
        this.leadTransferee = transferee;
        if (pr.match === this.log.lastIndex()) this.send({ to: transferee, type: 'timeoutNow' });
        else this.sendAppend(transferee);
        return;
      }
      default:
        return;
    }
  }

  private stepCandidate(m: Message): void {
    const myRespType: MessageType = this.role === 'preCandidate' ? 'preVoteResp' : 'voteResp';
    switch (m.type) {
      case 'app':
        this.becomeFollower(m.term, m.from);
        this.handleAppendEntries(m);
        return;
      case 'heartbeat':
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case 'snap':
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      default:
        if (m.type !== myRespType) return;
        switch (this.poll(m.from, !m.reject)) {
          case 'won':
            if (this.role === 'preCandidate') this.campaign('election');
            else this.becomeLeader();
            return;
          case 'lost':
            this.becomeFollower(this.term, NONE);
            return;
          case 'pending':
            return;
        }
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'app':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppendEntries(m);
        return;
      case 'heartbeat':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return;
      case 'snap':
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return;
      case 'transferLeader':
        if (this.lead === NONE) return;
        this.send({ ...m, to: this.lead, term: 0 });
        return;
      case 'timeoutNow':
        // Leadership transfer: campaign immediately, skipping pre-vote and leases.
        this.hup('transfer');
        return;
      case 'readIndexResp':
        this.readStates.push({ index: m.index, context: m.context ?? '' });
        return;
      default:
        return;
    }
  }

  private handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      this.send({ to: m.from, type: 'appResp', index: this.log.committed });
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.send({ to: m.from, type: 'appResp', index: lastNew });
      return;
    }
    // Reject with a hint: the largest index <= min(m.index, last) whose term <= m.logTerm.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.send({
      to: m.from,
      type: 'appResp',
      index: m.index,
      reject: true,
      rejectHint: hint.index,
      logTerm: hint.term,
    });
  }

  private handleHeartbeat(m: Message): void {
    // A heartbeat's commit is bounded by the leader's idea of our match, which
    // is stale if our data was wiped: a node awaiting join only commits what an
    // append verified (prev index/term), never what a heartbeat claims.
    if (!this.awaitingJoin) this.log.commitTo(m.commit);
    this.send({ to: m.from, type: 'heartbeatResp', context: m.context });
  }

  private handleSnapshot(m: Message): void {
    const s = m.snapshot;
    if (!s) return;
    if (this.restore(s)) this.send({ to: m.from, type: 'appResp', index: this.log.lastIndex() });
    else this.send({ to: m.from, type: 'appResp', index: this.log.committed });
  }

  /** Install a snapshot from the leader. Returns false if it was ignored or only fast-forwarded the commit. */
  private restore(s: Snapshot): boolean {
    if (s.meta.index <= this.log.committed) return false;
    if (this.role !== 'follower') {
      this.becomeFollower(this.term + 1, NONE);
      return false;
    }
    if (this.log.matchTerm(s.meta.index, s.meta.term)) {
      // We already have the entries: just fast-forward the commit index.
      this.log.commitTo(s.meta.index);
      return false;
    }
    this.log.restore(s);
    this.tracker.reset(s.meta.confState, this.log.lastIndex() + 1);
    const self = this.tracker.progress.get(this.id);
    if (self) self.match = s.meta.index;
    this.maybeJoined();
    return true;
  }

  private maybeCommit(): boolean {
    return this.log.maybeCommit(this.tracker.committed(), this.term);
  }

  // ---- proposals -----------------------------------------------------------

  private appendEntries(es: readonly { type: EntryType; data: Uint8Array }[]): number {
    let index = this.log.lastIndex();
    const ents: Entry[] = [];
    for (const e of es) ents.push({ term: this.term, index: ++index, type: e.type, data: e.data });
    const last = this.log.append(ents);
    this.tracker.progress.get(this.id)?.maybeUpdate(last);
    this.maybeCommit();
    return last;
  }

  propose(type: EntryType, data: Uint8Array): ProposeResult {
    if (this.role !== 'leader') return { ok: false, reason: 'not_leader' };
    if (!this.tracker.progress.has(this.id)) return { ok: false, reason: 'not_leader' };
    if (this.leadTransferee !== NONE) return { ok: false, reason: 'transfer_in_progress' };
    const index = this.appendEntries([{ type, data }]);
    if (type === 'confChange') this.pendingConfIndex = index;
    // Sent when the driver next collects a Ready (flushAppends): proposals made
    // meanwhile travel as one append per follower, and each follower answers
    // once, instead of a message and an answer per proposal.
    this.appendsDeferred = true;
    return { ok: true, index, term: this.term };
  }

  /** Sends the entries proposed since the last Ready to every follower that can take them. */
  flushAppends(): void {
    if (!this.appendsDeferred) return;
    this.appendsDeferred = false;
    if (this.role !== 'leader') return;
    for (const id of this.tracker.ids()) {
      if (id !== this.id) this.maybeSendAppend(id, false);
    }
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    if (this.role !== 'leader') return { ok: false, reason: 'not_leader' };
    if (this.pendingConfIndex > this.log.applied) return { ok: false, reason: 'conf_change_pending' };
    const t = this.tracker;
    switch (cc.type) {
      case 'addLearner':
        if (t.progress.has(cc.nodeId)) return { ok: false, reason: 'invalid_conf_change' };
        break;
      case 'addVoter': {
        // Voters join as learners first and are promoted once caught up.
        const pr = t.progress.get(cc.nodeId);
        if (!pr || !pr.isLearner) return { ok: false, reason: 'invalid_conf_change' };
        if (pr.match + this.promotionLag < this.log.committed) return { ok: false, reason: 'learner_not_caught_up' };
        break;
      }
      case 'removeNode':
        if (!t.progress.has(cc.nodeId)) return { ok: false, reason: 'invalid_conf_change' };
        if (t.voters.has(cc.nodeId) && t.voters.size <= 1) return { ok: false, reason: 'invalid_conf_change' };
        break;
    }
    return this.propose('confChange', encodeConfChange(cc));
  }

  /** Apply a committed conf change (called by the driver when it applies the entry). */
  applyConfChange(cc: ConfChange): ConfState {
    const t = this.tracker;
    const next = this.log.lastIndex() + 1;
    switch (cc.type) {
      case 'addLearner':
        if (!t.progress.has(cc.nodeId)) t.setMember(cc.nodeId, true, next);
        break;
      case 'addVoter':
        t.setMember(cc.nodeId, false, next);
        break;
      case 'removeNode':
        t.remove(cc.nodeId);
        break;
    }
    if (cc.type === 'addLearner' && cc.nodeId === this.id) this.maybeJoined();
    const self = t.progress.get(this.id);
    if (this.role === 'leader') {
      if (!self || self.isLearner) {
        // Removed (or demoted) leader steps down; the rest elect a new one.
        this.becomeFollower(this.term, NONE);
      } else {
        if (this.leadTransferee !== NONE && !t.voters.has(this.leadTransferee)) this.leadTransferee = NONE;
        if (this.maybeCommit()) this.bcastAppend();
        else for (const id of t.ids()) if (id !== this.id) this.maybeSendAppend(id, false);
      }
    }
    return t.confState();
  }

  // ---- reads ---------------------------------------------------------------

  /** Request a linearizable read; the released ReadState shows up in a later Ready. */
  readIndex(context: string): boolean {
    if (this.role === 'leader') {
      this.leaderReadIndex(message({ type: 'readIndex', from: this.id, context }));
      return true;
    }
    if (this.lead === NONE) return false;
    this.send({ to: this.lead, type: 'readIndex', context });
    return true;
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  private leaderReadIndex(m: Message): void {
    const ctx = m.context;
    if (ctx === undefined) return;
    if (!this.tracker.progress.has(m.from) && m.from !== this.id) return;
    if (this.tracker.isSingleton() && this.tracker.voters.has(this.id)) {
      this.respondReadIndex(m.from, ctx, this.log.committed);
      return;
    }
    if (!this.committedEntryInCurrentTerm()) {
      // We do not know the true commit index until our no-op commits.
      this.pendingReadIndexMessages.push(m);
      return;
    }
    this.sendReadIndexRound(m.from, ctx);
  }

  private sendReadIndexRound(from: NodeId, ctx: string): void {
    this.readOnly.addRequest(this.log.committed, from, ctx);
    const acks = this.readOnly.recvAck(this.id, ctx);
    if (acks && this.tracker.ackResult(acks) === 'won') {
      for (const rs of this.readOnly.advance(ctx)) this.respondReadIndex(rs.from, rs.context, rs.index);
      return;
    }
    this.bcastHeartbeat(ctx);
  }

  private releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0 || !this.committedEntryInCurrentTerm()) return;
    const msgs = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of msgs) if (m.context !== undefined) this.sendReadIndexRound(m.from, m.context);
  }

  private respondReadIndex(from: NodeId, context: string, index: number): void {
    if (from === NONE || from === this.id) this.readStates.push({ index, context });
    else this.send({ to: from, type: 'readIndexResp', index, context });
  }

  // ---- leadership transfer --------------------------------------------------

  transferLeadership(to: NodeId): void {
    this.step(message({ type: 'transferLeader', from: to, to: this.id }));
  }
}
