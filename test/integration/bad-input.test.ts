// Hostile input: invalid names, bodies and query strings. Each gets a clear
// JSON error with a fixed code, changes nothing, and reveals nothing about the
// server's insides (no stack traces, no filesystem paths).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expectError, expectNoInternals } from '../helpers/assert.js';
import { client, request, type HttpResponse, type RequestOptions } from '../helpers/http.js';
import { startTestNode, type TestNode } from '../helpers/node.js';

const MAX = 1024;
let n: TestNode;
let admin: ReturnType<typeof client>;
let snapshot: string;

/** Everything a bad request could have changed, as one comparable string. */
async function state(): Promise<string> {
  const parts = await Promise.all([
    admin.get('/v1/metadata?limit=1000'),
    admin.get('/v1/metadata/bi/x'),
    admin.get('/v1/tokens'),
    admin.get('/v1/roles'),
    client(n.url).get('/v1/secrets/bi/x'),
    admin.get('/v1/admin/cluster'),
  ]);
  for (const p of parts) expect(p.status).toBe(200);
  const cluster = parts.pop()!.body as { commit_index: number; applied_index: number };
  // The commit index moves with any replicated change, including ones the other reads would not show.
  return JSON.stringify([...parts.map((p) => p.body), cluster.commit_index, cluster.applied_index]);
}

function bad(res: HttpResponse, status: number, code: string): void {
  expectError(res, status, code);
  expectNoInternals(res, [n.dataDir]);
}

const send = (method: string, p: string, opts: RequestOptions = {}) => request(n.url, method, p, { token: n.token, ...opts });

beforeAll(async () => {
  n = await startTestNode({ env: { VAULT_MAX_VALUE_BYTES: String(MAX) } });
  admin = client(n.url, n.token);
  expect((await admin.put('/v1/secrets/bi/x', { value: 'original' })).status).toBe(201);
  expect((await admin.put('/v1/roles/bi-role', { rules: [{ paths: ['bi/*'], actions: ['list'] }] })).status).toBe(201);
  snapshot = await state();
});

// No refused request may change anything; the two tests that write valid values on purpose re-take the snapshot.
afterEach(async () => {
  expect(await state()).toBe(snapshot);
});

afterAll(async () => {
  await n?.close();
});

describe('invalid secret names', () => {
  const names = [
    'a//b',
    '../x',
    '..',
    'a/../b',
    'a/..',
    'a/./b',
    '.',
    './a',
    'a/.',
    '%2e%2e/x',
    'a/%2e%2e/b',
    '%2E',
    'x'.repeat(257),
    `${'a/'.repeat(128)}b`, // 257 characters made of valid segments
    'a%20b',
    'a%00b',
    'a%0Ab',
    'a%2F%2Fb',
    'a/',
    '/a',
    'a\\b',
    'a%5Cb',
    'caf%C3%A9',
    'a:b',
    'a*',
    'a+b',
    'a;b',
    '~a',
  ];

  it.each(names)('%s is 400 invalid_name on every secret route', async (name) => {
    for (const [method, p, body] of [
      ['GET', `/v1/secrets/${name}`, undefined],
      ['GET', `/v1/secrets/${name}?version=1`, undefined],
      ['PUT', `/v1/secrets/${name}`, { value: 'x' }],
      ['DELETE', `/v1/secrets/${name}`, undefined],
      ['POST', `/v1/secrets/${name}:rotate`, undefined],
      ['GET', `/v1/metadata/${name}`, undefined],
    ] as const) {
      const res = await send(method, p, body === undefined ? {} : { body });
      expect({ method, p, status: res.status, code: res.body?.error?.code }).toEqual({ method, p, status: 400, code: 'invalid_name' });
      bad(res, 400, 'invalid_name');
    }
    // Also without a token: the name is checked, not the caller's rights first.
    bad(await request(n.url, 'GET', `/v1/secrets/${name}`), 400, 'invalid_name');
  });

  it('accepts the boundaries: 256 characters, dots inside segments', async () => {
    const long = 'x'.repeat(256);
    for (const name of [long, 'a.b/c..d/.e/f.', 'A-Z_0.9/x']) {
      expect((await admin.put(`/v1/secrets/${name}`, { value: 'v' })).status).toBe(201);
      expect((await admin.del(`/v1/secrets/${name}`)).status).toBe(204);
    }
    expect((await admin.get('/v1/metadata?limit=1000')).body.names).toEqual(['bi/x']);
    snapshot = await state();
  });

  it('rejects bad names elsewhere too: tokens, roles and list prefixes', async () => {
    bad(await send('POST', '/v1/tokens', { body: { name: '../x', role: 'admin' } }), 400, 'bad_request');
    bad(await send('POST', '/v1/tokens', { body: { name: 'x', role: '../admin' } }), 400, 'bad_request');
    bad(await send('PUT', '/v1/roles/..', { body: { rules: [] } }), 400, 'bad_request');
    bad(await send('PUT', '/v1/roles/a%2Fb', { body: { rules: [] } }), 400, 'bad_request');
    for (const p of ['a//b', 'app/**', '**', 'a/*/b', '+x', '', '../x']) {
      bad(await send('PUT', '/v1/roles/r', { body: { rules: [{ paths: [p], actions: ['list'] }] } }), 400, 'bad_request');
    }
    bad(await send('PUT', '/v1/roles/r', { body: { rules: [{ paths: ['a/*'], actions: ['read'] }] } }), 400, 'bad_request');
    bad(await send('PUT', '/v1/roles/r', { body: { rules: [{ paths: ['a/*'], actions: [] }] } }), 400, 'bad_request');
    bad(await send('PUT', '/v1/roles/r', { body: { rules: [{ paths: ['a/*'], actions: ['list'], extra: 1 }] } }), 400, 'bad_request');
    for (const q of ['prefix=a%20b', 'prefix=%00', 'limit=0', 'limit=-1', 'limit=x', 'cursor=***', 'other=1']) {
      bad(await send('GET', `/v1/metadata?${q}`), 400, 'bad_request');
    }
  });
});

