// This node's audit trail (DESIGN §5 `audit.db`): never replicated, survives
// snapshot installs. A request is answered only after its record is durable;
// when the record cannot be written the caller gets AuditUnavailableError and
// the API fails closed with 503 `audit_unavailable`. What a record holds,
// and deliberately does not: record.ts.
//
// A committed change is different: its record is never dropped. The API
// submits it with `keep`, and if it cannot be written (a full volume, a lock,
// an I/O error) it is held and written again until it is durable; only then
// is the response sent. The client may give up meanwhile, which the contract
// treats like any timeout (the write may have happened), but it never gets an
// error for a change that was made, and the record is never lost while the
// process lives. While records are held, probe() refuses further changes
// (507 when the volume is full, else 503), so the backlog cannot grow past the
// writes already in flight, and the owner hears of it (onHeld) to report the
// node not ready (held-records.ts). A node asked to stop meanwhile waits for those responses
// like for any other request in flight; if the supervisor's kill ends it
// first, the client sees a dropped connection, still never an error.
//
// Writes run in a worker thread (audit-worker.ts, driven by worker-client.ts)
// with its own connection, so the commit and its fsync do not block the event
// loop. Group commit: records that arrive while one batch is in the worker
// accumulate and go as the next batch (one transaction, one fsync). The
// exception is one request at a time: a lone record after lone records, with
// the worker idle, is committed on the event loop itself (fast-path.ts), which
// saves the two thread hand-offs that cost such a request more than the fsync. Queries
// read committed rows through a separate read-only connection (reader.ts).
//
// Lifecycle (issue 16): the writer thread chains every record to the previous
// one (chain.ts) and prunes, on a timer and as records pile up (prune requests
// queue beside the batches, each a few small transactions): records older
// than the retention, and the oldest ones while audit.db (+WAL) is above the
// high-water mark of the cap, but never one an enabled export has not
// delivered (keepAfterId). When the cap is reached and nothing may be
// removed, the log is "full": new records are refused (the request fails
// closed with 503 audit_unavailable), problem() says why for /v1/ready, and
// it clears by itself once pruning frees room.
import Database from 'better-sqlite3';
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { AUDIT_SCHEMA, enableIncrementalVacuum, migrateAuditSchema, walBudget, type AuditRow, type PruneResult } from './audit-worker.js';
import { loadOrCreateChainKey, verifyAuditDb, type AuditVerifyResult } from './chain.js';
import { FastPath } from './fast-path.js';
import { HeldRecords } from './held-records.js';
import { defaultAuditMaxBytes, type AuditLogOptions, type AuditStatus } from './options.js';
import { AuditReader, type AuditPage, type AuditQuery } from './reader.js';
import { AuditUnavailableError, toRow, unavailable, type AuditDone, type AuditRecord, type PendingRecord } from './record.js';
import { AuditWorkerClient, type WorkerDone } from './worker-client.js';

const DEFAULT_RETENTION_MS = 30 * 86_400_000;
/** Records written since the last prune that make the next one start early. */
const PRUNE_AFTER_RECORDS = 2_000;
/** Delete transactions per prune request (each of at most PRUNE_BATCH rows). */
const PRUNE_MAX_BATCHES = 4;
/**
 * The main thread writes a record itself (fast-path.ts) only when it is the
 * only one in its batch and the batches before it were too: one request at a
 * time, in effect. Under any concurrency the loop has other work to do while
 * the fsync would block it, and the writer thread's group commit is cheaper.
 */
export const FAST_WRITE_AFTER_SINGLES = 4;
/**
 * Batches the main thread may write in a row before one goes to the writer
 * thread, whose commits checkpoint the WAL: at most 64, and fewer for a small
 * WAL budget (~16 KiB of WAL per four commits), so the WAL stays near it.
 */
function fastWriteStreak(maxBytes: number): number {
  return Math.max(1, Math.min(64, Math.floor(walBudget(maxBytes) / 16_384)));
}

interface ProbeWaiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

