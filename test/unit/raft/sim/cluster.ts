// A simulated Coffer cluster: N RaftNodes, each with a driver that persists
// Ready contents to its durable MemoryStorage (the only state that survives a
// crash), sends messages through the SimNetwork, and applies committed
// entries to a toy state machine. A client proposes writes and issues
// ReadIndex reads and records which writes were acknowledged.

import {
  decodeConfChange,
  MemoryStorage,
  RaftNode,
  SeededRng,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type Ready,
} from '../../../../server/raft/core/index.js';
import { leaseDuration, ReadLease } from '../../../../server/raft/lease.js';
import { ChainLog, Checker, InvariantViolation } from './checker.js';
import { BOOTSTRAP_CHAIN, EMPTY_CHAIN } from './hash.js';
import { SimNetwork, type NetworkFaults } from './network.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The replicated state machine: the ordered list of applied write ids. */
export class StateMachine {
  writes: string[] = [];
  readonly set = new Set<string>();
  appliedIndex = 0;
  appliedTerm = 0;
  confState: ConfState;

  constructor(confState: ConfState) {
    this.confState = confState;
  }

  static restore(data: Uint8Array, index: number, term: number, confState: ConfState): StateMachine {
    const sm = new StateMachine(confState);
    if (data.length > 0) {
      sm.writes = JSON.parse(decoder.decode(data)) as string[];
      for (const w of sm.writes) sm.set.add(w);
    }
    sm.appliedIndex = index;
    sm.appliedTerm = term;
    return sm;
  }

  serialize(): Uint8Array {
    return encoder.encode(JSON.stringify(this.writes));
  }
}

export interface SimNode {
  readonly id: NodeId;
  /** Durable storage: only what the driver persisted. Survives crashes (not wipes). */
  storage: MemoryStorage;
  /** Chain hashes of the durable log (for the checker). */
  chain: ChainLog;
  raft: RaftNode | undefined;
  sm: StateMachine;
  removed: boolean;
  /** Reads released on this node, waiting for apply. */
  waitingReads: PendingRead[];
  /** Process stalled (GC pause, descheduled) until this step: no ticks, no messages, no I/O. */
  pausedUntil: number;
  /**
   * The driver's durable "awaiting join" flag: set when the raft dir is wiped,
   * cleared (after a Ready is persisted) once the core no longer awaits. Passed
   * as Config.awaitingJoin at every boot, so a restart does not forget it.
   */
  awaitingJoin: boolean;
  /** Identity of the raft dir's contents: changes when the storage is wiped. */
  dataId: number;
  /** This machine's monotonic clock runs at `rate` times simulated time (lease runs only; else 1). */
  rate: number;
  /** The clock reading, in ticks, of this process's last tick (a stalled timer fires once, never in a burst). */
  lastTick: number;
  /** Lease reads (server/raft/lease.ts) on this process, when the run has them. */
  lease: ReadLease | undefined;
}

interface PendingWrite {
  readonly id: string;
  readonly node: NodeId;
  readonly index: number;
  readonly term: number;
  lost: boolean;
}

interface PendingRead {
  readonly ctx: string;
  readonly node: NodeId;
  /** Number of acknowledged writes when the read started. */
  readonly ackedBefore: number;
  index: number;
}

export interface ClusterOptions {
  readonly seed: number;
  readonly size: number;
  readonly faults: NetworkFaults;
  /** Probability a node's driver handles its Ready in a given step (else state stays unsynced). */
  readonly persistChance: number;
  readonly electionTick?: number;
  readonly heartbeatTick?: number;
  readonly maxMsgEntries?: number;
  readonly trace?: boolean;
  /** Lease-based reads on leaders, with drifting clocks. */
  readonly lease?: LeaseOptions;
}

