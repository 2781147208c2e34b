// GET /v1/openapi.json: an OpenAPI 3.1 document generated from the routes as
// Fastify registers them (an onRoute hook), with their own JSON schemas for
// params, query strings, bodies and responses. Nothing is written twice: what a
// route validates is what the document says. What a schema cannot carry (who
// may call a route, bodies that are not JSON) comes from the route's action:
// the secret operations' own rights table, or the global right of its family.
import { STATUS_CODES } from 'node:http';
import type { FastifyInstance, FastifyPluginAsync, RouteOptions } from 'fastify';
import { PROMETHEUS_CONTENT_TYPE } from '../../common/prometheus.js';
import { type Action, type GlobalAction } from '../rbac/rules.js';
import { SECRET_OPERATIONS } from '../secrets/operations.js';
import { errorSchema, STATUS } from './errors.js';
import { WATCH_AUDIT_ACTION } from './routes/watch.js';
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

/**
 * Who may call a route (DESIGN §4), by its action (`config.action`, the audit action every route
 * carries). `rights` are role-rule actions, any one of which allows the call (`onName`: on the
 * secret name it names); `token` whether a bearer token is needed; `allowlist` whether a client
 * address in VAULT_READ_ALLOWLIST is enough (or, for a value read, needed).
 */
export interface Access {
  rights: readonly Action[];
  token: 'none' | 'optional' | 'required';
  allowlist: boolean;
  onName: boolean;
  /** What the rights alone do not say. */
  note?: string;
}

const PUBLIC: Access = { rights: [], token: 'none', allowlist: false, onName: false };

/** Routes outside the secret operations and the action namespaces below. */
const ACCESS: Record<string, Access> = {
  health: { ...PUBLIC, note: 'Not audited.' },
  ready: { ...PUBLIC, note: 'Not audited.' },
  openapi: { ...PUBLIC, note: 'The document carries no secret; like every request but health, ready and metrics, it is audited.' },
  'metrics.read': { rights: ['admin'], token: 'optional', allowlist: true, onName: false, note: 'Not audited.' },
  [WATCH_AUDIT_ACTION]: {
    rights: [...SECRET_OPERATIONS.readMetadata.rights, ...SECRET_OPERATIONS.list.rights],
    token: 'required',
    allowlist: false,
    onName: false,
    note: `With \`names=\`, \`${SECRET_OPERATIONS.readMetadata.rights[0]}\` on every name; with \`prefix=\`, \`${SECRET_OPERATIONS.list.rights[0]}\` somewhere under the prefix (only names the token may list are answered).`,
  },
};

/**
 * Management families: the first segment of an action names the global right its routes check;
 * `auth` routes are about the caller's own token, which any live token may ask.
 */
const NAMESPACE_RIGHTS: Record<string, GlobalAction | null> = { admin: 'admin', token: 'manage_tokens', role: 'manage_roles', auth: null };

const SECRET_ACCESS = new Map<string, Access>(
  Object.values(SECRET_OPERATIONS).map((op): [string, Access] =>
    op.rights.length === 0
      ? [op.audit, { rights: [], token: 'optional', allowlist: true, onName: true }]
      : [op.audit, { rights: op.rights, token: 'required', allowlist: false, onName: true }],
  ),
);

/** What the right alone does not say, by action. */
const PRIVILEGED = 'a role with a global action (`manage_tokens`, `manage_roles`, `admin`)';
const NOTES: Record<string, string> = {
  [SECRET_OPERATIONS.write.audit]: '`create` writes a name that does not exist yet, `update` one that does.',
  'token.create': `A token for ${PRIVILEGED} needs \`admin\`.`,
  'token.revoke': `Revoking a token of ${PRIVILEGED} needs \`admin\`.`,
  'role.put': `Writing ${PRIVILEGED} needs \`admin\`.`,
};

/** Who may call the route with this action, or null when nothing says. */
export function accessOf(action: string): Access | null {
  const a = ACCESS[action] ?? SECRET_ACCESS.get(action) ?? rightsOfNamespace(action);
  return a && NOTES[action] ? { ...a, note: NOTES[action] } : a;
}

function rightsOfNamespace(action: string): Access | null {
  const family = action.split('.')[0]!;
  if (!(family in NAMESPACE_RIGHTS)) return null;
  const right = NAMESPACE_RIGHTS[family];
  return { rights: right ? [right] : [], token: 'required', allowlist: false, onName: false };
}

const quoted = (rights: readonly string[]): string => rights.map((r) => `\`${r}\``).join(' or ');

/** The sentence an operation's description opens with. */
export function accessSentence(a: Access): string {
  let s: string;
  if (a.token === 'none') s = 'Who may call: anyone; no authentication.';
  else if (a.rights.length === 0 && a.allowlist) {
    s =
      'Who may call: a client address in VAULT_READ_ALLOWLIST (else 403 `ip_not_allowed`); no token is needed, ' +
      'and a bearer token, if sent, names the caller in the audit record.';
  } else if (a.rights.length === 0) {
    s = 'Who may call: any live bearer token, about itself (401 `unauthorized` without one).';
  } else {
    const grant = `a bearer token whose role grants ${quoted(a.rights)}${a.onName ? ' on the secret name' : ''}`;
    s = a.allowlist
      ? `Who may call: a client address in VAULT_READ_ALLOWLIST, or ${grant} (else 403 \`ip_not_allowed\`, 401 \`unauthorized\`, 403 \`forbidden\`).`
      : `Who may call: ${grant} (401 \`unauthorized\` without a live token, 403 \`forbidden\` without the right).`;
  }
  return a.note ? `${s} ${a.note}` : s;
}

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

