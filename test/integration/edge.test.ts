// The edge, attacked the way issue 11 did (findings 7, 8, 14, 15):
// - a web page reaching the API through DNS rebinding (its own Host name) or
//   straight from a browser (Origin / Sec-Fetch-*) must be refused, audited;
// - X-Forwarded-For from a peer that is not a trusted proxy must not make a
//   refused address look allowlisted, and the record keeps both addresses;
// - what Node's HTTP parser refuses gets the contract's error body and one
//   audit record like any other request;
// - bytes that are not UTF-8, and lone surrogates, are refused, not stored as U+FFFD.
import Database from 'better-sqlite3';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectError } from '../helpers/assert.js';
import { client, request, type HttpResponse, type RequestOptions } from '../helpers/http.js';
import { rawRequest, type RawResponse } from '../helpers/raw-http.js';
import { startTestNode, type TestNode } from '../helpers/node.js';

const VALUE = 'edge-value-never-in-a-refusal';

interface AuditRow {
  id: number;
  request_id: string;
  actor: string;
  client_ip: string;
  peer_ip: string | null;
  action: string;
  target: string | null;
  outcome: string;
  status: number;
}

/** This node's audit records, by request id. */
async function auditById(n: TestNode, base = n.node.mgmtUrl ?? n.url): Promise<Map<string, AuditRow>> {
  const res = await client(base, n.token).get('/v1/admin/audit?limit=1000');
  expect(res.status).toBe(200);
  return new Map((res.body.records as AuditRow[]).map((r) => [r.request_id, r]));
}

function expectRawError(res: RawResponse, status: number, code: string): void {
  expect({ status: res.status, body: res.body }).toEqual({ status, body: { error: { code, message: expect.any(String) } } });
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
}

