// Issue 11, finding 2, on a real 3-node cluster run in this process (real
// listeners on 127.0.0.1-3, real log files and state.db): a committed command
// with invalid content is rejected identically on every node, which go on
// serving writes; only an entry a node cannot decode stops it, and then its
// liveness probe fails so the kubelet restarts it.
import { pino } from 'pino';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../server/config/config.js';
import { startNode, type RunningNode } from '../../server/node/node.js';
import type { Command } from '../../server/store/commands.js';
import { client, request } from '../helpers/http.js';
import { freePort } from '../helpers/net.js';
import { randomMasterKey, randomToken, tempDir } from '../helpers/node.js';

interface InProcessCluster {
  nodes: RunningNode[];
  token: string;
  close(): Promise<void>;
}

async function startCluster(): Promise<InProcessCluster> {
  const root = tempDir('coffer-total-');
  const token = randomToken();
  const [masterKey, clusterKey] = [randomMasterKey(), randomMasterKey()];
  const members = [];
  for (let i = 1; i <= 3; i++) {
    const host = `127.0.0.${i}`;
    members.push({ id: `n${i}`, host, raftPort: await freePort(host) });
  }
  const peers = members.map((m) => `${m.id}=${m.host}:${m.raftPort}`).join(',');
  const nodes = await Promise.all(
    members.map((m) => {
      const dataDir = path.join(root, m.id);
      const env = {
        VAULT_DATA_DIR: dataDir, VAULT_API_ADDR: `${m.host}:0`, VAULT_RAFT_ADDR: `${m.host}:${m.raftPort}`, VAULT_NODE_ID: m.id,
        VAULT_PEERS: peers, VAULT_LOCAL_MASTER_KEY: masterKey, VAULT_CLUSTER_KEY: clusterKey, VAULT_BOOTSTRAP_TOKEN: token,
        VAULT_READ_ALLOWLIST: '127.0.0.0/8',
      };
      return startNode(loadConfig(env), pino({ level: 'info' }, pino.destination({ dest: path.join(root, `${m.id}.log`), sync: true })));
    }),
  );
  const cluster = { nodes, token, close: async () => void (await Promise.allSettled(nodes.map((n) => n.close()))) };
  // Every node knows the leader and accepts the bootstrap token.
  const deadline = Date.now() + 15_000;
  for (const n of nodes) {
    for (;;) {
      const r = await request(n.apiUrl, 'GET', '/v1/admin/cluster', { token }).catch(() => null);
      if (r?.status === 200 && r.body.leader_id) break;
      if (Date.now() > deadline) {
        await cluster.close();
        throw new Error(`cluster did not form: ${r?.status}`);
      }
      await new Promise((res) => setTimeout(res, 50));
    }
  }
  return cluster;
}

const leaderOf = (c: InProcessCluster) => c.nodes.find((n) => n.internals.replicator.isLeader())!;

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let cluster: InProcessCluster | null = null;
afterEach(async () => {
  await cluster?.close();
  cluster = null;
});

describe('applying is total (issue 11, finding 2)', () => {
  it('a committed kms.state with values null is rejected on every node, and every node goes on serving writes', async () => {
    cluster = await startCluster();
    const leader = leaderOf(cluster);
    // Proposed by the leader itself, as a member with Raft access could have had it committed.
    const result = await leader.internals.replicator.propose({ t: 'kms.state', v: 1, values: null } as unknown as Command);
    expect(result).toEqual({ ok: false, code: 'bad_request', message: expect.stringContaining('kms.state@1') });
    const committed = leader.internals.replicator.status().commit_index;
    await until('every node applied the rejection', () => cluster!.nodes.every((n) => n.internals.replicator.status().applied_index >= committed));
    for (const n of cluster.nodes) {
      expect(n.internals.replicator.status()).toMatchObject({ stopped: false, problem: null });
      expect((await request(n.apiUrl, 'GET', '/v1/health')).body.status).toBe('ok');
      // Operators see it: every node counts the rejection.
      const metrics = await request(n.apiUrl, 'GET', '/metrics');
      expect(metrics.text).toMatch(/^coffer_apply_rejected_total\{kind="invalid"\} 1$/m);
      expect(metrics.text).toMatch(/^coffer_apply_rejected_total\{kind="fault"\} 0$/m);
    }
    // Writes through every node (followers forward) commit and are read back everywhere.
    for (const [i, n] of cluster.nodes.entries()) {
      const put = await client(n.apiUrl, cluster.token).put(`/v1/secrets/after/${i}`, { value: `v${i}` });
      expect(put.status, put.text).toBe(201);
    }
    for (const n of cluster.nodes) {
      for (let i = 0; i < 3; i++) expect((await request(n.apiUrl, 'GET', `/v1/secrets/after/${i}`)).body.value).toBe(`v${i}`);
    }
  });

  it('a follower cannot forward what only the leader builds: the leader refuses it before it reaches the log', async () => {
    cluster = await startCluster();
    const leader = leaderOf(cluster);
    const follower = cluster.nodes.find((n) => n !== leader)!;
    const before = leader.internals.replicator.status().commit_index;
    const forged: Command[] = [
      { t: 'kms.state', v: 1, values: null } as unknown as Command,
      { t: 'kms.state', v: 1, values: { 'rewrap.watermark': '2030-01-01T00:00:00.000Z' } },
      { t: 'token.bootstrap', v: 1, token_sha256: new Uint8Array(32).fill(7), created_at: '2026-01-01T00:00:00.000Z' },
    ];
    for (const cmd of forged) await expect(follower.internals.replicator.propose(cmd)).rejects.toThrow();
    expect(leader.internals.replicator.status().commit_index).toBe(before);
    expect((await client(follower.apiUrl, cluster.token).put('/v1/secrets/still/works', { value: 'x' })).status).toBe(201);
  });

  it('an entry no node can decode stops every node, and /v1/health turns 503 with the reason', async () => {
    cluster = await startCluster();
    const leader = leaderOf(cluster);
    // A command type from a future release, committed below the command layer (no decode on the way in).
    const proposed = leader.internals.replicator.node.propose(new Uint8Array(Buffer.from('{"t":"secret.teleport","v":1}')));
    expect(proposed.ok).toBe(true);
    for (const n of cluster.nodes) {
      await until(`${n.config.nodeId} to stop`, async () => (await request(n.apiUrl, 'GET', '/v1/health')).status === 503);
      const health = await request(n.apiUrl, 'GET', '/v1/health');
      expect(health.body).toMatchObject({ status: 'stopped', node_id: n.config.nodeId, problem: expect.stringMatching(/cannot decode committed entry \d+/) });
      expect((await request(n.apiUrl, 'GET', '/v1/ready')).status).toBe(503);
    }
  });
});
