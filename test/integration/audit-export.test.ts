// The audit export (VAULT_AUDIT_STDOUT, VAULT_AUDIT_FILE) on real `coffer
// server` processes: every record of audit.db reaches stdout and the rotated
// file, in id order, at least once, across a SIGKILL and a restart; never a
// value or a token; a consumer that stops reading stdout does not stop the
// API, and gets everything once it reads again. And `coffer audit
// tail/export/verify` against a real node.
import Database from 'better-sqlite3';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { AuditLog } from '../../server/audit/audit-log.js';
import { AuditExport } from '../../server/audit/export/exporter.js';
import { Registry } from '../../common/prometheus.js';
import { request } from '../helpers/http.js';
import { COFFER_BIN, ROOT, nodeEnv, randomMasterKey, randomToken, tempDir } from '../helpers/node.js';

const run = promisify(execFile);

interface Proc {
  proc: ChildProcess;
  url: string;
  /** Everything read from stdout so far. */
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

const procs: ChildProcess[] = [];
afterEach(() => {
  for (const p of procs.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

/** `coffer server` with stdout on a pipe this test reads (until pause()). */
async function startServer(env: Record<string, string>): Promise<Proc> {
  if (!fs.existsSync(COFFER_BIN)) throw new Error('dist/ is missing: run `npx tsc -p .` first');
  const proc = spawn(process.execPath, [COFFER_BIN, 'server'], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(proc);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const url = await waitFor(() => /"api":"(http:\/\/[^"]+)"/.exec(out)?.[1] ?? null, 20_000, () => `node did not start:\n${out}\n${err}`);
  return { proc, url, stdout: () => out, stderr: () => err, exited };
}

async function waitFor<T>(fn: () => T | null | Promise<T | null>, ms: number, what: () => string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== null && v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(what());
    await new Promise((r) => setTimeout(r, 25));
  }
}

interface Line {
  coffer_audit: number;
  id: number;
  [k: string]: unknown;
}

/** The audit lines of a stdout capture; every line of it must be whole JSON (no audit line cut into a log line). */
function auditLines(text: string): Line[] {
  const lines: Line[] = [];
  for (const l of text.split('\n')) {
    if (l === '' || !l.startsWith('{')) continue; // the dev banner is not JSON; a server in these tests prints none
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(l) as Record<string, unknown>;
    } catch {
      throw new Error(`a stdout line is not whole JSON: ${l.slice(0, 200)}`);
    }
    if ('coffer_audit' in v) lines.push(v as Line);
  }
  return lines;
}

function dbIds(dataDir: string): number[] {
  const db = new Database(path.join(dataDir, 'audit.db'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT id FROM audit_log ORDER BY id').pluck().all() as number[];
  } finally {
    db.close();
  }
}

/** Ids in delivery order are contiguous runs; each run after the first may start again below where the last ended (a crash): that is the only way duplicates appear. */
function expectDelivered(ids: number[], all: number[], crashes: number): void {
  expect(new Set(ids)).toEqual(new Set(all));
  let backs = 0;
  for (let i = 1; i < ids.length; i++) {
    if (ids[i] === ids[i - 1]! + 1) continue;
    // Not the next id: only a restart from an older cursor (never a gap forward).
    expect(ids[i]!, `id ${ids[i]} after ${ids[i - 1]}`).toBeLessThanOrEqual(ids[i - 1]!);
    backs += 1;
  }
  expect(backs).toBeLessThanOrEqual(crashes);
}

/** A writer/reader load: `n` requests, `conc` at a time; failures (a killed node) are counted, not thrown. */
async function load(url: () => string, token: string, n: number, conc: number, values: string[]): Promise<{ ok: number; failed: number }> {
  let next = 0;
  let ok = 0;
  let failed = 0;
  const one = async (i: number) => {
    const name = `exp/s${i % 40}`;
    try {
      const res =
        i % 2 === 0
          ? await request(url(), 'PUT', `/v1/secrets/${name}`, { token, body: { value: values[i % values.length] }, timeoutMs: 5_000 })
          : await request(url(), 'GET', `/v1/secrets/${name}`, { token, timeoutMs: 5_000 });
      if (res.status < 500) ok += 1;
      else failed += 1;
    } catch {
      failed += 1;
    }
  };
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (next < n) await one(next++);
    }),
  );
  return { ok, failed };
}

function values(k: number): string[] {
  return Array.from({ length: k }, () => `export-secret-value-${randomBytes(9).toString('hex')}`);
}

function baseEnv(dataDir: string, token: string, extra: Record<string, string>): Record<string, string> {
  return nodeEnv({ dataDir, masterKey: randomMasterKey(), bootstrapToken: token, env: extra });
}

