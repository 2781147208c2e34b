// KMS outage under load (DESIGN §1 "KMS-outage resilience"): the emulator
// process is stopped while nodes serve traffic, then started again on the same
// port. During the outage cached reads keep answering, every write and every
// uncached read fails with a bounded 503 kms_unavailable and leaves nothing
// behind; afterwards the same node processes recover on their own and nothing
// acknowledged is lost.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectError } from '../helpers/assert.js';
import { client, type HttpResponse } from '../helpers/http.js';
import { versionCount } from '../helpers/state-db.js';
import { MotoServer, type MotoKey } from './moto.js';
import { metricSum, spawnAwsNode, timed, type AwsNode } from './node.js';

const SECRETS = 6;
const ROUNDS = 8;
/** A KMS call that fails at once (connection refused) is retried 5 times with ≤ 1.5 s backoff in all. */
const FAIL_BOUND_MS = 10_000;
const HIT_BOUND_MS = 2_000;

const name = (i: number) => `outage/s${i}`;
const value = (i: number, v: number) => `outage-${i}-v${v}-do-not-leak`;

let moto: MotoServer;
let key: MotoKey;
let cached: AwsNode; // VAULT_DEK_CACHE_TTL_SECS=300
let nocache: AwsNode; // VAULT_DEK_CACHE_TTL_SECS=0
/** Every write a node acknowledged: name -> version -> value. */
const acked = new Map<AwsNode, Map<string, Map<number, string>>>();

function ack(node: AwsNode, n: string, version: number, v: string): void {
  if (!acked.has(node)) acked.set(node, new Map());
  const m = acked.get(node)!;
  if (!m.has(n)) m.set(n, new Map());
  m.get(n)!.set(version, v);
}

async function put(node: AwsNode, n: string, v: string): Promise<HttpResponse> {
  const res = await client(node.url, node.token).put(`/v1/secrets/${n}`, { value: v });
  if (res.status === 200 || res.status === 201) ack(node, n, res.body.version, v);
  return res;
}

beforeAll(async () => {
  moto = await MotoServer.start();
  key = await moto.createKey();
  cached = await spawnAwsNode(moto.endpoint, key.alias, { VAULT_DEK_CACHE_TTL_SECS: '300' });
  nocache = await spawnAwsNode(moto.endpoint, key.alias, { VAULT_DEK_CACHE_TTL_SECS: '0' });

  for (let i = 0; i < SECRETS; i++) {
    for (const v of [1, 2]) expect((await put(cached, name(i), value(i, v))).body.version).toBe(v);
    // Reading version 2 (the current one) once puts its DEK in the cache; version 1 is never read.
    expect((await client(cached.url).get(`/v1/secrets/${name(i)}`)).body.value).toBe(value(i, 2));
  }
  for (let i = 0; i < 3; i++) {
    expect((await put(nocache, name(i), value(i, 1))).status).toBe(201);
    expect((await client(nocache.url).get(`/v1/secrets/${name(i)}`)).body.value).toBe(value(i, 1));
  }
});

afterAll(async () => {
  await cached?.destroy();
  await nocache?.destroy();
  await moto?.close();
});

