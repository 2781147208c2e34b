// Issue 11, finding 3: a full data volume wedged the node until a manual
// restart, committed a write it had answered 503 audit_unavailable (with no
// audit record), and blinded monitoring (/v1/health and /metrics answered 503
// too). Run for real on a small tmpfs with a real `coffer server` process, so
// a full volume is a full volume and an exit is an exit.
//
// Needs root to mount the tmpfs (CI runs as root); without it the test fails
// and says so rather than skipping.
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { TestCluster } from '../helpers/cluster.js';
import { client, request, type HttpResponse } from '../helpers/http.js';
import { nodeEnv, randomMasterKey, randomToken, spawnNode, tempDir, type SpawnedNode } from '../helpers/node.js';
import { until } from '../helpers/wait.js';

const MiB = 1024 * 1024;
const TMPFS_MIB = 24;

const mounts: string[] = [];
let node: SpawnedNode | null = null;
let cluster: TestCluster | null = null;

afterEach(async () => {
  await node?.stop('SIGKILL');
  node = null;
  await cluster?.stop();
  cluster = null;
});

afterAll(() => {
  for (const dir of mounts.splice(0)) {
    try {
      execFileSync('umount', [dir]);
    } catch {
      execFileSync('umount', ['-l', dir]); // something still held a file open: detach it anyway
    }
    fs.rmdirSync(dir);
  }
});

