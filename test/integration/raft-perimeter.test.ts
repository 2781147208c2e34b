// Issue 11 finding 1, as the attacks: this test process is not a member, yet
// it can reach every node's Raft listener. Without cluster authentication a
// forged propose minted an admin token, and a forged AppendEntries from
// `ghost` took over as leader. Against a real 3-node cluster and a real
// single dev node (no VAULT_CLUSTER_KEY: ephemeral key).
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterAuth, addressedPath, type CoveredHeaders } from '../../server/raft/cluster-auth.js';
import { BATCH_CONTENT_TYPE, encodeBatch } from '../../server/raft/codec.js';
import { message } from '../../server/raft/core/index.js';
import { RAFT_PATHS } from '../../server/raft/transport.js';
import { encodeCommand } from '../../server/store/commands.js';
import { TestCluster, type ClusterMember } from '../helpers/cluster.js';
import { request, type HttpResponse } from '../helpers/http.js';
import { freePort } from '../helpers/net.js';
import { randomMasterKey, randomToken, spawnNode, tempDir, type SpawnedNode } from '../helpers/node.js';

let cluster: TestCluster;

const raftUrl = (m: ClusterMember) => `http://${m.host}:${m.raftPort}`;

/** A token.create command for role admin with a token the attacker chose, as a follower would forward it. */
function mintAdminCommand(name: string, token: string): string {
  const cmd = encodeCommand({
    t: 'token.create',
    v: 1,
    name,
    token_sha256: createHash('sha256').update(token).digest(),
    role: 'admin',
    created_at: new Date().toISOString(),
    expires_at: null,
  });
  return JSON.stringify({ command: Buffer.from(cmd).toString('base64') });
}

interface ClusterView {
  leader: string;
  term: number;
}

async function view(): Promise<ClusterView> {
  const views = await Promise.all(
    cluster.members.map(async (m) => {
      const r = await request(m.url, 'GET', '/v1/admin/cluster', { token: cluster.token });
      expect(r.status).toBe(200);
      return { leader: r.body.leader_id as string, term: r.body.term as number };
    }),
  );
  expect(new Set(views.map((v) => `${v.leader}@${v.term}`)).size).toBe(1);
  return views[0]!;
}

/** A forged AppendEntries from `from` at `term`, carrying an entry that would mint an admin token. */
function forgedAppend(to: string, from: string, term: number, token: string): Buffer {
  const data = encodeCommand({
    t: 'token.create', v: 1, name: `forged-${from}`, token_sha256: createHash('sha256').update(token).digest(),
    role: 'admin', created_at: new Date().toISOString(), expires_at: null,
  });
  return encodeBatch([
    message({ type: 'app', from, to, term, logTerm: 0, index: 0, commit: 1_000_000, entries: [{ term, index: 1, type: 'normal', data }] }),
  ]);
}

function expectRefused(r: HttpResponse): void {
  expect(r.status).toBe(401);
  expect(r.body).toEqual({ error: { code: 'unauthorized', message: expect.any(String) } });
  expect(r.headers['x-coffer-mac']).toBeUndefined();
}

/** Headers for a request signed by `auth` (what a member's transport sends). */
function signed(auth: ClusterAuth, path: string, body: string | Buffer, covered: CoveredHeaders = {}, contentType = 'application/json'): Record<string, string> {
  return { 'content-type': contentType, ...covered, ...auth.signRequest('POST', path, covered, body) };
}

async function refusals(m: ClusterMember): Promise<Record<string, number>> {
  const r = await request(m.url, 'GET', '/metrics', { token: cluster.token });
  expect(r.status).toBe(200);
  const out: Record<string, number> = {};
  for (const [, reason, n] of r.text.matchAll(/^coffer_raft_auth_refused_total\{reason="([a-z_]+)"\} (\d+)/gm)) out[reason!] = Number(n);
  return out;
}

async function tokenWorks(token: string): Promise<boolean> {
  const rs = await Promise.all(cluster.members.map((m) => request(m.url, 'GET', '/v1/admin/cluster', { token })));
  return rs.some((r) => r.status !== 401);
}