export interface LeaseOptions {
  /** The clock-rate bound the lease assumes (server/raft/lease.ts CLOCK_RATE_BOUND). */
  readonly rho: number;
  /** Each machine's clock runs at a rate drawn from [1, 1 + drift]: drift <= rho is what the lease is proven for. */
  readonly drift: number;
  /** Simulation steps per tick interval, so that clocks can drift within a tick. */
  readonly stepsPerTick: number;
  /** Lease length in tick intervals, overriding the proven bound (only to show the checker catches an unsafe one). */
  readonly unsafeTicks?: number;
  /** Voters do not refuse votes after a restart (Config.leaseReads off): only to show the checker catches it. */
  readonly unsafeNoStartWindow?: boolean;
  /** The lease survives a TimeoutNow sent: only to show the checker catches it. */
  readonly unsafeKeepOnTransfer?: boolean;
}

export class Cluster {
  readonly rng: SeededRng;
  readonly net: SimNetwork;
  readonly checker = new Checker();
  readonly nodes = new Map<NodeId, SimNode>();
  now = 0;
  persistChance: number;
  private readonly opts: ClusterOptions;
  private readonly traceLines: string[] = [];

  // client bookkeeping
  private writeSeq = 0;
  private readSeq = 0;
  readonly writes = new Map<string, PendingWrite>();
  /** Acknowledged write ids, in acknowledgement order. */
  readonly acked: string[] = [];
  readonly reads = new Map<string, PendingRead>();
  readsServed = 0;
  snapshotsInstalled = 0;
  compactions = 0;
  crashes = 0;
  confChangesApplied = 0;
  wipes = 0;
  /** Highest log index of an applied addLearner / removeNode per node id (ids may be re-added). */
  private readonly lastAdd = new Map<NodeId, number>();
  private readonly lastRemove = new Map<NodeId, number>();
  /** `${to}<${from}` -> step at which `to` last received a message from `from`. */
  readonly heard = new Map<string, number>();
  /** Called for every vote / pre-vote granted (after the granting node stepped the request). */
  onGrant: ((voter: SimNode, m: Message, wasAwaitingJoin: boolean) => void) | undefined;
  private dataIds = 0;
  /** Reads served from a lease, without a heartbeat round. */
  leaseReads = 0;

  constructor(opts: ClusterOptions) {
    this.opts = opts;
    this.rng = new SeededRng(opts.seed);
    this.persistChance = opts.persistChance;
    this.net = new SimNetwork(this.rng.fork(), opts.faults, (m) => this.onDrop(m));
    const voters = Array.from({ length: opts.size }, (_, i) => `n${i + 1}`);
    for (const id of voters) {
      const storage = MemoryStorage.bootstrap(voters);
      const node: SimNode = {
        id,
        storage,
        chain: new ChainLog(1, BOOTSTRAP_CHAIN),
        raft: undefined,
        sm: StateMachine.restore(storage.snapshot().data, 1, 1, storage.snapshot().meta.confState),
        removed: false,
        waitingReads: [],
        pausedUntil: 0,
        awaitingJoin: false,
        dataId: 0,
        ...this.clockFields(),
      };
      this.nodes.set(id, node);
      this.boot(node);
    }
  }

  /** A new machine's clock: its rate, and no tick yet. */
  private clockFields(): Pick<SimNode, 'rate' | 'lastTick' | 'lease'> {
    const l = this.opts.lease;
    return { rate: l ? 1 + this.rng.next() * l.drift : 1, lastTick: 0, lease: undefined };
  }

  /** The node's monotonic clock, in tick intervals (it keeps running while the process is stalled). */
  clock(n: SimNode): number {
    return (this.now * n.rate) / (this.opts.lease?.stepsPerTick ?? 1);
  }

  trace(line: string): void {
    this.traceLines.push(`[t=${this.now}] ${line}`);
    if (this.traceLines.length > (process.env["SIM_TRACE_ALL"] ? 1e7 : 400)) this.traceLines.splice(0, 100);
  }

  traceTail(n = process.env["SIM_TRACE_ALL"] ? 1e7 : 120): string {
    return this.traceLines.slice(-n).join('\n');
  }

