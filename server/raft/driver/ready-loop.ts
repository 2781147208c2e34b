// The Ready loop: ticks the core, and handles each Ready in the order the core
// requires: install a snapshot, persist (one fdatasync per Ready = group
// commit), send, apply, release reads, advance. It also owns the node's
// lifecycle (running, stopped on a storage fault, closed), and is the
// DriverContext the other parts of the driver share.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Entry, HardState, Message, RaftNode, Ready } from '../core/index.js';
import type { DiskStorage } from '../disk-storage.js';
import type { Transport } from '../transport.js';
import { FatalStorageError, NoLeaderError, UndecodableEntryError } from '../replicator.js';
import { WalSyncError } from '../wal.js';
import type { DriverContext, DriverWriteGuard } from './context.js';
import { sendsBeforePersist } from './early-sends.js';
import { CommitNotices } from './commit-notices.js';
import type { ReadBarrier } from './reads.js';
import type { Snapshots } from './snapshots.js';
import { untilStored } from './until-stored.js';

export interface LoopDeps {
  nodeId: string;
  node: RaftNode;
  disk: Pick<DiskStorage, 'persist' | 'storage'>;
  transport: Pick<Transport, 'send'>;
  logger: Logger;
  writeGuard: DriverWriteGuard | undefined;
  /** See RaftReplicatorOptions.onFatal. */
  onFatal: ((err: Error) => void) | undefined;
}

/** The parts that act on a Ready; given at start, as etcd's raftNode gets its ready handler. */
export interface ReadyHandlers {
  snapshots: Snapshots;
  reads: ReadBarrier;
  apply(ents: readonly Entry[]): void;
  /** Fails every proposal and read still waiting. */
  failPending(err: Error): void;
  /** This node just became leader. */
  onLeader: (() => void) | undefined;
}

export class ReadyLoop implements DriverContext {
  readonly nodeId: string;
  readonly node: RaftNode;
  readonly logger: Logger;
  readonly writeGuard: DriverWriteGuard | undefined;
  private handlers: ReadyHandlers | null = null;
  private ticker: NodeJS.Timeout | null = null;
  private scheduled = false;
  private processing = false;
  private fatal: Error | null = null;
  private closed = false;
  /** Term and vote last made durable (appends in that term may leave before their own fsync). */
  private persistedHard: Pick<HardState, 'term' | 'vote'>;
  /** Commit-only appends, held briefly so the next write's append carries them (commit-notices.ts). */
  private readonly notices = new CommitNotices((m) => this.transmit(m));

  constructor(private readonly d: LoopDeps) {
    this.nodeId = d.nodeId;
    this.node = d.node;
    this.logger = d.logger;
    this.writeGuard = d.writeGuard;
    const hs = d.disk.storage.hardState();
    this.persistedHard = { term: hs.term, vote: hs.vote };
  }

  /** Starts ticking the core every `tickMs` and handling its Readies. */
  start(handlers: ReadyHandlers, tickMs: number): void {
    this.handlers = handlers;
    this.ticker = setInterval(() => {
      this.node.tick();
      this.schedule();
    }, tickMs);
    this.schedule();
  }

  /** The storage fault the node stopped on, if it did. */
  get stoppedBy(): Error | null {
    return this.fatal;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  throwIfStopped(): void {
    if (this.fatal) throw new FatalStorageError('node stopped after a storage fault');
    if (this.closed) throw new NoLeaderError('node is shutting down');
  }

  schedule(): void {
    if (this.scheduled || this.closed || this.fatal || !this.handlers) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.process();
    });
  }

  /** Stops ticking and waits for the Ready in hand to finish. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.ticker) clearInterval(this.ticker);
    this.notices.close();
    while (this.processing) await sleep(5);
  }

  private async process(): Promise<void> {
    if (this.processing) return;
    this.processing = true;
    try {
      while (!this.closed && !this.fatal && this.node.hasReady()) {
        const rd = this.node.ready();
        await this.handle(rd, this.handlers!);
        this.node.advance(rd);
      }
    } catch (err) {
      this.stop(err as Error);
    } finally {
      this.processing = false;
    }
    if (!this.closed && !this.fatal && this.node.hasReady()) this.schedule();
  }

  private async handle(rd: Ready, h: ReadyHandlers): Promise<void> {
    if (rd.snapshot) h.snapshots.install(rd.snapshot);
    // Leader appends go out before the leader's own fdatasync, so the
    // followers' fsyncs overlap it (Raft thesis §10.2.1); see early-sends.ts.
    const early = sendsBeforePersist(rd, this.nodeId, this.persistedHard);
    for (const m of early) this.send(m, h);
    try {
      // A full volume: the write was undone (Wal.append), so the same Ready is simply tried again
      // once there is room; nothing after it happens meanwhile.
      await untilStored(this, 'appending to the raft log', () => this.d.disk.persist(rd));
    } catch (err) {
      // A failed fsync may have lost pages we cannot know about: stop rather than retry.
      if (this.closed) throw err;
      throw new FatalStorageError(`raft log write failed: ${err instanceof WalSyncError ? err.message : ((err as NodeJS.ErrnoException).code ?? (err as Error).message)}`);
    }
    if (rd.hardState) this.persistedHard = { term: rd.hardState.term, vote: rd.hardState.vote };
    if (early.length < rd.messages.length) for (const m of rd.messages) if (!early.includes(m)) this.send(m, h);
    // The apply transaction rolls back whole when state.db finds no room, so it is retried like the append.
    if (rd.committedEntries.length > 0) await untilStored(this, 'applying to state.db', () => h.apply(rd.committedEntries));
    for (const rs of rd.readStates) h.reads.release(rs.context, rs.index);
    if (rd.softState) {
      if (rd.softState.role === 'leader') h.onLeader?.();
      if (!rd.softState.lead) h.reads.leaderLost();
    }
    h.snapshots.maybeCompact();
  }

  private send(m: Message, h: ReadyHandlers): void {
    // The target's campaign will ignore leases: no read is answered from this leader's lease from here on.
    if (m.type === 'timeoutNow') h.reads.revokeLease();
    if (m.type === 'snap') void h.snapshots.send(m);
    else if (!this.notices.offer(m)) this.transmit(m);
  }

  private transmit(m: Message): void {
    if (this.closed) return;
    if (this.d.transport.send(m)) return;
    this.node.reportUnreachable(m.to);
    // A held notice leaves from a timer, outside the loop: let the loop see what that changed.
    this.schedule();
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
    this.logger.fatal({ err: { name: err.name, message: err.message } }, 'raft stopped; reporting not ready');
    if (!(err instanceof UndecodableEntryError)) this.d.onFatal?.(err);
    this.handlers?.failPending(new FatalStorageError('node stopped after a storage fault'));
  }
}
