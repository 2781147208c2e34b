// Bearer tokens: unknown, malformed, revoked and expired tokens are 401; the
// raw token is shown once; listings carry metadata only; a revoked
// bootstrap-admin stays revoked across restarts.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { expectError } from '../helpers/assert.js';
import { client, request } from '../helpers/http.js';
import { randomToken, startTestNode, type TestNode } from '../helpers/node.js';

let nodes: TestNode[] = [];
afterEach(async () => {
  await Promise.all(nodes.map((n) => n.close()));
  nodes = [];
});

async function node(opts: Parameters<typeof startTestNode>[0] = {}): Promise<TestNode> {
  const n = await startTestNode(opts);
  nodes.push(n);
  return n;
}

const MGMT = '/v1/metadata/some/secret';

describe('authentication', () => {
  it('refuses missing, malformed and unknown tokens with 401 unauthorized', async () => {
    const n = await node();
    const real = n.token;
    const headers: (Record<string, string> | undefined)[] = [
      undefined,
      { authorization: '' },
      { authorization: 'Bearer' },
      { authorization: 'Bearer ' },
      { authorization: `Basic ${Buffer.from(`x:${real}`).toString('base64')}` },
      { authorization: `bearer${real}` },
      { authorization: `Token ${real}` },
      { authorization: `Bearer ${real} extra` },
      { authorization: `Bearer ${real}x` },
      { authorization: `Bearer ${real.slice(0, -1)}` },
      { authorization: `Bearer ${real.toUpperCase()}` },
      { authorization: 'Bearer cft_' + 'A'.repeat(43) },
      { authorization: `Bearer ${'x'.repeat(600)}` },
      { authorization: `Bearer ${createHash('sha256').update(real).digest('hex')}` }, // the stored digest is not a credential
    ];
    for (const h of headers) {
      const res = await request(n.url, 'GET', MGMT, h ? { headers: h } : {});
      expectError(res, 401, 'unauthorized');
      expect(res.text).not.toContain(real);
      expectError(await request(n.url, 'PUT', '/v1/secrets/some/secret', { body: { value: 'x' }, ...(h ? { headers: h } : {}) }), 401, 'unauthorized');
    }
    // The same header with the real token works.
    expect((await request(n.url, 'GET', '/v1/metadata', { token: real })).status).toBe(200);
    expect((await request(n.url, 'PUT', '/v1/secrets/some/secret', { token: real, body: { value: 'x' } })).status).toBe(201);
  });

  it('a revoked token is refused immediately, with 401 and not 403', async () => {
    const n = await node();
    const admin = client(n.url, n.token);
    const minted = await admin.post('/v1/tokens', { name: 'svc', role: 'admin' });
    const svc = client(n.url, minted.body.token);
    expect((await svc.get('/v1/tokens')).status).toBe(200);
    expect((await admin.del('/v1/tokens/svc')).status).toBe(204);
    expectError(await svc.get('/v1/tokens'), 401, 'unauthorized');
    expectError(await svc.put('/v1/secrets/x', { value: 'y' }), 401, 'unauthorized');
    // Revoking again keeps it revoked (and the first revocation time); unknown names are 404.
    const before = (await admin.get('/v1/tokens')).body.tokens.find((t: { name: string }) => t.name === 'svc');
    expect(before.revoked_at).toEqual(expect.any(String));
    expect((await admin.del('/v1/tokens/svc')).status).toBe(204);
    const after = (await admin.get('/v1/tokens')).body.tokens.find((t: { name: string }) => t.name === 'svc');
    expect(after.revoked_at).toBe(before.revoked_at);
    expectError(await admin.del('/v1/tokens/nobody'), 404, 'not_found');
    expectError(await svc.get('/v1/tokens'), 401, 'unauthorized');
    // The name stays taken: a new token cannot reuse it to come back.
    expectError(await admin.post('/v1/tokens', { name: 'svc', role: 'admin' }), 409, 'conflict');
  });

  it('a token can revoke itself and is then refused', async () => {
    const n = await node();
    const minted = await client(n.url, n.token).post('/v1/tokens', { name: 'self', role: 'admin' });
    const self = client(n.url, minted.body.token);
    expect((await self.del('/v1/tokens/self')).status).toBe(204);
    expectError(await self.get('/v1/tokens'), 401, 'unauthorized');
  });

  it('an expired token is refused', async () => {
    const n = await node();
    const admin = client(n.url, n.token);
    const minted = await admin.post('/v1/tokens', { name: 'short', role: 'admin', ttl_secs: 1 });
    expect(minted.status).toBe(201);
    const expiresAt = Date.parse(minted.body.expires_at);
    expect(expiresAt - Date.now()).toBeLessThanOrEqual(1000);
    const short = client(n.url, minted.body.token);
    expect((await short.get('/v1/tokens')).status).toBe(200);
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 50));
    expectError(await short.get('/v1/tokens'), 401, 'unauthorized');
    expectError(await short.put('/v1/secrets/late', { value: 'x' }), 401, 'unauthorized');
    // It still shows in the listing with its expiry.
    const listed = (await admin.get('/v1/tokens')).body.tokens.find((t: { name: string }) => t.name === 'short');
    expect(listed.expires_at).toBe(minted.body.expires_at);
  });

  it('rejects bad token requests without minting anything', async () => {
    const n = await node();
    const admin = client(n.url, n.token);
    const bodies = [
      { name: 'a', role: 'no-such-role' },
      { name: 'a', role: 'admin', ttl_secs: 0 },
      { name: 'a', role: 'admin', ttl_secs: -5 },
      { name: 'a', role: 'admin', ttl_secs: '60' },
      { name: 'a', role: 'admin', ttl_secs: 1.5 },
      { name: '../a', role: 'admin' },
      { name: 'a', role: 'admin', token: 'cft_chosen-by-the-caller-0000000000000000' },
      { name: 'a', role: 'admin', token_sha256: 'AAAA' },
      { name: 'a' },
    ];
    for (const body of bodies) {
      const res = await admin.post('/v1/tokens', body);
      expectError(res, 400, 'bad_request');
      expect(res.text).not.toContain('cft_');
    }
    expect((await admin.get('/v1/tokens')).body.tokens.map((t: { name: string }) => t.name)).toEqual(['bootstrap-admin']);
  });
});

