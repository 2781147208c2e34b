// Three real `coffer server` processes replicating through Raft.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TestCluster } from '../helpers/cluster.js';
import { client, request } from '../helpers/http.js';

let cluster: TestCluster | null = null;
afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

async function readEverywhere(c: TestCluster, name: string): Promise<unknown[]> {
  return Promise.all(c.running().map(async (m) => (await request(m.url, 'GET', `/v1/secrets/${name}`)).body?.value));
}

describe('3-node cluster', () => {
  it('elects one leader, forwards writes from followers, and serves linearizable reads on every node', async () => {
    cluster = await TestCluster.start(3);
    const lead = await cluster.waitForLeader();
    const follower = cluster.members.find((m) => m.id !== lead)!;
    const c = client(follower.url, cluster.token);
    const put = await c.put('/v1/secrets/app/x', { value: 'via-follower' });
    expect(put.status).toBe(201);
    // Read-your-writes on the follower that took the write, and linearizable reads everywhere.
    expect((await c.get('/v1/secrets/app/x')).body.value).toBe('via-follower');
    expect(await readEverywhere(cluster, 'app/x')).toEqual(['via-follower', 'via-follower', 'via-follower']);

    const status = await client(follower.url, cluster.token).get('/v1/admin/cluster');
    expect(status.body).toMatchObject({ node_id: follower.id, leader_id: lead });
    expect(status.body.peers.map((p: { id: string }) => p.id)).toEqual(['n1', 'n2', 'n3']);
    expect(status.body.commit_index).toBeGreaterThan(1);

    // The receiving node audits the forwarded write; the leader has no record of it.
    const audits = await Promise.all(
      cluster.members.map(async (m) => (await client(m.url, cluster!.token).get('/v1/admin/audit?limit=1000')).body.records),
    );
    const writes = audits.map((recs: { action: string; target: string }[]) => recs.filter((r) => r.action === 'secret.write' && r.target === 'app/x').length);
    expect(writes[cluster.members.indexOf(follower)]).toBe(1);
    expect(writes.reduce((a, b) => a + b, 0)).toBe(1);
  });

  it('keeps every acknowledged write when the leader is killed, and the old leader catches up', async () => {
    cluster = await TestCluster.start(3);
    const lead = await cluster.waitForLeader();
    const acked: string[] = [];
    for (let i = 0; i < 20; i++) {
      const m = cluster.members[i % 3]!;
      const r = await client(m.url, cluster.token).put(`/v1/secrets/k/${i}`, { value: `v${i}` });
      if (r.status < 300) acked.push(`k/${i}`);
    }
    expect(acked).toHaveLength(20);
    await cluster.stopMember(lead, 'SIGKILL');
    const next = await cluster.waitForLeader(15_000, [lead]);
    expect(next).not.toBe(lead);
    const survivor = cluster.running()[0]!;
    expect((await client(survivor.url, cluster.token).put('/v1/secrets/k/after', { value: 'after' })).status).toBe(201);
    for (const name of acked) expect(await readEverywhere(cluster, name)).toEqual([`v${name.slice(2)}`, `v${name.slice(2)}`]);

    await cluster.startMember(lead);
    await cluster.waitForLeader();
    const back = cluster.member(lead);
    expect((await request(back.url, 'GET', '/v1/secrets/k/after')).body.value).toBe('after');
    expect((await request(back.url, 'GET', '/v1/secrets/k/7')).body.value).toBe('v7');
  });

  it('hands leadership over on SIGTERM and exits cleanly', async () => {
    cluster = await TestCluster.start(3);
    const lead = await cluster.waitForLeader();
    const termBefore = (await client(cluster.member(lead).url, cluster.token).get('/v1/admin/cluster')).body.term;
    const code = await cluster.stopMember(lead, 'SIGTERM');
    expect(code).toBe(0);
    const next = await cluster.waitForLeader(15_000, [lead]);
    const termAfter = (await client(cluster.member(next).url, cluster.token).get('/v1/admin/cluster')).body.term;
    // A transfer needs one election at the target, with no pre-vote rounds lost to timeouts.
    expect(termAfter).toBe(termBefore + 1);
  });

  it('keeps serving while a follower is paused, and the follower catches up on resume', async () => {
    cluster = await TestCluster.start(3);
    const lead = await cluster.waitForLeader();
    const paused = cluster.members.find((m) => m.id !== lead)!;
    cluster.signal(paused.id, 'SIGSTOP');
    try {
      const c = client(cluster.member(lead).url, cluster.token);
      for (let i = 0; i < 10; i++) expect((await c.put(`/v1/secrets/p/${i}`, { value: `v${i}` })).status).toBe(201);
    } finally {
      cluster.signal(paused.id, 'SIGCONT');
    }
    const deadline = Date.now() + 10_000;
    let value: unknown;
    while (Date.now() < deadline) {
      value = (await request(paused.url, 'GET', '/v1/secrets/p/9?consistency=stale')).body?.value;
      if (value === 'v9') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(value).toBe('v9');
  });

  it('brings a far-behind follower up to date with a streamed snapshot', async () => {
    cluster = await TestCluster.start(3, { COFFER_RAFT_SNAPSHOT_ENTRIES: '20' });
    const lead = await cluster.waitForLeader();
    const lagging = cluster.members.find((m) => m.id !== lead)!;
    await cluster.stopMember(lagging.id, 'SIGKILL');
    const c = client(cluster.member(lead).url, cluster.token);
    for (let i = 0; i < 60; i++) expect((await c.put(`/v1/secrets/s/${i % 7}`, { value: `v${i}` })).status).toBeLessThan(300);
    await cluster.startMember(lagging.id);
    const deadline = Date.now() + 15_000;
    let value: unknown;
    while (Date.now() < deadline) {
      value = (await request(lagging.url, 'GET', '/v1/secrets/s/3?consistency=stale')).body?.value;
      if (value === 'v59') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(value).toBe('v59'); // 59 % 7 === 3: the last write to s/3
    expect(lagging.proc!.output()).toMatch(/installed snapshot from leader/);
    // The log was compacted behind the snapshot rather than growing without bound.
    const log = fs.statSync(path.join(cluster.member(lead).dataDir, 'raft', 'log')).size;
    expect(log).toBeLessThan(60 * 700);
  });

  it('reports not ready when it cannot reach a quorum', async () => {
    cluster = await TestCluster.start(3);
    const lead = await cluster.waitForLeader();
    const others = cluster.members.filter((m) => m.id !== lead);
    await Promise.all(others.map((m) => cluster!.stopMember(m.id, 'SIGKILL')));
    const alone = cluster.member(lead);
    const deadline = Date.now() + 10_000;
    let ready = 200;
    while (Date.now() < deadline && ready === 200) {
      ready = (await request(alone.url, 'GET', '/v1/ready')).status;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(ready).toBe(503);
    const w = await client(alone.url, cluster.token).put('/v1/secrets/nope', { value: 'x' });
    expect(w.status).toBe(503);
    expect(w.body.error.code).toBe('no_leader');
  });

  it('adds a member as a learner, promotes it once caught up, transfers leadership to it, and removes it', async () => {
    cluster = await TestCluster.start(3);
    const lead = await cluster.waitForLeader();
    const admin = client(cluster.member(lead).url, cluster.token);
    for (let i = 0; i < 5; i++) await admin.put(`/v1/secrets/m/${i}`, { value: `v${i}` });
    const joiner = await cluster.startJoiner();
    expect((await request(joiner.url, 'GET', '/v1/ready')).status).toBe(503); // knows no leader yet

    // Sent to a follower: it goes to the leader.
    const follower = cluster.members.find((m) => m.id !== lead && m.id !== joiner.id)!;
    const added = await client(follower.url, cluster.token).post('/v1/admin/cluster/peers', { id: joiner.id, address: `${joiner.host}:${joiner.raftPort}` });
    expect(added.status).toBe(200);
    expect(added.body.peers).toContainEqual({ id: joiner.id, address: `${joiner.host}:${joiner.raftPort}`, voter: true });
    expect((await request(joiner.url, 'GET', '/v1/secrets/m/4')).body.value).toBe('v4');
    const again = await admin.post('/v1/admin/cluster/peers', { id: joiner.id, address: `${joiner.host}:${joiner.raftPort}` });
    expect(again.body.error.code).toBe('conflict');

    const moved = await admin.post('/v1/admin/cluster/transfer-leadership', { to: joiner.id });
    expect(moved.body.leader_id).toBe(joiner.id);
    expect(await cluster.waitForLeader()).toBe(joiner.id);

    const removed = await client(joiner.url, cluster.token).del(`/v1/admin/cluster/peers/${joiner.id}`);
    expect(removed.status).toBe(200);
    expect(removed.body.peers.map((p: { id: string }) => p.id)).not.toContain(joiner.id);
    await cluster.stopMember(joiner.id, 'SIGKILL');
    const newLead = await cluster.waitForLeader(15_000, [joiner.id]);
    expect((await client(cluster.member(newLead).url, cluster.token).put('/v1/secrets/m/after', { value: 'x' })).status).toBe(201);
    expect((await client(cluster.member(newLead).url, cluster.token).del('/v1/admin/cluster/peers/n9')).body.error.code).toBe('not_found');
  });

  it('saves a snapshot and restores it through the log on every node, keeping audit and membership', async () => {
    cluster = await TestCluster.start(3);
    const lead = await cluster.waitForLeader();
    const follower = cluster.members.find((m) => m.id !== lead)!;
    const c = client(follower.url, cluster.token);
    // Values long and unlike anything else in the image (the key id has random hex), so "not in the image" cannot hold by chance.
    const first = 'snapshot-marker-a1-plaintext';
    await c.put('/v1/secrets/snap/a', { value: first });
    await c.put('/v1/secrets/snap/b', { value: 'b1' });
    const saved = await fetch(`${follower.url}/v1/admin/snapshot`, { headers: { authorization: `Bearer ${cluster.token}` } });
    expect(saved.status).toBe(200);
    const image = Buffer.from(await saved.arrayBuffer());
    expect(image.subarray(0, 15).toString()).toBe('SQLite format 3');
    expect(image.includes(Buffer.from(first))).toBe(false);

    await c.put('/v1/secrets/snap/a', { value: 'a2' });
    await c.put('/v1/secrets/snap/c', { value: 'c1' });
    const auditBefore = (await c.get('/v1/admin/audit?limit=1000')).body.records.length;

    const bad = await fetch(`${follower.url}/v1/admin/snapshot`, {
      method: 'POST', body: Buffer.from('not a database at all, not even close to one, definitely not SQLite format 3 .....................'),
      headers: { authorization: `Bearer ${cluster.token}`, 'content-type': 'application/octet-stream' },
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('bad_request');

    const restored = await fetch(`${follower.url}/v1/admin/snapshot`, {
      method: 'POST', body: image, headers: { authorization: `Bearer ${cluster.token}`, 'content-type': 'application/octet-stream' },
    });
    expect(restored.status).toBe(200);
    expect(await restored.json()).toEqual({ restored: true, secrets: 2 });
    for (const m of cluster.members) {
      expect((await request(m.url, 'GET', '/v1/secrets/snap/a')).body).toMatchObject({ value: first, version: 1 });
      expect((await request(m.url, 'GET', '/v1/secrets/snap/c')).status).toBe(404);
    }
    expect((await c.get('/v1/admin/audit?limit=1000')).body.records.length).toBeGreaterThan(auditBefore);
    expect((await c.get('/v1/admin/cluster')).body.peers).toHaveLength(3);
  });

  it('proposes a command type only when every voter advertises it', async () => {
    cluster = await TestCluster.start(3);
    const lead = await cluster.waitForLeader();
    const old = cluster.members.find((m) => m.id !== lead)!;
    // Restart one follower as an "older release" that lacks state.restore.
    await cluster.stopMember(old.id, 'SIGTERM');
    old.proc = null;
    const { spawnNode } = await import('../helpers/node.js');
    old.proc = await spawnNode({ ...cluster.env(old), COFFER_UNSUPPORTED_COMMANDS: 'state.restore' });
    await cluster.waitForLeader();
    const health = await request(old.url, 'GET', '/v1/health');
    expect(health.body.capabilities).not.toContain('state.restore@1');
    const c = client(cluster.member(lead).url, cluster.token);
    expect((await c.put('/v1/secrets/gate/ok', { value: 'fine' })).status).toBe(201);
    const saved = Buffer.from(await (await fetch(`${cluster.member(lead).url}/v1/admin/snapshot`, { headers: { authorization: `Bearer ${cluster.token}` } })).arrayBuffer());
    const refused = await fetch(`${cluster.member(lead).url}/v1/admin/snapshot`, {
      method: 'POST', body: saved, headers: { authorization: `Bearer ${cluster.token}`, 'content-type': 'application/octet-stream' },
    });
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain(`voter ${old.id} does not advertise state.restore@2`);
  });

  it('stops applying and reports not ready at a committed command it cannot decode', async () => {
    cluster = await TestCluster.start(3, { COFFER_RAFT_SNAPSHOT_ENTRIES: '100000' });
    const lead = await cluster.waitForLeader();
    const c = client(cluster.member(lead).url, cluster.token);
    await c.put('/v1/secrets/dec/a', { value: 'a' });
    const saved = Buffer.from(await (await fetch(`${cluster.member(lead).url}/v1/admin/snapshot`, { headers: { authorization: `Bearer ${cluster.token}` } })).arrayBuffer());
    const ok = await fetch(`${cluster.member(lead).url}/v1/admin/snapshot`, {
      method: 'POST', body: saved, headers: { authorization: `Bearer ${cluster.token}`, 'content-type': 'application/octet-stream' },
    });
    expect(ok.status).toBe(200);
    await c.put('/v1/secrets/dec/b', { value: 'b' });
    // A follower rebuilt from its log by a release without state.restore must stop there, not skip it.
    const old = cluster.members.find((m) => m.id !== lead)!;
    await cluster.stopMember(old.id, 'SIGKILL');
    for (const f of fs.readdirSync(old.dataDir)) if (f.startsWith('state.db')) fs.rmSync(path.join(old.dataDir, f));
    const { spawnNode } = await import('../helpers/node.js');
    old.proc = await spawnNode({ ...cluster.env(old), COFFER_UNSUPPORTED_COMMANDS: 'state.restore' });
    const deadline = Date.now() + 10_000;
    let ready = { status: 0, body: null as null | { problem: string | null; applied_index: number } };
    while (Date.now() < deadline) {
      ready = await request(old.url, 'GET', '/v1/ready');
      if (ready.status === 503 && ready.body?.problem?.includes('cannot decode')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(ready.status).toBe(503);
    expect(ready.body?.problem).toMatch(/cannot decode committed entry \d+/);
    // It applied what came before the unknown entry and nothing after it.
    expect((await request(old.url, 'GET', '/v1/secrets/dec/a?consistency=stale')).body.value).toBe('a');
    expect((await request(old.url, 'GET', '/v1/secrets/dec/b?consistency=stale')).status).not.toBe(200);
    // Liveness fails too, so the kubelet restarts it (issue 11, finding 2).
    const health = await request(old.url, 'GET', '/v1/health');
    expect(health.status).toBe(503);
    expect(health.body).toMatchObject({ status: 'stopped', problem: expect.stringMatching(/cannot decode committed entry \d+/) });
  });

  it('holds the re-wrap worker back while a voter does not advertise its commands, then proceeds', async () => {
    const rewrapEnv = { VAULT_KMS_REWRAP_ENABLED: 'true', VAULT_KMS_REWRAP_POLL_SECS: '3600' };
    cluster = await TestCluster.start(3);
    const lead = await cluster.waitForLeader();
    // Roll the flag on with one voter still on an "older release" that lacks the worker's commands.
    const old = cluster.members.find((m) => m.id !== lead)!;
    const { spawnNode } = await import('../helpers/node.js');
    // The older voter goes first, so no node runs the worker while every voter still advertises everything.
    for (const m of [old, ...cluster.members.filter((x) => x !== old)]) {
      await cluster.stopMember(m.id, 'SIGTERM');
      m.proc = await spawnNode({ ...cluster.env(m), ...rewrapEnv, ...(m === old ? { COFFER_UNSUPPORTED_COMMANDS: 'secret.rewrap,kms.state' } : {}) });
      await cluster.waitForLeader();
    }
    const status = async () => {
      const leader = await cluster!.waitForLeader();
      return (await client(cluster!.member(leader).url, cluster!.token).get('/v1/admin/kms/rewrap/status')).body;
    };
    const until = async (pred: (s: { blocked_by: string | null; watermark: string | null }) => boolean) => {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const s = await status();
        if (pred(s)) return s;
        if (Date.now() > deadline) throw new Error(JSON.stringify(s));
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    expect((await until((s) => s.blocked_by !== null)).blocked_by).toBe(old.id);
    await new Promise((r) => setTimeout(r, 1500)); // a few worker ticks: still nothing proposed
    expect(await status()).toMatchObject({ blocked_by: old.id, watermark: null, last_pass: null });

    await cluster.stopMember(old.id, 'SIGTERM');
    old.proc = await spawnNode({ ...cluster.env(old), ...rewrapEnv });
    const cleared = await until((s) => s.blocked_by === null && s.watermark !== null);
    expect(cleared.watermark).toBe('none');
  });

  it('forwards many concurrent writes without starving the Raft traffic they wait on', async () => {
    cluster = await TestCluster.start(3);
    const lead = await cluster.waitForLeader();
    const [a, b] = cluster.members.filter((m) => m.id !== lead);
    // With one follower down, every commit needs the other follower's acks over the same link its forwards use.
    await cluster.stopMember(a!.id, 'SIGKILL');
    const c = client(b!.url, cluster.token);
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => c.put(`/v1/secrets/fwd/${i}`, { value: `v${i}` })));
    expect(results.map((r) => r.status)).toEqual(Array(12).fill(201));
    // Not a timing test: a stall here used to last the 15 s forward timeout and end in 503s.
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
