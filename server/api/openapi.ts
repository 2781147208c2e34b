// GET /v1/openapi.json: an OpenAPI 3.1 document generated from the routes as
// Fastify registers them (an onRoute hook), with their own JSON schemas for
// params, query strings, bodies and responses. Nothing is written twice: what a
// route validates is what the document says. What a schema cannot carry (who
// may call a route, bodies that are not JSON) is the short table below.
import { STATUS_CODES } from 'node:http';
import type { FastifyInstance, FastifyPluginAsync, RouteOptions } from 'fastify';
import { PROMETHEUS_CONTENT_TYPE } from '../../common/prometheus.js';
import { errorSchema, STATUS } from './errors.js';
import { rotateParams, ROTATE_SUFFIX, secretNameParams } from './schemas.js';

export const OPENAPI_PATH = '/v1/openapi.json';

/** One registered route, as the onRoute hook saw it. */
export interface RegisteredRoute {
  method: string;
  url: string;
  action: string;
  schema: RouteOptions['schema'];
}

type Json = Record<string, unknown>;

const BEARER = [{ bearer: [] as string[] }];
const OPTIONAL_BEARER = [{}, { bearer: [] as string[] }];

/** Who may call a route, where it is not "a bearer token with the route's right" (DESIGN §4). */
const ACCESS: Record<string, { security: Json[]; note: string }> = {
  health: { security: [], note: 'No authentication. Not audited.' },
  ready: { security: [], note: 'No authentication. Not audited.' },
  openapi: { security: [], note: 'No authentication (the document carries no secret). Not audited, like /v1/health.' },
  'secret.read': {
    security: OPTIONAL_BEARER,
    note:
      'Allowlist-gated: answered only to client addresses in VAULT_READ_ALLOWLIST (else 403 ip_not_allowed); ' +
      'no token is needed, and a bearer token, if sent, names the caller in the audit record.',
  },
  'metrics.read': { security: OPTIONAL_BEARER, note: 'An allowlisted client address, or a bearer token with `admin`. Not audited.' },
};
const BEARER_NOTE = 'Needs `Authorization: Bearer <token>` whose role grants this action (401 unauthorized, 403 forbidden).';

/** Bodies that are not JSON, so no schema describes them. */
const NON_JSON: Record<string, { request?: string; response?: string }> = {
  'metrics.read': { response: PROMETHEUS_CONTENT_TYPE.split(';')[0]! },
  'admin.snapshot.save': { response: 'application/octet-stream' },
  'admin.snapshot.restore': { request: 'application/octet-stream' },
};

const collected = new WeakMap<FastifyInstance, RegisteredRoute[]>();

/** Starts collecting routes; call before any route is registered. `include` picks what this listener serves. */
export function collectRoutes(app: FastifyInstance, include: (action: string) => boolean): RegisteredRoute[] {
  const routes: RegisteredRoute[] = [];
  collected.set(app, routes);
  app.addHook('onRoute', (route) => {
    const action = (route.config as { action?: string } | undefined)?.action ?? '';
    if (!include(action)) return;
    // The HEAD twin Fastify adds to every GET is not listed.
    for (const method of Array.isArray(route.method) ? route.method : [route.method]) {
      if (method === 'HEAD') continue;
      routes.push({ method, url: route.url, action, schema: route.schema });
    }
  });
  return routes;
}

/** The routes collected on this app (for tests). */
export function registeredRoutes(app: FastifyInstance): readonly RegisteredRoute[] | undefined {
  return collected.get(app);
}

/** Why a route could not be documented from its schema: none, no response schema, an undescribed path parameter, no action. */
export function schemaProblems(routes: readonly RegisteredRoute[]): string[] {
  const problems: string[] = [];
  for (const r of routes) {
    const where = `${r.method} ${r.url}`;
    if (r.action === '') problems.push(`${where}: no config.action (its operationId and audit action)`);
    if (!r.schema) problems.push(`${where}: no schema`);
    else if (!r.schema.response) problems.push(`${where}: no response schema`);
    else {
      const props = (r.schema.params as { properties?: Json } | undefined)?.properties ?? {};
      for (const p of pathParams(r.url)) if (!(p in props)) problems.push(`${where}: path parameter ${p} has no schema`);
    }
  }
  return problems;
}

function pathParams(url: string): string[] {
  return [...url.matchAll(/:([A-Za-z0-9_]+)|\*/g)].map((m) => m[1] ?? '*');
}

const clone = (v: unknown): Json => JSON.parse(JSON.stringify(v)) as Json;

/** Fastify's `:param` → `{param}`; its `*` (a secret name, slashes included) → `{name}`, and the rotate form → `{name}:rotate`. */
function openapiPath(r: RegisteredRoute): string {
  const rotate = r.schema?.params === rotateParams;
  return r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\*$/, rotate ? `{name}${ROTATE_SUFFIX}` : '{name}');
}

