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
import { ConflictError, FatalStorageError, NoLeaderError, NotFoundError, UndecodableEntryError, type NodeRole, type ReplicationStatus, type Replicator } from './replicator.js';
import { Transport } from './transport.js';
import { WalSyncError } from './wal.js';
import { InsufficientStorageError, isNoSpace, type WriteGuard } from '../storage/write-guard.js';

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
  /**
   * Refuses writes before they are proposed while the data volume is short of
   * space, and hears when this node's own storage writes wait for space.
   */
  writeGuard?: Pick<WriteGuard, 'check' | 'waitForSpace' | 'resumed' | 'problem'>;
  /**
   * Called once when the node stops on a storage fault it cannot recover
   * from in place (a failed fsync, a state.db I/O error, a snapshot that
   * cannot be installed: anything but a full volume, which is waited out),
   * BEFORE pending writes are failed. `coffer server` logs and exits here, so
   * those writes, whose outcome is unknown, are never answered with an error
   * and the restart recovers from the log; see stop(). Not called for an
   * entry this release cannot decode (UndecodableEntryError): the node stays
   * up and says why.
   */
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
  deadline: number;
}

const LEADER_WAIT_MS = 3_000;
/** A storage write that failed for lack of space is retried after this long, doubling up to STALL_RETRY_MAX_MS. */
const STALL_RETRY_MS = 50;
const STALL_RETRY_MAX_MS = 500;
/** After a compaction failed for lack of space, the next attempt waits this long. */
const COMPACT_BACKOFF_MS = 5_000;
const READ_TIMEOUT_MS = 5_000;
/** A ReadIndex request or its heartbeat round can be lost like any message: ask again after this long. */
const READ_RETRY_MS = 1_000;

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
  /** Term and vote last made durable (appends in that term may leave before their own fsync). */
  private persistedHard: { term: number; vote: string };
  private addresses: Map<string, string> | null = null;
  private compactAfter = 0;

  constructor(opts: RaftReplicatorOptions) {
    this.opts = opts;
    const raftDir = path.join(opts.dataDir, 'raft');
    this.snapshotDir = path.join(raftDir, 'snapshots');
    fs.mkdirSync(this.snapshotDir, { recursive: true, mode: 0o700 });
    const initialVoter = opts.initialPeers.some((p) => p.id === opts.nodeId);
    this.disk = DiskStorage.open(raftDir, initialVoter ? opts.initialPeers.map((p) => p.id) : null);
    if (opts.reader.peerAddresses().size === 0) opts.sm.seedPeers(opts.initialPeers);
    this.applied = opts.sm.appliedIndex();
    const hs = this.disk.storage.hardState();
    this.persistedHard = { term: hs.term, vote: hs.vote };
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
    this.throwIfStopped();
    this.opts.writeGuard?.check(); // the leader's own volume takes every entry first
    const cmd = decodeCommand(data);
    await this.waitForCapability(`${cmd.t}@${cmd.v}`);
    return this.proposeLocal(data);
  }

  // ---- Replicator ----------------------------------------------------------------

  async propose(cmd: Command): Promise<ApplyResult> {
    this.throwIfStopped();
    // Refused before anything is proposed (507): this node stores and applies every entry too.
    this.opts.writeGuard?.check();
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
      } catch (err) {
        // The leader refused it before proposing (its own volume is short of space): nothing was committed.
        const body = (err as { body?: { error?: { code?: unknown; message?: unknown } } }).body?.error;
        if (body?.code === 'insufficient_storage') throw new InsufficientStorageError(`the leader refused the write: ${String(body.message ?? 'insufficient storage')}`);
        throw new NoLeaderError('the leader could not be reached');
      }
      if (!reply.result || typeof reply.index !== 'number') throw new NoLeaderError('the leader did not commit the write');
      await this.waitApplied(reply.index); // read-your-writes on this node
      return reply.result;
    }
  }

  readBarrier(): Promise<void> {
    this.throwIfStopped();
    // A lone voter that leads is the whole quorum: its ReadIndex is its commit index, already applied
    // (the core answers the same without a round trip). Skipping the Ready loop keeps single-node reads cheap.
    const r = this.node.raft;
    if (r.role === 'leader' && r.tracker.voters.size === 1 && this.applied.index >= r.log.committed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.readQueue.push({ resolve, reject, deadline: Date.now() + READ_TIMEOUT_MS });
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
    const addresses = this.peerAddresses();
    const peers = [
      ...st.confState.voters.map((id) => ({ id, address: addresses.get(id) ?? '', voter: true })),
      ...st.confState.learners.map((id) => ({ id, address: addresses.get(id) ?? '', voter: false })),
    ];
    const lead = st.lead || null;
    let problem: string | null = this.fatal ? this.fatal.message : null;
    if (!problem) problem = this.opts.writeGuard?.problem() ?? null;
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
      stopped: this.fatal !== null,
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
    this.opts.writeGuard?.check();
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
    // Leader appends go out before the leader's own fdatasync, so the
    // followers' fsyncs overlap it (Raft thesis §10.2.1); see sendsBeforePersist.
    const early = this.sendsBeforePersist(rd);
    for (const m of early) this.sendOne(m);
    try {
      // A full volume: the write was undone (Wal.append), so the same Ready is simply tried again
      // once there is room; nothing after it happens meanwhile.
      await this.untilStored('appending to the raft log', () => this.disk.persist(rd));
    } catch (err) {
      // A failed fsync may have lost pages we cannot know about: stop rather than retry.
      if (this.closed) throw err;
      throw new FatalStorageError(`raft log write failed: ${err instanceof WalSyncError ? err.message : ((err as NodeJS.ErrnoException).code ?? (err as Error).message)}`);
    }
    if (rd.hardState) this.persistedHard = { term: rd.hardState.term, vote: rd.hardState.vote };
    if (early.length < rd.messages.length) for (const m of rd.messages) if (!early.includes(m)) this.sendOne(m);
    // The apply transaction rolls back whole when state.db finds no room, so it is retried like the append.
    if (rd.committedEntries.length > 0) await this.untilStored('applying to state.db', () => this.applyCommitted(rd.committedEntries));
    for (const rs of rd.readStates) this.releaseRead(rs.context, rs.index);
    if (rd.softState) {
      if (rd.softState.role === 'leader') this.opts.onLeader?.();
      if (!rd.softState.lead && this.readRound) this.failReadRound(new NoLeaderError('leader lost'));
    }
    this.maybeCompact();
  }

  private sendOne(m: Message): void {
    if (m.type === 'snap') void this.sendSnapshot(m);
    else if (!this.transport.send(m)) this.node.reportUnreachable(m.to);
  }

  /**
   * The messages of `rd` that may leave before its entries and hard state are
   * durable: this node's own appends and heartbeats, as leader, in a term
   * (and vote) already on disk. Everything else (votes, vote responses,
   * append responses, and anything in a Ready that changes term or vote or
   * installs a snapshot) waits for the fdatasync as before.
   *
   * Why this is safe although the core counts the leader's own match at
   * append time (raft.ts appendEntries), i.e. before it is durable:
   * - An append only asks followers to store entries; by itself it commits
   *   nothing and acknowledges nothing. If the leader crashes before its
   *   fsync, the entries live on some followers only, like any uncommitted
   *   entry, and the next leader keeps or overwrites them.
   * - The commit index may count the leader's not-yet-durable entries, but it
   *   only changes while this Ready's fsync is awaited (acks stepped in by
   *   receive()), and everything that makes a commit visible — applying
   *   entries (and so answering clients), read states, and the commit index
   *   carried in later appends and heartbeats — comes in a LATER Ready. The
   *   loop creates the next Ready only after this one's persist resolved, so
   *   by then every entry counted for the leader is on its disk as well as on
   *   the acknowledging followers': a real quorum of durable copies.
   * - The commit index carried by the early messages themselves was computed
   *   before this Ready, from acks of entries sent in earlier Readies, which
   *   were durable here before this Ready existed.
   * - A failed fsync stops the node (FatalStorageError) before any later
   *   Ready, so nothing counted on the lost write is ever applied or announced.
   * - The term and vote the appends carry were persisted by the Ready that
   *   made this node a candidate (checked against persistedHard), so a crash
   *   cannot let this node vote again in a term it has led.
   */
  private sendsBeforePersist(rd: Ready): readonly Message[] {
    if (rd.messages.length === 0 || rd.snapshot) return [];
    const term = this.persistedHard.term;
    if (rd.hardState && (rd.hardState.term !== term || rd.hardState.vote !== this.persistedHard.vote)) return [];
    const self = this.opts.nodeId;
    let all = true;
    for (const m of rd.messages) {
      if (!((m.type === 'app' || m.type === 'heartbeat') && m.from === self && m.term === term)) {
        all = false;
        break;
      }
    }
    if (all) return rd.messages;
    return rd.messages.filter((m) => (m.type === 'app' || m.type === 'heartbeat') && m.from === self && m.term === term);
  }

  private syncPeers(): void {
    this.addresses = null;
    for (const [id, address] of this.peerAddresses()) this.transport.setPeer(id, address);
  }

  /** The members' addresses from state.db, cached until an apply or snapshot may change them. */
  private peerAddresses(): Map<string, string> {
    return (this.addresses ??= this.opts.reader.peerAddresses());
  }

  private installSnapshot(rd: Ready): void {
    const file = Buffer.from(rd.snapshot!.data).toString('utf8');
    if (!file || !fs.existsSync(file)) throw new FatalStorageError('snapshot image missing');
    this.opts.sm.restoreImage(file);
    this.addresses = null;
    this.applied = this.opts.sm.appliedIndex();
    this.syncPeers();
    this.opts.logger.info({ index: rd.snapshot!.meta.index }, 'installed snapshot from leader');
  }

  /**
   * Applies the committed entries of one Ready in ONE state.db transaction
   * (each entry still records its own applied index). Waiters hear of results
   * only after that transaction committed. An entry this release cannot
   * decode stops applying right there: the entries before it commit, nothing
   * after it is applied, and the node stops.
   *
   * Nothing outside state.db changes until the transaction committed (the
   * core and the transport learn of membership changes afterwards), so a
   * batch that failed and rolled back can be applied again as it was.
   */
  private applyCommitted(ents: readonly Entry[]): void {
    const sm = this.opts.sm;
    const results: ApplyResult[] = [];
    const confChanges: ReturnType<typeof decodeConfChange>[] = [];
    let stopAt: Error | null = null;
    let peersChanged = false;
    sm.batch(() => {
      for (const e of ents) {
        let result: ApplyResult = { ok: true };
        if (e.type === 'normal') {
          try {
            result = sm.applyEntry(e.index, e.term, e.data);
          } catch (err) {
            if (!(err instanceof UnknownCommandError)) throw err;
            // Nothing of this entry was written (decoding comes first): commit the prefix.
            stopAt = new UndecodableEntryError(`cannot decode committed entry ${e.index}: ${err.message}; stopped applying`);
            return;
          }
          if (result.ok && result.note === 'peers') peersChanged = true;
        } else if (e.type === 'noop') {
          sm.applyNoop(e.index, e.term);
        } else {
          const cc = decodeConfChange(e.data);
          sm.applyMembership(e.index, e.term, cc);
          confChanges.push(cc);
        }
        results.push(result);
      }
    });
    for (const cc of confChanges) {
      this.node.applyConfChange(cc);
      if (cc.type === 'removeNode') this.transport.removePeer(cc.nodeId);
      this.addresses = null;
    }
    if (peersChanged) this.syncPeers();
    const n = results.length;
    for (let k = 0; k < n; k++) {
      const e = ents[k]!;
      const w = this.proposals.get(e.index);
      if (w) {
        this.proposals.delete(e.index);
        if (w.term === e.term) w.resolve(results[k]!);
        else w.reject(new NoLeaderError('write lost to a leader change; retry'));
      }
    }
    if (n > 0) {
      const last = ents[n - 1]!;
      this.applied = { index: Math.max(this.applied.index, last.index), term: last.term };
      // Proposals at indexes below this one were overwritten by another leader's entries.
      if (this.proposals.size > 0) {
        for (const [i, w] of this.proposals) {
          if (i < last.index) {
            this.proposals.delete(i);
            w.reject(new NoLeaderError('write lost to a leader change; retry'));
          }
        }
      }
      if (this.appliedWaiters.length > 0) {
        const ready = this.appliedWaiters.filter((w) => w.index <= this.applied.index);
        this.appliedWaiters = this.appliedWaiters.filter((w) => w.index > this.applied.index);
        for (const w of ready) w.resolve();
      }
    }
    if (stopAt) throw stopAt;
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

  /**
   * Compaction only saves space, so a volume too full for it skips it (and
   * tries again later) instead of stalling the loop: the checkpoint failing
   * leaves the log whole; the rewrite failing leaves the old, longer file,
   * which still holds every entry (Wal.rewrite removes its partial copy).
   */
  private maybeCompact(): void {
    const limit = this.opts.snapshotEntries ?? 10_000;
    const st = this.disk.storage;
    if (this.applied.index - st.firstIndex() < limit) return;
    const index = Math.min(this.applied.index, this.node.status().applied);
    if (index <= st.firstIndex()) return;
    if (Date.now() < this.compactAfter) return;
    try {
      this.opts.sm.checkpoint(); // state.db now durably holds everything the log is about to drop
      const meta = this.node.compact(index, st.term(index), this.node.status().confState, new Uint8Array(0));
      if (meta) this.disk.rewriteFromSnapshot();
    } catch (err) {
      if (!isNoSpace(err)) throw err;
      this.compactAfter = Date.now() + COMPACT_BACKOFF_MS;
      this.opts.logger.warn({ err: { code: (err as NodeJS.ErrnoException).code } }, 'raft log compaction skipped: the data volume is full');
    }
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
    const timer = setTimeout(() => this.retryReadRound(ctx), READ_RETRY_MS);
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

  /** The round went unanswered: re-ask with a fresh context (still a point after every read began), or give up at the deadline. */
  private retryReadRound(ctx: string): void {
    const round = this.readRound;
    if (!round || round.ctx !== ctx) return;
    this.readRound = null;
    const now = Date.now();
    const expired = round.batch.filter((w) => w.deadline <= now);
    expired.forEach((w) => w.reject(new NoLeaderError('read barrier timed out')));
    this.readQueue.unshift(...round.batch.filter((w) => w.deadline > now));
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

  /**
   * Runs a storage write, and while it fails for lack of space (ENOSPC,
   * EDQUOT, SQLITE_FULL) runs it again after a pause, until it succeeds or
   * the node closes. Meanwhile the loop holds this Ready (nothing later is
   * sent, applied or answered), the write guard refuses new writes with 507
   * and the node reports not ready; pending writes simply wait (a client that
   * gives up meanwhile saw a timeout, whose outcome the contract leaves open).
   * Any other failure is thrown at once.
   */
  private async untilStored<T>(what: string, write: () => T | Promise<T>): Promise<T> {
    let waited = false;
    for (let pause = STALL_RETRY_MS; ; pause = Math.min(pause * 2, STALL_RETRY_MAX_MS)) {
      try {
        const out = await write();
        if (waited) {
          this.opts.writeGuard?.resumed('raft');
          this.opts.logger.info(`data volume has room again: ${what} resumed`);
        }
        return out;
      } catch (err) {
        if (err instanceof WalSyncError || !isNoSpace(err)) throw err;
        if (this.closed) throw new NoLeaderError('node is shutting down');
        if (!waited) {
          waited = true;
          this.opts.writeGuard?.waitForSpace('raft', what);
          this.opts.logger.error({ err: { code: (err as NodeJS.ErrnoException).code } }, `data volume full: ${what} waits for space; writes are refused meanwhile`);
        }
      }
      await new Promise((r) => setTimeout(r, pause));
    }
  }

  /**
   * The node stops for good. On a storage fault the exit hook runs first: the outcome of the
   * writes still pending is unknown (a leader's appends left before its own
   * fsync and may be committed by the next leader; a failed fsync may still
   * have reached the disk), so `coffer server` exits right there and their
   * connections drop, which a client must treat like a timeout. Only an
   * embedder without an exit hook gets them failed with FatalStorageError.
   */
  private stop(err: Error): void {
    if (this.fatal || this.closed) return;
    this.fatal = err;
    this.opts.logger.fatal({ err: { name: err.name, message: err.message } }, 'raft stopped; reporting not ready');
    if (!(err instanceof UndecodableEntryError)) this.opts.onFatal?.(err);
    this.failPending(new FatalStorageError('node stopped after a storage fault'));
  }
}
