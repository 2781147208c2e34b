// GET /v1/watch, the blocking metadata query, on real nodes over real SQLite:
// answers at once when the client is behind, waits for a matching change
// (and only a matching one the token may see), times out unchanged, reports
// deletes, holds thousands of waiters without a timer each, forgets a client
// that hung up, and works on a follower of a 3-node cluster with a monotonic
// index.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectError } from '../helpers/assert.js';
import { TestCluster } from '../helpers/cluster.js';
import { client, request, type HttpResponse } from '../helpers/http.js';
import { startTestNode, type TestNode } from '../helpers/node.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function indexOf(res: HttpResponse): number {
  expect(res.status).toBe(200);
  const header = Number(res.headers['x-coffer-index']);
  expect(header).toBe(res.body.index);
  return header;
}

/** Resolves with the response, and says whether it has arrived yet. */
function pending(p: Promise<HttpResponse>): { done: () => boolean; res: Promise<HttpResponse> } {
  let arrived = false;
  const res = p.then((r) => ((arrived = true), r));
  return { done: () => arrived, res };
}

async function waitingQueries(url: string, token: string): Promise<number> {
  const res = await request(url, 'GET', '/metrics', { token });
  const m = /^coffer_watch_waiting_queries (\d+)$/m.exec(res.text);
  return Number(m?.[1] ?? NaN);
}

