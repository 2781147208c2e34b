// GET /v1/auth/self and GET /v1/tokens/{name}, probed as an attacker would on
// a real listening node: no token, a forged, revoked or expired one, or one
// whose role is gone is 401 on /v1/auth/self; neither route ever shows a raw
// token or its digest; without manage_tokens the token route answers the same
// 403 whether or not the name exists; every request is audited.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { expectError } from '../helpers/assert.js';
import { TestCluster } from '../helpers/cluster.js';
import { client, request, type HttpResponse } from '../helpers/http.js';
import { nodesClosedAfterEach, randomToken, type TestNode } from '../helpers/node.js';

const node = nodesClosedAfterEach();

interface AuditRow {
  actor: string;
  action: string;
  target: string | null;
  status: number;
}

async function audit(n: TestNode): Promise<AuditRow[]> {
  const res = await client(n.url, n.token).get('/v1/admin/audit?limit=1000');
  expect(res.status).toBe(200);
  return res.body.records as AuditRow[];
}

/** Neither the raw token nor any spelling of its digest appears in the response. */
function expectNoSecret(res: HttpResponse, token: string): void {
  const digest = createHash('sha256').update(token).digest();
  for (const leak of [token, digest.toString('hex'), digest.toString('base64'), digest.toString('base64url'), 'sha256', 'digest']) {
    expect(res.text).not.toContain(leak);
  }
}

async function mint(n: TestNode, name: string, role: string, ttl_secs?: number): Promise<string> {
  const res = await client(n.url, n.token).post('/v1/tokens', { name, role, ...(ttl_secs === undefined ? {} : { ttl_secs }) });
  expect(res.status).toBe(201);
  return res.body.token as string;
}

const READER_RULES = [
  { paths: ['app/*'], actions: ['list', 'read_metadata'] },
  { paths: ['teams/+/db'], actions: ['list'] },
];