describe('audit export', () => {
  it('stdout and a rotated file hold every record of audit.db, in order, at least once, across a SIGKILL and a restart; never a value or token', async () => {
    const dataDir = tempDir('coffer-export-');
    const token = randomToken();
    const file = path.join(dataDir, 'exported', 'audit.jsonl');
    const env = baseEnv(dataDir, token, { VAULT_AUDIT_STDOUT: 'true', VAULT_AUDIT_FILE: file, VAULT_AUDIT_FILE_MAX_BYTES: '64Ki' });
    const vals = values(20);

    // Three SIGKILLs mid-load at different points, then a graceful stop, which delivers what audit.db holds.
    const runs: Proc[] = [];
    for (const killAt of [150, 120, 90, -1]) {
      const node = await startServer(env);
      runs.push(node);
      if (killAt < 0) {
        const after = await load(() => node.url, token, 250, 8, vals);
        expect(after.failed).toBe(0);
        node.proc.kill('SIGTERM');
        expect(await node.exited).toBe(0);
        break;
      }
      // The load keeps going while the node dies (its requests then fail).
      const loading = load(() => node.url, token, 600, 12, vals);
      await waitFor(() => (auditLines(node.stdout()).length >= killAt ? true : null), 20_000, () => 'no export under load');
      node.proc.kill('SIGKILL');
      await node.exited;
      expect((await loading).ok).toBeGreaterThan(killAt / 2);
    }

    const all = dbIds(dataDir);
    expect(all.length).toBeGreaterThan(400);
    expect(all).toEqual(Array.from({ length: all.length }, (_, i) => i + 1));

    // stdout: each process prints a contiguous run, starting at or before where the previous one's cursor stood.
    const perRun = runs.map((r) => auditLines(r.stdout()).map((l) => l.id));
    expect(perRun[0]![0]).toBe(1);
    for (let i = 1; i < perRun.length; i++) {
      const prev = perRun[i - 1]!;
      const cur = perRun[i]!;
      expect(cur.length).toBeGreaterThan(0);
      expect(cur).toEqual(Array.from({ length: cur.length }, (_, k) => cur[0]! + k));
      expect(cur[0]!).toBeLessThanOrEqual(prev[prev.length - 1]! + 1);
    }
    expectDelivered(perRun.flat(), all, runs.length - 1);

    // The file: rotated by size (at most 64 KiB each, five old ones kept), the same guarantees.
    const files = [5, 4, 3, 2, 1].map((i) => `${file}.${i}`).filter((f) => fs.existsSync(f));
    expect(files.length).toBeGreaterThanOrEqual(2);
    expect(fs.existsSync(`${file}.6`)).toBe(false);
    for (const f of [...files, file]) expect(fs.statSync(f).size).toBeLessThanOrEqual(64 * 1024);
    const fileText = [...files, file].map((f) => fs.readFileSync(f, 'utf8')).join('');
    expectDelivered(auditLines(fileText).map((l) => l.id), all, runs.length - 1);
    for (const f of [...files, file]) expect(fs.statSync(f).mode & 0o777).toBe(0o600);

    // Records only: no value, no token, anywhere in what was exported (or logged).
    const everything = runs.map((r) => r.stdout() + r.stderr()).join('') + fileText;
    for (const v of vals) expect(everything).not.toContain(v);
    expect(everything).not.toContain(token);
    expect(everything).not.toContain(token.slice(5));
    // The cursors stand at the end.
    expect(fs.readFileSync(path.join(dataDir, 'audit-export.stdout.cursor'), 'utf8').trim()).toBe(String(all[all.length - 1]));
    expect(fs.readFileSync(path.join(dataDir, 'audit-export.file.cursor'), 'utf8').trim()).toBe(String(all[all.length - 1]));
  }, 90_000);

  it('a consumer that stops reading stdout does not stop the API; the lag grows, and every record arrives once it reads again', async () => {
    const dataDir = tempDir('coffer-export-');
    const token = randomToken();
    const node = await startServer(baseEnv(dataDir, token, { VAULT_AUDIT_STDOUT: 'true' }));
    // Stop reading: the pipe (64 KiB) and Node's read buffer fill, then the node's writes get EAGAIN.
    node.proc.stdout!.pause();
    const vals = values(5);
    const loading = load(() => node.url, token, 1500, 8, vals);
    // /v1/health answers all along, promptly.
    let slowest = 0;
    let healthChecks = 0;
    let done = false;
    void loading.then(() => (done = true));
    while (!done) {
      const t0 = Date.now();
      const h = await request(node.url, 'GET', '/v1/health', { timeoutMs: 2_000 });
      expect(h.status).toBe(200);
      slowest = Math.max(slowest, Date.now() - t0);
      healthChecks += 1;
      await new Promise((r) => setTimeout(r, 50));
    }
    const res = await loading;
    expect(res.failed).toBe(0);
    expect(healthChecks).toBeGreaterThan(3);
    expect(slowest).toBeLessThan(1_000);
    const newest = dbIds(dataDir).at(-1)!;
    expect(newest).toBeGreaterThanOrEqual(1500);
    // The export is stuck well behind: the lag metric says so.
    const metrics = await request(node.url, 'GET', '/metrics', { token });
    const lag = Number(/coffer_audit_export_lag_records\{sink="stdout"\} (\d+)/.exec(metrics.text)?.[1]);
    expect(lag).toBeGreaterThan(500);
    const h = await request(node.url, 'GET', '/v1/health', { timeoutMs: 2_000 });
    expect(h.status).toBe(200);

    // Read again: everything arrives, in order, exactly once (no crash here).
    node.proc.stdout!.resume();
    await waitFor(() => (auditLines(node.stdout()).some((l) => l.id >= newest) ? true : null), 20_000, () => 'the export did not catch up');
    const ids = auditLines(node.stdout()).map((l) => l.id);
    expect(ids.slice(0, newest)).toEqual(Array.from({ length: newest }, (_, i) => i + 1));
    const after = await request(node.url, 'GET', '/metrics', { token });
    expect(Number(/coffer_audit_export_lag_records\{sink="stdout"\} (\d+)/.exec(after.text)?.[1])).toBeLessThan(50);
    node.proc.kill('SIGTERM');
    expect(await node.exited).toBe(0);
  }, 90_000);

  it('an export stuck behind a full pipe at the audit cap fails the node closed (503, /v1/ready 503); reading again recovers it, every record delivered', async () => {
    const dataDir = tempDir('coffer-export-');
    const token = randomToken();
    const node = await startServer(baseEnv(dataDir, token, { VAULT_AUDIT_STDOUT: 'true', VAULT_AUDIT_MAX_BYTES: '1Mi', VAULT_MIN_FREE_BYTES: '0' }));
    expect((await request(node.url, 'PUT', '/v1/secrets/app/full', { token, body: { value: 'kept-at-the-cap' } })).status).toBe(201);
    node.proc.stdout!.pause();
    // Requests until the cap refuses them: the records the pipe did not take may not be pruned.
    let refused = null as Awaited<ReturnType<typeof request>> | null;
    const deadline = Date.now() + 60_000;
    while (refused === null && Date.now() < deadline) {
      const batch = await Promise.all(Array.from({ length: 20 }, () => request(node.url, 'GET', '/v1/secrets/app/full', { token, timeoutMs: 5_000 })));
      refused = batch.find((r) => r.status === 503) ?? null;
    }
    expect(refused, 'the cap was never reached').not.toBeNull();
    expect(refused!.body.error.code).toBe('audit_unavailable');
    expect((await request(node.url, 'PUT', '/v1/secrets/app/full', { token, body: { value: 'not-written' } })).status).toBe(503);
    const ready = await request(node.url, 'GET', '/v1/ready');
    expect(ready.status).toBe(503);
    expect(ready.body.problem).toMatch(/audit/);
    expect((await request(node.url, 'GET', '/v1/health', { timeoutMs: 2_000 })).status).toBe(200);

    // The consumer reads again: the export catches up, pruning frees room, the node serves again by itself.
    node.proc.stdout!.resume();
    await waitFor(async () => ((await request(node.url, 'GET', '/v1/ready')).status === 200 ? true : null), 30_000, () => 'not ready again');
    expect((await request(node.url, 'PUT', '/v1/secrets/app/full', { token, body: { value: 'written-again' } })).status).toBe(200);
    node.proc.kill('SIGTERM');
    expect(await node.exited).toBe(0);
    // Pruned or not, every record reached stdout once, in order (no crash here).
    const ids = auditLines(node.stdout()).map((l) => l.id);
    const kept = dbIds(dataDir);
    expect(kept[0]!).toBeGreaterThan(1); // pruning did run
    expect(ids).toEqual(Array.from({ length: kept[kept.length - 1]! }, (_, i) => i + 1));
    expect(fs.statSync(path.join(dataDir, 'audit.db')).size).toBeLessThanOrEqual(1024 * 1024);
  }, 120_000);
});

