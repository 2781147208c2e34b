// Issue 11, finding 13: state.db and audit.db were created 0644 and a data
// folder from before was never tightened, so any local user could copy the
// ciphertext, wrapped DEKs, token hashes and the audit trail. Every file the
// node keeps must be 0600 and every folder 0700, however it got there.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { client } from '../helpers/http.js';
import { nodeEnv, randomMasterKey, randomToken, spawnNode, startTestNode, tempDir, type SpawnedNode, type TestNode } from '../helpers/node.js';

let spawned: SpawnedNode | null = null;
let inProcess: TestNode | null = null;
afterEach(async () => {
  await spawned?.stop('SIGKILL');
  spawned = null;
  await inProcess?.close();
  inProcess = null;
});

/** Every path below `dir` (itself included) with its permission bits. */
function modes(dir: string): Map<string, { mode: number; dir: boolean }> {
  const out = new Map<string, { mode: number; dir: boolean }>();
  const visit = (p: string) => {
    const st = fs.lstatSync(p);
    out.set(path.relative(dir, p) || '.', { mode: st.mode & 0o7777, dir: st.isDirectory() });
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) visit(path.join(p, e));
  };
  visit(dir);
  return out;
}

function expectPrivate(dir: string): Map<string, { mode: number; dir: boolean }> {
  const all = modes(dir);
  for (const [p, m] of all) expect(m.mode.toString(8), p).toBe(m.dir ? '700' : '600');
  return all;
}

/** Writes `n` secrets (enough to make a small snapshot threshold compact the log). */
async function writeSome(url: string, token: string, prefix: string, n: number): Promise<void> {
  const c = client(url, token);
  for (let i = 0; i < n; i++) expect((await c.put(`/v1/secrets/${prefix}/${i}`, { value: `v${i}` })).status).toBe(201);
}

describe('data folder permissions', () => {
  it('tightens a 0755 folder with a 0644 state.db (and everything else) on start, and keeps new files private', async () => {
    const dataDir = tempDir();
    const token = randomToken();
    const env = { ...nodeEnv({ dataDir, masterKey: randomMasterKey(), bootstrapToken: token }), COFFER_RAFT_SNAPSHOT_ENTRIES: '5' };
    spawned = await spawnNode(env);
    await writeSome(spawned.url, token, 'before', 3);
    expect(await spawned.stop()).toBe(0);
    spawned = null;

    // As an earlier release, a restore or a careless copy left it: everything readable by all.
    const before = modes(dataDir);
    expect([...before.keys()]).toEqual(expect.arrayContaining(['state.db', 'audit.db', 'raft', 'raft/log', 'raft/snapshots']));
    for (const [p, m] of before) fs.chmodSync(path.join(dataDir, p), m.dir ? 0o755 : 0o644);
    expect(fs.statSync(path.join(dataDir, 'state.db')).mode & 0o777).toBe(0o644);

    spawned = await spawnNode(env);
    expectPrivate(dataDir);
    // New files as the node runs: SQLite's -wal/-shm, the log rewritten at compaction, audit records.
    await writeSome(spawned.url, token, 'after', 12);
    const all = expectPrivate(dataDir);
    for (const f of ['state.db-wal', 'state.db-shm', 'audit.db-wal', 'audit.db-shm']) expect(all.has(f), f).toBe(true);
    expect(await spawned.stop()).toBe(0);
    spawned = null;
    expectPrivate(dataDir);
  });

  it('creates state.db, audit.db and their -wal/-shm files 0600 even for a node started in-process under umask 022', async () => {
    const before = process.umask(0o022);
    try {
      const dataDir = path.join(tempDir(), 'fresh');
      inProcess = await startTestNode({ dataDir: (fs.mkdirSync(dataDir, { mode: 0o755 }), dataDir) });
      await writeSome(inProcess.url, inProcess.token, 'inproc', 3);
      const all = expectPrivate(dataDir);
      for (const f of ['state.db', 'state.db-wal', 'state.db-shm', 'audit.db', 'audit.db-wal', 'audit.db-shm', 'raft/log']) expect(all.has(f), f).toBe(true);
    } finally {
      process.umask(before);
    }
  });

  it('leaves a shared sticky folder such as /tmp alone instead of locking it down', async () => {
    // The node must not chmod a folder others rely on; it warns and keeps its own files private.
    const shared = tempDir();
    fs.chmodSync(shared, 0o1777);
    const neighbour = path.join(shared, 'someone-elses.txt');
    fs.writeFileSync(neighbour, 'x', { mode: 0o644 });
    fs.chmodSync(neighbour, 0o644);
    const before = process.umask(0o022);
    try {
      inProcess = await startTestNode({ dataDir: shared });
      expect(fs.statSync(shared).mode & 0o7777).toBe(0o1777);
      expect(fs.statSync(neighbour).mode & 0o777).toBe(0o644);
      for (const f of ['state.db', 'audit.db']) expect(fs.statSync(path.join(shared, f)).mode & 0o777, f).toBe(0o600);
      expect(fs.readFileSync(inProcess.logFile, 'utf8')).toMatch(/VAULT_DATA_DIR is a shared \(sticky\) folder/);
    } finally {
      process.umask(before);
    }
  });
});