describe('GET /v1/watch on one node', () => {
  let n: TestNode;
  let admin: ReturnType<typeof client>;
  let watcher: ReturnType<typeof client>;
  let outsider: ReturnType<typeof client>;

  beforeAll(async () => {
    n = await startTestNode();
    admin = client(n.url, n.token);
    expect((await admin.put('/v1/roles/watcher', { rules: [{ paths: ['app/pub/*'], actions: ['list', 'read_metadata'] }] })).status).toBe(201);
    expect((await admin.put('/v1/roles/elsewhere', { rules: [{ paths: ['other/*'], actions: ['list', 'read_metadata'] }] })).status).toBe(201);
    watcher = client(n.url, (await admin.post('/v1/tokens', { name: 'w', role: 'watcher' })).body.token);
    outsider = client(n.url, (await admin.post('/v1/tokens', { name: 'o', role: 'elsewhere' })).body.token);
    for (const name of ['app/pub/a', 'app/pub/b', 'app/secret/x']) expect((await admin.put(`/v1/secrets/${name}`, { value: 'v1' })).status).toBe(201);
  });
  afterAll(() => n?.close());

  it('answers at once with index 0 or when the client is behind, with versions and the index header', async () => {
    const first = await admin.get('/v1/watch?prefix=app/&wait=10s');
    const i0 = indexOf(first);
    expect(i0).toBeGreaterThan(0);
    expect(first.body.versions).toEqual({ 'app/pub/a': 1, 'app/pub/b': 1, 'app/secret/x': 1 });
    expect(first.body.truncated).toBe(false);

    expect((await admin.put('/v1/secrets/app/pub/a', { value: 'v2' })).status).toBe(200);
    const t0 = Date.now();
    const behind = await admin.get(`/v1/watch?prefix=app/&index=${i0}&wait=10s`);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(indexOf(behind)).toBeGreaterThan(i0);
    expect(behind.body.versions['app/pub/a']).toBe(2);

    const byName = await admin.get(`/v1/watch?names=app/pub/a,app/nope&index=${i0}`);
    expect(indexOf(byName)).toBeGreaterThan(i0);
    expect(byName.body.versions).toEqual({ 'app/pub/a': 2 });
    expect(byName.body.missing).toEqual(['app/nope']);
  });

  it('blocks, stays asleep on a change elsewhere, wakes on a matching write', async () => {
    const start = indexOf(await admin.get('/v1/watch?prefix=app/pub/'));
    const w = pending(admin.get(`/v1/watch?prefix=app/pub/&index=${start}&wait=20s`));
    const byName = pending(admin.get(`/v1/watch?names=app/pub/b&index=${start}&wait=20s`));
    await sleep(300);
    expect((await admin.put('/v1/secrets/other/x', { value: 'v' })).status).toBe(201);
    expect((await admin.put('/v1/secrets/app/secret/x', { value: 'v2' })).status).toBe(200);
    expect((await admin.put('/v1/secrets/app/pub/a', { value: 'v3' })).status).toBe(200); // not in names=
    await sleep(500);
    expect(w.done()).toBe(true); // app/pub/a woke the prefix watch
    expect(byName.done()).toBe(false);
    const t0 = Date.now();
    expect((await admin.put('/v1/secrets/app/pub/b', { value: 'v2' })).status).toBe(200);
    const res = await byName.res;
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(indexOf(res)).toBeGreaterThan(start);
    expect(res.body.versions).toEqual({ 'app/pub/b': 2 });
    expect((await w.res).body.versions['app/pub/a']).toBe(3);
  });

  it('times out unchanged with the same index', async () => {
    const at = indexOf(await admin.get('/v1/watch?prefix=app/'));
    const t0 = Date.now();
    const res = await admin.get(`/v1/watch?prefix=app/&index=${at}&wait=1s`);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(3500);
    expect(indexOf(res)).toBe(at);
  });

  it('validates its query', async () => {
    expectError(await admin.get('/v1/watch?prefix=app/&wait=301s'), 400, 'bad_request');
    expectError(await admin.get('/v1/watch?prefix=app&index=1'), 400, 'bad_request'); // whole segments only
    expectError(await admin.get('/v1/watch?prefix=app/&names=app/a'), 400, 'bad_request');
    expectError(await admin.get('/v1/watch'), 400, 'bad_request');
    expectError(await admin.get('/v1/watch?names=app/../x'), 400, 'invalid_name');
    expectError(await admin.get('/v1/watch?prefix=app/&index=-1'), 400, 'bad_request');
    expectError(await request(n.url, 'GET', '/v1/watch?prefix=app/'), 401, 'unauthorized');
  });

  it('filters by RBAC: invisible names are never answered and never wake; no list below the prefix is 403', async () => {
    const first = await watcher.get('/v1/watch?prefix=app/');
    const at = indexOf(first);
    expect(Object.keys(first.body.versions).sort()).toEqual(['app/pub/a', 'app/pub/b']);

    const w = pending(watcher.get(`/v1/watch?prefix=app/&index=${at}&wait=20s`));
    await sleep(300);
    expect((await admin.put('/v1/secrets/app/secret/x', { value: 'v3' })).status).toBe(200);
    await sleep(700);
    expect(w.done()).toBe(false);
    expect((await admin.put('/v1/secrets/app/pub/c', { value: 'v1' })).status).toBe(201);
    const res = await w.res;
    expect(Object.keys(res.body.versions).sort()).toEqual(['app/pub/a', 'app/pub/b', 'app/pub/c']);
    expect(res.text).not.toContain('app/secret');

    expectError(await outsider.get('/v1/watch?prefix=app/'), 403, 'forbidden');
    expectError(await watcher.get('/v1/watch?names=app/secret/x'), 403, 'forbidden');
    expectError(await watcher.get('/v1/watch?names=app/pub/a,app/secret/nonexistent'), 403, 'forbidden');
    expect((await outsider.get('/v1/watch?prefix=other/')).body.versions).toEqual({ 'other/x': 1 });

    const audit = await admin.get('/v1/admin/audit?limit=1000');
    const actions = (audit.body.records ?? audit.body) as Array<{ action: string; actor: string; outcome: string }>;
    expect(actions.some((r) => r.action === 'secret.watch' && r.actor === 'w' && r.outcome === 'allowed')).toBe(true);
    expect(actions.some((r) => r.action === 'secret.watch' && r.actor === 'o' && r.outcome === 'denied')).toBe(true);
  });

  it('a token revoked while its query waits gets 401 when it wakes, not the versions', async () => {
    const token = (await admin.post('/v1/tokens', { name: 'soon-revoked', role: 'watcher' })).body.token as string;
    const revoked = client(n.url, token);
    const i = indexOf(await revoked.get('/v1/watch?names=app/pub/b'));
    const waiting = pending(revoked.get(`/v1/watch?names=app/pub/b&index=${i}&wait=20s`));
    await sleep(100);
    expect(waiting.done()).toBe(false);
    expect((await admin.del('/v1/tokens/soon-revoked')).status).toBe(204);
    expect((await admin.put('/v1/secrets/app/pub/b', { value: 'after-revoke' })).status).toBe(200);
    const res = await waiting.res;
    expect(res.status).toBe(401);
    expect(res.body.versions).toBeUndefined();
  });

  it('a delete wakes the waiters and is reported', async () => {
    expect((await admin.put('/v1/secrets/gone/x', { value: 'v' })).status).toBe(201);
    const at = indexOf(await admin.get('/v1/watch?prefix=gone/'));
    const byPrefix = pending(admin.get(`/v1/watch?prefix=gone/&index=${at}&wait=20s`));
    const byName = pending(admin.get(`/v1/watch?names=gone/x&index=${at}&wait=20s`));
    await sleep(300);
    expect((await admin.del('/v1/secrets/gone/x')).status).toBe(204);
    const p = await byPrefix.res;
    expect(indexOf(p)).toBeGreaterThan(at);
    expect(p.body.versions).toEqual({});
    const nm = await byName.res;
    expect(nm.body.versions).toEqual({});
    expect(nm.body.missing).toEqual(['gone/x']);
  });

  it('holds 2,000 waiters without a timer each and wakes them all; a client that hangs up is forgotten', async () => {
    const at = indexOf(await admin.get('/v1/watch?prefix=many/'));
    const timers = () => process.getActiveResourcesInfo().filter((t) => t === 'Timeout').length;
    const before = timers();
    const waiters = Array.from({ length: 2000 }, (_, i) =>
      admin.get(i % 2 ? `/v1/watch?prefix=many/&index=${at}&wait=60s` : `/v1/watch?names=many/x&index=${at}&wait=60s`),
    );
    for (let i = 0; i < 200 && (await waitingQueries(n.url, n.token)) < 2000; i++) await sleep(50);
    expect(await waitingQueries(n.url, n.token)).toBe(2000);
    // The server and this test share the process: 2,000 waiting requests add at most a handful of timers.
    expect(timers() - before).toBeLessThan(20);
    const t0 = Date.now();
    expect((await admin.put('/v1/secrets/many/x', { value: 'v' })).status).toBe(201);
    const all = await Promise.all(waiters);
    expect(Date.now() - t0).toBeLessThan(10_000);
    for (const r of all) expect(r.body.versions).toEqual({ 'many/x': 1 });
    expect(await waitingQueries(n.url, n.token)).toBe(0);

    const hungUp = request(n.url, 'GET', `/v1/watch?prefix=many/&index=${indexOf(all[0]!)}&wait=60s`, { token: n.token, timeoutMs: 500 });
    await sleep(250);
    expect(await waitingQueries(n.url, n.token)).toBe(1);
    await expect(hungUp).rejects.toThrow();
    for (let i = 0; i < 40 && (await waitingQueries(n.url, n.token)) > 0; i++) await sleep(50);
    expect(await waitingQueries(n.url, n.token)).toBe(0);
  }, 60_000);
});

