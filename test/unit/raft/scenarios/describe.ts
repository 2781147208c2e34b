// How the scenarios print the core's data: one line per entry, message or
// state, in etcd-io/raft's words (MsgApp, StateLeader, `term/index`) so a
// reader who knows etcd's testdata can read these too. Node id '' (nobody)
// prints as 0, as in etcd.

import {
  decodeConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type MessageType,
  type NodeId,
  type ProgressStatus,
  type Ready,
  type Role,
  type SnapshotMeta,
} from '../../../../server/raft/core/index.js';

const MESSAGE_NAMES: Readonly<Record<MessageType, string>> = {
  hup: 'MsgHup',
  beat: 'MsgBeat',
  checkQuorum: 'MsgCheckQuorum',
  unreachable: 'MsgUnreachable',
  snapStatus: 'MsgSnapStatus',
  app: 'MsgApp',
  appResp: 'MsgAppResp',
  vote: 'MsgVote',
  voteResp: 'MsgVoteResp',
  preVote: 'MsgPreVote',
  preVoteResp: 'MsgPreVoteResp',
  snap: 'MsgSnap',
  heartbeat: 'MsgHeartbeat',
  heartbeatResp: 'MsgHeartbeatResp',
  transferLeader: 'MsgTransferLeader',
  timeoutNow: 'MsgTimeoutNow',
  readIndex: 'MsgReadIndex',
  readIndexResp: 'MsgReadIndexResp',
};

/** The message type a scenario names (`type=MsgApp`), or undefined. */
export function messageTypeNamed(name: string): MessageType | undefined {
  const found = Object.entries(MESSAGE_NAMES).find(([, n]) => n === name);
  return found?.[0] as MessageType | undefined;
}

export const STATE_NAMES: Readonly<Record<Role, string>> = {
  follower: 'StateFollower',
  preCandidate: 'StatePreCandidate',
  candidate: 'StateCandidate',
  leader: 'StateLeader',
};

const decoder = new TextDecoder();

export function describeId(id: NodeId): string {
  return id === '' ? '0' : id;
}

export function describeEntry(e: Entry): string {
  const at = `${e.term}/${e.index}`;
  switch (e.type) {
    case 'noop':
      return `${at} EntryNoop`;
    case 'confChange': {
      const cc = decodeConfChange(e.data);
      return `${at} EntryConfChange ${cc.type} ${cc.nodeId}`;
    }
    case 'normal':
      return `${at} EntryNormal ${JSON.stringify(decoder.decode(e.data))}`;
  }
}

export function describeConfState(cs: ConfState): string {
  return `voters=(${cs.voters.join(' ')}) learners=(${cs.learners.join(' ')})`;
}

function describeSnapshotMeta(meta: SnapshotMeta): string {
  return `Index:${meta.index} Term:${meta.term} ${describeConfState(meta.confState)}`;
}

export function describeMessage(m: Message): string {
  let s = `${describeId(m.from)}->${describeId(m.to)} ${MESSAGE_NAMES[m.type]} Term:${m.term} Log:${m.logTerm}/${m.index}`;
  if (m.reject) s += ` Rejected (Hint: ${m.rejectHint})`;
  if (m.commit !== 0) s += ` Commit:${m.commit}`;
  if (m.entries.length > 0) s += ` Entries:[${m.entries.map(describeEntry).join(', ')}]`;
  if (m.context !== undefined) s += ` Ctx:${m.context}`;
  if (m.snapshot) s += ` Snapshot:[${describeSnapshotMeta(m.snapshot.meta)}]`;
  return s;
}

function describeHardState(h: HardState): string {
  return `HardState Term:${h.term} Vote:${describeId(h.vote)} Commit:${h.commit}`;
}

/** A Ready as a block of lines, its sections in the order the driver handles them. */
export function describeReady(rd: Ready): string[] {
  const lines = [`Ready MustSync=${rd.mustSync}:`];
  if (rd.softState) lines.push(`Lead:${describeId(rd.softState.lead)} State:${STATE_NAMES[rd.softState.role]}`);
  if (rd.hardState) lines.push(describeHardState(rd.hardState));
  if (rd.snapshot) lines.push(`Snapshot ${describeSnapshotMeta(rd.snapshot.meta)}`);
  const section = (title: string, items: readonly string[]): void => {
    if (items.length > 0) lines.push(`${title}:`, ...items);
  };
  section('Entries', rd.entries.map(describeEntry));
  section('CommittedEntries', rd.committedEntries.map(describeEntry));
  section('Messages', rd.messages.map(describeMessage));
  section('ReadStates', rd.readStates.map((rs) => `Index:${rs.index} Ctx:${rs.context}`));
  return lines;
}

export function describeProgress(id: NodeId, pr: ProgressStatus): string {
  const flags = [pr.isLearner ? ' learner' : '', pr.recentActive ? '' : ' inactive'].join('');
  const state = `State${pr.state[0]?.toUpperCase()}${pr.state.slice(1)}`;
  return `${id}: ${state} match=${pr.match} next=${pr.next}${flags}`;
}
