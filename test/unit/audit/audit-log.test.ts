import Database from 'better-sqlite3';
import { chmodSync, mkdirSync, mkdtempSync, renameSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AuditLog, FAST_WRITE_AFTER_SINGLES } from '../../../server/audit/audit-log.js';
import { FastPath } from '../../../server/audit/fast-path.js';
import { AuditWorkerClient } from '../../../server/audit/worker-client.js';
import { AuditUnavailableError, type AuditRecord } from '../../../server/audit/record.js';

let dir: string;
const open: AuditLog[] = [];

// The records below are from 2023: measure retention from then, so none of them is expired.
const CLOCK = () => 1_700_000_000_000 + 60_000;

function make(opts: ConstructorParameters<typeof AuditLog>[1] = {}): AuditLog {
  const log = new AuditLog(dir, { now: CLOCK, ...opts });
  open.push(log);
  return log;
}

function rec(i: number, over: Partial<AuditRecord> = {}): AuditRecord {
  return {
    ts: new Date(1_700_000_000_000 + i).toISOString(),
    node_id: 'node-0',
    request_id: `req-${i}`,
    actor: 'anonymous',
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

async function waitFor(cond: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'coffer-audit-'));
});

afterEach(async () => {
  for (const l of open.splice(0)) await l.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('AuditLog', () => {
  it('writes N concurrent records as N ordered rows in fewer transactions', async () => {
    const batches: number[] = [];
    const log = make({ onFlush: (secs, count) => {
      expect(secs).toBeGreaterThanOrEqual(0);
      batches.push(count);
    } });
    const n = 50;
    await Promise.all(Array.from({ length: n }, (_, i) => log.record(rec(i))));
    // A second wave issued from resolution callbacks forms its own batch.
    await Promise.all(Array.from({ length: 10 }, (_, i) => log.record(rec(n + i))));

    const { records, next_since } = log.query({ limit: 1000 });
    expect(records.map((r) => r.request_id)).toEqual(Array.from({ length: n + 10 }, (_, i) => `req-${i}`));
    expect(records.map((r) => r.id)).toEqual(Array.from({ length: n + 10 }, (_, i) => i + 1));
    expect(next_since).toBeNull();
    expect(batches.reduce((a, b) => a + b, 0)).toBe(n + 10);
    expect(batches).toEqual([n, 10]);
  });

  it('hands the records that gathered during a batch to the writer thread before telling that batch its records are durable', async () => {
    const log = make();
    const original = AuditWorkerClient.prototype.call;
    let rest: Promise<void>[] = [];
    const call = vi.spyOn(AuditWorkerClient.prototype, 'call').mockImplementation(function (this: AuditWorkerClient, req) {
      const sent = original.call(this, req);
      // Right after the first batch is handed over (its answer cannot arrive before this turn ends), four more gather.
      if (req.op === 'batch' && rest.length === 0) queueMicrotask(() => (rest = Array.from({ length: 4 }, (_, i) => log.record(rec(2 + i)))));
      return sent;
    });
    const batchesSent = () => call.mock.calls.filter(([req]) => req.op === 'batch').map(([req]) => (JSON.parse((req as { rows: string }).rows) as unknown[]).length);
    let sentWhenFirstTold: number[] = [];
    await new Promise<void>((resolve, reject) =>
      log.submit(rec(1), (err) => {
        sentWhenFirstTold = batchesSent();
        if (err) reject(err);
        else resolve();
      }),
    );
    await Promise.all(rest);
    expect(sentWhenFirstTold).toEqual([1, 4]);
    expect(log.query({ limit: 10 }).records.map((r) => r.request_id)).toEqual(['req-1', 'req-2', 'req-3', 'req-4', 'req-5']);
  });

  it('stores all fields, nulls included', async () => {
    const log = make();
    await log.record(rec(1, { actor: 'ci-deployer', target: null, version: null, outcome: 'denied', status: 403 }));
    const [r] = log.query().records;
    expect(r).toEqual({ id: 1, ...rec(1, { actor: 'ci-deployer', target: null, version: null, outcome: 'denied', status: 403 }), chain: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });

  it('a resolved record is committed (visible to another connection) and survives reopen', async () => {
    const log = make();
    await log.record(rec(1));
    const other = new Database(join(dir, 'audit.db'), { readonly: true });
    try {
      expect(other.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(other.prepare('SELECT count(*) AS n FROM audit_log').get()).toEqual({ n: 1 });
    } finally {
      other.close();
    }
    await log.record(rec(2));
    await log.close();

    const again = make();
    await again.record(rec(3));
    expect(again.query().records.map((r) => [r.id, r.request_id])).toEqual([
      [1, 'req-1'],
      [2, 'req-2'],
      [3, 'req-3'],
    ]);
  });

  it('pages with since/limit/next_since', async () => {
    const log = make();
    await Promise.all(Array.from({ length: 25 }, (_, i) => log.record(rec(i))));
    const p1 = log.query({ limit: 10 });
    expect(p1.records.map((r) => r.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(p1.next_since).toBe(10);
    const p2 = log.query({ since: 10, limit: 10 });
    expect(p2.records[0]?.id).toBe(11);
    expect(p2.next_since).toBe(20);
    const p3 = log.query({ since: 20, limit: 10 });
    expect(p3.records.map((r) => r.id)).toEqual([21, 22, 23, 24, 25]);
    expect(p3.next_since).toBeNull();
    // Exactly `limit` left: no phantom next page.
    expect(log.query({ since: 15, limit: 10 }).next_since).toBeNull();
    expect(log.query({ since: 25 })).toEqual({ records: [], next_since: null });
    expect(log.query().records).toHaveLength(25); // default limit 100
  });

  it('clamps limit to 1..1000 and rejects non-integers', async () => {
    const log = make();
    await Promise.all(Array.from({ length: 1005 }, (_, i) => log.record(rec(i))));
    expect(log.query({ limit: 5000 }).records).toHaveLength(1000);
    expect(log.query({ limit: 5000 }).next_since).toBe(1000);
    expect(log.query({ limit: 0 }).records).toHaveLength(1);
    expect(log.query({ since: -5, limit: 1 }).records[0]?.id).toBe(1);
    expect(() => log.query({ limit: 1.5 })).toThrow(RangeError);
    expect(() => log.query({ since: Number.NaN })).toThrow(RangeError);
  });

  it('rejects a malformed record without failing its batch', async () => {
    const log = make();
    const bad = log.record(rec(1, { outcome: 'maybe' as AuditRecord['outcome'] }));
    const good = log.record(rec(2));
    await expect(bad).rejects.toBeInstanceOf(TypeError);
    await expect(good).resolves.toBeUndefined();
    expect(log.query().records.map((r) => r.request_id)).toEqual(['req-2']);
  });

  it('fails closed while the db cannot be written, then recovers', async () => {
    const failures: number[] = [];
    const log = make({ busyTimeoutMs: 20, onFailure: (_e, n) => failures.push(n) });
    await log.record(rec(1));

    // Fault 1: another connection holds the write lock (SQLITE_BUSY).
    const locker = new Database(join(dir, 'audit.db'));
    locker.exec('BEGIN IMMEDIATE');
    const batch = [log.record(rec(2)), log.record(rec(3))];
    for (const p of batch) await expect(p).rejects.toBeInstanceOf(AuditUnavailableError);
    await expect(batch[0]).rejects.toThrow(/audit log unavailable/);
    expect(failures).toEqual([2]);
    locker.exec('ROLLBACK');
    locker.close();

    // Fault 2: the file is gone and a directory stands in its place (open fails).
    renameSync(join(dir, 'audit.db'), join(dir, 'moved.db'));
    mkdirSync(join(dir, 'audit.db'));
    await expect(log.record(rec(4))).rejects.toBeInstanceOf(AuditUnavailableError);
    expect(() => log.query()).toThrow(AuditUnavailableError);
    rmdirSync(join(dir, 'audit.db'));
    renameSync(join(dir, 'moved.db'), join(dir, 'audit.db'));

    // Fault removed: the next batch reopens and writes.
    await log.record(rec(5));
    expect(log.query().records.map((r) => r.request_id)).toEqual(['req-1', 'req-5']);
    expect(failures).toEqual([2, 1]);
  });

  it('holds the record of a committed change until it is durable, instead of failing it, and refuses changes meanwhile', async () => {
    const held: Array<[boolean, boolean]> = [];
    const log = make({ busyTimeoutMs: 20, onHeld: (h, noSpace) => held.push([h, noSpace]) });
    await log.record(rec(1));

    const locker = new Database(join(dir, 'audit.db'));
    locker.exec('BEGIN EXCLUSIVE');
    const outcome: Record<string, Error | null | 'pending'> = { kept: 'pending', read: 'pending' };
    log.submit(rec(2, { action: 'secret.write', status: 201 }), (err) => (outcome.kept = err), true);
    log.submit(rec(3), (err) => (outcome.read = err));
    try {
      // The read's record fails closed as before; the committed write's record is held, not failed.
      await waitFor(() => outcome.read !== 'pending');
      expect(outcome.read).toBeInstanceOf(AuditUnavailableError);
      await waitFor(() => held.length > 0);
      expect(held).toEqual([[true, false]]);
      await new Promise((r) => setTimeout(r, 300)); // several retries, all failing
      expect(outcome.kept).toBe('pending');
      // No further change is let in while a committed change still waits for its record.
      await expect(log.probe()).rejects.toThrow(/records of committed writes wait to be written/);
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }
    await waitFor(() => outcome.kept !== 'pending', 3_000);
    expect(outcome.kept).toBeNull();
    expect(held).toEqual([[true, false], [false, false]]);
    await expect(log.probe()).resolves.toBeUndefined();
    expect(log.query().records.map((r) => r.request_id)).toEqual(['req-1', 'req-2']);
  });

  it('close() gives up on a held record with an error rather than hanging', async () => {
    const log = make({ busyTimeoutMs: 20 });
    await log.record(rec(1));
    const locker = new Database(join(dir, 'audit.db'));
    locker.exec('BEGIN EXCLUSIVE');
    try {
      let result: Error | null | 'pending' = 'pending';
      log.submit(rec(2, { action: 'secret.write', status: 201 }), (err) => (result = err), true);
      await new Promise((r) => setTimeout(r, 100));
      expect(result).toBe('pending');
      await log.close();
      expect(result).toBeInstanceOf(AuditUnavailableError);
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }
  });

  it('creates audit.db and its -wal and -shm files 0600 whatever the umask, and tightens an existing one', async () => {
    const before = process.umask(0o022);
    try {
      await make().record(rec(1));
      for (const f of ['audit.db', 'audit.db-wal', 'audit.db-shm']) expect(statSync(join(dir, f)).mode & 0o777, f).toBe(0o600);
      await open.pop()!.close();
      chmodSync(join(dir, 'audit.db'), 0o644);
      await make().record(rec(2));
      expect(statSync(join(dir, 'audit.db')).mode & 0o777).toBe(0o600);
    } finally {
      process.umask(before);
    }
  });

  it('submit() calls back once per record, never before it returns, with the same outcomes as record()', async () => {
    const log = make({ busyTimeoutMs: 20 });
    const outcomes: Array<[number, Error | null]> = [];
    const submitted = (i: number, over: Partial<AuditRecord> = {}) =>
      new Promise<void>((resolve) => {
        let returned = false;
        log.submit(rec(i, over), (err) => {
          expect(returned).toBe(true);
          outcomes.push([i, err]);
          resolve();
        });
        returned = true;
      });
    await Promise.all([submitted(1), submitted(2), submitted(3, { status: 1.5 })]);
    expect(outcomes.map(([i, e]) => [i, e === null ? null : e.name])).toEqual([[3, 'TypeError'], [1, null], [2, null]]);
    expect(log.query().records.map((r) => r.request_id)).toEqual(['req-1', 'req-2']);

    const locker = new Database(join(dir, 'audit.db'));
    locker.exec('BEGIN IMMEDIATE');
    await submitted(4);
    expect(outcomes.at(-1)?.[1]).toBeInstanceOf(AuditUnavailableError);
    locker.exec('ROLLBACK');
    locker.close();

    // A callback that throws does not keep the others in its batch from hearing back.
    const errors: unknown[] = [];
    const onUncaught = (e: unknown) => errors.push(e);
    process.prependListener('uncaughtException', onUncaught);
    try {
      await new Promise<void>((resolve) => {
        log.submit(rec(5), () => {
          throw new Error('callback bug');
        });
        log.submit(rec(6), () => resolve());
      });
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(errors).toHaveLength(1);
    expect(log.query().records.map((r) => r.request_id)).toEqual(['req-1', 'req-2', 'req-5', 'req-6']);

    await log.close();
    await submitted(7);
    expect(outcomes.at(-1)?.[1]).toBeInstanceOf(AuditUnavailableError);
  });

  it('rejects after close and flushes what was queued before close', async () => {
    const log = make();
    const queued = log.record(rec(1));
    const closing = log.close();
    await expect(queued).resolves.toBeUndefined();
    await expect(log.record(rec(2))).rejects.toBeInstanceOf(AuditUnavailableError);
    await expect(log.probe()).rejects.toBeInstanceOf(AuditUnavailableError);
    expect(() => log.query()).toThrow(AuditUnavailableError);
    await closing;
    const again = make();
    expect(again.query().records).toHaveLength(1);
  });

  it('probe resolves while the write lock is free and rejects while another connection holds it', async () => {
    const log = make({ busyTimeoutMs: 20 });
    await expect(log.probe()).resolves.toBeUndefined();
    await Promise.all([log.probe(), log.probe(), log.probe()]);
    // A probe's yes is shared by the callers of one event-loop turn (fast-path.ts): lock in the next one.
    await new Promise((resolve) => setImmediate(resolve));

    const locker = new Database(join(dir, 'audit.db'));
    locker.exec('BEGIN EXCLUSIVE');
    try {
      const probes = [log.probe(), log.probe()];
      for (const p of probes) await expect(p).rejects.toBeInstanceOf(AuditUnavailableError);
      await expect(probes[0]).rejects.toThrow(/audit log unavailable/);
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }
    await expect(log.probe()).resolves.toBeUndefined();
    await log.record(rec(1));
    expect(log.query().records.map((r) => r.request_id)).toEqual(['req-1']);
  });

  it('a lock wait does not block the event loop', async () => {
    const log = make({ busyTimeoutMs: 300 });
    await log.record(rec(1));
    const locker = new Database(join(dir, 'audit.db'));
    locker.exec('BEGIN IMMEDIATE');
    try {
      const stuck = log.record(rec(2));
      let ticks = 0;
      const timer = setInterval(() => ticks++, 10);
      await expect(stuck).rejects.toBeInstanceOf(AuditUnavailableError);
      clearInterval(timer);
      // The worker waited out the busy timeout; the main thread kept running timers meanwhile.
      expect(ticks).toBeGreaterThanOrEqual(5);
      // Committed rows stay readable during the failure.
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }
    await log.record(rec(3));
    expect(log.query().records.map((r) => r.request_id)).toEqual(['req-1', 'req-3']);
  });

  it('a crashed writer thread fails what it held and is restarted', async () => {
    const failures: number[] = [];
    const log = make({ onFailure: (_e, n) => failures.push(n) });
    // A batch of more than one record goes to the writer thread (fast-path.ts takes lone ones only).
    const burst = (from: number) => Array.from({ length: 5 }, (_, k) => rec(from + k));
    const ids = (from: number) => burst(from).map((r) => r.request_id);
    await Promise.all(burst(0).map((r) => log.record(r)));
    const worker = () => (log as unknown as { worker: { worker: { terminate(): Promise<number> } | null } }).worker.worker;

    // Killed while idle: the next batch starts a new worker.
    await worker()!.terminate();
    await Promise.all(burst(10).map((r) => log.record(r)));

    // Killed with a batch on its way: that batch either committed first or fails closed; nothing hangs.
    const inFlight = Promise.all(burst(20).map((r) => log.record(r)));
    await new Promise((r) => setImmediate(r)); // the batch is posted in the check phase
    void worker()!.terminate();
    const outcome = await inFlight.then(
      () => 'committed',
      (e: unknown) => (e instanceof AuditUnavailableError ? 'unavailable' : e),
    );
    expect(['committed', 'unavailable']).toContain(outcome);
    await Promise.all(burst(30).map((r) => log.record(r)));
    await expect(log.probe()).resolves.toBeUndefined();
    const written = log.query().records.map((r) => r.request_id);
    if (outcome === 'committed') {
      expect(written).toEqual([...ids(0), ...ids(10), ...ids(20), ...ids(30)]);
      expect(failures).toEqual([]);
    } else {
      // Failing closed is required; the worker may have committed the batch just before it died,
      // in which case the rows exist although their requests were answered 503.
      expect([[...ids(0), ...ids(10), ...ids(30)], [...ids(0), ...ids(10), ...ids(20), ...ids(30)]]).toContainEqual(written);
      expect(failures).toEqual([5]);
    }
  });

  it('writes records one at a time on the main thread and bursts in the writer thread, as one chain', async () => {
    const log = make();
    const onLoop = vi.spyOn(FastPath.prototype, 'tryWrite');
    try {
      let i = 0;
      const alone = FAST_WRITE_AFTER_SINGLES + 4;
      for (let round = 0; round < 3; round++) {
        // One at a time: after a few lone batches the main thread writes each itself.
        for (let k = 0; k < alone; k++) await log.record(rec(i++));
        // A burst: one batch, the writer thread's; the lone batches after it start counting again.
        await Promise.all(Array.from({ length: 20 }, () => log.record(rec(i++))));
      }
      const here = onLoop.mock.results.filter((r) => r.type === 'return' && typeof r.value === 'number').length;
      // Five per round; one may have met a prune in the writer thread (it holds the lock) and gone there.
      expect(here).toBeGreaterThanOrEqual(3 * 5 - 1);
      expect(here).toBeLessThanOrEqual(3 * 5);
      expect(onLoop.mock.calls.every(([rows]) => rows.length === 1)).toBe(true);
      const { records } = log.query({ limit: 1000 });
      expect(records.map((r) => r.request_id)).toEqual(Array.from({ length: i }, (_, k) => `req-${k}`));
      expect(records.map((r) => r.id)).toEqual(Array.from({ length: i }, (_, k) => k + 1));
      expect(await log.verify()).toMatchObject({ ok: true, checked: i });
    } finally {
      onLoop.mockRestore();
    }
  });

  it('records written one at a time on the main thread leave the WAL near its budget (the writer thread checkpoints it)', async () => {
    // A 2 MiB cap gives a 64 KiB WAL budget; the main thread never checkpoints, so every few batches go to the thread.
    const log = make({ maxBytes: 2 * 1024 * 1024 });
    const onLoop = vi.spyOn(FastPath.prototype, 'tryWrite');
    let largest = 0;
    try {
      for (let i = 0; i < 400; i++) {
        await log.record(rec(i));
        largest = Math.max(largest, statSync(join(dir, 'audit.db-wal'), { throwIfNoEntry: false })?.size ?? 0);
      }
      expect(onLoop.mock.results.filter((r) => r.type === 'return' && typeof r.value === 'number').length).toBeGreaterThan(200);
    } finally {
      onLoop.mockRestore();
    }
    expect(largest).toBeLessThan(256 * 1024);
    expect(log.query({ limit: 1000 }).records).toHaveLength(400);
  });

  it('has no column that could hold a secret value or token', () => {
    make();
    const db = new Database(join(dir, 'audit.db'), { readonly: true });
    try {
      const cols = (db.prepare('PRAGMA table_info(audit_log)').all() as { name: string }[]).map((c) => c.name);
      // chain: an HMAC over the other columns (chain.ts), no secret either.
      expect(cols).toEqual(['id', 'ts', 'node_id', 'request_id', 'actor', 'client_ip', 'action', 'target', 'version', 'outcome', 'status', 'peer_ip', 'chain']);
    } finally {
      db.close();
    }
  });

  it('an audit.db from an earlier version (with the ts index) opens with its records, and the index is dropped', async () => {
    const old = new Database(join(dir, 'audit.db'));
    old.pragma('journal_mode = WAL');
    old.exec(`CREATE TABLE audit_log (id INTEGER PRIMARY KEY, ts TEXT NOT NULL, node_id TEXT NOT NULL, request_id TEXT NOT NULL,
      actor TEXT NOT NULL, client_ip TEXT NOT NULL, action TEXT NOT NULL, target TEXT, version INTEGER, outcome TEXT NOT NULL, status INTEGER NOT NULL);
      CREATE INDEX audit_log_ts ON audit_log (ts);`);
    const r0 = rec(0);
    old.prepare('INSERT INTO audit_log (ts, node_id, request_id, actor, client_ip, action, target, version, outcome, status) VALUES (?,?,?,?,?,?,?,?,?,?)')
      .run(r0.ts, r0.node_id, r0.request_id, r0.actor, r0.client_ip, r0.action, r0.target, r0.version, r0.outcome, r0.status);
    old.close();
    const log = make();
    await log.record({ ...rec(1), peer_ip: '10.0.0.9' });
    // The peer_ip column is added in place; the old row has none.
    expect(log.query().records.map((r) => [r.request_id, r.peer_ip])).toEqual([['req-0', null], ['req-1', '10.0.0.9']]);
    const db = new Database(join(dir, 'audit.db'), { readonly: true });
    try {
      expect(db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_log'").all()).toEqual([]);
    } finally {
      db.close();
    }
  });
});
