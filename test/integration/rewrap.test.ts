// The re-wrap worker on a real node (local KMS with an on-demand rotation):
// baseline adoption, a pass that re-wraps every live version without touching
// ciphertext, idempotent second passes, pacing, and the disabled case.
import { afterEach, describe, expect, it } from 'vitest';
import type { LocalKms } from '../../server/kms/local.js';
import { client } from '../helpers/http.js';
import { startTestNode, type TestNode } from '../helpers/node.js';
import { versionRows } from '../helpers/state-db.js';

let nodes: TestNode[] = [];
afterEach(async () => {
  await Promise.all(nodes.map((n) => n.close()));
  nodes = [];
});

async function node(env: Record<string, string>) {
  const n = await startTestNode({ env });
  nodes.push(n);
  return n;
}

async function waitForPass(n: TestNode, outcome: string, timeoutMs = 15_000) {
  const c = client(n.url, n.token);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = (await c.get('/v1/admin/kms/rewrap/status')).body;
    if (s.last_pass?.outcome === outcome && !s.running) return s;
    if (Date.now() > deadline) throw new Error(`no ${outcome} pass: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const ENABLED = { VAULT_KMS_REWRAP_ENABLED: 'true', VAULT_KMS_REWRAP_POLL_SECS: '3600', VAULT_KMS_REWRAP_MAX_PER_SEC: '1000' };

describe('re-wrap worker', () => {
  it('adopts the current rotation as its baseline without a sweep', async () => {
    const n = await node(ENABLED);
    const s = await waitForPass(n, 'baseline');
    expect(s).toMatchObject({ enabled: true, watermark: 'none', pending_versions: 0, blocked_by: null });
    expect(s.last_pass).toMatchObject({ rewrapped: 0, failed: 0 });
  });

  it('re-wraps every live version after a rotation, leaving ciphertext, nonce and AAD untouched', async () => {
    const n = await node(ENABLED);
    const c = client(n.url, n.token);
    await waitForPass(n, 'baseline');
    for (let i = 0; i < 4; i++) {
      await c.put(`/v1/secrets/rw/${i}`, { value: `first-${i}` });
      await c.put(`/v1/secrets/rw/${i}`, { value: `second-${i}` });
    }
    await c.put('/v1/secrets/rw/gone', { value: 'x' });
    await c.del('/v1/secrets/rw/gone');
    const before = versionRows(n.dataDir);
    const newKey = (n.node.internals.kms as LocalKms).rotate();
    const forced = await c.post('/v1/admin/kms/rewrap');
    expect(forced.status).toBe(202);
    const s = await waitForPass(n, 'complete');
    expect(s.last_pass).toMatchObject({ rewrapped: 8, failed: 0 });
    expect(s.pending_versions).toBe(0);
    expect(s.watermark).toBe(s.last_pass.rotation);

    const after = versionRows(n.dataDir);
    expect(after).toHaveLength(8);
    for (const [i, a] of after.entries()) {
      const b = before[i]!;
      expect([a.name, a.version]).toEqual([b.name, b.version]);
      expect(a.ciphertext.equals(b.ciphertext)).toBe(true);
      expect(a.nonce.equals(b.nonce)).toBe(true);
      expect(a.wrapped_dek.equals(b.wrapped_dek)).toBe(false);
      expect(a.kms_key_id).toBe(newKey);
      expect(b.kms_key_id).not.toBe(newKey);
      expect(a.wrapped_rotation_at).toBe(s.watermark);
    }
    // Old and new versions still open (new wraps miss the DEK cache, so this exercises them).
    for (let i = 0; i < 4; i++) {
      expect((await client(n.url).get(`/v1/secrets/rw/${i}?version=1`)).body.value).toBe(`first-${i}`);
      expect((await client(n.url).get(`/v1/secrets/rw/${i}`)).body.value).toBe(`second-${i}`);
    }
    const meta = await c.get('/v1/metadata/rw/0');
    expect(meta.body.versions[0]).toMatchObject({ kms_key_id: newKey, wrapped_rotation_at: s.watermark });

    // A second pass with no newer rotation changes nothing.
    await c.post('/v1/admin/kms/rewrap');
    const again = await waitForPass(n, 'nothing_to_do');
    expect(again.last_pass.rewrapped).toBe(0);
    expect(versionRows(n.dataDir).map((r) => r.wrapped_dek.toString('hex'))).toEqual(after.map((r) => r.wrapped_dek.toString('hex')));
  });

  it('never exceeds VAULT_KMS_REWRAP_MAX_PER_SEC', async () => {
    const n = await node({ ...ENABLED, VAULT_KMS_REWRAP_MAX_PER_SEC: '10' });
    const c = client(n.url, n.token);
    await waitForPass(n, 'baseline');
    for (let i = 0; i < 12; i++) await c.put(`/v1/secrets/pace/${i}`, { value: 'v' });
    (n.node.internals.kms as LocalKms).rotate();
    await c.post('/v1/admin/kms/rewrap');
    const s = await waitForPass(n, 'complete');
    expect(s.last_pass.rewrapped).toBe(12);
    // 12 ReEncrypt calls at most 10 per second: the first and last start at least 1.1 s apart.
    const seconds = (Date.parse(s.last_pass.finished) - Date.parse(s.last_pass.started)) / 1000;
    expect(seconds).toBeGreaterThanOrEqual(1.1);
  });

  it('refuses to force a pass when disabled and says so in its status', async () => {
    const n = await node({});
    const c = client(n.url, n.token);
    const forced = await c.post('/v1/admin/kms/rewrap');
    expect(forced.status).toBe(409);
    expect(forced.body.error.code).toBe('conflict');
    expect((await c.get('/v1/admin/kms/rewrap/status')).body).toMatchObject({ enabled: false, watermark: null, last_pass: null });
    expect((await client(n.url).get('/v1/admin/kms/rewrap/status')).status).toBe(401);
  });
});
