// The Ready loop applies committed entries while the Ready that records the
// new commit index is still being written (ready-loop.ts). A crash in between
// leaves state.db ahead of the commit index in the Raft log. This is that
// crash's aftermath, made on disk: a node whose log says commit 1 while
// state.db has applied every write. It must start, serve what it applied,
// and keep writing.
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RECORD_HARD_STATE, Wal } from '../../server/raft/wal.js';
import { request } from '../helpers/http.js';
import { startTestNode, tempDir, randomMasterKey, randomToken, type TestNode } from '../helpers/node.js';
import { withStateDb } from '../helpers/state-db.js';

let node: TestNode | null = null;
afterEach(async () => {
  await node?.close();
  node = null;
});

describe('state.db applied ahead of the logged commit index', () => {
  it('starts, serves every applied write and takes new ones', async () => {
    const opts = { dataDir: tempDir(), masterKey: randomMasterKey(), bootstrapToken: randomToken() };
    node = await startTestNode(opts);
    for (let i = 0; i < 5; i++) expect((await request(node.url, 'PUT', `/v1/secrets/ahead/k${i}`, { token: node.token, body: { value: `v${i}` } })).status).toBe(201);
    await node.close();
    node = null;

    const applied = appliedIndex(opts.dataDir);
    expect(applied).toBeGreaterThan(5);
    // The last hard state in the log wins: claim commit 1, as if every later commit record was lost.
    const { wal, entries } = Wal.open(path.join(opts.dataDir, 'raft', 'log'));
    const last = entries.filter((e) => e.kind === RECORD_HARD_STATE).at(-1)!;
    const hs = JSON.parse(Buffer.from(last.data).toString());
    expect(hs.commit).toBeGreaterThanOrEqual(applied);
    await wal.append([{ index: 0, term: last.term, kind: RECORD_HARD_STATE, data: new Uint8Array(Buffer.from(JSON.stringify({ ...hs, commit: 1 }))) }]);
    wal.close();

    node = await startTestNode(opts);
    const url = node.url;
    await expect.poll(async () => (await request(url, 'GET', '/v1/ready')).status, { timeout: 10_000 }).toBe(200);
    for (let i = 0; i < 5; i++) expect((await request(url, 'GET', `/v1/secrets/ahead/k${i}`, { token: node.token })).body.value).toBe(`v${i}`);
    expect((await request(url, 'PUT', '/v1/secrets/ahead/k0', { token: node.token, body: { value: 'again' } })).status).toBe(200);
    expect((await request(url, 'GET', '/v1/secrets/ahead/k0', { token: node.token })).body).toMatchObject({ value: 'again', version: 2 });
    expect(appliedIndex(opts.dataDir)).toBeGreaterThan(applied);
  });
});

function appliedIndex(dataDir: string): number {
  return withStateDb(dataDir, (db) => (db.prepare('SELECT log_index FROM applied WHERE id = 1').get() as { log_index: number }).log_index);
}
