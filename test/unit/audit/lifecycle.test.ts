// Issue 16: the audit log's hash chain, pruning (retention and size cap,
// never past what an export has not delivered), real shrinking, and the
// fail-closed "full" state. Real SQLite files, the real writer thread.
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../../server/audit/audit-log.js';
import type { AuditLogOptions } from '../../../server/audit/options.js';
import { chainValue, readChainKey, verifyAuditChain, verifyAuditExport, type ChainedRecord } from '../../../server/audit/chain.js';
import { AuditUnavailableError, type AuditRecord } from '../../../server/audit/record.js';

let dir: string;
const open: AuditLog[] = [];
const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const DAY = 86_400_000;

function make(opts: AuditLogOptions = {}): AuditLog {
  const log = new AuditLog(dir, { now: () => T0, maxBytes: 64 * 1024 * 1024, ...opts });
  open.push(log);
  return log;
}

function rec(i: number, over: Partial<AuditRecord> = {}): AuditRecord {
  return {
    ts: new Date(T0 + i).toISOString(),
    node_id: 'node-0',
    request_id: `req-${i}`,
    actor: 'ci-deployer',
    client_ip: '10.0.0.1',
    action: 'secret.read',
    target: `app/s${i}`,
    version: i,
    outcome: 'allowed',
    status: 200,
    peer_ip: '10.0.0.2',
    ...over,
  };
}

async function write(log: AuditLog, from: number, n: number, over: (i: number) => Partial<AuditRecord> = () => ({})): Promise<void> {
  const chunk = 500;
  for (let i = from; i < from + n; i += chunk) {
    await Promise.all(Array.from({ length: Math.min(chunk, from + n - i) }, (_, k) => log.record(rec(i + k, over(i + k)))));
  }
}

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const dbPath = () => join(dir, 'audit.db');
const keyPath = () => join(dir, 'audit-chain.key');
const dbBytes = () => statSync(dbPath()).size + (() => { try { return statSync(`${dbPath()}-wal`).size; } catch { return 0; } })();

function tamper(sql: string, ...args: unknown[]): void {
  const db = new Database(dbPath());
  try {
    db.prepare(sql).run(...args);
  } finally {
    db.close();
  }
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'coffer-audit-life-'));
});

