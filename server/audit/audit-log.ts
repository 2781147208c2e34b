// This node's audit trail (DESIGN §5 `audit.db`): never replicated, survives
// snapshot installs. A request is answered only after its record is durable;
// when the record cannot be written the caller gets AuditUnavailableError and
// the API fails closed with 503 `audit_unavailable`.
//
// What is recorded: who (actor, client_ip), what (action, target, version) and
// how it ended (outcome, status). There is deliberately no column for secret
// values, tokens, request bodies or headers, so none can leak into the log.
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
// node not ready. A node asked to stop meanwhile waits for those responses
// like for any other request in flight; if the supervisor's kill ends it
// first, the client sees a dropped connection, still never an error.
//
// Writes run in a worker thread (audit-worker.ts) with its own connection, so
// the commit and its fsync never block the event loop. Group commit: records
// that arrive while one batch is in the worker accumulate and go as the next
// batch (one transaction, one fsync). Queries read committed rows through a
// separate read-only connection on the main thread (WAL allows it).
import Database from 'better-sqlite3';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { InsufficientStorageError, isNoSpace } from '../storage/write-guard.js';
import {
  AUDIT_COLUMNS,
  AUDIT_SCHEMA,
  AUDIT_WORKER_ROLE,
  migrateAuditSchema,
  type AuditRow,
  type AuditWorkerData,
  type AuditWorkerReply,
  type AuditWorkerRequest,
} from './audit-worker.js';

export type AuditOutcome = 'allowed' | 'denied' | 'error';

export interface AuditRecord {
  /** ISO-8601 time the request was received. */
  ts: string;
  node_id: string;
  request_id: string;
  /** Token name, or `anonymous`. Never the token itself. */
  actor: string;
  /** The client's address: the socket peer, or what a trusted proxy said in X-Forwarded-For. */
  client_ip: string;
  /** e.g. `secret.read`, `token.create`. */
  action: string;
  /** Secret, token or role name the action applied to, if any. */
  target: string | null;
  /** Secret version involved, if any. */
  version: number | null;
  outcome: AuditOutcome;
  /** HTTP status sent to the client. */
  status: number;
  /** The socket peer the request came from (differs from client_ip behind a trusted proxy); null in older records. */
  peer_ip?: string | null;
}

export interface StoredAuditRecord extends AuditRecord {
  id: number;
}

export interface AuditQuery {
  /** Return records with id > since (default 0). */
  since?: number;
  /** Default 100, clamped to 1..1000. */
  limit?: number;
}

export interface AuditPage {
  records: StoredAuditRecord[];
  /** Id to pass as `since` for the next page; null when no more records exist yet. */
  next_since: number | null;
}

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

/** The audit record could not be made durable (maps to 503 audit_unavailable). */
export class AuditUnavailableError extends Error {
  override readonly name = 'AuditUnavailableError';
}

export const AUDIT_DEFAULT_LIMIT = 100;
export const AUDIT_MAX_LIMIT = 1000;
const OUTCOMES: ReadonlySet<string> = new Set(['allowed', 'denied', 'error']);
const COLUMNS = AUDIT_COLUMNS.join(', ');

/** Told once whether a submitted record is durable (null) or could not be written; always asynchronously. */
export type AuditDone = (err: Error | null) => void;

interface Pending {
  row: AuditRow;
  done: AuditDone;
  /** A committed change's record: held and retried on failure, never failed. */
  keep: boolean;
}

/** First pause before held records are written again; doubles up to HELD_RETRY_MAX_MS. */
const HELD_RETRY_MS = 50;
const HELD_RETRY_MAX_MS = 1_000;

interface Call {
  resolve: (seconds: number) => void;
  reject: (err: Error) => void;
}

export class AuditLog {
  readonly path: string;
  private readonly busyTimeoutMs: number;
  /** Read-only connection for query(); dropped on any failure so the next query reopens. */
  private reader: { db: Database.Database; page: Database.Statement } | null = null;
  private worker: Worker | null = null;
  private calls = new Map<number, Call>();
  private nextId = 1;
  private queue: Pending[] = [];
  /** The batch currently in the worker; settles only after it was handled (never rejects). */
  private inflight: Promise<void> | null = null;
  private scheduled = false;
  private probeWaiters: Call[] = [];
  private probing: Promise<void> | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  /** Records of committed changes that failed to write, oldest first, waiting for the retry timer. */
  private held: Pending[] = [];
  /** Why the last held record failed: for lack of space or not. */
  private heldForSpace = false;
  /** True from the first held record until every held record was written. */
  private holding = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryPause = HELD_RETRY_MS;