describe('GET /v1/auth/self', () => {
  it("answers any live token with its own metadata and its role's rules, never the digest", async () => {
    const n = await node();
    const admin = client(n.url, n.token);
    expect((await admin.put('/v1/roles/reader', { rules: READER_RULES })).status).toBe(201);
    const token = await mint(n, 'reader-1', 'reader', 3600);

    const self = await client(n.url, token).get('/v1/auth/self');
    expect(self.status).toBe(200);
    expect(Object.keys(self.body).sort()).toEqual(['created_at', 'expires_at', 'name', 'role', 'rules']);
    expect(self.body).toEqual({ name: 'reader-1', role: 'reader', created_at: expect.any(String), expires_at: expect.any(String), rules: READER_RULES });
    expect(Date.parse(self.body.expires_at) - Date.parse(self.body.created_at)).toBe(3600 * 1000);
    expectNoSecret(self, token);

    // The bootstrap admin: no expiry, the built-in admin rules.
    const boot = await admin.get('/v1/auth/self');
    expect(boot.body).toMatchObject({ name: 'bootstrap-admin', role: 'admin', expires_at: null });
    expect(boot.body.rules[0].paths).toEqual(['*']);
    expect(boot.body.rules[0].actions).toContain('admin');
    expectNoSecret(boot, n.token);

    // A role change shows at once.
    expect((await admin.put('/v1/roles/reader', { rules: [{ paths: ['x'], actions: ['list'] }] })).status).toBe(200);
    expect((await client(n.url, token).get('/v1/auth/self')).body.rules).toEqual([{ paths: ['x'], actions: ['list'] }]);
  });

  it('is 401 without a live token: none, malformed, forged, the digest, revoked, expired, role deleted', async () => {
    const n = await node();
    const admin = client(n.url, n.token);
    expect((await admin.put('/v1/roles/temp', { rules: [{ paths: ['a/*'], actions: ['list'] }] })).status).toBe(201);
    const revoked = await mint(n, 'revoked', 'temp');
    expect((await admin.del('/v1/tokens/revoked')).status).toBe(204);
    const orphan = await mint(n, 'orphan', 'temp');
    const short = await mint(n, 'short', 'admin', 1);
    // The short token works until it expires.
    expect((await client(n.url, short).get('/v1/auth/self')).status).toBe(200);
    expect((await admin.del('/v1/roles/temp')).status).toBe(204);

    const headers: (Record<string, string> | undefined)[] = [
      undefined,
      { authorization: '' },
      { authorization: 'Bearer' },
      { authorization: `Basic ${Buffer.from(`x:${n.token}`).toString('base64')}` },
      { authorization: `Bearer ${n.token}x` },
      { authorization: `Bearer ${randomToken()}` },
      { authorization: `Bearer ${createHash('sha256').update(n.token).digest('hex')}` },
      { authorization: `Bearer ${revoked}` },
      { authorization: `Bearer ${orphan}` },
    ];
    for (const h of headers) {
      const res = await request(n.url, 'GET', '/v1/auth/self', h ? { headers: h } : {});
      expectError(res, 401, 'unauthorized');
      expectNoSecret(res, n.token);
    }
    await new Promise((r) => setTimeout(r, 1100));
    expectError(await client(n.url, short).get('/v1/auth/self'), 401, 'unauthorized');
  });

  it('takes no query string and no other method', async () => {
    const n = await node();
    const admin = client(n.url, n.token);
    expectError(await admin.get('/v1/auth/self?include=digest'), 400, 'bad_request');
    expectError(await admin.get('/v1/auth/self?name=other'), 400, 'bad_request');
    expect((await admin.post('/v1/auth/self', {})).status).toBe(404);
    expect((await admin.get('/v1/auth/self/')).status).toBe(404);
    expect((await admin.get('/v1/auth/bootstrap-admin')).status).toBe(404);
  });

  it('writes auth.self audit records naming the caller, also for refusals', async () => {
    const n = await node();
    const admin = client(n.url, n.token);
    expect((await admin.get('/v1/auth/self')).status).toBe(200);
    expect((await client(n.url, randomToken()).get('/v1/auth/self')).status).toBe(401);
    const rows = (await audit(n)).filter((r) => r.action === 'auth.self');
    expect(rows.map((r) => [r.actor, r.target, r.status])).toEqual([
      ['bootstrap-admin', 'bootstrap-admin', 200],
      ['anonymous', null, 401],
    ]);
  });

  it('is not served on the reads-only listener, only on the management one', async () => {
    const n = await node({ env: { VAULT_MGMT_ADDR: '127.0.0.3:0' } });
    expectError(await client(n.url, n.token).get('/v1/auth/self'), 404, 'not_found');
    expect((await client(n.node.mgmtUrl!, n.token).get('/v1/auth/self')).status).toBe(200);
  });
});

