// The Raft driver: runs the pure core (server/raft/core) against real time,
// the log file, the HTTP transport and the SQLite state machine, and offers
// the Replicator seam. It only composes the parts, each one concern:
//   ready-loop.ts   ticks, and handles each Ready: persist, send, apply, release reads
//   apply.ts        committed entries into state.db, then their waiters
//   proposals.ts    local proposals and forwarding to the leader (capabilities.ts gates versions)
//   reads.ts        the ReadIndex barrier, and reads from a lease on the leader
//   membership.ts   add and remove members, learner promotion, leadership transfer
//   snapshots.ts    compaction, and images sent to and installed from the leader
import { randomInt } from 'node:crypto';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Command } from '../../store/commands.js';
import type { ApplyResult } from '../../store/results.js';
import type { StateMachine } from '../../store/state-machine.js';
import type { StateReader } from '../../store/queries.js';
import type { ClusterAuth } from '../cluster-auth.js';
import { RaftNode, type Message } from '../core/index.js';
import { awaitingJoinMarked, raftLogIsNew, setAwaitingJoinMark } from '../data-id.js';
import { DiskStorage } from '../disk-storage.js';
import type { ProbeReply } from '../probe.js';
import { NoLeaderError, type NodeRole, type ReplicationStatus, type Replicator } from '../replicator.js';
import { Transport } from '../transport.js';
import { LEASE_VOTES } from '../../store/commands.js';
import { leaseDuration, ReadLease } from '../lease.js';
import { applyCommitted } from './apply.js';
import { ApplyLag } from './apply-lag.js';
import { AppliedIndex } from './applied.js';
import { CapabilityGate } from './capabilities.js';
import { isLeader, type DriverWriteGuard } from './context.js';
import { Autopilot } from './autopilot.js';
import { Membership } from './membership.js';
import { PeerAddresses } from './peer-addresses.js';
import { PendingProposals } from './pending-proposals.js';
import { Proposer, type Committed } from './proposals.js';
import { ReadBarrier, type ReadPath } from './reads.js';
import { ReadyLoop } from './ready-loop.js';
import { Snapshots } from './snapshots.js';

export interface RaftReplicatorOptions {
  nodeId: string;
  dataDir: string;
  /** Initial voters (VAULT_PEERS), used only when the log is new. */
  initialPeers: ReadonlyArray<{ id: string; address: string }>;
  sm: StateMachine;
  reader: StateReader;
  capabilities: string[];
  /** Signs every Raft request from the first one on (nothing leaves unsigned). */
  auth: ClusterAuth;
  logger: Logger;
  tickMs?: number;
  electionTicks?: number;
  /** Serve linearizable reads on the leader from a read lease (../lease.ts) once every voter advertises LEASE_VOTES. Default true. */
  leaseReads?: boolean;
  /** Counts each linearizable read on a cluster of several voters by how it was confirmed. */
  onRead?: (path: ReadPath) => void;
  /** Entries kept in the log before it is compacted behind a snapshot. */
  snapshotEntries?: number;
  /**
   * Refuses writes before they are proposed while the data volume is short of
   * space, and hears when this node's own storage writes wait for space.
   */
  writeGuard?: DriverWriteGuard;
  /**
   * Called once when the node stops on a storage fault it cannot recover
   * from in place (a failed fsync, a state.db I/O error, a snapshot that
   * cannot be installed: anything but a full volume, which is waited out),
   * BEFORE pending writes are failed. `coffer server` logs and exits here, so
   * those writes, whose outcome is unknown, are never answered with an error
   * and the restart recovers from the log; see ReadyLoop.stop(). Not called for an
   * entry this release cannot decode (UndecodableEntryError): the node stays
   * up and says why.
   */
  onFatal?: (err: Error) => void;
  /** Called each time this node becomes leader (e.g. to propose the bootstrap token). */
  onLeader?: () => void;
  /** This Raft directory's storage identity (data-id.ts). */
  dataId: string;
  /**
   * The cluster knows this node under another storage identity (join-check.ts):
   * it lost its data, so it must not bootstrap from VAULT_PEERS even if listed there.
   */
  formerMember?: boolean;
  /** How long a caught-up learner stays healthy before the autopilot promotes it. */
  autopilotStabilizationMs?: number;
  /** Counts each autopilot change, by kind. */
  onAutopilotChange?: (kind: string) => void;
}