export class AuditLog {
  readonly path: string;
  private readonly reader: AuditReader;
  private readonly worker: AuditWorkerClient;
  private readonly held: HeldRecords;
  private queue: PendingRecord[] = [];
  /** The batch currently in the worker; settles only after it was handled (never rejects). */
  private inflight: Promise<void> | null = null;
  private scheduled = false;
  private probeWaiters: ProbeWaiter[] = [];
  private probing: Promise<void> | null = null;
  private readonly fast: FastPath;
  /** The writer thread's last batch or probe succeeded: only then may the main thread's fast path act for it. */
  private writerHealthy = true;
  /** Batches written on the main thread since the writer thread last wrote one (its commits checkpoint the WAL). */
  private fastStreak = 0;
  private readonly maxFastStreak: number;
  /** Batches of exactly one record in a row, this one included (FAST_WRITE_AFTER_SINGLES). */
  private singles = 0;
  private closed = false;
  private closing: Promise<void> | null = null;
  readonly maxBytes: number;
  readonly retentionMs: number;
  private readonly chainKey: Uint8Array;
  private keepAfter: (() => number | null) | null;
  private readonly now: () => number;
  private pruning: Promise<void> | null = null;
  private pruneTimer: NodeJS.Timeout | null = null;
  private sincePrune = 0;
  private lastPrune: PruneResult | null = null;
  private lastId = 0;
  private fullReason: string | null = null;
  private lastKeepAfterId: number | null = null;

