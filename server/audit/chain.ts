// Tamper evidence for the audit log (issue 16). Each record's `chain` is
// HMAC-SHA256(chain key, previous chain (64 hex chars) || canonical JSON of the
// record, id included, keys sorted); the first record chains from 64 zeros and
// the oldest remaining one after pruning from audit_meta's anchor_chain (the
// chain of the last pruned record). Rows from releases before the chain (chain
// NULL) form an unchained prefix that verification skips. A deleted record
// shows as a gap in the ids (every id is the previous + 1), an edited or
// swapped one as a chain mismatch at that record.
//
// The key is 32 random bytes in <VAULT_DATA_DIR>/audit-chain.key (0600),
// created once and never stored in audit.db: someone who can rewrite audit.db
// but not read the key cannot forge a consistent chain. Deleting the newest
// records (the tail) is not detectable from audit.db alone; an export
// (VAULT_AUDIT_STDOUT / VAULT_AUDIT_FILE) holds them elsewhere.
//
// The writer thread computes chains with its own copy of canonicalAuditJson
// (audit-worker.ts must stay self-contained); verification uses the same
// function, imported from there.
import Database from 'better-sqlite3';
import { createHmac, randomBytes } from 'node:crypto';
import { closeSync, createReadStream, fsyncSync, linkSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { AUDIT_COLUMNS, canonicalAuditJson, ZERO_CHAIN, type AuditRow } from './audit-worker.js';
import type { StoredAuditRecord } from './record.js';

export const CHAIN_KEY_FILE = 'audit-chain.key';
export const CHAIN_KEY_BYTES = 32;

/** The result of a verification (GET /v1/admin/audit/verify, `coffer audit verify`). */
export interface AuditVerifyResult {
  ok: boolean;
  /** Records whose chain was checked. */
  checked: number;
  /** First and last record checked (null when none was). */
  first_id: number | null;
  last_id: number | null;
  /** The first record at which the chain breaks: missing, altered or out of place. */
  first_break: { id: number; reason: string } | null;
}

/** Where verification starts: the last pruned record (audit_meta), or nothing. */
export interface ChainAnchor {
  id: number;
  chain: string;
}

/** A record as stored or exported: the columns, id and chain. */
export type ChainedRecord = StoredAuditRecord & { chain?: string | null };

/** Reads `<dataDir>/audit-chain.key`, creating it (32 random bytes, 0600) the first time. */
export function loadOrCreateChainKey(dataDir: string): { key: Uint8Array; created: boolean } {
  const file = join(dataDir, CHAIN_KEY_FILE);
  try {
    return { key: readChainKey(file), created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  // Written whole under a temporary name, then linked into place: a crash never leaves a short key,
  // and of two racing starts the first link wins and both use its key.
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, randomBytes(CHAIN_KEY_BYTES));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  let created = true;
  try {
    linkSync(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    created = false;
  } finally {
    unlinkSync(tmp);
  }
  try {
    const dirFd = openSync(dataDir, 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  } catch {
    // best effort: the key is re-read at every start
  }
  return { key: readChainKey(file), created };
}

/** Reads a chain key file (exactly 32 bytes). */
export function readChainKey(file: string): Uint8Array {
  const key = readFileSync(file);
  if (key.length !== CHAIN_KEY_BYTES) throw new Error(`${file}: expected a ${CHAIN_KEY_BYTES}-byte audit chain key, found ${key.length} bytes`);
  return new Uint8Array(key);
}

function rowOf(r: ChainedRecord): AuditRow {
  return [r.ts, r.node_id, r.request_id, r.actor, r.client_ip, r.action, r.target ?? null, r.version ?? null, r.outcome, r.status, r.peer_ip ?? null];
}

/** The chain value of a record that follows `prev`. */
export function chainValue(key: Uint8Array, prev: string, r: ChainedRecord): string {
  return createHmac('sha256', key).update(prev + canonicalAuditJson(r.id, rowOf(r))).digest('hex');
}

/**
 * Checks records fed oldest first; stops at the first break. `anchor`: the
 * last pruned record (null when nothing was pruned, or unknown as for an
 * exported file, whose first record is then taken as given unless its id is 1).
 */
export class ChainVerifier {
  private prevId: number | null;
  private prevChain: string;
  private started = false;
  private checked = 0;
  private firstId: number | null = null;
  private lastId: number | null = null;
  private brk: { id: number; reason: string } | null = null;
  /** With an unknown start (an exported file), the first record is trusted as the start of the chain. */
  private trustFirst: boolean;

  constructor(
    private readonly key: Uint8Array,
    anchor: ChainAnchor | null,
    opts: { unknownStart?: boolean } = {},
  ) {
    this.prevId = anchor?.id ?? null;
    this.prevChain = anchor?.chain ?? ZERO_CHAIN;
    this.trustFirst = opts.unknownStart === true && anchor === null;
  }

  get broken(): boolean {
    return this.brk !== null;
  }

  /** Feeds the next record; returns false once the chain is broken (later records are ignored). */
  push(r: ChainedRecord): boolean {
    if (this.brk) return false;
    const chain = r.chain ?? null;
    if (chain === null) {
      if (this.started) return this.fail(r.id, 'the record has no chain value after chained records');
      // The unchained prefix (records written before the chain existed): the first chained record follows zeros.
      this.prevId = r.id;
      this.prevChain = ZERO_CHAIN;
      return true;
    }
    if (!/^[0-9a-f]{64}$/.test(chain)) return this.fail(r.id, 'the chain value is malformed');
    if (this.trustFirst && !this.started && r.id !== 1) {
      this.trustFirst = false;
    } else {
      if (this.prevId !== null && r.id !== this.prevId + 1) {
        if (r.id <= this.prevId) return this.fail(r.id, `out of order: record ${r.id} follows record ${this.prevId}`);
        const last = r.id - 1;
        const gap = last === this.prevId + 1 ? `record ${last} is missing` : `records ${this.prevId + 1} to ${last} are missing`;
        return this.fail(this.prevId + 1, `${gap} (deleted): record ${r.id} follows record ${this.prevId}`);
      }
      if (chainValue(this.key, this.prevChain, r) !== chain) {
        return this.fail(r.id, 'chain mismatch: the record was altered or moved (or the chain key is not the one it was written with)');
      }
      this.checked += 1;
    }
    this.started = true;
    this.firstId ??= r.id;
    this.lastId = r.id;
    this.prevId = r.id;
    this.prevChain = chain;
    return true;
  }

  result(): AuditVerifyResult {
    return { ok: this.brk === null, checked: this.checked, first_id: this.firstId, last_id: this.lastId, first_break: this.brk };
  }

  private fail(id: number, reason: string): false {
    this.brk = { id, reason };
    return false;
  }
}

const SELECT_ROWS = `SELECT id, ${AUDIT_COLUMNS.join(', ')}, chain FROM audit_log ORDER BY id`;

/** The anchor recorded by pruning, or null. Tolerates an audit.db without audit_meta (older releases). */
export function readAnchor(db: Database.Database): ChainAnchor | null {
  const has = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_meta'").get();
  if (!has) return null;
  const get = db.prepare('SELECT value FROM audit_meta WHERE key = ?').pluck();
  const id = get.get('anchor_id') as string | undefined;
  const chain = get.get('anchor_chain') as string | undefined;
  return id === undefined ? null : { id: Number(id), chain: chain ?? ZERO_CHAIN };
}

/**
 * Verifies an audit.db's chain from its oldest remaining record, reading it
 * read-only in one snapshot. `yieldEvery`: give the event loop a turn every so
 * many records (the running node's verify route); offline callers need not.
 */
export async function verifyAuditDb(db: Database.Database, key: Uint8Array, yieldEvery = 0): Promise<AuditVerifyResult> {
  db.exec('BEGIN');
  try {
    const v = new ChainVerifier(key, readAnchor(db));
    let n = 0;
    const hasChain = (db.prepare('PRAGMA table_info(audit_log)').all() as { name: string }[]).some((c) => c.name === 'chain');
    const stmt = db.prepare(hasChain ? SELECT_ROWS : SELECT_ROWS.replace(', chain FROM', ', NULL AS chain FROM'));
    for (const row of stmt.iterate() as Iterable<ChainedRecord>) {
      if (!v.push(row)) break;
      if (yieldEvery > 0 && ++n % yieldEvery === 0) await new Promise((r) => setImmediate(r));
    }
    return v.result();
  } finally {
    db.exec('COMMIT');
  }
}

/** `coffer audit verify --data-dir DIR`: checks `<dir>/audit.db` with the key in `keyFile` (default `<dir>/audit-chain.key`). */
export async function verifyAuditChain(dbPath: string, keyFile: string): Promise<AuditVerifyResult> {
  const key = readChainKey(keyFile);
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return await verifyAuditDb(db, key);
  } finally {
    db.close();
  }
}

/**
 * `coffer audit verify --file EXPORTED`: checks an exported JSON-lines file
 * (lines marked `"coffer_audit":1`; other lines, such as the server's own
 * logs on a shared stdout, are ignored). Records repeated by the export's
 * at-least-once delivery (same id and chain as already seen) are skipped.
 * The first record is the start unless `anchor` is given (or its id is 1):
 * a rotated file cannot prove what came before it.
 */
export async function verifyAuditExport(file: string, key: Uint8Array, anchor: ChainAnchor | null = null): Promise<AuditVerifyResult & { duplicates: number; lines: number }> {
  const v = new ChainVerifier(key, anchor, { unknownStart: true });
  const seen = new Map<number, string>();
  let duplicates = 0;
  let lines = 0;
  let maxId = -1;
  const rl = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.includes('"coffer_audit"')) continue;
    let rec: ChainedRecord & { coffer_audit?: unknown };
    try {
      rec = JSON.parse(line) as ChainedRecord & { coffer_audit?: unknown };
    } catch {
      continue;
    }
    if (rec.coffer_audit !== 1) continue;
    lines += 1;
    if (typeof rec.id === 'number' && rec.id <= maxId && seen.get(rec.id) === rec.chain) {
      duplicates += 1;
      continue;
    }
    if (!v.push(rec)) break;
    seen.set(rec.id, String(rec.chain));
    maxId = Math.max(maxId, rec.id);
  }
  rl.close();
  return { ...v.result(), duplicates, lines };
}
