// Secrets over a really listening node with real SQLite files.
import { describe, expect, it } from 'vitest';
import { client } from '../helpers/http.js';
import { nodesClosedAfterEach, startTestNode } from '../helpers/node.js';

const node = nodesClosedAfterEach();

describe('secret round trip', () => {
  it('writes versions, reads current and old versions, and reports metadata', async () => {
    const n = await node();
    const c = client(n.url, n.token);
    const first = await c.put('/v1/secrets/app/db/password', { value: 'one' });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ name: 'app/db/password', version: 1 });
    const second = await c.put('/v1/secrets/app/db/password', { value: 'two ✓' });
    expect(second.status).toBe(200);
    expect(second.body.version).toBe(2);

    const cur = await c.get('/v1/secrets/app/db/password');
    expect(cur.status).toBe(200);
    expect(cur.body).toMatchObject({ name: 'app/db/password', version: 2, value: 'two ✓' });
    const old = await c.get('/v1/secrets/app/db/password?version=1');
    expect(old.body).toMatchObject({ version: 1, value: 'one' });
    expect((await c.get('/v1/secrets/app/db/password?version=3')).status).toBe(404);
    expect((await c.get('/v1/secrets/app/db/password?consistency=stale')).body.value).toBe('two ✓');

    const meta = await c.get('/v1/metadata/app/db/password');
    expect(meta.status).toBe(200);
    expect(meta.body.current_version).toBe(2);
    expect(meta.body.versions.map((v: { version: number }) => v.version)).toEqual([1, 2]);
    expect(meta.body.versions[0]).toMatchObject({ created_by: 'bootstrap-admin', wrapped_rotation_at: null });
    expect(meta.body.versions[0].kms_key_id).toMatch(/^local:/);
    expect(JSON.stringify(meta.body)).not.toContain('one');
  });

  it('enforces check-and-set', async () => {
    const n = await node();
    const c = client(n.url, n.token);
    expect((await c.put('/v1/secrets/cas', { value: 'a', cas: 1 })).body.error.code).toBe('cas_mismatch');
    expect((await c.put('/v1/secrets/cas', { value: 'a', cas: 0 })).status).toBe(201);
    const again = await c.put('/v1/secrets/cas', { value: 'b', cas: 0 });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('cas_mismatch');
    expect((await c.put('/v1/secrets/cas', { value: 'b', cas: 1 })).body.version).toBe(2);
    expect((await c.get('/v1/secrets/cas')).body.value).toBe('b');
  });

  it('gives every concurrent write its own version', async () => {
    const n = await node();
    const c = client(n.url, n.token);
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => c.put('/v1/secrets/race', { value: `v${i}` })));
    expect(results.every((r) => r.status === 200 || r.status === 201)).toBe(true);
    expect(results.map((r) => r.body.version).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    for (const r of results) {
      const read = await c.get(`/v1/secrets/race?version=${r.body.version}`);
      expect(read.body.value).toBe(`v${results.indexOf(r)}`);
    }
  });

  it('rotates to a server-generated value of the asked length and charset', async () => {
    const n = await node();
    const c = client(n.url, n.token);
    expect((await c.post('/v1/secrets/rot:rotate')).status).toBe(404);
    await c.put('/v1/secrets/rot', { value: 'initial' });
    const r1 = await c.post('/v1/secrets/rot:rotate');
    expect(r1.status).toBe(200);
    expect(r1.body.version).toBe(2);
    expect(r1.body.value).toMatch(/^[A-Za-z0-9]{32}$/);
    const r2 = await c.post('/v1/secrets/rot:rotate', { length: 64, charset: 'hex' });
    expect(r2.body.value).toMatch(/^[0-9a-f]{64}$/);
    expect((await c.get('/v1/secrets/rot')).body.value).toBe(r2.body.value);
    expect((await c.post('/v1/secrets/rot:rotate', { length: 4 })).body.error.code).toBe('bad_request');
  });

  it('deletes every version', async () => {
    const n = await node();
    const c = client(n.url, n.token);
    await c.put('/v1/secrets/gone', { value: 'x' });
    await c.put('/v1/secrets/gone', { value: 'y' });
    expect((await c.del('/v1/secrets/gone')).status).toBe(204);
    expect((await c.get('/v1/secrets/gone')).status).toBe(404);
    expect((await c.get('/v1/secrets/gone?version=1')).status).toBe(404);
    expect((await c.get('/v1/metadata/gone')).status).toBe(404);
    expect((await c.del('/v1/secrets/gone')).status).toBe(404);
    const rows = n.node.api ? (await import('better-sqlite3')).default : null;
    const db = new rows!(`${n.dataDir}/state.db`, { readonly: true });
    expect(db.prepare("SELECT count(*) AS c FROM secret_versions WHERE name = 'gone'").get()).toEqual({ c: 0 });
    db.close();
    // A deleted name starts again at version 1.
    expect((await c.put('/v1/secrets/gone', { value: 'z' })).body.version).toBe(1);
  });

  it('lists names by prefix with a cursor', async () => {
    const n = await node();
    const c = client(n.url, n.token);
    for (const name of ['a/1', 'a/2', 'a/3', 'b/1', 'a/4']) await c.put(`/v1/secrets/${name}`, { value: 'v' });
    const p1 = await c.get('/v1/metadata?prefix=a/&limit=2');
    expect(p1.body.names).toEqual(['a/1', 'a/2']);
    expect(p1.body.next_cursor).toBeTruthy();
    const p2 = await c.get(`/v1/metadata?prefix=a/&limit=2&cursor=${p1.body.next_cursor}`);
    expect(p2.body.names).toEqual(['a/3', 'a/4']);
    expect(p2.body.next_cursor).toBeNull();
    expect((await c.get('/v1/metadata')).body.names).toEqual(['a/1', 'a/2', 'a/3', 'a/4', 'b/1']);
  });
});

describe('restart', () => {
  it('keeps everything with the same master key', async () => {
    const n = await startTestNode();
    const c = client(n.url, n.token);
    await c.put('/v1/secrets/keep', { value: 'kept-1' });
    await c.put('/v1/secrets/keep', { value: 'kept-2' });
    await n.close();
    const again = await node({ dataDir: n.dataDir, masterKey: n.masterKey, bootstrapToken: n.token });
    const c2 = client(again.url, again.token);
    expect((await c2.get('/v1/secrets/keep')).body).toMatchObject({ version: 2, value: 'kept-2' });
    expect((await c2.get('/v1/secrets/keep?version=1')).body.value).toBe('kept-1');
    expect((await c2.put('/v1/secrets/keep', { value: 'kept-3' })).body.version).toBe(3);
  });

  it('fails reads with integrity_error under a different master key, never garbage', async () => {
    const n = await startTestNode();
    const c = client(n.url, n.token);
    await c.put('/v1/secrets/locked', { value: 'secret-under-key-a' });
    await n.close();
    const other = await node({ dataDir: n.dataDir, bootstrapToken: n.token });
    const res = await client(other.url).get('/v1/secrets/locked');
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: { code: 'integrity_error', message: expect.any(String) } });
    expect(res.text).not.toContain('secret-under-key-a');
  });
});
