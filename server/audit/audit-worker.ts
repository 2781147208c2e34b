// The audit log's writer thread (see audit-log.ts). It writes records on a
// connection of its own, so SQLite's INSERT + COMMIT + WAL fsync
// (synchronous = FULL) and the busy-timeout wait of a lock probe block this
// thread, not the API's event loop. (The one other writer is the event loop's
// fast path, fast-path.ts, for a lone record while this thread is idle; both
// append through chainedAppender below.)
//
// Protocol (one message at a time, answered in order, each reply carries the
// request's id):
//   { id, op: 'batch', rows }  → one transaction, one fsync for all rows
//                                (rows: JSON of AuditRow[]; one string clones far
//                                cheaper than an array of arrays)
//   { id, op: 'probe' }        → BEGIN IMMEDIATE + ROLLBACK (can we take the write lock?)
//   { id, op: 'prune', … }     → removes expired or over-cap records, oldest first, in
//                                transactions of at most PRUNE_BATCH rows, never one with
//                                id > keepAfterId; then shrinks the file (incremental vacuum
//                                + WAL checkpoint TRUNCATE) and reports the size (PruneResult)
//   { id, op: 'close' }        → close the connection; the owner then terminates us
// Reply: { id, ok: true, seconds, lastId, prune? } or { id, ok: false, message, code }.
//
// Hash chain: the writer gives each record its id (the last id + 1, never
// reused even after everything was pruned) and its `chain` value,
// HMAC-SHA256(chain key, previous record's chain (hex) || canonical JSON of the
// record with its id); the previous chain of the first record is 64 zeros (and
// of a record after a pruned one, audit_meta's anchor_chain). chain.ts verifies
// it; chainMac() below and chain.ts's copy must stay identical (a unit test
// checks that rows written here verify there).
//
// This module must stay self-contained: no relative imports and no bare
// package imports, because under vitest it is loaded from a `data:` URL (see
// server/storage/worker-url.ts). better-sqlite3 is therefore loaded through
// createRequire from the path the owner passes in `workerData.requireFrom`.
import { createHmac } from 'node:crypto';
import { statSync } from 'node:fs';
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
  /** The node's chain key (audit-chain.key, 32 bytes). */
  chainKey: Uint8Array;
  /** VAULT_AUDIT_MAX_BYTES: sizes the WAL's autocheckpoint so the WAL stays a small part of the cap. */
  maxBytes: number;
}

/** What a prune request asks for. */
export interface PruneRequest {
  /** Records with an id above this are kept whatever their age (an export has not delivered them); null: no export. */
  keepAfterId: number | null;
  /** Epoch ms: records with an earlier ts are expired (VAULT_AUDIT_RETENTION). */
  cutoffMs: number;
  /** VAULT_AUDIT_MAX_BYTES. */
  maxBytes: number;
  /** At most this many delete transactions in this request (the rest in the next one, so records are not held up). */
  maxBatches: number;
}

export interface PruneResult {
  /** Records removed by this request. */
  pruned: number;
  /** audit.db + its WAL on disk after the request, bytes. */
  bytes: number;
  /** The oldest remaining record, or null when none remains. */
  oldestId: number | null;
  oldestTs: string | null;
  /** More could be removed right away (the batch limit stopped this request). */
  more: boolean;
  /** At or above the high-water mark and nothing more may be removed (the export is behind): new records must be refused. */
  full: boolean;
}

/** Most rows removed in one prune transaction. */
export const PRUNE_BATCH = 1000;
/**
 * Pruning for size starts above this share of the cap (checked after every
 * batch), and new records are refused above it when nothing can be pruned.
 * The rest of the cap is headroom for the WAL (walBudget) and the batches in flight.
 */
export const AUDIT_HIGH_WATER = 0.8;
/** Pruning for size goes down to this share of the cap. */
export const AUDIT_LOW_WATER = 0.65;

/** How large the WAL may grow between checkpoints: a thirty-second of the cap, 64 KiB to 4 MiB. */
export function walBudget(maxBytes: number): number {
  return Math.min(4 * 1024 * 1024, Math.max(64 * 1024, Math.floor(maxBytes / 32)));
}
/** Chain value before the first record. */
export const ZERO_CHAIN = '0'.repeat(64);

export type AuditWorkerRequest =
  | { id: number; op: 'batch'; rows: string }
  | { id: number; op: 'probe' }
  | ({ id: number; op: 'prune' } & PruneRequest)
  | { id: number; op: 'close' };

