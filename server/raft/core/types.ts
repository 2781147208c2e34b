// Wire and log types of the Raft core. Everything here is plain data so a
// driver can persist it and send it over the network (see codec.ts).

/** Stable node id (VAULT_NODE_ID). The empty string means "nobody". */
export type NodeId = string;
export const NONE: NodeId = '';

/** normal: a replicated command; noop: appended by each new leader; confChange: a ConfChange. */
export type EntryType = 'normal' | 'noop' | 'confChange';

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  /** Opaque payload. Never mutated by the core once handed in. */
  readonly data: Uint8Array;
}

/** What must be durable before any message of the same Ready is sent. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: NONE, commit: 0 };

export interface ConfState {
  /** Voting members, sorted. */
  readonly voters: readonly NodeId[];
  /** Non-voting members that receive the log, sorted. */
  readonly learners: readonly NodeId[];
}

export const EMPTY_CONF_STATE: ConfState = { voters: [], learners: [] };

export interface SnapshotMeta {
  /** Last log index covered by the snapshot. */
  readonly index: number;
  /** Term of the entry at `index`. */
  readonly term: number;
  /** Membership as of `index`. */
  readonly confState: ConfState;
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  /**
   * Opaque to the core: the state-machine image, or a reference the driver
   * resolves (e.g. a snapshot file name it streams separately).
   */
  readonly data: Uint8Array;
}

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

export type MessageType =
  // local only (never sent over the network)
  | 'hup'
  | 'beat'
  | 'checkQuorum'
  | 'unreachable'
  | 'snapStatus'
  // network
  | 'app'
  | 'appResp'
  | 'vote'
  | 'voteResp'
  | 'preVote'
  | 'preVoteResp'
  | 'snap'
  | 'heartbeat'
  | 'heartbeatResp'
  | 'transferLeader'
  | 'timeoutNow'
  | 'readIndex'
  | 'readIndexResp';

export const LOCAL_MESSAGE_TYPES: ReadonlySet<MessageType> = new Set<MessageType>([
  'hup',
  'beat',
  'checkQuorum',
  'unreachable',
  'snapStatus',
]);

export interface Message {
  readonly type: MessageType;
  readonly to: NodeId;
  readonly from: NodeId;
  /** 0 for messages that are not bound to a term (forwarded readIndex, local messages). */
  readonly term: number;
  /** app: term of the entry at `index`; vote/preVote: candidate's last log term; rejected appResp: hint term. */
  readonly logTerm: number;
  /** app: index preceding `entries`; appResp: last index acked (or rejected index); vote: candidate's last index; readIndexResp: read index. */
  readonly index: number;
  readonly entries: readonly Entry[];
  /** Leader's commit index (app, heartbeat). */
  readonly commit: number;
  /** snap only. */
  readonly snapshot?: Snapshot;
  readonly reject: boolean;
  /** Rejected appResp: follower's hint for fast backoff. */
  readonly rejectHint: number;
  /** heartbeat(+Resp)/readIndex(+Resp): read request id; vote: 'transfer' when forced by leadership transfer. */
  readonly context?: string;
}

/** Build a message with defaults for the unused fields. */
export function message(m: Partial<Message> & Pick<Message, 'type'>): Message {
  return {
    to: NONE,
    from: NONE,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: EMPTY_ENTRIES,
    commit: 0,
    reject: false,
    rejectHint: 0,
    ...m,
  };
}

export const EMPTY_ENTRIES: readonly Entry[] = Object.freeze([]) as readonly Entry[];
export const EMPTY_DATA = new Uint8Array(0);

/** A released linearizable read: serve it once applied index >= index. */
export interface ReadState {
  readonly index: number;
  readonly context: string;
}

/** Volatile state reported when it changes (leader changes). */
export interface SoftState {
  readonly lead: NodeId;
  readonly role: Role;
}

export type ConfChangeType = 'addLearner' | 'addVoter' | 'removeNode';

/** One-server-at-a-time membership change. addVoter promotes an existing learner. */
export interface ConfChange {
  readonly type: ConfChangeType;
  readonly nodeId: NodeId;
}

/** Approximate size of an entry for batching limits. */
export function entrySize(e: Entry): number {
  return e.data.byteLength + 16;
}

export function isEmptyHardState(h: HardState): boolean {
  return h.term === 0 && h.vote === NONE && h.commit === 0;
}

export function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
