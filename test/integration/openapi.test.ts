// GET /v1/openapi.json: generated from the routes' own schemas, valid OpenAPI
// 3.1, listing every route the server registers and every route of DESIGN §4;
// a route without a schema fails here.
import { Validator } from '@seriousme/openapi-schema-validator';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectRoutes, registeredRoutes, schemaProblems } from '../../server/api/openapi.js';
import { ALL_ACTIONS } from '../../server/rbac/rules.js';
import { client, request } from '../helpers/http.js';
import { startTestNode, type TestNode } from '../helpers/node.js';

/** DESIGN §4's table, route by route. */
const DESIGN_ROUTES = [
  'GET /v1/secrets/{name}',
  'PUT /v1/secrets/{name}',
  'POST /v1/secrets/{name}:rotate',
  'DELETE /v1/secrets/{name}',
  'GET /v1/metadata/{name}',
  'GET /v1/metadata',
  'POST /v1/tokens',
  'GET /v1/tokens',
  'DELETE /v1/tokens/{name}',
  'PUT /v1/roles/{name}',
  'GET /v1/roles/{name}',
  'DELETE /v1/roles/{name}',
  'GET /v1/roles',
  'GET /v1/admin/audit',
  'POST /v1/admin/kms/rewrap',
  'GET /v1/admin/kms/rewrap/status',
  'GET /v1/admin/cluster',
  'POST /v1/admin/cluster/peers',
  'DELETE /v1/admin/cluster/peers/{id}',
  'POST /v1/admin/cluster/transfer-leadership',
  'GET /v1/admin/snapshot',
  'POST /v1/admin/snapshot',
  'GET /v1/health',
  'GET /v1/ready',
  'GET /metrics',
];

type Operation = {
  operationId: string;
  description: string;
  security?: unknown[];
  parameters?: { name: string; in: string }[];
  responses: Record<string, unknown>;
  'x-coffer-rights'?: string[];
  'x-coffer-read-allowlist'?: boolean;
};
type Doc = { openapi: string; paths: Record<string, Record<string, Operation>> };

/** Every operation, by operationId. */
const byId = (doc: Doc): Map<string, Operation> => new Map(Object.values(doc.paths).flatMap((ops) => Object.values(ops).map((o) => [o.operationId, o] as const)));

/** Whether `status` is one an operation documents (its own key, or its class: 4XX, 5XX). */
const documents = (op: Operation, status: number): boolean => String(status) in op.responses || `${String(status)[0]}XX` in op.responses;

/**
 * One valid request per operation that needs a token, in an order where each finds what it needs
 * (a secret written before it is rotated, a token minted before it is revoked). `mutates`: sent only
 * with a token lacking the right, since with it the call would change the node under test.
 */
interface Example {
  method: string;
  path: string;
  body?: unknown;
  rawBody?: Buffer;
  mutates?: true;
}
const EXAMPLES: Record<string, Example> = {
  'secret.write': { method: 'PUT', path: '/v1/secrets/ex/a', body: { value: 'v1' } },
  'secret.rotate': { method: 'POST', path: '/v1/secrets/ex/a:rotate', body: {} },
  'secret.read_metadata': { method: 'GET', path: '/v1/metadata/ex/a' },
  'secret.list': { method: 'GET', path: '/v1/metadata?prefix=ex/' },
  'secret.watch': { method: 'GET', path: '/v1/watch?names=ex/a&wait=0' },
  'secret.delete': { method: 'DELETE', path: '/v1/secrets/ex/a' },
  'role.put': { method: 'PUT', path: '/v1/roles/ex-role', body: { rules: [{ paths: ['ex/*'], actions: ['list'] }] } },
  'role.read': { method: 'GET', path: '/v1/roles/ex-role' },
  'role.list': { method: 'GET', path: '/v1/roles' },
  'token.create': { method: 'POST', path: '/v1/tokens', body: { name: 'ex-token', role: 'ex-role' } },
  'token.list': { method: 'GET', path: '/v1/tokens' },
  'token.read': { method: 'GET', path: '/v1/tokens/ex-token' },
  'auth.self': { method: 'GET', path: '/v1/auth/self' },
  'token.revoke': { method: 'DELETE', path: '/v1/tokens/ex-token' },
  'role.delete': { method: 'DELETE', path: '/v1/roles/ex-role' },
  'admin.audit.read': { method: 'GET', path: '/v1/admin/audit?limit=1' },
  'admin.audit.verify': { method: 'GET', path: '/v1/admin/audit/verify' },
  'admin.kms.rewrap': { method: 'POST', path: '/v1/admin/kms/rewrap', body: {} },
  'admin.kms.rewrap_status': { method: 'GET', path: '/v1/admin/kms/rewrap/status' },
  'admin.cluster.read': { method: 'GET', path: '/v1/admin/cluster' },
  'admin.cluster.add_peer': { method: 'POST', path: '/v1/admin/cluster/peers', body: { id: 'n9', address: '127.0.0.9:1' }, mutates: true },
  'admin.cluster.remove_peer': { method: 'DELETE', path: '/v1/admin/cluster/peers/n9', mutates: true },
  'admin.cluster.members.read': { method: 'GET', path: '/v1/admin/cluster/members' },
  'admin.cluster.members.declare': { method: 'PUT', path: '/v1/admin/cluster/members', body: { members: [{ id: 'n9', address: '127.0.0.9:1' }] }, mutates: true },
  'admin.cluster.members.clear': { method: 'DELETE', path: '/v1/admin/cluster/members' },
  'admin.cluster.transfer_leadership': { method: 'POST', path: '/v1/admin/cluster/transfer-leadership', body: {}, mutates: true },
  'admin.snapshot.save': { method: 'GET', path: '/v1/admin/snapshot' },
  'admin.snapshot.restore': { method: 'POST', path: '/v1/admin/snapshot', rawBody: Buffer.from('not an image'), mutates: true },
};