export type AuditWorkerReply =
  | { id: number; ok: true; seconds: number; lastId: number; prune?: PruneResult; pruneError?: string }
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
DROP INDEX IF EXISTS audit_log_ts;
-- anchor_id / anchor_chain: id and chain of the last pruned record, where verification of the rest starts.
CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT);`;

/**
 * Brings an audit.db from an earlier version up to AUDIT_SCHEMA: `peer_ip`
 * (the socket peer, when a trusted proxy named another client) was added
 * later; older rows keep NULL there.
 */
export function migrateAuditSchema(db: BetterSqlite3.Database): void {
  const cols = db.prepare('PRAGMA table_info(audit_log)').all() as { name: string }[];
  if (!cols.some((c) => c.name === 'peer_ip')) db.exec('ALTER TABLE audit_log ADD COLUMN peer_ip TEXT');
  // Rows written before the chain existed keep NULL: the unchained prefix, which verification skips.
  if (!cols.some((c) => c.name === 'chain')) db.exec('ALTER TABLE audit_log ADD COLUMN chain TEXT');
}

/**
 * Makes freed pages returnable to the file system (auto_vacuum=INCREMENTAL).
 * Must run before the first table is created; an older audit.db is rebuilt
 * once with VACUUM (which needs about its size again in free space: when that
 * fails the database keeps working, freed pages are reused but the file does
 * not shrink, and the next start tries again). Returns what happened.
 */
export function enableIncrementalVacuum(db: BetterSqlite3.Database): 'set' | 'vacuumed' | 'already' | { failed: string } {
  if (Number(db.pragma('auto_vacuum', { simple: true })) === 2) return 'already';
  const empty = (db.prepare('SELECT count(*) AS n FROM sqlite_master').get() as { n: number }).n === 0;
  db.pragma('auto_vacuum = INCREMENTAL');
  if (empty) return 'set';
  try {
    db.exec('VACUUM');
    return 'vacuumed';
  } catch (err) {
    return { failed: err instanceof Error ? err.message : String(err) };
  }
}

/** The canonical JSON the chain covers: every column but chain, id included, keys sorted. */
export function canonicalAuditJson(id: number, r: AuditRow): string {
  return JSON.stringify({
    action: r[5],
    actor: r[3],
    client_ip: r[4],
    id,
    node_id: r[1],
    outcome: r[8],
    peer_ip: r[10],
    request_id: r[2],
    status: r[9],
    target: r[6],
    ts: r[0],
    version: r[7],
  });
}

/** Id and chain of the newest record: the next record chains to these. */
export interface ChainHead {
  lastId: number;
  lastChain: string;
}

/** The chain value of record `r`, given id `id`, after the record whose chain is `prev` (see the top of this file). */
export function chainMac(key: Uint8Array): (prev: string, id: number, r: AuditRow) => string {
  // One update of the joined text: the same MAC as two updates, ~1.5 µs less per record.
  return (prev, id, r) => createHmac('sha256', key).update(prev + canonicalAuditJson(id, r)).digest('hex');
}

/**
 * Appends chained records to audit.db through `db`, inside a write
 * transaction the caller holds. Two connections write records (this thread,
 * and the API's event loop when this thread is idle: fast-path.ts), so the
 * head is read from the database in that transaction, never remembered
 * across transactions: whoever holds the write lock sees the other's records.
 */
export function chainedAppender(db: BetterSqlite3.Database, key: Uint8Array): { head(): ChainHead; append(rows: readonly AuditRow[]): ChainHead } {
  const mac = chainMac(key);
  const insert = db.prepare(`INSERT INTO audit_log (id, ${AUDIT_COLUMNS.join(', ')}, chain) VALUES (?, ${AUDIT_COLUMNS.map(() => '?').join(', ')}, ?)`);
  const getMeta = db.prepare('SELECT value FROM audit_meta WHERE key = ?').pluck();
  const newest = db.prepare('SELECT id, chain FROM audit_log ORDER BY id DESC LIMIT 1');
  const head = (): ChainHead => {
    const anchorId = Number(getMeta.get('anchor_id') ?? 0);
    const anchorChain = (getMeta.get('anchor_chain') as string | undefined) ?? ZERO_CHAIN;
    const top = newest.get() as { id: number; chain: string | null } | undefined;
    return top && top.id > anchorId ? { lastId: top.id, lastChain: top.chain ?? ZERO_CHAIN } : { lastId: Math.max(anchorId, top?.id ?? 0), lastChain: anchorChain };
  };
  return {
    head,
    append(rows) {
      let { lastId, lastChain } = head();
      for (const r of rows) {
        lastId += 1;
        lastChain = mac(lastChain, lastId, r);
        insert.run(lastId, ...r, lastChain);
      }
      return { lastId, lastChain };
    },
  };
}

interface Handle {
  db: BetterSqlite3.Database;
  probeBegin: BetterSqlite3.Statement;
  probeRollback: BetterSqlite3.Statement;
  insertAll: BetterSqlite3.Transaction<(rows: AuditRow[]) => ChainHead>;
  prune: (req: PruneRequest) => PruneResult;
  /** Id and chain of the newest record (or of the anchor when none remains) as this thread last saw it. */
  head: ChainHead;
}

function main(): void {
  const port = parentPort;
  const data = workerData as AuditWorkerData | undefined;
  // Imported for its types and constants (the owner side), not started as our worker.
  if (!port || data?.role !== AUDIT_WORKER_ROLE) return;
  const Database = createRequire(data.requireFrom)('better-sqlite3') as typeof BetterSqlite3;
  let handle: Handle | null = null;
  /** The last prune request: after a batch that took audit.db over the high-water mark, pruning runs again with it at once. */
  let lastPrune: PruneRequest | null = null;

  const fileBytes = (file: string): number => {
    try {
      return statSync(file).size;
    } catch {
      return 0;
    }
  };
  const dbBytes = (): number => fileBytes(data.path) + fileBytes(`${data.path}-wal`);

  // Everything is prepared once per connection; a failure drops the connection
  // and the next request reopens it from scratch.
  const open = (): Handle => {
    const db = new Database(data.path);
    try {
      db.pragma('journal_mode = WAL');
      // FULL: in WAL mode every commit fsyncs the WAL, so a resolved record survives power loss.
      db.pragma('synchronous = FULL');
      db.pragma(`busy_timeout = ${data.busyTimeoutMs}`);
      // The WAL counts against the cap: checkpoint it (and cut the file back) at walBudget.
      const pageSize = Number(db.pragma('page_size', { simple: true }));
      const walBytes = walBudget(data.maxBytes);
      db.pragma(`wal_autocheckpoint = ${Math.max(16, Math.floor(walBytes / pageSize))}`);
      db.pragma(`journal_size_limit = ${walBytes}`);
      // Freed pages are given back in steps of half that, each followed by a checkpoint, so the WAL stays small meanwhile.
      const vacuumStep = Math.max(16, Math.floor(walBytes / 2 / pageSize));
      db.exec(AUDIT_SCHEMA);
      migrateAuditSchema(db);
      const appender = chainedAppender(db, data.chainKey);
      const setMeta = db.prepare('INSERT INTO audit_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value');
      const oldest = db.prepare('SELECT id, ts FROM audit_log ORDER BY id LIMIT 1');
      const oldestPage = db.prepare(`SELECT id, ts FROM audit_log ORDER BY id LIMIT ${PRUNE_BATCH}`);
      const lastAtOrBelow = db.prepare('SELECT id, chain FROM audit_log WHERE id <= ? ORDER BY id DESC LIMIT 1');
      const deleteThrough = db.prepare('DELETE FROM audit_log WHERE id <= ?');

      const head = appender.head();
      const insertAll = db.transaction((rows: AuditRow[]) => appender.append(rows));

      /** Removes every record with id <= upTo, and remembers the last one removed as the anchor. */
      const removeThrough = db.transaction((upTo: number): number => {
        const last = lastAtOrBelow.get(upTo) as { id: number; chain: string | null } | undefined;
        if (!last) return 0;
        const n = deleteThrough.run(upTo).changes;
        setMeta.run('anchor_id', String(last.id));
        setMeta.run('anchor_chain', last.chain ?? ZERO_CHAIN);
        return n;
      });

      // Waits at most 100 ms for readers (page queries are short; a long verify holds a snapshot and is
      // not waited out): what cannot be checkpointed now is next time.
      const checkpoint = (): void => {
        db.pragma(`busy_timeout = ${Math.min(100, data.busyTimeoutMs)}`);
        try {
          db.pragma('wal_checkpoint(TRUNCATE)');
        } finally {
          db.pragma(`busy_timeout = ${data.busyTimeoutMs}`);
        }
      };
      const compact = (): void => {
        for (let step = 0; step < 10_000; step++) {
          const free = Number(db.pragma('freelist_count', { simple: true }));
          if (free === 0) break;
          db.pragma(`incremental_vacuum(${vacuumStep})`);
          checkpoint();
          if (free <= vacuumStep) break;
        }
        if (fileBytes(`${data.path}-wal`) > 0) checkpoint();
      };

      const prune = (req: PruneRequest): PruneResult => {
        const limitId = req.keepAfterId ?? Number.POSITIVE_INFINITY;
        let pruned = 0;
        let batches = 0;
        let blocked = false;
        // Retention: the expired prefix, oldest first.
        while (batches < req.maxBatches) {
          // Most requests find nothing expired: one row tells.
          const head0 = oldest.get() as { id: number; ts: string } | undefined;
          if (!head0 || !(Date.parse(head0.ts) < req.cutoffMs) || head0.id > limitId) {
            if (head0 && head0.id > limitId && Date.parse(head0.ts) < req.cutoffMs) blocked = true;
            break;
          }
          const page = oldestPage.all() as { id: number; ts: string }[];
          let upTo = -1;
          for (const r of page) {
            const t = Date.parse(r.ts);
            if (!(t < req.cutoffMs)) break;
            if (r.id > limitId) {
              blocked = true;
              break;
            }
            upTo = r.id;
          }
          if (upTo < 0) break;
          pruned += removeThrough(upTo);
          batches += 1;
        }
        let compacted = false;
        if (pruned > 0) {
          compact();
          compacted = true;
        }
        // Size: down to the low-water mark once above the high-water mark. A WAL that a reader's
        // snapshot keeps from being truncated counts up to its budget only: removing records would
        // not shrink it, and the next checkpoint will.
        const sized = (): number => fileBytes(data.path) + Math.min(fileBytes(`${data.path}-wal`), walBytes);
        let bytes = sized();
        const high = req.maxBytes * AUDIT_HIGH_WATER;
        if (bytes > high && !compacted) {
          compact();
          compacted = true;
          bytes = sized();
        }
        let sizeBlocked = false;
        if (bytes > high) {
          const first = oldest.get() as { id: number } | undefined;
          if (first) {
            const count = Math.max(1, appender.head().lastId - first.id + 1);
            const pageSize = Number(db.pragma('page_size', { simple: true }));
            const used = (Number(db.pragma('page_count', { simple: true })) - Number(db.pragma('freelist_count', { simple: true }))) * pageSize;
            const perRecord = Math.max(1, used / count);
            let toRemove = Math.ceil((bytes - req.maxBytes * AUDIT_LOW_WATER) / perRecord);
            let from = first.id;
            while (toRemove > 0 && batches < req.maxBatches) {
              const upTo = Math.min(from + Math.min(toRemove, PRUNE_BATCH) - 1, limitId);
              if (upTo < from) {
                sizeBlocked = true;
                break;
              }
              const n = removeThrough(upTo);
              pruned += n;
              toRemove -= Math.max(n, upTo - from + 1);
              batches += 1;
              from = upTo + 1;
              if (upTo >= limitId) {
                sizeBlocked = true;
                break;
              }
            }
            compact();
            bytes = sized();
          }
        }
        const o = oldest.get() as { id: number; ts: string } | undefined;
        const more = batches >= req.maxBatches && !blocked && !sizeBlocked;
        return {
          pruned,
          bytes: dbBytes(),
          oldestId: o?.id ?? null,
          oldestTs: o?.ts ?? null,
          more,
          // Full only when what is left may not be removed (an export behind), or nothing is left.
          full: bytes > high && !more && (sizeBlocked || o === undefined),
        };
      };
      return { db, insertAll, prune, head, probeBegin: db.prepare('BEGIN IMMEDIATE'), probeRollback: db.prepare('ROLLBACK') };
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
      let prune: PruneResult | undefined;
      let pruneError: string | undefined;
      let lastId = handle?.head.lastId ?? 0;
      if (req.op === 'close') {
        drop();
      } else {
        const h = (handle ??= open());
        if (req.op === 'batch') {
          const after = h.insertAll.immediate(JSON.parse(req.rows) as AuditRow[]);
          h.head.lastId = after.lastId;
          h.head.lastChain = after.lastChain;
          // keepAfterId of the last request is at most the current one (export cursors only advance): safe to reuse.
          // The batch is committed: a failing prune must not fail it (reported apart; the connection is reopened).
          if (lastPrune !== null && dbBytes() > lastPrune.maxBytes * AUDIT_HIGH_WATER) {
            try {
              prune = h.prune(lastPrune);
            } catch (err) {
              pruneError = err instanceof Error ? err.message : String(err);
            }
          }
        } else if (req.op === 'prune') {
          lastPrune = { keepAfterId: req.keepAfterId, cutoffMs: req.cutoffMs, maxBytes: req.maxBytes, maxBatches: req.maxBatches };
          prune = h.prune(lastPrune);
        } else {
          h.probeBegin.run();
          h.probeRollback.run();
        }
        lastId = h.head.lastId;
      }
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      port.postMessage({ id: req.id, ok: true, seconds, lastId, ...(prune ? { prune } : {}), ...(pruneError !== undefined ? { pruneError } : {}) } satisfies AuditWorkerReply);
      if (pruneError !== undefined) drop();
    } catch (err) {
      drop();
      const e = err as { message?: unknown; code?: unknown };
      const message = err instanceof Error ? err.message : String(e?.message ?? err);
      port.postMessage({ id: req.id, ok: false, message, code: typeof e?.code === 'string' ? e.code : undefined } satisfies AuditWorkerReply);
    }
  });
}

main();