/** A fresh tmpfs of TMPFS_MIB; returns a data folder on it. */
function tmpfsDataDir(): { mnt: string; dataDir: string } {
  const mnt = tempDir('coffer-tmpfs-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_MIB}m,mode=0700`, 'tmpfs', mnt], { stdio: 'pipe' });
  } catch (err) {
    fs.rmdirSync(mnt);
    const why = (err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message;
    throw new Error(`this test mounts a ${TMPFS_MIB} MiB tmpfs and needs root (CI runs as root): mount failed: ${why}`);
  }
  mounts.push(mnt);
  const dataDir = path.join(mnt, 'data');
  fs.mkdirSync(dataDir, { mode: 0o700 });
  return { mnt, dataDir };
}

function available(dir: string): number {
  const s = fs.statfsSync(dir);
  return s.bavail * s.bsize;
}

/** Grows `file` by `bytes` of real (non-sparse) data. */
function addBallast(file: string, bytes: number): void {
  const fd = fs.openSync(file, 'a');
  try {
    const chunk = Buffer.alloc(MiB, 0xab);
    for (let left = bytes; left > 0; left -= chunk.length) fs.writeSync(fd, chunk, 0, Math.min(chunk.length, left));
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes `file` until the volume has not one byte left. */
function fillCompletely(file: string): void {
  const fd = fs.openSync(file, 'a');
  try {
    for (const size of [MiB, 64 * 1024, 4096, 1]) {
      const chunk = Buffer.alloc(size, 0xcd);
      for (;;) {
        try {
          if (fs.writeSync(fd, chunk) < size) break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}


function expectCode(res: HttpResponse, status: number, code: string): void {
  expect(res.status, res.text).toBe(status);
  expect(res.body?.error?.code, res.text).toBe(code);
}

interface AuditRow {
  action: string;
  target: string | null;
  version: number | null;
  status: number;
}

function auditRows(dataDir: string): AuditRow[] {
  const db = new Database(path.join(dataDir, 'audit.db'), { readonly: true });
  try {
    return db.prepare('SELECT action, target, version, status FROM audit_log ORDER BY id').all() as AuditRow[];
  } finally {
    db.close();
  }
}

describe('a data volume below VAULT_MIN_FREE_BYTES', () => {
  it('refuses writes with 507 before proposing, keeps reads, health, ready and metrics at 200, and resumes writes by itself', async () => {
    const { mnt, dataDir } = tmpfsDataDir();
    const token = randomToken();
    // The floor sits a bit below the volume: a fresh node is well above it.
    const env = { ...nodeEnv({ dataDir, masterKey: randomMasterKey(), bootstrapToken: token }), VAULT_MIN_FREE_BYTES: String(16 * MiB) };
    node = await spawnNode(env);
    const admin = client(node.url, token);
    expect((await admin.put('/v1/secrets/app/kept', { value: 'before the volume filled' })).status).toBe(201);
    expect(available(mnt)).toBeGreaterThan(16 * MiB);

    // Another tenant of the volume fills it to under the floor (but not to the brim: reads are audited).
    const ballast = path.join(mnt, 'ballast');
    addBallast(ballast, available(mnt) - 10 * MiB);
    expect(available(mnt)).toBeLessThan(16 * MiB);
    await new Promise((r) => setTimeout(r, 300)); // older than the cached reading

    // Every kind of change is refused before anything is proposed.
    expectCode(await admin.put('/v1/secrets/app/refused', { value: 'never stored' }), 507, 'insufficient_storage');
    expectCode(await admin.put('/v1/secrets/app/kept', { value: 'never stored either' }), 507, 'insufficient_storage');
    expectCode(await admin.post('/v1/secrets/app/kept:rotate'), 507, 'insufficient_storage');
    expectCode(await admin.del('/v1/secrets/app/kept'), 507, 'insufficient_storage');
    expectCode(await admin.post('/v1/tokens', { name: 'refused-token', role: 'admin' }), 507, 'insufficient_storage');
    expectCode(await admin.put('/v1/roles/refused-role', { rules: [] }), 507, 'insufficient_storage');
    const refusal = await admin.put('/v1/secrets/app/refused', { value: 'never stored' });
    expect(refusal.body.error.message).toMatch(/less than 16 MiB free on the data volume/);
    expect(refusal.text).not.toContain(mnt); // no path in the answer

    // Reads and the monitoring surface go on, all 200.
    const read = await client(node.url).get('/v1/secrets/app/kept');
    expect(read.status).toBe(200);
    expect(read.body.value).toBe('before the volume filled');
    expect((await admin.get('/v1/metadata/app/kept')).status).toBe(200);
    const health = await request(node.url, 'GET', '/v1/health');
    expect(health.status).toBe(200);
    expect(health.body.status).toBe('ok');
    expect((await request(node.url, 'GET', '/v1/ready')).status).toBe(200);
    const metrics = await request(node.url, 'GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.text).toMatch(/^coffer_writes_refused_total\{reason="below_floor"\} 7$/m);
    expect(metrics.text).toMatch(new RegExp(`^coffer_data_dir_min_free_bytes ${16 * MiB}$`, 'm'));
    const free = Number(/^coffer_data_dir_available_bytes (\d+)$/m.exec(metrics.text)?.[1]);
    expect(free).toBeLessThan(16 * MiB);
    // Each refusal has its audit record, as an error with 507.
    const audit = await admin.get('/v1/admin/audit?limit=1000');
    expect((audit.body.records as AuditRow[]).filter((r) => r.status === 507)).toHaveLength(7);

    // A restart (volume still short) shows that nothing refused was ever committed.
    expect(await node.stop()).toBe(0);
    node = await spawnNode(env);
    const again = client(node.url, token);
    expect((await again.get('/v1/metadata/app/refused')).status).toBe(404);
    const meta = await again.get('/v1/metadata/app/kept');
    expect(meta.body.current_version).toBe(1);
    expect((await again.get('/v1/tokens')).body.tokens.map((t: { name: string }) => t.name)).not.toContain('refused-token');
    expect((await again.get('/v1/roles/refused-role')).status).toBe(404);
    expectCode(await again.put('/v1/secrets/app/refused', { value: 'still refused' }), 507, 'insufficient_storage');

    // The tenant frees its space: writes resume by themselves, no restart.
    fs.rmSync(ballast);
    const resumed = await until('writes to resume', async () => {
      const r = await again.put('/v1/secrets/app/refused', { value: 'now stored' });
      return r.status === 201 ? r : null;
    }, 5_000);
    expect(resumed.body.version).toBe(1);
    expect((await again.put('/v1/secrets/app/kept', { value: 'v2' })).status).toBe(200);
  });

  it('refuses with 507 a write forwarded by a follower to a leader below the floor', async () => {
    cluster = await TestCluster.start(3);
    const lead = await cluster.waitForLeader();
    // One follower restarts with a floor no volume can meet, then takes over leadership.
    const low = cluster.members.find((m) => m.id !== lead)!;
    await cluster.stopMember(low.id);
    low.proc = await spawnNode({ ...cluster.env(low), VAULT_MIN_FREE_BYTES: String(Number.MAX_SAFE_INTEGER) });
    await cluster.waitForLeader();
    const moved = await until('leadership to move to the low node', async () => {
      const r = await client(cluster!.member(lead).url, cluster!.token).post('/v1/admin/cluster/transfer-leadership', { to: low.id });
      return r.status === 200 && r.body.leader_id === low.id ? r : null;
    });
    expect(moved.body.leader_id).toBe(low.id);
    await cluster.waitForLeader();

    const follower = cluster.members.find((m) => m.id !== low.id)!;
    const viaFollower = await client(follower.url, cluster.token).put('/v1/secrets/fwd/x', { value: 'forwarded' });
    expectCode(viaFollower, 507, 'insufficient_storage');
    expect(viaFollower.body.error.message).toMatch(/the leader refused the write/);
    expectCode(await client(low.url, cluster.token).put('/v1/secrets/fwd/x', { value: 'direct' }), 507, 'insufficient_storage');
    // Reads still work everywhere, and nothing was committed.
    for (const m of cluster.members) expect((await client(m.url, cluster.token).get('/v1/metadata/fwd/x')).status, m.id).toBe(404);

    // Leadership back on a node with room: writes go through again from the same follower.
    await client(low.url, cluster.token).post('/v1/admin/cluster/transfer-leadership', { to: follower.id });
    await until('a write through the follower', async () => {
      const r = await client(follower.url, cluster!.token).put('/v1/secrets/fwd/x', { value: 'forwarded' });
      return r.status === 201 ? r : null;
    });
  });
});

describe('a data volume filled to the last byte (VAULT_MIN_FREE_BYTES=0)', () => {
  it('never answers an error for a committed write, audits every committed write, keeps monitoring up, and recovers', async () => {
    const { mnt, dataDir } = tmpfsDataDir();
    const token = randomToken();
    const env = { ...nodeEnv({ dataDir, masterKey: randomMasterKey(), bootstrapToken: token }), VAULT_MIN_FREE_BYTES: '0' };
    node = await spawnNode(env);
    let admin = client(node.url, token);
    for (let i = 0; i < 3; i++) expect((await admin.put(`/v1/secrets/base/${i}`, { value: `b${i}` })).status).toBe(201);

    // Another tenant fills the volume to the last byte and keeps it there: whatever the node frees
    // (SQLite drops a WAL when its last connection closes) is taken again within milliseconds.
    const ballast = path.join(mnt, 'ballast');
    fillCompletely(ballast);
    expect(available(mnt)).toBe(0);
    const topUp = setInterval(() => fillCompletely(ballast), 5);

    // Writes while the volume is full, each big enough to need new pages in the Raft log and state.db.
    // Each ends with an answer, or with none (a timeout or a dropped connection: outcome unknown).
    type Outcome = { name: string; res: HttpResponse | null };
    const names = Array.from({ length: 8 }, (_, i) => `full/w${i}`);
    const writes: Promise<Outcome>[] = names.map((name, i) =>
      new Promise<void>((r) => setTimeout(r, i * 40)).then(() =>
        admin.put(`/v1/secrets/${name}`, { value: `${i}`.repeat(32 * 1024) }, { timeoutMs: 20_000 }).then(
          (res) => ({ name, res }),
          () => ({ name, res: null }),
        ),
      ),
    );

    try {
      // Meanwhile the monitoring surface keeps answering (it is not audited), as long as the process lives.
      await new Promise((r) => setTimeout(r, 1_500));
      if (node.proc.exitCode === null) {
        const health = await request(node.url, 'GET', '/v1/health');
        expect(health.status, health.text).toBe(200);
        const ready = await request(node.url, 'GET', '/v1/ready');
        expect([200, 503]).toContain(ready.status);
        const metrics = await request(node.url, 'GET', '/metrics');
        expect(metrics.status, metrics.text).toBe(200);
        if (/data volume full/.test(String(health.body.problem))) {
          // Stalled on the full volume: not ready, says why, and a new write is refused before it is proposed.
          expect(health.body.status).toBe('degraded');
          expect(ready.status).toBe(503);
          expect(ready.body.problem).toMatch(/data volume full: .* waits for space/);
          expect(metrics.text).toMatch(/^coffer_storage_waiting_for_space 1$/m);
          const late = await admin.put('/v1/secrets/full/late', { value: 'late' }, { timeoutMs: 5_000 });
          expect([503, 507], late.text).toContain(late.status);
          names.push('full/late');
          writes.push(Promise.resolve({ name: 'full/late', res: late }));
        }
      }
      // The full volume was really met, and said so (or the node exited on it).
      expect(node.output()).toMatch(/data volume full: .* waits for space|storage fault/);
    } finally {
      clearInterval(topUp);
    }

    // The space comes back.
    fs.rmSync(ballast);
    if (node.proc.exitCode === null) {
      // Recovers by itself: ready again and taking writes, without a restart.
      await until('the node to be ready again', async () => ((await request(node!.url, 'GET', '/v1/ready')).status === 200 ? true : null), 10_000);
      expect((await admin.put('/v1/secrets/full/after', { value: 'after' })).status).toBe(201);
    } else {
      // Or it exited (non-zero, saying why), and starting it again works.
      expect(node.proc.exitCode).not.toBe(0);
      expect(node.output()).toMatch(/storage fault/);
      node = await spawnNode(env);
      admin = client(node.url, token);
    }
    const outcomes = await Promise.all(writes);

    // Restart, then compare every answer with what was committed.
    await node.stop();
    node = await spawnNode(env);
    admin = client(node.url, token);
    const rows = auditRows(dataDir);
    let committed = 0;
    for (const { name, res } of outcomes) {
      const meta = await admin.get(`/v1/metadata/${name}`);
      const exists = meta.status === 200;
      if (res !== null && res.status >= 400) expect(exists, `${name} was answered ${res.status} ${res.text} but exists`).toBe(false);
      if (res !== null && res.status < 300) expect(exists, `${name} was answered ${res.status} but is missing`).toBe(true);
      if (exists) {
        committed++;
        // A committed write has its audit record: allowed, with the version it wrote.
        expect(rows.some((r) => r.action === 'secret.write' && r.target === name && r.version === 1 && r.status === 201), `${name} has no audit record`).toBe(true);
      }
    }
    // The writes that were in flight when the volume filled were kept, not lost or failed.
    expect(committed).toBeGreaterThan(0);
    // Writes go on after the restart too.
    expect((await admin.put('/v1/secrets/full/final', { value: 'final' })).status).toBe(201);
  });
});