afterEach(async () => {
  for (const l of open.splice(0)) await l.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('audit hash chain', () => {
  it('creates a 32-byte key file 0600 once, outside audit.db, and keeps it across restarts', async () => {
    const log = make();
    await write(log, 1, 3);
    const key = readChainKey(keyPath());
    expect(key.length).toBe(32);
    expect(statSync(keyPath()).mode & 0o777).toBe(0o600);
    await log.close();
    open.splice(0);
    const again = make();
    await write(again, 4, 3);
    expect(Buffer.from(readChainKey(keyPath())).equals(Buffer.from(key))).toBe(true);
    const v = await again.verify();
    expect(v).toEqual({ ok: true, checked: 6, first_id: 1, last_id: 6, first_break: null });
  });

  it('chains each record to the previous one, from 64 zeros (the writer thread and chain.ts agree)', async () => {
    const log = make();
    await write(log, 1, 5);
    const key = readChainKey(keyPath());
    const rows = log.query({ limit: 10 }).records as ChainedRecord[];
    let prev = '0'.repeat(64);
    for (const r of rows) {
      expect(r.chain).toBe(chainValue(key, prev, r));
      prev = r.chain!;
    }
  });

  it('verify passes on an intact log, offline and online', async () => {
    const log = make();
    await write(log, 1, 1200);
    expect(await log.verify()).toMatchObject({ ok: true, checked: 1200, first_id: 1, last_id: 1200, first_break: null });
    expect(await verifyAuditChain(dbPath(), keyPath())).toMatchObject({ ok: true, checked: 1200 });
  });

  it('deleting one row fails verification naming that row', async () => {
    const log = make();
    await write(log, 1, 50);
    tamper('DELETE FROM audit_log WHERE id = ?', 20);
    const v = await verifyAuditChain(dbPath(), keyPath());
    expect(v.ok).toBe(false);
    expect(v.first_break?.id).toBe(20);
    expect(v.first_break?.reason).toMatch(/record 20 is missing/);
    expect(v.checked).toBe(19);
    const onVerified: boolean[] = [];
    const log2 = make({ onVerified: (r) => onVerified.push(r.ok) });
    expect((await log2.verify()).first_break?.id).toBe(20);
    expect(onVerified).toEqual([false]);
  });

  it('editing one field of one row fails verification naming that row', async () => {
    const log = make();
    await write(log, 1, 50);
    tamper("UPDATE audit_log SET actor = 'someone-else' WHERE id = ?", 33);
    const v = await verifyAuditChain(dbPath(), keyPath());
    expect(v).toMatchObject({ ok: false, checked: 32, first_break: { id: 33 } });
    expect(v.first_break?.reason).toMatch(/chain mismatch/);
  });

  it('editing the status or the chain itself is caught too', async () => {
    const log = make();
    await write(log, 1, 20);
    tamper('UPDATE audit_log SET status = 403 WHERE id = 7');
    expect((await verifyAuditChain(dbPath(), keyPath())).first_break?.id).toBe(7);
    tamper('UPDATE audit_log SET status = 200 WHERE id = 7');
    expect((await verifyAuditChain(dbPath(), keyPath())).ok).toBe(true);
    tamper("UPDATE audit_log SET chain = ? WHERE id = 12", 'f'.repeat(64));
    expect((await verifyAuditChain(dbPath(), keyPath())).first_break?.id).toBe(12);
  });

  it("swapping two rows' contents fails verification at the first of them", async () => {
    const log = make();
    await write(log, 1, 50);
    const db = new Database(dbPath());
    try {
      const cols = 'ts, node_id, request_id, actor, client_ip, action, target, version, outcome, status, peer_ip, chain';
      const a = db.prepare(`SELECT ${cols} FROM audit_log WHERE id = 10`).raw().get() as unknown[];
      const b = db.prepare(`SELECT ${cols} FROM audit_log WHERE id = 40`).raw().get() as unknown[];
      const set = db.prepare(`UPDATE audit_log SET (${cols}) = (${cols.split(', ').map(() => '?').join(', ')}) WHERE id = ?`);
      db.transaction(() => {
        set.run(...b, 10);
        set.run(...a, 40);
      })();
    } finally {
      db.close();
    }
    expect(await verifyAuditChain(dbPath(), keyPath())).toMatchObject({ ok: false, first_break: { id: 10 } });
  });

  it('a wrong key fails at the first record', async () => {
    const log = make();
    await write(log, 1, 5);
    const other = join(dir, 'other.key');
    writeFileSync(other, Buffer.alloc(32, 7));
    expect(await verifyAuditChain(dbPath(), other)).toMatchObject({ ok: false, checked: 0, first_break: { id: 1 } });
  });

  it('rows from a release without the chain are an unchained prefix: verification starts after them', async () => {
    const db = new Database(dbPath());
    db.exec(`CREATE TABLE audit_log (id INTEGER PRIMARY KEY, ts TEXT NOT NULL, node_id TEXT NOT NULL, request_id TEXT NOT NULL, actor TEXT NOT NULL,
      client_ip TEXT NOT NULL, action TEXT NOT NULL, target TEXT, version INTEGER, outcome TEXT NOT NULL, status INTEGER NOT NULL, peer_ip TEXT)`);
    const ins = db.prepare('INSERT INTO audit_log (ts, node_id, request_id, actor, client_ip, action, target, version, outcome, status) VALUES (?,?,?,?,?,?,?,?,?,?)');
    for (let i = 1; i <= 3; i++) ins.run(new Date(T0).toISOString(), 'node-0', `old-${i}`, 'anonymous', '10.0.0.1', 'secret.read', null, null, 'allowed', 200);
    db.close();
    const log = make();
    await write(log, 4, 5);
    expect(log.query().records.map((r) => [r.id, r.chain === null])).toEqual([[1, true], [2, true], [3, true], [4, false], [5, false], [6, false], [7, false], [8, false]]);
    expect(await log.verify()).toMatchObject({ ok: true, checked: 5, first_id: 4, last_id: 8 });
    // The older file was rebuilt once for incremental vacuum.
    const check = new Database(dbPath(), { readonly: true });
    expect(check.pragma('auto_vacuum', { simple: true })).toBe(2);
    check.close();
  });

  it('verifies an exported JSON-lines file, skipping repeated lines and other log lines, naming the first break', async () => {
    const log = make();
    await write(log, 1, 30);
    const key = readChainKey(keyPath());
    const rows = log.query({ limit: 100 }).records;
    const line = (r: object) => JSON.stringify({ coffer_audit: 1, ...r });
    const file = join(dir, 'export.jsonl');
    // At-least-once: 11..15 delivered twice (a restart), and a pino line in between.
    const lines = [...rows.slice(0, 15).map(line), '{"level":30,"msg":"coffer node ready"}', ...rows.slice(10).map(line)];
    writeFileSync(file, lines.join('\n') + '\n');
    expect(await verifyAuditExport(file, key)).toMatchObject({ ok: true, checked: 30, first_id: 1, last_id: 30, duplicates: 5, lines: 35 });
    // A rotated file starting mid-chain: its first record is taken as the start.
    writeFileSync(file, rows.slice(9).map(line).join('\n') + '\n');
    expect(await verifyAuditExport(file, key)).toMatchObject({ ok: true, checked: 20, first_id: 10, last_id: 30 });
    // An edited line and a missing line.
    writeFileSync(file, rows.map((r) => line(r.id === 17 ? { ...r, target: 'app/other' } : r)).join('\n') + '\n');
    expect(await verifyAuditExport(file, key)).toMatchObject({ ok: false, first_break: { id: 17 } });
    writeFileSync(file, rows.filter((r) => r.id !== 22).map(line).join('\n') + '\n');
    expect(await verifyAuditExport(file, key)).toMatchObject({ ok: false, first_break: { id: 22 } });
  });
});

describe('audit pruning', () => {
  it('retention removes records older than it, oldest first, and the chain stays verifiable from the oldest remaining record', async () => {
    let now = T0;
    const pruned: number[] = [];
    const log = make({ now: () => now, retentionMs: DAY, pruneIntervalMs: 20, onPruned: (n) => pruned.push(n) });
    // 2500 records a day before T0+… : the first 2500 "old", the next 500 recent.
    await write(log, 1, 2500, (i) => ({ ts: new Date(T0 - 2 * DAY + i).toISOString() }));
    await write(log, 2501, 500, (i) => ({ ts: new Date(T0 + i).toISOString() }));
    now = T0 + 1000;
    await waitFor(() => log.status().oldestId === 2501);
    expect(pruned.reduce((a, b) => a + b, 0)).toBe(2500);
    expect(Math.max(...pruned)).toBeLessThanOrEqual(4000); // at most PRUNE_MAX_BATCHES transactions of ≤ 1000 per request
    expect(log.query({ limit: 1 }).records[0]!.id).toBe(2501);
    expect(await log.verify()).toMatchObject({ ok: true, checked: 500, first_id: 2501, last_id: 3000 });
    expect(await verifyAuditChain(dbPath(), keyPath())).toMatchObject({ ok: true, first_id: 2501 });
    // Deleting the oldest remaining record is still detected (the anchor names what must follow).
    tamper('DELETE FROM audit_log WHERE id = 2501');
    expect(await verifyAuditChain(dbPath(), keyPath())).toMatchObject({ ok: false, first_break: { id: 2501 } });
  });

  it('the file really shrinks once records are pruned (incremental vacuum, WAL truncated)', async () => {
    let now = T0;
    let pruned = 0;
    const log = make({ now: () => now, retentionMs: DAY, pruneIntervalMs: 20, onPruned: (n) => (pruned += n) });
    await write(log, 1, 20_000);
    const before = dbBytes();
    expect(before).toBeGreaterThan(3 * 1024 * 1024);
    now = T0 + 3 * DAY;
    await waitFor(() => pruned === 20_000);
    await waitFor(() => dbBytes() < 64 * 1024);
    const db = new Database(dbPath(), { readonly: true });
    try {
      expect(db.pragma('auto_vacuum', { simple: true })).toBe(2);
      expect(db.pragma('freelist_count', { simple: true })).toBe(0);
    } finally {
      db.close();
    }
  });

  it('ids keep increasing after everything was pruned', async () => {
    let now = T0;
    let pruned = 0;
    const log = make({ now: () => now, retentionMs: DAY, pruneIntervalMs: 20, onPruned: (n) => (pruned += n) });
    await write(log, 1, 10);
    now = T0 + 3 * DAY;
    await waitFor(() => pruned === 10);
    expect(log.status()).toMatchObject({ oldestId: null, lastId: 10 });
    await log.record(rec(3 * DAY + 1));
    expect(log.query().records.map((r) => r.id)).toEqual([11]);
    expect(await log.verify()).toMatchObject({ ok: true, checked: 1, first_id: 11 });
  });

  it('keeps audit.db (+WAL) under the cap by removing the oldest records, and the file really shrinks', async () => {
    const cap = 2 * 1024 * 1024;
    const log = make({ maxBytes: cap, pruneIntervalMs: 20 });
    let max = 0;
    for (let round = 0; round < 16; round++) {
      await write(log, round * 2000 + 1, 2000);
      max = Math.max(max, dbBytes());
    }
    await waitFor(() => dbBytes() <= cap * 0.9);
    expect(max).toBeLessThan(cap);
    const first = log.query({ limit: 1 }).records[0]!.id;
    expect(first).toBeGreaterThan(1);
    expect(log.status().lastId).toBe(32_000);
    expect(await log.verify()).toMatchObject({ ok: true, first_id: first, last_id: 32_000 });
    expect(log.problem()).toBeNull();
  });

  it('never prunes past keepAfterId: at the cap the log is full, refuses new records and probes, and recovers when the export catches up', async () => {
    const cap = 1024 * 1024;
    let keep: number | null = 100;
    const full: (string | null)[] = [];
    const log = make({ maxBytes: cap, pruneIntervalMs: 20, keepAfterId: () => keep, onFull: (r) => full.push(r) });
    let i = 1;
    let refused: unknown = null;
    while (refused === null && i < 200_000) {
      try {
        await write(log, i, 200);
        i += 200;
      } catch (err) {
        refused = err;
      }
    }
    expect(refused).toBeInstanceOf(AuditUnavailableError);
    expect(String((refused as Error).message)).toMatch(/audit log full: export behind/);
    expect(log.problem()).toMatch(/records after id 100 are not delivered/);
    expect(log.status().full).toBe(true);
    expect(full).toHaveLength(1);
    await expect(log.probe()).rejects.toBeInstanceOf(AuditUnavailableError);
    // Nothing past keepAfterId went; the records up to it did.
    const oldest = log.query({ limit: 1 }).records[0]!.id;
    expect(oldest).toBe(101);
    expect(dbBytes()).toBeLessThan(cap);
    // A committed change's record is still written while full.
    await new Promise<void>((resolve, reject) => log.submit(rec(999_999, { action: 'secret.write' }), (err) => (err ? reject(err) : resolve()), true));
    // The export catches up: pruning frees room and the log serves again.
    keep = log.status().lastId;
    await waitFor(() => log.problem() === null);
    expect(full).toEqual([expect.stringMatching(/full/), null]);
    await log.record(rec(1_000_000));
    await log.probe();
    expect(await log.verify()).toMatchObject({ ok: true });
    expect(log.query({ limit: 1 }).records[0]!.id).toBeGreaterThan(101);
  });
});