  /** Opens (creating if needed) `<dataDir>/audit.db`. Throws if it cannot be opened at start. */
  constructor(dataDir: string, private readonly opts: AuditLogOptions = {}) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    this.path = join(dataDir, 'audit.db');
    // SQLite creates a database 0644 and gives its -wal and -shm files the database's mode:
    // creating it 0600 first keeps all three private whatever the umask.
    closeSync(openSync(this.path, 'a', 0o600));
    chmodSync(this.path, 0o600);
    const busyTimeoutMs = Math.max(0, Math.floor(opts.busyTimeoutMs ?? 1000));
    this.maxBytes = opts.maxBytes ?? defaultAuditMaxBytes(dataDir);
    this.retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    this.keepAfter = opts.keepAfterId ?? null;
    this.now = opts.now ?? Date.now;
    // Create the schema synchronously, so a broken volume fails the start and
    // the table exists before the first query; the worker opens its own handle.
    const db = new Database(this.path);
    let hadChained = false;
    try {
      db.pragma(`busy_timeout = ${busyTimeoutMs}`);
      // Before the first table exists (or rebuilt once from an older release), so pruning really shrinks the file.
      enableIncrementalVacuum(db);
      db.pragma('journal_mode = WAL');
      db.exec(AUDIT_SCHEMA);
      migrateAuditSchema(db);
      hadChained = db.prepare('SELECT 1 FROM audit_log WHERE chain IS NOT NULL LIMIT 1').get() !== undefined;
      const top = db.prepare('SELECT max(id) FROM audit_log').pluck().get() as number | null;
      this.lastId = top ?? 0;
    } finally {
      db.close();
    }
    const { key, created } = loadOrCreateChainKey(dataDir);
    this.chainKey = key;
    if (created) safely(() => opts.onChainKeyCreated?.(hadChained));
    this.reader = new AuditReader(this.path, busyTimeoutMs);
    this.fast = new FastPath(this.path, key, this.maxBytes);
    this.maxFastStreak = fastWriteStreak(this.maxBytes);
    this.held = new HeldRecords(
      (held, noSpace) => safely(() => opts.onHeld?.(held, noSpace)),
      (records) => {
        this.queue.unshift(...records);
        if (this.inflight === null && !this.scheduled) this.flush();
      },
    );
    this.worker = new AuditWorkerClient(this.path, busyTimeoutMs, key, this.maxBytes);
    const every = Math.max(10, opts.pruneIntervalMs ?? 250);
    this.pruneTimer = setInterval(() => this.prune(), every);
    this.pruneTimer.unref();
    this.prune();
  }

  /** Sets (or clears) the provider of the highest prunable id (see AuditLogOptions.keepAfterId). */
  setKeepAfterId(provider: (() => number | null) | null): void {
    this.keepAfter = provider;
  }

  /** Why new records are refused (the log is full), or null: for /v1/ready. */
  problem(): string | null {
    return this.fullReason;
  }

  /** Size, age and state as of the last prune (for metrics). */
  status(): AuditStatus {
    const p = this.lastPrune;
    return {
      bytes: p?.bytes ?? 0,
      maxBytes: this.maxBytes,
      retentionMs: this.retentionMs,
      oldestId: p?.oldestId ?? null,
      oldestTs: p?.oldestTs ?? null,
      lastId: this.lastId,
      full: this.fullReason !== null,
    };
  }

  /** Newest durable record id (0 when none): an export reads up to here with query(). */
  lastDurableId(): number {
    return this.lastId;
  }

  /**
   * Checks the chain of every remaining record in one read snapshot, giving
   * the event loop a turn every few thousand records (GET /v1/admin/audit/verify).
   */
  async verify(): Promise<AuditVerifyResult> {
    if (this.closed) throw new AuditUnavailableError('audit log is closed');
    let db: Database.Database;
    try {
      db = new Database(this.path, { readonly: true, fileMustExist: true });
    } catch (err) {
      throw unavailable(err);
    }
    try {
      const result = await verifyAuditDb(db, this.chainKey, 2_000);
      safely(() => this.opts.onVerified?.(result));
      return result;
    } catch (err) {
      throw unavailable(err);
    } finally {
      db.close();
    }
  }

  /** Asks the writer thread to prune (one request at a time; a request that could do more is followed at once). */
  private prune(): void {
    if (this.closed || this.pruning !== null) return;
    let keepAfterId: number | null = null;
    try {
      keepAfterId = this.keepAfter?.() ?? null;
    } catch (err) {
      safely(() => this.opts.onPruneFailure?.(err));
      return;
    }
    this.sincePrune = 0;
    this.lastKeepAfterId = keepAfterId;
    this.pruning = this.worker
      .call({ op: 'prune', keepAfterId, cutoffMs: this.now() - this.retentionMs, maxBytes: this.maxBytes, maxBatches: PRUNE_MAX_BATCHES })
      .then(
        (done) => {
          this.lastId = Math.max(this.lastId, done.lastId);
          if (done.prune) this.pruned(done.prune, keepAfterId);
        },
        (err: unknown) => {
          this.reader.drop();
          safely(() => this.opts.onPruneFailure?.(err));
        },
      )
      .finally(() => {
        this.pruning = null;
      });
  }

  /** What a prune did (asked for, or run by the writer after a batch that crossed the high-water mark). */
  private pruned(p: PruneResult, keepAfterId: number | null): void {
    this.lastPrune = p;
    if (p.pruned > 0) safely(() => this.opts.onPruned?.(p.pruned));
    this.setFull(p.full ? fullReason(p, this.maxBytes, keepAfterId) : null);
    if (p.more) setImmediate(() => this.prune());
  }

  private setFull(reason: string | null): void {
    const was = this.fullReason;
    this.fullReason = reason;
    if ((was === null) !== (reason === null)) safely(() => this.opts.onFull?.(reason));
  }

  /** Resolves once the record is committed and fsynced; rejects with AuditUnavailableError otherwise. */
  record(rec: AuditRecord): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.submit(rec, (err) => (err === null ? resolve() : reject(err)));
    });
  }

  /**
   * record() with a callback instead of a promise (the API's hot path: no
   * promise per request): `done(null)` once the record is committed and
   * fsynced, `done(err)` with an AuditUnavailableError (or the validation
   * error of a malformed record) otherwise. `done` is never called before
   * submit() returns.
   *
   * `keep`: the record of a change that was committed. It is never failed
   * for a write error: it is held and written again until it is durable
   * (see the top of this file); only close() gives up on it.
   */
  submit(rec: AuditRecord, done: AuditDone, keep = false): void {
    if (this.closed) {
      process.nextTick(done, new AuditUnavailableError('audit log is closed'));
      return;
    }
    // Full: no new evidence is dropped, so no new request is served. A committed change's record is still written.
    if (this.fullReason !== null && !keep) {
      process.nextTick(done, new AuditUnavailableError(this.fullReason));
      return;
    }
    let row;
    try {
      row = toRow(rec);
    } catch (err) {
      process.nextTick(done, err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.queue.push({ row, done, keep });
    // Group commit: everything queued before the check phase runs shares one
    // transaction; while that batch is in the worker, the next one gathers.
    if (!this.scheduled && this.inflight === null) {
      this.scheduled = true;
      setImmediate(this.flushNow);
    }
  }

  private readonly flushNow = (): void => this.flush();

  /**
   * Rejects with AuditUnavailableError unless the audit database can take a
   * write lock right now (BEGIN IMMEDIATE + ROLLBACK in the worker, waiting at
   * most the busy timeout). Writes call it before they commit anything, so a
   * broken audit volume refuses them up front instead of after the change
   * happened. (A fault that strikes between this check and the record still
   * fails the response closed, after the commit.) Concurrent callers share
   * one probe that starts after they called.
   */
  probe(): Promise<void> {
    if (this.closed) return Promise.reject(new AuditUnavailableError('audit log is closed'));
    const refusal = this.held.refusal();
    if (refusal) return Promise.reject(refusal);
    if (this.fullReason !== null) return Promise.reject(new AuditUnavailableError(this.fullReason));
    // The writer thread idle with nothing queued (one request at a time, in effect): the lock is most likely
    // free, and taking it here saves two hand-offs. Under load the shared probe in the thread is the cheaper way.
    const idle = this.inflight === null && this.probing === null && this.queue.length === 0 && !this.scheduled;
    if (this.writerHealthy && idle && this.fast.tryProbe()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.probeWaiters.push({ resolve, reject });
      if (this.probing === null) this.startProbe();
    });
  }

  /** Records with id > since, oldest first. Synchronous: reads only committed rows. */
  query(q: AuditQuery = {}): AuditPage {
    return this.reader.query(q);
  }

  /** Writes whatever is queued, then stops the worker. Later records reject. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.fast.close();
    if (this.pruneTimer !== null) clearInterval(this.pruneTimer);
    this.pruneTimer = null;
    this.reader.close();
    // Held records get one last attempt; one that fails now is failed (failed() settles it, closed).
    this.queue.unshift(...this.held.takeAll());
    // Drain: the batch in flight, then whatever queued behind it.
    while (this.inflight !== null || this.queue.length > 0) {
      if (this.inflight === null) this.flush();
      if (this.inflight !== null) await this.inflight;
    }
    while (this.probing !== null) await this.probing;
    while (this.pruning !== null) await this.pruning;
    await this.worker.close();
  }

  private flush(): void {
    this.scheduled = false;
    if (this.inflight !== null || this.queue.length === 0) return;
    const batch = this.takeQueue();
    const rows = batch.map((p) => p.row);
    if (this.writeHere(batch, rows)) return;
    this.toWorker(batch, rows);
  }

  private takeQueue(): PendingRecord[] {
    const batch = this.queue;
    this.queue = [];
    return batch;
  }

  private toWorker(batch: PendingRecord[], rows = batch.map((p) => p.row)): void {
    this.fastStreak = 0;
    this.inflight = this.worker.call({ op: 'batch', rows: JSON.stringify(rows) }).then(
      (done) => {
        this.inflight = null;
        this.writerHealthy = true;
        // What gathered meanwhile goes to the thread before this batch is answered: settling writes
        // every response of the batch synchronously, and the thread would sit idle through that.
        const keptHandedOver = this.queue.some((p) => p.keep);
        if (this.queue.length > 0) this.toWorker(this.takeQueue());
        this.written(batch, done, keptHandedOver);
      },
      (err: Error) => {
        this.inflight = null;
        const e = this.failed(err);
        const keep = this.closed ? [] : batch.filter((p) => p.keep);
        settle(keep.length === 0 ? batch : batch.filter((p) => !p.keep), e);
        safely(() => this.opts.onFailure?.(err, batch.length));
        if (keep.length > 0) this.held.hold(keep, err);
        this.next();
      },
    );
  }

  /**
   * Writes a lone record on the main thread when the writer thread is idle
   * and healthy (fast-path.ts); false when it did not (nothing was written),
   * and the batch goes to the writer thread.
   */
  private writeHere(batch: PendingRecord[], rows: AuditRow[]): boolean {
    this.singles = rows.length === 1 ? this.singles + 1 : 0;
    if (this.singles < FAST_WRITE_AFTER_SINGLES || this.fastStreak >= this.maxFastStreak) return false;
    if (this.probing !== null || this.pruning !== null || !this.writerHealthy || this.closed) return false;
    const started = performance.now();
    const lastId = this.fast.tryWrite(rows);
    if (lastId === null) return false;
    this.fastStreak++;
    this.written(batch, { seconds: (performance.now() - started) / 1000, lastId });
    return true;
  }

  /** A batch is durable: tell its waiters, the metrics and the exports, and send what gathered meanwhile. */
  private written(batch: PendingRecord[], done: WorkerDone, keptHandedOver = false): void {
    this.lastId = Math.max(this.lastId, done.lastId);
    settle(batch, null);
    safely(() => this.opts.onFlush?.(done.seconds, batch.length));
    safely(() => this.opts.onDurable?.(done.lastId));
    if (done.prune) this.pruned(done.prune, this.lastKeepAfterId);
    if (done.pruneError !== undefined) {
      this.reader.drop();
      safely(() => this.opts.onPruneFailure?.(new Error(done.pruneError)));
    }
    this.sincePrune += batch.length;
    if (this.sincePrune >= PRUNE_AFTER_RECORDS) this.prune();
    this.held.written(() => keptHandedOver || this.queue.some((p) => p.keep));
    this.next();
  }

  /** Sends what gathered while a batch was in the worker. */
  private next(): void {
    if (this.queue.length > 0 && !this.scheduled) this.flush();
  }

  private startProbe(): void {
    const waiters = this.probeWaiters;
    this.probeWaiters = [];
    this.probing = this.worker.call({ op: 'probe' }).then(
      () => {
        this.writerHealthy = true;
        for (const w of waiters) w.resolve();
      },
      (err: Error) => {
        const e = this.failed(err);
        for (const w of waiters) w.reject(e);
      },
    ).finally(() => {
      this.probing = null;
      if (this.probeWaiters.length > 0) this.startProbe();
    });
  }

  /** A worker-side failure: the worker already dropped its handle; drop the reader's too so the next query reopens. */
  private failed(err: unknown): AuditUnavailableError {
    this.reader.drop();
    this.writerHealthy = false;
    this.fast.close();
    return unavailable(err);
  }
}

/** The /v1/ready problem (and the 503's message) while the log is full. */
function fullReason(p: PruneResult, maxBytes: number, keepAfterId: number | null): string {
  const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
  const size = `${mib(p.bytes)} of the ${mib(maxBytes)} cap (VAULT_AUDIT_MAX_BYTES)`;
  return keepAfterId !== null
    ? `audit log full: export behind (${size}; records after id ${keepAfterId} are not delivered yet, so they are not pruned)`
    : `audit log full (${size}; nothing more can be pruned)`;
}

/** Tells every waiter of a batch; one throwing callback neither stops the others nor is swallowed. */
function settle(batch: PendingRecord[], err: Error | null): void {
  for (const p of batch) {
    try {
      p.done(err);
    } catch (thrown) {
      process.nextTick(() => {
        throw thrown;
      });
    }
  }
}

// A metrics callback must never crash the process from inside setImmediate.
function safely(fn: () => void): void {
  try {
    fn();
  } catch {
    // ignored: metrics are best effort
  }
}