describe('browsers and unknown Host names (finding 7)', () => {
  let n: TestNode;
  let port: string;
  const read = (opts: RequestOptions) => request(n.url, 'GET', '/v1/secrets/edge/s', opts);

  beforeAll(async () => {
    n = await startTestNode({ env: { VAULT_API_HOSTNAMES: 'vault-client.coffer.svc,vault-client.coffer.svc.cluster.local', VAULT_MGMT_ADDR: '127.0.0.1:0' } });
    port = new URL(n.url).port;
    expect((await client(n.node.mgmtUrl!, n.token).put('/v1/secrets/edge/s', { value: VALUE })).status).toBe(201);
  });
  afterAll(async () => {
    await n?.close();
  });

  it('a DNS-rebinding page (its own Host) cannot read an allowlisted value, and is audited as denied', async () => {
    const refused: HttpResponse[] = [];
    for (const host of [`attacker.example:${port}`, 'attacker.example', `vault-client.coffer.svc.attacker.example:${port}`, `127.0.0.1.nip.io:${port}`, 'coffer.svc', `localhost.attacker.example`, `127.0.0.1:${port}:1`, `localhost:x`, '[::1', `::1:${port}`]) {
      const res = await read({ headers: { host } });
      expect({ host, status: res.status }).toEqual({ host, status: 403 });
      expectError(res, 403, 'forbidden');
      expect(res.text).not.toContain(VALUE);
      refused.push(res);
    }
    // An absolute-form target names the host too.
    const abs = await rawRequest(n.url, `GET http://attacker.example/v1/secrets/edge/s HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
    expectRawError(abs, 403, 'forbidden');
    expect(abs.text).not.toContain(VALUE);

    const audit = await auditById(n);
    for (const res of refused) {
      expect(audit.get(res.headers['x-request-id'] as string)).toMatchObject({ action: 'secret.read', target: 'edge/s', outcome: 'denied', status: 403, actor: 'anonymous', client_ip: '127.0.0.1' });
    }
    expect(audit.get(abs.headers['x-request-id']!)).toMatchObject({ outcome: 'denied', status: 403 });
  });

  it('a browser (Origin or Sec-Fetch-*) is refused even from an allowlisted address with a good Host, and audited', async () => {
    const refused: HttpResponse[] = [];
    const browsers: Record<string, string>[] = [
      { origin: 'http://evil' },
      { origin: 'null' },
      { origin: `http://127.0.0.1:${port}` }, // same origin still means a browser
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-origin' },
      { 'sec-fetch-mode': 'no-cors', 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-dest': 'empty' },
      { 'sec-fetch-user': '?1' },
    ];
    for (const headers of browsers) {
      const res = await read({ headers });
      expectError(res, 403, 'forbidden');
      expect(res.text).not.toContain(VALUE);
      refused.push(res);
    }
    // A token does not make a browser request acceptable, and the refused write changes nothing.
    const write = await request(n.node.mgmtUrl!, 'PUT', '/v1/secrets/edge/s', { token: n.token, body: { value: 'from-a-page' }, headers: { origin: 'http://evil' } });
    expectError(write, 403, 'forbidden');
    const browserHost = await request(n.node.mgmtUrl!, 'GET', '/v1/tokens', { token: n.token, headers: { host: 'attacker.example' } });
    expectError(browserHost, 403, 'forbidden');
    expect((await client(n.url).get('/v1/secrets/edge/s')).body).toMatchObject({ version: 1, value: VALUE });

    const audit = await auditById(n);
    for (const res of refused) {
      expect(audit.get(res.headers['x-request-id'] as string)).toMatchObject({ action: 'secret.read', outcome: 'denied', status: 403 });
    }
    // The management listener audits in the same log; its refusals name the token's holder.
    const mgmtAudit = await auditById(n);
    expect(mgmtAudit.get(write.headers['x-request-id'] as string)).toMatchObject({ action: 'secret.write', actor: 'bootstrap-admin', outcome: 'denied', status: 403 });
    expect(mgmtAudit.get(browserHost.headers['x-request-id'] as string)).toMatchObject({ action: 'token.list', outcome: 'denied', status: 403 });
  });

  it("Node's fetch() is not a browser: its lone Sec-Fetch-Mode: cors is served (the coffer CLI uses fetch)", async () => {
    const res = await fetch(`${n.url}/v1/secrets/edge/s`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { value: string }).value).toBe(VALUE);
    expect((await read({ headers: { 'sec-fetch-mode': 'cors' } })).status).toBe(200);
  });

  it('IP literals, localhost and the configured names are served, in any case and with or without a port', async () => {
    for (const host of [
      `127.0.0.1:${port}`,
      '127.0.0.1',
      `localhost:${port}`,
      'LOCALHOST',
      'localhost.',
      `[::1]:${port}`,
      '[::ffff:127.0.0.1]',
      'vault-client.coffer.svc:8200',
      'Vault-Client.Coffer.SVC',
      'vault-client.coffer.svc.cluster.local.',
    ]) {
      const res = await read({ headers: { host } });
      expect({ host, status: res.status, value: res.body?.value }).toEqual({ host, status: 200, value: VALUE });
    }
  });

  it('HTTP/1.0 without Host is served (curl -0 sends none); HTTP/1.1 without Host is a 400 in the contract shape, audited', async () => {
    const v10 = await rawRequest(n.url, 'GET /v1/secrets/edge/s HTTP/1.0\r\n\r\n');
    expect(v10.status).toBe(200);
    expect(v10.body.value).toBe(VALUE);
    const v11 = await rawRequest(n.url, 'GET /v1/secrets/edge/s HTTP/1.1\r\nConnection: close\r\n\r\n');
    expectRawError(v11, 400, 'bad_request');
    expect(v11.text).not.toContain(VALUE);
    expect((await auditById(n)).get(v11.headers['x-request-id']!)).toMatchObject({ action: 'secret.read', status: 400, outcome: 'error' });
  });
});

