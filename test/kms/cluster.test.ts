// A 3-node cluster of real processes in aws mode: the leader seals with a DEK
// from KMS, followers store the same wrapped DEK and key ARN through Raft, and
// each node unwraps on its own with Decrypt under the stored key id.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster } from '../helpers/cluster.js';
import { client } from '../helpers/http.js';
import { versionRow } from '../helpers/state-db.js';
import { MotoServer, cofferAwsEnv, type MotoKey } from './moto.js';
import { metricSum } from './node.js';

let moto: MotoServer;
let key: MotoKey;
let cluster: TestCluster;

beforeAll(async () => {
  moto = await MotoServer.start();
  key = await moto.createKey();
  cluster = await TestCluster.start(3, cofferAwsEnv(moto.endpoint, key.alias));
});

afterAll(async () => {
  await cluster?.stop();
  await moto?.close();
});

describe('3-node cluster in aws mode', () => {
  it('writes through a follower are readable on every node, with one wrapped DEK and the key ARN everywhere', async () => {
    const leader = await cluster.waitForLeader();
    const followers = cluster.members.filter((m) => m.id !== leader);
    expect(followers).toHaveLength(2);

    const values = new Map<string, string>();
    for (const [i, f] of followers.entries()) {
      const c = client(f.url, cluster.token);
      for (let v = 1; v <= 2; v++) {
        const name = `cluster/s${i}`;
        const value = `cluster-${i}-v${v}-do-not-leak`;
        const res = await c.put(`/v1/secrets/${name}`, { value });
        expect(res.status, res.text).toBe(v === 1 ? 201 : 200);
        expect(res.body.version).toBe(v);
        values.set(`${name}@${v}`, value);
      }
    }
    const rot = await client(followers[0]!.url, cluster.token).post('/v1/secrets/cluster/s1:rotate', {});
    expect(rot.status, rot.text).toBe(200);
    values.set('cluster/s1@3', rot.body.value);

    for (const m of cluster.members) {
      for (const [k, value] of values) {
        const [name, v] = k.split('@') as [string, string];
        for (const q of [`?version=${v}`, `?version=${v}&consistency=stale`]) {
          const res = await client(m.url).get(`/v1/secrets/${name}${q}`);
          expect(res.status, `${m.id} ${name}${q}: ${res.text}`).toBe(200);
          expect(res.body.value).toBe(value);
        }
      }
      const meta = await client(m.url, cluster.token).get('/v1/metadata/cluster/s1');
      expect(meta.body.current_version).toBe(3);
      for (const v of meta.body.versions) expect(v.kms_key_id).toBe(key.arn);
      // Each node unwrapped through KMS itself (no DEK travels between nodes).
      expect(await metricSum(m.url, 'coffer_kms_requests_total', { operation: 'decrypt', result: 'ok' })).toBeGreaterThanOrEqual(1);
    }

    // One GenerateDataKey per version across the cluster (whichever node seals), and
    // every replica holds the very same sealed bytes: no node re-wraps on its own.
    let gdk = 0;
    for (const m of cluster.members) gdk += await metricSum(m.url, 'coffer_kms_requests_total', { operation: 'generate_data_key', result: 'ok' });
    expect(gdk).toBe(5);
    const rows = cluster.members.map((m) => versionRow(m.dataDir, 'cluster/s0', 2)!);
    for (const r of rows) {
      expect(r.kms_key_id).toBe(key.arn);
      expect(Buffer.compare(r.wrapped_dek, rows[0]!.wrapped_dek)).toBe(0);
      expect(Buffer.compare(r.ciphertext, rows[0]!.ciphertext)).toBe(0);
    }
  });
});
