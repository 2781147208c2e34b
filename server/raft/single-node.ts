// The single-node commit seam: a command is committed once it is durably
// appended to the local log (group commit: one fdatasync per batch), then
// applied to state.db. On start, entries the state machine has not applied yet
// are replayed. Raft replaces this class behind the same Replicator interface.
import fs from 'node:fs';
import path from 'node:path';
import { encodeCommand, type Command } from '../store/commands.js';
import type { ApplyResult } from '../store/results.js';
import type { StateMachine } from '../store/state-machine.js';
import { FatalStorageError, type ReplicationStatus, type Replicator } from './replicator.js';
import { ENTRY_NORMAL, Wal, type WalEntry } from './wal.js';

const TERM = 1;
/** Past this the log is compacted: state.db is checkpointed and the log emptied. */
const COMPACT_BYTES = 64 * 1024 * 1024;

interface Pending {
  data: Uint8Array;
  resolve: (r: ApplyResult) => void;
  reject: (e: Error) => void;
}

export interface SingleNodeOptions {
  nodeId: string;
  address: string;
  dataDir: string;
  sm: StateMachine;
  /** Called once when the node must stop (failed fsync, undecodable entry). */
  onFatal?: (err: Error) => void;
}

export class SingleNodeReplicator implements Replicator {
  private readonly wal: Wal;
  private nextIndex: number;
  private queue: Pending[] = [];
  private flushing = false;
  private fatal: Error | null = null;

  constructor(private readonly opts: SingleNodeOptions) {
    const dir = path.join(opts.dataDir, 'raft');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const { wal, entries } = Wal.open(path.join(dir, 'log'));
    this.wal = wal;
    let last = opts.sm.appliedIndex().index;
    try {
      for (const e of entries) {
        if (e.index <= last) continue;
        this.applyOne(e);
        last = e.index;
      }
    } catch (err) {
      this.fail(err as Error);
    }
    this.nextIndex = Math.max(last, entries.at(-1)?.index ?? 0) + 1;
  }

  propose(cmd: Command): Promise<ApplyResult> {
    if (this.fatal) return Promise.reject(new FatalStorageError('node stopped after a storage fault'));
    const data = encodeCommand(cmd);
    return new Promise((resolve, reject) => {
      this.queue.push({ data, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  async readBarrier(): Promise<void> {
    // One node: everything acknowledged was applied before its promise resolved.
    if (this.fatal) throw new FatalStorageError('node stopped after a storage fault');
  }

  isLeader(): boolean {
    return this.fatal === null;
  }

  status(): ReplicationStatus {
    const applied = this.opts.sm.appliedIndex().index;
    return {
      node_id: this.opts.nodeId,
      role: 'leader',
      leader_id: this.fatal ? null : this.opts.nodeId,
      term: TERM,
      commit_index: this.nextIndex - 1,
      applied_index: applied,
      peers: [{ id: this.opts.nodeId, address: this.opts.address, voter: true }],
      ready: this.fatal === null,
      problem: this.fatal ? this.fatal.message : null,
    };
  }

  async close(): Promise<void> {
    while (this.flushing) await new Promise((r) => setImmediate(r));
    this.wal.close();
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0 && !this.fatal) {
        const batch = this.queue;
        this.queue = [];
        const entries: WalEntry[] = batch.map((p) => ({ index: this.nextIndex++, term: TERM, kind: ENTRY_NORMAL, data: p.data }));
        try {
          await this.wal.append(entries);
        } catch (err) {
          // A failed fsync may have dropped pages we cannot know about: stop rather than retry.
          this.fail(new FatalStorageError(`log append failed: ${(err as NodeJS.ErrnoException).code ?? 'error'}`));
          for (const p of batch) p.reject(this.fatal as unknown as Error);
          break;
        }
        entries.forEach((e, i) => {
          const p = batch[i] as Pending;
          if (this.fatal) return p.reject(new FatalStorageError('node stopped applying'));
          try {
            p.resolve(this.applyOne(e));
          } catch (err) {
            this.fail(err as Error);
            p.reject(err as Error);
          }
        });
        if (this.wal.bytes > COMPACT_BYTES && !this.fatal) this.compact();
      }
      for (const p of this.queue.splice(0)) p.reject(new FatalStorageError('node stopped after a storage fault'));
    } finally {
      this.flushing = false;
    }
  }

  private applyOne(e: WalEntry): ApplyResult {
    return this.opts.sm.applyEntry(e.index, e.term, e.data);
  }

  private compact(): void {
    this.opts.sm.checkpoint();
    this.wal.reset();
  }

  private fail(err: Error): void {
    if (this.fatal) return;
    this.fatal = err;
    this.opts.onFatal?.(err);
  }
}
