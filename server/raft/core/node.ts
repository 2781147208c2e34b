// RaftNode: the driver-facing wrapper around the Raft state machine
// (etcd-io/raft's RawNode). Single-threaded; the driver calls it from one
// loop. See index.ts for the contract.

import { RaftInvariantError } from './errors.js';
import { Raft, type Config, type ProposeResult } from './raft.js';
import type { ProgressState } from './progress.js';
import {
  hardStateEqual,
  LOCAL_MESSAGE_TYPES,
  message,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type NodeId,
  type ReadState,
  type Role,
  type Snapshot,
  type SnapshotMeta,
  type SoftState,
} from './types.js';

export interface Ready {
  /** Set when leader or role changed since the last Ready. Not persisted. */
  readonly softState?: SoftState;
  /** Set when term/vote/commit changed: persist (with `entries`) before sending `messages`. */
  readonly hardState?: HardState;
  /** Snapshot received from the leader: persist it and restore the state machine from it. */
  readonly snapshot?: Snapshot;
  /** Entries to append to stable storage (a suffix from entries[0].index replaces what is there). */
  readonly entries: readonly Entry[];
  /** Messages to send, only after hardState/entries/snapshot are durable. */
  readonly messages: readonly Message[];
  /** Committed entries to apply to the state machine, in order (after persisting). */
  readonly committedEntries: readonly Entry[];
  /** Released linearizable reads: serve each once applied index >= its index. */
  readonly readStates: readonly ReadState[];
  /** true if hardState (term/vote) or entries must be fsynced before messages go out. */
  readonly mustSync: boolean;
}

export interface ProgressStatus {
  readonly match: number;
  readonly next: number;
  readonly state: ProgressState;
  readonly isLearner: boolean;
  readonly recentActive: boolean;
}

/** What a driver asks on its hot paths: cheap, no per-member progress (etcd's BasicStatus). */
export interface BasicStatus {
  readonly id: NodeId;
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lead: NodeId;
  readonly role: Role;
  readonly confState: ConfState;
  readonly leadTransferee: NodeId;
  /** Config.awaitingJoin still holds: this node neither campaigns nor votes until re-added as a learner. */
  readonly awaitingJoin: boolean;
  /** Leader: index of the last conf change it proposed (or its log end when elected); a new one may be proposed once applied > this. */
  readonly pendingConfIndex: number;
}

export interface Status extends BasicStatus {
  readonly firstIndex: number;
  readonly lastIndex: number;
  /** Leader only: per-member replication progress. */
  readonly progress: ReadonlyMap<NodeId, ProgressStatus>;
}

export type { Config, ProposeResult, ProposeError } from './raft.js';

export class RaftNode {
  /** The state machine; exposed for tests and diagnostics. */
  readonly raft: Raft;
  private prevSoft: SoftState;
  private prevHard: HardState;
  private outstanding = false;

  constructor(config: Config) {
    this.raft = new Raft(config);
    this.prevSoft = this.raft.softState();
    this.prevHard = this.raft.hardState();
  }

  get id(): NodeId {
    return this.raft.id;
  }

  /** Advance logical time by one tick (drives elections and heartbeats). */
  tick(): void {
    this.raft.tick();
  }

  /** Start an election now (if this node may campaign). */
  campaign(): void {
    this.raft.step(message({ type: 'hup', from: this.raft.id }));
  }

  /** Feed a message received from the network. Local-only message types are ignored. */
  step(m: Message): void {
    if (LOCAL_MESSAGE_TYPES.has(m.type)) return;
    if (m.to !== this.raft.id) return;
    // Messages from nodes we do not know are only useful if they come from a leader or candidate.
    this.raft.step(m);
  }

  /** Append a normal entry (leader only). The entry is committed once (index, term) is applied. */
  propose(data: Uint8Array): ProposeResult {
    return this.raft.propose('normal', data);
  }

  /** Propose a membership change (leader only, one at a time, learners first). */
  proposeConfChange(cc: ConfChange): ProposeResult {
    return this.raft.proposeConfChange(cc);
  }

  /** The driver applied a committed confChange entry: change membership now. */
  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  /**
   * Request a linearizable read identified by `context` (unique per request).
   * Returns false if no leader is known (retry later). The ReadState arrives
   * in a later Ready, possibly never (leader change): time out and retry.
   */
  readIndex(context: string): boolean {
    return this.raft.readIndex(context);
  }

  /** Ask the leader to hand leadership to `to` (forwarded if we are a follower). */
  transferLeadership(to: NodeId): void {
    this.raft.transferLeadership(to);
  }

  /** The transport could not reach `id`. */
  reportUnreachable(id: NodeId): void {
    this.raft.step(message({ type: 'unreachable', from: id, to: this.raft.id }));
  }

