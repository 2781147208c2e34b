// The audit log's main-thread fast path. The probe only ever says "the write
// lock was free just now": a lock held elsewhere, or a database it cannot
// open, is "not known" (the writer thread's probe decides), and it never
// keeps a lock. A "yes" holds for the rest of the event loop's turn (callers
// in one turn share one probe), never longer. A write either commits records
// chained after whatever the writer thread wrote, or writes nothing.
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AUDIT_SCHEMA, chainedAppender, migrateAuditSchema, type AuditRow } from '../../../server/audit/audit-worker.js';
import { verifyAuditDb } from '../../../server/audit/chain.js';
import { FastPath } from '../../../server/audit/fast-path.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const KEY = randomBytes(32);
const MAX_BYTES = 64 * 1024 * 1024;

function auditDb(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-fast-path-'));
  dirs.push(dir);
  const file = path.join(dir, 'audit.db');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(AUDIT_SCHEMA);
  migrateAuditSchema(db);
  db.close();
  return file;
}

function row(i: number): AuditRow {
  return [new Date(1_700_000_000_000 + i).toISOString(), 'node-0', `req-${i}`, 'anonymous', '10.0.0.1', 'secret.read', `app/s${i}`, i, 'allowed', 200, null];
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('FastPath probe', () => {
  it('says yes while the lock is free, not known while another connection holds it, and holds nothing itself', async () => {
    const file = auditDb();
    const fast = new FastPath(file, KEY, MAX_BYTES);
    expect(fast.tryProbe()).toBe(true);
    await nextTurn();
    const other = new Database(file);
    other.pragma('busy_timeout = 0');
    other.exec('BEGIN IMMEDIATE');
    const started = Date.now();
    expect(fast.tryProbe()).toBe(false);
    expect(Date.now() - started).toBeLessThan(100); // it does not wait on the event loop
    other.exec('ROLLBACK');
    expect(fast.tryProbe()).toBe(true);
    await nextTurn();
    // After a "yes" the lock is free again for everyone else.
    other.exec('BEGIN IMMEDIATE');
    other.exec('ROLLBACK');
    other.close();
    fast.close();
  });

  it('shares a yes with the callers of the same turn only', async () => {
    const file = auditDb();
    const fast = new FastPath(file, KEY, MAX_BYTES);
    expect(fast.tryProbe()).toBe(true);
    const other = new Database(file);
    other.pragma('busy_timeout = 0');
    other.exec('BEGIN IMMEDIATE');
    // Same turn: the probe just taken answers (as the writer thread's shared probe would).
    expect(fast.tryProbe()).toBe(true);
    await nextTurn();
    // The next turn asks audit.db again and finds the lock held.
    expect(fast.tryProbe()).toBe(false);
    other.exec('ROLLBACK');
    other.close();
    fast.close();
  });

  it('says not known when the database cannot be opened, and yes again once it can', () => {
    const file = auditDb();
    const missing = new FastPath(path.join(path.dirname(file), 'missing.db'), KEY, MAX_BYTES);
    expect(missing.tryProbe()).toBe(false);
    expect(missing.tryWrite([row(1)])).toBeNull();
    expect(fs.existsSync(path.join(path.dirname(file), 'missing.db'))).toBe(false); // it never creates one
    const ok = new FastPath(file, KEY, MAX_BYTES);
    expect(ok.tryProbe()).toBe(true);
    ok.close();
    expect(ok.tryProbe()).toBe(true); // reopens after close (and close forgets the shared yes)
    ok.close();
  });
});

describe('FastPath write', () => {
  it('chains its records after the other writer, and the other writer after them: one verified chain, ids in order', async () => {
    const file = auditDb();
    const fast = new FastPath(file, KEY, MAX_BYTES);
    // The writer thread's side: the same appender on its own connection, one transaction per batch.
    const thread = new Database(file);
    const appender = chainedAppender(thread, KEY);
    const threadBatch = thread.transaction((rows: AuditRow[]) => appender.append(rows));

    let i = 0;
    expect(fast.tryWrite([row(++i)])).toBe(1);
    expect(threadBatch.immediate([row(++i), row(++i)]).lastId).toBe(3);
    expect(fast.tryWrite([row(++i), row(++i)])).toBe(5);
    expect(fast.tryWrite([row(++i)])).toBe(6);
    expect(threadBatch.immediate([row(++i)]).lastId).toBe(7);

    const ids = thread.prepare('SELECT id, request_id FROM audit_log ORDER BY id').all() as { id: number; request_id: string }[];
    expect(ids).toEqual(Array.from({ length: 7 }, (_, k) => ({ id: k + 1, request_id: `req-${k + 1}` })));
    const verified = await verifyAuditDb(thread, KEY, 1000);
    expect(verified).toMatchObject({ ok: true, checked: 7 });
    thread.close();
    fast.close();
  });

  it('writes nothing and holds no lock while another connection holds the write lock', () => {
    const file = auditDb();
    const fast = new FastPath(file, KEY, MAX_BYTES);
    const other = new Database(file);
    other.exec('BEGIN IMMEDIATE');
    expect(fast.tryWrite([row(1)])).toBeNull();
    other.exec('ROLLBACK');
    expect(other.prepare('SELECT count(*) FROM audit_log').pluck().get()).toBe(0);
    other.exec('BEGIN IMMEDIATE'); // not left holding it
    other.exec('ROLLBACK');
    expect(fast.tryWrite([row(1)])).toBe(1);
    other.close();
    fast.close();
  });

  it('a record that cannot be inserted rolls the whole batch back and writes nothing', () => {
    const file = auditDb();
    const fast = new FastPath(file, KEY, MAX_BYTES);
    const bad = row(2);
    bad[3] = null as unknown as string; // actor NOT NULL
    expect(fast.tryWrite([row(1), bad])).toBeNull();
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT count(*) FROM audit_log').pluck().get()).toBe(0);
    db.close();
    expect(fast.tryWrite([row(1)])).toBe(1); // a fresh handle after the failure
    fast.close();
  });
});
