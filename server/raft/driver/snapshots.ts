// Snapshots: the log is compacted behind a checkpoint of state.db; a member
// too far behind gets a consistent image of state.db instead of entries,
// streamed as a file, and replaces its own state with it.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { StateMachine } from '../../store/state-machine.js';
import { isNoSpace } from '../../storage/write-guard.js';
import type { Message, Snapshot } from '../core/index.js';
import type { DiskStorage } from '../disk-storage.js';
import type { Transport } from '../transport.js';
import { FatalStorageError } from '../replicator.js';
import type { AppliedIndex } from './applied.js';
import type { DriverContext } from './context.js';
import type { PeerAddresses } from './peer-addresses.js';

/** After a compaction failed for lack of space, the next attempt waits this long. */
const COMPACT_BACKOFF_MS = 5_000;
const DEFAULT_SNAPSHOT_ENTRIES = 10_000;

export interface SnapshotDeps {
  sm: Pick<StateMachine, 'restoreImage' | 'writeImage' | 'checkpoint' | 'appliedIndex'>;
  disk: Pick<DiskStorage, 'storage' | 'rewriteFromSnapshot'>;
  transport: Pick<Transport, 'sendSnapshot'>;
  applied: AppliedIndex;
  peers: PeerAddresses;
  /** Where images are written before they are sent and land when received. */
  dir: string;
  /** Entries kept in the log before it is compacted behind a snapshot. */
  snapshotEntries: number | undefined;
}

export class Snapshots {
  private compactAfter = 0;

  constructor(
    private readonly ctx: DriverContext,
    private readonly d: SnapshotDeps,
  ) {
    fs.mkdirSync(d.dir, { recursive: true, mode: 0o700 });
  }

  /** A fresh file for an image arriving from the leader. */
  receivePath(index: number): string {
    return path.join(this.d.dir, `recv-${index}-${randomUUID()}.db`);
  }

  /** An image arrived on disk: hand its message to the core with the file as its data. */
  received(m: Message, imageFile: string): void {
    this.ctx.node.step({ ...m, snapshot: { meta: m.snapshot!.meta, data: new Uint8Array(Buffer.from(imageFile)) } });
    this.ctx.schedule();
  }

  /** A Ready carries a snapshot from the leader: its image replaces state.db. */
  install(snap: Snapshot): void {
    const file = Buffer.from(snap.data).toString('utf8');
    if (!file || !fs.existsSync(file)) throw new FatalStorageError('snapshot image missing');
    this.d.sm.restoreImage(file);
    this.d.applied.reset(this.d.sm.appliedIndex().index);
    this.d.peers.sync();
    this.ctx.logger.info({ index: snap.meta.index }, 'installed snapshot from leader');
  }

  /** Streams an image of state.db to a follower; the core hears how it went. */
  async send(m: Message): Promise<void> {
    const file = path.join(this.d.dir, `send-${m.to}-${randomUUID()}.db`);
    try {
      this.d.sm.writeImage(file);
      await this.d.transport.sendSnapshot(m, file);
      this.ctx.node.reportSnapshot(m.to, true);
    } catch (err) {
      this.ctx.logger.warn({ peer: m.to, err: (err as Error).message }, 'snapshot send failed');
      this.ctx.node.reportSnapshot(m.to, false);
    } finally {
      fs.rmSync(file, { force: true });
      this.ctx.schedule();
    }
  }

  /**
   * Compaction only saves space, so a volume too full for it skips it (and
   * tries again later) instead of stalling the loop: the checkpoint failing
   * leaves the log whole; the rewrite failing leaves the old, longer file,
   * which still holds every entry (Wal.rewrite removes its partial copy).
   */
  maybeCompact(): void {
    const limit = this.d.snapshotEntries ?? DEFAULT_SNAPSHOT_ENTRIES;
    const log = this.d.disk.storage;
    const applied = this.d.applied.index;
    if (applied - log.firstIndex() < limit) return;
    const st = this.ctx.node.basicStatus();
    const index = Math.min(applied, st.applied);
    if (index <= log.firstIndex()) return;
    if (Date.now() < this.compactAfter) return;
    try {
      this.d.sm.checkpoint(); // state.db now durably holds everything the log is about to drop
      const meta = this.ctx.node.compact(index, log.term(index), st.confState, new Uint8Array(0));
      if (meta) this.d.disk.rewriteFromSnapshot();
    } catch (err) {
      if (!isNoSpace(err)) throw err;
      this.compactAfter = Date.now() + COMPACT_BACKOFF_MS;
      this.ctx.logger.warn({ err: { code: (err as NodeJS.ErrnoException).code } }, 'raft log compaction skipped: the data volume is full');
    }
    for (const f of fs.readdirSync(this.d.dir)) if (f.startsWith('recv-')) fs.rmSync(path.join(this.d.dir, f), { force: true });
  }
}
