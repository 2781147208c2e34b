// The audit trail: every request leaves exactly one record, before its
// response, naming actor, client IP, action, target, version, outcome, status
// and the request id the client saw; never a value or a token. When the
// record cannot be written the request fails closed with 503.
import Database from 'better-sqlite3';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { expectError } from '../helpers/assert.js';
import { client, request, type HttpResponse, type RequestOptions } from '../helpers/http.js';
import { startTestNode, type TestNode } from '../helpers/node.js';

let nodes: TestNode[] = [];
afterEach(async () => {
  await Promise.all(nodes.map((n) => n.close()));
  nodes = [];
});

async function node(env: Record<string, string> = {}): Promise<TestNode> {
  const n = await startTestNode({ env: { VAULT_MAX_VALUE_BYTES: '1024', ...env } });
  nodes.push(n);
  return n;
}

interface Expected {
  actor: string;
  client_ip: string;
  action: string;
  target: string | null;
  version: number | null;
  outcome: 'allowed' | 'denied' | 'error';
  status: number;
}

interface AuditRow extends Expected {
  id: number;
  ts: string;
  node_id: string;
  request_id: string;
}

async function auditSince(n: TestNode, since: number): Promise<{ res: HttpResponse; records: AuditRow[] }> {
  const res = await client(n.url, n.token).get(`/v1/admin/audit?since=${since}&limit=1000`);
  expect(res.status).toBe(200);
  expect(res.body.next_since).toBeNull();
  return { res, records: res.body.records as AuditRow[] };
}