export class RaftReplicator implements Replicator {
  /** The core, for tests that write below the command layer; the driver itself uses only its public API. */
  readonly node: RaftNode;
  /** The Raft transport, for requests to other members' listeners (e.g. the re-wrap nudge). */
  readonly transport: Transport;
  private readonly disk: DiskStorage;
  private readonly loop: ReadyLoop;
  private readonly applied: AppliedIndex;
  private readonly pending = new PendingProposals();
  private readonly peers: PeerAddresses;
  private readonly gate: CapabilityGate;
  private readonly proposer: Proposer;
  private readonly reads: ReadBarrier;
  private readonly membership: Membership;
  private readonly snapshots: Snapshots;
  private readonly applyLag = new ApplyLag();
  /** Keeps membership equal to the declared members while this node leads. */
  readonly autopilot: Autopilot;

  constructor(private readonly opts: RaftReplicatorOptions) {
    const raftDir = path.join(opts.dataDir, 'raft');
    const fresh = raftLogIsNew(raftDir);
    const initialVoter = opts.initialPeers.some((p) => p.id === opts.nodeId) && !opts.formerMember;
    // A node on an empty log that is not bootstrapping neither votes nor campaigns until it is added as a learner.
    const awaitingJoin = (fresh && !initialVoter) || awaitingJoinMarked(raftDir);
    if (awaitingJoin) setAwaitingJoinMark(raftDir, true); // before the first entry reaches the log
    this.disk = DiskStorage.open(raftDir, initialVoter ? opts.initialPeers.map((p) => p.id) : null);
    if (opts.reader.peerAddresses().size === 0) opts.sm.seedPeers(opts.initialPeers);
    this.applied = new AppliedIndex(opts.sm.appliedIndex().index);
    this.node = new RaftNode({
      id: opts.nodeId,
      storage: this.disk.storage,
      rng: { int: (n: number) => randomInt(n) },
      electionTick: opts.electionTicks ?? 10,
      heartbeatTick: 1,
      awaitingJoin,
      // Always: other leaders' leases rely on this voter, whether or not it serves lease reads itself.
      leaseReads: true,
    });
    if (awaitingJoin) this.clearAwaitingJoinWhenAdded(raftDir);
    this.transport = new Transport({
      nodeId: opts.nodeId,
      capabilities: opts.capabilities,
      onUnreachable: (peer) => {
        this.node.reportUnreachable(peer);
        this.loop.schedule();
      },
      onPeerCapabilities: (peer, caps) => this.gate.heard(peer, caps),
    });
    this.transport.authenticate(opts.auth);
    const { nodeId, logger, writeGuard, onFatal } = opts;
    const ctx = (this.loop = new ReadyLoop({ nodeId, node: this.node, disk: this.disk, transport: this.transport, logger, writeGuard, onFatal }));
    this.peers = new PeerAddresses(opts.reader, this.transport);
    this.peers.sync();
    this.gate = new CapabilityGate(ctx, opts.capabilities);
    this.proposer = new Proposer(ctx, this.gate, this.pending, this.applied, this.transport);
    const tickMs = opts.tickMs ?? 100;
    const lease = new ReadLease(leaseDuration(opts.electionTicks ?? 10, tickMs));
    this.reads = new ReadBarrier(
      ctx,
      this.applied,
      opts.leaseReads === false ? null : { lease, now: () => performance.now(), allowed: () => this.gate.holdout(LEASE_VOTES) === null },
      opts.onRead,
    );
    this.membership = new Membership(ctx, this.proposer, this.pending, this.reads, this.transport);
    this.autopilot = new Autopilot({
      ctx,
      membership: this.membership,
      reader: opts.reader,
      transport: this.transport,
      propose: (cmd) => this.proposer.propose(cmd),
      dataId: opts.dataId,
      stabilizationMs: opts.autopilotStabilizationMs ?? 10_000,
      ...(opts.onAutopilotChange ? { onChange: opts.onAutopilotChange } : {}),
    });
    this.snapshots = new Snapshots(ctx, {
      sm: opts.sm,
      disk: this.disk,
      transport: this.transport,
      applied: this.applied,
      peers: this.peers,
      dir: path.join(raftDir, 'snapshots'),
      snapshotEntries: opts.snapshotEntries,
    });
    // Single-voter clusters elect themselves at once instead of waiting out a timeout.
    if (this.node.basicStatus().confState.voters.length === 1 && initialVoter) this.node.campaign();
    this.loop.start(
      {
        snapshots: this.snapshots,
        reads: this.reads,
        apply: (ents) =>
          applyCommitted(ents, { sm: opts.sm, node: this.node, peers: this.peers, pending: this.pending, applied: this.applied, onConfChange: () => this.reads.revokeLease() }),
        failPending: (err) => this.failPending(err),
        onLeader: () => {
          opts.onLeader?.();
          // Record every member's storage identity at once, not a round later (autopilot.ts).
          void this.autopilot.round();
        },
      },
      tickMs,
    );
    this.autopilot.start();
  }

