// The autopilot on real processes: the leader keeps Raft membership equal to
// the members file (VAULT_MEMBERS_FILE, as the operator writes it) while a
// client writes and reads in a loop. 3 -> 5 -> 3 (the leader itself left out
// at the end, so it must hand leadership away first), a voter whose data
// folder is wiped (removed and re-added as a learner, never voting with an
// empty log), and removed members with stale logs declared again. After
// each: every acknowledged write on every final member, and the history
// checked for linearizability.
import { afterEach, describe, expect, it } from 'vitest';
import { TestCluster } from '../helpers/cluster.js';
import { request } from '../helpers/http.js';
import { checkLinearizable, type Op } from '../helpers/linearizability.js';
import { COFFER_BIN } from '../helpers/node.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

const KEYS = 4;
const HTTP_TIMEOUT_MS = 3_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hrMs = (): number => Number(process.hrtime.bigint()) / 1e6;

let cluster: TestCluster | null = null;
afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

interface ClusterView {
  leader_id: string | null;
  term: number;
  peers: Array<{ id: string; voter: boolean }>;
  autopilot: { state: string; source: string; last_decision: { action: string; id: string | null; reason: string } | null };
}

async function view(c: TestCluster, id: string): Promise<ClusterView | null> {
  const r = await request(c.member(id).url, 'GET', '/v1/admin/cluster', { token: c.token, timeoutMs: HTTP_TIMEOUT_MS }).catch(() => null);
  return r?.status === 200 ? (r.body as ClusterView) : null;
}

/** The id of the one running node that says it leads (joiners not yet added know no leader). */
async function leaderId(c: TestCluster, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hs = await Promise.all(c.running().map((m) => c.health(m)));
    const leaders = hs.filter((h) => h?.role === 'leader');
    if (leaders.length === 1) return leaders[0]!.leader_id!;
    if (Date.now() > deadline) throw new Error(`no single leader: ${JSON.stringify(hs.map((h) => h && { role: h.role, leader: h.leader_id }))}`);
    await sleep(50);
  }
}

/** The leader's own view of the cluster. */
async function leaderView(c: TestCluster): Promise<ClusterView> {
  const lead = await leaderId(c);
  const v = await view(c, lead);
  if (!v) throw new Error(`leader ${lead} did not answer`);
  return v;
}

const sorted = (ids: Iterable<string>) => [...ids].sort();

/** Waits until the leader's configuration is exactly `ids`, all voters, and its autopilot says so; returns that view. */
async function untilVoters(c: TestCluster, ids: string[], timeoutMs = 90_000): Promise<ClusterView> {
  const deadline = Date.now() + timeoutMs;
  let last: ClusterView | null = null;
  for (;;) {
    last = await leaderView(c).catch(() => last);
    const voters = sorted(last?.peers.filter((p) => p.voter).map((p) => p.id) ?? []);
    const learners = last?.peers.filter((p) => !p.voter) ?? [];
    if (JSON.stringify(voters) === JSON.stringify(sorted(ids)) && learners.length === 0 && ids.includes(last?.leader_id ?? '') && last?.autopilot.state === 'converged') return last!;
    if (Date.now() > deadline) throw new Error(`membership did not reach ${ids.join(',')}: ${JSON.stringify(last)}`);
    await sleep(200);
  }
}

/**
 * Clients writing and reading KEYS registers through random running members
 * (followers forward writes; reads are linearizable by default), recording
 * the history. An answer that never came is indeterminate.
 */
class Load {
  readonly history: Op[] = [];
  readonly acked = new Map<string, string>(); // key -> last acknowledged value, by ack order per key
  private stopped = false;
  private readonly loops: Promise<void>[] = [];
  private seq = 0;
  private readonly t0 = hrMs();

  constructor(
    private readonly c: TestCluster,
    /** Each load its own keys: the checker starts every register empty. */
    readonly prefix: string,
    clients = 4,
  ) {
    for (let i = 0; i < clients; i++) this.loops.push(this.loop(i));
  }

  private async loop(client: number): Promise<void> {
    while (!this.stopped) {
      const nodes = this.c.running();
      const node = nodes[Math.floor(Math.random() * nodes.length)];
      if (!node) {
        await sleep(50);
        continue;
      }
      const key = `${this.prefix}/k${Math.floor(Math.random() * KEYS)}`;
      const write = Math.random() < 0.6;
      const value = `c${client}-${this.seq++}`;
      const call = hrMs() - this.t0;
      const r = await request(node.url, write ? 'PUT' : 'GET', `/v1/secrets/${key}`, {
        token: this.c.token,
        timeoutMs: HTTP_TIMEOUT_MS,
        ...(write ? { body: { value } } : {}),
      }).catch(() => null);
      const ret = hrMs() - this.t0;
      if (write) {
        const ok = r !== null && (r.status === 200 || r.status === 201);
        // Refused (503 no_leader and the like) = not committed; no answer = unknown.
        if (ok || r === null || r.status >= 500) this.history.push({ key, kind: 'write', value, call, ret: ok ? ret : undefined, meta: node.id });
        if (ok) this.acked.set(`${key}#${value}`, value);
      } else if (r?.status === 200) {
        this.history.push({ key, kind: 'read', value: r.body.value as string, call, ret, meta: node.id });
      } else if (r?.status === 404) {
        this.history.push({ key, kind: 'read', value: null, call, ret, meta: node.id });
      }
      if (r === null || r.status >= 500) await sleep(50);
    }
  }

