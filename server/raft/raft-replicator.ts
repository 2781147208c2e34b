// The Raft driver: runs the pure core (server/raft/core) against real time,
// the log file, the HTTP transport and the SQLite state machine, and offers
// the API the Replicator seam. One loop handles each Ready in the order the
// core requires: persist (one fdatasync per Ready = group commit), send, apply,
// release reads, advance.
import { randomInt, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { decodeCommand, encodeCommand, UnknownCommandError, type Command } from '../store/commands.js';
import type { ApplyResult } from '../store/results.js';
import type { StateMachine } from '../store/state-machine.js';
import type { StateReader } from '../store/queries.js';
import { decodeConfChange, RaftNode, type Entry, type Message, type Ready } from './core/index.js';
import { DiskStorage } from './disk-storage.js';
import { ConflictError, FatalStorageError, NoLeaderError, NotFoundError, type NodeRole, type ReplicationStatus, type Replicator } from './replicator.js';
import { Transport } from './transport.js';

export interface RaftReplicatorOptions {
  nodeId: string;
  dataDir: string;
  /** This node's Raft address as others dial it. */
  advertise: string;
  /** Initial voters (VAULT_PEERS), used only when the log is new. */
  initialPeers: ReadonlyArray<{ id: string; address: string }>;
  sm: StateMachine;
  reader: StateReader;
  capabilities: string[];
  logger: Logger;
  tickMs?: number;
  electionTicks?: number;
  /** Entries kept in the log before it is compacted behind a snapshot. */
  snapshotEntries?: number;
  onFatal?: (err: Error) => void;
  /** Called each time this node becomes leader (e.g. to propose the bootstrap token). */
  onLeader?: () => void;
}

interface ProposalWaiter {
  term: number;
  resolve: (r: ApplyResult) => void;
  reject: (e: Error) => void;
}

interface ReadWaiter {
  resolve: () => void;
  reject: (e: Error) => void;
}

const LEADER_WAIT_MS = 3_000;
const READ_TIMEOUT_MS = 5_000;

export class RaftReplicator implements Replicator {
  readonly node: RaftNode;
  private readonly disk: DiskStorage;
  readonly transport: Transport;
  private readonly opts: RaftReplicatorOptions;
  private readonly proposals = new Map<number, ProposalWaiter>();
  private appliedWaiters: { index: number; resolve: () => void }[] = [];
  private readQueue: ReadWaiter[] = [];
  private readRound: { ctx: string; batch: ReadWaiter[]; timer: NodeJS.Timeout } | null = null;
  private readonly peerCaps = new Map<string, string[]>();
  private readonly ticker: NodeJS.Timeout;
  private scheduled = false;
  private processing = false;
  private fatal: Error | null = null;
  private closed = false;
  private applied: { index: number; term: number };
  private readonly snapshotDir: string;

  constructor(opts: RaftReplicatorOptions) {
    this.opts = opts;
    const raftDir = path.join(opts.dataDir, 'raft');
    this.snapshotDir = path.join(raftDir, 'snapshots');
    fs.mkdirSync(this.snapshotDir, { recursive: true, mode: 0o700 });
    const initialVoter = opts.initialPeers.some((p) => p.id === opts.nodeId);
    this.disk = DiskStorage.open(raftDir, initialVoter ? opts.initialPeers.map((p) => p.id) : null);
    if (opts.reader.peerAddresses().size === 0) opts.sm.seedPeers(opts.initialPeers);
    this.applied = opts.sm.appliedIndex();
    this.node = new RaftNode({
      id: opts.nodeId,
      storage: this.disk.storage,
      rng: { int: (n: number) => randomInt(n) },
      electionTick: opts.electionTicks ?? 10,
      heartbeatTick: 1,
    });
    this.transport = new Transport({
      nodeId: opts.nodeId,
      capabilities: opts.capabilities,
      onUnreachable: (peer) => {
        this.node.reportUnreachable(peer);
        this.schedule();
      },
      onPeerCapabilities: (peer, caps) => this.peerCaps.set(peer, caps),
    });
    for (const [id, address] of opts.reader.peerAddresses()) this.transport.setPeer(id, address);
    this.ticker = setInterval(() => {
      this.node.tick();
      this.schedule();
    }, opts.tickMs ?? 100);
    // Single-voter clusters elect themselves at once instead of waiting out a timeout.
    if (this.node.status().confState.voters.length === 1 && initialVoter) this.node.campaign();
    this.schedule();
  }

  // ---- inbound from the Raft listener ----------------------------------------

  receive(msgs: readonly Message[], from: string, caps: string[] | null): void {
    if (caps) this.peerCaps.set(from, caps);
    for (const m of msgs) if (m.type !== 'snap') this.node.step(m);
    this.schedule();
  }

  /** A snapshot image arrived on disk; hand its message to the core with the file as data. */
  receiveSnapshot(m: Message, imageFile: string): void {
    this.node.step({ ...m, snapshot: { meta: m.snapshot!.meta, data: new Uint8Array(Buffer.from(imageFile)) } });
    this.schedule();
  }

  snapshotReceivePath(index: number): string {
    return path.join(this.snapshotDir, `recv-${index}-${randomUUID()}.db`);
  }

  /** A forwarded proposal from a follower (this node should be the leader). */
  async proposeEncoded(data: Uint8Array): Promise<{ result: ApplyResult; index: number }> {
    const cmd = decodeCommand(data);
    await this.waitForCapability(`${cmd.t}@${cmd.v}`);
    return this.proposeLocal(data);
  }

  // ---- Replicator ----------------------------------------------------------------

  async propose(cmd: Command): Promise<ApplyResult> {
    this.throwIfStopped();
    const data = encodeCommand(cmd);
    const cap = `${cmd.t}@${cmd.v}`;
    for (;;) {
      const st = this.node.status();
      if (st.role === 'leader') {
        await this.waitForCapability(cap);
        return (await this.proposeLocal(data)).result;
      }
      const leader = st.lead || (await this.waitForLeader());
      if (leader === this.opts.nodeId) continue;
      let reply: { result?: ApplyResult; index?: number };
      try {
        reply = (await this.transport.forwardProposal(leader, data)) as { result?: ApplyResult; index?: number };
      } catch {
        throw new NoLeaderError('the leader could not be reached');
      }
      if (!reply.result || typeof reply.index !== 'number') throw new NoLeaderError('the leader did not commit the write');
      await this.waitApplied(reply.index); // read-your-writes on this node
      return reply.result;
    }
  }

  readBarrier(): Promise<void> {
    this.throwIfStopped();
    return new Promise((resolve, reject) => {
      this.readQueue.push({ resolve, reject });
      this.startReadRound();
    });
  }

  isLeader(): boolean {
    return this.node.status().role === 'leader';
  }

  status(): ReplicationStatus {
    const st = this.node.status();
    const learner = st.confState.learners.includes(this.opts.nodeId);
    const role: NodeRole = learner ? 'learner' : st.role === 'leader' ? 'leader' : st.role === 'follower' ? 'follower' : 'candidate';
    const addresses = this.opts.reader.peerAddresses();
    const peers = [
      ...st.confState.voters.map((id) => ({ id, address: addresses.get(id) ?? '', voter: true })),
      ...st.confState.learners.map((id) => ({ id, address: addresses.get(id) ?? '', voter: false })),
    ];
    const lead = st.lead || null;
    let problem: string | null = this.fatal ? this.fatal.message : null;
    if (!problem && !lead) problem = 'no leader known';
    if (!problem && this.applied.index < st.commit) problem = 'applying committed entries';
    return {
      node_id: this.opts.nodeId,
      role,
      leader_id: lead,
      term: st.term,
      commit_index: st.commit,
      applied_index: this.applied.index,
      peers,
      ready: problem === null,
      problem,
    };
  }

  /**
   * Adds a member: records its address, adds it as a learner, waits for it to
   * catch up, then promotes it to voter. On a follower the request goes to the leader.
   */
  async addPeer(id: string, address: string, timeoutMs = 60_000): Promise<void> {
    if (!this.isLeader()) return this.forwardMembership({ op: 'add', id, address });
    const st = this.node.status();
    if (st.confState.voters.includes(id)) throw new ConflictError(`${id} is already a voter`);
    const r = await this.propose({ t: 'cluster.peer', v: 1, id, address });
    if (!r.ok) throw new ConflictError(r.message);
    if (!st.confState.learners.includes(id)) await this.confChange({ type: 'addLearner', nodeId: id });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = this.node.proposeConfChange({ type: 'addVoter', nodeId: id });
      if (res.ok) {
        this.schedule();
        await this.waitProposal(res.index, res.term);
        return;
      }
      if (res.reason === 'not_leader') throw new NoLeaderError('leadership moved during the change; retry');
      if (Date.now() > deadline) throw new NoLeaderError(`${id} did not catch up in time (${res.reason}); it stays a learner`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async removePeer(id: string): Promise<void> {
    if (!this.isLeader()) return this.forwardMembership({ op: 'remove', id });
    const st = this.node.status();
    if (!st.confState.voters.includes(id) && !st.confState.learners.includes(id)) throw new NotFoundError(`${id} is not a member`);
    await this.confChange({ type: 'removeNode', nodeId: id });
  }

  private async confChange(cc: { type: 'addLearner' | 'addVoter' | 'removeNode'; nodeId: string }): Promise<void> {
    const deadline = Date.now() + LEADER_WAIT_MS;
    for (;;) {
      const res = this.node.proposeConfChange(cc);
      if (res.ok) {
        this.schedule();
        await this.waitProposal(res.index, res.term);
        return;
      }
      if (res.reason === 'invalid_conf_change') throw new ConflictError(`membership change ${cc.type} ${cc.nodeId} is not valid now`);
      if (res.reason === 'not_leader' || Date.now() > deadline) throw new NoLeaderError(`cannot change membership now (${res.reason})`);
      await new Promise((r) => setTimeout(r, 50)); // another change is still being applied
    }
  }

  private waitProposal(index: number, term: number): Promise<ApplyResult> {
    return new Promise((resolve, reject) => this.proposals.set(index, { term, resolve, reject }));
  }

  private async forwardMembership(req: { op: 'add' | 'remove'; id: string; address?: string }): Promise<void> {
    const leader = this.node.status().lead || (await this.waitForLeader());
    try {
      await this.transport.forwardMembership(leader, req);
      await this.readBarrier(); // answer with membership as the leader now has it
    } catch (err) {
      const body = (err as { body?: { error?: { code?: string; message?: string } } }).body?.error;
      if (body?.code === 'conflict') throw new ConflictError(body.message ?? 'conflict');
      if (body?.code === 'not_found') throw new NotFoundError(body.message ?? 'not found');
      throw new NoLeaderError(body?.message ?? 'the leader could not be reached');
    }
  }

  /** Hands leadership to the most caught-up voter (used on SIGTERM and by the admin API). */
  async transferLeadership(to?: string, timeoutMs = 3_000): Promise<string | null> {
    const st = this.node.status();
    const oldLead = st.lead;
    let target = to;
    if (!target && st.role === 'leader') {
      let best = -1;
      for (const [id, pr] of st.progress) {
        if (id === this.opts.nodeId || pr.isLearner) continue;
        if (pr.match > best) {
          best = pr.match;
          target = id;
        }
      }
    } else if (!target) {
      // A follower cannot see replication progress; any voter other than the leader will do.
      target = st.confState.voters.find((v) => v !== oldLead);
    }
    if (!target || target === oldLead) return oldLead || null;
    this.node.transferLeadership(target); // the core forwards it to the leader when we are a follower
    this.schedule();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      const lead = this.node.status().lead;
      if (lead && lead !== oldLead) return lead;
    }
    return this.node.status().lead || null;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.ticker);
    while (this.processing) await new Promise((r) => setTimeout(r, 5));
    this.failPending(new NoLeaderError('node is shutting down'));
    this.transport.close();
    this.disk.close();
  }

  // ---- the loop ---------------------------------------------------------------

  private schedule(): void {
    if (this.scheduled || this.closed || this.fatal) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.process();
    });
  }

  private async process(): Promise<void> {
    if (this.processing) return;
    this.processing = true;
    try {
      while (!this.closed && !this.fatal && this.node.hasReady()) {
        const rd = this.node.ready();
        await this.handle(rd);
        this.node.advance(rd);
      }
    } catch (err) {
      this.stop(err as Error);
    } finally {
      this.processing = false;
    }
    if (!this.closed && !this.fatal && this.node.hasReady()) this.schedule();
  }

  private async handle(rd: Ready): Promise<void> {
    if (rd.snapshot) this.installSnapshot(rd);
    try {
      await this.disk.persist(rd);
    } catch (err) {
      // A failed fsync may have lost pages we cannot know about: stop rather than retry.
      throw new FatalStorageError(`raft log write failed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    for (const m of rd.messages) {
      if (m.type === 'snap') void this.sendSnapshot(m);
      else if (!this.transport.send(m)) this.node.reportUnreachable(m.to);
    }
    for (const e of rd.committedEntries) this.apply(e);
    for (const rs of rd.readStates) this.releaseRead(rs.context, rs.index);
    if (rd.softState) {
      if (rd.softState.role === 'leader') this.opts.onLeader?.();
      if (!rd.softState.lead && this.readRound) this.failReadRound(new NoLeaderError('leader lost'));
    }
    this.maybeCompact();
  }

  private syncPeers(): void {
    for (const [id, address] of this.opts.reader.peerAddresses()) this.transport.setPeer(id, address);
  }

  private installSnapshot(rd: Ready): void {
    const file = Buffer.from(rd.snapshot!.data).toString('utf8');
    if (!file || !fs.existsSync(file)) throw new FatalStorageError('snapshot image missing');
    this.opts.sm.restoreImage(file);
    this.applied = this.opts.sm.appliedIndex();
    this.syncPeers();
    this.opts.logger.info({ index: rd.snapshot!.meta.index }, 'installed snapshot from leader');
  }

  private apply(e: Entry): void {
    let result: ApplyResult = { ok: true };
    try {
      if (e.type === 'normal') {
        result = this.opts.sm.applyEntry(e.index, e.term, e.data);
        if (result.ok && result.note === 'peers') this.syncPeers();
      } else if (e.type === 'noop') {
        this.opts.sm.applyNoop(e.index, e.term);
      } else {
        const cc = decodeConfChange(e.data);
        this.node.applyConfChange(cc);
        this.opts.sm.applyMembership(e.index, e.term, { ...cc, address: null });
        if (cc.type === 'removeNode') this.transport.removePeer(cc.nodeId);
      }
      const w = this.proposals.get(e.index);
      if (w) {
        this.proposals.delete(e.index);
        if (w.term === e.term) w.resolve(result);
        else w.reject(new NoLeaderError('write lost to a leader change; retry'));
      }
    } catch (err) {
      if (err instanceof UnknownCommandError) {
        throw new FatalStorageError(`cannot decode committed entry ${e.index}: ${err.message}; stopped applying`);
      }
      throw err;
    }
    this.applied = { index: Math.max(this.applied.index, e.index), term: e.term };
    // Proposals at indexes below this one were overwritten by another leader's entries.
    for (const [i, w] of this.proposals) {
      if (i < e.index) {
        this.proposals.delete(i);
        w.reject(new NoLeaderError('write lost to a leader change; retry'));
      }
    }
    if (this.appliedWaiters.length > 0) {
      const ready = this.appliedWaiters.filter((w) => w.index <= this.applied.index);
      this.appliedWaiters = this.appliedWaiters.filter((w) => w.index > this.applied.index);
      for (const w of ready) w.resolve();
    }
  }

  private async sendSnapshot(m: Message): Promise<void> {
    const file = path.join(this.snapshotDir, `send-${m.to}-${randomUUID()}.db`);
    try {
      this.opts.sm.writeImage(file);
      await this.transport.sendSnapshot(m, file);
      this.node.reportSnapshot(m.to, true);
    } catch (err) {
      this.opts.logger.warn({ peer: m.to, err: (err as Error).message }, 'snapshot send failed');
      this.node.reportSnapshot(m.to, false);
    } finally {
      fs.rmSync(file, { force: true });
      this.schedule();
    }
  }

  private maybeCompact(): void {
    const limit = this.opts.snapshotEntries ?? 10_000;
    const st = this.disk.storage;
    if (this.applied.index - st.firstIndex() < limit) return;
    const index = Math.min(this.applied.index, this.node.status().applied);
    if (index <= st.firstIndex()) return;
    this.opts.sm.checkpoint(); // state.db now durably holds everything the log is about to drop
    const meta = this.node.compact(index, st.term(index), this.node.status().confState, new Uint8Array(0));
    if (meta) this.disk.rewriteFromSnapshot();
    for (const f of fs.readdirSync(this.snapshotDir)) if (f.startsWith('recv-')) fs.rmSync(path.join(this.snapshotDir, f), { force: true });
  }

  // ---- proposals, reads, waits ---------------------------------------------------

  private proposeLocal(data: Uint8Array): Promise<{ result: ApplyResult; index: number }> {
    const r = this.node.propose(data);
    if (!r.ok) {
      return Promise.reject(new NoLeaderError(r.reason === 'not_leader' ? 'this node is not the leader' : `cannot propose now (${r.reason})`));
    }
    this.schedule();
    return new Promise((resolve, reject) => {
      this.proposals.set(r.index, { term: r.term, resolve: (result) => resolve({ result, index: r.index }), reject });
    });
  }

  private startReadRound(): void {
    if (this.readRound || this.readQueue.length === 0) return;
    const batch = this.readQueue;
    this.readQueue = [];
    const ctx = randomUUID();
    if (!this.node.readIndex(ctx)) {
      // No leader known yet: give the election a moment before refusing.
      void this.waitForLeader()
        .then(() => {
          this.readQueue.unshift(...batch);
          this.startReadRound();
        })
        .catch((err: Error) => batch.forEach((w) => w.reject(err)));
      return;
    }
    const timer = setTimeout(() => this.failReadRound(new NoLeaderError('read barrier timed out')), READ_TIMEOUT_MS);
    this.readRound = { ctx, batch, timer };
    this.schedule();
  }

  private releaseRead(ctx: string, index: number): void {
    const round = this.readRound;
    if (!round || round.ctx !== ctx) return;
    clearTimeout(round.timer);
    this.readRound = null;
    void this.waitApplied(index).then(() => round.batch.forEach((w) => w.resolve()));
    this.startReadRound();
  }

  private failReadRound(err: Error): void {
    const round = this.readRound;
    if (!round) return;
    clearTimeout(round.timer);
    this.readRound = null;
    round.batch.forEach((w) => w.reject(err));
    this.startReadRound();
  }

  private waitApplied(index: number): Promise<void> {
    if (this.applied.index >= index) return Promise.resolve();
    return new Promise((resolve) => this.appliedWaiters.push({ index, resolve }));
  }

  private async waitForLeader(): Promise<string> {
    const deadline = Date.now() + LEADER_WAIT_MS;
    for (;;) {
      this.throwIfStopped();
      const lead = this.node.status().lead;
      if (lead) return lead;
      if (Date.now() > deadline) throw new NoLeaderError('no leader elected');
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** The leader proposes a command type only when every voter advertises it. */
  private async waitForCapability(cap: string): Promise<void> {
    const deadline = Date.now() + LEADER_WAIT_MS;
    for (;;) {
      const holdout = this.capabilityHoldout(cap);
      if (holdout === null) return;
      if (Date.now() > deadline) throw new NoLeaderError(`voter ${holdout} does not advertise ${cap}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** The first voter that does not (yet) advertise `cap`, or null. */
  capabilityHoldout(cap: string): string | null {
    for (const v of this.node.status().confState.voters) {
      if (v === this.opts.nodeId) {
        if (!this.opts.capabilities.includes(cap)) return v;
        continue;
      }
      if (!this.peerCaps.get(v)?.includes(cap)) return v;
    }
    return null;
  }

  private throwIfStopped(): void {
    if (this.fatal) throw new FatalStorageError('node stopped after a storage fault');
    if (this.closed) throw new NoLeaderError('node is shutting down');
  }

  private failPending(err: Error): void {
    for (const w of this.proposals.values()) w.reject(err);
    this.proposals.clear();
    this.readQueue.splice(0).forEach((w) => w.reject(err));
    this.failReadRound(err);
  }

  private stop(err: Error): void {
    if (this.fatal) return;
    this.fatal = err;
    this.opts.logger.fatal({ err: { name: err.name, message: err.message } }, 'raft stopped; reporting not ready');
    this.failPending(new FatalStorageError('node stopped after a storage fault'));
    this.opts.onFatal?.(err);
  }
}