  /** Opens (creating if needed) `<dataDir>/audit.db`. Throws if it cannot be opened at start. */
  constructor(dataDir: string, private readonly opts: AuditLogOptions = {}) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    this.path = join(dataDir, 'audit.db');
    // SQLite creates a database 0644 and gives its -wal and -shm files the database's mode:
    // creating it 0600 first keeps all three private whatever the umask.
    closeSync(openSync(this.path, 'a', 0o600));
    chmodSync(this.path, 0o600);
    this.busyTimeoutMs = Math.max(0, Math.floor(opts.busyTimeoutMs ?? 1000));
    // Create the schema synchronously, so a broken volume fails the start and
    // the table exists before the first query; the worker opens its own handle.
    const db = new Database(this.path);
    try {
      db.pragma('journal_mode = WAL');
      db.pragma(`busy_timeout = ${this.busyTimeoutMs}`);
      db.exec(AUDIT_SCHEMA);
      migrateAuditSchema(db);
    } finally {
      db.close();
    }
    this.spawn();
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
    let row: AuditRow;
    try {
      row = normalize(rec);
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
    if (this.holding) {
      return Promise.reject(
        this.heldForSpace
          ? new InsufficientStorageError('the data volume is full: audit records of committed writes wait for space; writes resume once space is freed')
          : new AuditUnavailableError('audit log unavailable: records of committed writes wait to be written'),
      );
    }
    return new Promise<void>((resolve, reject) => {
      this.probeWaiters.push({ resolve: () => resolve(), reject });
      if (this.probing === null) this.startProbe();
    });
  }

  /** Records with id > since, oldest first. Synchronous: reads only committed rows. */
  query(q: AuditQuery = {}): AuditPage {
    const since = q.since ?? 0;
    const limit = q.limit ?? AUDIT_DEFAULT_LIMIT;
    if (!Number.isSafeInteger(since)) throw new RangeError('since must be an integer');
    if (!Number.isSafeInteger(limit)) throw new RangeError('limit must be an integer');
    const n = Math.min(Math.max(limit, 1), AUDIT_MAX_LIMIT);
    if (this.closed) throw new AuditUnavailableError('audit log is closed');
    let rows: StoredAuditRecord[];
    try {
      // Fetch one extra row to learn whether another page exists.
      rows = this.readHandle().page.all(Math.max(since, 0), n + 1) as StoredAuditRecord[];
    } catch (err) {
      this.dropReader();
      throw unavailable(err);
    }
    const more = rows.length > n;
    const records = more ? rows.slice(0, n) : rows;
    const last = records[records.length - 1];
    return { records, next_since: more && last ? last.id : null };
  }

  /** Writes whatever is queued, then stops the worker. Later records reject. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    // Held records get one last attempt; one that fails now is failed (failed() settles it, closed).
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.queue.unshift(...this.held);
    this.held = [];
    // Drain: the batch in flight, then whatever queued behind it.
    while (this.inflight !== null || this.queue.length > 0) {
      if (this.inflight === null) this.flush();
      if (this.inflight !== null) await this.inflight;
    }
    while (this.probing !== null) await this.probing;
    const w = this.worker;
    if (w !== null) {
      try {
        await this.call({ id: 0, op: 'close' });
      } catch {
        // The worker is gone already; terminating is all that is left.
      }
      this.worker = null;
      await w.terminate();
    }
    this.dropReader();
  }

  private flush(): void {
    this.scheduled = false;
    if (this.inflight !== null || this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.inflight = this.call({ id: 0, op: 'batch', rows: JSON.stringify(batch.map((p) => p.row)) }).then(
      (seconds) => {
        this.inflight = null;
        settle(batch, null);
        safely(() => this.opts.onFlush?.(seconds, batch.length));
        if (this.holding && this.held.length === 0 && !this.queue.some((p) => p.keep)) this.released();
        this.next();
      },
      (err: Error) => {
        this.inflight = null;
        const e = this.failed(err);
        const keep = this.closed ? [] : batch.filter((p) => p.keep);
        settle(keep.length === 0 ? batch : batch.filter((p) => !p.keep), e);
        safely(() => this.opts.onFailure?.(err, batch.length));
        if (keep.length > 0) this.hold(keep, err);
        this.next();
      },
    );
  }

  /** Records of committed changes failed to write: keep them and write them again after a pause. */
  private hold(records: Pending[], err: Error): void {
    this.held.push(...records);
    this.heldForSpace = isNoSpace(err);
    if (!this.holding) {
      this.holding = true;
      safely(() => this.opts.onHeld?.(true, this.heldForSpace));
    }
    if (this.retryTimer !== null) return;
    const pause = this.retryPause;
    this.retryPause = Math.min(pause * 2, HELD_RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      // Ahead of newer records, so the log keeps close to request order.
      this.queue.unshift(...this.held);
      this.held = [];
      if (this.inflight === null && !this.scheduled) this.flush();
    }, pause);
    this.retryTimer.unref(); // the requests waiting on these records keep the process alive anyway
  }

  /** Every held record is durable. */
  private released(): void {
    this.holding = false;
    this.heldForSpace = false;
    this.retryPause = HELD_RETRY_MS;
    safely(() => this.opts.onHeld?.(false, false));
  }

  /** Sends what gathered while a batch was in the worker. */
  private next(): void {
    if (this.queue.length > 0 && !this.scheduled) this.flush();
  }

  private startProbe(): void {
    const waiters = this.probeWaiters;
    this.probeWaiters = [];
    this.probing = this.call({ id: 0, op: 'probe' }).then(
      () => {
        for (const w of waiters) w.resolve(0);
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

  /** Sends a request to the worker (starting one if needed); settles with its reply. */
  private call(req: AuditWorkerRequest): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      let w: Worker;
      try {
        w = this.worker ?? this.spawn();
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      const id = this.nextId++;
      if (this.calls.size === 0) w.ref();
      this.calls.set(id, { resolve, reject });
      w.postMessage({ ...req, id });
    });
  }

  private spawn(): Worker {
    const data: AuditWorkerData = {
      role: AUDIT_WORKER_ROLE,
      path: this.path,
      busyTimeoutMs: this.busyTimeoutMs,
      requireFrom: fileURLToPath(import.meta.url),
    };
    const w = new Worker(workerUrl(), { workerData: data });
    // Idle, the worker must not keep the process alive; call() refs it while a request is out.
    w.unref();
    let crash: Error | null = null;
    w.on('message', (reply: AuditWorkerReply) => {
      const c = this.calls.get(reply.id);
      if (!c) return;
      this.calls.delete(reply.id);
      if (this.calls.size === 0) w.unref();
      if (reply.ok) c.resolve(reply.seconds);
      else c.reject(Object.assign(new Error(reply.message), { code: reply.code }));
    });
    w.on('error', (err) => {
      crash = err;
    });
    // A crashed or terminated worker fails what it held; the next request starts a new one.
    w.on('exit', (code) => {
      if (this.worker === w) this.worker = null;
      const pending = [...this.calls.values()];
      this.calls.clear();
      const err = crash ?? new Error(`audit worker exited with code ${code}`);
      for (const c of pending) c.reject(err);
    });
    this.worker = w;
    return w;
  }

  private readHandle(): { db: Database.Database; page: Database.Statement } {
    if (this.reader === null || !this.reader.db.open) {
      const db = new Database(this.path, { readonly: true, fileMustExist: true });
      try {
        db.pragma(`busy_timeout = ${this.busyTimeoutMs}`);
        const page = db.prepare(`SELECT id, ${COLUMNS} FROM audit_log WHERE id > ? ORDER BY id LIMIT ?`);
        this.reader = { db, page };
      } catch (err) {
        db.close();
        throw err;
      }
    }
    return this.reader;
  }

  private dropReader(): void {
    try {
      this.reader?.db.close();
    } catch {
      // unusable anyway
    }
    this.reader = null;
  }

  /** A worker-side failure: the worker already dropped its handle; drop ours too so the next query reopens. */
  private failed(err: unknown): AuditUnavailableError {
    this.dropReader();
    return unavailable(err);
  }
}