  ackedWrites(): number {
    return this.history.filter((o) => o.kind === 'write' && o.ret !== undefined).length;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }
}

/** Every member in `ids` holds, for every key, the value of the last write to it; and the history is linearizable. */
async function checkOutcome(c: TestCluster, load: Load, ids: string[]): Promise<void> {
  expect(load.ackedWrites()).toBeGreaterThan(20);
  const verdict = checkLinearizable(load.history);
  expect(verdict.ok, verdict.explanation).toBe(true);
  const lead = await leaderId(c);
  for (let k = 0; k < KEYS; k++) {
    const key = `${load.prefix}/k${k}`;
    const latest = await request(c.member(lead).url, 'GET', `/v1/secrets/${key}`, { token: c.token });
    const writes = load.history.filter((o) => o.key === key && o.kind === 'write');
    if (writes.length === 0) continue;
    expect(latest.status).toBe(200);
    // The final value is one that was written, and no acknowledged write is missing from the version history.
    expect(writes.map((w) => w.value)).toContain(latest.body.value);
    const acked = writes.filter((w) => w.ret !== undefined).length;
    expect(latest.body.version).toBeGreaterThanOrEqual(acked);
    for (const id of ids) {
      // Each member, on its own state (stale read), has caught up to the leader's latest version.
      let got: { status: number; body: any } | null = null;
      for (let i = 0; i < 100; i++) {
        got = await request(c.member(id).url, 'GET', `/v1/secrets/${key}?consistency=stale`, { token: c.token }).catch(() => null);
        if (got?.status === 200 && got.body.version === latest.body.version) break;
        await sleep(100);
      }
      expect({ id, key, version: got?.body.version, value: got?.body.value }).toEqual({ id, key, version: latest.body.version, value: latest.body.value });
    }
  }
}

async function until(cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(200);
  }
}

async function metric(c: TestCluster, name: string): Promise<number> {
  let total = 0;
  for (const m of c.running()) {
    const r = await request(m.url, 'GET', '/metrics', { token: c.token }).catch(() => null);
    for (const line of String(r?.body ?? '').split('\n')) if (line.startsWith(name)) total += Number(line.split(' ').at(-1));
  }
  return total;
}

