// The re-wrap worker against moto's real KMS wire protocol: RotateKeyOnDemand,
// then a pass that ReEncrypts every live version's wrapped DEK; pacing;
// baseline adoption; and a pass cut short by killing the leader, resumed by
// the next leader without redoing finished versions.
import { DecryptCommand, RotateKeyOnDemandCommand } from '@aws-sdk/client-kms';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster } from '../helpers/cluster.js';
import { client } from '../helpers/http.js';
import { versionRows, type VersionRow } from '../helpers/state-db.js';
import { MotoServer, cofferAwsEnv, type MotoKey } from './moto.js';
import { metricSum, spawnAwsNode, type AwsNode } from './node.js';

let moto: MotoServer;
let nodes: AwsNode[] = [];
let cluster: TestCluster | null = null;

beforeAll(async () => {
  moto = await MotoServer.start();
});
afterAll(async () => {
  await moto?.close();
});
afterEach(async () => {
  await Promise.all(nodes.map((n) => n.destroy()));
  nodes = [];
  await cluster?.stop();
  cluster = null;
});

type Status = { enabled: boolean; watermark: string | null; pending_versions: number; running: boolean; last_pass: null | { outcome: string; rewrapped: number; failed: number; started: string; finished: string | null; rotation: string | null } };

async function waitStatus(url: string, token: string, pred: (s: Status) => boolean, timeoutMs = 30_000): Promise<Status> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await client(url, token).get('/v1/admin/kms/rewrap/status').catch(() => null);
    if (res?.status === 200 && pred(res.body)) return res.body;
    if (Date.now() > deadline) throw new Error(`re-wrap status never matched: ${res?.text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const rewrapEnv = (maxPerSec: number) => ({
  VAULT_KMS_REWRAP_ENABLED: 'true',
  VAULT_KMS_REWRAP_POLL_SECS: '3600',
  VAULT_KMS_REWRAP_MAX_PER_SEC: String(maxPerSec),
});

async function rotate(key: MotoKey): Promise<void> {
  await moto.client.send(new RotateKeyOnDemandCommand({ KeyId: key.keyId }));
}

describe('re-wrap worker on the KMS wire protocol', () => {
  it('adopts the baseline, then after RotateKeyOnDemand re-wraps every live version with ciphertext untouched', async () => {
    const key = await moto.createKey();
    const n = await spawnAwsNode(moto.endpoint, key.alias, rewrapEnv(1000));
    nodes.push(n);
    const base = await waitStatus(n.url, n.token, (s) => s.last_pass?.outcome === 'baseline');
    expect(base).toMatchObject({ enabled: true, watermark: 'none', pending_versions: 0 });
    const c = client(n.url, n.token);
    for (let i = 0; i < 3; i++) {
      await c.put(`/v1/secrets/kr/${i}`, { value: `old-${i}` });
      await c.put(`/v1/secrets/kr/${i}`, { value: `new-${i}` });
    }
    const before = versionRows(n.dataDir);

    await rotate(key);
    expect((await c.post('/v1/admin/kms/rewrap')).status).toBe(202);
    const done = await waitStatus(n.url, n.token, (s) => s.last_pass?.outcome === 'complete' && !s.running);
    expect(done.last_pass).toMatchObject({ rewrapped: 6, failed: 0 });
    expect(done.watermark).toBe(done.last_pass!.rotation);
    expect(done.pending_versions).toBe(0);
    expect(await metricSum(n.url, 'coffer_kms_requests_total', { operation: 're_encrypt', result: 'ok' })).toBe(6);

    const after = versionRows(n.dataDir);
    for (const [i, a] of after.entries()) {
      const b = before[i]!;
      expect(a.ciphertext.equals(b.ciphertext)).toBe(true);
      expect(a.nonce.equals(b.nonce)).toBe(true);
      expect(a.wrapped_dek.equals(b.wrapped_dek)).toBe(false);
      expect(a.kms_key_id).toBe(key.arn);
      expect(a.wrapped_rotation_at).toBe(done.watermark);
      // The new wrap is a KMS ciphertext bound to the same context.
      const out = await moto.client.send(new DecryptCommand({
        CiphertextBlob: a.wrapped_dek, KeyId: a.kms_key_id, EncryptionContext: { secret: a.name, version: String(a.version) },
      }));
      expect(out.Plaintext).toHaveLength(32);
    }
    // A restart empties the DEK cache: every version opens through Decrypt of its new wrap.
    await n.stop();
    await n.restart();
    for (let i = 0; i < 3; i++) {
      expect((await client(n.url).get(`/v1/secrets/kr/${i}?version=1`)).body.value).toBe(`old-${i}`);
      expect((await client(n.url).get(`/v1/secrets/kr/${i}`)).body.value).toBe(`new-${i}`);
    }
    // Nothing new: a forced pass does nothing.
    await client(n.url, n.token).post('/v1/admin/kms/rewrap');
    const idle = await waitStatus(n.url, n.token, (s) => s.last_pass?.outcome === 'nothing_to_do');
    expect(idle.last_pass!.rewrapped).toBe(0);
    expect(versionRows(n.dataDir).map((r) => r.wrapped_dek.toString('hex'))).toEqual(after.map((r) => r.wrapped_dek.toString('hex')));
  });

  it('paces ReEncrypt at VAULT_KMS_REWRAP_MAX_PER_SEC', async () => {
    const key = await moto.createKey();
    const n = await spawnAwsNode(moto.endpoint, key.alias, rewrapEnv(5));
    nodes.push(n);
    await waitStatus(n.url, n.token, (s) => s.last_pass?.outcome === 'baseline');
    for (let i = 0; i < 8; i++) await client(n.url, n.token).put(`/v1/secrets/pace/${i}`, { value: 'v' });
    await rotate(key);
    await client(n.url, n.token).post('/v1/admin/kms/rewrap');
    const done = await waitStatus(n.url, n.token, (s) => s.last_pass?.outcome === 'complete' && !s.running);
    expect(done.last_pass!.rewrapped).toBe(8);
    // 8 calls at no more than 5 per second: first and last start at least 1.4 s apart.
    const seconds = (Date.parse(done.last_pass!.finished!) - Date.parse(done.last_pass!.started)) / 1000;
    expect(seconds).toBeGreaterThanOrEqual(1.4);
  });

  it('resumes a pass cut short by killing the leader, without redoing finished versions', async () => {
    const key = await moto.createKey();
    cluster = await TestCluster.start(3, { ...cofferAwsEnv(moto.endpoint, key.alias), ...rewrapEnv(4) });
    const lead = await cluster.waitForLeader();
    const leadUrl = cluster.member(lead).url;
    await waitStatus(leadUrl, cluster.token, (s) => s.last_pass?.outcome === 'baseline');
    const c = client(leadUrl, cluster.token);
    for (let i = 0; i < 16; i++) expect((await c.put(`/v1/secrets/resume/${String(i).padStart(2, '0')}`, { value: `v${i}` })).status).toBe(201);
    await rotate(key);
    await c.post('/v1/admin/kms/rewrap');

    // Let a few versions through (4 per second), then kill the leader mid-pass.
    const witness = cluster.members.find((m) => m.id !== lead)!;
    const deadline = Date.now() + 20_000;
    let doneBefore: VersionRow[] = [];
    while (Date.now() < deadline) {
      doneBefore = versionRows(witness.dataDir).filter((r) => r.wrapped_rotation_at !== null);
      if (doneBefore.length >= 4) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(doneBefore.length).toBeGreaterThanOrEqual(4);
    await cluster.stopMember(lead, 'SIGKILL');
    doneBefore = versionRows(witness.dataDir).filter((r) => r.wrapped_rotation_at !== null);
    expect(doneBefore.length).toBeLessThan(16);

    const next = await cluster.waitForLeader(20_000, [lead]);
    const done = await waitStatus(cluster.member(next).url, cluster.token, (s) => s.last_pass?.outcome === 'complete' && !s.running, 30_000);
    // The new leader did only what was left.
    expect(done.last_pass!.rewrapped).toBeLessThanOrEqual(16 - doneBefore.length);
    expect(done.last_pass!.rewrapped).toBeGreaterThan(0);
    const after = versionRows(witness.dataDir);
    expect(after.every((r) => r.wrapped_rotation_at === done.watermark)).toBe(true);
    for (const b of doneBefore) {
      const a = after.find((r) => r.name === b.name && r.version === b.version)!;
      expect(a.wrapped_dek.equals(b.wrapped_dek)).toBe(true); // not re-wrapped a second time
    }
    for (let i = 0; i < 16; i++) {
      expect((await client(witness.url).get(`/v1/secrets/resume/${String(i).padStart(2, '0')}`)).body.value).toBe(`v${i}`);
    }
  });
});