describe('X-Forwarded-For only from trusted proxies (finding 8)', () => {
  let n: TestNode;
  const read = (localAddress: string, xff?: string) =>
    request(n.url, 'GET', '/v1/secrets/edge/s', { localAddress, ...(xff === undefined ? {} : { headers: { 'x-forwarded-for': xff } }) });

  beforeAll(async () => {
    n = await startTestNode({ env: { VAULT_TRUST_PROXY: 'true', VAULT_TRUSTED_PROXIES: '127.0.0.3,127.0.0.4/32', VAULT_READ_ALLOWLIST: '127.0.0.1' } });
    expect((await client(n.url, n.token).put('/v1/secrets/edge/s', { value: VALUE })).status).toBe(201);
  });
  afterAll(async () => {
    await n?.close();
  });

  it('a spoofed X-Forwarded-For from a peer that is not a trusted proxy is ignored: the read stays 403, both addresses audited', async () => {
    const spoofed = await read('127.0.0.2', '127.0.0.1');
    expectError(spoofed, 403, 'ip_not_allowed');
    expect(spoofed.text).not.toContain(VALUE);
    const twoHops = await read('127.0.0.2', '127.0.0.1, 127.0.0.3');
    expectError(twoHops, 403, 'ip_not_allowed');

    const viaProxy = await read('127.0.0.3', '127.0.0.1');
    expect(viaProxy.status).toBe(200);
    expect(viaProxy.body.value).toBe(VALUE);
    // Right-most entry that is not a trusted proxy: 127.0.0.4 appended the client, 127.0.0.3 appended 127.0.0.4.
    const chain = await read('127.0.0.3', '10.9.9.9, 127.0.0.1, 127.0.0.4');
    expect(chain.status).toBe(200);
    // The client claims to be allowlisted further left; the proxy saw 10.9.9.9.
    const claimed = await read('127.0.0.3', '127.0.0.1, 10.9.9.9');
    expectError(claimed, 403, 'ip_not_allowed');
    // A trusted proxy without the header: the proxy itself is the client.
    expectError(await read('127.0.0.3'), 403, 'ip_not_allowed');
    // Garbage in the deciding position is nobody.
    const garbage = await read('127.0.0.3', '127.0.0.1, not-an-address');
    expectError(garbage, 403, 'ip_not_allowed');

    const audit = await auditById(n);
    const rec = (res: HttpResponse) => audit.get(res.headers['x-request-id'] as string);
    expect(rec(spoofed)).toMatchObject({ client_ip: '127.0.0.2', peer_ip: '127.0.0.2', outcome: 'denied', status: 403 });
    expect(rec(twoHops)).toMatchObject({ client_ip: '127.0.0.2', peer_ip: '127.0.0.2', status: 403 });
    expect(rec(viaProxy)).toMatchObject({ client_ip: '127.0.0.1', peer_ip: '127.0.0.3', outcome: 'allowed', status: 200 });
    expect(rec(chain)).toMatchObject({ client_ip: '127.0.0.1', peer_ip: '127.0.0.3', status: 200 });
    expect(rec(claimed)).toMatchObject({ client_ip: '10.9.9.9', peer_ip: '127.0.0.3', status: 403 });
    expect(rec(garbage)).toMatchObject({ client_ip: 'not-an-address', peer_ip: '127.0.0.3', status: 403 });
  });
});

