// The audit log's writer thread (see audit-log.ts). It owns the only
// read-write connection to audit.db, so SQLite's INSERT + COMMIT + WAL fsync
// (synchronous = FULL) and the busy-timeout wait of a lock probe block this
// thread, never the API's event loop.
//
// Protocol (one message at a time, answered in order, each reply carries the
// request's id):
//   { id, op: 'batch', rows }  → one transaction, one fsync for all rows
//                                (rows: JSON of AuditRow[]; one string clones far
//                                cheaper than an array of arrays)
//   { id, op: 'probe' }        → BEGIN IMMEDIATE + ROLLBACK (can we take the write lock?)
//   { id, op: 'close' }        → close the connection; the owner then terminates us
// Reply: { id, ok: true, seconds } or { id, ok: false, message, code }.
//
// This module must stay self-contained: no relative imports and no bare
// package imports, because under vitest it is loaded from a `data:` URL (see
// worker-url.ts). better-sqlite3 is therefore loaded through
// createRequire from the path the owner passes in `workerData.requireFrom`.
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';

export const AUDIT_WORKER_ROLE = 'coffer-audit-writer';

export interface AuditWorkerData {
  /** Marks the thread as ours (importing this module elsewhere starts nothing). */
  role: typeof AUDIT_WORKER_ROLE;
  /** audit.db path. */
  path: string;
  busyTimeoutMs: number;
  /** A file path from which `better-sqlite3` resolves (the owner module). */
  requireFrom: string;
}

export type AuditWorkerRequest =
  | { id: number; op: 'batch'; rows: string }
  | { id: number; op: 'probe' }
  | { id: number; op: 'close' };

export type AuditWorkerReply =
  | { id: number; ok: true; seconds: number }
  | { id: number; ok: false; message: string; code: string | undefined };

/** Column values in AUDIT_COLUMNS order. */
export type AuditRow = [string, string, string, string, string, string, string | null, number | null, string, number, string | null];

export const AUDIT_COLUMNS = ['ts', 'node_id', 'request_id', 'actor', 'client_ip', 'action', 'target', 'version', 'outcome', 'status', 'peer_ip'] as const;

export const AUDIT_SCHEMA = `CREATE TABLE IF NOT EXISTS audit_log (
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
  status INTEGER NOT NULL,
  peer_ip TEXT
);
-- Pages are read by id; an index on ts (kept by earlier versions) cost a second B-tree insert and WAL page per commit.
DROP INDEX IF EXISTS audit_log_ts;`;

/**
 * Brings an audit.db from an earlier version up to AUDIT_SCHEMA: `peer_ip`
 * (the socket peer, when a trusted proxy named another client) was added
 * later; older rows keep NULL there.
 */
export function migrateAuditSchema(db: BetterSqlite3.Database): void {
  const cols = db.prepare('PRAGMA table_info(audit_log)').all() as { name: string }[];
  if (!cols.some((c) => c.name === 'peer_ip')) db.exec('ALTER TABLE audit_log ADD COLUMN peer_ip TEXT');
}

interface Handle {
  db: BetterSqlite3.Database;
  probeBegin: BetterSqlite3.Statement;
  probeRollback: BetterSqlite3.Statement;
  insertAll: BetterSqlite3.Transaction<(rows: AuditRow[]) => void>;
}

function main(): void {
  const port = parentPort;
  const data = workerData as AuditWorkerData | undefined;
  // Imported for its types and constants (the owner side), not started as our worker.
  if (!port || data?.role !== AUDIT_WORKER_ROLE) return;
  const Database = createRequire(data.requireFrom)('better-sqlite3') as typeof BetterSqlite3;
  let handle: Handle | null = null;

  // Everything is prepared once per connection; a failure drops the connection
  // and the next request reopens it from scratch.
  const open = (): Handle => {
    const db = new Database(data.path);
    try {
      db.pragma('journal_mode = WAL');
      // FULL: in WAL mode every commit fsyncs the WAL, so a resolved record survives power loss.
      db.pragma('synchronous = FULL');
      db.pragma(`busy_timeout = ${data.busyTimeoutMs}`);
      db.exec(AUDIT_SCHEMA);
      migrateAuditSchema(db);
      const insert = db.prepare(`INSERT INTO audit_log (${AUDIT_COLUMNS.join(', ')}) VALUES (${AUDIT_COLUMNS.map(() => '?').join(', ')})`);
      const insertAll = db.transaction((rows: AuditRow[]) => {
        for (const r of rows) insert.run(r);
      });
      return { db, insertAll, probeBegin: db.prepare('BEGIN IMMEDIATE'), probeRollback: db.prepare('ROLLBACK') };
    } catch (err) {
      db.close();
      throw err;
    }
  };

  const drop = (): void => {
    try {
      if (handle?.db.inTransaction) handle.db.exec('ROLLBACK');
    } catch {
      // closing anyway
    }
    try {
      handle?.db.close();
    } catch {
      // The handle is already unusable; reopening is what matters.
    }
    handle = null;
  };

  port.on('message', (req: AuditWorkerRequest) => {
    const started = process.hrtime.bigint();
    try {
      if (req.op === 'close') {
        drop();
      } else {
        handle ??= open();
        if (req.op === 'batch') {
          handle.insertAll.immediate(JSON.parse(req.rows) as AuditRow[]);
        } else {
          handle.probeBegin.run();
          handle.probeRollback.run();
        }
      }
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      port.postMessage({ id: req.id, ok: true, seconds } satisfies AuditWorkerReply);
    } catch (err) {
      drop();
      const e = err as { message?: unknown; code?: unknown };
      const message = err instanceof Error ? err.message : String(e?.message ?? err);
      port.postMessage({ id: req.id, ok: false, message, code: typeof e?.code === 'string' ? e.code : undefined } satisfies AuditWorkerReply);
    }
  });
}

main();
