// KMS cut off rather than stopped: the node reaches the emulator through a TCP
// proxy that, in `blackhole`, accepts connections and never answers (what a
// network partition or a hung endpoint looks like). No failure is ever
// reported to the SDK, so only the client's own timeouts (aws.ts:
// connectionTimeout 2 s, requestTimeout 5 s, 5 attempts with capped backoff)
// end each call: the 503 must still arrive in bounded time, and cached reads
// must not wait behind it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectError } from '../helpers/assert.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { client, type HttpResponse } from '../helpers/http.js';
import { versionCount } from '../helpers/state-db.js';
import { MotoServer } from './moto.js';
import { metricSum, spawnAwsNode, timed, type AwsNode } from './node.js';

/** 5 attempts x 5 s request timeout + at most 0.1+0.2+0.4+0.8 s backoff = 26.5 s; with slack for a busy machine. */
const HUNG_BOUND_MS = 20_000;

let moto: MotoServer;
let proxy: FaultProxy;
let node: AwsNode;

beforeAll(async () => {
  moto = await MotoServer.start();
  const key = await moto.createKey();
  proxy = await FaultProxy.start('127.0.0.1', '127.0.0.1', moto.port);
  node = await spawnAwsNode(`http://${proxy.address}`, key.arn, { VAULT_DEK_CACHE_TTL_SECS: '300' });
  const c = client(node.url, node.token);
  for (const v of [1, 2]) expect((await c.put('/v1/secrets/cut/a', { value: `cut-a-v${v}` })).body.version).toBe(v);
  expect((await c.get('/v1/secrets/cut/a')).body.value).toBe('cut-a-v2'); // v2 cached, v1 not
  expect(proxy.accepted).toBeGreaterThan(0); // KMS traffic really goes through the proxy
});

afterAll(async () => {
  await node?.destroy();
  await proxy?.close();
  await moto?.close();
});

describe('KMS cut off (connections hang)', () => {
  let hung: Promise<Array<{ value: HttpResponse; ms: number }>>;
  let launchedAt = 0;
  let rows = 0;

  it('cached reads are not held up while KMS calls hang', async () => {
    rows = versionCount(node.dataDir);
    proxy.setMode('blackhole');
    const c = client(node.url, node.token);
    const reader = client(node.url);
    launchedAt = performance.now();
    hung = Promise.all([
      timed(() => c.put('/v1/secrets/cut/a', { value: 'cut-a-v3-do-not-leak' })),
      timed(() => c.put('/v1/secrets/cut/b', { value: 'cut-b-v1-do-not-leak' })),
      timed(() => reader.get('/v1/secrets/cut/a?version=1')),
    ]);
    for (let round = 0; round < 10; round++) {
      const { value: res, ms } = await timed(() => reader.get('/v1/secrets/cut/a'));
      expect(res.status, res.text).toBe(200);
      expect(res.body.value).toBe('cut-a-v2');
      expect(ms).toBeLessThan(2_000);
      await sleep(300);
    }
  });

  // A KMS endpoint that accepts connections but never answers: every attempt
  // must time out (throwOnRequestTimeout) and retries stop at the call's
  // deadline, so writes and uncached reads answer 503 in bounded time.
  it('writes and uncached reads end in a bounded 503 kms_unavailable', { timeout: HUNG_BOUND_MS + 10_000 }, async () => {
    const left = Math.max(0, HUNG_BOUND_MS - (performance.now() - launchedAt));
    const settled = await Promise.race([hung, sleep(left).then(() => null)]);
    if (!settled) throw new Error(`KMS calls still pending ${HUNG_BOUND_MS} ms after the link went silent`);
    for (const { value: res, ms } of settled) {
      expectError(res, 503, 'kms_unavailable');
      expect(ms).toBeLessThan(HUNG_BOUND_MS);
      console.log(`[cutoff] 503 after ${Math.round(ms)} ms`);
    }
  });

  it('once connections are reset, every pending call ends in 503 kms_unavailable and nothing is half-written', async () => {
    proxy.setMode('drop'); // resets the hung connections; new ones are refused with a reset
    const settled = await Promise.race([hung, sleep(15_000).then(() => null)]);
    expect(settled, 'pending KMS calls did not end within 15 s of their connections being reset').not.toBeNull();
    for (const { value: res } of settled!) {
      expectError(res, 503, 'kms_unavailable');
      expect(res.text).not.toMatch(/do-not-leak|Timeout|timed out|ECONNRESET|127\.0\.0\.1/i);
    }
    const c = client(node.url, node.token);
    expect(versionCount(node.dataDir)).toBe(rows);
    expect((await c.get('/v1/metadata/cut/a')).body.current_version).toBe(2);
    expectError(await c.get('/v1/metadata/cut/b'), 404, 'not_found');
    expect(await metricSum(node.url, 'coffer_kms_requests_total', { result: 'unavailable' })).toBeGreaterThanOrEqual(3);
    expect((await client(node.url).get('/v1/secrets/cut/a')).body.value).toBe('cut-a-v2');
  });

  it('when the link comes back, the same process serves writes and uncached reads again', async () => {
    proxy.setMode('pass');
    const c = client(node.url, node.token);
    const put = await c.put('/v1/secrets/cut/a', { value: 'cut-a-v3' });
    expect(put.status, put.text).toBe(200);
    expect(put.body.version).toBe(3);
    expect((await c.put('/v1/secrets/cut/b', { value: 'cut-b-v1' })).status).toBe(201);
    const reader = client(node.url);
    for (const [p, v] of [['/v1/secrets/cut/a?version=1', 'cut-a-v1'], ['/v1/secrets/cut/a?version=2', 'cut-a-v2'], ['/v1/secrets/cut/a', 'cut-a-v3'], ['/v1/secrets/cut/b', 'cut-b-v1']] as const) {
      const res = await reader.get(p);
      expect(res.status, `${p}: ${res.text}`).toBe(200);
      expect(res.body.value).toBe(v);
    }
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