  private boot(node: SimNode): void {
    node.raft = new RaftNode({
      id: node.id,
      storage: node.storage,
      rng: this.rng.fork(),
      electionTick: this.opts.electionTick ?? 10,
      heartbeatTick: this.opts.heartbeatTick ?? 2,
      maxMsgEntries: this.opts.maxMsgEntries ?? 8,
      maxInflightMsgs: 4,
      awaitingJoin: node.awaitingJoin,
      leaseReads: this.opts.lease !== undefined && !this.opts.lease.unsafeNoStartWindow,
    });
    const l = this.opts.lease;
    if (l) node.lease = new ReadLease(l.unsafeTicks ?? leaseDuration(this.opts.electionTick ?? 10, 1, l.rho));
    // A new process's timer starts now: its first tick is one interval away.
    node.lastTick = Math.floor(this.clock(node));
  }

  /** A node that joins later: starts empty and waits for the leader's snapshot. */
  private addBlankNode(id: NodeId): void {
    const storage = new MemoryStorage();
    const node: SimNode = {
      id,
      storage,
      chain: new ChainLog(0, EMPTY_CHAIN),
      raft: undefined,
      sm: new StateMachine({ voters: [], learners: [] }),
      removed: false,
      waitingReads: [],
      pausedUntil: 0,
      awaitingJoin: false,
      dataId: 0,
      ...this.clockFields(),
    };
    this.nodes.set(id, node);
    this.boot(node);
    this.trace(`${id} started (joining)`);
  }

  /**
   * Start a process for `id` that is not (yet) a member: a brand-new node with
   * an empty raft dir (awaiting join), or a stopped one from its storage,
   * possibly stale from an earlier membership (`removed` is cleared).
   */
  startProcess(id: NodeId): void {
    const existing = this.nodes.get(id);
    if (existing) {
      if (existing.raft) return;
      existing.removed = false;
      this.restart(id);
      return;
    }
    const storage = new MemoryStorage();
    const node: SimNode = {
      id,
      storage,
      chain: new ChainLog(0, EMPTY_CHAIN),
      raft: undefined,
      sm: new StateMachine({ voters: [], learners: [] }),
      removed: false,
      waitingReads: [],
      pausedUntil: 0,
      awaitingJoin: true,
      dataId: ++this.dataIds,
      ...this.clockFields(),
    };
    this.nodes.set(id, node);
    this.boot(node);
    this.trace(`${id} process started (empty raft dir, awaiting join)`);
  }

  /** The node's disk is lost: it stops, and its raft dir comes back empty (awaiting join) under the same id. */
  wipe(id: NodeId): void {
    const n = this.nodes.get(id);
    if (!n) return;
    this.crash(id);
    n.storage = new MemoryStorage();
    n.chain = new ChainLog(0, EMPTY_CHAIN);
    n.sm = new StateMachine({ voters: [], learners: [] });
    n.awaitingJoin = true;
    n.dataId = ++this.dataIds;
    // The replacement takes longer to start than any message takes to arrive:
    // acknowledgements the old incarnation sent are not delivered afterwards.
    this.net.purge((m) => m.from === id);
    this.wipes++;
    this.trace(`${id} WIPED (data id ${n.dataId})`);
  }