describe('token secrecy', () => {
  it('shows the token once at creation; listings carry metadata only', async () => {
    const n = await node();
    const admin = client(n.url, n.token);
    const minted = await admin.post('/v1/tokens', { name: 'svc-a', role: 'admin', ttl_secs: 3600 });
    expect(minted.status).toBe(201);
    expect(Object.keys(minted.body).sort()).toEqual(['expires_at', 'name', 'role', 'token']);
    const token = minted.body.token as string;
    expect(token).toMatch(/^cft_[A-Za-z0-9_-]{43}$/);
    const digestHex = createHash('sha256').update(token).digest('hex');
    const digestB64 = createHash('sha256').update(token).digest('base64');

    const list = await admin.get('/v1/tokens');
    expect(list.status).toBe(200);
    for (const t of list.body.tokens) {
      expect(Object.keys(t).sort()).toEqual(['created_at', 'expires_at', 'name', 'revoked_at', 'role']);
    }
    expect(list.body.tokens.map((t: { name: string }) => t.name)).toEqual(['bootstrap-admin', 'svc-a']);
    for (const leak of [token, n.token, digestHex, digestB64, 'sha256', 'digest']) expect(list.text).not.toContain(leak);

    // No route hands it out again (GET /v1/tokens/svc-a answers its metadata only).
    for (const p of ['/v1/tokens/svc-a', '/v1/auth/self', '/v1/tokens?name=svc-a', '/v1/tokens?include=token', '/v1/admin/audit?limit=1000', '/v1/roles']) {
      const res = await admin.get(p);
      expect(res.status).toBe(200);
      for (const leak of [token, digestHex, digestB64]) expect(res.text).not.toContain(leak);
    }
    // A second creation under the same name neither returns the old token nor a new one.
    const again = await admin.post('/v1/tokens', { name: 'svc-a', role: 'admin' });
    expectError(again, 409, 'conflict');
    expect(again.text).not.toContain('cft_');
    // Each creation gets a fresh random token.
    const other = await admin.post('/v1/tokens', { name: 'svc-b', role: 'admin' });
    expect(other.body.token).not.toBe(token);
  });
});

describe('bootstrap-admin', () => {
  it('once revoked, stays revoked after a restart with the same VAULT_BOOTSTRAP_TOKEN (and the log warns)', async () => {
    const first = await startTestNode();
    const boot = client(first.url, first.token);
    const ops = await boot.post('/v1/tokens', { name: 'ops', role: 'admin' });
    expect(ops.status).toBe(201);
    expect(fs.readFileSync(first.logFile, 'utf8')).toContain('created token bootstrap-admin');
    expect((await boot.del('/v1/tokens/bootstrap-admin')).status).toBe(204);
    expectError(await boot.get('/v1/tokens'), 401, 'unauthorized');
    await first.close();

    const second = await node({ dataDir: first.dataDir, masterKey: first.masterKey, bootstrapToken: first.token });
    expectError(await client(second.url, first.token).get('/v1/tokens'), 401, 'unauthorized');
    expectError(await client(second.url, first.token).put('/v1/secrets/x', { value: 'y' }), 401, 'unauthorized');
    const log = fs.readFileSync(second.logFile, 'utf8');
    const warning = log
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .find((l) => /bootstrap-admin was revoked and stays revoked/.test(l.msg));
    expect(warning?.level).toBe(40); // pino "warn"
    expect(log).not.toContain(first.token);

    const listed = await client(second.url, ops.body.token).get('/v1/tokens');
    const b = listed.body.tokens.find((t: { name: string }) => t.name === 'bootstrap-admin');
    expect(b.revoked_at).toEqual(expect.any(String));
    await second.close();
    nodes = nodes.filter((x) => x !== second);

    // A different bootstrap value does not bring the name back either.
    const other = randomToken();
    const third = await node({ dataDir: first.dataDir, masterKey: first.masterKey, bootstrapToken: other });
    expectError(await client(third.url, other).get('/v1/tokens'), 401, 'unauthorized');
    expectError(await client(third.url, first.token).get('/v1/tokens'), 401, 'unauthorized');
    expect(fs.readFileSync(third.logFile, 'utf8')).not.toContain(other);
    expect((await client(third.url, ops.body.token).get('/v1/tokens')).status).toBe(200);
  });

  it('a restart with the same value keeps the live bootstrap token working, without duplicates', async () => {
    const first = await startTestNode();
    await first.close();
    const again = await node({ dataDir: first.dataDir, masterKey: first.masterKey, bootstrapToken: first.token });
    const list = await client(again.url, first.token).get('/v1/tokens');
    expect(list.status).toBe(200);
    expect(list.body.tokens.map((t: { name: string }) => t.name)).toEqual(['bootstrap-admin']);
  });
});