describe('GET /v1/tokens/{name}', () => {
  it('shows one token’s metadata to manage_tokens; 404 for an unknown name', async () => {
    const n = await node();
    const admin = client(n.url, n.token);
    const token = await mint(n, 'svc', 'admin', 60);
    const res = await admin.get('/v1/tokens/svc');
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['created_at', 'expires_at', 'name', 'revoked_at', 'role']);
    expect(res.body).toMatchObject({ name: 'svc', role: 'admin', revoked_at: null });
    // The same as the listing says about it.
    const listed = (await admin.get('/v1/tokens')).body.tokens.find((t: { name: string }) => t.name === 'svc');
    expect(res.body).toEqual(listed);
    expectNoSecret(res, token);
    expectNoSecret(await admin.get('/v1/tokens/bootstrap-admin'), n.token);

    expect((await admin.del('/v1/tokens/svc')).status).toBe(204);
    expect((await admin.get('/v1/tokens/svc')).body.revoked_at).toEqual(expect.any(String));
    expectError(await admin.get('/v1/tokens/nobody'), 404, 'not_found');
  });

  it('refuses malformed names with 400, before any lookup', async () => {
    const n = await node();
    const admin = client(n.url, n.token);
    for (const p of ['/v1/tokens/..', '/v1/tokens/.hidden', '/v1/tokens/a%20b', '/v1/tokens/a%2Fb', `/v1/tokens/${'a'.repeat(129)}`, '/v1/tokens/-x']) {
      expectError(await admin.get(p), 400, 'bad_request');
    }
  });

  it('answers a caller without manage_tokens the same 403 whether or not the token exists', async () => {
    const n = await node();
    const admin = client(n.url, n.token);
    expect((await admin.put('/v1/roles/writer', { rules: [{ paths: ['*'], actions: ['create', 'update', 'list', 'read_metadata'] }] })).status).toBe(201);
    const writerToken = await mint(n, 'writer', 'writer');
    const writer = client(n.url, writerToken);
    await mint(n, 'target', 'writer');
    const existing = await writer.get('/v1/tokens/target');
    const missing = await writer.get('/v1/tokens/no-such-token');
    const self = await writer.get('/v1/tokens/writer');
    expectError(existing, 403, 'forbidden');
    expect({ status: missing.status, body: missing.body }).toEqual({ status: existing.status, body: existing.body });
    expect({ status: self.status, body: self.body }).toEqual({ status: existing.status, body: existing.body });
    // HEAD gives nothing away either.
    const heads = await Promise.all(['target', 'no-such-token'].map((t) => request(n.url, 'HEAD', `/v1/tokens/${t}`, { token: writerToken })));
    expect(heads.map((h) => [h.status, h.headers['content-length']])).toEqual([
      [403, heads[0]!.headers['content-length']],
      [403, heads[0]!.headers['content-length']],
    ]);
    // No token: 401 for both.
    expectError(await client(n.url).get('/v1/tokens/target'), 401, 'unauthorized');
    expectError(await client(n.url).get('/v1/tokens/no-such-token'), 401, 'unauthorized');
  });

  it('a manage_tokens role that is not admin may read token metadata, like the listing', async () => {
    const n = await node();
    const admin = client(n.url, n.token);
    expect((await admin.put('/v1/roles/tokens', { rules: [{ paths: [], actions: ['manage_tokens'] }] })).status).toBe(201);
    const ops = client(n.url, await mint(n, 'ops', 'tokens'));
    const res = await ops.get('/v1/tokens/bootstrap-admin');
    expect(res.status).toBe(200);
    expect(res.body.role).toBe('admin');
    expectNoSecret(res, n.token);
  });

  it('writes token.read audit records naming the target', async () => {
    const n = await node();
    const admin = client(n.url, n.token);
    expect((await admin.put('/v1/roles/none', { rules: [{ paths: ['x'], actions: ['list'] }] })).status).toBe(201);
    const none = client(n.url, await mint(n, 'lowly', 'none'));
    await admin.get('/v1/tokens/bootstrap-admin');
    await admin.get('/v1/tokens/ghost');
    await none.get('/v1/tokens/bootstrap-admin');
    const rows = (await audit(n)).filter((r) => r.action === 'token.read');
    expect(rows.map((r) => [r.actor, r.target, r.status])).toEqual([
      ['bootstrap-admin', 'bootstrap-admin', 200],
      ['bootstrap-admin', 'ghost', 404],
      ['lowly', 'bootstrap-admin', 403],
    ]);
  });
});

describe('on a follower', () => {
  it('answers /v1/auth/self and /v1/tokens/{name} for a token minted through the leader a moment ago', async () => {
    const cluster = await TestCluster.start(3);
    try {
      await cluster.waitForBootstrapToken();
      const lead = await cluster.waitForLeader();
      const admin = client(cluster.member(lead).url, cluster.token);
      const followers = cluster.members.filter((m) => m.id !== lead);
      for (let i = 0; i < 5; i++) {
        const minted = await admin.post('/v1/tokens', { name: `fresh-${i}`, role: 'admin' });
        expect(minted.status).toBe(201);
        const answers = await Promise.all(
          followers.flatMap((f) => [client(f.url, minted.body.token).get('/v1/auth/self'), client(f.url, cluster.token).get(`/v1/tokens/fresh-${i}`)]),
        );
        expect(answers.map((a) => a.status)).toEqual(followers.flatMap(() => [200, 200]));
        expect(answers.every((a) => a.body.name === `fresh-${i}`)).toBe(true);
      }
      expectError(await client(followers[0]!.url, randomToken()).get('/v1/auth/self'), 401, 'unauthorized');
    } finally {
      await cluster.stop();
    }
  }, 60_000);
});
