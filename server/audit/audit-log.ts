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
// with its own connection, so the commit and its fsync never block the event
// loop. Group commit: records that arrive while one batch is in the worker
// accumulate and go as the next batch (one transaction, one fsync). Queries
// read committed rows through a separate read-only connection (reader.ts).
import Database from 'better-sqlite3';
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { AUDIT_SCHEMA, migrateAuditSchema } from './audit-worker.js';
import { HeldRecords } from './held-records.js';
import { AuditReader, type AuditPage, type AuditQuery } from './reader.js';
import { AuditUnavailableError, toRow, unavailable, type AuditDone, type AuditRecord, type PendingRecord } from './record.js';
import { AuditWorkerClient } from './worker-client.js';

export interface AuditLogOptions {
  /** Called after each committed batch (for coffer_audit_write_duration_seconds). */
  onFlush?: (durationSeconds: number, count: number) => void;
  /** Called when a batch fails (for coffer_audit_write_failures_total). */
  onFailure?: (error: unknown, count: number) => void;
  /**
   * How long a write or probe waits for a lock held by another connection.
   * Default 1000. The wait happens in the writer thread, but records queue
   * behind it and this process should be the only writer, so keep it short.
   */
  busyTimeoutMs?: number;
  /**
   * Records of committed changes are waiting to be written (true, and
   * whether for lack of space) or were all written at last (false).
   */
  onHeld?: (held: boolean, noSpace: boolean) => void;
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
  private closed = false;
  private closing: Promise<void> | null = null;

  /** Opens (creating if needed) `<dataDir>/audit.db`. Throws if it cannot be opened at start. */
  constructor(dataDir: string, private readonly opts: AuditLogOptions = {}) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    this.path = join(dataDir, 'audit.db');
    // SQLite creates a database 0644 and gives its -wal and -shm files the database's mode:
    // creating it 0600 first keeps all three private whatever the umask.
    closeSync(openSync(this.path, 'a', 0o600));
    chmodSync(this.path, 0o600);
    const busyTimeoutMs = Math.max(0, Math.floor(opts.busyTimeoutMs ?? 1000));
    // Create the schema synchronously, so a broken volume fails the start and
    // the table exists before the first query; the worker opens its own handle.
    const db = new Database(this.path);
    try {
      db.pragma('journal_mode = WAL');
      db.pragma(`busy_timeout = ${busyTimeoutMs}`);
      db.exec(AUDIT_SCHEMA);
      migrateAuditSchema(db);
    } finally {
      db.close();
    }
    this.reader = new AuditReader(this.path, busyTimeoutMs);
    this.held = new HeldRecords(
      (held, noSpace) => safely(() => opts.onHeld?.(held, noSpace)),
      (records) => {
        this.queue.unshift(...records);
        if (this.inflight === null && !this.scheduled) this.flush();
      },
    );
    this.worker = new AuditWorkerClient(this.path, busyTimeoutMs);
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
    this.reader.close();
    // Held records get one last attempt; one that fails now is failed (failed() settles it, closed).
    this.queue.unshift(...this.held.takeAll());
    // Drain: the batch in flight, then whatever queued behind it.
    while (this.inflight !== null || this.queue.length > 0) {
      if (this.inflight === null) this.flush();
      if (this.inflight !== null) await this.inflight;
    }
    while (this.probing !== null) await this.probing;
    await this.worker.close();
  }

  private flush(): void {
    this.scheduled = false;
    if (this.inflight !== null || this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.inflight = this.worker.call({ op: 'batch', rows: JSON.stringify(batch.map((p) => p.row)) }).then(
      (seconds) => {
        this.inflight = null;
        settle(batch, null);
        safely(() => this.opts.onFlush?.(seconds, batch.length));
        this.held.written(() => this.queue.some((p) => p.keep));
        this.next();
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

  /** Sends what gathered while a batch was in the worker. */
  private next(): void {
    if (this.queue.length > 0 && !this.scheduled) this.flush();
  }

  private startProbe(): void {
    const waiters = this.probeWaiters;
    this.probeWaiters = [];
    this.probing = this.worker.call({ op: 'probe' }).then(
      () => {
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
    return unavailable(err);
  }
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