describe('bodies', () => {
  const put = (opts: RequestOptions) => send('PUT', '/v1/secrets/bi/x', opts);

  it('refuses unknown fields, wrong types (never coerced) and missing values', async () => {
    const bodies: unknown[] = [
      { value: 123 },
      { value: true },
      { value: null },
      { value: ['x'] },
      { value: { s: 'x' } },
      { value: 'x', extra: 1 },
      { value: 'x', cas: '1' },
      { value: 'x', cas: -1 },
      { value: 'x', cas: 1.5 },
      { value: 'x', cas: null },
      { Value: 'x' },
      {},
      [],
      ['x'],
      'x',
      42,
      null,
    ];
    for (const body of bodies) {
      const res = await put({ rawBody: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
      expect({ body, status: res.status }).toEqual({ body, status: 400 });
      bad(res, 400, 'bad_request');
    }
    // 123 was not stored as "123".
    expect((await client(n.url).get('/v1/secrets/bi/x')).body.value).toBe('original');
  });

  it('refuses malformed JSON, empty bodies and prototype pollution', async () => {
    const raws = [
      '{"value":',
      '{"value":"x"',
      "{'value':'x'}",
      '{"value":"x"}}',
      '{"value":"x",}',
      '',
      ' ',
      'value=x',
      '{"value":"\\ud800"',
      '{"value":"x","__proto__":{"admin":true}}',
      '{"value":"x","constructor":{"prototype":{"admin":true}}}',
    ];
    for (const rawBody of raws) {
      const res = await put({ rawBody, headers: { 'content-type': 'application/json' } });
      expect({ rawBody, status: res.status }).toEqual({ rawBody, status: 400 });
      bad(res, 400, 'bad_request');
    }
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });

  it('refuses non-JSON content types with a JSON error', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml']) {
      const res = await put({ rawBody: '{"value":"x"}', headers: { 'content-type': type } });
      expect({ type, status: res.status }).toEqual({ type, status: 415 });
      bad(res, 415, 'bad_request');
    }
    // A body with no content type at all is never a server error.
    const none = await request(n.url, 'PUT', '/v1/secrets/bi/none', { token: n.token, rawBody: '{"value":1}', headers: { 'content-length': '11' } });
    expect(none.status).toBeLessThan(500);
    expectNoInternals(none);
  });

  it('counts VAULT_MAX_VALUE_BYTES in UTF-8 bytes, not characters', async () => {
    const cases: [string, boolean][] = [
      ['a'.repeat(MAX), true],
      ['a'.repeat(MAX + 1), false],
      ['é'.repeat(MAX / 2), true], // 2 bytes each
      ['é'.repeat(MAX / 2) + 'a', false],
      ['é'.repeat(MAX / 2 + 1), false], // 513 characters, 1026 bytes
      ['😀'.repeat(MAX / 4), true], // 4 bytes each
      ['😀'.repeat(MAX / 4) + 'a', false],
      ['€'.repeat(341) + 'a', true], // 3*341+1 = 1024
      ['€'.repeat(342), false], // 1026
    ];
    for (const [value, fits] of cases) {
      const res = await put({ body: { value } });
      if (fits) {
        expect(res.status).toBe(200);
        expect((await client(n.url).get('/v1/secrets/bi/x')).body.value).toBe(value);
      } else {
        bad(res, 413, 'payload_too_large');
      }
    }
    // A value escaped as \u sequences is measured after decoding: 1025 bytes written as 6 x 1025 characters.
    bad(await put({ rawBody: JSON.stringify({ value: 'x' }).replace('"x"', `"${'\\u0041'.repeat(MAX + 1)}"`) }), 413, 'payload_too_large');
    // Far beyond the body limit: refused before parsing, same code.
    bad(await put({ body: { value: 'z'.repeat(50_000) } }), 413, 'payload_too_large');
    // Rotate cannot be used to exceed it either.
    bad(await send('POST', '/v1/secrets/bi/x:rotate', { body: { length: MAX + 1 } }), 413, 'payload_too_large');
    await restoreBiX();
  });

  it('refuses a peer address whose port no one can dial (0, above 65535), changing no membership', async () => {
    for (const address of ['127.0.0.9:0', '127.0.0.9:65536', '127.0.0.9:99999', '127.0.0.9:00000']) {
      const res = await send('POST', '/v1/admin/cluster/peers', { body: { id: 'n2', address } });
      expect({ address, status: res.status }).toEqual({ address, status: 400 });
      bad(res, 400, 'bad_request');
    }
  });

  it('refuses bad rotate bodies', async () => {
    for (const body of [{ length: 7 }, { length: 4097 }, { length: '32' }, { length: 32.5 }, { charset: 'emoji' }, { extra: 1 }, [], 'x']) {
      const res = await send('POST', '/v1/secrets/bi/x:rotate', { rawBody: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
      expect({ body, status: res.status }).toEqual({ body, status: 400 });
      bad(res, 400, 'bad_request');
    }
  });
});

describe('query strings', () => {
  it.each(['version=0', 'version=abc', 'version=-1', 'version=1.5', 'version=01', 'version=', 'version=1e3', 'version=99999999999', 'version=1&version=2', 'consistency=weak', 'foo=1'])(
    '?%s is 400 bad_request',
    async (q) => {
      const res = await request(n.url, 'GET', `/v1/secrets/bi/x?${q}`);
      bad(res, 400, 'bad_request');
      expect(res.text).not.toContain('original');
    },
  );
});

describe('odd requests', () => {
  it('unknown routes and methods are 404 not_found in the usual shape', async () => {
    for (const [method, p] of [
      ['GET', '/'],
      ['GET', '/v1'],
      ['GET', '/v2/secrets/bi/x'],
      ['PATCH', '/v1/secrets/bi/x'],
      ['GET', '/v1/secrets'],
      ['GET', '/v1/secrets/'],
      ['GET', '/V1/SECRETS/bi/x'],
      ['GET', '/%2e%2e/etc/passwd'],
      ['GET', '/v1/admin/../secrets/bi/x'],
    ] as const) {
      const res = await send(method, p);
      expect({ method, p, status: res.status }).toEqual({ method, p, status: p === '/v1/secrets/' ? 400 : 404 });
      bad(res, res.status, res.status === 400 ? 'invalid_name' : 'not_found');
      expect(res.text).not.toContain('original');
    }
  });

  it('broken percent-encoding and overlong URL parameters are clear 400 JSON errors', async () => {
    for (const [p, code] of [
      ['/v1/secrets/a%zz', 'invalid_name'],
      ['/v1/secrets/%', 'invalid_name'],
      ['/v1/metadata/a%G0', 'invalid_name'],
      ['/v1/tokens/a%zz', 'bad_request'],
      ['/v1/roles/%E0%A4%A', 'bad_request'],
      [`/v1/tokens/${'a'.repeat(129)}`, 'bad_request'],
      [`/v1/roles/${'a'.repeat(5000)}`, 'bad_request'],
    ] as const) {
      const res = await send(p.startsWith('/v1/tokens') ? 'DELETE' : 'GET', p);
      expect({ p: p.slice(0, 40), status: res.status, code: res.body?.error?.code }).toEqual({ p: p.slice(0, 40), status: 400, code });
      bad(res, 400, code);
      expect(res.headers['x-request-id']).toBeTruthy();
      expect(res.text).not.toContain('FST_');
    }
  });
});

/** The byte-limit test adds versions on purpose: start bi/x afresh with its value and re-take the snapshot. */
async function restoreBiX(): Promise<void> {
  expect((await admin.del('/v1/secrets/bi/x')).status).toBe(204);
  expect((await admin.put('/v1/secrets/bi/x', { value: 'original' })).status).toBe(201);
  snapshot = await state();
}