function unavailable(err: unknown): AuditUnavailableError {
  if (err instanceof AuditUnavailableError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new AuditUnavailableError(`audit log unavailable: ${msg}`, { cause: err });
}

/**
 * Where the writer thread's code comes from.
 *
 * From the compiled build (dist/, what `coffer server` runs) this is simply
 * the `audit-worker.js` next to this file. Under vitest this module runs from
 * its TypeScript source, and a Worker is a plain Node thread that vitest's
 * transform does not reach: Node 20 cannot load `audit-worker.ts` itself, and
 * pointing at dist/ would silently run a stale build when the source changed
 * without `npm run build`. So from a `.ts` module we transpile the current
 * `audit-worker.ts` with the TypeScript compiler (a devDependency, always there
 * when sources run directly) and start it from a `data:` URL. That is why the
 * worker imports only `node:` builtins and loads better-sqlite3 via
 * createRequire(workerData.requireFrom). Computed once per process.
 */
let cachedWorkerUrl: URL | null = null;
function workerUrl(): URL {
  if (cachedWorkerUrl) return cachedWorkerUrl;
  const here = import.meta.url;
  if (!here.endsWith('.ts')) {
    cachedWorkerUrl = new URL('./audit-worker.js', here);
  } else {
    const source = readFileSync(new URL('./audit-worker.ts', here), 'utf8');
    const ts = createRequire(here)('typescript') as typeof import('typescript');
    const js = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
    }).outputText;
    cachedWorkerUrl = new URL(`data:text/javascript;base64,${Buffer.from(js).toString('base64')}`);
  }
  return cachedWorkerUrl;
}

// Validated before queueing so one malformed record cannot fail a whole batch.
function normalize(r: AuditRecord): AuditRow {
  if (!OUTCOMES.has(r.outcome)) throw new TypeError(`invalid audit outcome: ${String(r.outcome)}`);
  if (!Number.isInteger(r.status)) throw new TypeError('audit status must be an integer');
  const version = r.version ?? null;
  if (version !== null && !Number.isSafeInteger(version)) throw new TypeError('audit version must be an integer');
  // In AUDIT_COLUMNS order; an array is cheaper to pass to the worker than an object.
  return [
    String(r.ts),
    String(r.node_id),
    String(r.request_id),
    String(r.actor),
    String(r.client_ip),
    String(r.action),
    r.target == null ? null : String(r.target),
    version,
    r.outcome,
    r.status,
    r.peer_ip == null ? null : String(r.peer_ip),
  ];
}

/** Tells every waiter of a batch; one throwing callback neither stops the others nor is swallowed. */
function settle(batch: Pending[], err: Error | null): void {
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