  live(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.raft !== undefined);
  }

  /** Alive leader with the highest term, if any. */
  leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodes.values()) {
      const r = n.raft?.raft;
      if (r && r.role === 'leader' && (!best || r.term > (best.raft as RaftNode).raft.term)) best = n;
    }
    return best;
  }

  // ---- faults --------------------------------------------------------------

  crash(id: NodeId): void {
    const n = this.nodes.get(id);
    if (!n || !n.raft) return;
    n.raft = undefined;
    n.lease = undefined;
    n.waitingReads = [];
    for (const w of this.writes.values()) if (w.node === id) w.lost = true;
    for (const [ctx, r] of this.reads) if (r.node === id) this.reads.delete(ctx);
    this.crashes++;
    this.trace(`${id} CRASH (unsynced state lost)`);
  }

  restart(id: NodeId): void {
    const n = this.nodes.get(id);
    if (!n || n.raft || n.removed) return;
    const snap = n.storage.snapshot();
    n.sm = StateMachine.restore(snap.data, snap.meta.index, snap.meta.term, snap.meta.confState);
    this.boot(n);
    const hs = n.storage.hardState();
    this.trace(`${id} restart term=${hs.term} vote=${hs.vote} commit=${hs.commit} last=${n.storage.lastIndex()}`);
  }

  // ---- client ---------------------------------------------------------------

  /** Propose a write on `id` (normally the node that believes it leads). */
  proposeWrite(id: NodeId): boolean {
    const n = this.nodes.get(id);
    if (!n?.raft || this.isPaused(n)) return false;
    const wid = `w${++this.writeSeq}`;
    const res = n.raft.propose(encoder.encode(wid));
    if (!res.ok) return false;
    this.writes.set(wid, { id: wid, node: id, index: res.index, term: res.term, lost: false });
    return true;
  }

  issueRead(id: NodeId): boolean {
    const n = this.nodes.get(id);
    if (!n?.raft || this.isPaused(n)) return false;
    const ctx = `r${++this.readSeq}`;
    const r = n.raft.raft;
    if (n.lease && r.role === 'leader') {
      const now = this.clock(n);
      if (n.lease.valid(now, r.term)) {
        // Served at the commit index without a round, as the driver does (server/raft/driver/reads.ts).
        const read: PendingRead = { ctx, node: id, ackedBefore: this.acked.length, index: r.log.committed };
        this.reads.set(ctx, read);
        n.waitingReads.push(read);
        this.leaseReads++;
        this.serveReads(n);
        // Renewed ahead of expiry by a round no client waits for, as the driver does.
        if (n.lease.remaining(now, r.term) < n.lease.duration / 2) {
          const renewal = `renew${++this.readSeq}`;
          n.lease.started(renewal, r.term, now);
          if (!n.raft.readIndex(renewal)) n.lease.abandoned(renewal);
        }
        return true;
      }
      n.lease.started(ctx, r.term, now);
    }
    if (!n.raft.readIndex(ctx)) {
      n.lease?.abandoned(ctx);
      return false;
    }
    this.reads.set(ctx, { ctx, node: id, ackedBefore: this.acked.length, index: -1 });
    return true;
  }

  // ---- one simulation step -------------------------------------------------------

  step(): void {
    this.now++;
    for (const m of this.net.due(this.now)) this.deliver(m);
    for (const n of this.nodes.values()) {
      if (!n.raft || this.isPaused(n)) continue;
      // One tick per interval of the node's own clock; after a stall, one tick, not the ones missed.
      const due = Math.floor(this.clock(n));
      if (due > n.lastTick) {
        n.lastTick = due;
        n.raft.tick();
      }
    }
    for (const n of this.nodes.values()) {
      if (n.raft && !this.isPaused(n) && this.rng.chance(this.persistChance)) this.handleReadies(n);
    }
  }

  isPaused(n: SimNode): boolean {
    return n.pausedUntil > this.now;
  }

  pause(id: NodeId, steps: number): void {
    const n = this.nodes.get(id);
    if (!n?.raft) return;
    n.pausedUntil = this.now + steps;
    this.trace(`${id} PAUSED for ${steps} steps`);
  }

  unpauseAll(): void {
    for (const n of this.nodes.values()) n.pausedUntil = 0;
  }

  private deliver(m: Message): void {
    const n = this.nodes.get(m.to);
    if (!n?.raft) {
      this.onDrop(m);
      return;
    }
    if (this.isPaused(n)) {
      this.net.defer(m, n.pausedUntil);
      return;
    }
    if (m.type === 'snap') {
      // The transport finished streaming it.
      this.nodes.get(m.from)?.raft?.reportSnapshot(m.to, true);
    }
    this.heard.set(`${m.to}<${m.from}`, this.now);
    if (this.onGrant && (m.type === 'vote' || m.type === 'preVote')) {
      const r = n.raft.raft;
      const awaiting = r.awaitingJoin;
      const before = r.msgs.length;
      n.raft.step(m);
      for (const out of r.msgs.slice(before)) {
        if ((out.type === 'voteResp' || out.type === 'preVoteResp') && !out.reject) this.onGrant(n, out, awaiting);
      }
      return;
    }
    n.raft.step(m);
  }

  private onDrop(m: Message): void {
    if (m.type === 'snap') this.nodes.get(m.from)?.raft?.reportSnapshot(m.to, false);
  }

  /** The driver loop for one node: handle Ready until there is none. */
  handleReadies(n: SimNode): void {
    for (let guard = 0; guard < 50 && n.raft?.hasReady(); guard++) {
      const rd = n.raft.ready();
      this.handleReady(n, n.raft, rd);
      n.raft?.advance(rd);
    }
  }

  private handleReady(n: SimNode, raft: RaftNode, rd: Ready): void {
    // 1. persist
    if (rd.snapshot) {
      n.storage.applySnapshot(rd.snapshot);
      n.chain = this.checker.onInstallSnapshot(n.id, rd.snapshot.meta.index);
      n.sm = StateMachine.restore(rd.snapshot.data, rd.snapshot.meta.index, rd.snapshot.meta.term, rd.snapshot.meta.confState);
      this.snapshotsInstalled++;
      this.trace(`${n.id} installed snapshot at ${rd.snapshot.meta.index}`);
      this.startJoinedMembers(rd.snapshot.meta.confState);
    }
    if (rd.entries.length > 0) {
      n.storage.append(rd.entries);
      this.checker.onPersistEntries(n.id, n.chain, rd.entries);
    }
    const hs = rd.hardState ?? n.storage.hardState();
    if (rd.hardState) {
      n.storage.setHardState(rd.hardState);
      this.checker.onCommit(n.id, n.chain, rd.hardState.term, rd.hardState.commit);
    }
    if (rd.softState) {
      this.trace(`${n.id} is ${rd.softState.role} (lead=${rd.softState.lead || '-'}) term=${hs.term}`);
      if (rd.softState.role === 'leader') this.checker.onLeader(n.id, raft.raft.term, n.chain);
    }
    // 2. send (a TimeoutNow starts a campaign that ignores leases: no lease vouches past it)
    for (const m of rd.messages) {
      if (m.type === 'timeoutNow' && !this.opts.lease?.unsafeKeepOnTransfer) n.lease?.revoke(this.clock(n));
      this.net.send(m, this.now);
    }
    // 3. apply
    for (const e of rd.committedEntries) this.apply(n, raft, e);
    // 4. reads
    for (const rs of rd.readStates) {
      n.lease?.confirmed(rs.context);
      const r = this.reads.get(rs.context);
      if (!r || r.node !== n.id) continue;
      r.index = rs.index;
      n.waitingReads.push(r);
    }
    this.serveReads(n);
    // The driver clears its durable flag only after the Ready that joined is persisted.
    if (n.awaitingJoin && !raft.raft.awaitingJoin) {
      n.awaitingJoin = false;
      this.trace(`${n.id} joined (no longer awaiting join)`);
    }
  }

  private apply(n: SimNode, raft: RaftNode, e: Entry): void {
    if (e.index !== n.sm.appliedIndex + 1) {
      throw new InvariantViolation(`${n.id} applies ${e.index} after ${n.sm.appliedIndex}`);
    }
    this.checker.onApply(n.id, e);
    n.sm.appliedIndex = e.index;
    n.sm.appliedTerm = e.term;
    if (e.type === 'normal') {
      const wid = decoder.decode(e.data);
      n.sm.writes.push(wid);
      n.sm.set.add(wid);
      const w = this.writes.get(wid);
      if (w && !w.lost && w.node === n.id) {
        if (w.index !== e.index || w.term !== e.term) {
          throw new InvariantViolation(`write ${wid} proposed at ${w.index}/${w.term} applied at ${e.index}/${e.term}`);
        }
        this.acked.push(wid);
        this.writes.delete(wid);
      }
    } else if (e.type === 'confChange') {
      const cc = decodeConfChange(e.data);
      n.sm.confState = raft.applyConfChange(cc);
      n.lease?.revoke(this.clock(n)); // rounds before it were counted in the old configuration
      this.confChangesApplied++;
      this.trace(`${n.id} applied ${cc.type} ${cc.nodeId} at ${e.index} -> voters=${n.sm.confState.voters} learners=${n.sm.confState.learners}`);
      if (cc.type === 'addLearner') this.lastAdd.set(cc.nodeId, Math.max(e.index, this.lastAdd.get(cc.nodeId) ?? 0));
      // Ids may be removed and re-added: only the newest removal (applied first by someone) stops the node.
      const newRemoval =
        cc.type === 'removeNode' && e.index > (this.lastRemove.get(cc.nodeId) ?? 0) && e.index > (this.lastAdd.get(cc.nodeId) ?? 0);
      if (newRemoval) this.lastRemove.set(cc.nodeId, e.index);
      if (newRemoval) {
        const gone = this.nodes.get(cc.nodeId);
        if (gone && !gone.removed) {
          gone.removed = true;
          if (gone !== n) this.crash(cc.nodeId);
          else this.trace(`${n.id} removed itself; stops after this Ready`);
        }
      }
      this.startJoinedMembers(n.sm.confState);
    }
  }

  /** Start nodes that a committed conf change made members. */
  private startJoinedMembers(cs: ConfState): void {
    for (const id of [...cs.voters, ...cs.learners]) {
      if (!this.nodes.has(id)) this.addBlankNode(id);
    }
  }

  private serveReads(n: SimNode): void {
    if (n.waitingReads.length === 0) return;
    const still: PendingRead[] = [];
    for (const r of n.waitingReads) {
      if (n.sm.appliedIndex < r.index) {
        still.push(r);
        continue;
      }
      for (let i = 0; i < r.ackedBefore; i++) {
        const w = this.acked[i] as string;
        if (!n.sm.set.has(w)) {
          throw new InvariantViolation(
            `linearizability: read ${r.ctx} on ${n.id} released at index ${r.index} (applied ${n.sm.appliedIndex}) misses write ${w} acknowledged before the read started`,
          );
        }
      }
      this.reads.delete(r.ctx);
      this.readsServed++;
    }
    n.waitingReads = still;
  }

  /** Stop nodes that applied their own removal. */
  reapRemoved(): void {
    for (const n of this.nodes.values()) if (n.removed && n.raft) this.crash(n.id);
  }

  // ---- membership / admin ops -------------------------------------------------

  nextSpareId(): NodeId {
    return `n${this.nodes.size + 1 + this.rng.int(3)}`;
  }

  // ---- end-of-run checks ---------------------------------------------------------

  /** Live members converged: a leader exists and every live node applied the leader's whole log. */
  converged(): boolean {
    const l = this.leader();
    if (!l?.raft) return false;
    const r = l.raft.raft;
    const last = r.log.lastIndex();
    if (r.log.term(r.log.committed) !== r.term || r.log.committed !== last) return false;
    for (const n of this.live()) {
      if (n.sm.appliedIndex !== last) return false;
    }
    return true;
  }

  /** Every acknowledged write is in every live node's state machine, and all agree. */
  checkDurability(): void {
    const live = this.live();
    const ref = live[0];
    if (!ref) throw new InvariantViolation('no live node at the end');
    for (const n of live) {
      for (const w of this.acked) {
        if (!n.sm.set.has(w)) throw new InvariantViolation(`acknowledged write ${w} lost on ${n.id}`);
      }
      if (n.sm.writes.length !== ref.sm.writes.length || n.sm.writes.some((w, i) => ref.sm.writes[i] !== w)) {
        throw new InvariantViolation(`${n.id} and ${ref.id} applied different sequences`);
      }
    }
  }
}