describe('parser-level rejects (finding 14)', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await startTestNode();
  });
  afterAll(async () => {
    await n?.close();
  });

  const cases: [string, string, number][] = [
    ['unknown method', 'FOO /v1/secrets/a HTTP/1.1\r\nHost: localhost\r\n\r\n', 400],
    ['control byte in the path', 'GET /v1/secrets/a\x01b HTTP/1.1\r\nHost: localhost\r\n\r\n', 400],
    ['DEL byte in the path', 'GET /v1/secrets/a\x7fb HTTP/1.1\r\nHost: localhost\r\n\r\n', 400],
    ['headers over 16 KB', `GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(17_000)}\r\n\r\n`, 431],
    ['malformed request line', 'GARBAGE\r\n\r\n', 400],
    ['unsupported HTTP version', 'GET / HTTP/3.7\r\nHost: localhost\r\n\r\n', 400],
    ['HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 400],
    ['bad Content-Length', 'PUT /v1/secrets/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n', 400],
    ['two Content-Lengths', 'PUT /v1/secrets/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', 400],
    ['Content-Length with chunked', 'PUT /v1/secrets/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
    ['header without a colon', 'GET /v1/health HTTP/1.1\r\nHost: localhost\r\nbroken header\r\n\r\n', 400],
    ['NUL in a header value', 'GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n', 400],
  ];

  it.each(cases)('%s: the contract error body and one audit record', async (_label, bytes, status) => {
    const res = await rawRequest(n.url, bytes, { untilClose: true });
    expectRawError(res, status, 'bad_request');
    expect(res.closed).toBe(true);
    const rec = (await auditById(n)).get(res.headers['x-request-id']!);
    expect(rec).toMatchObject({ actor: 'anonymous', client_ip: '127.0.0.1', peer_ip: '127.0.0.1', action: 'http.parse_error', target: null, outcome: 'error', status });
  });

  it('a bad chunk inside a body is refused by its own route, with its token holder and action, once', async () => {
    const res = await rawRequest(
      n.url,
      `PUT /v1/secrets/chunky HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${n.token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"val\r\nzz\r\n\r\n`,
      { untilClose: true },
    );
    expectRawError(res, 400, 'bad_request');
    expect(res.closed).toBe(true);
    const audit = [...(await auditById(n)).values()];
    const mine = audit.filter((r) => r.request_id === res.headers['x-request-id']);
    expect(mine).toEqual([expect.objectContaining({ actor: 'bootstrap-admin', action: 'secret.write', target: 'chunky', status: 400 })]);
    // No second record for the same exchange.
    expect(audit.filter((r) => r.target === 'chunky' || (r.action === 'http.parse_error' && r.id > mine[0]!.id))).toEqual(mine);
    expect((await client(n.url, n.token).get('/v1/metadata/chunky')).status).toBe(404);
  });

  it('CONNECT is answered 404 like any unserved method (Node would drop it silently), audited', async () => {
    const res = await rawRequest(n.url, 'CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n');
    expectRawError(res, 404, 'not_found');
    expect((await auditById(n)).get(res.headers['x-request-id']!)).toMatchObject({ action: 'unknown', target: '127.0.0.1:22', status: 404 });
  });

  it('an Expect the server does not know is served as usual (Node would answer a bare 417, unaudited)', async () => {
    const res = await request(n.url, 'GET', '/v1/metadata?limit=1', { token: n.token, headers: { expect: 'something-else' } });
    expect(res.status).toBe(200);
    expect((await auditById(n)).get(res.headers['x-request-id'] as string)).toMatchObject({ action: 'secret.list', status: 200 });
  });

  it('a garbage request after a good one on the same connection: both answered, both audited', async () => {
    const res = await rawRequest(n.url, 'GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\nFOO / HTTP/1.1\r\nHost: localhost\r\n\r\n', { untilClose: true });
    // The first response is health; the refusal follows it on the same connection.
    expect(res.status).toBe(200);
    const tail = res.text.slice(res.text.indexOf('HTTP/1.1 400'));
    expect(tail).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    const id = /x-request-id: ([0-9a-f-]{36})/.exec(tail)?.[1];
    expect((await auditById(n)).get(id!)).toMatchObject({ action: 'http.parse_error', status: 400 });
  });

  it('a client that resets mid-request leaves no record and the node goes on', async () => {
    const before = await auditById(n);
    await rawRequest(n.url, 'GET /v1/heal', { reset: true }); // RST with the request half sent, no answer awaited
    await new Promise((r) => setTimeout(r, 200));
    const after = await auditById(n);
    const added = [...after.values()].filter((r) => !before.has(r.request_id));
    expect(added.map((r) => r.action)).toEqual(['admin.audit.read']); // only the first audit query itself
    expect((await client(n.url).get('/v1/health')).status).toBe(200);
  });

  it('fails closed: when audit.db is locked a parse reject is 503 audit_unavailable, not answered unaudited', async () => {
    const locker = new Database(path.join(n.dataDir, 'audit.db'));
    locker.pragma('busy_timeout = 0');
    locker.exec('BEGIN EXCLUSIVE');
    let res: RawResponse;
    try {
      res = await rawRequest(n.url, 'FOO / HTTP/1.1\r\nHost: localhost\r\n\r\n');
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }
    expectRawError(res, 503, 'audit_unavailable');
    expect((await auditById(n)).has(res.headers['x-request-id']!)).toBe(false);
  });
});

