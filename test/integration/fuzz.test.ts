// Fuzzing a real `coffer server` process over every route of DESIGN §4 plus
// garbage: random methods, names (valid, invalid, unicode, control bytes,
// overlong), query strings, headers (Origin, Host, X-Forwarded-For, every
// kind of Authorization), bodies (valid, mutated JSON, wrong types, huge
// numbers, invalid UTF-8, empty) and content types; malformed requests go
// over raw sockets so Node's own HTTP parser is exercised. Asserted:
//   - no 5xx except the documented ones (503 no_leader / kms_unavailable /
//     audit_unavailable, 507 insufficient_storage), no stack traces;
//   - every error response is {"error":{"code","message"}} with a known code;
//   - a refused request changes nothing in state.db;
//   - exactly one audit record per request (none for health, ready, metrics);
//   - the process is alive and healthy at the end.
// Run against a single node and against a follower of a 3-node cluster
// (whose writes are forwarded to the leader and audited where they arrived).
// Seeded: COFFER_FUZZ_SEED replays a run, COFFER_FUZZ_COUNT sets its length.
// Failures name the request (method, target, status, code), never a body.
import Database from 'better-sqlite3';
import { createHash, randomInt } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { TestCluster } from '../helpers/cluster.js';
import { request } from '../helpers/http.js';
import { nodeEnv, randomMasterKey, randomToken, spawnNode, tempDir, type SpawnedNode } from '../helpers/node.js';
import { rawRequest } from '../helpers/raw-http.js';
import { LocalKms, parseLocalMasterKey } from '../../server/kms/local.js';
import { SeededRng } from '../../server/raft/core/rand.js';
import { openVersion } from '../../server/sealing/envelope.js';

const SEED = process.env.COFFER_FUZZ_SEED ? Number(process.env.COFFER_FUZZ_SEED) : randomInt(2 ** 31);
const COUNT = Number(process.env.COFFER_FUZZ_COUNT ?? 2500);
const FOLLOWER_COUNT = Math.ceil(COUNT / 5);
const MAX_VALUE = 512;
const BODY_LIMIT = MAX_VALUE * 6 + 4096;

const ERROR_CODES = new Set([
  'bad_request', 'invalid_name', 'payload_too_large', 'unauthorized', 'forbidden', 'ip_not_allowed', 'not_found', 'conflict',
  'cas_mismatch', 'kms_unavailable', 'integrity_error', 'no_leader', 'audit_unavailable', 'insufficient_storage', 'internal',
]);
const DOCUMENTED_5XX = new Set(['503 no_leader', '503 kms_unavailable', '503 audit_unavailable', '507 insufficient_storage']);
/** Not audited (DESIGN §4). */
const UNAUDITED_PATHS = new Set(['/v1/health', '/v1/ready', '/metrics']);

// ---- seeded randomness ------------------------------------------------------