function parameters(r: RegisteredRoute): Json[] {
  const out: Json[] = [];
  const params = r.schema?.params as { properties?: Json } | undefined;
  for (const p of pathParams(r.url)) {
    if (p === '*') {
      const name = (r.schema?.params === rotateParams ? secretNameParams : params)?.properties?.['*'];
      out.push({
        name: 'name',
        in: 'path',
        required: true,
        description: 'Secret name: segments of [A-Za-z0-9._-]+ joined by `/`; the slashes are sent as they are, not percent-encoded.',
        schema: clone(name ?? { type: 'string' }),
      });
    } else {
      out.push({ name: p, in: 'path', required: true, schema: clone(params?.properties?.[p] ?? { type: 'string' }) });
    }
  }
  const query = r.schema?.querystring as { properties?: Json; required?: string[] } | undefined;
  for (const [name, schema] of Object.entries(query?.properties ?? {})) {
    out.push({ name, in: 'query', required: query?.required?.includes(name) ?? false, schema: clone(schema) });
  }
  return out;
}

const codesWithin = (lo: number, hi: number): string =>
  Object.entries(STATUS)
    .filter(([, s]) => s >= lo && s < hi)
    .map(([code, s]) => `\`${code}\` (${s})`)
    .join(', ');

function responses(r: RegisteredRoute): Json {
  const out: Json = {};
  const nonJson = NON_JSON[r.action]?.response;
  let success = false;
  for (const [key, schema] of Object.entries((r.schema?.response ?? {}) as Json)) {
    const status = /^[1-5]xx$/i.test(key) ? key.toUpperCase() : key;
    if (status.startsWith('2')) success = true;
    if (schema === errorSchema) {
      const lo = Number(status[0]) * 100;
      out[status] = {
        description: `Error: \`{"error":{"code","message"}}\`, code one of ${codesWithin(lo, lo + 100)}.`,
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
      };
    } else {
      out[status] = { description: STATUS_CODES[Number(status)] ?? 'Response', content: { 'application/json': { schema: clone(schema) } } };
    }
  }
  if (!success) {
    // No 2xx schema: a body that is not JSON, or none (a DELETE answers 204).
    out[nonJson ? '200' : r.method === 'DELETE' ? '204' : '200'] = nonJson
      ? { description: 'OK', content: { [nonJson]: { schema: nonJson.startsWith('text/') ? { type: 'string' } : { type: 'string', contentEncoding: 'binary' } } } }
      : { description: r.method === 'DELETE' ? 'No Content' : 'OK' };
  }
  return out;
}

function operation(r: RegisteredRoute): Json {
  const access = ACCESS[r.action];
  const op: Json = {
    operationId: r.action,
    tags: [r.url.split('/').filter((s) => s !== '' && s !== 'v1')[0] ?? 'api'],
    description: access?.note ?? BEARER_NOTE,
  };
  if (access) op.security = access.security;
  const params = parameters(r);
  if (params.length > 0) op.parameters = params;
  const requestType = NON_JSON[r.action]?.request;
  if (requestType) {
    op.requestBody = { required: true, content: { [requestType]: { schema: { type: 'string', contentEncoding: 'binary' } } } };
  } else if (r.schema?.body) {
    const body = r.schema.body as { required?: string[] };
    op.requestBody = { required: (body.required?.length ?? 0) > 0, content: { 'application/json': { schema: clone(body) } } };
  }
  op.responses = responses(r);
  return op;
}

/** The OpenAPI 3.1 document for these routes. */
export function openapiDocument(routes: readonly RegisteredRoute[], version: string): Json {
  const paths: Record<string, Json> = {};
  for (const r of routes) {
    const p = openapiPath(r);
    (paths[p] ??= {})[r.method.toLowerCase()] = operation(r);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Coffer',
      version,
      description:
        'Secrets vault API. Bodies are JSON; every error is `{"error":{"code","message"}}`. Generated from the JSON schemas the server validates requests with.',
    },
    paths: Object.fromEntries(Object.entries(paths).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'A Coffer token (`POST /v1/tokens`).' } },
      schemas: {
        Error: { ...clone(errorSchema), properties: { error: { ...clone(errorSchema.properties.error), properties: { code: { type: 'string', enum: Object.keys(STATUS) }, message: { type: 'string' } } } } },
      },
    },
    security: BEARER,
  };
}

/** Serves the document for the routes collected on this listener, built once, after every route is registered. */
export const openapiRoutes: FastifyPluginAsync<{ routes: readonly RegisteredRoute[]; version: string }> = async (app, { routes, version }) => {
  let body: string | null = null;
  app.get(
    OPENAPI_PATH,
    { config: { action: 'openapi' }, schema: { response: { 200: { type: 'object', description: 'An OpenAPI 3.1 document' } } } },
    async (_req, reply) => {
      body ??= JSON.stringify(openapiDocument(routes, version));
      void reply.header('content-type', 'application/json; charset=utf-8');
      return body;
    },
  );
};