describe('while the listener drains on shutdown', () => {
  it('a request arriving on a busy keep-alive connection is served and audited, not given a bare 503', async () => {
    const n = await startTestNode();
    let closing: Promise<void> | null = null;
    try {
      const { port } = new URL(n.url);
      const socket = net.connect(Number(port), '127.0.0.1');
      await once(socket, 'connect');
      let received = '';
      socket.setEncoding('latin1');
      socket.on('data', (d: string) => (received += d));
      const responses = async (count: number) => {
        for (let i = 0; i < 100 && (received.match(/\r\n\r\n\{/g) ?? []).length < count; i++) await new Promise((r) => setTimeout(r, 50));
      };
      // A write whose body is still arriving keeps the connection busy while the node starts to close.
      const body = JSON.stringify({ value: 'drain' });
      socket.write(`PUT /v1/secrets/drain/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${n.token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5)}`);
      await new Promise((r) => setTimeout(r, 100));
      closing = n.close();
      await new Promise((r) => setTimeout(r, 100));
      socket.write(body.slice(5));
      await responses(1);
      expect(received).toMatch(/^HTTP\/1\.1 201 /);
      // The next request on that connection comes after the close began.
      socket.write(`GET /v1/metadata/drain/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${n.token}\r\n\r\n`);
      await responses(2);
      const second = received.slice(received.indexOf('HTTP/1.1', 10));
      expect(second).toMatch(/^HTTP\/1\.1 200 /);
      const id = /x-request-id: ([0-9a-f-]{36})/.exec(second)?.[1];
      socket.destroy();
      await closing;
      const db = new Database(path.join(n.dataDir, 'audit.db'), { readonly: true });
      try {
        expect(db.prepare('SELECT action, status FROM audit_log WHERE request_id = ?').all(id)).toEqual([{ action: 'secret.read_metadata', status: 200 }]);
      } finally {
        db.close();
      }
    } finally {
      await (closing ?? n.close());
    }
  });
});

describe('values must be valid UTF-8 (finding 15)', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await startTestNode();
  });
  afterAll(async () => {
    await n?.close();
  });

  const put = (name: string, rawBody: string | Buffer) =>
    request(n.url, 'PUT', `/v1/secrets/${name}`, { token: n.token, rawBody, headers: { 'content-type': 'application/json' } });
  const bytes = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));

  it('refuses bodies that are not UTF-8 and lone surrogates, storing nothing', async () => {
    const bad: [string, string | Buffer][] = [
      ['invalid byte', bytes('{"value":"a', [0xff], 'b"}')],
      ['Latin-1 é', bytes('{"value":"caf', [0xe9], '"}')],
      ['overlong NUL', bytes('{"value":"', [0xc0, 0x80], '"}')],
      ['truncated sequence', bytes('{"value":"', [0xe2, 0x82], '"}')],
      ['encoded surrogate (CESU-8)', bytes('{"value":"', [0xed, 0xa0, 0x80], '"}')],
      ['above U+10FFFF', bytes('{"value":"', [0xf4, 0x90, 0x80, 0x80], '"}')],
      ['invalid byte outside the value', bytes('{"value":"ok"}', [0x80])],
      ['lone high surrogate', '{"value":"\\ud800"}'],
      ['lone low surrogate', '{"value":"a\\udc00b"}'],
      ['reversed pair', '{"value":"\\ude00\\ud83d"}'],
      ['high surrogate at the end', '{"value":"x\\ud83d"}'],
    ];
    for (const [label, body] of bad) {
      const res = await put('utf/bad', body);
      expect({ label, status: res.status }).toEqual({ label, status: 400 });
      expectError(res, 400, 'bad_request');
    }
    expect((await client(n.url, n.token).get('/v1/metadata/utf/bad')).status).toBe(404);
    // Other bodies too: a token name and a role rule with a lone surrogate.
    expectError(await request(n.url, 'POST', '/v1/tokens', { token: n.token, rawBody: '{"name":"t\\ud800","role":"admin"}' }), 400, 'bad_request');
    expectError(await request(n.url, 'PUT', '/v1/roles/r', { token: n.token, rawBody: '{"rules":[{"paths":["a\\udfff"],"actions":["list"]}]}' }), 400, 'bad_request');
  });

  it('stores well-formed text exactly: raw UTF-8 and escaped surrogate pairs', async () => {
    for (const [name, body, want] of [
      ['utf/raw', bytes('{"value":"caf', [0xc3, 0xa9], ' ', [0xf0, 0x9f, 0x98, 0x80], '"}'), 'café 😀'],
      ['utf/escaped', '{"value":"\\ud83d\\ude00 \\u00e9"}', '😀 é'],
    ] as const) {
      expect((await put(name, body)).status).toBe(201);
      const got = await client(n.url).get(`/v1/secrets/${name}`);
      expect(got.body.value === want).toBe(true);
    }
  });
});