/** The Raft simulation's seeded generator (mulberry32), with what requests need on top. */
class Rng extends SeededRng {
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  ascii(n: number, alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
  /** A value string: ASCII, unicode (astral included) or control characters. */
  text(n: number): string {
    const pools = ['abcdefghijklmnopqrstuvwxyz0123456789', 'éü€中文😀🔑', '\u0000\u0001\t\n\r"\\\u007f\u2028', ' !#$%&()*+,-./:;<=>?@[]^_`{|}~'];
    let s = '';
    for (let i = 0; i < n; i++) {
      const pool = [...this.pick(pools)];
      s += pool[this.int(pool.length)]!;
    }
    return s;
  }
}

// ---- what is sent ------------------------------------------------------------

interface HttpCase {
  kind: 'http';
  route: string;
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  body?: Buffer;
  localAddress: string;
}

interface RawCase {
  kind: 'raw';
  route: string;
  bytes: Buffer;
}

type Case = HttpCase | RawCase;

interface Tokens {
  admin: string;
  limited: string;
  revoked: string;
}

const VALID_NAMES = ['fz/a', 'fz/b', 'fz/new', 'fz/deep/x/y', 'other/x', 'other/new', 'A-Z_0.9/x', 'x'.repeat(256)];
const INVALID_NAMES = [
  '..', 'a//b', '%2e%2e/x', 'a%zz', '%', 'x'.repeat(257), 'caf%C3%A9', 'a%00b', 'a%0Ab', 'a/', '.', 'a/./b', 'fz/../other/x',
  'a:b', 'a*', 'a+b', '~a', 'a%20b', '%E0%A4%A', 'a\\b', `${'a/'.repeat(200)}b`,
];
const IDENTS = ['fz-t1', 'fz-t2', 'fz-role', 'fz-lim', 'fz-revoked', 'fz-limited', 'admin', 'bootstrap-admin', 'nope'];
const BAD_IDENTS = ['..', 'a%2Fb', 'x'.repeat(200), 'a%20b', '%zz', 'a.b', '-a', 'x'.repeat(2000)];
const ACTIONS = ['create', 'update', 'delete', 'rotate', 'list', 'read_metadata', 'manage_tokens', 'manage_roles', 'admin', 'read', 'ADMIN', ''];
const RULE_PATHS = ['fz/*', 'fz/a', '+', '*', 'other/+/x', 'a//b', '**', '../x', '', 'x'.repeat(300)];

function authHeader(rng: Rng, t: Tokens): string | string[] | undefined {
  switch (rng.int(10)) {
    case 0:
    case 1:
      return undefined;
    case 2:
      return `Bearer ${rng.ascii(rng.int(60))}`;
    case 3:
      return rng.pick(['Bearer', 'Bearer ', `Basic ${Buffer.from('a:b').toString('base64')}`, `bearer ${t.admin}`, `Bearer  ${t.admin}`, `Bearer ${t.admin}x`, 'Bearer \u00e9', [`Bearer ${t.admin}`, `Bearer ${t.limited}`]]);
    case 4:
      return `Bearer ${t.revoked}`;
    case 5:
    case 6:
      return `Bearer ${t.limited}`;
    default:
      return `Bearer ${t.admin}`;
  }
}

/** A JSON body: the valid one most of the time, else one of many ways to break it. */
function jsonBody(rng: Rng, valid: () => Record<string, unknown>): Buffer {
  const v = valid();
  if (rng.chance(0.5)) return Buffer.from(JSON.stringify(v));
  const keys = Object.keys(v);
  const wrong = [123, -1, 1.5, true, null, [], {}, ['x'], 'x', 1e21, -0, Number.MAX_SAFE_INTEGER + 2];
  switch (rng.int(16)) {
    case 0:
      return Buffer.alloc(0);
    case 1:
      return Buffer.from(rng.pick(['null', '[]', '"x"', '42', 'true', '{}', ' ', '{"a":1}{"b":2}']));
    case 2: {
      const s = JSON.stringify(v);
      return Buffer.from(s.slice(0, rng.int(s.length)));
    }
    case 3:
      if (keys.length > 0) delete v[rng.pick(keys)];
      return Buffer.from(JSON.stringify(v));
    case 4:
      v[rng.pick(['extra', '__proto__', 'constructor', 'Value', ''])] = rng.pick(wrong);
      return Buffer.from(JSON.stringify(v));
    case 5:
      if (keys.length > 0) v[rng.pick(keys)] = rng.pick(wrong);
      return Buffer.from(JSON.stringify(v));
    case 6:
      // Numbers JSON.stringify cannot write.
      return Buffer.from(JSON.stringify(v).replace(/^\{/, `{"cas":${rng.pick(['1e400', '-1e400', '123456789012345678901234567890', '1.0', '-0', '0x10', 'NaN', 'Infinity'])},`));
    case 7: {
      // Invalid UTF-8 inside a string.
      const s = JSON.stringify(v);
      const at = s.indexOf('"', s.indexOf(':') + 1) + 1 || 1;
      return Buffer.concat([Buffer.from(s.slice(0, at)), Buffer.from(rng.pick([[0xff], [0xc0, 0x80], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80]])), Buffer.from(s.slice(at))]);
    }
    case 8: {
      // Lone surrogates written as escapes.
      const s = JSON.stringify(v);
      const at = s.indexOf('"', s.indexOf(':') + 1) + 1 || 1;
      return Buffer.from(s.slice(0, at) + rng.pick(['\\ud800', '\\udfff', '\\ude00\\ud83d', 'x\\ud83d']) + s.slice(at));
    }
    case 9:
      return Buffer.from('['.repeat(rng.pick([50, 5000])) + ']'.repeat(rng.pick([0, 50, 5000])));
    case 10:
      return Buffer.from(`{"value":"${'v'.repeat(rng.pick([MAX_VALUE + 1, BODY_LIMIT + 10]))}"}`);
    case 11:
      return Buffer.from(`{"value":"${'\\u0041'.repeat(MAX_VALUE + 1)}"}`);
    case 12:
      return rng.bytes(rng.int(64) + 1);
    case 13:
      return Buffer.from(JSON.stringify(v).replace('{', '{"a":1,"a":2,'));
    case 14:
      return Buffer.from(`\ufeff${JSON.stringify(v)}`);
    default:
      return Buffer.from(JSON.stringify({ ...v, value: rng.text(rng.int(40)) }));
  }
}

const pathOf = (rng: Rng, valid: readonly string[], invalid: readonly string[]) => (rng.chance(0.8) ? rng.pick(valid) : rng.pick(invalid));

interface Route {
  route: string;
  method: string;
  path: (rng: Rng) => string;
  query?: (rng: Rng) => string;
  body?: (rng: Rng, admin: boolean, image: Buffer) => { body: Buffer; type: string } | undefined;
}

const json = (rng: Rng, valid: () => Record<string, unknown>) => ({ body: jsonBody(rng, valid), type: 'application/json' });

const ROUTES: Route[] = [
  {
    route: 'secret.read',
    method: 'GET',
    path: (r) => `/v1/secrets/${pathOf(r, VALID_NAMES, INVALID_NAMES)}`,
    query: (r) => r.pick(['', '', '?version=1', '?version=2', '?consistency=stale', '?version=0', '?version=abc', '?version=99999999999', '?consistency=weak', '?version=1&version=2', '?x=1', '?version=%zz']),
  },
  {
    route: 'secret.write',
    method: 'PUT',
    path: (r) => `/v1/secrets/${pathOf(r, VALID_NAMES, INVALID_NAMES)}`,
    body: (r) => json(r, () => ({ value: r.text(r.int(30) + 1), ...(r.chance(0.3) ? { cas: r.int(4) } : {}) })),
  },
  {
    route: 'secret.rotate',
    method: 'POST',
    path: (r) => `/v1/secrets/${pathOf(r, VALID_NAMES, INVALID_NAMES)}:rotate`,
    body: (r) =>
      r.chance(0.3) ? undefined : json(r, () => ({ ...(r.chance(0.7) ? { length: r.pick([8, 32, MAX_VALUE, MAX_VALUE + 1, 7, 4097]) } : {}), ...(r.chance(0.5) ? { charset: r.pick(['alphanumeric', 'hex', 'base64url', 'printable', 'emoji']) } : {}) })),
  },
  { route: 'secret.delete', method: 'DELETE', path: (r) => `/v1/secrets/${pathOf(r, VALID_NAMES, INVALID_NAMES)}` },
  { route: 'secret.read_metadata', method: 'GET', path: (r) => `/v1/metadata/${pathOf(r, VALID_NAMES, INVALID_NAMES)}` },
  {
    route: 'secret.list',
    method: 'GET',
    path: () => '/v1/metadata',
    query: (r) =>
      r.pick([
        '', '?prefix=fz/', '?prefix=fz/&limit=1', '?limit=1000', '?limit=0', '?limit=-1', '?prefix=a%20b', '?prefix=%00', '?cursor=***', '?cursor=ZnovYQ', '?other=1', `?prefix=${'a'.repeat(300)}`,
        // One folder level.
        '?delimiter=/', '?prefix=fz/&delimiter=/', '?prefix=fz/&delimiter=/&limit=1', '?delimiter=%2F', '?delimiter=.', '?delimiter=', '?delimiter=/&delimiter=/', '?prefix=fz&delimiter=/',
      ]),
  },
  {
    route: 'token.create',
    method: 'POST',
    path: () => '/v1/tokens',
    body: (r) => json(r, () => ({ name: r.chance(0.9) ? r.pick(IDENTS) : r.pick(BAD_IDENTS), role: r.pick(['admin', 'fz-limited', 'fz-role', 'nope', '../admin']), ...(r.chance(0.3) ? { ttl_secs: r.pick([1, 60, 0, -1, 1e12]) } : {}) })),
  },
  { route: 'token.list', method: 'GET', path: () => '/v1/tokens' },
  { route: 'token.read', method: 'GET', path: (r) => `/v1/tokens/${r.chance(0.85) ? r.pick(IDENTS) : r.pick(BAD_IDENTS)}` },
  { route: 'auth.self', method: 'GET', path: () => '/v1/auth/self', query: (r) => r.pick(['', '', '', '?x=1', '?name=bootstrap-admin']) },
  {
    route: 'token.revoke',
    method: 'DELETE',
    // Never the bootstrap token with admin rights: the run needs it (see `protect`).
    path: (r) => `/v1/tokens/${r.chance(0.85) ? r.pick(IDENTS) : r.pick(BAD_IDENTS)}`,
  },
  {
    route: 'role.put',
    method: 'PUT',
    path: (r) => `/v1/roles/${r.chance(0.85) ? r.pick(['fz-role', 'fz-limited', 'admin', 'fz-new']) : r.pick(BAD_IDENTS)}`,
    body: (r) => json(r, () => ({ rules: Array.from({ length: r.int(3) }, () => ({ paths: Array.from({ length: r.int(3) + 1 }, () => r.pick(RULE_PATHS)), actions: Array.from(new Set(Array.from({ length: r.int(3) + 1 }, () => r.pick(ACTIONS)))) })) })),
  },
  { route: 'role.get', method: 'GET', path: (r) => `/v1/roles/${r.chance(0.85) ? r.pick(['fz-role', 'fz-limited', 'admin', 'nope']) : r.pick(BAD_IDENTS)}` },
  { route: 'role.delete', method: 'DELETE', path: (r) => `/v1/roles/${r.chance(0.85) ? r.pick(['fz-role', 'fz-limited', 'admin', 'nope']) : r.pick(BAD_IDENTS)}` },
  { route: 'role.list', method: 'GET', path: () => '/v1/roles' },
  {
    route: 'admin.audit.read',
    method: 'GET',
    path: () => '/v1/admin/audit',
    query: (r) => r.pick(['', '?limit=5', '?since=1&limit=2', '?limit=1001', '?limit=0', '?since=-1', '?since=1.5', '?limit=1&limit=2', '?extra=1']),
  },
  { route: 'admin.audit.verify', method: 'GET', path: () => '/v1/admin/audit/verify', query: (r) => r.pick(['', '', '?x=1']) },
  { route: 'admin.kms.rewrap', method: 'POST', path: () => '/v1/admin/kms/rewrap', body: (r) => (r.chance(0.5) ? undefined : json(r, () => ({}))) },
  { route: 'admin.kms.status', method: 'GET', path: () => '/v1/admin/kms/rewrap/status' },
  { route: 'admin.cluster.read', method: 'GET', path: () => '/v1/admin/cluster' },
  {
    route: 'admin.cluster.add_peer',
    method: 'POST',
    path: () => '/v1/admin/cluster/peers',
    // With admin rights only bodies that fail validation: a valid one would add a voter that never
    // answers and take the single node's quorum away for the rest of the run.
    body: (r, admin) =>
      json(r, () =>
        admin
          ? r.pick([{ id: 'n 2', address: '127.0.0.9:1' }, { id: 'n2' }, { address: '127.0.0.9:1' }, { id: 'n2', address: 'nowhere' }, { id: 'n2', address: '127.0.0.9:99999' }, { id: '../x', address: '127.0.0.9:1' }])
          : { id: 'n2', address: '127.0.0.9:1' },
      ),
  },
  // n2 and n3 are members of the follower run's cluster: `httpCase` keeps admin rights away from them.
  { route: 'admin.cluster.remove_peer', method: 'DELETE', path: (r) => `/v1/admin/cluster/peers/${r.pick(['n2', 'n3', 'ghost', 'n%201', '..', 'x'.repeat(100)])}` },
  { route: 'admin.cluster.members.read', method: 'GET', path: () => '/v1/admin/cluster/members' },
  {
    route: 'admin.cluster.members.declare',
    method: 'PUT',
    path: () => '/v1/admin/cluster/members',
    // With admin rights only bodies that fail validation: a valid list would have the autopilot add or remove
    // members of the cluster under test (the fuzz is about requests, not about reshaping it).
    body: (r, admin) =>
      json(r, () =>
        admin
          ? r.pick([
              { members: [] },
              { members: [{ id: 'n 1', address: '127.0.0.9:1' }] },
              { members: [{ id: 'n1' }] },
              { members: [{ id: 'n1', address: 'nowhere' }] },
              { members: 'n1' },
              { members: [{ id: 'n1', address: '127.0.0.9:1', voter: true }] },
              { members: Array.from({ length: 100 }, (_, i) => ({ id: `n${i}`, address: '127.0.0.9:1' })) },
            ])
          : { members: [{ id: 'n1', address: '127.0.0.9:1' }] },
      ),
  },
  { route: 'admin.cluster.members.clear', method: 'DELETE', path: () => '/v1/admin/cluster/members' },
  {
    route: 'admin.cluster.transfer_leadership',
    method: 'POST',
    path: () => '/v1/admin/cluster/transfer-leadership',
    body: (r) => (r.chance(0.3) ? undefined : json(r, () => (r.chance(0.5) ? {} : { to: r.pick(['n1', 'n2', 'ghost', '..']) }))),
  },
  { route: 'admin.snapshot.save', method: 'GET', path: () => '/v1/admin/snapshot' },
  {
    route: 'admin.snapshot.restore',
    method: 'POST',
    path: () => '/v1/admin/snapshot',
    body: (r, _admin, image) => {
      switch (r.int(6)) {
        case 0:
          return { body: image, type: 'application/octet-stream' }; // a real image: restores the state of the setup
        case 1: {
          const b = Buffer.from(image);
          for (let i = 0; i < 8; i++) b[r.int(b.length)] = r.int(256);
          return { body: b, type: 'application/octet-stream' };
        }
        case 2:
          return { body: image.subarray(0, r.int(image.length)), type: 'application/octet-stream' };
        case 3:
          return { body: r.bytes(r.int(200)), type: 'application/octet-stream' };
        case 4:
          return json(r, () => ({ image: 'x' }));
        default:
          return { body: Buffer.from('SQLite format 3\u0000' + r.ascii(100)), type: 'application/octet-stream' };
      }
    },
  },
  { route: 'health', method: 'GET', path: () => '/v1/health' },
  { route: 'ready', method: 'GET', path: () => '/v1/ready' },
  { route: 'metrics.read', method: 'GET', path: () => '/metrics' },
  { route: 'openapi', method: 'GET', path: () => '/v1/openapi.json' },
  {
    route: 'unrouted',
    method: 'GET',
    path: (r) => r.pick(['/', '/v1', '/v2/secrets/fz/a', '/v1/secrets', '/v1/secrets/', '/V1/SECRETS/fz/a', '/%2e%2e/etc/passwd', '/v1/admin/../secrets/fz/a', '/v1/admin/kms/nothing', `/${'x'.repeat(5000)}`, '/v1/tokens/', '//v1/health']),
  },
];

const METHODS = ['GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'PROPFIND', 'SEARCH', 'TRACE', 'LOCK', 'PURGE'];
const CONTENT_TYPES = ['text/plain', 'application/json; charset=utf-8', 'APPLICATION/JSON', 'application/octet-stream', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json, text/plain', 'application/jsonx', ''];
const HOSTS = ['attacker.example', 'localhost', 'vault.fuzz.svc:8200', 'VAULT.FUZZ.SVC', '127.0.0.1', '[::1]:1', 'localhost.attacker.example', '127.0.0.1.nip.io', '', 'a'.repeat(300), 'localhost:x'];

function httpCase(rng: Rng, t: Tokens, image: Buffer, members: readonly string[]): HttpCase {
  const r = rng.pick(ROUTES);
  const method = rng.chance(0.1) ? rng.pick(METHODS) : r.method;
  let p = r.path(rng) + (r.query ? r.query(rng) : rng.chance(0.05) ? rng.pick(['?x=1', '?%zz', `?${'q'.repeat(3000)}=1`, '?a=1&a=2']) : '');
  const headers: Record<string, string | string[]> = {};
  const auth = authHeader(rng, t);
  if (auth !== undefined) headers.authorization = auth;
  // Any header that could carry admin rights (other spellings, two lines) counts as admin here.
  const admin = auth !== undefined && (Array.isArray(auth) || auth.includes(t.admin));
  // The run needs its admin token: never revoke it with admin rights.
  if (r.route === 'token.revoke' && p.endsWith('/bootstrap-admin') && auth !== undefined) p = '/v1/tokens/nope';
  // Nor remove a member of the cluster under test (the fuzz is about requests, not about shrinking it).
  if (r.route === 'admin.cluster.remove_peer' && admin && members.some((m) => p.endsWith(`/${m}`))) p = '/v1/admin/cluster/peers/ghost';
  let body: Buffer | undefined;
  const b = r.body?.(rng, admin, image);
  if (b !== undefined) {
    body = b.body;
    headers['content-type'] = rng.chance(0.1) ? rng.pick(CONTENT_TYPES) : b.type;
    if (headers['content-type'] === '') delete headers['content-type'];
  } else if (rng.chance(0.05)) {
    body = rng.chance(0.5) ? Buffer.from('{}') : rng.bytes(rng.int(32));
    headers['content-type'] = rng.pick(CONTENT_TYPES) || 'application/json';
  }
  // Node's client frames a body on its own only for some methods (not GET, HEAD, DELETE, OPTIONS…): say how, always.
  if (body !== undefined) {
    if (rng.chance(0.5)) headers['content-length'] = String(body.length);
    else headers['transfer-encoding'] = 'chunked';
  }
  if (rng.chance(0.05)) headers.origin = rng.pick(['http://evil', 'null', 'http://127.0.0.1', 'https://vault.fuzz.svc']);
  if (rng.chance(0.04)) headers[rng.pick(['sec-fetch-site', 'sec-fetch-mode', 'sec-fetch-dest', 'sec-fetch-user'])] = rng.pick(['cross-site', 'same-origin', 'no-cors', 'cors', 'empty', 'none', '?1']);
  if (rng.chance(0.08)) headers.host = rng.pick(HOSTS);
  if (rng.chance(0.1)) headers['x-forwarded-for'] = rng.pick(['127.0.0.1', '10.0.0.1, 127.0.0.1', '127.0.0.1, 10.0.0.1', 'garbage', '::1', '127.0.0.3', ' , ', ['127.0.0.1', '127.0.0.3']]);
  if (rng.chance(0.02)) headers.expect = rng.pick(['100-continue', 'something-else']);
  if (rng.chance(0.02)) headers['x-request-id'] = 'client-chosen-id';
  const localAddress = rng.pick(['127.0.0.1', '127.0.0.1', '127.0.0.1', '127.0.0.1', '127.0.0.2', '127.0.0.3']);
  return { kind: 'http', route: r.route, method, path: p, headers, ...(body === undefined ? {} : { body }), localAddress };
}

/** Bytes Node's parser must refuse (or, a few, accept), sent whole over one connection that asks to be closed. */
function rawCase(rng: Rng, t: Tokens): RawCase {
  // Never the unaudited paths: every raw exchange is expected to leave one record per answer.
  const target = rng.pick([
    '/v1/secrets/fz/a', '/v1/metadata?limit=1', '/v1/tokens', `/v1/secrets/a${String.fromCharCode(rng.int(32))}b`, '/v1/secrets/a\u007fb',
    '/v1/secrets/café', '/v1/secrets/a b', `/v1/secrets/${'x'.repeat(rng.pick([9000, 20000]))}`, '*', 'http://attacker.example/v1/secrets/fz/a',
    'http://127.0.0.1/v1/metadata?limit=1', 'fz/a', '/v1/secrets/😀',
  ]);
  const method = rng.pick(['FOO', 'BREW', 'G3T', 'get', 'CONNECT', 'GET', 'GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'M-SEARCH', 'G\u0000T', 'GE']);
  const version = rng.pick(['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.2', 'HTTP/1', 'http/1.1', '']);
  const lines: string[] = [];
  switch (rng.int(12)) {
    case 0:
      return { kind: 'raw', route: 'raw.garbage', bytes: Buffer.concat([Buffer.from(rng.ascii(1, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ{[<')), rng.bytes(rng.int(200)), Buffer.from('\r\n\r\n')]) };
    case 1:
      return { kind: 'raw', route: 'raw.h2', bytes: Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n') };
    default:
      break;
  }
  lines.push(`${method} ${target}${version ? ` ${version}` : ''}`);
  if (rng.chance(0.9)) lines.push(`Host: ${rng.pick(['localhost', '127.0.0.1', 'attacker.example', ''])}`);
  if (rng.chance(0.4)) lines.push(`Authorization: Bearer ${rng.pick([t.admin, t.limited, t.revoked, 'x'])}`);
  let body = Buffer.alloc(0);
  switch (rng.int(14)) {
    case 0:
      lines.push(`X-Big: ${'a'.repeat(rng.pick([17_000, 70_000]))}`);
      break;
    case 1:
      lines.push('broken header line');
      break;
    case 2:
      lines.push(`X-A: a${rng.pick(['\u0000', '\u0001', '\u007f'])}b`);
      break;
    case 3:
      lines.push('Bad Name: x');
      break;
    case 4:
      lines.push('X-Fold: a', '  continued');
      break;
    case 5:
      body = Buffer.from('{"value":"x"}');
      lines.push('Content-Type: application/json', `Content-Length: ${body.length}`, `Content-Length: ${body.length + 1}`);
      break;
    case 6:
      body = Buffer.from('0\r\n\r\n');
      lines.push('Content-Length: 5', 'Transfer-Encoding: chunked');
      break;
    case 7:
      body = Buffer.from(rng.pick(['zz\r\n\r\n', '5\r\n{"val\r\nzz\r\n\r\n', '3\r\nabcdef\r\n0\r\n\r\n', '-1\r\n\r\n']));
      lines.push('Content-Type: application/json', 'Transfer-Encoding: chunked');
      break;
    case 8:
      lines.push(`Content-Length: ${rng.pick(['abc', '-1', '1.5', '0x10', '99999999999999999999', ' '])}`);
      break;
    case 9:
      lines.push('Transfer-Encoding: gzip, chunked, identity');
      break;
    case 10: {
      body = Buffer.concat([Buffer.from('{"value":"'), rng.bytes(8), Buffer.from('"}')]);
      lines.push('Content-Type: application/json', `Content-Length: ${body.length}`);
      break;
    }
    default: {
      body = Buffer.from(JSON.stringify({ value: rng.ascii(12) }));
      lines.push('Content-Type: application/json', `Content-Length: ${body.length}`);
    }
  }
  lines.push('Connection: close');
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  // Unicode in the target goes as its UTF-8 bytes.
  const startLine = Buffer.from(lines[0]!, 'utf8');
  const rest = head.subarray(Buffer.byteLength(lines[0]!, 'latin1'));
  return { kind: 'raw', route: 'raw.request', bytes: Buffer.concat([startLine, rest, body]) };
}

// ---- sending -----------------------------------------------------------------

interface Answer {
  status: number;
  contentType: string;
  body: Buffer;
  ids: string[];
}

function sendHttp(base: string, c: HttpCase): Promise<Answer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method: c.method, path: c.path, headers: c.headers, localAddress: c.localAddress, agent: false, setHost: c.headers.host === undefined }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const id = res.headers['x-request-id'];
        resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks), ids: typeof id === 'string' ? [id] : [] });
      });
      res.on('error', reject);
    });
    const timer = setTimeout(() => req.destroy(new Error('no answer within 15 s')), 15_000);
    req.on('close', () => clearTimeout(timer));
    req.on('error', reject);
    if (c.body !== undefined) req.write(c.body);
    req.end();
  });
}

async function sendRaw(base: string, c: RawCase): Promise<Answer> {
  const res = await rawRequest(base, c.bytes, { untilClose: true, timeoutMs: 8000 });
  if (!res.closed) throw new Error('the server neither answered nor closed within 8 s');
  // Every answer on the connection is counted for the audit check; the first is the one judged.
  const ids = [...res.raw.toString('latin1').matchAll(/\r\nx-request-id: ([0-9a-f-]{36})\r\n/gi)].map((m) => m[1]!);
  const start = res.raw.indexOf('\r\n\r\n') + 4;
  const length = Number(res.headers['content-length'] ?? res.raw.length);
  return { status: res.status, contentType: res.headers['content-type'] ?? '', body: res.raw.subarray(start, start + length), ids };
}

// ---- what is checked -----------------------------------------------------------

/** A digest of everything a request could change: secrets, versions (not the re-wrap columns), tokens, roles. */
function stateDigest(db: Database.Database): string {
  const h = createHash('sha256');
  const rows = (sql: string) => db.prepare(sql).all() as Record<string, unknown>[];
  const put = (table: string, list: Record<string, unknown>[]) => {
    h.update(table);
    for (const r of list) h.update(JSON.stringify(r, (_k, v) => (v && typeof v === 'object' && v.type === 'Buffer' ? Buffer.from(v.data).toString('hex') : v)));
  };
  db.transaction(() => {
    put('secrets', rows('SELECT * FROM secrets ORDER BY name'));
    put('versions', rows('SELECT * FROM secret_versions ORDER BY name, version').map(({ wrapped_dek: _w, kms_key_id: _k, wrapped_rotation_at: _r, ...keep }) => keep));
    put('tokens', rows('SELECT * FROM tokens ORDER BY name'));
    put('roles', rows('SELECT * FROM roles ORDER BY name'));
  })();
  return h.digest('hex');
}

/**
 * What an integrity_error on a value read was: the stored row is opened
 * offline with the target's master key (a row that opens means the server's
 * read path failed, not the data), and the server's own log line says which
 * step failed. Names no value and no key material.
 */
async function integrityDiagnosis(t: Target, stateDb: Database.Database, c: HttpCase, a: Answer): Promise<string> {
  const m = /^\/v1\/secrets\/([^?]+)(?:\?(.*))?$/.exec(c.path);
  if (c.method !== 'GET' || !m) return '';
  let stored = 'not a value read';
  try {
    const name = decodeURIComponent(m[1]!);
    const asked = new URLSearchParams(m[2] ?? '').get('version');
    const row = stateDb
      .prepare(
        asked === null
          ? 'SELECT v.version, v.ciphertext, v.nonce, v.wrapped_dek, v.kms_key_id FROM secrets s JOIN secret_versions v ON v.name = s.name AND v.version = s.current_version WHERE s.name = ?'
          : 'SELECT version, ciphertext, nonce, wrapped_dek, kms_key_id FROM secret_versions WHERE name = ? AND version = ?',
      )
      .get(...(asked === null ? [name] : [name, Number(asked)])) as { version: number; ciphertext: Buffer; nonce: Buffer; wrapped_dek: Buffer; kms_key_id: string } | undefined;
    if (!row) stored = 'the row is gone now';
    else {
      const kms = new LocalKms(parseLocalMasterKey(t.masterKey));
      try {
        const plain = await openVersion(kms, name, row.version, { ciphertext: row.ciphertext, nonce: row.nonce, wrappedDek: row.wrapped_dek, kmsKeyId: row.kms_key_id });
        plain.fill(0);
        stored = `the stored row (version ${row.version}) opens offline: the server's read path failed, not the data`;
      } catch (err) {
        stored = `the stored row (version ${row.version}) does not open offline either: ${(err as Error).message}`;
      } finally {
        kms.close();
      }
    }
  } catch (err) {
    stored = `could not check the stored row: ${(err as Error).message}`;
  }
  // The server logs the failing step (wrapped DEK or ciphertext) by name and message only.
  const logged = t.proc.output().split('\n').filter((l) => l.includes('"request failed"') && a.ids.some((id) => l.includes(id)));
  const step = logged.map((l) => {
    try {
      const e = (JSON.parse(l) as { err?: { name?: string; message?: string } }).err;
      return `${e?.name}: ${e?.message}`;
    } catch {
      return printable(l);
    }
  });
  return ` (${stored}; server log: ${step.length ? step.join(' | ') : 'no line for this request'})`;
}

const printable = (s: string) => JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…(${s.length})` : s);

function describeCase(i: number, c: Case): string {
  if (c.kind === 'http') return `#${i} ${c.method} ${printable(c.path)} from ${c.localAddress}`;
  const line = c.bytes.subarray(0, Math.min(c.bytes.indexOf('\r\n') >>> 0, 80)).toString('latin1');
  return `#${i} raw ${printable(line)}`;
}

// ---- the run ---------------------------------------------------------------------

interface Target {
  /** The API the requests go to. */
  url: string;
  proc: SpawnedNode;
  /** That node's data folder: its audit.db and state.db are read (read-only) to check the run. */
  dataDir: string;
  /** Node ids of the cluster, protected from removal. */
  members: string[];
  /**
   * Waits until the target has applied every acknowledged write (a follower applies after the
   * leader answered); returns the request id of what it sent, which is audited like the rest.
   */
  settle?: () => Promise<string | undefined>;
  /** VAULT_LOCAL_MASTER_KEY of the target: an integrity_error on a read is judged against the stored row. */
  masterKey: string;
}

interface Fixture {
  tokens: Tokens;
  image: Buffer;
}

/** Roles, tokens (one limited, one revoked) and secrets every run starts from, and a snapshot image of them. */
async function prepare(url: string, admin: string): Promise<Fixture> {
  const call = async (method: string, p: string, body?: unknown) => {
    const res = await request(url, method, p, { token: admin, ...(body === undefined ? {} : { body }) });
    expect(res.status, `${method} ${p}: ${res.text}`).toBeLessThan(300);
    return res;
  };
  await call('PUT', '/v1/roles/fz-limited', { rules: [{ paths: ['fz/*'], actions: ['create', 'read_metadata', 'list'] }] });
  const limited = (await call('POST', '/v1/tokens', { name: 'fz-lim', role: 'fz-limited' })).body.token as string;
  const revoked = (await call('POST', '/v1/tokens', { name: 'fz-revoked', role: 'admin' })).body.token as string;
  await call('DELETE', '/v1/tokens/fz-revoked');
  for (const name of ['fz/a', 'fz/b', 'other/x']) await call('PUT', `/v1/secrets/${name}`, { value: `seed-${name}` });
  const image = (await sendHttp(url, { kind: 'http', route: 'setup', method: 'GET', path: '/v1/admin/snapshot', headers: { authorization: `Bearer ${admin}` }, localAddress: '127.0.0.1' })).body;
  expect(image.subarray(0, 15).toString()).toBe('SQLite format 3');
  return { tokens: { admin, limited, revoked }, image };
}

/** Sends `count` seeded cases to the target; returns what went wrong (empty when nothing did). */
async function fuzz(t: Target, fx: Fixture, seed: number, count: number): Promise<string[]> {
  const rng = new Rng(seed);
  const failures: string[] = [];
  const fail = (i: number, c: Case, problem: string) => {
    if (failures.length < 60) failures.push(`${describeCase(i, c)}: ${problem}`);
  };
  const auditDb = new Database(path.join(t.dataDir, 'audit.db'), { readonly: true, fileMustExist: true });
  const stateDb = new Database(path.join(t.dataDir, 'state.db'), { readonly: true, fileMustExist: true });
  const baseline = (auditDb.prepare('SELECT coalesce(max(id), 0) AS n FROM audit_log').get() as { n: number }).n;
  /** Request id → how many records it should have (0 for the unaudited routes). */
  const expected = new Map<string, number>();
  const hits = new Map<string, number>();
  /** route + status + code → count; printed with COFFER_FUZZ_STATS=1 to see what a seed covers. */
  const outcomes = new Map<string, number>();
  const settle = async () => {
    const id = await t.settle?.();
    if (id !== undefined) expected.set(id, 1);
  };
  await settle();
  let digest = stateDigest(stateDb);

  try {
    for (let i = 0; i < count; i++) {
      const c: Case = rng.chance(0.2) ? rawCase(rng, fx.tokens) : httpCase(rng, fx.tokens, fx.image, t.members);
      hits.set(c.route, (hits.get(c.route) ?? 0) + 1);
      if (process.env.COFFER_FUZZ_SHOW?.split(',').includes(String(i))) console.log(i, c.kind === 'http' ? { ...c, body: c.body?.subarray(0, 200).toString('latin1') } : c.bytes.subarray(0, 300).toString('latin1'));
      let a: Answer;
      try {
        a = c.kind === 'http' ? await sendHttp(t.url, c) : await sendRaw(t.url, c);
      } catch (err) {
        fail(i, c, `no answer (${(err as Error).message})`);
        if (t.proc.proc.exitCode !== null) break;
        continue;
      }
      if (a.status === 0) fail(i, c, 'no HTTP answer');
      if (a.ids.length === 0) fail(i, c, `status ${a.status} without x-request-id`);
      for (const id of a.ids) {
        if (expected.has(id)) fail(i, c, 'request id seen twice');
        const unaudited = c.kind === 'http' && (c.method === 'GET' || c.method === 'HEAD') && UNAUDITED_PATHS.has(c.path.split('?')[0]!);
        expected.set(id, unaudited ? 0 : 1);
      }

      const pathname = c.kind === 'http' ? c.path.split('?')[0]! : '';
      const statusBody = pathname === '/v1/ready' || pathname === '/v1/health';
      let code = '';
      if (a.status >= 400 && !(c.kind === 'http' && c.method === 'HEAD') && !(statusBody && a.status === 503)) {
        let parsed: unknown = null;
        try {
          parsed = JSON.parse(a.body.toString('utf8'));
        } catch {
          // judged below
        }
        const e = (parsed as { error?: { code?: unknown; message?: unknown } } | null)?.error;
        code = typeof e?.code === 'string' ? e.code : '';
        const shapeOk =
          parsed !== null && typeof parsed === 'object' && Object.keys(parsed).join() === 'error' &&
          e !== undefined && e !== null && Object.keys(e).sort().join() === 'code,message' && ERROR_CODES.has(code) && typeof e.message === 'string';
        // The body itself is not printed: it could echo a value.
        if (!shapeOk) fail(i, c, `status ${a.status}: error body not in the contract shape (${parsed === null ? `${a.body.length} bytes, not JSON` : `keys ${Object.keys(parsed as object).join(',')}${e ? ` / ${Object.keys(e).join(',')}` : ''}, code ${printable(code)}`})`);
        if (!/^application\/json/.test(a.contentType)) fail(i, c, `status ${a.status}: content-type ${a.contentType}`);
        if (/\n\s+at |node_modules|\.[cm]?[jt]s:\d+/.test(a.body.toString('utf8')) || a.body.includes(t.dataDir)) fail(i, c, `status ${a.status}: internals in the body`);
      }
      if (a.status >= 500 && !DOCUMENTED_5XX.has(`${a.status} ${code}`) && !(pathname === '/v1/ready' && a.status === 503)) {
        const diagnosis = code === 'integrity_error' && c.kind === 'http' ? await integrityDiagnosis(t, stateDb, c, a) : '';
        // A restored image may carry a corrupted ciphertext that still has the right shape (restore checks shapes,
        // not every AEAD tag): refusing to serve that row is exactly what integrity_error is for.
        if (!diagnosis.includes('does not open offline either')) fail(i, c, `undocumented ${a.status} ${code}${diagnosis}`);
      }
      const key = `${c.route} ${a.status}${code ? ` ${code}` : ''}`;
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);

      // A refusal changes nothing; an accepted change moves the reference.
      await settle();
      const now = stateDigest(stateDb);
      if (a.status >= 400 && now !== digest) fail(i, c, `status ${a.status} ${code} but state.db changed`);
      digest = now;
      if (t.proc.proc.exitCode !== null) {
        fail(i, c, `the server exited with ${t.proc.proc.exitCode}`);
        break;
      }
    }

    // Alive and healthy at the end.
    if (t.proc.proc.exitCode !== null) failures.push(`the server process exited with ${t.proc.proc.exitCode}`);
    else {
      const health = await request(t.url, 'GET', '/v1/health');
      if (health.status !== 200 || health.body?.status !== 'ok') failures.push(`unhealthy at the end: ${health.status} ${printable(health.text)}`);
    }

    // Exactly one record per answered request (none for health, ready, metrics), and none for anything else.
    const counts = new Map<string, number>();
    for (const r of auditDb.prepare('SELECT request_id FROM audit_log WHERE id > ?').all(baseline) as { request_id: string }[]) {
      counts.set(r.request_id, (counts.get(r.request_id) ?? 0) + 1);
    }
    const wrong: string[] = [];
    for (const [id, want] of expected) if ((counts.get(id) ?? 0) !== want) wrong.push(`${id}: ${counts.get(id) ?? 0} records, expected ${want}`);
    const strays = auditDb.prepare('SELECT action, status, target FROM audit_log WHERE id > ? AND request_id = ?');
    for (const id of counts.keys()) {
      if (!expected.has(id)) wrong.push(`record(s) for a request no answer named: ${JSON.stringify(strays.all(baseline, id))}`);
    }
    failures.push(...wrong.slice(0, 20).map((w) => `audit: ${w}`));
  } finally {
    auditDb.close();
    stateDb.close();
  }

