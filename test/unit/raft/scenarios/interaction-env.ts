// The world a scenario runs in (after etcd-io/raft's rafttest.InteractionEnv):
// RaftNodes on in-memory storage, one queue of sent messages that moves only
// when a command delivers it, and an output buffer. Nothing happens by itself:
// ticks, Ready handling and delivery are all commands, so a file shows every
// step. The core has no logger, so role and term changes are printed by
// comparing its status before and after each call into it.

import {
  decodeConfChange,
  EMPTY_DATA,
  MemoryStorage,
  NONE,
  RaftNode,
  type ConfChange,
  type Message,
  type MessageType,
  type NodeId,
  type Rng,
  type Role,
} from '../../../../server/raft/core/index.js';
import {
  describeConfState,
  describeEntry,
  describeId,
  describeMessage,
  describeProgress,
  describeReady,
  STATE_NAMES,
} from './describe.js';

/**
 * The election-timeout jitter, fixed per node instead of random: a node's
 * randomized timeout is electionTick + ticks (drawn again at each role or
 * term change). Scenarios set it to decide who times out first.
 */
class FixedJitter implements Rng {
  ticks = 0;

  int(n: number): number {
    return Math.min(this.ticks, n - 1);
  }
}

export interface NodeOptions {
  /** Initial configuration; none means a node that joins later with an empty log. */
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** Index (term 1) of the bootstrap snapshot the initial members start from. */
  readonly index: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly electionTick: number;
  readonly heartbeatTick: number;
  /** How far behind the commit index a learner may be and still be promoted; the core's default if unset. */
  readonly promotionLag: number | undefined;
}

interface ScenarioNode {
  readonly id: NodeId;
  readonly storage: MemoryStorage;
  readonly raft: RaftNode;
  readonly jitter: FixedJitter;
  readonly options: NodeOptions;
}

const ROLE_WORDS: Readonly<Record<Role, string>> = {
  follower: 'follower',
  preCandidate: 'pre-candidate',
  candidate: 'candidate',
  leader: 'leader',
};

/** Lines written by the current command; nested work is indented under a `>` header. */
class Output {
  /** Set by `log-level none` so a file's setup can run without printing. */
  quiet = false;
  private lines: string[] = [];
  private depth = 0;

  line(s: string): void {
    if (!this.quiet) this.lines.push('  '.repeat(this.depth) + s);
  }

  nested(header: string, work: () => void): void {
    this.line(header);
    this.depth++;
    try {
      work();
    } finally {
      this.depth--;
    }
  }

  take(): string {
    const text = this.lines.join('\n');
    this.lines = [];
    return text;
  }
}

export class InteractionEnv {
  readonly out = new Output();
  private readonly nodes = new Map<NodeId, ScenarioNode>();
  /** Sent and not yet delivered, in send order. */
  private messages: Message[] = [];
  private readonly isolated = new Set<NodeId>();

  addNodes(count: number, options: NodeOptions): void {
    for (let k = 0; k < count; k++) {
      const id = String(this.nodes.size + 1);
      const storage = new MemoryStorage();
      if (options.voters.length > 0) {
        const confState = { voters: [...options.voters].sort(), learners: [...options.learners].sort() };
        storage.applySnapshot({ meta: { index: options.index, term: 1, confState }, data: EMPTY_DATA });
        storage.setHardState({ term: 1, vote: NONE, commit: options.index });
      }
      const jitter = new FixedJitter();
      const raft = new RaftNode({
        id,
        storage,
        rng: jitter,
        preVote: options.preVote,
        checkQuorum: options.checkQuorum,
        electionTick: options.electionTick,
        heartbeatTick: options.heartbeatTick,
        promotionLag: options.promotionLag,
      });
      this.nodes.set(id, { id, storage, raft, jitter, options });
    }
  }

  private node(id: NodeId): ScenarioNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** Every call into a node goes through here, so its role and term changes show up where they happen. */
  private act<T>(n: ScenarioNode, call: (raft: RaftNode) => T): T {
    const before = n.raft.status();
    const result = call(n.raft);
    const after = n.raft.status();
    if (after.role !== before.role || after.term !== before.term) {
      this.out.line(`INFO ${n.id} became ${ROLE_WORDS[after.role]} at term ${after.term}`);
    }
    return result;
  }

  // ---- client calls ----------------------------------------------------------

  campaign(id: NodeId): void {
    this.act(this.node(id), (raft) => raft.campaign());
  }

  propose(id: NodeId, data: string): void {
    const r = this.act(this.node(id), (raft) => raft.propose(new TextEncoder().encode(data)));
    if (!r.ok) this.out.line(`propose refused: ${r.reason}`);
  }

  proposeConfChange(id: NodeId, cc: ConfChange): void {
    const r = this.act(this.node(id), (raft) => raft.proposeConfChange(cc));
    if (!r.ok) this.out.line(`conf change refused: ${r.reason}`);
  }

  readIndex(id: NodeId, context: string): void {
    if (!this.act(this.node(id), (raft) => raft.readIndex(context))) this.out.line('read-index refused: no leader known');
  }