describe('GET /v1/watch on a follower of a 3-node cluster', () => {
  let c: TestCluster;
  beforeAll(async () => {
    c = await TestCluster.start(3);
  }, 60_000);
  afterAll(() => c?.stop());

  it('wakes on a write through the leader, with a monotonic index across a restart', async () => {
    const leaderId = await c.waitForLeader();
    const follower = c.members.find((m) => m.id !== leaderId)!;
    const leader = client(c.member(leaderId).url, c.token);
    const f = client(follower.url, c.token);
    expect((await leader.put('/v1/secrets/app/db', { value: 'v1' })).status).toBe(201);
    let at = 0;
    for (let i = 0; i < 100; i++) {
      const r = await f.get('/v1/watch?names=app/db');
      if (r.body.versions?.['app/db'] === 1) {
        at = indexOf(r);
        break;
      }
      await sleep(50);
    }
    expect(at).toBeGreaterThan(0);
    const seen = [at];

    const w = pending(f.get(`/v1/watch?names=app/db&index=${at}&wait=20s`));
    await sleep(300);
    expect(w.done()).toBe(false);
    expect((await leader.put('/v1/secrets/app/db', { value: 'v2' })).status).toBe(200);
    const res = await w.res;
    expect(res.body.versions).toEqual({ 'app/db': 2 });
    seen.push(indexOf(res));

    await c.stopMember(follower.id);
    await c.startMember(follower.id);
    let after: HttpResponse | null = null;
    for (let i = 0; i < 100; i++) {
      after = await f.get('/v1/watch?names=app/db').catch(() => null);
      if (after?.status === 200 && after.body.versions['app/db'] === 2) break;
      await sleep(100);
    }
    seen.push(indexOf(after!));

    // A snapshot restore replaces the whole state: the follower's waiters wake, and the index still moves forward.
    const saved = await fetch(`${c.member(leaderId).url}/v1/admin/snapshot`, { headers: { authorization: `Bearer ${c.token}` } });
    expect(saved.status).toBe(200);
    const image = Buffer.from(await saved.arrayBuffer());
    expect((await leader.put('/v1/secrets/app/db', { value: 'v3' })).status).toBe(200);
    let v3: HttpResponse | null = null;
    for (let i = 0; i < 100; i++) {
      v3 = await f.get(`/v1/watch?names=app/db&index=${seen.at(-1)}&wait=5s`);
      if (v3.body.versions['app/db'] === 3) break;
    }
    seen.push(indexOf(v3!));
    const w2 = pending(f.get(`/v1/watch?prefix=app/&index=${seen.at(-1)}&wait=20s`));
    await sleep(300);
    const restored = await fetch(`${c.member(leaderId).url}/v1/admin/snapshot`, {
      method: 'POST', body: image, headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/octet-stream' },
    });
    expect(restored.status).toBeLessThan(300);
    const woke = await w2.res;
    expect(woke.body.versions).toEqual({ 'app/db': 2 });
    seen.push(indexOf(woke));

    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    expect(seen[1]).toBeGreaterThan(seen[0]!);
    expect(seen.at(-1)).toBeGreaterThan(seen.at(-2)!);
  }, 60_000);
});