  if (process.env.COFFER_FUZZ_STATS) console.log([...outcomes].sort().map(([k, n]) => `${n}\t${k}`).join('\n'));
  // Every route of DESIGN §4 was tried, and the raw kinds.
  for (const r of [...ROUTES.map((x) => x.route), 'raw.request', 'raw.garbage']) if (!hits.has(r)) failures.push(`route ${r} never tried`);
  return failures;
}

/** Settings the runs share: a small value limit (413 paths), a host name, a trusted proxy at 127.0.0.3. */
const FUZZ_ENV = {
  VAULT_MAX_VALUE_BYTES: String(MAX_VALUE),
  VAULT_API_HOSTNAMES: 'vault.fuzz.svc',
  VAULT_TRUST_PROXY: 'true',
  VAULT_TRUSTED_PROXIES: '127.0.0.3',
  VAULT_READ_ALLOWLIST: '127.0.0.1',
  VAULT_DEK_CACHE_TTL_SECS: '0',
};

describe(`fuzz (COFFER_FUZZ_SEED=${SEED})`, () => {
  it(`a single node: ${COUNT} random requests, documented statuses only, the error shape, no change from a refusal, one audit record each`, async () => {
    const dataDir = tempDir('coffer-fuzz-');
    const env: Record<string, string> = { ...nodeEnv({ dataDir, masterKey: randomMasterKey(), bootstrapToken: randomToken() }), ...FUZZ_ENV };
    const node = await spawnNode(env);
    try {
      const fx = await prepare(node.url, env.VAULT_BOOTSTRAP_TOKEN!);
      const started = Date.now();
      expect(await fuzz({ url: node.url, proc: node, dataDir, members: ['n1'], masterKey: env.VAULT_LOCAL_MASTER_KEY! }, fx, SEED, COUNT), `replay with COFFER_FUZZ_SEED=${SEED}`).toEqual([]);
      // Kept in budget on a loaded two-core machine.
      expect(Date.now() - started).toBeLessThan(120_000);
    } finally {
      await node.stop();
    }
  }, 180_000);

  it(`a follower of a 3-node cluster: ${FOLLOWER_COUNT} random requests (writes forwarded to the leader), same checks`, async () => {
    const cluster = await TestCluster.start(3, FUZZ_ENV);
    try {
      const lead = await cluster.waitForLeader();
      await cluster.waitForBootstrapToken();
      const follower = cluster.running().find((m) => m.id !== lead)!;
      const fx = await prepare(follower.url, cluster.token);
      // A linearizable read on the follower waits until it has applied what the leader committed.
      const settle = async () => (await sendHttp(follower.url, { kind: 'http', route: 'settle', method: 'GET', path: '/v1/secrets/fz/settle', headers: {}, localAddress: '127.0.0.1' })).ids[0];
      const target = { url: follower.url, proc: follower.proc!, dataDir: follower.dataDir, members: cluster.members.map((m) => m.id), settle, masterKey: cluster.masterKey };
      expect(await fuzz(target, fx, SEED + 1, FOLLOWER_COUNT), `replay with COFFER_FUZZ_SEED=${SEED}`).toEqual([]);
    } finally {
      await cluster.stop();
    }
  }, 180_000);
});