async function coffer(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [COFFER_BIN, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('coffer audit', () => {
  it('tail, export (paging), verify through the API and offline, a tampered row or exported line named', async () => {
    const dataDir = tempDir('coffer-auditcli-');
    const token = randomToken();
    const node = await startServer(baseEnv(dataDir, token, {}));
    const cli = { COFFER_ADDR: node.url, COFFER_TOKEN: token };
    const r = await load(() => node.url, token, 1100, 16, values(3));
    expect(r.failed).toBe(0);

    const help = await coffer(['audit', '--help'], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/coffer audit tail/);
    expect((await coffer(['--help'], {})).stdout).toMatch(/audit tail\|export\|verify/);

    const tail = await coffer(['audit', 'tail', '--limit', '5'], cli);
    expect(tail.code, tail.stderr).toBe(0);
    const t = auditLines(tail.stdout);
    expect(t).toHaveLength(5);
    expect(t.map((l) => l.id)).toEqual(Array.from({ length: 5 }, (_, i) => t[0]!.id + i));
    // The newest at the time: nothing but the tail's own reads came after.
    expect(t[4]!.id).toBeGreaterThan(1100);
    for (const l of t) expect(typeof l.chain).toBe('string');

    const exp = await coffer(['audit', 'export', '--since', '3'], cli);
    expect(exp.code, exp.stderr).toBe(0);
    const e = auditLines(exp.stdout).map((l) => l.id);
    expect(e.length).toBeGreaterThan(1100); // more than one page of 1000
    expect(e).toEqual(Array.from({ length: e.length }, (_, i) => i + 4));

    const verify = await coffer(['audit', 'verify', '--json'], cli);
    expect(verify.code, verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ ok: true, first_break: null });

    // --follow prints what comes after, as it comes.
    const follow = spawn(process.execPath, [COFFER_BIN, 'audit', 'tail', '--limit', '1', '--follow'], { env: { PATH: process.env.PATH ?? '', ...cli }, stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(follow);
    let followed = '';
    follow.stdout!.on('data', (d: Buffer) => (followed += d.toString()));
    await waitFor(() => (followed.includes('\n') ? true : null), 10_000, () => 'tail --follow printed nothing');
    expect((await request(node.url, 'PUT', '/v1/secrets/follow/me', { token, body: { value: 'x1' } })).status).toBe(201);
    await waitFor(() => (auditLines(followed).some((l) => l.target === 'follow/me') ? true : null), 10_000, () => 'tail --follow missed a new record');
    const fl = auditLines(followed).map((l) => l.id);
    expect(fl).toEqual(Array.from({ length: fl.length }, (_, i) => fl[0]! + i));
    follow.kill('SIGTERM');

    node.proc.kill('SIGTERM');
    expect(await node.exited).toBe(0);

    // Offline, on the data folder and on an exported file.
    const off = await coffer(['audit', 'verify', '--data-dir', dataDir, '--json'], {});
    expect(off.code, off.stderr).toBe(0);
    expect(JSON.parse(off.stdout)).toMatchObject({ ok: true, first_id: 1 });
    const exported = path.join(dataDir, 'exported.jsonl');
    fs.writeFileSync(exported, exp.stdout);
    const offFile = await coffer(['audit', 'verify', '--data-dir', dataDir, '--file', exported, '--json'], {});
    expect(offFile.code, offFile.stderr).toBe(0);
    expect(JSON.parse(offFile.stdout)).toMatchObject({ ok: true, first_id: 4 });

    // An edited line in the file, an edited row in audit.db: verify names it and exits 1.
    const lines = exp.stdout.split('\n');
    lines[10] = lines[10]!.replace('"actor":"bootstrap-admin"', '"actor":"someone-else"');
    fs.writeFileSync(exported, lines.join('\n'));
    const badFile = await coffer(['audit', 'verify', '--data-dir', dataDir, '--file', exported, '--json'], {});
    expect(badFile.code).toBe(1);
    expect(JSON.parse(badFile.stdout).first_break.id).toBe(14);
    const db = new Database(path.join(dataDir, 'audit.db'));
    db.prepare("UPDATE audit_log SET actor = 'someone-else' WHERE id = 7").run();
    db.close();
    const bad = await coffer(['audit', 'verify', '--data-dir', dataDir, '--json'], {});
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout).first_break.id).toBe(7);
    expect(bad.stderr).toMatch(/breaks at record 7/);

    const usage = await coffer(['audit', 'verify', '--file', exported], {});
    expect(usage.code).toBe(2);
    const unknown = await coffer(['audit', 'frob'], cli);
    expect(unknown.code).toBe(2);
  }, 90_000);
});

describe("the server's own logs on stdout", () => {
  const FLOOD = fileURLToPath(new URL('./fixtures/log-flood.mjs', import.meta.url));

  function flood(extra: string[], read: 'never' | 'slowly'): Promise<{ code: number | null; ms: number; report: { maxGap: number; logged: number }; out: string }> {
    const t0 = Date.now();
    const proc = spawn(process.execPath, [FLOOD, ROOT, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(proc);
    let out = '';
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    let timer: NodeJS.Timeout | undefined;
    if (read === 'slowly') {
      // 4 KiB every 20 ms: far less than is written.
      proc.stdout!.pause();
      timer = setInterval(() => {
        const chunk = proc.stdout!.read(4096) as Buffer | null;
        if (chunk) out += chunk.toString();
      }, 20);
    }
    return new Promise((resolve, reject) => {
      const kill = setTimeout(() => {
        proc.kill('SIGKILL');
        reject(new Error(`the process did not exit: its event loop or its exit hung on stdout\n${err}`));
      }, 10_000);
      proc.once('exit', (code) => {
        clearTimeout(kill);
        clearInterval(timer);
        // What is still in the pipe.
        proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        proc.stdout!.once('end', () => {
          try {
            resolve({ code, ms: Date.now() - t0, report: JSON.parse(err.trim().split('\n').at(-1)!), out });
          } catch {
            reject(new Error(`no report: ${err}`));
          }
        });
        proc.stdout!.resume();
      });
    });
  }

  it('never block the event loop or the exit when nobody reads stdout', async () => {
    const r = await flood([], 'never');
    expect(r.code).toBe(0);
    expect(r.report.logged).toBeGreaterThan(10_000);
    expect(r.report.maxGap).toBeLessThan(250);
    expect(r.ms).toBeLessThan(6_000);
  });

  it('stay whole lines beside the audit export\'s lines on a pipe read slowly', async () => {
    const r = await flood(['--with-audit-lines'], 'slowly');
    expect(r.code).toBe(0);
    expect(r.report.maxGap).toBeLessThan(250);
    const lines = auditLines(r.out); // throws on any line that is not whole JSON
    expect(lines.length).toBeGreaterThan(0);
    // The audit lines that got through are in order, none cut.
    const ids = lines.map((l) => l.id);
    expect(ids).toEqual(Array.from({ length: ids.length }, (_, i) => i + 1));
  });
});

describe('AuditExport (in process, from the TypeScript sources)', () => {
  it('exportedThrough() is null without a sink, else the lowest cursor; a file sink delivers, reports lag and resumes from its cursor, cutting a torn last line', async () => {
    const dataDir = tempDir('coffer-export-');
    const logger = pino({ level: 'silent' });
    const none = new AuditExport({ dataDir, config: { stdout: false, file: null, fileMaxBytes: 1 << 20 }, logger });
    expect(none.exportedThrough()).toBeNull();
    await none.close();

    const audit = new AuditLog(dataDir);
    const rec = (i: number) => ({ ts: new Date().toISOString(), node_id: 'n1', request_id: `r${i}`, actor: 'a', client_ip: '127.0.0.1', action: 'secret.read', target: `t/${i}`, version: null, outcome: 'allowed' as const, status: 200 });
    for (let i = 0; i < 30; i++) await audit.record(rec(i));
    const file = path.join(dataDir, 'out', 'audit.jsonl');
    const config = { stdout: false, file, fileMaxBytes: 1 << 20 };
    const registry = new Registry();
    let exp = new AuditExport({ dataDir, config, logger, registry, pollMs: 10 });
    expect(exp.exportedThrough()).toBe(0);
    await waitFor(() => (exp.exportedThrough() === 30 ? true : null), 10_000, () => `exportedThrough ${exp.exportedThrough()}`);
    expect(registry.render()).toMatch(/coffer_audit_export_lag_records\{sink="file"\} 0/);
    expect(registry.render()).toMatch(/coffer_audit_exported_total\{sink="file"\} 30/);
    await exp.close();
    // Stopped, records keep coming; a new export starts from the persisted cursor.
    for (let i = 30; i < 40; i++) await audit.record(rec(i));
    // A crash mid-write left a torn line: it is cut, and that record written again whole.
    fs.appendFileSync(file, '{"coffer_audit":1,"id":31,"ts":"20');
    exp = new AuditExport({ dataDir, config, logger, pollMs: 10 });
    expect(exp.exportedThrough()).toBe(30);
    await waitFor(() => (exp.exportedThrough() === 40 ? true : null), 10_000, () => `exportedThrough ${exp.exportedThrough()}`);
    await exp.close();
    await audit.close();
    const ids = auditLines(fs.readFileSync(file, 'utf8')).map((l) => l.id);
    expect(ids).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  });
});
