// GET /v1/openapi.json: generated from the routes' own schemas, valid OpenAPI
// 3.1, listing every route the server registers and every route of DESIGN §4;
// a route without a schema fails here.
import { Validator } from '@seriousme/openapi-schema-validator';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectRoutes, registeredRoutes, schemaProblems } from '../../server/api/openapi.js';
import { client } from '../helpers/http.js';
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

type Doc = { openapi: string; paths: Record<string, Record<string, { operationId: string; security?: unknown[]; parameters?: { name: string; in: string }[] }>> };

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
  node = await startTestNode();
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

  it('flags a route registered without a schema', async () => {
    const app = Fastify();
    const routes = collectRoutes(app, () => true);
    app.get('/v1/bare/:id', { config: { action: 'bare' } }, async () => ({}));
    app.get('/v1/unnamed', { schema: { response: { 200: { type: 'object' } } } }, async () => ({}));
    await app.ready();
    expect(schemaProblems(routes)).toEqual(['GET /v1/bare/:id: no schema', 'GET /v1/unnamed: no config.action (its operationId and audit action)']);
    await app.close();
  });

  it('is not audited, like /v1/health', async () => {
    const mgmt = client(node.url, node.token);
    const before = (await mgmt.get('/v1/admin/audit?limit=1000')).body.records as { action: string }[];
    await client(node.url).get('/v1/openapi.json');
    const after = (await mgmt.get('/v1/admin/audit?limit=1000')).body.records as { action: string }[];
    expect(after.filter((r) => r.action === 'openapi')).toEqual([]);
    expect(after.length).toBe(before.length + 1); // the first audit read only
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
