// Linearizable reads from the leader's read lease (server/raft/lease.ts), on
// real processes: most reads skip the heartbeat round; a leader stopped
// (SIGSTOP) past its lease and cut off while the others elect a leader and
// take a newer value never answers with the older one when it resumes; and a voter that
// does not advertise raft.lease-votes (an older release) keeps every read on
// the round.
import { afterEach, describe, expect, it } from 'vitest';
import { TestCluster } from '../helpers/cluster.js';
import { client, request } from '../helpers/http.js';
import { until } from '../helpers/wait.js';

let cluster: TestCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

/** coffer_raft_linearizable_reads_total on one node, by path. */
async function readPaths(url: string): Promise<{ lease: number; round: number }> {
  const text = (await request(url, 'GET', '/metrics')).text;
  const count = (path: string) => Number(new RegExp(`^coffer_raft_linearizable_reads_total\\{path="${path}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { lease: count('lease'), round: count('round') };
}

describe('reads from the leader lease', () => {
  it('answers most linearizable reads on the leader without a round, each one current', async () => {
    cluster = await TestCluster.start(3);
    const lead = cluster.member(await cluster.waitForLeader());
    const admin = client(lead.url, cluster.token);
    const before = await readPaths(lead.url);
    for (let i = 0; i < 40; i++) {
      expect((await admin.put('/v1/secrets/lease/k', { value: `v${i}` })).status).toBeLessThan(300);
      // Written through a follower too: the leader's lease read must see it.
      const follower = cluster.members.find((m) => m.id !== lead.id)!;
      expect((await client(follower.url, cluster.token).put('/v1/secrets/lease/f', { value: `f${i}` })).status).toBeLessThan(300);
      expect((await request(lead.url, 'GET', '/v1/secrets/lease/k')).body.value).toBe(`v${i}`);
      expect((await request(lead.url, 'GET', '/v1/secrets/lease/f')).body.value).toBe(`f${i}`);
    }
    const after = await readPaths(lead.url);
    expect(after.lease - before.lease).toBeGreaterThan(60);
  }, 60_000);

  it('a leader stopped past its lease, cut off while it slept, never answers with the value the new leader replaced', async () => {
    // Its links are cut too, so it wakes still believing it leads (no newer term reaches it) and its
    // timer has not counted the stop: only the monotonic clock tells it the lease ran out.
    cluster = await TestCluster.start(3, {}, { proxies: true });
    for (let round = 0; round < 3; round++) {
      const old = cluster.member(await cluster.waitForLeader());
      const admin = client(old.url, cluster.token);
      expect((await admin.put('/v1/secrets/lease/x', { value: `before-${round}` })).status).toBeLessThan(300);
      // Reads keep the lease fresh right up to the stop.
      for (let i = 0; i < 5; i++) expect((await request(old.url, 'GET', '/v1/secrets/lease/x')).body.value).toBe(`before-${round}`);
      cluster.signal(old.id, 'SIGSTOP');
      cluster.partition(old.id);
      try {
        // Asked of the others only: the stopped node cannot answer.
        const next = await until('a new leader among the others', async () => {
          for (const m of cluster!.running().filter((x) => x.id !== old.id)) {
            const h = await request(m.url, 'GET', '/v1/health', { timeoutMs: 500 }).catch(() => null);
            if (h?.body?.role === 'leader') return m.id;
          }
          return null;
        }, 15_000);
        const w = await client(cluster.member(next).url, cluster.token).put('/v1/secrets/lease/x', { value: `after-${round}` });
        expect(w.status).toBeLessThan(300);
      } finally {
        cluster.signal(old.id, 'SIGCONT');
      }
      // The first requests it handles after waking, still cut off: a round cannot complete, so no 200.
      const answers = await Promise.all(Array.from({ length: 3 }, () => request(old.url, 'GET', '/v1/secrets/lease/x', { timeoutMs: 10_000 }).catch(() => null)));
      for (const a of answers) expect(a?.status === 200 ? a.body.value : 'no value').not.toBe(`before-${round}`);
      cluster.heal();
      await until('the old leader to read the new value', async () => {
        const r = await request(old.url, 'GET', '/v1/secrets/lease/x', { timeoutMs: 2_000 }).catch(() => null);
        return r?.status === 200 && r.body.value === `after-${round}` ? true : null;
      }, 15_000);
    }
  }, 120_000);

  /** Every one of 20 reads on the leader takes the round. */
  async function expectOnlyRounds(c: TestCluster): Promise<void> {
    const lead = c.member(await c.waitForLeader());
    expect((await client(lead.url, c.token).put('/v1/secrets/lease/old', { value: 'v' })).status).toBe(201);
    const before = await readPaths(lead.url);
    for (let i = 0; i < 20; i++) expect((await request(lead.url, 'GET', '/v1/secrets/lease/old')).body.value).toBe('v');
    const after = await readPaths(lead.url);
    expect(after.lease - before.lease).toBe(0);
    expect(after.round - before.round).toBe(20);
  }

  it('keeps every read on the round while a voter does not advertise raft.lease-votes', async () => {
    cluster = await TestCluster.start(3, {}, { memberEnv: { n3: { COFFER_UNSUPPORTED_COMMANDS: 'raft.lease-votes' } } });
    const health = await request(cluster.member('n3').url, 'GET', '/v1/health');
    expect(health.body.capabilities).not.toContain('raft.lease-votes@1');
    await expectOnlyRounds(cluster);
  }, 60_000);

  it('keeps every read on the round with COFFER_RAFT_LEASE_READS=0 (the switch README gives for downgrades)', async () => {
    cluster = await TestCluster.start(3, { COFFER_RAFT_LEASE_READS: '0' });
    await expectOnlyRounds(cluster);
  }, 60_000);
});