  /** The transport finished (ok) or gave up (failed) streaming a snapshot to `id`. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.step(message({ type: 'snapStatus', from: id, to: this.raft.id, reject: !ok }));
  }

  /**
   * The driver has a durable state-machine image `data` as of applied index
   * `index` (whose entry has term `term`; membership `confState`). Storage
   * drops the log up to `index`; followers further behind get this snapshot.
   * Returns undefined (and does nothing) if a newer snapshot already covers `index`.
   */
  compact(index: number, term: number, confState: ConfState, data: Uint8Array): SnapshotMeta | undefined {
    const log = this.raft.log;
    if (index > log.applied) throw new RaftInvariantError(`compact ${index} beyond applied ${log.applied}`);
    // Already covered by a newer snapshot (possibly one still being installed): nothing to do.
    if (index <= log.firstIndex() - 1) return undefined;
    const t = log.term(index);
    if (t !== term) throw new RaftInvariantError(`compact ${index}: term ${term} does not match log term ${t}`);
    const meta: SnapshotMeta = {
      index,
      term,
      confState: { voters: [...confState.voters].sort(), learners: [...confState.learners].sort() },
    };
    log.storage.compact({ meta, data });
    return meta;
  }

  hasReady(): boolean {
    if (this.outstanding) return false;
    const r = this.raft;
    if (r.msgs.length > 0 || r.readStates.length > 0) return true;
    if (r.log.unstable.entries.length > 0 || r.log.hasPendingSnapshot()) return true;
    if (r.log.hasNextCommittedEnts()) return true;
    const soft = r.softState();
    if (soft.lead !== this.prevSoft.lead || soft.role !== this.prevSoft.role) return true;
    return !hardStateEqual(r.hardState(), this.prevHard);
  }

  /**
   * Collect what the driver must do. Handle it in order: persist snapshot,
   * entries, hard state (fsync if mustSync); then send messages; then apply
   * committedEntries and serve readStates; then call advance(rd).
   */
  ready(): Ready {
    if (this.outstanding) throw new RaftInvariantError('ready() called again before advance()');
    const r = this.raft;
    r.flushAppends();
    const soft = r.softState();
    const hard = r.hardState();
    const softChanged = soft.lead !== this.prevSoft.lead || soft.role !== this.prevSoft.role;
    const hardChanged = !hardStateEqual(hard, this.prevHard);
    const entries = r.log.unstableEntries();
    const snapshot = r.log.unstable.snapshot;
    const rd: Ready = {
      ...(softChanged ? { softState: soft } : {}),
      ...(hardChanged ? { hardState: hard } : {}),
      ...(snapshot ? { snapshot } : {}),
      entries,
      messages: r.msgs,
      committedEntries: r.log.nextCommittedEnts(),
      readStates: r.readStates,
      mustSync:
        entries.length > 0 ||
        snapshot !== undefined ||
        (hardChanged && (hard.term !== this.prevHard.term || hard.vote !== this.prevHard.vote)),
    };
    r.msgs = [];
    r.readStates = [];
    if (softChanged) this.prevSoft = soft;
    if (hardChanged) this.prevHard = hard;
    this.outstanding = true;
    return rd;
  }

  /** The driver finished handling `rd`. */
  advance(rd: Ready): void {
    if (!this.outstanding) throw new RaftInvariantError('advance() without ready()');
    this.outstanding = false;
    const log = this.raft.log;
    if (rd.snapshot) {
      log.stableSnapTo(rd.snapshot.meta.index);
      log.appliedTo(rd.snapshot.meta.index);
    }
    const lastEnt = rd.entries[rd.entries.length - 1];
    if (lastEnt) log.stableTo(lastEnt.index, lastEnt.term);
    const lastApplied = rd.committedEntries[rd.committedEntries.length - 1];
    if (lastApplied) log.appliedTo(lastApplied.index);
  }

  /** Role and leader only: per-request checks use it instead of basicStatus(), which copies the membership. */
  softState(): SoftState {
    return this.raft.softState();
  }

  /** The voters, sorted; read-only and not copied (it changes only when membership does). */
  voterIds(): readonly NodeId[] {
    return this.raft.tracker.voterIds();
  }

  basicStatus(): BasicStatus {
    const r = this.raft;
    return {
      id: r.id,
      term: r.term,
      vote: r.vote,
      commit: r.log.committed,
      applied: r.log.applied,
      lead: r.lead,
      role: r.role,
      confState: r.confState(),
      leadTransferee: r.leadTransferee,
      awaitingJoin: r.awaitingJoin,
      pendingConfIndex: r.pendingConfIndex,
    };
  }

  status(): Status {
    const r = this.raft;
    const progress = new Map<NodeId, ProgressStatus>();
    if (r.role === 'leader') {
      for (const [id, pr] of r.tracker.progress) {
        progress.set(id, {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          isLearner: pr.isLearner,
          recentActive: pr.recentActive,
        });
      }
    }
    return { ...this.basicStatus(), firstIndex: r.log.firstIndex(), lastIndex: r.log.lastIndex(), progress };
  }
}