describe('Raft listener perimeter (3-node cluster)', () => {
  beforeAll(async () => {
    cluster = await TestCluster.start(3);
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('refuses a forged propose of an admin token from a non-member, on the leader and on followers', async () => {
    const { leader } = await view();
    const token = randomToken();
    const follower = cluster.members.find((m) => m.id !== leader)!;
    for (const target of cluster.members) {
      // Claims to be a real member, as in the report; no MAC.
      const r = await request(raftUrl(target), 'POST', RAFT_PATHS.propose, {
        rawBody: mintAdminCommand('evil', token),
        headers: { 'content-type': 'application/json', 'x-coffer-node': follower.id === target.id ? leader : follower.id },
      });
      expectRefused(r);
    }
    // Signed, but with a key that is not the cluster's.
    const wrong = new ClusterAuth({ nodeId: follower.id, key: randomBytes(32) });
    const body = mintAdminCommand('evil2', token);
    expectRefused(await request(raftUrl(cluster.member(leader)), 'POST', RAFT_PATHS.propose, { rawBody: body, headers: signed(wrong, RAFT_PATHS.propose, body) }));
    await new Promise((r) => setTimeout(r, 300));
    expect(await tokenWorks(token)).toBe(false);
    const tokens = await request(cluster.member(leader).url, 'GET', '/v1/tokens', { token: cluster.token });
    expect(tokens.body.tokens.map((t: { name: string }) => t.name)).not.toContain('evil');
  });

  it('refuses a binary AppendEntries from non-member `ghost` at term+50; term and leader stay', async () => {
    const before = await view();
    const token = randomToken();
    for (const target of cluster.members) {
      const body = forgedAppend(target.id, 'ghost', before.term + 50, token);
      const r = await request(raftUrl(target), 'POST', RAFT_PATHS.batch, {
        rawBody: body,
        headers: { 'content-type': BATCH_CONTENT_TYPE, 'x-coffer-node': 'ghost', 'x-coffer-capabilities': 'token.create@1' },
      });
      expectRefused(r);
    }
    // Even signed with the cluster key, `ghost` is not in anyone's configuration.
    const ghost = new ClusterAuth({ nodeId: 'ghost', key: Buffer.from(cluster.clusterKey, 'base64') });
    for (const target of cluster.members) {
      const body = forgedAppend(target.id, 'ghost', before.term + 50, token);
      const r = await request(raftUrl(target), 'POST', RAFT_PATHS.batch, { rawBody: body, headers: signed(ghost, RAFT_PATHS.batch, body, {}, BATCH_CONTENT_TYPE) });
      expectRefused(r);
    }
    await new Promise((r) => setTimeout(r, 1000)); // several heartbeats and election timeouts at a 50 ms tick
    expect(await view()).toEqual(before);
    expect(await tokenWorks(token)).toBe(false);
  });

  it('refuses unauthenticated membership, snapshot and re-wrap requests', async () => {
    const before = await view();
    const lead = cluster.member(before.leader);
    const add = JSON.stringify({ op: 'add', id: 'ghost', address: '127.0.0.99:8201' });
    const remove = (id: string) => JSON.stringify({ op: 'remove', id });
    const follower = cluster.members.find((m) => m.id !== before.leader)!;
    expectRefused(await request(raftUrl(lead), 'POST', RAFT_PATHS.membership, { rawBody: add, headers: { 'content-type': 'application/json', 'x-coffer-node': follower.id } }));
    expectRefused(await request(raftUrl(lead), 'POST', RAFT_PATHS.membership, { rawBody: remove(follower.id), headers: { 'content-type': 'application/json', 'x-coffer-node': follower.id } }));
    expectRefused(await request(raftUrl(lead), 'POST', RAFT_PATHS.rewrap, { rawBody: '{}', headers: { 'content-type': 'application/json', 'x-coffer-node': follower.id } }));
    // A snapshot image that would replace the follower's whole state.
    const image = randomBytes(4096);
    const snapMsg = Buffer.from(JSON.stringify([{ type: 'snap', from: lead.id, to: follower.id, term: before.term + 1 }])).toString('base64url');
    const snap = await request(raftUrl(follower), 'POST', RAFT_PATHS.snapshot, {
      rawBody: image,
      headers: {
        'content-type': 'application/octet-stream',
        'x-coffer-node': lead.id,
        'x-coffer-message': snapMsg,
        'x-coffer-sha256': createHash('sha256').update(image).digest('hex'),
      },
    });
    expectRefused(snap);
    // A path with no route is refused the same way (the check is on the whole listener, not per route).
    expectRefused(await request(raftUrl(lead), 'POST', '/raft/v1/no-such-route', { rawBody: '{}', headers: { 'content-type': 'application/json', 'x-coffer-node': follower.id } }));
    // Signed with a wrong key: still refused.
    const wrong = new ClusterAuth({ nodeId: follower.id, key: randomBytes(32) });
    expectRefused(await request(raftUrl(lead), 'POST', RAFT_PATHS.membership, { rawBody: add, headers: signed(wrong, RAFT_PATHS.membership, add) }));
    const status = await request(lead.url, 'GET', '/v1/admin/cluster', { token: cluster.token });
    expect(status.body.peers.map((p: { id: string }) => p.id).sort()).toEqual(['n1', 'n2', 'n3']);
    expect(await view()).toEqual(before);
  });

  it('refuses a signed membership add whose port no one can dial (400), membership unchanged', async () => {
    const before = await view();
    const lead = cluster.member(before.leader);
    const follower = cluster.members.find((m) => m.id !== before.leader)!;
    const asFollower = new ClusterAuth({ nodeId: follower.id, key: Buffer.from(cluster.clusterKey, 'base64') });
    for (const address of ['127.0.0.99:0', '127.0.0.99:65536']) {
      const add = JSON.stringify({ op: 'add', id: 'ghost', address });
      const res = await request(raftUrl(lead), 'POST', RAFT_PATHS.membership, { rawBody: add, headers: signed(asFollower, RAFT_PATHS.membership, add) });
      expect({ address, status: res.status, code: res.body?.error?.code }).toEqual({ address, status: 400, code: 'bad_request' });
    }
    const status = await request(lead.url, 'GET', '/v1/admin/cluster', { token: cluster.token });
    expect(status.body.peers.map((p: { id: string }) => p.id).sort()).toEqual(['n1', 'n2', 'n3']);
    expect(await view()).toEqual(before);
  });

  it('accepts a correctly signed request once; the same bytes replayed, altered, stale or on another path are refused', async () => {
    const { leader } = await view();
    const lead = cluster.member(leader);
    const follower = cluster.members.find((m) => m.id !== leader)!;
    // A member's key (this is what the leader's transport holds): an empty batch with the leader's own capabilities changes nothing.
    const asLeader = new ClusterAuth({ nodeId: leader, key: Buffer.from(cluster.clusterKey, 'base64') });
    const caps = ((await request(lead.url, 'GET', '/v1/health')).body.capabilities as string[]).join(',');
    const body = encodeBatch([]);
    const covered = { 'x-coffer-capabilities': caps };
    const headers = signed(asLeader, RAFT_PATHS.batch, body, covered, BATCH_CONTENT_TYPE);
    const ok = await request(raftUrl(follower), 'POST', RAFT_PATHS.batch, { rawBody: body, headers });
    expect(ok.status).toBe(200);
    // The reply is signed over our nonce: a member answered this very request.
    const replyMac = () => asLeader.verifyResponse(follower.id, headers['x-coffer-nonce']!, ok.status, ok.headers as Record<string, string>, Buffer.from(ok.text));
    expect(replyMac).not.toThrow();
    expectRefused(await request(raftUrl(follower), 'POST', RAFT_PATHS.batch, { rawBody: body, headers }));
    // One byte of the body changed after signing.
    const flipped = Buffer.from(encodeBatch([message({ type: 'heartbeat', from: leader, to: follower.id, term: 1 })]));
    const h2 = signed(asLeader, RAFT_PATHS.batch, flipped, covered, BATCH_CONTENT_TYPE);
    flipped[flipped.length - 1]! ^= 1;
    expectRefused(await request(raftUrl(follower), 'POST', RAFT_PATHS.batch, { rawBody: flipped, headers: h2 }));
    // Capabilities changed in transit (the leader gates commands on them).
    const h3 = signed(asLeader, RAFT_PATHS.batch, body, covered, BATCH_CONTENT_TYPE);
    expectRefused(await request(raftUrl(follower), 'POST', RAFT_PATHS.batch, { rawBody: body, headers: { ...h3, 'x-coffer-capabilities': '' } }));
    // A MAC made for the batch route, presented on the propose route.
    const h4 = signed(asLeader, RAFT_PATHS.batch, body, covered, BATCH_CONTENT_TYPE);
    expectRefused(await request(raftUrl(follower), 'POST', RAFT_PATHS.propose, { rawBody: body, headers: h4 }));
    // Two minutes old.
    const past = new ClusterAuth({ nodeId: leader, key: Buffer.from(cluster.clusterKey, 'base64'), now: () => Date.now() - 120_000 });
    expectRefused(await request(raftUrl(follower), 'POST', RAFT_PATHS.batch, { rawBody: body, headers: signed(past, RAFT_PATHS.batch, body, covered, BATCH_CONTENT_TYPE) }));
  });

  it('refuses POST /raft/v1/probe unsigned, signed with a wrong key and replayed; answers it signed once', async () => {
    const { leader } = await view();
    const follower = cluster.members.find((m) => m.id !== leader)!;
    const target = raftUrl(follower);
    const body = '{}';
    // What a probe reply tells (who the node is, its data id) is for members only.
    expectRefused(await request(target, 'POST', RAFT_PATHS.probe, { rawBody: body, headers: { 'content-type': 'application/json', 'x-coffer-node': leader } }));
    // Signed, as the leader, with a key that is not the cluster's.
    const wrong = new ClusterAuth({ nodeId: leader, key: randomBytes(32) });
    expectRefused(await request(target, 'POST', RAFT_PATHS.probe, { rawBody: body, headers: signed(wrong, RAFT_PATHS.probe, body) }));
    // Signed with the cluster key: answered once, and the same request (same nonce) replayed is refused.
    const asLeader = new ClusterAuth({ nodeId: leader, key: Buffer.from(cluster.clusterKey, 'base64') });
    const headers = signed(asLeader, RAFT_PATHS.probe, body);
    const ok = await request(target, 'POST', RAFT_PATHS.probe, { rawBody: body, headers });
    expect(ok.status).toBe(200);
    expect(() => asLeader.verifyResponse(follower.id, headers['x-coffer-nonce']!, ok.status, ok.headers as Record<string, string>, Buffer.from(ok.text))).not.toThrow();
    expectRefused(await request(target, 'POST', RAFT_PATHS.probe, { rawBody: body, headers }));
  });

  it('refuses a signed request captured on its way to one member and replayed to another', async () => {
    const { leader } = await view();
    const [a, b] = cluster.members.filter((m) => m.id !== leader);
    const asLeader = new ClusterAuth({ nodeId: leader, key: Buffer.from(cluster.clusterKey, 'base64') });
    const body = '{}';
    // As the leader's transport sends it: addressed to a, under the MAC.
    const path = addressedPath(RAFT_PATHS.probe, a!.id);
    const headers = signed(asLeader, path, body);
    const ok = await request(raftUrl(a!), 'POST', path, { rawBody: body, headers });
    expect(ok.status).toBe(200);
    // The same bytes to b, whose nonce cache never saw them: refused as misdirected, and with the address stripped, as forged.
    expectRefused(await request(raftUrl(b!), 'POST', path, { rawBody: body, headers }));
    expectRefused(await request(raftUrl(b!), 'POST', RAFT_PATHS.probe, { rawBody: body, headers }));
    const seen = await refusals(b!);
    expect(seen.misdirected ?? 0).toBeGreaterThanOrEqual(1);
  });

  it('counts every refusal by reason in /metrics and logs it without the key', async () => {
    const seen = await Promise.all(cluster.members.map(refusals));
    const total = (reason: string) => seen.reduce((n, r) => n + (r[reason] ?? 0), 0);
    // Unsigned requests, wrong keys and altered bytes, the ghost, the replays (batch, probe) and the stale request above.
    expect(total('missing')).toBeGreaterThanOrEqual(3 + 3 + 5 + 1);
    expect(total('bad_mac')).toBeGreaterThanOrEqual(5 + 1);
    expect(total('unknown_sender')).toBeGreaterThanOrEqual(3);
    expect(total('replay')).toBe(2);
    expect(total('stale')).toBe(1);
    for (const m of cluster.members) {
      const out = m.proc!.output();
      expect(out).toContain('refused an unauthenticated Raft request');
      expect(out).not.toContain(cluster.clusterKey);
      expect(out).not.toContain(Buffer.from(cluster.clusterKey, 'base64').toString('hex'));
    }
  });
});

describe('Raft listener perimeter (single dev node without VAULT_CLUSTER_KEY)', () => {
  let node: SpawnedNode | null = null;
  afterAll(async () => {
    await node?.stop('SIGKILL');
  });

  it('runs on an ephemeral key, says so, and refuses a forged propose and AppendEntries', async () => {
    const host = '127.0.0.1';
    const raftPort = await freePort(host);
    const boot = randomToken();
    node = await spawnNode({
      VAULT_DATA_DIR: tempDir('coffer-perimeter-'),
      VAULT_API_ADDR: `${host}:0`,
      VAULT_RAFT_ADDR: `${host}:${raftPort}`,
      VAULT_NODE_ID: 'dev',
      VAULT_LOCAL_MASTER_KEY: randomMasterKey(),
      VAULT_BOOTSTRAP_TOKEN: boot,
      VAULT_READ_ALLOWLIST: '127.0.0.1',
    });
    expect(node.output()).toMatch(/Raft traffic is authenticated with an ephemeral cluster key/);
    const raft = `http://${host}:${raftPort}`;
    const token = randomToken();
    expectRefused(await request(raft, 'POST', RAFT_PATHS.propose, { rawBody: mintAdminCommand('evil', token), headers: { 'content-type': 'application/json', 'x-coffer-node': 'n2' } }));
    // With any key the attacker could pick, and as itself.
    for (const id of ['ghost', 'dev']) {
      const guess = new ClusterAuth({ nodeId: id, key: randomBytes(32) });
      const body = mintAdminCommand('evil', token);
      expectRefused(await request(raft, 'POST', RAFT_PATHS.propose, { rawBody: body, headers: signed(guess, RAFT_PATHS.propose, body) }));
    }
    const health = await request(node.url, 'GET', '/v1/health');
    const append = forgedAppend('dev', 'ghost', 50, token);
    expectRefused(await request(raft, 'POST', RAFT_PATHS.batch, { rawBody: append, headers: { 'content-type': BATCH_CONTENT_TYPE, 'x-coffer-node': 'ghost' } }));
    await new Promise((r) => setTimeout(r, 300));
    expect((await request(node.url, 'GET', '/v1/admin/cluster', { token })).status).toBe(401);
    const after = await request(node.url, 'GET', '/v1/admin/cluster', { token: boot });
    expect(after.body.leader_id).toBe('dev');
    expect((await request(node.url, 'GET', '/v1/health')).body.role).toBe(health.body.role);
    expect(after.body.term).toBeLessThan(50);
  });
});

describe('rolling cluster-key change', () => {
  let rolling: TestCluster | null = null;
  afterAll(async () => {
    await rolling?.stop();
  });

  it('changes the key one node at a time with VAULT_CLUSTER_KEY_PREVIOUS, writing through every step; the old key is refused at the end', async () => {
    rolling = await TestCluster.start(3);
    const c = rolling;
    const oldKey = c.clusterKey;
    const newKey = randomMasterKey();
    let n = 0;
    const restartWith = async (m: ClusterMember, keys: Record<string, string>) => {
      await c.stopMember(m.id, 'SIGTERM');
      const env: Record<string, string> = { ...c.env(m), ...keys };
      if (!keys.VAULT_CLUSTER_KEY_PREVIOUS) delete env.VAULT_CLUSTER_KEY_PREVIOUS;
      m.proc = await spawnNode(env);
      await c.waitForLeader();
      // A write through the node just restarted: forwarded to the leader when it follows (requests and replies both ways).
      const r = await request(m.url, 'PUT', `/v1/secrets/roll/k${n++}`, { token: c.token, body: { value: 'v' } });
      expect(r.status, `write through ${m.id} after its restart`).toBe(201);
    };
    // 1. Every node learns the new key as an accepted one while still signing with the old.
    for (const m of c.members) await restartWith(m, { VAULT_CLUSTER_KEY: oldKey, VAULT_CLUSTER_KEY_PREVIOUS: newKey });
    // 2. Every node signs with the new key and still accepts the old.
    for (const m of c.members) await restartWith(m, { VAULT_CLUSTER_KEY: newKey, VAULT_CLUSTER_KEY_PREVIOUS: oldKey });
    // 3. The old key is dropped.
    for (const m of c.members) await restartWith(m, { VAULT_CLUSTER_KEY: newKey });
    const lead = c.member(await c.waitForLeader());
    const follower = c.members.find((m) => m !== lead)!;
    const body = encodeBatch([]);
    for (const [key, status] of [[oldKey, 401], [newKey, 200]] as const) {
      const auth = new ClusterAuth({ nodeId: lead.id, key: Buffer.from(key, 'base64') });
      const r = await request(raftUrl(follower), 'POST', RAFT_PATHS.batch, { rawBody: body, headers: signed(auth, RAFT_PATHS.batch, body, {}, BATCH_CONTENT_TYPE) });
      expect(r.status).toBe(status);
    }
  }, 120_000);
});