/** `METHOD path` for every operation of a document. */
const operations = (doc: Doc): string[] =>
  Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`));

/** How many routes Fastify's router holds, per method (HEAD twins of GET routes left out). */
function routerMethodCount(tree: string): number {
  let n = 0;
  for (const line of tree.split('\n')) {
    const m = /\(([A-Z, ]+)\)$/.exec(line);
    if (m) n += m[1]!.split(', ').filter((method) => method !== 'HEAD').length;
  }
  return n;
}

/** The Fastify urls an OpenAPI path may stand for: `{p}` is `:p`, or (a secret name, slashes included) `*`. */
const fastifyUrls = (path: string): string[] => [
  path.replace(/\{([^}]+)\}/g, ':$1'),
  path.replace(/\{name\}(:rotate)?$/, '*'),
];

let node: TestNode;
let doc: Doc;

beforeAll(async () => {
  // The re-wrap worker on, so POST /v1/admin/kms/rewrap can answer its success status.
  node = await startTestNode({ env: { VAULT_KMS_REWRAP_ENABLED: 'true' } });
  const res = await client(node.url).get('/v1/openapi.json');
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  doc = res.body as Doc;
});
afterAll(async () => {
  await node?.close();
});

describe('GET /v1/openapi.json', () => {
  it('validates against the OpenAPI 3.1 schema', async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(doc) as unknown as Record<string, unknown>);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
  });

  it('lists every route the server registers, and nothing else', () => {
    const app = node.node.api;
    const ops = operations(doc);
    // Every operation is a route of the router, and the router holds no more than these.
    const missing = ops.filter((op) => {
      const [method, path] = op.split(' ') as [string, string];
      return !fastifyUrls(path).some((url) => app.hasRoute({ method: method as 'GET', url }));
    });
    expect(missing).toEqual([]);
    expect(new Set(ops).size).toBe(ops.length);
    expect(routerMethodCount(app.printRoutes({ commonPrefix: false }))).toBe(ops.length);
    expect(ops.length).toBeGreaterThan(25);
    expect(ops).toContain('GET /v1/openapi.json');
  });

  it('lists every route of DESIGN §4', () => {
    const ops = new Set(operations(doc));
    expect(DESIGN_ROUTES.filter((r) => !ops.has(r))).toEqual([]);
  });

  it('every registered route has a schema (a route without one fails here)', () => {
    const routes = registeredRoutes(node.node.api)!;
    expect(routes.length).toBe(operations(doc).length);
    expect(schemaProblems(routes)).toEqual([]);
  });

  it('has unique operation ids, the routes own schemas and who may call them', () => {
    const ids = Object.values(doc.paths).flatMap((ops) => Object.values(ops).map((o) => o.operationId));
    expect(new Set(ids).size).toBe(ids.length);
    const get = doc.paths['/v1/secrets/{name}']!.get!;
    expect(get.parameters!.map((p) => `${p.in}:${p.name}`)).toEqual(['path:name', 'query:version', 'query:consistency']);
    expect(get.security).toEqual([{}, { bearer: [] }]);
    expect(doc.paths['/v1/health']!.get!.security).toEqual([]);
    expect(doc.paths['/v1/openapi.json']!.get!.security).toEqual([]);
    // Management routes take the document's default: a bearer token.
    expect(doc.paths['/v1/tokens']!.post!.security).toBeUndefined();
    expect((doc as unknown as { security: unknown }).security).toEqual([{ bearer: [] }]);
    const errors = JSON.stringify(doc.paths['/v1/tokens']!.post);
    expect(errors).toContain('"4XX"');
    expect(errors).toContain('#/components/schemas/Error');
  });

  it('every operation says who may call it, its success statuses and its errors', () => {
    const missing: string[] = [];
    for (const [p, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const where = `${method.toUpperCase()} ${p}`;
        if (!op.description.startsWith('Who may call')) missing.push(`${where}: no "Who may call" sentence`);
        if (!Array.isArray(op['x-coffer-rights'])) missing.push(`${where}: no x-coffer-rights`);
        const statuses = Object.keys(op.responses);
        if (!statuses.some((s) => s.startsWith('2'))) missing.push(`${where}: no success status`);
        const open = op.security !== undefined && op.security.length === 0;
        if (!open && !statuses.includes('4XX')) missing.push(`${where}: no error responses`);
        const needsToken = op.security === undefined;
        if (needsToken && !statuses.includes('401')) missing.push(`${where}: no 401`);
        if ((op['x-coffer-rights']?.length ?? 0) > 0 && !statuses.includes('403')) missing.push(`${where}: no 403`);
      }
    }
    expect(missing).toEqual([]);
    const ops = byId(doc);
    // Derived from the routes' own data: the secret operations' rights, the families' global rights.
    expect(ops.get('secret.write')!['x-coffer-rights']).toEqual(['create', 'update']);
    expect(ops.get('secret.rotate')!['x-coffer-rights']).toEqual(['rotate']);
    expect(ops.get('secret.read')!['x-coffer-rights']).toEqual([]);
    expect(ops.get('secret.read')!['x-coffer-read-allowlist']).toBe(true);
    expect(ops.get('token.create')!['x-coffer-rights']).toEqual(['manage_tokens']);
    expect(ops.get('role.list')!['x-coffer-rights']).toEqual(['manage_roles']);
    expect(ops.get('admin.snapshot.save')!['x-coffer-rights']).toEqual(['admin']);
    expect(ops.get('health')!['x-coffer-rights']).toEqual([]);
    expect(ops.get('secret.watch')!['x-coffer-rights']).toEqual(['read_metadata', 'list']);
    expect(ops.get('token.create')!.description).toMatch(/^Who may call: a bearer token whose role grants `manage_tokens`/);
    // Success statuses: 201 for a creation, 204 for a delete, 202 for work accepted, 200 otherwise.
    const success = (id: string) => Object.keys(ops.get(id)!.responses).filter((s) => s.startsWith('2')).sort();
    expect(success('token.create')).toEqual(['201']);
    expect(success('secret.write')).toEqual(['200', '201']);
    expect(success('role.put')).toEqual(['200', '201']);
    expect(success('secret.delete')).toEqual(['204']);
    expect(success('token.revoke')).toEqual(['204']);
    expect(success('admin.kms.rewrap')).toEqual(['202']);
    expect(success('admin.cluster.members.clear')).toEqual(['200']);
    expect(success('secret.read')).toEqual(['200']);
  });

  it('the rights it states are the ones each route checks, and a call with them answers a documented status', async () => {
    const admin = client(node.url, node.token);
    const ops = byId(doc);
    const guarded = [...ops.values()].filter((o) => o.security === undefined).map((o) => o.operationId);
    // Every such operation has an example above: a new route is checked, not skipped.
    expect(guarded.filter((id) => !(id in EXAMPLES))).toEqual([]);
    expect((await admin.put('/v1/roles/ex-role', { rules: [{ paths: ['ex/*'], actions: ['list'] }] })).status).toBe(201);

    const tokenWith = async (label: string, actions: readonly string[]): Promise<string> => {
      // No right at all: a rule that reaches no name the examples use.
      const rules = actions.length > 0 ? [{ paths: ['*'], actions }] : [{ paths: ['nothing/*'], actions: ['list'] }];
      expect((await admin.put(`/v1/roles/${label}`, { rules })).status).toBe(201);
      const res = await admin.post('/v1/tokens', { name: label, role: label });
      expect(res.status).toBe(201);
      return res.body.token as string;
    };
    const send = (ex: Example, token?: string) =>
      request(node.url, ex.method, ex.path, {
        ...(token ? { token } : {}),
        ...(ex.body !== undefined ? { body: ex.body } : {}),
        ...(ex.rawBody ? { rawBody: ex.rawBody, headers: { 'content-type': 'application/octet-stream' } } : {}),
      });

    const wrong: string[] = [];
    for (const [i, [id, ex]] of Object.entries(EXAMPLES).entries()) {
      const op = ops.get(id);
      if (!op) {
        wrong.push(`${id}: not in the document`);
        continue;
      }
      const rights = op['x-coffer-rights']!;
      // Without a token: 401.
      const none = await send(ex);
      if (none.status !== 401) wrong.push(`${id}: ${none.status} without a token`);
      // With every right but the documented ones: 403 (none documented: any live token will do).
      if (rights.length > 0) {
        const lacking = await send(ex, await tokenWith(`lacks-${i}`, ALL_ACTIONS.filter((a) => !rights.includes(a))));
        if (lacking.status !== 403 || lacking.body?.error?.code !== 'forbidden') wrong.push(`${id}: ${lacking.status} without ${rights.join('/')}`);
      }
      if (ex.mutates) continue;
      // With the documented rights only: not refused, and a success status the document names.
      const holding = await send(ex, await tokenWith(`holds-${i}`, rights));
      if (!(holding.status >= 200 && holding.status < 300) || !(String(holding.status) in op.responses)) {
        wrong.push(`${id}: ${holding.status} ${holding.body?.error?.code ?? ''} with ${rights.join('/')}; documented ${Object.keys(op.responses).join(',')}`);
      }
    }
    expect(wrong).toEqual([]);

    // The read allowlist: a value read and the metrics from an address outside it.
    const elsewhere = { localAddress: '127.0.0.2' };
    const read = await request(node.url, 'GET', '/v1/secrets/ex/a', elsewhere);
    expect(`${read.status} ${read.body.error.code}`).toBe('403 ip_not_allowed');
    expect(documents(ops.get('secret.read')!, 403)).toBe(true);
    expect((await request(node.url, 'GET', '/metrics', elsewhere)).status).toBe(403);
    expect((await request(node.url, 'GET', '/metrics', { ...elsewhere, token: node.token })).status).toBe(200);
    // Open routes answer anyone.
    for (const id of ['health', 'ready', 'openapi']) expect(ops.get(id)!.security).toEqual([]);
  });

  it('flags a route registered without a schema', async () => {
    const app = Fastify();
    const routes = collectRoutes(app, () => true);
    app.get('/v1/bare/:id', { config: { action: 'bare' } }, async () => ({}));
    app.get('/v1/unnamed', { schema: { response: { 200: { type: 'object' } } } }, async () => ({}));
    // Who may call it: no secret operation, no family with a right of its own.
    app.get('/v1/nobody', { config: { action: 'nobody.read' }, schema: { response: { 200: { type: 'object' } } } }, async () => ({}));
    // Its success status: only errors described, and not a DELETE (204).
    app.post('/v1/admin/thing', { config: { action: 'admin.thing' }, schema: { response: { '4xx': { type: 'object' } } } }, async () => ({}));
    app.delete('/v1/admin/thing', { config: { action: 'admin.thing.delete' }, schema: { response: { '4xx': { type: 'object' } } } }, async () => ({}));
    await app.ready();
    expect(schemaProblems(routes)).toEqual([
      'GET /v1/bare/:id: no rights known for action bare (who may call it)',
      'GET /v1/bare/:id: no schema',
      'GET /v1/unnamed: no config.action (its operationId and audit action)',
      'GET /v1/nobody: no rights known for action nobody.read (who may call it)',
      'POST /v1/admin/thing: no success status (a 2xx response schema; only a DELETE may answer 204 without one)',
    ]);
    await app.close();
  });

  it('is audited like every request but health, ready and metrics (DESIGN §4)', async () => {
    const mgmt = client(node.url, node.token);
    const before = (await mgmt.get('/v1/admin/audit?limit=1000')).body.records as { action: string }[];
    expect((await client(node.url).get('/v1/openapi.json')).status).toBe(200);
    const after = (await mgmt.get('/v1/admin/audit?limit=1000')).body.records as Record<string, unknown>[];
    expect(after.length).toBe(before.length + 2); // the first audit read and the document
    const fresh = after.filter((r) => !before.some((b) => (b as { id?: unknown }).id === r.id));
    expect(fresh.filter((r) => r.action === 'openapi')).toEqual([expect.objectContaining({ actor: 'anonymous', client_ip: '127.0.0.1', outcome: 'allowed', status: 200 })]);
  });
});

describe('on a reads-only listener', () => {
  it('describes the read surface that listener serves', async () => {
    const n = await startTestNode({ env: { VAULT_MGMT_ADDR: '127.0.0.3:0' } });
    try {
      const res = await client(n.url).get('/v1/openapi.json');
      expect(res.status).toBe(200);
      const ops = operations(res.body as Doc).sort();
      expect(ops).toEqual(['GET /metrics', 'GET /v1/health', 'GET /v1/openapi.json', 'GET /v1/ready', 'GET /v1/secrets/{name}', 'GET /v1/watch']);
      const full = operations((await client(n.node.mgmtUrl!).get('/v1/openapi.json')).body as Doc);
      expect(full).toContain('POST /v1/tokens');
    } finally {
      await n.close();
    }
  });
});
