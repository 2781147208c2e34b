// This node's audit trail (DESIGN §5 `audit.db`): never replicated, survives
// snapshot installs. A request is answered only after its record is durable;
// when the record cannot be written the caller gets AuditUnavailableError and
// the API fails closed with 503 `audit_unavailable`.
//
// What is recorded: who (actor, client_ip), what (action, target, version) and
// how it ended (outcome, status). There is deliberately no column for secret
// values, tokens, request bodies or headers, so none can leak into the log.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export type AuditOutcome = 'allowed' | 'denied' | 'error';

export interface AuditRecord {
  /** ISO-8601 time the request was received. */
  ts: string;
  node_id: string;
  request_id: string;
  /** Token name, or `anonymous`. Never the token itself. */
  actor: string;
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
   * How long a write waits for a lock held by another connection. Default 1000.
   * better-sqlite3 waits synchronously (the event loop stalls), and this
   * process should be the only writer, so keep it short.
   */
  busyTimeoutMs?: number;
}

/** The audit record could not be made durable (maps to 503 audit_unavailable). */
export class AuditUnavailableError extends Error {
  override readonly name = 'AuditUnavailableError';
}

export const AUDIT_DEFAULT_LIMIT = 100;
export const AUDIT_MAX_LIMIT = 1000;
const OUTCOMES: ReadonlySet<string> = new Set(['allowed', 'denied', 'error']);
const COLUMNS = 'ts, node_id, request_id, actor, client_ip, action, target, version, outcome, status';

interface Pending {
  row: AuditRecord;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class AuditLog {
  readonly path: string;
  private db: Database.Database | null = null;
  private queue: Pending[] = [];
  private scheduled = false;
  private closed = false;

  /** Opens (creating if needed) `<dataDir>/audit.db`. Throws if it cannot be opened at start. */
  constructor(dataDir: string, private readonly opts: AuditLogOptions = {}) {
    mkdirSync(dataDir, { recursive: true });
    this.path = join(dataDir, 'audit.db');
    this.db = this.open();
  }

  /** Resolves once the record is committed and fsynced; rejects with AuditUnavailableError otherwise. */
  record(rec: AuditRecord): Promise<void> {
    if (this.closed) return Promise.reject(new AuditUnavailableError('audit log is closed'));
    let row: AuditRecord;
    try {
      row = normalize(rec);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ row, resolve, reject });
      // Group commit: everything queued before the check phase runs (this
      // turn, plus I/O that piled up while the last fsync blocked the loop)
      // shares one transaction and one fsync.
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * Throws AuditUnavailableError unless the audit database can take a write
   * lock right now. Writes call it before they commit anything, so a broken
   * audit volume refuses them up front instead of after the change happened.
   * (A fault that strikes between this check and the record still fails the
   * response closed, after the commit.)
   */
  probe(): void {
    try {
      const db = this.handle();
      db.prepare('BEGIN IMMEDIATE').run();
      db.prepare('ROLLBACK').run();
    } catch (err) {
      throw this.fail(err);
    }
  }

  /** Records with id > since, oldest first. Synchronous: reads only committed rows. */
  query(q: AuditQuery = {}): AuditPage {
    const since = q.since ?? 0;
    const limit = q.limit ?? AUDIT_DEFAULT_LIMIT;
    if (!Number.isSafeInteger(since)) throw new RangeError('since must be an integer');
    if (!Number.isSafeInteger(limit)) throw new RangeError('limit must be an integer');
    const n = Math.min(Math.max(limit, 1), AUDIT_MAX_LIMIT);
    let rows: StoredAuditRecord[];
    try {
      const db = this.handle();
      // Fetch one extra row to learn whether another page exists.
      rows = db
        .prepare(`SELECT id, ${COLUMNS} FROM audit_log WHERE id > ? ORDER BY id LIMIT ?`)
        .all(Math.max(since, 0), n + 1) as StoredAuditRecord[];
    } catch (err) {
      throw this.fail(err);
    }
    const more = rows.length > n;
    const records = more ? rows.slice(0, n) : rows;
    const last = records[records.length - 1];
    return { records, next_since: more && last ? last.id : null };
  }

  /** Writes whatever is queued, then closes. Later records reject. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.db?.close();
    this.db = null;
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    const started = process.hrtime.bigint();
    try {
      const db = this.handle();
      const insert = db.prepare(
        `INSERT INTO audit_log (${COLUMNS}) VALUES (@ts, @node_id, @request_id, @actor, @client_ip, @action, @target, @version, @outcome, @status)`,
      );
      db.transaction((rows: AuditRecord[]) => {
        for (const r of rows) insert.run(r);
      }).immediate(batch.map((p) => p.row));
    } catch (err) {
      const e = this.fail(err);
      for (const p of batch) p.reject(e);
      safely(() => this.opts.onFailure?.(err, batch.length));
      return;
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    for (const p of batch) p.resolve();
    safely(() => this.opts.onFlush?.(seconds, batch.length));
  }

  private handle(): Database.Database {
    if (this.closed) throw new AuditUnavailableError('audit log is closed');
    if (this.db === null || !this.db.open) this.db = this.open();
    return this.db;
  }

  private open(): Database.Database {
    const db = new Database(this.path);
    try {
      db.pragma('journal_mode = WAL');
      // FULL: in WAL mode every commit fsyncs the WAL, so a resolved record survives power loss.
      db.pragma('synchronous = FULL');
      db.pragma(`busy_timeout = ${Math.max(0, Math.floor(this.opts.busyTimeoutMs ?? 1000))}`);
      db.exec(`CREATE TABLE IF NOT EXISTS audit_log (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        node_id TEXT NOT NULL,
        request_id TEXT NOT NULL,
        actor TEXT NOT NULL,
        client_ip TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        version INTEGER,
        outcome TEXT NOT NULL,
        status INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts);`);
      return db;
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** Drops the handle so the next batch reopens from scratch, and wraps the cause. */
  private fail(err: unknown): AuditUnavailableError {
    if (err instanceof AuditUnavailableError) return err;
    try {
      this.db?.close();
    } catch {
      // The handle is already unusable; reopening is what matters.
    }
    this.db = null;
    const msg = err instanceof Error ? err.message : String(err);
    return new AuditUnavailableError(`audit log unavailable: ${msg}`, { cause: err });
  }
}

// Validated before queueing so one malformed record cannot fail a whole batch.
function normalize(r: AuditRecord): AuditRecord {
  if (!OUTCOMES.has(r.outcome)) throw new TypeError(`invalid audit outcome: ${String(r.outcome)}`);
  if (!Number.isInteger(r.status)) throw new TypeError('audit status must be an integer');
  const version = r.version ?? null;
  if (version !== null && !Number.isSafeInteger(version)) throw new TypeError('audit version must be an integer');
  return {
    ts: String(r.ts),
    node_id: String(r.node_id),
    request_id: String(r.request_id),
    actor: String(r.actor),
    client_ip: String(r.client_ip),
    action: String(r.action),
    target: r.target == null ? null : String(r.target),
    version,
    outcome: r.outcome,
    status: r.status,
  };
}

// A metrics callback must never crash the process from inside setImmediate.
function safely(fn: () => void): void {
  try {
    fn();
  } catch {
    // ignored: metrics are best effort
  }
}