  /** The mark goes once the core has seen this node (re-)added as a learner. */
  private clearAwaitingJoinWhenAdded(raftDir: string): void {
    const check = () => {
      if (this.loop.isClosed) return clearInterval(timer);
      if (this.node.basicStatus().awaitingJoin) return;
      clearInterval(timer);
      setAwaitingJoinMark(raftDir, false);
      this.opts.logger.info('added to the cluster as a learner: this node votes once promoted');
    };
    const timer = setInterval(check, 250);
    timer.unref();
  }

  // ---- inbound from the Raft listener ----------------------------------------

  receive(msgs: readonly Message[], from: string, caps: string[] | null): void {
    if (caps) this.gate.heard(from, caps);
    for (const m of msgs) if (m.type !== 'snap') this.node.step(m);
    this.loop.schedule();
  }

  /** A snapshot image arrived on disk; hand its message to the core with the file as data. */
  receiveSnapshot(m: Message, imageFile: string): void {
    this.snapshots.received(m, imageFile);
  }

  snapshotReceivePath(index: number): string {
    return this.snapshots.receivePath(index);
  }

  /** A forwarded proposal from a follower, admitted and decoded once by the listener (this node should be the leader). */
  proposeForwarded(cmd: Command, data: Uint8Array): Promise<Committed> {
    return this.proposer.proposeForwarded(cmd, data);
  }

  /**
   * Who may send to this node: its current voters and learners, and every peer
   * in its address book (VAULT_PEERS at first; then the replicated peer list,
   * which drops removed members). A joiner that is not yet in any configuration
   * knows the voters it was started with, so it accepts the leader's appends.
   */
  knows(id: string): boolean {
    const cs = this.node.basicStatus().confState;
    return cs.voters.includes(id) || cs.learners.includes(id) || this.transport.address(id) !== undefined;
  }

  /** The reply to a membership probe from `from` (probe.ts). */
  probeReply(from: string): ProbeReply {
    const st = this.node.basicStatus();
    return {
      node_id: this.opts.nodeId,
      data_id: this.opts.dataId,
      term: st.term,
      last_index: this.disk.storage.lastIndex(),
      commit_index: st.commit,
      awaiting_join: st.awaitingJoin,
      your_data_id: this.opts.reader.memberDataIds().get(from) ?? null,
    };
  }

  /** The first voter that does not (yet) advertise `cap`, or null. */
  capabilityHoldout(cap: string): string | null {
    return this.gate.holdout(cap);
  }

  // ---- Replicator ----------------------------------------------------------------

  propose(cmd: Command): Promise<ApplyResult> {
    return this.proposer.propose(cmd);
  }

  readBarrier(): Promise<void> {
    return this.reads.wait();
  }

  isLeader(): boolean {
    return isLeader(this.loop);
  }

  addPeer(id: string, address: string, timeoutMs?: number): Promise<void> {
    return this.membership.addPeer(id, address, timeoutMs);
  }

  removePeer(id: string): Promise<void> {
    return this.membership.removePeer(id);
  }

  /** Hands leadership to `to` or the most caught-up voter (used on SIGTERM and by the admin API). */
  transferLeadership(to?: string, timeoutMs?: number): Promise<string | null> {
    return this.membership.transferLeadership(to, timeoutMs);
  }

  status(): ReplicationStatus {
    const st = this.node.basicStatus();
    const learner = st.confState.learners.includes(this.opts.nodeId);
    const role: NodeRole = learner ? 'learner' : st.role === 'leader' ? 'leader' : st.role === 'follower' ? 'follower' : 'candidate';
    const addresses = this.peers.all();
    const peers = [
      ...st.confState.voters.map((id) => ({ id, address: addresses.get(id) ?? '', voter: true })),
      ...st.confState.learners.map((id) => ({ id, address: addresses.get(id) ?? '', voter: false })),
    ];
    const lead = st.lead || null;
    const fatal = this.loop.stoppedBy;
    let problem: string | null = fatal ? fatal.message : null;
    if (!problem) problem = this.opts.writeGuard?.problem() ?? null;
    if (!problem && !lead) problem = 'no leader known';
    if (!problem && this.applyLag.problem(this.applied.index, st.commit)) problem = 'applying committed entries';
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
      stopped: fatal !== null,
      autopilot: this.autopilot.report(),
    };
  }

  async close(): Promise<void> {
    if (this.loop.isClosed) return;
    await this.autopilot.close();
    await this.loop.close();
    this.failPending(new NoLeaderError('node is shutting down'));
    this.transport.close();
    this.disk.close();
  }

  private failPending(err: Error): void {
    this.pending.failAll(err);
    this.reads.failAll(err);
  }
}