describe('audit records', () => {
  it('N mixed requests leave exactly N records with the right fields, and no values or tokens', async () => {
    const n = await node();
    const boot = n.token;
    const admin = client(n.url, boot);
    expect((await admin.put('/v1/roles/app-writer', { rules: [{ paths: ['app/*'], actions: ['create', 'update'] }] })).status).toBe(201);
    const writer = (await admin.post('/v1/tokens', { name: 'writer', role: 'app-writer' })).body.token as string;
    const value1 = 'audit-value-one-must-not-appear';

    // Baseline: the last record so far. The baseline query's own record comes right after it.
    const base = await admin.get('/v1/admin/audit?limit=1000');
    const baseline = Math.max(0, ...(base.body.records as AuditRow[]).map((r) => r.id));
    const steps: { res: HttpResponse; want: Expected; label: string }[] = [];
    steps.push({
      label: 'baseline audit query',
      res: base,
      want: { actor: 'bootstrap-admin', client_ip: '127.0.0.1', action: 'admin.audit.read', target: null, version: null, outcome: 'allowed', status: 200 },
    });
    const A = 'bootstrap-admin';
    const anon = 'anonymous';
    const step = async (label: string, method: string, p: string, opts: RequestOptions, want: Partial<Expected> & Pick<Expected, 'actor' | 'action' | 'status'>) => {
      const res = await request(n.url, method, p, opts);
      const status = want.status;
      const outcome = status < 400 ? 'allowed' : status === 401 || status === 403 ? 'denied' : 'error';
      expect(res.status, `${label}: ${res.text}`).toBe(status);
      steps.push({ label, res, want: { client_ip: '127.0.0.1', target: null, version: null, outcome, ...want } });
      return res;
    };
    const tok = (t: string) => ({ token: t });

    await step('create secret', 'PUT', '/v1/secrets/aud/s', { ...tok(boot), body: { value: value1 } }, { actor: A, action: 'secret.write', target: 'aud/s', version: 1, status: 201 });
    await step('anonymous allowlisted read', 'GET', '/v1/secrets/aud/s', {}, { actor: anon, action: 'secret.read', target: 'aud/s', version: 1, status: 200 });
    await step('read with a token names it', 'GET', '/v1/secrets/aud/s?version=1', tok(boot), { actor: A, action: 'secret.read', target: 'aud/s', version: 1, status: 200 });
    await step('read from outside the allowlist', 'GET', '/v1/secrets/aud/s', { localAddress: '127.0.0.2' }, { actor: anon, client_ip: '127.0.0.2', action: 'secret.read', target: 'aud/s', status: 403 });
    await step('spoofed XFF is not the recorded address', 'GET', '/v1/secrets/aud/s', { localAddress: '127.0.0.2', headers: { 'x-forwarded-for': '127.0.0.1' } }, { actor: anon, client_ip: '127.0.0.2', action: 'secret.read', target: 'aud/s', status: 403 });
    await step('read of a missing secret', 'GET', '/v1/secrets/aud/missing', {}, { actor: anon, action: 'secret.read', target: 'aud/missing', status: 404 });
    await step('read of a missing version', 'GET', '/v1/secrets/aud/s?version=7', {}, { actor: anon, action: 'secret.read', target: 'aud/s', version: 7, status: 404 });
    await step('write without a token', 'PUT', '/v1/secrets/aud/s', { body: { value: value1 } }, { actor: anon, action: 'secret.write', target: 'aud/s', status: 401 });
    await step('write with an unknown token', 'PUT', '/v1/secrets/aud/s', { token: 'cft_unknown-token-value-1234567890', body: { value: value1 } }, { actor: anon, action: 'secret.write', target: 'aud/s', status: 401 });
    await step('write outside the role', 'PUT', '/v1/secrets/other/x', { ...tok(writer), body: { value: value1 } }, { actor: 'writer', action: 'secret.write', target: 'other/x', status: 403 });
    await step('write inside the role', 'PUT', '/v1/secrets/app/x', { ...tok(writer), body: { value: value1 } }, { actor: 'writer', action: 'secret.write', target: 'app/x', version: 1, status: 201 });
    await step('invalid name', 'GET', '/v1/secrets/a//b', {}, { actor: anon, action: 'secret.read', target: 'a//b', status: 400 });
    await step('invalid name with a token', 'PUT', '/v1/secrets/../x', { ...tok(writer), body: { value: 'x' } }, { actor: 'writer', action: 'secret.write', target: '../x', status: 400 });
    await step('malformed JSON with a valid token', 'PUT', '/v1/secrets/aud/s', { ...tok(boot), rawBody: `{"value": "${value1}"` }, { actor: A, action: 'secret.write', target: 'aud/s', status: 400 });
    await step('wrong type with a valid token', 'PUT', '/v1/secrets/aud/s', { ...tok(boot), body: { value: 123 } }, { actor: A, action: 'secret.write', target: 'aud/s', status: 400 });
    await step('undecodable URL', 'GET', '/v1/secrets/a%zz', tok(boot), { actor: A, action: 'unknown', target: '/v1/secrets/a%zz', status: 400 });
    await step('URL parameter too long for the router', 'DELETE', `/v1/tokens/${'t'.repeat(2000)}`, {}, { actor: anon, action: 'unknown', target: `/v1/tokens/${'t'.repeat(289)}`, status: 400 });
    await step('token name too long for its schema', 'DELETE', `/v1/tokens/${'t'.repeat(200)}`, tok(boot), { actor: A, action: 'token.revoke', target: 't'.repeat(200), status: 400 });
    await step('unknown route', 'GET', '/v1/nope?x=1', tok(boot), { actor: A, action: 'unknown', target: '/v1/nope', status: 404 });
    await step('unknown route, anonymous', 'POST', '/v1/admin/kms/nothing', {}, { actor: anon, action: 'unknown', target: '/v1/admin/kms/nothing', status: 404 });
    await step('value over VAULT_MAX_VALUE_BYTES', 'PUT', '/v1/secrets/aud/s', { ...tok(boot), body: { value: 'x'.repeat(1025) } }, { actor: A, action: 'secret.write', target: 'aud/s', status: 413 });
    await step('body over the body limit', 'PUT', '/v1/secrets/aud/s', { ...tok(boot), body: { value: 'y'.repeat(20_000) } }, { actor: A, action: 'secret.write', target: 'aud/s', status: 413 });
    const rotated = await step('rotate', 'POST', '/v1/secrets/aud/s:rotate', tok(boot), { actor: A, action: 'secret.rotate', target: 'aud/s', version: 2, status: 200 });
    await step('metadata', 'GET', '/v1/metadata/aud/s', tok(boot), { actor: A, action: 'secret.read_metadata', target: 'aud/s', status: 200 });
    await step('list', 'GET', '/v1/metadata?prefix=aud/', tok(boot), { actor: A, action: 'secret.list', target: 'aud/', status: 200 });
    const minted = await step('mint token', 'POST', '/v1/tokens', { ...tok(boot), body: { name: 'aud-tok', role: 'admin' } }, { actor: A, action: 'token.create', target: 'aud-tok', status: 201 });
    await step('list tokens', 'GET', '/v1/tokens', tok(minted.body.token), { actor: 'aud-tok', action: 'token.list', status: 200 });
    await step('audit read without admin', 'GET', '/v1/admin/audit', tok(writer), { actor: 'writer', action: 'admin.audit.read', status: 403 });
    await step('revoke token', 'DELETE', '/v1/tokens/aud-tok', tok(boot), { actor: A, action: 'token.revoke', target: 'aud-tok', status: 204 });
    await step('revoked token', 'GET', '/v1/tokens', tok(minted.body.token), { actor: anon, action: 'token.list', status: 401 });
    await step('change the admin role', 'PUT', '/v1/roles/admin', { ...tok(boot), body: { rules: [] } }, { actor: A, action: 'role.put', target: 'admin', status: 409 });
    await step('bad version query', 'GET', '/v1/secrets/aud/s?version=0', {}, { actor: anon, action: 'secret.read', target: 'aud/s', status: 400 });
    await step('delete', 'DELETE', '/v1/secrets/aud/s', tok(boot), { actor: A, action: 'secret.delete', target: 'aud/s', status: 204 });
    // Liveness, readiness and metrics are not audited (DESIGN §4): they leave no record between the others.
    for (const p of ['/v1/health', '/v1/ready', '/metrics']) expect((await request(n.url, 'GET', p)).status, p).toBe(200);
    await step('cluster status', 'GET', '/v1/admin/cluster', tok(boot), { actor: A, action: 'admin.cluster.read', status: 200 });

    const { res, records } = await auditSince(n, baseline);
    expect(records.map((r) => r.action)).toEqual(steps.map((s) => s.want.action));
    expect(records).toHaveLength(steps.length);
    const ids = new Set<string>();
    records.forEach((r, i) => {
      const s = steps[i]!;
      const requestId = s.res.headers['x-request-id'] as string;
      expect(requestId, s.label).toMatch(/^[0-9a-f-]{36}$/);
      ids.add(requestId);
      // Without a trusted proxy the peer is the client.
      // chain: the record's link in the hash chain (issue 16), an HMAC over the other fields.
      expect(r, s.label).toEqual({ id: baseline + 1 + i, ts: expect.any(String), node_id: 'n1', request_id: requestId, peer_ip: s.want.client_ip, chain: expect.stringMatching(/^[0-9a-f]{64}$/), ...s.want });
      expect(Number.isNaN(Date.parse(r.ts))).toBe(false);
      expect(Object.keys(r).sort()).toEqual(
        ['action', 'actor', 'chain', 'client_ip', 'id', 'node_id', 'outcome', 'peer_ip', 'request_id', 'status', 'target', 'ts', 'version'],
      );
    });
    expect(ids.size).toBe(steps.length);
    for (const leak of [value1, rotated.body.value as string, boot, writer, minted.body.token as string]) {
      expect(res.text).not.toContain(leak);
    }

    // The query that just ran is recorded too, as the next record.
    const { records: after } = await auditSince(n, baseline + steps.length);
    expect(after).toHaveLength(1);
    expect(after[0]).toMatchObject({ action: 'admin.audit.read', request_id: res.headers['x-request-id'], status: 200 });
  });

  it('pages with since/limit/next_since and validates its parameters', async () => {
    const n = await node();
    const admin = client(n.url, n.token);
    for (let i = 0; i < 6; i++) await admin.get('/v1/tokens');
    const all = (await admin.get('/v1/admin/audit?limit=1000')).body.records as AuditRow[];
    const got: AuditRow[] = [];
    let since = 0;
    for (let guard = 0; guard < 50; guard++) {
      const page = await admin.get(`/v1/admin/audit?since=${since}&limit=2`);
      expect(page.status).toBe(200);
      expect(page.body.records.length).toBeLessThanOrEqual(2);
      got.push(...page.body.records);
      if (page.body.next_since === null) break;
      expect(page.body.next_since).toBe(page.body.records.at(-1).id);
      since = page.body.next_since;
    }
    // Each page query adds a record as it goes; the first `all.length` are the ones we saw in one go.
    expect(got.slice(0, all.length)).toEqual(all);
    expect(got.map((r) => r.id)).toEqual([...got.map((r) => r.id)].sort((a, b) => a - b));
    for (const bad of ['limit=0', 'limit=1001', 'limit=abc', 'since=-1', 'since=1.5', 'limit=1&limit=2', 'extra=1']) {
      expectError(await admin.get(`/v1/admin/audit?${bad}`), 400, 'bad_request');
    }
  });
});

