// A voter that is unreachable when the first leader is elected (in the e2e
// run: a WireGuard peer whose endpoint resolved seconds later). The leader
// cannot propose the bootstrap token until it has heard that voter's
// capabilities (DESIGN §5); once the voter shows up, the token must work
// without a restart or a second election. (It used to be proposed once: a
// leader that stayed leader never tried again, and the cluster stayed
// unadministrable.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestCluster } from '../helpers/cluster.js';
import { request } from '../helpers/http.js';
import { until } from '../helpers/wait.js';

// Longer than the leader's wait for a voter's capabilities (LEADER_WAIT_MS, 3 s), so its first attempt is refused.
const LATE_MS = 4_500;

describe('the bootstrap token with a voter that joins late', () => {
  let cluster: TestCluster;
  let leader: string;
  beforeAll(async () => {
    cluster = await TestCluster.start(3, {}, { heldBack: ['n3'] });
    leader = await cluster.waitForLeader();
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('is refused while a voter has never been heard from', async () => {
    await new Promise((r) => setTimeout(r, LATE_MS));
    const r = await request(cluster.member(leader).url, 'GET', '/v1/admin/cluster', { token: cluster.token });
    expect(r.status).toBe(401);
  }, 20_000);

  it('works on every node once that voter starts, with the same leader', async () => {
    await cluster.startMember('n3');
    await cluster.waitForBootstrapToken(20_000);
    expect(await cluster.waitForLeader()).toBe(leader);
    const status = await until('the third voter in the cluster status', async () => {
      const r = await request(cluster.member(leader).url, 'GET', '/v1/admin/cluster', { token: cluster.token });
      return r.status === 200 && r.body.peers.some((p: { id: string }) => p.id === 'n3') ? r.body : null;
    });
    expect(status.leader_id).toBe(leader);
  }, 40_000);
});