describe('autopilot: Raft membership follows the members file', () => {
  it('3 -> 5 -> 3 under a writer (the leader left out at the end), then the removed members come back on stale logs', async () => {
    cluster = await TestCluster.start(3, { VAULT_AUTOPILOT_STABILIZATION_SECS: '1', COFFER_RAFT_SNAPSHOT_ENTRIES: '200' }, { membersFile: true });
    const c = cluster;
    await untilVoters(c, ['n1', 'n2', 'n3']);
    const load = new Load(c, 'resize');

    // Up: two new nodes start (not in VAULT_PEERS), then the file declares them.
    const n4 = await c.addJoiner();
    const n5 = await c.addJoiner();
    await Promise.all([c.startMember(n4.id), c.startMember(n5.id)]);
    await sleep(1_500); // started but undeclared: nothing happens to them
    expect(sorted((await leaderView(c)).peers.map((p) => p.id))).toEqual(['n1', 'n2', 'n3']);
    c.declare(['n1', 'n2', 'n3', 'n4', 'n5']);
    const five = await untilVoters(c, ['n1', 'n2', 'n3', 'n4', 'n5']);
    expect(five.autopilot).toMatchObject({ source: 'file', state: 'converged' });

    // Down to three that leave the current leader out: it must hand leadership away, then be removed.
    const leader = five.leader_id!;
    const keep = ['n1', 'n2', 'n3', 'n4', 'n5'].filter((id) => id !== leader).slice(0, 3);
    const gone = ['n1', 'n2', 'n3', 'n4', 'n5'].filter((id) => !keep.includes(id));
    c.declare(keep);
    const three = await untilVoters(c, keep);
    expect(keep).toContain(three.leader_id);
    // Counted on the old leader, which is still running.
    expect(await metric(c, 'coffer_autopilot_changes_total{kind="transferLeadership"}')).toBeGreaterThanOrEqual(1);
    await sleep(1_000);
    for (const id of gone) await c.stopMember(id);
    await sleep(1_000);
    await load.stop();
    await checkOutcome(c, load, keep);

    // The removed members restart on their old (now stale) logs and are declared again: they rejoin as
    // learners and catch up (by snapshot: the log was compacted meanwhile), without disturbing the term.
    const load2 = new Load(c, 'rejoin', 2);
    await sleep(2_000);
    const before = await leaderView(c);
    for (const id of gone) await c.startMember(id);
    c.declare(['n1', 'n2', 'n3', 'n4', 'n5']);
    const back = await untilVoters(c, ['n1', 'n2', 'n3', 'n4', 'n5']);
    expect({ leader: back.leader_id, term: back.term }).toEqual({ leader: before.leader_id, term: before.term });
    await load2.stop();
    await checkOutcome(c, load2, ['n1', 'n2', 'n3', 'n4', 'n5']);
  }, 300_000);

  it('a voter whose data folder is lost is removed and re-added as a learner, without an election', async () => {
    cluster = await TestCluster.start(3, { VAULT_AUTOPILOT_STABILIZATION_SECS: '1' }, { membersFile: true });
    const c = cluster;
    await untilVoters(c, ['n1', 'n2', 'n3']);
    const load = new Load(c, 'wipe');
    await sleep(3_000); // the leader records every member's storage identity
    const before = await leaderView(c);
    const victim = ['n1', 'n2', 'n3'].find((id) => id !== before.leader_id)!;
    await c.stopMember(victim, 'SIGKILL');
    c.wipe(victim);
    await c.startMember(victim);
    // It came back empty: it must not count as the voter it was until it has been removed, re-added and caught up.
    await until(async () => (await metric(c, 'coffer_autopilot_changes_total{kind="addLearner"}')) >= 1, 60_000);
    expect(await metric(c, 'coffer_autopilot_changes_total{kind="remove"}')).toBeGreaterThanOrEqual(1);
    const after = await untilVoters(c, ['n1', 'n2', 'n3']);
    expect({ leader: after.leader_id, term: after.term }).toEqual({ leader: before.leader_id, term: before.term });
    await sleep(1_000);
    await load.stop();
    await checkOutcome(c, load, ['n1', 'n2', 'n3']);
  }, 180_000);

  it('refuses a declared list through the API when a members file declares them, and validates the list', async () => {
    cluster = await TestCluster.start(1, {}, { membersFile: true });
    const c = cluster;
    const url = c.member('n1').url;
    const put = (body: unknown) => request(url, 'PUT', '/v1/admin/cluster/members', { token: c.token, body });
    expect((await put({ members: [{ id: 'n1', address: '127.0.0.1:1' }] })).body.error.code).toBe('conflict');
    expect((await put({ members: [{ id: 'n1', address: 'nope' }] })).status).toBe(400);
    expect((await put({ members: [] })).status).toBe(400);
    expect((await request(url, 'PUT', '/v1/admin/cluster/members', { body: { members: [{ id: 'n9', address: '127.0.0.9:1' }] } })).status).toBe(401);
    const got = await request(url, 'GET', '/v1/admin/cluster/members', { token: c.token });
    expect(got.body).toEqual({ source: 'file', members: [{ id: 'n1', address: `${c.member('n1').host}:${c.member('n1').raftPort}` }] });
    const health = await request(url, 'GET', '/v1/health');
    expect(health.body).toMatchObject({ voters: ['n1'], learners: [] });
  }, 60_000);

  it('without a members file, PUT /v1/admin/cluster/members grows a single node to three; DELETE stops declaring and changes nothing', async () => {
    cluster = await TestCluster.start(1, { VAULT_AUTOPILOT_STABILIZATION_SECS: '1' });
    const c = cluster;
    const n2 = await c.startJoiner();
    const n3 = await c.startJoiner();
    const members = [c.member('n1'), n2, n3].map((m) => ({ id: m.id, address: `${m.host}:${m.raftPort}` }));
    // Sent to a joiner (it knows no leader yet): refused, not lost.
    expect((await request(n2.url, 'PUT', '/v1/admin/cluster/members', { token: c.token, body: { members } })).status).toBeGreaterThanOrEqual(400);
    // As a person would: the CLI.
    const env = { PATH: process.env.PATH ?? '', COFFER_ADDR: c.member('n1').url, COFFER_TOKEN: c.token };
    const set = await run(process.execPath, [COFFER_BIN, 'cluster', 'members', 'set', ...members.map((m) => `${m.id}=${m.address}`), '--json'], { env });
    expect(JSON.parse(set.stdout)).toEqual({ source: 'api', members });
    const bad = await run(process.execPath, [COFFER_BIN, 'cluster', 'members', 'set', 'n9'], { env }).catch((e: { code: number; stderr: string }) => e);
    expect(bad).toMatchObject({ code: 2, stderr: expect.stringContaining('ID=HOST:PORT') });
    await untilVoters(c, ['n1', 'n2', 'n3']);
    // Every member serves the same declared list (it is replicated), a follower included.
    expect((await request(n3.url, 'GET', '/v1/admin/cluster/members', { token: c.token })).body).toEqual({ source: 'api', members });
    const del = await request(n3.url, 'DELETE', '/v1/admin/cluster/members', { token: c.token });
    expect(del.body).toEqual({ source: 'none', members: [] });
    await sleep(2_500);
    const v = await leaderView(c);
    expect(v.autopilot.state).toBe('idle');
    expect(sorted(v.peers.filter((p) => p.voter).map((p) => p.id))).toEqual(['n1', 'n2', 'n3']);
  }, 120_000);
});
