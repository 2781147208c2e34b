// Value reads by source address (VAULT_READ_ALLOWLIST), fail-closed, and the
// X-Forwarded-For rules (VAULT_TRUST_PROXY, VAULT_TRUSTED_PROXIES). Requests really come from other
// loopback addresses (127.0.0.2, 127.0.0.5) via the socket's local address.
import { afterEach, describe, expect, it } from 'vitest';
import { expectError } from '../helpers/assert.js';
import { client, request, type RequestOptions } from '../helpers/http.js';
import { nodeEnv, randomMasterKey, randomToken, runToExit, startTestNode, tempDir, type TestNode } from '../helpers/node.js';

let nodes: TestNode[] = [];
afterEach(async () => {
  await Promise.all(nodes.map((n) => n.close()));
  nodes = [];
});

async function node(env: Record<string, string>): Promise<TestNode> {
  const n = await startTestNode({ env });
  nodes.push(n);
  expect((await client(n.url, n.token).put('/v1/secrets/app/key', { value: 'the-value' })).status).toBe(201);
  return n;
}

const read = (n: TestNode, opts: RequestOptions = {}) => request(n.url, 'GET', '/v1/secrets/app/key', opts);

function expectRefused(res: Awaited<ReturnType<typeof read>>): void {
  expectError(res, 403, 'ip_not_allowed');
  expect(res.text).not.toContain('the-value');
}

function expectValue(res: Awaited<ReturnType<typeof read>>): void {
  expect(res.status).toBe(200);
  expect(res.body.value).toBe('the-value');
}

describe('read allowlist', () => {
  it('allows the listed address and refuses another one, whatever X-Forwarded-For says', async () => {
    const n = await node({ VAULT_READ_ALLOWLIST: '127.0.0.1' });
    expectValue(await read(n, { localAddress: '127.0.0.1' }));
    expectRefused(await read(n, { localAddress: '127.0.0.2' }));
    for (const xff of ['127.0.0.1', '10.9.9.9, 127.0.0.1', '127.0.0.1, 127.0.0.1', '::ffff:127.0.0.1']) {
      expectRefused(await read(n, { localAddress: '127.0.0.2', headers: { 'x-forwarded-for': xff } }));
    }
    expectRefused(await read(n, { localAddress: '127.0.0.2', headers: { 'x-forwarded-for': ['10.0.0.1', '127.0.0.1'] } }));
    expectRefused(await read(n, { localAddress: '127.0.0.2', headers: { 'x-real-ip': '127.0.0.1', forwarded: 'for=127.0.0.1' } }));
    // Every version and the stale path are value reads too; HEAD must not be a way around.
    expectRefused(await request(n.url, 'GET', '/v1/secrets/app/key?version=1', { localAddress: '127.0.0.2' }));
    expectRefused(await request(n.url, 'GET', '/v1/secrets/app/key?consistency=stale', { localAddress: '127.0.0.2' }));
    expect((await request(n.url, 'HEAD', '/v1/secrets/app/key', { localAddress: '127.0.0.2' })).status).toBe(403);
    // A refused read does not reveal whether the secret exists.
    expectRefused(await request(n.url, 'GET', '/v1/secrets/does/not/exist', { localAddress: '127.0.0.2' }));
  });

  it('a valid admin token does not grant value reads from an address outside the list', async () => {
    const n = await node({ VAULT_READ_ALLOWLIST: '127.0.0.1' });
    expectRefused(await read(n, { localAddress: '127.0.0.2', token: n.token }));
    const minted = await client(n.url, n.token).post('/v1/tokens', { name: 'ops', role: 'admin' });
    expectRefused(await read(n, { localAddress: '127.0.0.2', token: minted.body.token }));
    // …while the same token still works for management from there.
    expect((await request(n.url, 'GET', '/v1/metadata/app/key', { localAddress: '127.0.0.2', token: n.token })).status).toBe(200);
  });

  it('an empty allowlist refuses everyone, 127.0.0.1 and admins included', async () => {
    for (const list of ['', ' ', ',']) {
      const n = await node({ VAULT_READ_ALLOWLIST: list });
      expectRefused(await read(n, { localAddress: '127.0.0.1' }));
      expectRefused(await read(n, { localAddress: '127.0.0.1', token: n.token }));
      expectRefused(await read(n, { localAddress: '127.0.0.1', headers: { 'x-forwarded-for': '127.0.0.1' } }));
      await nodes.pop()!.close();
    }
  });

  it('matches CIDRs: 127.0.0.0/30 allows .1-.3 and refuses .4 and .5', async () => {
    const n = await node({ VAULT_READ_ALLOWLIST: '127.0.0.0/30' });
    for (const ip of ['127.0.0.1', '127.0.0.2', '127.0.0.3']) expectValue(await read(n, { localAddress: ip }));
    for (const ip of ['127.0.0.4', '127.0.0.5']) expectRefused(await read(n, { localAddress: ip }));
  });

  it('takes a list of addresses and CIDRs with spaces', async () => {
    const n = await node({ VAULT_READ_ALLOWLIST: ' 10.0.0.0/8 , 127.0.0.5 ,192.168.1.1/32' });
    expectValue(await read(n, { localAddress: '127.0.0.5' }));
    expectRefused(await read(n, { localAddress: '127.0.0.1' }));
  });
});