/**
 * Why a route could not be documented from its schema: none, no response schema, an undescribed path
 * parameter, no action, an action whose rights nothing states, no success status.
 */
export function schemaProblems(routes: readonly RegisteredRoute[]): string[] {
  const problems: string[] = [];
  for (const r of routes) {
    const where = `${r.method} ${r.url}`;
    if (r.action === '') problems.push(`${where}: no config.action (its operationId and audit action)`);
    else if (!accessOf(r.action)) problems.push(`${where}: no rights known for action ${r.action} (who may call it)`);
    if (!r.schema) problems.push(`${where}: no schema`);
    else if (!r.schema.response) problems.push(`${where}: no response schema`);
    else {
      const props = (r.schema.params as { properties?: Json } | undefined)?.properties ?? {};
      for (const p of pathParams(r.url)) if (!(p in props)) problems.push(`${where}: path parameter ${p} has no schema`);
      if (successStatuses(r).length === 0) problems.push(`${where}: no success status (a 2xx response schema; only a DELETE may answer 204 without one)`);
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

/**
 * The 2xx statuses a route answers: its 2xx response schemas; else 200 for a body that is not JSON
 * (NON_JSON), else 204 for a DELETE (no body); else none, which schemaProblems reports.
 */
export function successStatuses(r: RegisteredRoute): string[] {
  const declared = Object.keys((r.schema?.response ?? {}) as Json).filter((k) => /^2(?:\d\d|xx)$/i.test(k));
  if (declared.length > 0) return declared.map((k) => k.toUpperCase());
  if (NON_JSON[r.action]?.response) return ['200'];
  return r.method === 'DELETE' ? ['204'] : [];
}

function responses(r: RegisteredRoute, access: Access | null): Json {
  const out: Json = {};
  const nonJson = NON_JSON[r.action]?.response;
  const errorRef = { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } };
  for (const [key, schema] of Object.entries((r.schema?.response ?? {}) as Json)) {
    const status = /^[1-5]xx$/i.test(key) ? key.toUpperCase() : key;
    if (schema === errorSchema) {
      const lo = Number(status[0]) * 100;
      out[status] = { description: `Error: \`{"error":{"code","message"}}\`, code one of ${codesWithin(lo, lo + 100)}.`, content: errorRef };
    } else {
      out[status] = { description: STATUS_CODES[Number(status)] ?? 'Response', content: { 'application/json': { schema: clone(schema) } } };
    }
  }
  for (const status of successStatuses(r)) {
    if (status in out) continue;
    out[status] = nonJson
      ? { description: 'OK', content: { [nonJson]: { schema: nonJson.startsWith('text/') ? { type: 'string' } : { type: 'string', contentEncoding: 'binary' } } } }
      : { description: `${STATUS_CODES[Number(status)]}: no body.` };
  }
  // The refusals of who may call it, where the route's rights say they happen.
  if (access && access.token !== 'none') {
    const denials: [string, string][] = [];
    if (access.rights.length > 0 || access.token === 'required') denials.push(['401', '`unauthorized`: no live bearer token (missing, unknown, expired or revoked).']);
    const forbidden: string[] = [];
    if (access.allowlist) forbidden.push(`\`ip_not_allowed\`: the client address is not in VAULT_READ_ALLOWLIST${access.rights.length > 0 ? ' and no token was sent' : ''}`);
    if (access.rights.length > 0) forbidden.push(`\`forbidden\`: the token's role does not grant ${quoted(access.rights)}${access.onName ? ' on this name' : ''}`);
    if (forbidden.length > 0) denials.push(['403', `${forbidden.join('; ')}.`]);
    for (const [status, description] of denials) out[status] ??= { description, content: errorRef };
  }
  return out;
}

function operation(r: RegisteredRoute): Json {
  const access = accessOf(r.action);
  const op: Json = {
    operationId: r.action,
    tags: [r.url.split('/').filter((s) => s !== '' && s !== 'v1')[0] ?? 'api'],
    description: access ? accessSentence(access) : 'Who may call it is not stated.',
  };
  if (access) {
    op['x-coffer-rights'] = [...access.rights];
    if (access.allowlist) op['x-coffer-read-allowlist'] = true;
    // A bearer token is the document's default.
    if (access.token === 'none') op.security = [];
    else if (access.token === 'optional') op.security = OPTIONAL_BEARER;
  }
  const params = parameters(r);
  if (params.length > 0) op.parameters = params;
  const requestType = NON_JSON[r.action]?.request;
  if (requestType) {
    op.requestBody = { required: true, content: { [requestType]: { schema: { type: 'string', contentEncoding: 'binary' } } } };
  } else if (r.schema?.body) {
    const body = r.schema.body as { required?: string[] };
    op.requestBody = { required: (body.required?.length ?? 0) > 0, content: { 'application/json': { schema: clone(body) } } };
  }
  op.responses = responses(r, access);
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
        'Secrets vault API. Bodies are JSON; every error is `{"error":{"code","message"}}`. Generated from the JSON schemas the server validates requests with. ' +
        'Each operation says who may call it: its description opens with "Who may call", and `x-coffer-rights` lists the role-rule actions ' +
        '(DESIGN §4) any one of which allows it (`[]`: none needed); `x-coffer-read-allowlist: true` marks operations a client address in VAULT_READ_ALLOWLIST may call.',
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