describe('audit unavailable', () => {
  it('fails closed with 503 audit_unavailable while audit.db is locked, without the value, and recovers', async () => {
    const n = await node();
    const admin = client(n.url, n.token);
    const secret = 'value-that-must-not-leave-without-an-audit-record';
    expect((await admin.put('/v1/secrets/locked/s', { value: secret })).status).toBe(201);
    const before = await admin.get('/v1/admin/audit?limit=1000');
    const lastId = (before.body.records as AuditRow[]).at(-1)!.id;
    let lastId2 = 0;

    // Another writer holds audit.db's write lock: the node's insert waits its busy timeout, then fails.
    const locker = new Database(path.join(n.dataDir, 'audit.db'));
    locker.pragma('busy_timeout = 0');
    locker.exec('BEGIN EXCLUSIVE');
    try {
      const read = await client(n.url).get('/v1/secrets/locked/s');
      expectError(read, 503, 'audit_unavailable');
      expect(read.text).not.toContain(secret);
      expect(read.headers['x-request-id']).toBeTruthy();
      // With a token, on another route, and on the audit route itself: all refused.
      expectError(await admin.get('/v1/secrets/locked/s?version=1'), 503, 'audit_unavailable');
      const rot = await admin.post('/v1/secrets/locked/s:rotate');
      expectError(rot, 503, 'audit_unavailable');
      expect(rot.text).not.toMatch(/"value"/);
      expectError(await admin.put('/v1/secrets/locked/s', { value: 'unaudited-change' }), 503, 'audit_unavailable');
      expectError(await admin.get('/v1/admin/audit'), 503, 'audit_unavailable');
      // Requests the router refuses on its own are held to the same rule.
      expectError(await admin.get('/v1/secrets/a%zz'), 503, 'audit_unavailable');
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }

    // The refused writes were turned away before they committed anything.
    const meta = await admin.get('/v1/metadata/locked/s');
    expect(meta.body.current_version).toBe(1);
    const baseline = (await admin.get(`/v1/admin/audit?since=${lastId}&limit=1000`)).body.records as AuditRow[];
    lastId2 = baseline.at(-1)!.id;

    // The fault has cleared: the next requests succeed and are recorded again.
    const ok = await client(n.url).get('/v1/secrets/locked/s?version=1');
    expect(ok.status).toBe(200);
    expect(ok.body.value).toBe(secret);
    // None of the refused requests claims a record: after the fault only our own queries and the read.
    expect(baseline.map((r) => [r.action, r.status])).toEqual([
      ['admin.audit.read', 200], // the query that took `before`
      ['secret.read_metadata', 200],
    ]);
    const after = await admin.get(`/v1/admin/audit?since=${lastId2}&limit=1000`);
    expect(after.status).toBe(200);
    const recs = after.body.records as AuditRow[];
    expect(recs.map((r) => [r.action, r.status])).toEqual([
      ['admin.audit.read', 200],
      ['secret.read', 200],
    ]);
    expect(recs[1]!.request_id).toBe(ok.headers['x-request-id']);
  });
});