describe('VAULT_TRUST_PROXY', () => {
  it('when true, the right-most X-Forwarded-For entry from a trusted proxy decides', async () => {
    const n = await node({ VAULT_READ_ALLOWLIST: '127.0.0.1', VAULT_TRUST_PROXY: 'true', VAULT_TRUSTED_PROXIES: '127.0.0.2' });
    const from2 = (xff: string | string[]) => read(n, { localAddress: '127.0.0.2', headers: { 'x-forwarded-for': xff } });
    expectValue(await from2('10.9.9.9, 127.0.0.1'));
    expectValue(await from2('127.0.0.1'));
    expectRefused(await from2('127.0.0.1, 10.9.9.9'));
    expectRefused(await from2('127.0.0.1,10.9.9.9'));
    // Two header lines are one list; the last line's last entry is the one the proxy added.
    expectRefused(await from2(['127.0.0.1', '10.9.9.9']));
    expectValue(await from2(['10.9.9.9', '127.0.0.1']));
    // Garbage or non-IPv4 in the deciding position is nobody.
    for (const bad of ['127.0.0.1, not-an-ip', '127.0.0.1, ::1', '127.0.0.1, 127.0.0.01', '127.0.0.1, 127.0.0.1:80']) {
      expectRefused(await from2(bad));
    }
  });

  it('when true but no X-Forwarded-For is sent, the socket address is used', async () => {
    const n = await node({ VAULT_READ_ALLOWLIST: '127.0.0.1', VAULT_TRUST_PROXY: 'true', VAULT_TRUSTED_PROXIES: '127.0.0.2' });
    expectValue(await read(n, { localAddress: '127.0.0.1' }));
    expectRefused(await read(n, { localAddress: '127.0.0.2' }));
  });

  it('when true, X-Forwarded-For from a peer outside VAULT_TRUSTED_PROXIES is ignored', async () => {
    const n = await node({ VAULT_READ_ALLOWLIST: '127.0.0.1', VAULT_TRUST_PROXY: 'true', VAULT_TRUSTED_PROXIES: '127.0.0.2' });
    expectRefused(await read(n, { localAddress: '127.0.0.5', headers: { 'x-forwarded-for': '127.0.0.1' } }));
    expectValue(await read(n, { localAddress: '127.0.0.1', headers: { 'x-forwarded-for': '10.9.9.9' } }));
  });

  it('when false (the default), X-Forwarded-For cannot take the place of an allowlisted socket address', async () => {
    const n = await node({ VAULT_READ_ALLOWLIST: '127.0.0.1', VAULT_TRUST_PROXY: 'false' });
    // …and cannot make an allowlisted socket look refused either: the header is simply ignored.
    expectValue(await read(n, { localAddress: '127.0.0.1', headers: { 'x-forwarded-for': '10.9.9.9' } }));
    expectRefused(await read(n, { localAddress: '127.0.0.2', headers: { 'x-forwarded-for': '127.0.0.1' } }));
  });
});

describe('malformed configuration stops `coffer server`', () => {
  const base = () => nodeEnv({ dataDir: tempDir(), masterKey: randomMasterKey(), bootstrapToken: randomToken() });

  it.each([
    ['VAULT_READ_ALLOWLIST', '10.0.0.256'],
    ['VAULT_READ_ALLOWLIST', '10.0.0.0/33'],
    ['VAULT_READ_ALLOWLIST', '127.0.0.1, localhost'],
    ['VAULT_READ_ALLOWLIST', '10.0.0.0/8/8'],
    ['VAULT_READ_ALLOWLIST', '::1'],
    ['VAULT_READ_ALLOWLIST', '010.0.0.1'],
    ['VAULT_READ_ALLOWLIST', '10.0.0.0/'],
    ['VAULT_TRUST_PROXY', 'maybe'],
    ['VAULT_TRUST_PROXY', 'true'], // without VAULT_TRUSTED_PROXIES: whose X-Forwarded-For would be believed?
    ['VAULT_TRUSTED_PROXIES', '10.0.0.0/33'],
  ])('%s=%j exits non-zero naming the variable', async (name, value) => {
    const { code, output } = await runToExit({ ...base(), [name]: value });
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(output).toContain(name);
    expect(output).not.toContain('coffer node ready');
    expect(output).not.toMatch(/\n\s+at /); // one clear line, not a stack trace
  });
});
