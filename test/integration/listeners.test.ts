// Separate listeners: with VAULT_MGMT_ADDR the API address serves value reads
// (and health, readiness, metrics) only; management answers on its own address.
import { afterEach, describe, expect, it } from 'vitest';
import { client } from '../helpers/http.js';
import { startTestNode, type TestNode } from '../helpers/node.js';

let nodes: TestNode[] = [];
afterEach(async () => {
  await Promise.all(nodes.map((n) => n.close()));
  nodes = [];
});

describe('management listener', () => {
  it('keeps management off the API address and serves it on its own', async () => {
    const n = await startTestNode({ env: { VAULT_MGMT_ADDR: '127.0.0.3:0' } });
    nodes.push(n);
    const mgmtUrl = n.node.mgmtUrl!;
    expect(mgmtUrl).toMatch(/^http:\/\/127\.0\.0\.3:\d+$/);
    const api = client(n.url, n.token);
    const mgmt = client(mgmtUrl, n.token);

    for (const res of [
      await api.put('/v1/secrets/l/x', { value: 'v' }),
      await api.get('/v1/tokens'),
      await api.get('/v1/admin/cluster'),
      await api.get('/v1/metadata/l/x'),
      await api.post('/v1/secrets/l/x:rotate'),
    ]) {
      expect(res.status).toBe(404);
      expect(res.body.error).toEqual({ code: 'not_found', message: 'served on the management listener only' });
    }
    expect((await mgmt.put('/v1/secrets/l/x', { value: 'v' })).status).toBe(201);
    expect((await api.get('/v1/secrets/l/x')).body.value).toBe('v');
    // The blocking query answers where values are read (a reader must learn of new versions there).
    const watched = await api.get('/v1/watch?names=l/x');
    expect(watched.status).toBe(200);
    expect(watched.body.versions).toEqual({ 'l/x': 1 });
    expect((await api.get('/v1/health')).status).toBe(200);
    expect((await api.get('/v1/ready')).status).toBe(200);
    expect((await client(n.url).get('/metrics')).status).toBe(200);
    // Refused management requests are audited like any other.
    const audit = (await mgmt.get('/v1/admin/audit?limit=1000')).body.records as { action: string; status: number }[];
    expect(audit.filter((r) => r.status === 404 && r.action === 'token.list')).toHaveLength(1);
  });
});
