// The audit probe's main-thread fast path only ever says "the write lock was
// free just now": a lock held elsewhere, or a database it cannot open, is
// "not known" (the writer thread's probe decides), and it never keeps a lock.
// A "yes" holds for the rest of the event loop's turn (callers in one turn
// share one probe), never longer.
import Database from 'better-sqlite3';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FastProbe } from '../../../server/audit/fast-probe.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function auditDb(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-fast-probe-'));
  dirs.push(dir);
  const file = path.join(dir, 'audit.db');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t (x)');
  db.close();
  return file;
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('FastProbe', () => {
  it('says yes while the lock is free, not known while another connection holds it, and holds nothing itself', async () => {
    const file = auditDb();
    const probe = new FastProbe(file);
    expect(probe.tryNow()).toBe(true);
    await nextTurn();
    const other = new Database(file);
    other.pragma('busy_timeout = 0');
    other.exec('BEGIN IMMEDIATE');
    const started = Date.now();
    expect(probe.tryNow()).toBe(false);
    expect(Date.now() - started).toBeLessThan(100); // it does not wait on the event loop
    other.exec('ROLLBACK');
    expect(probe.tryNow()).toBe(true);
    await nextTurn();
    // After a "yes" the lock is free again for everyone else.
    other.exec('BEGIN IMMEDIATE');
    other.exec('ROLLBACK');
    other.close();
    probe.close();
  });

  it('shares a yes with the callers of the same turn only', async () => {
    const file = auditDb();
    const probe = new FastProbe(file);
    expect(probe.tryNow()).toBe(true);
    const other = new Database(file);
    other.pragma('busy_timeout = 0');
    other.exec('BEGIN IMMEDIATE');
    // Same turn: the probe just taken answers (as the writer thread's shared probe would).
    expect(probe.tryNow()).toBe(true);
    await nextTurn();
    // The next turn asks audit.db again and finds the lock held.
    expect(probe.tryNow()).toBe(false);
    other.exec('ROLLBACK');
    other.close();
    probe.close();
  });

  it('says not known when the database cannot be opened, and yes again once it can', () => {
    const file = auditDb();
    const probe = new FastProbe(path.join(path.dirname(file), 'missing.db'));
    expect(probe.tryNow()).toBe(false);
    expect(fs.existsSync(path.join(path.dirname(file), 'missing.db'))).toBe(false); // it never creates one
    const ok = new FastProbe(file);
    expect(ok.tryNow()).toBe(true);
    ok.close();
    expect(ok.tryNow()).toBe(true); // reopens after close (and close forgets the shared yes)
    ok.close();
  });
});