describe('KMS emulator stopped under load, then restarted on the same port', () => {
  it('during the outage: cached reads answer, writes and uncached reads fail with a bounded 503, nothing is half-written', async () => {
    const rowsBefore = versionCount(cached.dataDir);
    const rowsBeforeNoCache = versionCount(nocache.dataDir);
    const hitsBefore = await metricSum(cached.url, 'coffer_dek_cache_hits_total');
    await moto.stop();

    const reader = client(cached.url);
    const cachedReads = async () => {
      for (let round = 0; round < ROUNDS; round++) {
        await Promise.all(
          Array.from({ length: SECRETS }, async (_, i) => {
            for (const p of [`/v1/secrets/${name(i)}`, `/v1/secrets/${name(i)}?version=2&consistency=stale`]) {
              const { value: res, ms } = await timed(() => reader.get(p));
              expect(res.status, `${p} in round ${round}: ${res.text}`).toBe(200);
              expect(res.body).toMatchObject({ name: name(i), version: 2, value: value(i, 2) });
              expect(ms).toBeLessThan(HIT_BOUND_MS);
            }
          }),
        );
      }
    };
    const failing: Array<[string, () => Promise<HttpResponse>]> = [
      ...Array.from({ length: SECRETS }, (_, i): [string, () => Promise<HttpResponse>] => [`PUT ${name(i)}`, () => put(cached, name(i), value(i, 3))]),
      ['PUT a new secret', () => put(cached, 'outage/new', 'outage-new-do-not-leak')],
      ['PUT with cas', () => client(cached.url, cached.token).put(`/v1/secrets/${name(0)}`, { value: 'cas-do-not-leak', cas: 2 })],
      ['rotate', () => client(cached.url, cached.token).post(`/v1/secrets/${name(1)}:rotate`, {})],
      ...Array.from({ length: SECRETS }, (_, i): [string, () => Promise<HttpResponse>] => [`GET uncached ${name(i)} v1`, () => reader.get(`/v1/secrets/${name(i)}?version=1`)]),
      ...Array.from({ length: 3 }, (_, i): [string, () => Promise<HttpResponse>] => [`GET ${name(i)} on the TTL=0 node`, () => client(nocache.url).get(`/v1/secrets/${name(i)}`)]),
      ['PUT on the TTL=0 node', () => put(nocache, name(0), 'nocache-v2-do-not-leak')],
    ];
    const results = await Promise.all([
      cachedReads(),
      ...failing.map(async ([what, send]) => {
        const { value: res, ms } = await timed(send);
        expect(res.status, `${what}: ${res.text}`).toBe(503);
        expectError(res, 503, 'kms_unavailable');
        expect(res.text).not.toMatch(/do-not-leak|ECONNREFUSED|127\.0\.0\.1|Exception/);
        expect(ms, `${what} took ${Math.round(ms)} ms`).toBeLessThan(FAIL_BOUND_MS);
        return ms;
      }),
    ]);
    const slowest = Math.max(...(results.slice(1) as number[]));
    console.log(`[outage] slowest 503 while KMS was down: ${Math.round(slowest)} ms`);

    // A second pass after the first failures: still failing cleanly, still cached.
    expectError(await put(cached, name(2), value(2, 3)), 503, 'kms_unavailable');
    expectError(await reader.get(`/v1/secrets/${name(2)}?version=1`), 503, 'kms_unavailable');
    expect((await reader.get(`/v1/secrets/${name(2)}`)).body.value).toBe(value(2, 2));

    // Nothing half-written: no new version rows, current versions unchanged, no new secret.
    expect(versionCount(cached.dataDir)).toBe(rowsBefore);
    expect(versionCount(nocache.dataDir)).toBe(rowsBeforeNoCache);
    const admin = client(cached.url, cached.token);
    for (let i = 0; i < SECRETS; i++) {
      const meta = await admin.get(`/v1/metadata/${name(i)}`);
      expect(meta.body.current_version).toBe(2);
      expect(meta.body.versions.map((v: { version: number }) => v.version)).toEqual([1, 2]);
    }
    expectError(await admin.get('/v1/metadata/outage/new'), 404, 'not_found');
    expect((await client(nocache.url, nocache.token).get(`/v1/metadata/${name(0)}`)).body.current_version).toBe(1);

    // The node stays up and says why: KMS calls counted as unavailable, reads served from the cache.
    expect((await admin.get('/v1/health')).status).toBe(200);
    expect(await metricSum(cached.url, 'coffer_kms_requests_total', { operation: 'generate_data_key', result: 'unavailable' })).toBeGreaterThanOrEqual(SECRETS + 3);
    expect(await metricSum(cached.url, 'coffer_kms_requests_total', { operation: 'decrypt', result: 'unavailable' })).toBeGreaterThanOrEqual(SECRETS);
    expect(await metricSum(cached.url, 'coffer_dek_cache_hits_total')).toBeGreaterThanOrEqual(hitsBefore + ROUNDS * SECRETS * 2);
    expect(await metricSum(nocache.url, 'coffer_kms_requests_total', { operation: 'decrypt', result: 'unavailable' })).toBeGreaterThanOrEqual(3);
    expect(await metricSum(nocache.url, 'coffer_dek_cache_hits_total')).toBe(0);
  });

  it('after the emulator is back on the same port, the same processes recover without a restart and nothing acknowledged is lost', async () => {
    const pidCached = cached.proc.proc.pid;
    const pidNoCache = nocache.proc.proc.pid;
    await moto.start();
    await moto.restoreKeys();

    // Recovery is automatic: the very next requests succeed (bounded wait only for the emulator's warm-up).
    const deadline = Date.now() + 15_000;
    let first: HttpResponse;
    for (;;) {
      first = await put(cached, name(0), value(0, 3));
      if (first.status === 200 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(first.status, first.text).toBe(200);
    expect(first.body.version).toBe(3);

    const results = await Promise.all([
      ...Array.from({ length: SECRETS - 1 }, (_, j) => put(cached, name(j + 1), value(j + 1, 3))),
      put(cached, 'outage/new', 'outage-new-do-not-leak'),
      put(nocache, name(0), 'nocache-v2-do-not-leak'),
    ]);
    for (const r of results) expect([200, 201], r.text).toContain(r.status);

    // Every acknowledged version reads back, including the ones never read before (uncached v1).
    for (const node of [cached, nocache]) {
      const reader = client(node.url);
      for (const [n, versions] of acked.get(node)!) {
        for (const [v, val] of versions) {
          const res = await reader.get(`/v1/secrets/${n}?version=${v}`);
          expect(res.status, `${n} v${v}: ${res.text}`).toBe(200);
          expect(res.body.value).toBe(val);
        }
        const latest = Math.max(...versions.keys());
        expect((await client(node.url, node.token).get(`/v1/metadata/${n}`)).body.current_version).toBe(latest);
      }
    }
    expect(acked.get(cached)!.get(name(3))!.size).toBe(3);
    expect(cached.proc.proc.pid).toBe(pidCached);
    expect(nocache.proc.proc.pid).toBe(pidNoCache);
    expect(cached.proc.proc.exitCode).toBeNull();
    expect(await metricSum(cached.url, 'coffer_kms_requests_total', { operation: 'decrypt', result: 'ok' })).toBeGreaterThan(SECRETS);
  });
});