  transferLeadership(from: NodeId, to: NodeId): void {
    this.act(this.node(from), (raft) => raft.transferLeadership(to));
  }

  setElectionJitter(id: NodeId, ticks: number): void {
    this.node(id).jitter.ticks = ticks;
  }

  /** Tick the nodes together, each for one election (or heartbeat) interval of its own. */
  tick(ids: readonly NodeId[], interval: 'election' | 'heartbeat'): void {
    const nodes = ids.map((id) => this.node(id));
    const ticks = (n: ScenarioNode): number =>
      interval === 'election' ? n.options.electionTick : n.options.heartbeatTick;
    const rounds = Math.max(...nodes.map(ticks));
    for (let round = 0; round < rounds; round++) {
      for (const n of nodes) if (round < ticks(n)) this.act(n, (raft) => raft.tick());
    }
  }

  // ---- the driver: Ready handling and the network ------------------------------

  /** Handle one Ready the way server/raft's driver does: persist, send, apply, advance. */
  processReady(id: NodeId): void {
    const n = this.node(id);
    if (!n.raft.hasReady()) {
      this.out.line('<empty Ready>');
      return;
    }
    const rd = n.raft.ready();
    for (const line of describeReady(rd)) this.out.line(line);
    if (rd.snapshot) n.storage.applySnapshot(rd.snapshot);
    n.storage.append(rd.entries);
    if (rd.hardState) n.storage.setHardState(rd.hardState);
    this.messages.push(...rd.messages);
    for (const e of rd.committedEntries) {
      if (e.type !== 'confChange') continue;
      this.act(n, (raft) => {
        const cs = raft.applyConfChange(decodeConfChange(e.data));
        this.out.line(`INFO ${id} switched to configuration ${describeConfState(cs)}`);
      });
    }
    n.raft.advance(rd);
  }

  /**
   * Deliver the queued messages addressed to `to` (only those of `type` if
   * given), or drop them. Messages to or from an isolated node are dropped.
   * Returns how many were handled.
   */
  deliverMsgs(to: NodeId, drop: boolean, type?: MessageType): number {
    const mine = this.messages.filter((m) => m.to === to && (type === undefined || m.type === type));
    this.messages = this.messages.filter((m) => !mine.includes(m));
    for (const m of mine) {
      const lost = drop || this.isolated.has(m.from) || this.isolated.has(m.to);
      this.out.line(`${lost ? 'dropped: ' : ''}${describeMessage(m)}`);
      if (!lost) this.act(this.node(m.to), (raft) => raft.step(m));
    }
    return mine.length;
  }

  /** Handle Readies and deliver messages among `ids` (all nodes if empty) until nothing is left to do. */
  stabilize(ids: readonly NodeId[]): void {
    const nodes = ids.length > 0 ? ids.map((id) => this.node(id)) : [...this.nodes.values()];
    for (let round = 0; ; round++) {
      if (round === 1000) throw new Error('stabilize: no fixed point after 1000 rounds');
      let done = true;
      for (const n of nodes) {
        if (!n.raft.hasReady()) continue;
        done = false;
        this.out.nested(`> ${n.id} handling Ready`, () => this.processReady(n.id));
      }
      for (const n of nodes) {
        if (!this.messages.some((m) => m.to === n.id)) continue;
        done = false;
        this.out.nested(`> ${n.id} receiving messages`, () => this.deliverMsgs(n.id, false));
      }
      if (done) return;
    }
  }

  /** Cut `id` off the network: what it sends and what is sent to it is dropped on delivery. */
  isolate(id: NodeId): void {
    this.node(id);
    this.isolated.add(id);
  }

  heal(): void {
    this.isolated.clear();
  }

  // ---- looking -------------------------------------------------------------------

  /** The durable log of `id` (what its driver persisted). */
  raftLog(id: NodeId): void {
    const { storage } = this.node(id);
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    if (last < first) {
      this.out.line(`log is empty: first index=${first}, last index=${last}`);
      return;
    }
    for (const e of storage.entries(first, last + 1, Infinity)) this.out.line(describeEntry(e));
  }

  /** One line per node, each from its own point of view. */
  raftState(): void {
    for (const n of this.nodes.values()) {
      const st = n.raft.status();
      const voter = st.confState.voters.includes(n.id) ? 'Voter' : 'Non-Voter';
      this.out.line(`${n.id}: ${STATE_NAMES[st.role]} (${voter}) Term:${st.term} Lead:${describeId(st.lead)}`);
    }
  }

  status(id: NodeId): void {
    const st = this.node(id).raft.status();
    this.out.line(
      `${STATE_NAMES[st.role]} Term:${st.term} Lead:${describeId(st.lead)} Commit:${st.commit} Applied:${st.applied} ` +
        `LastIndex:${st.lastIndex} ${describeConfState(st.confState)}`,
    );
    if (st.leadTransferee !== NONE) this.out.line(`transferring leadership to ${st.leadTransferee}`);
    const byId = [...st.progress].sort(([a], [b]) => a.localeCompare(b));
    for (const [peer, pr] of byId) this.out.line(describeProgress(peer, pr));
  }
}
